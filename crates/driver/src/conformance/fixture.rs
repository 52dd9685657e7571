//! What a driver's test environment gives the suite: the [`Fixture`] and the [`VmShape`]s the
//! checks ask it for.

use crate::*;
use async_trait::async_trait;
use std::time::Duration;

/// The shape of a test VM a check asks the fixture for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmShape {
    /// Unique name (the fixture may prefix it).
    pub name: String,
    /// Running (true) or shut off (false).
    pub running: bool,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// One entry per disk: virtual size in MiB.
    pub disks_mib: Vec<u64>,
}

/// What a driver's test environment provides to the suite.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// The driver under test.
    fn driver(&self) -> &dyn Driver;
    /// A host to move from.
    fn source(&self) -> HostId;
    /// A host to move to.
    fn destination(&self) -> HostId;
    /// The destination layout to use in requests.
    fn layout(&self) -> PathLayout {
        PathLayout::default()
    }
    /// Creates a VM on the source host and returns its id.
    async fn create_vm(&self, shape: &VmShape) -> VmId;
    /// Puts a file where the VM's first disk would land on the destination (for the
    /// "never overwrite" check). Returns false if the fixture cannot do that.
    async fn occupy_destination_path(&self, _vm: &VmId) -> bool {
        false
    }
    /// Removes everything the fixture created for this VM on every host.
    async fn destroy_vm(&self, vm: &VmId);
    /// How long a small migration may take in this environment.
    fn migration_timeout(&self) -> Duration {
        DEFAULT_MIGRATION_TIMEOUT
    }
    /// Lets time pass (real sleep, or advancing a virtual clock).
    async fn sleep(&self, d: Duration);
}

/// How long a small migration may take unless the fixture says otherwise.
pub const DEFAULT_MIGRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// The outcome of one check: `Err` says, in one sentence, what the driver got wrong.
pub type CheckResult = Result<(), String>;
