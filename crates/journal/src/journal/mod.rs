//! [`Journal`]: one SQLite connection and the lease tokens this handle holds.
//!
//! # Rooms
//! - `handle`: the [`Journal`] value, its [`Options`], opening a file and its write transactions.
//! - `lease`: creating a run, taking, refreshing and giving up its lease, ending it ([`TakeOver`]).
//! - `guard`: the VM guard: refusing a VM or a selection another live run holds.
//! - `write`: the entries a lease holder writes (intents, outcomes, inputs, events, steps).
//! - `read`: what any process reads: runs, summaries, statuses, a whole run.
//! - `notes`: what any process may write: notes for a person and stop requests.
//! - `planned`: the plan a run was started with ([`PlannedMove`]): written once, read by the
//!   reports and the live page.
//! - `requests`: per-VM stop requests (`vmove skip RUN VM`, `vmove abort RUN VM`): written by
//!   any process, polled and marked delivered by the run's driving process.
//! - `slots`: the cross-process slot ledger: a start's slots reserved in one transaction that
//!   counts every live run's reservations and the hosts' foreign migrations ([`SlotGrant`]).
//! - `rows`: the rows read inside a transaction, shared by the others.

mod guard;
mod handle;
mod lease;
mod notes;
mod planned;
mod read;
mod requests;
mod rows;
mod slots;
mod write;

pub use handle::{Journal, MAX_LEASE, MIN_LEASE, Options, lease_out_of_bounds};
pub use lease::TakeOver;
pub use planned::PlannedMove;
pub use slots::{HostCount, SlotGrant, SlotReservation};
