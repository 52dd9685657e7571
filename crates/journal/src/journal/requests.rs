//! Per-VM stop requests (`vmove skip RUN VM`, `vmove abort RUN VM`): any process writes one
//! (no lease), the run's driving process polls them next to the run's stop request, feeds each
//! to the engine and marks it delivered, so that it is fed once. A request written while no
//! process drove the run is undelivered: the `resume` that follows feeds it.

use super::handle::Journal;
use super::rows::ensure_running;
use crate::clock::WallTime;
use crate::db::{Db, vals};
use crate::error::{JournalError, Result};
use crate::record::VmStopRequest;
use crate::schema::parse_phase;
use vmove_core::{Phase, VmId};

impl Journal {
    /// Asks the running run `run` to stop one VM's move: `vm` is its id or its name. `abort`
    /// false (skip): only a VM that has not started (queued, or waiting to retry); true: its
    /// running migration is aborted too. Refused, nothing written, when the run is not running,
    /// the VM is not the run's, or its journaled phase does not allow it (already started for a
    /// skip, already moved or ended). `by` names who asks. Needs no lease.
    pub fn request_vm_stop(
        &mut self,
        run: &str,
        vm: &str,
        abort: bool,
        by: &str,
    ) -> Result<VmStopRequest> {
        let at = self.now();
        let tx = self.write_tx()?;
        ensure_running(&tx, run)?;
        let (id, name, phase) = find_vm(&tx, run, vm)?;
        let action = if abort { "abort" } else { "skip" };
        let refuse = |why: String| JournalError::VmStopRefused {
            run: run.to_owned(),
            name: name.clone(),
            action,
            why,
        };
        match phase {
            Phase::Queued | Phase::BackingOff => {}
            p if p.is_final() => return Err(refuse(format!("its move has already ended ({p})"))),
            p @ (Phase::Verifying | Phase::CleaningUp) => {
                return Err(refuse(format!(
                    "it has already moved ({p}): nothing to abort"
                )));
            }
            p if !abort => {
                return Err(refuse(format!(
                    "its move has already started ({p}): `vmove abort {run} {name}` aborts it"
                )));
            }
            _ => {}
        }
        let rid: i64 = tx.query_row(
            "INSERT INTO vm_requests (run_id, vm, kind, requested_at, requested_by)
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
            vals![run, id.as_str(), action, at.0, by],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(VmStopRequest {
            id: rid,
            vm: id,
            name,
            abort,
            at,
            by: by.to_owned(),
            delivered_at: None,
        })
    }

    /// The run's per-VM stop requests, oldest first: all of them, or (`undelivered`) those no
    /// driving process took yet.
    pub fn vm_stop_requests(&self, run: &str, undelivered: bool) -> Result<Vec<VmStopRequest>> {
        super::rows::run_state(&self.conn, run)?;
        self.conn.query_map(
            "SELECT r.id, r.vm, COALESCE(s.name, r.vm), r.kind, r.requested_at, r.requested_by,
                    r.delivered_at
             FROM vm_requests r LEFT JOIN vm_state s ON s.run_id = r.run_id AND s.vm = r.vm
             WHERE r.run_id = ?1 AND (?2 = 0 OR r.delivered_at IS NULL) ORDER BY r.id",
            vals![run, undelivered],
            |r| {
                Ok(VmStopRequest {
                    id: r.get(0)?,
                    vm: VmId::new(r.get::<String>(1)?),
                    name: r.get(2)?,
                    abort: r.get::<String>(3)? == "abort",
                    at: WallTime(r.get(4)?),
                    by: r.get(5)?,
                    delivered_at: r.get::<Option<i64>>(6)?.map(WallTime),
                })
            },
        )
    }

    /// Marks requests delivered (taken by the driving process and fed to its engine).
    pub fn mark_vm_stops_delivered(&mut self, run: &str, ids: &[i64]) -> Result<()> {
        let at = self.now();
        let tx = self.write_tx()?;
        for id in ids {
            tx.execute(
                "UPDATE vm_requests SET delivered_at = ?3
                 WHERE run_id = ?1 AND id = ?2 AND delivered_at IS NULL",
                vals![run, id, at.0],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// The run's VM named `vm` (its id, else its name): its id, name and journaled phase.
fn find_vm(conn: &Db, run: &str, vm: &str) -> Result<(VmId, String, Phase)> {
    let rows: Vec<(String, String, String)> = conn.query_map(
        "SELECT vm, name, phase FROM vm_state WHERE run_id = ?1 AND (vm = ?2 OR name = ?2)
         ORDER BY (vm = ?2) DESC, ord",
        vals![run, vm],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let unknown = || JournalError::UnknownVm {
        run: run.to_owned(),
        vm: vm.to_owned(),
    };
    let (id, name, phase) = match rows.as_slice() {
        [] => return Err(unknown()),
        [one] => one.clone(),
        [first, ..] if first.0 == vm => first.clone(),
        many => {
            return Err(JournalError::VmStopRefused {
                run: run.to_owned(),
                name: vm.to_owned(),
                action: "name",
                why: format!(
                    "{} of its VMs are named so: name it by its id ({})",
                    many.len(),
                    many.iter()
                        .map(|r| r.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    };
    Ok((VmId::new(id), name, parse_phase(&phase)?))
}
