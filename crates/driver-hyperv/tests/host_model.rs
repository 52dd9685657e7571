//! What vmove SENDS to a Hyper-V host and what it FINDS there, against the strict fake (each
//! behaviour's source is cited in `src/fake/schema.rs`, `src/fake/model.rs` and
//! `src/fake/migration.rs`): minimal, typed embedded instances; VMs and the host found in any
//! locale; only virtual hard disks moved (an ISO keeps its path); checkpoint chains moved with
//! the VM; the migratability check asked with the move's own settings; the destination's
//! migration addresses and full name, and a clear refusal when it takes no migrations; a planned
//! VM left by a failed attempt removed before the retry.
#![allow(clippy::unwrap_used)]

use crate::common;

use vmove_driver::*;
use vmove_driver_hyperv::fake::model::{SUBTYPE_DVD, SUBTYPE_FLOPPY};
use vmove_driver_hyperv::fake::schema;
use vmove_driver_hyperv::fake::world::key;
use vmove_driver_hyperv::fake::{FakeHyperV, Locale, World};

fn req(vm: &str, name: &str, from: &str, to: &str, attempt: u32) -> MigrationRequest {
    MigrationRequest {
        vm: VmId::new(vm),
        vm_name: name.into(),
        source: HostId::new(from),
        destination: HostId::new(to),
        mode: MigrationMode::Live,
        layout: PathLayout {
            base: Some("E:\\Moved".into()),
            put_in_subfolder: true,
            preserve_drive_letter: false,
        },
        attempt,
        run_id: "model".into(),
    }
}

fn file_exists(fake: &FakeHyperV, host: &str, path: &str) -> bool {
    fake.with(|w| w.hosts[host].files.contains_key(&key(path)))
}

/// Moves `r` to its end; the end.
async fn move_to_end(
    fake: &FakeHyperV,
    d: &vmove_driver_hyperv::HyperVDriver,
    r: &MigrationRequest,
) -> MigrationStatus {
    let h = d.start_migration(r).await.unwrap();
    common::run_to_end(fake, d, r, &h).await
}

/// Every embedded instance the fake received, as (parameter, CIM-XML), of `method` calls.
fn sent(fake: &FakeHyperV, method: &str) -> Vec<Vec<(String, String)>> {
    fake.with(|w| {
        w.calls
            .migration_params
            .iter()
            .filter(|(_, m, _)| m == method)
            .map(|(_, _, p)| p.clone())
            .collect()
    })
}

fn property_names(xml: &str) -> Vec<String> {
    let root = vmove_driver_hyperv::xml::parse(xml).unwrap();
    root.children
        .iter()
        .filter_map(|c| c.attr("NAME").map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn embedded_instances_are_minimal_typed_and_accepted_by_a_strict_host() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "web", true, 512, &[10, 20], "E:\\VMs\\web");
    let (fake, d) = common::start(w).await;
    let r = req(&g, "web", "hv1", "hv2", 1);
    assert_eq!(move_to_end(&fake, &d, &r).await, MigrationStatus::Completed);
    let calls = sent(&fake, "MigrateVirtualSystemToHost");
    assert_eq!(calls.len(), 1);
    let mut seen = 0;
    for (param, xml) in &calls[0] {
        let (class, allowed): (&str, &[&str]) = match param.as_str() {
            "MigrationSettingData" => (
                "Msvm_VirtualSystemMigrationSettingData",
                &["MigrationType", "TransportType", "DestinationIPAddressList"],
            ),
            "NewSystemSettingData" => (
                "Msvm_VirtualSystemSettingData",
                &[
                    "InstanceID",
                    "ConfigurationDataRoot",
                    "SnapshotDataRoot",
                    "SwapFileDataRoot",
                ],
            ),
            "NewResourceSettingData" => (
                "Msvm_StorageAllocationSettingData",
                &["InstanceID", "HostResource", "PoolID"],
            ),
            _ => continue,
        };
        seen += 1;
        // Typed as the class reference types it, values valid for their types.
        schema::check_embedded(xml, &[class]).unwrap();
        // Only the identity and what the move sets.
        for n in property_names(xml) {
            assert!(allowed.contains(&n.as_str()), "{param} sends {n}: {xml}");
        }
        // Nothing in the form WinRM returns datetimes in.
        assert!(!xml.contains("2026-01-01T"), "{xml}");
    }
    assert_eq!(seen, 4, "one setting data, one system settings, two disks");
    assert!(
        fake.with(|w| w.hosts["hv2"].vms.contains_key(&g)),
        "the VM arrived"
    );
}

#[tokio::test]
async fn vms_and_the_host_are_found_whatever_the_hosts_language() {
    for locale in [Locale::Swedish, Locale::Japanese] {
        let mut w = common::world();
        w.set_locale(locale);
        let a = w.add_vm("hv1", "web", true, 512, &[10], "E:\\VMs\\web");
        let b = w.add_vm("hv1", "db", false, 256, &[5], "E:\\VMs\\db");
        let (fake, d) = common::start(w).await;
        let hv1 = HostId::new("hv1");
        let mut ids: Vec<String> = d
            .list_vms(&hv1)
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.id.as_str().to_owned())
            .collect();
        ids.sort();
        let mut want = vec![a.clone(), b.clone()];
        want.sort();
        assert_eq!(ids, want, "{locale:?}: the VMs, and not the host");
        assert!(
            d.footprint(&hv1, &VmId::new(&a)).await.is_ok(),
            "{locale:?}"
        );
        // hv1's computer name is looked up (not configured): a move back from hv2 needs it,
        // and a move from hv1 needs hv1's migration service.
        let r = req(&a, "web", "hv1", "hv2", 1);
        assert_eq!(
            move_to_end(&fake, &d, &r).await,
            MigrationStatus::Completed,
            "{locale:?}"
        );
        let v = d.verify(&r).await.unwrap();
        assert!(v.is_proof(), "{locale:?}: {v:?}");
        let back = req(&a, "web", "hv2", "hv1", 2);
        assert_eq!(
            move_to_end(&fake, &d, &back).await,
            MigrationStatus::Completed,
            "{locale:?}"
        );
    }
}

#[tokio::test]
async fn only_virtual_hard_disks_get_new_paths_an_iso_keeps_its_path() {
    const ISO: &str = "E:\\ISO\\install.iso";
    const VFD: &str = "E:\\ISO\\drivers.vfd";
    let mut w = common::world();
    let g = w.add_vm("hv1", "web", true, 512, &[10], "E:\\VMs\\web");
    w.add_drive("hv1", &g, SUBTYPE_DVD, ISO);
    w.add_drive("hv1", &g, SUBTYPE_FLOPPY, VFD);
    // The destination has the same library (a pre-flight check of that is a later issue).
    w.hosts.get_mut("hv2").unwrap().write_file(ISO, 700 << 20);
    let (fake, d) = common::start(w).await;
    let hv1 = HostId::new("hv1");
    let fp = d.footprint(&hv1, &VmId::new(&g)).await.unwrap();
    assert_eq!(
        fp.disks.iter().map(|x| x.path.as_str()).collect::<Vec<_>>(),
        ["E:\\VMs\\web\\Virtual Hard Disks\\web_0.vhdx"],
        "images are not disks"
    );
    let r = req(&g, "web", "hv1", "hv2", 1);
    assert_eq!(move_to_end(&fake, &d, &r).await, MigrationStatus::Completed);
    let calls = sent(&fake, "MigrateVirtualSystemToHost");
    let rasds: Vec<&String> = calls[0]
        .iter()
        .filter(|(p, _)| p == "NewResourceSettingData")
        .map(|(_, x)| x)
        .collect();
    assert_eq!(rasds.len(), 1, "one hard disk, no image: {rasds:?}");
    // The shared images stay where they were on the source, and the moved VM still names them.
    assert!(file_exists(&fake, "hv1", ISO), "the ISO library stays");
    assert!(file_exists(&fake, "hv1", VFD));
    let drives = fake.with(|w| w.hosts["hv2"].vms[&g].drives.clone());
    assert_eq!(
        drives.iter().map(|x| x.path.as_str()).collect::<Vec<_>>(),
        [ISO, VFD]
    );
    assert!(!file_exists(
        &fake,
        "hv2",
        "E:\\Moved\\web\\Virtual Hard Disks\\install.iso"
    ));
}

#[tokio::test]
async fn checkpoint_chains_move_with_the_vm_recovery_checkpoints_too() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "web", true, 512, &[10, 20], "E:\\VMs\\web");
    w.add_checkpoint("hv1", &g, "before patch", false);
    w.add_checkpoint("hv1", &g, "backup", true);
    let all_before: Vec<String> = {
        let vm = &w.hosts["hv1"].vms[&g];
        let mut v = vm.disks.clone();
        for c in &vm.checkpoints {
            v.extend(c.disks.clone());
        }
        v
    };
    assert_eq!(all_before.len(), 6, "two chains of three links");
    let (fake, d) = common::start(w).await;
    let r = req(&g, "web", "hv1", "hv2", 1);
    assert_eq!(move_to_end(&fake, &d, &r).await, MigrationStatus::Completed);
    let vm = fake.with(|w| w.hosts["hv2"].vms[&g].clone());
    let mut all_after = vm.disks.clone();
    for c in &vm.checkpoints {
        all_after.extend(c.disks.clone());
    }
    for p in &all_after {
        assert!(
            p.starts_with("E:\\Moved\\web\\Virtual Hard Disks\\"),
            "{p} was not given a new path"
        );
        assert!(file_exists(&fake, "hv2", p), "{p} is not on hv2");
    }
    for p in &all_before {
        assert!(!file_exists(&fake, "hv1", p), "{p} stayed on hv1");
    }
    // The footprint counts every link of the chains.
    let back = d
        .footprint(&HostId::new("hv2"), &VmId::new(&g))
        .await
        .unwrap();
    assert_eq!(back.disks.len(), 6);
}

#[tokio::test]
async fn the_migratability_check_is_asked_with_the_moves_own_settings() {
    // The VM lives on D:, which hv2 lacks; the move puts it under E:\Moved. Judged by its
    // source paths, hv2 could not take it.
    let mut w = World::new();
    w.add_host("hv1", "HV1", &["C:", "D:"]);
    w.add_host("hv2", "HV2", &["C:", "E:"]);
    let g = w.add_vm("hv1", "web", true, 512, &[10], "D:\\VMs\\web");
    let (fake, d) = common::start(w).await;
    let r = req(&g, "web", "hv1", "hv2", 1);
    assert_eq!(move_to_end(&fake, &d, &r).await, MigrationStatus::Completed);
    let check = sent(&fake, "CheckVirtualSystemIsMigratableToHost");
    let moved = sent(&fake, "MigrateVirtualSystemToHost");
    assert_eq!(check.len(), 1);
    assert_eq!(
        check[0], moved[0],
        "the check got exactly the move's parameters"
    );
}

#[tokio::test]
async fn migration_settings_name_the_destinations_addresses_and_full_name() {
    let mut w = common::world();
    // hv1's name is not configured: it is read from the host.
    let g = w.add_vm("hv2", "web", true, 512, &[10], "E:\\VMs\\web");
    let first = w.add_vm("hv1", "db", true, 256, &[5], "E:\\VMs\\db");
    w.hosts.get_mut("hv1").unwrap().listener_ips =
        vec!["192.0.2.21".into(), "198.51.100.21".into()];
    let (fake, d) = common::start(w).await;
    // A move from hv1 first: by then the driver has read hv1's computer name, and a move to
    // hv1 must still name it by its full name.
    let r0 = req(&first, "db", "hv1", "hv2", 1);
    assert_eq!(
        move_to_end(&fake, &d, &r0).await,
        MigrationStatus::Completed
    );
    fake.with(|w| w.calls.migration_params.clear());
    let r = req(&g, "web", "hv2", "hv1", 1);
    assert_eq!(move_to_end(&fake, &d, &r).await, MigrationStatus::Completed);
    let calls = sent(&fake, "MigrateVirtualSystemToHost");
    let p = &calls[0];
    let dest = &p.iter().find(|(n, _)| n == "DestinationHost").unwrap().1;
    assert_eq!(dest, "hv1.lab.example", "the full name");
    let msd = &p
        .iter()
        .find(|(n, _)| n == "MigrationSettingData")
        .unwrap()
        .1;
    let m = schema::check_embedded(msd, &["Msvm_VirtualSystemMigrationSettingData"]).unwrap();
    assert_eq!(
        m.get_array("DestinationIPAddressList"),
        ["192.0.2.21", "198.51.100.21"]
    );
}

#[tokio::test]
async fn a_destination_that_takes_no_migrations_refuses_before_anything_is_touched() {
    for (what, f) in [
        (
            "EnableVirtualSystemMigration",
            (|w: &mut World| w.hosts.get_mut("hv2").unwrap().migration_enabled = false)
                as fn(&mut World),
        ),
        ("no migration network", |w: &mut World| {
            w.hosts.get_mut("hv2").unwrap().listener_ips.clear()
        }),
    ] {
        let mut w = common::world();
        let g = w.add_vm("hv1", "web", true, 512, &[10], "E:\\VMs\\web");
        f(&mut w);
        let (fake, d) = common::start(w).await;
        let r = req(&g, "web", "hv1", "hv2", 1);
        let e = d.start_migration(&r).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::DestinationRefused, "{what}: {e}");
        assert!(e.message.contains(what), "{what}: {e}");
        assert!(e.message.contains("hv2"), "{e}");
        let (invokes, reg) =
            fake.with(|w| (w.calls.invokes.clone(), w.hosts["hv2"].registry.is_empty()));
        assert!(
            !invokes
                .iter()
                .any(|(_, m)| m == "MigrateVirtualSystemToHost" || m == "SetMultiStringValue"),
            "{what}: {invokes:?}"
        );
        assert!(reg, "{what}: no attempt record written");
    }
    // The source's own migration service disabled: no destination can help (permanent).
    let mut w = common::world();
    let g = w.add_vm("hv1", "web", true, 512, &[10], "E:\\VMs\\web");
    w.hosts.get_mut("hv1").unwrap().migration_enabled = false;
    let (_fake, d) = common::start(w).await;
    let e = d
        .start_migration(&req(&g, "web", "hv1", "hv2", 1))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
}

#[tokio::test]
async fn a_planned_vm_left_by_a_failed_attempt_is_removed_before_the_retry() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "web", true, 512, &[10], "E:\\VMs\\web");
    let other = w.add_vm("hv1", "db", true, 256, &[5], "E:\\VMs\\db");
    w.faults.job_exception.insert(g.clone(), 1);
    w.faults.failure_leaves_planned.insert(g.clone());
    // Another VM's planned VM on hv2: never ours to remove.
    w.add_planned("hv2", &other, "db", "E:\\Staged\\db");
    let (fake, d) = common::start(w).await;
    let r1 = req(&g, "web", "hv1", "hv2", 1);
    assert!(matches!(
        move_to_end(&fake, &d, &r1).await,
        MigrationStatus::Failed(_)
    ));
    assert!(
        fake.with(|w| w.hosts["hv2"].planned.contains_key(&g)),
        "the failed attempt left a planned VM"
    );
    let r2 = req(&g, "web", "hv1", "hv2", 2);
    assert_eq!(
        move_to_end(&fake, &d, &r2).await,
        MigrationStatus::Completed
    );
    let (destroyed, planned) = fake.with(|w| {
        (
            w.calls.destroyed.clone(),
            w.hosts["hv2"].planned.keys().cloned().collect::<Vec<_>>(),
        )
    });
    assert_eq!(
        destroyed,
        [(
            "hv2".to_owned(),
            "Msvm_PlannedComputerSystem".to_owned(),
            g.clone()
        )]
    );
    assert_eq!(planned, [other], "the other VM's planned VM stays");
}

#[tokio::test]
async fn a_planned_vm_is_left_alone_while_the_vm_is_not_safe_on_its_source() {
    // The VM is on hv2 already (realized): a planned VM of its GUID elsewhere is not a leftover
    // of a move from hv1, and nothing is destroyed.
    let mut w = common::world();
    let g = w.add_vm("hv1", "web", true, 512, &[10], "E:\\VMs\\web");
    w.hosts
        .get_mut("hv1")
        .unwrap()
        .vms
        .get_mut(&g)
        .unwrap()
        .op_status = vec![11, 32774];
    w.add_planned("hv2", &g, "web", "E:\\Moved\\web");
    let (fake, d) = common::start(w).await;
    let e = d
        .start_migration(&req(&g, "web", "hv1", "hv2", 1))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
    assert!(fake.with(|w| w.calls.destroyed.is_empty()));
    assert!(fake.with(|w| w.hosts["hv2"].planned.contains_key(&g)));
}

#[tokio::test]
async fn a_failed_attempts_planned_vm_is_listed_as_its_leftover_and_removed() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "web", true, 512, &[10], "E:\\VMs\\web");
    let other = w.add_vm("hv1", "db", true, 256, &[5], "E:\\VMs\\db");
    w.faults.job_exception.insert(g.clone(), 1);
    w.faults.failure_leaves_planned.insert(g.clone());
    w.add_planned("hv2", &other, "db", "E:\\Staged\\db");
    let (fake, d) = common::start(w).await;
    let r1 = req(&g, "web", "hv1", "hv2", 1);
    assert!(matches!(
        move_to_end(&fake, &d, &r1).await,
        MigrationStatus::Failed(_)
    ));
    let left = d
        .leftovers(&r1, LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap();
    let planned: Vec<&Leftover> = left
        .iter()
        .filter(|l| l.kind == LeftoverKind::Definition)
        .collect();
    assert_eq!(planned.len(), 1, "{left:?}");
    assert_eq!(planned[0].host, HostId::new("hv2"));
    assert!(planned[0].what.contains(&g), "{:?}", planned[0]);
    // Another VM's name in the same shape is refused, nothing destroyed.
    let wrong = Leftover {
        host: HostId::new("hv2"),
        kind: LeftoverKind::Definition,
        what: format!("planned VM {other}"),
    };
    assert!(
        d.remove_leftover(&r1, &wrong, LeftoverContext::AfterFailedAttempt)
            .await
            .is_err()
    );
    assert!(fake.with(|w| w.calls.destroyed.is_empty()));
    d.remove_leftover(&r1, planned[0], LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap();
    assert!(fake.with(|w| !w.hosts["hv2"].planned.contains_key(&g)));
    assert!(fake.with(|w| w.hosts["hv2"].planned.contains_key(&other)));
    // Gone: listed no more, and removing it again is success touching nothing.
    let again = d
        .leftovers(&r1, LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap();
    assert!(
        again.iter().all(|l| l.kind != LeftoverKind::Definition),
        "{again:?}"
    );
    d.remove_leftover(&r1, planned[0], LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap();
    assert_eq!(fake.with(|w| w.calls.destroyed.len()), 1);
}

#[tokio::test]
async fn a_vm_with_a_shared_disk_is_refused_before_anything_is_touched() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "node1", true, 512, &[10, 20], "E:\\VMs\\node1");
    {
        let h = w.hosts.get_mut("hv1").unwrap();
        let shared = "E:\\Cluster\\quorum.vhds";
        h.write_file(shared, 1 << 30);
        h.vms.get_mut(&g).unwrap().disks[1] = shared.into();
    }
    let (fake, d) = common::start(w).await;
    let e = d
        .start_migration(&req(&g, "node1", "hv1", "hv2", 1))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(e.message.contains("quorum.vhds"), "{e}");
    let invokes = fake.with(|w| w.calls.invokes.clone());
    assert!(
        !invokes
            .iter()
            .any(|(_, m)| m == "MigrateVirtualSystemToHost"
                || m == "CheckVirtualSystemIsMigratableToHost"
                || m == "SetMultiStringValue"),
        "{invokes:?}"
    );
}
