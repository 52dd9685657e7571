//! The `vmove` binary, run as a user would: the demo, Ctrl-C, config errors, config lookup and
//! env precedence. Every test runs in its own directory with its own HOME.
#![allow(clippy::unwrap_used)]

use crate::common::{Live, Run, SIM_HOSTS, Sandbox};
use std::time::Duration;

// ---- demo -------------------------------------------------------------------------------

#[test]
fn demo_summary_names_the_backup_wait_the_retry_and_the_vm_that_cannot_fit() {
    let sb = Sandbox::new("demo");
    let r = sb.run(&["demo", "--speed", "10", "--plain"]);
    r.expect_code(2);
    let summary = r
        .stdout
        .split("REASON / NOTES")
        .nth(1)
        .expect("a summary table");
    let row = |vm: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(vm))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        row("db-01").contains("moved") && row("db-01").contains("waited for a backup"),
        "{summary}"
    );
    assert!(
        row("web-02").contains("moved") && row("web-02").contains("retried"),
        "{summary}"
    );
    assert!(
        row("analytics-01").contains("unmigratable")
            && row("analytics-01").contains("no destination has room"),
        "{summary}"
    );
    assert!(
        summary.contains("11 moved, 1 unmigratable, 0 cancelled"),
        "{summary}"
    );
}

#[test]
fn demo_json_puts_only_parseable_events_on_stdout() {
    let sb = Sandbox::new("demo-json");
    let r = sb.run(&["demo", "--speed", "10", "--json"]);
    r.expect_code(2);
    let mut kinds = std::collections::BTreeSet::new();
    for line in r.stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        kinds.insert(v["event"].as_str().unwrap().to_owned());
        assert!(v["at"].is_u64(), "{line}");
    }
    for k in [
        "run_started",
        "selected",
        "attempt_started",
        "attempt_failed",
        "moved",
        "unmigratable",
        "run_finished",
    ] {
        assert!(kinds.contains(k), "no `{k}` event in {kinds:?}");
    }
    // The human summary went to stderr.
    assert!(r.stderr.contains("REASON / NOTES"), "{}", r.stderr);
}

#[test]
fn demo_writes_json_and_markdown_reports() {
    let sb = Sandbox::new("report");
    sb.run(&["demo", "--speed", "10", "--plain", "--report", "out.json"])
        .expect_code(2);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.dir.join("out.json")).unwrap()).unwrap();
    assert_eq!(v["outcome"], "some_unmigratable");
    assert_eq!(v["moved"], 11);
    assert_eq!(v["unmigratable"], 1);
    let vms = v["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 12);
    let big = vms.iter().find(|r| r["name"] == "analytics-01").unwrap();
    assert_eq!(big["outcome"], "unmigratable");
    assert!(
        big["reason"]
            .as_str()
            .unwrap()
            .contains("no destination has room")
    );

    sb.run(&["demo", "--speed", "10", "--plain", "--report", "out.md"])
        .expect_code(2);
    let md = std::fs::read_to_string(sb.dir.join("out.md")).unwrap();
    assert!(md.starts_with("# vmove run demo"), "{md}");
    assert!(
        md.contains("| analytics-01 | hv-01 | - | unmigratable | 0 |"),
        "{md}"
    );
}

#[test]
fn a_second_ctrl_c_aborts_and_exits_130() {
    let sb = Sandbox::new("sigint");
    let mut live = Live::spawn(&sb, &["demo", "--speed", "0.5", "--plain"]);
    live.wait_for("attempt 1,");
    live.interrupt();
    std::thread::sleep(Duration::from_millis(300));
    live.interrupt();
    let out = live.finish();
    out.expect_code(130);
    assert!(
        out.stderr.contains("no new moves") && out.stderr.contains("aborting"),
        "{}",
        out.stderr
    );
    // Nothing half-done: every VM of the summary is moved, cancelled or unmigratable.
    let summary = out
        .stdout
        .split("REASON / NOTES")
        .nth(1)
        .expect("a summary");
    assert!(!summary.contains("unfinished"), "{summary}");
    assert!(summary.contains("cancelled"), "{summary}");
}

#[test]
fn a_first_ctrl_c_lets_running_moves_finish_and_exits_130() {
    let sb = Sandbox::new("sigint-once");
    let mut live = Live::spawn(
        &sb,
        &["demo", "--speed", "4", "--plain", "--report", "r.json"],
    );
    live.wait_for("attempt 1,");
    live.interrupt();
    let out = live.finish();
    out.expect_code(130);
    assert!(
        out.stderr.contains("no new moves") && !out.stderr.contains("aborting"),
        "{}",
        out.stderr
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(v["outcome"], "interrupted");
    // The migrations running at the first Ctrl-C were not aborted: they finished.
    let moved = v["moved"].as_u64().unwrap();
    let cancelled = v["cancelled"].as_u64().unwrap();
    assert!(moved >= 1 && cancelled >= 1, "{v}");
    assert!(
        v["vms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] != "unfinished"),
        "{v}"
    );
}

// ---- config errors ----------------------------------------------------------------------

#[test]
fn malformed_toml_names_the_file_and_line() {
    let sb = Sandbox::new("malformed");
    sb.write("vmove.toml", "[defaults]\nmax_attempts = = 3\n");
    sb.run(&["evacuate", "a", "--to", "b"])
        .expect_config_error(&["vmove.toml", "not valid TOML", "line 2"]);
}

#[test]
fn bad_duration_names_the_key_in_file_env_and_flag() {
    let sb = Sandbox::new("duration");
    sb.write(
        "vmove.toml",
        &format!("[defaults]\nbackup_threshold = \"1 fortnight\"\n{SIM_HOSTS}"),
    );
    sb.run(&["evacuate", "a", "--to", "b"])
        .expect_config_error(&["`backup_threshold`", "vmove.toml", "fortnight"]);
    sb.write("vmove.toml", SIM_HOSTS);
    sb.run_env(
        &["evacuate", "a", "--to", "b"],
        &[("VMOVE_POLL_INTERVAL", "5 parsecs")],
    )
    .expect_config_error(&["VMOVE_POLL_INTERVAL", "`poll_interval`"]);
    sb.run(&["evacuate", "a", "--to", "b", "--stall-timeout", "soon"])
        .expect_config_error(&["flag `--stall-timeout`", "`stall_timeout`"]);
}

#[test]
fn unknown_key_is_named() {
    let sb = Sandbox::new("unknown-key");
    sb.write(
        "vmove.toml",
        &format!("[defaults]\nmax_atempts = 3\n{SIM_HOSTS}"),
    );
    sb.run(&["evacuate", "a", "--to", "b"])
        .expect_config_error(&["unknown key `max_atempts`"]);
    sb.write(
        "vmove.toml",
        &format!("[hostz.x]\ndriver = \"sim\"\n{SIM_HOSTS}"),
    );
    sb.run(&["evacuate", "a", "--to", "b"])
        .expect_config_error(&["unknown key `hostz`"]);
}

#[test]
fn unknown_host_is_named() {
    let sb = Sandbox::new("unknown-host");
    sb.write("vmove.toml", SIM_HOSTS);
    sb.run(&["evacuate", "a", "--to", "zz"])
        .expect_config_error(&["unknown host `zz`"]);
    sb.run(&["evacuate", "nowhere", "--to", "b"])
        .expect_config_error(&["unknown host `nowhere`"]);
    sb.run(&["migrate", "web-1", "--from", "x", "--to", "b"])
        .expect_config_error(&["unknown host `x`"]);
}

#[test]
fn a_cap_of_zero_is_refused() {
    let sb = Sandbox::new("cap0");
    sb.write("vmove.toml", SIM_HOSTS);
    sb.run(&["evacuate", "a", "--to", "b", "--max-parallel", "0"])
        .expect_config_error(&["`max_parallel` must be at least 1", "flag `--max-parallel`"]);
    sb.run_env(
        &["evacuate", "a", "--to", "b"],
        &[("VMOVE_MAX_ATTEMPTS", "0")],
    )
    .expect_config_error(&["`max_attempts` must be at least 1", "VMOVE_MAX_ATTEMPTS"]);
    sb.write(
        "vmove.toml",
        &SIM_HOSTS.replace("migration_limit = 2", "max_migrations = 0"),
    );
    sb.run(&["evacuate", "a", "--to", "b"])
        .expect_config_error(&["`hosts.a.max_migrations`", "at least 1"]);
}

#[test]
fn same_source_and_destination_is_refused() {
    let sb = Sandbox::new("same");
    sb.write("vmove.toml", SIM_HOSTS);
    sb.run(&["evacuate", "a", "--to", "a"])
        .expect_config_error(&["host `a` is both a source and a destination"]);
    sb.run(&["migrate", "a:web-1", "--to", "b,a"])
        .expect_config_error(&["host `a` is both a source and a destination"]);
}

#[test]
fn a_missing_config_file_given_by_flag_or_env_is_an_error() {
    let sb = Sandbox::new("missing");
    sb.run(&["config", "--config", "nope.toml"])
        .expect_config_error(&["nope.toml", "--config"]);
    sb.run_env(&["config"], &[("VMOVE_CONFIG", "gone.toml")])
        .expect_config_error(&["gone.toml", "$VMOVE_CONFIG"]);
}

#[test]
fn usage_errors_exit_1() {
    let sb = Sandbox::new("usage");
    let r = sb.run(&["migrate", "web-1"]);
    r.expect_code(1);
    assert!(r.stderr.contains("--to"), "{}", r.stderr);
}

#[cfg(all(feature = "libvirt", feature = "hyperv"))]
#[test]
fn a_driver_refuses_a_key_it_does_not_know_before_anything_is_touched() {
    let sb = Sandbox::new("libvirt");
    sb.write(
        "vmove.toml",
        "[hosts.k1]\ndriver = \"libvirt\"\nurl = \"qemu+tcp://127.0.0.1/system\"\n[hosts.k2]\ndriver = \"libvirt\"\nuri = \"qemu+tcp://127.0.0.2/system\"\n",
    );
    sb.run(&["evacuate", "k1", "--to", "k2"])
        .expect_config_error(&["libvirt", "k1", "url"]);
    sb.write(
        "vmove.toml",
        "[hosts.h1]\ndriver = \"hyperv\"\naddress = \"127.0.0.1\"\ncolour = \"blue\"\n[hosts.h2]\ndriver = \"hyperv\"\naddress = \"127.0.0.2\"\n",
    );
    sb.run(&["evacuate", "h1", "--to", "h2"])
        .expect_config_error(&["Hyper-V", "h1", "colour"]);
}

#[cfg(not(feature = "libvirt"))]
#[test]
fn a_driver_left_out_of_the_build_says_so() {
    let sb = Sandbox::new("no-libvirt");
    sb.write(
        "vmove.toml",
        "[hosts.k1]\ndriver = \"libvirt\"\nuri = \"qemu+tcp://127.0.0.1/system\"\n[hosts.k2]\ndriver = \"libvirt\"\nuri = \"qemu+tcp://127.0.0.2/system\"\n",
    );
    sb.run(&["evacuate", "k1", "--to", "k2"])
        .expect_config_error(&["the libvirt driver is not built into this vmove"]);
}

// ---- config lookup and precedence --------------------------------------------------------

fn max_attempts_of(r: &Run) -> String {
    r.expect_code(0);
    r.stdout
        .lines()
        .find(|l| l.starts_with("max_attempts"))
        .map(|l| l.split_whitespace().nth(2).unwrap().to_owned())
        .unwrap_or_default()
}

#[test]
fn config_lookup_order_is_flag_env_working_dir_user_dir() {
    let sb = Sandbox::new("lookup");
    let file = |n: u32| format!("[defaults]\nmax_attempts = {n}\n");
    assert_eq!(
        max_attempts_of(&sb.run(&["config"])),
        "3",
        "built-in default"
    );
    sb.write("home/.config/vmove/vmove.toml", &file(7));
    let r = sb.run(&["config"]);
    assert_eq!(max_attempts_of(&r), "7");
    assert!(r.stdout.contains("user config directory"), "{}", r.stdout);
    sb.write("vmove.toml", &file(4));
    assert_eq!(
        max_attempts_of(&sb.run(&["config"])),
        "4",
        "./vmove.toml beats the user dir"
    );
    sb.write("env.toml", &file(5));
    assert_eq!(
        max_attempts_of(&sb.run_env(&["config"], &[("VMOVE_CONFIG", "env.toml")])),
        "5",
        "$VMOVE_CONFIG beats ./vmove.toml"
    );
    sb.write("flag.toml", &file(6));
    assert_eq!(
        max_attempts_of(&sb.run_env(
            &["config", "--config", "flag.toml"],
            &[("VMOVE_CONFIG", "env.toml")]
        )),
        "6",
        "--config beats $VMOVE_CONFIG"
    );
}

#[test]
fn flags_beat_env_which_beats_the_file() {
    let sb = Sandbox::new("precedence");
    sb.write(
        "vmove.toml",
        "[defaults]\nmax_attempts = 4\nbackup_threshold = \"2h\"\n",
    );
    let r = sb.run_env(
        &["config"],
        &[
            ("VMOVE_MAX_ATTEMPTS", "5"),
            ("VMOVE_BACKUP_THRESHOLD", "30m"),
        ],
    );
    assert_eq!(max_attempts_of(&r), "5");
    assert!(
        r.stdout.contains("backup_threshold = \"30m\""),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("VMOVE_MAX_ATTEMPTS"),
        "origin shown: {}",
        r.stdout
    );
    let r = sb.run_env(
        &["config", "--max-attempts", "9"],
        &[("VMOVE_MAX_ATTEMPTS", "5")],
    );
    assert_eq!(max_attempts_of(&r), "9");
    assert!(r.stdout.contains("flag `--max-attempts`"), "{}", r.stdout);
}
