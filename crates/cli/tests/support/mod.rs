//! What the hostile-input and output tests share: a sandbox folder (its own HOME, journal and
//! sim state), the binary run as a user would, and a snapshot of every file in the sandbox to
//! show that a refused command changed nothing.
//!
//! `VMOVE_TEST_BIN=/path/to/vmove` runs the tests against another build of the binary (to show
//! that they fail without a fix).
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The binary under test.
pub fn bin() -> PathBuf {
    std::env::var_os("VMOVE_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vmove")))
}

/// A scratch folder with its own HOME, user config dir and journal (`VMOVE_JOURNAL`).
pub struct Sandbox {
    pub dir: PathBuf,
}

impl Sandbox {
    pub fn new(name: &str) -> Sandbox {
        let dir = std::env::temp_dir().join(format!("vmove-hard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home/.config")).unwrap();
        Sandbox { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Starts `vmove ARGS` in the background, its output dropped.
    pub fn spawn_quiet(&self, args: &[&str]) -> std::process::Child {
        self.cmd(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Waits (30 s at most) until a sim host of the sandbox (state in `state/`) has started a
    /// migration, as its call log says.
    pub fn wait_for_a_migration_start(&self) {
        let started = std::time::Instant::now();
        while !std::fs::read_to_string(self.path("state/sim.log"))
            .unwrap_or_default()
            .contains("\"call\":\"start\"")
        {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "no migration started within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The journal every command of the sandbox uses unless told otherwise.
    pub fn journal(&self) -> PathBuf {
        self.dir.join("j/journal.db")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args).current_dir(&self.dir).stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("VMOVE_") || k == "RUST_BACKTRACE" || k == "COLUMNS" {
                c.env_remove(k);
            }
        }
        c.env("HOME", self.dir.join("home"));
        c.env("XDG_CONFIG_HOME", self.dir.join("home/.config"));
        c.env("XDG_DATA_HOME", self.dir.join("home/.local/share"));
        c.env("VMOVE_JOURNAL", self.journal());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        self.run_within(args, env, std::time::Duration::from_secs(60))
    }

    /// Runs a command, killing it after `limit` (then its exit code is `None` and stderr says
    /// so): a bad input must never make vmove wait forever.
    pub fn run_within(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        limit: std::time::Duration,
    ) -> Run {
        use std::io::Read;
        let mut c = self.cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = out.read_to_end(&mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            s
        });
        let start = std::time::Instant::now();
        let mut killed = false;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                killed = true;
                break child.wait().unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let mut stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
        if killed {
            stderr.push_str(&format!("\n(killed by the test after {limit:?})"));
        }
        Run {
            code: if killed { None } else { status.code() },
            stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
            stderr,
        }
    }

    /// Every file under the sandbox with its size and a hash of its bytes, and every folder.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, (u64, u64)> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (u64, u64)>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    out.insert(p.clone(), (0, 0));
                    walk(&p, out);
                } else {
                    let bytes = std::fs::read(&p).unwrap_or_default();
                    let mut h = DefaultHasher::new();
                    bytes.hash(&mut h);
                    out.insert(p, (bytes.len() as u64, h.finish()));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.dir, &mut out);
        out
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub use crate::common::run::Run;

impl Run {
    #[track_caller]
    pub fn no_panic(&self) -> &Self {
        assert!(
            !self.stderr.contains("panicked") && self.code != Some(101),
            "a panic:\n{}",
            self.stderr
        );
        self
    }
}

/// Sim hosts sharing one state file (so what a command did to the hosts is in a file):
/// `a` with four VMs, `b` roomy, `c` another destination.
pub const SIM_CONFIG: &str = r#"
[hosts.a]
driver = "sim"
speed = 1000
migration_limit = 2
state_file = "state/sim.log"
vms = [
  { name = "web-1", memory_gib = 1, disk_gib = 2 },
  { name = "web-2", memory_gib = 1, disk_gib = 2 },
  { name = "db-1", memory_gib = 2, disk_gib = 4 },
  { name = "keep-1", memory_gib = 1, disk_gib = 1 },
]

[hosts.b]
driver = "sim"
speed = 1000
memory_gib = 64
state_file = "state/sim.log"

[hosts.c]
driver = "sim"
speed = 1000
memory_gib = 64
state_file = "state/sim.log"
"#;
