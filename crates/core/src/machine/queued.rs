//! `Queued` (waiting to be started, as the engine assesses it) and `BackingOff` (waiting out a
//! retry delay, then queued again).

use super::types::{Assessment, Ctx, MoveState, Next, Output, VmMove};
use crate::event::{Blocker, EventKind, Reason, WaitReason};
use crate::io::Command;
use crate::model::{
    Failure, FindingScope, HostId, MigrationMode, MigrationRequest, PathLayout, Preflight,
};
use crate::policy;
use crate::spec::Settings;
use crate::time::Time;

/// Why a VM held (by a backup, a job, a transition) for longer than `backup_threshold` is
/// unmigratable.
fn held_too_long(s: &Settings, wait: &WaitReason) -> Reason {
    match wait {
        WaitReason::BackingUp { .. } => Reason::BackupTooLong {
            threshold_secs: s.backup_threshold.as_secs(),
        },
        other => Reason::BadStatus(format!(
            "{other} for longer than {}",
            crate::spec::dur::format_duration(s.backup_threshold)
        )),
    }
}

/// Queued, assessed: ready (the scheduler decides when it starts), waiting (a hold that lasts
/// `backup_threshold` makes it unmigratable), already there, or unmigratable.
pub(super) fn assessed(vm: &mut VmMove, ctx: Ctx<'_>, a: Assessment) -> Next {
    let mut out = Output::default();
    let (now, s) = (ctx.now, ctx.settings);
    let state = match a {
        Assessment::Ready(mode) => {
            vm.mode = mode;
            vm.held_since = None;
            vm.timer = None;
            vm.wait = None;
            MoveState::Queued
        }
        Assessment::Wait { reason, held } => {
            if held {
                let since = *vm.held_since.get_or_insert(now);
                let until = since + s.backup_threshold;
                if now >= until {
                    let reason = held_too_long(s, &reason);
                    let state = vm.finish(now, MoveState::Unmigratable { reason }, &mut out);
                    return (state, out);
                }
                vm.timer = Some(until);
            } else {
                vm.held_since = None;
                vm.timer = None;
            }
            let reason = match reason {
                WaitReason::BackingUp { .. } => WaitReason::BackingUp {
                    since: vm.held_since.unwrap_or(now),
                },
                r => r,
            };
            if vm.wait.as_ref() != Some(&reason) {
                out.events.push(EventKind::Waiting {
                    vm: vm.id.clone(),
                    reason: reason.clone(),
                });
            }
            vm.wait = Some(reason);
            MoveState::Queued
        }
        Assessment::AlreadyThere(d) => {
            vm.finish(now, MoveState::Moved { destination: d }, &mut out)
        }
        Assessment::Unmigratable(r) => {
            vm.finish(now, MoveState::Unmigratable { reason: r }, &mut out)
        }
    };
    (state, out)
}

/// Queued, picked by the scheduler: a new attempt starts toward `destination`.
pub(super) fn start(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    destination: HostId,
    mode: MigrationMode,
    layout: PathLayout,
    run_id: String,
) -> Next {
    let mut out = Output::default();
    vm.attempts += 1;
    vm.mode = mode;
    vm.wait = None;
    vm.timer = None;
    vm.progress = None;
    vm.started_at = Some(ctx.now);
    let req = MigrationRequest {
        vm: vm.id.clone(),
        vm_name: vm.name.clone(),
        source: vm.source.clone(),
        destination,
        mode,
        layout,
        attempt: vm.attempts,
        run_id,
    };
    out.events.push(EventKind::AttemptStarted {
        vm: vm.id.clone(),
        attempt: req.attempt,
        source: req.source.clone(),
        destination: req.destination.clone(),
        mode,
    });
    out.commands.push(Command::StartMigration(req.clone()));
    (MoveState::Starting { req }, out)
}

/// Queued, the scheduler chose `destination`: ask the pre-flight check of the next attempt
/// there (the request that attempt would be started with). No slot is held; the VM leaves the
/// ready set until the answer.
pub(super) fn preflight(
    vm: &mut VmMove,
    destination: HostId,
    mode: MigrationMode,
    layout: PathLayout,
    run_id: String,
) -> Next {
    let mut out = Output::default();
    let request = MigrationRequest {
        vm: vm.id.clone(),
        vm_name: vm.name.clone(),
        source: vm.source.clone(),
        destination: destination.clone(),
        mode,
        layout,
        attempt: vm.attempts + 1,
        run_id,
    };
    vm.preflight.asking = Some(destination);
    out.commands.push(Command::Preflight { request });
    (MoveState::Queued, out)
}

/// Every blocker recorded for the VM, each with its destination.
fn all_blockers(vm: &VmMove) -> Vec<Blocker> {
    vm.preflight
        .blocked
        .iter()
        .flat_map(|(d, fs)| {
            fs.iter().map(|f| Blocker {
                destination: Some(d.clone()),
                finding: f.clone(),
            })
        })
        .collect()
}

/// Queued, the pre-flight check answered: a blocker about the VM ends it (0 attempts, nothing
/// touched); a blocker of the destination or host skips that destination (every allowed one
/// blocked ends it); warnings are said and the move goes on; a check that could not be made is
/// asked again after the back-off, at most `max_attempts` times.
pub(super) fn preflighted(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    destination: HostId,
    result: Result<Preflight, Failure>,
) -> Next {
    let mut out = Output::default();
    if vm.preflight.asking.as_ref() != Some(&destination) {
        // Self-loop: an answer nobody waits for any more.
        return (MoveState::Queued, out);
    }
    vm.preflight.asking = None;
    let (now, s) = (ctx.now, ctx.settings);
    let attempt = vm.attempts + 1;
    let mut p = match result {
        Ok(p) => p,
        Err(e) => {
            vm.preflight.failures += 1;
            let tries = vm.preflight.failures;
            let give_up = tries >= s.max_attempts;
            let until = now + policy::backoff(s, vm.key, tries);
            out.events.push(EventKind::PreflightFailed {
                vm: vm.id.clone(),
                attempt,
                destination,
                error: e.message.clone(),
                tries,
                of: s.max_attempts,
                retry_at: (!give_up).then_some(until),
            });
            vm.last_error = Some(e.message.clone());
            if give_up {
                let reason = Reason::PreflightFailed {
                    tries,
                    error: e.message,
                };
                let state = vm.finish(now, MoveState::Unmigratable { reason }, &mut out);
                return (state, out);
            }
            vm.timer = Some(until);
            return (MoveState::BackingOff { until }, out);
        }
    };
    vm.preflight.failures = 0;
    // A destination path taken is left to the start: its refusal is followed by the clean-up
    // of the destination, which removes the file only if the driver proves it this VM's own (a
    // partial copy an earlier run gave up), then retries there (see `discarding`); a foreign
    // file stays, and the refusal skips the destination as before. Blocking here would strand
    // our own partial copy for good.
    let (taken, blockers): (Vec<_>, Vec<_>) = std::mem::take(&mut p.blockers)
        .into_iter()
        .partition(|f| f.code == crate::model::Finding::PATH_TAKEN && f.scope != FindingScope::Vm);
    p.blockers = blockers;
    p.warnings.extend(taken);
    if !p.blockers.is_empty() || !p.warnings.is_empty() {
        out.events.push(EventKind::PreflightFindings {
            vm: vm.id.clone(),
            attempt,
            destination: destination.clone(),
            blockers: p.blockers.clone(),
            warnings: p.warnings.clone(),
        });
    }
    if p.blocks_every_destination() {
        let blockers = p
            .blockers
            .into_iter()
            .filter(|f| f.scope == FindingScope::Vm)
            .map(|finding| Blocker {
                destination: None,
                finding,
            })
            .collect();
        let state = vm.finish(
            now,
            MoveState::Unmigratable {
                reason: Reason::Blocked { blockers },
            },
            &mut out,
        );
        return (state, out);
    }
    if p.is_clear() {
        vm.preflight.clear.insert(destination);
        return (MoveState::Queued, out);
    }
    vm.preflight.clear.remove(&destination);
    vm.preflight.blocked.insert(destination, p.blockers);
    let blocked = &vm.preflight.blocked;
    if vm.open_destinations().all(|d| blocked.contains_key(d)) {
        let reason = Reason::Blocked {
            blockers: all_blockers(vm),
        };
        let state = vm.finish(now, MoveState::Unmigratable { reason }, &mut out);
        return (state, out);
    }
    (MoveState::Queued, out)
}

/// Queued, timer: the hold threshold passed with no newer observation.
pub(super) fn timer(vm: &mut VmMove, ctx: Ctx<'_>) -> Next {
    let mut out = Output::default();
    let (now, s) = (ctx.now, ctx.settings);
    let state = match (vm.held_since, &vm.wait) {
        (Some(since), Some(w)) if now >= since + s.backup_threshold => {
            let reason = held_too_long(s, w);
            vm.finish(now, MoveState::Unmigratable { reason }, &mut out)
        }
        // Self-loop: a timer that no longer applies (the hold ended).
        _ => {
            vm.timer = None;
            MoveState::Queued
        }
    };
    (state, out)
}

/// Queued or backing off, the run stops: not moved.
pub(super) fn cancel(vm: &mut VmMove, ctx: Ctx<'_>, reason: Reason) -> Next {
    let mut out = Output::default();
    let state = vm.finish(ctx.now, MoveState::Cancelled { reason }, &mut out);
    (state, out)
}

/// Backing off, timer: the delay is over, queued again.
pub(super) fn backoff_over(vm: &mut VmMove, ctx: Ctx<'_>, until: Time) -> Next {
    let state = if ctx.now >= until {
        vm.timer = None;
        MoveState::Queued
    } else {
        // Self-loop: an early timer (should not happen); wait on.
        vm.timer = Some(until);
        MoveState::BackingOff { until }
    };
    (state, Output::default())
}
