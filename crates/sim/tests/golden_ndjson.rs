//! The simulator's NDJSON for fixed seeds, byte for byte, against files kept in
//! `tests/golden/`. A refactor must not change what a run does: if this fails, the change altered
//! behaviour (an event, its order, a time, a word). When a change is *meant* to alter events,
//! regenerate the files with `VMOVE_BLESS=1 cargo test -p vmove-sim --test integration golden_ndjson::` and say
//! why in the commit.
//!
//! The demo's runs are kept whole (a failure shows the first line that differs); the larger
//! random runs (megabytes of progress events) are kept as their SHA-256 and line count: to see
//! how one differs, `VMOVE_GOLDEN_DUMP=DIR` writes every run's NDJSON to DIR, to diff against the
//! same dump from the commit before.

use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;
use vmove_core::Time;
use vmove_core::spec::SchedulerPolicy;
use vmove_sim::scenarios::{self, RandomParams, Scenario};
use vmove_sim::{SimOptions, simulate};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn ndjson(sc: Scenario, opts: SimOptions) -> String {
    let out = simulate(sc.spec, sc.cluster, opts).expect("the run finishes");
    assert!(out.event_count > 0, "a run emits events");
    out.ndjson()
}

fn dump(name: &str, got: &str) {
    if let Some(dir) = std::env::var_os("VMOVE_GOLDEN_DUMP") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("dump folder");
        std::fs::write(dir.join(name), got).expect("write dump");
    }
}

/// The digest kept for a large run: its SHA-256 (hex) and its number of lines.
fn digest(got: &str) -> String {
    let hash = Sha256::digest(got.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex} {}\n", got.lines().count())
}

/// Compares the digest of `got` with the golden file `name` (or writes it, under `VMOVE_BLESS`).
fn check_digest(name: &str, got: &str) {
    dump(name, got);
    let path = golden_dir().join(format!("{name}.sha256"));
    let now = digest(got);
    if std::env::var_os("VMOVE_BLESS").is_some() {
        std::fs::create_dir_all(golden_dir()).expect("golden folder");
        std::fs::write(&path, &now).expect("write golden file");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (generate with VMOVE_BLESS=1)", path.display()));
    assert_eq!(
        want, now,
        "{name}: NDJSON differs from the golden run (SHA-256 and lines); VMOVE_GOLDEN_DUMP=DIR \
         writes it for a diff"
    );
}

/// Compares `got` with the golden file `name`, or writes it when `VMOVE_BLESS` is set.
fn check(name: &str, got: &str) {
    dump(name, got);
    let path = golden_dir().join(name);
    if std::env::var_os("VMOVE_BLESS").is_some() {
        std::fs::create_dir_all(golden_dir()).expect("golden folder");
        std::fs::write(&path, got).expect("write golden file");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (generate with VMOVE_BLESS=1)", path.display()));
    if want == got {
        return;
    }
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let at = w
        .iter()
        .zip(&g)
        .position(|(a, b)| a != b)
        .unwrap_or(w.len().min(g.len()));
    panic!(
        "{name}: NDJSON differs from the golden file at line {} ({} lines kept, {} now)\n\
         golden: {}\n   now: {}",
        at + 1,
        w.len(),
        g.len(),
        w.get(at).unwrap_or(&"<end>"),
        g.get(at).unwrap_or(&"<end>"),
    );
}

#[test]
fn the_demo_emits_the_golden_ndjson() {
    let d = scenarios::demo();
    check("demo.ndjson", &ndjson(d.scenario, SimOptions::default()));
}

#[test]
fn the_demo_stopped_midway_emits_the_golden_ndjson() {
    for (abort, name) in [(false, "demo-stop.ndjson"), (true, "demo-abort.ndjson")] {
        let d = scenarios::demo();
        let opts = SimOptions {
            stop_at: Some((Time::ZERO + Duration::from_secs(200), abort)),
            ..SimOptions::default()
        };
        check(name, &ndjson(d.scenario, opts));
    }
}

#[test]
fn faulty_random_runs_emit_the_golden_ndjson() {
    for seed in [1u64, 42, 977] {
        let sc = scenarios::random(seed, &RandomParams::faulty(3, 3, 10));
        check_digest(
            &format!("faulty-{seed}.ndjson"),
            &ndjson(sc, SimOptions::default()),
        );
    }
}

#[test]
fn the_seed_policy_emits_the_golden_ndjson() {
    let mut sc = scenarios::random(7, &RandomParams::faulty(2, 2, 6));
    sc.spec.settings.policy = SchedulerPolicy::Seed;
    check_digest("seed-policy-7.ndjson", &ndjson(sc, SimOptions::default()));
}
