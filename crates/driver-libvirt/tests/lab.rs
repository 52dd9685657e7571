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

/// The lab's two hosts: the first two of `VMOVE_LAB_HOSTS` (lab/common.sh; default
/// "hostA hostB"), so the tests run on any lab brought up with the same environment.
fn lab_hosts() -> &'static (String, String) {
    static HOSTS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    HOSTS.get_or_init(|| {
        let env = std::env::var("VMOVE_LAB_HOSTS").unwrap_or_else(|_| "hostA hostB".into());
        let mut it = env.split_whitespace().map(str::to_owned);
        let a = it.next().unwrap_or_else(|| "hostA".into());
        let b = it.next().expect("VMOVE_LAB_HOSTS names two lab hosts");
        (a, b)
    })
}

/// The source host of the tests.
fn a() -> &'static str {
    &lab_hosts().0
}

/// The destination host of the tests.
fn b() -> &'static str {
    &lab_hosts().1
}

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

/// The lab host's URI (lab/common.sh: 127.0.0.(VMOVE_LAB_IP_BASE + index), base 2, where
/// hostA has index 0, hostB 1, ...; with VMOVE_LAB_NET=netns 198.18.0.(base + index), base 10).
fn uri(host: &str) -> String {
    let netns = std::env::var("VMOVE_LAB_NET").as_deref() == Ok("netns");
    let (prefix, default_base) = if netns {
        ("198.18.0", 10)
    } else {
        ("127.0.0", 2)
    };
    let base: u8 = std::env::var("VMOVE_LAB_IP_BASE")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(default_base);
    let index = match host.strip_prefix("host").map(str::as_bytes) {
        Some([c]) if c.is_ascii_uppercase() => c - b'A',
        _ => panic!("unknown lab host '{host}' (hostA, hostB, ...)"),
    };
    format!("qemu+tcp://{prefix}.{}/system", base + index)
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
        Self::with_bandwidth(None)
    }

    /// A lab whose migrations are capped at `bandwidth_mib_s` (None: uncapped).
    fn with_bandwidth(bandwidth_mib_s: Option<u64>) -> Self {
        let cfg = |h: &str| LibvirtHostConfig {
            uri: uri(h),
            pool: "images".into(),
            path: None,
            migration_ports: None,
            p2p: false,
            auto_converge: false,
            post_copy: false,
            bandwidth_mib_s,
            max_downtime_ms: None,
            keepalive_interval_s: 5,
            keepalive_count: 3,
            driver: None,
            max_migrations: None,
        };
        Lab {
            driver: LibvirtDriver::new(vec![
                (HostId::new(a()), cfg(a())),
                (HostId::new(b()), cfg(b())),
            ]),
            names: Mutex::new(HashMap::new()),
            prefix: format!("t{}", std::process::id() % 100000),
        }
    }

    /// Creates a VM on hostA with `lab/mkvm.sh` and extra options.
    fn mkvm(&self, name: &str, opts: &[&str]) -> (VmId, String) {
        let name = format!("{}-{name}", self.prefix);
        let uuid = run(Command::new(scripts().join("mkvm.sh"))
            .arg(a())
            .arg(&name)
            .args(opts));
        let id = VmId::new(uuid.lines().last().unwrap_or_default().to_owned());
        self.names.lock().unwrap().insert(id.clone(), name.clone());
        (id, name)
    }

    fn cleanup(&self, name: &str) {
        for h in [a(), b()] {
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
            source: HostId::new(a()),
            destination: HostId::new(b()),
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

    /// A new driver instance (as in a restarted process: nothing in memory) that knows the
    /// name of this VM for its clean-up.
    fn restarted(vm: &VmId, name: &str) -> Self {
        let lab = Lab::new();
        lab.names
            .lock()
            .unwrap()
            .insert(vm.clone(), name.to_owned());
        lab
    }

    /// The leftovers the driver lists (the listing must work).
    async fn left(&self, req: &MigrationRequest, ctx: LeftoverContext) -> Vec<Leftover> {
        self.driver.leftovers(req, ctx).await.unwrap()
    }

    /// Removes these leftovers, each of which must go.
    async fn remove_all(&self, req: &MigrationRequest, left: &[Leftover], ctx: LeftoverContext) {
        for l in left {
            self.driver
                .remove_leftover(req, l, ctx)
                .await
                .unwrap_or_else(|e| panic!("removing {l:?}: {e}"));
        }
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
        HostId::new(a())
    }
    fn destination(&self) -> HostId {
        HostId::new(b())
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
        let p = outside(b(), &format!("/var/lib/libvirt/images/{name}-0.qcow2"));
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

/// Regression: the driver reported libvirt's free memory (`MemFree`) as what a host can give a
/// new VM, leaving out the page cache the kernel gives back on demand. On the lab, with most of
/// 24 GiB in page cache, a host with 23 GiB available looked 1.5 GiB free and `vmove plan` said
/// two 64 MiB VMs had no room. With 512 MiB read into the page cache just before, the driver's
/// figure must count it: well above MemFree, near MemAvailable.
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
    let before: Vec<String> = paths.iter().map(|p| checksum(a(), p)).collect();
    assert_ne!(before[0], before[1], "the disks hold different data");
    let req = lab.request(&vm, &name, MigrationMode::Live);
    lab.move_and_clean(&req).await;
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
    lab.move_and_clean(&req).await;
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

/// The provenance markers (`<image>.vmove-<uuid>`) of a VM in the destination's images folder.
fn markers_on(host: &str, vm: &VmId) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(lab_dir().join(host).join("lib/images"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(&format!(".vmove-{}", vm.as_str())))
        .collect();
    out.sort();
    out
}

/// Guards issue 4's crash gap: a destination image pre-created by one driver instance for an
/// attempt that then failed (the process that made it is gone, as after `kill -9`) is proven
/// vmove's by its marker on the destination host, so a NEW driver instance lists and removes it
/// (image, then marker). A file at a destination path without this VM's marker, or with another
/// VM's marker, is neither listed nor removed; another VM's marker also stops a pre-create there.
/// A successful move leaves no marker behind, and markers never make the moved VM's disks
/// look like leftovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_driver_removes_images_a_previous_instance_pre_created_and_nothing_else() {
    if !lab_enabled(
        "a_restarted_driver_removes_images_a_previous_instance_pre_created_and_nothing_else",
    ) {
        return;
    }
    // Instance 1: pre-creates the destination image, then the attempt fails (aborted; the
    // 4 MiB/s cap keeps the migration from finishing first).
    let first = Lab::with_bandwidth(Some(4));
    let (vm, name) = first.mkvm("prov", &["--size", "128", "--fill", "64"]);
    let dest = format!("/var/lib/libvirt/images/{name}-0.qcow2");
    let marker = format!("{name}-0.qcow2.vmove-{}", vm.as_str());
    let req = first.request(&vm, &name, MigrationMode::Live);
    let h = first.driver.start_migration(&req).await.unwrap();
    assert!(outside(b(), &dest).exists(), "the image is pre-created");
    assert_eq!(markers_on(b(), &vm), vec![marker.clone()], "marker first");
    first.driver.abort_migration(&req, &h).await.unwrap();
    let end = first.wait_end(&req, &h).await;
    assert!(matches!(end, MigrationStatus::Failed(_)), "{end:?}");
    assert_eq!(virsh(a(), &["domstate", &name]).unwrap(), "running");
    drop(first);

    // Instance 2 (a restarted process): knows nothing in memory, the destination proves it.
    let lab = Lab::restarted(&vm, &name);
    let left = lab.left(&req, LeftoverContext::AfterFailedAttempt).await;
    assert_eq!(
        left,
        vec![Leftover {
            host: HostId::new(b()),
            kind: LeftoverKind::DiskImage,
            what: dest.clone(),
        }]
    );
    lab.driver
        .remove_leftover(&req, &left[0], LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap();
    assert!(!outside(b(), &dest).exists(), "the image is removed");
    assert!(markers_on(b(), &vm).is_empty(), "then its marker");
    assert!(
        lab.left(&req, LeftoverContext::AfterFailedAttempt)
            .await
            .is_empty()
    );
    assert!(outside(a(), &dest).exists(), "the source disk is untouched");

    // A file at the destination path that no marker of this VM vouches for: kept.
    let file = outside(b(), &dest);
    let other_vm = "0badc0de-0000-4000-8000-000000000001";
    let other_marker = outside(b(), &format!("{dest}.vmove-{other_vm}"));
    let our_marker = outside(b(), &format!("/var/lib/libvirt/images/{marker}"));
    let as_leftover = Leftover {
        host: HostId::new(b()),
        kind: LeftoverKind::DiskImage,
        what: dest.clone(),
    };
    std::fs::write(&file, b"someone else's data").unwrap();
    for (case, ours, theirs) in [
        ("no marker", false, false),
        ("another VM's marker", false, true),
        ("this VM's and another VM's marker", true, true),
    ] {
        let _ = std::fs::remove_file(&other_marker);
        let _ = std::fs::remove_file(&our_marker);
        if ours {
            std::fs::write(&our_marker, b"").unwrap();
        }
        if theirs {
            std::fs::write(&other_marker, b"").unwrap();
        }
        let left = lab.left(&req, LeftoverContext::AfterFailedAttempt).await;
        assert!(
            !left.iter().any(|l| l.what == dest),
            "{case}: listed {left:?}"
        );
        let err = lab
            .driver
            .remove_leftover(&req, &as_leftover, LeftoverContext::AfterFailedAttempt)
            .await
            .unwrap_err();
        assert!(
            err.message.contains("not created by vmove"),
            "{case}: {err}"
        );
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"someone else's data",
            "{case}"
        );
    }
    std::fs::remove_file(&file).unwrap();
    let _ = std::fs::remove_file(&our_marker);

    // Another VM's marker on a free destination path: no pre-create there, nothing created.
    let err = lab.driver.start_migration(&req).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::DestinationRefused, "{err}");
    assert!(err.message.contains(other_vm), "{err}");
    assert!(!file.exists() && markers_on(b(), &vm).is_empty());
    std::fs::remove_file(&other_marker).unwrap();

    // This VM's marker without its image (a crash between marker and image): listed, removed.
    std::fs::write(&our_marker, b"").unwrap();
    let left = lab.left(&req, LeftoverContext::AfterFailedAttempt).await;
    let marker_path = format!("/var/lib/libvirt/images/{marker}");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].what, marker_path);
    lab.driver
        .remove_leftover(&req, &left[0], LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap();
    assert!(!our_marker.exists());

    // A successful move: while it runs on the destination nothing of it is a leftover there
    // (markers or not); once verified, its markers are gone.
    let h = lab.driver.start_migration(&req).await.unwrap();
    assert_eq!(lab.wait_end(&req, &h).await, MigrationStatus::Completed);
    assert_eq!(markers_on(b(), &vm), vec![marker.clone()]);
    assert!(
        lab.left(&req, LeftoverContext::AfterFailedAttempt)
            .await
            .is_empty(),
        "the moved VM's disk looks like a leftover"
    );
    let v = lab.driver.verify(&req).await.unwrap();
    assert!(v.is_proof(), "{v:?}");
    assert!(
        markers_on(b(), &vm).is_empty(),
        "markers left after the move"
    );
    assert_eq!(virsh(b(), &["domstate", &name]).unwrap(), "running");
    lab.cleanup(&name);
}

/// Guards the marker search beyond the pool's own folder: with a per-VM subfolder layout
/// (reached through the driver's transient `vmove-…` pool), a new driver instance still finds
/// and removes the image a previous instance pre-created there for a failed attempt, then its
/// marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_driver_finds_pre_created_images_in_a_per_vm_subfolder() {
    if !lab_enabled("a_restarted_driver_finds_pre_created_images_in_a_per_vm_subfolder") {
        return;
    }
    let first = Lab::with_bandwidth(Some(4));
    let (vm, name) = first.mkvm("provsub", &["--size", "128", "--fill", "64"]);
    let mut req = first.request(&vm, &name, MigrationMode::Live);
    req.layout.put_in_subfolder = true;
    let dir = format!("/var/lib/libvirt/images/{name}");
    let dest = format!("{dir}/{name}-0.qcow2");
    let h = first.driver.start_migration(&req).await.unwrap();
    assert!(outside(b(), &dest).exists(), "pre-created in the subfolder");
    first.driver.abort_migration(&req, &h).await.unwrap();
    let end = first.wait_end(&req, &h).await;
    assert!(matches!(end, MigrationStatus::Failed(_)), "{end:?}");
    drop(first);

    let lab = Lab::new();
    let left = lab.left(&req, LeftoverContext::AfterFailedAttempt).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].what, dest);
    lab.driver
        .remove_leftover(&req, &left[0], LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap();
    let remaining: Vec<String> = std::fs::read_dir(outside(b(), &dir))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(remaining.is_empty(), "left in the subfolder: {remaining:?}");
    assert_eq!(virsh(a(), &["domstate", &name]).unwrap(), "running");
    // The driver's transient pool on the subfolder goes with the folder.
    for pool in virsh(b(), &["pool-list", "--name"]).unwrap().lines() {
        let pool = pool.trim();
        if pool.starts_with("vmove-")
            && virsh(b(), &["pool-dumpxml", pool])
                .unwrap_or_default()
                .contains(&format!("<path>{dir}</path>"))
        {
            let _ = virsh(b(), &["pool-destroy", pool]);
        }
    }
    let _ = std::fs::remove_dir(outside(b(), &dir));
    lab.cleanup(&name);
}

/// The pid of a lab host's libvirtd (lab/up.sh writes it to `<lab>/<host>/run/libvirtd.pid`),
/// checked to really be libvirtd.
fn libvirtd_pid(host: &str) -> String {
    let pid = std::fs::read_to_string(lab_dir().join(host).join("run/libvirtd.pid"))
        .unwrap()
        .trim()
        .to_owned();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert!(
        comm.contains("libvirtd"),
        "pid {pid} of {host} is not libvirtd ({comm:?})"
    );
    pid
}

fn signal(sig: &str, pid: &str) {
    let st = Command::new("kill").args([sig, pid]).status().unwrap();
    assert!(st.success(), "kill {sig} {pid} failed");
}

/// SIGCONTs a stopped libvirtd when dropped, so a failing test does not leave it frozen.
struct Resume(String);
impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0]).status();
    }
}

/// Checks that a call to a frozen libvirtd (`what`, given 90 s) failed within `bound`,
/// transient and naming the destination host; `no_bound` says what is missing if it hung.
fn failed_in_time<T: std::fmt::Debug>(
    what: &str,
    no_bound: &str,
    res: Result<DriverResult<T>, tokio::time::error::Elapsed>,
    took: Duration,
    bound: Duration,
) {
    let res = res.unwrap_or_else(|_| panic!("{what} hung 90 s: {no_bound}"));
    let err = res.expect_err("a frozen libvirtd answered");
    eprintln!("frozen, {what}: {took:?}: {err:?}");
    assert!(
        took < bound,
        "{what}: took {took:?} to give up on a frozen libvirtd"
    );
    assert_eq!(err.class, ErrorClass::Transient, "{err:?}");
    assert!(
        err.message.contains(b()),
        "does not name the host: {}",
        err.message
    );
}

/// Guards keepalive on the driver's connections (and the bounded connection open): with the
/// destination's libvirtd frozen (SIGSTOP), a call on the already open connection fails
/// within ~30 s (keepalive 5 s x 3) and a call that must open a new connection fails within
/// the open timeout, both transient and naming the host, instead of hanging until the
/// runtime's 120 s call timeout; once libvirtd runs again the calls work on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_frozen_libvirtd_fails_within_the_keepalive_bound_and_works_after() {
    if !lab_enabled("a_call_to_a_frozen_libvirtd_fails_within_the_keepalive_bound_and_works_after")
    {
        return;
    }
    let lab = Lab::new();
    let dst = HostId::new(b());
    lab.driver
        .host_info(&dst)
        .await
        .expect("host info before the freeze");
    let pid = libvirtd_pid(b());
    let resume = Resume(pid.clone());
    signal("-STOP", &pid);

    let t0 = std::time::Instant::now();
    let first = tokio::time::timeout(Duration::from_secs(90), lab.driver.host_info(&dst)).await;
    let took_first = t0.elapsed();
    let t1 = std::time::Instant::now();
    let second = tokio::time::timeout(Duration::from_secs(90), lab.driver.list_vms(&dst)).await;
    let took_second = t1.elapsed();
    drop(resume);

    failed_in_time(
        "host info on the open connection",
        "no keepalive",
        first,
        took_first,
        Duration::from_secs(30),
    );
    failed_in_time(
        "list on a new connection",
        "open not bounded",
        second,
        took_second,
        Duration::from_secs(40),
    );

    // Running again: the next calls open a fresh connection and work.
    let info = lab
        .driver
        .host_info(&dst)
        .await
        .expect("host info after SIGCONT");
    assert!(info.free_memory_bytes > 0, "{info:?}");
    lab.driver.list_vms(&dst).await.expect("list after SIGCONT");
}

/// An offline move stopped where a `kill -9` of vmove in `run_offline` would stop it: the VM
/// defined on the destination (disks copied, provenance written) but not yet undefined on the
/// source. Done with a real driver move, then the source definition put back as it was (its
/// disks were never touched: only the after-success clean-up removes them). Returns the disks'
/// paths and their checksums before the move.
async fn offline_move_cut_before_the_source_undefine(
    lab: &Lab,
    vm: &VmId,
    name: &str,
) -> (Vec<String>, Vec<String>) {
    let paths: Vec<String> = (0..2)
        .map(|i| format!("/var/lib/libvirt/images/{name}-{i}.qcow2"))
        .collect();
    let before: Vec<String> = paths.iter().map(|p| checksum(a(), p)).collect();
    let source_xml = virsh(a(), &["dumpxml", "--inactive", name]).unwrap();
    let req = lab.request(vm, name, MigrationMode::Offline);
    let h = lab.driver.start_migration(&req).await.unwrap();
    assert_eq!(lab.wait_end(&req, &h).await, MigrationStatus::Completed);
    let f = std::env::temp_dir().join(format!("{name}-source.xml"));
    std::fs::write(&f, source_xml).unwrap();
    virsh(a(), &["define", f.to_str().unwrap()]).unwrap();
    let _ = std::fs::remove_file(&f);
    for h in [a(), b()] {
        assert_eq!(virsh(h, &["domstate", name]).unwrap(), "shut off", "on {h}");
    }
    (paths, before)
}

/// Guards the crash window of an offline move between "defined on the destination" and
/// "undefined on the source": a restarted vmove (a new driver instance, doing what the engine
/// does on resume: locate, verify, list and remove the source's leftovers) finishes the move
/// while the source copy is shut off and unchanged since the copy (the destination's
/// provenance records the source disks' size and change time), and it then leaves the VM
/// defined on the destination only, content equal. Once a source disk changed after the copy,
/// nothing proves the destination copy current: verify says why, and listing or removing the
/// source's leftovers is refused naming that disk (the source keeps its data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_move_cut_after_the_destination_define_finishes_only_while_the_source_is_unchanged()
 {
    if !lab_enabled(
        "an_offline_move_cut_after_the_destination_define_finishes_only_while_the_source_is_unchanged",
    ) {
        return;
    }
    let first = Lab::new();
    let opts = ["--off", "--disks", "2", "--size", "64", "--fill", "4"];

    // 1. Unchanged source: the resumed run finishes the move.
    let (vm, name) = first.mkvm("offcut", &opts);
    let (paths, before) = offline_move_cut_before_the_source_undefine(&first, &vm, &name).await;
    drop(first);
    let lab = Lab::restarted(&vm, &name);
    let req = lab.request(&vm, &name, MigrationMode::Offline);
    let loc = lab.driver.locate(&req).await.unwrap();
    assert_eq!(
        loc.on_source.as_ref().map(|v| v.power.clone()),
        Some(PowerState::Off)
    );
    assert!(
        loc.on_destination.is_some() && loc.running_migration.is_none(),
        "{loc:?}"
    );
    let v = lab.driver.verify(&req).await.unwrap();
    assert!(v.is_proof(), "{v:?}");
    let left = lab.left(&req, LeftoverContext::AfterSuccess).await;
    assert!(
        left.iter()
            .any(|l| l.kind == LeftoverKind::Definition && l.host == HostId::new(a())),
        "{left:?}"
    );
    for p in &paths {
        assert!(
            left.iter().any(|l| &l.what == p),
            "{p} not listed: {left:?}"
        );
    }
    lab.remove_all(&req, &left, LeftoverContext::AfterSuccess)
        .await;
    assert!(
        virsh(a(), &["dominfo", &name]).is_err(),
        "still defined on the source"
    );
    for p in &paths {
        assert!(!outside(a(), p).exists(), "{p} left on the source");
    }
    let after: Vec<String> = paths.iter().map(|p| checksum(b(), p)).collect();
    assert_eq!(before, after);
    assert_eq!(virsh(b(), &["domstate", &name]).unwrap(), "shut off");
    lab.cleanup(&name);

    // 2. A source disk written after the copy (as if the VM had been started and shut off
    // again): the destination copy is stale, nothing of the source may go.
    let first = Lab::new();
    let (vm, name) = first.mkvm("offchg", &opts);
    let (paths, _) = offline_move_cut_before_the_source_undefine(&first, &vm, &name).await;
    drop(first);
    run(Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x7a 0 64k"])
        .arg(outside(a(), &paths[1])));
    let changed = checksum(a(), &paths[1]);
    let lab = Lab::restarted(&vm, &name);
    let req = lab.request(&vm, &name, MigrationMode::Offline);
    let v = lab.driver.verify(&req).await.unwrap();
    assert!(!v.is_proof(), "a stale destination copy proven: {v:?}");
    assert!(v.detail.contains(&paths[1]), "{v:?}");
    let err = lab
        .driver
        .leftovers(&req, LeftoverContext::AfterSuccess)
        .await
        .unwrap_err();
    assert!(err.message.contains(&paths[1]), "{err}");
    let definition = Leftover {
        host: HostId::new(a()),
        kind: LeftoverKind::Definition,
        what: name.clone(),
    };
    let err = lab
        .driver
        .remove_leftover(&req, &definition, LeftoverContext::AfterSuccess)
        .await
        .unwrap_err();
    assert!(err.message.contains(&paths[1]), "{err}");
    assert_eq!(virsh(a(), &["domstate", &name]).unwrap(), "shut off");
    assert_eq!(
        checksum(a(), &paths[1]),
        changed,
        "the source's data changed"
    );
    lab.cleanup(&name);
}

/// Guards what the provenance's source facts mean: they are those of the data copied. A source
/// disk written while its offline copy runs fails the attempt before the VM is defined on the
/// destination (the VM stays on the source only, its data as written), and the copies are the
/// failed attempt's leftovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_copy_whose_source_changes_meanwhile_is_not_defined_on_the_destination() {
    if !lab_enabled(
        "an_offline_copy_whose_source_changes_meanwhile_is_not_defined_on_the_destination",
    ) {
        return;
    }
    let lab = Lab::new();
    let (vm, name) = lab.mkvm("offwrt", &["--off", "--size", "1024", "--fill", "768"]);
    let path = format!("/var/lib/libvirt/images/{name}-0.qcow2");
    let req = lab.request(&vm, &name, MigrationMode::Offline);
    let h = lab.driver.start_migration(&req).await.unwrap();
    let mut copying = false;
    for _ in 0..200 {
        match lab.driver.migration_status(&req, &h).await.unwrap() {
            MigrationStatus::Running(p) if p.bytes_done > 0 => {
                copying = true;
                break;
            }
            MigrationStatus::Pending | MigrationStatus::Running(_) => {}
            end => panic!("the copy ended before the write: {end:?}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(copying, "the copy did not start");
    run(Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x7a 0 64k"])
        .arg(outside(a(), &path)));
    let written = checksum(a(), &path);
    let end = lab.wait_end(&req, &h).await;
    let MigrationStatus::Failed(f) = &end else {
        panic!("a copy of a disk written meanwhile was used: {end:?}");
    };
    assert!(
        f.message.contains("changed during its offline copy") && f.message.contains(&path),
        "{f:?}"
    );
    assert!(
        virsh(b(), &["dominfo", &name]).is_err(),
        "defined on {}",
        b()
    );
    assert_eq!(virsh(a(), &["domstate", &name]).unwrap(), "shut off");
    assert_eq!(checksum(a(), &path), written);
    let left = lab.left(&req, LeftoverContext::AfterFailedAttempt).await;
    assert_eq!(
        left.iter().map(|l| l.what.as_str()).collect::<Vec<_>>(),
        vec![path.as_str()]
    );
    lab.cleanup(&name);
}

/// Starts a non-p2p `virsh migrate` of `name` (the client drives Begin..Confirm, as vmove does
/// by default) and kills it (SIGKILL) as soon as the source shows the VM paused: the
/// switchover, between Perform and Confirm. Returns the source's and the destination's
/// `domstate --reason` a moment after the kill ("absent" when not defined), or None when the
/// window was missed (the migration ended first).
fn kill_client_at_the_switchover(name: &str, after: Duration) -> Option<(String, String)> {
    use std::io::BufRead;
    // The source's lifecycle events tell the moment it pauses for the switchover
    // ("Suspended Migrated") as it happens: polling `domstate` missed that window on a quiet
    // machine (four rounds in a row in CI).
    let mut events = Command::new("virsh")
        .args(["-q", "-c", &uri(a()), "event", "--domain", name])
        .args(["--event", "lifecycle", "--loop"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = events.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.contains("Suspended") && tx.send(()).is_err() {
                break;
            }
        }
    });
    // Let the watcher connect before the migration starts.
    std::thread::sleep(Duration::from_millis(500));
    let mut child = Command::new("virsh")
        .args([
            "-q",
            "-c",
            &uri(a()),
            "migrate",
            "--live",
            "--copy-storage-all",
        ])
        .args(["--persistent", "--undefinesource", name, &uri(b())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut hit = false;
    for _ in 0..60_000 {
        if rx.try_recv().is_ok() {
            hit = true;
            // The pause starts the switchover (Perform); a client killed during Perform has
            // the migration cancelled and the source resumed. The state this test is about
            // comes after Perform: each round waits a little longer into the window.
            std::thread::sleep(after);
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = events.kill();
    let _ = events.wait();
    // The hosts run their close callbacks for the client's connections.
    std::thread::sleep(Duration::from_secs(2));
    let state = |h: &str| virsh(h, &["domstate", "--reason", name]).unwrap_or("absent".into());
    let (s, d) = (state(a()), state(b()));
    eprintln!("switchover round of {name}: event seen {hit}, source {s:?}, destination {d:?}");
    (hit && s.starts_with("paused (migrating)")).then_some((s, d))
}

/// What libvirt leaves when the client of a non-p2p migration dies at the switchover, and
/// what the driver makes of it: the source "paused (migrating)" with no job reads as
/// `MigrationInterrupted` with a handle. With no copy on the destination, the abort resumes
/// it (Confirm's failure path). With a running copy there that is not this attempt's (virsh
/// made it: no vmove provenance), verify is no proof, nothing of the source is listed, and a
/// removal of its definition is refused: the paused copy stays as it is. Before: read as
/// `MigratingIn` (someone else's migration), and its abort did nothing.
///
/// The moment: virsh's client is killed 0, 10, 20... ms after the source's "Suspended
/// Migrated" event (the switchover), one round each, until a round finds the source "paused
/// (migrating)". Killed during Perform the migration is cancelled (source running); after
/// Confirm the move is whole (source gone). On this lab the state lies 20-80 ms in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_whose_client_died_at_the_switchover_is_rolled_back_or_left_alone() {
    if !lab_enabled("a_migration_whose_client_died_at_the_switchover_is_rolled_back_or_left_alone")
    {
        return;
    }
    const ROUNDS: usize = 16;
    let lab = Lab::new();
    let mut seen = Vec::new();
    for round in 0..ROUNDS {
        if !seen.is_empty() {
            break;
        }
        let (vm, name) = lab.mkvm(
            &format!("killed{round}"),
            &["--size", "256", "--fill", "160"],
        );
        let req = lab.request(&vm, &name, MigrationMode::Live);
        let Some((s, d)) =
            kill_client_at_the_switchover(&name, Duration::from_millis(10 * round as u64))
        else {
            lab.cleanup(&name);
            continue;
        };
        let loc = lab.driver.locate(&req).await.unwrap();
        let src = loc.on_source.clone().unwrap();
        assert_eq!(src.activity, Activity::MigrationInterrupted, "{s} / {d}");
        let handle = loc
            .running_migration
            .clone()
            .expect("a handle to roll it back");
        if d.starts_with("running") {
            let v = lab.driver.verify(&req).await.unwrap();
            assert!(!v.is_proof(), "{v:?}");
            assert!(v.detail.contains("interrupted migration"), "{}", v.detail);
            let left = lab.left(&req, LeftoverContext::AfterSuccess).await;
            assert!(left.is_empty(), "{left:?}");
            let def = Leftover {
                host: HostId::new(a()),
                kind: LeftoverKind::Definition,
                what: name.clone(),
            };
            let r = lab
                .driver
                .remove_leftover(&req, &def, LeftoverContext::AfterSuccess)
                .await;
            assert!(r.is_err(), "{r:?}");
            // Nor is it resumed: a copy runs on the destination.
            assert!(lab.driver.abort_migration(&req, &handle).await.is_err());
            assert!(
                virsh(a(), &["domstate", "--reason", &name])
                    .unwrap()
                    .starts_with("paused (migrating)")
            );
            seen.push("paused with a running copy: left alone");
        } else {
            lab.driver.abort_migration(&req, &handle).await.unwrap();
            let now = virsh(a(), &["domstate", "--reason", &name]).unwrap();
            assert!(now.starts_with("running"), "{now}");
            seen.push("paused with no copy: resumed");
        }
        lab.cleanup(&name);
    }
    assert!(
        !seen.is_empty(),
        "the switchover was never hit in {ROUNDS} rounds"
    );
    eprintln!("seen: {seen:?}");

    // A VM its owner paused is never resumed by an abort.
    let (vm, name) = lab.mkvm("ownerpaused", &[]);
    virsh(a(), &["suspend", &name]).unwrap();
    let req = lab.request(&vm, &name, MigrationMode::Live);
    let loc = lab.driver.locate(&req).await.unwrap();
    assert_eq!(loc.on_source.unwrap().activity, Activity::Idle);
    assert!(loc.running_migration.is_none());
    lab.driver
        .abort_migration(&req, &MigrationHandle(format!("adopted:{vm}")))
        .await
        .unwrap();
    assert_eq!(
        virsh(a(), &["domstate", "--reason", &name]).unwrap(),
        "paused (user)"
    );
    lab.cleanup(&name);
}
