//! The flow of `migrate`, `evacuate`, `plan` and `resume`: the request is checked, the drivers
//! built and the hosts listed, then the core runs to its end with its sinks (journal, record,
//! progress), Ctrl-C handling, the journal's end, the summary table and `--report`.

use crate::args::Common;
use crate::config::ConfigFile;
use crate::exit::EXIT_INTERRUPTED;
use crate::interrupts::Interrupts;
use crate::output::{self, LinesSink, Record, RecordSink, RunOutcome, SharedRecord, VmOutcome};
use crate::request::{self, Chosen};
use crate::settings::Effective;
use crate::{drivers, runs, simrun, stdio};
use anyhow::{Context, Result, anyhow};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vmove_core::{Core, HostId, Selection, Time, VmInfo};
use vmove_journal::sink::{JournalSink, Keeper, with_journal};
use vmove_runtime::{Control, Drivers, EventSink, NdjsonSink, Runtime, RuntimeOptions};

/// `migrate`, `evacuate` and `plan`: build the spec, build the drivers, then plan or move.
pub(crate) async fn plan_or_move(
    chosen: Chosen,
    cfg: &ConfigFile,
    eff: &Effective,
    common: &Common,
    dry_run: bool,
) -> Result<u8> {
    let verb = match &chosen {
        Chosen::Migrate(_) => "migrate",
        Chosen::Evacuate(_) => "evacuate",
    };
    // Everything that can be refused is refused before any host is asked or the journal
    // written: the report's file, the request, then the VMs the hosts list.
    if let Some(path) = &common.report {
        output::check_writable(path)?;
    }
    let draft = request::draft(&chosen, cfg, eff, request::run_id())?;
    draft.precheck().map_err(|e| spec_error(e, eff))?;
    // From here a SIGTERM, SIGHUP or Ctrl-C is heard: before the run it ends vmove at once
    // (nothing was touched), during it, it stops the run as Ctrl-C does.
    let mut interrupts = if dry_run {
        None
    } else {
        Some(Interrupts::install()?)
    };
    let prepare = async {
        let mut involved = request::involved(&draft.spec);
        involved.extend(draft.search.iter().cloned());
        involved.extend(draft.destinations.iter().cloned());
        let built = drivers::build(&cfg.hosts, &involved).await?;
        let mut to_list: Vec<HostId> = draft.search.clone();
        to_list.extend(draft.spec.sources.iter().map(|s| s.host.clone()));
        let listed = list_hosts(&built.drivers, &to_list, eff).await?;
        let spec = if draft.unsourced.is_empty() {
            draft.spec.clone()
        } else {
            let found = find_sources(&listed, &draft.search, &draft.unsourced);
            draft.clone().resolve(&found)?
        };
        spec.validate().map_err(|e| spec_error(e, eff))?;
        request::check_selection(&spec, &listed, chosen.placement())?;
        anyhow::Ok((built, spec))
    };
    let (built, spec) = match &mut interrupts {
        None => prepare.await?,
        Some(i) => tokio::select! {
            r = prepare => r?,
            Some(what) = i.next() => {
                errln!("vmove: {what} before the run started: nothing was touched");
                return Ok(EXIT_INTERRUPTED);
            }
        },
    };
    if dry_run {
        return simrun::plan(spec, &built.drivers, eff, common).await;
    }
    let journaling = if common.no_journal {
        None
    } else {
        let j = runs::start(eff, cfg, &spec)?;
        errln!(
            "vmove: run {} (journal `{}`; `vmove status {}` from another terminal)",
            j.run,
            runs::journal_path(eff)?.display(),
            j.run
        );
        Some(j)
    };
    let core = Core::new(spec, Time::ZERO)?;
    let options = RuntimeOptions {
        call_timeout: eff.call_timeout,
        speed: built.speed,
        start: Time::ZERO,
    };
    execute(
        core,
        built.drivers,
        options,
        common,
        verb,
        journaling,
        interrupts,
    )
    .await
}

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

/// Lists the VMs of each host (once), saying so when a host is slow to answer.
async fn list_hosts(
    drivers: &Drivers,
    hosts: &[HostId],
    eff: &Effective,
) -> Result<BTreeMap<HostId, Vec<VmInfo>>> {
    let mut listed = BTreeMap::new();
    for h in hosts {
        if listed.contains_key(h) {
            continue;
        }
        let d = drivers
            .get(h)
            .ok_or_else(|| anyhow!("no driver serves host `{h}`"))?;
        let call = tokio::time::timeout(eff.call_timeout, d.list_vms(h));
        tokio::pin!(call);
        let vms = tokio::select! {
            r = &mut call => r,
            () = tokio::time::sleep(SLOW_HOST) => {
                errln!(
                    "vmove: waiting for host `{h}` to list its VMs (up to the call time-out, {})",
                    vmove_core::spec::dur::format_duration(eff.call_timeout)
                );
                call.await
            }
        }
        .map_err(|_| anyhow!("host `{h}` did not list its VMs within the call time-out"))?
        .with_context(|| format!("host `{h}` could not list its VMs; nothing was started"))?;
        listed.insert(h.clone(), vms);
    }
    Ok(listed)
}

/// How often a running run reads its stop request (`vmove abort` from another terminal).
const STOP_POLL: Duration = Duration::from_secs(1);
/// How many times per lease term the lease is refreshed: two refreshes may fail (a busy
/// journal) before it expires.
const LEASE_REFRESHES: u32 = 3;

/// How long a host may take to answer before vmove says it is waiting for it.
const SLOW_HOST: Duration = Duration::from_secs(2);

/// Says which searched hosts hold VMs matching each pattern.
fn find_sources(
    listed: &BTreeMap<HostId, Vec<VmInfo>>,
    search: &[HostId],
    patterns: &[String],
) -> BTreeMap<String, Vec<HostId>> {
    let mut found: BTreeMap<String, Vec<HostId>> = BTreeMap::new();
    for h in search {
        let vms = listed.get(h).map(Vec::as_slice).unwrap_or(&[]);
        for p in patterns {
            let sel = vmove_core::select::apply(&Selection::Names(vec![p.clone()]), vms);
            if !sel.chosen.is_empty() {
                found.entry(p.clone()).or_default().push(h.clone());
            }
        }
    }
    found
}

/// Ends the run's journal record: finished, aborted (stopped with VMs not moved) or failed. A
/// run whose journal could not be written is left unfinished (resumable).
async fn finish_journal(j: &runs::Journaling, result: &vmove_runtime::RunResult) {
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
    verb: &str,
    journaling: Option<runs::Journaling>,
    interrupts: Option<Interrupts>,
) -> Result<u8> {
    let mut first = Record::new(verb);
    let mut names = std::collections::HashMap::new();
    for ev in journaling.iter().flat_map(|j| &j.history) {
        first.apply(ev);
        if let vmove_core::event::EventKind::Selected { vm, name, .. } = &ev.kind {
            names.insert(vm.clone(), name.clone());
        }
    }
    let record: SharedRecord = Arc::new(Mutex::new(first));
    let mut sinks: Vec<Box<dyn EventSink>> = Vec::new();
    if let Some(j) = &journaling {
        // First: the intent is durable before any other sink (or the driver) sees a command.
        sinks.push(Box::new(JournalSink::new(
            Arc::clone(&j.journal),
            j.run.clone(),
        )));
    }
    sinks.push(Box::new(RecordSink(Arc::clone(&record))));
    if common.json {
        sinks.push(Box::new(NdjsonSink::new(stdio::Stdout)));
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
        Keeper::start(
            Arc::clone(&j.journal),
            j.run.clone(),
            control.clone(),
            STOP_POLL,
            j.lease / LEASE_REFRESHES,
            j.stop_seen,
        )
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
    let result = Runtime::new(options).run(core, drivers, sinks, rx).await;
    ctrl_c.abort();
    if let Some(k) = keeper {
        k.stop();
    }
    if let Some(j) = &journaling {
        finish_journal(j, &result).await;
    }

    let error = result.error();
    // Ctrl-C, or `vmove abort` through the journal (the keeper's stop).
    let interrupted = presses.load(Ordering::SeqCst) > 0 || result.stop_requested.is_some();
    let mut rec = output::lock(&record).clone();
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
    if let Some(path) = &common.report {
        rec.write(path)?;
    }
    if let Some(e) = error.filter(|_| result.sink_error.is_none() || journaling.is_none()) {
        errln!("vmove: error: the run failed: {e}");
    }
    Ok(code)
}
