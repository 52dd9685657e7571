//! What the driver remembers between calls (its hosts, the migrations it started, the
//! destination images it created) and how a libvirt call leaves the async runtime.

use crate::error::Phase;
use crate::host::Host;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use vmove_driver::*;

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) hosts: BTreeMap<HostId, Arc<Host>>,
    pub(super) migrations: Mutex<HashMap<String, Arc<Migration>>>,
    /// Destination images this driver created, per VM. With the provenance markers on the
    /// destination (`provenance.rs`, which survive this process), the only files an
    /// `AfterFailedAttempt` clean-up may delete.
    pub(super) created: Mutex<HashMap<VmId, Vec<(HostId, String)>>>,
}

/// One migration this driver started.
#[derive(Debug)]
pub(super) struct Migration {
    pub(super) mode: MigrationMode,
    pub(super) vm: VmId,
    pub(super) source: HostId,
    pub(super) post_copy: bool,
    pub(super) auto_converge: bool,
    pub(super) max_downtime_cap_ms: u64,
    pub(super) outcome: Mutex<Option<Result<(), DriverError>>>,
    pub(super) cancel: AtomicBool,
    pub(super) bytes_done: AtomicU64,
    pub(super) bytes_total: AtomicU64,
    /// Flips to true once `outcome` is set (for [`Driver::wait_for_end`]).
    pub(super) ended: tokio::sync::watch::Sender<bool>,
}

impl Migration {
    pub(super) fn outcome(&self) -> Option<Result<(), DriverError>> {
        self.outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub(super) fn finish(&self, r: Result<(), DriverError>) {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        self.ended.send_replace(true);
    }
}

impl Inner {
    pub(super) fn host(&self, id: &HostId) -> DriverResult<Arc<Host>> {
        self.hosts.get(id).cloned().ok_or_else(|| {
            DriverError::permanent(format!("host {id} is not a configured libvirt host"))
        })
    }

    pub(super) fn record(&self, handle: &MigrationHandle) -> Option<Arc<Migration>> {
        self.migrations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&*handle.0)
            .cloned()
    }

    pub(super) fn created_on(&self, vm: &VmId, host: &HostId) -> Vec<String> {
        self.created
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

    pub(super) fn remember_created(&self, vm: &VmId, host: &HostId, path: &str) {
        let mut g = self.created.lock().unwrap_or_else(|p| p.into_inner());
        let v = g.entry(vm.clone()).or_default();
        if !v.iter().any(|(h, p)| h == host && p == path) {
            v.push((host.clone(), path.to_owned()));
        }
    }

    pub(super) fn forget_created(&self, vm: &VmId, host: &HostId, path: &str) {
        let mut g = self.created.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = g.get_mut(vm) {
            v.retain(|(h, p)| !(h == host && p == path));
        }
    }
}

/// Runs a blocking libvirt call on tokio's blocking threads. A call that did not finish (its
/// thread panicked) is indeterminate when it changes something, else transient.
pub(super) async fn blocking<T: Send + 'static>(
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
pub(super) async fn blocking_on<T: Send + 'static>(
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
