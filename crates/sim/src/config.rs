//! The `[hosts.<name>]` table of a `driver = "sim"` host, as written in vmove's TOML: a simulated
//! host with its VMs and faults, for trying vmove without hypervisors. The CLI hands each sim
//! host's table here, as it hands libvirt and Hyper-V hosts' tables to their crates.
//!
//! Example:
//! ```toml
//! [hosts.a]
//! driver = "sim"
//! speed = 50
//! migration_limit = 2
//! vms = [{ name = "web-1", memory_gib = 2, disk_gib = 4, transient_failures = 1 }]
//! ```

use crate::{Faults, HostSpec, MidFault, SimClock, SimCluster, SimDriver, VmSpec, Window};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use vmove_core::spec::dur;
use vmove_core::{GIB, HostId, Time};
use vmove_driver::Driver;

/// A `driver = "sim"` host: a simulated host with its VMs, for trying vmove without hypervisors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimHostConfig {
    /// Read by the CLI (kept in the table for every driver).
    #[allow(dead_code)]
    driver: String,
    /// Read by the CLI (kept in the table for every driver).
    #[allow(dead_code)]
    max_migrations: Option<u32>,
    /// Read by the CLI (kept in the table for every driver).
    #[allow(dead_code)]
    path: Option<String>,
    /// The limit the simulated host reports (omit: it reports none, like libvirt).
    migration_limit: Option<u32>,
    #[serde(default = "d_memory")]
    memory_gib: u64,
    #[serde(default = "d_disk")]
    disk_gib: u64,
    #[serde(default = "d_nic")]
    nic_gbps: f64,
    #[serde(default = "d_stream")]
    stream_mb_s: u64,
    /// Simulated seconds per real second.
    #[serde(default = "d_speed")]
    speed: f64,
    /// Keep the simulated cluster in this file so it outlives the process (crash tests; see
    /// `persist`). Every sim host of a run must name the same file.
    state_file: Option<String>,
    /// Times its management endpoint does not answer (calls fail; its VMs and migrations go
    /// on): `[{ from = "10s", for = "40s" }]`, from the start of the run.
    #[serde(default)]
    down: Vec<SimDownConfig>,
    #[serde(default)]
    vms: Vec<SimVmConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimDownConfig {
    from: String,
    #[serde(rename = "for")]
    lasts: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimVmConfig {
    name: String,
    #[serde(default = "d_vm_memory")]
    memory_gib: f64,
    #[serde(default)]
    disk_gib: f64,
    #[serde(default)]
    off: bool,
    #[serde(default)]
    dirty_mib_s: u64,
    /// Backing up from the start for this long ("10m").
    #[serde(default)]
    backup_for: Option<String>,
    /// Its first N migration starts fail with a transient error.
    #[serde(default)]
    transient_failures: u32,
    /// Its first migration stops making progress this long after it starts ("5s"): a stall.
    #[serde(default)]
    stall_after: Option<String>,
    /// Shapes a real hypervisor refuses to move: `managed_save`, `snapshots[:N]`,
    /// `cdrom_missing:HOST`, `network_missing:HOST` (see `vmove_sim::cluster::Shape`).
    #[serde(default)]
    shape: Vec<String>,
}

fn d_memory() -> u64 {
    512
}
fn d_disk() -> u64 {
    16 * 1024
}
fn d_nic() -> f64 {
    10.0
}
fn d_stream() -> u64 {
    500
}
fn d_speed() -> f64 {
    1.0
}
fn d_vm_memory() -> f64 {
    4.0
}

fn gib(x: f64) -> u64 {
    (x.max(0.0) * GIB as f64) as u64
}

/// The largest size a sim host or VM may be given, GiB (1 EiB): sizes are kept in bytes.
const MAX_SIM_GIB: u64 = 1 << 30;
/// The largest speed-up of a sim cluster (a day in a tenth of a second).
const MAX_SIM_SPEED: f64 = 1e6;
/// The fastest NIC a sim host may be given, Gbit/s (a petabit: beyond any real link).
const MAX_NIC_GBPS: f64 = 1e6;
/// The fastest single migration stream a sim host may be given, MB/s (a petabyte per second).
const MAX_STREAM_MB_S: f64 = 1e9;
/// The highest dirty rate a sim VM may be given, MiB/s (1 PiB/s: the rate is kept in bytes).
const MAX_DIRTY_MIB_S: u64 = 1 << 30;
/// Bytes per second in one Gbit/s.
const BYTES_PER_GBIT: f64 = 125_000_000.0;
/// Bytes in a MB (the unit of `stream_mb_s`).
const MB: u64 = 1_000_000;

/// Refuses figures no host has (a speed of 1e300, negative or NaN sizes, a NIC of 0), which
/// would be clamped to 0 or overflow the byte counts.
fn check_sim_host(h: &HostId, c: &SimHostConfig) -> Result<()> {
    let range = |key: &str, x: f64, min_exclusive: f64, max: f64| -> Result<()> {
        if !(x.is_finite() && x > min_exclusive && x <= max) {
            bail!(
                "`hosts.{h}.{key}` must be {} and at most {max}, not {x}",
                if min_exclusive < 0.0 {
                    "0 or more"
                } else {
                    "above 0"
                }
            );
        }
        Ok(())
    };
    range("speed", c.speed, 0.0, MAX_SIM_SPEED)?;
    range("memory_gib", c.memory_gib as f64, 0.0, MAX_SIM_GIB as f64)?;
    range("disk_gib", c.disk_gib as f64, -1.0, MAX_SIM_GIB as f64)?;
    range("nic_gbps", c.nic_gbps, 0.0, MAX_NIC_GBPS)?;
    range("stream_mb_s", c.stream_mb_s as f64, 0.0, MAX_STREAM_MB_S)?;
    let mut names = BTreeSet::new();
    for v in &c.vms {
        let at = |key: &str| format!("vms `{}`.{key}", v.name.escape_debug());
        if v.name.trim().is_empty() {
            bail!("`hosts.{h}.vms`: a VM has an empty name");
        }
        if !names.insert(v.name.as_str()) {
            bail!(
                "`hosts.{h}.vms`: VM `{}` is listed twice",
                v.name.escape_debug()
            );
        }
        range(&at("memory_gib"), v.memory_gib, 0.0, MAX_SIM_GIB as f64)?;
        range(&at("disk_gib"), v.disk_gib, -1.0, MAX_SIM_GIB as f64)?;
        range(
            &at("dirty_mib_s"),
            v.dirty_mib_s as f64,
            -1.0,
            MAX_DIRTY_MIB_S as f64,
        )?;
    }
    Ok(())
}

pub fn from_config(group: &[(HostId, toml::Table)]) -> Result<(Arc<dyn Driver>, f64)> {
    let mut state_file: Option<Option<String>> = None;
    let mut hosts = Vec::new();
    let mut vms = Vec::new();
    let mut faults = Faults::default();
    let mut speed: Option<f64> = None;
    for (h, t) in group {
        let c: SimHostConfig = vmove_driver::host_settings_at(t.clone(), &format!("hosts.{h}"))
            .map_err(anyhow::Error::msg)?;
        check_sim_host(h, &c)?;
        if speed.is_some_and(|s| s != c.speed) {
            bail!("`hosts.{h}.speed`: every sim host of a run must have the same speed");
        }
        speed = Some(c.speed);
        if state_file.as_ref().is_some_and(|f| *f != c.state_file) {
            bail!("`hosts.{h}.state_file`: every sim host of a run must name the same state file");
        }
        state_file = Some(c.state_file.clone());
        let mut spec = HostSpec::new(h.as_str());
        spec.migration_limit = c.migration_limit;
        spec.memory_bytes = c.memory_gib * GIB;
        spec.disk_bytes = c.disk_gib * GIB;
        spec.nic_bytes_per_sec = (c.nic_gbps * BYTES_PER_GBIT) as u64;
        spec.stream_cap_bytes_per_sec = c.stream_mb_s * MB;
        hosts.push(spec);
        for d in &c.down {
            let from = dur::parse_duration(&d.from)
                .map_err(|e| anyhow::anyhow!("`hosts.{h}.down` from: {e}"))?;
            let lasts = dur::parse_duration(&d.lasts)
                .map_err(|e| anyhow::anyhow!("`hosts.{h}.down` for: {e}"))?;
            faults.host_down.push((
                h.clone(),
                Window {
                    from: Time::ZERO + from,
                    to: Time::ZERO + from + lasts,
                },
            ));
        }
        for v in c.vms {
            let mut vm = VmSpec::running(&v.name, h.as_str(), gib(v.memory_gib))
                .with_dirty_rate(v.dirty_mib_s << 20);
            if v.disk_gib > 0.0 {
                vm = vm.with_disk(gib(v.disk_gib));
            }
            if v.off {
                vm = vm.off();
            }
            for text in &v.shape {
                let shape = crate::cluster::Shape::parse(text)
                    .map_err(|e| anyhow::anyhow!("`hosts.{h}.vms` `{}`.shape: {e}", v.name))?;
                vm = vm.with_shape(shape);
            }
            if let Some(b) = &v.backup_for {
                let d = dur::parse_duration(b)
                    .map_err(|e| anyhow::anyhow!("`hosts.{h}.vms` `{}`.backup_for: {e}", v.name))?;
                faults.backups.push((
                    vm.id.clone(),
                    Window {
                        from: Time::ZERO,
                        to: Time::ZERO + d,
                    },
                ));
            }
            if v.transient_failures > 0 {
                faults.transient_starts(&vm.id, v.transient_failures);
            }
            if let Some(s) = &v.stall_after {
                let d = dur::parse_duration(s).map_err(|e| {
                    anyhow::anyhow!("`hosts.{h}.vms` `{}`.stall_after: {e}", v.name)
                })?;
                faults.mid.push(MidFault {
                    vm: vm.id.clone(),
                    nth_start: 1,
                    after_ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                    fail: None,
                });
            }
            vms.push(vm);
        }
    }
    let cluster =
        SimCluster::new(hosts, vms, faults).context("the sim hosts do not make a cluster")?;
    let speed = speed.unwrap_or(1.0);
    if let Some(Some(file)) = state_file {
        let d = crate::persist::PersistentSim::open(std::path::Path::new(&file), cluster, speed)?;
        return Ok((Arc::new(d), speed));
    }
    Ok((
        Arc::new(SimDriver::new(cluster, SimClock::scaled(speed))),
        speed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(text: &str) -> String {
        let t: toml::Table = toml::from_str(text).expect("TOML");
        match from_config(&[(HostId::new("a"), t)]) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn a_sim_host_key_of_the_wrong_type_is_named_with_its_path() {
        for (text, key) in [
            (
                "driver = \"sim\"\nmemory_gib = \"lots\"",
                "`hosts.a.memory_gib`",
            ),
            ("driver = \"sim\"\nmemory_gib = 1.5", "`hosts.a.memory_gib`"),
            ("driver = \"sim\"\nmemory_gib = nan", "`hosts.a.memory_gib`"),
            (
                "driver = \"sim\"\nmigration_limit = -1",
                "`hosts.a.migration_limit`",
            ),
            (
                "driver = \"sim\"\nstream_mb_s = 0.5",
                "`hosts.a.stream_mb_s`",
            ),
        ] {
            let e = refusal(text);
            assert!(e.starts_with(key), "{text}: {e}");
        }
    }

    #[test]
    fn a_sim_vm_key_of_the_wrong_type_is_named_with_its_path() {
        for (vm, key) in [
            ("memory_gib = \"lots\"", "`hosts.a.vms[0].memory_gib`"),
            ("dirty_mib_s = 1e20", "`hosts.a.vms[0].dirty_mib_s`"),
            (
                "transient_failures = -1",
                "`hosts.a.vms[0].transient_failures`",
            ),
        ] {
            let text = format!("driver = \"sim\"\nvms = [{{ name = \"w\", {vm} }}]\n");
            let e = refusal(&text);
            assert!(e.starts_with(key), "{text}: {e}");
        }
    }

    #[test]
    fn an_unknown_sim_key_is_named() {
        let e = refusal("driver = \"sim\"\nmemroy_gib = 4");
        assert!(e.contains("`memroy_gib`"), "{e}");
        let e = refusal("driver = \"sim\"\nvms = [{ name = \"w\", colour = 1 }]");
        assert!(e.contains("`colour`") && e.contains("vms[0]"), "{e}");
    }
}
