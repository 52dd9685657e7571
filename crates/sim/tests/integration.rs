//! The integration tests of `vmove-sim`: one module per file beside this one, all built as one test
//! binary. `cargo test -p vmove-sim --test integration MODULE::` runs one file's tests
//! (MODULE.rs's), `... -- --list` names them all. One binary instead of one per file: each
//! was linked with every dependency and optimised on its own, most of CI's build time
//! (ARCHITECTURE.md, "Test tiers").

mod cluster;
mod conformance;
mod determinism;
mod golden_ndjson;
mod leftovers;
mod packing;
mod parking;
mod peers;
mod properties;
mod scale;
mod shapes;
mod smoke;
