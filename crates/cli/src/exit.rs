//! The exit codes of `vmove`.

/// Every VM moved.
pub const EXIT_OK: u8 = 0;
/// An error before or during the run.
pub const EXIT_ERROR: u8 = 1;
/// Some VMs are unmigratable (or were not moved).
pub const EXIT_UNMIGRATABLE: u8 = 2;
/// Interrupted (Ctrl-C, SIGTERM, SIGHUP, or `vmove abort` through the journal).
pub const EXIT_INTERRUPTED: u8 = 130;
