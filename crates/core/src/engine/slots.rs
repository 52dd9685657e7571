//! Slots and reservations.
//!
//! The slot ledger counts, per host, how many migrations run (ours and others') against its
//! limit. A move holds one slot on its source and one on its destination from the moment its
//! start is asked until the hosts show it is over (see
//! [`Phase::holds_slot`](crate::event::Phase::holds_slot)). Migrations this run did not start
//! ("foreign") occupy slots too. The effective limit of a host is min(its own reported limit or
//! the default, its configured cap, the run's cap).
//!
//! Slots and reservations are derived from each VM's phase after every transition
//! (`Core::derive_slots`, `Core::derive_reservation`): there is no release call to forget.

use super::Core;
use crate::event::Phase;
use crate::model::MigrationMode;
use crate::time::Time;

/// Slot use of every host, indexed like the engine's host table.
#[derive(Debug, Clone, Default)]
pub struct SlotLedger {
    limit: Vec<u32>,
    ours: Vec<u32>,
    foreign: Vec<u32>,
    total_ours: u32,
    cluster_cap: Option<u32>,
    /// Hosts whose free slots may have changed since the scheduler's index last looked
    /// ([`SlotLedger::pop_changed`]), each once.
    changed: Vec<usize>,
    /// Whether each host is in `changed`.
    marked: Vec<bool>,
}

impl SlotLedger {
    /// A ledger for `n` hosts, each with `default_limit`, and an optional cluster-wide cap.
    pub fn new(n: usize, default_limit: u32, cluster_cap: Option<u32>) -> Self {
        SlotLedger {
            limit: vec![default_limit; n],
            ours: vec![0; n],
            foreign: vec![0; n],
            total_ours: 0,
            cluster_cap,
            changed: (0..n).collect(),
            marked: vec![true; n],
        }
    }

    /// Notes that host `h`'s free slots (or what else the scheduler's index derives from the
    /// host) may have changed.
    pub fn touch(&mut self, h: usize) {
        if let Some(m) = self.marked.get_mut(h) {
            if !*m {
                *m = true;
                self.changed.push(h);
            }
        }
    }

    /// A host changed since the last call (every change to a host's limit, others' migrations
    /// or ours, and every [`SlotLedger::touch`]), each once; `None` when none is left.
    pub fn pop_changed(&mut self) -> Option<usize> {
        let h = self.changed.pop()?;
        self.marked[h] = false;
        Some(h)
    }

    /// Whether a change is noted that the scheduler's index has not applied yet.
    pub fn has_changes(&self) -> bool {
        !self.changed.is_empty()
    }

    /// Effective limit: min of the host's reported limit (or `default`) and every cap given.
    pub fn effective_limit(reported: Option<u32>, default: u32, caps: &[Option<u32>]) -> u32 {
        caps.iter()
            .flatten()
            .fold(reported.unwrap_or(default), |a, &c| a.min(c))
    }

    /// Sets a host's effective limit.
    pub fn set_limit(&mut self, h: usize, limit: u32) {
        self.limit[h] = limit;
        self.touch(h);
    }

    /// Sets how many migrations others run on a host.
    pub fn set_foreign(&mut self, h: usize, n: u32) {
        self.foreign[h] = n;
        self.touch(h);
    }

    /// A host's limit.
    pub fn limit(&self, h: usize) -> u32 {
        self.limit[h]
    }

    /// Our migrations on a host.
    pub fn ours(&self, h: usize) -> u32 {
        self.ours[h]
    }

    /// Others' migrations on a host.
    pub fn foreign(&self, h: usize) -> u32 {
        self.foreign[h]
    }

    /// Our migrations in the whole cluster.
    pub fn total_ours(&self) -> u32 {
        self.total_ours
    }

    /// Free slots on a host (never negative: others may overfill it).
    pub fn free(&self, h: usize) -> u32 {
        self.limit[h].saturating_sub(self.ours[h] + self.foreign[h])
    }

    /// Whether the cluster-wide cap leaves room for one more.
    pub fn cluster_has_room(&self) -> bool {
        self.cluster_cap.is_none_or(|c| self.total_ours < c)
    }

    /// Whether a move from `src` to `dst` may start now.
    pub fn can_start(&self, src: usize, dst: usize) -> bool {
        src != dst && self.free(src) > 0 && self.free(dst) > 0 && self.cluster_has_room()
    }

    /// Takes a slot on both hosts.
    pub fn reserve(&mut self, src: usize, dst: usize) {
        self.ours[src] += 1;
        self.ours[dst] += 1;
        self.total_ours += 1;
        self.touch(src);
        self.touch(dst);
    }

    /// Gives both slots back.
    pub fn release(&mut self, src: usize, dst: usize) {
        self.ours[src] = self.ours[src].saturating_sub(1);
        self.ours[dst] = self.ours[dst].saturating_sub(1);
        self.total_ours = self.total_ours.saturating_sub(1);
        self.touch(src);
        self.touch(dst);
    }
}

/// Capacity a move holds on its destination until the destination's own figures show it.
#[derive(Debug, Clone)]
pub(super) struct Reservation {
    /// The destination's host index.
    pub(super) host: usize,
    /// Memory held, bytes (none for an offline move).
    pub(super) memory: u64,
    /// Disk held, bytes.
    pub(super) disk: u64,
    /// Set when the move is over: released at the first refresh of the host asked after this.
    pub(super) settle_after: Option<Time>,
}

impl Core {
    /// Slots: held exactly while the phase says a migration may be in flight.
    pub(super) fn derive_slots(&mut self, idx: usize, now: Time, after: Phase) {
        if after.holds_slot() && self.vms[idx].slot.is_none() {
            if let Some(req) = self.vms[idx].vm.state.request() {
                let src = self.vms[idx].source;
                if let Some(&dst) = self.host_index.get(&req.destination) {
                    self.ledger.reserve(src, dst);
                    self.vms[idx].slot = Some((src, dst));
                }
            }
        } else if !after.holds_slot() {
            if let Some((src, dst)) = self.vms[idx].slot.take() {
                self.ledger.release(src, dst);
                self.dirty = true;
                self.vms[idx].last_release = Some(now);
                self.hosts[src].releases.push_back(now);
                self.hosts[dst].releases.push_back(now);
            }
        }
    }

    /// Capacity reservations on the destination: from start until the destination's own
    /// figures show the VM (a refresh asked after it arrived), or until the attempt fails.
    pub(super) fn derive_reservation(&mut self, idx: usize, now: Time, after: Phase) {
        match after {
            Phase::Starting if self.vms[idx].reservation.is_none() => {
                let e = &self.vms[idx];
                let Some(req) = e.vm.state.request() else {
                    return;
                };
                let Some(&dst) = self.host_index.get(&req.destination) else {
                    return;
                };
                let memory = if req.mode == MigrationMode::Live {
                    e.vm.memory_bytes
                } else {
                    0
                };
                let disk = e.vm.disk_bytes;
                self.hosts[dst].reserved_memory += memory;
                self.hosts[dst].reserved_disk += disk;
                // Its rank in placement changes.
                self.ledger.touch(dst);
                self.vms[idx].reservation = Some(Reservation {
                    host: dst,
                    memory,
                    disk,
                    settle_after: None,
                });
            }
            Phase::Moved => {
                if let Some(r) = self.vms[idx].reservation.as_mut() {
                    if r.settle_after.is_none() {
                        r.settle_after = Some(now);
                        self.hosts[r.host].settling.push(idx);
                    }
                }
            }
            Phase::Queued
            | Phase::BackingOff
            | Phase::Discarding
            | Phase::Unmigratable
            | Phase::Cancelled => {
                if let Some(r) = self.vms[idx].reservation.take() {
                    self.dirty = true;
                    self.give_back(&r);
                }
            }
            _ => {}
        }
    }

    /// A listing of host `h` asked at `requested_at`: the reservations of moves that ended
    /// before it are now in the host's own figures, and are given back.
    pub(super) fn settle_reservations(&mut self, h: usize, requested_at: Time) {
        let settling = std::mem::take(&mut self.hosts[h].settling);
        for i in settling {
            let due = self.vms[i]
                .reservation
                .as_ref()
                .is_some_and(|r| r.host == h && r.settle_after.is_some_and(|t| t <= requested_at));
            if due {
                if let Some(res) = self.vms[i].reservation.take() {
                    self.give_back(&res);
                }
            } else if self.vms[i]
                .reservation
                .as_ref()
                .is_some_and(|r| r.host == h)
            {
                self.hosts[h].settling.push(i);
            }
        }
    }

    fn give_back(&mut self, r: &Reservation) {
        let hs = &mut self.hosts[r.host];
        hs.reserved_memory = hs.reserved_memory.saturating_sub(r.memory);
        hs.reserved_disk = hs.reserved_disk.saturating_sub(r.disk);
        self.ledger.touch(r.host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_limit_is_the_minimum_of_all() {
        assert_eq!(SlotLedger::effective_limit(Some(4), 2, &[None, Some(3)]), 3);
        assert_eq!(SlotLedger::effective_limit(None, 2, &[None, None]), 2);
        assert_eq!(SlotLedger::effective_limit(Some(1), 2, &[Some(8)]), 1);
    }

    #[test]
    fn foreign_migrations_take_slots() {
        let mut l = SlotLedger::new(2, 2, None);
        l.set_foreign(1, 1);
        assert!(l.can_start(0, 1));
        l.reserve(0, 1);
        assert!(!l.can_start(0, 1), "destination has 1 foreign + 1 ours = 2");
        l.release(0, 1);
        assert!(l.can_start(0, 1));
    }

    #[test]
    fn overfilled_by_others_has_zero_free_not_negative() {
        let mut l = SlotLedger::new(1, 2, None);
        l.set_foreign(0, 5);
        assert_eq!(l.free(0), 0);
    }

    #[test]
    fn cluster_cap_limits_total() {
        let mut l = SlotLedger::new(4, 2, Some(1));
        l.reserve(0, 1);
        assert!(!l.can_start(2, 3));
        l.release(0, 1);
        assert!(l.can_start(2, 3));
    }

    #[test]
    fn same_host_is_never_startable() {
        let l = SlotLedger::new(1, 2, None);
        assert!(!l.can_start(0, 0));
    }
}
