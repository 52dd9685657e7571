//! `vmove plan`'s calibration: per route (source -> destination), how long a migration takes,
//! fitted from the migrations the journal recorded.
//!
//! The model (the one the simulator runs, see `docs/simulation.md`):
//! `duration = overhead + bytes / rate`, where `rate = min(stream, aggregate / k)` when `k`
//! migrations touching the route's hosts move bytes at once. `bytes` is what the driver reports
//! for the VM when it was selected: its disks' allocated bytes, plus its memory for a live move.
//!
//! From the journal, each attempt that ended in a completed migration gives one [`Sample`]:
//! its route, bytes, duration (from `attempt_started` to the transition to `verifying`, i.e. as
//! long as it held its slots) and its concurrency (the time-weighted number of attempts of the
//! same run touching either of its hosts while it ran, itself included). Then:
//! - `overhead` and `stream`: a least-squares line through the samples that ran alone
//!   (concurrency < [`ALONE`]): intercept = overhead, 1 / slope = stream. When their sizes do
//!   not differ enough to tell a fixed cost from a per-byte one (largest < [`SPREAD`] x smallest),
//!   the overhead is the measured start latency (from `attempt_started` to `migrating`) and the
//!   rest of each duration is counted as transfer.
//! - `aggregate`: from the samples that ran with others, each one's effective rate
//!   `bytes / (duration - overhead)` times its concurrency, where that rate is below the single
//!   stream's (so the hosts, not the stream, limited it); the median, which may be below one
//!   stream (the simulator applies it only while several run). When none was limited, the
//!   highest total measured; when none ran with others, unknown (the plan then assumes that
//!   concurrent migrations do not slow each other, and says so).
//! - per concurrency: the samples that ran with others grouped by their concurrency rounded to
//!   the nearest whole number (a [`Level`]); each level's figure is the median effective rate
//!   `bytes / (duration - overhead)` of its samples, i.e. what one migration moved while that
//!   many ran. Level 1 is `stream`. The plan gives the simulator these measured levels, which
//!   uses the nearest one for each concurrency instead of the `aggregate` line (see
//!   `RouteSpec::rate_at_concurrency`); with no level above 1, the line as above.
//! - the dirty rate: the median of the highest dirty rate each attempt reported, where reported.
//! - `startup` and `finish`: the median time from a run's start to its first attempt and from
//!   a migration's end to `moved` (verification and clean-up); the plan adds them to the ETA.

use std::collections::{BTreeMap, BTreeSet};
use vmove_core::model::MigrationStatus;
use vmove_core::{Event, EventKind, HostId, Input, MigrationMode, Phase, Time, VmId};

/// The rate that stands for "bytes cost no measurable time", bytes/s (1 TB/s).
pub const UNLIMITED: u64 = 1_000_000_000_000;
/// Attempts with a concurrency below this count as having run alone.
pub const ALONE: f64 = 1.25;
/// Sizes must spread by this factor for the overhead and the rate to be told apart.
pub const SPREAD: f64 = 1.2;
/// The shortest transfer time counted (ms), so that a duration at or below the overhead does
/// not divide by zero.
const MIN_TRANSFER_MS: f64 = 1.0;

/// One completed migration, as the journal recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Which run (attempts only overlap within a run).
    pub run: String,
    /// The VM.
    pub vm: VmId,
    /// Source host.
    pub source: HostId,
    /// Destination host.
    pub destination: HostId,
    /// Bytes the model moves: allocated disk bytes, plus memory for a live move.
    pub bytes: u64,
    /// When it started (run time).
    pub start: Time,
    /// When the migration was known to have ended (run time).
    pub end: Time,
    /// From its start to `migrating` (ms), when seen.
    pub start_latency_ms: Option<u64>,
    /// From its end to `moved` (ms), when seen.
    pub finish_ms: Option<u64>,
    /// The highest dirty rate it reported, bytes/s.
    pub dirty_rate: Option<u64>,
    /// Time-weighted attempts touching its hosts at once while it ran (itself included).
    pub concurrency: f64,
}

impl Sample {
    /// Its duration, ms.
    pub fn duration_ms(&self) -> u64 {
        self.end.0.saturating_sub(self.start.0)
    }
}

/// The samples of one run, from its events and (optionally) its status answers (for the dirty
/// rate), plus the run's startup time (run start to its first attempt), if it had an attempt.
pub fn samples_of_run<'a>(
    run: &str,
    events: impl IntoIterator<Item = &'a Event>,
    inputs: impl IntoIterator<Item = &'a Input>,
) -> (Vec<Sample>, Option<u64>) {
    struct Open {
        source: HostId,
        destination: HostId,
        bytes: u64,
        start: Time,
        migrating: Option<Time>,
    }
    let mut sizes: BTreeMap<VmId, (u64, u64)> = BTreeMap::new();
    let mut open: BTreeMap<VmId, Open> = BTreeMap::new();
    // Every attempt's interval and hosts (failed ones too: they shared the hosts).
    let mut intervals: Vec<(Time, Time, HostId, HostId)> = Vec::new();
    let mut done: Vec<Sample> = Vec::new();
    let mut ended_at: BTreeMap<VmId, usize> = BTreeMap::new();
    let mut first_attempt: Option<Time> = None;
    let mut last_at = Time::ZERO;
    for e in events {
        last_at = last_at.max(e.at);
        match &e.kind {
            EventKind::Selected {
                vm,
                memory_bytes,
                disk_bytes,
                ..
            } => {
                sizes.insert(vm.clone(), (*memory_bytes, *disk_bytes));
            }
            EventKind::AttemptStarted {
                vm,
                source,
                destination,
                mode,
                ..
            } => {
                first_attempt.get_or_insert(e.at);
                let (mem, disk) = sizes.get(vm).copied().unwrap_or((0, 0));
                let bytes = disk + if *mode == MigrationMode::Live { mem } else { 0 };
                open.insert(
                    vm.clone(),
                    Open {
                        source: source.clone(),
                        destination: destination.clone(),
                        bytes,
                        start: e.at,
                        migrating: None,
                    },
                );
            }
            EventKind::Transition { vm, to, .. } => match to {
                Phase::Migrating => {
                    if let Some(o) = open.get_mut(vm) {
                        o.migrating.get_or_insert(e.at);
                    }
                }
                Phase::Verifying => {
                    if let Some(o) = open.remove(vm) {
                        intervals.push((o.start, e.at, o.source.clone(), o.destination.clone()));
                        ended_at.insert(vm.clone(), done.len());
                        done.push(Sample {
                            run: run.to_owned(),
                            vm: vm.clone(),
                            source: o.source,
                            destination: o.destination,
                            bytes: o.bytes,
                            start: o.start,
                            end: e.at,
                            start_latency_ms: o.migrating.map(|m| m.0.saturating_sub(o.start.0)),
                            finish_ms: None,
                            dirty_rate: None,
                            concurrency: 1.0,
                        });
                    }
                }
                _ => {}
            },
            EventKind::AttemptFailed { vm, .. } => {
                if let Some(o) = open.remove(vm) {
                    intervals.push((o.start, e.at, o.source, o.destination));
                }
            }
            EventKind::Moved { vm, .. } => {
                if let Some(&i) = ended_at.get(vm) {
                    done[i].finish_ms = Some(e.at.0.saturating_sub(done[i].end.0));
                }
            }
            _ => {}
        }
    }
    // Attempts still open at the end of the record (a stopped or crashed run) held their hosts.
    for o in open.into_values() {
        intervals.push((o.start, last_at, o.source, o.destination));
    }
    // Dirty rates reported while each migration ran.
    let mut dirty: BTreeMap<VmId, u64> = BTreeMap::new();
    for i in inputs {
        if let Input::MigrationStatus {
            vm,
            result: Ok(MigrationStatus::Running(p)),
            ..
        } = i
            && let Some(d) = p.dirty_rate
        {
            let x = dirty.entry(vm.clone()).or_default();
            *x = (*x).max(d);
        }
    }
    for s in &mut done {
        s.dirty_rate = dirty.get(&s.vm).copied();
        s.concurrency = concurrency(s, &intervals);
    }
    (done, first_attempt.map(|t| t.0))
}

/// Time-weighted number of intervals sharing a host with `s` over its own interval.
fn concurrency(s: &Sample, intervals: &[(Time, Time, HostId, HostId)]) -> f64 {
    let span = s.duration_ms();
    if span == 0 {
        return 1.0;
    }
    let hosts: BTreeSet<&HostId> = [&s.source, &s.destination].into_iter().collect();
    let mut overlap = 0u64;
    for (a, b, src, dst) in intervals {
        if !hosts.contains(src) && !hosts.contains(dst) {
            continue;
        }
        let from = a.0.max(s.start.0);
        let to = b.0.min(s.end.0);
        overlap += to.saturating_sub(from);
    }
    // Its own interval is among them.
    (overlap as f64 / span as f64).max(1.0)
}

/// How the per-migration figures of a route were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A line through migrations of different sizes that ran alone.
    Regression,
    /// Migrations of different sizes that ran alone took no longer when bigger: all of their
    /// time is fixed cost; bytes cost no measurable time on their own.
    FixedOnly,
    /// Sizes too alike: overhead = measured start latency, the rest transfer.
    StartLatency,
}

/// What one migration moved while a given number of migrations ran at once on a route's hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    /// Migrations at once (a sample's concurrency, rounded).
    pub at_once: u32,
    /// Samples at this level.
    pub samples: usize,
    /// One migration's effective rate at this level, bytes/s (the median).
    pub rate: u64,
}

/// What the journal says about one route.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteFit {
    /// Samples used in all.
    pub samples: usize,
    /// Of which ran alone.
    pub alone: usize,
    /// How overhead and stream were told apart.
    pub method: Method,
    /// Fixed time per migration, ms.
    pub overhead_ms: u64,
    /// One migration's rate, bytes/s.
    pub stream: u64,
    /// The hosts' aggregate rate when several run, bytes/s (`None`: never measured).
    pub aggregate: Option<u64>,
    /// The highest concurrency measured.
    pub max_concurrency: f64,
    /// One migration's rate per concurrency level measured, sorted: level 1 (`stream`, from
    /// the samples that ran alone, if any did) and each level of 2 or more at once.
    pub levels: Vec<Level>,
    /// Median dirty rate reported, bytes/s.
    pub dirty_rate: Option<u64>,
    /// Median time from a migration's end to `moved`, ms.
    pub finish_ms: Option<u64>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Fits one route's figures from its samples (`None`: no sample).
pub fn fit(samples: &[&Sample]) -> Option<RouteFit> {
    if samples.is_empty() {
        return None;
    }
    let mut alone: Vec<&Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.concurrency < ALONE)
        .collect();
    if alone.is_empty() {
        // None ran alone: the least crowded ones stand in for single migrations.
        let least = samples
            .iter()
            .map(|s| s.concurrency)
            .fold(f64::INFINITY, f64::min);
        alone = samples
            .iter()
            .copied()
            .filter(|s| s.concurrency < least + 0.25)
            .collect();
    }
    let xs: Vec<f64> = alone.iter().map(|s| s.bytes as f64).collect();
    let ys: Vec<f64> = alone.iter().map(|s| s.duration_ms() as f64).collect();
    let (min_b, max_b) = xs
        .iter()
        .fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let mut line = None;
    if alone.len() >= 2 && min_b > 0.0 && max_b >= SPREAD * min_b {
        let n = xs.len() as f64;
        let mx = xs.iter().sum::<f64>() / n;
        let my = ys.iter().sum::<f64>() / n;
        let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        if sxx > 0.0 {
            let slope = sxy / sxx; // ms per byte
            let intercept = my - slope * mx;
            if slope > 0.0 && intercept >= 0.0 {
                line = Some((Method::Regression, intercept, slope));
            } else if slope > 0.0 {
                // A negative fixed cost means none measurable: a line through the origin.
                let s = ys.iter().sum::<f64>() / xs.iter().sum::<f64>();
                line = Some((Method::Regression, 0.0, s));
            } else {
                // Bigger did not take longer: the time is all fixed cost.
                let o = median(ys.clone()).unwrap_or(0.0);
                line = Some((Method::FixedOnly, o, 1000.0 / UNLIMITED as f64));
            }
        }
    }
    let (method, overhead, slope) = match line {
        Some(x) => x,
        None => {
            let lat = median(
                alone
                    .iter()
                    .filter_map(|s| s.start_latency_ms.map(|x| x as f64))
                    .collect(),
            )
            .unwrap_or(0.0);
            let per_byte = median(
                alone
                    .iter()
                    .filter(|s| s.bytes > 0)
                    .map(|s| (s.duration_ms() as f64 - lat).max(MIN_TRANSFER_MS) / s.bytes as f64)
                    .collect(),
            );
            match per_byte {
                Some(p) => (Method::StartLatency, lat, p),
                // Nothing but empty moves: all of it is overhead.
                None => (
                    Method::StartLatency,
                    median(ys.clone()).unwrap_or(0.0),
                    1e-9,
                ),
            }
        }
    };
    let stream = (1000.0 / slope).clamp(1.0, UNLIMITED as f64);
    let crowded: Vec<&Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.concurrency >= ALONE && s.bytes > 0)
        .collect();
    let max_concurrency = samples.iter().map(|s| s.concurrency).fold(1.0, f64::max);
    let eff = |s: &Sample| {
        s.bytes as f64 * 1000.0 / (s.duration_ms() as f64 - overhead).max(MIN_TRANSFER_MS)
    };
    let mut by_level: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    for s in &crowded {
        // At least 2: a sample counted as crowded (>= ALONE) ran with others.
        let at = (s.concurrency.round() as u32).max(2);
        by_level.entry(at).or_default().push(eff(s));
    }
    let mut levels: Vec<Level> = Vec::new();
    let alone_count = samples.iter().filter(|s| s.concurrency < ALONE).count();
    if alone_count > 0 {
        levels.push(Level {
            at_once: 1,
            samples: alone_count,
            rate: stream.round() as u64,
        });
    }
    for (at, rates) in by_level {
        let n = rates.len();
        if let Some(r) = median(rates) {
            levels.push(Level {
                at_once: at,
                samples: n,
                rate: r.clamp(1.0, UNLIMITED as f64).round() as u64,
            });
        }
    }
    let aggregate = if crowded.is_empty() {
        None
    } else {
        let limited: Vec<f64> = crowded
            .iter()
            .filter(|s| eff(s) < 0.9 * stream)
            .map(|s| eff(s) * s.concurrency)
            .collect();
        Some(match median(limited) {
            // May be below one stream: hosts whose CPUs, not their link, slow concurrent
            // migrations down move less in all than one migration alone.
            Some(a) => a,
            None => crowded
                .iter()
                .map(|s| eff(s) * s.concurrency)
                .fold(stream, f64::max),
        })
    };
    Some(RouteFit {
        samples: samples.len(),
        alone: samples.iter().filter(|s| s.concurrency < ALONE).count(),
        method,
        overhead_ms: overhead.round() as u64,
        stream: stream.round() as u64,
        aggregate: aggregate.map(|a| a.round() as u64),
        max_concurrency,
        levels,
        dirty_rate: median(
            samples
                .iter()
                .filter_map(|s| s.dirty_rate.map(|d| d as f64))
                .collect(),
        )
        .map(|d| d.round() as u64),
        finish_ms: median(
            samples
                .iter()
                .filter_map(|s| s.finish_ms.map(|d| d as f64))
                .collect(),
        )
        .map(|d| d.round() as u64),
    })
}

impl RouteFit {
    /// The per-concurrency figures for the simulator (`RouteSpec::rate_at_concurrency`): every
    /// measured level, when at least one of them is 2 or more at once; empty otherwise (nothing
    /// measured with others: the simulator keeps the fitted stream and aggregate).
    pub fn rate_at_concurrency(&self) -> Vec<(u32, u64)> {
        if self.levels.iter().any(|l| l.at_once >= 2) {
            self.levels.iter().map(|l| (l.at_once, l.rate)).collect()
        } else {
            Vec::new()
        }
    }
}

/// What the plan learnt from the journal, per route, and where from.
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    /// Per (source, destination).
    pub routes: BTreeMap<(HostId, HostId), RouteFit>,
    /// Median time from a run's start to its first attempt, ms.
    pub startup_ms: Option<u64>,
    /// Where the history came from, or why there is none.
    pub origin: String,
}

impl Calibration {
    /// Builds the calibration from runs' samples and startup times.
    pub fn from_samples(samples: &[Sample], startups: &[u64], origin: String) -> Self {
        let mut by_route: BTreeMap<(HostId, HostId), Vec<&Sample>> = BTreeMap::new();
        for s in samples {
            by_route
                .entry((s.source.clone(), s.destination.clone()))
                .or_default()
                .push(s);
        }
        Calibration {
            routes: by_route
                .into_iter()
                .filter_map(|(k, v)| fit(&v).map(|f| (k, f)))
                .collect(),
            startup_ms: median(startups.iter().map(|&x| x as f64).collect())
                .map(|x| x.round() as u64),
            origin,
        }
    }

    /// Reads the newest `runs` runs of the journal at `path` (a missing file: no history).
    pub fn from_journal(path: &std::path::Path, runs: usize) -> anyhow::Result<Self> {
        let shown = path.display().to_string();
        if runs == 0 {
            return Ok(Calibration {
                origin: "calibration turned off (--plan-history 0)".into(),
                ..Calibration::default()
            });
        }
        if !path.exists() {
            return Ok(Calibration {
                origin: format!("no journal at `{shown}`"),
                ..Calibration::default()
            });
        }
        use anyhow::Context;
        let j = vmove_journal::Journal::open(path)
            .with_context(|| format!("cannot open the journal `{shown}` to calibrate the plan"))?;
        let summaries = j.runs().context("cannot list the journal's runs")?;
        let mut samples = Vec::new();
        let mut startups = Vec::new();
        let mut read = 0;
        for s in summaries.iter().take(runs) {
            let rec = j
                .load_run(&s.id)
                .with_context(|| format!("cannot read run {} from the journal", s.id))?;
            read += 1;
            let inputs = rec.entries.iter().filter_map(|e| match &e.body {
                vmove_journal::EntryBody::Outcome { input, .. }
                | vmove_journal::EntryBody::Input(input) => Some(input),
                _ => None,
            });
            let (mut got, startup) = samples_of_run(&s.id, rec.events(), inputs);
            if !got.is_empty() {
                startups.extend(startup);
            }
            samples.append(&mut got);
        }
        Ok(Calibration::from_samples(
            &samples,
            &startups,
            format!("the journal `{shown}` (newest {read} runs)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use vmove_sim::scenarios::evacuation;
    use vmove_sim::{HostSpec, RouteSpec, SimCluster, SimOptions, VmSpec, simulate};

    const MB: u64 = 1_000_000;

    /// A history made by the simulator with a known route (overhead, one stream's rate, the
    /// hosts' aggregate), VMs of several sizes, run with `slots` at once.
    fn history(
        run: &str,
        slots: u32,
        overhead_ms: u64,
        stream: u64,
        aggregate: u64,
    ) -> Vec<Sample> {
        let host = |id: &str| HostSpec {
            migration_limit: Some(slots),
            nic_bytes_per_sec: aggregate,
            stream_cap_bytes_per_sec: stream,
            ..HostSpec::new(id)
        };
        let vms: Vec<VmSpec> = (0..8u64)
            .map(|i| {
                VmSpec::running(format!("{run}-vm{i}"), "a", 64 * MB).with_disk((50 + 40 * i) * MB)
            })
            .collect();
        let mut c = SimCluster::new(vec![host("a"), host("b")], vms, Default::default()).unwrap();
        c.set_route(
            &HostId::new("a"),
            &HostId::new("b"),
            RouteSpec {
                overhead_ms,
                stream_cap_bytes_per_sec: None,
                aggregate_bytes_per_sec: None,
                rate_at_concurrency: vec![],
            },
        )
        .unwrap();
        let spec = evacuation(
            run,
            &[HostId::new("a")],
            &[HostId::new("b")],
            Default::default(),
        );
        let out = simulate(spec, c, SimOptions::default()).unwrap();
        let (s, startup) = samples_of_run(run, &out.events, []);
        assert_eq!(startup, Some(0), "the simulator starts at once");
        assert_eq!(s.len(), 8, "every VM moved once");
        s
    }

    fn close(got: f64, want: f64, tol: f64) -> bool {
        (got - want).abs() <= tol * want
    }

    #[test]
    fn fit_recovers_a_simulated_routes_overhead_and_rate_from_single_migrations() {
        let s = history("alone", 1, 700, 50 * MB, 80 * MB);
        assert!(s.iter().all(|x| x.concurrency < ALONE), "{s:?}");
        let f = fit(&s.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(f.method, Method::Regression);
        assert!(close(f.overhead_ms as f64, 700.0, 0.02), "{f:?}");
        assert!(close(f.stream as f64, 50e6, 0.01), "{f:?}");
        assert_eq!(f.aggregate, None, "nothing ran with others: {f:?}");
        assert_eq!(f.alone, 8);
    }

    #[test]
    fn fit_recovers_a_simulated_hosts_aggregate_from_concurrent_migrations() {
        // Alone: overhead and stream; three at once on hosts that move 80 MB/s in all.
        let mut s = history("alone", 1, 700, 50 * MB, 80 * MB);
        let crowded = history("three", 3, 700, 50 * MB, 80 * MB);
        assert!(crowded.iter().any(|x| x.concurrency > 2.0), "{crowded:?}");
        s.extend(crowded);
        let f = fit(&s.iter().collect::<Vec<_>>()).unwrap();
        assert!(close(f.overhead_ms as f64, 700.0, 0.02), "{f:?}");
        assert!(close(f.stream as f64, 50e6, 0.01), "{f:?}");
        let agg = f.aggregate.unwrap() as f64;
        assert!(close(agg, 80e6, 0.2), "aggregate {agg} vs 80 MB/s: {f:?}");
    }

    #[test]
    fn fit_of_same_sized_migrations_takes_the_overhead_from_the_start_latency() {
        let mk = |i: u64, dur: u64, lat: u64| Sample {
            run: "r".into(),
            vm: VmId::new(format!("vm{i}")),
            source: HostId::new("a"),
            destination: HostId::new("b"),
            bytes: 100 * MB,
            start: Time(i * 10_000),
            end: Time(i * 10_000 + dur),
            start_latency_ms: Some(lat),
            finish_ms: Some(150),
            dirty_rate: Some(MB),
            concurrency: 1.0,
        };
        let s = [mk(0, 2100, 100), mk(1, 2100, 100), mk(2, 2100, 100)];
        let f = fit(&s.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(f.method, Method::StartLatency);
        assert_eq!(f.overhead_ms, 100);
        assert!(close(f.stream as f64, 50e6, 0.001), "{f:?}");
        assert_eq!(f.finish_ms, Some(150));
        assert_eq!(f.dirty_rate, Some(MB));
    }

    #[test]
    fn fit_of_migrations_whose_time_does_not_grow_with_size_is_all_fixed_cost() {
        // As measured on the lab: 16, 64 and 128 MiB disks all took about 3 s.
        let mk = |i: u64, mib: u64, dur: u64| Sample {
            run: "r".into(),
            vm: VmId::new(format!("vm{i}")),
            source: HostId::new("a"),
            destination: HostId::new("b"),
            bytes: (mib + 64) << 20,
            start: Time(i * 10_000),
            end: Time(i * 10_000 + dur),
            start_latency_ms: Some(50),
            finish_ms: None,
            dirty_rate: None,
            concurrency: 1.0,
        };
        let s = [mk(0, 128, 2990), mk(1, 16, 3030), mk(2, 64, 3000)];
        let f = fit(&s.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(f.method, Method::FixedOnly, "{f:?}");
        assert_eq!(f.overhead_ms, 3000);
        assert_eq!(f.stream, UNLIMITED);
    }

    #[test]
    fn failed_attempts_are_not_samples_but_count_as_sharing_the_hosts() {
        use vmove_core::model::ErrorClass;
        let vm = |n: &str| VmId::new(n);
        let (a, b) = (HostId::new("a"), HostId::new("b"));
        let ev = |at: u64, kind: EventKind| Event { at: Time(at), kind };
        let started = |v: &str| EventKind::AttemptStarted {
            vm: vm(v),
            attempt: 1,
            source: a.clone(),
            destination: b.clone(),
            mode: MigrationMode::Live,
        };
        let to = |v: &str, p: Phase| EventKind::Transition {
            vm: vm(v),
            from: Phase::Migrating,
            to: p,
        };
        let events = vec![
            ev(0, started("x")),
            ev(0, started("y")),
            ev(
                1000,
                EventKind::AttemptFailed {
                    vm: vm("y"),
                    attempt: 1,
                    class: ErrorClass::Transient,
                    error: "boom".into(),
                    retry_at: None,
                    refused_by: None,
                    forgiven: false,
                    interrupted: false,
                },
            ),
            ev(2000, to("x", Phase::Verifying)),
        ];
        let (s, _) = samples_of_run("r", &events, []);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].vm, vm("x"));
        assert_eq!(s[0].duration_ms(), 2000);
        assert!(close(s[0].concurrency, 1.5, 1e-9), "{s:?}");
    }

    /// A run's events: each `(vm, start, end)` a live attempt a -> b of `bytes`, reaching
    /// `migrating` `latency` ms after its start and `verifying` at its end.
    fn run_events(moves: &[(&str, u64, u64)], bytes: u64, latency: u64) -> Vec<Event> {
        let (a, b) = (HostId::new("a"), HostId::new("b"));
        let mut ev: Vec<Event> = Vec::new();
        for &(v, start, end) in moves {
            let vm = VmId::new(v);
            ev.push(Event {
                at: Time(0),
                kind: EventKind::Selected {
                    vm: vm.clone(),
                    name: v.into(),
                    source: a.clone(),
                    mode: MigrationMode::Live,
                    memory_bytes: 0,
                    disk_bytes: bytes,
                },
            });
            ev.push(Event {
                at: Time(start),
                kind: EventKind::AttemptStarted {
                    vm: vm.clone(),
                    attempt: 1,
                    source: a.clone(),
                    destination: b.clone(),
                    mode: MigrationMode::Live,
                },
            });
            ev.push(Event {
                at: Time(start + latency),
                kind: EventKind::Transition {
                    vm: vm.clone(),
                    from: Phase::Confirming,
                    to: Phase::Migrating,
                },
            });
            ev.push(Event {
                at: Time(end),
                kind: EventKind::Transition {
                    vm,
                    from: Phase::Migrating,
                    to: Phase::Verifying,
                },
            });
        }
        ev.sort_by_key(|e| e.at);
        ev
    }

    #[test]
    fn per_concurrency_figures_come_from_migrations_grouped_by_how_many_ran_at_once() {
        // 150 MB each: one alone in 2.0 s, two at once in 3.0 s, four at once in 4.0 s, all
        // 0.5 s from start to migrating (sizes alike: overhead = that latency).
        let mut s = Vec::new();
        for (run, moves) in [
            ("one", vec![("p", 0, 2000), ("q", 5000, 7000)]),
            ("two", vec![("r", 0, 3000), ("s", 0, 3000)]),
            (
                "four",
                vec![
                    ("t", 0, 4000),
                    ("u", 0, 4000),
                    ("v", 0, 4000),
                    ("w", 0, 4000),
                ],
            ),
        ] {
            let (got, _) = samples_of_run(run, &run_events(&moves, 150 * MB, 500), []);
            s.extend(got);
        }
        let conc: Vec<f64> = s.iter().map(|x| x.concurrency).collect();
        assert_eq!(conc, [1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 4.0, 4.0]);
        let f = fit(&s.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(f.method, Method::StartLatency, "{f:?}");
        assert_eq!(f.overhead_ms, 500);
        // 150 MB over the time after the overhead, rounded to whole bytes/s.
        let rate = |ms: u64| (150e9 / (ms - 500) as f64).round() as u64;
        assert_eq!(
            f.levels,
            [
                Level {
                    at_once: 1,
                    samples: 2,
                    rate: rate(2000)
                },
                Level {
                    at_once: 2,
                    samples: 2,
                    rate: rate(3000)
                },
                Level {
                    at_once: 4,
                    samples: 4,
                    rate: rate(4000)
                },
            ]
        );
        assert_eq!(
            f.rate_at_concurrency(),
            [(1, 100 * MB), (2, 60 * MB), (4, 42_857_143)]
        );
    }

    #[test]
    fn partly_overlapping_migrations_count_at_their_time_weighted_concurrency() {
        // x alone for 1 s, then with y for 3 s: 1.75 at once, rounds to level 2; y ran all of
        // its 3 s with x: 2.0.
        let (s, _) = samples_of_run(
            "r",
            &run_events(&[("x", 0, 4000), ("y", 1000, 4000)], 100 * MB, 0),
            [],
        );
        assert!(close(s[0].concurrency, 1.75, 1e-9), "{s:?}");
        assert!(close(s[1].concurrency, 2.0, 1e-9), "{s:?}");
        let f = fit(&s.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(f.levels.len(), 1, "none alone: no level 1 ({f:?})");
        assert_eq!(f.levels[0].at_once, 2);
        assert_eq!(f.levels[0].samples, 2);
    }

    #[test]
    fn without_concurrent_history_the_plan_keeps_the_fitted_line() {
        let s = history("alone", 1, 700, 50 * MB, 80 * MB);
        let f = fit(&s.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(f.levels.len(), 1, "{f:?}");
        assert_eq!(f.levels[0].at_once, 1);
        assert_eq!(f.levels[0].rate, f.stream);
        assert!(f.rate_at_concurrency().is_empty(), "{f:?}");
    }

    #[test]
    fn no_history_gives_no_route() {
        let c = Calibration::from_samples(&[], &[], "nothing".into());
        assert!(c.routes.is_empty());
        assert_eq!(c.startup_ms, None);
        let c =
            Calibration::from_journal(std::path::Path::new("/nonexistent/journal.db"), 20).unwrap();
        assert!(
            c.routes.is_empty() && c.origin.contains("no journal"),
            "{c:?}"
        );
    }
}
