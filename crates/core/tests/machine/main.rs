//! Every transition of the move state machine, legal and illegal, one table.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use vmove_core::machine::{Assessment, Ctx, Illegal, Migrating, MoveState, VmEvent, VmMove, step};
use vmove_core::*;

fn req() -> MigrationRequest {
    MigrationRequest {
        vm: VmId::new("id-1"),
        vm_name: "vm1".into(),
        source: HostId::new("a"),
        destination: HostId::new("b"),
        mode: MigrationMode::Live,
        layout: PathLayout::default(),
        attempt: 1,
        run_id: "r".into(),
    }
}

fn h() -> MigrationHandle {
    MigrationHandle("job".into())
}

fn info(power: PowerState) -> VmInfo {
    VmInfo {
        id: VmId::new("id-1"),
        name: "vm1".into(),
        power,
        health: Health::Ok,
        activity: Activity::Idle,
        memory_bytes: 1 << 30,
        disk_bytes: 1 << 30,
        dirty_rate: None,
    }
}

fn leftover() -> Leftover {
    Leftover {
        host: HostId::new("a"),
        kind: LeftoverKind::DiskImage,
        what: "/x.qcow2".into(),
    }
}

fn state(p: Phase) -> MoveState {
    match p {
        Phase::Queued => MoveState::Queued,
        Phase::Starting => MoveState::Starting { req: req().into() },
        Phase::Confirming => MoveState::Confirming {
            req: req().into(),
            handle: h(),
            checks: 0,
        },
        Phase::Migrating => MoveState::Migrating(Migrating {
            req: req().into(),
            handle: h(),
            since: Time::ZERO,
            last_progress_at: Time::ZERO,
            best_done: 0,
            best_remaining: u64::MAX,
            next_poll: Time(2000),
            polling: false,
            deadline: Time(1_000_000),
            escalations: 0,
            converging: false,
            post_copy: false,
            post_copy_refused_at: None,
            aid_asked_by: None,
            refire: None,
            aid_answers: Default::default(),
        }),
        Phase::Aborting => MoveState::Aborting {
            req: req().into(),
            handle: h(),
            why: Failure::new(ErrorClass::Transient, "stalled"),
            rounds: 1,
        },
        Phase::Locating => MoveState::Locating {
            req: req().into(),
            why: Failure::new(ErrorClass::Transient, "x"),
            tries: 0,
            abort_rounds: 0,
            abort_wait: None,
        },
        Phase::Discarding => MoveState::Discarding {
            req: req().into(),
            why: Failure::new(ErrorClass::Transient, "x"),
            todo: None,
            tally: Default::default(),
        },
        Phase::BackingOff => MoveState::BackingOff { until: Time(5000) },
        Phase::Verifying => MoveState::Verifying {
            req: req().into(),
            tries: 0,
        },
        Phase::CleaningUp => MoveState::CleaningUp {
            req: req().into(),
            todo: None,
        },
        Phase::Moved => MoveState::Moved {
            destination: HostId::new("b"),
        },
        Phase::Unmigratable => MoveState::Unmigratable {
            reason: Reason::NotFound,
        },
        Phase::Cancelled => MoveState::Cancelled {
            reason: Reason::RunStopped,
        },
    }
}

fn vm_in(p: Phase) -> VmMove {
    let mut v = VmMove::new(
        VmId::new("id-1"),
        "vm1".into(),
        HostId::new("a"),
        vec![HostId::new("b")],
        1 << 30,
        1 << 30,
        MigrationMode::Live,
    );
    v.state = state(p);
    if p != Phase::Queued {
        v.attempts = 1;
    }
    v
}

fn go(
    p: Phase,
    ev: VmEvent,
    now: Time,
) -> (Result<Phase, Phase>, VmMove, Vec<Command>, Vec<EventKind>) {
    let settings = Settings {
        backoff_jitter: 0.0,
        ..Settings::default()
    };
    let mut v = vm_in(p);
    let ctx = Ctx {
        now,
        settings: &settings,
        stopping: None,
        abort_running: false,
    };
    match step(&mut v, ctx, ev) {
        Ok(out) => (Ok(v.phase()), v, out.commands, out.events),
        Err(e) => {
            assert_eq!(e.phase, p);
            assert_eq!(
                v.phase(),
                p,
                "an illegal transition must leave the state unchanged"
            );
            (Err(v.phase()), v, vec![], vec![])
        }
    }
}

/// One VM driven through a sequence of events at a time the test moves (no stop pending).
struct Driven {
    v: VmMove,
    settings: Settings,
    now: Time,
}

impl Driven {
    /// A VM in phase `p` (its state as [`state`] builds it), at `now`, with no backoff jitter.
    fn at(p: Phase, now: Time) -> Self {
        Driven {
            v: vm_in(p),
            settings: Settings {
                backoff_jitter: 0.0,
                ..Settings::default()
            },
            now,
        }
    }

    /// A VM whose migration (attempt 1, a -> b) is being aborted: round 1 asked.
    fn aborting() -> Self {
        Driven::at(Phase::Aborting, Time(1000))
    }

    /// Steps the machine; the commands and events it produced.
    fn try_feed(&mut self, ev: VmEvent) -> Result<(Vec<Command>, Vec<EventKind>), Illegal> {
        let ctx = Ctx {
            now: self.now,
            settings: &self.settings,
            stopping: None,
            abort_running: false,
        };
        let out = step(&mut self.v, ctx, ev)?;
        Ok((out.commands, out.events))
    }

    /// [`Driven::try_feed`] with an event that must be legal.
    fn feed(&mut self, ev: VmEvent) -> (Vec<Command>, Vec<EventKind>) {
        self.try_feed(ev).unwrap()
    }

    /// A look at the hosts answered (the VM on its source, the job still running or not).
    /// Returns whether an abort was asked at this look.
    fn look(&mut self, job_running: bool) -> bool {
        let (c, _) = self.feed(loc(Some(info(PowerState::Running)), None, job_running));
        c.iter()
            .any(|c| matches!(c, Command::AbortMigration { .. }))
    }

    /// A look at the hosts that failed.
    fn failed_look(&mut self) {
        self.feed(VmEvent::Located(Err(Failure::new(
            ErrorClass::Transient,
            "host a does not answer",
        ))));
    }

    /// The timer of the next look, if one is set (it asks for the look).
    fn next_look(&mut self) {
        if let Some(t) = self.v.timer {
            self.now = self.now.max(t);
            let (c, _) = self.feed(VmEvent::Timer);
            assert!(
                matches!(c[..], [Command::Locate { .. }]),
                "the timer looks at the hosts: {c:?}"
            );
        }
    }
}

fn ok(p: Phase, ev: VmEvent) -> (Phase, Vec<Command>) {
    let (r, _, c, _) = go(p, ev, Time(1000));
    (
        r.unwrap_or_else(|p| panic!("unexpectedly illegal in {p}")),
        c,
    )
}

fn illegal(p: Phase, ev: VmEvent) {
    let (r, ..) = go(p, ev.clone(), Time(1000));
    assert!(r.is_err(), "{p} + {} should be illegal", ev.name());
}

fn start() -> VmEvent {
    VmEvent::Start {
        destination: HostId::new("b"),
        mode: MigrationMode::Live,
        layout: PathLayout::default(),
        run_id: "r".into(),
    }
}

fn loc(src: Option<VmInfo>, dst: Option<VmInfo>, job: bool) -> VmEvent {
    VmEvent::Located(Ok(Box::new(Location {
        on_source: src,
        on_destination: dst,
        running_migration: job.then(h),
    })))
}

/// The leftover call `c` is, if it is exactly one: a listing or a removal, and its context.
fn leftover_call(c: &[Command]) -> Option<(&'static str, LeftoverContext)> {
    match c {
        [Command::ListLeftovers { context, .. }] => Some(("list", *context)),
        [Command::RemoveLeftover { context, .. }] => Some(("remove", *context)),
        _ => None,
    }
}

fn stop(abort: bool) -> VmEvent {
    VmEvent::Stop {
        abort_running: abort,
        reason: Reason::RunStopped,
    }
}

mod phases;
mod stops_and_aborts;
