//! The journal sink and keeper through the real runtime and core, on the simulated demo cluster
//! sped up: what the runtime journals keeps the write protocol, and a stop asked through the
//! journal from another handle reaches the core.
#![cfg(feature = "sink")]
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vmove_core::event::EventKind;
use vmove_core::{Command, Core, Input, Phase, Time};
use vmove_journal::sink::{JournalSink, Keeper};
use vmove_journal::{ConfigFormat, EntryBody, Journal, NewRun, RunEnd, RunState, recovered};
use vmove_runtime::{Control, Drivers, Runtime, RuntimeOptions};
use vmove_sim::scenarios::{self, Demo, Scenario};
use vmove_sim::{SimClock, SimDriver};

fn input_matches(cmd: &Command, input: &Input) -> bool {
    // The one identity of an answer (crates/core/src/io.rs): a copy of it here missed the
    // pre-flight command when it came.
    input.key().as_ref() == Some(&cmd.key())
}

/// Runs the demo, journaled; `stop_after` asks a stop through the journal from another handle.
async fn run(stop_after: Option<Duration>) -> (vmove_runtime::RunResult, vmove_journal::RunRecord) {
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let path = dir.path().join("journal.db");
    let Demo {
        scenario: Scenario { cluster, spec },
        ..
    } = scenarios::demo();
    let speed = 400.0;
    let run_id = spec.run_id.clone();
    let mut j = Journal::open(&path).unwrap();
    j.create_run(&NewRun {
        spec: spec.clone(),
        config: String::new(),
        config_format: ConfigFormat::Toml,
        command: String::new(),
    })
    .unwrap();
    let journal = Arc::new(Mutex::new(j));
    let hosts = cluster.host_ids();
    let driver: Arc<dyn vmove_driver::Driver> =
        Arc::new(SimDriver::new(cluster, SimClock::scaled(speed)));
    let mut drivers = Drivers::new();
    for h in hosts {
        drivers.insert(h, Arc::clone(&driver));
    }
    let (control, rx) = Control::new();
    let keeper = Keeper::start(
        Arc::clone(&journal),
        run_id.clone(),
        control,
        Duration::from_millis(100),
        Duration::from_secs(5),
        None,
    );
    let asker = stop_after.map(|d| {
        let path = path.clone();
        let run_id = run_id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            let mut other = Journal::open(&path).unwrap();
            other.request_stop(&run_id, false).unwrap();
        })
    });
    let result = Runtime::new(RuntimeOptions {
        speed,
        ..Default::default()
    })
    .run(
        Core::new(spec, Time::ZERO).unwrap(),
        drivers,
        vec![Box::new(JournalSink::new(
            Arc::clone(&journal),
            run_id.clone(),
        ))],
        rx,
    )
    .await;
    keeper.stop();
    if let Some(a) = asker {
        a.await.unwrap();
    }
    let mut j = journal.lock().unwrap();
    let end = if stop_after.is_some() {
        RunEnd::Aborted
    } else {
        RunEnd::Finished
    };
    j.finish_run(&run_id, end).unwrap();
    let rec = j.load_run(&run_id).unwrap();
    (result, rec)
}

fn check_protocol(result: &vmove_runtime::RunResult, rec: &vmove_journal::RunRecord) {
    // Every intent has exactly the outcome that answers it.
    let intents = rec.intents();
    assert!(intents.len() > 50, "{} intents", intents.len());
    for i in &intents {
        let (_, _, input) = i
            .outcome
            .as_ref()
            .unwrap_or_else(|| panic!("intent {:?} has no outcome", i.command));
        assert!(
            input_matches(&i.command, input),
            "{:?} answered by {input:?}",
            i.command
        );
    }
    // The step that decides a start emits AttemptStarted with the command: the event batch is
    // written before the command's intent. Every Selected event precedes the first start intent.
    let mut announced = HashSet::new();
    let mut first_start = None;
    let mut last_selected = 0;
    for e in &rec.entries {
        match &e.body {
            EntryBody::Intent(Command::StartMigration(r)) => {
                assert!(
                    announced.contains(&(r.vm.clone(), r.attempt)),
                    "the start intent of attempt {} of {} came before its step's events",
                    r.attempt,
                    r.vm
                );
                first_start.get_or_insert(e.seq);
            }
            EntryBody::Event(ev) => match &ev.kind {
                EventKind::AttemptStarted { vm, attempt, .. } => {
                    announced.insert((vm.clone(), *attempt));
                }
                EventKind::Selected { .. } => last_selected = e.seq,
                _ => {}
            },
            _ => {}
        }
    }
    assert!(last_selected > 0 && last_selected < first_start.unwrap());
    // The status table and the resume facts agree with the run's own end.
    for v in &result.snapshot.vms {
        let s = rec.vms.iter().find(|s| s.vm == v.id).unwrap();
        assert_eq!(s.phase, v.phase, "{}", v.name);
    }
    for r in recovered(rec) {
        assert!(
            !matches!(r.state, vmove_core::RecoveredState::InFlight(_)),
            "{} looks in flight after a clean end: {:?}",
            r.name,
            r.state
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journaled_run_keeps_the_write_protocol() {
    let (result, rec) = run(None).await;
    assert_eq!(result.error(), None);
    assert_eq!(rec.summary.state, RunState::Finished);
    check_protocol(&result, &rec);
    assert!(
        result
            .snapshot
            .vms
            .iter()
            .filter(|v| v.phase == Phase::Moved)
            .count()
            >= 10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_asked_through_the_journal_reaches_the_core_and_is_journaled() {
    let (result, rec) = run(Some(Duration::from_millis(600))).await;
    assert_eq!(result.stop_requested, Some(false));
    check_protocol(&result, &rec);
    assert!(
        rec.entries.iter().any(|e| matches!(
            e.body,
            EntryBody::Input(Input::Stop {
                abort_running: false
            })
        )),
        "the stop is in the journal as an unasked input"
    );
    assert!(
        result
            .snapshot
            .vms
            .iter()
            .any(|v| v.phase == Phase::Cancelled),
        "some VMs were not started"
    );
}
