//! Injected faults: a start refused or hanging ([`StartFault`]), a migration failing or hanging
//! midway ([`MidFault`]), hosts down and backups ([`Window`]), foreign migrations
//! ([`ForeignWindow`]).

use std::collections::BTreeMap;
use vmove_core::model::{ErrorClass, HostId, VmId};
use vmove_core::time::Time;

/// What one call to start a migration of a VM does, when every check passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFault {
    /// Fails with a transient error; the next call goes on with the script.
    Transient,
    /// Fails with a permanent error, this call and every later one.
    Permanent,
    /// Starts the migration but reports an indeterminate error (a connection lost mid-call).
    Indeterminate,
}

/// A migration that stops progressing (or fails) some time after it started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MidFault {
    pub vm: VmId,
    /// Which of the VM's started migrations (1-based, counting migrations that did start).
    pub nth_start: u32,
    /// How long after its start.
    pub after_ms: u64,
    /// `None`: it hangs (stays running, no progress). `Some(class)`: it fails with that class.
    pub fail: Option<ErrorClass>,
}

/// A time window `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    /// Start (inclusive).
    pub from: Time,
    /// End (exclusive).
    pub to: Time,
}

impl Window {
    /// Whether `t` is inside.
    pub fn contains(&self, t: Time) -> bool {
        self.from <= t && t < self.to
    }
}

/// Migrations someone else runs on a host for a while.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignWindow {
    pub host: HostId,
    /// When.
    pub window: Window,
    /// How many migrations.
    pub count: u32,
    /// Arriving (`true`, shown as `MigratingIn`) or leaving (`false`, `MigratingOut`).
    pub inbound: bool,
}

/// Every injected fault, explicit and deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Per VM, what its successive start calls do (consumed in order; `Permanent` sticks).
    pub start_script: BTreeMap<VmId, Vec<StartFault>>,
    /// Migrations that hang or fail part-way.
    pub mid: Vec<MidFault>,
    /// Hosts whose management endpoint does not answer for a while (calls fail `Transient`;
    /// VMs and migrations on them go on).
    pub host_down: Vec<(HostId, Window)>,
    pub foreign: Vec<ForeignWindow>,
    /// Backup windows per VM (activity `BackingUp`, health `InService`).
    pub backups: Vec<(VmId, Window)>,
}

impl Faults {
    /// The VM's next `n` starts fail with a transient error.
    pub fn transient_starts(&mut self, vm: &VmId, n: u32) -> &mut Self {
        let s = self.start_script.entry(vm.clone()).or_default();
        s.extend(std::iter::repeat_n(StartFault::Transient, n as usize));
        self
    }
}
