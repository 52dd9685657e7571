//! The pure, deterministic engine of vmove.
//!
//! # Layout
//! - [`time`]: [`Time`], milliseconds since the run's epoch; always passed in.
//! - [`model`]: hosts, VMs, activity, migrations, failures: what drivers report.
//! - [`spec`]: what a run is asked to do ([`RunSpec`], [`Settings`]) and its validation.
//! - [`select`]: names and glob patterns against a host's VMs.
//! - [`io`]: [`Command`]s to the world and [`Input`]s from it.
//! - [`event`]: [`Event`]s for observers (UI, NDJSON, journal).
//! - [`machine`]: the per-VM move state machine (one exhaustive transition function).
//! - [`slots`]: the slot ledger (ours and foreign migrations per host).
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
pub mod slots;
pub mod spec;
pub mod time;
pub mod view;

pub use engine::{Core, Recovered, RecoveredState};
pub use event::{Event, EventKind, Phase, Reason, WaitReason};
pub use io::{Command, Input, Key, LeftoverContext};
pub use model::*;
pub use spec::{
    HostLimits, Order, RunSpec, SchedulerPolicy, Selection, Settings, SourceSpec, SpecError,
    WatchdogAction,
};
pub use time::Time;
pub use view::{HostView, Snapshot, VmView};

/// Formats a byte count for people ("1.5 GiB").
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// One GiB in bytes.
pub const GIB: u64 = 1 << 30;
