//! A run's life and its lease: creating a run, taking, refreshing and giving up the lease,
//! ending the run.

use super::guard::{check_selection_free, check_vm_free};
use super::handle::Journal;
use super::rows::{ensure_running, read_lease};
use super::slots::drop_run_reservations;
use crate::clock::WallTime;
use crate::codec::{decode, encode, redact};
use crate::db::{Db, vals};
use crate::error::{JournalError, Result};
use crate::record::{Holder, LeaseInfo, NewRun, RunEnd, RunState};
use std::time::Duration;
use vmove_core::VmId;

/// A lease [`Journal::acquire_taking_over`] took before it expired, because its holder on this
/// machine is provably dead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakeOver {
    /// The dead holder.
    pub holder: Holder,
    /// How it is known dead (`is gone`, `is gone (its pid is now a later process's)`).
    pub how: &'static str,
    /// When its lease would have expired.
    pub until: WallTime,
}

impl std::fmt::Display for TakeOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "holder pid {} on this machine {}: taking over",
            self.holder.pid, self.how
        )
    }
}

/// Whether `holder` looks gone though it cannot be proven (on this host, its pid absent,
/// but no start time or boot identity recorded to prove it is the same boot): said in
/// [`JournalError::LeaseHeld`], never acted on.
fn holder_gone(holder: &Holder) -> bool {
    let here = Holder::current();
    let proc = std::path::Path::new("/proc");
    holder.host == here.host
        && holder.pid != here.pid
        && proc.join("self").exists()
        && !proc.join(holder.pid.to_string()).exists()
}

impl Journal {
    /// Creates a run and gives this handle its lease, in one transaction. Refused, with nothing
    /// written, if the id exists or if another live run holds (or may be about to select) one of
    /// its VMs.
    pub fn create_run(&mut self, new: &NewRun) -> Result<LeaseInfo> {
        let now = self.now();
        let token = self.new_token();
        let holder = self.opts.holder.clone();
        let ttl = self.opts.lease_ttl;
        let run = new.spec.run_id.clone();
        let spec_json = encode(&new.spec)?;
        let tx = self.write_tx()?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1)",
            vals![&run],
            |r| r.get(0),
        )?;
        if exists {
            return Err(JournalError::RunExists(run));
        }
        check_selection_free(&tx, &run, &new.spec, now)?;
        tx.execute(
            "INSERT INTO runs (id, created_at, config_format, config, spec, state, driver_host, driver_pid, command)
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8)",
            vals![run, now.0, new.config_format.as_str(), redact(new.config.clone()), spec_json, holder.host, holder.pid, redact(new.command.clone())],
        )?;
        let lease = write_lease(&tx, &run, &token, &holder, now, now, ttl)?;
        tx.commit()?;
        self.held.insert(run, token);
        Ok(lease)
    }

    /// Takes the lease of an existing run (to resume it), or renews it if this handle holds it.
    /// Refused while another process's lease is unexpired (the error names it), or while another
    /// live run holds one of this run's unfinished VMs.
    pub fn acquire(&mut self, run: &str) -> Result<LeaseInfo> {
        self.acquire_taking_over(run).map(|(lease, _)| lease)
    }

    /// [`Journal::acquire`], which also takes an unexpired lease over when its holder is
    /// provably dead on this machine (same boot and pid namespace, and its pid gone or
    /// another process's: [`crate::proc`]), and says so. A holder that runs, or that this
    /// process cannot see (another machine, another boot, no start time recorded), keeps its
    /// lease until it expires.
    pub fn acquire_taking_over(&mut self, run: &str) -> Result<(LeaseInfo, Option<TakeOver>)> {
        let now = self.now();
        let mine = self.held.get(run).cloned();
        let token = mine.clone().unwrap_or_else(|| self.new_token());
        let holder = self.opts.holder.clone();
        let ttl = self.opts.lease_ttl;
        let tx = self.write_tx()?;
        ensure_running(&tx, run)?;
        let current = read_lease(&tx, run)?;
        let mut acquired_at = now;
        let mut took_over = None;
        if let Some((tok, info)) = &current {
            if Some(tok) == mine.as_ref() {
                acquired_at = info.acquired_at;
            } else if info.expires_at > now {
                match crate::holder::holder_state(&info.holder) {
                    crate::holder::HolderState::Dead(how) => {
                        took_over = Some(TakeOver {
                            holder: info.holder.clone(),
                            how,
                            until: info.expires_at,
                        });
                    }
                    state => {
                        return Err(JournalError::LeaseHeld {
                            run: run.to_owned(),
                            pid: info.holder.pid,
                            host: info.holder.host.clone(),
                            until: info.expires_at,
                            holder_gone: state == crate::holder::HolderState::Unknown
                                && holder_gone(&info.holder),
                        });
                    }
                }
            }
        }
        // The VM guard, for resume: none of our unfinished VMs may be held by another live run.
        let vms: Vec<String> = {
            tx.query_map(
                "SELECT vm FROM vm_state WHERE run_id = ?1 AND final = 0",
                vals![run],
                |r| r.get(0),
            )?
        };
        for vm in vms {
            check_vm_free(&tx, run, &VmId::new(vm), now)?;
        }
        // A run that has selected nothing yet (it died before its first listing) would select
        // on resume: the guard of `create_run` against the live runs created meanwhile.
        let selected: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM vm_state WHERE run_id = ?1)",
            vals![run],
            |r| r.get(0),
        )?;
        if !selected {
            let spec: String =
                tx.query_row("SELECT spec FROM runs WHERE id = ?1", vals![run], |r| {
                    r.get(0)
                })?;
            check_selection_free(&tx, run, &decode(run, 0, &spec)?, now)?;
        }
        let lease = write_lease(&tx, run, &token, &holder, acquired_at, now, ttl)?;
        tx.execute(
            "UPDATE runs SET driver_host = ?2, driver_pid = ?3 WHERE id = ?1",
            vals![run, holder.host, holder.pid],
        )?;
        tx.commit()?;
        self.held.insert(run.to_owned(), token);
        Ok((lease, took_over))
    }

    /// Extends this handle's lease. Fails with [`JournalError::LeaseLost`] if another process
    /// took the run over (this one must stop acting), [`JournalError::LeaseNotHeld`] if this
    /// handle never held it. An expired lease nobody took is renewed.
    pub fn refresh_lease(&mut self, run: &str) -> Result<LeaseInfo> {
        let now = self.now();
        let token = self.held.get(run).cloned();
        let holder = self.opts.holder.clone();
        let ttl = self.opts.lease_ttl;
        let tx = self.write_tx()?;
        check_lease(&tx, run, token.as_deref(), now, false)?;
        let acquired = read_lease(&tx, run)?
            .map(|(_, l)| l.acquired_at)
            .unwrap_or(now);
        // `check_lease` proved the token is held.
        let lease = write_lease(
            &tx,
            run,
            token.as_deref().unwrap_or_default(),
            &holder,
            acquired,
            now,
            ttl,
        )?;
        tx.commit()?;
        Ok(lease)
    }

    /// Gives the lease up without ending the run (it stays resumable at once).
    pub fn release(&mut self, run: &str) -> Result<()> {
        let Some(token) = self.held.remove(run) else {
            return Ok(());
        };
        let tx = self.write_tx()?;
        let mine = tx.execute(
            "DELETE FROM leases WHERE run_id = ?1 AND token = ?2",
            vals![run, token],
        )?;
        // Its slot reservations die with the lease (a lease another process took keeps its own).
        if mine > 0 {
            drop_run_reservations(&tx, run)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Ends the run and drops its lease. Needs the lease.
    pub fn finish_run(&mut self, run: &str, end: RunEnd) -> Result<()> {
        let now = self.now();
        let token = self.held.get(run).cloned();
        let tx = self.write_tx()?;
        ensure_running(&tx, run)?;
        check_lease(&tx, run, token.as_deref(), now, false)?;
        let (state, detail) = match end {
            RunEnd::Finished => (RunState::Finished, None),
            RunEnd::Failed(e) => (RunState::Failed, Some(redact(e))),
            RunEnd::Aborted => (RunState::Aborted, None),
        };
        tx.execute(
            "UPDATE runs SET state = ?2, state_detail = ?3, finished_at = ?4 WHERE id = ?1",
            vals![run, state.as_str(), detail, now.0],
        )?;
        tx.execute("DELETE FROM leases WHERE run_id = ?1", vals![run])?;
        drop_run_reservations(&tx, run)?;
        tx.commit()?;
        self.held.remove(run);
        Ok(())
    }
}

fn write_lease(
    tx: &Db,
    run: &str,
    token: &str,
    holder: &Holder,
    acquired_at: WallTime,
    now: WallTime,
    ttl: Duration,
) -> Result<LeaseInfo> {
    let expires_at = now.after(ttl);
    tx.execute(
        "INSERT INTO leases (run_id, token, holder_pid, holder_host, acquired_at, refreshed_at, expires_at,
                             holder_started, holder_boot)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (run_id) DO UPDATE SET token = ?2, holder_pid = ?3, holder_host = ?4,
             acquired_at = ?5, refreshed_at = ?6, expires_at = ?7, holder_started = ?8, holder_boot = ?9",
        vals![
            run,
            token,
            holder.pid,
            holder.host,
            acquired_at.0,
            now.0,
            expires_at.0,
            holder.started.map(|t| t as i64),
            holder.boot
        ],
    )?;
    Ok(LeaseInfo {
        holder: holder.clone(),
        acquired_at,
        refreshed_at: now,
        expires_at,
    })
}

/// Checks that `token` holds the run's lease (and, for intents, that it has not expired).
pub(super) fn check_lease(
    conn: &Db,
    run: &str,
    token: Option<&str>,
    now: WallTime,
    unexpired: bool,
) -> Result<()> {
    match (read_lease(conn, run)?, token) {
        (Some((tok, info)), Some(mine)) if tok == mine => {
            if unexpired && info.expires_at <= now {
                Err(JournalError::LeaseExpired {
                    run: run.to_owned(),
                    until: info.expires_at,
                })
            } else {
                Ok(())
            }
        }
        (Some((_, info)), Some(_)) => Err(JournalError::LeaseLost {
            run: run.to_owned(),
            pid: info.holder.pid,
            host: info.holder.host,
        }),
        (_, _) => Err(JournalError::LeaseNotHeld {
            run: run.to_owned(),
        }),
    }
}
