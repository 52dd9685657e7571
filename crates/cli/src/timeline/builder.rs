//! The timeline's builder: a run's facts in order (journal entries, or events, commands and
//! answers as the runtime sees them) into a [`Timeline`], slot lanes assigned at the end; and the
//! [`Timeline`]'s constructors.

use super::model::{
    Attempt, AttemptOutcome, HostLanes, Lane, Predicted, SlotBar, Span, Timeline, VmLine, Wait,
    WaitKind,
};
use std::collections::{HashMap, HashSet};
use vmove_core::event::EventKind;
use vmove_core::{Command, ErrorClass, Event, Input, Phase, Time};
use vmove_journal::{Entry, EntryBody, RunRecord, RunState};

/// A host as it is being built.
#[derive(Clone, Debug, Default)]
struct HostAcc {
    limit: Option<u32>,
    foreign: Vec<Span>,
}

/// Builds a [`Timeline`] from a run's facts in order: entries ([`apply_entry`]) or bare events
/// ([`apply_event`]). [`build`](TimelineBuilder::build) may be called at any time (the live
/// page draws a run as it goes).
///
/// [`apply_entry`]: TimelineBuilder::apply_entry
/// [`apply_event`]: TimelineBuilder::apply_event
#[derive(Clone, Debug, Default)]
pub struct TimelineBuilder {
    run_id: String,
    epoch_unix_ms: u64,
    simulated: bool,
    over: bool,
    end_ms: u64,
    host_order: Vec<String>,
    hosts: HashMap<String, HostAcc>,
    vms: Vec<VmLine>,
    vm_index: HashMap<String, usize>,
    attempts: Vec<Attempt>,
    /// A VM's attempt not ended yet.
    open_attempt: HashMap<String, usize>,
    /// Attempts vmove began to abort.
    aborting: HashSet<usize>,
    /// A VM's open wait (at most one besides a pre-flight check).
    open_wait: HashMap<String, usize>,
    /// Pre-flight checks without an answer yet: (VM, attempt, destination) -> (VM row, wait).
    open_checks: HashMap<(String, u32, String), (usize, usize)>,
}

impl TimelineBuilder {
    /// A builder for run `run_id` whose run time 0 is `epoch_unix_ms` on the wall clock.
    pub fn new(run_id: &str, epoch_unix_ms: u64) -> TimelineBuilder {
        TimelineBuilder {
            run_id: run_id.to_owned(),
            epoch_unix_ms,
            ..TimelineBuilder::default()
        }
    }

    /// Says the run time is simulated.
    pub fn simulated(&mut self, yes: bool) -> &mut Self {
        self.simulated = yes;
        self
    }

    /// Says the run is over: open attempts are `unfinished`, not `running`.
    pub fn over(&mut self, yes: bool) -> &mut Self {
        self.over = yes;
        self
    }

    fn see(&mut self, at: Time) {
        self.end_ms = self.end_ms.max(at.as_millis());
    }

    fn host(&mut self, name: &str) -> &mut HostAcc {
        if !self.hosts.contains_key(name) {
            self.host_order.push(name.to_owned());
        }
        self.hosts.entry(name.to_owned()).or_default()
    }

    fn vm(&mut self, id: &str) -> usize {
        if let Some(i) = self.vm_index.get(id) {
            return *i;
        }
        self.vms.push(VmLine {
            id: id.to_owned(),
            name: id.to_owned(),
            source: String::new(),
            outcome: "unfinished".to_owned(),
            reason: None,
            ended_ms: None,
            waits: vec![],
            attempts: vec![],
        });
        self.vm_index.insert(id.to_owned(), self.vms.len() - 1);
        self.vms.len() - 1
    }

    fn close_wait(&mut self, vm: &str, at: u64) {
        if let Some(w) = self.open_wait.remove(vm) {
            let i = self.vm(vm);
            if let Some(wait) = self.vms[i].waits.get_mut(w) {
                wait.to_ms.get_or_insert(at);
            }
        }
    }

    fn open_wait(&mut self, vm: &str, kind: WaitKind, at: u64, label: String) {
        self.close_wait(vm, at);
        let i = self.vm(vm);
        self.vms[i].waits.push(Wait {
            kind,
            from_ms: at,
            to_ms: None,
            label,
        });
        self.open_wait
            .insert(vm.to_owned(), self.vms[i].waits.len() - 1);
    }

    /// The attempt `n` of `vm`, if it started.
    fn attempt_of(&self, vm: &str, n: u32) -> Option<usize> {
        let i = *self.vm_index.get(vm)?;
        self.vms[i]
            .attempts
            .iter()
            .copied()
            .find(|a| self.attempts[*a].attempt == n)
    }

    fn end_attempt(&mut self, a: usize, at: u64, outcome: AttemptOutcome, detail: Option<String>) {
        let att = &mut self.attempts[a];
        if att.end_ms.is_some() {
            return;
        }
        att.end_ms = Some(at);
        att.slot_end_ms.get_or_insert(at);
        att.outcome = outcome;
        if detail.is_some() {
            att.detail = detail;
        }
        if self.open_attempt.get(&att.vm) == Some(&a) {
            self.open_attempt.remove(&att.vm);
        }
    }

    /// Takes one journal entry: events, and the commands and answers that say how long a
    /// pre-flight check took.
    pub fn apply_entry(&mut self, e: &Entry) {
        self.see(e.at);
        match &e.body {
            EntryBody::Event(ev) => self.apply_event(ev),
            EntryBody::Intent(c) => self.apply_command(e.at, c),
            EntryBody::Outcome { input, .. } | EntryBody::Input(input) => {
                self.apply_input(e.at, input)
            }
        }
    }

    /// Takes a command about to be carried out (a pre-flight check opens its wait).
    pub fn apply_command(&mut self, at: Time, c: &Command) {
        self.see(at);
        if let Command::Preflight { request } = c {
            let vm = request.vm.to_string();
            let i = self.vm(&vm);
            self.vms[i].waits.push(Wait {
                kind: WaitKind::Preflight,
                from_ms: at.as_millis(),
                to_ms: None,
                label: format!(
                    "pre-flight check of attempt {} toward {}",
                    request.attempt, request.destination
                ),
            });
            let key = (vm, request.attempt, request.destination.to_string());
            self.open_checks
                .insert(key, (i, self.vms[i].waits.len() - 1));
        }
    }

    /// Takes an answer (a pre-flight check's answer closes its wait).
    pub fn apply_input(&mut self, at: Time, input: &Input) {
        self.see(at);
        if let Input::Preflighted {
            vm,
            attempt,
            destination,
            ..
        } = input
        {
            let key = (vm.to_string(), *attempt, destination.to_string());
            if let Some((i, w)) = self.open_checks.remove(&key) {
                self.vms[i].waits[w].to_ms = Some(at.as_millis());
            }
        }
    }

    /// Takes one event.
    pub fn apply_event(&mut self, ev: &Event) {
        self.see(ev.at);
        let at = ev.at.as_millis();
        match &ev.kind {
            EventKind::RunStarted {
                run_id,
                sources,
                destinations,
            } => {
                if self.run_id.is_empty() {
                    self.run_id = run_id.clone();
                }
                for h in sources.iter().chain(destinations) {
                    self.host(h.as_str());
                }
            }
            EventKind::HostSeen {
                host,
                limit,
                foreign,
                ..
            } => {
                let h = self.host(host.as_str());
                h.limit = Some(h.limit.map_or(*limit, |l| l.max(*limit)));
                let open = h.foreign.last_mut().filter(|s| s.to_ms.is_none());
                match open {
                    Some(s) if s.count == *foreign => {}
                    Some(s) => {
                        s.to_ms = Some(at);
                        if *foreign > 0 {
                            h.foreign.push(Span {
                                from_ms: at,
                                to_ms: None,
                                count: *foreign,
                            });
                        }
                    }
                    None if *foreign > 0 => h.foreign.push(Span {
                        from_ms: at,
                        to_ms: None,
                        count: *foreign,
                    }),
                    None => {}
                }
            }
            EventKind::Selected {
                vm, name, source, ..
            } => {
                let i = self.vm(vm.as_str());
                self.vms[i].name = name.clone();
                self.vms[i].source = source.to_string();
            }
            EventKind::Waiting { vm, reason } => {
                self.open_wait(vm.as_str(), WaitKind::of(reason), at, reason.to_string());
            }
            EventKind::Transition { vm, from, to } => {
                let vm = vm.as_str();
                if from.holds_slot() && !to.holds_slot() {
                    if let Some(&a) = self.open_attempt.get(vm) {
                        self.attempts[a].slot_end_ms.get_or_insert(at);
                    }
                }
                if *to == Phase::BackingOff {
                    self.open_wait(
                        vm,
                        WaitKind::BackOff,
                        at,
                        "backing off before a retry".into(),
                    );
                } else if *from == Phase::BackingOff || (*from == Phase::Queued && *to != *from) {
                    self.close_wait(vm, at);
                }
            }
            EventKind::AttemptStarted {
                vm,
                attempt,
                source,
                destination,
                mode,
            } => {
                let id = vm.as_str();
                self.close_wait(id, at);
                if let Some(prev) = self.open_attempt.get(id).copied() {
                    self.end_attempt(prev, at, AttemptOutcome::Unfinished, None);
                }
                self.host(source.as_str());
                self.host(destination.as_str());
                let i = self.vm(id);
                if self.vms[i].source.is_empty() {
                    self.vms[i].source = source.to_string();
                }
                self.attempts.push(Attempt {
                    vm: id.to_owned(),
                    name: self.vms[i].name.clone(),
                    attempt: *attempt,
                    source: source.to_string(),
                    destination: destination.to_string(),
                    mode: mode.to_string(),
                    start_ms: at,
                    slot_end_ms: None,
                    end_ms: None,
                    outcome: AttemptOutcome::Running,
                    detail: None,
                    out_lane: 0,
                    in_lane: 0,
                });
                let a = self.attempts.len() - 1;
                self.vms[i].attempts.push(a);
                self.open_attempt.insert(id.to_owned(), a);
            }
            EventKind::WatchdogFired { vm, attempt, .. }
            | EventKind::AbortWaiting { vm, attempt, .. } => {
                if let Some(a) = self.attempt_of(vm.as_str(), *attempt) {
                    self.aborting.insert(a);
                }
            }
            EventKind::AttemptFailed {
                vm,
                attempt,
                class,
                error,
                interrupted,
                ..
            } => {
                if let Some(a) = self.attempt_of(vm.as_str(), *attempt) {
                    let outcome = if *interrupted {
                        AttemptOutcome::Interrupted
                    } else if self.aborting.contains(&a) {
                        AttemptOutcome::Aborted
                    } else if *class == ErrorClass::DestinationRefused {
                        AttemptOutcome::Refused
                    } else {
                        AttemptOutcome::Failed
                    };
                    self.end_attempt(a, at, outcome, Some(format!("{class}: {error}")));
                }
            }
            EventKind::Moved { vm, .. } => {
                let id = vm.as_str();
                if let Some(a) = self.open_attempt.get(id).copied() {
                    self.end_attempt(a, at, AttemptOutcome::Moved, None);
                }
                self.close_wait(id, at);
                let i = self.vm(id);
                self.vms[i].outcome = "moved".into();
                self.vms[i].ended_ms = Some(at);
            }
            EventKind::Unmigratable { vm, reason, .. }
            | EventKind::Cancelled { vm, reason, .. } => {
                let id = vm.as_str();
                if let Some(a) = self.open_attempt.get(id).copied() {
                    let outcome = if self.aborting.contains(&a)
                        || matches!(ev.kind, EventKind::Cancelled { .. })
                    {
                        AttemptOutcome::Aborted
                    } else {
                        AttemptOutcome::Failed
                    };
                    self.end_attempt(a, at, outcome, Some(reason.to_string()));
                }
                self.close_wait(id, at);
                let i = self.vm(id);
                self.vms[i].outcome = if matches!(ev.kind, EventKind::Cancelled { .. }) {
                    "cancelled".into()
                } else {
                    "unmigratable".into()
                };
                self.vms[i].reason = Some(reason.to_string());
                self.vms[i].ended_ms = Some(at);
            }
            EventKind::RunFinished { .. } | EventKind::RunFailed { .. } => self.over = true,
            _ => {}
        }
    }

    /// The timeline as it stands: slot lanes assigned, open attempts `running` (or
    /// `unfinished` once the run is over).
    pub fn build(&self) -> Timeline {
        let mut attempts = self.attempts.clone();
        if self.over {
            for a in attempts
                .iter_mut()
                .filter(|a| a.outcome == AttemptOutcome::Running)
            {
                a.outcome = AttemptOutcome::Unfinished;
            }
        }
        let mut hosts = Vec::new();
        for name in &self.host_order {
            let acc = &self.hosts[name];
            let outbound = assign(&mut attempts, |a| &a.source == name, |a, l| a.out_lane = l);
            let inbound = assign(
                &mut attempts,
                |a| &a.destination == name,
                |a, l| a.in_lane = l,
            );
            hosts.push(HostLanes {
                name: name.clone(),
                limit: acc.limit,
                outbound,
                inbound,
                foreign: acc.foreign.clone(),
            });
        }
        Timeline {
            run_id: self.run_id.clone(),
            epoch_unix_ms: self.epoch_unix_ms,
            simulated: self.simulated,
            over: self.over,
            end_ms: self.end_ms,
            hosts,
            vms: self.vms.clone(),
            attempts,
            predicted: vec![],
        }
    }
}

/// When, within one millisecond, a slot is given back, taken for an instant, taken: slots freed
/// at `t` come first, then attempts refused at once, one after the other (each takes a slot and
/// gives it back at `t`, so the next can take the same one), then the starts at `t`, which may
/// take the slots those gave back. Lanes ([`assign`]) and the peak use ([`Timeline::peak_use`])
/// order an instant's changes this way, so they agree.
const FREED: u8 = 0;
const INSTANT: u8 = 1;
const TAKEN: u8 = 2;

/// A point of that order: (ms, phase, the attempt refused at once, before (0) or after (1) it).
type SlotPoint = (u64, u8, usize, u8);

/// Attempt `i`'s slot as (from, to) in [`SlotPoint`] order: refused at once, it holds it for an
/// instant of its start's millisecond, after the other attempts refused then with lower
/// indexes; otherwise from `TAKEN` of its start to `FREED` of its end (`None`: still held).
fn slot_span(a: &Attempt, i: usize) -> (SlotPoint, Option<SlotPoint>) {
    match a.slot_end_ms.or(a.end_ms) {
        Some(end) if end <= a.start_ms => (
            (a.start_ms, INSTANT, i, 0),
            Some((a.start_ms, INSTANT, i, 1)),
        ),
        Some(end) => ((a.start_ms, TAKEN, 0, 0), Some((end, FREED, 0, 0))),
        None => ((a.start_ms, TAKEN, 0, 0), None),
    }
}

/// Assigns the attempts `mine` picks to lanes, greedily by start time: each goes to the first
/// lane whose last bar gave its slot back by its start, else to a new lane. Interval
/// partitioning in start order: the number of lanes is the peak number of attempts holding a
/// slot at once. Within a millisecond, starts are ordered as [`slot_span`] says: an attempt
/// refused at once that sorted after a start at the same instant used to open a lane of its
/// own, one more than the peak.
fn assign(
    attempts: &mut [Attempt],
    mine: impl Fn(&Attempt) -> bool,
    set: impl Fn(&mut Attempt, usize),
) -> Vec<Lane> {
    let mut order: Vec<usize> = (0..attempts.len())
        .filter(|i| mine(&attempts[*i]))
        .collect();
    order.sort_by_key(|i| (slot_span(&attempts[*i], *i).0, *i));
    let mut lanes: Vec<Lane> = Vec::new();
    for i in order {
        let a = &attempts[i];
        let to = a.slot_end_ms.or(a.end_ms);
        let bar = SlotBar {
            attempt: i,
            from_ms: a.start_ms,
            to_ms: to,
        };
        let from = slot_span(a, i).0;
        let free = lanes.iter().position(|l| {
            l.bars.last().is_none_or(|b| {
                slot_span(&attempts[b.attempt], b.attempt)
                    .1
                    .is_some_and(|end| end <= from)
            })
        });
        let lane = match free {
            Some(l) => l,
            None => {
                lanes.push(Lane::default());
                lanes.len() - 1
            }
        };
        lanes[lane].bars.push(bar);
        set(&mut attempts[i], lane);
    }
    lanes
}

impl Timeline {
    /// The timeline of a run from its journal record: every entry in order; the run's creation
    /// time is run time 0 on the wall clock. A run whose run time went faster than the wall
    /// clock (sim hosts sped up) is marked `simulated`.
    pub fn from_run(rec: &RunRecord) -> Timeline {
        let epoch = u64::try_from(rec.summary.created_at.0).unwrap_or(0);
        let mut b = TimelineBuilder::new(&rec.summary.id, epoch);
        for e in &rec.entries {
            b.apply_entry(e);
        }
        let last_written = rec
            .entries
            .iter()
            .map(|e| e.written_at.0)
            .max()
            .unwrap_or(rec.summary.created_at.0);
        let elapsed = u64::try_from(last_written - rec.summary.created_at.0).unwrap_or(0);
        // Run time can only fall behind the wall clock in a real run (a resume starts its
        // clock at the last recorded time): ahead of it by more than the clocks' jitter, it
        // was simulated.
        b.simulated(b.end_ms > elapsed.saturating_mul(2).saturating_add(2_000));
        b.over(rec.summary.state != RunState::Running);
        b.build()
    }

    /// The timeline of a simulated run's events (a plan, the demo), run time 0 at `epoch`.
    pub fn from_events<'a>(
        run_id: &str,
        epoch_unix_ms: u64,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Timeline {
        let mut b = TimelineBuilder::new(run_id, epoch_unix_ms);
        b.simulated(true);
        for e in events {
            b.apply_event(e);
        }
        b.build()
    }

    /// Adds the plan's predicted bars (its moves' first attempts, as simulated, or as the run
    /// journaled them): one per VM of the timeline; a planned move of a VM the timeline does
    /// not have (not the run's, or not selected yet) is left out.
    pub fn with_plan(mut self, order: &[vmove_plan::PlannedMove]) -> Timeline {
        let names: HashMap<&str, &str> = self
            .vms
            .iter()
            .map(|v| (v.id.as_str(), v.name.as_str()))
            .collect();
        let mut drawn = HashSet::new();
        self.predicted = order
            .iter()
            .filter_map(|m| {
                let name = names.get(m.vm.as_str())?;
                drawn.insert(m.vm.as_str()).then_some((m, name))
            })
            .map(|(m, name)| Predicted {
                vm: m.vm.to_string(),
                name: (*name).to_owned(),
                source: m.source.to_string(),
                destination: m.destination.to_string(),
                start_ms: m.start.as_millis(),
                end_ms: m.end.map(Time::as_millis),
            })
            .collect();
        self.end_ms = self
            .predicted
            .iter()
            .filter_map(|p| p.end_ms)
            .fold(self.end_ms, u64::max);
        self
    }

    /// The largest time drawn: the last fact or the last predicted end, at least 1 ms.
    pub fn span_ms(&self) -> u64 {
        self.end_ms.max(1)
    }

    /// The peak number of attempts holding a slot of `host` at once: (outbound, inbound,
    /// both), counted from the attempts' slot times (not from the lanes): what the tests hold
    /// the lanes to.
    #[cfg(test)]
    pub fn peak_use(&self, host: &str) -> (usize, usize, usize) {
        // +1 where a slot is taken, -1 where it is given back, in `SlotPoint` order
        // (`slot_span`): within a millisecond, slots freed, then attempts refused at once one
        // after the other, then starts (a freed slot is refilled at once); a give-back before
        // a take at the same point.
        let mut marks: Vec<(SlotPoint, i8, u8)> = Vec::new();
        for (i, a) in self.attempts.iter().enumerate() {
            let (from, until) = slot_span(a, i);
            let until = until.unwrap_or((u64::MAX, FREED, 0, 0));
            for (side, hit) in [(0u8, a.source == host), (1u8, a.destination == host)] {
                if hit {
                    marks.push((from, 1, side));
                    marks.push((until, -1, side));
                }
            }
        }
        marks.sort_by_key(|(t, d, _)| (*t, *d));
        let (mut now, mut peak) = ([0i64; 2], [0i64; 2]);
        let mut both_peak = 0i64;
        for (_, d, side) in marks {
            now[side as usize] += i64::from(d);
            peak[side as usize] = peak[side as usize].max(now[side as usize]);
            both_peak = both_peak.max(now[0] + now[1]);
        }
        let u = |v: i64| usize::try_from(v).unwrap_or(0);
        (u(peak[0]), u(peak[1]), u(both_peak))
    }
}
