//! `Starting` (the start was asked) and `Confirming` (the driver accepted it; waiting to see it
//! running, at most the seed's `job_start_attempts` x `job_start_timeout`).

use super::aborting::run_stopped;
use super::types::{Ctx, MoveState, Next, Output, VmMove};
use crate::event::{EventKind, WaitReason, Watchdog};
use crate::io::Command;
use crate::model::{ErrorClass, Failure, MigrationHandle, MigrationRequest, MigrationStatus};
use crate::spec::Settings;
use std::sync::Arc;
use std::time::Duration;

/// The shortest interval between looks at a started migration, so that a `progress_interval`
/// or `job_start_timeout` of zero does not look in a loop.
const MIN_CONFIRM_EVERY: Duration = Duration::from_millis(1);

/// How often a started migration is looked at until it shows as running: every progress interval
/// (a migration that ends before its first status read is not left waiting for a whole
/// `job_start_timeout`), never less often than the seed's `job_start_timeout`.
fn confirm_every(s: &Settings) -> Duration {
    s.progress_interval
        .min(s.job_start_timeout)
        .max(MIN_CONFIRM_EVERY)
}

/// How many of those looks make up the seed's window (`job_start_attempts` x
/// `job_start_timeout`) before a migration that never showed as running is aborted.
fn confirm_checks(s: &Settings) -> u32 {
    let window = s.job_start_timeout.as_millis() * u128::from(s.job_start_attempts);
    let every = confirm_every(s).as_millis().max(1);
    u32::try_from(window.div_ceil(every))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// Asks how the migration is doing.
fn poll(req: &Arc<MigrationRequest>, handle: &MigrationHandle, out: &mut Output) {
    out.commands.push(Command::PollMigration {
        request: req.clone(),
        handle: handle.clone(),
    });
}

/// Starting, accepted: confirm it runs (or abort it at once when the run is being stopped with
/// abort).
pub(super) fn accepted(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    req: Arc<MigrationRequest>,
    handle: MigrationHandle,
) -> Next {
    let mut out = Output::default();
    poll(&req, &handle, &mut out);
    vm.timer = Some(ctx.now + confirm_every(ctx.settings));
    let state = if ctx.abort_running {
        vm.abort(ctx, req, handle, run_stopped(), 0, &mut out)
    } else {
        MoveState::Confirming {
            req,
            handle,
            checks: 0,
        }
    };
    (state, out)
}

/// Starting, refused or failed: look at the hosts.
pub(super) fn start_failed(vm: &mut VmMove, req: Arc<MigrationRequest>, why: Failure) -> Next {
    let mut out = Output::default();
    vm.record_failure(&req, &why, &mut out);
    let state = vm.locate(req, why, 0, None, &mut out);
    (state, out)
}

/// Starting, not carried out: another vmove process holds the last slot on one of the hosts
/// (the runtime's slot ledger refused it; nothing was asked of the hosts). Not a failure of
/// the VM: queued again, waiting for a slot, the attempt number used but not counted toward
/// `max_attempts`. A run that is stopping cancels it instead.
pub(super) fn deferred(vm: &mut VmMove, ctx: Ctx<'_>) -> Next {
    let mut out = Output::default();
    vm.uncounted += 1;
    vm.started_at = None;
    if let Some(reason) = ctx.stopping {
        let state = vm.finish(
            ctx.now,
            MoveState::Cancelled {
                reason: reason.clone(),
            },
            &mut out,
        );
        return (state, out);
    }
    vm.wait = Some(WaitReason::NoSlot);
    out.events.push(EventKind::Waiting {
        vm: vm.id.clone(),
        reason: WaitReason::NoSlot,
    });
    (MoveState::Queued, out)
}

/// Confirming, a status: running (watch it), completed already (prove it), failed (look at the
/// hosts).
pub(super) fn status(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    req: Arc<MigrationRequest>,
    handle: MigrationHandle,
    checks: u32,
    res: Result<MigrationStatus, Failure>,
) -> Next {
    let mut out = Output::default();
    let state = match res {
        Ok(MigrationStatus::Running(p)) => {
            vm.progress = Some(p);
            vm.start_migrating(ctx, req, handle, &mut out)
        }
        Ok(MigrationStatus::Completed) => vm.verify(req, 0, &mut out),
        Ok(MigrationStatus::Failed(why)) => {
            vm.record_failure(&req, &why, &mut out);
            vm.locate(req, why, 0, None, &mut out)
        }
        // Self-loop: not running yet, or the status could not be read; the timer decides.
        Ok(MigrationStatus::Pending) | Err(_) => MoveState::Confirming {
            req,
            handle,
            checks,
        },
    };
    (state, out)
}

/// Confirming, timer: look again, or, the window over, the start watchdog fires: abort.
pub(super) fn timer(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    req: Arc<MigrationRequest>,
    handle: MigrationHandle,
    checks: u32,
) -> Next {
    let mut out = Output::default();
    let s = ctx.settings;
    let checks = checks + 1;
    let state = if checks >= confirm_checks(s) {
        out.events.push(EventKind::WatchdogFired {
            vm: vm.id.clone(),
            attempt: req.attempt,
            which: Watchdog::Start,
        });
        let why = Failure::new(
            ErrorClass::Transient,
            format!(
                "did not show as migrating within {} x {}",
                s.job_start_attempts,
                crate::spec::dur::format_duration(s.job_start_timeout)
            ),
        );
        vm.record_failure(&req, &why, &mut out);
        vm.abort(ctx, req, handle, why, 0, &mut out)
    } else {
        poll(&req, &handle, &mut out);
        vm.timer = Some(ctx.now + confirm_every(s));
        MoveState::Confirming {
            req,
            handle,
            checks,
        }
    };
    (state, out)
}
