//! Assessment: what the hosts say about a queued VM, and a locate answer as the freshest word on
//! where a VM is.

use super::Core;
use crate::event::{Reason, WaitReason};
use crate::machine::{Assessment, VmEvent};
use crate::model::{Activity, Health, Location, MigrationMode, PowerState};
use crate::time::Time;

/// Waits that only a host refresh can end (as opposed to the scheduler's own waits).
pub(super) fn is_observed_wait(w: &WaitReason) -> bool {
    matches!(
        w,
        WaitReason::BackingUp { .. }
            | WaitReason::MigratingByOther
            | WaitReason::OtherJob(_)
            | WaitReason::Transitioning(_)
            | WaitReason::Searching
    )
}

impl Core {
    /// Notes where a locate answer found a VM.
    pub(super) fn note_location(&mut self, idx: usize, loc: &Location) {
        // A Locate answer is the freshest word on where the VM is: later refreshes asked before
        // it must not overwrite it.
        let src = self.vms[idx].source;
        let dst = self.vms[idx]
            .vm
            .state
            .request()
            .and_then(|r| self.host_index.get(&r.destination).copied());
        let sides = [(Some(src), &loc.on_source), (dst, &loc.on_destination)];
        for (host, seen) in sides {
            let Some(h) = host else { continue };
            match seen {
                Some(v) => {
                    self.vms[idx].seen.insert(h, v.clone());
                    self.hosts[h].seen_ours.insert(idx);
                }
                None => {
                    self.vms[idx].seen.remove(&h);
                    self.hosts[h].seen_ours.remove(&idx);
                }
            }
        }
        self.vms[idx].observed_at = self.now;
    }

    /// What the hosts say about a queued VM.
    pub(super) fn assess(&self, idx: usize) -> Assessment {
        let vm = &self.vms[idx].vm;
        let src = self.vms[idx].source;
        let seen = &self.vms[idx].seen;
        if let Some(info) = seen.get(&src) {
            if info.activity.is_migration() {
                return Assessment::Wait {
                    reason: WaitReason::MigratingByOther,
                    held: false,
                };
            }
            if let Health::Bad(s) = &info.health {
                return Assessment::Unmigratable(Reason::BadStatus(s.clone()));
            }
            match &info.activity {
                Activity::BackingUp => {
                    return Assessment::Wait {
                        reason: WaitReason::BackingUp { since: self.now },
                        held: true,
                    };
                }
                Activity::OtherJob(j) => {
                    return Assessment::Wait {
                        reason: WaitReason::OtherJob(j.clone()),
                        held: true,
                    };
                }
                _ => {}
            }
            if info.health == Health::InService {
                // The seed: "in service" with no secondary status counts as backing up.
                return Assessment::Wait {
                    reason: WaitReason::BackingUp { since: self.now },
                    held: true,
                };
            }
            return match &info.power {
                PowerState::Transitioning(s) => Assessment::Wait {
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

    /// Assesses a queued VM again and tells its machine.
    pub(super) fn reassess(&mut self, idx: usize, now: Time) {
        let mut a = self.assess(idx);
        if let Assessment::Unmigratable(Reason::NotFound | Reason::Vanished) = a {
            // Gone from its source and seen nowhere: before calling it lost, look at every
            // destination with a listing asked for after it went missing (it may have just
            // arrived there by someone else's hand).
            let since = *self.vms[idx].missing_since.get_or_insert(now);
            let pending: Vec<usize> = self.vms[idx]
                .vm
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
                    self.issue_refresh(h);
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
            self.vms[idx].missing_since = None;
            self.searching.remove(&idx);
        }
        self.step(idx, now, VmEvent::Assessed(a));
    }
}
