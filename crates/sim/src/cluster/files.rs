//! The files hosts keep: where a source file lands on a destination, occupied paths, and the
//! leftovers a move or a failed attempt leaves (listed and removed).

use super::spec::MIB;
use super::state::{File, SimCluster};
use vmove_core::io::LeftoverContext;
use vmove_core::model::{HostId, Leftover, LeftoverKind, MigrationRequest, PathLayout, VmId};
use vmove_driver::{DriverError, DriverResult};

/// Where a source file lands on the destination, for a layout.
pub fn destination_path(layout: &PathLayout, source_path: &str, vm_name: &str) -> String {
    match &layout.base {
        None => source_path.to_owned(),
        Some(base) => {
            let file = source_path.rsplit('/').next().unwrap_or(source_path);
            let base = base.trim_end_matches('/');
            if layout.put_in_subfolder {
                format!("{base}/{vm_name}/{file}")
            } else {
                format!("{base}/{file}")
            }
        }
    }
}

impl SimCluster {
    /// Puts a file nobody here owns at `path` on `host` (for the "never overwrite" checks).
    pub fn occupy_path(&mut self, host: &HostId, path: &str) -> bool {
        let Some(h) = self.host_idx(host) else {
            return false;
        };
        if self.hosts[h].files.contains_key(path) {
            return false;
        }
        self.put_file(h, path.to_owned(), None, LeftoverKind::DiskImage, MIB, true);
        true
    }

    /// Files on a host: (path, owner VM id, kind, complete).
    pub fn files_on(&self, host: &HostId) -> Vec<(String, Option<VmId>, LeftoverKind, bool)> {
        let Some(h) = self.host_idx(host) else {
            return vec![];
        };
        self.hosts[h]
            .files
            .iter()
            .map(|(p, f)| {
                (
                    p.clone(),
                    f.owner.map(|o| self.vms[o].spec.id.clone()),
                    f.kind,
                    f.complete,
                )
            })
            .collect()
    }

    /// What the VM left behind (see [`LeftoverContext`]); never another VM's files.
    pub fn leftovers(
        &self,
        req: &MigrationRequest,
        context: LeftoverContext,
    ) -> DriverResult<Vec<Leftover>> {
        let host = match context {
            LeftoverContext::AfterSuccess => &req.source,
            LeftoverContext::AfterFailedAttempt => &req.destination,
        };
        let h = self.reachable(host)?;
        let Some(v) = self.vm_idx(&req.vm) else {
            return Ok(vec![]);
        };
        if !self.is_leftover_host(v, h) {
            return Ok(vec![]);
        }
        Ok(self.hosts[h]
            .files
            .iter()
            .filter(|(_, f)| f.owner == Some(v))
            .map(|(p, f)| Leftover {
                host: host.clone(),
                kind: f.kind,
                what: p.clone(),
            })
            .collect())
    }

    /// Removes one leftover after re-checking that the VM does not use it. A leftover already
    /// gone is not an error.
    pub fn remove_leftover(
        &mut self,
        req: &MigrationRequest,
        leftover: &Leftover,
        context: LeftoverContext,
    ) -> DriverResult<()> {
        let h = self.reachable(&leftover.host)?;
        let expected = match context {
            LeftoverContext::AfterSuccess => &req.source,
            LeftoverContext::AfterFailedAttempt => &req.destination,
        };
        if &leftover.host != expected {
            return Err(DriverError::permanent(format!(
                "{} is on {}, not on the host this context cleans ({expected})",
                leftover.what, leftover.host
            )));
        }
        let Some(f) = self.hosts[h].files.get(&leftover.what) else {
            return Ok(());
        };
        let Some(v) = self.vm_idx(&req.vm) else {
            return Err(DriverError::permanent(format!("VM {} not found", req.vm)));
        };
        if f.owner != Some(v) {
            return Err(DriverError::permanent(format!(
                "{} on {} does not belong to VM {}: kept",
                leftover.what, leftover.host, req.vm_name
            )));
        }
        if !self.is_leftover_host(v, h) {
            return Err(DriverError::permanent(format!(
                "VM {} still uses {} on {}: kept",
                req.vm_name, leftover.what, leftover.host
            )));
        }
        let path = leftover.what.clone();
        self.drop_file(h, &path);
        Ok(())
    }

    /// Whether files of VM `v` on host `h` are leftovers: the VM is not defined there and is
    /// not arriving there.
    pub(super) fn is_leftover_host(&self, v: usize, h: usize) -> bool {
        let vs = &self.vms[v];
        vs.host != h && vs.active_mig.is_none_or(|m| self.migs[m].dst != h)
    }

    pub(super) fn put_file(
        &mut self,
        h: usize,
        path: String,
        owner: Option<usize>,
        kind: LeftoverKind,
        bytes: u64,
        complete: bool,
    ) {
        let host = &mut self.hosts[h];
        if let Some(old) = host.files.insert(
            path,
            File {
                owner,
                kind,
                bytes,
                complete,
            },
        ) {
            host.used_disk = host.used_disk.saturating_sub(old.bytes);
        }
        host.used_disk += bytes;
    }

    pub(super) fn drop_file(&mut self, h: usize, path: &str) {
        let host = &mut self.hosts[h];
        if let Some(old) = host.files.remove(path) {
            host.used_disk = host.used_disk.saturating_sub(old.bytes);
        }
    }
}
