//! [`Journal`]: one SQLite connection and the lease tokens this handle holds.

use crate::clock::{Clock, SystemClock, WallTime};
use crate::error::{JournalError, Result};
use crate::record::{
    ConfigFormat, Entry, EntryBody, Holder, IntentId, LeaseInfo, NewRun, RunEnd, RunRecord,
    RunState, RunSummary, StepRecord, StopRequest,
};
use crate::schema;
use crate::status::VmStatus;
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use vmove_core::{Command, Event, EventKind, Input, RunSpec, Selection, Time, VmId};

/// The longest lease a run may have (`journal_lease`). A lease keeps every other process
/// off the run's VMs until it expires: a lease of days would lock them for days after a crash
/// on another machine (a dead holder on this machine is taken over at once: [`TakeOver`]).
pub const MAX_LEASE: Duration = Duration::from_secs(3600);

/// A lease [`Journal::acquire_taking_over`] took before it expired, because its holder on this
/// machine is provably dead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakeOver {
    /// The dead holder.
    pub holder: Holder,
    /// How it is known dead (`is gone`, `is gone (its pid is now a later process's)`).
    pub how: &'static str,
    /// When its lease would have expired.
    pub until: WallTime,
}

impl std::fmt::Display for TakeOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "holder pid {} on this machine {}: taking over",
            self.holder.pid, self.how
        )
    }
}

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
            lease_ttl: Duration::from_secs(30),
            busy_timeout: Duration::from_secs(10),
        }
    }
}

/// The journal of runs. See the crate documentation for the guarantees.
#[derive(Debug)]
pub struct Journal {
    conn: Connection,
    path: PathBuf,
    opts: Options,
    /// Lease tokens this handle holds, by run id.
    held: HashMap<String, String>,
}

static TOKEN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A value as stored: JSON, with the user information of any URI in it hidden (a driver's
/// error may quote a configured URI; the core's values carry it as plain text).
pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Result<String> {
    let json = serde_json::to_string(v).map_err(JournalError::Encode)?;
    Ok(redact(json))
}

/// `text` with URIs' user information hidden ([`vmove_driver::redact_uris`]).
pub(crate) fn redact(text: String) -> String {
    match vmove_driver::redact_uris(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(t) => t,
    }
}

fn decode<T: serde::de::DeserializeOwned>(run: &str, seq: u64, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|source| JournalError::Decode {
        run: run.to_owned(),
        seq,
        source,
    })
}

/// The `"command"` / `"input"` / `"event"` tag of a serialised value.
fn tag(json: &str, key: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get(key).and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

fn command_attempt(c: &Command) -> Option<u32> {
    c.attempt()
}

/// Whether `holder` looks gone though it cannot be proven (on this host, its pid absent,
/// but no start time or boot identity recorded to prove it is the same boot): said in
/// [`JournalError::LeaseHeld`], never acted on.
fn holder_gone(holder: &Holder) -> bool {
    let here = Holder::current();
    let proc = std::path::Path::new("/proc");
    holder.host == here.host
        && holder.pid != here.pid
        && proc.join("self").exists()
        && !proc.join(holder.pid.to_string()).exists()
}

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

/// The facts of a live run that are needed to refuse a conflicting one.
struct LiveRun {
    id: String,
    spec: RunSpec,
    pid: u32,
    host: String,
    has_vms: bool,
}

impl Journal {
    /// Opens (creating if needed) the journal at `path`, with the system clock and this process as
    /// holder, and migrates its schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Journal> {
        Journal::open_with(path, Options::default())
    }

    /// Opens with explicit options.
    pub fn open_with(path: impl AsRef<Path>, opts: Options) -> Result<Journal> {
        let path = path.as_ref().to_path_buf();
        if opts.lease_ttl > MAX_LEASE || opts.lease_ttl.is_zero() {
            return Err(JournalError::BadLease {
                ttl: opts.lease_ttl,
                max: MAX_LEASE,
            });
        }
        let open_err = |source| JournalError::Open {
            path: path.clone(),
            source,
        };
        create_private(&path).map_err(|e| JournalError::Create {
            path: path.clone(),
            source: e,
        })?;
        let mut conn = Connection::open_with_flags(
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
        schema::migrate(&mut conn, opts.clock.now()).map_err(|e| match e {
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

    /// Where the journal file is.
    pub fn path(&self) -> &Path {
        &self.path
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
        let pages: i64 = if full {
            self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?
        } else {
            // SQLite's default maximum.
            4_294_967_294
        };
        let _: i64 = self
            .conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })?;
        Ok(())
    }

    /// The schema version of the open journal.
    pub fn schema_version(&self) -> Result<u32> {
        schema::version(&self.conn)
    }

    fn now(&self) -> WallTime {
        self.opts.clock.now()
    }

    fn new_token(&self) -> String {
        let n = TOKEN_COUNTER.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}@{}/{}/{}",
            self.opts.holder.pid,
            self.opts.holder.host,
            self.now().0,
            n
        )
    }

    fn write_tx(&mut self) -> Result<Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    // ----- runs -----

    /// Creates a run and gives this handle its lease, in one transaction. Refused, with nothing
    /// written, if the id exists or if another live run holds (or may be about to select) one of
    /// its VMs.
    pub fn create_run(&mut self, new: &NewRun) -> Result<LeaseInfo> {
        let now = self.now();
        let token = self.new_token();
        let holder = self.opts.holder.clone();
        let ttl = self.opts.lease_ttl;
        let run = new.spec.run_id.clone();
        let spec_json = encode(&new.spec)?;
        let tx = self.write_tx()?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1)",
            [&run],
            |r| r.get(0),
        )?;
        if exists {
            return Err(JournalError::RunExists(run));
        }
        check_selection_free(&tx, &run, &new.spec, now)?;
        tx.execute(
            "INSERT INTO runs (id, created_at, config_format, config, spec, state, driver_host, driver_pid)
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7)",
            params![run, now.0, new.config_format.as_str(), redact(new.config.clone()), spec_json, holder.host, holder.pid],
        )?;
        let lease = write_lease(&tx, &run, &token, &holder, now, now, ttl)?;
        tx.commit()?;
        self.held.insert(run, token);
        Ok(lease)
    }

    /// Takes the lease of an existing run (to resume it), or renews it if this handle holds it.
    /// Refused while another process's lease is unexpired (the error names it), or while another
    /// live run holds one of this run's unfinished VMs.
    pub fn acquire(&mut self, run: &str) -> Result<LeaseInfo> {
        self.acquire_taking_over(run).map(|(lease, _)| lease)
    }

    /// [`Journal::acquire`], which also takes an unexpired lease over when its holder is
    /// provably dead on this machine (same boot and pid namespace, and its pid gone or
    /// another process's: [`crate::proc`]), and says so. A holder that runs, or that this
    /// process cannot see (another machine, another boot, no start time recorded), keeps its
    /// lease until it expires.
    pub fn acquire_taking_over(&mut self, run: &str) -> Result<(LeaseInfo, Option<TakeOver>)> {
        let now = self.now();
        let mine = self.held.get(run).cloned();
        let token = mine.clone().unwrap_or_else(|| self.new_token());
        let holder = self.opts.holder.clone();
        let ttl = self.opts.lease_ttl;
        let tx = self.write_tx()?;
        let state = run_state(&tx, run)?;
        if state != RunState::Running {
            return Err(JournalError::RunNotRunning {
                run: run.to_owned(),
                state,
            });
        }
        let current = read_lease(&tx, run)?;
        let mut acquired_at = now;
        let mut took_over = None;
        if let Some((tok, info)) = &current {
            if Some(tok) == mine.as_ref() {
                acquired_at = info.acquired_at;
            } else if info.expires_at > now {
                match crate::proc::holder_state(&info.holder) {
                    crate::proc::HolderState::Dead(how) => {
                        took_over = Some(TakeOver {
                            holder: info.holder.clone(),
                            how,
                            until: info.expires_at,
                        });
                    }
                    state => {
                        return Err(JournalError::LeaseHeld {
                            run: run.to_owned(),
                            pid: info.holder.pid,
                            host: info.holder.host.clone(),
                            until: info.expires_at,
                            holder_gone: state == crate::proc::HolderState::Unknown
                                && holder_gone(&info.holder),
                        });
                    }
                }
            }
        }
        // The VM guard, for resume: none of our unfinished VMs may be held by another live run.
        let vms: Vec<String> = {
            let mut stmt = tx.prepare("SELECT vm FROM vm_state WHERE run_id = ?1 AND final = 0")?;
            stmt.query_map([run], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        for vm in vms {
            check_vm_free(&tx, run, &VmId(vm), now)?;
        }
        let lease = write_lease(&tx, run, &token, &holder, acquired_at, now, ttl)?;
        tx.execute(
            "UPDATE runs SET driver_host = ?2, driver_pid = ?3 WHERE id = ?1",
            params![run, holder.host, holder.pid],
        )?;
        tx.commit()?;
        self.held.insert(run.to_owned(), token);
        Ok((lease, took_over))
    }

    /// Extends this handle's lease. Fails with [`JournalError::LeaseLost`] if another process
    /// took the run over (this one must stop acting), [`JournalError::LeaseNotHeld`] if this
    /// handle never held it. An expired lease nobody took is renewed.
    pub fn refresh_lease(&mut self, run: &str) -> Result<LeaseInfo> {
        let now = self.now();
        let token = self.held.get(run).cloned();
        let holder = self.opts.holder.clone();
        let ttl = self.opts.lease_ttl;
        let tx = self.write_tx()?;
        check_lease(&tx, run, token.as_deref(), now, false)?;
        let acquired = read_lease(&tx, run)?
            .map(|(_, l)| l.acquired_at)
            .unwrap_or(now);
        // `check_lease` proved the token is held.
        let lease = write_lease(
            &tx,
            run,
            token.as_deref().unwrap_or_default(),
            &holder,
            acquired,
            now,
            ttl,
        )?;
        tx.commit()?;
        Ok(lease)
    }

    /// Gives the lease up without ending the run (it stays resumable at once).
    pub fn release(&mut self, run: &str) -> Result<()> {
        let Some(token) = self.held.remove(run) else {
            return Ok(());
        };
        let tx = self.write_tx()?;
        tx.execute(
            "DELETE FROM leases WHERE run_id = ?1 AND token = ?2",
            params![run, token],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Ends the run and drops its lease. Needs the lease.
    pub fn finish_run(&mut self, run: &str, end: RunEnd) -> Result<()> {
        let now = self.now();
        let token = self.held.get(run).cloned();
        let tx = self.write_tx()?;
        let state = run_state(&tx, run)?;
        if state != RunState::Running {
            return Err(JournalError::RunNotRunning {
                run: run.to_owned(),
                state,
            });
        }
        check_lease(&tx, run, token.as_deref(), now, false)?;
        let (state, detail) = match end {
            RunEnd::Finished => (RunState::Finished, None),
            RunEnd::Failed(e) => (RunState::Failed, Some(redact(e))),
            RunEnd::Aborted => (RunState::Aborted, None),
        };
        tx.execute(
            "UPDATE runs SET state = ?2, state_detail = ?3, finished_at = ?4 WHERE id = ?1",
            params![run, state.as_str(), detail, now.0],
        )?;
        tx.execute("DELETE FROM leases WHERE run_id = ?1", [run])?;
        tx.commit()?;
        self.held.remove(run);
        Ok(())
    }

    // ----- notes -----

    /// Writes a note for a person about the run, beside its moves (that its standard output
    /// was closed by its reader and the run went on). Any process may write one; the text is
    /// redacted like every stored text (no URI's user information).
    pub fn record_note(&mut self, run: &str, text: &str) -> Result<()> {
        let now = self.now();
        let tx = self.write_tx()?;
        run_state(&tx, run)?;
        tx.execute(
            "INSERT INTO notes (run_id, at, text) VALUES (?1, ?2, ?3)",
            params![run, now.0, redact(text.to_owned())],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The run's notes, oldest first, with when each was written.
    pub fn notes(&self, run: &str) -> Result<Vec<(WallTime, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT at, text FROM notes WHERE run_id = ?1 ORDER BY at, rowid")?;
        let rows = st.query_map([run], |r| Ok((WallTime(r.get(0)?), r.get(1)?)))?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    // ----- stop requests (any process) -----

    /// Asks a running run to stop starting moves; with `now`, to abort running migrations too.
    /// A later plain stop does not undo an earlier `now`. Needs no lease.
    pub fn request_stop(&mut self, run: &str, now: bool) -> Result<StopRequest> {
        let at = self.now();
        let tx = self.write_tx()?;
        let state = run_state(&tx, run)?;
        if state != RunState::Running {
            return Err(JournalError::RunNotRunning {
                run: run.to_owned(),
                state,
            });
        }
        tx.execute(
            "UPDATE runs SET stop_request = CASE WHEN ?2 OR stop_request = 'now' THEN 'now' ELSE 'stop' END,
                 stop_requested_at = ?3 WHERE id = ?1",
            params![run, now, at.0],
        )?;
        let req = read_stop(&tx, run)?;
        tx.commit()?;
        req.ok_or_else(|| JournalError::UnknownRun(run.to_owned()))
    }

    /// The stop asked of a run, if any (the driver polls this).
    pub fn stop_requested(&self, run: &str) -> Result<Option<StopRequest>> {
        run_state(&self.conn, run)?;
        read_stop(&self.conn, run)
    }

    // ----- entries (need the lease) -----

    /// Records a command BEFORE it is carried out. Durable when this returns. Needs an unexpired
    /// lease, and refuses a command about a VM another live run holds.
    pub fn record_intent(&mut self, run: &str, at: Time, command: &Command) -> Result<IntentId> {
        let now = self.now();
        let token = self.held.get(run).cloned();
        let tx = self.write_tx()?;
        let id = intent_in(&tx, run, token.as_deref(), now, at, command)?;
        tx.commit()?;
        Ok(id)
    }

    /// Records the answer to an intent. Durable when this returns.
    pub fn record_outcome(
        &mut self,
        run: &str,
        intent: IntentId,
        at: Time,
        input: &Input,
    ) -> Result<u64> {
        self.write_input(run, Some(intent), at, input)
    }

    /// Records an input nobody asked for (an operator's stop, a pushed migration status).
    pub fn record_input(&mut self, run: &str, at: Time, input: &Input) -> Result<u64> {
        self.write_input(run, None, at, input)
    }

    fn write_input(
        &mut self,
        run: &str,
        intent: Option<IntentId>,
        at: Time,
        input: &Input,
    ) -> Result<u64> {
        let now = self.now();
        let token = self.held.get(run).cloned();
        let tx = self.write_tx()?;
        let seq = input_in(&tx, run, token.as_deref(), now, intent, at, input)?;
        tx.commit()?;
        Ok(seq)
    }

    /// Records one event and updates its VM's status row, in one transaction.
    pub fn record_event(&mut self, run: &str, event: &Event) -> Result<u64> {
        let seqs = self.record_events(run, std::slice::from_ref(event))?;
        Ok(seqs.first().copied().unwrap_or_default())
    }

    /// Records several events in one transaction (all or none): the explicit batch for chatty
    /// events such as progress. A `Selected` event for a VM another live run holds refuses the
    /// whole batch.
    pub fn record_events(&mut self, run: &str, events: &[Event]) -> Result<Vec<u64>> {
        let now = self.now();
        let token = self.held.get(run).cloned();
        let tx = self.write_tx()?;
        let mut seqs = Vec::with_capacity(events.len());
        for event in events {
            seqs.push(event_in(&tx, run, token.as_deref(), now, event)?);
        }
        tx.commit()?;
        Ok(seqs)
    }

    /// Records, in this order and in ONE transaction (all or none, one sync to disk), what a
    /// run lived since its last write: answers and inputs, the events the core emitted, then
    /// the intents of the commands it asks for, none of which has been carried out yet. The
    /// same checks as [`Journal::record_outcome`], [`Journal::record_input`],
    /// [`Journal::record_events`] and [`Journal::record_intent`], each refusing the whole
    /// step. Returns the intents' ids, in the order given.
    pub fn record_step(&mut self, run: &str, step: &[StepRecord]) -> Result<Vec<IntentId>> {
        let now = self.now();
        let token = self.held.get(run).cloned();
        let tx = self.write_tx()?;
        let mut intents = Vec::new();
        for r in step {
            match r {
                StepRecord::Input { intent, at, input } => {
                    input_in(&tx, run, token.as_deref(), now, *intent, *at, input)?;
                }
                StepRecord::Event(event) => {
                    event_in(&tx, run, token.as_deref(), now, event)?;
                }
                StepRecord::Intent { at, command } => {
                    intents.push(intent_in(&tx, run, token.as_deref(), now, *at, command)?);
                }
            }
        }
        tx.commit()?;
        Ok(intents)
    }

    // ----- reads (no lease; a consistent snapshot each) -----

    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<RunSummary>> {
        let ids: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id FROM runs ORDER BY created_at DESC, rowid DESC")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let tx = self.conn.unchecked_transaction()?;
        let out = ids
            .iter()
            .map(|id| summary(&tx, id))
            .collect::<Result<Vec<_>>>()?;
        tx.finish()?;
        Ok(out)
    }

    /// One run's summary.
    pub fn run_summary(&self, run: &str) -> Result<RunSummary> {
        summary(&self.conn, run)
    }

    /// The per-VM status of a run, in selection order (what `status` shows).
    pub fn vm_status(&self, run: &str) -> Result<Vec<VmStatus>> {
        let tx = self.conn.unchecked_transaction()?;
        run_state(&tx, run)?;
        let out = read_statuses(&tx, run)?;
        tx.finish()?;
        Ok(out)
    }

    /// Everything about a run, for replay and reports.
    pub fn load_run(&self, run: &str) -> Result<RunRecord> {
        self.load_run_until(run, u64::MAX)
    }

    /// A run as it stood after entry `last_seq` (replay tests cut the journal with this). The
    /// status table is the current one.
    pub fn load_run_until(&self, run: &str, last_seq: u64) -> Result<RunRecord> {
        let tx = self.conn.unchecked_transaction()?;
        let summary = summary(&tx, run)?;
        let (spec, config, format): (String, String, String) = tx.query_row(
            "SELECT spec, config, config_format FROM runs WHERE id = ?1",
            [run],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let spec: RunSpec = decode(run, 0, &spec)?;
        let config_format = ConfigFormat::parse(&format).ok_or(JournalError::Corrupt {
            what: "config format",
            value: format,
        })?;
        let mut entries = Vec::new();
        {
            let mut stmt = tx.prepare(
                "SELECT seq, kind, at, answers, body, written_at FROM entries
                 WHERE run_id = ?1 AND seq <= ?2 ORDER BY seq",
            )?;
            let rows = stmt.query_map(
                params![run, i64::try_from(last_seq).unwrap_or(i64::MAX)],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)? as u64,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                },
            )?;
            for row in rows {
                let (seq, kind, at, answers, body, written) = row?;
                let body = match kind.as_str() {
                    "intent" => EntryBody::Intent(decode(run, seq, &body)?),
                    "outcome" => EntryBody::Outcome {
                        intent: IntentId(answers.unwrap_or_default() as u64),
                        input: decode(run, seq, &body)?,
                    },
                    "input" => EntryBody::Input(decode(run, seq, &body)?),
                    "event" => EntryBody::Event(decode(run, seq, &body)?),
                    other => {
                        return Err(JournalError::Corrupt {
                            what: "entry kind",
                            value: other.to_owned(),
                        });
                    }
                };
                entries.push(Entry {
                    seq,
                    at: Time(at),
                    written_at: WallTime(written),
                    body,
                });
            }
        }
        let vms = read_statuses(&tx, run)?;
        tx.finish()?;
        Ok(RunRecord {
            summary,
            spec,
            config,
            config_format,
            entries,
            vms,
        })
    }
}

// ----- helpers on a transaction or connection -----

fn run_state(conn: &Connection, run: &str) -> Result<RunState> {
    let s: Option<String> = conn
        .query_row("SELECT state FROM runs WHERE id = ?1", [run], |r| r.get(0))
        .optional()?;
    let s = s.ok_or_else(|| JournalError::UnknownRun(run.to_owned()))?;
    RunState::parse(&s).ok_or(JournalError::Corrupt {
        what: "run state",
        value: s,
    })
}

fn read_lease(conn: &Connection, run: &str) -> Result<Option<(String, LeaseInfo)>> {
    Ok(conn
        .query_row(
            "SELECT token, holder_pid, holder_host, acquired_at, refreshed_at, expires_at,
                    holder_started, holder_boot
             FROM leases WHERE run_id = ?1",
            [run],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    LeaseInfo {
                        holder: Holder {
                            pid: r.get(1)?,
                            host: r.get(2)?,
                            started: r.get::<_, Option<i64>>(6)?.map(|t| t as u64),
                            boot: r.get(7)?,
                        },
                        acquired_at: WallTime(r.get(3)?),
                        refreshed_at: WallTime(r.get(4)?),
                        expires_at: WallTime(r.get(5)?),
                    },
                ))
            },
        )
        .optional()?)
}

fn write_lease(
    tx: &Transaction<'_>,
    run: &str,
    token: &str,
    holder: &Holder,
    acquired_at: WallTime,
    now: WallTime,
    ttl: Duration,
) -> Result<LeaseInfo> {
    let expires_at = now.after(ttl);
    tx.execute(
        "INSERT INTO leases (run_id, token, holder_pid, holder_host, acquired_at, refreshed_at, expires_at,
                             holder_started, holder_boot)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (run_id) DO UPDATE SET token = ?2, holder_pid = ?3, holder_host = ?4,
             acquired_at = ?5, refreshed_at = ?6, expires_at = ?7, holder_started = ?8, holder_boot = ?9",
        params![
            run,
            token,
            holder.pid,
            holder.host,
            acquired_at.0,
            now.0,
            expires_at.0,
            holder.started.map(|t| t as i64),
            holder.boot
        ],
    )?;
    Ok(LeaseInfo {
        holder: holder.clone(),
        acquired_at,
        refreshed_at: now,
        expires_at,
    })
}

/// Checks that `token` holds the run's lease (and, for intents, that it has not expired).
fn check_lease(
    conn: &Connection,
    run: &str,
    token: Option<&str>,
    now: WallTime,
    unexpired: bool,
) -> Result<()> {
    match (read_lease(conn, run)?, token) {
        (Some((tok, info)), Some(mine)) if tok == mine => {
            if unexpired && info.expires_at <= now {
                Err(JournalError::LeaseExpired {
                    run: run.to_owned(),
                    until: info.expires_at,
                })
            } else {
                Ok(())
            }
        }
        (Some((_, info)), Some(_)) => Err(JournalError::LeaseLost {
            run: run.to_owned(),
            pid: info.holder.pid,
            host: info.holder.host,
        }),
        (_, _) => Err(JournalError::LeaseNotHeld {
            run: run.to_owned(),
        }),
    }
}

/// Checks the run and the lease and allocates the next sequence number.
/// An intent, inside a write transaction.
fn intent_in(
    tx: &Transaction<'_>,
    run: &str,
    token: Option<&str>,
    now: WallTime,
    at: Time,
    command: &Command,
) -> Result<IntentId> {
    let body = encode(command)?;
    let name = tag(&body, "command");
    let seq = begin_entry(tx, run, token, now, true)?;
    if let Some(vm) = command.vm() {
        check_vm_free(tx, run, vm, now)?;
    }
    insert_entry(
        tx,
        run,
        seq,
        "intent",
        at,
        command.vm(),
        command_attempt(command),
        &name,
        None,
        &body,
        now,
    )?;
    Ok(IntentId(seq))
}

/// An outcome (answering `intent`) or an unasked input, inside a write transaction.
fn input_in(
    tx: &Transaction<'_>,
    run: &str,
    token: Option<&str>,
    now: WallTime,
    intent: Option<IntentId>,
    at: Time,
    input: &Input,
) -> Result<u64> {
    let body = encode(input)?;
    let name = tag(&body, "input");
    let (vm, attempt) = match input.vm_attempt() {
        Some((vm, a)) => (Some(vm), Some(a)),
        None => (None, None),
    };
    let seq = begin_entry(tx, run, token, now, false)?;
    if let Some(id) = intent {
        let kind: Option<String> = tx
            .query_row(
                "SELECT kind FROM entries WHERE run_id = ?1 AND seq = ?2",
                params![run, id.0 as i64],
                |r| r.get(0),
            )
            .optional()?;
        if kind.as_deref() != Some("intent") {
            return Err(JournalError::UnknownIntent {
                run: run.to_owned(),
                intent: id.0,
            });
        }
        let answered: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM entries WHERE run_id = ?1 AND answers = ?2)",
            params![run, id.0 as i64],
            |r| r.get(0),
        )?;
        if answered {
            return Err(JournalError::DuplicateOutcome {
                run: run.to_owned(),
                intent: id.0,
            });
        }
    }
    let kind = if intent.is_some() { "outcome" } else { "input" };
    insert_entry(
        tx, run, seq, kind, at, vm, attempt, &name, intent, &body, now,
    )?;
    Ok(seq)
}

/// An event and its VM's status row, inside a write transaction.
fn event_in(
    tx: &Transaction<'_>,
    run: &str,
    token: Option<&str>,
    now: WallTime,
    event: &Event,
) -> Result<u64> {
    let body = encode(event)?;
    let name = tag(&body, "event");
    let seq = begin_entry(tx, run, token, now, false)?;
    let vm = event.kind.vm();
    if let (EventKind::Selected { .. }, Some(vm)) = (&event.kind, vm) {
        check_vm_free(tx, run, vm, now)?;
    }
    let attempt = match &event.kind {
        EventKind::AttemptStarted { attempt, .. }
        | EventKind::Progress { attempt, .. }
        | EventKind::Escalated { attempt, .. }
        | EventKind::WatchdogFired { attempt, .. }
        | EventKind::AttemptFailed { attempt, .. } => Some(*attempt),
        _ => None,
    };
    insert_entry(
        tx, run, seq, "event", event.at, vm, attempt, &name, None, &body, now,
    )?;
    if let Some(vm) = vm {
        update_status(tx, run, vm, seq, event)?;
    }
    Ok(seq)
}

fn begin_entry(
    tx: &Transaction<'_>,
    run: &str,
    token: Option<&str>,
    now: WallTime,
    unexpired: bool,
) -> Result<u64> {
    let state = run_state(tx, run)?;
    if state != RunState::Running {
        return Err(JournalError::RunNotRunning {
            run: run.to_owned(),
            state,
        });
    }
    check_lease(tx, run, token, now, unexpired)?;
    let seq: i64 = tx.query_row(
        "UPDATE runs SET last_seq = last_seq + 1 WHERE id = ?1 RETURNING last_seq",
        [run],
        |r| r.get(0),
    )?;
    Ok(seq as u64)
}

fn insert_entry(
    tx: &Transaction<'_>,
    run: &str,
    seq: u64,
    kind: &str,
    at: Time,
    vm: Option<&VmId>,
    attempt: Option<u32>,
    name: &str,
    answers: Option<IntentId>,
    body: &str,
    now: WallTime,
) -> Result<()> {
    tx.execute(
        "INSERT INTO entries (run_id, seq, kind, at, vm, attempt, name, answers, body, written_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            run,
            seq as i64,
            kind,
            at.0 as i64,
            vm.map(VmId::as_str),
            attempt,
            name,
            answers.map(|a| a.0 as i64),
            body,
            now.0
        ],
    )?;
    Ok(())
}

fn update_status(
    tx: &Transaction<'_>,
    run: &str,
    vm: &VmId,
    seq: u64,
    event: &Event,
) -> Result<()> {
    let row: Option<(i64, String)> = tx
        .query_row(
            "SELECT ord, status FROM vm_state WHERE run_id = ?1 AND vm = ?2",
            params![run, vm.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (ord, mut status) = match row {
        Some((ord, json)) => (ord as usize, decode::<VmStatus>(run, seq, &json)?),
        None => {
            let n: i64 = tx.query_row(
                "SELECT COUNT(*) FROM vm_state WHERE run_id = ?1",
                [run],
                |r| r.get(0),
            )?;
            (n as usize, VmStatus::new(vm.clone(), event.at))
        }
    };
    status.apply(event);
    schema::put_status(tx, run, ord, seq, &status)
}

fn read_statuses(conn: &Connection, run: &str) -> Result<Vec<VmStatus>> {
    let mut stmt =
        conn.prepare("SELECT updated_seq, status FROM vm_state WHERE run_id = ?1 ORDER BY ord")?;
    let rows = stmt.query_map([run], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, json) = row?;
        out.push(decode(run, seq, &json)?);
    }
    Ok(out)
}

fn read_stop(conn: &Connection, run: &str) -> Result<Option<StopRequest>> {
    let (kind, at): (String, Option<i64>) = conn.query_row(
        "SELECT stop_request, stop_requested_at FROM runs WHERE id = ?1",
        [run],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let at = WallTime(at.unwrap_or_default());
    Ok(match kind.as_str() {
        "none" => None,
        "stop" => Some(StopRequest {
            abort_running: false,
            at,
        }),
        "now" => Some(StopRequest {
            abort_running: true,
            at,
        }),
        other => {
            return Err(JournalError::Corrupt {
                what: "stop request",
                value: other.to_owned(),
            });
        }
    })
}

fn summary(conn: &Connection, run: &str) -> Result<RunSummary> {
    type Row = (i64, String, Option<String>, Option<i64>, String, u32, i64);
    let row: Option<Row> = conn
        .query_row(
            "SELECT created_at, state, state_detail, finished_at, driver_host, driver_pid, last_seq
             FROM runs WHERE id = ?1",
            [run],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )
        .optional()?;
    let (created, state, detail, finished, host, pid, last_seq) =
        row.ok_or_else(|| JournalError::UnknownRun(run.to_owned()))?;
    let state = RunState::parse(&state).ok_or(JournalError::Corrupt {
        what: "run state",
        value: state,
    })?;
    let mut phases = BTreeMap::new();
    {
        let mut stmt =
            conn.prepare("SELECT phase, COUNT(*) FROM vm_state WHERE run_id = ?1 GROUP BY phase")?;
        let rows = stmt.query_map([run], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?;
        for row in rows {
            let (p, n) = row?;
            phases.insert(schema::parse_phase(&p)?, n);
        }
    }
    Ok(RunSummary {
        id: run.to_owned(),
        created_at: WallTime(created),
        state,
        detail,
        finished_at: finished.map(WallTime),
        driver: Holder {
            pid,
            host,
            started: None,
            boot: None,
        },
        stop: read_stop(conn, run)?,
        lease: read_lease(conn, run)?.map(|(_, l)| l),
        entries: last_seq as u64,
        phases,
    })
}

/// Another run that is live now: running, with an unexpired lease.
fn live_runs(conn: &Connection, except: &str, now: WallTime) -> Result<Vec<LiveRun>> {
    let mut stmt = conn.prepare(
        "SELECT r.id, r.spec, l.holder_pid, l.holder_host,
                EXISTS (SELECT 1 FROM vm_state v WHERE v.run_id = r.id)
         FROM runs r JOIN leases l ON l.run_id = r.id
         WHERE r.state = 'running' AND l.expires_at > ?2 AND r.id <> ?1",
    )?;
    let rows = stmt.query_map(params![except, now.0], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, u32>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, bool>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, spec, pid, host, has_vms) = row?;
        let spec = decode(&id, 0, &spec)?;
        out.push(LiveRun {
            id,
            spec,
            pid,
            host,
            has_vms,
        });
    }
    Ok(out)
}

/// Refuses if another live run holds `vm` in an unfinished phase.
fn check_vm_free(conn: &Connection, run: &str, vm: &VmId, now: WallTime) -> Result<()> {
    let hit: Option<(String, String, u32, String)> = conn
        .query_row(
            "SELECT v.run_id, v.name, l.holder_pid, l.holder_host
             FROM vm_state v JOIN runs r ON r.id = v.run_id JOIN leases l ON l.run_id = v.run_id
             WHERE v.vm = ?1 AND v.run_id <> ?2 AND v.final = 0 AND r.state = 'running' AND l.expires_at > ?3
             LIMIT 1",
            params![vm.as_str(), run, now.0],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    match hit {
        None => Ok(()),
        Some((other_run, name, pid, host)) => Err(JournalError::VmInUse {
            vm: vm.0.clone(),
            name,
            other_run,
            pid,
            host,
        }),
    }
}

/// Whether a selection takes a VM of this name (a pattern that does not compile counts as a match:
/// refusing is the safe side).
fn selection_matches(sel: &Selection, name: &str) -> bool {
    match sel {
        Selection::All => true,
        Selection::Names(pats) => pats.iter().any(|p| {
            vmove_core::select::compile(p)
                .map(|m| m.is_match(name))
                .unwrap_or(true)
        }),
    }
}

/// Whether two selections of one host may take a common VM. Two glob patterns are assumed to
/// overlap (deciding it exactly is not worth the risk).
fn selections_may_overlap(a: &Selection, b: &Selection) -> bool {
    use vmove_core::select::is_glob;
    match (a, b) {
        (Selection::All, _) | (_, Selection::All) => true,
        (Selection::Names(x), Selection::Names(y)) => {
            let names_of = |v: &Vec<String>| {
                v.iter()
                    .filter(|p| !is_glob(p))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            let has_glob = |v: &Vec<String>| v.iter().any(|p| is_glob(p));
            (has_glob(x) && has_glob(y))
                || names_of(x).iter().any(|n| selection_matches(b, n))
                || names_of(y).iter().any(|n| selection_matches(a, n))
        }
    }
}

/// The VM guard at creation: refuses a run whose selection takes a VM another live run holds;
/// while that other run has selected nothing yet, refuses a selection that may overlap its own.
fn check_selection_free(conn: &Connection, run: &str, spec: &RunSpec, now: WallTime) -> Result<()> {
    for other in live_runs(conn, run, now)? {
        for src in &spec.sources {
            let Some(theirs) = other.spec.sources.iter().find(|s| s.host == src.host) else {
                continue;
            };
            if other.has_vms {
                let mut stmt = conn.prepare(
                    "SELECT vm, name FROM vm_state WHERE run_id = ?1 AND source = ?2 AND final = 0 ORDER BY ord",
                )?;
                let rows = stmt.query_map(params![other.id, src.host.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?;
                for row in rows {
                    let (vm, name) = row?;
                    if selection_matches(&src.select, &name) {
                        return Err(JournalError::VmInUse {
                            vm,
                            name,
                            other_run: other.id.clone(),
                            pid: other.pid,
                            host: other.host.clone(),
                        });
                    }
                }
            } else if selections_may_overlap(&src.select, &theirs.select) {
                return Err(JournalError::SelectionOverlap {
                    source_host: src.host.0.clone(),
                    other_run: other.id.clone(),
                    pid: other.pid,
                    host: other.host.clone(),
                });
            }
        }
    }
    Ok(())
}
