//! `CleaningUp`: removing, one by one, what a proven move left on the source. A leftover that
//! cannot be removed is kept with a warning; the move is done either way.

use super::types::{Ctx, MoveState, Next, Output, VmMove};
use crate::event::EventKind;
use crate::io::LeftoverContext;
use crate::model::{Failure, Leftover, MigrationRequest};
use std::collections::VecDeque;
use std::sync::Arc;

/// Removes the next leftover, or, with none left, the move is done.
fn next(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    req: Arc<MigrationRequest>,
    todo: VecDeque<Leftover>,
    mut out: Output,
) -> Next {
    let state = if vm.next_leftover(&req, LeftoverContext::AfterSuccess, &todo, &mut out) {
        MoveState::CleaningUp {
            req,
            todo: Some(todo),
        }
    } else {
        let destination = req.destination.clone();
        vm.finish(ctx.now, MoveState::Moved { destination }, &mut out)
    };
    (state, out)
}

/// CleaningUp, the leftovers listed (or not: nothing is removed, said as kept).
pub(super) fn listed(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    req: Arc<MigrationRequest>,
    res: Result<Vec<Leftover>, Failure>,
) -> Next {
    let mut out = Output::default();
    let todo: VecDeque<Leftover> = match res {
        Ok(v) => v.into_iter().collect(),
        Err(e) => {
            out.events.push(EventKind::LeftoverKept {
                vm: vm.id.clone(),
                host: req.source.clone(),
                what: "(could not list leftovers)".into(),
                error: e.message,
            });
            VecDeque::new()
        }
    };
    next(vm, ctx, req, todo, out)
}

/// CleaningUp, the first leftover's removal answered.
pub(super) fn removed(
    vm: &mut VmMove,
    ctx: Ctx<'_>,
    req: Arc<MigrationRequest>,
    mut todo: VecDeque<Leftover>,
    l: Leftover,
    res: Result<(), Failure>,
) -> Next {
    let mut out = Output::default();
    todo.pop_front();
    vm.report_removal(l, res, &mut out);
    next(vm, ctx, req, todo, out)
}
