//! The harness of the runtime's end-to-end tests: the real core, through the runtime, against
//! the simulated cluster, on a paused tokio clock. The sim's manual clock is kept at the tokio
//! clock's time by a thin wrapper driver ([`Clocked`]), so a whole run is deterministic and
//! takes no real time.
#![allow(dead_code, clippy::unwrap_used)]

use async_trait::async_trait;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use vmove_core::{
    ConvergenceAid, Core, Footprint, HostId, HostInfo, Leftover, LeftoverContext, Location,
    MigrationHandle, MigrationRequest, MigrationStatus, Time, Verification, VmId, VmInfo,
};
use vmove_driver::{Driver, DriverResult};
use vmove_runtime::{
    CollectSink, Collected, ControlReceiver, Drivers, EventSink, RunResult, Runtime, RuntimeOptions,
};
use vmove_sim::scenarios::{self, Demo, Scenario};
use vmove_sim::{SimClock, SimCluster, SimDriver};

/// A [`SimDriver`] on a manual clock that follows the tokio clock; optionally hangs the first
/// start of some VMs (the call never returns).
#[derive(Debug)]
pub struct Clocked {
    pub inner: SimDriver,
    pub clock: SimClock,
    pub epoch: Instant,
    pub last: Mutex<u64>,
    pub hang_first_start: Mutex<HashSet<String>>,
    /// Answer `wait_for_end` (watching the cluster every 50 ms of tokio time), as the libvirt
    /// driver does; otherwise leave the end to the polls.
    pub push_end: bool,
}

impl Clocked {
    pub fn new(cluster: SimCluster) -> Clocked {
        let clock = SimClock::manual();
        Clocked {
            inner: SimDriver::new(cluster, clock.clone()),
            clock,
            epoch: Instant::now(),
            last: Mutex::new(0),
            hang_first_start: Mutex::default(),
            push_end: false,
        }
    }
    pub fn sync(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let mut last = self.last.lock().unwrap();
        if now > *last {
            self.clock.advance(Duration::from_millis(now - *last));
            *last = now;
        }
    }
    pub fn cluster(&self) -> Arc<Mutex<SimCluster>> {
        self.inner.cluster()
    }
}

#[async_trait]
impl Driver for Clocked {
    fn kind(&self) -> &'static str {
        "sim"
    }
    fn hosts(&self) -> Vec<HostId> {
        self.inner.hosts()
    }
    async fn host_info(&self, host: &HostId) -> DriverResult<HostInfo> {
        self.sync();
        self.inner.host_info(host).await
    }
    async fn list_vms(&self, host: &HostId) -> DriverResult<Vec<VmInfo>> {
        self.sync();
        self.inner.list_vms(host).await
    }
    async fn footprint(&self, host: &HostId, vm: &VmId) -> DriverResult<Footprint> {
        self.sync();
        self.inner.footprint(host, vm).await
    }
    async fn preflight(&self, req: &MigrationRequest) -> DriverResult<vmove_core::Preflight> {
        self.sync();
        self.inner.preflight(req).await
    }
    async fn start_migration(&self, req: &MigrationRequest) -> DriverResult<MigrationHandle> {
        self.sync();
        if self.hang_first_start.lock().unwrap().remove(&*req.vm_name) {
            std::future::pending::<()>().await;
        }
        self.inner.start_migration(req).await
    }
    async fn migration_status(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<MigrationStatus> {
        self.sync();
        self.inner.migration_status(req, handle).await
    }
    async fn wait_for_end(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> Option<DriverResult<MigrationStatus>> {
        if !self.push_end {
            return None;
        }
        loop {
            self.sync();
            match self.inner.migration_status(req, handle).await {
                Ok(MigrationStatus::Pending | MigrationStatus::Running(_)) => {}
                other => return Some(other),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    async fn abort_migration(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<()> {
        self.sync();
        self.inner.abort_migration(req, handle).await
    }
    async fn converge(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
        aid: ConvergenceAid,
    ) -> DriverResult<bool> {
        self.sync();
        self.inner.converge(req, handle, aid).await
    }
    async fn locate(&self, req: &MigrationRequest) -> DriverResult<Location> {
        self.sync();
        self.inner.locate(req).await
    }
    async fn verify(&self, req: &MigrationRequest) -> DriverResult<Verification> {
        self.sync();
        self.inner.verify(req).await
    }
    async fn leftovers(
        &self,
        req: &MigrationRequest,
        context: LeftoverContext,
    ) -> DriverResult<Vec<Leftover>> {
        self.sync();
        self.inner.leftovers(req, context).await
    }
    async fn remove_leftover(
        &self,
        req: &MigrationRequest,
        leftover: &Leftover,
        context: LeftoverContext,
    ) -> DriverResult<()> {
        self.sync();
        self.inner.remove_leftover(req, leftover, context).await
    }
}

pub fn drivers_for(d: Arc<Clocked>, hosts: &[HostId]) -> Drivers {
    let mut m = Drivers::new();
    for h in hosts {
        m.insert(h.clone(), Arc::clone(&d) as Arc<dyn Driver>);
    }
    m
}

/// Runs `core` on `driver` (serving every one of `hosts`) through a runtime with `options`,
/// feeding `sinks`, until the run ends.
pub async fn run_on(
    options: RuntimeOptions,
    driver: &Arc<Clocked>,
    hosts: &[HostId],
    core: Core,
    sinks: Vec<Box<dyn EventSink>>,
    control: ControlReceiver,
) -> RunResult {
    Runtime::new(options)
        .run(core, drivers_for(Arc::clone(driver), hosts), sinks, control)
        .await
}

/// [`run_on`] with a collector as the only sink: the result and what the collector saw.
pub async fn run_collecting(
    options: RuntimeOptions,
    driver: &Arc<Clocked>,
    hosts: &[HostId],
    core: Core,
    control: ControlReceiver,
) -> (RunResult, Collected) {
    let collect = CollectSink::new();
    let result = run_on(
        options,
        driver,
        hosts,
        core,
        vec![Box::new(collect.clone())],
        control,
    )
    .await;
    (result, collect.collected())
}

pub fn demo() -> (Arc<Clocked>, Core, Vec<HostId>) {
    let Demo {
        scenario: Scenario { cluster, spec },
        ..
    } = scenarios::demo();
    let hosts = cluster.host_ids();
    let core = Core::new(spec, Time::ZERO).unwrap();
    (Arc::new(Clocked::new(cluster)), core, hosts)
}

pub fn name_of(cluster: &SimCluster, vm: &VmId) -> String {
    cluster
        .vm_specs()
        .find(|v| &v.id == vm)
        .map(|v| v.name.clone())
        .unwrap()
}
