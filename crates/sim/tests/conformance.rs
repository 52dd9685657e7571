//! The shared driver conformance suite, run against the simulated cluster.

use async_trait::async_trait;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use vmove_core::model::{HostId, PowerState, VmId};
use vmove_driver::Driver;
use vmove_driver::conformance::{self, Fixture, VmShape};
use vmove_sim::cluster::{DiskSpec, MIB, destination_path};
use vmove_sim::{Faults, HostSpec, SimClock, SimCluster, SimDriver, VmSpec};

struct SimFixture {
    driver: SimDriver,
    serial: AtomicU32,
}

impl SimFixture {
    fn new() -> SimFixture {
        let hosts = vec![HostSpec::new("sim-a"), HostSpec::new("sim-b")];
        // The constructor cannot fail for two distinct, well-formed hosts.
        #[allow(clippy::unwrap_used)]
        let cluster = SimCluster::new(hosts, vec![], Faults::default()).unwrap();
        SimFixture {
            driver: SimDriver::new(cluster, SimClock::manual()),
            serial: AtomicU32::new(0),
        }
    }
}

#[async_trait]
impl Fixture for SimFixture {
    fn driver(&self) -> &dyn Driver {
        &self.driver
    }
    fn source(&self) -> HostId {
        HostId::new("sim-a")
    }
    fn destination(&self) -> HostId {
        HostId::new("sim-b")
    }
    async fn create_vm(&self, shape: &VmShape) -> VmId {
        let n = self.serial.fetch_add(1, Ordering::SeqCst);
        let mut spec = VmSpec::running(
            format!("{}-{n}", shape.name),
            "sim-a",
            shape.memory_mib * MIB,
        )
        .with_dirty_rate(20 * MIB);
        spec.disks = shape
            .disks_mib
            .iter()
            .map(|&m| DiskSpec {
                virtual_bytes: m * MIB,
                allocated_bytes: m * MIB,
            })
            .collect();
        if !shape.running {
            spec.power = PowerState::Off;
        }
        let id = spec.id.clone();
        #[allow(clippy::unwrap_used)] // names are unique per fixture, so ids are too
        self.driver.lock().add_vm(spec).unwrap();
        id
    }
    async fn occupy_destination_path(&self, vm: &VmId) -> bool {
        let mut c = self.driver.lock();
        let Ok(fp) = c.footprint(&self.source(), vm) else {
            return false;
        };
        let Some(name) = c.vm_specs().find(|s| &s.id == vm).map(|s| s.name.clone()) else {
            return false;
        };
        let Some(first) = fp.disks.first() else {
            return false;
        };
        let path = destination_path(&self.layout(), &first.path, &name);
        c.occupy_path(&self.destination(), &path)
    }
    async fn destroy_vm(&self, vm: &VmId) {
        self.driver.lock().remove_vm(vm);
    }
    fn migration_timeout(&self) -> Duration {
        Duration::from_secs(120)
    }
    async fn sleep(&self, d: Duration) {
        self.driver.clock().advance(d);
        tokio::task::yield_now().await;
    }
}

/// One test per check of the shared suite (`sim_driver::<check>`).
mod sim_driver {
    use super::SimFixture;
    vmove_driver::conformance_tests!(SimFixture::new());
}

/// Guards the suite itself: a driver that lies (here: a migration that never ends) must fail it.
#[tokio::test]
async fn conformance_suite_catches_a_hanging_migration() {
    // Every VM this fixture creates hangs 10 ms into its first migration.
    struct Hanging(SimFixture);
    #[async_trait]
    impl Fixture for Hanging {
        fn driver(&self) -> &dyn Driver {
            self.0.driver()
        }
        fn source(&self) -> HostId {
            self.0.source()
        }
        fn destination(&self) -> HostId {
            self.0.destination()
        }
        async fn create_vm(&self, shape: &VmShape) -> VmId {
            let vm = self.0.create_vm(shape).await;
            let faults = Faults {
                mid: vec![vmove_sim::MidFault {
                    vm: vm.clone(),
                    nth_start: 1,
                    after_ms: 10,
                    fail: None,
                }],
                ..Faults::default()
            };
            #[allow(clippy::unwrap_used)]
            self.0.driver.lock().add_faults(faults).unwrap();
            vm
        }
        async fn destroy_vm(&self, vm: &VmId) {
            self.0.destroy_vm(vm).await
        }
        fn migration_timeout(&self) -> Duration {
            Duration::from_secs(30)
        }
        async fn sleep(&self, d: Duration) {
            self.0.sleep(d).await
        }
    }
    let r = conformance::live_migration_end_to_end(&Hanging(SimFixture::new())).await;
    let err = r.expect_err("a migration that never ends must fail the live migration check");
    assert!(
        err.contains("did not end"),
        "unexpected failure text: {err}"
    );
}
