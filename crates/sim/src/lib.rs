//! A simulated cluster for vmove.
//!
//! # Layout
//! - [`cluster`]: [`SimCluster`], the deterministic model: hosts, VMs, files, migrations with
//!   pre-copy rounds and fair NIC sharing, injected faults, a virtual clock.
//! - [`driver`]: [`SimDriver`], the [`vmove_driver::Driver`] over a shared cluster and a
//!   [`SimClock`] (manual, or real time scaled).
//!
//! See `docs/simulation.md` for the model, its knobs and what it leaves out.

pub mod cluster;
pub mod driver;

pub use cluster::{
    DiskSpec, Faults, ForeignWindow, HostSpec, MidFault, MigrationEnd, SimCluster, SimError,
    StartFault, VmSpec, Window,
};
pub use driver::{SimClock, SimDriver};
