//! The [`Journal`] value: opening a file, its options, and the write transactions every room
//! uses.

use crate::clock::{Clock, SystemClock, WallTime};
use crate::db::{Backend, Db, Tx};
use crate::error::{JournalError, Result};
use crate::record::Holder;
use crate::schema;
use rusqlite::{Connection, OpenFlags};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The longest lease a run may have (`journal_lease`). A lease keeps every other process
/// off the run's VMs until it expires: a lease of days would lock them for days after a crash
/// on another machine (a dead holder on this machine is taken over at once: [`super::TakeOver`]).
pub const MAX_LEASE: Duration = Duration::from_secs(3600);

/// The shortest lease a run may have (`journal_lease`). The driving process refreshes it every
/// third of it (the CLI's keeper, whose loop also reads the run's stop requests every second),
/// behind the run's own journal writes (one fsync each, or a round trip to PostgreSQL): a lease
/// of a few milliseconds expired before its first refresh, and the run looped on "the lease ...
/// expired". At 1s, two refreshes may each be late by a third of a second before it expires.
pub const MIN_LEASE: Duration = Duration::from_secs(1);

/// The one rule of a lease's length, [`MIN_LEASE`] to [`MAX_LEASE`]: why `ttl` is not allowed,
/// in words that follow the setting's name (`must be at least 1s, not 10ms (...)`), or `None`
/// when it is. The settings' check of `journal_lease` and every open of a journal
/// ([`JournalError::BadLease`]) read it.
pub fn lease_out_of_bounds(ttl: Duration) -> Option<String> {
    use vmove_core::spec::dur::format_duration;
    if ttl < MIN_LEASE {
        Some(format!(
            "must be at least {}, not {} (the lease is refreshed every third of it, by the task \
             that also polls the journal for stop requests every second and behind the run's own \
             journal writes: a shorter one expires while a write waits, and the run stops)",
            format_duration(MIN_LEASE),
            format_duration(ttl)
        ))
    } else if ttl > MAX_LEASE {
        Some(format!(
            "must be at most {}, not {} (a lease keeps other processes off the run's VMs until it \
             expires; a dead holder on this machine is taken over at once)",
            format_duration(MAX_LEASE),
            format_duration(ttl)
        ))
    } else {
        None
    }
}

/// The lease [`Options::default`] gives: refreshed every third of it, and a holder that crashed
/// on another machine keeps the run's VMs for at most this long.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// How long a write waits for another process's write transaction by default: long enough to
/// wait out another writer's step (one transaction, one sync).
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite's default `max_page_count` (<https://www.sqlite.org/pragma.html#pragma_max_page_count>):
/// what lifting the simulated full disk restores.
#[cfg(feature = "test-util")]
const SQLITE_MAX_PAGE_COUNT: i64 = 4_294_967_294;

/// How a journal is opened.
#[derive(Clone, Debug)]
pub struct Options {
    /// The wall clock (leases, creation times).
    pub clock: Arc<dyn Clock>,
    /// Who this process is.
    pub holder: Holder,
    /// How long a lease lasts without a refresh.
    pub lease_ttl: Duration,
    /// How long a write waits for another writer's transaction.
    pub busy_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(SystemClock),
            holder: Holder::current(),
            lease_ttl: DEFAULT_LEASE_TTL,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        }
    }
}

/// The journal of runs. See the crate documentation for the guarantees.
#[derive(Debug)]
pub struct Journal {
    pub(super) conn: Db,
    /// The SQLite file, or the PostgreSQL location as given (it holds no password).
    pub(super) path: PathBuf,
    pub(super) opts: Options,
    /// Lease tokens this handle holds, by run id.
    pub(super) held: HashMap<String, String>,
    /// The file holds no journal yet (an empty file, opened by [`Journal::open_existing_with`]):
    /// this handle reads and writes an empty journal in memory, and the file is left as it was.
    pub(super) blank: bool,
}

/// Tells apart the lease tokens of one process (with its pid, host and the time).
static TOKEN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates the journal file, readable and writable by its owner only (0600), when it does not
/// exist yet: SQLite then creates its `-wal` and `-shm` files with the same mode (it copies
/// the database file's permissions; <https://www.sqlite.org/tempfiles.html>). An existing
/// file is left as it is.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// How a journal is opened: created when missing, or only if it is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The file is created when missing, and an empty one becomes a journal.
    Create,
    /// The file must exist; an empty one is read as an empty journal and left as it is.
    Existing,
}

/// What an SQLite file holds, looked at before anything is written to it.
#[derive(Debug, PartialEq, Eq)]
enum Holds {
    /// No table: an empty (or new) file.
    Nothing,
    /// vmove's `schema_version` table (a journal, of any version).
    Journal,
    /// Tables, but not vmove's schema marker: another application's database (its tables).
    Other(Vec<String>),
}

/// The columns of vmove's `schema_version` table, which marks a journal.
const MARKER_COLUMNS: [&str; 3] = ["version", "applied_at", "description"];

/// Reads what the file holds (SQLite's own catalogue only: nothing is written).
/// [`JournalError::NotAFile`] if `path` is there (through symbolic links) and is not a
/// regular file; looked at before SQLite opens anything (it would write a block device's first
/// bytes, make `/dev/null-journal` beside a character device, wait on a FIFO).
fn not_a_file(path: &Path) -> Result<()> {
    match vmove_driver::files::not_a_regular_file_at(path) {
        Some(kind) => Err(JournalError::NotAFile {
            path: path.to_path_buf(),
            kind,
        }),
        None => Ok(()),
    }
}

/// [`JournalError::KernelFile`] if `path` is on one of the kernel's own file systems (`/proc`,
/// `/sys`, ...), whose files are made up when read: SQLite goes by the size, so it read
/// `/proc/version` (a size of 0) as an empty journal (`history` said "no runs"), and would
/// write its header into a writable one. Asked of the file system by the path
/// (`statfs(2)`), never by opening the file: closing a descriptor of a database file this
/// process has open through SQLite would drop SQLite's POSIX locks on it (another connection
/// of this process then took itself for the last one and checkpointed and deleted the WAL
/// under the run's feet). A path that is not there is left to the open.
fn kernel_file(path: &Path) -> Result<()> {
    match kernel_file_system(path) {
        Some(fs) => Err(JournalError::KernelFile {
            path: path.to_path_buf(),
            fs,
        }),
        None => Ok(()),
    }
}

/// The kernel's file systems, by their magic number (`linux/magic.h`): none keeps a file on a
/// disk, and most make up a file's content when it is read.
#[cfg(target_os = "linux")]
const KERNEL_FILE_SYSTEMS: [(u32, &str); 17] = [
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0x6265_6570, "configfs"),
    (0xcafe_4a11, "bpf"),
    (0x6165_676c, "pstore"),
    (0xde5e_81e4, "efivarfs"),
    (0xf97c_ff8c, "selinuxfs"),
    (0x4341_5d53, "smackfs"),
    (0x4249_4e4d, "binfmt_misc"),
    (0x6573_5543, "fusectl"),
    (0x1980_0202, "mqueue"),
    (0x6e73_6673, "nsfs"),
];

/// The name of the kernel file system `path` is on ([`KERNEL_FILE_SYSTEMS`]), if it is on one.
#[cfg(target_os = "linux")]
fn kernel_file_system(path: &Path) -> Option<&'static str> {
    let fs = rustix::fs::statfs(path).ok()?;
    // The magic numbers are 32 bits; `f_type` is wider on some targets.
    let magic = fs.f_type as u32;
    KERNEL_FILE_SYSTEMS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

/// Other systems: no such file systems known.
#[cfg(not(target_os = "linux"))]
fn kernel_file_system(_path: &Path) -> Option<&'static str> {
    None
}

fn what_it_holds(conn: &Connection) -> rusqlite::Result<Holds> {
    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if names.is_empty() {
        return Ok(Holds::Nothing);
    }
    if names.iter().any(|n| n == "schema_version") {
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('schema_version')")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if MARKER_COLUMNS
            .iter()
            .all(|c| columns.iter().any(|n| n == c))
        {
            return Ok(Holds::Journal);
        }
    }
    Ok(Holds::Other(names))
}

/// How many of another database's tables a message names.
const TABLES_SHOWN: usize = 5;

/// Another database's tables for a message: the first few, each escaped and cut short.
fn tables_shown(names: &[String]) -> String {
    let mut out: Vec<String> = names
        .iter()
        .take(TABLES_SHOWN)
        .map(|n| {
            let n: String = n.chars().take(40).collect();
            format!("`{}`", n.escape_default())
        })
        .collect();
    if names.len() > TABLES_SHOWN {
        out.push(format!("and {} more", names.len() - TABLES_SHOWN));
    }
    out.join(", ")
}

impl Journal {
    /// Opens (creating if needed) the journal at `path`, with the system clock and this process as
    /// holder, and migrates its schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Journal> {
        Journal::open_with(path, Options::default())
    }

    /// Opens with explicit options. A `postgresql://` or `postgres://` location opens a
    /// PostgreSQL database (feature `postgres`), anything else an SQLite file. A file that is
    /// another application's SQLite database is refused ([`JournalError::NotAJournal`]) before
    /// anything is written to it.
    pub fn open_with(path: impl AsRef<Path>, opts: Options) -> Result<Journal> {
        Journal::open_in(path.as_ref(), opts, Mode::Create)
    }

    /// Opens a journal that is already there, for commands that only read it (or write into
    /// runs it already holds), with the system clock and this process as holder.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Journal> {
        Journal::open_existing_with(path, Options::default())
    }

    /// Opens a journal that is already there: a missing file is an error (nothing is
    /// created), an empty file is read as an empty journal ([`Journal::is_blank`]) and left
    /// byte for byte as it is, another application's database is refused
    /// ([`JournalError::NotAJournal`]) and left as it is. A journal of an older schema is
    /// migrated as [`Journal::open_with`] does. A PostgreSQL database opens as with
    /// [`Journal::open_with`] (an empty one is migrated).
    pub fn open_existing_with(path: impl AsRef<Path>, opts: Options) -> Result<Journal> {
        Journal::open_in(path.as_ref(), opts, Mode::Existing)
    }

    /// Refuses, with nothing written and nothing created, a file that cannot be a journal:
    /// another application's SQLite database ([`JournalError::NotAJournal`]), or a file SQLite
    /// cannot read. A missing or empty file, a journal, and a PostgreSQL location pass (the
    /// open says the rest). What a run checks before it asks any host.
    pub fn check_location(path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let postgres = path.to_str().is_some_and(crate::location::is_postgres);
        if postgres {
            return Ok(());
        }
        not_a_file(path)?;
        if !path.is_file() {
            return Ok(());
        }
        kernel_file(path)?;
        let open_err = |source| JournalError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(DEFAULT_BUSY_TIMEOUT).map_err(open_err)?;
        match what_it_holds(&conn).map_err(open_err)? {
            Holds::Other(tables) => Err(JournalError::NotAJournal {
                path: path.to_path_buf(),
                tables: tables_shown(&tables),
            }),
            Holds::Nothing | Holds::Journal => Ok(()),
        }
    }

    /// Whether the file held no journal when it was opened (an empty file, opened by
    /// [`Journal::open_existing_with`]): the handle then reads an empty journal kept in memory
    /// (no runs), and nothing it does reaches the file.
    pub fn is_blank(&self) -> bool {
        self.blank
    }

    /// An empty journal in memory standing for the empty file at `path`.
    fn blank(path: PathBuf, opts: Options) -> Result<Journal> {
        let conn = Db::sqlite(Connection::open_in_memory()?);
        schema::migrate_db(&conn, opts.clock.now())?;
        Ok(Journal {
            conn,
            path,
            opts,
            held: HashMap::new(),
            blank: true,
        })
    }

    fn open_in(path: &Path, opts: Options, mode: Mode) -> Result<Journal> {
        let path = path.to_path_buf();
        if let Some(why) = lease_out_of_bounds(opts.lease_ttl) {
            return Err(JournalError::BadLease {
                ttl: opts.lease_ttl,
                why,
            });
        }
        if let Some(location) = path.to_str().filter(|l| crate::location::is_postgres(l)) {
            return Journal::open_postgres(location, opts);
        }
        not_a_file(&path)?;
        kernel_file(&path)?;
        // SQLite answers SQLITE_BUSY at once, without waiting out the busy timeout, to a
        // connection that read the file before another one changed it: processes opening one
        // new journal together (the switch to WAL mode, the schema's first migration) failed
        // with "locked by another process" (seen in CI: two `vmove` runs started at once).
        // Nothing is written before the migration's transaction, which is all or nothing, so
        // an open that meets it starts again, until the busy timeout has passed.
        let give_up = std::time::Instant::now() + opts.busy_timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            match Journal::open_sqlite(path.clone(), opts.clone(), mode) {
                Err(e) if e.is_busy() && std::time::Instant::now() < give_up => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                r => return r,
            }
        }
    }

    /// One try at opening the SQLite journal at `path` (see [`Journal::open_in`]).
    fn open_sqlite(path: PathBuf, opts: Options, mode: Mode) -> Result<Journal> {
        let open_err = |source| JournalError::Open {
            path: path.clone(),
            source,
        };
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if mode == Mode::Create {
            create_private(&path).map_err(|e| JournalError::Create {
                path: path.clone(),
                source: e,
            })?;
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(&path, flags).map_err(open_err)?;
        conn.busy_timeout(opts.busy_timeout).map_err(open_err)?;
        // Before anything is written (WAL mode is written into the file's header): another
        // application's database is refused, an empty file only read.
        match what_it_holds(&conn).map_err(open_err)? {
            Holds::Other(tables) => {
                return Err(JournalError::NotAJournal {
                    path,
                    tables: tables_shown(&tables),
                });
            }
            Holds::Nothing if mode == Mode::Existing => {
                drop(conn);
                return Journal::blank(path, opts);
            }
            Holds::Nothing | Holds::Journal => {}
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(JournalError::NotWal(mode));
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(open_err)?;
        // A damaged file often reads until the schema is looked at: keep the path with the cause.
        let conn = Db::sqlite(conn);
        schema::migrate_db(&conn, opts.clock.now()).map_err(|e| match e {
            JournalError::Sqlite(source) => open_err(source),
            e => e,
        })?;
        Ok(Journal {
            conn,
            path,
            opts,
            held: HashMap::new(),
            blank: false,
        })
    }

    /// A PostgreSQL journal: connects, checks and migrates its schema.
    #[cfg(feature = "postgres")]
    fn open_postgres(location: &str, opts: Options) -> Result<Journal> {
        crate::location::check_postgres_location(location)?;
        let (loc, busy) = (location.to_owned(), opts.busy_timeout);
        let conn = Db::pg(
            move || crate::location::connect::open(&loc, busy),
            crate::location::redact(location),
        )?;
        schema::migrate_db(&conn, opts.clock.now()).map_err(|e| match e {
            JournalError::Postgres(e) => JournalError::OpenDatabase {
                location: crate::location::redact(location),
                why: crate::error::pg_cause(&e),
            },
            e => e,
        })?;
        Ok(Journal {
            conn,
            path: PathBuf::from(location),
            opts,
            held: HashMap::new(),
            blank: false,
        })
    }

    /// A build without the `postgres` feature refuses a PostgreSQL journal.
    #[cfg(not(feature = "postgres"))]
    fn open_postgres(location: &str, _opts: Options) -> Result<Journal> {
        crate::location::check_postgres_location(location)?;
        Err(JournalError::NoPostgres {
            location: crate::location::redact(location),
        })
    }

    /// Where the journal is: the SQLite file, or the PostgreSQL location as it was given (a
    /// location with a password is refused at open, so this holds none). Opening it again
    /// opens the same journal.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal's backend.
    pub fn backend(&self) -> Backend {
        self.conn.backend()
    }

    /// The location for a message: the path, or the URL with any password removed.
    pub fn location(&self) -> String {
        crate::location::redact(&self.path.display().to_string())
    }

    /// Who this handle acts as.
    pub fn holder(&self) -> &Holder {
        &self.opts.holder
    }

    /// How long a lease lasts without a refresh (refresh at a third of it).
    pub fn lease_ttl(&self) -> Duration {
        self.opts.lease_ttl
    }

    /// Test hook (feature `test-util`): with `full`, caps the database at the pages it has now
    /// (SQLite's `max_page_count`), so that a write needing another page fails with
    /// `SQLITE_FULL` exactly as on a full disk; without, lifts the cap (room again).
    #[cfg(feature = "test-util")]
    pub fn simulate_full_disk(&self, full: bool) -> Result<()> {
        self.conn
            .with_sqlite(|conn| -> Result<()> {
                let pages: i64 = if full {
                    conn.query_row("PRAGMA page_count", [], |r| r.get(0))?
                } else {
                    SQLITE_MAX_PAGE_COUNT
                };
                let _: i64 =
                    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                        r.get(0)
                    })?;
                Ok(())
            })
            .unwrap_or(Err(JournalError::SqliteOnly("simulating a full disk")))
    }

    /// The schema version of the open journal.
    pub fn schema_version(&self) -> Result<u32> {
        schema::version_of(&self.conn)
    }

    pub(super) fn now(&self) -> WallTime {
        self.opts.clock.now()
    }

    pub(super) fn new_token(&self) -> String {
        let n = TOKEN_COUNTER.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}@{}/{}/{}",
            self.opts.holder.pid,
            self.opts.holder.host,
            self.now().0,
            n
        )
    }

    pub(super) fn write_tx(&mut self) -> Result<Tx<'_>> {
        self.conn.write_tx()
    }
}
