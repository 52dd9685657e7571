//! Crash safety of the real `vmove` binary on `driver = "sim"` hosts kept in a state file
//! (`state_file`: a write-ahead log of the simulated hosts' state-changing calls, so the cluster
//! outlives a killed process):
//! - two `vmove` processes on the same VMs: the second is refused, exit 1, nothing touched;
//! - `kill -9` of the driving process at >= 20 seeded random times, `vmove resume` after each:
//!   every VM ends on exactly one host, moved or unmigratable/cancelled with a reason, no attempt
//!   started twice, nothing removed twice, the placement rules kept.
#![allow(clippy::unwrap_used)]

use crate::common::sim_state::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vmove_core::VmId;

/// Simulated seconds per real second.
const SPEED: u64 = 8;

struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        let dir = std::env::temp_dir().join(format!("vmove-crash-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        let cfg = format!(
            "[defaults]\njournal = \"{j}\"\njournal_lease = \"1s\"\n\n{hosts}",
            j = dir.join("journal.db").display(),
            hosts = hosts_config(SPEED, &dir.join("sim.state"))
        );
        std::fs::write(dir.join("vmove.toml"), cfg).unwrap();
        Sandbox { dir }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vmove"));
        c.args(args)
            .arg("--plain")
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("VMOVE_") {
                c.env_remove(k);
            }
        }
        c.env("HOME", self.dir.join("home"));
        c
    }

    fn spawn(&self, args: &[&str], log: &str) -> Child {
        let out = std::fs::File::create(self.dir.join(format!("{log}.out"))).unwrap();
        let err = std::fs::File::create(self.dir.join(format!("{log}.err"))).unwrap();
        self.cmd(args)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap()
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.join(rel)).unwrap_or_default()
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let o = self.cmd(args).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[test]
fn a_second_vmove_on_the_same_vms_is_refused_and_touches_nothing() {
    let sb = Sandbox::new("concurrent");
    let mut first = sb.spawn(&["evacuate", "a", "--to", "b,c"], "first");
    // Wait until the first run has started moving (a start is in the hosts' log).
    wait_for(
        || {
            sb.read("sim.state")
                .lines()
                .any(|l| l.contains("\"call\":\"start\""))
        },
        Duration::from_secs(30),
        "the first run's first start",
    );
    let before: Vec<String> = sb.read("sim.state").lines().map(str::to_owned).collect();
    let (code, out, err) = sb.run(&["migrate", "web-1", "--from", "a", "--to", "c"]);
    assert_eq!(code, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    // Refused by the sim hosts' state file, which one process holds at a time (two used to
    // replay it and both move the same VM), or by the journal's guard on overlapping runs.
    let in_use = |e: &str| e.contains("sim.state` is in use by another vmove process");
    assert!(
        in_use(&err)
            || (err.contains("the run was refused; nothing was touched")
                && (err.contains("web-1") || err.contains("overlap"))),
        "a clear refusal naming the VM, the overlap or the held hosts: {err}"
    );
    // A second evacuation of the same host is refused too.
    let (code, _, err2) = sb.run(&["evacuate", "a", "--to", "b"]);
    assert_eq!(code, Some(1), "{err2}");
    assert!(err2.contains("refused") || in_use(&err2), "{err2}");
    let status = first.wait().unwrap();
    assert!(
        matches!(status.code(), Some(0) | Some(2)),
        "the first run went on: {status:?}\n{}",
        sb.read("first.err")
    );
    // Nothing of the refused runs reached the hosts: every start and removal is the first run's,
    // and the log only grew (nothing was rewritten).
    let after: Vec<String> = sb.read("sim.state").lines().map(str::to_owned).collect();
    assert_eq!(after[..before.len()], before[..]);
    let (_, history, _) = sb.run(&["history"]);
    let runs: Vec<&str> = history.lines().skip(1).collect();
    assert_eq!(
        runs.len(),
        1,
        "only the first run is in the journal:\n{history}"
    );
    let first_id = runs[0].split_whitespace().next().unwrap();
    for (_, v) in calls(&sb.dir.join("sim.state")) {
        assert_eq!(
            v["req"]["run_id"].as_str(),
            Some(first_id),
            "a call of another run reached the hosts: {v}"
        );
    }
}

#[test]
fn kill_9_at_20_random_points_and_resume_moves_every_vm_once() {
    let sb = Sandbox::new("kill9");
    let mut rng = Lcg(0x5eed_2026);
    let mut kills = 0;
    let mut refusals = 0;
    let mut child = sb.spawn(&["evacuate", "a", "--to", "b,c"], "run0");
    let mut started_runs = 1;
    let t0 = Instant::now();
    let final_code;
    loop {
        let delay = Duration::from_millis(rng.next_ms(300, 1500));
        let deadline = Instant::now() + delay;
        let mut exited = None;
        while Instant::now() < deadline {
            if let Some(s) = child.try_wait().unwrap() {
                exited = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let n = started_runs - 1;
        match exited {
            None if kills < 20 => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
            None => {
                // Enough kills: let this one finish.
                let s = child.wait().unwrap();
                final_code = s.code();
                break;
            }
            Some(s) => {
                let err = sb.read(&format!("run{n}.err"));
                if err.contains("is driven by process") {
                    // The killed process's lease has not expired yet: a clear refusal naming
                    // the holder and until when.
                    assert!(err.contains("lease valid until"), "{err}");
                    assert_eq!(s.code(), Some(1), "{err}");
                    refusals += 1;
                    std::thread::sleep(Duration::from_millis(150));
                } else if err.contains("holds no unfinished run") {
                    panic!("the run ended while it was being killed?\n{err}");
                } else {
                    final_code = s.code();
                    break;
                }
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(150),
            "the crash loop takes too long ({kills} kills)"
        );
        child = sb.spawn(&["resume"], &format!("run{started_runs}"));
        started_runs += 1;
    }
    let last = started_runs - 1;
    assert!(
        matches!(final_code, Some(0) | Some(2)),
        "the last resume ended the run: {final_code:?}\n{}\n{}",
        sb.read(&format!("run{last}.out")),
        sb.read(&format!("run{last}.err"))
    );
    assert!(kills >= 20, "{kills} kills");
    // The kills fell while moves were in flight: resumes had VMs to locate first.
    let mut in_flight = 0;
    for i in 1..started_runs {
        let err = sb.read(&format!("run{i}.err"));
        if let Some(n) = err
            .split("VMs recovered, ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse::<u32>().ok())
        {
            in_flight += u32::from(n > 0);
        }
    }
    assert!(
        in_flight >= 10,
        "only {in_flight} resumes found a move in flight"
    );
    // A killed holder is dead on this machine: resume takes its lease over at once, saying so,
    // instead of being refused until the lease expires (issue 12, section 5).
    let takeovers = (1..started_runs)
        .filter(|i| {
            sb.read(&format!("run{i}.err"))
                .contains("on this machine is gone: taking over")
        })
        .count();
    assert_eq!(
        refusals, 0,
        "a resume was refused although its holder was dead"
    );
    assert!(takeovers >= 5, "only {takeovers} take-overs");
    eprintln!(
        "{kills} kills, {refusals} resumes refused while a lease was live, {takeovers} take-overs \
         of a dead holder, {in_flight} resumes found moves in flight, {started_runs} processes, {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // The journal: one run, finished; every VM final, with a reason unless moved.
    let (_, history, _) = sb.run(&["history"]);
    let rows: Vec<&str> = history.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{history}");
    assert!(rows[0].contains("finished"), "{history}");
    let (code, _, err) = sb.run(&["report", "--report", "report.json"]);
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&sb.read("report.json")).unwrap();
    let vms = report["vms"].as_array().unwrap();
    assert_eq!(vms.len(), VMS.len(), "{report:#}");

    // The hosts: replay the state file.
    assert_hosts_agree(&sb.dir.join("sim.state"), &report);
    // big-1 (100 GiB of memory; b and c have 64) fits nowhere: unmigratable with a reason, still on a.
    let big = vms.iter().find(|v| v["name"] == "big-1").unwrap();
    assert_eq!(big["outcome"], "unmigratable", "{big}");
    let moved = vms.iter().filter(|v| v["outcome"] == "moved").count();
    assert_eq!(moved, VMS.len() - 1, "every VM that fits moved: {report:#}");
}

/// Starts a run, waits for its first start, reads `status` while it goes, asks `abort`.
fn abort_while_running(tag: &str, now: bool) -> (Sandbox, serde_json::Value, String) {
    let sb = Sandbox::new(tag);
    let mut child = sb.spawn(&["evacuate", "a", "--to", "b,c"], "run");
    wait_for(
        || sb.read("sim.state").contains("\"call\":\"start\""),
        Duration::from_secs(30),
        "the first start",
    );
    let (_, history, _) = sb.run(&["history"]);
    let run = history
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    // Another process reads the run while it goes.
    let (code, status, err) = sb.run(&["status", &run]);
    assert_eq!(code, Some(0), "{err}");
    assert!(status.contains(&format!("run {run}: running")), "{status}");
    assert!(status.contains("moving"), "a VM shows as moving: {status}");
    assert!(status.contains("big-1"), "{status}");
    let args: Vec<&str> = if now {
        vec!["abort", &run, "--now"]
    } else {
        vec!["abort", &run]
    };
    let (code, out, err) = sb.run(&args);
    assert_eq!(code, Some(0), "{out}{err}");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the run did not stop after `abort`"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "{}", sb.read("run.err"));
    assert!(
        sb.read("run.err")
            .contains("stop requested through the journal"),
        "{}",
        sb.read("run.err")
    );
    let (_, history, _) = sb.run(&["history"]);
    assert!(history.contains("aborted"), "{history}");
    let (code, _, err) = sb.run(&["report", &run, "--report", "r.json"]);
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&sb.read("r.json")).unwrap();
    // An aborted run is over: resume refuses it.
    let (code, _, err) = sb.run(&["resume", &run]);
    assert_eq!(code, Some(1));
    assert!(err.contains("aborted"), "{err}");
    (sb, report, run)
}

#[test]
fn abort_stops_starting_moves_and_lets_running_ones_finish() {
    let (sb, report, _) = abort_while_running("abort", false);
    let vms = report["vms"].as_array().unwrap();
    let moved = vms.iter().filter(|v| v["outcome"] == "moved").count();
    let cancelled = vms.iter().filter(|v| v["outcome"] == "cancelled").count();
    assert!(moved >= 1, "the running moves finished: {report:#}");
    assert!(cancelled >= 1, "the rest were not started: {report:#}");
    for v in vms.iter().filter(|v| v["outcome"] != "moved") {
        assert!(v["reason"].as_str().is_some(), "{v}");
    }
    let c = replay(&sb.dir.join("sim.state"));
    assert_one_host_each(&c);
    // No abort reached the hosts: running moves were let finish.
    assert!(
        !sb.read("sim.state").contains("\"call\":\"abort\""),
        "a plain abort aborts nothing"
    );
}

#[test]
fn abort_now_aborts_running_migrations_and_leaves_each_vm_on_one_host() {
    let (sb, report, _) = abort_while_running("abort-now", true);
    let c = replay(&sb.dir.join("sim.state"));
    assert_one_host_each(&c);
    assert!(
        sb.read("sim.state").contains("\"call\":\"abort\""),
        "--now aborted the running migrations"
    );
    for v in report["vms"].as_array().unwrap() {
        let id = VmId::new(v["id"].as_str().unwrap());
        let host = c.vm_host(&id).map(|h| h.to_string());
        if v["outcome"] == "moved" {
            assert_eq!(host.as_deref(), v["destination"].as_str(), "{v}");
        } else {
            assert_eq!(host.as_deref(), Some("a"), "not moved, still on a: {v}");
        }
    }
}
