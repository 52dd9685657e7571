//! 10,000 VMs across 500 hosts: half the hosts evacuated to the other half.
//!
//! About a minute in a debug build on a loaded 2-core machine (65 s measured), about 9 s in
//! release (`cargo test --release -p vmove-sim --test scale`). It runs in both: building the
//! workspace again in release for CI would cost more than the minute.

use std::time::Instant;
use vmove_core::Phase;
use vmove_sim::scenarios;
use vmove_sim::{SimOptions, simulate};

#[test]
fn evacuates_10_000_vms_across_500_hosts() {
    let sc = scenarios::large(10_000, 500);
    let lb = scenarios::lower_bound(&sc.cluster, &sc.spec);
    let limits: Vec<_> = sc.cluster.host_ids();
    let wall = Instant::now();
    let out = simulate(
        sc.spec,
        sc.cluster,
        SimOptions {
            record_events: false,
            ..SimOptions::default()
        },
    )
    .expect("the evacuation finishes");
    let wall = wall.elapsed();
    let (moved, unmigratable, cancelled) = out.snapshot.counts();
    eprintln!(
        "10,000 VMs / 500 hosts: makespan {} (lower bound {lb}), {} steps, {} events, wall {wall:?}",
        out.makespan, out.steps, out.event_count
    );
    assert_eq!(out.snapshot.vms.len(), 10_000);
    assert_eq!((moved, unmigratable, cancelled), (10_000, 0, 0));
    for v in &out.snapshot.vms {
        assert_eq!(v.phase, Phase::Moved);
        assert_eq!(
            out.cluster.vm_host(&v.id),
            v.destination.as_ref(),
            "{} is not where the core says",
            v.name
        );
    }
    for h in &limits {
        let (ours, _) = out.peak_concurrency[h];
        assert!(
            ours <= 2,
            "{h} peaked at {ours} migrations, over its limit of 2"
        );
    }
    assert!(
        out.makespan >= lb,
        "makespan {} below the lower bound {lb}",
        out.makespan
    );
}
