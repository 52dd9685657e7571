//! `--exclude`: VMs a run never moves, whatever selects them.
#![allow(clippy::unwrap_used)]

use crate::common::{SIM_HOSTS, Sandbox};

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

/// A VM named to be moved and excluded too (`vmove migrate web-1 --exclude 'web-*'`), or a
/// pattern whose every VM is excluded, is a mistake: refused before anything runs, naming the
/// VM or pattern and the exclusion that took it out, nothing journaled. Before, the run moved
/// nothing and exited 0, as if it had done what was asked.
#[test]
fn a_vm_named_and_excluded_is_refused_naming_it_and_the_exclusion() {
    let sb = Sandbox::new("exclude-named");
    sb.write("vmove.toml", SIM_HOSTS);
    for (args, needles) in [
        (
            &["migrate", "web-1", "--to", "b", "--exclude", "web-*"][..],
            &["`web-1` is named to be moved but excluded by `--exclude web-*`"][..],
        ),
        (
            &["migrate", "a:web-1", "--to", "b", "--exclude", "db-1,web-1"],
            &["`web-1` is named to be moved but excluded by `--exclude web-1`"],
        ),
        (
            &[
                "migrate",
                "a:web-2",
                "db-1",
                "--from",
                "a",
                "--to",
                "b",
                "--exclude",
                "web-*",
                "--exclude",
                "db-1",
            ],
            &["`web-2`", "`--exclude web-*`", "`db-1`", "`--exclude db-1`"],
        ),
        (
            &["migrate", "a:web-*", "--to", "b", "--exclude", "web-*"],
            &[
                "`web-*` selects only VMs `--exclude` leaves out (`web-1` by `web-*`, `web-2` by `web-*`)",
            ],
        ),
        (
            &[
                "plan",
                "migrate",
                "web-1",
                "--to",
                "b",
                "--exclude",
                "web-*",
            ],
            &["`web-1`", "`--exclude web-*`"],
        ),
    ] {
        let r = sb.run(&[args, &["--plain"]].concat());
        r.expect_code(1);
        for n in needles {
            assert!(r.stderr.contains(n), "{args:?}: `{n}` not in {}", r.stderr);
        }
        assert!(r.stderr.contains("nothing was started"), "{}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }
    let h = sb.run(&["history"]);
    assert!(
        h.stdout.contains("no runs"),
        "nothing journaled: {}",
        h.stdout
    );
    // A pattern that still selects a VM the exclusions leave is what --exclude is for.
    let plan = sb.run(&[
        "plan",
        "migrate",
        "a:web-*",
        "--to",
        "b",
        "--exclude",
        "web-1",
    ]);
    plan.expect_code(0);
    assert!(plan.stdout.contains("web-2"), "{}", plan.stdout);
}
