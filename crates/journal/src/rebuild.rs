//! What resume needs to know about each VM, computed from a loaded [`RunRecord`].
//!
//! This is the journal's word only: resume must still OBSERVE every VM that is not final before
//! acting (see `docs/journal.md`). Nothing here is a reason to retry or delete anything by itself.

use crate::record::{EntryBody, IntentRecord, RunRecord};
use std::collections::BTreeMap;
use vmove_core::machine::{AidAnswer, AidsAsked};
use vmove_core::{
    Command, ConvergenceAid, EventKind, HostId, Input, Leftover, MigrationHandle, MigrationMode,
    MigrationRequest, Phase, Reason, Recovered, RecoveredState, RunSpec, Time, Verification, VmId,
};

/// One VM's facts from the journal.
#[derive(Clone, Debug, PartialEq)]
pub struct VmResume {
    pub vm: VmId,
    /// Name (the id if the VM was never selected).
    pub name: String,
    /// Source host as selected.
    pub source: Option<HostId>,
    /// Live or offline (as selected, then as the last attempt was started).
    pub mode: MigrationMode,
    /// Memory, bytes (as selected).
    pub memory_bytes: u64,
    /// Disk, bytes (as selected).
    pub disk_bytes: u64,
    /// Where it ended up, once moved.
    pub moved_to: Option<HostId>,
    /// Why it was given up or cancelled.
    pub reason: Option<Reason>,
    /// Attempts whose failure was settled (an `AttemptFailed` event: the hosts were looked at).
    pub failed_attempts: Vec<u32>,
    /// Attempts vmove's own crash interrupted without moving the VM (`AttemptFailed` with
    /// `interrupted`): they do not count toward `max_attempts`.
    pub uncounted: Vec<u32>,
    /// When the last settled failure said the next attempt may start (its backoff), if it did.
    pub retry_at: Option<Time>,
    /// Destinations that refused it in this run (`AttemptFailed` with `refused_by`, not
    /// forgiven): the resumed run does not try them again.
    pub refused: Vec<HostId>,
    /// Destinations whose refusal was forgiven in this run (`AttemptFailed` with `forgiven`):
    /// the resumed run does not forgive them again.
    pub forgiven: Vec<HostId>,
    /// The last phase the events recorded (`Queued` once selected, before any transition).
    pub phase: Phase,
    /// The highest attempt number started (0: none).
    pub attempt: u32,
    /// The request of that attempt (its source, destination, mode, layout).
    pub last_request: Option<MigrationRequest>,
    /// The handle the driver returned for that attempt, if the start's outcome was recorded.
    pub handle: Option<MigrationHandle>,
    /// Whether the start of that attempt has an outcome (else it may or may not have started).
    pub start_answered: bool,
    /// Whether an abort of that attempt was asked (its intent recorded): a job of it still
    /// running is aborted again on resume, never re-adopted, whatever phase came after.
    pub abort_asked: bool,
    /// The proof recorded for that attempt by a `Verify` outcome, if it was a proof.
    pub verification: Option<Verification>,
    /// Whether a `Verified` event was recorded for it.
    pub verified_event: bool,
    /// Leftovers whose removal was recorded as done: never to be removed again.
    pub removed_leftovers: Vec<Leftover>,
    /// Intents about this VM without an outcome, oldest first: done or not, only the hosts know.
    pub open_intents: Vec<IntentRecord>,
    /// The convergence aids asked for the last attempt, in order, each with its recorded answer
    /// ([`AidAnswer::Unanswered`]: none recorded, so it may have been applied).
    pub aids: Vec<(ConvergenceAid, AidAnswer)>,
}

impl VmResume {
    fn new(vm: VmId) -> Self {
        VmResume {
            name: vm.as_str().to_owned(),
            vm,
            source: None,
            mode: MigrationMode::Live,
            memory_bytes: 0,
            disk_bytes: 0,
            moved_to: None,
            reason: None,
            failed_attempts: Vec::new(),
            uncounted: Vec::new(),
            retry_at: None,
            refused: Vec::new(),
            forgiven: Vec::new(),
            phase: Phase::Queued,
            attempt: 0,
            last_request: None,
            handle: None,
            start_answered: false,
            abort_asked: false,
            verification: None,
            verified_event: false,
            removed_leftovers: Vec::new(),
            open_intents: Vec::new(),
            aids: Vec::new(),
        }
    }

    /// The aids of the last attempt as the core's resume takes them. An aid asked with no
    /// answer recorded may have been applied: for post-copy, the safe side is never to abort
    /// (`AidsAsked::post_copy`).
    pub fn aids_asked(&self) -> AidsAsked {
        AidsAsked {
            answers: self.aids.clone(),
        }
    }

    /// Whether the move is over according to the journal.
    pub fn is_final(&self) -> bool {
        self.phase.is_final()
    }

    /// Whether the journal holds a proof that the last attempt arrived (the precondition of any
    /// deletion on the source; resume still re-checks the hosts before deleting).
    pub fn has_proof(&self) -> bool {
        self.verification
            .as_ref()
            .is_some_and(Verification::is_proof)
    }
}

/// Per VM, in id order: the last phase, attempt, request, handle, proof and unanswered intents.
pub fn rebuild(record: &RunRecord) -> BTreeMap<VmId, VmResume> {
    rebuild_ordered(record).0
}

/// [`rebuild`], plus the VM ids in the order they were selected.
fn rebuild_ordered(record: &RunRecord) -> (BTreeMap<VmId, VmResume>, Vec<VmId>) {
    let mut out: BTreeMap<VmId, VmResume> = BTreeMap::new();
    let mut order: Vec<VmId> = Vec::new();
    for entry in &record.entries {
        match &entry.body {
            EntryBody::Intent(Command::StartMigration(req)) => {
                let v = out
                    .entry(req.vm.clone())
                    .or_insert_with(|| VmResume::new(req.vm.clone()));
                if req.attempt >= v.attempt {
                    v.attempt = req.attempt;
                    v.last_request = Some((**req).clone());
                    v.handle = None;
                    v.start_answered = false;
                    v.abort_asked = false;
                    v.verification = None;
                    v.verified_event = false;
                    v.aids.clear();
                }
            }
            EntryBody::Intent(Command::Converge { request, aid, .. }) => {
                if let Some(v) = out
                    .get_mut(&request.vm)
                    .filter(|v| v.attempt == request.attempt)
                {
                    v.aids.push((*aid, AidAnswer::Unanswered));
                }
            }
            EntryBody::Outcome { input, .. } | EntryBody::Input(input) => {
                let Some((vm, attempt)) = input.vm_attempt() else {
                    continue;
                };
                let v = out
                    .entry(vm.clone())
                    .or_insert_with(|| VmResume::new(vm.clone()));
                if attempt != v.attempt {
                    continue;
                }
                match input {
                    Input::MigrationStarted { result, .. } => {
                        if matches!(entry.body, EntryBody::Outcome { .. }) {
                            v.start_answered = true;
                        }
                        v.handle = result.as_ref().ok().cloned();
                    }
                    // Not carried out (the slot ledger found a host full): answered, and the
                    // attempt does not count.
                    Input::StartDeferred { .. } => {
                        v.start_answered = true;
                        v.handle = None;
                        if !v.uncounted.contains(&attempt) {
                            v.uncounted.push(attempt);
                        }
                    }
                    // One aid is asked at a time: the answer is the last one asked's. Post-copy
                    // refused for a passing reason (QEMU refuses it while libvirt still copies
                    // the disks) does not count as asked, as the running core counts it
                    // (`machine::migrating::converged`): the resumed watch asks it again at its
                    // next firing. Before, it counted, and the resumed ladder was at its end: the
                    // next firing aborted the attempt.
                    Input::Converged { result, .. } => {
                        if let Some(i) = v
                            .aids
                            .iter()
                            .rposition(|(_, a)| *a == AidAnswer::Unanswered)
                        {
                            match result {
                                Err(f) if v.aids[i].0.refused_for_now(f) => {
                                    v.aids.remove(i);
                                }
                                _ => v.aids[i].1 = AidAnswer::of(result),
                            }
                        }
                    }
                    Input::Verified {
                        result: Ok(proof), ..
                    } if proof.is_proof() => {
                        v.verification = Some(proof.clone());
                    }
                    Input::LeftoverRemoved {
                        leftover,
                        result: Ok(()),
                        ..
                    } if !v.removed_leftovers.contains(leftover) => {
                        v.removed_leftovers.push(leftover.clone());
                    }
                    _ => {}
                }
            }
            EntryBody::Event(ev) => {
                let Some(vm) = ev.kind.vm() else { continue };
                let v = out
                    .entry(vm.clone())
                    .or_insert_with(|| VmResume::new(vm.clone()));
                match &ev.kind {
                    EventKind::Selected {
                        name,
                        source,
                        mode,
                        memory_bytes,
                        disk_bytes,
                        ..
                    } => {
                        if !order.contains(vm) {
                            order.push(vm.clone());
                        }
                        v.name = name.clone();
                        v.source = Some(source.clone());
                        v.mode = *mode;
                        v.memory_bytes = *memory_bytes;
                        v.disk_bytes = *disk_bytes;
                    }
                    EventKind::Transition { to, .. } => v.phase = *to,
                    EventKind::AttemptStarted { mode, .. } => v.mode = *mode,
                    EventKind::AttemptFailed {
                        attempt,
                        retry_at,
                        refused_by,
                        forgiven,
                        interrupted,
                        ..
                    } if !v.failed_attempts.contains(attempt) => {
                        v.failed_attempts.push(*attempt);
                        if *interrupted {
                            v.uncounted.push(*attempt);
                        }
                        v.retry_at = *retry_at;
                        if let Some(d) = refused_by {
                            let set = if *forgiven {
                                &mut v.forgiven
                            } else {
                                &mut v.refused
                            };
                            if !set.contains(d) {
                                set.push(d.clone());
                            }
                        }
                    }
                    EventKind::Moved { destination, .. } => {
                        v.phase = Phase::Moved;
                        v.moved_to = Some(destination.clone());
                    }
                    EventKind::Unmigratable { reason, .. } => {
                        v.phase = Phase::Unmigratable;
                        v.reason = Some(reason.clone());
                    }
                    EventKind::Cancelled { reason, .. } => {
                        v.phase = Phase::Cancelled;
                        v.reason = Some(reason.clone());
                    }
                    EventKind::Verified { .. } => v.verified_event = true,
                    _ => {}
                }
            }
            EntryBody::Intent(Command::AbortMigration { request, .. }) => {
                if let Some(v) = out
                    .get_mut(&request.vm)
                    .filter(|v| v.attempt == request.attempt)
                {
                    v.abort_asked = true;
                }
            }
            EntryBody::Intent(_) => {}
        }
    }
    for intent in record.open_intents() {
        if let Some(vm) = intent.command.vm() {
            let v = out
                .entry(vm.clone())
                .or_insert_with(|| VmResume::new(vm.clone()));
            v.open_intents.push(intent);
        }
    }
    (out, order)
}

/// The VMs that are not final: the ones resume must observe.
pub fn in_flight(record: &RunRecord) -> Vec<VmResume> {
    rebuild(record)
        .into_values()
        .filter(|v| !v.is_final())
        .collect()
}

impl VmResume {
    /// Whether an attempt may be under way as far as the journal can tell: a start was recorded
    /// and that attempt's failure was never settled (no `AttemptFailed` event, which the core
    /// emits only after looking at the hosts), or an action on the world has no outcome. Only
    /// the hosts can say what really happened: such a VM is handed to the core as in flight, to
    /// be located. A VM whose phase says "starting" but whose start intent was never written
    /// cannot have been started (intents are written before acting): it is not in flight.
    pub fn maybe_in_flight(&self) -> bool {
        if self.is_final() {
            return false;
        }
        // A start the slot ledger deferred never reached the hosts (its attempt is uncounted).
        let unsettled_start = self.last_request.is_some()
            && !self.failed_attempts.contains(&self.attempt)
            && !self.uncounted.contains(&self.attempt);
        let open_action = self.open_intents.iter().any(|i| {
            matches!(
                i.command,
                Command::StartMigration(_)
                    | Command::AbortMigration { .. }
                    | Command::Converge { .. }
                    | Command::RemoveLeftover { .. }
            )
        });
        unsettled_start || open_action
    }

    /// What the core's [`Core::resume`](vmove_core::Core::resume) needs for this VM, or `None`
    /// for a VM whose selection was never recorded. Such a VM is left out on purpose: the core
    /// selects a source with no recovered VM afresh, and finds it on the hosts (handing it over
    /// with an invented source would mark its source as selected and lose the source's other
    /// VMs). Under the write protocol (events before the next intent) it cannot happen.
    ///
    /// The mapping never trusts the journal to skip an observation: a VM that may be in flight
    /// (see [`VmResume::maybe_in_flight`]) becomes [`RecoveredState::InFlight`] with its last
    /// request, which the core locates on the hosts before anything else; any other unfinished
    /// VM is queued again (and re-assessed from a fresh host listing).
    pub fn to_recovered(&self, spec: &RunSpec) -> Option<Recovered> {
        let source = self.source.clone()?;
        let destinations = match spec.pins.get(&self.name) {
            Some(pin) => vec![pin.clone()],
            None => spec
                .sources
                .iter()
                .find(|s| s.host == source)
                .map(|s| s.destinations.to_vec())
                .unwrap_or_default(),
        };
        let state = match self.phase {
            Phase::Moved => RecoveredState::Moved(
                self.moved_to
                    .clone()
                    .or_else(|| self.last_request.as_ref().map(|r| r.destination.clone()))?,
            ),
            Phase::Unmigratable => {
                RecoveredState::Unmigratable(self.reason.clone().unwrap_or(Reason::Vanished))
            }
            Phase::Cancelled => {
                RecoveredState::Cancelled(self.reason.clone().unwrap_or(Reason::RunStopped))
            }
            _ => match (&self.last_request, self.maybe_in_flight()) {
                // An abort had been asked (the phase may have moved on to the look at the hosts
                // that follows it): if the job still runs, it is aborted again, not re-adopted.
                (Some(req), true) if self.phase == Phase::Aborting || self.abort_asked => {
                    RecoveredState::Aborting(req.clone())
                }
                (Some(req), true) => RecoveredState::InFlight(req.clone()),
                // Waiting out a backoff: the delay still runs after a resume.
                _ if self.phase == Phase::BackingOff => match self.retry_at {
                    Some(t) => RecoveredState::BackingOff(t),
                    None => RecoveredState::Queued,
                },
                _ => RecoveredState::Queued,
            },
        };
        Some(Recovered {
            id: self.vm.clone(),
            name: self.name.clone(),
            source,
            destinations,
            memory_bytes: self.memory_bytes,
            disk_bytes: self.disk_bytes,
            mode: self
                .last_request
                .as_ref()
                .map(|r| r.mode)
                .unwrap_or(self.mode),
            attempts: self.attempt,
            uncounted: u32::try_from(self.uncounted.len()).unwrap_or(u32::MAX),
            refused: self.refused.clone(),
            forgiven: self.forgiven.clone(),
            state,
            aids: self.aids_asked(),
        })
    }
}

/// Every selected VM of the run as [`Core::resume`](vmove_core::Core::resume) takes them, in
/// selection order.
pub fn recovered(record: &RunRecord) -> Vec<Recovered> {
    let (facts, order) = rebuild_ordered(record);
    order
        .iter()
        .filter_map(|vm| facts.get(vm))
        .filter_map(|v| v.to_recovered(&record.spec))
        .collect()
}
