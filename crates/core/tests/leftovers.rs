//! The engine and what failed attempts leave behind, and what a person sees while vmove waits.
#![allow(clippy::unwrap_used)]
use crate::common::*;
use vmove_core::*;

// ---- leftovers of failed attempts, and what a person sees while vmove waits ----------------

/// Regression guard (issue 3, the netns lab): after vmove gave a VM up on a cut link, the partial
/// image (proven ours) stayed on the destination; the next run's start was refused (path taken),
/// the same run removed that leftover, but the destination was already counted as refused, so
/// the VM was given up ("every destination refused it") and only the run after moved it. Now the
/// refusal does not count when the clean-up that follows it removed what was there.
#[test]
fn a_destination_refused_only_because_of_our_own_leftover_is_retried_after_it_is_removed() {
    let mut w = two_hosts();
    w.add_vm("a", vm("vm07", PowerState::Running));
    w.refuse_taken_paths = true;
    let left = Leftover {
        host: HostId::new("b"),
        kind: LeftoverKind::DiskImage,
        what: "/images/vm07.qcow2".into(),
    };
    w.leftovers.insert(HostId::new("b"), vec![left.clone()]);
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    let ev = run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    let v = outcome(&core, "vm07");
    assert_eq!(v.phase, Phase::Moved, "{:?}", v.reason);
    assert_eq!(v.destination, Some(HostId::new("b")));
    assert_eq!(v.attempts, 2);
    assert_eq!(
        w.removed.first(),
        Some(&(left, LeftoverContext::AfterFailedAttempt)),
        "the leftover on the destination is removed before the retry"
    );
    // The failed attempt says why it is retried at once, at the same destination.
    let failed = vm_events(&ev, "id-vm07")
        .into_iter()
        .find_map(|k| match k {
            EventKind::AttemptFailed {
                class,
                error,
                retry_at,
                ..
            } => Some((*class, error.clone(), *retry_at)),
            _ => None,
        })
        .unwrap();
    assert_eq!(failed.0, ErrorClass::DestinationRefused);
    assert!(
        failed.1.contains("does not count"),
        "AttemptFailed: {}",
        failed.1
    );
    assert!(failed.2.is_some());
}

/// The forgiveness above cannot loop: a destination that refuses again after a clean-up that
/// removed something counts as refused the second time (once per destination).
#[test]
fn a_refusal_forgiven_once_counts_the_second_time_even_if_the_clean_up_removed_something() {
    let mut w = two_hosts();
    w.add_vm("a", vm("vm08", PowerState::Running));
    w.refused_start_leaves = true;
    w.start_failures
        .insert("vm08".into(), vec![ErrorClass::DestinationRefused; 3]);
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    let v = outcome(&core, "vm08");
    assert_eq!(v.phase, Phase::Unmigratable);
    assert!(
        matches!(v.reason, Some(Reason::AllDestinationsRefused(_))),
        "{:?}",
        v.reason
    );
    assert_eq!(v.attempts, 2, "one forgiven refusal, then it counts");
    assert_eq!(w.removed.len(), 2, "both attempts' leftovers removed");
}

/// Issue 3: when a VM is given up after a failed attempt and what that attempt left on the
/// destination could not be removed, the run says what is left where (before the outcome).
#[test]
fn giving_up_with_a_leftover_that_could_not_be_removed_names_it() {
    let mut w = two_hosts();
    w.add_vm("a", vm("vm09", PowerState::Running));
    w.start_failures
        .insert("vm09".into(), vec![ErrorClass::Permanent]);
    w.leftovers.insert(
        HostId::new("b"),
        vec![Leftover {
            host: HostId::new("b"),
            kind: LeftoverKind::DiskImage,
            what: "/images/vm09.qcow2".into(),
        }],
    );
    w.remove_fails.push("/images/vm09.qcow2".into());
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    let ev = run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    assert_eq!(outcome(&core, "vm09").phase, Phase::Unmigratable);
    let kinds = vm_events(&ev, "id-vm09");
    let at = kinds
        .iter()
        .position(|k| matches!(k, EventKind::LeftBehind { .. }))
        .expect("a LeftBehind event");
    match kinds[at] {
        EventKind::LeftBehind {
            host, what, why, ..
        } => {
            assert_eq!(host.as_str(), "b");
            assert_eq!(what, &vec!["/images/vm09.qcow2".to_string()]);
            assert!(why.contains("does not answer"), "{why}");
        }
        _ => unreachable!(),
    }
    assert!(
        matches!(kinds[at + 1], EventKind::Unmigratable { .. }),
        "LeftBehind comes right before the outcome: {:?}",
        kinds[at + 1]
    );
}

/// Issue 3: the abort of a stalled migration whose job keeps running is said when asked and at
/// every look that finds the job still running; when vmove gives up, it says the destination
/// was not looked at for what the attempt left.
#[test]
fn an_abort_that_never_ends_is_said_at_every_look_and_the_destination_named_unchecked() {
    let mut w = two_hosts();
    w.add_vm("a", vm("vm10", PowerState::Running));
    w.stall.push("vm10".into());
    w.slow_abort
        .insert("vm10".into(), std::time::Duration::from_secs(3600));
    let mut s = spec("a", &["b"], &["a", "b"]);
    s.settings.stall_timeout = std::time::Duration::from_secs(15);
    let mut core = Core::new(s, Time::ZERO).unwrap();
    let ev = run(&mut core, &mut w, Time::ZERO, |_, _, _| {});
    assert_eq!(outcome(&core, "vm10").phase, Phase::Unmigratable);
    let waits: Vec<(u32, u32)> = vm_events(&ev, "id-vm10")
        .into_iter()
        .filter_map(|k| match k {
            EventKind::AbortWaiting {
                round,
                look,
                looks,
                rounds,
                why,
                source,
                ..
            } => {
                assert_eq!((*looks, *rounds), (6, 3));
                assert!(why.starts_with("stalled"), "{why}");
                assert_eq!(source.as_str(), "a");
                Some((*round, *look))
            }
            _ => None,
        })
        .collect();
    let mut expected = vec![];
    for round in 1..=3 {
        expected.extend((0..6).map(|look| (round, look)));
    }
    assert_eq!(waits, expected);
    let kinds = vm_events(&ev, "id-vm10");
    let n = kinds.len();
    assert!(
        matches!(
            kinds[n - 2],
            EventKind::LeftBehind { what, why, .. }
                if what.is_empty() && why.contains("still running")
        ),
        "{:?}",
        kinds[n - 2]
    );
}

/// Issue 3: a locate that fails is said (with the try and when it is made again), not only
/// journaled.
#[test]
fn a_locate_that_does_not_answer_is_said_with_its_try_and_the_next_look() {
    let mut w = two_hosts();
    w.add_vm("a", vm("vm11", PowerState::Running));
    w.stall.push("vm11".into());
    w.locate_failures = 2;
    let mut s = spec("a", &["b"], &["a", "b"]);
    s.settings.stall_timeout = std::time::Duration::from_secs(15);
    let mut core = Core::new(s, Time::ZERO).unwrap();
    let ev = run(&mut core, &mut w, Time::ZERO, |_, w, c| {
        if matches!(c, Command::AbortMigration { .. }) {
            w.stall.clear();
        }
    });
    assert_eq!(outcome(&core, "vm11").phase, Phase::Moved);
    let fails: Vec<(Time, u32, u32, Option<Time>)> = ev
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::CallFailed {
                call,
                error,
                tries,
                of,
                retry_at,
                ..
            } => {
                assert_eq!(call, "locate");
                assert!(error.contains("`b`"), "{error}");
                Some((e.at, *tries, *of, *retry_at))
            }
            _ => None,
        })
        .collect();
    assert_eq!(fails.len(), 2, "{fails:?}");
    for (i, (at, tries, of, retry_at)) in fails.into_iter().enumerate() {
        assert_eq!((tries, of), (i as u32 + 1, 60));
        assert_eq!(retry_at, Some(at + std::time::Duration::from_secs(10)));
    }
}
