//! Scheduling and placement: each source's ready set, our scheduler and the seed's, and the
//! choice of a destination.

use super::Core;
use super::assess::is_observed_wait;
use super::timers::TimerKey;
use super::vm::{OrderKey, vm_timers};
use crate::event::{Phase, Reason, WaitReason};
use crate::machine::{Assessment, VmEvent};
use crate::model::MigrationMode;
use crate::spec::SchedulerPolicy;
use crate::time::Time;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Bound;
use std::sync::Arc;

/// How many pre-flight checks may be in flight per free slot of the sources.
pub(super) const PREFLIGHT_AHEAD: usize = 2;

/// How many more migrations in flight than the best ranked destination one a VM is already
/// cleared for may have, for the VM to start there instead of asking a check at the best
/// ranked one ([`Core::cleared_instead`]).
const CLEARED_SLACK: u32 = 1;

/// The seed scheduler's pass (see [`Core::schedule_seed`]); its next pass is a timer.
#[derive(Debug, Default)]
pub(super) struct SeedPass {
    /// A pass is under way.
    pub(super) active: bool,
    /// The VM the pass started last, whose start it waits out.
    waiting_on: Option<usize>,
    /// The pass waits for its last start until then at least.
    pause_until: Time,
}

/// Where a ready VM can go.
pub(super) enum Place {
    /// To this host, now.
    To(usize),
    /// Nowhere yet, for this reason.
    Wait(WaitReason),
    /// Nowhere ever.
    Never(Reason),
}

impl Core {
    /// Keeps a VM's membership of its source's ready set, and of the live moves still to do,
    /// in step with its phase `after`.
    pub(super) fn derive_ready(&mut self, idx: usize, after: Phase) {
        let ready =
            after == Phase::Queued
                && self.vms[idx].vm.preflight.asking.is_none()
                && self.vms[idx].vm.wait.as_ref().is_none_or(|w| {
                    !is_observed_wait(w) && !matches!(w, WaitReason::MayPass { .. })
                });
        let offline = self.vms[idx].vm.mode == MigrationMode::Offline;
        let mut key = self.vms[idx].order_key;
        key.held_back = offline && self.spec.settings.offline_last;
        let si = self
            .source_state
            .get(self.vms[idx].source)
            .copied()
            .flatten();
        let in_ready = self.vms[idx].ready_key;
        match (ready, in_ready) {
            (true, None) => {
                self.dirty = true;
                if let Some(si) = si {
                    self.sources[si].ready.insert(key);
                    self.mark_pack_due(si);
                }
                self.vms[idx].ready_key = Some(key);
            }
            (false, Some(old)) => {
                if let Some(si) = si {
                    self.sources[si].ready.remove(&old);
                    self.mark_pack_due(si);
                }
                self.vms[idx].ready_key = None;
            }
            (true, Some(old)) if old != key => {
                // Its mode changed (powered off or on while queued): re-sort it.
                self.dirty = true;
                if let Some(si) = si {
                    self.sources[si].ready.remove(&old);
                    self.sources[si].ready.insert(key);
                    self.mark_pack_due(si);
                }
                self.vms[idx].ready_key = Some(key);
            }
            _ => {}
        }
        if let Some(si) = si {
            if self.sources[si].awaiting == Some(idx)
                && (after != Phase::Queued || self.vms[idx].vm.preflight.asking.is_none())
            {
                // Its check answered (or it left the queue): the source goes on.
                self.sources[si].awaiting = None;
                self.dirty = true;
            }
            self.update_eligible(si);
        }
        // Live moves still to do (offline ones wait for them by default).
        let live_pending = self.vms[idx].vm.mode == MigrationMode::Live
            && !after.is_final()
            && after != Phase::Verifying
            && after != Phase::CleaningUp
            && (after != Phase::Queued || ready);
        if live_pending != self.vms[idx].live_pending {
            self.vms[idx].live_pending = live_pending;
            if live_pending {
                self.live_pending_count += 1;
            } else {
                self.live_pending_count -= 1;
                if self.live_pending_count == 0 {
                    self.dirty = true;
                }
            }
        }
    }

    /// Runs the run's scheduler.
    pub(super) fn run_scheduler(&mut self, now: Time) {
        if self.dirty || self.spec.settings.policy == SchedulerPolicy::Seed {
            self.sync_index();
            let free = usize::try_from(self.index.source_free).unwrap_or(usize::MAX);
            self.preflight_cap = free.max(1).saturating_mul(PREFLIGHT_AHEAD);
        }
        match self.spec.settings.policy {
            SchedulerPolicy::Vmove => self.schedule(now),
            SchedulerPolicy::Seed => self.schedule_seed(now),
            SchedulerPolicy::KubeVirt { .. } => self.schedule_peer(now),
            SchedulerPolicy::Nova { .. } => self.schedule_peer(now),
            SchedulerPolicy::Proxmox { .. } => self.schedule_peer(now),
            SchedulerPolicy::VSphere { .. } => self.schedule_peer(now),
            SchedulerPolicy::AllAtOnce => self.schedule_peer(now),
        }
    }

    pub(super) fn offline_allowed(&self) -> bool {
        !self.spec.settings.offline_last || self.live_pending_count == 0
    }

    pub(super) fn set_sched_wait(&mut self, idx: usize, now: Time, reason: WaitReason) {
        if self.vms[idx].vm.wait.as_ref() != Some(&reason) {
            self.step(
                idx,
                now,
                VmEvent::Assessed(Assessment::Wait {
                    reason,
                    held: false,
                }),
            );
        }
    }

    /// Event-driven list scheduling: every source with a free slot gets its best ready VM that
    /// some destination can take now; repeated until nothing more can start.
    ///
    /// Largest first ACROSS sources: each turn takes, of every source that could start
    /// something, the best ready VM not yet looked at in this pass. A source that cannot start
    /// anything (its host full or unreachable, every destination of its list full, no ready VM
    /// left) is done for the pass. The candidates come from the index (the eligible sources of
    /// the groups with a destination not full) and wait in a heap by their next VM, so a pass
    /// costs what it looks at, not sources x destinations. Within a pass slots are only taken
    /// and ready sets only shrink, so a source found unable is unable for the rest of the pass,
    /// and a heap entry is a lower bound of its source's next VM (checked when it comes up).
    fn schedule(&mut self, now: Time) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        if !self.ledger.cluster_has_room() {
            return;
        }
        self.parking.in_pass = true;
        self.parking.last = None;
        self.schedule_pass(now);
        self.parking.in_pass = false;
        self.parking.last = None;
        self.parking.woken.clear();
    }

    /// One pass of [`Core::schedule`] (see there); parked sources (`park.rs`) are taken in
    /// order with the others while a check can be asked, and skipped once none can.
    fn schedule_pass(&mut self, now: Time) {
        let offline_ok = self.offline_allowed();
        let pins = !self.spec.pins.is_empty();
        self.pack_due_sources();
        self.sync_index();
        // Per candidate source: the next ready VM to look at (a lower bound: checked when it
        // comes up).
        let mut heap: BinaryHeap<Reverse<(OrderKey, usize)>> = BinaryHeap::new();
        // No check can be asked in this pass (checks in flight only grow within it): a source
        // whose first VM has no clear answer would be done at once, doing nothing.
        let no_checks = self.spec.settings.preflight && self.preflight_full();
        let mut to_park: Vec<(usize, OrderKey)> = Vec::new();
        for g in 0..self.index.open.len() {
            if !pins && self.index.open[g] == 0 {
                continue;
            }
            for &si in &self.parking.active[g] {
                if self.sources[si].awaiting.is_some() {
                    continue;
                }
                if let Some(&k) = self.sources[si].ready.first() {
                    if no_checks
                        && self.vms[k.vm].vm.preflight.clear.is_empty()
                        && (self.vms[k.vm].vm.mode != MigrationMode::Offline || offline_ok)
                    {
                        to_park.push((si, k));
                        continue;
                    }
                    heap.push(Reverse((k, si)));
                }
            }
        }
        for (si, k) in to_park {
            self.try_park(si, k);
        }
        loop {
            if !self.ledger.cluster_has_room() {
                return;
            }
            self.sync_index();
            for (k, si) in self.parking.woken.drain(..) {
                heap.push(Reverse((k, si)));
            }
            // The next candidate: the heap's, or while a check can be asked, a parked source's
            // if its next VM comes first.
            let checks = !(self.spec.settings.preflight && self.preflight_full());
            let parked_first = checks
                && self
                    .parking
                    .set
                    .first()
                    .is_some_and(|p| heap.peek().is_none_or(|Reverse(top)| p < top));
            let (key, si) = if parked_first {
                let Some(&(k, si)) = self.parking.set.first() else {
                    return;
                };
                // Taken now: not woken into the heap as well.
                self.parking.last = Some(k);
                self.unpark(si);
                (k, si)
            } else {
                let Some(Reverse(top)) = heap.pop() else {
                    return;
                };
                top
            };
            self.parking.last = Some(key);
            let src = self.sources[si].host;
            if self.host_full(src)
                || !self.hosts[src].reachable
                || (!pins && self.index.open[self.index.group_of[si]] == 0)
            {
                continue;
            }
            if !self.sources[si].ready.contains(&key) {
                // Gone from the ready set since: its source's next VM is after it.
                if let Some(&k) = self.sources[si]
                    .ready
                    .range((Bound::Excluded(key), Bound::Unbounded))
                    .next()
                {
                    heap.push(Reverse((k, si)));
                }
                continue;
            }
            let idx = key.vm;
            let done = if self.vms[idx].vm.mode == MigrationMode::Offline && !offline_ok {
                self.set_sched_wait(idx, now, WaitReason::OfflineAfterLive);
                // Offline VMs sort after the live ones: nothing after this one can start.
                key.held_back
            } else if self.spec.settings.preflight
                && self.preflight_full()
                && self.vms[idx].vm.preflight.clear.is_empty()
            {
                // No check can be asked now and this VM has no clear answer for any destination:
                // nothing more of this source starts before answers come (each makes the
                // scheduler run again).
                self.try_park(si, key);
                true
            } else {
                let started = self.place_and_start(idx, now, false);
                // No more checks now: VMs with a clear answer get back in line as answers come.
                // A VM still first that did nothing: its source may be parked (a source whose
                // VM started is done for the pass and looked at again in the next).
                let full = self.preflight_full();
                if full {
                    self.try_park(si, key);
                }
                // Its check asked: under a plan, the source waits for that answer rather than
                // start a later VM in its place.
                let awaits = !started
                    && self.packs()
                    && self.sources[si].planned
                    && self.vms[idx].vm.preflight.asking.is_some();
                if awaits {
                    self.sources[si].awaiting = Some(idx);
                }
                full || awaits
            };
            if !done {
                if let Some(&k) = self.sources[si]
                    .ready
                    .range((Bound::Excluded(key), Bound::Unbounded))
                    .next()
                {
                    heap.push(Reverse((k, si)));
                }
            }
        }
    }

    /// Pre-flight checks in flight reached the bound: about [`PREFLIGHT_AHEAD`] per free slot of
    /// the sources (at least one) as the pass began, so that the VMs next in line are checked,
    /// not all at once.
    pub(super) fn preflight_full(&self) -> bool {
        self.preflights_in_flight >= self.preflight_cap
    }

    /// The seed's algorithm, for comparison: passes every `poll_interval`; within a pass one VM at
    /// a time, each start followed by `job_start_timeout` and its confirmation; one destination.
    fn schedule_seed(&mut self, now: Time) {
        if self.timers.due_at(TimerKey::SeedPass).is_none() && !self.seed.active {
            self.seed.active = true;
        }
        if !self.seed.active {
            return;
        }
        if let Some(w) = self.seed.waiting_on {
            let p = self.vms[w].vm.phase();
            if matches!(p, Phase::Starting | Phase::Confirming) || now < self.seed.pause_until {
                return;
            }
            self.seed.waiting_on = None;
        }
        let offline_ok = self.live_pending_count == 0 && self.ledger.total_ours() == 0;
        for si in 0..self.sources.len() {
            let candidates: Vec<usize> = self.sources[si].ready.iter().map(|k| k.vm).collect();
            // The seed prefers running VMs: offline ones only when nothing else is left.
            for idx in candidates {
                if self.vms[idx].vm.mode == MigrationMode::Offline && !offline_ok {
                    self.set_sched_wait(idx, now, WaitReason::OfflineAfterLive);
                    continue;
                }
                if self.place_and_start(idx, now, true) {
                    self.seed.waiting_on = Some(idx);
                    self.seed.pause_until = now + self.spec.settings.job_start_timeout;
                    // Wake up when the pause is over.
                    self.timers.schedule(
                        TimerKey::SeedPass,
                        self.seed.pause_until,
                        vm_timers(&self.vms),
                    );
                    return;
                }
            }
        }
        // Pass over: sleep `poll_interval`.
        self.seed.active = false;
        let t = now + self.spec.settings.poll_interval;
        self.timers
            .schedule(TimerKey::SeedPass, t, vm_timers(&self.vms));
    }

    /// Places a ready VM and starts it, or tells it why it waits or can never go; returns
    /// whether it started. `first_only`: only its first open destination is considered.
    fn place_and_start(&mut self, idx: usize, now: Time, first_only: bool) -> bool {
        match self.place(idx, first_only) {
            Place::To(best) => {
                let d = if first_only {
                    best
                } else {
                    self.cleared_instead(idx, best)
                };
                let vm = &self.vms[idx].vm;
                if !self.spec.settings.preflight || vm.preflight.clear.contains(&self.hosts[d].id) {
                    self.start(idx, d, now);
                    return true;
                }
                if vm.preflight.asking.is_none() && !self.preflight_full() {
                    // The seed asks its one destination.
                    let at = if first_only { d } else { self.check_at(idx, d) };
                    self.start_or_check(idx, at, now, true);
                }
            }
            Place::Wait(w) => self.set_sched_wait(idx, now, w),
            Place::Never(r) => self.step(idx, now, VmEvent::Assessed(Assessment::Unmigratable(r))),
        }
        false
    }

    /// Where VM `idx` goes when placement chose `best` for it: `best`, unless pre-flight checks
    /// are on, it is not cleared there, and destinations it is cleared for can take it now with
    /// at most [`CLEARED_SLACK`] more migrations in flight than `best`; then the best ranked of
    /// those. Starting now where a check already said yes beats asking a new check at `best` (a
    /// round trip to a host, and meanwhile others take the slots): among thousands of
    /// destinations whose free memory (the ranking's tie-break) keeps changing, the best ranked
    /// one was rarely one a VM had been cleared for, and checks per VM grew with the number of
    /// destinations (23 per VM at 100,000 VMs on 2,500 destinations; 10 with this). The slack
    /// keeps the load spread: a destination already busier than that is passed over.
    fn cleared_instead(&self, idx: usize, best: usize) -> usize {
        let e = &self.vms[idx];
        if !self.spec.settings.preflight
            || e.clear_hosts.is_empty()
            || e.clear_hosts.contains(&best)
        {
            return best;
        }
        let (need_mem, need_disk) = self.needs(idx);
        let Judged::Fits(best_score) = self.judge(e.source, best, need_mem, need_disk) else {
            return best;
        };
        let mut chosen: Option<(Score, usize)> = None;
        for &h in &e.clear_hosts {
            // A destination without a free slot cannot take it (`judge` says `NoSlot` or
            // worse): passed over before anything else about it is read.
            if self.ledger.free(h) == 0 {
                continue;
            }
            if e.vm.passed_over(&self.hosts[h].id) {
                continue;
            }
            if let Judged::Fits(score) = self.judge(e.source, h, need_mem, need_disk) {
                if score.0 <= best_score.0.saturating_add(CLEARED_SLACK)
                    && chosen.as_ref().is_none_or(|(c, _)| score < *c)
                {
                    chosen = Some((score, h));
                }
            }
        }
        chosen.map_or(best, |(_, h)| h)
    }

    /// Where VM `idx` asks its pre-flight check when placement chose `best` for it and it is
    /// not cleared there: `best`, unless the checks in flight toward it already match its free
    /// slots; then the best ranked open destination of its list whose free slots outnumber
    /// the checks in flight toward them, that can take it now and is not refused, blocked or
    /// cleared for it (`best` if there is none). Checks asked at one instant so spread over
    /// the destinations instead of all asking the best ranked one, which takes two of them
    /// while the others ask again elsewhere (a herd whose checks grew with the number of
    /// destinations: 20 per VM at 10,000 VMs, 39 at 20,000).
    ///
    /// Every open destination is looked at, not the best ranked few: when only the first 16
    /// were, a herd came back once the checks in flight outnumbered those 16 destinations'
    /// slots (every further VM asked at `best`, and its answer was stale by its turn): 1.63,
    /// 1.97, 2.33 and 3.43 checks per VM at 1,000, 4,000, 8,000 and 20,000 VMs (on 50 to
    /// 1,000 hosts), 10.2 at 100,000, where 831,302 of the run's 1,023,139 checks were asked
    /// at its first instant. Looking at all of them costs a pass over the group's open
    /// destinations only while most are crowded; the crowded test comes first and is two reads.
    fn check_at(&self, idx: usize, best: usize) -> usize {
        let crowded = |h: usize| self.hosts[h].checks >= self.ledger.free(h);
        if !crowded(best) || self.ledger.has_changes() {
            return best;
        }
        let e = &self.vms[idx];
        let src = e.source;
        let Some(si) = self.source_state.get(src).copied().flatten().filter(|&si| {
            self.sources[si]
                .destination_ids
                .as_ref()
                .is_some_and(|ids| Arc::ptr_eq(ids, &e.vm.destinations))
        }) else {
            return best;
        };
        let (need_mem, need_disk) = self.needs(idx);
        for &(_, h) in &self.index.open_hosts[self.index.group_of[si]] {
            if crowded(h) || e.clear_hosts.contains(&h) {
                continue;
            }
            if !matches!(self.judge(src, h, need_mem, need_disk), Judged::Fits(_)) {
                continue;
            }
            if e.vm.passed_over(&self.hosts[h].id) {
                continue;
            }
            return h;
        }
        best
    }

    fn start(&mut self, idx: usize, dst: usize, now: Time) {
        self.start_or_check(idx, dst, now, false);
    }

    /// Starts the VM's next attempt toward `dst`, or (`check`) asks its pre-flight check there.
    pub(super) fn start_or_check(&mut self, idx: usize, dst: usize, now: Time, check: bool) {
        let destination = self.hosts[dst].id.clone();
        let layout = self
            .spec
            .layouts
            .get(&destination)
            .cloned()
            .unwrap_or_default();
        let mode = self.vms[idx].vm.mode;
        let run_id = self.run_id.clone();
        let ev = if check {
            VmEvent::Preflight {
                destination,
                mode,
                layout,
                run_id,
            }
        } else {
            VmEvent::Start {
                destination,
                mode,
                layout,
                run_id,
            }
        };
        self.step(idx, now, ev);
    }

    /// A host whose own figures allow no migration at all (it reported a limit of 0) never
    /// frees a slot: its VMs, and VMs that can go nowhere else, are unmigratable
    /// ([`Reason::NoMigrationSlots`]).
    pub(super) fn reports_no_slots(&self, h: usize) -> bool {
        self.ledger.limit(h) == 0
            && self.hosts[h]
                .info
                .as_ref()
                .is_some_and(|i| i.migration_limit == Some(0))
    }

    /// Chooses a destination for a ready VM: one that is up, has a free slot (the source too),
    /// and room for it after the moves already headed there; the fewest migrations in flight
    /// first, then the most free memory.
    pub(super) fn place(&self, idx: usize, first_only: bool) -> Place {
        let vm = &self.vms[idx].vm;
        let src = self.vms[idx].source;
        let (need_mem, need_disk) = self.needs(idx);
        if self.reports_no_slots(src) {
            return Place::Never(Reason::NoMigrationSlots(self.hosts[src].id.clone()));
        }
        // The VM's list is its source's (not pinned): its host indexes are known, and so is
        // its group's set of destinations with a free slot.
        let source = self.source_state.get(src).copied().flatten().filter(|&si| {
            self.sources[si]
                .destination_ids
                .as_ref()
                .is_some_and(|ids| Arc::ptr_eq(ids, &vm.destinations))
        });
        if let Some(si) = source.filter(|_| !first_only && !self.ledger.has_changes()) {
            // Only a destination with a free slot can be chosen: look at those first, when the
            // index is synced (the pass syncs it at each turn; otherwise the full look below).
            // They are ranked by score: the first that fits is the best. If none fits, the full
            // look below says why. (A rank that is not the host's score now would mean a change
            // was not noted: the full look decides then, as a guard.)
            for &(rank, h) in &self.index.open_hosts[self.index.group_of[si]] {
                if vm.passed_over(&self.hosts[h].id) {
                    continue;
                }
                if let Judged::Fits(score) = self.judge(src, h, need_mem, need_disk) {
                    if score == rank {
                        return Place::To(h);
                    }
                    break;
                }
            }
        }
        let indexes: Option<&[usize]> = source.map(|si| &self.sources[si].destinations[..]);
        let mut zero_slots = None;
        let mut best: Option<(Score, usize)> = None;
        let (mut no_slot, mut no_room, mut unreachable, mut considered) = (false, false, false, 0);
        let mut open_seen = false;
        for (i, d) in vm.destinations.iter().enumerate() {
            // Its open destinations (not refused), or only the first of them.
            if vm.refused.contains(d) {
                continue;
            }
            if first_only && std::mem::replace(&mut open_seen, true) {
                break;
            }
            // A destination whose pre-flight check blocked the VM is skipped for it (for now
            // only, when its blockers may pass: `waiting` is forgotten when it is asked again).
            if vm.preflight.blocked.contains_key(d) || vm.preflight.waiting.contains_key(d) {
                continue;
            }
            let h = match indexes.and_then(|x| x.get(i)) {
                Some(&h) => h,
                None => match self.host_index.get(d) {
                    Some(&h) => h,
                    None => continue,
                },
            };
            match self.judge(src, h, need_mem, need_disk) {
                Judged::Down => continue,
                Judged::Unreachable => unreachable = true,
                Judged::TooSmall => {}
                Judged::NoRoomYet => no_room = true,
                Judged::NoSlotsEver => {
                    zero_slots.get_or_insert(h);
                }
                Judged::NoSlot => no_slot = true,
                Judged::Fits(score) => {
                    if best.as_ref().is_none_or(|(b, _)| score < *b) {
                        best = Some((score, h));
                    }
                }
            }
            considered += 1;
        }
        if let Some((_, h)) = best {
            Place::To(h)
        } else if no_slot {
            Place::Wait(WaitReason::NoSlot)
        } else if no_room {
            Place::Wait(WaitReason::NoRoomYet)
        } else if unreachable {
            Place::Wait(WaitReason::HostUnreachable)
        } else if let Some(h) = zero_slots {
            Place::Never(Reason::NoMigrationSlots(self.hosts[h].id.clone()))
        } else if considered == 0 {
            Place::Never(Reason::DestinationsDown)
        } else {
            Place::Never(Reason::NoDestinationFits {
                memory_bytes: need_mem,
                disk_bytes: need_disk,
            })
        }
    }

    /// The memory and disk VM `idx` needs at its destination (no memory when it moves offline).
    pub(super) fn needs(&self, idx: usize) -> (u64, u64) {
        let vm = &self.vms[idx].vm;
        let need_mem = if vm.mode == MigrationMode::Live {
            vm.memory_bytes
        } else {
            0
        };
        (need_mem, vm.disk_bytes)
    }

    /// What destination `h` says to a move from `src` needing that much memory and disk.
    pub(super) fn judge(&self, src: usize, h: usize, need_mem: u64, need_disk: u64) -> Judged {
        let hs = &self.hosts[h];
        if hs.down {
            return Judged::Down;
        }
        let Some(info) = hs.info.as_ref().filter(|_| hs.reachable) else {
            return Judged::Unreachable;
        };
        if info.free_memory_bytes < need_mem || info.free_disk_bytes < need_disk {
            return Judged::TooSmall;
        }
        let free_mem = info.free_memory_bytes.saturating_sub(hs.reserved_memory);
        let free_disk = info.free_disk_bytes.saturating_sub(hs.reserved_disk);
        if free_mem < need_mem || free_disk < need_disk {
            return Judged::NoRoomYet;
        }
        if self.reports_no_slots(h) {
            return Judged::NoSlotsEver;
        }
        if !self.ledger.can_start(src, h) {
            return Judged::NoSlot;
        }
        Judged::Fits((
            self.ledger.ours(h) + self.ledger.foreign(h),
            Reverse(free_mem),
            h,
        ))
    }
}

/// How placement ranks the destinations that can take a VM now: the fewest migrations in
/// flight, then the most free memory, then the host's index.
pub(super) type Score = (u32, Reverse<u64>, usize);

/// What one destination says to a VM (see `Core::judge`).
pub(super) enum Judged {
    /// Down: not considered at all.
    Down,
    /// Not reachable (or never listed).
    Unreachable,
    /// Too small for it even empty.
    TooSmall,
    /// No room left after the moves already headed there.
    NoRoomYet,
    /// It reports no migration slots at all.
    NoSlotsEver,
    /// No free slot now (here or on the source).
    NoSlot,
    /// It can take the VM now, with this score.
    Fits(Score),
}
