//! One VM's move stopped by an operator from another terminal (`vmove skip RUN VM`,
//! `vmove abort RUN VM`): [`crate::Input::StopVm`] driven through the machine's stop paths.

use super::Core;
use crate::event::{EventKind, Phase, Reason};
use crate::machine::{MoveState, VmEvent};
use crate::model::VmId;
use crate::time::Time;

impl Core {
    /// One VM's move stopped by an operator (`Input::StopVm`). A VM not of this run, or one
    /// already ended, is left alone (a request seen again after a resume); one that started
    /// (without `abort_running`) or already moved is refused, nothing changed.
    pub(super) fn stop_vm(
        &mut self,
        now: Time,
        vm: VmId,
        abort_running: bool,
        by: String,
        at: String,
    ) {
        let Some(&idx) = self.vm_index.get(&vm) else {
            return;
        };
        let phase = self.vms[idx].vm.phase();
        if phase.is_final() || self.vms[idx].vm.stopped.is_some() {
            return;
        }
        let queued = matches!(phase, Phase::Queued | Phase::BackingOff);
        let refused = match phase {
            _ if queued => None,
            Phase::Verifying | Phase::CleaningUp => {
                Some(format!("it has already moved ({phase}): nothing to stop"))
            }
            // See `Migrating::post_copy`: the abort would lose the guest.
            _ if abort_running
                && matches!(&self.vms[idx].vm.state, MoveState::Migrating(m) if m.post_copy) =>
            {
                Some(format!(
                    "it is {}; it is left to end",
                    crate::machine::IN_POST_COPY
                ))
            }
            _ if abort_running => None,
            _ => Some(format!(
                "its move has already started ({phase}): `vmove abort RUN VM` aborts it"
            )),
        };
        self.emit(EventKind::VmStopAsked {
            vm,
            abort_running,
            asked_by: by.clone(),
            asked_at: at.clone(),
            refused: refused.clone(),
        });
        if refused.is_some() {
            return;
        }
        let reason = Reason::Skipped {
            by,
            at,
            aborted: !queued,
        };
        if !queued {
            self.vms[idx].vm.stopped = Some(Box::new(reason.clone()));
        }
        self.step(
            idx,
            now,
            VmEvent::Stop {
                abort_running: !queued,
                reason,
            },
        );
    }
}
