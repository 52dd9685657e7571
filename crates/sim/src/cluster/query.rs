//! The ground truth, for tests and reports: the clock, where VMs are, what hosts run, the peaks.

use super::faults::StartFault;
use super::spec::{HostSpec, VmSpec};
use super::state::SimCluster;
use std::collections::{BTreeMap, BTreeSet};
use vmove_core::model::{ErrorClass, HostId, VmId};
use vmove_core::time::Time;

impl SimCluster {
    /// The cluster's current time.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Bytes every migration sent up to its end or now (disks, memory rounds, the final
    /// stop-and-copy), counting migrations that were aborted or failed: what a run cost the
    /// network.
    pub fn bytes_sent(&self) -> u64 {
        self.migs.iter().map(|m| m.sent).sum()
    }

    /// Every host's id, in definition order.
    pub fn host_ids(&self) -> Vec<HostId> {
        self.hosts.iter().map(|h| h.spec.id.clone()).collect()
    }

    /// A host's description.
    pub fn host_spec(&self, host: &HostId) -> Option<&HostSpec> {
        self.host_idx(host).map(|h| &self.hosts[h].spec)
    }

    /// Every VM's description (its `host` field is where it was created), in creation order.
    pub fn vm_specs(&self) -> impl Iterator<Item = &VmSpec> {
        self.vms.iter().filter(|v| !v.removed).map(|v| &v.spec)
    }

    /// Where a VM is defined now.
    pub fn vm_host(&self, vm: &VmId) -> Option<&HostId> {
        self.vm_idx(vm)
            .map(|v| &self.hosts[self.vms[v].host].spec.id)
    }

    /// Whether a VM is migrating now, and to where.
    pub fn vm_migrating_to(&self, vm: &VmId) -> Option<&HostId> {
        let v = self.vm_idx(vm)?;
        self.vms[v]
            .active_mig
            .map(|m| &self.hosts[self.migs[m].dst].spec.id)
    }

    /// Our migrations touching the host now.
    pub fn active_ours(&self, host: &HostId) -> u32 {
        self.host_idx(host)
            .map_or(0, |h| self.hosts[h].active.len() as u32)
    }

    /// Foreign migrations on the host now.
    pub fn active_foreign(&self, host: &HostId) -> u32 {
        self.host_idx(host).map_or(0, |h| self.foreign_now(h))
    }

    /// The highest number of our migrations seen on each host at once, and of all migrations
    /// (foreign ones included).
    pub fn peak_concurrency(&self) -> BTreeMap<HostId, (u32, u32)> {
        self.hosts
            .iter()
            .map(|h| (h.spec.id.clone(), (h.peak_ours, h.peak_total)))
            .collect()
    }

    /// Number of migrations started so far.
    pub fn migrations_started(&self) -> usize {
        self.migs.len()
    }

    /// Whether the host's management endpoint answers now.
    pub fn host_up(&self, host: &HostId) -> bool {
        self.host_idx(host).is_some_and(|h| self.up(h))
    }

    /// VMs that can never move: a permanent start failure in their script, or a permanent
    /// failure part-way through a migration.
    pub fn permanent_failures(&self) -> BTreeSet<VmId> {
        let mut out: BTreeSet<VmId> = self
            .vms
            .iter()
            .filter(|v| !v.removed && v.script.contains(&StartFault::Permanent))
            .map(|v| v.spec.id.clone())
            .collect();
        out.extend(
            self.mid
                .iter()
                .filter(|m| m.fail == Some(ErrorClass::Permanent))
                .map(|m| m.vm.clone()),
        );
        out
    }

    /// How long the VM's first migrations surely run before they fail or hang, when each takes
    /// at least `attempt_ms` to finish: the `after_ms` of its mid-way faults on the 1st, 2nd, ...
    /// started migration, counted while each fires before `attempt_ms` (such an attempt cannot
    /// have finished first, so it is lost and the next one runs). A fault on a later attempt is
    /// not counted once one on an earlier attempt might not fire. Permanent failures are left
    /// to [`Self::permanent_failures`].
    pub fn surely_lost_ms(&self, vm: &VmId, attempt_ms: u64) -> u64 {
        let mut lost = 0;
        for nth in 1.. {
            let fired = self
                .mid
                .iter()
                .filter(|m| &m.vm == vm && m.nth_start == nth && m.after_ms < attempt_ms)
                .filter(|m| m.fail != Some(ErrorClass::Permanent))
                .map(|m| m.after_ms)
                .min();
            match fired {
                Some(ms) => lost += ms,
                None => break,
            }
        }
        lost
    }

    /// If a backup holds the VM now, when the (chained) backup windows let it go.
    pub fn blocked_from_start_until(&self, vm: &VmId) -> Option<Time> {
        let v = self.vm_idx(vm)?;
        let mut windows = self.vms[v].backups.clone();
        windows.sort();
        let mut until: Option<Time> = None;
        for w in windows {
            let at = until.unwrap_or(self.now);
            if w.contains(at) {
                until = Some(w.to);
            }
        }
        until
    }
}
