//! Shared fixtures for the journal's conformance tests: a spec, a scripted run (the commands,
//! answers and events a real run of a few VMs produces), and a consistency check.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vmove_core::{
    Command, ErrorClass, Event, EventKind, Failure, HostId, HostLimits, Input, Leftover,
    LeftoverContext, LeftoverKind, MigrationHandle, MigrationMode, MigrationRequest,
    MigrationStatus, PathLayout, Phase, Progress, RunSpec, Selection, Settings, SourceSpec, Time,
    Verification, VmId,
};
use vmove_journal::{
    ConfigFormat, EntryBody, Holder, IntentId, Journal, ManualClock, NewRun, Options, RunRecord,
    VmStatus,
};

/// The throw-away PostgreSQL server of this test binary (shared with other crates' tests).
#[path = "../../src/pg_server.rs"]
pub mod pg_server;

/// The journal backend a conformance test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

thread_local! {
    static BACKEND: std::cell::Cell<(Backend, &'static str)> =
        const { std::cell::Cell::new((Backend::Sqlite, "")) };
}

/// The backend of the running test ([`on_backend`]; SQLite for a test that is not run on both).
pub fn backend() -> Backend {
    BACKEND.get().0
}

/// Runs a conformance test against `backend`: on PostgreSQL, every [`temp_path`] is a fresh
/// database of the binary's throw-away server; with no PostgreSQL installed the test says
/// `skipped: no PostgreSQL` and passes (fails under `VMOVE_REQUIRE_POSTGRES=1`).
pub fn on_backend(backend: Backend, name: &'static str, test: fn()) {
    if backend == Backend::Postgres && pg_server::server().is_none() {
        eprintln!("skipped: no PostgreSQL: {name}");
        return;
    }
    BACKEND.set((backend, name));
    test();
}

/// `on_both_backends!(a, b)`: tests `sqlite::a`, `postgres::a`, ... running the plain functions
/// `a`, `b` against each backend (the PostgreSQL ones with the `postgres` feature).
#[macro_export]
macro_rules! on_both_backends {
    ($($t:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $t() {
                    $crate::common::on_backend($crate::common::Backend::Sqlite, stringify!($t), super::$t)
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[test]
                fn $t() {
                    $crate::common::on_backend($crate::common::Backend::Postgres, stringify!($t), super::$t)
                }
            )*
        }
    };
}

/// Where a test's journal is: a file in a new temporary directory, or (a test running on
/// PostgreSQL) a fresh database's URL, the directory then unused.
pub fn temp_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = match BACKEND.get() {
        (Backend::Sqlite, _) => dir.path().join("journal.sqlite"),
        (Backend::Postgres, name) => PathBuf::from(
            pg_server::server()
                .expect("on_backend checked the server")
                .fresh_database(name),
        ),
    };
    (dir, path)
}

/// A manual clock at 2026-01-01T00:00:00Z.
pub fn clock() -> ManualClock {
    ManualClock::new(vmove_journal::WallTime(1_767_225_600_000))
}

/// Opens a journal as `holder` on `clock` with a 30 s lease.
pub fn open_as(path: &Path, clock: &ManualClock, holder: Holder) -> Journal {
    Journal::open_with(
        path,
        Options {
            clock: std::sync::Arc::new(clock.clone()),
            holder,
            lease_ttl: Duration::from_secs(30),
            ..Options::default()
        },
    )
    .unwrap()
}

/// A holder that is not this process.
pub fn other(pid: u32) -> Holder {
    Holder {
        pid,
        host: "other-host".into(),
        started: None,
        boot: None,
    }
}

/// A run moving VMs selected by `select` from host a to host b.
pub fn spec(run: &str, select: Selection) -> RunSpec {
    let hosts: BTreeMap<HostId, HostLimits> =
        [("a", HostLimits::default()), ("b", HostLimits::default())]
            .into_iter()
            .map(|(h, l)| (HostId::new(h), l))
            .collect();
    RunSpec {
        run_id: run.into(),
        sources: vec![SourceSpec {
            host: "a".into(),
            select,
            destinations: vec!["b".into()].into(),
            exclude: vec![],
        }],
        hosts,
        layouts: BTreeMap::new(),
        pins: BTreeMap::new(),
        priorities: [("db1".to_owned(), 5)].into_iter().collect(),
        settings: Settings {
            max_attempts: 4,
            seed: 7,
            ..Settings::default()
        },
    }
}

pub fn new_run(run: &str, select: Selection) -> NewRun {
    NewRun {
        spec: spec(run, select),
        config: "[settings]\nmax_attempts = 4\n".into(),
        config_format: ConfigFormat::Toml,
        command: String::new(),
    }
}

/// One step of a scripted run.
#[derive(Clone, Debug)]
pub enum Step {
    Intent(Command),
    /// Answer to the n-th intent of the script (0-based).
    Outcome(usize, Input),
    Input(Input),
    Event(Event),
}

/// The request of attempt `attempt` of `vm`, from a to b.
pub fn request(vm: &VmId, name: &str, attempt: u32, run: &str) -> MigrationRequest {
    MigrationRequest {
        vm: vm.clone(),
        vm_name: name.into(),
        source: "a".into(),
        destination: "b".into(),
        mode: MigrationMode::Live,
        layout: PathLayout::default(),
        attempt,
        run_id: run.into(),
    }
}

pub fn ev(at: u64, kind: EventKind) -> Step {
    Step::Event(Event { at: Time(at), kind })
}

pub fn transition(at: u64, vm: &VmId, from: Phase, to: Phase) -> Step {
    ev(
        at,
        EventKind::Transition {
            vm: vm.clone(),
            from,
            to,
        },
    )
}

/// The live VM `web0` (id `vm`, 1 GiB of memory, 10 GiB of disk, on host `a`) selected at `at`.
pub fn selected(at: u64, vm: &VmId) -> Step {
    ev(
        at,
        EventKind::Selected {
            vm: vm.clone(),
            name: "web0".into(),
            source: "a".into(),
            mode: MigrationMode::Live,
            memory_bytes: 1 << 30,
            disk_bytes: 10 << 30,
        },
    )
}

/// The first entries of a run of one live VM `web0` ([`selected`]), then its attempt `req` started and answered `handle` (the start is intent 0).
pub fn started(vm: &VmId, req: &MigrationRequest, handle: &MigrationHandle) -> Vec<Step> {
    vec![
        selected(0, vm),
        transition(0, vm, Phase::Queued, Phase::Starting),
        Step::Intent(Command::StartMigration(req.clone().into())),
        Step::Outcome(
            0,
            Input::MigrationStarted {
                vm: vm.clone(),
                attempt: req.attempt,
                result: Ok(handle.clone()),
            },
        ),
    ]
}

/// The entries a run of `n` VMs writes: the first VM fails its first start (transient) and moves
/// at attempt 2; every VM is verified and cleaned up. `vm_prefix` keeps VM ids apart across runs.
pub fn script(run: &str, vm_prefix: &str, n: usize) -> Vec<Step> {
    let mut s = Vec::new();
    let mut intents = 0usize;
    let mut intent = |s: &mut Vec<Step>, c: Command| {
        s.push(Step::Intent(c));
        intents += 1;
        intents - 1
    };
    let mut t = 0u64;
    for i in 0..n {
        let vm = VmId::new(format!("{vm_prefix}-{i}"));
        let name = format!("web{i}");
        t += 10;
        s.push(ev(
            t,
            EventKind::Selected {
                vm: vm.clone(),
                name: name.clone(),
                source: "a".into(),
                mode: MigrationMode::Live,
                memory_bytes: 1 << 30,
                disk_bytes: 10 << 30,
            },
        ));
        let mut attempt = 1;
        if i == 0 {
            s.push(transition(t, &vm, Phase::Queued, Phase::Starting));
            let k = intent(
                &mut s,
                Command::StartMigration(request(&vm, &name, 1, run).into()),
            );
            s.push(Step::Outcome(
                k,
                Input::MigrationStarted {
                    vm: vm.clone(),
                    attempt: 1,
                    result: Err(Failure::new(ErrorClass::Transient, "host b is busy")),
                },
            ));
            s.push(ev(
                t + 1,
                EventKind::AttemptFailed {
                    vm: vm.clone(),
                    attempt: 1,
                    class: ErrorClass::Transient,
                    error: "host b is busy".into(),
                    retry_at: Some(Time(t + 20)),
                    refused_by: None,
                    forgiven: false,
                    interrupted: false,
                },
            ));
            s.push(transition(t + 1, &vm, Phase::Starting, Phase::BackingOff));
            s.push(transition(t + 20, &vm, Phase::BackingOff, Phase::Queued));
            attempt = 2;
            t += 20;
        }
        let handle = MigrationHandle(format!("job-{vm}-{attempt}").into());
        s.push(transition(t, &vm, Phase::Queued, Phase::Starting));
        let k = intent(
            &mut s,
            Command::StartMigration(request(&vm, &name, attempt, run).into()),
        );
        s.push(ev(
            t,
            EventKind::AttemptStarted {
                vm: vm.clone(),
                attempt,
                source: "a".into(),
                destination: "b".into(),
                mode: MigrationMode::Live,
            },
        ));
        s.push(Step::Outcome(
            k,
            Input::MigrationStarted {
                vm: vm.clone(),
                attempt,
                result: Ok(handle.clone()),
            },
        ));
        s.push(transition(t + 1, &vm, Phase::Starting, Phase::Migrating));
        let poll = Command::PollMigration {
            request: request(&vm, &name, attempt, run).into(),
            handle: handle.clone(),
        };
        let k = intent(&mut s, poll.clone());
        let progress = Progress {
            bytes_done: 5 << 30,
            bytes_total: 11 << 30,
            bytes_remaining: 6 << 30,
            ..Progress::default()
        };
        s.push(Step::Outcome(
            k,
            Input::MigrationStatus {
                vm: vm.clone(),
                attempt,
                result: Ok(MigrationStatus::Running(progress)),
            },
        ));
        s.push(ev(
            t + 2,
            EventKind::Progress {
                vm: vm.clone(),
                attempt,
                bytes_done: 5 << 30,
                bytes_total: 11 << 30,
                bytes_remaining: 6 << 30,
            },
        ));
        // A status pushed by the driver, unasked.
        s.push(Step::Input(Input::MigrationStatus {
            vm: vm.clone(),
            attempt,
            result: Ok(MigrationStatus::Completed),
        }));
        s.push(transition(t + 3, &vm, Phase::Migrating, Phase::Verifying));
        let req = request(&vm, &name, attempt, run);
        let k = intent(
            &mut s,
            Command::Verify {
                request: req.clone().into(),
            },
        );
        s.push(Step::Outcome(
            k,
            Input::Verified {
                vm: vm.clone(),
                attempt,
                result: Ok(Verification {
                    on_destination: true,
                    disks_present: true,
                    stopped_on_source: true,
                    detail: String::new(),
                    downtime_ms: None,
                }),
            },
        ));
        s.push(ev(
            t + 4,
            EventKind::Verified {
                vm: vm.clone(),
                destination: "b".into(),
                downtime_ms: None,
            },
        ));
        s.push(transition(t + 4, &vm, Phase::Verifying, Phase::CleaningUp));
        let k = intent(
            &mut s,
            Command::ListLeftovers {
                request: req.into(),
                context: LeftoverContext::AfterSuccess,
            },
        );
        let leftover = Leftover {
            host: "a".into(),
            kind: LeftoverKind::DiskImage,
            what: format!("/var/lib/libvirt/images/{name}.qcow2"),
        };
        s.push(Step::Outcome(
            k,
            Input::LeftoversListed {
                vm: vm.clone(),
                attempt,
                result: Ok(vec![leftover.clone()]),
            },
        ));
        let k = intent(
            &mut s,
            Command::RemoveLeftover {
                request: request(&vm, &name, attempt, run).into(),
                leftover: leftover.clone(),
                context: LeftoverContext::AfterSuccess,
            },
        );
        s.push(Step::Outcome(
            k,
            Input::LeftoverRemoved {
                vm: vm.clone(),
                attempt,
                leftover: leftover.clone(),
                result: Ok(()),
            },
        ));
        s.push(ev(
            t + 5,
            EventKind::LeftoverRemoved {
                vm: vm.clone(),
                host: "a".into(),
                kind: LeftoverKind::DiskImage,
                what: leftover.what.clone(),
            },
        ));
        s.push(transition(t + 5, &vm, Phase::CleaningUp, Phase::Moved));
        s.push(ev(
            t + 5,
            EventKind::Moved {
                vm: vm.clone(),
                name,
                destination: "b".into(),
                attempts: attempt,
            },
        ));
    }
    s
}

/// The run time a step is recorded at.
pub fn step_time(step: &Step, i: usize) -> Time {
    match step {
        Step::Event(e) => e.at,
        _ => Time(1000 + i as u64),
    }
}

/// Writes steps `from..` of a script; `ids` collects the intent ids in script order. Returns the
/// sequence number of each step written.
pub fn write_steps(
    j: &mut Journal,
    run: &str,
    steps: &[Step],
    ids: &mut Vec<IntentId>,
) -> Vec<u64> {
    let mut seqs = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let at = step_time(step, i);
        let seq = match step {
            Step::Intent(c) => {
                let id = j.record_intent(run, at, c).unwrap();
                ids.push(id);
                id.0
            }
            Step::Outcome(k, input) => j.record_outcome(run, ids[*k], at, input).unwrap(),
            Step::Input(input) => j.record_input(run, at, input).unwrap(),
            Step::Event(e) => j.record_event(run, e).unwrap(),
        };
        seqs.push(seq);
    }
    seqs
}

/// The invariants every loaded run must satisfy, whatever was cut off by a crash: sequence
/// numbers 1..=n with no gap, every outcome answers one earlier intent, and the per-VM status
/// table equals the status recomputed from the events.
pub fn assert_consistent(rec: &RunRecord) {
    for (i, e) in rec.entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "sequence numbers must have no gap");
    }
    assert_eq!(
        rec.summary.entries,
        rec.entries.len() as u64,
        "last_seq must match the entries"
    );
    let mut answered = std::collections::BTreeSet::new();
    for e in &rec.entries {
        if let EntryBody::Outcome { intent, .. } = &e.body {
            assert!(intent.0 < e.seq, "an outcome follows its intent");
            let target = &rec.entries[(intent.0 - 1) as usize];
            assert!(
                matches!(target.body, EntryBody::Intent(_)),
                "an outcome answers an intent"
            );
            assert!(answered.insert(*intent), "one outcome per intent");
        }
    }
    let mut recomputed: BTreeMap<VmId, VmStatus> = BTreeMap::new();
    let mut order = Vec::new();
    for ev in rec.events() {
        if let Some(vm) = ev.kind.vm() {
            let s = recomputed.entry(vm.clone()).or_insert_with(|| {
                order.push(vm.clone());
                VmStatus::new(vm.clone(), ev.at)
            });
            s.apply(ev);
        }
    }
    let expected: Vec<VmStatus> = order.iter().map(|vm| recomputed[vm].clone()).collect();
    assert_eq!(rec.vms, expected, "the status table must match the events");
}
