//! The driver factory: one driver value per kind, serving every configured host of that kind.
//! This is the only place that knows the driver crates. The libvirt and Hyper-V drivers are
//! cargo features (both on by default); without one, its hosts get a clear error.
//!
//! Each constructor gets `(host, table)` pairs: the `[hosts.<name>]` table as written, less the
//! CLI's layout keys (`put_in_subfolder`, `preserve_drive_letter`); `driver`, `max_migrations`
//! and `path` stay in it, for drivers that want them.

use crate::config::{ConfigFile, DriverKind};
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use vmove_core::HostId;
use vmove_driver::Driver;
use vmove_runtime::Drivers;

/// The drivers of a run, and the run-time speed they need (1 except for sped-up sim hosts).
#[derive(Debug)]
pub struct Built {
    /// Host -> driver.
    pub drivers: Drivers,
    /// Run-time seconds per real second.
    pub speed: f64,
}

/// The run's migration bandwidth cap (`bandwidth_mib_s`, `--bandwidth`), MiB/s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    /// The cap.
    pub mib_s: u64,
    /// Given by the flag: it overrides a host's own `bandwidth_mib_s`. Else (config
    /// `[defaults]` or the environment) it fills in for hosts that set none.
    pub from_flag: bool,
}

impl Cap {
    /// The cap of the effective settings, if any.
    pub fn of(eff: &crate::settings::Effective) -> Option<Cap> {
        eff.bandwidth_mib_s.map(|mib_s| Cap {
            mib_s,
            from_flag: eff
                .origins
                .get("bandwidth_mib_s")
                .is_some_and(|o| o.starts_with("flag")),
        })
    }

    /// A libvirt host's table with the cap applied: libvirt caps each migration through its
    /// bandwidth parameter (`VIR_MIGRATE_PARAM_BANDWIDTH`, MiB/s; see libvirt's
    /// virDomainMigrate3 documentation), which the libvirt driver sets from `bandwidth_mib_s`.
    pub fn apply(cap: Option<Cap>, mut table: toml::Table) -> toml::Table {
        if let Some(c) = cap
            && (c.from_flag || !table.contains_key("bandwidth_mib_s"))
        {
            let v = i64::try_from(c.mib_s).unwrap_or(i64::MAX);
            table.insert("bandwidth_mib_s".into(), toml::Value::Integer(v));
        }
        table
    }
}

/// Builds the drivers of the `involved` hosts (other configured hosts are left alone, so a
/// host that cannot be reached does not stop a run that does not touch it). `cap` is the run's
/// bandwidth cap: given to libvirt hosts; Hyper-V hosts get a warning that it does not apply.
/// A host table that cannot be used is refused naming the config file it is in (as a
/// `[defaults]` key is), when it came from one.
pub async fn build(
    cfg: &ConfigFile,
    involved: &BTreeSet<HostId>,
    cap: Option<Cap>,
) -> Result<Built> {
    let hosts = &cfg.hosts;
    let in_file = |e: anyhow::Error| match cfg.named() {
        Some(file) => e.context(file),
        None => e,
    };
    let mut by_kind: BTreeMap<DriverKind, Vec<(HostId, toml::Table)>> = BTreeMap::new();
    for h in involved {
        let Some(c) = hosts.get(h) else {
            bail!("unknown host `{h}`: it is not in the configuration's hosts");
        };
        let table = match c.driver {
            DriverKind::Libvirt => Cap::apply(cap, c.driver_table.clone()),
            _ => c.driver_table.clone(),
        };
        by_kind
            .entry(c.driver)
            .or_default()
            .push((h.clone(), table));
    }
    let mut drivers = Drivers::new();
    let mut speed = 1.0;
    // The sim driver opens its state file as it is built: built last, so that a refused host
    // table of another kind leaves nothing behind.
    let mut groups: Vec<_> = by_kind.into_iter().collect();
    groups.sort_by_key(|(kind, _)| *kind == DriverKind::Sim);
    for (kind, group) in groups {
        let driver: Arc<dyn Driver> = match kind {
            DriverKind::Sim => {
                let (d, s) = vmove_sim::config::from_config(&group).map_err(in_file)?;
                speed = s;
                d
            }
            DriverKind::Libvirt => libvirt(&group).map_err(in_file)?,
            DriverKind::HyperV => {
                if let Some(c) = cap {
                    errln!("vmove: warning: {}", hyperv_no_cap(c.mib_s, &group));
                }
                hyperv(&group).map_err(in_file)?
            }
        };
        for (h, _) in group {
            drivers.insert(h, Arc::clone(&driver));
        }
    }
    Ok(Built { drivers, speed })
}

/// Why a bandwidth cap does not reach Hyper-V hosts. Hyper-V's WMI migration service takes no
/// per-migration cap: `Msvm_VirtualSystemMigrationSettingData.Bandwidth` is read-only
/// (Microsoft's class reference, learn.microsoft.com/windows/win32/hyperv_v2/
/// msvm-virtualsystemmigrationsettingdata), and `Msvm_VirtualSystemMigrationServiceSettingData`
/// has no bandwidth property. Live migration over SMB is capped host-wide with
/// `Set-SmbBandwidthLimit -Category LiveMigration` (the SmbShare PowerShell module).
pub fn hyperv_no_cap(mib_s: u64, group: &[(HostId, toml::Table)]) -> String {
    let names: Vec<String> = group.iter().map(|(h, _)| h.to_string()).collect();
    format!(
        "the bandwidth cap ({mib_s} MiB/s) is not applied on Hyper-V host(s) {}: Hyper-V's \
         migration service has no per-migration cap; cap live migration over SMB on each host \
         with `Set-SmbBandwidthLimit -Category LiveMigration -BytesPerSecond ...`",
        names.join(", ")
    )
}

#[cfg(feature = "libvirt")]
fn libvirt(group: &[(HostId, toml::Table)]) -> Result<Arc<dyn Driver>> {
    let d = vmove_driver_libvirt::LibvirtDriver::from_config(group)
        .context("the libvirt hosts' configuration is not usable")?;
    Ok(Arc::new(d))
}

#[cfg(not(feature = "libvirt"))]
fn libvirt(_group: &[(HostId, toml::Table)]) -> Result<Arc<dyn Driver>> {
    bail!("the libvirt driver is not built into this vmove (build it with the `libvirt` feature)")
}

#[cfg(feature = "hyperv")]
fn hyperv(group: &[(HostId, toml::Table)]) -> Result<Arc<dyn Driver>> {
    let d = vmove_driver_hyperv::HyperVDriver::from_config(group)
        .context("the Hyper-V hosts' configuration is not usable")?;
    Ok(Arc::new(d))
}

#[cfg(not(feature = "hyperv"))]
fn hyperv(_group: &[(HostId, toml::Table)]) -> Result<Arc<dyn Driver>> {
    bail!("the hyperv driver is not built into this vmove (build it with the `hyperv` feature)")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn bandwidth_cap_fills_in_from_defaults_and_overrides_from_the_flag() {
        let own = table("uri = \"qemu:///system\"\nbandwidth_mib_s = 50");
        let none = table("uri = \"qemu:///system\"");
        let dflt = Some(Cap {
            mib_s: 200,
            from_flag: false,
        });
        let flag = Some(Cap {
            mib_s: 300,
            from_flag: true,
        });
        let bw = |t: toml::Table| t.get("bandwidth_mib_s").and_then(|v| v.as_integer());
        assert_eq!(bw(Cap::apply(dflt, none.clone())), Some(200));
        assert_eq!(bw(Cap::apply(dflt, own.clone())), Some(50));
        assert_eq!(bw(Cap::apply(flag, own.clone())), Some(300));
        assert_eq!(bw(Cap::apply(None, none)), None);
        assert_eq!(bw(Cap::apply(None, own)), Some(50));
    }

    #[test]
    fn hyperv_hosts_are_told_the_cap_does_not_apply() {
        let group = vec![(HostId::new("hv-01"), toml::Table::new())];
        let w = hyperv_no_cap(100, &group);
        assert!(w.contains("100 MiB/s") && w.contains("hv-01"), "{w}");
        assert!(w.contains("Set-SmbBandwidthLimit"), "{w}");
    }
}
