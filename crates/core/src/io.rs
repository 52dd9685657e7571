//! What the core asks the outside world to do ([`Command`]) and what the world tells it back
//! ([`Input`]).
//!
//! Every command that expects an answer is answered by exactly one input naming the same VM and
//! attempt (host refreshes name the host). The runtime may also push [`Input::MigrationStatus`]
//! unasked (when a driver learns that a migration ended); the core treats it like a poll reply.

use crate::model::{
    ConvergenceAid, Failure, HostId, HostInfo, Leftover, Location, MigrationHandle,
    MigrationRequest, MigrationStatus, Verification, VmId, VmInfo,
};
use crate::time::Time;
use serde::{Deserialize, Serialize};

/// Why leftovers are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftoverContext {
    /// The move was verified: list what stays on the SOURCE.
    AfterSuccess,
    /// An attempt failed and the VM was located on the source: list what the attempt left on the
    /// DESTINATION (pre-created images, a half-defined VM that does not run).
    AfterFailedAttempt,
}

/// A request from the core to the runtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "command")]
pub enum Command {
    /// Read a host's info and its VM list. Answer: [`Input::HostRefreshed`].
    RefreshHost {
        /// The host.
        host: HostId,
    },
    /// Start one attempt. Answer: [`Input::MigrationStarted`].
    StartMigration(MigrationRequest),
    /// Read a migration's status. Answer: [`Input::MigrationStatus`].
    PollMigration {
        /// VM.
        vm: VmId,
        /// Attempt.
        attempt: u32,
        /// Source host (where the job lives).
        source: HostId,
        /// Destination host.
        destination: HostId,
        /// The driver's handle.
        handle: MigrationHandle,
    },
    /// Abort a migration. Answer: [`Input::AbortDone`].
    AbortMigration {
        /// VM.
        vm: VmId,
        /// Attempt.
        attempt: u32,
        /// Source host.
        source: HostId,
        /// Destination host.
        destination: HostId,
        /// The driver's handle.
        handle: MigrationHandle,
    },
    /// Apply a convergence aid. Answer: [`Input::Converged`].
    Converge {
        /// VM.
        vm: VmId,
        /// Attempt.
        attempt: u32,
        /// Source host.
        source: HostId,
        /// The driver's handle.
        handle: MigrationHandle,
        /// Which aid.
        aid: ConvergenceAid,
    },
    /// Find where the VM is now. Answer: [`Input::Located`].
    Locate {
        /// VM.
        vm: VmId,
        /// Attempt.
        attempt: u32,
        /// The request of the attempt whose outcome is unclear.
        request: MigrationRequest,
    },
    /// Prove the VM arrived. Answer: [`Input::Verified`].
    Verify {
        /// VM.
        vm: VmId,
        /// Attempt.
        attempt: u32,
        /// The attempt's request.
        request: MigrationRequest,
    },
    /// List leftovers. Answer: [`Input::LeftoversListed`].
    ListLeftovers {
        /// VM.
        vm: VmId,
        /// Attempt.
        attempt: u32,
        /// The attempt's request.
        request: MigrationRequest,
        /// Which side and why.
        context: LeftoverContext,
    },
    /// Remove one leftover. Answer: [`Input::LeftoverRemoved`].
    RemoveLeftover {
        /// VM.
        vm: VmId,
        /// Attempt.
        attempt: u32,
        /// The leftover.
        leftover: Leftover,
        /// Why it may be removed.
        context: LeftoverContext,
    },
}

impl Command {
    /// The VM this command is about, if any.
    pub fn vm(&self) -> Option<&VmId> {
        match self {
            Command::RefreshHost { .. } => None,
            Command::StartMigration(r) => Some(&r.vm),
            Command::PollMigration { vm, .. }
            | Command::AbortMigration { vm, .. }
            | Command::Converge { vm, .. }
            | Command::Locate { vm, .. }
            | Command::Verify { vm, .. }
            | Command::ListLeftovers { vm, .. }
            | Command::RemoveLeftover { vm, .. } => Some(vm),
        }
    }
}

/// What the world tells the core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "input")]
pub enum Input {
    /// Answer to [`Command::RefreshHost`].
    HostRefreshed {
        /// The host.
        host: HostId,
        /// When the refresh was asked for (figures reflect the host at or after this time).
        requested_at: Time,
        /// Its info and VMs, or why they could not be read.
        result: Result<(HostInfo, Vec<VmInfo>), Failure>,
    },
    /// Answer to [`Command::StartMigration`].
    MigrationStarted {
        /// VM.
        vm: VmId,
        /// Attempt.
        attempt: u32,
        /// The handle, or why it did not start.
        result: Result<MigrationHandle, Failure>,
    },
    /// Answer to [`Command::PollMigration`], or pushed unasked.
    MigrationStatus {
        /// VM.
        vm: VmId,
        /// Attempt.
        attempt: u32,
        /// The status, or why it could not be read (that alone does not fail the attempt).
        result: Result<MigrationStatus, Failure>,
    },
    /// Answer to [`Command::AbortMigration`].
    AbortDone {
        /// VM.
        vm: VmId,
        /// Attempt.
        attempt: u32,
        /// Whether the abort was accepted.
        result: Result<(), Failure>,
    },
    /// Answer to [`Command::Converge`].
    Converged {
        /// VM.
        vm: VmId,
        /// Attempt.
        attempt: u32,
        /// `Ok(true)` applied, `Ok(false)` the driver has no such aid.
        result: Result<bool, Failure>,
    },
    /// Answer to [`Command::Locate`].
    Located {
        /// VM.
        vm: VmId,
        /// Attempt.
        attempt: u32,
        /// Where it is.
        result: Result<Location, Failure>,
    },
    /// Answer to [`Command::Verify`].
    Verified {
        /// VM.
        vm: VmId,
        /// Attempt.
        attempt: u32,
        /// The proof, or why it could not be checked.
        result: Result<Verification, Failure>,
    },
    /// Answer to [`Command::ListLeftovers`].
    LeftoversListed {
        /// VM.
        vm: VmId,
        /// Attempt.
        attempt: u32,
        /// The leftovers.
        result: Result<Vec<Leftover>, Failure>,
    },
    /// Answer to [`Command::RemoveLeftover`].
    LeftoverRemoved {
        /// VM.
        vm: VmId,
        /// Attempt.
        attempt: u32,
        /// What was to be removed.
        leftover: Leftover,
        /// Whether it was.
        result: Result<(), Failure>,
    },
    /// The operator asks the run to stop: no new moves; with `abort_running`, abort those in flight.
    Stop {
        /// Abort running migrations too.
        abort_running: bool,
    },
}

impl Input {
    /// The VM and attempt this input answers for, if it is about one VM.
    pub fn vm_attempt(&self) -> Option<(&VmId, u32)> {
        match self {
            Input::HostRefreshed { .. } | Input::Stop { .. } => None,
            Input::MigrationStarted { vm, attempt, .. }
            | Input::MigrationStatus { vm, attempt, .. }
            | Input::AbortDone { vm, attempt, .. }
            | Input::Converged { vm, attempt, .. }
            | Input::Located { vm, attempt, .. }
            | Input::Verified { vm, attempt, .. }
            | Input::LeftoversListed { vm, attempt, .. }
            | Input::LeftoverRemoved { vm, attempt, .. } => Some((vm, *attempt)),
        }
    }
}
