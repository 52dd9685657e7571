//! The integration tests of `vmove-core`: one module per file beside this one, all built as one test
//! binary. `cargo test -p vmove-core --test integration MODULE::` runs one file's tests
//! (MODULE.rs's), `... -- --list` names them all. One binary instead of one per file: each
//! was linked with every dependency and optimised on its own, most of CI's build time
//! (ARCHITECTURE.md, "Test tiers").

mod common;

mod answers;
mod deferred;
mod eligibility;
mod failures;
mod interrupted;
mod io;
mod leftovers;
mod preflight;
mod resume;
mod scheduling;
mod stop_vm;
