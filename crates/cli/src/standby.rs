//! `vmove resume --standby`: a process that watches the journal for running runs whose holder
//! stopped renewing its lease (its lease expired, or it is provably dead on this machine) and
//! takes each over, resuming it exactly as `vmove resume RUN` does ([`runs::drive`]: the one
//! recovery path, observe before act). Which of several standbys takes a run is decided by the
//! lease's transaction ([`Journal::acquire_taking_over`]), never here: this file only asks.

use crate::args::Common;
use crate::config::ConfigFile;
use crate::exit::EXIT_OK;
use crate::interrupts::Interrupts;
use crate::runs;
use crate::settings::Effective;
use anyhow::{Result, bail};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use vmove_journal::{Journal, JournalError, RunState, RunSummary, TakeOver};

/// How often the journal is read for a run to take over: a few seconds, so that a run whose
/// holder died waits at most its lease plus this.
pub const POLL: Duration = Duration::from_secs(2);

/// How long a run that could not be resumed (its hosts unreachable, its record unreadable) is
/// left alone before this standby tries it again.
const RETRY_FAILED: Duration = Duration::from_secs(60);

/// `vmove resume --standby [--once]`.
pub async fn standby(
    once: bool,
    current: &ConfigFile,
    eff: &Effective,
    common: &Common,
) -> Result<u8> {
    if common.report.is_some() && !once {
        bail!(
            "`--report` with `resume --standby` needs `--once`: each run taken over would \
             overwrite the same report"
        );
    }
    if let Some(path) = &common.report {
        crate::output::check_writable(path)?;
    }
    let shown = runs::journal_shown(eff)?;
    // No journal, or one that cannot be reached: an error now, rather than a standby that
    // watches nothing.
    let mut journal = Some(runs::open_existing(eff)?);
    if journal.as_ref().is_some_and(|j| j.is_blank()) {
        // An empty file a run will journal into: the standby watches the file itself, so it
        // becomes a journal now (as the run's own open would make it).
        journal = Some(runs::open(eff)?);
    }
    let mut interrupts = Interrupts::install()?;
    errln!(
        "vmove: standing by: watching the journal `{shown}` every {} s for a running run whose \
         lease expired or whose holder is provably dead on this machine{}; Ctrl-C or SIGTERM \
         stops",
        POLL.as_secs(),
        if once {
            " (one run is taken over, then vmove exits)"
        } else {
            ""
        }
    );
    let mut left_alone: HashMap<String, Instant> = HashMap::new();
    let mut unreachable = false;
    loop {
        left_alone.retain(|_, since| since.elapsed() < RETRY_FAILED);
        let found = match journal.take() {
            Some(j) => Ok(j),
            None => runs::open_existing(eff)
                .and_then(|j| if j.is_blank() { runs::open(eff) } else { Ok(j) }),
        }
        .and_then(|mut j| {
            let found = next_run(&mut j, &left_alone)?;
            Ok((j, found))
        });
        match found {
            Ok((j, Some((run, took_over, how)))) => {
                if unreachable {
                    errln!("vmove: standby: the journal `{shown}` can be read again");
                    unreachable = false;
                }
                errln!("vmove: standby: taking over run {run}: {how}");
                // The run gets this listener (a signal while it is driven stops it as it stops
                // `resume`); a new one listens in the meantime, so none is missed.
                let for_run = std::mem::replace(&mut interrupts, Interrupts::install()?);
                let heard = for_run.heard();
                let result = runs::drive(
                    j,
                    run.clone(),
                    took_over,
                    current,
                    eff,
                    common,
                    Some(for_run),
                )
                .await;
                if once || heard.load(Ordering::SeqCst) {
                    if !once {
                        errln!("vmove: standby stopped after the run it drove");
                    }
                    return result;
                }
                match result {
                    Ok(code) => errln!(
                        "vmove: standby: run {run} is over here (exit code {code}); standing by again"
                    ),
                    Err(e) => {
                        errln!(
                            "vmove: standby: run {run} could not be resumed: {}; left alone \
                             for {} s",
                            vmove_driver::redact_uris(&format!("{e:#}")),
                            RETRY_FAILED.as_secs()
                        );
                        left_alone.insert(run, Instant::now());
                    }
                }
            }
            Ok((j, None)) => {
                if unreachable {
                    errln!("vmove: standby: the journal `{shown}` can be read again");
                    unreachable = false;
                }
                journal = Some(j);
            }
            Err(e) => {
                if !unreachable {
                    errln!(
                        "vmove: warning: standby: the journal `{shown}` cannot be read: {}; \
                         trying again every {} s",
                        vmove_driver::redact_uris(&format!("{e:#}")),
                        POLL.as_secs()
                    );
                    unreachable = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            Some(what) = interrupts.next() => {
                errln!("vmove: {what}: standby stopped (no run was being driven)");
                return Ok(EXIT_OK);
            }
        }
    }
}

/// The oldest running run this process may take over now, with its lease taken: the lease's
/// transaction decides (a live lease is [`JournalError::LeaseHeld`], and the run is passed
/// over). Returns the run, the dead holder if one was taken over before its lease expired, and
/// in words why the run was free.
fn next_run(
    j: &mut Journal,
    left_alone: &HashMap<String, Instant>,
) -> Result<Option<(String, Option<TakeOver>, String)>> {
    let mut running: Vec<RunSummary> = j
        .runs()
        .map_err(|e| anyhow::anyhow!(e.chain()))?
        .into_iter()
        .filter(|r| r.state == RunState::Running && !left_alone.contains_key(&r.id))
        .collect();
    running.sort_by_key(|r| (r.created_at, r.id.clone()));
    for r in running {
        match j.acquire_taking_over(&r.id) {
            Ok((_, took_over)) => {
                let how = match (&took_over, &r.lease) {
                    (Some(t), _) => t.to_string(),
                    (None, Some(l)) => format!(
                        "the lease of process {} on host `{}` expired at {}",
                        l.holder.pid,
                        l.holder.host,
                        runs::wall(l.expires_at)
                    ),
                    (None, None) => "no process held its lease".to_owned(),
                };
                return Ok(Some((r.id, took_over, how)));
            }
            // Driven by a live holder, or ended since it was listed: not ours to take.
            Err(e @ (JournalError::LeaseHeld { .. } | JournalError::RunNotRunning { .. })) => {
                tracing::debug!("standby leaves run {} alone: {e}", r.id);
            }
            // One of its VMs is now another live run's: resume would refuse it too.
            Err(
                e @ (JournalError::VmInUse { .. }
                | JournalError::SelectionOverlap { .. }
                | JournalError::UnknownRun(_)),
            ) => {
                tracing::debug!("standby leaves run {} alone: {e}", r.id);
            }
            Err(e) => bail!(e.chain()),
        }
    }
    Ok(None)
}
