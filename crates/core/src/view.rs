//! Read-only views of a run, for progress displays, `status` and reports.

use crate::event::{Phase, Reason, WaitReason};
use crate::model::{HostId, MigrationMode, Progress, VmId};
use crate::time::Time;
use serde::{Deserialize, Serialize};

/// One VM's place in the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmView {
    pub id: VmId,
    pub name: String,
    pub source: HostId,
    /// Destination (chosen, or where it ended up).
    pub destination: Option<HostId>,
    pub phase: Phase,
    /// Live or offline.
    pub mode: MigrationMode,
    /// Attempts made.
    pub attempts: u32,
    /// Why it waits, when queued.
    pub waiting: Option<WaitReason>,
    /// Latest progress, when migrating.
    pub progress: Option<Progress>,
    /// Why it ended unmoved.
    pub reason: Option<Reason>,
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// Disk, bytes.
    pub disk_bytes: u64,
    /// When the current attempt started.
    pub started_at: Option<Time>,
    /// When it finished (moved, unmigratable, cancelled).
    pub finished_at: Option<Time>,
    /// Last error seen.
    pub last_error: Option<String>,
}

/// One host's slot use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostView {
    pub id: HostId,
    /// Effective limit.
    pub limit: u32,
    /// Slots used by this run.
    pub ours: u32,
    /// Slots used by others.
    pub foreign: u32,
    /// Of those, the VMs its last listing showed migrating that are not this run's (the rest
    /// of `foreign` it only counted): the slot ledger matches them with other processes'
    /// reservations so that no migration is counted twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_vms: Vec<VmId>,
    /// Whether it answered its last refresh.
    pub reachable: bool,
}

/// The whole run at a moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub run_id: String,
    /// When the snapshot was taken.
    pub at: Time,
    /// VMs, in selection order.
    pub vms: Vec<VmView>,
    pub hosts: Vec<HostView>,
    /// Whether a stop was asked.
    pub stopping: bool,
    /// Whether the run is over.
    pub finished: bool,
    /// Why the run failed as a whole, if it did.
    pub failed: Option<String>,
}

impl Snapshot {
    /// Counts VMs in each final phase: (moved, unmigratable, cancelled).
    pub fn counts(&self) -> (u32, u32, u32) {
        let mut c = (0, 0, 0);
        for v in &self.vms {
            match v.phase {
                Phase::Moved => c.0 += 1,
                Phase::Unmigratable => c.1 += 1,
                Phase::Cancelled => c.2 += 1,
                _ => {}
            }
        }
        c
    }
}
