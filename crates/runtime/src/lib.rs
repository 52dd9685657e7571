//! The tokio glue between the pure [`vmove_core::Core`] and the hypervisor drivers.
//!
//! [`Runtime::run`] owns one run: it carries out every [`Command`] the core asks for as its own
//! task (each driver call under a time-out), feeds each answer back as the matching [`Input`]
//! with `now` = milliseconds since the run's [`tokio::time::Instant`] epoch, calls
//! [`Core::handle_timeout`] when [`Core::poll_timeout`] says, and forwards every [`Event`] to the
//! [`EventSink`]s. Because it uses `tokio::time` only, tests run it on a paused clock.
//!
//! # Layout
//! - [`sink`]: the [`EventSink`] trait (hooks before a command, on each answer, on each event,
//!   at the end) and two general sinks, [`NdjsonSink`] and [`CollectSink`].
//! - [`ledger`]: the [`Ledger`] port, the cross-process slot ledger consulted before a start
//!   and told when a VM's slots are free again.
//! - `exec`: one command against the drivers, with time-outs; the class of a time-out is
//!   `Transient` for a read-only call and `Indeterminate` for a state-changing one.
//! - this file: [`Runtime`], [`RuntimeOptions`], the stop handle ([`Control`]) and [`RunResult`].
//!
//! # Failure handling
//! - A driver error becomes the core's [`vmove_core::Failure`] with the driver's class.
//! - A driver call that does not answer within [`RuntimeOptions::call_timeout`] is cut off.
//! - A task that panics is answered as if its call had timed out (the core never waits forever).
//! - A sink that refuses a step (a journal that cannot write: its database went away, a full
//!   disk) is an **outage**, a pause rather than the run's end. The core's starts are paused
//!   ([`Engine::pause_starts`]: nothing new starts, no attempt is counted or failed). The
//!   step's commands are not lost: a read-only call (refresh, progress poll, locate, verify,
//!   list leftovers) changes nothing on the hosts and is carried out anyway, so running
//!   migrations are still watched to their end and no watchdog fires because the journal is
//!   down; a call that changes the hosts (a start, abort, convergence aid, leftover removal)
//!   is **held**, unanswered, and offered again to the sinks at every step and every
//!   [`JOURNAL_RETRY`]: carried out once its intent is written (intent before action: nothing
//!   is removed from a source while the proof cannot be journaled). The sink keeps what it
//!   could not write and writes it, in order, with the first step it accepts; then the held
//!   calls go on, starts resume, and the run goes on as if nothing happened.
//! - An outage longer than [`RuntimeOptions::journal_wait`], or a refusal waiting cannot cure
//!   ([`SinkError::lasting`]: the journal lost the run's lease to another process), or an
//!   error of any other hook, ends the waiting: the core is asked to stop starting moves (an
//!   `Input::Stop`, shown to the sinks like any input), a held start is answered as a
//!   transient failure (it never happened), and a call that changes the hosts stays held.
//!   When every VM not yet final waits on a held call, the run ends ([`RunResult::held`]);
//!   `vmove resume` goes on from the journal and the hosts.
//! - If the core is neither finished nor waiting on anything (no task, no timer), the run ends
//!   with [`RunResult::stalled`] rather than hang.

mod exec;
pub mod ledger;
pub mod sink;

pub use exec::Drivers;
pub use ledger::{Ledger, LedgerAnswer};
pub use sink::{CollectSink, Collected, EventSink, NdjsonSink, SinkError};

use exec::{Answer, CallKind, Exec, call_kind};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use vmove_core::{
    Command, Core, ErrorClass, Event, EventKind, Failure, HostId, HostView, Input, Snapshot, Time,
};

/// What the runtime drives: [`Core`], or a stand-in with the same surface (tests script one to
/// exercise the runtime alone).
pub trait Engine: Send {
    /// See [`Core::handle_event`].
    fn handle_event(&mut self, now: Time, input: Input);
    /// See [`Core::handle_timeout`].
    fn handle_timeout(&mut self, now: Time);
    /// See [`Core::poll_command`].
    fn poll_command(&mut self) -> Option<Command>;
    /// See [`Core::poll_event`].
    fn poll_event(&mut self) -> Option<Event>;
    /// See [`Core::poll_timeout`].
    fn poll_timeout(&self) -> Option<Time>;
    /// See [`Core::is_finished`].
    fn is_finished(&self) -> bool;
    /// See [`Core::snapshot`].
    fn snapshot(&self, now: Time) -> Snapshot;
    /// See [`Core::pause_starts`] (a stand-in that never starts anything may ignore it).
    fn pause_starts(&mut self, _now: Time, _paused: bool) {}
    /// See [`Core::host_view`]: what the slot ledger is given before a start. An engine that
    /// has none (a scripted stand-in) starts without asking the ledger.
    fn host_view(&self, _host: &HostId) -> Option<HostView> {
        None
    }
}

impl Engine for Core {
    fn handle_event(&mut self, now: Time, input: Input) {
        Core::handle_event(self, now, input);
    }
    fn handle_timeout(&mut self, now: Time) {
        Core::handle_timeout(self, now);
    }
    fn poll_command(&mut self) -> Option<Command> {
        Core::poll_command(self)
    }
    fn poll_event(&mut self) -> Option<Event> {
        Core::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<Time> {
        Core::poll_timeout(self)
    }
    fn is_finished(&self) -> bool {
        Core::is_finished(self)
    }
    fn snapshot(&self, now: Time) -> Snapshot {
        Core::snapshot(self, now)
    }
    fn pause_starts(&mut self, now: Time, paused: bool) {
        Core::pause_starts(self, now, paused);
    }
    fn host_view(&self, host: &HostId) -> Option<HostView> {
        Core::host_view(self, host)
    }
}

/// The default of [`RuntimeOptions::call_timeout`]: longer than any single driver call takes
/// on a healthy host (a start or an abort over a slow link answers in well under a minute), so
/// only a call that hangs is cut off.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The default of [`RuntimeOptions::journal_wait`]: long enough for a database to fail over or
/// restart, short enough that a journal gone for good does not keep a run waiting for long.
pub const DEFAULT_JOURNAL_WAIT: Duration = Duration::from_secs(300);

/// While the journal cannot be written, how often its step is offered again when nothing else
/// happens (real time).
pub const JOURNAL_RETRY: Duration = Duration::from_secs(1);

/// How the runtime behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeOptions {
    /// The longest any one driver call may take before it is cut off.
    pub call_timeout: Duration,
    /// Run-time seconds per real second (1 for real hosts). The demo runs the core on a
    /// simulated cluster whose clock is real time sped up; the core's clock must run as fast.
    /// `call_timeout` stays in real time.
    pub speed: f64,
    /// The run time at which the run loop starts (0 for a new run). A resumed run starts at the
    /// largest time its journal recorded, so the core never sees time go back.
    pub start: Time,
    /// How long (real time) the run waits for a journal that cannot be written before it gives
    /// up and ends as [`RunResult::held`] (see the crate docs).
    pub journal_wait: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            call_timeout: DEFAULT_CALL_TIMEOUT,
            speed: 1.0,
            start: Time::ZERO,
            journal_wait: DEFAULT_JOURNAL_WAIT,
        }
    }
}

/// A message to a running run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlMsg {
    /// Stop starting moves; with `abort_running`, abort the running ones too.
    Stop {
        /// Abort running migrations too.
        abort_running: bool,
    },
    /// Stop one VM's move (fed to the core as `Input::StopVm`).
    StopVm {
        vm: vmove_core::VmId,
        /// Abort its migration if one runs.
        abort_running: bool,
        /// Who asked.
        by: String,
        /// When (wall clock).
        at: String,
    },
}

/// A handle to steer a running run (Ctrl-C handling in the CLI holds one). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Control {
    tx: mpsc::UnboundedSender<ControlMsg>,
}

/// The run's end of [`Control`]; hand it to [`Runtime::run`].
#[derive(Debug)]
pub struct ControlReceiver {
    rx: mpsc::UnboundedReceiver<ControlMsg>,
}

impl Control {
    /// A new handle and the receiver the run listens on.
    pub fn new() -> (Control, ControlReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Control { tx }, ControlReceiver { rx })
    }

    /// Asks the run to stop starting moves (and, with `abort_running`, to abort running ones).
    /// Returns false when the run is already over.
    pub fn stop(&self, abort_running: bool) -> bool {
        self.tx.send(ControlMsg::Stop { abort_running }).is_ok()
    }

    /// Asks the run to stop one VM's move (`vmove skip RUN VM` / `vmove abort RUN VM`; the
    /// core decides whether its phase allows it). Returns false when the run is already over.
    pub fn stop_vm(
        &self,
        vm: vmove_core::VmId,
        abort_running: bool,
        by: String,
        at: String,
    ) -> bool {
        self.tx
            .send(ControlMsg::StopVm {
                vm,
                abort_running,
                by,
                at,
            })
            .is_ok()
    }
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// Every VM and host at the end.
    pub snapshot: Snapshot,
    /// How long the run took (on the tokio clock).
    pub elapsed: Duration,
    /// The strongest stop asked for: `Some(false)` stop starting, `Some(true)` abort running.
    pub stop_requested: Option<bool>,
    /// The sink error that stopped the run, if any (an outage the journal came back from is
    /// not one).
    pub sink_error: Option<String>,
    /// The core was not finished but waited on nothing: the run was given up.
    pub stalled: bool,
    /// Calls that change the hosts and were not carried out because a sink (the journal)
    /// could not record them: the run ended with every unfinished VM waiting on one.
    pub held: Vec<Command>,
}

impl RunResult {
    /// Why the run as a whole failed, if it did (a failed run, a sink error, a stall).
    pub fn error(&self) -> Option<String> {
        if let Some(e) = &self.snapshot.failed {
            return Some(e.clone());
        }
        if let Some(e) = &self.sink_error {
            return Some(e.clone());
        }
        if self.stalled {
            return Some("the engine stopped making progress (nothing in flight, no timer)".into());
        }
        None
    }
}

/// The words of a sink's failure: as the sink put them when they start with its name
/// (`journal /x/journal.db: disk full (SQLITE_FULL)`), else `the NAME sink failed: ...`.
fn sink_failure(name: &str, e: &SinkError) -> String {
    if e.message().starts_with(name) {
        e.message().to_owned()
    } else {
        format!("the {name} sink failed: {e}")
    }
}

/// Runs a [`Core`] (any [`Engine`]) against real drivers.
#[derive(Clone, Debug, Default)]
pub struct Runtime {
    options: RuntimeOptions,
    /// The cross-process slot ledger, if the run shares its hosts' slots with other processes
    /// through a journal.
    ledger: Option<Arc<dyn Ledger>>,
}

/// A wake-up time that never comes (a year away), for the `select!` branch of a timer that is
/// not set (the branch is disabled then; tokio still wants an instant).
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// A journal (a sink that refused a step) that cannot be written, and the run waits for it.
struct Outage {
    /// When its first step was refused.
    since: Instant,
    /// Why (the sink's words).
    error: String,
    /// When its step is offered again if nothing else happens first.
    retry_at: Instant,
}

/// What the run loop keeps between steps.
struct Loop<E: Engine> {
    core: E,
    epoch: Instant,
    speed: f64,
    /// The latest time handed to the core (time never goes back).
    last_now: Time,
    /// Run time at `epoch`.
    start: Time,
    exec: Arc<Exec>,
    sinks: Vec<Box<dyn EventSink>>,
    tasks: JoinSet<Answer>,
    /// The answer to give when a task dies without answering.
    fallbacks: HashMap<tokio::task::Id, Input>,
    stop_requested: Option<bool>,
    sink_error: Option<String>,
    /// Inputs were given to the sinks since their last `on_step` (which writes them).
    unwritten: bool,
    /// Answers to feed without running anything (commands a sink refused).
    pending: Vec<Input>,
    /// Calls that change the hosts, refused by a sink (the journal could not write their
    /// intent): not carried out, not answered, offered to the sinks again at the next step.
    held: Vec<Command>,
    /// The sinks (by index) that refused the last step they were given: they are given the
    /// held commands again, the others are not.
    down: Vec<bool>,
    /// One task per migration this run started, awaiting [`vmove_driver::Driver::wait_for_end`];
    /// each yields the end it learned of (an unasked status), or nothing if the driver cannot
    /// tell. Not counted as work in flight: the engine's own polls and timers go on beside them.
    watchers: JoinSet<Option<Input>>,
    /// The journal cannot be written and the run waits for it (starts paused).
    outage: Option<Outage>,
    /// See [`RuntimeOptions::journal_wait`].
    journal_wait: Duration,
    /// The cross-process slot ledger, if any.
    ledger: Option<Arc<dyn Ledger>>,
    /// VMs whose slots the ledger could not take back during an outage (given again once the
    /// journal is back).
    unreleased: Vec<vmove_core::VmId>,
    /// Since when the ledger fails, until it answers again.
    ledger_down_since: Option<Instant>,
}

impl Runtime {
    /// A runtime with these options.
    pub fn new(options: RuntimeOptions) -> Self {
        Runtime {
            options,
            ledger: None,
        }
    }

    /// The same runtime, asking `ledger` before every start (see [`ledger`]).
    pub fn with_ledger(mut self, ledger: Arc<dyn Ledger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Runs `core` to its end. Never panics on driver or sink trouble; see the module docs.
    pub async fn run<E: Engine>(
        &self,
        core: E,
        drivers: Drivers,
        sinks: Vec<Box<dyn EventSink>>,
        mut control: ControlReceiver,
    ) -> RunResult {
        let epoch = Instant::now();
        let start = self.options.start;
        let mut lp = Loop {
            core,
            epoch,
            speed: if self.options.speed.is_finite() && self.options.speed > 0.0 {
                self.options.speed
            } else {
                1.0
            },
            last_now: start,
            start,
            exec: Arc::new(Exec {
                drivers,
                call_timeout: self.options.call_timeout,
            }),
            ledger: self.ledger.clone(),
            unreleased: Vec::new(),
            ledger_down_since: None,
            down: vec![false; sinks.len()],
            sinks,
            tasks: JoinSet::new(),
            fallbacks: HashMap::new(),
            stop_requested: None,
            sink_error: None,
            unwritten: false,
            pending: Vec::new(),
            held: Vec::new(),
            watchers: JoinSet::new(),
            outage: None,
            journal_wait: self.options.journal_wait,
        };
        let mut control_open = true;
        let mut stalled = false;
        loop {
            lp.pump().await;
            // A finished run whose last records are not written yet waits for the journal.
            if lp.core.is_finished() && lp.outage.is_none() {
                break;
            }
            if !lp.pending.is_empty() {
                for input in std::mem::take(&mut lp.pending) {
                    lp.feed(input).await;
                }
                continue;
            }
            if lp.outage.is_none() && lp.blocked_on_held() {
                // Nothing more can happen without the record: the run ends, resumable.
                break;
            }
            let wake = lp.core.poll_timeout();
            let deadline = wake.map(|t| lp.instant_of(t));
            let retry = lp.outage.as_ref().map(|o| o.retry_at);
            if lp.tasks.is_empty() && deadline.is_none() && retry.is_none() {
                stalled = true;
                break;
            }
            let far = Instant::now() + NEVER;
            tokio::select! {
                biased;
                msg = control.rx.recv(), if control_open => match msg {
                    Some(ControlMsg::Stop { abort_running }) => {
                        lp.stop_requested = Some(lp.stop_requested.unwrap_or(false) || abort_running);
                        lp.feed(Input::Stop { abort_running }).await;
                    }
                    Some(ControlMsg::StopVm { vm, abort_running, by, at }) => {
                        lp.feed(Input::StopVm { vm, abort_running, by, at }).await;
                    }
                    None => control_open = false,
                },
                Some(joined) = lp.tasks.join_next_with_id() => {
                    let answer = match joined {
                        Ok((id, answer)) => {
                            lp.fallbacks.remove(&id);
                            answer
                        }
                        Err(e) => match lp.fallbacks.remove(&e.id()) {
                            Some(input) => Answer { input, started: None, ledger_error: None },
                            None => continue,
                        },
                    };
                    lp.feed_answer(answer).await;
                }
                Some(Ok(Some(input))) = lp.watchers.join_next(), if !lp.watchers.is_empty() => {
                    lp.feed(input).await;
                }
                () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                    // Rounding must not make the core see a time before the one it asked for.
                    let now = lp.now().max(wake.unwrap_or(Time::ZERO));
                    lp.last_now = now;
                    lp.core.handle_timeout(now);
                }
                () = tokio::time::sleep_until(retry.unwrap_or(far)), if retry.is_some() => {
                    lp.retry_journal();
                }
            }
        }
        if lp.core.is_finished() {
            lp.close_unanswered_refreshes().await;
        }
        lp.tasks.abort_all();
        lp.watchers.abort_all();
        let now = lp.now();
        let snapshot = lp.core.snapshot(now);
        for sink in &mut lp.sinks {
            if let Err(e) = sink.on_finish(&snapshot).await {
                lp.sink_error
                    .get_or_insert_with(|| sink_failure(sink.name(), &e));
            }
        }
        RunResult {
            snapshot,
            elapsed: epoch.elapsed(),
            stop_requested: lp.stop_requested,
            sink_error: lp.sink_error,
            stalled,
            held: lp.held,
        }
    }
}

impl<E: Engine> Loop<E> {
    /// Run time now: real time since the epoch times the speed; never earlier than before.
    fn now(&mut self) -> Time {
        let elapsed = self.epoch.elapsed();
        let ms = if self.speed == 1.0 {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        } else {
            (elapsed.as_secs_f64() * self.speed * 1000.0) as u64
        };
        self.last_now = self.last_now.max(Time(self.start.0.saturating_add(ms)));
        self.last_now
    }

    /// The real instant at which run time reaches `t`.
    fn instant_of(&self, t: Time) -> Instant {
        let t = Time(t.0.saturating_sub(self.start.0));
        if self.speed == 1.0 {
            self.epoch + t.since_epoch()
        } else {
            self.epoch + Duration::from_secs_f64(t.as_millis() as f64 / 1000.0 / self.speed)
        }
    }

    /// A finished run can end with host refreshes still in flight (the last move's end asks for
    /// one). Their answers no longer matter to the core, but each was journaled as an intent:
    /// the sinks are given its answer, "not answered before the run ended", so that every intent
    /// of a finished run has its outcome. Only host refreshes: a call about a VM is never closed
    /// here (a finished run has none in flight, and one of an unfinished run stays open for
    /// resume to settle).
    async fn close_unanswered_refreshes(&mut self) {
        let now = self.now();
        let unanswered: Vec<Input> = self
            .fallbacks
            .drain()
            .filter_map(|(_, input)| match input {
                Input::HostRefreshed {
                    host, requested_at, ..
                } => Some(Input::HostRefreshed {
                    host,
                    requested_at,
                    result: Err(Failure::new(
                        ErrorClass::Transient,
                        "not answered before the run ended",
                    )),
                }),
                _ => None,
            })
            .collect();
        for input in &unanswered {
            for sink in &mut self.sinks {
                if let Err(e) = sink.on_input(now, input).await {
                    self.sink_error
                        .get_or_insert_with(|| sink_failure(sink.name(), &e));
                }
            }
        }
    }

    /// Hands one input to the sinks, then to the core.
    async fn feed(&mut self, input: Input) {
        self.feed_answer(Answer {
            input,
            started: None,
            ledger_error: None,
        })
        .await;
    }

    /// [`Loop::feed`] for a command's answer; the end of a migration it started is watched
    /// (once the core knows of the start).
    async fn feed_answer(&mut self, answer: Answer) {
        let Answer {
            input,
            started,
            ledger_error,
        } = answer;
        let now = self.now();
        if let Some(e) = ledger_error {
            // The ledger could not be asked: the start did not happen (answered deferred, not
            // counted); the run waits for the journal as in any outage.
            self.ledger_failed();
            self.journal_lost(e, now);
        } else if self.ledger.is_some()
            && matches!(
                input,
                Input::MigrationStarted { .. } | Input::StartDeferred { .. }
            )
        {
            // The ledger answered a reservation.
            self.ledger_down_since = None;
        }
        let mut failed = None;
        for sink in &mut self.sinks {
            if let Err(e) = sink.on_input(now, &input).await {
                failed.get_or_insert_with(|| sink_failure(sink.name(), &e));
            }
        }
        self.unwritten = true;
        let watch = match (&input, started) {
            (
                Input::MigrationStarted {
                    result: Ok(handle), ..
                },
                Some(req),
            ) => Some((req, handle.clone())),
            _ => None,
        };
        self.core.handle_event(now, input);
        if let Some((req, handle)) = watch {
            self.watchers
                .spawn(Arc::clone(&self.exec).watch_end(req, handle));
        }
        if let Some(e) = failed {
            self.sink_failed(e);
        }
    }

    /// Records a sink error that ends the run's waiting and asks the core to stop starting
    /// moves (once). A start held by an outage is answered as a failure (it never happened);
    /// the other held calls stay held.
    fn sink_failed(&mut self, error: String) {
        if self.sink_error.is_none() {
            self.sink_error = Some(error.clone());
            self.outage = None;
            if self.stop_requested.is_none() {
                self.stop_requested = Some(false);
            }
            // Fed like any other input (sinks see it first), before anything else happens.
            self.pending.push(Input::Stop {
                abort_running: false,
            });
            let now = self.last_now;
            let (starts, rest): (Vec<Command>, Vec<Command>) = std::mem::take(&mut self.held)
                .into_iter()
                .partition(|c| matches!(c, Command::StartMigration(_)));
            self.held = rest;
            for start in starts {
                let failure =
                    Failure::new(ErrorClass::Transient, format!("not carried out: {error}"));
                self.pending.push(start.failed(now, failure));
            }
        }
    }

    /// A sink refused a step: unless the run already gave up on it, the run waits for the
    /// journal, starts paused (once per outage).
    fn journal_lost(&mut self, error: String, now: Time) {
        if self.sink_error.is_some() || self.outage.is_some() {
            return;
        }
        let at = Instant::now();
        self.outage = Some(Outage {
            // A ledger that keeps failing between steps the journal takes is one outage, from
            // its first failure (or `journal_wait` would never run out).
            since: self.ledger_down_since.unwrap_or(at),
            error,
            retry_at: at + JOURNAL_RETRY,
        });
        self.core.pause_starts(now, true);
    }

    /// Every sink took its step: what waited is written, held calls were carried out with
    /// that step; starts go on.
    fn journal_back(&mut self, now: Time) {
        if self.ledger_down_since.is_some() {
            // The journal took the step but the ledger has not answered since it failed: the
            // retry timer lets a start ask it again ([`Loop::retry_journal`]), not every step.
            return;
        }
        if self.outage.take().is_some() {
            self.core.pause_starts(now, false);
        }
    }

    /// Notes that the ledger could not be asked (the first time since it last answered).
    fn ledger_failed(&mut self) {
        self.ledger_down_since.get_or_insert_with(Instant::now);
    }

    /// Gives the ledger the releases it could not take during an outage (those it still
    /// cannot take stay kept, and the run waits for the journal again).
    async fn release_kept(&mut self) {
        let Some(ledger) = self.ledger.clone() else {
            return;
        };
        for vm in std::mem::take(&mut self.unreleased) {
            if let Err(e) = ledger.release(&vm).await {
                self.unreleased.push(vm);
                self.ledger_failed();
                let now = self.last_now;
                self.journal_lost(format!("slot ledger: {e}"), now);
            } else {
                self.ledger_down_since = None;
            }
        }
    }

    /// The retry timer of an outage: past [`RuntimeOptions::journal_wait`] the run gives up
    /// waiting; otherwise the next step is offered even if nothing else happens.
    fn retry_journal(&mut self) {
        let Some(o) = &mut self.outage else {
            return;
        };
        if o.since.elapsed() >= self.journal_wait {
            let e = format!(
                "{} (not written again within {}, the journal_wait)",
                o.error,
                vmove_core::spec::dur::format_duration(self.journal_wait)
            );
            self.sink_failed(e);
            return;
        }
        if self.ledger_down_since.is_some() {
            // Starts go on again so that the next one asks the ledger (if it still fails, the
            // outage goes on from its first failure).
            self.outage = None;
            let now = self.last_now;
            self.core.pause_starts(now, false);
            self.unwritten = true;
            return;
        }
        o.retry_at = Instant::now() + JOURNAL_RETRY;
        self.unwritten = true;
    }

    /// Whether every VM not yet final waits on a held call (none is moving or being looked
    /// at): nothing more can happen until the record can be written. A held convergence aid
    /// does not count: its migration goes on, and is still watched.
    fn blocked_on_held(&self) -> bool {
        if self.held.is_empty() {
            return false;
        }
        let waiting: std::collections::HashSet<&vmove_core::VmId> = self
            .held
            .iter()
            .filter(|c| !matches!(c, Command::Converge { .. }))
            .filter_map(Command::vm)
            .collect();
        self.core
            .snapshot(self.last_now)
            .vms
            .iter()
            .filter(|v| !v.phase.is_final())
            .all(|v| waiting.contains(&v.id))
    }

    /// Forwards events, then carries out commands, until the core has nothing more to say.
    /// Held commands are offered again once per call.
    async fn pump(&mut self) {
        let mut retried = false;
        loop {
            let mut events = false;
            while let Some(ev) = self.core.poll_event() {
                events = true;
                self.forward(&ev).await;
            }
            let now = self.now();
            let mut commands = Vec::new();
            while let Some(cmd) = self.core.poll_command() {
                if let (Some(e), Command::StartMigration(_)) = (&self.sink_error, &cmd) {
                    // After a sink failed, nothing new starts (the core is being stopped).
                    let failure = Failure::new(
                        ErrorClass::Transient,
                        format!("not started: the run is stopping because {e}"),
                    );
                    self.pending.push(cmd.failed(now, failure));
                } else {
                    commands.push(cmd);
                }
            }
            let retry = !retried && !self.held.is_empty();
            if !events && commands.is_empty() && !self.unwritten && !retry {
                return;
            }
            self.unwritten = false;
            let held = if retry {
                retried = true;
                std::mem::take(&mut self.held)
            } else {
                Vec::new()
            };
            let mut refused: Option<(String, bool)> = None;
            for (i, sink) in self.sinks.iter_mut().enumerate() {
                // A sink that refused before is offered the held commands again (first: they
                // were asked for first); the others saw them already.
                let result = if self.down[i] && !held.is_empty() {
                    let all: Vec<Command> = held.iter().chain(&commands).cloned().collect();
                    sink.on_step(now, &all).await
                } else {
                    sink.on_step(now, &commands).await
                };
                self.down[i] = result.is_err();
                if let Err(e) = result {
                    let lasting = e.is_lasting();
                    let words = sink_failure(sink.name(), &e);
                    match &mut refused {
                        None => refused = Some((words, lasting)),
                        Some((_, l)) => *l |= lasting,
                    }
                }
            }
            let all = held.into_iter().chain(commands);
            if let Some((e, lasting)) = refused {
                // The step's intents are not written. A read-only call is carried out (it
                // changes nothing, and running migrations must still be watched); a call that
                // changes the hosts, a start included, waits for the record. The run waits
                // for the journal with its starts paused, unless waiting cannot help or it
                // gave up already: then it stops starting moves (the stop goes in first, so
                // the core learns of what follows already stopping) and a start is answered
                // as a failure (it did not happen).
                if lasting {
                    self.sink_failed(e.clone());
                } else {
                    self.journal_lost(e.clone(), now);
                }
                for cmd in all {
                    match call_kind(&cmd) {
                        _ if matches!(cmd, Command::StartMigration(_))
                            && self.sink_error.is_some() =>
                        {
                            let failure = Failure::new(
                                ErrorClass::Transient,
                                format!("not carried out: {e}"),
                            );
                            self.pending.push(cmd.failed(now, failure));
                        }
                        CallKind::ReadOnly => self.dispatch(cmd, now),
                        CallKind::StateChanging => self.held.push(cmd),
                    }
                }
                continue;
            }
            self.journal_back(now);
            self.release_kept().await;
            for cmd in all {
                self.dispatch(cmd, now);
            }
        }
    }

    async fn forward(&mut self, ev: &Event) {
        let mut failed = None;
        // The engine gave a VM's slots back (its migration ended, or it was given up): so does
        // the ledger. `Phase::holds_slot` is the engine's own rule.
        // A release the ledger cannot take now (the shared journal is away) is an outage like
        // the journal's: kept and given again once the journal is back, never a reason to end
        // the run (the reservation only makes other processes wait meanwhile).
        if let (Some(ledger), EventKind::Transition { vm, from, to }) = (&self.ledger, &ev.kind)
            && from.holds_slot()
            && !to.holds_slot()
            && let Err(e) = ledger.release(vm).await
        {
            self.unreleased.push(vm.clone());
            self.ledger_failed();
            let now = self.last_now;
            self.journal_lost(format!("slot ledger: {e}"), now);
        }
        for sink in &mut self.sinks {
            if let Err(e) = sink.on_event(ev).await {
                failed.get_or_insert_with(|| sink_failure(sink.name(), &e));
            }
        }
        if let Some(e) = failed {
            self.sink_failed(e);
        }
    }

    /// Carries out a command its sinks have seen (its intent is written).
    fn dispatch(&mut self, cmd: Command, now: Time) {
        let class = match call_kind(&cmd) {
            CallKind::ReadOnly => ErrorClass::Transient,
            CallKind::StateChanging => ErrorClass::Indeterminate,
        };
        let fallback = cmd.failed(
            now,
            Failure::new(class, "the driver call died without an answer"),
        );
        let exec = Arc::clone(&self.exec);
        let handle = match (&cmd, &self.ledger) {
            (Command::StartMigration(req), Some(ledger)) => {
                match (
                    self.core.host_view(&req.source),
                    self.core.host_view(&req.destination),
                ) {
                    (Some(src), Some(dst)) => self.tasks.spawn(exec::reserve_then_start(
                        exec,
                        Arc::clone(ledger),
                        src,
                        dst,
                        cmd,
                        now,
                    )),
                    _ => self.tasks.spawn(exec.execute(cmd, now)),
                }
            }
            _ => self.tasks.spawn(exec.execute(cmd, now)),
        };
        self.fallbacks.insert(handle.id(), fallback);
    }
}
