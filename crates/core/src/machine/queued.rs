//! `Queued` (waiting to be started, as the engine assesses it) and `BackingOff` (waiting out a
//! retry delay, then queued again).

use super::types::{Assessment, Ctx, MoveState, Next, Output, VmMove};
use crate::event::{EventKind, Reason, WaitReason};
use crate::io::Command;
use crate::model::{HostId, MigrationMode, MigrationRequest, PathLayout};
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
