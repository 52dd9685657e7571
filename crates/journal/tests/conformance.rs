//! The journal's conformance suite, in-process: append, reopen, replay, outcomes, steps,
//! status rows, history and notes. Leases, the VM guard and stop requests are in
//! `conformance_leases.rs`; schema migration, the file's mode, a torn WAL and a concurrent
//! reader in `conformance_storage.rs`; tests with real child processes killed mid-write in
//! `crash.rs`.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use std::time::Duration;
use vmove_core::{Command, EventKind, HostId, Input, Phase, Selection, Time, VmId};
use vmove_journal::{EntryBody, Holder, IntentId, JournalError, RunEnd, RunState, StepRecord};

fn me() -> Holder {
    Holder {
        pid: 100,
        host: "this-host".into(),
        started: None,
        boot: None,
    }
}

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

/// A note about a run (its output closed by its reader) is kept with the run, readable by any
/// process, oldest first, redacted like every stored text; a note for an unknown run is refused.
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

on_both_backends!(
    append_reopen_replay_gives_back_exactly_what_was_written_in_order,
    load_run_until_cuts_the_run_after_any_entry,
    outcomes_must_answer_a_known_intent_once,
    a_step_is_written_in_order_and_all_or_nothing,
    history_lists_runs_newest_first_with_their_phase_counts,
    status_rows_follow_the_events_and_record_events_is_all_or_nothing,
    a_runs_notes_are_kept_in_order_redacted_and_only_for_known_runs,
);
