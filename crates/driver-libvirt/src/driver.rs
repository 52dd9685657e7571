//! [`LibvirtDriver`]: the [`Driver`] implementation.

use crate::LibvirtHostConfig;
use crate::error::{Phase, code, from_virt};
use crate::ffi;
use crate::host::{self, Host, describe, find_domain, find_domain_by_name, read_err, vol_at};
use crate::provenance;
use crate::xml::{self, FileFacts, Provenance};
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use virt::connect::Connect;
use virt::domain::{Domain, MigrateParameters};
use virt::storage_vol::StorageVol;
use virt::sys;
use vmove_driver::*;

/// The libvirt driver: one value serves every configured libvirt host.
#[derive(Clone, Debug)]
pub struct LibvirtDriver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    hosts: BTreeMap<HostId, Arc<Host>>,
    migrations: Mutex<HashMap<String, Arc<Migration>>>,
    /// Destination images this driver created, per VM. With the provenance markers on the
    /// destination (`provenance.rs`, which survive this process), the only files an
    /// `AfterFailedAttempt` clean-up may delete.
    created: Mutex<HashMap<VmId, Vec<(HostId, String)>>>,
}

/// One migration this driver started.
#[derive(Debug)]
struct Migration {
    mode: MigrationMode,
    vm: VmId,
    source: HostId,
    post_copy: bool,
    auto_converge: bool,
    max_downtime_cap_ms: u64,
    outcome: Mutex<Option<Result<(), DriverError>>>,
    cancel: AtomicBool,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    /// Flips to true once `outcome` is set (for [`Driver::wait_for_end`]).
    ended: tokio::sync::watch::Sender<bool>,
}

impl Migration {
    fn outcome(&self) -> Option<Result<(), DriverError>> {
        self.outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    fn finish(&self, r: Result<(), DriverError>) {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        self.ended.send_replace(true);
    }
}

static CLEAR_ERROR_CALLBACK: Once = Once::new();

async fn blocking<T: Send + 'static>(
    phase: Phase,
    f: impl FnOnce() -> DriverResult<T> + Send + 'static,
) -> DriverResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("a libvirt call did not finish: {e}");
            Err(match phase {
                Phase::Change => DriverError::indeterminate(msg),
                Phase::Read | Phase::Prepare => DriverError::transient(msg),
            })
        }
    }
}

/// [`blocking`] for a call to `hosts`: a connection lost on the way is reported with the name
/// of the host it was to.
async fn blocking_on<T: Send + 'static>(
    hosts: Vec<Arc<Host>>,
    phase: Phase,
    f: impl FnOnce() -> DriverResult<T> + Send + 'static,
) -> DriverResult<T> {
    blocking(phase, f).await.map_err(|e| {
        let lost: Vec<(String, String)> = hosts
            .iter()
            .filter(|h| h.shared_connection_lost())
            .map(|h| (h.id.as_str().to_owned(), h.cfg.uri.clone()))
            .collect();
        crate::error::name_lost_host(e, &lost)
    })
}

fn file_name(p: &str) -> String {
    Path::new(p)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn folder(p: &str) -> String {
    Path::new(p)
        .parent()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into())
}

/// The destination folder of a move's disks (before the per-VM subfolder, if any).
fn destination_base(dconn: &Connect, dst: &Host, req: &MigrationRequest) -> DriverResult<String> {
    Ok(match (&req.layout.base, &dst.cfg.path) {
        (Some(b), _) => b.clone(),
        (None, Some(p)) => p.clone(),
        (None, None) => host::pool_path(dconn, &dst.cfg.pool)?.1,
    })
}

/// The folders where a move's pre-created images may be: every active `dir` pool's folder and
/// the move's destination folder (with the VM's subfolder when the layout asks for one).
fn marker_folders(
    dconn: &Connect,
    dst: &Host,
    req: &MigrationRequest,
) -> DriverResult<Vec<(String, bool)>> {
    let base = destination_base(dconn, dst, req)?;
    let mut extra = vec![base.clone()];
    if req.layout.put_in_subfolder {
        extra.push(format!("{}/{}", base.trim_end_matches('/'), req.vm_name));
    }
    provenance::folders(dconn, &extra)
}

/// Where each disk goes: `<base>[/<vm name>]/<file name>`, names made unique.
pub(crate) fn destination_paths(
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

fn progress_of(j: &ffi::JobFigures) -> Progress {
    Progress {
        bytes_done: j.data_processed,
        bytes_remaining: j.data_remaining,
        bytes_total: j.data_total,
        dirty_rate: match (j.dirty_rate_pages, j.page_size) {
            (Some(r), Some(p)) => Some(r.saturating_mul(p)),
            _ => None,
        },
        transfer_rate: match (j.mem_bps, j.disk_bps) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        },
        iteration: j.iteration.map(|i| i as u32),
        percent: None,
    }
}

impl LibvirtDriver {
    /// A driver for these hosts.
    pub fn new(hosts: Vec<(HostId, LibvirtHostConfig)>) -> Self {
        // libvirt prints every error to stderr unless told not to.
        CLEAR_ERROR_CALLBACK.call_once(virt::error::clear_error_callback);
        let hosts = hosts
            .into_iter()
            .map(|(id, cfg)| (id.clone(), Arc::new(Host::new(id, cfg))))
            .collect();
        LibvirtDriver {
            inner: Arc::new(Inner {
                hosts,
                migrations: Mutex::new(HashMap::new()),
                created: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Builds the driver from the `[hosts.<name>]` tables of the hosts it serves. An unknown or
    /// malformed key is an error that names the host and the key.
    pub fn from_config(hosts: &[(HostId, toml::Table)]) -> Result<LibvirtDriver, DriverError> {
        let mut out = Vec::new();
        for (id, table) in hosts {
            let cfg = LibvirtHostConfig::deserialize(toml::Value::Table(table.clone()))
                .map_err(|e| DriverError::permanent(format!("host {id}: {}", e.message())))?;
            if let Some(d) = &cfg.driver
                && d != "libvirt"
            {
                return Err(DriverError::permanent(format!(
                    "host {id}: driver is '{d}', not 'libvirt'"
                )));
            }
            if !(cfg.uri.starts_with("qemu") && cfg.uri.contains("://")) {
                return Err(DriverError::permanent(format!(
                    "host {id}: uri '{}' is not a qemu URI (qemu+tcp://, qemu+ssh://, qemu+tls://...)",
                    cfg.uri
                )));
            }
            out.push((id.clone(), cfg));
        }
        Ok(LibvirtDriver::new(out))
    }

    /// How many storage migrations the host's configured migration port range takes at once
    /// (libvirt itself has no slot limit; each storage migration uses 2 incoming ports).
    pub fn port_capacity(&self, host: &HostId) -> Option<u32> {
        self.inner
            .hosts
            .get(host)
            .and_then(|h| h.cfg.port_capacity())
    }

    fn host(&self, id: &HostId) -> DriverResult<Arc<Host>> {
        self.inner.hosts.get(id).cloned().ok_or_else(|| {
            DriverError::permanent(format!("host {id} is not a configured libvirt host"))
        })
    }

    fn record(&self, handle: &MigrationHandle) -> Option<Arc<Migration>> {
        self.inner
            .migrations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&handle.0)
            .cloned()
    }

    fn created_on(&self, vm: &VmId, host: &HostId) -> Vec<String> {
        self.inner
            .created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(vm)
            .map(|v| {
                v.iter()
                    .filter(|(h, _)| h == host)
                    .map(|(_, p)| p.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Everything a prepared migration needs on its thread.
struct Prepared {
    sconn: Connect,
    dconn: Connect,
    dom: Domain,
    dest_xml: String,
    /// (source file, destination file) to stream (offline only).
    copies: Vec<(String, String)>,
    /// (destination path, expected virtual size) to verify (offline only).
    expect: Vec<(String, u64)>,
    /// The provenance record in `dest_xml` (offline: completed with the source files' facts
    /// once they are copied).
    provenance: Provenance,
    flags: u32,
    params: MigrateParameters,
    p2p_uri: Option<String>,
}

impl Inner {
    fn remember_created(&self, vm: &VmId, host: &HostId, path: &str) {
        let mut g = self.created.lock().unwrap_or_else(|p| p.into_inner());
        let v = g.entry(vm.clone()).or_default();
        if !v.iter().any(|(h, p)| h == host && p == path) {
            v.push((host.clone(), path.to_owned()));
        }
    }

    fn forget_created(&self, vm: &VmId, host: &HostId, path: &str) {
        let mut g = self.created.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = g.get_mut(vm) {
            v.retain(|(h, p)| !(h == host && p == path));
        }
    }

    /// Checks, pre-creates destination images and builds the destination XML. Touches nothing
    /// on either host until every check passed.
    fn prepare(&self, req: &MigrationRequest) -> DriverResult<Prepared> {
        let src = self.hosts.get(&req.source).cloned().ok_or_else(|| {
            DriverError::permanent(format!(
                "host {} is not a configured libvirt host",
                req.source
            ))
        })?;
        let dst = self.hosts.get(&req.destination).cloned().ok_or_else(|| {
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
        for (_, dpath, _, _) in &dest_files {
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
                Ok(_) => self.remember_created(&req.vm, &req.destination, dpath),
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
            if *capacity > 0 {
                expect.push((dpath.clone(), *capacity));
            }
        }

        let mut logs = vec![format!("/var/log/libvirt/qemu/{}.log", desc.name)];
        logs.extend(desc.log_files.iter().cloned());
        let mut files = Vec::new();
        for d in &disks {
            files.push(d.path.clone());
            files.extend(d.backing_chain.iter().cloned());
        }
        let provenance = Provenance {
            source_host: req.source.0.clone(),
            source_name: desc.name.clone(),
            run_id: req.run_id.clone(),
            attempt: req.attempt,
            files,
            logs,
            sizes: expect.clone(),
            sources: Vec::new(),
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
        let params = MigrateParameters {
            dest_xml: Some(dest_xml.clone()),
            bandwidth: src.cfg.bandwidth_mib_s,
            ..MigrateParameters::default()
        };
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
}

fn run_live(p: Prepared, rec: &Migration) -> Result<(), DriverError> {
    if rec.cancel.load(Ordering::Relaxed) {
        return Err(
            DriverError::transient("migration aborted before it started")
                .with_code(i64::from(code::OPERATION_ABORTED)),
        );
    }
    let r = match &p.p2p_uri {
        Some(uri) => p
            .dom
            .migrate_to_uri3(Some(uri.as_str()), p.params, p.flags)
            .map(|_| ()),
        None => p.dom.migrate3(&p.dconn, p.params, p.flags).map(|_| ()),
    };
    r.map_err(|e| from_virt(&e, "live migration failed", Phase::Change))
}

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

fn run_offline(p: Prepared, rec: &Migration) -> Result<(), DriverError> {
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
    if !still_off {
        let _ = new.undefine();
        return Err(DriverError::transient(
            "the VM was started on the source during its offline move",
        ));
    }
    p.dom.undefine().map_err(|e| {
        from_virt(
            &e,
            "defined on the destination, but cannot undefine it on the source",
            Phase::Change,
        )
    })
}

fn describe_facts(f: &FileFacts) -> String {
    format!(
        "{} bytes, modified {}, changed {}",
        f.bytes,
        f.mtime.as_deref().unwrap_or("(unknown)"),
        f.ctime.as_deref().unwrap_or("(unknown)")
    )
}

/// Whether the source's disk files are still those an offline copy was taken from, as the
/// destination's provenance recorded them when the copy ended: the same files (`files_now`,
/// every file of every chain of the source definition), each of the recorded size and
/// modification and change times (`facts`: a file's facts now, `None` when it is gone).
/// `Ok(Err(why))` when anything differs or cannot be compared.
fn unchanged_since_copy(
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
    for f in &prov.files {
        let Some(then) = prov.sources.iter().find(|s| &s.path == f) else {
            return Ok(Err(format!(
                "the destination's provenance records no size and change time of source disk {f}"
            )));
        };
        if then.ctime.is_none() {
            return Ok(Err(format!(
                "libvirt reported no change time of source disk {f} when it was copied: nothing proves it unchanged since"
            )));
        }
        match facts(f)? {
            None => return Ok(Err(format!("source disk {f} is gone"))),
            Some(n) if &n != then => {
                return Ok(Err(format!(
                    "source disk {f} changed after its copy ({}, now {})",
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
fn source_superseded(
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
    if prov.source_host != req.source.0 {
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
fn runs_this_attempts_copy(
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
            if p.source_host == req.source.0
                && p.run_id == req.run_id
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

#[async_trait]
impl Driver for LibvirtDriver {
    fn kind(&self) -> &'static str {
        "libvirt"
    }

    fn hosts(&self) -> Vec<HostId> {
        self.inner.hosts.keys().cloned().collect()
    }

    async fn host_info(&self, host: &HostId) -> DriverResult<HostInfo> {
        let h = self.host(host)?;
        blocking_on(vec![h.clone()], Phase::Read, move || {
            let conn = h.conn()?;
            let free_memory_bytes = host::available_memory(&conn)?;
            let free_disk_bytes = match host::pool_path(&conn, &h.cfg.pool) {
                Ok((p, _)) => p.info().map(|i| i.available).unwrap_or(0),
                Err(_) => 0,
            };
            let mut active = 0;
            for d in conn
                .list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
                .map_err(read_err("cannot list VMs"))?
            {
                let job = ffi::job_stats(&d).ok().flatten();
                let migrating = match job.and_then(|j| j.operation) {
                    Some(4) | Some(5) => true,
                    _ => matches!(
                        ffi::state(&d).map(|(s, r)| host::power_of(s, r).1),
                        Ok(Some(Activity::MigratingIn | Activity::MigratingOut))
                    ),
                };
                if migrating {
                    active += 1;
                }
            }
            Ok(HostInfo {
                migration_limit: None,
                active_migrations: active,
                free_memory_bytes,
                free_disk_bytes,
            })
        })
        .await
    }

    async fn list_vms(&self, host: &HostId) -> DriverResult<Vec<VmInfo>> {
        let h = self.host(host)?;
        blocking_on(vec![h.clone()], Phase::Read, move || {
            let conn = h.conn()?;
            let mut out = Vec::new();
            for d in conn
                .list_all_domains(0)
                .map_err(read_err("cannot list VMs"))?
            {
                match host::vm_info(&conn, &d) {
                    Ok(v) => out.push(v),
                    // Gone between the list and the look: not ours to report.
                    Err(e) if e.code == Some(i64::from(code::NO_DOMAIN)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn footprint(&self, host: &HostId, vm: &VmId) -> DriverResult<Footprint> {
        let h = self.host(host)?;
        let (hid, vm) = (host.clone(), vm.clone());
        blocking_on(vec![h.clone()], Phase::Read, move || {
            let conn = h.conn()?;
            let dom = find_domain(&conn, &vm)?
                .ok_or_else(|| DriverError::permanent(format!("VM {vm} not found on {hid}")))?;
            let (_, desc) = describe(&dom, 0)?;
            let disks = host::disks_of(&conn, &desc)?;
            Ok(Footprint {
                memory_bytes: desc.memory_kib * 1024,
                disks,
                config_paths: Vec::new(),
            })
        })
        .await
    }

    async fn start_migration(&self, req: &MigrationRequest) -> DriverResult<MigrationHandle> {
        let src = self.host(&req.source)?;
        let handle = MigrationHandle(format!(
            "{}:{}:{}:{}",
            req.mode, req.vm, req.run_id, req.attempt
        ));
        let rec = Arc::new(Migration {
            mode: req.mode,
            vm: req.vm.clone(),
            source: req.source.clone(),
            post_copy: src.cfg.post_copy,
            auto_converge: src.cfg.auto_converge,
            max_downtime_cap_ms: src.cfg.max_downtime_ms.unwrap_or(2000),
            outcome: Mutex::new(None),
            cancel: AtomicBool::new(false),
            bytes_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            ended: tokio::sync::watch::Sender::new(false),
        });
        let inner = self.inner.clone();
        let r = req.clone();
        let prepared = blocking(Phase::Prepare, move || inner.prepare(&r)).await?;
        self.inner
            .migrations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(handle.0.clone(), rec.clone());
        tracing::info!(vm = %req.vm_name, from = %req.source, to = %req.destination, mode = %req.mode, "libvirt migration starting");
        // The migration call blocks until the end: it gets a blocking thread of its own.
        tokio::task::spawn_blocking(move || {
            let r = match rec.mode {
                MigrationMode::Live => run_live(prepared, &rec),
                MigrationMode::Offline => run_offline(prepared, &rec),
            };
            if let Err(e) = &r {
                tracing::warn!(vm = %rec.vm, error = %e.message, "libvirt migration failed");
            }
            rec.finish(r);
        });
        Ok(handle)
    }

    async fn migration_status(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<MigrationStatus> {
        let rec = self.record(handle);
        if let Some(rec) = &rec {
            match rec.outcome() {
                Some(Ok(())) => return Ok(MigrationStatus::Completed),
                Some(Err(e)) => return Ok(MigrationStatus::Failed(e.into())),
                None if rec.mode == MigrationMode::Offline => {
                    let done = rec.bytes_done.load(Ordering::Relaxed);
                    let total = rec.bytes_total.load(Ordering::Relaxed);
                    return Ok(MigrationStatus::Running(Progress {
                        bytes_done: done,
                        bytes_total: total,
                        bytes_remaining: total.saturating_sub(done),
                        ..Progress::default()
                    }));
                }
                None => {}
            }
        }
        let src = self.host(&req.source)?;
        let dst = self.host(&req.destination)?;
        let vm = req.vm.clone();
        let adopted = rec.is_none();
        blocking(Phase::Read, move || {
            let sconn = src.conn()?;
            let sdom = find_domain(&sconn, &vm)?;
            let job = match &sdom {
                Some(d) => match ffi::job_stats(d) {
                    Ok(j) => j,
                    // Undefined between the look-up and the job query: the migration ended
                    // (UNDEFINE_SOURCE) and there is no job to read.
                    Err(e) if host::code_of(&e) == code::NO_DOMAIN => None,
                    Err(e) => return Err(read_err("cannot read the migration's job")(e)),
                },
                None => None,
            };
            if let Some(job) = job
                && job.operation == Some(5)
            {
                return Ok(MigrationStatus::Running(progress_of(&job)));
            }
            if !adopted {
                // Our thread still runs but the source shows no job yet (or no longer).
                return Ok(MigrationStatus::Pending);
            }
            let dconn = dst.conn()?;
            let on_dst = find_domain(&dconn, &vm)?
                .map(|d| d.is_active().unwrap_or(false))
                .unwrap_or(false);
            let on_src = sdom
                .map(|d| d.is_active().unwrap_or(false))
                .unwrap_or(false);
            Ok(if on_dst && !on_src {
                MigrationStatus::Completed
            } else {
                MigrationStatus::Failed(Failure::new(
                    ErrorClass::Indeterminate,
                    "no migration job runs and the VM is not running on the destination only",
                ))
            })
        })
        .await
    }

    /// The migration call runs on a thread of its own and returns when libvirt says the
    /// migration ended: its outcome is the answer, with no poll in between. Migrations adopted
    /// after a restart (no thread of ours) are left to the polls.
    async fn wait_for_end(
        &self,
        _req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> Option<DriverResult<MigrationStatus>> {
        let rec = self.record(handle)?;
        let mut ended = rec.ended.subscribe();
        // The sender lives in `rec`, which we hold: the wait ends only when `finish` runs.
        let _ = ended.wait_for(|done| *done).await;
        Some(Ok(match rec.outcome()? {
            Ok(()) => MigrationStatus::Completed,
            Err(e) => MigrationStatus::Failed(e.into()),
        }))
    }

    async fn abort_migration(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<()> {
        let rec = self.record(handle);
        if let Some(rec) = &rec {
            rec.cancel.store(true, Ordering::Relaxed);
            if rec.outcome().is_some() || rec.mode == MigrationMode::Offline {
                return Ok(());
            }
        }
        let src = self.host(&req.source)?;
        let dst = self.host(&req.destination)?;
        let req2 = req.clone();
        blocking(Phase::Change, move || {
            let conn = src.conn()?;
            let vm = &req2.vm;
            // Our migration thread may not have reached libvirt yet: until it ends or its job
            // is aborted, keep trying (it checks `cancel` before it calls libvirt, too).
            for _ in 0..100 {
                let Some(dom) = find_domain(&conn, vm)? else {
                    return Ok(());
                };
                match ffi::abort_job(&dom) {
                    Ok(()) => return wait_job_end(&conn, vm, rec.as_deref()),
                    // No job: it has not started or has already ended.
                    Err(e) if e.code().to_raw() as i32 == code::OPERATION_INVALID => match &rec {
                        Some(r) if r.outcome().is_none() => {
                            std::thread::sleep(std::time::Duration::from_millis(100))
                        }
                        _ => return roll_back_interrupted(&dom, &dst, &req2),
                    },
                    Err(e) => {
                        return Err(from_virt(&e, "cannot abort the migration", Phase::Change));
                    }
                }
            }
            Err(DriverError::indeterminate(
                "the migration neither ended nor accepted the abort within 10 s",
            ))
        })
        .await
    }

    async fn converge(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
        aid: ConvergenceAid,
    ) -> DriverResult<bool> {
        let Some(rec) = self.record(handle) else {
            return Ok(false);
        };
        if rec.mode != MigrationMode::Live || rec.outcome().is_some() {
            return Ok(false);
        }
        match aid {
            // libvirt arms auto-converge only when a migration starts (config auto_converge);
            // once armed, QEMU throttles the guest by itself when it does not converge.
            ConvergenceAid::AutoConverge => Ok(rec.auto_converge),
            ConvergenceAid::PostCopy if !rec.post_copy => Ok(false),
            ConvergenceAid::PostCopy | ConvergenceAid::RaiseDowntime => {
                let src = self.host(&rec.source)?;
                let vm = req.vm.clone();
                let cap = rec.max_downtime_cap_ms;
                blocking(Phase::Change, move || {
                    let conn = src.conn()?;
                    let Some(dom) = find_domain(&conn, &vm)? else {
                        return Ok(false);
                    };
                    if aid == ConvergenceAid::PostCopy {
                        ffi::start_post_copy(&dom).map_err(|e| {
                            from_virt(&e, "cannot switch to post-copy", Phase::Change)
                        })?;
                        return Ok(true);
                    }
                    let now = ffi::max_downtime(&dom)
                        .map_err(read_err("cannot read the allowed downtime"))?;
                    let next = (now.max(150) * 2).min(cap);
                    if next <= now {
                        return Ok(false);
                    }
                    dom.migrate_set_max_downtime(next, 0).map_err(|e| {
                        from_virt(&e, "cannot raise the allowed downtime", Phase::Change)
                    })?;
                    Ok(true)
                })
                .await
            }
        }
    }

    async fn locate(&self, req: &MigrationRequest) -> DriverResult<Location> {
        let src = self.host(&req.source)?;
        let dst = self.host(&req.destination)?;
        let vm = req.vm.clone();
        let ours: Option<String> = self
            .inner
            .migrations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(_, m)| m.vm == req.vm && m.outcome().is_none())
            .map(|(h, _)| h.clone());
        blocking_on(vec![src.clone(), dst.clone()], Phase::Read, move || {
            let sconn = src.conn()?;
            let dconn = dst.conn()?;
            let on_source = match find_domain(&sconn, &vm)? {
                Some(d) => Some(host::vm_info(&sconn, &d)?),
                None => None,
            };
            let on_destination = match find_domain(&dconn, &vm)? {
                Some(d) => Some(host::vm_info(&dconn, &d)?),
                None => None,
            };
            // A migration that is not over: its job runs, or it was left between Perform and
            // Confirm by a client that went away (its abort rolls it back).
            let migrating = on_source.as_ref().is_some_and(|v| {
                matches!(
                    v.activity,
                    Activity::MigratingOut | Activity::MigrationInterrupted
                )
            });
            let running_migration = match (migrating, ours) {
                (true, Some(h)) => Some(MigrationHandle(h)),
                (true, None) => Some(MigrationHandle(format!("adopted:{vm}"))),
                (false, Some(h)) => Some(MigrationHandle(h)), // our offline copy
                (false, None) => None,
            };
            Ok(Location {
                on_source,
                on_destination,
                running_migration,
            })
        })
        .await
    }

    async fn verify(&self, req: &MigrationRequest) -> DriverResult<Verification> {
        let src = self.host(&req.source)?;
        let dst = self.host(&req.destination)?;
        let req = req.clone();
        let (vm, mode) = (req.vm.clone(), req.mode);
        blocking_on(vec![src.clone(), dst.clone()], Phase::Read, move || {
            let dconn = dst.conn()?;
            let sconn = src.conn()?;
            let mut detail = Vec::new();
            let ddom = find_domain(&dconn, &vm)?;
            let mut used = Vec::new();
            let mut provenance = None;
            let mut pools = host::Pools::default();
            // Destination disks with no recorded size (proven by their size only if the
            // source's copy is gone).
            let mut unrecorded = Vec::new();
            let (on_destination, mut disks_present) = match &ddom {
                None => {
                    detail.push("not defined on the destination".to_owned());
                    (false, false)
                }
                Some(d) => {
                    let active = d.is_active().unwrap_or(false);
                    let persistent = d.is_persistent().unwrap_or(false);
                    let on = match mode {
                        MigrationMode::Live => active && persistent,
                        MigrationMode::Offline => persistent,
                    };
                    if !on {
                        detail.push(format!(
                            "on the destination: active {active}, persistent {persistent}"
                        ));
                    }
                    let (_, desc) = describe(d, 0)?;
                    used = host::paths_of(&dconn, &desc, &mut pools);
                    let mut ok = !desc.disks.is_empty() || desc.provenance.is_some();
                    for disk in &desc.disks {
                        match pools.vol_at(&dconn, &disk.source)? {
                            Some(v) => {
                                let (cap, _, _, _) = host::vol_facts(&v)?;
                                let want = desc.provenance.as_ref().and_then(|p| {
                                    p.sizes
                                        .iter()
                                        .find(|(p, _)| p == &disk.source)
                                        .map(|(_, s)| *s)
                                });
                                if want.is_some_and(|w| w != cap) || cap == 0 {
                                    ok = false;
                                    detail.push(format!(
                                        "{} has size {cap}, expected {want:?}",
                                        disk.source
                                    ));
                                }
                                if want.is_none() {
                                    unrecorded.push(disk.source.clone());
                                }
                            }
                            None => {
                                ok = false;
                                detail.push(format!("{} missing on the destination", disk.source));
                            }
                        }
                    }
                    provenance = desc.provenance;
                    (on, ok)
                }
            };
            let sdom = find_domain(&sconn, &vm)?;
            let stopped_on_source = match &sdom {
                None => true,
                Some(d) if !d.is_active().unwrap_or(true) => true,
                // Paused by a migration its client left between Finish and Confirm: the
                // source copy does not run, and the destination runs this attempt's copy. The
                // clean-up stops and removes it, as Confirm would have.
                Some(d) if mode == MigrationMode::Live && host::interrupted_migration(d)? => {
                    match runs_this_attempts_copy(&dconn, &req)? {
                        Ok(()) => true,
                        Err(why) => {
                            detail.push(format!(
                                "paused on the source by an interrupted migration, and {why}"
                            ));
                            false
                        }
                    }
                }
                Some(_) => {
                    detail.push("still running on the source".to_owned());
                    false
                }
            };
            // Offline, still defined (shut off) on the source: vmove stopped between the
            // define on the destination and the undefine on the source. The destination's
            // copy is the VM only if it is vmove's copy of this source definition and the
            // source did not change since (else its data is newer than the copy's).
            if mode == MigrationMode::Offline
                && on_destination
                && disks_present
                && stopped_on_source
                && let Some(sdom) = &sdom
            {
                let why_not = if let Some(d) = unrecorded.first() {
                    Err(format!(
                        "the destination's provenance records no size of its disk {d}"
                    ))
                } else {
                    source_superseded(&sconn, sdom, provenance.as_ref(), &req)?
                };
                if let Err(why) = why_not {
                    disks_present = false;
                    detail.push(format!(
                        "defined on both hosts, and the copy on {} is not proven the VM's current disks: {why}",
                        req.destination
                    ));
                }
            }
            let v = Verification {
                on_destination,
                disks_present,
                stopped_on_source,
                detail: detail.join("; "),
            };
            if v.is_proof() {
                // The images are the VM's disks now, proven by the VM itself: their provenance
                // markers go (removing a marker is always safe; see provenance.rs).
                for p in &used {
                    if let Err(e) = provenance::unmark(&dconn, p, &vm) {
                        tracing::warn!(path = %p, error = %e.message, "cannot remove a provenance marker");
                    }
                }
            }
            Ok(v)
        })
        .await
    }

    async fn leftovers(
        &self,
        req: &MigrationRequest,
        context: LeftoverContext,
    ) -> DriverResult<Vec<Leftover>> {
        let src = self.host(&req.source)?;
        let dst = self.host(&req.destination)?;
        let req2 = req.clone();
        let created = self.created_on(&req.vm, &req.destination);
        blocking(Phase::Read, move || {
            leftovers_sync(&src, &dst, &req2, context, &created)
        })
        .await
    }

    async fn remove_leftover(
        &self,
        req: &MigrationRequest,
        leftover: &Leftover,
        context: LeftoverContext,
    ) -> DriverResult<()> {
        let src = self.host(&req.source)?;
        let dst = self.host(&req.destination)?;
        let inner = self.inner.clone();
        let (req2, lo) = (req.clone(), leftover.clone());
        let created = self.created_on(&req.vm, &req.destination);
        blocking(Phase::Change, move || {
            let r = remove_sync(&src, &dst, &req2, &lo, context, &created);
            if r.is_ok() && lo.kind == LeftoverKind::DiskImage {
                inner.forget_created(&req2.vm, &lo.host, &lo.what);
            }
            r
        })
        .await
    }
}

/// The abort of a migration with no job left: if the source copy waits "paused (migrating)"
/// for a migration its client left after Perform ([`host::interrupted_migration`]), roll it
/// back as the migration's Confirm does on failure (`qemuMigrationSrcConfirmPhase` with
/// `cancelled`: the source's CPUs are resumed), but only once the destination has no copy of
/// the VM that runs or is arriving (re-checked here; else `Permanent`, nothing changed). A pause
/// its owner asked for (reason `user`) or any other state is left as it is.
fn roll_back_interrupted(dom: &Domain, dst: &Host, req: &MigrationRequest) -> DriverResult<()> {
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

/// After an abort was accepted: waits (up to 30 s) until the migration has really ended (our
/// migration call returned, or the source shows no migration job), so that afterwards the VM
/// runs on the source only. A migration whose peer hangs can take a while to unwind.
fn wait_job_end(conn: &Connect, vm: &VmId, rec: Option<&Migration>) -> DriverResult<()> {
    for _ in 0..150 {
        let ended = match rec {
            Some(r) => r.outcome().is_some(),
            None => match find_domain(conn, vm)? {
                None => true,
                Some(d) => !matches!(ffi::job_stats(&d), Ok(Some(j)) if j.operation == Some(5)),
            },
        };
        if ended {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Err(DriverError::transient(
        "the abort was accepted but the migration has not ended within 30 s",
    ))
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
                    .is_some_and(|p| p.source_host == req.source.0)
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
            d.undefine().map_err(del_err(&lo.what))
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

    #[test]
    fn from_config_names_a_bad_key() {
        let mut t = toml::Table::new();
        t.insert("uri".into(), "qemu+tcp://127.0.0.2/system".into());
        t.insert("pooll".into(), "images".into());
        let e = LibvirtDriver::from_config(&[(HostId::new("hostA"), t)]).unwrap_err();
        assert!(
            e.message.contains("pooll") && e.message.contains("hostA"),
            "{}",
            e.message
        );
    }

    #[test]
    fn from_config_accepts_cli_keys_and_defaults_the_pool() {
        let t: toml::Table = toml::from_str(
            "driver = \"libvirt\"\nuri = \"qemu+ssh://root@kvm1/system\"\nmax_migrations = 2\nmigration_ports = [49152, 49215]",
        )
        .unwrap();
        let d = LibvirtDriver::from_config(&[(HostId::new("kvm1"), t)]).unwrap();
        assert_eq!(d.hosts(), vec![HostId::new("kvm1")]);
        assert_eq!(d.port_capacity(&HostId::new("kvm1")), Some(32));
        assert_eq!(d.inner.hosts[&HostId::new("kvm1")].cfg.pool, "images");
    }

    #[test]
    fn from_config_refuses_a_non_qemu_uri_and_another_driver() {
        let t: toml::Table = toml::from_str("uri = \"xen:///system\"").unwrap();
        assert!(
            LibvirtDriver::from_config(&[(HostId::new("x"), t)])
                .unwrap_err()
                .message
                .contains("xen:///")
        );
        let t: toml::Table =
            toml::from_str("uri = \"qemu:///system\"\ndriver = \"hyperv\"").unwrap();
        assert!(
            LibvirtDriver::from_config(&[(HostId::new("x"), t)])
                .unwrap_err()
                .message
                .contains("hyperv")
        );
    }

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

    #[test]
    fn progress_combines_memory_and_disk_figures() {
        let j = ffi::JobFigures {
            job_type: 2,
            operation: Some(5),
            data_processed: 10,
            data_remaining: 30,
            data_total: 40,
            dirty_rate_pages: Some(100),
            page_size: Some(4096),
            mem_bps: Some(1000),
            disk_bps: Some(500),
            iteration: Some(3),
            expected_downtime_ms: None,
        };
        let p = progress_of(&j);
        assert_eq!(
            (p.bytes_done, p.bytes_remaining, p.bytes_total),
            (10, 30, 40)
        );
        assert_eq!(p.dirty_rate, Some(409600));
        assert_eq!(p.transfer_rate, Some(1500));
        assert_eq!(p.iteration, Some(3));
    }
}
