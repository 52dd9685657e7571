//! Helpers for tests in other crates (feature `test-util`).

use crate::clock::{ManualClock, WallTime};
use crate::error::Result;
use crate::journal::{Journal, Options};
use crate::record::Holder;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A fresh journal file path in a new directory under the system's temp dir (removed by the
/// caller, or left for inspection when a test fails).
pub fn temp_journal_path(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("vmove-journal-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir.join("journal.sqlite")
}

/// Opens a journal on a manual clock, as the given holder.
pub fn open_manual(
    path: &std::path::Path,
    clock: &ManualClock,
    holder: Holder,
    ttl: Duration,
) -> Result<Journal> {
    Journal::open_with(
        path,
        Options {
            clock: Arc::new(clock.clone()),
            holder,
            lease_ttl: ttl,
            ..Options::default()
        },
    )
}

/// A manual clock at a fixed, readable wall time (2026-01-01T00:00:00Z).
pub fn manual_clock() -> ManualClock {
    ManualClock::new(WallTime(1_767_225_600_000))
}
