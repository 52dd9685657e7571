//! The pure, deterministic engine of vmove.
//!
//! # Layout
//! - [`time`]: [`Time`], milliseconds since the run's epoch; always passed in.
//! - [`model`]: hosts, VMs, activity, migrations, failures: what drivers report; byte units.
//! - [`spec`]: what a run is asked to do ([`RunSpec`], [`Settings`]) and its validation
//!   (including compiling name patterns).
//! - [`select`]: a [`Selection`] applied to a host's VMs.
//! - [`io`]: [`Command`]s to the world and [`Input`]s from it.
//! - [`event`]: [`Event`]s for observers (UI, NDJSON, journal).
//! - [`machine`]: the per-VM move state machine: one table of (state, event) whose arms name
//!   transition functions, a file per phase.
//! - [`slots`]: the slot ledger (ours and foreign migrations per host), in the engine's folder.
//! - [`policy`]: retry backoff with seeded jitter.
//! - [`engine`]: [`Core`], which ties them together and schedules.
//! - [`view`]: snapshots for displays and reports.
//!
//! The core reads no clock, does no I/O and spawns nothing: it is driven by
//! [`Core::handle_event`], [`Core::handle_timeout`], [`Core::poll_command`],
//! [`Core::poll_event`] and [`Core::poll_timeout`].

pub mod engine;
pub mod event;
pub mod io;
pub mod machine;
pub mod model;
pub mod policy;
pub mod select;
pub mod spec;
pub use engine::slots;
pub mod time;
pub mod view;

pub use engine::{Core, Recovered, RecoveredState};
pub use event::{AttemptCall, Blocker, Event, EventKind, Phase, Reason, WaitReason, Watchdog};
pub use io::{Command, Input, Key, LeftoverContext};
pub use model::*;
pub use spec::{
    HostLimits, Order, RunSpec, SchedulerPolicy, Selection, Settings, SourceSpec, SpecError,
    WatchdogAction,
};
pub use time::Time;
pub use view::{HostView, Snapshot, VmView};
