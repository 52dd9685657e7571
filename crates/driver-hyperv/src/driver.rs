//! [`HyperVDriver`]: the `vmove_driver::Driver` contract over WMI (root\virtualization\v2 and
//! root\cimv2), mapping the seed's behaviour.

use crate::cim::{CimInstance, CimValue, Epr, class_uri};
use crate::config::HyperVHostConfig;
use crate::job::{JobPhase, JobRef};
use crate::paths::{self, wql_str};
use crate::prepare;
use crate::record::{self, AttemptRecord, Registry};
use crate::wsman::{Credentials, Param, TlsOptions, TransportConfig, WsmanClient, WsmanError};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use vmove_driver::*;

const V2: &str = "root/virtualization/v2";
const CIMV2: &str = "root/cimv2";

/// Secondary statuses that mean "migrating" (the seed's list).
const MIGRATING: [u32; 4] = [32774, 32778, 32779, 32780];

struct Host {
    client: WsmanClient,
    host_name: Mutex<Option<String>>,
    /// `host_name` as configured (the cache above also holds a name read from the host).
    configured_name: Option<String>,
}

/// What a move started by this driver needs later (verification, clean-up).
#[derive(Clone, Debug)]
struct Moved {
    guid: String,
    config_root: String,
    snapshot_root: String,
    swap_root: String,
    /// (source path, destination path, size in bytes)
    disks: Vec<(String, String, u64)>,
}

/// The Hyper-V driver: one WS-Management client per configured host.
pub struct HyperVDriver {
    hosts: BTreeMap<HostId, Host>,
    moved: Mutex<HashMap<(VmId, u32), Moved>>,
    /// Disk sizes for `list_vms` only (one WMI query per disk is slow on a host with many VMs);
    /// `footprint` and `verify` always ask the host.
    sizes: Mutex<HashMap<(HostId, String), (u64, std::time::Instant)>>,
}

/// How long `list_vms` trusts a disk size it read.
const SIZE_TTL: Duration = Duration::from_secs(300);

impl std::fmt::Debug for HyperVDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let clients: Vec<_> = self
            .hosts
            .iter()
            .map(|(k, h)| (k.clone(), h.client.endpoint()))
            .collect();
        f.debug_struct("HyperVDriver")
            .field("hosts", &clients)
            .finish_non_exhaustive()
    }
}

/// A read-only call failed: transient unless the credentials or the request are wrong.
pub(crate) fn read_err(host: &HostId, what: &str, e: WsmanError) -> DriverError {
    let msg = format!("{what} on {host} failed: {e}");
    if e.is_unauthorized() {
        return DriverError::permanent(msg);
    }
    match &e {
        // A WMI error that says "later" (server too busy, out of memory...) passes.
        WsmanError::Soap(s) if s.wmi().is_some_and(|w| w.is_transient()) => {
            DriverError::transient(msg).with_code(wmi_code(s))
        }
        WsmanError::Soap(s)
            if !s.is_timeout() && matches!(s, crate::wsman::SoapError::Fault { .. }) =>
        {
            match s.wmi().and_then(|w| w.code) {
                Some(c) => DriverError::permanent(msg).with_code(c as i64),
                None => DriverError::permanent(msg),
            }
        }
        _ => DriverError::transient(msg),
    }
}

/// The WMI error code of a fault, else its WS-Management code, else 0.
fn wmi_code(s: &crate::wsman::SoapError) -> i64 {
    match s {
        crate::wsman::SoapError::Fault { wmi, code, .. } => {
            wmi.as_ref().and_then(|w| w.code).or(*code).unwrap_or(0) as i64
        }
        _ => 0,
    }
}

/// A state-changing call failed: indeterminate unless it certainly was not delivered.
pub(crate) fn write_err(host: &HostId, what: &str, e: WsmanError) -> DriverError {
    let msg = format!("{what} on {host} failed: {e}");
    if e.certainly_not_sent() {
        if e.is_unauthorized() {
            return DriverError::permanent(msg);
        }
        return DriverError::transient(msg);
    }
    match &e {
        // The provider refused the call before doing anything (too busy, over quota): not
        // carried out, ask again later. A WMI time-out, transport failure or out-of-memory may
        // come after the method began: indeterminate, like the operation time-out (below).
        WsmanError::Soap(s) if s.wmi().is_some_and(|w| w.refused_before_work()) => {
            DriverError::transient(msg).with_code(wmi_code(s))
        }
        WsmanError::Soap(s) if s.wmi().is_some_and(|w| w.is_transient()) => {
            DriverError::indeterminate(msg).with_code(wmi_code(s))
        }
        WsmanError::Soap(crate::wsman::SoapError::Fault { code, wmi, .. }) if !e_is_timeout(&e) => {
            let mut d = DriverError::permanent(msg);
            d.code = wmi
                .as_ref()
                .and_then(|w| w.code)
                .or(*code)
                .map(|c| c as i64);
            d
        }
        _ => DriverError::indeterminate(msg),
    }
}

fn e_is_timeout(e: &WsmanError) -> bool {
    matches!(e, WsmanError::Soap(s) if s.is_timeout())
}

/// Words for a WMI method return value.
pub fn return_value_words(rv: u32) -> &'static str {
    match rv {
        0 => "completed",
        4096 => "job started",
        32768 => "failed",
        32769 => "access denied",
        32770 => "not supported",
        32771 => "status is unknown",
        32772 => "timeout",
        32773 => "invalid parameter",
        32774 => "system is in use",
        32775 => "invalid state for this operation",
        32776 => "incorrect data type",
        32777 => "system is not available",
        32778 => "out of memory",
        _ => "unknown return value",
    }
}

fn rv_error(what: &str, rv: u32) -> DriverError {
    let msg = format!("{what} returned {rv} ({})", return_value_words(rv));
    DriverError {
        class: crate::job::code_class(rv),
        message: msg,
        code: Some(rv as i64),
    }
}

fn power_of(enabled: u32) -> PowerState {
    match enabled {
        2 => PowerState::Running,
        3 => PowerState::Off,
        6 => PowerState::Saved,
        9 => PowerState::Paused,
        4 => PowerState::Transitioning("shutting down".into()),
        10 => PowerState::Transitioning("starting".into()),
        32773 => PowerState::Transitioning("saving".into()),
        32776 => PowerState::Transitioning("pausing".into()),
        32777 => PowerState::Transitioning("resuming".into()),
        other => PowerState::Transitioning(format!("enabled state {other}")),
    }
}

fn secondary_words(s: u32) -> String {
    match s {
        32768 => "creating snapshot".into(),
        32769 => "applying snapshot".into(),
        32770 => "deleting snapshot".into(),
        32771 => "waiting to start".into(),
        32772 => "merging disks".into(),
        32773 => "exporting".into(),
        other => format!("operational status {other}"),
    }
}

/// The seed's reading of `OperationalStatus`: (health, activity).
pub fn status_of(op: &[u32]) -> (Health, Activity) {
    let primary = op.first().copied().unwrap_or(2);
    let secondary = op.get(1).copied();
    let health = match primary {
        2 => Health::Ok,
        11 => Health::InService,
        3 => Health::Bad("degraded".into()),
        5 => Health::Bad("predictive failure".into()),
        other => Health::Bad(format!("operational status {other}")),
    };
    let activity = match secondary {
        Some(32780) => Activity::MigratingIn,
        Some(s) if MIGRATING.contains(&s) => Activity::MigratingOut,
        Some(32776) if primary == 11 => Activity::BackingUp,
        None if primary == 11 => Activity::BackingUp,
        Some(s) if primary == 11 || (32768..=32773).contains(&s) => {
            Activity::OtherJob(secondary_words(s))
        }
        _ => Activity::Idle,
    };
    (health, activity)
}

fn op_status(i: &CimInstance) -> Vec<u32> {
    i.get_array("OperationalStatus")
        .iter()
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

impl HyperVDriver {
    /// Builds the driver from `[hosts.<name>]` tables. The keys the CLI owns for every driver
    /// (`driver`, `max_migrations`, `path`) are left to it; every other key must be one of
    /// [`HyperVHostConfig`]'s.
    /// Credentials come from each host's `credentials_file`, else from the environment.
    pub fn from_config(hosts: &[(HostId, toml::Table)]) -> Result<HyperVDriver, DriverError> {
        let mut out = BTreeMap::new();
        for (id, table) in hosts {
            let mut t = table.clone();
            for k in ["driver", "max_migrations", "path"] {
                t.remove(k);
            }
            let cfg: HyperVHostConfig = toml::Value::Table(t).try_into().map_err(|e| {
                DriverError::permanent(format!("host {id}: invalid Hyper-V settings: {e}"))
            })?;
            let creds = Credentials::load(cfg.credentials_file.as_deref())
                .map_err(|e| DriverError::permanent(format!("host {id}: {e}")))?;
            out.insert(id.clone(), Self::host_from(&cfg, creds));
        }
        Ok(HyperVDriver {
            hosts: out,
            moved: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
        })
    }

    /// Builds the driver from parsed configs and explicit credentials (tests, embedding).
    pub fn new(hosts: Vec<(HostId, HyperVHostConfig, Credentials)>) -> HyperVDriver {
        let hosts = hosts
            .into_iter()
            .map(|(id, cfg, creds)| (id, Self::host_from(&cfg, creds)))
            .collect();
        HyperVDriver {
            hosts,
            moved: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
        }
    }

    fn host_from(cfg: &HyperVHostConfig, creds: Credentials) -> Host {
        let tc = TransportConfig {
            host: cfg.address.clone(),
            port: cfg.port(),
            scheme: cfg.transport,
            auth: cfg.auth,
            tls: TlsOptions {
                ca_file: cfg.ca_file.clone(),
                insecure_skip_verify: cfg.insecure_skip_verify,
            },
            kerberos: cfg.kerberos(),
            connect_timeout: Duration::from_secs(cfg.connect_timeout_secs.unwrap_or(20)),
            request_timeout: Duration::from_secs(cfg.request_timeout_secs.unwrap_or(60)),
        };
        Host {
            client: WsmanClient::new(tc, creds),
            host_name: Mutex::new(cfg.host_name.clone()),
            configured_name: cfg.host_name.clone(),
        }
    }

    /// Runs a read-only WQL query on a configured host (`root/virtualization/v2`,
    /// `root/cimv2`): for diagnostics and the live suite (`tests/live.rs`), which compares what
    /// the driver finds with what the host shows.
    pub async fn wmi_query(
        &self,
        host: &HostId,
        namespace: &str,
        wql: &str,
    ) -> DriverResult<Vec<CimInstance>> {
        self.query(host, namespace, wql).await
    }

    fn host(&self, id: &HostId) -> DriverResult<&Host> {
        self.hosts.get(id).ok_or_else(|| {
            DriverError::permanent(format!("host {id} is not a configured Hyper-V host"))
        })
    }

    async fn query(&self, id: &HostId, ns: &str, wql: &str) -> DriverResult<Vec<CimInstance>> {
        self.host(id)?
            .client
            .query(ns, wql)
            .await
            .map_err(|e| read_err(id, "a WMI query", e))
    }

    /// The computer name Hyper-V knows the host by.
    async fn host_name(&self, id: &HostId) -> DriverResult<String> {
        let h = self.host(id)?;
        if let Some(n) = h
            .host_name
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(n);
        }
        // The migration service's SystemName is the host's computer name (its key), in any
        // locale: captions are translated ("Hosting Computer System" is not what a Japanese
        // host shows: r4sd/go-wsman hyperv/host_filter.go).
        let name = self
            .service(id)
            .await?
            .get_str("SystemName")
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| {
                DriverError::transient(format!("{id} did not report its computer name"))
            })?;
        *h.host_name.lock().unwrap_or_else(|p| p.into_inner()) = Some(name.clone());
        Ok(name)
    }

    /// Every VM of the host: the `Msvm_ComputerSystem` instances whose `Name` is a GUID (the
    /// host's own instance has its computer name). Not by `Caption`: it is translated
    /// (`prepare::is_vm_name`).
    async fn vm_instances(&self, id: &HostId) -> DriverResult<Vec<CimInstance>> {
        Ok(self
            .query(id, V2, "SELECT * FROM Msvm_ComputerSystem")
            .await?
            .into_iter()
            .filter(|i| i.get_str("Name").is_some_and(|n| prepare::is_vm_name(&n)))
            .collect())
    }

    async fn vm_instance(&self, id: &HostId, vm: &VmId) -> DriverResult<Option<CimInstance>> {
        let q = format!(
            "SELECT * FROM Msvm_ComputerSystem WHERE Name={}",
            wql_str(vm.as_str())
        );
        Ok(self
            .query(id, V2, &q)
            .await?
            .into_iter()
            .find(|i| i.get_str("Name").is_some_and(|n| prepare::is_vm_name(&n))))
    }

    async fn file_size(&self, id: &HostId, path: &str) -> DriverResult<Option<u64>> {
        let q = format!(
            "SELECT * FROM CIM_DataFile WHERE Name={}",
            wql_str(&path.to_ascii_lowercase())
        );
        Ok(self
            .query(id, CIMV2, &q)
            .await?
            .first()
            .map(|f| f.get_u64("FileSize").unwrap_or(0)))
    }

    fn to_info(
        &self,
        i: &CimInstance,
        memory: &HashMap<String, u64>,
        disk: &HashMap<String, u64>,
    ) -> Option<VmInfo> {
        let guid = i.get_str("Name")?;
        let (health, activity) = status_of(&op_status(i));
        Some(VmInfo {
            name: i.get_str("ElementName").unwrap_or_else(|| guid.clone()),
            power: power_of(i.get_u32("EnabledState").unwrap_or(0)),
            health,
            activity,
            memory_bytes: memory.get(&guid.to_ascii_uppercase()).copied().unwrap_or(0),
            disk_bytes: disk.get(&guid.to_ascii_uppercase()).copied().unwrap_or(0),
            id: VmId::new(guid),
        })
    }

    async fn cached_file_size(&self, id: &HostId, path: &str) -> DriverResult<Option<u64>> {
        let k = (id.clone(), path.to_ascii_lowercase());
        if let Some((sz, at)) = self.sizes.lock().unwrap_or_else(|p| p.into_inner()).get(&k) {
            if at.elapsed() < SIZE_TTL {
                return Ok(Some(*sz));
            }
        }
        let sz = self.file_size(id, path).await?;
        if let Some(v) = sz {
            self.sizes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(k, (v, std::time::Instant::now()));
        }
        Ok(sz)
    }

    fn guid_of_instance_id(iid: &str) -> Option<String> {
        // "Microsoft:<GUID>\..." -> GUID
        let rest = iid.strip_prefix("Microsoft:")?;
        Some(rest.split('\\').next()?.to_ascii_uppercase())
    }

    async fn memory_map(
        &self,
        id: &HostId,
        like: Option<&str>,
    ) -> DriverResult<HashMap<String, u64>> {
        let q = match like {
            Some(g) => format!(
                "SELECT * FROM Msvm_MemorySettingData WHERE InstanceID LIKE {}",
                wql_str(&format!("Microsoft:{g}%"))
            ),
            None => "SELECT * FROM Msvm_MemorySettingData".to_owned(),
        };
        let mut m = HashMap::new();
        for i in self.query(id, V2, &q).await? {
            if let (Some(g), Some(mb)) = (
                i.get_str("InstanceID")
                    .as_deref()
                    .and_then(Self::guid_of_instance_id),
                i.get_u64("VirtualQuantity"),
            ) {
                m.entry(g).or_insert(mb << 20);
            }
        }
        Ok(m)
    }

    /// The VM's virtual hard disks (current configuration), in order: ResourceType 31 with the
    /// hard-disk subtype, not its DVD or floppy images (`prepare::is_vhd`).
    async fn vhds(&self, id: &HostId, guid: &str) -> DriverResult<Vec<CimInstance>> {
        self.vhds_of_settings(id, &format!("Microsoft:{guid}"))
            .await
    }

    /// The virtual hard disks of the settings whose `InstanceID` is `settings_id` (a VM's
    /// `Microsoft:<GUID>`, a checkpoint's `Microsoft:<checkpoint id>`): os-win `_wqlutils.py`
    /// `get_element_associated_class` selects them by `InstanceID LIKE '<settings id>%'`.
    async fn vhds_of_settings(
        &self,
        id: &HostId,
        settings_id: &str,
    ) -> DriverResult<Vec<CimInstance>> {
        let q = format!(
            "SELECT * FROM Msvm_StorageAllocationSettingData WHERE InstanceID LIKE {}",
            wql_str(&format!("{settings_id}%"))
        );
        Ok(self
            .query(id, V2, &q)
            .await?
            .into_iter()
            .filter(|s| {
                prepare::is_vhd(s)
                    // `Microsoft:<id>%` must not also take `Microsoft:<id>X...`.
                    && s.get_str("InstanceID").is_some_and(|i| {
                        i.get(settings_id.len()..)
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with('\\'))
                    })
            })
            .collect())
    }

    /// The virtual hard disks the VM's checkpoints reference (standard and recovery
    /// checkpoints: the older links of each differencing chain). The checkpoints are the VM's
    /// associators through `Msvm_SnapshotOfVirtualSystem` (os-win `vmutils.py`
    /// `get_vm_snapshots`).
    async fn checkpoint_vhds(&self, id: &HostId, guid: &str) -> DriverResult<Vec<CimInstance>> {
        let q = format!(
            "ASSOCIATORS OF {{Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"{guid}\"}} WHERE AssocClass=Msvm_SnapshotOfVirtualSystem ResultClass=Msvm_VirtualSystemSettingData"
        );
        let mut out = Vec::new();
        for snap in self.query(id, V2, &q).await? {
            let Some(sid) = snap.get_str("InstanceID") else {
                continue;
            };
            out.extend(self.vhds_of_settings(id, &sid).await?);
        }
        Ok(out)
    }

    async fn vssd(&self, id: &HostId, guid: &str) -> DriverResult<CimInstance> {
        let q = format!(
            "ASSOCIATORS OF {{Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"{guid}\"}} WHERE AssocClass=Msvm_SettingsDefineState ResultClass=Msvm_VirtualSystemSettingData"
        );
        self.query(id, V2, &q)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                DriverError::permanent(format!("VM {guid} not found on {id} (no settings)"))
            })
    }

    async fn volumes(&self, id: &HostId) -> DriverResult<Vec<CimInstance>> {
        self.query(
            id,
            CIMV2,
            "SELECT * FROM Win32_LogicalDisk WHERE DriveType=3",
        )
        .await
    }

    async fn service(&self, id: &HostId) -> DriverResult<CimInstance> {
        self.query(id, V2, "SELECT * FROM Msvm_VirtualSystemMigrationService")
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                DriverError::permanent(format!("{id} has no virtual system migration service"))
            })
    }

    fn service_epr(svc: &CimInstance, host_name: &str) -> Epr {
        svc.epr
            .clone()
            .unwrap_or_else(|| crate::cim::migration_service_epr(host_name))
    }

    /// The job a handle names, read through the reference the call returned (WS-Transfer Get
    /// on its class and selectors: job.rs); None when the host says it is gone.
    async fn job(&self, id: &HostId, handle: &str) -> DriverResult<Option<CimInstance>> {
        let r = JobRef::decode(handle);
        match self.host(id)?.client.get(&r.epr()).await {
            Ok(j) => Ok(Some(j)),
            Err(WsmanError::Soap(s)) if crate::job::is_gone(&s) => Ok(None),
            Err(e) => Err(read_err(id, "reading the migration job", e)),
        }
    }

    /// A failed job's errors (`GetErrorEx`), best effort: a job whose detail cannot be read
    /// still failed, with its `ErrorCode` and `ErrorDescription`.
    async fn job_errors(&self, id: &HostId, handle: &str) -> Vec<crate::job::JobError> {
        let r = JobRef::decode(handle);
        let out = match self.host(id) {
            Ok(h) => h.client.invoke(&r.epr(), "GetErrorEx", &[]).await,
            Err(_) => return Vec::new(),
        };
        match out {
            Ok(o) if o.get_u32("ReturnValue") == Some(0) => o
                .get_array("Errors")
                .iter()
                .filter_map(|t| crate::job::JobError::parse(t))
                .collect(),
            Ok(o) => {
                tracing::warn!(host = %id, rv = ?o.get_u32("ReturnValue"), "GetErrorEx on the failed migration job did not answer 0");
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(host = %id, error = %e, "GetErrorEx on the failed migration job failed");
                Vec::new()
            }
        }
    }

    /// Asks the job for a state change; its ReturnValue.
    async fn request_job_state(
        &self,
        id: &HostId,
        handle: &str,
        state: u16,
    ) -> DriverResult<Option<u32>> {
        let out = self
            .host(id)?
            .client
            .invoke(
                &JobRef::decode(handle).epr(),
                "RequestStateChange",
                &[("RequestedState".into(), Param::Value(CimValue::U16(state)))],
            )
            .await
            .map_err(|e| write_err(id, "RequestStateChange on the migration job", e))?;
        Ok(out.get_u32("ReturnValue"))
    }

    /// Whether a folder exists (`Win32_Directory`).
    async fn folder_exists(&self, id: &HostId, path: &str) -> DriverResult<bool> {
        let lower = path.trim_end_matches('\\').to_ascii_lowercase();
        let q = format!(
            "SELECT * FROM Win32_Directory WHERE Name={}",
            wql_str(&lower)
        );
        Ok(!self.query(id, CIMV2, &q).await?.is_empty())
    }

    /// A folder's subfolders (lower-case names) and number of files; `None` when it does not exist.
    async fn folder_contents(
        &self,
        id: &HostId,
        path: &str,
    ) -> DriverResult<Option<(Vec<String>, usize)>> {
        let lower = path.trim_end_matches('\\').to_ascii_lowercase();
        if !self.folder_exists(id, &lower).await? {
            return Ok(None);
        }
        let q = format!(
            "ASSOCIATORS OF {{Win32_Directory.Name=\"{}\"}} WHERE AssocClass=Win32_Subdirectory ResultRole=PartComponent",
            lower.replace('\\', "\\\\")
        );
        let subdirs: Vec<String> = self
            .query(id, CIMV2, &q)
            .await?
            .iter()
            .filter_map(|d| d.get_str("Name"))
            .map(|n| n.to_ascii_lowercase())
            .collect();
        // CIM_DataFile.Path has no drive letter and ends with a backslash.
        let drive = paths::drive(&lower).unwrap_or_default();
        let dir_path = format!("{}\\", paths::without_drive(&lower));
        let q = format!(
            "SELECT * FROM CIM_DataFile WHERE Drive={} AND Path={}",
            wql_str(&drive),
            wql_str(&dir_path)
        );
        let files = self.query(id, CIMV2, &q).await?.len();
        Ok(Some((subdirs, files)))
    }

    fn remember(&self, req: &MigrationRequest, m: Moved) {
        self.moved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((req.vm.clone(), req.attempt), m);
    }

    fn recall(&self, req: &MigrationRequest) -> Option<Moved> {
        let map = self.moved.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(req.vm.clone(), req.attempt))
            .cloned()
            .or_else(|| {
                map.iter()
                    .filter(|((v, _), _)| *v == req.vm)
                    .max_by_key(|((_, a), _)| *a)
                    .map(|(_, m)| m.clone())
            })
    }

    /// Why a failed attempt's files on the destination must not be touched now, if they must
    /// not: the VM must be on the source, not on the destination, and not moving.
    async fn failed_attempt_hold(&self, req: &MigrationRequest) -> DriverResult<Option<String>> {
        if self.vm_instance(&req.destination, &req.vm).await?.is_some() {
            return Ok(Some(format!(
                "VM {} is on {}: its files there are its own",
                req.vm, req.destination
            )));
        }
        if self.vm_instance(&req.source, &req.vm).await?.is_none() {
            return Ok(Some(format!(
                "VM {} is not on {} either: the destination copies may be all there is",
                req.vm, req.source
            )));
        }
        if let Some(job) = self.running_job_of(&req.source, req.vm.as_str()).await? {
            return Ok(Some(format!(
                "a migration of VM {} is running ({job})",
                req.vm
            )));
        }
        Ok(None)
    }

    /// Every VHD path a VM (or checkpoint) on the host uses, lower case.
    async fn disks_in_use(&self, id: &HostId) -> DriverResult<std::collections::HashSet<String>> {
        Ok(self
            .query(id, V2, "SELECT * FROM Msvm_StorageAllocationSettingData")
            .await?
            .iter()
            .flat_map(|s| s.get_array("HostResource"))
            .map(|p| p.to_ascii_lowercase())
            .collect())
    }

    /// A host's registry (where the attempt records are).
    fn registry<'a>(&'a self, id: &'a HostId) -> DriverResult<Registry<'a>> {
        Ok(Registry {
            client: &self.host(id)?.client,
            host: id,
        })
    }

    /// What the VM's attempt records on its destination vouch for, merged: this attempt's and
    /// every earlier one's (of this run or an earlier run, by this process or another) that
    /// still names something.
    async fn own_record(&self, req: &MigrationRequest) -> DriverResult<AttemptRecord> {
        let mut out = AttemptRecord::default();
        for (_, r) in self.registry(&req.destination)?.records(&req.vm).await? {
            out.merge(&r);
        }
        Ok(out)
    }

    /// The attempt records of every OTHER VM on `host`.
    async fn others_records(
        &self,
        req: &MigrationRequest,
        host: &HostId,
    ) -> DriverResult<Vec<AttemptRecord>> {
        self.registry(host)?.others(&req.vm).await
    }

    /// Drops `path` from the VM's records on `host` once it is gone (best effort: a record of a
    /// path that is gone lists nothing, and the VM's next start to the host drops it).
    async fn forget_removed(&self, req: &MigrationRequest, host: &HostId, path: &str) {
        let r = match self.registry(host) {
            Ok(r) => r.forget(&req.vm, path).await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            tracing::warn!(vm = %req.vm, host = %host, path, error = %e, "cannot drop a removed path from the attempt records");
        }
    }

    /// Writes attempt `req`'s record `rec` on its destination, merged with what the VM's earlier
    /// records there still vouch for (the disks and folders that still exist), then deletes
    /// those earlier records. Written before the earlier ones go, so a crash in between leaves
    /// both (the same paths twice), never neither. Returns what it carried over from them.
    async fn write_attempt_record(
        &self,
        req: &MigrationRequest,
        rec: &AttemptRecord,
    ) -> DriverResult<AttemptRecord> {
        let dst = &req.destination;
        let reg = self.registry(dst)?;
        let name = record::value_name(req);
        let earlier = reg.records(&req.vm).await?;
        let mut carried = AttemptRecord::default();
        // (A record of this very attempt, if its start is asked again, is carried over too.)
        for (_, r) in &earlier {
            let mut still = AttemptRecord::default();
            for d in &r.disks {
                if self.file_size(dst, d).await?.is_some() {
                    still.disks.push(d.clone());
                }
            }
            for f in &r.folders {
                if self.folder_exists(dst, f).await? {
                    still.folders.push(f.clone());
                }
            }
            carried.merge(&still);
        }
        let mut merged = rec.clone();
        merged.merge(&carried);
        reg.write(&req.vm, &name, &merged).await?;
        for (n, _) in &earlier {
            if *n != name {
                reg.delete(&req.vm, n).await?;
            }
        }
        Ok(carried)
    }

    /// Deletes every attempt record of the VM on its destination (its move there is proven).
    async fn drop_records_after_proof(&self, req: &MigrationRequest) {
        let r = async {
            let reg = self.registry(&req.destination)?;
            for (n, _) in reg.records(&req.vm).await? {
                reg.delete(&req.vm, &n).await?;
            }
            DriverResult::Ok(())
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(vm = %req.vm, host = %req.destination, error = %e, "cannot delete the attempt records of a proven move");
        }
    }

    /// Takes back what attempt `req`'s record added (its start was refused after it was
    /// written: nothing was created): the record keeps only what it `carried` over from earlier
    /// records, and goes when that is nothing.
    async fn drop_attempt_record(&self, req: &MigrationRequest, carried: &AttemptRecord) {
        let name = record::value_name(req);
        let r = match self.registry(&req.destination) {
            Ok(r) if carried.is_empty() => r.delete(&req.vm, &name).await,
            Ok(r) => r.write(&req.vm, &name, carried).await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            tracing::warn!(vm = %req.vm, host = %req.destination, error = %e, "cannot delete the record of a refused start");
        }
    }

    /// Whether ANOTHER VM's attempt record names `path` on its host as one of its disks (its
    /// copy may be the file there now).
    fn claimed_by_another_vm(others: &[AttemptRecord], path: &str) -> bool {
        others
            .iter()
            .any(|r| r.disks.iter().any(|d| d.eq_ignore_ascii_case(path)))
    }

    /// Whether ANOTHER VM's attempt may put something into `folder` (a disk below it) or counts
    /// it as a folder of its own.
    fn folder_claimed_by_another_vm(others: &[AttemptRecord], folder: &str) -> bool {
        let below = format!("{}\\", folder.trim_end_matches('\\').to_ascii_lowercase());
        others.iter().any(|r| {
            r.disks
                .iter()
                .any(|d| d.to_ascii_lowercase().starts_with(&below))
                || r.folders.iter().any(|f| f.eq_ignore_ascii_case(folder))
        })
    }

    /// Why `path` (a `"file"` or a `"folder"`) on `host` is not one an attempt of the VM may have
    /// created on its destination, if it is not: no attempt record of the VM there names it.
    async fn not_recorded(
        &self,
        req: &MigrationRequest,
        host: &HostId,
        path: &str,
        kind: &str,
    ) -> DriverResult<Option<String>> {
        if *host == req.destination {
            let rec = self.own_record(req).await?;
            let named = if kind == "file" {
                &rec.disks
            } else {
                &rec.folders
            };
            if named.iter().any(|p| p.eq_ignore_ascii_case(path)) {
                return Ok(None);
            }
        }
        Ok(Some(format!(
            "{path} on {host} is not a {kind} an attempt of VM {} created (no attempt record names it): kept",
            req.vm
        )))
    }

    /// Checks that `folder` on `host` is one an attempt of the VM created on its destination (an
    /// attempt record names it), claimed by no other VM's attempt, and that the VM is safe on the
    /// source; why not, if not.
    async fn attempt_folder_refusal(
        &self,
        req: &MigrationRequest,
        host: &HostId,
        folder: &str,
    ) -> DriverResult<Option<String>> {
        if let Some(why) = self.not_recorded(req, host, folder, "folder").await? {
            return Ok(Some(why));
        }
        if Self::folder_claimed_by_another_vm(&self.others_records(req, host).await?, folder) {
            return Ok(Some(format!(
                "{folder} on {host} may receive another VM's move: kept"
            )));
        }
        Ok(self
            .failed_attempt_hold(req)
            .await?
            .map(|why| format!("{folder} kept: {why}")))
    }

    /// Deletes a failed attempt's disk copy on the destination after checking again that it is
    /// one, that the VM is safe on the source, and that no VM on the destination uses the file.
    async fn remove_attempt_copy(
        &self,
        req: &MigrationRequest,
        leftover: &Leftover,
    ) -> DriverResult<()> {
        let host = &leftover.host;
        let path = leftover.what.as_str();
        if self.file_size(host, path).await?.is_none() {
            // Already gone (removed by an earlier call whose answer was lost, or by someone):
            // nothing to prove, nothing touched.
            self.forget_removed(req, host, path).await;
            return Ok(());
        }
        if let Some(why) = self.not_recorded(req, host, path, "file").await? {
            return Err(DriverError::permanent(why));
        }
        if Self::claimed_by_another_vm(&self.others_records(req, host).await?, path) {
            return Err(DriverError::permanent(format!(
                "{path} on {host} is also a target of another VM's move: kept"
            )));
        }
        if let Some(why) = self.failed_attempt_hold(req).await? {
            return Err(DriverError::permanent(format!("{path} kept: {why}")));
        }
        if self
            .disks_in_use(host)
            .await?
            .contains(&path.to_ascii_lowercase())
        {
            return Err(DriverError::permanent(format!(
                "{path} on {host} is used by a VM there: kept"
            )));
        }
        match self.cim_delete(host, "CIM_DataFile", path).await? {
            Some(0) => {
                self.forget_removed(req, host, path).await;
                Ok(())
            }
            Some(rv) => Err(DriverError::permanent(format!(
                "CIM_DataFile.Delete of {path} on {host} returned {rv}: kept"
            ))
            .with_code(rv as i64)),
            None => Err(DriverError::indeterminate(
                "CIM_DataFile.Delete returned no ReturnValue",
            )),
        }
    }

    /// Removes an empty folder without ever deleting what someone puts into it meanwhile
    /// (cleanup.rs): renames it to a name of its own (`Win32_Directory.Rename`, atomic), checks
    /// that folder empty, and deletes it; when it is not empty it is renamed back and kept.
    async fn remove_empty_folder(&self, host: &HostId, path: &str) -> DriverResult<()> {
        let aside = crate::cleanup::aside_name(path, &uuid::Uuid::new_v4().simple().to_string());
        match self.cim_rename(host, path, &aside).await? {
            Some(0) => {}
            Some(rv) => {
                return Err(DriverError::permanent(format!(
                    "{path} on {host} could not be set aside for removal (Win32_Directory.Rename returned {rv}): kept"
                ))
                .with_code(rv as i64));
            }
            None => {
                return Err(DriverError::indeterminate(
                    "Win32_Directory.Rename returned no ReturnValue",
                ));
            }
        }
        let empty = matches!(
            self.folder_contents(host, &aside).await,
            Ok(Some((ref subdirs, 0))) if subdirs.is_empty()
        );
        if empty {
            return match self.cim_delete(host, "Win32_Directory", &aside).await? {
                Some(0) => Ok(()),
                Some(rv) => Err(DriverError::permanent(format!(
                    "Win32_Directory.Delete of {aside} (set aside from {path}) on {host} returned {rv}: {}",
                    crate::cleanup::put_back_words(&aside, path)
                ))
                .with_code(rv as i64)),
                None => Err(DriverError::indeterminate(
                    "Win32_Directory.Delete returned no ReturnValue",
                )),
            };
        }
        // Something arrived before the rename: back under its name, kept.
        match self.cim_rename(host, &aside, path).await {
            Ok(Some(0)) => Err(DriverError::permanent(format!(
                "{path} on {host} is not empty: kept"
            ))),
            _ => Err(DriverError::permanent(format!(
                "{path} on {host} is not empty and could not be renamed back: {}",
                crate::cleanup::put_back_words(&aside, path)
            ))),
        }
    }

    /// Invokes `Rename(FileName)` on the root\cimv2 `Win32_Directory` named `path`.
    async fn cim_rename(&self, host: &HostId, path: &str, to: &str) -> DriverResult<Option<u32>> {
        let epr = Epr::new(
            class_uri(CIMV2, "Win32_Directory"),
            vec![("Name".into(), path.to_ascii_lowercase())],
        );
        let out = self
            .host(host)?
            .client
            .invoke(
                &epr,
                "Rename",
                &[(
                    "FileName".into(),
                    Param::Value(CimValue::String(to.to_owned())),
                )],
            )
            .await
            .map_err(|e| write_err(host, "Win32_Directory.Rename", e))?;
        Ok(out.get_u32("ReturnValue"))
    }

    /// Invokes `Delete` on the root\cimv2 instance of `class` named `path` (a file, or a folder
    /// set aside and checked empty: remove_empty_folder); its ReturnValue, which the caller reads.
    async fn cim_delete(
        &self,
        host: &HostId,
        class: &str,
        path: &str,
    ) -> DriverResult<Option<u32>> {
        let epr = Epr::new(
            class_uri(CIMV2, class),
            vec![("Name".into(), path.to_ascii_lowercase())],
        );
        let out = self
            .host(host)?
            .client
            .invoke(&epr, "Delete", &[])
            .await
            .map_err(|e| write_err(host, &format!("{class}.Delete"), e))?;
        Ok(out.get_u32("ReturnValue"))
    }

    async fn running_job_of(&self, id: &HostId, guid: &str) -> DriverResult<Option<String>> {
        let q = format!(
            "SELECT * FROM Msvm_MigrationJob WHERE VirtualSystemName={}",
            wql_str(guid)
        );
        Ok(self
            .query(id, V2, &q)
            .await?
            .into_iter()
            .find(crate::job::is_running)
            .and_then(|j| {
                j.epr
                    .as_ref()
                    .and_then(JobRef::from_epr)
                    .or_else(|| j.get_str("InstanceID").map(|i| JobRef::migration(&i)))
            })
            .map(|r| r.encode()))
    }

    /// The name a move to `id` gives as `DestinationHost` (`prepare::destination_name`): the
    /// configured `host_name`, else the host's full DNS name, else its computer name.
    async fn destination_name(&self, id: &HostId) -> DriverResult<String> {
        if let Some(c) = &self.host(id)?.configured_name {
            return Ok(c.clone());
        }
        let computer_name = self.host_name(id).await?;
        let cs = self
            .query(id, CIMV2, "SELECT * FROM Win32_ComputerSystem")
            .await?;
        Ok(prepare::destination_name(None, cs.first(), &computer_name))
    }

    /// `EnableVirtualSystemMigration` of the host's migration service settings.
    async fn migration_enabled(&self, id: &HostId) -> DriverResult<bool> {
        let sd = self
            .query(
                id,
                V2,
                "SELECT * FROM Msvm_VirtualSystemMigrationServiceSettingData",
            )
            .await?;
        Ok(sd
            .first()
            .and_then(|s| s.get_bool("EnableVirtualSystemMigration"))
            .unwrap_or(false))
    }

    /// Whether the source can send and the destination can take a migration, as Microsoft's
    /// sample and os-win check before moving (Windows-classic-samples MigrationCommon.cs
    /// `GetMigrationDestinationListenAddresses`; os-win livemigrationutils.py
    /// `check_live_migration_config`): `EnableVirtualSystemMigration` on both, and the
    /// destination listening on some address (`MigrationServiceListenerIPAddressList`). The
    /// destination's addresses (for `DestinationIPAddressList`); a destination that takes no
    /// migrations refuses (`DestinationRefused`: another may take the VM), a source that sends
    /// none is permanent.
    async fn migration_readiness(&self, src: &HostId, dst: &HostId) -> DriverResult<Vec<String>> {
        if !self.migration_enabled(src).await? {
            return Err(DriverError::permanent(format!(
                "{src} does not send VM migrations (EnableVirtualSystemMigration is false on its migration service: Enable-VMMigration)"
            )));
        }
        if !self.migration_enabled(dst).await? {
            return Err(DriverError::destination_refused(format!(
                "{dst} does not accept VM migrations (EnableVirtualSystemMigration is false on its migration service: Enable-VMMigration)"
            )));
        }
        let addresses: Vec<String> = self
            .service(dst)
            .await?
            .get_array("MigrationServiceListenerIPAddressList")
            .into_iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if addresses.is_empty() {
            return Err(DriverError::destination_refused(format!(
                "{dst} has no migration network (its migration service listens on no address: Add-VMMigrationNetwork)"
            )));
        }
        Ok(addresses)
    }

    /// Removes a planned VM of `req.vm` (same GUID) from the destination, the leftover of a
    /// failed attempt that blocks the next one, as Move-VM does before a move and os-win's
    /// `destroy_existing_planned_vm` (migrationutils.py) with
    /// `Msvm_VirtualSystemManagementService.DestroySystem` (destroysystem-msvm-
    /// virtualsystemmanagementservice.md; a planned VM: msvm-plannedcomputersystem.md).
    /// Only while the VM is realized on the source and not on the destination, and no
    /// migration of it runs: then a planned VM of its GUID there can only be an attempt's
    /// leftover (a move in progress would show). `DestroySystem` removes the definition, not
    /// its disks (os-win vmutils.py `destroy_vm`).
    async fn remove_planned_leftover(&self, req: &MigrationRequest) -> DriverResult<()> {
        let (src, dst) = (&req.source, &req.destination);
        let q = format!(
            "SELECT * FROM Msvm_PlannedComputerSystem WHERE Name={}",
            wql_str(req.vm.as_str())
        );
        let found: Vec<CimInstance> = self
            .query(dst, V2, &q)
            .await?
            .into_iter()
            .filter(|p| {
                p.get_str("Name")
                    .is_some_and(|n| n.eq_ignore_ascii_case(req.vm.as_str()))
            })
            .collect();
        let Some(planned) = found.into_iter().next() else {
            return Ok(());
        };
        if self.vm_instance(dst, &req.vm).await?.is_some() {
            return Err(DriverError::permanent(format!(
                "VM {} is on {dst} already, and a planned VM of it too: left for a person",
                req.vm
            )));
        }
        if self.vm_instance(src, &req.vm).await?.is_none() {
            return Err(DriverError::permanent(format!(
                "VM {} is not on {src}: its planned VM on {dst} is not removed",
                req.vm
            )));
        }
        if let Some(job) = self.running_job_of(src, req.vm.as_str()).await? {
            return Err(DriverError::transient(format!(
                "a migration of VM {} is running ({job}): its planned VM on {dst} stays",
                req.vm
            )));
        }
        let target = planned.epr.clone().unwrap_or_else(|| {
            Epr::new(
                class_uri(V2, "Msvm_PlannedComputerSystem"),
                vec![
                    (
                        "CreationClassName".into(),
                        "Msvm_PlannedComputerSystem".into(),
                    ),
                    ("Name".into(), req.vm.as_str().to_owned()),
                ],
            )
        });
        let vmms = crate::cim::management_service_epr(&self.host_name(dst).await?);
        tracing::info!(vm = %req.vm, host = %dst, "removing the planned VM a failed attempt left");
        let out = self
            .host(dst)?
            .client
            .invoke(
                &vmms,
                "DestroySystem",
                &[("AffectedSystem".into(), Param::Ref(target))],
            )
            .await
            .map_err(|e| {
                let mut e = write_err(dst, "DestroySystem of a planned VM", e);
                // Nothing was asked of the migration service: the VM did not move.
                if e.class == ErrorClass::Indeterminate {
                    e.class = ErrorClass::Transient;
                }
                e
            })?;
        match out.get_u32("ReturnValue") {
            Some(0) => Ok(()),
            Some(4096) => {
                // A job removes it: the start is asked again once it is gone.
                Err(DriverError::transient(format!(
                    "the planned VM of {} on {dst} is being removed",
                    req.vm
                )))
            }
            Some(rv) => Err(rv_error("DestroySystem of a planned VM", rv)),
            None => Err(DriverError::transient(
                "DestroySystem returned no ReturnValue",
            )),
        }
    }

    /// How a planned VM of `vm` is named as a leftover.
    fn planned_what(vm: &VmId) -> String {
        format!("planned VM {vm}")
    }

    /// The planned VM of `req.vm` on its destination as a leftover of a failed attempt, when
    /// there is one and the VM is safe on its source (on the source, not on the destination,
    /// not migrating: `failed_attempt_hold`).
    async fn planned_leftover(&self, req: &MigrationRequest) -> DriverResult<Vec<Leftover>> {
        let q = format!(
            "SELECT * FROM Msvm_PlannedComputerSystem WHERE Name={}",
            wql_str(req.vm.as_str())
        );
        let found = self.query(&req.destination, V2, &q).await?.iter().any(|p| {
            p.get_str("Name")
                .is_some_and(|n| n.eq_ignore_ascii_case(req.vm.as_str()))
        });
        if !found || self.failed_attempt_hold(req).await?.is_some() {
            return Ok(Vec::new());
        }
        Ok(vec![Leftover {
            host: req.destination.clone(),
            kind: LeftoverKind::Definition,
            what: Self::planned_what(&req.vm),
        }])
    }

    async fn info_of(&self, id: &HostId, vm: &VmId) -> DriverResult<Option<VmInfo>> {
        let Some(i) = self.vm_instance(id, vm).await? else {
            return Ok(None);
        };
        let mem = self.memory_map(id, Some(vm.as_str())).await?;
        Ok(self.to_info(&i, &mem, &HashMap::new()))
    }
}

#[async_trait]
impl Driver for HyperVDriver {
    fn kind(&self) -> &'static str {
        "hyperv"
    }

    fn hosts(&self) -> Vec<HostId> {
        self.hosts.keys().cloned().collect()
    }

    async fn host_info(&self, host: &HostId) -> DriverResult<HostInfo> {
        let svc = self.service(host).await?;
        let sd = self
            .query(
                host,
                V2,
                "SELECT * FROM Msvm_VirtualSystemMigrationServiceSettingData",
            )
            .await?;
        let limit = sd
            .first()
            .and_then(|s| s.get_u32("MaximumActiveVirtualSystemMigration"));
        let vms = self.vm_instances(host).await?;
        let migrating = vms
            .iter()
            .filter(|v| op_status(v).get(1).is_some_and(|s| MIGRATING.contains(s)))
            .count() as u32;
        // The service's count, or the VMs that show as migrating (the seed counts these),
        // whichever is larger: "if the queue is full we don't care who filled it".
        let active = svc
            .get_u32("ActiveVirtualSystemMigrationCount")
            .unwrap_or(0)
            .max(migrating);
        let os = self
            .query(host, CIMV2, "SELECT * FROM Win32_OperatingSystem")
            .await?;
        let free_memory_bytes = os
            .first()
            .and_then(|o| o.get_u64("FreePhysicalMemory"))
            .unwrap_or(0)
            * 1024;
        let free_disk_bytes = self
            .volumes(host)
            .await?
            .iter()
            .filter_map(|v| v.get_u64("FreeSpace"))
            .max()
            .unwrap_or(0);
        Ok(HostInfo {
            migration_limit: limit,
            active_migrations: active,
            free_memory_bytes,
            free_disk_bytes,
        })
    }

    async fn list_vms(&self, host: &HostId) -> DriverResult<Vec<VmInfo>> {
        let vms = self.vm_instances(host).await?;
        let mem = self.memory_map(host, None).await?;
        let mut disk: HashMap<String, u64> = HashMap::new();
        // A checkpoint's disk entries carry the checkpoint's id, not the VM's: its settings
        // name the VM (`VirtualSystemIdentifier`).
        let owner: HashMap<String, String> = self
            .query(host, V2, "SELECT * FROM Msvm_VirtualSystemSettingData")
            .await?
            .iter()
            .filter_map(|v| {
                let id = v
                    .get_str("InstanceID")
                    .as_deref()
                    .and_then(Self::guid_of_instance_id)?;
                Some((
                    id,
                    v.get_str("VirtualSystemIdentifier")?.to_ascii_uppercase(),
                ))
            })
            .collect();
        let mut counted: std::collections::HashSet<String> = std::collections::HashSet::new();
        for s in self
            .query(
                host,
                V2,
                "SELECT * FROM Msvm_StorageAllocationSettingData WHERE ResourceType=31",
            )
            .await?
        {
            if !prepare::is_vhd(&s) {
                continue;
            }
            let Some(g) = s
                .get_str("InstanceID")
                .as_deref()
                .and_then(Self::guid_of_instance_id)
                .map(|o| owner.get(&o).cloned().unwrap_or(o))
            else {
                continue;
            };
            for p in s.get_array("HostResource") {
                // A chain's base is referenced by several checkpoints: counted once.
                if !counted.insert(p.to_ascii_lowercase()) {
                    continue;
                }
                if let Some(sz) = self.cached_file_size(host, &p).await? {
                    *disk.entry(g.clone()).or_default() += sz;
                }
            }
        }
        Ok(vms
            .iter()
            .filter_map(|i| self.to_info(i, &mem, &disk))
            .collect())
    }

    async fn footprint(&self, host: &HostId, vm: &VmId) -> DriverResult<Footprint> {
        if self.vm_instance(host, vm).await?.is_none() {
            return Err(DriverError::permanent(format!(
                "VM {vm} not found on {host}"
            )));
        }
        let guid = vm.as_str();
        let memory_bytes = self
            .memory_map(host, Some(guid))
            .await?
            .values()
            .next()
            .copied()
            .unwrap_or(0);
        let vssd = self.vssd(host, guid).await?;
        let mut disks = Vec::new();
        // Every link of every chain: the current configuration's disks and its checkpoints'.
        let mut sasds = self.vhds(host, guid).await?;
        sasds.extend(self.checkpoint_vhds(host, guid).await?);
        for p in prepare::distinct_paths(&sasds) {
            let size = self.file_size(host, &p).await?.unwrap_or(0);
            let format = p.rsplit('.').next().unwrap_or("vhdx").to_ascii_lowercase();
            disks.push(Disk {
                path: p,
                format,
                virtual_bytes: size,
                allocated_bytes: size,
                backing_chain: Vec::new(),
            });
        }
        let mut config_paths = Vec::new();
        for k in [
            "ConfigurationDataRoot",
            "SnapshotDataRoot",
            "SwapFileDataRoot",
        ] {
            if let Some(p) = vssd.get_str(k) {
                if !config_paths.contains(&p) {
                    config_paths.push(p);
                }
            }
        }
        Ok(Footprint {
            memory_bytes,
            disks,
            config_paths,
        })
    }

    async fn start_migration(&self, req: &MigrationRequest) -> DriverResult<MigrationHandle> {
        let (src, dst) = (&req.source, &req.destination);
        if src == dst {
            return Err(DriverError::permanent(
                "source and destination are the same host",
            ));
        }
        let src_client = &self.host(src)?.client;
        self.host(dst)?;
        let guid = req.vm.as_str().to_owned();
        let Some(vm) = self.vm_instance(src, &req.vm).await? else {
            return Err(DriverError::permanent(format!(
                "VM {} not found on {src}",
                req.vm
            )));
        };
        let (health, activity) = status_of(&op_status(&vm));
        if activity != Activity::Idle {
            return Err(DriverError::transient(format!(
                "VM {} is busy on {src} ({activity:?})",
                req.vm
            )));
        }
        if let Health::Bad(w) = health {
            return Err(DriverError::permanent(format!("VM {} is {w}", req.vm)));
        }
        // Both ends must take migrations, the destination on a network it listens on
        // (refused before anything is written).
        let dest_addresses = self.migration_readiness(src, dst).await?;
        // A planned VM of this VM left on the destination by a failed attempt blocks the move:
        // it goes first, as Move-VM does.
        self.remove_planned_leftover(req).await?;
        let vssd = self.vssd(src, &guid).await?;
        // Every virtual hard disk moves: the current configuration's and every checkpoint's
        // (the older links of each differencing chain), as Move-VM -IncludeStorage does; a VHD
        // referenced only by a checkpoint is otherwise not moved (Windows-classic-samples
        // VmAndStorageMigration.cs). DVD and floppy images keep their paths.
        let mut sasds = self.vhds(src, &guid).await?;
        let current = sasds.len();
        sasds.extend(self.checkpoint_vhds(src, &guid).await?);
        if let Some(shared) = sasds.iter().find(|s| prepare::is_shared_vhd(s)) {
            return Err(DriverError::permanent(format!(
                "{} uses the shared virtual hard disk {}: a VM with a shared disk is not moved (detach it, or move the guest cluster another way)",
                req.vm_name,
                shared
                    .get_array("HostResource")
                    .first()
                    .cloned()
                    .unwrap_or_default()
            )));
        }
        let disk_paths = prepare::distinct_paths(&sasds);
        let current_paths = prepare::distinct_paths(&sasds[..current]);
        let volumes: Vec<String> = self
            .volumes(dst)
            .await?
            .iter()
            .filter_map(|v| v.get_str("DeviceID"))
            .collect();
        let plan = paths::plan(&req.layout, &req.vm_name, &disk_paths, &volumes)
            .map_err(|e| DriverError::destination_refused(format!("{}: {e}", req.vm_name)))?;
        // Never overwrite: refuse if any target file exists on the destination.
        let mut targets: Vec<String> = plan.disks.iter().map(|(_, t)| t.clone()).collect();
        if let Some(root) = &plan.root {
            targets.push(paths::join(root, &format!("Virtual Machines\\{guid}.vmcx")));
        }
        for t in &targets {
            if self.file_size(dst, t).await?.is_some() {
                return Err(DriverError::destination_refused(format!(
                    "{t} already exists on {dst}"
                )));
            }
        }
        // The folders the attempt will have to create: only these may go after it fails.
        let mut new_folders = Vec::new();
        for f in paths::folders_above(&targets) {
            if !self.folder_exists(dst, &f).await? {
                new_folders.push(f);
            }
        }
        let target_of = |p: &str| {
            plan.disks
                .iter()
                .find(|(s, _)| s.eq_ignore_ascii_case(p))
                .map(|(_, t)| t.clone())
        };
        let mut sizes = Vec::new();
        for s in &current_paths {
            sizes.push((
                s.clone(),
                target_of(s).unwrap_or_else(|| s.clone()),
                self.file_size(src, s).await?.unwrap_or(0),
            ));
        }
        let dest_name = self.destination_name(dst).await?;
        let src_name = self.host_name(src).await?;
        let svc = self.service(src).await?;
        let svc_epr = Self::service_epr(&svc, &src_name);
        // The move's parameters, built once: the migratability check is asked with exactly
        // these (with the source's paths it would judge the wrong files: MigrationCommon.cs
        // CheckMigratability passes the move's new settings).
        let mut params: Vec<(String, Param)> = vec![
            (
                "ComputerSystem".into(),
                Param::Ref(crate::cim::computer_system_epr(&guid)),
            ),
            (
                "DestinationHost".into(),
                Param::Value(CimValue::String(dest_name.clone())),
            ),
            (
                "MigrationSettingData".into(),
                Param::Embedded(prepare::migration_setting_data(&dest_addresses)),
            ),
        ];
        if let Some(root) = &plan.root {
            params.push((
                "NewSystemSettingData".into(),
                Param::Embedded(prepare::system_settings(&vssd, root)),
            ));
        }
        let rasds: Vec<CimInstance> = sasds
            .iter()
            .filter_map(|s| {
                let p = s.get_array("HostResource").into_iter().next()?;
                Some(prepare::resource_settings(s, &target_of(&p)?))
            })
            .collect();
        if !rasds.is_empty() {
            params.push(("NewResourceSettingData".into(), Param::EmbeddedArray(rasds)));
        }
        let check = src_client
            .invoke(&svc_epr, "CheckVirtualSystemIsMigratableToHost", &params)
            .await
            .map_err(|e| read_err(src, "CheckVirtualSystemIsMigratableToHost", e))?;
        match check.get_u32("ReturnValue") {
            Some(0) if check.get_bool("IsMigratable") == Some(true) => {}
            Some(0) => {
                return Err(DriverError::destination_refused(format!(
                    "{} cannot be migrated to {dst} (CheckVirtualSystemIsMigratableToHost)",
                    req.vm_name
                )));
            }
            Some(rv) => return Err(rv_error("CheckVirtualSystemIsMigratableToHost", rv)),
            None => {
                return Err(DriverError::transient(
                    "CheckVirtualSystemIsMigratableToHost returned no ReturnValue",
                ));
            }
        }
        // From here on the destination paths may fill: record them on the destination (all
        // checked absent above) so that a failed attempt's copies and folders can be found, by
        // this process or one started after a crash, and only they removed. Then check again
        // with the record in place: what appeared meanwhile is not ours (record.rs).
        let rec = AttemptRecord {
            disks: plan.disks.iter().map(|(_, t)| t.clone()).collect(),
            folders: new_folders,
        };
        let carried = self
            .write_attempt_record(req, &rec)
            .await
            .map_err(|mut e| {
                // Nothing was asked of the migration service yet: the VM certainly did not move.
                if e.class == ErrorClass::Indeterminate {
                    e.class = ErrorClass::Transient;
                }
                e.message = format!(
                    "cannot record the attempt's destination paths: {}",
                    e.message
                );
                e
            })?;
        let mut appeared = None;
        for t in &targets {
            if self.file_size(dst, t).await?.is_some() {
                appeared = Some(t);
                break;
            }
        }
        if appeared.is_none() {
            for f in &rec.folders {
                if self.folder_exists(dst, f).await? {
                    appeared = Some(f);
                    break;
                }
            }
        }
        if let Some(p) = appeared {
            self.drop_attempt_record(req, &carried).await;
            return Err(DriverError::destination_refused(format!(
                "{p} appeared on {dst} while the attempt was being prepared: not using it"
            )));
        }
        tracing::info!(vm = %req.vm, from = %src, to = %dst, attempt = req.attempt, "starting MigrateVirtualSystemToHost");
        let out = match src_client
            .invoke(&svc_epr, "MigrateVirtualSystemToHost", &params)
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let e = write_err(src, "MigrateVirtualSystemToHost", e);
                if e.class != ErrorClass::Indeterminate {
                    // Certainly not taken (never sent, or refused with a fault): nothing was
                    // created, so the record goes (it would only vouch for paths that stay
                    // free, which someone else may fill later).
                    self.drop_attempt_record(req, &carried).await;
                }
                return Err(e);
            }
        };
        let moved = Moved {
            guid: guid.clone(),
            config_root: vssd.get_str("ConfigurationDataRoot").unwrap_or_default(),
            snapshot_root: vssd.get_str("SnapshotDataRoot").unwrap_or_default(),
            swap_root: vssd.get_str("SwapFileDataRoot").unwrap_or_default(),
            disks: sizes,
        };
        match out.get_u32("ReturnValue") {
            Some(4096) => {
                // The handle is the reference the call returned (class and selectors): the
                // job is an Msvm_MigrationJob, never found as an Msvm_ConcreteJob (job.rs).
                let job = out
                    .get_ref("Job")
                    .and_then(JobRef::from_epr)
                    .map(|r| r.encode())
                    .ok_or_else(|| {
                        DriverError::indeterminate(
                            "MigrateVirtualSystemToHost started a job but named none",
                        )
                    })?;
                self.remember(req, moved);
                Ok(MigrationHandle(job))
            }
            Some(0) => {
                self.remember(req, moved);
                Ok(MigrationHandle(format!("done:{guid}")))
            }
            Some(rv) => {
                // Refused: no job, nothing created; the record goes (as above).
                self.drop_attempt_record(req, &carried).await;
                Err(rv_error("MigrateVirtualSystemToHost", rv))
            }
            None => Err(DriverError::indeterminate(
                "MigrateVirtualSystemToHost returned no ReturnValue",
            )),
        }
    }

    async fn migration_status(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<MigrationStatus> {
        if handle.0.starts_with("done:") {
            return Ok(MigrationStatus::Completed);
        }
        let Some(job) = self.job(&req.source, &handle.0).await? else {
            // Jobs are deleted some time after they end: decide by where the VM is.
            let on_dst = self.vm_instance(&req.destination, &req.vm).await?.is_some();
            let on_src = self.vm_instance(&req.source, &req.vm).await?.is_some();
            return Ok(if on_dst && !on_src {
                MigrationStatus::Completed
            } else {
                MigrationStatus::Failed(Failure::new(
                    ErrorClass::Transient,
                    "the migration job disappeared and the VM did not arrive",
                ))
            });
        };
        Ok(match crate::job::phase_of(&job) {
            JobPhase::Pending => MigrationStatus::Pending,
            JobPhase::Running(percent) => MigrationStatus::Running(Progress {
                percent,
                ..Progress::default()
            }),
            JobPhase::Completed { warning } => {
                if let Some(w) = warning {
                    // JobState 32768: done, with something to tell (os-win counts it done).
                    tracing::warn!(vm = %req.vm, host = %req.source, "the migration job completed with warnings: {w}");
                }
                MigrationStatus::Completed
            }
            JobPhase::Cancelled => MigrationStatus::Failed(Failure::new(
                ErrorClass::Transient,
                "the migration job was cancelled",
            )),
            JobPhase::Failed => {
                let errors = self.job_errors(&req.source, &handle.0).await;
                let (class, words) = crate::job::failure(&job, &errors);
                MigrationStatus::Failed(Failure::new(class, words))
            }
        })
    }

    async fn abort_migration(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<()> {
        if handle.0.starts_with("done:") {
            return Ok(());
        }
        let Some(job) = self.job(&req.source, &handle.0).await? else {
            return Ok(());
        };
        if !crate::job::is_running(&job) {
            return Ok(());
        }
        if !crate::job::cancellable(&job) {
            // Asked only of a job that says it can be cancelled (job.rs); this one runs to
            // its end, and the engine's looks find how it ended.
            return Err(DriverError::permanent(format!(
                "the migration job of VM {} on {} says it cannot be cancelled (Cancellable is {}): it runs to its end",
                req.vm,
                req.source,
                job.get_str("Cancellable")
                    .unwrap_or_else(|| "not set".into())
            )));
        }
        let mut rv = self
            .request_job_state(&req.source, &handle.0, crate::job::TERMINATE)
            .await?;
        if rv.is_some_and(crate::job::transition_unsupported) {
            tracing::info!(vm = %req.vm, "the migration job refused Terminate as unsupported: asking Kill, as os-win does");
            rv = self
                .request_job_state(&req.source, &handle.0, crate::job::KILL)
                .await?;
        }
        match rv {
            Some(0) | Some(4096) => Ok(()),
            Some(32775) => Ok(()), // it ended meanwhile
            Some(rv) => Err(rv_error("RequestStateChange", rv)),
            None => Err(DriverError::indeterminate(
                "RequestStateChange returned no ReturnValue",
            )),
        }
    }

    async fn locate(&self, req: &MigrationRequest) -> DriverResult<Location> {
        let on_source = self.info_of(&req.source, &req.vm).await?;
        let on_destination = self.info_of(&req.destination, &req.vm).await?;
        let running_migration = self
            .running_job_of(&req.source, req.vm.as_str())
            .await?
            .map(MigrationHandle);
        Ok(Location {
            on_source,
            on_destination,
            running_migration,
        })
    }

    async fn verify(&self, req: &MigrationRequest) -> DriverResult<Verification> {
        let dst = self.info_of(&req.destination, &req.vm).await?;
        let src = self.info_of(&req.source, &req.vm).await?;
        let mut detail = Vec::new();
        let on_destination = match (&dst, req.mode) {
            (Some(v), MigrationMode::Live) => {
                if v.power != PowerState::Running {
                    detail.push(format!("on {} but {:?}", req.destination, v.power));
                }
                v.power == PowerState::Running
            }
            (Some(_), MigrationMode::Offline) => true,
            (None, _) => {
                detail.push(format!("not on {}", req.destination));
                false
            }
        };
        let mut disks_present = on_destination;
        if on_destination {
            // The destination VM's own disk entries, each checked present there; never sizes
            // compared with the source's (a dynamic disk grows during a live move: verify.rs).
            let mut entries = Vec::new();
            for p in self
                .vhds(&req.destination, req.vm.as_str())
                .await?
                .iter()
                .filter_map(|s| s.get_array("HostResource").into_iter().next())
            {
                let exists = self.file_size(&req.destination, &p).await?.is_some();
                entries.push((p, exists));
            }
            let expected: Option<Vec<String>> = self
                .recall(req)
                .map(|m| m.disks.iter().map(|(_, t, _)| t.clone()).collect());
            let proof =
                crate::verify::prove_disks(req.destination.as_str(), &entries, expected.as_deref());
            disks_present = proof.disks_present;
            detail.extend(proof.detail);
        }
        let stopped_on_source = src.as_ref().is_none_or(|v| !v.power.is_live());
        if !stopped_on_source {
            detail.push(format!("still running on {}", req.source));
        }
        let v = Verification {
            on_destination,
            disks_present,
            stopped_on_source,
            detail: detail.join("; "),
        };
        if v.is_proof() {
            // The VM's files on the destination are its own now, proven by the VM itself: its
            // attempt records there go, so that they can never make them look like leftovers
            // (deleting a record is always safe: it can only keep a file; see record.rs).
            self.drop_records_after_proof(req).await;
        }
        Ok(v)
    }

    async fn leftovers(
        &self,
        req: &MigrationRequest,
        context: LeftoverContext,
    ) -> DriverResult<Vec<Leftover>> {
        match context {
            LeftoverContext::AfterFailedAttempt => {
                // A failed shared-nothing move can leave the VHD copies it made in the paths this
                // driver gave it. Listed: exactly those paths (checked absent before the attempt
                // and named by an attempt record of the VM on the destination, see record.rs),
                // when the file is there, no VM on the destination uses it and no other VM's
                // record names it, and the VM is safe on the source and not on the destination.
                // A planned VM of the VM a failed attempt left there (listed last, removed by
                // `remove_leftover` with DestroySystem: `remove_planned_leftover`).
                let planned = self.planned_leftover(req).await?;
                let rec = self.own_record(req).await?;
                if rec.is_empty() {
                    tracing::debug!(vm = %req.vm, host = %req.destination, "no attempt record of the VM on its destination: no file or folder listed");
                    return Ok(planned);
                }
                if let Some(why) = self.failed_attempt_hold(req).await? {
                    tracing::info!(vm = %req.vm, "no destination leftovers listed: {why}");
                    return Ok(Vec::new());
                }
                let others = self.others_records(req, &req.destination).await?;
                let used = self.disks_in_use(&req.destination).await?;
                let mut out = Vec::new();
                for d in &rec.disks {
                    if used.contains(&d.to_ascii_lowercase())
                        || Self::claimed_by_another_vm(&others, d)
                    {
                        continue;
                    }
                    if self.file_size(&req.destination, d).await?.is_some() {
                        out.push(Leftover {
                            host: req.destination.clone(),
                            kind: LeftoverKind::DiskImage,
                            what: d.clone(),
                        });
                    }
                }
                // Then the folders the attempt created, deepest first, each only when it will be
                // empty when its turn comes: its files are all listed copies, its subfolders all
                // listed folders.
                let mut listed: Vec<String> = Vec::new();
                let mut folders = Vec::new();
                for f in &rec.folders {
                    if Self::folder_claimed_by_another_vm(&others, f) {
                        continue;
                    }
                    let Some((subdirs, files)) = self.folder_contents(&req.destination, f).await?
                    else {
                        continue;
                    };
                    let copies_here = out
                        .iter()
                        .filter(|l| {
                            paths::parent(&l.what).is_some_and(|p| p.eq_ignore_ascii_case(f))
                        })
                        .count();
                    if files == copies_here && subdirs.iter().all(|d| listed.contains(d)) {
                        listed.push(f.to_ascii_lowercase());
                        folders.push(Leftover {
                            host: req.destination.clone(),
                            kind: LeftoverKind::EmptyFolder,
                            what: f.clone(),
                        });
                    }
                }
                out.extend(folders);
                out.extend(planned);
                Ok(out)
            }
            LeftoverContext::AfterSuccess => {
                let Some(m) = self.recall(req) else {
                    tracing::warn!(vm = %req.vm, "no record of the source layout (started before a restart?): no folders listed");
                    return Ok(Vec::new());
                };
                if self.vm_instance(&req.source, &req.vm).await?.is_some() {
                    // Still defined on the source: nothing of it may go.
                    return Ok(Vec::new());
                }
                let disks: Vec<String> = m.disks.iter().map(|(s, _, _)| s.clone()).collect();
                // Deepest first: a folder is listed only when it holds no file and every
                // subfolder of it is itself listed (so it will be empty when its turn comes).
                let mut out: Vec<Leftover> = Vec::new();
                let mut listed: Vec<String> = Vec::new();
                for f in paths::cleanup_candidates(
                    &m.guid,
                    &m.config_root,
                    &m.snapshot_root,
                    &m.swap_root,
                    &disks,
                ) {
                    let Some((subdirs, files)) = self.folder_contents(&req.source, &f).await?
                    else {
                        continue;
                    };
                    if files == 0 && subdirs.iter().all(|d| listed.contains(d)) {
                        listed.push(f.to_ascii_lowercase());
                        out.push(Leftover {
                            host: req.source.clone(),
                            kind: LeftoverKind::EmptyFolder,
                            what: f,
                        });
                    }
                }
                Ok(out)
            }
        }
    }

    async fn remove_leftover(
        &self,
        req: &MigrationRequest,
        leftover: &Leftover,
        context: LeftoverContext,
    ) -> DriverResult<()> {
        if context == LeftoverContext::AfterFailedAttempt
            && leftover.kind == LeftoverKind::DiskImage
        {
            return self.remove_attempt_copy(req, leftover).await;
        }
        if context == LeftoverContext::AfterFailedAttempt
            && leftover.kind == LeftoverKind::Definition
        {
            if leftover.host != req.destination || leftover.what != Self::planned_what(&req.vm) {
                return Err(DriverError::permanent(format!(
                    "{} on {} is not a planned VM of {} on its destination: kept",
                    leftover.what, leftover.host, req.vm
                )));
            }
            // Checks again that it is the VM's and that the VM is safe on its source; a planned
            // VM already gone is success.
            return self.remove_planned_leftover(req).await;
        }
        if leftover.kind != LeftoverKind::EmptyFolder {
            return Err(DriverError::permanent(format!(
                "the Hyper-V driver removes empty folders, and disk copies and folders of a failed attempt, not {:?} ({context:?})",
                leftover.kind
            )));
        }
        let host = &leftover.host;
        let path = leftover.what.trim_end_matches('\\');
        let failed_attempt = context == LeftoverContext::AfterFailedAttempt;
        if failed_attempt && !self.folder_exists(host, path).await? {
            // Already gone: nothing to prove, nothing touched.
            self.forget_removed(req, host, path).await;
            return Ok(());
        }
        if failed_attempt {
            if let Some(why) = self.attempt_folder_refusal(req, host, path).await? {
                return Err(DriverError::permanent(why));
            }
        }
        if paths::depth(path) < 2 || paths::drive(path).is_none() {
            return Err(DriverError::permanent(format!(
                "{path} is a volume or a first-level folder: never removed"
            )));
        }
        if host == &req.source && self.vm_instance(host, &req.vm).await?.is_some() {
            return Err(DriverError::permanent(format!(
                "VM {} is still defined on {host}: its folders stay",
                req.vm
            )));
        }
        match self.folder_contents(host, path).await? {
            None => {
                // Already gone.
                if failed_attempt {
                    self.forget_removed(req, host, path).await;
                }
                Ok(())
            }
            Some((subdirs, files)) if !subdirs.is_empty() || files > 0 => Err(
                DriverError::permanent(format!("{path} on {host} is not empty: kept")),
            ),
            // Empty now: set aside under a name nobody else knows, checked empty there, and
            // only then deleted (Win32_Directory.Delete may take along what it holds:
            // cleanup.rs).
            Some(_) => {
                self.remove_empty_folder(host, path).await?;
                if failed_attempt {
                    self.forget_removed(req, host, path).await;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_status_rules() {
        assert_eq!(status_of(&[2]), (Health::Ok, Activity::Idle));
        assert_eq!(
            status_of(&[11, 32776]),
            (Health::InService, Activity::BackingUp)
        );
        assert_eq!(status_of(&[11]), (Health::InService, Activity::BackingUp));
        for s in [32774, 32778, 32779] {
            assert_eq!(status_of(&[11, s]).1, Activity::MigratingOut);
        }
        assert_eq!(status_of(&[11, 32780]).1, Activity::MigratingIn);
        assert_eq!(status_of(&[3]).0, Health::Bad("degraded".into()));
        assert!(matches!(status_of(&[11, 32768]).1, Activity::OtherJob(_)));
    }

    #[test]
    fn power_states_map_off_and_saved_to_offline() {
        assert!(power_of(3).is_offline());
        assert!(power_of(6).is_offline());
        assert!(power_of(2).is_live());
        assert!(matches!(power_of(32773), PowerState::Transitioning(_)));
    }

    fn wmi_fault(code: u64) -> WsmanError {
        WsmanError::Soap(crate::wsman::SoapError::Fault {
            subcode: "w:InternalError".into(),
            code: None,
            reason: "r".into(),
            wmi: Some(Box::new(crate::wsman::WmiError {
                code: Some(code),
                message: "m".into(),
                cim_status: None,
                message_id: None,
            })),
        })
    }

    #[test]
    fn a_wmi_error_on_a_state_changing_call_is_transient_only_when_refused_before_work() {
        let h = HostId::new("hv1");
        // Server too busy: refused, not carried out.
        let e = write_err(&h, "x", wmi_fault(0x8004_1045));
        assert_eq!(
            (e.class, e.code),
            (ErrorClass::Transient, Some(0x8004_1045))
        );
        // Timed out: the method may have begun.
        assert_eq!(
            write_err(&h, "x", wmi_fault(0x8004_3001)).class,
            ErrorClass::Indeterminate
        );
        // Not found: an answer about the request.
        assert_eq!(
            write_err(&h, "x", wmi_fault(0x8004_1002)).class,
            ErrorClass::Permanent
        );
        // A read is never indeterminate.
        assert_eq!(
            read_err(&h, "x", wmi_fault(0x8004_3001)).class,
            ErrorClass::Transient
        );
    }

    #[test]
    fn return_values_are_classified() {
        assert_eq!(rv_error("x", 32768).class, ErrorClass::Transient);
        assert_eq!(rv_error("x", 32775).class, ErrorClass::Transient);
        assert_eq!(rv_error("x", 32769).class, ErrorClass::Permanent);
        assert_eq!(rv_error("x", 32775).code, Some(32775));
    }
}
