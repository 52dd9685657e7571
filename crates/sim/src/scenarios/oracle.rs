//! An oracle's start order, for the benchmark only: the order a plan that knew every VM's
//! migration time in advance would start a source's VMs in, so that the source's slots all end
//! together, made once before the run. vmove's own plan (`order = "packed"`, the core's
//! `engine/pack.rs`) is made again as the run goes, from what the hosts report: sizes, the
//! dirty rates a host measured, and the transfer rate progress figures show.
//! `vmove-bench --quick` prints runs in this order beside vmove's, at the same limits, to
//! measure how much of the gap between vmove and the lower bound is the order and how much is
//! what no order avoids (faults).
//!
//! The oracle's plan per source: each VM's time alone at the rate one of the source's slots
//! gets ([`alone`], the simulator's own pre-copy model), split over the slots by vmove's own
//! planner ([`plan_starts`]), then started in the order of the planned start times. It is handed
//! to the engine as per-VM priorities (`RunSpec::priorities`, higher first), which the engine's
//! ready sets order by, with `order = "largest_first"` so that the engine does not plan again;
//! nothing else of the run changes.

use super::{Scenario, alone};
use std::collections::BTreeMap;
use vmove_core::engine::pack::plan_starts;
use vmove_core::model::HostId;
use vmove_core::spec::Order;

/// What the oracle knows of a VM's migration time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knows {
    /// Its time alone, dirty rate included: memory a busy guest dirties is sent again.
    Times,
    /// Its size only (memory and disks at the slot's rate, as if no guest dirtied memory): what
    /// a plan can know without a dirty-rate measurement.
    Sizes,
}

/// The order in which list scheduling reproduces the plan of vmove's own planner
/// ([`plan_starts`], `order = "packed"`) for `times` on `k` free slots when every job takes its
/// time: by planned start, longer first at the same start, then by index.
fn start_order(times: &[u64], k: usize) -> Vec<usize> {
    let starts = plan_starts(&vec![0; k.max(1)], times);
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by_key(|&j| (starts[j], std::cmp::Reverse(times[j]), j));
    order
}

/// Sets `sc`'s priorities so that each source starts its VMs in the oracle's order for `slots`
/// migrations at once per host. A slot's rate is the source's: its stream cap, or its NIC
/// shared by `slots` migrations if that is less.
pub fn order(sc: &mut Scenario, slots: u32, knows: Knows) {
    sc.spec.settings.order = Order::LargestFirst;
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
        let order = start_order(&times, slots as usize);
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

    /// Largest first starts a 3 and a 3, then puts 2+2 behind them and the last 2 on one slot
    /// (7 and 5); the plan starts a 3 and a 2, the other 3 after the first, the 2s after the
    /// first 2 (6 and 6).
    #[test]
    fn the_start_order_follows_the_plan() {
        let times = [3, 3, 2, 2, 2];
        let order = start_order(&times, 2);
        assert_eq!(order.len(), 5);
        let first_two: Vec<u64> = order[..2].iter().map(|&j| times[j]).collect();
        assert_eq!(first_two, vec![3, 2]);
        let mut all = order.clone();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3, 4], "every job once");
    }

    #[test]
    fn no_jobs_and_more_slots_than_jobs_are_fine() {
        assert!(start_order(&[], 3).is_empty());
        assert_eq!(start_order(&[5], 4), vec![0]);
        assert_eq!(start_order(&[1, 2], 0).len(), 2);
    }
}
