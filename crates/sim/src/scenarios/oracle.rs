//! An oracle's start order, for the benchmark only: the order a plan that knew every VM's
//! migration time in advance would start a source's VMs in, so that the source's slots all end
//! together. Not vmove's behaviour: vmove starts the largest ready VM first (memory plus disks)
//! and does not know how long a move will take, nor a guest's dirty rate before its move.
//! `vmove-bench --quick` prints runs in this order beside vmove's, at the same limits, to
//! measure how much of the gap between vmove and the lower bound is the order (the packing of
//! list scheduling) and how much is what no order avoids (faults).
//!
//! The oracle's plan per source: each VM's time alone at the rate one of the source's slots
//! gets ([`alone`], the simulator's own pre-copy model), split over the slots by
//! [`partition`], then started in the order of the planned start times. It is handed to the
//! engine as per-VM priorities (`RunSpec::priorities`, higher first), which the engine's
//! ready sets already order by; nothing else of the run changes.

use super::{Scenario, alone};
use std::collections::BTreeMap;
use vmove_core::model::HostId;

/// What the oracle knows of a VM's migration time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knows {
    /// Its time alone, dirty rate included: memory a busy guest dirties is sent again.
    Times,
    /// Its size only (memory and disks at the slot's rate, as if no guest dirtied memory): what
    /// a plan can know without a dirty-rate measurement.
    Sizes,
}

/// Splits jobs of `times` over `k` slots so that the most loaded slot ends as early as this
/// finds: the longest first onto the least loaded slot (LPT), then, while one lowers it, the
/// best move or swap of one job between the most loaded slot and another. Returns each slot's
/// jobs, longest first (ties by index, so the same input gives the same plan).
pub fn partition(times: &[u64], k: usize) -> Vec<Vec<usize>> {
    let k = k.max(1);
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by_key(|&j| (std::cmp::Reverse(times[j]), j));
    let mut slots: Vec<Vec<usize>> = vec![Vec::new(); k];
    let mut load = vec![0u64; k];
    for j in order {
        let s = (0..k).min_by_key(|&s| (load[s], s)).unwrap_or(0);
        slots[s].push(j);
        load[s] += times[j];
    }
    // Each step lowers the largest load or stops: at most as many steps as there are
    // distinct loads below it; a cap keeps a pathological input bounded all the same.
    for _ in 0..times.len() * k * 4 {
        let top = (0..k).max_by_key(|&s| (load[s], s)).unwrap_or(0);
        // (new larger of the two loads, other slot, job on top, job on the other slot if a swap)
        let mut best: Option<(u64, usize, usize, Option<usize>)> = None;
        let mut consider = |cand: (u64, usize, usize, Option<usize>)| {
            if cand.0 < load[top] && best.is_none_or(|b| cand.0 < b.0) {
                best = Some(cand);
            }
        };
        for o in (0..k).filter(|&o| o != top) {
            for (ia, &a) in slots[top].iter().enumerate() {
                let moved = (load[top] - times[a]).max(load[o] + times[a]);
                consider((moved, o, ia, None));
                for (ib, &b) in slots[o].iter().enumerate() {
                    if times[b] < times[a] {
                        let t = load[top] - times[a] + times[b];
                        let u = load[o] + times[a] - times[b];
                        consider((t.max(u), o, ia, Some(ib)));
                    }
                }
            }
        }
        let Some((_, o, ia, ib)) = best else {
            break;
        };
        let a = slots[top].remove(ia);
        load[top] -= times[a];
        load[o] += times[a];
        if let Some(ib) = ib {
            let b = slots[o].remove(ib);
            load[o] -= times[b];
            load[top] += times[b];
            slots[top].push(b);
        }
        slots[o].push(a);
    }
    for s in &mut slots {
        s.sort_by_key(|&j| (std::cmp::Reverse(times[j]), j));
    }
    slots
}

/// The order in which list scheduling reproduces `slots` when every job takes its time: by
/// planned start (each slot's jobs back to back), longer first at the same start.
fn start_order(times: &[u64], slots: &[Vec<usize>]) -> Vec<usize> {
    let mut starts: Vec<(u64, std::cmp::Reverse<u64>, usize)> = Vec::new();
    for s in slots {
        let mut t = 0;
        for &j in s {
            starts.push((t, std::cmp::Reverse(times[j]), j));
            t += times[j];
        }
    }
    starts.sort_unstable();
    starts.into_iter().map(|(_, _, j)| j).collect()
}

/// Sets `sc`'s priorities so that each source starts its VMs in the oracle's order for `slots`
/// migrations at once per host. A slot's rate is the source's: its stream cap, or its NIC
/// shared by `slots` migrations if that is less.
pub fn order(sc: &mut Scenario, slots: u32, knows: Knows) {
    let mut by_source: BTreeMap<HostId, Vec<(String, u64)>> = BTreeMap::new();
    for v in sc.cluster.vm_specs() {
        let Some(h) = sc.cluster.host_spec(&v.host) else {
            continue;
        };
        let rate = h
            .stream_cap_bytes_per_sec
            .min(h.nic_bytes_per_sec / u64::from(slots.max(1)));
        let dirty = match knows {
            Knows::Times => v.dirty_rate,
            Knows::Sizes => 0,
        };
        let (_, ms) = alone(v.disk_bytes(), v.memory_bytes, dirty, rate);
        by_source
            .entry(v.host.clone())
            .or_default()
            .push((v.name.clone(), ms));
    }
    for vms in by_source.values() {
        let times: Vec<u64> = vms.iter().map(|(_, ms)| *ms).collect();
        let plan = partition(&times, slots as usize);
        let order = start_order(&times, &plan);
        let n = i32::try_from(order.len()).unwrap_or(i32::MAX);
        for (rank, j) in order.into_iter().enumerate() {
            let rank = i32::try_from(rank).unwrap_or(i32::MAX);
            sc.spec.priorities.insert(vms[j].0.clone(), n - rank);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(times: &[u64], slots: &[Vec<usize>]) -> Vec<u64> {
        slots
            .iter()
            .map(|s| s.iter().map(|&j| times[j]).sum())
            .collect()
    }

    /// Largest-first alone puts 3+2+2 on one slot and 3+2 on the other (7 and 5); a swap of a
    /// 3 for a 2 evens them (6 and 6).
    #[test]
    fn the_partition_evens_what_largest_first_leaves_uneven() {
        let times = [3, 3, 2, 2, 2];
        let plan = partition(&times, 2);
        let mut l = loads(&times, &plan);
        l.sort_unstable();
        assert_eq!(l, vec![6, 6]);
        let mut all: Vec<usize> = plan.concat();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3, 4], "every job once");
    }

    /// Started in the planned order, each slot's jobs follow each other: the second job to start
    /// on the slot that holds two 3s is a 3, not the next largest overall.
    #[test]
    fn the_start_order_follows_the_plan() {
        let times = [3, 3, 2, 2, 2];
        let plan = partition(&times, 2);
        let order = start_order(&times, &plan);
        assert_eq!(order.len(), 5);
        // At instant 0 both slots start their longest job: a 3 and a 2.
        let first_two: Vec<u64> = order[..2].iter().map(|&j| times[j]).collect();
        assert!(
            first_two.contains(&3) && first_two.contains(&2),
            "{first_two:?}"
        );
    }

    #[test]
    fn no_jobs_and_more_slots_than_jobs_are_fine() {
        assert_eq!(partition(&[], 3), vec![Vec::<usize>::new(); 3]);
        let plan = partition(&[5], 4);
        assert_eq!(plan.concat(), vec![0]);
        assert_eq!(partition(&[1, 2], 0).concat().len(), 2);
    }
}
