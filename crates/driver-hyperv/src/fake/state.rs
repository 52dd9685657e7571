//! The fake hosts' state: files, folders, VMs with their drives and checkpoints, planned VMs,
//! migration jobs, registry keys, the faults a test injects and the calls it asserts on; path
//! keys and small value helpers. Each behaviour cites its source.

use crate::cim::{CimValue, Epr, class_uri};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// `root/virtualization/v2`.
pub const NS_V2: &str = "root/virtualization/v2";
/// `root/cimv2`.
pub const NS_CIMV2: &str = "root/cimv2";

/// The display language of a fake host's WMI provider.
///
/// `Msvm_ComputerSystem.Caption` (and `Description`) are localized (the classes carry the
/// `AMENDMENT` qualifier: MicrosoftDocs/win32 desktop-src/HyperV_v2/msvm-computersystem.md).
/// Seen on real hosts: Japanese `仮想マシン` for a VM and `ホスト コンピューター システム` for
/// the host, the VM's `Description` still English (r4sd/go-wsman `hyperv/host_filter.go`);
/// Swedish `Virtuell dator` for a VM (GNS3 gns3-server#1612). No report shows the Swedish
/// host caption: the fake uses a stand-in, which matters only in not being the English one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Locale {
    /// English (the fake's default).
    #[default]
    English,
    Swedish,
    Japanese,
}

impl Locale {
    /// A VM's `Caption`.
    pub fn vm_caption(self) -> &'static str {
        match self {
            Locale::English => "Virtual Machine",
            Locale::Swedish => "Virtuell dator",
            Locale::Japanese => "仮想マシン",
        }
    }
    /// The host's `Caption`.
    pub fn host_caption(self) -> &'static str {
        match self {
            Locale::English => "Hosting Computer System",
            // Stand-in (no report shows it): not the English caption.
            Locale::Swedish => "Värddatorsystem",
            Locale::Japanese => "ホスト コンピューター システム",
        }
    }
    /// The host's `Description`.
    pub fn host_description(self) -> &'static str {
        match self {
            Locale::English => "Microsoft Hosting Computer System",
            Locale::Swedish => "Microsoft värddatorsystem",
            Locale::Japanese => "Microsoft ホスト コンピューター システム",
        }
    }
}

/// `ResourceSubType` of a virtual hard disk image (`Msvm_StorageAllocationSettingData`,
/// ResourceType 31): MicrosoftDocs/win32 desktop-src/HyperV_v2/msvm-storageallocationsettingdata.md
/// (HostResource), os-win `vmutils.py` `_HARD_DISK_RES_SUB_TYPE`.
pub const SUBTYPE_VHD: &str = "Microsoft:Hyper-V:Virtual Hard Disk";
/// `ResourceSubType` of a DVD image (same sources; os-win `_DVD_DISK_RES_SUB_TYPE`).
pub const SUBTYPE_DVD: &str = "Microsoft:Hyper-V:Virtual CD/DVD Disk";
/// `ResourceSubType` of a floppy image (msvm-storageallocationsettingdata.md).
pub const SUBTYPE_FLOPPY: &str = "Microsoft:Hyper-V:Virtual Floppy Disk";

/// A drive's image attached to a VM that is not a hard disk: an ISO in a DVD drive, a `.vfd`
/// in a floppy drive. ResourceType 31 like a VHD, told apart only by `ResourceSubType`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeDrive {
    /// `ResourceSubType` ([`SUBTYPE_DVD`] or [`SUBTYPE_FLOPPY`]).
    pub subtype: &'static str,
    /// The image (`HostResource[0]`).
    pub path: String,
}

/// A checkpoint of a VM: its own `Msvm_VirtualSystemSettingData` (`VirtualSystemType`
/// `Microsoft:Hyper-V:Snapshot:Realized`, or `...:Snapshot:Recovery` for the recovery
/// checkpoints backup products leave), associated with the VM by `Msvm_SnapshotOfVirtualSystem`
/// (os-win `vmutils.py` `get_vm_snapshots`), and its own disk entries naming the disks as they
/// were when it was taken. Taking it turns each of the VM's disks into the parent of a new
/// differencing disk (`<name>_<checkpoint id>.avhdx` beside it), which the VM uses from then on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeCheckpoint {
    /// Its id (the GUID in `InstanceID` `Microsoft:<id>`).
    pub id: String,
    /// `ElementName`.
    pub name: String,
    /// A recovery checkpoint (`Microsoft:Hyper-V:Snapshot:Recovery`).
    pub recovery: bool,
    /// The disks it references (each the parent of the next link of the chain).
    pub disks: Vec<String>,
}

/// A planned VM (`Msvm_PlannedComputerSystem`, MicrosoftDocs/win32
/// desktop-src/HyperV_v2/msvm-plannedcomputersystem.md): the definition a migration creates on
/// the destination before the VM is realized there. A failed attempt can leave it behind, and
/// then a new migration of the same VM (same GUID) to that host fails until it is removed
/// (`DestroySystem`, as os-win `migrationutils.py` `destroy_existing_planned_vm` and Move-VM do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakePlanned {
    /// The VM's GUID (`Name`).
    pub guid: String,
    /// `ElementName`.
    pub name: String,
    /// Its configuration root.
    pub config_root: String,
}

/// The `VirtualSystemType` of a realized VM's settings (os-win `vmutils.py`
/// `_VIRTUAL_SYSTEM_TYPE_REALIZED`).
pub const TYPE_REALIZED: &str = "Microsoft:Hyper-V:System:Realized";
/// A planned VM's (os-win `_VIRTUAL_SYSTEM_TYPE_PLANNED`).
pub const TYPE_PLANNED: &str = "Microsoft:Hyper-V:System:Planned";
/// A checkpoint's.
pub const TYPE_SNAPSHOT: &str = "Microsoft:Hyper-V:Snapshot:Realized";
/// A recovery checkpoint's.
pub const TYPE_RECOVERY: &str = "Microsoft:Hyper-V:Snapshot:Recovery";

/// A file on a fake host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeFile {
    /// Full path as created (`E:\VMs\vm1\Virtual Hard Disks\vm1.vhdx`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// A VM on a fake host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeVm {
    /// GUID (`Msvm_ComputerSystem.Name`).
    pub guid: String,
    /// `ElementName`.
    pub name: String,
    /// `EnabledState`.
    pub enabled_state: u16,
    /// `OperationalStatus`.
    pub op_status: Vec<u16>,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// `ConfigurationDataRoot`.
    pub config_root: String,
    /// `SnapshotDataRoot`.
    pub snapshot_root: String,
    /// `SwapFileDataRoot`.
    pub swap_root: String,
    /// VHD paths (the current configuration's: the newest link of each chain).
    pub disks: Vec<String>,
    /// DVD and floppy drives with their images (`World::add_drive`).
    pub drives: Vec<FakeDrive>,
    /// Checkpoints, oldest first (`World::add_checkpoint`).
    pub checkpoints: Vec<FakeCheckpoint>,
    /// The virtual switch (`Msvm_VirtualEthernetSwitch.ElementName`) each network adapter
    /// connects to (`World::add_nic`).
    pub nics: Vec<String>,
    /// `Msvm_VirtualSystemSettingData.Version` (the configuration version, "9.0" when empty).
    pub version: String,
    /// `Msvm_ProcessorSettingData.LimitProcessorFeatures` (processor compatibility mode).
    pub limit_processor_features: bool,
    /// Host disks attached as pass-through disks (`Msvm_DiskDrive` device numbers,
    /// `World::add_passthrough_disk`).
    pub passthrough_disks: Vec<u32>,
}

/// A migration job (kept on the host that started it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeJob {
    /// `InstanceID`.
    pub id: String,
    /// The VM's GUID.
    pub vm: String,
    /// Host key of the source.
    pub source: String,
    /// Host key of the destination.
    pub destination: String,
    /// Live (running VM) or not.
    pub live: bool,
    /// The new configuration root, if one was given.
    pub new_root: Option<String>,
    /// (old path, new path) of each disk.
    pub disk_moves: Vec<(String, String)>,
    /// `JobState`.
    pub state: u16,
    /// `PercentComplete`.
    pub percent: u16,
    /// When it started (virtual ms).
    pub start_ms: u64,
    /// How long it takes.
    pub duration_ms: u64,
    /// `ErrorDescription` when it failed.
    pub error: Option<String>,
    /// Ends with `JobState` 10 instead of completing.
    pub fail_at_end: bool,
    /// When it fails: leaves on the destination the disk copies it had made (every disk but the
    /// last in full, the last one half copied), as a real shared-nothing move can.
    pub leaves_copies: bool,
}

impl FakeJob {
    pub(crate) fn running(&self) -> bool {
        matches!(self.state, 2..=6)
    }
}

/// One fake Hyper-V host.
#[derive(Clone, Debug, Default)]
pub struct FakeHost {
    /// The computer name Hyper-V reports (`SystemName`).
    pub computer_name: String,
    /// `MaximumActiveVirtualSystemMigration`.
    pub migration_limit: u32,
    /// Volumes (`C:`, `E:`).
    pub volumes: Vec<String>,
    /// Free bytes per volume.
    pub free_disk_bytes: u64,
    pub free_memory_bytes: u64,
    /// Files by lower-case path.
    pub files: BTreeMap<String, FakeFile>,
    /// Directories: lower-case path -> path as created.
    pub dirs: BTreeMap<String, String>,
    /// VMs by GUID.
    pub vms: BTreeMap<String, FakeVm>,
    /// Jobs started here, by id.
    pub jobs: BTreeMap<String, FakeJob>,
    /// Migrations someone else runs (counted by the service, no VM of ours).
    pub foreign_migrations: u32,
    /// `HKEY_LOCAL_MACHINE` as `StdRegProv` sees it: keys by lower-case path.
    pub registry: BTreeMap<String, FakeRegKey>,
    /// The DNS domain (`Win32_ComputerSystem.Domain`): the host's full name is
    /// `<computer name>.<domain>`.
    pub domain: String,
    /// `Msvm_VirtualSystemMigrationServiceSettingData.EnableVirtualSystemMigration`.
    pub migration_enabled: bool,
    /// `Msvm_VirtualSystemMigrationService.MigrationServiceListenerIPAddressList`.
    pub listener_ips: Vec<String>,
    /// Planned VMs by GUID (`Msvm_PlannedComputerSystem`).
    pub planned: BTreeMap<String, FakePlanned>,
    /// Virtual switch names (`Msvm_VirtualEthernetSwitch.ElementName`).
    pub switches: Vec<String>,
    /// The Windows build (`Win32_OperatingSystem.BuildNumber`): it bounds the configuration
    /// versions the host runs (`World::add_host`: 20348, Windows Server 2022).
    pub os_build: u32,
    /// `Win32_Processor.Manufacturer` (`GenuineIntel`, `AuthenticAMD`).
    pub cpu_vendor: String,
    /// `Win32_Processor.Name`.
    pub cpu_name: String,
    /// `Msvm_VirtualSystemMigrationServiceSettingData.AuthenticationType` (0 CredSSP,
    /// 1 Kerberos).
    pub migration_auth: u32,
}

/// A registry key under `HKEY_LOCAL_MACHINE` (names compare case-insensitively, as Windows'
/// do; `StdRegProv` answers with them as created).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeRegKey {
    /// The path as created (`SOFTWARE\vmove`).
    pub path: String,
    /// `REG_MULTI_SZ` values: lower-case name -> (name as created, strings). The only type the
    /// driver writes.
    pub values: BTreeMap<String, (String, Vec<String>)>,
}

/// Faults to inject.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Per VM GUID: ReturnValues the next MigrateVirtualSystemToHost calls answer (32768, 32775...).
    pub migrate_return: BTreeMap<String, VecDeque<u32>>,
    /// Per VM GUID: how many next migration jobs end in JobState 10.
    pub job_exception: BTreeMap<String, u32>,
    /// VM GUIDs whose jobs failed through `job_exception` leave their partial disk copies on
    /// the destination, with the folders they needed and the VM's (empty) `Virtual Machines`
    /// folder under its new configuration root.
    pub failure_leaves_copies: BTreeSet<String>,
    /// VMs CheckVirtualSystemIsMigratableToHost says no for.
    pub unmigratable: BTreeSet<String>,
    /// Per host key: HTTP statuses the next requests get (401, 500).
    pub http_status: BTreeMap<String, VecDeque<u16>>,
    /// Per host key: how many next requests get no answer at all.
    pub hang: BTreeMap<String, u32>,
    /// Per host key: how many next requests get the operation-timeout fault (2150858793).
    pub timeout_fault: BTreeMap<String, u32>,
    /// Per VM GUID: the virtual time (ms) its backup ends ([11, 32776] until then).
    pub backup_ends_ms: BTreeMap<String, u64>,
    /// VM GUIDs whose jobs failed through `job_exception` leave a planned VM of theirs
    /// (`Msvm_PlannedComputerSystem`, same GUID) on the destination.
    pub failure_leaves_planned: BTreeSet<String>,
    /// VM GUIDs whose migration jobs say `Cancellable` = false (Msvm_MigrationJob.Cancellable:
    /// "Indicates whether the job can be canceled"; a job asked anyway answers 4097, invalid
    /// state transition, CIM_ConcreteJob.RequestStateChange).
    pub not_cancellable: BTreeSet<String>,
    /// Per VM GUID: its next migration job ends in JobState 32768, "completed with warnings"
    /// (os-win `JOB_STATE_COMPLETED_WITH_WARNINGS`, counted among the completed states), with
    /// these words in `ErrorDescription`. The VM moves as with 7.
    pub completes_with_warnings: BTreeMap<String, String>,
    /// Per VM GUID: what its failing job (`job_exception`) says: `ErrorCode` and the one
    /// `Msvm_Error` `GetErrorEx` returns. Without it a failed job says 32768 with a generic
    /// error (CIMStatusCode 1, CIM_ERR_FAILED).
    pub job_error_detail: BTreeMap<String, FakeJobError>,
    /// Per host key: WMI provider errors the next requests get, as a fault whose `s:Detail`
    /// holds an `MSFT_WmiError` (see `FakeWmiError`).
    pub wmi_error: BTreeMap<String, VecDeque<FakeWmiError>>,
    /// Per host key: files (paths) someone writes just before the next `Win32_Directory.Delete`
    /// on that host is carried out (a race with a check made before the call).
    pub writes_before_folder_delete: BTreeMap<String, Vec<String>>,
    /// Per host key: files someone writes just before the next `Win32_Directory.Rename` on that
    /// host is carried out.
    pub writes_before_folder_rename: BTreeMap<String, Vec<String>>,
    /// Sealed answers close with `--Encrypted Boundary` instead of `--Encrypted Boundary--`
    /// (both forms are in use: see `FakeHyperV`'s sealing and `wsman::sealing::unframe`).
    pub bare_final_boundary: bool,
}

/// The detail of a failed migration job: its `ErrorCode` (the migration service's table:
/// 32768 failed, 32769 access denied...) and the `Msvm_Error` its `GetErrorEx` returns
/// (`CIMStatusCode` CIM_ERR_*, `ErrorType` 7 security..., `Message`; Msvm_Error class
/// reference; GetErrorEx of Msvm_MigrationJob: "one or more Msvm_Error instances are returned"
/// for a failed job, embedded in CIM-XML).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeJobError {
    /// `ErrorCode` of the job.
    pub error_code: u16,
    /// `CIMStatusCode` of the `Msvm_Error`.
    pub cim_status: u32,
    /// `ErrorType` of the `Msvm_Error`.
    pub error_type: u16,
    /// `Message` of the `Msvm_Error`.
    pub message: String,
}

/// A WMI provider error, answered as WinRM does: a `w:InternalError` fault whose `s:Detail` is an
/// `MSFT_WmiError` instance with `CIMStatusCode`, `Message`, `MessageID` and `error_Code` (the
/// shape of pypsrp's `test_wsman_fault_wmi_error_detail` fixture; the WinRM Ruby gem's
/// `raise_if_wmi_error` reads the same `error_Code`), and no `WSManFault`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeWmiError {
    /// `error_Code`, an HRESULT (`0x80041002` WBEM_E_NOT_FOUND).
    pub code: u64,
    /// `CIMStatusCode` (CIM_ERR_*).
    pub cim_status: u32,
    /// `Message`.
    pub message: String,
}

/// Calls seen, for tests to assert on.
#[derive(Clone, Debug, Default)]
pub struct Calls {
    /// (host key, method) of each Invoke.
    pub invokes: Vec<(String, String)>,
    /// (host key, WQL) of each Enumerate.
    pub queries: Vec<(String, String)>,
    /// Raw bodies of embedded instance parameters (CIM-XML) received.
    pub embedded: Vec<String>,
    /// (host key, method, parameters as CIM-XML text in order) of each call of the migration
    /// service's `MigrateVirtualSystemToHost` and `CheckVirtualSystemIsMigratableToHost`:
    /// `DestinationHost` and each embedded instance.
    pub migration_params: Vec<(String, String, Vec<(String, String)>)>,
    /// (host key, class of the reference, its `Name`) of each `DestroySystem`.
    pub destroyed: Vec<(String, String, String)>,
    /// TCP connections accepted, per host key.
    pub connections: BTreeMap<String, u32>,
    /// Sealed messages received, per protocol (`application/HTTP-...-session-encrypted`).
    pub sealed: BTreeMap<String, u32>,
    /// The header (signature / wrap token) lengths seen in sealed messages, per protocol.
    pub sealed_header_lens: BTreeMap<String, BTreeSet<usize>>,
    /// (host key, client principal) of each Kerberos logon accepted.
    pub kerberos_logons: Vec<(String, String)>,
    /// (job InstanceID, RequestedState) of each RequestStateChange a job received.
    pub job_state_requests: Vec<(String, u16)>,
}

/// A fault to answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// `s:Subcode` value (`w:InvalidSelectors`).
    pub subcode: String,
    /// WSManFault code.
    pub code: u64,
    pub reason: String,
}

impl Fault {
    pub(crate) fn new(subcode: &str, code: u64, reason: impl Into<String>) -> Self {
        Fault {
            subcode: subcode.into(),
            code,
            reason: reason.into(),
        }
    }
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Fault::new("w:InvalidParameter", 2_150_858_778, reason)
    }
    pub(crate) fn not_found(reason: impl Into<String>) -> Self {
        Fault::new("w:InvalidSelectors", 2_150_858_843, reason)
    }
}

/// Output of an Invoke: out parameters in order.
pub type Output = Vec<(String, CimValue)>;

/// Lower-case key of a path.
pub fn key(p: &str) -> String {
    p.trim_end_matches('\\').to_ascii_lowercase()
}

/// The parent folder of a Windows path (`E:\a\b` -> `E:\a`; `E:\a` -> `E:\`; `E:\` -> None).
pub fn parent(p: &str) -> Option<String> {
    let t = p.trim_end_matches('\\');
    let i = t.rfind('\\')?;
    if i == 2 && t.as_bytes().get(1) == Some(&b':') {
        if t.len() == 3 {
            return None;
        }
        return Some(format!("{}\\", &t[..2]));
    }
    Some(t[..i].to_owned())
}

pub(crate) fn file_name(p: &str) -> &str {
    p.rsplit('\\').next().unwrap_or(p)
}

impl FakeHost {
    /// Creates a folder and its parents.
    pub fn mkdirs(&mut self, path: &str) {
        let mut p = Some(path.trim_end_matches('\\').to_owned());
        while let Some(cur) = p {
            if cur.len() <= 3 {
                break;
            }
            self.dirs.entry(key(&cur)).or_insert_with(|| cur.clone());
            p = parent(&cur);
        }
    }
    /// Writes a file (and its folders).
    pub fn write_file(&mut self, path: &str, size: u64) {
        if let Some(par) = parent(path) {
            self.mkdirs(&par);
        }
        self.files.insert(
            key(path),
            FakeFile {
                path: path.to_owned(),
                size,
            },
        );
    }
    /// Creates a registry key under `HKEY_LOCAL_MACHINE` and the keys above it.
    pub fn reg_create_key(&mut self, path: &str) {
        let mut cur = String::new();
        for part in path.split('\\').filter(|p| !p.is_empty()) {
            if !cur.is_empty() {
                cur.push('\\');
            }
            cur.push_str(part);
            self.registry
                .entry(cur.to_ascii_lowercase())
                .or_insert_with(|| FakeRegKey {
                    path: cur.clone(),
                    values: BTreeMap::new(),
                });
        }
    }
    /// The strings of a `REG_MULTI_SZ` value, if the key and the value exist.
    pub fn reg_value(&self, key: &str, name: &str) -> Option<&Vec<String>> {
        self.registry
            .get(&key.trim_matches('\\').to_ascii_lowercase())
            .and_then(|k| k.values.get(&name.to_ascii_lowercase()))
            .map(|(_, v)| v)
    }
    /// Whether a folder exists.
    pub fn dir_exists(&self, path: &str) -> bool {
        self.dirs.contains_key(&key(path))
    }
    pub(crate) fn volume_exists(&self, drive: &str) -> bool {
        self.volumes.iter().any(|v| v.eq_ignore_ascii_case(drive))
    }
    pub(crate) fn active_migrations(&self, all: &BTreeMap<String, FakeHost>, me: &str) -> u32 {
        let mut n = self.foreign_migrations;
        for h in all.values() {
            for j in h.jobs.values() {
                if j.running() && (j.source == me || j.destination == me) {
                    n += 1;
                }
            }
        }
        n
    }
}

pub(crate) fn job_epr(id: &str) -> Epr {
    Epr::new(
        class_uri(NS_V2, "Msvm_MigrationJob"),
        vec![("InstanceID".into(), id.into())],
    )
}

pub(crate) fn s(v: &str) -> CimValue {
    CimValue::String(v.to_owned())
}

pub(crate) fn u16s(v: &[u16]) -> CimValue {
    CimValue::Array(v.iter().map(|x| CimValue::U16(*x)).collect())
}

pub(crate) fn cim_datetime(ms: u64) -> String {
    // Days since the run epoch are enough for a fake: 2026-01-01 plus ms. WinRM returns a
    // datetime in the ISO 8601 form (xs:dateTime), not CIM's native one (r4sd/go-wsman
    // hyperv/datetime_write_integration_test.go: "read returns ISO 8601").
    let secs = ms / 1000;
    format!(
        "2026-01-01T{:02}:{:02}:{:02}.{:06}Z",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        (ms % 1000) * 1000
    )
}
