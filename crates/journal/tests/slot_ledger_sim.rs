//! Issue #18: three vmove "processes" evacuating overlapping simulated hosts through ONE
//! PostgreSQL journal, host limits 1 and 2: no host ever has more migrations in flight than its
//! limit. And the same three without the slot ledger: hosts go over their limits (the check can
//! fail).
//!
//! Three real `vmove` processes cannot share one simulated cluster (a sim `state_file` is
//! replayed when a process opens it and appended to by that process only: another process's
//! starts are never seen), so this runs three `Runtime`s in one test, each with its OWN journal
//! handle (its own PostgreSQL connection and lease holder) on the same database, over ONE shared
//! `SimCluster`. The cluster keeps, at every change of its migrations (a start, an end, an
//! abort), each host's peak of migrations in flight (`SimCluster::peak_concurrency`): that is
//! the sample checked against the limit.
#![cfg(all(feature = "sink", feature = "postgres"))]
#![allow(clippy::unwrap_used)]

use crate::common::pg_server;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use vmove_core::{Core, HostId, HostLimits, Phase, RunSpec, Selection, Settings, SourceSpec, Time};
use vmove_journal::sink::{JournalLedger, JournalSink};
use vmove_journal::{ConfigFormat, Holder, Journal, NewRun, Options, RunEnd};
use vmove_runtime::{Control, Drivers, Runtime, RuntimeOptions};
use vmove_sim::{Faults, HostSpec, SimClock, SimCluster, SimDriver, VmSpec};

const GIB: u64 = 1 << 30;
/// Simulated seconds per real second.
const SPEED: f64 = 50.0;

/// Host limits: 1 or 2.
const LIMITS: [(&str, u32); 4] = [("h1", 1), ("h2", 2), ("h3", 1), ("h4", 2)];

/// The evacuations: each source's VMs go to two hosts that the others use too.
const EVACUATIONS: [(&str, [&str; 2]); 3] = [
    ("h1", ["h2", "h3"]),
    ("h2", ["h3", "h4"]),
    ("h3", ["h4", "h1"]),
];
const VMS_PER_SOURCE: usize = 4;

fn cluster() -> SimCluster {
    let hosts = LIMITS
        .iter()
        .map(|(h, limit)| HostSpec {
            migration_limit: Some(*limit),
            ..HostSpec::new(*h)
        })
        .collect();
    let mut vms = Vec::new();
    for (src, _) in EVACUATIONS {
        for i in 0..VMS_PER_SOURCE {
            vms.push(
                VmSpec::running(format!("{src}-vm{i}"), src, (2 + i as u64) * GIB)
                    .with_disk(8 * GIB),
            );
        }
    }
    SimCluster::new(hosts, vms, Faults::default()).unwrap()
}

fn spec(run: &str, src: &str, dsts: [&str; 2]) -> RunSpec {
    let hosts: BTreeMap<HostId, HostLimits> = std::iter::once(src)
        .chain(dsts)
        .map(|h| (HostId::new(h), HostLimits::default()))
        .collect();
    RunSpec {
        run_id: run.into(),
        sources: vec![SourceSpec {
            host: HostId::new(src),
            // Its own VMs by name: a VM another run brings here is not this run's.
            select: Selection::Names(
                (0..VMS_PER_SOURCE)
                    .map(|i| format!("{src}-vm{i}"))
                    .collect(),
            ),
            destinations: dsts.iter().map(|d| HostId::new(*d)).collect(),
            exclude: vec![],
        }],
        hosts,
        layouts: BTreeMap::new(),
        pins: BTreeMap::new(),
        priorities: BTreeMap::new(),
        settings: Settings {
            backoff_jitter: 0.0,
            ..Settings::default()
        },
    }
}

/// Runs the three evacuations at once; returns each host's peak of migrations in flight and
/// the phases every VM ended in.
async fn three_processes(ledger: bool) -> (BTreeMap<HostId, u32>, Vec<Phase>) {
    let server = pg_server::server().expect("PostgreSQL is needed (VMOVE_REQUIRE_POSTGRES=1)");
    let url = server.fresh_database(if ledger { "ledger3" } else { "noledger3" });
    let cluster = Arc::new(Mutex::new(cluster()));
    let mut prepared = Vec::new();
    for (i, (src, dsts)) in EVACUATIONS.into_iter().enumerate() {
        // A process of its own: its own connection and lease holder.
        let holder = Holder {
            pid: 1000 + i as u32,
            host: format!("process-{i}"),
            started: None,
            boot: None,
        };
        let mut j = Journal::open_with(
            &url,
            Options {
                holder,
                ..Options::default()
            },
        )
        .unwrap();
        let run = format!("evacuate-{src}");
        let s = spec(&run, src, dsts);
        j.create_run(&NewRun {
            spec: s.clone(),
            config: String::new(),
            config_format: ConfigFormat::Toml,
            command: String::new(),
        })
        .unwrap();
        prepared.push((Arc::new(Mutex::new(j)), run, s));
    }
    // The three start together, on one clock, once every journal is open.
    let driver: Arc<dyn vmove_driver::Driver> = Arc::new(SimDriver::shared(
        Arc::clone(&cluster),
        SimClock::scaled(SPEED),
    ));
    let mut runs = Vec::new();
    for (journal, run, s) in prepared {
        let mut drivers = Drivers::new();
        for h in s.hosts.keys() {
            drivers.insert(h.clone(), Arc::clone(&driver));
        }
        let mut runtime = Runtime::new(RuntimeOptions {
            speed: SPEED,
            ..Default::default()
        });
        if ledger {
            runtime = runtime.with_ledger(Arc::new(JournalLedger::new(
                Arc::clone(&journal),
                run.clone(),
            )));
        }
        let sink = JournalSink::new(Arc::clone(&journal), run.clone());
        let core = Core::new(s, Time::ZERO).unwrap();
        runs.push(tokio::spawn(async move {
            let (_control, rx) = Control::new();
            let result = runtime.run(core, drivers, vec![Box::new(sink)], rx).await;
            let mut j = journal.lock().unwrap();
            j.finish_run(&run, RunEnd::Finished).unwrap();
            result
        }));
    }
    let mut phases = Vec::new();
    for r in runs {
        let result = r.await.unwrap();
        assert_eq!(result.error(), None);
        phases.extend(result.snapshot.vms.iter().map(|v| v.phase));
    }
    let peaks = cluster
        .lock()
        .unwrap()
        .peak_concurrency()
        .into_iter()
        .map(|(h, (_, total))| (h, total))
        .collect();
    (peaks, phases)
}

fn over_limit(peaks: &BTreeMap<HostId, u32>) -> Vec<(String, u32, u32)> {
    LIMITS
        .iter()
        .filter_map(|(h, limit)| {
            let peak = peaks[&HostId::new(*h)];
            (peak > *limit).then(|| (h.to_string(), peak, *limit))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_through_one_journal_never_go_over_a_host_limit() {
    let (peaks, phases) = three_processes(true).await;
    eprintln!("with the ledger, peaks of migrations in flight: {peaks:?}");
    assert_eq!(over_limit(&peaks), vec![], "peaks {peaks:?}");
    assert_eq!(phases.len(), EVACUATIONS.len() * VMS_PER_SOURCE);
    assert!(
        phases.iter().all(|p| *p == Phase::Moved),
        "every VM moved: {phases:?}"
    );
    // The limits were used, not just respected: some host ran at its limit.
    assert!(
        LIMITS
            .iter()
            .any(|(h, l)| *l == 2 && peaks[&HostId::new(*h)] == 2),
        "{peaks:?}"
    );
}

/// The test above can fail: the same three runs without the ledger see the same free slot in
/// the same second and go over the limits together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_ledger_three_processes_go_over_a_host_limit() {
    let (peaks, _) = three_processes(false).await;
    eprintln!("without the ledger, peaks of migrations in flight: {peaks:?}");
    assert_ne!(over_limit(&peaks), vec![], "peaks {peaks:?}");
}
