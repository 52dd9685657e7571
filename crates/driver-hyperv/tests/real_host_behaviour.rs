//! What real hosts do that the first fake did not (issue 13, defects 8, 9, 11, 12): dynamic
//! disks that grow during a live move, migration jobs that are `Msvm_MigrationJob`s (polled and
//! cancelled through the reference the call returned, `Cancellable`, completed with warnings,
//! failure detail through `GetErrorEx`), WMI faults with `MSFT_WmiError`, and sealed answers
//! whose final boundary has no trailing `--`. Each test fails with the driver as it was.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;
use vmove_driver::*;
use vmove_driver_hyperv::fake::world::key;
use vmove_driver_hyperv::fake::{FakeJobError, FakeWmiError};

fn req(vm: &str, name: &str, attempt: u32) -> MigrationRequest {
    MigrationRequest {
        vm: VmId::new(vm),
        vm_name: name.into(),
        source: HostId::new("hv1"),
        destination: HostId::new("hv2"),
        mode: MigrationMode::Live,
        layout: PathLayout {
            base: Some("E:\\New".into()),
            put_in_subfolder: true,
            preserve_drive_letter: false,
        },
        attempt,
        run_id: "t".into(),
    }
}

#[tokio::test]
async fn verification_accepts_dynamic_disks_that_grew_during_the_live_move() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "busy", true, 512, &[10, 20], "E:\\VMs\\busy");
    let (fake, d) = common::start(w).await;
    let r = req(&g, "busy", 1);
    let h = d.start_migration(&r).await.unwrap();
    assert_eq!(
        common::run_to_end(&fake, &d, &r, &h).await,
        MigrationStatus::Completed
    );
    // The copies on the destination are larger than the files were on the source.
    let (moved, grew) = fake.with(|w| {
        let f = &w.hosts["hv2"].files[&key("E:\\New\\busy\\Virtual Hard Disks\\busy_1.vhdx")];
        (f.size, w.live_disk_growth)
    });
    assert!(grew > 0);
    assert_eq!(moved, (20 << 20) + grew);
    let v = d.verify(&r).await.unwrap();
    assert!(v.is_proof(), "{v:?}");
    assert!(v.detail.is_empty(), "{v:?}");
}

#[tokio::test]
async fn verification_still_refuses_a_vm_whose_disk_is_missing_on_the_destination() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "lost", true, 512, &[10], "E:\\VMs\\lost");
    let (fake, d) = common::start(w).await;
    let r = req(&g, "lost", 1);
    let h = d.start_migration(&r).await.unwrap();
    common::run_to_end(&fake, &d, &r, &h).await;
    fake.with(|w| {
        w.hosts
            .get_mut("hv2")
            .unwrap()
            .files
            .remove(&key("E:\\New\\lost\\Virtual Hard Disks\\lost_0.vhdx"))
    });
    let v = d.verify(&r).await.unwrap();
    assert!(!v.is_proof());
    assert!(v.detail.contains("lost_0.vhdx"), "{v:?}");
}

#[tokio::test]
async fn a_migration_job_is_polled_and_cancelled_through_the_reference_the_call_returned() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "web", true, 512, &[10], "E:\\VMs\\web");
    w.migration_ms = 10_000;
    let (fake, d) = common::start(w).await;
    let r = req(&g, "web", 1);
    let h = d.start_migration(&r).await.unwrap();
    fake.advance(Duration::from_millis(2_000));
    // Polled through the Msvm_MigrationJob the call named (the fake, like Hyper-V, has no
    // Msvm_ConcreteJob for it): running, with its progress.
    assert!(
        matches!(d.migration_status(&r, &h).await.unwrap(), MigrationStatus::Running(p) if p.percent == Some(20)),
        "{:?}",
        d.migration_status(&r, &h).await
    );
    // Cancelled with Terminate (4), the orderly, state-preserving request.
    d.abort_migration(&r, &h).await.unwrap();
    let (requests, state) = fake.with(|w| {
        let j = w.hosts["hv1"].jobs.values().next().unwrap().clone();
        (w.calls.job_state_requests.clone(), j.state)
    });
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].1, 4, "{requests:?}");
    assert_eq!(state, 8, "terminated");
    match d.migration_status(&r, &h).await.unwrap() {
        MigrationStatus::Failed(f) => assert!(f.message.contains("cancelled"), "{f:?}"),
        other => panic!("a terminated job read as {other:?}"),
    }
    let loc = d.locate(&r).await.unwrap();
    assert!(loc.on_source.is_some() && loc.running_migration.is_none());
    // A second abort of the ended job is not an error and asks nothing.
    d.abort_migration(&r, &h).await.unwrap();
    assert_eq!(fake.with(|w| w.calls.job_state_requests.len()), 1);
}

#[tokio::test]
async fn a_running_job_found_by_locate_is_adopted_with_its_reference() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "adopt", true, 512, &[10], "E:\\VMs\\adopt");
    w.migration_ms = 10_000;
    let (fake, d) = common::start(w).await;
    let r = req(&g, "adopt", 1);
    d.start_migration(&r).await.unwrap();
    fake.advance(Duration::from_millis(1_000));
    // A new driver (as after a restart) finds the job and polls it through that handle.
    let d2 = common::driver(&fake);
    let h = d2.locate(&r).await.unwrap().running_migration.unwrap();
    assert!(matches!(
        d2.migration_status(&r, &h).await.unwrap(),
        MigrationStatus::Running(_)
    ));
    assert_eq!(
        common::run_to_end(&fake, &d2, &r, &h).await,
        MigrationStatus::Completed
    );
}

#[tokio::test]
async fn a_job_that_says_it_cannot_be_cancelled_is_never_asked_to() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "fixed", true, 512, &[10], "E:\\VMs\\fixed");
    w.faults.not_cancellable.insert(g.clone());
    let (fake, d) = common::start(w).await;
    let r = req(&g, "fixed", 1);
    let h = d.start_migration(&r).await.unwrap();
    fake.advance(Duration::from_millis(500));
    let e = d.abort_migration(&r, &h).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(e.message.contains("cannot be cancelled"), "{e}");
    assert!(
        fake.with(|w| w.calls.job_state_requests.is_empty()),
        "RequestStateChange was asked of a job that is not cancellable"
    );
    assert_eq!(
        common::run_to_end(&fake, &d, &r, &h).await,
        MigrationStatus::Completed
    );
}

#[tokio::test]
async fn a_job_completed_with_warnings_is_a_success() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "warned", true, 512, &[10], "E:\\VMs\\warned");
    w.faults.completes_with_warnings.insert(
        g.clone(),
        "The smart paging file of 'warned' was left in place.".into(),
    );
    let (fake, d) = common::start(w).await;
    let r = req(&g, "warned", 1);
    let h = d.start_migration(&r).await.unwrap();
    assert_eq!(
        common::run_to_end(&fake, &d, &r, &h).await,
        MigrationStatus::Completed
    );
    assert_eq!(
        fake.with(|w| w.hosts["hv1"].jobs.values().next().unwrap().state),
        32768
    );
    assert!(d.verify(&r).await.unwrap().is_proof());
}

#[tokio::test]
async fn a_failed_job_s_detail_is_read_with_get_error_ex_and_classified() {
    let mut w = common::world();
    let denied = w.add_vm("hv1", "denied", true, 512, &[10], "E:\\VMs\\denied");
    let flaky = w.add_vm("hv1", "flaky", true, 512, &[10], "E:\\VMs\\flaky");
    for g in [&denied, &flaky] {
        w.faults.job_exception.insert(g.clone(), 1);
    }
    // The double hop not set up: a security error that no retry mends.
    w.faults.job_error_detail.insert(
        denied.clone(),
        FakeJobError {
            error_code: 32768,
            cim_status: 2,
            error_type: 7,
            message: "The Virtual Machine Management Service failed to authenticate the connection for a Virtual Machine migration at the source host: no suitable credentials available.".into(),
        },
    );
    let (fake, d) = common::start(w).await;
    let r = req(&denied, "denied", 1);
    let h = d.start_migration(&r).await.unwrap();
    match common::run_to_end(&fake, &d, &r, &h).await {
        MigrationStatus::Failed(f) => {
            assert_eq!(f.class, ErrorClass::Permanent, "{f:?}");
            assert!(f.message.contains("failed to authenticate"), "{f:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(fake.with(|w| w.calls.invokes.iter().any(|(_, m)| m == "GetErrorEx")));
    // A generic failure (32768, CIM_ERR_FAILED) is worth another attempt.
    let r = req(&flaky, "flaky", 1);
    let h = d.start_migration(&r).await.unwrap();
    match common::run_to_end(&fake, &d, &r, &h).await {
        MigrationStatus::Failed(f) => {
            assert_eq!(f.class, ErrorClass::Transient, "{f:?}");
            assert!(f.message.contains("(error 32768)"), "{f:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_wmi_error_fault_is_read_with_its_code_and_message() {
    let (fake, d) = common::start(common::world()).await;
    let hv1 = HostId::new("hv1");
    fake.with(|w| {
        w.faults.wmi_error.insert(
            "hv1".into(),
            [
                FakeWmiError {
                    code: 0x8004_1002,
                    cim_status: 6,
                    message: "Not found".into(),
                },
                FakeWmiError {
                    code: 0x8004_1045,
                    cim_status: 1,
                    message: "The server is too busy".into(),
                },
            ]
            .into(),
        )
    });
    let e = d.list_vms(&hv1).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(e.message.contains("0x80041002"), "{e}");
    assert!(e.message.contains("Not found"), "{e}");
    assert_eq!(e.code, Some(0x8004_1002));
    let e = d.list_vms(&hv1).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "{e}");
    assert!(e.message.contains("too busy"), "{e}");
    assert!(d.list_vms(&hv1).await.is_ok());
}

#[tokio::test]
async fn sealed_answers_whose_final_boundary_lacks_its_dashes_are_read() {
    let mut w = common::world();
    let g = w.add_vm("hv1", "bare", true, 512, &[10], "E:\\VMs\\bare");
    w.faults.bare_final_boundary = true;
    let (fake, d) = common::start(w).await;
    let hv1 = HostId::new("hv1");
    assert_eq!(d.list_vms(&hv1).await.unwrap().len(), 1);
    let r = req(&g, "bare", 1);
    let h = d.start_migration(&r).await.unwrap();
    assert_eq!(
        common::run_to_end(&fake, &d, &r, &h).await,
        MigrationStatus::Completed
    );
}

/// Moves `app` and returns the source folders listed after it.
async fn moved_app() -> (
    vmove_driver_hyperv::fake::FakeHyperV,
    vmove_driver_hyperv::HyperVDriver,
    MigrationRequest,
    Vec<Leftover>,
) {
    let mut w = common::world();
    let g = w.add_vm("hv1", "app", true, 512, &[10], "E:\\VMs\\app");
    let (fake, d) = common::start(w).await;
    let r = req(&g, "app", 1);
    let h = d.start_migration(&r).await.unwrap();
    common::run_to_end(&fake, &d, &r, &h).await;
    assert!(d.verify(&r).await.unwrap().is_proof());
    let left = d
        .leftovers(&r, LeftoverContext::AfterSuccess)
        .await
        .unwrap();
    assert!(
        left.iter()
            .any(|l| l.what.eq_ignore_ascii_case("E:\\VMs\\app\\Snapshots")),
        "{left:?}"
    );
    (fake, d, r, left)
}

#[tokio::test]
async fn a_source_folder_is_never_deleted_with_a_file_put_into_it_after_the_check() {
    let (fake, d, r, left) = moved_app().await;
    // Between the driver's emptiness check and its delete, someone writes into the folder.
    let theirs = "E:\\VMs\\app\\Snapshots\\someone-else.avhdx";
    fake.with(|w| {
        w.faults
            .writes_before_folder_delete
            .insert("hv1".into(), vec![theirs.into()])
    });
    // (The folders above it are then kept as not empty: their removal may fail.)
    for l in &left {
        let _ = d
            .remove_leftover(&r, l, LeftoverContext::AfterSuccess)
            .await;
    }
    fake.with(|w| {
        let h = &w.hosts["hv1"];
        assert!(
            w.faults.writes_before_folder_delete.is_empty(),
            "no folder was deleted"
        );
        assert!(
            h.files.contains_key(&key(theirs)),
            "a folder delete took along a file written after the check"
        );
        // Nothing set aside is left behind.
        assert!(
            !h.dirs.keys().any(|d| d.contains("vmove-removing")),
            "{:?}",
            h.dirs.keys()
        );
    });
}

#[tokio::test]
async fn a_folder_that_fills_before_it_is_set_aside_is_put_back_and_kept() {
    let (fake, d, r, left) = moved_app().await;
    let snapshots = left
        .iter()
        .find(|l| l.what.eq_ignore_ascii_case("E:\\VMs\\app\\Snapshots"))
        .unwrap();
    let theirs = "E:\\VMs\\app\\Snapshots\\arrived.avhdx";
    fake.with(|w| {
        w.faults
            .writes_before_folder_rename
            .insert("hv1".into(), vec![theirs.into()])
    });
    let e = d
        .remove_leftover(&r, snapshots, LeftoverContext::AfterSuccess)
        .await
        .unwrap_err();
    assert!(e.message.contains("not empty: kept"), "{e}");
    fake.with(|w| {
        let h = &w.hosts["hv1"];
        assert!(h.files.contains_key(&key(theirs)), "their file is gone");
        assert!(h.dir_exists("E:\\VMs\\app\\Snapshots"));
        assert!(
            !h.dirs.keys().any(|d| d.contains("vmove-removing")),
            "{:?}",
            h.dirs.keys()
        );
        assert!(
            !w.calls.invokes.iter().any(|(_, m)| m == "Delete"),
            "a folder was deleted"
        );
    });
}
