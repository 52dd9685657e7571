//! Journals written before commands carried their request (schema 4 and older): their
//! `poll_migration`, `abort_migration`, `converge` and `remove_leftover` intents held copies of
//! the request's parts, and `locate`, `verify` and `list_leftovers` held `vm` and `attempt`
//! beside their request. Opening such a journal gives each the request of its attempt's start
//! (schema 5), so `status`, `history`, `report` and `resume` read it as before, and a resumed
//! attempt hands the driver the request it was started with.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use serde_json::{Value, json};
use std::path::Path;
use vmove_core::{
    Command, ConvergenceAid, Core, ErrorClass, Failure, Input, MigrationHandle, Phase,
    RecoveredState, Selection, Time, VmId,
};
use vmove_journal::{EntryBody, RunRecord, recovered, schema};

/// The body an older vmove stored for `cmd` (its shape before commands carried their request).
fn old_shape(cmd: &Command) -> Option<Value> {
    Some(match cmd {
        Command::PollMigration { request, handle } => json!({
            "command": "poll_migration",
            "vm": request.vm,
            "attempt": request.attempt,
            "source": request.source,
            "destination": request.destination,
            "handle": handle,
        }),
        Command::AbortMigration { request, handle } => json!({
            "command": "abort_migration",
            "vm": request.vm,
            "attempt": request.attempt,
            "source": request.source,
            "destination": request.destination,
            "handle": handle,
        }),
        Command::Converge {
            request,
            handle,
            aid,
        } => json!({
            "command": "converge",
            "vm": request.vm,
            "attempt": request.attempt,
            "source": request.source,
            "handle": handle,
            "aid": aid,
        }),
        Command::RemoveLeftover {
            request,
            leftover,
            context,
        } => json!({
            "command": "remove_leftover",
            "vm": request.vm,
            "attempt": request.attempt,
            "leftover": leftover,
            "context": context,
        }),
        Command::Locate { request } => json!({
            "command": "locate",
            "vm": request.vm,
            "attempt": request.attempt,
            "request": request,
        }),
        Command::Verify { request } => json!({
            "command": "verify",
            "vm": request.vm,
            "attempt": request.attempt,
            "request": request,
        }),
        Command::ListLeftovers { request, context } => json!({
            "command": "list_leftovers",
            "vm": request.vm,
            "attempt": request.attempt,
            "request": request,
            "context": context,
        }),
        // Pre-flight came after schema 5: no older shape.
        Command::RefreshHost { .. } | Command::StartMigration(_) | Command::Preflight { .. } => {
            return None;
        }
    })
}

/// Turns the journal at `path` into one the previous build wrote: schema 4, with the commands
/// in their old shape. Returns how many intents were rewritten.
fn make_old(path: &Path, run: &str) -> usize {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT seq, body FROM entries WHERE run_id = ?1 AND kind = 'intent'")
        .unwrap();
    let rows: Vec<(i64, String)> = stmt
        .query_map([run], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut n = 0;
    for (seq, body) in rows {
        let cmd: Command = serde_json::from_str(&body).unwrap();
        if let Some(old) = old_shape(&cmd) {
            conn.execute(
                "UPDATE entries SET body = ?1 WHERE run_id = ?2 AND seq = ?3",
                rusqlite::params![old.to_string(), run, seq],
            )
            .unwrap();
            n += 1;
        }
    }
    // A schema-4 journal has no column or table a later schema added (schema 6:
    // `runs.command`; schema 7: `vm_requests`; schema 8: `planned_moves`; schema 9:
    // `slot_reservations`).
    conn.execute("ALTER TABLE runs DROP COLUMN command", [])
        .unwrap();
    conn.execute_batch(
        "DROP INDEX vm_requests_run; DROP TABLE vm_requests; DROP TABLE planned_moves;
         DROP TABLE slot_reservations;",
    )
    .unwrap();
    conn.execute("DELETE FROM schema_version WHERE version > 4", [])
        .unwrap();
    n
}

fn intents(rec: &RunRecord) -> Vec<Command> {
    rec.entries
        .iter()
        .filter_map(|e| match &e.body {
            EntryBody::Intent(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_old_journal_of_a_finished_run_reads_as_it_was_written() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let written = {
        let mut j = open_as(&path, &clock, other(1));
        j.create_run(&new_run("r1", Selection::All)).unwrap();
        write_steps(&mut j, "r1", &script("r1", "u", 2), &mut Vec::new());
        j.load_run("r1").unwrap()
    };
    let rewritten = make_old(&path, "r1");
    assert!(
        rewritten >= 8,
        "polls, proofs, listings and removals of two VMs: {rewritten}"
    );
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(schema::version(&conn).unwrap(), 4);
    }
    let j = open_as(&path, &clock, other(1));
    assert_eq!(j.schema_version().unwrap(), schema::LATEST);
    let rec = j.load_run("r1").unwrap();
    assert_eq!(
        intents(&rec),
        intents(&written),
        "every command with its request"
    );
    assert_eq!(rec.entries.len(), written.entries.len());
    assert_eq!(rec.vms, written.vms, "status reads the same");
    // Stored as this build writes them: nothing of the old shape is left.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let old_fields: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM entries WHERE kind = 'intent' AND name != 'start_migration'
             AND (json_extract(body, '$.vm') IS NOT NULL OR json_extract(body, '$.source') IS NOT NULL)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old_fields, 0);
    assert_consistent(&rec);
    assert!(rec.vms.iter().all(|v| v.phase == Phase::Moved));
}

/// A run that died while an abort of its attempt was out, with a convergence aid before it.
fn interrupted_run(vm: &VmId) -> Vec<Step> {
    let req = request(vm, "web0", 1, "r1");
    let handle = MigrationHandle("job-1".into());
    let mut steps = started(vm, &req, &handle);
    steps.extend([
        transition(1, vm, Phase::Starting, Phase::Migrating),
        Step::Intent(Command::Converge {
            request: req.clone().into(),
            handle: handle.clone(),
            aid: ConvergenceAid::AutoConverge,
        }),
        Step::Outcome(
            1,
            Input::Converged {
                vm: vm.clone(),
                attempt: 1,
                result: Ok(true),
            },
        ),
        transition(150, vm, Phase::Migrating, Phase::Aborting),
        Step::Intent(Command::AbortMigration {
            request: req.into(),
            handle,
        }),
        Step::Outcome(
            2,
            Input::AbortDone {
                vm: vm.clone(),
                attempt: 1,
                result: Err(Failure::new(ErrorClass::Indeterminate, "no answer")),
            },
        ),
        transition(151, vm, Phase::Aborting, Phase::Locating),
    ]);
    steps
}

#[test]
fn an_old_journal_resumes_with_the_request_the_attempt_was_started_with() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let vm = VmId::new("u-0");
    {
        let mut j = open_as(&path, &clock, other(1));
        j.create_run(&new_run("r1", Selection::All)).unwrap();
        write_steps(&mut j, "r1", &interrupted_run(&vm), &mut Vec::new());
    }
    assert_eq!(make_old(&path, "r1"), 2, "the aid and the abort");
    let j = open_as(&path, &clock, other(1));
    let rec = j.load_run("r1").unwrap();
    let started = request(&vm, "web0", 1, "r1");
    assert!(
        intents(&rec)
            .iter()
            .skip(1)
            .all(|c| c.request() == Some(&started)),
        "{:?}",
        intents(&rec)
    );
    let vms = recovered(&rec);
    assert_eq!(vms.len(), 1);
    assert_eq!(vms[0].state, RecoveredState::Aborting(started.clone()));

    // The resumed core looks at the hosts, then aborts the job still running, each with the
    // request of the start (its name, not the id; its run), not one made up from the id.
    let mut core = Core::resume(rec.spec.clone(), Time(1_000), vms).unwrap();
    let look = std::iter::from_fn(|| core.poll_command())
        .find(|c| matches!(c, Command::Locate { .. }))
        .unwrap();
    assert_eq!(look.request(), Some(&started));
    core.handle_event(
        Time(1_001),
        Input::Located {
            vm: vm.clone(),
            attempt: 1,
            result: Ok(Box::new(vmove_core::Location {
                on_source: None,
                on_destination: None,
                running_migration: Some(MigrationHandle("job-1".into())),
            })),
        },
    );
    let abort = std::iter::from_fn(|| core.poll_command())
        .find(|c| matches!(c, Command::AbortMigration { .. }))
        .unwrap();
    assert_eq!(abort.request(), Some(&started));
    assert_eq!(&*abort.request().unwrap().vm_name, "web0");
}
