//! The rows read inside a transaction (or on the connection), shared by the other rooms.

use crate::clock::WallTime;
use crate::codec::decode;
use crate::db::{Db, vals};
use crate::error::{JournalError, Result};
use crate::record::{Holder, LeaseInfo, RunState, RunSummary, StopRequest};
use crate::schema;
use crate::status::VmStatus;
use std::collections::BTreeMap;

pub(super) fn run_state(conn: &Db, run: &str) -> Result<RunState> {
    let s: Option<String> =
        conn.query_opt("SELECT state FROM runs WHERE id = ?1", vals![run], |r| {
            r.get(0)
        })?;
    let s = s.ok_or_else(|| JournalError::UnknownRun(run.to_owned()))?;
    RunState::parse(&s).ok_or(JournalError::Corrupt {
        what: "run state",
        value: s,
    })
}

/// Refuses, with its state, a run that is not running: entries, lease changes, its end and
/// stop requests are for running runs only.
pub(super) fn ensure_running(conn: &Db, run: &str) -> Result<()> {
    let state = run_state(conn, run)?;
    if state != RunState::Running {
        return Err(JournalError::RunNotRunning {
            run: run.to_owned(),
            state,
        });
    }
    Ok(())
}

pub(super) fn read_lease(conn: &Db, run: &str) -> Result<Option<(String, LeaseInfo)>> {
    conn.query_opt(
        "SELECT token, holder_pid, holder_host, acquired_at, refreshed_at, expires_at,
                    holder_started, holder_boot
             FROM leases WHERE run_id = ?1",
        vals![run],
        |r| {
            Ok((
                r.get::<String>(0)?,
                LeaseInfo {
                    holder: Holder {
                        pid: r.get(1)?,
                        host: r.get(2)?,
                        started: r.get::<Option<i64>>(6)?.map(|t| t as u64),
                        boot: r.get(7)?,
                    },
                    acquired_at: WallTime(r.get(3)?),
                    refreshed_at: WallTime(r.get(4)?),
                    expires_at: WallTime(r.get(5)?),
                },
            ))
        },
    )
}

pub(super) fn read_statuses(conn: &Db, run: &str) -> Result<Vec<VmStatus>> {
    let rows = conn.query_map(
        "SELECT updated_seq, status FROM vm_state WHERE run_id = ?1 ORDER BY ord",
        vals![run],
        |r| Ok((r.get::<i64>(0)?, r.get::<String>(1)?)),
    )?;
    let mut out = Vec::new();
    for (seq, json) in rows {
        let seq = super::read::not_negative(run, seq, || {
            "the entry a VM's status was last set by".into()
        })?;
        out.push(decode(run, seq, &json)?);
    }
    Ok(out)
}

pub(super) fn read_stop(conn: &Db, run: &str) -> Result<Option<StopRequest>> {
    let (kind, at): (String, Option<i64>) = conn.query_row(
        "SELECT stop_request, stop_requested_at FROM runs WHERE id = ?1",
        vals![run],
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

pub(super) fn summary(conn: &Db, run: &str) -> Result<RunSummary> {
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
    let row: Option<Row> = conn.query_opt(
        "SELECT created_at, state, state_detail, finished_at, driver_host, driver_pid, last_seq,
                    command
             FROM runs WHERE id = ?1",
        vals![run],
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
    )?;
    let (created, state, detail, finished, host, pid, last_seq, command) =
        row.ok_or_else(|| JournalError::UnknownRun(run.to_owned()))?;
    let state = RunState::parse(&state).ok_or(JournalError::Corrupt {
        what: "run state",
        value: state,
    })?;
    let mut phases = BTreeMap::new();
    {
        let rows = conn.query_map(
            "SELECT phase, COUNT(*) FROM vm_state WHERE run_id = ?1 GROUP BY phase",
            vals![run],
            |r| Ok((r.get::<String>(0)?, r.get::<u32>(1)?)),
        )?;
        for (p, n) in rows {
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
