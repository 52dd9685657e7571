//! Issue #18: a run survives its PostgreSQL journal going away for 30 s. The real `vmove`
//! binary evacuates a sim host (`state_file`: the simulated hosts' state-changing calls in a
//! log the test reads and replays) with `--journal postgresql://...` on the journal's
//! throw-away server; once two migrations run the server is stopped (`pg_ctl stop`), kept
//! down for 30 real seconds (the migrations end meanwhile) and started again.
//!
//! The run must finish (exit 0) with every VM moved once, on one host; the journal's record
//! complete (each VM verified and its source cleaned up, the run `finished`); no start and no
//! removal while the server was down; every removal after its VM's proof was journaled; and
//! the person told on stderr when the journal was lost and when it was back.
//!
//! Its own test binary: it stops the process's throw-away server.
#![allow(clippy::unwrap_used)]

use crate::common::sim_state::{replay_onto, wait_for};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vmove_core::event::EventKind;
use vmove_core::{GIB, HostId, Input, Time, VmId};
use vmove_journal::{EntryBody, Journal, RunState, pg_server};
use vmove_sim::{Faults, HostSpec, SimCluster, VmSpec};

/// VMs on `a`: (name, memory GiB, disk GiB). Two move at a time (the default host limit), each
/// for about 60 simulated seconds.
const VMS: [(&str, u64, u64); 6] = [
    ("web-1", 2, 30),
    ("web-2", 2, 30),
    ("db-1", 4, 30),
    ("db-2", 4, 30),
    ("app-1", 2, 30),
    ("app-2", 2, 30),
];

/// Simulated seconds per real second.
const SPEED: u64 = 10;

/// How long the database is away (real time).
const OUTAGE: Duration = Duration::from_secs(30);

struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        let dir = std::env::temp_dir().join(format!("vmove-outage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        let mut cfg = format!(
            "[hosts.a]\ndriver = \"sim\"\nspeed = {SPEED}\nstate_file = \"{s}\"\nvms = [\n",
            s = dir.join("sim.state").display()
        );
        for (n, m, d) in VMS {
            cfg.push_str(&format!(
                "  {{ name = \"{n}\", memory_gib = {m}, disk_gib = {d} }},\n"
            ));
        }
        cfg.push_str("]\n");
        for h in ["b", "c"] {
            cfg.push_str(&format!(
                "\n[hosts.{h}]\ndriver = \"sim\"\nspeed = {SPEED}\nmemory_gib = 64\nstate_file = \"{}\"\n",
                dir.join("sim.state").display()
            ));
        }
        std::fs::write(dir.join("vmove.toml"), cfg).unwrap();
        Sandbox { dir }
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.join(rel)).unwrap_or_default()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The simulated cluster exactly as the CLI builds it from the sandbox's config.
fn cluster() -> SimCluster {
    let mut hosts = Vec::new();
    for (h, mem) in [("a", 512), ("b", 64), ("c", 64)] {
        let mut s = HostSpec::new(h);
        s.migration_limit = None;
        s.memory_bytes = mem * GIB;
        s.disk_bytes = 16 * 1024 * GIB;
        s.nic_bytes_per_sec = 1_250_000_000;
        s.stream_cap_bytes_per_sec = 500_000_000;
        hosts.push(s);
    }
    let vms = VMS
        .iter()
        .map(|(n, m, d)| {
            VmSpec::running(*n, "a", m * GIB)
                .with_dirty_rate(0)
                .with_disk(d * GIB)
        })
        .collect();
    SimCluster::new(hosts, vms, Faults::default()).unwrap()
}

/// The state file's calls, in order (the JSON lines after its header).
fn calls(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect()
}

fn count(text: &str, call: &str) -> usize {
    calls(text)
        .iter()
        .filter(|v| v["call"].as_str() == Some(call))
        .count()
}

#[test]
fn a_run_outlives_its_postgresql_journal_going_away_for_30_s() {
    let Some(server) = pg_server::outage_server() else {
        return;
    };
    let url = server.fresh_database("outage_run");
    let sb = Sandbox::new("pg");
    let out = std::fs::File::create(sb.dir.join("run.out")).unwrap();
    let err = std::fs::File::create(sb.dir.join("run.err")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmove"));
    cmd.args(["evacuate", "a", "--to", "b,c", "--plain", "--journal", &url])
        .current_dir(&sb.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    for (k, _) in std::env::vars() {
        if k.starts_with("VMOVE_") || k.starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", sb.dir.join("home"));
    let mut child = cmd.spawn().unwrap();

    // Two migrations run (their starts are in the hosts' log): the database goes away.
    wait_for(
        || count(&sb.read("sim.state"), "start") >= 2,
        Duration::from_secs(60),
        "two starts",
    );
    server.stop();
    let at_stop = sb.read("sim.state");
    let t_stop = Instant::now();
    std::thread::sleep(OUTAGE);
    let at_restart = sb.read("sim.state");
    server.restart();
    let outage = t_stop.elapsed();

    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(180) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "the run did not end within 180 s after the database came back\n{}",
                sb.read("run.err")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = sb.read("run.err");
    assert_eq!(
        status.code(),
        Some(0),
        "the run finishes\nstdout:\n{}\nstderr:\n{stderr}",
        sb.read("run.out")
    );
    assert!(outage >= OUTAGE);

    // Nothing changed on the hosts while the database was down: the log only grew, and what it
    // grew by (nothing, or reads the log does not hold) holds no start and no removal.
    assert!(at_restart.starts_with(&at_stop));
    let during = &at_restart[at_stop.len()..];
    assert_eq!(count(&format!("header\n{during}"), "start"), 0, "{during}");
    assert_eq!(count(&format!("header\n{during}"), "remove"), 0, "{during}");
    // The person was told when the journal was lost and when it was back.
    assert!(
        stderr.contains("the journal cannot be written") && stderr.contains("written again"),
        "{stderr}"
    );

    // Every VM moved once, on one host, its source cleaned up.
    let log = sb.read("sim.state");
    let mut starts: BTreeMap<String, usize> = BTreeMap::new();
    for v in calls(&log) {
        if v["call"].as_str() == Some("start") {
            *starts
                .entry(v["req"]["vm_name"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    let c = replay_onto(cluster(), &sb.dir.join("sim.state"));
    let id_of = |name: &str| -> VmId {
        c.vm_specs()
            .find(|v| v.name == name)
            .map(|v| v.id.clone())
            .unwrap()
    };
    for (name, _, _) in VMS {
        assert_eq!(
            starts.get(name),
            Some(&1),
            "{name} started once: {starts:?}"
        );
        let id = id_of(name);
        let host = c
            .vm_host(&id)
            .unwrap_or_else(|| panic!("{name} is nowhere"));
        assert!(
            [HostId::new("b"), HostId::new("c")].contains(host),
            "{name} on {host}"
        );
        assert!(
            !c.files_on(&HostId::new("a"))
                .iter()
                .any(|(_, owner, _, _)| owner.as_ref() == Some(&id)),
            "{name} left files on its source"
        );
    }

    // The journal's record is complete.
    let j = Journal::open(&url).unwrap();
    let runs = j.runs().unwrap();
    assert_eq!(runs.len(), 1);
    let rec = j.load_run(&runs[0].id).unwrap();
    assert_eq!(rec.summary.state, RunState::Finished, "{:?}", rec.summary);
    assert!(
        rec.vms
            .iter()
            .all(|v| v.phase == vmove_core::Phase::Moved && v.attempt == 1),
        "{:?}",
        rec.vms
    );
    for v in &rec.vms {
        let verified = rec
            .entries
            .iter()
            .find(|e| {
                matches!(&e.body, EntryBody::Event(ev)
                    if matches!(&ev.kind, EventKind::Verified { vm, .. } if *vm == v.vm))
            })
            .unwrap_or_else(|| panic!("{}: no verified event", v.name))
            .seq;
        assert!(
            rec.entries
                .iter()
                .any(|e| matches!(&e.body, EntryBody::Event(ev)
                if matches!(&ev.kind, EventKind::LeftoverRemoved { vm, .. } if *vm == v.vm))),
            "{}: no removal event",
            v.name
        );
        // Every removal's intent comes after the proof (and the runtime carries out nothing
        // before its intent is written).
        for e in &rec.entries {
            if let EntryBody::Intent(vmove_core::Command::RemoveLeftover { request, .. }) = &e.body
                && request.vm == v.vm
            {
                assert!(e.seq > verified, "{}: removal before its proof", v.name);
            }
        }
    }
    // The two migrations running at the stop ended and were proven during the outage (watched
    // to their end, not given up): the next start came long after their proofs (without the
    // outage, a slot freed is taken at once).
    let first_two: Vec<VmId> = calls(&at_stop)
        .iter()
        .filter(|v| v["call"].as_str() == Some("start"))
        .map(|v| id_of(v["req"]["vm_name"].as_str().unwrap()))
        .collect();
    assert_eq!(first_two.len(), 2, "{at_stop}");
    let event_at = |f: &dyn Fn(&EventKind) -> bool| -> Vec<Time> {
        rec.entries
            .iter()
            .filter_map(|e| match &e.body {
                EntryBody::Event(ev) if f(&ev.kind) => Some(ev.at),
                _ => None,
            })
            .collect()
    };
    let proofs =
        event_at(&|k| matches!(k, EventKind::Verified { vm, .. } if first_two.contains(vm)));
    // A start is known to have reached the hosts when its answer is fed to the core: the
    // answer's run time. (Not the `attempt_started` event: the core may decide a start in the
    // step where the outage is first seen; that start is held, not carried out, and its event
    // keeps the time of the decision. The hosts' log above shows no start during the outage.)
    let later_starts: Vec<Time> = rec
        .entries
        .iter()
        .filter_map(|e| match &e.body {
            EntryBody::Outcome {
                input: Input::MigrationStarted { vm, .. },
                ..
            } if !first_two.contains(vm) => Some(e.at),
            _ => None,
        })
        .collect();
    let last_proof = *proofs.iter().max().unwrap();
    let next_start = *later_starts.iter().min().unwrap();
    // 30 s of outage are 300 s of run time at this speed; at least a third of it.
    assert!(
        next_start.0 >= last_proof.0 + 100_000,
        "proofs at {proofs:?}, next start at {next_start}"
    );
    // Every removal the hosts saw has its intent in the journal.
    for v in calls(&log) {
        if v["call"].as_str() != Some("remove") {
            continue;
        }
        let name = v["req"]["vm_name"].as_str().unwrap();
        assert!(
            rec.entries.iter().any(|e| matches!(&e.body,
                EntryBody::Intent(vmove_core::Command::RemoveLeftover { request, .. })
                    if &*request.vm_name == name)),
            "{name}: a removal without its intent"
        );
    }
}
