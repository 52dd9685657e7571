//! The libvirt/KVM driver of vmove: shared-nothing live migrations (memory and every disk
//! copied while the VM runs) and offline moves of shut-off VMs (disks through libvirt's storage
//! volume streams), through the `virt` crate.
//!
//! # Layout
//! - [`LibvirtHostConfig`] (`config.rs`): one host's `[hosts.<name>]` table; [`LibvirtDriver::from_config`].
//! - `driver.rs`: [`LibvirtDriver`], the [`vmove_driver::Driver`] implementation, handing each
//!   call to the room of its phase in `driver/` (inventory, prepare, jobs, offline, verify,
//!   recovery, cleanup): every libvirt call runs in `spawn_blocking`; a migration runs on a
//!   blocking thread of its own with its own two connections, and reports its outcome through a
//!   record the status calls read.
//! - `host.rs`: blocking operations on one host, in `host/`: connections (`connection.rs`),
//!   pools and volumes (`storage.rs`), domains and their activity (`domain.rs`).
//! - `xml.rs`: reading domain/pool/volume XML and rewriting a domain for its destination (new
//!   paths, flattened backing chains, the provenance record left in `<metadata>`).
//! - `error.rs`: libvirt error codes and messages -> [`vmove_driver::ErrorClass`].
//! - `ffi.rs`: the only unsafe code: libvirt calls `virt` 0.5.0 does not wrap (or wraps unsoundly).
//!
//! # What the hosts must provide
//! A `dir` storage pool (default `images`) on every host; a destination folder outside it is
//! reached through a transient `dir` pool `vmove-<hash>` the driver creates. See
//! `docs/drivers/libvirt.md`.

mod config;
mod driver;
pub mod error;
mod ffi;
#[cfg(test)]
mod fuzz;
mod host;
mod provenance;
pub mod xml;
#[cfg(test)]
mod xml_samples;

pub use config::LibvirtHostConfig;
pub use driver::LibvirtDriver;
