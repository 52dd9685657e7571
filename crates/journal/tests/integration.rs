//! The integration tests of `vmove-journal`: one module per file beside this one, all built as one test
//! binary. `cargo test -p vmove-journal --test integration crash::` runs one file's tests (here
//! `crash.rs`'s), `... -- --list` names them all. One binary instead of one per file: each
//! was linked with every dependency and optimised on its own, most of CI's build time
//! (ARCHITECTURE.md, "Test tiers").

#[macro_use]
mod common;

mod command_line;
mod conformance;
mod conformance_leases;
mod conformance_slots;
mod conformance_storage;
mod crash;
mod full_disk;
mod old_commands;
mod planned_moves;
mod postgres;
mod postgres_outage;
mod postgres_tls;
mod rebuild;
mod replay_sim;
mod resume_refusals;
mod sink;
mod sink_lease;
mod slot_ledger_sim;
mod takeover;
mod vm_requests;
