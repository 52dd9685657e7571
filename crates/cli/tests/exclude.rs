//! `--exclude`: VMs a run never moves, whatever selects them.
#![allow(clippy::unwrap_used)]

mod common;

use common::{SIM_HOSTS, Sandbox};

fn moved_names(sb: &Sandbox, report: &str) -> Vec<String> {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.dir.join(report)).unwrap()).unwrap();
    let mut names: Vec<String> = doc["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_evacuation_leaves_the_excluded_vms_where_they_are() {
    let sb = Sandbox::new("exclude-evacuate");
    sb.write("vmove.toml", SIM_HOSTS);
    // huge-1 cannot move (exit 2 without the exclusion); excluded with the web VMs, the rest
    // moves and the run exits 0.
    let r = sb.run(&[
        "evacuate",
        "a",
        "--to",
        "b",
        "--plain",
        "--exclude",
        "web-*",
        "--exclude",
        "huge-1",
        "--report",
        "r.json",
    ]);
    r.expect_code(0);
    assert_eq!(moved_names(&sb, "r.json"), ["db-1"]);
    // Comma-separated, and by a plain name.
    let r = sb.run(&[
        "migrate",
        "a:*",
        "--to",
        "b",
        "--plain",
        "--exclude",
        "huge-1,db-1",
        "--report",
        "m.json",
    ]);
    r.expect_code(0);
    assert_eq!(moved_names(&sb, "m.json"), ["web-1", "web-2"]);
}

#[test]
fn a_bad_exclusion_pattern_is_refused_before_anything_runs() {
    let sb = Sandbox::new("exclude-bad");
    sb.write("vmove.toml", SIM_HOSTS);
    let r = sb.run(&[
        "evacuate",
        "a",
        "--to",
        "b",
        "--plain",
        "--exclude",
        "web-[",
    ]);
    r.expect_code(1);
    assert!(r.stderr.contains("web-["), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    let h = sb.run(&["history"]);
    assert!(
        h.stdout.contains("no runs"),
        "nothing journaled: {}",
        h.stdout
    );
}
