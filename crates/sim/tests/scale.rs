//! Evacuations at scale: half the hosts evacuated to the other half (`scenarios::large`), every
//! VM moved, where the core says, no host over its limit.
//!
//! 10,000 VMs across 500 hosts runs in the ordinary `cargo test` (debug) and in CI's release
//! build (`cargo test --release -p vmove-sim --test integration scale::`); 100,000 VMs across 5,000 hosts
//! is ignored: it takes about ten seconds in release, minutes in debug (see its test). Figures:
//! docs/BENCHMARKS.md, Scale.

use std::time::{Duration, Instant};
use vmove_core::Command;
use vmove_core::Phase;
use vmove_sim::scenarios;
use vmove_sim::{SimOptions, simulate, simulate_observed};

/// Evacuates `vms` VMs across `hosts` hosts and checks the outcome; returns the run's wall time.
fn evacuate(vms: usize, hosts: usize) -> Duration {
    let sc = scenarios::large(vms, hosts);
    let lb = scenarios::lower_bound(&sc.cluster, &sc.spec);
    let limits: Vec<_> = sc.cluster.host_ids();
    let wall = Instant::now();
    let out = simulate(
        sc.spec,
        sc.cluster,
        SimOptions {
            record_events: false,
            ..SimOptions::default()
        },
    )
    .expect("the evacuation finishes");
    let wall = wall.elapsed();
    let (moved, unmigratable, cancelled) = out.snapshot.counts();
    eprintln!(
        "{vms} VMs / {hosts} hosts: makespan {} (lower bound {lb}), {} steps, {} events, wall {wall:?}",
        out.makespan, out.steps, out.event_count
    );
    assert_eq!(out.snapshot.vms.len(), vms);
    assert_eq!((moved as usize, unmigratable, cancelled), (vms, 0, 0));
    for v in &out.snapshot.vms {
        assert_eq!(v.phase, Phase::Moved);
        assert_eq!(
            out.cluster.vm_host(&v.id),
            v.destination.as_ref(),
            "{} is not where the core says",
            v.name
        );
    }
    for h in &limits {
        let (ours, _) = out.peak_concurrency[h];
        assert!(
            ours <= 2,
            "{h} peaked at {ours} migrations, over its limit of 2"
        );
    }
    assert!(
        out.makespan >= lb,
        "makespan {} below the lower bound {lb}",
        out.makespan
    );
    wall
}

/// In a release build, a run slower than this is a regression, not noise: the 10,000-VM run
/// takes about 2.5 to 4 s there (on a loaded 2-core machine; 8 to 10 s before sources that
/// would do nothing were parked), and took 320 s when every
/// scheduling pass looked at every source and, per source, at every destination.
const RELEASE_WALL_LIMIT_10K: Duration = Duration::from_secs(30);

#[test]
fn evacuates_10_000_vms_across_500_hosts() {
    let wall = evacuate(10_000, 500);
    if !cfg!(debug_assertions) {
        assert!(
            wall < RELEASE_WALL_LIMIT_10K,
            "10,000 VMs took {wall:?} in release (limit {RELEASE_WALL_LIMIT_10K:?}): a scheduling \
             pass costs more than the work it does"
        );
    }
}

/// Runs a `scenarios::large` evacuation; returns its commands and pre-flight checks per VM.
fn work_per_vm(vms: usize, hosts: usize) -> (f64, f64) {
    let sc = scenarios::large(vms, hosts);
    let mut checks = 0u64;
    let out = simulate_observed(
        sc.spec,
        sc.cluster,
        SimOptions {
            record_events: false,
            ..SimOptions::default()
        },
        &mut |step| {
            checks += step
                .commands
                .iter()
                .filter(|(c, _)| matches!(c, Command::Preflight { .. }))
                .count() as u64;
        },
    )
    .expect("the evacuation finishes");
    assert_eq!(out.snapshot.counts(), (vms as u32, 0, 0), "every VM moved");
    (out.commands as f64 / vms as f64, checks as f64 / vms as f64)
}

/// The work per VM does not grow with the cluster: the commands per VM of a 4,000-VM
/// evacuation across 200 hosts are within 5 % of a 1,000-VM one across 50. Before pre-flight
/// checks were spread over the destinations (`Core::check_at`), the checks asked at one
/// instant all went to the best ranked destination, which took two of them while the others
/// asked again elsewhere: 58.1 commands per VM at 1,000 VMs, 64.0 at 4,000 (+10 %), 75 at
/// 10,000, 94 at 20,000. With them spread: 56.3, 57.6 (+2 %) and 58.7.
///
/// And the pre-flight checks per VM stay low as destinations multiply: at most 2.5 per VM at
/// 4,000 VMs. Before a VM cleared for a destination that can take it started there
/// (`Core::cleared_instead`), it asked again wherever placement now ranked best, and checks
/// per VM grew with the destinations: 2.07 at 1,000 VMs, 2.85 at 4,000, 3.84 at 8,000, 23.4 at
/// 100,000; now 1.63, 1.97, 2.33 and 10.2.
#[test]
fn commands_and_checks_per_vm_do_not_grow_with_the_cluster() {
    let ((small, _), (large, checks)) = (work_per_vm(1_000, 50), work_per_vm(4_000, 200));
    assert!(
        large <= small * 1.05,
        "{large:.1} commands per VM at 4,000 VMs, {small:.1} at 1,000: the work per VM grows \
         with the cluster"
    );
    assert!(
        checks <= 2.5,
        "{checks:.2} pre-flight checks per VM at 4,000 VMs on 200 hosts: a VM cleared for a \
         destination that can take it asks again elsewhere"
    );
}

/// 100,000 VMs across 5,000 hosts (issue 19's target: under 10 s and 500 MiB). It takes 7.2 M
/// steps (5.6 M commands), 6-13 s in release on the 2-core machines it was measured on, whose
/// wall times move with the hour, and a peak of about 400 MiB (an earlier engine: 26 M steps, 597 s of CPU, 2.9 GiB); in a
/// debug build it takes minutes, so it stays ignored, and `vmove-bench --scale` measures it
/// (docs/BENCHMARKS.md, Scale). Asserts completeness only; run it with
/// `cargo test --release -p vmove-sim --test integration scale:: -- --ignored --nocapture`.
#[test]
#[ignore = "minutes in a debug build; vmove-bench --scale measures it (docs/BENCHMARKS.md, Scale)"]
fn evacuates_100_000_vms_across_5_000_hosts() {
    evacuate(100_000, 5_000);
}

/// Pre-flight checks per VM do not grow with the destinations: at 8,000 VMs on 400 hosts
/// (200 destinations) they are within 10 % of 1,000 VMs on 50. When `Core::check_at` looked at
/// only the 16 best ranked open destinations, the checks asked once those were crowded all
/// went to the best ranked one and were stale by their VM's turn: 1.63 checks per VM at 1,000
/// VMs and 2.33 at 8,000 (+43 %); looking at every open destination, 1.64 and 1.74 (+6 %).
#[test]
fn checks_per_vm_do_not_grow_with_the_destinations() {
    let ((_, small), (_, large)) = (work_per_vm(1_000, 50), work_per_vm(8_000, 400));
    assert!(
        large <= small * 1.10,
        "{large:.2} pre-flight checks per VM at 8,000 VMs on 400 hosts, {small:.2} at 1,000 on \
         50: checks asked once the first destinations are crowded herd to the best ranked one"
    );
}

// `vmove-bench`'s arguments: a bad one is refused at once, named, with status 2 and nothing
// run. Before, the bench read its arguments by hand and ignored what it did not know:
// `vmove-bench --bogus` (or `--quick extra`) ran every table, minutes of work, and
// `--scale-run 10 0` printed a row for "0 hosts".

/// Runs `vmove-bench` with `args`: its status, standard output and standard error.
fn bench(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmove-bench"))
        .args(args)
        .output()
        .expect("vmove-bench runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn vmove_bench_refuses_an_argument_it_does_not_know_and_runs_nothing() {
    for args in [
        &["--bogus"][..],
        &["--quick", "extra"],
        &["--quick", "--scale"],
    ] {
        let (code, stdout, stderr) = bench(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?} printed a table: {stdout}");
        let named = args.last().expect("an argument");
        assert!(
            stderr.contains(named.trim_start_matches('-')),
            "{args:?}: the error does not name {named}: {stderr}"
        );
    }
}

#[test]
fn vmove_bench_scale_run_refuses_sizes_that_measure_nothing_and_names_them() {
    for (args, names) in [
        (&["--scale-run"][..], "--scale-run"),
        (&["--scale-run", "abc", "5"], "\"abc\""),
        (&["--scale-run", "5", "-3"], "-3"),
        (
            &["--scale-run", "99999999999999999999", "5"],
            "99999999999999999999",
        ),
        (&["--scale-run", "0", "2"], "VMS must be 1 to"),
        (&["--scale-run", "20000000", "4"], "VMS must be 1 to"),
        (&["--scale-run", "10", "0"], "HOSTS must be at least 2"),
        (&["--scale-run", "10", "1"], "HOSTS must be at least 2"),
        (
            &["--scale-run", "5", "11"],
            "HOSTS must be at most twice the VMs (10), not 11",
        ),
        (&["--scale-build", "7"][..], "--scale-build"),
        (&["--scale-build", "x", "2"], "--scale-build: VMS \"x\""),
        (
            &["--scale-build", "10", "1"],
            "--scale-build: HOSTS must be at least 2",
        ),
        (
            &["--scale-build", "4", "2", "--scale-run", "4", "2"],
            "--scale-run",
        ),
    ] {
        let (code, stdout, stderr) = bench(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?} printed: {stdout}");
        assert!(
            stderr.contains(names),
            "{args:?}: {names:?} not in: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// The fields of `vmove-bench`'s one line of output, which starts with `kind` (`scale-row`,
/// `scale-build`), after it.
fn fields<'a>(kind: &str, stdout: &'a str) -> Vec<&'a str> {
    stdout
        .trim_end()
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(' '))
        .unwrap_or_else(|| panic!("not a {kind} line: {stdout}"))
        .split(' ')
        .collect()
}

#[test]
fn vmove_bench_scale_run_prints_one_row_for_the_smallest_sizes_it_takes() {
    for (vms, hosts) in [("1", "2"), ("5", "10")] {
        let (code, stdout, stderr) = bench(&["--scale-run", vms, hosts]);
        assert_eq!(code, Some(0), "{vms} {hosts}: {stderr}");
        let row = fields("scale-row", &stdout);
        // VMs, hosts, VMs moved: every one.
        assert_eq!(row[..3], [vms, hosts, vms], "{stdout}");
    }
}

/// `--scale-build` builds what `--scale-run` would run, and runs nothing: one line with the
/// VMs asked for, the hosts, the VMs built and the lower bound, the same bound as the run's row.
#[test]
fn vmove_bench_scale_build_prints_the_cluster_the_run_would_take_and_runs_nothing() {
    let (code, stdout, stderr) = bench(&["--scale-build", "40", "4"]);
    assert_eq!(code, Some(0), "{stderr}");
    let build = fields("scale-build", &stdout);
    assert_eq!(build[..3], ["40", "4", "40"], "{stdout}");
    let (code, run, stderr) = bench(&["--scale-run", "40", "4"]);
    assert_eq!(code, Some(0), "{stderr}");
    // The run's row: `scale-row VMS HOSTS MOVED MAKESPAN BOUND ...`.
    let row = fields("scale-row", &run);
    assert_eq!(
        build[3], row[4],
        "the build's lower bound is not the run's: {stdout} / {run}"
    );
}
