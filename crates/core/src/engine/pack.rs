//! [`crate::spec::Order::Packed`]: each source's queue planned so that its slots
//! end together.
//!
//! Largest first (list scheduling, LPT) starts the largest ready VM whenever a slot frees. Its
//! weak point is the last wave: the source's slots empty one by one, and a slot can be left
//! with a VM that ends well after the others. A plan here splits the source's queued VMs over
//! its slots, after what the moves already running still have to send, so that the slots end
//! as close together as this finds (largest first onto the least loaded slot, then the best
//! move or swap of one queued VM off the most loaded slot while one helps), and ranks the ready
//! VMs by their planned start. The plan is made again whenever a VM of the source changes phase
//! or its ready set changes (a move ends or fails, a backup ends, a retry's back-off ends), so
//! that it follows what happens instead of what was expected.
//!
//! A move's length is counted in bytes, not seconds: every move of a source runs at about one
//! slot's rate, so bytes order and pack as time does, and no rate need be known, except for
//! the memory a busy guest dirties again while it is sent ([`expected_bytes`]), which depends
//! on the rate: there the last transfer rate a progress poll reported is taken.

use super::Core;
use super::vm::{OrderKey, size_key};
use crate::machine::{MoveState, completion_timeout};
use crate::model::MigrationMode;
use crate::spec::{Order, PACK_JOBS_PER_SLOT, SchedulerPolicy};
use std::cmp::Reverse;
use std::time::Duration;

/// The most pre-copy rounds [`expected_bytes`] counts (each sends what the last let the guest
/// dirty): rounds shrink geometrically when the guest dirties slower than the rate, so a few
/// dozen are more than any real migration makes.
const MAX_ROUNDS: u32 = 30;

/// A pre-copy round small enough to be the last, as a fraction of what one second at the rate
/// sends: QEMU's default downtime limit, 300 ms (QEMU `migration/options.c`,
/// `DEFAULT_MIGRATE_SET_DOWNTIME`; libvirt's `virDomainMigrateSetMaxDowntime` changes it).
const LAST_ROUND_MS: u64 = 300;

/// Bytes a live move is expected to send: its disks, and its memory, then, round after round,
/// what the guest dirtied while the previous round was sent at `rate`, until a round fits in
/// 300 ms (QEMU's default downtime limit; the pre-copy model of QEMU and Hyper-V alike). Memory once where the dirty
/// rate or the rate is unknown.
///
/// A guest that dirties memory as fast as the rate or faster never converges, and one only a
/// little slower takes many rounds: vmove's completion watchdog ends either after `timeout`
/// (`completion_timeout_per_gib`, `machine::completion_timeout`) with a convergence
/// aid, which sends its memory about once more. So a move is expected to send at most what
/// `timeout` at `rate` sends, plus its memory; with no time-out given, a guest that never
/// converges counts its memory four times.
pub fn expected_bytes(
    memory: u64,
    disk: u64,
    dirty: Option<u64>,
    rate: Option<u64>,
    timeout: Option<Duration>,
) -> u64 {
    let plain = memory.saturating_add(disk);
    let (Some(d), Some(r)) = (dirty, rate) else {
        return plain;
    };
    if d == 0 || r == 0 || memory == 0 {
        return plain;
    }
    let give_up = timeout.map(|t| {
        // Saturating: a rate near u64::MAX times a time-out near Duration::MAX overflows u128
        // (it wrapped in release builds and panicked in debug ones).
        let at_rate = u128::from(r).saturating_mul(t.as_millis()) / 1000;
        u64::try_from(at_rate)
            .unwrap_or(u64::MAX)
            .saturating_add(memory)
    });
    if d >= r {
        return give_up.unwrap_or_else(|| memory.saturating_mul(4).saturating_add(disk));
    }
    let last = (u128::from(r) * u128::from(LAST_ROUND_MS) / 1000) as u64;
    let mut sent = disk;
    let mut round = memory;
    for _ in 0..MAX_ROUNDS {
        sent = sent.saturating_add(round);
        // d < r: each round is smaller than the last.
        round = (u128::from(round) * u128::from(d) / u128::from(r)) as u64;
        if round <= last {
            break;
        }
    }
    give_up.map_or(sent, |g| sent.min(g))
}

/// Splits `jobs` over slots already loaded with `loads` (one entry per slot) and returns each
/// job's planned start (the load before it on its slot, its slot's jobs longest first).
///
/// The plan is largest first (LPT: the longest job onto the least loaded slot, as list
/// scheduling would run them), unless a packed plan ends sooner: the better of LPT and
/// MULTIFIT (the smallest common end for which longest first into the slot it fits most
/// tightly, never past that end, places every job; found by bisection between the bound and
/// LPT's end), then, while one lowers it, the best move or swap of one job between the most
/// loaded slot and another. Largest first is kept where packing gains nothing: a packed plan
/// that ends no sooner may still put a long job behind a running one, and made again at every
/// change, such a plan can put it off again and again, until it starts last, where a failure
/// or a wrong guess of its length costs the most. Ties go to the lower index, so the same input
/// gives the same plan.
///
/// LPT alone misplaces what the slots' loads make lopsided: a slot 31 from its end and a free
/// one, with 31, 21 and 21 to place, get 31 on the free slot and the 21s behind the 31 (ends
/// 73 and 52): MULTIFIT finds 31 behind 31, and the 21s on the free slot (62 and 63).
pub fn plan_starts(loads: &[u64], jobs: &[u64]) -> Vec<u64> {
    let k = loads.len();
    if k == 0 {
        return vec![0; jobs.len()];
    }
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&j| (Reverse(jobs[j]), j));
    let largest_first = lpt(loads, jobs, &order);
    let lpt_end = end_of(&loads_of(loads, jobs, &largest_first));
    let mut packed = largest_first.clone();
    if let Some(fit) = multifit(loads, jobs, &order, lpt_end) {
        packed = fit;
    }
    let mut load = loads_of(loads, jobs, &packed);
    improve(jobs, &mut packed, &mut load);
    let slot_of = if end_of(&load) < lpt_end {
        earliest_first(loads, &mut packed, &mut load);
        longest_early(jobs, loads, &mut packed, &mut load);
        packed
    } else {
        largest_first
    };
    // Each slot's jobs back to back, longest first (`order` is).
    let mut t = loads.to_vec();
    let mut starts = vec![0; jobs.len()];
    for &j in &order {
        let s = slot_of[j];
        starts[j] = t[s];
        t[s] = t[s].saturating_add(jobs[j]);
    }
    starts
}

/// Of two slots, gives the one that frees first the larger share of the plan's jobs wherever
/// that ends no later than the plan does: an equally good plan that starts more work now (a
/// share planned behind a running move can be put off again when the plan is made again, and
/// what starts last costs the most if it fails or takes longer than guessed).
fn earliest_first(loads: &[u64], slot_of: &mut [usize], load: &mut [u64]) {
    let end = end_of(load);
    let k = loads.len();
    let mut by_base: Vec<usize> = (0..k).collect();
    by_base.sort_by_key(|&s| (loads[s], s));
    for (i, &a) in by_base.iter().enumerate() {
        for &b in &by_base[i + 1..] {
            let (ga, gb) = (load[a] - loads[a], load[b] - loads[b]);
            if gb > ga && loads[a].saturating_add(gb) <= end && loads[b].saturating_add(ga) <= end {
                for s in slot_of.iter_mut() {
                    if *s == a {
                        *s = b;
                    } else if *s == b {
                        *s = a;
                    }
                }
                load[a] = loads[a] + gb;
                load[b] = loads[b] + ga;
            }
        }
    }
}

/// Then, job by job: of two slots, the one that frees first takes the longer of their longest
/// jobs (a swap with the other's longest) wherever that ends no later than the plan does. A
/// plan that ends as soon with the longest jobs first is largest first where it can be: the
/// longest moves start now, not behind running ones, where a plan made again at the next
/// change could put them off once more.
fn longest_early(jobs: &[u64], loads: &[u64], slot_of: &mut [usize], load: &mut [u64]) {
    let end = end_of(load);
    let k = loads.len();
    let mut by_base: Vec<usize> = (0..k).collect();
    by_base.sort_by_key(|&s| (loads[s], s));
    let longest = |slot_of: &[usize], s: usize| {
        (0..jobs.len())
            .filter(|&j| slot_of[j] == s)
            .max_by_key(|&j| (jobs[j], Reverse(j)))
    };
    for (i, &a) in by_base.iter().enumerate() {
        for &b in &by_base[i + 1..] {
            let (Some(ja), Some(jb)) = (longest(slot_of, a), longest(slot_of, b)) else {
                continue;
            };
            if jobs[jb] <= jobs[ja] {
                continue;
            }
            let d = jobs[jb] - jobs[ja];
            if load[a].saturating_add(d) <= end {
                slot_of[ja] = b;
                slot_of[jb] = a;
                load[a] += d;
                load[b] -= d;
            }
        }
    }
}

/// When the most loaded slot ends.
fn end_of(load: &[u64]) -> u64 {
    load.iter().copied().max().unwrap_or(0)
}

/// Each slot's load with `slot_of`'s jobs on it.
fn loads_of(loads: &[u64], jobs: &[u64], slot_of: &[usize]) -> Vec<u64> {
    let mut load = loads.to_vec();
    for (j, &s) in slot_of.iter().enumerate() {
        load[s] = load[s].saturating_add(jobs[j]);
    }
    load
}

/// Longest first (`order`) onto the least loaded slot; returns each job's slot.
fn lpt(loads: &[u64], jobs: &[u64], order: &[usize]) -> Vec<usize> {
    let mut load = loads.to_vec();
    let mut slot_of = vec![0; jobs.len()];
    for &j in order {
        let s = (0..load.len()).min_by_key(|&s| (load[s], s)).unwrap_or(0);
        slot_of[j] = s;
        load[s] = load[s].saturating_add(jobs[j]);
    }
    slot_of
}

/// Longest first (`order`), each into the slot it leaves the least room in without passing
/// `end`, each job's slot into `slot_of` (`load` is room to work in); whether every job fits.
fn fit_under(
    loads: &[u64],
    jobs: &[u64],
    order: &[usize],
    end: u64,
    load: &mut Vec<u64>,
    slot_of: &mut [usize],
) -> bool {
    load.clear();
    load.extend_from_slice(loads);
    for &j in order {
        let Some(s) = (0..load.len())
            .filter(|&s| load[s].checked_add(jobs[j]).is_some_and(|l| l <= end))
            .max_by_key(|&s| (load[s], Reverse(s)))
        else {
            return false;
        };
        slot_of[j] = s;
        load[s] += jobs[j];
    }
    true
}

/// MULTIFIT: the smallest end below `above` (to within 1/1024 of the gap) for which
/// [`fit_under`] places every job, and that placement; `None` if none below `above` does.
fn multifit(loads: &[u64], jobs: &[u64], order: &[usize], above: u64) -> Option<Vec<usize>> {
    let k = loads.len() as u128;
    let total: u128 = loads.iter().chain(jobs).map(|&x| u128::from(x)).sum();
    let even = u64::try_from(total.div_ceil(k.max(1))).unwrap_or(u64::MAX);
    let longest = loads.iter().chain(jobs).copied().max().unwrap_or(0);
    let (mut lo, mut hi) = (even.max(longest), above);
    let (mut found, mut best, mut cur) = (false, vec![0; jobs.len()], vec![0; jobs.len()]);
    let mut load = Vec::with_capacity(loads.len());
    let step = (hi.saturating_sub(lo) / 1024).max(1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fit_under(loads, jobs, order, mid, &mut load, &mut cur) {
            hi = mid;
            found = true;
            std::mem::swap(&mut best, &mut cur);
        } else {
            lo = mid + 1;
        }
        if hi - lo < step && found {
            break;
        }
    }
    found.then_some(best)
}

/// While one lowers the most loaded slot's end, the best move or swap of one job between it
/// and another slot. Each step lowers the largest load or stops; the cap bounds a
/// pathological input.
fn improve(jobs: &[u64], slot_of: &mut [usize], load: &mut [u64]) {
    let k = load.len();
    for _ in 0..jobs.len().saturating_mul(k).saturating_mul(4) {
        let top = (0..k).max_by_key(|&s| (load[s], Reverse(s))).unwrap_or(0);
        // (the larger of the two loads after, the other slot, the job off top, the job back)
        let mut best: Option<(u64, usize, usize, Option<usize>)> = None;
        let mut consider = |cand: (u64, usize, usize, Option<usize>)| {
            if cand.0 < load[top] && best.is_none_or(|b| cand.0 < b.0) {
                best = Some(cand);
            }
        };
        for a in (0..jobs.len()).filter(|&a| slot_of[a] == top) {
            for o in (0..k).filter(|&o| o != top) {
                let moved = (load[top] - jobs[a]).max(load[o].saturating_add(jobs[a]));
                consider((moved, o, a, None));
                for b in (0..jobs.len()).filter(|&b| slot_of[b] == o && jobs[b] < jobs[a]) {
                    let t = load[top] - jobs[a] + jobs[b];
                    let u = load[o].saturating_add(jobs[a] - jobs[b]);
                    consider((t.max(u), o, a, Some(b)));
                }
            }
        }
        let Some((_, o, a, b)) = best else {
            break;
        };
        slot_of[a] = o;
        load[top] -= jobs[a];
        load[o] = load[o].saturating_add(jobs[a]);
        if let Some(b) = b {
            slot_of[b] = top;
            load[o] -= jobs[b];
            load[top] = load[top].saturating_add(jobs[b]);
        }
    }
}

impl Core {
    /// Notes that source `si`'s plan is to be made again before the next pass looks at it.
    pub(super) fn mark_pack_due(&mut self, si: usize) {
        if !self.sources[si].pack_due {
            self.sources[si].pack_due = true;
            self.pack_due.push(si);
        }
    }

    /// Whether sources are planned: [`Order::Packed`] under vmove's scheduler.
    pub(super) fn packs(&self) -> bool {
        self.spec.settings.order == Order::Packed
            && self.spec.settings.policy == SchedulerPolicy::Vmove
    }

    /// Makes again the plan of every source noted since the last pass (when [`Core::packs`];
    /// nothing otherwise).
    pub(super) fn pack_due_sources(&mut self) {
        let packed = self.packs();
        let mut due = std::mem::take(&mut self.pack_due);
        for &si in &due {
            self.sources[si].pack_due = false;
            if packed {
                self.pack_source(si);
            }
        }
        // Keep the allocation.
        due.clear();
        self.pack_due = due;
    }

    /// Whether VM `idx`'s length is known well enough to plan by: it moves offline (its memory
    /// goes once), or its listing on `h` reported its dirty rate, and that rate is 0 or the
    /// transfer rate is known too (how much memory goes again depends on both).
    fn length_known(&self, idx: usize, h: usize, rate: Option<u64>) -> bool {
        let e = &self.vms[idx];
        if e.vm.mode == MigrationMode::Offline {
            return true;
        }
        match e.seen.get(&h).and_then(|i| i.dirty_rate) {
            Some(0) => true,
            Some(_) => rate.is_some(),
            None => false,
        }
    }

    /// Gives source `si`'s ready VMs their own sizes back in their keys (largest first), if a
    /// plan had handed them out otherwise.
    fn unplan(&mut self, si: usize) {
        let own = |core: &Core, idx: usize| {
            let v = &core.vms[idx].vm;
            size_key(Order::Packed, v.memory_bytes, v.disk_bytes)
        };
        let keys: Vec<OrderKey> = self.sources[si]
            .ready
            .iter()
            .copied()
            .filter(|k| k.size != own(self, k.vm))
            .collect();
        for old in keys {
            let new = OrderKey {
                size: own(self, old.vm),
                ..old
            };
            self.sources[si].ready.remove(&old);
            self.sources[si].ready.insert(new);
            self.vms[old.vm].ready_key = Some(new);
            self.vms[old.vm].order_key.size = new.size;
        }
    }

    /// [`expected_bytes`] of VM `idx` on host `h` (the dirty rate its listing there showed),
    /// at `rate`, with the completion time-out its move would have.
    fn expected_bytes_of(&self, idx: usize, h: usize, rate: Option<u64>) -> u64 {
        let e = &self.vms[idx];
        let (memory, disk) = (e.vm.memory_bytes, e.vm.disk_bytes);
        let dirty = e.seen.get(&h).and_then(|i| i.dirty_rate);
        let timeout = completion_timeout(&self.spec.settings, memory, disk);
        expected_bytes(memory, disk, dirty, rate, Some(timeout))
    }

    /// Ranks source `si`'s ready VMs by a plan of its slots (see the module). Left as they are
    /// when its host has no free slot (the next move to end notes it again), while it is parked
    /// (its first VM is what parking looked at), when every queued VM can start at once (no
    /// order to choose), or when it has more than [`PACK_JOBS_PER_SLOT`] per slot queued.
    fn pack_source(&mut self, si: usize) {
        let h = self.sources[si].host;
        let m = self.ledger.limit(h) as usize;
        if m == 0
            || self.sources[si].ready.is_empty()
            || self.ledger.free(h) == 0
            || self.parking.parked_key(si).is_some()
        {
            return;
        }
        let rate = self.rate_seen;
        // While live moves remain and offline ones wait for them (`offline_last`), the plan is
        // of the live ones: the offline ones start after every live one ended, whatever a plan
        // says.
        let live_only = !self.offline_allowed();
        // What its running moves still have to send, and its queued VMs (ready or waiting: a
        // VM waiting out a backup or a back-off takes its place in the plan all the same).
        let mut running: Vec<u64> = Vec::new();
        let mut waiting: Vec<u64> = Vec::new();
        // Whether every length in the plan is known (see `length_known`).
        let mut known = true;
        for &idx in &self.hosts[h].seen_ours {
            let e = &self.vms[idx];
            // A VM that has moved, or never will, is no part of the plan (nor is whether its
            // length is known).
            if e.source != h || e.vm.phase().is_final() {
                continue;
            }
            let queued_ready = matches!(e.vm.state, MoveState::Queued) && e.ready_key.is_some();
            if queued_ready {
                // Counted with the ready set below.
                continue;
            }
            known &= self.length_known(idx, h, rate);
            let whole = || self.expected_bytes_of(idx, h, rate);
            match &e.vm.state {
                MoveState::Queued
                    if e.ready_key.is_none()
                        && !(live_only && e.vm.mode == MigrationMode::Offline) =>
                {
                    waiting.push(whole())
                }
                MoveState::Starting { .. } | MoveState::Confirming { .. } => running.push(whole()),
                MoveState::Migrating(g) => running.push(whole().saturating_sub(g.best_done)),
                _ => {}
            }
        }
        // Others' migrations on the host take slots too: the plan has the rest. Its own beyond
        // them (a limit lowered mid-run) end before the plan's slots matter.
        let k = m.saturating_sub(self.ledger.foreign(h) as usize).max(1);
        let keys: Vec<OrderKey> = self.sources[si]
            .ready
            .iter()
            .copied()
            .filter(|k| !(live_only && k.held_back))
            .collect();
        let n = keys.len() + waiting.len();
        if n + running.len() <= k || n > k.saturating_mul(PACK_JOBS_PER_SLOT) {
            return;
        }
        known &= keys.iter().all(|key| self.length_known(key.vm, h, rate));
        self.sources[si].planned = known;
        if !known {
            // No plan without the lengths it needs: a move's length is its size, and the order
            // is largest first, exactly as `order = "largest_first"` has it (a size guessed
            // for a guest that dirties memory fast made plans worse than largest first).
            self.unplan(si);
            return;
        }
        running.sort_unstable_by_key(|&l| Reverse(l));
        running.resize(k, 0);
        let mut jobs: Vec<u64> = keys
            .iter()
            .map(|k| self.expected_bytes_of(k.vm, h, rate))
            .collect();
        jobs.extend(waiting);
        let starts = plan_starts(&running, &jobs);
        let mut ranked: Vec<usize> = (0..keys.len()).collect();
        ranked.sort_by_key(|&j| (starts[j], Reverse(jobs[j]), keys[j]));
        // The plan's first VM takes the source's first size key, its second the second...: the
        // source's VMs go in the plan's order, and against other sources' (which share the
        // destinations) its first still counts as large as its largest, as largest first has it.
        // Strictly increasing, so that VMs of one size keep the plan's order among them (one
        // byte apart: nothing against other sources' VMs).
        let mut sizes: Vec<u64> = keys.iter().map(|k| k.size).collect();
        sizes.sort_unstable();
        for i in 1..sizes.len() {
            sizes[i] = sizes[i].max(sizes[i - 1].saturating_add(1));
        }
        for (&j, &size) in ranked.iter().zip(&sizes) {
            let old = keys[j];
            if old.size != size {
                let new = OrderKey { size, ..old };
                self.sources[si].ready.remove(&old);
                self.sources[si].ready.insert(new);
                self.vms[old.vm].ready_key = Some(new);
                self.vms[old.vm].order_key.size = size;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where each slot ends in a plan: the latest planned start plus its job.
    fn ends(loads: &[u64], jobs: &[u64], starts: &[u64]) -> u64 {
        let busy = loads.iter().copied().max().unwrap_or(0);
        jobs.iter()
            .zip(starts)
            .map(|(j, s)| s + j)
            .max()
            .unwrap_or(0)
            .max(busy)
    }

    #[test]
    fn a_plan_ends_the_slots_together_where_largest_first_leaves_one_late() {
        // Largest first on 2 slots: 3 | 3, then 2 | 2, then the last 2 on one: 7 and 5.
        // Planned: 3 + 3 on one slot, 2 + 2 + 2 on the other: both end at 6.
        let jobs = [3, 3, 2, 2, 2];
        let starts = plan_starts(&[0, 0], &jobs);
        assert_eq!(ends(&[0, 0], &jobs, &starts), 6, "starts {starts:?}");
        // Two start now (one per slot), the others when a slot of the plan frees.
        assert_eq!(starts.iter().filter(|&&s| s == 0).count(), 2);
    }

    #[test]
    fn a_plan_counts_what_the_running_moves_still_have_to_send() {
        // One slot busy for 5 more, one free: the 4 goes on the free slot now, the 1 after
        // it; nothing is planned behind the busy slot, which ends last anyway.
        let jobs = [4, 1];
        let starts = plan_starts(&[5, 0], &jobs);
        assert_eq!(starts, vec![0, 4]);
        assert_eq!(ends(&[5, 0], &jobs, &starts), 5);
    }

    #[test]
    fn a_plan_of_nothing_or_with_no_slot_does_not_panic() {
        assert!(plan_starts(&[0, 0], &[]).is_empty());
        assert_eq!(plan_starts(&[], &[1, 2]), vec![0, 0]);
        let huge = [u64::MAX, u64::MAX, 1];
        let starts = plan_starts(&[u64::MAX, 0], &huge);
        assert_eq!(starts.len(), 3);
    }

    #[test]
    fn a_busy_guest_is_expected_to_send_its_memory_again() {
        const GB: u64 = 1_000_000_000;
        // No dirty rate or no rate known: memory and disks once.
        assert_eq!(
            expected_bytes(8 * GB, 20 * GB, None, Some(GB / 4), None),
            28 * GB
        );
        assert_eq!(
            expected_bytes(8 * GB, 20 * GB, Some(GB / 8), None, None),
            28 * GB
        );
        assert_eq!(
            expected_bytes(8 * GB, 20 * GB, Some(0), Some(GB / 4), None),
            28 * GB
        );
        // Dirtying at half the rate: 8 + 4 + 2 + 1 + 0.5 + 0.25 + 0.125 GB of memory, the next
        // round (62.5 MB) fits in 300 ms at 250 MB/s: 15.875 GB.
        let half = expected_bytes(8 * GB, 20 * GB, Some(GB / 8), Some(GB / 4), None);
        assert_eq!(half, 20 * GB + 15_875_000_000);
        // As fast as the rate: it does not converge; counted as four passes.
        assert_eq!(
            expected_bytes(8 * GB, 20 * GB, Some(GB / 4), Some(GB / 4), None),
            52 * GB
        );
        // With the completion watchdog's time-out: what 600 s at 250 MB/s sends (150 GB),
        // plus memory once more for the aid that ends it.
        let ten_min = Some(Duration::from_secs(600));
        assert_eq!(
            expected_bytes(8 * GB, 20 * GB, Some(GB / 4), Some(GB / 4), ten_min),
            158 * GB
        );
        // A guest that converges in time is not capped...
        assert_eq!(
            expected_bytes(8 * GB, 20 * GB, Some(GB / 8), Some(GB / 4), ten_min),
            half
        );
        // ...one that would take longer than its time-out is.
        assert_eq!(
            expected_bytes(
                8 * GB,
                20 * GB,
                Some(GB / 8),
                Some(GB / 4),
                Some(Duration::from_secs(60))
            ),
            23 * GB
        );
        // Never more than the saturated sum.
        assert_eq!(
            expected_bytes(u64::MAX, u64::MAX, Some(u64::MAX), Some(1), None),
            u64::MAX
        );
        assert_eq!(
            expected_bytes(u64::MAX, 1, Some(2), Some(u64::MAX), Some(Duration::MAX)),
            u64::MAX
        );
    }
}
