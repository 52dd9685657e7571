//! What the journal stores and gives back: runs, entries (intents, outcomes, inputs, events),
//! leases and stop requests.

use crate::clock::WallTime;
pub use crate::holder::Holder;
use crate::status::VmStatus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use vmove_core::{Command, Event, Input, Phase, RunSpec, Time};

/// A run's state in the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Created and not yet over (driven now, or crashed and resumable).
    Running,
    /// Every VM reached a final phase.
    Finished,
    /// The run could not go on (see its detail).
    Failed,
    /// Stopped on request before every VM was moved.
    Aborted,
}

impl RunState {
    /// The value stored in `runs.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
            RunState::Aborted => "aborted",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<RunState> {
        Some(match s {
            "running" => RunState::Running,
            "finished" => RunState::Finished,
            "failed" => RunState::Failed,
            "aborted" => RunState::Aborted,
            _ => return None,
        })
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a run ended, for [`Journal::finish_run`](crate::Journal::finish_run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Every VM reached a final phase.
    Finished,
    /// The run could not go on.
    Failed(String),
    /// Stopped on request.
    Aborted,
}

/// The format of the configuration text a run was started with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigFormat {
    /// TOML (the config file as read).
    Toml,
    /// JSON (the merged settings).
    Json,
}

impl ConfigFormat {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConfigFormat::Toml => "toml",
            ConfigFormat::Json => "json",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "toml" => Some(ConfigFormat::Toml),
            "json" => Some(ConfigFormat::Json),
            _ => None,
        }
    }
}

/// What [`Journal::create_run`](crate::Journal::create_run) needs.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRun {
    /// The validated spec (its `run_id` is the run's id).
    pub spec: RunSpec,
    /// The configuration used, as text (no secrets: the caller strips them).
    pub config: String,
    pub config_format: ConfigFormat,
    /// The command line that started it (`vmove evacuate hv-01 --to hv-02`), for reports;
    /// URIs' user information is hidden before it is stored.
    pub command: String,
}

/// A run's lease as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// Who holds it.
    pub holder: Holder,
    /// When it was acquired.
    pub acquired_at: WallTime,
    /// When it was last refreshed.
    pub refreshed_at: WallTime,
    /// When it expires unless refreshed.
    pub expires_at: WallTime,
}

/// A stop asked of a run by `vmove abort`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRequest {
    /// Abort running migrations too (`--now`).
    pub abort_running: bool,
    /// When it was (last) asked.
    pub at: WallTime,
}

/// One line of `history`: a run without its entries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: String,
    /// The command line that started it; empty for a run journaled before schema 6.
    pub command: String,
    /// When it was created.
    pub created_at: WallTime,
    pub state: RunState,
    /// Why it failed, if it did.
    pub detail: Option<String>,
    /// When it ended.
    pub finished_at: Option<WallTime>,
    /// The last process that drove it.
    pub driver: Holder,
    /// A stop asked of it, if any.
    pub stop: Option<StopRequest>,
    /// Its lease, if one is held (possibly expired: a crashed driver).
    pub lease: Option<LeaseInfo>,
    /// How many entries it has (the last sequence number).
    pub entries: u64,
    /// How many of its VMs are in each phase.
    pub phases: BTreeMap<Phase, u32>,
}

/// The id of an intent: its sequence number in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IntentId(pub u64);

impl fmt::Display for IntentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One record of a step written by [`Journal::record_step`](crate::Journal::record_step).
#[derive(Clone, Debug, PartialEq)]
pub enum StepRecord {
    /// A driver's answer to `intent`, or (`None`) an input nobody asked for.
    Input {
        /// The intent it answers.
        intent: Option<IntentId>,
        /// Run time it arrived.
        at: Time,
        /// The answer.
        input: Input,
    },
    /// An event the core emitted.
    Event(Event),
    /// A command about to be carried out.
    Intent {
        /// Run time it was asked.
        at: Time,
        command: Command,
    },
}

/// What one entry holds.
#[derive(Clone, Debug, PartialEq)]
pub enum EntryBody {
    /// A command about to be carried out (written BEFORE acting).
    Intent(Command),
    /// The answer to an intent.
    Outcome {
        /// The intent it answers.
        intent: IntentId,
        /// The answer, as fed to the core.
        input: Input,
    },
    /// An input nobody asked for (a stop, a pushed migration status).
    Input(Input),
    /// An event the core emitted.
    Event(Event),
}

/// One entry of a run, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Sequence number: 1, 2, 3... with no gaps within a run.
    pub seq: u64,
    /// Run time it was recorded at (for events, the event's own time).
    pub at: Time,
    /// Wall-clock time it was written.
    pub written_at: WallTime,
    /// What it holds.
    pub body: EntryBody,
}

/// An intent with its outcome, if one was recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct IntentRecord {
    /// Id (= sequence number).
    pub id: IntentId,
    /// Run time of the intent.
    pub at: Time,
    /// What was to be done.
    pub command: Command,
    /// The outcome: its sequence number, run time and input. `None`: the process stopped between
    /// intent and outcome, and only the hosts can tell whether it happened.
    pub outcome: Option<(u64, Time, Input)>,
}

/// Everything the journal knows about a run: what `resume` and `report` read.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// The run's summary.
    pub summary: RunSummary,
    pub spec: RunSpec,
    /// The configuration text it was started with.
    pub config: String,
    pub config_format: ConfigFormat,
    /// Every entry, in sequence order.
    pub entries: Vec<Entry>,
    /// The per-VM status table, in selection order.
    pub vms: Vec<VmStatus>,
}

impl RunRecord {
    /// Every intent with its outcome (if any), in order.
    pub fn intents(&self) -> Vec<IntentRecord> {
        let mut out: Vec<IntentRecord> = Vec::new();
        let mut index = BTreeMap::new();
        for e in &self.entries {
            match &e.body {
                EntryBody::Intent(c) => {
                    index.insert(e.seq, out.len());
                    out.push(IntentRecord {
                        id: IntentId(e.seq),
                        at: e.at,
                        command: c.clone(),
                        outcome: None,
                    });
                }
                EntryBody::Outcome { intent, input } => {
                    if let Some(&i) = index.get(&intent.0) {
                        out[i].outcome = Some((e.seq, e.at, input.clone()));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Intents with no outcome: acted on or not, only the hosts can tell.
    pub fn open_intents(&self) -> Vec<IntentRecord> {
        self.intents()
            .into_iter()
            .filter(|i| i.outcome.is_none())
            .collect()
    }

    /// Every event, in order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.entries.iter().filter_map(|e| match &e.body {
            EntryBody::Event(ev) => Some(ev),
            _ => None,
        })
    }
}

/// A per-VM stop request (`vmove skip RUN VM`, `vmove abort RUN VM`), as journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmStopRequest {
    /// Its number in the journal (requests are delivered in this order).
    pub id: i64,
    pub vm: vmove_core::VmId,
    /// The VM's name when it was asked.
    pub name: String,
    /// `abort`: abort its migration if one runs; `skip` (false): only if it has not started.
    pub abort: bool,
    /// When it was asked.
    pub at: WallTime,
    /// Who asked (user and host).
    pub by: String,
    /// When the run's driving process took it (it is fed to the engine once); `None`: not
    /// yet (no process drove the run since, or it has not polled yet).
    pub delivered_at: Option<WallTime>,
}
