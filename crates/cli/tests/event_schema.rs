//! The event schema (schema/events.schema.json, JSON Schema draft 2020-12, documented in
//! docs/events.md) against what vmove prints under `--json`: every event the demo emits, one
//! event of every kind the core has, and (for the lab) any NDJSON file named by
//! `VMOVE_EVENTS_NDJSON`. A kind or a field missing from the schema fails: every kind's object
//! allows no field it does not list.

#![allow(clippy::unwrap_used)]

use crate::common::Sandbox;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use vmove_core::event::EventKind;
use vmove_core::model::{
    ConvergenceAid, ErrorClass, Finding, FindingScope, LeftoverKind, MigrationMode,
};
use vmove_core::{AttemptCall, Event, HostId, Phase, Reason, Time, VmId, WaitReason, Watchdog};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn schema() -> Value {
    let path = repo().join("schema/events.schema.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

fn validator() -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema())
        .unwrap_or_else(|e| panic!("the schema is not a valid JSON Schema: {e}"))
}

/// Every line of `ndjson` is valid; returns the kinds seen.
fn check_lines(v: &jsonschema::Validator, ndjson: &str, origin: &str) -> BTreeSet<String> {
    let mut kinds = BTreeSet::new();
    for (n, line) in ndjson
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let ev: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{origin} line {}: not JSON ({e}): {line}", n + 1));
        let errors: Vec<String> = v.iter_errors(&ev).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{origin} line {}: does not follow schema/events.schema.json: {errors:?}\n{line}",
            n + 1
        );
        kinds.insert(ev["event"].as_str().unwrap().to_owned());
    }
    kinds
}

#[test]
fn every_event_the_demo_emits_follows_the_schema() {
    let v = validator();
    let sb = Sandbox::new("event-schema-demo");
    let r = sb.run(&["demo", "--speed", "20", "--json"]);
    r.expect_code(2);
    let kinds = check_lines(&v, &r.stdout, "vmove demo --json");
    for k in [
        "run_started",
        "host_seen",
        "selected",
        "waiting",
        "attempt_started",
        "progress",
        "attempt_failed",
        "verified",
        "moved",
        "unmigratable",
        "run_finished",
    ] {
        assert!(kinds.contains(k), "the demo emitted no `{k}`: {kinds:?}");
    }
    // Every line carries the schema's version, its wall time, and (about a VM) its name.
    for line in r.stdout.lines() {
        let ev: Value = serde_json::from_str(line).unwrap();
        assert_eq!(ev["schema"], 1, "{line}");
        assert!(ev["time"].as_str().unwrap().ends_with('Z'), "{line}");
        if ev.get("vm").is_some() {
            assert!(ev["vm_name"].is_string(), "{line}");
        }
    }
    let db01 = r.stdout.lines().find(|l| {
        l.contains("\"event\":\"attempt_started\"") && l.contains("\"vm_name\":\"db-01\"")
    });
    assert!(db01.is_some(), "no attempt of db-01 named by vm_name");
}

/// The demo's wall times are its start plus simulated time: they grow with `at`, by as much.
#[test]
fn the_demos_wall_times_are_its_start_plus_simulated_time() {
    let sb = Sandbox::new("event-schema-times");
    let r = sb.run(&["demo", "--speed", "50", "--json"]);
    let parse = |t: &str| humantime_ms(t);
    let lines: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = &lines[0];
    let last = lines.last().unwrap();
    let wall = parse(last["time"].as_str().unwrap()) - parse(first["time"].as_str().unwrap());
    let run = last["at"].as_i64().unwrap() - first["at"].as_i64().unwrap();
    assert!(run > 60_000, "the demo's run time is minutes: {run} ms");
    assert_eq!(wall, run, "wall-clock span differs from the run-time span");
}

/// Milliseconds of an RFC 3339 UTC time (`2026-12-03T14:05:09.123Z`), by the civil calendar.
fn humantime_ms(t: &str) -> i64 {
    let (date, rest) = t.split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let rest = rest.trim_end_matches('Z');
    let (hms, ms) = rest.split_once('.').unwrap_or((rest, "0"));
    let h: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + h[0]) * 60 + h[1]) * 60_000 + h[2] * 1000 + ms.parse::<i64>().unwrap()
}

/// One event of every kind, as the CLI envelopes it (checked by the unit tests of
/// output::ndjson): the demo does not reach every kind.
fn one_of_every_kind() -> Vec<EventKind> {
    let vm = || VmId::new("u-1");
    let h = |s: &str| HostId::new(s);
    vec![
        EventKind::RunStarted {
            run_id: "r".into(),
            sources: vec![h("a")],
            destinations: vec![h("b")],
        },
        EventKind::HostSeen {
            host: h("a"),
            limit: 2,
            foreign: 0,
            free_memory_bytes: 1,
            free_disk_bytes: 2,
        },
        EventKind::HostUnreachable {
            host: h("a"),
            error: "refused".into(),
        },
        EventKind::SelectionUnmatched {
            source: h("a"),
            pattern: "x*".into(),
        },
        EventKind::Selected {
            vm: vm(),
            name: "web-01".into(),
            source: h("a"),
            mode: MigrationMode::Offline,
            memory_bytes: 1,
            disk_bytes: 2,
        },
        EventKind::Transition {
            vm: vm(),
            from: Phase::Queued,
            to: Phase::BackingOff,
        },
        EventKind::Waiting {
            vm: vm(),
            reason: WaitReason::BackingUp { since: Time(5) },
        },
        EventKind::Waiting {
            vm: vm(),
            reason: WaitReason::OtherJob("a snapshot".into()),
        },
        EventKind::Waiting {
            vm: vm(),
            reason: WaitReason::NoSlot,
        },
        EventKind::Waiting {
            vm: vm(),
            reason: WaitReason::MayPass {
                destination: h("b"),
                code: "memory".into(),
            },
        },
        EventKind::AttemptStarted {
            vm: vm(),
            attempt: 1,
            source: h("a"),
            destination: h("b"),
            mode: MigrationMode::Live,
        },
        EventKind::Progress {
            vm: vm(),
            attempt: 1,
            bytes_done: 1,
            bytes_total: 2,
            bytes_remaining: 1,
        },
        EventKind::Escalated {
            vm: vm(),
            attempt: 1,
            aid: ConvergenceAid::PostCopy,
        },
        EventKind::WatchdogFired {
            vm: vm(),
            attempt: 1,
            which: Watchdog::Stall,
        },
        EventKind::NotAborted {
            vm: vm(),
            attempt: 1,
            why: "in post-copy".into(),
        },
        EventKind::AbortWaiting {
            vm: vm(),
            attempt: 1,
            source: h("a"),
            destination: h("b"),
            why: "stalled".into(),
            round: 1,
            rounds: 3,
            look: 0,
            looks: 6,
        },
        EventKind::MigrationFailed {
            vm: vm(),
            attempt: 1,
            source: h("a"),
            destination: h("b"),
            error: "e".into(),
        },
        EventKind::PreflightFindings {
            vm: vm(),
            attempt: 1,
            destination: h("b"),
            blockers: vec![
                Finding::new("snapshots", FindingScope::Vm, "VM web-01 has 1 snapshot(s)")
                    .remedy("delete the snapshot metadata"),
                Finding::new("memory", FindingScope::Destination, "b has 1 GiB free")
                    .remedy("free memory there")
                    .may_pass(),
            ],
            warnings: vec![Finding::new(
                "bridge_unchecked",
                FindingScope::Destination,
                "b cannot tell its bridges",
            )],
        },
        EventKind::PreflightFailed {
            vm: vm(),
            attempt: 1,
            destination: h("b"),
            error: "b did not answer".into(),
            tries: 1,
            of: 3,
            retry_at: Some(Time(9)),
        },
        EventKind::Unmigratable {
            vm: vm(),
            name: "web-01".into(),
            reason: Reason::Blocked {
                blockers: vec![vmove_core::event::Blocker {
                    destination: Some(h("b")),
                    finding: Finding::new(
                        "network_missing",
                        FindingScope::Destination,
                        "network lan is not on b",
                    ),
                }],
            },
        },
        EventKind::CallFailed {
            vm: vm(),
            attempt: 1,
            call: AttemptCall::Locate,
            error: "e".into(),
            tries: 1,
            of: 5,
            retry_at: Some(Time(9)),
        },
        EventKind::LeftBehind {
            vm: vm(),
            attempt: 1,
            host: h("b"),
            what: vec!["/img/x.qcow2".into()],
            why: "w".into(),
        },
        EventKind::AttemptFailed {
            vm: vm(),
            attempt: 1,
            class: ErrorClass::DestinationRefused,
            error: "e".into(),
            retry_at: None,
            refused_by: Some(h("b")),
            forgiven: false,
            interrupted: true,
        },
        EventKind::Verified {
            vm: vm(),
            destination: h("b"),
            downtime_ms: Some(41),
        },
        EventKind::LeftoverRemoved {
            vm: vm(),
            host: h("b"),
            kind: LeftoverKind::DiskImage,
            what: "/img/x.qcow2".into(),
        },
        EventKind::LeftoverKept {
            vm: vm(),
            host: h("b"),
            what: "/img/x.qcow2".into(),
            error: "e".into(),
        },
        EventKind::Moved {
            vm: vm(),
            name: "web-01".into(),
            destination: h("b"),
            attempts: 1,
        },
        EventKind::Unmigratable {
            vm: vm(),
            name: "web-01".into(),
            reason: Reason::NoDestinationFits {
                memory_bytes: 1,
                disk_bytes: 2,
            },
        },
        EventKind::Unmigratable {
            vm: vm(),
            name: "web-01".into(),
            reason: Reason::AttemptsExhausted {
                attempts: 3,
                last_error: "e".into(),
            },
        },
        EventKind::Cancelled {
            vm: vm(),
            name: "web-01".into(),
            reason: Reason::RunStopped,
        },
        EventKind::Cancelled {
            vm: vm(),
            name: "web-01".into(),
            reason: Reason::SourceDown(h("a")),
        },
        EventKind::Cancelled {
            vm: vm(),
            name: "web-01".into(),
            reason: Reason::Skipped {
                by: "ops@admin-1".into(),
                at: "2026-12-03T14:06:10Z".into(),
                aborted: true,
            },
        },
        EventKind::StopRequested {
            abort_running: true,
        },
        EventKind::VmStopAsked {
            vm: vm(),
            abort_running: false,
            asked_by: "ops@admin-1".into(),
            asked_at: "2026-12-03T14:06:10Z".into(),
            refused: None,
        },
        EventKind::VmStopAsked {
            vm: vm(),
            abort_running: false,
            asked_by: "ops@admin-1".into(),
            asked_at: "2026-12-03T14:06:10Z".into(),
            refused: Some("its move has already started (migrating)".into()),
        },
        EventKind::IllegalInput {
            vm: vm(),
            phase: Phase::Moved,
            input: "progress".into(),
        },
        EventKind::RunFailed { error: "e".into() },
        EventKind::RunFinished {
            moved: 1,
            unmigratable: 0,
            cancelled: 0,
        },
    ]
}

/// The envelope `vmove --json` puts around an event (crates/cli/src/output/ndjson.rs).
fn enveloped(kind: EventKind) -> Value {
    let mut v = serde_json::to_value(Event { at: Time(1), kind }).unwrap();
    let o = v.as_object_mut().unwrap();
    o.insert("schema".into(), json!(1));
    o.insert("time".into(), json!("2026-12-03T14:05:09.123Z"));
    if o.contains_key("vm") {
        o.insert("vm_name".into(), json!("web-01"));
    }
    v
}

#[test]
fn one_event_of_every_kind_follows_the_schema_and_every_kind_is_in_it_and_documented() {
    let v = validator();
    let mut lines = String::new();
    for k in one_of_every_kind() {
        lines.push_str(&enveloped(k).to_string());
        lines.push('\n');
    }
    let kinds = check_lines(&v, &lines, "one event of every kind");
    let schema = schema();
    let listed: BTreeSet<String> = schema["properties"]["event"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, listed, "the schema's kinds and the core's differ");
    let docs = std::fs::read_to_string(repo().join("docs/events.md")).unwrap();
    for k in &listed {
        assert!(
            docs.contains(&format!("### `{k}`")),
            "docs/events.md has no section `### `{k}``"
        );
    }
}

#[test]
fn the_schema_refuses_an_unknown_kind_an_unknown_field_and_a_missing_one() {
    let v = validator();
    let good = enveloped(EventKind::Verified {
        vm: VmId::new("u-1"),
        destination: HostId::new("b"),
        downtime_ms: None,
    });
    assert!(v.is_valid(&good), "{good}");
    let mut new_kind = good.clone();
    new_kind["event"] = json!("teleported");
    assert!(!v.is_valid(&new_kind), "an unknown kind passed: {new_kind}");
    let mut new_field = good.clone();
    new_field["speed"] = json!(3);
    assert!(
        !v.is_valid(&new_field),
        "an unknown field passed: {new_field}"
    );
    let mut no_name = good.clone();
    no_name.as_object_mut().unwrap().remove("vm_name");
    assert!(!v.is_valid(&no_name), "an event without vm_name passed");
    let mut bad_time = good;
    bad_time["time"] = json!("yesterday");
    assert!(!v.is_valid(&bad_time), "a time that is no RFC 3339 passed");
}

/// For the lab: `VMOVE_EVENTS_NDJSON=FILE cargo test -p vmove --test integration event_schema::` checks an
/// NDJSON file written by `vmove --json` elsewhere (lab/e2e.sh) against the same schema.
#[test]
fn an_ndjson_file_named_by_vmove_events_ndjson_follows_the_schema() {
    let Some(path) = std::env::var_os("VMOVE_EVENTS_NDJSON") else {
        return;
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let kinds = check_lines(
        &validator(),
        &text,
        &PathBuf::from(path).display().to_string(),
    );
    assert!(!kinds.is_empty(), "the file has no events");
}
