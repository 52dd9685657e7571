//! `Aborting`: an abort was asked; whatever its answer, the hosts are looked at next.

use super::limits::{ABORT_PATIENCE, ABORT_RETRIES, REFUSED_ABORT_PATIENCE};
use super::types::{Ctx, MoveState, Next, Output, VmMove};
use crate::event::AttemptCall;
use crate::io::Command;
use crate::model::{ErrorClass, Failure, MigrationHandle, MigrationRequest};
use std::sync::Arc;

/// Why a running attempt is given up when the run is stopped with abort.
pub(super) fn run_stopped() -> Failure {
    Failure::new(ErrorClass::Transient, "aborted: the run was stopped")
}

impl VmMove {
    /// Asks to abort the migration (the `rounds`+1-th ask of this attempt). If the abort never
    /// answers, the hosts are looked at anyway after a stall timeout.
    pub(super) fn abort(
        &mut self,
        ctx: Ctx<'_>,
        req: Arc<MigrationRequest>,
        handle: MigrationHandle,
        why: Failure,
        rounds: u32,
        out: &mut Output,
    ) -> MoveState {
        self.aborted_attempt = Some(req.attempt);
        out.commands.push(Command::AbortMigration {
            request: req.clone(),
            handle: handle.clone(),
        });
        self.abort_waiting(&req, &why, rounds + 1, (0, ABORT_PATIENCE), out);
        self.timer = Some(ctx.now + ctx.settings.stall_timeout);
        MoveState::Aborting {
            req,
            handle,
            why,
            rounds: rounds + 1,
        }
    }
}

/// Confirming or Migrating, the run stops with abort: abort the migration.
pub(super) fn stop(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    req: Arc<MigrationRequest>,
    handle: MigrationHandle,
) -> Next {
    let mut out = Output::default();
    let state = vm.abort(ctx, req, handle, run_stopped(), 0, &mut out);
    (state, out)
}

/// Aborting, answered: look at the hosts now, with the patience the answer earns (see the
/// module doc of [`super`], "After an abort").
pub(super) fn answered(
    vm: &mut VmMove,
    req: Arc<MigrationRequest>,
    why: Failure,
    rounds: u32,
    res: Result<(), Failure>,
) -> Next {
    let mut out = Output::default();
    let abort_wait = match &res {
        Ok(()) => Some((0, ABORT_PATIENCE)),
        Err(e) if e.class == ErrorClass::Indeterminate => Some((0, ABORT_PATIENCE)),
        Err(e) if e.class == ErrorClass::Transient => Some((0, REFUSED_ABORT_PATIENCE)),
        Err(_) => None,
    };
    if let Err(e) = res {
        vm.call_failed(
            &req,
            AttemptCall::Abort,
            &e.message,
            (rounds, ABORT_RETRIES),
            None,
            &mut out,
        );
    }
    let state = vm.locate(req, why, rounds, abort_wait, &mut out);
    (state, out)
}

/// Aborting, timer: the abort call never answered (it may yet take effect): look at the hosts
/// anyway.
pub(super) fn timer(
    vm: &mut VmMove,
    req: Arc<MigrationRequest>,
    why: Failure,
    rounds: u32,
) -> Next {
    let mut out = Output::default();
    let state = vm.locate(req, why, rounds, Some((0, ABORT_PATIENCE)), &mut out);
    (state, out)
}
