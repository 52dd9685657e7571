//! Ctrl-C, SIGTERM and SIGHUP, heard from before a run starts until it ends.

use anyhow::{Context, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Ctrl-C presses, SIGTERM and SIGHUP, listened for from the moment [`Interrupts::install`]
/// returns. All three mean the same, so that a service manager's SIGTERM and a closed terminal's
/// SIGHUP leave a summary and a journaled end as Ctrl-C does: the first stops new moves and lets
/// running ones finish, the second aborts running ones.
pub(crate) struct Interrupts {
    /// Set once a press or signal was heard (`resume --standby` asks after a run it drove).
    heard: Arc<AtomicBool>,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Interrupts {
    pub(crate) fn install() -> Result<Interrupts> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| {
                signal(kind).with_context(|| format!("cannot listen for {name}"))
            };
            Ok(Interrupts {
                heard: Arc::default(),
                int: listen(SignalKind::interrupt(), "Ctrl-C")?,
                term: listen(SignalKind::terminate(), "SIGTERM")?,
                hup: listen(SignalKind::hangup(), "SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupts {
                heard: Arc::default(),
            })
        }
    }

    /// Whether a press or signal was heard through this value so far (shared: it stays
    /// readable after the value was handed to a run).
    pub(crate) fn heard(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.heard)
    }

    /// Waits for the next press or signal and names it; `None` when no more can come.
    pub(crate) async fn next(&mut self) -> Option<&'static str> {
        #[cfg(unix)]
        let what = tokio::select! {
            Some(()) = self.int.recv() => Some("Ctrl-C"),
            Some(()) = self.term.recv() => Some("SIGTERM"),
            Some(()) = self.hup.recv() => Some("SIGHUP"),
            else => None,
        };
        #[cfg(not(unix))]
        let what = tokio::signal::ctrl_c().await.ok().map(|()| "Ctrl-C");
        if what.is_some() {
            self.heard.store(true, Ordering::SeqCst);
        }
        what
    }
}
