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
        Phase::Starting => MoveState::Starting { req: req() },
        Phase::Confirming => MoveState::Confirming {
            req: req(),
            handle: h(),
            checks: 0,
        },
        Phase::Migrating => MoveState::Migrating(Box::new(Migrating {
            req: req(),
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
        })),
        Phase::Aborting => MoveState::Aborting {
            req: req(),
            handle: h(),
            why: Failure::new(ErrorClass::Transient, "stalled"),
            rounds: 1,
        },
        Phase::Locating => MoveState::Locating {
            req: req(),
            why: Failure::new(ErrorClass::Transient, "x"),
            tries: 0,
            abort_rounds: 0,
            abort_wait: None,
        },
        Phase::Discarding => MoveState::Discarding {
            req: req(),
            why: Failure::new(ErrorClass::Transient, "x"),
            todo: None,
            tally: Default::default(),
        },
        Phase::BackingOff => MoveState::BackingOff { until: Time(5000) },
        Phase::Verifying => MoveState::Verifying {
            req: req(),
            tries: 0,
        },
        Phase::CleaningUp => MoveState::CleaningUp {
            req: req(),
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
    VmEvent::Located(Ok(Location {
        on_source: src,
        on_destination: dst,
        running_migration: job.then(h),
    }))
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

#[test]
fn queued_transitions() {
    assert_eq!(ok(Phase::Queued, start()).0, Phase::Starting);
    assert!(matches!(
        ok(Phase::Queued, start()).1[..],
        [Command::StartMigration(_)]
    ));
    assert_eq!(
        ok(
            Phase::Queued,
            VmEvent::Assessed(Assessment::Ready(MigrationMode::Offline))
        )
        .0,
        Phase::Queued
    );
    assert_eq!(
        ok(
            Phase::Queued,
            VmEvent::Assessed(Assessment::AlreadyThere(HostId::new("b")))
        )
        .0,
        Phase::Moved
    );
    assert_eq!(
        ok(
            Phase::Queued,
            VmEvent::Assessed(Assessment::Unmigratable(Reason::NotFound))
        )
        .0,
        Phase::Unmigratable
    );
    assert_eq!(ok(Phase::Queued, stop(false)).0, Phase::Cancelled);
    assert_eq!(ok(Phase::Queued, VmEvent::Timer).0, Phase::Queued);
    for ev in [
        VmEvent::Started(Ok(h())),
        VmEvent::Status(Ok(MigrationStatus::Completed)),
        VmEvent::AbortDone(Ok(())),
        VmEvent::Located(Err(Failure::new(ErrorClass::Transient, "x"))),
        VmEvent::Verified(Err(Failure::new(ErrorClass::Transient, "x"))),
        VmEvent::Leftovers(Ok(vec![])),
        VmEvent::LeftoverRemoved(leftover(), Ok(())),
        VmEvent::Converged(Ok(true)),
    ] {
        illegal(Phase::Queued, ev);
    }
}

#[test]
fn backup_hold_becomes_unmigratable_exactly_at_the_threshold() {
    let settings = Settings::default();
    let mut v = vm_in(Phase::Queued);
    let wait = || {
        VmEvent::Assessed(Assessment::Wait {
            reason: WaitReason::BackingUp { since: Time::ZERO },
            held: true,
        })
    };
    let ctx = |now| Ctx {
        now,
        settings: &settings,
        stopping: None,
        abort_running: false,
    };
    step(&mut v, ctx(Time(0)), wait()).unwrap();
    assert_eq!(v.timer, Some(Time(3_600_000)));
    step(&mut v, ctx(Time(3_599_999)), wait()).unwrap();
    assert_eq!(v.phase(), Phase::Queued);
    step(&mut v, ctx(Time(3_600_000)), VmEvent::Timer).unwrap();
    assert_eq!(v.phase(), Phase::Unmigratable);
}

#[test]
fn starting_transitions() {
    let (p, c) = ok(Phase::Starting, VmEvent::Started(Ok(h())));
    assert_eq!(p, Phase::Confirming);
    assert!(matches!(c[..], [Command::PollMigration { .. }]));
    let (p, c) = ok(
        Phase::Starting,
        VmEvent::Started(Err(Failure::new(ErrorClass::Transient, "busy"))),
    );
    assert_eq!(p, Phase::Locating);
    assert!(
        matches!(c[..], [Command::Locate { .. }]),
        "a failed start is looked at before anything else"
    );
    assert_eq!(ok(Phase::Starting, stop(true)).0, Phase::Starting);
    illegal(Phase::Starting, start());
    illegal(
        Phase::Starting,
        VmEvent::Verified(Ok(Verification {
            on_destination: true,
            disks_present: true,
            stopped_on_source: true,
            detail: String::new(),
        })),
    );
    illegal(Phase::Starting, VmEvent::Timer);
}

#[test]
fn confirming_transitions() {
    assert_eq!(
        ok(
            Phase::Confirming,
            VmEvent::Status(Ok(MigrationStatus::Running(Progress::default())))
        )
        .0,
        Phase::Migrating
    );
    assert_eq!(
        ok(
            Phase::Confirming,
            VmEvent::Status(Ok(MigrationStatus::Completed))
        )
        .0,
        Phase::Verifying
    );
    assert_eq!(
        ok(
            Phase::Confirming,
            VmEvent::Status(Ok(MigrationStatus::Pending))
        )
        .0,
        Phase::Confirming
    );
    assert_eq!(
        ok(
            Phase::Confirming,
            VmEvent::Status(Ok(MigrationStatus::Failed(Failure::new(
                ErrorClass::Transient,
                "x"
            ))))
        )
        .0,
        Phase::Locating
    );
    assert_eq!(ok(Phase::Confirming, VmEvent::Timer).0, Phase::Confirming);
    assert_eq!(ok(Phase::Confirming, stop(true)).0, Phase::Aborting);
    assert_eq!(ok(Phase::Confirming, stop(false)).0, Phase::Confirming);
    illegal(Phase::Confirming, start());
    illegal(Phase::Confirming, VmEvent::Leftovers(Ok(vec![])));
}

#[test]
fn migrating_transitions() {
    assert_eq!(
        ok(
            Phase::Migrating,
            VmEvent::Status(Ok(MigrationStatus::Completed))
        )
        .0,
        Phase::Verifying
    );
    assert_eq!(
        ok(
            Phase::Migrating,
            VmEvent::Status(Ok(MigrationStatus::Running(Progress {
                bytes_done: 5,
                ..Default::default()
            })))
        )
        .0,
        Phase::Migrating
    );
    assert_eq!(
        ok(
            Phase::Migrating,
            VmEvent::Status(Ok(MigrationStatus::Failed(Failure::new(
                ErrorClass::Indeterminate,
                "x"
            ))))
        )
        .0,
        Phase::Locating
    );
    assert_eq!(ok(Phase::Migrating, stop(true)).0, Phase::Aborting);
    assert_eq!(ok(Phase::Migrating, stop(false)).0, Phase::Migrating);
    // Timer before any deadline: a poll.
    let (p, c, ..) = {
        let (r, v, c, e) = go(Phase::Migrating, VmEvent::Timer, Time(2000));
        (r.unwrap(), c, v, e)
    };
    assert_eq!(p, Phase::Migrating);
    assert!(matches!(c[..], [Command::PollMigration { .. }]));
    // Timer past the stall timeout (default action abort).
    let (r, _, c, e) = go(Phase::Migrating, VmEvent::Timer, Time(150_000));
    assert_eq!(r.unwrap(), Phase::Aborting);
    assert!(matches!(c[..], [Command::AbortMigration { .. }]));
    assert!(
        e.iter()
            .any(|e| matches!(e, EventKind::WatchdogFired { which, .. } if which == "stall"))
    );
    illegal(Phase::Migrating, start());
    illegal(Phase::Migrating, VmEvent::Started(Ok(h())));
}

#[test]
fn escalation_applies_convergence_aids_before_aborting() {
    let settings = Settings {
        stall_action: WatchdogAction::Escalate,
        ..Settings::default()
    };
    let mut v = vm_in(Phase::Migrating);
    let ctx = |now| Ctx {
        now,
        settings: &settings,
        stopping: None,
        abort_running: false,
    };
    let out = step(&mut v, ctx(Time(150_000)), VmEvent::Timer).unwrap();
    assert!(out.commands.iter().any(|c| matches!(
        c,
        Command::Converge {
            aid: ConvergenceAid::AutoConverge,
            ..
        }
    )));
    step(&mut v, ctx(Time(150_100)), VmEvent::Converged(Ok(true))).unwrap();
    let out = step(&mut v, ctx(Time(300_100)), VmEvent::Timer).unwrap();
    assert!(out.commands.iter().any(|c| matches!(
        c,
        Command::Converge {
            aid: ConvergenceAid::PostCopy,
            ..
        }
    )));
    step(&mut v, ctx(Time(300_200)), VmEvent::Converged(Ok(true))).unwrap();
    let out = step(&mut v, ctx(Time(450_200)), VmEvent::Timer).unwrap();
    assert!(
        out.commands
            .iter()
            .any(|c| matches!(c, Command::AbortMigration { .. }))
    );
    assert_eq!(v.phase(), Phase::Aborting);
}

#[test]
fn aborting_transitions() {
    assert_eq!(
        ok(Phase::Aborting, VmEvent::AbortDone(Ok(()))).0,
        Phase::Locating
    );
    assert_eq!(
        ok(
            Phase::Aborting,
            VmEvent::AbortDone(Err(Failure::new(ErrorClass::Transient, "x")))
        )
        .0,
        Phase::Locating
    );
    assert_eq!(ok(Phase::Aborting, VmEvent::Timer).0, Phase::Locating);
    assert_eq!(
        ok(
            Phase::Aborting,
            VmEvent::Status(Ok(MigrationStatus::Completed))
        )
        .0,
        Phase::Aborting
    );
    illegal(Phase::Aborting, start());
    illegal(Phase::Aborting, VmEvent::Leftovers(Ok(vec![])));
}

#[test]
fn locating_decides_from_what_the_hosts_show() {
    // On the source only: discard what the attempt left on the destination.
    let (p, c) = ok(
        Phase::Locating,
        loc(Some(info(PowerState::Running)), None, false),
    );
    assert_eq!(
        (p, leftover_call(&c)),
        (
            Phase::Discarding,
            Some(("list", LeftoverContext::AfterFailedAttempt))
        )
    );
    // Arrived: verify.
    assert_eq!(
        ok(
            Phase::Locating,
            loc(None, Some(info(PowerState::Running)), false)
        )
        .0,
        Phase::Verifying
    );
    // Running on both: hands off.
    let (r, v, c, _) = go(
        Phase::Locating,
        loc(
            Some(info(PowerState::Running)),
            Some(info(PowerState::Running)),
            false,
        ),
        Time(1),
    );
    assert_eq!(r.unwrap(), Phase::Unmigratable);
    assert!(c.is_empty(), "nothing may be touched when both copies run");
    assert!(matches!(
        v.state,
        MoveState::Unmigratable {
            reason: Reason::RunningOnBoth
        }
    ));
    // Neither: left for a person.
    assert_eq!(
        ok(Phase::Locating, loc(None, None, false)).0,
        Phase::Unmigratable
    );
    // A job still runs after a transient failure: abort it.
    assert_eq!(
        ok(
            Phase::Locating,
            loc(Some(info(PowerState::Running)), None, true)
        )
        .0,
        Phase::Aborting
    );
    // Locate failed: retry later.
    assert_eq!(
        ok(
            Phase::Locating,
            VmEvent::Located(Err(Failure::new(ErrorClass::Transient, "x")))
        )
        .0,
        Phase::Locating
    );
    assert_eq!(ok(Phase::Locating, VmEvent::Timer).0, Phase::Locating);
    illegal(Phase::Locating, start());
    illegal(
        Phase::Locating,
        VmEvent::Verified(Ok(Verification {
            on_destination: true,
            disks_present: true,
            stopped_on_source: true,
            detail: String::new(),
        })),
    );
}

#[test]
fn locating_after_an_indeterminate_start_readopts_a_running_job() {
    let mut d = Driven::at(Phase::Locating, Time(1));
    d.v.state = MoveState::Locating {
        req: req(),
        why: Failure::new(ErrorClass::Indeterminate, "lost"),
        tries: 0,
        abort_rounds: 0,
        abort_wait: None,
    };
    d.feed(loc(Some(info(PowerState::Running)), None, true));
    assert_eq!(d.v.phase(), Phase::Migrating);
}

#[test]
fn discarding_then_retry_policy() {
    let mut d = Driven::at(Phase::Discarding, Time(1000));
    let (c, _) = d.feed(VmEvent::Leftovers(Ok(vec![leftover()])));
    assert_eq!(
        leftover_call(&c),
        Some(("remove", LeftoverContext::AfterFailedAttempt))
    );
    d.feed(VmEvent::LeftoverRemoved(leftover(), Ok(())));
    assert_eq!(d.v.phase(), Phase::BackingOff);
    assert_eq!(d.v.timer, Some(Time(21_000)));
    // A removal answer for something else is illegal.
    let mut d = Driven::at(Phase::Discarding, Time(1000));
    d.v.state = MoveState::Discarding {
        req: req(),
        why: Failure::new(ErrorClass::Transient, "x"),
        todo: Some(VecDeque::from([leftover()])),
        tally: Default::default(),
    };
    let other = Leftover {
        what: "/other".into(),
        ..leftover()
    };
    assert!(d.try_feed(VmEvent::LeftoverRemoved(other, Ok(()))).is_err());
    illegal(Phase::Discarding, start());
}

#[test]
fn backing_off_transitions() {
    assert_eq!(
        go(Phase::BackingOff, VmEvent::Timer, Time(5000)).0.unwrap(),
        Phase::Queued
    );
    assert_eq!(
        go(Phase::BackingOff, VmEvent::Timer, Time(4000)).0.unwrap(),
        Phase::BackingOff
    );
    assert_eq!(ok(Phase::BackingOff, stop(false)).0, Phase::Cancelled);
    illegal(Phase::BackingOff, start());
    illegal(
        Phase::BackingOff,
        VmEvent::Located(Err(Failure::new(ErrorClass::Transient, "x"))),
    );
}

#[test]
fn verifying_transitions() {
    let proof = Verification {
        on_destination: true,
        disks_present: true,
        stopped_on_source: true,
        detail: String::new(),
    };
    let (p, c) = ok(Phase::Verifying, VmEvent::Verified(Ok(proof.clone())));
    assert_eq!(
        (p, leftover_call(&c)),
        (
            Phase::CleaningUp,
            Some(("list", LeftoverContext::AfterSuccess))
        )
    );
    let partial = Verification {
        disks_present: false,
        ..proof
    };
    assert_eq!(
        ok(Phase::Verifying, VmEvent::Verified(Ok(partial))).0,
        Phase::Verifying
    );
    assert_eq!(ok(Phase::Verifying, VmEvent::Timer).0, Phase::Verifying);
    assert_eq!(
        ok(Phase::Verifying, stop(true)).0,
        Phase::Verifying,
        "a stop never interrupts proving a moved VM"
    );
    illegal(Phase::Verifying, start());
    illegal(Phase::Verifying, VmEvent::Leftovers(Ok(vec![])));
}

#[test]
fn verification_that_never_proves_is_unmigratable_and_touches_nothing() {
    let mut d = Driven::at(Phase::Verifying, Time(1));
    let bad = Verification {
        on_destination: true,
        disks_present: false,
        stopped_on_source: true,
        detail: "disk missing".into(),
    };
    for _ in 0..vmove_core::machine::VERIFY_RETRIES {
        let (c, _) = d.feed(VmEvent::Verified(Ok(bad.clone())));
        assert!(c.iter().all(|c| !matches!(
            c,
            Command::RemoveLeftover { .. } | Command::ListLeftovers { .. }
        )));
        if d.v.phase() == Phase::Verifying {
            d.feed(VmEvent::Timer);
        }
    }
    assert!(matches!(
        d.v.state,
        MoveState::Unmigratable {
            reason: Reason::NotVerified(_)
        }
    ));
}

#[test]
fn cleaning_up_transitions() {
    let (p, c) = ok(Phase::CleaningUp, VmEvent::Leftovers(Ok(vec![leftover()])));
    assert_eq!(
        (p, leftover_call(&c)),
        (
            Phase::CleaningUp,
            Some(("remove", LeftoverContext::AfterSuccess))
        )
    );
    assert_eq!(
        ok(Phase::CleaningUp, VmEvent::Leftovers(Ok(vec![]))).0,
        Phase::Moved
    );
    assert_eq!(
        ok(
            Phase::CleaningUp,
            VmEvent::Leftovers(Err(Failure::new(ErrorClass::Transient, "x")))
        )
        .0,
        Phase::Moved
    );
    illegal(
        Phase::CleaningUp,
        VmEvent::LeftoverRemoved(leftover(), Ok(())),
    );
    illegal(Phase::CleaningUp, start());
}

#[test]
fn final_states_ignore_stale_answers_but_refuse_a_start() {
    for p in [Phase::Moved, Phase::Unmigratable, Phase::Cancelled] {
        assert_eq!(ok(p, VmEvent::Status(Ok(MigrationStatus::Completed))).0, p);
        assert_eq!(ok(p, VmEvent::Timer).0, p);
        assert_eq!(ok(p, stop(true)).0, p);
        illegal(p, start());
    }
}

#[test]
fn a_start_during_a_stop_with_abort_is_aborted_as_soon_as_it_is_accepted() {
    let settings = Settings::default();
    let mut v = vm_in(Phase::Starting);
    let reason = Reason::RunStopped;
    let ctx = Ctx {
        now: Time(1),
        settings: &settings,
        stopping: Some(&reason),
        abort_running: true,
    };
    let out = step(&mut v, ctx, VmEvent::Started(Ok(h()))).unwrap();
    assert_eq!(v.phase(), Phase::Aborting);
    assert!(
        out.commands
            .iter()
            .any(|c| matches!(c, Command::AbortMigration { .. }))
    );
}

#[test]
fn verification_waits_out_a_host_that_does_not_answer() {
    let mut d = Driven::at(Phase::Verifying, Time(1));
    let down = Failure::new(ErrorClass::Transient, "host does not answer");
    for _ in 0..vmove_core::machine::VERIFY_RETRIES * 2 {
        d.feed(VmEvent::Verified(Err(down.clone())));
        assert_eq!(
            d.v.phase(),
            Phase::Verifying,
            "a passing outage must not end the move"
        );
        assert_eq!(d.v.timer, Some(Time(1) + d.settings.recheck_interval));
        d.feed(VmEvent::Timer);
    }
    let proof = Verification {
        on_destination: true,
        disks_present: true,
        stopped_on_source: true,
        detail: String::new(),
    };
    d.feed(VmEvent::Verified(Ok(proof)));
    assert_eq!(d.v.phase(), Phase::CleaningUp);
}

/// The lab (lab/stall-daemon.sh): a migration the driver reported failed was said only once
/// both hosts had been looked at, 36 s later while the destination's libvirtd was frozen; the
/// plain output was silent meanwhile. The failure is now an event at once, before the look.
#[test]
fn a_migration_reported_failed_is_said_at_once_before_the_hosts_are_looked_at() {
    for p in [Phase::Confirming, Phase::Migrating] {
        let (r, _, commands, events) = go(
            p,
            VmEvent::Status(Ok(MigrationStatus::Failed(Failure::new(
                ErrorClass::Indeterminate,
                "client socket is closed",
            )))),
            Time(1000),
        );
        assert_eq!(r, Ok(Phase::Locating), "from {p}");
        assert!(
            events.iter().any(|e| matches!(e,
                EventKind::MigrationFailed { error, .. } if error == "client socket is closed")),
            "from {p}: no MigrationFailed in {events:?}"
        );
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, EventKind::AttemptFailed { .. })),
            "from {p}: AttemptFailed before the look: {events:?}"
        );
        assert!(
            commands.iter().any(|c| matches!(c, Command::Locate { .. })),
            "from {p}: no locate in {commands:?}"
        );
    }
}

/// Regression guard (issue 1 of the engine's loose ends): after an abort that definitely failed
/// (the driver said it could not abort), the engine still gave the job `ABORT_PATIENCE` looks to
/// end as if the abort had been accepted, asking again only ~50 s later. A refused abort has
/// nothing to wait for: the first look that finds the job running asks again at once.
#[test]
fn a_definitely_refused_abort_is_asked_again_at_the_first_look_that_finds_the_job_running() {
    for class in [ErrorClass::Permanent, ErrorClass::DestinationRefused] {
        let mut d = Driven::aborting();
        let (c, ev) = d.feed(VmEvent::AbortDone(Err(Failure::new(
            class,
            "cannot abort the migration: host a refused",
        ))));
        assert!(
            matches!(c[..], [Command::Locate { .. }]),
            "{class:?}: the hosts are looked at at once: {c:?}"
        );
        assert!(
            ev.iter()
                .any(|e| matches!(e, EventKind::CallFailed { call, .. } if call == "abort")),
            "{class:?}: the failed abort is said: {ev:?}"
        );
        let (c, ev) = d.feed(loc(Some(info(PowerState::Running)), None, true));
        assert!(
            c.iter()
                .any(|c| matches!(c, Command::AbortMigration { .. })),
            "{class:?}: the job still runs after a refused abort: asked again at once, not waited for: {c:?} {ev:?}"
        );
        assert_eq!(d.v.phase(), Phase::Aborting);
        assert!(
            ev.iter().any(|e| matches!(
                e,
                EventKind::AbortWaiting {
                    round: 2,
                    look: 0,
                    ..
                }
            )),
            "{class:?}: round 2 is said: {ev:?}"
        );
    }
    // A refused abort whose job is gone: the attempt's failure goes on as usual (clean-up of
    // the destination), nothing waited for.
    let mut d = Driven::aborting();
    d.feed(VmEvent::AbortDone(Err(Failure::new(
        ErrorClass::Transient,
        "no migration job to abort",
    ))));
    let (c, _) = d.feed(loc(Some(info(PowerState::Running)), None, false));
    assert_eq!(
        (d.v.phase(), leftover_call(&c)),
        (
            Phase::Discarding,
            Some(("list", LeftoverContext::AfterFailedAttempt))
        )
    );
}

/// An abort refused for a passing reason (a transient error: the host busy, a lock held) is
/// asked again one look later, not at once: three passing refusals in a row must not leave a
/// running migration for a person within seconds.
#[test]
fn an_abort_refused_for_a_passing_reason_is_asked_again_one_look_later() {
    let mut d = Driven::aborting();
    let (c, _) = d.feed(VmEvent::AbortDone(Err(Failure::new(
        ErrorClass::Transient,
        "cannot abort the migration: timed out acquiring the state change lock",
    ))));
    assert!(
        matches!(c[..], [Command::Locate { .. }]),
        "the hosts are looked at at once: {c:?}"
    );
    let (c, ev) = d.feed(loc(Some(info(PowerState::Running)), None, true));
    assert!(
        !c.iter()
            .any(|c| matches!(c, Command::AbortMigration { .. })),
        "not asked again at the first look: {c:?}"
    );
    assert_eq!(d.v.phase(), Phase::Locating);
    assert!(
        ev.iter().any(|e| matches!(
            e,
            EventKind::AbortWaiting {
                round: 1,
                look: 1,
                looks: vmove_core::machine::REFUSED_ABORT_PATIENCE,
                ..
            }
        )),
        "the wait is said, with its own patience: {ev:?}"
    );
    let (c, _) = d.feed(VmEvent::Timer);
    assert!(matches!(c[..], [Command::Locate { .. }]), "{c:?}");
    let (c, ev) = d.feed(loc(Some(info(PowerState::Running)), None, true));
    assert!(
        c.iter()
            .any(|c| matches!(c, Command::AbortMigration { .. })),
        "asked again at the second look: {c:?} {ev:?}"
    );
    assert_eq!(d.v.phase(), Phase::Aborting);
}

/// The other side of the rule above: an abort that was accepted, or whose answer is unknown (an
/// indeterminate error, or no answer at all), may still take effect, so a job found running is
/// given `ABORT_PATIENCE` looks to end before the abort is asked again.
#[test]
fn an_accepted_or_unanswered_abort_is_given_its_patience_before_it_is_asked_again() {
    let answers: [(&str, Option<VmEvent>); 3] = [
        ("accepted", Some(VmEvent::AbortDone(Ok(())))),
        (
            "indeterminate",
            Some(VmEvent::AbortDone(Err(Failure::new(
                ErrorClass::Indeterminate,
                "the abort call did not answer within 2m",
            )))),
        ),
        ("unanswered", None),
    ];
    for (what, answer) in answers {
        let mut d = Driven::aborting();
        match answer {
            Some(ev) => {
                d.feed(ev);
            }
            // The Aborting timer: the abort call never answered.
            None => {
                d.feed(VmEvent::Timer);
            }
        }
        assert_eq!(d.v.phase(), Phase::Locating, "{what}");
        let mut asked_at = None;
        for look in 1..=vmove_core::machine::ABORT_PATIENCE {
            if d.look(true) {
                asked_at = Some(look);
                break;
            }
            d.next_look();
        }
        assert_eq!(
            asked_at,
            Some(vmove_core::machine::ABORT_PATIENCE),
            "{what}: asked again only at the last look of its patience"
        );
    }
}

/// Regression guard (issue 2 of the engine's loose ends): failed locates and the looks spent
/// waiting for an aborted job to end shared one counter (`tries`), so three failed locates
/// after an accepted abort left it three looks of patience instead of six, and the looks spent
/// waiting were taken from the budget of failed locates. Each has its own count now.
#[test]
fn failed_locates_and_looks_waiting_for_an_aborted_job_are_counted_apart() {
    let patience = vmove_core::machine::ABORT_PATIENCE;
    let observe = vmove_core::machine::OBSERVE_RETRIES;
    // Failed locates do not eat the abort's patience.
    let mut d = Driven::aborting();
    d.feed(VmEvent::AbortDone(Ok(())));
    for _ in 0..3 {
        d.failed_look();
        d.next_look();
    }
    let mut running_looks = 0;
    loop {
        running_looks += 1;
        if d.look(true) {
            break;
        }
        assert!(running_looks < 20, "never asked again");
        d.next_look();
    }
    assert_eq!(
        running_looks, patience,
        "after 3 failed locates, the accepted abort still gets its {patience} looks"
    );
    // Looks that found the job running do not eat the budget of failed locates.
    let mut d = Driven::aborting();
    d.feed(VmEvent::AbortDone(Ok(())));
    for _ in 1..patience {
        assert!(!d.look(true), "within its patience");
        d.next_look();
    }
    for n in 1..observe {
        d.failed_look();
        assert_eq!(
            d.v.phase(),
            Phase::Locating,
            "failed locate {n} of {observe} after {} looks that found the job: still looking",
            patience - 1
        );
        d.next_look();
    }
    d.failed_look();
    assert!(
        matches!(
            d.v.state,
            MoveState::Unmigratable {
                reason: Reason::NotLocated(_)
            }
        ),
        "{:?}",
        d.v.state
    );
}
