//! Setting a fake world up beyond hosts and VMs: captions in another language, DVD and floppy
//! drives, checkpoints, planned VMs (model.rs holds what each is and its sources).

use super::model::*;
use super::world::{World, key, parent};

impl World {
    /// Shows every host's captions in `locale`.
    pub fn set_locale(&mut self, locale: Locale) {
        self.locale = locale;
    }

    /// Attaches an image to a new DVD (or floppy) drive of a VM; creates the image file.
    pub fn add_drive(&mut self, host: &str, guid: &str, subtype: &'static str, path: &str) {
        if let Some(h) = self.hosts.get_mut(host) {
            if !h.files.contains_key(&key(path)) {
                h.write_file(path, 700 << 20);
            }
            if let Some(vm) = h.vms.get_mut(guid) {
                vm.drives.push(FakeDrive {
                    subtype,
                    path: path.to_owned(),
                });
            }
        }
    }

    /// Takes a checkpoint of a VM: its current disks become the checkpoint's, and the VM goes on
    /// with a new differencing disk beside each (`<stem>_<id>.avhdx`, 4 MiB). Returns its id.
    pub fn add_checkpoint(&mut self, host: &str, guid: &str, name: &str, recovery: bool) -> String {
        let n = self.next_id();
        let id = format!("C{n:07X}-0000-4000-8000-{n:012X}");
        if let Some(h) = self.hosts.get_mut(host) {
            let Some(vm) = h.vms.get(guid).cloned() else {
                return id;
            };
            let mut new_disks = Vec::new();
            for d in &vm.disks {
                let dir = parent(d).unwrap_or_default();
                let file = d.rsplit('\\').next().unwrap_or(d);
                let stem = file.rsplit_once('.').map_or(file, |x| x.0);
                // A chain's links are named after the base disk (Hyper-V names each
                // `<base>_<checkpoint id>.avhdx`).
                let base = match stem.rsplit_once('_') {
                    Some((b, link)) if link.len() == 36 && link.starts_with('C') => b,
                    _ => stem,
                };
                let child = format!("{dir}\\{base}_{id}.avhdx");
                h.write_file(&child, 4 << 20);
                new_disks.push(child);
            }
            h.write_file(
                &format!("{}\\Snapshots\\{id}.vmcx", vm.snapshot_root),
                32 << 10,
            );
            if let Some(v) = h.vms.get_mut(guid) {
                v.checkpoints.push(FakeCheckpoint {
                    id: id.clone(),
                    name: name.to_owned(),
                    recovery,
                    disks: vm.disks.clone(),
                });
                v.disks = new_disks;
            }
        }
        id
    }

    /// Connects a new network adapter of a VM to the switch `switch` (created on the host if
    /// it has none of that name).
    pub fn add_nic(&mut self, host: &str, guid: &str, switch: &str) {
        if let Some(h) = self.hosts.get_mut(host) {
            if !h.switches.iter().any(|s| s.eq_ignore_ascii_case(switch)) {
                h.switches.push(switch.to_owned());
            }
            if let Some(vm) = h.vms.get_mut(guid) {
                vm.nics.push(switch.to_owned());
            }
        }
    }

    /// Attaches the host's disk number `disk` to a VM as a pass-through disk.
    pub fn add_passthrough_disk(&mut self, host: &str, guid: &str, disk: u32) {
        if let Some(vm) = self.hosts.get_mut(host).and_then(|h| h.vms.get_mut(guid)) {
            vm.passthrough_disks.push(disk);
        }
    }

    /// Leaves a planned VM of `guid` on `host` (as a failed attempt does).
    pub fn add_planned(&mut self, host: &str, guid: &str, name: &str, config_root: &str) {
        // Its files are not modelled: no source says where a failed migration's planned VM
        // keeps them, or whether DestroySystem removes them.
        if let Some(h) = self.hosts.get_mut(host) {
            h.planned.insert(
                guid.to_owned(),
                FakePlanned {
                    guid: guid.to_owned(),
                    name: name.to_owned(),
                    config_root: config_root.to_owned(),
                },
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_make_one_chain_per_disk_whatever_the_vm_is_called() {
        let mut w = World::new();
        w.add_host("a", "HVA", &["C:", "E:"]);
        let g = w.add_vm("a", "my_vm", true, 512, &[10, 20], "E:\\VMs\\my_vm");
        let c1 = w.add_checkpoint("a", &g, "one", false);
        let c2 = w.add_checkpoint("a", &g, "two", true);
        let vm = &w.hosts["a"].vms[&g];
        let d = "E:\\VMs\\my_vm\\Virtual Hard Disks";
        assert_eq!(
            vm.disks,
            [
                format!("{d}\\my_vm_0_{c2}.avhdx"),
                format!("{d}\\my_vm_1_{c2}.avhdx")
            ]
        );
        assert_eq!(
            vm.checkpoints[1].disks,
            [
                format!("{d}\\my_vm_0_{c1}.avhdx"),
                format!("{d}\\my_vm_1_{c1}.avhdx")
            ]
        );
        assert_eq!(
            vm.checkpoints[0].disks,
            [format!("{d}\\my_vm_0.vhdx"), format!("{d}\\my_vm_1.vhdx")]
        );
        assert!(vm.checkpoints[1].recovery);
        for p in vm
            .disks
            .iter()
            .chain(vm.checkpoints.iter().flat_map(|c| c.disks.iter()))
        {
            assert!(w.hosts["a"].files.contains_key(&key(p)), "{p}");
        }
    }
}
