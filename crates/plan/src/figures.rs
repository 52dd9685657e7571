//! The figures a plan runs on: per route, the simulator's [`RouteSpec`] from the calibration
//! and the flags (flags win), and the lines that say which figures were used and where they came
//! from.

use crate::calibrate::{Calibration, Method, RouteFit, UNLIMITED};
use std::collections::BTreeSet;
use vmove_core::{HostId, RunSpec, fmt_bytes};
use vmove_sim::scenarios::Assumptions;
use vmove_sim::{RouteSpec, SimCluster};

/// Bytes in a MB (the unit of the `--plan-bandwidth` and `--plan-aggregate` flags).
const MB: u64 = 1_000_000;
/// Milliseconds in a second (the unit of `--plan-overhead`).
const MS_PER_SEC: f64 = 1000.0;
/// A host's assumed link, in streams of one migration's rate: wide enough that it never is what
/// limits (a measured aggregate is the route's; without one, concurrent migrations are assumed
/// not to slow each other, and the host's slot limit caps how many run).
const NIC_STREAMS: u64 = 64;

/// What the user said on the command line about the figures (each wins over the journal).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Flags {
    /// `--plan-bandwidth`: one migration's rate, MB/s.
    pub bandwidth_mb_s: Option<u64>,
    /// `--plan-aggregate`: a route's total rate when several run, MB/s.
    pub aggregate_mb_s: Option<u64>,
    /// `--plan-overhead`: each migration's fixed cost, seconds.
    pub overhead_secs: Option<f64>,
}

impl Flags {
    /// Refuses figures no link has (a rate of 0; an overhead that is not a duration vmove
    /// accepts: negative, not a number, over 365 days, finer than 1 ms), naming the flag.
    pub fn check(&self) -> Result<(), String> {
        if self.bandwidth_mb_s == Some(0) {
            return Err("flag `--plan-bandwidth` must be at least 1 (MB/s)".into());
        }
        if self.aggregate_mb_s == Some(0) {
            return Err("flag `--plan-aggregate` must be at least 1 (MB/s)".into());
        }
        // Bounded as every duration is: `1e17` was planned with, its header saying
        // `18446744073709552.00 s fixed (flag)` (the milliseconds saturated).
        if let Some(o) = self.overhead_secs {
            vmove_core::spec::dur::from_secs_f64(o)
                .map_err(|e| format!("flag `--plan-overhead` (seconds): {e}"))?;
        }
        Ok(())
    }
}

/// For each route with rates measured per concurrency: how many migrations its hosts' slots let
/// run at once and which measured level the simulator uses for that many (the same one, or the
/// nearest measured: said so, never extrapolated).
pub(crate) fn levels_used(spec: &RunSpec, cluster: &SimCluster) -> String {
    let mut text = String::new();
    let mut seen = BTreeSet::new();
    for s in &spec.sources {
        for d in s.destinations.iter() {
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
    if bytes_per_sec >= UNLIMITED {
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
pub(crate) fn assumptions_for(
    spec: &RunSpec,
    cal: &Calibration,
    flags: &Flags,
) -> (Assumptions, String, u64) {
    let flag_rate = flags.bandwidth_mb_s.map(|b| b.saturating_mul(MB));
    let flag_agg = flags.aggregate_mb_s.map(|b| b.saturating_mul(MB));
    let flag_overhead = flags.overhead_secs.map(|s| (s * MS_PER_SEC).round() as u64);
    let mut routes: Vec<(HostId, HostId)> = Vec::new();
    for s in &spec.sources {
        for d in s.destinations.iter() {
            if !routes.contains(&(s.host.clone(), d.clone())) {
                routes.push((s.host.clone(), d.clone()));
            }
        }
    }
    let fits: Vec<Option<&RouteFit>> = routes.iter().map(|r| cal.routes.get(r)).collect();
    let default_rate = flag_rate
        .or_else(|| fits.iter().flatten().map(|f| f.stream).max())
        .unwrap_or(DEFAULT_MB_S * MB);
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
            let nic = rate.saturating_mul(NIC_STREAMS).max(1);
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
