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

impl Journal {
    /// Opens (creating if needed) the journal at `path`, with the system clock and this process as
    /// holder, and migrates its schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Journal> {
        Journal::open_with(path, Options::default())
    }

    /// Opens with explicit options. A `postgresql://` or `postgres://` location opens a
    /// PostgreSQL database (feature `postgres`), anything else an SQLite file.
    pub fn open_with(path: impl AsRef<Path>, opts: Options) -> Result<Journal> {
        let path = path.as_ref().to_path_buf();
        if opts.lease_ttl > MAX_LEASE || opts.lease_ttl.is_zero() {
            return Err(JournalError::BadLease {
                ttl: opts.lease_ttl,
                max: MAX_LEASE,
            });
        }
        if let Some(location) = path.to_str().filter(|l| crate::location::is_postgres(l)) {
            return Journal::open_postgres(location, opts);
        }
        let open_err = |source| JournalError::Open {
            path: path.clone(),
            source,
        };
        create_private(&path).map_err(|e| JournalError::Create {
            path: path.clone(),
            source: e,
        })?;
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(opts.busy_timeout).map_err(open_err)?;
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
