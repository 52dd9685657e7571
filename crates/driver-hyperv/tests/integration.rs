//! The integration tests of `vmove-driver-hyperv`: one module per file beside this one, all built as one test
//! binary. `cargo test -p vmove-driver-hyperv --test integration MODULE::` runs one file's tests
//! (MODULE.rs's), `... -- --list` names them all. One binary instead of one per file: each
//! was linked with every dependency and optimised on its own, most of CI's build time
//! (ARCHITECTURE.md, "Test tiers").

#[cfg(feature = "test-util")]
mod common;

#[cfg(feature = "test-util")]
mod cli_e2e;
#[cfg(feature = "test-util")]
mod conformance;
#[cfg(feature = "test-util")]
mod failed_attempt_leftovers;
#[cfg(feature = "test-util")]
mod fake_protocol;
mod fuzz_parsers;
#[cfg(feature = "test-util")]
mod host_model;
#[cfg(feature = "test-util")]
mod https_basic;
#[cfg(all(feature = "test-util", feature = "kerberos"))]
mod kerberos;
mod live;
#[cfg(feature = "test-util")]
mod preflight;
#[cfg(feature = "test-util")]
mod pypsrp_crosscheck;
#[cfg(feature = "test-util")]
mod real_host_behaviour;
