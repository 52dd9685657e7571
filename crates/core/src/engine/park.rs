//! Parked sources: sources that a scheduling pass can skip while no pre-flight check can be
//! asked, until something their verdict depends on changes.
//!
//! While the pre-flight checks in flight are at their bound, a pass that looks at a source's
//! next ready VM often does nothing: the VM has no clear answer at all (it waits for a check),
//! or its clear answers are for destinations that have since filled and its best destination
//! needs a check. Looking again at every such source on every input made each pass cost the
//! number of sources, and the run's cost grow with sources x inputs (5.5 µs per step at 10,000
//! VMs, 14 µs at 20,000). A source whose next VM was found in one of these states is *parked*:
//! - **waiting for a check**: the VM has no clear answer (it is live, or offline moves are
//!   allowed: an offline VM is never parked). Nothing can change that but the VM itself (any
//!   transition of it wakes the source);
//! - **cleared elsewhere**: every destination the VM has a clear answer for cannot take it now
//!   (`Core::judge` says no), and some destination of its list can (the *witness*, not refused
//!   nor blocked for it): placement then chooses a destination that fits and is not cleared,
//!   which needs a check, so nothing happens. The source watches those destinations, the
//!   witness and its own host: any change noted of one of them wakes it.
//!
//! A parked source stays eligible (in the index's eligible set) but out of its group's
//! `active` set, which the pass takes its candidates from. A pass skips parked sources only
//! while no check can be asked; until then it takes them in order with the others (merging the
//! parked set, ordered by the same key, with its heap), so the order in which VMs are looked at
//! and everything they do is the same as when every source was looked at. A source woken
//! during a pass whose next VM the pass has not reached yet joins the pass's heap; one the
//! pass has already passed is done for this pass, as it was before (it did nothing then).
//!
//! A source is woken (unparked) when: its next VM changes (its ready set or eligibility),
//! its VM takes any transition (`Core::step`), a watched host changes (the slot ledger notes
//! every change to a host's slots, figures or reservations), or a pass takes it.

use super::Core;
use super::schedule::{Judged, Place, Score};
use super::vm::OrderKey;
use crate::model::MigrationMode;
use std::collections::BTreeSet;
use std::sync::Arc;

/// How many of its group's open hosts are looked at for a VM's witness.
const WITNESS_LOOKS: usize = 16;

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct Parking {
    /// Per source: the key of its next ready VM while it is parked.
    of: Vec<Option<OrderKey>>,
    /// The parked sources, by the key of their next ready VM.
    pub(super) set: BTreeSet<(OrderKey, usize)>,
    /// Per group: its eligible sources that are not parked (a pass's candidates).
    pub(super) active: Vec<BTreeSet<usize>>,
    /// Per host: the sources parked on a fact about it, with the stamp of that parking.
    watchers: Vec<Vec<(usize, u64)>>,
    /// Per source: how many times it was parked (a watcher with an older stamp is stale).
    stamp: Vec<u64>,
    /// A scheduling pass is under way.
    pub(super) in_pass: bool,
    /// The key the pass under way took last (its keys only grow).
    pub(super) last: Option<OrderKey>,
    /// Sources woken during the pass under way whose next VM it has not reached yet.
    pub(super) woken: Vec<(OrderKey, usize)>,
}

impl Parking {
    /// Empty parking for `sources` sources, `groups` groups and `hosts` hosts.
    pub(super) fn new(sources: usize, groups: usize, hosts: usize) -> Self {
        Parking {
            of: vec![None; sources],
            active: vec![BTreeSet::new(); groups],
            watchers: vec![Vec::new(); hosts],
            stamp: vec![0; sources],
            ..Parking::default()
        }
    }

    /// Whether source `si` is parked.
    pub(super) fn is_parked(&self, si: usize) -> bool {
        self.of.get(si).is_some_and(Option::is_some)
    }

    /// The VM source `si` is parked on, if it is parked.
    pub(super) fn parked_vm(&self, si: usize) -> Option<usize> {
        self.of.get(si).copied().flatten().map(|k| k.vm)
    }

    /// The key source `si` is parked with, if it is parked.
    pub(super) fn parked_key(&self, si: usize) -> Option<OrderKey> {
        self.of.get(si).copied().flatten()
    }
}

impl Core {
    /// Wakes source `si` if it is parked: back among its group's candidates (if eligible), and
    /// into the pass under way if that has not reached its next VM yet.
    pub(super) fn unpark(&mut self, si: usize) {
        let Some(k) = self.parking.of.get_mut(si).and_then(Option::take) else {
            return;
        };
        let p = &mut self.parking;
        p.set.remove(&(k, si));
        p.stamp[si] += 1;
        let g = self.index.group_of[si];
        if self.index.eligible[g].contains(&si) {
            p.active[g].insert(si);
        }
        if p.in_pass && p.last.is_none_or(|l| k > l) {
            p.woken.push((k, si));
        }
    }

    /// Wakes every source parked on a fact about host `h`, and the sources on it.
    pub(super) fn wake_host(&mut self, h: usize) {
        if self.parking.watchers.is_empty() {
            return;
        }
        let watching = std::mem::take(&mut self.parking.watchers[h]);
        for (si, stamp) in watching {
            if self.parking.stamp[si] == stamp {
                self.unpark(si);
            }
        }
        for i in 0..self.index.host_sources[h].len() {
            let si = self.index.host_sources[h][i];
            self.unpark(si);
        }
    }

    /// Parks source `si` on its next ready VM `key` if looking at it again would do nothing
    /// while no check can be asked (see the module docs); returns whether it did.
    pub(super) fn try_park(&mut self, si: usize, key: OrderKey) -> bool {
        if !self.spec.settings.preflight
            || !self.preflight_full()
            || !self.ledger.cluster_has_room()
            || self.parking.is_parked(si)
            || self.sources[si].ready.first() != Some(&key)
        {
            return false;
        }
        let g = self.index.group_of[si];
        let src = self.sources[si].host;
        if !self.index.eligible[g].contains(&si)
            || self.host_full(src)
            || !self.hosts[src].reachable
            || self.reports_no_slots(src)
        {
            return false;
        }
        let idx = key.vm;
        let vm = &self.vms[idx].vm;
        if vm.mode == MigrationMode::Offline || self.vms[idx].source != src {
            return false;
        }
        let mut watch: Vec<usize> = Vec::new();
        if !vm.preflight.clear.is_empty() {
            // Only a VM whose list is its source's (its group's open hosts are its candidates).
            let own_list = self.sources[si]
                .destination_ids
                .as_ref()
                .is_some_and(|ids| Arc::ptr_eq(ids, &vm.destinations));
            if !own_list {
                return false;
            }
            // The best score of a cleared destination that can take it now.
            let (need_mem, need_disk) = self.needs(idx);
            let mut cleared: Option<Score> = None;
            debug_assert_eq!(
                self.vms[idx]
                    .clear_hosts
                    .iter()
                    .map(|&h| &self.hosts[h].id)
                    .collect::<BTreeSet<_>>(),
                vm.preflight.clear.iter().collect(),
                "the clear answers' host indexes are in step with them"
            );
            for &h in &self.vms[idx].clear_hosts {
                // No free slot: it cannot take it (`Core::judge` would say so, at more cost).
                if self.ledger.free(h) > 0
                    && let Judged::Fits(score) = self.judge(src, h, need_mem, need_disk)
                {
                    cleared = Some(cleared.map_or(score, |c| c.min(score)));
                }
                watch.push(h);
            }
            let Some(w) = self.witness(si, idx, cleared) else {
                return false;
            };
            watch.push(w);
        }
        let p = &mut self.parking;
        p.of[si] = Some(key);
        p.set.insert((key, si));
        p.active[g].remove(&si);
        p.stamp[si] += 1;
        let stamp = p.stamp[si];
        for h in watch {
            let list = &mut p.watchers[h];
            if list.len() == list.capacity() && list.len() >= 16 {
                // Before it grows: forget the watchers of parkings over (amortized: it grows
                // when more than half of them are current).
                list.retain(|&(s, st)| p.stamp[s] == st);
            }
            list.push((si, stamp));
        }
        true
    }

    /// A destination of VM `idx`'s list, not cleared, refused nor blocked for it, that can take
    /// it now with a better score than `cleared` (the best of its cleared destinations that
    /// can): placement then chooses a destination that needs a check. The worst such of its
    /// group's open hosts, looked for among a few: the best are those the next starts take.
    fn witness(&self, si: usize, idx: usize, cleared: Option<Score>) -> Option<usize> {
        let vm = &self.vms[idx].vm;
        let src = self.vms[idx].source;
        let (need_mem, need_disk) = self.needs(idx);
        let open = &self.index.open_hosts[self.index.group_of[si]];
        let below = match cleared {
            Some(c) => open.range(..(c, 0)),
            None => open.range(..),
        };
        for &(_, h) in below.rev().take(WITNESS_LOOKS) {
            let d = &self.hosts[h].id;
            if self.vms[idx].clear_hosts.contains(&h) || vm.passed_over(d) {
                continue;
            }
            if let Judged::Fits(score) = self.judge(src, h, need_mem, need_disk) {
                if cleared.is_none_or(|c| score < c) {
                    return Some(h);
                }
            }
        }
        None
    }
}

impl Core {
    /// Checks what parking promises (for tests, after any input; `Err` says what is wrong);
    /// returns how many parked sources were checked to do nothing if looked at (0 while a
    /// check can be asked or a host change is not applied yet, when that is not promised): every eligible source is either parked or among
    /// its group's candidates, never both; and, once every host change is applied and no
    /// check can be asked, a parked source's next VM is its first ready one and looking at it
    /// would do nothing (no clear answer, or placement chooses a destination it has none for).
    #[doc(hidden)]
    pub fn check_parking(&self) -> Result<usize, String> {
        let p = &self.parking;
        if p.of.is_empty() {
            return Ok(0);
        }
        for (g, eligible) in self.index.eligible.iter().enumerate() {
            for &si in &p.active[g] {
                if !eligible.contains(&si) || p.is_parked(si) {
                    return Err(format!(
                        "source {si} is a candidate, parked or not eligible"
                    ));
                }
            }
            for &si in eligible {
                if !p.is_parked(si) && !p.active[g].contains(&si) {
                    return Err(format!(
                        "eligible source {si} is neither parked nor a candidate"
                    ));
                }
            }
        }
        for &(key, si) in &p.set {
            if p.parked_key(si) != Some(key) {
                return Err(format!("source {si} is in the parked set with another key"));
            }
        }
        let checks = !(self.spec.settings.preflight && self.preflight_full());
        if self.ledger.has_changes() || checks || !self.ledger.cluster_has_room() {
            return Ok(0);
        }
        let pins = !self.spec.pins.is_empty();
        for &(key, si) in &p.set {
            let g = self.index.group_of[si];
            if !self.index.eligible[g].contains(&si) {
                return Err(format!("source {si} is parked but not eligible"));
            }
            if self.sources[si].ready.first() != Some(&key) {
                return Err(format!(
                    "source {si} is parked on a VM that is not its next"
                ));
            }
            let vm = &self.vms[key.vm].vm;
            if vm.mode == MigrationMode::Offline {
                return Err(format!("source {si} is parked on an offline VM"));
            }
            let src = self.sources[si].host;
            if vm.preflight.clear.is_empty()
                || self.host_full(src)
                || !self.hosts[src].reachable
                || (!pins && self.index.open[g] == 0)
            {
                continue;
            }
            match self.place(key.vm, false) {
                Place::To(d) if !vm.preflight.clear.contains(&self.hosts[d].id) => {}
                Place::To(d) => {
                    return Err(format!(
                        "source {si} is parked but {} would start toward {}",
                        vm.id, self.hosts[d].id
                    ));
                }
                Place::Wait(w) if vm.wait.as_ref() == Some(&w) => {}
                Place::Wait(w) => {
                    return Err(format!(
                        "source {si} is parked but {} would be told to wait: {w:?}",
                        vm.id
                    ));
                }
                Place::Never(r) => {
                    return Err(format!(
                        "source {si} is parked but {} would be found unmigratable: {r:?}",
                        vm.id
                    ));
                }
            }
        }
        Ok(p.set.len())
    }
}
