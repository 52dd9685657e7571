//! One test per phase: every event it accepts, and the illegal ones.

use super::*;

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
            downtime_ms: None,
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

/// Settings whose stall watchdog tries the convergence aids before it aborts.
fn escalating() -> Settings {
    Settings {
        stall_action: WatchdogAction::Escalate,
        ..Settings::default()
    }
}

/// A step's context at `now` under `settings`, no stop asked.
fn running_at(settings: &Settings, now: Time) -> Ctx<'_> {
    Ctx {
        now,
        settings,
        stopping: None,
        abort_running: false,
    }
}

/// Auto-converge first, then the allowed downtime raised (until the host says it is at its
/// cap), then post-copy; once post-copy is applied the guest runs on the destination and the
/// move cannot be undone (QEMU's post-copy docs; a post-copy migration
/// cannot be aborted by `virsh domjobabort`: libvirt's tests, tp-libvirt
/// `abort_migration_with_wrong_api_flag`): the watchdogs fire no more and it is watched to its
/// end. Before this, the next firing aborted it (an abort that loses the guest, or that the
/// hypervisor refuses), and in the simulator the move began again from nothing.
#[test]
fn escalation_applies_convergence_aids_and_never_aborts_after_post_copy() {
    let settings = escalating();
    let mut v = vm_in(Phase::Migrating);
    let ctx = |now| running_at(&settings, now);
    let (_, out, at) = post_copy_asked(&settings, &mut v);
    assert!(asks_post_copy(&out), "{:?}", out.commands);
    step(&mut v, ctx(Time(at.0 + 100)), VmEvent::Converged(Ok(true))).unwrap();
    for t in [at.0 + 150_100, at.0 + 300_200, 3_600_000] {
        // The last poll answered: the next firing asks again.
        step(
            &mut v,
            ctx(Time(t - 1)),
            VmEvent::Status(Ok(MigrationStatus::Running(Default::default()))),
        )
        .unwrap();
        let out = step(&mut v, ctx(Time(t)), VmEvent::Timer).unwrap();
        assert!(!aborts(&out), "aborted at {t} ms");
        assert!(
            out.commands
                .iter()
                .any(|c| matches!(c, Command::PollMigration { .. })),
            "still watched at {t} ms"
        );
        assert_eq!(v.phase(), Phase::Migrating);
    }
    step(
        &mut v,
        ctx(Time(3_600_100)),
        VmEvent::Status(Ok(MigrationStatus::Completed)),
    )
    .unwrap();
    assert_eq!(v.phase(), Phase::Verifying);
}

/// Drives a running migration under `settings` from `from` to `until`: each timer firing at
/// its time, each poll answered with `bytes_done` growing by 1 MiB (so the stall watchdog, on
/// its own, never fires), each convergence aid answered `applied`. Returns every command and
/// how many times the timer fired.
fn watch_until(
    v: &mut VmMove,
    settings: &Settings,
    until: Time,
    applied: bool,
) -> (Vec<Command>, u64) {
    let mut asked = Vec::new();
    let mut firings = 0u64;
    let mut done = 0u64;
    // `vm_in` sets the state alone: its first poll is due at 2 s.
    v.timer = v.timer.or(Some(Time(2_000)));
    while let Some(t) = v.timer.filter(|&t| t <= until) {
        firings += 1;
        let out = step(v, running_at(settings, t), VmEvent::Timer).unwrap();
        for c in out.commands {
            let answer = match &c {
                Command::PollMigration { .. } => {
                    done += 1 << 20;
                    Some(VmEvent::Status(Ok(MigrationStatus::Running(Progress {
                        bytes_done: done,
                        ..Default::default()
                    }))))
                }
                Command::Converge { .. } => Some(VmEvent::Converged(Ok(applied))),
                _ => None,
            };
            asked.push(c);
            if let Some(ev) = answer {
                let out = step(v, running_at(settings, Time(t.0 + 1)), ev).unwrap();
                asked.extend(out.commands);
            }
        }
        if v.phase() != Phase::Migrating {
            break;
        }
    }
    (asked, firings)
}

/// With the settings a new user has (`completion_action = escalate`, the default), a migration
/// that keeps going but does not end gets auto-converge, then four raises of its allowed
/// downtime, then post-copy, from the completion watchdog; once post-copy is applied it is never aborted, however long it takes.
#[test]
fn with_default_settings_a_migration_in_post_copy_is_never_aborted() {
    let settings = Settings::default();
    assert_eq!(settings.completion_action, WatchdogAction::Escalate);
    let mut v = vm_in(Phase::Migrating);
    let day = Time(24 * 3_600_000);
    let (asked, firings) = watch_until(&mut v, &settings, day, true);
    // Woken for its polls (and the six firings that asked the aids), not every millisecond
    // once the passed deadlines no longer matter.
    let polls = day.0 / settings.progress_interval.as_millis() as u64;
    assert!(
        firings <= polls + 10,
        "{firings} timer firings in a day for {polls} polls"
    );
    let aids: Vec<ConvergenceAid> = asked
        .iter()
        .filter_map(|c| match c {
            Command::Converge { aid, .. } => Some(*aid),
            _ => None,
        })
        .collect();
    assert_eq!(
        aids,
        [
            ConvergenceAid::AutoConverge,
            ConvergenceAid::RaiseDowntime,
            ConvergenceAid::RaiseDowntime,
            ConvergenceAid::RaiseDowntime,
            ConvergenceAid::RaiseDowntime,
            ConvergenceAid::PostCopy
        ]
    );
    assert!(
        !asked
            .iter()
            .any(|c| matches!(c, Command::AbortMigration { .. })),
        "aborted in post-copy"
    );
    assert_eq!(v.phase(), Phase::Migrating, "still watched after a day");
    step(
        &mut v,
        running_at(&settings, Time(day.0 + 1)),
        VmEvent::Status(Ok(MigrationStatus::Completed)),
    )
    .unwrap();
    assert_eq!(v.phase(), Phase::Verifying);
}

/// The same with the aids not applied: the completion watchdog aborts once both were tried
/// (what keeps the test above from passing by never firing).
#[test]
fn with_default_settings_a_migration_no_aid_helped_is_aborted() {
    let settings = Settings::default();
    let mut v = vm_in(Phase::Migrating);
    let (asked, _) = watch_until(&mut v, &settings, Time(24 * 3_600_000), false);
    assert!(
        asked
            .iter()
            .any(|c| matches!(c, Command::AbortMigration { .. })),
        "not aborted after {} commands",
        asked.len()
    );
    assert_eq!(v.phase(), Phase::Aborting);
}

/// In post-copy with no progress (a cut link pauses a post-copy guest in QEMU until the
/// migration is resumed): never aborted, but said once per stall timeout (`not_aborted`), so
/// that a person sees it; the watch goes on, woken by its polls only.
#[test]
fn a_stalled_migration_in_post_copy_is_said_once_per_stall_timeout_and_not_aborted() {
    let settings = Settings::default();
    let mut v = vm_in(Phase::Migrating);
    if let MoveState::Migrating(m) = &mut v.state {
        m.post_copy = true;
    }
    v.timer = Some(Time(2_000));
    let hour = Time(3_600_000);
    let mut said = Vec::new();
    let mut firings = 0u64;
    while let Some(t) = v.timer.filter(|&t| t <= hour) {
        firings += 1;
        let out = step(&mut v, running_at(&settings, t), VmEvent::Timer).unwrap();
        assert!(!aborts(&out), "aborted at {t}");
        for e in out.events {
            if let EventKind::NotAborted { why, .. } = e {
                assert!(why.contains("no progress for 2m30s"), "{why}");
                said.push(t);
            }
        }
        if out
            .commands
            .iter()
            .any(|c| matches!(c, Command::PollMigration { .. }))
        {
            // The same bytes every time: no progress.
            step(
                &mut v,
                running_at(&settings, Time(t.0 + 1)),
                VmEvent::Status(Ok(MigrationStatus::Running(Progress {
                    bytes_done: 5,
                    bytes_remaining: 7,
                    ..Default::default()
                }))),
            )
            .unwrap();
        }
    }
    assert_eq!(v.phase(), Phase::Migrating);
    // 150 s stall timeout: 24 in an hour (the first after 150 s of no progress).
    assert!((23..=24).contains(&said.len()), "{said:?}");
    assert!(
        said.windows(2).all(|w| w[1].0 - w[0].0 >= 150_000),
        "{said:?}"
    );
    let polls = hour.0 / settings.progress_interval.as_millis() as u64;
    assert!(firings <= polls + 2, "{firings} firings for {polls} polls");
}

/// A stop with abort (`vmove stop --abort`, `vmove abort RUN VM`) while the migration is in
/// post-copy: not aborted (the guest runs on the destination; libvirt refuses such an abort,
/// or pauses the guest with `VIR_DOMAIN_ABORT_JOB_POSTCOPY`), said so, and watched to its end.
#[test]
fn a_stop_with_abort_lets_a_migration_in_post_copy_end() {
    let settings = Settings::default();
    let mut v = vm_in(Phase::Migrating);
    if let MoveState::Migrating(m) = &mut v.state {
        m.post_copy = true;
    }
    let out = step(&mut v, running_at(&settings, Time(5_000)), stop(true)).unwrap();
    assert!(!aborts(&out), "{:?}", out.commands);
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, EventKind::NotAborted { attempt: 1, .. })),
        "{:?}",
        out.events
    );
    assert_eq!(v.phase(), Phase::Migrating);
    step(
        &mut v,
        running_at(&settings, Time(6_000)),
        VmEvent::Status(Ok(MigrationStatus::Completed)),
    )
    .unwrap();
    assert_eq!(v.phase(), Phase::Verifying);
    // Not in post-copy: the same stop aborts.
    let mut w = vm_in(Phase::Migrating);
    step(&mut w, running_at(&settings, Time(5_000)), stop(true)).unwrap();
    assert_eq!(w.phase(), Phase::Aborting);
}

/// Migrating VM `v` under `settings` (escalating at a stall) with no progress, from its first
/// firing at 150 s: auto-converge is asked and applied, then the allowed downtime is raised
/// (applied three times, a stall timeout apart; the fourth answered "not applied", as a host
/// at its cap answers), and at once post-copy is asked. Returns the aids asked before
/// post-copy, that step's output and its time.
fn post_copy_asked(
    settings: &Settings,
    v: &mut VmMove,
) -> (Vec<ConvergenceAid>, vmove_core::machine::Output, Time) {
    let ctx = |now| running_at(settings, now);
    let mut asked = Vec::new();
    let mut t = Time(150_000);
    let mut answered = 0;
    loop {
        let out = step(v, ctx(t), VmEvent::Timer).unwrap();
        let aid = out.commands.iter().find_map(|c| match c {
            Command::Converge { aid, .. } => Some(*aid),
            _ => None,
        });
        match aid {
            Some(ConvergenceAid::PostCopy) | None => return (asked, out, t),
            Some(aid) => asked.push(aid),
        }
        answered += 1;
        // The fourth raise finds the cap: not applied, and the next aid is asked at once.
        let applied = answered < 5;
        step(v, ctx(Time(t.0 + 100)), VmEvent::Converged(Ok(applied))).unwrap();
        t = if applied {
            Time(t.0 + 100 + settings.stall_timeout.as_millis() as u64)
        } else {
            Time(t.0 + 100)
        };
    }
}

/// One raise rule for every driver and the simulator (`model::raised_downtime`): doubled from
/// at least 150 ms, up to the host's cap, and no raise at or above the cap. The libvirt driver
/// and the simulator each had their own copy of it; the simulator's earlier one quadrupled
/// without a cap.
#[test]
fn a_raise_doubles_from_the_floor_up_to_the_cap_and_is_no_raise_at_the_cap() {
    use vmove_core::model::{DEFAULT_DOWNTIME_CAP_MS, raised_downtime};
    let cap = DEFAULT_DOWNTIME_CAP_MS;
    // QEMU's default 300 ms: 600, 1200, 2000 (capped), then nothing.
    let mut ladder = vec![300];
    while let Some(next) = raised_downtime(*ladder.last().unwrap(), cap) {
        ladder.push(next);
    }
    assert_eq!(ladder, [300, 600, 1200, 2000]);
    // A host set very low starts from the floor; one set above the cap is left alone.
    assert_eq!(raised_downtime(0, cap), Some(300));
    assert_eq!(raised_downtime(20, cap), Some(300));
    assert_eq!(raised_downtime(5000, cap), None);
    // A cap below the floor's double is still reached, and a cap of 0 raises nothing.
    assert_eq!(raised_downtime(100, 200), Some(200));
    assert_eq!(raised_downtime(100, 0), None);
    // No overflow at the top of the range.
    assert_eq!(raised_downtime(u64::MAX / 2 + 1, u64::MAX), Some(u64::MAX));
    assert_eq!(raised_downtime(u64::MAX, u64::MAX), None);
}

/// One rule for a refusal that does not count an aid as asked (`ConvergenceAid::refused_for_now`),
/// read by the running core and by the journal's rebuild: only post-copy, only for a passing
/// reason. Each had its own copy of it.
#[test]
fn only_post_copy_refused_for_a_passing_reason_is_refused_for_now() {
    let passing = Failure::new(ErrorClass::Transient, "disks still copied");
    let lasting = Failure::new(ErrorClass::Permanent, "post-copy not enabled");
    assert!(ConvergenceAid::PostCopy.refused_for_now(&passing));
    assert!(!ConvergenceAid::PostCopy.refused_for_now(&lasting));
    for aid in [ConvergenceAid::AutoConverge, ConvergenceAid::RaiseDowntime] {
        assert!(!aid.refused_for_now(&passing), "{aid:?}");
        assert!(!aid.refused_for_now(&lasting), "{aid:?}");
    }
}

/// Under escalation the allowed downtime is raised before post-copy, the aid that cannot be
/// undone: auto-converge, then raises while the host applies them, and post-copy only once a
/// raise is not applied (the host's cap reached). Before, the watchdogs never asked for a
/// raise: `max_downtime_ms` had no effect, and with a new user's libvirt settings
/// (`auto_converge` and `post_copy` off) no aid was ever applied.
#[test]
fn the_allowed_downtime_is_raised_to_the_cap_before_post_copy_is_asked() {
    let settings = escalating();
    let mut v = vm_in(Phase::Migrating);
    let (asked, out, at) = post_copy_asked(&settings, &mut v);
    assert_eq!(
        asked,
        [
            ConvergenceAid::AutoConverge,
            ConvergenceAid::RaiseDowntime,
            ConvergenceAid::RaiseDowntime,
            ConvergenceAid::RaiseDowntime,
            ConvergenceAid::RaiseDowntime
        ]
    );
    assert!(asks_post_copy(&out), "{:?}", out.commands);
    // Four aids applied, each given a stall timeout; the raise not applied costs no wait.
    assert_eq!(at, Time(150_000 + 4 * 150_100 + 100));
    // Each applied raise was said.
    let mut w = vm_in(Phase::Migrating);
    let ctx = |now| running_at(&settings, now);
    step(&mut w, ctx(Time(150_000)), VmEvent::Timer).unwrap();
    step(&mut w, ctx(Time(150_100)), VmEvent::Converged(Ok(true))).unwrap();
    let out = step(&mut w, ctx(Time(300_100)), VmEvent::Timer).unwrap();
    assert!(
        asks(&out, ConvergenceAid::RaiseDowntime),
        "{:?}",
        out.commands
    );
    let out = step(&mut w, ctx(Time(300_200)), VmEvent::Converged(Ok(true))).unwrap();
    assert!(
        out.events.iter().any(|e| matches!(
            e,
            EventKind::Escalated {
                aid: ConvergenceAid::RaiseDowntime,
                ..
            }
        )),
        "{:?}",
        out.events
    );
    assert!(!aborts(&out));
}

/// A stop with abort while post-copy is asked and not answered: the host may already have
/// switched the guest to the destination, so the migration is not aborted yet. Applied, it is
/// watched to its end; not applied, it is aborted then. Before, the stop aborted it at once (only
/// an applied post-copy counted), while a resume already read "asked, no answer" as possibly in
/// post-copy.
#[test]
fn a_stop_with_abort_while_post_copy_is_asked_waits_for_its_answer() {
    let settings = escalating();
    let reason = Reason::RunStopped;
    let stopping = |now| Ctx {
        now,
        settings: &settings,
        stopping: Some(&reason),
        abort_running: true,
    };
    for applied in [true, false] {
        let mut v = vm_in(Phase::Migrating);
        let (_, _, at) = post_copy_asked(&settings, &mut v);
        let out = step(&mut v, stopping(Time(at.0 + 10)), stop(true)).unwrap();
        assert!(!aborts(&out), "{:?}", out.commands);
        assert!(
            out.events
                .iter()
                .any(|e| matches!(e, EventKind::NotAborted { why, .. } if why.contains("post-copy was asked"))),
            "{:?}",
            out.events
        );
        assert_eq!(v.phase(), Phase::Migrating);
        let out = step(
            &mut v,
            stopping(Time(at.0 + 100)),
            VmEvent::Converged(Ok(applied)),
        )
        .unwrap();
        if applied {
            assert!(!aborts(&out), "{:?}", out.commands);
            assert_eq!(v.phase(), Phase::Migrating);
        } else {
            assert!(aborts(&out), "{:?}", out.commands);
            assert_eq!(v.phase(), Phase::Aborting);
        }
    }
    // Refused for a passing reason while the run stops with abort: not in post-copy, aborted.
    let mut v = vm_in(Phase::Migrating);
    let (_, _, at) = post_copy_asked(&settings, &mut v);
    step(&mut v, stopping(Time(at.0 + 10)), stop(true)).unwrap();
    step(
        &mut v,
        stopping(Time(at.0 + 100)),
        post_copy_refused_for_now(),
    )
    .unwrap();
    assert_eq!(v.phase(), Phase::Aborting);
}

/// A watchdog that fires while post-copy is asked and not answered (a call that hangs longer
/// than the stall timeout) does not abort: the answer decides.
#[test]
fn a_watchdog_firing_while_post_copy_is_asked_does_not_abort() {
    let settings = escalating();
    let ctx = |now| running_at(&settings, now);
    let mut v = vm_in(Phase::Migrating);
    let (_, _, at) = post_copy_asked(&settings, &mut v);
    let late = Time(at.0 + 2 * settings.stall_timeout.as_millis() as u64);
    let out = step(&mut v, ctx(late), VmEvent::Timer).unwrap();
    assert!(!aborts(&out), "{:?}", out.commands);
    assert_eq!(v.phase(), Phase::Migrating);
    // Not applied, with no aid left: aborted at once, as before.
    step(
        &mut v,
        ctx(Time(late.0 + 100)),
        VmEvent::Converged(Ok(false)),
    )
    .unwrap();
    assert_eq!(v.phase(), Phase::Aborting);
}

/// An aid the hypervisor did not apply (post-copy not enabled): the next firing aborts, as
/// before; only an applied post-copy stops the watchdogs.
#[test]
fn escalation_aborts_when_post_copy_was_not_applied() {
    let settings = escalating();
    let ctx = |now| running_at(&settings, now);
    let mut v = vm_in(Phase::Migrating);
    let (_, _, at) = post_copy_asked(&settings, &mut v);
    let out = step(&mut v, ctx(Time(at.0 + 100)), VmEvent::Converged(Ok(false))).unwrap();
    assert!(aborts(&out), "{:?}", out.commands);
    assert_eq!(v.phase(), Phase::Aborting);
}

/// QEMU's refusal of post-copy while libvirt still mirrors the disks ("Postcopy must be
/// started after migration has been started": QEMU's migration/migration.c; seen on the lab),
/// as the libvirt driver classes it.
fn post_copy_refused_for_now() -> VmEvent {
    VmEvent::Converged(Err(Failure::new(
        ErrorClass::Transient,
        "cannot switch to post-copy: unable to execute QEMU command 'migrate-start-postcopy': Postcopy must be started after migration has been started",
    )))
}

/// A progress poll's answer: `bytes` done.
fn done(bytes: u64) -> VmEvent {
    VmEvent::Status(Ok(MigrationStatus::Running(Progress {
        bytes_done: bytes,
        ..Default::default()
    })))
}

/// Whether `out` asks the convergence aid `aid`.
fn asks(out: &vmove_core::machine::Output, aid: ConvergenceAid) -> bool {
    out.commands
        .iter()
        .any(|c| matches!(c, Command::Converge { aid: a, .. } if *a == aid))
}

/// Whether `out` asks post-copy.
fn asks_post_copy(out: &vmove_core::machine::Output) -> bool {
    asks(out, ConvergenceAid::PostCopy)
}

/// The error of the `migration_failed` event `out` says (it must say one).
fn migration_failure(out: &vmove_core::machine::Output) -> String {
    out.events
        .iter()
        .find_map(|e| match e {
            EventKind::MigrationFailed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .expect("a migration_failed event")
}

/// Whether `out` aborts the migration.
fn aborts(out: &vmove_core::machine::Output) -> bool {
    out.commands
        .iter()
        .any(|c| matches!(c, Command::AbortMigration { .. }))
}

/// The watchdogs fire while the disks are still copied (a slow link): auto-converge is
/// applied, then post-copy is refused for a passing reason. The migration progresses: it is
/// not aborted (before, it was: "no convergence aid helped", and the next attempt copied the
/// disks again from nothing); post-copy is asked again at the next firing, and taken.
#[test]
fn a_post_copy_refused_during_the_disk_copy_is_asked_again_while_the_migration_progresses() {
    let settings = escalating();
    let ctx = |now| running_at(&settings, now);
    let mut v = vm_in(Phase::Migrating);
    let (_, out, at) = post_copy_asked(&settings, &mut v);
    assert!(asks_post_copy(&out), "{:?}", out.commands);
    let at = at.0;
    let out = step(&mut v, ctx(Time(at + 100)), post_copy_refused_for_now()).unwrap();
    assert!(
        !aborts(&out),
        "aborted on a passing refusal: {:?}",
        out.commands
    );
    assert_eq!(v.phase(), Phase::Migrating);
    assert!(
        out.events.iter().any(|e| matches!(e, EventKind::NotAborted { why, .. }
            if why.contains("post-copy refused for now") && why.contains("Postcopy must be started"))),
        "{:?}",
        out.events
    );
    // The disk copy goes on.
    step(&mut v, ctx(Time(at + 50_000)), done(5 << 30)).unwrap();
    // No progress for a stall timeout since: the next firing asks post-copy again.
    let out = step(&mut v, ctx(Time(at + 200_100)), VmEvent::Timer).unwrap();
    assert!(asks_post_copy(&out), "asked again: {:?}", out.commands);
    let out = step(
        &mut v,
        ctx(Time(at + 200_200)),
        VmEvent::Converged(Ok(true)),
    )
    .unwrap();
    assert!(out.events.iter().any(|e| matches!(
        e,
        EventKind::Escalated {
            aid: ConvergenceAid::PostCopy,
            ..
        }
    )));
    assert!(matches!(&v.state, MoveState::Migrating(m) if m.post_copy));
}

/// When no aid helped, the failure says what the host applied and what it did not, so that an
/// operator learns which settings (auto-converge, post-copy, a higher downtime cap) would have
/// given the migration a chance. Before, it said only "did not converge and no convergence aid
/// helped".
#[test]
fn when_no_aid_helps_the_failure_says_which_aids_were_applied_and_which_were_not() {
    let settings = escalating();
    let mut v = vm_in(Phase::Migrating);
    // Auto-converge and three raises applied, the fourth raise not (the host's cap).
    let (asked, out, at) = post_copy_asked(&settings, &mut v);
    assert_eq!(asked.len(), 5, "{asked:?}");
    assert!(asks_post_copy(&out), "{:?}", out.commands);
    let out = step(
        &mut v,
        running_at(&settings, Time(at.0 + 100)),
        VmEvent::Converged(Ok(false)),
    )
    .unwrap();
    assert!(aborts(&out), "{:?}", out.commands);
    let error = migration_failure(&out);
    assert_eq!(
        error,
        "did not converge and no convergence aid helped (applied: auto-converge, a raised allowed downtime (x3); not applied by the host: a raised allowed downtime, post-copy)"
    );
}

/// A watch resumed after vmove stopped goes on from the aids its journal recorded, and when
/// none helped its failure names those too: applied, refused, and one asked with no answer
/// recorded. Before, a resumed watch kept only how many had been asked, and its failure named
/// just the aids answered after the resume ("applied: a raised allowed downtime ...", with
/// auto-converge and the first raises gone).
#[test]
fn a_resumed_watch_names_the_aids_answered_before_the_resume_when_none_helped() {
    use vmove_core::machine::{AidAnswer, AidsAsked};
    let settings = escalating();
    let mut v = vm_in(Phase::Confirming);
    v.resumed_aids = Some((
        v.attempts,
        AidsAsked {
            answers: vec![
                (ConvergenceAid::AutoConverge, AidAnswer::Applied),
                (ConvergenceAid::RaiseDowntime, AidAnswer::Applied),
                (ConvergenceAid::RaiseDowntime, AidAnswer::Unanswered),
            ],
        },
    ));
    let ctx = |now| running_at(&settings, now);
    step(
        &mut v,
        ctx(Time(1_000)),
        VmEvent::Status(Ok(MigrationStatus::Running(Progress {
            bytes_done: 1 << 20,
            bytes_remaining: 1 << 30,
            ..Default::default()
        }))),
    )
    .unwrap();
    assert_eq!(v.phase(), Phase::Migrating);
    // No progress from here: each firing asks the next aid, which the host does not apply.
    let mut asked = Vec::new();
    let mut t = 1_000 + settings.stall_timeout.as_millis() as u64;
    let out = loop {
        let out = step(&mut v, ctx(Time(t)), VmEvent::Timer).unwrap();
        let Some(aid) = out.commands.iter().find_map(|c| match c {
            Command::Converge { aid, .. } => Some(*aid),
            _ => None,
        }) else {
            panic!("a firing that asks no aid: {:?}", out.commands);
        };
        asked.push(aid);
        let out = step(&mut v, ctx(Time(t + 100)), VmEvent::Converged(Ok(false))).unwrap();
        if aborts(&out) {
            break out;
        }
        t += 200;
    };
    // The ladder went on from the fourth aid, not from the start.
    assert_eq!(
        asked,
        [
            ConvergenceAid::RaiseDowntime,
            ConvergenceAid::RaiseDowntime,
            ConvergenceAid::PostCopy
        ]
    );
    assert_eq!(
        migration_failure(&out),
        "did not converge and no convergence aid helped (applied: auto-converge, a raised allowed downtime; not applied by the host: a raised allowed downtime, post-copy; asked before vmove stopped, answer not recorded: a raised allowed downtime)"
    );
}

/// Post-copy refused again with no progress since its last refusal: the attempt is aborted,
/// as when no aid helps (a migration that neither progresses nor can switch is not waited on).
#[test]
fn a_post_copy_refused_again_without_progress_aborts_the_attempt() {
    let settings = escalating();
    let ctx = |now| running_at(&settings, now);
    let mut v = vm_in(Phase::Migrating);
    let (_, _, at) = post_copy_asked(&settings, &mut v);
    let at = at.0;
    let out = step(&mut v, ctx(Time(at + 100)), post_copy_refused_for_now()).unwrap();
    assert!(!aborts(&out));
    let out = step(&mut v, ctx(Time(at + 150_100)), VmEvent::Timer).unwrap();
    assert!(asks_post_copy(&out), "{:?}", out.commands);
    let out = step(&mut v, ctx(Time(at + 150_200)), post_copy_refused_for_now()).unwrap();
    assert!(aborts(&out), "{:?}", out.commands);
    assert_eq!(v.phase(), Phase::Aborting);
    // The failure names post-copy's refusal once, though it was refused twice.
    let error = migration_failure(&out);
    assert!(
        error.starts_with("did not converge and no convergence aid helped (applied: ")
            && error.matches("failed: post-copy (").count() == 1
            && error.matches("Postcopy must be started").count() == 1,
        "{error}"
    );
}

/// With a new user's watchdogs (`completion_action = "escalate"`, `stall_action = "abort"`), the
/// completion watchdog's first aid not applied (libvirt without `auto_converge` answers so) is
/// followed at once by its next aid, and so on to post-copy (a host that cannot raise the
/// allowed downtime, as Hyper-V, answers each raise so). Before, the stall watchdog was made to fire
/// instead, with its own action: the attempt was aborted as "stalled: no progress" while it
/// progressed, and post-copy was never asked (seen on the lab).
#[test]
fn an_aid_not_applied_is_followed_by_the_next_one_under_the_default_stall_action() {
    let settings = Settings::default();
    assert_eq!(
        (settings.stall_action, settings.completion_action),
        (WatchdogAction::Abort, WatchdogAction::Escalate)
    );
    let mut v = vm_in(Phase::Migrating);
    let ctx = |now| running_at(&settings, now);
    // It progresses, and its completion deadline (1,000 s in) passes.
    step(&mut v, ctx(Time(999_000)), done(1 << 30)).unwrap();
    let out = step(&mut v, ctx(Time(1_000_100)), VmEvent::Timer).unwrap();
    assert!(
        asks(&out, ConvergenceAid::AutoConverge),
        "{:?}",
        out.commands
    );
    let mut next = Vec::new();
    let out = loop {
        let out = step(&mut v, ctx(Time(1_000_200)), VmEvent::Converged(Ok(false))).unwrap();
        assert!(!aborts(&out), "{:?}", out.commands);
        let out = step(&mut v, ctx(Time(1_000_200)), VmEvent::Timer).unwrap();
        assert!(
            !aborts(&out),
            "aborted: {:?} {:?}",
            out.commands,
            out.events
        );
        // The same firing as the one that asked auto-converge: said once (a second "completion
        // watchdog fired" line at the same instant told the operator nothing new).
        assert!(
            !out.events
                .iter()
                .any(|e| matches!(e, EventKind::WatchdogFired { .. })),
            "{:?}",
            out.events
        );
        if asks(&out, ConvergenceAid::RaiseDowntime) {
            next.push(ConvergenceAid::RaiseDowntime);
        } else {
            break out;
        }
    };
    assert_eq!(next, [ConvergenceAid::RaiseDowntime; 4]);
    assert!(asks_post_copy(&out), "{:?}", out.commands);
    // Not applied either: no aid is left, the attempt is aborted, saying why.
    let out = step(&mut v, ctx(Time(1_000_300)), VmEvent::Converged(Ok(false))).unwrap();
    assert!(aborts(&out), "{:?}", out.commands);
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, EventKind::MigrationFailed { error, .. }
            if error.contains("no convergence aid helped"))),
        "{:?}",
        out.events
    );
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
            downtime_ms: None,
        })),
    );
}

#[test]
fn locating_after_an_indeterminate_start_readopts_a_running_job() {
    let mut d = Driven::at(Phase::Locating, Time(1));
    d.v.state = MoveState::Locating {
        req: req().into(),
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
        req: req().into(),
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
        downtime_ms: None,
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
        downtime_ms: None,
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
