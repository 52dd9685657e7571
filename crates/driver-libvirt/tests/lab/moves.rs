//! Moves on the lab: free memory, refused destinations, backing chains, checksums, offline
//! moves, aborts, backups, a writing guest and a foreign migration.

use crate::common::*;
use std::process::Command;
use std::time::Duration;
use vmove_driver::*;

/// A figure of /proc/meminfo in bytes (the lab's hosts share this machine's kernel).
fn meminfo(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/meminfo"));
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// What a host can give a new VM counts the page cache the kernel gives back on demand, which
/// libvirt's free memory (`MemFree`) leaves out (docs/drivers/libvirt.md). With 512 MiB read
/// into the page cache just before, the driver's figure must count it: well above MemFree, near
/// MemAvailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_memory_counts_the_page_cache_the_kernel_gives_back() {
    if !lab_enabled("free_memory_counts_the_page_cache_the_kernel_gives_back") {
        return;
    }
    let lab = Lab::new();
    let file = lab_dir().join("page-cache-filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&file).unwrap();
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..512 {
            f.write_all(&chunk).unwrap();
        }
        f.sync_all().unwrap();
    }
    std::fs::read(&file).unwrap(); // into the page cache
    let info = lab.driver.host_info(&HostId::new(b())).await.unwrap();
    let (free, available) = (meminfo("MemFree"), meminfo("MemAvailable"));
    std::fs::remove_file(&file).unwrap();
    let got = info.free_memory_bytes;
    assert!(
        got > free + (256 << 20),
        "the page cache is not counted: driver {got} B, MemFree {free} B, MemAvailable {available} B"
    );
    let off = got.abs_diff(available) as f64 / available as f64;
    assert!(
        off < 0.15,
        "driver {got} B is {:.0} % away from MemAvailable {available} B",
        off * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_path_taken_is_refused_and_the_file_is_untouched() {
    if !lab_enabled("destination_path_taken_is_refused_and_the_file_is_untouched") {
        return;
    }
    let lab = Lab::new();
    let (vm, name) = lab.mkvm("taken", &["--disks", "2"]);
    // The SECOND disk's path is taken: the first must not be created either.
    let other = outside(b(), &format!("/var/lib/libvirt/images/{name}-1.qcow2"));
    std::fs::write(&other, b"precious data of another VM").unwrap();
    let req = lab.request(&vm, &name, MigrationMode::Live);
    let err = lab.driver.start_migration(&req).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::DestinationRefused, "{err}");
    assert!(err.message.contains(&format!("{name}-1.qcow2")), "{err}");
    assert_eq!(
        std::fs::read(&other).unwrap(),
        b"precious data of another VM"
    );
    assert!(
        !outside(b(), &format!("/var/lib/libvirt/images/{name}-0.qcow2")).exists(),
        "nothing is pre-created before every check passed"
    );
    assert_eq!(virsh(a(), &["domstate", &name]).unwrap(), "running");
    assert!(
        lab.left(&req, LeftoverContext::AfterFailedAttempt)
            .await
            .is_empty()
    );
    lab.cleanup(&name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backing_chain_is_flattened_and_content_kept() {
    if !lab_enabled("backing_chain_is_flattened_and_content_kept") {
        return;
    }
    let lab = Lab::new();
    let (vm, name) = lab.mkvm("chain", &["--backing", "--fill", "8"]);
    let path = format!("/var/lib/libvirt/images/{name}-0.qcow2");
    let fp = lab.driver.footprint(&HostId::new(a()), &vm).await.unwrap();
    assert_eq!(
        fp.disks[0].backing_chain,
        vec![format!("/var/lib/libvirt/images/{name}-0-base.qcow2")]
    );
    let before = checksum(a(), &path);
    let req = lab.request(&vm, &name, MigrationMode::Live);
    lab.move_and_clean(&req).await;
    let after = checksum(b(), &path);
    assert_eq!(before, after, "guest-visible content changed");
    let info = run(Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(outside(b(), &path)));
    assert!(
        !info.contains("backing-filename"),
        "destination image still has a backing file: {info}"
    );
    assert!(!outside(b(), &format!("/var/lib/libvirt/images/{name}-0-base.qcow2")).exists());
    // The source keeps the whole chain until the engine asks; then it all goes.
    let left = lab.left(&req, LeftoverContext::AfterSuccess).await;
    let whats: Vec<&str> = left.iter().map(|l| l.what.as_str()).collect();
    assert!(
        whats.contains(&path.as_str()) && whats.iter().any(|w| w.ends_with("-0-base.qcow2")),
        "{left:?}"
    );
    assert!(
        whats.iter().any(|w| w.ends_with(&format!("{name}.log"))),
        "the QEMU log is a leftover: {left:?}"
    );
    lab.remove_all(&req, &left, LeftoverContext::AfterSuccess)
        .await;
    assert!(!outside(a(), &path).exists());
    assert!(!outside(a(), &format!("/var/lib/libvirt/images/{name}-0-base.qcow2")).exists());
    assert_eq!(virsh(b(), &["domstate", &name]).unwrap(), "running");
    lab.cleanup(&name);
}

/// What is in use on a source is read from each running VM's live definition (the chain QEMU
/// has open), without following its volumes; a shut-off VM's chain is followed volume by
/// volume. Either way a base image another VM still uses is neither listed nor removed when
/// the VM it came with has moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_image_another_vm_still_uses_is_never_a_leftover() {
    if !lab_enabled("a_base_image_another_vm_still_uses_is_never_a_leftover") {
        return;
    }
    let lab = Lab::new();
    let (vm, name) = lab.mkvm("based", &["--backing", "--fill", "8"]);
    let base = format!("/var/lib/libvirt/images/{name}-0-base.qcow2");
    // Another VM whose only disk is an overlay on that base.
    let share = |what: &str, start: bool| {
        let (_, other) = lab.mkvm(what, &["--off"]);
        let top = format!("/var/lib/libvirt/images/{other}-0.qcow2");
        run(Command::new("qemu-img")
            .args([
                "create", "-q", "-f", "qcow2", "-F", "qcow2", "-u", "-b", &base,
            ])
            .arg(outside(a(), &top))
            .arg("64M"));
        virsh(a(), &["pool-refresh", "images"]).unwrap();
        if start {
            virsh(a(), &["start", &other]).unwrap();
            let live = virsh(a(), &["dumpxml", &other]).unwrap();
            assert!(
                live.contains(&base),
                "the live definition lists the base: {live}"
            );
        }
        other
    };
    let running = share("sharer-on", true);
    let req = lab.request(&vm, &name, MigrationMode::Live);
    lab.move_and_clean(&req).await;
    let left = lab.left(&req, LeftoverContext::AfterSuccess).await;
    assert!(
        left.iter()
            .any(|l| l.what.ends_with(&format!("{name}-0.qcow2"))),
        "the moved VM's own image is a leftover: {left:?}"
    );
    assert!(
        !left.iter().any(|l| l.what == base),
        "a base another VM runs on is not a leftover: {left:?}"
    );
    let asked = Leftover {
        host: HostId::new(a()),
        kind: LeftoverKind::DiskImage,
        what: base.clone(),
    };
    let refused = || async {
        let err = lab
            .driver
            .remove_leftover(&req, &asked, LeftoverContext::AfterSuccess)
            .await
            .expect_err("a base in use is not removed");
        assert!(err.message.contains("is used by a VM"), "{err}");
        assert!(outside(a(), &base).exists());
    };
    // In use by the running VM (read from its live definition).
    refused().await;
    // In use by a shut-off VM only (its chain followed through the volumes).
    virsh(a(), &["destroy", &running]).unwrap();
    virsh(a(), &["undefine", &running]).unwrap();
    let off = share("sharer-off", false);
    refused().await;
    lab.remove_all(&req, &left, LeftoverContext::AfterSuccess)
        .await;
    assert!(outside(a(), &base).exists(), "still the shut-off VM's base");
    for n in [&running, &off, &name] {
        lab.cleanup(n);
    }
}

/// In both modes: the downtime is read from the destination's completed job whether vmove
/// (default) or the source's libvirtd (`p2p`) drove the migration.
async fn two_disks_move_with_equal_checksums_in(lab: &Lab) {
    let (vm, name) = lab.mkvm("two", &["--disks", "2", "--size", "64,32", "--fill", "8"]);
    let paths: Vec<String> = (0..2)
        .map(|i| format!("/var/lib/libvirt/images/{name}-{i}.qcow2"))
        .collect();
    let before: Vec<String> = paths.iter().map(|p| checksum(a(), p)).collect();
    assert_ne!(before[0], before[1], "the disks hold different data");
    let req = lab.request(&vm, &name, MigrationMode::Live);
    let proof = lab.move_and_clean(&req).await;
    // The switchover's pause, from the completed job's statistics on the destination (the
    // source domain is undefined by then); read again, it is still there (KEEP_COMPLETED).
    let paused = proof.downtime_ms.expect("a live move's downtime");
    assert!(paused > 0 && paused < 60_000, "downtime {paused} ms");
    let again = lab.driver.verify(&req).await.unwrap();
    assert_eq!(again.downtime_ms, Some(paused));
    let after: Vec<String> = paths.iter().map(|p| checksum(b(), p)).collect();
    assert_eq!(before, after);
    assert!(
        virsh(b(), &["dominfo", &name])
            .unwrap()
            .contains("Persistent:     yes")
    );
    assert!(
        virsh(a(), &["dominfo", &name]).is_err(),
        "undefined on the source"
    );
    lab.cleanup(&name);
}
in_both_modes!(
    two_disks_move_with_equal_checksums,
    two_disks_move_with_equal_checksums_p2p,
    two_disks_move_with_equal_checksums_in
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_move_keeps_content_and_stays_off() {
    if !lab_enabled("offline_move_keeps_content_and_stays_off") {
        return;
    }
    let lab = Lab::new();
    let (vm, name) = lab.mkvm(
        "off",
        &["--off", "--disks", "2", "--fill", "8", "--size", "256"],
    );
    let paths: Vec<String> = (0..2)
        .map(|i| format!("/var/lib/libvirt/images/{name}-{i}.qcow2"))
        .collect();
    let before: Vec<String> = paths.iter().map(|p| checksum(a(), p)).collect();
    let req = lab.request(&vm, &name, MigrationMode::Offline);
    let proof = lab.move_and_clean(&req).await;
    assert_eq!(proof.downtime_ms, None, "an offline move has no switchover");
    let after: Vec<String> = paths.iter().map(|p| checksum(b(), p)).collect();
    assert_eq!(before, after);
    assert_eq!(virsh(b(), &["domstate", &name]).unwrap(), "shut off");
    // Sparse: a 256 MiB disk with 8 MiB written takes far less than 256 MiB on B.
    let used = std::fs::metadata(outside(b(), &paths[0])).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.blocks() * 512
    });
    let used = used.unwrap();
    assert!(used < 64 << 20, "the copy is not sparse: {used} bytes");
    lab.cleanup(&name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_leaves_vm_on_source_and_a_removable_leftover_on_destination() {
    if !lab_enabled("abort_leaves_vm_on_source_and_a_removable_leftover_on_destination") {
        return;
    }
    let lab = Lab::new();
    let (vm, name) = lab.mkvm("abort", &["--size", "1024", "--fill", "512"]);
    let req = lab.request(&vm, &name, MigrationMode::Live);
    let h = lab.driver.start_migration(&req).await.unwrap();
    // Wait until it really runs, then abort.
    for _ in 0..100 {
        if matches!(
            lab.driver.migration_status(&req, &h).await.unwrap(),
            MigrationStatus::Running(_)
        ) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lab.driver.abort_migration(&req, &h).await.unwrap();
    let end = lab.wait_end(&req, &h).await;
    assert!(matches!(end, MigrationStatus::Failed(_)), "{end:?}");
    assert_eq!(virsh(a(), &["domstate", &name]).unwrap(), "running");
    let dest = format!("/var/lib/libvirt/images/{name}-0.qcow2");
    assert!(
        outside(b(), &dest).exists(),
        "libvirt leaves the pre-created image"
    );
    let left = lab.left(&req, LeftoverContext::AfterFailedAttempt).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].what, dest);
    lab.driver
        .remove_leftover(&req, &left[0], LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap();
    assert!(!outside(b(), &dest).exists());
    assert!(outside(a(), &dest).exists(), "the source disk is untouched");
    lab.cleanup(&name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_backup_is_seen_as_backing_up_and_blocks_a_start() {
    if !lab_enabled("pull_backup_is_seen_as_backing_up_and_blocks_a_start") {
        return;
    }
    let lab = Lab::new();
    let (vm, name) = lab.mkvm("backup", &[]);
    let xml = format!(
        "<domainbackup mode='pull'><server transport='unix' socket='/var/lib/libvirt/qemu/{name}-nbd.sock'/>\
         <disks><disk name='vda' backup='yes' type='file'><scratch file='/var/lib/libvirt/images/{name}-scratch.qcow2'/></disk></disks></domainbackup>"
    );
    let f = std::env::temp_dir().join(format!("{name}-backup.xml"));
    std::fs::write(&f, xml).unwrap();
    virsh(a(), &["backup-begin", &name, f.to_str().unwrap()]).unwrap();
    let vms = lab.driver.list_vms(&HostId::new(a())).await.unwrap();
    let info = vms.iter().find(|v| v.id == vm).unwrap();
    assert_eq!(info.activity, Activity::BackingUp);
    assert_eq!(info.health, Health::InService);
    let err = lab
        .driver
        .start_migration(&lab.request(&vm, &name, MigrationMode::Live))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Transient, "{err}");
    virsh(a(), &["domjobabort", &name]).unwrap();
    let vms = lab.driver.list_vms(&HostId::new(a())).await.unwrap();
    assert_eq!(
        vms.iter().find(|v| v.id == vm).unwrap().activity,
        Activity::Idle
    );
    let _ = std::fs::remove_file(f);
    lab.cleanup(&name);
}

/// The highest `vmove-counter N` in a serial log (0 when none).
fn last_counter(log: &std::path::Path) -> u64 {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("vmove-counter "))
        .filter_map(|n| n.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

/// The counter the guest last wrote to sector 0 of its disk (read without locking).
fn disk_counter(host: &str, path: &str) -> u64 {
    let out = run(Command::new("qemu-io")
        .args(["-U", "-r", "-f", "qcow2", "-c", "read -v 0 64"])
        .arg(outside(host, path)));
    // qemu-io -v prints a hex dump with the text on the right: collect the text column.
    let text: String = out.lines().filter_map(|l| l.split("  ").last()).collect();
    // (qemu-io shows '-' and ' ' as '.': "vmove.counter.000000000011".)
    text.split("counter")
        .nth(1)
        .and_then(|s| {
            s.chars()
                .skip(1)
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linux_guest_keeps_writing_on_the_destination() {
    if !lab_enabled("linux_guest_keeps_writing_on_the_destination") {
        return;
    }
    let lab = Lab::new();
    let (vm, name) = lab.mkvm("linux", &["--linux", "--size", "64"]);
    let log_a = lab_dir()
        .join(a())
        .join(format!("log/qemu/{name}-serial0.log"));
    let log_b = lab_dir()
        .join(b())
        .join(format!("log/qemu/{name}-serial0.log"));
    let disk = format!("/var/lib/libvirt/images/{name}-0.qcow2");
    for _ in 0..120 {
        if last_counter(&log_a) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        last_counter(&log_a) >= 3,
        "the guest did not boot and count on hostA"
    );
    let req = lab.request(&vm, &name, MigrationMode::Live);
    lab.move_and_clean(&req).await;
    let on_a = last_counter(&log_a);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let on_b = last_counter(&log_b);
    assert!(
        on_b > on_a,
        "the guest does not count on hostB: last on A {on_a}, on B {on_b}"
    );
    let d1 = disk_counter(b(), &disk);
    assert!(
        d1 > on_a,
        "the disk on hostB holds counter {d1}, not past {on_a}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d2 = disk_counter(b(), &disk);
    assert!(
        d2 > d1,
        "the guest's writes do not reach its disk on hostB ({d1} then {d2})"
    );
    assert_eq!(virsh(b(), &["domstate", &name]).unwrap(), "running");
    lab.cleanup(&name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_migration_is_seen_on_both_hosts_without_waiting_for_its_job() {
    if !lab_enabled("foreign_migration_is_seen_on_both_hosts_without_waiting_for_its_job") {
        return;
    }
    let lab = Lab::new();
    let (vm, name) = lab.mkvm("foreign", &["--size", "256", "--fill", "128"]);
    // A slow migration started by someone else (virsh), 4 MiB/s.
    let mut child = Command::new("virsh")
        .args([
            "-q",
            "-c",
            &uri(a()),
            "migrate",
            "--live",
            "--copy-storage-all",
            "--persistent",
        ])
        .args(["--undefinesource", "--bandwidth", "4", &name, &uri(b())])
        .spawn()
        .unwrap();
    let mut seen = false;
    for _ in 0..40 {
        if virsh(a(), &["domjobinfo", &name])
            .unwrap_or_default()
            .contains("Outgoing migration")
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(seen, "the foreign migration did not start");
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The destination's domain is paused with the migration holding its job: reading it must
    // not wait for that job (a block job query would, 30 s).
    let t = std::time::Instant::now();
    let on_b = lab.driver.list_vms(&HostId::new(b())).await.unwrap();
    let hb = lab.driver.host_info(&HostId::new(b())).await.unwrap();
    let on_a = lab.driver.list_vms(&HostId::new(a())).await.unwrap();
    let ha = lab.driver.host_info(&HostId::new(a())).await.unwrap();
    let took = t.elapsed();
    let _ = virsh(a(), &["domjobabort", &name]);
    let _ = child.wait();
    assert!(
        took < Duration::from_secs(10),
        "reading the hosts took {took:?}"
    );
    assert_eq!(
        on_b.iter().find(|v| v.id == vm).map(|v| v.activity.clone()),
        Some(Activity::MigratingIn)
    );
    assert_eq!(
        on_a.iter().find(|v| v.id == vm).map(|v| v.activity.clone()),
        Some(Activity::MigratingOut)
    );
    assert_eq!((ha.active_migrations, hb.active_migrations), (1, 1));
    lab.cleanup(&name);
}

/// A job query that races a domain's stop is answered "domain is not running"
/// (VIR_ERR_OPERATION_INVALID): that means no job, not a failed read. CI saw it end a p2p
/// catalogue move with "cannot read the migration's job: ... domain is not running" (the
/// source polled between the migration's end and its undefine). Made certain here with a
/// domain that is shut off: the status of a migration adopted on it says no job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_query_on_a_stopped_domain_means_no_job_not_a_failed_read() {
    if !lab_enabled("a_job_query_on_a_stopped_domain_means_no_job_not_a_failed_read") {
        return;
    }
    let lab = Lab::new();
    let (vm, name) = lab.mkvm("stopped", &["--off", "--size", "16"]);
    let req = lab.request(&vm, &name, MigrationMode::Live);
    let status = lab
        .driver
        .migration_status(&req, &MigrationHandle(format!("adopted:{vm}").into()))
        .await;
    match status {
        Ok(MigrationStatus::Failed(f)) => {
            assert!(f.message.contains("no migration job runs"), "{f:?}")
        }
        other => panic!("expected: no job runs; got {other:?}"),
    }
    lab.cleanup(&name);
}

/// The convergence aids on a real migration (libvirt and QEMU, not a fake). Hosts configured
/// with `post_copy = true` and a 2 MiB/s cap: a Linux guest's migration is still copying when
/// the aids are asked.
/// - A raised downtime doubles the allowed downtime libvirt reports (from at least the
///   driver's 150 ms floor).
/// - Post-copy is accepted. Asked while libvirt still mirrors the disks, it is refused (QEMU's
///   migration has not started: "Postcopy must be started after migration has been started"),
///   so it is asked again until it takes.
/// - In post-copy (its bandwidth held at 1 MiB/s with `virsh migrate-setspeed --postcopy` so
///   the phase lasts) the guest runs on hostB, and the driver's abort is refused (libvirt's
///   `virDomainAbortJob`: "In case the job is a migration in a post-copy mode, this function
///   will report an error"); the migration goes on.
/// - It ends Completed, is proven, and the guest counts on hostB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convergence_aids_on_a_real_migration_and_post_copy_is_never_aborted() {
    if !lab_enabled("convergence_aids_on_a_real_migration_and_post_copy_is_never_aborted") {
        return;
    }
    let lab = Lab::post_copy(2);
    let (vm, name) = lab.mkvm("aids", &["--linux", "--size", "64"]);
    let log_b = lab_dir()
        .join(b())
        .join(format!("log/qemu/{name}-serial0.log"));
    let log_a = lab_dir()
        .join(a())
        .join(format!("log/qemu/{name}-serial0.log"));
    for _ in 0..120 {
        if last_counter(&log_a) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(last_counter(&log_a) >= 3, "the guest did not boot on hostA");
    let req = lab.request(&vm, &name, MigrationMode::Live);
    let h = lab.driver.start_migration(&req).await.unwrap();
    let downtime = || -> u64 {
        virsh(a(), &["migrate-getmaxdowntime", &name])
            .unwrap()
            .parse()
            .unwrap()
    };

    // The allowed downtime, doubled.
    let mut raised = None;
    for _ in 0..200 {
        let before = downtime();
        match lab
            .driver
            .converge(&req, &h, ConvergenceAid::RaiseDowntime)
            .await
        {
            Ok(true) => {
                raised = Some((before, downtime()));
                break;
            }
            Ok(false) => panic!("the raise was not applied (downtime {before} ms)"),
            Err(e) => eprintln!("raise refused for now: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (before, after) = raised.expect("the allowed downtime was never raised");
    assert_eq!(after, before.max(150) * 2, "{before} -> {after}");

    // Post-copy, at 1 MiB/s so that it lasts.
    virsh(a(), &["migrate-setspeed", "--postcopy", &name, "1"]).unwrap();
    let mut refused_first = Vec::new();
    let mut applied = false;
    for _ in 0..240 {
        match lab
            .driver
            .converge(&req, &h, ConvergenceAid::PostCopy)
            .await
        {
            Ok(true) => {
                applied = true;
                break;
            }
            Ok(false) => panic!("post-copy was not applied though configured"),
            Err(e) => refused_first.push(e.to_string()),
        }
        let st = lab.driver.migration_status(&req, &h).await.unwrap();
        assert!(
            matches!(st, MigrationStatus::Running(_) | MigrationStatus::Pending),
            "the migration ended before post-copy took: {st:?} ({refused_first:?})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(applied, "post-copy never took: {refused_first:?}");
    eprintln!(
        "post-copy took after {} refusals ({:?})",
        refused_first.len(),
        refused_first.last()
    );
    let mut in_post_copy = false;
    for _ in 0..100 {
        if virsh(b(), &["domstate", "--reason", &name])
            .is_ok_and(|s| s.starts_with("running (post-copy)"))
        {
            in_post_copy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        in_post_copy,
        "the destination is not running in post-copy: {:?}",
        virsh(b(), &["domstate", "--reason", &name])
    );
    let abort = lab.driver.abort_migration(&req, &h).await;
    assert!(
        abort.is_err(),
        "an abort in post-copy was accepted: {abort:?}"
    );
    assert!(
        virsh(b(), &["domstate", "--reason", &name]).is_ok_and(|s| s.starts_with("running")),
        "the guest does not run on hostB after the refused abort"
    );
    // Let it finish.
    virsh(a(), &["migrate-setspeed", "--postcopy", &name, "8192"]).unwrap();
    let end = lab.wait_end(&req, &h).await;
    assert_eq!(end, MigrationStatus::Completed);
    let v = lab.driver.verify(&req).await.unwrap();
    assert!(v.is_proof(), "{v:?}");
    let on_b = last_counter(&log_b);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        last_counter(&log_b) > on_b,
        "the guest does not count on hostB (last {on_b})"
    );
    lab.cleanup(&name);
}

/// vmove itself (the real binary), with hosts that allow post-copy and a 2 MiB/s cap, and
/// watchdogs short enough to fire while libvirt still mirrors the disks: auto-converge is not
/// armed (not applied), nor is a raise of the allowed downtime (capped at QEMU's 300 ms), post-copy is refused by QEMU while the disks copy ("Postcopy must be
/// started after migration has been started") and asked again while the copy progresses,
/// until it takes; the VM moves in one attempt and runs on hostB only; without and with `p2p`.
/// Before, the first aid not applied made the stall watchdog fire with its default action
/// (abort): "stalled: no progress" of a migration that progressed, and every next attempt was
/// aborted at the same point.
#[test]
fn vmove_asks_post_copy_again_after_a_refusal_during_the_disk_copy_and_the_vm_moves() {
    if !lab_enabled(
        "vmove_asks_post_copy_again_after_a_refusal_during_the_disk_copy_and_the_vm_moves",
    ) {
        return;
    }
    let lab = Lab::new();
    for p2p in [false, true] {
        let (_, name) = lab.mkvm(
            if p2p { "pcagainp" } else { "pcagain" },
            &["--linux", "--size", "64"],
        );
        // `max_downtime_ms = 300`, QEMU's own allowed downtime: the raises the watchdogs ask
        // before post-copy are not applied, so post-copy is asked while the disks still copy.
        let host = format!(
            "post_copy = true\nbandwidth_mib_s = 2\nmax_downtime_ms = 300\n{}",
            if p2p { "p2p = true\n" } else { "" }
        );
        // The watchdogs: a completion timeout of 10 s (the disks alone take about 30 s at
        // 2 MiB/s), and 10 s without progress for a stall, so that post-copy is asked again
        // every 10 s.
        let dir = run_folder(
            &name,
            "completion_timeout_min = \"10s\"\ncompletion_timeout_per_gib = \"1s\"\nstall_timeout = \"10s\"\n",
            [(uri(a()), &host), (uri(b()), &host)],
        );
        let status = spawn_vmove(
            &dir,
            "run",
            &["migrate", &format!("{}:{name}", a()), "--to", b()],
        )
        .wait()
        .unwrap();
        let out = said(&dir, "run");
        eprintln!("p2p {p2p}:\n{out}");
        assert!(status.success(), "p2p {p2p}: vmove exited {status}: {out}");
        assert!(
            out.contains("post-copy refused for now") && out.contains("Postcopy must be started"),
            "p2p {p2p}: post-copy was not refused during the disk copy: {out}"
        );
        assert!(
            out.contains("convergence aid applied: switched to post-copy"),
            "p2p {p2p}: post-copy never took: {out}"
        );
        assert!(
            !out.contains("no convergence aid helped") && !out.contains("stalled"),
            "p2p {p2p}: an attempt was aborted: {out}"
        );
        let state = |h: &str| virsh(h, &["domstate", &name]).unwrap_or_else(|_| "absent".into());
        assert_eq!(state(b()), "running", "p2p {p2p}: {out}");
        assert_eq!(state(a()), "absent", "p2p {p2p}: {out}");
        lab.cleanup(&name);
    }
}

/// vmove itself (the real binary) with a new user's host settings (no `auto_converge`, no
/// `post_copy`: the only aid such hosts can apply is a raised allowed downtime) and a 4 MiB/s
/// cap, so that the migration outlives a 10 s completion timeout: the completion watchdog's
/// auto-converge is not applied, and the allowed downtime is raised instead (libvirt's
/// `migrate-getmaxdowntime` on the source reads more than QEMU's 300 ms while it runs); the
/// migration goes on and the VM moves in its first attempt; without and with `p2p`. Before,
/// the watchdogs never asked for a raise (`max_downtime_ms` had no effect): auto-converge and
/// post-copy both not applied, every attempt was aborted at its completion timeout ("did not
/// converge and no convergence aid helped").
#[test]
fn vmove_with_a_new_users_settings_raises_the_allowed_downtime_past_the_completion_timeout() {
    if !lab_enabled(
        "vmove_with_a_new_users_settings_raises_the_allowed_downtime_past_the_completion_timeout",
    ) {
        return;
    }
    let lab = Lab::new();
    // Both modes at once (two runs, each with its own VM, folder and journal), so that the
    // test takes one migration's time.
    let mut runs: Vec<_> = [false, true]
        .into_iter()
        .map(|p2p| {
            let (_, name) = lab.mkvm(
                if p2p { "raisep" } else { "raise" },
                &["--linux", "--size", "64"],
            );
            let host = format!(
                "bandwidth_mib_s = 4\n{}",
                if p2p { "p2p = true\n" } else { "" }
            );
            // A completion timeout of 10 s (the guest's 128 MiB of memory take about 35 s at
            // 4 MiB/s); each raise applied is given a stall timeout (40 s) before the next
            // firing.
            let dir = run_folder(
                &name,
                "completion_timeout_min = \"10s\"\ncompletion_timeout_per_gib = \"1s\"\nstall_timeout = \"40s\"\n",
                [(uri(a()), &host), (uri(b()), &host)],
            );
            let child = spawn_vmove(
                &dir,
                "run",
                &["migrate", &format!("{}:{name}", a()), "--to", b()],
            );
            (p2p, name, dir, child, 0u64, None)
        })
        .collect();
    // The source's allowed downtime while each migration runs (libvirt answers only while a
    // migration job runs; the largest figure read is kept).
    while runs.iter().any(|r| r.5.is_none()) {
        for (_, name, _, child, most, status) in runs.iter_mut().filter(|r| r.5.is_none()) {
            if let Some(s) = child.try_wait().unwrap() {
                *status = Some(s);
            } else if let Some(ms) = virsh(a(), &["migrate-getmaxdowntime", name])
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
            {
                *most = (*most).max(ms);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for (p2p, name, dir, _, most, status) in runs {
        let status = status.unwrap();
        let out = said(&dir, "run");
        eprintln!("p2p {p2p}: largest allowed downtime read {most} ms\n{out}");
        assert!(status.success(), "p2p {p2p}: vmove exited {status}: {out}");
        assert!(
            out.contains("completion watchdog fired")
                && out.contains("convergence aid applied: the allowed downtime raised"),
            "p2p {p2p}: the allowed downtime was not raised: {out}"
        );
        assert!(
            most > 300,
            "p2p {p2p}: the source's allowed downtime never read above 300 ms (largest {most})"
        );
        assert!(
            !out.contains("no convergence aid helped")
                && !out.contains("attempt 1 failed")
                && !out.contains("attempt 2,"),
            "p2p {p2p}: an attempt was aborted: {out}"
        );
        let state = |h: &str| virsh(h, &["domstate", &name]).unwrap_or_else(|_| "absent".into());
        assert_eq!(state(b()), "running", "p2p {p2p}: {out}");
        assert_eq!(state(a()), "absent", "p2p {p2p}: {out}");
        lab.cleanup(&name);
    }
}
