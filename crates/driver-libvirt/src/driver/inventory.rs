//! What a host holds: its free resources and migrations, its VMs, a VM's footprint.

use super::state::Inner;
use super::state::blocking_on;
use crate::error::{Phase, code};
use crate::ffi;
use crate::host::{self, JOB_MIGRATION_IN, JOB_MIGRATION_OUT, describe, find_domain, read_err};
use std::sync::Arc;
use virt::sys;
use vmove_driver::*;

/// [`Driver::host_info`]: free memory (page cache included), free space in the host's pool, and
/// the migrations running there (ours and foreign, in or out).
pub(super) async fn host_info(inner: &Inner, host: &HostId) -> DriverResult<HostInfo> {
    let h = inner.host(host)?;
    blocking_on(vec![h.clone()], Phase::Read, move || {
        let conn = h.conn()?;
        let free_memory_bytes = host::available_memory(&conn)?;
        let free_disk_bytes = match host::pool_path(&conn, &h.cfg.pool) {
            Ok((p, _)) => p.info().map(|i| i.available).unwrap_or(0),
            Err(_) => 0,
        };
        let mut active = 0;
        for d in conn
            .list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            .map_err(read_err("cannot list VMs"))?
        {
            let job = ffi::job_stats(&d).ok().flatten();
            let migrating = match job.and_then(|j| j.operation) {
                Some(JOB_MIGRATION_IN | JOB_MIGRATION_OUT) => true,
                _ => matches!(
                    ffi::state(&d).map(|(s, r)| host::power_of(s, r).1),
                    Ok(Some(Activity::MigratingIn | Activity::MigratingOut))
                ),
            };
            if migrating {
                active += 1;
            }
        }
        Ok(HostInfo {
            migration_limit: None,
            active_migrations: active,
            free_memory_bytes,
            free_disk_bytes,
        })
    })
    .await
}

/// [`Driver::list_vms`]: every domain defined on the host (one gone between the list and the look
/// is left out).
pub(super) async fn list_vms(inner: &Arc<Inner>, host: &HostId) -> DriverResult<Vec<VmInfo>> {
    let h = inner.host(host)?;
    let inner = inner.clone();
    blocking_on(vec![h.clone()], Phase::Read, move || {
        let conn = h.conn()?;
        let mut out = Vec::new();
        // VMs measured for the first time by this listing: it waits for their figures.
        let mut fresh = Vec::new();
        for d in conn
            .list_all_domains(0)
            .map_err(read_err("cannot list VMs"))?
        {
            match host::vm_info(&conn, &d) {
                Ok(v) => {
                    if h.cfg.measure_dirty_rates
                        && let Some(_measuring) = inner.begin_measuring(&v.id)
                        && host::measure_dirty_rate(&d, &v)
                        && v.dirty_rate.is_none()
                    {
                        fresh.push((out.len(), d));
                    }
                    out.push(v);
                }
                // Gone between the list and the look: not ours to report.
                Err(e) if e.code == Some(i64::from(code::NO_DOMAIN)) => {}
                Err(e) => return Err(e),
            }
        }
        if !fresh.is_empty() {
            // A source is planned (`order = "packed"`) only once every VM's dirty rate is
            // known: without this wait, the first poll interval of a run would start its
            // moves largest first (in the simulator, one more point over the lower bound on the
            // failures-and-backups workload: docs/BENCHMARKS.md).
            std::thread::sleep(host::DIRTY_RATE_WAIT);
            for (i, d) in fresh {
                out[i].dirty_rate = host::read_dirty_rate(&d);
            }
        }
        Ok(out)
    })
    .await
}

/// [`Driver::footprint`]: the VM's memory and its disks with their chains.
pub(super) async fn footprint(inner: &Inner, host: &HostId, vm: &VmId) -> DriverResult<Footprint> {
    let h = inner.host(host)?;
    let (hid, vm) = (host.clone(), vm.clone());
    blocking_on(vec![h.clone()], Phase::Read, move || {
        let conn = h.conn()?;
        let dom = find_domain(&conn, &vm)?
            .ok_or_else(|| DriverError::permanent(format!("VM {vm} not found on {hid}")))?;
        let (_, desc) = describe(&dom, 0)?;
        let disks = host::disks_of(&conn, &desc)?;
        Ok(Footprint {
            memory_bytes: desc.memory_kib * 1024,
            disks,
            config_paths: Vec::new(),
        })
    })
    .await
}
