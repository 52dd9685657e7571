//! `demo` and `plan`: both run the real core on the simulated cluster.
//!
//! - `demo` evacuates a built-in cluster through the REAL runtime, with a [`SimDriver`] whose
//!   clock is real time sped up so the run lasts about 30 s (`--speed` multiplies that).
//! - `plan` builds a simulated copy of the real hosts from what their drivers report, runs the
//!   plan on it in virtual time, and prints the order, destinations and an ETA.

use crate::args::{Common, DemoArgs};
use crate::output::{Record, fmt_eta, fmt_time};
use crate::settings::Effective;
use anyhow::{Context, Result, anyhow};
use std::collections::BTreeSet;
use std::sync::Arc;
use vmove_core::event::EventKind;
use vmove_core::{Core, RunSpec, Settings, Time, fmt_bytes};
use vmove_driver::Driver;
use vmove_runtime::{Drivers, RuntimeOptions};
use vmove_sim::scenarios::{
    self, Assumptions, DEMO_SPEED, Demo, ObservedHost, Scenario, from_observed,
};
use vmove_sim::{SimClock, SimCluster, SimDriver, SimOptions, simulate};

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

/// `vmove demo`.
pub async fn demo(args: &DemoArgs, eff: &Effective, common: &Common) -> Result<u8> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        anyhow::bail!("flag `--speed` must be above 0, not {}", args.speed);
    }
    let Demo {
        scenario: Scenario { cluster, mut spec },
        speed,
    } = scenarios::demo();
    spec.settings = with_user_settings(&spec.settings, eff)?;
    let speed = speed * args.speed;
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
        eprint!("{intro}");
    } else {
        print!("{intro}");
    }
    let driver: Arc<dyn Driver> = Arc::new(SimDriver::new(cluster, SimClock::scaled(speed)));
    let mut drivers = Drivers::new();
    for h in hosts {
        drivers.insert(h, Arc::clone(&driver));
    }
    let core = Core::new(spec, Time::ZERO).map_err(|e| crate::spec_error(e, eff))?;
    let options = RuntimeOptions {
        call_timeout: eff.call_timeout,
        speed,
        start: Time::ZERO,
    };
    // The demo's cluster lives in this process only: nothing to resume, so it is not journaled.
    crate::execute(core, drivers, options, common, "demo", None).await
}

/// Builds a simulated copy of the spec's hosts from what their drivers say now.
async fn observed_cluster(
    spec: &RunSpec,
    drivers: &Drivers,
    eff: &Effective,
    bandwidth: u64,
) -> Result<SimCluster> {
    let mut involved = BTreeSet::new();
    for s in &spec.sources {
        involved.insert(s.host.clone());
        involved.extend(s.destinations.iter().cloned());
    }
    let mut observed = Vec::new();
    for h in involved {
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
    let mut a = Assumptions::with_bandwidth(bandwidth);
    a.default_limit = eff.settings.default_host_limit;
    from_observed(&observed, &a).context("the hosts' figures do not make a cluster")
}

/// `vmove plan ...` / `--dry-run`.
pub async fn plan(
    spec: RunSpec,
    drivers: &Drivers,
    eff: &Effective,
    common: &Common,
) -> Result<u8> {
    if common.plan_bandwidth == 0 {
        anyhow::bail!("flag `--plan-bandwidth` must be at least 1 (MB/s)");
    }
    let bandwidth = common.plan_bandwidth.saturating_mul(1_000_000);
    let cluster = observed_cluster(&spec, drivers, eff, bandwidth).await?;
    let out = simulate(spec, cluster, SimOptions::default())
        .map_err(|e| anyhow!("the plan could not be simulated: {e}"))?;
    let mut rec = Record::new("plan");
    for e in &out.events {
        rec.apply(e);
    }
    rec.finish(&out.snapshot);
    if common.json {
        print!("{}", out.ndjson());
    }
    let mut text = format!(
        "Plan (simulated on the hosts' current figures; assumed: {} MB/s per migration \
         (--plan-bandwidth), 10 MiB/s guest dirty rate, running backups last 15 more minutes):\n",
        common.plan_bandwidth
    );
    let mut starts: Vec<(Time, String, String, String)> = Vec::new();
    let mut seen = BTreeSet::new();
    for e in &out.events {
        if let EventKind::AttemptStarted {
            vm,
            source,
            destination,
            ..
        } = &e.kind
            && seen.insert(vm.clone())
        {
            let row = rec.vms.iter().find(|r| r.id == vm.as_str());
            let name = row
                .map(|r| r.name.clone())
                .unwrap_or_else(|| vm.to_string());
            let size = row
                .map(|r| fmt_bytes(r.memory_bytes + r.disk_bytes))
                .unwrap_or_default();
            starts.push((e.at, name, format!("{source} -> {destination}"), size));
        }
    }
    text.push_str(&format!(
        "{:>3}  {:<24} {:<28} {:>10}  {:>8}\n",
        "#", "VM", "ROUTE", "SIZE", "START"
    ));
    for (i, (at, name, route, size)) in starts.iter().enumerate() {
        text.push_str(&format!(
            "{:>3}  {name:<24} {route:<28} {size:>10}  {:>8}\n",
            i + 1,
            fmt_time(*at)
        ));
    }
    for r in rec.vms.iter().filter(|r| r.outcome != "moved") {
        text.push_str(&format!(
            "  {} would not move: {}\n",
            r.name,
            r.reason.clone().unwrap_or_else(|| r.outcome.clone())
        ));
    }
    text.push_str(&format!(
        "ETA: {} for {} VMs ({} would move)\n",
        fmt_eta(out.makespan.since_epoch()),
        rec.vms.len(),
        rec.moved
    ));
    if common.json {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    rec.outcome = if rec.vms.iter().all(|r| r.outcome == "moved") {
        "all_moved".into()
    } else {
        "some_unmigratable".into()
    };
    if let Some(path) = &common.report {
        rec.write(path)?;
    }
    Ok(if rec.outcome == "all_moved" { 0 } else { 2 })
}
