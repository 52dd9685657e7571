//! The driver factory: one driver value per kind, serving every configured host of that kind.
//! This is the only place that knows the driver crates. The libvirt and Hyper-V drivers are
//! cargo features (both on by default); without one, its hosts get a clear error.
//!
//! Each constructor gets `(host, table)` pairs: the `[hosts.<name>]` table as written, less the
//! CLI's layout keys (`put_in_subfolder`, `preserve_drive_letter`); `driver`, `max_migrations`
//! and `path` stay in it, for drivers that want them.

use crate::config::{DriverKind, HostConfig};
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

/// Builds the drivers of the `involved` hosts (other configured hosts are left alone, so a
/// host that cannot be reached does not stop a run that does not touch it).
pub async fn build(
    hosts: &BTreeMap<HostId, HostConfig>,
    involved: &BTreeSet<HostId>,
) -> Result<Built> {
    let mut by_kind: BTreeMap<DriverKind, Vec<(HostId, toml::Table)>> = BTreeMap::new();
    for h in involved {
        let Some(c) = hosts.get(h) else {
            bail!("unknown host `{h}`: it is not in the configuration's hosts");
        };
        by_kind
            .entry(c.driver)
            .or_default()
            .push((h.clone(), c.driver_table.clone()));
    }
    let mut drivers = Drivers::new();
    let mut speed = 1.0;
    for (kind, group) in by_kind {
        let driver: Arc<dyn Driver> = match kind {
            DriverKind::Sim => {
                let (d, s) = vmove_sim::config::from_config(&group)?;
                speed = s;
                d
            }
            DriverKind::Libvirt => libvirt(&group)?,
            DriverKind::HyperV => hyperv(&group)?,
        };
        for (h, _) in group {
            drivers.insert(h, Arc::clone(&driver));
        }
    }
    Ok(Built { drivers, speed })
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
