//! The state of the fake Hyper-V hosts and the WS-Management operations on it.
//!
//! Time is virtual (`now_ms`), advanced by the test, optionally plus real elapsed time.
//! Migration jobs advance when any request looks at the world ([`World::tick`]).

use super::model::Locale;
pub use super::state::{
    Calls, FakeFile, FakeHost, FakeJob, FakeJobError, FakeRegKey, FakeVm, FakeWmiError, Fault,
    Faults, NS_CIMV2, NS_V2, Output, key, parent,
};
use crate::cim::CimInstance;
use std::collections::{BTreeMap, VecDeque};

/// The whole fake world.
#[derive(Debug, Default)]
pub struct World {
    /// Virtual time, ms.
    pub now_ms: u64,
    /// Hosts by key (the name the test and the driver config use).
    pub hosts: BTreeMap<String, FakeHost>,
    pub faults: Faults,
    /// What was called.
    pub calls: Calls,
    /// How long a migration job takes, ms (virtual).
    pub migration_ms: u64,
    /// Items per Enumerate/Pull page (small, so that Pull is exercised).
    pub page_size: usize,
    /// Open enumerations.
    pub enumerations: BTreeMap<String, VecDeque<CimInstance>>,
    /// The language of the hosts' captions ([`World::set_locale`]).
    pub locale: Locale,
    /// By how much each disk of a RUNNING VM grows during its move (4 MiB in `World::new`).
    /// The fake's `.vhdx` disks are dynamically expanding (`New-VHD`'s default;
    /// `Msvm_VirtualHardDiskSettingData.Type` 3), and a running VM keeps writing while Hyper-V
    /// mirrors its storage to the destination, so the copy that arrives is larger than the
    /// file measured on the source before the start. A powered-off VM's disks arrive as they
    /// were.
    pub live_disk_growth: u64,
    next_id: u64,
}

impl World {
    /// An empty world with defaults (3 s migrations, pages of 5).
    pub fn new() -> Self {
        World {
            migration_ms: 3000,
            page_size: 5,
            live_disk_growth: 4 << 20,
            ..World::default()
        }
    }

    pub(crate) fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A new number (for ids).
    pub(crate) fn next_id(&mut self) -> u64 {
        self.id()
    }

    /// Adds a host.
    pub fn add_host(&mut self, key: &str, computer_name: &str, volumes: &[&str]) {
        self.hosts.insert(
            key.to_owned(),
            FakeHost {
                computer_name: computer_name.to_owned(),
                migration_limit: 2,
                volumes: volumes.iter().map(|v| (*v).to_owned()).collect(),
                free_disk_bytes: 2 << 40,
                free_memory_bytes: 256 << 30,
                domain: "lab.example".into(),
                migration_enabled: true,
                listener_ips: vec![format!("192.0.2.{}", 10 + self.hosts.len())],
                switches: vec!["External".into()],
                os_build: 20348,
                cpu_vendor: "GenuineIntel".into(),
                cpu_name: "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz".into(),
                migration_auth: 1,
                ..FakeHost::default()
            },
        );
    }

    /// Adds a VM under `<root>` (config, checkpoints, smart paging there; disks in
    /// `<root>\Virtual Hard Disks`), returns its GUID.
    pub fn add_vm(
        &mut self,
        host: &str,
        name: &str,
        running: bool,
        memory_mib: u64,
        disks_mib: &[u64],
        root: &str,
    ) -> String {
        let n = self.id();
        let guid = format!("{:08X}-0000-4000-8000-{:012X}", n, n);
        let disks: Vec<String> = disks_mib
            .iter()
            .enumerate()
            .map(|(i, _)| format!("{root}\\Virtual Hard Disks\\{name}_{i}.vhdx"))
            .collect();
        let vm = FakeVm {
            guid: guid.clone(),
            name: name.to_owned(),
            enabled_state: if running { 2 } else { 3 },
            op_status: vec![2],
            memory_mib,
            config_root: root.to_owned(),
            snapshot_root: root.to_owned(),
            swap_root: root.to_owned(),
            disks: disks.clone(),
            ..FakeVm::default()
        };
        if let Some(h) = self.hosts.get_mut(host) {
            h.write_file(&format!("{root}\\Virtual Machines\\{guid}.vmcx"), 64 << 10);
            h.write_file(&format!("{root}\\Virtual Machines\\{guid}.vmgs"), 1 << 20);
            h.mkdirs(&format!("{root}\\Virtual Machines\\{guid}"));
            h.mkdirs(&format!("{root}\\Snapshots"));
            for (d, mib) in disks.iter().zip(disks_mib) {
                h.write_file(d, mib << 20);
            }
            h.vms.insert(guid.clone(), vm);
        }
        guid
    }

    pub(crate) fn host_key_by_name(&self, name: &str) -> Option<String> {
        self.hosts
            .iter()
            .find(|(k, h)| {
                k.eq_ignore_ascii_case(name)
                    || h.computer_name.eq_ignore_ascii_case(name)
                    || format!("{}.{}", h.computer_name, h.domain).eq_ignore_ascii_case(name)
            })
            .map(|(k, _)| k.clone())
    }

    /// Advances jobs to `now_ms`.
    pub fn tick(&mut self) {
        let now = self.now_ms;
        let ended: Vec<String> = self
            .faults
            .backup_ends_ms
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(g, _)| g.clone())
            .collect();
        for h in self.hosts.values_mut() {
            for v in h.vms.values_mut() {
                if self.faults.backup_ends_ms.contains_key(&v.guid) {
                    v.op_status = if ended.contains(&v.guid) {
                        vec![2]
                    } else {
                        vec![11, 32776]
                    };
                }
            }
        }
        for g in ended {
            self.faults.backup_ends_ms.remove(&g);
        }
        let mut finished: Vec<(String, String)> = Vec::new();
        for (hk, h) in self.hosts.iter_mut() {
            for j in h.jobs.values_mut() {
                if !j.running() {
                    continue;
                }
                let elapsed = now.saturating_sub(j.start_ms);
                let pct = (elapsed * 100 / j.duration_ms.max(1)).min(100) as u16;
                j.percent = pct;
                j.state = if elapsed == 0 { 3 } else { 4 };
                if elapsed >= j.duration_ms {
                    finished.push((hk.clone(), j.id.clone()));
                }
            }
        }
        for (hk, id) in finished {
            self.finish_job(&hk, &id);
        }
        // Show the moving VMs' secondary status.
        let mut shows: Vec<(String, String, Vec<u16>)> = Vec::new();
        for h in self.hosts.values() {
            for j in h.jobs.values().filter(|j| j.running()) {
                let first_half = j.percent < 50;
                let st = match (j.live, first_half) {
                    (_, true) => 32778,
                    (true, false) => 32774,
                    (false, false) => 32779,
                };
                shows.push((j.source.clone(), j.vm.clone(), vec![11, st]));
            }
        }
        for (hk, vm, st) in shows {
            if let Some(v) = self.hosts.get_mut(&hk).and_then(|h| h.vms.get_mut(&vm)) {
                v.op_status = st;
            }
        }
    }

    pub(crate) fn finish_job(&mut self, hk: &str, id: &str) {
        let Some(job) = self.hosts.get(hk).and_then(|h| h.jobs.get(id)).cloned() else {
            return;
        };
        if job.fail_at_end {
            if let Some(j) = self.hosts.get_mut(hk).and_then(|h| h.jobs.get_mut(id)) {
                j.state = 10;
                // The host's words, then why (the destination's refusal, if the job had one).
                let mut words = format!(
                    "Virtual machine migration operation for '{}' failed at migration source '{}'.",
                    job.vm, hk
                );
                if let Some(why) = &job.error {
                    words.push(' ');
                    words.push_str(why);
                }
                j.error = Some(words);
            }
            if let Some(v) = self
                .hosts
                .get_mut(&job.source)
                .and_then(|h| h.vms.get_mut(&job.vm))
            {
                v.op_status = vec![2];
            }
            if self.faults.failure_leaves_planned.contains(&job.vm) {
                let vm = self
                    .hosts
                    .get(&job.source)
                    .and_then(|h| h.vms.get(&job.vm))
                    .cloned();
                if let Some(vm) = vm {
                    let root = job.new_root.clone().unwrap_or(vm.config_root.clone());
                    self.add_planned(&job.destination, &vm.guid, &vm.name, &root);
                }
            }
            if job.leaves_copies {
                let sizes: Vec<u64> = job
                    .disk_moves
                    .iter()
                    .map(|(old, _)| {
                        self.hosts
                            .get(&job.source)
                            .and_then(|h| h.files.get(&key(old)))
                            .map_or(1 << 20, |f| f.size)
                    })
                    .collect();
                if let Some(dst) = self.hosts.get_mut(&job.destination) {
                    // The job had begun to receive the VM: its configuration folder (empty) and
                    // the copies, each creating the folders it needs.
                    if let Some(root) = &job.new_root {
                        dst.mkdirs(&format!("{root}\\Virtual Machines"));
                    }
                    let last = job.disk_moves.len().saturating_sub(1);
                    for (i, ((_, new), size)) in job.disk_moves.iter().zip(sizes).enumerate() {
                        dst.write_file(new, if i == last { size / 2 } else { size });
                    }
                }
            }
            return;
        }
        let Some(mut vm) = self
            .hosts
            .get_mut(&job.source)
            .and_then(|h| h.vms.remove(&job.vm))
        else {
            return;
        };
        // Hyper-V removes the source's configuration and (RetainVhdCopiesOnSource=false) VHDs,
        // but leaves the folders: that is what the clean-up is for.
        let old_root = vm.config_root.clone();
        let mut sizes = BTreeMap::new();
        if let Some(src) = self.hosts.get_mut(&job.source) {
            // What moved leaves the source (RetainVhdCopiesOnSource false): every storage entry
            // the job moved, disks, checkpoint disks and drive images alike.
            for (d, _) in &job.disk_moves {
                if let Some(f) = src.files.remove(&key(d)) {
                    sizes.insert(key(d), f.size);
                }
            }
            src.files.remove(&key(&format!(
                "{old_root}\\Virtual Machines\\{}.vmcx",
                vm.guid
            )));
            src.files.remove(&key(&format!(
                "{old_root}\\Virtual Machines\\{}.vmgs",
                vm.guid
            )));
        }
        let new_root = job.new_root.clone().unwrap_or(old_root);
        vm.config_root = new_root.clone();
        vm.snapshot_root = new_root.clone();
        vm.swap_root = new_root.clone();
        let moved = |d: &String| {
            job.disk_moves
                .iter()
                .find(|(o, _)| key(o) == key(d))
                .map(|(_, n)| n.clone())
                .unwrap_or(d.clone())
        };
        vm.disks = vm.disks.iter().map(moved).collect();
        // A checkpoint's disks and the drive images keep their paths unless the job moved them
        // (then they point at paths the destination may not have).
        for c in vm.checkpoints.iter_mut() {
            c.disks = c.disks.iter().map(moved).collect();
        }
        for d in vm.drives.iter_mut() {
            d.path = moved(&d.path);
        }
        vm.op_status = vec![2];
        if let Some(dst) = self.hosts.get_mut(&job.destination) {
            dst.write_file(
                &format!("{new_root}\\Virtual Machines\\{}.vmcx", vm.guid),
                64 << 10,
            );
            dst.write_file(
                &format!("{new_root}\\Virtual Machines\\{}.vmgs", vm.guid),
                1 << 20,
            );
            let growth = if job.live { self.live_disk_growth } else { 0 };
            for (old, new) in job.disk_moves.iter() {
                let size = sizes.get(&key(old)).copied().unwrap_or(1 << 20);
                dst.write_file(new, size + growth);
            }
            dst.vms.insert(vm.guid.clone(), vm);
        }
        let warning = self.faults.completes_with_warnings.remove(&job.vm);
        if let Some(j) = self.hosts.get_mut(hk).and_then(|h| h.jobs.get_mut(id)) {
            j.state = if warning.is_some() { 32768 } else { 7 };
            j.percent = 100;
            if warning.is_some() {
                j.error = warning;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parent_stops_at_the_volume() {
        assert_eq!(parent("E:\\VMs\\a").as_deref(), Some("E:\\VMs"));
        assert_eq!(parent("E:\\VMs").as_deref(), Some("E:\\"));
        assert_eq!(parent("E:\\"), None);
    }

    #[test]
    fn migration_job_moves_the_vm_on_the_virtual_clock() {
        let mut w = World::new();
        w.add_host("a", "HVA", &["C:", "E:"]);
        w.add_host("b", "HVB", &["C:", "E:"]);
        let g = w.add_vm("a", "vm1", true, 512, &[10], "E:\\VMs\\vm1");
        let job = FakeJob {
            id: "J".into(),
            vm: g.clone(),
            source: "a".into(),
            destination: "b".into(),
            live: true,
            new_root: Some("E:\\New\\vm1".into()),
            disk_moves: vec![(
                "E:\\VMs\\vm1\\Virtual Hard Disks\\vm1_0.vhdx".into(),
                "E:\\New\\vm1\\Virtual Hard Disks\\vm1_0.vhdx".into(),
            )],
            state: 3,
            percent: 0,
            start_ms: 0,
            duration_ms: 1000,
            error: None,
            fail_at_end: false,
            leaves_copies: false,
        };
        w.hosts.get_mut("a").unwrap().jobs.insert("J".into(), job);
        w.now_ms = 600;
        w.tick();
        assert_eq!(w.hosts["a"].vms[&g].op_status, vec![11, 32774]);
        assert_eq!(w.hosts["a"].active_migrations(&w.hosts, "b"), 1);
        w.now_ms = 1000;
        w.tick();
        assert!(!w.hosts["a"].vms.contains_key(&g));
        assert_eq!(w.hosts["b"].vms[&g].config_root, "E:\\New\\vm1");
        assert!(
            w.hosts["b"]
                .files
                .contains_key(&key("E:\\New\\vm1\\Virtual Hard Disks\\vm1_0.vhdx"))
        );
        // the source keeps its (now empty) folders
        assert!(w.hosts["a"].dir_exists("E:\\VMs\\vm1\\Virtual Hard Disks"));
        assert!(
            !w.hosts["a"]
                .files
                .contains_key(&key("E:\\VMs\\vm1\\Virtual Hard Disks\\vm1_0.vhdx"))
        );
    }
}
