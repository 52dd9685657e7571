//! Where a move's files go on the destination, and the folders its pre-created images may be in.

use crate::host::{self, Host};
use crate::provenance;
use std::path::Path;
use virt::connect::Connect;
use vmove_driver::*;

pub(super) fn file_name(p: &str) -> String {
    Path::new(p)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(super) fn folder(p: &str) -> String {
    Path::new(p)
        .parent()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into())
}

/// The destination folder of a move's disks (before the per-VM subfolder, if any).
pub(super) fn destination_base(
    dconn: &Connect,
    dst: &Host,
    req: &MigrationRequest,
) -> DriverResult<String> {
    Ok(match (&req.layout.base, &dst.cfg.path) {
        (Some(b), _) => b.clone(),
        (None, Some(p)) => p.clone(),
        (None, None) => host::pool_path(dconn, &dst.cfg.pool)?.1,
    })
}

/// The folders where a move's pre-created images may be: every active `dir` pool's folder and
/// the move's destination folder (with the VM's subfolder when the layout asks for one).
pub(super) fn marker_folders(
    dconn: &Connect,
    dst: &Host,
    req: &MigrationRequest,
) -> DriverResult<Vec<(String, bool)>> {
    let base = destination_base(dconn, dst, req)?;
    let mut extra = vec![base.clone()];
    if req.layout.put_in_subfolder {
        extra.push(format!("{}/{}", base.trim_end_matches('/'), req.vm_name));
    }
    let mut out = provenance::folders(dconn, &extra)?;
    // libvirt's own NVRAM folder, where a move pre-creates a UEFI VM's NVRAM file
    // (prepare.rs): looked at on a best-effort basis, as other pools' folders are.
    if !out.iter().any(|(f, _)| f == NVRAM_FOLDER) {
        out.push((NVRAM_FOLDER.to_owned(), false));
    }
    Ok(out)
}

/// Where libvirt keeps UEFI VMs' NVRAM files unless a definition names another path.
pub(super) const NVRAM_FOLDER: &str = "/var/lib/libvirt/qemu/nvram";

/// Where each disk goes: `<base>[/<vm name>]/<file name>`, names made unique.
pub(super) fn destination_paths(
    base: &str,
    vm_name: &str,
    subfolder: bool,
    sources: &[String],
) -> Vec<String> {
    let base = base.trim_end_matches('/');
    let dir = if subfolder {
        format!("{base}/{vm_name}")
    } else {
        base.to_owned()
    };
    let mut out: Vec<String> = Vec::new();
    for s in sources {
        let mut name = file_name(s);
        let mut n = 1;
        while out.iter().any(|o| file_name(o) == name) {
            name = format!("{n}-{}", file_name(s));
            n += 1;
        }
        out.push(format!("{dir}/{name}"));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn destination_paths_follow_the_layout() {
        let src = vec![
            "/a/vm1-0.qcow2".to_owned(),
            "/b/vm1-0.qcow2".to_owned(),
            "/a/data.raw".to_owned(),
        ];
        assert_eq!(
            destination_paths("/pool/", "vm1", false, &src),
            vec!["/pool/vm1-0.qcow2", "/pool/1-vm1-0.qcow2", "/pool/data.raw"]
        );
        assert_eq!(
            destination_paths("/pool", "vm1", true, &src[..1]),
            vec!["/pool/vm1/vm1-0.qcow2"]
        );
    }
}
