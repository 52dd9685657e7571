//! What the cluster holds ([`SimCluster`] and its hosts, VMs, files, migrations and wake-ups),
//! how it is built, and the lookups by id every room uses.

use super::faults::{Faults, ForeignWindow, MidFault, StartFault, Window};
use super::spec::{HostSpec, RouteSpec, SimError, VmSpec};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};

/// The simulator's maps keyed by ids: foldhash from a fixed state (fast on short strings, the
/// same in every run; nothing depends on their order).
pub(super) type IdMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
use vmove_core::model::{
    ErrorClass, Failure, HostId, LeftoverKind, MigrationHandle, MigrationRequest, MigrationStatus,
    VmId,
};
use vmove_core::time::Time;

/// A file a host keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct File {
    /// The VM it belongs to; `None` for a file nobody here owns (an occupied path).
    pub(super) owner: Option<usize>,
    pub(super) kind: LeftoverKind,
    pub(super) bytes: u64,
    /// Written completely (false for a pre-created image whose copy did not finish).
    pub(super) complete: bool,
}

#[derive(Debug)]
pub(super) struct Host {
    pub(super) spec: HostSpec,
    /// VMs defined here, by index (ordered: deterministic listings).
    pub(super) vms: BTreeSet<usize>,
    /// Our migrations touching this host.
    pub(super) active: Vec<usize>,
    pub(super) files: BTreeMap<String, File>,
    pub(super) used_disk: u64,
    /// Memory of running VMs here plus memory reserved by live migrations arriving.
    pub(super) used_memory: u64,
    pub(super) down: Vec<Window>,
    pub(super) foreign: Vec<ForeignWindow>,
    pub(super) peak_ours: u32,
    pub(super) peak_total: u32,
}

/// A VM the cluster holds. Laid out in the order written (`repr(C)`), what a listing reads of
/// it first, then [`VmSpec`] (which starts the same way): a host lists every VM of it each poll
/// interval, and at 100,000 VMs those reads were a good share of the run's cache misses.
#[derive(Debug)]
#[repr(C)]
pub(super) struct Vm {
    /// `spec.name`, shared: every listing of the host hands it out (a reference count each).
    pub(super) listed_name: std::sync::Arc<str>,
    /// `spec.disk_bytes()`, summed once: every listing reports it, and a VM's disks do not
    /// change in the simulator.
    pub(super) disk_bytes: u64,
    pub(super) host: usize,
    pub(super) active_mig: Option<usize>,
    pub(super) backups: Vec<Window>,
    pub(super) spec: VmSpec,
    /// Current disk paths, one per disk (on `host`).
    pub(super) disk_paths: Vec<String>,
    pub(super) log_path: String,
    /// Its latest migration (index into `SimCluster::migs`); each points to the one before
    /// ([`Mig::previous`]), so its own migrations are found without scanning everyone's.
    pub(super) last_mig: Option<usize>,
    pub(super) starts: u32,
    pub(super) script: VecDeque<StartFault>,
    pub(super) removed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
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

/// A migration the cluster runs or ran. Laid out in the order written (`repr(C)`): what a
/// progress poll reads of it first (`SimCluster::mig_of`, `progress`), the handle and the
/// progress figures in the first 96 bytes, then the request (its VM and mode). Each running
/// migration is polled every `progress_interval`, and a poll read a record of 464 bytes where
/// Rust's own layout had put those fields: at 100,000 VMs with a 4 MiB last-level cache, last-level
/// misses -2.1 % (cachegrind; aligned to 64 bytes as well, -1.9 %, with more first-level misses).
#[derive(Debug)]
#[repr(C)]
pub(super) struct Mig {
    pub(super) handle: MigrationHandle,
    pub(super) stage: Stage,
    pub(super) stage_total: u64,
    pub(super) stage_done: u64,
    pub(super) updated: Time,
    pub(super) rate: u64,
    pub(super) sent: u64,
    pub(super) disk_total: u64,
    pub(super) mem_total: u64,
    pub(super) dirty_rate: u64,
    pub(super) req: MigrationRequest,
    pub(super) outcome: Option<MigrationStatus>,
    pub(super) vm: usize,
    pub(super) src: usize,
    pub(super) dst: usize,
    pub(super) round_started: Time,
    pub(super) downtime_ms: u64,
    /// The pause the final stop-and-copy took, ms (its bytes at the migration's rate), once a
    /// pre-copy migration completed: what libvirt reports as the completed job's `downtime`.
    pub(super) paused_ms: Option<u64>,
    pub(super) postcopy: bool,
    pub(super) hung: bool,
    pub(super) hang_at: Option<Time>,
    pub(super) fail_at: Option<(Time, ErrorClass)>,
    pub(super) dest_disk_paths: Vec<String>,
    pub(super) dest_log_path: String,
    pub(super) reserved_memory: u64,
    pub(super) epoch: u64,
    /// The same VM's migration before this one.
    pub(super) previous: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Wake {
    pub(super) at: Time,
    pub(super) seq: u64,
    pub(super) mig: usize,
    pub(super) epoch: u64,
}

/// The simulated cluster. See the module docs.
#[derive(Debug)]
pub struct SimCluster {
    pub(super) now: Time,
    pub(super) hosts: Vec<Host>,
    pub(super) host_index: IdMap<HostId, usize>,
    pub(super) vms: Vec<Vm>,
    pub(super) vm_index: IdMap<VmId, usize>,
    pub(super) migs: Vec<Mig>,
    pub(super) wakes: BinaryHeap<Reverse<Wake>>,
    pub(super) seq: u64,
    /// Times at which foreign windows open or close, with the host (sorted; cursor below).
    pub(super) world: Vec<(Time, usize)>,
    pub(super) world_cursor: usize,
    /// Every other time a listing changes (backups, hosts down), sorted, for `next_event_time`.
    pub(super) edges: Vec<Time>,
    pub(super) edge_cursor: usize,
    pub(super) mid: Vec<MidFault>,
    /// Per (source, destination) index pair: the route's overhead and cap (none: defaults).
    pub(super) routes: IdMap<(usize, usize), RouteSpec>,
    /// Whether listings report running VMs' dirty rates (as a libvirt host does after a
    /// dirty-rate calculation; [`SimCluster::set_dirty_rates_reported`]).
    pub(super) dirty_rates_reported: bool,
    /// From when they are reported ([`SimCluster::set_dirty_rates_reported_from`]).
    pub(super) dirty_rates_from: Time,
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
            host_index: IdMap::with_capacity_and_hasher(hosts.len(), Default::default()),
            vms: Vec::with_capacity(vms.len()),
            vm_index: IdMap::with_capacity_and_hasher(vms.len(), Default::default()),
            migs: Vec::new(),
            wakes: BinaryHeap::new(),
            seq: 0,
            world: Vec::new(),
            world_cursor: 0,
            edges: Vec::new(),
            edge_cursor: 0,
            mid: Vec::new(),
            routes: IdMap::default(),
            dirty_rates_reported: true,
            dirty_rates_from: Time::ZERO,
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
            listed_name: spec.name.as_str().into(),
            disk_bytes: spec.disk_bytes(),
            spec,
            host,
            disk_paths,
            log_path,
            active_mig: None,
            last_mig: None,
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

    /// Whether hosts' listings report each running VM's dirty rate (`VmInfo::dirty_rate`; on by
    /// default, as a libvirt host that measured it would). Off, they report none, as vmove's
    /// Hyper-V driver does (and its libvirt driver with `measure_dirty_rates = false`).
    pub fn set_dirty_rates_reported(&mut self, reported: bool) {
        self.dirty_rates_reported = reported;
    }

    /// Listings report the dirty rates only from `from` on (before: none). vmove's libvirt
    /// driver starts a one-second measurement with a VM's first listing and reports its figure
    /// from the next (docs/drivers/libvirt.md, "Dirty rates in the listings"): with every host
    /// listed at the run's start, `from` = 1 s has the rates first seen by the second listings,
    /// one `poll_interval` in.
    pub fn set_dirty_rates_reported_from(&mut self, from: Time) {
        self.dirty_rates_from = from;
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

    pub(super) fn host_idx(&self, host: &HostId) -> Option<usize> {
        self.host_index.get(host).copied()
    }

    pub(super) fn vm_idx(&self, vm: &VmId) -> Option<usize> {
        self.vm_index
            .get(vm)
            .copied()
            .filter(|&v| !self.vms[v].removed)
    }

    pub(super) fn up(&self, h: usize) -> bool {
        !self.hosts[h].down.iter().any(|w| w.contains(self.now))
    }
}
