//! The scheduler's index: what a scheduling pass asks of every source and destination, kept up
//! to date as hosts change, so that a pass costs what it starts, not sources x destinations.
//!
//! A pass asks, per source: is its host full, is it reachable, has it a ready VM, and is every
//! destination of its list full? Asked afresh of every source, that cost a pass over every
//! source and, per source, over every destination: with pre-flight checks (each answer runs a
//! pass, and VMs waiting for a check hold no slot) 10,000 VMs on 500 hosts took 320 s instead
//! of 9 s. Here:
//! - sources with the same destination list share one *group*, which counts its destinations
//!   that are not full: "every destination full" is that count being 0;
//! - a source is *eligible* while its host is not full, is reachable and has a ready VM; each
//!   group keeps its eligible sources;
//! - each group keeps its destinations that are not full, which placement looks at first;
//! - the sum of the sources' free slots (the pre-flight bound) is kept as a running total.
//!
//! What changes a host is noted by the slot ledger ([`SlotLedger::touch`] and its mutations)
//! and applied by [`Core::sync_index`] before the scheduler reads the index; a ready set's
//! change updates its source's eligibility at once ([`Core::update_eligible`]).
//!
//! [`SlotLedger::touch`]: super::slots::SlotLedger::touch

use super::Core;
use super::park::Parking;
use super::schedule::Score;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// See the module docs.
#[derive(Debug, Default, PartialEq)]
pub(super) struct SchedIndex {
    /// Per source: its destination group.
    pub(super) group_of: Vec<usize>,
    /// Per group: how many entries of its list are not full (a host listed twice counts twice).
    pub(super) open: Vec<usize>,
    /// Per group: the distinct hosts of its list that are not full, by their placement score
    /// as last synced (placement looks at them first, best first).
    pub(super) open_hosts: Vec<BTreeSet<(Score, usize)>>,
    /// Per host: its placement score as last synced (its key in `open_hosts`).
    pub(super) score: Vec<Score>,
    /// Per group: its eligible sources.
    pub(super) eligible: Vec<BTreeSet<usize>>,
    /// Per host: the groups that list it, with how many times.
    host_groups: Vec<Vec<(usize, usize)>>,
    /// Per host: the sources on it (in source order).
    pub(super) host_sources: Vec<Vec<usize>>,
    /// Per host: full, as last synced.
    full: Vec<bool>,
    /// Per host: free slots, as last synced.
    free: Vec<u32>,
    /// The sum over the sources of their host's free slots, as last synced.
    pub(super) source_free: u64,
}

impl Core {
    /// Builds the index from the sources' lists (once, when the engine is created; hosts are
    /// synced as the ledger reports them).
    pub(super) fn build_index(&mut self) {
        let n = self.hosts.len();
        let mut ix = SchedIndex {
            host_groups: vec![Vec::new(); n],
            host_sources: vec![Vec::new(); n],
            full: vec![true; n],
            score: vec![(0, Reverse(0), 0); n],
            free: vec![0; n],
            ..SchedIndex::default()
        };
        let mut by_list: BTreeMap<&[usize], usize> = BTreeMap::new();
        for (si, s) in self.sources.iter().enumerate() {
            ix.host_sources[s.host].push(si);
            let next = by_list.len();
            let g = *by_list.entry(&s.destinations).or_insert(next);
            if g == next {
                // Every host starts full, with no score: the first sync opens them.
                ix.open.push(0);
                ix.open_hosts.push(BTreeSet::new());
                ix.eligible.push(BTreeSet::new());
                let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
                for &d in s.destinations.iter() {
                    *counts.entry(d).or_default() += 1;
                }
                for (d, c) in counts {
                    ix.host_groups[d].push((g, c));
                }
            }
            ix.group_of.push(g);
        }
        self.parking = Parking::new(self.sources.len(), ix.open.len(), n);
        self.index = ix;
        // Every host starts changed in the ledger: the first sync derives the rest.
        self.sync_index();
    }

    /// Whether the scheduler counts host `h` full: no free slot, and not a host that reports no
    /// slots at all (those are left to placement, which says so).
    pub(super) fn host_full(&self, h: usize) -> bool {
        self.ledger.free(h) == 0 && !self.reports_no_slots(h)
    }

    /// Host `h`'s placement score now: the fewest migrations in flight, then the most free
    /// memory after the moves headed there (as `Core::judge` ranks a destination that fits).
    pub(super) fn score(&self, h: usize) -> Score {
        let hs = &self.hosts[h];
        let free_mem = hs.info.as_ref().map_or(0, |i| {
            i.free_memory_bytes.saturating_sub(hs.reserved_memory)
        });
        (
            self.ledger.ours(h) + self.ledger.foreign(h),
            Reverse(free_mem),
            h,
        )
    }

    /// Applies every host change the ledger noted since the last sync.
    pub(super) fn sync_index(&mut self) {
        while let Some(h) = self.ledger.pop_changed() {
            let full = self.host_full(h);
            let free = self.ledger.free(h);
            let score = self.score(h);
            let ix = &mut self.index;
            let was = (ix.full[h], ix.score[h]);
            if (full, score) != was {
                ix.full[h] = full;
                ix.score[h] = score;
                for &(g, c) in &ix.host_groups[h] {
                    if !was.0 {
                        ix.open[g] -= c;
                        ix.open_hosts[g].remove(&(was.1, h));
                    }
                    if !full {
                        ix.open[g] += c;
                        ix.open_hosts[g].insert((score, h));
                    }
                }
            }
            if free != ix.free[h] {
                let k = ix.host_sources[h].len() as u64;
                ix.source_free = ix.source_free - u64::from(ix.free[h]) * k + u64::from(free) * k;
                ix.free[h] = free;
            }
            // Sources parked on a fact about this host look again.
            self.wake_host(h);
            for i in 0..self.index.host_sources[h].len() {
                let si = self.index.host_sources[h][i];
                self.update_eligible(si);
            }
        }
    }

    /// Whether source `si` may start a VM now: its host not full (as last synced), reachable,
    /// and a VM of it ready.
    pub(super) fn source_eligible(&self, si: usize) -> bool {
        let src = self.sources[si].host;
        !self.index.full[src] && self.hosts[src].reachable && !self.sources[si].ready.is_empty()
    }

    /// Puts source `si` in its group's eligible set or takes it out (its host as last synced).
    pub(super) fn update_eligible(&mut self, si: usize) {
        let Some(g) = self.index.group_of.get(si).copied() else {
            // Not built yet (the engine is being created): the build syncs every source.
            return;
        };
        let eligible = self.source_eligible(si);
        if eligible {
            self.index.eligible[g].insert(si);
            // Parked on a VM that is no longer its next: it looks again.
            if let Some(k) = self.parking.parked_key(si) {
                if self.sources[si].ready.first() != Some(&k) {
                    self.unpark(si);
                }
            }
            if !self.parking.is_parked(si) {
                self.parking.active[g].insert(si);
            }
        } else {
            self.index.eligible[g].remove(&si);
            self.unpark(si);
            self.parking.active[g].remove(&si);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::vm::OrderKey;
    use super::*;
    use crate::model::{HostId, HostInfo};
    use crate::spec::{HostLimits, RunSpec, Selection, Settings, SourceSpec};
    use crate::time::Time;

    /// Four sources on six destinations: two share a list, one lists a host twice, one lists
    /// another source's host; so groups overlap and a host can be source and destination.
    fn core() -> Core {
        let source = |h: &str, d: &[&str]| SourceSpec {
            host: HostId::new(h),
            select: Selection::All,
            destinations: d.iter().map(|x| HostId::new(*x)).collect(),
            exclude: vec![],
        };
        let spec = RunSpec {
            run_id: "index".into(),
            sources: vec![
                source("s0", &["d0", "d1", "d2"]),
                source("s1", &["d0", "d1", "d2"]),
                source("s2", &["d2", "d3", "d3", "d4"]),
                source("s3", &["d4", "d5", "s0"]),
            ],
            hosts: ["s0", "s1", "s2", "s3", "d0", "d1", "d2", "d3", "d4", "d5"]
                .iter()
                .map(|h| (HostId::new(*h), HostLimits::default()))
                .collect(),
            layouts: Default::default(),
            pins: Default::default(),
            priorities: Default::default(),
            settings: Settings::default(),
        };
        let mut core = Core::new(spec, Time::ZERO).expect("a valid spec");
        for h in 0..core.hosts.len() {
            core.hosts[h].info = Some(HostInfo {
                migration_limit: Some(2),
                active_migrations: 0,
                free_memory_bytes: 64 << 30,
                free_disk_bytes: 1 << 40,
            });
            core.hosts[h].reachable = true;
            core.refresh_limit(h);
            core.ledger.touch(h);
        }
        core.sync_index();
        core
    }

    /// The index as built from scratch from the engine's state now.
    fn rebuilt(core: &mut Core) -> SchedIndex {
        let synced = std::mem::take(&mut core.index);
        for h in 0..core.hosts.len() {
            core.ledger.touch(h);
        }
        core.build_index();
        std::mem::replace(&mut core.index, synced)
    }

    /// A small deterministic generator (xorshift64), so that a failure can be replayed.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Whatever changes a host or a ready set, in a seeded random order, the index kept up to
    /// date (synced as the scheduler syncs it) equals one rebuilt from scratch.
    #[test]
    fn the_index_kept_up_to_date_equals_one_rebuilt_from_scratch() {
        for seed in 1..=20u64 {
            let mut core = core();
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let n = core.hosts.len();
            let mut held: Vec<(usize, usize)> = Vec::new();
            let mut next_vm = 0;
            for step in 0..400 {
                let h = rng.below(n);
                match rng.below(8) {
                    0 => {
                        let (s, d) = (rng.below(n), rng.below(n));
                        if core.ledger.can_start(s, d) {
                            core.ledger.reserve(s, d);
                            held.push((s, d));
                        }
                    }
                    1 if !held.is_empty() => {
                        let (s, d) = held.swap_remove(rng.below(held.len()));
                        core.ledger.release(s, d);
                    }
                    2 => {
                        let n = rng.below(3) as u32;
                        core.ledger.set_foreign(h, n);
                    }
                    3 => {
                        // A host that reports no slots at all, or some again.
                        let limit = [Some(0), Some(1), Some(2), None][rng.below(4)];
                        if let Some(i) = core.hosts[h].info.as_mut() {
                            i.migration_limit = limit;
                        }
                        core.refresh_limit(h);
                        core.ledger.touch(h);
                    }
                    4 => {
                        core.hosts[h].reserved_memory = (rng.below(8) as u64) << 30;
                        core.ledger.touch(h);
                    }
                    5 => {
                        core.hosts[h].reachable = !core.hosts[h].reachable;
                        core.ledger.touch(h);
                    }
                    6 => {
                        let si = rng.below(core.sources.len());
                        core.sources[si].ready.insert(OrderKey {
                            held_back: false,
                            priority: Reverse(0),
                            size: rng.below(100) as u64,
                            vm: next_vm,
                        });
                        next_vm += 1;
                        core.update_eligible(si);
                    }
                    _ => {
                        let si = rng.below(core.sources.len());
                        core.sources[si].ready.pop_first();
                        core.update_eligible(si);
                    }
                }
                if rng.below(3) == 0 {
                    core.sync_index();
                    let fresh = rebuilt(&mut core);
                    assert_eq!(core.index, fresh, "seed {seed}, step {step}");
                }
            }
        }
    }
}
