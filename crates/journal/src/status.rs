//! The per-VM status row: the latest state of each VM of a run, kept up to date in the same
//! transaction as every event, so `vmove status` reads one small table instead of the whole log.
//! [`VmStatus::apply`] is THE fold of a VM's events into its state: the CLI's summary table and
//! reports show the same rows.

use serde::{Deserialize, Serialize};
use vmove_core::{Event, EventKind, HostId, MigrationMode, Phase, Reason, Time, VmId, WaitReason};

/// Latest figures of a running migration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressFigures {
    pub bytes_done: u64,
    /// Bytes total (0 if unknown).
    pub bytes_total: u64,
    /// Bytes remaining (0 if unknown).
    pub bytes_remaining: u64,
}

/// One VM's latest state in a run, as the events tell it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmStatus {
    pub vm: VmId,
    pub name: String,
    /// Source host (empty if the VM was never selected, which the core does not do).
    pub source: HostId,
    /// Destination of the current or last attempt, or where it ended up.
    pub destination: Option<HostId>,
    pub phase: Phase,
    /// Live or offline.
    pub mode: Option<MigrationMode>,
    /// Attempts started so far.
    pub attempt: u32,
    /// Why it waits, while queued.
    pub waiting: Option<WaitReason>,
    /// Latest progress of the current attempt.
    pub progress: Option<ProgressFigures>,
    /// Why it ended unmoved.
    pub reason: Option<Reason>,
    /// Last error seen.
    pub last_error: Option<String>,
    /// The warnings of the VM's latest pre-flight check (`code toward DESTINATION: message`):
    /// what a person may want to look at while the move goes on (a CPU that could not be
    /// compared, a bridge that could not be checked...). Empty when the latest check had none;
    /// absent from rows written before it was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Whether the move was proven on the destination.
    pub verified: bool,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    /// Run time of the last event about it.
    pub updated_at: Time,
}

impl VmStatus {
    /// A VM first seen in `event` (a `Selected` event normally).
    pub fn new(vm: VmId, at: Time) -> Self {
        VmStatus {
            name: vm.as_str().to_owned(),
            vm,
            source: HostId::new(""),
            destination: None,
            phase: Phase::Queued,
            mode: None,
            attempt: 0,
            waiting: None,
            progress: None,
            reason: None,
            last_error: None,
            warnings: Vec::new(),
            verified: false,
            memory_bytes: 0,
            disk_bytes: 0,
            updated_at: at,
        }
    }

    /// Applies one event about this VM. Events about other VMs are ignored.
    pub fn apply(&mut self, event: &Event) {
        if event.kind.vm() != Some(&self.vm) {
            return;
        }
        self.updated_at = event.at;
        match &event.kind {
            EventKind::Selected {
                name,
                source,
                mode,
                memory_bytes,
                disk_bytes,
                ..
            } => {
                self.name = name.clone();
                self.source = source.clone();
                self.mode = Some(*mode);
                self.memory_bytes = *memory_bytes;
                self.disk_bytes = *disk_bytes;
            }
            EventKind::Transition { to, .. } => {
                self.phase = *to;
                // A reason says why a VM did not move: once it is in play again, it is stale.
                if !to.is_final() {
                    self.reason = None;
                }
                if *to != Phase::Queued {
                    self.waiting = None;
                }
                if !matches!(to, Phase::Confirming | Phase::Migrating | Phase::Aborting) {
                    self.progress = None;
                }
            }
            EventKind::Waiting { reason, .. } => self.waiting = Some(reason.clone()),
            EventKind::AttemptStarted {
                attempt,
                source,
                destination,
                mode,
                ..
            } => {
                if self.source.as_str().is_empty() {
                    self.source = source.clone();
                }
                self.attempt = self.attempt.max(*attempt);
                self.destination = Some(destination.clone());
                self.mode = Some(*mode);
                self.progress = None;
            }
            EventKind::Progress {
                bytes_done,
                bytes_total,
                bytes_remaining,
                ..
            } => {
                self.progress = Some(ProgressFigures {
                    bytes_done: *bytes_done,
                    bytes_total: *bytes_total,
                    bytes_remaining: *bytes_remaining,
                });
            }
            EventKind::AttemptFailed { error, .. } => self.last_error = Some(error.clone()),
            EventKind::Verified { destination, .. } => {
                self.verified = true;
                self.destination = Some(destination.clone());
            }
            EventKind::Moved {
                destination,
                attempts,
                ..
            } => {
                self.phase = Phase::Moved;
                self.reason = None;
                self.attempt = self.attempt.max(*attempts);
                self.destination = Some(destination.clone());
            }
            EventKind::Unmigratable { reason, .. } => {
                self.phase = Phase::Unmigratable;
                self.reason = Some(reason.clone());
            }
            EventKind::Cancelled { reason, .. } => {
                self.phase = Phase::Cancelled;
                self.reason = Some(reason.clone());
            }
            EventKind::LeftoverKept { error, .. } => self.last_error = Some(error.clone()),
            EventKind::CallFailed { error, .. } => self.last_error = Some(error.clone()),
            EventKind::MigrationFailed { error, .. } => self.last_error = Some(error.clone()),
            EventKind::PreflightFailed {
                destination, error, ..
            } => self.last_error = Some(format!("pre-flight toward {destination}: {error}")),
            // A blocker is the VM's latest news (its reason follows if it ends the move); the
            // warnings of the latest check are kept beside it.
            EventKind::PreflightFindings {
                destination,
                blockers,
                warnings,
                ..
            } => {
                self.warnings = warnings
                    .iter()
                    .map(|w| format!("{} toward {destination}: {}", w.code, w.message))
                    .collect();
                if !blockers.is_empty() {
                    let said: Vec<String> = blockers.iter().map(ToString::to_string).collect();
                    self.last_error = Some(format!(
                        "pre-flight blocked it on {destination}: {}",
                        said.join("; ")
                    ));
                }
            }
            // Self-loops: these change nothing a status line shows.
            EventKind::Escalated { .. }
            | EventKind::WatchdogFired { .. }
            | EventKind::NotAborted { .. }
            | EventKind::AbortWaiting { .. }
            | EventKind::LeftBehind { .. }
            | EventKind::LeftoverRemoved { .. }
            | EventKind::VmStopAsked { .. }
            | EventKind::IllegalInput { .. } => {}
            // Not about one VM (filtered out above).
            EventKind::RunStarted { .. }
            | EventKind::HostSeen { .. }
            | EventKind::HostUnreachable { .. }
            | EventKind::SelectionUnmatched { .. }
            | EventKind::StopRequested { .. }
            | EventKind::RunFailed { .. }
            | EventKind::RunFinished { .. } => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ev(at: u64, kind: EventKind) -> Event {
        Event { at: Time(at), kind }
    }

    /// `vmove status` did not show a pre-flight's warnings, only its blockers: the latest
    /// check's warnings are kept, and a later check without any clears them.
    #[test]
    fn the_latest_pre_flight_warnings_are_kept_and_a_clear_check_forgets_them() {
        use vmove_core::{Finding, FindingScope};
        let vm = VmId::new("u1");
        let mut s = VmStatus::new(vm.clone(), Time(0));
        let findings = |at, destination: &str, warnings: Vec<Finding>| {
            ev(
                at,
                EventKind::PreflightFindings {
                    vm: vm.clone(),
                    attempt: 1,
                    destination: destination.into(),
                    blockers: vec![],
                    warnings,
                },
            )
        };
        s.apply(&findings(
            1,
            "b",
            vec![Finding::new(
                "cpu_unchecked",
                FindingScope::Destination,
                "cannot compare the CPU",
            )],
        ));
        assert_eq!(
            s.warnings,
            vec!["cpu_unchecked toward b: cannot compare the CPU".to_string()]
        );
        assert_eq!(s.last_error, None, "a warning is not an error");
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("cpu_unchecked"), "{json}");
        s.apply(&findings(2, "c", vec![]));
        assert!(s.warnings.is_empty());
        // A row written before warnings were kept still reads.
        let old = serde_json::to_string(&s).unwrap();
        assert!(!old.contains("warnings"), "{old}");
        let back: VmStatus = serde_json::from_str(&old).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn status_follows_a_move_from_selection_to_moved() {
        let vm = VmId::new("u1");
        let mut s = VmStatus::new(vm.clone(), Time(0));
        for e in [
            ev(
                1,
                EventKind::Selected {
                    vm: vm.clone(),
                    name: "web1".into(),
                    source: "a".into(),
                    mode: MigrationMode::Live,
                    memory_bytes: 10,
                    disk_bytes: 20,
                },
            ),
            ev(
                2,
                EventKind::Waiting {
                    vm: vm.clone(),
                    reason: WaitReason::NoSlot,
                },
            ),
            ev(
                3,
                EventKind::Transition {
                    vm: vm.clone(),
                    from: Phase::Queued,
                    to: Phase::Starting,
                },
            ),
            ev(
                3,
                EventKind::AttemptStarted {
                    vm: vm.clone(),
                    attempt: 1,
                    source: "a".into(),
                    destination: "b".into(),
                    mode: MigrationMode::Live,
                },
            ),
            ev(
                4,
                EventKind::Transition {
                    vm: vm.clone(),
                    from: Phase::Starting,
                    to: Phase::Migrating,
                },
            ),
            ev(
                5,
                EventKind::Progress {
                    vm: vm.clone(),
                    attempt: 1,
                    bytes_done: 5,
                    bytes_total: 30,
                    bytes_remaining: 25,
                },
            ),
        ] {
            s.apply(&e);
        }
        assert_eq!(s.name, "web1");
        assert_eq!(s.phase, Phase::Migrating);
        assert_eq!(s.waiting, None);
        assert_eq!(s.attempt, 1);
        assert_eq!(s.progress.as_ref().map(|p| p.bytes_done), Some(5));
        s.apply(&ev(
            6,
            EventKind::Verified {
                vm: vm.clone(),
                destination: "b".into(),
                downtime_ms: None,
            },
        ));
        s.apply(&ev(
            7,
            EventKind::Moved {
                vm: vm.clone(),
                name: "web1".into(),
                destination: "b".into(),
                attempts: 1,
            },
        ));
        assert_eq!(s.phase, Phase::Moved);
        assert!(s.verified);
        assert_eq!(s.destination, Some(HostId::new("b")));
        assert_eq!(s.updated_at, Time(7));
    }

    #[test]
    fn status_ignores_events_about_other_vms() {
        let mut s = VmStatus::new(VmId::new("u1"), Time(0));
        s.apply(&ev(
            1,
            EventKind::Transition {
                vm: VmId::new("u2"),
                from: Phase::Queued,
                to: Phase::Starting,
            },
        ));
        assert_eq!(s.phase, Phase::Queued);
        assert_eq!(s.updated_at, Time(0));
    }

    /// Notes of VMs moved after a `resume` still said "run stopped before it moved": the fold
    /// kept the reason of an earlier stop once the VM was in play again and moved.
    #[test]
    fn a_vm_that_moves_after_being_stopped_keeps_no_reason() {
        let vm = VmId::new("u1");
        let mut s = VmStatus::new(vm.clone(), Time(0));
        s.apply(&ev(
            1,
            EventKind::Cancelled {
                vm: vm.clone(),
                name: "web1".into(),
                reason: vmove_core::Reason::RunStopped,
            },
        ));
        assert_eq!(s.reason, Some(vmove_core::Reason::RunStopped));
        s.apply(&ev(
            2,
            EventKind::Transition {
                vm: vm.clone(),
                from: Phase::Cancelled,
                to: Phase::Queued,
            },
        ));
        assert_eq!(s.reason, None);
        s.apply(&ev(
            3,
            EventKind::Cancelled {
                vm: vm.clone(),
                name: "web1".into(),
                reason: vmove_core::Reason::RunStopped,
            },
        ));
        s.apply(&ev(
            4,
            EventKind::Moved {
                vm: vm.clone(),
                name: "web1".into(),
                destination: "b".into(),
                attempts: 1,
            },
        ));
        assert_eq!(s.phase, Phase::Moved);
        assert_eq!(s.reason, None, "a moved VM has no reason for not moving");
    }
}
