//! The cross-process slot ledger: before a start, the run reserves a slot on the move's source
//! and one on its destination, in ONE write transaction that counts every process's live
//! reservations and the migrations the hosts show that are not one of them. Writers take
//! turns (SQLite `BEGIN IMMEDIATE`, PostgreSQL the journal-wide advisory lock: `db.rs`), so
//! two processes never both take a host's last slot.
//!
//! A reservation lives while its run's lease does: it names the lease's token, and counts only
//! while that token holds an unexpired lease of a running run. Expired, released or taken over
//! (a new token), the run finished: it no longer counts, and the next reservation's transaction
//! deletes it. [`Journal::release`] and [`Journal::finish_run`] delete the run's at once.

use super::handle::Journal;
use super::lease::check_lease;
use super::rows::ensure_running;
use crate::clock::WallTime;
use crate::db::{Db, vals};
use crate::error::{JournalError, Result};
use std::collections::BTreeSet;
use vmove_core::{HostId, HostView, VmId};

/// What [`Journal::reserve_slots`] answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotGrant {
    /// Both slots are this run's until released (or the lease ends).
    Reserved,
    /// A host would go over its limit: nothing was reserved. Per host of the move (source
    /// first), the slots others hold there as counted (other runs' reservations, and the
    /// migrations the host showed that are not one of them) and whether that host is full.
    Full(Vec<HostCount>),
}

/// One host's count in a refused reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCount {
    pub host: HostId,
    /// Slots others hold (not this run's).
    pub others: u32,
    /// The slots this run holds there (its reservations, or the engine's own count).
    pub ours: u32,
    /// The limit it was checked against.
    pub limit: u32,
    /// One more would go over the limit.
    pub full: bool,
}

/// A live reservation (for `status` and tests).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlotReservation {
    pub run: String,
    pub vm: VmId,
    pub host: HostId,
    /// `source` or `destination`.
    pub role: String,
    pub since: WallTime,
}

/// Reservations whose lease no longer lives are deleted (they no longer count anyway).
const CLEAN_DEAD: &str = "DELETE FROM slot_reservations WHERE NOT EXISTS (
     SELECT 1 FROM leases l JOIN runs r ON r.id = l.run_id
     WHERE l.run_id = slot_reservations.run_id AND l.token = slot_reservations.token
       AND l.expires_at > ?1 AND r.state = 'running')";

impl Journal {
    /// Reserves `vm`'s slots on `source` and `destination` for run `run` (whose lease this
    /// handle must hold, unexpired), in one transaction. Each host's [`HostView`] is what the
    /// run's engine knows of it: its effective `limit`, `ours` (this run's slots, the start being
    /// asked included), and `foreign`/`foreign_vms` (the migrations its last listing showed
    /// that are not this run's, and which of them it could name). A host counts: this run's
    /// slots (its reservations there, or the engine's `ours` less this start, whichever is
    /// more), the other runs' live reservations, the named foreign migrations that are not
    /// one of those, and the unnamed rest beyond the other reservations the host did not name.
    /// One more on either host over its limit: [`SlotGrant::Full`], nothing reserved. A
    /// reservation this run already has for `vm` is replaced.
    pub fn reserve_slots(
        &mut self,
        run: &str,
        vm: &VmId,
        source: &HostView,
        destination: &HostView,
    ) -> Result<SlotGrant> {
        let now = self.now();
        let token = self.held.get(run).cloned();
        let tx = self.write_tx()?;
        let grant = reserve_in(&tx, run, token.as_deref(), now, vm, source, destination)?;
        tx.commit()?;
        Ok(grant)
    }

    /// [`Journal::reserve_slots`] WITHOUT its write transaction: each statement on its own,
    /// `between` called after the counting and before the writing. For the race test only,
    /// which shows that its check sees two processes taking one last slot when nothing makes
    /// them take turns (feature `test-util`).
    #[cfg(feature = "test-util")]
    pub fn reserve_slots_without_transaction(
        &mut self,
        run: &str,
        vm: &VmId,
        source: &HostView,
        destination: &HostView,
        between: &dyn Fn(),
    ) -> Result<SlotGrant> {
        let now = self.now();
        let token = self.held.get(run).cloned();
        reserve_steps(
            &self.conn,
            run,
            token.as_deref(),
            now,
            vm,
            source,
            destination,
            between,
        )
    }

    /// Gives `vm`'s slots back (its migration ended, or it was given up). Nothing to give back
    /// is not an error; only this handle's reservations are removed.
    pub fn release_slots(&mut self, run: &str, vm: &VmId) -> Result<()> {
        let Some(token) = self.held.get(run).cloned() else {
            return Ok(());
        };
        let tx = self.write_tx()?;
        tx.execute(
            "DELETE FROM slot_reservations WHERE run_id = ?1 AND vm = ?2 AND token = ?3",
            vals![run, vm.as_str(), token],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The reservations that count now (their lease lives), by host, run and VM.
    pub fn slot_reservations(&self) -> Result<Vec<SlotReservation>> {
        let now = self.now();
        let mut out = self.conn.query_map(
            "SELECT s.run_id, s.vm, s.host, s.role, s.since FROM slot_reservations s
             JOIN leases l ON l.run_id = s.run_id AND l.token = s.token
             JOIN runs r ON r.id = s.run_id
             WHERE l.expires_at > ?1 AND r.state = 'running'",
            vals![now.0],
            |r| {
                Ok(SlotReservation {
                    run: r.get(0)?,
                    vm: VmId::new(r.get::<String>(1)?),
                    host: HostId::new(r.get::<String>(2)?),
                    role: r.get(3)?,
                    since: WallTime(r.get(4)?),
                })
            },
        )?;
        out.sort_by(|a, b| {
            (&a.host, &a.run, &a.vm, &a.role).cmp(&(&b.host, &b.run, &b.vm, &b.role))
        });
        Ok(out)
    }
}

/// Deletes a run's reservations (its lease released, the run finished), inside `tx`.
pub(super) fn drop_run_reservations(tx: &Db, run: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM slot_reservations WHERE run_id = ?1",
        vals![run],
    )?;
    Ok(())
}

fn reserve_in(
    tx: &Db,
    run: &str,
    token: Option<&str>,
    now: WallTime,
    vm: &VmId,
    source: &HostView,
    destination: &HostView,
) -> Result<SlotGrant> {
    reserve_steps(tx, run, token, now, vm, source, destination, &|| {})
}

#[allow(clippy::too_many_arguments)]
fn reserve_steps(
    conn: &Db,
    run: &str,
    token: Option<&str>,
    now: WallTime,
    vm: &VmId,
    source: &HostView,
    destination: &HostView,
    between: &dyn Fn(),
) -> Result<SlotGrant> {
    if source.id == destination.id {
        return Err(JournalError::BadSlotRequest {
            run: run.to_owned(),
            vm: vm.as_str().to_owned(),
            why: format!(
                "its source and destination are the same host `{}`",
                source.id
            ),
        });
    }
    ensure_running(conn, run)?;
    check_lease(conn, run, token, now, true)?;
    // `check_lease` proved the token is held.
    let token = token.unwrap_or_default();
    conn.execute(CLEAN_DEAD, vals![now.0])?;
    conn.execute(
        "DELETE FROM slot_reservations WHERE run_id = ?1 AND vm = ?2",
        vals![run, vm.as_str()],
    )?;
    let counts = [
        count_host(conn, run, source)?,
        count_host(conn, run, destination)?,
    ];
    between();
    if counts.iter().any(|c| c.full) {
        return Ok(SlotGrant::Full(counts.to_vec()));
    }
    for (host, role) in [(&source.id, "source"), (&destination.id, "destination")] {
        conn.execute(
            "INSERT INTO slot_reservations (run_id, token, vm, host, role, since)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            vals![run, token, vm.as_str(), host.as_str(), role, now.0],
        )?;
    }
    Ok(SlotGrant::Reserved)
}

/// One host's count (see [`Journal::reserve_slots`]); the dead reservations are already gone.
fn count_host(conn: &Db, run: &str, view: &HostView) -> Result<HostCount> {
    let rows = conn.query_map(
        "SELECT run_id, vm FROM slot_reservations WHERE host = ?1",
        vals![view.id.as_str()],
        |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
    )?;
    let mut ours_reserved = 0u32;
    let mut others: BTreeSet<String> = BTreeSet::new();
    for (r, v) in rows {
        if r == run {
            ours_reserved += 1;
        } else {
            others.insert(v);
        }
    }
    let named: BTreeSet<&str> = view.foreign_vms.iter().map(VmId::as_str).collect();
    let named_extra = named.iter().filter(|v| !others.contains(**v)).count() as u32;
    let unnamed = view.foreign.saturating_sub(named.len() as u32);
    let others_unnamed = others
        .iter()
        .filter(|v| !named.contains(v.as_str()))
        .count() as u32;
    let unnamed_extra = unnamed.saturating_sub(others_unnamed);
    let others_total = others.len() as u32 + named_extra + unnamed_extra;
    let ours = ours_reserved.max(view.ours.saturating_sub(1));
    Ok(HostCount {
        host: view.id.clone(),
        others: others_total,
        ours,
        limit: view.limit,
        full: ours + others_total + 1 > view.limit,
    })
}
