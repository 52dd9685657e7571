//! The checks of the suite and the steps they share (finding a VM, waiting for a migration's
//! end, proving and cleaning up a move). Each check creates the VMs it needs through the
//! fixture, so checks are independent.

use super::fixture::{CheckResult, Fixture, VmShape};
use crate::*;
use std::time::Duration;

/// Ends the check with `Err(message)` unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// The status of a migration is read about this many times within the fixture's migration
/// time-out...
const POLLS_PER_TIMEOUT: u32 = 200;
/// ...but never more often than this.
const MIN_POLL: Duration = Duration::from_millis(50);

/// How soon after a migration ended [`Driver::wait_for_end`] must answer.
const WAIT_FOR_END_GRACE: Duration = Duration::from_secs(30);

/// The memory and disk of the small VM most checks move, MiB.
const SMALL_VM_MIB: u64 = 256;
const SMALL_DISK_MIB: u64 = 64;

/// The memory and disk of the VM the abort and double-start checks move, MiB: large enough that
/// its migration still runs when the check acts on it.
const SLOW_VM_MIB: u64 = 512;
const SLOW_DISK_MIB: u64 = 1024;

/// A VM id no fixture creates (for the "unknown VM" answers).
const UNKNOWN_VM: &str = "00000000-0000-4000-8000-00000000dead";
/// A VM id no fixture creates (for a start that must fail).
const MISSING_VM: &str = "00000000-0000-4000-8000-0000000beef0";

fn shape(name: &str, running: bool) -> VmShape {
    VmShape {
        name: name.into(),
        running,
        memory_mib: SMALL_VM_MIB,
        disks_mib: vec![SMALL_DISK_MIB],
    }
}

/// Finds the VM on a host by id.
async fn find(f: &dyn Fixture, host: &HostId, vm: &VmId) -> Result<Option<VmInfo>, String> {
    let vms = f
        .driver()
        .list_vms(host)
        .await
        .map_err(|e| format!("list_vms({host}) failed: {e}"))?;
    Ok(vms.into_iter().find(|v| &v.id == vm))
}

/// A request to move `vm` from the fixture's source to its destination.
async fn request(
    f: &dyn Fixture,
    vm: &VmId,
    mode: MigrationMode,
    attempt: u32,
) -> Result<MigrationRequest, String> {
    let src = f.source();
    let info = find(f, &src, vm)
        .await?
        .ok_or_else(|| format!("the VM {vm} the fixture created is not listed on {src}"))?;
    Ok(MigrationRequest {
        vm: vm.clone(),
        vm_name: info.name,
        source: src,
        destination: f.destination(),
        mode,
        layout: f.layout(),
        attempt,
        run_id: "conformance".into(),
    })
}

/// Polls the status until it is no longer pending or running; `Err` on timeout.
async fn wait_end(
    f: &dyn Fixture,
    req: &MigrationRequest,
    h: &MigrationHandle,
) -> Result<MigrationStatus, String> {
    let timeout = f.migration_timeout();
    let step = (timeout / POLLS_PER_TIMEOUT).max(MIN_POLL);
    let mut waited = Duration::ZERO;
    loop {
        match f.driver().migration_status(req, h).await {
            Ok(MigrationStatus::Pending | MigrationStatus::Running(_)) => {}
            Ok(end) => return Ok(end),
            Err(e) => {
                ensure!(
                    e.class != ErrorClass::Indeterminate,
                    "migration_status is read-only but returned an indeterminate error: {e}"
                );
            }
        }
        ensure!(
            waited < timeout,
            "the migration of {} did not end within {timeout:?}",
            req.vm_name
        );
        f.sleep(step).await;
        waited += step;
    }
}

/// After a migration ended as `end` (read by polling), [`Driver::wait_for_end`] must answer at
/// once, and with the same kind of end (or `None`: the driver does not push).
async fn wait_for_end_agrees(
    f: &dyn Fixture,
    req: &MigrationRequest,
    h: &MigrationHandle,
    end: &MigrationStatus,
) -> CheckResult {
    let waited = tokio::time::timeout(WAIT_FOR_END_GRACE, f.driver().wait_for_end(req, h))
        .await
        .map_err(|_| {
            format!(
                "wait_for_end did not answer within {} s of the migration of {} ending",
                WAIT_FOR_END_GRACE.as_secs(),
                req.vm_name
            )
        })?;
    match waited {
        None => Ok(()),
        Some(Err(e)) => Err(format!(
            "wait_for_end failed after the migration ended: {e}"
        )),
        Some(Ok(pushed)) => {
            ensure!(
                std::mem::discriminant(&pushed) == std::mem::discriminant(end),
                "wait_for_end says {pushed:?} but the status reads {end:?}"
            );
            Ok(())
        }
    }
}

/// Moves `vm` in `mode` (attempt 1) and checks that it arrived: the migration completes, the
/// driver's [`Driver::wait_for_end`] agrees with its polls, and the VM is listed on the
/// destination in the power state its mode keeps (running after a live move, off after an
/// offline one) and no longer on the source. `what` names the VM in the errors. The request,
/// for the proof and the clean-up that follow.
async fn move_and_see_it_arrive(
    f: &dyn Fixture,
    vm: &VmId,
    mode: MigrationMode,
    what: &str,
) -> Result<MigrationRequest, String> {
    let req = request(f, vm, mode, 1).await?;
    let h = f
        .driver()
        .start_migration(&req)
        .await
        .map_err(|e| format!("start_migration of {what} failed: {e}"))?;
    let end = wait_end(f, &req, &h).await?;
    ensure!(
        end == MigrationStatus::Completed,
        "the {mode:?} migration of {what} ended {end:?}"
    );
    wait_for_end_agrees(f, &req, &h, &end).await?;
    let info = find(f, &f.destination(), vm)
        .await?
        .ok_or_else(|| format!("{what}, moved, is not listed on the destination"))?;
    let live = mode == MigrationMode::Live;
    ensure!(
        info.power.is_live() == live,
        "{what}, moved {mode:?}, is {:?} on the destination",
        info.power
    );
    ensure!(
        find(f, &f.source(), vm).await?.is_none(),
        "{what}, moved {mode:?}, is still listed on the source"
    );
    Ok(req)
}

/// Runs `body` on a fresh VM and destroys the VM afterwards, whatever happened.
async fn with_vm<'a, F, Fut>(f: &'a dyn Fixture, s: VmShape, body: F) -> CheckResult
where
    F: FnOnce(&'a dyn Fixture, VmId) -> Fut,
    Fut: std::future::Future<Output = CheckResult> + 'a,
{
    let vm = f.create_vm(&s).await;
    let r = body(f, vm.clone()).await;
    f.destroy_vm(&vm).await;
    r
}

/// The driver lists the fixture's hosts; `host_info` answers for them and fails for an unknown one.
pub async fn hosts_and_host_info(f: &dyn Fixture) -> CheckResult {
    let d = f.driver();
    let hosts = d.hosts();
    for h in [f.source(), f.destination()] {
        ensure!(hosts.contains(&h), "hosts() does not list {h}");
        let info = d
            .host_info(&h)
            .await
            .map_err(|e| format!("host_info({h}) failed: {e}"))?;
        ensure!(
            info.migration_limit != Some(0),
            "host_info({h}) reports a migration limit of 0"
        );
    }
    let unknown = HostId::new("no-such-host-vmove-conformance");
    ensure!(
        d.host_info(&unknown).await.is_err(),
        "host_info of an unknown host succeeded"
    );
    Ok(())
}

/// A VM the fixture creates shows up in `list_vms` of the source, idle, with its power state.
pub async fn list_vms_shows_created_vm(f: &dyn Fixture) -> CheckResult {
    with_vm(f, shape("conf-list", true), |f, vm| async move {
        let info = find(f, &f.source(), &vm)
            .await?
            .ok_or_else(|| format!("list_vms({}) does not show the new VM {vm}", f.source()))?;
        ensure!(
            info.power.is_live(),
            "a running VM is listed as {:?}",
            info.power
        );
        ensure!(
            info.activity == Activity::Idle,
            "a new VM is listed as {:?}",
            info.activity
        );
        ensure!(
            find(f, &f.destination(), &vm).await?.is_none(),
            "the new VM also shows on the destination"
        );
        Ok(())
    })
    .await
}

/// `footprint` reports memory and disks; an unknown VM is a permanent "not found" error.
pub async fn footprint_and_unknown_vm(f: &dyn Fixture) -> CheckResult {
    let s = VmShape {
        name: "conf-footprint".into(),
        running: true,
        memory_mib: SMALL_VM_MIB,
        disks_mib: vec![SMALL_DISK_MIB, SMALL_DISK_MIB / 2],
    };
    with_vm(f, s, |f, vm| async move {
        let fp = f
            .driver()
            .footprint(&f.source(), &vm)
            .await
            .map_err(|e| format!("footprint failed: {e}"))?;
        ensure!(
            fp.memory_bytes >= SMALL_VM_MIB << 20,
            "footprint memory {} < {SMALL_VM_MIB} MiB",
            fp.memory_bytes
        );
        ensure!(
            fp.disks.len() == 2,
            "footprint lists {} disks, not 2",
            fp.disks.len()
        );
        for d in &fp.disks {
            ensure!(!d.path.is_empty(), "a disk has an empty path");
        }
        let err = f
            .driver()
            .footprint(&f.source(), &VmId::new(UNKNOWN_VM))
            .await
            .err()
            .ok_or("footprint of an unknown VM succeeded")?;
        ensure!(
            err.class == ErrorClass::Permanent,
            "unknown VM gave a {:?} error",
            err.class
        );
        ensure!(
            err.message.to_lowercase().contains("not found"),
            "unknown VM error does not say \"not found\": {}",
            err.message
        );
        Ok(())
    })
    .await
}

/// Checks that the VM is on the destination only and that the source leftovers go away.
async fn prove_and_clean(f: &dyn Fixture, req: &MigrationRequest) -> CheckResult {
    prove_and_clean_leaving(f, req, true).await
}

/// [`prove_and_clean`], where a VM with no disks may leave nothing on the source
/// (`leftovers_expected` false).
async fn prove_and_clean_leaving(
    f: &dyn Fixture,
    req: &MigrationRequest,
    leftovers_expected: bool,
) -> CheckResult {
    let d = f.driver();
    let v = d
        .verify(req)
        .await
        .map_err(|e| format!("verify failed: {e}"))?;
    ensure!(v.is_proof(), "verify after Completed is no proof: {v:?}");
    let loc = d
        .locate(req)
        .await
        .map_err(|e| format!("locate failed: {e}"))?;
    ensure!(
        loc.on_destination.is_some(),
        "locate does not show the VM on the destination"
    );
    ensure!(
        loc.on_source.is_none(),
        "locate still shows the VM on the source: {:?}",
        loc.on_source
    );
    ensure!(
        loc.running_migration.is_none(),
        "locate shows a migration still running"
    );
    let left = d
        .leftovers(req, LeftoverContext::AfterSuccess)
        .await
        .map_err(|e| format!("leftovers failed: {e}"))?;
    ensure!(
        !left.is_empty() || !leftovers_expected,
        "no leftovers on the source after a move (its disk images stay there)"
    );
    for l in &left {
        ensure!(
            l.host == req.source,
            "an AfterSuccess leftover is on {}, not the source",
            l.host
        );
    }
    for l in &left {
        d.remove_leftover(req, l, LeftoverContext::AfterSuccess)
            .await
            .map_err(|e| format!("remove_leftover({}) failed: {e}", l.what))?;
    }
    let again = d
        .leftovers(req, LeftoverContext::AfterSuccess)
        .await
        .map_err(|e| format!("leftovers failed: {e}"))?;
    ensure!(
        again.is_empty(),
        "leftovers remain after removing them: {again:?}"
    );
    let v = d
        .verify(req)
        .await
        .map_err(|e| format!("verify failed: {e}"))?;
    ensure!(
        v.is_proof(),
        "removing the source leftovers broke the destination copy: {v:?}"
    );
    Ok(())
}

/// A live migration completes, is proven, and its source leftovers can be removed.
pub async fn live_migration_end_to_end(f: &dyn Fixture) -> CheckResult {
    with_vm(f, shape("conf-live", true), |f, vm| async move {
        let req = move_and_see_it_arrive(f, &vm, MigrationMode::Live, "the VM").await?;
        prove_and_clean(f, &req).await
    })
    .await
}

/// A shut-off VM moves offline and stays off.
pub async fn offline_migration(f: &dyn Fixture) -> CheckResult {
    with_vm(f, shape("conf-offline", false), |f, vm| async move {
        let req = move_and_see_it_arrive(f, &vm, MigrationMode::Offline, "the VM").await?;
        prove_and_clean(f, &req).await
    })
    .await
}

/// A VM with no disks (a network-booted guest) moves live, and shut off moves offline: each
/// completes, is listed on the destination in its power state and no longer on the source, is
/// proven, and whatever it left on the source can be removed.
pub async fn vm_without_disks_moves(f: &dyn Fixture) -> CheckResult {
    for (running, name, mode) in [
        (true, "conf-nodisk-live", MigrationMode::Live),
        (false, "conf-nodisk-off", MigrationMode::Offline),
    ] {
        let s = VmShape {
            name: name.into(),
            running,
            memory_mib: SMALL_VM_MIB,
            disks_mib: vec![],
        };
        with_vm(f, s, |f, vm| async move {
            let req = move_and_see_it_arrive(f, &vm, mode, "the VM with no disks").await?;
            prove_and_clean_leaving(f, &req, false).await
        })
        .await?;
    }
    Ok(())
}

/// An aborted migration leaves the VM running on the source only; what it left on the
/// destination is listed and removable.
pub async fn abort_leaves_vm_on_source(f: &dyn Fixture) -> CheckResult {
    let s = VmShape {
        name: "conf-abort".into(),
        running: true,
        memory_mib: SLOW_VM_MIB,
        disks_mib: vec![SLOW_DISK_MIB],
    };
    with_vm(f, s, |f, vm| async move {
        let d = f.driver();
        let req = request(f, &vm, MigrationMode::Live, 1).await?;
        let h = d.start_migration(&req).await.map_err(|e| format!("start_migration failed: {e}"))?;
        d.abort_migration(&req, &h).await.map_err(|e| format!("abort_migration failed: {e}"))?;
        let end = wait_end(f, &req, &h).await?;
        ensure!(
            matches!(end, MigrationStatus::Failed(_)),
            "an aborted migration ended {end:?} (make the fixture's abort VM slower to move)"
        );
        wait_for_end_agrees(f, &req, &h, &end).await?;
        d.abort_migration(&req, &h).await.map_err(|e| format!("aborting an ended migration failed: {e}"))?;
        let on_src = find(f, &f.source(), &vm).await?.ok_or("after an abort the VM is not on the source")?;
        ensure!(on_src.power.is_live(), "after an abort the VM is {:?} on the source", on_src.power);
        ensure!(on_src.activity == Activity::Idle, "after an abort the VM is {:?}", on_src.activity);
        let loc = d.locate(&req).await.map_err(|e| format!("locate failed: {e}"))?;
        ensure!(loc.on_source.is_some(), "locate does not show the VM on the source after an abort");
        ensure!(
            loc.on_destination.as_ref().is_none_or(|v| !v.power.is_live()),
            "after an abort the VM runs on the destination too"
        );
        ensure!(loc.running_migration.is_none(), "locate shows the aborted migration still running");
        let v = d.verify(&req).await.map_err(|e| format!("verify failed: {e}"))?;
        ensure!(!v.is_proof(), "verify proves a move that was aborted");
        let left = d
            .leftovers(&req, LeftoverContext::AfterFailedAttempt)
            .await
            .map_err(|e| format!("leftovers failed: {e}"))?;
        for l in &left {
            ensure!(l.host == req.destination, "an AfterFailedAttempt leftover is on {}", l.host);
            d.remove_leftover(&req, l, LeftoverContext::AfterFailedAttempt)
                .await
                .map_err(|e| format!("remove_leftover({}) failed: {e}", l.what))?;
        }
        let again = d
            .leftovers(&req, LeftoverContext::AfterFailedAttempt)
            .await
            .map_err(|e| format!("leftovers failed: {e}"))?;
        ensure!(again.is_empty(), "leftovers remain after removing them: {again:?}");
        let success_side = d
            .leftovers(&req, LeftoverContext::AfterSuccess)
            .await
            .map_err(|e| format!("leftovers failed: {e}"))?;
        ensure!(
            success_side.is_empty(),
            "the VM's own files on the source are listed as leftovers while it runs there: {success_side:?}"
        );
        ensure!(
            find(f, &f.source(), &vm).await?.is_some_and(|v| v.power.is_live()),
            "removing the destination leftovers touched the VM on the source"
        );
        Ok(())
    })
    .await
}

/// Starting a migration of a VM that does not exist fails (permanently), touching nothing.
pub async fn start_on_missing_vm_fails(f: &dyn Fixture) -> CheckResult {
    let req = MigrationRequest {
        vm: VmId::new(MISSING_VM),
        vm_name: "conf-missing".into(),
        source: f.source(),
        destination: f.destination(),
        mode: MigrationMode::Live,
        layout: f.layout(),
        attempt: 1,
        run_id: "conformance".into(),
    };
    let err = f
        .driver()
        .start_migration(&req)
        .await
        .err()
        .ok_or("starting a migration of a missing VM succeeded")?;
    ensure!(
        err.class == ErrorClass::Permanent,
        "a missing VM gave a {:?} error: {err}",
        err.class
    );
    Ok(())
}

/// A destination path that already holds a file makes the start fail with
/// `DestinationRefused`, and nothing changes. Skipped (passes) when the fixture cannot occupy
/// a path.
pub async fn destination_path_taken_is_refused(f: &dyn Fixture) -> CheckResult {
    with_vm(f, shape("conf-clash", true), |f, vm| async move {
        if !f.occupy_destination_path(&vm).await {
            return Ok(());
        }
        let d = f.driver();
        let req = request(f, &vm, MigrationMode::Live, 1).await?;
        let err = d
            .start_migration(&req)
            .await
            .err()
            .ok_or("a migration onto an occupied destination path was accepted")?;
        ensure!(
            err.class == ErrorClass::DestinationRefused,
            "an occupied destination path gave a {:?} error: {err}",
            err.class
        );
        let info = find(f, &f.source(), &vm).await?.ok_or("after a refused start the VM left the source")?;
        ensure!(info.activity == Activity::Idle, "after a refused start the VM is {:?}", info.activity);
        ensure!(find(f, &f.destination(), &vm).await?.is_none(), "a refused start left the VM on the destination");
        let loc = d.locate(&req).await.map_err(|e| format!("locate failed: {e}"))?;
        ensure!(loc.running_migration.is_none(), "a refused start left a migration running");
        let left = d
            .leftovers(&req, LeftoverContext::AfterFailedAttempt)
            .await
            .map_err(|e| format!("leftovers failed: {e}"))?;
        ensure!(
            left.is_empty(),
            "a refused start left files on the destination, or the occupying file is listed as the VM's: {left:?}"
        );
        Ok(())
    })
    .await
}

/// What a host shows of its VMs, for telling whether a call changed anything: each VM's
/// identity, power state and activity, sorted.
async fn host_picture(f: &dyn Fixture, host: &HostId) -> Result<Vec<String>, String> {
    let vms = f
        .driver()
        .list_vms(host)
        .await
        .map_err(|e| format!("list_vms({host}) failed: {e}"))?;
    let mut out: Vec<String> = vms
        .into_iter()
        .map(|v| format!("{} {} {:?} {:?}", v.id, v.name, v.power, v.activity))
        .collect();
    out.sort();
    Ok(out)
}

/// Pre-flight reads only: for a plain VM, live and offline-shaped requests, it finds no blocker
/// for the mode the VM is in, and neither host's VMs nor the VM's footprint change; an unknown
/// VM is a `Permanent` error that says "not found".
pub async fn preflight_reads_only(f: &dyn Fixture) -> CheckResult {
    with_vm(f, shape("conf-preflight", true), |f, vm| async move {
        let d = f.driver();
        let before = (
            host_picture(f, &f.source()).await?,
            host_picture(f, &f.destination()).await?,
            d.footprint(&f.source(), &vm)
                .await
                .map_err(|e| format!("footprint failed: {e}"))?,
        );
        let req = request(f, &vm, MigrationMode::Live, 1).await?;
        let found = d
            .preflight(&req)
            .await
            .map_err(|e| format!("preflight of a plain running VM failed: {e}"))?;
        ensure!(
            found.is_clear(),
            "preflight blocks a plain running VM's live move: {}",
            found.reason()
        );
        // Asked twice, and for the mode that does not fit: still reads only.
        let _ = d.preflight(&req).await;
        let offline = MigrationRequest {
            mode: MigrationMode::Offline,
            ..req.clone()
        };
        let _ = d.preflight(&offline).await;
        let _ = d.preflight_host(&f.source()).await;
        let _ = d.preflight_host(&f.destination()).await;
        let after = (
            host_picture(f, &f.source()).await?,
            host_picture(f, &f.destination()).await?,
            d.footprint(&f.source(), &vm)
                .await
                .map_err(|e| format!("footprint after preflight failed: {e}"))?,
        );
        ensure!(
            before == after,
            "preflight changed something: before {before:?}, after {after:?}"
        );
        let left = d
            .leftovers(&req, LeftoverContext::AfterFailedAttempt)
            .await
            .map_err(|e| format!("leftovers failed: {e}"))?;
        ensure!(
            left.is_empty(),
            "preflight left something on the destination: {left:?}"
        );
        let unknown = MigrationRequest {
            vm: VmId::new(UNKNOWN_VM),
            vm_name: "conf-no-such-vm".into(),
            ..req
        };
        let err = d
            .preflight(&unknown)
            .await
            .err()
            .ok_or("preflight of an unknown VM succeeded")?;
        ensure!(
            err.class == ErrorClass::Permanent && err.message.to_lowercase().contains("not found"),
            "preflight of an unknown VM gave a {:?} error not saying \"not found\": {err}",
            err.class
        );
        Ok(())
    })
    .await
}

/// Pre-flight names a destination path that already holds a file as a blocker about that
/// destination, before any start is tried (fixtures that cannot occupy a path skip it).
pub async fn preflight_names_a_taken_destination_path(f: &dyn Fixture) -> CheckResult {
    with_vm(f, shape("conf-preclash", true), |f, vm| async move {
        if !f.occupy_destination_path(&vm).await {
            return Ok(());
        }
        let req = request(f, &vm, MigrationMode::Live, 1).await?;
        let found = f
            .driver()
            .preflight(&req)
            .await
            .map_err(|e| format!("preflight failed: {e}"))?;
        ensure!(
            found
                .blockers
                .iter()
                .any(|b| b.scope == FindingScope::Destination),
            "preflight does not block a route whose destination path is taken: {found:?}"
        );
        ensure!(
            find(f, &f.destination(), &vm).await?.is_none(),
            "preflight put the VM on the destination"
        );
        Ok(())
    })
    .await
}

/// A second start for a VM already migrating fails; the first migration is unharmed.
pub async fn already_migrating_is_refused(f: &dyn Fixture) -> CheckResult {
    let s = VmShape {
        name: "conf-twice".into(),
        running: true,
        memory_mib: SLOW_VM_MIB,
        disks_mib: vec![SLOW_DISK_MIB],
    };
    with_vm(f, s, |f, vm| async move {
        let d = f.driver();
        let req = request(f, &vm, MigrationMode::Live, 1).await?;
        let h = d
            .start_migration(&req)
            .await
            .map_err(|e| format!("start_migration failed: {e}"))?;
        let second = MigrationRequest {
            attempt: 2,
            ..req.clone()
        };
        let r = d.start_migration(&second).await;
        let status = d.migration_status(&req, &h).await;
        let _ = d.abort_migration(&req, &h).await;
        let _ = wait_end(f, &req, &h).await;
        let left = d
            .leftovers(&req, LeftoverContext::AfterFailedAttempt)
            .await
            .unwrap_or_default();
        for l in &left {
            let _ = d
                .remove_leftover(&req, l, LeftoverContext::AfterFailedAttempt)
                .await;
        }
        let err = r
            .err()
            .ok_or("a second migration of a VM already migrating was accepted")?;
        ensure!(
            err.class != ErrorClass::Indeterminate,
            "a refused second start gave an indeterminate error: {err}"
        );
        ensure!(
            matches!(
                status,
                Ok(MigrationStatus::Pending
                    | MigrationStatus::Running(_)
                    | MigrationStatus::Completed)
            ),
            "the refused second start harmed the first migration: {status:?}"
        );
        Ok(())
    })
    .await
}
