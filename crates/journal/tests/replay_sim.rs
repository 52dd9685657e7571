//! Replay through the real core: a run on the simulated cluster is journaled as the runtime will
//! journal it (intent before acting, outcome after, every event), "crashes" after every journal
//! record, and is resumed from the journal with `recovered` + `Core::resume` against the world as
//! the crash left it. Every cut must reach the uninterrupted run's final placement with no
//! attempt started twice and nothing removed twice.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use vmove_core::{Command, Core, HostId, Input, RunSpec, Settings, Time, VmId};
use vmove_journal::{Holder, Journal, ManualClock, Options, RunEnd, RunState, WallTime, recovered};
use vmove_sim::cluster::GIB;
use vmove_sim::{Exec, Faults, HostSpec, MigrationEnd, SimCluster, VmSpec};

/// The world as the drivers see it, counting what matters for the invariants.
struct World {
    cluster: SimCluster,
    exec: Exec,
    /// Start calls per (VM, attempt).
    starts: BTreeMap<(VmId, u32), u32>,
    /// Successful removals per (host, what).
    removals: BTreeMap<(HostId, String), u32>,
}

fn cluster() -> SimCluster {
    let hosts = vec![HostSpec::new("a"), HostSpec::new("b"), HostSpec::new("c")];
    let mut vms: Vec<VmSpec> = (0..3)
        .map(|i| VmSpec::running(format!("v{i}"), "a", 2 * GIB).with_disk((4 + i) * GIB))
        .collect();
    vms.push(VmSpec::running("off0", "a", GIB).with_disk(2 * GIB).off());
    let mut faults = Faults::default();
    faults.transient_starts(&vms[1].id, 1);
    SimCluster::new(hosts, vms, faults).unwrap()
}

fn spec() -> RunSpec {
    vmove_sim::scenarios::evacuation(
        "replay",
        &[HostId::new("a")],
        &[HostId::new("b"), HostId::new("c")],
        Settings {
            backoff_initial: Duration::from_secs(5),
            ..Settings::default()
        },
    )
}

impl World {
    fn new() -> World {
        World {
            cluster: cluster(),
            exec: Exec::default(),
            starts: BTreeMap::new(),
            removals: BTreeMap::new(),
        }
    }

    fn pushed(&mut self, end: MigrationEnd) -> Option<Input> {
        self.exec.pushed(end)
    }

    /// Carries out `cmd` as the sim's executor does, counting starts and removals.
    fn exec(&mut self, cmd: &Command, now: Time) -> Input {
        if let Command::StartMigration(req) = cmd {
            *self
                .starts
                .entry((req.vm.clone(), req.attempt))
                .or_default() += 1;
        }
        let input = self.exec.run(&mut self.cluster, cmd, now);
        if let Input::LeftoverRemoved {
            leftover,
            result: Ok(()),
            ..
        } = &input
        {
            *self
                .removals
                .entry((leftover.host.clone(), leftover.what.clone()))
                .or_default() += 1;
        }
        input
    }
}

/// The process died after this many journal records.
struct Crashed;

/// Counts journal records; `Err(Crashed)` once the budget is spent.
struct Budget(Option<u64>);

impl Budget {
    fn spend(&mut self) -> Result<(), Crashed> {
        match &mut self.0 {
            Some(0) => Err(Crashed),
            Some(n) => {
                *n -= 1;
                if *n == 0 { Err(Crashed) } else { Ok(()) }
            }
            None => Ok(()),
        }
    }
}

/// Records the events the core emitted since the last call, as one batch (one record).
fn flush_events(
    core: &mut Core,
    j: &mut Journal,
    run: &str,
    budget: &mut Budget,
) -> Result<(), Crashed> {
    let events: Vec<_> = std::iter::from_fn(|| core.poll_event()).collect();
    if events.is_empty() {
        return Ok(());
    }
    j.record_events(run, &events).unwrap();
    budget.spend()
}

/// The runtime's loop, journaled as docs/journal.md says: the events of each step are recorded
/// (one batch) before the intent of the next command. With `act_on_crash`, a crash right after
/// an intent still carries the command out (the worst case: the world changed, the journal has
/// no outcome).
fn drive(
    core: &mut Core,
    world: &mut World,
    j: &mut Journal,
    run: &str,
    budget: &mut Budget,
    act_on_crash: bool,
) -> Result<(), Crashed> {
    let mut now = world.cluster.now();
    flush_events(core, j, run, budget)?;
    loop {
        while let Some(cmd) = core.poll_command() {
            let id = j.record_intent(run, now, &cmd).unwrap();
            if budget.spend().is_err() {
                if act_on_crash {
                    world.exec(&cmd, now);
                }
                return Err(Crashed);
            }
            let input = world.exec(&cmd, now);
            j.record_outcome(run, id, now, &input).unwrap();
            budget.spend()?;
            core.handle_event(now, input);
            flush_events(core, j, run, budget)?;
        }
        if core.is_finished() {
            return Ok(());
        }
        let t_core = core.poll_timeout().map(|t| t.max(now));
        let next = [t_core, world.cluster.next_event_time()]
            .into_iter()
            .flatten()
            .min();
        let next = next.expect("the core waits for nothing but is not finished");
        let ended = world.cluster.advance_to(next);
        now = next;
        for end in ended {
            if let Some(input) = world.pushed(end) {
                j.record_input(run, now, &input).unwrap();
                budget.spend()?;
                core.handle_event(now, input);
                flush_events(core, j, run, budget)?;
            }
        }
        if t_core.is_some_and(|t| t <= now) {
            core.handle_timeout(now);
            flush_events(core, j, run, budget)?;
        }
    }
}

fn open(path: &std::path::Path, clock: &ManualClock, pid: u32) -> Journal {
    Journal::open_with(
        path,
        Options {
            clock: Arc::new(clock.clone()),
            holder: Holder {
                pid,
                host: "replay".into(),
                started: None,
                boot: None,
            },
            lease_ttl: Duration::from_secs(30),
            ..Options::default()
        },
    )
    .unwrap()
}

/// Where every VM is, and how many hosts define it.
fn placement(world: &World) -> BTreeMap<VmId, Option<HostId>> {
    world
        .cluster
        .vm_specs()
        .map(|v| (v.id.clone(), world.cluster.vm_host(&v.id).cloned()))
        .collect()
}

/// A journal directory on tmpfs when there is one (fsync there is free; the durability itself
/// is tested elsewhere).
fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

/// Runs to the end, crashing after `cut` records (if given) and resuming once.
/// Also says whether the crash came right after an intent (the journal's last record).
fn run_with_crash(cut: Option<u64>, act_on_crash: bool) -> (World, u64, Vec<String>, bool) {
    let dir = tempdir();
    let path = dir.path().join("journal.sqlite");
    let clock = ManualClock::new(WallTime(1_767_225_600_000));
    let mut world = World::new();
    let spec = spec();
    let run = spec.run_id.clone();
    let mut j = open(&path, &clock, 1);
    j.create_run(&vmove_journal::NewRun {
        spec: spec.clone(),
        config: String::new(),
        config_format: vmove_journal::ConfigFormat::Json,
        command: String::new(),
    })
    .unwrap();
    let mut core = Core::new(spec.clone(), world.cluster.now()).unwrap();
    let mut budget = Budget(cut);
    let crashed = drive(
        &mut core,
        &mut world,
        &mut j,
        &run,
        &mut budget,
        act_on_crash,
    )
    .is_err();
    let mut notes = Vec::new();
    if crashed {
        drop(core);
        drop(j); // died: no release, the lease stays until it expires
        clock.advance(Duration::from_secs(31));
        let mut j2 = open(&path, &clock, 2);
        j2.acquire(&run).unwrap();
        let rec = j2.load_run(&run).unwrap();
        let on_intent = matches!(
            rec.entries.last().map(|e| &e.body),
            Some(vmove_journal::EntryBody::Intent(_))
        );
        let recs = recovered(&rec);
        notes = recs
            .iter()
            .map(|r| format!("{}:{:?}", r.name, r.state))
            .collect();
        let mut core = Core::resume(spec, world.cluster.now(), recs).unwrap();
        drive(
            &mut core,
            &mut world,
            &mut j2,
            &run,
            &mut Budget(None),
            false,
        )
        .unwrap_or_else(|_| unreachable!());
        j2.finish_run(&run, RunEnd::Finished).unwrap();
        let summary = j2.run_summary(&run).unwrap();
        assert_eq!(summary.state, RunState::Finished);
        let status = j2.vm_status(&run).unwrap();
        assert!(
            status.iter().all(|s| s.phase.is_final()),
            "cut {cut:?}: every VM final in the status table"
        );
        (world, summary.entries, notes, on_intent)
    } else {
        j.finish_run(&run, RunEnd::Finished).unwrap();
        let n = j.run_summary(&run).unwrap().entries;
        (world, n, notes, false)
    }
}

/// Per VM, the hosts holding any of its files (disk images, logs, definitions).
fn file_hosts(world: &World) -> BTreeMap<VmId, Vec<HostId>> {
    let mut out: BTreeMap<VmId, Vec<HostId>> = BTreeMap::new();
    for host in world.cluster.host_ids() {
        for (_, owner, _, _) in world.cluster.files_on(&host) {
            if let Some(vm) = owner {
                let hosts = out.entry(vm).or_default();
                if !hosts.contains(&host) {
                    hosts.push(host.clone());
                }
            }
        }
    }
    out
}

#[test]
fn resume_after_a_crash_after_every_journal_record_moves_every_vm_once() {
    let (baseline, records, _, _) = run_with_crash(None, false);
    let expected = placement(&baseline);
    assert!(
        expected
            .values()
            .all(|h| h.as_ref().is_some_and(|h| h.as_str() != "a")),
        "every VM leaves a: {expected:?}"
    );
    assert!(
        baseline.starts.len() >= 5,
        "one VM needed a second attempt: {:?}",
        baseline.starts
    );
    assert!(
        records > 40,
        "a run this size writes more records: {records}"
    );
    let mut resumed_in_flight = 0;
    let mut same_destinations = 0;
    let mut runs = 0;
    for cut in 1..records {
        let mut on_intent = false;
        for act_on_crash in [false, true] {
            // Acting before dying differs from plain dying only when the last record is an intent.
            if act_on_crash && !on_intent {
                continue;
            }
            let (world, _, notes, last_is_intent) = run_with_crash(Some(cut), act_on_crash);
            on_intent = last_is_intent;
            runs += 1;
            let tag = format!(
                "cut {cut}{}",
                if act_on_crash {
                    " (acted before dying)"
                } else {
                    ""
                }
            );
            let got = placement(&world);
            // Every VM left the source for an allowed destination, and its files are on that
            // host only: cleaned from the source, no half copy left on the other destination.
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                expected.keys().collect::<Vec<_>>()
            );
            let files = file_hosts(&world);
            for (vm, host) in &got {
                let host = host
                    .as_ref()
                    .unwrap_or_else(|| panic!("{tag}: {vm} is on no host"));
                assert!(
                    ["b", "c"].contains(&host.as_str()),
                    "{tag}: {vm} on {host}; recovered {notes:?}"
                );
                assert_eq!(
                    files.get(vm),
                    Some(&vec![host.clone()]),
                    "{tag}: files of {vm}; recovered {notes:?}"
                );
            }
            if got == expected {
                same_destinations += 1;
            } else if std::env::var("REPLAY_DEBUG").is_ok() {
                eprintln!(
                    "{tag}: destinations differ: {got:?} vs {expected:?}; recovered {notes:?}"
                );
            }
            for ((vm, attempt), n) in &world.starts {
                assert_eq!(
                    *n, 1,
                    "{tag}: attempt {attempt} of {vm} started {n} times; recovered {notes:?}"
                );
            }
            for ((host, what), n) in &world.removals {
                assert_eq!(*n, 1, "{tag}: {what} on {host} removed {n} times");
            }
            if notes.iter().any(|n| n.contains("InFlight")) {
                resumed_in_flight += 1;
            }
        }
    }
    eprintln!(
        "{runs} crashed runs over {records} records: {resumed_in_flight} resumed a move in flight; \
         {same_destinations} ended with the uninterrupted run's exact destinations"
    );
    assert!(
        resumed_in_flight > 10,
        "many cuts fall while a move is in flight: {resumed_in_flight}"
    );
}
