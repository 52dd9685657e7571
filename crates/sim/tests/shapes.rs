//! VMs shaped like the ones a real hypervisor refuses to move (managed save, snapshots, a
//! CD-ROM or network a destination lacks): pre-flight blocks them before anything is touched,
//! with their reasons, and the others all move.

use vmove_core::{EventKind, Phase, Reason};
use vmove_sim::scenarios;
use vmove_sim::{SimOptions, simulate};

#[test]
fn shaped_vms_are_blocked_with_0_attempts_and_their_reasons_while_the_others_move() {
    let s = scenarios::shaped();
    let out = simulate(s.spec, s.cluster, SimOptions::default()).expect("runs");
    let view = |name: &str| {
        out.snapshot
            .vms
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("{name} listed"))
            .clone()
    };
    for i in 1..=6 {
        let v = view(&format!("plain-{i:02}"));
        assert_eq!(v.phase, Phase::Moved, "{v:?}");
    }
    let iso = view("iso");
    assert_eq!(iso.phase, Phase::Moved, "{iso:?}");
    assert_eq!(iso.destination.as_ref().map(|d| d.as_str()), Some("hv-03"));
    assert_eq!(
        iso.attempts, 1,
        "never tried toward hv-02, which lacks its image"
    );
    for (name, codes) in [
        ("saved", vec!["managed_save"]),
        ("snapped", vec!["snapshots"]),
        ("netless", vec!["network_missing", "network_missing"]),
    ] {
        let v = view(name);
        assert_eq!(v.phase, Phase::Unmigratable, "{v:?}");
        assert_eq!(v.attempts, 0, "{name}: nothing touched");
        let Some(Reason::Blocked { blockers }) = &v.reason else {
            panic!("{name}: expected Blocked, got {:?}", v.reason);
        };
        let got: Vec<&str> = blockers.iter().map(|b| b.finding.code.as_str()).collect();
        assert_eq!(got, codes, "{name}");
        assert!(blockers.iter().all(|b| !b.finding.remedy.is_empty()));
        let touched = out
            .events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::AttemptStarted { vm, .. } if *vm == v.id));
        assert!(!touched, "{name} was never started");
    }
    let saved = view("saved")
        .reason
        .map(|r| r.to_string())
        .unwrap_or_default();
    assert!(
        saved.contains("managed save image exists") && saved.contains("managedsave-remove"),
        "{saved}"
    );
}

#[test]
fn a_sim_shape_that_is_not_known_is_refused_with_its_name() {
    for bad in [
        "managed_saved",
        "cdrom_missing",
        "snapshots:0",
        "network_missing:",
    ] {
        let e = vmove_sim::cluster::Shape::parse(bad).expect_err(bad);
        assert!(e.contains(bad), "{e}");
    }
    assert_eq!(
        vmove_sim::cluster::Shape::parse("snapshots:3"),
        Ok(vmove_sim::cluster::Shape::Snapshots(3))
    );
}
