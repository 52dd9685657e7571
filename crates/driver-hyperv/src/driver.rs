//! [`HyperVDriver`]: the `vmove_driver::Driver` contract over WMI (root\virtualization\v2 and
//! root\cimv2), mapping the seed's behaviour. This file holds the driver's state and the
//! contract, each call handed to the room of its phase: `inventory` (hosts, VMs, footprints,
//! locate), `prepare` (start), `job` (status, abort), `verify`, `cleanup` (leftovers), with the
//! attempt records in `record`.

use crate::cim::CimInstance;
use crate::config::{DEFAULT_CONNECT_TIMEOUT_SECS, DEFAULT_REQUEST_TIMEOUT_SECS, HyperVHostConfig};
use crate::error::read_err;
use crate::wsman::{Credentials, TlsOptions, TransportConfig, WsmanClient};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use vmove_driver::*;

pub use crate::error::return_value_words;
pub use crate::status::status_of;

/// One configured host: its client and the name Hyper-V knows it by.
pub(crate) struct Host {
    pub(crate) client: WsmanClient,
    /// The computer name, configured or read once from the host (`inventory`).
    pub(crate) host_name: Mutex<Option<String>>,
    /// `host_name` as configured (the cache above also holds a name read from the host).
    pub(crate) configured_name: Option<String>,
}

/// What a move started by this driver needs later (verification, clean-up).
#[derive(Clone, Debug)]
pub(crate) struct Moved {
    /// The VM's GUID.
    pub(crate) guid: String,
    /// `ConfigurationDataRoot` on the source.
    pub(crate) config_root: String,
    /// `SnapshotDataRoot` on the source.
    pub(crate) snapshot_root: String,
    /// `SwapFileDataRoot` on the source.
    pub(crate) swap_root: String,
    /// (source path, destination path, size in bytes)
    pub(crate) disks: Vec<(String, String, u64)>,
}

/// The Hyper-V driver: one WS-Management client per configured host.
pub struct HyperVDriver {
    hosts: BTreeMap<HostId, Host>,
    moved: Mutex<HashMap<(VmId, u32), Moved>>,
    /// Disk sizes for `list_vms` only (one WMI query per disk is slow on a host with many VMs);
    /// `footprint` and `verify` always ask the host.
    pub(crate) sizes: Mutex<HashMap<(HostId, String), (u64, std::time::Instant)>>,
}

/// How long `list_vms` trusts a disk size it read.
pub(crate) const SIZE_TTL: Duration = Duration::from_secs(300);

impl std::fmt::Debug for HyperVDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let clients: Vec<_> = self
            .hosts
            .iter()
            .map(|(k, h)| (k.clone(), h.client.endpoint()))
            .collect();
        f.debug_struct("HyperVDriver")
            .field("hosts", &clients)
            .finish_non_exhaustive()
    }
}

impl HyperVDriver {
    /// Builds the driver from `[hosts.<name>]` tables. The keys the CLI owns for every driver
    /// (`driver`, `max_migrations`, `path`) are left to it; every other key must be one of
    /// [`HyperVHostConfig`]'s.
    /// Credentials come from each host's `credentials_file`, else from the environment.
    pub fn from_config(hosts: &[(HostId, toml::Table)]) -> Result<HyperVDriver, DriverError> {
        let mut out = BTreeMap::new();
        for (id, table) in hosts {
            let mut t = table.clone();
            for k in ["driver", "max_migrations", "path"] {
                t.remove(k);
            }
            let cfg: HyperVHostConfig = vmove_driver::host_settings(t).map_err(|e| {
                DriverError::permanent(format!("host {id}: invalid Hyper-V settings: {e}"))
            })?;
            cfg.check_built()
                .map_err(|e| DriverError::permanent(format!("host {id}: {e}")))?;
            let creds = Credentials::load(cfg.credentials_file.as_deref())
                .map_err(|e| DriverError::permanent(format!("host {id}: {e}")))?;
            out.insert(id.clone(), Self::host_from(&cfg, creds));
        }
        Ok(HyperVDriver {
            hosts: out,
            moved: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
        })
    }

    /// Builds the driver from parsed configs and explicit credentials (tests, embedding).
    pub fn new(hosts: Vec<(HostId, HyperVHostConfig, Credentials)>) -> HyperVDriver {
        let hosts = hosts
            .into_iter()
            .map(|(id, cfg, creds)| (id, Self::host_from(&cfg, creds)))
            .collect();
        HyperVDriver {
            hosts,
            moved: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
        }
    }

    fn host_from(cfg: &HyperVHostConfig, creds: Credentials) -> Host {
        let tc = TransportConfig {
            host: cfg.address.clone(),
            port: cfg.port(),
            scheme: cfg.transport,
            auth: cfg.auth,
            tls: TlsOptions {
                ca_file: cfg.ca_file.clone(),
                insecure_skip_verify: cfg.insecure_skip_verify,
            },
            kerberos: cfg.kerberos(),
            connect_timeout: Duration::from_secs(
                cfg.connect_timeout_secs
                    .unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS),
            ),
            request_timeout: Duration::from_secs(
                cfg.request_timeout_secs
                    .unwrap_or(DEFAULT_REQUEST_TIMEOUT_SECS),
            ),
        };
        Host {
            client: WsmanClient::new(tc, creds),
            host_name: Mutex::new(cfg.host_name.clone()),
            configured_name: cfg.host_name.clone(),
        }
    }

    /// Runs a read-only WQL query on a configured host (`root/virtualization/v2`,
    /// `root/cimv2`): for diagnostics and the live suite (`tests/live.rs`), which compares what
    /// the driver finds with what the host shows.
    pub async fn wmi_query(
        &self,
        host: &HostId,
        namespace: &str,
        wql: &str,
    ) -> DriverResult<Vec<CimInstance>> {
        self.query(host, namespace, wql).await
    }

    pub(crate) fn host(&self, id: &HostId) -> DriverResult<&Host> {
        self.hosts.get(id).ok_or_else(|| {
            DriverError::permanent(format!("host {id} is not a configured Hyper-V host"))
        })
    }

    pub(crate) async fn query(
        &self,
        id: &HostId,
        ns: &str,
        wql: &str,
    ) -> DriverResult<Vec<CimInstance>> {
        self.host(id)?
            .client
            .query(ns, wql)
            .await
            .map_err(|e| read_err(id, "a WMI query", e))
    }

    pub(crate) fn remember(&self, req: &MigrationRequest, m: Moved) {
        self.moved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((req.vm.clone(), req.attempt), m);
    }

    pub(crate) fn recall(&self, req: &MigrationRequest) -> Option<Moved> {
        let map = self.moved.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(req.vm.clone(), req.attempt))
            .cloned()
            .or_else(|| {
                map.iter()
                    .filter(|((v, _), _)| *v == req.vm)
                    .max_by_key(|((_, a), _)| *a)
                    .map(|(_, m)| m.clone())
            })
    }
}

#[async_trait]
impl Driver for HyperVDriver {
    fn kind(&self) -> &'static str {
        "hyperv"
    }

    fn hosts(&self) -> Vec<HostId> {
        self.hosts.keys().cloned().collect()
    }

    async fn host_info(&self, host: &HostId) -> DriverResult<HostInfo> {
        self.read_host_info(host).await
    }

    async fn list_vms(&self, host: &HostId) -> DriverResult<Vec<VmInfo>> {
        self.read_vms(host).await
    }

    async fn footprint(&self, host: &HostId, vm: &VmId) -> DriverResult<Footprint> {
        self.read_footprint(host, vm).await
    }

    async fn preflight(&self, req: &MigrationRequest) -> DriverResult<Preflight> {
        self.check_route(req).await
    }

    async fn preflight_host(&self, host: &HostId) -> DriverResult<Preflight> {
        self.check_host(host).await
    }

    async fn start_migration(&self, req: &MigrationRequest) -> DriverResult<MigrationHandle> {
        self.start(req).await
    }

    async fn migration_status(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<MigrationStatus> {
        self.job_status(req, handle).await
    }

    async fn abort_migration(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<()> {
        self.abort_job(req, handle).await
    }

    async fn locate(&self, req: &MigrationRequest) -> DriverResult<Location> {
        self.find(req).await
    }

    async fn verify(&self, req: &MigrationRequest) -> DriverResult<Verification> {
        self.prove(req).await
    }

    async fn leftovers(
        &self,
        req: &MigrationRequest,
        context: LeftoverContext,
    ) -> DriverResult<Vec<Leftover>> {
        self.list_leftovers(req, context).await
    }

    async fn remove_leftover(
        &self,
        req: &MigrationRequest,
        leftover: &Leftover,
        context: LeftoverContext,
    ) -> DriverResult<()> {
        self.remove_one_leftover(req, leftover, context).await
    }
}
