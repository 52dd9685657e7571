//! The strict schema of the fake: every class and property the driver touches, with its CIM type
//! and where the class reference says so, and the check a real host makes of an embedded
//! instance (a method parameter sent as CIM-XML text).
//!
//! The table is written from Microsoft's Hyper-V WMI class reference, not from the driver: each
//! class names its page in MicrosoftDocs/win32 (`desktop-src/HyperV_v2/<page>.md`, the MOF
//! "Syntax" block of the page; `desktop-src/CIMWin32Prov/...` for root\cimv2). For the three
//! classes Hyper-V takes embedded (`Msvm_VirtualSystemMigrationSettingData`,
//! `Msvm_VirtualSystemSettingData`, `Msvm_StorageAllocationSettingData`) every property of the
//! MOF is listed, so that an instance read from a host and sent back whole is judged on its
//! types and values, not on a property the table forgot.
//!
//! What a host does with an embedded instance that does not match its class: the migration job
//! fails with ErrorCode 32768 (JobState 10). Seen on a real host by r4sd/go-wsman
//! (`hyperv/datetime_write_integration_test.go`: a datetime written in ISO 8601 form, or with
//! `TYPE="string"`, fails the job with ErrorCode 32768; only CIM native form with
//! `TYPE="datetime"` is accepted). The fake extends that finding to every property: a missing
//! or wrong `TYPE`, a value that does not parse as its type, an array where a scalar belongs
//! (or the reverse), and a property the class does not have, all fail the job the same way.
//! For the synchronous `CheckVirtualSystemIsMigratableToHost` (no job) the fake answers the
//! documented return value 32773 "Invalid parameter"
//! (`checkvirtualsystemismigratabletohost-msvm-virtualsystemmigrationservice.md`). Whether a real
//! host is as strict about unknown properties is for the live suite to show
//! (`tests/live.rs`, `live_embedded_instances_are_accepted`).

use crate::cim::{CimInstance, is_cim_datetime};

const DOCS: &str = "MicrosoftDocs/win32 desktop-src/";

/// One class of the schema: its name, its page in the reference, and its properties as the
/// MOF block of that page declares them (`type Name;`, `type Name[];` for arrays).
#[derive(Debug)]
pub struct Class {
    /// The class name.
    pub name: &'static str,
    /// The page of the class reference, under `MicrosoftDocs/win32 desktop-src/`.
    pub source: &'static str,
    /// `type Name;` declarations, as in the MOF block.
    pub mof: &'static str,
    /// Whether every property of the class is listed (the embedded classes), or only those
    /// the driver touches.
    pub complete: bool,
}

/// The table.
pub const CLASSES: &[Class] = &[
    Class {
        name: "Msvm_VirtualSystemMigrationSettingData",
        source: "HyperV_v2/msvm-virtualsystemmigrationsettingdata.md",
        complete: true,
        mof: "string InstanceID; string Caption; string Description; string ElementName;
              uint16 MigrationType; uint16 Priority; uint16 Bandwidth; string BandwidthUnit;
              string OtherTransportType; uint16 TransportType; boolean RemoveSourceUnmanagedVhds;
              boolean AvoidRemovingVHDs; uint16 CPUCappingMagnitude;
              boolean CancelIfBlackoutThresholdExceeded; boolean AllowOverwriteExistingFile;
              string UnmanagedVhds[]; string DestinationPlannedVirtualSystemId;
              string DestinationIPAddressList[]; boolean RetainVhdCopiesOnSource;
              boolean EnableCompression;",
    },
    Class {
        name: "Msvm_VirtualSystemSettingData",
        source: "HyperV_v2/msvm-virtualsystemsettingdata.md",
        complete: true,
        mof: "string InstanceID; string Caption; string Description; string ElementName;
              string VirtualSystemIdentifier; string VirtualSystemType; string Notes[];
              datetime CreationTime; string ConfigurationID; string ConfigurationDataRoot;
              string ConfigurationFile; string SnapshotDataRoot; string SuspendDataRoot;
              string SwapFileDataRoot; string LogDataRoot; uint16 AutomaticStartupAction;
              datetime AutomaticStartupActionDelay; uint16 AutomaticStartupActionSequenceNumber;
              uint16 AutomaticShutdownAction; uint16 AutomaticRecoveryAction; string RecoveryFile;
              string BIOSGUID; string BIOSSerialNumber; string BaseBoardSerialNumber;
              string ChassisSerialNumber; string Architecture; string ChassisAssetTag;
              boolean BIOSNumLock; uint16 BootOrder[]; string Parent; uint16 UserSnapshotType;
              boolean IsSaved; string AdditionalRecoveryInformation;
              boolean AllowFullSCSICommandSet; uint32 DebugChannelId; uint16 DebugPortEnabled;
              uint32 DebugPort; string Version; boolean IncrementalBackupEnabled;
              boolean VirtualNumaEnabled; boolean AllowReducedFcRedundancy;
              string VirtualSystemSubType; string BootSourceOrder[];
              boolean PauseAfterBootFailure; uint16 NetworkBootPreferredProtocol;
              boolean GuestControlledCacheTypes; boolean AutomaticSnapshotsEnabled;
              boolean IsAutomaticSnapshot; string GuestStateFile; string GuestStateDataRoot;
              boolean LockOnDisconnect; string ParentPackage;
              datetime AutomaticCriticalErrorActionTimeout; uint16 AutomaticCriticalErrorAction;
              uint16 ConsoleMode; boolean SecureBootEnabled; string SecureBootTemplateId;
              uint64 LowMmioGapSize; uint64 HighMmioGapSize; uint16 EnhancedSessionTransportType;",
    },
    Class {
        name: "Msvm_StorageAllocationSettingData",
        source: "HyperV_v2/msvm-storageallocationsettingdata.md",
        complete: true,
        mof: "string InstanceID; string Caption; string Description; string ElementName;
              uint16 ResourceType; string OtherResourceType; string ResourceSubType;
              string PoolID; uint16 ConsumerVisibility; string HostResource[];
              string AllocationUnits; uint64 VirtualQuantity; uint64 Limit; uint32 Weight;
              string StorageQoSPolicyID; boolean AutomaticAllocation;
              boolean AutomaticDeallocation; string Parent; string Connection[]; string Address;
              uint16 MappingBehavior; string AddressOnParent; uint64 VirtualResourceBlockSize;
              string VirtualQuantityUnits; uint16 Access; uint64 HostResourceBlockSize;
              uint64 Reservation; uint64 HostExtentStartingAddress; string HostExtentName;
              uint16 HostExtentNameFormat; string OtherHostExtentNameFormat;
              uint16 HostExtentNameNamespace; string OtherHostExtentNameNamespace;
              uint64 IOPSLimit; uint64 IOPSReservation; string IOPSAllocationUnits;
              boolean PersistentReservationsSupported; uint16 CachingMode; string SnapshotId;
              boolean IgnoreFlushes; uint16 WriteHardeningMethod;",
    },
    Class {
        name: "Msvm_ComputerSystem",
        source: "HyperV_v2/msvm-computersystem.md",
        complete: false,
        mof: "string Caption; string Description; string ElementName; datetime InstallDate;
              uint16 OperationalStatus[]; string StatusDescriptions[]; uint16 HealthState;
              uint16 EnabledState; string OtherEnabledState; string CreationClassName;
              string Name; uint64 OnTimeInMilliseconds;",
    },
    Class {
        name: "Msvm_PlannedComputerSystem",
        source: "HyperV_v2/msvm-plannedcomputersystem.md",
        complete: false,
        mof: "string Caption; string Description; string ElementName; uint16 EnabledState;
              uint16 OperationalStatus[]; string CreationClassName; string Name;",
    },
    Class {
        name: "Msvm_VirtualSystemMigrationService",
        source: "HyperV_v2/msvm-virtualsystemmigrationservice.md",
        complete: false,
        mof: "string CreationClassName; string Name; string SystemCreationClassName;
              string SystemName; uint32 ActiveVirtualSystemMigrationCount;
              uint32 ActiveStorageMigrationCount; string MigrationServiceListenerIPAddressList[];",
    },
    Class {
        name: "Msvm_VirtualSystemMigrationServiceSettingData",
        source: "HyperV_v2/msvm-virtualsystemmigrationservicesettingdata.md",
        complete: true,
        mof: "string InstanceID; string Caption; string Description; string ElementName;
              boolean EnableVirtualSystemMigration; uint32 MaximumActiveVirtualSystemMigration;
              uint32 MaximumActiveStorageMigration; uint32 AuthenticationType;
              boolean EnableCompression; boolean EnableSmbTransport;",
    },
    Class {
        name: "Msvm_MemorySettingData",
        source: "HyperV_v2/msvm-memorysettingdata.md",
        complete: false,
        mof: "string InstanceID; uint16 ResourceType; uint64 VirtualQuantity;",
    },
    Class {
        name: "Win32_ComputerSystem",
        source: "CIMWin32Prov/win32-computersystem.md",
        complete: false,
        mof: "string Name; string DNSHostName; string Domain; boolean PartOfDomain;",
    },
];

/// The CIM type of a property (`uint16`, `string`...) and whether it is an array; `None` when
/// the class or the property is not in the table.
pub fn property(class: &str, name: &str) -> Option<(&'static str, bool)> {
    let c = CLASSES.iter().find(|c| c.name == class)?;
    declarations(c)
        .find(|(_, n, _)| *n == name)
        .map(|(t, _, a)| (t, a))
}

/// The class's entry.
pub fn class(name: &str) -> Option<&'static Class> {
    CLASSES.iter().find(|c| c.name == name)
}

/// (type, name, is array) of each declaration of a class.
fn declarations(c: &Class) -> impl Iterator<Item = (&'static str, &'static str, bool)> {
    c.mof.split(';').filter_map(|d| {
        let mut it = d.split_whitespace();
        let ty = it.next()?;
        let name = it.next()?;
        match name.strip_suffix("[]") {
            Some(n) => Some((ty, n, true)),
            None => Some((ty, name, false)),
        }
    })
}

/// Where a class's entry comes from, in words for messages.
pub fn source_of(class: &str) -> String {
    self::class(class)
        .map(|c| format!("{DOCS}{}", c.source))
        .unwrap_or_else(|| "no source".into())
}

/// Whether `text` is a valid value of CIM type `ty` in CIM-XML.
pub fn valid_value(ty: &str, text: &str) -> bool {
    let t = text.trim();
    match ty {
        "string" => true,
        "boolean" => t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false"),
        "uint8" => t.parse::<u8>().is_ok(),
        "uint16" => t.parse::<u16>().is_ok(),
        "uint32" => t.parse::<u32>().is_ok(),
        "uint64" => t.parse::<u64>().is_ok(),
        "sint16" => t.parse::<i16>().is_ok(),
        "sint32" => t.parse::<i32>().is_ok(),
        "sint64" => t.parse::<i64>().is_ok(),
        "datetime" => is_cim_datetime(t),
        _ => false,
    }
}

/// Checks an embedded instance as a host does: a CIM-XML `INSTANCE` of one of `classes`, every
/// property known to the class with the class's `TYPE`, scalar or array as declared, and each
/// value valid for its type. The parsed instance, or why a host would fail the job.
pub fn check_embedded(text: &str, classes: &[&str]) -> Result<CimInstance, String> {
    let root = crate::xml::parse(text).map_err(|e| format!("not CIM-XML: {e}"))?;
    if root.name != "INSTANCE" {
        return Err(format!("expected INSTANCE, found {}", root.name));
    }
    let cname = root.attr("CLASSNAME").unwrap_or("");
    if !classes.contains(&cname) {
        return Err(format!(
            "an instance of {cname:?} where {} is expected",
            classes.join(" or ")
        ));
    }
    let Some(c) = class(cname) else {
        return Err(format!("class {cname} is not in the fake's schema"));
    };
    for p in &root.children {
        let name = p.attr("NAME").unwrap_or("");
        let Some((ty, array)) = property(cname, name) else {
            if c.complete {
                return Err(format!(
                    "{cname} has no property {name:?} ({DOCS}{})",
                    c.source
                ));
            }
            continue;
        };
        let sent = p.attr("TYPE");
        let is_array = match p.name.as_str() {
            "PROPERTY" => false,
            "PROPERTY.ARRAY" => true,
            other => return Err(format!("{cname}.{name}: {other} is not accepted here")),
        };
        if sent != Some(ty) {
            return Err(format!(
                "{cname}.{name} is {ty} ({DOCS}{}), sent as TYPE={}",
                c.source,
                sent.map_or("(none)".to_owned(), |s| format!("\"{s}\""))
            ));
        }
        if is_array != array {
            return Err(format!(
                "{cname}.{name} is {}an array ({DOCS}{})",
                if array { "" } else { "not " },
                c.source
            ));
        }
        let values: Vec<&crate::xml::Element> = if is_array {
            p.child("VALUE.ARRAY")
                .map(|va| va.children_named("VALUE").collect())
                .unwrap_or_default()
        } else {
            p.child("VALUE").into_iter().collect()
        };
        for v in values {
            if !valid_value(ty, &v.text) {
                return Err(format!(
                    "{cname}.{name}: {:?} is not a valid {ty}{}",
                    v.text,
                    if ty == "datetime" {
                        " (CIM native form yyyymmddHHMMSS.mmmmmmsUUU or ddddddddHHMMSS.mmmmmm:000)"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    CimInstance::from_cim_xml(text).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_table_reads_the_reference_types() {
        assert_eq!(
            property("Msvm_VirtualSystemMigrationSettingData", "Bandwidth"),
            Some(("uint16", false))
        );
        assert_eq!(
            property(
                "Msvm_VirtualSystemMigrationSettingData",
                "DestinationIPAddressList"
            ),
            Some(("string", true))
        );
        assert_eq!(
            property("Msvm_StorageAllocationSettingData", "Weight"),
            Some(("uint32", false))
        );
        assert_eq!(
            property("Msvm_VirtualSystemSettingData", "CreationTime"),
            Some(("datetime", false))
        );
        assert_eq!(property("Msvm_VirtualSystemSettingData", "Nope"), None);
        // Every declaration parses: a type the checker knows and a name.
        for c in CLASSES {
            for (t, n, _) in declarations(c) {
                assert!(
                    [
                        "string", "boolean", "uint8", "uint16", "uint32", "uint64", "datetime"
                    ]
                    .contains(&t),
                    "{}.{n}: {t}",
                    c.name
                );
            }
        }
    }

    /// Whether a value the fake shows has the kind of its declared type.
    fn kind_matches(ty: &str, array: bool, v: &crate::cim::CimValue) -> bool {
        use crate::cim::CimValue as V;
        match v {
            V::Null => true,
            V::Array(items) => array && items.iter().all(|i| kind_matches(ty, false, i)),
            _ if array => false,
            V::String(_) | V::Text(_) => ty == "string",
            V::Bool(_) => ty == "boolean",
            V::U16(_) => ty == "uint16",
            V::U32(_) => ty == "uint32",
            V::U64(_) => ty == "uint64",
            V::DateTime(_) => ty == "datetime",
            V::Ref(_) => false,
        }
    }

    #[test]
    fn the_fake_shows_its_classes_as_the_table_types_them() {
        use super::super::model::SUBTYPE_DVD;
        use super::super::world::{NS_CIMV2, NS_V2, World};
        let mut w = World::new();
        w.add_host("a", "HVA", &["C:", "E:"]);
        w.add_host("b", "HVB", &["C:", "E:"]);
        let g = w.add_vm("a", "vm1", true, 512, &[10], "E:\\VMs\\vm1");
        w.add_drive("a", &g, SUBTYPE_DVD, "E:\\ISO\\x.iso");
        w.add_checkpoint("a", &g, "c1", true);
        w.add_planned("b", &g, "vm1", "E:\\M\\vm1");
        let mut seen = 0;
        for c in CLASSES {
            let ns = if c.name.starts_with("Win32_") {
                NS_CIMV2
            } else {
                NS_V2
            };
            for host in ["a", "b"] {
                let all = w
                    .query(host, ns, &format!("SELECT * FROM {}", c.name))
                    .unwrap();
                for i in all {
                    for (name, v) in &i.properties {
                        seen += 1;
                        match property(c.name, name) {
                            Some((ty, array)) => assert!(
                                kind_matches(ty, array, v),
                                "{}.{name} is {ty}{}, the fake shows {v:?}",
                                c.name,
                                if array { "[]" } else { "" }
                            ),
                            None => assert!(
                                !c.complete,
                                "the fake shows {}.{name}, which the class does not have",
                                c.name
                            ),
                        }
                    }
                }
            }
        }
        assert!(seen > 50, "{seen} properties checked");
    }

    #[test]
    fn an_embedded_instance_is_judged_as_a_host_judges_it() {
        let ok = "<INSTANCE CLASSNAME=\"Msvm_VirtualSystemMigrationSettingData\">\
            <PROPERTY NAME=\"MigrationType\" TYPE=\"uint16\"><VALUE>32771</VALUE></PROPERTY>\
            <PROPERTY.ARRAY NAME=\"DestinationIPAddressList\" TYPE=\"string\"><VALUE.ARRAY><VALUE>192.0.2.1</VALUE></VALUE.ARRAY></PROPERTY.ARRAY>\
            </INSTANCE>";
        let i = check_embedded(ok, &["Msvm_VirtualSystemMigrationSettingData"]).unwrap();
        assert_eq!(i.get_u32("MigrationType"), Some(32771));
        let cases = [
            // untyped (defaulting to string) where the reference says uint16
            (
                "<PROPERTY NAME=\"MigrationType\" TYPE=\"string\"><VALUE>32771</VALUE></PROPERTY>",
                "uint16",
            ),
            (
                "<PROPERTY NAME=\"MigrationType\"><VALUE>32771</VALUE></PROPERTY>",
                "(none)",
            ),
            (
                "<PROPERTY NAME=\"Bandwidth\" TYPE=\"uint64\"></PROPERTY>",
                "uint16",
            ),
            (
                "<PROPERTY NAME=\"MigrationType\" TYPE=\"uint16\"><VALUE>70000</VALUE></PROPERTY>",
                "not a valid uint16",
            ),
            (
                "<PROPERTY NAME=\"EnableCompression\" TYPE=\"boolean\"><VALUE>yes</VALUE></PROPERTY>",
                "not a valid boolean",
            ),
            (
                "<PROPERTY NAME=\"Frobnicate\" TYPE=\"string\"><VALUE>x</VALUE></PROPERTY>",
                "no property",
            ),
            (
                "<PROPERTY NAME=\"DestinationIPAddressList\" TYPE=\"string\"><VALUE>x</VALUE></PROPERTY>",
                "is an array",
            ),
        ];
        for (prop, why) in cases {
            let t = format!(
                "<INSTANCE CLASSNAME=\"Msvm_VirtualSystemMigrationSettingData\">{prop}</INSTANCE>"
            );
            let e = check_embedded(&t, &["Msvm_VirtualSystemMigrationSettingData"]).unwrap_err();
            assert!(e.contains(why), "{prop}: {e}");
        }
        // A datetime in the ISO form WinRM returns is refused, CIM native form accepted.
        let dt = |v: &str| {
            format!(
                "<INSTANCE CLASSNAME=\"Msvm_VirtualSystemSettingData\"><PROPERTY NAME=\"CreationTime\" TYPE=\"datetime\"><VALUE>{v}</VALUE></PROPERTY></INSTANCE>"
            )
        };
        assert!(
            check_embedded(
                &dt("2026-01-01T00:00:00Z"),
                &["Msvm_VirtualSystemSettingData"]
            )
            .unwrap_err()
            .contains("CIM native form")
        );
        check_embedded(
            &dt("20260101000000.000000+000"),
            &["Msvm_VirtualSystemSettingData"],
        )
        .unwrap();
        // Another class where one is expected.
        assert!(
            check_embedded(
                "<INSTANCE CLASSNAME=\"Msvm_VirtualSystemSettingData\"></INSTANCE>",
                &["Msvm_StorageAllocationSettingData"]
            )
            .is_err()
        );
    }
}
