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
            destinations: vec![HostId::new("b")],
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
