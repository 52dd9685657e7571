//! What the core tells observers: every transition of every VM, plus the figures behind them.
//!
//! Events are typed and serialisable; the UI renders them, `--json` prints them as NDJSON, and
//! the journal stores them. Given the same inputs at the same times, the core emits the same
//! events in the same order.

use crate::model::{ConvergenceAid, ErrorClass, HostId, LeftoverKind, MigrationMode, VmId};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The phase a VM's move is in (the name of its state).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Selected, waiting for its turn, a slot, or a condition (see the wait reason).
    Queued,
    /// Start asked of the driver.
    Starting,
    /// Started; waiting for the driver to report it running.
    Confirming,
    /// Running; progress watched.
    Migrating,
    /// Abort asked.
    Aborting,
    /// Looking at the hosts to learn what really happened.
    Locating,
    /// Removing what a failed attempt left on the destination.
    Discarding,
    /// Waiting before the next attempt.
    BackingOff,
    /// Proving the VM arrived.
    Verifying,
    /// Removing what the move left on the source.
    CleaningUp,
    /// Done: on its destination, verified.
    Moved,
    /// Given up, with a reason.
    Unmigratable,
    /// Not moved because the run was stopped; still where it was.
    Cancelled,
}

impl Phase {
    /// Whether the VM's move is over.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Moved | Phase::Unmigratable | Phase::Cancelled)
    }
    /// Whether a migration of this VM may be in flight (it holds slots).
    pub fn holds_slot(self) -> bool {
        matches!(
            self,
            Phase::Starting
                | Phase::Confirming
                | Phase::Migrating
                | Phase::Aborting
                | Phase::Locating
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// Why a queued VM is not moving yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "wait", content = "detail")]
pub enum WaitReason {
    /// Its turn has not come, or no slot is free on its source or any destination.
    NoSlot,
    /// A backup holds it (since when it was first seen so).
    BackingUp {
        /// First seen backing up.
        since: Time,
    },
    /// Someone else is migrating it.
    MigratingByOther,
    /// Another job holds it.
    OtherJob(String),
    /// Its power state is changing.
    Transitioning(String),
    /// Powered off: moved after the running VMs.
    OfflineAfterLive,
    /// Its source or every destination did not answer; retried.
    HostUnreachable,
    /// No destination has room while other moves land; waits for them.
    NoRoomYet,
    /// Gone from its source and not seen elsewhere yet: its destinations are being looked at.
    Searching,
    /// Every destination still open blocks it for now, at least one only with findings that
    /// may pass (`Finding::may_pass`: room, a taken path): it is checked again after a back-off
    /// or when a move at that destination ends, at most `backup_threshold` long.
    MayPass {
        /// The destination it waits for (the first that may pass).
        destination: HostId,
        /// The code of that destination's first finding (`memory`, `path_taken`...).
        code: String,
    },
}

impl WaitReason {
    /// Whether the scheduler set this wait (no slot, no room, no destination answering, the
    /// running VMs first): it ends when the scheduler places the VM, not when a host's listing
    /// changes (`BackingUp`, `MigratingByOther`...) or a pre-flight finding passes (`MayPass`).
    pub fn is_schedulers(&self) -> bool {
        matches!(
            self,
            WaitReason::NoSlot
                | WaitReason::OfflineAfterLive
                | WaitReason::NoRoomYet
                | WaitReason::HostUnreachable
        )
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::NoSlot => write!(f, "waiting for a free slot"),
            WaitReason::BackingUp { since } => write!(f, "backing up (seen since {since})"),
            WaitReason::MigratingByOther => write!(f, "being migrated by someone else"),
            WaitReason::OtherJob(j) => write!(f, "busy with {j}"),
            WaitReason::Transitioning(s) => write!(f, "power state changing ({s})"),
            WaitReason::OfflineAfterLive => write!(f, "powered off: moves after the running VMs"),
            WaitReason::HostUnreachable => write!(f, "a host did not answer"),
            WaitReason::NoRoomYet => write!(f, "no destination has room yet"),
            WaitReason::Searching => write!(f, "gone from its source: looking for it"),
            WaitReason::MayPass { destination, code } => write!(
                f,
                "waiting for {destination} ({code}, which may pass): checked again later"
            ),
        }
    }
}

/// Why a VM was given up (unmigratable) or not moved (cancelled).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason", content = "detail")]
pub enum Reason {
    /// Named, but on no source host.
    NotFound,
    /// Disappeared from its source and is on no known host.
    Vanished,
    /// Found on a host that is neither its source nor an allowed destination.
    FoundElsewhere(HostId),
    /// Its primary status is not OK (the seed: "that status").
    BadStatus(String),
    /// Backing up for longer than the threshold (seconds).
    BackupTooLong {
        /// The threshold, in seconds.
        threshold_secs: u64,
    },
    /// Every attempt failed.
    AttemptsExhausted {
        /// How many.
        attempts: u32,
        last_error: String,
    },
    /// An error that retrying will not fix.
    Permanent(String),
    /// No allowed destination could ever hold it.
    NoDestinationFits {
        /// Memory it needs (live moves), bytes.
        memory_bytes: u64,
        /// Disk it needs, bytes.
        disk_bytes: u64,
    },
    /// Every allowed destination refused it.
    AllDestinationsRefused(String),
    /// Seen running on both hosts: left exactly as found for a person to decide.
    RunningOnBoth,
    /// Not found on either host after an attempt: left for a person.
    LostAfterAttempt,
    /// The hosts did not answer where the VM is after an attempt (every look failed; the last
    /// error): left for a person. Not `LostAfterAttempt`, which says the VM was on neither host:
    /// here nobody was able to look.
    NotLocated(String),
    /// The run was stopped before it was moved.
    RunStopped,
    /// Fail-fast stopped the run after another VM was unmigratable.
    FailFast,
    /// Could not be proven on the destination.
    NotVerified(String),
    /// Its source host stopped answering.
    SourceDown(HostId),
    /// Every allowed destination stopped answering.
    DestinationsDown,
    /// Its source, or every allowed destination that could hold it, reports a limit of 0
    /// concurrent migrations: no slot will ever be free there.
    NoMigrationSlots(HostId),
    /// Pinned to its own host.
    PinnedToSource,
    /// A pre-flight check blocked it before anything was touched (0 attempts): a blocker about
    /// the VM itself, or every allowed destination blocked it. Each blocker says what to do.
    Blocked {
        /// The blockers, each with the destination it was found for (`None`: about the VM
        /// itself, whatever the destination).
        blockers: Vec<Blocker>,
    },
    /// The pre-flight check could not be made (every try failed; the last error).
    PreflightFailed {
        /// Tries made.
        tries: u32,
        error: String,
    },
    /// The same failure twice on the same route (not a watchdog's abort), with no other
    /// destination left: nothing changed, so a third try would fail the same way.
    SameFailureTwice {
        /// The destination.
        destination: HostId,
        error: String,
    },
    /// An operator stopped this one VM's move from another terminal (`vmove skip RUN VM`, or
    /// `vmove abort RUN VM`): who asked and when (wall clock, as the request was journaled).
    /// `aborted`: its migration was running and was aborted (it stays on its source).
    Skipped {
        /// Who asked (user and host of the asking process).
        by: String,
        /// When, as the journal recorded it.
        at: String,
        aborted: bool,
    },
}

/// One pre-flight blocker of a [`Reason::Blocked`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocker {
    /// The destination it was found for; `None` when it is about the VM itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<HostId>,
    /// What was found, and what a person can do about it.
    pub finding: crate::model::Finding,
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.destination {
            Some(d) => write!(f, "on {d}: {}", self.finding),
            None => write!(f, "{}", self.finding),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotFound => write!(f, "not found on its source host"),
            Reason::Vanished => write!(f, "disappeared from its source and is on no known host"),
            Reason::FoundElsewhere(h) => {
                write!(f, "found on {h}, which is not one of its destinations")
            }
            Reason::BadStatus(s) => write!(f, "bad status: {s}"),
            Reason::BackupTooLong { threshold_secs } => write!(
                f,
                "still backing up after {}",
                crate::spec::dur::format_duration(std::time::Duration::from_secs(*threshold_secs))
            ),
            Reason::AttemptsExhausted {
                attempts,
                last_error,
            } => {
                write!(f, "failed {attempts} attempts; last: {last_error}")
            }
            Reason::Permanent(e) => write!(f, "cannot move: {e}"),
            Reason::NoDestinationFits {
                memory_bytes,
                disk_bytes,
            } => write!(
                f,
                "no destination has room for it ({} memory, {} disk)",
                crate::model::fmt_bytes(*memory_bytes),
                crate::model::fmt_bytes(*disk_bytes)
            ),
            Reason::AllDestinationsRefused(e) => {
                write!(f, "every destination refused it; last: {e}")
            }
            Reason::RunningOnBoth => {
                write!(
                    f,
                    "running on both source and destination: left untouched for a person"
                )
            }
            Reason::LostAfterAttempt => {
                write!(f, "on neither host after an attempt: left for a person")
            }
            Reason::NotLocated(e) => write!(
                f,
                "could not be located after an attempt (the hosts did not answer: {e}): left for a person"
            ),
            Reason::RunStopped => write!(f, "run stopped before it moved"),
            Reason::FailFast => write!(f, "run stopped (fail-fast) before it moved"),
            Reason::NotVerified(e) => write!(f, "could not be proven on the destination: {e}"),
            Reason::SourceDown(h) => write!(f, "its source host {h} stopped answering"),
            Reason::DestinationsDown => write!(f, "every allowed destination stopped answering"),
            Reason::NoMigrationSlots(h) => write!(
                f,
                "host {h} allows no migrations (it reports a limit of 0 at once): no slot will ever be free"
            ),
            Reason::PinnedToSource => write!(f, "pinned to the host it is already on"),
            Reason::Blocked { blockers } => {
                write!(f, "blocked by pre-flight before anything was touched: ")?;
                for (i, b) in blockers.iter().enumerate() {
                    if i > 0 {
                        write!(f, "; ")?;
                    }
                    write!(f, "{b}")?;
                }
                Ok(())
            }
            Reason::PreflightFailed { tries, error } => write!(
                f,
                "the pre-flight check could not be made ({tries} tries); last: {error}"
            ),
            Reason::SameFailureTwice { destination, error } => write!(
                f,
                "the same failure twice toward {destination}, nothing changed: {error}"
            ),
            Reason::Skipped {
                by,
                at,
                aborted: false,
            } => write!(f, "skipped by {by} at {at} before it started"),
            Reason::Skipped {
                by,
                at,
                aborted: true,
            } => write!(
                f,
                "its move was aborted by {by} at {at}; it stays on its source"
            ),
        }
    }
}

/// A watchdog of a migration attempt. Serialized as `start`, `stall`, `completion`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Watchdog {
    /// The migration did not show as running within `job_start_attempts` x `job_start_timeout`.
    Start,
    /// No progress for `stall_timeout`.
    Stall,
    /// Not complete by the completion deadline.
    Completion,
}

/// A call about an attempt whose failure is reported ([`EventKind::CallFailed`]). Serialized as
/// `abort`, `locate`, `verify`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptCall {
    /// AbortMigration.
    Abort,
    Locate,
    Verify,
}

impl Watchdog {
    /// The name serde writes (the NDJSON's `which`).
    pub fn as_str(self) -> &'static str {
        match self {
            Watchdog::Start => "start",
            Watchdog::Stall => "stall",
            Watchdog::Completion => "completion",
        }
    }
}

impl AttemptCall {
    /// The name serde writes (the NDJSON's `call`).
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptCall::Abort => "abort",
            AttemptCall::Locate => "locate",
            AttemptCall::Verify => "verify",
        }
    }
}

macro_rules! named {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
    };
}
named!(Watchdog);
named!(AttemptCall);

/// One thing that happened, at a time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When (run time).
    pub at: Time,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum EventKind {
    /// The run began.
    RunStarted {
        run_id: String,
        /// Source hosts.
        sources: Vec<HostId>,
        /// Destination hosts.
        destinations: Vec<HostId>,
    },
    /// A host's figures, when first seen and whenever its slot use by others changes.
    HostSeen {
        host: HostId,
        /// Effective slot limit.
        limit: u32,
        /// Migrations on it that this run did not start.
        foreign: u32,
        /// Free memory, bytes.
        free_memory_bytes: u64,
        /// Free disk, bytes.
        free_disk_bytes: u64,
    },
    /// A host did not answer.
    HostUnreachable {
        host: HostId,
        /// Why.
        error: String,
    },
    /// A name or pattern matched nothing.
    SelectionUnmatched { source: HostId, pattern: String },
    /// A VM was selected for the run.
    Selected {
        vm: VmId,
        name: String,
        source: HostId,
        /// Live or offline, as it stands now.
        mode: MigrationMode,
        /// Memory, bytes.
        memory_bytes: u64,
        /// Disk, bytes.
        disk_bytes: u64,
    },
    /// A VM changed phase.
    Transition { vm: VmId, from: Phase, to: Phase },
    /// A queued VM waits, and why (emitted when the reason changes).
    Waiting { vm: VmId, reason: WaitReason },
    /// An attempt was started.
    AttemptStarted {
        vm: VmId,
        /// Attempt number (1-based).
        attempt: u32,
        source: HostId,
        destination: HostId,
        mode: MigrationMode,
    },
    /// Progress of a running migration.
    Progress {
        vm: VmId,
        attempt: u32,
        bytes_done: u64,
        /// Bytes total (0 if unknown).
        bytes_total: u64,
        /// Bytes remaining (0 if unknown).
        bytes_remaining: u64,
    },
    /// A watchdog applied a convergence aid.
    Escalated {
        vm: VmId,
        attempt: u32,
        aid: ConvergenceAid,
    },
    /// vmove did not abort this VM's migration where it otherwise would have: a stop asked it
    /// (`vmove abort`, a stop with abort), or it made no progress for a stall timeout (said
    /// again after each one). The migration is in post-copy, where the guest already runs on
    /// the destination and a failure of either side loses it (QEMU's post-copy documentation;
    /// libvirt refuses such an abort unless told to pause the guest instead). It is watched to
    /// its end, as a graceful stop would. Also said when post-copy, the last convergence aid,
    /// was refused for a passing reason while the migration progresses (QEMU refuses it while
    /// libvirt still copies the disks): it is asked again at the next firing
    /// (`Migrating::post_copy_refused_at`).
    NotAborted {
        vm: VmId,
        attempt: u32,
        /// Why ("in post-copy: the guest runs on the destination...").
        why: String,
    },
    /// A watchdog fired.
    WatchdogFired {
        vm: VmId,
        attempt: u32,
        which: Watchdog,
    },
    /// A migration is being aborted (a watchdog fired, or the run was stopped with abort):
    /// said when the abort is asked (`look` 0) and at every look at the hosts that finds the job
    /// still running, so a person sees what vmove waits for (on a cut link this lasts minutes).
    AbortWaiting {
        vm: VmId,
        attempt: u32,
        /// Source (where the job runs and is aborted).
        source: HostId,
        destination: HostId,
        /// Why the attempt is being given up ("stalled: no progress for 15s").
        why: String,
        /// Aborts asked so far in this attempt (1-based) and how many may be asked.
        round: u32,
        /// See `round`.
        rounds: u32,
        /// Looks at the hosts since this abort was asked that found the job running (0: just
        /// asked), and how many are waited for before it is asked again.
        look: u32,
        /// See `look`.
        looks: u32,
    },
    /// The driver reported an attempt's migration failed. Said at once: what follows (retry
    /// when, or give up) is `AttemptFailed`, once both hosts were looked at, which can take
    /// a while when one of them does not answer.
    MigrationFailed {
        vm: VmId,
        attempt: u32,
        source: HostId,
        destination: HostId,
        /// The driver's error.
        error: String,
    },
    /// A pre-flight check found blockers or warnings for the VM's next attempt toward
    /// `destination` (a clear answer with no warnings says nothing). Blockers of scope `vm` end
    /// the VM unmigratable; others skip this destination; warnings do not stop the move.
    PreflightFindings {
        vm: VmId,
        /// The attempt the check precedes.
        attempt: u32,
        destination: HostId,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        blockers: Vec<crate::model::Finding>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<crate::model::Finding>,
    },
    /// A pre-flight check could not be made (a host did not answer): not a blocker; asked again
    /// at `retry_at`, or, `tries` reaching `of`, the VM is unmigratable.
    PreflightFailed {
        vm: VmId,
        attempt: u32,
        destination: HostId,
        error: String,
        /// Failed checks in a row (1-based), and how many are allowed.
        tries: u32,
        /// See `tries`.
        of: u32,
        /// When it is asked again (`None`: given up).
        retry_at: Option<Time>,
    },
    /// A call about an attempt failed or did not answer (abort, locate, verify): what vmove does
    /// next is in `tries`/`of`/`retry_at`, so a person sees why nothing moves for minutes.
    CallFailed {
        vm: VmId,
        attempt: u32,
        call: AttemptCall,
        /// The error (a time-out names the hosts asked).
        error: String,
        /// Failed calls of this kind in a row in this attempt (1-based), and how many are
        /// allowed before the VM is left for a person.
        tries: u32,
        /// See `tries`.
        of: u32,
        /// When the call is made again, if it is.
        retry_at: Option<Time>,
    },
    /// A VM's move ended (unmigratable or cancelled; the event follows) with what a failed attempt
    /// left on its destination still there, or with the destination not checked for it.
    LeftBehind {
        vm: VmId,
        attempt: u32,
        /// The destination of the failed attempt.
        host: HostId,
        /// What the driver listed there as this VM's and could not remove (empty: the
        /// destination could not be listed or was not looked at).
        what: Vec<String>,
        /// Why it is still there (the removal's or the listing's error, or why nobody looked).
        why: String,
    },
    /// An attempt failed.
    AttemptFailed {
        vm: VmId,
        attempt: u32,
        /// Class of the error.
        class: ErrorClass,
        error: String,
        /// When the next attempt may start, if one will.
        retry_at: Option<Time>,
        /// The destination, when it refused the VM (`class` is `destination_refused`): it is not
        /// tried again in this run, unless `forgiven`. Absent from journals of older versions.
        #[serde(default)]
        refused_by: Option<HostId>,
        /// That refusal does not count: our own leftover caused it and the clean-up removed it,
        /// so the VM is retried there (at most once per destination per run).
        #[serde(default)]
        forgiven: bool,
        /// The attempt was in flight when vmove itself stopped (a crash, a kill) and did not
        /// move the VM: it does not count toward `max_attempts`, and the next one starts at
        /// once. A resumed run rebuilds `VmMove::uncounted` from these. Absent from journals of
        /// older versions.
        #[serde(default)]
        interrupted: bool,
    },
    /// The VM was proven on its destination.
    Verified {
        vm: VmId,
        destination: HostId,
        /// The switchover's pause, ms, when the driver measured one
        /// ([`crate::model::Verification::downtime_ms`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        downtime_ms: Option<u64>,
    },
    /// A leftover was removed.
    LeftoverRemoved {
        vm: VmId,
        host: HostId,
        kind: LeftoverKind,
        /// Path or name.
        what: String,
    },
    /// A leftover could not be removed (the move still counts).
    LeftoverKept {
        vm: VmId,
        host: HostId,
        /// Path or name.
        what: String,
        /// Why.
        error: String,
    },
    /// The VM moved.
    Moved {
        vm: VmId,
        name: String,
        /// Where it is now.
        destination: HostId,
        /// Attempts it took (0 if it was already there).
        attempts: u32,
    },
    /// The VM cannot be moved.
    Unmigratable {
        vm: VmId,
        name: String,
        reason: Reason,
    },
    /// The VM was not moved because the run stopped.
    Cancelled {
        vm: VmId,
        name: String,
        reason: Reason,
    },
    /// A stop was asked for.
    StopRequested {
        /// Abort running migrations too.
        abort_running: bool,
    },
    /// An operator asked to stop one VM's move (`vmove skip RUN VM`: only if it has not
    /// started; `vmove abort RUN VM`: abort its migration if it runs). `refused` says why
    /// nothing was done (it had started, or already moved); `None`: the VM ends `Cancelled`
    /// with [`Reason::Skipped`] (after its migration's abort, if one ran).
    VmStopAsked {
        vm: VmId,
        /// Abort its running migration (`vmove abort RUN VM`).
        abort_running: bool,
        /// Who asked.
        asked_by: String,
        /// When, wall clock as the journal recorded it (`at` is the event's run time).
        asked_at: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
    },
    /// An input arrived that the VM's state does not accept (a bug somewhere; ignored).
    IllegalInput {
        vm: VmId,
        phase: Phase,
        /// The input's kind.
        input: String,
    },
    /// The run cannot go on (a source host could not be listed at start).
    RunFailed {
        /// Why.
        error: String,
    },
    /// The run is over.
    RunFinished {
        /// VMs moved.
        moved: u32,
        /// VMs unmigratable.
        unmigratable: u32,
        /// VMs not moved because the run stopped.
        cancelled: u32,
    },
}

impl EventKind {
    /// The VM this event is about, if one.
    pub fn vm(&self) -> Option<&VmId> {
        use EventKind::*;
        match self {
            Selected { vm, .. }
            | Transition { vm, .. }
            | Waiting { vm, .. }
            | AttemptStarted { vm, .. }
            | Progress { vm, .. }
            | Escalated { vm, .. }
            | WatchdogFired { vm, .. }
            | NotAborted { vm, .. }
            | AbortWaiting { vm, .. }
            | CallFailed { vm, .. }
            | MigrationFailed { vm, .. }
            | LeftBehind { vm, .. }
            | AttemptFailed { vm, .. }
            | Verified { vm, .. }
            | LeftoverRemoved { vm, .. }
            | LeftoverKept { vm, .. }
            | PreflightFindings { vm, .. }
            | PreflightFailed { vm, .. }
            | Moved { vm, .. }
            | Unmigratable { vm, .. }
            | Cancelled { vm, .. }
            | VmStopAsked { vm, .. }
            | IllegalInput { vm, .. } => Some(vm),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_and_call_names_are_what_serde_writes() {
        for w in [Watchdog::Start, Watchdog::Stall, Watchdog::Completion] {
            assert_eq!(serde_json::to_value(w).expect("serializes"), w.as_str());
            assert_eq!(w.to_string(), w.as_str());
        }
        for c in [AttemptCall::Abort, AttemptCall::Locate, AttemptCall::Verify] {
            assert_eq!(serde_json::to_value(c).expect("serializes"), c.as_str());
            assert!(c == *c.as_str());
        }
    }
}
