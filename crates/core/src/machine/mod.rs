//! The move of one VM: an explicit state machine.
//!
//! [`step`] is the whole transition table: one exhaustive `match` on (state, event) whose arms
//! each name a transition function in the file of its phase (`queued`, `starting`, `migrating`,
//! `aborting`, `locating`, `discarding`, `verifying`, `cleaning`). A transition takes the state
//! by value and returns the next state with the commands and events it produced. [`step`]
//! returns those, or [`Illegal`] when the state does not accept the event (the state is then
//! left unchanged). Benign stale answers (a status report that arrives after an abort was
//! asked, an answer to a finished VM) are accepted and ignored, each self-loop commented.
//!
//! Slots and destination reservations are NOT handled here: the engine derives them from the
//! phase before and after every transition
//! ([`Phase::holds_slot`](crate::event::Phase::holds_slot)), so every exit path releases them.
//!
//! After an abort, what a look that finds the job still running does depends on the abort's answer:
//! accepted, unanswered (the `Aborting` timer) or indeterminate, the abort may still take effect
//! (and can take a while: on a cut link, libvirt ends an aborted storage migration only at the
//! source's next TCP retransmission after the link is back: 25 s, 51 s, 102 s... after the cut,
//! seen in the netns lab), so the job is given [`ABORT_PATIENCE`] looks (`recheck_interval` apart)
//! to end before the abort is asked again; definitely refused (it did not happen), there is nothing
//! to wait for: refused for good (a permanent or refused error), the first such look asks again;
//! refused for a passing reason (a transient error: host busy, a lock held), the next look does
//! ([`REFUSED_ABORT_PATIENCE`]), so that passing refusals do not use up the rounds in seconds.
//! Either way at most [`ABORT_RETRIES`] aborts are asked, then the VM is left for a person. Looks
//! that fail are counted apart (at most [`OBSERVE_RETRIES`] per round) and do not use up that
//! patience.
//!
//! ```mermaid
//! stateDiagram-v2
//!     [*] --> Queued
//!     Queued --> Queued: pre-flight asked for the chosen destination (no slot held), answered clear / destination blocked / warnings
//!     Queued --> Starting: scheduler picks it (slot + destination with a clear pre-flight)
//!     Queued --> Unmigratable: pre-flight blocker about the VM, or every destination blocked (0 attempts)
//!     Queued --> BackingOff: pre-flight could not be made (asked again after the back-off)
//!     Queued --> Moved: already on a destination
//!     Queued --> Unmigratable: bad status / backup too long / not found / no room
//!     Queued --> Cancelled: run stopped
//!     Starting --> Confirming: driver accepted
//!     Starting --> Locating: start failed
//!     Starting --> Queued: not carried out, another process holds the slots (attempt not counted)
//!     Confirming --> Migrating: seen running
//!     Confirming --> Verifying: already completed
//!     Confirming --> Aborting: not running after job_start_timeout x job_start_attempts
//!     Confirming --> Locating: failed
//!     Migrating --> Verifying: completed
//!     Migrating --> Aborting: stall / completion watchdog, or abort of the run
//!     Migrating --> Locating: failed
//!     Aborting --> Locating: abort answered (or timed out): look at once
//!     Locating --> Migrating: a migration job still runs (re-adopted)
//!     Locating --> Aborting: a job still runs (after an abort refused for good: at once; refused for a passing reason: at the 2nd look; accepted or unanswered: at the ABORT_PATIENCE-th look)
//!     Locating --> Verifying: it is on the destination (or paused on the source by an interrupted migration while the destination runs a copy: verify proves the copy this attempt's)
//!     Locating --> Aborting: paused on the source by an interrupted migration, no copy on the destination: roll back (resume the source copy)
//!     Locating --> Discarding: it is on the source: remove what the attempt left on the destination
//!     Locating --> Unmigratable: on both / on neither
//!     Discarding --> BackingOff: transient failure, attempts left
//!     Discarding --> Queued: refused, another destination allowed (or our own leftover caused it and was removed: same one, once)
//!     Discarding --> Unmigratable: permanent / attempts exhausted
//!     Discarding --> Cancelled: run stopped
//!     BackingOff --> Queued: delay over
//!     BackingOff --> Cancelled: run stopped
//!     Verifying --> CleaningUp: proven on the destination
//!     Verifying --> Moved: proven (clean-up disabled)
//!     Verifying --> Unmigratable: cannot be proven
//!     CleaningUp --> Moved: leftovers removed (or kept with a warning)
//!     Moved --> [*]
//!     Unmigratable --> [*]
//!     Cancelled --> [*]
//! ```

mod aborting;
mod cleaning;
mod common;
mod discarding;
mod limits;
mod locating;
mod migrating;
pub(crate) use migrating::{IN_POST_COPY, completion_timeout};
mod queued;
mod starting;
mod types;
mod verifying;

pub use limits::{
    ABORT_PATIENCE, ABORT_RETRIES, OBSERVE_RETRIES, REFUSED_ABORT_PATIENCE, VERIFY_RETRIES,
};
use types::Next;
pub use types::{
    AidAnswer, AidsAsked, Assessment, Ctx, DiscardTally, Illegal, Migrating, MoveState, Output,
    PreflightMemo, VmEvent, VmMove,
};

/// A self-loop: the state stays as it is, nothing is produced.
fn stay(state: MoveState) -> Next {
    (state, Output::default())
}

/// The transition table. On `Err`, the VM is unchanged.
pub fn step(vm: &mut VmMove, ctx: Ctx<'_>, ev: VmEvent) -> Result<Output, Illegal> {
    let phase = vm.phase();
    // The state moves into the transition and its successor comes back; the placeholder is
    // never seen outside this function.
    let state = std::mem::replace(&mut vm.state, MoveState::Queued);
    let (next, result) = match transition(vm, ctx, state, ev) {
        Transition::To(next, out) => (next, Ok(out)),
        Transition::Refused(same, event) => (same, Err(Illegal { phase, event })),
    };
    vm.state = next;
    result
}

/// What [`transition`] made of an event.
enum Transition {
    /// The next state, and the commands and events produced.
    To(MoveState, Output),
    /// Not accepted: the state, given back unchanged, and the event's name.
    Refused(MoveState, &'static str),
}

impl From<Next> for Transition {
    fn from((state, out): Next) -> Self {
        Transition::To(state, out)
    }
}

/// One arm per (state, event) the state accepts; anything else gives the state back with the
/// event's name.
fn transition(vm: &mut VmMove, ctx: Ctx<'_>, state: MoveState, ev: VmEvent) -> Transition {
    use MoveState as S;
    use VmEvent as E;
    Transition::from(match (state, ev) {
        // ---------------- Queued ----------------
        (S::Queued, E::Assessed(a)) => queued::assessed(vm, ctx, a),
        (
            S::Queued,
            E::Start {
                destination,
                mode,
                layout,
                run_id,
            },
        ) => queued::start(vm, ctx, destination, mode, layout, run_id),
        (
            S::Queued,
            E::Preflight {
                destination,
                mode,
                layout,
                run_id,
            },
        ) => queued::preflight(vm, destination, mode, layout, run_id),
        (
            S::Queued,
            E::Preflighted {
                destination,
                result,
            },
        ) => queued::preflighted(vm, ctx, destination, result),
        (S::Queued, E::Timer) => queued::timer(vm, ctx),
        (S::Queued, E::Stop { reason, .. }) => queued::cancel(vm, ctx, reason),

        // ---------------- Starting ----------------
        (S::Starting { req }, E::Started(Ok(handle))) => starting::accepted(vm, ctx, req, handle),
        (S::Starting { req }, E::Started(Err(why))) => starting::start_failed(vm, req, why),
        (S::Starting { .. }, E::Deferred) => starting::deferred(vm, ctx),
        // Self-loop: a stop while the start call is out; handled when its answer arrives.
        (st @ S::Starting { .. }, E::Stop { .. }) => stay(st),

        // ---------------- Confirming ----------------
        (
            S::Confirming {
                req,
                handle,
                checks,
            },
            E::Status(res),
        ) => starting::status(vm, ctx, req, handle, checks, res),
        (
            S::Confirming {
                req,
                handle,
                checks,
            },
            E::Timer,
        ) => starting::timer(vm, ctx, req, handle, checks),
        (
            S::Confirming { req, handle, .. },
            E::Stop {
                abort_running: true,
                ..
            },
        ) => aborting::stop(vm, ctx, req, handle),
        // Self-loop: a graceful stop lets running migrations finish.
        (
            st @ S::Confirming { .. },
            E::Stop {
                abort_running: false,
                ..
            },
        ) => stay(st),

        // ---------------- Migrating ----------------
        (S::Migrating(m), E::Status(res)) => migrating::status(vm, ctx, m, res),
        (S::Migrating(m), E::Timer) => migrating::timer(vm, ctx, m),
        (S::Migrating(m), E::Converged(res)) => migrating::converged(vm, ctx, m, res),
        // A migration in post-copy cannot be aborted: it is watched to its end.
        (
            S::Migrating(m),
            E::Stop {
                abort_running: true,
                ..
            },
        ) if migrating::may_be_in_post_copy(&m) => migrating::not_aborted(vm, m),
        (
            S::Migrating(m),
            E::Stop {
                abort_running: true,
                ..
            },
        ) => aborting::stop(vm, ctx, m.req, m.handle),
        // Self-loop: a graceful stop lets running migrations finish.
        (
            st @ S::Migrating(_),
            E::Stop {
                abort_running: false,
                ..
            },
        ) => stay(st),

        // ---------------- Aborting ----------------
        (
            S::Aborting {
                req, why, rounds, ..
            },
            E::AbortDone(res),
        ) => aborting::answered(vm, req, why, rounds, res),
        (
            S::Aborting {
                req, why, rounds, ..
            },
            E::Timer,
        ) => aborting::timer(vm, req, why, rounds),
        // Self-loop: status reports and convergence answers that crossed the abort; the Locate
        // that follows decides from what the hosts show.
        (st @ S::Aborting { .. }, E::Status(_) | E::Converged(_) | E::Stop { .. }) => stay(st),

        // ---------------- Locating ----------------
        (
            S::Locating {
                req,
                why,
                tries,
                abort_rounds,
                abort_wait,
            },
            E::Located(Err(e)),
        ) => locating::look_failed(vm, ctx, req, why, tries, abort_rounds, abort_wait, e),
        (
            S::Locating {
                req,
                why,
                tries,
                abort_rounds,
                abort_wait,
            },
            E::Located(Ok(loc)),
        ) => locating::located(vm, ctx, req, why, tries, abort_rounds, abort_wait, *loc),
        (st @ S::Locating { .. }, E::Timer) => locating::timer(vm, st),
        // Self-loop: late status/abort/convergence answers; the Locate answer decides.
        (
            st @ S::Locating { .. },
            E::Status(_) | E::AbortDone(_) | E::Converged(_) | E::Stop { .. },
        ) => stay(st),

        // ---------------- Discarding ----------------
        (
            S::Discarding {
                req,
                why,
                todo: None,
                tally,
            },
            E::Leftovers(res),
        ) => discarding::listed(vm, ctx, req, why, tally, res),
        (
            S::Discarding {
                req,
                why,
                todo: Some(todo),
                tally,
            },
            E::LeftoverRemoved(l, res),
        ) if todo.front() == Some(&l) => {
            discarding::removed(vm, ctx, req, why, todo, tally, l, res)
        }
        // Self-loop: late answers of the failed attempt; a stop takes effect when discarding ends.
        (
            st @ S::Discarding { .. },
            E::Status(_) | E::AbortDone(_) | E::Converged(_) | E::Stop { .. },
        ) => stay(st),

        // ---------------- BackingOff ----------------
        (S::BackingOff { until }, E::Timer) => queued::backoff_over(vm, ctx, until),
        (S::BackingOff { .. }, E::Stop { reason, .. }) => queued::cancel(vm, ctx, reason),
        // Self-loop: late answers of the failed attempt.
        (st @ S::BackingOff { .. }, E::Status(_) | E::AbortDone(_) | E::Converged(_)) => stay(st),

        // ---------------- Verifying ----------------
        (S::Verifying { req, tries }, E::Verified(res)) => {
            verifying::verified(vm, ctx, req, tries, res)
        }
        (S::Verifying { req, tries }, E::Timer) => verifying::timer(vm, req, tries),
        // Self-loop: late answers; a stop does not interrupt proving a VM that already moved.
        (
            st @ S::Verifying { .. },
            E::Status(_) | E::AbortDone(_) | E::Converged(_) | E::Stop { .. },
        ) => stay(st),

        // ---------------- CleaningUp ----------------
        (S::CleaningUp { req, todo: None }, E::Leftovers(res)) => {
            cleaning::listed(vm, ctx, req, res)
        }
        (
            S::CleaningUp {
                req,
                todo: Some(todo),
            },
            E::LeftoverRemoved(l, res),
        ) if todo.front() == Some(&l) => cleaning::removed(vm, ctx, req, todo, l, res),
        // Self-loop: late answers; a stop does not interrupt cleaning up after a proven move.
        (
            st @ S::CleaningUp { .. },
            E::Status(_) | E::AbortDone(_) | E::Converged(_) | E::Stop { .. },
        ) => stay(st),

        // Self-loop: a pre-flight answer that reaches a VM no longer queued (it backed off, or
        // the run stopped) is stale; the next attempt asks again.
        (st, E::Preflighted { .. }) if !matches!(st, S::Queued) => {
            vm.preflight.asking = None;
            stay(st)
        }

        // ---------------- Final ----------------
        // Self-loop: anything reaching a finished VM is stale (late answers, observations,
        // stops), except a start.
        (st @ (S::Moved { .. } | S::Unmigratable { .. } | S::Cancelled { .. }), ev)
            if !matches!(ev, E::Start { .. }) =>
        {
            stay(st)
        }

        // ---------------- Everything else is illegal ----------------
        (st, ev) => return Transition::Refused(st, ev.name()),
    })
}
