//! Pre-flight on the fake's VM shapes: each shape that cannot move is found, with its code and
//! scope, before anything is touched (both hosts exactly as before, nothing invoked but the
//! migratability check); each shape that can move is clear, then moves through the driver and
//! verifies. The fake's behaviour for each shape cites its source (src/fake/model.rs,
//! src/fake/migration.rs).
#![allow(clippy::unwrap_used)]

use crate::common;

use vmove_driver::{
    Driver, FindingScope, HostId, MigrationMode, MigrationRequest, MigrationStatus, PathLayout,
    Preflight, VmId,
};
use vmove_driver_hyperv::HyperVDriver;
use vmove_driver_hyperv::fake::model::{SUBTYPE_DVD, SUBTYPE_FLOPPY};
use vmove_driver_hyperv::fake::{FakeHyperV, World};

const ISO: &str = "E:\\ISO\\install.iso";

fn req(vm: &str, name: &str) -> MigrationRequest {
    MigrationRequest {
        vm: VmId::new(vm),
        vm_name: name.into(),
        source: HostId::new("hv1"),
        destination: HostId::new("hv2"),
        mode: MigrationMode::Live,
        layout: PathLayout {
            base: Some("E:\\Moved".into()),
            put_in_subfolder: true,
            preserve_drive_letter: false,
        },
        attempt: 1,
        run_id: "preflight".into(),
    }
}

/// Everything the hosts hold that a call could change.
fn picture(fake: &FakeHyperV) -> String {
    fake.with(|w| {
        w.hosts
            .iter()
            .map(|(k, h)| {
                format!(
                    "{k}: {:?} {:?} {:?} {:?} {:?} {:?}",
                    h.files, h.dirs, h.vms, h.jobs, h.registry, h.planned
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// The methods invoked so far (every one: a read-only pre-flight may only ask the check).
fn invoked(fake: &FakeHyperV) -> Vec<String> {
    fake.with(|w| w.calls.invokes.iter().map(|(_, m)| m.clone()).collect())
}

/// A world with one VM `name` (running, one 10 MiB disk) shaped by `shape`; its GUID.
async fn start_with(
    name: &str,
    shape: impl FnOnce(&mut World, &str),
) -> (FakeHyperV, HyperVDriver, String) {
    let mut w = common::world();
    let g = w.add_vm("hv1", name, true, 512, &[10], &format!("E:\\VMs\\{name}"));
    shape(&mut w, &g);
    let (fake, d) = common::start(w).await;
    (fake, d, g)
}

/// Pre-flight finds a blocker with `code` and `scope`, and changes nothing on either host.
async fn blocked(
    name: &str,
    code: &str,
    scope: FindingScope,
    shape: impl FnOnce(&mut World, &str),
) -> Preflight {
    let (fake, d, g) = start_with(name, shape).await;
    let before = picture(&fake);
    let found = d.preflight(&req(&g, name)).await.unwrap();
    assert!(
        found
            .blockers
            .iter()
            .any(|b| b.code == code && b.scope == scope),
        "{name}: no {code} blocker of scope {scope:?}: {found:?}"
    );
    let b = found.blockers.iter().find(|b| b.code == code).unwrap();
    assert!(!b.message.is_empty() && !b.remedy.is_empty(), "{b:?}");
    assert_eq!(before, picture(&fake), "{name}: pre-flight changed a host");
    let writes: Vec<String> = invoked(&fake)
        .into_iter()
        .filter(|m| {
            m != "CheckVirtualSystemIsMigratableToHost" && !REGISTRY_READS.contains(&m.as_str())
        })
        .collect();
    assert!(writes.is_empty(), "{name}: pre-flight invoked {writes:?}");
    found
}

/// `StdRegProv` methods that only read (the VM's attempt records, when a path is taken).
const REGISTRY_READS: [&str; 3] = ["EnumKey", "EnumValues", "GetMultiStringValue"];

/// Pre-flight is clear (no blocker) and nothing changed; then the VM moves and verifies.
async fn moves(name: &str, shape: impl FnOnce(&mut World, &str)) -> Preflight {
    let (fake, d, g) = start_with(name, shape).await;
    let r = req(&g, name);
    let before = picture(&fake);
    let found = d.preflight(&r).await.unwrap();
    assert!(found.is_clear(), "{name}: {}", found.reason());
    assert_eq!(before, picture(&fake), "{name}: pre-flight changed a host");
    assert!(
        invoked(&fake)
            .iter()
            .any(|m| m == "CheckVirtualSystemIsMigratableToHost"),
        "{name}: pre-flight did not ask the host's migratability check"
    );
    let h = d.start_migration(&r).await.unwrap();
    assert_eq!(
        common::run_to_end(&fake, &d, &r, &h).await,
        MigrationStatus::Completed,
        "{name}"
    );
    let v = d.verify(&r).await.unwrap();
    assert!(v.is_proof(), "{name}: {v:?}");
    found
}

#[tokio::test]
async fn a_plain_vm_is_clear_and_moves() {
    moves("plain", |_, _| {}).await;
}

#[tokio::test]
async fn a_vm_with_checkpoints_is_clear_and_moves() {
    moves("checkpointed", |w, g| {
        w.add_checkpoint("hv1", g, "before patch", false);
        w.add_checkpoint("hv1", g, "after patch", false);
    })
    .await;
}

#[tokio::test]
async fn an_iso_the_destination_also_has_is_clear_and_moves() {
    moves("iso-both", |w, g| {
        w.add_drive("hv1", g, SUBTYPE_DVD, ISO);
        w.hosts.get_mut("hv2").unwrap().write_file(ISO, 700 << 20);
    })
    .await;
}

#[tokio::test]
async fn an_iso_the_destination_lacks_blocks_the_destination() {
    let f = blocked(
        "iso-missing",
        "image_missing",
        FindingScope::Destination,
        |w, g| w.add_drive("hv1", g, SUBTYPE_DVD, ISO),
    )
    .await;
    assert!(f.blockers[0].message.contains(ISO), "{f:?}");
}

#[tokio::test]
async fn a_floppy_image_the_destination_lacks_blocks_the_destination() {
    blocked(
        "vfd-missing",
        "image_missing",
        FindingScope::Destination,
        |w, g| w.add_drive("hv1", g, SUBTYPE_FLOPPY, "E:\\ISO\\drivers.vfd"),
    )
    .await;
}

#[tokio::test]
async fn a_switch_both_hosts_have_is_clear_and_moves() {
    moves("on-external", |w, g| w.add_nic("hv1", g, "External")).await;
}

#[tokio::test]
async fn a_switch_the_destination_lacks_blocks_the_destination() {
    let f = blocked(
        "on-lab-net",
        "switch_missing",
        FindingScope::Destination,
        |w, g| {
            w.add_nic("hv1", g, "External");
            w.add_nic("hv1", g, "LabOnly");
        },
    )
    .await;
    // Only the missing one is named.
    assert_eq!(f.blockers.len(), 1, "{f:?}");
    assert!(f.blockers[0].message.contains("'LabOnly'"), "{f:?}");
}

#[tokio::test]
async fn a_configuration_version_newer_than_the_destination_runs_blocks_it() {
    blocked(
        "v12",
        "config_version",
        FindingScope::Destination,
        |w, g| {
            w.hosts.get_mut("hv1").unwrap().os_build = 26100;
            w.hosts
                .get_mut("hv1")
                .unwrap()
                .vms
                .get_mut(g)
                .unwrap()
                .version = "12.0".into();
        },
    )
    .await;
}

#[tokio::test]
async fn an_older_configuration_version_is_clear_and_moves() {
    moves("v8", |w, g| {
        w.hosts
            .get_mut("hv1")
            .unwrap()
            .vms
            .get_mut(g)
            .unwrap()
            .version = "8.0".into();
    })
    .await;
}

#[tokio::test]
async fn a_pass_through_disk_blocks_the_vm_itself() {
    let f = blocked("physical", "passthrough_disk", FindingScope::Vm, |w, g| {
        w.add_passthrough_disk("hv1", g, 2)
    })
    .await;
    assert!(f.blocks_every_destination());
}

#[tokio::test]
async fn migration_disabled_on_the_destination_blocks_it() {
    blocked(
        "to-closed",
        "migration_disabled",
        FindingScope::Host,
        |w, _| w.hosts.get_mut("hv2").unwrap().migration_enabled = false,
    )
    .await;
}

#[tokio::test]
async fn a_destination_with_no_migration_network_blocks_it() {
    blocked(
        "to-no-net",
        "no_migration_network",
        FindingScope::Host,
        |w, _| w.hosts.get_mut("hv2").unwrap().listener_ips.clear(),
    )
    .await;
}

#[tokio::test]
async fn credssp_on_the_source_blocks_a_remote_move() {
    blocked(
        "credssp",
        "credssp_needs_local_session",
        FindingScope::Host,
        |w, _| w.hosts.get_mut("hv1").unwrap().migration_auth = 0,
    )
    .await;
}

#[tokio::test]
async fn another_processor_vendor_blocks_a_running_vm() {
    blocked("to-amd", "cpu_vendor", FindingScope::Destination, |w, _| {
        let h = w.hosts.get_mut("hv2").unwrap();
        h.cpu_vendor = "AuthenticAMD".into();
        h.cpu_name = "AMD EPYC 7543 32-Core Processor".into();
    })
    .await;
}

#[tokio::test]
async fn another_processor_model_without_compatibility_mode_is_a_warning() {
    let f = moves("other-model", |w, _| {
        w.hosts.get_mut("hv2").unwrap().cpu_name = "Intel(R) Xeon(R) Gold 6430".into();
    })
    .await;
    assert!(
        f.warnings.iter().any(|w| w.code == "cpu_compatibility"),
        "{f:?}"
    );
}

#[tokio::test]
async fn the_same_vm_id_on_the_destination_blocks_it() {
    blocked("twin", "vm_exists", FindingScope::Destination, |w, g| {
        let vm = w.hosts["hv1"].vms[g].clone();
        w.hosts.get_mut("hv2").unwrap().vms.insert(g.to_owned(), vm);
    })
    .await;
}

#[tokio::test]
async fn a_taken_destination_path_blocks_it_for_now() {
    let f = blocked("clash", "path_taken", FindingScope::Destination, |w, _| {
        w.hosts
            .get_mut("hv2")
            .unwrap()
            .write_file("E:\\Moved\\clash\\Virtual Hard Disks\\clash_0.vhdx", 1);
    })
    .await;
    let b = f.blockers.iter().find(|b| b.code == "path_taken").unwrap();
    assert!(b.may_pass, "someone may free the path: {b:?}");
}

/// The VM's own partial copy (its attempt record on the destination names the path, as the
/// driver writes it before the move: src/record.rs) is no blocker: the start's refusal and
/// the clean-up after it remove the copy (docs/drivers/hyperv.md, attempt records).
#[tokio::test]
async fn a_destination_path_holding_the_vm_s_own_partial_copy_is_a_leftover_warning() {
    let path = "E:\\Moved\\mine\\Virtual Hard Disks\\mine_0.vhdx";
    let (fake, d, g) = start_with("mine", |w, g| {
        let h = w.hosts.get_mut("hv2").unwrap();
        h.write_file(path, 1);
        let key = format!("SOFTWARE\\vmove\\AttemptRecords\\{g}");
        h.reg_create_key(&key);
        let name = "run earlier attempt 1";
        h.registry
            .get_mut(&key.to_ascii_lowercase())
            .unwrap()
            .values
            .insert(
                name.to_owned(),
                (
                    name.to_owned(),
                    vec!["vmove attempt record 1".to_owned(), format!("disk={path}")],
                ),
            );
    })
    .await;
    let before = picture(&fake);
    let found = d.preflight(&req(&g, "mine")).await.unwrap();
    assert!(found.is_clear(), "{found:?}");
    assert!(
        found
            .warnings
            .iter()
            .any(|w| w.code == "leftover" && w.message.contains("mine_0.vhdx")),
        "{found:?}"
    );
    assert_eq!(before, picture(&fake), "pre-flight changed a host");
}

#[tokio::test]
async fn too_little_memory_or_disk_on_the_destination_blocks_it_for_now() {
    for (name, code) in [("big-mem", "memory"), ("big-disk", "disk_space")] {
        let f = blocked(name, code, FindingScope::Destination, |w, _| {
            let h = w.hosts.get_mut("hv2").unwrap();
            if code == "memory" {
                h.free_memory_bytes = 256 << 20;
            } else {
                h.free_disk_bytes = 1 << 20;
            }
        })
        .await;
        let b = f.blockers.iter().find(|b| b.code == code).unwrap();
        assert!(b.may_pass, "room frees as VMs leave: {b:?}");
    }
}

#[tokio::test]
async fn the_host_s_own_check_saying_no_is_a_blocker() {
    blocked(
        "host-says-no",
        "not_migratable",
        FindingScope::Destination,
        |w, g| {
            w.faults.unmigratable.insert(g.to_owned());
        },
    )
    .await;
}

#[tokio::test]
async fn an_unknown_vm_is_a_permanent_not_found_error() {
    let (_fake, d, _) = start_with("known", |_, _| {}).await;
    let e = d
        .preflight(&req("00000000-0000-4000-8000-00000000DEAD", "ghost"))
        .await
        .unwrap_err();
    assert_eq!(e.class, vmove_driver::ErrorClass::Permanent);
    assert!(e.message.contains("not found"), "{e}");
}

#[tokio::test]
async fn host_preflight_finds_migration_disabled_and_an_unreachable_host() {
    let mut w = common::world();
    w.hosts.get_mut("hv2").unwrap().migration_enabled = false;
    let (fake, d) = common::start(w).await;
    assert!(
        d.preflight_host(&HostId::new("hv1"))
            .await
            .unwrap()
            .is_clear()
    );
    let f = d.preflight_host(&HostId::new("hv2")).await.unwrap();
    assert!(
        f.blockers.iter().any(|b| b.code == "migration_disabled"),
        "{f:?}"
    );
    fake.with(|w| {
        w.faults
            .http_status
            .insert("hv1".into(), std::iter::repeat_n(401, 20).collect())
    });
    let f = d.preflight_host(&HostId::new("hv1")).await.unwrap();
    assert!(
        f.blockers
            .iter()
            .any(|b| b.code == "host_auth_failed" || b.code == "host_unreachable"),
        "{f:?}"
    );
}
