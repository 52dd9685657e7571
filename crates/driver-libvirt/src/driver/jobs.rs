//! A migration's job: started on a blocking thread of its own (live: libvirt's migration call;
//! offline: `offline.rs`), its status, the wait for its end, its abort and its convergence aids.

use super::offline::run_offline;
use super::prepare::{Prepared, prepare};
use super::recovery::roll_back_interrupted;
use super::state::{Inner, Migration, blocking};
use crate::config::DEFAULT_MAX_DOWNTIME_MS;
use crate::error::{Phase, code, from_virt};
use crate::ffi;
use crate::host::{self, JOB_MIGRATION_OUT, find_domain, read_err};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use virt::connect::Connect;
use vmove_driver::*;

/// How often an abort is asked again while our migration thread has not reached libvirt yet
/// (no job to abort), and how many times: 10 s in all.
const ABORT_RETRY: Duration = Duration::from_millis(100);
const ABORT_TRIES: u32 = 100;

/// How often, after an accepted abort, the migration is looked at until it has ended, and how
/// many times: 30 s in all (a migration whose peer hangs can take a while to unwind).
const JOB_END_POLL: Duration = Duration::from_millis(200);
const JOB_END_TRIES: u32 = 150;

/// [`Driver::start_migration`]: prepares (checks, pre-created images), then runs the migration
/// on a blocking thread of its own, which reports its outcome through the [`Migration`] record.
pub(super) async fn start(
    inner: &Arc<Inner>,
    req: &MigrationRequest,
) -> DriverResult<MigrationHandle> {
    let src = inner.host(&req.source)?;
    let handle =
        MigrationHandle(format!("{}:{}:{}:{}", req.mode, req.vm, req.run_id, req.attempt).into());
    let rec = Arc::new(Migration {
        mode: req.mode,
        vm: req.vm.clone(),
        source: req.source.clone(),
        post_copy: src.cfg.post_copy,
        auto_converge: src.cfg.auto_converge,
        max_downtime_cap_ms: src.cfg.max_downtime_ms.unwrap_or(DEFAULT_MAX_DOWNTIME_MS),
        outcome: Mutex::new(None),
        cancel: AtomicBool::new(false),
        bytes_done: AtomicU64::new(0),
        bytes_total: AtomicU64::new(0),
        ended: tokio::sync::watch::Sender::new(false),
    });
    let on_thread = inner.clone();
    let r = req.clone();
    let (h, recorded) = (handle.clone(), rec.clone());
    let prepared = blocking(Phase::Prepare, move || {
        let prepared = prepare(&on_thread, &r)?;
        // Recorded before the migration call: from here on no listing starts a dirty-rate
        // measurement of the VM (one would wait 30 s for the migration's job).
        on_thread.register(&h, recorded);
        Ok(prepared)
    })
    .await?;
    tracing::info!(vm = %req.vm_name, from = %req.source, to = %req.destination, mode = %req.mode, "libvirt migration starting");
    #[cfg(feature = "test-util")]
    let delay = *inner.start_delay.lock().unwrap_or_else(|p| p.into_inner());
    // The migration call blocks until the end: it gets a blocking thread of its own.
    tokio::task::spawn_blocking(move || {
        #[cfg(feature = "test-util")]
        std::thread::sleep(delay);
        let r = match rec.mode {
            MigrationMode::Live => run_live(prepared, &rec),
            MigrationMode::Offline => run_offline(prepared, &rec),
        };
        if let Err(e) = &r {
            tracing::warn!(vm = %rec.vm, error = %e.message, "libvirt migration failed");
        }
        rec.finish(r);
    });
    Ok(handle)
}

/// [`Driver::migration_status`]: our thread's outcome when it has one (offline: the bytes
/// streamed so far); else the source's migration job; for an adopted migration with no job,
/// where the VM runs.
pub(super) async fn status(
    inner: &Inner,
    req: &MigrationRequest,
    handle: &MigrationHandle,
) -> DriverResult<MigrationStatus> {
    let rec = inner.record(handle);
    if let Some(rec) = &rec {
        match rec.outcome() {
            Some(Ok(())) => return Ok(MigrationStatus::Completed),
            Some(Err(e)) => return Ok(MigrationStatus::Failed(e.into())),
            None if rec.mode == MigrationMode::Offline => {
                let done = rec.bytes_done.load(Ordering::Relaxed);
                let total = rec.bytes_total.load(Ordering::Relaxed);
                return Ok(MigrationStatus::Running(Progress {
                    bytes_done: done,
                    bytes_total: total,
                    bytes_remaining: total.saturating_sub(done),
                    ..Progress::default()
                }));
            }
            None => {}
        }
    }
    let src = inner.host(&req.source)?;
    let dst = inner.host(&req.destination)?;
    let vm = req.vm.clone();
    let adopted = rec.is_none();
    blocking(Phase::Read, move || {
        let sconn = src.conn()?;
        let sdom = find_domain(&sconn, &vm)?;
        let job = match &sdom {
            Some(d) => match ffi::job_stats(d) {
                Ok(j) => j,
                // Undefined between the look-up and the job query: the migration ended
                // (UNDEFINE_SOURCE) and there is no job to read.
                Err(e) if host::code_of(&e) == code::NO_DOMAIN => None,
                Err(e) => return Err(read_err("cannot read the migration's job")(e)),
            },
            None => None,
        };
        if let Some(job) = job
            && job.operation == Some(JOB_MIGRATION_OUT)
        {
            return Ok(MigrationStatus::Running(progress_of(&job)));
        }
        if !adopted {
            // Our thread still runs but the source shows no job yet (or no longer).
            return Ok(MigrationStatus::Pending);
        }
        let dconn = dst.conn()?;
        let on_dst = find_domain(&dconn, &vm)?
            .map(|d| d.is_active().unwrap_or(false))
            .unwrap_or(false);
        let on_src = sdom
            .map(|d| d.is_active().unwrap_or(false))
            .unwrap_or(false);
        Ok(if on_dst && !on_src {
            MigrationStatus::Completed
        } else {
            MigrationStatus::Failed(Failure::new(
                ErrorClass::Indeterminate,
                "no migration job runs and the VM is not running on the destination only",
            ))
        })
    })
    .await
}

/// [`Driver::wait_for_end`]: the migration call runs on a thread of its own and returns when
/// libvirt says the migration ended: its outcome is the answer, with no poll in between.
/// Migrations adopted after a restart (no thread of ours) are left to the polls.
pub(super) async fn wait_for_end(
    inner: &Inner,
    handle: &MigrationHandle,
) -> Option<DriverResult<MigrationStatus>> {
    let rec = inner.record(handle)?;
    let mut ended = rec.ended.subscribe();
    // The sender lives in `rec`, which we hold: the wait ends only when `finish` runs.
    let _ = ended.wait_for(|done| *done).await;
    Some(Ok(match rec.outcome()? {
        Ok(()) => MigrationStatus::Completed,
        Err(e) => MigrationStatus::Failed(e.into()),
    }))
}

/// [`Driver::abort_migration`]: cancels our thread (offline: at its next chunk) and aborts the
/// source's job, waiting until it has ended; with no job left, rolls back a migration a killed
/// client left paused (`recovery.rs`).
pub(super) async fn abort(
    inner: &Inner,
    req: &MigrationRequest,
    handle: &MigrationHandle,
) -> DriverResult<()> {
    let rec = inner.record(handle);
    if let Some(rec) = &rec {
        rec.cancel.store(true, Ordering::Relaxed);
        if rec.outcome().is_some() || rec.mode == MigrationMode::Offline {
            return Ok(());
        }
    }
    let src = inner.host(&req.source)?;
    let dst = inner.host(&req.destination)?;
    let req2 = req.clone();
    blocking(Phase::Change, move || {
        let conn = src.conn()?;
        let vm = &req2.vm;
        // Our migration thread may not have reached libvirt yet: until it ends or its job
        // is aborted, keep trying (it checks `cancel` before it calls libvirt, too).
        for _ in 0..ABORT_TRIES {
            let Some(dom) = find_domain(&conn, vm)? else {
                return Ok(());
            };
            match ffi::abort_job(&dom) {
                Ok(()) => return wait_job_end(&conn, vm, rec.as_deref()),
                // No job: it has not started or has already ended.
                Err(e) if e.code().to_raw() as i32 == code::OPERATION_INVALID => match &rec {
                    Some(r) if r.outcome().is_none() => std::thread::sleep(ABORT_RETRY),
                    _ => return roll_back_interrupted(&dom, &dst, &req2),
                },
                Err(e) => {
                    return Err(from_virt(&e, "cannot abort the migration", Phase::Change));
                }
            }
        }
        Err(DriverError::indeterminate(
            "the migration neither ended nor accepted the abort within 10 s",
        ))
    })
    .await
}

/// [`Driver::converge`]: post-copy (when configured), a doubled allowed downtime (up to the
/// host's cap), or whether auto-converge was armed at the start.
pub(super) async fn converge(
    inner: &Inner,
    req: &MigrationRequest,
    handle: &MigrationHandle,
    aid: ConvergenceAid,
) -> DriverResult<bool> {
    let Some(rec) = inner.record(handle) else {
        return Ok(false);
    };
    if rec.mode != MigrationMode::Live || rec.outcome().is_some() {
        return Ok(false);
    }
    match aid {
        // libvirt arms auto-converge only when a migration starts (config auto_converge);
        // once armed, QEMU throttles the guest by itself when it does not converge.
        ConvergenceAid::AutoConverge => Ok(rec.auto_converge),
        ConvergenceAid::PostCopy if !rec.post_copy => Ok(false),
        ConvergenceAid::PostCopy | ConvergenceAid::RaiseDowntime => {
            let src = inner.host(&rec.source)?;
            let vm = req.vm.clone();
            let cap = rec.max_downtime_cap_ms;
            blocking(Phase::Change, move || {
                let conn = src.conn()?;
                let Some(dom) = find_domain(&conn, &vm)? else {
                    return Ok(false);
                };
                if aid == ConvergenceAid::PostCopy {
                    ffi::start_post_copy(&dom)
                        .map_err(|e| from_virt(&e, "cannot switch to post-copy", Phase::Change))?;
                    return Ok(true);
                }
                let now = ffi::max_downtime(&dom)
                    .map_err(read_err("cannot read the allowed downtime"))?;
                let Some(next) = raised_downtime(now, cap) else {
                    return Ok(false);
                };
                dom.migrate_set_max_downtime(next, 0).map_err(|e| {
                    from_virt(&e, "cannot raise the allowed downtime", Phase::Change)
                })?;
                Ok(true)
            })
            .await
        }
    }
}

fn run_live(p: Prepared, rec: &Migration) -> Result<(), DriverError> {
    if rec.cancel.load(Ordering::Relaxed) {
        return Err(
            DriverError::transient("migration aborted before it started")
                .with_code(i64::from(code::OPERATION_ABORTED)),
        );
    }
    let r = match &p.p2p_uri {
        Some(uri) => p
            .dom
            .migrate_to_uri3(Some(uri.as_str()), p.params, p.flags)
            .map(|_| ()),
        None => p.dom.migrate3(&p.dconn, p.params, p.flags).map(|_| ()),
    };
    r.map_err(|e| from_virt(&e, "live migration failed", Phase::Change))
}

fn progress_of(j: &ffi::JobFigures) -> Progress {
    Progress {
        bytes_done: j.data_processed,
        bytes_remaining: j.data_remaining,
        bytes_total: j.data_total,
        dirty_rate: match (j.dirty_rate_pages, j.page_size) {
            (Some(r), Some(p)) => Some(r.saturating_mul(p)),
            _ => None,
        },
        transfer_rate: match (j.mem_bps, j.disk_bps) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        },
        iteration: j.iteration.map(|i| i as u32),
        percent: None,
    }
}

/// After an abort was accepted: waits (up to 30 s) until the migration has really ended (our
/// migration call returned, or the source shows no migration job), so that afterwards the VM
/// runs on the source only. A migration whose peer hangs can take a while to unwind.
fn wait_job_end(conn: &Connect, vm: &VmId, rec: Option<&Migration>) -> DriverResult<()> {
    for _ in 0..JOB_END_TRIES {
        let ended = match rec {
            Some(r) => r.outcome().is_some(),
            None => match find_domain(conn, vm)? {
                None => true,
                Some(d) => {
                    !matches!(ffi::job_stats(&d), Ok(Some(j)) if j.operation == Some(JOB_MIGRATION_OUT))
                }
            },
        };
        if ended {
            return Ok(());
        }
        std::thread::sleep(JOB_END_POLL);
    }
    Err(DriverError::transient(
        "the abort was accepted but the migration has not ended within 30 s",
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn progress_combines_memory_and_disk_figures() {
        let j = ffi::JobFigures {
            job_type: 2,
            operation: Some(5),
            data_processed: 10,
            data_remaining: 30,
            data_total: 40,
            dirty_rate_pages: Some(100),
            page_size: Some(4096),
            mem_bps: Some(1000),
            disk_bps: Some(500),
            iteration: Some(3),
            downtime_ms: None,
        };
        let p = progress_of(&j);
        assert_eq!(
            (p.bytes_done, p.bytes_remaining, p.bytes_total),
            (10, 30, 40)
        );
        assert_eq!(p.dirty_rate, Some(409600));
        assert_eq!(p.transfer_rate, Some(1500));
        assert_eq!(p.iteration, Some(3));
    }
}
