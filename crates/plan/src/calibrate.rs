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
use vmove_journal::{EntryBody, RunRecord};

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

/// [`samples_of_run`] of a journaled run: its events and its answers.
pub fn samples_of_record(rec: &RunRecord) -> (Vec<Sample>, Option<u64>) {
    let inputs = rec.entries.iter().filter_map(|e| match &e.body {
        EntryBody::Outcome { input, .. } | EntryBody::Input(input) => Some(input),
        _ => None,
    });
    samples_of_run(&rec.summary.id, rec.events(), inputs)
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

    /// Fits the routes of the journal's runs (newest first), handed in as values; `origin`
    /// says where they came from.
    pub fn from_runs<'a>(
        runs: impl IntoIterator<Item = &'a RunRecord>,
        origin: impl FnOnce(usize) -> String,
    ) -> Self {
        let mut samples = Vec::new();
        let mut startups = Vec::new();
        let mut read = 0;
        for rec in runs {
            read += 1;
            let (mut got, startup) = samples_of_record(rec);
            if !got.is_empty() {
                startups.extend(startup);
            }
            samples.append(&mut got);
        }
        Calibration::from_samples(&samples, &startups, origin(read))
    }
}

#[cfg(test)]
#[path = "calibrate_tests.rs"]
mod tests;
