//! A restarted driver (nothing in memory) finds and removes what a previous one pre-created,
//! and nothing else.

use crate::common::*;
use vmove_driver::*;

/// The provenance markers (`<image>.vmove-<uuid>`) of a VM in the destination's images folder.
fn markers_on(host: &str, vm: &VmId) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(lab_dir().join(host).join("lib/images"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(&format!(".vmove-{}", vm.as_str())))
        .collect();
    out.sort();
    out
}

/// Guards the crash gap between an image's pre-creation and its clean-up: a destination image pre-created by one driver instance for an
/// attempt that then failed (the process that made it is gone, as after `kill -9`) is proven
/// vmove's by its marker on the destination host, so a NEW driver instance lists and removes it
/// (image, then marker). A file at a destination path without this VM's marker, or with another
/// VM's marker, is neither listed nor removed; another VM's marker also stops a pre-create there.
/// A successful move leaves no marker behind, and markers never make the moved VM's disks
/// look like leftovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_driver_removes_images_a_previous_instance_pre_created_and_nothing_else() {
    if !lab_enabled(
        "a_restarted_driver_removes_images_a_previous_instance_pre_created_and_nothing_else",
    ) {
        return;
    }
    // Instance 1: pre-creates the destination image, then the attempt fails (aborted; the
    // 4 MiB/s cap keeps the migration from finishing first).
    let first = Lab::with_bandwidth(Some(4));
    let (vm, name) = first.mkvm("prov", &["--size", "128", "--fill", "64"]);
    let dest = format!("/var/lib/libvirt/images/{name}-0.qcow2");
    let marker = format!("{name}-0.qcow2.vmove-{}", vm.as_str());
    let req = first.request(&vm, &name, MigrationMode::Live);
    let h = first.driver.start_migration(&req).await.unwrap();
    assert!(outside(b(), &dest).exists(), "the image is pre-created");
    assert_eq!(markers_on(b(), &vm), vec![marker.clone()], "marker first");
    first.driver.abort_migration(&req, &h).await.unwrap();
    let end = first.wait_end(&req, &h).await;
    assert!(matches!(end, MigrationStatus::Failed(_)), "{end:?}");
    assert_eq!(virsh(a(), &["domstate", &name]).unwrap(), "running");
    drop(first);

    // Instance 2 (a restarted process): knows nothing in memory, the destination proves it.
    let lab = Lab::restarted(&vm, &name);
    let left = lab.left(&req, LeftoverContext::AfterFailedAttempt).await;
    assert_eq!(
        left,
        vec![Leftover {
            host: HostId::new(b()),
            kind: LeftoverKind::DiskImage,
            what: dest.clone(),
        }]
    );
    lab.driver
        .remove_leftover(&req, &left[0], LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap();
    assert!(!outside(b(), &dest).exists(), "the image is removed");
    assert!(markers_on(b(), &vm).is_empty(), "then its marker");
    assert!(
        lab.left(&req, LeftoverContext::AfterFailedAttempt)
            .await
            .is_empty()
    );
    assert!(outside(a(), &dest).exists(), "the source disk is untouched");

    // A file at the destination path that no marker of this VM vouches for: kept.
    let file = outside(b(), &dest);
    let other_vm = "0badc0de-0000-4000-8000-000000000001";
    let other_marker = outside(b(), &format!("{dest}.vmove-{other_vm}"));
    let our_marker = outside(b(), &format!("/var/lib/libvirt/images/{marker}"));
    let as_leftover = Leftover {
        host: HostId::new(b()),
        kind: LeftoverKind::DiskImage,
        what: dest.clone(),
    };
    std::fs::write(&file, b"someone else's data").unwrap();
    for (case, ours, theirs) in [
        ("no marker", false, false),
        ("another VM's marker", false, true),
        ("this VM's and another VM's marker", true, true),
    ] {
        let _ = std::fs::remove_file(&other_marker);
        let _ = std::fs::remove_file(&our_marker);
        if ours {
            std::fs::write(&our_marker, b"").unwrap();
        }
        if theirs {
            std::fs::write(&other_marker, b"").unwrap();
        }
        let left = lab.left(&req, LeftoverContext::AfterFailedAttempt).await;
        assert!(
            !left.iter().any(|l| l.what == dest),
            "{case}: listed {left:?}"
        );
        let err = lab
            .driver
            .remove_leftover(&req, &as_leftover, LeftoverContext::AfterFailedAttempt)
            .await
            .unwrap_err();
        assert!(
            err.message.contains("not created by vmove"),
            "{case}: {err}"
        );
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"someone else's data",
            "{case}"
        );
    }
    std::fs::remove_file(&file).unwrap();
    let _ = std::fs::remove_file(&our_marker);

    // Another VM's marker on a free destination path: no pre-create there, nothing created.
    let err = lab.driver.start_migration(&req).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::DestinationRefused, "{err}");
    assert!(err.message.contains(other_vm), "{err}");
    assert!(!file.exists() && markers_on(b(), &vm).is_empty());
    std::fs::remove_file(&other_marker).unwrap();

    // This VM's marker without its image (a crash between marker and image): listed, removed.
    std::fs::write(&our_marker, b"").unwrap();
    let left = lab.left(&req, LeftoverContext::AfterFailedAttempt).await;
    let marker_path = format!("/var/lib/libvirt/images/{marker}");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].what, marker_path);
    lab.driver
        .remove_leftover(&req, &left[0], LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap();
    assert!(!our_marker.exists());

    // A successful move: while it runs on the destination nothing of it is a leftover there
    // (markers or not); once verified, its markers are gone.
    let h = lab.driver.start_migration(&req).await.unwrap();
    assert_eq!(lab.wait_end(&req, &h).await, MigrationStatus::Completed);
    assert_eq!(markers_on(b(), &vm), vec![marker.clone()]);
    assert!(
        lab.left(&req, LeftoverContext::AfterFailedAttempt)
            .await
            .is_empty(),
        "the moved VM's disk looks like a leftover"
    );
    let v = lab.driver.verify(&req).await.unwrap();
    assert!(v.is_proof(), "{v:?}");
    assert!(
        markers_on(b(), &vm).is_empty(),
        "markers left after the move"
    );
    assert_eq!(virsh(b(), &["domstate", &name]).unwrap(), "running");
    lab.cleanup(&name);
}

/// Guards the marker search beyond the pool's own folder: with a per-VM subfolder layout
/// (reached through the driver's transient `vmove-…` pool), a new driver instance still finds
/// and removes the image a previous instance pre-created there for a failed attempt, then its
/// marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_driver_finds_pre_created_images_in_a_per_vm_subfolder() {
    if !lab_enabled("a_restarted_driver_finds_pre_created_images_in_a_per_vm_subfolder") {
        return;
    }
    let first = Lab::with_bandwidth(Some(4));
    let (vm, name) = first.mkvm("provsub", &["--size", "128", "--fill", "64"]);
    let mut req = first.request(&vm, &name, MigrationMode::Live);
    req.layout.put_in_subfolder = true;
    let dir = format!("/var/lib/libvirt/images/{name}");
    let dest = format!("{dir}/{name}-0.qcow2");
    let h = first.driver.start_migration(&req).await.unwrap();
    assert!(outside(b(), &dest).exists(), "pre-created in the subfolder");
    first.driver.abort_migration(&req, &h).await.unwrap();
    let end = first.wait_end(&req, &h).await;
    assert!(matches!(end, MigrationStatus::Failed(_)), "{end:?}");
    drop(first);

    let lab = Lab::new();
    let left = lab.left(&req, LeftoverContext::AfterFailedAttempt).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].what, dest);
    lab.driver
        .remove_leftover(&req, &left[0], LeftoverContext::AfterFailedAttempt)
        .await
        .unwrap();
    let remaining: Vec<String> = std::fs::read_dir(outside(b(), &dir))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(remaining.is_empty(), "left in the subfolder: {remaining:?}");
    assert_eq!(virsh(a(), &["domstate", &name]).unwrap(), "running");
    // The driver's transient pool on the subfolder goes with the folder.
    for pool in virsh(b(), &["pool-list", "--name"]).unwrap().lines() {
        let pool = pool.trim();
        if pool.starts_with("vmove-")
            && virsh(b(), &["pool-dumpxml", pool])
                .unwrap_or_default()
                .contains(&format!("<path>{dir}</path>"))
        {
            let _ = virsh(b(), &["pool-destroy", pool]);
        }
    }
    let _ = std::fs::remove_dir(outside(b(), &dir));
    lab.cleanup(&name);
}
