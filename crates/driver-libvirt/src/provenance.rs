//! Provenance markers: durable proof, kept on the destination host itself, that vmove
//! pre-created a destination image for a given VM.
//!
//! The driver may only delete, after a failed attempt, a destination image it created itself.
//! The process that created it knows (`Inner::created`, in memory); a process started after a
//! crash does not. So before it creates an image `<folder>/<file>` the driver creates, in the
//! same folder (the same storage pool) and through libvirt only, an empty volume named
//! `<file>.vmove-<VM UUID>`: the marker. Its name binds the image to the VM; volume creation is
//! atomic in its name, so a marker is either there or not (no half-written content to trust).
//!
//! Order of operations, so that a crash anywhere leaves nothing unprovable and nothing falsely
//! proven:
//! - create: marker, then image. A crash in between leaves an orphan marker (no image), which a
//!   later clean-up lists and removes. If the image cannot be created (the path was taken
//!   meanwhile), the marker is removed at once: a marker never vouches for someone else's file.
//! - remove: image, then marker. A crash in between leaves an orphan marker again.
//! - after a verified move the markers of the VM's disks are removed (the images are the VM's
//!   disks now, proven by the VM itself; a marker must never make them look like leftovers).
//!
//! Removing a marker is always safe (it can only make an image unprovable, i.e. kept); creating
//! one is only done for an image path that holds no file, and is refused when another VM's
//! marker names that path.

use crate::error::{Phase, code, from_virt};
use crate::host::{self, code_of, read_err};
use crate::xml;
use std::path::Path;
use virt::connect::Connect;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::sys;
use vmove_driver::*;

/// Between an image's file name and the VM's UUID in its marker's name.
pub const TAG: &str = ".vmove-";
/// Longest file name most file systems take.
const NAME_MAX: usize = 255;
/// The marker suffix of a VM whose id is a UUID (`.vmove-` + 36 characters).
const UUID_SUFFIX_LEN: usize = 7 + 36;

fn split(path: &str) -> (String, String) {
    let p = Path::new(path);
    let folder = p
        .parent()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    let file = p
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    (folder, file)
}

fn join(folder: &str, file: &str) -> String {
    format!("{}/{file}", folder.trim_end_matches('/'))
}

/// The part of a marker's name that names the image: the image's file name, or, when that is
/// too long to leave room for the suffix, a prefix of it and a hash of the whole name.
fn image_part(image_file: &str) -> String {
    if image_file.len() + UUID_SUFFIX_LEN <= NAME_MAX {
        return image_file.to_owned();
    }
    let mut cut = NAME_MAX - UUID_SUFFIX_LEN - 17;
    while !image_file.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}~{:016x}",
        &image_file[..cut],
        host::fnv64(image_file.as_bytes())
    )
}

/// The file name of the marker of image `image_file` pre-created for `vm`.
pub fn marker_name(image_file: &str, vm: &VmId) -> String {
    format!("{}{TAG}{}", image_part(image_file), vm.as_str())
}

/// The path of the marker of the image at `image_path` pre-created for `vm`.
pub fn marker_path(image_path: &str, vm: &VmId) -> String {
    let (folder, file) = split(image_path);
    join(&folder, &marker_name(&file, vm))
}

/// The VM whose marker for image `image_file` `name` is, if it is one.
fn owner_of<'a>(name: &'a str, image_file: &str) -> Option<&'a str> {
    let rest = name
        .strip_prefix(image_part(image_file).as_str())?
        .strip_prefix(TAG)?;
    (!rest.is_empty() && !rest.contains(['.', '/'])).then_some(rest)
}

/// Whether a file name is the marker of some image for `vm`.
pub fn is_marker_of(name: &str, vm: &VmId) -> bool {
    name.len() > TAG.len() + vm.as_str().len() && name.ends_with(&format!("{TAG}{}", vm.as_str()))
}

fn check_vm_id(vm: &VmId) -> DriverResult<()> {
    let id = vm.as_str();
    if id.is_empty() || id.contains(['/', '.']) || id.len() > 64 {
        return Err(DriverError::permanent(format!(
            "VM id '{id}' cannot name a provenance marker"
        )));
    }
    Ok(())
}

/// The names in a folder (its pool refreshed), `None` when the folder does not exist.
fn listing(conn: &Connect, folder: &str) -> DriverResult<Option<(StoragePool, Vec<String>)>> {
    let Some(pool) = host::dir_pool(conn, folder, false)? else {
        return Ok(None);
    };
    let names = pool
        .list_volumes()
        .map_err(read_err("cannot list a folder"))?;
    Ok(Some((pool, names)))
}

/// The VMs (other than `vm`) whose markers name `image_file` in this listing.
fn others<'a>(names: &'a [String], image_file: &str, vm: &VmId) -> Vec<&'a str> {
    names
        .iter()
        .filter_map(|n| owner_of(n, image_file))
        .filter(|o| *o != vm.as_str())
        .collect()
}

/// Creates the marker of `image_path` for `vm` in `pool` (the image's folder), BEFORE the image
/// is created. A marker of `vm` already there (an earlier attempt's, its image gone) is reused;
/// a marker of another VM for that path is refused (`DestinationRefused`).
pub fn mark(pool: &StoragePool, image_path: &str, vm: &VmId, host: &HostId) -> DriverResult<()> {
    check_vm_id(vm)?;
    let (_, file) = split(image_path);
    let names = pool
        .list_volumes()
        .map_err(read_err("cannot list a folder"))?;
    let foreign = others(&names, &file, vm);
    if let Some(o) = foreign.first() {
        return Err(DriverError::destination_refused(format!(
            "destination path {image_path} on {host} is marked as pre-created by vmove for VM {o}; not using it"
        )));
    }
    let name = marker_name(&file, vm);
    let vol_xml = format!(
        "<volume><name>{}</name><capacity unit='bytes'>0</capacity><allocation unit='bytes'>0</allocation><target><format type='raw'/></target></volume>",
        xml::escape(&name)
    );
    match StorageVol::create_xml(pool, &vol_xml, 0) {
        Ok(_) => Ok(()),
        Err(e) if code_of(&e) == code::STORAGE_VOL_EXIST => Ok(()),
        Err(e) => {
            let mut err = from_virt(
                &e,
                &format!("cannot create the provenance marker of {image_path} on {host}"),
                Phase::Prepare,
            );
            if err.class == ErrorClass::Permanent {
                err.class = ErrorClass::DestinationRefused;
            }
            Err(err)
        }
    }
}

/// Removes the marker of `image_path` for `vm`, if there (the image must already be gone or be
/// proven otherwise).
pub fn unmark(conn: &Connect, image_path: &str, vm: &VmId) -> DriverResult<()> {
    let m = marker_path(image_path, vm);
    match host::vol_at(conn, &m)? {
        Some(v) => match v.delete(0) {
            Ok(()) => Ok(()),
            Err(e) if code_of(&e) == code::NO_STORAGE_VOL => Ok(()),
            Err(e) => Err(from_virt(
                &e,
                &format!("cannot remove the provenance marker {m}"),
                Phase::Change,
            )),
        },
        None => Ok(()),
    }
}

/// Whether the destination proves that vmove pre-created the image at `image_path` for `vm`:
/// its marker for `vm` is there and no other VM's marker names that path.
pub fn proven(conn: &Connect, image_path: &str, vm: &VmId) -> DriverResult<bool> {
    let (folder, file) = split(image_path);
    let Some((_, names)) = listing(conn, &folder)? else {
        return Ok(false);
    };
    Ok(names.contains(&marker_name(&file, vm)) && others(&names, &file, vm).is_empty())
}

/// Whether `marker` (a path) is a marker of `vm` whose image is gone from its folder.
pub fn is_orphan(conn: &Connect, marker: &str, vm: &VmId) -> DriverResult<bool> {
    let (folder, name) = split(marker);
    if !is_marker_of(&name, vm) {
        return Ok(false);
    }
    let Some((_, names)) = listing(conn, &folder)? else {
        return Ok(false);
    };
    Ok(names.contains(&name)
        && !names
            .iter()
            .any(|n| n != &name && marker_name(n, vm) == name))
}

/// What the markers of one VM prove in some folders.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Images (paths) proven pre-created for the VM.
    pub images: Vec<String>,
    /// Markers (paths) of the VM whose image is gone.
    pub orphans: Vec<String>,
}

/// Looks for the markers of `vm` in these folders: `(folder, must)`; a folder that cannot be
/// listed is an error when `must`, else skipped (another pool of the host that fails to
/// refresh must not stop the clean-up of the move's own folder).
pub fn scan(conn: &Connect, folders: &[(String, bool)], vm: &VmId) -> DriverResult<Found> {
    let mut out = Found::default();
    for (folder, must) in folders {
        let names = match listing(conn, folder) {
            Ok(Some((_, names))) => names,
            Ok(None) => continue,
            Err(e) if !must => {
                tracing::warn!(folder = %folder, error = %e.message, "cannot look for provenance markers in a folder");
                continue;
            }
            Err(e) => return Err(e),
        };
        for m in names.iter().filter(|n| is_marker_of(n, vm)) {
            let image = names.iter().find(|n| *n != m && marker_name(n, vm) == *m);
            match image {
                Some(img) if others(&names, img, vm).is_empty() => {
                    out.images.push(join(folder, img));
                }
                Some(_) => {} // Two VMs' markers name it: proves nothing, touch nothing.
                None => out.orphans.push(join(folder, m)),
            }
        }
    }
    Ok(out)
}

/// The folders where markers of a move to this host may be, as `(folder, must)`: the given
/// ones (the move's destination folder, which may have no pool yet; `must`) and every active
/// `dir` pool's folder (including the driver's transient `vmove-…` pools; best effort).
pub fn folders(conn: &Connect, extra: &[String]) -> DriverResult<Vec<(String, bool)>> {
    let mut out: Vec<(String, bool)> = extra
        .iter()
        .map(|e| (e.trim_end_matches('/').to_owned(), true))
        .collect();
    let pools = conn
        .list_all_storage_pools(sys::VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
        .map_err(read_err("cannot list storage pools"))?;
    for p in pools {
        let Ok(raw) = p.xml_desc(0) else { continue };
        if !raw.contains("type='dir'") && !raw.contains("type=\"dir\"") {
            continue;
        }
        if let Ok(Some(t)) = xml::pool_target(&raw) {
            let t = t.trim_end_matches('/').to_owned();
            if !out.iter().any(|(f, _)| *f == t) {
                out.push((t, false));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const VM: &str = "5c0ffee0-1234-4abc-8def-0123456789ab";

    #[test]
    fn a_marker_names_its_image_and_its_vm() {
        let vm = VmId::new(VM);
        assert_eq!(
            marker_path("/var/lib/libvirt/images/web-0.qcow2", &vm),
            format!("/var/lib/libvirt/images/web-0.qcow2.vmove-{VM}")
        );
        let m = marker_name("web-0.qcow2", &vm);
        assert!(is_marker_of(&m, &vm));
        assert!(!is_marker_of(&m, &VmId::new("another")));
        assert!(!is_marker_of("web-0.qcow2", &vm));
        assert_eq!(owner_of(&m, "web-0.qcow2"), Some(VM));
        // Not the marker of a file whose name merely starts the same.
        assert_eq!(owner_of(&m, "web-0"), None);
        assert_eq!(owner_of(&m, "web-0.qcow"), None);
    }

    #[test]
    fn a_long_image_name_gets_a_hashed_marker_that_still_fits() {
        let vm = VmId::new(VM);
        let long = format!("{}.qcow2", "x".repeat(240));
        let other = format!("{}.raw", "x".repeat(240));
        let m = marker_name(&long, &vm);
        assert!(m.len() <= NAME_MAX, "{}", m.len());
        assert_ne!(m, marker_name(&other, &vm));
        assert_eq!(owner_of(&m, &long), Some(VM));
        assert_eq!(owner_of(&m, &other), None);
        // Multi-byte characters are cut on a boundary.
        let wide = "é".repeat(120);
        assert!(marker_name(&wide, &vm).len() <= NAME_MAX);
    }

    #[test]
    fn others_lists_only_other_vms_markers_of_that_image() {
        let vm = VmId::new(VM);
        let names = vec![
            "a.qcow2".to_owned(),
            marker_name("a.qcow2", &vm),
            marker_name(
                "a.qcow2",
                &VmId::new("11111111-2222-4333-8444-555555555555"),
            ),
            marker_name(
                "b.qcow2",
                &VmId::new("66666666-2222-4333-8444-555555555555"),
            ),
        ];
        assert_eq!(
            others(&names, "a.qcow2", &vm),
            vec!["11111111-2222-4333-8444-555555555555"]
        );
        assert!(others(&names, "c.qcow2", &vm).is_empty());
    }

    #[test]
    fn a_vm_id_that_cannot_be_part_of_a_file_name_is_refused() {
        assert!(check_vm_id(&VmId::new(VM)).is_ok());
        for bad in ["", "../x", "a/b", "a.b"] {
            assert!(check_vm_id(&VmId::new(bad)).is_err(), "{bad}");
        }
    }
}
