//! Host state and refreshes: what a host's listing tells the engine (its figures, where our VMs
//! are, foreign migrations, a source's selection), and a host that stays unreachable.

use super::Core;
use super::assess::is_observed_wait;
use super::slots::SlotLedger;
use super::timers::TimerKey;
use super::vm;
use crate::event::{EventKind, Phase, Reason, WaitReason};
use crate::io::Command;
use crate::machine::{Assessment, VmEvent, VmMove};
use crate::model::{Failure, HostId, HostInfo, MigrationMode, VmId, VmInfo};
use crate::select;
use crate::spec::{Order, SchedulerPolicy, Selection};
use crate::time::Time;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

/// Consecutive failed refreshes after which a host is considered down. A failed refresh is
/// retried every `recheck_interval`, so at the default 10 s this is five minutes of failures;
/// then a source never listed fails the run (instead of waiting forever) and its queued VMs are
/// given up, and placement skips a destination that is down.
pub const HOST_DOWN_AFTER_FAILURES: u32 = 30;

/// What the engine knows about one host, indexed like the slot ledger.
#[derive(Debug)]
pub(super) struct HostState {
    pub(super) id: HostId,
    /// The run's configured cap on its migrations.
    pub(super) cap: Option<u32>,
    /// Its figures from the last listing that succeeded.
    pub(super) info: Option<HostInfo>,
    /// Its last refresh succeeded.
    pub(super) reachable: bool,
    /// It has answered a refresh at least once (listed, or failed).
    pub(super) answered: bool,
    /// Refreshes failed in a row.
    pub(super) failures: u32,
    /// Failed [`HOST_DOWN_AFTER_FAILURES`] times in a row, and not listed since.
    pub(super) down: bool,
    /// A refresh is asked and not answered yet (never two at once).
    pub(super) refresh_outstanding: bool,
    /// When the last refresh that succeeded was asked.
    pub(super) last_ok_requested_at: Option<Time>,
    /// Memory reserved here by moves not yet shown in its own figures.
    pub(super) reserved_memory: u64,
    /// Disk reserved here by moves not yet shown in its own figures.
    pub(super) reserved_disk: u64,
    /// Our VMs last seen listed on this host.
    pub(super) seen_ours: BTreeSet<usize>,
    /// When our slots on this host were last released (to tell stale listings from foreign ones).
    pub(super) releases: VecDeque<Time>,
    /// The (limit, foreign migrations) last announced in `HostSeen`.
    pub(super) announced: Option<(u32, u32)>,
    /// Our VMs that arrived here and whose reservation awaits a refresh that shows them.
    pub(super) settling: Vec<usize>,
    /// Our pre-flight checks in flight toward it (`Core::check_at` spreads checks by them).
    pub(super) checks: u32,
    /// The VMs its last listing showed migrating that are not ours (for the slot ledger).
    pub(super) foreign_vms: Vec<VmId>,
    /// By position in its last listing, the VM of ours shown there and its index: a listing
    /// that shows the same VMs in the same order, by the same shared ids, finds each one's
    /// index without hashing its id (`ListingHint::index_of`). A host lists all its VMs every
    /// `poll_interval`: at 100,000 VMs those look-ups hashed an id and probed a table of 100,000
    /// per VM listed. Only a hint: an id that is not this very one is looked up in `Core::vm_index`, which
    /// never forgets an id nor gives it another index (`Core::push_vm` forgets every hint if
    /// it ever did).
    pub(super) listing_hint: Vec<Option<(VmId, usize)>>,
}

impl HostState {
    pub(super) fn new(id: HostId, cap: Option<u32>) -> Self {
        HostState {
            id,
            cap,
            info: None,
            reachable: false,
            answered: false,
            failures: 0,
            down: false,
            refresh_outstanding: false,
            last_ok_requested_at: None,
            reserved_memory: 0,
            reserved_disk: 0,
            seen_ours: BTreeSet::new(),
            releases: VecDeque::new(),
            announced: None,
            settling: Vec::new(),
            checks: 0,
            foreign_vms: Vec::new(),
            listing_hint: Vec::new(),
        }
    }
}

/// A source host of the run and its VMs ready to start.
#[derive(Debug)]
pub(super) struct SourceState {
    /// Its host index.
    pub(super) host: usize,
    /// Which of its VMs the run moves.
    pub(super) select: Selection,
    /// Which it never moves.
    pub(super) exclude: Vec<String>,
    /// Host indexes its VMs may go to (unless pinned), shared by the sources with the same list.
    pub(super) destinations: Arc<[usize]>,
    /// The same list by id, shared by its VMs (set when its selection is made): placement
    /// reads the host indexes above for a VM whose list this is, instead of looking up each id.
    pub(super) destination_ids: Option<Arc<[HostId]>>,
    /// Its selection is made (or given up): no more VMs come from it.
    pub(super) resolved: bool,
    /// Its queued VMs that may start as soon as a slot and a destination allow.
    pub(super) ready: BTreeSet<vm::OrderKey>,
    /// Its plan (`pack.rs`) is to be made again: a VM of it changed phase, or its ready set
    /// changed. It is then in `Core::pack_due`.
    pub(super) pack_due: bool,
    /// Under [`Order::Packed`](crate::spec::Order::Packed): the VM of it whose pre-flight check
    /// the scheduler asked instead of starting it, in the plan's order. Until that check
    /// answers, no later VM of the source starts in its place (`pack.rs`).
    pub(super) awaiting: Option<usize>,
    /// Its ready VMs are in the order of a plan (`pack.rs`), not largest first.
    pub(super) planned: bool,
}

impl SourceState {
    pub(super) fn new(
        host: usize,
        select: Selection,
        exclude: Vec<String>,
        destinations: Arc<[usize]>,
    ) -> Self {
        SourceState {
            host,
            select,
            exclude,
            destinations,
            destination_ids: None,
            resolved: false,
            ready: BTreeSet::new(),
            pack_due: false,
            awaiting: None,
            planned: false,
        }
    }
}

impl Core {
    /// Sets a host's effective slot limit from its figures and the caps that apply to it.
    pub(super) fn refresh_limit(&mut self, h: usize) {
        let s = &self.spec.settings;
        let reported = self.hosts[h].info.as_ref().and_then(|i| i.migration_limit);
        let lim = SlotLedger::effective_limit(
            reported,
            s.default_host_limit,
            &[self.hosts[h].cap, s.max_parallel],
        );
        self.ledger.set_limit(h, lim);
    }

    /// Asks for a refresh of a host now, unless one is already under way.
    pub(super) fn issue_refresh(&mut self, h: usize) {
        let hs = &mut self.hosts[h];
        if hs.refresh_outstanding {
            return;
        }
        hs.refresh_outstanding = true;
        self.commands.push_back((
            Command::RefreshHost {
                host: hs.id.clone(),
            },
            None,
        ));
    }

    /// Asks for a refresh of a host at `at`, unless one is due sooner.
    fn schedule_refresh(&mut self, h: usize, at: Time) {
        let key = TimerKey::Host(h);
        if self.timers.due_at(key).is_some_and(|t| t <= at) {
            return;
        }
        self.timers.schedule(key, at, vm::vm_timers(&self.vms));
    }

    /// A host's refresh answered: its figures, our VMs on it, foreign migrations, the selection
    /// of a source listed for the first time, and the next refresh.
    pub(super) fn on_refresh(
        &mut self,
        h: usize,
        now: Time,
        requested_at: Time,
        result: Result<(HostInfo, Vec<VmInfo>), Failure>,
    ) {
        self.hosts[h].refresh_outstanding = false;
        self.dirty = true;
        // Its reachability and figures may change: the scheduler's index looks again.
        self.ledger.touch(h);
        let recheck = self.spec.settings.recheck_interval;
        match result {
            Err(f) => {
                let first = self.hosts[h].failures == 0;
                self.note_answered(h);
                let hs = &mut self.hosts[h];
                hs.failures += 1;
                hs.reachable = false;
                if first {
                    let host = hs.id.clone();
                    self.emit(EventKind::HostUnreachable {
                        host,
                        error: f.message.clone(),
                    });
                }
                if self.hosts[h].failures >= HOST_DOWN_AFTER_FAILURES && !self.hosts[h].down {
                    self.host_down(h, now, &f.message);
                } else if self.stopping.is_some() {
                    // Stopping: a source not listed yet is not waited for again.
                    self.unlisted_source(h, &format!("not listed before the stop: {}", f.message));
                }
                self.schedule_refresh(h, now + recheck);
            }
            Ok((info, vms)) => self.on_listing(h, now, requested_at, info, vms),
        }
        if !self.initialized && self.answered_count == self.hosts.len() {
            self.initialized = true;
            // VMs recovered from a journal are placed once every host has been listed.
            let pending: Vec<usize> = self.searching.iter().copied().collect();
            for i in pending {
                if self.vms[i].vm.phase() == Phase::Queued {
                    self.reassess(i, now);
                }
            }
        }
    }

    /// Host `h` answered a refresh (listed or failed): counted once, for `Core::initialized`.
    fn note_answered(&mut self, h: usize) {
        if !std::mem::replace(&mut self.hosts[h].answered, true) {
            self.answered_count += 1;
        }
    }

    /// A host's refresh succeeded.
    fn on_listing(
        &mut self,
        h: usize,
        now: Time,
        requested_at: Time,
        info: HostInfo,
        vms: Vec<VmInfo>,
    ) {
        self.note_answered(h);
        {
            let hs = &mut self.hosts[h];
            hs.failures = 0;
            hs.reachable = true;
            hs.down = false;
            hs.info = Some(info.clone());
            hs.last_ok_requested_at = Some(requested_at);
        }
        self.refresh_limit(h);
        let (mut changed, unchanged) = self.note_listing(h, requested_at, &vms);
        let foreign = self.count_foreign(h, requested_at, &info, &vms);
        self.ledger.set_foreign(h, foreign);
        self.settle_reservations(h, requested_at);
        let announce = (self.ledger.limit(h), foreign);
        if self.hosts[h].announced != Some(announce) {
            self.hosts[h].announced = Some(announce);
            self.emit(EventKind::HostSeen {
                host: self.hosts[h].id.clone(),
                limit: announce.0,
                foreign,
                free_memory_bytes: info.free_memory_bytes,
                free_disk_bytes: info.free_disk_bytes,
            });
        }
        // Selections of sources listed for the first time.
        for i in 0..self.index.host_sources[h].len() {
            let si = self.index.host_sources[h][i];
            if !self.sources[si].resolved {
                self.resolve_source(si, &vms, now);
            }
        }
        if self.initialized {
            changed.extend(self.searching.iter().copied());
        }
        changed.sort_unstable();
        changed.dedup();
        for i in changed {
            if self.vms[i].vm.phase() == Phase::Queued
                && !(unchanged.binary_search(&i).is_ok() && self.settled_ready(i))
            {
                self.reassess(i, now);
            }
        }
        let fast = foreign > 0
            || self.hosts[h].seen_ours.iter().any(|&i| {
                let vm = &self.vms[i].vm;
                vm.phase() == Phase::Queued && vm.wait.as_ref().is_some_and(is_observed_wait)
            });
        let s = &self.spec.settings;
        let every = if fast {
            s.recheck_interval.min(s.poll_interval)
        } else {
            s.poll_interval
        };
        self.schedule_refresh(h, now + every);
    }

    /// Where a listing shows our VMs (unless a locate answer newer than the listing said
    /// otherwise; a VM it shows in a final phase is no longer followed, `Core::unfollow`);
    /// returns the VMs to assess again (those it shows, and those it no longer shows) and, in
    /// index order, those it shows as the host's last listing did (`Core::settled_ready` tells
    /// whether assessing them again would change anything).
    fn note_listing(
        &mut self,
        h: usize,
        requested_at: Time,
        vms: &[VmInfo],
    ) -> (Vec<usize>, Vec<usize>) {
        // Ours in the listing, by index; of a VM listed twice the last entry counts. A sorted
        // vector, not a map: a host is listed every poll interval.
        let mut hint = ListingHint::new(std::mem::take(&mut self.hosts[h].listing_hint));
        let mut listed: Vec<(usize, &VmInfo)> = Vec::with_capacity(vms.len());
        for v in vms {
            if let Some(i) = hint.index_of(&v.id, |id| self.vm_index.get(id).copied())
                && !self.unfollowed[i]
            {
                listed.push((i, v));
            }
        }
        let hint = hint.finish();
        debug_assert!(
            hint.iter()
                .flatten()
                .all(|(id, i)| self.vm_index.get(id) == Some(i))
        );
        self.hosts[h].listing_hint = hint;
        listed.sort_by_key(|&(i, _)| i);
        listed.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                *kept = *later;
            }
            same
        });
        let mut changed = Vec::new();
        let mut unchanged = Vec::new();
        let previously: Vec<usize> = self.hosts[h].seen_ours.iter().copied().collect();
        for i in previously {
            let still = listed.binary_search_by_key(&i, |&(j, _)| j).is_ok();
            if !still && self.vms[i].observed_at <= requested_at {
                self.vms[i].seen.remove(&h);
                self.hosts[h].seen_ours.remove(&i);
                changed.push(i);
            }
        }
        for (i, v) in listed {
            if self.vms[i].vm.phase().is_final() {
                self.unfollow(i);
                continue;
            }
            if self.vms[i].observed_at <= requested_at {
                // Most listings say what the one before said: nothing to replace then.
                if self.vms[i].seen.get(&h) != Some(v) {
                    self.vms[i].seen.insert(h, v.clone());
                    self.hosts[h].seen_ours.insert(i);
                } else {
                    unchanged.push(i);
                }
                changed.push(i);
            }
        }
        (changed, unchanged)
    }

    /// VM `idx`, in a final phase, is no longer followed through the hosts' listings: what they
    /// showed of it is forgotten, and later listings pass over it (`Core::unfollowed`).
    fn unfollow(&mut self, idx: usize) {
        debug_assert!(self.vms[idx].vm.phase().is_final());
        self.unfollowed[idx] = true;
        for (&h, _) in &std::mem::take(&mut self.vms[idx].seen) {
            self.hosts[h].seen_ours.remove(&idx);
        }
    }

    /// Queued VM `idx` is ready with nothing pending (no wait but the scheduler's own, no hold,
    /// timer, check or search, its source not parked on it) and its hosts still say it is ready
    /// in its mode: assessing it again would be a transition that changes nothing
    /// (`machine::queued::assessed`). A host lists every VM of it each `poll_interval`: at
    /// 100,000 VMs, most of those assessments were such no-ops, each reading the VM's state from
    /// memory.
    fn settled_ready(&self, idx: usize) -> bool {
        let e = &self.vms[idx];
        let vm = &e.vm;
        self.stopping.is_none()
            && vm.stopped.is_none()
            && vm.wait.as_ref().is_none_or(WaitReason::is_schedulers)
            && vm.held_since.is_none()
            && vm.timer.is_none()
            && vm.preflight.waiting_since.is_none()
            && vm.preflight.asking.is_none()
            && e.ready_key.is_some()
            && e.missing_since.is_none()
            && !self.searching.contains(&idx)
            && self
                .source_state
                .get(e.source)
                .copied()
                .flatten()
                .is_none_or(|si| self.parking.parked_vm(si) != Some(idx))
            && matches!(self.assess(idx), Assessment::Ready(m) if m == vm.mode)
    }

    /// Foreign migrations on a host: listed migrating VMs that are not ours in flight (nor ours
    /// that ended after this listing was asked for), or the host's own count beyond ours.
    fn count_foreign(
        &mut self,
        h: usize,
        requested_at: Time,
        info: &HostInfo,
        vms: &[VmInfo],
    ) -> u32 {
        while self.hosts[h]
            .releases
            .front()
            .is_some_and(|&t| t < requested_at)
        {
            self.hosts[h].releases.pop_front();
        }
        let mut listed_foreign = 0u32;
        self.hosts[h].foreign_vms.clear();
        for v in vms {
            if !v.activity.is_migration() {
                continue;
            }
            let ours = self.vm_index.get(&v.id).is_some_and(|&i| {
                let e = &self.vms[i];
                e.slot.is_some() || e.last_release.is_some_and(|t| t >= requested_at)
            });
            if !ours {
                listed_foreign += 1;
                self.hosts[h].foreign_vms.push(v.id.clone());
            }
        }
        let ours_then = self.ledger.ours(h) + self.hosts[h].releases.len() as u32;
        let counted_foreign = info.active_migrations.saturating_sub(ours_then);
        listed_foreign.max(counted_foreign)
    }

    /// A host failed [`HOST_DOWN_AFTER_FAILURES`] refreshes in a row: a source never listed fails
    /// the run, and its queued VMs are given up.
    fn host_down(&mut self, h: usize, now: Time, why: &str) {
        self.hosts[h].down = true;
        let host = self.hosts[h].id.clone();
        self.unlisted_source(h, why);
        for i in 0..self.vms.len() {
            if self.vms[i].vm.phase() == Phase::Queued && self.vms[i].source == h {
                self.step(
                    i,
                    now,
                    VmEvent::Assessed(Assessment::Unmigratable(Reason::SourceDown(host.clone()))),
                );
            }
        }
    }

    /// Host `h` will not be listed (down, or the run stops and it did not answer): each source
    /// on it not listed yet is given up, and fails the run (its VMs are unknown: the run cannot
    /// say what it leaves there).
    fn unlisted_source(&mut self, h: usize, why: &str) {
        let host = self.hosts[h].id.clone();
        for si in 0..self.sources.len() {
            if self.sources[si].host == h && !self.sources[si].resolved {
                self.sources[si].resolved = true;
                let msg = format!("could not list source host {host}: {why}");
                self.failed.get_or_insert(msg.clone());
                self.emit(EventKind::RunFailed { error: msg });
            }
        }
    }

    /// A source's first listing: applies its selection and adds the VMs chosen.
    fn resolve_source(&mut self, si: usize, listed: &[VmInfo], now: Time) {
        self.sources[si].resolved = true;
        let host = self.sources[si].host;
        let host_id = self.hosts[host].id.clone();
        let sel =
            select::apply_excluding(&self.sources[si].select, &self.sources[si].exclude, listed);
        for p in &sel.unmatched_patterns {
            self.emit(EventKind::SelectionUnmatched {
                source: host_id.clone(),
                pattern: p.clone(),
            });
        }
        let order = if self.spec.settings.policy == SchedulerPolicy::Seed {
            Order::AsGiven
        } else {
            self.spec.settings.order
        };
        // One list by id for the sources with the same list (its first source makes it).
        let shared = self.sources.iter().find_map(|s| {
            s.destination_ids
                .as_ref()
                .filter(|_| Arc::ptr_eq(&s.destinations, &self.sources[si].destinations))
        });
        let dests: Arc<[HostId]> = match shared {
            Some(ids) => ids.clone(),
            None => self.sources[si]
                .destinations
                .iter()
                .map(|&d| self.hosts[d].id.clone())
                .collect(),
        };
        self.sources[si].destination_ids = Some(dests.clone());
        let mut new = Vec::new();
        for &li in &sel.chosen {
            let info = &listed[li];
            if self.vm_index.contains_key(&info.id) {
                continue;
            }
            let mode = info.power.migration_mode();
            let destinations: Arc<[HostId]> = match self.spec.pins.get(&*info.name) {
                Some(p) => Arc::from(vec![p.clone()]),
                None => dests.clone(),
            };
            let idx = self.push_vm(
                VmMove::new(
                    info.id.clone(),
                    info.name.to_string(),
                    host_id.clone(),
                    destinations,
                    info.memory_bytes,
                    info.disk_bytes,
                    mode,
                ),
                host,
            );
            self.vms[idx].seen.insert(host, info.clone());
            self.hosts[host].seen_ours.insert(idx);
            let prio = self.spec.priorities.get(&*info.name).copied().unwrap_or(0);
            self.set_order(
                idx,
                prio,
                vm::size_key(order, info.memory_bytes, info.disk_bytes),
            );
            self.emit(EventKind::Selected {
                vm: info.id.clone(),
                name: info.name.to_string(),
                source: host_id.clone(),
                mode,
                memory_bytes: info.memory_bytes,
                disk_bytes: info.disk_bytes,
            });
            new.push(idx);
        }
        for name in sel.missing {
            let id = VmId::new(format!("missing:{host_id}/{name}"));
            let idx = self.push_vm(
                VmMove::new(
                    id,
                    name,
                    host_id.clone(),
                    dests.clone(),
                    0,
                    0,
                    MigrationMode::Live,
                ),
                host,
            );
            self.step(
                idx,
                now,
                VmEvent::Assessed(Assessment::Unmigratable(Reason::NotFound)),
            );
        }
        // Whether the source is in its shared list, asked once (the list can hold thousands).
        let source_in_shared = dests.contains(&host_id);
        for idx in new {
            let vm = &self.vms[idx].vm;
            let pinned_to_source = if Arc::ptr_eq(&vm.destinations, &dests) {
                source_in_shared
            } else {
                vm.destinations.contains(&vm.source)
            };
            if let Some(reason) = self.stopping.clone() {
                self.step(
                    idx,
                    now,
                    VmEvent::Stop {
                        abort_running: false,
                        reason,
                    },
                );
            } else if pinned_to_source {
                self.step(
                    idx,
                    now,
                    VmEvent::Assessed(Assessment::Unmigratable(Reason::PinnedToSource)),
                );
            } else {
                self.reassess(idx, now);
            }
        }
    }
}

/// A host's last listing as [`HostState::listing_hint`] keeps it, read along the next one and
/// rewritten in place as it goes: each VM shown is looked for at the read cursor and a few
/// places after it (VMs that left the host since shift the rest), and what is found is moved to
/// the write cursor, which never passes the read one. A listing like the last one moves and
/// writes nothing; its ids are not cloned again. Once a VM that arrived finds no slot left
/// behind the read cursor, the rest of the listing's slots go to `spill` (inserting each would
/// shift the unread rest: quadratic for a driver whose every listing is new text).
struct ListingHint {
    /// Slots before `write` are this listing's; from `read` on, the last listing's not yet
    /// read; between them, slots read and left (VMs that left, or found further on).
    slots: Vec<Option<(VmId, usize)>>,
    read: usize,
    write: usize,
    /// This listing's slots after those before `write`, once it no longer fits in place.
    spill: Vec<Option<(VmId, usize)>>,
    spilling: bool,
}

/// How many places past the read cursor a VM is looked for: as many VMs as may leave a host
/// between two of its listings and still let the rest be found.
const HINT_LOOKAHEAD: usize = 4;

impl ListingHint {
    fn new(slots: Vec<Option<(VmId, usize)>>) -> Self {
        ListingHint {
            slots,
            read: 0,
            write: 0,
            spill: Vec::new(),
            spilling: false,
        }
    }

    /// The index of the VM the listing shows next, `id`, if it is ours: from the last
    /// listing when it showed this very id (the same shared text) near the read cursor, else
    /// from `lookup`. A VM not ours where the last listing showed one not ours takes its place,
    /// so that a host's foreign VMs do not hold the cursor back.
    fn index_of(
        &mut self,
        id: &VmId,
        lookup: impl FnOnce(&VmId) -> Option<usize>,
    ) -> Option<usize> {
        let end = (self.read + HINT_LOOKAHEAD).min(self.slots.len());
        let found = (self.read..end).find(|&k| {
            self.slots[k]
                .as_ref()
                .is_some_and(|(known, _)| known.is_same_text(id))
        });
        if let Some(at) = found {
            self.read = at + 1;
            if self.spilling {
                let kept = self.slots[at].take();
                let index = kept.as_ref().map(|&(_, i)| i);
                self.spill.push(kept);
                return index;
            }
            // Slot `write` is this listing's next; what it held was read and left.
            self.slots.swap(self.write, at);
            let index = self.slots[self.write].as_ref().map(|&(_, i)| i);
            self.write += 1;
            return index;
        }
        let index = lookup(id);
        let slot = index.map(|i| (id.clone(), i));
        if index.is_none() && self.slots.get(self.read).is_some_and(Option::is_none) {
            self.read += 1;
        }
        if !self.spilling && self.write < self.read {
            self.slots[self.write] = slot;
            self.write += 1;
        } else {
            self.spilling = true;
            self.spill.push(slot);
        }
        index
    }

    /// The hint for the next listing: this listing's slots.
    fn finish(mut self) -> Vec<Option<(VmId, usize)>> {
        self.slots.truncate(self.write);
        self.slots.append(&mut self.spill);
        self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Reads `listing` with the hint `last` as `Core::note_listing` does: each position's index
    /// and how many were looked up by id; the new hint is left in `last`.
    fn read(
        last: &mut Vec<Option<(VmId, usize)>>,
        listing: &[VmId],
        ours: &HashMap<String, usize>,
    ) -> (Vec<Option<usize>>, usize) {
        let mut hint = ListingHint::new(std::mem::take(last));
        let mut lookups = 0;
        let found = listing
            .iter()
            .map(|id| {
                hint.index_of(id, |id| {
                    lookups += 1;
                    ours.get(id.as_str()).copied()
                })
            })
            .collect();
        *last = hint.finish();
        (found, lookups)
    }

    fn ids(n: usize) -> Vec<VmId> {
        (0..n).map(|i| VmId::new(format!("vm-{i}"))).collect()
    }

    fn ours(ids: &[VmId]) -> HashMap<String, usize> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| (id.as_str().to_string(), i))
            .collect()
    }

    #[test]
    fn a_listing_like_the_last_finds_every_vm_without_a_look_up() {
        let vms = ids(20);
        let map = ours(&vms);
        let mut hint = Vec::new();
        let (first, lookups) = read(&mut hint, &vms, &map);
        assert_eq!(lookups, 20);
        assert_eq!(first, (0..20).map(Some).collect::<Vec<_>>());
        let (again, lookups) = read(&mut hint, &vms, &map);
        assert_eq!((again, lookups), (first, 0));
    }

    #[test]
    fn a_vm_gone_or_come_since_the_last_listing_costs_one_look_up_not_the_rest() {
        let vms = ids(30);
        let map = ours(&vms);
        let mut hint = Vec::new();
        read(&mut hint, &vms[..20], &map);
        // Two left from the middle, one arrived at the end and one before the last.
        let mut next: Vec<VmId> = vms[..20].to_vec();
        next.remove(12);
        next.remove(5);
        next.push(vms[25].clone());
        next.insert(next.len() - 2, vms[26].clone());
        let (found, lookups) = read(&mut hint, &next, &map);
        assert_eq!(lookups, 2, "only the two that arrived are looked up");
        let expected: Vec<Option<usize>> = next
            .iter()
            .map(|id| map.get(id.as_str()).copied())
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn the_same_name_read_afresh_is_looked_up_and_foreign_vms_do_not_hold_the_cursor() {
        let vms = ids(10);
        let map = ours(&vms[..6]);
        let mut hint = Vec::new();
        // Four VMs not ours in a row in the middle: more than the look-ahead.
        let listing: Vec<VmId> = [0, 1, 6, 7, 8, 9, 2, 3, 4, 5]
            .iter()
            .map(|&i| vms[i].clone())
            .collect();
        read(&mut hint, &listing, &map);
        let (found, lookups) = read(&mut hint, &listing, &map);
        assert_eq!(
            lookups, 4,
            "the VMs not ours are looked up each time, ours are not"
        );
        assert_eq!(
            found,
            vec![
                Some(0),
                Some(1),
                None,
                None,
                None,
                None,
                Some(2),
                Some(3),
                Some(4),
                Some(5)
            ]
        );
        // A driver that reads its listing afresh: equal names, other allocations.
        let fresh: Vec<VmId> = listing.iter().map(|id| VmId::new(id.as_str())).collect();
        let (found_fresh, lookups) = read(&mut hint, &fresh, &map);
        assert_eq!(lookups, 10);
        assert_eq!(found_fresh, found);
    }

    #[test]
    fn a_listing_read_afresh_every_time_is_looked_up_whole_and_the_hint_follows_it() {
        // A driver that reads every listing anew (new text for every id, as libvirt's and
        // Hyper-V's do): nothing is found by pointer, every VM is looked up, and the hint is one
        // slot per VM shown, this listing's (those past the first go to the spill: no slot is
        // inserted before the unread rest).
        let vms = ids(3_000);
        let map = ours(&vms);
        let mut hint = Vec::new();
        for _ in 0..3 {
            let fresh: Vec<VmId> = vms.iter().map(|id| VmId::new(id.as_str())).collect();
            let (found, lookups) = read(&mut hint, &fresh, &map);
            assert_eq!(lookups, 3_000);
            assert_eq!(found, (0..3_000).map(Some).collect::<Vec<_>>());
            assert_eq!(hint.len(), 3_000);
            assert!(
                hint.iter()
                    .zip(&fresh)
                    .all(|(h, id)| h.as_ref().is_some_and(|(known, _)| known.is_same_text(id)))
            );
        }
    }

    proptest! {
        /// Whatever the listings do between two reads (VMs leave, arrive, are reordered, are
        /// read afresh), every VM's index is the one its id has.
        #[test]
        fn the_hint_never_gives_a_vm_an_index_its_id_has_not(
            steps in proptest::collection::vec(
                (proptest::collection::vec(0usize..40, 0..30), any::<u64>()),
                1..12,
            )
        ) {
            let vms = ids(40);
            // Every third VM is not ours.
            let map: HashMap<String, usize> = vms.iter().enumerate()
                .filter(|(i, _)| i % 3 != 0)
                .map(|(i, id)| (id.as_str().to_string(), i))
                .collect();
            let mut hint = Vec::new();
            for (picks, fresh_mask) in steps {
                let listing: Vec<VmId> = picks.iter().enumerate().map(|(k, &i)| {
                    if fresh_mask >> (k % 64) & 1 == 1 { VmId::new(vms[i].as_str()) } else { vms[i].clone() }
                }).collect();
                let (found, _) = read(&mut hint, &listing, &map);
                let expected: Vec<Option<usize>> = listing.iter().map(|id| map.get(id.as_str()).copied()).collect();
                prop_assert_eq!(found, expected);
                prop_assert_eq!(hint.len(), listing.len());
            }
        }
    }
}
