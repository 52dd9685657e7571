//! A run carried out: the core runs to its end with its sinks (journal, record, progress),
//! Ctrl-C handling, the journal's end, the summary table, `--report` and the exit code. Used by
//! `migrate`, `evacuate`, `resume` and `demo`.

use crate::args::Common;
use crate::interrupts::Interrupts;
use crate::output::{self, LinesSink, Record, RecordSink, RunOutcome, SharedRecord, VmOutcome};
use crate::settings::Effective;
use crate::stdio;
use anyhow::{Result, anyhow};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vmove_core::Core;
use vmove_journal::StopRequest;
use vmove_journal::sink::{JournalLedger, JournalSink, Keeper, SharedJournal, with_journal};
use vmove_runtime::{Control, Drivers, EventSink, Runtime, RuntimeOptions};

/// A spec error, with where the offending setting came from when it was set.
pub(crate) fn spec_error(e: vmove_core::SpecError, eff: &Effective) -> anyhow::Error {
    use vmove_core::SpecError;
    let key = match &e {
        SpecError::ZeroCap(k) => Some(k.as_str()),
        SpecError::BadSetting { key, .. } => Some(*key),
        _ => None,
    };
    match key.and_then(|k| eff.origins.get(k)) {
        Some(origin) => anyhow!("{e} (set by {origin})"),
        None => anyhow!(e),
    }
}

/// How often a running run reads its stop request (`vmove abort` from another terminal).
const STOP_POLL: Duration = Duration::from_secs(1);
/// How many times per lease term the lease is refreshed: two refreshes may fail (a busy
/// journal) before it expires.
const LEASE_REFRESHES: u32 = 3;

/// A journaled run being driven by this process.
#[derive(Debug)]
pub struct Journaling {
    /// The journal (this process holds the run's lease through it).
    pub journal: SharedJournal,
    /// The run id.
    pub run: String,
    /// The lease time (refreshed every third of it).
    pub lease: Duration,
    /// A stop already asked of the run before this process drove it (resume feeds it first).
    pub stop_seen: Option<StopRequest>,
    /// Per-VM stops to feed first (resume): those asked while no process drove the run, and
    /// every `abort RUN VM` already delivered (its VM, if not over, is still to be stopped: the
    /// engine that heard it died with it). Delivered skips are not fed again.
    pub vm_stops_seen: Vec<vmove_journal::VmStopRequest>,
    /// The events earlier processes recorded (resume): the summary and progress lines start
    /// from them.
    pub history: Vec<vmove_core::Event>,
    /// Make the plan of the run when it starts and journal it (a new run, not a resume):
    /// `crate::run_plan`.
    pub plan: Option<crate::run_plan::PlanRequest>,
}

impl Journaling {
    /// The same run's journal, for notes written beside the run (the maintenance hooks after
    /// it ends): nothing to feed the engine.
    pub(crate) fn for_notes(&self) -> Journaling {
        Journaling {
            journal: std::sync::Arc::clone(&self.journal),
            run: self.run.clone(),
            lease: self.lease,
            stop_seen: None,
            vm_stops_seen: Vec::new(),
            history: Vec::new(),
            plan: None,
        }
    }
}

/// Ends the run's journal record: finished, aborted (stopped with VMs not moved) or failed. A
/// run whose journal could not be written is left unfinished (resumable).
async fn finish_journal(j: &Journaling, result: &vmove_runtime::RunResult) {
    use vmove_journal::RunEnd;
    if result.sink_error.is_some() {
        let run = j.run.clone();
        let _ = with_journal(&j.journal, move |jj| jj.release(&run)).await;
        // The cause was said on stderr when it happened (once) and is in the summary.
        errln!(
            "vmove: the run stopped because its journal could not be written{}; it is left \
             resumable: `vmove resume {}` once the journal can be written",
            if result.held.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} action(s) on the hosts wait for it)",
                    result.held.len()
                )
            },
            j.run
        );
        return;
    }
    let end = match result.error() {
        Some(e) => RunEnd::Failed(e),
        None if result.stop_requested.is_some()
            && result
                .snapshot
                .vms
                .iter()
                .any(|v| v.phase != vmove_core::Phase::Moved) =>
        {
            RunEnd::Aborted
        }
        None => RunEnd::Finished,
    };
    let run = j.run.clone();
    // A closed output was said once on stderr when it happened; the journal keeps it too, so
    // that `vmove status` shows why the run's own output stops where it does.
    if let Some(kind) = stdio::stdout_failure() {
        let note = format!(
            "standard output {} during the run ({kind}); the run went on to its end without it",
            if kind == std::io::ErrorKind::BrokenPipe {
                "was closed by its reader"
            } else {
                "could not be written"
            }
        );
        let r = run.clone();
        if let Err(e) = with_journal(&j.journal, move |jj| jj.record_note(&r, &note)).await {
            errln!("vmove: warning: the closed output could not be noted in the journal: {e}");
        }
    }
    if let Err(e) = with_journal(&j.journal, move |jj| jj.finish_run(&run, end)).await {
        errln!("vmove: warning: the run's end could not be journaled: {e}");
    }
}

/// Runs a core to its end with the usual sinks, Ctrl-C handling, summary and report.
pub(crate) async fn execute(
    core: Core,
    drivers: Drivers,
    options: RuntimeOptions,
    common: &Common,
    command: &str,
    mut journaling: Option<Journaling>,
    interrupts: Option<Interrupts>,
) -> Result<u8> {
    let mut first = Record::new(command);
    let mut names = std::collections::HashMap::new();
    for ev in journaling.iter().flat_map(|j| &j.history) {
        first.apply(ev);
        if let vmove_core::event::EventKind::Selected { vm, name, .. } = &ev.kind {
            names.insert(vm.clone(), name.clone());
        }
    }
    // The run's timeline, built as it goes when it is drawn (`--timeline`, an HTML or SVG
    // report): the events so far (a resumed run's), then the sink's.
    let wants_timeline = common.timeline
        || common
            .report
            .as_deref()
            .is_some_and(|p| output::ReportFormat::of(p).needs_timeline());
    let timeline = wants_timeline.then(|| {
        let run = journaling.as_ref().map(|j| j.run.as_str()).unwrap_or("");
        let mut b = crate::timeline::TimelineBuilder::new(run, first.started_unix * 1000);
        b.simulated(options.speed > 1.0);
        for ev in journaling.iter().flat_map(|j| &j.history) {
            b.apply_event(ev);
        }
        Arc::new(Mutex::new(b))
    });
    let record: SharedRecord = Arc::new(Mutex::new(first));
    let mut sinks: Vec<Box<dyn EventSink>> = Vec::new();
    if let Some(j) = &journaling {
        // First: the intent is durable before any other sink (or the driver) sees a command.
        sinks.push(Box::new(JournalSink::new(
            Arc::clone(&j.journal),
            j.run.clone(),
        )));
    }
    // The run's plan, made off the run's path once the run has read its hosts.
    let planner = journaling.as_mut().and_then(|j| {
        let request = j.plan.take()?;
        Some(crate::run_plan::RunPlanner::new(
            request,
            Arc::clone(&j.journal),
            &j.run,
        ))
    });
    if let Some(p) = &planner {
        sinks.push(Box::new(p.sink()));
    }
    sinks.push(Box::new(RecordSink(Arc::clone(&record))));
    if let Some(t) = &timeline {
        sinks.push(Box::new(crate::timeline::sink::TimelineSink(Arc::clone(t))));
    }
    if common.json {
        sinks.push(Box::new(
            output::NdjsonSink::new(stdio::Stdout, std::time::SystemTime::now(), options.start)
                .with_names(names.clone()),
        ));
    } else if std::io::stderr().is_terminal() && !common.plain {
        sinks.push(Box::new(output::BarsSink::new().with_names(names)));
    } else {
        sinks.push(Box::new(
            LinesSink::new(Box::new(stdio::Stdout)).with_names(names),
        ));
    }

    let (control, rx) = Control::new();
    let keeper = journaling.as_ref().map(|j| {
        if let Some(stop) = j.stop_seen {
            // A stop asked before this process drove the run: the core hears it before any answer.
            control.stop(stop.abort_running);
        }
        for q in &j.vm_stops_seen {
            control.stop_vm(q.vm.clone(), q.abort, q.by.clone(), q.at.to_string());
        }
        Keeper::start(
            Arc::clone(&j.journal),
            j.run.clone(),
            control.clone(),
            STOP_POLL,
            j.lease / LEASE_REFRESHES,
            j.stop_seen,
        )
    });
    // `--deadline`: when it passes, the stop the first Ctrl-C asks (no new moves; running ones
    // finish).
    let deadline_hit = Arc::new(AtomicBool::new(false));
    let deadline = common.deadline_at.map(|at| {
        let control = control.clone();
        let hit = Arc::clone(&deadline_hit);
        tokio::spawn(async move {
            let wait = at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            tokio::time::sleep(wait).await;
            hit.store(true, Ordering::SeqCst);
            errln!(
                "vmove: the deadline ({}) has passed: no new moves; running ones finish.",
                crate::deadline::show(at)
            );
            control.stop(false);
        })
    });
    let presses = Arc::new(AtomicU32::new(0));
    // The handler is installed here, before the run starts, so no early Ctrl-C is missed.
    let mut interrupts = match interrupts {
        Some(i) => i,
        None => Interrupts::install()?,
    };
    let ctrl_c = {
        let presses = Arc::clone(&presses);
        tokio::spawn(async move {
            while let Some(what) = interrupts.next().await {
                match presses.fetch_add(1, Ordering::SeqCst) + 1 {
                    1 => {
                        errln!(
                            "vmove: {what}: stopping: no new moves; running ones finish. Ctrl-C (or SIGTERM) again aborts them."
                        );
                        control.stop(false);
                    }
                    2 => {
                        errln!(
                            "vmove: {what}: aborting running migrations; every VM stays on one host."
                        );
                        control.stop(true);
                    }
                    _ => errln!("vmove: {what}: aborts asked; waiting for them to finish."),
                }
            }
        })
    };
    tracing::info!(
        journal = journaling
            .as_ref()
            .map(|j| j.run.as_str())
            .unwrap_or("none"),
        "run starting: {command}"
    );
    // The cross-process slot ledger: every start reserves its slots in the journal first, so
    // that runs sharing hosts through one journal never go over a host's limit together.
    let mut runtime = Runtime::new(options);
    if let Some(j) = &journaling {
        runtime = runtime.with_ledger(Arc::new(JournalLedger::new(
            Arc::clone(&j.journal),
            j.run.clone(),
        )));
    }
    let result = runtime.run(core, drivers, sinks, rx).await;
    tracing::info!(
        elapsed_secs = result.elapsed.as_secs(),
        error = result.error().as_deref().unwrap_or("none"),
        "run ended"
    );
    ctrl_c.abort();
    if let Some(d) = deadline {
        d.abort();
    }
    if let Some(k) = keeper {
        k.stop();
    }
    // The VMs the deadline kept from starting: noted per VM, said, and journaled.
    let deadline_note = match common.deadline_at {
        Some(at) if deadline_hit.load(Ordering::SeqCst) => {
            let mut rec = output::lock(&record);
            let note = format!(
                "not started: the run's deadline ({}) had passed",
                crate::deadline::show(at)
            );
            let mut names = Vec::new();
            for v in rec.vms.iter_mut() {
                if v.outcome == VmOutcome::Cancelled {
                    v.notes.push(note.clone());
                    names.push(v.name.clone());
                }
            }
            Some(if names.is_empty() {
                format!(
                    "the deadline ({}) passed; every VM had started by then",
                    crate::deadline::show(at)
                )
            } else {
                format!(
                    "the deadline ({}) passed: {} VM(s) not started: {}",
                    crate::deadline::show(at),
                    names.len(),
                    names.join(", ")
                )
            })
        }
        _ => None,
    };
    // The plan, if it was made (the run's end waits a little for one still being made).
    let planned = match &planner {
        Some(p) => p.finish().await,
        None => None,
    };
    if let Some(j) = &journaling {
        if let Some(note) = deadline_note.clone() {
            let r = j.run.clone();
            if let Err(e) = with_journal(&j.journal, move |jj| jj.record_note(&r, &note)).await {
                errln!("vmove: warning: the deadline could not be noted in the journal: {e}");
            }
        }
        finish_journal(j, &result).await;
    }

    let error = result.error();
    // Ctrl-C, or `vmove abort` through the journal (the keeper's stop).
    let interrupted = presses.load(Ordering::SeqCst) > 0 || result.stop_requested.is_some();
    let mut rec = output::lock(&record).clone();
    // Only a journaled run left unfinished (its journal could not be written, see
    // `finish_journal`) can be resumed: any other ended finished, aborted (stopped by a signal,
    // the deadline or `vmove abort`) or failed, and a run without a journal never can.
    // The demo's cluster (and the journal of a served demo) dies with the process.
    rec.set_next(match &journaling {
        _ if common.demo => output::NextRun::Demo,
        Some(j) if result.sink_error.is_some() => output::NextRun::Resume(j.run.clone()),
        _ => output::NextRun::NewRun,
    });
    rec.outcome = if error.is_some() {
        if rec.error.is_none() {
            rec.error = error.clone();
        }
        RunOutcome::Failed
    } else if interrupted {
        RunOutcome::Interrupted
    } else if rec.unmigratable > 0
        || rec.cancelled > 0
        || rec.vms.iter().any(|v| v.outcome != VmOutcome::Moved)
    {
        RunOutcome::SomeUnmigratable
    } else {
        RunOutcome::AllMoved
    };
    let code = rec.outcome.exit_code();
    let table = rec.table();
    if common.json {
        stdio::err(&format!("\n{table}"));
    } else {
        stdio::out(&format!("\n{table}"));
    }
    let timeline = timeline.map(|t| {
        let mut b = crate::timeline::sink::lock(&t).clone();
        b.over(true);
        match &planned {
            Some(order) => b.build().with_plan(order),
            None => b.build(),
        }
    });
    if common.timeline
        && let Some(t) = &timeline
    {
        let text = crate::timeline::text::text(
            t,
            output::terminal_width().unwrap_or(crate::timeline::text::DEFAULT_WIDTH),
        );
        if common.json {
            stdio::err(&format!("\n{text}"));
        } else {
            stdio::out(&format!("\n{text}"));
        }
    }
    // A report that cannot be written (its path made a FIFO or a folder during the run, a full
    // disk) is said last, after what the run has to say: it ends vmove with an error (exit 1),
    // as before, but takes nothing else away.
    let report = common
        .report
        .as_ref()
        .and_then(|path| rec.write_with(path, timeline.as_ref()).err());
    if let Some(note) = &deadline_note {
        errln!("vmove: {note}");
    }
    if let Some(e) = error.filter(|_| result.sink_error.is_none() || journaling.is_none()) {
        errln!("vmove: error: the run failed: {e}");
    }
    match report {
        Some(e) => Err(e),
        None => Ok(code),
    }
}
