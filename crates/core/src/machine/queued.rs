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
use std::sync::Arc;

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
            if mode == vm.mode && matches!(vm.wait, Some(WaitReason::MayPass { .. })) {
                // Waiting for a destination whose findings may pass: its timer (or a move
                // that ends there) asks again, not every listing of the source.
                return (MoveState::Queued, out);
            }
            if mode == vm.mode && vm.wait.as_ref().is_some_and(WaitReason::is_schedulers) {
                // Still ready as the scheduler left it: its wait stands until the scheduler
                // places the VM. Clearing it here made the scheduler say the same wait again
                // after every listing of the source (`waiting` `offline_after_live` once a
                // minute for each powered-off VM held back).
                return (MoveState::Queued, out);
            }
            if vm.preflight.waiting_since.is_some() {
                // Another wait (or a new mode) interrupted that one: ask those destinations again.
                vm.preflight.waiting.clear();
            }
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
    run_id: std::sync::Arc<str>,
) -> Next {
    let mut out = Output::default();
    vm.attempts += 1;
    vm.preflight.waiting.clear();
    vm.preflight.waiting_since = None;
    vm.preflight.waits = 0;
    vm.preflight.said = None;
    vm.mode = mode;
    vm.wait = None;
    vm.timer = None;
    vm.progress = None;
    vm.started_at = Some(ctx.now);
    let req = Arc::new(MigrationRequest {
        vm: vm.id.clone(),
        vm_name: vm.name.as_str().into(),
        source: vm.source.clone(),
        destination,
        mode,
        layout,
        attempt: vm.attempts,
        run_id,
    });
    out.events.push(EventKind::AttemptStarted {
        vm: vm.id.clone(),
        attempt: req.attempt,
        source: req.source.clone(),
        destination: req.destination.clone(),
        mode,
    });
    out.commands.push(Command::StartMigration(Arc::clone(&req)));
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
    run_id: std::sync::Arc<str>,
) -> Next {
    let mut out = Output::default();
    let request = Arc::new(MigrationRequest {
        vm: vm.id.clone(),
        vm_name: vm.name.as_str().into(),
        source: vm.source.clone(),
        destination: destination.clone(),
        mode,
        layout,
        attempt: vm.attempts + 1,
        run_id,
    });
    vm.preflight.asking = Some(destination);
    out.commands.push(Command::Preflight { request });
    (MoveState::Queued, out)
}

/// Every blocker recorded for the VM (lasting, and those that may pass), each with its
/// destination.
fn all_blockers(vm: &VmMove) -> Vec<Blocker> {
    vm.preflight
        .blocked
        .iter()
        .chain(vm.preflight.waiting.iter())
        .flat_map(|(d, fs)| {
            fs.iter().map(|f| Blocker {
                destination: Some(d.clone()),
                finding: f.clone(),
            })
        })
        .collect()
}

/// Queued, the pre-flight check answered: a lasting blocker about the VM ends it (0 attempts,
/// nothing touched); a lasting blocker of the destination or host skips that destination
/// (every allowed one blocked ends it); a destination whose blockers all may pass
/// (`Finding::may_pass`) is skipped for now, and when every open destination blocks the VM and
/// some may pass, the VM waits (`WaitReason::MayPass`), asked again after a back-off or when a
/// move at that destination ends, at most `backup_threshold` from the first such answer, then
/// `Blocked`; warnings are said and the move goes on; a check that could not be made is asked
/// again after the back-off, at most `max_attempts` times.
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
    let p = match result {
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
            .filter(|f| f.scope == FindingScope::Vm && !f.may_pass)
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
    let memo = &mut vm.preflight;
    memo.blocked.remove(&destination);
    memo.waiting.remove(&destination);
    if p.is_clear() {
        memo.clear.insert(destination);
        return (MoveState::Queued, out);
    }
    memo.clear.remove(&destination);
    if p.only_may_pass() {
        memo.waiting.insert(destination, p.blockers);
    } else {
        memo.blocked.insert(destination, p.blockers);
    }
    let memo = &vm.preflight;
    if !vm
        .open_destinations()
        .all(|d| memo.blocked.contains_key(d) || memo.waiting.contains_key(d))
    {
        // Another destination may take it: asked next.
        return (MoveState::Queued, out);
    }
    let first_waiting = vm
        .open_destinations()
        .find_map(|d| memo.waiting.get(d).map(|fs| (d.clone(), fs)))
        .map(|(d, fs)| (d, fs.first().map(|f| f.code.clone()).unwrap_or_default()));
    let Some((wait_for, code)) = first_waiting else {
        // Every open destination blocks it for good.
        let reason = Reason::Blocked {
            blockers: all_blockers(vm),
        };
        let state = vm.finish(now, MoveState::Unmigratable { reason }, &mut out);
        return (state, out);
    };
    // Every open destination blocks it, some only for now: wait, bounded.
    let since = *vm.preflight.waiting_since.get_or_insert(now);
    let until = since + s.backup_threshold;
    if now >= until {
        let reason = Reason::Blocked {
            blockers: all_blockers(vm),
        };
        let state = vm.finish(now, MoveState::Unmigratable { reason }, &mut out);
        return (state, out);
    }
    vm.preflight.waits += 1;
    vm.timer = Some((now + policy::backoff(s, vm.key, vm.preflight.waits)).min(until));
    let reason = WaitReason::MayPass {
        destination: wait_for,
        code,
    };
    if vm.preflight.said.as_ref() != Some(&reason) {
        out.events.push(EventKind::Waiting {
            vm: vm.id.clone(),
            reason: reason.clone(),
        });
        vm.preflight.said = Some(reason.clone());
    }
    vm.wait = Some(reason);
    (MoveState::Queued, out)
}

/// Queued, timer: the hold threshold passed with no newer observation; or, waiting for
/// destinations whose findings may pass, the time to ask them again came (or the engine saw a
/// move at one of them end): they are forgotten, and the scheduler asks again.
pub(super) fn timer(vm: &mut VmMove, ctx: Ctx<'_>) -> Next {
    let mut out = Output::default();
    let (now, s) = (ctx.now, ctx.settings);
    if matches!(vm.wait, Some(WaitReason::MayPass { .. })) {
        vm.preflight.waiting.clear();
        vm.wait = None;
        vm.timer = None;
        return (MoveState::Queued, out);
    }
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
