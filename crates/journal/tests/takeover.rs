//! The lease's bound and the take-over of a dead holder (issue 12, section 5), with real
//! processes: a lease is taken before it expires only when its holder is provably dead on this
//! machine (same boot and pid namespace; its pid gone, or now another process's).
#![allow(clippy::unwrap_used)]

use crate::common::*;
use std::process::{Child, Command as Proc};
use std::time::Duration;
use vmove_core::Selection;
use vmove_journal::{Holder, Journal, JournalError, MAX_LEASE, MIN_LEASE, Options};

/// A child process that does nothing for a minute (killed by the test).
fn sleeper() -> Child {
    Proc::new("sleep").arg("60").spawn().unwrap()
}

/// Creates run `r1` driven (on paper) by `holder`, on `clock`.
fn run_held_by(path: &std::path::Path, clock: &vmove_journal::ManualClock, holder: Holder) {
    let mut j = open_as(path, clock, holder);
    j.create_run(&new_run("r1", Selection::All)).unwrap();
}

fn a_dead_holder_on_this_machine_is_taken_over_at_once() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut child = sleeper();
    let pid = child.id();
    run_held_by(&path, &clock, Holder::of_pid(pid));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut j = open_as(&path, &clock, other(7));
    let (lease, took) = j.acquire_taking_over("r1").unwrap();
    let took = took.expect("taken over before the lease expired");
    assert_eq!(took.holder.pid, pid);
    assert_eq!(
        took.to_string(),
        format!("holder pid {pid} on this machine is gone: taking over")
    );
    assert_eq!(lease.holder, other(7));
    // The new holder drives the run now.
    j.record_intent(
        "r1",
        vmove_core::Time(1),
        &vmove_core::Command::RefreshHost { host: "a".into() },
    )
    .unwrap();
}

fn a_live_holder_keeps_its_lease() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut child = sleeper();
    let pid = child.id();
    run_held_by(&path, &clock, Holder::of_pid(pid));
    let mut j = open_as(&path, &clock, other(7));
    let err = j.acquire_taking_over("r1").unwrap_err();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        matches!(err, JournalError::LeaseHeld { pid: p, holder_gone: false, .. } if p == pid),
        "{err}"
    );
    // Also a holder stopped with SIGSTOP still runs: only the lease's end frees the run.
    clock.advance(Duration::from_secs(31));
    assert!(j.acquire_taking_over("r1").unwrap().1.is_none());
}

fn a_holder_of_another_boot_is_waited_for_until_its_lease_expires() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut child = sleeper();
    let pid = child.id();
    // The same host name and a pid that is gone, but recorded in another boot: the pid means
    // nothing here, so nothing is proven.
    let mut holder = Holder::of_pid(pid);
    holder.boot = Some("00000000-0000-0000-0000-000000000000/pid:[1]".into());
    run_held_by(&path, &clock, holder);
    child.kill().unwrap();
    child.wait().unwrap();
    let mut j = open_as(&path, &clock, other(7));
    let err = j.acquire_taking_over("r1").unwrap_err();
    assert!(
        matches!(err, JournalError::LeaseHeld { pid: p, .. } if p == pid),
        "{err}"
    );
    clock.advance(Duration::from_secs(29));
    assert!(
        j.acquire_taking_over("r1").is_err(),
        "not before it expires"
    );
    clock.advance(Duration::from_secs(2));
    let (_, took) = j.acquire_taking_over("r1").unwrap();
    assert!(took.is_none(), "an expired lease is simply taken");
}

fn a_reused_pid_does_not_keep_a_dead_holders_lease() {
    let (_dir, path) = temp_path();
    let clock = clock();
    // The holder had the pid a live process has now, but started at another time.
    let mut child = sleeper();
    let pid = child.id();
    let mut holder = Holder::of_pid(pid);
    holder.started = holder.started.map(|t| t.saturating_sub(1000));
    run_held_by(&path, &clock, holder);
    let mut j = open_as(&path, &clock, other(7));
    let took = j.acquire_taking_over("r1");
    let _ = child.kill();
    let _ = child.wait();
    let took = took.unwrap().1.expect("taken over at once");
    assert_eq!(
        took.to_string(),
        format!(
            "holder pid {pid} on this machine is gone (its pid is now a later process's): taking over"
        )
    );
}

/// A new run refused because another live run holds its VMs (or is still selecting them) is
/// told, when that run's process is provably gone, that it is no longer running and to go on
/// with it by `vmove resume` (which takes it over at once); while it runs it is named as its
/// driver. Refused either way: the gone run's VMs stay its own until it is resumed or its lease
/// expires.
fn a_run_refused_by_one_whose_process_is_gone_is_told_so_and_to_resume_it() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut child = sleeper();
    let pid = child.id();
    let mut held = open_as(&path, &clock, Holder::of_pid(pid));
    held.create_run(&new_run("r1", Selection::Names(vec!["web1".into()])))
        .unwrap();
    let mut j = open_as(&path, &clock, other(7));
    let web1 = || new_run("r2", Selection::Names(vec!["web1".into()]));
    // While it runs and has selected nothing yet.
    let refused = |j: &mut Journal, kind: fn(&JournalError) -> bool, says: &[&str], not: &str| {
        let err = j.create_run(&web1()).unwrap_err();
        let msg = err.to_string();
        assert!(
            kind(&err) && says.iter().all(|s| msg.contains(s)) && !msg.contains(not),
            "{msg}"
        );
    };
    let gone = "is no longer running";
    refused(
        &mut j,
        |e| {
            matches!(
                e,
                JournalError::SelectionOverlap {
                    holder_dead: false,
                    ..
                }
            )
        },
        &[
            &format!("(process {pid} on host"),
            "wait until it has selected its VMs",
        ],
        gone,
    );
    child.kill().unwrap();
    child.wait().unwrap();
    refused(
        &mut j,
        |e| {
            matches!(
                e,
                JournalError::SelectionOverlap {
                    holder_dead: true,
                    ..
                }
            )
        },
        &[
            &format!("its process {pid} on host"),
            gone,
            "`vmove resume r1`",
        ],
        "driven by",
    );
    // Once it has selected web1.
    write_steps(&mut held, "r1", &script("r1", "u", 2)[..1], &mut Vec::new());
    let sel = script("r1", "u", 2)
        .into_iter()
        .find(|s| matches!(s, Step::Event(e) if matches!(&e.kind, vmove_core::EventKind::Selected { name, .. } if name == "web1")))
        .unwrap();
    write_steps(&mut held, "r1", &[sel], &mut Vec::new());
    refused(
        &mut j,
        |e| {
            matches!(
                e,
                JournalError::VmInUse {
                    holder_dead: true,
                    ..
                }
            )
        },
        &[
            &format!("run `r1`, whose process {pid} on host"),
            gone,
            "`vmove resume r1`",
        ],
        "driven by",
    );
    // Nothing of r2 was written; r1 is taken over at once, as the message says.
    assert!(j.acquire("r2").is_err());
    assert!(j.acquire_taking_over("r1").unwrap().1.is_some());
}

fn a_lease_shorter_than_the_minimum_or_longer_than_the_maximum_is_refused_with_one_message() {
    let (_dir, path) = temp_path();
    for (ttl, why) in [
        (
            Duration::from_secs(100_000 * 3600),
            "must be at most 1h, not 100000h",
        ),
        (
            MAX_LEASE + Duration::from_secs(1),
            "must be at most 1h, not 1h1s",
        ),
        (Duration::ZERO, "must be at least 1s, not 0s"),
        (
            MIN_LEASE - Duration::from_millis(1),
            "must be at least 1s, not 999ms",
        ),
    ] {
        let err = Journal::open_with(
            &path,
            Options {
                lease_ttl: ttl,
                ..Options::default()
            },
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, JournalError::BadLease { .. })
                && msg.starts_with(&format!("`journal_lease` {why} (")),
            "{msg}"
        );
    }
    assert!(!path.exists(), "nothing was created");
    for ttl in [MIN_LEASE, MAX_LEASE] {
        Journal::open_with(
            &path,
            Options {
                lease_ttl: ttl,
                ..Options::default()
            },
        )
        .unwrap();
    }
}

#[cfg(unix)]
#[test]
fn a_new_journal_and_its_wal_and_shm_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut j = open_as(&path, &clock, other(7));
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    // The -wal and -shm files exist while the journal is open.
    for suffix in ["", "-wal", "-shm"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    drop(j);
    // An existing file's mode is left as it is.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let _j = open_as(&path, &clock, other(7));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

on_both_backends!(
    a_dead_holder_on_this_machine_is_taken_over_at_once,
    a_live_holder_keeps_its_lease,
    a_holder_of_another_boot_is_waited_for_until_its_lease_expires,
    a_reused_pid_does_not_keep_a_dead_holders_lease,
    a_run_refused_by_one_whose_process_is_gone_is_told_so_and_to_resume_it,
    a_lease_shorter_than_the_minimum_or_longer_than_the_maximum_is_refused_with_one_message,
);
