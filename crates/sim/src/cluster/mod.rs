//! [`SimCluster`]: a synchronous, deterministic model of a cluster on a virtual clock.
//!
//! The cluster owns hosts, VMs, the files they keep on each host, and the migrations in flight.
//! Nothing happens unless [`SimCluster::advance_to`] moves the clock; every query and action is
//! answered at the cluster's current time ([`SimCluster::now`]). Given the same hosts, VMs,
//! faults and the same calls at the same times, it gives the same answers.
//!
//! Transfers are integer bytes at integer bytes/s over integer milliseconds; each migration's
//! rate is `min(stream cap, source NIC / n_source, destination NIC / n_destination)` where `n` is
//! every migration touching that host (ours, hung ones and foreign ones). Rates change only when
//! a migration starts or ends, or a foreign migration window opens or closes.
//!
//! # Rooms
//! - `spec`: what a cluster is built from ([`HostSpec`], [`RouteSpec`], [`VmSpec`], [`DiskSpec`]),
//!   [`SimError`], and the [`MigrationEnd`] the clock reports.
//! - `faults`: injected faults ([`Faults`], [`StartFault`], [`MidFault`], [`Window`],
//!   [`ForeignWindow`]).
//! - `state`: [`SimCluster`]'s hosts, VMs, files, migrations and wake-ups; building it; lookups.
//! - `query`: the ground truth for tests and reports.
//! - `ops`: the driver's operations at the current time.
//! - `files`: files on hosts, [`destination_path`], leftovers.
//! - `precopy`: the pre-copy model, bandwidth sharing, a migration's end.
//! - `queue`: the event queue and [`SimCluster::advance_to`].

mod faults;
mod files;
mod ops;
mod precopy;
mod query;
mod queue;
mod spec;
mod state;

pub use faults::{Faults, ForeignWindow, MidFault, StartFault, Window};
pub use files::destination_path;
pub(crate) use precopy::MIN_FINAL_ROUND;
pub use precopy::{DEFAULT_DOWNTIME_MS, MAX_DOWNTIME_MS};
pub(crate) use spec::MS_PER_SEC;
pub use spec::{
    DiskSpec, GIB, HostSpec, MIB, MigrationEnd, RouteSpec, Shape, SimError, VmSpec, uuid_like,
};
pub use state::SimCluster;
