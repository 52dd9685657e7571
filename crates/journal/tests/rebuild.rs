//! The resume facts computed from a journal cut at the points that matter.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use vmove_core::{
    Command, ErrorClass, Failure, HostId, Input, LeftoverKind, MigrationHandle, Phase,
    RecoveredState, Selection, VmId,
};
use vmove_journal::{EntryBody, Journal, RunRecord, rebuild, rebuild::in_flight, recovered};

fn journal_with_script() -> (tempfile::TempDir, Journal, RunRecord) {
    let (dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, other(1));
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    write_steps(&mut j, "r1", &script("r1", "u", 2), &mut Vec::new());
    let full = j.load_run("r1").unwrap();
    (dir, j, full)
}

/// The sequence number of the first entry after `after` that matches.
fn seq_of(rec: &RunRecord, after: u64, f: impl Fn(&EntryBody) -> bool) -> u64 {
    rec.entries
        .iter()
        .find(|e| e.seq > after && f(&e.body))
        .unwrap()
        .seq
}

#[test]
fn a_finished_move_has_its_last_attempt_handle_proof_and_removed_leftovers() {
    let (_d, _j, full) = journal_with_script();
    let facts = rebuild(&full);
    let v = &facts[&VmId::new("u-0")];
    assert_eq!(v.name, "web0");
    assert_eq!(v.phase, Phase::Moved);
    assert_eq!(v.attempt, 2);
    assert_eq!(v.last_request.as_ref().map(|r| r.attempt), Some(2));
    assert_eq!(v.handle, Some(MigrationHandle("job-u-0-2".into())));
    assert!(v.start_answered && v.has_proof() && v.verified_event);
    assert_eq!(v.removed_leftovers.len(), 1);
    assert_eq!(v.removed_leftovers[0].kind, LeftoverKind::DiskImage);
    assert!(v.open_intents.is_empty());
    assert!(in_flight(&full).is_empty());
}

#[test]
fn a_cut_after_a_start_intent_leaves_the_attempt_open_with_no_handle() {
    let (_d, j, full) = journal_with_script();
    // The second StartMigration of u-0 (attempt 2).
    let first = seq_of(&full, 0, |b| {
        matches!(b, EntryBody::Intent(Command::StartMigration(_)))
    });
    let second = seq_of(&full, first, |b| {
        matches!(b, EntryBody::Intent(Command::StartMigration(_)))
    });
    let rec = j.load_run_until("r1", second).unwrap();
    let v = &rebuild(&rec)[&VmId::new("u-0")];
    assert_eq!(v.phase, Phase::Starting);
    assert_eq!(v.attempt, 2);
    assert_eq!(
        v.handle, None,
        "attempt 1 had no handle, and attempt 2's start is unanswered"
    );
    assert!(!v.start_answered);
    assert_eq!(v.open_intents.len(), 1);
    assert!(matches!(&v.open_intents[0].command, Command::StartMigration(r) if r.attempt == 2));
    assert_eq!(
        in_flight(&rec).len(),
        1,
        "u-1 is not selected yet at this cut"
    );
}

#[test]
fn a_cut_after_the_proof_but_before_cleanup_has_the_proof_and_nothing_removed() {
    let (_d, j, full) = journal_with_script();
    let verified = seq_of(&full, 0, |b| {
        matches!(
            b,
            EntryBody::Outcome {
                input: Input::Verified { .. },
                ..
            }
        )
    });
    let rec = j.load_run_until("r1", verified).unwrap();
    let v = &rebuild(&rec)[&VmId::new("u-0")];
    assert_eq!(v.phase, Phase::Verifying);
    assert!(v.has_proof());
    assert!(!v.verified_event);
    assert!(v.removed_leftovers.is_empty());
    assert!(v.open_intents.is_empty());
}

#[test]
fn a_cut_after_a_removal_intent_reports_it_open_and_not_removed() {
    let (_d, j, full) = journal_with_script();
    let remove = seq_of(&full, 0, |b| {
        matches!(b, EntryBody::Intent(Command::RemoveLeftover { .. }))
    });
    let rec = j.load_run_until("r1", remove).unwrap();
    let v = &rebuild(&rec)[&VmId::new("u-0")];
    assert_eq!(v.phase, Phase::CleaningUp);
    assert!(
        v.removed_leftovers.is_empty(),
        "unanswered: only the host can tell"
    );
    assert!(
        matches!(v.open_intents.as_slice(), [i] if matches!(i.command, Command::RemoveLeftover { .. }))
    );
    assert!(v.has_proof());
}

#[test]
fn every_cut_of_a_run_rebuilds_without_going_back() {
    let (_d, j, full) = journal_with_script();
    let mut last_attempt = 0;
    for cut in 0..=full.entries.len() as u64 {
        let rec = j.load_run_until("r1", cut).unwrap();
        let facts = rebuild(&rec);
        if let Some(v) = facts.get(&VmId::new("u-0")) {
            assert!(v.attempt >= last_attempt, "cut {cut}: attempt went back");
            last_attempt = v.attempt;
            assert!(
                v.open_intents.len() <= 1,
                "the script answers each intent before the next"
            );
        }
    }
    assert_eq!(last_attempt, 2);
}

fn state_of(rec: &RunRecord, vm: &str) -> (RecoveredState, u32) {
    let r = recovered(rec)
        .into_iter()
        .find(|r| r.id == VmId::new(vm))
        .unwrap();
    (r.state, r.attempts)
}

#[test]
fn recovered_hands_the_core_moved_vms_with_their_destination() {
    let (_d, _j, full) = journal_with_script();
    let all = recovered(&full);
    assert_eq!(
        all.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["web0", "web1"]
    );
    assert_eq!(all[0].state, RecoveredState::Moved(HostId::new("b")));
    assert_eq!((all[0].attempts, all[1].attempts), (2, 1));
    assert_eq!(all[0].destinations, vec![HostId::new("b")]);
    assert_eq!(all[0].source, HostId::new("a"));
    assert_eq!(all[0].memory_bytes, 1 << 30);
}

#[test]
fn recovered_marks_an_unanswered_start_in_flight_so_the_core_locates_it_first() {
    let (_d, j, full) = journal_with_script();
    let first = seq_of(&full, 0, |b| {
        matches!(b, EntryBody::Intent(Command::StartMigration(_)))
    });
    let rec = j.load_run_until("r1", first).unwrap();
    match state_of(&rec, "u-0") {
        (RecoveredState::InFlight(req), 1) => assert_eq!(req.attempt, 1),
        other => panic!("expected in flight at attempt 1, got {other:?}"),
    }
}

#[test]
fn recovered_keeps_a_failed_start_in_flight_until_the_failure_was_settled_on_the_hosts() {
    let (_d, j, full) = journal_with_script();
    // The start's failed outcome is recorded, but the core had not yet looked at the hosts.
    let outcome = seq_of(&full, 0, |b| {
        matches!(
            b,
            EntryBody::Outcome {
                input: Input::MigrationStarted { result: Err(_), .. },
                ..
            }
        )
    });
    let rec = j.load_run_until("r1", outcome).unwrap();
    assert!(matches!(
        state_of(&rec, "u-0"),
        (RecoveredState::InFlight(_), 1)
    ));
    // Once AttemptFailed is recorded, it waits to be retried: its attempt counted...
    let settled = seq_of(
        &full,
        0,
        |b| matches!(b, EntryBody::Event(e) if matches!(e.kind, vmove_core::EventKind::AttemptFailed { .. })),
    );
    // ... and until the retry may come (its backoff), which resume waits out.
    let retry_at = full
        .entries
        .iter()
        .find_map(|e| match &e.body {
            EntryBody::Event(ev) if e.seq == settled => match &ev.kind {
                vmove_core::EventKind::AttemptFailed { retry_at, .. } => *retry_at,
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    let rec = j.load_run_until("r1", settled + 1).unwrap();
    assert_eq!(
        state_of(&rec, "u-0"),
        (RecoveredState::BackingOff(retry_at), 1)
    );
    // Phase "starting" again for attempt 2, but its start intent is not written yet: queued.
    let second_starting = seq_of(
        &full,
        settled + 2,
        |b| matches!(b, EntryBody::Event(e) if matches!(e.kind, vmove_core::EventKind::Transition { to: Phase::Starting, .. })),
    );
    let rec = j.load_run_until("r1", second_starting).unwrap();
    assert_eq!(rebuild(&rec)[&VmId::new("u-0")].phase, Phase::Starting);
    assert_eq!(state_of(&rec, "u-0"), (RecoveredState::Queued, 1));
}

#[test]
fn recovered_keeps_a_verified_move_in_flight_until_its_cleanup_is_over() {
    let (_d, j, full) = journal_with_script();
    let remove = seq_of(&full, 0, |b| {
        matches!(b, EntryBody::Intent(Command::RemoveLeftover { .. }))
    });
    let rec = j.load_run_until("r1", remove).unwrap();
    match state_of(&rec, "u-0") {
        (RecoveredState::InFlight(req), 2) => assert_eq!(req.destination, HostId::new("b")),
        other => panic!("expected in flight at attempt 2, got {other:?}"),
    }
}

/// Regression guard: a crash while the hosts were being looked at after an abort (journal phase
/// `Locating`, the abort's intent recorded) was recovered as a plain move in flight, so a job
/// still running was re-adopted as if its start had been unclear, instead of being aborted
/// again; only the phase `Aborting` itself said an abort had been asked.
#[test]
fn recovered_remembers_an_abort_asked_for_the_attempt_after_the_phase_moved_on() {
    use vmove_core::{ErrorClass, Failure};
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, other(1));
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    let vm = VmId::new("u-0");
    let req = request(&vm, "web0", 1, "r1");
    let handle = MigrationHandle("job-1".into());
    let mut steps = started(&vm, &req, &handle);
    steps.extend([
        transition(1, &vm, Phase::Starting, Phase::Confirming),
        transition(5, &vm, Phase::Confirming, Phase::Migrating),
        // The stall watchdog: the abort asked and answered (unknown), then the look at the hosts.
        transition(150, &vm, Phase::Migrating, Phase::Aborting),
        Step::Intent(Command::AbortMigration {
            request: req.clone().into(),
            handle,
        }),
        Step::Outcome(
            1,
            Input::AbortDone {
                vm: vm.clone(),
                attempt: 1,
                result: Err(Failure::new(ErrorClass::Indeterminate, "no answer")),
            },
        ),
        transition(151, &vm, Phase::Aborting, Phase::Locating),
    ]);
    write_steps(&mut j, "r1", &steps, &mut Vec::new());
    let rec = j.load_run("r1").unwrap();
    assert_eq!(rebuild(&rec)[&vm].phase, Phase::Locating);
    assert_eq!(state_of(&rec, "u-0"), (RecoveredState::Aborting(req), 1));
}

/// Attempts vmove's own crashes interrupted (`AttemptFailed` with `interrupted`) survive the
/// next crash: resume hands the core their count, so that they never use up `max_attempts`
/// (three crashes in a row used to make a VM "unmigratable: failed 3 attempts"). A failure of
/// the VM's own (`interrupted` false, or absent in older journals) is not among them.
#[test]
fn attempts_interrupted_by_a_crash_are_rebuilt_as_uncounted() {
    use vmove_core::{ErrorClass, EventKind};
    let (_d, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, other(1));
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    let vm = VmId::new("u-0");
    let failed = |attempt: u32, interrupted: bool| {
        ev(
            10 + u64::from(attempt),
            EventKind::AttemptFailed {
                vm: vm.clone(),
                attempt,
                class: if interrupted {
                    ErrorClass::Indeterminate
                } else {
                    ErrorClass::Transient
                },
                error: "x".into(),
                retry_at: None,
                refused_by: None,
                forgiven: false,
                interrupted,
            },
        )
    };
    let steps = vec![
        selected(1, &vm),
        Step::Intent(Command::StartMigration(
            request(&vm, "web0", 1, "r1").into(),
        )),
        failed(1, true),
        Step::Intent(Command::StartMigration(
            request(&vm, "web0", 2, "r1").into(),
        )),
        failed(2, false),
        Step::Intent(Command::StartMigration(
            request(&vm, "web0", 3, "r1").into(),
        )),
        failed(3, true),
        Step::Intent(Command::StartMigration(
            request(&vm, "web0", 4, "r1").into(),
        )),
    ];
    write_steps(&mut j, "r1", &steps, &mut Vec::new());
    let rec = j.load_run("r1").unwrap();
    assert_eq!(rebuild(&rec)[&vm].uncounted, vec![1, 3]);
    let r = recovered(&rec);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].attempts, r[0].uncounted), (4, 2));
    assert!(matches!(r[0].state, RecoveredState::InFlight(ref q) if q.attempt == 4));
}

#[test]
fn a_deferred_start_is_answered_and_does_not_count() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, other(1));
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    let vm = VmId::new("u-0");
    let steps = vec![
        ev(
            1,
            vmove_core::EventKind::Selected {
                vm: vm.clone(),
                name: "web0".into(),
                source: "a".into(),
                mode: vmove_core::MigrationMode::Live,
                memory_bytes: 1,
                disk_bytes: 1,
            },
        ),
        transition(2, &vm, Phase::Queued, Phase::Starting),
        Step::Intent(Command::StartMigration(
            request(&vm, "web0", 1, "r1").into(),
        )),
        Step::Outcome(
            0,
            Input::StartDeferred {
                vm: vm.clone(),
                attempt: 1,
                busy: vec![(HostId::new("b"), 1)],
            },
        ),
        transition(3, &vm, Phase::Starting, Phase::Queued),
    ];
    write_steps(&mut j, "r1", &steps, &mut Vec::new());
    let rec = j.load_run("r1").unwrap();
    let v = &rebuild(&rec)[&vm];
    assert_eq!((v.phase, v.attempt), (Phase::Queued, 1));
    assert!(v.start_answered && v.handle.is_none());
    assert_eq!(v.uncounted, vec![1], "not the VM's failure");
    assert!(
        !v.maybe_in_flight(),
        "nothing to look for: it never started"
    );
    let r = recovered(&rec).into_iter().find(|r| r.id == vm).unwrap();
    assert_eq!((r.attempts, r.uncounted), (1, 1));
    assert!(matches!(r.state, RecoveredState::Queued), "{:?}", r.state);
}

/// The convergence aids of the attempt in flight reach the core's resume: an aid applied, one
/// refused, and one asked with no answer recorded (vmove died while asking it). Post-copy
/// asked and unanswered counts as applied: the guest may already run on the destination, and
/// the resumed run must never abort such a migration. A later attempt starts with none.
#[test]
fn recovered_carries_the_aids_asked_for_the_attempt_in_flight() {
    use vmove_core::ConvergenceAid;
    use vmove_core::machine::{AidAnswer, AidsAsked};
    let clock = clock();
    let vm = VmId::new("u-0");
    let req = request(&vm, "web0", 1, "r1");
    let handle = MigrationHandle("job-1".into());
    let converge = |aid| {
        Step::Intent(Command::Converge {
            request: req.clone().into(),
            handle: handle.clone(),
            aid,
        })
    };
    // `k`: the intent answered, in the order written (0 is the start).
    let answered_with = |k, result| {
        Step::Outcome(
            k,
            Input::Converged {
                vm: vm.clone(),
                attempt: 1,
                result,
            },
        )
    };
    let answered = |k, applied| answered_with(k, Ok(applied));
    let mut start = started(&vm, &req, &handle);
    start.extend([
        transition(1, &vm, Phase::Starting, Phase::Confirming),
        transition(5, &vm, Phase::Confirming, Phase::Migrating),
    ]);
    let aids_at = |steps: &[Step]| {
        let (_dir, path) = temp_path();
        let mut j = open_as(&path, &clock, other(1));
        j.create_run(&new_run("r1", Selection::All)).unwrap();
        write_steps(&mut j, "r1", steps, &mut Vec::new());
        let rec = j.load_run("r1").unwrap();
        let r = recovered(&rec).into_iter().next().unwrap();
        assert!(
            matches!(r.state, RecoveredState::InFlight(_)),
            "{:?}",
            r.state
        );
        r.aids
    };
    // How many were asked, and whether the attempt may be in post-copy.
    let facts = |steps: &[Step]| {
        let aids = aids_at(steps);
        (aids.asked(), aids.post_copy())
    };
    let mut steps = start.clone();
    assert_eq!(aids_at(&steps), AidsAsked::default());
    steps.extend([converge(ConvergenceAid::AutoConverge), answered(1, true)]);
    assert_eq!(facts(&steps), (1, false));
    // Post-copy refused: asked, not applied.
    let mut refused = steps.clone();
    refused.extend([converge(ConvergenceAid::PostCopy), answered(2, false)]);
    assert_eq!(facts(&refused), (2, false));
    // Post-copy refused for a passing reason (QEMU, while libvirt still copies the disks): not
    // counted, as the running core does not count it, so the resumed watch asks it again.
    // Before, it counted as asked (2), and the resumed ladder was at its end.
    let mut for_now = steps.clone();
    for_now.extend([
        converge(ConvergenceAid::PostCopy),
        answered_with(2, Err(Failure::new(ErrorClass::Transient, "cannot switch to post-copy: Postcopy must be started after migration has been started"))),
    ]);
    assert_eq!(facts(&for_now), (1, false));
    // Refused for good (a permanent error): asked, not applied, as `Ok(false)`.
    let mut for_good = steps.clone();
    for_good.extend([
        converge(ConvergenceAid::PostCopy),
        answered_with(
            2,
            Err(Failure::new(
                ErrorClass::Permanent,
                "post-copy not supported",
            )),
        ),
    ]);
    assert_eq!(facts(&for_good), (2, false));
    // Each answer as it was, for the failure a resumed watch gives when no aid helps (before,
    // only `Some(false)` was kept, and the resumed failure named only the aids answered after
    // the resume).
    assert_eq!(
        aids_at(&for_good).answers,
        [
            (ConvergenceAid::AutoConverge, AidAnswer::Applied),
            (
                ConvergenceAid::PostCopy,
                AidAnswer::Failed("post-copy not supported".into())
            ),
        ]
    );
    assert_eq!(
        aids_at(&refused).answers[1],
        (ConvergenceAid::PostCopy, AidAnswer::NotApplied)
    );
    // Post-copy applied, and asked with no answer: both in post-copy for the resume.
    let mut applied = steps.clone();
    applied.extend([converge(ConvergenceAid::PostCopy), answered(2, true)]);
    let mut unanswered = steps.clone();
    unanswered.push(converge(ConvergenceAid::PostCopy));
    for s in [&applied, &unanswered] {
        assert_eq!(facts(s), (2, true));
    }
    assert_eq!(
        aids_at(&unanswered).answers[1],
        (ConvergenceAid::PostCopy, AidAnswer::Unanswered)
    );
}
