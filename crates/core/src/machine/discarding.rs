//! `Discarding`: the VM is back on its source after a failed attempt; what the attempt left on
//! the destination is removed, one by one, and then the attempt is settled: retried (at once,
//! later, elsewhere), given up, or cancelled when the run is stopping.

use super::types::{Ctx, DiscardTally, MoveState, Next, Output, VmMove};
use crate::event::{EventKind, Reason};
use crate::io::LeftoverContext;
use crate::model::{ErrorClass, Failure, HostId, Leftover, MigrationRequest};
use crate::policy::{self, RetryAction};
use std::collections::VecDeque;
use std::sync::Arc;

/// `1 leftover`, `2 leftovers`.
fn plural(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl VmMove {
    /// After a failed attempt, with the VM known to be on its source and the destination clean.
    /// `refused_by`: the destination, when it refused the VM; `forgiven`: that refusal does not
    /// count (see [`discarded`]). Both are in the `AttemptFailed` event, so that a resumed run
    /// rebuilds [`VmMove::refused`] and [`VmMove::forgiven`] from the journal.
    #[allow(clippy::too_many_arguments)]
    fn after_failure(
        &mut self,
        ctx: Ctx<'_>,
        dest: &HostId,
        why: Failure,
        refused_by: Option<HostId>,
        forgiven: bool,
        out: &mut Output,
    ) -> MoveState {
        match &refused_by {
            Some(d) if forgiven => {
                self.forgiven.insert(d.clone());
            }
            Some(d) => {
                self.refused.insert(d.clone());
            }
            None => {}
        }
        // The attempt vmove's own crash interrupted, back on its source with nothing moved:
        // not the VM's failure. It does not count, and the next attempt starts at once.
        let interrupted = self.interrupted.take() == Some(self.attempts) && refused_by.is_none();
        if interrupted {
            self.uncounted += 1;
        }
        // The next attempt asks its pre-flight checks again: something may have changed.
        self.preflight.forget();
        // The same failure as the last attempt's on the same route (the driver's refusal of the
        // start or the migration's own failure; not vmove's abort, not its crash, not a
        // destination's refusal, which already skips it): nothing changed, so that route is not
        // tried a third time. It is then recorded as refused by that destination, so that a
        // resumed run skips it too.
        let ours = self.aborted_attempt == Some(self.attempts) || interrupted || forgiven;
        let this =
            (!ours && refused_by.is_none()).then(|| (dest.clone(), why.class, why.message.clone()));
        let repeated = this.is_some() && this == self.last_failure;
        self.last_failure = if repeated { None } else { this };
        let mut refused_by = refused_by;
        if repeated {
            self.refused.insert(dest.clone());
            refused_by = Some(dest.clone());
        }
        let counted = self.counted_attempts();
        let other_left = self.open_destinations().next().is_some();
        let retryable = why.class != ErrorClass::Permanent && counted < ctx.settings.max_attempts;
        let action = match ctx.stopping {
            Some(_) => None,
            None if repeated && retryable && other_left => Some(RetryAction::TryElsewhere),
            None if repeated && retryable => Some(RetryAction::GiveUp),
            None if forgiven || interrupted => {
                Some(policy::after_cleared_refusal(ctx.settings, counted))
            }
            None => Some(policy::on_failure(
                ctx.settings,
                why.class,
                counted,
                self.key,
                other_left,
            )),
        };
        out.events.push(EventKind::AttemptFailed {
            vm: self.id.clone(),
            attempt: self.attempts,
            class: why.class,
            error: why.message.clone(),
            retry_at: match action {
                Some(RetryAction::RetryAfter(d)) => Some(ctx.now + d),
                Some(RetryAction::TryElsewhere | RetryAction::RetryNow) => Some(ctx.now),
                _ => None,
            },
            refused_by,
            forgiven,
            interrupted,
        });
        match action {
            None => {
                let reason = ctx.stopping.cloned().unwrap_or(Reason::RunStopped);
                self.finish(ctx.now, MoveState::Cancelled { reason }, out)
            }
            Some(RetryAction::RetryAfter(d)) => {
                let until = ctx.now + d;
                self.timer = Some(until);
                MoveState::BackingOff { until }
            }
            Some(RetryAction::TryElsewhere | RetryAction::RetryNow) => {
                self.timer = None;
                MoveState::Queued
            }
            Some(RetryAction::Exhausted) => {
                let reason = Reason::AttemptsExhausted {
                    attempts: counted,
                    last_error: why.message,
                };
                self.finish(ctx.now, MoveState::Unmigratable { reason }, out)
            }
            Some(RetryAction::GiveUp) => {
                let reason = if repeated {
                    Reason::SameFailureTwice {
                        destination: dest.clone(),
                        error: why.message,
                    }
                } else if why.class == ErrorClass::DestinationRefused {
                    Reason::AllDestinationsRefused(why.message)
                } else {
                    Reason::Permanent(why.message)
                };
                self.finish(ctx.now, MoveState::Unmigratable { reason }, out)
            }
        }
    }
}

/// The clean-up of a failed attempt's destination is over: decide what follows. A refusal of
/// the destination does not count when this clean-up removed everything it listed and
/// something was listed (the refusal was caused by what an earlier attempt of this VM left
/// there, proven ours by the driver), once per destination: the VM is retried there at once.
fn discarded(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    req: Arc<MigrationRequest>,
    mut why: Failure,
    tally: DiscardTally,
    out: &mut Output,
) -> MoveState {
    let refused = why.class == ErrorClass::DestinationRefused;
    let cleared = refused && tally.cleared_something() && !vm.forgiven.contains(&req.destination);
    if cleared {
        why.message = format!(
            "{}; the clean-up removed {} an earlier attempt of this VM had left there, so this refusal does not count",
            why.message,
            plural(tally.removed, "leftover", "leftovers"),
        );
    }
    let refused_by = refused.then(|| req.destination.clone());
    let before = out.events.len();
    let state = vm.after_failure(ctx, &req.destination, why, refused_by, cleared, out);
    if state.phase().is_final() && (!tally.kept.is_empty() || tally.unlisted.is_some()) {
        let (what, why) = match tally.unlisted {
            Some(e) => (Vec::new(), format!("could not list it: {e}")),
            None => (
                tally.kept.iter().map(|(w, _)| w.clone()).collect(),
                tally
                    .kept
                    .iter()
                    .map(|(_, e)| e.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        };
        // Before the outcome event, after AttemptFailed.
        let at = (before + 1).min(out.events.len());
        out.events.insert(
            at,
            EventKind::LeftBehind {
                vm: vm.id.clone(),
                attempt: req.attempt,
                host: req.destination.clone(),
                what,
                why,
            },
        );
    }
    state
}

/// Removes the next of a failed attempt's leftovers on the destination, or, when none is left,
/// settles the attempt ([`discarded`]).
fn next(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    req: Arc<MigrationRequest>,
    why: Failure,
    todo: VecDeque<Leftover>,
    tally: DiscardTally,
    out: &mut Output,
) -> MoveState {
    if vm.next_leftover(&req, LeftoverContext::AfterFailedAttempt, &todo, out) {
        MoveState::Discarding {
            req,
            why,
            todo: Some(todo),
            tally,
        }
    } else {
        discarded(vm, ctx, req, why, tally, out)
    }
}

/// Discarding, the leftovers listed (or not: said as kept, and counted as unlisted).
pub(super) fn listed(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    req: Arc<MigrationRequest>,
    why: Failure,
    mut tally: DiscardTally,
    res: Result<Vec<Leftover>, Failure>,
) -> Next {
    let mut out = Output::default();
    let todo: VecDeque<Leftover> = match res {
        Ok(v) => v.into_iter().collect(),
        Err(e) => {
            out.events.push(EventKind::LeftoverKept {
                vm: vm.id.clone(),
                host: req.destination.clone(),
                what: "(could not list the failed attempt's leftovers)".into(),
                error: e.message.clone(),
            });
            tally.unlisted = Some(e.message);
            VecDeque::new()
        }
    };
    let state = next(vm, ctx, req, why, todo, tally, &mut out);
    (state, out)
}

/// Discarding, the first leftover's removal answered.
pub(super) fn removed(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    req: Arc<MigrationRequest>,
    why: Failure,
    mut todo: VecDeque<Leftover>,
    mut tally: DiscardTally,
    l: Leftover,
    res: Result<(), Failure>,
) -> Next {
    let mut out = Output::default();
    todo.pop_front();
    match &res {
        Ok(()) => tally.removed += 1,
        Err(e) => tally.kept.push((l.what.clone(), e.message.clone())),
    }
    vm.report_removal(l, res, &mut out);
    let state = next(vm, ctx, req, why, todo, tally, &mut out);
    (state, out)
}
