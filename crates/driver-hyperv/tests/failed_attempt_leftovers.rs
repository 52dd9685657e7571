//! What a failed shared-nothing move leaves on the DESTINATION: the VHD copies it made in the
//! paths the driver computed, and the folders it created for them. Listed and removed
//! (CIM_DataFile.Delete, then Win32_Directory.Delete) only when they are the attempt's own, never
//! a file or folder that was there before, nor one a VM there uses or that holds anything else,
//! nor anything while the VM is not safely on the source.
#![allow(clippy::unwrap_used)]

mod common;

use vmove_driver::*;
use vmove_driver_hyperv::HyperVDriver;
use vmove_driver_hyperv::fake::FakeHyperV;
use vmove_driver_hyperv::fake::world::key;

const T0: &str = "E:\\Hyper-V\\web\\Virtual Hard Disks\\web_0.vhdx";
const T1: &str = "E:\\Hyper-V\\web\\Virtual Hard Disks\\web_1.vhdx";
/// A file of the same name as a disk of web, elsewhere on the destination.
const ARCHIVE: &str = "E:\\Archive\\web_0.vhdx";
/// Another VM on the destination whose disk has the same name as web's second disk.
const OTHER_DISK: &str = "E:\\VMs\\other\\Virtual Hard Disks\\web_1.vhdx";
/// The folders web's move to hv2 needs (its disks' folder, its configuration folder, its root).
const DISKS_DIR: &str = "E:\\Hyper-V\\web\\Virtual Hard Disks";
const CONFIG_DIR: &str = "E:\\Hyper-V\\web\\Virtual Machines";
const VM_DIR: &str = "E:\\Hyper-V\\web";
/// An empty folder on the destination that has nothing to do with web.
const UNRELATED_DIR: &str = "E:\\VMs\\retired";

fn req(vm: &str, attempt: u32) -> MigrationRequest {
    MigrationRequest {
        vm: VmId::new(vm),
        vm_name: "web".into(),
        source: HostId::new("hv1"),
        destination: HostId::new("hv2"),
        mode: MigrationMode::Live,
        layout: PathLayout {
            base: Some("E:\\Hyper-V".into()),
            put_in_subfolder: true,
            preserve_drive_letter: false,
        },
        attempt,
        run_id: "leftovers".into(),
    }
}

/// hv1 runs web (disks of 10 and 20 MiB); hv2 holds ARCHIVE and a VM "other" using OTHER_DISK.
/// web's next migration job fails (JobState 10) after copying its disks partly.
fn world() -> (vmove_driver_hyperv::fake::World, String) {
    let mut w = common::world();
    let g = w.add_vm("hv1", "web", true, 512, &[10, 20], "E:\\VMs\\web");
    let o = w.add_vm("hv2", "other", false, 256, &[5], "E:\\VMs\\other");
    {
        let h = w.hosts.get_mut("hv2").unwrap();
        let vm = h.vms.get_mut(&o).unwrap();
        let old = vm.disks[0].clone();
        vm.disks[0] = OTHER_DISK.into();
        h.files.remove(&key(&old));
        h.write_file(OTHER_DISK, 5 << 20);
        h.write_file(ARCHIVE, 7 << 20);
    }
    w.faults.job_exception.insert(g.clone(), 1);
    w.faults.failure_leaves_copies.insert(g.clone());
    (w, g)
}

fn file_size(fake: &FakeHyperV, host: &str, path: &str) -> Option<u64> {
    fake.with(|w| w.hosts[host].files.get(&key(path)).map(|f| f.size))
}

fn dir_exists(fake: &FakeHyperV, host: &str, path: &str) -> bool {
    fake.with(|w| w.hosts[host].dir_exists(path))
}

fn on_hv2(kind: LeftoverKind, what: &str) -> Leftover {
    Leftover {
        host: HostId::new("hv2"),
        kind,
        what: what.into(),
    }
}

/// Starts `r` and runs it to its end, which must be a failure.
async fn start_and_fail(fake: &FakeHyperV, d: &HyperVDriver, r: &MigrationRequest) {
    let h = d.start_migration(r).await.unwrap();
    assert!(matches!(
        common::run_to_end(fake, d, r, &h).await,
        MigrationStatus::Failed(_)
    ));
}

async fn failed_leftovers(d: &HyperVDriver, r: &MigrationRequest) -> Vec<Leftover> {
    d.leftovers(r, LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap()
}

fn deletes_on(fake: &FakeHyperV, host: &str) -> usize {
    fake.with(|w| {
        w.calls
            .invokes
            .iter()
            .filter(|(h, m)| h == host && m == "Delete")
            .count()
    })
}

#[tokio::test]
async fn failed_attempt_copies_are_listed_removed_and_the_retry_leaves_nothing() {
    let (w, g) = world();
    let (fake, d) = common::start(w).await;

    // Attempt 1: the job fails after copying web_0 in full and web_1 half way.
    let r1 = req(&g, 1);
    start_and_fail(&fake, &d, &r1).await;
    assert_eq!(file_size(&fake, "hv2", T0), Some(10 << 20));
    assert_eq!(
        file_size(&fake, "hv2", T1),
        Some(10 << 20),
        "half of 20 MiB"
    );
    let loc = d.locate(&r1).await.unwrap();
    assert!(loc.on_source.is_some() && loc.on_destination.is_none());

    // Listed: exactly the attempt's two copies, then the folders it created (deepest first; the
    // first-level E:\Hyper-V it also created is never removed), on the destination.
    assert!(dir_exists(&fake, "hv2", CONFIG_DIR) && dir_exists(&fake, "hv2", "E:\\Hyper-V"));
    let left = failed_leftovers(&d, &r1).await;
    assert_eq!(
        left,
        vec![
            on_hv2(LeftoverKind::DiskImage, T0),
            on_hv2(LeftoverKind::DiskImage, T1),
            on_hv2(LeftoverKind::EmptyFolder, DISKS_DIR),
            on_hv2(LeftoverKind::EmptyFolder, CONFIG_DIR),
            on_hv2(LeftoverKind::EmptyFolder, VM_DIR),
        ]
    );
    // A retry before the clean-up is refused: the driver never overwrites.
    let e = d.start_migration(&req(&g, 2)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::DestinationRefused, "{e}");

    // Removed in the listed order through CIM_DataFile.Delete and Win32_Directory.Delete; the
    // same-named files elsewhere stay, and so does E:\Hyper-V.
    for l in &left {
        d.remove_leftover(&r1, l, LeftoverContext::AfterFailedAttempt)
            .await
            .unwrap();
    }
    assert_eq!(deletes_on(&fake, "hv2"), 5);
    for f in [DISKS_DIR, CONFIG_DIR, VM_DIR] {
        assert!(!dir_exists(&fake, "hv2", f), "{f} is still there");
    }
    assert!(dir_exists(&fake, "hv2", "E:\\Hyper-V"));
    assert!(dir_exists(&fake, "hv2", "E:\\Archive"));
    assert_eq!(file_size(&fake, "hv2", T0), None);
    assert_eq!(file_size(&fake, "hv2", T1), None);
    assert_eq!(file_size(&fake, "hv2", ARCHIVE), Some(7 << 20));
    assert_eq!(file_size(&fake, "hv2", OTHER_DISK), Some(5 << 20));
    assert_eq!(
        file_size(&fake, "hv1", "E:\\VMs\\web\\Virtual Hard Disks\\web_0.vhdx"),
        Some(10 << 20)
    );
    assert_eq!(
        file_size(&fake, "hv1", "E:\\VMs\\web\\Virtual Hard Disks\\web_1.vhdx"),
        Some(20 << 20)
    );
    // Nothing more to list; removing again is a no-op (already gone), not an error.
    assert!(failed_leftovers(&d, &r1).await.is_empty());
    for l in [&left[0], &left[4]] {
        d.remove_leftover(&r1, l, LeftoverContext::AfterFailedAttempt)
            .await
            .unwrap();
    }
    assert_eq!(deletes_on(&fake, "hv2"), 5);

    // Attempt 2 succeeds into the same paths.
    let r2 = req(&g, 2);
    let h2 = d.start_migration(&r2).await.unwrap();
    assert_eq!(
        common::run_to_end(&fake, &d, &r2, &h2).await,
        MigrationStatus::Completed
    );
    assert!(d.verify(&r2).await.unwrap().is_proof());
    // Nothing is left to remove on the destination for either attempt, and the destination's
    // disk folder holds exactly web's two disks, whole.
    for r in [&r1, &r2] {
        assert!(failed_leftovers(&d, r).await.is_empty());
    }
    let in_folder: Vec<(String, u64)> = fake.with(|w| {
        w.hosts["hv2"]
            .files
            .iter()
            .filter(|(k, _)| k.starts_with("e:\\hyper-v\\web\\virtual hard disks\\"))
            .map(|(_, f)| (f.path.clone(), f.size))
            .collect()
    });
    assert_eq!(
        in_folder,
        vec![(T0.to_string(), 10 << 20), (T1.to_string(), 20 << 20)]
    );
    // And the attempt-1 copies' removal cannot touch the moved VM's disks now.
    let e = d
        .remove_leftover(&r1, &left[0], LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert_eq!(file_size(&fake, "hv2", T0), Some(10 << 20));
    assert_eq!(file_size(&fake, "hv2", ARCHIVE), Some(7 << 20));
}

#[tokio::test]
async fn failed_attempt_leftovers_never_include_files_that_are_not_the_attempts() {
    let (w, g) = world();
    let (fake, d) = common::start(w).await;

    // A target path already taken before the attempt: the start is refused, nothing is listed
    // and the file stays.
    fake.with(|w| w.hosts.get_mut("hv2").unwrap().write_file(T1, 3 << 20));
    let r0 = req(&g, 1);
    let e = d.start_migration(&r0).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::DestinationRefused, "{e}");
    assert!(failed_leftovers(&d, &r0).await.is_empty());
    let e = d
        .remove_leftover(
            &r0,
            &Leftover {
                host: HostId::new("hv2"),
                kind: LeftoverKind::DiskImage,
                what: T1.into(),
            },
            LeftoverContext::AfterFailedAttempt,
        )
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert_eq!(file_size(&fake, "hv2", T1), Some(3 << 20));
    fake.with(|w| w.hosts.get_mut("hv2").unwrap().files.remove(&key(T1)));

    // Attempt 2 fails and leaves its copies.
    let r = req(&g, 2);
    start_and_fail(&fake, &d, &r).await;
    // A same-named file elsewhere is never accepted for removal.
    let archive = Leftover {
        host: HostId::new("hv2"),
        kind: LeftoverKind::DiskImage,
        what: ARCHIVE.into(),
    };
    let e = d
        .remove_leftover(&r, &archive, LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap_err();
    assert!(e.message.contains("not a file attempt"), "{e}");
    assert_eq!(file_size(&fake, "hv2", ARCHIVE), Some(7 << 20));

    // Someone attaches one of the copies to a VM on the destination: it is no longer listed, and
    // its removal is refused. (Its folder existed before this attempt, since the refused one
    // found T1 there: never listed; the configuration folder is this attempt's.)
    fake.with(|w| {
        let h = w.hosts.get_mut("hv2").unwrap();
        let vm = h.vms.values_mut().find(|v| v.name == "other").unwrap();
        vm.disks.push(T0.into());
    });
    let left = failed_leftovers(&d, &r).await;
    assert_eq!(
        left.iter().map(|l| l.what.as_str()).collect::<Vec<_>>(),
        vec![T1, CONFIG_DIR]
    );
    let e = d
        .remove_leftover(
            &r,
            &Leftover {
                host: HostId::new("hv2"),
                kind: LeftoverKind::DiskImage,
                what: T0.into(),
            },
            LeftoverContext::AfterFailedAttempt,
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("used by a VM"), "{e}");
    assert_eq!(file_size(&fake, "hv2", T0), Some(10 << 20));

    // A driver that did not start the attempt (vmove restarted) knows nothing: nothing listed.
    let fresh = common::driver(&fake);
    assert!(failed_leftovers(&fresh, &r).await.is_empty());

    // The VM vanished from the source: the destination copies may be all there is. Nothing is
    // listed and nothing removed.
    let web = fake.with(|w| w.hosts.get_mut("hv1").unwrap().vms.remove(&g).unwrap());
    assert!(failed_leftovers(&d, &r).await.is_empty());
    let t1 = Leftover {
        host: HostId::new("hv2"),
        kind: LeftoverKind::DiskImage,
        what: T1.into(),
    };
    let e = d
        .remove_leftover(&r, &t1, LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap_err();
    assert!(e.message.contains("not on hv1"), "{e}");
    assert_eq!(file_size(&fake, "hv2", T1), Some(10 << 20));

    // Back on the source: T1 goes, T0 (attached) stays.
    fake.with(|w| w.hosts.get_mut("hv1").unwrap().vms.insert(g.clone(), web));
    d.remove_leftover(&r, &t1, LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap();
    assert_eq!(file_size(&fake, "hv2", T1), None);
    assert_eq!(file_size(&fake, "hv2", T0), Some(10 << 20));
    assert_eq!(deletes_on(&fake, "hv2"), 1);
}

/// Regression guard: the folders a failed attempt created on the destination went unremoved.
/// Only a folder that did not exist when the attempt's paths were checked free is ever listed or
/// removed, only when it holds nothing but what is listed before it, and its removal checks again
/// that it is empty.
#[tokio::test]
async fn failed_attempt_folders_are_removed_only_when_the_attempt_created_them_and_they_are_empty()
{
    let (mut w, g) = world();
    // VM_DIR exists (empty) before the attempt: an operator made it; so does an unrelated empty
    // folder elsewhere.
    w.hosts.get_mut("hv2").unwrap().mkdirs(VM_DIR);
    w.hosts.get_mut("hv2").unwrap().mkdirs(UNRELATED_DIR);
    let (fake, d) = common::start(w).await;
    let r = req(&g, 1);
    start_and_fail(&fake, &d, &r).await;
    let left = failed_leftovers(&d, &r).await;
    assert_eq!(
        left,
        vec![
            on_hv2(LeftoverKind::DiskImage, T0),
            on_hv2(LeftoverKind::DiskImage, T1),
            on_hv2(LeftoverKind::EmptyFolder, DISKS_DIR),
            on_hv2(LeftoverKind::EmptyFolder, CONFIG_DIR),
        ],
        "VM_DIR existed before the attempt"
    );
    // A folder that existed before is refused, even though it would be empty.
    let e = d
        .remove_leftover(
            &r,
            &on_hv2(LeftoverKind::EmptyFolder, VM_DIR),
            LeftoverContext::AfterFailedAttempt,
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("not a folder attempt 1"), "{e}");
    // So is any other empty folder named as a failed attempt's leftover (such a folder used to
    // be removed: only its emptiness was checked).
    let e = d
        .remove_leftover(
            &r,
            &on_hv2(LeftoverKind::EmptyFolder, UNRELATED_DIR),
            LeftoverContext::AfterFailedAttempt,
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("not a folder attempt 1"), "{e}");
    assert!(dir_exists(&fake, "hv2", UNRELATED_DIR));
    // The attempt's own folder while it still holds the copies: refused, nothing deleted.
    let e = d
        .remove_leftover(&r, &left[2], LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap_err();
    assert!(e.message.contains("not empty"), "{e}");
    assert_eq!(deletes_on(&fake, "hv2"), 0);
    assert_eq!(file_size(&fake, "hv2", T0), Some(10 << 20));

    // Someone puts a file of theirs into the configuration folder the attempt created: it is no
    // longer listed, and removing it as listed before is refused; the file stays.
    let notes = format!("{CONFIG_DIR}\\notes.txt");
    fake.with(|w| w.hosts.get_mut("hv2").unwrap().write_file(&notes, 100));
    assert_eq!(failed_leftovers(&d, &r).await, left[..3].to_vec());
    for l in &left[..3] {
        d.remove_leftover(&r, l, LeftoverContext::AfterFailedAttempt)
            .await
            .unwrap();
    }
    let e = d
        .remove_leftover(&r, &left[3], LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap_err();
    assert!(e.message.contains("not empty"), "{e}");
    assert_eq!(file_size(&fake, "hv2", &notes), Some(100));
    assert!(dir_exists(&fake, "hv2", CONFIG_DIR));
    assert!(!dir_exists(&fake, "hv2", DISKS_DIR));
    assert!(dir_exists(&fake, "hv2", VM_DIR));
    assert_eq!(deletes_on(&fake, "hv2"), 3);

    // A driver that did not start the attempt (vmove restarted) lists no folder and removes none.
    fake.with(|w| w.hosts.get_mut("hv2").unwrap().files.remove(&key(&notes)));
    let fresh = common::driver(&fake);
    assert!(failed_leftovers(&fresh, &r).await.is_empty());
    let e = fresh
        .remove_leftover(&r, &left[3], LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap_err();
    assert!(e.message.contains("not a folder attempt 1"), "{e}");
    assert!(dir_exists(&fake, "hv2", CONFIG_DIR));

    // While the VM is not safely on the source, no folder goes either.
    let web = fake.with(|w| w.hosts.get_mut("hv1").unwrap().vms.remove(&g).unwrap());
    let e = d
        .remove_leftover(&r, &left[3], LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap_err();
    assert!(e.message.contains("not on hv1"), "{e}");
    assert!(dir_exists(&fake, "hv2", CONFIG_DIR));
    fake.with(|w| w.hosts.get_mut("hv1").unwrap().vms.insert(g.clone(), web));
    d.remove_leftover(&r, &left[3], LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap();
    assert!(!dir_exists(&fake, "hv2", CONFIG_DIR));
    assert!(dir_exists(&fake, "hv2", VM_DIR));
    assert_eq!(deletes_on(&fake, "hv2"), 4);
}
