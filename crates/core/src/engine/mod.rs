//! The engine: selection, placement, slots, scheduling, and the per-VM machines tied together.
//!
//! Everything here is deterministic: hosts and VMs live in vectors indexed in the order they
//! were configured or listed, sets are ordered, timers are taken by (time, key).
//!
//! # Layout
//! - this file: [`Core`]'s public surface (new, resume, inputs, time-outs, polls, snapshot), the
//!   step that runs one VM transition and applies what follows from it, and [`Recovered`];
//! - `hosts.rs`: host state, refreshes and what a listing tells (foreign migrations, a source's
//!   selection, a host that stays down);
//! - `assess.rs`: what the hosts say about a queued VM (assess, reassess, locate answers);
//! - `schedule.rs`: the ready sets, the schedulers (ours and the seed's) and placement;
//! - `peers.rs`: the peers' policies (KubeVirt, Nova, Proxmox, vSphere, everything at once),
//!   for the simulator's benchmark only;
//! - [`slots`]: the slot ledger, and the slots and reservations derived from each VM's phase;
//! - `timers.rs`: the timer queue;
//! - `vm.rs`: the per-VM entry (the move and the engine's facts about it).

mod assess;
mod control;
mod hosts;
mod index;
pub mod pack;
mod park;
mod peers;
mod schedule;
pub mod slots;
mod timers;
mod vm;

pub use hosts::HOST_DOWN_AFTER_FAILURES;

use crate::event::{Event, EventKind, Phase, Reason, WaitReason};
use crate::io::{Command, Input};
use crate::machine::{self, AidsAsked, Assessment, Ctx, MoveState, Output, VmEvent, VmMove};
use crate::model::{ErrorClass, Failure, HostId, MigrationMode, MigrationRequest, VmId};
use crate::spec::{RunSpec, Settings, SpecError};
use crate::time::Time;
use crate::view::{HostView, Snapshot, VmView};
use hosts::{HostState, SourceState};
use index::SchedIndex;
use schedule::SeedPass;
use slots::SlotLedger;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// A map keyed by ids (VM ids, host names): hashed with foldhash from a fixed state, a few
/// times faster than the standard hasher on short strings; nothing depends on its order.
pub(crate) type IdMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
use std::sync::Arc;
use timers::{TimerKey, TimerQueue};
use vm::{VmEntry, vm_timers, warm};

/// The migration engine of one run. Pure: driven by inputs and time, it emits commands and events.
#[derive(Debug)]
pub struct Core {
    spec: RunSpec,
    /// A migration's transfer rate, as the last progress figures that had one said: what a
    /// plan (`pack.rs`) takes a move's rate to be.
    rate_seen: Option<u64>,
    /// Sources whose plan is to be made again (`SourceState::pack_due`), each once.
    pack_due: Vec<usize>,
    /// `spec.run_id`, shared by every request the run makes (a reference count each).
    run_id: Arc<str>,
    /// Hosts that have answered a refresh (`HostState::answered`), until all have.
    answered_count: usize,
    hosts: Vec<HostState>,
    host_index: IdMap<HostId, usize>,
    sources: Vec<SourceState>,
    /// Host index -> its entry in `sources`, if it is a source.
    source_state: Vec<Option<usize>>,
    vms: Vec<VmEntry>,
    vm_index: IdMap<VmId, usize>,
    /// By VM index: a VM in a final phase that the hosts' listings no longer follow
    /// (`Core::note_listing`): nothing about it changes any more, and a listing finds this
    /// without reading its entry (at 100,000 VMs, half of the VMs a listing shows have moved).
    unfollowed: Vec<bool>,
    /// VMs gone from their source and seen nowhere yet, or recovered and not seen since: each
    /// listing of any host assesses them again.
    searching: BTreeSet<usize>,
    /// Live moves still to do (see [`VmEntry::live_pending`]).
    live_pending_count: usize,
    /// VMs in a final phase.
    final_count: usize,
    ledger: SlotLedger,
    /// Commands to hand out, each with the index of the VM it is about (`None`: a host's).
    commands: VecDeque<(Command, Option<usize>)>,
    /// The index of the VM of the command handed out last ([`Core::poll_command`]). The answer
    /// to a command names its VM by the id the command gave, the VM's own (a driver hands it
    /// back, as the simulator does), and a driver answers a command before the next is asked
    /// for (the simulator always): that answer finds its VM here, by the address of its id
    /// (`VmId::is_same_text` with the VM's own), without a look-up in `vm_index`. At 100,000
    /// VMs each look-up there was a cache miss or two, and a run answers a progress poll per
    /// running migration every `progress_interval`. Only a shortcut: an id that is not this
    /// VM's very own is looked up (`Core::vm_of`).
    last_handed: Option<usize>,
    events: VecDeque<Event>,
    timers: TimerQueue,
    stopping: Option<Reason>,
    abort_running: bool,
    /// Starts are paused ([`Core::pause_starts`]): the scheduler does not run, so nothing new
    /// starts (and no pre-flight check is asked); everything already under way goes on.
    starts_paused: bool,
    /// Every host has answered its first refresh (listed, or failed).
    initialized: bool,
    /// Something that may let a VM start changed since the scheduler last ran.
    dirty: bool,
    finished: bool,
    failed: Option<String>,
    seed: SeedPass,
    /// What a peer's policy remembers (`peers.rs`).
    peers: peers::PeerState,
    /// VMs whose pre-flight check is in flight.
    preflights_in_flight: usize,
    /// How many pre-flight checks may be in flight, fixed at the start of each scheduling pass
    /// (about [`schedule::PREFLIGHT_AHEAD`] per free slot of the sources): summing the sources'
    /// free slots after every VM a pass looks at made a pass over 250 sources quadratic.
    preflight_cap: usize,
    /// VMs waiting for destinations whose pre-flight findings may pass
    /// (`WaitReason::MayPass`): a move that ends at one of those destinations asks them again.
    may_pass_waiting: BTreeSet<usize>,
    /// Hosts where a move of ours ended since the last input (slots released there): what the
    /// VMs of `may_pass_waiting` wait for may have passed.
    ended_at: Vec<usize>,
    /// What a scheduling pass asks of the sources and destinations, kept up to date.
    index: SchedIndex,
    /// Sources a scheduling pass skips while no pre-flight check can be asked (`park.rs`).
    parking: park::Parking,
    now: Time,
}

impl Core {
    /// Validates the spec and creates the engine. Its first commands refresh every host involved.
    pub fn new(spec: RunSpec, now: Time) -> Result<Core, SpecError> {
        spec.validate()?;
        let mut host_index = IdMap::default();
        let mut hosts = Vec::new();
        let mut add_host = |id: &HostId, hosts: &mut Vec<HostState>| -> usize {
            *host_index.entry(id.clone()).or_insert_with(|| {
                let cap = spec.hosts.get(id).and_then(|l| l.max_migrations);
                hosts.push(HostState::new(id.clone(), cap));
                hosts.len() - 1
            })
        };
        let mut sources = Vec::new();
        // Sources with the same list share it (an evacuation's sources usually all have the
        // same: at 2,500 sources of 2,500 destinations a list each took 50 MB).
        // A list the spec shares (`Arc::clone`) is looked up once, not each of its ids again for
        // every source that holds it (6.25 M look-ups by name at 2,500 x 2,500).
        let mut lists: BTreeMap<Vec<usize>, Arc<[usize]>> = BTreeMap::new();
        let mut last: Option<(&Arc<[HostId]>, Arc<[usize]>)> = None;
        for s in &spec.sources {
            let host = add_host(&s.host, &mut hosts);
            let destinations = match &last {
                Some((ids, shared)) if Arc::ptr_eq(ids, &s.destinations) => shared.clone(),
                _ => {
                    let destinations: Vec<usize> = s
                        .destinations
                        .iter()
                        .map(|d| add_host(d, &mut hosts))
                        .collect();
                    match lists.get(&destinations) {
                        Some(shared) => shared.clone(),
                        None => {
                            let shared: Arc<[usize]> = Arc::from(destinations.as_slice());
                            lists.insert(destinations, shared.clone());
                            shared
                        }
                    }
                }
            };
            last = Some((&s.destinations, destinations.clone()));
            sources.push(SourceState::new(
                host,
                s.select.clone(),
                s.exclude.clone(),
                destinations,
            ));
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
            rate_seen: None,
            pack_due: Vec::new(),
            run_id: spec.run_id.as_str().into(),
            answered_count: 0,
            hosts,
            host_index,
            source_state: Vec::new(),
            sources,
            vms: Vec::new(),
            vm_index: IdMap::default(),
            unfollowed: Vec::new(),
            searching: BTreeSet::new(),
            live_pending_count: 0,
            final_count: 0,
            ledger,
            commands: VecDeque::new(),
            last_handed: None,
            events: VecDeque::new(),
            timers: TimerQueue::default(),
            stopping: None,
            abort_running: false,
            starts_paused: false,
            initialized: false,
            dirty: true,
            finished: false,
            failed: None,
            preflights_in_flight: 0,
            preflight_cap: 0,
            may_pass_waiting: BTreeSet::new(),
            ended_at: Vec::new(),
            index: SchedIndex::default(),
            parking: park::Parking::default(),
            seed: SeedPass::default(),
            peers: peers::PeerState::default(),
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
        core.build_index();
        let src_ids = core
            .sources
            .iter()
            .map(|s| core.hosts[s.host].id.clone())
            .collect();
        // Each host once (not an id per source and destination: 6 M ids at 2,500 x 2,500), from
        // the distinct lists the sources hold (`lists`), each read once: collected from every
        // source, the 2,500 sources' one list of 2,500 was 6 M indexes sorted, at every start.
        let mut is_destination = vec![false; n];
        for list in lists.keys() {
            for &d in list {
                is_destination[d] = true;
            }
        }
        let mut dst_ids: Vec<HostId> = is_destination
            .iter()
            .zip(&core.hosts)
            .filter(|&(&d, _)| d)
            .map(|(_, h)| h.id.clone())
            .collect();
        dst_ids.sort();
        core.emit(EventKind::RunStarted {
            run_id: core.spec.run_id.clone(),
            sources: src_ids,
            destinations: dst_ids,
        });
        for h in 0..n {
            core.issue_refresh(h);
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
            let size_key = vm::size_key(core.spec.settings.order, r.memory_bytes, r.disk_bytes);
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
            if matches!(
                r.state,
                RecoveredState::InFlight(_) | RecoveredState::Aborting(_)
            ) {
                // `resume_in_flight` locates that attempt as number `attempts` (at least 1).
                vm.resumed_aids = Some((r.attempts.max(1), r.aids));
            }
            let idx = core.push_vm(vm, src);
            core.set_order(idx, prio, size_key);
            match r.state {
                RecoveredState::BackingOff(until) if until > now => {
                    core.searching.insert(idx);
                    core.vms[idx].vm.timer = Some(until);
                    core.vms[idx].vm.state = MoveState::BackingOff { until };
                    core.timers
                        .schedule(TimerKey::Vm(idx), until, vm_timers(&core.vms));
                    core.apply(
                        idx,
                        now,
                        Phase::Queued,
                        Phase::BackingOff,
                        Output::default(),
                    );
                    let vm = core.vms[idx].vm.id.clone();
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
        let vm = &mut self.vms[idx].vm;
        req.attempt = vm.attempts.max(1);
        vm.attempts = req.attempt;
        // vmove's own stop interrupted it: if it turns out not to have moved the VM, it does
        // not count (an abort vmove had asked means the attempt had failed on its own first).
        if !aborting {
            vm.interrupted = Some(req.attempt);
        }
        let why = Failure::new(
            if aborting {
                ErrorClass::Transient
            } else {
                ErrorClass::Indeterminate
            },
            "vmove stopped while this move was in flight",
        );
        let req = Arc::new(req);
        self.commands.push_back((
            Command::Locate {
                request: Arc::clone(&req),
            },
            Some(idx),
        ));
        vm.state = MoveState::Locating {
            req,
            why,
            tries: 0,
            abort_rounds: u32::from(aborting),
            // An abort asked by the dead process may never have reached the host: if the job
            // still runs, the first look asks again (no patience spent waiting for it).
            abort_wait: None,
        };
        let vm = vm.id.clone();
        self.apply(idx, now, Phase::Queued, Phase::Locating, Output::default());
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
            Input::StopVm {
                vm,
                abort_running,
                by,
                at,
            } => self.stop_vm(now, vm, abort_running, by, at),
            Input::StartDeferred { vm, attempt, busy } => {
                // What the slot ledger counted on each host: others' slots until the next
                // listing says otherwise.
                for (host, others) in busy {
                    if let Some(&h) = self.host_index.get(&host)
                        && others > self.ledger.foreign(h)
                    {
                        self.ledger.set_foreign(h, others);
                        self.dirty = true;
                    }
                }
                if let Some(idx) = self.vm_of(&vm)
                    && attempt == self.vms[idx].vm.attempts
                {
                    self.step(idx, now, VmEvent::Deferred);
                }
            }
            Input::Preflighted {
                vm,
                attempt,
                destination,
                result,
            } => {
                // An answer for the VM's next attempt; one for an attempt since started is stale.
                if let Some(idx) = self.vm_of(&vm)
                    && attempt == self.vms[idx].vm.attempts + 1
                {
                    self.step(
                        idx,
                        now,
                        VmEvent::Preflighted {
                            destination,
                            result,
                        },
                    );
                }
            }
            other => {
                let Some((vm, attempt)) = other.vm_attempt() else {
                    return;
                };
                let Some(idx) = self.vm_of(vm) else {
                    return;
                };
                if attempt != self.current_attempt(idx) {
                    // An answer about an earlier attempt: that attempt's outcome was already settled
                    // by looking at the hosts; ignore it.
                    return;
                }
                let ev = match other {
                    Input::MigrationStarted { result, .. } => VmEvent::Started(result),
                    Input::MigrationStatus { result, .. } => {
                        if let Ok(crate::model::MigrationStatus::Running(p)) = &result
                            && let Some(r) = p.transfer_rate.filter(|&r| r > 0)
                        {
                            self.rate_seen = Some(r);
                        }
                        VmEvent::Status(result)
                    }
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
                    Input::HostRefreshed { .. }
                    | Input::Stop { .. }
                    | Input::StopVm { .. }
                    | Input::StartDeferred { .. }
                    | Input::Preflighted { .. } => {
                        return;
                    }
                };
                self.step(idx, now, ev);
            }
        }
        self.after(now);
    }

    /// Pauses (`true`) or resumes (`false`) starting moves, for as long as the caller cannot
    /// record them (the runtime, while its journal cannot be written). Unlike
    /// [`Input::Stop`] it is not a decision about the run: no VM is cancelled, no attempt is
    /// counted or failed, nothing is emitted; queued VMs simply wait, and running moves, their
    /// verification and clean-up go on. Resuming lets the scheduler run at once.
    pub fn pause_starts(&mut self, now: Time, paused: bool) {
        self.now = self.now.max(now);
        if self.starts_paused == paused {
            return;
        }
        self.starts_paused = paused;
        if !paused {
            self.dirty = true;
            let now = self.now;
            self.after(now);
        }
    }

    /// Tells the engine that time `now` has come (call at or after [`Core::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = self.now.max(now);
        let now = self.now;
        while let Some((_, key)) = self
            .timers
            .pop_due(now, vm_timers(&self.vms), warm(&self.vms))
        {
            match key {
                TimerKey::Vm(idx) => {
                    self.vms[idx].vm.timer = None;
                    self.step(idx, now, VmEvent::Timer);
                    // A VM recovered while backing off has not been seen since the resume:
                    // once its delay is over, the hosts' listings decide, as for `Queued`.
                    if self.initialized
                        && self.searching.contains(&idx)
                        && self.vms[idx].vm.phase() == Phase::Queued
                    {
                        self.reassess(idx, now);
                    }
                }
                TimerKey::Host(h) => {
                    if !self.finished {
                        self.issue_refresh(h);
                    }
                }
                TimerKey::SeedPass => self.seed.active = true,
            }
        }
        self.after(now);
    }

    /// The next command to carry out, if any.
    pub fn poll_command(&mut self) -> Option<Command> {
        let (next, idx) = self.commands.pop_front()?;
        rewind_when_empty(&mut self.commands);
        if let Some(idx) = idx {
            debug_assert!(
                next.vm()
                    .is_none_or(|vm| self.vm_index.get(vm) == Some(&idx)),
                "a command's VM is its own"
            );
            self.last_handed = Some(idx);
        }
        Some(next)
    }

    /// The index of VM `vm`: the VM of the command handed out last when `vm` is that VM's very
    /// own id (`Core::last_handed`), else looked up.
    fn vm_of(&self, vm: &VmId) -> Option<usize> {
        match self.last_handed {
            Some(idx) if self.vms[idx].vm.id.is_same_text(vm) => Some(idx),
            _ => self.vm_index.get(vm).copied(),
        }
    }

    /// The next event for observers, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        let next = self.events.pop_front();
        rewind_when_empty(&mut self.events);
        next
    }

    /// When the engine next wants [`Core::handle_timeout`] called.
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.finished {
            return None;
        }
        self.timers.next().map(|(t, _)| t)
    }

    /// Whether the run is over (every VM final, every source listed or given up).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Why the run failed as a whole (a source that could never be listed), if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// One host's slot use (what the runtime's slot ledger is given before a start), without
    /// the cost of a whole [`Core::snapshot`]; `None` for a host the run does not know.
    pub fn host_view(&self, host: &HostId) -> Option<HostView> {
        self.host_index.get(host).map(|&h| self.host_view_at(h))
    }

    fn host_view_at(&self, h: usize) -> HostView {
        let hs = &self.hosts[h];
        HostView {
            id: hs.id.clone(),
            limit: self.ledger.limit(h),
            ours: self.ledger.ours(h),
            foreign: self.ledger.foreign(h),
            foreign_vms: hs.foreign_vms.clone(),
            reachable: hs.reachable,
        }
    }

    /// A view of every VM and host.
    pub fn snapshot(&self, now: Time) -> Snapshot {
        let vms = self
            .vms
            .iter()
            .map(|e| {
                let v = &e.vm;
                let destination = match &v.state {
                    MoveState::Moved { destination } => Some(destination.clone()),
                    st => st
                        .request()
                        .map(|r| r.destination.clone())
                        .or_else(|| e.slot.map(|(_, d)| self.hosts[d].id.clone())),
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
        let hosts = (0..self.hosts.len())
            .map(|h| self.host_view_at(h))
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

    fn emit(&mut self, kind: EventKind) {
        self.events.push_back(Event { at: self.now, kind });
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
        // A source not listed yet stays to be listed: its selected VMs are cancelled when its
        // listing comes (`resolve_source`), so that the run names what it leaves behind. Before,
        // a stop (a deadline already past, a Ctrl-C) that came before the first listing ended
        // the run with no VM at all, said to be finished, while the source still held them. A
        // source that does not answer is given up at its next failed refresh (`on_refresh`).
        for i in 0..self.vms.len() {
            if !self.vms[i].vm.phase().is_final() {
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
        let before = self.vms[idx].vm.phase();
        // A source parked on this VM looks at it again, whatever the transition. Sources park
        // on a ready VM only, and leaving the queue unparks it here: never on a running
        // migration, whose steps need not read the VM's source (checked in debug builds).
        if before == Phase::Migrating {
            debug_assert!(
                self.source_state
                    .get(self.vms[idx].source)
                    .copied()
                    .flatten()
                    .is_none_or(|si| self.parking.parked_vm(si) != Some(idx)),
                "a source is parked on a running migration"
            );
        } else if let Some(si) = self
            .source_state
            .get(self.vms[idx].source)
            .copied()
            .flatten()
        {
            if self.parking.parked_vm(si) == Some(idx) {
                self.unpark(si);
            }
        }
        let timer_before = self.vms[idx].vm.timer;
        // A running migration has no pre-flight check in flight (`Core::check_watches`): its
        // steps need not read the line that tells.
        debug_assert!(before != Phase::Migrating || self.vms[idx].vm.preflight.asking.is_none());
        let asking_before =
            before != Phase::Migrating && self.vms[idx].vm.preflight.asking.is_some();
        // A VM stopped alone sees the run as stopping with abort, with its own reason.
        let own = self.vms[idx].vm.stopped.as_deref().cloned();
        let stopping = own.clone().or_else(|| self.stopping.clone());
        let ctx = Ctx {
            now,
            settings: &self.spec.settings,
            stopping: stopping.as_ref(),
            abort_running: self.abort_running || own.is_some(),
        };
        let out = match machine::step(&mut self.vms[idx].vm, ctx, ev) {
            Ok(out) => out,
            Err(illegal) => {
                let vm = self.vms[idx].vm.id.clone();
                self.emit(EventKind::IllegalInput {
                    vm,
                    phase: illegal.phase,
                    input: illegal.event.into(),
                });
                return;
            }
        };
        let after = self.vms[idx].vm.phase();
        if is_watch_step(before, after) {
            // What follows is the same as before the step (`is_watch_step`).
            debug_assert_eq!(self.watch_step_would_change(idx, asking_before), None);
        } else {
            let may_pass = matches!(self.vms[idx].vm.wait, Some(WaitReason::MayPass { .. }));
            if may_pass {
                self.may_pass_waiting.insert(idx);
            } else {
                self.may_pass_waiting.remove(&idx);
            }
            self.sync_clear_hosts(idx, asking_before);
            let asking = self.vms[idx].vm.preflight.asking.is_some();
            if asking != asking_before {
                if asking {
                    self.preflights_in_flight += 1;
                } else {
                    self.preflights_in_flight -= 1;
                    self.dirty = true;
                }
            }
        }
        if before != after {
            let vm = self.vms[idx].vm.id.clone();
            self.emit(EventKind::Transition {
                vm,
                from: before,
                to: after,
            });
        }
        self.apply(idx, now, before, after, out);
        let timer = self.vms[idx].vm.timer;
        if timer != timer_before {
            match timer {
                Some(t) => self
                    .timers
                    .schedule(TimerKey::Vm(idx), t, vm_timers(&self.vms)),
                None => {
                    self.timers.cancel(TimerKey::Vm(idx), vm_timers(&self.vms));
                }
            }
        }
    }

    /// What follows from a VM's phase change `before` -> `after`: its slots, reservation, ready
    /// set and live count, then the transition's events and commands (and a fail-fast stop).
    fn apply(&mut self, idx: usize, now: Time, before: Phase, after: Phase, out: Output) {
        if !after.holds_slot()
            && let Some((src, dst)) = self.vms[idx].slot
            && !self.may_pass_waiting.is_empty()
        {
            self.ended_at.extend([src, dst]);
        }
        if !is_watch_step(before, after) {
            self.derive_slots(idx, now, after);
            self.derive_reservation(idx, now, after);
            self.derive_ready(idx, after);
        }
        if before != after
            && let Some(si) = self
                .source_state
                .get(self.vms[idx].source)
                .copied()
                .flatten()
        {
            self.mark_pack_due(si);
        }
        if after.is_final() && !before.is_final() {
            self.final_count += 1;
        }
        for e in out.events {
            self.emit(e);
        }
        self.commands
            .extend(out.commands.into_iter().map(|c| (c, Some(idx))));
        if after == Phase::Unmigratable
            && before != Phase::Unmigratable
            && self.spec.settings.fail_fast
        {
            self.stop(now, Reason::FailFast, false);
        }
    }

    /// After every input or timeout: schedule, then check whether the run is over.
    fn after(&mut self, now: Time) {
        self.recheck_may_pass(now);
        if self.initialized && self.stopping.is_none() && !self.starts_paused {
            self.run_scheduler(now);
        }
        // The cheap tests first: this runs after every input.
        if !self.finished
            && self.initialized
            && self.final_count == self.vms.len()
            && self.sources.iter().all(|s| s.resolved)
        {
            self.finished = true;
            let (mut m, mut u, mut c) = (0, 0, 0);
            for e in &self.vms {
                match e.vm.phase() {
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
    }
}

impl Core {
    /// VM `idx`'s attempt number ([`VmMove::attempts`]). A running migration's is its request's:
    /// the answers of its watch read it there, from the state the step reads next, rather than
    /// from a line of the VM's entry that nothing else in the step reads.
    fn current_attempt(&self, idx: usize) -> u32 {
        let vm = &self.vms[idx].vm;
        match &vm.state {
            MoveState::Migrating(m) => {
                debug_assert_eq!(
                    m.req.attempt, vm.attempts,
                    "a watch's request is its attempt's"
                );
                m.req.attempt
            }
            _ => vm.attempts,
        }
    }
}

/// A step of a running migration's watch that leaves it running (a poll, its answer, a watchdog,
/// an aid and its answer): the VM holds the same slots and reservation, is not ready, asks no
/// pre-flight check and waits for nothing, before and after, so deriving them again changes
/// nothing (`Core::watch_step_would_change`, checked in debug builds). These are most of a large
/// run's steps, and the derivations read lines of the VM's entry that nothing else in the step
/// reads (its slot, its clear hosts, its order key): at 100,000 VMs, a cache miss each.
fn is_watch_step(before: Phase, after: Phase) -> bool {
    before == Phase::Migrating && after == Phase::Migrating
}

impl Core {
    /// Checks what a running migration's watch steps take for granted (`is_watch_step`), for
    /// tests: every VM in `Migrating` is as deriving its slots, reservation, readiness, checks
    /// and waits again would leave it, no source is parked on it, and its request's attempt is
    /// its attempt count (`Core::current_attempt`). Returns how many were checked.
    #[doc(hidden)]
    pub fn check_watches(&self) -> Result<usize, String> {
        let mut checked = 0;
        for (idx, e) in self.vms.iter().enumerate() {
            let MoveState::Migrating(m) = &e.vm.state else {
                continue;
            };
            checked += 1;
            if let Some(what) = self.watch_step_would_change(idx, false) {
                return Err(format!("{}: a watch step would change {what}", e.vm.id));
            }
            if let Some(si) = self.source_state.get(e.source).copied().flatten()
                && self.parking.parked_vm(si) == Some(idx)
            {
                return Err(format!("{}: its source is parked on it", e.vm.id));
            }
            if m.req.attempt != e.vm.attempts {
                return Err(format!(
                    "{}: its request is attempt {}, its count {}",
                    e.vm.id, m.req.attempt, e.vm.attempts
                ));
            }
        }
        Ok(checked)
    }

    /// What deriving VM `idx`'s slots, reservation, readiness, checks and waits again would
    /// change after a watch step (`is_watch_step`), if anything: `None` when nothing.
    fn watch_step_would_change(&self, idx: usize, asking_before: bool) -> Option<&'static str> {
        let e = &self.vms[idx];
        let may_pass = matches!(e.vm.wait, Some(WaitReason::MayPass { .. }));
        if may_pass != self.may_pass_waiting.contains(&idx) {
            return Some("its wait for findings that may pass");
        }
        if asking_before || e.vm.preflight.asking.is_some() {
            return Some("a pre-flight check in flight");
        }
        if e.clear_hosts.len() != e.vm.preflight.clear.len() {
            return Some("its clear hosts");
        }
        let dst_known =
            e.vm.state
                .request()
                .is_some_and(|r| self.host_index.contains_key(&r.destination));
        if e.slot.is_none() && dst_known {
            return Some("its slots");
        }
        if e.ready_key.is_some() {
            return Some("its place in the ready set");
        }
        if e.live_pending != (e.vm.mode == MigrationMode::Live) {
            return Some("its count among live moves to do");
        }
        let si = self.source_state.get(e.source).copied().flatten();
        if let Some(si) = si {
            if self.sources[si].awaiting == Some(idx) {
                return Some("its source's wait for its check");
            }
            if let Some(&g) = self.index.group_of.get(si) {
                let eligible = self.source_eligible(si);
                if eligible != self.index.eligible[g].contains(&si) {
                    return Some("its source's eligibility");
                }
                if eligible && !self.parking.is_parked(si) && !self.parking.active[g].contains(&si)
                {
                    return Some("its source's place among the active");
                }
                if let Some(k) = self.parking.parked_key(si)
                    && (!eligible || self.sources[si].ready.first() != Some(&k))
                {
                    return Some("its source's parking");
                }
            }
        }
        None
    }

    /// A move of ours ended at some hosts: VMs waiting for one of them because of findings that
    /// may pass (room, a taken path) are asked again now rather than after their back-off.
    fn recheck_may_pass(&mut self, now: Time) {
        if self.ended_at.is_empty() {
            return;
        }
        let ended: BTreeSet<HostId> = std::mem::take(&mut self.ended_at)
            .into_iter()
            .map(|h| self.hosts[h].id.clone())
            .collect();
        let due: Vec<usize> = self
            .may_pass_waiting
            .iter()
            .copied()
            .filter(|&i| {
                let w = &self.vms[i].vm.preflight.waiting;
                ended.iter().any(|h| w.contains_key(h))
            })
            .collect();
        for idx in due {
            self.step(idx, now, VmEvent::Timer);
        }
    }
}

/// One VM of an interrupted run, as its journal recorded it (see [`Core::resume`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    /// The VM's id as its source's driver reported it.
    pub id: VmId,
    /// The VM's name (priorities and pins refer to it).
    pub name: String,
    /// The host it moves from.
    pub source: HostId,
    /// The hosts it may move to, in the order recorded.
    pub destinations: Vec<HostId>,
    /// The VM's memory, bytes (reserved on the destination for a live move).
    pub memory_bytes: u64,
    /// The VM's disks, bytes (reserved on the destination).
    pub disk_bytes: u64,
    /// Whether it moves live or offline.
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
    /// The convergence aids asked for the attempt in flight (`InFlight` and `Aborting` only):
    /// a re-adopted migration is not given them again, and one that entered post-copy (or may
    /// have) is never aborted.
    pub aids: AidsAsked,
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

/// Once a queue of the engine's output is drained, the next items are written from the start of
/// its buffer again: `VecDeque::clear` sets its head back to the start (std does, though its
/// docs do not promise it; without it only speed changes). Otherwise the head goes round the
/// whole buffer, which grew large once (at a run's start, a command per VM), and each push
/// wrote to a line no longer in cache: at 10,000 VMs with a 512 KiB last-level cache, pushes
/// onto the command queue were 15.6 % of the run's last-level write misses.
fn rewind_when_empty<T>(queue: &mut std::collections::VecDeque<T>) {
    if queue.is_empty() {
        queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::rewind_when_empty;
    use std::collections::VecDeque;

    /// A drained queue writes its next item at its buffer's start again. A tripwire for the
    /// speed it buys: it fails if std's `VecDeque::clear` stops setting the head back.
    #[test]
    fn a_drained_queue_writes_from_its_buffers_start_again() {
        let mut q: VecDeque<u64> = VecDeque::with_capacity(64);
        q.push_back(0);
        let start = q.as_slices().0.as_ptr();
        for i in 1..40 {
            q.push_back(i);
            q.pop_front();
        }
        assert_ne!(q.as_slices().0.as_ptr(), start, "the head went round");
        q.pop_front();
        rewind_when_empty(&mut q);
        q.push_back(7);
        assert_eq!(q.as_slices().0.as_ptr(), start);
        assert_eq!(q.pop_front(), Some(7));
        // Not empty: nothing moves.
        q.push_back(1);
        q.push_back(2);
        q.pop_front();
        let at = q.as_slices().0.as_ptr();
        rewind_when_empty(&mut q);
        assert_eq!(q.as_slices().0.as_ptr(), at);
        assert_eq!(q.pop_front(), Some(2));
    }
}
