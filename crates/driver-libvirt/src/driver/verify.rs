//! Where the VM is ([`Driver::locate`]) and the proof that it moved ([`Driver::verify`]).

use super::recovery::{runs_this_attempts_copy, source_superseded};
use super::state::{Inner, blocking_on};
use crate::error::Phase;
use crate::ffi;
use crate::host::{self, describe, find_domain};
use crate::provenance;
use vmove_driver::*;

/// [`Driver::locate`]: the VM on each host, and the migration still running (ours, or one found
/// on the source: adopted).
pub(super) async fn locate(inner: &Inner, req: &MigrationRequest) -> DriverResult<Location> {
    let src = inner.host(&req.source)?;
    let dst = inner.host(&req.destination)?;
    let vm = req.vm.clone();
    let ours: Option<String> = inner
        .migrations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(_, m)| m.vm == req.vm && m.outcome().is_none())
        .map(|(h, _)| h.clone());
    blocking_on(vec![src.clone(), dst.clone()], Phase::Read, move || {
        let sconn = src.conn()?;
        let dconn = dst.conn()?;
        let on_source = match find_domain(&sconn, &vm)? {
            Some(d) => Some(host::vm_info(&sconn, &d)?),
            None => None,
        };
        let on_destination = match find_domain(&dconn, &vm)? {
            Some(d) => Some(host::vm_info(&dconn, &d)?),
            None => None,
        };
        // A migration that is not over: its job runs, or it was left between Perform and
        // Confirm by a client that went away (its abort rolls it back).
        let migrating = on_source.as_ref().is_some_and(|v| {
            matches!(
                v.activity,
                Activity::MigratingOut | Activity::MigrationInterrupted
            )
        });
        let running_migration = match (migrating, ours) {
            (true, Some(h)) => Some(MigrationHandle(h.into())),
            (true, None) => Some(MigrationHandle(format!("adopted:{vm}").into())),
            (false, Some(h)) => Some(MigrationHandle(h.into())), // our offline copy
            (false, None) => None,
        };
        Ok(Location {
            on_source,
            on_destination,
            running_migration,
        })
    })
    .await
}

/// [`Driver::verify`]: on the destination with every disk at its recorded size, and stopped on
/// the source; once proven, the disks' provenance markers go.
pub(super) async fn verify(inner: &Inner, req: &MigrationRequest) -> DriverResult<Verification> {
    let src = inner.host(&req.source)?;
    let dst = inner.host(&req.destination)?;
    let req = req.clone();
    let (vm, mode) = (req.vm.clone(), req.mode);
    blocking_on(vec![src.clone(), dst.clone()], Phase::Read, move || {
            let dconn = dst.conn()?;
            let sconn = src.conn()?;
            let mut detail = Vec::new();
            let ddom = find_domain(&dconn, &vm)?;
            let mut used = Vec::new();
            let mut provenance = None;
            let mut pools = host::Pools::default();
            // Destination disks with no recorded size (proven by their size only if the
            // source's copy is gone).
            let mut unrecorded = Vec::new();
            let (on_destination, mut disks_present) = match &ddom {
                None => {
                    detail.push("not defined on the destination".to_owned());
                    (false, false)
                }
                Some(d) => {
                    let active = d.is_active().unwrap_or(false);
                    let persistent = d.is_persistent().unwrap_or(false);
                    let on = match mode {
                        MigrationMode::Live => active && persistent,
                        MigrationMode::Offline => persistent,
                    };
                    if !on {
                        detail.push(format!(
                            "on the destination: active {active}, persistent {persistent}"
                        ));
                    }
                    let (_, desc) = describe(d, 0)?;
                    used = host::paths_of(&dconn, &desc, &mut pools);
                    let mut ok = !desc.disks.is_empty() || desc.provenance.is_some();
                    for disk in &desc.disks {
                        match pools.vol_at(&dconn, &disk.source)? {
                            Some(v) => {
                                let (cap, _, _, _) = host::vol_facts(&v)?;
                                let want = desc.provenance.as_ref().and_then(|p| {
                                    p.sizes
                                        .iter()
                                        .find(|(p, _)| p == &disk.source)
                                        .map(|(_, s)| *s)
                                });
                                if want.is_some_and(|w| w != cap) || cap == 0 {
                                    ok = false;
                                    detail.push(format!(
                                        "{} has size {cap}, expected {want:?}",
                                        disk.source
                                    ));
                                }
                                if want.is_none() {
                                    unrecorded.push(disk.source.clone());
                                }
                            }
                            None => {
                                ok = false;
                                detail.push(format!("{} missing on the destination", disk.source));
                            }
                        }
                    }
                    provenance = desc.provenance;
                    (on, ok)
                }
            };
            let sdom = find_domain(&sconn, &vm)?;
            let stopped_on_source = match &sdom {
                None => true,
                Some(d) if !d.is_active().unwrap_or(true) => true,
                // Paused by a migration its client left between Finish and Confirm: the
                // source copy does not run, and the destination runs this attempt's copy. The
                // clean-up stops and removes it, as Confirm would have.
                Some(d) if mode == MigrationMode::Live && host::interrupted_migration(d)? => {
                    match runs_this_attempts_copy(&dconn, &req)? {
                        Ok(()) => true,
                        Err(why) => {
                            detail.push(format!(
                                "paused on the source by an interrupted migration, and {why}"
                            ));
                            false
                        }
                    }
                }
                Some(_) => {
                    detail.push("still running on the source".to_owned());
                    false
                }
            };
            // Offline, still defined (shut off) on the source: vmove stopped between the
            // define on the destination and the undefine on the source. The destination's
            // copy is the VM only if it is vmove's copy of this source definition and the
            // source did not change since (else its data is newer than the copy's).
            if mode == MigrationMode::Offline
                && on_destination
                && disks_present
                && stopped_on_source
                && let Some(sdom) = &sdom
            {
                let why_not = if let Some(d) = unrecorded.first() {
                    Err(format!(
                        "the destination's provenance records no size of its disk {d}"
                    ))
                } else {
                    source_superseded(&sconn, sdom, provenance.as_ref(), &req)?
                };
                if let Err(why) = why_not {
                    disks_present = false;
                    detail.push(format!(
                        "defined on both hosts, and the copy on {} is not proven the VM's current disks: {why}",
                        req.destination
                    ));
                }
            }
            // The switchover's pause, as the destination recorded the completed migration. A
            // figure, not part of the proof: an error reading it costs only the figure.
            let downtime_ms = match (&ddom, mode) {
                (Some(d), MigrationMode::Live) if on_destination => {
                    match ffi::completed_job_stats(d) {
                        Ok(job) => job.and_then(|j| j.downtime_ms),
                        Err(e) => {
                            tracing::debug!(error = %e, "cannot read the completed migration's statistics");
                            None
                        }
                    }
                }
                _ => None,
            };
            let v = Verification {
                on_destination,
                disks_present,
                stopped_on_source,
                detail: detail.join("; "),
                downtime_ms,
            };
            if v.is_proof() {
                // The images are the VM's disks now, proven by the VM itself: their provenance
                // markers go (removing a marker is always safe; see provenance.rs).
                for p in &used {
                    if let Err(e) = provenance::unmark(&dconn, p, &vm) {
                        tracing::warn!(path = %p, error = %e.message, "cannot remove a provenance marker");
                    }
                }
            }
            Ok(v)
        })
        .await
}
