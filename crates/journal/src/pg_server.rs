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
    /// The TLS server only ([`tls_server`]): its port on 127.0.0.1 (its socket has that number
    /// too).
    pub tcp_port: Option<u16>,
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
            Some(start(bin, false))
        })
        .as_ref()
}

/// A second server of this test process, with TLS (`ssl = on`): a self-signed CA (`ca.crt` in
/// its folder, [`Server::ca_cert`]), a server certificate for `localhost` and `127.0.0.1`, and
/// another CA that did not sign it ([`Server::wrong_ca_cert`]), all made with the `openssl`
/// command in its temporary folder. It listens on 127.0.0.1 (a free port, loopback only) as
/// well as its socket; `pg_hba.conf` lets TCP in through TLS only (`hostssl`). `None` as
/// [`server`].
pub fn tls_server() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            server()?;
            Some(start(find_bin()?, true))
        })
        .as_ref()
}

/// Another server of this test process, for the tests that stop and restart it (an outage):
/// every other test's server stays up under them. Each crate's integration tests are one
/// process (ARCHITECTURE.md, "Test tiers"), so an outage of [`server`] would cut the
/// connections of whatever other test runs at that moment (seen: "terminating connection due to
/// administrator command" in a CLI test beside the CLI's outage test). `None` as [`server`].
pub fn outage_server() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            server()?;
            Some(start(find_bin()?, false))
        })
        .as_ref()
}

/// The server's options: its socket in `dir`, and, for the TLS server, 127.0.0.1:`port`, TLS.
fn server_opts(dir: &Path, tcp_port: Option<u16>) -> String {
    let common = "-c fsync=off -c full_page_writes=off -c max_connections=200";
    match tcp_port {
        None => format!("-k {} -c listen_addresses='' {common}", dir.display()),
        Some(port) => format!(
            "-k {d} -c listen_addresses=127.0.0.1 -p {port} -c ssl=on -c ssl_cert_file={d}/server.crt -c ssl_key_file={d}/server.key {common}",
            d = dir.display()
        ),
    }
}

/// The CA, the server's key and certificate, and a second CA, made in `dir` by `openssl`
/// (as the server's user, who must own the key).
fn make_certs(dir: &Path, as_nobody: bool) {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2";
    let script = format!(
        "set -e; cd '{d}'; umask 077
         printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' > server.ext
         for ca in ca wrong-ca; do
           openssl req -x509 {ec} -keyout $ca.key -out $ca.crt -subj /CN=vmove-test-$ca \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
         done
         openssl req {ec} -keyout server.key -out server.csr -subj /CN=localhost
         openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.crt
         chmod 0644 ca.crt wrong-ca.crt",
        d = dir.display()
    );
    let mut c = if as_nobody {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--", "sh", "-c", &script]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &script]);
        c
    };
    c.stdout(Stdio::null());
    run_ok(c, "openssl (the test certificates)");
}

/// `-p <port>` for the TLS server (the default server's programs use the default port).
fn port_arg(tcp_port: Option<u16>) -> Vec<String> {
    tcp_port.map_or_else(Vec::new, |p| vec!["-p".to_owned(), p.to_string()])
}

/// A port free on 127.0.0.1 now (the kernel's choice).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
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

fn start(bin: PathBuf, tls: bool) -> Server {
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
    // The TLS server: TCP through TLS only (`hostssl`), on loopback.
    let rest = if tls {
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n".to_owned()
    } else {
        rest
    };
    std::fs::write(
        &hba,
        format!("local all {PASSWORD_USER} scram-sha-256\n{rest}"),
    )
    .unwrap();
    let tcp_port = tls.then(|| {
        make_certs(&dir, as_nobody);
        free_port()
    });
    let opts = server_opts(&dir, tcp_port);
    let mut c = pg_cmd(&bin, "pg_ctl", as_nobody);
    c.arg("-D")
        .arg(&data)
        .args(["-o", &opts, "-l"])
        .arg(dir.join("server.log"))
        .args(["-w", "-t", "60", "start"]);
    run_ok(c, "pg_ctl start");
    watch(&bin, &dir, as_nobody);
    let mut c = Command::new(bin.join("psql"));
    c.arg("-h").arg(&dir).args(port_arg(tcp_port)).args([
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
        tcp_port,
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
        match self.tcp_port {
            None => format!("postgresql://{USER}@/{db}?host={}", self.dir.display()),
            Some(p) => format!(
                "postgresql://{USER}@/{db}?host={}&port={p}",
                self.dir.display()
            ),
        }
    }

    /// The TLS server's URL of database `db` over TCP to `host` (`127.0.0.1` or `localhost`),
    /// `params` appended to its query (`sslmode=...&sslrootcert=...`).
    pub fn tcp_url(&self, host: &str, db: &str, params: &str) -> String {
        let port = self.tcp_port.expect("tcp_url of the TLS server only");
        format!("postgresql://{USER}@{host}:{port}/{db}?{params}")
    }

    /// The CA that signed the TLS server's certificate (a PEM file).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A CA that did not sign it.
    pub fn wrong_ca_cert(&self) -> PathBuf {
        self.dir.join("wrong-ca.crt")
    }

    /// The output of `sql` run by psql in database `db` through the socket (unaligned, no
    /// headers): what the server sees (`pg_stat_ssl` of another session).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.dir)
            .args(self.port_arg())
            .args([
                "-U",
                USER,
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The database name of a URL made by [`Server::url`].
    pub fn db_of(url: &str) -> String {
        url.split_once("@/")
            .and_then(|(_, r)| r.split_once('?'))
            .map(|(db, _)| db.to_owned())
            .unwrap()
    }

    /// `-p <port>` for the programs that reach the server through its socket.
    fn port_arg(&self) -> Vec<String> {
        port_arg(self.tcp_port)
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
        c.arg("-h")
            .arg(&self.dir)
            .args(self.port_arg())
            .args(["-U", USER, &name]);
        run_ok(c, "createdb");
        self.url(&name)
    }

    /// A new, empty database owned by [`PASSWORD_USER`], and its URL as that user (no password
    /// in it: the test gives it through the environment or a password file).
    pub fn fresh_password_database(&self, tag: &str) -> String {
        let url = self.fresh_database(tag);
        let name = Self::db_of(&url);
        let mut c = Command::new(self.bin.join("psql"));
        c.arg("-h").arg(&self.dir).args(self.port_arg()).args([
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
        let opts = server_opts(&self.dir, self.tcp_port);
        let mut c = pg_cmd(&self.bin, "pg_ctl", self.as_nobody);
        c.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-o", &opts, "-l"])
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "start"]);
        run_ok(c, "pg_ctl start");
    }
}
