//! The run's timeline from the CLI: `report --report run.html|run.svg` on a sim run (the SVG
//! parsed: one bar per attempt), names escaped, `migrate --report run.html`, the text timeline
//! of `report` and `plan`, and the HTML report loaded in headless Chromium.
#![allow(clippy::unwrap_used)]

use crate::common::{SIM_HOSTS, Sandbox};
use std::collections::BTreeMap;

/// A sandbox with one finished evacuation of the sim hosts (web-2 retried once, huge-1 fits
/// nowhere, db-1 waits for its backup) in its journal.
fn with_a_run(name: &str, config: &str) -> Sandbox {
    let sb = Sandbox::new(name);
    sb.write("vmove.toml", config);
    sb.run(&["evacuate", "a", "--to", "b", "--plain"])
        .expect_code(2);
    sb
}

/// The run's id and each VM's attempts, from `report --json` (the journal's own figures).
fn attempts(sb: &Sandbox) -> (String, BTreeMap<String, u64>) {
    let r = sb.run(&["report", "--json"]);
    r.expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let per_vm = doc["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_owned(),
                v["attempts"].as_u64().unwrap(),
            )
        })
        .collect();
    (doc["run_id"].as_str().unwrap().to_owned(), per_vm)
}

/// The `<svg>` element of a page (the HTML around it is not XML).
fn svg_of(page: &str) -> &str {
    let from = page.find("<svg").expect("an <svg> in the page");
    let to = page.rfind("</svg>").expect("an </svg> in the page") + "</svg>".len();
    &page[from..to]
}

/// Per VM id, the attempt bars (`rect` whose class starts with `class`) of a parsed SVG.
fn bars(svg: &str, class: &str) -> BTreeMap<String, u64> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML ({e}): {svg}"));
    let mut out = BTreeMap::new();
    for n in doc.descendants().filter(|n| {
        n.has_tag_name("rect")
            && n.attribute("class")
                .is_some_and(|c| c == class || c.starts_with(&format!("{class} ")))
    }) {
        *out.entry(n.attribute("data-vm").unwrap().to_owned())
            .or_default() += 1;
    }
    out
}

fn without_zeros(m: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    m.into_iter().filter(|(_, n)| *n > 0).collect()
}

#[test]
fn report_html_holds_the_report_and_one_bar_per_attempt() {
    let sb = with_a_run("tl-html", SIM_HOSTS);
    let (run, per_vm) = attempts(&sb);
    assert!(per_vm.values().any(|n| *n >= 2), "a retried VM: {per_vm:?}");
    sb.run(&["report", &run, "--report", "run.html"])
        .expect_code(0);
    let page = std::fs::read_to_string(sb.dir.join("run.html")).unwrap();
    assert!(
        page.contains(&format!("<title>vmove run {run}</title>")),
        "{page}"
    );
    // The report's facts: every VM, the action needed for the one that did not move.
    for name in ["web-1", "web-2", "db-1", "huge-1"] {
        assert!(page.contains(name), "{name} missing");
    }
    assert!(page.contains("Action needed") && page.contains("unmigratable"));
    // Self-contained: nothing fetched, nothing run.
    for outside in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!page.contains(outside), "{outside} in the page");
    }
    let svg = svg_of(&page);
    let want = without_zeros(per_vm);
    assert!(!bars(svg, "attempt o-moved").is_empty(), "moved bars");
    assert_eq!(bars(svg, "attempt"), want, "one attempt bar per attempt");
    assert_eq!(
        bars(svg, "slot out"),
        want,
        "one outbound slot bar per attempt"
    );
    assert_eq!(
        bars(svg, "slot in"),
        want,
        "one inbound slot bar per attempt"
    );

    // The bare SVG: the same bars, a document of its own.
    sb.run(&["report", &run, "--report", "run.svg"])
        .expect_code(0);
    let svg = std::fs::read_to_string(sb.dir.join("run.svg")).unwrap();
    assert_eq!(bars(&svg, "attempt"), want);
}

#[test]
fn a_vm_named_like_a_script_does_not_inject_into_the_html_report() {
    let evil = "<script>alert(1)</script>";
    let config = SIM_HOSTS.replace(
        "{ name = \"web-1\"",
        &format!("{{ name = \"{evil}\", memory_gib = 1, disk_gib = 1 }},\n  {{ name = \"web-1\""),
    );
    let sb = with_a_run("tl-evil", &config);
    sb.run(&["report", "--report", "run.html"]).expect_code(0);
    let page = std::fs::read_to_string(sb.dir.join("run.html")).unwrap();
    assert!(!page.contains("<script"), "a name injected markup");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the name is shown, escaped"
    );
    roxmltree::Document::parse(svg_of(&page)).unwrap();
}

#[test]
fn migrate_writes_the_html_report_with_its_timeline_and_says_the_timeline() {
    let sb = Sandbox::new("tl-migrate");
    sb.write("vmove.toml", SIM_HOSTS);
    let r = sb.run(&[
        "migrate",
        "web-1",
        "web-2",
        "--to",
        "b",
        "--plain",
        "--report",
        "m.html",
        "--timeline",
    ]);
    r.expect_code(0);
    assert!(r.stdout.contains("timeline of run"), "{}", r.stdout);
    let page = std::fs::read_to_string(sb.dir.join("m.html")).unwrap();
    let (_, per_vm) = attempts(&sb);
    assert_eq!(bars(svg_of(&page), "attempt"), without_zeros(per_vm));
}

#[test]
fn report_and_plan_print_a_text_timeline_fitted_to_columns() {
    let sb = with_a_run("tl-text", SIM_HOSTS);
    let r = sb.run_env(&["report", "--timeline"], &[("COLUMNS", "70")]);
    r.expect_code(0);
    let from = r.stdout.find("timeline of run").expect("a timeline");
    let text = &r.stdout[from..];
    for line in text.lines().filter(|l| l.contains(" |")) {
        assert!(line.chars().count() <= 70, "{line:?}");
    }
    let lane = |l: &&str| l.trim_start().starts_with("out ") || l.trim_start().starts_with("in ");
    assert!(text.lines().filter(lane).count() >= 2, "{text}");
    assert!(text.lines().filter(lane).any(|l| l.contains('M')), "{text}");
    let web2 = text
        .lines()
        .find(|l| l.contains("web-2"))
        .expect("web-2's row");
    assert!(web2.contains('F') || web2.contains('R'), "{web2}");
    assert!(text.contains("M moved"), "a legend: {text}");
    // Without the flag, no timeline.
    let plain = sb.run(&["report"]);
    assert!(!plain.stdout.contains("timeline of run"));

    let p = sb.run_env(
        &["plan", "evacuate", "a", "--to", "b", "--timeline"],
        &[("COLUMNS", "90")],
    );
    assert!(
        p.stdout.contains("timeline of run"),
        "{}{}",
        p.stdout,
        p.stderr
    );
    let from = p.stdout.find("timeline of run").unwrap();
    assert!(
        p.stdout[from..].lines().filter(lane).count() >= 2,
        "{}",
        p.stdout
    );
    sb.run(&[
        "plan",
        "evacuate",
        "a",
        "--to",
        "b",
        "--report",
        "plan.html",
    ]);
    let page = std::fs::read_to_string(sb.dir.join("plan.html")).unwrap();
    let planned = roxmltree::Document::parse(svg_of(&page))
        .unwrap()
        .descendants()
        .filter(|n| n.attribute("class") == Some("predicted") && n.attribute("data-vm").is_some())
        .count();
    assert!(planned >= 3, "the plan's predicted bars: {planned}");
}

/// Headless Chromium, where it is installed (`VMOVE_REQUIRE_BROWSER=1`: it must be).
fn chromium() -> Option<std::path::PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .filter_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
        .next();
    if found.is_none() {
        assert!(
            std::env::var("VMOVE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "VMOVE_REQUIRE_BROWSER=1 and no chromium on PATH"
        );
        eprintln!("SKIPPED: no chromium on PATH (Debian: apt-get install chromium)");
    }
    found
}

#[test]
fn the_html_report_opens_in_chromium_and_shows_the_run() {
    let Some(browser) = chromium() else {
        return;
    };
    let sb = with_a_run("tl-browser", SIM_HOSTS);
    let (run, per_vm) = attempts(&sb);
    sb.run(&["report", &run, "--report", "run.html"])
        .expect_code(0);
    let url = format!("file://{}", sb.dir.join("run.html").display());
    let out = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!(
            "--user-data-dir={}",
            sb.dir.join("chromium").display()
        ))
        .args(["--dump-dom", &url])
        .env("HOME", sb.dir.join("home"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(&format!("<span id=\"run-id\">{run}</span>")),
        "the run id is not in the rendered DOM: {dom}"
    );
    // The browser's own serialisation of the SVG: one attempt bar per attempt.
    let drawn = dom.matches("class=\"attempt o-").count() as u64;
    let want: u64 = per_vm.values().sum();
    assert!(want > 0);
    assert_eq!(drawn, want, "{dom}");
    assert_eq!(dom.matches("class=\"slot out o-").count() as u64, want);
}

/// Per VM id, the predicted bars (`rect.predicted` with a `data-vm`: not the legend's) of a
/// parsed SVG.
fn predicted(svg: &str) -> BTreeMap<String, u64> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML ({e}): {svg}"));
    let mut out = BTreeMap::new();
    for n in doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("class") == Some("predicted"))
    {
        if let Some(vm) = n.attribute("data-vm") {
            *out.entry(vm.to_owned()).or_default() += 1;
        }
    }
    out
}

/// A run journals the plan it was started with: `report RUN --report x.svg|x.html` draws one
/// predicted bar per planned VM, beside that VM's real bars; a planned VM is one of the run's,
/// and every VM the run tried to move was planned.
#[test]
fn a_run_journals_its_plan_and_its_report_draws_the_predicted_bars() {
    let sb = with_a_run("tl-planned", SIM_HOSTS);
    let (run, per_vm) = attempts(&sb);
    let r = sb.run(&["report", &run, "--report", "x.svg"]);
    r.expect_code(0);
    assert!(r.stdout.contains("planned: "), "{}", r.stdout);
    let svg = std::fs::read_to_string(sb.dir.join("x.svg")).unwrap();
    let planned = predicted(&svg);
    assert!(!planned.is_empty(), "no predicted bar: {svg}");
    assert!(
        planned.values().all(|n| *n == 1),
        "one predicted bar per planned VM: {planned:?}"
    );
    for vm in planned.keys() {
        assert!(per_vm.contains_key(vm), "{vm} is not the run's: {per_vm:?}");
    }
    // The VMs the run tried to move (huge-1 fits nowhere: tried by neither).
    let tried: Vec<&String> = per_vm
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(v, _)| v)
        .collect();
    assert_eq!(planned.keys().collect::<Vec<_>>(), tried);
    // Beside the real ones: the same rows hold the attempt bars.
    let real = bars(&svg, "attempt");
    assert!(planned.keys().all(|vm| real.contains_key(vm)), "{real:?}");
    assert!(svg.contains("as planned"), "the legend says so");
    // The HTML report draws them too.
    sb.run(&["report", &run, "--report", "x.html"])
        .expect_code(0);
    let page = std::fs::read_to_string(sb.dir.join("x.html")).unwrap();
    assert_eq!(predicted(svg_of(&page)), planned);
    // The text timeline: the plan's moves at once beside each host's real lanes.
    let t = sb.run_env(&["report", &run, "--timeline"], &[("COLUMNS", "80")]);
    t.expect_code(0);
    let planned_out = t
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("planned out"))
        .unwrap_or_else(|| panic!("no planned row: {}", t.stdout));
    assert!(
        planned_out.chars().any(|c| c.is_ascii_digit()),
        "{planned_out}"
    );
}

/// A run whose plan cannot be made (the journal's history, which the plan is fitted from,
/// holds a damaged run) still runs to its end; it says so on stderr, and its report says why
/// and draws no predicted bar. (A `--plan-*` figure no link has is refused before the run:
/// bad_input.rs.)
#[test]
fn a_run_whose_plan_cannot_be_made_still_runs_and_its_report_says_why() {
    let sb = Sandbox::new("tl-noplan");
    sb.write("vmove.toml", SIM_HOSTS);
    sb.run(&["migrate", "web-2", "--to", "b", "--plain"])
        .expect_code(0);
    let (damaged, _) = attempts(&sb);
    let db = rusqlite::Connection::open(sb.dir.join("home/.local/share/vmove/journal.db")).unwrap();
    db.execute(
        "UPDATE entries SET at = -5 WHERE run_id = ?1 AND seq = 3",
        [&damaged],
    )
    .unwrap();
    drop(db);
    let r = sb.run(&["migrate", "web-1", "--to", "b", "--plain"]);
    r.expect_code(0);
    let why = format!("no plan was made: cannot read run {damaged} from the journal");
    assert!(
        r.stderr.contains(&format!("warning: {why}")),
        "{}",
        r.stderr
    );
    let (run, per_vm) = attempts(&sb);
    assert_ne!(run, damaged);
    assert_eq!(per_vm.len(), 1, "{per_vm:?}");
    let rep = sb.run(&["report", &run, "--report", "x.svg"]);
    rep.expect_code(0);
    assert!(rep.stdout.contains(&why), "{}", rep.stdout);
    let svg = std::fs::read_to_string(sb.dir.join("x.svg")).unwrap();
    assert!(predicted(&svg).is_empty(), "{svg}");
    assert_eq!(bars(&svg, "attempt").len(), 1, "the run's own bar");
    let t = sb.run(&["report", &run, "--timeline"]);
    assert!(!t.stdout.contains("planned out"), "{}", t.stdout);
}

/// A journaled plan row naming a VM that is not the run's is left out of the drawing (no
/// panic); the run's own planned VMs are drawn.
#[test]
fn a_plan_row_of_a_vm_not_in_the_run_is_ignored() {
    let sb = Sandbox::new("tl-stranger");
    sb.write("vmove.toml", SIM_HOSTS);
    sb.run(&[
        "migrate",
        "web-1",
        "--to",
        "b",
        "--plain",
        "--journal",
        "j.db",
    ])
    .expect_code(0);
    let r = sb.run(&["report", "--json", "--journal", "j.db"]);
    r.expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let run = doc["run_id"].as_str().unwrap().to_owned();
    let web1 = doc["vms"][0]["id"].as_str().unwrap().to_owned();
    {
        let mut j = vmove_journal::Journal::open(sb.dir.join("j.db")).unwrap();
        let mut plan = j.planned_moves(&run).unwrap();
        assert_eq!(plan.len(), 1, "the run's plan: {plan:?}");
        let mut stranger = plan[0].clone();
        stranger.vm = vmove_core::VmId::new("not-a-vm-of-this-run");
        plan.insert(0, stranger);
        j.record_plan(&run, &plan).unwrap();
    }
    sb.run(&[
        "report",
        &run,
        "--journal",
        "j.db",
        "--report",
        "x.svg",
        "--timeline",
    ])
    .expect_code(0);
    let svg = std::fs::read_to_string(sb.dir.join("x.svg")).unwrap();
    assert_eq!(predicted(&svg), BTreeMap::from([(web1, 1)]));
    assert!(!svg.contains("not-a-vm-of-this-run"));
}

#[test]
fn a_text_timeline_fitted_to_70000_columns_is_printed_without_a_panic() {
    // `COLUMNS` over 65,535 once fed a `{:<w$}` width, which panics. (Now any width over 1000
    // is taken as 1000.)
    let sb = with_a_run("tl-wide", SIM_HOSTS);
    let r = sb.run_env(&["report", "--timeline"], &[("COLUMNS", "70000")]);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    r.expect_code(0);
    let from = r.stdout.find("timeline of run").expect("a timeline");
    let axis = r.stdout[from..]
        .lines()
        .find(|l| l.contains("|0s"))
        .expect("the time axis");
    assert_eq!(
        axis.chars().count(),
        1000,
        "the axis spans the widest width"
    );
}

/// The width of the text timeline in `out` (its time axis), if it holds one.
fn axis_width(out: &str) -> Option<usize> {
    let from = out.find("timeline of run")?;
    out[from..]
        .lines()
        .find(|l| l.contains("|0s"))
        .map(|l| l.chars().count())
}

/// `COLUMNS` wider than any terminal is taken as the widest vmove fits to, 1000 columns. Before,
/// `COLUMNS=18446744073709551615` had the text timeline ask for that many columns once every VM
/// had moved: `capacity overflow`, exit 101, and the run's `--report` never written
/// (`COLUMNS=100000000` printed a 700 MB timeline). Now `plan`, the run and `report` each end
/// as they would have, the report written, their timelines 1000 columns wide.
#[test]
fn a_columns_wider_than_any_terminal_is_taken_as_1000_and_the_run_still_writes_its_report() {
    let sb = Sandbox::new("tl-huge-columns");
    sb.write("vmove.toml", SIM_HOSTS);
    for columns in ["18446744073709551615", "100000000"] {
        let env = [("COLUMNS", columns)];
        let p = sb.run_env(&["plan", "evacuate", "a", "--to", "b", "--timeline"], &env);
        assert!(!p.stderr.contains("panicked"), "{columns}: {}", p.stderr);
        assert_eq!(axis_width(&p.stdout), Some(1000), "{columns}: {}", p.stdout);
    }
    let r = sb.run_env(
        &[
            "evacuate",
            "a",
            "--to",
            "b",
            "--plain",
            "--timeline",
            "--report",
            "r.json",
        ],
        &[("COLUMNS", "18446744073709551615")],
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    // huge-1 fits nowhere: the run's own exit code, as `with_a_run`'s.
    r.expect_code(2);
    assert_eq!(axis_width(&r.stdout), Some(1000), "{}", r.stdout);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(report["outcome"], "some_unmigratable", "{report}");
    let t = sb.run_env(
        &["report", "--timeline"],
        &[("COLUMNS", "18446744073709551615")],
    );
    t.expect_code(0);
    assert_eq!(axis_width(&t.stdout), Some(1000), "{}", t.stdout);
}
