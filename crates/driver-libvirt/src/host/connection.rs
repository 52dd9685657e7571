//! Connections to a host: opened with keepalive (libvirt's event loop), one shared per host,
//! and the host's free memory.

use crate::error::{Phase, from_virt};
use std::sync::Mutex;
use virt::connect::Connect;
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

/// How long the event loop thread waits after a failed turn before the next.
const EVENT_LOOP_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

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
                        std::thread::sleep(EVENT_LOOP_RETRY);
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
        if err.class == ErrorClass::Permanent
            && err.code != Some(i64::from(crate::error::code::AUTH_FAILED))
        {
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
    /// The host's name in the configuration (`[hosts.<name>]`).
    pub id: HostId,
    /// Its `[hosts.<name>]` table.
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
/// libvirt driver count); libvirt's free memory alone (`MemFree`) leaves the cache out
/// (docs/drivers/libvirt.md). Falls back to `MemFree` when the figures lack buffers and cache.
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
