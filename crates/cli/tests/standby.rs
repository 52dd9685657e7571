//! Take-over from another machine on a shared PostgreSQL journal (issue #18): `vmove resume
//! --standby` and `vmove resume RUN` run as a second "machine" (`VMOVE_LEASE_HOST`: the host
//! name written in the leases this process takes; two names on one machine look like two
//! machines to each other, so a holder is waited out until its lease expires, as across
//! machines), against `vmove` processes on `driver = "sim"` hosts kept in a state file.
//! - a holder killed with `kill -9` at 10 seeded points, one run each: the standby running all
//!   along takes each over once the lease expires and ends it; every VM on exactly one host, no
//!   attempt started twice, nothing removed twice, the run finished;
//! - a standby leaves a live run (holder alive, renewing) alone;
//! - `resume RUN` from another machine is refused naming the holder while its lease is live
//!   and takes the run once it expired; `status`, `history` and `abort` work from there;
//! - on one machine (a journal file), a killed holder's run is taken over at once (provably
//!   dead), and Ctrl-C while the standby drives it stops the run as it stops `resume`;
//! - the standby's clear errors: no journal, a journal it cannot reach, bad arguments.
#![allow(clippy::unwrap_used)]

use crate::common::sim_state::*;
use crate::common::{Run, Sandbox};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vmove_journal::pg_server;

/// Simulated seconds per real second: an evacuation of `VMS` lasts about 2 s.
const SPEED: u64 = 200;
/// The same for the runs that must outlast several leases (about 12 s).
const SLOW: u64 = 40;

/// The seed of the kill points: `VMOVE_TEST_SEED` (decimal or 0x-hex) replays a failure.
fn seed() -> u64 {
    match std::env::var("VMOVE_TEST_SEED") {
        Ok(s) => match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).unwrap(),
            None => s.parse().unwrap(),
        },
        Err(_) => 0x5eed_0018,
    }
}

/// A `vmove` command of the sandbox on the journal `url`, as machine `host`.
fn on(sb: &Sandbox, url: &str, host: &str, args: &[&str]) -> Command {
    let mut c = sb.cmd(args);
    c.env("VMOVE_JOURNAL", url).env("VMOVE_LEASE_HOST", host);
    c
}

/// Spawns `cmd` with its stdout and stderr in `NAME.out` and `NAME.err` of the sandbox.
fn spawn(sb: &Sandbox, mut cmd: Command, name: &str) -> Child {
    let out = std::fs::File::create(sb.dir.join(format!("{name}.out"))).unwrap();
    let err = std::fs::File::create(sb.dir.join(format!("{name}.err"))).unwrap();
    cmd.stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap()
}

fn read(sb: &Sandbox, rel: &str) -> String {
    std::fs::read_to_string(sb.dir.join(rel)).unwrap_or_default()
}

/// Writes `NAME.toml`: a 1 s lease (a killed holder is waited out quickly) and the sim hosts
/// with their state in `NAME.state`.
fn round_config(sb: &Sandbox, name: &str, speed: u64, lease: &str) -> String {
    let cfg = format!(
        "[defaults]\njournal_lease = \"{lease}\"\n\n{}",
        hosts_config(speed, &sb.dir.join(format!("{name}.state")))
    );
    sb.write(&format!("{name}.toml"), &cfg);
    format!("{name}.toml")
}

/// The run id an evacuation printed on stderr (`vmove: run ID (journal ...`).
fn run_id(err: &str) -> Option<String> {
    err.lines()
        .find_map(|l| l.strip_prefix("vmove: run "))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_owned)
}

/// The journal's runs (`vmove history --json`).
fn history(sb: &Sandbox, url: &str) -> Vec<serde_json::Value> {
    let r = Run::from(
        on(sb, url, "machine-3", &["history", "--json"])
            .output()
            .unwrap(),
    );
    r.expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    doc["runs"].as_array().unwrap().clone()
}

fn state_of(sb: &Sandbox, url: &str, run: &str) -> Option<String> {
    history(sb, url)
        .into_iter()
        .find(|r| r["id"] == run)
        .map(|r| r["state"].as_str().unwrap().to_owned())
}

/// Sends `signal` to a child this test started.
fn signal(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal} {}", child.id());
}

fn wait_exit(child: &mut Child, within: Duration, what: &str) -> Option<i32> {
    let mut code = None;
    wait_for(
        || match child.try_wait().unwrap() {
            Some(s) => {
                code = Some(s.code());
                true
            }
            None => false,
        },
        within,
        what,
    );
    code.unwrap()
}

#[test]
fn a_standby_takes_over_each_run_killed_at_10_seeded_points_and_moves_every_vm_once() {
    let Some(server) = pg_server::server() else {
        return;
    };
    let url = server.fresh_database("standby_kill9");
    let sb = Sandbox::new("standby-kill9");
    let seed = seed();
    eprintln!("kill points seeded with {seed:#x} (VMOVE_TEST_SEED={seed:#x} replays them)");
    let mut rng = Lcg(seed);
    let t0 = Instant::now();
    sb.write("standby.toml", "[defaults]\njournal_lease = \"1s\"\n");
    let mut standby = spawn(
        &sb,
        on(
            &sb,
            &url,
            "machine-2",
            &["resume", "--standby", "--plain", "--config", "standby.toml"],
        ),
        "standby",
    );
    wait_for(
        || read(&sb, "standby.err").contains("vmove: standing by: watching the journal"),
        Duration::from_secs(20),
        "the standby to say what it watches",
    );
    let mut in_flight = 0;
    for round in 0..10 {
        let name = format!("round{round}");
        let cfg = round_config(&sb, &name, SPEED, "1s");
        let mut holder = spawn(
            &sb,
            on(
                &sb,
                &url,
                "machine-1",
                &["evacuate", "a", "--to", "b,c", "--plain", "--config", &cfg],
            ),
            &name,
        );
        // The run exists (its id is said once its lease is taken), then a seeded delay into it.
        wait_for(
            || run_id(&read(&sb, &format!("{name}.err"))).is_some(),
            Duration::from_secs(20),
            "the run's id",
        );
        let run = run_id(&read(&sb, &format!("{name}.err"))).unwrap();
        let delay = Duration::from_millis(rng.next_ms(100, 1200));
        std::thread::sleep(delay);
        assert!(
            holder.try_wait().unwrap().is_none(),
            "round {round}: the run ended before its kill point ({delay:?}): {}",
            read(&sb, &format!("{name}.err"))
        );
        holder.kill().unwrap(); // SIGKILL
        holder.wait().unwrap();
        let killed_at = Instant::now();
        // The standby takes it over once its lease expired and drives it to its end.
        wait_for(
            || read(&sb, "standby.err").contains(&format!("run {run} is over here")),
            Duration::from_secs(40),
            &format!("round {round}: run {run} ended by the standby"),
        );
        assert_eq!(state_of(&sb, &url, &run).as_deref(), Some("finished"));
        let err = read(&sb, "standby.err");
        assert!(
            err.contains(&format!(
                "taking over run {run}: the lease of process {} on host `machine-1` expired",
                holder.id()
            )),
            "round {round}: {err}"
        );
        assert!(
            err.contains(&format!("run {run} is over here (exit code 2)")),
            "round {round}: {err}"
        );
        let driver = history(&sb, &url)
            .into_iter()
            .find(|r| r["id"] == run.as_str())
            .unwrap()["driver"]["host"]
            .clone();
        assert_eq!(
            driver, "machine-2",
            "round {round}: the standby drove it last"
        );
        // The hosts: each VM once, on one host; the report from another machine.
        let report_file = format!("{name}.json");
        Run::from(
            on(
                &sb,
                &url,
                "machine-3",
                &["report", &run, "--report", &report_file],
            )
            .output()
            .unwrap(),
        )
        .expect_code(0);
        let report: serde_json::Value = serde_json::from_str(&read(&sb, &report_file)).unwrap();
        let c = assert_hosts_agree(&sb.dir.join(format!("{name}.state")), &report);
        assert_one_host_each(&c);
        let vms = report["vms"].as_array().unwrap();
        assert_eq!(
            vms.iter().filter(|v| v["outcome"] == "moved").count(),
            VMS.len() - 1,
            "round {round}: every VM that fits moved: {report:#}"
        );
        let resumed = err
            .split(&format!("resuming run {run}: "))
            .nth(1)
            .and_then(|t| t.split(" VMs recovered, ").nth(1))
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap();
        in_flight += u32::from(resumed > 0);
        eprintln!(
            "round {round}: killed {delay:?} into run {run}, {resumed} move(s) in flight, taken \
             over and finished {:.1} s after the kill",
            killed_at.elapsed().as_secs_f64()
        );
    }
    assert!(
        in_flight >= 5,
        "only {in_flight} kills fell while moves were in flight"
    );
    assert!(
        !read(&sb, "standby.err").contains("could not be resumed"),
        "{}",
        read(&sb, "standby.err")
    );
    // Idle, the standby stops cleanly on SIGTERM.
    signal(&standby, "-TERM");
    let code = wait_exit(&mut standby, Duration::from_secs(20), "the standby's end");
    assert_eq!(code, Some(0), "{}", read(&sb, "standby.err"));
    assert!(
        read(&sb, "standby.err").contains("SIGTERM: standby stopped (no run was being driven)"),
        "{}",
        read(&sb, "standby.err")
    );
    eprintln!(
        "10 kills, 10 take-overs, {in_flight} with moves in flight, {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn a_standby_leaves_a_live_run_alone() {
    let Some(server) = pg_server::server() else {
        return;
    };
    let url = server.fresh_database("standby_live");
    let sb = Sandbox::new("standby-live");
    // `-vv`: the standby says each time it looks at a run and leaves it alone.
    let mut standby = spawn(
        &sb,
        on(
            &sb,
            &url,
            "machine-2",
            &["resume", "--standby", "--once", "--plain", "-vv"],
        ),
        "standby",
    );
    wait_for(
        || read(&sb, "standby.err").contains("standing by"),
        Duration::from_secs(20),
        "the standby to start",
    );
    // A slow run with a 1 s lease: it lasts several leases, renewing its own.
    let cfg = round_config(&sb, "live", SLOW, "1s");
    let mut holder = spawn(
        &sb,
        on(
            &sb,
            &url,
            "machine-1",
            &["evacuate", "a", "--to", "b,c", "--plain", "--config", &cfg],
        ),
        "live",
    );
    wait_for(
        || run_id(&read(&sb, "live.err")).is_some(),
        Duration::from_secs(20),
        "the run's id",
    );
    let run = run_id(&read(&sb, "live.err")).unwrap();
    let code = wait_exit(&mut holder, Duration::from_secs(90), "the run's end");
    assert_eq!(code, Some(2), "{}", read(&sb, "live.err"));
    let err = read(&sb, "standby.err");
    let looks = err
        .matches(&format!(
            "standby leaves run {run} alone: run `{run}` is driven by process"
        ))
        .count();
    assert!(
        looks >= 2,
        "the standby looked at the live run {looks} times: {err}"
    );
    assert!(!err.contains("taking over"), "{err}");
    assert!(
        !read(&sb, "live.err").contains("lease"),
        "{}",
        read(&sb, "live.err")
    );
    assert_eq!(state_of(&sb, &url, &run).as_deref(), Some("finished"));
    // A finished run is nobody's to take: the standby is still waiting (--once), and stops on
    // Ctrl-C.
    assert!(standby.try_wait().unwrap().is_none(), "{err}");
    signal(&standby, "-INT");
    let code = wait_exit(&mut standby, Duration::from_secs(20), "the standby's end");
    assert_eq!(code, Some(0), "{}", read(&sb, "standby.err"));
    assert!(
        read(&sb, "standby.err").contains("Ctrl-C: standby stopped"),
        "{}",
        read(&sb, "standby.err")
    );
}

#[test]
fn resume_from_another_machine_waits_out_a_live_lease_and_status_history_abort_work_from_there() {
    let Some(server) = pg_server::server() else {
        return;
    };
    let url = server.fresh_database("standby_resume");
    let sb = Sandbox::new("standby-resume");
    // A 3 s lease: the holder renews it every second, so a refusal right after its kill is
    // certain.
    let cfg = round_config(&sb, "run", SLOW / 2, "3s");
    let mut holder = spawn(
        &sb,
        on(
            &sb,
            &url,
            "machine-1",
            &["evacuate", "a", "--to", "b,c", "--plain", "--config", &cfg],
        ),
        "run",
    );
    wait_for(
        || read(&sb, "run.state").contains("\"call\":\"start\""),
        Duration::from_secs(20),
        "the first start",
    );
    let run = run_id(&read(&sb, "run.err")).unwrap();
    // `status` and `history` from another machine while the run goes.
    let st = Run::from(
        on(&sb, &url, "machine-2", &["status", &run])
            .output()
            .unwrap(),
    );
    st.expect_code(0);
    assert!(st.stdout.contains(&format!("run {run}: running")), "{st:?}");
    assert!(st.stdout.contains("moving"), "{st:?}");
    assert_eq!(state_of(&sb, &url, &run).as_deref(), Some("running"));
    // `resume RUN` from another machine: refused, naming the holder and its lease.
    let pid = holder.id();
    let refused = |r: &Run| {
        r.expect_code(1);
        assert!(
            r.stderr.contains(&format!(
                "cannot resume: run `{run}` is driven by process {pid} on host `machine-1` (lease valid until"
            )),
            "{r:?}"
        );
    };
    let r = Run::from(
        on(
            &sb,
            &url,
            "machine-2",
            &["resume", &run, "--plain", "--config", &cfg],
        )
        .output()
        .unwrap(),
    );
    refused(&r);
    // The holder dies: from another machine nothing proves it, so its lease is waited out.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let r = Run::from(
        on(
            &sb,
            &url,
            "machine-2",
            &["resume", &run, "--plain", "--config", &cfg],
        )
        .output()
        .unwrap(),
    );
    refused(&r);
    let mut refusals = 1;
    let mut resumer = None;
    wait_for(
        || {
            let mut c = on(
                &sb,
                &url,
                "machine-2",
                &["resume", &run, "--plain", "--config", &cfg],
            );
            let out = std::fs::File::create(sb.dir.join("resume.out")).unwrap();
            let err = std::fs::File::create(sb.dir.join("resume.err")).unwrap();
            let mut child = c
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .spawn()
                .unwrap();
            // Refused (exit 1 at once) or resuming (says so).
            wait_for(
                || {
                    child.try_wait().unwrap().is_some()
                        || read(&sb, "resume.err").contains("resuming run")
                },
                Duration::from_secs(20),
                "the resume's answer",
            );
            if read(&sb, "resume.err").contains("resuming run") {
                resumer = Some(child);
                return true;
            }
            let code = child.wait().unwrap().code();
            refused(&Run {
                code,
                stdout: read(&sb, "resume.out"),
                stderr: read(&sb, "resume.err"),
            });
            refusals += 1;
            false
        },
        Duration::from_secs(30),
        "the dead holder's lease to expire",
    );
    let mut resumer = resumer.unwrap();
    assert!(refusals >= 2, "{refusals}");
    // The run is machine-2's now; machine-3 aborts it through the journal.
    let r = Run::from(
        on(&sb, &url, "machine-3", &["abort", &run])
            .output()
            .unwrap(),
    );
    r.expect_code(0);
    let code = wait_exit(
        &mut resumer,
        Duration::from_secs(60),
        "the resumed run's end",
    );
    assert_eq!(code, Some(130), "{}", read(&sb, "resume.err"));
    assert!(
        read(&sb, "resume.err").contains("stop requested through the journal"),
        "{}",
        read(&sb, "resume.err")
    );
    let row = history(&sb, &url)
        .into_iter()
        .find(|r| r["id"] == run.as_str())
        .unwrap();
    assert_eq!(row["state"], "aborted", "{row}");
    assert_eq!(row["driver"]["host"], "machine-2", "{row}");
    let c = replay(&sb.dir.join("run.state"));
    assert_one_host_each(&c);
}

/// On one machine (a journal file, no lease host names): a killed holder is provably dead, so
/// the standby takes its run over at once, saying so; Ctrl-C while it drives the run stops the
/// run as it stops `resume` (no new moves, running ones finish) and then the standby.
#[test]
fn a_standby_takes_a_dead_holders_run_at_once_and_ctrl_c_stops_it_like_resume() {
    let sb = Sandbox::new("standby-same-machine");
    let journal = sb.dir.join("journal.db");
    let cfg = format!(
        "[defaults]\njournal = \"{}\"\njournal_lease = \"30s\"\n\n{}",
        journal.display(),
        hosts_config(SLOW, &sb.dir.join("run.state"))
    );
    sb.write("vmove.toml", &cfg);
    let mut holder = spawn(
        &sb,
        sb.cmd(&["evacuate", "a", "--to", "b,c", "--plain"]),
        "run",
    );
    wait_for(
        || read(&sb, "run.state").contains("\"call\":\"start\""),
        Duration::from_secs(20),
        "the first start",
    );
    let run = run_id(&read(&sb, "run.err")).unwrap();
    let pid = holder.id();
    holder.kill().unwrap(); // SIGKILL
    holder.wait().unwrap();
    let killed_at = Instant::now();
    let mut standby = spawn(&sb, sb.cmd(&["resume", "--standby", "--plain"]), "standby");
    wait_for(
        || read(&sb, "standby.err").contains(&format!("resuming run {run}")),
        Duration::from_secs(20),
        "the take-over",
    );
    // A 30 s lease, taken over long before it expired: the holder is provably dead.
    assert!(killed_at.elapsed() < Duration::from_secs(20));
    let err = read(&sb, "standby.err");
    assert!(
        err.contains(&format!(
            "taking over run {run}: holder pid {pid} on this machine is gone: taking over"
        )),
        "{err}"
    );
    signal(&standby, "-INT");
    let code = wait_exit(&mut standby, Duration::from_secs(60), "the standby's end");
    let err = read(&sb, "standby.err");
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("Ctrl-C: stopping: no new moves"), "{err}");
    assert!(
        err.contains("standby stopped after the run it drove"),
        "{err}"
    );
    let h = sb.run(&["history", "--json"]);
    h.expect_code(0);
    assert!(
        h.stdout.contains(&format!("\"id\":\"{run}\"")) && h.stdout.contains("\"aborted\""),
        "{}",
        h.stdout
    );
    // No abort reached the hosts (running moves finished), each VM on one host.
    assert!(!read(&sb, "run.state").contains("\"call\":\"abort\""));
    assert_one_host_each(&replay(&sb.dir.join("run.state")));
}

/// Without PostgreSQL: what the standby refuses, with a clear error, exit 1, nothing written.
#[test]
fn the_standby_refuses_a_missing_or_unreachable_journal_and_bad_arguments() {
    let sb = Sandbox::new("standby-errors");
    let journal = sb.dir.join("nowhere/journal.db");
    let r = sb.run(&[
        "resume",
        "--standby",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    r.expect_code(1);
    assert!(r.stderr.contains("no journal at"), "{r:?}");
    assert!(!sb.dir.join("nowhere").exists(), "nothing was created");
    // A PostgreSQL journal whose server is not there (a unix socket folder with nothing in it).
    let url = format!(
        "postgresql://vmove@/journal?host={}",
        sb.dir.join("no-server").display()
    );
    let r = sb.run(&["resume", "--standby", "--journal", &url]);
    r.expect_code(1);
    assert!(
        r.stderr
            .contains("could not open the journal at postgresql://"),
        "{r:?}"
    );
    // Arguments: --once needs --standby; a run id and --standby do not go together; --report
    // needs --once (each run would overwrite it).
    let r = sb.run(&["resume", "--once"]);
    r.expect_code(1);
    assert!(r.stderr.contains("--standby"), "{r:?}");
    let r = sb.run(&["resume", "r1", "--standby"]);
    r.expect_code(1);
    assert!(r.stderr.contains("cannot be used with"), "{r:?}");
    let r = sb.run(&["resume", "--standby", "--report", "r.json"]);
    r.expect_code(1);
    assert!(r.stderr.contains("needs `--once`"), "{r:?}");
    // A lease host name that is not one.
    let r = sb.run_env(
        &[
            "resume",
            "--standby",
            "--journal",
            journal.to_str().unwrap(),
        ],
        &[("VMOVE_LEASE_HOST", "two words")],
    );
    r.expect_code(1);
    assert!(
        r.stderr.contains("`VMOVE_LEASE_HOST`") && r.stderr.contains("is not a host name"),
        "{r:?}"
    );
}
