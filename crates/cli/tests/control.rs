//! Control of a running run (issue 16): `--deadline` stops starting moves when it passes (the
//! stop the first Ctrl-C asks), and `--bandwidth` is checked as a setting. The real binary on
//! sim hosts, journal in a temp folder.
#![allow(clippy::unwrap_used)]

mod support;

use support::Sandbox;

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
