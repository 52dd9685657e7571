//! The descriptions a cluster is built from (hosts, routes, VMs and their disks), the errors
//! in them, and the [`MigrationEnd`] the clock reports.

use vmove_core::model::{
    Health, HostId, MigrationHandle, MigrationRequest, MigrationStatus, PowerState, VmId,
};
use vmove_core::time::Time;

/// One MiB in bytes.
pub const MIB: u64 = 1 << 20;

/// One GiB in bytes.
pub const GIB: u64 = 1 << 30;
/// Milliseconds in a second: the model keeps rates in bytes/s and time in ms.
pub(crate) const MS_PER_SEC: u128 = 1000;

/// A host of the simulated cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    /// Its name.
    pub id: HostId,
    /// The migration limit the host reports (`None`: it reports none, like libvirt).
    pub migration_limit: Option<u32>,
    /// Memory available to VMs, bytes.
    pub memory_bytes: u64,
    /// Disk space for VM files, bytes.
    pub disk_bytes: u64,
    /// NIC bandwidth, bytes/s, shared equally by every migration touching the host.
    pub nic_bytes_per_sec: u64,
    /// The most one migration can move per second, bytes/s (one stream's limit).
    pub stream_cap_bytes_per_sec: u64,
}

/// [`HostSpec::new`]'s migration limit: two at a time (Hyper-V's default for simultaneous live
/// migrations).
const DEFAULT_MIGRATION_LIMIT: u32 = 2;
/// [`HostSpec::new`]'s memory: room for every VM of the small scenarios and tests.
const DEFAULT_MEMORY: u64 = 512 * GIB;
/// [`HostSpec::new`]'s disk (16 TiB): room for every VM of the small scenarios and tests.
const DEFAULT_DISK: u64 = 16 * 1024 * GIB;
/// [`HostSpec::new`]'s NIC: 10 GbE, in bytes/s.
const DEFAULT_NIC: u64 = 1_250_000_000;
/// [`HostSpec::new`]'s cap per migration stream, bytes/s.
const DEFAULT_STREAM_CAP: u64 = 500_000_000;

impl HostSpec {
    /// A host with a 10 GbE NIC (1.25 GB/s), 500 MB/s per migration, limit 2, 512 GiB memory
    /// and 16 TiB of disk.
    pub fn new(id: impl Into<String>) -> HostSpec {
        HostSpec {
            id: HostId::new(id),
            migration_limit: Some(DEFAULT_MIGRATION_LIMIT),
            memory_bytes: DEFAULT_MEMORY,
            disk_bytes: DEFAULT_DISK,
            nic_bytes_per_sec: DEFAULT_NIC,
            stream_cap_bytes_per_sec: DEFAULT_STREAM_CAP,
        }
    }
}

/// How migrations on one route (source -> destination) behave beyond the hosts' figures
/// (set with [`SimCluster::set_route`](crate::SimCluster::set_route); `vmove plan` fits it from measured migrations).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteSpec {
    /// Fixed time every migration on this route takes besides moving bytes (setting up,
    /// switching over, noticing the end), ms. It comes first; meanwhile the migration moves no
    /// bytes and takes no share of either host's NIC. 0: none (the model as it was).
    pub overhead_ms: u64,
    /// The most one migration on this route moves per second, bytes/s (`None`: the hosts'
    /// stream caps).
    pub stream_cap_bytes_per_sec: Option<u64>,
    /// What the route's hosts move in all when several migrations move bytes there, bytes/s:
    /// while `n >= 2` migrations move bytes on its source or destination (the larger count),
    /// each one on this route gets at most `aggregate / n`. Unlike a NIC it does not cap a
    /// migration running alone, so it may be below one stream's rate (hosts whose CPUs, not
    /// their link, slow concurrent migrations down). `None`: only the NICs share.
    pub aggregate_bytes_per_sec: Option<u64>,
    /// One migration's rate measured at given concurrencies: `(n, bytes/s)` = each migration
    /// moved that much while `n` migrations moved bytes on the route's hosts (the larger count of
    /// its source and destination), sorted by `n`, no `n` twice. When not empty it replaces the
    /// stream cap and the aggregate: while `n` migrations move bytes, each one on this route
    /// gets the figure of the measured level nearest to `n` (a tie: the higher level, the
    /// slower one), so nothing is extrapolated beyond what was measured; the NICs still cap.
    pub rate_at_concurrency: Vec<(u32, u64)>,
}

impl RouteSpec {
    /// The figure of the measured level nearest to `n` (a tie: the higher level), with that
    /// level; `None` when nothing was measured per concurrency.
    pub fn rate_nearest(&self, n: u32) -> Option<(u32, u64)> {
        self.rate_at_concurrency
            .iter()
            .copied()
            .min_by_key(|&(level, _)| (level.abs_diff(n), std::cmp::Reverse(level)))
    }
}

/// One disk of a simulated VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    /// Size the guest sees, bytes.
    pub virtual_bytes: u64,
    /// Space the image takes (what a move copies), bytes.
    pub allocated_bytes: u64,
}

/// A VM of the simulated cluster.
///
/// Laid out in the order written (`repr(C)`): what a host's listing reads of a VM first.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct VmSpec {
    /// Its id (uuid-like).
    pub id: VmId,
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// Guest memory dirty rate, bytes/s.
    pub dirty_rate: u64,
    pub power: PowerState,
    /// Primary status.
    pub health: Health,
    pub name: String,
    /// Where it is defined.
    pub host: HostId,
    pub disks: Vec<DiskSpec>,
    /// Shapes of real VMs that a hypervisor refuses to move (see [`Shape`]).
    pub shapes: Vec<Shape>,
}

/// A shape of a real VM that its hypervisor refuses to move: the sim's pre-flight blocks it
/// with the real hypervisor's words, and its start, if ever asked, fails the same way (for good:
/// nothing will change by waiting). The messages are libvirt's, as a real host reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A managed-save image (`virsh managedsave`): the source refuses to undefine the domain
    /// while it exists, so a move would leave it defined on both hosts. libvirt's qemu driver,
    /// `qemuDomainUndefineFlags`: "Refusing to undefine while domain managed save image exists"
    /// (seen on a real host, issue #15). About the VM: no destination helps.
    ManagedSave,
    /// Snapshot metadata: libvirt's `qemuMigrationSrcIsAllowed` refuses with "cannot migrate
    /// domain with %d snapshots" (VIR_ERR_OPERATION_INVALID, "Requested operation is not
    /// valid"). About the VM.
    Snapshots(u32),
    /// An attached CD-ROM image that this destination lacks: libvirt's storage file check
    /// (`virStorageSourceReportBrokenChain` / `qemuDomainStorageSourceAccessAllow`) reports
    /// "Cannot access storage file '%s': No such file or directory". About this destination.
    CdromMissing(HostId),
    /// A network the VM's interface uses that this destination does not define: libvirt's
    /// `virNetworkObjFindByName` reports "Network not found: no network with matching name
    /// '%s'" (VIR_ERR_NO_NETWORK). About this destination.
    NetworkMissing(HostId),
}

impl Shape {
    /// Parses `managed_save`, `snapshots` (or `snapshots:N`), `cdrom_missing:HOST`,
    /// `network_missing:HOST`.
    pub fn parse(text: &str) -> Result<Shape, String> {
        let (kind, arg) = match text.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (text, None),
        };
        let host = |a: Option<&str>| match a {
            Some(h) if !h.is_empty() => Ok(HostId::new(h)),
            _ => Err(format!("shape `{text}` needs a host: `{kind}:HOST`")),
        };
        match kind {
            "managed_save" if arg.is_none() => Ok(Shape::ManagedSave),
            "snapshots" => match arg {
                None => Ok(Shape::Snapshots(1)),
                Some(n) => n
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(Shape::Snapshots)
                    .ok_or_else(|| format!("shape `{text}`: `{n}` is not a count above 0")),
            },
            "cdrom_missing" => host(arg).map(Shape::CdromMissing),
            "network_missing" => host(arg).map(Shape::NetworkMissing),
            _ => Err(format!(
                "unknown shape `{text}` (known: managed_save, snapshots[:N], cdrom_missing:HOST, network_missing:HOST)"
            )),
        }
    }
}

impl VmSpec {
    /// A running, healthy VM with a uuid-like id derived from its name.
    pub fn running(name: impl Into<String>, host: impl Into<String>, memory_bytes: u64) -> VmSpec {
        let name = name.into();
        VmSpec {
            id: VmId::new(uuid_like(&name)),
            name,
            host: HostId::new(host),
            memory_bytes,
            dirty_rate: 0,
            disks: vec![],
            power: PowerState::Running,
            health: Health::Ok,
            shapes: vec![],
        }
    }
    /// Gives it a shape a hypervisor refuses to move.
    pub fn with_shape(mut self, shape: Shape) -> VmSpec {
        self.shapes.push(shape);
        self
    }
    /// Adds a disk whose allocation equals its virtual size.
    pub fn with_disk(mut self, bytes: u64) -> VmSpec {
        self.disks.push(DiskSpec {
            virtual_bytes: bytes,
            allocated_bytes: bytes,
        });
        self
    }
    /// Sets the dirty rate.
    pub fn with_dirty_rate(mut self, bytes_per_sec: u64) -> VmSpec {
        self.dirty_rate = bytes_per_sec;
        self
    }
    /// Powers it off.
    pub fn off(mut self) -> VmSpec {
        self.power = PowerState::Off;
        self
    }
    /// Total allocated disk bytes.
    pub fn disk_bytes(&self) -> u64 {
        self.disks.iter().map(|d| d.allocated_bytes).sum()
    }
}

/// A deterministic uuid-like string (8-4-4-4-12 hex) from any text (FNV-1a, two rounds).
pub fn uuid_like(text: &str) -> String {
    let h = |seed: u64| {
        let mut x: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
        for b in text.bytes() {
            x ^= u64::from(b);
            x = x.wrapping_mul(0x0100_0000_01b3);
        }
        // A final mix so that near names give far ids.
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    };
    let (a, b) = (h(1), h(2));
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// A problem with the cluster's description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// Two hosts with one name.
    #[error("host `{0}` is defined twice")]
    DuplicateHost(HostId),
    /// Two VMs with one id.
    #[error("VM id `{0}` is used twice")]
    DuplicateVm(VmId),
    /// A VM or fault names a host that is not defined.
    #[error("`{what}` names host `{host}`, which is not defined")]
    UnknownHost {
        /// Who names it.
        what: String,
        host: HostId,
    },
    /// A fault names a VM that is not defined.
    #[error("a fault names VM `{0}`, which is not defined")]
    UnknownVm(VmId),
    /// A host that cannot transfer.
    #[error("host `{0}` has a zero NIC bandwidth or stream cap")]
    NoBandwidth(HostId),
}

/// A migration that ended, reported by [`SimCluster::advance_to`](crate::SimCluster::advance_to) at the time it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationEnd {
    /// When it ended.
    pub at: Time,
    /// Its request (VM, attempt, hosts).
    pub request: MigrationRequest,
    pub handle: MigrationHandle,
    /// `Completed` or `Failed`.
    pub status: MigrationStatus,
}
