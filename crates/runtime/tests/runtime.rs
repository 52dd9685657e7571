//! The runtime alone, against a scripted engine and a fake driver, on a paused tokio clock.
#![allow(clippy::unwrap_used)]

mod support;

use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use vmove_core::{Command, ErrorClass, Event, Input, Time};
use vmove_driver::DriverError;
use vmove_runtime::{
    CollectSink, Control, EventSink, NdjsonSink, Runtime, RuntimeOptions, SinkError,
};

fn outcome(seen: &Arc<Mutex<Seen>>, vm: &str) -> Option<Outcome> {
    seen.lock().unwrap().outcomes.get(vm).cloned()
}

#[tokio::test(start_paused = true)]
async fn commands_are_carried_out_and_answered_on_the_tokio_clock() {
    let log = Log::default();
    let engine = ScriptEngine::new(&["vm1", "vm2", "vm3"], 2);
    let seen = Arc::clone(&engine.seen);
    let collect = CollectSink::new();
    let (_control, rx) = Control::new();
    let result = Runtime::default()
        .run(
            engine,
            drivers(FakeDriver::new(Duration::from_secs(30), log.clone())),
            vec![Box::new(collect.clone())],
            rx,
        )
        .await;
    assert_eq!(result.error(), None);
    for vm in ["vm1", "vm2", "vm3"] {
        assert_eq!(outcome(&seen, vm), Some(Outcome::Moved), "{vm}");
    }
    // Two at once, 30 s each: vm3 starts when a slot frees at ~30 s and ends at ~60 s.
    assert!(
        result.elapsed >= Duration::from_secs(60),
        "{:?}",
        result.elapsed
    );
    assert!(
        result.elapsed < Duration::from_secs(63),
        "{:?}",
        result.elapsed
    );
    let seen = seen.lock().unwrap();
    let vm3_started = seen
        .inputs
        .iter()
        .find(|(_, i)| matches!(i, Input::MigrationStarted { vm, .. } if vm.as_str() == "vm3"))
        .map(|(t, _)| *t)
        .unwrap();
    assert!(
        vm3_started >= Time(30_000) && vm3_started < Time(32_000),
        "{vm3_started}"
    );
    // The refresh was answered, and time-outs came at the engine's 1 s cadence.
    assert!(
        seen.inputs
            .iter()
            .any(|(_, i)| matches!(i, Input::HostRefreshed { result: Ok(_), .. }))
    );
    assert!(seen.timeouts.len() >= 60, "{}", seen.timeouts.len());
    assert!(seen.timeouts.windows(2).all(|w| w[0] <= w[1]));
    // The collector saw every command and every event.
    let c = collect.collected();
    assert_eq!(
        c.commands
            .iter()
            .filter(|(_, c)| matches!(c, Command::StartMigration(_)))
            .count(),
        3
    );
    assert_eq!(c.events.len(), 3);
    assert!(c.finished.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_stop_starts_nothing_new_and_lets_running_moves_finish() {
    let log = Log::default();
    let engine = ScriptEngine::new(&["vm1", "vm2", "vm3", "vm4"], 1);
    let seen = Arc::clone(&engine.seen);
    let (control, rx) = Control::new();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        control.stop(false);
    });
    let result = Runtime::default()
        .run(
            engine,
            drivers(FakeDriver::new(Duration::from_secs(30), log.clone())),
            vec![],
            rx,
        )
        .await;
    assert_eq!(result.stop_requested, Some(false));
    assert_eq!(outcome(&seen, "vm1"), Some(Outcome::Moved));
    for vm in ["vm2", "vm3", "vm4"] {
        assert_eq!(outcome(&seen, vm), Some(Outcome::Cancelled), "{vm}");
    }
    let starts: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("driver start"))
        .cloned()
        .collect();
    assert_eq!(starts, vec!["driver start vm1".to_string()]);
    assert!(result.elapsed >= Duration::from_secs(30) && result.elapsed < Duration::from_secs(33));
}

#[tokio::test(start_paused = true)]
async fn a_second_stop_aborts_running_moves() {
    let log = Log::default();
    let engine = ScriptEngine::new(&["vm1", "vm2"], 1);
    let seen = Arc::clone(&engine.seen);
    let (control, rx) = Control::new();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        control.stop(false);
        tokio::time::sleep(Duration::from_secs(5)).await;
        control.stop(true);
    });
    let result = Runtime::default()
        .run(
            engine,
            drivers(FakeDriver::new(Duration::from_secs(300), log.clone())),
            vec![],
            rx,
        )
        .await;
    assert_eq!(result.stop_requested, Some(true));
    assert_eq!(outcome(&seen, "vm1"), Some(Outcome::Aborted));
    assert_eq!(outcome(&seen, "vm2"), Some(Outcome::Cancelled));
    assert!(
        log.lock()
            .unwrap()
            .contains(&"driver abort vm1".to_string())
    );
    assert!(result.elapsed >= Duration::from_secs(10) && result.elapsed < Duration::from_secs(12));
}

#[tokio::test(start_paused = true)]
async fn a_hung_state_changing_call_times_out_as_indeterminate() {
    let log = Log::default();
    let mut d = FakeDriver::new(Duration::from_secs(30), log);
    d.hang_start.insert("stuck".into());
    let engine = ScriptEngine::new(&["stuck", "ok"], 2);
    let seen = Arc::clone(&engine.seen);
    let (_c, rx) = Control::new();
    let rt = Runtime::new(RuntimeOptions {
        call_timeout: Duration::from_secs(5),
        ..Default::default()
    });
    let result = rt.run(engine, drivers(d), vec![], rx).await;
    match outcome(&seen, "stuck") {
        Some(Outcome::Failed(ErrorClass::Indeterminate, msg)) => {
            assert!(msg.contains("did not answer within 5s"), "{msg}");
            assert!(msg.contains("`a`"), "{msg}");
        }
        other => panic!("unexpected outcome {other:?}"),
    }
    // The hung call did not hold up the other VM or the run.
    assert_eq!(outcome(&seen, "ok"), Some(Outcome::Moved));
    assert!(
        result.elapsed < Duration::from_secs(33),
        "{:?}",
        result.elapsed
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_read_only_call_times_out_as_transient() {
    let mut d = FakeDriver::new(Duration::from_secs(30), Log::default());
    d.hang_status.insert("slowpoll".into());
    let engine = ScriptEngine::new(&["slowpoll"], 1);
    let seen = Arc::clone(&engine.seen);
    let (_c, rx) = Control::new();
    let rt = Runtime::new(RuntimeOptions {
        call_timeout: Duration::from_secs(7),
        ..Default::default()
    });
    let result = rt.run(engine, drivers(d), vec![], rx).await;
    match outcome(&seen, "slowpoll") {
        Some(Outcome::Failed(ErrorClass::Transient, msg)) => {
            assert!(msg.contains("did not answer within 7s"), "{msg}")
        }
        other => panic!("unexpected outcome {other:?}"),
    }
    // First poll at 1 s, cut off 7 s later.
    assert_eq!(result.elapsed, Duration::from_secs(8));
}

#[tokio::test(start_paused = true)]
async fn driver_errors_reach_the_engine_with_their_class() {
    let mut d = FakeDriver::new(Duration::from_secs(30), Log::default());
    d.fail_start.insert(
        "full".into(),
        DriverError::destination_refused("no space on b"),
    );
    d.fail_start
        .insert("gone".into(), DriverError::permanent("VM gone not found"));
    let engine = ScriptEngine::new(&["full", "gone"], 2);
    let seen = Arc::clone(&engine.seen);
    let (_c, rx) = Control::new();
    Runtime::default().run(engine, drivers(d), vec![], rx).await;
    assert_eq!(
        outcome(&seen, "full"),
        Some(Outcome::Failed(
            ErrorClass::DestinationRefused,
            "no space on b".into()
        ))
    );
    assert_eq!(
        outcome(&seen, "gone"),
        Some(Outcome::Failed(
            ErrorClass::Permanent,
            "VM gone not found".into()
        ))
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_driver_call_is_still_answered() {
    let mut d = FakeDriver::new(Duration::from_secs(30), Log::default());
    d.panic_start.insert("boom".into());
    let engine = ScriptEngine::new(&["boom"], 1);
    let seen = Arc::clone(&engine.seen);
    let (_c, rx) = Control::new();
    let result = Runtime::default().run(engine, drivers(d), vec![], rx).await;
    assert!(!result.stalled);
    assert!(matches!(
        outcome(&seen, "boom"),
        Some(Outcome::Failed(ErrorClass::Indeterminate, m)) if m.contains("died")
    ));
}

#[tokio::test(start_paused = true)]
async fn an_engine_waiting_on_nothing_ends_the_run_as_stalled() {
    let mut engine = ScriptEngine::new(&[], 1);
    engine.idle_forever = true;
    let (_c, rx) = Control::new();
    let result = Runtime::default()
        .run(
            engine,
            drivers(FakeDriver::new(Duration::from_secs(1), Log::default())),
            vec![],
            rx,
        )
        .await;
    assert!(result.stalled);
    assert!(result.error().unwrap().contains("stopped making progress"));
}

/// Logs each hook into the shared log; optionally refuses start commands (all of them, or only
/// the first).
struct OrderSink {
    log: Log,
    refuse_starts: bool,
    refuse_once: bool,
}

#[async_trait]
impl EventSink for OrderSink {
    fn name(&self) -> &str {
        "journal"
    }
    async fn on_command(&mut self, _now: Time, command: &Command) -> Result<(), SinkError> {
        if let Command::StartMigration(r) = command {
            if self.refuse_starts {
                if self.refuse_once {
                    self.refuse_starts = false;
                }
                return Err(SinkError::new("disk full"));
            }
            self.log
                .lock()
                .unwrap()
                .push(format!("intent start {}", r.vm_name));
        }
        Ok(())
    }
    async fn on_event(&mut self, _event: &Event) -> Result<(), SinkError> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn sinks_see_each_command_before_the_driver_carries_it_out() {
    let log = Log::default();
    let engine = ScriptEngine::new(&["vm1", "vm2", "vm3"], 3);
    let (_c, rx) = Control::new();
    Runtime::default()
        .run(
            engine,
            drivers(FakeDriver::new(Duration::from_secs(3), log.clone())),
            vec![Box::new(OrderSink {
                log: log.clone(),
                refuse_starts: false,
                refuse_once: false,
            })],
            rx,
        )
        .await;
    let log = log.lock().unwrap();
    for vm in ["vm1", "vm2", "vm3"] {
        let intent = log
            .iter()
            .position(|l| *l == format!("intent start {vm}"))
            .unwrap();
        let call = log
            .iter()
            .position(|l| *l == format!("driver start {vm}"))
            .unwrap();
        assert!(intent < call, "{log:?}");
    }
}

/// A journal that never comes back: its command is held, never carried out; after
/// `journal_wait` the run gives up waiting, stops, and the held start is answered as a failure
/// (it never happened).
#[tokio::test(start_paused = true)]
async fn a_failing_sink_keeps_its_command_from_running_and_stops_the_run_after_journal_wait() {
    let log = Log::default();
    let engine = ScriptEngine::new(&["vm1", "vm2"], 1);
    let seen = Arc::clone(&engine.seen);
    let (_c, rx) = Control::new();
    let result = Runtime::new(RuntimeOptions {
        journal_wait: Duration::from_secs(20),
        ..RuntimeOptions::default()
    })
    .run(
        engine,
        drivers(FakeDriver::new(Duration::from_secs(3), log.clone())),
        vec![Box::new(OrderSink {
            log: log.clone(),
            refuse_starts: true,
            refuse_once: false,
        })],
        rx,
    )
    .await;
    assert!(
        !log.lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("driver start"))
    );
    let err = result.error().unwrap();
    assert!(
        err.contains("journal") && err.contains("disk full") && err.contains("journal_wait"),
        "{err}"
    );
    assert!(
        result.elapsed >= Duration::from_secs(20) && result.elapsed < Duration::from_secs(25),
        "the run waited journal_wait for the journal: {:?}",
        result.elapsed
    );
    assert_eq!(result.stop_requested, Some(false));
    assert!(
        matches!(outcome(&seen, "vm1"), Some(Outcome::Failed(ErrorClass::Transient, m)) if m.contains("not carried out"))
    );
    assert_eq!(outcome(&seen, "vm2"), Some(Outcome::Cancelled));
}

#[tokio::test(start_paused = true)]
async fn ndjson_sink_writes_one_parseable_event_per_line() {
    let buf: Vec<u8> = Vec::new();
    let mut sink = NdjsonSink::new(buf);
    let ev = Event {
        at: Time(1500),
        kind: vmove_core::EventKind::RunFinished {
            moved: 2,
            unmigratable: 1,
            cancelled: 0,
        },
    };
    sink.on_event(&ev).await.unwrap();
    sink.on_event(&ev).await.unwrap();
    let text = String::from_utf8(sink.into_inner()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    for l in lines {
        let back: Event = serde_json::from_str(l).unwrap();
        assert_eq!(back, ev);
    }
}

#[tokio::test(start_paused = true)]
async fn a_faster_run_clock_scales_time_handed_to_the_engine() {
    // At speed 10, the fake's 30 s migrations (on the real tokio clock) take 3 s, and the engine
    // sees run time ten times the real time.
    let engine = ScriptEngine::new(&["vm1"], 1);
    let seen = Arc::clone(&engine.seen);
    let (_c, rx) = Control::new();
    let rt = Runtime::new(RuntimeOptions {
        speed: 10.0,
        ..Default::default()
    });
    let result = rt
        .run(
            engine,
            drivers(FakeDriver::new(Duration::from_secs(3), Log::default())),
            vec![],
            rx,
        )
        .await;
    assert_eq!(outcome(&seen, "vm1"), Some(Outcome::Moved));
    let seen = seen.lock().unwrap();
    // The engine polls every run-time second = every 100 ms of real time.
    assert!(seen.timeouts.len() >= 30, "{}", seen.timeouts.len());
    let last = seen.inputs.last().unwrap().0;
    assert!(last >= Time(30_000) && last < Time(32_000), "{last}");
    assert!(
        result.elapsed >= Duration::from_secs(3) && result.elapsed < Duration::from_millis(3300)
    );
}

/// Records every input it is shown.
struct InputSink(Arc<Mutex<Vec<Input>>>);

#[async_trait]
impl EventSink for InputSink {
    fn name(&self) -> &str {
        "inputs"
    }
    async fn on_input(&mut self, _now: Time, input: &Input) -> Result<(), SinkError> {
        self.0.lock().unwrap().push(input.clone());
        Ok(())
    }
    async fn on_event(&mut self, _event: &Event) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A journal that refuses one step and then works again (a database that went away for a
/// moment): the step's starts are held, not failed; once the journal takes them they are
/// carried out, each once and after its intent; no stop, no error, every VM moved.
#[tokio::test(start_paused = true)]
async fn a_journal_back_after_a_refused_step_carries_out_the_held_starts_and_the_run_goes_on() {
    let log = Log::default();
    // Three VMs may start at once; the journal refuses only the first start.
    let engine = ScriptEngine::new(&["vm1", "vm2", "vm3"], 3);
    let seen = Arc::clone(&engine.seen);
    let inputs = Arc::new(Mutex::new(Vec::new()));
    let (_c, rx) = Control::new();
    let result = Runtime::default()
        .run(
            engine,
            drivers(FakeDriver::new(Duration::from_secs(3), log.clone())),
            vec![
                Box::new(OrderSink {
                    log: log.clone(),
                    refuse_starts: true,
                    refuse_once: true,
                }),
                Box::new(InputSink(Arc::clone(&inputs))),
            ],
            rx,
        )
        .await;
    assert_eq!(result.error(), None);
    assert_eq!(result.stop_requested, None);
    assert!(result.held.is_empty(), "{:?}", result.held);
    let log = log.lock().unwrap().clone();
    for vm in ["vm1", "vm2", "vm3"] {
        assert_eq!(outcome(&seen, vm), Some(Outcome::Moved), "{vm}");
        let starts: Vec<usize> = log
            .iter()
            .enumerate()
            .filter(|(_, l)| **l == format!("driver start {vm}"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(starts.len(), 1, "{vm} started once: {log:?}");
        let intent = log
            .iter()
            .position(|l| *l == format!("intent start {vm}"))
            .unwrap();
        assert!(intent < starts[0], "{log:?}");
    }
    let inputs = inputs.lock().unwrap();
    assert!(
        !inputs.iter().any(|i| matches!(
            i,
            Input::Stop { .. } | Input::MigrationStarted { result: Err(_), .. }
        )),
        "no stop, no start answered as failed: {inputs:?}"
    );
}

/// Refuses every step with an error waiting cannot cure (the journal lost the run's lease).
struct LeaseLostSink;

#[async_trait]
impl EventSink for LeaseLostSink {
    fn name(&self) -> &str {
        "journal"
    }
    async fn on_step(&mut self, _now: Time, commands: &[Command]) -> Result<(), SinkError> {
        if commands
            .iter()
            .any(|c| matches!(c, Command::StartMigration(_)))
        {
            return Err(SinkError::lasting(
                "journal x: the lease of run `r` was taken over",
            ));
        }
        Ok(())
    }
    async fn on_event(&mut self, _event: &Event) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Fencing: a lost lease is not an outage to wait out. The run stops at once (no waiting for
/// `journal_wait`), and its start is never carried out.
#[tokio::test(start_paused = true)]
async fn a_lasting_sink_error_stops_the_run_at_once_without_waiting() {
    let log = Log::default();
    let engine = ScriptEngine::new(&["vm1", "vm2"], 1);
    let seen = Arc::clone(&engine.seen);
    let (_c, rx) = Control::new();
    let result = Runtime::default()
        .run(
            engine,
            drivers(FakeDriver::new(Duration::from_secs(3), log.clone())),
            vec![Box::new(LeaseLostSink)],
            rx,
        )
        .await;
    assert!(
        result.elapsed < Duration::from_secs(5),
        "{:?}",
        result.elapsed
    );
    assert!(result.error().unwrap().contains("taken over"));
    assert!(
        !log.lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("driver start"))
    );
    assert!(
        matches!(outcome(&seen, "vm1"), Some(Outcome::Failed(ErrorClass::Transient, m)) if m.contains("not carried out"))
    );
    assert_eq!(outcome(&seen, "vm2"), Some(Outcome::Cancelled));
}

/// Asks one host refresh and is finished at once: the refresh is still in flight when the run
/// ends.
struct RefreshThenDone {
    asked: bool,
}

impl vmove_runtime::Engine for RefreshThenDone {
    fn handle_event(&mut self, _now: Time, _input: Input) {}
    fn handle_timeout(&mut self, _now: Time) {}
    fn poll_command(&mut self) -> Option<Command> {
        if self.asked {
            return None;
        }
        self.asked = true;
        Some(Command::RefreshHost {
            host: vmove_core::HostId::new("a"),
        })
    }
    fn poll_event(&mut self) -> Option<Event> {
        None
    }
    fn poll_timeout(&self) -> Option<Time> {
        None
    }
    fn is_finished(&self) -> bool {
        self.asked
    }
    fn snapshot(&self, now: Time) -> vmove_core::Snapshot {
        ScriptEngine::new(&[], 1).snapshot(now)
    }
}

/// Records the keys of the commands and inputs it is given.
struct KeySink {
    log: Log,
}

#[async_trait]
impl EventSink for KeySink {
    fn name(&self) -> &str {
        "journal"
    }
    async fn on_command(&mut self, _now: Time, command: &Command) -> Result<(), SinkError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("intent {:?}", command.key()));
        Ok(())
    }
    async fn on_input(&mut self, _now: Time, input: &Input) -> Result<(), SinkError> {
        let line = match input {
            Input::HostRefreshed { result: Err(f), .. } => {
                format!("answer {:?} failed: {}", input.key(), f.message)
            }
            _ => format!("answer {:?}", input.key()),
        };
        self.log.lock().unwrap().push(line);
        Ok(())
    }
    async fn on_event(&mut self, _event: &Event) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A journal test saw "intent RefreshHost { host: hv-02 } has no outcome" at the end of a
/// finished run: the run ended with the last move's refresh in flight and aborted it unanswered.
#[tokio::test(start_paused = true)]
async fn a_finished_run_gives_every_refresh_still_in_flight_its_answer() {
    let log = Log::default();
    let (_c, rx) = Control::new();
    Runtime::default()
        .run(
            RefreshThenDone { asked: false },
            drivers(FakeDriver::new(Duration::from_secs(1), Log::default())),
            vec![Box::new(KeySink { log: log.clone() })],
            rx,
        )
        .await;
    let log = log.lock().unwrap();
    let intent = log.iter().position(|l| l.starts_with("intent"));
    let answer = log.iter().position(|l| l.starts_with("answer"));
    assert!(intent.is_some(), "{log:?}");
    assert!(answer > intent, "the refresh was never answered: {log:?}");
    assert!(
        log.iter()
            .any(|l| l.contains("failed: not answered before the run ended")),
        "{log:?}"
    );
}
