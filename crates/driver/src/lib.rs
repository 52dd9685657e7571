//! The one trait every hypervisor implements, and the shared conformance suite.
//!
//! # Layout
//! - [`Driver`]: the contract (rustdoc on each method says what a driver must guarantee).
//! - [`DriverError`]: an error with its [`ErrorClass`], so the core can decide retry or give up.
//! - [`redact`]: [`redact_uris`], the one helper that hides user information (passwords) in
//!   URIs, for every error, journal row, log line and printout.
//! - [`files`]: what a path named as a file is when it is not a regular file, said one way.
//! - [`words`]: serde's words for a value of the wrong kind ("expected u32"), said for a person.
//! - `conformance` (feature `test-util`): the tests every driver runs against a fixture it sets up.
//!
//! One driver value serves every host of its kind named in the configuration; hosts are
//! addressed by their configured [`HostId`]. Driver types (libvirt flags, WMI objects, XML)
//! never appear in this trait.

use async_trait::async_trait;
pub use vmove_core::io::LeftoverContext;
pub use vmove_core::model::*;

#[cfg(feature = "test-util")]
pub mod conformance;
pub mod files;
pub mod redact;
pub mod words;

pub use redact::redact_uris;

/// Reads one host's `[hosts.<name>]` table into a driver's settings type. Its error names the
/// key at fault (serde's own message for a value of the wrong type does not) and says what the
/// key takes in plain words ([`words::plain`]): "`p2p`: must be `true` or `false`, not `yes`".
/// An unknown key names itself.
pub fn host_settings<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T, String> {
    settings_at(table, None)
}

/// [`host_settings`] whose error names the key's whole path from the config file's top,
/// `at` first: with `at` = `hosts.a`, "`hosts.a.vms[0].memory_gib`: must be a number, not
/// `lots`" (for a table whose nested tables and arrays a bare key would not place).
pub fn host_settings_at<T: serde::de::DeserializeOwned>(
    table: toml::Table,
    at: &str,
) -> Result<T, String> {
    settings_at(table, Some(at))
}

fn settings_at<T: serde::de::DeserializeOwned>(
    table: toml::Table,
    at: Option<&str>,
) -> Result<T, String> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let message = words::plain(inner.message().trim_end());
        let message = message.as_str();
        let bare = key.is_empty() || key == ".";
        match at {
            None if bare || message.contains(&format!("`{key}`")) => message.to_owned(),
            None => format!("`{key}`: {message}"),
            Some(at) if bare => format!("`{at}`: {message}"),
            Some(at) => format!("`{at}.{key}`: {message}"),
        }
    })
}

/// An error from a driver, with the class that tells the core what to do about it. Its
/// constructors, its `Display` and its conversion to the core's [`Failure`] hide user
/// information in URIs ([`redact_uris`]), so a password in a configured URI reaches no
/// message, journal row or report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", redact_uris(message))]
pub struct DriverError {
    /// Retry, give up, try another destination, or look first.
    pub class: ErrorClass,
    /// One sentence for a person (no secrets).
    pub message: String,
    /// The hypervisor's own code, when it has one (libvirt error code, WMI return value).
    pub code: Option<i64>,
}

impl DriverError {
    /// An error of class [`ErrorClass::Transient`], its message's URIs redacted.
    pub fn transient(message: impl Into<String>) -> Self {
        DriverError {
            class: ErrorClass::Transient,
            message: redact_uris(&message.into()).into_owned(),
            code: None,
        }
    }
    /// An error of class [`ErrorClass::Permanent`], its message's URIs redacted.
    pub fn permanent(message: impl Into<String>) -> Self {
        DriverError {
            class: ErrorClass::Permanent,
            message: redact_uris(&message.into()).into_owned(),
            code: None,
        }
    }
    /// The destination refuses this VM.
    pub fn destination_refused(message: impl Into<String>) -> Self {
        DriverError {
            class: ErrorClass::DestinationRefused,
            message: redact_uris(&message.into()).into_owned(),
            code: None,
        }
    }
    /// Unknown whether the action took place.
    pub fn indeterminate(message: impl Into<String>) -> Self {
        DriverError {
            class: ErrorClass::Indeterminate,
            message: redact_uris(&message.into()).into_owned(),
            code: None,
        }
    }
    /// Attaches the hypervisor's code.
    pub fn with_code(mut self, code: i64) -> Self {
        self.code = Some(code);
        self
    }
}

impl From<DriverError> for Failure {
    fn from(e: DriverError) -> Failure {
        Failure {
            class: e.class,
            message: redact_uris(&e.message).into_owned(),
        }
    }
}

/// What every driver call returns.
pub type DriverResult<T> = Result<T, DriverError>;

/// A hypervisor driver: the contract the engine relies on.
///
/// General rules:
/// - Every method may be called concurrently from several tasks, for different VMs and hosts.
/// - Blocking work (libvirt calls) runs off the async runtime (`spawn_blocking`).
/// - Errors carry a class: [`ErrorClass::Transient`] for what may pass (timeouts, locks, lost
///   connections before anything was asked), [`ErrorClass::Permanent`] for what will not,
///   [`ErrorClass::DestinationRefused`] when only the chosen destination is the problem, and
///   [`ErrorClass::Indeterminate`] when the driver cannot tell whether a state-changing call took
///   effect. A read-only call never returns `Indeterminate`.
/// - Nothing is ever deleted or overwritten unless the method's contract says so, and then only
///   after its own re-check.
#[async_trait]
pub trait Driver: Send + Sync + std::fmt::Debug {
    /// A short name of the driver kind ("sim", "libvirt", "hyperv").
    fn kind(&self) -> &'static str;

    /// The hosts this driver serves.
    fn hosts(&self) -> Vec<HostId>;

    /// A host's limits, load and capacity. `active_migrations` counts every migration in or out
    /// of the host that the hypervisor can see, whoever started it.
    async fn host_info(&self, host: &HostId) -> DriverResult<HostInfo>;

    /// Every VM defined on the host, with power state, health and activity. A VM arriving by
    /// migration shows `Activity::MigratingIn`; one leaving, `Activity::MigratingOut`.
    async fn list_vms(&self, host: &HostId) -> DriverResult<Vec<VmInfo>>;

    /// What the VM occupies: memory, disks (paths, formats, sizes, backing chains), config paths.
    /// A VM not on the host is a `Permanent` error whose message says "not found".
    async fn footprint(&self, host: &HostId, vm: &VmId) -> DriverResult<Footprint>;

    /// Pre-flight: can this VM move on this route (`req.source` to `req.destination`, in
    /// `req.mode`, with `req.layout`)? Answers the blockers (each with its reason and what a
    /// person can do) and the warnings, found by READING ONLY: nothing on either host changes
    /// (the conformance suite checks it). The engine asks it before a VM's first attempt on a
    /// destination and again before a retry; `vmove check` asks it for every VM and allowed
    /// destination. An `Err` means the check itself could not be made (a host unreachable):
    /// classed like any read, never `Indeterminate`. A VM not on the source is a `Permanent`
    /// error whose message says "not found".
    async fn preflight(&self, req: &MigrationRequest) -> DriverResult<Preflight>;

    /// Pre-flight of a host as a whole, as a source or a destination of moves: reachable,
    /// authenticated, migration enabled, ports, room. Read-only. The default reads
    /// [`Driver::host_info`] and reports a host that does not answer as a blocker
    /// (`host_unreachable`); drivers add what they can tell.
    async fn preflight_host(&self, host: &HostId) -> DriverResult<Preflight> {
        let mut found = Preflight::default();
        if let Err(e) = self.host_info(host).await {
            found.block(
                Finding::new(
                    "host_unreachable",
                    FindingScope::Host,
                    format!("{host} did not answer: {e}"),
                )
                .remedy("check the host's address, credentials and that its service runs"),
            );
        }
        Ok(found)
    }

    /// Starts one attempt and returns once the hypervisor has accepted it (it need not be running
    /// yet). Must refuse, without touching anything, when a destination path already holds a file
    /// (`DestinationRefused`), when the VM is not on the source (`Permanent`), or when the VM is
    /// busy (`Transient`). The VM must stay running on exactly one host at every moment.
    async fn start_migration(&self, req: &MigrationRequest) -> DriverResult<MigrationHandle>;

    /// The status of a migration this driver started (or adopted through [`Driver::locate`]).
    /// `Completed` means the hypervisor says it finished; the engine still verifies.
    async fn migration_status(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<MigrationStatus>;

    /// Waits until a migration this driver started ends and says how (`Completed` or `Failed`),
    /// for drivers that learn of the end as it happens (libvirt: the blocking migration call
    /// returns). The runtime awaits it beside the engine's polls, with no time-out, and hands the
    /// answer to the engine as an unasked status, so a finished migration is verified at once
    /// instead of at the next poll. `None` (the default) means "I cannot tell before a poll":
    /// the polls alone find the end. Read-only. Must never answer `Completed` for a migration
    /// whose status would not read `Completed` right after.
    async fn wait_for_end(
        &self,
        _req: &MigrationRequest,
        _handle: &MigrationHandle,
    ) -> Option<DriverResult<MigrationStatus>> {
        None
    }

    /// Asks the hypervisor to abort the migration. Afterwards the VM runs on the source only.
    /// Aborting a migration that already ended is not an error. For a migration left between
    /// its steps ([`Activity::MigrationInterrupted`] on the source), the abort is its roll-back:
    /// the source copy resumes, and only after the driver re-checked that no copy of the VM
    /// runs or arrives on the destination (else an error, nothing changed); a VM paused for any
    /// other reason (its owner's) stays as it is.
    async fn abort_migration(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<()>;

    /// Applies a convergence aid to a running live migration. `Ok(false)` when the driver has no
    /// such aid (the default).
    async fn converge(
        &self,
        _req: &MigrationRequest,
        _handle: &MigrationHandle,
        _aid: ConvergenceAid,
    ) -> DriverResult<bool> {
        Ok(false)
    }

    /// Where the VM is now: on the source, on the destination, and any migration of it that is
    /// not over (its job runs, or it was left between its steps: the source then shows
    /// [`Activity::MigrationInterrupted`]), with a handle the engine can poll or abort. Read-only.
    async fn locate(&self, req: &MigrationRequest) -> DriverResult<Location>;

    /// Proves the move: running (live) or defined (offline) on the destination, every disk present
    /// there at its expected size, and not running on the source. A source copy paused by an
    /// interrupted migration ([`Activity::MigrationInterrupted`]) counts as not running only when
    /// the driver proves the destination runs the copy THIS attempt made; the after-success
    /// clean-up then lists it (a definition) and `remove_leftover` stops it before removing it.
    /// Read-only.
    async fn verify(&self, req: &MigrationRequest) -> DriverResult<Verification>;

    /// Lists leftovers. `AfterSuccess`: what the moved VM left on the SOURCE (disk images of its
    /// whole chain, logs, a definition, folders that will be empty). `AfterFailedAttempt`: what the
    /// attempt left on the DESTINATION (pre-created images; never anything of another VM, and
    /// nothing at all if the VM runs there). Read-only.
    async fn leftovers(
        &self,
        req: &MigrationRequest,
        context: LeftoverContext,
    ) -> DriverResult<Vec<Leftover>>;

    /// Removes one leftover the engine got from [`Driver::leftovers`]. The driver re-checks before
    /// deleting: a folder only when empty, a disk only when no defined VM on that host uses it,
    /// a definition only when that VM is not running.
    async fn remove_leftover(
        &self,
        req: &MigrationRequest,
        leftover: &Leftover,
        context: LeftoverContext,
    ) -> DriverResult<()>;
}
