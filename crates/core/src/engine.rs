//! The engine: selection, placement, slots, scheduling, and the per-VM machines tied together.
//!
//! Everything here is deterministic: hosts and VMs live in vectors indexed in the order they
//! were configured or listed, sets are ordered, timers are a heap keyed by (time, target).

use crate::event::{Event, EventKind, Phase, Reason, WaitReason};
use crate::io::{Command, Input};
use crate::machine::{self, Assessment, Ctx, MoveState, Output, VmEvent, VmMove};
use crate::model::{HostId, HostInfo, MigrationMode, MigrationRequest, VmId, VmInfo};
use crate::select;
use crate::slots::SlotLedger;
use crate::spec::{Order, RunSpec, SchedulerPolicy, Selection, Settings, SpecError};
use crate::time::Time;
use crate::view::{HostView, Snapshot, VmView};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};

/// Consecutive failed refreshes after which a host is considered down.
pub const HOST_DOWN_AFTER_FAILURES: u32 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Vm(usize),
    Host(usize),
    SeedPass,
}

#[derive(Debug)]
struct HostState {
    id: HostId,
    cap: Option<u32>,
    info: Option<HostInfo>,
    reachable: bool,
    answered: bool,
    failures: u32,
    down: bool,
    refresh_outstanding: bool,
    requested_at: Time,
    last_ok_requested_at: Option<Time>,
    next_refresh: Option<Time>,
    reserved_memory: u64,
    reserved_disk: u64,
    /// Our VMs last seen listed on this host.
    seen_ours: BTreeSet<usize>,
    /// When our slots on this host were last released (to tell stale listings from foreign ones).
    releases: VecDeque<Time>,
    announced: Option<(u32, u32)>,
    /// Our VMs that arrived here and whose reservation awaits a refresh that shows them.
    settling: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Reservation {
    host: usize,
    memory: u64,
    disk: u64,
    /// Set when the move is over: released at the first refresh of the host asked after this.
    settle_after: Option<Time>,
}

#[derive(Debug)]
struct SourceState {
    host: usize,
    select: Selection,
    destinations: Vec<usize>,
    resolved: bool,
    ready: BTreeSet<OrderKey>,
}

/// (offline and offline_last, priority, size key, VM index): the order a source's ready VMs start in.
type OrderKey = (bool, Reverse<i32>, u64, usize);

#[derive(Debug, Default)]
struct SeedPass {
    active: bool,
    waiting_on: Option<usize>,
    pause_until: Time,
    next_pass: Option<Time>,
}

/// The migration engine of one run. Pure: driven by inputs and time, it emits commands and events.
#[derive(Debug)]
pub struct Core {
    spec: RunSpec,
    hosts: Vec<HostState>,
    host_index: BTreeMap<HostId, usize>,
    sources: Vec<SourceState>,
    /// Host index -> its entry in `sources`, if it is a source.
    source_state: Vec<Option<usize>>,
    vms: Vec<VmMove>,
    vm_index: HashMap<VmId, usize>,
    vm_source: Vec<usize>,
    where_seen: Vec<BTreeMap<usize, VmInfo>>,
    obs_time: Vec<Time>,
    slot: Vec<Option<(usize, usize)>>,
    reservation: Vec<Option<Reservation>>,
    last_release: Vec<Option<Time>>,
    in_ready: Vec<Option<OrderKey>>,
    missing_since: Vec<Option<Time>>,
    searching: BTreeSet<usize>,
    order_keys: Vec<OrderKey>,
    live_pending: Vec<bool>,
    live_pending_count: usize,
    final_count: usize,
    ledger: SlotLedger,
    commands: VecDeque<Command>,
    events: VecDeque<Event>,
    timers: BinaryHeap<Reverse<(Time, TimerKey)>>,
    stopping: Option<Reason>,
    abort_running: bool,
    initialized: bool,
    /// Something that may let a VM start changed since the scheduler last ran.
    dirty: bool,
    finished: bool,
    failed: Option<String>,
    seed: SeedPass,
    now: Time,
}

impl Core {
    /// Validates the spec and creates the engine. Its first commands refresh every host involved.
    pub fn new(spec: RunSpec, now: Time) -> Result<Core, SpecError> {
        spec.validate()?;
        let mut host_index = BTreeMap::new();
        let mut hosts = Vec::new();
        let mut add_host = |id: &HostId, hosts: &mut Vec<HostState>| -> usize {
            *host_index.entry(id.clone()).or_insert_with(|| {
                hosts.push(HostState {
                    id: id.clone(),
                    cap: spec.hosts.get(id).and_then(|l| l.max_migrations),
                    info: None,
                    reachable: false,
                    answered: false,
                    failures: 0,
                    down: false,
                    refresh_outstanding: false,
                    requested_at: Time::ZERO,
                    last_ok_requested_at: None,
                    next_refresh: None,
                    reserved_memory: 0,
                    reserved_disk: 0,
                    seen_ours: BTreeSet::new(),
                    releases: VecDeque::new(),
                    announced: None,
                    settling: Vec::new(),
                });
                hosts.len() - 1
            })
        };
        let mut sources = Vec::new();
        for s in &spec.sources {
            let host = add_host(&s.host, &mut hosts);
            let destinations = s
                .destinations
                .iter()
                .map(|d| add_host(d, &mut hosts))
                .collect();
            sources.push(SourceState {
                host,
                select: s.select.clone(),
                destinations,
                resolved: false,
                ready: BTreeSet::new(),
            });
        }
        for h in spec.pins.values() {
            add_host(h, &mut hosts);
        }
        let n = hosts.len();
        let ledger = SlotLedger::new(
            n,
            spec.settings.default_host_limit,
            spec.settings.cluster_cap,
        );
        let mut core = Core {
            hosts,
            host_index,
            source_state: Vec::new(),
            sources,
            vms: Vec::new(),
            vm_index: HashMap::new(),
            vm_source: Vec::new(),
            where_seen: Vec::new(),
            obs_time: Vec::new(),
            slot: Vec::new(),
            reservation: Vec::new(),
            last_release: Vec::new(),
            in_ready: Vec::new(),
            missing_since: Vec::new(),
            searching: BTreeSet::new(),
            order_keys: Vec::new(),
            live_pending: Vec::new(),
            live_pending_count: 0,
            final_count: 0,
            ledger,
            commands: VecDeque::new(),
            events: VecDeque::new(),
            timers: BinaryHeap::new(),
            stopping: None,
            abort_running: false,
            initialized: false,
            dirty: true,
            finished: false,
            failed: None,
            seed: SeedPass::default(),
            now,
            spec,
        };
        core.source_state = vec![None; n];
        for (si, s) in core.sources.iter().enumerate() {
            core.source_state[s.host] = Some(si);
        }
        for h in 0..n {
            core.refresh_limit(h);
        }
        let src_ids = core
            .sources
            .iter()
            .map(|s| core.hosts[s.host].id.clone())
            .collect();
        let mut dst_ids: Vec<HostId> = core
            .sources
            .iter()
            .flat_map(|s| s.destinations.iter().map(|&d| core.hosts[d].id.clone()))
            .collect();
        dst_ids.sort();
        dst_ids.dedup();
        core.emit(EventKind::RunStarted {
            run_id: core.spec.run_id.clone(),
            sources: src_ids,
            destinations: dst_ids,
        });
        for h in 0..n {
            core.issue_refresh(h, now);
        }
        Ok(core)
    }

    /// Rebuilds the engine of an interrupted run from what its journal recorded, then observes
    /// before acting: every VM that was in flight is located on the hosts first (a migration still
    /// running is re-adopted, one that completed is verified and cleaned up, one that failed is
    /// retried or given up per policy with its attempts counted); queued and cancelled VMs are
    /// re-assessed once every host has been listed; moved and unmigratable VMs stay as they were.
    /// Sources with recorded VMs are not selected again: the run moves the VMs it set out to move.
    pub fn resume(spec: RunSpec, now: Time, recovered: Vec<Recovered>) -> Result<Core, SpecError> {
        let mut core = Core::new(spec, now)?;
        // A source whose selection was recorded is not selected again; one with nothing recorded
        // (the crash came before its first listing) is selected as in a new run.
        for r in &recovered {
            if let Some(&h) = core.host_index.get(&r.source) {
                if let Some(si) = core.source_state[h] {
                    core.sources[si].resolved = true;
                }
            }
        }
        for r in recovered {
            let Some(&src) = core.host_index.get(&r.source) else {
                return Err(SpecError::UnknownHost(r.source));
            };
            for d in &r.destinations {
                if !core.host_index.contains_key(d) {
                    return Err(SpecError::UnknownHost(d.clone()));
                }
            }
            let prio = core.spec.priorities.get(&r.name).copied().unwrap_or(0);
            let size = r.memory_bytes.saturating_add(r.disk_bytes);
            let mut vm = VmMove::new(
                r.id,
                r.name,
                r.source,
                r.destinations,
                r.memory_bytes,
                r.disk_bytes,
                r.mode,
            );
            vm.attempts = r.attempts;
            vm.uncounted = r.uncounted.min(r.attempts);
            vm.refused = r.refused.into_iter().collect();
            vm.forgiven = r.forgiven.into_iter().collect();
            let idx = core.push_vm(vm, src);
            let size_key = match core.spec.settings.order {
                Order::LargestFirst => u64::MAX - size,
                Order::SmallestFirst => size,
                Order::AsGiven => 0,
            };
            core.in_ready_key_init(idx, (false, Reverse(prio), size_key, idx));
            match r.state {
                RecoveredState::BackingOff(until) if until > now => {
                    core.searching.insert(idx);
                    core.vms[idx].timer = Some(until);
                    core.vms[idx].state = MoveState::BackingOff { until };
                    core.timers.push(Reverse((until, TimerKey::Vm(idx))));
                    core.apply(
                        idx,
                        now,
                        Phase::Queued,
                        Phase::BackingOff,
                        Output::default(),
                    );
                    let vm = core.vms[idx].id.clone();
                    core.emit(EventKind::Transition {
                        vm,
                        from: Phase::Queued,
                        to: Phase::BackingOff,
                    });
                }
                // A backoff already over waits no more.
                RecoveredState::Queued
                | RecoveredState::Cancelled(_)
                | RecoveredState::BackingOff(_) => {
                    core.searching.insert(idx);
                    core.step(
                        idx,
                        now,
                        VmEvent::Assessed(Assessment::Wait {
                            reason: WaitReason::Searching,
                            held: false,
                        }),
                    );
                }
                RecoveredState::InFlight(req) => core.resume_in_flight(idx, now, req, false),
                RecoveredState::Aborting(req) => core.resume_in_flight(idx, now, req, true),
                RecoveredState::Moved(d) => {
                    core.step(idx, now, VmEvent::Assessed(Assessment::AlreadyThere(d)));
                }
                RecoveredState::Unmigratable(reason) => {
                    core.step(
                        idx,
                        now,
                        VmEvent::Assessed(Assessment::Unmigratable(reason)),
                    );
                }
            }
        }
        Ok(core)
    }

    /// A recovered VM whose attempt was in flight: look at the hosts before anything else.
    fn resume_in_flight(
        &mut self,
        idx: usize,
        now: Time,
        mut req: MigrationRequest,
        aborting: bool,
    ) {
        req.attempt = self.vms[idx].attempts.max(1);
        self.vms[idx].attempts = req.attempt;
        // vmove's own stop interrupted it: if it turns out not to have moved the VM, it does
        // not count (an abort vmove had asked means the attempt had failed on its own first).
        if !aborting {
            self.vms[idx].interrupted = Some(req.attempt);
        }
        let why = crate::model::Failure::new(
            if aborting {
                crate::model::ErrorClass::Transient
            } else {
                crate::model::ErrorClass::Indeterminate
            },
            "vmove stopped while this move was in flight",
        );
        self.commands.push_back(Command::Locate {
            request: req.clone(),
        });
        self.vms[idx].state = MoveState::Locating {
            req,
            why,
            tries: 0,
            abort_rounds: u32::from(aborting),
            // An abort asked by the dead process may never have reached the host: if the job
            // still runs, the first look asks again (no patience spent waiting for it).
            abort_wait: None,
        };
        self.apply(idx, now, Phase::Queued, Phase::Locating, Output::default());
        let vm = self.vms[idx].id.clone();
        self.emit(EventKind::Transition {
            vm,
            from: Phase::Queued,
            to: Phase::Locating,
        });
    }

    /// The run's specification.
    pub fn spec(&self) -> &RunSpec {
        &self.spec
    }

    /// The run's settings.
    pub fn settings(&self) -> &Settings {
        &self.spec.settings
    }

    /// Feeds one input from the world.
    pub fn handle_event(&mut self, now: Time, input: Input) {
        self.now = self.now.max(now);
        let now = self.now;
        match input {
            Input::HostRefreshed {
                host,
                requested_at,
                result,
            } => {
                if let Some(&h) = self.host_index.get(&host) {
                    self.on_refresh(h, now, requested_at, result);
                }
            }
            Input::Stop { abort_running } => self.stop(now, Reason::RunStopped, abort_running),
            other => {
                let Some((vm, attempt)) = other.vm_attempt() else {
                    return;
                };
                let Some(&idx) = self.vm_index.get(vm) else {
                    return;
                };
                if attempt != self.vms[idx].attempts {
                    // An answer about an earlier attempt: that attempt's outcome was already settled
                    // by looking at the hosts; ignore it.
                    return;
                }
                let ev = match other {
                    Input::MigrationStarted { result, .. } => VmEvent::Started(result),
                    Input::MigrationStatus { result, .. } => VmEvent::Status(result),
                    Input::AbortDone { result, .. } => VmEvent::AbortDone(result),
                    Input::Converged { result, .. } => VmEvent::Converged(result),
                    Input::Located { result, .. } => {
                        if let Ok(loc) = &result {
                            self.note_location(idx, loc);
                        }
                        VmEvent::Located(result)
                    }
                    Input::Verified { result, .. } => VmEvent::Verified(result),
                    Input::LeftoversListed { result, .. } => VmEvent::Leftovers(result),
                    Input::LeftoverRemoved {
                        leftover, result, ..
                    } => VmEvent::LeftoverRemoved(leftover, result),
                    Input::HostRefreshed { .. } | Input::Stop { .. } => return,
                };
                self.step(idx, now, ev);
            }
        }
        self.after(now);
    }

    /// Tells the engine that time `now` has come (call at or after [`Core::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = self.now.max(now);
        let now = self.now;
        while let Some(&Reverse((t, key))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            match key {
                TimerKey::Vm(idx) => {
                    if self.vms[idx].timer == Some(t) {
                        self.vms[idx].timer = None;
                        self.step(idx, now, VmEvent::Timer);
                        // A VM recovered while backing off has not been seen since the resume:
                        // once its delay is over, the hosts' listings decide, as for `Queued`.
                        if self.initialized
                            && self.searching.contains(&idx)
                            && self.vms[idx].phase() == Phase::Queued
                        {
                            self.reassess(idx, now);
                        }
                    }
                }
                TimerKey::Host(h) => {
                    if self.hosts[h].next_refresh == Some(t) {
                        self.hosts[h].next_refresh = None;
                        if !self.finished {
                            self.issue_refresh(h, now);
                        }
                    }
                }
                TimerKey::SeedPass => {
                    if self.seed.next_pass == Some(t) {
                        self.seed.next_pass = None;
                        self.seed.active = true;
                    }
                }
            }
        }
        self.after(now);
    }

    /// The next command to carry out, if any.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// The next event for observers, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the engine next wants [`Core::handle_timeout`] called.
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.finished {
            return None;
        }
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Whether the run is over (every VM final, every source listed or given up).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Why the run failed as a whole (a source that could never be listed), if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// A view of every VM and host.
    pub fn snapshot(&self, now: Time) -> Snapshot {
        let vms = self
            .vms
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let destination = match &v.state {
                    MoveState::Moved { destination } => Some(destination.clone()),
                    st => st
                        .request()
                        .map(|r| r.destination.clone())
                        .or_else(|| self.slot[i].map(|(_, d)| self.hosts[d].id.clone())),
                };
                let reason = match &v.state {
                    MoveState::Unmigratable { reason } | MoveState::Cancelled { reason } => {
                        Some(reason.clone())
                    }
                    _ => None,
                };
                VmView {
                    id: v.id.clone(),
                    name: v.name.clone(),
                    source: v.source.clone(),
                    destination,
                    phase: v.phase(),
                    mode: v.mode,
                    attempts: v.attempts,
                    waiting: v.wait.clone(),
                    progress: if v.phase() == Phase::Migrating {
                        v.progress.clone()
                    } else {
                        None
                    },
                    reason,
                    memory_bytes: v.memory_bytes,
                    disk_bytes: v.disk_bytes,
                    started_at: v.started_at,
                    finished_at: v.finished_at,
                    last_error: v.last_error.clone(),
                }
            })
            .collect();
        let hosts = self
            .hosts
            .iter()
            .enumerate()
            .map(|(h, hs)| HostView {
                id: hs.id.clone(),
                limit: self.ledger.limit(h),
                ours: self.ledger.ours(h),
                foreign: self.ledger.foreign(h),
                reachable: hs.reachable,
            })
            .collect();
        Snapshot {
            run_id: self.spec.run_id.clone(),
            at: now,
            vms,
            hosts,
            stopping: self.stopping.is_some(),
            finished: self.finished,
            failed: self.failed.clone(),
        }
    }

    // ------------------------------------------------------------------ internals

    fn emit(&mut self, kind: EventKind) {
        self.events.push_back(Event { at: self.now, kind });
    }

    fn refresh_limit(&mut self, h: usize) {
        let s = &self.spec.settings;
        let reported = self.hosts[h].info.as_ref().and_then(|i| i.migration_limit);
        let lim = SlotLedger::effective_limit(
            reported,
            s.default_host_limit,
            &[self.hosts[h].cap, s.max_parallel],
        );
        self.ledger.set_limit(h, lim);
    }

    fn issue_refresh(&mut self, h: usize, now: Time) {
        let hs = &mut self.hosts[h];
        if hs.refresh_outstanding {
            return;
        }
        hs.refresh_outstanding = true;
        hs.requested_at = now;
        self.commands.push_back(Command::RefreshHost {
            host: hs.id.clone(),
        });
    }

    fn schedule_refresh(&mut self, h: usize, at: Time) {
        let hs = &mut self.hosts[h];
        if hs.next_refresh.is_some_and(|t| t <= at) {
            return;
        }
        hs.next_refresh = Some(at);
        self.timers.push(Reverse((at, TimerKey::Host(h))));
    }

    fn on_refresh(
        &mut self,
        h: usize,
        now: Time,
        requested_at: Time,
        result: Result<(HostInfo, Vec<VmInfo>), crate::model::Failure>,
    ) {
        self.hosts[h].refresh_outstanding = false;
        self.dirty = true;
        let s = self.spec.settings.clone();
        match result {
            Err(f) => {
                let first = self.hosts[h].failures == 0;
                let hs = &mut self.hosts[h];
                hs.failures += 1;
                hs.reachable = false;
                hs.answered = true;
                if first {
                    let host = hs.id.clone();
                    self.emit(EventKind::HostUnreachable {
                        host,
                        error: f.message.clone(),
                    });
                }
                if self.hosts[h].failures >= HOST_DOWN_AFTER_FAILURES && !self.hosts[h].down {
                    self.host_down(h, now, &f.message);
                }
                self.schedule_refresh(h, now + s.recheck_interval);
            }
            Ok((info, vms)) => {
                {
                    let hs = &mut self.hosts[h];
                    hs.failures = 0;
                    hs.reachable = true;
                    hs.down = false;
                    hs.answered = true;
                    hs.info = Some(info.clone());
                    hs.last_ok_requested_at = Some(requested_at);
                }
                self.refresh_limit(h);
                // Observations of our VMs.
                let mut listed: BTreeMap<usize, VmInfo> = BTreeMap::new();
                for v in &vms {
                    if let Some(&i) = self.vm_index.get(&v.id) {
                        listed.insert(i, v.clone());
                    }
                }
                let mut changed = Vec::new();
                let previously: Vec<usize> = self.hosts[h].seen_ours.iter().copied().collect();
                for i in previously {
                    if !listed.contains_key(&i) && self.obs_time[i] <= requested_at {
                        self.where_seen[i].remove(&h);
                        self.hosts[h].seen_ours.remove(&i);
                        changed.push(i);
                    }
                }
                for (i, v) in listed {
                    if self.obs_time[i] <= requested_at {
                        self.where_seen[i].insert(h, v);
                        self.hosts[h].seen_ours.insert(i);
                        changed.push(i);
                    }
                }
                // Foreign migrations: listed migrating VMs that are not ours in flight (nor ours
                // that ended after this listing was asked for), or the host's own count beyond ours.
                while self.hosts[h]
                    .releases
                    .front()
                    .is_some_and(|&t| t < requested_at)
                {
                    self.hosts[h].releases.pop_front();
                }
                let mut listed_foreign = 0u32;
                for v in &vms {
                    if !v.activity.is_migration() {
                        continue;
                    }
                    let ours = self.vm_index.get(&v.id).is_some_and(|&i| {
                        self.slot[i].is_some()
                            || self.last_release[i].is_some_and(|t| t >= requested_at)
                    });
                    if !ours {
                        listed_foreign += 1;
                    }
                }
                let ours_then = self.ledger.ours(h) + self.hosts[h].releases.len() as u32;
                let counted_foreign = info.active_migrations.saturating_sub(ours_then);
                let foreign = listed_foreign.max(counted_foreign);
                self.ledger.set_foreign(h, foreign);
                // Reservations of finished moves are now reflected in the host's own figures.
                let settling = std::mem::take(&mut self.hosts[h].settling);
                for i in settling {
                    let due = self.reservation[i].as_ref().is_some_and(|r| {
                        r.host == h && r.settle_after.is_some_and(|t| t <= requested_at)
                    });
                    if due {
                        if let Some(res) = self.reservation[i].take() {
                            self.hosts[h].reserved_memory =
                                self.hosts[h].reserved_memory.saturating_sub(res.memory);
                            self.hosts[h].reserved_disk =
                                self.hosts[h].reserved_disk.saturating_sub(res.disk);
                        }
                    } else if self.reservation[i].as_ref().is_some_and(|r| r.host == h) {
                        self.hosts[h].settling.push(i);
                    }
                }
                let announce = (self.ledger.limit(h), foreign);
                if self.hosts[h].announced != Some(announce) {
                    self.hosts[h].announced = Some(announce);
                    self.emit(EventKind::HostSeen {
                        host: self.hosts[h].id.clone(),
                        limit: announce.0,
                        foreign,
                        free_memory_bytes: info.free_memory_bytes,
                        free_disk_bytes: info.free_disk_bytes,
                    });
                }
                // Selections of sources listed for the first time.
                for si in 0..self.sources.len() {
                    if self.sources[si].host == h && !self.sources[si].resolved {
                        self.resolve_source(si, &vms, now);
                    }
                }
                if self.initialized {
                    changed.extend(self.searching.iter().copied());
                }
                changed.sort_unstable();
                changed.dedup();
                for i in changed {
                    if self.vms[i].phase() == Phase::Queued {
                        self.reassess(i, now);
                    }
                }
                let fast = foreign > 0
                    || self.hosts[h].seen_ours.iter().any(|&i| {
                        self.vms[i].phase() == Phase::Queued
                            && self.vms[i].wait.as_ref().is_some_and(is_observed_wait)
                    });
                let every = if fast {
                    s.recheck_interval.min(s.poll_interval)
                } else {
                    s.poll_interval
                };
                self.schedule_refresh(h, now + every);
            }
        }
        if !self.initialized && self.hosts.iter().all(|hs| hs.answered) {
            self.initialized = true;
            // VMs recovered from a journal are placed once every host has been listed.
            let pending: Vec<usize> = self.searching.iter().copied().collect();
            for i in pending {
                if self.vms[i].phase() == Phase::Queued {
                    self.reassess(i, now);
                }
            }
        }
    }

    fn host_down(&mut self, h: usize, now: Time, why: &str) {
        self.hosts[h].down = true;
        let host = self.hosts[h].id.clone();
        for si in 0..self.sources.len() {
            if self.sources[si].host == h && !self.sources[si].resolved {
                self.sources[si].resolved = true;
                let msg = format!("could not list source host {host}: {why}");
                self.failed.get_or_insert(msg.clone());
                self.emit(EventKind::RunFailed { error: msg });
            }
        }
        for i in 0..self.vms.len() {
            if self.vms[i].phase() == Phase::Queued && self.vm_source[i] == h {
                self.step(
                    i,
                    now,
                    VmEvent::Assessed(Assessment::Unmigratable(Reason::SourceDown(host.clone()))),
                );
            }
        }
    }

    fn resolve_source(&mut self, si: usize, listed: &[VmInfo], now: Time) {
        self.sources[si].resolved = true;
        let host = self.sources[si].host;
        let host_id = self.hosts[host].id.clone();
        let sel = select::apply(&self.sources[si].select, listed);
        for p in &sel.unmatched_patterns {
            self.emit(EventKind::SelectionUnmatched {
                source: host_id.clone(),
                pattern: p.clone(),
            });
        }
        let order = if self.spec.settings.policy == SchedulerPolicy::Seed {
            Order::AsGiven
        } else {
            self.spec.settings.order
        };
        let dests: std::sync::Arc<[HostId]> = self.sources[si]
            .destinations
            .iter()
            .map(|&d| self.hosts[d].id.clone())
            .collect();
        let mut new = Vec::new();
        for &li in &sel.chosen {
            let info = &listed[li];
            if self.vm_index.contains_key(&info.id) {
                continue;
            }
            let mode = if info.power.is_offline() {
                MigrationMode::Offline
            } else {
                MigrationMode::Live
            };
            let destinations: std::sync::Arc<[HostId]> = match self.spec.pins.get(&info.name) {
                Some(p) => std::sync::Arc::from(vec![p.clone()]),
                None => dests.clone(),
            };
            let idx = self.push_vm(
                VmMove::new(
                    info.id.clone(),
                    info.name.clone(),
                    host_id.clone(),
                    destinations,
                    info.memory_bytes,
                    info.disk_bytes,
                    mode,
                ),
                host,
            );
            self.where_seen[idx].insert(host, info.clone());
            self.hosts[host].seen_ours.insert(idx);
            let size = info.memory_bytes.saturating_add(info.disk_bytes);
            let prio = self.spec.priorities.get(&info.name).copied().unwrap_or(0);
            let size_key = match order {
                Order::LargestFirst => u64::MAX - size,
                Order::SmallestFirst => size,
                Order::AsGiven => 0,
            };
            self.in_ready_key_init(idx, (false, Reverse(prio), size_key, idx));
            self.emit(EventKind::Selected {
                vm: info.id.clone(),
                name: info.name.clone(),
                source: host_id.clone(),
                mode,
                memory_bytes: info.memory_bytes,
                disk_bytes: info.disk_bytes,
            });
            new.push(idx);
        }
        for name in sel.missing {
            let id = VmId::new(format!("missing:{host_id}/{name}"));
            let idx = self.push_vm(
                VmMove::new(
                    id,
                    name,
                    host_id.clone(),
                    dests.clone(),
                    0,
                    0,
                    MigrationMode::Live,
                ),
                host,
            );
            self.step(
                idx,
                now,
                VmEvent::Assessed(Assessment::Unmigratable(Reason::NotFound)),
            );
        }
        for idx in new {
            if let Some(reason) = self.stopping.clone() {
                self.step(
                    idx,
                    now,
                    VmEvent::Stop {
                        abort_running: false,
                        reason,
                    },
                );
            } else if self.vms[idx]
                .destinations
                .iter()
                .any(|d| *d == self.vms[idx].source)
            {
                self.step(
                    idx,
                    now,
                    VmEvent::Assessed(Assessment::Unmigratable(Reason::PinnedToSource)),
                );
            } else {
                self.reassess(idx, now);
            }
        }
    }

    fn push_vm(&mut self, vm: VmMove, source: usize) -> usize {
        let idx = self.vms.len();
        self.vm_index.insert(vm.id.clone(), idx);
        self.vms.push(vm);
        self.vm_source.push(source);
        self.where_seen.push(BTreeMap::new());
        self.obs_time.push(Time::ZERO);
        self.slot.push(None);
        self.reservation.push(None);
        self.last_release.push(None);
        self.in_ready.push(None);
        self.missing_since.push(None);
        self.live_pending.push(false);
        self.order_keys.push((false, Reverse(0), 0, idx));
        idx
    }

    fn in_ready_key_init(&mut self, idx: usize, key: OrderKey) {
        self.order_keys[idx] = key;
    }

    fn note_location(&mut self, idx: usize, loc: &crate::model::Location) {
        // A Locate answer is the freshest word on where the VM is: later refreshes asked before
        // it must not overwrite it.
        let src = self.vm_source[idx];
        let dst = self.vms[idx]
            .state
            .request()
            .and_then(|r| self.host_index.get(&r.destination).copied());
        match &loc.on_source {
            Some(v) => {
                self.where_seen[idx].insert(src, v.clone());
                self.hosts[src].seen_ours.insert(idx);
            }
            None => {
                self.where_seen[idx].remove(&src);
                self.hosts[src].seen_ours.remove(&idx);
            }
        }
        if let Some(d) = dst {
            match &loc.on_destination {
                Some(v) => {
                    self.where_seen[idx].insert(d, v.clone());
                    self.hosts[d].seen_ours.insert(idx);
                }
                None => {
                    self.where_seen[idx].remove(&d);
                    self.hosts[d].seen_ours.remove(&idx);
                }
            }
        }
        self.obs_time[idx] = self.now;
    }

    /// What the hosts say about a queued VM.
    fn assess(&self, idx: usize) -> Assessment {
        let vm = &self.vms[idx];
        let src = self.vm_source[idx];
        let seen = &self.where_seen[idx];
        if let Some(info) = seen.get(&src) {
            if info.activity.is_migration() {
                return Assessment::Wait {
                    reason: WaitReason::MigratingByOther,
                    held: false,
                };
            }
            if let crate::model::Health::Bad(s) = &info.health {
                return Assessment::Unmigratable(Reason::BadStatus(s.clone()));
            }
            match &info.activity {
                crate::model::Activity::BackingUp => {
                    return Assessment::Wait {
                        reason: WaitReason::BackingUp { since: self.now },
                        held: true,
                    };
                }
                crate::model::Activity::OtherJob(j) => {
                    return Assessment::Wait {
                        reason: WaitReason::OtherJob(j.clone()),
                        held: true,
                    };
                }
                _ => {}
            }
            if info.health == crate::model::Health::InService {
                // The seed: "in service" with no secondary status counts as backing up.
                return Assessment::Wait {
                    reason: WaitReason::BackingUp { since: self.now },
                    held: true,
                };
            }
            return match &info.power {
                crate::model::PowerState::Transitioning(s) => Assessment::Wait {
                    reason: WaitReason::Transitioning(s.clone()),
                    held: true,
                },
                p if p.is_offline() => Assessment::Ready(MigrationMode::Offline),
                _ => Assessment::Ready(MigrationMode::Live),
            };
        }
        // Not on its source any more.
        for (&h, info) in seen {
            let hid = &self.hosts[h].id;
            if vm.destinations.contains(hid) {
                if info.activity.is_migration() {
                    return Assessment::Wait {
                        reason: WaitReason::MigratingByOther,
                        held: false,
                    };
                }
                return Assessment::AlreadyThere(hid.clone());
            }
        }
        if let Some((&h, _)) = seen.iter().next() {
            return Assessment::Unmigratable(Reason::FoundElsewhere(self.hosts[h].id.clone()));
        }
        if vm.attempts > 0 {
            Assessment::Unmigratable(Reason::Vanished)
        } else {
            Assessment::Unmigratable(Reason::NotFound)
        }
    }

    fn reassess(&mut self, idx: usize, now: Time) {
        let mut a = self.assess(idx);
        if let Assessment::Unmigratable(Reason::NotFound | Reason::Vanished) = a {
            // Gone from its source and seen nowhere: before calling it lost, look at every
            // destination with a listing asked for after it went missing (it may have just
            // arrived there by someone else's hand).
            let since = *self.missing_since[idx].get_or_insert(now);
            let pending: Vec<usize> = self.vms[idx]
                .destinations
                .iter()
                .filter_map(|d| self.host_index.get(d).copied())
                .filter(|&h| {
                    !self.hosts[h].down
                        && self.hosts[h].last_ok_requested_at.is_none_or(|t| t < since)
                })
                .collect();
            if !pending.is_empty() {
                for h in pending {
                    self.issue_refresh(h, now);
                }
                self.searching.insert(idx);
                a = Assessment::Wait {
                    reason: WaitReason::Searching,
                    held: false,
                };
            } else {
                self.searching.remove(&idx);
            }
        } else {
            self.missing_since[idx] = None;
            self.searching.remove(&idx);
        }
        self.step(idx, now, VmEvent::Assessed(a));
    }

    fn stop(&mut self, now: Time, reason: Reason, abort_running: bool) {
        let first = self.stopping.is_none();
        if !first && (!abort_running || self.abort_running) {
            return;
        }
        self.stopping.get_or_insert(reason.clone());
        let reason = self.stopping.clone().unwrap_or(reason);
        self.abort_running |= abort_running;
        self.emit(EventKind::StopRequested {
            abort_running: self.abort_running,
        });
        for si in 0..self.sources.len() {
            self.sources[si].resolved = true;
        }
        for i in 0..self.vms.len() {
            if !self.vms[i].phase().is_final() {
                self.step(
                    i,
                    now,
                    VmEvent::Stop {
                        abort_running: self.abort_running,
                        reason: reason.clone(),
                    },
                );
            }
        }
    }

    /// Runs one transition of a VM and applies its consequences (slots, reservations, timers,
    /// ready sets, events, commands).
    fn step(&mut self, idx: usize, now: Time, ev: VmEvent) {
        let before = self.vms[idx].phase();
        let timer_before = self.vms[idx].timer;
        let wait_before = self.vms[idx].wait.clone();
        let stopping = self.stopping.clone();
        let ctx = Ctx {
            now,
            settings: &self.spec.settings,
            stopping: stopping.as_ref(),
            abort_running: self.abort_running,
        };
        let out = match machine::step(&mut self.vms[idx], ctx, ev) {
            Ok(out) => out,
            Err(illegal) => {
                let vm = self.vms[idx].id.clone();
                self.emit(EventKind::IllegalInput {
                    vm,
                    phase: illegal.phase,
                    input: illegal.event.into(),
                });
                return;
            }
        };
        let after = self.vms[idx].phase();
        if before != after {
            let vm = self.vms[idx].id.clone();
            self.emit(EventKind::Transition {
                vm,
                from: before,
                to: after,
            });
        }
        self.apply(idx, now, before, after, out);
        let _ = wait_before;
        if self.vms[idx].timer != timer_before {
            if let Some(t) = self.vms[idx].timer {
                self.timers.push(Reverse((t, TimerKey::Vm(idx))));
            }
        }
    }

    fn apply(&mut self, idx: usize, now: Time, before: Phase, after: Phase, out: Output) {
        let _ = before;
        // Slots: held exactly while the phase says a migration may be in flight.
        if after.holds_slot() && self.slot[idx].is_none() {
            if let Some(req) = self.vms[idx].state.request() {
                let src = self.vm_source[idx];
                if let Some(&dst) = self.host_index.get(&req.destination) {
                    self.ledger.reserve(src, dst);
                    self.slot[idx] = Some((src, dst));
                }
            }
        } else if !after.holds_slot() {
            if let Some((src, dst)) = self.slot[idx].take() {
                self.ledger.release(src, dst);
                self.dirty = true;
                self.last_release[idx] = Some(now);
                self.hosts[src].releases.push_back(now);
                self.hosts[dst].releases.push_back(now);
            }
        }
        // Capacity reservations on the destination: from start until the destination's own
        // figures show the VM (a refresh asked after it arrived), or until the attempt fails.
        match after {
            Phase::Starting if self.reservation[idx].is_none() => {
                if let Some(req) = self.vms[idx].state.request() {
                    if let Some(&dst) = self.host_index.get(&req.destination) {
                        let memory = if req.mode == MigrationMode::Live {
                            self.vms[idx].memory_bytes
                        } else {
                            0
                        };
                        let disk = self.vms[idx].disk_bytes;
                        self.hosts[dst].reserved_memory += memory;
                        self.hosts[dst].reserved_disk += disk;
                        self.reservation[idx] = Some(Reservation {
                            host: dst,
                            memory,
                            disk,
                            settle_after: None,
                        });
                    }
                }
            }
            Phase::Moved => {
                if let Some(r) = self.reservation[idx].as_mut() {
                    if r.settle_after.is_none() {
                        r.settle_after = Some(now);
                        self.hosts[r.host].settling.push(idx);
                    }
                }
            }
            Phase::Queued
            | Phase::BackingOff
            | Phase::Discarding
            | Phase::Unmigratable
            | Phase::Cancelled => {
                if let Some(r) = self.reservation[idx].take() {
                    self.dirty = true;
                    self.hosts[r.host].reserved_memory =
                        self.hosts[r.host].reserved_memory.saturating_sub(r.memory);
                    self.hosts[r.host].reserved_disk =
                        self.hosts[r.host].reserved_disk.saturating_sub(r.disk);
                }
            }
            _ => {}
        }
        // Ready set of its source.
        let ready = after == Phase::Queued
            && self.vms[idx]
                .wait
                .as_ref()
                .is_none_or(|w| !is_observed_wait(w));
        let mut key = self.order_keys[idx];
        key.0 = self.vms[idx].mode == MigrationMode::Offline && self.spec.settings.offline_last;
        let si = self.source_of(idx);
        match (ready, self.in_ready[idx].is_some()) {
            (true, false) => {
                self.dirty = true;
                if let Some(si) = si {
                    self.sources[si].ready.insert(key);
                }
                self.in_ready[idx] = Some(key);
            }
            (false, true) => {
                if let (Some(si), Some(old)) = (si, self.in_ready[idx]) {
                    self.sources[si].ready.remove(&old);
                }
                self.in_ready[idx] = None;
            }
            (true, true) if self.in_ready[idx] != Some(key) => {
                // Its mode changed (powered off or on while queued): re-sort it.
                self.dirty = true;
                if let (Some(si), Some(old)) = (si, self.in_ready[idx]) {
                    self.sources[si].ready.remove(&old);
                    self.sources[si].ready.insert(key);
                }
                self.in_ready[idx] = Some(key);
            }
            _ => {}
        }
        // Live moves still to do (offline ones wait for them by default).
        let live_pending = self.vms[idx].mode == MigrationMode::Live
            && !after.is_final()
            && after != Phase::Verifying
            && after != Phase::CleaningUp
            && (after != Phase::Queued || ready);
        if live_pending != self.live_pending[idx] {
            self.live_pending[idx] = live_pending;
            if live_pending {
                self.live_pending_count += 1;
            } else {
                self.live_pending_count -= 1;
                if self.live_pending_count == 0 {
                    self.dirty = true;
                }
            }
        }
        if after.is_final() && !before.is_final() {
            self.final_count += 1;
        }
        for e in out.events {
            self.emit(e);
        }
        self.commands.extend(out.commands);
        if after == Phase::Unmigratable
            && before != Phase::Unmigratable
            && self.spec.settings.fail_fast
        {
            self.stop(now, Reason::FailFast, false);
        }
    }

    fn source_of(&self, idx: usize) -> Option<usize> {
        self.source_state
            .get(self.vm_source[idx])
            .copied()
            .flatten()
    }

    /// After every input or timeout: schedule, check completion, tidy the timer heap.
    fn after(&mut self, now: Time) {
        if self.initialized && self.stopping.is_none() {
            match self.spec.settings.policy {
                SchedulerPolicy::Vmove => self.schedule(now),
                SchedulerPolicy::Seed => self.schedule_seed(now),
            }
        }
        if !self.finished
            && self.initialized
            && self.sources.iter().all(|s| s.resolved)
            && self.final_count == self.vms.len()
        {
            self.finished = true;
            let (mut m, mut u, mut c) = (0, 0, 0);
            for v in &self.vms {
                match v.phase() {
                    Phase::Moved => m += 1,
                    Phase::Unmigratable => u += 1,
                    _ => c += 1,
                }
            }
            self.emit(EventKind::RunFinished {
                moved: m,
                unmigratable: u,
                cancelled: c,
            });
        }
        self.tidy_timers();
    }

    fn tidy_timers(&mut self) {
        while let Some(&Reverse((t, key))) = self.timers.peek() {
            let valid = match key {
                TimerKey::Vm(i) => self.vms[i].timer == Some(t),
                TimerKey::Host(h) => self.hosts[h].next_refresh == Some(t),
                TimerKey::SeedPass => self.seed.next_pass == Some(t),
            };
            if valid {
                break;
            }
            self.timers.pop();
        }
    }

    fn offline_allowed(&self) -> bool {
        !self.spec.settings.offline_last || self.live_pending_count == 0
    }

    fn set_sched_wait(&mut self, idx: usize, now: Time, reason: WaitReason) {
        if self.vms[idx].wait.as_ref() != Some(&reason) {
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
                        .range((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded))
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
            let idx = key.3;
            if self.vms[idx].mode == MigrationMode::Offline && !offline_ok {
                self.set_sched_wait(idx, now, WaitReason::OfflineAfterLive);
                if key.0 {
                    // Offline VMs sort after the live ones: nothing after this one can start.
                    done[si] = true;
                }
                continue;
            }
            match self.place(idx, false) {
                Place::To(d) => self.start(idx, d, now),
                Place::Wait(w) => self.set_sched_wait(idx, now, w),
                Place::Never(r) => {
                    self.step(idx, now, VmEvent::Assessed(Assessment::Unmigratable(r)))
                }
            }
        }
    }

    /// The seed's algorithm, for comparison: passes every `poll_interval`; within a pass one VM at
    /// a time, each start followed by `job_start_timeout` and its confirmation; one destination.
    fn schedule_seed(&mut self, now: Time) {
        if self.seed.next_pass.is_none() && !self.seed.active {
            self.seed.active = true;
        }
        if !self.seed.active {
            return;
        }
        if let Some(w) = self.seed.waiting_on {
            let p = self.vms[w].phase();
            if matches!(p, Phase::Starting | Phase::Confirming) || now < self.seed.pause_until {
                return;
            }
            self.seed.waiting_on = None;
        }
        let offline_ok = self.live_pending_count == 0 && self.ledger.total_ours() == 0;
        for si in 0..self.sources.len() {
            let candidates: Vec<usize> = self.sources[si].ready.iter().map(|k| k.3).collect();
            // The seed prefers running VMs: offline ones only when nothing else is left.
            for idx in candidates {
                if self.vms[idx].mode == MigrationMode::Offline && !offline_ok {
                    self.set_sched_wait(idx, now, WaitReason::OfflineAfterLive);
                    continue;
                }
                match self.place(idx, true) {
                    Place::To(d) => {
                        self.start(idx, d, now);
                        self.seed.waiting_on = Some(idx);
                        self.seed.pause_until = now + self.spec.settings.job_start_timeout;
                        // Wake up when the pause is over.
                        self.seed.next_pass = Some(self.seed.pause_until);
                        self.timers
                            .push(Reverse((self.seed.pause_until, TimerKey::SeedPass)));
                        return;
                    }
                    Place::Wait(w) => self.set_sched_wait(idx, now, w),
                    Place::Never(r) => {
                        self.step(idx, now, VmEvent::Assessed(Assessment::Unmigratable(r)))
                    }
                }
            }
        }
        // Pass over: sleep `poll_interval`.
        self.seed.active = false;
        let t = now + self.spec.settings.poll_interval;
        self.seed.next_pass = Some(t);
        self.timers.push(Reverse((t, TimerKey::SeedPass)));
    }

    fn start(&mut self, idx: usize, dst: usize, now: Time) {
        let destination = self.hosts[dst].id.clone();
        let layout = self
            .spec
            .layouts
            .get(&destination)
            .cloned()
            .unwrap_or_default();
        let mode = self.vms[idx].mode;
        let run_id = self.spec.run_id.clone();
        self.step(
            idx,
            now,
            VmEvent::Start {
                destination,
                mode,
                layout,
                run_id,
            },
        );
    }

    /// A host whose own figures allow no migration at all (it reported a limit of 0) never
    /// frees a slot: its VMs, and VMs that can go nowhere else, are unmigratable
    /// ([`Reason::NoMigrationSlots`]); waiting for a slot there waited forever.
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
    fn place(&self, idx: usize, first_only: bool) -> Place {
        let vm = &self.vms[idx];
        let src = self.vm_source[idx];
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

/// One VM of an interrupted run, as its journal recorded it (see [`Core::resume`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    /// Id.
    pub id: VmId,
    /// Name.
    pub name: String,
    /// Source host.
    pub source: HostId,
    /// Allowed destinations.
    pub destinations: Vec<HostId>,
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// Disk, bytes.
    pub disk_bytes: u64,
    /// Live or offline.
    pub mode: MigrationMode,
    /// Attempts started so far.
    pub attempts: u32,
    /// Of those, attempts vmove's own crash interrupted without moving the VM (`AttemptFailed`
    /// with `interrupted`): they do not count toward `max_attempts` ([`VmMove::uncounted`]).
    pub uncounted: u32,
    /// Destinations that refused it in this run ([`VmMove::refused`]): not tried again.
    pub refused: Vec<HostId>,
    /// Destinations whose refusal was forgiven in this run ([`VmMove::forgiven`]): not forgiven
    /// again.
    pub forgiven: Vec<HostId>,
    /// Where its move stood.
    pub state: RecoveredState,
}

/// Where a recovered VM's move stood when the journal was last written.
#[derive(Debug, Clone, PartialEq)]
pub enum RecoveredState {
    /// Not started (or waiting to retry).
    Queued,
    /// An attempt was under way (started, migrating, aborting, verifying, cleaning up...): the
    /// request of that attempt.
    InFlight(MigrationRequest),
    /// An attempt that vmove had decided to give up (a watchdog or a stop had asked for its
    /// abort): if its migration still runs, it is aborted again rather than re-adopted.
    Aborting(MigrationRequest),
    /// Moved (verified) to this host.
    Moved(HostId),
    /// Given up.
    Unmigratable(Reason),
    /// Not moved because that run was stopped: resume moves it.
    Cancelled(Reason),
    /// Waiting out the backoff after a failed attempt, until this time: resume keeps the delay
    /// (then looks at the hosts, as for `Queued`).
    BackingOff(Time),
}

enum Place {
    To(usize),
    Wait(WaitReason),
    Never(Reason),
}

/// Waits that only a host refresh can end (as opposed to the scheduler's own waits).
fn is_observed_wait(w: &WaitReason) -> bool {
    matches!(
        w,
        WaitReason::BackingUp { .. }
            | WaitReason::MigratingByOther
            | WaitReason::OtherJob(_)
            | WaitReason::Transitioning(_)
            | WaitReason::Searching
    )
}
