//! The journal's errors. Each message says what is wrong and, where it helps, what to do.

use crate::clock::WallTime;
use crate::record::RunState;
use std::path::PathBuf;

/// Everything that can go wrong with the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The database file could not be opened or set up.
    #[error("could not open the journal at {}", path.display())]
    Open {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// SQLite refused an operation.
    #[error("the journal database failed")]
    Sqlite(#[from] rusqlite::Error),
    /// The file was written by a newer vmove.
    #[error(
        "the journal has schema version {found}, newer than the {supported} this vmove knows: use a newer vmove"
    )]
    SchemaTooNew {
        /// Version in the file.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// WAL mode could not be turned on (it needs a local file system with shared memory).
    #[error(
        "the journal could not switch to WAL mode (SQLite answered `{0}`): keep it on a local file system"
    )]
    NotWal(String),
    /// No such run.
    #[error("run `{0}` is not in the journal")]
    UnknownRun(String),
    /// The run id is taken.
    #[error("run `{0}` already exists in the journal")]
    RunExists(String),
    /// The run is over; nothing more may be written for it.
    #[error("run `{run}` is already {state}")]
    RunNotRunning {
        /// Run.
        run: String,
        /// Its state.
        state: RunState,
    },
    /// Another process drives the run.
    #[error(
        "run `{run}` is driven by process {pid} on host `{host}` (lease valid until {until}){note}; \
         wait for it to finish, or for the lease to expire if that process is gone",
        note = gone_note(*.holder_gone)
    )]
    LeaseHeld {
        /// Run.
        run: String,
        /// Holder's pid.
        pid: u32,
        /// Holder's host.
        host: String,
        /// When its lease expires unless refreshed.
        until: WallTime,
        /// The holder is on this host and no such process runs: it crashed, and the lease will
        /// be taken over once it expires (never earlier: see docs/journal.md).
        holder_gone: bool,
    },
    /// This journal handle writes for a run it does not drive.
    #[error("this process does not hold the lease of run `{run}`: acquire it first")]
    LeaseNotHeld {
        /// Run.
        run: String,
    },
    /// Our lease expired and another process took the run over: stop acting at once.
    #[error(
        "the lease of run `{run}` was taken over by process {pid} on host `{host}`: this process must stop driving it"
    )]
    LeaseLost {
        /// Run.
        run: String,
        /// New holder's pid.
        pid: u32,
        /// New holder's host.
        host: String,
    },
    /// Our lease expired (nobody took it yet); refresh it before acting again.
    #[error("the lease of run `{run}` expired at {until}: refresh it before starting anything")]
    LeaseExpired {
        /// Run.
        run: String,
        /// When it expired.
        until: WallTime,
    },
    /// A VM of this run is being moved by another live run.
    #[error(
        "VM `{name}` ({vm}) is being moved by run `{other_run}`, driven by process {pid} on host `{host}`: \
         two runs may not move the same VM"
    )]
    VmInUse {
        /// VM id.
        vm: String,
        /// VM name.
        name: String,
        /// The other run.
        other_run: String,
        /// Its driver's pid.
        pid: u32,
        /// Its driver's host.
        host: String,
    },
    /// The new run's selection may match VMs that another live run has not selected yet.
    #[error(
        "run `{other_run}` (process {pid} on host `{host}`) is still selecting VMs on source `{source_host}`, \
         and its selection may overlap this one: wait until it has selected its VMs"
    )]
    SelectionOverlap {
        /// The shared source host.
        source_host: String,
        /// The other run.
        other_run: String,
        /// Its driver's pid.
        pid: u32,
        /// Its driver's host.
        host: String,
    },
    /// An outcome names an intent the run does not have.
    #[error("run `{run}` has no intent {intent}")]
    UnknownIntent {
        /// Run.
        run: String,
        /// Intent id.
        intent: u64,
    },
    /// An intent can have one outcome only.
    #[error("intent {intent} of run `{run}` already has an outcome")]
    DuplicateOutcome {
        /// Run.
        run: String,
        /// Intent id.
        intent: u64,
    },
    /// A value could not be written as JSON.
    #[error("could not encode a journal record as JSON")]
    Encode(#[source] serde_json::Error),
    /// A stored record does not decode (written by an incompatible build, or damaged).
    #[error("record {seq} of run `{run}` does not decode")]
    Decode {
        /// Run.
        run: String,
        /// Sequence number (0: the run's own row).
        seq: u64,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A stored value is not one this build knows.
    #[error("the journal holds an unknown {what} `{value}`")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// The blocking task a journal call ran on died (feature `sink`).
    #[error("a journal call did not complete: {0}")]
    Worker(String),
}

fn gone_note(gone: bool) -> &'static str {
    if gone {
        ", but that process is no longer running"
    } else {
        ""
    }
}

/// Results of journal operations.
pub type Result<T, E = JournalError> = std::result::Result<T, E>;
