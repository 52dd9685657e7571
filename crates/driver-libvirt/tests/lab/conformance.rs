//! The shared conformance suite on the lab, one test per check (`conformance::<check>`).

use crate::common::{Lab, lab_enabled};

vmove_driver::conformance_tests!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    |check| {
        if !lab_enabled(check) {
            return;
        }
        Lab::new()
    }
);

/// The suite's checks of VM shapes, also with `p2p = true` (the other mode a user can choose:
/// the source's libvirtd drives the migration).
mod p2p {
    use crate::common::{Lab, lab_enabled};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn vm_without_disks_moves_p2p() {
        if !lab_enabled("vm_without_disks_moves_p2p") {
            return;
        }
        let lab = Lab::p2p();
        if let Err(e) = vmove_driver::conformance::vm_without_disks_moves(&lab).await {
            panic!("vm_without_disks_moves (p2p): {e}");
        }
    }
}
