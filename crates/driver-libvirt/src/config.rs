//! The configuration of one libvirt host, as written under `[hosts.<name>]` in vmove's TOML.

use serde::Deserialize;

/// The default cap of the allowed downtime a convergence aid may raise to, ms: 2 s, a pause
/// most guests and their clients ride out (libvirt's own default is 300 ms). The core's
/// [`vmove_driver::DEFAULT_DOWNTIME_CAP_MS`], which the simulator models too.
pub const DEFAULT_MAX_DOWNTIME_MS: u64 = vmove_driver::DEFAULT_DOWNTIME_CAP_MS;

/// One libvirt host. Example:
/// ```toml
/// [hosts.kvm1]
/// driver = "libvirt"
/// uri = "qemu+tls://kvm1.example.net/system"
/// pool = "images"
/// path = "/var/lib/libvirt/images"
/// migration_ports = [49152, 49215]
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibvirtHostConfig {
    /// Connection URI: `qemu+tcp://`, `qemu+ssh://` or `qemu+tls://...`/system`.
    pub uri: String,
    /// The storage pool destination disks are created in (when the destination folder is its
    /// target). Default `images`.
    #[serde(default = "default_pool")]
    pub pool: String,
    /// Destination base folder for moved disks; default: the pool's target path.
    #[serde(default)]
    pub path: Option<String>,
    /// The host's `migration_port_min`/`max` from qemu.conf, if you want vmove to know how many
    /// storage migrations the range takes at once (each takes 2 ports).
    #[serde(default)]
    pub migration_ports: Option<[u16; 2]>,
    /// Peer-to-peer migration (the source libvirtd drives it and reaches the destination URI
    /// itself; it survives a crash of vmove). Default false: vmove drives it.
    #[serde(default)]
    pub p2p: bool,
    /// Start live migrations with QEMU auto-converge (CPU throttling when memory is dirtied
    /// faster than it is sent). Default false.
    #[serde(default)]
    pub auto_converge: bool,
    /// Allow the watchdog to switch a migration to post-copy (started with the post-copy flag).
    /// Post-copy that fails loses the VM: default false.
    #[serde(default)]
    pub post_copy: bool,
    /// Migration bandwidth limit, MiB/s.
    #[serde(default)]
    pub bandwidth_mib_s: Option<u64>,
    /// Cap when the allowed downtime is raised (`ConvergenceAid::RaiseDowntime`), ms (default
    /// 2000, `DEFAULT_MAX_DOWNTIME_MS`). A watchdog that escalates asks, after auto-converge, up
    /// to four raises, each doubling the allowed downtime up to this cap
    /// ([`vmove_driver::raised_downtime`]), then post-copy.
    #[serde(default)]
    pub max_downtime_ms: Option<u64>,
    /// Seconds between libvirt keepalive probes on every connection vmove opens to the host
    /// (default 5; 0 turns keepalive off). A host that answers none of `keepalive_count`
    /// probes in a row has its connection closed, so a call to a frozen or unreachable host
    /// fails after about `interval * (count + 1)` seconds instead of hanging.
    #[serde(default = "default_keepalive_interval")]
    pub keepalive_interval_s: u32,
    /// How many keepalive probes may go unanswered before the connection is closed (default 3).
    #[serde(default = "default_keepalive_count")]
    pub keepalive_count: u32,
    /// Measure each running VM's memory dirty rate (`virDomainStartDirtyRateCalc`, one second
    /// of QEMU's page sampling, started by each listing and read by the next; a VM never
    /// measured is waited for by the listing that starts its first) and report it in the
    /// listings: a source's plan (`order = "packed"`) needs it. Default true; false reports
    /// none, and `packed` runs as largest first on the host's VMs.
    #[serde(default = "default_true")]
    pub measure_dirty_rates: bool,
    /// Read by the CLI (which driver serves the host); must be "libvirt" if given.
    #[serde(default)]
    pub driver: Option<String>,
    /// Read by the CLI (the host's slot limit); ignored here.
    #[serde(default)]
    pub max_migrations: Option<u32>,
}

fn default_true() -> bool {
    true
}

fn default_keepalive_interval() -> u32 {
    5
}

fn default_keepalive_count() -> u32 {
    3
}

fn default_pool() -> String {
    "images".to_owned()
}

impl LibvirtHostConfig {
    /// About how long a silent host takes to be noticed on an open connection (keepalive
    /// interval times count, plus one interval), `None` when keepalive is off.
    pub fn keepalive_bound(&self) -> Option<std::time::Duration> {
        (self.keepalive_interval_s > 0).then(|| {
            std::time::Duration::from_secs(
                u64::from(self.keepalive_interval_s) * (u64::from(self.keepalive_count) + 1),
            )
        })
    }

    /// How many storage migrations the configured port range takes at once (2 ports each).
    pub fn port_capacity(&self) -> Option<u32> {
        self.migration_ports.map(|[lo, hi]| {
            let ports = u32::from(hi.saturating_sub(lo)) + 1;
            ports / 2
        })
    }
}
