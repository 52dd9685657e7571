//! The schema and its ordered migrations.
//!
//! `schema_version` holds one row per applied migration. A journal is migrated on open, one
//! migration per transaction, each re-checking the version inside its transaction so that two
//! processes opening an old journal at once apply each migration exactly once. A journal newer
//! than this build is refused, never downgraded.

use crate::clock::WallTime;
use crate::error::{JournalError, Result};
use crate::status::VmStatus;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::BTreeMap;
use vmove_core::{Event, Phase, VmId};

/// One schema step.
struct Migration {
    version: u32,
    description: &'static str,
    sql: &'static str,
    /// Data work after the SQL, in the same transaction.
    backfill: Option<fn(&Connection) -> Result<()>>,
}

/// The newest schema version this build knows.
pub const LATEST: u32 = 8;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "runs, entries (intents, outcomes, inputs, events), leases",
        sql: r#"
CREATE TABLE runs (
    id            TEXT PRIMARY KEY NOT NULL,
    created_at    INTEGER NOT NULL,
    config_format TEXT NOT NULL CHECK (config_format IN ('toml', 'json')),
    config        TEXT NOT NULL,
    spec          TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('running', 'finished', 'failed', 'aborted')),
    state_detail  TEXT,
    finished_at   INTEGER,
    driver_host   TEXT NOT NULL,
    driver_pid    INTEGER NOT NULL,
    last_seq      INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE entries (
    run_id     TEXT NOT NULL REFERENCES runs(id),
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('intent', 'outcome', 'input', 'event')),
    at         INTEGER NOT NULL,
    vm         TEXT,
    attempt    INTEGER,
    name       TEXT NOT NULL,
    answers    INTEGER,
    body       TEXT NOT NULL,
    written_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
) STRICT;
CREATE UNIQUE INDEX entries_one_outcome ON entries (run_id, answers) WHERE answers IS NOT NULL;
CREATE INDEX entries_by_vm ON entries (run_id, vm, seq) WHERE vm IS NOT NULL;

CREATE TABLE leases (
    run_id       TEXT PRIMARY KEY NOT NULL REFERENCES runs(id),
    token        TEXT NOT NULL,
    holder_pid   INTEGER NOT NULL,
    holder_host  TEXT NOT NULL,
    acquired_at  INTEGER NOT NULL,
    refreshed_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;
"#,
        backfill: None,
    },
    Migration {
        version: 2,
        description: "stop requests; per-VM status table (backfilled from events)",
        sql: r#"
ALTER TABLE runs ADD COLUMN stop_request TEXT NOT NULL DEFAULT 'none'
    CHECK (stop_request IN ('none', 'stop', 'now'));
ALTER TABLE runs ADD COLUMN stop_requested_at INTEGER;

CREATE TABLE vm_state (
    run_id      TEXT NOT NULL REFERENCES runs(id),
    vm          TEXT NOT NULL,
    ord         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    source      TEXT NOT NULL,
    phase       TEXT NOT NULL,
    final       INTEGER NOT NULL,
    status      TEXT NOT NULL,
    updated_seq INTEGER NOT NULL,
    PRIMARY KEY (run_id, vm)
) STRICT;
CREATE INDEX vm_state_live ON vm_state (vm) WHERE final = 0;
"#,
        backfill: Some(backfill_vm_state),
    },
    Migration {
        version: 3,
        description: "the lease holder's process start time and boot identity (take-over of a dead holder)",
        sql: r#"
ALTER TABLE leases ADD COLUMN holder_started INTEGER;
ALTER TABLE leases ADD COLUMN holder_boot TEXT;
"#,
        backfill: None,
    },
    Migration {
        version: 4,
        description: "notes: what happened to a run beside its moves (its output closed by its reader)",
        sql: r#"
CREATE TABLE notes (
    run_id  TEXT NOT NULL REFERENCES runs(id),
    at      INTEGER NOT NULL,
    text    TEXT NOT NULL
) STRICT;
CREATE INDEX notes_run ON notes (run_id, at);
"#,
        backfill: None,
    },
    Migration {
        version: 5,
        description: "commands about an attempt carry its request (rewritten from the start's intent)",
        sql: "",
        backfill: Some(crate::upgrade::commands_carry_requests),
    },
    Migration {
        version: 6,
        description: "the command line that started each run",
        sql: "ALTER TABLE runs ADD COLUMN command TEXT NOT NULL DEFAULT '';",
        backfill: None,
    },
    Migration {
        version: 7,
        description: "per-VM stop requests (`vmove skip RUN VM`, `vmove abort RUN VM`)",
        sql: r#"
CREATE TABLE vm_requests (
    id           INTEGER PRIMARY KEY,
    run_id       TEXT NOT NULL REFERENCES runs(id),
    vm           TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('skip', 'abort')),
    requested_at INTEGER NOT NULL,
    requested_by TEXT NOT NULL,
    delivered_at INTEGER
) STRICT;
CREATE INDEX vm_requests_run ON vm_requests (run_id, id);
"#,
        backfill: None,
    },
    Migration {
        version: 8,
        description: "the plan a run was started with: per VM its planned route, mode, start and end",
        sql: r#"
CREATE TABLE planned_moves (
    run_id      TEXT NOT NULL REFERENCES runs(id),
    ord         INTEGER NOT NULL,
    vm          TEXT NOT NULL,
    source      TEXT NOT NULL,
    destination TEXT NOT NULL,
    mode        TEXT NOT NULL CHECK (mode IN ('live', 'offline')),
    start_ms    INTEGER NOT NULL,
    end_ms      INTEGER,
    PRIMARY KEY (run_id, vm)
) STRICT;
"#,
        backfill: None,
    },
];

/// Rebuilds `vm_state` from the events of every run (migration 2).
fn backfill_vm_state(conn: &Connection) -> Result<()> {
    let mut stmt = conn.prepare(
        "SELECT run_id, seq, body FROM entries WHERE kind = 'event' ORDER BY run_id, seq",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut table: BTreeMap<(String, VmId), (usize, u64, VmStatus)> = BTreeMap::new();
    for row in rows {
        let (run, seq, body) = row?;
        let seq = seq as u64;
        let event: Event = serde_json::from_str(&body).map_err(|source| JournalError::Decode {
            run: run.clone(),
            seq,
            source,
        })?;
        let Some(vm) = event.kind.vm() else { continue };
        let key = (run.clone(), vm.clone());
        let next = table.keys().filter(|(r, _)| *r == run).count();
        let entry = table
            .entry(key)
            .or_insert_with(|| (next, seq, VmStatus::new(vm.clone(), event.at)));
        entry.2.apply(&event);
        entry.1 = seq;
    }
    for ((run, _), (ord, seq, status)) in table {
        put_status(conn, &run, ord, seq, &status)?;
    }
    Ok(())
}

/// Writes one VM's status row.
pub(crate) fn put_status(
    conn: &Connection,
    run: &str,
    ord: usize,
    seq: u64,
    s: &VmStatus,
) -> Result<()> {
    let json = crate::codec::encode(s)?;
    conn.execute(
        "INSERT INTO vm_state (run_id, vm, ord, name, source, phase, final, status, updated_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (run_id, vm) DO UPDATE SET name = ?4, source = ?5, phase = ?6, final = ?7,
             status = ?8, updated_seq = ?9",
        params![
            run,
            s.vm.as_str(),
            ord as i64,
            s.name,
            s.source.as_str(),
            s.phase.to_string(),
            s.phase.is_final(),
            json,
            seq as i64
        ],
    )?;
    Ok(())
}

/// The phase stored in `vm_state.phase`.
pub(crate) fn parse_phase(s: &str) -> Result<Phase> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        JournalError::Corrupt {
            what: "phase",
            value: s.to_owned(),
        }
    })
}

/// The schema version of an open database (0: empty).
pub fn version(conn: &Connection) -> Result<u32> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    let v: Option<i64> =
        conn.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))?;
    Ok(v.unwrap_or(0) as u32)
}

/// Migrates to the newest version.
pub fn migrate(conn: &mut Connection, now: WallTime) -> Result<u32> {
    migrate_to(conn, LATEST, now)
}

/// Migrates up to `target` (tests build old journals with it).
pub fn migrate_to(conn: &mut Connection, target: u32, now: WallTime) -> Result<u32> {
    let found = version(conn)?;
    if found > LATEST {
        return Err(JournalError::SchemaTooNew {
            found,
            supported: LATEST,
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version <= target) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version     INTEGER PRIMARY KEY NOT NULL,
                 applied_at  INTEGER NOT NULL,
                 description TEXT NOT NULL
             ) STRICT;",
        )?;
        let done: Option<i64> = tx
            .query_row(
                "SELECT version FROM schema_version WHERE version = ?1",
                [m.version],
                |r| r.get(0),
            )
            .optional()?;
        if done.is_some() {
            continue;
        }
        tx.execute_batch(m.sql)?;
        if let Some(f) = m.backfill {
            f(&tx)?;
        }
        tx.execute(
            "INSERT INTO schema_version (version, applied_at, description) VALUES (?1, ?2, ?3)",
            params![m.version, now.0, m.description],
        )?;
        tx.commit()?;
    }
    version(conn)
}
