//! What a move sends and what it looks for: the embedded instances of
//! `MigrateVirtualSystemToHost` (and of the migratability check, which gets the same), which
//! storage entries are virtual hard disks, which `Msvm_ComputerSystem` is a VM, and the
//! destination's name: pure functions over instances read from the hosts. Then the start of a
//! move on them (`HyperVDriver::start`: the checks, the attempt record, the call).
//!
//! # Embedded instances
//! Minimal: the identity (`InstanceID`) and the properties the move sets, each with the CIM type
//! the class reference gives it (MicrosoftDocs/win32 desktop-src/HyperV_v2:
//! `msvm-virtualsystemmigrationsettingdata.md`, `msvm-virtualsystemsettingdata.md`,
//! `msvm-storageallocationsettingdata.md`). Never a whole instance read from a host: WinRM
//! returns datetimes in ISO 8601 form and carries no types, and a host fails the job (ErrorCode
//! 32768) on a datetime not in CIM's native form or typed `string` (r4sd/go-wsman
//! `hyperv/datetime_write_integration_test.go`). Microsoft's own sample builds the migration
//! setting data as a new instance of the class (`CreateInstance`) with only the properties it
//! sets (microsoft/Windows-classic-samples Samples/Hyper-V/Migration/cs/MigrationCommon.cs
//! `GetMigrationSettingData`), and sets `HostResource` and `PoolId` on each VHD's entry and the
//! three data roots on the system settings (VmAndStorageMigration.cs
//! `VmMigrationSimpleWithNewDataRoot`). libvirt's Hyper-V driver likewise writes each embedded
//! property with its type from a table of the class (src/hyperv/hyperv_wmi.c).

use crate::cim::{CIMV2, V2};
use crate::cim::{CimInstance, CimValue};
use crate::driver::{HyperVDriver, Moved};
use crate::error::{RV_COMPLETED, RV_JOB_STARTED, read_err, rv_error, write_err};
use crate::job::JobRef;
use crate::paths;
use crate::record::AttemptRecord;
use crate::status::{op_status, status_of};
use crate::wsman::Param;
use vmove_driver::*;

/// `ResourceSubType` of a virtual hard disk (`.vhd`, `.vhdx`, and the `.avhdx` links of a
/// checkpoint chain). ResourceType 31 also covers DVD (`Microsoft:Hyper-V:Virtual CD/DVD Disk`)
/// and floppy (`Microsoft:Hyper-V:Virtual Floppy Disk`) images
/// (msvm-storageallocationsettingdata.md, HostResource); only hard disks get new paths, as
/// os-win's `livemigrationutils.py` `_get_vhd_setting_data` and Microsoft's sample
/// (`WmiUtilities.GetVhdSettings`) select them.
pub const VHD_SUBTYPE: &str = "Microsoft:Hyper-V:Virtual Hard Disk";

/// `VirtualSystemType` prefix of a checkpoint's settings (`Microsoft:Hyper-V:Snapshot:Realized`,
/// `Microsoft:Hyper-V:Snapshot:Recovery`).
pub const SNAPSHOT_TYPE_PREFIX: &str = "Microsoft:Hyper-V:Snapshot:";

/// Whether a `Msvm_StorageAllocationSettingData` is a virtual hard disk.
pub fn is_vhd(sasd: &CimInstance) -> bool {
    sasd.get_u32("ResourceType") == Some(31)
        && sasd
            .get_str("ResourceSubType")
            .is_some_and(|t| t.eq_ignore_ascii_case(VHD_SUBTYPE))
}

/// Whether a virtual hard disk is shared between VMs (a guest cluster's): a VHD Set (`.vhds`)
/// or a disk that supports SCSI-3 persistent reservations (`PersistentReservationsSupported`,
/// msvm-storageallocationsettingdata.md). Move-VM leaves shared disks out of a move; vmove
/// refuses such a VM rather than move one node's view of a shared disk.
pub fn is_shared_vhd(sasd: &CimInstance) -> bool {
    sasd.get_bool("PersistentReservationsSupported") == Some(true)
        || sasd
            .get_array("HostResource")
            .first()
            .is_some_and(|p| p.to_ascii_lowercase().ends_with(".vhds"))
}

/// Whether a `Msvm_ComputerSystem` `Name` is a VM's: a VM's is its GUID, the host's own
/// instance has the computer name (r4sd/go-wsman `hyperv/host_filter.go`, from a real host).
/// Captions cannot tell: they are translated (`Virtuell dator`, `仮想マシン`; GNS3
/// gns3-server#1612, the same go-wsman file).
pub fn is_vm_name(name: &str) -> bool {
    let b = name.trim().as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The migration setting data of a shared-nothing move (`MigrationType` 32771
/// VirtualSystemAndStorage, `TransportType` 5 TCP), to the destination's migration addresses
/// (`DestinationIPAddressList`, read from its `MigrationServiceListenerIPAddressList` as
/// MigrationCommon.cs `GetMigrationDestinationListenAddresses` and os-win
/// `_get_ip_address_list` do). A new instance: no identity, nothing read from a host.
pub fn migration_setting_data(destination_addresses: &[String]) -> CimInstance {
    let mut m = CimInstance::new("Msvm_VirtualSystemMigrationSettingData")
        .with("MigrationType", CimValue::U16(32771))
        .with("TransportType", CimValue::U16(5));
    if !destination_addresses.is_empty() {
        m.set(
            "DestinationIPAddressList",
            CimValue::Array(
                destination_addresses
                    .iter()
                    .map(|a| CimValue::String(a.clone()))
                    .collect(),
            ),
        );
    }
    m
}

/// The VM's new system settings: its identity and the three data roots (configuration,
/// checkpoints, smart paging) set to `root`.
pub fn system_settings(vssd: &CimInstance, root: &str) -> CimInstance {
    let mut v = CimInstance::new("Msvm_VirtualSystemSettingData");
    if let Some(id) = vssd.get_str("InstanceID") {
        v.set("InstanceID", CimValue::String(id));
    }
    for k in [
        "ConfigurationDataRoot",
        "SnapshotDataRoot",
        "SwapFileDataRoot",
    ] {
        v.set(k, CimValue::String(root.to_owned()));
    }
    v
}

/// A disk's new storage settings: its identity, `HostResource` = `[target]` and `PoolID` = ""
/// (the destination's primordial pool, as VmAndStorageMigration.cs sets it).
pub fn resource_settings(sasd: &CimInstance, target: &str) -> CimInstance {
    let mut r = CimInstance::new("Msvm_StorageAllocationSettingData");
    if let Some(id) = sasd.get_str("InstanceID") {
        r.set("InstanceID", CimValue::String(id));
    }
    r.set(
        "HostResource",
        CimValue::Array(vec![CimValue::String(target.to_owned())]),
    );
    r.set("PoolID", CimValue::String(String::new()));
    r
}

/// Each distinct path (first `HostResource`) of `sasds`, in order, compared ignoring case.
pub fn distinct_paths<'a>(sasds: impl IntoIterator<Item = &'a CimInstance>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in sasds {
        if let Some(p) = s.get_array("HostResource").into_iter().next() {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(&p)) {
                out.push(p);
            }
        }
    }
    out
}

/// The name a move gives as `DestinationHost`: the configured `host_name` if any, else the
/// destination's full DNS name (`Win32_ComputerSystem.DNSHostName` + `.` + `Domain`, when it is
/// in a domain: MicrosoftDocs/win32 desktop-src/CIMWin32Prov/win32-computersystem.md), else its
/// computer name. Kerberos delegation for migration is set up for the destination's full name
/// (`Microsoft Virtual System Migration Service/<fqdn>`), and the source resolves the name itself.
pub fn destination_name(
    configured: Option<&str>,
    computer_system: Option<&CimInstance>,
    computer_name: &str,
) -> String {
    if let Some(c) = configured {
        return c.to_owned();
    }
    if let Some(cs) = computer_system {
        let in_domain = cs.get_bool("PartOfDomain").unwrap_or(true);
        if let (Some(h), Some(d)) = (cs.get_str("DNSHostName"), cs.get_str("Domain")) {
            let (h, d) = (h.trim(), d.trim());
            if in_domain && !h.is_empty() && !d.is_empty() && d.contains('.') {
                return format!("{h}.{d}");
            }
        }
    }
    computer_name.to_owned()
}

/// What a move of one VM on one route sends and fills, read from the hosts: built once for
/// `start_migration` and for pre-flight (which asks the migratability check with the same
/// settings, as Move-VM does).
#[derive(Clone, Debug)]
pub(crate) struct MoveLayout {
    /// The VM's settings on the source.
    pub(crate) vssd: CimInstance,
    /// Every virtual hard disk that moves: the current configuration's, then the checkpoints'.
    pub(crate) sasds: Vec<CimInstance>,
    /// How many of `sasds` are the current configuration's.
    pub(crate) current: usize,
    /// The destination paths (or why the layout cannot be applied there).
    pub(crate) plan: Result<paths::Plan, paths::PlanError>,
}

impl MoveLayout {
    /// The first shared virtual hard disk's path, if the VM has one.
    pub(crate) fn shared_vhd(&self) -> Option<String> {
        self.sasds.iter().find(|s| is_shared_vhd(s)).map(|s| {
            s.get_array("HostResource")
                .first()
                .cloned()
                .unwrap_or_default()
        })
    }

    /// The destination path of a source disk path.
    pub(crate) fn target_of(&self, p: &str) -> Option<String> {
        self.plan.as_ref().ok().and_then(|plan| {
            plan.disks
                .iter()
                .find(|(s, _)| s.eq_ignore_ascii_case(p))
                .map(|(_, t)| t.clone())
        })
    }

    /// The current configuration's disk paths.
    pub(crate) fn current_paths(&self) -> Vec<String> {
        distinct_paths(&self.sasds[..self.current])
    }

    /// The files the move will create on the destination (disks, configuration): none may
    /// exist before it.
    pub(crate) fn targets(&self) -> Vec<String> {
        let Ok(plan) = &self.plan else {
            return Vec::new();
        };
        let mut targets: Vec<String> = plan.disks.iter().map(|(_, t)| t.clone()).collect();
        if let (Some(root), Some(id)) = (&plan.root, self.vssd.get_str("InstanceID")) {
            let guid = id.trim_start_matches("Microsoft:");
            targets.push(paths::join(root, &format!("Virtual Machines\\{guid}.vmcx")));
        }
        targets
    }
}

impl HyperVDriver {
    /// The name a move to `id` gives as `DestinationHost` (`destination_name`): the
    /// configured `host_name`, else the host's full DNS name, else its computer name.
    pub(crate) async fn destination_name(&self, id: &HostId) -> DriverResult<String> {
        if let Some(c) = &self.host(id)?.configured_name {
            return Ok(c.clone());
        }
        let computer_name = self.host_name(id).await?;
        let cs = self
            .query(id, CIMV2, "SELECT * FROM Win32_ComputerSystem")
            .await?;
        Ok(destination_name(None, cs.first(), &computer_name))
    }

    /// What a move of `req` sends and fills (`MoveLayout`). Every virtual hard disk moves:
    /// the current configuration's and every checkpoint's (the older links of each
    /// differencing chain), as Move-VM -IncludeStorage does; a VHD referenced only by a
    /// checkpoint is otherwise not moved (Windows-classic-samples VmAndStorageMigration.cs).
    /// DVD and floppy images keep their paths.
    pub(crate) async fn move_layout(&self, req: &MigrationRequest) -> DriverResult<MoveLayout> {
        let guid = req.vm.as_str();
        let vssd = self.vssd(&req.source, guid).await?;
        let mut sasds = self.vhds(&req.source, guid).await?;
        let current = sasds.len();
        sasds.extend(self.checkpoint_vhds(&req.source, guid).await?);
        let volumes: Vec<String> = self
            .volumes(&req.destination)
            .await?
            .iter()
            .filter_map(|v| v.get_str("DeviceID"))
            .collect();
        let plan = paths::plan(&req.layout, &req.vm_name, &distinct_paths(&sasds), &volumes);
        Ok(MoveLayout {
            vssd,
            sasds,
            current,
            plan,
        })
    }

    /// The migration service of the source and the parameters of the move (and of the
    /// migratability check, which is asked with exactly these: with the source's paths it
    /// would judge the wrong files; MigrationCommon.cs CheckMigratability passes the move's new
    /// settings).
    pub(crate) async fn move_params(
        &self,
        req: &MigrationRequest,
        layout: &MoveLayout,
        dest_addresses: &[String],
    ) -> DriverResult<(crate::cim::Epr, Vec<(String, Param)>)> {
        let guid = req.vm.as_str();
        let dest_name = self.destination_name(&req.destination).await?;
        let src_name = self.host_name(&req.source).await?;
        let svc = self.service(&req.source).await?;
        let svc_epr = Self::service_epr(&svc, &src_name);
        let mut params: Vec<(String, Param)> = vec![
            (
                "ComputerSystem".into(),
                Param::Ref(crate::cim::computer_system_epr(guid)),
            ),
            (
                "DestinationHost".into(),
                Param::Value(CimValue::String(dest_name)),
            ),
            (
                "MigrationSettingData".into(),
                Param::Embedded(migration_setting_data(dest_addresses)),
            ),
        ];
        if let Some(root) = layout.plan.as_ref().ok().and_then(|p| p.root.as_ref()) {
            params.push((
                "NewSystemSettingData".into(),
                Param::Embedded(system_settings(&layout.vssd, root)),
            ));
        }
        let rasds: Vec<CimInstance> = layout
            .sasds
            .iter()
            .filter_map(|s| {
                let p = s.get_array("HostResource").into_iter().next()?;
                Some(resource_settings(s, &layout.target_of(&p)?))
            })
            .collect();
        if !rasds.is_empty() {
            params.push(("NewResourceSettingData".into(), Param::EmbeddedArray(rasds)));
        }
        Ok((svc_epr, params))
    }

    /// `CheckVirtualSystemIsMigratableToHost` with the move's parameters: Ok when the host says
    /// the VM is migratable; a "no" is `DestinationRefused`; a return value other than 0 is
    /// classed by the migration service's table (`rv_error`).
    pub(crate) async fn ask_migratable(
        &self,
        req: &MigrationRequest,
        svc_epr: &crate::cim::Epr,
        params: &[(String, Param)],
    ) -> DriverResult<()> {
        let (src, dst) = (&req.source, &req.destination);
        let check = self
            .host(src)?
            .client
            .invoke(svc_epr, "CheckVirtualSystemIsMigratableToHost", params)
            .await
            .map_err(|e| read_err(src, "CheckVirtualSystemIsMigratableToHost", e))?;
        match check.get_u32("ReturnValue") {
            Some(RV_COMPLETED) if check.get_bool("IsMigratable") == Some(true) => Ok(()),
            Some(RV_COMPLETED) => Err(DriverError::destination_refused(format!(
                "{} cannot be migrated to {dst} (CheckVirtualSystemIsMigratableToHost)",
                req.vm_name
            ))),
            Some(rv) => Err(rv_error("CheckVirtualSystemIsMigratableToHost", rv)),
            None => Err(DriverError::transient(
                "CheckVirtualSystemIsMigratableToHost returned no ReturnValue",
            )),
        }
    }

    /// `EnableVirtualSystemMigration` of the host's migration service settings.
    pub(crate) async fn migration_enabled(&self, id: &HostId) -> DriverResult<bool> {
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
    pub(crate) async fn migration_readiness(
        &self,
        src: &HostId,
        dst: &HostId,
    ) -> DriverResult<Vec<String>> {
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

    /// `Driver::start_migration`: checks, the attempt record, then `MigrateVirtualSystemToHost`
    /// (docs/drivers/hyperv.md, Attempt records, tells the order and why).
    pub(crate) async fn start(&self, req: &MigrationRequest) -> DriverResult<MigrationHandle> {
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
        let layout = self.move_layout(req).await?;
        if let Some(shared) = layout.shared_vhd() {
            return Err(DriverError::permanent(format!(
                "{} uses the shared virtual hard disk {shared}: a VM with a shared disk is not moved (detach it, or move the guest cluster another way)",
                req.vm_name
            )));
        }
        let plan = layout
            .plan
            .clone()
            .map_err(|e| DriverError::destination_refused(format!("{}: {e}", req.vm_name)))?;
        let vssd = &layout.vssd;
        // Never overwrite: refuse if any target file exists on the destination.
        let targets = layout.targets();
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
        let mut sizes = Vec::new();
        for s in &layout.current_paths() {
            sizes.push((
                s.clone(),
                layout.target_of(s).unwrap_or_else(|| s.clone()),
                self.file_size(src, s).await?.unwrap_or(0),
            ));
        }
        let (svc_epr, params) = self.move_params(req, &layout, &dest_addresses).await?;
        self.ask_migratable(req, &svc_epr, &params).await?;
        // From here on the destination paths may fill: record them on the destination (all
        // checked absent above) so that a failed attempt's copies and folders can be found, by
        // this process or one started after a crash, and only they removed. Then check again
        // with the record in place: what appeared meanwhile is not ours (docs/drivers/hyperv.md,
        // Attempt records).
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
            Some(RV_JOB_STARTED) => {
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
                Ok(MigrationHandle(job.into()))
            }
            Some(RV_COMPLETED) => {
                self.remember(req, moved);
                Ok(MigrationHandle(format!("done:{guid}").into()))
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn vm_names_are_guids_and_the_host_is_not() {
        assert!(is_vm_name("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"));
        assert!(is_vm_name("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"));
        assert!(!is_vm_name("HV1"));
        assert!(!is_vm_name("DESKTOP-0F1E2D3C-4B5A-6978-8796-A5B4C3D2"));
        assert!(!is_vm_name("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1FZ"));
    }

    #[test]
    fn embedded_settings_are_minimal_and_typed() {
        let m = migration_setting_data(&["192.0.2.1".into()]);
        assert_eq!(
            m.to_cim_xml(),
            "<INSTANCE CLASSNAME=\"Msvm_VirtualSystemMigrationSettingData\">\
             <PROPERTY NAME=\"MigrationType\" TYPE=\"uint16\"><VALUE>32771</VALUE></PROPERTY>\
             <PROPERTY NAME=\"TransportType\" TYPE=\"uint16\"><VALUE>5</VALUE></PROPERTY>\
             <PROPERTY.ARRAY NAME=\"DestinationIPAddressList\" TYPE=\"string\"><VALUE.ARRAY><VALUE>192.0.2.1</VALUE></VALUE.ARRAY></PROPERTY.ARRAY>\
             </INSTANCE>"
        );
        // A whole instance read from the host (ISO datetimes, untyped text) gives only its
        // identity to what is sent.
        let read = CimInstance::new("Msvm_VirtualSystemSettingData")
            .with("InstanceID", CimValue::Text("Microsoft:X".into()))
            .with(
                "CreationTime",
                CimValue::DateTime("2026-01-01T00:00:00Z".into()),
            )
            .with("Version", CimValue::Text("9.0".into()));
        let v = system_settings(&read, "E:\\M\\vm");
        let names: Vec<&str> = v.properties.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "InstanceID",
                "ConfigurationDataRoot",
                "SnapshotDataRoot",
                "SwapFileDataRoot"
            ]
        );
        assert!(v.to_cim_xml().contains(
            "<PROPERTY NAME=\"InstanceID\" TYPE=\"string\"><VALUE>Microsoft:X</VALUE></PROPERTY>"
        ));
        let sasd = CimInstance::new("Msvm_StorageAllocationSettingData")
            .with(
                "InstanceID",
                CimValue::Text("Microsoft:X\\D\\0\\0\\L".into()),
            )
            .with("Weight", CimValue::Text("0".into()));
        let r = resource_settings(&sasd, "E:\\M\\a.vhdx");
        let names: Vec<&str> = r.properties.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["InstanceID", "HostResource", "PoolID"]);
    }

    #[test]
    fn the_destination_is_named_by_its_full_name_unless_configured() {
        let cs = CimInstance::new("Win32_ComputerSystem")
            .with("DNSHostName", CimValue::Text("hv2".into()))
            .with("Domain", CimValue::Text("corp.example".into()))
            .with("PartOfDomain", CimValue::Text("true".into()));
        assert_eq!(destination_name(None, Some(&cs), "HV2"), "hv2.corp.example");
        assert_eq!(
            destination_name(Some("hv2-mig"), Some(&cs), "HV2"),
            "hv2-mig"
        );
        let wg = CimInstance::new("Win32_ComputerSystem")
            .with("DNSHostName", CimValue::Text("hv2".into()))
            .with("Domain", CimValue::Text("WORKGROUP".into()))
            .with("PartOfDomain", CimValue::Text("false".into()));
        assert_eq!(destination_name(None, Some(&wg), "HV2"), "HV2");
        assert_eq!(destination_name(None, None, "HV2"), "HV2");
    }

    #[test]
    fn only_hard_disks_are_vhds() {
        let e = |t: &str| {
            CimInstance::new("Msvm_StorageAllocationSettingData")
                .with("ResourceType", CimValue::Text("31".into()))
                .with("ResourceSubType", CimValue::Text(t.into()))
        };
        assert!(is_vhd(&e(VHD_SUBTYPE)));
        assert!(!is_vhd(&e("Microsoft:Hyper-V:Virtual CD/DVD Disk")));
        assert!(!is_vhd(&e("Microsoft:Hyper-V:Virtual Floppy Disk")));
    }
}
