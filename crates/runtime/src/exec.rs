//! Carrying out one [`Command`] against the drivers, with a time-out on every call, and turning
//! the result into the matching [`Input`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use vmove_core::spec::dur::format_duration;
use vmove_core::{Command, ErrorClass, Failure, HostId, Input, MigrationRequest, Time};
use vmove_driver::{Driver, DriverResult};

/// The drivers of a run: which driver serves each host. One driver value may serve many hosts.
pub type Drivers = HashMap<HostId, Arc<dyn Driver>>;

/// Whether a driver call may change something on a host (decides the class of a time-out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// Reads only: a time-out is transient (asking again is harmless).
    ReadOnly,
    /// Changes state: after a time-out nobody knows whether it happened (indeterminate).
    StateChanging,
}

/// What a command task returns: the core's answer, and for a migration it started, that
/// attempt's request (the run watches its end: [`Exec::watch_end`]).
#[derive(Debug)]
pub(crate) struct Answer {
    pub input: Input,
    pub started: Option<MigrationRequest>,
    /// The slot ledger could not be asked (the shared journal is down): the run waits for it.
    pub ledger_error: Option<String>,
}

/// A start under the slot ledger: its slots reserved first; not carried out when a host is
/// full, or when the ledger cannot be asked (both answered `Input::StartDeferred`; in the
/// second case the run waits for the journal with its starts paused, as in any outage).
pub(crate) async fn reserve_then_start(
    exec: Arc<Exec>,
    ledger: Arc<dyn crate::Ledger>,
    source: vmove_core::HostView,
    destination: vmove_core::HostView,
    cmd: Command,
    now: Time,
) -> Answer {
    let Command::StartMigration(req) = &cmd else {
        return exec.execute(cmd, now).await;
    };
    match ledger.reserve(req, &source, &destination).await {
        Ok(crate::LedgerAnswer::Granted) => exec.execute(cmd, now).await,
        Ok(crate::LedgerAnswer::Full(busy)) => Answer {
            input: Input::StartDeferred {
                vm: req.vm.clone(),
                attempt: req.attempt,
                busy,
            },
            started: None,
            ledger_error: None,
        },
        // The ledger cannot be asked (the shared journal is away): nothing was asked of the
        // hosts, so the start is deferred, not failed (its attempt does not count), and the
        // run waits for the journal with its starts paused.
        Err(e) => Answer {
            input: Input::StartDeferred {
                vm: req.vm.clone(),
                attempt: req.attempt,
                busy: Vec::new(),
            },
            started: None,
            ledger_error: Some(format!("slot ledger: {e}")),
        },
    }
}

/// Everything a command task needs.
#[derive(Debug)]
pub(crate) struct Exec {
    pub drivers: Drivers,
    pub call_timeout: Duration,
}

impl Exec {
    fn driver(&self, host: &HostId) -> Result<&Arc<dyn Driver>, Failure> {
        self.drivers.get(host).ok_or_else(|| {
            Failure::new(
                ErrorClass::Permanent,
                format!("no driver serves host `{host}`"),
            )
        })
    }

    /// Runs one driver call with the time-out; maps errors and time-outs to a [`Failure`].
    async fn call<T>(
        &self,
        what: &str,
        place: &str,
        kind: CallKind,
        fut: impl Future<Output = DriverResult<T>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.call_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.into()),
            Err(_elapsed) => {
                let class = match kind {
                    CallKind::ReadOnly => ErrorClass::Transient,
                    CallKind::StateChanging => ErrorClass::Indeterminate,
                };
                Err(Failure::new(
                    class,
                    format!(
                        "{what} on {place} did not answer within {}",
                        format_duration(self.call_timeout)
                    ),
                ))
            }
        }
    }

    /// [`Exec::call`] on the driver serving `host`; `also` names the other host the call asks
    /// (locate, verify and leftovers look at both ends), so a time-out names both.
    async fn on<'a, T, F>(
        &'a self,
        what: &str,
        host: &HostId,
        also: Option<&HostId>,
        kind: CallKind,
        f: impl FnOnce(&'a dyn Driver) -> F,
    ) -> Result<T, Failure>
    where
        F: Future<Output = DriverResult<T>>,
    {
        let d = self.driver(host)?;
        let place = match also {
            Some(other) if other != host => format!("hosts `{host}` and `{other}`"),
            _ => format!("host `{host}`"),
        };
        self.call(what, &place, kind, f(d.as_ref())).await
    }

    /// Awaits the end of a migration this run started, for drivers that can tell
    /// ([`Driver::wait_for_end`]); the answer is an unasked [`Input::MigrationStatus`]. No
    /// time-out: the engine's watchdogs and polls go on beside it, and the task is dropped when the
    /// run ends. A driver error is not passed on (the next poll will read the status).
    pub async fn watch_end(
        self: Arc<Self>,
        req: MigrationRequest,
        handle: vmove_core::MigrationHandle,
    ) -> Option<Input> {
        let d = self.driver(&req.source).ok()?;
        match d.wait_for_end(&req, &handle).await? {
            Ok(status) => Some(Input::MigrationStatus {
                vm: req.vm,
                attempt: req.attempt,
                result: Ok(status),
            }),
            // The polls go on and will read the status.
            Err(_) => None,
        }
    }

    /// Carries out `cmd` and returns the core's answer.
    pub async fn execute(self: Arc<Self>, cmd: Command, requested_at: Time) -> Answer {
        use CallKind::*;
        let input = match cmd {
            Command::RefreshHost { host } => {
                let result = async {
                    let d = self.driver(&host)?;
                    let place = format!("host `{host}`");
                    let (info, vms) = tokio::join!(
                        self.call(
                            "reading the host's figures",
                            &place,
                            ReadOnly,
                            d.host_info(&host)
                        ),
                        self.call("listing the VMs", &place, ReadOnly, d.list_vms(&host)),
                    );
                    Ok((info?, vms?))
                }
                .await;
                Input::HostRefreshed {
                    host,
                    requested_at,
                    result,
                }
            }
            Command::StartMigration(req) => {
                let result = async {
                    let d = self.driver(&req.source)?;
                    let dd = self.driver(&req.destination)?;
                    if d.kind() != dd.kind() {
                        return Err(Failure::new(
                            ErrorClass::Permanent,
                            format!(
                                "cannot move from a {} host (`{}`) to a {} host (`{}`)",
                                d.kind(),
                                req.source,
                                dd.kind(),
                                req.destination
                            ),
                        ));
                    }
                    self.call(
                        "starting the migration",
                        &format!("host `{}`", req.source),
                        StateChanging,
                        d.start_migration(&req),
                    )
                    .await
                }
                .await;
                let started = result.is_ok().then(|| (*req).clone());
                return Answer {
                    input: Input::MigrationStarted {
                        vm: req.vm.clone(),
                        attempt: req.attempt,
                        result,
                    },
                    started,
                    ledger_error: None,
                };
            }
            Command::PollMigration { request, handle } => Input::MigrationStatus {
                result: self
                    .on(
                        "reading the migration's status",
                        &request.source,
                        None,
                        ReadOnly,
                        |d| d.migration_status(&request, &handle),
                    )
                    .await,
                vm: request.vm.clone(),
                attempt: request.attempt,
            },
            Command::AbortMigration { request, handle } => Input::AbortDone {
                result: self
                    .on(
                        "aborting the migration",
                        &request.source,
                        None,
                        StateChanging,
                        |d| d.abort_migration(&request, &handle),
                    )
                    .await,
                vm: request.vm.clone(),
                attempt: request.attempt,
            },
            Command::Converge {
                request,
                handle,
                aid,
            } => Input::Converged {
                result: self
                    .on(
                        "applying a convergence aid",
                        &request.source,
                        None,
                        StateChanging,
                        |d| d.converge(&request, &handle, aid),
                    )
                    .await,
                vm: request.vm.clone(),
                attempt: request.attempt,
            },
            Command::Locate { request } => Input::Located {
                result: self
                    .on(
                        "locating the VM",
                        &request.source,
                        Some(&request.destination),
                        ReadOnly,
                        |d| d.locate(&request),
                    )
                    .await
                    .map(Box::new),
                vm: request.vm.clone(),
                attempt: request.attempt,
            },
            Command::Preflight { request } => Input::Preflighted {
                result: self
                    .on(
                        "checking whether the VM can move (pre-flight)",
                        &request.source,
                        Some(&request.destination),
                        ReadOnly,
                        |d| d.preflight(&request),
                    )
                    .await,
                vm: request.vm.clone(),
                attempt: request.attempt,
                destination: request.destination.clone(),
            },
            Command::Verify { request } => Input::Verified {
                result: self
                    .on(
                        "verifying the move",
                        &request.source,
                        Some(&request.destination),
                        ReadOnly,
                        |d| d.verify(&request),
                    )
                    .await,
                vm: request.vm.clone(),
                attempt: request.attempt,
            },
            Command::ListLeftovers { request, context } => Input::LeftoversListed {
                result: self
                    .on(
                        "listing leftovers",
                        &request.source,
                        Some(&request.destination),
                        ReadOnly,
                        |d| d.leftovers(&request, context),
                    )
                    .await,
                vm: request.vm.clone(),
                attempt: request.attempt,
            },
            Command::RemoveLeftover {
                request,
                leftover,
                context,
            } => Input::LeftoverRemoved {
                result: self
                    .on(
                        "removing a leftover",
                        &leftover.host,
                        None,
                        StateChanging,
                        |d| d.remove_leftover(&request, &leftover, context),
                    )
                    .await,
                vm: request.vm.clone(),
                attempt: request.attempt,
                leftover,
            },
        };
        Answer {
            input,
            started: None,
            ledger_error: None,
        }
    }
}

/// Whether a command may change something on a host.
pub(crate) fn call_kind(cmd: &Command) -> CallKind {
    match cmd {
        Command::StartMigration(_)
        | Command::AbortMigration { .. }
        | Command::Converge { .. }
        | Command::RemoveLeftover { .. } => CallKind::StateChanging,
        Command::RefreshHost { .. }
        | Command::Preflight { .. }
        | Command::PollMigration { .. }
        | Command::Locate { .. }
        | Command::Verify { .. }
        | Command::ListLeftovers { .. } => CallKind::ReadOnly,
    }
}
