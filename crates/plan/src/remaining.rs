//! A re-plan of what is left of a running run, from its journal alone: the run's spec with its
//! VMs that are over left out, the hosts as the run last observed them, and the figures fitted
//! from past runs plus the run's own finished migrations. `vmove serve` gives it as the run's
//! ETA (docs/cli.md, `vmove serve`).
//!
//! What is left, and how (the rules docs/cli.md states):
//! - a VM that is moved, unmigratable or cancelled, or whose migration is over (`verifying`,
//!   `cleaning_up`: only its check is left, which the plan's measured tail covers) is left out;
//! - a VM whose migration runs (it holds its slots) is planned as a new migration of the bytes
//!   its latest progress says are left (all of its bytes before any progress), started before
//!   every other VM (it holds its slots now); its fixed cost is counted again;
//! - every other VM (queued, backing off, retrying) is planned whole;
//! - each host as the newest successful `host_refreshed` answer of the run says, except that
//!   the run's own migrations are not counted as someone else's (the arriving copy of a VM of
//!   the run is not listed, its leaving copy is idle, and the host's count of migrations in
//!   flight is lowered by those);
//! - the figures: [`Calibration::from_samples`] of the past runs' samples and this run's own,
//!   with no start-up time (the run has started). A route not measured yet takes the fastest
//!   measured route's rate (as in `vmove plan`); when none of the routes the re-plan uses was
//!   measured there is no plan: one on default figures is no better than the rate so far.

use crate::calibrate::{Calibration, Sample, samples_of_record};
use crate::figures::Flags;
use crate::plan::{Plan, involved, plan};
use anyhow::{Result, anyhow, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use vmove_core::model::Activity;
use vmove_core::{HostId, Input, Phase, Time, VmId};
use vmove_journal::{EntryBody, RunRecord, RunState};
use vmove_sim::scenarios::ObservedHost;

/// The re-plan of what is left of a run.
#[derive(Debug)]
pub struct Remaining {
    /// The run time the re-plan starts at: the latest entry of the record.
    pub from: Time,
    /// How long what is left takes (the plan's ETA; no start-up time).
    pub eta: Duration,
    /// VMs planned (those not over), and of those, how many were in flight.
    pub vms: usize,
    pub in_flight: usize,
    /// How many measured migrations the figures came from (past runs and this one).
    pub samples: usize,
    /// The plan itself (its figures' lines, order, simulated run).
    pub plan: Plan,
}

impl Remaining {
    /// When the run is predicted to end (run time).
    pub fn ends_at(&self) -> Time {
        self.from + self.eta
    }
}

/// Whether a VM in `phase` is left out of the re-plan: it is over, or its migration is.
fn done(phase: Phase) -> bool {
    phase.is_final() || matches!(phase, Phase::Verifying | Phase::CleaningUp)
}

/// The hosts as the run last observed them: per host, its newest successful `host_refreshed`
/// answer (or unasked input) in the record.
pub fn last_observed(record: &RunRecord) -> BTreeMap<HostId, ObservedHost> {
    let mut out = BTreeMap::new();
    for e in &record.entries {
        let (EntryBody::Outcome { input, .. } | EntryBody::Input(input)) = &e.body else {
            continue;
        };
        if let Some(o) = observed(input) {
            out.insert(o.id.clone(), o);
        }
    }
    out
}

/// A host as a run observed it: a successful `host_refreshed` answer (its figures and VMs);
/// `None` for any other input. What a plan of the run is made from, as the run reads it.
pub fn observed(input: &Input) -> Option<ObservedHost> {
    match input {
        Input::HostRefreshed {
            host,
            result: Ok((info, vms)),
            ..
        } => Some(ObservedHost {
            id: host.clone(),
            info: info.clone(),
            vms: vms.clone(),
        }),
        _ => None,
    }
}

/// Re-plans what is left of the running run `record` (read so far) with the `history`
/// samples of past runs ([`samples_of_record`] of each). An error says why no plan could be
/// made (the caller falls back to another estimate).
pub fn remaining(record: &RunRecord, history: &[Sample]) -> Result<Remaining> {
    if record.summary.state != RunState::Running {
        bail!("the run is over");
    }
    let mut spec = record.spec.clone();
    if spec.sources.is_empty() {
        bail!("the run's spec names no source");
    }
    let from = record
        .entries
        .iter()
        .map(|e| e.at)
        .max()
        .unwrap_or(Time::ZERO);
    // What is over (left out of the hosts' lists below).
    let mut over: BTreeSet<&VmId> = BTreeSet::new();
    // A VM in flight: the share of its bytes still to move (1.0 before any progress).
    let mut in_flight: BTreeMap<&VmId, f64> = BTreeMap::new();
    for v in &record.vms {
        if done(v.phase) {
            over.insert(&v.vm);
        } else if v.phase.holds_slot() {
            let share = match &v.progress {
                Some(p) if p.bytes_total > 0 => {
                    (p.bytes_remaining as f64 / p.bytes_total as f64).clamp(0.0, 1.0)
                }
                _ => 1.0,
            };
            in_flight.insert(&v.vm, share);
            // Started first: it holds its slots now.
            spec.priorities.insert(v.name.clone(), i32::MAX);
        }
    }
    let left = record.vms.len() - over.len();
    // The hosts as last observed, the run's own migrations not counted as someone else's.
    let ours: BTreeSet<&VmId> = record.vms.iter().map(|v| &v.vm).collect();
    let mut seen = last_observed(record);
    let mut observed = Vec::new();
    for h in involved(&spec) {
        let Some(mut o) = seen.remove(&h) else {
            bail!("no figures of host `{h}` were journaled by the run");
        };
        let mut own_migrations = 0u32;
        o.vms.retain_mut(|v| {
            if !ours.contains(&v.id) {
                return true;
            }
            // What is over is left out of the hosts' lists: nothing selects it (an `exclude`
            // per VM would cost the selection of every refresh a match per VM over).
            if over.contains(&v.id) {
                return false;
            }
            if v.activity == Activity::MigratingIn {
                own_migrations += 1;
                return false;
            }
            if v.activity.is_migration() {
                own_migrations += 1;
                v.activity = Activity::Idle;
            }
            if let Some(share) = in_flight.get(&v.id) {
                let scale = |b: u64| (b as f64 * share).round() as u64;
                v.memory_bytes = scale(v.memory_bytes);
                v.disk_bytes = scale(v.disk_bytes);
            }
            true
        });
        o.info.active_migrations = o.info.active_migrations.saturating_sub(own_migrations);
        observed.push(o);
    }
    // The figures: past runs and this run's own finished migrations; no start-up to add.
    let (mut samples, _) = samples_of_record(record);
    samples.extend(history.iter().cloned());
    let calibration = Calibration::from_samples(
        &samples,
        &[],
        format!(
            "{} measured migrations (past runs and this one)",
            samples.len()
        ),
    );
    let default_limit = spec.settings.default_host_limit;
    let p = plan(
        spec,
        &observed,
        default_limit,
        &calibration,
        &Flags::default(),
    )?;
    // Routes not measured yet take the fastest measured one's rate (as `vmove plan` does);
    // with none measured, the figures would all be defaults.
    if !p.order.is_empty()
        && !p.order.iter().any(|m| {
            calibration
                .routes
                .contains_key(&(m.source.clone(), m.destination.clone()))
        })
    {
        return Err(anyhow!(
            "no migration on the routes the plan uses has been measured yet"
        ));
    }
    Ok(Remaining {
        from,
        eta: p.eta,
        vms: left,
        in_flight: in_flight.len(),
        samples: samples.len(),
        plan: p,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::calibrate::samples_of_run;
    use vmove_journal::{
        ConfigFormat, Entry, Holder, ProgressFigures, RunSummary, VmStatus, WallTime,
    };
    use vmove_sim::{SimOptions, simulate};

    /// A running run of [`vmove_sim::scenarios::large`] as its journal would hold it: every
    /// host refreshed once, the first `over` VMs moved, the next two migrating half-way, the
    /// rest queued; and a past run of the same cluster (its samples) to fit the figures.
    fn large_run(vms: usize, over: usize) -> (RunRecord, Vec<Sample>) {
        // The same cluster twice (its sizes come from a fixed seed): one run past, one now.
        let p = vmove_sim::scenarios::large(vms, 40);
        let past = simulate(p.spec, p.cluster, SimOptions::default()).unwrap();
        let s = vmove_sim::scenarios::large(vms, 40);
        let history = samples_of_run("past", &past.events, []).0;
        let mut entries = Vec::new();
        let mut statuses = Vec::new();
        for h in involved(&s.spec) {
            let listed = s.cluster.list_vms(&h).unwrap();
            for v in &listed {
                let mut st = VmStatus::new(v.id.clone(), Time(0));
                st.name = v.name.to_string();
                st.source = h.clone();
                st.memory_bytes = v.memory_bytes;
                st.disk_bytes = v.disk_bytes;
                statuses.push(st);
            }
            entries.push(Entry {
                seq: entries.len() as u64 + 1,
                at: Time(1_000),
                written_at: WallTime(0),
                body: EntryBody::Input(Input::HostRefreshed {
                    host: h.clone(),
                    requested_at: Time(900),
                    result: Ok((s.cluster.host_info(&h).unwrap(), listed)),
                }),
            });
        }
        statuses.sort_by(|a, b| a.vm.cmp(&b.vm));
        for (i, st) in statuses.iter_mut().enumerate() {
            if i < over {
                st.phase = Phase::Moved;
            } else if i < over + 2 {
                st.phase = Phase::Migrating;
                st.progress = Some(ProgressFigures {
                    bytes_done: 50,
                    bytes_total: 100,
                    bytes_remaining: 50,
                });
            }
        }
        let record = RunRecord {
            summary: RunSummary {
                id: "large".into(),
                command: String::new(),
                created_at: WallTime(0),
                state: RunState::Running,
                detail: None,
                finished_at: None,
                driver: Holder {
                    pid: 1,
                    host: "ops".into(),
                    started: None,
                    boot: None,
                },
                stop: None,
                lease: None,
                entries: entries.len() as u64,
                phases: BTreeMap::new(),
            },
            spec: s.spec,
            config: String::new(),
            config_format: ConfigFormat::Toml,
            entries,
            vms: statuses,
        };
        (record, history)
    }

    /// What is left of a 2,000-VM run, 1,000 of them over: the re-plan has the 1,000 others,
    /// the two in flight first, and takes well under a second (printed: `--nocapture`).
    #[test]
    fn a_re_plan_has_what_is_left_in_flight_first_and_is_quick() {
        let (record, history) = large_run(2_000, 1_000);
        let began = std::time::Instant::now();
        let r = remaining(&record, &history).unwrap();
        let took = began.elapsed();
        eprintln!("re-plan of 1,000 VMs left (of 2,000): {took:?}");
        assert_eq!((r.vms, r.in_flight), (1_000, 2));
        assert_eq!(r.plan.order.len(), 1_000, "{}", r.plan.figures);
        // Started first: with the first starts of the plan (others start then too: every
        // source has slots of its own).
        let first = r.plan.order[0].start;
        for v in &record.vms[1_000..1_002] {
            let m = r.plan.order.iter().find(|m| m.vm == v.vm).unwrap();
            assert_eq!(m.start, first, "{m:?}");
        }
        assert_eq!(r.from, Time(1_000));
        assert!(r.eta > Duration::ZERO);
    }

    /// No figures of a host, no measured route, a run that is over: no plan, and why.
    #[test]
    fn without_host_figures_or_measured_routes_there_is_no_plan_and_the_error_says_why() {
        let (mut record, history) = large_run(40, 10);
        let mut no_hosts = record.clone();
        no_hosts.entries.clear();
        let e = remaining(&no_hosts, &history).unwrap_err().to_string();
        assert!(e.contains("no figures of host"), "{e}");
        let e = remaining(&record, &[]).unwrap_err().to_string();
        assert!(e.contains("has been measured"), "{e}");
        record.summary.state = RunState::Finished;
        assert!(remaining(&record, &history).is_err());
    }
}
