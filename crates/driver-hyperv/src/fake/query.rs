//! The WMI instances the fake shows (VMs, hosts, jobs, settings, folders, files) and the
//! read operations on them: WQL queries (Enumerate/Pull) and Get.

use super::model::{self, Locale};
use super::state::{cim_datetime, file_name, job_epr, s, u16s};
use super::world::{FakeHost, FakeJob, FakeVm, Fault, Faults, NS_CIMV2, NS_V2, World, key, parent};
use super::wql::{self, Cond, Query};
use crate::cim::{
    CimInstance, CimValue, Epr, class_uri, computer_system_epr, migration_service_epr,
};

impl World {
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

    pub(crate) fn host_instance(h: &FakeHost, locale: Locale) -> CimInstance {
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

    pub(crate) fn job_instance(j: &FakeJob, faults: &Faults) -> CimInstance {
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

    pub(crate) fn instances_of(
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
                        .with("AuthenticationType", CimValue::U32(h.migration_auth))
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
            "Msvm_VirtualEthernetSwitch" if ns_ok(NS_V2) => {
                for sw in &h.switches {
                    out.push(model::switch_instance(h, sw));
                }
            }
            "Msvm_EthernetPortAllocationSettingData" if ns_ok(NS_V2) => {
                for vm in h.vms.values() {
                    for (j, sw) in vm.nics.iter().enumerate() {
                        out.push(model::port_instance(h, vm, j, sw));
                    }
                }
            }
            "Msvm_ProcessorSettingData" if ns_ok(NS_V2) => {
                for vm in h.vms.values() {
                    out.push(model::processor_instance(vm));
                }
            }
            "Msvm_ResourceAllocationSettingData" if ns_ok(NS_V2) => {
                for vm in h.vms.values() {
                    out.extend(model::passthrough_instances(h, vm));
                }
            }
            "Win32_Processor" if ns_ok(NS_CIMV2) => {
                out.push(
                    CimInstance::new(class)
                        .with("DeviceID", s("CPU0"))
                        .with("Manufacturer", s(&h.cpu_vendor))
                        .with("Name", s(&h.cpu_name)),
                );
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
                        .with("BuildNumber", s(&h.os_build.to_string()))
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

    pub(crate) fn vssd(vm: &FakeVm) -> CimInstance {
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
            // The configuration version, "major.minor" (msvm-virtualsystemsettingdata.md,
            // Version; Get-VM's Version column).
            .with(
                "Version",
                s(if vm.version.is_empty() {
                    "9.0"
                } else {
                    &vm.version
                }),
            )
            .with("VirtualSystemIdentifier", s(&vm.guid))
            .with("VirtualSystemType", s("Microsoft:Hyper-V:System:Realized"))
    }

    pub(crate) fn dir_instance(d: &str) -> CimInstance {
        let mut i = CimInstance::new("Win32_Directory")
            .with("Drive", s(&d[..2].to_ascii_lowercase()))
            .with("Name", s(&d.to_ascii_lowercase()));
        i.epr = Some(Epr::new(
            class_uri(NS_CIMV2, "Win32_Directory"),
            vec![("Name".into(), d.to_ascii_lowercase())],
        ));
        i
    }

    pub(crate) fn matches(inst: &CimInstance, conds: &[Cond]) -> bool {
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
}
