//! The one connection the journal's SQL goes through: SQLite (the embedded default) or, with
//! the `postgres` feature, a PostgreSQL server.
//!
//! The journal's statements are written once, with SQLite's numbered placeholders (`?1`); on
//! PostgreSQL they are rewritten to `$1`. Values cross as [`Value`] (integer, text or NULL:
//! booleans are stored as integers 0/1 in both). What differs per backend lives here and in
//! [`crate::schema`] (one migration list, a statement per dialect):
//!
//! - write transactions: SQLite `BEGIN IMMEDIATE` (one writer at a time); PostgreSQL `BEGIN`
//!   then `pg_advisory_xact_lock` on one journal-wide key, so that writers take turns exactly as
//!   on SQLite (every check-then-write of the journal stays race-free across processes), waiting
//!   at most the busy timeout (`lock_timeout`);
//! - read snapshots: SQLite a deferred transaction; PostgreSQL `REPEATABLE READ READ ONLY`;
//! - durability: SQLite WAL with `synchronous = FULL`; PostgreSQL `synchronous_commit = on`
//!   (set on every session, whatever the server's default).

use crate::error::{JournalError, Result};
use std::cell::RefCell;

/// A value bound to or read from a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
}

/// What can be bound to a placeholder (taken by reference: binding never moves).
pub(crate) trait ToValue {
    fn to_value(&self) -> Value;
}

macro_rules! to_int {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(*self as i64)
            }
        }
    )*};
}
to_int!(i64, i32, u32, usize);

impl ToValue for u64 {
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(*self as i64)
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// `vals![a, b]`: the values bound to `?1`, `?2`.
macro_rules! vals {
    ($($v:expr),* $(,)?) => {
        &[$($crate::db::ToValue::to_value(&$v)),*] as &[$crate::db::Value]
    };
}
pub(crate) use vals;

/// A value read back as a Rust type.
pub(crate) trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}
impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }
}
impl FromValue for u32 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|n| u32::try_from(n).ok())
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).map(|n| n != 0)
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One row read.
#[derive(Debug)]
pub(crate) struct Row(Vec<Value>);

impl Row {
    /// Column `i` as a `T`; a NULL or a value of another type is [`JournalError::Corrupt`].
    pub(crate) fn get<T: FromValue>(&self, i: usize) -> Result<T> {
        let v = self.0.get(i).unwrap_or(&Value::Null);
        T::from_value(v).ok_or_else(|| JournalError::Corrupt {
            what: "column value",
            value: format!("column {i}: {v:?}"),
        })
    }
}

/// The backend of an open journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

enum Inner {
    Sqlite(rusqlite::Connection),
    #[cfg(feature = "postgres")]
    Pg(pg::Worker),
}

/// The connection. Interior mutability: a PostgreSQL client needs `&mut` for every query,
/// and the journal's readers take `&self`. `Send`, not `Sync`, like the journal.
pub(crate) struct Db {
    inner: RefCell<Inner>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Db({:?})", self.backend())
    }
}

/// The advisory-lock key every PostgreSQL write transaction takes ("vmove" in ASCII).
#[cfg(feature = "postgres")]
const WRITE_LOCK_KEY: i64 = 0x0076_6d6f_7665;

impl Db {
    pub(crate) fn sqlite(conn: rusqlite::Connection) -> Db {
        Db {
            inner: RefCell::new(Inner::Sqlite(conn)),
        }
    }

    /// A PostgreSQL connection, made by `connect` on the connection's own thread (see
    /// [`pg::Worker`]), and made again by it after the server went away (`shown`: the
    /// location for the error while it cannot be).
    #[cfg(feature = "postgres")]
    pub(crate) fn pg(
        connect: impl Fn() -> Result<postgres::Client> + Send + 'static,
        shown: String,
    ) -> Result<Db> {
        Ok(Db {
            inner: RefCell::new(Inner::Pg(pg::Worker::start(connect, shown)?)),
        })
    }

    /// The SQLite connection back (a [`Db`] made by [`Db::sqlite`]).
    pub(crate) fn into_sqlite(self) -> rusqlite::Connection {
        match self.inner.into_inner() {
            Inner::Sqlite(c) => c,
            #[cfg(feature = "postgres")]
            Inner::Pg(_) => unreachable!("into_sqlite of a PostgreSQL connection"),
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        match &*self.inner.borrow() {
            Inner::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Inner::Pg(_) => Backend::Postgres,
        }
    }

    /// Runs `f` on the SQLite connection (SQLite-only features: pragmas, test hooks); `None`
    /// on another backend.
    #[cfg(feature = "test-util")]
    pub(crate) fn with_sqlite<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> T) -> Option<T> {
        match &*self.inner.borrow() {
            Inner::Sqlite(c) => Some(f(c)),
            #[cfg(feature = "postgres")]
            Inner::Pg(_) => None,
        }
    }

    /// Statements with no values, separated by `;`.
    pub(crate) fn batch(&self, sql: &str) -> Result<()> {
        match &mut *self.inner.borrow_mut() {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            #[cfg(feature = "postgres")]
            Inner::Pg(w) => {
                // The worker must know when a transaction is open (see `pg::Worker`).
                let begin = sql.starts_with("BEGIN");
                let end = sql == "COMMIT" || sql == "ROLLBACK";
                let owned = sql.to_owned();
                let out = w.call(move |c: &mut postgres::Client| Ok(c.batch_execute(&owned)?));
                if begin && out.is_ok() {
                    w.set_in_tx(true);
                }
                if end {
                    w.set_in_tx(false);
                }
                out
            }
        }
    }

    /// One statement; the number of rows it changed.
    pub(crate) fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        match &mut *self.inner.borrow_mut() {
            Inner::Sqlite(c) => {
                Ok(c.execute(sql, rusqlite::params_from_iter(params.iter()))? as u64)
            }
            #[cfg(feature = "postgres")]
            Inner::Pg(w) => {
                let (sql, params) = (pg::placeholders(sql), params.to_vec());
                w.call(move |c: &mut postgres::Client| {
                    Ok(c.execute(sql.as_str(), &pg::refs(&params))?)
                })
            }
        }
    }

    /// Every row of a query.
    pub(crate) fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        match &mut *self.inner.borrow_mut() {
            Inner::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let n = stmt.column_count();
                let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
                    (0..n)
                        .map(|i| sqlite_value(r, i))
                        .collect::<rusqlite::Result<Vec<_>>>()
                })?;
                Ok(rows
                    .map(|r| r.map(Row))
                    .collect::<rusqlite::Result<Vec<_>>>()?)
            }
            #[cfg(feature = "postgres")]
            Inner::Pg(w) => {
                let (sql, params) = (pg::placeholders(sql), params.to_vec());
                w.call(move |c: &mut postgres::Client| {
                    let rows = c.query(sql.as_str(), &pg::refs(&params))?;
                    rows.iter().map(pg::row).collect()
                })
            }
        }
    }

    /// Each row of a query, mapped.
    pub(crate) fn query_map<T>(
        &self,
        sql: &str,
        params: &[Value],
        f: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.query(sql, params)?.iter().map(f).collect()
    }

    /// The first row of a query, if any, mapped.
    pub(crate) fn query_opt<T>(
        &self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.query(sql, params)?.first().map(f).transpose()
    }

    /// The first row of a query, which must exist, mapped.
    pub(crate) fn query_row<T>(
        &self,
        sql: &str,
        params: &[Value],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<T> {
        self.query_opt(sql, params, f)?
            .ok_or_else(|| JournalError::Corrupt {
                what: "query result",
                value: "no row".to_owned(),
            })
    }

    /// A write transaction: one writer at a time across every process (see the module
    /// documentation). Rolled back when dropped uncommitted.
    pub(crate) fn write_tx(&self) -> Result<Tx<'_>> {
        match self.backend() {
            Backend::Sqlite => self.batch("BEGIN IMMEDIATE")?,
            Backend::Postgres => {
                self.batch("BEGIN ISOLATION LEVEL READ COMMITTED")?;
                let tx = Tx {
                    db: self,
                    open: true,
                };
                #[cfg(feature = "postgres")]
                tx.execute("SELECT pg_advisory_xact_lock(?1)", vals![WRITE_LOCK_KEY])?;
                return Ok(tx);
            }
        }
        Ok(Tx {
            db: self,
            open: true,
        })
    }

    /// A read snapshot: every read in it sees the same committed state.
    pub(crate) fn read_tx(&self) -> Result<Tx<'_>> {
        match self.backend() {
            Backend::Sqlite => self.batch("BEGIN DEFERRED")?,
            Backend::Postgres => self.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?,
        }
        Ok(Tx {
            db: self,
            open: true,
        })
    }
}

fn sqlite_value(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Value> {
    use rusqlite::types::ValueRef;
    Ok(match r.get_ref(i)? {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Int(n),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Real(f) => Value::Text(f.to_string()),
        ValueRef::Blob(b) => Value::Text(String::from_utf8_lossy(b).into_owned()),
    })
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(n) => ToSqlOutput::Borrowed(ValueRef::Integer(*n)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// An open transaction; everything [`Db`] does, through `Deref`.
pub(crate) struct Tx<'a> {
    db: &'a Db,
    open: bool,
}

impl Tx<'_> {
    pub(crate) fn commit(mut self) -> Result<()> {
        self.open = false;
        self.db.batch("COMMIT")
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.db.batch("ROLLBACK");
        }
    }
}

#[cfg(feature = "postgres")]
mod pg {
    use super::{Row, Value};
    use crate::error::{JournalError, Result};
    use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
    use std::sync::mpsc;

    type Job = Box<dyn FnOnce(Result<&mut postgres::Client>) + Send>;

    /// The PostgreSQL client on a thread of its own. `postgres` (rust-postgres' blocking
    /// client) runs each call on a tokio runtime of its own, which must never be entered from
    /// a thread already inside a tokio runtime (it panics there) — and the journal is called
    /// from such threads (the CLI's main task). So every call is handed to this thread and
    /// waited for: the caller blocks exactly as on SQLite, whatever thread it is.
    pub(crate) struct Worker {
        jobs: mpsc::Sender<(Job, bool)>,
        /// A transaction is open on the connection: if the connection is lost, every statement
        /// until its `COMMIT` or `ROLLBACK` fails rather than reconnecting (a new session would
        /// run the rest of the transaction's statements outside it).
        in_tx: std::cell::Cell<bool>,
    }

    impl Worker {
        /// Starts the thread, which connects with `connect`; the connection's error, if any.
        pub(super) fn start(
            connect: impl Fn() -> Result<postgres::Client> + Send + 'static,
            shown: String,
        ) -> Result<Worker> {
            let (jobs, rx) = mpsc::channel::<(Job, bool)>();
            let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<()>>(1);
            std::thread::Builder::new()
                .name("vmove-journal-pg".into())
                .spawn(move || {
                    let mut client = match connect() {
                        Ok(c) => {
                            let _ = ready_tx.send(Ok(()));
                            c
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    // Ends when the journal (the sender) is dropped; the client closes then.
                    while let Ok((job, may_reconnect)) = rx.recv() {
                        // The server went away (stopped, restarted, the network): connect
                        // again, but never inside a transaction.
                        if client.is_closed() && may_reconnect {
                            if let Ok(c) = connect() {
                                client = c;
                            }
                        }
                        if client.is_closed() {
                            job(Err(JournalError::OpenDatabase {
                                location: shown.clone(),
                                why: "the connection to the server was lost (it is made again at the next transaction)".into(),
                            }));
                        } else {
                            job(Ok(&mut client));
                        }
                    }
                })
                .map_err(|e| JournalError::Worker(format!("cannot start its thread: {e}")))?;
            ready_rx
                .recv()
                .map_err(|_| JournalError::Worker("the connection's thread ended".into()))??;
            Ok(Worker {
                jobs,
                in_tx: std::cell::Cell::new(false),
            })
        }

        /// Runs `f` on the client, on the worker's thread, and waits for its answer.
        pub(super) fn call<T: Send + 'static>(
            &self,
            f: impl FnOnce(&mut postgres::Client) -> Result<T> + Send + 'static,
        ) -> Result<T> {
            let (tx, rx) = mpsc::sync_channel(1);
            let gone = || JournalError::Worker("the PostgreSQL connection's thread ended".into());
            self.jobs
                .send((
                    Box::new(move |c: Result<&mut postgres::Client>| {
                        let _ = tx.send(c.and_then(f));
                    }),
                    !self.in_tx.get(),
                ))
                .map_err(|_| gone())?;
            rx.recv().map_err(|_| gone())?
        }

        /// Marks a transaction open (after its `BEGIN`) or ended (after `COMMIT`/`ROLLBACK`).
        pub(super) fn set_in_tx(&self, open: bool) {
            self.in_tx.set(open);
        }
    }

    /// `?N` → `$N` (the journal's statements hold no `?` inside a string literal).
    pub(super) fn placeholders(sql: &str) -> String {
        sql.replace('?', "$")
    }

    pub(super) fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
        params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
    }

    impl ToSql for Value {
        fn to_sql(
            &self,
            ty: &Type,
            out: &mut bytes::BytesMut,
        ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
            match self {
                Value::Null => Ok(IsNull::Yes),
                Value::Int(n) => match *ty {
                    Type::INT8 => n.to_sql(ty, out),
                    Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                    Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                    Type::BOOL => (*n != 0).to_sql(ty, out),
                    _ => n.to_string().to_sql(ty, out),
                },
                Value::Text(s) => s.to_sql(ty, out),
            }
        }

        fn accepts(ty: &Type) -> bool {
            matches!(
                *ty,
                Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL | Type::TEXT | Type::VARCHAR
            )
        }

        to_sql_checked!();
    }

    pub(super) fn row(r: &postgres::Row) -> Result<Row> {
        let mut out = Vec::with_capacity(r.len());
        for (i, col) in r.columns().iter().enumerate() {
            let v = match *col.type_() {
                Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Value::Int),
                Type::INT4 => r
                    .try_get::<_, Option<i32>>(i)?
                    .map(|n| Value::Int(n.into())),
                Type::INT2 => r
                    .try_get::<_, Option<i16>>(i)?
                    .map(|n| Value::Int(n.into())),
                Type::BOOL => r
                    .try_get::<_, Option<bool>>(i)?
                    .map(|b| Value::Int(b.into())),
                Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                    r.try_get::<_, Option<String>>(i)?.map(Value::Text)
                }
                ref other => {
                    return Err(JournalError::Corrupt {
                        what: "column type",
                        value: other.to_string(),
                    });
                }
            };
            out.push(v.unwrap_or(Value::Null));
        }
        Ok(Row(out))
    }
}
