//! The crash tests' simulated cluster (tests/crash.rs, tests/standby.rs): `driver = "sim"`
//! hosts kept in a state file (a write-ahead log of the hosts' state-changing calls, so the
//! cluster outlives a killed `vmove`), the same cluster rebuilt here from that file, and the
//! checks every crash test makes of it: each VM on exactly one host, no attempt started twice,
//! nothing removed twice.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use vmove_core::{GIB, HostId, LeftoverContext, Time, VmId};
use vmove_sim::{Faults, HostSpec, SimCluster, VmSpec};

/// VMs on `a`: (name, memory GiB, disk GiB, transient start failures).
pub const VMS: [(&str, u64, u64, u32); 10] = [
    ("web-1", 2, 40, 0),
    ("web-2", 2, 40, 1),
    ("web-3", 2, 30, 0),
    ("db-1", 8, 60, 0),
    ("db-2", 8, 50, 1),
    ("app-1", 4, 30, 0),
    ("app-2", 4, 45, 0),
    ("app-3", 4, 35, 0),
    ("cache-1", 6, 20, 0),
    ("big-1", 100, 10, 0),
];

/// The `[hosts]` of the config for [`VMS`] on `a`, evacuated to `b` and `c`: sim hosts at
/// `speed`, their state in `state_file` (what [`cluster`] rebuilds).
pub fn hosts_config(speed: u64, state_file: &Path) -> String {
    let mut cfg = format!(
        "[hosts.a]\ndriver = \"sim\"\nspeed = {speed}\nstate_file = \"{s}\"\nvms = [\n",
        s = state_file.display()
    );
    for (n, m, d, f) in VMS {
        cfg.push_str(&format!(
            "  {{ name = \"{n}\", memory_gib = {m}, disk_gib = {d}, transient_failures = {f} }},\n"
        ));
    }
    cfg.push_str("]\n");
    for h in ["b", "c"] {
        cfg.push_str(&format!(
            "\n[hosts.{h}]\ndriver = \"sim\"\nspeed = {speed}\nmemory_gib = 64\nstate_file = \"{}\"\n",
            state_file.display()
        ));
    }
    cfg
}

/// The simulated cluster exactly as `drivers.rs` builds it from the sandbox's config.
pub fn cluster() -> SimCluster {
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
    let mut faults = Faults::default();
    let mut vms = Vec::new();
    for (n, m, d, f) in VMS {
        let vm = VmSpec::running(n, "a", m * GIB)
            .with_dirty_rate(0)
            .with_disk(d * GIB);
        if f > 0 {
            faults.transient_starts(&vm.id, f);
        }
        vms.push(vm);
    }
    SimCluster::new(hosts, vms, faults).unwrap()
}

/// The state file's calls, in order: (sim time, the JSON line).
pub fn calls(path: &Path) -> Vec<(u64, serde_json::Value)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| (v["at"].as_u64().unwrap(), v))
        .collect()
}

/// Replays the state file onto a fresh cluster, to where the last call left it, then runs it on
/// until nothing more can happen (migrations still running end).
pub fn replay(path: &Path) -> SimCluster {
    replay_onto(cluster(), path)
}

/// [`replay`] onto a test's own fresh cluster (a test whose hosts and VMs are not [`cluster`]'s).
pub fn replay_onto(mut c: SimCluster, path: &Path) -> SimCluster {
    for (at, v) in calls(path) {
        c.advance_to(Time(at));
        let req = serde_json::from_value(v["req"].clone()).unwrap();
        let _ = match v["call"].as_str().unwrap() {
            "start" => c.start_migration(&req).map(|_| ()),
            "abort" => {
                c.abort_migration(&req, &serde_json::from_value(v["handle"].clone()).unwrap())
            }
            "converge" => c
                .converge(
                    &req,
                    &serde_json::from_value(v["handle"].clone()).unwrap(),
                    serde_json::from_value(v["aid"].clone()).unwrap(),
                )
                .map(|_| ()),
            "remove" => c.remove_leftover(
                &req,
                &serde_json::from_value(v["leftover"].clone()).unwrap(),
                serde_json::from_value::<LeftoverContext>(v["context"].clone()).unwrap(),
            ),
            other => panic!("unknown call {other}"),
        };
    }
    while let Some(t) = c.next_event_time() {
        c.advance_to(t);
    }
    c
}

/// A small deterministic generator (the kill times are seeded).
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

pub fn wait_for(mut f: impl FnMut() -> bool, within: Duration, what: &str) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The hosts after a run, checked against its report (`vmove report --report FILE.json`): no
/// attempt started twice, nothing removed twice, every VM defined on exactly one host, a moved
/// VM on its destination (`b` or `c`) with its files there only, a VM not moved still on a
/// host and ended with a reason. Returns the replayed cluster.
pub fn assert_hosts_agree(state: &Path, report: &serde_json::Value) -> SimCluster {
    let vms = report["vms"].as_array().unwrap();
    let c = replay(state);
    let mut starts: BTreeMap<(String, u64), u32> = BTreeMap::new();
    let mut removals: BTreeMap<(String, String), u32> = BTreeMap::new();
    for (_, v) in calls(state) {
        match v["call"].as_str().unwrap() {
            "start" => {
                *starts
                    .entry((
                        v["req"]["vm"].as_str().unwrap().to_owned(),
                        v["req"]["attempt"].as_u64().unwrap(),
                    ))
                    .or_default() += 1
            }
            "remove" => {
                *removals
                    .entry((
                        v["leftover"]["host"].as_str().unwrap().to_owned(),
                        v["leftover"]["what"].to_string(),
                    ))
                    .or_default() += 1
            }
            _ => {}
        }
    }
    for (k, n) in &starts {
        assert_eq!(*n, 1, "attempt {k:?} started {n} times");
    }
    for (k, n) in &removals {
        assert_eq!(*n, 1, "{k:?} removed {n} times");
    }
    assert!(starts.len() >= VMS.len() - 1, "starts: {starts:?}");
    for row in vms {
        let name = row["name"].as_str().unwrap();
        let id = VmId::new(row["id"].as_str().unwrap());
        let outcome = row["outcome"].as_str().unwrap();
        let host = c.vm_host(&id).cloned();
        let files: Vec<HostId> = c
            .host_ids()
            .into_iter()
            .filter(|h| c.files_on(h).iter().any(|f| f.1.as_ref() == Some(&id)))
            .collect();
        match outcome {
            "moved" => {
                let dest = row["destination"].as_str().unwrap();
                assert!(["b", "c"].contains(&dest), "{name} moved to {dest}");
                assert_eq!(
                    host,
                    Some(HostId::new(dest)),
                    "{name}: journal and hosts agree"
                );
                assert_eq!(
                    files,
                    vec![HostId::new(dest)],
                    "{name}: files on its host only"
                );
            }
            "unmigratable" | "cancelled" => {
                assert!(
                    row["reason"].as_str().is_some_and(|r| !r.is_empty()),
                    "{name} {outcome} without a reason"
                );
                assert!(host.is_some(), "{name} is on no host");
            }
            other => panic!("{name} ended {other}"),
        }
        // Exactly one host defines and runs it.
        let defined: Vec<HostId> = c
            .host_ids()
            .into_iter()
            .filter(|h| c.list_vms(h).unwrap().iter().any(|v| v.id == id))
            .collect();
        assert_eq!(defined.len(), 1, "{name} defined on {defined:?}");
    }
    c
}

/// Every VM of the replayed cluster is defined on exactly one host.
pub fn assert_one_host_each(c: &SimCluster) {
    for (n, ..) in VMS {
        let id = VmSpec::running(n, "a", 0).id;
        let defined: Vec<HostId> = c
            .host_ids()
            .into_iter()
            .filter(|h| c.list_vms(h).unwrap().iter().any(|v| v.id == id))
            .collect();
        assert_eq!(defined.len(), 1, "{n} defined on {defined:?}");
    }
}
