//! `vmove check migrate|evacuate ...` and the pre-flight section of `vmove plan` (and `plan
//! --json`), run as a user would against sim hosts that keep their state in a file: exit codes
//! 0 / 2 / 1, the findings per VM and destination, the JSON documents, nothing changed on any
//! host or in the journal, and a closed stdout.
#![allow(clippy::unwrap_used)]

use crate::support::{Run, SIM_CONFIG, Sandbox};
use std::process::Stdio;

/// `a` holds a VM that fits on no destination (`huge-1`), one that fits on `c` only
/// (`big-1`), a stopped one (`off-1`) and a small one; `b` is small, `c` roomy.
const HOSTS: &str = r#"
[hosts.a]
driver = "sim"
speed = 1000
state_file = "state/sim.log"
vms = [
  { name = "web-1", memory_gib = 1, disk_gib = 2 },
  { name = "off-1", memory_gib = 1, disk_gib = 2, off = true },
  { name = "big-1", memory_gib = 100, disk_gib = 10 },
  { name = "huge-1", memory_gib = 1000, disk_gib = 10 },
]

[hosts.b]
driver = "sim"
speed = 1000
memory_gib = 64
state_file = "state/sim.log"

[hosts.c]
driver = "sim"
speed = 1000
memory_gib = 256
state_file = "state/sim.log"
"#;

fn sandbox(name: &str, config: &str) -> Sandbox {
    let sb = Sandbox::new(&format!("check-{name}"));
    sb.write("vmove.toml", config);
    sb
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{}", r.stdout))
}

#[test]
fn check_exits_0_when_every_vm_can_move() {
    let sb = sandbox("all", SIM_CONFIG);
    let r = sb.run(&["check", "evacuate", "a", "--to", "b,c"]);
    r.no_panic().expect_code(0);
    assert!(
        r.stdout.contains("4 VMs: 4 can move, 0 cannot"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("hosts:"), "{}", r.stdout);
    // Hosts first, then the VMs' tables.
    let hosts_at = r.stdout.find("hosts:").unwrap();
    let vm_at = r.stdout.find("web-1 (on a, live)").unwrap();
    assert!(hosts_at < vm_at, "{}", r.stdout);
}

#[test]
fn check_exits_2_and_names_the_finding_of_a_vm_no_destination_takes() {
    let sb = sandbox("none", HOSTS);
    let r = sb.run(&["check", "migrate", "a:huge-1", "a:web-1", "--to", "b,c"]);
    r.no_panic().expect_code(2);
    assert!(
        r.stdout.contains("no_room: b has no room for VM huge-1"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("no_room: c has no room for VM huge-1"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("remedy: "), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("2 VMs: 1 can move, 1 cannot (huge-1: no allowed destination takes it)"),
        "{}",
        r.stdout
    );
}

#[test]
fn check_shows_a_route_blocked_on_one_destination_and_exits_0_when_another_takes_the_vm() {
    let sb = sandbox("one-of-two", HOSTS);
    let r = sb.run(&["check", "migrate", "a:big-1", "--to", "b,c"]);
    r.no_panic().expect_code(0);
    let table = r.stdout.split("DESTINATION").nth(1).unwrap_or_default();
    let line = |dest: &str| {
        table
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{dest} ")))
            .unwrap_or_else(|| panic!("no row for {dest}:\n{}", r.stdout))
            .to_owned()
    };
    assert!(
        line("b").contains("blocked") && line("b").contains("no_room"),
        "{}",
        r.stdout
    );
    assert!(line("c").contains("ok"), "{}", r.stdout);
    // Pinned to b, the only route is the blocked one: it cannot move.
    let r = sb.run(&[
        "check", "migrate", "a:big-1", "--to", "b,c", "--pin", "big-1=b",
    ]);
    r.no_panic().expect_code(2);
    let table = r.stdout.split("DESTINATION").nth(1).unwrap_or_default();
    assert!(
        !table.lines().any(|l| l.trim_start().starts_with("c ")),
        "{}",
        r.stdout
    );
}

#[test]
fn check_json_is_one_document_with_hosts_vms_routes_and_a_summary() {
    let sb = sandbox("json", HOSTS);
    let r = sb.run(&["check", "evacuate", "a", "--to", "b,c", "--json"]);
    r.no_panic().expect_code(2);
    let v = json(&r);
    let hosts = v["hosts"].as_array().unwrap();
    let names: Vec<&str> = hosts.iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b", "c"], "{v}");
    assert_eq!(hosts[0]["role"], "source", "{v}");
    let vms = v["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 4, "{v}");
    let vm = |name: &str| vms.iter().find(|x| x["name"] == name).unwrap().clone();
    // The mode is the run's: a stopped VM offline, a running one live.
    assert_eq!(vm("off-1")["routes"][0]["mode"], "offline", "{v}");
    assert_eq!(vm("web-1")["routes"][0]["mode"], "live", "{v}");
    for x in vms {
        assert_eq!(x["source"], "a", "{x}");
        assert!(x["vm"].is_string(), "{x}");
        assert_eq!(x["routes"].as_array().unwrap().len(), 2, "{x}");
    }
    let big = vm("big-1");
    assert_eq!(big["can_move"], true, "{big}");
    let b = &big["routes"][0];
    assert_eq!(b["destination"], "b", "{big}");
    assert_eq!(b["blockers"][0]["code"], "no_room", "{big}");
    assert_eq!(b["blockers"][0]["scope"], "destination", "{big}");
    assert!(b["warnings"].as_array().unwrap().is_empty(), "{big}");
    assert!(
        big["routes"][1]["blockers"].as_array().unwrap().is_empty(),
        "{big}"
    );
    assert_eq!(vm("huge-1")["can_move"], false, "{v}");
    assert_eq!(v["summary"]["vms"], 4, "{v}");
    assert_eq!(v["summary"]["can_move"], 3, "{v}");
    assert_eq!(v["summary"]["cannot_move"], 1, "{v}");
    assert_eq!(v["summary"]["blocked"][0]["name"], "huge-1", "{v}");
    assert!(r.stderr.trim().is_empty(), "{}", r.stderr);
}

/// `b` (64 GiB) holds `resident` (60 GiB) now: `mid-1` (10 GiB) does not fit there now, but
/// would once `resident` left; `c` (8 GiB) is smaller than `mid-1` for good.
const FULL_NOW: &str = r#"
[hosts.a]
driver = "sim"
speed = 1000
state_file = "state/sim.log"
vms = [
  { name = "mid-1", memory_gib = 10, disk_gib = 2 },
  { name = "web-1", memory_gib = 1, disk_gib = 2 },
]

[hosts.b]
driver = "sim"
speed = 1000
memory_gib = 64
state_file = "state/sim.log"
vms = [
  { name = "resident", memory_gib = 60, disk_gib = 2 },
]

[hosts.c]
driver = "sim"
speed = 1000
memory_gib = 8
state_file = "state/sim.log"
"#;

#[test]
fn check_shows_a_destination_full_now_as_may_pass_not_cannot_move_and_exits_2() {
    let sb = sandbox("full-now", FULL_NOW);
    let r = sb.run(&["check", "migrate", "a:mid-1", "a:web-1", "--to", "b,c"]);
    r.no_panic().expect_code(2);
    let table = r.stdout.split("DESTINATION").nth(1).unwrap_or_default();
    let line = |dest: &str| {
        table
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{dest} ")))
            .unwrap_or_else(|| panic!("no row for {dest}:\n{}", r.stdout))
            .to_owned()
    };
    assert!(
        line("b").contains("may_pass") && line("b").contains("may pass no_room: b has no room"),
        "{}",
        r.stdout
    );
    assert!(
        line("c").contains("blocked  ") && !line("c").contains("may pass"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("mid-1 (on a, live): not now, may pass (no_room on b)"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("mid-1 (on a, live): cannot move"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("2 VMs: 1 can move, 0 cannot, 1 not now (mid-1: no_room on b)"),
        "{}",
        r.stdout
    );
    let r = sb.run(&[
        "check", "migrate", "a:mid-1", "a:web-1", "--to", "b,c", "--json",
    ]);
    r.no_panic().expect_code(2);
    let v = json(&r);
    let mid = v["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "mid-1")
        .unwrap()
        .clone();
    assert_eq!(mid["can_move"], false, "{mid}");
    assert_eq!(mid["may_pass"], true, "{mid}");
    assert_eq!(mid["reason"], "no_room on b", "{mid}");
    assert_eq!(mid["routes"][0]["verdict"], "may_pass", "{mid}");
    assert_eq!(mid["routes"][0]["blockers"][0]["may_pass"], true, "{mid}");
    assert_eq!(mid["routes"][1]["verdict"], "blocked", "{mid}");
    assert!(
        mid["routes"][1]["blockers"][0].get("may_pass").is_none(),
        "{mid}"
    );
    assert_eq!(v["summary"]["can_move"], 1, "{v}");
    assert_eq!(v["summary"]["cannot_move"], 0, "{v}");
    assert_eq!(v["summary"]["not_now"], 1, "{v}");
    assert_eq!(v["summary"]["waiting"][0]["name"], "mid-1", "{v}");
}

#[test]
fn check_refuses_bad_input_with_exit_1_and_a_clear_error() {
    let sb = sandbox("bad", HOSTS);
    for (args, needle) in [
        (
            &["check", "evacuate", "a", "--to", "nowhere"][..],
            "nowhere",
        ),
        (&["check", "migrate", "a:web-[", "--to", "b"], "web-["),
        (
            &["check", "migrate", "zz:web-1", "--to", "b"],
            "`zz` is not a configured host",
        ),
        (
            &["check", "migrate", "a:ghost", "--to", "b"],
            "`ghost` matches no VM",
        ),
        (
            &[
                "check", "migrate", "a:web-1", "--to", "b", "--pin", "web-1=c",
            ],
            "web-1",
        ),
    ] {
        let r = sb.run(args);
        r.no_panic();
        assert_eq!(
            r.code,
            Some(1),
            "vmove {args:?}:\n{}\n{}",
            r.stdout,
            r.stderr
        );
        assert!(r.stderr.contains(needle), "vmove {args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "vmove {args:?}: {}", r.stdout);
    }
}

#[test]
fn check_changes_nothing_on_the_hosts_or_in_the_journal() {
    let sb = sandbox("nothing", HOSTS);
    // A real move first, so the sim state file and the journal exist.
    sb.run(&["migrate", "a:web-1", "--to", "c", "--plain"])
        .no_panic()
        .expect_code(0);
    let before = sb.snapshot();
    assert!(before.contains_key(&sb.path("state/sim.log")), "{before:?}");
    assert!(before.contains_key(&sb.journal()), "{before:?}");
    for args in [
        &["check", "evacuate", "a", "--to", "b,c"][..],
        &["check", "evacuate", "a", "--to", "b,c", "--json"],
        &["check", "migrate", "c:web-1", "--to", "a"],
    ] {
        let r = sb.run(args);
        r.no_panic();
        // The check ran (a verdict, not an error) and changed nothing.
        assert!(
            matches!(r.code, Some(0 | 2))
                && (r.stdout.contains("can move") || r.stdout.contains("can_move")),
            "vmove {args:?}:\n{}\n{}",
            r.stdout,
            r.stderr
        );
        assert_eq!(sb.snapshot(), before, "vmove {args:?} changed a file");
    }
    let h = sb.run(&["history"]);
    // Only the migrate's run: no check wrote one.
    assert_eq!(
        h.stdout.lines().filter(|l| l.contains("finished")).count(),
        1,
        "{}",
        h.stdout
    );
}

#[test]
fn check_with_a_closed_stdout_does_not_panic() {
    let sb = sandbox("pipe", HOSTS);
    for args in [
        &["check", "evacuate", "a", "--to", "b,c"][..],
        &["check", "evacuate", "a", "--to", "b,c", "--json"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = sb
            .cmd(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "vmove {args:?}: {stderr}"
        );
        // The verdict stands: huge-1 cannot move.
        assert_eq!(out.status.code(), Some(2), "vmove {args:?}: {stderr}");
    }
}

#[test]
fn plan_lists_the_vms_that_cannot_move_and_leaves_them_out() {
    let sb = sandbox("plan", HOSTS);
    let r = sb.run(&["plan", "evacuate", "a", "--to", "b,c"]);
    r.no_panic().expect_code(2);
    let pre = r.stdout.find("pre-flight:").unwrap();
    let eta = r.stdout.find("ETA:").unwrap();
    assert!(pre < eta, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("huge-1 would not move: it cannot move (no allowed destination takes it"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("a -> b  ") || !r.stdout.contains("huge-1  "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("for 4 VMs (3 would move)"),
        "{}",
        r.stdout
    );
}

#[test]
fn plan_json_is_the_plan_as_data_with_consistent_orders_and_the_blocked_vms() {
    let sb = sandbox("plan-json", HOSTS);
    let r = sb.run(&["plan", "evacuate", "a", "--to", "b,c", "--json"]);
    r.no_panic().expect_code(2);
    let v = json(&r);
    let order = v["order"].as_array().unwrap();
    assert_eq!(order.len(), 3, "{v}");
    let mut last = 0.0;
    for (i, m) in order.iter().enumerate() {
        assert_eq!(m["order"], i + 1, "{m}");
        let start = m["start_secs"].as_f64().unwrap();
        let end = m["end_secs"].as_f64().unwrap();
        assert!(start >= last && end >= start, "{v}");
        last = start;
        assert_eq!(m["source"], "a", "{m}");
        assert!(m["destination"] == "b" || m["destination"] == "c", "{m}");
        assert_ne!(m["name"], "huge-1", "{m}");
    }
    let big = order.iter().find(|m| m["name"] == "big-1").unwrap();
    assert_eq!(big["destination"], "c", "{big}");
    assert_eq!(big["mode"], "live", "{big}");
    let off = order.iter().find(|m| m["name"] == "off-1").unwrap();
    assert_eq!(off["mode"], "offline", "{off}");
    let blocked = v["blocked"].as_array().unwrap();
    assert_eq!(blocked.len(), 1, "{v}");
    assert_eq!(blocked[0]["name"], "huge-1", "{v}");
    assert_eq!(
        blocked[0]["routes"][0]["blockers"][0]["code"], "no_room",
        "{v}"
    );
    assert!(v["eta_secs"].as_f64().unwrap() >= last, "{v}");
    assert_eq!(v["vms"], 4, "{v}");
    assert_eq!(v["would_move"], 3, "{v}");
    // The text goes to stderr, out of the JSON's way.
    assert!(r.stderr.contains("ETA:"), "{}", r.stderr);
}

/// `--report FILE` writes the findings (it was accepted and silently ignored): JSON by default,
/// Markdown for `.md`; a report that cannot be written is refused before any host is asked.
#[test]
fn check_report_writes_the_findings_to_the_file() {
    let sb = sandbox("report", HOSTS);
    let json = sb.path("check.json");
    let r = sb.run(&[
        "check",
        "migrate",
        "a:huge-1",
        "--to",
        "b,c",
        "--report",
        json.to_str().unwrap(),
    ]);
    r.no_panic().expect_code(2);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the report was written"))
            .expect("the report is JSON");
    assert_eq!(doc["vms"][0]["name"], "huge-1", "{doc}");
    assert_eq!(doc["vms"][0]["can_move"], false, "{doc}");
    let md = sb.path("check.md");
    sb.run(&[
        "check",
        "migrate",
        "a:huge-1",
        "--to",
        "b,c",
        "--report",
        md.to_str().unwrap(),
    ])
    .no_panic()
    .expect_code(2);
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.starts_with("# vmove check"), "{text}");
    assert!(text.contains("no_room"), "{text}");
    let bad = sb.path("no-such-dir/check.json");
    let r = sb.run(&[
        "check",
        "migrate",
        "a:huge-1",
        "--to",
        "b,c",
        "--report",
        bad.to_str().unwrap(),
    ]);
    r.no_panic().expect_code(1);
    assert!(r.stderr.contains("report"), "{}", r.stderr);
}

#[test]
fn a_host_name_of_65536_characters_is_printed_without_a_panic() {
    // A `{:<w$}` width over 65,535 panics ("Formatting argument out of range"); the name is
    // padded by hand and printed whole.
    let long = "x".repeat(65_536);
    let sb = sandbox(
        "long-host",
        &format!(
            "[hosts.{long}]\ndriver = \"sim\"\nvms = [{{ name = \"v\" }}]\n\n[hosts.b]\ndriver = \"sim\"\n"
        ),
    );
    let plan = sb.run(&["--no-journal", "plan", "evacuate", &long, "--to", "b"]);
    plan.no_panic().expect_code(0);
    assert!(
        plan.stdout
            .lines()
            .any(|l| l.trim_start().starts_with(&long)),
        "the source host is printed whole"
    );
    let check = sb.run(&["--no-journal", "check", "evacuate", "b", "--to", &long]);
    check.no_panic().expect_code(0);
    assert!(
        check
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with(&long)),
        "the destination host is printed whole"
    );
    assert!(check.stdout.contains("0 VMs"), "{}", &check.stdout[..200]);
}
