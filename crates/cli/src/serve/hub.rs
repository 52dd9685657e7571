//! The journal side of `vmove serve`: one read handle shared by every request, and per run
//! ONE poller that tails the journal (another vmove process may be writing it) and sends the
//! changes to every client of that run. A hundred open pages cost the journal what one does:
//! one look at the run's last sequence number per [`Hub::interval`], and a read of the new
//! entries only when there are some.
//!
//! The run's ETA is a re-plan of what is left of it (`vmove_plan::remaining`), made here off
//! the poller's path: when the view says something the plan depends on changed (a VM's
//! migration ended, a host was refreshed), at most every [`Hub::replan_every`], one at a time
//! per run, on a blocking thread with a journal handle of its own (the poller never waits for
//! it); its outcome goes to the clients as a delta.

use super::view::{Planned, RunView};
use anyhow::{Result, anyhow};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use vmove_journal::{Journal, JournalError, RunState, RunSummary};
use vmove_plan::calibrate::{Sample, samples_of_record};

/// How many deltas a slow client may fall behind before it is sent the whole run again.
const BACKLOG: usize = 256;

/// Why a run could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// No such run in the journal.
    UnknownRun,
    /// The journal could not be read.
    Journal(anyhow::Error),
}

/// One run being watched.
#[derive(Debug)]
pub struct Tail {
    pub view: tokio::sync::Mutex<RunView>,
    /// The deltas, as JSON text.
    pub tx: broadcast::Sender<Arc<str>>,
    polling: AtomicBool,
    planner: Mutex<Planner>,
}

/// A run's re-plans: whether one is being made, when the latest began, and the past runs'
/// samples (read once: finished runs do not change).
#[derive(Debug, Default)]
struct Planner {
    running: bool,
    last: Option<Instant>,
    history: Option<Arc<Vec<Sample>>>,
}

/// The journal, the runs being watched, and how often they are looked at.
#[derive(Debug)]
pub struct Hub {
    journal: Arc<Mutex<Journal>>,
    /// The journal's file (re-plans open a handle of their own).
    path: PathBuf,
    /// The least time between two re-plans of a run.
    pub replan_every: Duration,
    /// Past runs the re-plan's figures are fitted from (besides the run itself).
    pub plan_history: usize,
    tails: Mutex<HashMap<String, Arc<Tail>>>,
    pub interval: Duration,
    /// Reads of the journal made to follow runs (`vmove_serve_journal_reads_total`).
    pub reads: AtomicU64,
}

impl Hub {
    pub fn new(journal: Journal, interval: Duration) -> Hub {
        Hub {
            path: journal.path().to_path_buf(),
            replan_every: super::REPLAN_EVERY,
            plan_history: super::PLAN_HISTORY,
            journal: Arc::new(Mutex::new(journal)),
            tails: Mutex::new(HashMap::new()),
            interval,
            reads: AtomicU64::new(0),
        }
    }

    /// Runs `f` with the journal on a blocking thread (its calls wait on SQLite).
    pub async fn with_journal<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Journal) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        let j = Arc::clone(&self.journal);
        tokio::task::spawn_blocking(move || {
            let mut j = j.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut j)
        })
        .await
        .unwrap_or_else(|e| {
            Err(JournalError::Corrupt {
                what: "journal reader",
                value: e.to_string(),
            })
        })
    }

    /// Every run, newest first.
    pub async fn runs(&self) -> Result<Vec<RunSummary>> {
        self.with_journal(|j| j.runs())
            .await
            .map_err(|e| anyhow!(e.chain()))
    }

    /// The run's tail, brought up to date (one read at most).
    pub async fn tail(&self, run: &str) -> Result<Arc<Tail>, ReadError> {
        let tail = {
            let mut tails = self.tails.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(tails.entry(run.to_owned()).or_insert_with(|| {
                Arc::new(Tail {
                    view: tokio::sync::Mutex::new(RunView::new(run)),
                    tx: broadcast::channel(BACKLOG).0,
                    polling: AtomicBool::new(false),
                    planner: Mutex::new(Planner::default()),
                })
            }))
        };
        match self.catch_up(&tail).await {
            Ok(()) => Ok(tail),
            Err(e) => {
                if matches!(e, ReadError::UnknownRun) {
                    self.tails
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(run);
                }
                Err(e)
            }
        }
    }

    /// Reads what the journal has of the run beyond the view and sends the change, if any, to
    /// the run's clients.
    pub async fn catch_up(&self, tail: &Arc<Tail>) -> Result<(), ReadError> {
        let mut view = tail.view.lock().await;
        // A finished run changes no more: no read.
        if view
            .summary
            .as_ref()
            .is_some_and(|s| s.state != RunState::Running)
        {
            return Ok(());
        }
        let run = view.run.clone();
        let seq = view.seq;
        let wants_plan = view.wants_predicted();
        self.reads.fetch_add(1, Ordering::Relaxed);
        let (summary, entries, planned) = self
            .with_journal(move |j| {
                let s = j.run_summary(&run)?;
                let entries = if s.entries > seq {
                    j.entries_after(&run, seq)?
                } else {
                    Vec::new()
                };
                // The plan the run was started with: journaled once, soon after it started.
                let planned = if wants_plan {
                    j.planned_moves(&run)?
                } else {
                    Vec::new()
                };
                Ok((s, entries, planned))
            })
            .await
            .map_err(|e| match e {
                JournalError::UnknownRun(_) => ReadError::UnknownRun,
                e => ReadError::Journal(anyhow!(e.chain())),
            })?;
        let summary_changed = view.summary.as_ref() != Some(&summary);
        view.summary = Some(summary);
        view.apply_entries(&entries);
        view.set_predicted(planned);
        if let Some(delta) = view.take_delta(summary_changed) {
            // No client: nobody to tell (a client that comes later gets the snapshot).
            let _ = tail.tx.send(Arc::from(delta.to_string()));
        }
        self.maybe_replan(tail, &mut view);
        Ok(())
    }

    /// Starts a re-plan of the run when one is wanted and allowed (none running, the latest
    /// began at least [`Hub::replan_every`] ago); returns at once.
    fn maybe_replan(&self, tail: &Arc<Tail>, view: &mut RunView) {
        let running = view
            .summary
            .as_ref()
            .is_some_and(|s| s.state == RunState::Running);
        if !view.replan_wanted || !running {
            return;
        }
        let history = {
            let mut p = tail.planner.lock().unwrap_or_else(|p| p.into_inner());
            if p.running || p.last.is_some_and(|t| t.elapsed() < self.replan_every) {
                return;
            }
            p.running = true;
            p.last = Some(Instant::now());
            p.history.clone()
        };
        view.replan_wanted = false;
        let (path, run, runs, tail) = (
            self.path.clone(),
            view.run.clone(),
            self.plan_history,
            Arc::clone(tail),
        );
        tokio::spawn(async move {
            let (outcome, history) =
                tokio::task::spawn_blocking(move || replan(&path, &run, runs, history))
                    .await
                    .unwrap_or_else(|e| (Err(format!("the re-plan failed: {e}")), None));
            {
                let mut p = tail.planner.lock().unwrap_or_else(|p| p.into_inner());
                p.running = false;
                if history.is_some() {
                    p.history = history;
                }
            }
            let mut view = tail.view.lock().await;
            view.set_plan(outcome);
            if let Some(delta) = view.take_delta(true) {
                let _ = tail.tx.send(Arc::from(delta.to_string()));
            }
        });
    }

    /// Subscribes to a run's deltas and returns the snapshot to send first (deltas received
    /// after it are newer), and starts the run's poller if it is not running.
    pub async fn subscribe(
        self: &Arc<Self>,
        tail: &Arc<Tail>,
    ) -> (Value, broadcast::Receiver<Arc<str>>) {
        let view = tail.view.lock().await;
        let rx = tail.tx.subscribe();
        let snapshot = view.snapshot();
        drop(view);
        if !tail.polling.swap(true, Ordering::SeqCst) {
            let hub = Arc::clone(self);
            let tail = Arc::clone(tail);
            tokio::spawn(async move { hub.poll(tail).await });
        }
        (snapshot, rx)
    }

    /// The run's one poller: while it has clients and is running.
    async fn poll(&self, tail: Arc<Tail>) {
        loop {
            tokio::time::sleep(self.interval).await;
            if tail.tx.receiver_count() == 0 {
                tail.polling.store(false, Ordering::SeqCst);
                // A client that came in between found the flag set and started no poller.
                if tail.tx.receiver_count() == 0 || tail.polling.swap(true, Ordering::SeqCst) {
                    return;
                }
            }
            let _ = self.catch_up(&tail).await;
            let over = tail
                .view
                .lock()
                .await
                .summary
                .as_ref()
                .is_some_and(|s| s.state != RunState::Running);
            if over {
                tail.polling.store(false, Ordering::SeqCst);
                return;
            }
        }
    }

    /// Asks a run to stop (`vmove abort RUN [--now]`).
    pub async fn request_stop(&self, run: &str, now: bool) -> Result<(), JournalError> {
        let run = run.to_owned();
        self.with_journal(move |j| j.request_stop(&run, now).map(|_| ()))
            .await
    }

    /// Asks `run` to skip one VM, or abort its move (`vmove skip|abort RUN VM`); the VM's name.
    pub async fn request_vm_stop(
        &self,
        run: &str,
        vm: &str,
        abort: bool,
        by: &str,
    ) -> Result<String, JournalError> {
        let (run, vm, by) = (run.to_owned(), vm.to_owned(), by.to_owned());
        self.with_journal(move |j| j.request_vm_stop(&run, &vm, abort, &by).map(|q| q.name))
            .await
    }
}

/// One re-plan of `run` (on a blocking thread): a journal handle of its own, the past runs'
/// samples (read the first time: the newest `runs` runs that are over, this one aside), the
/// run as journaled so far, and `vmove_plan::remaining`. Gives the outcome (an error says why
/// there is no plan) and the past runs' samples when it read them.
fn replan(
    path: &Path,
    run: &str,
    runs: usize,
    history: Option<Arc<Vec<Sample>>>,
) -> (Result<Planned, String>, Option<Arc<Vec<Sample>>>) {
    let began = Instant::now();
    let j = match Journal::open_existing(path) {
        Ok(j) => j,
        Err(e) => return (Err(format!("cannot read the journal: {}", e.chain())), None),
    };
    let history = match history {
        Some(h) => h,
        None => match past_samples(&j, run, runs) {
            Ok(h) => Arc::new(h),
            Err(e) => {
                return (
                    Err(format!("cannot read the past runs: {}", e.chain())),
                    None,
                );
            }
        },
    };
    let outcome = match j.load_run(run) {
        Err(e) => Err(format!("cannot read the run: {}", e.chain())),
        Ok(record) => match vmove_plan::remaining(&record, &history) {
            Ok(r) => Ok(Planned {
                ends_at: r.ends_at(),
                vms: r.vms,
                in_flight: r.in_flight,
                samples: r.samples,
                took_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
            }),
            Err(e) => Err(format!("{e:#}")),
        },
    };
    (outcome, Some(history))
}

/// The samples of the newest `runs` runs that are over, `run` aside.
fn past_samples(j: &Journal, run: &str, runs: usize) -> Result<Vec<Sample>, JournalError> {
    let mut out = Vec::new();
    for s in j
        .runs()?
        .iter()
        .filter(|s| s.id != run && s.state != RunState::Running)
        .take(runs)
    {
        out.extend(samples_of_record(&j.load_run(&s.id)?).0);
    }
    Ok(out)
}
