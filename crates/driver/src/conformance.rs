//! The conformance suite every driver runs (feature `test-util`).
//!
//! A driver's test crate implements [`Fixture`] for its environment (the simulator, the libvirt
//! lab, the Hyper-V protocol fake) and expands [`conformance_tests!`](crate::conformance_tests),
//! which writes one `#[tokio::test]` per check, named after the check, each on a fixture of its
//! own: a failure names the check. [`run_all`] runs every check on one fixture (for a test that
//! looks at what the whole suite did). Each check creates the VMs it needs through the fixture,
//! so checks are independent.

mod checks;
mod fixture;

pub use checks::{
    abort_leaves_vm_on_source, already_migrating_is_refused, destination_path_taken_is_refused,
    footprint_and_unknown_vm, hosts_and_host_info, list_vms_shows_created_vm,
    live_migration_end_to_end, offline_migration, preflight_names_a_taken_destination_path,
    preflight_reads_only, start_on_missing_vm_fails, vm_without_disks_moves,
};
pub use fixture::{CheckResult, DEFAULT_MIGRATION_TIMEOUT, Fixture, VmShape};

/// Expands one `#[tokio::test]` per check of the suite, named after the check (so that
/// `cargo test` lists and reports each), each running the check on a fixture of its own and
/// panicking with the check's one-sentence failure.
///
/// - `conformance_tests!(SimFixture::new())`: the expression builds each test's fixture (it
///   may `.await`).
/// - `conformance_tests!(|check| expr)`: `check` is the check's name in `expr` (a `&str`), for
///   a fixture that may skip (`return` from `expr` ends the test).
/// - Either form may start with the test attributes to use instead of `#[tokio::test]`
///   (`#[tokio::test(flavor = "multi_thread")]`).
///
/// Expand it in a module of its own to keep the check names apart from the file's other tests.
/// The caller's crate needs `tokio` with its `macros` feature.
#[macro_export]
macro_rules! conformance_tests {
    // The one list of the suite's checks, in the order `run_all` runs them.
    (@with_checks $($how:tt)*) => {
        $crate::conformance_tests! {@$($how)* ;
            hosts_and_host_info,
            list_vms_shows_created_vm,
            footprint_and_unknown_vm,
            live_migration_end_to_end,
            offline_migration,
            vm_without_disks_moves,
            abort_leaves_vm_on_source,
            start_on_missing_vm_fails,
            destination_path_taken_is_refused,
            already_migrating_is_refused,
            preflight_reads_only,
            preflight_names_a_taken_destination_path
        }
    };
    (@names ; $($c:ident),+) => {
        &[$(stringify!($c)),+]
    };
    (@run($f:ident) ; $($c:ident),+) => {
        [$((stringify!($c), $crate::conformance::$c($f).await)),+]
    };
    // One test per step, so that the attributes repeat apart from the checks.
    (@tests([$(#[$attr:meta])+], $check:ident, $fixture:expr) ; $c:ident $(, $rest:ident)*) => {
        $(#[$attr])+
        async fn $c() {
            let $check: &str = stringify!($c);
            let _ = $check;
            let fixture = $fixture;
            $crate::conformance::expect_pass(&fixture, $check, $crate::conformance::$c(&fixture).await);
        }
        $crate::conformance_tests!(@tests([$(#[$attr])+], $check, $fixture) ; $($rest),*);
    };
    (@tests([$(#[$attr:meta])+], $check:ident, $fixture:expr) ; ) => {};
    ($(#[$attr:meta])+ |$check:ident| $fixture:expr) => {
        $crate::conformance_tests!(@with_checks tests([$(#[$attr])+], $check, $fixture));
    };
    ($(#[$attr:meta])+ $fixture:expr) => {
        $crate::conformance_tests!($(#[$attr])+ |_check| $fixture);
    };
    (|$check:ident| $fixture:expr) => {
        $crate::conformance_tests!(#[tokio::test] |$check| $fixture);
    };
    ($fixture:expr) => {
        $crate::conformance_tests!(#[tokio::test] |_check| $fixture);
    };
}

/// Every check of the suite, by name, in the order [`run_all`] runs them.
pub const CHECKS: &[&str] = crate::conformance_tests!(@with_checks names);

/// Panics, naming the driver and the check, if `result` is a failure (what each test
/// [`conformance_tests!`](crate::conformance_tests) writes ends with).
pub fn expect_pass(f: &dyn Fixture, check: &str, result: CheckResult) {
    if let Err(e) = result {
        panic!(
            "driver `{}` failed the conformance check {check}: {e}",
            f.driver().kind()
        );
    }
}

/// Runs every check (each with its own VMs) on one fixture and panics with the list of
/// failures, if any.
pub async fn run_all(f: &dyn Fixture) {
    let mut failures = Vec::new();
    for (name, r) in crate::conformance_tests!(@with_checks run(f)) {
        if let Err(e) = r {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "driver `{}` failed {} conformance check(s):\n{}",
        f.driver().kind(),
        failures.len(),
        failures.join("\n")
    );
}
