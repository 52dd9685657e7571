//! The resume facts computed from a journal cut at the points that matter.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use vmove_core::{Command, Input, LeftoverKind, MigrationHandle, Phase, Selection, VmId};
use vmove_journal::{EntryBody, Journal, RunRecord, rebuild, rebuild::in_flight};

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
