#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use vmove_core::*;

#[test]
fn evacuates_a_host_with_two_slots() {
    let mut w = World::new();
    w.add_host("a", Some(2));
    w.add_host("b", Some(2));
    for i in 0..5 {
        w.add_vm("a", vm(&format!("vm{i}"), PowerState::Running));
    }
    let mut core = Core::new(spec("a", &["b"], &["a", "b"]), Time::ZERO).unwrap();
    let mut peak = 0;
    let ev = run(&mut core, &mut w, Time::ZERO, |_, w, _| {
        peak = peak.max(w.migs.len());
    });
    assert!(peak <= 2, "peak {peak}");
    let snap = core.snapshot(Time::ZERO);
    assert_eq!(snap.counts(), (5, 0, 0), "{:#?}", snap.vms);
    assert_eq!(w.hosts[&HostId::new("b")].1.len(), 5);
    assert!(
        ev.iter()
            .any(|e| matches!(e.kind, EventKind::RunFinished { moved: 5, .. }))
    );
}
