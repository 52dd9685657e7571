//! The slot ledger port: what the runtime asks before it carries out a start, so that several
//! vmove processes sharing hosts never hold more slots on a host than its limit (issue #18).
//!
//! Before a [`Command::StartMigration`](vmove_core::Command::StartMigration) reaches the
//! driver, the runtime gives the ledger the move's request and what the engine knows of both
//! hosts ([`HostView`]: its limit, this run's slots, the foreign migrations its last listing
//! showed). [`LedgerAnswer::Granted`]: the start goes on. [`LedgerAnswer::Full`]: the start is
//! not carried out, and the core is answered `Input::StartDeferred` with the ledger's counts
//! (the VM waits for a slot; the attempt does not count). An error (the shared journal cannot
//! be reached) is an outage of the journal: the start is deferred the same way (with no
//! counts) and the run waits for the journal with its starts paused. When the engine leaves a
//! phase that holds a slot, the runtime releases the VM's reservation; a release the ledger
//! cannot take during an outage is kept and given again once the journal is back.
//!
//! With no shared journal (`--no-journal`) the runtime has no ledger and every start goes on,
//! as before. The journal's implementation is `vmove_journal::sink::JournalLedger`.

use async_trait::async_trait;
use vmove_core::{HostId, HostView, MigrationRequest, VmId};

/// What the ledger answered a reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerAnswer {
    /// Both slots are reserved for this start.
    Granted,
    /// A host is full: nothing reserved. Per host of the move, the slots others hold there.
    Full(Vec<(HostId, u32)>),
}

/// The cross-process slot ledger, as the runtime consults it.
#[async_trait]
pub trait Ledger: Send + Sync + std::fmt::Debug {
    /// Reserves the slots of `request` (source and destination) in one step.
    async fn reserve(
        &self,
        request: &MigrationRequest,
        source: &HostView,
        destination: &HostView,
    ) -> Result<LedgerAnswer, String>;

    /// Gives `vm`'s slots back (its migration ended, or the VM was given up).
    async fn release(&self, vm: &VmId) -> Result<(), String>;
}
