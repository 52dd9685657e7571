//! What the fake shows of a real host beyond a VM and its disks: translated captions (a locale
//! switch), DVD and floppy drives with their images, checkpoints with differencing chains, and
//! planned VMs left by a failed attempt. Each behaviour cites its source.

use super::world::{FakeHost, FakeVm, World, key, parent};
use crate::cim::{CimInstance, CimValue, Epr, class_uri};

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
    /// English (the captions the driver used to filter on).
    #[default]
    English,
    /// Swedish.
    Swedish,
    /// Japanese.
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

/// The `InstanceID` of a VM's (or checkpoint's) `i`-th hard disk entry.
pub fn vhd_instance_id(owner: &str, i: usize) -> String {
    format!("Microsoft:{owner}\\83F8638B-8DCA-4152-9EDA-2CA8B33039B4\\0\\{i}\\L")
}

/// The `InstanceID` of a VM's `j`-th drive image entry (DVD or floppy).
pub fn drive_instance_id(owner: &str, j: usize) -> String {
    format!("Microsoft:{owner}\\83F8638B-8DCA-4152-9EDA-2CA8B33039B4\\1\\{j}\\D")
}

fn s(v: &str) -> CimValue {
    CimValue::String(v.to_owned())
}

/// A `Msvm_StorageAllocationSettingData` as a host shows it.
pub fn sasd(host: &FakeHost, owner: &str, iid: String, subtype: &str, path: &str) -> CimInstance {
    let caption = if subtype == SUBTYPE_VHD {
        "Hard Disk Image"
    } else {
        "ISO Disk Image"
    };
    CimInstance::new("Msvm_StorageAllocationSettingData")
        .with("Caption", s(caption))
        .with("ElementName", s(caption))
        .with("HostResource", CimValue::Array(vec![s(path)]))
        .with("InstanceID", s(&iid))
        .with(
            "Parent",
            s(&format!(
                "\\\\{}\\root\\virtualization\\v2:Msvm_ResourceAllocationSettingData.InstanceID=\"Microsoft:{owner}\"",
                host.computer_name
            )),
        )
        .with("PoolID", s(""))
        // A shared disk (a VHD Set, `.vhds`, is always one) supports SCSI-3 persistent
        // reservations (msvm-storageallocationsettingdata.md PersistentReservationsSupported).
        .with(
            "PersistentReservationsSupported",
            CimValue::Bool(path.to_ascii_lowercase().ends_with(".vhds")),
        )
        .with("ResourceSubType", s(subtype))
        .with("ResourceType", CimValue::U16(31))
        .with("Weight", CimValue::U32(0))
        .with("Limit", CimValue::U64(1))
}

/// Every storage entry of a VM: its hard disks, its drive images, and its checkpoints' disks.
pub fn storage_of(host: &FakeHost, vm: &FakeVm) -> Vec<CimInstance> {
    let mut out = Vec::new();
    for (i, d) in vm.disks.iter().enumerate() {
        out.push(sasd(
            host,
            &vm.guid,
            vhd_instance_id(&vm.guid, i),
            SUBTYPE_VHD,
            d,
        ));
    }
    for (j, d) in vm.drives.iter().enumerate() {
        out.push(sasd(
            host,
            &vm.guid,
            drive_instance_id(&vm.guid, j),
            d.subtype,
            &d.path,
        ));
    }
    for c in &vm.checkpoints {
        for (i, d) in c.disks.iter().enumerate() {
            out.push(sasd(host, &c.id, vhd_instance_id(&c.id, i), SUBTYPE_VHD, d));
        }
    }
    out
}

/// Every path a VM's storage entries name, by `InstanceID` (disks, drive images, checkpoint
/// disks).
pub fn paths_by_instance_id(vm: &FakeVm) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, d) in vm.disks.iter().enumerate() {
        out.push((vhd_instance_id(&vm.guid, i), d.clone()));
    }
    for (j, d) in vm.drives.iter().enumerate() {
        out.push((drive_instance_id(&vm.guid, j), d.path.clone()));
    }
    for c in &vm.checkpoints {
        for (i, d) in c.disks.iter().enumerate() {
            out.push((vhd_instance_id(&c.id, i), d.clone()));
        }
    }
    out
}

/// A checkpoint's `Msvm_VirtualSystemSettingData`.
pub fn checkpoint_vssd(vm: &FakeVm, c: &FakeCheckpoint) -> CimInstance {
    CimInstance::new("Msvm_VirtualSystemSettingData")
        .with("ConfigurationDataRoot", s(&vm.config_root))
        .with(
            "CreationTime",
            CimValue::DateTime("2026-01-01T00:00:00Z".into()),
        )
        .with("ElementName", s(&c.name))
        .with("InstanceID", s(&format!("Microsoft:{}", c.id)))
        .with("SnapshotDataRoot", s(&vm.snapshot_root))
        .with("SwapFileDataRoot", s(&vm.swap_root))
        .with("VirtualSystemIdentifier", s(&vm.guid))
        .with(
            "VirtualSystemType",
            s(if c.recovery {
                TYPE_RECOVERY
            } else {
                TYPE_SNAPSHOT
            }),
        )
}

/// A planned VM's `Msvm_PlannedComputerSystem`.
pub fn planned_instance(p: &FakePlanned) -> CimInstance {
    let mut i = CimInstance::new("Msvm_PlannedComputerSystem")
        .with("CreationClassName", s("Msvm_PlannedComputerSystem"))
        .with("ElementName", s(&p.name))
        .with("EnabledState", CimValue::U16(3))
        .with("Name", s(&p.guid));
    i.epr = Some(Epr::new(
        class_uri(super::world::NS_V2, "Msvm_PlannedComputerSystem"),
        vec![
            (
                "CreationClassName".into(),
                "Msvm_PlannedComputerSystem".into(),
            ),
            ("Name".into(), p.guid.clone()),
        ],
    ));
    i
}

/// A planned VM's settings (`VirtualSystemType` `Microsoft:Hyper-V:System:Planned`).
pub fn planned_vssd(p: &FakePlanned) -> CimInstance {
    CimInstance::new("Msvm_VirtualSystemSettingData")
        .with("ConfigurationDataRoot", s(&p.config_root))
        .with("ElementName", s(&p.name))
        .with("InstanceID", s(&format!("Microsoft:{}", p.guid)))
        .with("VirtualSystemIdentifier", s(&p.guid))
        .with("VirtualSystemType", s(TYPE_PLANNED))
}

/// The host's `Msvm_VirtualSystemManagementService` (`DestroySystem`), a singleton named
/// `vmms` (MicrosoftDocs/win32 desktop-src/HyperV_v2/msvm-virtualsystemmanagementservice.md).
pub fn management_service(host: &FakeHost) -> CimInstance {
    let mut i = CimInstance::new("Msvm_VirtualSystemManagementService")
        .with(
            "CreationClassName",
            s("Msvm_VirtualSystemManagementService"),
        )
        .with("Name", s("vmms"))
        .with("SystemCreationClassName", s("Msvm_ComputerSystem"))
        .with("SystemName", s(&host.computer_name));
    i.epr = Some(crate::cim::management_service_epr(&host.computer_name));
    i
}

impl World {
    /// Shows every host's captions in `locale`.
    pub fn set_locale(&mut self, locale: Locale) {
        self.locale = locale;
    }

    /// Attaches an image to a new DVD (or floppy) drive of a VM; creates the image file.
    pub fn add_drive(&mut self, host: &str, guid: &str, subtype: &'static str, path: &str) {
        if let Some(h) = self.hosts.get_mut(host) {
            if !h.files.contains_key(&key(path)) {
                h.write_file(path, 700 << 20);
            }
            if let Some(vm) = h.vms.get_mut(guid) {
                vm.drives.push(FakeDrive {
                    subtype,
                    path: path.to_owned(),
                });
            }
        }
    }

    /// Takes a checkpoint of a VM: its current disks become the checkpoint's, and the VM goes on
    /// with a new differencing disk beside each (`<stem>_<id>.avhdx`, 4 MiB). Returns its id.
    pub fn add_checkpoint(&mut self, host: &str, guid: &str, name: &str, recovery: bool) -> String {
        let n = self.next_id();
        let id = format!("C{n:07X}-0000-4000-8000-{n:012X}");
        if let Some(h) = self.hosts.get_mut(host) {
            let Some(vm) = h.vms.get(guid).cloned() else {
                return id;
            };
            let mut new_disks = Vec::new();
            for d in &vm.disks {
                let dir = parent(d).unwrap_or_default();
                let file = d.rsplit('\\').next().unwrap_or(d);
                let stem = file.rsplit_once('.').map_or(file, |x| x.0);
                // A chain's links are named after the base disk (Hyper-V names each
                // `<base>_<checkpoint id>.avhdx`).
                let base = match stem.rsplit_once('_') {
                    Some((b, link)) if link.len() == 36 && link.starts_with('C') => b,
                    _ => stem,
                };
                let child = format!("{dir}\\{base}_{id}.avhdx");
                h.write_file(&child, 4 << 20);
                new_disks.push(child);
            }
            h.write_file(
                &format!("{}\\Snapshots\\{id}.vmcx", vm.snapshot_root),
                32 << 10,
            );
            if let Some(v) = h.vms.get_mut(guid) {
                v.checkpoints.push(FakeCheckpoint {
                    id: id.clone(),
                    name: name.to_owned(),
                    recovery,
                    disks: vm.disks.clone(),
                });
                v.disks = new_disks;
            }
        }
        id
    }

    /// Leaves a planned VM of `guid` on `host` (as a failed attempt does).
    pub fn add_planned(&mut self, host: &str, guid: &str, name: &str, config_root: &str) {
        // Its files are not modelled: no source says where a failed migration's planned VM
        // keeps them, or whether DestroySystem removes them.
        if let Some(h) = self.hosts.get_mut(host) {
            h.planned.insert(
                guid.to_owned(),
                FakePlanned {
                    guid: guid.to_owned(),
                    name: name.to_owned(),
                    config_root: config_root.to_owned(),
                },
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_make_one_chain_per_disk_whatever_the_vm_is_called() {
        let mut w = World::new();
        w.add_host("a", "HVA", &["C:", "E:"]);
        let g = w.add_vm("a", "my_vm", true, 512, &[10, 20], "E:\\VMs\\my_vm");
        let c1 = w.add_checkpoint("a", &g, "one", false);
        let c2 = w.add_checkpoint("a", &g, "two", true);
        let vm = &w.hosts["a"].vms[&g];
        let d = "E:\\VMs\\my_vm\\Virtual Hard Disks";
        assert_eq!(
            vm.disks,
            [
                format!("{d}\\my_vm_0_{c2}.avhdx"),
                format!("{d}\\my_vm_1_{c2}.avhdx")
            ]
        );
        assert_eq!(
            vm.checkpoints[1].disks,
            [
                format!("{d}\\my_vm_0_{c1}.avhdx"),
                format!("{d}\\my_vm_1_{c1}.avhdx")
            ]
        );
        assert_eq!(
            vm.checkpoints[0].disks,
            [format!("{d}\\my_vm_0.vhdx"), format!("{d}\\my_vm_1.vhdx")]
        );
        assert!(vm.checkpoints[1].recovery);
        for p in vm
            .disks
            .iter()
            .chain(vm.checkpoints.iter().flat_map(|c| c.disks.iter()))
        {
            assert!(w.hosts["a"].files.contains_key(&key(p)), "{p}");
        }
    }
}
