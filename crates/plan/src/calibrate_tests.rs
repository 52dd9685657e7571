//! The calibration's tests: histories made by the simulator with known routes.

#![allow(clippy::unwrap_used)]
use super::*;
use vmove_sim::scenarios::evacuation;
use vmove_sim::{HostSpec, RouteSpec, SimCluster, SimOptions, VmSpec, simulate};

const MB: u64 = 1_000_000;

/// A history made by the simulator with a known route (overhead, one stream's rate, the
/// hosts' aggregate), VMs of several sizes, run with `slots` at once.
fn history(run: &str, slots: u32, overhead_ms: u64, stream: u64, aggregate: u64) -> Vec<Sample> {
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
}
