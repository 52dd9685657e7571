//! A lower bound on any schedule's makespan ([`lower_bound`]), and the time one live migration
//! takes alone under the cluster's pre-copy model ([`alone`]).

use crate::cluster::{DEFAULT_DOWNTIME_MS, MIN_FINAL_ROUND, MS_PER_SEC, SimCluster};
use vmove_core::model::{Health, HostId, VmId};
use vmove_core::spec::{RunSpec, Selection};
use vmove_core::time::Time;

/// Bytes and milliseconds one live migration takes alone at `rate`, following the cluster's
/// pre-copy model (disk, then memory rounds until a round fits in the downtime). The bytes are
/// those sent before the switch-over: the final stop-and-copy takes no time in the model, so it
/// is not counted (a bound built on these bytes stays a bound).
pub fn alone(disk: u64, memory: u64, dirty_rate: u64, rate: u64) -> (u64, u64) {
    let rate = rate.max(1);
    let ms_for = |bytes: u64| (u128::from(bytes) * MS_PER_SEC).div_ceil(u128::from(rate)) as u64;
    let mut bytes = disk;
    let mut ms = ms_for(disk);
    if memory == 0 {
        return (bytes, ms);
    }
    if dirty_rate >= rate {
        // Never converges without an aid: at least the disks and one full memory pass.
        return (bytes + memory, ms + ms_for(memory));
    }
    let budget = ((u128::from(rate) * u128::from(DEFAULT_DOWNTIME_MS) / MS_PER_SEC) as u64)
        .max(MIN_FINAL_ROUND);
    let mut round = memory;
    loop {
        let d = ms_for(round);
        bytes += round;
        ms += d;
        let next = ((u128::from(dirty_rate) * u128::from(d) / MS_PER_SEC) as u64).min(memory);
        if next <= budget {
            return (bytes, ms);
        }
        round = next;
    }
}

/// A valid lower bound on the makespan of `spec` on `cluster` under any scheduler: the largest
/// of (a) the longest single move alone at its best rate (after a backup that holds it from the
/// start), (b) per source host, the bytes of its VMs over its best throughput
/// (min(slots x per-migration cap, NIC)), (c) all bytes over the destinations' summed
/// throughput, (d) all bytes over the cluster cap's throughput, (e) per source host, and over
/// the destinations' and the cluster cap's slots, the time its moves hold a slot over its
/// slots: each move alone, plus the attempts that surely fail or hang part-way before it could
/// have ended ([`SimCluster::surely_lost_ms`]; such an attempt holds its slot that long
/// whatever its rate, and (a) counts it too). VMs that will not move (bad status, permanent
/// failure, no destination fits) are left out: a run that gives a VM up may end sooner.
pub fn lower_bound(cluster: &SimCluster, spec: &RunSpec) -> Time {
    let s = &spec.settings;
    let limit = |h: &HostId| -> u64 {
        let hs = cluster.host_spec(h);
        let mut l = hs
            .and_then(|x| x.migration_limit)
            .unwrap_or(s.default_host_limit);
        if let Some(c) = spec.hosts.get(h).and_then(|x| x.max_migrations) {
            l = l.min(c);
        }
        if let Some(c) = s.max_parallel {
            l = l.min(c);
        }
        u64::from(l.max(1))
    };
    let throughput = |h: &HostId| -> u64 {
        cluster.host_spec(h).map_or(1, |x| {
            (limit(h) * x.stream_cap_bytes_per_sec).min(x.nic_bytes_per_sec)
        })
    };
    let permanent: std::collections::BTreeSet<VmId> = cluster.permanent_failures();
    // Each host's VMs, in creation order, gathered once (not once per source).
    let mut on_host: std::collections::HashMap<&HostId, Vec<&crate::cluster::VmSpec>> =
        std::collections::HashMap::new();
    for v in cluster.vm_specs() {
        on_host.entry(&v.host).or_default().push(v);
    }
    let mut longest = 0u64;
    let mut total = 0u128;
    let mut max_rate = 1u64;
    let mut dests = std::collections::BTreeSet::new();
    // Destination lists already added to `dests` (sources often share one).
    let mut lists_seen: Vec<std::sync::Arc<[HostId]>> = Vec::new();
    let mut per_source_bound = 0u64;
    let mut total_slot_ms = 0u128;
    // The last source's targets, by its destination list and its own rates.
    type Targets = (std::sync::Arc<[HostId]>, (u64, u64), Vec<(u64, u64, u64)>);
    let mut targets_of: Option<Targets> = None;
    for src in &spec.sources {
        let Some(ss) = cluster.host_spec(&src.host) else {
            continue;
        };
        let matchers: Vec<_> = match &src.select {
            Selection::All => vec![],
            Selection::Names(p) => p
                .iter()
                .filter_map(|x| vmove_core::select::compile(x).ok())
                .collect(),
        };
        // The source's destinations with the rate a move to each gets, fastest first: a VM's
        // best rate is the first one it fits on (the same as the largest over all it fits on).
        // Made once per shared list and source rates: 2,500 sources sharing one list of 2,500
        // destinations looked up 6.25 M host specs by name.
        let caps = (ss.stream_cap_bytes_per_sec, ss.nic_bytes_per_sec);
        let reuse = targets_of.as_ref().is_some_and(|(list, c, _)| {
            std::sync::Arc::ptr_eq(list, &src.destinations) && *c == caps
        });
        if !reuse {
            let mut made: Vec<(u64, u64, u64)> = src
                .destinations
                .iter()
                .filter_map(|d| cluster.host_spec(d))
                .map(|ds| {
                    let r = caps
                        .0
                        .min(ds.stream_cap_bytes_per_sec)
                        .min(caps.1)
                        .min(ds.nic_bytes_per_sec);
                    (r, ds.memory_bytes, ds.disk_bytes)
                })
                .collect();
            made.sort_by_key(|t| std::cmp::Reverse(t.0));
            targets_of = Some((src.destinations.clone(), caps, made));
        }
        let targets: &[(u64, u64, u64)] = targets_of.as_ref().map_or(&[], |(_, _, t)| t);
        let mut source_bytes = 0u128;
        // Milliseconds of the source's slots its moves hold at least (lost attempts too).
        let mut source_slot_ms = 0u128;
        for v in on_host.get(&src.host).into_iter().flatten() {
            if !matchers.is_empty() && !matchers.iter().any(|m| m.is_match(&v.name)) {
                continue;
            }
            if matches!(v.health, Health::Bad(_)) || permanent.contains(&v.id) {
                continue;
            }
            let live = v.power.is_live();
            let disk = v.disk_bytes();
            let best = targets
                .iter()
                .find(|&&(_, mem, dsk)| !((live && v.memory_bytes > mem) || disk > dsk))
                .map(|&(r, _, _)| r);
            let Some(rate) = best else { continue };
            max_rate = max_rate.max(rate);
            let (bytes, ms) = alone(
                disk,
                if live { v.memory_bytes } else { 0 },
                v.dirty_rate,
                rate,
            );
            let ready = cluster.blocked_from_start_until(&v.id).map_or(0, |t| t.0);
            if ready > s.backup_threshold.as_millis() as u64 {
                continue; // held past the threshold: it will not move
            }
            let lost = cluster.surely_lost_ms(&v.id, ms);
            longest = longest.max(ready + lost + ms);
            source_bytes += u128::from(bytes);
            source_slot_ms += u128::from(lost + ms);
        }
        per_source_bound = per_source_bound
            .max((source_bytes * MS_PER_SEC / u128::from(throughput(&src.host))) as u64)
            .max((source_slot_ms / u128::from(limit(&src.host))) as u64);
        total += source_bytes;
        total_slot_ms += source_slot_ms;
        if !lists_seen
            .iter()
            .any(|l| std::sync::Arc::ptr_eq(l, &src.destinations))
        {
            lists_seen.push(src.destinations.clone());
            dests.extend(src.destinations.iter().cloned());
        }
    }
    let dest_tp: u128 = dests
        .iter()
        .map(|d| u128::from(throughput(d)))
        .sum::<u128>()
        .max(1);
    let dest_bound = (total * MS_PER_SEC / dest_tp) as u64;
    let dest_slots: u128 = dests
        .iter()
        .map(|d| u128::from(limit(d)))
        .sum::<u128>()
        .max(1);
    let dest_slot_bound = (total_slot_ms / dest_slots) as u64;
    let cap_bound = s.cluster_cap.map_or(0, |c| {
        ((total * MS_PER_SEC / (u128::from(c) * u128::from(max_rate))) as u64)
            .max((total_slot_ms / u128::from(c.max(1))) as u64)
    });
    Time(
        longest
            .max(per_source_bound)
            .max(dest_bound)
            .max(dest_slot_bound)
            .max(cap_bound),
    )
}
