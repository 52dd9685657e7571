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
    let id = |name: &str| {
        out.snapshot
            .vms
            .iter()
            .find(|v| v.name == name)
            .expect("listed")
            .id
            .clone()
    };
    let db01 = id("db-01");
    let waited_for_backup = out.events.iter().any(|e| {
        matches!(&e.kind, EventKind::Waiting { vm, reason: vmove_core::WaitReason::BackingUp { .. } } if *vm == db01)
    });
    assert!(waited_for_backup, "db-01 is seen waiting for its backup");
    let first_start = |vm: &vmove_core::VmId| {
        out.events
            .iter()
            .find(|e| matches!(&e.kind, EventKind::AttemptStarted { vm: v, .. } if v == vm))
            .map(|e| e.at)
            .expect("started")
    };
    assert!(
        first_start(&db01) >= vmove_core::Time(120_000),
        "db-01 starts only after its backup ends"
    );
    let last_live = [
        "db-01", "db-02", "web-01", "web-02", "web-03", "app-01", "app-02", "cache-01", "build-01",
    ]
    .iter()
    .map(|n| first_start(&id(n)))
    .max()
    .expect("some");
    for off in ["old-01", "old-02"] {
        assert!(
            first_start(&id(off)) >= last_live,
            "{off} (powered off) moves after the running VMs"
        );
    }
    let real_secs = out.makespan.0 as f64 / 1000.0 / scenarios::DEMO_SPEED;
    assert!(
        (20.0..=45.0).contains(&real_secs),
        "the demo lasts {real_secs:.0} s real at its speed"
    );
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

#[test]
fn from_observed_mirrors_capacity_foreign_migrations_and_backups() {
    use vmove_core::model::{Activity, Health, HostId, HostInfo, PowerState, VmId, VmInfo};
    use vmove_sim::cluster::GIB;
    use vmove_sim::scenarios::{Assumptions, ObservedHost};
    let vm = |id: &str, activity: Activity| VmInfo {
        id: VmId::new(id),
        name: id.into(),
        power: PowerState::Running,
        health: Health::Ok,
        activity,
        memory_bytes: 8 * GIB,
        disk_bytes: 40 * GIB,
        dirty_rate: None,
    };
    let hosts = vec![
        ObservedHost {
            id: HostId::new("h1"),
            info: HostInfo {
                migration_limit: Some(2),
                active_migrations: 0,
                free_memory_bytes: 100 * GIB,
                free_disk_bytes: 1000 * GIB,
            },
            vms: vec![vm("a", Activity::Idle), vm("b", Activity::BackingUp)],
        },
        ObservedHost {
            id: HostId::new("h2"),
            info: HostInfo {
                migration_limit: None,
                active_migrations: 1,
                free_memory_bytes: 50 * GIB,
                free_disk_bytes: 500 * GIB,
            },
            vms: vec![vm("c", Activity::MigratingIn)],
        },
    ];
    let c = scenarios::from_observed(&hosts, &Assumptions::with_bandwidth(100_000_000))
        .expect("builds");
    let h1 = HostId::new("h1");
    let h2 = HostId::new("h2");
    assert_eq!(
        c.host_spec(&h1).expect("h1").memory_bytes,
        116 * GIB,
        "free + what the VMs use"
    );
    assert_eq!(c.host_info(&h1).expect("h1").free_memory_bytes, 100 * GIB);
    assert_eq!(
        c.active_foreign(&h2),
        1,
        "the arriving VM is a foreign migration"
    );
    assert_eq!(c.vm_specs().count(), 2, "the arriving VM is not created");
    assert!(
        c.blocked_from_start_until(&VmId::new("b")).is_some(),
        "the backup goes on"
    );
    assert_eq!(
        c.host_spec(&h2).expect("h2").nic_bytes_per_sec,
        200_000_000,
        "bandwidth x default limit 2"
    );
}

/// Each `waiting` event says something new: a VM is never said to wait for the same reason
/// twice in a row while nothing else happened to it (no transition, no other wait). Before, a
/// powered-off VM held back for the running ones was said to wait `offline_after_live` again
/// after every listing of its source (once a minute: 351 times in the `faulty-1` run), and under
/// the seed's policy a VM without a slot `no_slot` the same way (1,036 lines of `seed-policy-7`).
#[test]
fn a_vm_is_not_said_to_wait_for_the_same_reason_twice_in_a_row() {
    use std::collections::HashMap;
    use vmove_core::spec::SchedulerPolicy;
    let mut runs = Vec::new();
    for seed in [1u64, 42, 977] {
        runs.push((
            format!("faulty-{seed}"),
            scenarios::random(seed, &RandomParams::faulty(3, 3, 10)),
        ));
    }
    let mut seed = scenarios::random(7, &RandomParams::faulty(2, 2, 6));
    seed.spec.settings.policy = SchedulerPolicy::Seed;
    runs.push(("seed-policy-7".into(), seed));
    for (name, sc) in runs {
        let out = simulate(sc.spec, sc.cluster, SimOptions::default()).expect("the run finishes");
        let mut last = HashMap::new();
        let mut waits = 0;
        for e in &out.events {
            match &e.kind {
                EventKind::Waiting { vm, reason } => {
                    waits += 1;
                    assert_ne!(
                        last.insert(vm.clone(), reason.clone()).as_ref(),
                        Some(reason),
                        "{name}: {vm} said to wait for {reason} again at {} with nothing in between",
                        e.at
                    );
                }
                EventKind::Transition { vm, .. } => {
                    last.remove(vm);
                }
                _ => {}
            }
        }
        assert!(waits > 0, "{name}: some VM waits");
    }
}

/// A VM whose disks copy slower than the completion timeout allows (5 MB/s, under the
/// 150 s per GiB of the default) and whose guest dirties memory faster than the link: the
/// completion watchdog fires while the disks are still copied. Auto-converge is applied; post-copy
/// is refused while the disks copy (the simulator refuses it then, as QEMU does) and asked again
/// while the copy progresses, then taken once the memory is sent. The VM moves in one attempt.
/// Before, the refusal aborted the attempt ("no convergence aid helped") and every next
/// attempt copied the disks again from nothing, to be aborted at the same point.
#[test]
fn a_slow_disk_copy_is_not_aborted_for_a_post_copy_refused_until_the_memory_is_sent() {
    use vmove_core::model::{ConvergenceAid, HostId};
    use vmove_core::spec::Settings;
    use vmove_sim::cluster::{GIB, MIB};
    use vmove_sim::{Faults, HostSpec, SimCluster, VmSpec};
    let hosts = ["a", "b"]
        .into_iter()
        .map(|h| HostSpec {
            nic_bytes_per_sec: 5_000_000,
            stream_cap_bytes_per_sec: 5_000_000,
            ..HostSpec::new(h)
        })
        .collect();
    let vm = VmSpec::running("slow", "a", GIB)
        .with_disk(20 * GIB)
        .with_dirty_rate(30 * MIB);
    let cluster = SimCluster::new(hosts, vec![vm], Faults::default()).expect("a valid cluster");
    let spec = scenarios::evacuation(
        "slow-disk",
        &[HostId::new("a")],
        &[HostId::new("b")],
        Settings::default(),
    );
    let out = simulate(spec, cluster, SimOptions::default()).expect("the run finishes");
    let v = &out.snapshot.vms[0];
    assert_eq!((v.phase, v.attempts), (Phase::Moved, 1), "{:?}", v.reason);
    let refused = out.events.iter().any(|e| {
        matches!(&e.kind, EventKind::NotAborted { why, .. } if why.contains("post-copy refused for now"))
    });
    let post_copy = out.events.iter().any(|e| {
        matches!(
            &e.kind,
            EventKind::Escalated {
                aid: ConvergenceAid::PostCopy,
                ..
            }
        )
    });
    assert!(refused, "post-copy was refused during the disk copy");
    assert!(post_copy, "post-copy was taken after it");
}

/// VMs with no disks (network-booted guests), one running and one shut off, move. Before, a
/// migration's disk copy of no bytes was due the instant it began, `advance_to` carried out
/// nothing due at the current instant, and the run never got past it: "no end after 10061
/// steps (at 0.000s): livelock" (also `vmove plan` of a real host listing such a VM).
#[test]
fn vms_without_disks_move_instead_of_livelocking_the_simulator() {
    use vmove_core::model::HostId;
    use vmove_core::spec::Settings;
    use vmove_sim::cluster::GIB;
    use vmove_sim::{Faults, HostSpec, SimCluster, VmSpec};
    let hosts = ["a", "b"].into_iter().map(HostSpec::new).collect();
    let vms = vec![
        VmSpec::running("pxe-live", "a", GIB),
        VmSpec::running("pxe-off", "a", GIB).off(),
    ];
    let cluster = SimCluster::new(hosts, vms, Faults::default()).expect("a valid cluster");
    let spec = scenarios::evacuation(
        "no-disks",
        &[HostId::new("a")],
        &[HostId::new("b")],
        Settings::default(),
    );
    let out = simulate(spec, cluster, SimOptions::default()).expect("the run finishes");
    for v in &out.snapshot.vms {
        assert_eq!(
            (v.phase, v.attempts),
            (Phase::Moved, 1),
            "{}: {:?}",
            v.name,
            v.reason
        );
    }
    assert_eq!(out.snapshot.vms.len(), 2);
}
