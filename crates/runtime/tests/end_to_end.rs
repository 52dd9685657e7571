//! The real core, through the runtime, against the simulated cluster, on a paused tokio clock
//! (the harness: `clocked`): whole runs, a pushed migration end, a stop, an abort, a hung
//! start, a run started at a later time.
#![allow(clippy::unwrap_used)]

mod clocked;

use clocked::*;
use std::sync::Arc;
use std::time::Duration;
use vmove_core::{Core, HostId, Phase, Time};
use vmove_runtime::{Control, RuntimeOptions};
use vmove_sim::scenarios::{self, Demo, Scenario};
use vmove_sim::{SimOptions, simulate};

#[tokio::test(start_paused = true)]
async fn the_demo_runs_to_its_end_through_the_runtime() {
    let virtual_makespan = {
        let Demo {
            scenario: Scenario { cluster, spec },
            ..
        } = scenarios::demo();
        simulate(spec, cluster, SimOptions::default())
            .unwrap()
            .makespan
    };
    let (driver, core, hosts) = demo();
    let (_c, rx) = Control::new();
    let (result, c) = run_collecting(RuntimeOptions::default(), &driver, &hosts, core, rx).await;
    assert_eq!(result.error(), None);
    let snap = &result.snapshot;
    assert!(snap.finished);
    assert_eq!(snap.counts(), (11, 1, 0));
    let big = snap.vms.iter().find(|v| v.name == "analytics-01").unwrap();
    assert_eq!(big.phase, Phase::Unmigratable);
    let web2 = snap.vms.iter().find(|v| v.name == "web-02").unwrap();
    assert_eq!((web2.phase, web2.attempts), (Phase::Moved, 2));
    // The cluster agrees: every moved VM is on its destination, the big one still on hv-01.
    let cluster = driver.cluster();
    let cluster = cluster.lock().unwrap();
    for v in &snap.vms {
        let on = cluster.vm_host(&v.id).unwrap();
        match v.phase {
            Phase::Moved => assert_eq!(Some(on), v.destination.as_ref(), "{}", v.name),
            _ => assert_eq!(on.as_str(), "hv-01", "{}", v.name),
        }
    }
    // Polling instead of exact completion pushes costs a little time, not much.
    let real = Time(result.elapsed.as_millis() as u64);
    assert!(real >= virtual_makespan, "{real} < {virtual_makespan}");
    assert!(
        real.as_millis() <= virtual_makespan.as_millis() * 11 / 10,
        "{real} vs {virtual_makespan}"
    );
    // Every command the sinks saw was carried out: the collector saw the run's events too.
    assert!(c.commands.len() > 20);
    assert_eq!(c.finished.as_ref().map(|s| s.counts()), Some((11, 1, 0)));
}

/// Regression guard for the lab benchmark's per-migration overhead: a driver that pushes the end
/// of a migration (`wait_for_end`) gets it verified at once, not at the next progress poll, so the
/// run takes as long as the simulator's exact-push model says, while polls alone lose time.
#[tokio::test(start_paused = true)]
async fn a_pushed_migration_end_is_acted_on_before_the_next_poll() {
    fn scenario() -> Scenario {
        let Demo { mut scenario, .. } = scenarios::demo();
        // Sparse progress polls make the difference plain.
        scenario.spec.settings.progress_interval = Duration::from_secs(20);
        scenario
    }
    async fn run(push_end: bool) -> Duration {
        let Scenario { cluster, spec } = scenario();
        let hosts = cluster.host_ids();
        let core = Core::new(spec, Time::ZERO).unwrap();
        let mut d = Clocked::new(cluster);
        d.push_end = push_end;
        let (_c, rx) = Control::new();
        let result = run_on(
            RuntimeOptions::default(),
            &Arc::new(d),
            &hosts,
            core,
            vec![],
            rx,
        )
        .await;
        assert_eq!(result.error(), None);
        assert_eq!(result.snapshot.counts(), (11, 1, 0));
        result.elapsed
    }
    let exact = {
        let Scenario { cluster, spec } = scenario();
        simulate(spec, cluster, SimOptions::default())
            .unwrap()
            .makespan
    };
    let polled = run(false).await;
    let pushed = run(true).await;
    assert!(
        pushed + Duration::from_secs(20) < polled,
        "pushed {pushed:?} vs polled {polled:?}"
    );
    let pushed_ms = pushed.as_millis() as u64;
    assert!(
        pushed_ms <= exact.as_millis() * 101 / 100 + 1_000,
        "pushed {pushed:?} vs the simulator's exact {exact}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stop_lets_running_moves_finish_and_cancels_the_rest() {
    let (driver, core, hosts) = demo();
    let (control, rx) = Control::new();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        control.stop(false);
    });
    let (result, collected) =
        run_collecting(RuntimeOptions::default(), &driver, &hosts, core, rx).await;
    assert_eq!(result.error(), None);
    assert_eq!(result.stop_requested, Some(false));
    let (moved, _unmig, cancelled) = result.snapshot.counts();
    assert!(
        moved >= 1 && cancelled >= 1,
        "{:?}",
        result.snapshot.counts()
    );
    // No attempt started after the stop.
    let late_starts: Vec<_> = collected
        .commands
        .iter()
        .filter(|(t, c)| *t > Time(60_000) && matches!(c, vmove_core::Command::StartMigration(_)))
        .map(|(t, _)| *t)
        .collect();
    assert!(late_starts.is_empty(), "{late_starts:?}");
    // Every VM is on exactly one host: moved ones on their destination, the rest on hv-01.
    let cluster = driver.cluster();
    let cluster = cluster.lock().unwrap();
    for v in &result.snapshot.vms {
        assert!(v.phase.is_final(), "{} is {:?}", v.name, v.phase);
        let on = cluster.vm_host(&v.id).unwrap().clone();
        let expected = if v.phase == Phase::Moved {
            v.destination.clone().unwrap()
        } else {
            HostId::new("hv-01")
        };
        assert_eq!(on, expected, "{}", name_of(&cluster, &v.id));
        assert!(cluster.vm_migrating_to(&v.id).is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn an_abort_stops_running_migrations_at_once() {
    let (driver, core, hosts) = demo();
    let (control, rx) = Control::new();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        control.stop(true);
    });
    let result = run_on(RuntimeOptions::default(), &driver, &hosts, core, vec![], rx).await;
    assert_eq!(result.stop_requested, Some(true));
    // Nothing in the demo finishes within 30 s: nothing moved, and the run ends soon after.
    assert_eq!(
        result.snapshot.counts().0,
        0,
        "{:?}",
        result.snapshot.counts()
    );
    assert!(
        result.elapsed < Duration::from_secs(60),
        "{:?}",
        result.elapsed
    );
    let cluster = driver.cluster();
    let cluster = cluster.lock().unwrap();
    for v in &result.snapshot.vms {
        assert_eq!(
            cluster.vm_host(&v.id).unwrap().as_str(),
            "hv-01",
            "{}",
            v.name
        );
        assert!(
            cluster.vm_migrating_to(&v.id).is_none(),
            "{} still migrating",
            v.name
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_start_is_cut_off_then_resolved_by_looking_and_retried() {
    let (driver, core, hosts) = demo();
    driver
        .hang_first_start
        .lock()
        .unwrap()
        .insert("build-01".into());
    let (_c, rx) = Control::new();
    let options = RuntimeOptions {
        call_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let (result, collected) = run_collecting(options, &driver, &hosts, core, rx).await;
    assert_eq!(result.error(), None);
    let build = result
        .snapshot
        .vms
        .iter()
        .find(|v| v.name == "build-01")
        .unwrap();
    assert_eq!(build.phase, Phase::Moved, "{build:?}");
    assert_eq!(build.attempts, 2, "the hung attempt counts");
    // The core was told the outcome was unknown, and looked before it retried.
    let events = &collected.events;
    let failed = events.iter().find_map(|e| match &e.kind {
        vmove_core::EventKind::AttemptFailed {
            vm, class, error, ..
        } if *vm == build.id => Some((e.at, *class, error.clone())),
        _ => None,
    });
    let (at, class, error) = failed.expect("an AttemptFailed for build-01");
    assert_eq!(class, vmove_core::ErrorClass::Indeterminate);
    assert!(error.contains("did not answer within 30s"), "{error}");
    assert!(at >= Time(30_000), "{at}");
    let located = collected.commands.iter().any(
        |(_, c)| matches!(c, vmove_core::Command::Locate { request } if request.vm == build.id),
    );
    assert!(
        located,
        "an unclear start must be resolved by looking at the hosts"
    );
    assert_eq!(result.snapshot.counts(), (11, 1, 0));
}

/// A resumed run's clock starts where its journal left off: the core never sees time go back.
#[tokio::test(start_paused = true)]
async fn a_run_started_at_a_later_time_never_hands_the_core_an_earlier_time() {
    let (driver, _core, hosts) = demo();
    let Demo {
        scenario: Scenario { spec, .. },
        ..
    } = scenarios::demo();
    let start = Time(3_600_000);
    let core = Core::new(spec, start).unwrap();
    let (_c, rx) = Control::new();
    let options = RuntimeOptions {
        start,
        ..Default::default()
    };
    let (result, c) = run_collecting(options, &driver, &hosts, core, rx).await;
    assert_eq!(result.error(), None);
    assert!(c.commands.iter().all(|(t, _)| *t >= start));
    assert!(
        c.events.iter().all(|e| e.at >= start),
        "every event at or after the start"
    );
    assert!(result.snapshot.at > start);
}
