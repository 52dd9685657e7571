//! The integration tests of `vmove`: one module per file beside this one, all built as one test
//! binary. `cargo test -p vmove --test integration crash::` runs one file's tests (here
//! `crash.rs`'s), `... -- --list` names them all. One binary instead of one per file: each
//! was linked with every dependency and optimised on its own, most of CI's build time
//! (ARCHITECTURE.md, "Test tiers").

mod common;
mod serve_support;
mod support;

mod bad_input;
mod check;
mod cli;
mod cli_runs;
mod control;
mod conventions;
mod crash;
mod event_schema;
mod exclude;
mod fit_and_report;
mod journal_safety;
mod json_and_reports;
mod output_and_signals;
mod postgres_journal;
mod postgres_outage;
mod serve;
mod serve_browser;
mod standby;
mod timeline;
