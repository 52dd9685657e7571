//! Scheduling and placement: each source's ready set, our scheduler and the seed's, and the
//! choice of a destination.

use super::Core;
use super::assess::is_observed_wait;
use super::timers::TimerKey;
use super::vm::OrderKey;
use crate::event::{Phase, Reason, WaitReason};
use crate::machine::{Assessment, VmEvent};
use crate::model::{HostId, MigrationMode};
use crate::spec::SchedulerPolicy;
use crate::time::Time;
use std::cmp::Reverse;
use std::ops::Bound;

/// How many pre-flight checks may be in flight per free slot of the sources.
pub(super) const PREFLIGHT_AHEAD: usize = 2;

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
                }
                self.vms[idx].ready_key = Some(key);
            }
            (false, Some(old)) => {
                if let Some(si) = si {
                    self.sources[si].ready.remove(&old);
                }
                self.vms[idx].ready_key = None;
            }
            (true, Some(old)) if old != key => {
                // Its mode changed (powered off or on while queued): re-sort it.
                self.dirty = true;
                if let Some(si) = si {
                    self.sources[si].ready.remove(&old);
                    self.sources[si].ready.insert(key);
                }
                self.vms[idx].ready_key = Some(key);
            }
            _ => {}
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
            let free: u32 = self.sources.iter().map(|s| self.ledger.free(s.host)).sum();
            self.preflight_cap = (free.max(1) as usize).saturating_mul(PREFLIGHT_AHEAD);
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
    fn schedule(&mut self, now: Time) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let offline_ok = self.offline_allowed();
        let pins = !self.spec.pins.is_empty();
        let n = self.sources.len();
        // Per source: the last ready VM looked at in this call, and whether nothing more of it can
        // start now.
        let mut cursor: Vec<Option<OrderKey>> = vec![None; n];
        let mut done = vec![false; n];
        loop {
            if !self.ledger.cluster_has_room() {
                return;
            }
            // Largest first ACROSS sources: of every source that could start something, take the
            // best VM not yet looked at.
            let mut best: Option<(OrderKey, usize)> = None;
            for si in 0..n {
                if done[si] {
                    continue;
                }
                let src = self.sources[si].host;
                // A host that reports no slots at all is left to `place`, which says so.
                let full = |h: usize| self.ledger.free(h) == 0 && !self.reports_no_slots(h);
                if full(src)
                    || !self.hosts[src].reachable
                    || (!pins && self.sources[si].destinations.iter().all(|&d| full(d)))
                {
                    done[si] = true;
                    continue;
                }
                let next = match cursor[si] {
                    None => self.sources[si].ready.iter().next().copied(),
                    Some(c) => self.sources[si]
                        .ready
                        .range((Bound::Excluded(c), Bound::Unbounded))
                        .next()
                        .copied(),
                };
                match next {
                    None => done[si] = true,
                    Some(k) if best.is_none_or(|(b, _)| k < b) => best = Some((k, si)),
                    Some(_) => {}
                }
            }
            let Some((key, si)) = best else { return };
            cursor[si] = Some(key);
            let idx = key.vm;
            if self.vms[idx].vm.mode == MigrationMode::Offline && !offline_ok {
                self.set_sched_wait(idx, now, WaitReason::OfflineAfterLive);
                if key.held_back {
                    // Offline VMs sort after the live ones: nothing after this one can start.
                    done[si] = true;
                }
                continue;
            }
            if self.spec.settings.preflight
                && self.preflight_full()
                && self.vms[idx].vm.preflight.clear.is_empty()
            {
                // No check can be asked now and this VM has no clear answer for any destination:
                // nothing more of this source starts before answers come (each makes the
                // scheduler run again). Placing it anyway cost a pass over every destination per
                // source and pass: 10,000 VMs on 500 hosts took minutes instead of seconds.
                done[si] = true;
                continue;
            }
            self.place_and_start(idx, now, false);
            if self.preflight_full() {
                // No more checks now: VMs with a clear answer get back in line as answers come.
                done[si] = true;
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
                    self.timers
                        .schedule(TimerKey::SeedPass, self.seed.pause_until);
                    return;
                }
            }
        }
        // Pass over: sleep `poll_interval`.
        self.seed.active = false;
        let t = now + self.spec.settings.poll_interval;
        self.timers.schedule(TimerKey::SeedPass, t);
    }

    /// Places a ready VM and starts it, or tells it why it waits or can never go; returns
    /// whether it started. `first_only`: only its first open destination is considered.
    fn place_and_start(&mut self, idx: usize, now: Time, first_only: bool) -> bool {
        match self.place(idx, first_only) {
            Place::To(d) => {
                let vm = &self.vms[idx].vm;
                if !self.spec.settings.preflight || vm.preflight.clear.contains(&self.hosts[d].id) {
                    self.start(idx, d, now);
                    return true;
                }
                if vm.preflight.asking.is_none() && !self.preflight_full() {
                    self.start_or_check(idx, d, now, true);
                }
            }
            Place::Wait(w) => self.set_sched_wait(idx, now, w),
            Place::Never(r) => self.step(idx, now, VmEvent::Assessed(Assessment::Unmigratable(r))),
        }
        false
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
        let run_id = self.spec.run_id.clone();
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
    fn reports_no_slots(&self, h: usize) -> bool {
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
        let need_mem = if vm.mode == MigrationMode::Live {
            vm.memory_bytes
        } else {
            0
        };
        let need_disk = vm.disk_bytes;
        let no_slots_ever = |h: usize| self.reports_no_slots(h);
        if no_slots_ever(src) {
            return Place::Never(Reason::NoMigrationSlots(self.hosts[src].id.clone()));
        }
        let mut zero_slots = None;
        let mut best: Option<((u32, Reverse<u64>, usize), usize)> = None;
        let (mut no_slot, mut no_room, mut unreachable, mut considered) = (false, false, false, 0);
        let mut dests = vm.open_destinations();
        let iter: Box<dyn Iterator<Item = &HostId>> = if first_only {
            Box::new(dests.next().into_iter())
        } else {
            Box::new(dests)
        };
        for d in iter {
            // A destination whose pre-flight check blocked the VM is skipped for it (for now
            // only, when its blockers may pass: `waiting` is forgotten when it is asked again).
            if vm.preflight.blocked.contains_key(d) || vm.preflight.waiting.contains_key(d) {
                continue;
            }
            let Some(&h) = self.host_index.get(d) else {
                continue;
            };
            let hs = &self.hosts[h];
            if hs.down {
                continue;
            }
            considered += 1;
            let Some(info) = hs.info.as_ref().filter(|_| hs.reachable) else {
                unreachable = true;
                continue;
            };
            if info.free_memory_bytes < need_mem || info.free_disk_bytes < need_disk {
                continue;
            }
            let free_mem = info.free_memory_bytes.saturating_sub(hs.reserved_memory);
            let free_disk = info.free_disk_bytes.saturating_sub(hs.reserved_disk);
            if free_mem < need_mem || free_disk < need_disk {
                no_room = true;
                continue;
            }
            if no_slots_ever(h) {
                zero_slots.get_or_insert(h);
                continue;
            }
            if !self.ledger.can_start(src, h) {
                no_slot = true;
                continue;
            }
            let score = (
                self.ledger.ours(h) + self.ledger.foreign(h),
                Reverse(free_mem),
                h,
            );
            if best.as_ref().is_none_or(|(b, _)| score < *b) {
                best = Some((score, h));
            }
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
}
