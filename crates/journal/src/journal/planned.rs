//! The plan a run was started with: per VM its planned move (route, mode, predicted start and
//! end), made by the driving process when the run started (`vmove-plan`, as `vmove plan`
//! makes it) and drawn beside the real bars of the run's timeline. A run has no plan when none
//! could be made (a note says why) or when it was journaled before schema 8.

use super::handle::Journal;
use super::rows::run_state;
use crate::db::vals;
use crate::error::{JournalError, Result};
use vmove_core::{HostId, MigrationMode, Time, VmId};

/// One VM's move as planned: its first attempt's route and when it starts and ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedMove {
    pub vm: VmId,
    pub source: HostId,
    pub destination: HostId,
    /// Live or offline, as the run would move it.
    pub mode: MigrationMode,
    /// When its first attempt starts (run time).
    pub start: Time,
    /// When it is moved (run time); `None` if it would not move.
    pub end: Option<Time>,
}

impl Journal {
    /// Journals the plan of run `run`: its moves in the order they start, replacing any plan
    /// journaled before (one transaction). Any process may write it; needs no lease.
    pub fn record_plan(&mut self, run: &str, moves: &[PlannedMove]) -> Result<()> {
        let tx = self.write_tx()?;
        run_state(&tx, run)?;
        tx.execute("DELETE FROM planned_moves WHERE run_id = ?1", vals![run])?;
        for (i, m) in moves.iter().enumerate() {
            tx.execute(
                "INSERT INTO planned_moves (run_id, ord, vm, source, destination, mode, start_ms, end_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (run_id, vm) DO NOTHING",
                vals![
                    run,
                    i,
                    m.vm.as_str(),
                    m.source.as_str(),
                    m.destination.as_str(),
                    m.mode.to_string(),
                    m.start.as_millis(),
                    m.end.map(|t| t.as_millis()),
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The plan journaled with run `run`, in the order its moves start (empty: no plan).
    pub fn planned_moves(&self, run: &str) -> Result<Vec<PlannedMove>> {
        let rows = self.conn.query_map(
            "SELECT vm, source, destination, mode, start_ms, end_ms FROM planned_moves
             WHERE run_id = ?1 ORDER BY ord",
            vals![run],
            |r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<String>(1)?,
                    r.get::<String>(2)?,
                    r.get::<String>(3)?,
                    r.get::<i64>(4)?,
                    r.get::<Option<i64>>(5)?,
                ))
            },
        )?;
        let ms = |v: i64| Time(u64::try_from(v).unwrap_or(0));
        let mut out = Vec::new();
        for row in rows {
            let (vm, source, destination, mode, start, end) = row;
            let mode =
                serde_json::from_value(serde_json::Value::String(mode.clone())).map_err(|_| {
                    JournalError::Corrupt {
                        what: "migration mode",
                        value: mode,
                    }
                })?;
            out.push(PlannedMove {
                vm: VmId::new(vm),
                source: HostId::new(source),
                destination: HostId::new(destination),
                mode,
                start: ms(start),
                end: end.map(ms),
            });
        }
        Ok(out)
    }
}
