//! Blocking operations on one libvirt host (run them inside `spawn_blocking`).
//!
//! Files are seen through libvirt's storage API only: a file's folder is an active `dir` pool
//! (the configured one, any other whose target is that folder, or a transient pool
//! `vmove-<hash>` we create for it), refreshed before each look, so `vmove` works against remote
//! hosts without a shell on them.

use crate::error::{Phase, from_virt};
use crate::ffi;
use crate::xml::{self, DomainDesc};
use std::path::Path;
use std::sync::Mutex;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::sys;
use vmove_driver::*;

/// Shorthand for a libvirt error in a read-only call.
pub fn read_err(what: &str) -> impl Fn(virt::error::Error) -> DriverError + '_ {
    move |e| from_virt(&e, what, Phase::Read)
}

/// The raw libvirt error code of an error.
pub fn code_of(e: &virt::error::Error) -> i32 {
    e.code().to_raw() as i32
}

/// How long opening a connection may take before the host counts as not answering.
pub const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Registers libvirt's default event loop once per process and runs it on a thread of its
/// own. Keepalive needs it: without a registered loop libvirt never sends a probe, and a call
/// to a host that went silent waits for an answer forever.
pub fn event_loop() -> DriverResult<()> {
    static LOOP: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOOP.get_or_init(|| {
        virt::event::event_register_default_impl()
            .map_err(|e| format!("cannot register libvirt's event loop: {e}"))?;
        std::thread::Builder::new()
            .name("vmove-libvirt-events".into())
            .spawn(|| {
                loop {
                    if let Err(e) = virt::event::event_run_default_impl() {
                        tracing::warn!("libvirt event loop: {e}");
                        std::thread::sleep(std::time::Duration::from_millis(200));
                    }
                }
            })
            .map(|_| ())
            .map_err(|e| format!("cannot start libvirt's event loop thread: {e}"))
    })
    .clone()
    .map_err(DriverError::permanent)
}

/// Opens a connection and turns keepalive on as configured.
fn open_with_keepalive(id: &HostId, cfg: &crate::LibvirtHostConfig) -> DriverResult<Connect> {
    let conn = Connect::open(Some(&cfg.uri)).map_err(|e| {
        let mut err = from_virt(
            &e,
            &format!("cannot connect to {id} ({})", redact_uris(&cfg.uri)),
            Phase::Read,
        );
        if err.class == ErrorClass::Permanent && err.code != Some(45) {
            err.class = ErrorClass::Transient;
        }
        err
    })?;
    if cfg.keepalive_interval_s > 0 {
        let interval = i32::try_from(cfg.keepalive_interval_s).unwrap_or(i32::MAX);
        if let Err(e) = conn.set_keep_alive(interval, cfg.keepalive_count) {
            // Not fatal: the calls work, only a silent host is noticed late (the runtime's call
            // timeout still bounds them).
            tracing::warn!("{id}: cannot turn libvirt keepalive on: {e}");
        }
    }
    Ok(conn)
}

/// One configured host and its shared connection for short calls.
#[derive(Debug)]
pub struct Host {
    /// Configured name.
    pub id: HostId,
    /// Its configuration.
    pub cfg: crate::LibvirtHostConfig,
    shared: Mutex<Option<ConnHolder>>,
    creating: Mutex<()>,
}

struct ConnHolder(Connect);
impl std::fmt::Debug for ConnHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connect")
    }
}

impl Host {
    /// A host from its configuration (no connection yet).
    pub fn new(id: HostId, cfg: crate::LibvirtHostConfig) -> Self {
        Host {
            id,
            cfg,
            shared: Mutex::new(None),
            creating: Mutex::new(()),
        }
    }

    /// Held while this process checks destination paths and pre-creates images on the host,
    /// so that its own migrations do so one after the other. libvirt refuses to refresh a pool
    /// while a volume of it is being created ("asynchronous jobs running"); four migrations
    /// prepared at once each found another's image being created and waited out a retry,
    /// and their starts came 0.2 s apart (lab benchmark, docs/BENCHMARKS.md). In turn, each
    /// waits only for the other's create itself (tens of ms). It also makes the check that a
    /// path is free and the image's creation one step for this process.
    pub fn creating(&self) -> std::sync::MutexGuard<'_, ()> {
        self.creating.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection of its own (one per migration: libvirt serves 5 requests at once per
    /// connection, and a long migration call must not block the short ones).
    pub fn open(&self) -> DriverResult<Connect> {
        event_loop()?;
        let cfg = self.cfg.clone();
        let id = self.id.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        // libvirt's open has no timeout of its own and keepalive only starts once it is done:
        // against a frozen daemon (the kernel still accepts the TCP connection) it waits
        // forever. It runs on a thread of its own and is given up after OPEN_TIMEOUT; a late
        // connection is closed when that thread's send finds nobody listening.
        let spawned = std::thread::Builder::new()
            .name(format!("vmove-open-{id}"))
            .spawn(move || {
                let _ = tx.send(open_with_keepalive(&id, &cfg));
            });
        if let Err(e) = spawned {
            return Err(DriverError::transient(format!(
                "cannot connect to {} ({}): cannot start a thread: {e}",
                self.id,
                redact_uris(&self.cfg.uri)
            )));
        }
        match rx.recv_timeout(OPEN_TIMEOUT) {
            Ok(r) => r,
            Err(_) => Err(DriverError::transient(format!(
                "cannot connect to {} ({}): its libvirtd did not answer within {} s \
                 (stopped, overloaded or unreachable)",
                self.id,
                redact_uris(&self.cfg.uri),
                OPEN_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Whether the shared connection was open and has been closed under us (keepalive found
    /// the host silent, or the socket broke).
    pub fn shared_connection_lost(&self) -> bool {
        let g = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        matches!(g.as_ref(), Some(ConnHolder(c)) if !c.is_alive().unwrap_or(false))
    }

    /// The shared connection for short calls, reopened when it died. The lock is not held
    /// while a new connection opens (up to `OPEN_TIMEOUT` against a frozen daemon): every
    /// caller would wait for the one opening, one after the other. Two callers that find it
    /// dead at once each open one; the first kept is shared, the other is used once and dropped.
    pub fn conn(&self) -> DriverResult<Connect> {
        if let Some(c) = self.live_shared() {
            return Ok(c);
        }
        let c = self.open()?;
        let mut g = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_ref() {
            Some(ConnHolder(kept)) if kept.is_alive().unwrap_or(false) => Ok(c),
            _ => {
                *g = Some(ConnHolder(c.clone()));
                Ok(c)
            }
        }
    }

    /// The shared connection, if it is open and alive.
    fn live_shared(&self) -> Option<Connect> {
        let g = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_ref() {
            Some(ConnHolder(c)) if c.is_alive().unwrap_or(false) => Some(c.clone()),
            _ => None,
        }
    }
}

/// The memory a new VM can have on the host, in bytes: free memory plus the buffers and page
/// cache the kernel gives back when a process needs it (what Linux's `MemAvailable` and Nova's
/// libvirt driver count). libvirt's free memory alone (`MemFree`) leaves the cache out: on the
/// lab, with 22 of 24 GiB in page cache, a host with 23 GiB to give looked 1.5 GiB free, and
/// `vmove plan` said two 64 MiB VMs had no room. Falls back to `MemFree` when the figures lack
/// buffers and cache.
pub fn available_memory(conn: &Connect) -> DriverResult<u64> {
    // Figures it cannot read count as lacking: the fallback below answers.
    let stats = crate::ffi::node_memory_stats(conn).unwrap_or_default();
    let field = |name: &str| stats.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    if let (Some(free), Some(buffers), Some(cached)) =
        (field("free"), field("buffers"), field("cached"))
    {
        return Ok(free
            .saturating_add(buffers)
            .saturating_add(cached)
            .saturating_mul(1024));
    }
    conn.free_memory()
        .map_err(read_err("cannot read free memory"))
}

/// The domain with this UUID, if defined on the host.
pub fn find_domain(conn: &Connect, vm: &VmId) -> DriverResult<Option<Domain>> {
    match conn.lookup_domain_by_uuid_string(vm.as_str()) {
        Ok(d) => Ok(Some(d)),
        Err(e) if code_of(&e) == crate::error::code::NO_DOMAIN => Ok(None),
        Err(e) => Err(read_err("cannot look the VM up")(e)),
    }
}

/// The domain with this name, if defined on the host.
pub fn find_domain_by_name(conn: &Connect, name: &str) -> DriverResult<Option<Domain>> {
    match conn.lookup_domain_by_name(name) {
        Ok(d) => Ok(Some(d)),
        Err(e) if code_of(&e) == crate::error::code::NO_DOMAIN => Ok(None),
        Err(e) => Err(read_err("cannot look the VM up")(e)),
    }
}

/// The domain's XML (live definition when running), parsed.
pub fn describe(dom: &Domain, flags: u32) -> DriverResult<(String, DomainDesc)> {
    let raw = dom
        .xml_desc(flags)
        .map_err(read_err("cannot read the VM's definition"))?;
    let desc = xml::parse_domain(&raw).map_err(|e| DriverError::transient(e.to_string()))?;
    Ok((raw, desc))
}

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

/// A VM's disks with their sizes and full backing chains.
pub fn disks_of(conn: &Connect, desc: &DomainDesc) -> DriverResult<Vec<Disk>> {
    let mut out = Vec::new();
    for d in &desc.disks {
        let mut disk = Disk {
            path: d.source.clone(),
            format: d.format.clone().unwrap_or_else(|| "raw".to_owned()),
            virtual_bytes: 0,
            allocated_bytes: 0,
            backing_chain: Vec::new(),
        };
        let mut next = Some(d.source.clone());
        let mut first = true;
        while let Some(path) = next.take() {
            let Some(vol) = vol_at(conn, &path)? else {
                break;
            };
            let (cap, alloc, format, backing) = vol_facts(&vol)?;
            if first {
                disk.virtual_bytes = cap;
                if d.format.is_none()
                    && let Some(f) = format
                {
                    disk.format = f;
                }
                first = false;
            } else {
                disk.backing_chain.push(path.clone());
            }
            disk.allocated_bytes += alloc;
            if disk.backing_chain.len() > 32 {
                break; // A loop in a chain (should not exist): stop counting.
            }
            next = backing;
        }
        // A running domain's XML names the chain even where volumes are not visible.
        if disk.backing_chain.is_empty() && !d.backing.is_empty() {
            disk.backing_chain = d.backing.clone();
        }
        out.push(disk);
    }
    Ok(out)
}

/// Power state and its words, from libvirt's state and reason.
pub fn power_of(state: i32, reason: i32) -> (PowerState, Option<Activity>, Health) {
    use sys::*;
    match state as u32 {
        VIR_DOMAIN_RUNNING => (PowerState::Running, None, Health::Ok),
        VIR_DOMAIN_BLOCKED => (PowerState::Running, None, Health::Ok),
        VIR_DOMAIN_PAUSED => {
            let act = match reason as u32 {
                VIR_DOMAIN_PAUSED_MIGRATION | VIR_DOMAIN_PAUSED_STARTING_UP => {
                    Some(Activity::MigratingIn)
                }
                VIR_DOMAIN_PAUSED_POSTCOPY => Some(Activity::MigratingOut),
                _ => None,
            };
            let health = match reason as u32 {
                VIR_DOMAIN_PAUSED_IOERROR => Health::Bad("paused on an I/O error".to_owned()),
                VIR_DOMAIN_PAUSED_CRASHED => Health::Bad("crashed".to_owned()),
                VIR_DOMAIN_PAUSED_POSTCOPY_FAILED => {
                    Health::Bad("post-copy migration failed".to_owned())
                }
                _ => Health::Ok,
            };
            (PowerState::Paused, act, health)
        }
        VIR_DOMAIN_SHUTOFF => (PowerState::Off, None, Health::Ok),
        VIR_DOMAIN_SHUTDOWN => (
            PowerState::Transitioning("shutting down".to_owned()),
            None,
            Health::Ok,
        ),
        VIR_DOMAIN_CRASHED => (PowerState::Off, None, Health::Bad("crashed".to_owned())),
        VIR_DOMAIN_PMSUSPENDED => (PowerState::Saved, None, Health::Ok),
        _ => (
            PowerState::Transitioning("no state".to_owned()),
            None,
            Health::Ok,
        ),
    }
}

/// Whether a domain state is "paused (migrating)": `VIR_DOMAIN_PAUSED` with reason
/// `VIR_DOMAIN_PAUSED_MIGRATION`. A pause its owner asked for (reason `user`) is not.
pub fn paused_by_migration(state: i32, reason: i32) -> bool {
    state as u32 == sys::VIR_DOMAIN_PAUSED && reason as u32 == sys::VIR_DOMAIN_PAUSED_MIGRATION
}

/// Whether the domain waits, paused on a migration's source, for the end of a migration that
/// nobody drives any more: "paused (migrating)" and no job at all.
///
/// libvirt's QEMU driver pauses the source at the switchover (the end of Perform) with reason
/// "migration". When the connection that drives a non-p2p migration closes after Perform and
/// before Confirm (the client was killed), the source's close callback
/// (`qemuMigrationAnyConnectionClosed`, src/qemu/qemu_migration.c, phase `perform3_done`:
/// "Migration of domain %s finished but we don't know if the domain was successfully
/// started on destination or not") ends the migration job and leaves the domain paused, "to
/// let higher levels decide". During a live migration the source has a job (operation
/// "outgoing migration"), the destination's incoming domain answers job queries with code 84,
/// so neither looks like this.
pub fn interrupted_migration(dom: &Domain) -> DriverResult<bool> {
    let (state, reason) = ffi::state(dom).map_err(read_err("cannot read the VM's state"))?;
    if !paused_by_migration(state, reason) {
        return Ok(false);
    }
    match ffi::job_stats(dom) {
        Ok(job) => Ok(job.is_none()),
        Err(e) if code_of(&e) == 84 || e.message().contains("only on the source") => Ok(false),
        Err(e) => Err(read_err("cannot read the VM's job")(e)),
    }
}

/// What the job with this libvirt operation number means for us.
pub fn activity_of_operation(op: Option<i32>) -> Activity {
    match op {
        Some(4) => Activity::MigratingIn,
        Some(5) => Activity::MigratingOut,
        Some(9) => Activity::BackingUp,
        Some(1) => Activity::OtherJob("starting".to_owned()),
        Some(2) => Activity::OtherJob("saving".to_owned()),
        Some(3) => Activity::OtherJob("restoring".to_owned()),
        Some(6) => Activity::OtherJob("snapshot".to_owned()),
        Some(7) => Activity::OtherJob("snapshot revert".to_owned()),
        Some(8) => Activity::OtherJob("memory dump".to_owned()),
        Some(10) => Activity::OtherJob("snapshot delete".to_owned()),
        _ => Activity::OtherJob("a libvirt job".to_owned()),
    }
}

/// What a block job of this type means for us.
pub fn activity_of_block_job(t: i32) -> Activity {
    match t {
        5 => Activity::BackingUp,
        1 => Activity::OtherJob("block pull".to_owned()),
        2 => Activity::OtherJob("block copy".to_owned()),
        3 | 4 => Activity::OtherJob("block commit".to_owned()),
        _ => Activity::OtherJob("a block job".to_owned()),
    }
}

/// A domain as vmove sees it.
pub fn vm_info(conn: &Connect, dom: &Domain) -> DriverResult<VmInfo> {
    let (state, reason) = ffi::state(dom).map_err(read_err("cannot read the VM's state"))?;
    let active = dom
        .is_active()
        .map_err(read_err("cannot read the VM's state"))?;
    let (_, desc) = describe(dom, 0)?;
    let (power, paused_activity, mut health) = power_of(state, reason);
    let mut activity = Activity::Idle;
    if active {
        match ffi::job_stats(dom) {
            Ok(Some(job)) => activity = activity_of_operation(job.operation),
            Ok(None) if paused_by_migration(state, reason) => {
                // No job, yet paused by a migration: one whose client went away after Perform
                // (see `interrupted_migration`).
                activity = Activity::MigrationInterrupted;
            }
            Ok(None) => {}
            // The destination of an incoming migration answers "migration statistics are
            // available only on the source host" (84, operation unsupported).
            Err(e) if code_of(&e) == 84 || e.message().contains("only on the source") => {
                activity = Activity::MigratingIn;
            }
            Err(e) => return Err(read_err("cannot read the VM's job")(e)),
        }
        // Before the calls below: on the destination of an incoming migration the domain is
        // paused and the migration holds its job; a block job query would wait for that job
        // (30 s, then "cannot acquire state change lock") for the whole migration.
        if activity == Activity::Idle
            && let Some(a) = paused_activity
        {
            activity = a;
        }
        if activity == Activity::Idle && ffi::backup_running(dom) {
            activity = Activity::BackingUp;
        }
        if activity == Activity::Idle {
            for d in &desc.disks {
                if let Ok(Some(t)) = ffi::block_job_type(dom, &d.target) {
                    activity = activity_of_block_job(t);
                    break;
                }
                if d.mirror {
                    activity = Activity::OtherJob("block copy".to_owned());
                    break;
                }
            }
        }
    }
    if activity != Activity::Idle && health == Health::Ok {
        health = Health::InService;
    }
    let disks = disks_of(conn, &desc)?;
    Ok(VmInfo {
        id: VmId::new(desc.uuid.clone()),
        name: desc.name.clone(),
        power,
        health,
        activity,
        memory_bytes: desc.memory_kib * 1024,
        disk_bytes: disks.iter().map(|d| d.allocated_bytes).sum(),
    })
}

/// Every file path used by any domain defined on the host (tops and known chains). `pools`
/// is the caller's look-ups of this call: a removal shares them with its own look-up.
pub fn paths_in_use(conn: &Connect, pools: &mut Pools) -> DriverResult<Vec<String>> {
    paths_in_use_except(conn, None, pools)
}

/// Every file path used by the domains defined on the host other than `vm` (a definition
/// being removed as a leftover does not keep its own files; another VM sharing a file does).
pub fn paths_in_use_by_others(
    conn: &Connect,
    vm: &VmId,
    pools: &mut Pools,
) -> DriverResult<Vec<String>> {
    paths_in_use_except(conn, Some(vm), pools)
}

fn paths_in_use_except(
    conn: &Connect,
    except: Option<&VmId>,
    pools: &mut Pools,
) -> DriverResult<Vec<String>> {
    let doms = conn
        .list_all_domains(0)
        .map_err(read_err("cannot list VMs"))?;
    let mut out = Vec::new();
    for d in doms {
        let Ok((_, desc)) = describe(&d, 0) else {
            continue;
        };
        if except.is_some_and(|vm| desc.uuid.eq_ignore_ascii_case(vm.as_str())) {
            continue;
        }
        out.extend(paths_of(conn, &desc, pools));
    }
    Ok(out)
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

/// Every file path one domain uses (tops, chains, logs). A running domain's live definition
/// lists the whole chain QEMU has open (it ends in `<backingStore/>`): taken from there. An
/// inactive definition lists none, so its chains are followed volume by volume (three calls
/// per layer). On a source host being cleaned most VMs run, and every removal asks this of
/// every VM (docs/BENCHMARKS.md).
pub fn paths_of(conn: &Connect, desc: &DomainDesc, pools: &mut Pools) -> Vec<String> {
    let mut out = Vec::new();
    for disk in &desc.disks {
        out.push(disk.source.clone());
        out.extend(disk.backing.iter().cloned());
        if desc.active && disk.chain_complete {
            continue;
        }
        // Inactive domains do not list chains in their XML: follow the volumes.
        let mut next = Some(disk.source.clone());
        let mut n = 0;
        while let Some(p) = next.take() {
            n += 1;
            if n > 32 {
                break;
            }
            let Ok(Some(v)) = pools.vol_at(conn, &p) else {
                break;
            };
            let Ok((_, _, _, b)) = vol_facts(&v) else {
                break;
            };
            if let Some(b) = &b {
                out.push(b.clone());
            }
            next = b;
        }
    }
    for l in &desc.log_files {
        out.push(l.clone());
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Only "paused (migrating)" marks a migration's pause: a pause its owner asked for, an I/O
    /// error's, a snapshot's or an incoming start's never makes vmove resume or stop a VM.
    #[test]
    fn only_a_pause_caused_by_a_migration_reads_as_one() {
        let paused = sys::VIR_DOMAIN_PAUSED as i32;
        assert!(paused_by_migration(
            paused,
            sys::VIR_DOMAIN_PAUSED_MIGRATION as i32
        ));
        for reason in [
            sys::VIR_DOMAIN_PAUSED_USER,
            sys::VIR_DOMAIN_PAUSED_IOERROR,
            sys::VIR_DOMAIN_PAUSED_SNAPSHOT,
            sys::VIR_DOMAIN_PAUSED_STARTING_UP,
            sys::VIR_DOMAIN_PAUSED_POSTCOPY,
            sys::VIR_DOMAIN_PAUSED_UNKNOWN,
        ] {
            assert!(
                !paused_by_migration(paused, reason as i32),
                "reason {reason}"
            );
        }
        // Running after a migration (reason 2, the same number) is not a pause.
        assert!(!paused_by_migration(
            sys::VIR_DOMAIN_RUNNING as i32,
            sys::VIR_DOMAIN_RUNNING_MIGRATED as i32
        ));
    }
}
