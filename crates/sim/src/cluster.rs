//! [`SimCluster`]: a synchronous, deterministic model of a cluster on a virtual clock.
//!
//! The cluster owns hosts, VMs, the files they keep on each host, and the migrations in flight.
//! Nothing happens unless [`SimCluster::advance_to`] moves the clock; every query and action is
//! answered at the cluster's current time ([`SimCluster::now`]). Given the same hosts, VMs,
//! faults and the same calls at the same times, it gives the same answers.
//!
//! Transfers are integer bytes at integer bytes/s over integer milliseconds; each migration's
//! rate is `min(stream cap, source NIC / n_source, destination NIC / n_destination)` where `n` is
//! every migration touching that host (ours, hung ones and foreign ones). Rates change only when
//! a migration starts or ends, or a foreign migration window opens or closes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use vmove_core::io::LeftoverContext;
use vmove_core::model::{
    ConvergenceAid, Disk, ErrorClass, Failure, Footprint, Health, HostId, HostInfo, Leftover,
    LeftoverKind, Location, MigrationHandle, MigrationMode, MigrationRequest, MigrationStatus,
    PathLayout, PowerState, Progress, Verification, VmId, VmInfo,
};
use vmove_core::time::Time;
use vmove_driver::{DriverError, DriverResult};

/// One MiB in bytes.
pub const MIB: u64 = 1 << 20;
/// One GiB in bytes.
pub const GIB: u64 = 1 << 30;

/// A host of the simulated cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    /// Its name.
    pub id: HostId,
    /// The migration limit the host reports (`None`: it reports none, like libvirt).
    pub migration_limit: Option<u32>,
    /// Memory available to VMs, bytes.
    pub memory_bytes: u64,
    /// Disk space for VM files, bytes.
    pub disk_bytes: u64,
    /// NIC bandwidth, bytes/s, shared equally by every migration touching the host.
    pub nic_bytes_per_sec: u64,
    /// The most one migration can move per second, bytes/s (one stream's limit).
    pub stream_cap_bytes_per_sec: u64,
}

impl HostSpec {
    /// A host with a 10 GbE NIC (1.25 GB/s), 500 MB/s per migration, limit 2, 512 GiB memory
    /// and 16 TiB of disk.
    pub fn new(id: impl Into<String>) -> HostSpec {
        HostSpec {
            id: HostId::new(id),
            migration_limit: Some(2),
            memory_bytes: 512 * GIB,
            disk_bytes: 16 * 1024 * GIB,
            nic_bytes_per_sec: 1_250_000_000,
            stream_cap_bytes_per_sec: 500_000_000,
        }
    }
}

/// How migrations on one route (source -> destination) behave beyond the hosts' figures
/// (set with [`SimCluster::set_route`]; `vmove plan` fits it from measured migrations).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteSpec {
    /// Fixed time every migration on this route takes besides moving bytes (setting up,
    /// switching over, noticing the end), ms. It comes first; meanwhile the migration moves no
    /// bytes and takes no share of either host's NIC. 0: none (the model as it was).
    pub overhead_ms: u64,
    /// The most one migration on this route moves per second, bytes/s (`None`: the hosts'
    /// stream caps).
    pub stream_cap_bytes_per_sec: Option<u64>,
    /// What the route's hosts move in all when several migrations move bytes there, bytes/s:
    /// while `n >= 2` migrations move bytes on its source or destination (the larger count),
    /// each one on this route gets at most `aggregate / n`. Unlike a NIC it does not cap a
    /// migration running alone, so it may be below one stream's rate (hosts whose CPUs, not
    /// their link, slow concurrent migrations down). `None`: only the NICs share.
    pub aggregate_bytes_per_sec: Option<u64>,
    /// One migration's rate measured at given concurrencies: `(n, bytes/s)` = each migration
    /// moved that much while `n` migrations moved bytes on the route's hosts (the larger count of
    /// its source and destination), sorted by `n`, no `n` twice. When not empty it replaces the
    /// stream cap and the aggregate: while `n` migrations move bytes, each one on this route
    /// gets the figure of the measured level nearest to `n` (a tie: the higher level, the
    /// slower one), so nothing is extrapolated beyond what was measured; the NICs still cap.
    pub rate_at_concurrency: Vec<(u32, u64)>,
}

impl RouteSpec {
    /// The figure of the measured level nearest to `n` (a tie: the higher level), with that
    /// level; `None` when nothing was measured per concurrency.
    pub fn rate_nearest(&self, n: u32) -> Option<(u32, u64)> {
        self.rate_at_concurrency
            .iter()
            .copied()
            .min_by_key(|&(level, _)| (level.abs_diff(n), std::cmp::Reverse(level)))
    }
}

/// One disk of a simulated VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    /// Size the guest sees, bytes.
    pub virtual_bytes: u64,
    /// Space the image takes (what a move copies), bytes.
    pub allocated_bytes: u64,
}

/// A VM of the simulated cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSpec {
    /// Its id (uuid-like).
    pub id: VmId,
    /// Its name.
    pub name: String,
    /// Where it is defined.
    pub host: HostId,
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// Guest memory dirty rate, bytes/s.
    pub dirty_rate: u64,
    /// Disks.
    pub disks: Vec<DiskSpec>,
    /// Power state.
    pub power: PowerState,
    /// Primary status.
    pub health: Health,
}

impl VmSpec {
    /// A running, healthy VM with a uuid-like id derived from its name.
    pub fn running(name: impl Into<String>, host: impl Into<String>, memory_bytes: u64) -> VmSpec {
        let name = name.into();
        VmSpec {
            id: VmId::new(uuid_like(&name)),
            name,
            host: HostId::new(host),
            memory_bytes,
            dirty_rate: 0,
            disks: vec![],
            power: PowerState::Running,
            health: Health::Ok,
        }
    }
    /// Adds a disk whose allocation equals its virtual size.
    pub fn with_disk(mut self, bytes: u64) -> VmSpec {
        self.disks.push(DiskSpec {
            virtual_bytes: bytes,
            allocated_bytes: bytes,
        });
        self
    }
    /// Sets the dirty rate.
    pub fn with_dirty_rate(mut self, bytes_per_sec: u64) -> VmSpec {
        self.dirty_rate = bytes_per_sec;
        self
    }
    /// Powers it off.
    pub fn off(mut self) -> VmSpec {
        self.power = PowerState::Off;
        self
    }
    /// Total allocated disk bytes.
    pub fn disk_bytes(&self) -> u64 {
        self.disks.iter().map(|d| d.allocated_bytes).sum()
    }
}

/// A deterministic uuid-like string (8-4-4-4-12 hex) from any text (FNV-1a, two rounds).
pub fn uuid_like(text: &str) -> String {
    let h = |seed: u64| {
        let mut x: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
        for b in text.bytes() {
            x ^= u64::from(b);
            x = x.wrapping_mul(0x0100_0000_01b3);
        }
        // A final mix so that near names give far ids.
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    };
    let (a, b) = (h(1), h(2));
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// What one call to start a migration of a VM does, when every check passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFault {
    /// Fails with a transient error; the next call goes on with the script.
    Transient,
    /// Fails with a permanent error, this call and every later one.
    Permanent,
    /// Starts the migration but reports an indeterminate error (a connection lost mid-call).
    Indeterminate,
}

/// A migration that stops progressing (or fails) some time after it started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MidFault {
    /// The VM.
    pub vm: VmId,
    /// Which of the VM's started migrations (1-based, counting migrations that did start).
    pub nth_start: u32,
    /// How long after its start.
    pub after_ms: u64,
    /// `None`: it hangs (stays running, no progress). `Some(class)`: it fails with that class.
    pub fail: Option<ErrorClass>,
}

/// A time window `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    /// Start (inclusive).
    pub from: Time,
    /// End (exclusive).
    pub to: Time,
}

impl Window {
    /// Whether `t` is inside.
    pub fn contains(&self, t: Time) -> bool {
        self.from <= t && t < self.to
    }
}

/// Migrations someone else runs on a host for a while.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignWindow {
    /// The host.
    pub host: HostId,
    /// When.
    pub window: Window,
    /// How many migrations.
    pub count: u32,
    /// Arriving (`true`, shown as `MigratingIn`) or leaving (`false`, `MigratingOut`).
    pub inbound: bool,
}

/// Every injected fault, explicit and deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Per VM, what its successive start calls do (consumed in order; `Permanent` sticks).
    pub start_script: BTreeMap<VmId, Vec<StartFault>>,
    /// Migrations that hang or fail part-way.
    pub mid: Vec<MidFault>,
    /// Hosts whose management endpoint does not answer for a while (calls fail `Transient`;
    /// VMs and migrations on them go on).
    pub host_down: Vec<(HostId, Window)>,
    /// Foreign migrations.
    pub foreign: Vec<ForeignWindow>,
    /// Backup windows per VM (activity `BackingUp`, health `InService`).
    pub backups: Vec<(VmId, Window)>,
}

impl Faults {
    /// The VM's next `n` starts fail with a transient error.
    pub fn transient_starts(&mut self, vm: &VmId, n: u32) -> &mut Self {
        let s = self.start_script.entry(vm.clone()).or_default();
        s.extend(std::iter::repeat_n(StartFault::Transient, n as usize));
        self
    }
}

/// A problem with the cluster's description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// Two hosts with one name.
    #[error("host `{0}` is defined twice")]
    DuplicateHost(HostId),
    /// Two VMs with one id.
    #[error("VM id `{0}` is used twice")]
    DuplicateVm(VmId),
    /// A VM or fault names a host that is not defined.
    #[error("`{what}` names host `{host}`, which is not defined")]
    UnknownHost {
        /// Who names it.
        what: String,
        /// The host.
        host: HostId,
    },
    /// A fault names a VM that is not defined.
    #[error("a fault names VM `{0}`, which is not defined")]
    UnknownVm(VmId),
    /// A host that cannot transfer.
    #[error("host `{0}` has a zero NIC bandwidth or stream cap")]
    NoBandwidth(HostId),
}

/// A migration that ended, reported by [`SimCluster::advance_to`] at the time it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationEnd {
    /// When it ended.
    pub at: Time,
    /// Its request (VM, attempt, hosts).
    pub request: MigrationRequest,
    /// Its handle.
    pub handle: MigrationHandle,
    /// `Completed` or `Failed`.
    pub status: MigrationStatus,
}

/// A file a host keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
struct File {
    /// The VM it belongs to; `None` for a file nobody here owns (an occupied path).
    owner: Option<usize>,
    kind: LeftoverKind,
    bytes: u64,
    /// Written completely (false for a pre-created image whose copy did not finish).
    complete: bool,
}

#[derive(Debug)]
struct Host {
    spec: HostSpec,
    /// VMs defined here, by index (ordered: deterministic listings).
    vms: BTreeSet<usize>,
    /// Our migrations touching this host.
    active: Vec<usize>,
    files: BTreeMap<String, File>,
    used_disk: u64,
    /// Memory of running VMs here plus memory reserved by live migrations arriving.
    used_memory: u64,
    down: Vec<Window>,
    foreign: Vec<ForeignWindow>,
    peak_ours: u32,
    peak_total: u32,
}

#[derive(Debug)]
struct Vm {
    spec: VmSpec,
    host: usize,
    /// Current disk paths, one per disk (on `host`).
    disk_paths: Vec<String>,
    log_path: String,
    active_mig: Option<usize>,
    starts: u32,
    script: VecDeque<StartFault>,
    backups: Vec<Window>,
    removed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The route's fixed overhead, until the given time (only when the route has one).
    Setup {
        until: Time,
    },
    Disk,
    Memory {
        round: u32,
    },
    Ended,
}

#[derive(Debug)]
struct Mig {
    req: MigrationRequest,
    handle: MigrationHandle,
    vm: usize,
    src: usize,
    dst: usize,
    stage: Stage,
    stage_total: u64,
    stage_done: u64,
    round_started: Time,
    updated: Time,
    rate: u64,
    sent: u64,
    disk_total: u64,
    mem_total: u64,
    dirty_rate: u64,
    downtime_ms: u64,
    postcopy: bool,
    hung: bool,
    hang_at: Option<Time>,
    fail_at: Option<(Time, ErrorClass)>,
    dest_disk_paths: Vec<String>,
    dest_log_path: String,
    reserved_memory: u64,
    outcome: Option<MigrationStatus>,
    epoch: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Wake {
    at: Time,
    seq: u64,
    mig: usize,
    epoch: u64,
}

/// The simulated cluster. See the module docs.
#[derive(Debug)]
pub struct SimCluster {
    now: Time,
    hosts: Vec<Host>,
    host_index: HashMap<HostId, usize>,
    vms: Vec<Vm>,
    vm_index: HashMap<VmId, usize>,
    migs: Vec<Mig>,
    handle_index: HashMap<MigrationHandle, usize>,
    wakes: BinaryHeap<Reverse<Wake>>,
    seq: u64,
    /// Times at which foreign windows open or close, with the host (sorted; cursor below).
    world: Vec<(Time, usize)>,
    world_cursor: usize,
    /// Every other time a listing changes (backups, hosts down), sorted, for `next_event_time`.
    edges: Vec<Time>,
    edge_cursor: usize,
    mid: Vec<MidFault>,
    /// Per (source, destination) index pair: the route's overhead and cap (none: defaults).
    routes: HashMap<(usize, usize), RouteSpec>,
}

/// Default allowed downtime of the final stop-and-copy, ms (QEMU's default is 300 ms).
pub const DEFAULT_DOWNTIME_MS: u64 = 300;
/// A final round never needs to be smaller than this.
const MIN_FINAL_ROUND: u64 = MIB;

fn transient(msg: String) -> DriverError {
    DriverError::transient(msg)
}

/// Where a source file lands on the destination, for a layout.
pub fn destination_path(layout: &PathLayout, source_path: &str, vm_name: &str) -> String {
    match &layout.base {
        None => source_path.to_owned(),
        Some(base) => {
            let file = source_path.rsplit('/').next().unwrap_or(source_path);
            let base = base.trim_end_matches('/');
            if layout.put_in_subfolder {
                format!("{base}/{vm_name}/{file}")
            } else {
                format!("{base}/{file}")
            }
        }
    }
}

impl SimCluster {
    /// Builds a cluster at time zero. Every VM's disk images and log are created on its host.
    pub fn new(
        hosts: Vec<HostSpec>,
        vms: Vec<VmSpec>,
        faults: Faults,
    ) -> Result<SimCluster, SimError> {
        let mut c = SimCluster {
            now: Time::ZERO,
            hosts: Vec::with_capacity(hosts.len()),
            host_index: HashMap::with_capacity(hosts.len()),
            vms: Vec::with_capacity(vms.len()),
            vm_index: HashMap::with_capacity(vms.len()),
            migs: Vec::new(),
            handle_index: HashMap::new(),
            wakes: BinaryHeap::new(),
            seq: 0,
            world: Vec::new(),
            world_cursor: 0,
            edges: Vec::new(),
            edge_cursor: 0,
            mid: Vec::new(),
            routes: HashMap::new(),
        };
        for h in hosts {
            c.add_host(h)?;
        }
        for v in vms {
            c.add_vm(v)?;
        }
        c.add_faults(faults)?;
        Ok(c)
    }

    /// Adds a host.
    pub fn add_host(&mut self, spec: HostSpec) -> Result<(), SimError> {
        if self.host_index.contains_key(&spec.id) {
            return Err(SimError::DuplicateHost(spec.id));
        }
        if spec.nic_bytes_per_sec == 0 || spec.stream_cap_bytes_per_sec == 0 {
            return Err(SimError::NoBandwidth(spec.id));
        }
        self.host_index.insert(spec.id.clone(), self.hosts.len());
        self.hosts.push(Host {
            spec,
            vms: BTreeSet::new(),
            active: Vec::new(),
            files: BTreeMap::new(),
            used_disk: 0,
            used_memory: 0,
            down: Vec::new(),
            foreign: Vec::new(),
            peak_ours: 0,
            peak_total: 0,
        });
        Ok(())
    }

    /// Adds a VM on its host, creating its disk images and log there.
    pub fn add_vm(&mut self, spec: VmSpec) -> Result<(), SimError> {
        if self
            .vm_index
            .get(&spec.id)
            .is_some_and(|&i| !self.vms[i].removed)
        {
            return Err(SimError::DuplicateVm(spec.id));
        }
        let host = self
            .host_idx(&spec.host)
            .ok_or_else(|| SimError::UnknownHost {
                what: format!("VM {}", spec.name),
                host: spec.host.clone(),
            })?;
        let idx = self.vms.len();
        let dir = format!("/vms/{}", spec.name);
        let disk_paths: Vec<String> = (0..spec.disks.len())
            .map(|i| format!("{dir}/{}-disk{i}.qcow2", spec.name))
            .collect();
        let log_path = format!("{dir}/{}.log", spec.name);
        for (p, d) in disk_paths.iter().zip(&spec.disks) {
            self.put_file(
                host,
                p.clone(),
                Some(idx),
                LeftoverKind::DiskImage,
                d.allocated_bytes,
                true,
            );
        }
        self.put_file(
            host,
            log_path.clone(),
            Some(idx),
            LeftoverKind::LogFile,
            0,
            true,
        );
        if spec.power.is_live() {
            self.hosts[host].used_memory += spec.memory_bytes;
        }
        self.hosts[host].vms.insert(idx);
        self.vm_index.insert(spec.id.clone(), idx);
        self.vms.push(Vm {
            spec,
            host,
            disk_paths,
            log_path,
            active_mig: None,
            starts: 0,
            script: VecDeque::new(),
            backups: Vec::new(),
            removed: false,
        });
        Ok(())
    }

    /// Removes a VM and every file of it on every host (test fixtures). A running migration of
    /// it is dropped.
    pub fn remove_vm(&mut self, id: &VmId) {
        let Some(&v) = self.vm_index.get(id) else {
            return;
        };
        if self.vms[v].removed {
            return;
        }
        if let Some(m) = self.vms[v].active_mig {
            self.end_migration(
                m,
                MigrationStatus::Failed(Failure::new(ErrorClass::Permanent, "the VM was deleted")),
            );
        }
        let host = self.vms[v].host;
        self.hosts[host].vms.remove(&v);
        if self.vms[v].spec.power.is_live() {
            self.hosts[host].used_memory = self.hosts[host]
                .used_memory
                .saturating_sub(self.vms[v].spec.memory_bytes);
        }
        for h in 0..self.hosts.len() {
            let paths: Vec<String> = self.hosts[h]
                .files
                .iter()
                .filter(|(_, f)| f.owner == Some(v))
                .map(|(p, _)| p.clone())
                .collect();
            for p in paths {
                self.drop_file(h, &p);
            }
        }
        self.vms[v].removed = true;
        self.vm_index.remove(id);
        self.clean_wakes();
    }

    /// Adds faults (may be called before or during a run; windows in the past have no effect).
    pub fn add_faults(&mut self, faults: Faults) -> Result<(), SimError> {
        for (vm, script) in faults.start_script {
            let v = self.vm_idx(&vm).ok_or(SimError::UnknownVm(vm))?;
            self.vms[v].script.extend(script);
        }
        for m in &faults.mid {
            self.vm_idx(&m.vm)
                .ok_or_else(|| SimError::UnknownVm(m.vm.clone()))?;
        }
        self.mid.extend(faults.mid);
        for (host, w) in faults.host_down {
            let h = self.host_idx(&host).ok_or_else(|| SimError::UnknownHost {
                what: "a host-down fault".into(),
                host: host.clone(),
            })?;
            self.hosts[h].down.push(w);
            self.edges.extend([w.from, w.to]);
        }
        for f in faults.foreign {
            let h = self
                .host_idx(&f.host)
                .ok_or_else(|| SimError::UnknownHost {
                    what: "a foreign migration window".into(),
                    host: f.host.clone(),
                })?;
            self.world.extend([(f.window.from, h), (f.window.to, h)]);
            self.hosts[h].foreign.push(f);
        }
        for (vm, w) in faults.backups {
            let v = self.vm_idx(&vm).ok_or(SimError::UnknownVm(vm))?;
            self.vms[v].backups.push(w);
            self.edges.extend([w.from, w.to]);
        }
        // Keep only what lies ahead, sorted.
        let now = self.now;
        self.world.retain(|(t, _)| *t > now);
        self.world.sort();
        self.world_cursor = 0;
        self.edges.retain(|t| *t > now);
        self.edges.sort();
        self.edges.dedup();
        self.edge_cursor = 0;
        // Foreign migrations change bandwidth shares at once.
        for h in 0..self.hosts.len() {
            self.reshare(h);
        }
        self.clean_wakes();
        Ok(())
    }

    /// Sets how migrations from `source` to `destination` behave (see [`RouteSpec`]); applies
    /// to migrations started afterwards.
    pub fn set_route(
        &mut self,
        source: &HostId,
        destination: &HostId,
        route: RouteSpec,
    ) -> Result<(), SimError> {
        let idx = |h: &HostId| {
            self.host_idx(h).ok_or_else(|| SimError::UnknownHost {
                what: "a route".into(),
                host: h.clone(),
            })
        };
        let (s, d) = (idx(source)?, idx(destination)?);
        if route.stream_cap_bytes_per_sec == Some(0)
            || route.rate_at_concurrency.iter().any(|&(_, r)| r == 0)
        {
            return Err(SimError::NoBandwidth(source.clone()));
        }
        self.routes.insert((s, d), route);
        Ok(())
    }

    /// The route's figures, if set.
    pub fn route(&self, source: &HostId, destination: &HostId) -> Option<RouteSpec> {
        let (s, d) = (self.host_idx(source)?, self.host_idx(destination)?);
        self.routes.get(&(s, d)).cloned()
    }

    /// Puts a file nobody here owns at `path` on `host` (for the "never overwrite" checks).
    pub fn occupy_path(&mut self, host: &HostId, path: &str) -> bool {
        let Some(h) = self.host_idx(host) else {
            return false;
        };
        if self.hosts[h].files.contains_key(path) {
            return false;
        }
        self.put_file(h, path.to_owned(), None, LeftoverKind::DiskImage, MIB, true);
        true
    }

    // ----- time -----

    /// The cluster's current time.
    pub fn now(&self) -> Time {
        self.now
    }

    /// When something next happens by itself (a migration stage ends, hangs or fails; a backup,
    /// host outage or foreign migration starts or ends). `None`: nothing will.
    pub fn next_event_time(&self) -> Option<Time> {
        let mig = self.wakes.peek().map(|Reverse(w)| w.at);
        let world = self.world.get(self.world_cursor).map(|(t, _)| *t);
        let edge = self.edges.get(self.edge_cursor).copied();
        [mig, world, edge].into_iter().flatten().min()
    }

    /// Moves the clock to `t` (never backwards), carrying out everything due on the way, and
    /// returns the migrations that ended, in the order they ended.
    pub fn advance_to(&mut self, t: Time) -> Vec<MigrationEnd> {
        let mut ended = Vec::new();
        if t <= self.now {
            return ended;
        }
        loop {
            let next_mig = self.wakes.peek().map(|Reverse(w)| w.at);
            let next_world = self.world.get(self.world_cursor).map(|(t, _)| *t);
            let next = match (next_mig, next_world) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(x) => x,
                    None => break,
                },
            };
            if next > t {
                break;
            }
            self.now = next;
            if next_world == Some(next) {
                let (_, h) = self.world[self.world_cursor];
                self.world_cursor += 1;
                self.reshare(h);
                self.note_peak(h);
            } else if let Some(Reverse(w)) = self.wakes.pop() {
                if self.migs[w.mig].epoch == w.epoch && self.migs[w.mig].stage != Stage::Ended {
                    if let Some(end) = self.step_migration(w.mig) {
                        ended.push(end);
                    }
                }
            }
            self.clean_wakes();
        }
        self.now = t;
        while self.edges.get(self.edge_cursor).is_some_and(|e| *e <= t) {
            self.edge_cursor += 1;
        }
        ended
    }

    // ----- introspection (ground truth, for tests and reports) -----

    /// Every host's id, in definition order.
    pub fn host_ids(&self) -> Vec<HostId> {
        self.hosts.iter().map(|h| h.spec.id.clone()).collect()
    }

    /// A host's description.
    pub fn host_spec(&self, host: &HostId) -> Option<&HostSpec> {
        self.host_idx(host).map(|h| &self.hosts[h].spec)
    }

    /// Every VM's description (its `host` field is where it was created), in creation order.
    pub fn vm_specs(&self) -> impl Iterator<Item = &VmSpec> {
        self.vms.iter().filter(|v| !v.removed).map(|v| &v.spec)
    }

    /// Where a VM is defined now.
    pub fn vm_host(&self, vm: &VmId) -> Option<&HostId> {
        self.vm_idx(vm)
            .map(|v| &self.hosts[self.vms[v].host].spec.id)
    }

    /// Whether a VM is migrating now, and to where.
    pub fn vm_migrating_to(&self, vm: &VmId) -> Option<&HostId> {
        let v = self.vm_idx(vm)?;
        self.vms[v]
            .active_mig
            .map(|m| &self.hosts[self.migs[m].dst].spec.id)
    }

    /// Our migrations touching the host now.
    pub fn active_ours(&self, host: &HostId) -> u32 {
        self.host_idx(host)
            .map_or(0, |h| self.hosts[h].active.len() as u32)
    }

    /// Foreign migrations on the host now.
    pub fn active_foreign(&self, host: &HostId) -> u32 {
        self.host_idx(host).map_or(0, |h| self.foreign_now(h))
    }

    /// The highest number of our migrations seen on each host at once, and of all migrations
    /// (foreign ones included).
    pub fn peak_concurrency(&self) -> BTreeMap<HostId, (u32, u32)> {
        self.hosts
            .iter()
            .map(|h| (h.spec.id.clone(), (h.peak_ours, h.peak_total)))
            .collect()
    }

    /// Number of migrations started so far.
    pub fn migrations_started(&self) -> usize {
        self.migs.len()
    }

    /// Whether the host's management endpoint answers now.
    pub fn host_up(&self, host: &HostId) -> bool {
        self.host_idx(host).is_some_and(|h| self.up(h))
    }

    /// Files on a host: (path, owner VM id, kind, complete).
    pub fn files_on(&self, host: &HostId) -> Vec<(String, Option<VmId>, LeftoverKind, bool)> {
        let Some(h) = self.host_idx(host) else {
            return vec![];
        };
        self.hosts[h]
            .files
            .iter()
            .map(|(p, f)| {
                (
                    p.clone(),
                    f.owner.map(|o| self.vms[o].spec.id.clone()),
                    f.kind,
                    f.complete,
                )
            })
            .collect()
    }

    /// VMs that can never move: a permanent start failure in their script, or a permanent
    /// failure part-way through a migration.
    pub fn permanent_failures(&self) -> BTreeSet<VmId> {
        let mut out: BTreeSet<VmId> = self
            .vms
            .iter()
            .filter(|v| !v.removed && v.script.contains(&StartFault::Permanent))
            .map(|v| v.spec.id.clone())
            .collect();
        out.extend(
            self.mid
                .iter()
                .filter(|m| m.fail == Some(ErrorClass::Permanent))
                .map(|m| m.vm.clone()),
        );
        out
    }

    /// If a backup holds the VM now, when the (chained) backup windows let it go.
    pub fn blocked_from_start_until(&self, vm: &VmId) -> Option<Time> {
        let v = self.vm_idx(vm)?;
        let mut windows = self.vms[v].backups.clone();
        windows.sort();
        let mut until: Option<Time> = None;
        for w in windows {
            let at = until.unwrap_or(self.now);
            if w.contains(at) {
                until = Some(w.to);
            }
        }
        until
    }

    // ----- the driver's operations, at the current time -----

    /// A host's limit, load and capacity.
    pub fn host_info(&self, host: &HostId) -> DriverResult<HostInfo> {
        let h = self.reachable(host)?;
        let hs = &self.hosts[h];
        Ok(HostInfo {
            migration_limit: hs.spec.migration_limit,
            active_migrations: hs.active.len() as u32 + self.foreign_now(h),
            free_memory_bytes: hs.spec.memory_bytes.saturating_sub(hs.used_memory),
            free_disk_bytes: hs.spec.disk_bytes.saturating_sub(hs.used_disk),
        })
    }

    /// Every VM defined on the host, VMs arriving by migration, and foreign migrations.
    pub fn list_vms(&self, host: &HostId) -> DriverResult<Vec<VmInfo>> {
        let h = self.reachable(host)?;
        let mut out: Vec<VmInfo> = self.hosts[h]
            .vms
            .iter()
            .map(|&v| self.vm_info(v, h))
            .collect();
        for &m in &self.hosts[h].active {
            if self.migs[m].dst == h {
                out.push(self.vm_info(self.migs[m].vm, h));
            }
        }
        let mut k = 0;
        for f in &self.hosts[h].foreign {
            if f.window.contains(self.now) {
                for _ in 0..f.count {
                    let name = format!("foreign-{}-{}-{k}", self.hosts[h].spec.id, f.window.from.0);
                    k += 1;
                    out.push(VmInfo {
                        id: VmId::new(uuid_like(&name)),
                        name,
                        power: PowerState::Running,
                        health: Health::Ok,
                        activity: if f.inbound {
                            vmove_core::model::Activity::MigratingIn
                        } else {
                            vmove_core::model::Activity::MigratingOut
                        },
                        memory_bytes: 0,
                        disk_bytes: 0,
                    });
                }
            }
        }
        Ok(out)
    }

    /// What the VM occupies on the host.
    pub fn footprint(&self, host: &HostId, vm: &VmId) -> DriverResult<Footprint> {
        let h = self.reachable(host)?;
        let v = self.vm_on(vm, h)?;
        let vs = &self.vms[v];
        Ok(Footprint {
            memory_bytes: vs.spec.memory_bytes,
            disks: vs
                .disk_paths
                .iter()
                .zip(&vs.spec.disks)
                .map(|(p, d)| Disk {
                    path: p.clone(),
                    format: "qcow2".into(),
                    virtual_bytes: d.virtual_bytes,
                    allocated_bytes: d.allocated_bytes,
                    backing_chain: vec![],
                })
                .collect(),
            config_paths: vec![],
        })
    }

    /// Starts one attempt. Refuses without touching anything when a check fails; then applies
    /// the VM's start script (see [`StartFault`]).
    pub fn start_migration(&mut self, req: &MigrationRequest) -> DriverResult<MigrationHandle> {
        let src = self.reachable(&req.source)?;
        let dst = self.reachable(&req.destination)?;
        if src == dst {
            return Err(DriverError::permanent(format!(
                "source and destination are the same host `{}`",
                req.source
            )));
        }
        let v = self.vm_on(&req.vm, src)?;
        let vs = &self.vms[v];
        if vs.active_mig.is_some() {
            return Err(transient(format!(
                "VM {} is already migrating",
                vs.spec.name
            )));
        }
        if self.backing_up(v) {
            return Err(transient(format!("VM {} is being backed up", vs.spec.name)));
        }
        match (req.mode, vs.spec.power.is_live()) {
            (MigrationMode::Live, false) => {
                return Err(DriverError::permanent(format!(
                    "VM {} is not running: it cannot be moved live",
                    vs.spec.name
                )));
            }
            (MigrationMode::Offline, true) => {
                return Err(DriverError::permanent(format!(
                    "VM {} is running: it cannot be moved offline",
                    vs.spec.name
                )));
            }
            _ => {}
        }
        let dest_disk_paths: Vec<String> = vs
            .disk_paths
            .iter()
            .map(|p| destination_path(&req.layout, p, &vs.spec.name))
            .collect();
        let dest_log_path = destination_path(&req.layout, &vs.log_path, &vs.spec.name);
        let mut seen = BTreeSet::new();
        for p in dest_disk_paths
            .iter()
            .chain(std::iter::once(&dest_log_path))
        {
            if self.hosts[dst].files.contains_key(p) || !seen.insert(p) {
                return Err(DriverError::destination_refused(format!(
                    "{} already holds a file at {p}",
                    req.destination
                )));
            }
        }
        let need_mem = if req.mode == MigrationMode::Live {
            vs.spec.memory_bytes
        } else {
            0
        };
        let d = &self.hosts[dst];
        let free_mem = d.spec.memory_bytes.saturating_sub(d.used_memory);
        let free_disk = d.spec.disk_bytes.saturating_sub(d.used_disk);
        if need_mem > free_mem || vs.spec.disk_bytes() > free_disk {
            return Err(DriverError::destination_refused(format!(
                "{} has no room for VM {} ({} memory and {} disk free)",
                req.destination,
                vs.spec.name,
                vmove_core::fmt_bytes(free_mem),
                vmove_core::fmt_bytes(free_disk)
            )));
        }
        let fault = self.vms[v].script.front().copied();
        match fault {
            Some(StartFault::Transient) => {
                self.vms[v].script.pop_front();
                return Err(transient(format!(
                    "{} is busy: the migration of {} was not accepted (injected)",
                    req.source, self.vms[v].spec.name
                )));
            }
            Some(StartFault::Permanent) => {
                return Err(DriverError::permanent(format!(
                    "the migration of {} is not supported by {} (injected)",
                    self.vms[v].spec.name, req.source
                )));
            }
            Some(StartFault::Indeterminate) => {
                self.vms[v].script.pop_front();
            }
            None => {}
        }
        let m = self.begin(req, v, src, dst, dest_disk_paths, dest_log_path, need_mem);
        self.clean_wakes();
        if fault == Some(StartFault::Indeterminate) {
            return Err(DriverError::indeterminate(format!(
                "the connection to {} was lost while starting the migration of {} (injected)",
                req.source, self.vms[v].spec.name
            )));
        }
        Ok(self.migs[m].handle.clone())
    }

    /// The status of a migration.
    pub fn migration_status(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<MigrationStatus> {
        self.reachable(&req.source)?;
        let m = self.mig_of(req, handle)?;
        let mg = &self.migs[m];
        if let Some(o) = &mg.outcome {
            return Ok(o.clone());
        }
        Ok(MigrationStatus::Running(self.progress(m)))
    }

    /// Aborts a migration; the VM stays on the source. Aborting an ended one is not an error.
    pub fn abort_migration(
        &mut self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<()> {
        self.reachable(&req.source)?;
        let m = self.mig_of(req, handle)?;
        if self.migs[m].outcome.is_none() {
            self.settle(m);
            self.end_migration(
                m,
                MigrationStatus::Failed(Failure::new(
                    ErrorClass::Transient,
                    "the migration was aborted",
                )),
            );
            self.clean_wakes();
        }
        Ok(())
    }

    /// Applies a convergence aid: auto-converge quarters the dirty rate, post-copy finishes the
    /// current round and completes, raising the downtime quadruples it.
    pub fn converge(
        &mut self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
        aid: ConvergenceAid,
    ) -> DriverResult<bool> {
        self.reachable(&req.source)?;
        let m = self.mig_of(req, handle)?;
        if self.migs[m].outcome.is_some() {
            return Err(DriverError::permanent("the migration is no longer running"));
        }
        if self.migs[m].req.mode == MigrationMode::Offline {
            return Ok(false);
        }
        let mg = &mut self.migs[m];
        match aid {
            ConvergenceAid::AutoConverge => mg.dirty_rate /= 4,
            ConvergenceAid::PostCopy => mg.postcopy = true,
            ConvergenceAid::RaiseDowntime => mg.downtime_ms = mg.downtime_ms.saturating_mul(4),
        }
        Ok(true)
    }

    /// Where the VM is, from the request's two hosts.
    pub fn locate(&self, req: &MigrationRequest) -> DriverResult<Location> {
        let src = self.reachable(&req.source)?;
        let dst = self.reachable(&req.destination)?;
        let Some(v) = self.vm_idx(&req.vm) else {
            return Ok(Location {
                on_source: None,
                on_destination: None,
                running_migration: None,
            });
        };
        let vs = &self.vms[v];
        let incoming = vs.active_mig.filter(|&m| self.migs[m].dst == dst);
        let on = |h: usize| {
            if vs.host == h || (h == dst && incoming.is_some()) {
                Some(self.vm_info(v, h))
            } else {
                None
            }
        };
        Ok(Location {
            on_source: on(src),
            on_destination: on(dst),
            running_migration: vs
                .active_mig
                .filter(|&m| self.migs[m].src == src && self.migs[m].dst == dst)
                .map(|m| self.migs[m].handle.clone()),
        })
    }

    /// Proof of arrival: on the destination (running for live, defined for offline), every
    /// disk complete there, and not on the source.
    pub fn verify(&self, req: &MigrationRequest) -> DriverResult<Verification> {
        let src = self.reachable(&req.source)?;
        let dst = self.reachable(&req.destination)?;
        let Some(v) = self.vm_idx(&req.vm) else {
            return Ok(Verification {
                on_destination: false,
                disks_present: false,
                stopped_on_source: true,
                detail: format!("VM {} is on no host", req.vm_name),
            });
        };
        let vs = &self.vms[v];
        let settled = vs.active_mig.is_none();
        let on_destination = settled
            && vs.host == dst
            && match req.mode {
                MigrationMode::Live => vs.spec.power.is_live(),
                MigrationMode::Offline => true,
            };
        let disks_present = on_destination
            && vs.disk_paths.iter().zip(&vs.spec.disks).all(|(p, d)| {
                self.hosts[dst].files.get(p).is_some_and(|f| {
                    f.complete && f.owner == Some(v) && f.bytes == d.allocated_bytes
                })
            });
        let stopped_on_source = vs.host != src;
        let mut missing = vec![];
        if !on_destination {
            missing.push(format!("not settled on {}", req.destination));
        }
        if on_destination && !disks_present {
            missing.push(format!("a disk is missing on {}", req.destination));
        }
        if !stopped_on_source {
            missing.push(format!("still on {}", req.source));
        }
        Ok(Verification {
            on_destination,
            disks_present,
            stopped_on_source,
            detail: if missing.is_empty() {
                "verified".into()
            } else {
                missing.join("; ")
            },
        })
    }

    /// What the VM left behind (see [`LeftoverContext`]); never another VM's files.
    pub fn leftovers(
        &self,
        req: &MigrationRequest,
        context: LeftoverContext,
    ) -> DriverResult<Vec<Leftover>> {
        let host = match context {
            LeftoverContext::AfterSuccess => &req.source,
            LeftoverContext::AfterFailedAttempt => &req.destination,
        };
        let h = self.reachable(host)?;
        let Some(v) = self.vm_idx(&req.vm) else {
            return Ok(vec![]);
        };
        if !self.is_leftover_host(v, h) {
            return Ok(vec![]);
        }
        Ok(self.hosts[h]
            .files
            .iter()
            .filter(|(_, f)| f.owner == Some(v))
            .map(|(p, f)| Leftover {
                host: host.clone(),
                kind: f.kind,
                what: p.clone(),
            })
            .collect())
    }

    /// Removes one leftover after re-checking that the VM does not use it. A leftover already
    /// gone is not an error.
    pub fn remove_leftover(
        &mut self,
        req: &MigrationRequest,
        leftover: &Leftover,
        context: LeftoverContext,
    ) -> DriverResult<()> {
        let h = self.reachable(&leftover.host)?;
        let expected = match context {
            LeftoverContext::AfterSuccess => &req.source,
            LeftoverContext::AfterFailedAttempt => &req.destination,
        };
        if &leftover.host != expected {
            return Err(DriverError::permanent(format!(
                "{} is on {}, not on the host this context cleans ({expected})",
                leftover.what, leftover.host
            )));
        }
        let Some(f) = self.hosts[h].files.get(&leftover.what) else {
            return Ok(());
        };
        let Some(v) = self.vm_idx(&req.vm) else {
            return Err(DriverError::permanent(format!("VM {} not found", req.vm)));
        };
        if f.owner != Some(v) {
            return Err(DriverError::permanent(format!(
                "{} on {} does not belong to VM {}: kept",
                leftover.what, leftover.host, req.vm_name
            )));
        }
        if !self.is_leftover_host(v, h) {
            return Err(DriverError::permanent(format!(
                "VM {} still uses {} on {}: kept",
                req.vm_name, leftover.what, leftover.host
            )));
        }
        let path = leftover.what.clone();
        self.drop_file(h, &path);
        Ok(())
    }

    // ----- internals -----

    fn host_idx(&self, host: &HostId) -> Option<usize> {
        self.host_index.get(host).copied()
    }

    fn vm_idx(&self, vm: &VmId) -> Option<usize> {
        self.vm_index
            .get(vm)
            .copied()
            .filter(|&v| !self.vms[v].removed)
    }

    fn up(&self, h: usize) -> bool {
        !self.hosts[h].down.iter().any(|w| w.contains(self.now))
    }

    fn reachable(&self, host: &HostId) -> DriverResult<usize> {
        let h = self
            .host_idx(host)
            .ok_or_else(|| DriverError::permanent(format!("unknown host `{host}`")))?;
        if !self.up(h) {
            return Err(transient(format!("host {host} does not answer")));
        }
        Ok(h)
    }

    fn vm_on(&self, vm: &VmId, h: usize) -> DriverResult<usize> {
        match self.vm_idx(vm) {
            Some(v) if self.vms[v].host == h => Ok(v),
            _ => Err(DriverError::permanent(format!(
                "VM {vm} not found on {}",
                self.hosts[h].spec.id
            ))),
        }
    }

    fn mig_of(&self, req: &MigrationRequest, handle: &MigrationHandle) -> DriverResult<usize> {
        match self.handle_index.get(handle) {
            Some(&m) if self.migs[m].req.vm == req.vm => Ok(m),
            _ => Err(DriverError::permanent(format!(
                "migration {} of VM {} not found",
                handle.0, req.vm
            ))),
        }
    }

    /// Whether files of VM `v` on host `h` are leftovers: the VM is not defined there and is
    /// not arriving there.
    fn is_leftover_host(&self, v: usize, h: usize) -> bool {
        let vs = &self.vms[v];
        vs.host != h && vs.active_mig.is_none_or(|m| self.migs[m].dst != h)
    }

    fn backing_up(&self, v: usize) -> bool {
        self.vms[v].backups.iter().any(|w| w.contains(self.now))
    }

    fn foreign_now(&self, h: usize) -> u32 {
        self.hosts[h]
            .foreign
            .iter()
            .filter(|f| f.window.contains(self.now))
            .map(|f| f.count)
            .sum()
    }

    fn vm_info(&self, v: usize, h: usize) -> VmInfo {
        use vmove_core::model::Activity;
        let vs = &self.vms[v];
        let incoming = vs.host != h;
        let backing = !incoming && self.backing_up(v);
        VmInfo {
            id: vs.spec.id.clone(),
            name: vs.spec.name.clone(),
            power: if incoming {
                PowerState::Off
            } else {
                vs.spec.power.clone()
            },
            health: match &vs.spec.health {
                Health::Ok if backing => Health::InService,
                other => other.clone(),
            },
            activity: if incoming {
                Activity::MigratingIn
            } else if vs.active_mig.is_some() {
                Activity::MigratingOut
            } else if backing {
                Activity::BackingUp
            } else {
                Activity::Idle
            },
            memory_bytes: vs.spec.memory_bytes,
            disk_bytes: vs.spec.disk_bytes(),
        }
    }

    fn put_file(
        &mut self,
        h: usize,
        path: String,
        owner: Option<usize>,
        kind: LeftoverKind,
        bytes: u64,
        complete: bool,
    ) {
        let host = &mut self.hosts[h];
        if let Some(old) = host.files.insert(
            path,
            File {
                owner,
                kind,
                bytes,
                complete,
            },
        ) {
            host.used_disk = host.used_disk.saturating_sub(old.bytes);
        }
        host.used_disk += bytes;
    }

    fn drop_file(&mut self, h: usize, path: &str) {
        let host = &mut self.hosts[h];
        if let Some(old) = host.files.remove(path) {
            host.used_disk = host.used_disk.saturating_sub(old.bytes);
        }
    }

    fn note_peak(&mut self, h: usize) {
        let ours = self.hosts[h].active.len() as u32;
        let total = ours + self.foreign_now(h);
        let host = &mut self.hosts[h];
        host.peak_ours = host.peak_ours.max(ours);
        host.peak_total = host.peak_total.max(total);
    }

    fn begin(
        &mut self,
        req: &MigrationRequest,
        v: usize,
        src: usize,
        dst: usize,
        dest_disk_paths: Vec<String>,
        dest_log_path: String,
        need_mem: u64,
    ) -> usize {
        let m = self.migs.len();
        self.vms[v].starts += 1;
        let nth = self.vms[v].starts;
        let vm_id = self.vms[v].spec.id.clone();
        let mut hang_at = None;
        let mut fail_at = None;
        for f in self
            .mid
            .iter()
            .filter(|f| f.vm == vm_id && f.nth_start == nth)
        {
            let at = self.now + std::time::Duration::from_millis(f.after_ms);
            match f.fail {
                None => hang_at = Some(at),
                Some(c) => fail_at = Some((at, c)),
            }
        }
        // Pre-create the destination images (empty until the copy completes).
        let disks = self.vms[v].spec.disks.clone();
        for (p, d) in dest_disk_paths.iter().zip(&disks) {
            self.put_file(
                dst,
                p.clone(),
                Some(v),
                LeftoverKind::DiskImage,
                d.allocated_bytes,
                false,
            );
        }
        self.hosts[dst].used_memory += need_mem;
        let overhead = self.routes.get(&(src, dst)).map_or(0, |r| r.overhead_ms);
        let spec = &self.vms[v].spec;
        let handle = MigrationHandle(format!("sim-{m}/{}/{}", req.run_id, req.attempt));
        self.migs.push(Mig {
            req: req.clone(),
            handle: handle.clone(),
            vm: v,
            src,
            dst,
            stage: if overhead > 0 {
                Stage::Setup {
                    until: Time(self.now.0 + overhead),
                }
            } else {
                Stage::Disk
            },
            stage_total: if overhead > 0 { 0 } else { spec.disk_bytes() },
            stage_done: 0,
            round_started: self.now,
            updated: self.now,
            rate: 0,
            sent: 0,
            disk_total: spec.disk_bytes(),
            mem_total: if req.mode == MigrationMode::Live {
                spec.memory_bytes
            } else {
                0
            },
            dirty_rate: spec.dirty_rate,
            downtime_ms: DEFAULT_DOWNTIME_MS,
            postcopy: false,
            hung: false,
            hang_at,
            fail_at,
            dest_disk_paths,
            dest_log_path,
            reserved_memory: need_mem,
            outcome: None,
            epoch: 0,
        });
        self.handle_index.insert(handle, m);
        self.vms[v].active_mig = Some(m);
        self.hosts[src].active.push(m);
        self.hosts[dst].active.push(m);
        self.note_peak(src);
        self.note_peak(dst);
        self.reshare(src);
        self.reshare(dst);
        if overhead > 0 {
            // Rate 0 during the overhead: resharing did not schedule it.
            self.schedule(m);
        }
        m
    }

    /// Brings a migration's byte counts up to now at its current rate.
    fn settle(&mut self, m: usize) {
        let now = self.now;
        let mg = &mut self.migs[m];
        let dt = now.0.saturating_sub(mg.updated.0);
        if dt > 0 && mg.rate > 0 && mg.stage != Stage::Ended {
            let bytes = (u128::from(mg.rate) * u128::from(dt) / 1000) as u64;
            let bytes = bytes.min(mg.stage_total - mg.stage_done);
            mg.stage_done += bytes;
            mg.sent += bytes;
        }
        mg.updated = now;
    }

    fn share(&self, m: usize) -> u64 {
        let mg = &self.migs[m];
        if mg.hung || matches!(mg.stage, Stage::Setup { .. }) {
            return 0;
        }
        let count = |h: usize| {
            let host = &self.hosts[h];
            // Migrations in their fixed overhead move no bytes: they take no share.
            let moving = if self.routes.is_empty() {
                host.active.len()
            } else {
                host.active
                    .iter()
                    .filter(|&&x| !matches!(self.migs[x].stage, Stage::Setup { .. }))
                    .count()
            };
            (moving as u64 + u64::from(self.foreign_now(h))).max(1)
        };
        let per = |h: usize| self.hosts[h].spec.nic_bytes_per_sec / count(h);
        let s = &self.hosts[mg.src].spec;
        let d = &self.hosts[mg.dst].spec;
        let route = self.routes.get(&(mg.src, mg.dst));
        let mut cap = route
            .and_then(|r| r.stream_cap_bytes_per_sec)
            .unwrap_or(s.stream_cap_bytes_per_sec.min(d.stream_cap_bytes_per_sec));
        let n = count(mg.src).max(count(mg.dst));
        if let Some((_, r)) =
            route.and_then(|r| r.rate_nearest(u32::try_from(n).unwrap_or(u32::MAX)))
        {
            cap = r;
        } else if let Some(agg) = route.and_then(|r| r.aggregate_bytes_per_sec)
            && n >= 2
        {
            cap = cap.min(agg / n);
        }
        cap.min(per(mg.src)).min(per(mg.dst)).max(1)
    }

    /// Recomputes the rate of every migration touching host `h` and reschedules them.
    fn reshare(&mut self, h: usize) {
        let active = self.hosts[h].active.clone();
        for m in active {
            let r = self.share(m);
            if r != self.migs[m].rate {
                self.settle(m);
                self.migs[m].rate = r;
                self.schedule(m);
            }
        }
    }

    /// Schedules the migration's next wake-up: its stage's end, a hang or a failure.
    fn schedule(&mut self, m: usize) {
        let now = self.now;
        let mg = &mut self.migs[m];
        mg.epoch += 1;
        let mut at: Option<Time> = None;
        if let Stage::Setup { until } = mg.stage {
            if !mg.hung {
                at = Some(until);
            }
        } else if mg.rate > 0 && !mg.hung {
            let rem = u128::from(mg.stage_total - mg.stage_done);
            let ms = (rem * 1000).div_ceil(u128::from(mg.rate)) as u64;
            at = Some(Time(now.0 + ms));
        }
        if let Some(h) = mg.hang_at.filter(|_| !mg.hung) {
            at = Some(at.map_or(h, |a| a.min(h)));
        }
        if let Some((f, _)) = mg.fail_at {
            at = Some(at.map_or(f, |a| a.min(f)));
        }
        if let Some(at) = at {
            self.seq += 1;
            self.wakes.push(Reverse(Wake {
                at: at.max(now),
                seq: self.seq,
                mig: m,
                epoch: mg.epoch,
            }));
        }
    }

    fn clean_wakes(&mut self) {
        while let Some(Reverse(w)) = self.wakes.peek() {
            let mg = &self.migs[w.mig];
            if mg.epoch == w.epoch && mg.stage != Stage::Ended {
                break;
            }
            self.wakes.pop();
        }
    }

    /// Handles a migration's wake-up at `self.now`.
    fn step_migration(&mut self, m: usize) -> Option<MigrationEnd> {
        self.settle(m);
        let now = self.now;
        if let Some((at, class)) = self.migs[m].fail_at {
            if at <= now {
                let status = MigrationStatus::Failed(Failure::new(
                    class,
                    format!(
                        "the migration failed part-way on {} (injected)",
                        self.migs[m].req.source
                    ),
                ));
                return Some(self.end_migration(m, status));
            }
        }
        if let Some(at) = self.migs[m].hang_at {
            if at <= now && !self.migs[m].hung {
                self.migs[m].hung = true;
                self.migs[m].rate = 0;
                self.schedule(m);
                return None;
            }
        }
        let mg = &self.migs[m];
        if mg.stage_done < mg.stage_total {
            // A wake-up for a hang or failure that was then rescheduled: just reschedule.
            self.schedule(m);
            return None;
        }
        match mg.stage {
            Stage::Setup { until } => {
                if now < until {
                    self.schedule(m);
                    return None;
                }
                let (src, dst) = (mg.src, mg.dst);
                let mg = &mut self.migs[m];
                mg.stage = Stage::Disk;
                mg.stage_total = mg.disk_total;
                mg.stage_done = 0;
                mg.round_started = now;
                // It now takes a share of both NICs: every rate there changes.
                self.reshare(src);
                self.reshare(dst);
                None
            }
            Stage::Disk => {
                if mg.mem_total == 0 {
                    return Some(self.end_migration(m, MigrationStatus::Completed));
                }
                let mg = &mut self.migs[m];
                mg.stage = Stage::Memory { round: 0 };
                mg.stage_total = mg.mem_total;
                mg.stage_done = 0;
                mg.round_started = now;
                self.schedule(m);
                None
            }
            Stage::Memory { round } => {
                if mg.postcopy {
                    return Some(self.end_migration(m, MigrationStatus::Completed));
                }
                let dur = now.0.saturating_sub(mg.round_started.0);
                let dirtied = (u128::from(mg.dirty_rate) * u128::from(dur) / 1000) as u64;
                let next = dirtied.min(mg.mem_total);
                let budget = ((u128::from(mg.rate) * u128::from(mg.downtime_ms) / 1000) as u64)
                    .max(MIN_FINAL_ROUND);
                if next <= budget {
                    // Stop-and-copy: the last `next` bytes go during the pause.
                    let mg = &mut self.migs[m];
                    mg.sent += next;
                    return Some(self.end_migration(m, MigrationStatus::Completed));
                }
                let mg = &mut self.migs[m];
                mg.stage = Stage::Memory { round: round + 1 };
                mg.stage_total = next;
                mg.stage_done = 0;
                mg.round_started = now;
                self.schedule(m);
                None
            }
            Stage::Ended => None,
        }
    }

    /// Ends a migration: on success the VM is on the destination (its source files stay as
    /// leftovers); on failure it stays on the source (pre-created images stay on the destination).
    fn end_migration(&mut self, m: usize, status: MigrationStatus) -> MigrationEnd {
        let (v, src, dst) = (self.migs[m].vm, self.migs[m].src, self.migs[m].dst);
        {
            let mg = &mut self.migs[m];
            mg.stage = Stage::Ended;
            mg.rate = 0;
            mg.epoch += 1;
            mg.outcome = Some(status.clone());
        }
        let reserved = self.migs[m].reserved_memory;
        self.hosts[dst].used_memory = self.hosts[dst].used_memory.saturating_sub(reserved);
        if status == MigrationStatus::Completed {
            let dest_paths = self.migs[m].dest_disk_paths.clone();
            let dest_log = self.migs[m].dest_log_path.clone();
            for p in &dest_paths {
                if let Some(f) = self.hosts[dst].files.get_mut(p) {
                    f.complete = true;
                }
            }
            self.put_file(
                dst,
                dest_log.clone(),
                Some(v),
                LeftoverKind::LogFile,
                0,
                true,
            );
            let mem = self.vms[v].spec.memory_bytes;
            if self.vms[v].spec.power.is_live() {
                self.hosts[src].used_memory = self.hosts[src].used_memory.saturating_sub(mem);
                self.hosts[dst].used_memory += mem;
            }
            self.hosts[src].vms.remove(&v);
            self.hosts[dst].vms.insert(v);
            let vm = &mut self.vms[v];
            vm.host = dst;
            vm.disk_paths = dest_paths;
            vm.log_path = dest_log;
        }
        self.vms[v].active_mig = None;
        self.hosts[src].active.retain(|&x| x != m);
        self.hosts[dst].active.retain(|&x| x != m);
        self.reshare(src);
        self.reshare(dst);
        let mg = &self.migs[m];
        MigrationEnd {
            at: self.now,
            request: mg.req.clone(),
            handle: mg.handle.clone(),
            status,
        }
    }

    fn progress(&self, m: usize) -> Progress {
        let mg = &self.migs[m];
        let dt = self.now.0.saturating_sub(mg.updated.0);
        let extra = ((u128::from(mg.rate) * u128::from(dt) / 1000) as u64)
            .min(mg.stage_total - mg.stage_done);
        let stage_done = mg.stage_done + extra;
        let sent = mg.sent + extra;
        let (remaining, iteration) = match mg.stage {
            Stage::Setup { .. } => (mg.disk_total + mg.mem_total, None),
            Stage::Disk => (mg.disk_total - stage_done + mg.mem_total, None),
            Stage::Memory { round } => (mg.stage_total - stage_done, Some(round + 1)),
            Stage::Ended => (0, None),
        };
        let total = sent + remaining;
        Progress {
            bytes_done: sent,
            bytes_remaining: remaining,
            bytes_total: total,
            dirty_rate: (mg.req.mode == MigrationMode::Live).then_some(mg.dirty_rate),
            transfer_rate: Some(mg.rate),
            iteration,
            percent: (total > 0)
                .then(|| ((u128::from(sent) * 100 / u128::from(total)) as u8).min(100)),
        }
    }
}
