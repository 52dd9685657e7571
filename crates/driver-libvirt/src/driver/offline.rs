//! The offline move of a shut-off VM: its disks streamed through libvirt's storage volumes,
//! then its definition moved (defined on the destination, undefined on the source).

use super::prepare::Prepared;
use super::state::Migration;
use crate::error::{Phase, code, from_virt};
use crate::ffi;
use crate::host::{self, vol_at};
use crate::xml::{self, FileFacts};
use std::sync::atomic::Ordering;
use virt::connect::Connect;
use virt::sys;
use vmove_driver::*;

/// Size and modification and change times of each of these source files (each must be there).
fn source_facts(conn: &Connect, files: &[String]) -> DriverResult<Vec<FileFacts>> {
    files
        .iter()
        .map(|f| {
            host::file_facts(conn, f)?
                .ok_or_else(|| DriverError::transient(format!("source disk {f} vanished")))
        })
        .collect()
}

pub(super) fn run_offline(p: Prepared, rec: &Migration) -> Result<(), DriverError> {
    // The source files as the copy starts; compared when it ends, and recorded in the
    // destination's provenance, so that a later look can tell whether the source changed
    // after the copy (a crash between the define below and the source's undefine).
    let sources: Vec<String> = p.copies.iter().map(|(s, _)| s.clone()).collect();
    let before = source_facts(&p.sconn, &sources)?;
    let mut total = 0;
    let mut pairs = Vec::new();
    for (s, d) in &p.copies {
        let sv = vol_at(&p.sconn, s)?
            .ok_or_else(|| DriverError::transient(format!("source disk {s} vanished")))?;
        let dv = vol_at(&p.dconn, d)?
            .ok_or_else(|| DriverError::transient(format!("destination image {d} vanished")))?;
        let size = host::vol_physical(&sv)?;
        total += size;
        pairs.push((sv, dv, d.clone(), size));
    }
    rec.bytes_total.store(total, Ordering::Relaxed);
    for (sv, dv, d, size) in &pairs {
        ffi::copy_volume_sparse(
            &p.sconn,
            sv,
            *size,
            &p.dconn,
            dv,
            &rec.cancel,
            &rec.bytes_done,
        )
        .map_err(|e| {
            if rec.cancel.load(Ordering::Relaxed) {
                DriverError::transient(format!("offline copy to {d} aborted"))
                    .with_code(i64::from(code::OPERATION_ABORTED))
            } else {
                from_virt(&e, &format!("copying a disk to {d} failed"), Phase::Prepare)
            }
        })?;
    }
    if rec.cancel.load(Ordering::Relaxed) {
        return Err(DriverError::transient("offline move aborted"));
    }
    // Every image at its expected virtual size (the pool re-reads the copied headers).
    for (d, size) in &p.expect {
        let v = vol_at(&p.dconn, d)?
            .ok_or_else(|| DriverError::transient(format!("copied image {d} is missing")))?;
        let (cap, _, _, _) = host::vol_facts(&v)?;
        if cap != *size {
            return Err(DriverError::transient(format!(
                "copied image {d} has size {cap}, expected {size}"
            )));
        }
    }
    let after = source_facts(&p.sconn, &sources)?;
    if let Some((b, a)) = before.iter().zip(&after).find(|(b, a)| b != a) {
        return Err(DriverError::transient(format!(
            "source disk {} changed during its offline copy ({}, then {}): the copy is not used",
            b.path,
            describe_facts(b),
            describe_facts(a)
        )));
    }
    let mut provenance = p.provenance.clone();
    provenance.sources = after;
    let dest_xml = xml::rewrite_for_destination(&p.dest_xml, &[], false, Some(&provenance))
        .map_err(|e| DriverError::permanent(e.to_string()))?;
    let new = p
        .dconn
        .define_domain_xml(&dest_xml)
        .map_err(|e| from_virt(&e, "cannot define the VM on the destination", Phase::Change))?;
    // The source must still be shut off: else the destination copy goes, the source stays.
    let still_off = ffi::state(&p.dom)
        .map(|(s, _)| s as u32 == sys::VIR_DOMAIN_SHUTOFF)
        .unwrap_or(false);
    // (Undefined keeping the NVRAM file, which libvirt otherwise refuses to leave: "cannot
    // undefine domain with nvram". On the destination the copy stays, a pre-created image of
    // this attempt; on the source it is a leftover of the move.)
    let undefine = |d: &virt::domain::Domain| d.undefine_flags(sys::VIR_DOMAIN_UNDEFINE_KEEP_NVRAM);
    if !still_off {
        let _ = undefine(&new);
        return Err(DriverError::transient(
            "the VM was started on the source during its offline move",
        ));
    }
    if let Err(e) = undefine(&p.dom) {
        // The source keeps its definition: the destination's goes again, so that the VM is
        // never left defined on both hosts (the copied images stay, listed as this attempt's
        // leftovers). The source is unchanged and still the VM.
        let err = from_virt(
            &e,
            "defined on the destination, but cannot undefine it on the source",
            Phase::Change,
        );
        return match undefine(&new) {
            Ok(()) => Err(DriverError {
                class: err.class,
                message: format!(
                    "{}; the destination's definition was removed again, the VM stays on the source",
                    err.message
                ),
                code: err.code,
            }),
            Err(u) => Err(DriverError::indeterminate(format!(
                "{}; and removing the destination's definition failed too ({}): the VM is defined on both hosts",
                err.message,
                u.message()
            ))),
        };
    }
    Ok(())
}

pub(super) fn describe_facts(f: &FileFacts) -> String {
    format!(
        "{} bytes, modified {}, changed {}",
        f.bytes,
        f.mtime.as_deref().unwrap_or("(unknown)"),
        f.ctime.as_deref().unwrap_or("(unknown)")
    )
}
