//! The proofs and the roll-back that settle a move its client left unfinished: an offline move
//! cut between the destination's define and the source's undefine, and a live migration left
//! between its steps (the source "paused (migrating)"). docs/drivers/libvirt.md tells the whole
//! story ("Crash windows of an offline move", "Recovery after a killed client"); the comments
//! where `verify.rs` and `cleanup.rs` use these only name the case.

use super::offline::describe_facts;
use crate::error::{Phase, from_virt};
use crate::ffi;
use crate::host::{self, Host, describe, find_domain, read_err};
use crate::xml::{FileFacts, Provenance};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;
use vmove_driver::*;

/// Whether the source's disk files are still those an offline copy was taken from, as the
/// destination's provenance recorded them when the copy ended: the same files (`files_now`,
/// every file of every chain of the source definition), each of the recorded size and
/// modification and change times (`facts`: a file's facts now, `None` when it is gone).
/// `Ok(Err(why))` when anything differs or cannot be compared.
pub(super) fn unchanged_since_copy(
    prov: &Provenance,
    files_now: &[String],
    facts: impl Fn(&str) -> DriverResult<Option<FileFacts>>,
) -> DriverResult<Result<(), String>> {
    let mut now: Vec<&String> = files_now.iter().collect();
    let mut copied: Vec<&String> = prov.files.iter().collect();
    now.sort();
    now.dedup();
    copied.sort();
    copied.dedup();
    if now != copied {
        return Ok(Err(format!(
            "the source's disk files are now {now:?}, the copy was of {copied:?}"
        )));
    }
    if prov.sources.is_empty() {
        return Ok(Err("the destination's provenance records no size and change time of the source's disk files (a live move's, or an older vmove's): nothing proves the source unchanged since the copy".into()));
    }
    // The disks, and a UEFI VM's NVRAM file copied with them (a start of the VM writes it).
    let copied = (prov.files.iter().map(|f| ("disk", f)))
        .chain(prov.nvram.iter().map(|f| ("NVRAM file", f)));
    for (what, f) in copied {
        let Some(then) = prov.sources.iter().find(|s| &s.path == f) else {
            return Ok(Err(format!(
                "the destination's provenance records no size and change time of source {what} {f}"
            )));
        };
        if then.ctime.is_none() {
            return Ok(Err(format!(
                "libvirt reported no change time of source {what} {f} when it was copied: nothing proves it unchanged since"
            )));
        }
        match facts(f)? {
            None => return Ok(Err(format!("source {what} {f} is gone"))),
            Some(n) if &n != then => {
                return Ok(Err(format!(
                    "source {what} {f} changed after its copy ({}, now {})",
                    describe_facts(then),
                    describe_facts(&n)
                )));
            }
            Some(_) => {}
        }
    }
    Ok(Ok(()))
}

/// After an offline move that left the VM defined on both hosts (vmove stopped between the
/// define on the destination and the undefine on the source): whether the destination's
/// definition is vmove's copy of this very source definition, shut off and unchanged since
/// the copy, so that the source's definition and files are leftovers. `Ok(Err(why))` when
/// not proven: then nothing of the source may go.
pub(super) fn source_superseded(
    sconn: &Connect,
    sdom: &Domain,
    prov: Option<&Provenance>,
    req: &MigrationRequest,
) -> DriverResult<Result<(), String>> {
    let Some(prov) = prov else {
        return Ok(Err(format!(
            "the definition on {} carries no vmove provenance: nothing proves it a copy of the one on {}",
            req.destination, req.source
        )));
    };
    if prov.source_host != req.source.as_str() {
        return Ok(Err(format!(
            "the definition on {} is a copy from {}, not from {}",
            req.destination, prov.source_host, req.source
        )));
    }
    let (state, _) = ffi::state(sdom).map_err(read_err("cannot read the VM's state"))?;
    if state as u32 != sys::VIR_DOMAIN_SHUTOFF {
        return Ok(Err(format!("the VM is not shut off on {}", req.source)));
    }
    if sdom.has_managed_save(0).unwrap_or(true) {
        return Ok(Err(format!(
            "the VM has a saved state on {} (started after the copy)",
            req.source
        )));
    }
    let (_, desc) = describe(sdom, sys::VIR_DOMAIN_XML_INACTIVE)?;
    if desc.name != prov.source_name {
        return Ok(Err(format!(
            "the VM is named {} on {}, the copy was of {}",
            desc.name, req.source, prov.source_name
        )));
    }
    let mut files_now = Vec::new();
    for d in host::disks_of(sconn, &desc)? {
        files_now.push(d.path);
        files_now.extend(d.backing_chain);
    }
    unchanged_since_copy(prov, &files_now, |f| host::file_facts(sconn, f))
}

/// Whether the destination runs the copy THIS attempt made (`Ok(Ok(()))`), or why not: its
/// domain of the VM's UUID runs (not paused), is persistent, and carries vmove's provenance
/// record naming this source host, this run and this attempt. The proof that lets a source copy
/// left paused by an interrupted migration (see [`host::interrupted_migration`]) be stopped as
/// Confirm would: the destination ran Finish of this very migration.
pub(super) fn runs_this_attempts_copy(
    dconn: &Connect,
    req: &MigrationRequest,
) -> DriverResult<Result<(), String>> {
    let Some(d) = find_domain(dconn, &req.vm)? else {
        return Ok(Err(format!(
            "VM {} is not on {}",
            req.vm_name, req.destination
        )));
    };
    let (state, _) = ffi::state(&d).map_err(read_err("cannot read the VM's state"))?;
    if state as u32 != sys::VIR_DOMAIN_RUNNING {
        return Ok(Err(format!(
            "VM {} does not run on {}",
            req.vm_name, req.destination
        )));
    }
    if !d.is_persistent().unwrap_or(false) {
        return Ok(Err(format!(
            "VM {} is not persistent on {} (the migration's Finish did not complete)",
            req.vm_name, req.destination
        )));
    }
    let (_, desc) = describe(&d, 0)?;
    Ok(match desc.provenance {
        Some(p)
            if p.source_host == req.source.as_str()
                && *p.run_id == *req.run_id
                && p.attempt == req.attempt =>
        {
            Ok(())
        }
        Some(p) => Err(format!(
            "the copy on {} was made from {} by run {:?} attempt {}, not by this attempt (run {:?} attempt {})",
            req.destination, p.source_host, p.run_id, p.attempt, req.run_id, req.attempt
        )),
        None => Err(format!(
            "the copy on {} carries no provenance record of vmove",
            req.destination
        )),
    })
}

/// The abort of a migration with no job left: if the source copy waits "paused (migrating)"
/// for a migration its client left after Perform ([`host::interrupted_migration`]), roll it
/// back as the migration's Confirm does on failure (`qemuMigrationSrcConfirmPhase` with
/// `cancelled`: the source's CPUs are resumed), but only once the destination has no copy of
/// the VM that runs or is arriving (re-checked here; else `Permanent`, nothing changed). A pause
/// its owner asked for (reason `user`) or any other state is left as it is.
pub(super) fn roll_back_interrupted(
    dom: &Domain,
    dst: &Host,
    req: &MigrationRequest,
) -> DriverResult<()> {
    if !host::interrupted_migration(dom)? {
        return Ok(());
    }
    let dconn = dst.conn()?;
    if let Some(d) = find_domain(&dconn, &req.vm)?
        && d.is_active().unwrap_or(true)
    {
        return Err(DriverError::permanent(format!(
            "VM {} has a running or arriving copy on {}: its paused copy on {} is not resumed",
            req.vm_name, req.destination, req.source
        )));
    }
    tracing::info!(vm = %req.vm_name, host = %req.source, "resuming the source copy an interrupted migration left paused");
    dom.resume()
        .map_err(|e| {
            from_virt(
                &e,
                "cannot resume the VM's paused source copy",
                Phase::Change,
            )
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn facts(path: &str, bytes: u64, ctime: Option<&str>) -> FileFacts {
        FileFacts {
            path: path.into(),
            bytes,
            mtime: Some("1795735743.261969297".into()),
            ctime: ctime.map(str::to_owned),
        }
    }

    /// Guards the proof that lets a resumed run finish an offline move cut between the
    /// destination's define and the source's undefine: the source's files must be the copied
    /// ones, each as recorded when the copy ended; anything else, or nothing recorded, is no
    /// proof.
    #[test]
    fn a_source_is_unchanged_since_the_copy_only_with_the_same_files_as_recorded() {
        let files = vec!["/a/vm-0.qcow2".to_owned(), "/a/vm-0-base.qcow2".to_owned()];
        let then = vec![
            facts("/a/vm-0.qcow2", 4521984, Some("1795735743.261969298")),
            facts("/a/vm-0-base.qcow2", 196616, Some("1795735700.000000001")),
        ];
        let prov = Provenance {
            source_host: "hostA".into(),
            source_name: "vm".into(),
            files: files.clone(),
            sources: then.clone(),
            ..Provenance::default()
        };
        let same = |f: &str| Ok(then.iter().find(|t| t.path == f).cloned());
        // The chain listed in another order is the same files.
        let reordered = vec![files[1].clone(), files[0].clone()];
        assert_eq!(
            unchanged_since_copy(&prov, &reordered, same).unwrap(),
            Ok(())
        );

        let why = |now: Vec<FileFacts>, files: &[String], prov: &Provenance| {
            unchanged_since_copy(prov, files, |f: &str| {
                Ok(now.iter().find(|t| t.path == f).cloned())
            })
            .unwrap()
            .unwrap_err()
        };
        // Written after the copy: the change time moved (the size may not).
        let mut written = then.clone();
        written[1].ctime = Some("1795735800.5".into());
        let w = why(written, &files, &prov);
        assert!(
            w.contains("/a/vm-0-base.qcow2") && w.contains("changed after its copy"),
            "{w}"
        );
        // Grown.
        let mut grown = then.clone();
        grown[0].bytes += 65536;
        assert!(why(grown, &files, &prov).contains("/a/vm-0.qcow2"));
        // Gone.
        assert!(why(then[..1].to_vec(), &files, &prov).contains("is gone"));
        // A disk added to (or removed from) the source definition.
        let mut more = files.clone();
        more.push("/a/vm-1.qcow2".into());
        assert!(why(then.clone(), &more, &prov).contains("the copy was of"));
        assert!(why(then.clone(), &files[..1], &prov).contains("the copy was of"));
        // Nothing recorded (a live move's or an older vmove's record), or no change time.
        let bare = Provenance {
            sources: Vec::new(),
            ..prov.clone()
        };
        assert!(why(then.clone(), &files, &bare).contains("nothing proves"));
        let no_ctime = Provenance {
            sources: vec![then[0].clone(), facts("/a/vm-0-base.qcow2", 196616, None)],
            ..prov.clone()
        };
        assert!(why(then.clone(), &files, &no_ctime).contains("no change time"));
        let partial = Provenance {
            sources: then[..1].to_vec(),
            ..prov.clone()
        };
        assert!(why(then.clone(), &files, &partial).contains("/a/vm-0-base.qcow2"));
    }

    /// A UEFI VM's NVRAM file copied with its disks counts as they do: changed (a start of the
    /// source writes it) or gone since the copy, no proof.
    #[test]
    fn a_source_whose_nvram_changed_since_the_copy_is_not_unchanged() {
        let nv = "/var/lib/libvirt/qemu/nvram/vm_VARS.fd";
        let files = vec!["/a/vm-0.qcow2".to_owned()];
        let then = vec![
            facts("/a/vm-0.qcow2", 4521984, Some("1795735743.261969298")),
            facts(nv, 540672, Some("1795735743.000000001")),
        ];
        let prov = Provenance {
            source_host: "hostA".into(),
            source_name: "vm".into(),
            files: files.clone(),
            sources: then.clone(),
            nvram: Some(nv.into()),
            ..Provenance::default()
        };
        let check = |now: Vec<FileFacts>| {
            unchanged_since_copy(&prov, &files, |f: &str| {
                Ok(now.iter().find(|t| t.path == f).cloned())
            })
            .unwrap()
        };
        assert_eq!(check(then.clone()), Ok(()));
        let mut written = then.clone();
        written[1].ctime = Some("1795735800.5".into());
        let w = check(written).unwrap_err();
        assert!(
            w.contains(nv) && w.contains("changed after its copy"),
            "{w}"
        );
        assert!(check(then[..1].to_vec()).unwrap_err().contains("is gone"));
    }
}
