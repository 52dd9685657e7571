//! `vmove`: moves many virtual machines between hypervisor hosts that share no storage.
//!
//! A thin binary: it parses, merges and renders; the core decides.
//!
//! # Layout
//! - [`args`]: raw command-line arguments (clap derive).
//! - [`config`]: the TOML config file: lookup order, tables, errors naming file and key.
//! - [`settings`]: `[defaults]` + `VMOVE_<KEY>` + flags -> effective settings (flags > env > file).
//! - [`request`]: a command's selection + config -> the core's `RunSpec`.
//! - [`drivers`]: the driver factory (the only file that knows the driver crates).
//! - [`simrun`]: `demo` and `plan` on the simulated cluster.
//! - [`calibrate`]: `plan`'s per-route figures, fitted from the journal's past migrations.
//! - [`simstate`]: sim hosts kept in a state file (`state_file`), so they outlive the process.
//! - [`runs`]: the journal: journaling a run, `resume`, `status`, `abort`, `history`, `report`.
//! - [`output`]: progress bars or plain lines, the summary table, `--report`.
//! - this file: the flow of each command, Ctrl-C handling and exit codes.
//!
//! - [`stdio`]: writes to stdout and stderr that never panic (a closed pipe never ends a run).
//!
//! Exit codes: 0 all moved, 2 some unmigratable (or not moved), 1 an error before or during the
//! run, 130 interrupted (Ctrl-C, SIGTERM, SIGHUP or `vmove abort`). A reader that closes stdout
//! (`| head`) changes none of them.

#![deny(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
mod stdio;
mod args;
mod calibrate;
mod config;
mod drivers;
#[cfg(test)]
mod fuzz;
mod output;
mod request;
mod runs;
mod settings;
mod simrun;
mod simstate;

use anyhow::{Context, Result, anyhow};
use args::{Cli, Cmd, Common, PlanWhat};
use clap::Parser;
use config::ConfigFile;
use output::{LinesSink, Record, RecordSink, SharedRecord};
use request::Chosen;
use settings::Effective;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vmove_core::{Core, HostId, Selection, Time, VmInfo};
use vmove_journal::sink::{JournalSink, Keeper, with_journal};
use vmove_runtime::{Control, Drivers, EventSink, NdjsonSink, Runtime, RuntimeOptions};

/// Exit code: every VM moved.
const EXIT_OK: u8 = 0;
/// Exit code: an error before or during the run.
const EXIT_ERROR: u8 = 1;
/// Exit code: some VMs are unmigratable (or were not moved).
const EXIT_UNMIGRATABLE: u8 = 2;
/// Exit code: interrupted (Ctrl-C, SIGTERM, SIGHUP, or `vmove abort` through the journal).
const EXIT_INTERRUPTED: u8 = 130;

/// The drivers' `tracing` messages go to stderr (never stdout, which `--json` owns), warnings
/// and errors by default: a Hyper-V job that completed with warnings, TLS verification turned
/// off, a provenance marker that could not be removed. `VMOVE_LOG` (or `RUST_LOG`) sets the
/// level with tracing's filter syntax (`info`, `vmove_driver_libvirt=debug`). A value that is
/// not a filter is said once and the default kept. A failed write is dropped (`stdio::Stderr`).
fn install_log() {
    use tracing_subscriber::EnvFilter;
    let (var, value) = match (std::env::var("VMOVE_LOG"), std::env::var("RUST_LOG")) {
        (Ok(v), _) => ("VMOVE_LOG", Some(v)),
        (_, Ok(v)) => ("RUST_LOG", Some(v)),
        _ => ("", None),
    };
    let filter = match value.filter(|v| !v.trim().is_empty()) {
        Some(v) => EnvFilter::try_new(&v).unwrap_or_else(|e| {
            errln!("vmove: warning: {var}={v:?} is not a log filter ({e}); logging warnings");
            EnvFilter::new("warn")
        }),
        None => EnvFilter::new("warn"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| stdio::Stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            // Help and version go to stdout, usage errors to stderr, as clap formats them.
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    install_log();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("vmove: error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // A configured URI may hold a password: never printed (vmove_driver::redact_uris).
            errln!(
                "vmove: error: {}",
                vmove_driver::redact_uris(&format!("{e:#}"))
            );
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Reads the environment (a function so the settings code can be tested with a map).
fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

async fn run(cli: Cli) -> Result<u8> {
    let found = config::locate(cli.common.config.as_deref(), &env);
    let cfg = config::load(found)?;
    let file_origin = match &cfg.path {
        Some((p, _)) => format!("config file `{}`", p.display()),
        None => "the built-in defaults".to_owned(),
    };
    let eff = settings::merge(
        &cfg.defaults,
        &file_origin,
        &env,
        &cli.common.knobs.given(),
        cli.common.knobs.path.clone(),
    )?;
    // A run outlives a reader that closes its output: that is said once. Short commands (and
    // dry runs) end quietly when their reader goes away (see `stdio`).
    let moves = match &cli.command {
        Cmd::Demo(_) | Cmd::Resume { .. } => true,
        Cmd::Migrate(a) => !a.placement.dry_run,
        Cmd::Evacuate(a) => !a.placement.dry_run,
        _ => false,
    };
    if moves {
        stdio::announce_closed_stdout();
    }
    let code = command(cli, &cfg, &eff).await?;
    match stdio::stdout_failure() {
        // Said on stderr already; a short command whose output was lost did not do its job.
        Some(kind) if !moves && kind != std::io::ErrorKind::BrokenPipe => Ok(EXIT_ERROR),
        _ => Ok(code),
    }
}

async fn command(cli: Cli, cfg: &ConfigFile, eff: &Effective) -> Result<u8> {
    match cli.command {
        Cmd::Config => {
            print_config(cfg, eff);
            Ok(EXIT_OK)
        }
        Cmd::Demo(a) => simrun::demo(&a, eff, &cli.common).await,
        Cmd::Plan { what } => {
            let chosen = match what {
                PlanWhat::Migrate(a) => Chosen::Migrate(a),
                PlanWhat::Evacuate(a) => Chosen::Evacuate(a),
            };
            plan_or_move(chosen, cfg, eff, &cli.common, true).await
        }
        Cmd::Migrate(a) => {
            let dry = a.placement.dry_run;
            plan_or_move(Chosen::Migrate(a), cfg, eff, &cli.common, dry).await
        }
        Cmd::Evacuate(a) => {
            let dry = a.placement.dry_run;
            plan_or_move(Chosen::Evacuate(a), cfg, eff, &cli.common, dry).await
        }
        Cmd::Resume { run } => runs::resume(run, cfg, eff, &cli.common).await,
        Cmd::Status { run, watch } => runs::status(run, watch, eff).await,
        Cmd::Abort { run, now } => runs::abort(&run, now, eff),
        Cmd::History => runs::history(eff),
        Cmd::Report { run } => runs::report(run, eff, &cli.common),
    }
}

fn print_config(cfg: &ConfigFile, eff: &Effective) {
    match &cfg.path {
        Some((p, origin)) => outln!("# config file: {} (found through {origin})", p.display()),
        None => outln!("# config file: none found; built-in defaults"),
    }
    stdio::out(&settings::render(eff));
    for (h, c) in &cfg.hosts {
        outln!(
            "\n[hosts.{h}]\ndriver = \"{}\"{}{}",
            c.driver.name(),
            c.max_migrations
                .map(|n| format!("\nmax_migrations = {n}"))
                .unwrap_or_default(),
            c.path
                .as_ref()
                .map(|p| format!("\npath = {:?}", p))
                .unwrap_or_default()
        );
    }
}

/// `migrate`, `evacuate` and `plan`: build the spec, build the drivers, then plan or move.
async fn plan_or_move(
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

/// Ctrl-C presses, SIGTERM and SIGHUP, listened for from the moment [`Interrupts::install`]
/// returns. All three mean the same (a service manager's SIGTERM and a closed terminal's SIGHUP
/// used to end vmove at once, with no summary and the run left "moving" in the journal): the
/// first stops new moves and lets running ones finish, the second aborts running ones.
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
    async fn next(&mut self) -> Option<&'static str> {
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
            Duration::from_secs(1),
            j.lease / 3,
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
    let code = if error.is_some() {
        rec.outcome = "failed".into();
        if rec.error.is_none() {
            rec.error = error.clone();
        }
        EXIT_ERROR
    } else if interrupted {
        rec.outcome = "interrupted".into();
        EXIT_INTERRUPTED
    } else if rec.unmigratable > 0
        || rec.cancelled > 0
        || rec.vms.iter().any(|v| v.outcome != "moved")
    {
        rec.outcome = "some_unmigratable".into();
        EXIT_UNMIGRATABLE
    } else {
        rec.outcome = "all_moved".into();
        EXIT_OK
    };
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
