//! Crash at every point of a run and resume: the same final placement, no attempt started twice,
//! nothing cleaned up twice, every VM on exactly one host.
#![allow(clippy::unwrap_used)]
use crate::common::*;
use std::collections::BTreeMap;
use vmove_core::*;

/// What a journal knows at the crash: each VM's phase and its attempt's request.
fn recover(core: &Core, spec: &RunSpec) -> Vec<Recovered> {
    core.snapshot(Time::ZERO)
        .vms
        .into_iter()
        .map(|v| {
            let req = |dst: &HostId| MigrationRequest {
                vm: v.id.clone(),
                vm_name: v.name.as_str().into(),
                source: v.source.clone(),
                destination: dst.clone(),
                mode: v.mode,
                layout: spec.layouts.get(dst).cloned().unwrap_or_default(),
                attempt: v.attempts,
                run_id: spec.run_id.as_str().into(),
            };
            let state = match v.phase {
                Phase::Queued | Phase::BackingOff => RecoveredState::Queued,
                Phase::Moved => RecoveredState::Moved(v.destination.clone().unwrap()),
                Phase::Unmigratable => RecoveredState::Unmigratable(v.reason.clone().unwrap()),
                Phase::Cancelled => RecoveredState::Cancelled(v.reason.clone().unwrap()),
                _ => RecoveredState::InFlight(req(v.destination.as_ref().unwrap())),
            };
            Recovered {
                id: v.id,
                name: v.name,
                source: v.source,
                destinations: spec.sources[0].destinations.to_vec(),
                memory_bytes: v.memory_bytes,
                disk_bytes: v.disk_bytes,
                mode: v.mode,
                attempts: v.attempts,
                uncounted: 0,
                refused: Vec::new(),
                forgiven: Vec::new(),
                state,
                aids: Default::default(),
            }
        })
        .collect()
}

fn world() -> World {
    let mut w = World::new();
    w.add_host("a", Some(2));
    w.add_host("b", Some(2));
    w.add_host("c", Some(2));
    for i in 0..4 {
        w.add_vm("a", vm(&format!("v{i}"), PowerState::Running));
    }
    w.add_vm("a", vm("off", PowerState::Off));
    w
}

fn the_spec() -> RunSpec {
    spec("a", &["b", "c"], &["a", "b", "c"])
}

#[test]
fn resume_after_a_crash_at_every_command_reaches_the_same_placement() {
    // Count the commands of an uninterrupted run.
    let mut w = world();
    let mut core = Core::new(the_spec(), Time::ZERO).unwrap();
    let mut total = 0;
    run(&mut core, &mut w, Time::ZERO, |_, _, _| total += 1);
    assert_eq!(core.snapshot(Time::ZERO).counts(), (5, 0, 0));
    assert!(total >= 40, "a run this size issues more commands: {total}");

    for cut in 0..total {
        let mut w = world();
        let mut core = Core::new(the_spec(), Time::ZERO).unwrap();
        let mut now = Time::ZERO;
        let mut n = 0;
        // Run until command `cut` has been carried out by the world, then lose its answer: crash.
        'outer: loop {
            while let Some(c) = core.poll_command() {
                let answer = w.answer(now, c);
                n += 1;
                if n > cut {
                    break 'outer;
                }
                if let Some(i) = answer {
                    core.handle_event(now, i);
                }
            }
            assert!(!core.is_finished(), "cut {cut} beyond the run");
            now = advance(&mut core, &mut w, now);
        }
        let recovered = recover(&core, &the_spec());
        drop(core);
        let mut resumed = Core::resume(the_spec(), now, recovered).unwrap();
        run(&mut resumed, &mut w, now, |_, _, _| {});
        let snap = resumed.snapshot(now);
        assert_eq!(snap.counts(), (5, 0, 0), "cut {cut}: {:#?}", snap.vms);
        // Every VM on exactly one host, and not on the source.
        for v in &snap.vms {
            let places = w.find(&v.id);
            assert_eq!(places.len(), 1, "cut {cut}: {} on {places:?}", v.name);
            assert_ne!(places[0].0.as_str(), "a");
        }
        // No attempt started twice, nothing removed twice.
        let mut starts: BTreeMap<&str, u32> = BTreeMap::new();
        for l in w.log.iter().filter(|l| l.starts_with("start ")) {
            *starts.entry(l.split(' ').nth(1).unwrap()).or_default() += 1;
        }
        assert!(starts.values().all(|&n| n == 1), "cut {cut}: {starts:?}");
        let mut removed = w
            .removed
            .iter()
            .map(|(l, _)| l.what.clone())
            .collect::<Vec<_>>();
        let before = removed.len();
        removed.sort();
        removed.dedup();
        assert_eq!(before, removed.len(), "cut {cut}: a leftover removed twice");
        assert!(
            w.leftovers.values().all(|l| l.is_empty()),
            "cut {cut}: leftovers remain {:?}",
            w.leftovers
        );
    }
}

#[test]
fn resume_of_an_attempt_being_aborted_aborts_it_again_instead_of_adopting_it() {
    let mut w = world();
    let mut core = Core::new(the_spec(), Time::ZERO).unwrap();
    // Start the first two moves, then crash.
    for _ in 0..2 {
        while let Some(c) = core.poll_command() {
            let i = w.answer(Time::ZERO, c).unwrap();
            core.handle_event(Time::ZERO, i);
        }
    }
    assert_eq!(w.migs.len(), 2);
    let mut rec = recover(&core, &the_spec());
    for r in rec.iter_mut() {
        if let RecoveredState::InFlight(req) = &r.state {
            r.state = RecoveredState::Aborting(req.clone());
        }
    }
    let mut resumed = Core::resume(the_spec(), Time(1000), rec).unwrap();
    let mut aborts = 0;
    while let Some(c) = resumed.poll_command() {
        if matches!(c, Command::AbortMigration { .. }) {
            aborts += 1;
        }
        if let Some(i) = w.answer(Time(1000), c) {
            resumed.handle_event(Time(1000), i);
        }
    }
    assert_eq!(aborts, 2, "both running migrations are aborted again");
    run(&mut resumed, &mut w, Time(1000), |_, _, _| {});
    assert_eq!(resumed.snapshot(Time::ZERO).counts(), (5, 0, 0));
}

/// Regression guard: a VM waiting out its backoff when vmove died still waits out the rest of
/// it after `resume` (it used to be retried at once), then moves.
#[test]
fn resume_keeps_the_remaining_backoff_of_a_failed_attempt() {
    let mut w = world();
    let mut core = Core::new(the_spec(), Time::ZERO).unwrap();
    // Let it list the hosts; crash before anything starts.
    while let Some(c) = core.poll_command() {
        if matches!(c, Command::RefreshHost { .. }) {
            let i = w.answer(Time::ZERO, c).unwrap();
            core.handle_event(Time::ZERO, i);
        }
    }
    let mut rec = recover(&core, &the_spec());
    assert_eq!(rec.len(), 5);
    let v0 = rec.iter().position(|r| r.name == "v0").unwrap();
    rec[v0].attempts = 1;
    rec[v0].state = RecoveredState::BackingOff(Time(60_000));
    // One VM whose backoff is already over when the resume comes: no wait.
    let v1 = rec.iter().position(|r| r.name == "v1").unwrap();
    rec[v1].attempts = 1;
    rec[v1].state = RecoveredState::BackingOff(Time(500));
    let mut resumed = Core::resume(the_spec(), Time(1_000), rec).unwrap();
    let snap = resumed.snapshot(Time(1_000));
    let phase_of = |s: &Snapshot, n: &str| s.vms.iter().find(|v| v.name == n).unwrap().phase;
    assert_eq!(phase_of(&snap, "v0"), Phase::BackingOff);
    let mut starts: BTreeMap<String, Time> = BTreeMap::new();
    run_timed(&mut resumed, &mut w, Time(1_000), |_, _, now, c| {
        if let Command::StartMigration(r) = c {
            starts.entry(r.vm_name.to_string()).or_insert(now);
        }
    });
    assert_eq!(resumed.snapshot(Time::ZERO).counts(), (5, 0, 0));
    assert!(
        starts["v0"] >= Time(60_000),
        "v0 started at {}",
        starts["v0"]
    );
    assert!(
        starts["v1"] < Time(60_000),
        "v1 started at {}",
        starts["v1"]
    );
    // Its next attempt is number 2: the failed one counts.
    let v0 = resumed
        .snapshot(Time::ZERO)
        .vms
        .into_iter()
        .find(|v| v.name == "v0")
        .unwrap();
    assert_eq!(v0.attempts, 2);
}
