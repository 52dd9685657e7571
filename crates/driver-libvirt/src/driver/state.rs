//! What the driver remembers between calls (its hosts, the migrations it started, the
//! destination images it created) and how a libvirt call leaves the async runtime.

use crate::error::Phase;
use crate::host::Host;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex};
use vmove_driver::*;

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) hosts: BTreeMap<HostId, Arc<Host>>,
    pub(super) migrations: Mutex<HashMap<String, Arc<Migration>>>,
    /// Destination images this driver created, per VM. With the provenance markers on the
    /// destination (`provenance.rs`, which survive this process), the only files an
    /// `AfterFailedAttempt` clean-up may delete.
    pub(super) created: Mutex<HashMap<VmId, Vec<(HostId, String)>>>,
    /// The VMs whose dirty-rate measurement a listing is starting right now, and the gate
    /// between that call and a migration's start ([`Inner::begin_measuring`],
    /// [`Inner::register`]).
    /// (UUIDs in lower case: a request may spell one in capitals).
    pub(super) measuring: Mutex<HashSet<String>>,
    /// Signalled when a VM leaves `measuring`.
    pub(super) measured: Condvar,
    /// How long a migration's thread waits before its migration call (tests only: a slow
    /// start, as a loaded source's `Begin` phase can be, made certain).
    #[cfg(feature = "test-util")]
    pub(super) start_delay: Mutex<std::time::Duration>,
}

/// A dirty-rate measurement being started ([`Inner::begin_measuring`]): while it lives, a
/// migration of its VM waits to be registered.
pub(super) struct Measuring<'a> {
    inner: &'a Inner,
    vm: String,
}

impl Drop for Measuring<'_> {
    fn drop(&mut self) {
        self.inner
            .measuring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.vm);
        self.inner.measured.notify_all();
    }
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

    /// Whether a listing may start measuring `vm`'s dirty rate: not while a migration this
    /// driver started for it has not ended, nor while another listing is starting one. The
    /// call (`virDomainStartDirtyRateCalc`) takes the domain's modify job, which a migration's
    /// job excludes: started just after the migration's `Begin`, it would wait libvirt's 30 s
    /// for the job and the listing with it. A listing that saw the VM idle a moment before the
    /// migration began did that (seen on the lab). Checking this driver's own records closes
    /// that window for its own migrations: [`Inner::register`] waits for the measurement the
    /// returned guard stands for before recording a migration, and the migration starts only
    /// after it is recorded. A foreign migration that begins in that window still makes the
    /// one listing wait (nothing on the host says it is about to begin).
    pub(super) fn begin_measuring(&self, vm: &VmId) -> Option<Measuring<'_>> {
        let mut measuring = self.measuring.lock().unwrap_or_else(|p| p.into_inner());
        let migrating = self
            .migrations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|m| m.vm.as_str().eq_ignore_ascii_case(vm.as_str()) && m.outcome().is_none());
        let key = vm.as_str().to_ascii_lowercase();
        if migrating || !measuring.insert(key.clone()) {
            return None;
        }
        Some(Measuring {
            inner: self,
            vm: key,
        })
    }

    /// Records a migration about to start, once no listing is starting a measurement of its
    /// VM (see [`Inner::begin_measuring`]); blocks until then (a call of milliseconds).
    pub(super) fn register(&self, handle: &MigrationHandle, rec: Arc<Migration>) {
        let mut measuring = self.measuring.lock().unwrap_or_else(|p| p.into_inner());
        let key = rec.vm.as_str().to_ascii_lowercase();
        while measuring.contains(&key) {
            measuring = self
                .measured
                .wait(measuring)
                .unwrap_or_else(|p| p.into_inner());
        }
        self.migrations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(handle.0.to_string(), rec);
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
