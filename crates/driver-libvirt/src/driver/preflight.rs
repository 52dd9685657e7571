//! Pre-flight: what stops a VM's move to a destination, found by reading only (both hosts'
//! domains, storage, networks; the domain's XML). Every check and its code are listed in
//! docs/drivers/libvirt.md ("Pre-flight checks"); each code is stable.
//!
//! Reading only: the calls here look domains, volumes, networks and interfaces up. Looking a
//! file up in a folder no storage pool covers starts a transient pool for that folder (as
//! `footprint` does); nothing is defined, created or written.

use super::paths::{destination_base, destination_paths};
use super::state::{Inner, blocking_on};
use crate::error::{Phase, code};
use crate::ffi;
use crate::host::{self, code_of, describe, find_domain, find_domain_by_name, vol_at};
use roxmltree::Node;
use virt::connect::Connect;
use virt::sys;
use vmove_driver::*;

/// A removable medium (`<disk device='cdrom'|'floppy'>`) with an image file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Medium {
    pub(crate) device: String,
    pub(crate) target: String,
    pub(crate) file: String,
}

/// A network interface and what it plugs into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Nic {
    /// `type='network'`: a libvirt network by name, and the port group it asks for, if any.
    Network {
        /// The network's name.
        name: String,
        /// `<source portgroup=...>`: the network's port group whose VLAN, bandwidth and
        /// virtual port settings the interface takes.
        portgroup: Option<String>,
    },
    /// `type='bridge'`: a host bridge by name.
    Bridge(String),
    /// Anything else (`direct`, `user`, `ethernet`...): its type.
    Other(String),
}

/// What pre-flight reads from a domain's XML beyond [`crate::xml::DomainDesc`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    pub(crate) media: Vec<Medium>,
    pub(crate) nics: Vec<Nic>,
    /// `<hostdev>` devices: "type (address)".
    pub(crate) hostdevs: Vec<String>,
    /// Disks (`device='disk'|'lun'`) that are not plain files: "target (type, source)".
    pub(crate) non_file_disks: Vec<String>,
    /// `<nvram type=...>` when it is not a file (`block`, `network`: libvirt 8.5 and later).
    pub(crate) nvram_type: Option<String>,
    /// Files the VM boots from that stay on each host: `<os><loader>` (UEFI firmware, e.g.
    /// OVMF's code), `<kernel>`, `<initrd>`, `<dtb>` of a direct boot.
    pub(crate) boot_files: Vec<String>,
    /// `<tpm>` with an emulator backend (swtpm keeps its state in a file on the host).
    pub(crate) tpm_emulator: bool,
    /// The `<cpu>` element as written.
    pub(crate) cpu_xml: Option<String>,
    /// `<domain type=...>` (`kvm`, `qemu`).
    pub(crate) virt_type: Option<String>,
    /// `<os><type arch= machine=>`.
    pub(crate) arch: Option<String>,
    pub(crate) machine: Option<String>,
    /// `<devices><emulator>`.
    pub(crate) emulator: Option<String>,
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(name))
}

/// Whether a network's XML (`virNetworkGetXMLDesc`) defines the port group `name`; XML that
/// does not parse has none.
pub(crate) fn network_has_portgroup(xml: &str, name: &str) -> bool {
    roxmltree::Document::parse(xml).is_ok_and(|doc| {
        doc.root_element()
            .children()
            .any(|c| c.has_tag_name("portgroup") && c.attribute("name") == Some(name))
    })
}

/// Reads the pre-flight facts from a domain's XML.
pub(crate) fn facts(xml: &str) -> Result<Facts, crate::xml::XmlError> {
    let doc = roxmltree::Document::parse(xml).map_err(crate::xml::XmlError::from)?;
    let root = doc.root_element();
    let mut f = Facts {
        virt_type: root.attribute("type").map(str::to_owned),
        ..Facts::default()
    };
    if let Some(os) = child(root, "os") {
        if let Some(t) = child(os, "type") {
            f.arch = t.attribute("arch").map(str::to_owned);
            f.machine = t.attribute("machine").map(str::to_owned);
        }
        for tag in ["loader", "kernel", "initrd", "dtb"] {
            if let Some(p) = child(os, tag)
                .and_then(|n| n.text())
                .map(str::trim)
                .filter(|p| p.starts_with('/'))
            {
                f.boot_files.push(p.to_owned());
            }
        }
        if let Some(n) = child(os, "nvram") {
            f.nvram_type = n
                .attribute("type")
                .filter(|t| *t != "file")
                .map(str::to_owned);
        }
    }
    if let Some(cpu) = child(root, "cpu") {
        f.cpu_xml = Some(xml[cpu.range()].to_owned());
    }
    let Some(devices) = child(root, "devices") else {
        return Ok(f);
    };
    f.emulator = child(devices, "emulator")
        .and_then(|e| e.text())
        .map(|t| t.trim().to_owned());
    for d in devices.children().filter(Node::is_element) {
        match d.tag_name().name() {
            "disk" => {
                let device = d.attribute("device").unwrap_or("disk");
                let kind = d.attribute("type").unwrap_or("file");
                let target = child(d, "target")
                    .and_then(|t| t.attribute("dev"))
                    .unwrap_or("?")
                    .to_owned();
                let src = child(d, "source");
                match device {
                    "cdrom" | "floppy" => {
                        // An empty drive (no source) or a host drive passes through nothing
                        // we can look for; only image files are checked.
                        if kind == "file"
                            && let Some(file) = src.and_then(|s| s.attribute("file"))
                        {
                            f.media.push(Medium {
                                device: device.to_owned(),
                                target,
                                file: file.to_owned(),
                            });
                        } else if kind == "block"
                            && let Some(dev) = src.and_then(|s| s.attribute("dev"))
                        {
                            f.non_file_disks
                                .push(format!("{target} ({device} of host device {dev})"));
                        }
                    }
                    _ => {
                        if kind != "file" {
                            let what = src
                                .and_then(|s| {
                                    s.attribute("dev")
                                        .or_else(|| s.attribute("name"))
                                        .or_else(|| s.attribute("volume"))
                                        .or_else(|| s.attribute("dir"))
                                })
                                .unwrap_or("?");
                            f.non_file_disks
                                .push(format!("{target} (type '{kind}', source {what})"));
                        }
                    }
                }
            }
            "interface" => {
                let kind = d.attribute("type").unwrap_or("");
                let src = child(d, "source");
                f.nics.push(match kind {
                    "network" => Nic::Network {
                        name: src
                            .and_then(|s| s.attribute("network"))
                            .unwrap_or("")
                            .to_owned(),
                        portgroup: src
                            .and_then(|s| s.attribute("portgroup"))
                            .filter(|p| !p.is_empty())
                            .map(str::to_owned),
                    },
                    "bridge" => Nic::Bridge(
                        src.and_then(|s| s.attribute("bridge"))
                            .unwrap_or("")
                            .to_owned(),
                    ),
                    other => Nic::Other(other.to_owned()),
                });
            }
            "hostdev" => {
                let kind = d.attribute("type").unwrap_or("?");
                let addr = child(d, "source")
                    .map(|s| {
                        let mut parts = Vec::new();
                        for c in s.descendants().filter(Node::is_element) {
                            for a in c.attributes() {
                                parts.push(format!("{}={}", a.name(), a.value()));
                            }
                        }
                        parts.join(" ")
                    })
                    .unwrap_or_default();
                f.hostdevs.push(format!("{kind} ({addr})"));
            }
            "tpm" if child(d, "backend").and_then(|b| b.attribute("type")) == Some("emulator") => {
                f.tpm_emulator = true;
            }
            _ => {}
        }
    }
    Ok(f)
}

fn vm_block(code: &str, message: String, remedy: &str) -> Finding {
    Finding::new(code, FindingScope::Vm, message).remedy(remedy)
}

fn dest_block(code: &str, message: String, remedy: &str) -> Finding {
    Finding::new(code, FindingScope::Destination, message).remedy(remedy)
}

/// What in the VM's XML no destination can take in this `mode`, because vmove cannot carry it:
/// host devices, disks that are not files, a UEFI variable store (NVRAM) that is not a file,
/// and, in an offline move, an emulated TPM's state. Pre-flight reports each as a blocker;
/// `prepare` refuses the start with the first (Permanent), so a move that skipped pre-flight
/// still touches nothing.
///
/// A UEFI VM's NVRAM file moves in both modes. Live, QEMU migrates the flash device's content
/// with the VM's memory (`hw/block/pflash_cfi01.c`: `pflash_cfi01_realize` registers it as
/// migratable RAM), and on the destination `pflash_post_load` sets a VM state handler,
/// `postload_update_cb`, that writes the content into the device's own file when the VM runs
/// there; libvirt neither copies the file nor removes the source's. Offline, the driver copies
/// the file as it copies the disks. Either way it pre-creates the destination's file
/// (prepare.rs) and lists the source's as a leftover of the move (cleanup.rs). Seen in the lab
/// (`catalogue_uefi_moves_live_with_its_nvram`): the destination's file is byte for byte the
/// source's, which differs from OVMF's template once the firmware has run.
///
/// A live move carries an emulated TPM's state: QEMU's TPM emulator backend fetches swtpm's
/// state blobs over its control channel and sends them in the migration stream (Stefan Berger's
/// patch on qemu-devel, March 2018: "Extend the TPM emulator backend device with state migration
/// support"; QEMU's `docs/specs/tpm.rst`, "Migration with the TPM emulator", lists network migration
/// among the supported kinds), and the destination's swtpm starts from them; libvirt's swtpm
/// `--migration` options concern only state on storage both hosts share (libvirt commit
/// 188dfeb, "qemu: tpm: Pass --migration option to swtpm if supported and needed"). libvirt
/// removes the source's state folder when it undefines the source at the migration's end. Seen
/// in the lab (`catalogue_tpm_moves_live_with_its_state`): the destination's state file is byte
/// for byte the source's, in both modes, and none is left on the source. Offline, no QEMU runs:
/// the state files would stay behind.
pub(super) fn vm_blockers(
    name: &str,
    source: &HostId,
    mode: MigrationMode,
    f: &Facts,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for h in &f.hostdevs {
        out.push(vm_block(
            "host_device",
            format!("VM {name} has a host device {h}: a device of {source} cannot move with it"),
            "detach it (`virsh detach-device --config`) before the move and attach the destination's own device after",
        ));
    }
    for d in &f.non_file_disks {
        out.push(vm_block(
            "disk_not_file",
            format!("VM {name} has disk {d} that is not a file: vmove copies file-backed disks only"),
            "move its data by hand (or make the storage reachable from the destination and move it with libvirt), or detach the disk",
        ));
    }
    if let Some(t) = &f.nvram_type {
        out.push(vm_block(
            "uefi_nvram",
            format!("VM {name} boots UEFI with its variable store (NVRAM) on a {t} device, not in a file: vmove cannot carry it"),
            "move the VM with `virsh migrate` where both hosts reach that storage, or give it a file NVRAM",
        ));
    }
    if f.tpm_emulator && mode == MigrationMode::Offline {
        out.push(vm_block(
            "tpm_state",
            format!("VM {name} has an emulated TPM whose state (swtpm files under /var/lib/libvirt/swtpm on {source}) an offline move cannot carry: only a live move does, in QEMU's migration stream"),
            "start the VM and move it live (its TPM state moves with it), or remove the TPM if the guest does not need its keys",
        ));
    }
    out
}

pub(super) async fn preflight(inner: &Inner, req: &MigrationRequest) -> DriverResult<Preflight> {
    let src = inner.host(&req.source)?;
    let dst = inner.host(&req.destination)?;
    let req = req.clone();
    blocking_on(vec![src.clone(), dst.clone()], Phase::Read, move || {
        let sconn = src.conn()?;
        let dom = find_domain(&sconn, &req.vm)?.ok_or_else(|| {
            DriverError::permanent(format!("VM {} not found on {}", req.vm_name, req.source))
        })?;
        let dconn = dst.conn()?;
        let mut out = Preflight::default();
        let info = host::vm_info(&sconn, &dom)?;
        let name = info.name.clone();
        let read = |what: &'static str| host::read_err(what);

        // The mode must fit the VM's state (prepare refuses the same, for good).
        match req.mode {
            MigrationMode::Live if !info.power.is_live() => out.block(vm_block(
                "not_running",
                format!("VM {name} is not running ({:?}): it cannot move live", info.power),
                "start it, or move it offline",
            )),
            MigrationMode::Offline if info.power != PowerState::Off => out.block(vm_block(
                "not_shut_off",
                format!("VM {name} is not shut off ({:?}): it cannot move offline", info.power),
                "shut it down, or move it live",
            )),
            _ => {}
        }
        if info.activity != Activity::Idle {
            out.warn(Finding::new(
                "busy",
                FindingScope::Vm,
                format!("VM {name} is busy ({:?}): a move waits until it is idle", info.activity),
            ));
        }

        // Saved state, snapshots, checkpoints: metadata that lives on the source only.
        if dom.has_managed_save(0).map_err(read("cannot read the VM's saved state"))? {
            out.block(vm_block(
                "managed_save",
                format!("VM {name} has a managed-save image (its memory saved on {}): the move would lose it, and libvirt refuses to undefine the VM while it exists", req.source),
                "start the VM (which restores its saved state) and move it live, or discard the state with `virsh managedsave-remove`",
            ));
        }
        let snaps = ffi::snapshot_count(&dom).map_err(read("cannot count the VM's snapshots"))?;
        if snaps > 0 {
            out.block(vm_block(
                "snapshots",
                format!("VM {name} has {snaps} snapshot(s) whose metadata libvirt keeps on {}; libvirt refuses to migrate it (\"cannot migrate domain with {snaps} snapshots\")", req.source),
                "delete the snapshot metadata (`virsh snapshot-dumpxml` each to keep it, then `virsh snapshot-delete --metadata`) and redefine them on the destination after the move (`virsh snapshot-create --redefine`)",
            ));
        }
        match ffi::checkpoint_count(&dom) {
            Ok(0) => {}
            Ok(n) => out.block(vm_block(
                "checkpoints",
                format!("VM {name} has {n} checkpoint(s) (incremental-backup metadata) that vmove does not carry"),
                "save them (`virsh checkpoint-dumpxml`), delete the metadata (`virsh checkpoint-delete --metadata`), and redefine them on the destination after the move (`virsh checkpoint-create --redefine`)",
            )),
            // A libvirt without checkpoints has none to lose.
            Err(e) if matches!(code_of(&e) as u32, sys::VIR_ERR_NO_SUPPORT) => {}
            Err(e) => return Err(read("cannot count the VM's checkpoints")(e)),
        }

        let xml_flags = match req.mode {
            MigrationMode::Live if info.power.is_live() => sys::VIR_DOMAIN_XML_MIGRATABLE,
            _ => sys::VIR_DOMAIN_XML_MIGRATABLE | sys::VIR_DOMAIN_XML_INACTIVE,
        };
        let (raw, desc) = describe(&dom, xml_flags)?;
        let f = facts(&raw).map_err(|e| DriverError::transient(e.to_string()))?;

        for b in vm_blockers(&name, &req.source, req.mode, &f) {
            out.block(b);
        }

        // The destination: the name and the id must be free.
        if let Some(d) = find_domain(&dconn, &req.vm)? {
            let active = d.is_active().unwrap_or(false);
            out.block(dest_block(
                "vm_exists",
                format!("VM {name} (UUID {}) is already {} on {}", req.vm, if active { "running" } else { "defined" }, req.destination),
                "find out which copy is the real one; undefine the other (after keeping its disks if they matter)",
            ));
        } else if find_domain_by_name(&dconn, &desc.name)?.is_some() {
            out.block(dest_block(
                "name_taken",
                format!("another VM named {} already exists on {}", desc.name, req.destination),
                "rename one of them (`virsh domrename`) or pick another destination",
            ));
        }

        // Media: the move keeps their paths; the destination must hold the same file.
        // The files it boots from (UEFI firmware, a direct boot's kernel): QEMU on the
        // destination opens them at the same paths; without them the move fails as the
        // destination starts (live), or the VM cannot start there (offline: a warning).
        for file in &f.boot_files {
            if vol_at(&dconn, file)?.is_none() {
                let found = dest_block(
                    "boot_file_missing",
                    format!("VM {name} boots from {file}, which is not on {} at that path", req.destination),
                    "install it there (UEFI firmware: the `ovmf` package on Debian and Ubuntu, `edk2-ovmf` on Fedora and RHEL), or copy it to the same path",
                );
                if req.mode == MigrationMode::Live {
                    out.block(found);
                } else {
                    out.warn(found);
                }
            }
        }
        for m in &f.media {
            if vol_at(&dconn, &m.file)?.is_none() {
                out.block(dest_block(
                    "media_missing",
                    format!("{} image {} ({} of VM {name}) is not on {} at that path; vmove does not copy media", m.device, m.file, m.target, req.destination),
                    &format!("copy the image to {} on the destination, or eject it: `virsh change-media {name} {} --eject --config`", m.file, m.target),
                ));
            }
        }

        // Networks and bridges.
        for nic in &f.nics {
            match nic {
                Nic::Network { name: net, portgroup } => match dconn.lookup_network_by_name(net) {
                    Ok(n) => {
                        if !n.is_active().unwrap_or(false) {
                            out.block(dest_block(
                                "network_inactive",
                                format!("network {net} (of VM {name}) is defined on {} but not active", req.destination),
                                &format!("start it there: `virsh net-start {net}` (and `virsh net-autostart {net}`)"),
                            ));
                        }
                        // libvirt passes over a port group the network lacks without an error
                        // (bridge_driver.c: the lookup's miss only leaves the group's settings
                        // out; seen on the lab with libvirt 9.0): the VM would start there
                        // without its VLAN, bandwidth and virtual port settings.
                        if let Some(pg) = portgroup {
                            let xml = n.xml_desc(0).map_err(read("cannot read a network's definition"))?;
                            if !network_has_portgroup(&xml, pg) {
                                out.block(dest_block(
                                    "portgroup_missing",
                                    format!("network {net} on {} has no port group {pg} (VM {name}'s interface asks for it); libvirt would start the VM without that group's VLAN, bandwidth and port settings", req.destination),
                                    &format!("add port group {pg} to network {net} there (`virsh net-edit {net}`), or pick a destination whose network has it"),
                                ));
                            }
                        }
                    }
                    Err(e) if code_of(&e) as u32 == sys::VIR_ERR_NO_NETWORK => out.block(dest_block(
                        "network_missing",
                        format!("network {net} (of VM {name}) is not defined on {}", req.destination),
                        &format!("define and start a network named {net} there (`virsh net-define`, `virsh net-start`), or pick a destination that has it"),
                    )),
                    Err(e) => return Err(read("cannot look a network up")(e)),
                },
                Nic::Bridge(br) => match dconn.lookup_interface_by_name(br) {
                    Ok(_) => {}
                    Err(e) if code_of(&e) as u32 == sys::VIR_ERR_NO_INTERFACE => out.block(dest_block(
                        "bridge_missing",
                        format!("bridge {br} (of VM {name}) is not on {}", req.destination),
                        &format!("create bridge {br} there, or pick a destination that has it"),
                    )),
                    // Without libvirt's interface driver (netcf/udev) the host cannot be asked.
                    Err(e) => out.warn(Finding::new(
                        "bridge_unchecked",
                        FindingScope::Destination,
                        format!("cannot tell whether bridge {br} (of VM {name}) is on {}: {}", req.destination, e.message()),
                    ).remedy(format!("check `ip link show {br}` on the destination"))),
                },
                Nic::Other(_) => {}
            }
        }

        // CPU (live): the VM's migratable CPU against the destination's hypervisor.
        if req.mode == MigrationMode::Live
            && info.power.is_live()
            && let Some(cpu) = &f.cpu_xml
        {
            match ffi::compare_hypervisor_cpu(
                &dconn,
                f.emulator.as_deref(),
                f.arch.as_deref(),
                f.machine.as_deref(),
                f.virt_type.as_deref(),
                cpu,
            ) {
                Ok(r) if r == sys::VIR_CPU_COMPARE_INCOMPATIBLE => out.block(dest_block(
                    "cpu_incompatible",
                    format!("the CPU of VM {name} is not one {}'s hypervisor can provide", req.destination),
                    "pick a destination with a compatible CPU, or give the VM a CPU model both hosts have (a named model instead of host-passthrough) and restart it",
                )),
                Ok(_) => {}
                Err(e) if code_of(&e) as u32 == sys::VIR_ERR_CPU_INCOMPATIBLE => out.block(dest_block(
                    "cpu_incompatible",
                    format!("the CPU of VM {name} is not one {}'s hypervisor can provide: {}", req.destination, e.message()),
                    "pick a destination with a compatible CPU, or give the VM a CPU model both hosts have and restart it",
                )),
                Err(e) => out.warn(Finding::new(
                    "cpu_unchecked",
                    FindingScope::Destination,
                    format!("cannot compare the CPU of VM {name} with {}'s: {}", req.destination, e.message()),
                )),
            }
        }

        // Memory (live).
        let need_mem = desc.memory_kib.saturating_mul(1024);
        if req.mode == MigrationMode::Live && info.power.is_live() {
            let free = host::available_memory(&dconn)?;
            if free < need_mem {
                // Memory frees as VMs leave the destination: a blocker that may pass, unless
                // the host has less memory in all than the VM needs (then it never passes).
                let total = dconn
                    .node_info()
                    .ok()
                    .map(|n| n.memory.saturating_mul(1024));
                let f = dest_block(
                    "memory",
                    format!("{} has {free} bytes of memory available, VM {name} needs {need_mem}", req.destination),
                    "free memory there, or pick another destination",
                );
                out.block(if total.is_some_and(|t| t < need_mem) { f } else { f.may_pass() });
            }
        }

        // Destination paths and room.
        let disks = host::disks_of(&sconn, &desc)?;
        let tops: Vec<String> = disks.iter().map(|d| d.path.clone()).collect();
        let offline_chain = req.mode == MigrationMode::Offline
            && disks.iter().any(|d| !d.backing_chain.is_empty());
        let mut dest_files = Vec::new();
        if offline_chain {
            for d in &disks {
                dest_files.push(d.path.clone());
                dest_files.extend(d.backing_chain.iter().cloned());
            }
            if req.layout.base.is_some() || req.layout.put_in_subfolder {
                out.block(vm_block(
                    "chain_layout",
                    format!("VM {name} is shut off with a backing chain: an offline move keeps its paths, and the layout asks for others"),
                    "move it live, or without a destination folder",
                ));
            }
        } else {
            let base = destination_base(&dconn, &dst, &req)?;
            dest_files = destination_paths(&base, &desc.name, req.layout.put_in_subfolder, &tops);
        }
        // A UEFI VM's NVRAM file, which a move carries to the same path (prepare.rs).
        if let Some(nv) = &desc.nvram {
            dest_files.push(nv.to_owned());
        }
        for p in &dest_files {
            if vol_at(&dconn, p)?.is_none() {
                continue;
            }
            if crate::provenance::proven(&dconn, p, &req.vm)? {
                // A partial copy an earlier attempt of this VM left (its provenance marker
                // proves it): the start is refused, and the clean-up after that removes it.
                out.warn(Finding::new(
                    Finding::LEFTOVER,
                    FindingScope::Destination,
                    format!("destination path {p} on {} holds a partial copy an earlier attempt of VM {name} left (its provenance marker proves it): the start's clean-up removes it", req.destination),
                ));
            } else {
                // Someone else's file, which a person (or a move) may free: may pass.
                out.block(dest_block(
                    Finding::PATH_TAKEN,
                    format!("destination path {p} already holds a file on {}; vmove does not overwrite it", req.destination),
                    "move or delete that file if it is not needed, or choose another destination folder",
                ).may_pass());
            }
        }
        let need: u64 = disks.iter().map(|d| d.allocated_bytes).sum();
        match host::pool_path(&dconn, &dst.cfg.pool) {
            Ok((pool, _)) => {
                if let Ok(pi) = pool.info()
                    && pi.available < need
                {
                    // Space frees as images leave the pool: may pass, unless the pool is
                    // smaller in all than the disks (then it never passes).
                    let f = dest_block(
                        "disk_space",
                        format!("pool {} on {} has {} bytes free, the disks of VM {name} take {need}", dst.cfg.pool, req.destination, pi.available),
                        "free space in that pool, or pick another destination",
                    );
                    out.block(if pi.capacity < need { f } else { f.may_pass() });
                }
            }
            Err(e) if e.class == ErrorClass::DestinationRefused => out.block(dest_block(
                "pool_missing",
                format!("storage pool {} is not usable on {}: {}", dst.cfg.pool, req.destination, e.message),
                "define and start that pool there (`virsh pool-define-as`, `virsh pool-start`), or set `pool` in the host's configuration",
            )),
            Err(e) => return Err(e),
        }
        Ok(out)
    })
    .await
}

/// [`Driver::preflight_host`] for libvirt: the connection opens (reachable, authenticated),
/// the host answers, the configured pool is active, and the migration port range fits at
/// least one storage migration.
pub(super) async fn preflight_host(inner: &Inner, host_id: &HostId) -> DriverResult<Preflight> {
    let h = inner.host(host_id)?;
    let id = host_id.clone();
    blocking_on(vec![h.clone()], Phase::Read, move || {
        let mut out = Preflight::default();
        let conn: Connect = match h.conn() {
            Ok(c) => c,
            Err(e) => {
                let code = if e.code == Some(i64::from(code::AUTH_FAILED)) {
                    "host_auth_failed"
                } else {
                    "host_unreachable"
                };
                out.block(
                    Finding::new(code, FindingScope::Host, format!("{id} did not answer: {e}"))
                        .remedy("check the host's URI, credentials, and that libvirtd listens there"),
                );
                return Ok(out);
            }
        };
        if let Err(e) = conn.lib_version() {
            out.block(Finding::new(
                "host_unreachable",
                FindingScope::Host,
                format!("{id} opened a connection but does not answer: {e}"),
            ));
            return Ok(out);
        }
        match host::pool_path(&conn, &h.cfg.pool) {
            Ok((p, _)) if !p.is_active().unwrap_or(false) => out.block(
                Finding::new(
                    "pool_inactive",
                    FindingScope::Host,
                    format!("storage pool {} on {id} is not active", h.cfg.pool),
                )
                .remedy(format!("`virsh pool-start {}`", h.cfg.pool)),
            ),
            Ok(_) => {}
            Err(e) => out.block(
                Finding::new(
                    "pool_missing",
                    FindingScope::Host,
                    format!("storage pool {} on {id}: {}", h.cfg.pool, e.message),
                )
                .remedy("define and start the pool, or set `pool` in the host's configuration"),
            ),
        }
        if h.cfg.port_capacity() == Some(0) {
            out.block(
                Finding::new(
                    "migration_ports",
                    FindingScope::Host,
                    format!("the migration port range of {id} fits no storage migration (each takes 2 ports)"),
                )
                .remedy("widen migration_port_min/max in qemu.conf and `migration_ports` in the configuration"),
            );
        }
        Ok(out)
    })
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SHAPES: &str = r#"<domain type='kvm'>
  <name>vm1</name><uuid>11111111-2222-3333-4444-555555555555</uuid>
  <memory unit='KiB'>65536</memory>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
    <nvram>/var/lib/libvirt/qemu/nvram/vm1_VARS.fd</nvram></os>
  <cpu mode='custom' match='exact' check='partial'><model fallback='forbid'>qemu64</model></cpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><source file='/i/vm1.qcow2'/><target dev='vda'/></disk>
    <disk type='file' device='cdrom'><source file='/iso/debian.iso'/><target dev='sda'/></disk>
    <disk type='file' device='cdrom'><target dev='sdb'/></disk>
    <disk type='file' device='floppy'><source file='/iso/f.img'/><target dev='fda'/></disk>
    <disk type='block' device='disk'><source dev='/dev/sdz'/><target dev='vdb'/></disk>
    <disk type='network' device='disk'><source protocol='rbd' name='pool/img'/><target dev='vdc'/></disk>
    <interface type='network'><source network='default'/></interface>
    <interface type='network'><source network='lan' portgroup='vlan42'/></interface>
    <interface type='bridge'><source bridge='br0'/></interface>
    <interface type='user'/>
    <hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0xbeef'/></source></hostdev>
    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>
  </devices></domain>"#;

    #[test]
    fn facts_name_every_shape_preflight_checks() {
        let f = facts(SHAPES).unwrap();
        assert_eq!(
            f.media,
            vec![
                Medium {
                    device: "cdrom".into(),
                    target: "sda".into(),
                    file: "/iso/debian.iso".into()
                },
                Medium {
                    device: "floppy".into(),
                    target: "fda".into(),
                    file: "/iso/f.img".into()
                }
            ]
        );
        assert_eq!(
            f.nics,
            vec![
                Nic::Network {
                    name: "default".into(),
                    portgroup: None
                },
                Nic::Network {
                    name: "lan".into(),
                    portgroup: Some("vlan42".into())
                },
                Nic::Bridge("br0".into()),
                Nic::Other("user".into())
            ]
        );
        assert_eq!(f.hostdevs.len(), 1);
        assert!(f.hostdevs[0].starts_with("usb (") && f.hostdevs[0].contains("0xbeef"));
        assert_eq!(f.non_file_disks.len(), 2, "{:?}", f.non_file_disks);
        assert!(f.non_file_disks[0].contains("vdb") && f.non_file_disks[0].contains("/dev/sdz"));
        assert!(
            f.non_file_disks[1].contains("network") && f.non_file_disks[1].contains("pool/img")
        );
        assert_eq!(f.nvram_type, None);
        assert_eq!(
            crate::xml::parse_domain(SHAPES).unwrap().nvram.as_deref(),
            Some("/var/lib/libvirt/qemu/nvram/vm1_VARS.fd")
        );
        assert!(f.tpm_emulator);
        assert!(
            f.cpu_xml
                .as_deref()
                .unwrap()
                .starts_with("<cpu mode='custom'")
        );
        assert!(f.cpu_xml.as_deref().unwrap().ends_with("</cpu>"));
        assert_eq!(f.boot_files, vec!["/usr/share/OVMF/OVMF_CODE.fd"]);
        assert_eq!(f.virt_type.as_deref(), Some("kvm"));
        assert_eq!(f.machine.as_deref(), Some("pc-q35-7.2"));
        assert_eq!(f.emulator.as_deref(), Some("/usr/bin/qemu-system-x86_64"));
    }

    #[test]
    fn a_port_group_is_found_only_among_the_network_s_own_groups() {
        let net = "<network><name>lan</name><forward mode='bridge'/><bridge name='br0'/>\
            <portgroup name='vlan42' default='no'><vlan><tag id='42'/></vlan></portgroup>\
            <portgroup name='other'/></network>";
        assert!(network_has_portgroup(net, "vlan42"));
        assert!(network_has_portgroup(net, "other"));
        assert!(!network_has_portgroup(net, "vlan4"));
        assert!(!network_has_portgroup(net, "lan"));
        assert!(!network_has_portgroup(
            "<network><name>x</name></network>",
            "vlan42"
        ));
        assert!(!network_has_portgroup("<network><portgroup", "vlan42"));
    }

    #[test]
    fn facts_of_a_vm_with_only_files_and_a_cdrom() {
        let f = facts(crate::xml_samples::RUNNING).unwrap();
        assert_eq!(f.media.len(), 1);
        assert_eq!(f.media[0].file, "/iso/a.iso");
        assert!(f.hostdevs.is_empty() && f.non_file_disks.is_empty() && f.nics.is_empty());
        assert!(f.nvram_type.is_none() && !f.tpm_emulator && f.cpu_xml.is_none());
    }

    /// An emulated TPM's state moves only live (QEMU carries it in the migration stream):
    /// offline it is a blocker, live it is none. A UEFI NVRAM file moves in both modes (the
    /// driver copies it offline); one that is not a file, and the other blockers, stand in both.
    #[test]
    fn an_emulated_tpm_blocks_an_offline_move_only_and_an_nvram_file_neither() {
        let tpm_only = Facts {
            tpm_emulator: true,
            ..Facts::default()
        };
        let src = HostId::new("a");
        let offline = vm_blockers("vm1", &src, MigrationMode::Offline, &tpm_only);
        assert_eq!(offline.len(), 1, "{offline:?}");
        assert_eq!(offline[0].code, "tpm_state");
        assert!(offline[0].remedy.contains("move it live"), "{offline:?}");
        assert!(vm_blockers("vm1", &src, MigrationMode::Live, &tpm_only).is_empty());
        let all = facts(SHAPES).unwrap();
        let codes = |mode| -> Vec<String> {
            vm_blockers("vm1", &src, mode, &all)
                .into_iter()
                .map(|f| f.code)
                .collect()
        };
        let offline = codes(MigrationMode::Offline);
        for c in ["host_device", "disk_not_file", "tpm_state"] {
            assert!(
                offline.contains(&c.to_owned()),
                "{c} missing offline: {offline:?}"
            );
        }
        let live = codes(MigrationMode::Live);
        assert!(!live.contains(&"tpm_state".to_owned()), "{live:?}");
        for c in ["host_device", "disk_not_file"] {
            assert!(live.contains(&c.to_owned()), "{c} missing live: {live:?}");
        }
        for mode in [offline, live] {
            assert!(!mode.contains(&"uefi_nvram".to_owned()), "{mode:?}");
        }
        let on_network = facts(&SHAPES.replace(
            "<nvram>/var/lib/libvirt/qemu/nvram/vm1_VARS.fd</nvram>",
            "<nvram type='network'><source protocol='iscsi' name='iqn.x/1'/></nvram>",
        ))
        .unwrap();
        assert_eq!(on_network.nvram_type.as_deref(), Some("network"));
        for mode in [MigrationMode::Live, MigrationMode::Offline] {
            let found = vm_blockers("vm1", &src, mode, &on_network);
            assert!(
                found
                    .iter()
                    .any(|f| f.code == "uefi_nvram" && f.message.contains("network")),
                "{mode:?}: {found:?}"
            );
        }
    }

    #[test]
    fn facts_refuse_broken_xml() {
        assert!(facts("<domain><devices>").is_err());
    }
}
