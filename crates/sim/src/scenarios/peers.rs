//! vmove against its peers' policies (`SchedulerPolicy::KubeVirt`, `Nova`, `Proxmox`,
//! `VSphere`, `AllAtOnce`, `Seed`; rules and sources in `vmove_core`'s `engine/peers.rs` and
//! docs/BENCHMARKS.md): the workloads that show where they differ, each peer at its own
//! defaults and at vmove's limits, and one row of figures per run. `vmove-bench` prints the
//! table; `tests/peers.rs` checks each policy's defining rule on these runs.

use super::{Scenario, evacuation, lower_bound};
use crate::cluster::{DiskSpec, Faults, GIB, HostSpec, MIB, MidFault, SimCluster, VmSpec, Window};
use crate::{SimOptions, simulate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::time::Duration;
use vmove_core::EventKind;
use vmove_core::model::{ErrorClass, HostId};
use vmove_core::spec::{SchedulerPolicy, Settings, WatchdogAction, dur};
use vmove_core::time::Time;

/// The run's default host limit when a peer runs at its own defaults: high enough never to
/// bind, so that only the peer's own limits apply (the simulated hosts report no limit, as
/// libvirt does; the simulated NICs still share their bandwidth among every migration).
pub const UNBOUNDED_LIMIT: u32 = 10_000;

/// vmove's own default per-host limit for hosts that report none (`Settings::default_host_limit`).
pub const VMOVE_DEFAULT_LIMIT: u32 = 2;

/// A workload of the peers' table.
#[derive(Clone, Debug)]
pub struct PeerWorkload {
    /// Its name in the table.
    pub name: &'static str,
    /// Seed of its sizes and faults.
    pub seed: u64,
    pub sources: usize,
    pub destinations: usize,
    pub vms_per_source: usize,
    /// One VM in ten has a five times larger disk.
    pub heavy_tail: bool,
    /// Share of VMs that dirty memory at 100-200 MiB/s (the rest 0-20 MiB/s): they converge
    /// alone at 250 MB/s, slowly when a few share a link, never when many do.
    pub hot: f64,
    /// Transient start failures (one VM in ten), transient failures part-way (one in twenty)
    /// and backups that begin mid-run (one in ten).
    pub faults: bool,
}

/// The workloads of the table: one host into one, with and without a heavy tail; many into
/// few; hot VMs sharing links; transient failures and backups mid-run.
pub const PEER_WORKLOADS: &[PeerWorkload] = &[
    PeerWorkload {
        name: "1 -> 1, 40 VMs",
        seed: 21,
        sources: 1,
        destinations: 1,
        vms_per_source: 40,
        heavy_tail: false,
        hot: 0.0,
        faults: false,
    },
    PeerWorkload {
        name: "1 -> 1, 40 VMs, heavy tail",
        seed: 22,
        sources: 1,
        destinations: 1,
        vms_per_source: 40,
        heavy_tail: true,
        hot: 0.0,
        faults: false,
    },
    PeerWorkload {
        name: "4 -> 2, 120 VMs, heavy tail",
        seed: 23,
        sources: 4,
        destinations: 2,
        vms_per_source: 30,
        heavy_tail: true,
        hot: 0.0,
        faults: false,
    },
    PeerWorkload {
        name: "1 -> 2, 40 VMs, 30 % hot",
        seed: 24,
        sources: 1,
        destinations: 2,
        vms_per_source: 40,
        heavy_tail: false,
        hot: 0.3,
        faults: false,
    },
    PeerWorkload {
        name: "2 -> 2, 60 VMs, failures and backups",
        seed: 25,
        sources: 2,
        destinations: 2,
        vms_per_source: 30,
        heavy_tail: false,
        hot: 0.0,
        faults: true,
    },
];

/// A host of the peers' workloads: 10 GbE (a 1.25 GB/s NIC shared by every migration touching
/// it, 250 MB/s per migration), no migration limit of its own (vmove's default applies), 4 TiB
/// of memory and 256 TiB of disk.
pub fn ten_gbe_host(id: &HostId) -> HostSpec {
    HostSpec {
        migration_limit: None,
        memory_bytes: 4096 * GIB,
        disk_bytes: 256 * 1024 * GIB,
        nic_bytes_per_sec: 1_250_000_000,
        stream_cap_bytes_per_sec: 250_000_000,
        ..HostSpec::new(id.as_str())
    }
}

/// The cluster and run of a workload, with vmove's default settings: hosts on 10 GbE
/// (1.25 GB/s NICs shared by every migration touching the host, 250 MB/s per migration) that
/// report no migration limit (vmove's default of 2 applies), VMs of 2-32 GiB memory and
/// 10-200 GiB disk.
pub fn peer_workload(w: &PeerWorkload) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(w.seed);
    let src: Vec<HostId> = (0..w.sources.max(1))
        .map(|i| HostId::new(format!("src-{i:02}")))
        .collect();
    let dst: Vec<HostId> = (0..w.destinations.max(1))
        .map(|i| HostId::new(format!("dst-{i:02}")))
        .collect();
    let hosts: Vec<HostSpec> = src.iter().chain(&dst).map(ten_gbe_host).collect();
    let mut vms = Vec::new();
    let mut faults = Faults::default();
    for s in &src {
        for i in 0..w.vms_per_source {
            let big = if w.heavy_tail && rng.random_bool(0.1) {
                5
            } else {
                1
            };
            let dirty = if w.hot > 0.0 && rng.random_bool(w.hot) {
                rng.random_range(100..=200) * MIB
            } else {
                rng.random_range(0..=20) * MIB
            };
            let mut v = VmSpec::running(
                format!("{s}-vm{i:03}"),
                s.as_str(),
                rng.random_range(2..=32) * GIB,
            )
            .with_dirty_rate(dirty);
            let disk = big * rng.random_range(10..=200) * GIB;
            v.disks.push(DiskSpec {
                virtual_bytes: disk,
                allocated_bytes: disk,
            });
            if w.faults {
                let id = v.id.clone();
                if rng.random_bool(0.1) {
                    faults.transient_starts(&id, 1);
                }
                if rng.random_bool(0.05) {
                    faults.mid.push(MidFault {
                        vm: id.clone(),
                        nth_start: 1,
                        after_ms: rng.random_range(10..=120) * 1000,
                        fail: Some(ErrorClass::Transient),
                    });
                }
                if rng.random_bool(0.1) {
                    let from = rng.random_range(60..=1800) * 1000;
                    let len = rng.random_range(120..=1200) * 1000;
                    faults.backups.push((
                        id,
                        Window {
                            from: Time(from),
                            to: Time(from + len),
                        },
                    ));
                }
            }
            vms.push(v);
        }
    }
    // Names embed host and index: unique; hosts are defined above: this cannot fail.
    #[allow(clippy::unwrap_used)]
    let cluster = SimCluster::new(hosts, vms, faults).unwrap();
    let settings = Settings {
        seed: w.seed,
        ..Settings::default()
    };
    Scenario {
        cluster,
        spec: evacuation(&format!("peers-{}", w.seed), &src, &dst, settings),
    }
}

/// vSphere's concurrent vMotions per host for these workloads: every VM's disks move with it
/// (a vMotion without shared storage: host cost 4 of the host's 8, so 2 at once; the 10 GbE
/// network limit of 8 does not bind). vCenter Server and Host Management, "Limits on
/// Simultaneous Migrations" (docs.vmware.com, vSphere 6.5/6.7,
/// GUID-25EA5833-03B5-4EDD-A167-87578B8009B3).
pub const VSPHERE_SHARED_NOTHING: u32 = 2;

/// vSphere's network limit on 10 GbE (8 concurrent vMotions; 4 on 1 GbE), the limit that binds
/// when the VMs' disks are on shared storage. Same source as [`VSPHERE_SHARED_NOTHING`].
pub const VSPHERE_10GBE: u32 = 8;

/// Every peer at its own defaults, then vmove's seed.
pub fn peers_at_defaults() -> Vec<SchedulerPolicy> {
    vec![
        SchedulerPolicy::KUBEVIRT,
        SchedulerPolicy::NOVA,
        SchedulerPolicy::PROXMOX,
        SchedulerPolicy::VSphere {
            per_host: VSPHERE_SHARED_NOTHING,
        },
        SchedulerPolicy::VSphere {
            per_host: VSPHERE_10GBE,
        },
        SchedulerPolicy::AllAtOnce,
        SchedulerPolicy::Seed,
    ]
}

/// Every peer with its limits set to vmove's `slots` per host (KubeVirt: `slots` outbound per
/// node and no cluster-wide limit, as vmove has none by default). The run's slots apply on top,
/// so "everything at once" starts `slots` at a time here.
pub fn peers_at_limit(slots: u32) -> Vec<SchedulerPolicy> {
    vec![
        SchedulerPolicy::KubeVirt {
            per_cluster: u32::MAX,
            outbound_per_node: slots,
        },
        SchedulerPolicy::Nova { per_compute: slots },
        SchedulerPolicy::Proxmox { max_workers: slots },
        SchedulerPolicy::VSphere { per_host: slots },
        SchedulerPolicy::AllAtOnce,
    ]
}

/// Sets a peer's own defaults besides its limits: the run's limit raised out of the way
/// ([`UNBOUNDED_LIMIT`]), and what the peer does with a migration that does not converge or
/// fails (sources in docs/BENCHMARKS.md, "The peers' rules"):
/// - KubeVirt: `progressTimeout` 150 s and `completionTimeoutPerGiB` 800 s, both cancel the
///   migration; no auto-converge or post-copy (`allowAutoConverge`, `allowPostCopy` false);
/// - Nova: `live_migration_completion_timeout` 800 s per GiB (at least 2 GiB), then abort
///   (`live_migration_timeout_action`); no progress timeout; no auto-converge or post-copy
///   (`live_migration_permit_auto_converge`, `..._post_copy` false); no retry (one attempt);
/// - Proxmox: QEMU's auto-converge always on and the allowed downtime doubled while the
///   remaining memory does not shrink, no time-out: modelled as the convergence aids applied
///   after 10 s without progress;
/// - vSphere: Stun During Page Send slows a guest that dirties faster than the link: modelled
///   like Proxmox;
/// - everything at once: `virsh migrate` has no aid or time-out unless asked; the loop is given
///   vmove's stall watchdog (abort) so that a run ends, and one attempt (a loop does not retry);
/// - the seed: vmove's settings (it is the seed's own model).
pub fn at_own_defaults(settings: &mut Settings, policy: SchedulerPolicy) {
    settings.policy = policy;
    if policy == SchedulerPolicy::Seed {
        return;
    }
    settings.default_host_limit = UNBOUNDED_LIMIT;
    settings.max_parallel = None;
    match policy {
        SchedulerPolicy::KubeVirt { .. } => {
            settings.stall_timeout = Duration::from_secs(150);
            settings.stall_action = WatchdogAction::Abort;
            settings.completion_timeout_per_gib = Duration::from_secs(800);
            settings.completion_action = WatchdogAction::Abort;
        }
        SchedulerPolicy::Nova { .. } => {
            settings.stall_timeout = dur::MAX_DURATION;
            settings.completion_timeout_per_gib = Duration::from_secs(800);
            settings.completion_timeout_min = Duration::from_secs(2 * 800);
            settings.completion_action = WatchdogAction::Abort;
            settings.max_attempts = 1;
        }
        SchedulerPolicy::Proxmox { .. } | SchedulerPolicy::VSphere { .. } => {
            settings.stall_timeout = Duration::from_secs(10);
            settings.stall_action = WatchdogAction::Escalate;
            settings.completion_action = WatchdogAction::Escalate;
        }
        SchedulerPolicy::AllAtOnce => {
            settings.stall_action = WatchdogAction::Abort;
            settings.completion_action = WatchdogAction::Abort;
            settings.max_attempts = 1;
        }
        SchedulerPolicy::Vmove | SchedulerPolicy::Seed => {}
    }
}

/// One run's figures.
#[derive(Clone, Debug)]
pub struct PeerRow {
    /// The policy, as `SchedulerPolicy::label` says it.
    pub policy: String,
    /// "own defaults" or "vmove's limits (N)".
    pub limits: String,
    /// The lower bound for the run's limits (`scenarios::lower_bound`).
    pub lower_bound: Time,
    /// `None`: the run failed (the error is in `error`).
    pub makespan: Option<Time>,
    pub error: Option<String>,
    pub moved: u32,
    pub unmigratable: u32,
    /// VMs whose migration a watchdog caught at least once (no progress, or too slow): they did
    /// not converge in time.
    pub not_converged: usize,
    /// VMs that needed a convergence aid (auto-converge, post-copy) to finish.
    pub escalated: usize,
    /// Bytes every migration sent (aborted ones too).
    pub bytes_sent: u64,
    /// The most migrations of this run at once on any host, and in the cluster.
    pub peak_per_host: u32,
}

/// Runs `sc` and measures it.
pub fn measure(sc: Scenario, limits: String) -> PeerRow {
    let policy = sc.spec.settings.policy.label();
    let lb = lower_bound(&sc.cluster, &sc.spec);
    let mut row = PeerRow {
        policy,
        limits,
        lower_bound: lb,
        makespan: None,
        error: None,
        moved: 0,
        unmigratable: 0,
        not_converged: 0,
        escalated: 0,
        bytes_sent: 0,
        peak_per_host: 0,
    };
    match simulate(sc.spec, sc.cluster, SimOptions::default()) {
        Ok(out) => {
            let (moved, unmig, _) = out.snapshot.counts();
            row.moved = moved;
            row.unmigratable = unmig;
            let mut caught = BTreeSet::new();
            let mut aided = BTreeSet::new();
            for e in &out.events {
                match &e.kind {
                    EventKind::WatchdogFired { vm, .. } => {
                        caught.insert(vm.clone());
                    }
                    EventKind::Escalated { vm, .. } => {
                        aided.insert(vm.clone());
                    }
                    _ => {}
                }
            }
            row.not_converged = caught.len();
            row.escalated = aided.len();
            row.bytes_sent = out.cluster.bytes_sent();
            row.peak_per_host = out
                .peak_concurrency
                .values()
                .map(|&(ours, _)| ours)
                .max()
                .unwrap_or(0);
            row.makespan = Some(out.makespan);
        }
        Err(e) => row.error = Some(e.to_string()),
    }
    row
}

/// Every row of a workload: vmove at its default limit and at `wide` (a limit that fills the
/// NIC), each peer at its own defaults, each peer at vmove's default limit.
pub fn compare(w: &PeerWorkload, wide: u32) -> Vec<PeerRow> {
    let mut rows = Vec::new();
    rows.push(measure(
        peer_workload(w),
        format!("vmove's default ({VMOVE_DEFAULT_LIMIT})"),
    ));
    let mut sc = peer_workload(w);
    sc.spec.settings.default_host_limit = wide;
    rows.push(measure(sc, format!("{wide} per host")));
    for p in peers_at_defaults() {
        let mut sc = peer_workload(w);
        at_own_defaults(&mut sc.spec.settings, p);
        rows.push(measure(sc, "own defaults".into()));
    }
    for p in peers_at_limit(VMOVE_DEFAULT_LIMIT) {
        let mut sc = peer_workload(w);
        sc.spec.settings.policy = p;
        rows.push(measure(sc, format!("vmove's ({VMOVE_DEFAULT_LIMIT})")));
    }
    rows
}
