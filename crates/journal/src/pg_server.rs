//! A throw-away PostgreSQL server for tests: a cluster made by `initdb` in a new temporary
//! folder, listening on a unix socket in that folder only (no TCP: `listen_addresses = ''`),
//! one per test process, with a fresh database per test ([`Server::fresh_database`]).
//!
//! It never touches a system cluster, `$HOME` or the network. The folder is private to its
//! owner: only its owner (and root) can reach the socket, which is why the cluster trusts
//! whoever connects through it. Run as root (initdb refuses to), the cluster is made and run
//! as the unprivileged user `nobody` (`runuser`), which then owns the folder.
//!
//! The server stops with the test process: a watcher started beside it waits for the test
//! process to end (however it ends, a panic or a kill included), then stops the server with
//! `pg_ctl stop -m immediate` on its own data folder and removes the folder.
//!
//! When no PostgreSQL is installed (`initdb` neither on `PATH` nor under
//! `/usr/lib/postgresql/*/bin`), [`server`] says `skipped: no PostgreSQL` on stderr and gives
//! `None`, unless `VMOVE_REQUIRE_POSTGRES=1`, where it panics: CI must not pass without it.
//!
//! Shared, word for word, by the journal's own tests (`#[path]`) and other crates' tests
//! (`vmove_journal::testing::pg_server`, feature `test-util`).

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The server's superuser, and the user every test connects as.
pub const USER: &str = "vmove";

/// A second user, who must give a password ([`PASSWORD`]; `scram-sha-256`): the tests of where
/// a password comes from (`PGPASSWORD`, `PGPASSFILE`, `~/.pgpass`).
pub const PASSWORD_USER: &str = "vmove_pw";

/// [`PASSWORD_USER`]'s password (a throw-away server's).
pub const PASSWORD: &str = "throwaway-test-password";

/// A running throw-away server.
#[derive(Debug)]
pub struct Server {
    /// The temporary folder: `data/` (the cluster) and the socket.
    pub dir: PathBuf,
    /// Where `initdb`, `pg_ctl`, `createdb` are.
    pub bin: PathBuf,
    /// Run as `nobody` (the test process is root).
    as_nobody: bool,
}

/// Whether a missing PostgreSQL fails the test (`VMOVE_REQUIRE_POSTGRES=1`) instead of
/// skipping it.
pub fn required() -> bool {
    std::env::var("VMOVE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// The folder holding `initdb`.
fn find_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            // /usr/local/bin/initdb may be a link into the folder holding createdb too.
            if let Ok(real) = std::fs::canonicalize(dir.join("initdb")) {
                if let Some(d) = real.parent().filter(|d| d.join("pg_ctl").is_file()) {
                    return Some(d.to_path_buf());
                }
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    found.sort();
    found.pop()
}

fn euid_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The server of this test process, started on first use; `None` (said on stderr) when no
/// PostgreSQL is installed and it is not required.
pub fn server() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let Some(bin) = find_bin() else {
                if required() {
                    panic!(
                        "VMOVE_REQUIRE_POSTGRES=1 but no PostgreSQL is installed (no initdb on PATH or under /usr/lib/postgresql/*/bin): install Debian's postgresql package"
                    );
                }
                eprintln!(
                    "skipped: no PostgreSQL (initdb not found): the PostgreSQL journal tests did not run; install Debian's postgresql package, or set VMOVE_REQUIRE_POSTGRES=1 to make this a failure"
                );
                return None;
            };
            Some(start(bin))
        })
        .as_ref()
}

/// Runs a PostgreSQL program, as `nobody` when the test process is root.
fn pg_cmd(bin: &Path, prog: &str, as_nobody: bool) -> Command {
    if as_nobody {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(bin.join(prog));
        c
    } else {
        Command::new(bin.join(prog))
    }
}

fn run_ok(mut c: Command, what: &str) {
    let out = c
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start(bin: PathBuf) -> Server {
    let as_nobody = euid_is_root();
    let dir = std::env::temp_dir().join(format!(
        "vmove-pg-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir(&dir).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    if as_nobody {
        let mut c = Command::new("chown");
        c.args(["nobody:", dir.to_str().unwrap()]);
        run_ok(c, "chown of the server's folder to nobody");
    }
    let data = dir.join("data");
    let mut c = pg_cmd(&bin, "initdb", as_nobody);
    c.arg("-D").arg(&data).args([
        "-U",
        USER,
        "--auth=trust",
        "--no-sync",
        "-E",
        "UTF8",
        "--locale=C",
    ]);
    run_ok(c, "initdb");
    // The password user first (pg_hba.conf: the first matching line decides), everyone else
    // trusted on the private socket.
    let hba = data.join("pg_hba.conf");
    let rest = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("local all {PASSWORD_USER} scram-sha-256\n{rest}"),
    )
    .unwrap();
    let opts = format!(
        "-k {} -c listen_addresses='' -c fsync=off -c full_page_writes=off -c max_connections=200",
        dir.display()
    );
    let mut c = pg_cmd(&bin, "pg_ctl", as_nobody);
    c.arg("-D")
        .arg(&data)
        .args(["-o", &opts, "-l"])
        .arg(dir.join("server.log"))
        .args(["-w", "-t", "60", "start"]);
    run_ok(c, "pg_ctl start");
    watch(&bin, &dir, as_nobody);
    let mut c = Command::new(bin.join("psql"));
    c.arg("-h").arg(&dir).args([
        "-U",
        USER,
        "-d",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-q",
        "-c",
        &format!("CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'"),
    ]);
    run_ok(c, "psql (the password user)");
    Server {
        dir,
        bin,
        as_nobody,
    }
}

/// Starts the watcher that stops the server and removes its folder once this process is gone.
fn watch(bin: &Path, dir: &Path, as_nobody: bool) {
    let pg_ctl = bin.join("pg_ctl");
    let stop = if as_nobody {
        format!(
            "runuser -u nobody -- '{}' -D '{}/data' -m immediate stop",
            pg_ctl.display(),
            dir.display()
        )
    } else {
        format!(
            "'{}' -D '{}/data' -m immediate stop",
            pg_ctl.display(),
            dir.display()
        )
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display()
    );
    // Never waited for: it outlives this process on purpose (it is what stops the server after).
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
}

impl Server {
    /// A URL of database `db` on this server (through its socket: no password needed).
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://{USER}@/{db}?host={}", self.dir.display())
    }

    /// A new, empty database (named after `tag`), and its URL.
    pub fn fresh_database(&self, tag: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let tag: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let name = format!("t{n}_{tag}");
        let mut c = Command::new(self.bin.join("createdb"));
        c.arg("-h").arg(&self.dir).args(["-U", USER, &name]);
        run_ok(c, "createdb");
        self.url(&name)
    }

    /// A new, empty database owned by [`PASSWORD_USER`], and its URL as that user (no password
    /// in it: the test gives it through the environment or a password file).
    pub fn fresh_password_database(&self, tag: &str) -> String {
        let url = self.fresh_database(tag);
        let name = url
            .split_once("@/")
            .and_then(|(_, r)| r.split_once('?'))
            .map(|(db, _)| db.to_owned())
            .unwrap();
        let mut c = Command::new(self.bin.join("psql"));
        c.arg("-h").arg(&self.dir).args([
            "-U",
            USER,
            "-d",
            &name,
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            &format!(
                "ALTER DATABASE {name} OWNER TO {PASSWORD_USER}; ALTER SCHEMA public OWNER TO {PASSWORD_USER}"
            ),
        ]);
        run_ok(c, "psql (owner)");
        format!(
            "postgresql://{PASSWORD_USER}@/{name}?host={}",
            self.dir.display()
        )
    }

    /// Stops the server now (tests of a database that goes away); [`Server::restart`] brings
    /// it back with its data.
    pub fn stop(&self) {
        let mut c = pg_cmd(&self.bin, "pg_ctl", self.as_nobody);
        c.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"]);
        run_ok(c, "pg_ctl stop");
    }

    /// Starts the stopped server again.
    pub fn restart(&self) {
        let opts = format!(
            "-k {} -c listen_addresses='' -c fsync=off -c full_page_writes=off -c max_connections=200",
            self.dir.display()
        );
        let mut c = pg_cmd(&self.bin, "pg_ctl", self.as_nobody);
        c.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-o", &opts, "-l"])
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "start"]);
        run_ok(c, "pg_ctl start");
    }
}
