//! The rows read inside a transaction (or on the connection), shared by the other rooms.

use crate::clock::WallTime;
use crate::codec::decode;
use crate::error::{JournalError, Result};
use crate::record::{Holder, LeaseInfo, RunState, RunSummary, StopRequest};
use crate::schema;
use crate::status::VmStatus;
use rusqlite::{Connection, OptionalExtension};
use std::collections::BTreeMap;

pub(super) fn run_state(conn: &Connection, run: &str) -> Result<RunState> {
    let s: Option<String> = conn
        .query_row("SELECT state FROM runs WHERE id = ?1", [run], |r| r.get(0))
        .optional()?;
    let s = s.ok_or_else(|| JournalError::UnknownRun(run.to_owned()))?;
    RunState::parse(&s).ok_or(JournalError::Corrupt {
        what: "run state",
        value: s,
    })
}

/// Refuses, with its state, a run that is not running: entries, lease changes, its end and
/// stop requests are for running runs only.
pub(super) fn ensure_running(conn: &Connection, run: &str) -> Result<()> {
    let state = run_state(conn, run)?;
    if state != RunState::Running {
        return Err(JournalError::RunNotRunning {
            run: run.to_owned(),
            state,
        });
    }
    Ok(())
}

pub(super) fn read_lease(conn: &Connection, run: &str) -> Result<Option<(String, LeaseInfo)>> {
    Ok(conn
        .query_row(
            "SELECT token, holder_pid, holder_host, acquired_at, refreshed_at, expires_at,
                    holder_started, holder_boot
             FROM leases WHERE run_id = ?1",
            [run],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    LeaseInfo {
                        holder: Holder {
                            pid: r.get(1)?,
                            host: r.get(2)?,
                            started: r.get::<_, Option<i64>>(6)?.map(|t| t as u64),
                            boot: r.get(7)?,
                        },
                        acquired_at: WallTime(r.get(3)?),
                        refreshed_at: WallTime(r.get(4)?),
                        expires_at: WallTime(r.get(5)?),
                    },
                ))
            },
        )
        .optional()?)
}

pub(super) fn read_statuses(conn: &Connection, run: &str) -> Result<Vec<VmStatus>> {
    let mut stmt =
        conn.prepare("SELECT updated_seq, status FROM vm_state WHERE run_id = ?1 ORDER BY ord")?;
    let rows = stmt.query_map([run], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, json) = row?;
        out.push(decode(run, seq, &json)?);
    }
    Ok(out)
}

pub(super) fn read_stop(conn: &Connection, run: &str) -> Result<Option<StopRequest>> {
    let (kind, at): (String, Option<i64>) = conn.query_row(
        "SELECT stop_request, stop_requested_at FROM runs WHERE id = ?1",
        [run],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let at = WallTime(at.unwrap_or_default());
    Ok(match kind.as_str() {
        "none" => None,
        "stop" => Some(StopRequest {
            abort_running: false,
            at,
        }),
        "now" => Some(StopRequest {
            abort_running: true,
            at,
        }),
        other => {
            return Err(JournalError::Corrupt {
                what: "stop request",
                value: other.to_owned(),
            });
        }
    })
}

pub(super) fn summary(conn: &Connection, run: &str) -> Result<RunSummary> {
    type Row = (
        i64,
        String,
        Option<String>,
        Option<i64>,
        String,
        u32,
        i64,
        String,
    );
    let row: Option<Row> = conn
        .query_row(
            "SELECT created_at, state, state_detail, finished_at, driver_host, driver_pid, last_seq,
                    command
             FROM runs WHERE id = ?1",
            [run],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            },
        )
        .optional()?;
    let (created, state, detail, finished, host, pid, last_seq, command) =
        row.ok_or_else(|| JournalError::UnknownRun(run.to_owned()))?;
    let state = RunState::parse(&state).ok_or(JournalError::Corrupt {
        what: "run state",
        value: state,
    })?;
    let mut phases = BTreeMap::new();
    {
        let mut stmt =
            conn.prepare("SELECT phase, COUNT(*) FROM vm_state WHERE run_id = ?1 GROUP BY phase")?;
        let rows = stmt.query_map([run], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?;
        for row in rows {
            let (p, n) = row?;
            phases.insert(schema::parse_phase(&p)?, n);
        }
    }
    Ok(RunSummary {
        id: run.to_owned(),
        command,
        created_at: WallTime(created),
        state,
        detail,
        finished_at: finished.map(WallTime),
        driver: Holder {
            pid,
            host,
            started: None,
            boot: None,
        },
        stop: read_stop(conn, run)?,
        lease: read_lease(conn, run)?.map(|(_, l)| l),
        entries: last_seq as u64,
        phases,
    })
}
