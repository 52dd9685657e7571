//! The data the core reasons about: hosts, VMs, their activity, migrations and their outcome.
//!
//! These are plain, serialisable values. Drivers translate their hypervisor's objects into
//! them; nothing hypervisor-specific (libvirt flags, WMI objects, XML) appears here.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Equality and hashing of an id held as shared text (`Arc<str>`): equal when the texts are,
/// and two clones of one id answer from the pointer alone, without reading the text (the
/// engine's look-ups mostly compare an id with a clone of itself). Hashed as its text, so equal
/// ids hash alike.
macro_rules! shared_text_eq {
    ($t:ty) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
            }
        }
        impl std::hash::Hash for $t {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.0.hash(state);
            }
        }
    };
}

/// A host's name as written in the configuration (not necessarily its DNS name).
///
/// Shared text (`Arc<str>`): a clone is a reference count, not a copy of the name, so the
/// thousands of copies a large run's destination lists and moves hold cost a pointer each.
/// Serialized as the bare string, as before.
#[derive(Clone, Debug, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HostId(Arc<str>);

shared_text_eq!(HostId);

impl HostId {
    /// Builds a host id from anything string-like.
    pub fn new(s: impl Into<String>) -> Self {
        HostId(Arc::from(s.into()))
    }
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for HostId {
    fn from(s: &str) -> Self {
        HostId(Arc::from(s))
    }
}

/// A VM's stable identity: its UUID (libvirt) or GUID (Hyper-V). Names may repeat across hosts;
/// ids do not.
///
/// Shared text (`Arc<str>`), as [`HostId`]: the engine keeps an id in its index, its moves, its
/// timers and its commands, and a large run clones it millions of times; a clone is a reference
/// count. Serialized as the bare string.
#[derive(Clone, Debug, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VmId(Arc<str>);

shared_text_eq!(VmId);

impl VmId {
    /// Builds a VM id from anything string-like.
    pub fn new(s: impl Into<String>) -> Self {
        VmId(Arc::from(s.into()))
    }
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Whether `other` is this very id: the same shared text (one allocation, a pointer
    /// compare), not merely equal text. A driver that hands out the id it was given shows it
    /// so; one that reads each listing afresh never does.
    pub fn is_same_text(&self, other: &VmId) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Display for VmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for VmId {
    fn from(s: &str) -> Self {
        VmId(Arc::from(s))
    }
}

/// A VM's power state, as far as moving it is concerned.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum PowerState {
    /// Running: moved live.
    Running,
    /// Paused (libvirt) : moved live, stays paused.
    Paused,
    /// Powered off: moved offline (after the running ones by default).
    Off,
    /// Saved/hibernated state (Hyper-V): moved offline.
    Saved,
    /// Starting, stopping, saving...: not moved until it settles.
    Transitioning(String),
}

impl PowerState {
    /// Whether a VM in this state is moved live (memory and disks while it runs).
    pub fn is_live(&self) -> bool {
        matches!(self, PowerState::Running | PowerState::Paused)
    }
    /// Whether a VM in this state is moved offline (disks and definition only).
    pub fn is_offline(&self) -> bool {
        matches!(self, PowerState::Off | PowerState::Saved)
    }

    /// The mode a VM in this state is moved in: offline when it is off or saved, else live.
    /// The one rule the engine and `vmove check` both use.
    pub fn migration_mode(&self) -> MigrationMode {
        if self.is_offline() {
            MigrationMode::Offline
        } else {
            MigrationMode::Live
        }
    }
}

/// The primary operational status of a VM (Hyper-V's `OperationalStatus[0]`; libvirt: always Ok
/// unless the domain reports a crashed/blocked state).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum Health {
    /// Healthy.
    Ok,
    /// "In service": a job (backup, migration) is working on it; see [`Activity`].
    InService,
    /// Anything else, with the hypervisor's words (the seed's "any other status": unmigratable).
    Bad(String),
}

/// What is happening to a VM right now, besides running.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "activity", content = "detail")]
pub enum Activity {
    /// Nothing that would stop a migration.
    Idle,
    /// Migrating away from this host (ours or someone else's).
    MigratingOut,
    /// Arriving on this host by migration (ours or someone else's).
    MigratingIn,
    /// A backup job holds it.
    BackingUp,
    /// Another job (block copy, commit, snapshot, export...) holds it; the words say which.
    OtherJob(String),
    /// Paused on a migration's SOURCE by a migration whose driving client went away before the
    /// migration's last step (libvirt: `paused (migrating)` with no migration job left, the
    /// state its source is in after Perform until Confirm; see docs/drivers/libvirt.md,
    /// "Recovery after a killed client"). Nothing is copied any more: the hypervisor waits for
    /// someone to finish the migration (stop this copy: the destination's copy runs) or to roll
    /// it back (resume this copy: no copy runs on the destination). The engine does one or
    /// the other only for its own attempt, after looking at both hosts (`Locating`). Counts as a
    /// migration ([`Activity::is_migration`]): anyone else's is waited for, never touched.
    MigrationInterrupted,
}

impl Activity {
    /// Whether this activity is a migration (which occupies a slot on the host).
    pub fn is_migration(&self) -> bool {
        matches!(
            self,
            Activity::MigratingOut | Activity::MigratingIn | Activity::MigrationInterrupted
        )
    }
}

/// One VM as a host reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmInfo {
    /// Stable identity.
    pub id: VmId,
    /// Shared text: a host's listing is read again every poll interval, and a large run lists
    /// each VM thousands of times; a clone is a reference count, not an allocation.
    pub name: Arc<str>,
    pub power: PowerState,
    /// Primary operational status.
    pub health: Health,
    /// What is happening to it.
    pub activity: Activity,
    /// Memory the VM needs on a destination to run, in bytes.
    pub memory_bytes: u64,
    /// Disk space its disks take now (allocated), in bytes.
    pub disk_bytes: u64,
    /// How fast the guest dirties its memory, in bytes/s, where the hypervisor measured it
    /// (libvirt's dirty-rate calculation); `None` where it did not or cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_rate: Option<u64>,
}

/// What a host reports about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host-reported limit of concurrent migrations (Hyper-V's MaximumActiveVirtualSystemMigration);
    /// `None` when the hypervisor has no such limit (libvirt): the configured default applies.
    pub migration_limit: Option<u32>,
    /// Migrations in flight on the host (in and out, whoever started them), if the host counts them.
    pub active_migrations: u32,
    /// Memory free for new VMs, in bytes.
    pub free_memory_bytes: u64,
    /// Free space where migrated disks go, in bytes.
    pub free_disk_bytes: u64,
}

/// One disk of a VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// The path of the disk's top image on its host.
    pub path: String,
    /// Image format ("qcow2", "raw", "vhdx"...).
    pub format: String,
    /// The size the guest sees, in bytes.
    pub virtual_bytes: u64,
    /// The space the image takes on the host, in bytes (its whole backing chain).
    pub allocated_bytes: u64,
    /// Backing images, nearest first (empty for a flat image).
    pub backing_chain: Vec<String>,
}

/// Everything a VM occupies on its host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footprint {
    /// Memory, in bytes.
    pub memory_bytes: u64,
    pub disks: Vec<Disk>,
    /// Configuration files and folders (Hyper-V config root, libvirt has none on disk we own).
    pub config_paths: Vec<String>,
}

impl Footprint {
    /// Total allocated disk bytes (what a move copies, at most).
    pub fn disk_bytes(&self) -> u64 {
        self.disks.iter().map(|d| d.allocated_bytes).sum()
    }
}

/// Live (memory and disks while it runs) or offline (disks and definition of a stopped VM).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationMode {
    /// The VM keeps running; memory and disks are copied.
    Live,
    /// The VM is not running; disks and definition are copied.
    Offline,
}

impl fmt::Display for MigrationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MigrationMode::Live => "live",
            MigrationMode::Offline => "offline",
        })
    }
}

/// Where a moved VM's files go on the destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub struct PathLayout {
    /// Base folder (or libvirt pool path) on the destination; `None` keeps each disk's source path.
    pub base: Option<String>,
    /// Put each VM in `<base>/<vm name>` (the seed's `-PutInASubfolder`).
    pub put_in_subfolder: bool,
    /// Each disk keeps its source drive letter / volume (the seed's `-PreserveSourceVhdPathDriveLetter`).
    pub preserve_drive_letter: bool,
}

/// A request to start one attempt of one move.
///
/// Laid out in the order written (`repr(C)`): what every progress poll reads of it (the VM,
/// the attempt, the source) first, so that with the reference counts in front of it they take
/// one cache line of its shared allocation (the request is an `Arc`, cloned into every command
/// of the attempt), not two.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(C)]
pub struct MigrationRequest {
    pub vm: VmId,
    /// Which attempt this is (1-based); drivers put it in job names.
    pub attempt: u32,
    /// Live or offline.
    pub mode: MigrationMode,
    /// Where it is.
    pub source: HostId,
    /// Where it goes.
    pub destination: HostId,
    /// Its name (some hypervisors address VMs by name). Shared text, as the ids: the request
    /// is cloned into every command of the attempt.
    pub vm_name: Arc<str>,
    /// Destination file layout.
    pub layout: PathLayout,
    /// The run's id; drivers put it in job names so parallel runs don't mix their jobs.
    pub run_id: Arc<str>,
}

/// An opaque handle to a migration a driver started (a job id, a domain UUID...).
///
/// Shared text (`Arc<str>`), as [`VmId`]: every progress poll carries it; a clone is a
/// reference count. Serialized as the bare string.
#[derive(Clone, Debug, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MigrationHandle(pub Arc<str>);

shared_text_eq!(MigrationHandle);

/// Progress figures of a migration in flight.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Bytes transferred so far (memory and disks).
    pub bytes_done: u64,
    /// Bytes known to remain (0 when unknown).
    pub bytes_remaining: u64,
    /// Total bytes expected (0 when unknown).
    pub bytes_total: u64,
    /// Guest memory dirty rate in bytes/s, where known.
    pub dirty_rate: Option<u64>,
    /// Transfer rate in bytes/s, where known.
    pub transfer_rate: Option<u64>,
    /// Pre-copy iteration, where known.
    pub iteration: Option<u32>,
    /// Percent complete as the hypervisor says (Hyper-V's PercentComplete), where that is all there is.
    pub percent: Option<u8>,
}

/// What a driver says about a migration it started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum MigrationStatus {
    /// Accepted but not yet seen running (Hyper-V job state New/Starting).
    Pending,
    /// Running, with figures.
    Running(Progress),
    /// Finished successfully (verification still to come).
    Completed,
    /// Ended without success.
    Failed(Failure),
}

/// How a failure should be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Passing: retry with backoff (timeouts, locks, busy hosts, a lost connection before start).
    Transient,
    /// Will not go away by retrying this VM: unmigratable at once.
    Permanent,
    /// The destination cannot take this VM (no space, name clash, path taken): try another allowed
    /// destination, else unmigratable.
    DestinationRefused,
    /// Unknown whether the action happened (a connection lost mid-call): look at the hosts first.
    Indeterminate,
}

impl ErrorClass {
    /// The class as it is written everywhere, in text as in JSON (`transient`, `permanent`,
    /// `destination_refused`, `indeterminate`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::DestinationRefused => "destination_refused",
            ErrorClass::Indeterminate => "indeterminate",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified failure, as the core sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// How to treat it.
    pub class: ErrorClass,
    /// One sentence for a person.
    pub message: String,
}

impl Failure {
    /// A failure of the given class.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a pre-flight finding is about: whether another destination could help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingScope {
    /// The VM itself (its snapshots, its saved state, a host device): no destination helps.
    Vm,
    /// This destination (a network it lacks, a name it already has, no room): another may do.
    Destination,
    /// A host as a whole (unreachable, migration disabled), found by a driver's host check
    /// (`Driver::preflight_host`) or while checking a route.
    Host,
}

impl FindingScope {
    /// The scope as it is written in text and JSON (`vm`, `destination`, `host`).
    pub fn as_str(self) -> &'static str {
        match self {
            FindingScope::Vm => "vm",
            FindingScope::Destination => "destination",
            FindingScope::Host => "host",
        }
    }
}

/// One thing a pre-flight check found, for a person to read and a program to match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// A stable code, snake_case (`managed_save`, `snapshots`, `cdrom_missing`,
    /// `network_missing`, `name_taken`, `path_taken`...): the driver docs list every one.
    pub code: String,
    /// Whether another destination could help.
    pub scope: FindingScope,
    /// What was found, one sentence naming the thing (the file, the network, the device).
    pub message: String,
    /// What a person can do about it; empty when there is nothing to do.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remedy: String,
    /// Whether it may pass without anyone changing the VM (room on the destination that frees
    /// as other VMs leave it, a destination path that a move or a person frees): a blocker that
    /// may pass makes the engine wait for that destination (asked again, bounded), not give it
    /// up. Absent in JSON (and in journals written before it existed) means `false`: lasting.
    #[serde(default, skip_serializing_if = "is_false")]
    pub may_pass: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Finding {
    /// The code of a destination path that already holds a file that is not proven the VM's
    /// own. Every driver uses it for that finding, as a blocker that may pass.
    pub const PATH_TAKEN: &'static str = "path_taken";
    /// The code of a destination path that holds a partial copy an earlier attempt of this VM
    /// left there, proven its own (libvirt's provenance marker, Hyper-V's attempt record, the
    /// simulator's owner): a warning, since the start's refusal is followed by the clean-up
    /// that removes it, and the VM is retried there at once (ARCHITECTURE.md, "A refusal
    /// caused by our own leftover does not count").
    pub const LEFTOVER: &'static str = "leftover";

    /// A finding with its code, scope and message, and no remedy yet.
    pub fn new(code: impl Into<String>, scope: FindingScope, message: impl Into<String>) -> Self {
        Finding {
            code: code.into(),
            scope,
            message: message.into(),
            remedy: String::new(),
            may_pass: false,
        }
    }

    /// Marks it as one that may pass (see [`Finding::may_pass`]).
    pub fn may_pass(mut self) -> Self {
        self.may_pass = true;
        self
    }

    /// Says what a person can do about it.
    pub fn remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = remedy.into();
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if !self.remedy.is_empty() {
            write!(f, " (remedy: {})", self.remedy)?;
        }
        Ok(())
    }
}

/// What a pre-flight check of one route (a VM, its source, a destination, the mode and layout)
/// found by reading only: the move is blocked when `blockers` is not empty; `warnings` do not
/// stop it but a person should know them (a CD-ROM image that will be copied, a check that
/// could not be made).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preflight {
    /// What stops the move.
    #[serde(default)]
    pub blockers: Vec<Finding>,
    /// What does not stop it.
    #[serde(default)]
    pub warnings: Vec<Finding>,
}

impl Preflight {
    /// Nothing blocks the move.
    pub fn is_clear(&self) -> bool {
        self.blockers.is_empty()
    }

    /// Some lasting blocker is about the VM itself: no destination will take it.
    pub fn blocks_every_destination(&self) -> bool {
        self.blockers
            .iter()
            .any(|b| b.scope == FindingScope::Vm && !b.may_pass)
    }

    /// Blockers there are, and every one may pass: the route is not open now, but may be later.
    pub fn only_may_pass(&self) -> bool {
        !self.blockers.is_empty() && self.blockers.iter().all(|b| b.may_pass)
    }

    /// Adds a blocker.
    pub fn block(&mut self, finding: Finding) {
        self.blockers.push(finding);
    }

    /// Adds a warning.
    pub fn warn(&mut self, finding: Finding) {
        self.warnings.push(finding);
    }

    /// The blockers in one line, for a VM's reason: "a; b".
    pub fn reason(&self) -> String {
        self.blockers
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A convergence aid a driver may apply to a live migration that does not converge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvergenceAid {
    /// Throttle the guest's vCPUs (QEMU auto-converge).
    AutoConverge,
    /// Switch to post-copy.
    PostCopy,
    /// Raise the allowed downtime.
    RaiseDowntime,
}

impl ConvergenceAid {
    /// The aid's short name in a sentence, for a failure that lists the aids an attempt tried
    /// ("applied: auto-converge, a raised allowed downtime (x2)"); [`ConvergenceAid::describe`]
    /// says what it does.
    pub fn noun(self) -> &'static str {
        match self {
            ConvergenceAid::AutoConverge => "auto-converge",
            ConvergenceAid::RaiseDowntime => "a raised allowed downtime",
            ConvergenceAid::PostCopy => "post-copy",
        }
    }

    /// Whether a refusal of this aid is one that may pass, so the aid is not counted as asked
    /// and is asked again: post-copy refused for a passing reason (QEMU refuses it while libvirt
    /// still copies the disks). The one rule for the running core
    /// (`machine::migrating::converged`, which also wants progress since the last such refusal)
    /// and for the journal's rebuild of an attempt in flight.
    pub fn refused_for_now(self, why: &Failure) -> bool {
        self == ConvergenceAid::PostCopy && why.class == ErrorClass::Transient
    }

    /// What the aid does, in words for a person (the plain output and the report): the NDJSON
    /// keeps the serde name (`auto_converge`, `post_copy`, `raise_downtime`).
    pub fn describe(self) -> &'static str {
        match self {
            ConvergenceAid::AutoConverge => "auto-converge (the guest's vCPUs are throttled)",
            ConvergenceAid::RaiseDowntime => {
                "the allowed downtime raised (doubled, up to the host's cap)"
            }
            ConvergenceAid::PostCopy => {
                "switched to post-copy (the guest runs on the destination from now on)"
            }
        }
    }
}

/// The most a [`ConvergenceAid::RaiseDowntime`] takes a migration's allowed downtime to unless
/// the host says otherwise, ms (the libvirt driver's `max_downtime_ms` default; the simulator's
/// cap).
pub const DEFAULT_DOWNTIME_CAP_MS: u64 = 2000;

/// The smallest allowed downtime a raise doubles from, ms: a host set lower than this gets
/// 300 ms at the first raise rather than creeping up from a few ms.
pub const DOWNTIME_RAISE_FLOOR_MS: u64 = 150;

/// The allowed downtime after one [`ConvergenceAid::RaiseDowntime`] from `current_ms` on a host
/// whose cap is `cap_ms`: doubled, from at least [`DOWNTIME_RAISE_FLOOR_MS`], up to the cap.
/// `None` when that raises nothing (the migration is at or above the cap): the aid is then not
/// applied, and the next one is asked. The one rule for every driver that raises (the libvirt
/// driver, through `virDomainMigrateSetMaxDowntime`) and for the simulator's model of it, as
/// Proxmox raises it (`increase_migrate_downtime`: doubled while the migration does not end).
pub fn raised_downtime(current_ms: u64, cap_ms: u64) -> Option<u64> {
    let next = current_ms
        .max(DOWNTIME_RAISE_FLOOR_MS)
        .saturating_mul(2)
        .min(cap_ms);
    (next > current_ms).then_some(next)
}

/// Where a VM is, as the hosts say (used after an unclear outcome and on resume).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The VM as seen on the source, if it is defined there.
    pub on_source: Option<VmInfo>,
    /// The VM as seen on the destination, if it is defined there.
    pub on_destination: Option<VmInfo>,
    /// A migration of this VM that is not over, with a handle the engine can poll or abort:
    /// its job still runs, or (the source shows [`Activity::MigrationInterrupted`]) it was left
    /// between its steps by a client that went away; aborting that one rolls it back.
    pub running_migration: Option<MigrationHandle>,
}

/// The proof a driver gives that a VM arrived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Running (live move) or defined (offline move) on the destination.
    pub on_destination: bool,
    /// Every disk present on the destination at its expected size.
    pub disks_present: bool,
    /// No longer running on the source (it may still be defined there as a leftover).
    pub stopped_on_source: bool,
    /// Words for a person when something is missing.
    pub detail: String,
    /// How long the VM was paused for the switchover, ms, as the hypervisor measured it
    /// (libvirt: the completed migration job's `downtime`, read on the destination). `None`
    /// when the driver has no such figure (Hyper-V's migration job reports none; an offline
    /// move has no switchover). Absent from journals of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
}

impl Verification {
    /// Whether this proves the VM arrived and the source copy is not running.
    pub fn is_proof(&self) -> bool {
        self.on_destination && self.disks_present && self.stopped_on_source
    }
}

/// Something a move leaves behind, to be removed after verification.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Leftover {
    /// The host it is on.
    pub host: HostId,
    /// What kind of thing.
    pub kind: LeftoverKind,
    /// A path, volume or definition name.
    pub what: String,
}

/// Kinds of leftovers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftoverKind {
    /// A disk image (or, in the libvirt driver, a UEFI VM's NVRAM file, which it moves and
    /// removes as it does the disks).
    DiskImage,
    /// A log file.
    LogFile,
    /// An empty folder (only ever removed when empty).
    EmptyFolder,
    /// A VM definition left on the source.
    Definition,
}

/// A duration in seconds for serde (human-readable in config, seconds in events).
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Formats a byte count for people ("1.5 GiB").
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    /// The step from one unit to the next (binary prefixes).
    const STEP: f64 = 1024.0;
    let mut v = b as f64;
    let mut i = 0;
    while v >= STEP && i < UNITS.len() - 1 {
        v /= STEP;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// One GiB in bytes.
pub const GIB: u64 = 1 << 30;
