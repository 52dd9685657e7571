//! The driver's operations, answered at the cluster's current time: host and VM listings,
//! footprints, starting, polling, aborting and converging migrations, locating and verifying.

use super::faults::StartFault;
use super::files::destination_path;
use super::precopy::MAX_DOWNTIME_MS;
use super::spec::{Shape, uuid_like};
use super::state::{SimCluster, Stage};
use mem_prefetch::prefetch_read_data;
use std::collections::BTreeSet;
use vmove_core::model::{
    ConvergenceAid, Disk, ErrorClass, Failure, Finding, FindingScope, Footprint, Health, HostId,
    HostInfo, Location, MigrationHandle, MigrationMode, MigrationRequest, MigrationStatus,
    PowerState, Preflight, Verification, VmId, VmInfo,
};
use vmove_driver::{DriverError, DriverResult};

impl SimCluster {
    /// A host's limit, load and capacity.
    pub fn host_info(&self, host: &HostId) -> DriverResult<HostInfo> {
        let h = self.reachable(host)?;
        let hs = &self.hosts[h];
        Ok(HostInfo {
            migration_limit: hs.spec.migration_limit,
            active_migrations: hs.active.len() as u32 + self.foreign_now(h),
            free_memory_bytes: hs.spec.memory_bytes.saturating_sub(hs.used_memory),
            free_disk_bytes: hs.spec.disk_bytes.saturating_sub(hs.used_disk),
        })
    }

    /// Every VM defined on the host, VMs arriving by migration, and foreign migrations.
    pub fn list_vms(&self, host: &HostId) -> DriverResult<Vec<VmInfo>> {
        let h = self.reachable(host)?;
        // While one VM is read, the records of the VMs a few places on are asked of memory
        // (two steps: the VM's record four places on, then the shared texts that the one two
        // places on hands out, found through its record, asked for two VMs ago). Only a hint to
        // the CPU: the listing is the same. On the destinations VMs come from many sources,
        // their records far apart, and at 100,000 VMs each was a miss, then one for its name's
        // and one for its id's reference count (docs/BENCHMARKS.md, 2026-12-07).
        let listed = &self.hosts[h].vms;
        let mut far = listed.iter().skip(4);
        let mut near = listed.iter().skip(2);
        let mut out: Vec<VmInfo> = Vec::with_capacity(listed.len());
        for &v in listed {
            if let Some(&f) = far.next() {
                prefetch_read_data::<_, 3>(&self.vms[f].listed_name);
            }
            if let Some(&n) = near.next() {
                let vs = &self.vms[n];
                for text in [&*vs.listed_name, vs.spec.id.as_str()] {
                    if let Some(first) = text.as_bytes().first() {
                        prefetch_read_data::<_, 3>(first);
                    }
                }
            }
            out.push(self.vm_info(v, h));
        }
        for &m in &self.hosts[h].active {
            if self.migs[m].dst == h {
                out.push(self.vm_info(self.migs[m].vm, h));
            }
        }
        let mut k = 0;
        for f in &self.hosts[h].foreign {
            if f.window.contains(self.now) {
                for _ in 0..f.count {
                    let name = format!("foreign-{}-{}-{k}", self.hosts[h].spec.id, f.window.from.0);
                    k += 1;
                    out.push(VmInfo {
                        id: VmId::new(uuid_like(&name)),
                        name: name.into(),
                        power: PowerState::Running,
                        health: Health::Ok,
                        activity: if f.inbound {
                            vmove_core::model::Activity::MigratingIn
                        } else {
                            vmove_core::model::Activity::MigratingOut
                        },
                        memory_bytes: 0,
                        disk_bytes: 0,
                        dirty_rate: None,
                    });
                }
            }
        }
        Ok(out)
    }

    /// What the VM occupies on the host.
    pub fn footprint(&self, host: &HostId, vm: &VmId) -> DriverResult<Footprint> {
        let h = self.reachable(host)?;
        let v = self.vm_on(vm, h)?;
        let vs = &self.vms[v];
        Ok(Footprint {
            memory_bytes: vs.spec.memory_bytes,
            disks: vs
                .disk_paths
                .iter()
                .zip(&vs.spec.disks)
                .map(|(p, d)| Disk {
                    path: p.clone(),
                    format: "qcow2".into(),
                    virtual_bytes: d.virtual_bytes,
                    allocated_bytes: d.allocated_bytes,
                    backing_chain: vec![],
                })
                .collect(),
            config_paths: vec![],
        })
    }

    /// Pre-flight of a route, by reading only: the VM must be on the source; what
    /// [`SimCluster::start_migration`] would refuse (the same host, a mode its power state does
    /// not allow, a destination path taken, no room) is a blocker, with the same words. A VM
    /// busy now (migrating, backing up) is no blocker: that passes. As the real drivers do
    /// (docs/drivers/libvirt.md and hyperv.md, "Pre-flight"): room (`no_room`, when the host's
    /// whole capacity would take the VM) and a path held
    /// by a file this VM does not own (`path_taken`) are blockers that may pass (room frees as
    /// VMs leave, a person or a move frees the path); paths held only by this VM's own partial
    /// copies (the files an earlier attempt left, which the sim knows the owner of) are the
    /// `leftover` warning, since the refused start's clean-up removes them.
    pub fn preflight(&self, req: &MigrationRequest) -> DriverResult<Preflight> {
        let src = self.reachable(&req.source)?;
        let dst = self.reachable(&req.destination)?;
        let v = self.vm_on(&req.vm, src)?;
        let mut found = Preflight::default();
        for (code, e, remedy) in self.shape_refusals(req, v) {
            let scope = if e.class == ErrorClass::DestinationRefused {
                FindingScope::Destination
            } else {
                FindingScope::Vm
            };
            found.block(Finding::new(code, scope, e.message).remedy(remedy));
        }
        if let Some((code, e)) = self.route_refusal(req, src, dst, v) {
            let (scope, remedy) = match e.class {
                ErrorClass::DestinationRefused => (
                    FindingScope::Destination,
                    "choose another destination, or free it on this one",
                ),
                _ => (FindingScope::Vm, "change the request"),
            };
            if code == Finding::PATH_TAKEN && self.taken_only_by_own_copies(req, dst, v) {
                found.warn(Finding::new(
                    Finding::LEFTOVER,
                    FindingScope::Destination,
                    format!(
                        "{} holds a partial copy of VM {} an earlier attempt left: the start's clean-up removes it",
                        req.destination, self.vms[v].spec.name
                    ),
                ));
            } else {
                let mut f = Finding::new(code, scope, e.message).remedy(remedy);
                let passes = match code {
                    "no_room" => self.fits_when_free(req, dst, v),
                    Finding::PATH_TAKEN => !self.paths_repeat(req, v),
                    _ => false,
                };
                if passes {
                    f = f.may_pass();
                }
                found.block(f);
            }
        }
        Ok(found)
    }

    /// The VM would fit on `dst` once what is there now left it (its memory, for a live move,
    /// and its disks within the host's whole capacity): room that is short now may pass; a
    /// host smaller than the VM never takes it.
    fn fits_when_free(&self, req: &MigrationRequest, dst: usize, v: usize) -> bool {
        let vs = &self.vms[v];
        let d = &self.hosts[dst].spec;
        let need_mem = if req.mode == MigrationMode::Live {
            vs.spec.memory_bytes
        } else {
            0
        };
        need_mem <= d.memory_bytes && vs.disk_bytes <= d.disk_bytes
    }

    /// The VM's destination paths on this route name one path twice (two of its files would
    /// go to one place): that never passes.
    fn paths_repeat(&self, req: &MigrationRequest, v: usize) -> bool {
        let (disks, log) = self.destination_files(req, v);
        let mut seen = BTreeSet::new();
        !disks
            .iter()
            .chain(std::iter::once(&log))
            .all(|p| seen.insert(p))
    }

    /// Every destination path of the VM that holds a file on `dst` holds one of the VM's own
    /// (a partial copy an earlier attempt left).
    fn taken_only_by_own_copies(&self, req: &MigrationRequest, dst: usize, v: usize) -> bool {
        if self.paths_repeat(req, v) {
            return false;
        }
        let (disks, log) = self.destination_files(req, v);
        disks
            .iter()
            .chain(std::iter::once(&log))
            .filter_map(|p| self.hosts[dst].files.get(p))
            .all(|f| f.owner == Some(v))
    }

    /// What the VM's [`Shape`]s make its hypervisor refuse on this route, with a finding's code
    /// and the remedy: about the VM (permanent) or about this destination (refused there).
    fn shape_refusals(
        &self,
        req: &MigrationRequest,
        v: usize,
    ) -> Vec<(&'static str, DriverError, &'static str)> {
        let vs = &self.vms[v];
        let name = &vs.spec.name;
        vs.spec
            .shapes
            .iter()
            .filter_map(|s| match s {
                Shape::ManagedSave => Some((
                    "managed_save",
                    DriverError::permanent(format!(
                        "VM {name} has a managed save image: Refusing to undefine while domain managed save image exists"
                    )),
                    "start the VM (restoring its saved state) or remove the image with `virsh managedsave-remove`, then move it",
                )),
                Shape::Snapshots(n) => Some((
                    "snapshots",
                    DriverError::permanent(format!(
                        "Requested operation is not valid: cannot migrate domain with {n} snapshots"
                    )),
                    "delete the snapshots (or their metadata, `virsh snapshot-delete --metadata`), then move it",
                )),
                Shape::CdromMissing(h) if *h == req.destination => Some((
                    "cdrom_missing",
                    DriverError::destination_refused(format!(
                        "Cannot access storage file '/var/lib/libvirt/images/{name}.iso': No such file or directory (on {h})"
                    )),
                    "copy the image to the same path on the destination, or eject it",
                )),
                Shape::NetworkMissing(h) if *h == req.destination => Some((
                    "network_missing",
                    DriverError::destination_refused(format!(
                        "Network not found: no network with matching name 'lab-{name}' (on {h})"
                    )),
                    "define and start the network on the destination, or choose another",
                )),
                Shape::CdromMissing(_) | Shape::NetworkMissing(_) => None,
            })
            .collect()
    }

    /// Where the VM's disks and log go on the destination.
    fn destination_files(&self, req: &MigrationRequest, v: usize) -> (Vec<String>, String) {
        let vs = &self.vms[v];
        let disks = vs
            .disk_paths
            .iter()
            .map(|p| destination_path(&req.layout, p, &vs.spec.name))
            .collect();
        (
            disks,
            destination_path(&req.layout, &vs.log_path, &vs.spec.name),
        )
    }

    /// Why this route can never be taken as things are, with a finding's code: the same host,
    /// a mode the VM's power state does not allow, a destination path taken, no room.
    fn route_refusal(
        &self,
        req: &MigrationRequest,
        src: usize,
        dst: usize,
        v: usize,
    ) -> Option<(&'static str, DriverError)> {
        let vs = &self.vms[v];
        if src == dst {
            return Some((
                "same_host",
                DriverError::permanent(format!(
                    "source and destination are the same host `{}`",
                    req.source
                )),
            ));
        }
        match (req.mode, vs.spec.power.is_live()) {
            (MigrationMode::Live, false) => {
                return Some((
                    "mode",
                    DriverError::permanent(format!(
                        "VM {} is not running: it cannot be moved live",
                        vs.spec.name
                    )),
                ));
            }
            (MigrationMode::Offline, true) => {
                return Some((
                    "mode",
                    DriverError::permanent(format!(
                        "VM {} is running: it cannot be moved offline",
                        vs.spec.name
                    )),
                ));
            }
            _ => {}
        }
        let (dest_disk_paths, dest_log_path) = self.destination_files(req, v);
        let mut seen = BTreeSet::new();
        for p in dest_disk_paths
            .iter()
            .chain(std::iter::once(&dest_log_path))
        {
            if self.hosts[dst].files.contains_key(p) || !seen.insert(p) {
                return Some((
                    Finding::PATH_TAKEN,
                    DriverError::destination_refused(format!(
                        "{} already holds a file at {p}",
                        req.destination
                    )),
                ));
            }
        }
        let need_mem = if req.mode == MigrationMode::Live {
            vs.spec.memory_bytes
        } else {
            0
        };
        let d = &self.hosts[dst];
        let free_mem = d.spec.memory_bytes.saturating_sub(d.used_memory);
        let free_disk = d.spec.disk_bytes.saturating_sub(d.used_disk);
        if need_mem > free_mem || vs.disk_bytes > free_disk {
            return Some((
                "no_room",
                DriverError::destination_refused(format!(
                    "{} has no room for VM {} ({} memory and {} disk free)",
                    req.destination,
                    vs.spec.name,
                    vmove_core::fmt_bytes(free_mem),
                    vmove_core::fmt_bytes(free_disk)
                )),
            ));
        }
        None
    }

    /// Starts one attempt. Refuses without touching anything when a check fails; then applies
    /// the VM's start script (see [`StartFault`]).
    pub fn start_migration(&mut self, req: &MigrationRequest) -> DriverResult<MigrationHandle> {
        let src = self.reachable(&req.source)?;
        let dst = self.reachable(&req.destination)?;
        if src == dst {
            return Err(DriverError::permanent(format!(
                "source and destination are the same host `{}`",
                req.source
            )));
        }
        let v = self.vm_on(&req.vm, src)?;
        let vs = &self.vms[v];
        if vs.active_mig.is_some() {
            return Err(DriverError::transient(format!(
                "VM {} is already migrating",
                vs.spec.name
            )));
        }
        if self.backing_up(v) {
            return Err(DriverError::transient(format!(
                "VM {} is being backed up",
                vs.spec.name
            )));
        }
        if let Some((_, e)) = self.route_refusal(req, src, dst, v) {
            return Err(e);
        }
        if let Some((_, e, _)) = self.shape_refusals(req, v).into_iter().next() {
            return Err(e);
        }
        let (dest_disk_paths, dest_log_path) = self.destination_files(req, v);
        let vs = &self.vms[v];
        let need_mem = if req.mode == MigrationMode::Live {
            vs.spec.memory_bytes
        } else {
            0
        };
        let fault = self.vms[v].script.front().copied();
        match fault {
            Some(StartFault::Transient) => {
                self.vms[v].script.pop_front();
                return Err(DriverError::transient(format!(
                    "{} is busy: the migration of {} was not accepted (injected)",
                    req.source, self.vms[v].spec.name
                )));
            }
            Some(StartFault::Permanent) => {
                return Err(DriverError::permanent(format!(
                    "the migration of {} is not supported by {} (injected)",
                    self.vms[v].spec.name, req.source
                )));
            }
            Some(StartFault::Indeterminate) => {
                self.vms[v].script.pop_front();
            }
            None => {}
        }
        let m = self.begin(req, v, src, dst, dest_disk_paths, dest_log_path, need_mem);
        self.clean_wakes();
        if fault == Some(StartFault::Indeterminate) {
            return Err(DriverError::indeterminate(format!(
                "the connection to {} was lost while starting the migration of {} (injected)",
                req.source, self.vms[v].spec.name
            )));
        }
        Ok(self.migs[m].handle.clone())
    }

    /// The status of a migration.
    pub fn migration_status(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<MigrationStatus> {
        // The migration's record names its source host by index: a poll of one of ours finds
        // it there, without looking the host's name up (at 100,000 VMs each look-up was a
        // cache miss or two, and every running migration is polled each `progress_interval`).
        // Anything else goes the long way, with its errors in the same order.
        let m = match self.find_mig(req, handle) {
            Some(m) if self.migs[m].req.source == req.source => {
                self.answers(self.migs[m].src, &req.source)?;
                m
            }
            _ => {
                self.reachable(&req.source)?;
                self.mig_of(req, handle)?
            }
        };
        let mg = &self.migs[m];
        if let Some(o) = &mg.outcome {
            return Ok(o.clone());
        }
        Ok(MigrationStatus::Running(self.progress(m)))
    }

    /// Aborts a migration; the VM stays on the source. Aborting an ended one is not an error.
    pub fn abort_migration(
        &mut self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<()> {
        self.reachable(&req.source)?;
        let m = self.mig_of(req, handle)?;
        // libvirt's API doc of virDomainAbortJob: "In case the job is a migration in a
        // post-copy mode, this function will report an error unless
        // VIR_DOMAIN_ABORT_JOB_POSTCOPY flag is used" (and that flag pauses the guest).
        if self.migs[m].outcome.is_none() && self.migs[m].postcopy {
            return Err(DriverError::permanent(
                "the migration is in post-copy: it cannot be aborted",
            ));
        }
        if self.migs[m].outcome.is_none() {
            self.settle(m);
            self.end_migration(
                m,
                MigrationStatus::Failed(Failure::new(
                    ErrorClass::Transient,
                    "the migration was aborted",
                )),
            );
            self.clean_wakes();
        }
        Ok(())
    }

    /// Applies a convergence aid: auto-converge quarters the dirty rate, post-copy finishes the
    /// current round and completes, raising the downtime doubles it up to
    /// [`MAX_DOWNTIME_MS`](super::MAX_DOWNTIME_MS) (not applied once there).
    pub fn converge(
        &mut self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
        aid: ConvergenceAid,
    ) -> DriverResult<bool> {
        self.reachable(&req.source)?;
        let m = self.mig_of(req, handle)?;
        if self.migs[m].outcome.is_some() {
            return Err(DriverError::permanent("the migration is no longer running"));
        }
        if self.migs[m].req.mode == MigrationMode::Offline {
            return Ok(false);
        }
        let mg = &mut self.migs[m];
        // QEMU refuses post-copy until its own migration has started (`qmp_migrate_start_postcopy`
        // in QEMU's migration/migration.c: "Postcopy must be started after migration has been
        // started"), and libvirt starts it only once its copy of the disks is mirrored: asked
        // during the disk copy, post-copy is refused, and taken when asked again later (seen on
        // the lab: `convergence_aids_on_a_real_migration_and_post_copy_is_never_aborted`). The
        // libvirt driver classes the error as transient.
        if aid == ConvergenceAid::PostCopy && matches!(mg.stage, Stage::Setup { .. } | Stage::Disk)
        {
            return Err(DriverError::transient(
                "cannot switch to post-copy: unable to execute QEMU command 'migrate-start-postcopy': Postcopy must be started after migration has been started",
            ));
        }
        match aid {
            ConvergenceAid::AutoConverge => mg.dirty_rate /= 4,
            ConvergenceAid::PostCopy => mg.postcopy = true,
            ConvergenceAid::RaiseDowntime => {
                let Some(next) =
                    vmove_core::model::raised_downtime(mg.downtime_ms, MAX_DOWNTIME_MS)
                else {
                    return Ok(false);
                };
                mg.downtime_ms = next;
            }
        }
        Ok(true)
    }

    /// Where the VM is, from the request's two hosts.
    pub fn locate(&self, req: &MigrationRequest) -> DriverResult<Location> {
        let src = self.reachable(&req.source)?;
        let dst = self.reachable(&req.destination)?;
        let Some(v) = self.vm_idx(&req.vm) else {
            return Ok(Location {
                on_source: None,
                on_destination: None,
                running_migration: None,
            });
        };
        let vs = &self.vms[v];
        let incoming = vs.active_mig.filter(|&m| self.migs[m].dst == dst);
        let on = |h: usize| {
            if vs.host == h || (h == dst && incoming.is_some()) {
                Some(self.vm_info(v, h))
            } else {
                None
            }
        };
        Ok(Location {
            on_source: on(src),
            on_destination: on(dst),
            running_migration: vs
                .active_mig
                .filter(|&m| self.migs[m].src == src && self.migs[m].dst == dst)
                .map(|m| self.migs[m].handle.clone()),
        })
    }

    /// Proof of arrival: on the destination (running for live, defined for offline), every
    /// disk complete there, and not on the source.
    pub fn verify(&self, req: &MigrationRequest) -> DriverResult<Verification> {
        let src = self.reachable(&req.source)?;
        let dst = self.reachable(&req.destination)?;
        let Some(v) = self.vm_idx(&req.vm) else {
            return Ok(Verification {
                on_destination: false,
                disks_present: false,
                stopped_on_source: true,
                detail: format!("VM {} is on no host", req.vm_name),
                downtime_ms: None,
            });
        };
        let vs = &self.vms[v];
        let settled = vs.active_mig.is_none();
        let on_destination = settled
            && vs.host == dst
            && match req.mode {
                MigrationMode::Live => vs.spec.power.is_live(),
                MigrationMode::Offline => true,
            };
        let disks_present = on_destination
            && vs.disk_paths.iter().zip(&vs.spec.disks).all(|(p, d)| {
                self.hosts[dst].files.get(p).is_some_and(|f| {
                    f.complete && f.owner == Some(v) && f.bytes == d.allocated_bytes
                })
            });
        let stopped_on_source = vs.host != src;
        let mut missing = vec![];
        if !on_destination {
            missing.push(format!("not settled on {}", req.destination));
        }
        if on_destination && !disks_present {
            missing.push(format!("a disk is missing on {}", req.destination));
        }
        if !stopped_on_source {
            missing.push(format!("still on {}", req.source));
        }
        // The pause of the migration that brought it here: the latest completed one of this
        // VM into this host (none for an offline move).
        let downtime_ms = std::iter::successors(vs.last_mig, |&m| self.migs[m].previous)
            .map(|m| &self.migs[m])
            .find(|m| m.dst == dst && m.outcome == Some(MigrationStatus::Completed))
            .and_then(|m| m.paused_ms);
        Ok(Verification {
            on_destination,
            disks_present,
            stopped_on_source,
            downtime_ms,
            detail: if missing.is_empty() {
                "verified".into()
            } else {
                missing.join("; ")
            },
        })
    }

    pub(super) fn reachable(&self, host: &HostId) -> DriverResult<usize> {
        let h = self
            .host_idx(host)
            .ok_or_else(|| DriverError::permanent(format!("unknown host `{host}`")))?;
        self.answers(h, host)?;
        Ok(h)
    }

    /// Host `h`, named `host`, answers now (it is not in one of its down windows).
    fn answers(&self, h: usize, host: &HostId) -> DriverResult<()> {
        if !self.up(h) {
            return Err(DriverError::transient(format!(
                "host {host} does not answer"
            )));
        }
        Ok(())
    }

    pub(super) fn vm_on(&self, vm: &VmId, h: usize) -> DriverResult<usize> {
        match self.vm_idx(vm) {
            Some(v) if self.vms[v].host == h => Ok(v),
            _ => Err(DriverError::permanent(format!(
                "VM {vm} not found on {}",
                self.hosts[h].spec.id
            ))),
        }
    }

    pub(super) fn mig_of(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<usize> {
        match self.find_mig(req, handle) {
            Some(m) => Ok(m),
            None => Err(DriverError::permanent(format!(
                "migration {} of VM {} not found",
                handle.0, req.vm
            ))),
        }
    }

    /// The migration `handle` of `req`'s VM, if the cluster ran it. A handle names its
    /// migration's index (`sim-{index}/...`, made by `begin`): no map to look it up in (at
    /// 100,000 VMs, a progress poll's look-up in one was a cache miss).
    fn find_mig(&self, req: &MigrationRequest, handle: &MigrationHandle) -> Option<usize> {
        handle
            .0
            .strip_prefix("sim-")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(index, _)| index.parse::<usize>().ok())
            .filter(|&m| {
                self.migs
                    .get(m)
                    .is_some_and(|mg| mg.handle == *handle && mg.req.vm == req.vm)
            })
    }

    pub(super) fn backing_up(&self, v: usize) -> bool {
        self.vms[v].backups.iter().any(|w| w.contains(self.now))
    }

    pub(super) fn foreign_now(&self, h: usize) -> u32 {
        self.hosts[h]
            .foreign
            .iter()
            .filter(|f| f.window.contains(self.now))
            .map(|f| f.count)
            .sum()
    }

    pub(super) fn vm_info(&self, v: usize, h: usize) -> VmInfo {
        use vmove_core::model::Activity;
        let vs = &self.vms[v];
        let incoming = vs.host != h;
        let backing = !incoming && self.backing_up(v);
        VmInfo {
            id: vs.spec.id.clone(),
            name: vs.listed_name.clone(),
            power: if incoming {
                PowerState::Off
            } else {
                vs.spec.power.clone()
            },
            health: match &vs.spec.health {
                Health::Ok if backing => Health::InService,
                other => other.clone(),
            },
            activity: if incoming {
                Activity::MigratingIn
            } else if vs.active_mig.is_some() {
                Activity::MigratingOut
            } else if backing {
                Activity::BackingUp
            } else {
                Activity::Idle
            },
            memory_bytes: vs.spec.memory_bytes,
            disk_bytes: vs.disk_bytes,
            dirty_rate: (self.dirty_rates_reported
                && self.now >= self.dirty_rates_from
                && !incoming
                && vs.spec.power == PowerState::Running)
                .then_some(vs.spec.dirty_rate),
        }
    }
}
