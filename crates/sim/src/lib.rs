//! A simulated cluster for vmove.
//!
//! # Layout
//! - [`cluster`]: [`SimCluster`], the deterministic model: hosts, VMs, files, migrations with
//!   pre-copy rounds and fair NIC sharing, injected faults, a virtual clock.
//! - [`driver`]: [`SimDriver`], the [`vmove_driver::Driver`] over a shared cluster and a
//!   [`SimClock`] (manual, or real time scaled).
//! - [`config`]: a `driver = "sim"` host's `[hosts.<name>]` table -> the sim driver.
//! - [`persist`]: [`persist::PersistentSim`], a sim cluster kept in a state file (a write-ahead
//!   log of its state-changing calls) so that it outlives the process.
//! - [`run`]: [`simulate`], the discrete-event loop driving [`vmove_core::Core`] against a
//!   cluster on virtual time, with an observer hook called after every step.
//! - [`scenarios`]: the demo, random and large clusters, [`scenarios::from_observed`] (for
//!   `vmove plan`) and [`scenarios::lower_bound`].
//!
//! The benchmark binary `vmove-bench` (src/bin) compares our scheduler with the seed's.
//!
//! See `docs/simulation.md` for the model, its knobs and what it leaves out.

pub mod cluster;
pub mod config;
pub mod driver;
pub mod persist;
pub mod run;
pub mod scenarios;

pub use cluster::{
    DiskSpec, Faults, ForeignWindow, HostSpec, MidFault, MigrationEnd, RouteSpec, SimCluster,
    SimError, StartFault, VmSpec, Window,
};
pub use driver::{SimClock, SimDriver};
pub use run::{Exec, SimOptions, SimOutcome, SimRunError, Step, simulate, simulate_observed};
