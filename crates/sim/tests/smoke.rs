//! End-to-end runs of the scenarios through the core.

use vmove_core::{EventKind, Phase};
use vmove_sim::scenarios::{self, RandomParams};
use vmove_sim::{SimOptions, simulate};

#[test]
fn demo_moves_everything_that_fits_and_reports_the_rest() {
    let demo = scenarios::demo();
    let lb = scenarios::lower_bound(&demo.scenario.cluster, &demo.scenario.spec);
    let out = simulate(
        demo.scenario.spec,
        demo.scenario.cluster,
        SimOptions::default(),
    )
    .expect("demo runs");
    let (moved, unmigratable, cancelled) = out.snapshot.counts();
    eprintln!(
        "demo: makespan {} lb {} steps {} events {} moved {moved} unmigratable {unmigratable} cancelled {cancelled}",
        out.makespan, lb, out.steps, out.event_count
    );
    for v in &out.snapshot.vms {
        eprintln!(
            "  {} {:?} attempts {} {:?}",
            v.name, v.phase, v.attempts, v.reason
        );
    }
    assert_eq!((moved, unmigratable, cancelled), (11, 1, 0));
    let big = out
        .snapshot
        .vms
        .iter()
        .find(|v| v.name == "analytics-01")
        .expect("listed");
    assert_eq!(big.phase, Phase::Unmigratable);
    let retried = out.events.iter().any(|e| {
        matches!(
            &e.kind,
            EventKind::AttemptFailed {
                retry_at: Some(_),
                ..
            }
        )
    });
    assert!(retried, "the transient failure of web-02 is retried");
}

#[test]
fn random_faulty_scenario_finishes() {
    let sc = scenarios::random(3, &RandomParams::faulty(3, 3, 8));
    let out = simulate(sc.spec, sc.cluster, SimOptions::default()).expect("runs");
    let (m, u, c) = out.snapshot.counts();
    eprintln!(
        "random: makespan {} steps {} moved {m} unmigratable {u} cancelled {c}",
        out.makespan, out.steps
    );
    for v in &out.snapshot.vms {
        if v.phase != Phase::Moved {
            eprintln!(
                "  {} {:?} attempts {} {:?}",
                v.name, v.phase, v.attempts, v.reason
            );
        }
    }
    assert_eq!((m + u + c) as usize, out.snapshot.vms.len());
}

#[test]
fn a_run_that_cannot_end_in_its_step_budget_is_reported_as_livelock() {
    let sc = scenarios::random(5, &RandomParams::clean(1, 1, 4));
    let opts = SimOptions {
        max_steps: Some(20),
        ..SimOptions::default()
    };
    let err = simulate(sc.spec, sc.cluster, opts).expect_err("20 steps are not enough");
    assert!(
        matches!(err, vmove_sim::SimRunError::Livelock { .. }),
        "{err}"
    );
}
