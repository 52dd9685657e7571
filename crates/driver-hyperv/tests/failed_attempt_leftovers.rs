//! What a failed shared-nothing move leaves on the DESTINATION: the VHD copies it made in the
//! paths the driver computed, and the folders it created for them. Listed and removed
//! (CIM_DataFile.Delete, then Win32_Directory.Delete) only when they are the attempt's own, never
//! a file or folder that was there before, nor one a VM there uses or that holds anything else,
//! nor anything while the VM is not safely on the source.
#![allow(clippy::unwrap_used)]

use crate::common;

use vmove_driver::*;
use vmove_driver_hyperv::HyperVDriver;
use vmove_driver_hyperv::fake::FakeHyperV;
use vmove_driver_hyperv::fake::world::key;
use vmove_driver_hyperv::record;

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

/// What web's failed move to hv2 leaves there, in the order it is listed: its two copies, then
/// the folders it created, deepest first (never the first-level `E:\\Hyper-V`).
fn everything_web_left() -> Vec<Leftover> {
    vec![
        on_hv2(LeftoverKind::DiskImage, T0),
        on_hv2(LeftoverKind::DiskImage, T1),
        on_hv2(LeftoverKind::EmptyFolder, DISKS_DIR),
        on_hv2(LeftoverKind::EmptyFolder, CONFIG_DIR),
        on_hv2(LeftoverKind::EmptyFolder, VM_DIR),
    ]
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

/// Removes `l` as a failed attempt's leftover, which must be refused; the error.
async fn removal_refused(d: &HyperVDriver, r: &MigrationRequest, l: &Leftover) -> DriverError {
    d.remove_leftover(r, l, LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap_err()
}

async fn remove_all(d: &HyperVDriver, r: &MigrationRequest, left: &[Leftover]) {
    for l in left {
        d.remove_leftover(r, l, LeftoverContext::AfterFailedAttempt)
            .await
            .unwrap();
    }
}

/// The attempt records of VM `g` in hv2's registry: (value name, strings).
fn records_on_hv2(fake: &FakeHyperV, g: &str) -> Vec<(String, Vec<String>)> {
    let k = format!("{}\\{g}", record::KEY).to_ascii_lowercase();
    fake.with(|w| {
        w.hosts["hv2"]
            .registry
            .get(&k)
            .map(|key| key.values.values().cloned().collect())
            .unwrap_or_default()
    })
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
    assert_eq!(left, everything_web_left());
    // A retry before the clean-up is refused: the driver never overwrites.
    let e = d.start_migration(&req(&g, 2)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::DestinationRefused, "{e}");

    // Removed in the listed order through CIM_DataFile.Delete and Win32_Directory.Delete; the
    // same-named files elsewhere stay, and so does E:\Hyper-V.
    remove_all(&d, &r1, &left).await;
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
    // Nothing more to list, and no record of the attempt is left; removing again is a no-op
    // (already gone), not an error.
    assert!(failed_leftovers(&d, &r1).await.is_empty());
    assert_eq!(records_on_hv2(&fake, &g), vec![]);
    remove_all(&d, &r1, &[left[0].clone(), left[4].clone()]).await;
    assert_eq!(deletes_on(&fake, "hv2"), 5);

    // Attempt 2 succeeds into the same paths.
    let r2 = req(&g, 2);
    let h2 = d.start_migration(&r2).await.unwrap();
    assert_eq!(
        common::run_to_end(&fake, &d, &r2, &h2).await,
        MigrationStatus::Completed
    );
    assert_eq!(records_on_hv2(&fake, &g).len(), 1, "attempt 2's record");
    assert!(d.verify(&r2).await.unwrap().is_proof());
    assert_eq!(
        records_on_hv2(&fake, &g),
        vec![],
        "a proven move drops the VM's records"
    );
    // Nothing is left to remove on the destination for either attempt, and the destination's
    // disk folder holds exactly web's two disks, whole (each grown by what the running VM
    // wrote during its move: the fake's dynamic disks grow, and the proof above did not
    // mind).
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
    let grew = fake.with(|w| w.live_disk_growth);
    assert_eq!(
        in_folder,
        vec![
            (T0.to_string(), (10 << 20) + grew),
            (T1.to_string(), (20 << 20) + grew)
        ]
    );
    // And the attempt-1 copies' removal cannot touch the moved VM's disks now.
    let e = removal_refused(&d, &r1, &left[0]).await;
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert_eq!(file_size(&fake, "hv2", T0), Some((10 << 20) + grew));
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
    assert_eq!(
        records_on_hv2(&fake, &g),
        vec![],
        "a refused start records nothing"
    );
    let e = removal_refused(&d, &r0, &on_hv2(LeftoverKind::DiskImage, T1)).await;
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert_eq!(file_size(&fake, "hv2", T1), Some(3 << 20));
    fake.with(|w| w.hosts.get_mut("hv2").unwrap().files.remove(&key(T1)));

    // Attempt 2 fails and leaves its copies.
    let r = req(&g, 2);
    start_and_fail(&fake, &d, &r).await;
    // A same-named file elsewhere is never accepted for removal.
    let archive = on_hv2(LeftoverKind::DiskImage, ARCHIVE);
    let e = removal_refused(&d, &r, &archive).await;
    assert!(e.message.contains("no attempt record names it"), "{e}");
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
    let e = removal_refused(&d, &r, &on_hv2(LeftoverKind::DiskImage, T0)).await;
    assert!(e.message.contains("used by a VM"), "{e}");
    assert_eq!(file_size(&fake, "hv2", T0), Some(10 << 20));

    // A driver that did not start the attempt (vmove restarted) reads the same record on hv2
    // and lists the same.
    let fresh = common::driver(&fake);
    assert_eq!(failed_leftovers(&fresh, &r).await, left);

    // The VM vanished from the source: the destination copies may be all there is. Nothing is
    // listed and nothing removed.
    let web = fake.with(|w| w.hosts.get_mut("hv1").unwrap().vms.remove(&g).unwrap());
    assert!(failed_leftovers(&d, &r).await.is_empty());
    let t1 = on_hv2(LeftoverKind::DiskImage, T1);
    let e = removal_refused(&d, &r, &t1).await;
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
        everything_web_left()[..4],
        "VM_DIR existed before the attempt"
    );
    // A folder that existed before is refused, even though it would be empty.
    let e = removal_refused(&d, &r, &on_hv2(LeftoverKind::EmptyFolder, VM_DIR)).await;
    assert!(e.message.contains("no attempt record names it"), "{e}");
    // So is any other empty folder named as a failed attempt's leftover (such a folder used to
    // be removed: only its emptiness was checked).
    let e = removal_refused(&d, &r, &on_hv2(LeftoverKind::EmptyFolder, UNRELATED_DIR)).await;
    assert!(e.message.contains("no attempt record names it"), "{e}");
    assert!(dir_exists(&fake, "hv2", UNRELATED_DIR));
    // The attempt's own folder while it still holds the copies: refused, nothing deleted.
    let e = removal_refused(&d, &r, &left[2]).await;
    assert!(e.message.contains("not empty"), "{e}");
    assert_eq!(deletes_on(&fake, "hv2"), 0);
    assert_eq!(file_size(&fake, "hv2", T0), Some(10 << 20));

    // Someone puts a file of theirs into the configuration folder the attempt created: it is no
    // longer listed, and removing it as listed before is refused; the file stays.
    let notes = format!("{CONFIG_DIR}\\notes.txt");
    fake.with(|w| w.hosts.get_mut("hv2").unwrap().write_file(&notes, 100));
    assert_eq!(failed_leftovers(&d, &r).await, left[..3].to_vec());
    remove_all(&d, &r, &left[..3]).await;
    let e = removal_refused(&d, &r, &left[3]).await;
    assert!(e.message.contains("not empty"), "{e}");
    assert_eq!(file_size(&fake, "hv2", &notes), Some(100));
    assert!(dir_exists(&fake, "hv2", CONFIG_DIR));
    assert!(!dir_exists(&fake, "hv2", DISKS_DIR));
    assert!(dir_exists(&fake, "hv2", VM_DIR));
    assert_eq!(deletes_on(&fake, "hv2"), 3);

    // The file gone again, a driver that did not start the attempt (vmove restarted) lists the
    // folder from the attempt's record on hv2, and still never the one that existed before.
    fake.with(|w| w.hosts.get_mut("hv2").unwrap().files.remove(&key(&notes)));
    let fresh = common::driver(&fake);
    assert_eq!(failed_leftovers(&fresh, &r).await, left[3..].to_vec());
    let e = removal_refused(&fresh, &r, &on_hv2(LeftoverKind::EmptyFolder, VM_DIR)).await;
    assert!(e.message.contains("no attempt record names it"), "{e}");

    // While the VM is not safely on the source, no folder goes either.
    let web = fake.with(|w| w.hosts.get_mut("hv1").unwrap().vms.remove(&g).unwrap());
    let e = removal_refused(&fresh, &r, &left[3]).await;
    assert!(e.message.contains("not on hv1"), "{e}");
    assert!(dir_exists(&fake, "hv2", CONFIG_DIR));
    fake.with(|w| w.hosts.get_mut("hv1").unwrap().vms.insert(g.clone(), web));
    remove_all(&fresh, &r, &left[3..]).await;
    assert!(!dir_exists(&fake, "hv2", CONFIG_DIR));
    assert!(dir_exists(&fake, "hv2", VM_DIR));
    assert_eq!(deletes_on(&fake, "hv2"), 4);
    assert_eq!(records_on_hv2(&fake, &g), vec![]);
}

/// Regression guard: a failed attempt's copies and folders on the destination stayed there
/// forever once vmove crashed (its record of them was in memory only), and the retry was refused
/// on them until an operator removed them. The driver that started the attempt is dropped (the
/// crash); a new one, knowing nothing, reads the attempt's record on the destination and lists
/// and removes exactly what the attempt left, and nothing beside it.
#[tokio::test]
async fn a_new_driver_after_a_crash_lists_and_removes_exactly_what_the_failed_attempt_left() {
    let (mut w, g) = world();
    // Beside what web's move will create: an unrelated empty folder and a file in E:\Hyper-V, and
    // a file in a folder of another VM's.
    let unrelated_file = "E:\\Hyper-V\\readme.txt";
    let other_vm_dir = "E:\\Hyper-V\\db\\Virtual Hard Disks";
    let other_vm_file = "E:\\Hyper-V\\db\\Virtual Hard Disks\\web_1.vhdx";
    {
        let h = w.hosts.get_mut("hv2").unwrap();
        h.mkdirs("E:\\Hyper-V\\retired");
        h.write_file(unrelated_file, 10);
        h.write_file(other_vm_file, 4 << 20);
    }
    let (fake, d) = common::start(w).await;
    let r = req(&g, 1);
    start_and_fail(&fake, &d, &r).await;
    assert_eq!(records_on_hv2(&fake, &g).len(), 1);
    drop(d); // vmove crashes: everything the driver knew in memory is gone.

    let fresh = common::driver(&fake);
    let left = failed_leftovers(&fresh, &r).await;
    assert_eq!(left, everything_web_left());
    // Nothing else is accepted for removal.
    for other in [
        on_hv2(LeftoverKind::DiskImage, ARCHIVE),
        on_hv2(LeftoverKind::DiskImage, other_vm_file),
        on_hv2(LeftoverKind::EmptyFolder, "E:\\Hyper-V\\retired"),
        on_hv2(LeftoverKind::EmptyFolder, other_vm_dir),
    ] {
        let e = removal_refused(&fresh, &r, &other).await;
        assert!(e.message.contains("no attempt record names it"), "{e}");
    }
    assert_eq!(deletes_on(&fake, "hv2"), 0);
    remove_all(&fresh, &r, &left).await;
    assert_eq!(deletes_on(&fake, "hv2"), 5);
    for l in &left {
        assert!(
            file_size(&fake, "hv2", &l.what).is_none() && !dir_exists(&fake, "hv2", &l.what),
            "{} is still there",
            l.what
        );
    }
    // Everything beside it stays, and so does every source file.
    assert_eq!(file_size(&fake, "hv2", unrelated_file), Some(10));
    assert_eq!(file_size(&fake, "hv2", other_vm_file), Some(4 << 20));
    assert_eq!(file_size(&fake, "hv2", ARCHIVE), Some(7 << 20));
    assert_eq!(file_size(&fake, "hv2", OTHER_DISK), Some(5 << 20));
    for f in ["E:\\Hyper-V", "E:\\Hyper-V\\retired", other_vm_dir] {
        assert!(dir_exists(&fake, "hv2", f), "{f} was removed");
    }
    assert_eq!(
        file_size(&fake, "hv1", "E:\\VMs\\web\\Virtual Hard Disks\\web_1.vhdx"),
        Some(20 << 20)
    );
    // The record went with the last thing it named.
    assert_eq!(records_on_hv2(&fake, &g), vec![]);
    assert!(failed_leftovers(&fresh, &r).await.is_empty());

    // The retry is not refused on the old copies any more, and moves the VM.
    let r2 = req(&g, 2);
    let h2 = fresh.start_migration(&r2).await.unwrap();
    assert_eq!(
        common::run_to_end(&fake, &fresh, &r2, &h2).await,
        MigrationStatus::Completed
    );
    assert!(fresh.verify(&r2).await.unwrap().is_proof());
    assert_eq!(records_on_hv2(&fake, &g), vec![]);
}

/// Writes the record a crash can leave for web's attempt 1 (as the driver writes it).
fn crash_left_record(fake: &FakeHyperV, g: &str) {
    let lines: Vec<String> = vec![
        record::HEADER.into(),
        format!("disk={T0}"),
        format!("disk={T1}"),
        format!("folder={DISKS_DIR}"),
        format!("folder={CONFIG_DIR}"),
        format!("folder={VM_DIR}"),
    ];
    fake.with(|w| {
        let h = w.hosts.get_mut("hv2").unwrap();
        let k = format!("{}\\{g}", record::KEY);
        h.reg_create_key(&k);
        let key = h.registry.get_mut(&k.to_ascii_lowercase()).unwrap();
        let name = "run leftovers attempt 1".to_owned();
        key.values.insert(name.clone(), (name, lines));
    });
}

/// A start the migration service refuses leaves no record of its own (nothing was created). A
/// record left by a crash right after `MigrateVirtualSystemToHost` was sent (the job had only
/// made web's folder when it failed) vouches for what exists of it: a new driver lists that
/// folder; a refused start keeps it vouched for; the next attempt's record takes it over.
#[tokio::test]
async fn a_refused_start_leaves_no_record_and_a_crash_left_record_is_merged_into_the_next() {
    let (mut w, g) = world();
    w.faults
        .migrate_return
        .insert(g.clone(), [32768, 32768].into());
    let (fake, d) = common::start(w).await;
    let e = d.start_migration(&req(&g, 1)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
    assert_eq!(records_on_hv2(&fake, &g), vec![]);
    drop(d);

    // What the crash left: attempt 1's record and web's folder.
    crash_left_record(&fake, &g);
    fake.with(|w| w.hosts.get_mut("hv2").unwrap().mkdirs(VM_DIR));
    let fresh = common::driver(&fake);
    let r1 = req(&g, 1);
    let just_the_folder = vec![on_hv2(LeftoverKind::EmptyFolder, VM_DIR)];
    assert_eq!(failed_leftovers(&fresh, &r1).await, just_the_folder);

    // Attempt 2 is refused by the migration service: its record takes over the folder from
    // attempt 1's and keeps only that.
    let r2 = req(&g, 2);
    let e = fresh.start_migration(&r2).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
    let recs = records_on_hv2(&fake, &g);
    assert_eq!(
        recs,
        vec![(
            "run leftovers attempt 2".to_owned(),
            vec![record::HEADER.to_owned(), format!("folder={VM_DIR}")]
        )]
    );
    assert_eq!(failed_leftovers(&fresh, &r2).await, just_the_folder);

    // Attempt 3 finds web's folder there (not new for it) and fails after copying: its record
    // names the folder too, and the clean-up removes everything.
    let r3 = req(&g, 3);
    start_and_fail(&fake, &fresh, &r3).await;
    let recs = records_on_hv2(&fake, &g);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0].0, "run leftovers attempt 3");
    let left = failed_leftovers(&fresh, &r3).await;
    assert_eq!(left, everything_web_left());
    remove_all(&fresh, &r3, &left).await;
    assert!(!dir_exists(&fake, "hv2", VM_DIR));
    assert!(dir_exists(&fake, "hv2", "E:\\Hyper-V"));
    assert_eq!(records_on_hv2(&fake, &g), vec![]);
}
