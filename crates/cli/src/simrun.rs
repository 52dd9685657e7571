//! `demo` and `plan`: both run the real core on the simulated cluster.
//!
//! - `demo` evacuates a built-in cluster through the REAL runtime, with a [`SimDriver`] whose
//!   clock is real time sped up so the run lasts about 30 s (`--speed` multiplies that).
//! - `plan` asks the hosts for their figures and VMs and reads the journal's past runs, hands
//!   them to the `vmove-plan` crate, which simulates the run in virtual time, and prints the plan
//!   it gives: the figures it used, the order, destinations and an ETA.

use crate::args::{Common, DemoArgs};
use crate::check::CheckReport;
use crate::check_output;
use crate::output::{Record, RunOutcome, VmOutcome, fmt_eta, fmt_time};
use crate::settings::Effective;
use crate::stdio;
use anyhow::{Context, Result, anyhow};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use vmove_core::{Core, HostId, RunSpec, Settings, Time, VmInfo, fmt_bytes};
use vmove_driver::Driver;
use vmove_plan::{Calibration, Flags, ObservedHost};
use vmove_runtime::{Drivers, RuntimeOptions};
use vmove_sim::scenarios::{self, DEMO_SPEED, Demo, Scenario};
use vmove_sim::{SimClock, SimDriver};

/// About how long the demo lasts in real time at `--speed 1`.
const DEMO_SECONDS: f64 = 31.0;

/// The demo's settings, with every key the user set (config file, environment, flags) applied.
fn with_user_settings(base: &Settings, eff: &Effective) -> Result<Settings> {
    let mut b = serde_json::to_value(base).context("settings could not be serialised")?;
    let user = serde_json::to_value(&eff.settings).context("settings could not be serialised")?;
    if let (Some(b), Some(user)) = (b.as_object_mut(), user.as_object()) {
        for (k, v) in user {
            if eff.origins.contains_key(k) {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    serde_json::from_value(b).context("settings could not be merged")
}

/// The demo's speed-up: `--speed`, else `VMOVE_DEMO_SPEED`, else 1. Read here rather than by
/// clap so that a bad environment value is blamed on the variable, not on the flag.
fn demo_speed(flag: Option<f64>, env: &dyn Fn(&str) -> Option<String>) -> Result<f64> {
    /// The largest speed-up (a day in a tenth of a second, as for a sim cluster).
    const MAX: f64 = 1e6;
    let (value, origin) = match (flag, env("VMOVE_DEMO_SPEED")) {
        (Some(v), _) => (v, "flag `--speed`".to_owned()),
        (None, Some(raw)) => {
            let v: f64 = raw.trim().parse().map_err(|_| {
                anyhow!("environment variable `VMOVE_DEMO_SPEED`: `{raw}` is not a number (a speed-up such as 10)")
            })?;
            (v, "environment variable `VMOVE_DEMO_SPEED`".to_owned())
        }
        (None, None) => (1.0, String::new()),
    };
    if !(value.is_finite() && value > 0.0 && value <= MAX) {
        anyhow::bail!("{origin}: the speed-up must be above 0 and at most {MAX}, not {value}");
    }
    Ok(value)
}

/// `vmove demo`.
pub async fn demo(args: &DemoArgs, eff: &Effective, common: &Common) -> Result<u8> {
    // Its summary's advice for a VM not moved is another demo, not a resume or a migrate.
    let common = &Common {
        demo: true,
        ..common.clone()
    };
    let factor = demo_speed(args.speed, &crate::settings::env)?;
    let flags = plan_flags(common)?;
    if let Some(path) = &common.report {
        crate::output::check_writable(path)?;
    }
    let Demo {
        scenario: Scenario { cluster, mut spec },
        speed,
    } = scenarios::demo();
    spec.settings = with_user_settings(&spec.settings, eff)?;
    let speed = speed * factor;
    let vms = cluster.vm_specs().count();
    let hosts = cluster.host_ids();
    let intro = format!(
        "vmove demo: evacuating hv-01 ({vms} VMs) to hv-02 and hv-03 on a simulated cluster at \
         {speed:.0}x real time (about {:.0} s).\n  watch for: db-01 waits for its backup; web-02's \
         first start fails and is retried; analytics-01 fits on no destination; old-01 and old-02 \
         (powered off) move last.\n",
        DEMO_SECONDS * DEMO_SPEED / speed
    );
    if common.json {
        stdio::err(&intro);
    } else {
        stdio::out(&intro);
    }
    let driver: Arc<dyn Driver> = Arc::new(SimDriver::new(cluster, SimClock::scaled(speed)));
    let mut drivers = Drivers::new();
    for h in hosts {
        drivers.insert(h, Arc::clone(&driver));
    }
    let run_id = spec.run_id.clone();
    let spec_for_journal = spec.clone();
    let core = Core::new(spec, Time::ZERO).map_err(|e| crate::execute::spec_error(e, eff))?;
    let options = RuntimeOptions {
        call_timeout: eff.call_timeout,
        speed,
        start: Time::ZERO,
        journal_wait: eff.journal_wait,
    };
    // The demo's cluster lives in this process only: nothing to resume, so it is not journaled,
    // unless its page is served: then in a journal of its own, in a temporary folder.
    let Some(port) = args.serve else {
        return crate::execute::execute(
            core,
            drivers,
            options,
            common,
            &crate::runs::command_line(),
            None,
            None,
        )
        .await;
    };
    // Owner-only (0700; tempfile's default follows the umask) under $TMPDIR, removed when
    // dropped.
    let mut folder = tempfile::Builder::new();
    folder.prefix("vmove-demo-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        folder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    let folder = folder
        .tempdir()
        .context("cannot create the demo's journal folder")?;
    let journal_path = folder.path().join("journal.db");
    let open = || vmove_journal::Journal::open(&journal_path).map_err(|e| anyhow!(e.chain()));
    let mut j = open()?;
    // The demo's plan, journaled beside it and drawn on its page (calibrated from this
    // journal alone: no history, default figures).
    let plan = crate::run_plan::PlanRequest {
        spec: spec_for_journal.clone(),
        journal_path: journal_path.clone(),
        flags,
        history: common.plan_history,
    };
    j.create_run(&vmove_journal::NewRun {
        spec: spec_for_journal,
        config: String::new(),
        config_format: vmove_journal::ConfigFormat::Toml,
        command: crate::runs::command_line(),
    })
    .map_err(|e| anyhow!("the demo could not be journaled: {e}"))?;
    let serve_args = crate::args::ServeArgs {
        listen: None,
        port: Some(port),
        allow_control: false,
        token_file: None,
    };
    let server = crate::serve::Listening::bind(&serve_args, open()?).await?;
    let page = format!("{}runs/{}", server.url, run_id);
    let said = format!("vmove demo: the live page is {page}\n");
    if common.json {
        stdio::err(&said);
    } else {
        stdio::out(&said);
    }
    let journaling = crate::execute::Journaling {
        journal: Arc::new(std::sync::Mutex::new(j)),
        run: run_id,
        lease: eff.journal_lease,
        stop_seen: None,
        vm_stops_seen: Vec::new(),
        history: Vec::new(),
        plan: Some(plan),
    };
    let command = crate::runs::command_line();
    let run = crate::execute::execute(
        core,
        drivers,
        options,
        common,
        &command,
        Some(journaling),
        None,
    );
    let code = tokio::select! {
        code = run => code?,
        () = server.accept() => unreachable!("the server answers until dropped"),
    };
    // Stopped by the user (Ctrl-C, SIGTERM): they want to leave, not to look.
    if code == crate::exit::EXIT_INTERRUPTED {
        drop(folder);
        return Ok(code);
    }
    stdio::err(&format!(
        "vmove demo: the page stays at {page} until Ctrl-C\n"
    ));
    let mut interrupts = crate::interrupts::Interrupts::install()?;
    tokio::select! {
        () = server.accept() => {}
        _ = interrupts.next() => {}
    }
    drop(folder);
    Ok(code)
}

/// Asks each host the plan needs for its figures and VMs, as they are now.
async fn observe(
    hosts: BTreeSet<HostId>,
    drivers: &Drivers,
    eff: &Effective,
) -> Result<Vec<ObservedHost>> {
    let mut observed = Vec::new();
    for h in hosts {
        let d = drivers
            .get(&h)
            .ok_or_else(|| anyhow!("no driver serves host `{h}`"))?;
        let late =
            |what: &str| anyhow!("host `{h}` did not answer ({what}) within the call time-out");
        let info = tokio::time::timeout(eff.call_timeout, d.host_info(&h))
            .await
            .map_err(|_| late("host figures"))?
            .with_context(|| format!("host `{h}` could not report its figures"))?;
        let vms = tokio::time::timeout(eff.call_timeout, d.list_vms(&h))
            .await
            .map_err(|_| late("VM list"))?
            .with_context(|| format!("host `{h}` could not list its VMs"))?;
        observed.push(ObservedHost { id: h, info, vms });
    }
    Ok(observed)
}

/// Reads the newest `runs` runs of the journal at `path` for the plan's calibration (a missing
/// file: no history).
fn calibration(path: &Path, runs: usize) -> Result<Calibration> {
    let shown = vmove_journal::location::redact(&path.display().to_string());
    let database = path
        .to_str()
        .is_some_and(vmove_journal::location::is_postgres);
    if runs == 0 {
        return Ok(Calibration {
            origin: "calibration turned off (--plan-history 0)".into(),
            ..Calibration::default()
        });
    }
    if !database && !path.exists() {
        return Ok(Calibration {
            origin: format!("no journal at `{shown}`"),
            ..Calibration::default()
        });
    }
    // Read only: an empty file stays empty, another application's database is refused.
    let j = vmove_journal::Journal::open_existing(path)
        .with_context(|| format!("cannot open the journal `{shown}` to calibrate the plan"))?;
    let summaries = j.runs().context("cannot list the journal's runs")?;
    let mut records = Vec::new();
    for s in summaries.iter().take(runs) {
        records.push(
            j.load_run(&s.id)
                .with_context(|| format!("cannot read run {} from the journal", s.id))?,
        );
    }
    Ok(Calibration::from_runs(&records, |read| {
        format!("the journal `{shown}` (newest {read} runs)")
    }))
}

/// The `--plan-*` flags: what the user said about the plan's figures, checked
/// ([`Flags::check`]): a run, a demo and `vmove plan` read them here before anything starts, so
/// a figure no link has is refused, not left to a run's journaled plan to warn about.
pub(crate) fn plan_flags(common: &Common) -> Result<Flags> {
    let flags = Flags {
        bandwidth_mb_s: common.plan_bandwidth,
        aggregate_mb_s: common.plan_aggregate,
        overhead_secs: common.plan_overhead,
    };
    flags.check().map_err(|e| anyhow!(e))?;
    Ok(flags)
}

/// What a plan is made from besides the hosts' figures: the flags and the calibration fitted
/// from the journal's newest runs. `vmove plan` and the plan a run journals when it starts
/// (`crate::run_plan`) both read it here and plan with it.
#[derive(Debug)]
pub(crate) struct PlanInput {
    flags: Flags,
    calibration: Calibration,
}

impl PlanInput {
    /// Checks the flags and reads the newest `history` runs of the journal at `journal` (a
    /// missing file: no history). Blocks (reads the journal).
    pub(crate) fn read(flags: Flags, journal: &Path, history: usize) -> Result<PlanInput> {
        flags.check().map_err(|e| anyhow!(e))?;
        let calibration = calibration(journal, history)?;
        Ok(PlanInput { flags, calibration })
    }

    /// Plans `spec` on the `observed` hosts; `default_limit` is the slots of a host that
    /// reports no limit.
    pub(crate) fn plan(
        &self,
        spec: RunSpec,
        observed: &[ObservedHost],
        default_limit: u32,
    ) -> Result<vmove_plan::Plan> {
        vmove_plan::plan(
            spec,
            observed,
            default_limit,
            &self.calibration,
            &self.flags,
        )
    }
}

/// `vmove plan ...` / `--dry-run`: the pre-flight of every selected VM (`vmove check`'s), then
/// the plan (`vmove-plan`) of the VMs that can move, printed; `--json`: the plan as one JSON
/// document on stdout (docs/cli.md), the text on stderr. `flags`: the `--plan-*` flags, as
/// [`plan_flags`] read and checked them before anything was asked of the hosts.
pub async fn plan(
    mut spec: RunSpec,
    listed: &BTreeMap<HostId, Vec<VmInfo>>,
    drivers: &Drivers,
    eff: &Effective,
    common: &Common,
    flags: Flags,
) -> Result<u8> {
    let path = crate::runs::journal_path(eff)?;
    let history = common.plan_history;
    let input = tokio::task::spawn_blocking(move || PlanInput::read(flags, &path, history))
        .await
        .context("the calibration task failed")??;
    // Pre-flight first: a VM that cannot move is listed with its findings and left out of the
    // simulation (by its id, which `exclude` matches exactly).
    let checked = crate::check::preflight(&spec, listed, drivers, eff, !common.json).await?;
    for v in checked.blocked() {
        for s in spec.sources.iter_mut().filter(|s| s.host == v.source) {
            s.exclude.push(v.vm.as_str().to_owned());
        }
    }
    let mut preflight_text = String::from("pre-flight:\n");
    preflight_text.push_str(&check_output::hosts_text(&checked));
    for v in checked
        .vms
        .iter()
        .filter(|v| v.routes.iter().any(|r| r.verdict() != "ok"))
    {
        preflight_text.push('\n');
        preflight_text.push_str(&check_output::vm_text(v));
    }
    preflight_text.push('\n');
    preflight_text.push_str(&crate::stdio::escaped(&check_output::summary_line(
        &checked,
    )));
    preflight_text.push_str("\n\n");
    let observed = observe(vmove_plan::involved(&spec), drivers, eff).await?;
    let plan = input.plan(spec, &observed, eff.settings.default_host_limit)?;
    let out = &plan.simulated;
    let mut rec = Record::new("plan");
    for e in &out.events {
        rec.apply(e);
    }
    rec.finish(&out.snapshot);
    let mut text = preflight_text;
    text.push_str(&plan.figures);
    text.push_str(&format!(
        "{:>3}  {:<24} {:<28} {:>10}  {:>8}\n",
        "#", "VM", "ROUTE", "SIZE", "START"
    ));
    for (i, m) in plan.order.iter().enumerate() {
        let row = rec.vms.iter().find(|r| r.id == m.vm.as_str());
        let name = crate::stdio::escaped(
            &row.map(|r| r.name.clone())
                .unwrap_or_else(|| m.vm.to_string()),
        )
        .into_owned();
        let size = row
            .map(|r| fmt_bytes(r.memory_bytes + r.disk_bytes))
            .unwrap_or_default();
        let route =
            crate::stdio::escaped(&format!("{} -> {}", m.source, m.destination)).into_owned();
        text.push_str(&format!(
            "{:>3}  {name:<24} {route:<28} {size:>10}  {:>8}\n",
            i + 1,
            fmt_time(m.start)
        ));
    }
    for r in rec.vms.iter().filter(|r| r.outcome != VmOutcome::Moved) {
        text.push_str(&format!(
            "  {} would not move: {}\n",
            r.name,
            r.reason.clone().unwrap_or_else(|| r.outcome.to_string())
        ));
    }
    for v in checked.blocked() {
        text.push_str(&format!(
            "  {} would not move: it cannot move ({}; pre-flight above)\n",
            v.name,
            v.why_not()
        ));
    }
    text.push_str(&format!(
        "ETA: {} ({:.1} s) for {} VMs ({} would move)\n",
        fmt_eta(plan.eta),
        plan.eta.as_secs_f64(),
        rec.vms.len() + checked.blocked().count(),
        rec.moved
    ));
    let blocked = checked.blocked().count();
    // The plan's timeline: its simulated run, with the predicted bars (every VM's first
    // attempt as planned).
    let timeline =
        crate::timeline::Timeline::from_events(&rec.run_id, rec.started_unix * 1000, &out.events)
            .with_plan(&plan.order);
    if common.timeline {
        text.push('\n');
        text.push_str(&crate::timeline::text::text(
            &timeline,
            crate::output::terminal_width().unwrap_or(crate::timeline::text::DEFAULT_WIDTH),
        ));
    }
    if common.json {
        stdio::err(&text);
        stdio::out(&format!("{}\n", plan_json(&plan, &rec, &checked)));
    } else {
        stdio::out(&text);
    }
    rec.outcome = if blocked == 0 && rec.vms.iter().all(|r| r.outcome == VmOutcome::Moved) {
        RunOutcome::AllMoved
    } else {
        RunOutcome::SomeUnmigratable
    };
    if let Some(path) = &common.report {
        rec.write_with(path, Some(&timeline))?;
    }
    Ok(rec.outcome.exit_code())
}

/// The plan as one JSON document: `{order[{order, vm, name, source, destination, mode,
/// start_secs, end_secs}], not_moved[{vm, name, reason}], blocked[...as in `check --json`],
/// preflight{...`check --json`}, eta_secs, vms, would_move, figures}`. Times are seconds from
/// the run's start; `end_secs` is null for a VM the simulation did not move.
fn plan_json(plan: &vmove_plan::Plan, rec: &Record, checked: &CheckReport) -> serde_json::Value {
    use serde_json::json;
    let secs = |t: Time| t.as_millis() as f64 / 1000.0;
    let order: Vec<serde_json::Value> = plan
        .order
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let name = rec
                .vms
                .iter()
                .find(|r| r.id == m.vm.as_str())
                .map(|r| r.name.clone())
                .unwrap_or_else(|| m.vm.to_string());
            json!({
                "order": i + 1,
                "vm": m.vm.as_str(),
                "name": name,
                "source": m.source.as_str(),
                "destination": m.destination.as_str(),
                "mode": m.mode.to_string(),
                "start_secs": secs(m.start),
                "end_secs": m.end.map(secs),
            })
        })
        .collect();
    let not_moved: Vec<serde_json::Value> = rec
        .vms
        .iter()
        .filter(|r| r.outcome != VmOutcome::Moved)
        .map(|r| {
            json!({
                "vm": r.id,
                "name": r.name,
                "reason": r.reason.clone().unwrap_or_else(|| r.outcome.to_string()),
            })
        })
        .collect();
    json!({
        "order": order,
        "not_moved": not_moved,
        "blocked": checked.blocked().map(check_output::vm_json).collect::<Vec<_>>(),
        "preflight": check_output::json(checked),
        "eta_secs": plan.eta.as_secs_f64(),
        "vms": rec.vms.len() + checked.blocked().count(),
        "would_move": rec.moved,
        "figures": plan.figures,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Moved with the journal reading from the calibration (`vmove-plan`'s
    /// `no_history_gives_no_route` keeps its other half).
    #[test]
    fn no_history_gives_no_route() {
        let c = calibration(Path::new("/nonexistent/journal.db"), 20).unwrap();
        assert!(
            c.routes.is_empty() && c.origin.contains("no journal"),
            "{c:?}"
        );
    }
}
