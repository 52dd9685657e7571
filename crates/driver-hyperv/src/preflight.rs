//! Pre-flight: can this VM move on this route, found by reading only (`Driver::preflight`,
//! `Driver::preflight_host`). docs/drivers/hyperv.md (Pre-flight) lists every check, its code,
//! what it reads and what Compare-VM / `CheckVirtualSystemIsMigratableToHost` check for it.
//!
//! The last check is the host's own: `CheckVirtualSystemIsMigratableToHost`, asked with the
//! very parameters `start_migration` would send (`prepare::move_params`), as Move-VM asks it
//! (Windows-classic-samples MigrationCommon.cs `CheckMigratability`). It is a read: the class
//! reference gives it no effect but its answer (MicrosoftDocs/win32 desktop-src/HyperV_v2/
//! checkvirtualsystemismigratabletohost-msvm-virtualsystemmigrationservice.md: "Determines
//! whether the specified virtual system can be migrated"). It is asked only when the checks
//! before it found no blocker: its answer is a bare yes/no, and a named blocker says more.

use crate::cim::{CIMV2, CimInstance, V2};
use crate::driver::HyperVDriver;
use crate::paths::wql_str;
use crate::prepare::{self, VHD_SUBTYPE};
use crate::status::{op_status, status_of};
use std::collections::BTreeMap;
use vmove_driver::*;

/// A configuration version, `major.minor` (`Msvm_VirtualSystemSettingData.Version`, Get-VM's
/// Version column).
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The newest configuration version a host of Windows build `build` runs (Microsoft Learn,
/// "Supported virtual machine configuration versions", the table of host releases and the
/// versions each supports): Windows Server 2025 / Windows 11 24H2 (26100) 12.0, Windows 11
/// 22H2 (22621) 11.0, Windows Server 2022 (20348) 10.0, Windows Server 2019 (17763) 9.0,
/// Windows Server 2016 (14393) 8.0, Windows Server 2012 R2 (9600) 5.0. A build between two
/// rows gets the lower row's version (never a version the host may not run).
pub fn max_config_version(build: u32) -> (u32, u32) {
    match build {
        26100.. => (12, 0),
        22621.. => (11, 0),
        20348.. => (10, 0),
        17763.. => (9, 0),
        14393.. => (8, 0),
        9600.. => (5, 0),
        _ => (4, 0),
    }
}

/// The `Name` of the switch an `Msvm_EthernetPortAllocationSettingData.HostResource` object
/// path names (`...Msvm_VirtualEthernetSwitch.CreationClassName="...",Name="<GUID>"`).
pub fn switch_name_in_path(path: &str) -> Option<String> {
    if !path.contains("Msvm_VirtualEthernetSwitch") {
        return None;
    }
    let i = path
        .find(",Name=\"")
        .map(|i| i + 7)
        .or_else(|| path.find(".Name=\"").map(|i| i + 7))?;
    let rest = &path[i..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// `AuthenticationType` of `Msvm_VirtualSystemMigrationServiceSettingData` that is CredSSP
/// (MicrosoftDocs/win32 desktop-src/HyperV_v2/msvm-virtualsystemmigrationservicesettingdata.md:
/// 0 CredSSP, 1 Kerberos).
const AUTH_CREDSSP: u32 = 0;

fn auth_words(t: Option<u32>) -> &'static str {
    match t {
        Some(0) => "CredSSP",
        Some(1) => "Kerberos",
        _ => "unknown",
    }
}

/// A host's migration service settings, as pre-flight reads them.
struct MigrationSettings {
    enabled: bool,
    auth: Option<u32>,
}

impl HyperVDriver {
    async fn migration_settings(&self, host: &HostId) -> DriverResult<MigrationSettings> {
        let sd = self
            .query(
                host,
                V2,
                "SELECT * FROM Msvm_VirtualSystemMigrationServiceSettingData",
            )
            .await?;
        let first = sd.first();
        Ok(MigrationSettings {
            enabled: first
                .and_then(|s| s.get_bool("EnableVirtualSystemMigration"))
                .unwrap_or(false),
            auth: first.and_then(|s| s.get_u32("AuthenticationType")),
        })
    }

    /// The settings entries of a VM of `class` (`InstanceID LIKE 'Microsoft:<GUID>\%'`, as
    /// os-win's `_wqlutils.py` `get_element_associated_class` selects a VM's resources).
    async fn entries_of(
        &self,
        host: &HostId,
        class: &str,
        guid: &str,
    ) -> DriverResult<Vec<CimInstance>> {
        let prefix = format!("Microsoft:{guid}");
        let q = format!(
            "SELECT * FROM {class} WHERE InstanceID LIKE {}",
            wql_str(&format!("{prefix}%"))
        );
        Ok(self
            .query(host, V2, &q)
            .await?
            .into_iter()
            .filter(|s| {
                s.get_str("InstanceID").is_some_and(|i| {
                    i.get(prefix.len()..)
                        .is_some_and(|r| r.is_empty() || r.starts_with('\\'))
                })
            })
            .collect())
    }

    /// `Win32_Processor` (vendor, model) of a host's first processor.
    async fn processor(&self, host: &HostId) -> DriverResult<(String, String)> {
        let p = self
            .query(host, CIMV2, "SELECT * FROM Win32_Processor")
            .await?;
        let first = p.first();
        Ok((
            first
                .and_then(|c| c.get_str("Manufacturer"))
                .unwrap_or_default(),
            first.and_then(|c| c.get_str("Name")).unwrap_or_default(),
        ))
    }

    /// `Driver::preflight` (module doc; docs/drivers/hyperv.md, Pre-flight).
    pub(crate) async fn check_route(&self, req: &MigrationRequest) -> DriverResult<Preflight> {
        let (src, dst) = (&req.source, &req.destination);
        if src == dst {
            return Err(DriverError::permanent(
                "source and destination are the same host",
            ));
        }
        self.host(src)?;
        self.host(dst)?;
        let guid = req.vm.as_str();
        let Some(vm) = self.vm_instance(src, &req.vm).await? else {
            return Err(DriverError::permanent(format!(
                "VM {} not found on {src}",
                req.vm
            )));
        };
        let name = &req.vm_name;
        let mut found = Preflight::default();

        // The VM itself.
        let (health, activity) = status_of(&op_status(&vm));
        if let Health::Bad(w) = health {
            found.block(
                Finding::new("vm_unhealthy", FindingScope::Vm, format!("{name} is {w}"))
                    .remedy("repair the VM on its host (Hyper-V Manager shows its status)"),
            );
        }
        if activity != Activity::Idle {
            found.warn(Finding::new(
                "vm_busy",
                FindingScope::Vm,
                format!("{name} is busy on {src} ({activity:?}): its move waits until it is idle"),
            ));
        }
        let running = vm.get_u32("EnabledState") == Some(2);

        // Both hosts take migrations, over a network, with an authentication that works when
        // the move is asked remotely.
        let src_settings = self.migration_settings(src).await?;
        let dst_settings = self.migration_settings(dst).await?;
        if !src_settings.enabled {
            found.block(
                Finding::new(
                    "migration_disabled",
                    FindingScope::Host,
                    format!(
                        "{src} does not send VM migrations (EnableVirtualSystemMigration is false)"
                    ),
                )
                .remedy(format!("run Enable-VMMigration on {src}")),
            );
        }
        if !dst_settings.enabled {
            found.block(
                Finding::new(
                    "migration_disabled",
                    FindingScope::Host,
                    format!("{dst} does not accept VM migrations (EnableVirtualSystemMigration is false)"),
                )
                .remedy(format!("run Enable-VMMigration on {dst}, or choose another destination")),
            );
        }
        let dest_addresses: Vec<String> = self
            .service(dst)
            .await?
            .get_array("MigrationServiceListenerIPAddressList")
            .into_iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if dst_settings.enabled && dest_addresses.is_empty() {
            found.block(
                Finding::new(
                    "no_migration_network",
                    FindingScope::Host,
                    format!("{dst} listens for migrations on no network (MigrationServiceListenerIPAddressList is empty)"),
                )
                .remedy(format!("run Add-VMMigrationNetwork on {dst} (or Set-VMHost -UseAnyNetworkForMigration $true)")),
            );
        }
        if src_settings.auth == Some(AUTH_CREDSSP) {
            found.block(
                Finding::new(
                    "credssp_needs_local_session",
                    FindingScope::Host,
                    format!("{src} authenticates migrations with CredSSP, which works only from a session signed in on {src}: a move asked remotely fails (0x8009030E, no credentials)"),
                )
                .remedy(format!("run Set-VMHost -VirtualMachineMigrationAuthenticationType Kerberos on {src} and {dst}, and allow {src} constrained delegation of 'cifs' and 'Microsoft Virtual System Migration Service' to {dst} in Active Directory")),
            );
        } else if src_settings.auth.is_some() && src_settings.auth != dst_settings.auth {
            found.warn(
                Finding::new(
                    "auth_mismatch",
                    FindingScope::Destination,
                    format!(
                        "{src} authenticates migrations with {}, {dst} with {}",
                        auth_words(src_settings.auth),
                        auth_words(dst_settings.auth)
                    ),
                )
                .remedy(
                    "set the same VirtualMachineMigrationAuthenticationType on both (Set-VMHost)",
                ),
            );
        }

        // The VM (by id) or its name on the destination; a planned VM left by a failed attempt.
        if self.vm_instance(dst, &req.vm).await?.is_some() {
            found.block(
                Finding::new(
                    "vm_exists",
                    FindingScope::Destination,
                    format!("{dst} already has a VM with the id {guid}"),
                )
                .remedy(format!(
                    "find out which copy is the VM's, and remove the other from {dst}"
                )),
            );
        } else if self.vm_instances(dst).await?.iter().any(|v| {
            v.get_str("ElementName")
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        }) {
            found.warn(Finding::new(
                "name_taken",
                FindingScope::Destination,
                format!("{dst} already has a VM named {name} (another id): both will be named so"),
            ));
        }
        let planned = self
            .query(
                dst,
                V2,
                &format!(
                    "SELECT * FROM Msvm_PlannedComputerSystem WHERE Name={}",
                    wql_str(guid)
                ),
            )
            .await?;
        if !planned.is_empty() {
            found.warn(Finding::new(
                "planned_vm_left",
                FindingScope::Destination,
                format!("{dst} holds a planned VM of {name} left by a failed attempt: the move removes it first, as Move-VM does"),
            ));
        }

        // Where the files go: the layout applies, no target exists, the volumes have room.
        let layout = self.move_layout(req).await?;
        if let Some(shared) = layout.shared_vhd() {
            found.block(
                Finding::new(
                    "shared_disk",
                    FindingScope::Vm,
                    format!("{name} uses the shared virtual hard disk {shared}"),
                )
                .remedy("detach the shared disk, or move the guest cluster another way"),
            );
        }
        match &layout.plan {
            Err(e) => found.block(
                Finding::new(
                    "layout_invalid",
                    FindingScope::Destination,
                    format!("{name}: {e}"),
                )
                .remedy("choose a destination path on a volume the destination has"),
            ),
            Ok(_) => {
                let mut own: Option<Vec<String>> = None;
                for t in layout.targets() {
                    if self.file_size(dst, &t).await?.is_none() {
                        continue;
                    }
                    // The VM's own attempt records on the destination name the paths its
                    // earlier attempts copied to (docs/drivers/hyperv.md, attempt records).
                    if own.is_none() {
                        own = Some(self.own_record(req).await?.disks);
                    }
                    let ours = own
                        .as_ref()
                        .is_some_and(|d| d.iter().any(|p| p.eq_ignore_ascii_case(&t)));
                    if ours {
                        // A partial copy an earlier attempt left: the start is refused, and the
                        // clean-up after it removes the copy.
                        found.warn(Finding::new(
                            Finding::LEFTOVER,
                            FindingScope::Destination,
                            format!("{t} on {dst} is a partial copy an earlier attempt of {name} left (its attempt record proves it): the start's clean-up removes it"),
                        ));
                    } else {
                        // Someone else's file, which a person may free: may pass.
                        found.block(
                            Finding::new(
                                Finding::PATH_TAKEN,
                                FindingScope::Destination,
                                format!("{t} already exists on {dst}"),
                            )
                            .remedy("remove or rename that file on the destination, or choose another destination path")
                            .may_pass(),
                        );
                    }
                }
                // Room per destination volume for every disk that moves (each chain's links).
                let mut need: BTreeMap<String, u64> = BTreeMap::new();
                for p in prepare::distinct_paths(&layout.sasds) {
                    if let Some(t) = layout.target_of(&p) {
                        let size = self.file_size(src, &p).await?.unwrap_or(0);
                        let vol = t.get(..2).unwrap_or("").to_ascii_uppercase();
                        *need.entry(vol).or_default() += size;
                    }
                }
                let free: BTreeMap<String, u64> = self
                    .volumes(dst)
                    .await?
                    .iter()
                    .filter_map(|v| {
                        Some((
                            v.get_str("DeviceID")?.to_ascii_uppercase(),
                            v.get_u64("FreeSpace")?,
                        ))
                    })
                    .collect();
                for (vol, bytes) in need {
                    if let Some(f) = free.get(&vol) {
                        if bytes > *f {
                            found.block(
                                Finding::new(
                                    "disk_space",
                                    FindingScope::Destination,
                                    format!("{name}'s disks need {bytes} bytes on {vol} of {dst}, which has {f} free"),
                                )
                                .remedy("free space on the destination volume, or choose another destination or path")
                                .may_pass(),
                            );
                        }
                    }
                }
            }
        }

        // Memory: a running VM needs its memory on the destination during a live move.
        if running {
            let mem = self
                .memory_map(src, Some(guid))
                .await?
                .values()
                .next()
                .copied()
                .unwrap_or(0);
            let free = self.read_host_info(dst).await?.free_memory_bytes;
            if mem > free {
                found.block(
                    Finding::new(
                        "memory",
                        FindingScope::Destination,
                        format!("{name} runs with {mem} bytes of memory; {dst} has {free} free"),
                    )
                    .remedy("free memory on the destination, move the VM shut down, or choose another destination")
                    .may_pass(),
                );
            }
        }

        // DVD and floppy images keep their paths: the destination must have them.
        for s in self
            .entries_of(src, "Msvm_StorageAllocationSettingData", guid)
            .await?
        {
            let subtype = s.get_str("ResourceSubType").unwrap_or_default();
            if subtype.eq_ignore_ascii_case(VHD_SUBTYPE) {
                continue;
            }
            for p in s.get_array("HostResource") {
                if p.trim().is_empty() {
                    continue;
                }
                if p.starts_with("\\\\") {
                    found.warn(Finding::new(
                        "image_on_share",
                        FindingScope::Destination,
                        format!("{name} has the image {p} from a share: {dst} must be allowed to read it"),
                    ));
                } else if self.file_size(dst, &p).await?.is_none() {
                    found.block(
                        Finding::new(
                            "image_missing",
                            FindingScope::Destination,
                            format!("{name} has the image {p} attached, which {dst} does not have"),
                        )
                        .remedy(format!("copy {p} to {dst} at the same path, or eject it (Set-VMDvdDrive -Path $null)")),
                    );
                }
            }
        }

        // Pass-through (physical) disks cannot be copied.
        for r in self
            .entries_of(src, "Msvm_ResourceAllocationSettingData", guid)
            .await?
        {
            let physical = r.get_u32("ResourceType") == Some(17)
                && r.get_str("ResourceSubType").is_some_and(|t| {
                    t.eq_ignore_ascii_case("Microsoft:Hyper-V:Physical Disk Drive")
                });
            if physical {
                found.block(
                    Finding::new(
                        "passthrough_disk",
                        FindingScope::Vm,
                        format!("{name} has a pass-through (physical) disk attached, which cannot be copied"),
                    )
                    .remedy("convert the disk to a virtual hard disk, or detach it (Remove-VMHardDiskDrive)"),
                );
                break;
            }
        }

        // Switches: each connected adapter's switch, by name, on the destination.
        let ports = self
            .entries_of(src, "Msvm_EthernetPortAllocationSettingData", guid)
            .await?;
        if !ports.is_empty() {
            let by_guid = |list: &[CimInstance]| -> BTreeMap<String, String> {
                list.iter()
                    .filter_map(|s| {
                        Some((
                            s.get_str("Name")?.to_ascii_uppercase(),
                            s.get_str("ElementName")?,
                        ))
                    })
                    .collect()
            };
            let src_switches = by_guid(
                &self
                    .query(src, V2, "SELECT * FROM Msvm_VirtualEthernetSwitch")
                    .await?,
            );
            let dst_names: Vec<String> = by_guid(
                &self
                    .query(dst, V2, "SELECT * FROM Msvm_VirtualEthernetSwitch")
                    .await?,
            )
            .into_values()
            .collect();
            let mut missing: Vec<String> = Vec::new();
            for p in &ports {
                for hr in p.get_array("HostResource") {
                    let Some(sw) = switch_name_in_path(&hr)
                        .and_then(|g| src_switches.get(&g.to_ascii_uppercase()).cloned())
                    else {
                        continue;
                    };
                    if !dst_names.iter().any(|d| d.eq_ignore_ascii_case(&sw))
                        && !missing.contains(&sw)
                    {
                        missing.push(sw);
                    }
                }
            }
            for sw in missing {
                found.block(
                    Finding::new(
                        "switch_missing",
                        FindingScope::Destination,
                        format!("{name} is connected to the virtual switch '{sw}', which {dst} does not have"),
                    )
                    .remedy(format!("create a switch named '{sw}' on {dst} (New-VMSwitch), or connect the adapter to a switch both hosts have")),
                );
            }
        }

        // Configuration version: the destination must run it.
        let version = layout.vssd.get_str("Version").unwrap_or_default();
        let build = self
            .query(dst, CIMV2, "SELECT * FROM Win32_OperatingSystem")
            .await?
            .first()
            .and_then(|o| o.get_str("BuildNumber"))
            .and_then(|b| b.trim().parse::<u32>().ok());
        match (parse_version(&version), build) {
            (Some(v), Some(b)) if v > max_config_version(b) => {
                let (mj, mn) = max_config_version(b);
                found.block(
                    Finding::new(
                        "config_version",
                        FindingScope::Destination,
                        format!("{name} has configuration version {version}; {dst} (Windows build {b}) runs versions up to {mj}.{mn}"),
                    )
                    .remedy("choose a destination on a newer Windows release (a configuration version cannot be lowered)"),
                );
            }
            (Some(_), Some(_)) => {}
            _ => found.warn(Finding::new(
                "config_version_unknown",
                FindingScope::Destination,
                format!("the configuration version of {name} ({version:?}) or the Windows build of {dst} could not be read"),
            )),
        }

        // Processor: a running VM keeps its processor features across a live move.
        if running {
            let (sv, sn) = self.processor(src).await?;
            let (dv, dn) = self.processor(dst).await?;
            let limited = self
                .entries_of(src, "Msvm_ProcessorSettingData", guid)
                .await?
                .first()
                .and_then(|p| p.get_bool("LimitProcessorFeatures"))
                .unwrap_or(false);
            if !sv.is_empty() && !dv.is_empty() && !sv.eq_ignore_ascii_case(&dv) {
                found.block(
                    Finding::new(
                        "cpu_vendor",
                        FindingScope::Destination,
                        format!("{src} has {sv} processors, {dst} {dv}: a running VM cannot move between processor vendors"),
                    )
                    .remedy("move the VM shut down, or choose a destination with the same processor vendor"),
                );
            } else if sn != dn && !limited {
                found.warn(
                    Finding::new(
                        "cpu_compatibility",
                        FindingScope::Destination,
                        format!("{src} and {dst} have different processors ({sn} / {dn}) and {name} does not limit its processor features: the live move fails if {dst} lacks one it uses"),
                    )
                    .remedy(format!("shut {name} down and run Set-VMProcessor -CompatibilityForMigrationEnabled $true")),
                );
            }
        }

        // The host's own answer, with the move's very parameters. Not while a target holds
        // the VM's own partial copy (`leftover`): the host would refuse for that copy, which
        // the refused start's clean-up removes; the attempt after it is checked again.
        let own_copy = found.warnings.iter().any(|w| w.code == Finding::LEFTOVER);
        if found.blockers.is_empty() && !own_copy {
            let (svc_epr, params) = self.move_params(req, &layout, &dest_addresses).await?;
            match self.ask_migratable(req, &svc_epr, &params).await {
                Ok(()) => {}
                Err(e) if e.class == ErrorClass::Transient => return Err(e),
                Err(e) => found.block(
                    Finding::new(
                        "not_migratable",
                        FindingScope::Destination,
                        format!("{src} says {name} cannot move to {dst}: {}", e.message),
                    )
                    .remedy(format!("run Compare-VM -Name '{name}' -DestinationHost <{dst}> on {src}: it lists the host's reasons")),
                ),
            }
        }
        Ok(found)
    }

    /// `Driver::preflight_host`: the host answers (reachable, the credentials accepted), its
    /// migration service takes migrations on some network, and how it authenticates them.
    pub(crate) async fn check_host(&self, host: &HostId) -> DriverResult<Preflight> {
        self.host(host)?;
        let mut found = Preflight::default();
        if let Err(e) = self.read_host_info(host).await {
            let (code, remedy) = if e.message.to_lowercase().contains("unauthorized")
                || e.message.contains("401")
            {
                (
                    "host_auth_failed",
                    "check the account and password (or Kerberos settings) configured for the host",
                )
            } else {
                (
                    "host_unreachable",
                    "check the host's address, that WinRM listens (winrm quickconfig) and the firewall",
                )
            };
            found.block(
                Finding::new(
                    code,
                    FindingScope::Host,
                    format!("{host} did not answer: {e}"),
                )
                .remedy(remedy),
            );
            return Ok(found);
        }
        let settings = self.migration_settings(host).await?;
        if !settings.enabled {
            found.block(
                Finding::new(
                    "migration_disabled",
                    FindingScope::Host,
                    format!(
                        "{host} does not take VM migrations (EnableVirtualSystemMigration is false)"
                    ),
                )
                .remedy(format!("run Enable-VMMigration on {host}")),
            );
        } else if self
            .service(host)
            .await?
            .get_array("MigrationServiceListenerIPAddressList")
            .iter()
            .all(|a| a.trim().is_empty())
        {
            found.block(
                Finding::new(
                    "no_migration_network",
                    FindingScope::Host,
                    format!("{host} listens for migrations on no network"),
                )
                .remedy(format!("run Add-VMMigrationNetwork on {host}")),
            );
        }
        if settings.auth == Some(AUTH_CREDSSP) {
            found.warn(
                Finding::new(
                    "credssp_needs_local_session",
                    FindingScope::Host,
                    format!("{host} authenticates migrations with CredSSP: moves from it fail when asked remotely"),
                )
                .remedy("use Kerberos with constrained delegation (Set-VMHost -VirtualMachineMigrationAuthenticationType Kerberos)"),
            );
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_versions_parse_and_compare_by_number() {
        assert_eq!(parse_version("9.0"), Some((9, 0)));
        assert_eq!(parse_version(" 10.0 "), Some((10, 0)));
        assert_eq!(parse_version("12"), None);
        assert_eq!(parse_version("a.b"), None);
        // 10.0 is newer than 9.3 (a string comparison says otherwise).
        assert!(parse_version("10.0") > parse_version("9.3"));
    }

    #[test]
    fn a_host_runs_the_versions_of_its_release_row() {
        assert_eq!(max_config_version(20348), (10, 0));
        assert_eq!(max_config_version(17763), (9, 0));
        assert_eq!(max_config_version(14393), (8, 0));
        assert_eq!(max_config_version(26100), (12, 0));
        // Between two rows: the lower one.
        assert_eq!(max_config_version(19045), (9, 0));
        assert_eq!(max_config_version(0), (4, 0));
    }

    #[test]
    fn the_switch_is_read_from_the_port_s_host_resource() {
        let p = "\\\\HV1\\root\\virtualization\\v2:Msvm_VirtualEthernetSwitch.CreationClassName=\"Msvm_VirtualEthernetSwitch\",Name=\"AB-CD\"";
        assert_eq!(switch_name_in_path(p).as_deref(), Some("AB-CD"));
        assert_eq!(
            switch_name_in_path("\\\\HV1\\root:Msvm_DiskDrive.Name=\"x\""),
            None
        );
        assert_eq!(
            switch_name_in_path("Msvm_VirtualEthernetSwitch.Name=\"unterminated"),
            None
        );
    }
}
