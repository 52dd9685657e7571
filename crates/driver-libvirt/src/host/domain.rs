//! Domains: looked up and described, their disks and chains, power state and activity, and
//! the files they use.

use super::connection::{code_of, read_err};
use super::storage::{Pools, vol_at, vol_facts};
use crate::error::code;
use crate::ffi;
use crate::xml::{self, DomainDesc};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;
use vmove_driver::*;

/// The layers of a backing chain followed before it counts as a loop (which should not exist).
const MAX_CHAIN_DEPTH: usize = 32;

/// libvirt's job operation (`virDomainJobOperation`) of an incoming migration.
pub const JOB_MIGRATION_IN: i32 = sys::VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN as i32;
/// libvirt's job operation of an outgoing migration.
pub const JOB_MIGRATION_OUT: i32 = sys::VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT as i32;

/// The other job operations libvirt names.
mod op {
    use virt::sys;
    pub const START: i32 = sys::VIR_DOMAIN_JOB_OPERATION_START as i32;
    pub const SAVE: i32 = sys::VIR_DOMAIN_JOB_OPERATION_SAVE as i32;
    pub const RESTORE: i32 = sys::VIR_DOMAIN_JOB_OPERATION_RESTORE as i32;
    pub const SNAPSHOT: i32 = sys::VIR_DOMAIN_JOB_OPERATION_SNAPSHOT as i32;
    pub const SNAPSHOT_REVERT: i32 = sys::VIR_DOMAIN_JOB_OPERATION_SNAPSHOT_REVERT as i32;
    pub const DUMP: i32 = sys::VIR_DOMAIN_JOB_OPERATION_DUMP as i32;
    pub const BACKUP: i32 = sys::VIR_DOMAIN_JOB_OPERATION_BACKUP as i32;
    pub const SNAPSHOT_DELETE: i32 = sys::VIR_DOMAIN_JOB_OPERATION_SNAPSHOT_DELETE as i32;
}

/// The domain with this UUID, if defined on the host.
pub fn find_domain(conn: &Connect, vm: &VmId) -> DriverResult<Option<Domain>> {
    match conn.lookup_domain_by_uuid_string(vm.as_str()) {
        Ok(d) => Ok(Some(d)),
        Err(e) if code_of(&e) == crate::error::code::NO_DOMAIN => Ok(None),
        Err(e) => Err(read_err("cannot look the VM up")(e)),
    }
}

/// The domain with this name, if defined on the host.
pub fn find_domain_by_name(conn: &Connect, name: &str) -> DriverResult<Option<Domain>> {
    match conn.lookup_domain_by_name(name) {
        Ok(d) => Ok(Some(d)),
        Err(e) if code_of(&e) == crate::error::code::NO_DOMAIN => Ok(None),
        Err(e) => Err(read_err("cannot look the VM up")(e)),
    }
}

/// The domain's XML (live definition when running), parsed.
pub fn describe(dom: &Domain, flags: u32) -> DriverResult<(String, DomainDesc)> {
    let raw = dom
        .xml_desc(flags)
        .map_err(read_err("cannot read the VM's definition"))?;
    let desc = xml::parse_domain(&raw).map_err(|e| DriverError::transient(e.to_string()))?;
    Ok((raw, desc))
}

/// A VM's disks with their sizes and full backing chains.
pub fn disks_of(conn: &Connect, desc: &DomainDesc) -> DriverResult<Vec<Disk>> {
    let mut out = Vec::new();
    for d in &desc.disks {
        let mut disk = Disk {
            path: d.source.clone(),
            format: d.format.clone().unwrap_or_else(|| "raw".to_owned()),
            virtual_bytes: 0,
            allocated_bytes: 0,
            backing_chain: Vec::new(),
        };
        let mut next = Some(d.source.clone());
        let mut first = true;
        while let Some(path) = next.take() {
            let Some(vol) = vol_at(conn, &path)? else {
                break;
            };
            let (cap, alloc, format, backing) = vol_facts(&vol)?;
            if first {
                disk.virtual_bytes = cap;
                if d.format.is_none()
                    && let Some(f) = format
                {
                    disk.format = f;
                }
                first = false;
            } else {
                disk.backing_chain.push(path.clone());
            }
            disk.allocated_bytes += alloc;
            if disk.backing_chain.len() > MAX_CHAIN_DEPTH {
                break; // A loop in a chain (should not exist): stop counting.
            }
            next = backing;
        }
        // A running domain's XML names the chain even where volumes are not visible.
        if disk.backing_chain.is_empty() && !d.backing.is_empty() {
            disk.backing_chain = d.backing.clone();
        }
        out.push(disk);
    }
    Ok(out)
}

/// Power state and its words, from libvirt's state and reason.
pub fn power_of(state: i32, reason: i32) -> (PowerState, Option<Activity>, Health) {
    use sys::*;
    match state as u32 {
        VIR_DOMAIN_RUNNING => (PowerState::Running, None, Health::Ok),
        VIR_DOMAIN_BLOCKED => (PowerState::Running, None, Health::Ok),
        VIR_DOMAIN_PAUSED => {
            let act = match reason as u32 {
                VIR_DOMAIN_PAUSED_MIGRATION | VIR_DOMAIN_PAUSED_STARTING_UP => {
                    Some(Activity::MigratingIn)
                }
                VIR_DOMAIN_PAUSED_POSTCOPY => Some(Activity::MigratingOut),
                _ => None,
            };
            let health = match reason as u32 {
                VIR_DOMAIN_PAUSED_IOERROR => Health::Bad("paused on an I/O error".to_owned()),
                VIR_DOMAIN_PAUSED_CRASHED => Health::Bad("crashed".to_owned()),
                VIR_DOMAIN_PAUSED_POSTCOPY_FAILED => {
                    Health::Bad("post-copy migration failed".to_owned())
                }
                _ => Health::Ok,
            };
            (PowerState::Paused, act, health)
        }
        VIR_DOMAIN_SHUTOFF => (PowerState::Off, None, Health::Ok),
        VIR_DOMAIN_SHUTDOWN => (
            PowerState::Transitioning("shutting down".to_owned()),
            None,
            Health::Ok,
        ),
        VIR_DOMAIN_CRASHED => (PowerState::Off, None, Health::Bad("crashed".to_owned())),
        VIR_DOMAIN_PMSUSPENDED => (PowerState::Saved, None, Health::Ok),
        _ => (
            PowerState::Transitioning("no state".to_owned()),
            None,
            Health::Ok,
        ),
    }
}

/// Whether a domain state is "paused (migrating)": `VIR_DOMAIN_PAUSED` with reason
/// `VIR_DOMAIN_PAUSED_MIGRATION`. A pause its owner asked for (reason `user`) is not.
pub fn paused_by_migration(state: i32, reason: i32) -> bool {
    state as u32 == sys::VIR_DOMAIN_PAUSED && reason as u32 == sys::VIR_DOMAIN_PAUSED_MIGRATION
}

/// Whether the domain waits, paused on a migration's source, for the end of a migration that
/// nobody drives any more: "paused (migrating)" and no job at all.
///
/// libvirt's QEMU driver pauses the source at the switchover (the end of Perform) with reason
/// "migration". When the connection that drives a non-p2p migration closes after Perform and
/// before Confirm (the client was killed), the source's close callback
/// (`qemuMigrationAnyConnectionClosed`, src/qemu/qemu_migration.c, phase `perform3_done`:
/// "Migration of domain %s finished but we don't know if the domain was successfully
/// started on destination or not") ends the migration job and leaves the domain paused, "to
/// let higher levels decide". During a live migration the source has a job (operation
/// "outgoing migration"), the destination's incoming domain answers job queries with code 84,
/// so neither looks like this.
pub fn interrupted_migration(dom: &Domain) -> DriverResult<bool> {
    let (state, reason) = ffi::state(dom).map_err(read_err("cannot read the VM's state"))?;
    if !paused_by_migration(state, reason) {
        return Ok(false);
    }
    match ffi::job_stats(dom) {
        Ok(job) => Ok(job.is_none()),
        Err(e)
            if code_of(&e) == code::OPERATION_UNSUPPORTED
                || e.message().contains("only on the source") =>
        {
            Ok(false)
        }
        Err(e) => Err(read_err("cannot read the VM's job")(e)),
    }
}

/// What the job with this libvirt operation number means for us.
pub fn activity_of_operation(op: Option<i32>) -> Activity {
    match op {
        Some(JOB_MIGRATION_IN) => Activity::MigratingIn,
        Some(JOB_MIGRATION_OUT) => Activity::MigratingOut,
        Some(op::BACKUP) => Activity::BackingUp,
        Some(op::START) => Activity::OtherJob("starting".to_owned()),
        Some(op::SAVE) => Activity::OtherJob("saving".to_owned()),
        Some(op::RESTORE) => Activity::OtherJob("restoring".to_owned()),
        Some(op::SNAPSHOT) => Activity::OtherJob("snapshot".to_owned()),
        Some(op::SNAPSHOT_REVERT) => Activity::OtherJob("snapshot revert".to_owned()),
        Some(op::DUMP) => Activity::OtherJob("memory dump".to_owned()),
        Some(op::SNAPSHOT_DELETE) => Activity::OtherJob("snapshot delete".to_owned()),
        _ => Activity::OtherJob("a libvirt job".to_owned()),
    }
}

/// What a block job of this type means for us.
pub fn activity_of_block_job(t: i32) -> Activity {
    match t {
        5 => Activity::BackingUp,
        1 => Activity::OtherJob("block pull".to_owned()),
        2 => Activity::OtherJob("block copy".to_owned()),
        3 | 4 => Activity::OtherJob("block commit".to_owned()),
        _ => Activity::OtherJob("a block job".to_owned()),
    }
}

/// A domain as vmove sees it.
pub fn vm_info(conn: &Connect, dom: &Domain) -> DriverResult<VmInfo> {
    let (state, reason) = ffi::state(dom).map_err(read_err("cannot read the VM's state"))?;
    let active = dom
        .is_active()
        .map_err(read_err("cannot read the VM's state"))?;
    let (_, desc) = describe(dom, 0)?;
    let (power, paused_activity, mut health) = power_of(state, reason);
    let mut activity = Activity::Idle;
    if active {
        match ffi::job_stats(dom) {
            Ok(Some(job)) => activity = activity_of_operation(job.operation),
            Ok(None) if paused_by_migration(state, reason) => {
                // No job, yet paused by a migration: one whose client went away after Perform
                // (see `interrupted_migration`).
                activity = Activity::MigrationInterrupted;
            }
            Ok(None) => {}
            // The destination of an incoming migration answers "migration statistics are
            // available only on the source host" (84, operation unsupported).
            Err(e)
                if code_of(&e) == code::OPERATION_UNSUPPORTED
                    || e.message().contains("only on the source") =>
            {
                activity = Activity::MigratingIn;
            }
            Err(e) => return Err(read_err("cannot read the VM's job")(e)),
        }
        // Before the calls below: on the destination of an incoming migration the domain is
        // paused and the migration holds its job; a block job query would wait for that job
        // (30 s, then "cannot acquire state change lock") for the whole migration.
        if activity == Activity::Idle
            && let Some(a) = paused_activity
        {
            activity = a;
        }
        if activity == Activity::Idle && ffi::backup_running(dom) {
            activity = Activity::BackingUp;
        }
        if activity == Activity::Idle {
            for d in &desc.disks {
                if let Ok(Some(t)) = ffi::block_job_type(dom, &d.target) {
                    activity = activity_of_block_job(t);
                    break;
                }
                if d.mirror {
                    activity = Activity::OtherJob("block copy".to_owned());
                    break;
                }
            }
        }
    }
    if activity != Activity::Idle && health == Health::Ok {
        health = Health::InService;
    }
    let disks = disks_of(conn, &desc)?;
    // The last measured dirty rate (started by the listings, `measure_dirty_rates`), of a VM
    // running on this host, whatever job it has: on the destination of an incoming migration
    // the figure would be the new QEMU's, of no guest yet.
    let dirty_rate = if active && power == PowerState::Running && activity != Activity::MigratingIn
    {
        read_dirty_rate(dom)
    } else {
        None
    };
    Ok(VmInfo {
        id: VmId::new(desc.uuid.clone()),
        name: desc.name.as_str().into(),
        power,
        health,
        activity,
        memory_bytes: desc.memory_kib * 1024,
        disk_bytes: disks.iter().map(|d| d.allocated_bytes).sum(),
        dirty_rate,
    })
}

/// How long one dirty-rate measurement lasts, seconds (`virDomainStartDirtyRateCalc`): long
/// enough to see a guest's working set dirtied again, short next to a poll interval.
pub const DIRTY_RATE_CALC_S: i32 = 1;

/// How long a listing waits for the measurements it started of VMs that had no figure yet:
/// the measurement and QEMU's margin (its sampling thread wakes after the period).
pub const DIRTY_RATE_WAIT: std::time::Duration = std::time::Duration::from_millis(1300);

/// The VM's last measured dirty rate in bytes/s ([`ffi::dirty_rate`]); `None` when there is
/// none or it cannot be read (logged at debug: no failure of the listing).
pub fn read_dirty_rate(dom: &Domain) -> Option<u64> {
    ffi::dirty_rate(dom).unwrap_or_else(|e| {
        tracing::debug!(error = %e, "cannot read the VM's dirty rate");
        None
    })
}

/// Starts a dirty-rate measurement of a VM a listing showed running with nothing else going
/// on (`info`, from [`vm_info`]); returns whether one started. A source's plan
/// (`order = "packed"`) needs each VM's dirty rate to know how long its move takes. Started
/// only with no job, block job or backup seen: the call takes the domain's modify job, which a
/// migration or backup holds, and would wait for it (libvirt: 30 s, then "cannot acquire state
/// change lock"). A refusal is no failure of the listing: one still measuring, a host whose
/// QEMU (before 5.2) or libvirt (before 7.2) cannot, a VM stopped since.
pub fn measure_dirty_rate(dom: &Domain, info: &VmInfo) -> bool {
    if info.power != PowerState::Running || info.activity != Activity::Idle {
        return false;
    }
    match ffi::start_dirty_rate_calc(dom, DIRTY_RATE_CALC_S) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(vm = %info.name, error = %e, "cannot start a dirty-rate measurement");
            false
        }
    }
}

/// Every file path used by any domain defined on the host (tops and known chains). `pools`
/// is the caller's look-ups of this call: a removal shares them with its own look-up.
pub fn paths_in_use(conn: &Connect, pools: &mut Pools) -> DriverResult<Vec<String>> {
    paths_in_use_except(conn, None, pools)
}

/// Every file path used by the domains defined on the host other than `vm` (a definition
/// being removed as a leftover does not keep its own files; another VM sharing a file does).
pub fn paths_in_use_by_others(
    conn: &Connect,
    vm: &VmId,
    pools: &mut Pools,
) -> DriverResult<Vec<String>> {
    paths_in_use_except(conn, Some(vm), pools)
}

fn paths_in_use_except(
    conn: &Connect,
    except: Option<&VmId>,
    pools: &mut Pools,
) -> DriverResult<Vec<String>> {
    let doms = conn
        .list_all_domains(0)
        .map_err(read_err("cannot list VMs"))?;
    let mut out = Vec::new();
    for d in doms {
        let Ok((_, desc)) = describe(&d, 0) else {
            continue;
        };
        if except.is_some_and(|vm| desc.uuid.eq_ignore_ascii_case(vm.as_str())) {
            continue;
        }
        out.extend(paths_of(conn, &desc, pools));
    }
    Ok(out)
}

/// Every file path one domain uses (tops, chains, logs, its UEFI NVRAM file). A running domain's live definition
/// lists the whole chain QEMU has open (it ends in `<backingStore/>`): taken from there. An
/// inactive definition lists none, so its chains are followed volume by volume (three calls
/// per layer). On a source host being cleaned most VMs run, and every removal asks this of
/// every VM (docs/BENCHMARKS.md).
pub fn paths_of(conn: &Connect, desc: &DomainDesc, pools: &mut Pools) -> Vec<String> {
    let mut out = Vec::new();
    for disk in &desc.disks {
        out.push(disk.source.clone());
        out.extend(disk.backing.iter().cloned());
        if desc.active && disk.chain_complete {
            continue;
        }
        // Inactive domains do not list chains in their XML: follow the volumes.
        let mut next = Some(disk.source.clone());
        let mut n = 0;
        while let Some(p) = next.take() {
            n += 1;
            if n > MAX_CHAIN_DEPTH {
                break;
            }
            let Ok(Some(v)) = pools.vol_at(conn, &p) else {
                break;
            };
            let Ok((_, _, _, b)) = vol_facts(&v) else {
                break;
            };
            if let Some(b) = &b {
                out.push(b.clone());
            }
            next = b;
        }
    }
    for l in &desc.log_files {
        out.push(l.clone());
    }
    out.extend(desc.nvram.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only "paused (migrating)" marks a migration's pause: a pause its owner asked for, an I/O
    /// error's, a snapshot's or an incoming start's never makes vmove resume or stop a VM.
    #[test]
    fn only_a_pause_caused_by_a_migration_reads_as_one() {
        let paused = sys::VIR_DOMAIN_PAUSED as i32;
        assert!(paused_by_migration(
            paused,
            sys::VIR_DOMAIN_PAUSED_MIGRATION as i32
        ));
        for reason in [
            sys::VIR_DOMAIN_PAUSED_USER,
            sys::VIR_DOMAIN_PAUSED_IOERROR,
            sys::VIR_DOMAIN_PAUSED_SNAPSHOT,
            sys::VIR_DOMAIN_PAUSED_STARTING_UP,
            sys::VIR_DOMAIN_PAUSED_POSTCOPY,
            sys::VIR_DOMAIN_PAUSED_UNKNOWN,
        ] {
            assert!(
                !paused_by_migration(paused, reason as i32),
                "reason {reason}"
            );
        }
        // Running after a migration (reason 2, the same number) is not a pause.
        assert!(!paused_by_migration(
            sys::VIR_DOMAIN_RUNNING as i32,
            sys::VIR_DOMAIN_RUNNING_MIGRATED as i32
        ));
    }
}
