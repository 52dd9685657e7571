//! The `vmove` binary, run as a user would on sim hosts from the config: migrate, evacuate,
//! plan, journaling, reports and the plain output. Every test runs in its own directory with its
//! own HOME.
#![allow(clippy::unwrap_used)]

use crate::common::{Run, SIM_HOSTS, Sandbox};

// ---- real runs on sim hosts from the config ----------------------------------------------

#[test]
fn migrate_finds_the_source_of_unqualified_patterns() {
    let sb = Sandbox::new("migrate");
    sb.write("vmove.toml", SIM_HOSTS);
    let r = sb.run(&[
        "migrate", "web-*", "--to", "b", "--plain", "--report", "r.json",
    ]);
    r.expect_code(0);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(v["outcome"], "all_moved");
    let names: Vec<&str> = v["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"web-1") && names.contains(&"web-2"));
    let web2 = v["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "web-2")
        .unwrap();
    assert_eq!(web2["attempts"], 2, "its first start fails once");
}

#[test]
fn evacuate_exits_2_when_a_vm_cannot_move() {
    let sb = Sandbox::new("evacuate");
    sb.write("vmove.toml", SIM_HOSTS);
    let r = sb.run(&["evacuate", "a", "--to", "b", "--plain"]);
    r.expect_code(2);
    let huge = r
        .stdout
        .lines()
        .find(|l| l.starts_with("huge-1"))
        .unwrap_or_default();
    assert!(
        huge.contains("unmigratable") && huge.contains("no destination has room"),
        "{}",
        r.stdout
    );
    let db = r
        .stdout
        .lines()
        .find(|l| l.starts_with("db-1 "))
        .unwrap_or_default();
    assert!(
        db.contains("moved") && db.contains("waited for a backup"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_short_backup_threshold_from_a_flag_makes_the_backed_up_vm_unmigratable() {
    let sb = Sandbox::new("threshold");
    sb.write("vmove.toml", SIM_HOSTS);
    let r = sb.run(&[
        "migrate",
        "a:db-1",
        "--to",
        "b",
        "--plain",
        "--backup-threshold",
        "30s",
    ]);
    r.expect_code(2);
    let db = r
        .stdout
        .lines()
        .find(|l| l.starts_with("db-1 "))
        .unwrap_or_default();
    assert!(
        db.contains("unmigratable") && db.contains("backing up"),
        "{}",
        r.stdout
    );
}

#[test]
fn migrate_of_a_name_found_nowhere_is_an_error() {
    let sb = Sandbox::new("nowhere");
    sb.write("vmove.toml", SIM_HOSTS);
    sb.run(&["migrate", "ghost", "--to", "b"])
        .expect_config_error(&["`ghost` matches no VM"]);
}

#[test]
fn plan_prints_order_destinations_and_an_eta_without_moving() {
    let sb = Sandbox::new("plan");
    sb.write("vmove.toml", SIM_HOSTS);
    let r = sb.run(&["plan", "evacuate", "a", "--to", "b"]);
    r.expect_code(2);
    assert!(r.stdout.contains("ETA:"), "{}", r.stdout);
    assert!(r.stdout.contains("a -> b"), "{}", r.stdout);
    assert!(r.stdout.contains("huge-1 would not move"), "{}", r.stdout);
    // A dry run: no live progress lines, only the plan.
    assert!(!r.stdout.contains("MOVED"), "{}", r.stdout);
    // A faster assumed link gives an earlier ETA.
    let eta = |r: &Run| {
        r.stdout
            .lines()
            .find(|l| l.starts_with("ETA:"))
            .unwrap_or_default()
            .to_owned()
    };
    let slow = sb.run(&[
        "plan",
        "migrate",
        "a:web-1",
        "--to",
        "b",
        "--plan-bandwidth",
        "10",
    ]);
    let fast = sb.run(&[
        "plan",
        "migrate",
        "a:web-1",
        "--to",
        "b",
        "--plan-bandwidth",
        "1000",
    ]);
    slow.expect_code(0);
    fast.expect_code(0);
    assert_ne!(eta(&slow), eta(&fast));
    assert!(slow.stdout.contains("10 MB/s") && fast.stdout.contains("1000 MB/s"));
    let r = sb.run(&["migrate", "web-1", "--to", "b", "--dry-run"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("web-1") && r.stdout.contains("ETA:"),
        "{}",
        r.stdout
    );
}

#[test]
fn runs_are_journaled_by_default_under_the_user_data_dir_and_not_with_no_journal() {
    let sb = Sandbox::new("journal-default");
    sb.write("vmove.toml", SIM_HOSTS);
    sb.run(&["evacuate", "a", "--to", "b", "--plain"])
        .expect_code(2);
    let default = sb.dir.join("home/.local/share/vmove/journal.db");
    assert!(default.is_file(), "no journal at {}", default.display());
    let h = sb.run(&["history"]);
    h.expect_code(0);
    let rows: Vec<&str> = h.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{}", h.stdout);
    assert!(rows[0].contains("finished"), "{}", h.stdout);
    // The report rebuilt from the journal says what the run said.
    let r = sb.run(&["report", "--report", "r.json"]);
    r.expect_code(0);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.dir.join("r.json")).unwrap()).unwrap();
    let huge = report["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "huge-1")
        .unwrap();
    assert_eq!(huge["outcome"], "unmigratable", "{report:#}");
    assert!(
        huge["reason"]
            .as_str()
            .unwrap()
            .contains("no destination has room")
    );
    assert_eq!(report["moved"], 3, "{report:#}");
    // --no-journal: nothing more in it; VMOVE_JOURNAL moves it.
    sb.run(&["evacuate", "a", "--to", "b", "--plain", "--no-journal"])
        .expect_code(2);
    let h = sb.run(&["history"]);
    assert_eq!(h.stdout.lines().skip(1).count(), 1, "{}", h.stdout);
    let other = sb.dir.join("elsewhere.db");
    sb.run_env(
        &["evacuate", "a", "--to", "b", "--plain"],
        &[("VMOVE_JOURNAL", other.to_str().unwrap())],
    )
    .expect_code(2);
    assert!(other.is_file());
    let h = sb.run(&["history", "--journal", other.to_str().unwrap()]);
    assert_eq!(h.stdout.lines().skip(1).count(), 1, "{}", h.stdout);
    // Nothing to resume: a clear error.
    let r = sb.run(&["resume"]);
    r.expect_code(1);
    assert!(r.stderr.contains("no unfinished run"), "{}", r.stderr);
}

/// Two sim hosts at 10x (slow enough that a loaded machine's delays stay small beside the
/// migrations' own times) with VMs of different sizes and no dirty pages: `a` -> `b` at 100 MB/s.
const SIM_CAL: &str = r#"
[defaults]
progress_interval = "2s"
[hosts.a]
driver = "sim"
speed = 10
migration_limit = 1
stream_mb_s = 100
vms = [
  { name = "s-1", memory_gib = 0.5, disk_gib = 1 },
  { name = "s-2", memory_gib = 0.5, disk_gib = 3 },
  { name = "s-3", memory_gib = 0.5, disk_gib = 2 },
]
[hosts.b]
driver = "sim"
speed = 10
stream_mb_s = 100
"#;

#[test]
fn plan_without_history_says_it_used_defaults_and_with_history_uses_measured_figures() {
    let sb = Sandbox::new("plan-cal");
    sb.write("vmove.toml", SIM_CAL);
    // No journal yet: every figure is a default, and the plan says so.
    let r = sb.run(&["plan", "migrate", "a:s-3", "--to", "b"]);
    r.expect_code(0);
    assert!(r.stdout.contains("no journal at"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("a -> b: no past migrations on this route: DEFAULTS used"),
        "{}",
        r.stdout
    );
    // Move two VMs of different sizes, one at a time (journaled by default).
    let m = sb.run(&["migrate", "a:s-1", "a:s-2", "--to", "b", "--plain"]);
    m.expect_code(0);
    let r = sb.run(&["plan", "migrate", "a:s-3", "--to", "b"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("a -> b: 2 migrations measured (2 alone"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("DEFAULTS used"), "{}", r.stdout);
    // Only concurrency was never measured (one at a time), and the plan says that is assumed.
    assert!(
        r.stdout
            .contains("several at once never measured: assumed not to slow each other (DEFAULT)"),
        "{}",
        r.stdout
    );
    // The fitted rate is the sim host's 100 MB/s within the noise of real time at 10x.
    let rate: f64 = r
        .stdout
        .split(" + bytes at ")
        .nth(1)
        .and_then(|x| x.split(" MB/s").next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no fitted rate in {}", r.stdout));
    assert!((60.0..=140.0).contains(&rate), "{rate} MB/s: {}", r.stdout);
    // A flag wins over the journal, and the plan says it came from the flag.
    let r = sb.run(&[
        "plan",
        "migrate",
        "a:s-3",
        "--to",
        "b",
        "--plan-bandwidth",
        "10",
    ]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("10 MB/s per migration (flag)"),
        "{}",
        r.stdout
    );
    // --plan-history 0 ignores the journal.
    let r = sb.run(&[
        "plan",
        "migrate",
        "a:s-3",
        "--to",
        "b",
        "--plan-history",
        "0",
    ]);
    assert!(
        r.stdout.contains("calibration turned off") && r.stdout.contains("DEFAULTS used"),
        "{}",
        r.stdout
    );
}

/// A VM with no disks (a network-booted guest): `vmove plan` predicts its move and `vmove
/// migrate` moves it. Before, the plan's simulation never got past the instant the move began
/// (a disk copy of no bytes was due "now" and never carried out): "no end after ... steps (at
/// 0.000s): livelock", exit 1.
#[test]
fn a_vm_without_disks_is_planned_and_moved() {
    let sb = Sandbox::new("no-disks");
    sb.write(
        "vmove.toml",
        r#"
[hosts.a]
driver = "sim"
speed = 50
vms = [{ name = "pxe-1", memory_gib = 0.5, disk_gib = 0 }]
[hosts.b]
driver = "sim"
speed = 50
"#,
    );
    let r = sb.run(&["plan", "migrate", "a:pxe-1", "--to", "b"]);
    r.expect_code(0);
    assert!(
        !r.stderr.contains("livelock") && r.stdout.contains("pxe-1"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let m = sb.run(&["migrate", "a:pxe-1", "--to", "b", "--plain"]);
    m.expect_code(0);
    assert!(m.stdout.contains("moved"), "{}", m.stdout);
}

/// Two sim hosts with 2 slots each (`CAP` in place of a cap line for the plan's host a).
const SIM_PAIRS: &str = r#"
[defaults]
progress_interval = "2s"
[hosts.a]
driver = "sim"
speed = 50
migration_limit = 2
stream_mb_s = 100
CAP
vms = [
  { name = "p-1", memory_gib = 0.5, disk_gib = 2 },
  { name = "p-2", memory_gib = 0.5, disk_gib = 2 },
  { name = "p-3", memory_gib = 0.5, disk_gib = 2 },
  { name = "p-4", memory_gib = 0.5, disk_gib = 2 },
]
[hosts.b]
driver = "sim"
speed = 50
migration_limit = 2
stream_mb_s = 100
"#;

/// Issue 3: the plan is calibrated per concurrency. After a run that moved two at once (none
/// alone), the plan lists that level and says its 2 slots use the figure measured at 2 at once;
/// capped to 1 slot it says 1 at once was never measured and which level it uses instead; a
/// rate flag turns the levels off.
#[test]
fn plan_uses_the_rate_measured_at_its_slots_or_says_which_nearest_level() {
    let sb = Sandbox::new("plan-levels");
    sb.write("vmove.toml", &SIM_PAIRS.replace("CAP", ""));
    let m = sb.run(&["migrate", "a:p-1", "a:p-2", "--to", "b", "--plain"]);
    m.expect_code(0);
    let r = sb.run(&["plan", "migrate", "a:p-3", "a:p-4", "--to", "b"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("per migration by how many ran at once")
            && r.stdout.contains("2 at once ")
            && r.stdout.contains("(2 measured)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "a -> b: up to 2 at once (the hosts' slots): uses the figure measured at 2 at once"
        ),
        "{}",
        r.stdout
    );
    sb.write(
        "vmove.toml",
        &SIM_PAIRS.replace("CAP", "max_migrations = 1"),
    );
    let r = sb.run(&["plan", "migrate", "a:p-3", "a:p-4", "--to", "b"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains(
            "a -> b: up to 1 at once (the hosts' slots): 1 at once never measured: uses the nearest measured level, 2 at once"
        ),
        "{}",
        r.stdout
    );
    let r = sb.run(&[
        "plan",
        "migrate",
        "a:p-3",
        "--to",
        "b",
        "--plan-bandwidth",
        "10",
    ]);
    r.expect_code(0);
    assert!(
        !r.stdout.contains("per migration by how many ran at once")
            && !r.stdout.contains("the hosts' slots"),
        "{}",
        r.stdout
    );
}

/// Issue 3: between a watchdog's abort and the next outcome (a minute or more on a cut link)
/// the plain output said nothing. Now it says when the abort is asked, when a call about the
/// attempt fails (with its try and the next look), and each look that finds the job running.
/// The sim's source stops answering before the stall watchdog fires (~17 s) until ~52 s: the
/// abort fails, four locates fail (17, 27, 37, 47 s), the look at ~57 s finds the job running
/// and, the first abort having failed for a passing reason, waits one look and asks again. Speed 20: each
/// boundary is ~5 simulated seconds (~250 ms of real time) from the nearest look.
#[test]
fn plain_output_says_what_vmove_waits_for_after_a_stall_abort() {
    let sb = Sandbox::new("stall-wait");
    sb.write(
        "vmove.toml",
        r#"
[hosts.a]
driver = "sim"
speed = 20
down = [{ from = "8s", for = "44s" }]
vms = [{ name = "stuck-1", memory_gib = 1, disk_gib = 2, stall_after = "2s" }]

[hosts.b]
driver = "sim"
speed = 20
"#,
    );
    let r = sb.run(&[
        "migrate",
        "stuck-1",
        "--from",
        "a",
        "--to",
        "b",
        "--plain",
        "--no-journal",
        "--stall-timeout",
        "15s",
    ]);
    r.expect_code(0);
    for needle in [
        "stuck-1: stalled: no progress for 15s on a -> b; abort asked of a (round 1 of 3)",
        "stuck-1: the abort (round 1 of 3) failed: ",
        "stuck-1: locate failed (try 1 of 60): ",
        "; again at ",
        "abort asked of a (round 2 of 3)",
        "stuck-1: MOVED to b (2 attempts)",
    ] {
        assert!(
            r.stdout.contains(needle),
            "`{needle}` not in:\n{}",
            r.stdout
        );
    }
    // An abort that failed for a passing reason (the source not answering) is not waited for
    // as an accepted one (6 looks): one look finds the job running and says so ("look 1 of 2"),
    // the next asks again.
    let round2 = r.stdout.find("(round 2 of 3)").unwrap();
    assert_eq!(
        r.stdout[..round2]
            .matches("waiting for a to end the job")
            .count(),
        1,
        "one look waited after the failed abort:\n{}",
        r.stdout
    );
    assert!(
        r.stdout[..round2].contains("waiting for a to end the job (look 1 of 2)"),
        "{}",
        r.stdout
    );
}
