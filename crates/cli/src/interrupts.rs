//! Ctrl-C, SIGTERM and SIGHUP, heard from before a run starts until it ends.

use anyhow::{Context, Result};

/// Ctrl-C presses, SIGTERM and SIGHUP, listened for from the moment [`Interrupts::install`]
/// returns. All three mean the same, so that a service manager's SIGTERM and a closed terminal's
/// SIGHUP leave a summary and a journaled end as Ctrl-C does: the first stops new moves and lets
/// running ones finish, the second aborts running ones.
pub(crate) struct Interrupts {
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
                int: listen(SignalKind::interrupt(), "Ctrl-C")?,
                term: listen(SignalKind::terminate(), "SIGTERM")?,
                hup: listen(SignalKind::hangup(), "SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupts {})
        }
    }

    /// Waits for the next press or signal and names it; `None` when no more can come.
    pub(crate) async fn next(&mut self) -> Option<&'static str> {
        #[cfg(unix)]
        {
            tokio::select! {
                Some(()) = self.int.recv() => Some("Ctrl-C"),
                Some(()) = self.term.recv() => Some("SIGTERM"),
                Some(()) = self.hup.recv() => Some("SIGHUP"),
                else => None,
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.ok().map(|()| "Ctrl-C")
        }
    }
}
