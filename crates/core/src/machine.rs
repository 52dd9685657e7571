//! The move of one VM: an explicit state machine.
//!
//! [`step`] is the whole transition table: one exhaustive `match` on (state, event). It returns
//! the commands and events the transition produces, or [`Illegal`] when the state does not accept
//! the event (the state is then left unchanged). Benign stale answers (a status report that
//! arrives after an abort was asked, an answer to a finished VM) are accepted and ignored, each
//! self-loop commented.
//!
//! Slots and destination reservations are NOT handled here: the engine derives them from the
//! phase before and after every transition ([`Phase::holds_slot`]), so every exit path releases
//! them.
//!
//! After an abort, what a look that finds the job still running does depends on the abort's
//! answer: accepted, unanswered (the `Aborting` timer) or indeterminate, the abort may still take
//! effect, so the job is given [`ABORT_PATIENCE`] looks (`recheck_interval` apart) to end before
//! the abort is asked again; definitely refused (it did not happen), there is nothing to wait for:
//! refused for good (a permanent or refused error), the first such look asks again; refused for a
//! passing reason (a transient error: host busy, a lock held), the next look does
//! ([`REFUSED_ABORT_PATIENCE`]), so that passing refusals do not use up the rounds in seconds. Either way at
//! most [`ABORT_RETRIES`] aborts are asked, then the VM is left for a person. Looks that fail are
//! counted apart (at most [`OBSERVE_RETRIES`] per round) and do not use up that patience.
//!
//! ```mermaid
//! stateDiagram-v2
//!     [*] --> Queued
//!     Queued --> Starting: scheduler picks it (slot + destination)
//!     Queued --> Moved: already on a destination
//!     Queued --> Unmigratable: bad status / backup too long / not found / no room
//!     Queued --> Cancelled: run stopped
//!     Starting --> Confirming: driver accepted
//!     Starting --> Locating: start failed
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

use crate::event::{EventKind, Phase, Reason, WaitReason};
use crate::io::{Command, LeftoverContext};
use crate::model::{
    Activity, ConvergenceAid, ErrorClass, Failure, HostId, Leftover, Location, MigrationHandle,
    MigrationMode, MigrationRequest, MigrationStatus, PathLayout, Progress, Verification, VmId,
};
use crate::policy::{self, RetryAction};
use crate::spec::{Settings, WatchdogAction};
use crate::time::Time;
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

/// How many times an unanswerable Locate or Verify is retried before the VM is left for a person.
pub const OBSERVE_RETRIES: u32 = 60;
/// How many times an inconclusive verification is repeated before the VM is left for a person.
pub const VERIFY_RETRIES: u32 = 5;
/// How many times a migration that keeps running after an abort is aborted again.
pub const ABORT_RETRIES: u32 = 3;
/// How many looks at the hosts (`recheck_interval` apart) a migration whose abort was accepted
/// (or not answered, or answered with an indeterminate error) may go on running before the abort
/// is asked again. An accepted abort can take a while: on a cut link, libvirt ends an aborted
/// storage migration only at the source's next TCP retransmission after the link is back (25 s,
/// 51 s, 102 s... after the cut, seen in the netns lab). An abort the driver refused for good
/// (a permanent or refused error: it did not happen) gets no patience: the first look that finds
/// the job running asks again (the next round); one refused for a passing reason gets
/// [`REFUSED_ABORT_PATIENCE`].
pub const ABORT_PATIENCE: u32 = 6;
/// The looks a job found running after an abort the driver refused for a passing reason (a
/// transient error: the host busy, a lock held) gets before the abort is asked again: one
/// `recheck_interval`, so that three passing refusals do not use up [`ABORT_RETRIES`] in seconds.
/// An abort refused for good (permanent, refused) is asked again at the first look.
pub const REFUSED_ABORT_PATIENCE: u32 = 2;

/// The state of one VM's move. The data each phase needs lives in its variant.
#[derive(Debug, Clone, PartialEq)]
pub enum MoveState {
    /// Waiting to be started (see [`VmMove::wait`]).
    Queued,
    /// Start asked.
    Starting {
        /// The attempt's request.
        req: MigrationRequest,
    },
    /// Accepted; waiting to see it running.
    Confirming {
        /// Request.
        req: MigrationRequest,
        /// Driver handle.
        handle: MigrationHandle,
        /// Checks made so far.
        checks: u32,
    },
    /// Running, watched.
    Migrating(Box<Migrating>),
    /// Abort asked.
    Aborting {
        /// Request.
        req: MigrationRequest,
        /// Handle.
        handle: MigrationHandle,
        /// Why the attempt is being given up.
        why: Failure,
        /// Aborts asked so far in this attempt.
        rounds: u32,
    },
    /// Looking at the hosts.
    Locating {
        /// Request.
        req: MigrationRequest,
        /// What went wrong (the attempt's failure).
        why: Failure,
        /// Locate calls that failed so far (at most [`OBSERVE_RETRIES`]).
        tries: u32,
        /// Aborts asked so far in this attempt.
        abort_rounds: u32,
        /// Waiting for the last abort to take effect: how many looks found the job still running
        /// since it was asked, and how many it may (the patience: [`ABORT_PATIENCE`] after an
        /// abort accepted or not answered, [`REFUSED_ABORT_PATIENCE`] after one refused for a
        /// passing reason). `None` when there is nothing to wait for: no abort was asked, or the
        /// last one was refused for good (or, after a resume, may never have reached the host);
        /// a job found running is then aborted at once.
        abort_wait: Option<(u32, u32)>,
    },
    /// Removing what a failed attempt left on the destination.
    Discarding {
        /// Request.
        req: MigrationRequest,
        /// The attempt's failure.
        why: Failure,
        /// Leftovers still to remove (`None` until listed).
        todo: Option<VecDeque<Leftover>>,
        /// What was removed and what was not, so far.
        tally: DiscardTally,
    },
    /// Waiting before the next attempt.
    BackingOff {
        /// Until when.
        until: Time,
    },
    /// Proving the VM arrived.
    Verifying {
        /// Request.
        req: MigrationRequest,
        /// Failed or inconclusive verifications so far.
        tries: u32,
    },
    /// Removing what the move left on the source.
    CleaningUp {
        /// Request.
        req: MigrationRequest,
        /// Leftovers still to remove (`None` until listed).
        todo: Option<VecDeque<Leftover>>,
    },
    /// Done.
    Moved {
        /// Where it is.
        destination: HostId,
    },
    /// Given up.
    Unmigratable {
        /// Why.
        reason: Reason,
    },
    /// Not moved: the run stopped.
    Cancelled {
        /// Why.
        reason: Reason,
    },
}

/// What the clean-up of a failed attempt's destination did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscardTally {
    /// Leftovers removed.
    pub removed: u32,
    /// Leftovers that could not be removed (what, and the error).
    pub kept: Vec<(String, String)>,
    /// Why the leftovers could not be listed, if they could not.
    pub unlisted: Option<String>,
}

impl DiscardTally {
    /// Everything listed was removed, and something was.
    fn cleared_something(&self) -> bool {
        self.removed > 0 && self.kept.is_empty() && self.unlisted.is_none()
    }
}

/// The data of a running migration.
#[derive(Debug, Clone, PartialEq)]
pub struct Migrating {
    /// Request.
    pub req: MigrationRequest,
    /// Handle.
    pub handle: MigrationHandle,
    /// When it was seen running.
    pub since: Time,
    /// Last time progress was made.
    pub last_progress_at: Time,
    /// Most bytes done seen.
    pub best_done: u64,
    /// Fewest bytes remaining seen (u64::MAX until known).
    pub best_remaining: u64,
    /// Next progress poll.
    pub next_poll: Time,
    /// A poll is outstanding.
    pub polling: bool,
    /// Completion deadline.
    pub deadline: Time,
    /// Convergence aids applied so far (escalation step).
    pub escalations: u32,
    /// A convergence request is outstanding.
    pub converging: bool,
}

impl MoveState {
    /// The phase name of this state.
    pub fn phase(&self) -> Phase {
        match self {
            MoveState::Queued => Phase::Queued,
            MoveState::Starting { .. } => Phase::Starting,
            MoveState::Confirming { .. } => Phase::Confirming,
            MoveState::Migrating(_) => Phase::Migrating,
            MoveState::Aborting { .. } => Phase::Aborting,
            MoveState::Locating { .. } => Phase::Locating,
            MoveState::Discarding { .. } => Phase::Discarding,
            MoveState::BackingOff { .. } => Phase::BackingOff,
            MoveState::Verifying { .. } => Phase::Verifying,
            MoveState::CleaningUp { .. } => Phase::CleaningUp,
            MoveState::Moved { .. } => Phase::Moved,
            MoveState::Unmigratable { .. } => Phase::Unmigratable,
            MoveState::Cancelled { .. } => Phase::Cancelled,
        }
    }

    /// The request of the attempt in flight, if any.
    pub fn request(&self) -> Option<&MigrationRequest> {
        match self {
            MoveState::Starting { req }
            | MoveState::Confirming { req, .. }
            | MoveState::Aborting { req, .. }
            | MoveState::Locating { req, .. }
            | MoveState::Discarding { req, .. }
            | MoveState::Verifying { req, .. }
            | MoveState::CleaningUp { req, .. } => Some(req),
            MoveState::Migrating(m) => Some(&m.req),
            _ => None,
        }
    }
}

/// What the engine learned about a queued VM from the hosts.
#[derive(Debug, Clone, PartialEq)]
pub enum Assessment {
    /// Eligible, in this mode.
    Ready(MigrationMode),
    /// Not yet; `held` means the wait counts against `backup_threshold`.
    Wait {
        /// Why.
        reason: WaitReason,
        /// Whether it is a hold that counts against the threshold (backup, job, transition).
        held: bool,
    },
    /// Already on an allowed destination.
    AlreadyThere(HostId),
    /// Cannot be moved.
    Unmigratable(Reason),
}

/// An event for one VM's machine.
#[derive(Debug, Clone, PartialEq)]
pub enum VmEvent {
    /// The engine's assessment of a queued VM.
    Assessed(Assessment),
    /// The scheduler starts it toward `destination`.
    Start {
        /// Destination.
        destination: HostId,
        /// Mode.
        mode: MigrationMode,
        /// Destination layout.
        layout: PathLayout,
        /// Run id.
        run_id: String,
    },
    /// Answer to StartMigration.
    Started(Result<MigrationHandle, Failure>),
    /// A status report (answer or push).
    Status(Result<MigrationStatus, Failure>),
    /// Answer to AbortMigration.
    AbortDone(Result<(), Failure>),
    /// Answer to Converge.
    Converged(Result<bool, Failure>),
    /// Answer to Locate.
    Located(Result<Location, Failure>),
    /// Answer to Verify.
    Verified(Result<Verification, Failure>),
    /// Answer to ListLeftovers.
    Leftovers(Result<Vec<Leftover>, Failure>),
    /// Answer to RemoveLeftover.
    LeftoverRemoved(Leftover, Result<(), Failure>),
    /// The VM's timer is due.
    Timer,
    /// The run stops.
    Stop {
        /// Abort running migrations.
        abort_running: bool,
        /// Reason for VMs that will not move.
        reason: Reason,
    },
}

impl VmEvent {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            VmEvent::Assessed(_) => "assessed",
            VmEvent::Start { .. } => "start",
            VmEvent::Started(_) => "migration_started",
            VmEvent::Status(_) => "migration_status",
            VmEvent::AbortDone(_) => "abort_done",
            VmEvent::Converged(_) => "converged",
            VmEvent::Located(_) => "located",
            VmEvent::Verified(_) => "verified",
            VmEvent::Leftovers(_) => "leftovers_listed",
            VmEvent::LeftoverRemoved(..) => "leftover_removed",
            VmEvent::Timer => "timer",
            VmEvent::Stop { .. } => "stop",
        }
    }
}

/// A transition the state does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition: {phase} does not accept {event}")]
pub struct Illegal {
    /// The phase.
    pub phase: Phase,
    /// The event's name.
    pub event: &'static str,
}

/// One VM's move: identity, figures, and its state.
#[derive(Debug, Clone)]
pub struct VmMove {
    /// Id.
    pub id: VmId,
    /// Name.
    pub name: String,
    /// Stable key for per-VM randomness.
    pub key: u64,
    /// Source host.
    pub source: HostId,
    /// Allowed destinations (shared by every VM of a source).
    pub destinations: std::sync::Arc<[HostId]>,
    /// Destinations that refused it.
    pub refused: BTreeSet<HostId>,
    /// Destinations whose refusal was not counted once, because the clean-up that followed it
    /// removed what an earlier attempt of this VM had left there (at most once per destination).
    pub forgiven: BTreeSet<HostId>,
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// Disk, bytes.
    pub disk_bytes: u64,
    /// Mode as last assessed.
    pub mode: MigrationMode,
    /// Attempts started (attempt numbers never repeat).
    pub attempts: u32,
    /// Attempts that do not count toward `max_attempts`: each was in flight when vmove itself
    /// stopped (a crash, a kill) and turned out not to have moved the VM (`AttemptFailed` with
    /// `interrupted`). vmove's own crash is not the VM's failure.
    pub uncounted: u32,
    /// The attempt that was in flight when vmove stopped, set on resume
    /// ([`crate::Core::resume`]) until that attempt ends or fails on its own (a failure this
    /// process sees itself counts as usual). If it ends with the VM back on its source, it is
    /// one of [`VmMove::uncounted`].
    pub interrupted: Option<u32>,
    /// Why it waits (queued only).
    pub wait: Option<WaitReason>,
    /// Since when it is held by a backup or job.
    pub held_since: Option<Time>,
    /// Latest progress.
    pub progress: Option<Progress>,
    /// Last error.
    pub last_error: Option<String>,
    /// When the current attempt started.
    pub started_at: Option<Time>,
    /// When it reached a final phase.
    pub finished_at: Option<Time>,
    /// The VM's timer.
    pub timer: Option<Time>,
    /// Whether this VM's source copy was proven gone and the destination copy proven present.
    pub verified: bool,
    /// The state.
    pub state: MoveState,
}

/// What a transition produced.
#[derive(Debug, Default, PartialEq)]
pub struct Output {
    /// Commands to carry out, in order.
    pub commands: Vec<Command>,
    /// Events to emit, in order (transitions are added by the engine).
    pub events: Vec<EventKind>,
}

/// Facts from outside the VM that a transition may need.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// Now.
    pub now: Time,
    /// Settings.
    pub settings: &'a Settings,
    /// The run is stopping (no new attempts).
    pub stopping: Option<&'a Reason>,
    /// Running migrations are to be aborted.
    pub abort_running: bool,
}

impl VmMove {
    /// A fresh, queued move.
    pub fn new(
        id: VmId,
        name: String,
        source: HostId,
        destinations: impl Into<std::sync::Arc<[HostId]>>,
        memory_bytes: u64,
        disk_bytes: u64,
        mode: MigrationMode,
    ) -> Self {
        let key = policy::vm_key(id.as_str());
        VmMove {
            id,
            name,
            key,
            source,
            destinations: destinations.into(),
            refused: BTreeSet::new(),
            forgiven: BTreeSet::new(),
            memory_bytes,
            disk_bytes,
            mode,
            attempts: 0,
            uncounted: 0,
            interrupted: None,
            wait: None,
            held_since: None,
            progress: None,
            last_error: None,
            started_at: None,
            finished_at: None,
            timer: None,
            verified: false,
            state: MoveState::Queued,
        }
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.state.phase()
    }

    /// Attempts that count toward `max_attempts`: those started, less those vmove's own crash
    /// interrupted without moving the VM ([`VmMove::uncounted`]).
    pub fn counted_attempts(&self) -> u32 {
        self.attempts.saturating_sub(self.uncounted)
    }

    /// Destinations still allowed (not refused).
    pub fn open_destinations(&self) -> impl Iterator<Item = &HostId> {
        self.destinations
            .iter()
            .filter(|d| !self.refused.contains(*d))
    }

    fn completion_deadline(&self, s: &Settings, now: Time) -> Time {
        let gib = (self.memory_bytes + self.disk_bytes) as f64 / crate::GIB as f64;
        let per = Duration::from_secs_f64(s.completion_timeout_per_gib.as_secs_f64() * gib);
        now + per.max(s.completion_timeout_min)
    }

    fn finish(&mut self, now: Time, state: MoveState, out: &mut Output) {
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
        self.timer = None;
        self.wait = None;
        self.state = state;
    }

    /// Looks at the hosts now: the first look after a failure or an abort (`abort_rounds` asked
    /// so far; `abort_wait` as in [`MoveState::Locating`]).
    fn locate(
        &mut self,
        req: MigrationRequest,
        why: Failure,
        abort_rounds: u32,
        abort_wait: Option<(u32, u32)>,
        out: &mut Output,
    ) {
        out.commands.push(Command::Locate {
            request: req.clone(),
        });
        self.timer = None;
        self.state = MoveState::Locating {
            req,
            why,
            tries: 0,
            abort_rounds,
            abort_wait,
        };
    }

    /// Stays in `Locating` (`state`, with its counts) and looks again after `recheck_interval`.
    fn relocate_later(&mut self, ctx: Ctx<'_>, state: MoveState) {
        debug_assert!(matches!(state, MoveState::Locating { .. }));
        self.timer = Some(ctx.now + ctx.settings.recheck_interval);
        self.state = state;
    }

    fn abort(
        &mut self,
        ctx: Ctx<'_>,
        req: MigrationRequest,
        handle: MigrationHandle,
        why: Failure,
        rounds: u32,
        out: &mut Output,
    ) {
        out.commands.push(Command::AbortMigration {
            request: req.clone(),
            handle: handle.clone(),
        });
        self.abort_waiting(&req, &why, rounds + 1, (0, ABORT_PATIENCE), out);
        // If the abort never answers, look at the hosts anyway after a stall timeout.
        self.timer = Some(ctx.now + ctx.settings.stall_timeout);
        self.state = MoveState::Aborting {
            req,
            handle,
            why,
            rounds: rounds + 1,
        };
    }

    fn start_migrating(
        &mut self,
        ctx: Ctx<'_>,
        req: MigrationRequest,
        handle: MigrationHandle,
        out: &mut Output,
    ) {
        let now = ctx.now;
        if ctx.abort_running {
            let why = Failure::new(ErrorClass::Transient, "aborted: the run was stopped");
            self.abort(ctx, req, handle, why, 0, out);
            return;
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
            escalations: 0,
            converging: false,
        };
        self.timer = Some(
            m.next_poll
                .min(m.deadline)
                .min(now + ctx.settings.stall_timeout),
        );
        self.state = MoveState::Migrating(Box::new(m));
    }

    fn verify(&mut self, req: MigrationRequest, tries: u32, out: &mut Output) {
        out.commands.push(Command::Verify {
            request: req.clone(),
        });
        self.timer = None;
        self.state = MoveState::Verifying { req, tries };
    }

    /// After a failed attempt, with the VM known to be on its source and the destination clean.
    /// `refused_by`: the destination, when it refused the VM; `forgiven`: that refusal does not
    /// count (see [`VmMove::discarded`]). Both are in the `AttemptFailed` event, so that a resumed
    /// run rebuilds [`VmMove::refused`] and [`VmMove::forgiven`] from the journal.
    fn after_failure(
        &mut self,
        ctx: Ctx<'_>,
        why: Failure,
        refused_by: Option<HostId>,
        forgiven: bool,
        out: &mut Output,
    ) {
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
        let counted = self.counted_attempts();
        let other_left = self.open_destinations().next().is_some();
        let action = match ctx.stopping {
            Some(_) => None,
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
                self.finish(ctx.now, MoveState::Cancelled { reason }, out);
            }
            Some(RetryAction::RetryAfter(d)) => {
                let until = ctx.now + d;
                self.timer = Some(until);
                self.state = MoveState::BackingOff { until };
            }
            Some(RetryAction::TryElsewhere | RetryAction::RetryNow) => {
                self.timer = None;
                self.state = MoveState::Queued;
            }
            Some(RetryAction::Exhausted) => {
                let reason = Reason::AttemptsExhausted {
                    attempts: counted,
                    last_error: why.message,
                };
                self.finish(ctx.now, MoveState::Unmigratable { reason }, out);
            }
            Some(RetryAction::GiveUp) => {
                let reason = if why.class == ErrorClass::DestinationRefused {
                    Reason::AllDestinationsRefused(why.message)
                } else {
                    Reason::Permanent(why.message)
                };
                self.finish(ctx.now, MoveState::Unmigratable { reason }, out);
            }
        }
    }

    /// Says that an abort was asked (`look` 0) or that the job still runs after it (`look` of
    /// `looks`).
    fn abort_waiting(
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
    fn call_failed(
        &self,
        req: &MigrationRequest,
        call: &str,
        error: &str,
        (tries, of): (u32, u32),
        retry_at: Option<Time>,
        out: &mut Output,
    ) {
        out.events.push(EventKind::CallFailed {
            vm: self.id.clone(),
            attempt: req.attempt,
            call: call.into(),
            error: error.into(),
            tries,
            of,
            retry_at,
        });
    }

    /// The move ends from `Locating` without the destination having been looked at for what the
    /// attempt left there: say so (the event precedes the outcome).
    fn left_unchecked(&self, req: &MigrationRequest, why: String, out: &mut Output) {
        out.events.push(EventKind::LeftBehind {
            vm: self.id.clone(),
            attempt: req.attempt,
            host: req.destination.clone(),
            what: Vec::new(),
            why,
        });
    }

    /// The clean-up of a failed attempt's destination is over: decide what follows. A refusal of
    /// the destination does not count when this clean-up removed everything it listed and
    /// something was listed (the refusal was caused by what an earlier attempt of this VM left
    /// there, proven ours by the driver), once per destination: the VM is retried there at once.
    fn discarded(
        &mut self,
        ctx: Ctx<'_>,
        req: MigrationRequest,
        mut why: Failure,
        tally: DiscardTally,
        out: &mut Output,
    ) {
        let refused = why.class == ErrorClass::DestinationRefused;
        let cleared =
            refused && tally.cleared_something() && !self.forgiven.contains(&req.destination);
        if cleared {
            why.message = format!(
                "{}; the clean-up removed {} an earlier attempt of this VM had left there, so this refusal does not count",
                why.message,
                plural(tally.removed, "leftover", "leftovers"),
            );
        }
        let refused_by = refused.then(|| req.destination.clone());
        let before = out.events.len();
        self.after_failure(ctx, why, refused_by, cleared, out);
        if self.phase().is_final() && (!tally.kept.is_empty() || tally.unlisted.is_some()) {
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
                    vm: self.id.clone(),
                    attempt: req.attempt,
                    host: req.destination.clone(),
                    what,
                    why,
                },
            );
        }
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
    #[allow(clippy::too_many_arguments)]
    fn settle_interrupted(
        &mut self,
        ctx: Ctx<'_>,
        req: MigrationRequest,
        why: Failure,
        tries: u32,
        abort_rounds: u32,
        loc: Location,
        out: &mut Output,
    ) {
        let dst_copy = loc.on_destination.as_ref().filter(|v| v.power.is_live());
        match (dst_copy, loc.running_migration) {
            (Some(v), _) if !v.activity.is_migration() => self.verify(req, 0, out),
            (Some(_), _) if tries + 1 < OBSERVE_RETRIES => {
                let state = MoveState::Locating {
                    req,
                    why,
                    tries: tries + 1,
                    abort_rounds,
                    abort_wait: None,
                };
                self.relocate_later(ctx, state);
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
                self.finish(ctx.now, MoveState::Unmigratable { reason }, out);
            }
        }
    }

    /// Removes the next of a failed attempt's leftovers on the destination, or, when none is
    /// left, settles the attempt ([`VmMove::discarded`]).
    fn discard_next(
        &mut self,
        ctx: Ctx<'_>,
        req: MigrationRequest,
        why: Failure,
        mut todo: VecDeque<Leftover>,
        tally: DiscardTally,
        out: &mut Output,
    ) {
        if self.next_leftover(&req, LeftoverContext::AfterFailedAttempt, &mut todo, out) {
            self.state = MoveState::Discarding {
                req,
                why,
                todo: Some(todo),
                tally,
            };
        } else {
            self.discarded(ctx, req, why, tally, out);
        }
    }

    fn record_failure(&mut self, req: &MigrationRequest, why: &Failure, out: &mut Output) {
        // AttemptFailed is announced once the hosts were looked at and what follows (retry
        // when, or give up) is known; the failure itself is said now (the look can take a
        // minute when a host does not answer).
        // A failure this process saw itself: the attempt failed on its own, and counts.
        if self.interrupted == Some(req.attempt) {
            self.interrupted = None;
        }
        self.last_error = Some(why.message.clone());
        out.events.push(EventKind::MigrationFailed {
            vm: self.id.clone(),
            attempt: req.attempt,
            source: req.source.clone(),
            destination: req.destination.clone(),
            error: why.message.clone(),
        });
    }

    /// Announces the outcome of one leftover removal (removed, or kept with the reason).
    fn report_removal(&self, l: Leftover, res: Result<(), Failure>, out: &mut Output) {
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

    fn next_leftover(
        &mut self,
        req: &MigrationRequest,
        ctx_kind: LeftoverContext,
        todo: &mut VecDeque<Leftover>,
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

/// `1 leftover`, `2 leftovers`.
fn plural(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// How often a started migration is looked at until it shows as running: every progress interval
/// (a migration that ends before its first status read is not left waiting for a whole
/// `job_start_timeout`), never less often than the seed's `job_start_timeout`.
fn confirm_every(s: &Settings) -> Duration {
    s.progress_interval
        .min(s.job_start_timeout)
        .max(Duration::from_millis(1))
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

/// The transition table. On `Err`, the VM is unchanged.
pub fn step(vm: &mut VmMove, ctx: Ctx<'_>, ev: VmEvent) -> Result<Output, Illegal> {
    let mut out = Output::default();
    let now = ctx.now;
    let s = ctx.settings;
    let phase = vm.phase();
    let illegal = |event: &VmEvent| Illegal {
        phase,
        event: event.name(),
    };
    let state = std::mem::replace(&mut vm.state, MoveState::Queued);
    // Each arm either sets vm.state (directly or through a helper) or restores `state`.
    match (state, ev) {
        // ---------------- Queued ----------------
        (MoveState::Queued, VmEvent::Assessed(a)) => match a {
            Assessment::Ready(mode) => {
                vm.mode = mode;
                vm.held_since = None;
                vm.timer = None;
                // Ready: the scheduler decides when it starts.
                vm.wait = None;
                vm.state = MoveState::Queued;
            }
            Assessment::Wait { reason, held } => {
                if held {
                    let since = *vm.held_since.get_or_insert(now);
                    let until = since + s.backup_threshold;
                    if now >= until {
                        let r = match reason {
                            WaitReason::BackingUp { .. } => Reason::BackupTooLong {
                                threshold_secs: s.backup_threshold.as_secs(),
                            },
                            other => Reason::BadStatus(format!(
                                "{other} for longer than {}",
                                crate::spec::dur::format_duration(s.backup_threshold)
                            )),
                        };
                        vm.finish(now, MoveState::Unmigratable { reason: r }, &mut out);
                        return Ok(out);
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
                vm.state = MoveState::Queued;
            }
            Assessment::AlreadyThere(d) => {
                vm.finish(now, MoveState::Moved { destination: d }, &mut out)
            }
            Assessment::Unmigratable(r) => {
                vm.finish(now, MoveState::Unmigratable { reason: r }, &mut out)
            }
        },
        (
            MoveState::Queued,
            VmEvent::Start {
                destination,
                mode,
                layout,
                run_id,
            },
        ) => {
            vm.attempts += 1;
            vm.mode = mode;
            vm.wait = None;
            vm.timer = None;
            vm.progress = None;
            vm.started_at = Some(now);
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
            vm.state = MoveState::Starting { req };
        }
        (MoveState::Queued, VmEvent::Timer) => {
            // The hold threshold passed with no newer observation.
            match (vm.held_since, &vm.wait) {
                (Some(since), Some(w)) if now >= since + s.backup_threshold => {
                    let r = match w {
                        WaitReason::BackingUp { .. } => Reason::BackupTooLong {
                            threshold_secs: s.backup_threshold.as_secs(),
                        },
                        other => Reason::BadStatus(format!(
                            "{other} for longer than {}",
                            crate::spec::dur::format_duration(s.backup_threshold)
                        )),
                    };
                    vm.finish(now, MoveState::Unmigratable { reason: r }, &mut out);
                }
                // Self-loop: a timer that no longer applies (the hold ended).
                _ => {
                    vm.timer = None;
                    vm.state = MoveState::Queued;
                }
            }
        }
        (MoveState::Queued, VmEvent::Stop { reason, .. }) => {
            vm.finish(now, MoveState::Cancelled { reason }, &mut out)
        }

        // ---------------- Starting ----------------
        (MoveState::Starting { req }, VmEvent::Started(Ok(handle))) => {
            out.commands.push(Command::PollMigration {
                request: req.clone(),
                handle: handle.clone(),
            });
            vm.timer = Some(now + confirm_every(s));
            vm.state = MoveState::Confirming {
                req,
                handle,
                checks: 0,
            };
            if ctx.abort_running {
                if let MoveState::Confirming { req, handle, .. } =
                    std::mem::replace(&mut vm.state, MoveState::Queued)
                {
                    let why = Failure::new(ErrorClass::Transient, "aborted: the run was stopped");
                    vm.abort(ctx, req, handle, why, 0, &mut out);
                }
            }
        }
        (MoveState::Starting { req }, VmEvent::Started(Err(why))) => {
            vm.record_failure(&req, &why, &mut out);
            vm.locate(req, why, 0, None, &mut out);
        }
        // Self-loop: a stop while the start call is out; handled when its answer arrives.
        (st @ MoveState::Starting { .. }, VmEvent::Stop { .. }) => vm.state = st,

        // ---------------- Confirming ----------------
        (
            MoveState::Confirming {
                req,
                handle,
                checks,
            },
            VmEvent::Status(res),
        ) => match res {
            Ok(MigrationStatus::Running(p)) => {
                vm.progress = Some(p);
                vm.start_migrating(ctx, req, handle, &mut out);
            }
            Ok(MigrationStatus::Completed) => vm.verify(req, 0, &mut out),
            Ok(MigrationStatus::Failed(why)) => {
                vm.record_failure(&req, &why, &mut out);
                vm.locate(req, why, 0, None, &mut out);
            }
            // Self-loop: not running yet, or the status could not be read; the timer decides.
            Ok(MigrationStatus::Pending) | Err(_) => {
                vm.state = MoveState::Confirming {
                    req,
                    handle,
                    checks,
                }
            }
        },
        (
            MoveState::Confirming {
                req,
                handle,
                checks,
            },
            VmEvent::Timer,
        ) => {
            let checks = checks + 1;
            if checks >= confirm_checks(s) {
                out.events.push(EventKind::WatchdogFired {
                    vm: vm.id.clone(),
                    attempt: req.attempt,
                    which: "start".into(),
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
                vm.abort(ctx, req, handle, why, 0, &mut out);
            } else {
                out.commands.push(Command::PollMigration {
                    request: req.clone(),
                    handle: handle.clone(),
                });
                vm.timer = Some(now + confirm_every(s));
                vm.state = MoveState::Confirming {
                    req,
                    handle,
                    checks,
                };
            }
        }
        (
            MoveState::Confirming {
                req,
                handle,
                checks,
            },
            VmEvent::Stop { abort_running, .. },
        ) => {
            if abort_running {
                let why = Failure::new(ErrorClass::Transient, "aborted: the run was stopped");
                vm.abort(ctx, req, handle, why, 0, &mut out);
            } else {
                // Self-loop: a graceful stop lets running migrations finish.
                vm.state = MoveState::Confirming {
                    req,
                    handle,
                    checks,
                };
            }
        }

        // ---------------- Migrating ----------------
        (MoveState::Migrating(mut m), VmEvent::Status(res)) => {
            m.polling = false;
            match res {
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
                        m.last_progress_at = now;
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
                    vm.state = MoveState::Migrating(m);
                }
                Ok(MigrationStatus::Completed) => {
                    let req = m.req;
                    vm.verify(req, 0, &mut out);
                }
                Ok(MigrationStatus::Failed(why)) => {
                    vm.record_failure(&m.req, &why, &mut out);
                    vm.locate(m.req, why, 0, None, &mut out);
                }
                // Self-loop: Pending after running is not news; an unreadable status is left to the
                // stall watchdog.
                Ok(MigrationStatus::Pending) | Err(_) => vm.state = MoveState::Migrating(m),
            }
        }
        (MoveState::Migrating(mut m), VmEvent::Timer) => {
            let stall_at = m.last_progress_at + s.stall_timeout;
            let fired = if now >= stall_at {
                Some(("stall", s.stall_action))
            } else if now >= m.deadline {
                Some(("completion", s.completion_action))
            } else {
                None
            };
            if let Some((which, action)) = fired {
                out.events.push(EventKind::WatchdogFired {
                    vm: vm.id.clone(),
                    attempt: m.req.attempt,
                    which: which.into(),
                });
                let aid = match m.escalations {
                    0 => Some(ConvergenceAid::AutoConverge),
                    1 => Some(ConvergenceAid::PostCopy),
                    _ => None,
                };
                match (action, aid) {
                    (WatchdogAction::Escalate, Some(aid)) if !m.converging => {
                        out.commands.push(Command::Converge {
                            request: m.req.clone(),
                            handle: m.handle.clone(),
                            aid,
                        });
                        m.converging = true;
                        m.escalations += 1;
                        // Give the aid a full stall timeout (and the completion a new one) to work.
                        m.last_progress_at = now;
                        m.deadline = m.deadline.max(now + s.stall_timeout);
                    }
                    _ => {
                        let why = Failure::new(
                            ErrorClass::Transient,
                            if which == "stall" {
                                format!(
                                    "stalled: no progress for {}",
                                    crate::spec::dur::format_duration(s.stall_timeout)
                                )
                            } else {
                                "did not complete within its completion timeout".to_string()
                            },
                        );
                        vm.record_failure(&m.req, &why, &mut out);
                        let (req, handle) = (m.req, m.handle);
                        vm.abort(ctx, req, handle, why, 0, &mut out);
                        return Ok(out);
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
            vm.timer = Some(
                m.next_poll
                    .min(m.deadline.max(now))
                    .min(m.last_progress_at + s.stall_timeout)
                    .max(now + Duration::from_millis(1)),
            );
            vm.state = MoveState::Migrating(m);
        }
        (MoveState::Migrating(mut m), VmEvent::Converged(res)) => {
            m.converging = false;
            match res {
                Ok(true) => {
                    out.events.push(EventKind::Escalated {
                        vm: vm.id.clone(),
                        attempt: m.req.attempt,
                        aid: if m.escalations <= 1 {
                            ConvergenceAid::AutoConverge
                        } else {
                            ConvergenceAid::PostCopy
                        },
                    });
                    vm.state = MoveState::Migrating(m);
                }
                // No aid (or it failed): try the next step on the next firing, or abort.
                Ok(false) | Err(_) => {
                    if m.escalations >= 2 {
                        let why = Failure::new(
                            ErrorClass::Transient,
                            "did not converge and no convergence aid helped",
                        );
                        vm.record_failure(&m.req, &why, &mut out);
                        let (req, handle) = (m.req, m.handle);
                        vm.abort(ctx, req, handle, why, 0, &mut out);
                    } else {
                        // Make the stall watchdog fire at once: it tries the next aid, or aborts.
                        m.last_progress_at =
                            Time(now.0.saturating_sub(s.stall_timeout.as_millis() as u64));
                        vm.timer = Some(now);
                        vm.state = MoveState::Migrating(m);
                    }
                }
            }
        }
        (MoveState::Migrating(m), VmEvent::Stop { abort_running, .. }) => {
            if abort_running {
                let why = Failure::new(ErrorClass::Transient, "aborted: the run was stopped");
                let (req, handle) = (m.req, m.handle);
                vm.abort(ctx, req, handle, why, 0, &mut out);
            } else {
                // Self-loop: a graceful stop lets running migrations finish.
                vm.state = MoveState::Migrating(m);
            }
        }

        // ---------------- Aborting ----------------
        (
            MoveState::Aborting {
                req, why, rounds, ..
            },
            VmEvent::AbortDone(res),
        ) => {
            // Either way the hosts are looked at now. What is waited for depends on the answer:
            // an accepted abort (or one whose outcome is unknown) may still take effect, so a job
            // found running is given ABORT_PATIENCE looks to end; an abort the driver definitely
            // refused did not happen: a job found running is aborted again (the next round) at
            // once when the refusal was for good, after one more look (REFUSED_ABORT_PATIENCE)
            // when it was for a passing reason; a job that is gone needs no abort.
            let abort_wait = match &res {
                Ok(()) => Some((0, ABORT_PATIENCE)),
                Err(e) if e.class == ErrorClass::Indeterminate => Some((0, ABORT_PATIENCE)),
                Err(e) if e.class == ErrorClass::Transient => Some((0, REFUSED_ABORT_PATIENCE)),
                Err(_) => None,
            };
            if let Err(e) = res {
                vm.call_failed(
                    &req,
                    "abort",
                    &e.message,
                    (rounds, ABORT_RETRIES),
                    None,
                    &mut out,
                );
            }
            vm.locate(req, why, rounds, abort_wait, &mut out);
        }
        (
            MoveState::Aborting {
                req, why, rounds, ..
            },
            VmEvent::Timer,
        ) => {
            // The abort call never answered (it may yet take effect): look at the hosts anyway.
            vm.locate(req, why, rounds, Some((0, ABORT_PATIENCE)), &mut out);
        }
        // Self-loop: status reports and convergence answers that crossed the abort; the Locate that
        // follows decides from what the hosts show.
        (
            st @ MoveState::Aborting { .. },
            VmEvent::Status(_) | VmEvent::Converged(_) | VmEvent::Stop { .. },
        ) => vm.state = st,

        // ---------------- Locating ----------------
        (
            MoveState::Locating {
                req,
                why,
                tries,
                abort_rounds,
                abort_wait,
            },
            VmEvent::Located(res),
        ) => match res {
            Err(e) => {
                if tries + 1 >= OBSERVE_RETRIES {
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
                    );
                } else {
                    vm.call_failed(
                        &req,
                        "locate",
                        &e.message,
                        (tries + 1, OBSERVE_RETRIES),
                        Some(now + s.recheck_interval),
                        &mut out,
                    );
                    vm.relocate_later(
                        ctx,
                        MoveState::Locating {
                            req,
                            why,
                            tries: tries + 1,
                            abort_rounds,
                            abort_wait,
                        },
                    );
                }
            }
            Ok(loc) => {
                let live = req.mode == MigrationMode::Live;
                let src_running = loc.on_source.as_ref().is_some_and(|v| v.power.is_live());
                let dst_running = loc
                    .on_destination
                    .as_ref()
                    .is_some_and(|v| v.power.is_live() && !v.activity.is_migration());
                let dst_arrived = loc.on_destination.as_ref().is_some_and(|v| {
                    !v.activity.is_migration() && if live { v.power.is_live() } else { true }
                });
                let src_interrupted = loc
                    .on_source
                    .as_ref()
                    .is_some_and(|v| v.activity == Activity::MigrationInterrupted);
                if src_interrupted && live {
                    // Before the job branch: an interrupted migration has no job to re-adopt.
                    vm.settle_interrupted(ctx, req, why, tries, abort_rounds, loc, &mut out);
                } else if let Some(handle) = loc.running_migration {
                    let we_gave_up = abort_rounds > 0 || ctx.abort_running;
                    if !we_gave_up && why.class == ErrorClass::Indeterminate {
                        // The start did happen: re-adopt the migration.
                        vm.start_migrating(ctx, req, handle, &mut out);
                    } else if let Some((looks, patience)) =
                        abort_wait.filter(|&(l, patience)| l + 1 < patience)
                    {
                        // The abort was accepted (or its answer is unknown) and the job still
                        // runs: give it time to end before asking again (each ask is a round).
                        // Failed looks in between do not count here (they have `tries`).
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
                        );
                    } else if abort_rounds < ABORT_RETRIES {
                        // No abort yet, its patience is spent, or the last one was refused:
                        // ask (again) now.
                        vm.abort(ctx, req, handle, why, abort_rounds, &mut out);
                    } else {
                        vm.left_unchecked(
                            &req,
                            "its migration job was still running, so nothing was removed".into(),
                            &mut out,
                        );
                        let reason = Reason::Permanent(format!(
                            "its migration job keeps running after {ABORT_RETRIES} aborts (each accepted one given {ABORT_PATIENCE} looks to end); left for a person"
                        ));
                        vm.finish(now, MoveState::Unmigratable { reason }, &mut out);
                    }
                } else if src_running && dst_running {
                    vm.finish(
                        now,
                        MoveState::Unmigratable {
                            reason: Reason::RunningOnBoth,
                        },
                        &mut out,
                    );
                } else if dst_arrived && !src_running {
                    // It arrived despite the error: prove it.
                    vm.verify(req, 0, &mut out);
                } else if loc.on_source.is_some() {
                    // Back on the source: what the attempt left on the destination goes.
                    out.commands.push(Command::ListLeftovers {
                        request: req.clone(),
                        context: LeftoverContext::AfterFailedAttempt,
                    });
                    vm.timer = None;
                    vm.state = MoveState::Discarding {
                        req,
                        why,
                        todo: None,
                        tally: DiscardTally::default(),
                    };
                } else if why.class == ErrorClass::Permanent {
                    vm.left_unchecked(
                        &req,
                        "the VM was on neither host, so nothing was removed".into(),
                        &mut out,
                    );
                    vm.finish(
                        now,
                        MoveState::Unmigratable {
                            reason: Reason::Permanent(why.message),
                        },
                        &mut out,
                    );
                } else {
                    vm.left_unchecked(
                        &req,
                        "the VM was on neither host, so nothing was removed".into(),
                        &mut out,
                    );
                    vm.finish(
                        now,
                        MoveState::Unmigratable {
                            reason: Reason::LostAfterAttempt,
                        },
                        &mut out,
                    );
                }
            }
        },
        (
            MoveState::Locating {
                req,
                why,
                tries,
                abort_rounds,
                abort_wait,
            },
            VmEvent::Timer,
        ) => {
            out.commands.push(Command::Locate {
                request: req.clone(),
            });
            vm.timer = None;
            vm.state = MoveState::Locating {
                req,
                why,
                tries,
                abort_rounds,
                abort_wait,
            };
        }
        // Self-loop: late status/abort/convergence answers; the Locate answer decides.
        (
            st @ MoveState::Locating { .. },
            VmEvent::Status(_)
            | VmEvent::AbortDone(_)
            | VmEvent::Converged(_)
            | VmEvent::Stop { .. },
        ) => vm.state = st,

        // ---------------- Discarding ----------------
        (
            MoveState::Discarding {
                req,
                why,
                todo: None,
                mut tally,
            },
            VmEvent::Leftovers(res),
        ) => {
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
            vm.discard_next(ctx, req, why, todo, tally, &mut out);
        }
        (
            MoveState::Discarding {
                req,
                why,
                todo: Some(mut todo),
                mut tally,
            },
            VmEvent::LeftoverRemoved(l, res),
        ) if todo.front() == Some(&l) => {
            todo.pop_front();
            match &res {
                Ok(()) => tally.removed += 1,
                Err(e) => tally.kept.push((l.what.clone(), e.message.clone())),
            }
            vm.report_removal(l, res, &mut out);
            vm.discard_next(ctx, req, why, todo, tally, &mut out);
        }
        // Self-loop: late answers of the failed attempt; a stop takes effect when discarding ends.
        (
            st @ MoveState::Discarding { .. },
            VmEvent::Status(_)
            | VmEvent::AbortDone(_)
            | VmEvent::Converged(_)
            | VmEvent::Stop { .. },
        ) => vm.state = st,

        // ---------------- BackingOff ----------------
        (MoveState::BackingOff { until }, VmEvent::Timer) => {
            if now >= until {
                vm.timer = None;
                vm.state = MoveState::Queued;
            } else {
                // Self-loop: an early timer (should not happen); wait on.
                vm.timer = Some(until);
                vm.state = MoveState::BackingOff { until };
            }
        }
        (MoveState::BackingOff { .. }, VmEvent::Stop { reason, .. }) => {
            vm.finish(now, MoveState::Cancelled { reason }, &mut out)
        }
        // Self-loop: late answers of the failed attempt.
        (
            st @ MoveState::BackingOff { .. },
            VmEvent::Status(_) | VmEvent::AbortDone(_) | VmEvent::Converged(_),
        ) => vm.state = st,

        // ---------------- Verifying ----------------
        (MoveState::Verifying { req, tries }, VmEvent::Verified(res)) => {
            // An answer that disproves counts against VERIFY_RETRIES (short waits: a VM that just
            // arrived may need a moment to show as running); a host that does not answer is
            // waited for like a Locate (OBSERVE_RETRIES x recheck_interval). Either way, nothing
            // is touched until the proof comes.
            let unanswered = matches!(&res, Err(e) if e.class != ErrorClass::Permanent);
            let why_not = match res {
                Ok(v) if v.is_proof() => None,
                Ok(v) => Some(if v.detail.is_empty() {
                    "not all of it is on the destination".to_string()
                } else {
                    v.detail
                }),
                Err(e) => Some(e.message),
            };
            let limit = if unanswered {
                OBSERVE_RETRIES
            } else {
                VERIFY_RETRIES
            };
            let wait = if unanswered {
                s.recheck_interval
            } else {
                s.recheck_interval
                    .min(s.progress_interval.max(Duration::from_secs(1)))
            };
            match why_not {
                None => {
                    vm.verified = true;
                    out.events.push(EventKind::Verified {
                        vm: vm.id.clone(),
                        destination: req.destination.clone(),
                    });
                    if s.cleanup {
                        out.commands.push(Command::ListLeftovers {
                            request: req.clone(),
                            context: LeftoverContext::AfterSuccess,
                        });
                        vm.timer = None;
                        vm.state = MoveState::CleaningUp { req, todo: None };
                    } else {
                        vm.finish(
                            now,
                            MoveState::Moved {
                                destination: req.destination,
                            },
                            &mut out,
                        );
                    }
                }
                Some(msg) if tries + 1 >= limit => {
                    vm.last_error = Some(msg.clone());
                    vm.finish(
                        now,
                        MoveState::Unmigratable {
                            reason: Reason::NotVerified(msg),
                        },
                        &mut out,
                    );
                }
                Some(msg) => {
                    if unanswered {
                        vm.call_failed(
                            &req,
                            "verify",
                            &msg,
                            (tries + 1, limit),
                            Some(now + wait),
                            &mut out,
                        );
                    }
                    vm.last_error = Some(msg);
                    vm.timer = Some(now + wait);
                    vm.state = MoveState::Verifying {
                        req,
                        tries: tries + 1,
                    };
                }
            }
        }
        (MoveState::Verifying { req, tries }, VmEvent::Timer) => {
            out.commands.push(Command::Verify {
                request: req.clone(),
            });
            vm.timer = None;
            vm.state = MoveState::Verifying { req, tries };
        }
        // Self-loop: late answers; a stop does not interrupt proving a VM that already moved.
        (
            st @ MoveState::Verifying { .. },
            VmEvent::Status(_)
            | VmEvent::AbortDone(_)
            | VmEvent::Converged(_)
            | VmEvent::Stop { .. },
        ) => vm.state = st,

        // ---------------- CleaningUp ----------------
        (MoveState::CleaningUp { req, todo: None }, VmEvent::Leftovers(res)) => {
            let mut todo: VecDeque<Leftover> = match res {
                Ok(v) => v.into_iter().collect(),
                Err(e) => {
                    out.events.push(EventKind::LeftoverKept {
                        vm: vm.id.clone(),
                        host: req.source.clone(),
                        what: "(could not list leftovers)".into(),
                        error: e.message,
                    });
                    VecDeque::new()
                }
            };
            if vm.next_leftover(&req, LeftoverContext::AfterSuccess, &mut todo, &mut out) {
                vm.state = MoveState::CleaningUp {
                    req,
                    todo: Some(todo),
                };
            } else {
                vm.finish(
                    now,
                    MoveState::Moved {
                        destination: req.destination,
                    },
                    &mut out,
                );
            }
        }
        (
            MoveState::CleaningUp {
                req,
                todo: Some(mut todo),
            },
            VmEvent::LeftoverRemoved(l, res),
        ) if todo.front() == Some(&l) => {
            todo.pop_front();
            vm.report_removal(l, res, &mut out);
            if vm.next_leftover(&req, LeftoverContext::AfterSuccess, &mut todo, &mut out) {
                vm.state = MoveState::CleaningUp {
                    req,
                    todo: Some(todo),
                };
            } else {
                vm.finish(
                    now,
                    MoveState::Moved {
                        destination: req.destination,
                    },
                    &mut out,
                );
            }
        }
        // Self-loop: late answers; a stop does not interrupt cleaning up after a proven move.
        (
            st @ MoveState::CleaningUp { .. },
            VmEvent::Status(_)
            | VmEvent::AbortDone(_)
            | VmEvent::Converged(_)
            | VmEvent::Stop { .. },
        ) => vm.state = st,

        // ---------------- Final ----------------
        // Self-loop: anything reaching a finished VM is stale (late answers, observations, stops).
        (
            st @ (MoveState::Moved { .. }
            | MoveState::Unmigratable { .. }
            | MoveState::Cancelled { .. }),
            ev,
        ) => {
            vm.state = st;
            if matches!(ev, VmEvent::Start { .. }) {
                return Err(illegal(&ev));
            }
        }

        // ---------------- Everything else is illegal ----------------
        (st, ev) => {
            vm.state = st;
            return Err(illegal(&ev));
        }
    }
    Ok(out)
}
