//! What every lab test uses: the lab's hosts and paths, `virsh` and the lab scripts, and [`Lab`]
//! (a driver on the lab's two hosts, its VMs made with `lab/mkvm.sh`), which is also the
//! conformance suite's fixture.
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;
use vmove_driver::conformance::{Fixture, VmShape};
use vmove_driver::*;
use vmove_driver_libvirt::{LibvirtDriver, LibvirtHostConfig};

/// The lab's two hosts: the first two of `VMOVE_LAB_HOSTS` (lab/common.sh; default
/// "hostA hostB"), so the tests run on any lab brought up with the same environment.
pub(crate) fn lab_hosts() -> &'static (String, String) {
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
pub(crate) fn a() -> &'static str {
    &lab_hosts().0
}

/// The destination host of the tests.
pub(crate) fn b() -> &'static str {
    &lab_hosts().1
}

pub(crate) fn lab_enabled(test: &str) -> bool {
    if std::env::var("VMOVE_LAB").as_deref() == Ok("1") {
        return true;
    }
    eprintln!(
        "\n!!! SKIPPED {test}: needs the libvirt lab (run lab/up.sh as root, then VMOVE_LAB=1) !!!\n"
    );
    false
}

pub(crate) fn lab_dir() -> PathBuf {
    PathBuf::from(std::env::var("VMOVE_LAB_DIR").unwrap_or_else(|_| "/var/tmp/vmove-lab".into()))
}

pub(crate) fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../lab")
}

/// The lab host's URI (lab/common.sh: 127.0.0.(VMOVE_LAB_IP_BASE + index), base 2, where
/// hostA has index 0, hostB 1, ...; with VMOVE_LAB_NET=netns 198.18.0.(base + index), base 10).
pub(crate) fn uri(host: &str) -> String {
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
pub(crate) fn outside(host: &str, path: &str) -> PathBuf {
    let rest = path
        .strip_prefix("/var/lib/libvirt/")
        .expect("lab paths live under /var/lib/libvirt");
    lab_dir().join(host).join("lib").join(rest)
}

pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub(crate) fn virsh(host: &str, args: &[&str]) -> Result<String, String> {
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

pub(crate) fn checksum(host: &str, path: &str) -> String {
    run(Command::new(scripts().join("checksum.sh"))
        .arg(host)
        .arg(path))
}

pub(crate) struct Lab {
    pub(crate) driver: LibvirtDriver,
    pub(crate) names: Mutex<HashMap<VmId, String>>,
    pub(crate) prefix: String,
}

impl Lab {
    pub(crate) fn new() -> Self {
        Self::with_bandwidth(None)
    }

    /// A lab whose hosts are configured with `p2p = true` (the source's libvirtd drives each
    /// migration itself); its VMs' names differ from [`Lab::new`]'s.
    pub(crate) fn p2p() -> Self {
        let mut lab = Self::with(None, true, false, true);
        lab.prefix.push('p');
        lab
    }

    /// [`Lab::p2p`] with migrations capped at `bandwidth_mib_s` (a migration that lasts long
    /// enough to be looked at in p2p mode too).
    pub(crate) fn p2p_with_bandwidth(bandwidth_mib_s: Option<u64>) -> Self {
        let mut lab = Self::with(bandwidth_mib_s, true, false, true);
        lab.prefix.push('p');
        lab
    }

    /// A lab whose hosts are configured with `post_copy = true` and migrations capped at
    /// `bandwidth_mib_s`; its VMs' names differ from [`Lab::new`]'s.
    pub(crate) fn post_copy(bandwidth_mib_s: u64) -> Self {
        let mut lab = Self::with(Some(bandwidth_mib_s), false, true, true);
        lab.prefix.push_str("pc");
        lab
    }

    /// A lab whose migrations are capped at `bandwidth_mib_s` (None: uncapped).
    pub(crate) fn with_bandwidth(bandwidth_mib_s: Option<u64>) -> Self {
        Self::with(bandwidth_mib_s, false, false, true)
    }

    /// A lab whose hosts are configured with `measure_dirty_rates = false`; its VMs' names
    /// differ from [`Lab::new`]'s.
    pub(crate) fn not_measuring() -> Self {
        let mut lab = Self::with(None, false, false, false);
        lab.prefix.push_str("nm");
        lab
    }

    fn with(
        bandwidth_mib_s: Option<u64>,
        p2p: bool,
        post_copy: bool,
        measure_dirty_rates: bool,
    ) -> Self {
        let cfg = |h: &str| LibvirtHostConfig {
            uri: uri(h),
            pool: "images".into(),
            path: None,
            migration_ports: None,
            p2p,
            auto_converge: false,
            post_copy,
            bandwidth_mib_s,
            max_downtime_ms: None,
            keepalive_interval_s: 5,
            keepalive_count: 3,
            measure_dirty_rates,
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
    pub(crate) fn mkvm(&self, name: &str, opts: &[&str]) -> (VmId, String) {
        let name = format!("{}-{name}", self.prefix);
        let uuid = run(Command::new(scripts().join("mkvm.sh"))
            .arg(a())
            .arg(&name)
            .args(opts));
        let id = VmId::new(uuid.lines().last().unwrap_or_default().to_owned());
        self.names.lock().unwrap().insert(id.clone(), name.clone());
        (id, name)
    }

    pub(crate) fn cleanup(&self, name: &str) {
        for h in [a(), b()] {
            let _ = virsh(h, &["destroy", name]);
            // `--nvram`: a VM with an NVRAM file is not undefined without it.
            let _ = virsh(h, &["undefine", name, "--nvram"]);
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

    pub(crate) fn request(&self, vm: &VmId, name: &str, mode: MigrationMode) -> MigrationRequest {
        MigrationRequest {
            vm: vm.clone(),
            vm_name: name.into(),
            source: HostId::new(a()),
            destination: HostId::new(b()),
            mode,
            layout: PathLayout::default(),
            attempt: 1,
            run_id: "labtest".into(),
        }
    }

    pub(crate) async fn wait_end(
        &self,
        req: &MigrationRequest,
        h: &MigrationHandle,
    ) -> MigrationStatus {
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
    pub(crate) fn restarted(vm: &VmId, name: &str) -> Self {
        let lab = Lab::new();
        lab.names
            .lock()
            .unwrap()
            .insert(vm.clone(), name.to_owned());
        lab
    }

    /// The leftovers the driver lists (the listing must work).
    pub(crate) async fn left(&self, req: &MigrationRequest, ctx: LeftoverContext) -> Vec<Leftover> {
        self.driver.leftovers(req, ctx).await.unwrap()
    }

    /// Removes these leftovers, each of which must go.
    pub(crate) async fn remove_all(
        &self,
        req: &MigrationRequest,
        left: &[Leftover],
        ctx: LeftoverContext,
    ) {
        for l in left {
            self.driver
                .remove_leftover(req, l, ctx)
                .await
                .unwrap_or_else(|e| panic!("removing {l:?}: {e}"));
        }
    }

    /// Moves the VM and proves it arrived; returns the proof.
    pub(crate) async fn move_and_clean(&self, req: &MigrationRequest) -> Verification {
        let h = self.driver.start_migration(req).await.unwrap();
        let end = self.wait_end(req, &h).await;
        assert_eq!(end, MigrationStatus::Completed);
        let v = self.driver.verify(req).await.unwrap();
        assert!(v.is_proof(), "{v:?}");
        v
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

/// Each lab test so written runs in both of the modes a user can choose for libvirt: the default (vmove
/// drives each migration) and `p2p = true` (the source's libvirtd does): a refusal, a move and
/// a roll-back must hold in each.
macro_rules! in_both_modes {
    ($name:ident, $p2p:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            if !lab_enabled(stringify!($name)) {
                return;
            }
            $body(&Lab::new()).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $p2p() {
            if !lab_enabled(stringify!($p2p)) {
                return;
            }
            $body(&Lab::p2p()).await;
        }
    };
}
pub(crate) use in_both_modes;

/// The `vmove` binary: `VMOVE_BIN`, else the one built beside this test binary
/// (`target/<profile>/vmove`; `lab/ci.sh` builds it before the lab tests).
pub(crate) fn vmove_bin() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("VMOVE_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("vmove"))
        .unwrap();
    assert!(
        bin.exists(),
        "{} is missing: build it (cargo build --release -p vmove) or set VMOVE_BIN",
        bin.display()
    );
    bin
}

/// A fresh folder for a lab test's `vmove` runs, `<lab dir>/<tag>-run`, with the `vmove.toml`
/// of a new user plus `defaults` (more `[defaults]` lines): the journal in the folder (so the
/// test keeps to it), and hostA and hostB, each by its URI and with its extra lines.
pub(crate) fn run_folder(tag: &str, defaults: &str, hosts: [(String, &str); 2]) -> PathBuf {
    let dir = lab_dir().join(format!("{tag}-run"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = format!(
        "[defaults]\njournal = \"{}\"\n{defaults}",
        dir.join("journal.db").display()
    );
    for (name, (uri, extra)) in [a(), b()].into_iter().zip(hosts) {
        text.push_str(&format!(
            "\n[hosts.{name}]\ndriver = \"libvirt\"\nuri = \"{uri}\"\n{extra}"
        ));
    }
    std::fs::write(dir.join("vmove.toml"), text).unwrap();
    dir
}

/// Runs `vmove` with `args`, its output in `dir/<tag>.out` and `.err`.
pub(crate) fn spawn_vmove(dir: &std::path::Path, tag: &str, args: &[&str]) -> std::process::Child {
    let file = |ext: &str| std::fs::File::create(dir.join(format!("{tag}.{ext}"))).unwrap();
    Command::new(vmove_bin())
        .arg("--config")
        .arg(dir.join("vmove.toml"))
        .arg("--plain")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(file("out"))
        .stderr(file("err"))
        .spawn()
        .unwrap()
}

/// What `vmove` wrote in `dir` under `tag`.
pub(crate) fn said(dir: &std::path::Path, tag: &str) -> String {
    let read =
        |ext: &str| std::fs::read_to_string(dir.join(format!("{tag}.{ext}"))).unwrap_or_default();
    format!("stdout:\n{}\nstderr:\n{}", read("out"), read("err"))
}
