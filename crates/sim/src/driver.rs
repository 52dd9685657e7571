//! [`SimDriver`]: the [`Driver`] trait over a shared [`SimCluster`] and a clock.
//!
//! Before every call the driver moves the cluster's clock to the driver clock's time, so the
//! cluster is always answered "as of now". Two clocks:
//! - [`SimClock::manual`]: virtual time that moves only when someone calls
//!   [`SimClock::advance`] (tests; the conformance fixture advances it in `sleep`);
//! - [`SimClock::scaled`]: real time times a speed factor (the demo: at speed 20, one real
//!   second is twenty simulated seconds).

use crate::cluster::SimCluster;
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use vmove_core::io::LeftoverContext;
use vmove_core::model::{
    ConvergenceAid, Footprint, HostId, HostInfo, Leftover, Location, MigrationHandle,
    MigrationRequest, MigrationStatus, Preflight, Verification, VmId, VmInfo,
};
use vmove_core::time::Time;
use vmove_driver::{Driver, DriverResult};

/// The time source of a [`SimDriver`].
#[derive(Clone, Debug)]
pub enum SimClock {
    /// Virtual milliseconds, moved by hand.
    Manual(Arc<AtomicU64>),
    /// Real time since `start`, times `speed`, plus `offset`.
    Scaled {
        /// When the clock read `offset`.
        start: Instant,
        /// Simulated seconds per real second.
        speed: f64,
        /// Simulated time at `start`.
        offset: Time,
    },
}

impl SimClock {
    /// A manual clock at time zero.
    pub fn manual() -> SimClock {
        SimClock::Manual(Arc::new(AtomicU64::new(0)))
    }

    /// Real time scaled by `speed` (values below 0.001 are taken as 0.001), from now.
    pub fn scaled(speed: f64) -> SimClock {
        SimClock::Scaled {
            start: Instant::now(),
            speed: speed.max(0.001),
            offset: Time::ZERO,
        }
    }

    /// The simulated time now.
    pub fn now(&self) -> Time {
        match self {
            SimClock::Manual(t) => Time(t.load(Ordering::SeqCst)),
            SimClock::Scaled {
                start,
                speed,
                offset,
            } => {
                let real = start.elapsed().as_secs_f64();
                Time(offset.0 + (real * speed * 1000.0) as u64)
            }
        }
    }

    /// Moves a manual clock forward (no effect on a scaled one).
    pub fn advance(&self, d: std::time::Duration) {
        if let SimClock::Manual(t) = self {
            t.fetch_add(
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                Ordering::SeqCst,
            );
        }
    }

    /// The speed factor (1 for a manual clock).
    pub fn speed(&self) -> f64 {
        match self {
            SimClock::Manual(_) => 1.0,
            SimClock::Scaled { speed, .. } => *speed,
        }
    }
}

/// A [`Driver`] over a simulated cluster.
#[derive(Clone, Debug)]
pub struct SimDriver {
    cluster: Arc<Mutex<SimCluster>>,
    clock: SimClock,
}

impl SimDriver {
    /// A driver over `cluster` on `clock`.
    pub fn new(cluster: SimCluster, clock: SimClock) -> SimDriver {
        SimDriver {
            cluster: Arc::new(Mutex::new(cluster)),
            clock,
        }
    }

    /// A driver sharing an existing cluster.
    pub fn shared(cluster: Arc<Mutex<SimCluster>>, clock: SimClock) -> SimDriver {
        SimDriver { cluster, clock }
    }

    /// The cluster (for tests and the demo's display).
    pub fn cluster(&self) -> Arc<Mutex<SimCluster>> {
        self.cluster.clone()
    }

    /// The clock.
    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// Locks the cluster and brings it to the clock's time.
    pub fn lock(&self) -> MutexGuard<'_, SimCluster> {
        // A panic while holding the lock leaves a consistent-enough model for a simulator;
        // keep going with its state rather than poisoning every later call.
        let mut c = self.cluster.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now();
        if now > c.now() {
            // Migrations that end here are seen by later status calls.
            let _ = c.advance_to(now);
        }
        c
    }
}

#[async_trait]
impl Driver for SimDriver {
    fn kind(&self) -> &'static str {
        "sim"
    }

    fn hosts(&self) -> Vec<HostId> {
        self.lock().host_ids()
    }

    async fn host_info(&self, host: &HostId) -> DriverResult<HostInfo> {
        self.lock().host_info(host)
    }

    async fn list_vms(&self, host: &HostId) -> DriverResult<Vec<VmInfo>> {
        self.lock().list_vms(host)
    }

    async fn footprint(&self, host: &HostId, vm: &VmId) -> DriverResult<Footprint> {
        self.lock().footprint(host, vm)
    }

    async fn preflight(&self, req: &MigrationRequest) -> DriverResult<Preflight> {
        self.lock().preflight(req)
    }

    async fn start_migration(&self, req: &MigrationRequest) -> DriverResult<MigrationHandle> {
        self.lock().start_migration(req)
    }

    async fn migration_status(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<MigrationStatus> {
        self.lock().migration_status(req, handle)
    }

    async fn abort_migration(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<()> {
        self.lock().abort_migration(req, handle)
    }

    async fn converge(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
        aid: ConvergenceAid,
    ) -> DriverResult<bool> {
        self.lock().converge(req, handle, aid)
    }

    async fn locate(&self, req: &MigrationRequest) -> DriverResult<Location> {
        self.lock().locate(req)
    }

    async fn verify(&self, req: &MigrationRequest) -> DriverResult<Verification> {
        self.lock().verify(req)
    }

    async fn leftovers(
        &self,
        req: &MigrationRequest,
        context: LeftoverContext,
    ) -> DriverResult<Vec<Leftover>> {
        self.lock().leftovers(req, context)
    }

    async fn remove_leftover(
        &self,
        req: &MigrationRequest,
        leftover: &Leftover,
        context: LeftoverContext,
    ) -> DriverResult<()> {
        self.lock().remove_leftover(req, leftover, context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn scaled_clock_runs_speed_times_faster_than_real_time() {
        let two_secs_ago = Instant::now()
            .checked_sub(Duration::from_secs(2))
            .expect("the machine has been up 2 s");
        let c = SimClock::Scaled {
            start: two_secs_ago,
            speed: 10.0,
            offset: Time(5_000),
        };
        let t = c.now().0;
        // 2 s real x 10 = 20 s simulated, after the 5 s offset (plus the few ms this test takes).
        assert!((25_000..26_000).contains(&t), "{t}");
        c.advance(Duration::from_secs(100));
        assert!(c.now().0 < 30_000, "advance does not move a scaled clock");
    }

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = SimClock::manual();
        assert_eq!(c.now(), Time::ZERO);
        c.advance(Duration::from_millis(1500));
        assert_eq!(c.now(), Time(1500));
        assert_eq!(c.clone().now(), Time(1500), "clones share the time");
    }
}
