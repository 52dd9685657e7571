//! What the core asks the outside world to do ([`Command`]) and what the world tells it back
//! ([`Input`]).
//!
//! Every command about an attempt carries that attempt's [`MigrationRequest`] (the machine's
//! in-flight states hold it), so whoever carries it out (the runtime's drivers, the simulator)
//! hands the driver the request the attempt was started with and remembers nothing. Every
//! command that expects an answer is answered by exactly one input naming the same VM and
//! attempt (host refreshes name the host): what an answer is matched to its command by is
//! their [`Key`] ([`Command::key`], [`Input::key`]), and the answer to a command that could not
//! be carried out is [`Command::failed`]. The runtime may also push [`Input::MigrationStatus`]
//! unasked (when a driver learns that a migration ended); the core treats it like a poll reply.

use crate::model::{
    ConvergenceAid, Failure, HostId, HostInfo, Leftover, Location, MigrationHandle,
    MigrationRequest, MigrationStatus, Preflight, Verification, VmId, VmInfo,
};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

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
    /// Ask, by reading only, whether the VM can move on this route before its next attempt
    /// starts. `request` is the request the attempt would be started with (its `attempt` is the
    /// number that attempt will have). Answer: [`Input::Preflighted`].
    Preflight {
        /// The request of the attempt it precedes.
        request: Arc<MigrationRequest>,
    },
    /// Start one attempt. Answer: [`Input::MigrationStarted`].
    StartMigration(Arc<MigrationRequest>),
    /// Read a migration's status. Answer: [`Input::MigrationStatus`].
    PollMigration {
        /// The attempt's request (the job lives on its source).
        request: Arc<MigrationRequest>,
        /// The driver's handle.
        handle: MigrationHandle,
    },
    /// Abort a migration. Answer: [`Input::AbortDone`].
    AbortMigration {
        /// The attempt's request.
        request: Arc<MigrationRequest>,
        /// The driver's handle.
        handle: MigrationHandle,
    },
    /// Apply a convergence aid. Answer: [`Input::Converged`].
    Converge {
        /// The attempt's request.
        request: Arc<MigrationRequest>,
        /// The driver's handle.
        handle: MigrationHandle,
        /// Which aid.
        aid: ConvergenceAid,
    },
    /// Find where the VM is now. Answer: [`Input::Located`].
    Locate {
        /// The request of the attempt whose outcome is unclear.
        request: Arc<MigrationRequest>,
    },
    /// Prove the VM arrived. Answer: [`Input::Verified`].
    Verify {
        /// The attempt's request.
        request: Arc<MigrationRequest>,
    },
    /// List leftovers. Answer: [`Input::LeftoversListed`].
    ListLeftovers {
        /// The attempt's request.
        request: Arc<MigrationRequest>,
        /// Which side and why.
        context: LeftoverContext,
    },
    /// Remove one leftover. Answer: [`Input::LeftoverRemoved`].
    RemoveLeftover {
        /// The attempt's request.
        request: Arc<MigrationRequest>,
        /// The leftover (it names its host).
        leftover: Leftover,
        /// Why it may be removed.
        context: LeftoverContext,
    },
}

/// What an answer is matched to its intent by: the kind of call and what it is about. A
/// command and the input that answers it have the same key ([`Command::key`], [`Input::key`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// A host refresh.
    Refresh(HostId),
    /// A pre-flight check of the VM's next attempt (its number) toward the destination.
    Preflight(VmId, u32, HostId),
    /// A start of the VM's attempt.
    Start(VmId, u32),
    /// A status read of the VM's attempt.
    Poll(VmId, u32),
    /// An abort of the VM's attempt.
    Abort(VmId, u32),
    /// A convergence aid for the VM's attempt.
    Converge(VmId, u32),
    /// A look at the hosts for the VM's attempt.
    Locate(VmId, u32),
    /// A proof of the VM's attempt.
    Verify(VmId, u32),
    /// A listing of the leftovers of the VM's attempt.
    List(VmId, u32),
    /// A removal of one leftover of the VM's attempt.
    Remove(VmId, u32, Leftover),
}

impl Command {
    /// The attempt's request, for every command about one VM.
    pub fn request(&self) -> Option<&MigrationRequest> {
        match self {
            Command::RefreshHost { .. } => None,
            Command::Preflight { request }
            | Command::StartMigration(request)
            | Command::PollMigration { request, .. }
            | Command::AbortMigration { request, .. }
            | Command::Converge { request, .. }
            | Command::Locate { request, .. }
            | Command::Verify { request, .. }
            | Command::ListLeftovers { request, .. }
            | Command::RemoveLeftover { request, .. } => Some(request),
        }
    }

    /// The VM this command is about, if any.
    pub fn vm(&self) -> Option<&VmId> {
        self.request().map(|r| &r.vm)
    }

    /// The attempt this command is about, if any.
    pub fn attempt(&self) -> Option<u32> {
        self.request().map(|r| r.attempt)
    }

    /// What the answer to this command is matched to it by.
    pub fn key(&self) -> Key {
        match self {
            Command::RefreshHost { host } => Key::Refresh(host.clone()),
            Command::Preflight { request: r } => {
                Key::Preflight(r.vm.clone(), r.attempt, r.destination.clone())
            }
            Command::StartMigration(r) => Key::Start(r.vm.clone(), r.attempt),
            Command::PollMigration { request: r, .. } => Key::Poll(r.vm.clone(), r.attempt),
            Command::AbortMigration { request: r, .. } => Key::Abort(r.vm.clone(), r.attempt),
            Command::Converge { request: r, .. } => Key::Converge(r.vm.clone(), r.attempt),
            Command::Locate { request: r } => Key::Locate(r.vm.clone(), r.attempt),
            Command::Verify { request: r } => Key::Verify(r.vm.clone(), r.attempt),
            Command::ListLeftovers { request: r, .. } => Key::List(r.vm.clone(), r.attempt),
            Command::RemoveLeftover {
                request: r,
                leftover,
                ..
            } => Key::Remove(r.vm.clone(), r.attempt, leftover.clone()),
        }
    }

    /// The answer to this command when it could not be carried out (a sink refused it, its
    /// task died, the run is stopping): `failure` in the matching input. `requested_at` is when
    /// it was asked (a host refresh's answer says it).
    pub fn failed(&self, requested_at: Time, failure: Failure) -> Input {
        match self.key() {
            Key::Refresh(host) => Input::HostRefreshed {
                host,
                requested_at,
                result: Err(failure),
            },
            Key::Preflight(vm, attempt, destination) => Input::Preflighted {
                vm,
                attempt,
                destination,
                result: Err(failure),
            },
            Key::Start(vm, attempt) => Input::MigrationStarted {
                vm,
                attempt,
                result: Err(failure),
            },
            Key::Poll(vm, attempt) => Input::MigrationStatus {
                vm,
                attempt,
                result: Err(failure),
            },
            Key::Abort(vm, attempt) => Input::AbortDone {
                vm,
                attempt,
                result: Err(failure),
            },
            Key::Converge(vm, attempt) => Input::Converged {
                vm,
                attempt,
                result: Err(failure),
            },
            Key::Locate(vm, attempt) => Input::Located {
                vm,
                attempt,
                result: Err(failure),
            },
            Key::Verify(vm, attempt) => Input::Verified {
                vm,
                attempt,
                result: Err(failure),
            },
            Key::List(vm, attempt) => Input::LeftoversListed {
                vm,
                attempt,
                result: Err(failure),
            },
            Key::Remove(vm, attempt, leftover) => Input::LeftoverRemoved {
                vm,
                attempt,
                leftover,
                result: Err(failure),
            },
        }
    }
}

/// What the world tells the core. Every answer names the VM and attempt of the command it
/// answers (a host refresh, the host): an answer for an older attempt is ignored.
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
    /// Answer to [`Command::Preflight`]: `attempt` is the attempt the check precedes (one more
    /// than the VM's attempts so far).
    Preflighted {
        vm: VmId,
        attempt: u32,
        /// The destination checked.
        destination: HostId,
        /// What the check found, or why it could not be made (not a blocker: asked again).
        result: Result<Preflight, Failure>,
    },
    /// Answer to [`Command::StartMigration`].
    MigrationStarted {
        vm: VmId,
        attempt: u32,
        /// The handle, or why it did not start.
        result: Result<MigrationHandle, Failure>,
    },
    /// Answer to [`Command::StartMigration`] when the runtime did not carry it out because
    /// the cross-process slot ledger found the source or the destination full: nothing was
    /// asked of the hosts. `busy` names, per host, the slots other runs (other vmove
    /// processes' reservations, and migrations the hosts show that are not this run's) hold
    /// there, as the ledger counted them: the core counts them as foreign migrations until
    /// the host's next listing. Not a failure of the VM: queued again, the attempt uncounted.
    StartDeferred {
        vm: VmId,
        attempt: u32,
        /// Per host, the slots others hold there.
        busy: Vec<(HostId, u32)>,
    },
    /// Answer to [`Command::PollMigration`], or pushed unasked.
    MigrationStatus {
        vm: VmId,
        attempt: u32,
        /// The status, or why it could not be read (that alone does not fail the attempt).
        result: Result<MigrationStatus, Failure>,
    },
    /// Answer to [`Command::AbortMigration`].
    AbortDone {
        vm: VmId,
        attempt: u32,
        /// Whether the abort was accepted.
        result: Result<(), Failure>,
    },
    /// Answer to [`Command::Converge`].
    Converged {
        vm: VmId,
        attempt: u32,
        /// `Ok(true)` applied, `Ok(false)` the driver has no such aid.
        result: Result<bool, Failure>,
    },
    /// Answer to [`Command::Locate`].
    Located {
        vm: VmId,
        attempt: u32,
        /// Where it is. Boxed: a location holds two VM records, and unboxed it made every
        /// input (each progress answer too) three times the size of the next largest, copied
        /// whole at each hand-over.
        result: Result<Box<Location>, Failure>,
    },
    /// Answer to [`Command::Verify`].
    Verified {
        vm: VmId,
        attempt: u32,
        /// The proof, or why it could not be checked.
        result: Result<Verification, Failure>,
    },
    /// Answer to [`Command::ListLeftovers`].
    LeftoversListed {
        vm: VmId,
        attempt: u32,
        /// The leftovers.
        result: Result<Vec<Leftover>, Failure>,
    },
    /// Answer to [`Command::RemoveLeftover`].
    LeftoverRemoved {
        vm: VmId,
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
    /// The operator asks to stop one VM's move (`vmove skip RUN VM` / `vmove abort RUN VM`):
    /// a queued (or backing-off) VM is not moved; with `abort_running`, a running attempt is
    /// aborted and not retried. Refused (said in `EventKind::VmStopAsked`, nothing changed)
    /// when the VM has started and `abort_running` is false, or has already moved.
    StopVm {
        vm: VmId,
        /// Abort its migration if one runs.
        abort_running: bool,
        /// Who asked (for the reason).
        by: String,
        /// When, wall clock as the journal recorded it (for the reason).
        at: String,
    },
}

impl Input {
    /// The VM and attempt this input answers for, if it is about one VM.
    pub fn vm_attempt(&self) -> Option<(&VmId, u32)> {
        match self {
            Input::HostRefreshed { .. } | Input::Stop { .. } | Input::StopVm { .. } => None,
            Input::Preflighted { vm, attempt, .. }
            | Input::MigrationStarted { vm, attempt, .. }
            | Input::StartDeferred { vm, attempt, .. }
            | Input::MigrationStatus { vm, attempt, .. }
            | Input::AbortDone { vm, attempt, .. }
            | Input::Converged { vm, attempt, .. }
            | Input::Located { vm, attempt, .. }
            | Input::Verified { vm, attempt, .. }
            | Input::LeftoversListed { vm, attempt, .. }
            | Input::LeftoverRemoved { vm, attempt, .. } => Some((vm, *attempt)),
        }
    }

    /// The key of the command this input answers ([`Command::key`]); `None` for an input
    /// nobody asks for (a stop).
    pub fn key(&self) -> Option<Key> {
        Some(match self {
            Input::HostRefreshed { host, .. } => Key::Refresh(host.clone()),
            Input::Preflighted {
                vm,
                attempt,
                destination,
                ..
            } => Key::Preflight(vm.clone(), *attempt, destination.clone()),
            Input::MigrationStarted { vm, attempt, .. }
            | Input::StartDeferred { vm, attempt, .. } => Key::Start(vm.clone(), *attempt),
            Input::MigrationStatus { vm, attempt, .. } => Key::Poll(vm.clone(), *attempt),
            Input::AbortDone { vm, attempt, .. } => Key::Abort(vm.clone(), *attempt),
            Input::Converged { vm, attempt, .. } => Key::Converge(vm.clone(), *attempt),
            Input::Located { vm, attempt, .. } => Key::Locate(vm.clone(), *attempt),
            Input::Verified { vm, attempt, .. } => Key::Verify(vm.clone(), *attempt),
            Input::LeftoversListed { vm, attempt, .. } => Key::List(vm.clone(), *attempt),
            Input::LeftoverRemoved {
                vm,
                attempt,
                leftover,
                ..
            } => Key::Remove(vm.clone(), *attempt, leftover.clone()),
            Input::Stop { .. } | Input::StopVm { .. } => return None,
        })
    }
}
