//! The types of the move state machine: the states, the events, what a transition produces,
//! and the VM whose move it is.

#[cfg(doc)]
use super::limits::{ABORT_PATIENCE, OBSERVE_RETRIES, REFUSED_ABORT_PATIENCE};
use crate::event::{EventKind, Phase, Reason, WaitReason, Watchdog};
use crate::io::Command;
use crate::model::{
    ConvergenceAid, ErrorClass, Failure, Finding, HostId, Leftover, Location, MigrationHandle,
    MigrationMode, MigrationRequest, MigrationStatus, PathLayout, Preflight, Progress,
    Verification, VmId,
};
use crate::policy;
use crate::spec::Settings;
use crate::time::Time;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use thin_vec::ThinVec;

// `MoveState` fits in 128 bytes, checked as the crate builds. Each step moves the state out of
// the VM, through its transition and back; within 128 bytes those moves are copied inline, past
// it each is a call to `memcpy` (seen in the profile of the 100,000-VM scale row: about 8 % of
// its time when the state was 136 bytes).
const _: () = assert!(std::mem::size_of::<MoveState>() <= 128);

/// The state of one VM's move. The data each phase needs lives in its variant.
#[derive(Debug, Clone, PartialEq)]
pub enum MoveState {
    /// Waiting to be started (see [`VmMove::wait`]).
    Queued,
    /// Start asked.
    Starting { req: Arc<MigrationRequest> },
    /// Accepted; waiting to see it running.
    Confirming {
        req: Arc<MigrationRequest>,
        handle: MigrationHandle,
        /// Checks made so far.
        checks: u32,
    },
    /// Running, watched. Kept in the state, not boxed: every progress poll reads it, and at
    /// 100,000 VMs a box of its own was a cache miss per poll apart from the VM's entry.
    Migrating(Migrating),
    /// Abort asked.
    Aborting {
        req: Arc<MigrationRequest>,
        handle: MigrationHandle,
        /// Why the attempt is being given up.
        why: Failure,
        /// Aborts asked so far in this attempt.
        rounds: u32,
    },
    /// Looking at the hosts.
    Locating {
        req: Arc<MigrationRequest>,
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
        req: Arc<MigrationRequest>,
        /// The attempt's failure.
        why: Failure,
        /// Leftovers still to remove (`None` until listed).
        todo: Option<VecDeque<Leftover>>,
        /// What was removed and what was not, so far.
        tally: DiscardTally,
    },
    /// Waiting before the next attempt.
    BackingOff { until: Time },
    /// Proving the VM arrived.
    Verifying {
        req: Arc<MigrationRequest>,
        /// Failed or inconclusive verifications so far.
        tries: u32,
    },
    /// Removing what the move left on the source.
    CleaningUp {
        req: Arc<MigrationRequest>,
        /// Leftovers still to remove (`None` until listed).
        todo: Option<VecDeque<Leftover>>,
    },
    /// Done.
    Moved {
        /// Where it is.
        destination: HostId,
    },
    /// Given up.
    Unmigratable { reason: Reason },
    /// Not moved: the run stopped.
    Cancelled { reason: Reason },
}

/// What the clean-up of a failed attempt's destination did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscardTally {
    pub removed: u32,
    /// Leftovers that could not be removed (what, and the error).
    pub kept: Vec<(String, String)>,
    /// Why the leftovers could not be listed, if they could not.
    pub unlisted: Option<String>,
}

impl DiscardTally {
    /// Everything listed was removed, and something was.
    pub(super) fn cleared_something(&self) -> bool {
        self.removed > 0 && self.kept.is_empty() && self.unlisted.is_none()
    }
}

/// The data of a running migration.
#[derive(Debug, Clone, PartialEq)]
pub struct Migrating {
    pub req: Arc<MigrationRequest>,
    pub handle: MigrationHandle,
    /// When it was seen running.
    pub since: Time,
    /// Last time progress was made.
    pub last_progress_at: Time,
    /// Most bytes done seen.
    pub best_done: u64,
    /// Fewest bytes remaining seen (u64::MAX until known).
    pub best_remaining: u64,
    pub next_poll: Time,
    /// A poll is outstanding.
    pub polling: bool,
    pub deadline: Time,
    /// Convergence aids applied so far (escalation step).
    pub escalations: u32,
    /// A convergence request is outstanding.
    pub converging: bool,
    /// Post-copy was applied: the guest runs on the destination and fetches the rest of its
    /// memory from the source. Such a migration cannot be undone (QEMU's post-copy docs: "a
    /// failure of either side causes the guest to be lost"; libvirt's own tests, tp-libvirt
    /// `migration/async_job/abort_migration_with_wrong_api_flag`: a post-copy migration cannot
    /// be aborted by `virsh domjobabort`), so the watchdogs no longer abort it: it is watched
    /// to its end.
    pub post_copy: bool,
    /// The progress ([`Migrating::best_done`]) when post-copy, the last aid, was last refused for
    /// a passing reason. QEMU refuses it until its own migration has started, and libvirt starts
    /// that only once the disks are mirrored: a watchdog that fires during the disk copy finds
    /// post-copy refused. It is asked again at the next firing if the migration has progressed
    /// since the refusal; refused again without progress, the attempt is aborted.
    pub post_copy_refused_at: Option<u64>,
    /// The watchdog that asked the aid in flight or last asked ([`Migrating::converging`]).
    pub aid_asked_by: Option<Watchdog>,
    /// An aid was not applied: this watchdog (the one that asked it) fires again at once, to
    /// ask the next aid or, with none left, to abort. Before, the stall watchdog was made to
    /// fire instead, with its own action: under the default `stall_action = "abort"` a
    /// completion watchdog's escalation ended at its first aid not applied, said as "stalled:
    /// no progress" of a migration that progressed (seen on the lab).
    pub refire: Option<Watchdog>,
    /// Each convergence aid the host answered in this attempt, in order, those answered before
    /// a resume included (the journal's, [`AidsAsked`]): for the failure that ends it when none
    /// helped, which says what was applied and what the host did not apply (a user learns there
    /// which settings would have given the migration a chance).
    /// A [`ThinVec`] (one word; empty in nearly every move) keeps [`MoveState`] within 128
    /// bytes (checked where it is declared).
    pub aid_answers: ThinVec<(ConvergenceAid, AidAnswer)>,
}

/// How the host answered a convergence aid ([`Migrating::aid_answers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AidAnswer {
    Applied,
    /// The host does not apply it (not armed by its settings, a raise at its cap, a hypervisor
    /// without it).
    NotApplied,
    /// The call failed, with its message.
    Failed(String),
    /// Asked before vmove stopped, with no answer in its journal: it may have been applied.
    Unanswered,
}

impl AidAnswer {
    /// The answer a driver's result says: applied (`Ok(true)`), not applied (`Ok(false)`), or
    /// failed with the error's message. The one reading of a `Converged` answer, for the
    /// running core and for the journal's rebuild of an attempt in flight.
    pub fn of(result: &Result<bool, Failure>) -> Self {
        match result {
            Ok(true) => AidAnswer::Applied,
            Ok(false) => AidAnswer::NotApplied,
            Err(f) => AidAnswer::Failed(f.message.clone()),
        }
    }
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
    pub fn request(&self) -> Option<&Arc<MigrationRequest>> {
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
    /// The scheduler asks the pre-flight check of its next attempt toward `destination`.
    Preflight {
        destination: HostId,
        mode: MigrationMode,
        layout: PathLayout,
        run_id: std::sync::Arc<str>,
    },
    /// Answer to Preflight.
    Preflighted {
        destination: HostId,
        result: Result<Preflight, Failure>,
    },
    /// The scheduler starts it toward `destination`.
    Start {
        destination: HostId,
        mode: MigrationMode,
        layout: PathLayout,
        run_id: std::sync::Arc<str>,
    },
    /// Answer to StartMigration.
    Started(Result<MigrationHandle, Failure>),
    /// The start was not carried out: the cross-process slot ledger found a host full
    /// (`Input::StartDeferred`). Not a failure of the VM; the attempt does not count.
    Deferred,
    /// A status report (answer or push).
    Status(Result<MigrationStatus, Failure>),
    /// Answer to AbortMigration.
    AbortDone(Result<(), Failure>),
    /// Answer to Converge.
    Converged(Result<bool, Failure>),
    /// Answer to Locate.
    Located(Result<Box<Location>, Failure>),
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
            VmEvent::Preflight { .. } => "preflight",
            VmEvent::Preflighted { .. } => "preflighted",
            VmEvent::Start { .. } => "start",
            VmEvent::Started(_) => "migration_started",
            VmEvent::Deferred => "start_deferred",
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
    pub phase: Phase,
    /// The event's name.
    pub event: &'static str,
}

/// One VM's move: identity, figures, and its state.
///
/// Laid out in the order written (`repr(C)`), the fields the engine reads most often first, in
/// the fewest cache lines: of every VM a host's listing shows, those that tell whether assessing
/// it again would change anything (up to the state's kind, then the pre-flight check in flight
/// and its wait); of a running migration at each progress poll and watchdog check (every
/// `progress_interval`), `stopped`, its timer, the state, `progress` and `id`, side by side. At
/// 100,000 VMs the migrations polled in turn outgrow a core's cache, and each line a poll reads
/// is a miss: the state, `progress` and `id` sat apart, after the 160 bytes of `preflight` (9
/// lines of an entry that starts on a line, now 5, in 248 bytes; `stopped` is boxed for that:
/// only `vmove abort RUN VM` sets it).
#[derive(Debug, Clone)]
#[repr(C)]
pub struct VmMove {
    /// Mode as last assessed.
    pub mode: MigrationMode,
    /// Since when it is held by a backup or job.
    pub held_since: Option<Time>,
    /// Why it waits (queued only).
    pub wait: Option<WaitReason>,
    /// An operator stopped this VM's move alone (`vmove abort RUN VM` while it ran): the
    /// reason it ends with. Its transitions see the run as stopping with abort, whatever the
    /// rest of the run does, so the attempt is aborted and not retried.
    pub stopped: Option<Box<Reason>>,
    pub timer: Option<Time>,
    pub state: MoveState,
    pub progress: Option<Progress>,
    pub id: VmId,
    /// What the pre-flight checks of its next attempt answered (forgotten when an attempt
    /// fails, so that the attempt after it asks again).
    pub preflight: PreflightMemo,
    pub name: String,
    /// Stable key for per-VM randomness.
    pub key: u64,
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
    /// Attempts started (attempt numbers never repeat).
    pub attempts: u32,
    /// Attempts that do not count toward `max_attempts`: each was in flight when vmove itself
    /// stopped (a crash, a kill) and turned out not to have moved the VM (`AttemptFailed` with
    /// `interrupted`). vmove's own crash is not the VM's failure.
    pub uncounted: u32,
    /// The attempt that was in flight when vmove stopped, set on resume
    /// ([`crate::Core::resume`]) until that attempt ends, also when its job was re-adopted and
    /// then failed (libvirt's client-driven job cannot finish without the client that died). If
    /// it ends with the VM back on its source, it is one of [`VmMove::uncounted`].
    pub interrupted: Option<u32>,
    pub last_error: Option<String>,
    /// When the current attempt started.
    pub started_at: Option<Time>,
    /// When it reached a final phase.
    pub finished_at: Option<Time>,
    /// The last attempt's failure, when it was the driver's (a refusal of the start, the
    /// migration's own failure), not vmove's abort nor vmove's own crash: (destination, class,
    /// message). The same failure again on the same route does not burn another attempt there.
    pub last_failure: Option<(HostId, ErrorClass, String)>,
    /// The attempt vmove asked to abort (a watchdog, a stop): its failure is vmove's decision.
    pub aborted_attempt: Option<u32>,
    /// Whether this VM's source copy was proven gone and the destination copy proven present.
    pub verified: bool,
    /// The convergence aids a journal recorded for the attempt in flight when vmove stopped,
    /// set on resume ([`crate::Core::resume`]) with that attempt's number: if its migration is
    /// found still running, the watch re-adopting it starts from them. It does not ask them
    /// again, and a migration that entered post-copy (or may have) is never aborted.
    pub resumed_aids: Option<(u32, AidsAsked)>,
}

/// The convergence aids asked for one attempt, as its journal recorded them: each with its
/// answer, in order ([`AidAnswer::Unanswered`] when none was recorded). A resumed watch starts
/// from them: its ladder goes on from the next aid, and the failure when none helped names
/// those answered before the resume too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AidsAsked {
    pub answers: Vec<(ConvergenceAid, AidAnswer)>,
}

impl AidsAsked {
    /// How many were asked (the watch's escalation step: the next firing asks the next aid).
    pub fn asked(&self) -> u32 {
        u32::try_from(self.answers.len()).unwrap_or(u32::MAX)
    }

    /// Post-copy was applied, or was asked and no answer was recorded: the guest may already
    /// run on the destination, so the migration is watched to its end, never aborted.
    pub fn post_copy(&self) -> bool {
        self.answers.iter().any(|(aid, answer)| {
            *aid == ConvergenceAid::PostCopy
                && matches!(answer, AidAnswer::Applied | AidAnswer::Unanswered)
        })
    }
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
    pub now: Time,
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
            resumed_aids: None,
            preflight: PreflightMemo::default(),
            last_failure: None,
            aborted_attempt: None,
            stopped: None,
            state: MoveState::Queued,
        }
    }

    /// What the journal says attempt `attempt` was given before vmove stopped (a resume only;
    /// none asked otherwise).
    pub fn resumed_aids_for(&self, attempt: u32) -> AidsAsked {
        self.resumed_aids
            .as_ref()
            .filter(|(a, _)| *a == attempt)
            .map(|(_, aids)| aids.clone())
            .unwrap_or_default()
    }

    pub fn phase(&self) -> Phase {
        self.state.phase()
    }

    /// Attempts that count toward `max_attempts`: those started, less those vmove's own crash
    /// interrupted without moving the VM ([`VmMove::uncounted`]).
    pub fn counted_attempts(&self) -> u32 {
        self.attempts.saturating_sub(self.uncounted)
    }

    /// Whether destination `d` is passed over for this VM now: refused, or its pre-flight check
    /// there blocked it (for good, or until its findings pass).
    pub fn passed_over(&self, d: &HostId) -> bool {
        self.refused.contains(d)
            || self.preflight.blocked.contains_key(d)
            || self.preflight.waiting.contains_key(d)
    }

    /// Destinations still allowed (not refused).
    pub fn open_destinations(&self) -> impl Iterator<Item = &HostId> {
        self.destinations
            .iter()
            .filter(|d| !self.refused.contains(*d))
    }
}

/// The pre-flight answers for a VM's next attempt.
///
/// Laid out in the order written (`repr(C)`): the two fields read of every listed VM first.
#[derive(Debug, Clone, Default, PartialEq)]
#[repr(C)]
pub struct PreflightMemo {
    /// The destination whose check is in flight (at most one per VM).
    pub asking: Option<HostId>,
    /// Since when it waits because every open destination blocks it and some may pass: the
    /// wait ends `Blocked` after `backup_threshold`.
    pub waiting_since: Option<Time>,
    /// Destinations that answered clear.
    pub clear: BTreeSet<HostId>,
    /// Destinations that blocked it, with their blockers (scope destination or host), at least
    /// one of them lasting.
    pub blocked: BTreeMap<HostId, Vec<Finding>>,
    /// Destinations that blocked it only with findings that may pass (`Finding::may_pass`),
    /// with them: skipped for now, asked again after a back-off or when a move there ends.
    pub waiting: BTreeMap<HostId, Vec<Finding>>,
    /// Checks that found every open destination blocking it with some that may pass, in a row
    /// (the back-off between them grows with it).
    pub waits: u32,
    /// The wait last said for that (`Waiting` is said again only when it changes).
    pub said: Option<WaitReason>,
    /// Checks that could not be made, in a row.
    pub failures: u32,
}

impl PreflightMemo {
    /// Forgets every answer (after a failed attempt: the next one asks again).
    pub fn forget(&mut self) {
        self.clear.clear();
        self.blocked.clear();
        self.waiting.clear();
        self.waiting_since = None;
        self.waits = 0;
        self.said = None;
        self.failures = 0;
    }
}

/// What a transition returns: the next state, and the commands and events it produced.
pub(super) type Next = (MoveState, Output);
