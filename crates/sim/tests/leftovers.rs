//! A failed attempt's partial copy left on the destination by one run, and the next run, through
//! the simulated cluster (which refuses a start whose destination path is taken, and lists and
//! removes only the VM's own files, as the libvirt driver does with its provenance markers).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;
use vmove_core::{
    EventKind, HostId, HostLimits, Phase, Reason, RunSpec, Selection, Settings, SourceSpec, Time,
    VmId,
};
use vmove_sim::{Faults, HostSpec, MidFault, SimCluster, SimOptions, VmSpec, Window, simulate};

fn spec(run_id: &str) -> RunSpec {
    RunSpec {
        run_id: run_id.into(),
        sources: vec![SourceSpec {
            host: HostId::new("a"),
            select: Selection::All,
            destinations: vec![HostId::new("b")].into(),
            exclude: vec![],
        }],
        hosts: ["a", "b"]
            .into_iter()
            .map(|h| (HostId::new(h), HostLimits::default()))
            .collect::<BTreeMap<_, _>>(),
        layouts: Default::default(),
        pins: Default::default(),
        priorities: Default::default(),
        settings: Settings {
            stall_timeout: Duration::from_secs(15),
            backoff_jitter: 0.0,
            ..Settings::default()
        },
    }
}

/// Regression guard (issue 3, seen on the netns lab): run 1 gives the VM up while the
/// destination does not answer, so its partial copy stays there; run 2's start is refused (the
/// path is taken), run 2 removes that copy (it is the VM's own), and must then retry there and
/// move the VM, not count the destination as refused and give the VM up.
#[test]
fn the_run_after_a_give_up_removes_the_partial_copy_and_moves_the_vm_to_that_destination() {
    let vm = VmSpec::running("vm07", "a", 1 << 30).with_disk(2 << 30);
    let id: VmId = vm.id.clone();
    let mut faults = Faults::default();
    // Its first migration hangs 2 s in; the destination stops answering at 5 s for ~11 minutes
    // (longer than the 60 looks after the abort).
    faults.mid.push(MidFault {
        vm: id.clone(),
        nth_start: 1,
        after_ms: 2_000,
        fail: None,
    });
    faults.host_down.push((
        HostId::new("b"),
        Window {
            from: Time(5_000),
            to: Time(650_000),
        },
    ));
    let cluster = SimCluster::new(
        vec![HostSpec::new("a"), HostSpec::new("b")],
        vec![vm],
        faults,
    )
    .unwrap();

    // Run 1: given up, the destination never looked at; it says so.
    let one = simulate(spec("run-1"), cluster, SimOptions::default()).unwrap();
    let v = &one.snapshot.vms[0];
    assert_eq!(v.phase, Phase::Unmigratable, "{:?}", v.reason);
    // Nobody could look: the reason says so (it said "on neither host").
    assert!(
        matches!(&v.reason, Some(Reason::NotLocated(e)) if e.contains("does not answer")),
        "{:?}",
        v.reason
    );
    assert!(one.events.iter().any(|e| matches!(
        &e.kind,
        EventKind::LeftBehind { host, what, .. } if host.as_str() == "b" && what.is_empty()
    )));
    let mut cluster = one.cluster;
    let partial: Vec<String> = cluster
        .files_on(&HostId::new("b"))
        .into_iter()
        .filter(|(_, owner, ..)| owner.as_ref() == Some(&id))
        .map(|(p, ..)| p)
        .collect();
    assert!(!partial.is_empty(), "run 1 left the partial copy on b");

    // Run 2, once the destination answers again.
    cluster.advance_to(Time(700_000));
    let two = simulate(spec("run-2"), cluster, SimOptions::default()).unwrap();
    let v = &two.snapshot.vms[0];
    assert_eq!(v.phase, Phase::Moved, "{:?}", v.reason);
    assert_eq!(v.destination, Some(HostId::new("b")));
    assert_eq!(v.attempts, 2, "refused once (path taken), then moved");
    // Pre-flight told its own copy from someone else's file: a warning, no blocker (a blocker
    // would make it wait for a path only the start's clean-up frees).
    assert!(
        two.events.iter().any(|e| matches!(
            &e.kind,
            EventKind::PreflightFindings { blockers, warnings, .. }
                if blockers.is_empty() && warnings.iter().any(|w| w.code == "leftover")
        )),
        "the own partial copy is a leftover warning"
    );
    let refused = two.events.iter().any(|e| {
        matches!(&e.kind, EventKind::AttemptFailed { class, .. }
            if *class == vmove_core::ErrorClass::DestinationRefused)
    });
    assert!(refused, "the first start of run 2 was refused");
    for p in &partial {
        assert!(
            two.events.iter().any(|e| matches!(
                &e.kind,
                EventKind::LeftoverRemoved { host, what, .. } if host.as_str() == "b" && what == p
            )),
            "{p} removed"
        );
    }
}

/// A destination path held by a file nobody here owns may be freed (by a person, or a move),
/// so pre-flight says `path_taken` as a blocker that may pass: the VM waits for it, asked again
/// after a back-off, and when nobody frees it within `backup_threshold` it ends Blocked with 0
/// attempts and the file untouched (before, the start was tried and refused).
#[test]
fn a_destination_path_someone_else_holds_is_waited_for_then_blocked_with_the_file_untouched() {
    let vm = VmSpec::running("vm08", "a", 1 << 30).with_disk(2 << 30);
    let mut cluster = SimCluster::new(
        vec![HostSpec::new("a"), HostSpec::new("b")],
        vec![vm],
        Faults::default(),
    )
    .unwrap();
    let disk = cluster
        .files_on(&HostId::new("a"))
        .into_iter()
        .find(|(p, ..)| p.contains("vm08"))
        .map(|(p, ..)| p)
        .unwrap();
    assert!(cluster.occupy_path(&HostId::new("b"), &disk));
    let mut s = spec("run-1");
    s.settings.backup_threshold = Duration::from_secs(300);
    let out = simulate(s, cluster, SimOptions::default()).unwrap();
    let v = &out.snapshot.vms[0];
    assert_eq!(v.phase, Phase::Unmigratable, "{:?}", v.reason);
    assert_eq!(v.attempts, 0);
    let Some(Reason::Blocked { blockers }) = &v.reason else {
        panic!("expected Blocked, got {:?}", v.reason);
    };
    assert_eq!(blockers.len(), 1, "{blockers:?}");
    assert_eq!(blockers[0].finding.code, "path_taken");
    assert!(blockers[0].finding.may_pass);
    let waited = out.events.iter().any(|e| {
        matches!(&e.kind, EventKind::Waiting { reason: vmove_core::WaitReason::MayPass { destination, code }, .. }
            if destination.as_str() == "b" && code == "path_taken")
    });
    assert!(waited, "it waited for b, saying why");
    let checks = out
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::PreflightFindings { .. }))
        .count();
    assert!(checks > 2, "asked again while it waited: {checks}");
    assert!(
        !out.events
            .iter()
            .any(|e| matches!(e.kind, EventKind::AttemptStarted { .. })),
        "never started"
    );
    let still: Vec<_> = out
        .cluster
        .files_on(&HostId::new("b"))
        .into_iter()
        .filter(|(p, owner, ..)| *p == disk && owner.is_none())
        .collect();
    assert_eq!(still.len(), 1, "the file someone else holds is untouched");
}
