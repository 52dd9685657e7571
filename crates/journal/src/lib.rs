//! vmove-journal: the crash-safe record of every run, in SQLite (the embedded default) or a
//! shared PostgreSQL database (feature `postgres`, a `postgresql://` location).
//!
//! The runtime writes each [`Command`](vmove_core::Command) as an *intent* BEFORE carrying it
//! out, its answer ([`Input`](vmove_core::Input)) as an *outcome* after, and every
//! [`Event`](vmove_core::Event) the core emits. Each write is one SQLite transaction in WAL mode
//! with `synchronous = FULL`: when a `record_*` call returns, the record survives a crash of the
//! process or the machine. After a crash the journal holds a consistent prefix of what was
//! written: whole transactions, never part of one.
//!
//! Exactly one process drives a run: it holds the run's *lease* (a row with its pid, host and
//! expiry, refreshed periodically). Writes for a run need the lease; intents need an unexpired
//! one. A run whose VMs overlap those of another live run is refused. Any process may read
//! (`status`, `history`) and may ask a run to stop.
//!
//! Resume: [`Journal::acquire`] → [`Journal::load_run`] → [`recovered`] →
//! `vmove_core::Core::resume`, which locates every VM that may be in flight before acting.
//!
//! Calls block (fsync; waiting for another writer up to the busy timeout): from async code, own
//! the [`Journal`] on a dedicated thread or call it through `spawn_blocking`. It is `Send`, not
//! `Sync`; each reader opens its own.
//!
//! See `docs/journal.md` for the schema, the guarantees, the write protocol and what resume does
//! in each phase.
//!
//! # Layout
//! - [`journal`]: [`Journal`]: open, runs, leases, stop requests, records, reads (a room each).
//! - `codec`: how values are stored (JSON, URIs' user information hidden).
//! - [`record`]: the values stored and loaded ([`RunRecord`], [`Entry`], [`RunSummary`]...).
//! - [`status`]: [`VmStatus`], the per-VM latest state kept in step with the events.
//! - [`mod@rebuild`]: what resume needs per VM, computed from a loaded [`RunRecord`].
//! - [`schema`]: the tables and their ordered migrations.
//! - `upgrade`: rewrites of stored values whose shape changed (a migration's data work).
//! - `sink` (feature `sink`): `JournalSink`, the runtime sink that keeps the write protocol, and
//!   `Keeper`, the task that refreshes the lease and polls stop requests.
//! - [`holder`]: [`Holder`], who drives a run, and whether a holder on this machine is provably
//!   dead.
//! - [`mod@proc`]: what `/proc` says of a process (start time) and of this boot (boot id).
//! - [`clock`]: wall-clock time ([`WallTime`]), injectable for lease tests.
//! - [`error`]: the error type, [`JournalError`].
//! - `testing` (feature `test-util`): a journal in a temporary directory for other crates' tests.
//! - `pg_server` (feature `test-util`): a throw-away PostgreSQL server for tests.
//! - `location`: SQLite path or `postgresql://` URL; a PG journal's password sources.
//! - `db` (internal): the one connection every statement goes through (SQLite or PostgreSQL).

pub mod clock;
mod codec;
mod db;
pub mod error;
pub mod holder;
pub mod journal;
pub mod location;
#[cfg(feature = "test-util")]
pub mod pg_server;
pub mod proc;
pub mod rebuild;
pub mod record;
pub mod schema;
#[cfg(feature = "sink")]
pub mod sink;
pub mod status;
#[cfg(feature = "test-util")]
pub mod testing;
#[cfg(feature = "postgres")]
pub mod tls;
mod upgrade;

pub use clock::{Clock, ManualClock, SystemClock, WallTime};
pub use db::Backend;
pub use error::{JournalError, Result};
pub use holder::Holder;
pub use journal::{
    HostCount, Journal, MAX_LEASE, MIN_LEASE, Options, PlannedMove, SlotGrant, SlotReservation,
    TakeOver, lease_out_of_bounds,
};
pub use rebuild::{VmResume, rebuild, recovered};
pub use record::{
    ConfigFormat, Entry, EntryBody, IntentId, IntentRecord, LeaseInfo, NewRun, RunEnd, RunRecord,
    RunState, RunSummary, StepRecord, StopRequest, VmStopRequest,
};
pub use status::{ProgressFigures, VmStatus};
