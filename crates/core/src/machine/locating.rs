//! `Locating`: every failure comes here. The hosts are asked where the VM is, and only then is
//! it decided what follows: re-adopt a job that still runs, abort it (again), verify a VM that
//! arrived, wait out a copy still arriving on the destination (libvirt removes the incoming copy
//! of a client that went away), clear the destination of what the attempt left (the VM is back
//! on its source), settle a migration a killed client left between its steps, or give up
//! touching nothing.

use super::limits::{ABORT_PATIENCE, ABORT_RETRIES, OBSERVE_RETRIES};
use super::types::{Ctx, DiscardTally, MoveState, Next, Output, VmMove};
use crate::event::{AttemptCall, Reason};
use crate::io::{Command, LeftoverContext};
use crate::model::{Activity, ErrorClass, Failure, Location, MigrationMode, MigrationRequest};
use std::sync::Arc;

/// Why nothing was removed from the destination when the VM was found on neither host.
const ON_NEITHER: &str = "the VM was on neither host, so nothing was removed";

impl VmMove {
    /// Looks at the hosts now: the first look after a failure or an abort (`abort_rounds` asked
    /// so far; `abort_wait` as in [`MoveState::Locating`]).
    pub(super) fn locate(
        &mut self,
        req: Arc<MigrationRequest>,
        why: Failure,
        abort_rounds: u32,
        abort_wait: Option<(u32, u32)>,
        out: &mut Output,
    ) -> MoveState {
        out.commands.push(Command::Locate {
            request: req.clone(),
        });
        self.timer = None;
        MoveState::Locating {
            req,
            why,
            tries: 0,
            abort_rounds,
            abort_wait,
        }
    }

    /// Stays in `Locating` (`state`, with its counts) and looks again after `recheck_interval`.
    fn relocate_later(&mut self, ctx: Ctx<'_>, state: MoveState) -> MoveState {
        debug_assert!(matches!(state, MoveState::Locating { .. }));
        self.timer = Some(ctx.now + ctx.settings.recheck_interval);
        state
    }

    /// Looks again after `recheck_interval`, with one more look counted (`tries + 1`).
    fn look_again(
        &mut self,
        ctx: Ctx<'_>,
        req: Arc<MigrationRequest>,
        why: Failure,
        tries: u32,
        abort_rounds: u32,
        abort_wait: Option<(u32, u32)>,
    ) -> MoveState {
        let state = MoveState::Locating {
            req,
            why,
            tries: tries + 1,
            abort_rounds,
            abort_wait,
        };
        self.relocate_later(ctx, state)
    }

    /// `Locating` found the VM paused on its source by a migration whose driving client went
    /// away between the migration's steps ([`Activity::MigrationInterrupted`]; libvirt: after
    /// Perform, before Confirm: vmove killed while it drove a non-p2p migration). Neither copy
    /// runs; only one of them may ever run again. What the migration's last step would have
    /// done is done, by explicit, journaled commands:
    /// - the destination runs a copy (libvirt: Finish ran): verify. The driver proves the copy
    ///   is this attempt's (libvirt: the provenance record in its definition names this run and
    ///   attempt) and only then counts the paused source copy as stopped; the clean-up after
    ///   success then stops and removes that copy (what Confirm does). Not proven: nothing is
    ///   touched (`NotVerified` after `VERIFY_RETRIES`);
    /// - a copy is still arriving there (paused, incoming: libvirt destroys it when the
    ///   client's connection closes): look again, `recheck_interval` apart, at most
    ///   `OBSERVE_RETRIES` times, then left for a person;
    /// - no copy there: roll back (what Confirm does on failure: resume the source copy) by an
    ///   abort, at most `ABORT_RETRIES` asks; then the attempt settles as failed, as usual.
    fn settle_interrupted(
        &mut self,
        ctx: Ctx<'_>,
        req: Arc<MigrationRequest>,
        why: Failure,
        tries: u32,
        abort_rounds: u32,
        loc: Location,
        out: &mut Output,
    ) -> MoveState {
        let dst_copy = loc.on_destination.as_ref().filter(|v| v.power.is_live());
        match (dst_copy, loc.running_migration) {
            (Some(v), _) if !v.activity.is_migration() => self.verify(req, 0, out),
            (Some(_), _) if tries + 1 < OBSERVE_RETRIES => {
                self.look_again(ctx, req, why, tries, abort_rounds, None)
            }
            (None, Some(handle)) if abort_rounds < ABORT_RETRIES => {
                self.abort(ctx, req, handle, why, abort_rounds, out)
            }
            (dst, _) => {
                let what = if dst.is_some() {
                    format!(
                        "a copy kept arriving on {} for {OBSERVE_RETRIES} looks",
                        req.destination
                    )
                } else {
                    format!("{abort_rounds} aborts did not roll it back")
                };
                self.left_unchecked(
                    &req,
                    "its source copy was paused by an interrupted migration, so nothing was removed"
                        .into(),
                    out,
                );
                let reason = Reason::Permanent(format!(
                    "paused on {} by an interrupted migration, and {what}; left for a person",
                    req.source
                ));
                self.finish(ctx.now, MoveState::Unmigratable { reason }, out)
            }
        }
    }
}

/// Locating, a look that failed: look again after `recheck_interval`, at most
/// [`OBSERVE_RETRIES`] times, then left for a person.
pub(super) fn look_failed(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    req: Arc<MigrationRequest>,
    why: Failure,
    tries: u32,
    abort_rounds: u32,
    abort_wait: Option<(u32, u32)>,
    e: Failure,
) -> Next {
    let mut out = Output::default();
    let now = ctx.now;
    let state = if tries + 1 >= OBSERVE_RETRIES {
        vm.left_unchecked(
            &req,
            format!(
                "the hosts did not answer {OBSERVE_RETRIES} looks: {}",
                e.message
            ),
            &mut out,
        );
        vm.last_error = Some(e.message.clone());
        vm.finish(
            now,
            MoveState::Unmigratable {
                reason: Reason::NotLocated(e.message),
            },
            &mut out,
        )
    } else {
        vm.call_failed(
            &req,
            AttemptCall::Locate,
            &e.message,
            (tries + 1, OBSERVE_RETRIES),
            Some(now + ctx.settings.recheck_interval),
            &mut out,
        );
        vm.look_again(ctx, req, why, tries, abort_rounds, abort_wait)
    };
    (state, out)
}

/// Locating, the hosts answered: decide from what they show.
pub(super) fn located(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    req: Arc<MigrationRequest>,
    why: Failure,
    tries: u32,
    abort_rounds: u32,
    abort_wait: Option<(u32, u32)>,
    loc: Location,
) -> Next {
    let mut out = Output::default();
    let now = ctx.now;
    let live = req.mode == MigrationMode::Live;
    let src_running = loc.on_source.as_ref().is_some_and(|v| v.power.is_live());
    let dst_running = loc
        .on_destination
        .as_ref()
        .is_some_and(|v| v.power.is_live() && !v.activity.is_migration());
    let dst_arrived = loc
        .on_destination
        .as_ref()
        .is_some_and(|v| !v.activity.is_migration() && if live { v.power.is_live() } else { true });
    let dst_arriving = loc
        .on_destination
        .as_ref()
        .is_some_and(|v| v.activity.is_migration());
    let src_interrupted = loc
        .on_source
        .as_ref()
        .is_some_and(|v| v.activity == Activity::MigrationInterrupted);
    let state = if src_interrupted && live {
        // Before the job branch: an interrupted migration has no job to re-adopt.
        vm.settle_interrupted(ctx, req, why, tries, abort_rounds, loc, &mut out)
    } else if let Some(handle) = loc.running_migration {
        let we_gave_up = abort_rounds > 0 || ctx.abort_running;
        // The journal says this attempt entered post-copy (or may have): it cannot be aborted,
        // whatever was decided before; re-adopted, it is watched to its end.
        let post_copy = vm.resumed_aids_for(req.attempt).post_copy();
        if post_copy || (!we_gave_up && why.class == ErrorClass::Indeterminate) {
            // The start did happen: re-adopt the migration.
            vm.start_migrating(ctx, req, handle, &mut out)
        } else if let Some((looks, patience)) = abort_wait.filter(|&(l, patience)| l + 1 < patience)
        {
            // The abort was accepted (or its answer is unknown) and the job still runs: give it
            // time to end before asking again (each ask is a round). Failed looks in between do
            // not count here (they have `tries`).
            vm.abort_waiting(&req, &why, abort_rounds, (looks + 1, patience), &mut out);
            vm.relocate_later(
                ctx,
                MoveState::Locating {
                    req,
                    why,
                    tries,
                    abort_rounds,
                    abort_wait: Some((looks + 1, patience)),
                },
            )
        } else if abort_rounds < ABORT_RETRIES {
            // No abort yet, its patience is spent, or the last one was refused: ask (again) now.
            vm.abort(ctx, req, handle, why, abort_rounds, &mut out)
        } else {
            vm.left_unchecked(
                &req,
                "its migration job was still running, so nothing was removed".into(),
                &mut out,
            );
            let reason = Reason::Permanent(format!(
                "its migration job keeps running after {ABORT_RETRIES} aborts (each accepted one given {ABORT_PATIENCE} looks to end); left for a person"
            ));
            vm.finish(now, MoveState::Unmigratable { reason }, &mut out)
        }
    } else if src_running && dst_running {
        vm.finish(
            now,
            MoveState::Unmigratable {
                reason: Reason::RunningOnBoth,
            },
            &mut out,
        )
    } else if dst_arrived && !src_running {
        // It arrived despite the error: prove it.
        vm.verify(req, 0, &mut out)
    } else if dst_arriving && loc.on_source.is_some() && tries + 1 < OBSERVE_RETRIES {
        // A copy still arriving on the destination, and no job of ours: libvirt destroys the
        // incoming copy of a client that went away (vmove killed before or during Perform,
        // without p2p) a moment after it sees the connection closed. Until then its disks are
        // in use (the clean-up would list nothing) and a retry's pre-flight would find the VM
        // defined there: look again.
        vm.look_again(ctx, req, why, tries, abort_rounds, abort_wait)
    } else if loc.on_source.is_some() {
        // Back on the source: what the attempt left on the destination goes.
        out.commands.push(Command::ListLeftovers {
            request: req.clone(),
            context: LeftoverContext::AfterFailedAttempt,
        });
        vm.timer = None;
        MoveState::Discarding {
            req,
            why,
            todo: None,
            tally: DiscardTally::default(),
        }
    } else {
        vm.left_unchecked(&req, ON_NEITHER.into(), &mut out);
        let reason = if why.class == ErrorClass::Permanent {
            Reason::Permanent(why.message)
        } else {
            Reason::LostAfterAttempt
        };
        vm.finish(now, MoveState::Unmigratable { reason }, &mut out)
    };
    (state, out)
}

/// Locating, timer: look again (`state` is the `Locating` state, kept with its counts).
pub(super) fn timer(vm: &mut VmMove, state: MoveState) -> Next {
    debug_assert!(matches!(state, MoveState::Locating { .. }));
    let mut out = Output::default();
    if let Some(req) = state.request() {
        out.commands.push(Command::Locate {
            request: req.clone(),
        });
    }
    vm.timer = None;
    (state, out)
}
