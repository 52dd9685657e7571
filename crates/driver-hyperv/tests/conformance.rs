//! The shared driver conformance suite, against the protocol fake over HTTP + NTLM sealing.
#![allow(clippy::unwrap_used)]

use crate::common;

use async_trait::async_trait;
use std::time::Duration;
use vmove_driver::conformance::{Fixture, VmShape, run_all};
use vmove_driver::{Driver, HostId, PathLayout, VmId};
use vmove_driver_hyperv::HyperVDriver;
use vmove_driver_hyperv::fake::model::SUBTYPE_DVD;
use vmove_driver_hyperv::fake::{FakeHyperV, Locale};

struct HvFixture {
    fake: FakeHyperV,
    driver: HyperVDriver,
    /// Each VM created with a DVD image from a shared library and (but the footprint check's,
    /// which counts disks) a checkpoint, on hosts whose captions are not English.
    foreign: bool,
}

#[async_trait]
impl Fixture for HvFixture {
    fn driver(&self) -> &dyn Driver {
        &self.driver
    }
    fn source(&self) -> HostId {
        HostId::new("hv1")
    }
    fn destination(&self) -> HostId {
        HostId::new("hv2")
    }
    fn layout(&self) -> PathLayout {
        PathLayout {
            base: Some("E:\\Moved".into()),
            put_in_subfolder: true,
            preserve_drive_letter: false,
        }
    }
    async fn create_vm(&self, shape: &VmShape) -> VmId {
        let root = format!("E:\\VMs\\{}", shape.name);
        let foreign = self.foreign;
        let g = self.fake.with(|w| {
            let g = w.add_vm(
                "hv1",
                &shape.name,
                shape.running,
                shape.memory_mib,
                &shape.disks_mib,
                &root,
            );
            if foreign {
                w.add_drive("hv1", &g, SUBTYPE_DVD, "E:\\ISO\\install.iso");
                // A library both hosts have (pre-flight blocks an image the destination lacks).
                let dst = w.hosts.get_mut("hv2").unwrap();
                if !dst.files.contains_key("e:\\iso\\install.iso") {
                    dst.write_file("E:\\ISO\\install.iso", 700 << 20);
                }
                if shape.name != "conf-footprint" {
                    w.add_checkpoint("hv1", &g, "before the move", false);
                }
            }
            g
        });
        VmId::new(g)
    }
    async fn occupy_destination_path(&self, vm: &VmId) -> bool {
        self.fake.with(|w| {
            let name = w.hosts["hv1"].vms[vm.as_str()].name.clone();
            let p = format!("E:\\Moved\\{name}\\Virtual Hard Disks\\{name}_0.vhdx");
            w.hosts.get_mut("hv2").unwrap().write_file(&p, 1);
        });
        true
    }
    async fn destroy_vm(&self, vm: &VmId) {
        self.fake.with(|w| {
            for h in w.hosts.values_mut() {
                if let Some(v) = h.vms.remove(vm.as_str()) {
                    for d in v.disks {
                        h.files.remove(&d.to_ascii_lowercase());
                    }
                }
            }
        });
    }
    fn migration_timeout(&self) -> Duration {
        Duration::from_secs(60)
    }
    async fn sleep(&self, d: Duration) {
        self.fake.advance(d);
        tokio::task::yield_now().await;
    }
}

/// A fixture on a fresh fake: English captions and plain VMs, or (`foreign`) Swedish captions
/// and VMs holding a DVD image from a shared library and a checkpoint.
async fn fixture(foreign: bool) -> HvFixture {
    let mut w = common::world();
    if foreign {
        w.set_locale(Locale::Swedish);
    }
    let (fake, driver) = common::start(w).await;
    HvFixture {
        fake,
        driver,
        foreign,
    }
}

/// One test per check of the shared suite (`against_the_fake::<check>`).
mod against_the_fake {
    use super::fixture;
    vmove_driver::conformance_tests!(fixture(false).await);
}

/// One test per check, on Swedish hosts with checkpoints and ISOs
/// (`in_swedish_with_checkpoints_and_isos::<check>`).
mod in_swedish_with_checkpoints_and_isos {
    use super::fixture;
    vmove_driver::conformance_tests!(fixture(true).await);
}

/// The whole suite on one fake, to see what it sent over the protocol.
#[tokio::test]
async fn hyperv_driver_passes_the_conformance_suite_against_the_fake() {
    let (fake, driver) = common::start(common::world()).await;
    let fx = HvFixture {
        fake: fake.clone(),
        driver,
        foreign: false,
    };
    run_all(&fx).await;
    // The suite really went through the protocol: migrations were invoked with embedded
    // CIM-XML, and folders were deleted through root\cimv2.
    let (invokes, embedded) = fake.with(|w| (w.calls.invokes.clone(), w.calls.embedded.clone()));
    assert!(
        invokes
            .iter()
            .any(|(h, m)| h == "hv1" && m == "MigrateVirtualSystemToHost")
    );
    assert!(
        invokes
            .iter()
            .any(|(_, m)| m == "CheckVirtualSystemIsMigratableToHost")
    );
    assert!(invokes.iter().any(|(_, m)| m == "RequestStateChange"));
    assert!(invokes.iter().any(|(h, m)| h == "hv1" && m == "Delete"));
    assert!(
        embedded
            .iter()
            .any(|e| e.contains("<INSTANCE CLASSNAME=\"Msvm_VirtualSystemMigrationSettingData\">"))
    );
}

/// The whole suite on one Swedish fake, to see what its moves sent.
#[tokio::test]
async fn hyperv_driver_passes_the_conformance_suite_in_swedish_with_checkpoints_and_isos() {
    let mut w = common::world();
    w.set_locale(Locale::Swedish);
    let (fake, driver) = common::start(w).await;
    let fx = HvFixture {
        fake: fake.clone(),
        driver,
        foreign: true,
    };
    run_all(&fx).await;
    // The moves gave new paths to checkpoint disks (their entries are the checkpoints' own,
    // `Microsoft:<checkpoint id>\\...`), none to the image, which stayed where it was.
    let (checkpoint_disks_sent, image_sent, iso_kept) = fake.with(|w| {
        let rasds: Vec<&String> = w
            .calls
            .migration_params
            .iter()
            .flat_map(|(_, _, p)| p.iter())
            .filter(|(n, _)| n == "NewResourceSettingData")
            .map(|(_, x)| x)
            .collect();
        (
            rasds.iter().filter(|x| x.contains("Microsoft:C")).count(),
            rasds.iter().any(|x| x.contains("install.iso")),
            w.hosts["hv1"].files.contains_key("e:\\iso\\install.iso"),
        )
    });
    assert!(
        checkpoint_disks_sent > 0,
        "checkpoint disks were given new paths"
    );
    assert!(!image_sent, "the ISO was given a new path");
    assert!(iso_kept, "the shared ISO stayed on the source");
}
