//! The journal's conformance suite, in-process: append, reopen, replay, outcomes, leases, the
//! VM guard, stop requests, schema migration, a torn WAL, and a concurrent reader.
//! (Tests with real child processes killed mid-write are in `crash.rs`.)
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::time::Duration;
use vmove_core::{Command, EventKind, HostId, Input, Phase, Selection, Time, VmId};
use vmove_journal::{
    Clock, EntryBody, Holder, IntentId, Journal, JournalError, RunEnd, RunState, StepRecord,
    WallTime, schema,
};

fn me() -> Holder {
    Holder {
        pid: 100,
        host: "this-host".into(),
        started: None,
        boot: None,
    }
}

#[test]
fn append_reopen_replay_gives_back_exactly_what_was_written_in_order() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let steps = script("r1", "u", 3);
    let seqs = {
        let mut j = open_as(&path, &clock, me());
        j.create_run(&new_run("r1", Selection::Names(vec!["web*".into()])))
            .unwrap();
        write_steps(&mut j, "r1", &steps, &mut Vec::new())
    };
    assert_eq!(seqs, (1..=steps.len() as u64).collect::<Vec<_>>());
    let j = open_as(&path, &clock, me());
    let rec = j.load_run("r1").unwrap();
    assert_eq!(rec.spec, spec("r1", Selection::Names(vec!["web*".into()])));
    assert_eq!(rec.config, "[settings]\nmax_attempts = 4\n");
    assert_eq!(rec.entries.len(), steps.len());
    let mut intents = Vec::new();
    for (i, (entry, step)) in rec.entries.iter().zip(&steps).enumerate() {
        assert_eq!(entry.at, step_time(step, i), "entry {}", entry.seq);
        match (step, &entry.body) {
            (Step::Intent(c), EntryBody::Intent(got)) => {
                assert_eq!(got, c);
                intents.push(IntentId(entry.seq));
            }
            (Step::Outcome(k, input), EntryBody::Outcome { intent, input: got }) => {
                assert_eq!(*intent, intents[*k]);
                assert_eq!(got, input);
            }
            (Step::Input(input), EntryBody::Input(got)) => assert_eq!(got, input),
            (Step::Event(e), EntryBody::Event(got)) => assert_eq!(got, e),
            (s, b) => panic!("entry {} is {b:?}, expected {s:?}", entry.seq),
        }
    }
    assert_consistent(&rec);
    assert!(rec.open_intents().is_empty());
    assert_eq!(rec.vms.len(), 3);
    assert!(
        rec.vms
            .iter()
            .all(|v| v.phase == Phase::Moved && v.verified)
    );
    assert_eq!(rec.vms[0].attempt, 2);
    assert_eq!(rec.summary.phases.get(&Phase::Moved), Some(&3));
    assert_eq!(rec.summary.state, RunState::Running);
}

#[test]
fn load_run_until_cuts_the_run_after_any_entry() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, me());
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    let steps = script("r1", "u", 2);
    write_steps(&mut j, "r1", &steps, &mut Vec::new());
    let full = j.load_run("r1").unwrap();
    for cut in 0..=steps.len() as u64 {
        let rec = j.load_run_until("r1", cut).unwrap();
        assert_eq!(rec.entries, full.entries[..cut as usize]);
    }
}

#[test]
fn outcomes_must_answer_a_known_intent_once() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, me());
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    let cmd = Command::RefreshHost {
        host: HostId::new("a"),
    };
    let id = j.record_intent("r1", Time(1), &cmd).unwrap();
    let stop = Input::Stop {
        abort_running: false,
    };
    let ev_seq = j.record_input("r1", Time(2), &stop).unwrap();
    // An input entry is not an intent.
    let err = j
        .record_outcome("r1", IntentId(ev_seq), Time(3), &stop)
        .unwrap_err();
    assert!(
        matches!(err, JournalError::UnknownIntent { intent, .. } if intent == ev_seq),
        "{err}"
    );
    let err = j
        .record_outcome("r1", IntentId(99), Time(3), &stop)
        .unwrap_err();
    assert!(matches!(err, JournalError::UnknownIntent { .. }), "{err}");
    j.record_outcome("r1", id, Time(3), &stop).unwrap();
    let err = j.record_outcome("r1", id, Time(4), &stop).unwrap_err();
    assert!(
        matches!(err, JournalError::DuplicateOutcome { .. }),
        "{err}"
    );
    let rec = j.load_run("r1").unwrap();
    assert_eq!(rec.entries.len(), 3, "refused outcomes write nothing");
    assert_consistent(&rec);
    assert_eq!(rec.intents()[0].outcome.as_ref().map(|o| o.0), Some(3));
}

/// A step (an answer, the events it caused, the intents of the commands it asks for) is one
/// transaction: written in order, with the outcome matched to its intent, or not at all.
#[test]
fn a_step_is_written_in_order_and_all_or_nothing() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, me());
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    let refresh = |h: &str| Command::RefreshHost {
        host: HostId::new(h),
    };
    let ids = j
        .record_step(
            "r1",
            &[StepRecord::Intent {
                at: Time(1),
                command: refresh("a"),
            }],
        )
        .unwrap();
    assert_eq!(ids, vec![IntentId(1)]);
    let answer = Input::Stop {
        abort_running: false,
    };
    let event = vmove_core::Event {
        at: Time(2),
        kind: EventKind::RunFinished {
            moved: 0,
            unmigratable: 0,
            cancelled: 0,
        },
    };
    let step = |intent: IntentId| {
        vec![
            StepRecord::Input {
                intent: Some(intent),
                at: Time(2),
                input: answer.clone(),
            },
            StepRecord::Event(event.clone()),
            StepRecord::Intent {
                at: Time(2),
                command: refresh("b"),
            },
            StepRecord::Intent {
                at: Time(2),
                command: refresh("c"),
            },
        ]
    };
    // An outcome for an intent that does not exist refuses the whole step, written last or not.
    let err = j.record_step("r1", &step(IntentId(99))).unwrap_err();
    assert!(matches!(err, JournalError::UnknownIntent { .. }), "{err}");
    assert_eq!(j.load_run("r1").unwrap().entries.len(), 1, "nothing of it");
    let ids = j.record_step("r1", &step(IntentId(1))).unwrap();
    assert_eq!(ids, vec![IntentId(4), IntentId(5)]);
    let rec = j.load_run("r1").unwrap();
    let kinds: Vec<&str> = rec
        .entries
        .iter()
        .map(|e| match &e.body {
            EntryBody::Intent(_) => "intent",
            EntryBody::Outcome { .. } => "outcome",
            EntryBody::Input(_) => "input",
            EntryBody::Event(_) => "event",
        })
        .collect();
    assert_eq!(kinds, ["intent", "outcome", "event", "intent", "intent"]);
    assert_consistent(&rec);
    assert_eq!(rec.intents()[0].outcome.as_ref().map(|o| o.0), Some(2));
    // Answered once: the same step again is refused, and writes nothing.
    let err = j.record_step("r1", &step(IntentId(1))).unwrap_err();
    assert!(
        matches!(err, JournalError::DuplicateOutcome { .. }),
        "{err}"
    );
    assert_eq!(j.load_run("r1").unwrap().entries.len(), 5);
}

#[test]
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

#[test]
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

#[test]
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

#[test]
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

#[test]
fn history_lists_runs_newest_first_with_their_phase_counts() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, me());
    j.create_run(&new_run("old", Selection::Names(vec!["web0".into()])))
        .unwrap();
    write_steps(&mut j, "old", &script("old", "o", 1), &mut Vec::new());
    j.finish_run("old", RunEnd::Finished).unwrap();
    clock.advance(Duration::from_secs(60));
    j.create_run(&new_run("new", Selection::Names(vec!["db1".into()])))
        .unwrap();
    let runs = j.runs().unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["new", "old"]
    );
    assert_eq!(runs[1].state, RunState::Finished);
    assert_eq!(runs[1].phases.get(&Phase::Moved), Some(&1));
    assert!(runs[0].phases.is_empty());
    assert_eq!(runs[0].lease.as_ref().map(|l| l.holder.clone()), Some(me()));
}

#[test]
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

#[test]
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

#[test]
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

#[test]
fn status_rows_follow_the_events_and_record_events_is_all_or_nothing() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, me());
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    let steps = script("r1", "u", 2);
    let events: Vec<_> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    let seqs = j.record_events("r1", &events).unwrap();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    let status = j.vm_status("r1").unwrap();
    assert_eq!(
        status.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["web0", "web1"]
    );
    assert_eq!(status[0].last_error.as_deref(), Some("host b is busy"));
    assert_consistent(&j.load_run("r1").unwrap());
    // An expired lease that nobody took over still records events (but not intents).
    clock.advance(Duration::from_secs(31));
    let before = j.load_run("r1").unwrap().entries.len();
    j.record_events("r1", &events[..2]).unwrap();
    assert_eq!(j.load_run("r1").unwrap().entries.len(), before + 2);
    j.refresh_lease("r1").unwrap();
    // Another live run selects VM `shared`; a batch of r1 that selects it too writes nothing.
    let mut r2 = open_as(&path, &clock, other(2));
    r2.create_run(&new_run("r2", Selection::Names(vec!["db1".into()])))
        .unwrap();
    let select_shared = vmove_core::Event {
        at: Time(500),
        kind: EventKind::Selected {
            vm: VmId::new("shared"),
            name: "db1".into(),
            source: "a".into(),
            mode: vmove_core::MigrationMode::Offline,
            memory_bytes: 1,
            disk_bytes: 2,
        },
    };
    r2.record_event("r2", &select_shared).unwrap();
    let n = j.load_run("r1").unwrap().entries.len();
    let err = j
        .record_events("r1", &[events[5].clone(), select_shared])
        .unwrap_err();
    assert!(
        matches!(&err, JournalError::VmInUse { vm, other_run, .. } if vm == "shared" && other_run == "r2"),
        "{err}"
    );
    let rec = j.load_run("r1").unwrap();
    assert_eq!(rec.entries.len(), n, "a refused batch writes nothing");
    assert_consistent(&rec);
}

#[test]
fn migration_from_schema_1_keeps_the_data_and_backfills_the_status_table() {
    let (_dir, path) = temp_path();
    let clock = clock();
    // Build a version-1 journal by hand, as an older vmove wrote it.
    let steps = script("r1", "u", 2);
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(schema::migrate_to(&mut conn, 1, WallTime(1)).unwrap(), 1);
        let spec_json = serde_json::to_string(&spec("r1", Selection::All)).unwrap();
        conn.execute(
            "INSERT INTO runs (id, created_at, config_format, config, spec, state, driver_host, driver_pid, last_seq)
             VALUES ('r1', 5, 'toml', '', ?1, 'running', 'h', 42, ?2)",
            rusqlite::params![spec_json, steps.len() as i64],
        )
        .unwrap();
        let mut intents = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let seq = i as i64 + 1;
            let (kind, body, answers) = match step {
                Step::Intent(c) => {
                    intents.push(seq);
                    ("intent", serde_json::to_string(c).unwrap(), None)
                }
                Step::Outcome(k, input) => (
                    "outcome",
                    serde_json::to_string(input).unwrap(),
                    Some(intents[*k]),
                ),
                Step::Input(input) => ("input", serde_json::to_string(input).unwrap(), None),
                Step::Event(e) => ("event", serde_json::to_string(e).unwrap(), None),
            };
            conn.execute(
                "INSERT INTO entries (run_id, seq, kind, at, name, answers, body, written_at) VALUES ('r1', ?1, ?2, ?3, 'x', ?4, ?5, 0)",
                rusqlite::params![seq, kind, step_time(step, i).0 as i64, answers, body],
            )
            .unwrap();
        }
    }
    let j = open_as(&path, &clock, me());
    assert_eq!(j.schema_version().unwrap(), schema::LATEST);
    let rec = j.load_run("r1").unwrap();
    assert_eq!(rec.entries.len(), steps.len());
    assert_eq!(
        rec.vms.len(),
        2,
        "the status table is rebuilt from the events"
    );
    assert!(rec.vms.iter().all(|v| v.phase == Phase::Moved));
    assert_consistent(&rec);
    assert_eq!(j.stop_requested("r1").unwrap(), None);
    // Reopening does not migrate twice.
    drop(j);
    let j = open_as(&path, &clock, me());
    assert_eq!(j.schema_version().unwrap(), schema::LATEST);
}

#[test]
fn a_journal_from_a_newer_vmove_is_refused() {
    let (_dir, path) = temp_path();
    let clock = clock();
    drop(open_as(&path, &clock, me()));
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_version (version, applied_at, description) VALUES (99, 0, 'future')",
        [],
    )
    .unwrap();
    drop(conn);
    let err = Journal::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::SchemaTooNew {
                found: 99,
                supported: schema::LATEST
            }
        ),
        "{err}"
    );
}

#[test]
fn the_journal_is_in_wal_mode_with_full_sync() {
    let (_dir, path) = temp_path();
    let j = Journal::open(&path).unwrap();
    drop(j);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal", "WAL mode persists in the file");
}

/// A torn last write: the WAL of a live writer is copied (as a crash would leave it) and cut at
/// many offsets, frame boundaries and mid-frame. Each cut must open, and hold a prefix of what
/// was written: whole transactions, never a part of one.
#[test]
fn a_torn_wal_reopens_to_a_consistent_prefix() {
    let (dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, me());
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    let steps = script("r1", "u", 6);
    write_steps(&mut j, "r1", &steps, &mut Vec::new());
    let full = j.load_run("r1").unwrap();
    let wal = std::fs::read(path.with_extension("sqlite-wal")).unwrap();
    let db = std::fs::read(&path).unwrap();
    assert!(
        wal.len() > 32 + 4096,
        "the WAL holds frames ({} bytes)",
        wal.len()
    );
    const PAGE: usize = 4096;
    const FRAME: usize = 24 + PAGE;
    let frames = (wal.len() - 32) / FRAME;
    // About 40 frames, evenly spread, each cut at its boundary and in the middle of its page.
    let step = (frames / 40).max(1);
    let mut cuts: Vec<usize> = (0..=frames)
        .step_by(step)
        .flat_map(|f| [32 + f * FRAME, 32 + f * FRAME + 24 + 100])
        .collect();
    cuts.push(wal.len());
    cuts.retain(|&c| c <= wal.len());
    cuts.sort();
    let mut last = 0usize;
    let mut lengths = Vec::new();
    for (i, &cut) in cuts.iter().enumerate() {
        let crash = dir.path().join(format!("crash-{i}"));
        std::fs::create_dir_all(&crash).unwrap();
        let p = crash.join("journal.sqlite");
        std::fs::write(&p, &db).unwrap();
        std::fs::write(p.with_extension("sqlite-wal"), &wal[..cut]).unwrap();
        let reopened = open_as(&p, &clock, me());
        let n = match reopened.load_run("r1") {
            Ok(rec) => {
                assert_consistent(&rec);
                assert_eq!(
                    rec.entries,
                    full.entries[..rec.entries.len()],
                    "cut at {cut}: not a prefix"
                );
                rec.entries.len()
            }
            // The run's own row was in the cut-off part.
            Err(JournalError::UnknownRun(_)) => 0,
            Err(e) => panic!("cut at {cut}: {e}"),
        };
        eprintln!("torn-wal cut {cut}: {n} entries");
        assert!(
            n >= last,
            "cut at {cut}: {n} entries, fewer than the {last} of a shorter cut"
        );
        last = n;
        lengths.push(n);
    }
    assert_eq!(
        last,
        full.entries.len(),
        "the whole WAL gives back everything"
    );
    assert!(
        lengths.windows(2).any(|w| w[0] < w[1]) && lengths[0] < full.entries.len(),
        "cuts lost some entries: {lengths:?}"
    );
}

/// A reader (`vmove status` in another terminal) reads while the driver writes: never blocked,
/// never an error, and every read is a consistent snapshot that only moves forward.
#[test]
fn a_concurrent_reader_sees_consistent_snapshots_while_the_writer_writes() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut w = open_as(&path, &clock, me());
    w.create_run(&new_run("r1", Selection::All)).unwrap();
    let Step::Event(sel) = script("r1", "u", 1).remove(0) else {
        panic!()
    };
    w.record_event("r1", &sel).unwrap();
    let vm = VmId::new("u-0");
    let writes = 150u64;
    // The writer pauses every 30 writes until the reader has read once more, so reads are
    // guaranteed to fall between writes however the threads are scheduled.
    let reads = Arc::new(AtomicU64::new(0));
    let reads_w = Arc::clone(&reads);
    let writer = std::thread::spawn(move || {
        for i in 1..=writes {
            if i % 30 == 0 {
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while reads_w.load(Ordering::SeqCst) < i / 30
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let e = vmove_core::Event {
                at: Time(i),
                kind: EventKind::Progress {
                    vm: vm.clone(),
                    attempt: 1,
                    bytes_done: i,
                    bytes_total: writes,
                    bytes_remaining: writes - i,
                },
            };
            w.record_event("r1", &e).unwrap();
        }
        w
    });
    let reader = open_as(&path, &clock, other(400));
    let mut last_done = 0;
    let mut last_entries = 0;
    let mut partial_reads = 0;
    loop {
        let finished = writer.is_finished();
        let status = reader.vm_status("r1").unwrap();
        let done = status[0]
            .progress
            .as_ref()
            .map(|p| p.bytes_done)
            .unwrap_or(0);
        assert!(
            done >= last_done,
            "progress went back from {last_done} to {done}"
        );
        last_done = done;
        let rec = reader.load_run("r1").unwrap();
        assert_consistent(&rec);
        assert!(rec.entries.len() >= last_entries);
        last_entries = rec.entries.len();
        if done > 0 && done < writes {
            partial_reads += 1;
        }
        reads.fetch_add(1, Ordering::SeqCst);
        if finished {
            break;
        }
    }
    let _w = writer.join().unwrap();
    assert_eq!(
        reader.vm_status("r1").unwrap()[0]
            .progress
            .as_ref()
            .map(|p| p.bytes_done),
        Some(writes)
    );
    assert!(
        partial_reads >= 4,
        "the reader read between writes: {partial_reads} times"
    );
}

/// A note about a run (its output closed by its reader) is kept with the run, readable by any
/// process, oldest first, redacted like every stored text; a note for an unknown run is refused.
#[test]
fn a_runs_notes_are_kept_in_order_redacted_and_only_for_known_runs() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, me());
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    j.record_note("r1", "standard output was closed by its reader")
        .unwrap();
    j.record_note("r1", "seen from qemu+tcp://admin:Pw123@h/system")
        .unwrap();
    let other = open_as(&path, &clock, other(4242));
    let notes: Vec<String> = other
        .notes("r1")
        .unwrap()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert_eq!(notes[0], "standard output was closed by its reader");
    assert!(!notes[1].contains("Pw123"), "{notes:?}");
    assert!(j.record_note("nope", "x").is_err());
    assert!(j.notes("nope").unwrap().is_empty());
}
