//! What several phases share: ending the move, and the events that say what an attempt is
//! doing (a failure, an abort waited for, a call that failed, what was left behind or removed).

use super::limits::ABORT_RETRIES;
use super::types::{MoveState, Output, VmMove};
use crate::event::{AttemptCall, EventKind};
use crate::io::{Command, LeftoverContext};
use crate::model::{Failure, Leftover, MigrationRequest};
use crate::time::Time;
use std::collections::VecDeque;
use std::sync::Arc;

impl VmMove {
    /// Ends the move in the final `state`, saying its outcome; returns that state.
    pub(super) fn finish(&mut self, now: Time, state: MoveState, out: &mut Output) -> MoveState {
        match &state {
            MoveState::Moved { destination } => out.events.push(EventKind::Moved {
                vm: self.id.clone(),
                name: self.name.clone(),
                destination: destination.clone(),
                attempts: self.attempts,
            }),
            MoveState::Unmigratable { reason } => out.events.push(EventKind::Unmigratable {
                vm: self.id.clone(),
                name: self.name.clone(),
                reason: reason.clone(),
            }),
            MoveState::Cancelled { reason } => out.events.push(EventKind::Cancelled {
                vm: self.id.clone(),
                name: self.name.clone(),
                reason: reason.clone(),
            }),
            _ => {}
        }
        self.finished_at = Some(now);
        self.preflight.asking = None;
        self.timer = None;
        self.wait = None;
        state
    }

    /// Says at once that the attempt's migration failed. `AttemptFailed` follows once the hosts
    /// were looked at and what follows (retry when, or give up) is known: the look can take a
    /// minute when a host does not answer.
    pub(super) fn record_failure(
        &mut self,
        req: &MigrationRequest,
        why: &Failure,
        out: &mut Output,
    ) {
        // An attempt vmove's crash interrupted stays the crash's even when this process saw
        // it fail after re-adopting its job (`interrupted` is kept): with libvirt's default,
        // client-driven migration a job found running after the crash cannot finish without the
        // client that died, and ends failed moments later. It does not count; a permanent
        // failure still ends the VM.
        self.last_error = Some(why.message.clone());
        out.events.push(EventKind::MigrationFailed {
            vm: self.id.clone(),
            attempt: req.attempt,
            source: req.source.clone(),
            destination: req.destination.clone(),
            error: why.message.clone(),
        });
    }

    /// Says that an abort was asked (`look` 0) or that the job still runs after it (`look` of
    /// `looks`).
    pub(super) fn abort_waiting(
        &self,
        req: &MigrationRequest,
        why: &Failure,
        round: u32,
        (look, looks): (u32, u32),
        out: &mut Output,
    ) {
        out.events.push(EventKind::AbortWaiting {
            vm: self.id.clone(),
            attempt: req.attempt,
            source: req.source.clone(),
            destination: req.destination.clone(),
            why: why.message.clone(),
            round,
            rounds: ABORT_RETRIES,
            look,
            looks,
        });
    }

    /// Says that a call about the attempt failed and what follows.
    pub(super) fn call_failed(
        &self,
        req: &MigrationRequest,
        call: AttemptCall,
        error: &str,
        (tries, of): (u32, u32),
        retry_at: Option<Time>,
        out: &mut Output,
    ) {
        out.events.push(EventKind::CallFailed {
            vm: self.id.clone(),
            attempt: req.attempt,
            call,
            error: error.into(),
            tries,
            of,
            retry_at,
        });
    }

    /// The move ends from `Locating` without the destination having been looked at for what the
    /// attempt left there: say so (the event precedes the outcome).
    pub(super) fn left_unchecked(&self, req: &MigrationRequest, why: String, out: &mut Output) {
        out.events.push(EventKind::LeftBehind {
            vm: self.id.clone(),
            attempt: req.attempt,
            host: req.destination.clone(),
            what: Vec::new(),
            why,
        });
    }

    /// Announces the outcome of one leftover removal (removed, or kept with the reason).
    pub(super) fn report_removal(&self, l: Leftover, res: Result<(), Failure>, out: &mut Output) {
        out.events.push(match res {
            Ok(()) => EventKind::LeftoverRemoved {
                vm: self.id.clone(),
                host: l.host,
                kind: l.kind,
                what: l.what,
            },
            Err(e) => EventKind::LeftoverKept {
                vm: self.id.clone(),
                host: l.host,
                what: l.what,
                error: e.message,
            },
        });
    }

    /// Asks to remove the first of `todo`, if there is one (whether it asked).
    pub(super) fn next_leftover(
        &self,
        req: &Arc<MigrationRequest>,
        ctx_kind: LeftoverContext,
        todo: &VecDeque<Leftover>,
        out: &mut Output,
    ) -> bool {
        if let Some(l) = todo.front() {
            out.commands.push(Command::RemoveLeftover {
                request: req.clone(),
                leftover: l.clone(),
                context: ctx_kind,
            });
            true
        } else {
            false
        }
    }
}
