//! Files through libvirt's storage API: folders as `dir` pools (transient `vmove-<hash>` ones
//! where no pool has the folder), volumes, their sizes and times.

use super::connection::{code_of, read_err};
use crate::error::{Phase, from_virt};
use crate::xml;
use std::path::Path;
use virt::connect::Connect;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::sys;
use vmove_driver::*;

fn folder_of(path: &str) -> String {
    Path::new(path)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".to_owned())
}

fn file_of(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// FNV-1a: a hash stable across runs and machines (std's hasher is randomised).
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A short stable name for the transient pool of a folder.
pub fn transient_pool_name(dir: &str) -> String {
    format!("vmove-{:016x}", fnv64(dir.as_bytes()))
}

/// How often a refresh refused for a volume being created is tried again, and for how long.
/// Creating an image takes tens of milliseconds: a short interval keeps a refresh that bumped
/// into one from waiting much longer than the create itself.
const REFRESH_RETRY: std::time::Duration = std::time::Duration::from_millis(20);
const REFRESH_TRIES: u32 = 300; // 6 s

/// Refreshes a pool. libvirt refuses while a volume of the pool is being created or uploaded
/// ("has asynchronous jobs running"): that passes within seconds, so we retry for a while.
pub fn refresh(p: &StoragePool) -> DriverResult<()> {
    let mut tries = 0;
    loop {
        match p.refresh(0) {
            Ok(_) => return Ok(()),
            Err(e) if tries < REFRESH_TRIES && e.message().contains("asynchronous jobs") => {
                tries += 1;
                std::thread::sleep(REFRESH_RETRY);
            }
            Err(e) => return Err(read_err("cannot refresh a storage pool")(e)),
        }
    }
}

/// An active, refreshed `dir` pool whose target is `dir`. With `build`, a missing folder is
/// created (`mkdir -p` through the pool build); without, a missing folder gives `None`.
pub fn dir_pool(conn: &Connect, dir: &str, build: bool) -> DriverResult<Option<StoragePool>> {
    let dir = dir.trim_end_matches('/');
    let dir = if dir.is_empty() { "/" } else { dir };
    if let Ok(p) = conn.lookup_storage_pool_by_target_path(dir) {
        // Refreshed at once (a refresh fails on an inactive pool): asking first whether it is
        // active costs one more call, on every look at a folder.
        match refresh(&p) {
            Ok(()) => {}
            Err(_) if !p.is_active().unwrap_or(true) => {
                // An inactive pool of someone else: start it only if that is what the folder
                // needs.
                p.create(0)
                    .map_err(read_err("cannot start the storage pool of a folder"))?;
                refresh(&p)?;
            }
            Err(e) => return Err(e),
        }
        return Ok(Some(p));
    }
    let name = transient_pool_name(dir);
    let pool_xml = format!(
        "<pool type='dir'><name>{name}</name><target><path>{}</path></target></pool>",
        xml::escape(dir)
    );
    let flags = if build {
        sys::VIR_STORAGE_POOL_CREATE_WITH_BUILD
    } else {
        0
    };
    match conn.create_storage_pool_xml(&pool_xml, flags) {
        Ok(p) => Ok(Some(p)),
        Err(e) => {
            // Someone (a parallel call) created it meanwhile: use theirs.
            if let Ok(p) = conn.lookup_storage_pool_by_name(&name)
                && p.is_active().unwrap_or(false)
            {
                refresh(&p)?;
                return Ok(Some(p));
            }
            let m = e.message().to_ascii_lowercase();
            if !build
                && (m.contains("no such file")
                    || m.contains("cannot open")
                    || m.contains("not exist"))
            {
                return Ok(None);
            }
            Err(from_virt(
                &e,
                &format!("cannot open folder {dir} through libvirt"),
                Phase::Read,
            ))
        }
    }
}

/// The volume at `path`, if that file exists on the host.
pub fn vol_at(conn: &Connect, path: &str) -> DriverResult<Option<StorageVol>> {
    match dir_pool(conn, &folder_of(path), false)? {
        Some(pool) => vol_in(&pool, path),
        None => Ok(None),
    }
}

/// The volume at `path` in `pool` (the pool of its folder, as it was last refreshed).
fn vol_in(pool: &StoragePool, path: &str) -> DriverResult<Option<StorageVol>> {
    match pool.lookup_storage_vol_by_name(&file_of(path)) {
        Ok(v) => Ok(Some(v)),
        Err(e) if code_of(&e) == crate::error::code::NO_STORAGE_VOL => Ok(None),
        Err(e) => Err(read_err("cannot look a disk image up")(e)),
    }
}

/// Virtual size, allocated bytes, format and backing file of a volume: one call (its XML has
/// them all), two when the XML lacks a size.
pub fn vol_facts(vol: &StorageVol) -> DriverResult<(u64, u64, Option<String>, Option<String>)> {
    let raw = vol
        .xml_desc(0)
        .map_err(read_err("cannot read a disk image's description"))?;
    let d = xml::vol_desc(&raw).map_err(|e| DriverError::transient(e.to_string()))?;
    let (capacity, allocation) = match (d.capacity, d.allocation) {
        (Some(c), Some(a)) => (c, a),
        _ => {
            let info = vol
                .info()
                .map_err(read_err("cannot read a disk image's size"))?;
            (info.capacity, info.allocation)
        }
    };
    Ok((capacity, allocation, d.format, d.backing))
}

/// The size of the file itself (qcow2: the file, not the guest's view), bytes.
pub fn vol_physical(vol: &StorageVol) -> DriverResult<u64> {
    vol.info_flags(sys::VIR_STORAGE_VOL_GET_PHYSICAL)
        .map(|i| i.allocation)
        .map_err(read_err("cannot read a disk image's physical size"))
}

/// The content of the small file at `path` (at most `limit` bytes), read through a volume
/// download stream (the host's files are seen through libvirt only); `None` when there is no
/// file there.
pub fn read_small_file(conn: &Connect, path: &str, limit: u64) -> DriverResult<Option<Vec<u8>>> {
    let Some(vol) = vol_at(conn, path)? else {
        return Ok(None);
    };
    let err = |e: virt::error::Error| from_virt(&e, &format!("cannot read {path}"), Phase::Read);
    let size = vol_physical(&vol)?;
    if size > limit {
        return Err(DriverError::permanent(format!(
            "{path} holds {size} bytes, more than the {limit} vmove reads of such a file"
        )));
    }
    let stream = virt::stream::Stream::new(conn, 0).map_err(err)?;
    vol.download(&stream, 0, 0, 0).map_err(err)?;
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match stream.recv(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let n = usize::try_from(n).unwrap_or(0).min(buf.len());
                out.extend_from_slice(&buf[..n]);
                if out.len() as u64 > limit {
                    let _ = stream.abort();
                    return Err(DriverError::permanent(format!(
                        "{path} grew past {limit} bytes while it was read"
                    )));
                }
            }
            Err(e) => {
                let _ = stream.abort();
                return Err(err(e));
            }
        }
    }
    stream.finish().map_err(err)?;
    Ok(Some(out))
}

/// Size and modification and change times of the file at `path` (`None`: no such file), as
/// the storage API reports them after a refresh of its folder.
pub fn file_facts(conn: &Connect, path: &str) -> DriverResult<Option<xml::FileFacts>> {
    let Some(vol) = vol_at(conn, path)? else {
        return Ok(None);
    };
    let bytes = vol_physical(&vol)?;
    let raw = vol
        .xml_desc(0)
        .map_err(read_err("cannot read a disk image's description"))?;
    let (mtime, ctime) =
        xml::vol_timestamps(&raw).map_err(|e| DriverError::transient(e.to_string()))?;
    Ok(Some(xml::FileFacts {
        path: path.to_owned(),
        bytes,
        mtime,
        ctime,
    }))
}

/// The pools of folders looked at during one call, each refreshed once, at its first look-up.
/// Following every VM's backing chains (`paths_in_use`) looks up a volume per disk; each
/// look-up through [`vol_at`] refreshed its pool (libvirtd reads every file of the folder), so
/// one call refreshed a pool about twice per VM on the host. In the lab benchmark, a source
/// host's clean-up (a listing and a removal per file, each asking what is in use) cost
/// libvirtd enough CPU to slow the migrations running beside it (docs/BENCHMARKS.md).
#[derive(Default)]
pub struct Pools(std::collections::HashMap<String, Option<StoragePool>>);

impl Pools {
    /// [`vol_at`], refreshing the folder's pool only the first time this call looks there.
    pub fn vol_at(&mut self, conn: &Connect, path: &str) -> DriverResult<Option<StorageVol>> {
        let dir = folder_of(path);
        let pool = match self.0.get(&dir) {
            Some(p) => p.clone(),
            None => {
                let p = dir_pool(conn, &dir, false)?;
                self.0.insert(dir, p.clone());
                p
            }
        };
        match pool {
            Some(pool) => vol_in(&pool, path),
            None => Ok(None),
        }
    }
}

/// Pool target path of the named pool.
pub fn pool_path(conn: &Connect, pool: &str) -> DriverResult<(StoragePool, String)> {
    let p = conn.lookup_storage_pool_by_name(pool).map_err(|e| {
        let mut err = from_virt(&e, &format!("storage pool '{pool}'"), Phase::Read);
        err.class = ErrorClass::DestinationRefused;
        err
    })?;
    let raw = p
        .xml_desc(0)
        .map_err(read_err("cannot read a storage pool"))?;
    let path = xml::pool_target(&raw)
        .map_err(|e| DriverError::transient(e.to_string()))?
        .ok_or_else(|| {
            DriverError::destination_refused(format!("storage pool '{pool}' has no target path"))
        })?;
    Ok((p, path))
}
