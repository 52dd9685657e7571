//! The journal's errors. Each message says what is wrong and, where it helps, what to do.

use crate::clock::WallTime;
use crate::record::RunState;
use std::path::PathBuf;

/// Everything that can go wrong with the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The database file could not be opened or set up.
    #[error("could not open the journal at {}: {}", path.display(), sqlite_cause(source))]
    Open {
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is an SQLite database of another application (tables, but not vmove's
    /// `schema_version`): refused before anything was written to it.
    #[error(
        "{} is not a vmove journal: it is another SQLite database (tables {tables}); nothing was \
         written to it: name another file as the journal (--journal, VMOVE_JOURNAL or `journal` \
         in [defaults])",
        path.display()
    )]
    NotAJournal {
        path: PathBuf,
        /// Its first tables, for the message.
        tables: String,
    },
    /// The journal's path is a device, a FIFO, a folder or a socket: SQLite would open a
    /// device as a database file (writing its header over a block device's first bytes) and
    /// make its own files beside it (`/dev/null-journal`), and a FIFO waits for a writer.
    #[error(
        "the journal `{}` is not a regular file but {kind}: nothing was opened or written; name \
         a file (--journal, VMOVE_JOURNAL or `journal` in [defaults])",
        path.display()
    )]
    NotAFile {
        path: PathBuf,
        /// What it is instead ("a block device").
        kind: &'static str,
    },
    /// The journal's path is a file on one of the kernel's own file systems (`/proc`, `/sys`,
    /// ...): made up when read, kept on no disk. SQLite, which goes by the size, read
    /// `/proc/version` (a size of 0) as an empty journal, and would write its header into a
    /// writable one.
    #[error(
        "`{}` is not a vmove journal: it is a file the kernel makes up (on a {fs} file system), \
         not one kept on a disk; nothing was written to it: name another file as the journal \
         (--journal, VMOVE_JOURNAL or `journal` in [defaults])",
        path.display()
    )]
    KernelFile {
        path: PathBuf,
        /// The file system (`proc`).
        fs: &'static str,
    },
    /// The journal file could not be created.
    #[error("could not create the journal file {}", path.display())]
    Create {
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused an operation. The message names SQLite's verdict (disk full, damaged,
    /// read-only...) and its result code; the source is SQLite's own words.
    #[error("{}", sqlite_cause(.0))]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL server refused an operation, or the connection to it failed. The message
    /// is the server's (or the client's) own words; it never holds the password.
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL: {}", pg_cause(.0))]
    Postgres(#[from] postgres::Error),
    /// The PostgreSQL journal could not be reached or set up (the location is shown with any
    /// password removed).
    #[error("could not open the journal at {location}: {why}")]
    OpenDatabase {
        /// The database, redacted.
        location: String,
        /// Why.
        why: String,
    },
    /// A `postgresql://` journal was named, but this build has no PostgreSQL support.
    #[error(
        "the journal {location} is a PostgreSQL database, but this vmove was built without the `postgres` feature"
    )]
    NoPostgres {
        /// The database, redacted.
        location: String,
    },
    /// A PostgreSQL journal's location holds a password.
    #[error(
        "the journal location {location} holds a password: give it in PGPASSWORD, in a file only its owner can read named by PGPASSFILE, or in ~/.pgpass, never in the location itself"
    )]
    PasswordInLocation {
        /// The location, with the password removed.
        location: String,
    },
    /// An operation only the SQLite backend has (a test hook).
    #[error("{0} needs an SQLite journal")]
    SqliteOnly(&'static str),
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
    RunNotRunning { run: String, state: RunState },
    /// Another process drives the run.
    #[error(
        "run `{run}` is driven by process {pid} on host `{host}` (lease valid until {until}){note}; \
         wait for it to finish, or for the lease to expire if that process is gone",
        note = gone_note(*.holder_gone)
    )]
    LeaseHeld {
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
    /// The lease time is out of bounds ([`crate::lease_out_of_bounds`], the one rule).
    #[error("`journal_lease` {why}")]
    BadLease {
        /// The lease asked for.
        ttl: std::time::Duration,
        /// Why it is not allowed (`must be at least 1s, not 10ms (...)`).
        why: String,
    },
    /// This journal handle writes for a run it does not drive.
    #[error("this process does not hold the lease of run `{run}`: acquire it first")]
    LeaseNotHeld { run: String },
    /// Our lease expired and another process took the run over: stop acting at once.
    #[error(
        "the lease of run `{run}` was taken over by process {pid} on host `{host}`: this process must stop driving it"
    )]
    LeaseLost {
        run: String,
        /// New holder's pid.
        pid: u32,
        /// New holder's host.
        host: String,
    },
    /// Our lease expired (nobody took it yet); refresh it before acting again.
    #[error("the lease of run `{run}` expired at {until}: refresh it before starting anything")]
    LeaseExpired {
        run: String,
        /// When it expired.
        until: WallTime,
    },
    /// A VM of this run is being moved by another live run (one with an unexpired lease: its
    /// process may be gone, killed or crashed, and then the message says so and names
    /// `vmove resume`, which takes it over at once).
    #[error(
        "VM `{name}` ({vm}) is being moved by run `{other_run}`, {}: two runs may not move the same VM{}",
        holder_words(*.pid, host, *.holder_dead),
        resume_hint(other_run, *.holder_dead)
    )]
    VmInUse {
        vm: String,
        /// VM name.
        name: String,
        /// The other run.
        other_run: String,
        /// Its driver's pid.
        pid: u32,
        /// Its driver's host.
        host: String,
        /// Its driver is provably gone (on this machine and boot, its pid gone or another
        /// process's: [`crate::holder::holder_state`]); false while it runs or cannot be seen
        /// from here.
        holder_dead: bool,
    },
    /// The new run's selection may match VMs that another live run has not selected yet.
    #[error("{}", overlap_words(other_run, source_host, *.pid, host, *.holder_dead))]
    SelectionOverlap {
        /// The shared source host.
        source_host: String,
        /// The other run.
        other_run: String,
        /// Its driver's pid.
        pid: u32,
        /// Its driver's host.
        host: String,
        /// Its driver is provably gone (as in [`JournalError::VmInUse`]).
        holder_dead: bool,
    },
    /// A VM named in a request is not one of the run's.
    #[error(
        "run `{run}` has no VM `{vm}` (name it by its name or id, as `vmove status {run}` shows)"
    )]
    UnknownVm { run: String, vm: String },
    /// A per-VM stop that cannot be honoured in the VM's phase; nothing was written.
    #[error("cannot {action} VM `{name}` of run `{run}`: {why}")]
    VmStopRefused {
        run: String,
        /// VM name.
        name: String,
        /// `skip` or `abort`.
        action: &'static str,
        /// Why (its phase, and what to do instead).
        why: String,
    },
    /// A slot reservation that makes no sense (a move from a host to itself); nothing was
    /// written.
    #[error("cannot reserve slots for VM `{vm}` of run `{run}`: {why}")]
    BadSlotRequest {
        run: String,
        vm: String,
        why: String,
    },
    /// An outcome names an intent the run does not have.
    #[error("run `{run}` has no intent {intent}")]
    UnknownIntent { run: String, intent: u64 },
    /// An intent can have one outcome only.
    #[error("intent {intent} of run `{run}` already has an outcome")]
    DuplicateOutcome { run: String, intent: u64 },
    /// A value could not be written as JSON.
    #[error("could not encode a journal record as JSON")]
    Encode(#[source] serde_json::Error),
    /// A stored record does not decode (written by an incompatible build, or damaged).
    #[error("record {seq} of run `{run}` does not decode")]
    Decode {
        run: String,
        /// Sequence number (0: the run's own row).
        seq: u64,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A stored number that no vmove writes below 0 (an entry's sequence number or run time, an
    /// answered intent's number, a status's entry): read as an unsigned number it would turn
    /// into one near 2^64 (a run time that far set off every watchdog of a resumed run).
    #[error(
        "the journal's run {run} holds {value} as {what}, below 0, which vmove never writes: the \
         journal was edited or damaged (nothing was changed)"
    )]
    Negative {
        run: String,
        /// What the number is, with where it is (`the run time of entry 12`).
        what: String,
        value: i64,
    },
    /// Entries are missing from a run, or one stands past its last: vmove numbers a run's
    /// entries 1, 2, 3... in the transaction that writes each, and never deletes one, so a gap
    /// or an entry past the run's count means the journal was edited or damaged, and a replay
    /// of what is left would tell a wrong story (an intent without the outcome that answered it).
    #[error(
        "the journal's run {run} {what}, which vmove never leaves: the journal was edited or \
         damaged (nothing was changed)"
    )]
    Gap {
        run: String,
        /// What is wrong, with where (`lacks entries 4 to 6`).
        what: String,
    },
    /// A stored value is not one this build knows.
    #[error("the journal holds an unknown {what} `{value}`")]
    Corrupt {
        /// Which column.
        what: &'static str,
        value: String,
    },
    /// The blocking task a journal call ran on died (feature `sink`).
    #[error("a journal call did not complete: {0}")]
    Worker(String),
}

impl JournalError {
    /// SQLite said the file is locked by another connection (`SQLITE_BUSY`), at the open or in
    /// a statement.
    pub fn is_busy(&self) -> bool {
        let e = match self {
            JournalError::Open { source, .. } | JournalError::Sqlite(source) => source,
            _ => return false,
        };
        matches!(
            e,
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy
        )
    }
}

/// The low byte of an extended SQLite result code is its primary code
/// (<https://www.sqlite.org/rescode.html#extrc>).
const PRIMARY_CODE_MASK: i32 = 0xff;

/// What SQLite's answer means, with its primary result code's name (`SQLITE_FULL`...): the
/// words a user needs to act ("disk full", "damaged"), the code to search for. Codes from
/// <https://www.sqlite.org/rescode.html>.
pub fn sqlite_cause(e: &rusqlite::Error) -> String {
    let f = match e {
        rusqlite::Error::SqliteFailure(f, _) => f,
        // SQLite's words about a statement, without the statement (a schema runs to pages).
        rusqlite::Error::SqlInputError { error, msg, .. } => {
            return format!(
                "SQLite refused a statement ({}; result code {})",
                one_line(msg),
                error.extended_code
            );
        }
        e => return format!("SQLite failed ({})", one_line(&e.to_string())),
    };
    use rusqlite::ffi;
    let (what, code) = match f.extended_code & PRIMARY_CODE_MASK {
        ffi::SQLITE_FULL => ("disk full", "SQLITE_FULL"),
        ffi::SQLITE_CORRUPT => ("the database file is damaged", "SQLITE_CORRUPT"),
        ffi::SQLITE_NOTADB => ("the file is not a journal database", "SQLITE_NOTADB"),
        ffi::SQLITE_IOERR => ("I/O error", "SQLITE_IOERR"),
        ffi::SQLITE_READONLY => ("the file or its folder is read-only", "SQLITE_READONLY"),
        ffi::SQLITE_CANTOPEN => ("the file cannot be opened", "SQLITE_CANTOPEN"),
        ffi::SQLITE_PERM => ("permission denied", "SQLITE_PERM"),
        ffi::SQLITE_AUTH => ("access denied", "SQLITE_AUTH"),
        ffi::SQLITE_BUSY => ("locked by another process", "SQLITE_BUSY"),
        ffi::SQLITE_LOCKED => ("a table is locked", "SQLITE_LOCKED"),
        ffi::SQLITE_NOMEM => ("out of memory", "SQLITE_NOMEM"),
        ffi::SQLITE_PROTOCOL => ("file locking failed", "SQLITE_PROTOCOL"),
        ffi::SQLITE_CONSTRAINT => ("a constraint was violated", "SQLITE_CONSTRAINT"),
        _ => return format!("SQLite failed (result code {})", f.extended_code),
    };
    if f.extended_code > PRIMARY_CODE_MASK {
        format!("{what} ({code}, extended code {})", f.extended_code)
    } else {
        format!("{what} ({code})")
    }
}

/// The longest text of SQLite's (or another cause's) an error message embeds.
const CAUSE_MAX_CHARS: usize = 200;

/// A cause's text as one short line: its first line, at most [`CAUSE_MAX_CHARS`] characters
/// (SQLite's messages may carry whole statements).
fn one_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim_end();
    let line = line.strip_suffix(" in").unwrap_or(line);
    let mut out: String = line.chars().take(CAUSE_MAX_CHARS).collect();
    if out.len() < line.len() || s.trim_end().contains('\n') {
        out.push_str(" ...");
    }
    out
}

impl JournalError {
    /// The whole message, each cause after a colon (`Display` gives only the first): what a
    /// sink or a log line that cannot print a chain shows.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            // A statement SQLite refused was said by `sqlite_cause` (without the statement), and
            // its bare result code (`Error code 13: ...`) too; any other cause in one short line.
            let said = matches!(
                e.downcast_ref::<rusqlite::Error>(),
                Some(rusqlite::Error::SqlInputError { .. })
            );
            let s = one_line(&e.to_string());
            if !said && !out.ends_with(&s) && !s.starts_with("Error code ") {
                out.push_str(": ");
                out.push_str(&s);
            }
            next = e.source();
        }
        out
    }

    /// Whether SQLite said the disk (or file system) is full.
    pub fn is_disk_full(&self) -> bool {
        let e = match self {
            JournalError::Sqlite(e) | JournalError::Open { source: e, .. } => e,
            _ => return false,
        };
        matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
    }
}

/// What a PostgreSQL error says: the server's message with its SQLSTATE, or the client's.
#[cfg(feature = "postgres")]
pub fn pg_cause(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

/// Who drives another live run, as [`JournalError::VmInUse`] says it: `driven by process 4242
/// on host `ops1``, or, when that process is provably gone, `whose process 4242 on host `ops1`
/// is no longer running`.
fn holder_words(pid: u32, host: &str, dead: bool) -> String {
    if dead {
        format!("whose process {pid} on host `{host}` is no longer running")
    } else {
        format!("driven by process {pid} on host `{host}`")
    }
}

/// [`JournalError::SelectionOverlap`]'s message.
fn overlap_words(run: &str, source_host: &str, pid: u32, host: &str, dead: bool) -> String {
    if !dead {
        return format!(
            "run `{run}` (process {pid} on host `{host}`) is still selecting VMs on source \
             `{source_host}`, and its selection may overlap this one: wait until it has selected \
             its VMs"
        );
    }
    format!(
        "run `{run}` stopped while selecting VMs on source `{source_host}` (its process {pid} on \
         host `{host}` is no longer running), and its selection may overlap this one: go on \
         with that run with `vmove resume {run}` (it takes over at once), or wait for its lease \
         to expire"
    )
}

/// What to do about a run whose process is gone: resume it (a holder provably gone on this
/// machine is taken over at once).
fn resume_hint(run: &str, dead: bool) -> String {
    if !dead {
        return String::new();
    }
    format!(
        "; go on with that run with `vmove resume {run}` (it takes over at once and finishes or \
         rolls back what was left in flight)"
    )
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
