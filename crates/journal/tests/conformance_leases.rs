//! The journal's conformance suite, in-process: leases (a second holder, a stale lease, release,
//! finishing a run), stop requests and the VM guard between live runs.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use std::time::Duration;
use vmove_core::{Command, EventKind, Input, Selection, Time};
use vmove_journal::{Clock, Holder, JournalError, RunEnd, RunState};

fn me() -> Holder {
    Holder {
        pid: 100,
        host: "this-host".into(),
        started: None,
        boot: None,
    }
}

fn a_second_holder_is_refused_while_the_lease_is_valid_and_named_in_the_error() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut first = open_as(&path, &clock, me());
    let lease = first.create_run(&new_run("r1", Selection::All)).unwrap();
    assert_eq!(lease.expires_at, clock.now().after(Duration::from_secs(30)));
    first
        .record_intent("r1", Time(1), &Command::RefreshHost { host: "a".into() })
        .unwrap();

    let mut second = open_as(&path, &clock, other(200));
    let err = second.acquire("r1").unwrap_err();
    match &err {
        JournalError::LeaseHeld {
            run,
            pid,
            host,
            until,
            holder_gone,
        } => {
            assert!(
                !holder_gone,
                "a holder on another host is never known to be gone"
            );
            assert_eq!(
                (run.as_str(), *pid, host.as_str(), *until),
                ("r1", 100, "this-host", lease.expires_at)
            );
        }
        e => panic!("expected LeaseHeld, got {e}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("process 100")
            && msg.contains("this-host")
            && msg.contains("2026-01-01T00:00:30Z"),
        "{msg}"
    );
    // Nothing is written for a handle without the lease.
    let err = second
        .record_intent("r1", Time(2), &Command::RefreshHost { host: "a".into() })
        .unwrap_err();
    assert!(matches!(err, JournalError::LeaseNotHeld { .. }), "{err}");
    assert!(matches!(
        second.finish_run("r1", RunEnd::Finished).unwrap_err(),
        JournalError::LeaseNotHeld { .. }
    ));
    assert_eq!(second.load_run("r1").unwrap().entries.len(), 1);

    // A refresh keeps it held past the first expiry.
    clock.advance(Duration::from_secs(20));
    let refreshed = first.refresh_lease("r1").unwrap();
    assert_eq!(refreshed.acquired_at, lease.acquired_at);
    clock.advance(Duration::from_secs(20));
    assert!(matches!(
        second.acquire("r1").unwrap_err(),
        JournalError::LeaseHeld { .. }
    ));
}

fn a_stale_lease_is_taken_over_only_after_it_expires_and_the_old_holder_is_fenced_off() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut first = open_as(&path, &clock, me());
    first.create_run(&new_run("r1", Selection::All)).unwrap();
    let mut second = open_as(&path, &clock, other(200));
    clock.advance(Duration::from_secs(29));
    assert!(matches!(
        second.acquire("r1").unwrap_err(),
        JournalError::LeaseHeld { .. }
    ));
    // Expired, nobody took it: the holder may not start anything until it refreshes.
    clock.advance(Duration::from_secs(1));
    let err = first
        .record_intent("r1", Time(1), &Command::RefreshHost { host: "a".into() })
        .unwrap_err();
    assert!(matches!(err, JournalError::LeaseExpired { .. }), "{err}");
    // Taken over.
    let lease = second.acquire("r1").unwrap();
    assert_eq!(lease.holder, other(200));
    assert_eq!(second.run_summary("r1").unwrap().driver, other(200));
    // The old holder is fenced off: every write and refresh fails with LeaseLost.
    let err = first
        .record_event(
            "r1",
            &vmove_core::Event {
                at: Time(2),
                kind: EventKind::StopRequested {
                    abort_running: false,
                },
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, JournalError::LeaseLost { pid: 200, .. }),
        "{err}"
    );
    assert!(matches!(
        first.refresh_lease("r1").unwrap_err(),
        JournalError::LeaseLost { .. }
    ));
    assert!(matches!(
        first.acquire("r1").unwrap_err(),
        JournalError::LeaseHeld { pid: 200, .. }
    ));
    second
        .record_intent("r1", Time(3), &Command::RefreshHost { host: "a".into() })
        .unwrap();
    assert_eq!(second.load_run("r1").unwrap().entries.len(), 1);
}

fn release_lets_another_process_resume_at_once() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut first = open_as(&path, &clock, me());
    first.create_run(&new_run("r1", Selection::All)).unwrap();
    first.release("r1").unwrap();
    let mut second = open_as(&path, &clock, other(200));
    second.acquire("r1").unwrap();
    assert!(matches!(
        first
            .record_input(
                "r1",
                Time(1),
                &Input::Stop {
                    abort_running: true
                }
            )
            .unwrap_err(),
        JournalError::LeaseNotHeld { .. }
    ));
}

fn finish_run_ends_writes_and_drops_the_lease() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, me());
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    clock.advance(Duration::from_secs(5));
    j.finish_run(
        "r1",
        RunEnd::Failed("source host a could not be listed".into()),
    )
    .unwrap();
    let s = j.run_summary("r1").unwrap();
    assert_eq!(s.state, RunState::Failed);
    assert_eq!(
        s.detail.as_deref(),
        Some("source host a could not be listed")
    );
    assert_eq!(s.lease, None);
    assert!(s.finished_at.is_some());
    let err = j
        .record_input(
            "r1",
            Time(9),
            &Input::Stop {
                abort_running: false,
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::RunNotRunning {
                state: RunState::Failed,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        j.acquire("r1").unwrap_err(),
        JournalError::RunNotRunning { .. }
    ));
    assert!(matches!(
        j.request_stop("r1", false).unwrap_err(),
        JournalError::RunNotRunning { .. }
    ));
    assert!(matches!(
        j.create_run(&new_run("r1", Selection::All)).unwrap_err(),
        JournalError::RunExists(_)
    ));
}

fn stop_requests_come_from_any_process_and_now_is_never_downgraded() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut driver = open_as(&path, &clock, me());
    driver.create_run(&new_run("r1", Selection::All)).unwrap();
    assert_eq!(driver.stop_requested("r1").unwrap(), None);
    let mut cli = open_as(&path, &clock, other(300));
    let req = cli.request_stop("r1", false).unwrap();
    assert!(!req.abort_running);
    assert_eq!(driver.stop_requested("r1").unwrap(), Some(req));
    clock.advance(Duration::from_secs(1));
    assert!(cli.request_stop("r1", true).unwrap().abort_running);
    clock.advance(Duration::from_secs(1));
    let again = cli.request_stop("r1", false).unwrap();
    assert!(again.abort_running, "a plain stop must not undo --now");
    assert_eq!(
        driver
            .stop_requested("r1")
            .unwrap()
            .map(|r| r.abort_running),
        Some(true)
    );
    assert!(matches!(
        cli.stop_requested("nope").unwrap_err(),
        JournalError::UnknownRun(_)
    ));
}

fn a_run_overlapping_the_vms_of_a_live_run_is_refused_naming_the_vm_and_the_run() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut a = open_as(&path, &clock, me());
    a.create_run(&new_run("ra", Selection::Names(vec!["web*".into()])))
        .unwrap();
    // Before `ra` has selected anything, an overlapping selection on the same source is refused.
    let mut b = open_as(&path, &clock, other(200));
    let err = b
        .create_run(&new_run("rb", Selection::Names(vec!["web1".into()])))
        .unwrap_err();
    assert!(
        matches!(&err, JournalError::SelectionOverlap { other_run, source_host, .. } if other_run == "ra" && source_host == "a"),
        "{err}"
    );
    // A disjoint literal selection is fine.
    b.create_run(&new_run("rdb", Selection::Names(vec!["db1".into()])))
        .unwrap();
    // `ra` selects web0 and web1.
    write_steps(&mut a, "ra", &script("ra", "u", 2)[..1], &mut Vec::new());
    let sel = script("ra", "u", 2).into_iter().find(|s| matches!(s, Step::Event(e) if matches!(&e.kind, EventKind::Selected { name, .. } if name == "web1"))).unwrap();
    write_steps(&mut a, "ra", &[sel], &mut Vec::new());
    let err = b
        .create_run(&new_run("rb", Selection::Names(vec!["web1".into()])))
        .unwrap_err();
    match &err {
        JournalError::VmInUse {
            vm,
            name,
            other_run,
            pid,
            host,
            ..
        } => {
            assert_eq!(
                (
                    vm.as_str(),
                    name.as_str(),
                    other_run.as_str(),
                    *pid,
                    host.as_str()
                ),
                ("u-1", "web1", "ra", 100, "this-host")
            );
        }
        e => panic!("expected VmInUse, got {e}"),
    }
    assert!(err.to_string().contains("web1") && err.to_string().contains("`ra`"));
    // `ra` has selected: a name it did not select is free now.
    b.create_run(&new_run("rb", Selection::Names(vec!["web7".into()])))
        .unwrap();
    // A run that somehow selects a held VM is refused when it records the selection or an intent.
    let selected = script("rb", "u", 1).remove(0);
    let Step::Event(sel_event) = selected else {
        panic!("the script starts with a selection")
    };
    let err = b.record_event("rb", &sel_event).unwrap_err();
    assert!(
        matches!(&err, JournalError::VmInUse { vm, .. } if vm == "u-0"),
        "{err}"
    );
    let start = script("rb", "u", 1)
        .into_iter()
        .find_map(|s| match s {
            Step::Intent(c @ Command::StartMigration(_)) => Some(c),
            _ => None,
        })
        .unwrap();
    let err = b.record_intent("rb", Time(1), &start).unwrap_err();
    assert!(matches!(err, JournalError::VmInUse { .. }), "{err}");
    assert!(
        b.load_run("rb").unwrap().entries.is_empty(),
        "nothing is written for a refused VM"
    );
    // Once web0 is final in `ra`, it is free.
    let moved: Vec<_> = script("ra", "u", 1).into_iter().skip(1).collect();
    write_steps(&mut a, "ra", &moved, &mut Vec::new());
    b.record_event("rb", &sel_event).unwrap();
}

fn a_crashed_run_blocks_nobody_but_cannot_resume_over_a_vm_another_live_run_took() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut a = open_as(&path, &clock, me());
    a.create_run(&new_run("ra", Selection::Names(vec!["web*".into()])))
        .unwrap();
    write_steps(&mut a, "ra", &script("ra", "u", 1)[..3], &mut Vec::new());
    drop(a); // crashed: the lease stays until it expires
    let mut b = open_as(&path, &clock, other(200));
    assert!(matches!(
        b.create_run(&new_run("rb", Selection::Names(vec!["web0".into()])))
            .unwrap_err(),
        JournalError::VmInUse { .. }
    ));
    clock.advance(Duration::from_secs(31));
    b.create_run(&new_run("rb", Selection::Names(vec!["web0".into()])))
        .unwrap();
    let Step::Event(sel) = script("rb", "u", 1).remove(0) else {
        panic!()
    };
    b.record_event("rb", &sel).unwrap();
    // Resuming `ra` now would drive u-0 alongside `rb`: refused, naming it.
    let mut resumer = open_as(&path, &clock, other(300));
    let err = resumer.acquire("ra").unwrap_err();
    assert!(
        matches!(&err, JournalError::VmInUse { vm, other_run, .. } if vm == "u-0" && other_run == "rb"),
        "{err}"
    );
    b.finish_run("rb", RunEnd::Aborted).unwrap();
    resumer.acquire("ra").unwrap();
}

/// A run that died before it selected anything cannot be resumed over a live run created since
/// whose selection may take the same VMs (it would select them on resume).
fn a_run_that_never_selected_cannot_resume_over_a_live_run_that_may_take_its_vms() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut a = open_as(&path, &clock, me());
    a.create_run(&new_run("ra", Selection::Names(vec!["web*".into()])))
        .unwrap();
    drop(a); // crashed before its first listing
    clock.advance(Duration::from_secs(31));
    let mut b = open_as(&path, &clock, other(200));
    b.create_run(&new_run("rb", Selection::Names(vec!["web0".into()])))
        .unwrap();
    let mut resumer = open_as(&path, &clock, other(300));
    let err = resumer.acquire("ra").unwrap_err();
    assert!(
        matches!(&err, JournalError::SelectionOverlap { other_run, .. } if other_run == "rb"),
        "{err}"
    );
    // Once `rb` has selected web0, the refusal names the VM.
    let Step::Event(sel) = script("rb", "u", 1).remove(0) else {
        panic!()
    };
    b.record_event("rb", &sel).unwrap();
    let err = resumer.acquire("ra").unwrap_err();
    assert!(
        matches!(&err, JournalError::VmInUse { vm, other_run, .. } if vm == "u-0" && other_run == "rb"),
        "{err}"
    );
    // Nothing was changed by the refusals; once `rb` ended, `ra` resumes.
    assert_eq!(resumer.run_summary("ra").unwrap().driver, me());
    b.finish_run("rb", RunEnd::Finished).unwrap();
    resumer.acquire("ra").unwrap();
}

/// The VM guard holds between processes racing to create overlapping runs: the check and the
/// run's row are written in one transaction, and write transactions take turns (SQLite's
/// `BEGIN IMMEDIATE`; PostgreSQL's journal-wide advisory lock), so exactly one of several
/// concurrent creators wins and the others are refused naming the winner. Each round, four
/// handles (four connections, as four processes would have) start together.
fn concurrent_creators_of_overlapping_runs_exactly_one_wins() {
    const CREATORS: u32 = 4;
    for round in 0..5 {
        let (_dir, path) = temp_path();
        let clock = clock();
        drop(open_as(&path, &clock, me()));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(CREATORS as usize));
        let handles: Vec<_> = (0..CREATORS)
            .map(|i| {
                let (path, clock, barrier) = (path.clone(), clock.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut j = open_as(&path, &clock, other(500 + i));
                    let run = format!("race{round}-{i}");
                    barrier.wait();
                    (run.clone(), j.create_run(&new_run(&run, Selection::All)))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<&String> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(run, _)| run)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for (run, r) in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e, JournalError::SelectionOverlap { other_run, .. } if other_run == winners[0]),
                    "round {round}: {run}: {e}"
                );
            }
        }
        let j = open_as(&path, &clock, me());
        assert_eq!(
            j.runs().unwrap().len(),
            1,
            "round {round}: the losers wrote nothing"
        );
    }
}

/// Standbys on several machines racing for one run whose holder stopped renewing its lease
/// (`vmove resume --standby`): the take-over is the lease's transaction, so exactly one of them
/// takes the run, the others are refused naming the winner, and only the winner may write.
/// Each round, four handles (four connections, as four machines would have) start together.
fn standbys_racing_for_an_expired_lease_exactly_one_takes_it_over() {
    const STANDBYS: u32 = 4;
    for round in 0..5 {
        let (_dir, path) = temp_path();
        let clock = clock();
        let run = format!("r{round}");
        open_as(&path, &clock, me())
            .create_run(&new_run(&run, Selection::All))
            .unwrap();
        // The holder stops renewing: its lease runs out.
        clock.advance(Duration::from_secs(31));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(STANDBYS as usize));
        let handles: Vec<_> = (0..STANDBYS)
            .map(|i| {
                let (path, clock, barrier, run) =
                    (path.clone(), clock.clone(), barrier.clone(), run.clone());
                std::thread::spawn(move || {
                    let mut j = open_as(&path, &clock, other(700 + i));
                    barrier.wait();
                    let got = j.acquire_taking_over(&run).map(|(_, t)| t);
                    let write =
                        j.record_intent(&run, Time(1), &Command::RefreshHost { host: "a".into() });
                    (700 + i, got, write.is_ok())
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<u32> = results
            .iter()
            .filter(|(_, got, _)| got.is_ok())
            .map(|(pid, ..)| *pid)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for (pid, got, wrote) in &results {
            match got {
                // An expired lease is taken, not a dead holder's: nothing to say.
                Ok(took_over) => {
                    assert_eq!(*took_over, None, "round {round}");
                    assert!(wrote, "round {round}: the winner writes");
                }
                Err(e) => {
                    assert!(
                        matches!(e, JournalError::LeaseHeld { pid: w, .. } if *w == winners[0]),
                        "round {round}: {pid}: {e}"
                    );
                    assert!(!wrote, "round {round}: {pid} wrote without the lease");
                }
            }
        }
        let j = open_as(&path, &clock, me());
        assert_eq!(j.run_summary(&run).unwrap().driver, other(winners[0]));
        assert_eq!(j.load_run(&run).unwrap().entries.len(), 1, "round {round}");
    }
}

on_both_backends!(
    standbys_racing_for_an_expired_lease_exactly_one_takes_it_over,
    concurrent_creators_of_overlapping_runs_exactly_one_wins,
    a_second_holder_is_refused_while_the_lease_is_valid_and_named_in_the_error,
    a_stale_lease_is_taken_over_only_after_it_expires_and_the_old_holder_is_fenced_off,
    release_lets_another_process_resume_at_once,
    finish_run_ends_writes_and_drops_the_lease,
    stop_requests_come_from_any_process_and_now_is_never_downgraded,
    a_run_overlapping_the_vms_of_a_live_run_is_refused_naming_the_vm_and_the_run,
    a_crashed_run_blocks_nobody_but_cannot_resume_over_a_vm_another_live_run_took,
    a_run_that_never_selected_cannot_resume_over_a_live_run_that_may_take_its_vms,
);
