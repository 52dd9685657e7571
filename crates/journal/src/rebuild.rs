//! What resume needs to know about each VM, computed from a loaded [`RunRecord`].
//!
//! This is the journal's word only: resume must still OBSERVE every VM that is not final before
//! acting (see `docs/journal.md`). Nothing here is a reason to retry or delete anything by itself.

use crate::record::{EntryBody, IntentRecord, RunRecord};
use std::collections::BTreeMap;
use vmove_core::{
    Command, EventKind, HostId, Input, Leftover, MigrationHandle, MigrationRequest, Phase,
    Verification, VmId,
};

/// One VM's facts from the journal.
#[derive(Clone, Debug, PartialEq)]
pub struct VmResume {
    /// Id.
    pub vm: VmId,
    /// Name (the id if the VM was never selected).
    pub name: String,
    /// Source host as selected.
    pub source: Option<HostId>,
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
    /// The proof recorded for that attempt by a `Verify` outcome, if it was a proof.
    pub verification: Option<Verification>,
    /// Whether a `Verified` event was recorded for it.
    pub verified_event: bool,
    /// Leftovers whose removal was recorded as done: never to be removed again.
    pub removed_leftovers: Vec<Leftover>,
    /// Intents about this VM without an outcome, oldest first: done or not, only the hosts know.
    pub open_intents: Vec<IntentRecord>,
}

impl VmResume {
    fn new(vm: VmId) -> Self {
        VmResume {
            name: vm.0.clone(),
            vm,
            source: None,
            phase: Phase::Queued,
            attempt: 0,
            last_request: None,
            handle: None,
            start_answered: false,
            verification: None,
            verified_event: false,
            removed_leftovers: Vec::new(),
            open_intents: Vec::new(),
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
    let mut out: BTreeMap<VmId, VmResume> = BTreeMap::new();
    for entry in &record.entries {
        match &entry.body {
            EntryBody::Intent(Command::StartMigration(req)) => {
                let v = out
                    .entry(req.vm.clone())
                    .or_insert_with(|| VmResume::new(req.vm.clone()));
                if req.attempt >= v.attempt {
                    v.attempt = req.attempt;
                    v.last_request = Some(req.clone());
                    v.handle = None;
                    v.start_answered = false;
                    v.verification = None;
                    v.verified_event = false;
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
                    EventKind::Selected { name, source, .. } => {
                        v.name = name.clone();
                        v.source = Some(source.clone());
                    }
                    EventKind::Transition { to, .. } => v.phase = *to,
                    EventKind::Moved { .. } => v.phase = Phase::Moved,
                    EventKind::Unmigratable { .. } => v.phase = Phase::Unmigratable,
                    EventKind::Cancelled { .. } => v.phase = Phase::Cancelled,
                    EventKind::Verified { .. } => v.verified_event = true,
                    _ => {}
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
    out
}

/// The VMs that are not final: the ones resume must observe.
pub fn in_flight(record: &RunRecord) -> Vec<VmResume> {
    rebuild(record)
        .into_values()
        .filter(|v| !v.is_final())
        .collect()
}
