//! `vmove serve`'s live page in a real browser: Debian's `chromium` driven through
//! `chromedriver` (WebDriver, W3C: <https://www.w3.org/TR/webdriver2/>, spoken here as plain
//! HTTP/JSON to 127.0.0.1) loads a run's page while `vmove evacuate` runs on sim hosts in
//! another process, sees VMs change state and the timeline grow, and saves a screenshot into
//! the test's folder (`VMOVE_SCREENSHOT=FILE` copies it there too: docs/img/live.png).
//! Chromium runs headless, without its sandbox (root in CI), with a profile in the test's
//! folder, and is sent only to 127.0.0.1. Without chromium and chromedriver on PATH the test
//! says SKIPPED and passes, unless `VMOVE_REQUIRE_BROWSER=1` (scripts/test.sh sets it).
#![allow(clippy::unwrap_used)]

use crate::serve_support::*;
use crate::support::Sandbox;
use base64::Engine;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Chromium and chromedriver, or `None` (skip) unless the browser is required.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let found = on_path(&["chromium", "chromium-browser"]).zip(on_path(&["chromedriver"]));
    if found.is_none() {
        assert!(
            std::env::var("VMOVE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "VMOVE_REQUIRE_BROWSER=1 and no chromium + chromedriver on PATH \
             (Debian: apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "SKIPPED: no chromium + chromedriver on PATH (Debian: apt-get install chromium chromium-driver)"
        );
    }
    found
}

/// A free port on 127.0.0.1 (bound and let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One WebDriver command; its `value`.
fn wd(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let text = body.map(|b| b.to_string());
    // Chromium's start (the new session) can take long on a loaded 2-core machine.
    let r = request_within(
        port,
        method,
        path,
        &[("Content-Type", "application/json")],
        text.as_deref(),
        Duration::from_secs(120),
    );
    let v: Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("{method} {path}: {} {e}: {}", r.status, r.body));
    assert_eq!(r.status, 200, "{method} {path}: {v}");
    v["value"].clone()
}

#[test]
fn the_live_page_in_chromium_shows_vms_change_state_and_the_timeline_grow() {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let sb = Sandbox::new("serve-browser");
    sb.write("vmove.toml", SLOW_SIM);
    let mut ev = start_evacuation(&sb);
    let run = wait_for_run(&sb);
    let srv = Server::start(&sb, &[], &[]);

    let port = free_port();
    let driver = Proc {
        child: Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    let until = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = sb.path("chromium-profile");
    let session = wd(
        port,
        "POST",
        "/session",
        Some(&json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_str().unwrap(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking", "--disable-sync",
                    "--disable-extensions", "--window-size=1300,1100",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}})),
    );
    let sid = session["sessionId"].as_str().unwrap().to_owned();
    let s = |p: &str| format!("/session/{sid}{p}");
    wd(
        port,
        "POST",
        &s("/url"),
        Some(&json!({ "url": srv.url(&format!("/runs/{run}")) })),
    );

    let probe = r##"
        const img = document.getElementById("timeline");
        return {
            state: document.getElementById("run-state").textContent,
            live: document.getElementById("live").textContent,
            updates: Number(document.body.dataset.updates || 0),
            phases: Array.from(document.querySelectorAll("#vms tr[data-vm]")).map(
                (tr) => [tr.querySelector("td.name").textContent, tr.querySelector("td.phase").textContent]),
            imgs_in_table: document.querySelectorAll("#vms img").length,
            timeline_src: img ? img.getAttribute("src") : "",
            timeline_width: img ? img.naturalWidth : 0,
        };"##;
    let mut seen: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    let mut srcs = std::collections::BTreeSet::new();
    let mut last: Value;
    let mut svg_sizes = Vec::new();
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let v = wd(
            port,
            "POST",
            &s("/execute/sync"),
            Some(&json!({ "script": probe, "args": [] })),
        );
        for pair in v["phases"].as_array().unwrap() {
            seen.entry(pair[0].as_str().unwrap().to_owned())
                .or_default()
                .insert(pair[1].as_str().unwrap().to_owned());
        }
        srcs.insert(v["timeline_src"].as_str().unwrap_or("").to_owned());
        let svg = srv.get(&format!("/runs/{run}/timeline.svg"));
        if svg.status == 200 {
            svg_sizes.push(svg.body.matches("<rect").count());
        }
        assert_eq!(v["imgs_in_table"], 0, "a VM name became markup: {v}");
        let done = v["state"] == "finished";
        last = v;
        if done {
            break;
        }
        assert!(
            Instant::now() < until,
            "the page never showed the run finished: {last}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Give the timeline a moment to fetch its last picture, then keep a screenshot.
    std::thread::sleep(Duration::from_millis(1500));
    let shot = wd(port, "GET", &s("/screenshot"), None);
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot.as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let file = sb.path("live.png");
    std::fs::write(&file, &png).unwrap();
    if let Some(copy) = std::env::var_os("VMOVE_SCREENSHOT") {
        std::fs::write(copy, &png).unwrap();
    }
    let end = wd(
        port,
        "POST",
        &s("/execute/sync"),
        Some(&json!({ "script": probe, "args": [] })),
    );
    let _ = request(port, "DELETE", &s(""), &[], Some(""));
    drop(driver);

    assert!(last["updates"].as_u64().unwrap() >= 3, "{last}");
    // VMs were seen changing state on the page: some in flight, then every one moved.
    let moving: Vec<&String> = seen
        .iter()
        .filter(|(_, p)| p.iter().any(|x| x != "moved" && x != "queued"))
        .map(|(n, _)| n)
        .collect();
    assert!(!moving.is_empty(), "no VM seen in flight: {seen:?}");
    assert!(
        seen.values().filter(|p| p.len() >= 2).count() >= 2,
        "fewer than two VMs seen changing state: {seen:?}"
    );
    for pair in end["phases"].as_array().unwrap() {
        assert_eq!(pair[1], "moved", "{end}");
    }
    // The hostile name is on the page as text.
    assert!(seen.contains_key(HOSTILE), "{seen:?}");
    // The timeline grew: fetched again as the run went, drawn, more bars at the end.
    assert!(
        srcs.len() >= 3,
        "the timeline was not fetched again: {srcs:?}"
    );
    assert!(end["timeline_width"].as_u64().unwrap() > 0, "{end}");
    assert!(
        svg_sizes.first() < svg_sizes.last(),
        "the timeline did not grow: {svg_sizes:?}"
    );
    assert_eq!(wait_within(&mut ev, Duration::from_secs(30)), Some(0));
}
