//! Control of a running run (issue 16): `--deadline` stops starting moves when it passes (the
//! stop the first Ctrl-C asks), and `--bandwidth` is checked as a setting. The real binary on
//! sim hosts, journal in a temp folder.
#![allow(clippy::unwrap_used)]

use crate::support::Sandbox;

/// Sim hosts slow enough that a run lasts a while: `a` with six VMs (two move at once, each
/// takes seconds of real time at speed 10), `b` roomy.
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

#[test]
fn deadline_stops_new_moves_lets_running_ones_finish_and_names_the_vms_not_started() {
    let sb = Sandbox::new("deadline");
    sb.write("vmove.toml", SLOW_HOSTS);
    let r = sb.run(&["evacuate", "a", "--to", "b", "--plain", "--deadline", "2s"]);
    // As a stopped run: exit 130.
    r.no_panic().expect_code(130);
    assert!(
        r.stderr.contains("deadline") && r.stderr.contains("has passed: no new moves"),
        "{}",
        r.stderr
    );
    let summary = r.stdout.split("REASON / NOTES").nth(1).expect("a summary");
    // The VMs' table only: the "Action needed" section after it names the cancelled VMs again,
    // with what to do.
    let summary = summary.split("ACTION NEEDED").next().unwrap_or(summary);
    // The first two started before the deadline and finished; the rest were not started, each
    // saying why.
    assert!(summary.contains("moved"), "{summary}");
    assert!(!summary.contains("unfinished"), "{summary}");
    let cancelled: Vec<&str> = summary
        .lines()
        .filter(|l| l.starts_with("vm-") && l.contains("cancelled"))
        .collect();
    assert!(!cancelled.is_empty(), "{summary}");
    assert!(
        cancelled
            .iter()
            .all(|l| l.contains("not started: the run's deadline")),
        "{summary}"
    );
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("VM(s) not started:"))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    for l in &cancelled {
        let name = l.split_whitespace().next().unwrap();
        assert!(line.contains(name), "{line}");
    }
    // The journal says so too, and the run ended as a stopped one.
    let s = sb.run(&["status"]);
    s.no_panic().expect_code(0);
    assert!(s.stdout.contains("not started:"), "{}", s.stdout);
    assert!(s.stdout.contains(": aborted"), "{}", s.stdout);
}

#[test]
fn bad_deadlines_are_refused_before_anything_starts() {
    let sb = Sandbox::new("deadline-bad");
    sb.write("vmove.toml", SLOW_HOSTS);
    for (value, needle) in [
        ("soon", "expected a duration from now"),
        ("25:00", "not a time of day"),
        ("2001-01-01T00:00:00Z", "in the past"),
        ("0s", "zero"),
    ] {
        let r = sb.run(&["evacuate", "a", "--to", "b", "--deadline", value]);
        r.no_panic().expect_code(1);
        assert!(r.stderr.contains(needle), "{value}: {}", r.stderr);
        assert!(!r.stdout.contains("attempt"), "{}", r.stdout);
    }
    // Nothing was journaled: no run was started.
    assert!(
        !sb.journal().exists(),
        "a refused deadline created a journal"
    );
    // Only for runs that move VMs.
    let r = sb.run(&["history", "--deadline", "45m"]);
    r.no_panic().expect_code(1);
    assert!(r.stderr.contains("for runs that move VMs"), "{}", r.stderr);
}

#[test]
fn bandwidth_flag_and_setting_are_read_and_bad_values_refused() {
    let sb = Sandbox::new("bandwidth");
    sb.write(
        "vmove.toml",
        &format!("[defaults]\nbandwidth_mib_s = 200\n{SLOW_HOSTS}"),
    );
    let r = sb.run(&["config"]);
    r.no_panic().expect_code(0);
    assert!(r.stdout.contains("bandwidth_mib_s = 200"), "{}", r.stdout);
    let r = sb.run(&["config", "--bandwidth", "100"]);
    r.no_panic().expect_code(0);
    assert!(r.stdout.contains("bandwidth_mib_s = 100"), "{}", r.stdout);
    assert!(r.stdout.contains("flag `--bandwidth`"), "{}", r.stdout);
    for bad in ["0", "-5", "fast", "1.5"] {
        let r = sb.run(&["evacuate", "a", "--to", "b", "--bandwidth", bad]);
        r.no_panic().expect_code(1);
        assert!(
            r.stderr.contains("--bandwidth") && r.stderr.contains("bandwidth_mib_s"),
            "{bad}: {}",
            r.stderr
        );
    }
    sb.write(
        "vmove.toml",
        &format!("[defaults]\nbandwidth_mib_s = \"x\"\n{SLOW_HOSTS}"),
    );
    let r = sb.run(&["config"]);
    r.no_panic().expect_code(1);
    assert!(r.stderr.contains("bandwidth_mib_s"), "{}", r.stderr);
    assert!(!sb.journal().exists());
}

/// Small, fast sim hosts: `a` with two VMs, `b` roomy; `a` has the hooks given.
fn hooked_hosts(hooks: &str) -> String {
    format!(
        r#"
[hosts.a]
driver = "sim"
speed = 50
vms = [
  {{ name = "vm-1", memory_gib = 1, disk_gib = 2 }},
  {{ name = "vm-2", memory_gib = 1, disk_gib = 2 }},
]
{hooks}

[hosts.b]
driver = "sim"
speed = 50
memory_gib = 256
disk_gib = 4096
"#
    )
}

/// A hook script in the sandbox: writes its environment to `NAME.env`, prints `out`, exits
/// `code`.
fn hook_script(sb: &Sandbox, name: &str, out: &str, code: i32) -> String {
    let env = sb.path(&format!("{name}.env"));
    let p = sb.write(
        &format!("{name}.sh"),
        &format!(
            "#!/bin/sh\necho \"$VMOVE_HOST $VMOVE_RUN_ID $VMOVE_PHASE $1\" > '{}'\necho '{out}'\nexit {code}\n",
            env.display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

#[test]
fn maintenance_hooks_run_before_and_after_an_evacuation_and_are_journaled() {
    let sb = Sandbox::new("hooks-ok");
    let before = hook_script(&sb, "before", "draining a", 0);
    let after = hook_script(&sb, "after", "a back in service", 0);
    sb.write(
        "vmove.toml",
        &hooked_hosts(&format!(
            "before_evacuate = [\"{before}\", \"arg1\"]\nafter_evacuate = [\"{after}\", \"arg2\"]"
        )),
    );
    let r = sb.run(&["evacuate", "a", "--to", "b", "--plain"]);
    r.no_panic().expect_code(0);
    let b = std::fs::read_to_string(sb.path("before.env")).unwrap();
    let a = std::fs::read_to_string(sb.path("after.env")).unwrap();
    let run_id = b.split_whitespace().nth(1).unwrap().to_owned();
    assert_eq!(b.trim(), format!("a {run_id} before_evacuate arg1"));
    assert_eq!(a.trim(), format!("a {run_id} after_evacuate arg2"));
    assert!(r.stderr.contains(&format!("run {run_id}")), "{}", r.stderr);
    assert!(
        r.stderr.contains("before_evacuate hook") && r.stderr.contains("draining a"),
        "{}",
        r.stderr
    );
    let s = sb.run(&["status", &run_id]);
    s.no_panic().expect_code(0);
    assert!(s.stdout.contains("draining a"), "{}", s.stdout);
    assert!(s.stdout.contains("a back in service"), "{}", s.stdout);
}

#[test]
fn failing_pre_hook_stops_the_evacuation_before_anything_moves() {
    let sb = Sandbox::new("hooks-pre-fails");
    let before = hook_script(&sb, "before", "maintenance mode refused", 4);
    let after = hook_script(&sb, "after", "unused", 0);
    sb.write(
        "vmove.toml",
        &hooked_hosts(&format!(
            "before_evacuate = [\"{before}\"]\nafter_evacuate = [\"{after}\"]"
        )),
    );
    let r = sb.run(&["evacuate", "a", "--to", "b", "--plain"]);
    r.no_panic().expect_code(1);
    assert!(
        r.stderr.contains("before_evacuate hook") && r.stderr.contains("exit 4"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&before), "{}", r.stderr);
    assert!(r.stderr.contains("nothing was moved"), "{}", r.stderr);
    assert!(!r.stdout.contains("attempt"), "{}", r.stdout);
    assert!(!sb.path("after.env").exists(), "the after hook ran");
    let s = sb.run(&["status"]);
    assert!(
        s.stdout.contains("maintenance mode refused"),
        "{}",
        s.stdout
    );
    assert!(s.stdout.contains("failed"), "{}", s.stdout);
}

#[test]
fn failing_post_hook_is_a_warning_and_the_run_result_stands() {
    let sb = Sandbox::new("hooks-post-fails");
    let after = hook_script(&sb, "after", "monitoring unreachable", 2);
    sb.write(
        "vmove.toml",
        &hooked_hosts(&format!("after_evacuate = [\"{after}\"]")),
    );
    let r = sb.run(&["evacuate", "a", "--to", "b", "--plain"]);
    r.no_panic().expect_code(0);
    assert!(
        r.stderr.contains("warning") && r.stderr.contains("after_evacuate hook"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("monitoring unreachable"), "{}", r.stderr);
}

/// The process a hook script started in the background, by the pid it wrote to `file`: whether
/// it still runs, and, should a test fail with it running, ended when the test is over (only
/// while it is still the `sleep 297` the script started).
struct HookChild(std::path::PathBuf);

impl HookChild {
    fn pid(&self) -> u32 {
        let text = std::fs::read_to_string(&self.0).expect("the hook wrote its child's pid");
        text.trim().parse().unwrap()
    }

    /// Running: there, and not a zombie.
    fn running(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid())) {
            Ok(stat) => !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    /// Whether it has ended within `secs` (a killed process is reaped by its new parent).
    fn ends_within(&self, secs: u64) -> bool {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while self.running() {
            if std::time::Instant::now() > until {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        true
    }
}

impl Drop for HookChild {
    fn drop(&mut self) {
        let Ok(text) = std::fs::read_to_string(&self.0) else {
            return;
        };
        let pid = text.trim();
        let ours =
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x00297\x00");
        if ours && self.running() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", pid])
                .status();
        }
    }
}

/// A hook script in the sandbox that starts `sleep 297` in the background (its pid written to
/// `NAME.pid`), prints `out`, then runs `then`.
fn hook_with_child(sb: &Sandbox, name: &str, out: &str, then: &str) -> (String, HookChild) {
    let pid = sb.path(&format!("{name}.pid"));
    let p = sb.write(
        &format!("{name}.sh"),
        &format!(
            "#!/bin/sh\nsleep 297 &\necho $! > '{}'\necho '{out}'\n{then}\n",
            pid.display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    (p.display().to_string(), HookChild(pid))
}

#[test]
fn a_hooks_background_process_is_ended_with_it_and_what_the_hook_printed_is_kept() {
    let sb = Sandbox::new("hooks-background");
    // Exits 0 at once, leaving `sleep 297` behind with the output pipe open: before, its output
    // was waited for 2 s, then dropped, and the sleep ran on after vmove returned.
    let (before, child) = hook_with_child(&sb, "before", "draining a", "exit 0");
    sb.write(
        "vmove.toml",
        &hooked_hosts(&format!("before_evacuate = [\"{before}\"]")),
    );
    let r = sb.run(&["evacuate", "a", "--to", "b", "--plain"]);
    r.no_panic().expect_code(0);
    assert!(
        r.stderr
            .contains("succeeded (exit 0); its output:\ndraining a"),
        "{}",
        r.stderr
    );
    assert!(
        child.ends_within(5),
        "the hook's background process {} still runs after vmove returned",
        child.pid()
    );
}

#[test]
fn a_hook_past_its_timeout_is_killed_with_every_process_it_started_and_its_output_is_kept() {
    let sb = Sandbox::new("hooks-timeout-group");
    // Waits for its child past the time-out: before, only the shell was killed; its child ran
    // on, holding the output pipe, and the output was lost.
    let (before, child) = hook_with_child(&sb, "before", "entering maintenance", "wait");
    sb.write(
        "vmove.toml",
        &hooked_hosts(&format!("before_evacuate = [\"{before}\"]")),
    );
    let started = std::time::Instant::now();
    let r = sb.run_env(
        &["evacuate", "a", "--to", "b", "--plain"],
        &[("VMOVE_HOOK_TIMEOUT", "1s")],
    );
    r.no_panic().expect_code(1);
    assert!(
        r.stderr.contains("did not end in time and was killed")
            && r.stderr.contains("its output:\nentering maintenance"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was moved"), "{}", r.stderr);
    assert!(
        child.ends_within(5),
        "the hook's child {} still runs after vmove returned",
        child.pid()
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn hook_that_is_not_an_argv_array_is_refused_naming_the_key() {
    let sb = Sandbox::new("hooks-bad");
    for bad in [
        "before_evacuate = \"/bin/drain a\"",
        "before_evacuate = []",
        "after_evacuate = [1, 2]",
    ] {
        sb.write("vmove.toml", &hooked_hosts(bad));
        let r = sb.run(&["evacuate", "a", "--to", "b"]);
        r.no_panic().expect_code(1);
        let key = bad.split_whitespace().next().unwrap();
        assert!(
            r.stderr.contains(&format!("hosts.a.{key}")) && r.stderr.contains("array of strings"),
            "{bad}: {}",
            r.stderr
        );
        assert!(!sb.journal().exists());
    }
}

/// [`SLOW_HOSTS`] with the sim hosts' state kept in a file, so that they outlive a killed vmove
/// (the crash test), and a short journal lease.
fn slow_hosts_with_state(sb: &Sandbox) -> String {
    let state = sb.path("sim.state").display().to_string();
    let mut cfg = String::from("[defaults]\njournal_lease = \"1s\"\n");
    for block in SLOW_HOSTS
        .split("\n[hosts.")
        .filter(|b| !b.trim().is_empty())
    {
        let block = block.trim_start_matches("[hosts.");
        cfg.push_str(&format!(
            "\n[hosts.{}\nstate_file = \"{state}\"\n",
            block.trim_end()
        ));
    }
    cfg
}

/// Starts `vmove evacuate a --to b --json` in the background (stdout and stderr to files).
fn spawn_evacuation(sb: &Sandbox, log: &str) -> std::process::Child {
    let out = std::fs::File::create(sb.path(&format!("{log}.out"))).unwrap();
    let err = std::fs::File::create(sb.path(&format!("{log}.err"))).unwrap();
    sb.cmd(&["evacuate", "a", "--to", "b", "--json"])
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap()
}

/// `vmove status --json` of the newest run once some VM migrates and another is queued:
/// (run id, a migrating VM, a queued VM).
fn wait_for_a_migrating_and_a_queued_vm(sb: &Sandbox) -> (String, String, String) {
    let t0 = std::time::Instant::now();
    loop {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "no VM was seen migrating"
        );
        let r = sb.run(&["status", "--json"]);
        if r.code == Some(0)
            && let Ok(doc) = serde_json::from_str::<serde_json::Value>(r.stdout.trim())
        {
            let vms = doc["vms"].as_array().cloned().unwrap_or_default();
            let named = |phase: &str| {
                vms.iter()
                    .find(|v| v["phase"] == phase)
                    .and_then(|v| v["name"].as_str().map(str::to_owned))
            };
            if let (Some(m), Some(q)) = (named("migrating"), named("queued")) {
                let run = doc["run"]["id"].as_str().unwrap().to_owned();
                return (run, m, q);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn wait_exit(child: &mut std::process::Child) -> Option<i32> {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(120),
            "the run did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The NDJSON events of a log.
fn events(sb: &Sandbox, log: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(sb.path(&format!("{log}.out")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The report of `run` as JSON, and its VM named `name`.
fn reported(sb: &Sandbox, run: &str, name: &str) -> serde_json::Value {
    let r = sb.run(&["report", run, "--report", "r.json"]);
    r.no_panic().expect_code(0);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.path("r.json")).unwrap()).unwrap();
    report["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in {report:#}"))
}

#[test]
fn skip_and_abort_of_one_vm_from_another_terminal_stop_only_that_vm() {
    let sb = Sandbox::new("vm-control");
    sb.write("vmove.toml", &slow_hosts_with_state(&sb));
    let mut child = spawn_evacuation(&sb, "run");
    let (run, migrating, queued) = wait_for_a_migrating_and_a_queued_vm(&sb);

    // A skip of a VM whose move has started is refused, naming what to do; nothing written.
    let r = sb.run(&["skip", &run, &migrating]);
    r.no_panic().expect_code(1);
    assert!(
        r.stderr.contains("already started")
            && r.stderr.contains(&format!("vmove abort {run} {migrating}")),
        "{}",
        r.stderr
    );
    // Unknown VM: refused, naming it.
    let r = sb.run(&["skip", &run, "ghost-vm"]);
    r.no_panic().expect_code(1);
    assert!(r.stderr.contains("`ghost-vm`"), "{}", r.stderr);
    // `--now` is for the whole run.
    let r = sb.run(&["abort", &run, &migrating, "--now"]);
    r.no_panic().expect_code(1);

    let r = sb.run(&["skip", &run, &queued]);
    r.no_panic().expect_code(0);
    assert!(
        r.stdout.contains(&format!("skip VM {queued}")),
        "{}",
        r.stdout
    );
    let r = sb.run(&["abort", &run, &migrating]);
    r.no_panic().expect_code(0);
    assert!(r.stdout.contains("abort the move of"), "{}", r.stdout);

    // Not everything moved: exit 2 (not 130: the run itself was not stopped).
    let code = wait_exit(&mut child);
    let err = std::fs::read_to_string(sb.path("run.err")).unwrap_or_default();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("skip of VM {queued} requested")),
        "{err}"
    );
    let evs = events(&sb, "run");
    let asked: Vec<&serde_json::Value> = evs
        .iter()
        .filter(|e| e["event"] == "vm_stop_asked")
        .collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(
        asked.iter().all(|e| e.get("refused").is_none()),
        "{asked:?}"
    );
    assert!(
        evs.iter()
            .any(|e| e["event"] == "abort_waiting" && e["vm_name"] == migrating.as_str())
            || evs
                .iter()
                .any(|e| e["event"] == "attempt_failed" && e["vm_name"] == migrating.as_str()),
        "the migration of {migrating} was aborted: {evs:?}"
    );

    let q = reported(&sb, &run, &queued);
    assert_eq!(q["outcome"], "cancelled", "{q}");
    let reason = q["reason"].as_str().unwrap();
    assert!(
        reason.contains("skipped by") && reason.contains("before it started"),
        "{reason}"
    );
    assert_eq!(q["attempts"], 0, "{q}");
    let m = reported(&sb, &run, &migrating);
    assert_eq!(m["outcome"], "cancelled", "{m}");
    let reason = m["reason"].as_str().unwrap();
    assert!(
        reason.contains("aborted by") && reason.contains("stays on its source"),
        "{reason}"
    );
    assert_eq!(m["attempts"], 1, "aborted, not retried: {m}");
    // The other four moved.
    for i in 1..=6 {
        let name = format!("vm-{i}");
        if name != queued && name != migrating {
            assert_eq!(reported(&sb, &run, &name)["outcome"], "moved");
        }
    }
    // The run is over: a request now is refused, nothing written.
    let r = sb.run(&["skip", &run, &queued]);
    r.no_panic().expect_code(1);
    assert!(r.stderr.contains("is already"), "{}", r.stderr);
}

#[test]
fn skip_and_abort_of_a_vm_refuse_unknown_runs_and_missing_journals_creating_nothing() {
    let sb = Sandbox::new("vm-control-bad");
    sb.write("vmove.toml", SLOW_HOSTS);
    let before = sb.snapshot();
    for args in [
        ["skip", "no-such-run", "vm-1"],
        ["abort", "no-such-run", "vm-1"],
    ] {
        let r = sb.run(&args);
        r.no_panic().expect_code(1);
        assert!(r.stderr.contains("journal"), "{}", r.stderr);
    }
    assert_eq!(sb.snapshot(), before, "nothing created");
    // With a journal: the unknown run is named.
    let r = sb.run(&["evacuate", "a", "--to", "b", "--plain", "--deadline", "1s"]);
    r.no_panic();
    let r = sb.run(&["skip", "no-such-run", "vm-1"]);
    r.no_panic().expect_code(1);
    assert!(r.stderr.contains("`no-such-run`"), "{}", r.stderr);
    // A missing VM argument is a usage error.
    let r = sb.run(&["skip", "no-such-run"]);
    r.no_panic().expect_code(1);
}

#[test]
fn a_skip_written_while_no_process_drove_the_run_is_honoured_by_resume() {
    let sb = Sandbox::new("vm-control-crash");
    sb.write("vmove.toml", &slow_hosts_with_state(&sb));
    let mut child = spawn_evacuation(&sb, "first");
    let (run, _, queued) = wait_for_a_migrating_and_a_queued_vm(&sb);
    // The driving process dies before it could poll anything.
    child.kill().unwrap();
    let _ = child.wait();
    let r = sb.run(&["skip", &run, &queued]);
    r.no_panic().expect_code(0);
    let out = std::fs::File::create(sb.path("second.out")).unwrap();
    let err = std::fs::File::create(sb.path("second.err")).unwrap();
    let mut resumed = sb
        .cmd(&["resume", &run, "--json"])
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    let code = wait_exit(&mut resumed);
    let err = std::fs::read_to_string(sb.path("second.err")).unwrap_or_default();
    assert_eq!(code, Some(2), "{err}");
    let q = reported(&sb, &run, &queued);
    assert_eq!(q["outcome"], "cancelled", "{q}");
    assert!(q["reason"].as_str().unwrap().contains("skipped by"), "{q}");
    assert_eq!(q["attempts"], 0, "{q}");
    // Asked once: the request is delivered, the engine heard it once.
    let asked = events(&sb, "second")
        .into_iter()
        .filter(|e| e["event"] == "vm_stop_asked")
        .count();
    assert!(asked >= 1, "the resumed run heard the skip");
    for i in 1..=6 {
        let name = format!("vm-{i}");
        if name != queued {
            assert_eq!(reported(&sb, &run, &name)["outcome"], "moved", "{name}");
        }
    }
}

/// `slow_hosts_with_state` with maintenance hooks on `a`: one script for both phases that
/// appends `PHASE RUN` to `hooks.log`. Its first run, with `stall_first`, writes its pid to
/// `hook.pid` and sleeps (a process killed while its before hook runs).
fn hooked_slow_hosts(sb: &Sandbox, stall_first: bool) -> String {
    let log = sb.path("hooks.log");
    let first = sb.path("hook.first");
    let pid = sb.path("hook.pid");
    let stall = if stall_first {
        format!(
            "if [ ! -e '{}' ]; then touch '{}'; echo \"started $VMOVE_PHASE $VMOVE_RUN_ID\" >> '{}'; echo $$ > '{}'; exec sleep 60; fi\n",
            first.display(),
            first.display(),
            log.display(),
            pid.display()
        )
    } else {
        String::new()
    };
    let script = sb.write(
        "hook.sh",
        &format!(
            "#!/bin/sh\n{stall}echo \"$VMOVE_PHASE $VMOVE_RUN_ID\" >> '{}'\n",
            log.display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = script.display();
    slow_hosts_with_state(sb).replacen(
        "[hosts.a]\n",
        &format!("[hosts.a]\nbefore_evacuate = [\"{s}\"]\nafter_evacuate = [\"{s}\"]\n"),
        1,
    )
}

fn hook_log(sb: &Sandbox) -> Vec<String> {
    std::fs::read_to_string(sb.path("hooks.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A crash mid-evacuation used to leave the host in maintenance for good: the resumed run
/// never ran the after_evacuate hook. It runs once the resumed run ends; the before hook, which
/// passed when the run started, does not run again.
#[test]
fn a_resumed_evacuation_runs_the_after_hook_when_it_ends_and_not_the_before_hook_again() {
    let sb = Sandbox::new("hooks-resume");
    sb.write("vmove.toml", &hooked_slow_hosts(&sb, false));
    let mut child = spawn_evacuation(&sb, "first");
    let (run, _, _) = wait_for_a_migrating_and_a_queued_vm(&sb);
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(hook_log(&sb), vec![format!("before_evacuate {run}")]);
    let r = sb.run(&["resume", &run]);
    r.no_panic().expect_code(0);
    assert_eq!(
        hook_log(&sb),
        vec![
            format!("before_evacuate {run}"),
            format!("after_evacuate {run}")
        ],
        "{}",
        r.stderr
    );
    let s = sb.run(&["status", &run]);
    assert!(s.stdout.contains("after_evacuate hook"), "{}", s.stdout);
}

/// Killed while its before hook ran (nothing journaled after the run's creation): the resumed
/// run runs the before hook again before anything moves, then the evacuation, then the after
/// hook.
#[test]
fn a_run_killed_during_its_before_hook_runs_it_again_on_resume() {
    let sb = Sandbox::new("hooks-resume-before");
    sb.write("vmove.toml", &hooked_slow_hosts(&sb, true));
    let mut child = spawn_evacuation(&sb, "first");
    let t0 = std::time::Instant::now();
    let pid = loop {
        if let Ok(p) = std::fs::read_to_string(sb.path("hook.pid"))
            && let Ok(p) = p.trim().parse::<u32>()
        {
            break p;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "the hook did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    child.kill().unwrap();
    let _ = child.wait();
    // The hook the killed process started (its `sleep`), by its pid.
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let run = hook_log(&sb)[0]
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_owned();
    let r = sb.run(&["resume", &run]);
    r.no_panic().expect_code(0);
    assert_eq!(
        hook_log(&sb),
        vec![
            format!("started before_evacuate {run}"),
            format!("before_evacuate {run}"),
            format!("after_evacuate {run}")
        ],
        "{}",
        r.stderr
    );
    let rep = reported(&sb, &run, "vm-1");
    assert_eq!(rep["outcome"], "moved", "{rep}");
}
