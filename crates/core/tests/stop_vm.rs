//! One VM's move stopped by an operator (`Input::StopVm`: `vmove skip RUN VM`, `vmove abort
//! RUN VM`): a queued VM is not moved and ends `Cancelled(Skipped)` naming who and when; a
//! running one is refused a skip, or aborted (back on its source, not retried); a VM that
//! already moved is refused; the rest of the run goes on.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use proptest::prelude::*;
use vmove_core::*;

/// Feeds every command the core has until it has none (no time passes).
fn drain(core: &mut Core, w: &mut World, now: Time) {
    for _ in 0..10 {
        while let Some(c) = core.poll_command() {
            if let Some(i) = w.answer(now, c) {
                core.handle_event(now, i);
            }
        }
    }
}

fn stop_vm(name: &str, abort: bool) -> Input {
    Input::StopVm {
        vm: VmId::new(format!("id-{name}")),
        abort_running: abort,
        by: "ops@admin-1".into(),
        at: "2026-12-03T18:00:00Z".into(),
    }
}

/// Five VMs on `a` (two slots), moving to `b`; v0 and v1 are running after the first steps.
fn started() -> (Core, World) {
    let mut w = two_hosts();
    for i in 0..5 {
        w.add_vm("a", vm(&format!("v{i}"), PowerState::Running));
    }
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    drain(&mut core, &mut w, Time::ZERO);
    assert_eq!(w.migs.len(), 2, "two migrations run");
    (core, w)
}

fn running_names(w: &World) -> Vec<String> {
    let mut names: Vec<String> = w
        .migs
        .keys()
        .map(|id| id.as_str().trim_start_matches("id-").to_owned())
        .collect();
    names.sort();
    names
}

fn queued_name(core: &Core) -> String {
    core.snapshot(Time::ZERO)
        .vms
        .iter()
        .find(|v| v.phase == Phase::Queued)
        .unwrap()
        .name
        .clone()
}

#[test]
fn skip_of_a_queued_vm_cancels_it_naming_who_and_when_and_the_rest_move() {
    let (mut core, mut w) = started();
    let victim = queued_name(&core);
    core.handle_event(Time(10), stop_vm(&victim, false));
    let events = run(&mut core, &mut w, Time(10), |_, _, _| {});
    let v = outcome(&core, &victim);
    assert_eq!(v.phase, Phase::Cancelled);
    let reason = v.reason.clone().unwrap();
    assert_eq!(
        reason,
        Reason::Skipped {
            by: "ops@admin-1".into(),
            at: "2026-12-03T18:00:00Z".into(),
            aborted: false
        }
    );
    assert!(
        reason
            .to_string()
            .contains("skipped by ops@admin-1 at 2026-12-03T18:00:00Z")
    );
    assert_eq!(v.attempts, 0, "never started");
    assert_eq!(w.find(&v.id)[0].0, HostId::new("a"), "still on its source");
    let (m, u, c) = core.snapshot(Time::ZERO).counts();
    assert_eq!((m, u, c), (4, 0, 1), "the others moved");
    assert!(
        !vm_events(&events, v.id.as_str())
            .iter()
            .any(|k| matches!(k, EventKind::AttemptStarted { .. })),
        "never started"
    );
}

#[test]
fn skip_of_a_running_vm_is_refused_and_it_moves() {
    let (mut core, mut w) = started();
    let running = running_names(&w)[0].clone();
    core.handle_event(Time(10), stop_vm(&running, false));
    let mut said = Vec::new();
    while let Some(e) = core.poll_event() {
        said.push(e.kind);
    }
    assert!(
        said.iter().any(|k| matches!(
            k,
            EventKind::VmStopAsked { refused: Some(why), abort_running: false, .. }
                if why.contains("already started") && why.contains("vmove abort")
        )),
        "{said:?}"
    );
    assert!(core.poll_command().is_none(), "nothing asked of the hosts");
    run(&mut core, &mut w, Time(10), |_, _, _| {});
    assert_eq!(outcome(&core, &running).phase, Phase::Moved);
    let (m, u, c) = core.snapshot(Time::ZERO).counts();
    assert_eq!((m, u, c), (5, 0, 0));
}

#[test]
fn abort_of_a_running_vm_aborts_its_migration_keeps_it_on_its_source_and_does_not_retry() {
    let (mut core, mut w) = started();
    let running = running_names(&w)[0].clone();
    let id = VmId::new(format!("id-{running}"));
    core.handle_event(Time(1000), stop_vm(&running, true));
    let mut aborts = 0;
    let events = run(&mut core, &mut w, Time(1000), |_, _, c| {
        if let Command::AbortMigration { request, .. } = c
            && request.vm == id
        {
            aborts += 1;
        }
    });
    assert_eq!(aborts, 1, "its migration was aborted through the driver");
    let v = outcome(&core, &running);
    assert_eq!(v.phase, Phase::Cancelled);
    assert!(matches!(
        v.reason,
        Some(Reason::Skipped { aborted: true, .. })
    ));
    assert_eq!(v.attempts, 1, "not retried");
    let on = w.find(&id);
    assert_eq!(on.len(), 1);
    assert_eq!(on[0].0, HostId::new("a"), "back on its source");
    assert_eq!(
        on[0].1.power,
        PowerState::Running,
        "running as its owner left it"
    );
    let kinds = vm_events(&events, id.as_str());
    let asked = kinds
        .iter()
        .position(|k| matches!(k, EventKind::VmStopAsked { refused: None, .. }))
        .expect("the stop was accepted");
    assert!(
        !kinds[asked..]
            .iter()
            .any(|k| matches!(k, EventKind::AttemptStarted { .. })),
        "no new attempt after the abort: {kinds:?}"
    );
    let (m, u, c) = core.snapshot(Time::ZERO).counts();
    assert_eq!((m, u, c), (4, 0, 1), "the others moved");
}

#[test]
fn abort_of_a_queued_vm_is_a_skip() {
    let (mut core, mut w) = started();
    let victim = queued_name(&core);
    core.handle_event(Time(10), stop_vm(&victim, true));
    run(&mut core, &mut w, Time(10), |_, _, _| {});
    let v = outcome(&core, &victim);
    assert_eq!(v.phase, Phase::Cancelled);
    assert!(matches!(
        v.reason,
        Some(Reason::Skipped { aborted: false, .. })
    ));
}

#[test]
fn stop_of_an_unknown_or_ended_vm_changes_nothing() {
    let (mut core, mut w) = started();
    core.handle_event(Time(10), stop_vm("nope", true));
    assert!(core.poll_command().is_none());
    while let Some(e) = core.poll_event() {
        assert!(!matches!(e.kind, EventKind::VmStopAsked { .. }), "{e:?}");
    }
    run(&mut core, &mut w, Time(10), |_, _, _| {});
    let before = core.snapshot(Time::ZERO);
    core.handle_event(Time(999_999), stop_vm("v0", true));
    assert!(core.poll_command().is_none());
    assert!(core.poll_event().is_none(), "an ended VM is left alone");
    assert_eq!(core.snapshot(Time::ZERO).counts(), before.counts());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whenever it is asked, and whatever it asks, a per-VM stop leaves every VM on exactly one
    /// host and running; the VM stopped either ended `Cancelled(Skipped)` on its source, or was
    /// refused (already started for a skip, already moved) and moved; the others moved.
    #[test]
    fn a_stop_of_one_vm_at_any_time_leaves_each_vm_on_one_host(
        at in 0u64..90_000,
        which in 0usize..5,
        abort in any::<bool>(),
    ) {
        let name = format!("v{which}");
        let mut w = two_hosts();
        for i in 0..5 {
            w.add_vm("a", vm(&format!("v{i}"), PowerState::Running));
        }
        let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
        let events = run_with_input_at(&mut core, &mut w, Time::ZERO, Time(at), stop_vm(&name, abort));
        prop_assert!(core.is_finished());
        for i in 0..5 {
            let id = VmId::new(format!("id-v{i}"));
            let on = w.find(&id);
            prop_assert_eq!(on.len(), 1, "v{} on {:?}", i, on);
            prop_assert_eq!(&on[0].1.power, &PowerState::Running);
            let v = outcome(&core, &format!("v{i}"));
            if i == which {
                match v.phase {
                    Phase::Cancelled => {
                        prop_assert!(matches!(v.reason, Some(Reason::Skipped { .. })), "{:?}", v.reason);
                        prop_assert_eq!(&on[0].0, &HostId::new("a"));
                    }
                    Phase::Moved => prop_assert_eq!(&on[0].0, &HostId::new("b")),
                    other => prop_assert!(false, "v{} ended {:?}", i, other),
                }
                // Accepted: no attempt starts after it.
                let kinds = vm_events(&events, id.as_str());
                if let Some(pos) = kinds.iter().position(|k| matches!(k, EventKind::VmStopAsked { refused: None, .. })) {
                    // (It may still end moved: an abort that crossed the migration's end.)
                    let restarted = kinds[pos..]
                        .iter()
                        .any(|k| matches!(k, EventKind::AttemptStarted { .. }));
                    prop_assert!(!restarted, "an attempt started after the accepted stop");
                }
            } else {
                prop_assert_eq!(v.phase, Phase::Moved);
            }
        }
    }
}

/// `vmove abort RUN VM` on a VM whose migration was switched to post-copy: refused, saying
/// why (the guest already runs on the destination; an abort would lose it), nothing asked of
/// the hosts, and the VM ends moved. A stall drives the watchdog to its aids here (the world
/// applies them all).
#[test]
fn abort_of_a_vm_in_post_copy_is_refused_and_it_moves() {
    let mut w = two_hosts();
    w.add_vm("a", vm("hot", PowerState::Running));
    w.stall.push("hot".into());
    let mut s = spec("a", &["b"], &["a", "b"]);
    s.settings.stall_action = WatchdogAction::Escalate;
    let mut core = Core::new(s, Time::ZERO).unwrap();
    let mut now = Time::ZERO;
    let mut aids = Vec::new();
    while aids.last() != Some(&ConvergenceAid::PostCopy) {
        while let Some(c) = core.poll_command() {
            let answer = match &c {
                Command::Converge { request, aid, .. } => {
                    aids.push(*aid);
                    Some(Input::Converged {
                        vm: request.vm.clone(),
                        attempt: request.attempt,
                        result: Ok(true),
                    })
                }
                _ => w.answer(now, c),
            };
            if let Some(i) = answer {
                core.handle_event(now, i);
            }
        }
        now = core.poll_timeout().expect("a timer is set");
        assert!(now < Time(3_600_000), "no aid asked in an hour");
        core.handle_timeout(now);
    }
    assert_eq!(aids.len(), 6, "{aids:?}");
    core.handle_event(now, stop_vm("hot", true));
    let mut said = Vec::new();
    while let Some(e) = core.poll_event() {
        said.push(e.kind);
    }
    assert!(
        said.iter().any(|k| matches!(
            k,
            EventKind::VmStopAsked { refused: Some(why), abort_running: true, .. }
                if why.contains("post-copy")
        )),
        "{said:?}"
    );
    w.stall.clear();
    let mut aborted = false;
    run(&mut core, &mut w, now, |_, _, c| {
        aborted |= matches!(c, Command::AbortMigration { .. });
    });
    assert!(!aborted, "its migration was aborted");
    assert_eq!(outcome(&core, "hot").phase, Phase::Moved);
}
