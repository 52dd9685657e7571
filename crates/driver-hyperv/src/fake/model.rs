//! What the fake shows of a real host beyond a VM and its disks: translated captions (a locale
//! switch), DVD and floppy drives with their images, checkpoints with differencing chains, and
//! planned VMs left by a failed attempt. Each behaviour cites its source.

pub use super::state::{
    FakeCheckpoint, FakeDrive, FakePlanned, Locale, SUBTYPE_DVD, SUBTYPE_FLOPPY, SUBTYPE_VHD,
    TYPE_PLANNED, TYPE_REALIZED, TYPE_RECOVERY, TYPE_SNAPSHOT,
};
use super::state::{FakeHost, FakeVm, NS_V2};
use crate::cim::{CimInstance, CimValue, Epr, class_uri};

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
        class_uri(NS_V2, "Msvm_PlannedComputerSystem"),
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

/// A switch's `Name` on a host: a GUID, stable for (host, switch name) (the class reference
/// gives `Name` as the switch's GUID and `ElementName` as its friendly name:
/// MicrosoftDocs/win32 desktop-src/HyperV_v2/msvm-virtualethernetswitch.md).
pub fn switch_guid(host: &FakeHost, name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{}\\{}", host.computer_name, name.to_ascii_lowercase()).bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "{:08X}-{:04X}-4000-8000-{:012X}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xffff_ffff_ffff
    )
}

/// A host's `Msvm_VirtualEthernetSwitch` (msvm-virtualethernetswitch.md: `Name` the GUID,
/// `ElementName` the name `Get-VMSwitch` shows and `Connect-VMNetworkAdapter -SwitchName`
/// takes).
pub fn switch_instance(host: &FakeHost, name: &str) -> CimInstance {
    let g = switch_guid(host, name);
    let mut i = CimInstance::new("Msvm_VirtualEthernetSwitch")
        .with("CreationClassName", s("Msvm_VirtualEthernetSwitch"))
        .with("ElementName", s(name))
        .with("EnabledState", CimValue::U16(2))
        .with("Name", s(&g));
    i.epr = Some(Epr::new(
        class_uri(NS_V2, "Msvm_VirtualEthernetSwitch"),
        vec![
            (
                "CreationClassName".into(),
                "Msvm_VirtualEthernetSwitch".into(),
            ),
            ("Name".into(), g),
        ],
    ));
    i
}

/// The `Msvm_EthernetPortAllocationSettingData` of a VM's `j`-th network adapter: its
/// `HostResource` names the switch it connects to by object path
/// (msvm-ethernetportallocationsettingdata.md, HostResource; os-win `networkutils.py`
/// `connect_vnic_to_vswitch` sets `HostResource = [vswitch.path_()]`; libvirt's
/// `hyperv_driver.c` reads the switch from it the same way).
pub fn port_instance(host: &FakeHost, vm: &FakeVm, j: usize, switch: &str) -> CimInstance {
    let path = format!(
        "\\\\{}\\root\\virtualization\\v2:Msvm_VirtualEthernetSwitch.CreationClassName=\"Msvm_VirtualEthernetSwitch\",Name=\"{}\"",
        host.computer_name,
        switch_guid(host, switch)
    );
    CimInstance::new("Msvm_EthernetPortAllocationSettingData")
        .with("EnabledState", CimValue::U16(2))
        .with("HostResource", CimValue::Array(vec![s(&path)]))
        .with(
            "InstanceID",
            s(&format!(
                "Microsoft:{}\\C3F1A2B4-0000-4000-8000-{j:012X}\\C",
                vm.guid
            )),
        )
        .with("ResourceType", CimValue::U16(33))
}

/// A VM's `Msvm_ProcessorSettingData`: `LimitProcessorFeatures` is processor compatibility
/// mode ("If True, the processor features available to the guest are limited to a common
/// set, which enables migration to hosts with different processors":
/// msvm-processorsettingdata.md).
pub fn processor_instance(vm: &FakeVm) -> CimInstance {
    CimInstance::new("Msvm_ProcessorSettingData")
        .with(
            "InstanceID",
            s(&format!(
                "Microsoft:{}\\b637f346-6a0e-4dec-af52-bd70cb80a21d\\0",
                vm.guid
            )),
        )
        .with(
            "LimitProcessorFeatures",
            CimValue::Bool(vm.limit_processor_features),
        )
        .with("ResourceType", CimValue::U16(3))
        .with("VirtualQuantity", CimValue::U64(2))
}

/// `ResourceSubType` of a pass-through (physical) disk drive: a `Msvm_ResourceAllocationSettingData`
/// of `ResourceType` 17 whose `HostResource` names the host's `Msvm_DiskDrive`
/// (msvm-resourceallocationsettingdata.md, ResourceSubType and HostResource).
pub const SUBTYPE_PHYSICAL_DISK: &str = "Microsoft:Hyper-V:Physical Disk Drive";

/// The `Msvm_ResourceAllocationSettingData` of a VM's pass-through disks (the only resource
/// allocation entries the fake shows besides what other classes carry).
pub fn passthrough_instances(host: &FakeHost, vm: &FakeVm) -> Vec<CimInstance> {
    vm.passthrough_disks
        .iter()
        .enumerate()
        .map(|(k, n)| {
            CimInstance::new("Msvm_ResourceAllocationSettingData")
                .with(
                    "HostResource",
                    CimValue::Array(vec![s(&format!(
                        "\\\\{}\\root\\virtualization\\v2:Msvm_DiskDrive.CreationClassName=\"Msvm_DiskDrive\",DeviceID=\"Microsoft:{n}\",SystemCreationClassName=\"Msvm_ComputerSystem\",SystemName=\"{}\"",
                        host.computer_name, host.computer_name
                    ))]),
                )
                .with(
                    "InstanceID",
                    s(&format!(
                        "Microsoft:{}\\83F8638B-8DCA-4152-9EDA-2CA8B33039B4\\0\\{}\\D",
                        vm.guid,
                        vm.disks.len() + k
                    )),
                )
                .with("ResourceSubType", s(SUBTYPE_PHYSICAL_DISK))
                .with("ResourceType", CimValue::U16(17))
        })
        .collect()
}
