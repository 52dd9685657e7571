//! How often a look, a verification and an abort are tried before a VM is left for a person.

/// How many times an unanswerable Locate or Verify is retried before the VM is left for a person.
pub const OBSERVE_RETRIES: u32 = 60;
/// How many times an inconclusive verification is repeated before the VM is left for a person.
pub const VERIFY_RETRIES: u32 = 5;
/// How many times a migration that keeps running after an abort is aborted again.
pub const ABORT_RETRIES: u32 = 3;
/// Looks at the hosts (`recheck_interval` apart) a job may go on running after an abort that
/// was accepted, not answered, or answered with an indeterminate error, before the abort is
/// asked again (the rule: [`crate::machine`], "After an abort").
pub const ABORT_PATIENCE: u32 = 6;
/// The same after an abort refused for a passing reason: one more look, so that three passing
/// refusals do not use up [`ABORT_RETRIES`] in seconds.
pub const REFUSED_ABORT_PATIENCE: u32 = 2;
