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
