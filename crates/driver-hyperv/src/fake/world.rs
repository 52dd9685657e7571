//! The state of the fake Hyper-V hosts and the WS-Management operations on it.
//!
//! Time is virtual (`now_ms`), advanced by the test, optionally plus real elapsed time.
//! Migration jobs advance when any request looks at the world ([`World::tick`]).

use super::model::{self, FakeCheckpoint, FakeDrive, FakePlanned, Locale};
use super::wql::{self, Cond, Query};
use crate::cim::{
    CimInstance, CimValue, Epr, class_uri, computer_system_epr, migration_service_epr,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// `root/virtualization/v2`.
pub const NS_V2: &str = "root/virtualization/v2";
/// `root/cimv2`.
pub const NS_CIMV2: &str = "root/cimv2";

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
    fn running(&self) -> bool {
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
    /// Free memory.
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
    /// Words.
    pub reason: String,
}

impl Fault {
    fn new(subcode: &str, code: u64, reason: impl Into<String>) -> Self {
        Fault {
            subcode: subcode.into(),
            code,
            reason: reason.into(),
        }
    }
    fn invalid(reason: impl Into<String>) -> Self {
        Fault::new("w:InvalidParameter", 2_150_858_778, reason)
    }
    fn not_found(reason: impl Into<String>) -> Self {
        Fault::new("w:InvalidSelectors", 2_150_858_843, reason)
    }
}

/// Output of an Invoke: out parameters in order.
pub type Output = Vec<(String, CimValue)>;

/// The whole fake world.
#[derive(Debug, Default)]
pub struct World {
    /// Virtual time, ms.
    pub now_ms: u64,
    /// Hosts by key (the name the test and the driver config use).
    pub hosts: BTreeMap<String, FakeHost>,
    /// Injected faults.
    pub faults: Faults,
    /// What was called.
    pub calls: Calls,
    /// How long a migration job takes, ms (virtual).
    pub migration_ms: u64,
    /// Items per Enumerate/Pull page (small, so that Pull is exercised).
    pub page_size: usize,
    /// Open enumerations.
    pub enumerations: BTreeMap<String, VecDeque<CimInstance>>,
    /// The language of the hosts' captions ([`World::set_locale`]).
    pub locale: Locale,
    /// By how much each disk of a RUNNING VM grows during its move (4 MiB in `World::new`).
    /// The fake's `.vhdx` disks are dynamically expanding (`New-VHD`'s default;
    /// `Msvm_VirtualHardDiskSettingData.Type` 3), and a running VM keeps writing while Hyper-V
    /// mirrors its storage to the destination, so the copy that arrives is larger than the
    /// file measured on the source before the start. A powered-off VM's disks arrive as they
    /// were.
    pub live_disk_growth: u64,
    next_id: u64,
}

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
    fn active_migrations(&self, all: &BTreeMap<String, FakeHost>, me: &str) -> u32 {
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

fn job_epr(id: &str) -> Epr {
    Epr::new(
        class_uri(NS_V2, "Msvm_MigrationJob"),
        vec![("InstanceID".into(), id.into())],
    )
}

fn s(v: &str) -> CimValue {
    CimValue::String(v.to_owned())
}

fn u16s(v: &[u16]) -> CimValue {
    CimValue::Array(v.iter().map(|x| CimValue::U16(*x)).collect())
}

fn cim_datetime(ms: u64) -> String {
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

impl World {
    /// An empty world with defaults (3 s migrations, pages of 5).
    pub fn new() -> Self {
        World {
            migration_ms: 3000,
            page_size: 5,
            live_disk_growth: 4 << 20,
            ..World::default()
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A new number (for ids).
    pub(crate) fn next_id(&mut self) -> u64 {
        self.id()
    }

    /// Adds a host.
    pub fn add_host(&mut self, key: &str, computer_name: &str, volumes: &[&str]) {
        self.hosts.insert(
            key.to_owned(),
            FakeHost {
                computer_name: computer_name.to_owned(),
                migration_limit: 2,
                volumes: volumes.iter().map(|v| (*v).to_owned()).collect(),
                free_disk_bytes: 2 << 40,
                free_memory_bytes: 256 << 30,
                domain: "lab.example".into(),
                migration_enabled: true,
                listener_ips: vec![format!("192.0.2.{}", 10 + self.hosts.len())],
                ..FakeHost::default()
            },
        );
    }

    /// Adds a VM under `<root>` (config, checkpoints, smart paging there; disks in
    /// `<root>\Virtual Hard Disks`), returns its GUID.
    pub fn add_vm(
        &mut self,
        host: &str,
        name: &str,
        running: bool,
        memory_mib: u64,
        disks_mib: &[u64],
        root: &str,
    ) -> String {
        let n = self.id();
        let guid = format!("{:08X}-0000-4000-8000-{:012X}", n, n);
        let disks: Vec<String> = disks_mib
            .iter()
            .enumerate()
            .map(|(i, _)| format!("{root}\\Virtual Hard Disks\\{name}_{i}.vhdx"))
            .collect();
        let vm = FakeVm {
            guid: guid.clone(),
            name: name.to_owned(),
            enabled_state: if running { 2 } else { 3 },
            op_status: vec![2],
            memory_mib,
            config_root: root.to_owned(),
            snapshot_root: root.to_owned(),
            swap_root: root.to_owned(),
            disks: disks.clone(),
            ..FakeVm::default()
        };
        if let Some(h) = self.hosts.get_mut(host) {
            h.write_file(&format!("{root}\\Virtual Machines\\{guid}.vmcx"), 64 << 10);
            h.write_file(&format!("{root}\\Virtual Machines\\{guid}.vmgs"), 1 << 20);
            h.mkdirs(&format!("{root}\\Virtual Machines\\{guid}"));
            h.mkdirs(&format!("{root}\\Snapshots"));
            for (d, mib) in disks.iter().zip(disks_mib) {
                h.write_file(d, mib << 20);
            }
            h.vms.insert(guid.clone(), vm);
        }
        guid
    }

    pub(crate) fn host_key_by_name(&self, name: &str) -> Option<String> {
        self.hosts
            .iter()
            .find(|(k, h)| {
                k.eq_ignore_ascii_case(name)
                    || h.computer_name.eq_ignore_ascii_case(name)
                    || format!("{}.{}", h.computer_name, h.domain).eq_ignore_ascii_case(name)
            })
            .map(|(k, _)| k.clone())
    }

    /// Advances jobs to `now_ms`.
    pub fn tick(&mut self) {
        let now = self.now_ms;
        let ended: Vec<String> = self
            .faults
            .backup_ends_ms
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(g, _)| g.clone())
            .collect();
        for h in self.hosts.values_mut() {
            for v in h.vms.values_mut() {
                if self.faults.backup_ends_ms.contains_key(&v.guid) {
                    v.op_status = if ended.contains(&v.guid) {
                        vec![2]
                    } else {
                        vec![11, 32776]
                    };
                }
            }
        }
        for g in ended {
            self.faults.backup_ends_ms.remove(&g);
        }
        let mut finished: Vec<(String, String)> = Vec::new();
        for (hk, h) in self.hosts.iter_mut() {
            for j in h.jobs.values_mut() {
                if !j.running() {
                    continue;
                }
                let elapsed = now.saturating_sub(j.start_ms);
                let pct = (elapsed * 100 / j.duration_ms.max(1)).min(100) as u16;
                j.percent = pct;
                j.state = if elapsed == 0 { 3 } else { 4 };
                if elapsed >= j.duration_ms {
                    finished.push((hk.clone(), j.id.clone()));
                }
            }
        }
        for (hk, id) in finished {
            self.finish_job(&hk, &id);
        }
        // Show the moving VMs' secondary status.
        let mut shows: Vec<(String, String, Vec<u16>)> = Vec::new();
        for h in self.hosts.values() {
            for j in h.jobs.values().filter(|j| j.running()) {
                let first_half = j.percent < 50;
                let st = match (j.live, first_half) {
                    (_, true) => 32778,
                    (true, false) => 32774,
                    (false, false) => 32779,
                };
                shows.push((j.source.clone(), j.vm.clone(), vec![11, st]));
            }
        }
        for (hk, vm, st) in shows {
            if let Some(v) = self.hosts.get_mut(&hk).and_then(|h| h.vms.get_mut(&vm)) {
                v.op_status = st;
            }
        }
    }

    fn finish_job(&mut self, hk: &str, id: &str) {
        let Some(job) = self.hosts.get(hk).and_then(|h| h.jobs.get(id)).cloned() else {
            return;
        };
        if job.fail_at_end {
            if let Some(j) = self.hosts.get_mut(hk).and_then(|h| h.jobs.get_mut(id)) {
                j.state = 10;
                j.error = Some(format!(
                    "Virtual machine migration operation for '{}' failed at migration source '{}'.",
                    job.vm, hk
                ));
            }
            if let Some(v) = self
                .hosts
                .get_mut(&job.source)
                .and_then(|h| h.vms.get_mut(&job.vm))
            {
                v.op_status = vec![2];
            }
            if self.faults.failure_leaves_planned.contains(&job.vm) {
                let vm = self
                    .hosts
                    .get(&job.source)
                    .and_then(|h| h.vms.get(&job.vm))
                    .cloned();
                if let Some(vm) = vm {
                    let root = job.new_root.clone().unwrap_or(vm.config_root.clone());
                    self.add_planned(&job.destination, &vm.guid, &vm.name, &root);
                }
            }
            if job.leaves_copies {
                let sizes: Vec<u64> = job
                    .disk_moves
                    .iter()
                    .map(|(old, _)| {
                        self.hosts
                            .get(&job.source)
                            .and_then(|h| h.files.get(&key(old)))
                            .map_or(1 << 20, |f| f.size)
                    })
                    .collect();
                if let Some(dst) = self.hosts.get_mut(&job.destination) {
                    // The job had begun to receive the VM: its configuration folder (empty) and
                    // the copies, each creating the folders it needs.
                    if let Some(root) = &job.new_root {
                        dst.mkdirs(&format!("{root}\\Virtual Machines"));
                    }
                    let last = job.disk_moves.len().saturating_sub(1);
                    for (i, ((_, new), size)) in job.disk_moves.iter().zip(sizes).enumerate() {
                        dst.write_file(new, if i == last { size / 2 } else { size });
                    }
                }
            }
            return;
        }
        let Some(mut vm) = self
            .hosts
            .get_mut(&job.source)
            .and_then(|h| h.vms.remove(&job.vm))
        else {
            return;
        };
        // Hyper-V removes the source's configuration and (RetainVhdCopiesOnSource=false) VHDs,
        // but leaves the folders: that is what the clean-up is for.
        let old_root = vm.config_root.clone();
        let mut sizes = BTreeMap::new();
        if let Some(src) = self.hosts.get_mut(&job.source) {
            // What moved leaves the source (RetainVhdCopiesOnSource false): every storage entry
            // the job moved, disks, checkpoint disks and drive images alike.
            for (d, _) in &job.disk_moves {
                if let Some(f) = src.files.remove(&key(d)) {
                    sizes.insert(key(d), f.size);
                }
            }
            src.files.remove(&key(&format!(
                "{old_root}\\Virtual Machines\\{}.vmcx",
                vm.guid
            )));
            src.files.remove(&key(&format!(
                "{old_root}\\Virtual Machines\\{}.vmgs",
                vm.guid
            )));
        }
        let new_root = job.new_root.clone().unwrap_or(old_root);
        vm.config_root = new_root.clone();
        vm.snapshot_root = new_root.clone();
        vm.swap_root = new_root.clone();
        let moved = |d: &String| {
            job.disk_moves
                .iter()
                .find(|(o, _)| key(o) == key(d))
                .map(|(_, n)| n.clone())
                .unwrap_or(d.clone())
        };
        vm.disks = vm.disks.iter().map(moved).collect();
        // A checkpoint's disks and the drive images keep their paths unless the job moved them
        // (then they point at paths the destination may not have).
        for c in vm.checkpoints.iter_mut() {
            c.disks = c.disks.iter().map(moved).collect();
        }
        for d in vm.drives.iter_mut() {
            d.path = moved(&d.path);
        }
        vm.op_status = vec![2];
        if let Some(dst) = self.hosts.get_mut(&job.destination) {
            dst.write_file(
                &format!("{new_root}\\Virtual Machines\\{}.vmcx", vm.guid),
                64 << 10,
            );
            dst.write_file(
                &format!("{new_root}\\Virtual Machines\\{}.vmgs", vm.guid),
                1 << 20,
            );
            let growth = if job.live { self.live_disk_growth } else { 0 };
            for (old, new) in job.disk_moves.iter() {
                let size = sizes.get(&key(old)).copied().unwrap_or(1 << 20);
                dst.write_file(new, size + growth);
            }
            dst.vms.insert(vm.guid.clone(), vm);
        }
        let warning = self.faults.completes_with_warnings.remove(&job.vm);
        if let Some(j) = self.hosts.get_mut(hk).and_then(|h| h.jobs.get_mut(id)) {
            j.state = if warning.is_some() { 32768 } else { 7 };
            j.percent = 100;
            if warning.is_some() {
                j.error = warning;
            }
        }
    }

    // ----- instances -----

    fn vm_instance(h: &FakeHost, vm: &FakeVm, locale: Locale) -> CimInstance {
        let _ = h;
        let mut i = CimInstance::new("Msvm_ComputerSystem")
            .with("Caption", s(locale.vm_caption()))
            .with("CreationClassName", s("Msvm_ComputerSystem"))
            .with("Description", s("Microsoft Virtual Machine"))
            .with("ElementName", s(&vm.name))
            .with("EnabledState", CimValue::U16(vm.enabled_state))
            .with("HealthState", CimValue::U16(5))
            .with(
                "InstallDate",
                CimValue::DateTime("2026-01-01T00:00:00Z".into()),
            )
            .with("Name", s(&vm.guid))
            .with(
                "OnTimeInMilliseconds",
                CimValue::U64(if vm.enabled_state == 2 { 123_456 } else { 0 }),
            )
            .with("OperationalStatus", u16s(&vm.op_status))
            .with("OtherEnabledState", CimValue::Null);
        i.epr = Some(computer_system_epr(&vm.guid));
        i
    }

    fn host_instance(h: &FakeHost, locale: Locale) -> CimInstance {
        // The host's Name is its computer name, a VM's its GUID (r4sd/go-wsman
        // hyperv/host_filter.go, seen on a real host); its InstallDate is null.
        let mut i = CimInstance::new("Msvm_ComputerSystem")
            .with("Caption", s(locale.host_caption()))
            .with("CreationClassName", s("Msvm_ComputerSystem"))
            .with("Description", s(locale.host_description()))
            .with("ElementName", s(&h.computer_name))
            .with("EnabledState", CimValue::U16(2))
            .with("Name", s(&h.computer_name))
            .with("OperationalStatus", u16s(&[2]));
        i.epr = Some(computer_system_epr(&h.computer_name));
        i
    }

    fn job_instance(j: &FakeJob, faults: &Faults) -> CimInstance {
        let error_code = match j.state {
            10 => faults
                .job_error_detail
                .get(&j.vm)
                .map_or(32768, |d| d.error_code),
            _ => 0,
        };
        let mut i = CimInstance::new("Msvm_MigrationJob")
            .with(
                "Cancellable",
                CimValue::Bool(!faults.not_cancellable.contains(&j.vm)),
            )
            .with("Caption", s("Virtual System Migration"))
            .with("DestinationHost", s(&j.destination))
            .with("ElementName", s("Virtual System Migration"))
            .with("ErrorCode", CimValue::U16(error_code))
            .with(
                "ErrorDescription",
                j.error.as_deref().map(s).unwrap_or(CimValue::Null),
            )
            .with("InstanceID", s(&j.id))
            .with("JobState", CimValue::U16(j.state))
            .with("JobType", CimValue::U16(306))
            .with("PercentComplete", CimValue::U16(j.percent))
            .with("StartTime", CimValue::DateTime(cim_datetime(j.start_ms)))
            .with("VirtualSystemName", s(&j.vm));
        i.epr = Some(job_epr(&j.id));
        i
    }

    fn instances_of(
        &self,
        hk: &str,
        namespace: &str,
        class: &str,
    ) -> Result<Vec<CimInstance>, Fault> {
        let h = self
            .hosts
            .get(hk)
            .ok_or_else(|| Fault::invalid("unknown host"))?;
        let mut out = Vec::new();
        let ns_ok = |want: &str| namespace.eq_ignore_ascii_case(want);
        match class {
            "Msvm_ComputerSystem" if ns_ok(NS_V2) => {
                out.push(Self::host_instance(h, self.locale));
                for vm in h.vms.values() {
                    out.push(Self::vm_instance(h, vm, self.locale));
                }
            }
            "Msvm_PlannedComputerSystem" if ns_ok(NS_V2) => {
                for p in h.planned.values() {
                    out.push(model::planned_instance(p));
                }
            }
            "Msvm_VirtualSystemManagementService" if ns_ok(NS_V2) => {
                out.push(model::management_service(h));
            }
            "Win32_ComputerSystem" if ns_ok(NS_CIMV2) => {
                out.push(
                    CimInstance::new(class)
                        .with("DNSHostName", s(&h.computer_name.to_ascii_lowercase()))
                        .with("Domain", s(&h.domain))
                        .with("Name", s(&h.computer_name))
                        .with("PartOfDomain", CimValue::Bool(true)),
                );
            }
            "Msvm_VirtualSystemMigrationService" if ns_ok(NS_V2) => {
                let n = h.active_migrations(&self.hosts, hk);
                let mut i = CimInstance::new("Msvm_VirtualSystemMigrationService")
                    .with("ActiveStorageMigrationCount", CimValue::U32(0))
                    .with("ActiveVirtualSystemMigrationCount", CimValue::U32(n))
                    .with("CreationClassName", s("Msvm_VirtualSystemMigrationService"))
                    .with(
                        "MigrationServiceListenerIPAddressList",
                        if h.listener_ips.is_empty() {
                            CimValue::Null
                        } else {
                            CimValue::Array(h.listener_ips.iter().map(|a| s(a)).collect())
                        },
                    )
                    .with("Name", s("migrationwmi"))
                    .with("SystemCreationClassName", s("Msvm_ComputerSystem"))
                    .with("SystemName", s(&h.computer_name));
                i.epr = Some(migration_service_epr(&h.computer_name));
                out.push(i);
            }
            "Msvm_VirtualSystemMigrationServiceSettingData" if ns_ok(NS_V2) => {
                out.push(
                    CimInstance::new(class)
                        .with("AuthenticationType", CimValue::U32(1))
                        .with("EnableSmbTransport", CimValue::Bool(false))
                        .with(
                            "EnableVirtualSystemMigration",
                            CimValue::Bool(h.migration_enabled),
                        )
                        .with("InstanceID", s("Microsoft:MigrationServiceSettingData"))
                        .with("MaximumActiveStorageMigration", CimValue::U32(2))
                        .with(
                            "MaximumActiveVirtualSystemMigration",
                            CimValue::U32(h.migration_limit),
                        ),
                );
            }
            "Msvm_VirtualSystemMigrationSettingData" if ns_ok(NS_V2) => {
                for (t, name) in [
                    (32768u16, "VirtualSystem"),
                    (32769, "Storage"),
                    (32770, "Staged"),
                    (32771, "VirtualSystemAndStorage"),
                ] {
                    out.push(
                        CimInstance::new(class)
                            .with("Bandwidth", CimValue::Null)
                            .with("Caption", s("Virtual System Migration Setting Data"))
                            .with("DestinationIPAddressList", CimValue::Null)
                            .with("EnableCompression", CimValue::Bool(true))
                            .with(
                                "InstanceID",
                                s(&format!("Microsoft:MigrationSettingData\\{name}")),
                            )
                            .with("MigrationType", CimValue::U16(t))
                            .with("Priority", CimValue::U16(0))
                            .with("RetainVhdCopiesOnSource", CimValue::Bool(false))
                            .with("RemoveSourceUnmanagedVhds", CimValue::Bool(false))
                            .with("TransportType", CimValue::U16(5)),
                    );
                }
            }
            "Msvm_VirtualSystemSettingData" if ns_ok(NS_V2) => {
                for vm in h.vms.values() {
                    out.push(Self::vssd(vm));
                    for c in &vm.checkpoints {
                        out.push(model::checkpoint_vssd(vm, c));
                    }
                }
                for p in h.planned.values() {
                    out.push(model::planned_vssd(p));
                }
            }
            "Msvm_StorageAllocationSettingData" if ns_ok(NS_V2) => {
                for vm in h.vms.values() {
                    out.extend(model::storage_of(h, vm));
                }
            }
            "Msvm_MemorySettingData" if ns_ok(NS_V2) => {
                for vm in h.vms.values() {
                    out.push(
                        CimInstance::new(class)
                            .with(
                                "InstanceID",
                                s(&format!(
                                    "Microsoft:{}\\4764334d-e001-4176-82ee-5594ec9b530e",
                                    vm.guid
                                )),
                            )
                            .with("ResourceType", CimValue::U16(4))
                            .with("VirtualQuantity", CimValue::U64(vm.memory_mib)),
                    );
                }
            }
            "Msvm_MigrationJob" if ns_ok(NS_V2) => {
                for j in h.jobs.values() {
                    out.push(Self::job_instance(j, &self.faults));
                }
            }
            // Msvm_MigrationJob derives from CIM_ConcreteJob, not from Msvm_ConcreteJob
            // (class reference): no migration job is an Msvm_ConcreteJob, and the fake has no
            // other jobs.
            "Msvm_ConcreteJob" if ns_ok(NS_V2) => {}
            "Win32_Directory" if ns_ok(NS_CIMV2) => {
                for d in h.dirs.values() {
                    out.push(Self::dir_instance(d));
                }
            }
            "CIM_DataFile" if ns_ok(NS_CIMV2) => {
                for f in h.files.values() {
                    let (drive, path) = f.path.split_at(2);
                    let dir_path = match path.rfind('\\') {
                        Some(i) => &path[..=i],
                        None => "\\",
                    };
                    let mut i = CimInstance::new("CIM_DataFile")
                        .with("Drive", s(&drive.to_ascii_lowercase()))
                        .with(
                            "FileName",
                            s(file_name(&f.path)
                                .rsplit_once('.')
                                .map(|x| x.0)
                                .unwrap_or(file_name(&f.path))),
                        )
                        .with("FileSize", CimValue::U64(f.size))
                        .with("Name", s(&f.path.to_ascii_lowercase()))
                        .with("Path", s(&dir_path.to_ascii_lowercase()));
                    i.epr = Some(Epr::new(
                        class_uri(NS_CIMV2, "CIM_DataFile"),
                        vec![("Name".into(), f.path.to_ascii_lowercase())],
                    ));
                    out.push(i);
                }
            }
            "Win32_LogicalDisk" if ns_ok(NS_CIMV2) => {
                for v in &h.volumes {
                    out.push(
                        CimInstance::new(class)
                            .with("DeviceID", s(v))
                            .with("DriveType", CimValue::U32(3))
                            .with("FreeSpace", CimValue::U64(h.free_disk_bytes)),
                    );
                }
            }
            "Win32_OperatingSystem" if ns_ok(NS_CIMV2) => {
                out.push(
                    CimInstance::new(class)
                        .with("CSName", s(&h.computer_name))
                        .with(
                            "FreePhysicalMemory",
                            CimValue::U64(h.free_memory_bytes / 1024),
                        ),
                );
            }
            _ => {
                return Err(Fault::invalid(format!(
                    "Invalid class {class} in namespace {namespace}"
                )));
            }
        }
        Ok(out)
    }

    fn vssd(vm: &FakeVm) -> CimInstance {
        // Datetimes as WinRM returns them: ISO 8601 (r4sd/go-wsman
        // hyperv/datetime_write_integration_test.go).
        CimInstance::new("Msvm_VirtualSystemSettingData")
            .with(
                "AutomaticStartupActionDelay",
                CimValue::DateTime("P0DT0H0M0S".into()),
            )
            .with("AutomaticStartupAction", CimValue::U16(3))
            .with("ConfigurationDataRoot", s(&vm.config_root))
            .with("ConfigurationID", s(&vm.guid))
            .with(
                "CreationTime",
                CimValue::DateTime("2026-01-01T00:00:00Z".into()),
            )
            .with("ElementName", s(&vm.name))
            .with("InstanceID", s(&format!("Microsoft:{}", vm.guid)))
            .with("SnapshotDataRoot", s(&vm.snapshot_root))
            .with("SwapFileDataRoot", s(&vm.swap_root))
            .with("VirtualSystemIdentifier", s(&vm.guid))
            .with("VirtualSystemType", s("Microsoft:Hyper-V:System:Realized"))
    }

    fn dir_instance(d: &str) -> CimInstance {
        let mut i = CimInstance::new("Win32_Directory")
            .with("Drive", s(&d[..2].to_ascii_lowercase()))
            .with("Name", s(&d.to_ascii_lowercase()));
        i.epr = Some(Epr::new(
            class_uri(NS_CIMV2, "Win32_Directory"),
            vec![("Name".into(), d.to_ascii_lowercase())],
        ));
        i
    }

    fn matches(inst: &CimInstance, conds: &[Cond]) -> bool {
        conds.iter().all(|c| match c {
            Cond::Eq(p, v) => match inst.get(p) {
                Some(CimValue::Array(_)) => {
                    inst.get_array(p).iter().any(|x| x.eq_ignore_ascii_case(v))
                }
                Some(val) => val.as_text().is_some_and(|x| x.eq_ignore_ascii_case(v)),
                None => false,
            },
            Cond::Like(p, pat) => inst.get_str(p).is_some_and(|x| wql::like(&x, pat)),
        })
    }

    /// Runs a WQL query on a host.
    pub fn query(&mut self, hk: &str, namespace: &str, q: &str) -> Result<Vec<CimInstance>, Fault> {
        self.tick();
        self.calls.queries.push((hk.to_owned(), q.to_owned()));
        let parsed =
            wql::parse(q).map_err(|e| Fault::new("w:CannotProcessFilter", 2_150_858_752, e))?;
        match parsed {
            Query::Select { class, conds } => {
                let all = self.instances_of(hk, namespace, &class)?;
                Ok(all
                    .into_iter()
                    .filter(|i| Self::matches(i, &conds))
                    .collect())
            }
            Query::Associators {
                class,
                keys,
                assoc_class,
                result_class,
                result_role,
            } => {
                let key_of = |n: &str| {
                    keys.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(n))
                        .map(|(_, v)| v.clone())
                };
                let h = self
                    .hosts
                    .get(hk)
                    .ok_or_else(|| Fault::invalid("unknown host"))?;
                match (class.as_str(), assoc_class.as_deref()) {
                    ("Msvm_ComputerSystem", Some("Msvm_SettingsDefineState")) => {
                        let guid = key_of("Name").unwrap_or_default();
                        if result_class
                            .as_deref()
                            .is_some_and(|r| r != "Msvm_VirtualSystemSettingData")
                        {
                            return Ok(Vec::new());
                        }
                        Ok(h.vms.get(&guid).map(Self::vssd).into_iter().collect())
                    }
                    // A VM's checkpoints (os-win vmutils.py get_vm_snapshots).
                    ("Msvm_ComputerSystem", Some("Msvm_SnapshotOfVirtualSystem")) => {
                        let guid = key_of("Name").unwrap_or_default();
                        if result_class
                            .as_deref()
                            .is_some_and(|r| r != "Msvm_VirtualSystemSettingData")
                        {
                            return Ok(Vec::new());
                        }
                        Ok(h.vms
                            .get(&guid)
                            .map(|vm| {
                                vm.checkpoints
                                    .iter()
                                    .map(|c| model::checkpoint_vssd(vm, c))
                                    .collect()
                            })
                            .unwrap_or_default())
                    }
                    ("Win32_Directory", Some("Win32_Subdirectory")) => {
                        let name = key_of("Name").unwrap_or_default();
                        if !h.dir_exists(&name) {
                            return Err(Fault::not_found(format!("No such directory {name}")));
                        }
                        let want_children = result_role
                            .as_deref()
                            .is_none_or(|r| r.eq_ignore_ascii_case("PartComponent"));
                        let mut out = Vec::new();
                        for d in h.dirs.values() {
                            let is_child = parent(d).is_some_and(|p| key(&p) == key(&name));
                            let is_parent = parent(&name).is_some_and(|p| key(&p) == key(d));
                            if (want_children && is_child) || (!want_children && is_parent) {
                                out.push(Self::dir_instance(d));
                            }
                        }
                        Ok(out)
                    }
                    _ => Err(Fault::new(
                        "w:CannotProcessFilter",
                        2_150_858_752,
                        format!("unsupported association on {class}"),
                    )),
                }
            }
        }
    }

    /// WS-Transfer Get.
    pub fn get(
        &mut self,
        hk: &str,
        namespace: &str,
        class: &str,
        selectors: &[(String, String)],
    ) -> Result<CimInstance, Fault> {
        self.tick();
        let sel = |n: &str| {
            selectors
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let all = self.instances_of(hk, namespace, class)?;
        all.into_iter()
            .find(|i| {
                selectors
                    .iter()
                    .filter(|(k, _)| !k.starts_with("__"))
                    .all(|(k, v)| i.get_str(k).is_some_and(|x| x.eq_ignore_ascii_case(v)))
                    && (sel("InstanceID").is_some() || sel("Name").is_some())
            })
            .ok_or_else(|| Fault::not_found(format!("No {class} instance matches the selectors")))
    }

    /// `StdRegProv`'s static methods (`root\default` and `root\cimv2`) on `HKEY_LOCAL_MACHINE`:
    /// `CreateKey`, `DeleteKey`, `EnumKey`, `EnumValues`, `SetMultiStringValue`,
    /// `GetMultiStringValue`, `DeleteValue`. ReturnValue is a Win32 error: 0 done, 2 the key or
    /// value does not exist, 5 a key that still has subkeys (`RegDeleteKey`), 6 another hive.
    fn std_reg_prov(
        h: &mut FakeHost,
        method: &str,
        params: &crate::xml::Element,
    ) -> Result<Output, Fault> {
        let text = |n: &str| params.child(n).map(|e| e.text.trim().to_owned());
        let rv = |v: u32| vec![("ReturnValue".to_owned(), CimValue::U32(v))];
        if text("hDefKey").as_deref().unwrap_or("2147483650") != "2147483650" {
            return Ok(rv(6));
        }
        let sub = text("sSubKeyName")
            .ok_or_else(|| Fault::invalid("sSubKeyName missing"))?
            .trim_matches('\\')
            .to_owned();
        let k = sub.to_ascii_lowercase();
        let value_name = text("sValueName").unwrap_or_default();
        let names = |items: Vec<String>| {
            if items.is_empty() {
                CimValue::Null
            } else {
                CimValue::Array(items.into_iter().map(CimValue::String).collect())
            }
        };
        match method {
            "CreateKey" => {
                h.reg_create_key(&sub);
                Ok(rv(0))
            }
            "DeleteKey" => {
                let prefix = format!("{k}\\");
                if !h.registry.contains_key(&k) {
                    Ok(rv(2))
                } else if h.registry.keys().any(|o| o.starts_with(&prefix)) {
                    Ok(rv(5))
                } else {
                    h.registry.remove(&k);
                    Ok(rv(0))
                }
            }
            "EnumKey" => {
                if !h.registry.contains_key(&k) {
                    return Ok(rv(2));
                }
                let prefix = format!("{k}\\");
                let subkeys: Vec<String> = h
                    .registry
                    .iter()
                    .filter(|(o, _)| o.strip_prefix(&prefix).is_some_and(|r| !r.contains('\\')))
                    .map(|(_, v)| v.path.rsplit('\\').next().unwrap_or("").to_owned())
                    .collect();
                Ok(vec![
                    ("ReturnValue".into(), CimValue::U32(0)),
                    ("sNames".into(), names(subkeys)),
                ])
            }
            "EnumValues" => {
                let Some(key) = h.registry.get(&k) else {
                    return Ok(rv(2));
                };
                let vs: Vec<String> = key.values.values().map(|(n, _)| n.clone()).collect();
                let types = if vs.is_empty() {
                    CimValue::Null
                } else {
                    // REG_MULTI_SZ (7): the only type this fake stores.
                    CimValue::Array(vs.iter().map(|_| CimValue::U32(7)).collect())
                };
                Ok(vec![
                    ("ReturnValue".into(), CimValue::U32(0)),
                    ("Types".into(), types),
                    ("sNames".into(), names(vs)),
                ])
            }
            "SetMultiStringValue" => {
                let Some(key) = h.registry.get_mut(&k) else {
                    return Ok(rv(2));
                };
                let items: Vec<String> = params
                    .children_named("sValue")
                    .map(|e| e.text.clone())
                    .collect();
                key.values
                    .insert(value_name.to_ascii_lowercase(), (value_name, items));
                Ok(rv(0))
            }
            "GetMultiStringValue" => match h.reg_value(&sub, &value_name) {
                Some(items) => Ok(vec![
                    ("ReturnValue".into(), CimValue::U32(0)),
                    ("sValue".into(), names(items.clone())),
                ]),
                None => Ok(rv(2)),
            },
            "DeleteValue" => {
                let gone = h
                    .registry
                    .get_mut(&k)
                    .and_then(|key| key.values.remove(&value_name.to_ascii_lowercase()));
                Ok(rv(if gone.is_some() { 0 } else { 2 }))
            }
            _ => Err(Fault::new(
                "w:ActionNotSupported",
                2_150_858_909,
                format!("StdRegProv.{method} is not supported by the fake"),
            )),
        }
    }

    /// Invoke.
    pub fn invoke(
        &mut self,
        hk: &str,
        class: &str,
        method: &str,
        selectors: &[(String, String)],
        params: &crate::xml::Element,
    ) -> Result<Output, Fault> {
        self.tick();
        self.calls.invokes.push((hk.to_owned(), method.to_owned()));
        let sel = |n: &str| {
            selectors
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let param_text = |n: &str| params.child(n).map(|e| e.text.clone());
        match (class, method) {
            (
                "Msvm_VirtualSystemMigrationService",
                "MigrateVirtualSystemToHost" | "CheckVirtualSystemIsMigratableToHost",
            ) => self.migration_call(hk, method, selectors, params),
            ("Msvm_VirtualSystemManagementService", "DestroySystem") => {
                self.destroy_system(hk, selectors, params)
            }
            ("Msvm_ConcreteJob", _) => Err(Fault::not_found(
                "No Msvm_ConcreteJob instance matches the selectors (a migration job is an Msvm_MigrationJob)",
            )),
            ("Msvm_MigrationJob", "GetErrorEx") => {
                let id = sel("InstanceID").ok_or_else(|| Fault::not_found("InstanceID missing"))?;
                let job = self
                    .hosts
                    .get(hk)
                    .and_then(|h| h.jobs.get(&id))
                    .cloned()
                    .ok_or_else(|| Fault::not_found("no such job"))?;
                // Errors only for a job that failed or was ended by a client (GetErrorEx of
                // Msvm_MigrationJob); null otherwise.
                let error = match job.state {
                    10 => Some(
                        self.faults
                            .job_error_detail
                            .get(&job.vm)
                            .cloned()
                            .unwrap_or(FakeJobError {
                                error_code: 32768,
                                cim_status: 1,
                                error_type: 4,
                                message: job
                                    .error
                                    .clone()
                                    .unwrap_or_else(|| "The migration failed.".into()),
                            }),
                    ),
                    8 | 9 => Some(FakeJobError {
                        error_code: 32768,
                        cim_status: 1,
                        error_type: 1,
                        message: "The operation was cancelled.".into(),
                    }),
                    _ => None,
                };
                let errors = match error {
                    Some(e) => CimValue::Array(vec![CimValue::String(
                        CimInstance::new("Msvm_Error")
                            .with("CIMStatusCode", CimValue::U32(e.cim_status))
                            .with("ErrorType", CimValue::U16(e.error_type))
                            .with("Message", s(&e.message))
                            .to_cim_xml(),
                    )]),
                    None => CimValue::Null,
                };
                Ok(vec![
                    ("Errors".into(), errors),
                    ("ReturnValue".into(), CimValue::U32(0)),
                ])
            }
            ("Msvm_MigrationJob", "RequestStateChange") => {
                let id = sel("InstanceID").ok_or_else(|| Fault::not_found("InstanceID missing"))?;
                let requested: u16 = param_text("RequestedState")
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0);
                self.calls.job_state_requests.push((id.clone(), requested));
                let not_cancellable = self
                    .hosts
                    .get(hk)
                    .and_then(|h| h.jobs.get(&id))
                    .is_some_and(|j| self.faults.not_cancellable.contains(&j.vm));
                let h = self
                    .hosts
                    .get_mut(hk)
                    .ok_or_else(|| Fault::invalid("unknown host"))?;
                let job = h
                    .jobs
                    .get_mut(&id)
                    .ok_or_else(|| Fault::not_found("no such job"))?;
                if !(requested == 4 || requested == 5) || (not_cancellable && job.running()) {
                    return Ok(vec![("ReturnValue".into(), CimValue::U32(4097))]);
                }
                if !job.running() {
                    return Ok(vec![("ReturnValue".into(), CimValue::U32(32775))]);
                }
                job.state = if requested == 4 { 8 } else { 9 };
                job.error = Some("The operation was cancelled.".into());
                let (src, vm) = (job.source.clone(), job.vm.clone());
                if let Some(v) = self.hosts.get_mut(&src).and_then(|h| h.vms.get_mut(&vm)) {
                    v.op_status = vec![2];
                }
                Ok(vec![("ReturnValue".into(), CimValue::U32(0))])
            }
            ("StdRegProv", _) => {
                let h = self
                    .hosts
                    .get_mut(hk)
                    .ok_or_else(|| Fault::invalid("unknown host"))?;
                Self::std_reg_prov(h, method, params)
            }
            ("CIM_DataFile", "Delete") => {
                let name = sel("Name").ok_or_else(|| Fault::not_found("Name missing"))?;
                let h = self
                    .hosts
                    .get_mut(hk)
                    .ok_or_else(|| Fault::invalid("unknown host"))?;
                let k = key(&name);
                if !h.files.contains_key(&k) {
                    return Err(Fault::not_found(format!("No such file {name}")));
                }
                if h.vms.values().any(|v| v.disks.iter().any(|d| key(d) == k)) {
                    // A disk a VM of this host holds: 15 ("sharing violation"), so a driver that
                    // forgot to check never loses data here.
                    return Ok(vec![("ReturnValue".into(), CimValue::U32(15))]);
                }
                h.files.remove(&k);
                Ok(vec![("ReturnValue".into(), CimValue::U32(0))])
            }
            ("Win32_Directory", "Rename") => {
                // Win32_Directory.Rename(FileName): "the fully qualified new name"; 0 success,
                // 10 the object exists, 13 not the same drive, 15 sharing violation (the
                // CIM_LogicalFile return table). Windows refuses to rename a folder while a file
                // in it is open: here, while a VM of the host has a disk or its configuration in
                // it.
                let name = sel("Name").ok_or_else(|| Fault::not_found("Name missing"))?;
                let to = param_text("FileName")
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| Fault::invalid("FileName missing"))?;
                let writes = self
                    .faults
                    .writes_before_folder_rename
                    .remove(hk)
                    .unwrap_or_default();
                let h = self
                    .hosts
                    .get_mut(hk)
                    .ok_or_else(|| Fault::invalid("unknown host"))?;
                for f in writes {
                    h.write_file(&f, 1);
                }
                if !h.dir_exists(&name) {
                    return Err(Fault::not_found(format!("No such directory {name}")));
                }
                let (k, kt) = (key(&name), key(&to));
                if !k.get(..2).is_some_and(|d| kt.starts_with(d)) {
                    return Ok(vec![("ReturnValue".into(), CimValue::U32(13))]);
                }
                if h.dir_exists(&to) || h.files.contains_key(&kt) {
                    return Ok(vec![("ReturnValue".into(), CimValue::U32(10))]);
                }
                let prefix = format!("{k}\\");
                let in_use = h.vms.values().any(|v| {
                    v.disks
                        .iter()
                        .chain(std::iter::once(&v.config_root))
                        .any(|p| key(p) == k || key(p).starts_with(&prefix))
                });
                if in_use {
                    return Ok(vec![("ReturnValue".into(), CimValue::U32(15))]);
                }
                let moved = |p: &str| format!("{}{}", to.trim_end_matches('\\'), &p[k.len()..]);
                let dirs: Vec<(String, String)> = h
                    .dirs
                    .iter()
                    .filter(|(d, _)| **d == k || d.starts_with(&prefix))
                    .map(|(d, p)| (d.clone(), p.clone()))
                    .collect();
                for (d, p) in dirs {
                    h.dirs.remove(&d);
                    let np = moved(&p);
                    h.dirs.insert(key(&np), np);
                }
                let files: Vec<String> = h
                    .files
                    .keys()
                    .filter(|f| f.starts_with(&prefix))
                    .cloned()
                    .collect();
                for f in files {
                    if let Some(mut ff) = h.files.remove(&f) {
                        ff.path = moved(&ff.path);
                        h.files.insert(key(&ff.path), ff);
                    }
                }
                Ok(vec![("ReturnValue".into(), CimValue::U32(0))])
            }
            ("Win32_Directory", "Delete") => {
                let name = sel("Name").ok_or_else(|| Fault::not_found("Name missing"))?;
                let h = self
                    .hosts
                    .get_mut(hk)
                    .ok_or_else(|| Fault::invalid("unknown host"))?;
                if !h.dir_exists(&name) {
                    return Err(Fault::not_found(format!("No such directory {name}")));
                }
                let k = key(&name);
                let prefix = format!("{k}\\");
                // Someone's files arriving, by their path, in the folder being deleted (by its
                // name, or the name it was set aside from) between a driver's emptiness check
                // and this call.
                let pending = self
                    .faults
                    .writes_before_folder_delete
                    .remove(hk)
                    .unwrap_or_default();
                let mut later = Vec::new();
                for f in pending {
                    let folder = parent(&f).map(|p| key(&p)).unwrap_or_default();
                    if k == folder || k.starts_with(&format!("{folder}.vmove-removing-")) {
                        h.write_file(&f, 1);
                    } else {
                        later.push(f);
                    }
                }
                if !later.is_empty() {
                    self.faults
                        .writes_before_folder_delete
                        .insert(hk.to_owned(), later);
                }
                // Win32_Directory.Delete is not proven to refuse a folder that is not empty, and
                // its sibling DeleteEx walks the folder's children (StartFileName/StopFileName:
                // class reference; src/cleanup.rs): the fake deletes the folder WITH everything
                // in it, so a driver that relies on a check made before the call loses data here.
                h.files.retain(|f, _| !f.starts_with(&prefix));
                h.dirs.retain(|d, _| *d != k && !d.starts_with(&prefix));
                Ok(vec![("ReturnValue".into(), CimValue::U32(0))])
            }
            _ => Err(Fault::new(
                "w:ActionNotSupported",
                2_150_858_909,
                format!("{class}.{method} is not supported by the fake"),
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parent_stops_at_the_volume() {
        assert_eq!(parent("E:\\VMs\\a").as_deref(), Some("E:\\VMs"));
        assert_eq!(parent("E:\\VMs").as_deref(), Some("E:\\"));
        assert_eq!(parent("E:\\"), None);
    }

    #[test]
    fn migration_job_moves_the_vm_on_the_virtual_clock() {
        let mut w = World::new();
        w.add_host("a", "HVA", &["C:", "E:"]);
        w.add_host("b", "HVB", &["C:", "E:"]);
        let g = w.add_vm("a", "vm1", true, 512, &[10], "E:\\VMs\\vm1");
        let job = FakeJob {
            id: "J".into(),
            vm: g.clone(),
            source: "a".into(),
            destination: "b".into(),
            live: true,
            new_root: Some("E:\\New\\vm1".into()),
            disk_moves: vec![(
                "E:\\VMs\\vm1\\Virtual Hard Disks\\vm1_0.vhdx".into(),
                "E:\\New\\vm1\\Virtual Hard Disks\\vm1_0.vhdx".into(),
            )],
            state: 3,
            percent: 0,
            start_ms: 0,
            duration_ms: 1000,
            error: None,
            fail_at_end: false,
            leaves_copies: false,
        };
        w.hosts.get_mut("a").unwrap().jobs.insert("J".into(), job);
        w.now_ms = 600;
        w.tick();
        assert_eq!(w.hosts["a"].vms[&g].op_status, vec![11, 32774]);
        assert_eq!(w.hosts["a"].active_migrations(&w.hosts, "b"), 1);
        w.now_ms = 1000;
        w.tick();
        assert!(!w.hosts["a"].vms.contains_key(&g));
        assert_eq!(w.hosts["b"].vms[&g].config_root, "E:\\New\\vm1");
        assert!(
            w.hosts["b"]
                .files
                .contains_key(&key("E:\\New\\vm1\\Virtual Hard Disks\\vm1_0.vhdx"))
        );
        // the source keeps its (now empty) folders
        assert!(w.hosts["a"].dir_exists("E:\\VMs\\vm1\\Virtual Hard Disks"));
        assert!(
            !w.hosts["a"]
                .files
                .contains_key(&key("E:\\VMs\\vm1\\Virtual Hard Disks\\vm1_0.vhdx"))
        );
    }
}
