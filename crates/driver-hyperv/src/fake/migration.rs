//! The migration service's `MigrateVirtualSystemToHost` and
//! `CheckVirtualSystemIsMigratableToHost`, and the management service's `DestroySystem`, as
//! strictly as a host takes them.
//!
//! - Every embedded instance is checked against the schema ([`super::schema`]): a wrongly typed
//!   or formatted property fails the job (ErrorCode 32768, JobState 10) or, for the synchronous
//!   check, answers 32773.
//! - Each `NewResourceSettingData` must name (by `InstanceID`) a storage entry of the VM: one of
//!   its disks, its drive images, or its checkpoints' disks. What it names moves to its
//!   `HostResource` (copied, and removed from the source: `RetainVhdCopiesOnSource` is false);
//!   the current configuration's disks not named move to the same path on the destination;
//!   a checkpoint's disks and drive images not named are NOT moved ("VHDs that are referenced
//!   only in a snapshot and not in the current configuration will not be moved":
//!   microsoft/Windows-classic-samples Samples/Hyper-V/Migration/cs/VmAndStorageMigration.cs).
//! - The check judges the destination with the settings it is given (without new paths, the
//!   source's paths): a target that exists or a volume the destination lacks makes the VM not
//!   migratable (the parameters are the move's: checkvirtualsystemismigratabletohost-msvm-
//!   virtualsystemmigrationservice.md; Windows-classic-samples MigrationCommon.cs
//!   `CheckMigratability` passes the move's `NewSystemSettingData` and `NewResourceSettingData`).
//! - A destination whose migration service is disabled (`EnableVirtualSystemMigration` false),
//!   an address in `DestinationIPAddressList` it does not listen on, or a planned VM of the same
//!   GUID on it (left by a failed attempt) fail the job and make the check say no
//!   (Windows-classic-samples MigrationCommon.cs `GetMigrationDestinationListenAddresses`; os-win
//!   `livemigrationutils.py` `check_live_migration_config`, `_get_ip_address_list`,
//!   `destroy_existing_planned_vm`).

use super::model::{self, FakePlanned};
use super::schema;
use super::world::{FakeJob, Fault, NS_V2, Output, World, key};
use crate::cim::{CimInstance, CimValue, Epr, class_uri};
use crate::xml::Element;

fn invalid(reason: impl Into<String>) -> Fault {
    Fault {
        subcode: "w:InvalidParameter".into(),
        code: 2_150_858_778,
        reason: reason.into(),
    }
}

fn not_found(reason: impl Into<String>) -> Fault {
    Fault {
        subcode: "w:InvalidSelectors".into(),
        code: 2_150_858_843,
        reason: reason.into(),
    }
}

fn rv(v: u32) -> Output {
    vec![("ReturnValue".into(), CimValue::U32(v))]
}

/// The move a call asks for, as the host reads it.
struct Asked {
    guid: String,
    dest: Option<String>,
    msd: Option<CimInstance>,
    new_root: Option<String>,
    /// (old path, new path) of each storage entry that moves.
    moves: Vec<(String, String)>,
    /// Why the host rejects the parameters themselves (schema, a resource not of the VM).
    rejected: Option<String>,
}

impl World {
    fn read_migration_params(
        &mut self,
        hk: &str,
        method: &str,
        params: &Element,
    ) -> Result<Asked, Fault> {
        let vm_ref = params
            .child("ComputerSystem")
            .and_then(Epr::from_element)
            .ok_or_else(|| invalid("ComputerSystem missing"))?;
        let guid = vm_ref.selector("Name").unwrap_or("").to_owned();
        let dest_name = params
            .child("DestinationHost")
            .map(|e| e.text.clone())
            .unwrap_or_default();
        let mut recorded = vec![("DestinationHost".to_owned(), dest_name.clone())];
        let mut rejected: Option<String> = None;
        let mut msd = None;
        let mut vssd = None;
        let mut rasds = Vec::new();
        for (pname, classes) in [
            (
                "MigrationSettingData",
                "Msvm_VirtualSystemMigrationSettingData",
            ),
            ("NewSystemSettingData", "Msvm_VirtualSystemSettingData"),
            (
                "NewResourceSettingData",
                "Msvm_StorageAllocationSettingData",
            ),
        ] {
            for e in params.children_named(pname) {
                self.calls.embedded.push(e.text.clone());
                recorded.push((pname.to_owned(), e.text.clone()));
                if e.text.trim().is_empty() {
                    continue;
                }
                match schema::check_embedded(&e.text, &[classes]) {
                    Ok(i) => match pname {
                        "MigrationSettingData" => msd = Some(i),
                        "NewSystemSettingData" => vssd = Some(i),
                        _ => rasds.push(i),
                    },
                    Err(why) => {
                        rejected.get_or_insert(format!("{pname}: {why}"));
                    }
                }
            }
        }
        self.calls
            .migration_params
            .push((hk.to_owned(), method.to_owned(), recorded));
        let dest = self.host_key_by_name(&dest_name);
        let vm = self.hosts.get(hk).and_then(|h| h.vms.get(&guid)).cloned();
        let entries = vm
            .as_ref()
            .map(model::paths_by_instance_id)
            .unwrap_or_default();
        let mut moves: Vec<(String, String)> = Vec::new();
        for r in &rasds {
            let iid = r.get_str("InstanceID").unwrap_or_default();
            match entries.iter().find(|(i, _)| *i == iid) {
                Some((_, old)) => {
                    let new = r
                        .get_array("HostResource")
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| old.clone());
                    if !moves.iter().any(|(o, _)| key(o) == key(old)) {
                        moves.push((old.clone(), new));
                    }
                }
                None => {
                    rejected.get_or_insert(format!(
                        "NewResourceSettingData names {iid:?}, not a storage entry of VM {guid}"
                    ));
                }
            }
        }
        // The current configuration's disks not named move to the same path.
        if let Some(vm) = &vm {
            for d in &vm.disks {
                if !moves.iter().any(|(o, _)| key(o) == key(d)) {
                    moves.push((d.clone(), d.clone()));
                }
            }
        }
        Ok(Asked {
            guid,
            dest,
            msd,
            new_root: vssd.and_then(|v| v.get_str("ConfigurationDataRoot")),
            moves,
            rejected,
        })
    }

    /// Why the destination cannot take the move as asked, if it cannot.
    fn destination_problem(&self, hk: &str, a: &Asked) -> Option<String> {
        let Some(dk) = a.dest.as_deref() else {
            return Some("the destination host is unknown".into());
        };
        if dk == hk {
            return Some("the destination is the source".into());
        }
        let dst = &self.hosts[dk];
        if !dst.migration_enabled {
            return Some(format!(
                "The virtual machine migration service on '{}' does not accept incoming migrations (EnableVirtualSystemMigration is false).",
                dst.computer_name
            ));
        }
        if let Some(m) = &a.msd {
            for addr in m.get_array("DestinationIPAddressList") {
                if !dst.listener_ips.iter().any(|l| l == &addr) {
                    return Some(format!(
                        "Failed to connect to the migration service of '{}' at {addr}: it does not listen there.",
                        dst.computer_name
                    ));
                }
            }
        }
        if let Some(p) = self.vm_problem(hk, dk, a) {
            return Some(p);
        }
        if dst.planned.contains_key(&a.guid) {
            return Some(format!(
                "A planned virtual machine with the identifier {} already exists on '{}'.",
                a.guid, dst.computer_name
            ));
        }
        for (_, new) in &a.moves {
            if dst.files.contains_key(&key(new)) {
                return Some(format!(
                    "The file '{new}' already exists on the destination."
                ));
            }
            if new.get(..2).is_none_or(|v| !dst.volume_exists(v)) {
                return Some(format!(
                    "The volume of '{new}' does not exist on the destination."
                ));
            }
        }
        None
    }

    /// Why this VM cannot run on the destination or cannot be sent there, if it cannot (the
    /// checks `Compare-VM` reports as incompatibilities and a host fails the move for). Each
    /// message is the fake's, worded after what real hosts say:
    /// - the source's migration authentication is CredSSP and the call did not come from a
    ///   session on the source: event 20306 "...failed to establish a connection for a
    ///   Virtual Machine migration with host '<dst>': No credentials are available in the
    ///   security package (0x8009030E)" (Microsoft Learn, "Set up hosts for live migration
    ///   without Failover Clustering": CredSSP needs a sign-in on the source; the fake is only
    ///   reached remotely);
    /// - a network adapter connected to a switch the destination has no switch of that name
    ///   for: "Could not find Ethernet switch '<name>'." (Compare-VM's incompatibility 33012,
    ///   Microsoft Learn Compare-VM);
    /// - a configuration version newer than the destination's Windows build runs (Microsoft
    ///   Learn, "Supported virtual machine configuration versions");
    /// - a pass-through disk: Hyper-V moves a VM's storage only when it is in virtual hard
    ///   disks; a physical disk cannot be copied (Microsoft Learn, "Virtual Machine Live
    ///   Migration Overview": storage migration moves virtual hard disks);
    /// - a running VM and hosts of different processor vendors (processor compatibility mode
    ///   covers one vendor's generations only: Microsoft Learn, "Processor compatibility mode
    ///   in Hyper-V").
    fn vm_problem(&self, hk: &str, dk: &str, a: &Asked) -> Option<String> {
        let (src, dst) = (&self.hosts[hk], &self.hosts[dk]);
        let vm = src.vms.get(&a.guid)?;
        if src.migration_auth == 0 {
            return Some(format!(
                "The Virtual Machine Management Service failed to establish a connection for a Virtual Machine migration with host '{}': No credentials are available in the security package (0x8009030E).",
                dst.computer_name
            ));
        }
        for sw in &vm.nics {
            if !dst.switches.iter().any(|d| d.eq_ignore_ascii_case(sw)) {
                return Some(format!("Could not find Ethernet switch '{sw}'."));
            }
        }
        let version = if vm.version.is_empty() {
            "9.0"
        } else {
            &vm.version
        };
        let max = crate::preflight::max_config_version(dst.os_build);
        if crate::preflight::parse_version(version).is_some_and(|v| v > max) {
            return Some(format!(
                "The virtual machine '{}' has configuration version {version}, which is not supported on '{}'.",
                vm.name, dst.computer_name
            ));
        }
        if !vm.passthrough_disks.is_empty() {
            return Some(format!(
                "The virtual machine '{}' cannot be migrated because it is attached to a physical disk.",
                vm.name
            ));
        }
        if vm.enabled_state == 2 && !src.cpu_vendor.eq_ignore_ascii_case(&dst.cpu_vendor) {
            return Some(format!(
                "The virtual machine '{}' is using processor-specific features not supported on physical computer '{}'.",
                vm.name, dst.computer_name
            ));
        }
        None
    }

    /// `MigrateVirtualSystemToHost` / `CheckVirtualSystemIsMigratableToHost`.
    pub(crate) fn migration_call(
        &mut self,
        hk: &str,
        method: &str,
        selectors: &[(String, String)],
        params: &Element,
    ) -> Result<Output, Fault> {
        let sel = |n: &str| {
            selectors
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let h = self.hosts.get(hk).ok_or_else(|| invalid("unknown host"))?;
        if !sel("SystemName").is_some_and(|n| n.eq_ignore_ascii_case(&h.computer_name))
            || sel("Name").as_deref() != Some("migrationwmi")
        {
            return Err(not_found(
                "The migration service selectors do not match this host",
            ));
        }
        let a = self.read_migration_params(hk, method, params)?;
        let guid = a.guid.clone();
        if method == "CheckVirtualSystemIsMigratableToHost" {
            if a.rejected.is_some() {
                return Ok(rv(32773));
            }
            let ok = self.destination_problem(hk, &a).is_none()
                && self.hosts[hk].vms.contains_key(&guid)
                && !self.faults.unmigratable.contains(&guid);
            return Ok(vec![
                ("IsMigratable".into(), CimValue::Bool(ok)),
                ("ReturnValue".into(), CimValue::U32(0)),
            ]);
        }
        if let Some(v) = self
            .faults
            .migrate_return
            .get_mut(&guid)
            .and_then(|q| q.pop_front())
        {
            return Ok(rv(v));
        }
        let Some(dest) = a.dest.clone() else {
            return Ok(rv(32773));
        };
        if dest == hk {
            return Ok(rv(32773));
        }
        let Some(vm) = self.hosts[hk].vms.get(&guid).cloned() else {
            return Ok(rv(32773));
        };
        let busy = self.hosts[hk]
            .jobs
            .values()
            .any(|j| matches!(j.state, 2..=6) && j.vm == guid);
        if busy || vm.op_status.first() != Some(&2) {
            return Ok(rv(32775));
        }
        if a.msd.as_ref().and_then(|m| m.get_u32("MigrationType")) != Some(32771)
            && a.rejected.is_none()
        {
            return Ok(rv(32773));
        }
        let mut error = a
            .rejected
            .clone()
            .map(|w| format!("The embedded parameters were rejected (ErrorCode 32768): {w}"));
        let mut fail_at_end = error.is_some();
        if error.is_none() {
            if let Some(p) = self.destination_problem(hk, &a) {
                fail_at_end = true;
                error = Some(p);
            }
        }
        let mut leaves_copies = false;
        if let Some(c) = self.faults.job_exception.get_mut(&guid) {
            if *c > 0 {
                *c -= 1;
                leaves_copies = !fail_at_end && self.faults.failure_leaves_copies.contains(&guid);
                fail_at_end = true;
            }
        }
        let id = format!("{:08X}-JOB-{}", self.next_id(), guid);
        let job = FakeJob {
            id: id.clone(),
            vm: guid.clone(),
            source: hk.to_owned(),
            destination: dest,
            live: vm.enabled_state == 2,
            new_root: a.new_root.clone(),
            disk_moves: a.moves.clone(),
            state: 3,
            percent: 0,
            start_ms: self.now_ms,
            duration_ms: self.migration_ms,
            error,
            fail_at_end,
            leaves_copies,
        };
        if let Some(h) = self.hosts.get_mut(hk) {
            h.jobs.insert(id.clone(), job);
        }
        self.tick();
        Ok(vec![
            (
                "Job".into(),
                CimValue::Ref(Epr::new(
                    class_uri(NS_V2, "Msvm_MigrationJob"),
                    vec![("InstanceID".into(), id)],
                )),
            ),
            ("ReturnValue".into(), CimValue::U32(4096)),
        ])
    }

    /// `Msvm_VirtualSystemManagementService.DestroySystem(AffectedSystem)`
    /// (destroysystem-msvm-virtualsystemmanagementservice.md): removes a planned VM (0). The fake
    /// never destroys a realized VM: it answers 32775 (invalid state) and records the call, so a
    /// test can prove the driver never asks for it.
    pub(crate) fn destroy_system(
        &mut self,
        hk: &str,
        selectors: &[(String, String)],
        params: &Element,
    ) -> Result<Output, Fault> {
        let h = self
            .hosts
            .get_mut(hk)
            .ok_or_else(|| invalid("unknown host"))?;
        let sys = selectors
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("SystemName"))
            .map(|(_, v)| v.clone());
        if !sys.is_some_and(|n| n.eq_ignore_ascii_case(&h.computer_name)) {
            return Err(not_found(
                "The management service selectors do not match this host",
            ));
        }
        let r = params
            .child("AffectedSystem")
            .and_then(Epr::from_element)
            .ok_or_else(|| invalid("AffectedSystem missing"))?;
        let class = r.class_name().to_owned();
        let name = r.selector("Name").unwrap_or("").to_owned();
        self.calls
            .destroyed
            .push((hk.to_owned(), class.clone(), name.clone()));
        match class.as_str() {
            "Msvm_PlannedComputerSystem" => match h.planned.remove(&name) {
                Some(FakePlanned { .. }) => Ok(rv(0)),
                None => Err(not_found(format!("No planned system {name}"))),
            },
            _ => Ok(rv(32775)),
        }
    }
}
