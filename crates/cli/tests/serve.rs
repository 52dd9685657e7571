//! `vmove serve` against a journal that another vmove process writes: the pages (escaped, with
//! nothing from outside the binary), the live event stream, one journal poller per run whatever
//! the clients, `/metrics` parsed by a Prometheus text-format parser and checked against the
//! journal, and control: refused without `--allow-control`, behind a token with it.
#![allow(clippy::unwrap_used)]

use crate::serve_support::*;
use crate::support::Sandbox;
use std::time::{Duration, Instant};

/// A finished evacuation of [`SLOW_SIM`] in the sandbox's journal; its run id.
fn finished_run(sb: &Sandbox) -> String {
    sb.write("vmove.toml", SLOW_SIM);
    sb.run_within(
        &["evacuate", "a", "--to", "b", "--plain"],
        &[],
        Duration::from_secs(120),
    )
    .expect_code(0);
    wait_for_run(sb)
}

/// Every `src=` and `href=` value in the tags of an HTML text (text between tags is not looked
/// at: escaped text has no `<`).
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let tags: Vec<&str> = html
        .split('<')
        .skip(1)
        .map(|t| t.split('>').next().unwrap_or(""))
        .collect();
    for attr in [" src=", " href="] {
        for tag in &tags {
            let mut rest = *tag;
            while let Some(i) = rest.find(attr) {
                rest = &rest[i + attr.len()..];
                let v = match rest.chars().next() {
                    Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
                    _ => rest
                        .split(|c: char| c.is_whitespace() || c == '>')
                        .next()
                        .unwrap_or(""),
                };
                out.push(v.to_owned());
            }
        }
    }
    out
}

#[test]
fn pages_escape_a_hostile_vm_name_and_load_nothing_from_outside_the_binary() {
    let sb = Sandbox::new("serve-pages");
    let run = finished_run(&sb);
    let srv = Server::start(&sb, &[], &[]);

    let index = srv.get("/");
    assert_eq!(index.status, 200, "{}", index.body);
    assert!(index.body.contains(&run), "{}", index.body);

    let page = srv.get(&format!("/runs/{run}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        page.headers
    );
    // The hostile name is there as text, never as markup.
    assert!(
        page.body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains(HOSTILE), "{}", page.body);
    assert!(!page.body.contains("<img src=x"), "{}", page.body);
    // The JSON carries it as a JSON string (the page's script puts it in as text).
    let state: serde_json::Value =
        serde_json::from_str(&srv.get(&format!("/runs/{run}/state.json")).body).unwrap();
    let names: Vec<&str> = state["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&HOSTILE), "{names:?}");
    // The script never writes markup.
    let js = srv.get("/assets/app.js");
    assert_eq!(js.status, 200);
    for bad in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!js.body.contains(bad), "the script uses {bad}");
    }

    // Nothing from outside: every src/href is a path on this server, and it answers it.
    for (what, html) in [("index", &index.body), ("run page", &page.body)] {
        let found = links(html);
        assert!(!found.is_empty(), "{what}: no links at all?");
        for l in found {
            assert!(
                !l.starts_with("//") && !l.contains("://") && !l.starts_with("data:"),
                "{what} loads `{l}` from outside the binary"
            );
            assert!(
                l.starts_with('/'),
                "{what}: `{l}` is not a path on this server"
            );
            let r = srv.get(&l);
            assert_eq!(r.status, 200, "{what}: `{l}` answered {}", r.status);
        }
        assert!(
            !html.contains("@import") && !html.contains("url("),
            "{what}"
        );
    }
    let css = srv.get("/assets/style.css");
    assert!(
        !css.body.contains("url(")
            && !css.body.contains("@import")
            && !css.body.contains("@font-face")
    );
    // The policy lets the page load nothing from elsewhere either.
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
}

#[test]
fn a_request_naming_another_host_is_refused_on_loopback() {
    let sb = Sandbox::new("serve-host");
    let _run = finished_run(&sb);
    let srv = Server::start(&sb, &[], &[]);
    // DNS rebinding: a page of evil.example whose name now points at 127.0.0.1.
    let r = request(srv.port, "GET", "/", &[("Host", "evil.example:9470")], None);
    assert_eq!(r.status, 421, "{}", r.body);
    let r = request(srv.port, "GET", "/", &[("Host", "localhost:9470")], None);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = srv.get("/runs/no-such-run");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no-such-run"), "{}", r.body);
}

#[test]
fn events_follow_an_evacuation_that_another_process_runs() {
    let sb = Sandbox::new("serve-live");
    sb.write("vmove.toml", SLOW_SIM);
    let mut ev = start_evacuation(&sb);
    let run = wait_for_run(&sb);
    let srv = Server::start(&sb, &[], &[]);
    let mut events = Events::open(srv.port, &format!("/runs/{run}/events"));
    let (kind, first) = events.next().unwrap();
    assert_eq!(kind, "snapshot");
    let moved_at_start = first["run"]["phases"]["moved"].as_u64().unwrap_or(0);
    let mut phases_seen = std::collections::BTreeSet::new();
    let mut moved_names = std::collections::BTreeSet::new();
    let mut state = String::new();
    let mut deltas = 0;
    let until = Instant::now() + Duration::from_secs(90);
    while state != "finished" {
        assert!(Instant::now() < until, "the run did not end within 90 s");
        let Some((kind, msg)) = events.next() else {
            panic!("the stream ended before the run");
        };
        if kind == "delta" {
            deltas += 1;
        }
        for v in msg["vms"].as_array().unwrap() {
            let phase = v["phase"].as_str().unwrap().to_owned();
            if phase == "moved" {
                moved_names.insert(v["name"].as_str().unwrap().to_owned());
            }
            if phase == "migrating" {
                assert!(v["bytes_total"].as_u64().is_some() || v["bytes_done"].is_null());
            }
            phases_seen.insert(phase);
        }
        state = msg["run"]["state"].as_str().unwrap_or("").to_owned();
    }
    assert!(deltas >= 3, "only {deltas} deltas");
    assert!(
        phases_seen.contains("migrating") && phases_seen.contains("moved"),
        "{phases_seen:?}"
    );
    // Every VM that was not moved when the stream began was seen moving.
    assert!(
        moved_names.len() as u64 >= 6 - moved_at_start,
        "{moved_names:?} (moved before: {moved_at_start})"
    );
    assert!(moved_names.contains(HOSTILE), "{moved_names:?}");
    assert_eq!(wait_within(&mut ev, Duration::from_secs(30)), Some(0));
}

#[test]
fn one_journal_poller_per_run_whatever_the_number_of_clients() {
    let sb = Sandbox::new("serve-storm");
    sb.write("vmove.toml", SLOW_SIM);
    let _ev = start_evacuation(&sb);
    let run = wait_for_run(&sb);
    let srv = Server::start(&sb, &[], &[]);
    let reads = |srv: &Server| -> u64 {
        let m = srv.get("/metrics").body;
        let line = m
            .lines()
            .find(|l| l.starts_with("vmove_serve_journal_reads_total "))
            .unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let clients: Vec<Events> = (0..20)
        .map(|_| Events::open(srv.port, &format!("/runs/{run}/events")))
        .collect();
    let before = reads(&srv);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let after = reads(&srv);
    let elapsed = start.elapsed().as_millis() as u64;
    // One poller at 300 ms: about 10 looks in 3 s (plus the metrics' own), not 20 x 10.
    let bound = elapsed / 300 + 6;
    assert!(
        after - before <= bound,
        "{} journal reads in {elapsed} ms for 20 clients (bound {bound}): a poller per client?",
        after - before
    );
    assert!(after > before, "no reads at all: is the run followed?");
    drop(clients);
}

fn metric(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn metrics_parse_as_prometheus_text_and_agree_with_the_journal() {
    let sb = Sandbox::new("serve-metrics");
    let run = finished_run(&sb);
    let srv = Server::start(&sb, &[], &[]);
    let r = srv.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        r.headers
    );
    let lines = r.body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    // Conventions: the prefix, and counters (and only counters) end in _total.
    for s in &scrape.samples {
        assert!(s.metric.starts_with("vmove_"), "{}", s.metric);
        let counter = matches!(s.value, prometheus_parse::Value::Counter(_));
        assert_eq!(counter, s.metric.ends_with("_total"), "{}", s.metric);
    }
    // Against the journal, as `vmove report --json` reads it.
    let rep = sb.run(&["report", &run, "--json"]);
    rep.expect_code(0);
    let rep: serde_json::Value = serde_json::from_str(rep.stdout.trim()).unwrap();
    let vms = rep["vms"].as_array().unwrap();
    let moved = vms
        .iter()
        .filter(|v| v["outcome"].as_str() == Some("moved"))
        .count();
    let attempts: u64 = vms.iter().map(|v| v["attempts"].as_u64().unwrap()).sum();
    let l = [("run", run.as_str())];
    assert_eq!(
        metric(&scrape, "vmove_vms", &[("run", &run), ("state", "moved")]),
        Some(moved as f64)
    );
    assert_eq!(moved, 6);
    assert_eq!(
        metric(&scrape, "vmove_vms", &[("run", &run), ("state", "queued")]),
        Some(0.0)
    );
    assert_eq!(
        metric(&scrape, "vmove_attempts_total", &l),
        Some(attempts as f64)
    );
    // The bytes the report counts (per attempt, the most it reported done), and not nothing.
    let copied: u64 = vms
        .iter()
        .map(|v| v["bytes_copied"].as_u64().unwrap())
        .sum();
    assert!(copied > 6 * 1024 * 1024 * 1024, "{copied}");
    assert_eq!(
        metric(&scrape, "vmove_migrated_bytes_total", &l),
        Some(copied as f64)
    );
    assert_eq!(metric(&scrape, "vmove_run_eta_seconds", &l), Some(0.0));
    assert_eq!(
        metric(
            &scrape,
            "vmove_run_running",
            &[("run", &run), ("state", "finished")]
        ),
        Some(0.0)
    );
    for host in ["a", "b"] {
        for who in ["ours", "foreign"] {
            assert_eq!(
                metric(
                    &scrape,
                    "vmove_migrations_in_flight",
                    &[("run", &run), ("host", host), ("started_by", who)]
                ),
                Some(0.0),
                "{host} {who}"
            );
        }
    }
    assert_eq!(
        metric(
            &scrape,
            "vmove_attempt_failures_total",
            &[("run", &run), ("class", "transient")]
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &scrape,
            "vmove_watchdog_firings_total",
            &[("run", &run), ("watchdog", "stall")]
        ),
        Some(0.0)
    );
    assert!(
        metric(
            &scrape,
            "vmove_host_free_memory_bytes",
            &[("run", &run), ("host", "b")]
        )
        .unwrap()
            > 0.0
    );
}

/// Whether the run was asked to stop, as `vmove status --json` reads it.
fn stop_asked(sb: &Sandbox, run: &str) -> serde_json::Value {
    let s = sb.run(&["status", run, "--json"]);
    s.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(s.stdout.trim()).unwrap();
    v["run"]["stop"].clone()
}

#[test]
fn without_allow_control_every_post_is_refused_and_nothing_changes() {
    let sb = Sandbox::new("serve-readonly");
    sb.write("vmove.toml", SLOW_SIM);
    let mut ev = start_evacuation(&sb);
    let run = wait_for_run(&sb);
    let srv = Server::start(&sb, &[], &[("VMOVE_SERVE_TOKEN", "0123456789abcdef0123")]);
    for (path, headers) in [
        (format!("/runs/{run}/abort"), vec![]),
        (
            format!("/runs/{run}/abort?now=1"),
            vec![("X-Vmove-Token", "0123456789abcdef0123")],
        ),
        ("/".to_owned(), vec![]),
        ("/metrics".to_owned(), vec![]),
    ] {
        let r = request(srv.port, "POST", &path, &headers, Some(""));
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(r.body.contains("--allow-control"), "{}", r.body);
    }
    let r = request(srv.port, "PUT", &format!("/runs/{run}"), &[], Some(""));
    assert_eq!(r.status, 405);
    // No button on the page, and the run was not asked to stop.
    let page = srv.get(&format!("/runs/{run}"));
    assert!(!page.body.contains("id=\"abort\""), "{}", page.body);
    assert!(stop_asked(&sb, &run).is_null());
    assert_eq!(wait_within(&mut ev, Duration::from_secs(90)), Some(0));
}

#[test]
fn with_allow_control_abort_needs_the_token_and_then_stops_the_run() {
    let sb = Sandbox::new("serve-control");
    sb.write("vmove.toml", SLOW_SIM);
    let mut ev = start_evacuation(&sb);
    let run = wait_for_run(&sb);
    let srv = Server::start(&sb, &["--allow-control"], &[]);
    // The token was made at start and said once on stderr, never on stdout.
    let token = {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let err = srv.stderr.lock().unwrap().clone();
            if let Some(rest) = err.split("Token (shown once): ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            assert!(Instant::now() < until, "no token on stderr: {err}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(token.len(), 64, "{token}");
    let page = srv.get(&format!("/runs/{run}"));
    assert!(page.body.contains("id=\"abort\""), "{}", page.body);
    let path = format!("/runs/{run}/abort");
    let r = request(srv.port, "POST", &path, &[], Some(""));
    assert_eq!(r.status, 401, "{}", r.body);
    // The token with its last character changed (a hex digit: '0' becomes '1', else '0').
    let wrong = format!(
        "{}{}",
        &token[..63],
        if token.ends_with('0') { '1' } else { '0' }
    );
    let r = request(
        srv.port,
        "POST",
        &path,
        &[("X-Vmove-Token", &wrong)],
        Some(""),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // A GET cannot stop it (a link or an <img> in another page).
    let r = srv.get(&path);
    assert_eq!(r.status, 405, "{}", r.body);
    assert!(stop_asked(&sb, &run).is_null(), "stopped without the token");
    let r = request(
        srv.port,
        "POST",
        &path,
        &[("X-Vmove-Token", &token)],
        Some(""),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let stop = stop_asked(&sb, &run);
    assert_eq!(
        stop["abort_running"],
        serde_json::Value::Bool(false),
        "{stop}"
    );
    // The run stops starting moves: its driver ends it (exit 130: interrupted).
    assert_eq!(wait_within(&mut ev, Duration::from_secs(90)), Some(130));
    let s = sb.run(&["status", &run, "--json"]);
    let v: serde_json::Value = serde_json::from_str(s.stdout.trim()).unwrap();
    assert_eq!(v["run"]["state"], "aborted", "{v}");
}

#[test]
fn a_token_file_others_may_read_is_refused_and_no_flag_takes_a_token() {
    let sb = Sandbox::new("serve-token");
    let _run = finished_run(&sb);
    let p = sb.write("token", "0123456789abcdef0123\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let r = sb.run_within(
        &[
            "serve",
            "--port",
            "0",
            "--allow-control",
            "--token-file",
            p.to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(20),
    );
    r.expect_code(1).no_panic();
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
    // There is no flag that takes the token itself (argv is visible to every user).
    let r = sb.run(&["serve", "--token", "0123456789abcdef0123"]);
    r.expect_code(1);
    let r = sb.run(&["serve", "--listen", "not-an-address"]);
    r.expect_code(1);
    assert!(r.stderr.contains("not-an-address"), "{}", r.stderr);
    // A short token from the environment is refused.
    let r = sb.run_within(
        &["serve", "--port", "0", "--allow-control"],
        &[("VMOVE_SERVE_TOKEN", "short")],
        Duration::from_secs(20),
    );
    r.expect_code(1);
    assert!(r.stderr.contains("too short"), "{}", r.stderr);
}

/// docs/grafana/vmove-dashboard.json asks only for metrics that `/metrics` serves, with labels
/// it has: a renamed metric or label would leave a dashboard of empty panels.
#[test]
fn the_sample_grafana_dashboard_asks_only_for_what_metrics_serves() {
    let sb = Sandbox::new("serve-grafana");
    finished_run(&sb);
    let srv = Server::start(&sb, &[], &[]);
    let r = srv.get("/metrics");
    assert_eq!(r.status, 200);
    let lines = r.body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/grafana/vmove-dashboard.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // Every query: the panels' expressions and the variables' queries.
    let mut queries: Vec<String> = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            queries.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            queries.push(v["query"].as_str().unwrap().to_owned());
        }
    }
    assert!(queries.len() >= 10, "{queries:?}");
    let mut asked = 0;
    for q in &queries {
        let bytes = q.as_bytes();
        let mut i = 0;
        while let Some(at) = q[i..].find("vmove_") {
            let start = i + at;
            let end = start
                + q[start..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(q.len() - start);
            let name = &q[start..end];
            let served: Vec<_> = scrape.samples.iter().filter(|s| s.metric == name).collect();
            assert!(!served.is_empty(), "{name} (in `{q}`) is not served");
            // The labels the query groups or filters by.
            let mut j = end;
            if bytes.get(j) == Some(&b'{') {
                let close = q[j..].find('}').unwrap() + j;
                for m in q[j + 1..close].split(',') {
                    let label = m.split(['=', '!']).next().unwrap().trim();
                    assert!(
                        served.iter().any(|s| s.labels.get(label).is_some()),
                        "{name} has no label {label} (in `{q}`)"
                    );
                }
                j = close;
            }
            asked += 1;
            i = j;
        }
        for kw in ["by (", "label_values("] {
            if let Some(at) = q.find(kw) {
                let rest = &q[at + kw.len()..];
                let labels = rest.split(')').next().unwrap();
                let labels: Vec<&str> = if kw == "by (" {
                    labels.split(',').map(str::trim).collect()
                } else {
                    labels.split(", ").skip(1).map(str::trim).collect()
                };
                for label in labels {
                    assert!(
                        scrape
                            .samples
                            .iter()
                            .any(|s| q.contains(&s.metric) && s.labels.get(label).is_some()),
                        "no metric of `{q}` has the label {label}"
                    );
                }
            }
        }
    }
    assert!(asked >= queries.len(), "every query names a metric");
}

/// With `--allow-control`, one VM is skipped from the page's route, behind the same token; a
/// VM the run does not have is refused naming it, and a GET changes nothing.
#[test]
fn with_allow_control_one_queued_vm_is_skipped_behind_the_token() {
    let sb = Sandbox::new("serve-vm-skip");
    sb.write("vmove.toml", SLOW_SIM);
    let mut ev = start_evacuation(&sb);
    let run = wait_for_run(&sb);
    let token = "0123456789abcdef0123";
    let srv = Server::start(&sb, &["--allow-control"], &[("VMOVE_SERVE_TOKEN", token)]);
    let page = srv.get(&format!("/runs/{run}"));
    assert!(page.body.contains("<th>control</th>"), "{}", page.body);
    // web-4 is the last of six VMs on a host with one slot: still queued.
    let path = format!("/runs/{run}/vms/web-4/skip");
    assert_eq!(srv.get(&path).status, 405);
    let r = request(srv.port, "POST", &path, &[], Some(""));
    assert_eq!(r.status, 401, "{}", r.body);
    let r = request(
        srv.port,
        "POST",
        &format!("/runs/{run}/vms/ghost-vm/skip"),
        &[("X-Vmove-Token", token)],
        Some(""),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("ghost-vm"), "{}", r.body);
    let r = request(
        srv.port,
        "POST",
        &path,
        &[("X-Vmove-Token", token)],
        Some(""),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("skip VM web-4"), "{}", r.body);
    // Everything else moves; web-4 is cancelled (exit 2: not every VM moved).
    assert_eq!(wait_within(&mut ev, Duration::from_secs(120)), Some(2));
    let s = sb.run(&["report", &run, "--json"]);
    s.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(s.stdout.trim()).unwrap();
    let vms = v["vms"].as_array().unwrap();
    let web4 = vms.iter().find(|x| x["name"] == "web-4").unwrap();
    assert_eq!(web4["outcome"], "cancelled", "{web4}");
    assert_eq!(
        vms.iter().filter(|x| x["outcome"] == "moved").count(),
        5,
        "{v}"
    );
}

/// `vmove demo --serve 0`: the demo's live page while it runs and after (until Ctrl-C), from a
/// journal in a temporary folder that is gone afterwards; the user's journal is not touched.
#[test]
fn the_demo_serves_its_live_page_until_ctrl_c_and_leaves_no_journal() {
    use std::io::{BufRead, BufReader};
    let sb = Sandbox::new("serve-demo");
    let tmp = sb.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut child = sb
        .cmd(&["demo", "--serve", "0", "--speed", "4", "--plain"])
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut err = BufReader::new(child.stderr.take().unwrap());
    // Killed if the test fails before its Ctrl-C.
    let mut proc = Proc { child };
    let page = loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "no page said");
        if let Some(rest) = line.trim().strip_prefix("vmove demo: the live page is ") {
            break rest.to_owned();
        }
    };
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut sink);
    });
    let rest = page.strip_prefix("http://127.0.0.1:").unwrap();
    let (port, path) = rest.split_once('/').unwrap();
    let port: u16 = port.parse().unwrap();
    let path = format!("/{path}");
    // The journal is in the temporary folder, owner-only.
    let folders: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = folders[0].metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
    // The page names the demo's VMs once the run's first entries are journaled.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let r = request(port, "GET", &path, &[], None);
        assert_eq!(r.status, 200, "{}", r.body);
        if r.body.contains("analytics-01") {
            break;
        }
        assert!(Instant::now() < until, "no VM on the page: {}", r.body);
        std::thread::sleep(Duration::from_millis(100));
    }
    // The demo ends; the page stays, with the run over.
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "the demo never said it ended"
        );
        if line.contains("the page stays at") {
            break;
        }
    }
    let m = request(port, "GET", "/metrics", &[], None);
    assert_eq!(m.status, 200);
    let lines = m.body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let moved = metric(&scrape, "vmove_vms", &[("state", "moved")]);
    assert_eq!(moved, Some(11.0), "{}", m.body);
    // Ctrl-C: the demo's own exit code (one VM fits nowhere: 2), the folder gone.
    let killed = std::process::Command::new("kill")
        .args(["-INT", &proc.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let until = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(s) = proc.child.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < until, "still serving after Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(2));
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the journal folder is left"
    );
    assert!(!sb.journal().exists(), "the user's journal was written");
}

/// Sim hosts where one big VM and four small ones move two at a time: the small ones go one
/// after another beside the big one, which is then left alone, one slot idle.
const ONE_BIG: &str = r#"
[defaults]
progress_interval = "1s"
[hosts.a]
driver = "sim"
speed = 10
migration_limit = 2
stream_mb_s = 100
vms = [
  { name = "big", memory_gib = 0.5, disk_gib = 10 },
  { name = "s-1", memory_gib = 0.5, disk_gib = 1 },
  { name = "s-2", memory_gib = 0.5, disk_gib = 1 },
  { name = "s-3", memory_gib = 0.5, disk_gib = 1 },
  { name = "s-4", memory_gib = 0.5, disk_gib = 1 },
]
[hosts.b]
driver = "sim"
speed = 10
stream_mb_s = 100
memory_gib = 64
"#;

/// The run's JSON once its ETA's basis is `basis` (a re-plan is made off the request's path:
/// the first answers may still have the rate).
fn run_json_with_basis(srv: &Server, run: &str, basis: &str) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let r = srv.get(&format!("/runs/{run}/state.json"));
        assert_eq!(r.status, 200, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        if v["run"]["eta_basis"] == basis {
            return v["run"].clone();
        }
        assert!(
            Instant::now() < until,
            "no ETA on the basis {basis} after 30 s: {}",
            v["run"]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The re-plan the docs describe (docs/cli.md, `vmove serve`), made here from the journal on
/// its own: the spec, the VMs that are over left out of the hosts' lists, the hosts as last refreshed with the run's
/// own migrations not counted as others', a VM in flight as the bytes its progress says are
/// left, started first; the figures fitted from the run (the only one in the journal), no
/// start-up. Returns the seconds from the run's latest entry to the predicted end.
fn expected_replan_secs(journal: &std::path::Path, run: &str) -> u64 {
    use vmove_core::Phase;
    use vmove_core::model::Activity;
    let j = vmove_journal::Journal::open(journal).unwrap();
    let rec = j.load_run(run).unwrap();
    let mut spec = rec.spec.clone();
    let mut share = std::collections::BTreeMap::new();
    let mut over = Vec::new();
    for v in &rec.vms {
        if v.phase.is_final() || matches!(v.phase, Phase::Verifying | Phase::CleaningUp) {
            over.push(v.vm.clone());
        } else if v.phase.holds_slot() {
            let p = v.progress.as_ref().filter(|p| p.bytes_total > 0);
            share.insert(
                v.vm.clone(),
                p.map_or(1.0, |p| p.bytes_remaining as f64 / p.bytes_total as f64),
            );
            spec.priorities.insert(v.name.clone(), i32::MAX);
        }
    }
    let mut hosts = std::collections::BTreeMap::new();
    for e in &rec.entries {
        if let vmove_journal::EntryBody::Outcome {
            input:
                vmove_core::Input::HostRefreshed {
                    host,
                    result: Ok((info, vms)),
                    ..
                },
            ..
        } = &e.body
        {
            hosts.insert(host.clone(), (info.clone(), vms.clone()));
        }
    }
    let ours: Vec<_> = rec.vms.iter().map(|v| v.vm.clone()).collect();
    let observed: Vec<vmove_plan::ObservedHost> = vmove_plan::involved(&spec)
        .into_iter()
        .map(|h| {
            let (mut info, vms) = hosts[&h].clone();
            let mut kept = Vec::new();
            for mut v in vms {
                if over.contains(&v.id) {
                    continue;
                }
                if ours.contains(&v.id) && v.activity.is_migration() {
                    info.active_migrations = info.active_migrations.saturating_sub(1);
                    if v.activity == Activity::MigratingIn {
                        continue;
                    }
                    v.activity = Activity::Idle;
                }
                if let Some(s) = share.get(&v.id) {
                    v.memory_bytes = (v.memory_bytes as f64 * s).round() as u64;
                    v.disk_bytes = (v.disk_bytes as f64 * s).round() as u64;
                }
                kept.push(v);
            }
            vmove_plan::ObservedHost {
                id: h,
                info,
                vms: kept,
            }
        })
        .collect();
    let mut cal = vmove_plan::Calibration::from_runs([&rec], |_| String::new());
    cal.startup_ms = None;
    let limit = spec.settings.default_host_limit;
    let p = vmove_plan::plan(spec, &observed, limit, &cal, &Default::default()).unwrap();
    (p.eta.as_millis() as u64).div_ceil(1000)
}

#[test]
fn a_run_stopped_part_way_has_the_eta_of_the_re_plan_of_what_is_left() {
    let sb = Sandbox::new("serve-eta-plan");
    sb.write("vmove.toml", ONE_BIG);
    let mut ev = start_evacuation(&sb);
    let run = wait_for_run(&sb);
    // Cut it (kill -9) once the four small ones moved and the big one still moves: what is
    // left is the big one's rest, alone, one slot idle.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < until,
            "the small VMs did not move within 60 s"
        );
        let s = sb.run(&["status", &run, "--json"]);
        if s.code == Some(0) {
            let v: serde_json::Value = serde_json::from_str(s.stdout.trim()).unwrap();
            let vms = v["vms"].as_array().unwrap();
            let moved = |name: &str| {
                vms.iter()
                    .any(|x| x["name"] == name && x["phase"] == "moved")
            };
            if (1..=4).all(|i| moved(&format!("s-{i}"))) {
                assert!(!moved("big"), "the big VM moved before the cut: {v}");
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ev.child.kill().unwrap();
    ev.child.wait().unwrap();

    let srv = Server::start(&sb, &[], &[]);
    let r = run_json_with_basis(&srv, &run, "plan");
    let eta = r["eta_seconds"].as_u64().unwrap();
    let rate = r["eta_rate_seconds"].as_u64().unwrap();
    let want = expected_replan_secs(&sb.journal(), &run);
    // The same inputs, the same simulation: the same end (to the second it is rounded up to).
    assert!(
        eta.abs_diff(want) <= 1,
        "ETA {eta} s, the re-plan of what is left says {want} s: {r}"
    );
    // The big VM's rest goes alone at one migration's rate; the rate so far had two at once.
    assert!(
        eta as f64 >= 1.5 * rate as f64 && eta >= rate + 2,
        "the plan's ETA {eta} s should be well above the rate estimate {rate} s: {r}"
    );
    assert!(r["eta_plan_ms"].as_u64().is_some(), "{r}");
    // The page and the metric say the basis.
    let page = srv.get(&format!("/runs/{run}")).body;
    assert!(page.contains("data-basis=\"plan\""), "{page}");
    assert!(
        page.contains("(plan: 1 VM(s) left, 1 in flight, "),
        "{page}"
    );
    let m = srv.get("/metrics").body;
    let lines = m.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    assert_eq!(
        metric(
            &scrape,
            "vmove_run_eta_seconds",
            &[("run", &run), ("basis", "plan")]
        ),
        Some(eta as f64)
    );
}

#[test]
fn without_figures_of_a_host_the_eta_falls_back_to_the_rate_and_says_why() {
    // `b` never answers: the run journals no figures of it, so nothing can be re-planned.
    let sb = Sandbox::new("serve-eta-rate");
    sb.write(
        "vmove.toml",
        r#"
[hosts.a]
driver = "sim"
speed = 10
vms = [{ name = "web-1", memory_gib = 0.5, disk_gib = 1 }]
[hosts.b]
driver = "sim"
speed = 10
down = [{ from = "0s", for = "1h" }]
"#,
    );
    let _ev = start_evacuation(&sb);
    let run = wait_for_run(&sb);
    let srv = Server::start(&sb, &[], &[]);
    let until = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = srv.get(&format!("/runs/{run}/state.json"));
        assert_eq!(r.status, 200, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        if v["run"]["eta_basis_text"]
            .as_str()
            .unwrap()
            .contains("no plan: ")
        {
            break v["run"].clone();
        }
        assert!(
            Instant::now() < until,
            "no re-plan tried in 30 s: {}",
            v["run"]
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(r["eta_basis"], "rate", "{r}");
    assert!(
        r["eta_basis_text"]
            .as_str()
            .unwrap()
            .contains("no figures of host `b`"),
        "{r}"
    );
    let page = srv.get(&format!("/runs/{run}"));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("data-basis=\"rate\""), "{}", page.body);
    assert!(
        page.body
            .contains("(rate: bytes left over the run&#39;s rate so far; no plan: "),
        "{}",
        page.body
    );
    assert_eq!(srv.get("/metrics").status, 200);
}

/// The live page's timeline of a run draws the plan the run journaled when it started: one
/// predicted bar per planned VM, each a VM of the run.
#[test]
fn the_live_timeline_draws_the_plan_the_run_journaled() {
    let sb = Sandbox::new("serve-planned");
    let run = finished_run(&sb);
    let srv = Server::start(&sb, &[], &[]);
    let svg = srv.get(&format!("/runs/{run}/timeline.svg"));
    assert_eq!(svg.status, 200, "{}", svg.body);
    let state: serde_json::Value =
        serde_json::from_str(&srv.get(&format!("/runs/{run}/state.json")).body).unwrap();
    let ids: Vec<&str> = state["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["vm"].as_str().unwrap())
        .collect();
    let doc = roxmltree::Document::parse(&svg.body).unwrap();
    let planned: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("class") == Some("predicted"))
        .filter_map(|n| n.attribute("data-vm"))
        .collect();
    assert!(!planned.is_empty(), "no predicted bar: {}", svg.body);
    let mut unique = planned.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), planned.len(), "one bar per VM: {planned:?}");
    for vm in &planned {
        assert!(ids.contains(vm), "{vm} is not the run's: {ids:?}");
    }
}
