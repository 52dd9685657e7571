//! Tests against the real two-host libvirt lab (`lab/up.sh`): root, real libvirtd and QEMU.
//!
//! Every test skips, loudly, unless `VMOVE_LAB=1` (CI sets it after `lab/up.sh`; `lab/ci.sh`
//! does both). Run one at a time: `cargo test -p vmove-driver-libvirt --test lab -- --test-threads=1`.
#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;
use vmove_driver::conformance::{self, Fixture, VmShape};
use vmove_driver::*;
use vmove_driver_libvirt::{LibvirtDriver, LibvirtHostConfig};

const A: &str = "hostA";
const B: &str = "hostB";

fn lab_enabled(test: &str) -> bool {
    if std::env::var("VMOVE_LAB").as_deref() == Ok("1") {
        return true;
    }
    eprintln!(
        "\n!!! SKIPPED {test}: needs the libvirt lab (run lab/up.sh as root, then VMOVE_LAB=1) !!!\n"
    );
    false
}

fn lab_dir() -> PathBuf {
    PathBuf::from(std::env::var("VMOVE_LAB_DIR").unwrap_or_else(|_| "/var/tmp/vmove-lab".into()))
}

fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../lab")
}

/// The lab host's URI (lab/common.sh: 127.0.0.(VMOVE_LAB_IP_BASE + index), base 2).
fn uri(host: &str) -> String {
    let base: u8 = std::env::var("VMOVE_LAB_IP_BASE")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(2);
    match host {
        A => format!("qemu+tcp://127.0.0.{base}/system"),
        B => format!("qemu+tcp://127.0.0.{}/system", base + 1),
        _ => unreachable!("two lab hosts"),
    }
}

/// Where a path inside a host's images folder is from outside its namespace.
fn outside(host: &str, path: &str) -> PathBuf {
    let rest = path
        .strip_prefix("/var/lib/libvirt/")
        .expect("lab paths live under /var/lib/libvirt");
    lab_dir().join(host).join("lib").join(rest)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn virsh(host: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("virsh")
        .arg("-q")
        .arg("-c")
        .arg(uri(host))
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn checksum(host: &str, path: &str) -> String {
    run(Command::new(scripts().join("checksum.sh"))
        .arg(host)
        .arg(path))
}

struct Lab {
    driver: LibvirtDriver,
    names: Mutex<HashMap<VmId, String>>,
    prefix: String,
}

impl Lab {
    fn new() -> Self {
        let cfg = |h: &str| LibvirtHostConfig {
            uri: uri(h),
            pool: "images".into(),
            path: None,
            migration_ports: None,
            p2p: false,
            auto_converge: false,
            post_copy: false,
            bandwidth_mib_s: None,
            max_downtime_ms: None,
            driver: None,
            max_migrations: None,
        };
        Lab {
            driver: LibvirtDriver::new(vec![(HostId::new(A), cfg(A)), (HostId::new(B), cfg(B))]),
            names: Mutex::new(HashMap::new()),
            prefix: format!("t{}", std::process::id() % 100000),
        }
    }

    /// Creates a VM on hostA with `lab/mkvm.sh` and extra options.
    fn mkvm(&self, name: &str, opts: &[&str]) -> (VmId, String) {
        let name = format!("{}-{name}", self.prefix);
        let uuid = run(Command::new(scripts().join("mkvm.sh"))
            .arg(A)
            .arg(&name)
            .args(opts));
        let id = VmId::new(uuid.lines().last().unwrap_or_default().to_owned());
        self.names.lock().unwrap().insert(id.clone(), name.clone());
        (id, name)
    }

    fn cleanup(&self, name: &str) {
        for h in [A, B] {
            let _ = virsh(h, &["destroy", name]);
            let _ = virsh(h, &["undefine", name]);
            for dir in ["lib/images", "log/qemu"] {
                if let Ok(rd) = std::fs::read_dir(lab_dir().join(h).join(dir)) {
                    for e in rd.flatten() {
                        if e.file_name()
                            .to_string_lossy()
                            .starts_with(&format!("{name}-"))
                            || e.file_name().to_string_lossy() == format!("{name}.log")
                        {
                            let _ = std::fs::remove_file(e.path());
                        }
                    }
                }
            }
            let _ = virsh(h, &["pool-refresh", "images"]);
        }
    }

    fn request(&self, vm: &VmId, name: &str, mode: MigrationMode) -> MigrationRequest {
        MigrationRequest {
            vm: vm.clone(),
            vm_name: name.to_owned(),
            source: HostId::new(A),
            destination: HostId::new(B),
            mode,
            layout: PathLayout::default(),
            attempt: 1,
            run_id: "labtest".into(),
        }
    }

    async fn wait_end(&self, req: &MigrationRequest, h: &MigrationHandle) -> MigrationStatus {
        for _ in 0..1200 {
            match self.driver.migration_status(req, h).await.unwrap() {
                MigrationStatus::Pending | MigrationStatus::Running(_) => {}
                end => return end,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("migration of {} did not end in 120 s", req.vm_name);
    }

    async fn move_and_clean(&self, req: &MigrationRequest) {
        let h = self.driver.start_migration(req).await.unwrap();
        let end = self.wait_end(req, &h).await;
        assert_eq!(end, MigrationStatus::Completed);
        let v = self.driver.verify(req).await.unwrap();
        assert!(v.is_proof(), "{v:?}");
    }
}

#[async_trait]
impl Fixture for Lab {
    fn driver(&self) -> &dyn Driver {
        &self.driver
    }
    fn source(&self) -> HostId {
        HostId::new(A)
    }
    fn destination(&self) -> HostId {
        HostId::new(B)
    }
    async fn create_vm(&self, shape: &VmShape) -> VmId {
        let sizes: Vec<String> = shape.disks_mib.iter().map(|s| s.to_string()).collect();
        let mut opts = vec![
            "--mem".to_owned(),
            shape.memory_mib.to_string(),
            "--disks".to_owned(),
            shape.disks_mib.len().to_string(),
            "--size".to_owned(),
            sizes.join(","),
        ];
        if !shape.running {
            opts.push("--off".into());
        }
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        self.mkvm(&shape.name, &opts).0
    }
    async fn occupy_destination_path(&self, vm: &VmId) -> bool {
        let name = self.names.lock().unwrap()[vm].clone();
        let p = outside(B, &format!("/var/lib/libvirt/images/{name}-0.qcow2"));
        std::fs::write(&p, b"someone else's file").unwrap();
        true
    }
    async fn destroy_vm(&self, vm: &VmId) {
        let name = self.names.lock().unwrap().get(vm).cloned();
        if let Some(name) = name {
            self.cleanup(&name);
        }
    }
    fn migration_timeout(&self) -> Duration {
        Duration::from_secs(120)
    }
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_the_lab() {
    if !lab_enabled("conformance_suite_on_the_lab") {
        return;
    }
    conformance::run_all(&Lab::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_path_taken_is_refused_and_the_file_is_untouched() {
    if !lab_enabled("destination_path_taken_is_refused_and_the_file_is_untouched") {
        return;
    }
    let lab = Lab::new();
    let (vm, name) = lab.mkvm("taken", &["--disks", "2"]);
    // The SECOND disk's path is taken: the first must not be created either.
    let other = outside(B, &format!("/var/lib/libvirt/images/{name}-1.qcow2"));
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
        !outside(B, &format!("/var/lib/libvirt/images/{name}-0.qcow2")).exists(),
        "nothing is pre-created before every check passed"
    );
    assert_eq!(virsh(A, &["domstate", &name]).unwrap(), "running");
    assert!(
        lab.driver
            .leftovers(&req, LeftoverContext::AfterFailedAttempt)
            .await
            .unwrap()
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
    let fp = lab.driver.footprint(&HostId::new(A), &vm).await.unwrap();
    assert_eq!(
        fp.disks[0].backing_chain,
        vec![format!("/var/lib/libvirt/images/{name}-0-base.qcow2")]
    );
    let before = checksum(A, &path);
    let req = lab.request(&vm, &name, MigrationMode::Live);
    lab.move_and_clean(&req).await;
    let after = checksum(B, &path);
    assert_eq!(before, after, "guest-visible content changed");
    let info = run(Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(outside(B, &path)));
    assert!(
        !info.contains("backing-filename"),
        "destination image still has a backing file: {info}"
    );
    assert!(!outside(B, &format!("/var/lib/libvirt/images/{name}-0-base.qcow2")).exists());
    // The source keeps the whole chain until the engine asks; then it all goes.
    let left = lab
        .driver
        .leftovers(&req, LeftoverContext::AfterSuccess)
        .await
        .unwrap();
    let whats: Vec<&str> = left.iter().map(|l| l.what.as_str()).collect();
    assert!(
        whats.contains(&path.as_str()) && whats.iter().any(|w| w.ends_with("-0-base.qcow2")),
        "{left:?}"
    );
    assert!(
        whats.iter().any(|w| w.ends_with(&format!("{name}.log"))),
        "the QEMU log is a leftover: {left:?}"
    );
    for l in &left {
        lab.driver
            .remove_leftover(&req, l, LeftoverContext::AfterSuccess)
            .await
            .unwrap();
    }
    assert!(!outside(A, &path).exists());
    assert!(!outside(A, &format!("/var/lib/libvirt/images/{name}-0-base.qcow2")).exists());
    assert_eq!(virsh(B, &["domstate", &name]).unwrap(), "running");
    lab.cleanup(&name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_disks_move_with_equal_checksums() {
    if !lab_enabled("two_disks_move_with_equal_checksums") {
        return;
    }
    let lab = Lab::new();
    let (vm, name) = lab.mkvm("two", &["--disks", "2", "--size", "64,32", "--fill", "8"]);
    let paths: Vec<String> = (0..2)
        .map(|i| format!("/var/lib/libvirt/images/{name}-{i}.qcow2"))
        .collect();
    let before: Vec<String> = paths.iter().map(|p| checksum(A, p)).collect();
    assert_ne!(before[0], before[1], "the disks hold different data");
    let req = lab.request(&vm, &name, MigrationMode::Live);
    lab.move_and_clean(&req).await;
    let after: Vec<String> = paths.iter().map(|p| checksum(B, p)).collect();
    assert_eq!(before, after);
    assert!(
        virsh(B, &["dominfo", &name])
            .unwrap()
            .contains("Persistent:     yes")
    );
    assert!(
        virsh(A, &["dominfo", &name]).is_err(),
        "undefined on the source"
    );
    lab.cleanup(&name);
}

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
    let before: Vec<String> = paths.iter().map(|p| checksum(A, p)).collect();
    let req = lab.request(&vm, &name, MigrationMode::Offline);
    lab.move_and_clean(&req).await;
    let after: Vec<String> = paths.iter().map(|p| checksum(B, p)).collect();
    assert_eq!(before, after);
    assert_eq!(virsh(B, &["domstate", &name]).unwrap(), "shut off");
    // Sparse: a 256 MiB disk with 8 MiB written takes far less than 256 MiB on B.
    let used = std::fs::metadata(outside(B, &paths[0])).map(|m| {
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
    assert_eq!(virsh(A, &["domstate", &name]).unwrap(), "running");
    let dest = format!("/var/lib/libvirt/images/{name}-0.qcow2");
    assert!(
        outside(B, &dest).exists(),
        "libvirt leaves the pre-created image"
    );
    let left = lab
        .driver
        .leftovers(&req, LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].what, dest);
    lab.driver
        .remove_leftover(&req, &left[0], LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap();
    assert!(!outside(B, &dest).exists());
    assert!(outside(A, &dest).exists(), "the source disk is untouched");
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
    virsh(A, &["backup-begin", &name, f.to_str().unwrap()]).unwrap();
    let vms = lab.driver.list_vms(&HostId::new(A)).await.unwrap();
    let info = vms.iter().find(|v| v.id == vm).unwrap();
    assert_eq!(info.activity, Activity::BackingUp);
    assert_eq!(info.health, Health::InService);
    let err = lab
        .driver
        .start_migration(&lab.request(&vm, &name, MigrationMode::Live))
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Transient, "{err}");
    virsh(A, &["domjobabort", &name]).unwrap();
    let vms = lab.driver.list_vms(&HostId::new(A)).await.unwrap();
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
        .join(A)
        .join(format!("log/qemu/{name}-serial0.log"));
    let log_b = lab_dir()
        .join(B)
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
    let d1 = disk_counter(B, &disk);
    assert!(
        d1 > on_a,
        "the disk on hostB holds counter {d1}, not past {on_a}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d2 = disk_counter(B, &disk);
    assert!(
        d2 > d1,
        "the guest's writes do not reach its disk on hostB ({d1} then {d2})"
    );
    assert_eq!(virsh(B, &["domstate", &name]).unwrap(), "running");
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
            &uri(A),
            "migrate",
            "--live",
            "--copy-storage-all",
            "--persistent",
        ])
        .args(["--undefinesource", "--bandwidth", "4", &name, &uri(B)])
        .spawn()
        .unwrap();
    let mut seen = false;
    for _ in 0..40 {
        if virsh(A, &["domjobinfo", &name])
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
    let on_b = lab.driver.list_vms(&HostId::new(B)).await.unwrap();
    let hb = lab.driver.host_info(&HostId::new(B)).await.unwrap();
    let on_a = lab.driver.list_vms(&HostId::new(A)).await.unwrap();
    let ha = lab.driver.host_info(&HostId::new(A)).await.unwrap();
    let took = t.elapsed();
    let _ = virsh(A, &["domjobabort", &name]);
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
