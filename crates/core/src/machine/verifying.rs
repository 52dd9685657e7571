//! `Verifying`: proving the VM arrived (on the destination with every disk, not running on the
//! source). Nothing is touched until the proof comes.

use super::limits::{OBSERVE_RETRIES, VERIFY_RETRIES};
use super::types::{Ctx, MoveState, Next, Output, VmMove};
use crate::event::{AttemptCall, EventKind, Reason};
use crate::io::{Command, LeftoverContext};
use crate::model::{ErrorClass, Failure, MigrationRequest, Verification};
use std::sync::Arc;
use std::time::Duration;

/// The longest wait between verifications that disprove (a VM that just arrived may need a
/// moment to show as running): one second, or `progress_interval` if longer, never more than
/// `recheck_interval`.
const DISPROVED_RECHECK: Duration = Duration::from_secs(1);

impl VmMove {
    /// Asks for the proof (`tries` failed or inconclusive so far).
    pub(super) fn verify(
        &mut self,
        req: Arc<MigrationRequest>,
        tries: u32,
        out: &mut Output,
    ) -> MoveState {
        out.commands.push(Command::Verify {
            request: req.clone(),
        });
        self.timer = None;
        MoveState::Verifying { req, tries }
    }
}

/// Verifying, answered. An answer that disproves counts against [`VERIFY_RETRIES`] (short
/// waits); a host that does not answer is waited for like a Locate ([`OBSERVE_RETRIES`] x
/// `recheck_interval`). Proven: clean up the source (or done, when clean-up is off).
pub(super) fn verified(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    req: Arc<MigrationRequest>,
    tries: u32,
    res: Result<Verification, Failure>,
) -> Next {
    let mut out = Output::default();
    let (now, s) = (ctx.now, ctx.settings);
    let unanswered = matches!(&res, Err(e) if e.class != ErrorClass::Permanent);
    let downtime_ms = res.as_ref().ok().and_then(|v| v.downtime_ms);
    let why_not = match res {
        Ok(v) if v.is_proof() => None,
        Ok(v) => Some(if v.detail.is_empty() {
            "not all of it is on the destination".to_string()
        } else {
            v.detail
        }),
        Err(e) => Some(e.message),
    };
    let limit = if unanswered {
        OBSERVE_RETRIES
    } else {
        VERIFY_RETRIES
    };
    let wait = if unanswered {
        s.recheck_interval
    } else {
        s.recheck_interval
            .min(s.progress_interval.max(DISPROVED_RECHECK))
    };
    let state = match why_not {
        None => {
            vm.verified = true;
            out.events.push(EventKind::Verified {
                vm: vm.id.clone(),
                destination: req.destination.clone(),
                downtime_ms,
            });
            if s.cleanup {
                out.commands.push(Command::ListLeftovers {
                    request: req.clone(),
                    context: LeftoverContext::AfterSuccess,
                });
                vm.timer = None;
                MoveState::CleaningUp { req, todo: None }
            } else {
                let destination = req.destination.clone();
                vm.finish(now, MoveState::Moved { destination }, &mut out)
            }
        }
        Some(msg) if tries + 1 >= limit => {
            vm.last_error = Some(msg.clone());
            let reason = Reason::NotVerified(msg);
            vm.finish(now, MoveState::Unmigratable { reason }, &mut out)
        }
        Some(msg) => {
            if unanswered {
                vm.call_failed(
                    &req,
                    AttemptCall::Verify,
                    &msg,
                    (tries + 1, limit),
                    Some(now + wait),
                    &mut out,
                );
            }
            vm.last_error = Some(msg);
            vm.timer = Some(now + wait);
            MoveState::Verifying {
                req,
                tries: tries + 1,
            }
        }
    };
    (state, out)
}

/// Verifying, timer: ask again.
pub(super) fn timer(vm: &mut VmMove, req: Arc<MigrationRequest>, tries: u32) -> Next {
    let mut out = Output::default();
    let state = vm.verify(req, tries, &mut out);
    (state, out)
}
