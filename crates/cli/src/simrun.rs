//! `demo` and `plan`: both run the real core on the simulated cluster.
//!
//! - `demo` evacuates a built-in cluster through the REAL runtime, with a [`SimDriver`] whose
//!   clock is real time sped up so the run lasts about 30 s (`--speed` multiplies that).
//! - `plan` builds a simulated copy of the real hosts from what their drivers report, calibrated
//!   per route from the journal's past migrations ([`crate::calibrate`]), runs the plan on it in
//!   virtual time, and prints the figures it used, the order, destinations and an ETA.

use crate::args::{Common, DemoArgs};
use crate::calibrate::{Calibration, Method, RouteFit};
use crate::output::{Record, fmt_eta, fmt_time};
use crate::settings::Effective;
use crate::stdio;
use anyhow::{Context, Result, anyhow};
use std::collections::BTreeSet;
use std::sync::Arc;
use vmove_core::event::EventKind;
use vmove_core::{Core, HostId, RunSpec, Settings, Time, fmt_bytes};
use vmove_driver::Driver;
use vmove_runtime::{Drivers, RuntimeOptions};
use vmove_sim::scenarios::{
    self, Assumptions, DEMO_SPEED, Demo, ObservedHost, Scenario, from_observed,
};
use vmove_sim::{RouteSpec, SimClock, SimCluster, SimDriver, SimOptions, simulate};

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
    let factor = demo_speed(args.speed, &crate::env)?;
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
    let core = Core::new(spec, Time::ZERO).map_err(|e| crate::spec_error(e, eff))?;
    let options = RuntimeOptions {
        call_timeout: eff.call_timeout,
        speed,
        start: Time::ZERO,
    };
    // The demo's cluster lives in this process only: nothing to resume, so it is not journaled.
    crate::execute(core, drivers, options, common, "demo", None, None).await
}

/// Builds a simulated copy of the spec's hosts from what their drivers say now.
async fn observed_cluster(
    spec: &RunSpec,
    drivers: &Drivers,
    eff: &Effective,
    mut a: Assumptions,
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
    if common.plan_bandwidth == Some(0) {
        anyhow::bail!("flag `--plan-bandwidth` must be at least 1 (MB/s)");
    }
    if common.plan_aggregate == Some(0) {
        anyhow::bail!("flag `--plan-aggregate` must be at least 1 (MB/s)");
    }
    if let Some(o) = common.plan_overhead
        && !(o.is_finite() && o >= 0.0)
    {
        anyhow::bail!("flag `--plan-overhead` must be 0 or more seconds, not {o}");
    }
    let path = crate::runs::journal_path(eff)?;
    let history = common.plan_history;
    let calibration =
        tokio::task::spawn_blocking(move || Calibration::from_journal(&path, history))
            .await
            .context("the calibration task failed")??;
    let (assumptions, header, tail_ms) = assumptions_for(&spec, &calibration, common);
    let cluster = observed_cluster(&spec, drivers, eff, assumptions).await?;
    let header = header + &levels_used(&spec, &cluster);
    let out = simulate(spec, cluster, SimOptions::default())
        .map_err(|e| anyhow!("the plan could not be simulated: {e}"))?;
    let mut rec = Record::new("plan");
    for e in &out.events {
        rec.apply(e);
    }
    rec.finish(&out.snapshot);
    if common.json {
        stdio::out(&out.ndjson());
    }
    let mut text = header;
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
    let eta = out.makespan.since_epoch() + std::time::Duration::from_millis(tail_ms);
    text.push_str(&format!(
        "ETA: {} ({:.1} s) for {} VMs ({} would move)\n",
        fmt_eta(eta),
        eta.as_secs_f64(),
        rec.vms.len(),
        rec.moved
    ));
    if common.json {
        stdio::err(&text);
    } else {
        stdio::out(&text);
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

/// For each route with rates measured per concurrency: how many migrations its hosts' slots let
/// run at once and which measured level the simulator uses for that many (the same one, or the
/// nearest measured: said so, never extrapolated).
fn levels_used(spec: &RunSpec, cluster: &SimCluster) -> String {
    let mut text = String::new();
    let mut seen = BTreeSet::new();
    for s in &spec.sources {
        for d in &s.destinations {
            if !seen.insert((s.host.clone(), d.clone())) {
                continue;
            }
            let Some(route) = cluster.route(&s.host, d) else {
                continue;
            };
            // As the engine counts a host's slots: what it reports (else the default limit),
            // capped by its `max_migrations`.
            let limit = |h: &HostId| {
                let reported = cluster
                    .host_spec(h)
                    .and_then(|x| x.migration_limit)
                    .unwrap_or(spec.settings.default_host_limit);
                match spec.hosts.get(h).and_then(|l| l.max_migrations) {
                    Some(cap) => reported.min(cap),
                    None => reported,
                }
            };
            let k = limit(&s.host).min(limit(d));
            if let Some((level, rate)) = route.rate_nearest(k) {
                text.push_str(&format!(
                    "    {} -> {d}: up to {k} at once (the hosts' slots): {}\n",
                    s.host,
                    if level == k {
                        format!("uses the figure measured at {k} at once ({})", mb(rate))
                    } else {
                        format!(
                            "{k} at once never measured: uses the nearest measured level, {level} \
                             at once ({})",
                            mb(rate)
                        )
                    }
                ));
            }
        }
    }
    text
}

/// Default rate of one migration when neither the journal nor `--plan-bandwidth` says, MB/s.
const DEFAULT_MB_S: u64 = 125;

fn mb(bytes_per_sec: u64) -> String {
    if bytes_per_sec >= crate::calibrate::UNLIMITED {
        return "no measurable cost per byte".to_owned();
    }
    if bytes_per_sec.is_multiple_of(1_000_000) {
        return format!("{} MB/s", bytes_per_sec / 1_000_000);
    }
    format!("{:.1} MB/s", bytes_per_sec as f64 / 1e6)
}

/// The simulator's assumptions for the plan's routes, from the calibration and the flags (flags
/// win), the header that says which figures were used and where they came from, and the time
/// to add to the simulated makespan (run start-up and the last VM's verification and clean-up,
/// which the simulator does not spend).
fn assumptions_for(
    spec: &RunSpec,
    cal: &Calibration,
    common: &Common,
) -> (Assumptions, String, u64) {
    let flag_rate = common.plan_bandwidth.map(|b| b.saturating_mul(1_000_000));
    let flag_agg = common.plan_aggregate.map(|b| b.saturating_mul(1_000_000));
    let flag_overhead = common.plan_overhead.map(|s| (s * 1000.0).round() as u64);
    let mut routes: Vec<(HostId, HostId)> = Vec::new();
    for s in &spec.sources {
        for d in &s.destinations {
            if !routes.contains(&(s.host.clone(), d.clone())) {
                routes.push((s.host.clone(), d.clone()));
            }
        }
    }
    let fits: Vec<Option<&RouteFit>> = routes.iter().map(|r| cal.routes.get(r)).collect();
    let default_rate = flag_rate
        .or_else(|| fits.iter().flatten().map(|f| f.stream).max())
        .unwrap_or(DEFAULT_MB_S * 1_000_000);
    let mut a = Assumptions::with_bandwidth(default_rate);
    // A fitted rate already holds the real pre-copy rounds (it was measured over disk + one
    // pass of memory): with every route fitted, the simulator adds no dirty-page rounds.
    let all_fitted = fits.iter().all(Option::is_some);
    if all_fitted {
        a.dirty_rate = 0;
    }
    let mut text = format!(
        "Plan (simulated on the hosts' current figures; per-migration figures from {}):\n",
        cal.origin
    );
    let mut finish = 0u64;
    let mut any_default = false;
    for ((src, dst), fit) in routes.iter().zip(&fits) {
        let rate = flag_rate.or(fit.map(|f| f.stream)).unwrap_or(default_rate);
        let overhead = flag_overhead.or(fit.map(|f| f.overhead_ms)).unwrap_or(0);
        let aggregate = flag_agg.or(fit.and_then(|f| f.aggregate));
        // The rates measured per concurrency, unless a flag sets the rate or the aggregate
        // (then the line those flags describe).
        let per_level = match fit {
            Some(f) if flag_rate.is_none() && flag_agg.is_none() => f.rate_at_concurrency(),
            _ => Vec::new(),
        };
        a.routes.insert(
            (src.clone(), dst.clone()),
            RouteSpec {
                overhead_ms: overhead,
                stream_cap_bytes_per_sec: Some(rate.max(1)),
                // Applied only while several migrations move bytes on the route's hosts.
                aggregate_bytes_per_sec: aggregate.map(|x| x.max(1)),
                rate_at_concurrency: per_level.clone(),
            },
        );
        for h in [src, dst] {
            // The hosts' links are not what limits here (a measured aggregate is the route's);
            // without one, concurrent migrations are assumed not to slow each other down (each
            // gets `rate`; the host's limit caps how many run).
            let nic = rate.saturating_mul(64).max(1);
            let e = a.host_nic.entry(h.clone()).or_insert(nic);
            *e = (*e).max(nic);
        }
        finish = finish.max(fit.and_then(|f| f.finish_ms).unwrap_or(0));
        let src_of = |flag: bool, measured: bool| {
            if flag {
                " (flag)"
            } else if measured {
                ""
            } else {
                " (DEFAULT)"
            }
        };
        let line = match fit {
            Some(f) => {
                format!(
                    "  {src} -> {dst}: {n} migrations measured ({alone} alone, up to {k:.1} at once; {how}): \
                 {o:.2} s fixed{of} + bytes at {r} per migration{rf}, {agg}; dirty rate {d}{dn}; \
                 {fin:.2} s to verify and clean up\n",
                    n = f.samples,
                    alone = f.alone,
                    k = f.max_concurrency,
                    how = match f.method {
                        Method::Regression => "fixed cost and rate from a line through their sizes",
                        Method::FixedOnly => "bigger ones took no longer: their time is fixed cost",
                        Method::StartLatency =>
                            "sizes too alike to separate: fixed cost = measured start latency",
                    },
                    o = overhead as f64 / 1000.0,
                    of = src_of(flag_overhead.is_some(), true),
                    r = mb(rate),
                    rf = src_of(flag_rate.is_some(), true),
                    agg = match (flag_agg, f.aggregate) {
                        (Some(x), _) => format!("{} in all when several run (flag)", mb(x)),
                        (None, Some(x)) => format!("{} in all when several run", mb(x)),
                        (None, None) => "several at once never measured: assumed not to slow each \
                                     other (DEFAULT)"
                            .to_owned(),
                    },
                    d = f.dirty_rate.map_or_else(
                        || "not reported".to_owned(),
                        |d| { format!("{}/s", fmt_bytes(d)) }
                    ),
                    dn = if all_fitted {
                        " (its rounds are in the measured rate)"
                    } else {
                        " (10 MiB/s assumed: a route has no history)"
                    },
                    fin = f.finish_ms.unwrap_or(0) as f64 / 1000.0,
                ) + &if per_level.is_empty() {
                    String::new()
                } else {
                    format!(
                        "    per migration by how many ran at once (measured, used instead of the \
                     line above; n at once takes the nearest measured level, a tie the higher, \
                     none beyond the highest): {}\n",
                        f.levels
                            .iter()
                            .map(|l| format!(
                                "{} at once {} ({} measured)",
                                l.at_once,
                                mb(l.rate),
                                l.samples
                            ))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            }
            None => {
                any_default = true;
                format!(
                    "  {src} -> {dst}: no past migrations on this route: DEFAULTS used: {r} per \
                     migration{rf} (--plan-bandwidth), {o:.2} s fixed{of} (--plan-overhead), {agg} \
                     (--plan-aggregate), {d}/s dirty rate\n",
                    r = mb(rate),
                    rf = src_of(flag_rate.is_some(), false),
                    o = overhead as f64 / 1000.0,
                    of = src_of(flag_overhead.is_some(), false),
                    agg = match flag_agg {
                        Some(x) => format!("{} in all when several run (flag)", mb(x)),
                        None => "several at once do not slow each other (DEFAULT)".to_owned(),
                    },
                    d = fmt_bytes(a.dirty_rate),
                )
            }
        };
        text.push_str(&line);
    }
    let startup = cal.startup_ms.unwrap_or(0);
    text.push_str(&format!(
        "  also assumed: running backups last 15 more minutes; migrations seen in flight 5 more \
         minutes{}{}\n",
        if any_default {
            "; a route without history: move a few VMs (any run is journaled) to calibrate it"
        } else {
            ""
        },
        if startup > 0 || finish > 0 {
            format!(
                "; the ETA adds {:.2} s to start and {:.2} s to verify the last VM (measured)",
                startup as f64 / 1000.0,
                finish as f64 / 1000.0
            )
        } else {
            String::new()
        }
    ));
    (a, text, startup + finish)
}
