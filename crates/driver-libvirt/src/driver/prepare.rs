//! Before a migration: every check on both hosts, the destination images pre-created (each
//! after its provenance marker), and the destination's domain XML.

use super::paths::{destination_base, destination_paths, file_name, folder};
use super::state::Inner;
use crate::error::{Phase, code, from_virt};
use crate::host::{self, describe, find_domain, find_domain_by_name, vol_at};
use crate::provenance;
use crate::xml::{self, Provenance};
use virt::connect::Connect;
use virt::domain::{Domain, MigrateParameters};
use virt::storage_vol::StorageVol;
use virt::sys;

/// The migration's typed parameters: the destination XML, and the source host's bandwidth cap
/// (`bandwidth_mib_s`, or the run's `--bandwidth` the CLI put there) as
/// `VIR_MIGRATE_PARAM_BANDWIDTH`, which libvirt reads in MiB/s ("the maximum bandwidth (in
/// MiB/s) that will be used for migration", libvirt's libvirt-domain.h). None: no cap.
pub(crate) fn migrate_params(
    cfg: &crate::config::LibvirtHostConfig,
    dest_xml: String,
) -> MigrateParameters {
    MigrateParameters {
        dest_xml: Some(dest_xml),
        bandwidth: cfg.bandwidth_mib_s,
        ..MigrateParameters::default()
    }
}
use vmove_driver::*;

/// Everything a prepared migration needs on its thread.
pub(super) struct Prepared {
    pub(super) sconn: Connect,
    pub(super) dconn: Connect,
    pub(super) dom: Domain,
    pub(super) dest_xml: String,
    /// (source file, destination file) to stream (offline only).
    pub(super) copies: Vec<(String, String)>,
    /// (destination path, expected virtual size) to verify (offline only).
    pub(super) expect: Vec<(String, u64)>,
    /// The provenance record in `dest_xml` (offline: completed with the source files' facts
    /// once they are copied).
    pub(super) provenance: Provenance,
    pub(super) flags: u32,
    pub(super) params: MigrateParameters,
    pub(super) p2p_uri: Option<String>,
}

/// on either host until every check passed.
pub(super) fn prepare(inner: &Inner, req: &MigrationRequest) -> DriverResult<Prepared> {
    let src = inner.hosts.get(&req.source).cloned().ok_or_else(|| {
        DriverError::permanent(format!(
            "host {} is not a configured libvirt host",
            req.source
        ))
    })?;
    let dst = inner.hosts.get(&req.destination).cloned().ok_or_else(|| {
        DriverError::permanent(format!(
            "host {} is not a configured libvirt host",
            req.destination
        ))
    })?;
    let sconn = src.open()?;
    let dconn = dst.open()?;
    let dom = find_domain(&sconn, &req.vm)?.ok_or_else(|| {
        DriverError::permanent(format!("VM {} not found on {}", req.vm_name, req.source))
    })?;
    let info = host::vm_info(&sconn, &dom)?;
    // State and metadata the move would lose, and that make libvirt refuse the source's
    // undefine after the copy is defined on the destination (issue: a managed-save VM ended
    // defined on both hosts): refused before anything is touched. Pre-flight names them too.
    if dom
        .has_managed_save(0)
        .map_err(host::read_err("cannot read the VM's saved state"))?
    {
        return Err(DriverError::permanent(format!(
            "VM {} has a managed-save image on {}: not moved (start it and move it live, or `virsh managedsave-remove` it)",
            info.name, req.source
        )));
    }
    let snaps = crate::ffi::snapshot_count(&dom)
        .map_err(host::read_err("cannot count the VM's snapshots"))?;
    if snaps > 0 {
        return Err(DriverError::permanent(format!(
            "VM {} has {snaps} snapshot(s) on {}: not moved (libvirt keeps their metadata on the source only)",
            info.name, req.source
        )));
    }
    match req.mode {
        MigrationMode::Live if !info.power.is_live() => {
            return Err(DriverError::permanent(format!(
                "VM {} is not running on {} ({:?}): it cannot move live",
                info.name, req.source, info.power
            )));
        }
        MigrationMode::Offline if info.power != PowerState::Off => {
            return Err(DriverError::permanent(format!(
                "VM {} is not shut off on {} ({:?}): it cannot move offline",
                info.name, req.source, info.power
            )));
        }
        _ => {}
    }
    if info.activity != Activity::Idle {
        return Err(DriverError::transient(format!(
            "VM {} is busy on {}: {:?}",
            info.name, req.source, info.activity
        )));
    }
    let xml_flags = match req.mode {
        MigrationMode::Live => sys::VIR_DOMAIN_XML_MIGRATABLE,
        MigrationMode::Offline => sys::VIR_DOMAIN_XML_MIGRATABLE | sys::VIR_DOMAIN_XML_INACTIVE,
    };
    let (raw, desc) = describe(&dom, xml_flags)?;
    // What no destination can take (host devices, disks that are not files, NVRAM and TPM
    // state offline): refused for good before anything is touched, as pre-flight reports it.
    let facts = super::preflight::facts(&raw).map_err(|e| DriverError::transient(e.to_string()))?;
    if let Some(b) = super::preflight::vm_blockers(&desc.name, &req.source, req.mode, &facts)
        .into_iter()
        .next()
    {
        return Err(DriverError::permanent(b.to_string()));
    }
    let disks = host::disks_of(&sconn, &desc)?;

    // The destination must not know this VM (by id or by name).
    if let Some(d) = find_domain(&dconn, &req.vm)? {
        let active = d.is_active().unwrap_or(false);
        return Err(DriverError::destination_refused(format!(
            "VM {} is already {} on {}",
            desc.name,
            if active { "running" } else { "defined" },
            req.destination
        )));
    }
    if find_domain_by_name(&dconn, &desc.name)?.is_some() {
        return Err(DriverError::destination_refused(format!(
            "another VM named {} already exists on {}",
            desc.name, req.destination
        )));
    }

    // Where the disks go.
    let base = destination_base(&dconn, &dst, req)?;
    let has_chain = disks.iter().any(|d| !d.backing_chain.is_empty());
    // Offline, a chain travels as it is (every file), so its files keep their paths.
    let offline_chain = req.mode == MigrationMode::Offline && has_chain;
    let tops: Vec<String> = disks.iter().map(|d| d.path.clone()).collect();
    let dest_tops = if offline_chain {
        if req.layout.base.is_some() || req.layout.put_in_subfolder {
            return Err(DriverError::permanent(format!(
                "VM {} is shut off with a backing chain: an offline move keeps its paths, and the layout asks for others",
                desc.name
            )));
        }
        tops.clone()
    } else {
        destination_paths(&base, &desc.name, req.layout.put_in_subfolder, &tops)
    };
    // From the check that the paths are free to the last image created, this process's
    // other migrations to the host wait (Host::creating).
    let _creating = dst.creating();
    // Every destination file (and, offline with a chain, every chain file) must be free.
    let mut dest_files: Vec<(String, String, u64, String)> = Vec::new(); // (src, dst, capacity, format)
    for (d, dt) in disks.iter().zip(&dest_tops) {
        dest_files.push((
            d.path.clone(),
            dt.clone(),
            d.virtual_bytes,
            d.format.clone(),
        ));
        if offline_chain {
            for b in &d.backing_chain {
                dest_files.push((b.clone(), b.clone(), 0, String::new()));
            }
        }
    }
    // A UEFI VM's variable store (a file: one that is not is refused above), at the path the
    // definition names, the same on both hosts. Live, QEMU sends the flash's content in the
    // migration stream and the destination's QEMU writes it into its own file when the VM runs
    // there (seen in the lab: byte for byte the source's file): that file must be there, of the
    // source's size. Offline, the file is copied byte for byte as the disks are. Either way it
    // is pre-created with the disks, after its provenance marker, and only where no file is; the
    // source's is removed after the move only once the destination's holds its content
    // (cleanup.rs). A shut-off VM that never ran may have none yet: libvirt makes it from its
    // template at the first start, and the path must be free on the destination all the same.
    let mut free_too = Vec::new();
    let nvram = match desc.nvram.as_deref() {
        Some(p) => match (vol_at(&sconn, p)?, req.mode) {
            (Some(v), _) => {
                let size = host::vol_physical(&v)?;
                dest_files.push((p.to_owned(), p.to_owned(), size, "raw".to_owned()));
                Some(p.to_owned())
            }
            (None, MigrationMode::Offline) => {
                free_too.push(p.to_owned());
                None
            }
            (None, MigrationMode::Live) => {
                return Err(DriverError::permanent(format!(
                    "the NVRAM file {p} of VM {} is missing on {}",
                    desc.name, req.source
                )));
            }
        },
        _ => None,
    };
    for dpath in dest_files.iter().map(|(_, d, _, _)| d).chain(&free_too) {
        if vol_at(&dconn, dpath)?.is_some() {
            return Err(DriverError::destination_refused(format!(
                "destination path {dpath} already holds a file on {}; not overwriting it",
                req.destination
            )));
        }
    }
    // Space: what the disks take now must fit.
    let need: u64 = disks.iter().map(|d| d.allocated_bytes).sum();
    if let Ok((pool, _)) = host::pool_path(&dconn, &dst.cfg.pool)
        && let Ok(pi) = pool.info()
        && pi.available < need
    {
        return Err(DriverError::destination_refused(format!(
            "not enough space on {}: {} bytes free in pool {}, {} needed",
            req.destination, pi.available, dst.cfg.pool, need
        )));
    }

    // Pre-create the destination images (sparse). From here on, what we create is ours:
    // each image's provenance marker is created first, so that a process started after a
    // crash can prove the image vmove's (provenance.rs).
    let mut copies = Vec::new();
    let mut expect = Vec::new();
    for (spath, dpath, capacity, format) in &dest_files {
        let pool = host::dir_pool(&dconn, &folder(dpath), true)?.ok_or_else(|| {
            DriverError::destination_refused(format!(
                "cannot create folder {} on {}",
                folder(dpath),
                req.destination
            ))
        })?;
        let vol_xml = match req.mode {
            MigrationMode::Live => format!(
                "<volume><name>{}</name><capacity unit='bytes'>{capacity}</capacity><allocation unit='bytes'>0</allocation><target><format type='{}'/></target></volume>",
                xml::escape(&file_name(dpath)),
                xml::escape(format)
            ),
            MigrationMode::Offline => {
                // A raw file of the source file's own size: the stream copies the file
                // byte for byte (qcow2 headers included).
                let svol = vol_at(&sconn, spath)?.ok_or_else(|| {
                    DriverError::permanent(format!(
                        "disk {spath} of VM {} is missing on {}",
                        desc.name, req.source
                    ))
                })?;
                let physical = host::vol_physical(&svol)?;
                format!(
                    "<volume><name>{}</name><capacity unit='bytes'>{physical}</capacity><allocation unit='bytes'>0</allocation><target><format type='raw'/></target></volume>",
                    xml::escape(&file_name(dpath))
                )
            }
        };
        provenance::mark(&pool, dpath, &req.vm, &req.destination)?;
        match StorageVol::create_xml(&pool, &vol_xml, 0) {
            Ok(_) => inner.remember_created(&req.vm, &req.destination, dpath),
            Err(e) => {
                // No image of ours there: the marker must not vouch for whatever is.
                if let Err(u) = provenance::unmark(&dconn, dpath, &req.vm) {
                    tracing::warn!(path = %dpath, error = %u.message, "cannot remove a provenance marker");
                }
                let mut err = from_virt(
                    &e,
                    &format!("cannot create {dpath} on {}", req.destination),
                    Phase::Prepare,
                );
                if e.code().to_raw() as i32 == code::STORAGE_VOL_EXIST {
                    err.class = ErrorClass::DestinationRefused;
                }
                return Err(err);
            }
        }
        if req.mode == MigrationMode::Offline {
            copies.push((spath.clone(), dpath.clone()));
        }
        if *capacity > 0 && nvram.as_ref() != Some(dpath) {
            expect.push((dpath.clone(), *capacity));
        }
    }

    let mut logs = vec![format!("/var/log/libvirt/qemu/{}.log", desc.name)];
    logs.extend(desc.log_files.iter().cloned());
    // An emulated TPM's swtpm logs beside (libvirt's `swtpmLogDir`, fixed at build:
    // /var/log/swtpm/libvirt/qemu/<name>-swtpm.log): the source's copy is a leftover as QEMU's
    // log is, listed only where a storage pool covers it.
    if facts.tpm_emulator {
        logs.push(format!(
            "/var/log/swtpm/libvirt/qemu/{}-swtpm.log",
            desc.name
        ));
    }
    let mut files = Vec::new();
    for d in &disks {
        files.push(d.path.clone());
        files.extend(d.backing_chain.iter().cloned());
    }
    let provenance = Provenance {
        source_host: req.source.to_string(),
        source_name: desc.name.clone(),
        run_id: req.run_id.to_string(),
        attempt: req.attempt,
        files,
        logs,
        sizes: expect.clone(),
        sources: Vec::new(),
        nvram,
    };
    let targets: Vec<(String, String)> = desc
        .disks
        .iter()
        .zip(&dest_tops)
        .map(|(d, p)| (d.target.clone(), p.clone()))
        .collect();
    let flatten = req.mode == MigrationMode::Live && has_chain;
    let dest_xml = xml::rewrite_for_destination(&raw, &targets, flatten, Some(&provenance))
        .map_err(|e| DriverError::permanent(e.to_string()))?;

    let mut flags = sys::VIR_MIGRATE_LIVE
        | sys::VIR_MIGRATE_PERSIST_DEST
        | sys::VIR_MIGRATE_UNDEFINE_SOURCE
        | sys::VIR_MIGRATE_NON_SHARED_DISK;
    if src.cfg.auto_converge {
        flags |= sys::VIR_MIGRATE_AUTO_CONVERGE;
    }
    if src.cfg.post_copy {
        flags |= sys::VIR_MIGRATE_POSTCOPY;
    }
    let p2p_uri = src.cfg.p2p.then(|| dst.cfg.uri.clone());
    if p2p_uri.is_some() {
        flags |= sys::VIR_MIGRATE_PEER2PEER;
    }
    let params = migrate_params(&src.cfg, dest_xml.clone());
    Ok(Prepared {
        sconn,
        dconn,
        dom,
        dest_xml,
        copies,
        expect,
        provenance,
        flags,
        params,
        p2p_uri,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod params_tests {
    use super::*;
    use crate::config::LibvirtHostConfig;

    fn cfg(extra: &str) -> LibvirtHostConfig {
        toml::from_str(&format!("uri = \"qemu:///system\"\n{extra}")).unwrap()
    }

    /// The names of the typed parameters libvirt is handed.
    fn names(p: &MigrateParameters) -> Vec<String> {
        p.to_vec()
            .iter()
            .map(|t| {
                t.field
                    .iter()
                    .take_while(|c| **c != 0)
                    .map(|c| *c as u8 as char)
                    .collect()
            })
            .collect()
    }

    fn bandwidth_name() -> String {
        sys::VIR_MIGRATE_PARAM_BANDWIDTH
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn migrate_params_carry_the_bandwidth_cap_in_mib_s() {
        let p = migrate_params(&cfg("bandwidth_mib_s = 100"), "<domain/>".into());
        // Handed to libvirt as VIR_MIGRATE_PARAM_BANDWIDTH, read back as libvirt reads it.
        assert!(names(&p).contains(&bandwidth_name()), "{:?}", names(&p));
        let back = MigrateParameters::from_vec(p.to_vec());
        assert_eq!(back.bandwidth, Some(100));
        assert_eq!(back.dest_xml.as_deref(), Some("<domain/>"));
    }

    #[test]
    fn migrate_params_have_no_bandwidth_without_a_cap() {
        let p = migrate_params(&cfg(""), "<domain/>".into());
        assert!(!names(&p).contains(&bandwidth_name()), "{:?}", names(&p));
    }
}
