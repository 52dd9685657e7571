//! The journal as a runtime [`EventSink`] (feature `sink`), and the keeper task that refreshes
//! the lease and polls stop requests while a run goes.
//!
//! The write protocol (docs/journal.md): a driver's answer given to [`EventSink::on_input`]
//! (matched to the intent it answers) and the events given to [`EventSink::on_event`] are kept
//! in order, and written together with the intents of the step's commands in ONE transaction
//! in [`EventSink::on_step`], which the runtime calls BEFORE any of those commands is carried
//! out (and after inputs whose step said nothing). So nothing is done that the journal does
//! not hold, and its cause (the answer, the events) is on disk with it. A crash before that
//! write loses only what had no effect yet: an answer no command followed from, whose intent
//! the next run finds without an outcome and asks again, as after a crash before the answer.
//! One sync per step instead of one per record: with a busy disk (the migrations' writes) a
//! sync took up to 50 ms in the lab, and a step often has an answer, a few events and two
//! intents.
//!
//! The [`Journal`] is blocking: every call goes through `spawn_blocking` on a shared handle.

use crate::error::JournalError;
use crate::journal::Journal;
use crate::record::{IntentId, StepRecord, StopRequest};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vmove_core::{Command, Event, Input, Key, Snapshot, Time};
use vmove_runtime::{Control, EventSink, SinkError};

/// A journal shared between the sink, the keeper and the caller.
pub type SharedJournal = Arc<Mutex<Journal>>;

/// Runs `f` on the journal on a blocking thread.
pub async fn with_journal<R: Send + 'static>(
    journal: &SharedJournal,
    f: impl FnOnce(&mut Journal) -> crate::Result<R> + Send + 'static,
) -> crate::Result<R> {
    let j = Arc::clone(journal);
    tokio::task::spawn_blocking(move || {
        let mut guard = j.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    })
    .await
    .map_err(|e| JournalError::Worker(e.to_string()))?
}

/// What a failed write says: the journal's path and SQLite's verdict with its causes
/// (`journal /x/journal.db: disk full (SQLITE_FULL): database or disk is full`).
fn describe(path: &std::path::Path, e: &JournalError) -> String {
    format!("journal {}: {}", path.display(), e.chain())
}

/// The journal sink of one run. The run must exist and this process must hold its lease
/// (`create_run` or `acquire` on the same shared handle).
pub struct JournalSink {
    journal: SharedJournal,
    run: String,
    /// Intents without an outcome yet, by what their answer is matched with.
    open: HashMap<Key, VecDeque<IntentId>>,
    /// Answers and events since the last write, in the order they came. Kept when a write
    /// fails, and written with the next one that succeeds.
    buffer: Vec<StepRecord>,
    /// Where the journal is (for messages).
    path: std::path::PathBuf,
    /// The last write failed (said once on stderr; said again when writes work again).
    down: bool,
}

impl std::fmt::Debug for JournalSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalSink")
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

impl JournalSink {
    /// A sink writing run `run` through `journal`.
    pub fn new(journal: SharedJournal, run: impl Into<String>) -> Self {
        let path = journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .path()
            .to_path_buf();
        JournalSink {
            journal,
            run: run.into(),
            open: HashMap::new(),
            buffer: Vec::new(),
            path,
            down: false,
        }
    }

    /// Writes what is buffered and the intents of `commands`, in one transaction.
    async fn write(&mut self, now: Time, commands: &[Command]) -> Result<(), SinkError> {
        if self.buffer.is_empty() && commands.is_empty() {
            return Ok(());
        }
        let kept = self.buffer.len();
        let mut step = std::mem::take(&mut self.buffer);
        step.extend(commands.iter().map(|c| StepRecord::Intent {
            at: now,
            command: c.clone(),
        }));
        let run = self.run.clone();
        // An expired lease nobody took over (this process was slow or paused, or the journal
        // could not be written for a while) is renewed and the step retried once; a lease
        // another process took is lost for good (fencing).
        let result = with_journal(&self.journal, move |j| {
            let r = match j.record_step(&run, &step) {
                Err(JournalError::LeaseExpired { .. }) => j
                    .refresh_lease(&run)
                    .and_then(|_| j.record_step(&run, &step)),
                other => other,
            };
            Ok((r, step))
        })
        .await;
        let ids = match result {
            Ok((Ok(ids), _)) => ids,
            Ok((Err(e), mut step)) => {
                // Nothing of the step was written: its answers and events wait for the next
                // write (the runtime offers the intents again with it).
                step.truncate(kept);
                self.buffer = step;
                return Err(self.failed(&e));
            }
            Err(e) => return Err(self.failed(&e)),
        };
        if self.down {
            self.down = false;
            say_on_stderr(format_args!(
                "vmove: journal {}: written again (what waited is written); held actions and new \
                 moves go on",
                self.path.display()
            ));
        }
        for (c, id) in commands.iter().zip(ids) {
            self.open.entry(c.key()).or_default().push_back(id);
        }
        Ok(())
    }

    /// The sink error for a failed write; the first of an outage is said on stderr, with what
    /// the run does about it (the runtime's rules: no new moves, reads go on, changes wait, the
    /// run waits for the journal up to `journal_wait`). A lease another process took is lost
    /// for good (fencing): a [`SinkError::lasting`], the run stops at once.
    fn failed(&mut self, e: &JournalError) -> SinkError {
        let what = describe(&self.path, e);
        if matches!(e, JournalError::LeaseLost { .. }) {
            say_on_stderr(format_args!(
                "vmove: {what}\nvmove: this process does nothing more to the hosts for run `{}`",
                self.run
            ));
            return SinkError::lasting(what);
        }
        if !self.down {
            self.down = true;
            say_on_stderr(format_args!(
                "vmove: {what}\nvmove: the journal cannot be written: no new moves until it can; \
                 running migrations are watched to their end; nothing is removed or aborted \
                 until then. The run waits for it (journal_wait); if it stays away longer, the \
                 run ends and `vmove resume {}` goes on",
                self.run
            ));
        }
        SinkError::new(what)
    }
}

#[async_trait]
impl EventSink for JournalSink {
    fn name(&self) -> &str {
        "journal"
    }

    async fn on_command(&mut self, now: Time, command: &Command) -> Result<(), SinkError> {
        self.write(now, std::slice::from_ref(command)).await
    }

    async fn on_input(&mut self, now: Time, input: &Input) -> Result<(), SinkError> {
        let intent = input.key().and_then(|k| {
            let q = self.open.get_mut(&k)?;
            let id = q.pop_front();
            if q.is_empty() {
                self.open.remove(&k);
            }
            id
        });
        self.buffer.push(StepRecord::Input {
            intent,
            at: now,
            input: input.clone(),
        });
        Ok(())
    }

    async fn on_event(&mut self, event: &Event) -> Result<(), SinkError> {
        self.buffer.push(StepRecord::Event(event.clone()));
        Ok(())
    }

    async fn on_step(&mut self, now: Time, commands: &[Command]) -> Result<(), SinkError> {
        self.write(now, commands).await
    }

    async fn on_finish(&mut self, _snapshot: &Snapshot) -> Result<(), SinkError> {
        self.write(Time::ZERO, &[]).await
    }
}

/// The journal as the runtime's cross-process slot ledger ([`vmove_runtime::Ledger`]): a
/// start's slots are reserved with [`Journal::reserve_slots`] under the run's lease, given
/// back with [`Journal::release_slots`]. Every process sharing the journal (a PostgreSQL
/// database, or one SQLite file on one machine) counts the others' reservations.
#[derive(Clone)]
pub struct JournalLedger {
    journal: SharedJournal,
    run: String,
    path: std::path::PathBuf,
}

impl std::fmt::Debug for JournalLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalLedger")
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

impl JournalLedger {
    /// The ledger of run `run` (whose lease this process holds on `journal`).
    pub fn new(journal: SharedJournal, run: impl Into<String>) -> Self {
        let path = journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .path()
            .to_path_buf();
        JournalLedger {
            journal,
            run: run.into(),
            path,
        }
    }
}

#[async_trait]
impl vmove_runtime::Ledger for JournalLedger {
    async fn reserve(
        &self,
        request: &vmove_core::MigrationRequest,
        source: &vmove_core::HostView,
        destination: &vmove_core::HostView,
    ) -> Result<vmove_runtime::LedgerAnswer, String> {
        let (run, vm) = (self.run.clone(), request.vm.clone());
        let (src, dst) = (source.clone(), destination.clone());
        // An expired lease nobody took over is renewed and the reservation asked again once,
        // as the sink does for a step.
        let grant = with_journal(&self.journal, move |j| {
            match j.reserve_slots(&run, &vm, &src, &dst) {
                Err(JournalError::LeaseExpired { .. }) => {
                    j.refresh_lease(&run)?;
                    j.reserve_slots(&run, &vm, &src, &dst)
                }
                other => other,
            }
        })
        .await
        .map_err(|e| describe(&self.path, &e))?;
        Ok(match grant {
            crate::SlotGrant::Reserved => vmove_runtime::LedgerAnswer::Granted,
            crate::SlotGrant::Full(counts) => vmove_runtime::LedgerAnswer::Full(
                counts.into_iter().map(|c| (c.host, c.others)).collect(),
            ),
        })
    }

    async fn release(&self, vm: &vmove_core::VmId) -> Result<(), String> {
        let (run, vm) = (self.run.clone(), vm.clone());
        with_journal(&self.journal, move |j| j.release_slots(&run, &vm))
            .await
            .map_err(|e| describe(&self.path, &e))
    }
}

/// Refreshes the lease and polls stop requests while a run goes.
#[derive(Debug)]
pub struct Keeper {
    task: tokio::task::JoinHandle<()>,
}

impl Keeper {
    /// Starts the keeper: at once and then every `refresh` it refreshes the lease; every `poll` it reads the run's stop request and, when one is new or
    /// stronger than the last seen, sends it through `control` (the runtime feeds it to the core
    /// as `Input::Stop`, through the sinks). A lost lease
    /// is reported on stderr: the next journal write fails (fencing) and the run stops.
    pub fn start(
        journal: SharedJournal,
        run: String,
        control: Control,
        poll: Duration,
        refresh: Duration,
        seen: Option<StopRequest>,
    ) -> Keeper {
        let task = tokio::spawn(async move {
            let tick = poll.min(refresh).max(Duration::from_millis(10));
            // Refreshed at once: the lease was taken some time before the run started.
            let mut last_refresh: Option<tokio::time::Instant> = None;
            let mut last_poll = tokio::time::Instant::now();
            let mut strongest: Option<bool> = seen.map(|s| s.abort_running);
            // Said once per outage (a full disk fails every refresh): the sink says the cause.
            let mut refresh_failed = false;
            loop {
                if last_refresh.is_none_or(|t| t.elapsed() >= refresh) {
                    last_refresh = Some(tokio::time::Instant::now());
                    let r = run.clone();
                    match with_journal(&journal, move |j| j.refresh_lease(&r)).await {
                        Err(e) if !refresh_failed => {
                            refresh_failed = true;
                            say_on_stderr(format_args!(
                                "vmove: warning: the journal lease could not be refreshed: {}",
                                e.chain()
                            ));
                        }
                        Err(_) => {}
                        Ok(_) => refresh_failed = false,
                    }
                }
                tokio::time::sleep(tick).await;
                if last_poll.elapsed() < poll {
                    continue;
                }
                last_poll = tokio::time::Instant::now();
                let r = run.clone();
                if let Ok(Some(stop)) = with_journal(&journal, move |j| j.stop_requested(&r)).await
                {
                    let stronger = match strongest {
                        None => true,
                        Some(prev) => stop.abort_running && !prev,
                    };
                    if stronger {
                        strongest = Some(stop.abort_running);
                        say_on_stderr(format_args!(
                            "vmove: stop requested through the journal{}",
                            if stop.abort_running {
                                " (--now: aborting running migrations)"
                            } else {
                                ": no new moves; running ones finish"
                            }
                        ));
                        control.stop(stop.abort_running);
                    }
                }
                // Per-VM stops (`vmove skip RUN VM`, `vmove abort RUN VM`): each fed once.
                let r = run.clone();
                if let Ok(reqs) =
                    with_journal(&journal, move |j| j.vm_stop_requests(&r, true)).await
                    && !reqs.is_empty()
                {
                    for q in &reqs {
                        say_on_stderr(format_args!(
                            "vmove: {} of VM {} requested through the journal by {} at {}",
                            if q.abort { "abort" } else { "skip" },
                            q.name,
                            q.by,
                            q.at
                        ));
                        control.stop_vm(q.vm.clone(), q.abort, q.by.clone(), q.at.to_string());
                    }
                    let ids: Vec<i64> = reqs.iter().map(|q| q.id).collect();
                    let r = run.clone();
                    let _ =
                        with_journal(&journal, move |j| j.mark_vm_stops_delivered(&r, &ids)).await;
                }
            }
        });
        Keeper { task }
    }

    /// Stops the keeper.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// One line for the person on stderr. A closed or broken stderr must not end the run
/// (`eprintln!` panics when the write fails), so a failed write is dropped.
fn say_on_stderr(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{args}");
}
