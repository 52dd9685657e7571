//! Output and signals never end a run (issue 12, section 2): a reader that closes vmove's
//! stdout (`| head -1`) and SIGTERM/SIGHUP. The real binary on sim hosts, journal in a temp
//! folder.
#![allow(clippy::unwrap_used)]

use crate::support::{Run, Sandbox};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Sim hosts slow enough that a run lasts a few seconds: `a` with six VMs of 12 GiB each
/// (about 2.6 s of real time per move at speed 10, two at once), `b` roomy.
const SLOW_HOSTS: &str = r#"
[hosts.a]
driver = "sim"
speed = 10
migration_limit = 2
vms = [
  { name = "vm-1", memory_gib = 4, disk_gib = 8 },
  { name = "vm-2", memory_gib = 4, disk_gib = 8 },
  { name = "vm-3", memory_gib = 4, disk_gib = 8 },
  { name = "vm-4", memory_gib = 4, disk_gib = 8 },
  { name = "vm-5", memory_gib = 4, disk_gib = 8 },
  { name = "vm-6", memory_gib = 4, disk_gib = 8 },
]

[hosts.b]
driver = "sim"
speed = 10
memory_gib = 256
disk_gib = 4096
"#;

/// Waits at most 60 s for the child to end.
fn wait(child: &mut Child) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "vmove did not end within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

/// Runs `args` with its stdout read by a reader that takes one line and closes the pipe.
fn with_reader_closing_after_one_line(sb: &Sandbox, args: &[&str]) -> Run {
    let mut child = sb
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    {
        let mut r = BufReader::new(child.stdout.take().unwrap());
        r.read_line(&mut first).unwrap();
        // The reader goes away here, as `head -1` does.
    }
    let code = wait(&mut child);
    Run {
        code,
        stdout: first,
        stderr: stderr_of(&mut child),
    }
}

/// Runs `args` with a stdout whose reader has already gone away.
fn with_closed_stdout(sb: &Sandbox, args: &[&str]) -> Run {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = sb
        .cmd(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let code = wait(&mut child);
    Run {
        code,
        stdout: String::new(),
        stderr: stderr_of(&mut child),
    }
}

/// The newest run's status from the journal.
fn status(sb: &Sandbox) -> String {
    let r = sb.run(&["status"]);
    r.no_panic().expect_code(0);
    r.stdout
}

fn closed_output_lines(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("standard output"))
        .count()
}

#[test]
fn a_reader_that_closes_after_one_line_does_not_stop_an_evacuation() {
    let sb = Sandbox::new("pipe-lines");
    sb.write("vmove.toml", SLOW_HOSTS);
    let r = with_reader_closing_after_one_line(&sb, &["evacuate", "a", "--to", "b", "--plain"]);
    r.no_panic();
    assert!(r.stdout.contains("run "), "first line: {}", r.stdout);
    // Every VM moved: the run went on to its normal end.
    r.expect_code(0);
    assert_eq!(closed_output_lines(&r.stderr), 1, "{}", r.stderr);
    assert!(r.stderr.contains("the run goes on"), "{}", r.stderr);
    let s = status(&sb);
    assert!(s.contains("6 VMs: 6 moved"), "{s}");
    assert!(s.contains(": finished"), "{s}");
    // The journal keeps it too: status shows why the run's output stops where it does.
    assert!(
        s.contains("note (") && s.contains("standard output was closed by its reader"),
        "{s}"
    );
}

#[test]
fn a_reader_that_closes_after_one_json_line_does_not_stop_an_evacuation() {
    let sb = Sandbox::new("pipe-json");
    sb.write("vmove.toml", SLOW_HOSTS);
    let r = with_reader_closing_after_one_line(&sb, &["evacuate", "a", "--to", "b", "--json"]);
    r.no_panic();
    let first: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert!(first.is_object(), "{first}");
    r.expect_code(0);
    assert_eq!(closed_output_lines(&r.stderr), 1, "{}", r.stderr);
    assert!(
        !r.stderr.contains("journal could not") && !r.stderr.contains("failed"),
        "not the journal's fault: {}",
        r.stderr
    );
    let s = status(&sb);
    assert!(s.contains("6 VMs: 6 moved"), "{s}");
}

#[test]
fn a_demo_into_a_closed_pipe_moves_what_it_would_have_moved() {
    let sb = Sandbox::new("pipe-demo");
    let r = with_closed_stdout(&sb, &["demo", "--speed", "50", "--report", "r.json"]);
    r.no_panic();
    // The demo's one VM that fits nowhere makes it exit 2, as with an open stdout.
    r.expect_code(2);
    assert_eq!(closed_output_lines(&r.stderr), 1, "{}", r.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.path("r.json")).unwrap()).unwrap();
    assert_eq!(v["cancelled"], 0, "{v}");
    assert_eq!(v["unmigratable"], 1, "{v}");
}

#[test]
fn short_commands_end_quietly_when_their_reader_is_gone() {
    let sb = Sandbox::new("pipe-short");
    sb.write("vmove.toml", SLOW_HOSTS);
    sb.run(&["migrate", "a:vm-1", "--to", "b", "--plain"])
        .no_panic()
        .expect_code(0);
    for args in [
        &["status"][..],
        &["history"],
        &["report"],
        &["config"],
        &["plan", "evacuate", "a", "--to", "b"],
        &["plan", "evacuate", "a", "--to", "b", "--json"],
        &["migrate", "a:vm-2", "--to", "b", "--dry-run"],
        &["--help"],
    ] {
        let r = with_closed_stdout(&sb, args);
        r.no_panic();
        assert_eq!(r.code, Some(0), "vmove {args:?}: {}", r.stderr);
        // Quiet: nothing about the closed output (`plan --json` prints its plan on stderr).
        assert_eq!(
            closed_output_lines(&r.stderr),
            0,
            "vmove {args:?}: {}",
            r.stderr
        );
        assert!(
            args.contains(&"--json") || r.stderr.trim().is_empty(),
            "vmove {args:?} is not quiet: {}",
            r.stderr
        );
    }
}

/// Sends `signal` to a running vmove.
fn send(child: &Child, signal: &str) {
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// A journaled evacuation, signalled `times` times once its first migration runs.
fn evacuation_signalled(name: &str, signal: &str, times: usize) -> (Sandbox, Run) {
    let sb = Sandbox::new(name);
    sb.write("vmove.toml", SLOW_HOSTS);
    let mut child = sb
        .cmd(&["evacuate", "a", "--to", "b", "--plain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut l = String::new();
        assert!(out.read_line(&mut l).unwrap() > 0, "no attempt: {seen}");
        seen.push_str(&l);
        if l.contains("attempt 1,") {
            break;
        }
    }
    for i in 0..times {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
        send(&child, signal);
    }
    out.read_to_string(&mut seen).unwrap();
    let code = wait(&mut child);
    let stderr = stderr_of(&mut child);
    (
        sb,
        Run {
            code,
            stdout: seen,
            stderr,
        },
    )
}

#[track_caller]
fn check_graceful(signal: &str) {
    let (sb, r) = evacuation_signalled(&format!("{signal}-once"), signal, 1);
    r.no_panic().expect_code(130);
    assert!(
        r.stderr
            .contains(&format!("{signal}: stopping: no new moves")),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("aborting"), "{}", r.stderr);
    // The summary is printed; the migrations running at the signal finished, the rest were
    // not started.
    let summary = r.stdout.split("REASON / NOTES").nth(1).expect("a summary");
    assert!(
        summary.contains("moved") && summary.contains("cancelled"),
        "{summary}"
    );
    assert!(!summary.contains("unfinished"), "{summary}");
    // The journal was closed properly: nothing shows as moving, the run is over.
    let s = status(&sb);
    assert!(!s.contains("moving ("), "{s}");
    assert!(s.contains(": aborted"), "{s}");
}

#[track_caller]
fn check_abort(signal: &str) {
    let (sb, r) = evacuation_signalled(&format!("{signal}-twice"), signal, 2);
    r.no_panic().expect_code(130);
    assert!(
        r.stderr
            .contains(&format!("{signal}: aborting running migrations")),
        "{}",
        r.stderr
    );
    let summary = r.stdout.split("REASON / NOTES").nth(1).expect("a summary");
    assert!(!summary.contains("unfinished"), "{summary}");
    let s = status(&sb);
    assert!(!s.contains("moving ("), "{s}");
    assert!(s.contains(": aborted"), "{s}");
}

#[test]
fn sigterm_once_lets_running_moves_finish_prints_the_summary_and_exits_130() {
    check_graceful("TERM");
}

#[test]
fn sigterm_twice_aborts_running_moves() {
    check_abort("TERM");
}

#[test]
fn sighup_once_lets_running_moves_finish_prints_the_summary_and_exits_130() {
    check_graceful("HUP");
}

#[test]
fn sighup_twice_aborts_running_moves() {
    check_abort("HUP");
}

#[test]
fn after_sigterm_twice_the_summary_does_not_say_to_resume_the_aborted_run() {
    // The run is recorded aborted, and `vmove resume` refuses an aborted run: the advice for
    // the VMs it did not move is a new run, in the summary as in `vmove report`.
    let (sb, r) = evacuation_signalled("TERM-advice", "TERM", 2);
    r.no_panic().expect_code(130);
    let summary = r
        .stdout
        .split("ACTION NEEDED")
        .nth(1)
        .expect("an action table");
    assert!(!summary.contains("vmove resume"), "{summary}");
    assert!(summary.contains("`vmove migrate` naming it"), "{summary}");
    let report = sb.run(&["report"]);
    report.no_panic().expect_code(0);
    assert!(!report.stdout.contains("vmove resume"), "{}", report.stdout);
    assert!(
        report.stdout.contains("`vmove migrate` naming it"),
        "{}",
        report.stdout
    );
    // What it would have said does not work.
    let resume = sb.run(&["resume"]);
    assert_ne!(resume.code, Some(0), "{}", resume.stderr);
}
