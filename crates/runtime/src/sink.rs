//! Observers of a run: the [`EventSink`] trait and two general sinks ([`NdjsonSink`],
//! [`CollectSink`]). The CLI adds its progress display; the journal will be one more sink.

use async_trait::async_trait;
use std::io::Write;
use std::sync::{Arc, Mutex};
use vmove_core::{Command, Event, Input, Snapshot, Time};

/// A sink could not do its work: a journal that cannot write must not let the run go on blind.
///
/// A refused [`EventSink::on_step`] is taken as an outage the sink may come back from (the
/// runtime pauses new moves, holds what changes the hosts, and offers the step again; see the
/// crate docs), unless the error is [`SinkError::lasting`] (the journal lost the run's lease
/// to another process: it must not act again), which stops the run at once. An error of any
/// other hook stops the run (no new moves; running ones finish).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    message: String,
    lasting: bool,
}

impl SinkError {
    /// An error with these words.
    pub fn new(message: impl Into<String>) -> Self {
        SinkError {
            message: message.into(),
            lasting: false,
        }
    }

    /// An error waiting does not cure (the run's lease is another process's now): the runtime
    /// stops the run at once instead of waiting for the sink.
    pub fn lasting(message: impl Into<String>) -> Self {
        SinkError {
            message: message.into(),
            lasting: true,
        }
    }

    /// The words.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Made by [`SinkError::lasting`].
    pub fn is_lasting(&self) -> bool {
        self.lasting
    }
}

impl From<std::io::Error> for SinkError {
    fn from(e: std::io::Error) -> Self {
        SinkError::new(e.to_string())
    }
}

/// An observer of a run. Every hook is awaited by the run loop, in order, so a sink sees the
/// run exactly as the core lived it:
/// - [`EventSink::on_input`] before the core is given a driver's answer;
/// - [`EventSink::on_event`] for every event the core emits;
/// - [`EventSink::on_step`] once the events of a step are all out, with the commands the step
///   asks for, BEFORE any of them is carried out (if it fails, none is); also after inputs
///   whose step said nothing. Its default calls [`EventSink::on_step_end`], then
///   [`EventSink::on_command`] for each command. The journal overrides it: what it was given
///   since its last write (inputs, events) and the commands' intents go to disk in one
///   transaction, one sync instead of one per record. A sink that refuses a step keeps what
///   it was given (inputs, events) and writes it with the next step it accepts: the runtime
///   offers steps again while it waits (docs/journal.md, "A full or failing journal"), and
///   the refused step's held commands with them;
/// - [`EventSink::on_finish`] once, with the final snapshot.
///
/// Sinks should be quick: the core waits for them.
#[async_trait]
pub trait EventSink: Send {
    /// A short name for error messages ("ndjson", "journal", "progress").
    fn name(&self) -> &str;

    /// Called before `command` is carried out. An error keeps it from being carried out.
    async fn on_command(&mut self, _now: Time, _command: &Command) -> Result<(), SinkError> {
        Ok(())
    }

    /// Called with each answer (or stop request) before the core handles it.
    async fn on_input(&mut self, _now: Time, _input: &Input) -> Result<(), SinkError> {
        Ok(())
    }

    /// Called with every event.
    async fn on_event(&mut self, event: &Event) -> Result<(), SinkError>;

    /// Called after the events of one core step were all given to [`EventSink::on_event`],
    /// before any command of that step is carried out (by the default [`EventSink::on_step`]).
    async fn on_step_end(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Called once the events of a step were given to [`EventSink::on_event`], with the
    /// commands of the step (maybe none), before any of them is carried out. An error keeps
    /// them all from being carried out.
    async fn on_step(&mut self, now: Time, commands: &[Command]) -> Result<(), SinkError> {
        self.on_step_end().await?;
        for c in commands {
            self.on_command(now, c).await?;
        }
        Ok(())
    }

    /// Called once when the run is over.
    async fn on_finish(&mut self, _snapshot: &Snapshot) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Writes every event as one JSON object per line (NDJSON), flushed after each line.
pub struct NdjsonSink<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> std::fmt::Debug for NdjsonSink<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NdjsonSink").finish_non_exhaustive()
    }
}

impl<W: Write + Send> NdjsonSink<W> {
    /// A sink writing to `out` (stdout, a file).
    pub fn new(out: W) -> Self {
        NdjsonSink { out }
    }

    /// Gives the writer back.
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[async_trait]
impl<W: Write + Send> EventSink for NdjsonSink<W> {
    fn name(&self) -> &str {
        "ndjson"
    }

    async fn on_event(&mut self, event: &Event) -> Result<(), SinkError> {
        let line = serde_json::to_string(event)
            .map_err(|e| SinkError::new(format!("an event could not be serialised: {e}")))?;
        writeln!(self.out, "{line}")?;
        self.out.flush()?;
        Ok(())
    }
}

/// What a [`CollectSink`] gathered; shared so the caller can read it after the run.
#[derive(Debug, Default, Clone)]
pub struct Collected {
    /// Every command, in the order it was carried out, with the time.
    pub commands: Vec<(Time, Command)>,
    /// Every event.
    pub events: Vec<Event>,
    /// The final snapshot.
    pub finished: Option<Snapshot>,
}

/// Keeps every command and event in memory (for reports and tests).
#[derive(Debug, Default, Clone)]
pub struct CollectSink {
    inner: Arc<Mutex<Collected>>,
}

impl CollectSink {
    /// A new, empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of what was collected so far.
    pub fn collected(&self) -> Collected {
        match self.inner.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Collected) -> R) -> R {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

#[async_trait]
impl EventSink for CollectSink {
    fn name(&self) -> &str {
        "collector"
    }

    async fn on_command(&mut self, now: Time, command: &Command) -> Result<(), SinkError> {
        self.with(|c| c.commands.push((now, command.clone())));
        Ok(())
    }

    async fn on_event(&mut self, event: &Event) -> Result<(), SinkError> {
        self.with(|c| c.events.push(event.clone()));
        Ok(())
    }

    async fn on_finish(&mut self, snapshot: &Snapshot) -> Result<(), SinkError> {
        self.with(|c| c.finished = Some(snapshot.clone()));
        Ok(())
    }
}
