//! The timeline model (its builder is in `builder.rs`): host slot lanes with a bar per attempt, per-VM rows with their waits and
//! attempts, the hosts' foreign migrations, and the plan's predicted bars. Built once from the
//! journal's facts ([`Timeline::from_run`]) or fed as a run goes ([`TimelineBuilder`]); every
//! view draws this value and nothing else.
//!
//! Times are run time in milliseconds (`vmove_core::Time`: since the run's epoch), and
//! `epoch_unix_ms` puts them on the wall clock, as the reports do: a real run's run time is its
//! wall-clock time since it started; a simulated one's (sped-up sim hosts, a plan) is simulated
//! time, and `simulated` says so.

use serde::{Deserialize, Serialize};
use vmove_core::WaitReason;

pub use super::builder::TimelineBuilder;

/// How one attempt ended: what its bar's colour says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The VM arrived and was proven there (`moved`).
    Moved,
    /// The migration or its start failed (`attempt_failed`, or the move given up after it).
    Failed,
    /// vmove aborted it (a watchdog fired, or the run was stopped with abort).
    Aborted,
    /// The destination refused the VM (`attempt_failed` with class `destination_refused`).
    Refused,
    /// In flight when vmove itself stopped (`attempt_failed` with `interrupted`).
    Interrupted,
    /// Not over yet (the run goes on).
    Running,
    /// The run is over and nothing says how this attempt ended (a run left unfinished).
    Unfinished,
}

impl AttemptOutcome {
    /// Every outcome, in the legend's order.
    pub const ALL: [AttemptOutcome; 7] = [
        AttemptOutcome::Moved,
        AttemptOutcome::Failed,
        AttemptOutcome::Aborted,
        AttemptOutcome::Refused,
        AttemptOutcome::Interrupted,
        AttemptOutcome::Running,
        AttemptOutcome::Unfinished,
    ];

    /// The word written (serde's, and the SVG's class `o-WORD`).
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Moved => "moved",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Aborted => "aborted",
            AttemptOutcome::Refused => "refused",
            AttemptOutcome::Interrupted => "interrupted",
            AttemptOutcome::Running => "running",
            AttemptOutcome::Unfinished => "unfinished",
        }
    }

    /// The letter of the text timeline.
    pub fn letter(self) -> char {
        match self {
            AttemptOutcome::Moved => 'M',
            AttemptOutcome::Failed => 'F',
            AttemptOutcome::Aborted => 'A',
            AttemptOutcome::Refused => 'R',
            AttemptOutcome::Interrupted => 'I',
            AttemptOutcome::Running => '>',
            AttemptOutcome::Unfinished => '?',
        }
    }
}

impl std::fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attempt: one bar in its VM's row and one in a lane of its source and of its destination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The VM's id and name.
    pub vm: String,
    pub name: String,
    /// Its number (1-based).
    pub attempt: u32,
    pub source: String,
    pub destination: String,
    /// `live` or `offline`.
    pub mode: String,
    /// When it started (`attempt_started`, the start intent's time).
    pub start_ms: u64,
    /// When it gave its slots back (its phase left the slot-holding phases: starting to
    /// locating); `None`: it still holds them.
    pub slot_end_ms: Option<u64>,
    /// When it ended (moved, failed, given up); `None`: not yet.
    pub end_ms: Option<u64>,
    pub outcome: AttemptOutcome,
    /// The error that ended it, if one did.
    pub detail: Option<String>,
    /// Its lane among its source's outbound lanes and its destination's inbound lanes.
    pub out_lane: usize,
    pub in_lane: usize,
}

/// An attempt's time in one slot lane: from its start to when it gave its slots back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlotBar {
    /// Index into [`Timeline::attempts`].
    pub attempt: usize,
    pub from_ms: u64,
    /// `None`: still held.
    pub to_ms: Option<u64>,
}

/// One slot lane of a host: bars that never overlap.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Lane {
    pub bars: Vec<SlotBar>,
}

/// A span of time with a count (foreign migrations on a host).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub from_ms: u64,
    /// `None`: still so.
    pub to_ms: Option<u64>,
    pub count: u32,
}

/// One host: its slot lanes (as many as its peak use, outbound and inbound apart) and the
/// migrations on it this run did not start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostLanes {
    pub name: String,
    /// Its effective slot limit (the largest `host_seen` said), if it was seen.
    pub limit: Option<u32>,
    /// Attempts leaving it.
    pub outbound: Vec<Lane>,
    /// Attempts arriving on it.
    pub inbound: Vec<Lane>,
    /// Foreign migrations holding its slots (`host_seen`'s `foreign` above 0).
    pub foreign: Vec<Span>,
}

/// What a VM waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitKind {
    /// Its turn, or a free slot (`no_slot`).
    Queued,
    /// A backup holds it.
    Backup,
    /// Someone else migrates it.
    ForeignMigration,
    /// Another job holds it.
    OtherJob,
    /// Its power state is changing.
    PowerChanging,
    /// Powered off: moved after the running VMs.
    OfflineAfterLive,
    /// A host did not answer.
    HostUnreachable,
    /// No destination has room yet.
    NoRoom,
    /// Gone from its source: looked for.
    Searching,
    /// Backing off before its next attempt.
    BackOff,
    /// A pre-flight check of its next attempt (from the check's intent to its answer).
    Preflight,
    /// Pre-flight blocks it for now, with findings that may pass (room, a path someone holds).
    MayPass,
}

impl WaitKind {
    /// Every kind, in the legend's order.
    pub const ALL: [WaitKind; 12] = [
        WaitKind::Queued,
        WaitKind::Backup,
        WaitKind::ForeignMigration,
        WaitKind::OtherJob,
        WaitKind::PowerChanging,
        WaitKind::OfflineAfterLive,
        WaitKind::HostUnreachable,
        WaitKind::NoRoom,
        WaitKind::Searching,
        WaitKind::BackOff,
        WaitKind::Preflight,
        WaitKind::MayPass,
    ];

    /// The word written (serde's, and the SVG's class `w-WORD`).
    pub fn as_str(self) -> &'static str {
        match self {
            WaitKind::Queued => "queued",
            WaitKind::Backup => "backup",
            WaitKind::ForeignMigration => "foreign_migration",
            WaitKind::OtherJob => "other_job",
            WaitKind::PowerChanging => "power_changing",
            WaitKind::OfflineAfterLive => "offline_after_live",
            WaitKind::HostUnreachable => "host_unreachable",
            WaitKind::NoRoom => "no_room",
            WaitKind::Searching => "searching",
            WaitKind::BackOff => "back_off",
            WaitKind::Preflight => "preflight",
            WaitKind::MayPass => "may_pass",
        }
    }

    /// The legend's words.
    pub fn label(self) -> &'static str {
        match self {
            WaitKind::Queued => "queued (its turn, a free slot)",
            WaitKind::Backup => "waits for a backup",
            WaitKind::ForeignMigration => "migrated by someone else",
            WaitKind::OtherJob => "another job holds it",
            WaitKind::PowerChanging => "power state changing",
            WaitKind::OfflineAfterLive => "powered off: after the running VMs",
            WaitKind::HostUnreachable => "a host did not answer",
            WaitKind::NoRoom => "no room on a destination yet",
            WaitKind::Searching => "looked for",
            WaitKind::BackOff => "back-off before a retry",
            WaitKind::Preflight => "pre-flight check",
            WaitKind::MayPass => "blocked for now (may pass)",
        }
    }

    /// The letter of the text timeline.
    pub fn letter(self) -> char {
        match self {
            WaitKind::Queued => '.',
            WaitKind::Backup => 'b',
            WaitKind::ForeignMigration => 'f',
            WaitKind::OtherJob => 'j',
            WaitKind::PowerChanging => 'p',
            WaitKind::OfflineAfterLive => 'o',
            WaitKind::HostUnreachable => 'u',
            WaitKind::NoRoom => 'r',
            WaitKind::Searching => 's',
            WaitKind::BackOff => 'w',
            WaitKind::Preflight => 'c',
            WaitKind::MayPass => 'm',
        }
    }

    pub(super) fn of(reason: &WaitReason) -> WaitKind {
        match reason {
            WaitReason::NoSlot => WaitKind::Queued,
            WaitReason::BackingUp { .. } => WaitKind::Backup,
            WaitReason::MigratingByOther => WaitKind::ForeignMigration,
            WaitReason::OtherJob(_) => WaitKind::OtherJob,
            WaitReason::Transitioning(_) => WaitKind::PowerChanging,
            WaitReason::OfflineAfterLive => WaitKind::OfflineAfterLive,
            WaitReason::HostUnreachable => WaitKind::HostUnreachable,
            WaitReason::NoRoomYet => WaitKind::NoRoom,
            WaitReason::Searching => WaitKind::Searching,
            WaitReason::MayPass { .. } => WaitKind::MayPass,
        }
    }
}

/// One wait of a VM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Wait {
    pub kind: WaitKind,
    pub from_ms: u64,
    /// `None`: still waiting.
    pub to_ms: Option<u64>,
    /// What it was, for a person (the tooltip).
    pub label: String,
}

/// One VM's row: its waits and its attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmLine {
    pub id: String,
    pub name: String,
    pub source: String,
    /// `moved`, `unmigratable`, `cancelled` or `unfinished`, as the reports say.
    pub outcome: String,
    /// Why it did not move.
    pub reason: Option<String>,
    /// When its move ended (moved, unmigratable, cancelled); `None`: not over.
    #[serde(default)]
    pub ended_ms: Option<u64>,
    pub waits: Vec<Wait>,
    /// Indexes into [`Timeline::attempts`], in order.
    pub attempts: Vec<usize>,
}

/// A predicted bar: a VM's move as the plan expects it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Predicted {
    pub vm: String,
    pub name: String,
    pub source: String,
    pub destination: String,
    pub start_ms: u64,
    /// `None`: the plan does not expect it to move.
    pub end_ms: Option<u64>,
}

/// A run as a picture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub run_id: String,
    /// The wall-clock time (Unix ms) of run time 0: the run's creation.
    pub epoch_unix_ms: u64,
    /// Run time is simulated time (sped-up sim hosts, a plan), not wall-clock time elapsed.
    pub simulated: bool,
    /// The run is over (finished, failed or aborted); else open bars are still going.
    pub over: bool,
    /// Run time of the last fact, ms: where open bars end in a drawing.
    pub end_ms: u64,
    pub hosts: Vec<HostLanes>,
    pub vms: Vec<VmLine>,
    pub attempts: Vec<Attempt>,
    /// The plan's bars, when a plan was made (empty otherwise).
    pub predicted: Vec<Predicted>,
}
