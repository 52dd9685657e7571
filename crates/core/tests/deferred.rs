//! A start the runtime did not carry out because the cross-process slot ledger found a host
//! full (`Input::StartDeferred`): the VM waits for a slot, the attempt does not count, the
//! others' slots are counted until the host's next listing.
#![allow(clippy::unwrap_used)]
use crate::common::*;
use vmove_core::*;

fn host(core: &Core, id: &str) -> HostView {
    core.host_view(&HostId::new(id)).unwrap()
}

#[test]
fn a_deferred_start_queues_the_vm_again_without_counting_the_attempt() {
    let mut w = World::new();
    w.add_host("a", Some(1));
    w.add_host("b", Some(1));
    w.add_vm("a", vm("web1", PowerState::Running));
    let mut s = spec("a", &["b"], &["a", "b"]);
    // One attempt only: a deferral that counted would give the VM up.
    s.settings.max_attempts = 1;
    let mut core = Core::new(s, Time::ZERO).unwrap();
    let now = Time::ZERO;
    // Answer everything until the first start; defer it.
    let mut deferred = None;
    for _ in 0..100 {
        let Some(c) = core.poll_command() else { break };
        if let Command::StartMigration(req) = &c {
            deferred = Some(req.clone());
            break;
        }
        if let Some(i) = w.answer(now, c) {
            core.handle_event(now, i);
        }
    }
    let req = deferred.expect("a start was asked");
    assert_eq!(req.attempt, 1);
    while core.poll_event().is_some() {}
    core.handle_event(
        now,
        Input::StartDeferred {
            vm: req.vm.clone(),
            attempt: 1,
            busy: vec![(HostId::new("b"), 1)],
        },
    );
    let v = outcome(&core, "web1");
    assert_eq!(v.phase, Phase::Queued);
    assert_eq!(v.waiting, Some(WaitReason::NoSlot));
    assert_eq!(
        v.attempts, 1,
        "the attempt number is used (numbers never repeat)"
    );
    // The other process's slot on b counts: nothing starts, nothing is looked up (no failure).
    assert_eq!((host(&core, "b").foreign, host(&core, "b").ours), (1, 0));
    assert_eq!(host(&core, "a").ours, 0, "the source's slot was given back");
    let cmds: Vec<Command> = std::iter::from_fn(|| core.poll_command()).collect();
    assert!(
        cmds.iter()
            .all(|c| !matches!(c, Command::StartMigration(_) | Command::Locate { .. })),
        "{cmds:?}"
    );
    let events: Vec<EventKind> = std::iter::from_fn(|| core.poll_event())
        .map(|e| e.kind)
        .collect();
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, EventKind::AttemptFailed { .. })),
        "{events:?}"
    );
    assert!(events.contains(&EventKind::Waiting {
        vm: req.vm.clone(),
        reason: WaitReason::NoSlot
    }));
    for c in cmds {
        if let Some(i) = w.answer(now, c) {
            core.handle_event(now, i);
        }
    }
    // b's next listing shows it free: the VM starts again (attempt 2) and moves, though
    // max_attempts is 1.
    let ev = run(&mut core, &mut w, now, |_, _, _| {});
    let v = outcome(&core, "web1");
    assert_eq!(v.phase, Phase::Moved, "{ev:?}");
    assert_eq!(v.attempts, 2);
}

#[test]
fn a_deferral_for_an_older_attempt_or_an_unknown_host_changes_nothing() {
    let mut w = two_hosts();
    w.add_vm("a", vm("web1", PowerState::Running));
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    core.handle_event(
        Time::ZERO,
        Input::StartDeferred {
            vm: VmId::new("id-web1"),
            attempt: 7,
            busy: vec![(HostId::new("nowhere"), 3)],
        },
    );
    run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    let v = outcome(&core, "web1");
    assert_eq!((v.phase, v.attempts), (Phase::Moved, 1));
}

#[test]
fn a_deferral_while_the_run_stops_cancels_the_vm() {
    let mut w = two_hosts();
    w.add_vm("a", vm("web1", PowerState::Running));
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    let now = Time::ZERO;
    let mut start = None;
    for _ in 0..100 {
        let Some(c) = core.poll_command() else { break };
        if let Command::StartMigration(req) = &c {
            start = Some(req.clone());
            break;
        }
        if let Some(i) = w.answer(now, c) {
            core.handle_event(now, i);
        }
    }
    let req = start.unwrap();
    core.handle_event(
        now,
        Input::Stop {
            abort_running: false,
        },
    );
    core.handle_event(
        now,
        Input::StartDeferred {
            vm: req.vm.clone(),
            attempt: req.attempt,
            busy: vec![],
        },
    );
    assert_eq!(outcome(&core, "web1").phase, Phase::Cancelled);
}
