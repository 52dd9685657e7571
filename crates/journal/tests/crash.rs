//! Crash tests with real processes: a child writing in a loop is killed with SIGKILL, and two
//! children compete for one run's lease. The children are this test binary run again with
//! `VMOVE_JOURNAL_CHILD` set (see `child_process_entry`).
#![allow(clippy::unwrap_used)]

use crate::common::*;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command as Proc, Stdio};
use vmove_core::{Command, Selection, Time};
use vmove_journal::{Clock, Journal, ManualClock, SystemClock, rebuild};

const CHILD_ENV: &str = "VMOVE_JOURNAL_CHILD";

/// Not a test of its own: the body of a child process when `VMOVE_JOURNAL_CHILD` is set.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let path = std::env::var("VMOVE_JOURNAL_PATH").unwrap();
    let run = std::env::var("VMOVE_JOURNAL_RUN").unwrap();
    let mut out = std::io::stdout();
    let mut j = Journal::open(&path).unwrap();
    match mode.as_str() {
        // Create a run and write the scripted run over and over, acknowledging each record
        // only after the call returned (so it must be durable).
        "write-loop" => {
            j.create_run(&new_run(&run, Selection::Names(vec![format!("{run}-*")])))
                .unwrap();
            for round in 0.. {
                let steps = script(&run, &format!("{run}-{round}"), 3);
                let mut ids = Vec::new();
                for (i, step) in steps.iter().enumerate() {
                    let seq = write_steps_one(&mut j, &run, step, i, &mut ids);
                    writeln!(out, "DURABLE {seq}").unwrap();
                    out.flush().unwrap();
                }
            }
        }
        // Take the lease of an existing run and write one intent.
        "race" => match j.acquire(&run) {
            Ok(_) => {
                j.record_intent(&run, Time(1), &Command::RefreshHost { host: "a".into() })
                    .unwrap();
                writeln!(out, "WON {}", std::process::id()).unwrap();
                out.flush().unwrap();
                // Stay alive while the other child tries: a dead winner's lease is taken
                // over at once (same machine, pid gone), which is not the race tested here.
                std::thread::sleep(std::time::Duration::from_secs(3));
            }
            Err(e) => {
                let write =
                    j.record_intent(&run, Time(1), &Command::RefreshHost { host: "a".into() });
                writeln!(out, "REFUSED {}", e).unwrap();
                writeln!(
                    out,
                    "WRITE {}",
                    if write.is_err() {
                        "refused"
                    } else {
                        "accepted"
                    }
                )
                .unwrap();
            }
        },
        other => panic!("unknown child mode {other}"),
    }
}

/// Writes one step (a one-element `write_steps`).
fn write_steps_one(
    j: &mut Journal,
    run: &str,
    step: &Step,
    i: usize,
    ids: &mut Vec<vmove_journal::IntentId>,
) -> u64 {
    let at = step_time(step, i);
    match step {
        Step::Intent(c) => {
            let id = j.record_intent(run, at, c).unwrap();
            ids.push(id);
            id.0
        }
        Step::Outcome(k, input) => j.record_outcome(run, ids[*k], at, input).unwrap(),
        Step::Input(input) => j.record_input(run, at, input).unwrap(),
        Step::Event(e) => j.record_event(run, e).unwrap(),
    }
}

/// `f`'s name as the test harness knows it: its module path without the binary's name (this file
/// is a module of the crate's one integration-test binary).
fn harness_name(f: &str) -> String {
    let m = module_path!();
    format!("{}::{f}", m.split_once("::").map_or(m, |(_, rest)| rest))
}

fn spawn_child(mode: &str, path: &Path, run: &str) -> Child {
    Proc::new(std::env::current_exe().unwrap())
        .args([
            harness_name("child_process_entry").as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, mode)
        .env("VMOVE_JOURNAL_PATH", path)
        .env("VMOVE_JOURNAL_RUN", run)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGKILL at five different points of a write loop. After each kill the journal opens, holds
/// every record the child acknowledged (a record is durable when its call returns), is a
/// consistent prefix, leaves the earlier runs untouched, and the dead child's lease is taken
/// over at once (it is provably dead: same boot, its pid gone), saying so.
fn a_process_killed_mid_write_keeps_every_acknowledged_record_and_a_consistent_prefix() {
    let (_dir, path) = temp_path();
    let mut earlier: Vec<(String, Vec<vmove_journal::Entry>)> = Vec::new();
    for (round, kill_after) in [3usize, 11, 29, 57, 101].into_iter().enumerate() {
        let run = format!("crash{round}");
        let mut child = spawn_child("write-loop", &path, &run);
        let pid = child.id();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut acknowledged = 0u64;
        let mut lines = stdout.lines();
        while acknowledged < kill_after as u64 {
            let line = lines
                .next()
                .expect("the child died before it was killed")
                .unwrap();
            if let Some((_, n)) = line.split_once("DURABLE ") {
                acknowledged = n.parse().unwrap();
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let wall = SystemClock.now();
        let clock = ManualClock::new(wall);
        let mut j = open_as(&path, &clock, other(1));
        let rec = j.load_run(&run).unwrap();
        assert!(
            rec.summary.entries >= acknowledged,
            "round {round}: {} entries, but the child acknowledged {acknowledged}",
            rec.summary.entries
        );
        eprintln!(
            "round {round}: killed after {acknowledged} acknowledged, {} entries found",
            rec.summary.entries
        );
        assert_consistent(&rec);
        for (id, entries) in &earlier {
            assert_eq!(
                &j.load_run(id).unwrap().entries,
                entries,
                "run {id} changed"
            );
        }
        // The dead child (this machine, this boot, its pid gone) is taken over at once, and
        // the take-over names it; before schema 3 its lease held until it expired.
        let (_, took) = j.acquire_taking_over(&run).unwrap();
        let took = took.expect("a dead holder on this machine is taken over before expiry");
        assert_eq!(took.holder.pid, pid);
        assert!(took.until > wall, "the lease had not expired");
        assert_eq!(
            took.to_string(),
            format!("holder pid {pid} on this machine is gone: taking over")
        );
        // What resume would start from: every VM the journal knows, none final yet at the last round's cut
        // unless the child got that far.
        let facts = rebuild(&rec);
        assert!(
            !facts.is_empty(),
            "round {round}: the child selected at least one VM"
        );
        for v in facts.values() {
            assert!(v.attempt <= 2);
            for i in &v.open_intents {
                assert!(i.outcome.is_none());
            }
        }
        j.finish_run(&run, vmove_journal::RunEnd::Aborted).unwrap();
        earlier.push((run.clone(), j.load_run(&run).unwrap().entries));
    }
}

/// Two processes race for one run's lease: exactly one wins; the loser is refused with the
/// winner's pid in the message, and nothing is written for it.
fn two_processes_competing_for_a_lease_only_one_drives_the_run() {
    let (_dir, path) = temp_path();
    {
        let mut j = Journal::open(&path).unwrap();
        j.create_run(&new_run("race", Selection::All)).unwrap();
        j.release("race").unwrap();
    }
    let children = [
        spawn_child("race", &path, "race"),
        spawn_child("race", &path, "race"),
    ];
    let mut outputs = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a child failed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        outputs.push(text);
    }
    let won: Vec<&String> = outputs.iter().filter(|o| o.contains("WON ")).collect();
    let lost: Vec<&String> = outputs.iter().filter(|o| o.contains("REFUSED ")).collect();
    assert_eq!((won.len(), lost.len()), (1, 1), "outputs: {outputs:?}");
    let winner: u32 = won[0]
        .lines()
        .find_map(|l| l.split_once("WON ").map(|(_, n)| n))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        lost[0].contains(&format!("driven by process {winner} ")),
        "{}",
        lost[0]
    );
    assert!(lost[0].contains("WRITE refused"), "{}", lost[0]);
    let j = Journal::open(&path).unwrap();
    let rec = j.load_run("race").unwrap();
    assert_eq!(rec.entries.len(), 1, "only the winner wrote");
    assert_eq!(rec.summary.driver.pid, winner);
}

on_both_backends!(
    a_process_killed_mid_write_keeps_every_acknowledged_record_and_a_consistent_prefix,
    two_processes_competing_for_a_lease_only_one_drives_the_run,
);
