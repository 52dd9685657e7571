//! Ready-made clusters and runs: the demo, random ones for property tests and benchmarks, a
//! large one, one built from real hosts' figures (for `vmove plan`), and a lower bound on any
//! schedule's makespan.

mod bound;
pub mod oracle;
pub mod peers;

use crate::cluster::{
    DiskSpec, Faults, ForeignWindow, GIB, HostSpec, MIB, MidFault, RouteSpec, SimCluster, SimError,
    StartFault, VmSpec, Window,
};
pub use bound::{alone, lower_bound};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::Duration;
use vmove_core::model::{ErrorClass, Health, HostId, HostInfo, PowerState, VmId, VmInfo};
use vmove_core::spec::{HostLimits, RunSpec, Selection, Settings, SourceSpec};
use vmove_core::time::Time;

/// A cluster and the run to carry out on it.
#[derive(Debug)]
pub struct Scenario {
    pub cluster: SimCluster,
    /// The run.
    pub spec: RunSpec,
}

/// The demo: a cluster, the run, and the speed factor that makes it last about 30 s real.
#[derive(Debug)]
pub struct Demo {
    /// The cluster and run.
    pub scenario: Scenario,
    /// Simulated seconds per real second.
    pub speed: f64,
}

/// The speed factor of [`demo`]: its simulated makespan is about 13 minutes (773 s), so about
/// 31 s real.
pub const DEMO_SPEED: f64 = 25.0;

fn t(secs: u64) -> Time {
    Time(secs * 1000)
}

/// A run spec evacuating `sources` (all their VMs) to `destinations`, with default settings.
pub fn evacuation(
    run_id: &str,
    sources: &[HostId],
    destinations: &[HostId],
    settings: Settings,
) -> RunSpec {
    let mut hosts = BTreeMap::new();
    for h in sources.iter().chain(destinations) {
        hosts.insert(h.clone(), HostLimits::default());
    }
    // One list for every source: at 2,500 sources x 2,500 destinations a list each took
    // about 350 MB.
    let shared: std::sync::Arc<[HostId]> = destinations.into();
    RunSpec {
        run_id: run_id.into(),
        sources: sources
            .iter()
            .map(|s| SourceSpec {
                host: s.clone(),
                select: Selection::All,
                destinations: shared.clone(),
                exclude: vec![],
            })
            .collect(),
        hosts,
        layouts: BTreeMap::new(),
        pins: BTreeMap::new(),
        priorities: BTreeMap::new(),
        settings,
    }
}

/// The demo cluster: `hv-01` evacuated to `hv-02` and `hv-03`, with a backup that holds
/// `db-01` for two minutes, a transient start failure of `web-02` (retried), `analytics-01`
/// too big for any destination, and two powered-off VMs moved last.
pub fn demo() -> Demo {
    let hosts: Vec<HostSpec> = ["hv-01", "hv-02", "hv-03"]
        .into_iter()
        .map(|h| HostSpec {
            memory_bytes: 256 * GIB,
            nic_bytes_per_sec: 250_000_000,
            stream_cap_bytes_per_sec: 125_000_000,
            ..HostSpec::new(h)
        })
        .collect();
    let vm = |name: &str, mem_gib: u64, disk_gib: u64, dirty_mib: u64| {
        VmSpec::running(name, "hv-01", mem_gib * GIB)
            .with_disk(disk_gib * GIB)
            .with_dirty_rate(dirty_mib * MIB)
    };
    let vms = vec![
        vm("db-01", 16, 12, 20),
        vm("db-02", 16, 10, 25),
        vm("web-01", 4, 6, 5),
        vm("web-02", 4, 6, 5),
        vm("web-03", 4, 5, 5),
        vm("app-01", 8, 8, 10),
        vm("app-02", 8, 8, 10),
        vm("cache-01", 12, 2, 30),
        vm("build-01", 6, 14, 5),
        vm("analytics-01", 300, 20, 10),
        vm("old-01", 2, 6, 0).off(),
        vm("old-02", 2, 4, 0).off(),
    ];
    let id = |name: &str| VmId::new(crate::cluster::uuid_like(name));
    let mut faults = Faults::default();
    faults.backups.push((
        id("db-01"),
        Window {
            from: Time::ZERO,
            to: t(120),
        },
    ));
    faults.transient_starts(&id("web-02"), 1);
    // Every name above is unique and on a defined host: this cannot fail.
    #[allow(clippy::unwrap_used)]
    let cluster = SimCluster::new(hosts, vms, faults).unwrap();
    let settings = Settings {
        seed: 7,
        backoff_initial: Duration::from_secs(20),
        ..Settings::default()
    };
    let spec = evacuation(
        "demo",
        &[HostId::new("hv-01")],
        &[HostId::new("hv-02"), HostId::new("hv-03")],
        settings,
    );
    Demo {
        scenario: Scenario { cluster, spec },
        speed: DEMO_SPEED,
    }
}

/// Shapes a real hypervisor refuses to move, beside plain VMs (not part of the demo): on `hv-01`,
/// six plain VMs and `saved` (a managed-save image), `snapped` (2 snapshots), `iso` (a CD-ROM
/// image `hv-02` lacks: it can go to `hv-03`) and `netless` (a network neither destination has),
/// evacuated to `hv-02` and `hv-03`. The pre-flight blocks `saved`, `snapped` and `netless`
/// before anything is touched; `iso` moves to `hv-03`; the others all move.
pub fn shaped() -> Scenario {
    use crate::cluster::Shape;
    let hosts: Vec<HostSpec> = ["hv-01", "hv-02", "hv-03"]
        .into_iter()
        .map(|h| HostSpec {
            memory_bytes: 256 * GIB,
            ..HostSpec::new(h)
        })
        .collect();
    let vm = |name: &str| VmSpec::running(name, "hv-01", 4 * GIB).with_disk(6 * GIB);
    let mut vms: Vec<VmSpec> = (1..=6).map(|i| vm(&format!("plain-{i:02}"))).collect();
    vms.push(vm("saved").with_shape(Shape::ManagedSave));
    vms.push(vm("snapped").with_shape(Shape::Snapshots(2)));
    vms.push(vm("iso").with_shape(Shape::CdromMissing(HostId::new("hv-02"))));
    vms.push(
        vm("netless")
            .with_shape(Shape::NetworkMissing(HostId::new("hv-02")))
            .with_shape(Shape::NetworkMissing(HostId::new("hv-03"))),
    );
    // Every name above is unique and on a defined host: this cannot fail.
    #[allow(clippy::unwrap_used)]
    let cluster = SimCluster::new(hosts, vms, Faults::default()).unwrap();
    let spec = evacuation(
        "shaped",
        &[HostId::new("hv-01")],
        &[HostId::new("hv-02"), HostId::new("hv-03")],
        Settings {
            seed: 7,
            ..Settings::default()
        },
    );
    Scenario { cluster, spec }
}

/// Knobs of [`random`]. Probabilities are per VM (or per host for hosts down / foreign).
#[derive(Clone, Debug)]
pub struct RandomParams {
    /// Source hosts.
    pub sources: usize,
    /// Destination hosts.
    pub destinations: usize,
    /// VMs per source host.
    pub vms_per_source: usize,
    /// The limit hosts report (`None` for some hosts: the default applies).
    pub host_limit: u32,
    /// `max_parallel` of the run.
    pub max_parallel: Option<u32>,
    /// `cluster_cap` of the run.
    pub cluster_cap: Option<u32>,
    /// Chance a VM is powered off.
    pub p_off: f64,
    /// Chance a VM fails its first start(s) transiently (1 or 2 times).
    pub p_transient: f64,
    /// Chance a VM fails every start permanently.
    pub p_permanent: f64,
    /// Chance a VM's first start is indeterminate.
    pub p_indeterminate: f64,
    /// Chance a VM's first migration hangs.
    pub p_hang: f64,
    /// Chance a VM's first migration fails part-way.
    pub p_midfail: f64,
    /// Chance a VM is backed up at some point.
    pub p_backup: f64,
    /// Chance a VM has a bad status.
    pub p_bad_health: f64,
    /// Chance a VM dirties memory faster than a migration can send it.
    pub p_hot: f64,
    /// Chance a host does not answer for a while.
    pub p_host_down: f64,
    /// Chance a destination host has foreign migrations for a while.
    pub p_foreign: f64,
}

impl RandomParams {
    /// No faults at all: only sizes are random.
    pub fn clean(sources: usize, destinations: usize, vms_per_source: usize) -> RandomParams {
        RandomParams {
            sources,
            destinations,
            vms_per_source,
            host_limit: 2,
            max_parallel: None,
            cluster_cap: None,
            p_off: 0.0,
            p_transient: 0.0,
            p_permanent: 0.0,
            p_indeterminate: 0.0,
            p_hang: 0.0,
            p_midfail: 0.0,
            p_backup: 0.0,
            p_bad_health: 0.0,
            p_hot: 0.0,
            p_host_down: 0.0,
            p_foreign: 0.0,
        }
    }

    /// Some of every fault.
    pub fn faulty(sources: usize, destinations: usize, vms_per_source: usize) -> RandomParams {
        RandomParams {
            p_off: 0.15,
            p_transient: 0.1,
            p_permanent: 0.03,
            p_indeterminate: 0.05,
            p_hang: 0.04,
            p_midfail: 0.05,
            p_backup: 0.08,
            p_bad_health: 0.03,
            p_hot: 0.04,
            p_host_down: 0.15,
            p_foreign: 0.3,
            ..RandomParams::clean(sources, destinations, vms_per_source)
        }
    }
}

/// A random cluster and evacuation (sources `src-NN` to destinations `dst-NN`), fully
/// determined by `seed`.
pub fn random(seed: u64, p: &RandomParams) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let src: Vec<HostId> = (0..p.sources.max(1))
        .map(|i| HostId::new(format!("src-{i:02}")))
        .collect();
    let dst: Vec<HostId> = (0..p.destinations.max(1))
        .map(|i| HostId::new(format!("dst-{i:02}")))
        .collect();
    let mut hosts = Vec::new();
    for h in src.iter().chain(&dst) {
        let limit = if rng.random_bool(0.2) {
            None
        } else {
            Some(p.host_limit.max(1))
        };
        let nic = [125_000_000u64, 1_250_000_000, 2_500_000_000][rng.random_range(0..3)];
        hosts.push(HostSpec {
            migration_limit: limit,
            memory_bytes: rng.random_range(256..=768) * GIB,
            disk_bytes: 64 * 1024 * GIB,
            nic_bytes_per_sec: nic,
            stream_cap_bytes_per_sec: rng.random_range(100..=600) * 1_000_000,
            ..HostSpec::new(h.as_str())
        });
    }
    let mut vms = Vec::new();
    let mut faults = Faults::default();
    for s in &src {
        for i in 0..p.vms_per_source {
            let name = format!("{s}-vm{i:03}-{seed}");
            let mem = rng.random_range(1..=32) * GIB;
            let mut v = VmSpec::running(name, s.as_str(), mem);
            for _ in 0..rng.random_range(1..=3) {
                let alloc = rng.random_range(1..=120) * GIB;
                v.disks.push(DiskSpec {
                    virtual_bytes: alloc * 2,
                    allocated_bytes: alloc,
                });
            }
            v.dirty_rate = if rng.random_bool(p.p_hot) {
                1_000_000_000
            } else {
                rng.random_range(0..=80) * MIB
            };
            if rng.random_bool(p.p_off) {
                v.power = PowerState::Off;
            }
            if rng.random_bool(p.p_bad_health) {
                v.health = Health::Bad("Lost Communication".into());
            }
            let id = v.id.clone();
            if rng.random_bool(p.p_permanent) {
                faults
                    .start_script
                    .entry(id.clone())
                    .or_default()
                    .push(StartFault::Permanent);
            } else {
                if rng.random_bool(p.p_indeterminate) {
                    faults
                        .start_script
                        .entry(id.clone())
                        .or_default()
                        .push(StartFault::Indeterminate);
                }
                if rng.random_bool(p.p_transient) {
                    let n = rng.random_range(1..=2);
                    faults.transient_starts(&id, n);
                }
            }
            if rng.random_bool(p.p_hang) {
                faults.mid.push(MidFault {
                    vm: id.clone(),
                    nth_start: 1,
                    after_ms: rng.random_range(1..=60) * 1000,
                    fail: None,
                });
            } else if rng.random_bool(p.p_midfail) {
                let class = if rng.random_bool(0.8) {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Permanent
                };
                faults.mid.push(MidFault {
                    vm: id.clone(),
                    nth_start: 1,
                    after_ms: rng.random_range(1..=60) * 1000,
                    fail: Some(class),
                });
            }
            if rng.random_bool(p.p_backup) {
                let from = rng.random_range(0..=600);
                let len = rng.random_range(30..=5400);
                faults.backups.push((
                    id.clone(),
                    Window {
                        from: t(from),
                        to: t(from + len),
                    },
                ));
            }
            vms.push(v);
        }
    }
    for h in src.iter().chain(&dst) {
        if rng.random_bool(p.p_host_down) {
            let from = rng.random_range(0..=1800);
            let len = rng.random_range(10..=300);
            faults.host_down.push((
                h.clone(),
                Window {
                    from: t(from),
                    to: t(from + len),
                },
            ));
        }
    }
    for h in &dst {
        if rng.random_bool(p.p_foreign) {
            let from = rng.random_range(0..=1200);
            let len = rng.random_range(30..=900);
            faults.foreign.push(ForeignWindow {
                host: h.clone(),
                window: Window {
                    from: t(from),
                    to: t(from + len),
                },
                count: rng.random_range(1..=2),
                inbound: true,
            });
        }
    }
    // Names embed the seed and are unique; hosts are defined above: this cannot fail.
    #[allow(clippy::unwrap_used)]
    let cluster = SimCluster::new(hosts, vms, faults).unwrap();
    let settings = Settings {
        seed,
        max_parallel: p.max_parallel,
        cluster_cap: p.cluster_cap,
        ..Settings::default()
    };
    Scenario {
        cluster,
        spec: evacuation(&format!("random-{seed}"), &src, &dst, settings),
    }
}

/// The seed of [`large`]'s sizes: fixed, so that a large run is the same cluster every time
/// (the scale test and the benchmarks compare runs of it).
const LARGE_SEED: u64 = 10_000;

/// A large evacuation: `vms` VMs spread evenly over the first half of `hosts` hosts, moved to
/// the other half; no faults; sizes from a fixed seed.
///
/// The VMs are made host by host (the first `vms / sources` on the first source, and so on),
/// as an inventory read host by host is: a host's records, and the names and ids they hand
/// out, then lie side by side in memory, and a listing reads them in order. Dealt round-robin
/// (VM `n` on source `n % sources`), a listing of one host read 40 records 2,500 apart at
/// 100,000 VMs, each a cache miss: the scale table's 100,000-VM row took 4 % longer.
pub fn large(vms: usize, hosts: usize) -> Scenario {
    let half = (hosts / 2).max(1);
    let per_source = vms.div_ceil(half);
    let mut p = RandomParams::clean(half, hosts.saturating_sub(half).max(1), per_source);
    p.host_limit = 2;
    let mut rng = ChaCha8Rng::seed_from_u64(LARGE_SEED);
    let src: Vec<HostId> = (0..p.sources)
        .map(|i| HostId::new(format!("src-{i:03}")))
        .collect();
    let dst: Vec<HostId> = (0..p.destinations)
        .map(|i| HostId::new(format!("dst-{i:03}")))
        .collect();
    let host_specs: Vec<HostSpec> = src
        .iter()
        .chain(&dst)
        .map(|h| HostSpec {
            // The run's own ids (one allocation per name, shared by the spec and the cluster).
            id: h.clone(),
            memory_bytes: 1024 * GIB,
            disk_bytes: 256 * 1024 * GIB,
            ..HostSpec::new(h.as_str())
        })
        .collect();
    let mut vm_specs = Vec::with_capacity(vms);
    for n in 0..vms {
        let s = &src[(n / per_source).min(src.len() - 1)];
        let v = VmSpec::running(
            format!("vm{n:05}"),
            s.as_str(),
            rng.random_range(1..=16) * GIB,
        )
        .with_disk(rng.random_range(10..=60) * GIB)
        .with_dirty_rate(rng.random_range(0..=40) * MIB);
        vm_specs.push(v);
    }
    // Names are unique and hosts defined: this cannot fail.
    #[allow(clippy::unwrap_used)]
    let cluster = SimCluster::new(host_specs, vm_specs, Faults::default()).unwrap();
    Scenario {
        cluster,
        spec: evacuation("large", &src, &dst, Settings::default()),
    }
}

/// A benchmark workload: `sources` hosts evacuated to `destinations`, all on 10 GbE
/// (1.25 GB/s NICs, 250 MB/s per migration, so 2 slots fill 40 % of a NIC, 4 slots 80 %, 8 slots
/// all of it), VMs of 2-32 GiB memory and 10-200 GiB disk with modest dirty rates; no faults.
/// `heavy_tail`: one VM in ten is five times larger (the case largest-first ordering is for).
pub fn workload(
    seed: u64,
    sources: usize,
    destinations: usize,
    vms_per_source: usize,
    heavy_tail: bool,
) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let src: Vec<HostId> = (0..sources.max(1))
        .map(|i| HostId::new(format!("src-{i:02}")))
        .collect();
    let dst: Vec<HostId> = (0..destinations.max(1))
        .map(|i| HostId::new(format!("dst-{i:02}")))
        .collect();
    let hosts: Vec<HostSpec> = src
        .iter()
        .chain(&dst)
        .map(|h| HostSpec {
            migration_limit: Some(8),
            memory_bytes: 4096 * GIB,
            disk_bytes: 256 * 1024 * GIB,
            nic_bytes_per_sec: 1_250_000_000,
            stream_cap_bytes_per_sec: 250_000_000,
            ..HostSpec::new(h.as_str())
        })
        .collect();
    let mut vms = Vec::new();
    for s in &src {
        for i in 0..vms_per_source {
            let big = if heavy_tail && rng.random_bool(0.1) {
                5
            } else {
                1
            };
            vms.push(
                VmSpec::running(
                    format!("{s}-vm{i:03}-{seed}"),
                    s.as_str(),
                    rng.random_range(2..=32) * GIB,
                )
                .with_disk(big * rng.random_range(10..=200) * GIB)
                .with_dirty_rate(rng.random_range(0..=20) * MIB),
            );
        }
    }
    // Names embed host, index and seed: unique; hosts are defined above: this cannot fail.
    #[allow(clippy::unwrap_used)]
    let cluster = SimCluster::new(hosts, vms, Faults::default()).unwrap();
    let settings = Settings {
        seed,
        ..Settings::default()
    };
    Scenario {
        cluster,
        spec: evacuation(&format!("workload-{seed}"), &src, &dst, settings),
    }
}

/// What to assume about real hosts that their figures do not say.
#[derive(Clone, Debug)]
pub struct Assumptions {
    /// Measured (or assumed) transfer rate of one migration, bytes/s; also the NIC bandwidth
    /// unless `nic_bytes_per_sec` is set.
    pub bandwidth: u64,
    /// NIC bandwidth per host, bytes/s (`None`: `bandwidth` times the host's limit).
    pub nic_bytes_per_sec: Option<u64>,
    /// Dirty rate of running VMs, bytes/s.
    pub dirty_rate: u64,
    /// How long a migration seen in flight (someone else's) still runs.
    pub foreign_duration: Duration,
    /// How long a backup seen running still runs.
    pub backup_duration: Duration,
    /// The default host limit (for hosts that report none).
    pub default_limit: u32,
    /// Per host: its aggregate migration throughput, bytes/s, shared by the migrations touching
    /// it (measured; overrides `nic_bytes_per_sec` for that host).
    pub host_nic: BTreeMap<HostId, u64>,
    /// Per (source, destination): the route's fixed overhead and one migration's cap (measured).
    /// Routes naming a host that is not observed are ignored.
    pub routes: BTreeMap<(HostId, HostId), RouteSpec>,
}

impl Assumptions {
    /// Assumptions for a measured per-migration bandwidth.
    pub fn with_bandwidth(bandwidth: u64) -> Assumptions {
        Assumptions {
            bandwidth: bandwidth.max(1),
            nic_bytes_per_sec: None,
            dirty_rate: 10 * MIB,
            foreign_duration: Duration::from_secs(300),
            backup_duration: Duration::from_secs(900),
            default_limit: 2,
            host_nic: BTreeMap::new(),
            routes: BTreeMap::new(),
        }
    }
}

/// One real host as observed: its info and its VMs.
#[derive(Clone, Debug)]
pub struct ObservedHost {
    /// Its name.
    pub id: HostId,
    /// What it reported.
    pub info: HostInfo,
    pub vms: Vec<VmInfo>,
}

/// A cluster mirroring real hosts (for `vmove plan`: its ETA is the makespan of the plan run
/// on this cluster). Capacity is what is free plus what the listed VMs use; migrations seen in
/// flight become foreign migrations for `foreign_duration`; backups seen running last
/// `backup_duration` more. VMs listed as arriving (`MigratingIn`) are not created.
pub fn from_observed(hosts: &[ObservedHost], a: &Assumptions) -> Result<SimCluster, SimError> {
    use vmove_core::model::Activity;
    let mut specs = Vec::new();
    let mut vms = Vec::new();
    let mut faults = Faults::default();
    let foreign_end = Time::ZERO + a.foreign_duration;
    for h in hosts {
        let here: Vec<&VmInfo> = h
            .vms
            .iter()
            .filter(|v| v.activity != Activity::MigratingIn)
            .collect();
        let used_mem: u64 = here
            .iter()
            .filter(|v| v.power.is_live())
            .map(|v| v.memory_bytes)
            .sum();
        let used_disk: u64 = here.iter().map(|v| v.disk_bytes).sum();
        let limit = h.info.migration_limit.unwrap_or(a.default_limit).max(1);
        specs.push(HostSpec {
            id: h.id.clone(),
            migration_limit: h.info.migration_limit,
            memory_bytes: h.info.free_memory_bytes + used_mem,
            disk_bytes: h.info.free_disk_bytes + used_disk,
            nic_bytes_per_sec: a.host_nic.get(&h.id).copied().unwrap_or_else(|| {
                a.nic_bytes_per_sec
                    .unwrap_or(a.bandwidth.saturating_mul(u64::from(limit)))
            }),
            stream_cap_bytes_per_sec: a.bandwidth,
        });
        let moving = h.vms.iter().filter(|v| v.activity.is_migration()).count() as u32;
        let foreign = h.info.active_migrations.max(moving);
        if foreign > 0 {
            faults.foreign.push(ForeignWindow {
                host: h.id.clone(),
                window: Window {
                    from: Time::ZERO,
                    to: foreign_end,
                },
                count: foreign,
                inbound: true,
            });
        }
        for v in here {
            let mut s = VmSpec {
                id: v.id.clone(),
                name: v.name.to_string(),
                host: h.id.clone(),
                memory_bytes: v.memory_bytes,
                dirty_rate: if v.power.is_live() { a.dirty_rate } else { 0 },
                disks: vec![DiskSpec {
                    virtual_bytes: v.disk_bytes,
                    allocated_bytes: v.disk_bytes,
                }],
                power: v.power.clone(),
                health: v.health.clone(),
                shapes: vec![],
            };
            if matches!(s.health, Health::InService) {
                s.health = Health::Ok;
            }
            if v.activity == Activity::BackingUp {
                faults.backups.push((
                    v.id.clone(),
                    Window {
                        from: Time::ZERO,
                        to: Time::ZERO + a.backup_duration,
                    },
                ));
            }
            vms.push(s);
        }
    }
    let mut cluster = SimCluster::new(specs, vms, faults)?;
    for ((src, dst), route) in &a.routes {
        if cluster.host_spec(src).is_some() && cluster.host_spec(dst).is_some() {
            cluster.set_route(src, dst, route.clone())?;
        }
    }
    Ok(cluster)
}
