//! The engine's scheduling and placement: room and slots on destinations, pins, several
//! sources, foreign migrations, stops, fail-fast, start order, the seed's policy, determinism,
//! an unreachable source and a bad spec.
#![allow(clippy::unwrap_used)]
use crate::common::*;
use vmove_core::*;

#[test]
fn no_destination_fits_is_unmigratable_not_an_endless_wait() {
    let mut w = two_hosts();
    let mut big = vm("huge", PowerState::Running);
    big.memory_bytes = 1 << 50;
    w.add_vm("a", big);
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    assert!(matches!(
        outcome(&core, "huge").reason,
        Some(Reason::NoDestinationFits { .. })
    ));
}

#[test]
fn placement_spreads_over_destinations_and_respects_room() {
    let mut w = World::new();
    w.add_host("a", Some(8));
    w.add_host("b", Some(8));
    w.add_host("c", Some(8));
    // b has room for one VM only.
    w.hosts
        .get_mut(&HostId::new("b"))
        .unwrap()
        .0
        .free_memory_bytes = 3 << 29;
    for i in 0..4 {
        w.add_vm("a", vm(&format!("v{i}"), PowerState::Running));
    }
    let mut core = Core::new(spec("a", &["b", "c"], &["a", "b", "c"]), Time::ZERO).unwrap();
    run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    assert_eq!(w.hosts[&HostId::new("b")].1.len(), 1);
    assert_eq!(w.hosts[&HostId::new("c")].1.len(), 3);
}

#[test]
fn pinned_vm_goes_to_its_pin() {
    let mut w = World::new();
    for h in ["a", "b", "c"] {
        w.add_host(h, Some(4));
    }
    w.add_vm("a", vm("pinned", PowerState::Running));
    let mut s = spec("a", &["b", "c"], &["a", "b", "c"]);
    s.pins.insert("pinned".into(), HostId::new("c"));
    let mut core = Core::new(s, Time::ZERO).unwrap();
    run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    assert_eq!(outcome(&core, "pinned").destination, Some(HostId::new("c")));
}

#[test]
fn vms_from_several_sources_in_one_run() {
    let mut w = World::new();
    for h in ["a", "b", "c"] {
        w.add_host(h, Some(2));
    }
    w.add_vm("a", vm("from-a", PowerState::Running));
    w.add_vm("b", vm("from-b", PowerState::Running));
    let mut s = spec("a", &["c"], &["a", "b", "c"]);
    s.sources.push(SourceSpec {
        host: HostId::new("b"),
        select: Selection::All,
        destinations: vec![HostId::new("c")].into(),
        exclude: vec![],
    });
    let mut core = Core::new(s, Time::ZERO).unwrap();
    run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    assert_eq!(w.hosts[&HostId::new("c")].1.len(), 2);
}

#[test]
fn foreign_migrations_count_against_the_limit() {
    let mut w = two_hosts();
    for i in 0..3 {
        w.add_vm("a", vm(&format!("v{i}"), PowerState::Running));
    }
    // Someone else's migration into b.
    let mut f = vm("foreign", PowerState::Running);
    f.id = VmId::new("not-ours");
    f.activity = Activity::MigratingIn;
    w.add_vm("b", f);
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    let mut peak = 0;
    run(&mut core, &mut w, Time::ZERO, |_, w, _| {
        let foreign_on_b = w.hosts[&HostId::new("b")]
            .1
            .iter()
            .filter(|v| v.activity == Activity::MigratingIn)
            .count();
        peak = peak.max(w.migs.len() + foreign_on_b);
    });
    assert!(peak <= 2, "b's limit 2 exceeded: {peak}");
}

#[test]
fn stop_gracefully_cancels_queued_and_lets_running_finish() {
    let mut w = two_hosts();
    for i in 0..5 {
        w.add_vm("a", vm(&format!("v{i}"), PowerState::Running));
    }
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    while let Some(c) = core.poll_command() {
        let i = w.answer(Time::ZERO, c).unwrap();
        core.handle_event(Time::ZERO, i);
    }
    while let Some(c) = core.poll_command() {
        let i = w.answer(Time::ZERO, c).unwrap();
        core.handle_event(Time::ZERO, i);
    }
    assert_eq!(w.migs.len(), 2);
    core.handle_event(
        Time::ZERO,
        Input::Stop {
            abort_running: false,
        },
    );
    run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    let (m, u, c) = core.snapshot(Time::ZERO).counts();
    assert_eq!((m, u, c), (2, 0, 3));
    for (_, vms) in w.hosts.values() {
        for v in vms {
            assert_eq!(w.find(&v.id).len(), 1, "{} on more than one host", v.name);
        }
    }
}

/// Guards a stop that comes before the source's first listing (a `--deadline` already past, a
/// Ctrl-C at once): the run waits for the listing and cancels the VMs it selects, so that it
/// names what it leaves behind. Before, the stop gave up every source not listed yet, and the
/// run ended "finished" with no VM at all while the source still held them.
#[test]
fn a_stop_before_the_first_listing_cancels_the_vms_the_listing_selects() {
    for abort_running in [false, true] {
        let mut w = two_hosts();
        for i in 0..3 {
            w.add_vm("a", vm(&format!("v{i}"), PowerState::Running));
        }
        let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
        core.handle_event(Time::ZERO, Input::Stop { abort_running });
        let events = run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
        assert!(core.is_finished());
        assert_eq!(core.failure(), None);
        let (m, u, c) = core.snapshot(Time::ZERO).counts();
        assert_eq!((m, u, c), (0, 0, 3), "abort_running {abort_running}");
        assert!(events.iter().any(|e| matches!(
            e.kind,
            EventKind::RunFinished {
                moved: 0,
                unmigratable: 0,
                cancelled: 3
            }
        )));
        assert_eq!(w.hosts[&HostId::new("a")].1.len(), 3);
        assert!(w.migs.is_empty());
    }
}

/// A stop before the first listing of a source that does not answer: the run does not wait
/// out the retries that give a host up; the source is given up at its first failed refresh,
/// and the run fails naming it (it cannot say which VMs it leaves there).
#[test]
fn a_stop_before_the_first_listing_of_a_source_that_does_not_answer_fails_the_run_naming_it() {
    let mut w = two_hosts();
    w.add_vm("a", vm("v0", PowerState::Running));
    w.down.push(HostId::new("a"));
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    core.handle_event(
        Time::ZERO,
        Input::Stop {
            abort_running: false,
        },
    );
    let events = run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    assert!(core.is_finished());
    let failure = core.failure().unwrap();
    assert!(
        failure.contains("could not list source host a") && failure.contains("before the stop"),
        "{failure}"
    );
    let unreachable = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::HostUnreachable { .. }))
        .count();
    assert_eq!(unreachable, 1, "{events:?}");
    let last = events.last().unwrap();
    assert_eq!(last.at, Time::ZERO, "the run waited: {last:?}");
}

#[test]
fn stop_with_abort_leaves_every_vm_on_exactly_one_host() {
    let mut w = two_hosts();
    for i in 0..5 {
        w.add_vm("a", vm(&format!("v{i}"), PowerState::Running));
    }
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    for _ in 0..2 {
        while let Some(c) = core.poll_command() {
            let i = w.answer(Time::ZERO, c).unwrap();
            core.handle_event(Time::ZERO, i);
        }
    }
    core.handle_event(
        Time(1000),
        Input::Stop {
            abort_running: true,
        },
    );
    run(&mut core, &mut w, Time(1000), |_, _, _| {});
    let (m, _, c) = core.snapshot(Time::ZERO).counts();
    assert_eq!((m, c), (0, 5));
    assert_eq!(w.hosts[&HostId::new("a")].1.len(), 5);
    assert!(w.migs.is_empty());
}

#[test]
fn fail_fast_stops_starting_after_the_first_unmigratable() {
    let mut w = two_hosts();
    let mut sick = vm("sick", PowerState::Running);
    sick.health = Health::Bad("Lost communication".into());
    sick.memory_bytes = 1 << 40; // largest: assessed first
    w.add_vm("a", sick);
    for i in 0..3 {
        w.add_vm("a", vm(&format!("v{i}"), PowerState::Running));
    }
    let mut s = spec("a", &["b"], &["a", "b"]);
    s.settings.fail_fast = true;
    let mut core = Core::new(s, Time::ZERO).unwrap();
    run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    let snap = core.snapshot(Time::ZERO);
    assert!(
        snap.vms
            .iter()
            .filter(|v| v.phase == Phase::Cancelled)
            .all(|v| v.reason == Some(Reason::FailFast))
    );
    assert_eq!(snap.counts().1, 1);
    assert!(
        w.log.iter().all(|l| !l.starts_with("start")),
        "nothing started after fail-fast: {:?}",
        w.log
    );
}

#[test]
fn largest_first_by_default_priorities_override() {
    let mut w = World::new();
    w.add_host("a", Some(1));
    w.add_host("b", Some(1));
    for (name, gib) in [("small", 1u64), ("big", 8), ("mid", 4)] {
        let mut v = vm(name, PowerState::Running);
        v.disk_bytes = gib << 30;
        w.add_vm("a", v);
    }
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    let order: Vec<String> = w
        .log
        .iter()
        .filter(|l| l.starts_with("start"))
        .cloned()
        .collect();
    assert!(
        order[0].contains("big") && order[1].contains("mid") && order[2].contains("small"),
        "{order:?}"
    );

    let mut w2 = World::new();
    w2.add_host("a", Some(1));
    w2.add_host("b", Some(1));
    for (name, gib) in [("small", 1u64), ("big", 8)] {
        let mut v = vm(name, PowerState::Running);
        v.disk_bytes = gib << 30;
        w2.add_vm("a", v);
    }
    let mut s = spec("a", &["b"], &["a", "b"]);
    s.priorities.insert("small".into(), 10);
    let mut core = Core::new(s, Time::ZERO).unwrap();
    run(&mut core, &mut w2, Time::ZERO, |_, _, _| {});
    assert!(
        w2.log
            .iter()
            .find(|l| l.starts_with("start"))
            .unwrap()
            .contains("small")
    );
}

#[test]
fn seed_policy_is_slower_than_ours_on_the_same_workload() {
    let build = || {
        let mut w = World::new();
        w.add_host("a", Some(2));
        w.add_host("b", Some(2));
        for i in 0..6 {
            w.add_vm("a", vm(&format!("v{i}"), PowerState::Running));
        }
        w
    };
    let mut makespan = vec![];
    for policy in [SchedulerPolicy::Vmove, SchedulerPolicy::Seed] {
        let mut w = build();
        let mut s = spec("a", &["b"], &["a", "b"]);
        s.settings.policy = policy;
        let mut core = Core::new(s, Time::ZERO).unwrap();
        let ev = run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
        assert_eq!(core.snapshot(Time::ZERO).counts().0, 6);
        makespan.push(ev.last().unwrap().at);
    }
    // 6 VMs x 30 s at 2 slots: ours is 90 s; the seed pays 10 s per start and 60 s passes.
    assert_eq!(makespan[0], Time(90_000));
    assert!(makespan[1] > makespan[0], "{makespan:?}");
}

#[test]
fn same_inputs_same_events() {
    let go = || {
        let mut w = two_hosts();
        for i in 0..6 {
            w.add_vm("a", vm(&format!("v{i}"), PowerState::Running));
        }
        w.start_failures
            .insert("v2".into(), vec![ErrorClass::Transient]);
        let mut s = spec("a", &["b"], &["a", "b"]);
        s.settings.backoff_jitter = 0.3;
        s.settings.seed = 99;
        let mut core = Core::new(s, Time::ZERO).unwrap();
        let ev = run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
        ev.iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(go(), go());
}

#[test]
fn unreachable_source_at_start_fails_the_run_after_retries() {
    let mut w = two_hosts();
    w.down.push(HostId::new("a"));
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    assert!(
        core.failure()
            .unwrap()
            .contains("could not list source host a")
    );
}

#[test]
fn bad_spec_is_refused_with_the_key_named() {
    let mut s = spec("a", &["a"], &["a"]);
    assert_eq!(
        Core::new(s.clone(), Time::ZERO).unwrap_err().to_string(),
        "host `a` is both a source and a destination of its own VMs"
    );
    s = spec("a", &["b"], &["a"]);
    assert!(
        Core::new(s, Time::ZERO)
            .unwrap_err()
            .to_string()
            .contains("unknown host `b`")
    );
    let mut s = spec("a", &["b"], &["a", "b"]);
    s.settings.max_parallel = Some(0);
    assert!(
        Core::new(s, Time::ZERO)
            .unwrap_err()
            .to_string()
            .contains("`max_parallel` must be at least 1")
    );
    let mut s = spec("a", &["b"], &["a", "b"]);
    s.sources[0].select = Selection::Names(vec!["[unclosed".into()]);
    assert!(
        Core::new(s, Time::ZERO)
            .unwrap_err()
            .to_string()
            .contains("bad VM name pattern `[unclosed`")
    );
}

/// The runtime pauses starts while its journal cannot be written, and resumes them when it can
/// again: a pause is not a stop. While paused nothing starts and no pre-flight check is asked,
/// but no VM is cancelled, no attempt is counted and nothing is said; once resumed the run
/// moves every VM, each in one attempt.
#[test]
fn paused_starts_start_nothing_count_nothing_and_resume_where_they_were() {
    let mut w = two_hosts();
    for i in 0..5 {
        w.add_vm("a", vm(&format!("v{i}"), PowerState::Running));
    }
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    core.pause_starts(Time::ZERO, true);
    let mut asked = Vec::new();
    for _ in 0..5 {
        while let Some(c) = core.poll_command() {
            asked.push(c.clone());
            if let Some(i) = w.answer(Time::ZERO, c) {
                core.handle_event(Time::ZERO, i);
            }
        }
    }
    assert!(!asked.is_empty(), "the hosts are still refreshed");
    assert!(
        asked
            .iter()
            .all(|c| matches!(c, Command::RefreshHost { .. })),
        "nothing but refreshes while paused: {asked:?}"
    );
    let events: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
    assert!(
        !events.iter().any(|e| matches!(
            e.kind,
            EventKind::StopRequested { .. } | EventKind::AttemptStarted { .. }
        )),
        "{events:?}"
    );
    let snap = core.snapshot(Time::ZERO);
    assert!(!snap.stopping);
    assert!(
        snap.vms
            .iter()
            .all(|v| v.phase == Phase::Queued && v.attempts == 0),
        "{:?}",
        snap.vms
    );
    // A second pause changes nothing; resuming starts moves at once.
    core.pause_starts(Time(500), true);
    assert!(core.poll_command().is_none());
    core.pause_starts(Time(1000), false);
    let next: Vec<Command> = std::iter::from_fn(|| core.poll_command()).collect();
    assert!(
        next.iter()
            .any(|c| matches!(c, Command::StartMigration(_) | Command::Preflight { .. })),
        "{next:?}"
    );
    for c in next {
        if let Some(i) = w.answer(Time(1000), c) {
            core.handle_event(Time(1000), i);
        }
    }
    run(&mut core, &mut w, Time(1000), |_, _, _| {});
    let snap = core.snapshot(Time(1000));
    assert_eq!(snap.counts(), (5, 0, 0));
    assert!(snap.vms.iter().all(|v| v.attempts == 1), "{:?}", snap.vms);
}

/// The run's first event names every destination once, in order, whether sources share one
/// list (one `Arc`, read once), hold equal lists of their own, or alternate between lists.
#[test]
fn run_started_names_each_destination_once_whatever_lists_the_sources_share() {
    let ids = |names: &[&str]| -> std::sync::Arc<[HostId]> {
        names.iter().map(|n| HostId::new(*n)).collect()
    };
    let shared = ids(&["d2", "d1"]);
    let source = |host: &str, destinations: std::sync::Arc<[HostId]>| SourceSpec {
        host: HostId::new(host),
        select: Selection::All,
        destinations,
        exclude: vec![],
    };
    let mut s = spec(
        "s1",
        &["d1"],
        &["s1", "s2", "s3", "s4", "s5", "d1", "d2", "d3", "d4"],
    );
    s.sources = vec![
        source("s1", shared.clone()),
        source("s2", shared.clone()),
        source("s3", ids(&["d3", "d1"])),
        // The shared list again, after another: read again, named once.
        source("s4", shared),
        // Equal to the shared list, its own allocation; then one only it names.
        source("s5", ids(&["d1", "d2", "d4"])),
    ];
    let mut core = Core::new(s, Time::ZERO).unwrap();
    let first = core.poll_event().map(|e| e.kind);
    let Some(EventKind::RunStarted {
        sources,
        destinations,
        ..
    }) = first
    else {
        panic!("the first event is not RunStarted: {first:?}");
    };
    let names = |v: &[HostId]| v.iter().map(|h| h.as_str().to_string()).collect::<Vec<_>>();
    assert_eq!(names(&sources), ["s1", "s2", "s3", "s4", "s5"]);
    assert_eq!(names(&destinations), ["d1", "d2", "d3", "d4"]);
}
