//! What a run is asked to do: the hosts, the selection of VMs, where they may go, and the
//! policy settings. Validated once, before anything is touched.

use crate::model::{HostId, PathLayout};
use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Which VMs of a source host to move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "patterns")]
pub enum Selection {
    /// Every VM on the host (an evacuation).
    All,
    /// VMs whose name matches one of these names or glob patterns (`web-*`, `db?`).
    /// A plain name that matches nothing is reported as not found.
    Names(Vec<String>),
}

/// Whether a pattern has glob characters (else it is a plain name).
pub fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Compiles a name or glob pattern of a [`Selection::Names`].
pub fn compile(p: &str) -> Result<GlobMatcher, SpecError> {
    if p.trim().is_empty() {
        return Err(SpecError::BadPattern {
            pattern: p.into(),
            reason: "it is empty".into(),
        });
    }
    Glob::new(p)
        .map(|g| g.compile_matcher())
        .map_err(|e| SpecError::BadPattern {
            pattern: p.into(),
            reason: e.kind().to_string(),
        })
}

/// One source host, the VMs to take from it and where they may go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSpec {
    pub host: HostId,
    /// Which of its VMs.
    pub select: Selection,
    /// Allowed destinations (at least one, never the source itself). Shared: sources with the
    /// same list may hold one (`Arc::clone`); serialized as a plain list.
    pub destinations: Arc<[HostId]>,
    /// VMs never taken from it (names or glob patterns, `--exclude`), whatever `select`
    /// matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// What to do when a watchdog fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WatchdogAction {
    /// Abort the migration (it counts as a failed attempt, retried per policy).
    #[default]
    Abort,
    /// First apply the driver's convergence aids (auto-converge, post-copy); abort if that does
    /// not help within another timeout.
    Escalate,
}

/// Queued VMs per slot of a source above which [`Order::Packed`] does not plan that source
/// (largest first instead): a plan's cost grows with the square of its VMs, and with many
/// waves left, largest first leaves little for a plan to gain.
pub const PACK_JOBS_PER_SLOT: usize = 8;

/// In which order VMs are started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Largest first, and each source's queue planned so that its slots end together: the
    /// queued VMs are split over the source's slots (after what its running moves still have to
    /// send), each by the bytes its move is expected to send (memory and disks, and memory sent
    /// again while the guest dirties it, where the host measured a dirty rate), and started in
    /// the order of that plan (`engine/pack.rs`). Planned again as moves end, fail or become
    /// ready. Sources with more than [`PACK_JOBS_PER_SLOT`] queued VMs per slot start their
    /// largest first until they have fewer.
    #[default]
    Packed,
    /// Largest (memory + disk) first (LPT).
    LargestFirst,
    /// Smallest first: the most VMs moved early.
    SmallestFirst,
    /// The order the VMs were named in (or the host listed them).
    AsGiven,
}

/// Which scheduling algorithm drives starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerPolicy {
    /// Event-driven: a freed slot is refilled at once.
    #[default]
    Vmove,
    /// A faithful model of the seed module: passes every `poll_interval`, one VM at a time with
    /// start confirmation, completions noticed only at the next pass. For comparison benchmarks.
    Seed,
    /// KubeVirt's migration controller (simulator only): every migration queued at once, started
    /// first come first served while fewer than `per_cluster` run in the cluster and fewer than
    /// `outbound_per_node` leave the VM's node; the destination is picked when the migration
    /// starts (the scheduler places the target pod: most free memory). Defaults 5 and 2
    /// ([`SchedulerPolicy::KUBEVIRT`]); sources in `engine/peers.rs` and docs/BENCHMARKS.md.
    #[serde(rename = "kubevirt")]
    KubeVirt {
        /// `parallelMigrationsPerCluster`.
        per_cluster: u32,
        /// `parallelOutboundMigrationsPerNode`.
        outbound_per_node: u32,
    },
    /// OpenStack Nova's `nova host-evacuate-live` (simulator only): every server's live
    /// migration requested at once, its destination chosen by the scheduler at request time
    /// (most free RAM after the earlier requests' claims), then run by the source compute's
    /// executor, first in first out, `per_compute` at a time (`max_concurrent_live_migrations`,
    /// default 1: [`SchedulerPolicy::NOVA`]).
    Nova {
        /// `max_concurrent_live_migrations` of the source compute.
        per_compute: u32,
    },
    /// Proxmox VE's `pvenode migrateall TARGET` (simulator only), one call per source node: the
    /// node's guests in VMID order, at most `max_workers` at a time, all to the one target node
    /// given (here: the source's destinations taken in turn by source). Default 4
    /// (`max_workers` of datacenter.cfg: [`SchedulerPolicy::PROXMOX`]).
    Proxmox {
        /// `--max-workers`.
        max_workers: u32,
    },
    /// vSphere maintenance mode with DRS (simulator only): migrations queued by vCenter in the
    /// order given, each started when both hosts are under `per_host` concurrent vMotions (its
    /// cost limits: 4 on 1 GbE, 8 on 10 GbE, 2 for a vMotion without shared storage), placed by
    /// DRS on the destination with the most free memory.
    #[serde(rename = "vsphere")]
    VSphere {
        /// Concurrent vMotions per host.
        per_host: u32,
    },
    /// A shell loop with `&` (simulator only): every migration started at once, in the order
    /// given, destinations taken in turn; no limit of its own.
    AllAtOnce,
}

impl SchedulerPolicy {
    /// KubeVirt at its defaults (`parallelMigrationsPerCluster` 5,
    /// `parallelOutboundMigrationsPerNode` 2: kubevirt/kubevirt `pkg/virt-config/virt-config.go`).
    pub const KUBEVIRT: SchedulerPolicy = SchedulerPolicy::KubeVirt {
        per_cluster: 5,
        outbound_per_node: 2,
    };
    /// Nova at its default (`max_concurrent_live_migrations` 1: openstack/nova
    /// `nova/conf/compute.py`).
    pub const NOVA: SchedulerPolicy = SchedulerPolicy::Nova { per_compute: 1 };
    /// Proxmox at the default of datacenter.cfg's `max_workers` (4, as the web UI's datacenter
    /// options show it: proxmox/pve-manager `www/manager6/dc/OptionView.js`).
    pub const PROXMOX: SchedulerPolicy = SchedulerPolicy::Proxmox { max_workers: 4 };

    /// A peer's policy: modelled for the simulator's benchmark, never for a real run (the CLI
    /// refuses it).
    pub fn is_peer(&self) -> bool {
        !matches!(self, SchedulerPolicy::Vmove | SchedulerPolicy::Seed)
    }

    /// A short name for tables: `kubevirt(5,2)`, `nova(1)`, `all-at-once`.
    pub fn label(&self) -> String {
        match self {
            SchedulerPolicy::Vmove => "vmove".into(),
            SchedulerPolicy::Seed => "seed".into(),
            SchedulerPolicy::KubeVirt {
                per_cluster,
                outbound_per_node,
            } if *per_cluster == u32::MAX => format!("kubevirt(-,{outbound_per_node})"),
            SchedulerPolicy::KubeVirt {
                per_cluster,
                outbound_per_node,
            } => format!("kubevirt({per_cluster},{outbound_per_node})"),
            SchedulerPolicy::Nova { per_compute } => format!("nova({per_compute})"),
            SchedulerPolicy::Proxmox { max_workers } => format!("proxmox({max_workers})"),
            SchedulerPolicy::VSphere { per_host } => format!("vsphere({per_host})"),
            SchedulerPolicy::AllAtOnce => "all-at-once".into(),
        }
    }

    /// The policy's own limits that must be at least 1, by name.
    fn limits(&self) -> Vec<(&'static str, u32)> {
        match *self {
            SchedulerPolicy::KubeVirt {
                per_cluster,
                outbound_per_node,
            } => vec![
                ("policy.kubevirt.per_cluster", per_cluster),
                ("policy.kubevirt.outbound_per_node", outbound_per_node),
            ],
            SchedulerPolicy::Nova { per_compute } => vec![("policy.nova.per_compute", per_compute)],
            SchedulerPolicy::Proxmox { max_workers } => {
                vec![("policy.proxmox.max_workers", max_workers)]
            }
            SchedulerPolicy::VSphere { per_host } => vec![("policy.vsphere.per_host", per_host)],
            _ => vec![],
        }
    }
}

/// The knobs of a run. Defaults are the seed's where it had one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Tries per VM before it is unmigratable (seed: `-MaxAttempts`, 3).
    pub max_attempts: u32,
    /// How often every host is re-read (seed: `-Timeout`, 60 s). Scheduling does not wait for it.
    #[serde(with = "crate::spec::dur")]
    pub poll_interval: Duration,
    /// How often hosts are re-read while a VM waits on something only a host can tell (a backup, a
    /// foreign migration, a host that did not answer).
    #[serde(with = "crate::spec::dur")]
    pub recheck_interval: Duration,
    /// How long to wait for a started migration to show as running, per check (seed: 10 s). The
    /// window is `job_start_timeout` x `job_start_attempts`; within it the status is read every
    /// `progress_interval` (at most every `job_start_timeout`).
    #[serde(with = "crate::spec::dur")]
    pub job_start_timeout: Duration,
    /// How many checks before a migration that never showed as running is aborted (seed: 3).
    pub job_start_attempts: u32,
    /// How long a VM may stay backing up before it is unmigratable (seed: 1 h).
    #[serde(with = "crate::spec::dur")]
    pub backup_threshold: Duration,
    /// How often a running migration's progress is read.
    #[serde(with = "crate::spec::dur")]
    pub progress_interval: Duration,
    /// A migration with no progress for this long is stalled.
    #[serde(with = "crate::spec::dur")]
    pub stall_timeout: Duration,
    /// What to do with a stalled migration.
    pub stall_action: WatchdogAction,
    /// A migration may take at most this long per GiB it moves (memory + disks).
    #[serde(with = "crate::spec::dur")]
    pub completion_timeout_per_gib: Duration,
    /// The completion timeout is never shorter than this.
    #[serde(with = "crate::spec::dur")]
    pub completion_timeout_min: Duration,
    /// What to do when the completion timeout passes.
    pub completion_action: WatchdogAction,
    /// First retry delay; doubled each attempt.
    #[serde(with = "crate::spec::dur")]
    pub backoff_initial: Duration,
    /// Longest retry delay.
    #[serde(with = "crate::spec::dur")]
    pub backoff_max: Duration,
    /// Random spread of each delay, as a fraction (0.2 = +-20 %).
    pub backoff_jitter: f64,
    /// Move powered-off and saved VMs only after the running ones (seed behaviour).
    pub offline_last: bool,
    /// Stop starting moves at the first unmigratable VM (seed: `-CrashOnUnmigratable`).
    pub fail_fast: bool,
    /// Slot limit for hosts whose hypervisor reports none (libvirt), and Hyper-V's default.
    pub default_host_limit: u32,
    /// Cap on concurrent migrations per host, applied to every host (seed: `-MaxParallelMigrations`).
    pub max_parallel: Option<u32>,
    /// Cap on concurrent migrations of this run across the whole cluster.
    pub cluster_cap: Option<u32>,
    pub order: Order,
    /// The scheduling algorithm.
    pub policy: SchedulerPolicy,
    /// Seed of the retry jitter (and of everything random in a simulation).
    pub seed: u64,
    /// Remove what a verified move leaves on the source.
    pub cleanup: bool,
    /// Ask the driver's pre-flight check (by reading only) before each VM's attempt on a
    /// destination, and before a retry: a VM it blocks is unmigratable with 0 attempts.
    pub preflight: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_attempts: 3,
            poll_interval: Duration::from_secs(60),
            recheck_interval: Duration::from_secs(10),
            job_start_timeout: Duration::from_secs(10),
            job_start_attempts: 3,
            backup_threshold: Duration::from_secs(3600),
            progress_interval: Duration::from_secs(2),
            stall_timeout: Duration::from_secs(150),
            stall_action: WatchdogAction::Abort,
            completion_timeout_per_gib: Duration::from_secs(150),
            completion_timeout_min: Duration::from_secs(300),
            completion_action: WatchdogAction::Escalate,
            backoff_initial: Duration::from_secs(20),
            backoff_max: Duration::from_secs(300),
            backoff_jitter: 0.2,
            offline_last: true,
            fail_fast: false,
            default_host_limit: 2,
            max_parallel: None,
            cluster_cap: None,
            order: Order::Packed,
            policy: SchedulerPolicy::Vmove,
            seed: 0,
            cleanup: true,
            preflight: true,
        }
    }
}

impl Settings {
    /// Checks the knobs on their own (the run spec's [`RunSpec::validate`] calls it; the CLI
    /// calls it when it merges settings, so `vmove config` refuses what a run would).
    pub fn validate(&self) -> Result<(), SpecError> {
        let s = self;
        if s.max_attempts == 0 {
            return Err(SpecError::ZeroCap("max_attempts".into()));
        }
        if s.job_start_attempts == 0 {
            return Err(SpecError::ZeroCap("job_start_attempts".into()));
        }
        if s.default_host_limit == 0 {
            return Err(SpecError::ZeroCap("default_host_limit".into()));
        }
        if s.max_parallel == Some(0) {
            return Err(SpecError::ZeroCap("max_parallel".into()));
        }
        if s.cluster_cap == Some(0) {
            return Err(SpecError::ZeroCap("cluster_cap".into()));
        }
        if let Some((key, _)) = s.policy.limits().into_iter().find(|&(_, v)| v == 0) {
            return Err(SpecError::ZeroCap(key.into()));
        }
        if !(0.0..=1.0).contains(&s.backoff_jitter) {
            return Err(SpecError::BadSetting {
                key: "backoff_jitter",
                reason: format!("must be between 0 and 1, not {}", s.backoff_jitter),
            });
        }
        for (key, d) in [
            ("poll_interval", s.poll_interval),
            ("recheck_interval", s.recheck_interval),
            ("progress_interval", s.progress_interval),
            ("job_start_timeout", s.job_start_timeout),
            ("stall_timeout", s.stall_timeout),
        ] {
            if d < Duration::from_millis(1) {
                return Err(SpecError::BadSetting {
                    key,
                    reason: format!("must be at least 1ms, not {}", dur::format_duration(d)),
                });
            }
        }
        for (key, d) in [
            ("poll_interval", s.poll_interval),
            ("recheck_interval", s.recheck_interval),
            ("progress_interval", s.progress_interval),
            ("job_start_timeout", s.job_start_timeout),
            ("backup_threshold", s.backup_threshold),
            ("stall_timeout", s.stall_timeout),
            ("completion_timeout_per_gib", s.completion_timeout_per_gib),
            ("completion_timeout_min", s.completion_timeout_min),
            ("backoff_initial", s.backoff_initial),
            ("backoff_max", s.backoff_max),
        ] {
            if d > dur::MAX_DURATION {
                return Err(SpecError::BadSetting {
                    key,
                    reason: format!(
                        "is longer than {} (the longest duration vmove accepts)",
                        dur::format_duration(dur::MAX_DURATION)
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Per-host limits from the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct HostLimits {
    /// Cap on this host's concurrent migrations (in + out).
    pub max_migrations: Option<u32>,
}

/// Everything a run needs to know before it starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The run's id (put in job names and the journal).
    pub run_id: String,
    /// Sources, their selections and allowed destinations.
    pub sources: Vec<SourceSpec>,
    /// Every known host with its configured limits (sources and destinations must be here).
    pub hosts: BTreeMap<HostId, HostLimits>,
    /// Destination file layout, per destination host (hosts not listed get the default layout).
    pub layouts: BTreeMap<HostId, PathLayout>,
    /// VM name -> destination it must go to.
    pub pins: BTreeMap<String, HostId>,
    /// VM name -> priority (higher starts first; default 0). Ties follow `settings.order`.
    pub priorities: BTreeMap<String, i32>,
    pub settings: Settings,
}

/// A bad run specification. Each names what is wrong; nothing has been touched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// No source given.
    #[error("nothing to move: no source host was given")]
    NoSource,
    /// A host is not configured.
    #[error("unknown host `{0}`: it is not in the configuration's hosts")]
    UnknownHost(HostId),
    /// Source and destination are the same.
    #[error("host `{0}` is both a source and a destination of its own VMs")]
    SameSourceAndDestination(HostId),
    /// A source has no destination.
    #[error("source host `{0}` has no destination")]
    NoDestination(HostId),
    /// A cap of zero would never move anything.
    #[error("`{0}` must be at least 1")]
    ZeroCap(String),
    /// A pattern does not parse.
    #[error("bad VM name pattern `{pattern}`: {reason}")]
    BadPattern { pattern: String, reason: String },
    /// A pin names a host that is not an allowed destination.
    #[error("VM `{vm}` is pinned to `{host}`, which is not one of its allowed destinations")]
    BadPin {
        /// VM name.
        vm: String,
        host: HostId,
    },
    /// The same source listed twice.
    #[error("source host `{0}` is listed twice")]
    DuplicateSource(HostId),
    /// A setting out of range.
    #[error("setting `{key}` {reason}")]
    BadSetting {
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl RunSpec {
    /// Checks the spec. Every error names the host, key or pattern at fault.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.sources.is_empty() {
            return Err(SpecError::NoSource);
        }
        self.settings.validate()?;
        for (host, limits) in &self.hosts {
            if limits.max_migrations == Some(0) {
                return Err(SpecError::ZeroCap(format!("hosts.{host}.max_migrations")));
            }
        }
        let mut seen = BTreeSet::new();
        // The last destination list checked whole, and its hosts: sources sharing a list (a
        // large evacuation's thousands) check it once, then only that they are not in it.
        let mut checked: Option<(&std::sync::Arc<[HostId]>, BTreeSet<&HostId>)> = None;
        for src in &self.sources {
            if !seen.insert(&src.host) {
                return Err(SpecError::DuplicateSource(src.host.clone()));
            }
            if !self.hosts.contains_key(&src.host) {
                return Err(SpecError::UnknownHost(src.host.clone()));
            }
            if src.destinations.is_empty() {
                return Err(SpecError::NoDestination(src.host.clone()));
            }
            match &checked {
                Some((list, hosts)) if std::sync::Arc::ptr_eq(list, &src.destinations) => {
                    if hosts.contains(&src.host) {
                        return Err(SpecError::SameSourceAndDestination(src.host.clone()));
                    }
                }
                _ => {
                    for d in src.destinations.iter() {
                        if !self.hosts.contains_key(d) {
                            return Err(SpecError::UnknownHost(d.clone()));
                        }
                        if *d == src.host {
                            return Err(SpecError::SameSourceAndDestination(d.clone()));
                        }
                    }
                    checked = Some((&src.destinations, src.destinations.iter().collect()));
                }
            }
            if let Selection::Names(pats) = &src.select {
                for p in pats {
                    compile(p)?;
                }
            }
            for p in &src.exclude {
                compile(p)?;
            }
        }
        for host in self.pins.values() {
            if !self.hosts.contains_key(host) {
                return Err(SpecError::UnknownHost(host.clone()));
            }
        }
        Ok(())
    }
}

/// Serde for durations as human strings ("90s", "1h 30m") or plain seconds.
pub mod dur {
    use serde::{Deserialize, Deserializer, Serializer, de};
    use std::time::Duration;

    /// Serialises as a human string.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    /// Accepts "90s", "1h", "1h 30m", "250ms" or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Float(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) => from_secs_f64(n as f64).map_err(de::Error::custom),
            Raw::Float(f) => from_secs_f64(f).map_err(de::Error::custom),
            Raw::Text(t) => parse_duration(&t).map_err(de::Error::custom),
        }
    }

    /// The longest duration any setting may have: 365 days. Longer ones are surely typos, and
    /// would overflow the clocks they are added to (`--stall-timeout 999999999999999999999d`).
    pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

    /// A number of seconds as a duration: finite, not negative, at most [`MAX_DURATION`], and
    /// a whole number of milliseconds (see `whole_ms`).
    pub fn from_secs_f64(secs: f64) -> Result<Duration, String> {
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!("`{secs}` is not a duration (seconds, 0 or more)"));
        }
        if secs > MAX_DURATION.as_secs_f64() {
            return Err(too_long(&format!("{secs}")));
        }
        whole_ms(secs, &format!("{secs}"), " seconds")
    }

    /// `secs` as a duration if it is a whole number of milliseconds: time in vmove is counted
    /// in milliseconds (the core's clock, the journal, every printed duration), so "0.5ms" or
    /// `1e-9` would be kept as something else than written, and printed as "0s". The error of
    /// float arithmetic is forgiven (0.3 is 0.29999... in binary) and the value rounded:
    /// `from_secs_f64` truncates, and "17000000216ms" read back as 17000000215 ms (found by the
    /// CLI's fuzzing). `text` and `unit` are the value as written, for the message.
    fn whole_ms(secs: f64, text: &str, unit: &str) -> Result<Duration, String> {
        let ms = secs * 1000.0;
        let whole = ms.round();
        // The error of the float arithmetic, not a fraction anyone writes.
        if (ms - whole).abs() <= (ms * 1e-12).max(1e-9) {
            return Ok(Duration::from_millis(whole as u64));
        }
        Err(format!(
            "`{text}`{unit} is not a whole number of milliseconds (vmove counts time in ms, \
             and nothing shorter than 1ms): write e.g. \"{}\"",
            format_duration(Duration::from_millis((whole as u64).max(1)))
        ))
    }

    fn too_long(text: &str) -> String {
        format!(
            "`{text}` is longer than {} (the longest duration vmove accepts)",
            format_duration(MAX_DURATION)
        )
    }

    /// Parses "90s", "1h 30m", "250ms", "2m30s", "45" (seconds): a whole number of
    /// milliseconds ("1.5ms" is refused).
    pub fn parse_duration(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("an empty duration: write e.g. \"90s\", \"5m\" or \"1h\"".into());
        }
        if t.starts_with('-') {
            return Err(format!(
                "`{text}` is not a duration: a duration is never negative (write e.g. \"90s\", \
                 \"5m\" or \"1h\")"
            ));
        }
        if t.bytes().all(|b| b.is_ascii_digit()) {
            return match t.parse::<u64>() {
                Ok(n) if n <= MAX_DURATION.as_secs() => Ok(Duration::from_secs(n)),
                _ => Err(too_long(text)),
            };
        }
        let mut total = Duration::ZERO;
        let mut rest = t;
        while !rest.is_empty() {
            rest = rest.trim_start();
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if num_end == 0 {
                return Err(format!(
                    "`{text}` is not a duration: write e.g. \"90s\", \"5m\" or \"1h\""
                ));
            }
            let num: f64 = rest[..num_end]
                .parse()
                .map_err(|_| format!("`{text}` is not a duration: bad number"))?;
            rest = rest[num_end..].trim_start();
            let unit_end = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_end];
            rest = &rest[unit_end..];
            let secs = match unit {
                "ms" => num / 1000.0,
                "s" | "sec" | "secs" | "second" | "seconds" => num,
                "m" | "min" | "mins" | "minute" | "minutes" => num * 60.0,
                "h" | "hr" | "hour" | "hours" => num * 3600.0,
                "d" | "day" | "days" => num * 86400.0,
                "" => return Err(format!("`{text}` needs a unit (ms, s, m, h, d)")),
                other => {
                    return Err(format!(
                        "`{text}` has an unknown unit `{other}` (use ms, s, m, h or d)"
                    ));
                }
            };
            if !secs.is_finite() || secs > MAX_DURATION.as_secs_f64() {
                return Err(too_long(text));
            }
            let part = whole_ms(secs, text, "")?;
            total = total
                .checked_add(part)
                .filter(|d| *d <= MAX_DURATION)
                .ok_or_else(|| too_long(text))?;
        }
        Ok(total)
    }

    /// Formats a duration the way [`parse_duration`] reads it back.
    pub fn format_duration(d: Duration) -> String {
        let ms = d.as_millis();
        if ms == 0 {
            return "0s".into();
        }
        if !ms.is_multiple_of(1000) {
            return format!("{ms}ms");
        }
        let mut s = (ms / 1000) as u64;
        let mut out = String::new();
        for (unit, n) in [("h", 3600), ("m", 60), ("s", 1)] {
            if s >= n {
                out.push_str(&format!("{}{unit}", s / n));
                s %= n;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::dur::{MAX_DURATION, format_duration, from_secs_f64, parse_duration};
    use std::time::Duration;

    #[test]
    fn a_huge_duration_is_an_error_not_a_panic() {
        for text in [
            "999999999999999999999d",
            "99999999999999999999",
            "1e20s",
            "200d 200d",
            "366d",
            "9999999999999999999999999999999999999999.5s",
        ] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert!(from_secs_f64(1e20).is_err());
        assert!(from_secs_f64(f64::NAN).is_err());
        assert!(from_secs_f64(-1.0).is_err());
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
    }

    #[test]
    fn a_printed_duration_reads_back_to_the_millisecond() {
        let d = parse_duration("17000000216.0ms").map(|d| d.as_millis());
        assert_eq!(d, Ok(17_000_000_216));
        let d = Duration::from_millis(17_000_000_216);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn a_duration_that_is_not_a_whole_number_of_milliseconds_is_refused() {
        for text in ["0.5ms", "1.5ms", "1.0005s", "1ms 0.5ms", "0.0000001s"] {
            let e = parse_duration(text).expect_err(text);
            assert!(
                e.contains(&format!("`{text}`")) && e.contains("whole number of milliseconds"),
                "{text}: {e}"
            );
        }
        for secs in [1e-9, 0.0005, 1.0001] {
            let e = from_secs_f64(secs).expect_err("sub-millisecond");
            assert!(e.contains("whole number of milliseconds"), "{secs}: {e}");
        }
        let e = parse_duration("0.5ms").expect_err("0.5ms");
        assert!(e.contains("write e.g. \"1ms\""), "{e}");
        // Whole milliseconds written as fractions still read exactly.
        for (text, ms) in [
            ("0.3s", 300),
            ("1.001s", 1001),
            ("2ms 1ms", 3),
            ("0.25m", 15_000),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        assert_eq!(from_secs_f64(0.3), Ok(Duration::from_millis(300)));
        assert_eq!(from_secs_f64(0.0), Ok(Duration::ZERO));
    }

    #[test]
    fn an_interval_of_zero_is_refused_as_under_1ms() {
        let s = super::Settings {
            stall_timeout: Duration::ZERO,
            ..Default::default()
        };
        let e = super::Settings::validate(&s).expect_err("0s").to_string();
        assert!(
            e.contains("stall_timeout") && e.contains("at least 1ms"),
            "{e}"
        );
    }

    /// Sources sharing one destination list are stored (the journal keeps the run's spec as
    /// this JSON) exactly as separate lists were: plain arrays of host names, read back equal.
    /// Sources on `hosts`, every one given the same destination list (one `Arc`).
    fn sources_sharing(
        hosts: &[&str],
        list: &std::sync::Arc<[crate::model::HostId]>,
    ) -> Vec<super::SourceSpec> {
        hosts
            .iter()
            .map(|h| super::SourceSpec {
                host: crate::model::HostId::new(*h),
                select: super::Selection::All,
                destinations: list.clone(),
                exclude: vec![],
            })
            .collect()
    }

    /// Sources sharing one destination list have it checked once (`RunSpec::validate`): a
    /// later source that is itself in the shared list is still refused, naming it, and an
    /// unknown host in the list is still named.
    #[test]
    fn a_shared_destination_list_is_checked_for_every_source() {
        use super::{HostLimits, RunSpec, Settings, SpecError};
        use crate::model::HostId;
        use std::sync::Arc;
        let spec = |list: &[&str], hosts: &[&str]| {
            let list: Arc<[HostId]> = list.iter().map(|h| HostId::new(*h)).collect();
            RunSpec {
                run_id: "t".into(),
                sources: sources_sharing(&["a", "c"], &list),
                hosts: hosts
                    .iter()
                    .map(|h| (HostId::new(*h), HostLimits::default()))
                    .collect(),
                layouts: Default::default(),
                pins: Default::default(),
                priorities: Default::default(),
                settings: Settings::default(),
            }
        };
        assert!(matches!(
            spec(&["c", "d"], &["a", "c", "d"]).validate(),
            Err(SpecError::SameSourceAndDestination(h)) if h.as_str() == "c"
        ));
        assert!(matches!(
            spec(&["d", "e"], &["a", "c", "d"]).validate(),
            Err(SpecError::UnknownHost(h)) if h.as_str() == "e"
        ));
        assert!(spec(&["d", "e"], &["a", "c", "d", "e"]).validate().is_ok());
    }

    #[test]
    fn shared_destination_lists_serialize_as_plain_lists() -> Result<(), serde_json::Error> {
        use super::{Selection, SourceSpec};
        use crate::model::HostId;
        use std::sync::Arc;
        let list: Arc<[HostId]> = vec![HostId::new("c"), HostId::from("d")].into();
        let sources = sources_sharing(&["a", "b"], &list);
        let sel = serde_json::to_string(&Selection::All)?;
        let stored = format!(
            r#"[{{"host":"a","select":{sel},"destinations":["c","d"]}},{{"host":"b","select":{sel},"destinations":["c","d"]}}]"#
        );
        assert_eq!(serde_json::to_string(&sources)?, stored);
        let back: Vec<SourceSpec> = serde_json::from_str(&stored)?;
        assert_eq!(back, sources);
        assert_eq!(serde_json::to_string(&back)?, stored);
        Ok(())
    }

    /// A host id's clone shares its text (a reference count), so the many copies a large run
    /// holds cost no copy of the name; it still reads, prints and compares as the name.
    #[test]
    fn a_host_id_clone_shares_its_name() {
        use crate::model::HostId;
        let a = HostId::new(String::from("hv-01"));
        let b = a.clone();
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_eq!(b, HostId::from("hv-01"));
        assert_eq!(b.to_string(), "hv-01");
    }
}
