//! The journal side of `vmove serve`: one read handle shared by every request, and per run
//! ONE poller that tails the journal (another vmove process may be writing it) and sends the
//! changes to every client of that run. A hundred open pages cost the journal what one does:
//! one look at the run's last sequence number per [`Hub::interval`], and a read of the new
//! entries only when there are some.

use super::view::RunView;
use anyhow::{Result, anyhow};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use vmove_journal::{Journal, JournalError, RunState, RunSummary};

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
}

/// The journal, the runs being watched, and how often they are looked at.
#[derive(Debug)]
pub struct Hub {
    journal: Arc<Mutex<Journal>>,
    tails: Mutex<HashMap<String, Arc<Tail>>>,
    pub interval: Duration,
    /// Reads of the journal made to follow runs (`vmove_serve_journal_reads_total`).
    pub reads: AtomicU64,
}

impl Hub {
    pub fn new(journal: Journal, interval: Duration) -> Hub {
        Hub {
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
    pub async fn catch_up(&self, tail: &Tail) -> Result<(), ReadError> {
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
        self.reads.fetch_add(1, Ordering::Relaxed);
        let (summary, entries) = self
            .with_journal(move |j| {
                let s = j.run_summary(&run)?;
                let entries = if s.entries > seq {
                    j.entries_after(&run, seq)?
                } else {
                    Vec::new()
                };
                Ok((s, entries))
            })
            .await
            .map_err(|e| match e {
                JournalError::UnknownRun(_) => ReadError::UnknownRun,
                e => ReadError::Journal(anyhow!(e.chain())),
            })?;
        let summary_changed = view.summary.as_ref() != Some(&summary);
        view.summary = Some(summary);
        view.apply_entries(&entries);
        if let Some(delta) = view.take_delta(summary_changed) {
            // No client: nobody to tell (a client that comes later gets the snapshot).
            let _ = tail.tx.send(Arc::from(delta.to_string()));
        }
        Ok(())
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
