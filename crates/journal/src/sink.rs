//! The journal as a runtime [`EventSink`] (feature `sink`), and the keeper task that refreshes
//! the lease and polls stop requests while a run goes.
//!
//! The write protocol (docs/journal.md): a command's intent is recorded in
//! [`EventSink::on_command`], BEFORE the runtime carries it out; a driver's answer is recorded
//! in [`EventSink::on_input`] as the outcome of the intent it answers (or as an unasked input:
//! a stop, a pushed status), before the core sees it; the events of one core step are buffered
//! and recorded as ONE `record_events` batch in [`EventSink::on_step_end`], which the runtime
//! calls after each step's events and before that step's commands (and, defensively, any buffered
//! events are written before any other record).
//!
//! The [`Journal`] is blocking: every call goes through `spawn_blocking` on a shared handle.

use crate::error::JournalError;
use crate::journal::Journal;
use crate::record::{IntentId, StopRequest};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vmove_core::{Command, Event, Input, Snapshot, Time};
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

/// What an answer is matched to its intent by.
fn command_key(cmd: &Command) -> String {
    match cmd {
        Command::RefreshHost { host } => format!("refresh/{host}"),
        Command::StartMigration(r) => format!("start/{}/{}", r.vm, r.attempt),
        Command::PollMigration { vm, attempt, .. } => format!("poll/{vm}/{attempt}"),
        Command::AbortMigration { vm, attempt, .. } => format!("abort/{vm}/{attempt}"),
        Command::Converge { vm, attempt, .. } => format!("converge/{vm}/{attempt}"),
        Command::Locate { vm, attempt, .. } => format!("locate/{vm}/{attempt}"),
        Command::Verify { vm, attempt, .. } => format!("verify/{vm}/{attempt}"),
        Command::ListLeftovers { vm, attempt, .. } => format!("list/{vm}/{attempt}"),
        Command::RemoveLeftover {
            vm,
            attempt,
            leftover,
            ..
        } => format!(
            "remove/{vm}/{attempt}/{}",
            serde_json::to_string(leftover).unwrap_or_default()
        ),
    }
}

/// The key of the intent `input` answers; `None` for an input nobody asks for (a stop).
fn input_key(input: &Input) -> Option<String> {
    Some(match input {
        Input::HostRefreshed { host, .. } => format!("refresh/{host}"),
        Input::MigrationStarted { vm, attempt, .. } => format!("start/{vm}/{attempt}"),
        Input::MigrationStatus { vm, attempt, .. } => format!("poll/{vm}/{attempt}"),
        Input::AbortDone { vm, attempt, .. } => format!("abort/{vm}/{attempt}"),
        Input::Converged { vm, attempt, .. } => format!("converge/{vm}/{attempt}"),
        Input::Located { vm, attempt, .. } => format!("locate/{vm}/{attempt}"),
        Input::Verified { vm, attempt, .. } => format!("verify/{vm}/{attempt}"),
        Input::LeftoversListed { vm, attempt, .. } => format!("list/{vm}/{attempt}"),
        Input::LeftoverRemoved {
            vm,
            attempt,
            leftover,
            ..
        } => format!(
            "remove/{vm}/{attempt}/{}",
            serde_json::to_string(leftover).unwrap_or_default()
        ),
        Input::Stop { .. } => return None,
    })
}

fn sink_error(e: JournalError) -> SinkError {
    SinkError::new(format!("the journal could not be written: {e}"))
}

/// The journal sink of one run. The run must exist and this process must hold its lease
/// (`create_run` or `acquire` on the same shared handle).
pub struct JournalSink {
    journal: SharedJournal,
    run: String,
    /// Intents without an outcome yet, by what their answer is matched with.
    open: HashMap<String, VecDeque<IntentId>>,
    /// Events of the current step, not yet written.
    buffer: Vec<Event>,
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
        JournalSink {
            journal,
            run: run.into(),
            open: HashMap::new(),
            buffer: Vec::new(),
        }
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.buffer);
        let run = self.run.clone();
        with_journal(&self.journal, move |j| j.record_events(&run, &events))
            .await
            .map_err(sink_error)?;
        Ok(())
    }
}

#[async_trait]
impl EventSink for JournalSink {
    fn name(&self) -> &str {
        "journal"
    }

    async fn on_command(&mut self, now: Time, command: &Command) -> Result<(), SinkError> {
        self.flush().await?;
        let run = self.run.clone();
        let cmd = command.clone();
        // An expired lease nobody took over (this process was slow or paused) is renewed and the
        // intent retried once; a lease another process took is lost for good (fencing).
        let id = with_journal(&self.journal, move |j| {
            match j.record_intent(&run, now, &cmd) {
                Err(JournalError::LeaseExpired { .. }) => {
                    j.refresh_lease(&run)?;
                    j.record_intent(&run, now, &cmd)
                }
                other => other,
            }
        })
        .await
        .map_err(sink_error)?;
        self.open
            .entry(command_key(command))
            .or_default()
            .push_back(id);
        Ok(())
    }

    async fn on_input(&mut self, now: Time, input: &Input) -> Result<(), SinkError> {
        self.flush().await?;
        let run = self.run.clone();
        let inp = input.clone();
        let intent = input_key(input).and_then(|k| {
            let q = self.open.get_mut(&k)?;
            let id = q.pop_front();
            if q.is_empty() {
                self.open.remove(&k);
            }
            id
        });
        with_journal(&self.journal, move |j| match intent {
            Some(id) => j.record_outcome(&run, id, now, &inp),
            None => j.record_input(&run, now, &inp),
        })
        .await
        .map_err(sink_error)?;
        Ok(())
    }

    async fn on_event(&mut self, event: &Event) -> Result<(), SinkError> {
        self.buffer.push(event.clone());
        Ok(())
    }

    async fn on_step_end(&mut self) -> Result<(), SinkError> {
        self.flush().await
    }

    async fn on_finish(&mut self, _snapshot: &Snapshot) -> Result<(), SinkError> {
        self.flush().await
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
            loop {
                if last_refresh.is_none_or(|t| t.elapsed() >= refresh) {
                    last_refresh = Some(tokio::time::Instant::now());
                    let r = run.clone();
                    if let Err(e) = with_journal(&journal, move |j| j.refresh_lease(&r)).await {
                        eprintln!("vmove: warning: the journal lease could not be refreshed: {e}");
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
                        eprintln!(
                            "vmove: stop requested through the journal{}",
                            if stop.abort_running {
                                " (--now: aborting running migrations)"
                            } else {
                                ": no new moves; running ones finish"
                            }
                        );
                        control.stop(stop.abort_running);
                    }
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
