//! Tests against the real two-host libvirt lab (`lab/up.sh`): root, real libvirtd and QEMU.
//!
//! Every test skips, loudly, unless `VMOVE_LAB=1` (CI sets it after `lab/up.sh`; `lab/ci.sh`
//! does both). Run one at a time: `cargo test -p vmove-driver-libvirt --test lab -- --test-threads=1`.
#![allow(clippy::unwrap_used)]

mod catalogue;
mod common;
mod conformance;
mod dirty_rate;
mod interrupted;
mod moves;
mod restart;
