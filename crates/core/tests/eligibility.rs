//! The engine on a whole run, and the seed's eligibility rules: what a VM's state on its source
//! makes the engine do.
#![allow(clippy::unwrap_used)]
use crate::common::*;
use vmove_core::*;

#[test]
fn evacuates_a_host_with_two_slots() {
    let mut w = World::new();
    w.add_host("a", Some(2));
    w.add_host("b", Some(2));
    for i in 0..5 {
        w.add_vm("a", vm(&format!("vm{i}"), PowerState::Running));
    }
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    let mut peak = 0;
    let ev = run(&mut core, &mut w, Time::ZERO, |_, w, _| {
        peak = peak.max(w.migs.len());
    });
    assert!(peak <= 2, "peak {peak}");
    let snap = core.snapshot(Time::ZERO);
    assert_eq!(snap.counts(), (5, 0, 0), "{:#?}", snap.vms);
    assert_eq!(w.hosts[&HostId::new("b")].1.len(), 5);
    assert!(
        ev.iter()
            .any(|e| matches!(e.kind, EventKind::RunFinished { moved: 5, .. }))
    );
}

// ---- eligibility reasons (the seed's, in its order) ----

#[test]
fn eligibility_not_found_for_a_named_vm_missing_from_the_source() {
    let mut w = two_hosts();
    w.add_vm("a", vm("present", PowerState::Running));
    let mut s = spec("a", &["b"], &["a", "b"]);
    s.sources[0].select = Selection::Names(vec!["present".into(), "ghost".into()]);
    let mut core = Core::new(s, Time::ZERO).unwrap();
    run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    assert_eq!(outcome(&core, "ghost").reason, Some(Reason::NotFound));
    assert_eq!(outcome(&core, "present").phase, Phase::Moved);
}

#[test]
fn eligibility_already_on_destination_counts_as_moved_without_an_attempt() {
    let mut w = World::new();
    w.add_host("a", Some(1));
    w.add_host("b", Some(1));
    w.duration = std::time::Duration::from_secs(600);
    let mut big = vm("first", PowerState::Running);
    big.disk_bytes = 100 << 30;
    w.add_vm("a", big);
    w.add_vm("a", vm("x", PowerState::Running));
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    let mut moved_by_hand = false;
    run(&mut core, &mut w, Time::ZERO, |_, w, c| {
        // While `first` holds the only slot, someone moves x to b by hand.
        if !moved_by_hand && matches!(c, Command::RefreshHost { .. }) && !w.migs.is_empty() {
            let a = w.hosts.get_mut(&HostId::new("a")).unwrap();
            let pos = a.1.iter().position(|v| &*v.name == "x").unwrap();
            let v = a.1.remove(pos);
            w.hosts.get_mut(&HostId::new("b")).unwrap().1.push(v);
            moved_by_hand = true;
        }
    });
    assert!(moved_by_hand);
    let x = outcome(&core, "x");
    assert_eq!(x.phase, Phase::Moved, "{x:?}");
    assert_eq!(x.attempts, 0);
    assert!(!w.log.iter().any(|l| l.starts_with("start x")));
}

#[test]
fn eligibility_migrating_by_someone_else_waits_then_moves() {
    let mut w = two_hosts();
    let mut v = vm("busy", PowerState::Running);
    v.activity = Activity::MigratingOut;
    w.add_vm("a", v);
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    for _ in 0..10 {
        while let Some(c) = core.poll_command() {
            let i = w.answer(Time::ZERO, c).unwrap();
            core.handle_event(Time::ZERO, i);
        }
    }
    let view = outcome(&core, "busy");
    assert_eq!(view.phase, Phase::Queued);
    assert_eq!(view.waiting, Some(WaitReason::MigratingByOther));
    // The foreign migration occupies a slot on a.
    let snap = core.snapshot(Time::ZERO);
    assert_eq!(
        snap.hosts
            .iter()
            .find(|h| h.id.as_str() == "a")
            .unwrap()
            .foreign,
        1
    );
    // It ends; the next refresh lets us move it.
    w.hosts.get_mut(&HostId::new("a")).unwrap().1[0].activity = Activity::Idle;
    run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    assert_eq!(outcome(&core, "busy").phase, Phase::Moved);
}

#[test]
fn eligibility_not_running_moves_offline_after_running_ones() {
    let mut w = two_hosts();
    w.add_vm("a", vm("off", PowerState::Off));
    w.add_vm("a", vm("on1", PowerState::Running));
    w.add_vm("a", vm("on2", PowerState::Running));
    w.add_vm("a", vm("on3", PowerState::Running));
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    let starts: Vec<&String> = w.log.iter().filter(|l| l.starts_with("start")).collect();
    assert_eq!(starts.len(), 4);
    assert!(
        starts[3].contains("off"),
        "offline VM must start last: {starts:?}"
    );
    assert_eq!(outcome(&core, "off").mode, MigrationMode::Offline);
}

#[test]
fn eligibility_backing_up_waits_then_unmigratable_after_threshold() {
    let mut w = two_hosts();
    let mut v = vm("bk", PowerState::Running);
    v.activity = Activity::BackingUp;
    v.health = Health::InService;
    w.add_vm("a", v);
    w.add_vm("a", vm("other", PowerState::Running));
    let mut s = spec("a", &["b"], &["a", "b"]);
    s.settings.backup_threshold = std::time::Duration::from_secs(300);
    let mut core = Core::new(s, Time::ZERO).unwrap();
    let ev = run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    let bk = outcome(&core, "bk");
    assert_eq!(
        bk.reason,
        Some(Reason::BackupTooLong {
            threshold_secs: 300
        })
    );
    assert!(bk.finished_at.unwrap() >= Time(300_000));
    assert_eq!(
        outcome(&core, "other").phase,
        Phase::Moved,
        "others move meanwhile"
    );
    assert!(ev.iter().any(|e| matches!(
        &e.kind,
        EventKind::Waiting {
            reason: WaitReason::BackingUp { .. },
            ..
        }
    )));
}

#[test]
fn eligibility_backup_that_ends_lets_the_vm_move() {
    let mut w = two_hosts();
    let mut v = vm("bk", PowerState::Running);
    v.activity = Activity::BackingUp;
    w.add_vm("a", v);
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    for _ in 0..3 {
        while let Some(c) = core.poll_command() {
            let i = w.answer(Time::ZERO, c).unwrap();
            core.handle_event(Time::ZERO, i);
        }
    }
    assert_eq!(outcome(&core, "bk").phase, Phase::Queued);
    w.hosts.get_mut(&HostId::new("a")).unwrap().1[0].activity = Activity::Idle;
    run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    let bk = outcome(&core, "bk");
    assert_eq!(bk.phase, Phase::Moved);
    // Noticed at the fast re-check, not the 60 s poll.
    assert!(
        bk.started_at.unwrap() <= Time(10_000),
        "{:?}",
        bk.started_at
    );
}

#[test]
fn eligibility_bad_status_is_unmigratable_with_that_status() {
    let mut w = two_hosts();
    let mut v = vm("sick", PowerState::Running);
    v.health = Health::Bad("Degraded".into());
    w.add_vm("a", v);
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    assert_eq!(
        outcome(&core, "sick").reason,
        Some(Reason::BadStatus("Degraded".into()))
    );
}
