//! What the hosts hold, read through WMI: the host's name and figures, its VMs, their memory,
//! disks, settings and folders (`Driver::host_info`, `list_vms`, `footprint`, `locate`).

use crate::cim::{CIMV2, CimInstance, Epr, V2};
use crate::driver::{HyperVDriver, SIZE_TTL};
use crate::paths::{self, wql_str};
use crate::prepare;
use crate::status::{MIGRATING, op_status, power_of, status_of};
use std::collections::HashMap;
use vmove_driver::*;

/// `Msvm_MemorySettingData.VirtualQuantity` counts megabytes (its `AllocationUnits` is
/// "byte*2^20": msvm-memorysettingdata.md): shifted left by this, bytes.
const MIB_SHIFT: u32 = 20;
/// `Win32_OperatingSystem.FreePhysicalMemory` counts kilobytes (win32-operatingsystem.md).
const BYTES_PER_KIB: u64 = 1024;

impl HyperVDriver {
    /// The computer name Hyper-V knows the host by.
    pub(crate) async fn host_name(&self, id: &HostId) -> DriverResult<String> {
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
    pub(crate) async fn vm_instances(&self, id: &HostId) -> DriverResult<Vec<CimInstance>> {
        Ok(self
            .query(id, V2, "SELECT * FROM Msvm_ComputerSystem")
            .await?
            .into_iter()
            .filter(|i| i.get_str("Name").is_some_and(|n| prepare::is_vm_name(&n)))
            .collect())
    }

    pub(crate) async fn vm_instance(
        &self,
        id: &HostId,
        vm: &VmId,
    ) -> DriverResult<Option<CimInstance>> {
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

    pub(crate) async fn file_size(&self, id: &HostId, path: &str) -> DriverResult<Option<u64>> {
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

    pub(crate) fn to_info(
        &self,
        i: &CimInstance,
        memory: &HashMap<String, u64>,
        disk: &HashMap<String, u64>,
    ) -> Option<VmInfo> {
        let guid = i.get_str("Name")?;
        let (health, activity) = status_of(&op_status(i));
        Some(VmInfo {
            name: i
                .get_str("ElementName")
                .unwrap_or_else(|| guid.clone())
                .into(),
            power: power_of(i.get_u32("EnabledState").unwrap_or(0)),
            health,
            activity,
            memory_bytes: memory.get(&guid.to_ascii_uppercase()).copied().unwrap_or(0),
            disk_bytes: disk.get(&guid.to_ascii_uppercase()).copied().unwrap_or(0),
            dirty_rate: None,
            id: VmId::new(guid),
        })
    }

    pub(crate) async fn cached_file_size(
        &self,
        id: &HostId,
        path: &str,
    ) -> DriverResult<Option<u64>> {
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

    pub(crate) fn guid_of_instance_id(iid: &str) -> Option<String> {
        // "Microsoft:<GUID>\..." -> GUID
        let rest = iid.strip_prefix("Microsoft:")?;
        Some(rest.split('\\').next()?.to_ascii_uppercase())
    }

    pub(crate) async fn memory_map(
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
                m.entry(g).or_insert(mb << MIB_SHIFT);
            }
        }
        Ok(m)
    }

    /// The VM's virtual hard disks (current configuration), in order: ResourceType 31 with the
    /// hard-disk subtype, not its DVD or floppy images (`prepare::is_vhd`).
    pub(crate) async fn vhds(&self, id: &HostId, guid: &str) -> DriverResult<Vec<CimInstance>> {
        self.vhds_of_settings(id, &format!("Microsoft:{guid}"))
            .await
    }

    /// The virtual hard disks of the settings whose `InstanceID` is `settings_id` (a VM's
    /// `Microsoft:<GUID>`, a checkpoint's `Microsoft:<checkpoint id>`): os-win `_wqlutils.py`
    /// `get_element_associated_class` selects them by `InstanceID LIKE '<settings id>%'`.
    pub(crate) async fn vhds_of_settings(
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
    pub(crate) async fn checkpoint_vhds(
        &self,
        id: &HostId,
        guid: &str,
    ) -> DriverResult<Vec<CimInstance>> {
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

    pub(crate) async fn vssd(&self, id: &HostId, guid: &str) -> DriverResult<CimInstance> {
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

    pub(crate) async fn volumes(&self, id: &HostId) -> DriverResult<Vec<CimInstance>> {
        self.query(
            id,
            CIMV2,
            "SELECT * FROM Win32_LogicalDisk WHERE DriveType=3",
        )
        .await
    }

    pub(crate) async fn service(&self, id: &HostId) -> DriverResult<CimInstance> {
        self.query(id, V2, "SELECT * FROM Msvm_VirtualSystemMigrationService")
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                DriverError::permanent(format!("{id} has no virtual system migration service"))
            })
    }

    pub(crate) fn service_epr(svc: &CimInstance, host_name: &str) -> Epr {
        svc.epr
            .clone()
            .unwrap_or_else(|| crate::cim::migration_service_epr(host_name))
    }

    /// Whether a folder exists (`Win32_Directory`).
    pub(crate) async fn folder_exists(&self, id: &HostId, path: &str) -> DriverResult<bool> {
        let lower = path.trim_end_matches('\\').to_ascii_lowercase();
        let q = format!(
            "SELECT * FROM Win32_Directory WHERE Name={}",
            wql_str(&lower)
        );
        Ok(!self.query(id, CIMV2, &q).await?.is_empty())
    }

    /// A folder's subfolders (lower-case names) and number of files; `None` when it does not exist.
    pub(crate) async fn folder_contents(
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

    /// Every VHD path a VM (or checkpoint) on the host uses, lower case.
    pub(crate) async fn disks_in_use(
        &self,
        id: &HostId,
    ) -> DriverResult<std::collections::HashSet<String>> {
        Ok(self
            .query(id, V2, "SELECT * FROM Msvm_StorageAllocationSettingData")
            .await?
            .iter()
            .flat_map(|s| s.get_array("HostResource"))
            .map(|p| p.to_ascii_lowercase())
            .collect())
    }

    pub(crate) async fn info_of(&self, id: &HostId, vm: &VmId) -> DriverResult<Option<VmInfo>> {
        let Some(i) = self.vm_instance(id, vm).await? else {
            return Ok(None);
        };
        let mem = self.memory_map(id, Some(vm.as_str())).await?;
        Ok(self.to_info(&i, &mem, &HashMap::new()))
    }

    /// `Driver::host_info`: the migration limit and count, free memory and disk.
    pub(crate) async fn read_host_info(&self, host: &HostId) -> DriverResult<HostInfo> {
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
            * BYTES_PER_KIB;
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

    /// `Driver::list_vms`: every VM of the host, with its memory and disk sizes.
    pub(crate) async fn read_vms(&self, host: &HostId) -> DriverResult<Vec<VmInfo>> {
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

    /// `Driver::footprint`: the VM's memory, every disk of every chain, its folders.
    pub(crate) async fn read_footprint(&self, host: &HostId, vm: &VmId) -> DriverResult<Footprint> {
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

    /// `Driver::locate`: the VM on either end and a running migration job of it.
    pub(crate) async fn find(&self, req: &MigrationRequest) -> DriverResult<Location> {
        let on_source = self.info_of(&req.source, &req.vm).await?;
        let on_destination = self.info_of(&req.destination, &req.vm).await?;
        let running_migration = self
            .running_job_of(&req.source, req.vm.as_str())
            .await?
            .map(|s| MigrationHandle(s.into()));
        Ok(Location {
            on_source,
            on_destination,
            running_migration,
        })
    }
}
