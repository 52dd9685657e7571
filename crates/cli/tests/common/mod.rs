//! Helpers shared by the CLI's end-to-end tests (tests/cli.rs, tests/cli_runs.rs): a scratch
//! directory with its own HOME, a finished run's output, a running `vmove` read line by line.
#![allow(dead_code, clippy::unwrap_used)]

pub mod sim_state;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A scratch directory with an isolated HOME and user config dir.
pub struct Sandbox {
    pub dir: PathBuf,
}

impl Sandbox {
    pub fn new(name: &str) -> Sandbox {
        let dir = std::env::temp_dir().join(format!("vmove-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home/.config")).unwrap();
        Sandbox { dir }
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vmove"));
        c.args(args).current_dir(&self.dir).stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            // PG*: a PostgreSQL journal's password and defaults come from the test, not from
            // whoever runs it.
            if k.starts_with("VMOVE_") || k == "COLUMNS" || k.starts_with("PG") {
                c.env_remove(k);
            }
        }
        c.env("HOME", self.dir.join("home"));
        c.env("XDG_CONFIG_HOME", self.dir.join("home/.config"));
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().unwrap())
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        Run::from(c.output().unwrap())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub mod run;
pub use run::Run;

impl Run {
    /// A config error: exit 1, one line on stderr containing every `needle`, nothing on stdout.
    #[track_caller]
    pub fn expect_config_error(&self, needles: &[&str]) {
        self.expect_code(1);
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "one sentence expected, got:\n{}",
            self.stderr
        );
        for n in needles {
            assert!(self.stderr.contains(n), "`{n}` not in: {}", self.stderr);
        }
        assert!(self.stdout.is_empty(), "stdout not empty: {}", self.stdout);
    }
}

/// Two sim hosts at 1000x: `a` with three VMs (one too big for `b`), `b` empty and small.
pub const SIM_HOSTS: &str = r#"
[hosts.a]
driver = "sim"
speed = 1000
migration_limit = 2
vms = [
  { name = "web-1", memory_gib = 2, disk_gib = 4 },
  { name = "web-2", memory_gib = 2, disk_gib = 4, transient_failures = 1 },
  { name = "db-1", memory_gib = 8, disk_gib = 10, backup_for = "10m" },
  { name = "huge-1", memory_gib = 200, disk_gib = 10 },
]

[hosts.b]
driver = "sim"
speed = 1000
memory_gib = 64
"#;

/// A running `vmove` whose stdout lines are read as they come.
pub struct Live {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Live {
    pub fn spawn(sb: &Sandbox, args: &[&str]) -> Live {
        let mut child = sb
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Live {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most 30 s) for a stdout line containing `needle`.
    pub fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                let hit = l.contains(needle);
                self.seen.push(l);
                if hit {
                    return;
                }
            }
        }
        panic!(
            "no line with `{needle}` within 30 s; seen:\n{}",
            self.seen.join("\n")
        );
    }

    pub fn interrupt(&self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits (at most 30 s) for the end; returns the run with all of stdout.
    pub fn finish(mut self) -> Run {
        let started = Instant::now();
        loop {
            if self.child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "vmove did not stop after Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        use std::io::Read;
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let mut stdout = self.seen;
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            stdout.push(l);
        }
        Run {
            code: status.code(),
            stdout: stdout.join("\n") + "\n",
            stderr,
        }
    }
}
