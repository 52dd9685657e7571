//! [`LibvirtDriver`]: the [`Driver`] implementation, which hands each call to the room of its
//! phase:
//! - `inventory.rs`: host figures, VM lists, footprints;
//! - `preflight.rs`: what stops a move, found by reading only (`Driver::preflight`);
//! - `prepare.rs`: the checks before a move, destination images pre-created, the destination XML
//!   (`paths.rs`: where the files go);
//! - `jobs.rs`: the migration's thread (live), its status, end, abort and convergence aids;
//!   `offline.rs`: the offline copy;
//! - `verify.rs`: locate and verify; `recovery.rs`: the proofs and the roll-back for moves a
//!   client left unfinished;
//! - `cleanup.rs`: leftovers, listed and removed;
//! - `state.rs`: what the driver remembers between calls, and the blocking-call helpers.

mod cleanup;
mod inventory;
mod jobs;
mod offline;
mod paths;
mod preflight;
mod prepare;
mod recovery;
mod state;
mod verify;

use crate::LibvirtHostConfig;
use crate::host::Host;
use async_trait::async_trait;
use state::Inner;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, Once};
use vmove_driver::*;

/// The libvirt driver: one value serves every configured libvirt host.
#[derive(Clone, Debug)]
pub struct LibvirtDriver {
    inner: Arc<Inner>,
}

static CLEAR_ERROR_CALLBACK: Once = Once::new();

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
                measuring: Mutex::new(HashSet::new()),
                measured: Condvar::new(),
                #[cfg(feature = "test-util")]
                start_delay: Mutex::new(std::time::Duration::ZERO),
            }),
        }
    }

    /// Tests only: each migration started from now on waits `delay` between being recorded
    /// and its migration call, as one whose source is slow to begin does: a listing then
    /// certainly finds its VM with no migration job yet.
    #[cfg(feature = "test-util")]
    pub fn delay_migration_starts(&self, delay: std::time::Duration) {
        *self
            .inner
            .start_delay
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = delay;
    }

    /// Builds the driver from the `[hosts.<name>]` tables of the hosts it serves. An unknown or
    /// malformed key is an error that names the host and the key.
    pub fn from_config(hosts: &[(HostId, toml::Table)]) -> Result<LibvirtDriver, DriverError> {
        let mut out = Vec::new();
        for (id, table) in hosts {
            let cfg: LibvirtHostConfig = vmove_driver::host_settings(table.clone())
                .map_err(|e| DriverError::permanent(format!("host {id}: {e}")))?;
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
        inventory::host_info(&self.inner, host).await
    }

    async fn list_vms(&self, host: &HostId) -> DriverResult<Vec<VmInfo>> {
        inventory::list_vms(&self.inner, host).await
    }

    async fn footprint(&self, host: &HostId, vm: &VmId) -> DriverResult<Footprint> {
        inventory::footprint(&self.inner, host, vm).await
    }

    async fn preflight(&self, req: &MigrationRequest) -> DriverResult<Preflight> {
        preflight::preflight(&self.inner, req).await
    }

    async fn preflight_host(&self, host: &HostId) -> DriverResult<Preflight> {
        preflight::preflight_host(&self.inner, host).await
    }

    async fn start_migration(&self, req: &MigrationRequest) -> DriverResult<MigrationHandle> {
        jobs::start(&self.inner, req).await
    }

    async fn migration_status(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<MigrationStatus> {
        jobs::status(&self.inner, req, handle).await
    }

    async fn wait_for_end(
        &self,
        _req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> Option<DriverResult<MigrationStatus>> {
        jobs::wait_for_end(&self.inner, handle).await
    }

    async fn abort_migration(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<()> {
        jobs::abort(&self.inner, req, handle).await
    }

    async fn converge(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
        aid: ConvergenceAid,
    ) -> DriverResult<bool> {
        jobs::converge(&self.inner, req, handle, aid).await
    }

    async fn locate(&self, req: &MigrationRequest) -> DriverResult<Location> {
        verify::locate(&self.inner, req).await
    }

    async fn verify(&self, req: &MigrationRequest) -> DriverResult<Verification> {
        verify::verify(&self.inner, req).await
    }

    async fn leftovers(
        &self,
        req: &MigrationRequest,
        context: LeftoverContext,
    ) -> DriverResult<Vec<Leftover>> {
        cleanup::leftovers(&self.inner, req, context).await
    }

    async fn remove_leftover(
        &self,
        req: &MigrationRequest,
        leftover: &Leftover,
        context: LeftoverContext,
    ) -> DriverResult<()> {
        cleanup::remove_leftover(&self.inner, req, leftover, context).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
    fn dirty_rates_are_measured_unless_a_host_says_not_and_a_bad_value_names_the_key() {
        let cfg = |extra: &str| {
            let t: toml::Table =
                toml::from_str(&format!("uri = \"qemu+ssh://root@kvm1/system\"\n{extra}")).unwrap();
            LibvirtDriver::from_config(&[(HostId::new("kvm1"), t)])
        };
        let measuring =
            |d: LibvirtDriver| d.inner.hosts[&HostId::new("kvm1")].cfg.measure_dirty_rates;
        assert!(measuring(cfg("").unwrap()), "the default measures");
        assert!(!measuring(cfg("measure_dirty_rates = false").unwrap()));
        let e = cfg("measure_dirty_rates = \"no\"").unwrap_err();
        assert_eq!(
            e.message,
            "host kvm1: `measure_dirty_rates`: must be `true` or `false`, not `no`"
        );
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
}
