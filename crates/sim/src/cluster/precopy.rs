//! The pre-copy model: a migration's stages (set-up, disks, memory rounds against the dirty
//! rate, the final stop-and-copy), fair sharing of NIC bandwidth, and a migration's end.

use super::spec::{MIB, MS_PER_SEC, MigrationEnd};
use super::state::{Mig, SimCluster, Stage};
use vmove_core::model::{
    Failure, LeftoverKind, MigrationHandle, MigrationMode, MigrationRequest, MigrationStatus,
    Progress,
};
use vmove_core::time::Time;

/// Default allowed downtime of the final stop-and-copy, ms (QEMU's default is 300 ms).
pub const DEFAULT_DOWNTIME_MS: u64 = 300;

/// The most a raise (`ConvergenceAid::RaiseDowntime`) takes the allowed downtime to, ms: the
/// libvirt driver's default cap (`max_downtime_ms`), the core's
/// [`DEFAULT_DOWNTIME_CAP_MS`](vmove_core::model::DEFAULT_DOWNTIME_CAP_MS). A raise follows the
/// core's [`raised_downtime`](vmove_core::model::raised_downtime), the rule the libvirt driver
/// applies (`converge` in crates/driver-libvirt/src/driver/jobs.rs:
/// `virDomainMigrateGetMaxDowntime`, then `virDomainMigrateSetMaxDowntime` with the raised
/// figure; libvirt's docs of the latter: the maximum tolerable time the guest is paused at the
/// end of a live migration).
pub const MAX_DOWNTIME_MS: u64 = vmove_core::model::DEFAULT_DOWNTIME_CAP_MS;

/// The smallest budget of the final stop-and-copy: a memory round this small always fits,
/// however slow the route (`alone` in `scenarios::bound` follows the same rule).
pub(crate) const MIN_FINAL_ROUND: u64 = MIB;

/// `x` as a u64, the largest when it does not fit (`as` kept only its low 64 bits: a product of
/// a rate and a duration past 2^64 became a small figure).
pub(super) fn sat(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

impl SimCluster {
    pub(super) fn note_peak(&mut self, h: usize) {
        let ours = self.hosts[h].active.len() as u32;
        let total = ours + self.foreign_now(h);
        let host = &mut self.hosts[h];
        host.peak_ours = host.peak_ours.max(ours);
        host.peak_total = host.peak_total.max(total);
    }

    pub(super) fn begin(
        &mut self,
        req: &MigrationRequest,
        v: usize,
        src: usize,
        dst: usize,
        dest_disk_paths: Vec<String>,
        dest_log_path: String,
        need_mem: u64,
    ) -> usize {
        let m = self.migs.len();
        self.vms[v].starts += 1;
        let nth = self.vms[v].starts;
        let vm_id = self.vms[v].spec.id.clone();
        let mut hang_at = None;
        let mut fail_at = None;
        for f in self
            .mid
            .iter()
            .filter(|f| f.vm == vm_id && f.nth_start == nth)
        {
            let at = self.now + std::time::Duration::from_millis(f.after_ms);
            match f.fail {
                None => hang_at = Some(at),
                Some(c) => fail_at = Some((at, c)),
            }
        }
        // Pre-create the destination images (empty until the copy completes).
        let disks = self.vms[v].spec.disks.clone();
        for (p, d) in dest_disk_paths.iter().zip(&disks) {
            self.put_file(
                dst,
                p.clone(),
                Some(v),
                LeftoverKind::DiskImage,
                d.allocated_bytes,
                false,
            );
        }
        self.hosts[dst].used_memory += need_mem;
        let overhead = self.routes.get(&(src, dst)).map_or(0, |r| r.overhead_ms);
        let spec = &self.vms[v].spec;
        // The handle names the migration's index: `mig_of` reads it back.
        let handle = MigrationHandle(format!("sim-{m}/{}/{}", req.run_id, req.attempt).into());
        self.migs.push(Mig {
            req: req.clone(),
            handle: handle.clone(),
            vm: v,
            src,
            dst,
            stage: if overhead > 0 {
                Stage::Setup {
                    // Saturating: an overhead near u64::MAX ms (a fitted figure from a journal's
                    // extreme times) ends the set-up at the end of time, never before it began.
                    until: Time(self.now.0.saturating_add(overhead)),
                }
            } else {
                Stage::Disk
            },
            stage_total: if overhead > 0 { 0 } else { spec.disk_bytes() },
            stage_done: 0,
            round_started: self.now,
            updated: self.now,
            rate: 0,
            sent: 0,
            disk_total: spec.disk_bytes(),
            mem_total: if req.mode == MigrationMode::Live {
                spec.memory_bytes
            } else {
                0
            },
            dirty_rate: spec.dirty_rate,
            downtime_ms: DEFAULT_DOWNTIME_MS,
            paused_ms: None,
            postcopy: false,
            hung: false,
            hang_at,
            fail_at,
            dest_disk_paths,
            dest_log_path,
            reserved_memory: need_mem,
            outcome: None,
            epoch: 0,
            previous: self.vms[v].last_mig,
        });
        self.vms[v].last_mig = Some(m);
        self.vms[v].active_mig = Some(m);
        self.hosts[src].active.push(m);
        self.hosts[dst].active.push(m);
        self.note_peak(src);
        self.note_peak(dst);
        self.reshare(src);
        self.reshare(dst);
        if overhead > 0 {
            // Rate 0 during the overhead: resharing did not schedule it.
            self.schedule(m);
        }
        m
    }

    /// Brings a migration's byte counts up to now at its current rate.
    pub(super) fn settle(&mut self, m: usize) {
        let now = self.now;
        let mg = &mut self.migs[m];
        let dt = now.0.saturating_sub(mg.updated.0);
        if dt > 0 && mg.rate > 0 && mg.stage != Stage::Ended {
            let bytes = sat(u128::from(mg.rate) * u128::from(dt) / MS_PER_SEC);
            let bytes = bytes.min(mg.stage_total - mg.stage_done);
            mg.stage_done += bytes;
            mg.sent += bytes;
        }
        mg.updated = now;
    }

    pub(super) fn share(&self, m: usize) -> u64 {
        let mg = &self.migs[m];
        if mg.hung || matches!(mg.stage, Stage::Setup { .. }) {
            return 0;
        }
        let count = |h: usize| {
            let host = &self.hosts[h];
            // Migrations in their fixed overhead move no bytes: they take no share.
            let moving = if self.routes.is_empty() {
                host.active.len()
            } else {
                host.active
                    .iter()
                    .filter(|&&x| !matches!(self.migs[x].stage, Stage::Setup { .. }))
                    .count()
            };
            (moving as u64 + u64::from(self.foreign_now(h))).max(1)
        };
        let per = |h: usize| self.hosts[h].spec.nic_bytes_per_sec / count(h);
        let s = &self.hosts[mg.src].spec;
        let d = &self.hosts[mg.dst].spec;
        let route = self.routes.get(&(mg.src, mg.dst));
        let mut cap = route
            .and_then(|r| r.stream_cap_bytes_per_sec)
            .unwrap_or(s.stream_cap_bytes_per_sec.min(d.stream_cap_bytes_per_sec));
        let n = count(mg.src).max(count(mg.dst));
        if let Some((_, r)) =
            route.and_then(|r| r.rate_nearest(u32::try_from(n).unwrap_or(u32::MAX)))
        {
            cap = r;
        } else if let Some(agg) = route.and_then(|r| r.aggregate_bytes_per_sec)
            && n >= 2
        {
            cap = cap.min(agg / n);
        }
        cap.min(per(mg.src)).min(per(mg.dst)).max(1)
    }

    /// Recomputes the rate of every migration touching host `h` and reschedules them.
    pub(super) fn reshare(&mut self, h: usize) {
        let active = self.hosts[h].active.clone();
        for m in active {
            let r = self.share(m);
            if r != self.migs[m].rate {
                self.settle(m);
                self.migs[m].rate = r;
                self.schedule(m);
            }
        }
    }

    /// Handles a migration's wake-up at `self.now`.
    pub(super) fn step_migration(&mut self, m: usize) -> Option<MigrationEnd> {
        self.settle(m);
        let now = self.now;
        if let Some((at, class)) = self.migs[m].fail_at {
            if at <= now {
                let status = MigrationStatus::Failed(Failure::new(
                    class,
                    format!(
                        "the migration failed part-way on {} (injected)",
                        self.migs[m].req.source
                    ),
                ));
                return Some(self.end_migration(m, status));
            }
        }
        if let Some(at) = self.migs[m].hang_at {
            if at <= now && !self.migs[m].hung {
                self.migs[m].hung = true;
                self.migs[m].rate = 0;
                self.schedule(m);
                return None;
            }
        }
        let mg = &self.migs[m];
        if mg.stage_done < mg.stage_total {
            // A wake-up for a hang or failure that was then rescheduled: just reschedule.
            self.schedule(m);
            return None;
        }
        match mg.stage {
            Stage::Setup { until } => {
                if now < until {
                    self.schedule(m);
                    return None;
                }
                let (src, dst) = (mg.src, mg.dst);
                let mg = &mut self.migs[m];
                mg.stage = Stage::Disk;
                mg.stage_total = mg.disk_total;
                mg.stage_done = 0;
                mg.round_started = now;
                // It now takes a share of both NICs: every rate there changes.
                self.reshare(src);
                self.reshare(dst);
                None
            }
            Stage::Disk => {
                if mg.mem_total == 0 {
                    return Some(self.end_migration(m, MigrationStatus::Completed));
                }
                let mg = &mut self.migs[m];
                mg.stage = Stage::Memory { round: 0 };
                mg.stage_total = mg.mem_total;
                mg.stage_done = 0;
                mg.round_started = now;
                self.schedule(m);
                None
            }
            Stage::Memory { round } => {
                if mg.postcopy {
                    return Some(self.end_migration(m, MigrationStatus::Completed));
                }
                let dur = now.0.saturating_sub(mg.round_started.0);
                let dirtied = sat(u128::from(mg.dirty_rate) * u128::from(dur) / MS_PER_SEC);
                let next = dirtied.min(mg.mem_total);
                let budget = sat(u128::from(mg.rate) * u128::from(mg.downtime_ms) / MS_PER_SEC)
                    .max(MIN_FINAL_ROUND);
                if next <= budget {
                    // Stop-and-copy: the last `next` bytes go during the pause.
                    let mg = &mut self.migs[m];
                    mg.sent += next;
                    let ms = (u128::from(next) * MS_PER_SEC).div_ceil(u128::from(mg.rate.max(1)));
                    mg.paused_ms = Some(u64::try_from(ms).unwrap_or(u64::MAX).max(1));
                    return Some(self.end_migration(m, MigrationStatus::Completed));
                }
                let mg = &mut self.migs[m];
                mg.stage = Stage::Memory { round: round + 1 };
                mg.stage_total = next;
                mg.stage_done = 0;
                mg.round_started = now;
                self.schedule(m);
                None
            }
            Stage::Ended => None,
        }
    }

    /// Ends a migration: on success the VM is on the destination (its source files stay as
    /// leftovers); on failure it stays on the source (pre-created images stay on the destination).
    pub(super) fn end_migration(&mut self, m: usize, status: MigrationStatus) -> MigrationEnd {
        let (v, src, dst) = (self.migs[m].vm, self.migs[m].src, self.migs[m].dst);
        {
            let mg = &mut self.migs[m];
            mg.stage = Stage::Ended;
            mg.rate = 0;
            mg.epoch += 1;
            mg.outcome = Some(status.clone());
        }
        let reserved = self.migs[m].reserved_memory;
        self.hosts[dst].used_memory = self.hosts[dst].used_memory.saturating_sub(reserved);
        if status == MigrationStatus::Completed {
            let dest_paths = self.migs[m].dest_disk_paths.clone();
            let dest_log = self.migs[m].dest_log_path.clone();
            for p in &dest_paths {
                if let Some(f) = self.hosts[dst].files.get_mut(p) {
                    f.complete = true;
                }
            }
            self.put_file(
                dst,
                dest_log.clone(),
                Some(v),
                LeftoverKind::LogFile,
                0,
                true,
            );
            let mem = self.vms[v].spec.memory_bytes;
            if self.vms[v].spec.power.is_live() {
                self.hosts[src].used_memory = self.hosts[src].used_memory.saturating_sub(mem);
                self.hosts[dst].used_memory += mem;
            }
            self.hosts[src].vms.remove(&v);
            self.hosts[dst].vms.insert(v);
            let vm = &mut self.vms[v];
            vm.host = dst;
            vm.disk_paths = dest_paths;
            vm.log_path = dest_log;
        }
        self.vms[v].active_mig = None;
        self.hosts[src].active.retain(|&x| x != m);
        self.hosts[dst].active.retain(|&x| x != m);
        self.reshare(src);
        self.reshare(dst);
        let mg = &self.migs[m];
        MigrationEnd {
            at: self.now,
            request: mg.req.clone(),
            handle: mg.handle.clone(),
            status,
        }
    }

    pub(super) fn progress(&self, m: usize) -> Progress {
        let mg = &self.migs[m];
        let dt = self.now.0.saturating_sub(mg.updated.0);
        let extra = sat(u128::from(mg.rate) * u128::from(dt) / MS_PER_SEC)
            .min(mg.stage_total - mg.stage_done);
        let stage_done = mg.stage_done + extra;
        let sent = mg.sent + extra;
        let (remaining, iteration) = match mg.stage {
            Stage::Setup { .. } => (mg.disk_total + mg.mem_total, None),
            Stage::Disk => (mg.disk_total - stage_done + mg.mem_total, None),
            Stage::Memory { round } => (mg.stage_total - stage_done, Some(round + 1)),
            Stage::Ended => (0, None),
        };
        let total = sent + remaining;
        Progress {
            bytes_done: sent,
            bytes_remaining: remaining,
            bytes_total: total,
            dirty_rate: (mg.req.mode == MigrationMode::Live).then_some(mg.dirty_rate),
            transfer_rate: Some(mg.rate),
            iteration,
            percent: (total > 0)
                .then(|| ((u128::from(sent) * 100 / u128::from(total)) as u8).min(100)),
        }
    }
}
