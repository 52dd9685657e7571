//! `Migrating`: a running migration, watched. Progress polls, the stall and completion
//! watchdogs, and convergence aids before giving up.

use super::aborting::run_stopped;
use super::types::{AidAnswer, Ctx, Migrating, MoveState, Next, Output, VmMove};
use crate::event::{EventKind, Watchdog};
use crate::io::Command;
use crate::model::{
    ConvergenceAid, ErrorClass, Failure, MigrationHandle, MigrationRequest, MigrationStatus,
};
use crate::spec::{Settings, WatchdogAction};
use crate::time::Time;
use std::sync::Arc;
use std::time::Duration;

/// Convergence aids applied, in this order, when a watchdog fires with `Escalate`; once all were
/// tried, the next firing aborts. An aid not applied is followed by the next one at once, an
/// applied one is given a stall timeout to work.
///
/// The allowed downtime is raised up to [`RAISES`] times: each raise doubles it, up to the
/// host's cap (the libvirt driver: from QEMU's 300 ms to `max_downtime_ms`, 2,000 ms by
/// default: 600, 1,200, 2,000 ms, the fourth then not applied; a larger cap takes the four,
/// to 4,800 ms). Proxmox raises it the same way while a migration does not converge
/// (`increase_migrate_downtime` in proxmox/qemu-server `src/PVE/QemuMigrate.pm`, doubling),
/// and Nova raises it in steps from the start (`live_migration_downtime_steps` in
/// openstack/nova `nova/conf/libvirt.py`). A host that cannot raise it (Hyper-V) says so,
/// and the ladder goes on at once.
const AIDS: [ConvergenceAid; 2 + RAISES] = [
    ConvergenceAid::AutoConverge,
    ConvergenceAid::RaiseDowntime,
    ConvergenceAid::RaiseDowntime,
    ConvergenceAid::RaiseDowntime,
    ConvergenceAid::RaiseDowntime,
    ConvergenceAid::PostCopy,
];

/// How many times the watchdogs ask for the allowed downtime to be raised (see [`AIDS`]).
const RAISES: usize = 4;

/// The aid the escalation step `escalations` (aids asked so far, the one answered included)
/// asked last.
fn aid_asked(escalations: u32) -> ConvergenceAid {
    let i = usize::try_from(escalations).unwrap_or(usize::MAX);
    AIDS[i.saturating_sub(1).min(AIDS.len() - 1)]
}

/// What the aids of an attempt came to, in words, for the failure when none helped: "applied:
/// auto-converge, a raised allowed downtime (x2); not applied by the host: a raised allowed
/// downtime, post-copy". Each aid is named once per kind of answer, in the ladder's order (the
/// applied ones with how many times), and a failure once per message: post-copy refused twice
/// with the same message (asked again after a refusal for a passing reason) is said once.
fn aids_tried(answers: &[(ConvergenceAid, AidAnswer)]) -> String {
    let mut applied: Vec<(ConvergenceAid, usize)> = Vec::new();
    let mut not_applied: Vec<String> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut unanswered: Vec<String> = Vec::new();
    let once = |list: &mut Vec<String>, said: String| {
        if !list.contains(&said) {
            list.push(said);
        }
    };
    for (aid, answer) in answers {
        match answer {
            AidAnswer::Applied => match applied.iter_mut().find(|(a, _)| a == aid) {
                Some((_, n)) => *n += 1,
                None => applied.push((*aid, 1)),
            },
            AidAnswer::NotApplied => once(&mut not_applied, aid.noun().into()),
            AidAnswer::Failed(msg) => once(&mut failed, format!("{} ({msg})", aid.noun())),
            AidAnswer::Unanswered => once(&mut unanswered, aid.noun().into()),
        }
    }
    let applied: Vec<String> = applied
        .iter()
        .map(|&(aid, n)| match n {
            1 => aid.noun().to_string(),
            n => format!("{} (x{n})", aid.noun()),
        })
        .collect();
    let parts: Vec<String> = [
        ("applied", applied),
        ("not applied by the host", not_applied),
        ("failed", failed),
        (
            "asked before vmove stopped, answer not recorded",
            unanswered,
        ),
    ]
    .into_iter()
    .filter(|(_, list)| !list.is_empty())
    .map(|(label, list)| format!("{label}: {}", list.join(", ")))
    .collect();
    if parts.is_empty() {
        "none asked".to_string()
    } else {
        parts.join("; ")
    }
}

/// The soonest the watch timer is set after a timer firing, so that a deadline already passed
/// does not fire again at the same instant.
const MIN_WATCH_DELAY: Duration = Duration::from_millis(1);

/// How long a migration of `memory` and `disk` bytes may take before the completion watchdog
/// fires: `completion_timeout_per_gib` for every GiB of memory and disk, at least
/// `completion_timeout_min`.
pub(crate) fn completion_timeout(s: &Settings, memory: u64, disk: u64) -> Duration {
    let gib = memory.saturating_add(disk) as f64 / crate::model::GIB as f64;
    let per = Duration::try_from_secs_f64(s.completion_timeout_per_gib.as_secs_f64() * gib)
        .unwrap_or(Duration::MAX);
    per.max(s.completion_timeout_min)
}

impl VmMove {
    /// When the migration must be complete ([`completion_timeout`] from `now`).
    fn completion_deadline(&self, s: &Settings, now: Time) -> Time {
        now + completion_timeout(s, self.memory_bytes, self.disk_bytes)
    }

    /// Seen running (or re-adopted): watch it, unless the run is being stopped with abort.
    pub(super) fn start_migrating(
        &mut self,
        ctx: Ctx<'_>,
        req: Arc<MigrationRequest>,
        handle: MigrationHandle,
        out: &mut Output,
    ) -> MoveState {
        let now = ctx.now;
        let aids = self.resumed_aids_for(req.attempt);
        if ctx.abort_running && !aids.post_copy() {
            return self.abort(ctx, req, handle, run_stopped(), 0, out);
        }
        if ctx.abort_running {
            out.events
                .push(not_aborted_event(self, &req, IN_POST_COPY.into()));
        }
        let m = Migrating {
            deadline: self.completion_deadline(ctx.settings, now),
            req,
            handle,
            since: now,
            last_progress_at: now,
            best_done: 0,
            best_remaining: u64::MAX,
            next_poll: now + ctx.settings.progress_interval,
            polling: false,
            escalations: aids.asked(),
            converging: false,
            post_copy: aids.post_copy(),
            post_copy_refused_at: None,
            aid_asked_by: None,
            refire: None,
            aid_answers: aids.answers.into(),
        };
        self.timer = Some(
            m.next_poll
                .min(m.deadline)
                .min(now + ctx.settings.stall_timeout),
        );
        MoveState::Migrating(m)
    }
}

/// Migrating, a status: progress (it advanced if more is done or less remains, or, with no
/// byte counts, the percentage grew), completed (prove it), failed (look at the hosts).
pub(super) fn status(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    mut m: Migrating,
    res: Result<MigrationStatus, Failure>,
) -> Next {
    let mut out = Output::default();
    m.polling = false;
    let state = match res {
        Ok(MigrationStatus::Running(p)) => {
            let advanced = p.bytes_done > m.best_done
                || (p.bytes_remaining > 0 && p.bytes_remaining < m.best_remaining)
                || (p.bytes_remaining == 0
                    && p.bytes_total == 0
                    && p.percent.is_some_and(|pc| {
                        vm.progress
                            .as_ref()
                            .and_then(|q| q.percent)
                            .is_none_or(|q| pc > q)
                    }));
            if advanced {
                m.last_progress_at = ctx.now;
            }
            m.best_done = m.best_done.max(p.bytes_done);
            if p.bytes_remaining > 0 {
                m.best_remaining = m.best_remaining.min(p.bytes_remaining);
            }
            out.events.push(EventKind::Progress {
                vm: vm.id.clone(),
                attempt: m.req.attempt,
                bytes_done: p.bytes_done,
                bytes_total: p.bytes_total,
                bytes_remaining: p.bytes_remaining,
            });
            vm.progress = Some(p);
            MoveState::Migrating(m)
        }
        Ok(MigrationStatus::Completed) => vm.verify(m.req, 0, &mut out),
        Ok(MigrationStatus::Failed(why)) => {
            vm.record_failure(&m.req, &why, &mut out);
            vm.locate(m.req, why, 0, None, &mut out)
        }
        // Self-loop: Pending after running is not news; an unreadable status is left to the
        // stall watchdog.
        Ok(MigrationStatus::Pending) | Err(_) => MoveState::Migrating(m),
    };
    (state, out)
}

/// Migrating, timer: the stall watchdog (no progress for `stall_timeout`) or the completion
/// watchdog fires (apply the next convergence aid when the action is `Escalate`, else abort);
/// a progress poll is due.
pub(super) fn timer(vm: &mut VmMove, ctx: Ctx<'_>, mut m: Migrating) -> Next {
    let mut out = Output::default();
    let (now, s) = (ctx.now, ctx.settings);
    let stall_at = m.last_progress_at + s.stall_timeout;
    // A watchdog firing again at once for the aid after one not applied: the same firing,
    // said once.
    let refiring = m.refire.is_some() && !m.post_copy;
    let fired = if m.post_copy {
        // Past the point of no return: nothing to abort, only an end to wait for. A stall is
        // said (once per stall timeout), for a person: it cannot be acted on.
        if now >= stall_at {
            let why = format!(
                "in post-copy with no progress for {}: the guest runs on the destination and an abort would lose it; if its link is cut, QEMU pauses it until the migration is resumed (virsh migrate --postcopy-resume)",
                crate::spec::dur::format_duration(s.stall_timeout)
            );
            out.events.push(not_aborted_event(vm, &m.req, why));
            m.last_progress_at = now;
        }
        None
    } else if let Some(which) = m.refire.take() {
        // Its aid was not applied: it asks the next one (or aborts) now.
        Some((which, WatchdogAction::Escalate))
    } else if now >= stall_at {
        Some((Watchdog::Stall, s.stall_action))
    } else if now >= m.deadline {
        Some((Watchdog::Completion, s.completion_action))
    } else {
        None
    };
    if let Some((which, action)) = fired {
        if !refiring {
            out.events.push(EventKind::WatchdogFired {
                vm: vm.id.clone(),
                attempt: m.req.attempt,
                which,
            });
        }
        let aid = usize::try_from(m.escalations)
            .ok()
            .and_then(|i| AIDS.get(i).copied());
        match (action, aid) {
            (WatchdogAction::Escalate, Some(aid)) if !m.converging => {
                out.commands.push(Command::Converge {
                    request: m.req.clone(),
                    handle: m.handle.clone(),
                    aid,
                });
                m.converging = true;
                m.aid_asked_by = Some(which);
                m.escalations += 1;
                // Give the aid a full stall timeout (and the completion a new one) to work.
                m.last_progress_at = now;
                m.deadline = m.deadline.max(now + s.stall_timeout);
            }
            // Post-copy asked and not answered: its answer decides (`may_be_in_post_copy`).
            _ if may_be_in_post_copy(&m) => {}
            _ => {
                let why = Failure::new(
                    ErrorClass::Transient,
                    if which == Watchdog::Stall {
                        format!(
                            "stalled: no progress for {}",
                            crate::spec::dur::format_duration(s.stall_timeout)
                        )
                    } else {
                        "did not complete within its completion timeout".to_string()
                    },
                );
                vm.record_failure(&m.req, &why, &mut out);
                let state = vm.abort(ctx, m.req, m.handle, why, 0, &mut out);
                return (state, out);
            }
        }
    }
    if now >= m.next_poll {
        if !m.polling {
            out.commands.push(Command::PollMigration {
                request: m.req.clone(),
                handle: m.handle.clone(),
            });
            m.polling = true;
        }
        m.next_poll = now + s.progress_interval;
    }
    // In post-copy the watchdogs are off: only the next poll is due (their deadlines, long
    // passed, would otherwise wake it every millisecond).
    let watch = if m.post_copy {
        m.next_poll
    } else {
        m.next_poll
            .min(m.deadline.max(now))
            .min(m.last_progress_at + s.stall_timeout)
    };
    vm.timer = Some(watch.max(now + MIN_WATCH_DELAY));
    (MoveState::Migrating(m), out)
}

/// Migrating, a stop with abort, in post-copy: not aborted (see [`Migrating::post_copy`]); the
/// watch goes on.
pub(super) fn not_aborted(vm: &mut VmMove, m: Migrating) -> Next {
    let mut out = Output::default();
    let why = if m.post_copy {
        IN_POST_COPY
    } else {
        POST_COPY_ASKED
    };
    out.events.push(not_aborted_event(vm, &m.req, why.into()));
    (MoveState::Migrating(m), out)
}

/// Why a stop did not abort a migration while post-copy was asked and not answered yet.
const POST_COPY_ASKED: &str = "post-copy was asked and has not answered yet: the guest may already run on the destination, and an abort would lose it; aborted if the answer says it was not applied";

/// Why a stop did not abort a migration in post-copy (also why `vmove abort RUN VM` refuses
/// to abort one).
pub(crate) const IN_POST_COPY: &str =
    "in post-copy: the guest runs on the destination, and an abort would lose it";

/// The `NotAborted` event of the attempt `req`, saying `why`.
fn not_aborted_event(vm: &VmMove, req: &MigrationRequest, why: String) -> EventKind {
    EventKind::NotAborted {
        vm: vm.id.clone(),
        attempt: req.attempt,
        why,
    }
}

/// Migrating, a convergence aid's answer: applied (say so), or not (the next firing tries the
/// next aid; with none left, abort).
pub(super) fn converged(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    mut m: Migrating,
    res: Result<bool, Failure>,
) -> Next {
    let mut out = Output::default();
    let (now, s) = (ctx.now, ctx.settings);
    m.converging = false;
    // The aid this answers: the escalation step counts it already.
    let aid = aid_asked(m.escalations);
    m.aid_answers.push((aid, AidAnswer::of(&res)));
    let state = match res {
        Ok(true) => {
            m.post_copy |= aid == ConvergenceAid::PostCopy;
            out.events.push(EventKind::Escalated {
                vm: vm.id.clone(),
                attempt: m.req.attempt,
                aid,
            });
            MoveState::Migrating(m)
        }
        // Post-copy refused for a passing reason (asked during the disk copy, see
        // `Migrating::post_copy_refused_at`) while the migration progresses: asked again at the
        // next firing (a stall timeout from the ask, which set the watch), not aborted.
        Err(f)
            if aid.refused_for_now(&f)
                && m.post_copy_refused_at.is_none_or(|at| m.best_done > at) =>
        {
            m.post_copy_refused_at = Some(m.best_done);
            m.escalations -= 1;
            out.events.push(not_aborted_event(
                vm,
                &m.req,
                format!(
                    "post-copy refused for now ({}); asked again in {} if the migration still progresses",
                    f.message,
                    crate::spec::dur::format_duration(s.stall_timeout)
                ),
            ));
            MoveState::Migrating(m)
        }
        // No aid (or it failed): try the next step on the next firing, or abort.
        Ok(false) | Err(_) => {
            if m.escalations as usize >= AIDS.len() {
                let why = Failure::new(
                    ErrorClass::Transient,
                    format!(
                        "did not converge and no convergence aid helped ({})",
                        aids_tried(&m.aid_answers)
                    ),
                );
                vm.record_failure(&m.req, &why, &mut out);
                vm.abort(ctx, m.req, m.handle, why, 0, &mut out)
            } else {
                // The watchdog that asked it fires again at once: it asks the next aid.
                m.refire = m.aid_asked_by;
                vm.timer = Some(now);
                MoveState::Migrating(m)
            }
        }
    };
    // A stop with abort that came while post-copy was asked waited for this answer
    // (`may_be_in_post_copy`): not in post-copy, the migration is aborted now.
    match state {
        MoveState::Migrating(m) if ctx.abort_running && !m.post_copy => {
            let state = vm.abort(
                ctx,
                m.req,
                m.handle,
                super::aborting::run_stopped(),
                0,
                &mut out,
            );
            (state, out)
        }
        state => (state, out),
    }
}

/// Post-copy was applied, or was asked and has not answered yet: the host may already have
/// switched the guest to the destination, so the migration is not aborted (a stop with abort
/// waits for the answer, a watchdog lets it come). A resume reads a journal's post-copy asked
/// with no answer the same way (`AidsAsked::post_copy`).
pub(super) fn may_be_in_post_copy(m: &Migrating) -> bool {
    m.post_copy || (m.converging && aid_asked(m.escalations) == ConvergenceAid::PostCopy)
}
