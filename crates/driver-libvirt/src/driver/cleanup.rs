//! What a move leaves behind ([`Driver::leftovers`]) and its removal
//! ([`Driver::remove_leftover`]): after a success, the source's definition, files and emptied
//! folders; after a failed attempt, the destination's images vmove proves it created.

use super::paths::{file_name, folder, marker_folders};
use super::recovery::{runs_this_attempts_copy, source_superseded};
use super::state::{Inner, blocking};
use crate::error::{Phase, from_virt};
use crate::ffi;
use crate::host::{self, Host, describe, find_domain, read_err, vol_at};
use crate::provenance;
use crate::xml;
use virt::connect::Connect;
use virt::sys;
use vmove_driver::*;

/// [`Driver::leftovers`]: what the move left on the host `context` names (a blocking read).
pub(super) async fn leftovers(
    inner: &Inner,
    req: &MigrationRequest,
    context: LeftoverContext,
) -> DriverResult<Vec<Leftover>> {
    let src = inner.host(&req.source)?;
    let dst = inner.host(&req.destination)?;
    let req2 = req.clone();
    let created = inner.created_on(&req.vm, &req.destination);
    blocking(Phase::Read, move || {
        leftovers_sync(&src, &dst, &req2, context, &created)
    })
    .await
}

/// [`Driver::remove_leftover`]: removes one leftover after re-checking that it is one; an image
/// this process created is forgotten once removed.
pub(super) async fn remove_leftover(
    inner: &std::sync::Arc<Inner>,
    req: &MigrationRequest,
    leftover: &Leftover,
    context: LeftoverContext,
) -> DriverResult<()> {
    let src = inner.host(&req.source)?;
    let dst = inner.host(&req.destination)?;
    let inner = inner.clone();
    let (req2, lo) = (req.clone(), leftover.clone());
    let created = inner.created_on(&req.vm, &req.destination);
    blocking(Phase::Change, move || {
        let r = remove_sync(&src, &dst, &req2, &lo, context, &created);
        if r.is_ok() && lo.kind == LeftoverKind::DiskImage {
            inner.forget_created(&req2.vm, &lo.host, &lo.what);
        }
        r
    })
    .await
}

fn leftovers_sync(
    src: &Host,
    dst: &Host,
    req: &MigrationRequest,
    context: LeftoverContext,
    created: &[String],
) -> DriverResult<Vec<Leftover>> {
    let dconn = dst.conn()?;
    let ddom = find_domain(&dconn, &req.vm)?;
    let mut out = Vec::new();
    match context {
        LeftoverContext::AfterSuccess => {
            let Some(ddom) = ddom else { return Ok(out) };
            let (_, desc) = describe(&ddom, 0)?;
            let Some(prov) = desc.provenance else {
                return Ok(out);
            };
            let sconn = src.conn()?;
            let mut pools = host::Pools::default();
            let in_use = match find_domain(&sconn, &req.vm)? {
                Some(sdom) => {
                    if sdom.is_active().unwrap_or(true)
                        && !(req.mode == MigrationMode::Live
                            && host::interrupted_migration(&sdom)?
                            && runs_this_attempts_copy(&dconn, req)?.is_ok())
                    {
                        return Ok(out); // Running on the source: nothing there is a leftover.
                    }
                    // (Or paused there by this attempt's interrupted migration, whose copy runs
                    // on the destination: the definition, listed first, is stopped and removed
                    // as Confirm would have.)
                    if req.mode == MigrationMode::Offline
                        && let Err(why) = source_superseded(&sconn, &sdom, Some(&prov), req)?
                    {
                        return Err(DriverError::permanent(format!(
                            "VM {} is still defined on {} and {why}: nothing of it there is a leftover",
                            req.vm_name, req.source
                        )));
                    }
                    out.push(Leftover {
                        host: req.source.clone(),
                        kind: LeftoverKind::Definition,
                        what: prov.source_name.clone(),
                    });
                    // Listed first, so removed before its files: they are not kept by it.
                    host::paths_in_use_by_others(&sconn, &req.vm, &mut pools)?
                }
                None => host::paths_in_use(&sconn, &mut pools)?,
            };
            let mut files = Vec::new();
            for f in &prov.files {
                if !in_use.contains(f) && pools.vol_at(&sconn, f)?.is_some() {
                    files.push(f.clone());
                    out.push(Leftover {
                        host: req.source.clone(),
                        kind: LeftoverKind::DiskImage,
                        what: f.clone(),
                    });
                }
            }
            // A UEFI VM's NVRAM file, whose content the live move carried: listed with the
            // disks (removed the same way), but its folder (libvirt's nvram folder) is not one
            // of the VM's to empty.
            if let Some(nv) = &prov.nvram
                && !in_use.contains(nv)
                && pools.vol_at(&sconn, nv)?.is_some()
            {
                out.push(Leftover {
                    host: req.source.clone(),
                    kind: LeftoverKind::DiskImage,
                    what: nv.clone(),
                });
            }
            for l in &prov.logs {
                if !in_use.contains(l) && pools.vol_at(&sconn, l)?.is_some() {
                    files.push(l.clone());
                    out.push(Leftover {
                        host: req.source.clone(),
                        kind: LeftoverKind::LogFile,
                        what: l.clone(),
                    });
                }
            }
            // Folders of the VM's disks that hold nothing else (never a pool of the host's own).
            let mut dirs: Vec<String> = prov.files.iter().map(|f| folder(f)).collect();
            dirs.sort();
            dirs.dedup();
            for d in dirs {
                if protected_folder(&sconn, src, &d)? {
                    continue;
                }
                let Some(pool) = host::dir_pool(&sconn, &d, false)? else {
                    continue;
                };
                let vols = pool
                    .list_volumes()
                    .map_err(read_err("cannot list a folder"))?;
                if vols
                    .iter()
                    .all(|v| files.contains(&format!("{}/{v}", d.trim_end_matches('/'))))
                {
                    out.push(Leftover {
                        host: req.source.clone(),
                        kind: LeftoverKind::EmptyFolder,
                        what: d,
                    });
                }
            }
        }
        LeftoverContext::AfterFailedAttempt => {
            if let Some(d) = &ddom {
                if d.is_active().unwrap_or(true) {
                    return Ok(out); // It runs there: nothing of it is a leftover.
                }
                let (_, desc) = describe(d, 0)?;
                if desc
                    .provenance
                    .is_some_and(|p| p.source_host == req.source.as_str())
                {
                    out.push(Leftover {
                        host: req.destination.clone(),
                        kind: LeftoverKind::Definition,
                        what: desc.name,
                    });
                }
            }
            let mut pools = host::Pools::default();
            let in_use = host::paths_in_use(&dconn, &mut pools)?;
            // The images this process created, and those the destination proves a process
            // (this one or one before a crash) pre-created for this VM.
            let found = provenance::scan(&dconn, &marker_folders(&dconn, dst, req)?, &req.vm)?;
            let mut images: Vec<String> = created.to_vec();
            for p in found.images {
                if !images.contains(&p) {
                    images.push(p);
                }
            }
            for p in &images {
                if !in_use.contains(p) && pools.vol_at(&dconn, p)?.is_some() {
                    out.push(Leftover {
                        host: req.destination.clone(),
                        kind: LeftoverKind::DiskImage,
                        what: p.clone(),
                    });
                }
            }
            // Markers whose image is gone (a crash between marker and image, or between
            // removing the image and its marker).
            for m in found.orphans {
                out.push(Leftover {
                    host: req.destination.clone(),
                    kind: LeftoverKind::DiskImage,
                    what: m,
                });
            }
        }
    }
    Ok(out)
}

/// The most vmove reads of an NVRAM file to compare it (OVMF's are 128 or 528 KiB, AAVMF's on
/// ARM 64 MiB).
const NVRAM_READ_LIMIT: u64 = 128 << 20;

/// Whether the destination's NVRAM file (`dest_path`, the moved VM's, which runs there if
/// `running`) holds the content of the source's at `path`, byte for byte: else the source's is
/// not removed, with the reason.
fn nvram_carried(
    sconn: &Connect,
    dconn: &Connect,
    req: &MigrationRequest,
    path: &str,
    dest_path: Option<&str>,
    running: bool,
) -> DriverResult<()> {
    let Some(source) = host::read_small_file(sconn, path, NVRAM_READ_LIMIT)? else {
        return Ok(()); // Already gone.
    };
    let dest = match dest_path {
        Some(d) => host::read_small_file(dconn, d, NVRAM_READ_LIMIT)?,
        None => None,
    };
    if dest.as_ref() == Some(&source) {
        return Ok(());
    }
    if running && dest.is_some() {
        // It ran there (QEMU wrote the moved content as it started) and may have written its
        // variables since: which file is newer is for a person to tell.
        return Err(DriverError::permanent(format!(
            "the NVRAM file {path} of VM {} is kept on {}: the destination's ({} on {}) differs from it; VM {} runs there and may have changed its UEFI variables since the move: compare the two, then remove this file",
            req.vm_name,
            req.source,
            dest_path.unwrap_or_default(),
            req.destination,
            req.vm_name
        )));
    }
    Err(DriverError::permanent(format!(
        "the NVRAM file {path} of VM {} is kept on {}: the destination's ({} on {}) does not hold its content yet (QEMU writes a moved VM's NVRAM into its file when the VM runs there; a VM moved paused has it in memory only): resume the VM on {}, then remove this file",
        req.vm_name,
        req.source,
        dest_path.unwrap_or("no NVRAM file"),
        req.destination,
        req.destination
    )))
}

/// A folder that is the target of a pool other than our transient ones, or the configured
/// destination base: never removed.
fn protected_folder(conn: &Connect, h: &Host, dir: &str) -> DriverResult<bool> {
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() || h.cfg.path.as_deref().map(|p| p.trim_end_matches('/')) == Some(dir) {
        return Ok(true);
    }
    if let Ok(p) = conn.lookup_storage_pool_by_target_path(dir) {
        let name = p.name().unwrap_or_default();
        return Ok(!name.starts_with("vmove-"));
    }
    Ok(false)
}

fn remove_sync(
    src: &Host,
    dst: &Host,
    req: &MigrationRequest,
    lo: &Leftover,
    context: LeftoverContext,
    created: &[String],
) -> DriverResult<()> {
    let h = if lo.host == req.source {
        src
    } else if lo.host == req.destination {
        dst
    } else {
        return Err(DriverError::permanent(format!(
            "leftover on {} belongs to neither host of the move",
            lo.host
        )));
    };
    let conn = h.conn()?;
    // The VM must not run on the host we clean; the one exception is the source copy this
    // attempt's migration left paused between Finish and Confirm, once the destination runs
    // this attempt's copy: its definition is stopped, then removed (what Confirm does).
    if let Some(d) = find_domain(&conn, &req.vm)?
        && d.is_active().unwrap_or(true)
    {
        let confirmable = context == LeftoverContext::AfterSuccess
            && lo.host == req.source
            && lo.kind == LeftoverKind::Definition
            && req.mode == MigrationMode::Live
            && host::interrupted_migration(&d)?;
        if !confirmable {
            return Err(DriverError::permanent(format!(
                "VM {} runs on {}: its files are not leftovers",
                req.vm_name, lo.host
            )));
        }
        let dconn = dst.conn()?;
        if let Err(why) = runs_this_attempts_copy(&dconn, req)? {
            return Err(DriverError::permanent(format!(
                "VM {} is paused on {} by an interrupted migration, and {why}: not stopping it",
                req.vm_name, lo.host
            )));
        }
        tracing::info!(vm = %req.vm_name, host = %lo.host, "stopping the source copy an interrupted migration left paused (its destination copy runs)");
        d.destroy()
            .map_err(|e| from_virt(&e, "cannot stop the VM's paused source copy", Phase::Change))?;
    }
    match context {
        LeftoverContext::AfterSuccess if lo.host != req.source => {
            return Err(DriverError::permanent(
                "after a success, only the source is cleaned",
            ));
        }
        LeftoverContext::AfterSuccess => {
            // The proof must still hold: the VM is on the destination.
            let dconn = dst.conn()?;
            let Some(ddom) = find_domain(&dconn, &req.vm)? else {
                return Err(DriverError::permanent(format!(
                    "VM {} is not on {}: not removing anything of it on {}",
                    req.vm_name, req.destination, req.source
                )));
            };
            // A UEFI VM's NVRAM file: only once the destination's file holds its content.
            // QEMU writes the moved content into the destination's file when the VM runs
            // there (`postload_update_cb`, a VM state handler, in `hw/block/pflash_cfi01.c`):
            // a VM moved while paused, and not run since, has it in memory only.
            if lo.kind == LeftoverKind::DiskImage {
                let (_, ddesc) = describe(&ddom, 0)?;
                if ddesc
                    .provenance
                    .as_ref()
                    .and_then(|p| p.nvram.as_ref())
                    .is_some_and(|nv| *nv == lo.what)
                {
                    let running =
                        ffi::state(&ddom).is_ok_and(|(st, _)| st as u32 == sys::VIR_DOMAIN_RUNNING);
                    nvram_carried(
                        &conn,
                        &dconn,
                        req,
                        &lo.what,
                        ddesc.nvram.as_deref(),
                        running,
                    )?;
                }
            }
            // Offline and still defined on the source (vmove stopped between the define on
            // the destination and the undefine on the source): only while the source is
            // unchanged since the copy.
            if req.mode == MigrationMode::Offline
                && let Some(sdom) = find_domain(&conn, &req.vm)?
            {
                let (_, ddesc) = describe(&ddom, 0)?;
                if let Err(why) = source_superseded(&conn, &sdom, ddesc.provenance.as_ref(), req)? {
                    return Err(DriverError::permanent(format!(
                        "VM {} is still defined on {} and {why}: not removing anything of it there",
                        req.vm_name, req.source
                    )));
                }
            }
        }
        LeftoverContext::AfterFailedAttempt => {
            if lo.host != req.destination {
                return Err(DriverError::permanent(
                    "after a failed attempt, only the destination is cleaned",
                ));
            }
            if lo.kind == LeftoverKind::DiskImage {
                if provenance::is_marker_of(&file_name(&lo.what), &req.vm) {
                    // A provenance marker of this VM: it goes once its image is gone.
                    if !provenance::is_orphan(&conn, &lo.what, &req.vm)? {
                        return Err(DriverError::permanent(format!(
                            "{} still marks an image on {}: not removing it before the image",
                            lo.what, lo.host
                        )));
                    }
                    return match vol_at(&conn, &lo.what)? {
                        Some(v) => v.delete(0).map_err(|e| {
                            from_virt(&e, &format!("cannot remove {}", lo.what), Phase::Change)
                        }),
                        None => Ok(()),
                    };
                }
                if !created.contains(&lo.what) && !provenance::proven(&conn, &lo.what, &req.vm)? {
                    return Err(DriverError::permanent(format!(
                        "{} was not created by vmove for VM {} (not in this process's record, no provenance marker of it on {}): not removing it",
                        lo.what, req.vm_name, lo.host
                    )));
                }
            }
        }
    }
    let del_err = |what: &str| {
        let w = what.to_owned();
        move |e: virt::error::Error| from_virt(&e, &format!("cannot remove {w}"), Phase::Change)
    };
    match lo.kind {
        LeftoverKind::DiskImage | LeftoverKind::LogFile => {
            // One refresh of each folder, within this call, serves the check and the removal.
            let mut pools = host::Pools::default();
            if host::paths_in_use(&conn, &mut pools)?.contains(&lo.what) {
                return Err(DriverError::permanent(format!(
                    "{} is used by a VM on {}",
                    lo.what, lo.host
                )));
            }
            // (Already gone: nothing to delete.)
            if let Some(v) = pools.vol_at(&conn, &lo.what)? {
                v.delete(0).map_err(del_err(&lo.what))?;
            }
            // The image first, then its provenance marker (a crash in between leaves an orphan
            // marker, listed and removed next time; never an image no process can prove).
            if context == LeftoverContext::AfterFailedAttempt && lo.kind == LeftoverKind::DiskImage
            {
                provenance::unmark(&conn, &lo.what, &req.vm)?;
            }
            Ok(())
        }
        LeftoverKind::Definition => {
            let Some(d) = find_domain(&conn, &req.vm)? else {
                return Ok(());
            };
            if d.is_active().unwrap_or(true) {
                return Err(DriverError::permanent("the definition's VM runs"));
            }
            // A UEFI VM's NVRAM file stays (libvirt refuses a plain undefine of a VM that has
            // one, "cannot undefine domain with nvram"): it is a leftover of its own, removed
            // under the same checks as the disks.
            d.undefine_flags(sys::VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
                .map_err(del_err(&lo.what))
        }
        LeftoverKind::EmptyFolder => {
            if protected_folder(&conn, h, &lo.what)? {
                return Err(DriverError::permanent(format!(
                    "{} is a storage pool's folder: kept",
                    lo.what
                )));
            }
            // Our transient pool on it goes first (two pools may not share a folder).
            if let Ok(p) = conn.lookup_storage_pool_by_target_path(lo.what.trim_end_matches('/'))
                && p.name().unwrap_or_default().starts_with("vmove-")
            {
                let _ = p.destroy();
            }
            let name = format!("{}-rm", host::transient_pool_name(&lo.what));
            let pool_xml = format!(
                "<pool type='dir'><name>{name}</name><target><path>{}</path></target></pool>",
                xml::escape(lo.what.trim_end_matches('/'))
            );
            let pool = conn
                .define_storage_pool_xml(&pool_xml, 0)
                .map_err(del_err(&lo.what))?;
            // rmdir: fails when the folder is not empty, which is the re-check we want.
            let r = pool.delete(0).map_err(del_err(&lo.what));
            let _ = pool.undefine();
            r
        }
    }
}
