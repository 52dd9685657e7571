//! Issue 16's output half: tables that fit `COLUMNS`, reports that say when, where and by which
//! vmove a run ran, each VM's times and sizes, and what needs a person ("Action needed"); help
//! that lists a setting's values and shows examples.
#![allow(clippy::unwrap_used)]

use crate::common::{SIM_HOSTS, Sandbox};

/// A sandbox with one finished evacuation in its (default) journal; huge-1 fits nowhere.
fn with_a_run(name: &str) -> Sandbox {
    let sb = Sandbox::new(name);
    sb.write("vmove.toml", SIM_HOSTS);
    sb.run(&["evacuate", "a", "--to", "b", "--plain"])
        .expect_code(2);
    sb
}

/// The lines of `text` from the first one starting with `head`.
fn from<'a>(text: &'a str, head: &str) -> Vec<&'a str> {
    text.lines().skip_while(|l| !l.starts_with(head)).collect()
}

fn all_fit(lines: &[&str], width: usize, what: &str) {
    assert!(!lines.is_empty(), "{what}: no table");
    for l in lines {
        assert!(
            l.chars().count() <= width,
            "{what}: a line of {} > {width} characters: {l:?}\n{}",
            l.chars().count(),
            lines.join("\n")
        );
    }
}

#[test]
fn the_run_summary_fits_sixty_columns() {
    let sb = Sandbox::new("fit-summary");
    sb.write("vmove.toml", SIM_HOSTS);
    let r = sb.run_env(
        &["evacuate", "a", "--to", "b", "--plain"],
        &[("COLUMNS", "60")],
    );
    r.expect_code(2);
    let table = from(&r.stdout, "VM ");
    all_fit(&table, 60, "the summary");
    // Nothing said is lost: the reason is wrapped, not cut.
    let words: Vec<&str> = table.iter().flat_map(|l| l.split_whitespace()).collect();
    for w in ["no", "destination", "has", "room"] {
        assert!(words.contains(&w), "`{w}` lost:\n{}", table.join("\n"));
    }
    // Without COLUMNS (and no terminal) the same summary is as wide as it needs.
    let sb = Sandbox::new("fit-summary-wide");
    sb.write("vmove.toml", SIM_HOSTS);
    let wide = sb.run(&["evacuate", "a", "--to", "b", "--plain"]);
    assert!(
        from(&wide.stdout, "VM ")
            .iter()
            .any(|l| l.chars().count() > 60),
        "{}",
        wide.stdout
    );
}

#[test]
fn history_status_and_report_fit_sixty_columns() {
    let sb = with_a_run("fit-tables");
    let cols = [("COLUMNS", "60")];
    let h = sb.run_env(&["history"], &cols);
    h.expect_code(0);
    all_fit(&from(&h.stdout, "RUN "), 60, "vmove history");
    let s = sb.run_env(&["status"], &cols);
    s.expect_code(0);
    let vms: Vec<&str> = from(&s.stdout, "VM ")
        .into_iter()
        .take_while(|l| !l.contains(" VMs: "))
        .collect();
    all_fit(&vms, 60, "vmove status");
    assert!(s.stdout.contains("huge-1"), "{}", s.stdout);
    let r = sb.run_env(&["report"], &cols);
    r.expect_code(0);
    all_fit(&from(&r.stdout, "VM "), 60, "vmove report");
}

#[test]
fn a_report_says_when_where_and_what_needs_a_person() {
    let sb = with_a_run("rich-report");
    // The text report.
    let r = sb.run(&["report"]);
    r.expect_code(0);
    assert!(r.stdout.contains("started 20"), "{}", r.stdout);
    assert!(r.stdout.contains(", ended 20"), "{}", r.stdout);
    assert!(r.stdout.contains(" by vmove 0."), "{}", r.stdout);
    let actions = from(&r.stdout, "ACTION NEEDED");
    assert!(
        actions.iter().any(|l| l.starts_with("huge-1")),
        "{}",
        r.stdout
    );
    assert!(
        actions
            .join(" ")
            .contains("free memory or disk on a destination"),
        "{}",
        r.stdout
    );
    assert!(
        !actions.iter().any(|l| l.starts_with("web-1")),
        "a moved VM needs no action:\n{}",
        r.stdout
    );
    // Markdown.
    sb.run(&["report", "--report", "r.md"]).expect_code(0);
    let md = std::fs::read_to_string(sb.dir.join("r.md")).unwrap();
    for want in [
        "- started: 20",
        "- ended: 20",
        "- ran on: ",
        "- vmove: 0.",
        "## Action needed",
        "| huge-1 | unmigratable | no destination has room",
        "| Downtime |",
        "unknown",
        " ms |",
    ] {
        assert!(md.contains(want), "no `{want}` in:\n{md}");
    }
    let action_rows = md
        .split("## Action needed")
        .nth(1)
        .unwrap()
        .split("## VMs")
        .next()
        .unwrap();
    assert!(!action_rows.contains("| web-1 |"), "{md}");
    // JSON.
    sb.run(&["report", "--report", "r.json"]).expect_code(0);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.dir.join("r.json")).unwrap()).unwrap();
    assert!(doc["started"].as_str().unwrap().ends_with('Z'), "{doc:#}");
    assert!(doc["ended"].as_str().unwrap().ends_with('Z'), "{doc:#}");
    assert!(!doc["host"].as_str().unwrap().is_empty(), "{doc:#}");
    assert!(
        doc["vmove_version"].as_str().unwrap().starts_with("0."),
        "{doc:#}"
    );
    let vms = doc["vms"].as_array().unwrap();
    let web = vms.iter().find(|v| v["name"] == "web-1").unwrap();
    let huge = vms.iter().find(|v| v["name"] == "huge-1").unwrap();
    assert!(
        web["started"].is_string() && web["ended"].is_string(),
        "{web:#}"
    );
    assert!(web["started"].as_str() <= web["ended"].as_str(), "{web:#}");
    // What the progress events said was copied (these sim hosts are too fast to report any).
    assert!(web["bytes_copied"].is_u64(), "{web:#}");
    assert!(web["action"].is_null(), "{web:#}");
    // The simulator measures a live move's switchover as libvirt does (its final stop-and-copy).
    assert!(
        web["downtime_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{web:#}"
    );
    assert!(huge["downtime_ms"].is_null(), "{huge:#}");
    assert!(
        huge["action"].as_str().unwrap().contains("free memory"),
        "{huge:#}"
    );
}

#[test]
fn the_end_of_run_summary_has_the_action_needed_section() {
    let sb = Sandbox::new("summary-actions");
    sb.write("vmove.toml", SIM_HOSTS);
    let r = sb.run(&[
        "evacuate", "a", "--to", "b", "--plain", "--report", "live.md",
    ]);
    r.expect_code(2);
    let actions = from(&r.stdout, "ACTION NEEDED");
    assert!(
        actions.iter().any(|l| l.starts_with("huge-1")),
        "{}",
        r.stdout
    );
    let md = std::fs::read_to_string(sb.dir.join("live.md")).unwrap();
    assert!(md.contains("## Action needed"), "{md}");
    assert!(md.contains("- command: `vmove evacuate a --to b"), "{md}");
}

#[test]
fn migrate_help_shows_examples_and_settings_list_their_values() {
    let sb = Sandbox::new("help-examples");
    let r = sb.run(&["migrate", "--help"]);
    r.expect_code(0);
    assert!(r.stdout.contains("Examples:"), "{}", r.stdout);
    assert!(
        r.stdout.contains("vmove migrate web-01 web-02 --to hv-02"),
        "{}",
        r.stdout
    );
    let flat = r.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("[possible values: packed, largest_first, smallest_first, as_given]"),
        "{}",
        r.stdout
    );
    assert!(
        flat.contains("[possible values: abort, escalate]"),
        "{}",
        r.stdout
    );
    for cmd in ["evacuate", "plan", "status", "report"] {
        let r = sb.run(&[cmd, "--help"]);
        r.expect_code(0);
        assert!(r.stdout.contains("Examples:"), "{cmd}: {}", r.stdout);
    }
    // The value is still checked by the settings, with their own message, and dashes are
    // still accepted.
    let bad = sb.run(&["demo", "--order", "random"]);
    assert_ne!(bad.code, Some(0), "{}", bad.stderr);
    assert!(bad.stderr.contains("order"), "{}", bad.stderr);
}
