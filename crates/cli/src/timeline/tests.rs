//! The timeline model, its SVG and its text, on simulated runs (the demo, random faulty
//! clusters) and on hand-made hostile names.
#![allow(clippy::unwrap_used)]

use super::model::{AttemptOutcome, Timeline, TimelineBuilder, WaitKind};
use super::{svg, text};
use std::collections::{BTreeMap, BTreeSet};
use vmove_core::event::EventKind;
use vmove_core::{Event, HostId, MigrationMode, Time, VmId};
use vmove_sim::scenarios::{self, RandomParams, Scenario};
use vmove_sim::{SimOptions, simulate_observed};

/// A scenario simulated, the timeline fed as a run's journal is: each step's events, then its
/// commands and their answers. Also gives the events.
fn simulated(s: Scenario) -> (Timeline, Vec<Event>) {
    let mut b = TimelineBuilder::new(&s.spec.run_id, 1_700_000_000_000);
    b.simulated(true);
    let out = simulate_observed(s.spec, s.cluster, SimOptions::default(), &mut |step| {
        for e in step.events {
            b.apply_event(e);
        }
        for (c, i) in step.commands {
            b.apply_command(step.now, c);
            b.apply_input(step.now, i);
        }
    })
    .unwrap();
    b.over(true);
    (b.build(), out.events)
}

fn demo() -> (Timeline, Vec<Event>) {
    simulated(scenarios::demo().scenario)
}

fn faulty(seed: u64) -> (Timeline, Vec<Event>) {
    let mut p = RandomParams::faulty(2, 3, 12);
    p.host_limit = 3;
    simulated(scenarios::random(seed, &p))
}

fn attempts_started(events: &[Event]) -> BTreeSet<(String, u32)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AttemptStarted { vm, attempt, .. } => Some((vm.to_string(), *attempt)),
            _ => None,
        })
        .collect()
}

#[test]
fn lanes_never_overlap_and_each_hosts_peak_use_is_its_lane_count_within_its_limit() {
    let mut checked = 0;
    for seed in 1..=8 {
        let (t, _) = faulty(seed);
        for h in &t.hosts {
            for lane in h.outbound.iter().chain(&h.inbound) {
                assert!(!lane.bars.is_empty(), "{}: an empty lane", h.name);
                for w in lane.bars.windows(2) {
                    let end = w[0].to_ms.expect("a bar before another one ended");
                    assert!(end <= w[1].from_ms, "seed {seed} {}: overlap {w:?}", h.name);
                }
            }
            let (out, inb, both) = t.peak_use(&h.name);
            assert_eq!(h.outbound.len(), out, "seed {seed} {}", h.name);
            assert_eq!(h.inbound.len(), inb, "seed {seed} {}", h.name);
            let limit = h.limit.expect("every host was seen") as usize;
            assert!(
                out <= limit && inb <= limit && both <= limit,
                "seed {seed} {}: peak {out}/{inb}/{both} over limit {limit}",
                h.name
            );
            checked += out + inb;
        }
    }
    assert!(checked > 0, "no lanes at all: nothing was checked");
}

#[test]
fn one_bar_per_attempt_in_its_vms_row_its_sources_outbound_and_its_destinations_inbound_lanes() {
    for (t, events) in [demo(), faulty(3), faulty(5)] {
        let started = attempts_started(&events);
        let mine: BTreeSet<(String, u32)> = t
            .attempts
            .iter()
            .map(|a| (a.vm.clone(), a.attempt))
            .collect();
        assert_eq!(mine, started);
        assert_eq!(t.attempts.len(), started.len());
        let mut out = vec![0; t.attempts.len()];
        let mut inb = vec![0; t.attempts.len()];
        for h in &t.hosts {
            for l in &h.outbound {
                for b in &l.bars {
                    assert_eq!(t.attempts[b.attempt].source, h.name);
                    out[b.attempt] += 1;
                }
            }
            for l in &h.inbound {
                for b in &l.bars {
                    assert_eq!(t.attempts[b.attempt].destination, h.name);
                    inb[b.attempt] += 1;
                }
            }
        }
        assert!(out.iter().chain(&inb).all(|n| *n == 1), "{out:?} {inb:?}");
        let rows: usize = t.vms.iter().map(|v| v.attempts.len()).sum();
        assert_eq!(rows, t.attempts.len());
        assert!(
            t.attempts
                .iter()
                .all(|a| !matches!(a.outcome, AttemptOutcome::Running)),
            "a run that is over has no running attempt"
        );
    }
}

#[test]
fn the_demos_waits_and_outcomes_are_drawn_as_what_they_are() {
    let (t, _) = demo();
    let vm = |name: &str| t.vms.iter().find(|v| v.name == name).unwrap();
    // db-01 waits for its backup (two minutes from the start), then moves.
    let db = vm("db-01");
    let backup = db
        .waits
        .iter()
        .find(|w| w.kind == WaitKind::Backup)
        .expect("db-01 waits for its backup");
    assert!(backup.to_ms.unwrap() >= 100_000, "{backup:?}");
    assert_eq!(db.outcome, "moved");
    // web-02's first start fails and backs off; its second attempt moves it.
    let web = vm("web-02");
    let outcomes: Vec<AttemptOutcome> = web
        .attempts
        .iter()
        .map(|a| t.attempts[*a].outcome)
        .collect();
    assert_eq!(outcomes, [AttemptOutcome::Failed, AttemptOutcome::Moved]);
    assert!(
        web.waits
            .iter()
            .any(|w| w.kind == WaitKind::BackOff && w.to_ms.is_some())
    );
    // analytics-01 fits nowhere: no attempt, unmigratable with its reason.
    let big = vm("analytics-01");
    assert!(big.attempts.is_empty() && big.outcome == "unmigratable");
    assert!(big.reason.as_deref().unwrap().contains("no destination"));
    assert!(big.ended_ms.is_some(), "when it was given up");
    // The powered-off VMs wait for the running ones.
    assert!(
        vm("old-01")
            .waits
            .iter()
            .any(|w| w.kind == WaitKind::OfflineAfterLive)
    );
    // Each attempt was preceded by a pre-flight check, drawn with its length.
    assert!(
        t.vms
            .iter()
            .flat_map(|v| &v.waits)
            .any(|w| w.kind == WaitKind::Preflight && w.to_ms.is_some())
    );
    // Every attempt's bar ends no earlier than it starts, and its slot time within it.
    for a in &t.attempts {
        let end = a.end_ms.unwrap();
        let slot = a.slot_end_ms.unwrap();
        assert!(a.start_ms <= slot && slot <= end, "{a:?}");
    }
}

#[test]
fn foreign_migrations_are_drawn_on_their_hosts_lane() {
    let mut spans = 0;
    for seed in 1..=8 {
        let (t, events) = faulty(seed);
        let said: BTreeMap<String, bool> = events.iter().fold(BTreeMap::new(), |mut m, e| {
            if let EventKind::HostSeen { host, foreign, .. } = &e.kind {
                *m.entry(host.to_string()).or_default() |= *foreign > 0;
            }
            m
        });
        for h in &t.hosts {
            assert_eq!(
                !h.foreign.is_empty(),
                said[&h.name],
                "seed {seed} {}",
                h.name
            );
            for s in &h.foreign {
                assert!(s.count > 0);
                assert!(s.to_ms.is_none_or(|to| to >= s.from_ms), "{s:?}");
            }
            spans += h.foreign.len();
        }
    }
    assert!(
        spans > 0,
        "the faulty clusters had no foreign migrations: nothing checked"
    );
}

/// The SVG, parsed as XML: every attempt has exactly one `rect.attempt`, one `rect.slot.out`
/// and one `rect.slot.in`, naming its VM and number.
#[test]
fn the_svg_is_well_formed_with_one_bar_per_attempt() {
    for (t, events) in [demo(), faulty(2)] {
        let doc = svg(&t);
        let xml = roxmltree::Document::parse(&doc).unwrap();
        let mut by_class: BTreeMap<&str, Vec<(String, u32)>> = BTreeMap::new();
        for n in xml.descendants().filter(|n| n.has_tag_name("rect")) {
            let class = n.attribute("class").unwrap_or("");
            let key = if class.starts_with("attempt ") {
                "attempt"
            } else if class.starts_with("slot out ") {
                "out"
            } else if class.starts_with("slot in ") {
                "in"
            } else {
                continue;
            };
            by_class.entry(key).or_default().push((
                n.attribute("data-vm").unwrap().to_owned(),
                n.attribute("data-attempt").unwrap().parse().unwrap(),
            ));
        }
        let started = attempts_started(&events);
        for key in ["attempt", "out", "in"] {
            let bars = &by_class[key];
            assert_eq!(bars.len(), started.len(), "{key}");
            assert_eq!(
                bars.iter().cloned().collect::<BTreeSet<_>>(),
                started,
                "{key}"
            );
        }
        let ends = xml
            .descendants()
            .filter(|n| n.attribute("class").is_some_and(|c| c.starts_with("end ")))
            .count();
        let not_moved = t
            .vms
            .iter()
            .filter(|v| v.outcome == "unmigratable" || v.outcome == "cancelled")
            .count();
        assert_eq!(ends, not_moved, "a mark per VM given up or cancelled");
        assert!(
            !doc.contains("<script") && !doc.contains("href"),
            "self-contained"
        );
    }
}

fn hostile() -> (Timeline, &'static str) {
    let name = "<script>alert('x')</script>&\"db\"";
    let vm = VmId::new("<vm&id>");
    let (src, dst) = (HostId::new("hv<1>"), HostId::new("hv\"2\""));
    let ev = |at: u64, kind: EventKind| Event { at: Time(at), kind };
    let mut b = TimelineBuilder::new("run-<b>&", 0);
    for e in [
        ev(
            0,
            EventKind::Selected {
                vm: vm.clone(),
                name: name.to_owned(),
                source: src.clone(),
                mode: MigrationMode::Live,
                memory_bytes: 1,
                disk_bytes: 1,
            },
        ),
        ev(
            10,
            EventKind::AttemptStarted {
                vm: vm.clone(),
                attempt: 1,
                source: src.clone(),
                destination: dst.clone(),
                mode: MigrationMode::Live,
            },
        ),
        ev(
            900,
            EventKind::Moved {
                vm: vm.clone(),
                name: name.to_owned(),
                destination: dst.clone(),
                attempts: 1,
            },
        ),
    ] {
        b.apply_event(&e);
    }
    b.over(true);
    (b.build(), name)
}

#[test]
fn a_vm_named_like_markup_is_escaped_in_the_svg() {
    let (t, name) = hostile();
    let doc = svg(&t);
    assert!(!doc.contains("<script"), "{doc}");
    let xml = roxmltree::Document::parse(&doc).unwrap();
    // The name comes back as text, whole, where it is short enough to show whole...
    let titles: Vec<&str> = xml
        .descendants()
        .filter(|n| n.has_tag_name("title"))
        .filter_map(|n| n.text())
        .collect();
    assert!(titles.iter().any(|t| t.contains(name)), "{titles:?}");
    // ...and the attributes hold the ids as they are.
    let bar = xml
        .descendants()
        .find(|n| {
            n.attribute("class")
                .is_some_and(|c| c.starts_with("attempt"))
        })
        .unwrap();
    assert_eq!(bar.attribute("data-vm"), Some("<vm&id>"));
    assert_eq!(xml.root_element().attribute("data-run"), Some("run-<b>&"));
}

#[test]
fn the_text_timeline_fits_its_width_and_shows_outcomes_waits_and_a_legend() {
    let (t, _) = demo();
    for width in [60, 100, 160] {
        let out = text::text(&t, width);
        for line in out.lines() {
            assert!(line.chars().count() <= width, "{width}: {line:?}");
        }
        let lanes: usize = t
            .hosts
            .iter()
            .map(|h| h.outbound.len() + h.inbound.len())
            .sum();
        let lane_rows = out
            .lines()
            .filter(|l| l.trim_start().starts_with("out ") || l.trim_start().starts_with("in "))
            .count();
        assert_eq!(lane_rows, lanes, "{out}");
        let web = out.lines().find(|l| l.contains("web-02")).unwrap();
        assert!(
            web.contains('F') && web.contains('M') && web.contains('w'),
            "{web}"
        );
        let big = out.lines().find(|l| l.contains("analytics-01")).unwrap();
        assert!(big.contains('X'), "given up: {big}");
        let db = out.lines().find(|l| l.contains("db-01")).unwrap();
        assert!(db.contains('b'), "{db}");
        assert!(out.contains("M moved") && out.contains("b backup"), "{out}");
    }
}

#[test]
fn the_model_round_trips_through_json() {
    let (t, _) = demo();
    let json = serde_json::to_string(&t).unwrap();
    let back: Timeline = serde_json::from_str(&json).unwrap();
    assert_eq!(back, t);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["attempts"][0]["outcome"].as_str().is_some());
}

#[test]
fn predicted_bars_sit_beside_the_real_ones() {
    let (t, events) = demo();
    let order: Vec<vmove_plan::PlannedMove> = t
        .attempts
        .iter()
        .filter(|a| a.attempt == 1)
        .map(|a| vmove_plan::PlannedMove {
            vm: VmId::new(a.vm.clone()),
            source: HostId::new(a.source.clone()),
            destination: HostId::new(a.destination.clone()),
            mode: MigrationMode::Live,
            start: Time(a.start_ms / 2),
            end: a.end_ms.map(|e| Time(e * 2)),
        })
        .collect();
    let n = order.len();
    assert!(n > 0 && !events.is_empty());
    let t = t.with_plan(&order);
    assert_eq!(t.predicted.len(), n);
    let last_end = order.iter().filter_map(|m| m.end).max().unwrap();
    assert!(
        t.end_ms >= last_end.as_millis(),
        "the drawing reaches the plan's end"
    );
    let doc = svg(&t);
    let xml = roxmltree::Document::parse(&doc).unwrap();
    let predicted = xml
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("class") == Some("predicted"))
        .filter(|n| n.attribute("data-vm").is_some())
        .count();
    assert_eq!(predicted, n);
}

#[test]
fn a_text_timeline_asked_for_more_columns_than_the_widest_is_drawn_in_the_widest() {
    // `usize::MAX` columns once asked for a row of that many characters: `capacity overflow`.
    let (t, _) = demo();
    for width in [usize::MAX, 100_000_000, crate::output::MAX_WIDTH + 1] {
        let out = text::text(&t, width);
        let widest = out.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert_eq!(widest, crate::output::MAX_WIDTH, "{width}");
    }
}
