//! `--json` and `--report` on the commands that read the journal (`status`, `history`) and on
//! `config`: each was silently ignored there (issue 16). And one word per error class.
#![allow(clippy::unwrap_used)]

use crate::common::{SIM_HOSTS, Sandbox};

/// A sandbox with one finished evacuation in its (default) journal.
fn with_a_run(name: &str) -> Sandbox {
    let sb = Sandbox::new(name);
    sb.write("vmove.toml", SIM_HOSTS);
    sb.run(&["evacuate", "a", "--to", "b", "--plain"])
        .expect_code(2);
    sb
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn status_answers_json_when_asked() {
    let sb = with_a_run("json-status");
    let r = sb.run(&["status", "--json"]);
    r.expect_code(0);
    let doc = json(&r.stdout);
    assert_eq!(doc["run"]["state"], "finished", "{doc:#}");
    let vms = doc["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 4, "{doc:#}");
    let huge = vms.iter().find(|v| v["name"] == "huge-1").unwrap();
    assert_eq!(huge["phase"], "unmigratable", "{doc:#}");
    assert!(doc["notes"].is_array(), "{doc:#}");
}

#[test]
fn history_answers_json_when_asked() {
    let sb = with_a_run("json-history");
    let r = sb.run(&["history", "--json"]);
    r.expect_code(0);
    let doc = json(&r.stdout);
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{doc:#}");
    assert_eq!(runs[0]["state"], "finished", "{doc:#}");
    // A new user's first look, in JSON too: no runs, no journal created.
    let fresh = Sandbox::new("json-history-fresh");
    let r = fresh.run(&["history", "--json"]);
    r.expect_code(0);
    assert_eq!(json(&r.stdout)["runs"], serde_json::json!([]));
    assert!(
        !fresh
            .dir
            .join("home/.local/share/vmove/journal.db")
            .exists()
    );
}

#[test]
fn config_answers_json_when_asked() {
    let sb = Sandbox::new("json-config");
    sb.write("vmove.toml", SIM_HOSTS);
    let r = sb.run(&["config", "--json"]);
    r.expect_code(0);
    let doc = json(&r.stdout);
    assert_eq!(doc["hosts"]["a"]["driver"], "sim", "{doc:#}");
    assert_eq!(doc["hosts"]["b"]["driver"], "sim", "{doc:#}");
    assert!(
        doc["config_file"].as_str().unwrap().ends_with("vmove.toml"),
        "{doc:#}"
    );
    assert_eq!(doc["settings"]["max_attempts"], 3, "{doc:#}");
    // The same figures as the TOML `vmove config` prints.
    let text = sb.run(&["config"]);
    assert!(text.stdout.contains("max_attempts = 3"), "{}", text.stdout);
}

#[test]
fn history_report_writes_the_runs_it_lists() {
    let sb = with_a_run("history-report");
    sb.run(&["history", "--report", "h.json"]).expect_code(0);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.dir.join("h.json")).unwrap()).unwrap();
    assert_eq!(doc["runs"].as_array().unwrap().len(), 1, "{doc:#}");
    sb.run(&["history", "--report", "h.md"]).expect_code(0);
    let md = std::fs::read_to_string(sb.dir.join("h.md")).unwrap();
    assert!(md.contains("| finished |"), "{md}");
    // A report that cannot be written is refused before anything is read.
    let r = sb.run(&["history", "--report", "no/such/dir/h.json"]);
    r.expect_code(1);
    assert!(r.stderr.contains("no/such/dir"), "{}", r.stderr);
}

#[test]
fn the_live_lines_name_an_error_class_as_json_and_reports_do() {
    let sb = Sandbox::new("class-words");
    sb.write("vmove.toml", SIM_HOSTS);
    let r = sb.run(&["evacuate", "a", "--to", "b", "--plain"]);
    r.expect_code(2);
    assert!(r.stdout.contains("failed (transient)"), "{}", r.stdout);
    assert!(!r.stdout.contains("(Transient)"), "{}", r.stdout);
}

/// `vmove report RUN` said "command: report" (its own verb), not the run's command.
#[test]
fn a_report_names_the_command_that_started_the_run() {
    let sb = with_a_run("report-command");
    sb.run(&["report", "--report", "r.json"]).expect_code(0);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(doc["command"], "vmove evacuate a --to b --plain", "{doc:#}");
    sb.run(&["report", "--report", "r.md"]).expect_code(0);
    let md = std::fs::read_to_string(sb.dir.join("r.md")).unwrap();
    assert!(
        md.contains("- command: `vmove evacuate a --to b --plain`"),
        "{md}"
    );
    // --json: the same report on stdout, as JSON.
    let r = sb.run(&["report", "--json"]);
    r.expect_code(0);
    assert_eq!(
        json(&r.stdout)["command"],
        "vmove evacuate a --to b --plain",
        "{}",
        r.stdout
    );
}

/// The summary said a VM "waited for a backup" but not for how long. db-1's backup lasts ten
/// minutes of simulated time from the start.
#[test]
fn the_summary_says_how_long_a_vm_waited_for_a_backup() {
    let sb = Sandbox::new("backup-wait");
    sb.write("vmove.toml", SIM_HOSTS);
    sb.run(&[
        "evacuate",
        "a",
        "--to",
        "b",
        "--plain",
        "--report",
        "live.json",
    ])
    .expect_code(2);
    sb.run(&["report", "--report", "rebuilt.json"])
        .expect_code(0);
    for file in ["live.json", "rebuilt.json"] {
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(sb.dir.join(file)).unwrap()).unwrap();
        let db = doc["vms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "db-1")
            .unwrap();
        let notes: Vec<&str> = db["notes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n.as_str())
            .collect();
        // The wait is run time, and the sim hosts run 1000 times faster than the clock: a
        // busy machine's 100 ms of delay reads as 100 s. At least the backup's ten minutes (less
        // the poll that first saw it), and not far over.
        let waited: Vec<std::time::Duration> = notes
            .iter()
            .filter_map(|n| n.strip_prefix("waited for a backup for "))
            .filter_map(|rest| rest.split(" (seen").next())
            .map(|d| humantime::parse_duration(d).unwrap_or_else(|e| panic!("{d:?}: {e}")))
            .collect();
        assert_eq!(waited.len(), 1, "{file}: {notes:?}");
        assert!(
            (9 * 60..=15 * 60).contains(&waited[0].as_secs()),
            "{file}: {notes:?}"
        );
    }
}

/// -v shows the CLI's info lines on stderr, never on stdout (which `--json` owns); --log-file
/// writes them to a file readable by its owner only; -q hides warnings; a log file that cannot
/// be opened is refused before anything runs.
#[test]
fn the_log_follows_v_q_and_log_file() {
    let sb = Sandbox::new("log-flags");
    sb.write("vmove.toml", SIM_HOSTS);
    let r = sb.run(&[
        "-v",
        "--log-file",
        "vmove.log",
        "evacuate",
        "a",
        "--to",
        "b",
        "--json",
    ]);
    r.expect_code(2);
    assert!(r.stderr.contains("run starting: vmove -v"), "{}", r.stderr);
    for line in r.stdout.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("stdout line not JSON ({e}): {line}"));
    }
    let log = sb.dir.join("vmove.log");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("run starting: vmove -v"), "{text}");
    assert!(text.contains("run ended"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    // Without -v: warnings only, so no info line.
    let r = sb.run(&["evacuate", "a", "--to", "b", "--plain", "--no-journal"]);
    assert!(!r.stderr.contains("run starting"), "{}", r.stderr);
    // -q and -v together are refused; a log file that cannot be opened is named.
    let r = sb.run(&["-q", "-v", "config"]);
    r.expect_code(1);
    let r = sb.run(&["--log-file", "no/such/dir/v.log", "config"]);
    r.expect_code(1);
    assert!(r.stderr.contains("no/such/dir/v.log"), "{}", r.stderr);
}
