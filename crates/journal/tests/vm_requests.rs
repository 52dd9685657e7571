//! Per-VM stop requests (`vmove skip RUN VM`, `vmove abort RUN VM`): written by any process
//! with no lease, refused (nothing written) for an unknown run or VM, an ended run, or a phase
//! that does not allow them; polled undelivered by the driving process and marked delivered once.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use std::time::Duration;
use vmove_core::{Event, EventKind, HostId, MigrationMode, Phase, Selection, Time, VmId};
use vmove_journal::{Clock, Holder, JournalError, RunEnd};

fn me() -> Holder {
    Holder {
        pid: 100,
        host: "this-host".into(),
        started: None,
        boot: None,
    }
}

fn ev(at: u64, kind: EventKind) -> Event {
    Event { at: Time(at), kind }
}

fn selected(name: &str) -> EventKind {
    EventKind::Selected {
        vm: VmId::new(format!("id-{name}")),
        name: name.into(),
        source: HostId::new("a"),
        mode: MigrationMode::Live,
        memory_bytes: 1 << 30,
        disk_bytes: 1 << 30,
    }
}

fn to(name: &str, from: Phase, to: Phase) -> EventKind {
    EventKind::Transition {
        vm: VmId::new(format!("id-{name}")),
        from,
        to,
    }
}

/// A run `r1` with `q` queued, `m` migrating and `v` verifying.
fn run_with_three_vms(
    path: &std::path::Path,
    clock: &vmove_journal::ManualClock,
) -> vmove_journal::Journal {
    let mut j = open_as(path, clock, me());
    j.create_run(&new_run("r1", Selection::All)).unwrap();
    j.record_events(
        "r1",
        &[
            ev(0, selected("q")),
            ev(0, selected("m")),
            ev(0, selected("v")),
            ev(1, to("m", Phase::Queued, Phase::Starting)),
            ev(2, to("m", Phase::Starting, Phase::Migrating)),
            ev(1, to("v", Phase::Queued, Phase::Starting)),
            ev(2, to("v", Phase::Starting, Phase::Migrating)),
            ev(3, to("v", Phase::Migrating, Phase::Verifying)),
        ],
    )
    .unwrap();
    j
}

fn a_skip_of_a_queued_vm_is_written_by_name_or_id_and_delivered_once() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let driver = run_with_three_vms(&path, &clock);
    let mut cli = open_as(&path, &clock, other(300));
    let q = cli.request_vm_stop("r1", "q", false, "ops@admin").unwrap();
    assert_eq!(
        (q.vm.as_str(), q.name.as_str(), q.abort),
        ("id-q", "q", false)
    );
    assert_eq!(q.at, clock.now());
    clock.advance(Duration::from_secs(1));
    let by_id = cli
        .request_vm_stop("r1", "id-q", true, "ops@admin")
        .unwrap();
    assert_eq!(by_id.name, "q");
    let pending = driver.vm_stop_requests("r1", true).unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].by, "ops@admin");
    let mut driver = driver;
    driver
        .mark_vm_stops_delivered("r1", &[pending[0].id])
        .unwrap();
    let left = driver.vm_stop_requests("r1", true).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, by_id.id);
    let all = driver.vm_stop_requests("r1", false).unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].delivered_at.is_some() && all[1].delivered_at.is_none());
}

fn a_skip_of_a_started_vm_and_an_abort_of_a_moved_one_are_refused_writing_nothing() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let driver = run_with_three_vms(&path, &clock);
    let mut cli = open_as(&path, &clock, other(300));
    let err = cli.request_vm_stop("r1", "m", false, "ops").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, JournalError::VmStopRefused { .. }), "{err}");
    assert!(
        msg.contains("already started (migrating)") && msg.contains("vmove abort r1 m"),
        "{msg}"
    );
    let err = cli.request_vm_stop("r1", "v", true, "ops").unwrap_err();
    assert!(
        err.to_string().contains("already moved (verifying)"),
        "{err}"
    );
    // An abort of the migrating one is fine.
    cli.request_vm_stop("r1", "m", true, "ops").unwrap();
    let all = driver.vm_stop_requests("r1", false).unwrap();
    assert_eq!(all.len(), 1, "only the abort of m was written: {all:?}");
}

fn unknown_runs_and_vms_and_ended_runs_are_refused_naming_them() {
    let (_dir, path) = temp_path();
    let clock = clock();
    let mut driver = run_with_three_vms(&path, &clock);
    let mut cli = open_as(&path, &clock, other(300));
    let err = cli.request_vm_stop("nope", "q", false, "ops").unwrap_err();
    assert!(
        matches!(err, JournalError::UnknownRun(ref r) if r == "nope"),
        "{err}"
    );
    let err = cli
        .request_vm_stop("r1", "ghost", false, "ops")
        .unwrap_err();
    assert!(
        matches!(err, JournalError::UnknownVm { ref vm, .. } if vm == "ghost"),
        "{err}"
    );
    assert!(err.to_string().contains("`ghost`"), "{err}");
    driver.finish_run("r1", RunEnd::Finished).unwrap();
    let err = cli.request_vm_stop("r1", "q", false, "ops").unwrap_err();
    assert!(matches!(err, JournalError::RunNotRunning { .. }), "{err}");
    assert!(driver.vm_stop_requests("r1", false).unwrap().is_empty());
    assert!(matches!(
        cli.vm_stop_requests("nope", false).unwrap_err(),
        JournalError::UnknownRun(_)
    ));
}

on_both_backends!(
    a_skip_of_a_queued_vm_is_written_by_name_or_id_and_delivered_once,
    a_skip_of_a_started_vm_and_an_abort_of_a_moved_one_are_refused_writing_nothing,
    unknown_runs_and_vms_and_ended_runs_are_refused_naming_them,
);
