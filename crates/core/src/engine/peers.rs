//! The scheduling policies of the tools vmove is compared with, for the simulator's benchmark
//! (`vmove-bench`, docs/BENCHMARKS.md): KubeVirt, OpenStack Nova, Proxmox VE, vSphere and a
//! shell loop that starts everything at once. A real run never uses them: the CLI refuses a
//! peer's policy (`SchedulerPolicy::is_peer`).
//!
//! Each policy is what its documentation and code say, reduced to the decisions a scheduler
//! makes: which migration starts next, when, and to which destination. The limits are the
//! policy's own parameters; the run's slot ledger (the hosts' limits) applies on top, so a peer
//! runs "at vmove's limits" when its parameters equal vmove's slots, and "at its own defaults"
//! when the run's limits are set high enough not to bind (the benchmark raises the run's
//! `default_host_limit` for that: the simulated hosts report no limit of their own).
//!
//! Sources of every rule (read in full in docs/BENCHMARKS.md, "The peers' rules"):
//! - KubeVirt: the defaults `ParallelMigrationsPerClusterDefault = 5` and
//!   `ParallelOutboundMigrationsPerNodeDefault = 2` are in kubevirt/kubevirt
//!   `pkg/virt-config/virt-config.go`; the evacuation controller creates migrations only while
//!   both limits leave room, in the order it lists the node's VMIs (kubevirt/kubevirt pull
//!   request 8701, "consider the ParallelOutboundMigrationsPerNode when evicting VMs"); there is
//!   no per-destination limit: the target is a pod, placed by the Kubernetes scheduler when the
//!   migration starts (default scoring `NodeResourcesFit` least-allocated: the node with the
//!   most free resources).
//! - Nova: `max_concurrent_live_migrations` (default 1) sizes the source compute's executor of
//!   live migrations (openstack/nova `nova/conf/compute.py`, `nova/compute/manager.py`); `nova
//!   host-evacuate-live` requests every server's live migration in one loop, without waiting
//!   (python-novaclient `novaclient/v2/shell.py`, `do_host_evacuate_live`); the conductor asks
//!   the scheduler for the destination when the request arrives
//!   (`nova/conductor/tasks/live_migrate.py`), before the source's executor queues it; the
//!   default weigher spreads by free RAM (`ram_weight_multiplier` 1.0).
//! - Proxmox VE: `pvenode migrateall TARGET` (proxmox/pve-manager `PVE/API2/Nodes.pm`,
//!   `migrateall`): the node's guests sorted by VMID, each started as a worker to the one
//!   TARGET, waiting (a 1 s poll) while `max-workers` run; `max-workers` defaults to
//!   datacenter.cfg's `max_workers` (4 in the web UI: `www/manager6/dc/OptionView.js`).
//! - vSphere: vCenter's limits on simultaneous migrations ("vCenter Server and Host Management",
//!   "Limits on Simultaneous Migrations"): network cost 1 per vMotion against 4 (1 GbE) or 8
//!   (10 GbE); host cost 4 of 8 for a vMotion without shared storage (2 at once); an operation
//!   over a limit is queued until others finish. DRS places each VM of a host entering
//!   maintenance mode; modelled as the destination with the most free memory.
//! - "Everything at once": `for vm in ...; do virsh migrate ... & done`: every migration starts
//!   at once, destinations taken in turn.

use super::Core;
use super::schedule::Place;
use crate::event::WaitReason;
use crate::machine::{Assessment, VmEvent};
use crate::model::MigrationMode;
use crate::spec::SchedulerPolicy;
use crate::time::Time;
use std::collections::BTreeMap;

/// What a peer policy remembers between passes.
#[derive(Debug, Default)]
pub(super) struct PeerState {
    /// Nova: each VM's destination, chosen when its request arrived (VM index -> host index),
    /// and the memory it claims there until it starts.
    fixed: BTreeMap<usize, (usize, u64)>,
    /// Memory claimed per host by requests not started yet (Nova's placement claims).
    claimed: BTreeMap<usize, u64>,
}

impl Core {
    /// One pass of a peer's policy (event-driven, like vmove's: it runs when something that may
    /// let a VM start changed). The queue is every ready VM, first come first served (the order
    /// the sources listed them), offline ones last when `offline_last` holds them back.
    pub(super) fn schedule_peer(&mut self, now: Time) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let policy = self.spec.settings.policy;
        // First in, first out per source: a VM that cannot start holds back the ones after it
        // (Nova's executor and Proxmox's worker loop take their queue in order).
        let fifo = matches!(
            policy,
            SchedulerPolicy::Nova { .. } | SchedulerPolicy::Proxmox { .. }
        );
        let offline_ok = self.offline_allowed();
        let mut queue: Vec<(bool, usize, usize)> = self
            .sources
            .iter()
            .enumerate()
            .flat_map(|(si, s)| s.ready.iter().map(move |k| (k.held_back, k.vm, si)))
            .collect();
        queue.sort_unstable();
        if matches!(policy, SchedulerPolicy::Nova { .. }) {
            self.nova_requests(&queue);
        }
        let mut outbound = vec![0u32; self.hosts.len()];
        for e in &self.vms {
            if let Some((s, _)) = e.slot {
                outbound[s] += 1;
            }
        }
        let mut held = vec![false; self.sources.len()];
        for (_, idx, si) in queue {
            if !self.ledger.cluster_has_room() {
                return;
            }
            if held[si] {
                continue;
            }
            if self.vms[idx].vm.mode == MigrationMode::Offline && !offline_ok {
                self.set_sched_wait(idx, now, WaitReason::OfflineAfterLive);
                continue;
            }
            let src = self.sources[si].host;
            let own_room = match policy {
                SchedulerPolicy::KubeVirt {
                    per_cluster,
                    outbound_per_node,
                } => {
                    if self.ledger.total_ours() >= per_cluster {
                        return;
                    }
                    outbound[src] < outbound_per_node
                }
                SchedulerPolicy::Nova { per_compute } => outbound[src] < per_compute,
                SchedulerPolicy::Proxmox { max_workers } => outbound[src] < max_workers,
                SchedulerPolicy::VSphere { per_host } => self.ledger.ours(src) < per_host,
                SchedulerPolicy::AllAtOnce => true,
                SchedulerPolicy::Vmove | SchedulerPolicy::Seed => return,
            };
            if !own_room {
                self.set_sched_wait(idx, now, WaitReason::NoSlot);
                held[si] |= fifo;
                continue;
            }
            let started = match self.peer_destination(idx, si, policy) {
                Some(d) => self.peer_start(idx, d, now),
                None => self.peer_wait(idx, now),
            };
            if started {
                outbound[src] += 1;
                if let Some((d, claim)) = self.peers.fixed.get_mut(&idx) {
                    let c = self.peers.claimed.entry(*d).or_default();
                    *c = c.saturating_sub(std::mem::take(claim));
                }
            } else {
                held[si] |= fifo;
            }
        }
    }

    /// Nova: the scheduler picks each new request's destination when it arrives, in request
    /// order: the destination with the most free memory after what the earlier requests
    /// claimed there (placement claims; the RAM weigher spreads).
    fn nova_requests(&mut self, queue: &[(bool, usize, usize)]) {
        for &(_, idx, _) in queue {
            if self.peers.fixed.contains_key(&idx) {
                continue;
            }
            let need_mem = self.need_memory(idx);
            let need_disk = self.vms[idx].vm.disk_bytes;
            let mut best: Option<(u64, usize)> = None;
            for d in self.vms[idx].vm.open_destinations() {
                let Some(&h) = self.host_index.get(d) else {
                    continue;
                };
                let hs = &self.hosts[h];
                let Some(info) = hs.info.as_ref().filter(|_| hs.reachable && !hs.down) else {
                    continue;
                };
                let claimed = self.peers.claimed.get(&h).copied().unwrap_or(0);
                let free_mem = info
                    .free_memory_bytes
                    .saturating_sub(hs.reserved_memory)
                    .saturating_sub(claimed);
                let free_disk = info.free_disk_bytes.saturating_sub(hs.reserved_disk);
                if free_mem < need_mem || free_disk < need_disk {
                    continue;
                }
                if best.is_none_or(|(m, _)| free_mem > m) {
                    best = Some((free_mem, h));
                }
            }
            if let Some((_, h)) = best {
                *self.peers.claimed.entry(h).or_default() += need_mem;
                self.peers.fixed.insert(idx, (h, need_mem));
            }
        }
    }

    fn need_memory(&self, idx: usize) -> u64 {
        let vm = &self.vms[idx].vm;
        if vm.mode == MigrationMode::Live {
            vm.memory_bytes
        } else {
            0
        }
    }

    /// Whether the VM can start toward host `d` now: `d` is up and listed, has room for it after
    /// the moves headed there, its pre-flight check did not block the VM there, and the run's
    /// slots allow it.
    fn peer_fits(&self, idx: usize, d: usize) -> bool {
        let src = self.vms[idx].source;
        let hs = &self.hosts[d];
        let Some(info) = hs.info.as_ref().filter(|_| hs.reachable && !hs.down) else {
            return false;
        };
        let vm = &self.vms[idx].vm;
        !vm.preflight.blocked.contains_key(&hs.id)
            && vm.open_destinations().any(|x| *x == hs.id)
            && info.free_memory_bytes.saturating_sub(hs.reserved_memory) >= self.need_memory(idx)
            && info.free_disk_bytes.saturating_sub(hs.reserved_disk) >= vm.disk_bytes
            && self.ledger.can_start(src, d)
    }

    /// The destination the policy gives the VM now, if it can start there now.
    fn peer_destination(&self, idx: usize, si: usize, policy: SchedulerPolicy) -> Option<usize> {
        let most_free_memory = |extra: &dyn Fn(usize) -> bool| -> Option<usize> {
            let mut best: Option<(u64, usize)> = None;
            for d in self.vms[idx].vm.open_destinations() {
                let Some(&h) = self.host_index.get(d) else {
                    continue;
                };
                if !self.peer_fits(idx, h) || !extra(h) {
                    continue;
                }
                let hs = &self.hosts[h];
                let free = hs.info.as_ref().map_or(0, |i| {
                    i.free_memory_bytes.saturating_sub(hs.reserved_memory)
                });
                if best.is_none_or(|(m, _)| free > m) {
                    best = Some((free, h));
                }
            }
            best.map(|(_, h)| h)
        };
        match policy {
            SchedulerPolicy::KubeVirt { .. } => most_free_memory(&|_| true),
            SchedulerPolicy::VSphere { per_host } => {
                most_free_memory(&|h| self.ledger.ours(h) < per_host)
            }
            _ => self
                .fixed_destination(idx, si, policy)
                .filter(|&d| self.peer_fits(idx, d)),
        }
    }

    /// The destination a policy that decides it before the start gave the VM: Nova's at
    /// request time, Proxmox's one target per `migrateall`, the loop's in turn.
    fn fixed_destination(&self, idx: usize, si: usize, policy: SchedulerPolicy) -> Option<usize> {
        match policy {
            SchedulerPolicy::Nova { .. } => self.peers.fixed.get(&idx).map(|&(d, _)| d),
            SchedulerPolicy::Proxmox { .. } => {
                // One `migrateall` per source node, each with the one target given: the
                // sources take the destinations in turn.
                let dests = &self.sources[si].destinations;
                dests.get(si % dests.len().max(1)).copied()
            }
            SchedulerPolicy::AllAtOnce => {
                let dests: Vec<_> = self.vms[idx].vm.open_destinations().collect();
                let d = dests.get(idx % dests.len().max(1))?;
                self.host_index.get(*d).copied()
            }
            _ => None,
        }
    }

    /// Starts the VM toward `d` when its pre-flight check there is clear (or off); asks the
    /// check first otherwise. Returns whether it started.
    fn peer_start(&mut self, idx: usize, d: usize, now: Time) -> bool {
        let vm = &self.vms[idx].vm;
        if !self.spec.settings.preflight || vm.preflight.clear.contains(&self.hosts[d].id) {
            self.start_or_check(idx, d, now, false);
            return true;
        }
        if vm.preflight.asking.is_none() && !self.preflight_full() {
            self.start_or_check(idx, d, now, true);
        }
        false
    }

    /// The VM cannot start where the policy sends it now: it waits for the reason vmove's
    /// placement gives, or is unmigratable when no destination can ever take it. A destination
    /// the policy fixed earlier that can never take it (no room at all, or its pre-flight
    /// check blocked it) is given up for vmove's placement, so that the run cannot wait forever
    /// (the real tool would fail that VM instead).
    /// Returns whether it started after all (toward vmove's choice, in that last case).
    fn peer_wait(&mut self, idx: usize, now: Time) -> bool {
        match self.place(idx, false) {
            Place::Never(r) => {
                self.step(idx, now, VmEvent::Assessed(Assessment::Unmigratable(r)));
                false
            }
            Place::Wait(w) => {
                self.set_sched_wait(idx, now, w);
                false
            }
            Place::To(h) => {
                let policy = self.spec.settings.policy;
                let fixed = self.source_state[self.vms[idx].source]
                    .and_then(|si| self.fixed_destination(idx, si, policy));
                let never = fixed.is_some_and(|d| {
                    let hs = &self.hosts[d];
                    let vm = &self.vms[idx].vm;
                    vm.preflight.blocked.contains_key(&hs.id)
                        || !vm.open_destinations().any(|x| *x == hs.id)
                        || hs.info.as_ref().is_some_and(|i| {
                            i.free_memory_bytes < self.need_memory(idx)
                                || i.free_disk_bytes < vm.disk_bytes
                        })
                });
                if never {
                    if let Some((d, claim)) = self.peers.fixed.remove(&idx) {
                        let c = self.peers.claimed.entry(d).or_default();
                        *c = c.saturating_sub(claim);
                    }
                    self.peer_start(idx, h, now)
                } else {
                    self.set_sched_wait(idx, now, WaitReason::NoSlot);
                    false
                }
            }
        }
    }
}
