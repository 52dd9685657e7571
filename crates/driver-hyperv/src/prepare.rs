//! What a move sends and what it looks for: the embedded instances of
//! `MigrateVirtualSystemToHost` (and of the migratability check, which gets the same), which
//! storage entries are virtual hard disks, which `Msvm_ComputerSystem` is a VM, and the
//! destination's name. Pure functions over instances read from the hosts.
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

use crate::cim::{CimInstance, CimValue};

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
