//! The plan a run was started with (schema 8, `planned_moves`): written and read back in
//! order, replaced whole when written again, refused for an unknown run; a journal of schema 7
//! is migrated to it with its runs intact and no plan.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use vmove_core::{MigrationMode, Selection, Time, VmId};
use vmove_journal::{Holder, JournalError, PlannedMove, schema};

fn me() -> Holder {
    Holder {
        pid: 100,
        host: "this-host".into(),
        started: None,
        boot: None,
    }
}

fn planned(vm: &str, start: u64, end: Option<u64>, mode: MigrationMode) -> PlannedMove {
    PlannedMove {
        vm: VmId::new(vm),
        source: "a".into(),
        destination: "b".into(),
        mode,
        start: Time(start),
        end: end.map(Time),
    }
}

fn a_plan_is_written_and_read_back_in_order_and_replaced_whole() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, me());
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    assert_eq!(j.planned_moves("r1").unwrap(), vec![], "no plan yet");
    let plan = vec![
        planned("id-web", 10, Some(4_000), MigrationMode::Live),
        planned("id-db", 10, None, MigrationMode::Live),
        planned("id-old", 4_000, Some(9_000), MigrationMode::Offline),
    ];
    j.record_plan("r1", &plan).unwrap();
    assert_eq!(j.planned_moves("r1").unwrap(), plan);
    // Written again: the new plan alone (a VM twice: its first row).
    let again = vec![
        planned("id-db", 0, Some(1), MigrationMode::Offline),
        planned("id-db", 5, Some(6), MigrationMode::Live),
    ];
    j.record_plan("r1", &again).unwrap();
    assert_eq!(j.planned_moves("r1").unwrap(), vec![again[0].clone()]);
    // Another handle reads it too.
    let reader = open_as(&path, &clock, other(7));
    assert_eq!(reader.planned_moves("r1").unwrap(), vec![again[0].clone()]);
    let err = j.record_plan("nope", &plan).unwrap_err();
    assert!(matches!(err, JournalError::UnknownRun(_)), "{err}");
    assert_eq!(j.planned_moves("nope").unwrap(), vec![]);
}

#[test]
fn a_journal_of_schema_7_is_migrated_to_the_latest_with_its_runs_and_no_plan() {
    let (_dir, path) = temp_path();
    let clock = clock();
    {
        let mut j = open_as(&path, &clock, me());
        j.create_run(&new_run("r1", Selection::All)).unwrap();
        write_steps(&mut j, "r1", &script("r1", "u", 2), &mut Vec::new());
    }
    // As a vmove of schema 7 left it.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE slot_reservations; DROP TABLE planned_moves;
             DELETE FROM schema_version WHERE version > 7;",
        )
        .unwrap();
        assert_eq!(schema::version(&conn).unwrap(), 7);
    }
    let mut j = open_as(&path, &clock, me());
    assert_eq!(j.schema_version().unwrap(), schema::LATEST);
    let rec = j.load_run("r1").unwrap();
    assert_eq!(rec.vms.len(), 2);
    assert_consistent(&rec);
    assert_eq!(
        j.planned_moves("r1").unwrap(),
        vec![],
        "a run from before: no plan"
    );
    let plan = vec![planned("id-x", 0, Some(10), MigrationMode::Live)];
    j.record_plan("r1", &plan).unwrap();
    assert_eq!(j.planned_moves("r1").unwrap(), plan);
    // Reopening migrates nothing twice.
    drop(j);
    let j = open_as(&path, &clock, me());
    assert_eq!(j.schema_version().unwrap(), schema::LATEST);
    assert_eq!(j.planned_moves("r1").unwrap(), plan);
}

on_both_backends!(a_plan_is_written_and_read_back_in_order_and_replaced_whole);
