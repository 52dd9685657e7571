//! What a run learned about its destinations' refusals survives a crash: resume rebuilds, from
//! the journal, which destinations refused a VM (not tried again in the run) and which refusals
//! were forgiven (our own leftover caused them and was removed: at most once per destination per
//! run). The real core, journaled as the runtime journals it, against a tiny scripted world.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use std::collections::BTreeMap;
use vmove_core::{
    Activity, Command, Core, ErrorClass, Event, EventKind, Failure, Health, HostId, HostInfo,
    Input, Leftover, LeftoverContext, LeftoverKind, Location, MigrationHandle, MigrationStatus,
    Phase, PowerState, Reason, RunSpec, Selection, Time, Verification, VmId, VmInfo,
};
use vmove_journal::{Journal, NewRun, recovered};

/// One VM, `vm08`, on host a; destinations that refuse its start a given number of times, a
/// refused start leaving a file of the VM there (a driver that pre-creates images); a start that
/// is not refused moves the VM at once.
struct World {
    /// Where the VM is.
    at: HostId,
    /// Destination -> how many more starts it refuses.
    refusals: BTreeMap<HostId, u32>,
    /// Destinations whose refused start leaves a file of the VM behind.
    leaves_file: Vec<HostId>,
    /// Files of the VM on each host.
    files: BTreeMap<HostId, Vec<Leftover>>,
    /// Every start: (attempt, destination).
    starts: Vec<(u32, HostId)>,
    /// Every pre-flight check: (attempt it precedes, destination). All answer clear.
    preflights: Vec<(u32, HostId)>,
}

fn vm_id() -> VmId {
    VmId::new("u-8")
}

impl World {
    fn new(refusals: &[(&str, u32)], leaves_file: &[&str]) -> World {
        World {
            at: HostId::new("a"),
            refusals: refusals
                .iter()
                .map(|(h, n)| (HostId::new(*h), *n))
                .collect(),
            leaves_file: leaves_file.iter().map(|h| HostId::new(*h)).collect(),
            files: BTreeMap::new(),
            starts: Vec::new(),
            preflights: Vec::new(),
        }
    }

    fn info(&self) -> VmInfo {
        VmInfo {
            id: vm_id(),
            name: "vm08".into(),
            power: PowerState::Running,
            health: Health::Ok,
            activity: Activity::Idle,
            memory_bytes: 1 << 30,
            disk_bytes: 4 << 30,
            dirty_rate: None,
        }
    }

    fn on(&self, host: &HostId) -> Option<VmInfo> {
        (&self.at == host).then(|| self.info())
    }

    fn answer(&mut self, now: Time, cmd: &Command) -> Input {
        let vm = vm_id();
        match cmd.clone() {
            Command::RefreshHost { host } => Input::HostRefreshed {
                result: Ok((
                    HostInfo {
                        migration_limit: Some(2),
                        active_migrations: 0,
                        // b has the most room: placement prefers it.
                        free_memory_bytes: if host.as_str() == "b" {
                            64 << 30
                        } else {
                            32 << 30
                        },
                        free_disk_bytes: 1 << 40,
                    },
                    self.on(&host).into_iter().collect(),
                )),
                host,
                requested_at: now,
            },
            Command::Preflight { request: req } => {
                self.preflights.push((req.attempt, req.destination.clone()));
                Input::Preflighted {
                    vm,
                    attempt: req.attempt,
                    destination: req.destination.clone(),
                    result: Ok(vmove_core::Preflight::default()),
                }
            }
            Command::StartMigration(req) => {
                self.starts.push((req.attempt, req.destination.clone()));
                let left = self.refusals.entry(req.destination.clone()).or_default();
                let result = if *left > 0 {
                    *left -= 1;
                    if self.leaves_file.contains(&req.destination) {
                        self.files
                            .entry(req.destination.clone())
                            .or_default()
                            .push(Leftover {
                                host: req.destination.clone(),
                                kind: LeftoverKind::DiskImage,
                                what: format!("/images/vm08.qcow2 (attempt {})", req.attempt),
                            });
                    }
                    Err(Failure::new(
                        ErrorClass::DestinationRefused,
                        format!("{} already holds /images/vm08.qcow2", req.destination),
                    ))
                } else {
                    self.at = req.destination.clone();
                    Ok(MigrationHandle(format!("job-{}", req.attempt).into()))
                };
                Input::MigrationStarted {
                    vm,
                    attempt: req.attempt,
                    result,
                }
            }
            Command::PollMigration { request: r, .. } => {
                let attempt = r.attempt;
                Input::MigrationStatus {
                    vm,
                    attempt,
                    result: Ok(MigrationStatus::Completed),
                }
            }
            Command::Locate { request } => {
                let attempt = request.attempt;
                Input::Located {
                    vm,
                    attempt,
                    result: Ok(Box::new(Location {
                        on_source: self.on(&request.source),
                        on_destination: self.on(&request.destination),
                        running_migration: None,
                    })),
                }
            }
            Command::Verify { request } => {
                let attempt = request.attempt;
                Input::Verified {
                    vm,
                    attempt,
                    result: Ok(Verification {
                        on_destination: self.at == request.destination,
                        disks_present: self.at == request.destination,
                        stopped_on_source: self.at != request.source,
                        detail: String::new(),
                        downtime_ms: None,
                    }),
                }
            }
            Command::ListLeftovers {
                request, context, ..
            } => {
                let attempt = request.attempt;
                let host = match context {
                    LeftoverContext::AfterSuccess => &request.source,
                    LeftoverContext::AfterFailedAttempt => &request.destination,
                };
                Input::LeftoversListed {
                    vm,
                    attempt,
                    result: Ok(self.files.get(host).cloned().unwrap_or_default()),
                }
            }
            Command::RemoveLeftover {
                request: r,
                leftover,
                ..
            } => {
                let attempt = r.attempt;
                if let Some(f) = self.files.get_mut(&leftover.host) {
                    f.retain(|l| l != &leftover);
                }
                Input::LeftoverRemoved {
                    vm,
                    attempt,
                    leftover,
                    result: Ok(()),
                }
            }
            other => panic!("the scripted world does not expect {other:?}"),
        }
    }
}

/// The runtime's loop, journaled as docs/journal.md says (intent before acting, outcome after,
/// each step's events as one batch). Stops ("crashes") right after the batch holding an event
/// `crash_after` accepts, or at the end of the run.
fn drive(
    core: &mut Core,
    world: &mut World,
    j: &mut Journal,
    run: &str,
    mut now: Time,
    crash_after: impl Fn(&Event) -> bool,
) -> (Time, bool) {
    let flush = |core: &mut Core, j: &mut Journal| {
        let events: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
        if !events.is_empty() {
            j.record_events(run, &events).unwrap();
        }
        events.iter().any(&crash_after)
    };
    if flush(core, j) {
        return (now, true);
    }
    for _ in 0..10_000 {
        while let Some(cmd) = core.poll_command() {
            let id = j.record_intent(run, now, &cmd).unwrap();
            let input = world.answer(now, &cmd);
            j.record_outcome(run, id, now, &input).unwrap();
            core.handle_event(now, input);
            if flush(core, j) {
                return (now, true);
            }
        }
        if core.is_finished() {
            return (now, false);
        }
        now = now.max(
            core.poll_timeout()
                .expect("waits for nothing, not finished"),
        );
        core.handle_timeout(now);
        if flush(core, j) {
            return (now, true);
        }
    }
    panic!("the run did not finish");
}

fn the_spec(destinations: &[&str]) -> RunSpec {
    let mut s = spec("refusals", Selection::All);
    s.sources[0].destinations = destinations.iter().map(|d| HostId::new(*d)).collect();
    s.hosts.insert(HostId::new("c"), Default::default());
    s.settings.backoff_jitter = 0.0;
    s
}

/// Runs `spec` against `world`; with `crash`, dies right after the first event it accepts and
/// resumes from the journal (`recovered` + `Core::resume`). The VM's outcome.
fn run(
    spec: RunSpec,
    world: &mut World,
    crash: Option<&dyn Fn(&Event) -> bool>,
) -> (Phase, u32, Option<Reason>) {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, other(1));
    let run_id = spec.run_id.clone();
    j.create_run(&NewRun {
        spec: spec.clone(),
        config: String::new(),
        config_format: vmove_journal::ConfigFormat::Json,
        command: String::new(),
    })
    .unwrap();
    let mut core = Core::new(spec.clone(), Time::ZERO).unwrap();
    let never = |_: &Event| false;
    let (now, crashed) = drive(
        &mut core,
        world,
        &mut j,
        &run_id,
        Time::ZERO,
        crash.unwrap_or(&never),
    );
    if crash.is_some() {
        assert!(crashed, "the crash point was reached");
        drop(core);
        let rec = j.load_run(&run_id).unwrap();
        let mut core = Core::resume(spec, now, recovered(&rec)).unwrap();
        let (_, again) = drive(&mut core, world, &mut j, &run_id, now, never);
        assert!(!again);
        return outcome(&core);
    }
    outcome(&core)
}

fn outcome(core: &Core) -> (Phase, u32, Option<Reason>) {
    let v = core
        .snapshot(Time::ZERO)
        .vms
        .into_iter()
        .find(|v| v.id == vm_id())
        .unwrap();
    (v.phase, v.attempts, v.reason)
}

fn attempt_failed(attempt: u32) -> impl Fn(&Event) -> bool {
    move |e: &Event| matches!(&e.kind, EventKind::AttemptFailed { attempt: a, .. } if *a == attempt)
}

/// Regression guard (issue 3 of the engine's loose ends): `VmMove::forgiven` was not rebuilt on
/// resume, so a crash after a forgiven refusal let the resumed run forgive the same destination
/// a second time (an extra attempt; with more crashes, one per crash).
#[test]
fn a_resumed_run_does_not_forgive_the_same_destination_twice() {
    // Every start on b is refused and leaves a file of the VM there, which the clean-up removes.
    let world = || World::new(&[("b", 10)], &["b"]);
    let mut w = world();
    let (phase, attempts, reason) = run(the_spec(&["b"]), &mut w, None);
    assert_eq!(phase, Phase::Unmigratable);
    assert!(
        matches!(reason, Some(Reason::AllDestinationsRefused(_))),
        "{reason:?}"
    );
    assert_eq!(attempts, 2, "one forgiven refusal, then it counts");

    // The same, dying right after attempt 1's forgiven refusal was settled and journaled.
    let mut w = world();
    let crash = attempt_failed(1);
    let (phase, attempts, reason) = run(the_spec(&["b"]), &mut w, Some(&crash));
    assert_eq!(phase, Phase::Unmigratable);
    assert!(
        matches!(reason, Some(Reason::AllDestinationsRefused(_))),
        "{reason:?}"
    );
    assert_eq!(
        w.starts.len(),
        2,
        "the resumed run forgave b again: starts {:?}",
        w.starts
    );
    assert_eq!(attempts, 2);
}

/// Regression guard (found with the above): `VmMove::refused` was not rebuilt either, so after a
/// crash the resumed run started the VM again on a destination that had refused it (costing an
/// attempt, or the VM if it had none left).
#[test]
fn a_resumed_run_does_not_try_a_destination_that_refused_the_vm_again() {
    // b (preferred: more free memory) refuses without leaving anything; c takes the VM.
    let world = || World::new(&[("b", 10)], &[]);
    let mut w = world();
    let (phase, attempts, _) = run(the_spec(&["b", "c"]), &mut w, None);
    assert_eq!((phase, attempts), (Phase::Moved, 2));

    let mut w = world();
    let crash = attempt_failed(1);
    let (phase, attempts, reason) = run(the_spec(&["b", "c"]), &mut w, Some(&crash));
    assert_eq!(phase, Phase::Moved, "{reason:?}");
    assert_eq!(
        w.starts,
        vec![(1, HostId::new("b")), (2, HostId::new("c"))],
        "after the crash, b (which refused) was tried again"
    );
    assert_eq!(attempts, 2);
    assert_eq!(w.at, HostId::new("c"));
}

/// A pre-flight check in flight when vmove dies (its intent journaled, no outcome) is a read:
/// resume does not count it as an attempt nor locate anything; the resumed engine asks it again
/// before the VM's first attempt, and the run ends as an uncrashed one does.
#[test]
fn a_pre_flight_in_flight_at_a_crash_is_asked_again_on_resume_and_the_run_ends_the_same() {
    let spec = the_spec(&["b"]);
    let mut w = World::new(&[], &[]);
    let uncrashed = run(spec.clone(), &mut w, None);
    assert_eq!(uncrashed.0, Phase::Moved);
    assert_eq!(w.preflights.len(), 1);

    let (_dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, other(1));
    let run_id = spec.run_id.clone();
    j.create_run(&NewRun {
        spec: spec.clone(),
        config: String::new(),
        config_format: vmove_journal::ConfigFormat::Json,
        command: String::new(),
    })
    .unwrap();
    let mut w = World::new(&[], &[]);
    let mut core = Core::new(spec.clone(), Time::ZERO).unwrap();
    let now = Time::ZERO;
    // Drive until the first pre-flight intent is journaled, then die before its answer.
    'crash: for _ in 0..100 {
        while let Some(cmd) = core.poll_command() {
            let id = j.record_intent(&run_id, now, &cmd).unwrap();
            if let Command::Preflight { request } = &cmd {
                w.preflights
                    .push((request.attempt, request.destination.clone()));
                break 'crash;
            }
            let input = w.answer(now, &cmd);
            j.record_outcome(&run_id, id, now, &input).unwrap();
            core.handle_event(now, input);
            let events: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
            if !events.is_empty() {
                j.record_events(&run_id, &events).unwrap();
            }
        }
    }
    assert_eq!(
        w.preflights.len(),
        1,
        "the crash came with a check in flight"
    );
    assert!(w.starts.is_empty());
    drop(core);
    let rec = j.load_run(&run_id).unwrap();
    let mut core = Core::resume(spec, now, recovered(&rec)).unwrap();
    let (_, again) = drive(&mut core, &mut w, &mut j, &run_id, now, |_| false);
    assert!(!again);
    assert_eq!(outcome(&core), uncrashed, "the run ends the same");
    assert_eq!(
        w.preflights,
        vec![(1, HostId::new("b")), (1, HostId::new("b"))],
        "asked again, for the same first attempt"
    );
    assert_eq!(w.starts, vec![(1, HostId::new("b"))]);
}
