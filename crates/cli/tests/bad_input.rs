//! The hostile-input catalogue (issue 12, section 4): each bad input below gets a clear error
//! that names what is wrong, exit code 1, no panic, and changes nothing: every file of the
//! sandbox (journal, sim host state, config files, the report's folder, HOME) is byte for byte
//! as before. Run as a user would, with the real binary, against sim hosts that keep their
//! state in a file.
#![allow(clippy::unwrap_used)]

#[path = "bad_input/catalogue.rs"]
mod catalogue;

use crate::support::{Run, SIM_CONFIG, Sandbox};
use catalogue::{bad_configs, catalogue};

/// A config of two sim hosts: `source` (as written in TOML's `[hosts.X]`, quoted if need be)
/// holding one 1 GiB VM per name in `names` (each as written in a TOML basic string, escapes
/// and all), and an empty `b` with room for them all.
fn names_on_a_sim_host(source: &str, names: &[&str]) -> String {
    let vms: Vec<String> = names
        .iter()
        .map(|n| format!("  {{ name = \"{n}\", memory_gib = 1, disk_gib = 1 }},\n"))
        .collect();
    format!(
        "[hosts.{source}]\ndriver = \"sim\"\nspeed = 1000\nvms = [\n{}]\n\n[hosts.b]\ndriver = \"sim\"\nspeed = 1000\nmemory_gib = 64\n",
        vms.concat()
    )
}

#[test]
fn every_bad_input_is_refused_clearly_without_a_panic_and_changes_nothing() {
    let sb = Sandbox::new("catalogue");
    sb.write("vmove.toml", SIM_CONFIG);
    // Two Hyper-V hosts on loopback ports nothing listens on (bound, then let go).
    let closed_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    sb.write(
        "hyperv-down.toml",
        &format!(
            "[hosts.hv1]\ndriver = \"hyperv\"\naddress = \"127.0.0.1\"\nport = {}\ntransport = \"http\"\n\n[hosts.hv2]\ndriver = \"hyperv\"\naddress = \"127.0.0.1\"\nport = {}\ntransport = \"http\"\n",
            closed_port(),
            closed_port()
        ),
    );
    for (name, text) in bad_configs() {
        sb.write(name, &text);
    }
    // One good run first, so that the journal and the sim state file exist: a refused command
    // must add no row to the one and no call to the other.
    sb.run(&["migrate", "a:keep-1", "--to", "b", "--plain"])
        .no_panic()
        .expect_code(0);
    assert!(sb.journal().is_file() && sb.path("state/sim.log").is_file());
    let cases = catalogue(&sb);
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let before = sb.snapshot();
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = c.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = sb.run_within(&args, &env, std::time::Duration::from_secs(15));
        let mut wrong = Vec::new();
        if r.code != Some(1) {
            wrong.push(format!("exit code {:?}, not 1", r.code));
        }
        if r.stderr.contains("panicked") {
            wrong.push("a panic".to_owned());
        }
        for n in &c.needles {
            if !r.stderr.contains(n) {
                wrong.push(format!("`{n}` not named"));
            }
        }
        let after = sb.snapshot();
        if before != after {
            let changed: Vec<_> = after
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(v))
                .map(|(k, _)| k.display().to_string())
                .chain(
                    before
                        .keys()
                        .filter(|k| !after.contains_key(*k))
                        .map(|k| format!("{} (removed)", k.display())),
                )
                .collect();
            wrong.push(format!("files changed: {changed:?}"));
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {}\n    vmove {}\n    stderr: {}",
                c.name,
                wrong.join("; "),
                c.args.join(" "),
                r.stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs were not refused cleanly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Sim hosts at speed 10 sharing a state file: a run of `a`'s three VMs lasts a few seconds.
const SLOW_SHARED: &str = r#"
[hosts.a]
driver = "sim"
speed = 10
migration_limit = 1
state_file = "state/sim.log"
vms = [
  { name = "web-1", memory_gib = 4, disk_gib = 8 },
  { name = "web-2", memory_gib = 4, disk_gib = 8 },
  { name = "web-3", memory_gib = 4, disk_gib = 8 },
]

[hosts.b]
driver = "sim"
speed = 10
memory_gib = 256
state_file = "state/sim.log"

[hosts.c]
driver = "sim"
speed = 10
memory_gib = 256
state_file = "state/sim.log"
"#;

/// A sim `state_file` that is a device, a FIFO or a folder is refused before the run starts,
/// naming the path and what it is, with nothing journaled. Before, `/dev/null` took the
/// cluster's log and kept nothing (a resume found the hosts as the config first made them,
/// every VM back on its source), and a FIFO blocked the run once its pipe was full.
#[cfg(unix)]
#[test]
fn a_sim_state_file_that_is_a_device_a_fifo_or_a_folder_is_refused_naming_it() {
    let sb = Sandbox::new("state-kinds");
    let fifo = sb.path("state.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    std::fs::create_dir_all(sb.path("folder")).unwrap();
    for (file, kind) in [
        ("/dev/null", "a character device"),
        ("state.fifo", "a FIFO"),
        ("folder", "a folder"),
    ] {
        sb.write("vmove.toml", &SLOW_SHARED.replace("state/sim.log", file));
        let journal = sb.path(&format!("j-{}/journal.db", kind.replace(' ', "-")));
        let run = sb.run_within(
            &["evacuate", "a", "--to", "b", "--plain"],
            &[("VMOVE_JOURNAL", journal.to_str().unwrap())],
            std::time::Duration::from_secs(30),
        );
        run.no_panic();
        assert_ne!(run.code, Some(0), "{file}: {}", run.stderr);
        assert!(run.code.is_some(), "{file}: it did not end: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!("the sim state file `{file}`"))
                && run.stderr.contains("not a regular file")
                && run.stderr.contains(kind),
            "{file}: {}",
            run.stderr
        );
        assert!(!journal.exists(), "{file}: nothing journaled");
    }
}

/// `--report FILE` and `--log-file FILE` that are a FIFO, a device or a folder are refused
/// before anything runs, naming the flag, the path and what it is, with nothing journaled and
/// the hosts untouched. Before, a FIFO hung vmove for good before the run started (opening it to
/// check it waits for a reader), and `/dev/null` swallowed the report or the log.
#[cfg(unix)]
#[test]
fn a_report_or_log_file_that_is_a_fifo_a_device_or_a_folder_is_refused_naming_it() {
    let sb = Sandbox::new("out-kinds");
    sb.write("vmove.toml", SIM_CONFIG);
    let fifo = sb.path("out.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    std::fs::create_dir_all(sb.path("folder")).unwrap();
    for (flag, what) in [("--report", "report file"), ("--log-file", "log file")] {
        for (file, kind) in [
            ("out.fifo", "a FIFO (named pipe)"),
            ("/dev/null", "a character device"),
            ("folder", "a folder"),
        ] {
            let journal = sb.path(&format!("j{flag}-{}/journal.db", kind.replace(' ', "-")));
            let run = sb.run_within(
                &["evacuate", "a", "--to", "b", "--plain", flag, file],
                &[("VMOVE_JOURNAL", journal.to_str().unwrap())],
                std::time::Duration::from_secs(30),
            );
            run.no_panic();
            assert_eq!(run.code, Some(1), "{flag} {file}: {}", run.stderr);
            let said =
                format!("flag `{flag}`: the {what} `{file}` is not a regular file but {kind}");
            assert!(run.stderr.contains(&said), "{flag} {file}: {}", run.stderr);
            assert!(!journal.exists(), "{flag} {file}: nothing journaled");
            // (Not `sb.snapshot()`: it reads every file, and reading the FIFO waits forever.)
            assert!(
                !sb.path("state").exists(),
                "{flag} {file}: no host was asked"
            );
        }
    }
    // A path that does not exist yet is made, as before.
    let run = sb.run(&[
        "migrate",
        "a:keep-1",
        "--to",
        "b",
        "--plain",
        "--report",
        "new.json",
        "--log-file",
        "new.log",
    ]);
    run.no_panic().expect_code(0);
    assert!(sb.path("new.json").is_file() && sb.path("new.log").is_file());
}

/// `--report FILE` is looked at again when the report is written at the end: a FIFO put at its
/// path during the run is refused at once, naming it, after the summary and the run's other
/// lines, and vmove ends (exit 1, as for any report it cannot write); nothing is written into
/// the FIFO. Before, the final write opened the FIFO and waited for a reader for good: vmove
/// never ended.
#[cfg(unix)]
#[test]
fn a_report_path_made_a_fifo_during_the_run_fails_at_the_end_without_hanging() {
    use std::io::Read;
    let sb = Sandbox::new("report-fifo-late");
    sb.write("vmove.toml", SLOW_SHARED);
    let mut child = sb
        .cmd(&[
            "evacuate", "a", "--to", "b", "--plain", "--report", "r.json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = std::time::Instant::now();
    sb.wait_for_a_migration_start();
    // The run checked `r.json` before it started (nothing there yet: fine); a FIFO now.
    let made = std::process::Command::new("mkfifo")
        .arg(sb.path("r.json"))
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > std::time::Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "vmove did not end: it waits on the FIFO\nstderr: {}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    assert_eq!(
        status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(
            "the report was not written: flag `--report`: the report file `r.json` is not a \
             regular file but a FIFO (named pipe)"
        ),
        "{stderr}"
    );
    // The run's own output is all there: every VM moved, the summary printed.
    assert!(
        stdout.contains("3 moved, 0 unmigratable, 0 cancelled"),
        "{stdout}"
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(sb.path("r.json"))
            .unwrap()
            .file_type()
            .is_fifo(),
        "the FIFO is left as it was"
    );
}

/// `--plan-overhead` is a duration in seconds, bounded as every duration of vmove is (at most
/// 365 days, finite, not negative, whole milliseconds): outside, `plan` is refused naming the
/// flag. Before, `--plan-overhead 1e17` was planned with, its header saying
/// `18446744073709552.00 s fixed (flag)` (the seconds saturated as milliseconds).
#[test]
fn a_plan_overhead_over_365_days_or_not_a_number_of_seconds_is_refused_saying() {
    let sb = Sandbox::new("plan-overhead");
    sb.write("vmove.toml", SIM_CONFIG);
    let plan = |overhead: &str| {
        let r = sb.run(&[
            "plan",
            "migrate",
            "a:web-1",
            "--to",
            "b",
            "--plan-overhead",
            overhead,
        ]);
        r.no_panic();
        r
    };
    for (bad, why) in [
        ("1e17", "the longest duration vmove accepts"),
        ("31536001", "longer than 8760h"),
        ("NaN", "is not a duration"),
        ("inf", "is not a duration"),
        ("-1", "is not a duration"),
        ("0.0005", "not a whole number of milliseconds"),
    ] {
        let r = plan(bad);
        assert_eq!(r.code, Some(1), "{bad}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("flag `--plan-overhead`") && r.stderr.contains(why),
            "{bad}: {}",
            r.stderr
        );
    }
    // 365 days is the longest (planned with: the VM then stalls in the simulation, exit 2);
    // a fraction of a second is fine.
    for (good, said, code) in [
        ("31536000", "31536000.00 s fixed", 2),
        ("2.5", "2.50 s fixed", 0),
    ] {
        let r = plan(good);
        assert_eq!(r.code, Some(code), "{good}: {}{}", r.stdout, r.stderr);
        assert!(
            format!("{}{}", r.stdout, r.stderr).contains(said),
            "{good}: {}{}",
            r.stdout,
            r.stderr
        );
    }
}

/// After the driving `vmove` is killed (`kill -9`), a new run on its VMs is still refused while
/// its lease lasts (the killed run holds them, mid-move), but the refusal says its process is no
/// longer running and names `vmove resume RUN`, which takes it over at once; nothing is touched.
/// Before, it said the VMs were "being moved by run R, driven by process N", N long gone.
#[test]
fn a_run_on_the_vms_of_a_killed_run_says_its_process_is_gone_and_names_resume() {
    let sb = Sandbox::new("killed-holder");
    sb.write("vmove.toml", SLOW_SHARED);
    let mut first = sb.spawn_quiet(&["evacuate", "a", "--to", "b", "--plain"]);
    sb.wait_for_a_migration_start();
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let pid = first.id();
    let history = sb.run(&["history"]);
    let run = history
        .stdout
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let before = sb.snapshot();
    for args in [
        &["migrate", "a:web-3", "--to", "b", "--plain"][..],
        &["evacuate", "a", "--to", "c", "--plain"],
    ] {
        let r = sb.run(args);
        r.no_panic().expect_code(1);
        assert!(
            r.stderr
                .contains(&format!("run `{run}`, whose process {pid} on host `"))
                && r.stderr.contains("` is no longer running")
                && r.stderr.contains(&format!("`vmove resume {run}`"))
                && !r.stderr.contains("driven by process"),
            "{args:?}: {}",
            r.stderr
        );
        assert_eq!(sb.snapshot(), before, "{args:?} changed something");
    }
    // What it names works: the killed run is taken over at once and finished.
    sb.run(&["resume", &run, "--plain"])
        .no_panic()
        .expect_code(0);
}

/// `--no-journal` with a command that works on the journal only (`history`, `status`, ...) is a
/// contradiction: refused naming the command and the flag, exit 1, nothing read into the
/// output and nothing changed. Before, `history` and `status` read the journal anyway and
/// printed its runs, as if the flag had not been given.
#[test]
fn the_commands_that_work_on_the_journal_refuse_no_journal_naming_it() {
    let sb = Sandbox::new("no-journal");
    sb.write("vmove.toml", SIM_CONFIG);
    sb.run(&["migrate", "a:keep-1", "--to", "b", "--plain"])
        .no_panic()
        .expect_code(0);
    let before = sb.snapshot();
    for args in [
        &["history", "--no-journal"][..],
        &["--no-journal", "status"],
        &["status", "--watch", "--no-journal"],
        &["report", "--no-journal"],
        &["resume", "--no-journal"],
        &["abort", "r1", "--no-journal"],
        &["skip", "r1", "keep-1", "--no-journal"],
        &["serve", "--port", "0", "--no-journal"],
    ] {
        let r = sb.run_within(args, &[], std::time::Duration::from_secs(15));
        r.no_panic();
        assert_eq!(r.code, Some(1), "{args:?}: {}{}", r.stdout, r.stderr);
        let name = args.iter().find(|a| !a.starts_with('-')).unwrap();
        assert!(
            r.stderr.contains(&format!(
                "`vmove {name}` works on the journal, and `--no-journal` was given"
            )),
            "{args:?}: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        assert_eq!(sb.snapshot(), before, "{args:?} changed something");
    }
    // Without it, history lists the run as before.
    let h = sb.run(&["history"]);
    h.no_panic().expect_code(0);
    assert!(h.stdout.contains("keep-1"), "{}", h.stdout);
}

/// A `journal_lease` under 1s is refused with one message whatever the value (`0s` too) and
/// wherever it comes from: "`journal_lease` must be at least 1s, not ...". Before, `0s` said
/// "must be at least 1ms" (the floor of every other duration) and `10ms` "at least 1s".
#[test]
fn a_journal_lease_under_1s_is_refused_with_one_rule_and_one_message_even_0s() {
    let sb = Sandbox::new("lease-floor");
    sb.write("vmove.toml", SIM_CONFIG);
    for (raw, shown) in [
        ("0s", "0s"),
        ("0", "0s"),
        ("10ms", "10ms"),
        ("999ms", "999ms"),
    ] {
        let said = format!("`journal_lease` must be at least 1s, not {shown} (");
        let file = format!("lease-{raw}.toml");
        sb.write(
            &file,
            &format!("[defaults]\njournal_lease = \"{raw}\"\n{SIM_CONFIG}"),
        );
        for (args, env, origin) in [
            (
                vec!["config", "--journal-lease", raw],
                vec![],
                "flag `--journal-lease`".to_owned(),
            ),
            (
                vec!["migrate", "a:web-1", "--to", "b", "--journal-lease", raw],
                vec![],
                "flag `--journal-lease`".to_owned(),
            ),
            (
                vec!["config"],
                vec![("VMOVE_JOURNAL_LEASE", raw)],
                "environment variable `VMOVE_JOURNAL_LEASE`".to_owned(),
            ),
            (
                vec!["migrate", "a:web-1", "--to", "b", "--config", &file],
                vec![],
                file.clone(),
            ),
        ] {
            let r = sb.run_env(&args, &env);
            r.no_panic();
            assert_eq!(r.code, Some(1), "{args:?} {env:?}: {}", r.stderr);
            assert!(
                r.stderr.contains(&said) && r.stderr.contains(&origin),
                "{args:?} {env:?}: {}",
                r.stderr
            );
            assert!(!r.stderr.contains("1ms"), "{}", r.stderr);
            assert!(!sb.journal().exists(), "{args:?}: nothing journaled");
        }
    }
    // 1s is the shortest allowed.
    sb.run(&["config", "--journal-lease", "1s"])
        .no_panic()
        .expect_code(0);
}

/// A priority outside the whole numbers a priority may be (-2^31 to 2^31-1) is refused naming
/// that range, from the flag and from `[priorities]` alike; text that is no number at all is
/// called so. Before, `--priority web-1=2147483648` was refused as "not a whole number".
#[test]
fn a_priority_out_of_range_is_refused_naming_the_range_not_as_not_a_number() {
    let sb = Sandbox::new("priority-range");
    sb.write("vmove.toml", SIM_CONFIG);
    let range = "a priority is a whole number from -2147483648 to 2147483647";
    let prio = |p: &str| {
        let r = sb.run(&[
            "plan",
            "migrate",
            "a:web-1",
            "--to",
            "b",
            "--priority",
            &format!("web-1={p}"),
        ]);
        r.no_panic();
        r
    };
    for (bad, said) in [
        ("2147483648", "`2147483648` is out of range: "),
        ("-2147483649", "`-2147483649` is out of range: "),
        (
            "99999999999999999999999",
            "`99999999999999999999999` is out of range: ",
        ),
        ("high", "`high` is not a whole number ("),
        ("1.5", "`1.5` is not a whole number ("),
    ] {
        let r = prio(bad);
        assert_eq!(r.code, Some(1), "{bad}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("flag `--priority`: {said}")) && r.stderr.contains(range),
            "{bad}: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{bad}: {}", r.stdout);
    }
    for good in ["2147483647", "-2147483648"] {
        prio(good).expect_code(0);
    }
    for (value, shown) in [("2147483648", "2147483648"), ("\"high\"", "\"high\"")] {
        sb.write(
            "prio.toml",
            &format!("{SIM_CONFIG}\n[priorities]\nweb-1 = {value}\n"),
        );
        let r = sb.run(&["config", "--config", "prio.toml"]);
        r.no_panic();
        assert_eq!(r.code, Some(1), "{value}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "`priorities.web-1` must be a whole number from -2147483648 to 2147483647, not {shown}"
            )),
            "{value}: {}",
            r.stderr
        );
    }
}

/// A negative duration (`--poll-interval -1s`, `--deadline -5m`) or port (`serve --port -1`) is
/// the flag's value, refused naming the flag and what it may be, not taken for a flag of its
/// own. Before, each got clap's bare "unexpected argument '-1' found" and a usage line.
#[test]
fn negative_durations_and_ports_are_refused_naming_the_flag_and_what_it_may_be() {
    let sb = Sandbox::new("negative-values");
    sb.write("vmove.toml", SIM_CONFIG);
    let mut cases: Vec<(Vec<&str>, Vec<String>)> = Vec::new();
    for flag in [
        "--poll-interval",
        "--recheck-interval",
        "--job-start-timeout",
        "--backup-threshold",
        "--progress-interval",
        "--stall-timeout",
        "--completion-timeout-per-gib",
        "--completion-timeout-min",
        "--backoff-initial",
        "--backoff-max",
        "--call-timeout",
        "--journal-lease",
        "--journal-wait",
    ] {
        cases.push((
            vec!["config", flag, "-1s"],
            vec![
                format!("flag `{flag}`"),
                "`-1s` is not a duration: a duration is never negative".into(),
            ],
        ));
    }
    cases.extend([
        (
            vec!["migrate", "a:web-1", "--to", "b", "--stall-timeout", "-5m"],
            vec![
                "flag `--stall-timeout`".into(),
                "`-5m` is not a duration: a duration is never negative".into(),
            ],
        ),
        (
            vec!["config", "--poll-interval", "-1"],
            vec![
                "flag `--poll-interval`".into(),
                "(seconds, 0 or more)".into(),
            ],
        ),
        (
            vec!["migrate", "a:web-1", "--to", "b", "--deadline", "-5m"],
            vec![
                "`--deadline -5m`".into(),
                "a duration is never negative".into(),
            ],
        ),
        (
            vec!["serve", "--port", "-1"],
            vec!["'--port <PORT>'".into(), "-1 is not in 0..=65535".into()],
        ),
        (
            vec!["demo", "--serve", "-1"],
            vec!["'--serve [<PORT>]'".into(), "-1 is not in 0..=65535".into()],
        ),
    ]);
    refused_saying(&sb, &cases);
}

/// Runs each of `cases` in `sb`: each is refused ([`assert_refused`]) and leaves everything in
/// the sandbox as it was.
fn refused_saying(sb: &Sandbox, cases: &[(Vec<&str>, Vec<String>)]) {
    refused_saying_with(sb, &[], cases);
}

/// [`refused_saying`], each case run with the environment variables `env`.
fn refused_saying_with(sb: &Sandbox, env: &[(&str, &str)], cases: &[(Vec<&str>, Vec<String>)]) {
    let before = sb.snapshot();
    for (args, needles) in cases {
        let r = sb.run_within(args, env, std::time::Duration::from_secs(15));
        assert_refused(&format!("{env:?} {args:?}"), &r, needles);
        assert_eq!(sb.snapshot(), before, "{env:?} {args:?} changed something");
    }
}

/// `r` (of `what`) was refused: exit 1, its stderr holding every needle, nothing on stdout, and
/// neither clap's usage line nor serde's own words (`invalid type: string "lots", expected u32`:
/// `vmove_driver::words::plain` says them in plain words).
fn assert_refused(what: &str, r: &Run, needles: &[String]) {
    r.no_panic();
    assert_eq!(r.code, Some(1), "{what}: {}{}", r.stdout, r.stderr);
    for n in needles {
        assert!(
            r.stderr.contains(n.as_str()),
            "{what}: `{n}` not in {}",
            r.stderr
        );
    }
    for words in [
        "unexpected argument",
        "Usage:",
        "invalid type: ",
        "invalid value: ",
        ", expected u",
        ", expected i",
        ", expected f",
        ", expected a boolean",
    ] {
        assert!(!r.stderr.contains(words), "{what}: {}", r.stderr);
    }
    assert!(r.stdout.is_empty(), "{what}: {}", r.stdout);
}

/// A `--plan-*` figure no link has (`--plan-overhead NaN`, `-1`, `inf`) is refused before a
/// run, a demo or a plan starts, naming the flag: before, a run went on and only warned that
/// its journaled plan could not be made. And a number or choice flag given a value with a
/// leading hyphen (`--max-attempts -inf`, `--order -1%`) is refused as that flag's value,
/// shown as written: before, clap's bare "unexpected argument '-i' found", and `--order -1%`
/// said `unknown variant `_1%``.
#[test]
fn a_bad_plan_figure_or_a_hyphen_value_is_refused_before_the_run_naming_the_flag() {
    let sb = Sandbox::new("plan-figures");
    sb.write("vmove.toml", SIM_CONFIG);
    let mut cases: Vec<(Vec<&str>, Vec<String>)> = Vec::new();
    for value in ["NaN", "-1", "inf"] {
        for run in [
            &["evacuate", "a", "--to", "b"][..],
            &["migrate", "a:web-1", "--to", "b"],
            &["plan", "evacuate", "a", "--to", "b"],
            &["demo"],
        ] {
            let mut args = run.to_vec();
            args.extend(["--plain", "--plan-overhead", value]);
            cases.push((
                args,
                vec![
                    "flag `--plan-overhead` (seconds)".into(),
                    format!("`{value}` is not a duration"),
                ],
            ));
        }
    }
    for (flag, value, says) in [
        ("--max-attempts", "-inf", "`max_attempts`"),
        ("--max-parallel", "-1%", "`max_parallel`"),
        ("--backoff-jitter", "-1e-9", "must be between 0 and 1"),
        ("--order", "-1%", "`-1%`"),
        ("--stall-action", "-x", "`-x`"),
        ("--seed", "-1%", "not `-1%`"),
        ("--bandwidth", "-1%", "\"-1%\""),
    ] {
        cases.push((
            vec!["evacuate", "a", "--to", "b", "--plain", flag, value],
            vec![format!("flag `{flag}`"), says.into()],
        ));
    }
    refused_saying(&sb, &cases);
}

/// A number or a boolean of the wrong kind or out of its range is refused in plain words naming
/// the range and the value as written, wherever it came from: a flag, an environment variable,
/// the config file's `[defaults]` or a host's table (sim, libvirt, Hyper-V), the last naming the
/// config file too, and nothing written (a sim host's state file included). Before, serde's
/// "invalid type: string \"lots\", expected u32"; a host's table did not name the file; and a
/// libvirt host refused after a sim host was built left the sim's state file behind.
#[test]
fn a_number_or_boolean_of_the_wrong_kind_is_refused_in_plain_words_wherever_it_was_written() {
    let sb = Sandbox::new("plain-words");
    sb.write("vmove.toml", SIM_CONFIG);
    let whole = "must be a whole number from 0 to 4294967295";
    let mut cases: Vec<(Vec<&str>, Vec<String>)> = Vec::new();
    for (flag, value, says) in [
        ("--max-attempts", "lots", format!("{whole}, not `lots`")),
        ("--max-parallel", "-2", format!("{whole}, not `-2`")),
        (
            "--max-parallel",
            "99999999999",
            format!("{whole}, not `99999999999`"),
        ),
        ("--max-attempts", "1.5", format!("{whole}, not `1.5`")),
        ("--backoff-jitter", "x", "must be a number, not `x`".into()),
        (
            "--seed",
            "-1",
            "must be a whole number from 0 to 18446744073709551615, not `-1`".into(),
        ),
    ] {
        cases.push((
            vec!["evacuate", "a", "--to", "b", "--plain", flag, value],
            vec![format!("flag `{flag}`"), says],
        ));
    }
    refused_saying(&sb, &cases);
    for (var, value, says) in [
        (
            "VMOVE_MAX_ATTEMPTS",
            "lots",
            format!("`max_attempts` {whole}, not `lots`"),
        ),
        (
            "VMOVE_FAIL_FAST",
            "3",
            "`fail_fast` must be `true` or `false`, not `3`".into(),
        ),
    ] {
        refused_saying_with(
            &sb,
            &[(var, value)],
            &[(vec!["config"], vec![var.into(), says])],
        );
    }
    let file = |extra: &str| format!("{extra}\n{SIM_CONFIG}");
    let from_a = ["evacuate", "a", "--to", "b", "--plain"];
    for (text, args, says) in [
        (
            file("[defaults]\ncluster_cap = \"lots\""),
            from_a,
            format!("config file `vmove.toml`, [defaults]: `cluster_cap` {whole}, not `lots`"),
        ),
        (
            SIM_CONFIG.replace("migration_limit = 2", "migration_limit = \"two\""),
            from_a,
            format!("config file `vmove.toml`: `hosts.a.migration_limit`: {whole}, not `two`"),
        ),
        (
            SIM_CONFIG.replace(
                "{ name = \"web-1\", memory_gib = 1,",
                "{ name = \"web-1\", memory_gib = \"lots\",",
            ),
            from_a,
            "config file `vmove.toml`: `hosts.a.vms[0].memory_gib`: must be a number, not `lots`"
                .into(),
        ),
        // Built, not connected: refused before any host is asked (port 1 has no daemon).
        (
            file("[hosts.l]\ndriver = \"libvirt\"\nuri = \"qemu+tcp://127.0.0.1:1/system\"\np2p = \"yes\""),
            ["evacuate", "l", "--to", "b", "--plain"],
            "config file `vmove.toml`: the libvirt hosts' configuration is not usable: host l: `p2p`: must be `true` or `false`, not `yes`".into(),
        ),
        (
            file("[hosts.h]\ndriver = \"hyperv\"\naddress = \"127.0.0.1\"\nport = 99999"),
            ["evacuate", "h", "--to", "b", "--plain"],
            "config file `vmove.toml`: the Hyper-V hosts' configuration is not usable: host h: invalid Hyper-V settings: `port`: must be a whole number from 0 to 65535, not `99999`".into(),
        ),
    ] {
        let sb = Sandbox::new("plain-words-file");
        sb.write("vmove.toml", &text);
        let before = sb.snapshot();
        let r = sb.run(&args);
        assert_refused(&text, &r, &[says]);
        assert_eq!(sb.snapshot(), before, "{text}");
    }
}

/// A `--deadline` more than 365 days away (the bound of every duration of vmove) is refused
/// before anything runs, naming it and the bound, nothing journaled and no host asked. Before,
/// `--deadline 9999-12-31T23:59:59Z` was taken and the run went on.
#[test]
fn a_deadline_more_than_365_days_away_is_refused_before_anything_runs() {
    let sb = Sandbox::new("deadline-far");
    sb.write("vmove.toml", SIM_CONFIG);
    let before = sb.snapshot();
    for deadline in ["9999-12-31T23:59:59Z", "2999-01-01T00:00:00+01:00"] {
        let r = sb.run(&[
            "migrate",
            "a:web-1",
            "--to",
            "b",
            "--plain",
            "--deadline",
            deadline,
        ]);
        r.no_panic();
        assert_eq!(r.code, Some(1), "{deadline}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "`--deadline {deadline}` is more than 8760h (365 days) from now, the longest \
                 duration vmove accepts; nothing was started"
            )),
            "{deadline}: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{deadline}: {}", r.stdout);
        assert_eq!(sb.snapshot(), before, "{deadline}: something changed");
    }
}

/// A journal path that looks like a regular file but is none (a file of the kernel's, that says
/// it is empty and gives data, `/proc/version`) is refused as not a vmove journal by every
/// command, nothing written, no host asked. Before, `vmove --journal /proc/version history` said "no
/// runs in /proc/version", exit 0.
#[cfg(target_os = "linux")]
#[test]
fn a_journal_that_is_a_kernel_file_is_refused_as_not_a_vmove_journal() {
    let sb = Sandbox::new("proc-journal");
    sb.write("vmove.toml", SIM_CONFIG);
    let says = "`/proc/version` is not a vmove journal: it is a file the kernel makes up (on a \
                proc file system)";
    let cases: Vec<(Vec<&str>, Vec<String>)> = [
        &["--journal", "/proc/version", "history"][..],
        &["status", "--journal", "/proc/version"],
        &["report", "--journal", "/proc/version"],
        &["resume", "--journal", "/proc/version"],
        &[
            "migrate",
            "a:web-1",
            "--to",
            "b",
            "--plain",
            "--journal",
            "/proc/version",
        ],
    ]
    .into_iter()
    .map(|args| (args.to_vec(), vec![says.to_owned()]))
    .collect();
    refused_saying(&sb, &cases);
}

#[test]
fn a_second_process_on_the_same_sim_state_file_is_refused_while_the_first_runs() {
    let sb = Sandbox::new("state-lock");
    sb.write("vmove.toml", SLOW_SHARED);
    // Two journals: the journal's own guard on overlapping runs is not what is tested here.
    let mut first = sb.spawn_quiet(&["evacuate", "a", "--to", "b", "--plain"]);
    sb.wait_for_a_migration_start();
    let log_before = std::fs::read_to_string(sb.path("state/sim.log")).unwrap();
    let other_journal = sb.path("j2/journal.db");
    let second = sb.run_env(
        &["migrate", "web-3", "--from", "a", "--to", "c", "--plain"],
        &[("VMOVE_JOURNAL", other_journal.to_str().unwrap())],
    );
    second.no_panic().expect_code(1);
    assert!(
        second
            .stderr
            .contains("`state/sim.log` is in use by another vmove process"),
        "{}",
        second.stderr
    );
    assert!(!other_journal.exists(), "the refused run journaled nothing");
    let log_after = std::fs::read_to_string(sb.path("state/sim.log")).unwrap();
    assert!(
        log_after.starts_with(&log_before),
        "the refused run wrote nothing to the hosts' log"
    );
    let code = first.wait().unwrap().code();
    assert_eq!(code, Some(0), "the first run went on to move every VM");
    // Each VM was started once, by the first run, to b.
    let log = std::fs::read_to_string(sb.path("state/sim.log")).unwrap();
    let starts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"call\":\"start\""))
        .collect();
    assert_eq!(starts.len(), 3, "{log}");
    assert!(!log.contains("\"destination\":\"c\""), "{log}");
    // Once the first is over, the hosts are free again.
    sb.run_env(
        &["plan", "evacuate", "b", "--to", "c"],
        &[("VMOVE_JOURNAL", other_journal.to_str().unwrap())],
    )
    .no_panic()
    .expect_code(0);
}

#[test]
fn control_characters_in_vm_names_are_escaped_on_the_terminal_and_in_the_markdown_report() {
    let sb = Sandbox::new("control-chars");
    sb.write(
        "vmove.toml",
        &names_on_a_sim_host("a", &[r#"evil\u001b[2J\u0007vm|x\nnext"#]),
    );
    let r = sb.run(&["evacuate", "a", "--to", "b", "--plain", "--report", "r.md"]);
    r.no_panic().expect_code(0);
    for (what, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "raw control characters on {what}: {text:?}"
        );
    }
    assert!(r.stdout.contains("evil\\u{1b}[2J\\u{7}vm"), "{}", r.stdout);
    let md = std::fs::read_to_string(sb.path("r.md")).unwrap();
    assert!(!md.contains('\u{1b}') && !md.contains('\u{7}'), "{md:?}");
    // One table row for the VM: its newline and `|` do not break the table.
    let row = md
        .lines()
        .find(|l| l.contains("evil"))
        .expect("a row for the VM");
    assert!(
        row.contains("`evil\\u{1b}[2J\\u{7}vm\\|x\\nnext` |"),
        "{row}"
    );
    let s = sb.run(&["status"]);
    s.no_panic().expect_code(0);
    assert!(!s.stdout.contains('\u{1b}'), "{:?}", s.stdout);
}

#[test]
fn bidi_and_invisible_format_characters_in_vm_names_are_escaped_on_the_terminal_and_in_every_report()
 {
    // U+202E (right-to-left override) made `invoice\u{202e}gpj.exe` show as `invoiceexe.jpg`;
    // the other bidi controls and format characters hid or reordered text the same way.
    let hidden = [
        '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
        '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{061c}', '\u{200b}', '\u{feff}',
        '\u{2028}', '\u{2029}',
    ];
    let sb = Sandbox::new("bidi-names");
    sb.write(
        "vmove.toml",
        &names_on_a_sim_host("a", &[
            r#"invoice\u202Egpj.exe"#,
            r#"x\u202A\u202B\u202C\u202D\u2066\u2067\u2068\u2069\u200E\u200F\u061C\u200B\uFEFF\u2028\u2029y"#,
        ]),
    );
    let clean = |what: &str, text: &str| {
        assert!(
            !text.chars().any(|c| hidden.contains(&c)),
            "a raw bidi or format character in {what}: {text:?}"
        );
    };
    let plan = sb.run(&["plan", "evacuate", "a", "--to", "b"]);
    plan.no_panic().expect_code(0);
    clean("plan", &plan.stdout);
    let r = sb.run(&[
        "evacuate",
        "a",
        "--to",
        "b",
        "--plain",
        "--timeline",
        "--report",
        "r.md",
    ]);
    r.no_panic().expect_code(0);
    clean("the run's stdout", &r.stdout);
    clean("the run's stderr", &r.stderr);
    assert!(r.stdout.contains("invoice\\u{202e}gpj.exe"), "{}", r.stdout);
    assert!(
        r.stdout.contains(
            "x\\u{202a}\\u{202b}\\u{202c}\\u{202d}\\u{2066}\\u{2067}\\u{2068}\\u{2069}\\u{200e}\\u{200f}\\u{61c}\\u{200b}\\u{feff}\\u{2028}\\u{2029}y"
        ),
        "{}",
        r.stdout
    );
    for cmd in [
        &["status"][..],
        &["history"][..],
        &["report", "--timeline"][..],
    ] {
        let s = sb.run(cmd);
        s.no_panic().expect_code(0);
        clean(cmd[0], &s.stdout);
    }
    for file in ["r.html", "r.svg"] {
        sb.run(&["report", "--report", file])
            .no_panic()
            .expect_code(0);
    }
    for file in ["r.md", "r.html", "r.svg"] {
        let text = std::fs::read_to_string(sb.path(file)).unwrap();
        clean(file, &text);
        assert!(text.contains("invoice\\u{202e}gpj.exe"), "{file}: {text}");
    }
}

#[test]
fn markdown_in_vm_and_host_names_is_shown_as_text_in_the_markdown_report() {
    // Before, `[click](http://evil.example)` was a live link in the report, `<img ...>` markup,
    // `**bold**` bold, and a backtick in the command line ended its code span.
    let sb = Sandbox::new("markdown-names");
    sb.write(
        "vmove.toml",
        &names_on_a_sim_host(
            r#""[src](evil.example)""#,
            &[
                "[click](http://evil.example)",
                "<img src=x onerror=alert(1)>",
                "**bold**_it_~~s~~",
                "tick`|pipe",
                "web-01",
            ],
        ),
    );
    let r = sb.run(&[
        "evacuate",
        "[src](evil.example)",
        "--to",
        "b",
        "--plain",
        "--report",
        "r.md",
    ]);
    r.no_panic().expect_code(0);
    let md = std::fs::read_to_string(sb.path("r.md")).unwrap();
    let row = |name: &str| {
        md.lines()
            .find(|l| l.starts_with("| ") && l.contains(name))
            .unwrap_or_else(|| panic!("no row for {name} in:\n{md}"))
            .to_owned()
    };
    // Each name in a code span (nothing in one is markup), the host too.
    assert!(
        row("[click]")
            .starts_with("| `[click](http://evil.example)` | `[src](evil.example)` | b | moved |"),
        "{md}"
    );
    assert!(
        row("<img").starts_with("| `<img src=x onerror=alert(1)>` |"),
        "{md}"
    );
    assert!(
        row("**bold**").starts_with("| `**bold**_it_~~s~~` |"),
        "{md}"
    );
    // A backtick lengthens the fence; `|` is escaped, so the row keeps its 11 cells.
    let tick = row("tick");
    assert!(tick.starts_with("| ``tick`\\|pipe`` |"), "{md}");
    assert_eq!(tick.matches(" | ").count(), 10, "{tick}");
    // Plain text stays plain.
    assert!(row("web-01").starts_with("| web-01 | `[src]"), "{md}");
    // Nowhere outside a code span (CommonMark's: a run of backticks to the next run as long).
    let mut outside = String::new();
    let mut rest = md.as_str();
    while let Some(at) = rest.find('`') {
        outside.push_str(&rest[..at]);
        let fence = rest[at..].len() - rest[at..].trim_start_matches('`').len();
        let after = &rest[at + fence..];
        let close = (0..after.len()).find(|&i| {
            after[i..].starts_with(&"`".repeat(fence))
                && !after[i + fence..].starts_with('`')
                && (i == 0 || !after[..i].ends_with('`'))
        });
        match close {
            Some(i) => rest = &after[i + fence..],
            None => {
                outside.push_str(&rest[at..at + fence]);
                rest = after;
            }
        }
    }
    outside.push_str(rest);
    for live in [
        "[click]", "[src]", "<img", "**bold", "~~s~~", "_it_", "|pipe",
    ] {
        assert!(
            !outside.contains(live),
            "`{live}` outside a code span in:\n{md}"
        );
    }
    assert!(
        md.contains(
            "- command: `vmove evacuate '[src](evil.example)' --to b --plain --report r.md`"
        ),
        "{md}"
    );
}

#[test]
fn newlines_and_tabs_in_vm_names_are_escaped_so_no_line_can_be_forged() {
    let sb = Sandbox::new("newline-names");
    sb.write(
        "vmove.toml",
        &names_on_a_sim_host(
            "a",
            &[
                r#"new\n[   9.9s] forged: MOVED to b"#,
                r#"tab\tname"#,
                r#"cr\rname"#,
            ],
        ),
    );
    // No line of any of these starts with the forged text, and no tab or carriage return is
    // printed: each name shows escaped, on the line it belongs to.
    let clean = |what: &str, text: &str| {
        assert!(
            !text.lines().any(|l| l.starts_with("[   9.9s] forged")),
            "a forged line in {what}:\n{text}"
        );
        assert!(
            !text.contains('\t') && !text.contains('\r'),
            "a raw tab or carriage return in {what}: {text:?}"
        );
    };
    let check = sb.run(&["check", "evacuate", "a", "--to", "b"]);
    check.no_panic();
    clean("check", &check.stdout);
    assert!(check.stdout.contains("tab\\tname"), "{}", check.stdout);
    let plan = sb.run(&["plan", "evacuate", "a", "--to", "b"]);
    plan.no_panic().expect_code(0);
    clean("plan", &plan.stdout);
    assert!(
        plan.stdout.contains("new\\n[   9.9s] forged"),
        "{}",
        plan.stdout
    );
    let r = sb.run(&["evacuate", "a", "--to", "b", "--plain"]);
    r.no_panic().expect_code(0);
    clean("the run", &r.stdout);
    clean("stderr", &r.stderr);
    // The event lines and the summary table.
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with('[') && l.contains("new\\n[   9.9s] forged: MOVED to b: MOVED")),
        "{}",
        r.stdout
    );
    let row = r
        .stdout
        .lines()
        .find(|l| l.starts_with("tab\\tname "))
        .expect("the summary row of tab\\tname");
    let head = r
        .stdout
        .lines()
        .find(|l| l.starts_with("VM "))
        .expect("the summary's heading");
    // Aligned on the escaped width: the SOURCE column starts at the same place.
    assert_eq!(
        row.find(" a ").map(|i| i + 1),
        head.find("SOURCE"),
        "{head}\n{row}"
    );
    for cmd in [&["status"][..], &["history"][..], &["report"][..]] {
        let s = sb.run(cmd);
        s.no_panic().expect_code(0);
        clean(cmd[0], &s.stdout);
    }
    assert!(
        sb.run(&["status"]).stdout.contains("cr\\rname"),
        "status shows the name escaped"
    );
}

#[test]
fn a_host_reporting_zero_slots_makes_its_vms_unmigratable_instead_of_waiting_forever() {
    for (name, zero_on) in [("source", "a"), ("destination", "b")] {
        let sb = Sandbox::new(&format!("zero-slots-{name}"));
        let limit = |h: &str| {
            if h == zero_on {
                "migration_limit = 0\n"
            } else {
                ""
            }
        };
        sb.write(
            "vmove.toml",
            &format!(
                "[hosts.a]\ndriver = \"sim\"\nspeed = 1000\n{}vms = [{{ name = \"web-1\" }}]\n\n[hosts.b]\ndriver = \"sim\"\nspeed = 1000\nmemory_gib = 64\n{}",
                limit("a"),
                limit("b")
            ),
        );
        let r = sb.run_within(
            &["evacuate", "a", "--to", "b", "--plain"],
            &[],
            std::time::Duration::from_secs(20),
        );
        r.no_panic().expect_code(2);
        assert!(
            r.stdout
                .contains(&format!("host {zero_on} allows no migrations")),
            "{name}: {}",
            r.stdout
        );
    }
}

/// A new user's first `vmove history` (no `--journal`, no `VMOVE_JOURNAL`, nothing run yet):
/// "no runs yet", exit 0, and no folder or database created under the home folder. A journal
/// path given explicitly that does not exist stays an error (the catalogue above).
#[test]
fn history_before_the_first_run_says_no_runs_yet_and_creates_nothing() {
    let sb = Sandbox::new("history-first");
    let before = sb.snapshot();
    let out = sb
        .cmd(&["history"])
        .env_remove("VMOVE_JOURNAL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("no runs yet"), "stdout: {stdout}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert_eq!(sb.snapshot(), before, "history created something");
    assert!(!sb.path("home/.local/share/vmove").exists());
}
