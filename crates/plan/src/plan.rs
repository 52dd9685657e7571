//! The plan: the run simulated on the observed hosts with the calibrated figures.

use crate::calibrate::Calibration;
use crate::figures::{Flags, assumptions_for, levels_used};
use anyhow::{Context, Result, anyhow};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use vmove_core::{EventKind, HostId, RunSpec};
use vmove_sim::scenarios::{ObservedHost, from_observed};
use vmove_sim::{SimOptions, SimOutcome, simulate};

/// One VM's move as planned (the journal's value: a run journals its plan as these).
pub use vmove_journal::PlannedMove;

/// What a plan predicts.
#[derive(Debug)]
pub struct Plan {
    /// The figures used and where they came from, as lines for a person.
    pub figures: String,
    /// The moves in the order they start.
    pub order: Vec<PlannedMove>,
    /// When the last VM is done, with the measured start-up and last verification added.
    pub eta: Duration,
    /// The simulated run: every event (for the per-VM rows, the reasons a VM would not move
    /// and `--json`) and the core's final view.
    pub simulated: SimOutcome,
}

/// The hosts a plan needs figures of: every source and every allowed destination.
pub fn involved(spec: &RunSpec) -> BTreeSet<HostId> {
    let mut involved = BTreeSet::new();
    for s in &spec.sources {
        involved.insert(s.host.clone());
        involved.extend(s.destinations.iter().cloned());
    }
    involved
}

/// Plans `spec` on a simulated copy of the `observed` hosts, with the figures of `calibration`
/// and `flags` (flags win). `default_limit` is the slots of a host that reports no limit.
pub fn plan(
    spec: RunSpec,
    observed: &[ObservedHost],
    default_limit: u32,
    calibration: &Calibration,
    flags: &Flags,
) -> Result<Plan> {
    let (mut assumptions, header, tail_ms) = assumptions_for(&spec, calibration, flags);
    assumptions.default_limit = default_limit;
    let cluster = from_observed(observed, &assumptions)
        .context("the hosts' figures do not make a cluster")?;
    let figures = header + &levels_used(&spec, &cluster);
    let simulated = simulate(spec, cluster, SimOptions::default())
        .map_err(|e| anyhow!("the plan could not be simulated: {e}"))?;
    let mut ends = BTreeMap::new();
    for e in &simulated.events {
        if let EventKind::Moved { vm, .. } = &e.kind {
            ends.insert(vm.clone(), e.at);
        }
    }
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for e in &simulated.events {
        if let EventKind::AttemptStarted {
            vm,
            source,
            destination,
            mode,
            ..
        } = &e.kind
            && seen.insert(vm.clone())
        {
            order.push(PlannedMove {
                vm: vm.clone(),
                source: source.clone(),
                destination: destination.clone(),
                mode: *mode,
                start: e.at,
                end: ends.get(vm).copied(),
            });
        }
    }
    let eta = simulated.makespan.since_epoch() + Duration::from_millis(tail_ms);
    Ok(Plan {
        figures,
        order,
        eta,
        simulated,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use vmove_core::VmId;

    /// A plan of the demo's evacuation with no history: every route's figures are defaults and
    /// say so, every VM is in the order once, and the ETA is the simulated end.
    #[test]
    fn a_plan_without_history_uses_defaults_and_orders_every_vm_once() {
        let demo = vmove_sim::scenarios::demo();
        let spec = demo.scenario.spec.clone();
        let cluster = demo.scenario.cluster;
        let observed: Vec<ObservedHost> = involved(&spec)
            .into_iter()
            .map(|h| ObservedHost {
                info: cluster.host_info(&h).unwrap(),
                vms: cluster.list_vms(&h).unwrap(),
                id: h,
            })
            .collect();
        let cal = Calibration::from_samples(&[], &[], "nothing".into());
        let p = plan(spec, &observed, 2, &cal, &Flags::default()).unwrap();
        assert!(p.figures.contains("DEFAULTS used"), "{}", p.figures);
        let vms: BTreeSet<&VmId> = p.order.iter().map(|m| &m.vm).collect();
        assert_eq!(vms.len(), p.order.len());
        assert!(!p.order.is_empty());
        assert!(p.order.windows(2).all(|w| w[0].start <= w[1].start));
        for m in &p.order {
            if let Some(end) = m.end {
                assert!(end >= m.start, "{m:?}");
            }
        }
        assert!(p.eta >= p.simulated.makespan.since_epoch());
    }
}
