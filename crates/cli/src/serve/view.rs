//! A run as the live page and `/metrics` show it: the journal's entries folded, one at a time,
//! into per-VM rows (the journal's own fold, [`VmStatus::apply`], plus speed and ETA), per-host
//! rows (slots in use, ours and foreign, free memory and disk from `HostSeen`), and the run's
//! counters. Fed by the one poller of the run (`hub.rs`), which sends what changed as deltas.

use crate::timeline::TimelineBuilder;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use vmove_core::{Event, EventKind, HostId, Phase, Time, VmId};
use vmove_journal::{Entry, EntryBody, RunState, RunSummary, VmStatus};

/// Every phase, in the order the page and `/metrics` list them.
pub const PHASES: [Phase; 13] = [
    Phase::Queued,
    Phase::Starting,
    Phase::Confirming,
    Phase::Migrating,
    Phase::Aborting,
    Phase::Locating,
    Phase::Discarding,
    Phase::BackingOff,
    Phase::Verifying,
    Phase::CleaningUp,
    Phase::Moved,
    Phase::Unmigratable,
    Phase::Cancelled,
];

/// Whether a VM in `phase` has no migration left (the re-plan leaves it out, as
/// `vmove_plan::remaining` does).
fn migration_over(phase: Phase) -> bool {
    phase.is_final() || matches!(phase, Phase::Verifying | Phase::CleaningUp)
}

/// One VM: its status and the two latest progress marks of its current attempt.
#[derive(Debug, Clone)]
pub struct VmRow {
    pub status: VmStatus,
    /// (run time, bytes done) of the latest and the one before, same attempt.
    marks: Vec<(Time, u64)>,
    /// The most bytes done each attempt reported (what `vmove report` counts as copied).
    copied: BTreeMap<u32, u64>,
}

impl VmRow {
    /// Bytes per second between the two latest progress marks of the attempt.
    pub fn speed(&self) -> Option<u64> {
        let [.., (t0, b0), (t1, b1)] = self.marks.as_slice() else {
            return None;
        };
        let ms = t1.0.checked_sub(t0.0).filter(|d| *d > 0)?;
        Some(b1.saturating_sub(*b0).saturating_mul(1000) / ms)
    }

    /// Seconds left of the running migration at its latest speed.
    pub fn eta_secs(&self) -> Option<u64> {
        let p = self.status.progress.as_ref()?;
        let speed = self.speed().filter(|s| *s > 0)?;
        Some(p.bytes_remaining.div_ceil(speed))
    }

    /// Bytes this VM still has to move (an estimate: what its running migration says is left,
    /// else its memory and disk; nothing once it is final).
    fn bytes_left(&self) -> u64 {
        let s = &self.status;
        if s.phase.is_final() {
            return 0;
        }
        match &s.progress {
            Some(p) if p.bytes_total > 0 => p.bytes_remaining,
            _ => s.memory_bytes.saturating_add(s.disk_bytes),
        }
    }

    fn to_json(&self) -> Value {
        let s = &self.status;
        json!({
            "vm": s.vm.as_str(),
            "name": s.name,
            "source": s.source.as_str(),
            "destination": s.destination.as_ref().map(|d| d.as_str()),
            "phase": s.phase.to_string(),
            "final": s.phase.is_final(),
            "mode": s.mode,
            "attempt": s.attempt,
            "waiting": s.waiting.as_ref().map(|w| w.to_string()),
            "bytes_done": s.progress.as_ref().map(|p| p.bytes_done),
            "bytes_total": s.progress.as_ref().map(|p| p.bytes_total),
            "bytes_remaining": s.progress.as_ref().map(|p| p.bytes_remaining),
            "speed_bytes_per_second": self.speed(),
            "eta_seconds": self.eta_secs(),
            "reason": s.reason.as_ref().map(|r| r.to_string()),
            "last_error": s.last_error,
            "verified": s.verified,
            "memory_bytes": s.memory_bytes,
            "disk_bytes": s.disk_bytes,
        })
    }
}

/// What the run's ETA is based on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtaBasis {
    /// The re-plan of what is left (`vmove_plan::remaining`).
    Plan,
    /// The bytes left over the run's rate so far (no plan could be made).
    Rate,
}

impl EtaBasis {
    /// As the JSON's `eta_basis` and the metric's `basis` label say it.
    pub fn as_str(self) -> &'static str {
        match self {
            EtaBasis::Plan => "plan",
            EtaBasis::Rate => "rate",
        }
    }
}

/// The latest re-plan of what is left of the run.
#[derive(Debug, Clone)]
pub struct Planned {
    /// When the run is predicted to end (run time).
    pub ends_at: Time,
    /// VMs planned, of them in flight, and the measured migrations the figures came from.
    pub vms: usize,
    pub in_flight: usize,
    pub samples: usize,
    /// How long the re-plan took (reading the journal and simulating), ms.
    pub took_ms: u64,
}

/// One host, as its latest `HostSeen` (and `HostUnreachable`) says.
#[derive(Debug, Clone, Default)]
pub struct HostRow {
    pub limit: u32,
    pub foreign: u32,
    pub free_memory_bytes: Option<u64>,
    pub free_disk_bytes: Option<u64>,
    pub unreachable: Option<String>,
}

/// A run folded from its journal entries.
#[derive(Debug)]
pub struct RunView {
    pub run: String,
    pub summary: Option<RunSummary>,
    /// The last entry applied.
    pub seq: u64,
    /// The latest run time seen in an entry.
    pub now: Time,
    order: Vec<VmId>,
    pub vms: BTreeMap<VmId, VmRow>,
    pub hosts: BTreeMap<HostId, HostRow>,
    /// Run time of the first attempt's start.
    first_start: Option<Time>,
    pub attempts: u64,
    /// Failed attempts by error class (`transient`, `permanent`...).
    pub failures: BTreeMap<String, u64>,
    /// Watchdog firings by watchdog (`start`, `stall`, `completion`).
    pub watchdogs: BTreeMap<String, u64>,
    /// Bytes migrations copied: per attempt the most bytes done it reported, summed (as
    /// `vmove report` counts them).
    pub bytes_copied: u64,
    /// Attempts' timeline bars changed since the last delta (the page re-fetches the SVG).
    timeline_changed: bool,
    changed_vms: BTreeSet<VmId>,
    changed_hosts: bool,
    /// The run's timeline, built entry by entry as the page's poller reads them (the
    /// `timeline` module's builder, the one model the reports draw too).
    timeline: Option<TimelineBuilder>,
    /// The latest wall-clock time an entry was written (ms).
    last_written: i64,
    /// The plan the run was started with (its predicted bars), once journaled.
    predicted: Vec<vmove_journal::PlannedMove>,
    /// The latest re-plan of what is left, when it could be made (the ETA's basis then).
    planned: Option<Planned>,
    /// Why the latest re-plan could not be made, if it could not.
    plan_error: Option<String>,
    /// Something the plan depends on changed (a VM's migration ended, a host was refreshed)
    /// since the latest re-plan began.
    pub replan_wanted: bool,
}

impl RunView {
    pub fn new(run: &str) -> RunView {
        RunView {
            run: run.to_owned(),
            summary: None,
            seq: 0,
            now: Time::ZERO,
            order: Vec::new(),
            vms: BTreeMap::new(),
            hosts: BTreeMap::new(),
            first_start: None,
            attempts: 0,
            failures: BTreeMap::new(),
            watchdogs: BTreeMap::new(),
            bytes_copied: 0,
            timeline_changed: false,
            changed_vms: BTreeSet::new(),
            changed_hosts: false,
            timeline: None,
            last_written: 0,
            predicted: Vec::new(),
            planned: None,
            plan_error: None,
            replan_wanted: true,
        }
    }

    /// Whether the run's plan is still to be read (none journaled yet).
    pub fn wants_predicted(&self) -> bool {
        self.predicted.is_empty()
    }

    /// The plan the run was started with, as journaled (empty: none yet).
    pub fn set_predicted(&mut self, moves: Vec<vmove_journal::PlannedMove>) {
        if !moves.is_empty() && moves != self.predicted {
            self.predicted = moves;
            self.timeline_changed = true;
        }
    }

    /// Applies entries read after [`RunView::seq`] (older ones are skipped).
    pub fn apply_entries(&mut self, entries: &[Entry]) {
        if self.timeline.is_none() {
            if let Some(s) = &self.summary {
                let epoch = u64::try_from(s.created_at.0).unwrap_or(0);
                self.timeline = Some(TimelineBuilder::new(&self.run, epoch));
                self.last_written = s.created_at.0;
            }
        }
        for e in entries {
            if e.seq <= self.seq {
                continue;
            }
            self.seq = e.seq;
            self.last_written = self.last_written.max(e.written_at.0);
            if let Some(t) = &mut self.timeline {
                t.apply_entry(e);
            }
            self.now = self.now.max(e.at);
            if let EntryBody::Event(ev) = &e.body {
                self.apply(ev);
            }
        }
    }

    fn apply(&mut self, ev: &Event) {
        self.now = self.now.max(ev.at);
        match &ev.kind {
            EventKind::HostSeen {
                host,
                limit,
                foreign,
                free_memory_bytes,
                free_disk_bytes,
            } => {
                let h = self.hosts.entry(host.clone()).or_default();
                h.limit = *limit;
                h.foreign = *foreign;
                h.free_memory_bytes = Some(*free_memory_bytes);
                h.free_disk_bytes = Some(*free_disk_bytes);
                h.unreachable = None;
                self.changed_hosts = true;
                self.replan_wanted = true;
            }
            EventKind::HostUnreachable { host, error } => {
                self.hosts.entry(host.clone()).or_default().unreachable = Some(error.clone());
                self.changed_hosts = true;
            }
            EventKind::RunStarted {
                sources,
                destinations,
                ..
            } => {
                for h in sources.iter().chain(destinations) {
                    self.hosts.entry(h.clone()).or_default();
                }
                self.changed_hosts = true;
            }
            EventKind::AttemptStarted { .. } => {
                self.attempts += 1;
                self.first_start.get_or_insert(ev.at);
                self.timeline_changed = true;
            }
            EventKind::AttemptFailed { class, .. } => {
                *self.failures.entry(class.as_str().to_owned()).or_default() += 1;
                self.timeline_changed = true;
            }
            EventKind::WatchdogFired { which, .. } => {
                *self.watchdogs.entry(which.as_str().to_owned()).or_default() += 1;
            }
            EventKind::Moved { .. }
            | EventKind::Unmigratable { .. }
            | EventKind::Cancelled { .. }
            | EventKind::Transition { .. } => self.timeline_changed = true,
            _ => {}
        }
        let Some(vm) = ev.kind.vm() else {
            return;
        };
        if !self.vms.contains_key(vm) {
            self.order.push(vm.clone());
            self.vms.insert(
                vm.clone(),
                VmRow {
                    status: VmStatus::new(vm.clone(), ev.at),
                    marks: Vec::new(),
                    copied: BTreeMap::new(),
                },
            );
        }
        let Some(row) = self.vms.get_mut(vm) else {
            return;
        };
        let slot_before = row.status.phase.holds_slot();
        let done_before = migration_over(row.status.phase);
        row.status.apply(ev);
        if done_before != migration_over(row.status.phase) {
            self.replan_wanted = true;
        }
        match &ev.kind {
            EventKind::AttemptStarted { .. } => row.marks.clear(),
            EventKind::Progress {
                attempt,
                bytes_done,
                ..
            } => {
                let most = row.copied.entry(*attempt).or_insert(0);
                self.bytes_copied = self
                    .bytes_copied
                    .saturating_add(bytes_done.saturating_sub(*most));
                *most = (*most).max(*bytes_done);
                row.marks.push((ev.at, *bytes_done));
                if row.marks.len() > 2 {
                    row.marks.remove(0);
                }
            }
            _ => {}
        }
        if row.status.progress.is_none() {
            row.marks.clear();
        }
        if slot_before != row.status.phase.holds_slot() {
            self.changed_hosts = true;
        }
        self.changed_vms.insert(vm.clone());
    }

    /// Slots this run holds on `host`: moves out of it and into it.
    pub fn ours(&self, host: &HostId) -> (u32, u32) {
        let mut out = (0, 0);
        for r in self.vms.values() {
            if !r.status.phase.holds_slot() {
                continue;
            }
            if &r.status.source == host {
                out.0 += 1;
            }
            if r.status.destination.as_ref() == Some(host) {
                out.1 += 1;
            }
        }
        out
    }

    /// VMs in each phase.
    pub fn phases(&self) -> BTreeMap<Phase, u32> {
        let mut out = BTreeMap::new();
        for r in self.vms.values() {
            *out.entry(r.status.phase).or_default() += 1;
        }
        out
    }

    /// Takes the outcome of a re-plan (`hub.rs` makes it off the poller's path).
    pub fn set_plan(&mut self, outcome: Result<Planned, String>) {
        match outcome {
            Ok(p) => {
                self.planned = Some(p);
                self.plan_error = None;
            }
            Err(e) => {
                self.planned = None;
                self.plan_error = Some(e);
            }
        }
    }

    /// Whether the run is over (its ETA is 0).
    fn over(&self) -> bool {
        self.summary
            .as_ref()
            .is_some_and(|s| s.state != RunState::Running)
    }

    /// The run's ETA in seconds and its basis: the latest re-plan's end less the run time now
    /// when one could be made, else [`RunView::rate_eta_secs`]. `Some(0)` for a run that is over.
    pub fn eta(&self) -> (Option<u64>, EtaBasis) {
        let basis = if self.planned.is_some() {
            EtaBasis::Plan
        } else {
            EtaBasis::Rate
        };
        if self.over() {
            return (Some(0), basis);
        }
        match &self.planned {
            Some(p) => (
                Some(p.ends_at.0.saturating_sub(self.now.0).div_ceil(1000)),
                EtaBasis::Plan,
            ),
            None => (self.rate_eta_secs(), EtaBasis::Rate),
        }
    }

    /// The run's ETA in seconds (see [`RunView::eta`]).
    pub fn eta_secs(&self) -> Option<u64> {
        self.eta().0
    }

    /// What the ETA is based on, for a person (the page's `run-eta-basis`).
    pub fn eta_basis_text(&self) -> String {
        match (&self.planned, &self.plan_error) {
            (Some(p), _) => format!(
                "(plan: {} VM(s) left, {} in flight, simulated on the hosts as last journaled \
                 with figures from {} measured migrations of past runs and this one)",
                p.vms, p.in_flight, p.samples
            ),
            (None, Some(e)) => {
                format!("(rate: bytes left over the run's rate so far; no plan: {e})")
            }
            (None, None) => "(rate: bytes left over the run's rate so far; no plan yet)".to_owned(),
        }
    }

    /// A simple estimate: the bytes every unfinished VM still has to move over the rate the
    /// run has moved bytes at since its first start. `Some(0)` for a run that is over; `None`
    /// before any byte moved.
    pub fn rate_eta_secs(&self) -> Option<u64> {
        if self
            .summary
            .as_ref()
            .is_some_and(|s| s.state != RunState::Running)
        {
            return Some(0);
        }
        let left: u64 = self.vms.values().map(VmRow::bytes_left).sum();
        if left == 0 && !self.vms.is_empty() {
            return Some(0);
        }
        let elapsed_ms = self.now.0.checked_sub(self.first_start?.0)?;
        if elapsed_ms == 0 || self.bytes_copied == 0 {
            return None;
        }
        let rate = u128::from(self.bytes_copied) * 1000 / u128::from(elapsed_ms);
        if rate == 0 {
            return None;
        }
        u64::try_from(u128::from(left).div_ceil(rate)).ok()
    }

    fn run_json(&self) -> Value {
        let s = self.summary.as_ref();
        let (eta, basis) = self.eta();
        let phases: BTreeMap<String, u32> = self
            .phases()
            .into_iter()
            .map(|(p, n)| (p.to_string(), n))
            .collect();
        json!({
            "id": self.run,
            "state": s.map(|s| s.state.as_str()),
            "command": s.map(|s| s.command.as_str()),
            "created_at_ms": s.map(|s| s.created_at.0),
            "finished_at_ms": s.and_then(|s| s.finished_at.map(|t| t.0)),
            "detail": s.and_then(|s| s.detail.as_deref()),
            "stop_requested": s.and_then(|s| s.stop.as_ref().map(|st| if st.abort_running { "now" } else { "stop" })),
            "seq": self.seq,
            "run_time_ms": self.now.0,
            "vms": self.vms.len(),
            "phases": phases,
            "attempts": self.attempts,
            "bytes_copied": self.bytes_copied,
            "eta_seconds": eta,
            "eta_basis": basis.as_str(),
            "eta_basis_text": self.eta_basis_text(),
            "eta_rate_seconds": self.rate_eta_secs(),
            "eta_plan_ms": self.planned.as_ref().map(|p| p.took_ms),
        })
    }

    fn hosts_json(&self) -> Value {
        Value::Array(
            self.hosts
                .iter()
                .map(|(id, h)| {
                    let (out, inn) = self.ours(id);
                    json!({
                        "host": id.as_str(),
                        "limit": h.limit,
                        "ours_out": out,
                        "ours_in": inn,
                        "ours": out + inn,
                        "foreign": h.foreign,
                        "free_memory_bytes": h.free_memory_bytes,
                        "free_disk_bytes": h.free_disk_bytes,
                        "unreachable": h.unreachable,
                    })
                })
                .collect(),
        )
    }

    /// Everything: what a client gets first.
    pub fn snapshot(&self) -> Value {
        json!({
            "kind": "snapshot",
            "run": self.run_json(),
            "hosts": self.hosts_json(),
            "vms": self.order.iter().filter_map(|v| self.vms.get(v)).map(VmRow::to_json).collect::<Vec<_>>(),
        })
    }

    /// What changed since the last delta (the run always; hosts and VMs that changed), or
    /// `None` when nothing did. Clears the marks.
    pub fn take_delta(&mut self, summary_changed: bool) -> Option<Value> {
        if !summary_changed && self.changed_vms.is_empty() && !self.changed_hosts {
            return None;
        }
        let vms: Vec<Value> = std::mem::take(&mut self.changed_vms)
            .iter()
            .filter_map(|v| self.vms.get(v))
            .map(VmRow::to_json)
            .collect();
        let hosts = if std::mem::take(&mut self.changed_hosts) {
            self.hosts_json()
        } else {
            Value::Null
        };
        Some(json!({
            "kind": "delta",
            "run": self.run_json(),
            "hosts": hosts,
            "vms": vms,
            "timeline_changed": std::mem::take(&mut self.timeline_changed),
        }))
    }

    /// The run's timeline as SVG, as it stands (`Timeline::from_run`'s rules for a run that is
    /// over and for sim hosts' run time).
    pub fn timeline_svg(&mut self) -> Option<String> {
        let created = self.summary.as_ref()?.created_at.0;
        let over = self
            .summary
            .as_ref()
            .is_some_and(|s| s.state != RunState::Running);
        let elapsed = u64::try_from(self.last_written - created).unwrap_or(0);
        let simulated = self.now.0 > elapsed.saturating_mul(2).saturating_add(2_000);
        let t = self.timeline.as_mut()?;
        t.simulated(simulated).over(over);
        Some(crate::timeline::svg(&t.build().with_plan(&self.predicted)))
    }

    /// The VMs in selection order.
    pub fn rows(&self) -> impl Iterator<Item = &VmRow> {
        self.order.iter().filter_map(|v| self.vms.get(v))
    }
}
