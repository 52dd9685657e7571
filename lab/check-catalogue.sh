#!/usr/bin/env bash
# `vmove check` on the lab's catalogue of VM shapes (issue 15): builds the shapes on hostA, runs
# `vmove check migrate ... --to hostB` (text, then --json), asserts the exit code (2: some cannot
# move) and each shape's verdict, and removes the shapes. Twice: with the hosts' default mode and
# with `p2p = true` (every mode a user can choose). Needs the lab up (lab/up.sh) and VMOVE_BIN
# (default: target/debug/vmove). Writes only under the lab's folder.
source "$(dirname "$0")/common.sh"
ROOT="$(cd "$LAB_SCRIPTS/.." && pwd)"
VMOVE_BIN="${VMOVE_BIN:-$ROOT/target/debug/vmove}"
[ -x "$VMOVE_BIN" ] || die "no vmove binary at $VMOVE_BIN (build it, or set VMOVE_BIN)"
config() { # FILE P2P
  cat > "$1" <<TOML
[defaults]
journal = "$LAB/check-catalogue-journal.db"
[hosts.hostA]
driver = "libvirt"
uri = "$(host_uri hostA)"
p2p = $2
[hosts.hostB]
driver = "libvirt"
uri = "$(host_uri hostB)"
p2p = $2
TOML
}
shapes=(chk-plain chk-msave chk-snap chk-cdrom chk-hostdev chk-block chk-uefi chk-uefirun chk-uefinet chk-tpm chk-tpmrun chk-pg chk-br)
cleanup() {
  for n in "${shapes[@]}"; do
    vsh hostA managedsave-remove "$n" >/dev/null 2>&1 || true
    vsh hostA snapshot-delete "$n" s1 --metadata >/dev/null 2>&1 || true
    vsh hostA destroy "$n" >/dev/null 2>&1 || true
    vsh hostA undefine "$n" --remove-all-storage --nvram >/dev/null 2>&1 || true
  done
  for h in hostA hostB; do
    vsh "$h" net-destroy chk-pgnet >/dev/null 2>&1 || true
    vsh "$h" net-undefine chk-pgnet >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
cleanup
add_devices() { # NAME XML: appends devices to a shut-off VM's definition
  local f="$LAB/$1.xml"
  vsh hostA dumpxml "$1" | sed "s#</devices>#$2</devices>#" > "$f"
  vsh hostA define "$f" >/dev/null; rm -f "$f"
}
"$LAB_SCRIPTS/mkvm.sh" hostA chk-plain --size 16 >/dev/null
"$LAB_SCRIPTS/mkvm.sh" hostA chk-msave --size 16 >/dev/null
vsh hostA managedsave chk-msave >/dev/null
"$LAB_SCRIPTS/mkvm.sh" hostA chk-snap --size 16 --off >/dev/null
vsh hostA snapshot-create-as chk-snap s1 >/dev/null
"$LAB_SCRIPTS/mkvm.sh" hostA chk-cdrom --size 16 --off >/dev/null
add_devices chk-cdrom "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='/var/lib/libvirt/images/chk-cdrom-install.iso'/><target dev='sda' bus='sata'/><readonly/></disk>"
"$LAB_SCRIPTS/mkvm.sh" hostA chk-hostdev --size 16 --off >/dev/null
add_devices chk-hostdev "<hostdev mode='subsystem' type='usb' managed='no'><source><vendor id='0x1d6b'/><product id='0x0002'/></source></hostdev>"
"$LAB_SCRIPTS/mkvm.sh" hostA chk-block --size 16 --off >/dev/null
add_devices chk-block "<disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/null'/><target dev='vdz' bus='virtio'/></disk>"
# UEFI with its NVRAM file, shut off: an offline move copies the file with the disks, so it can
# move (UEFI needs <acpi/>, else "UEFI requires ACPI on this architecture").
"$LAB_SCRIPTS/mkvm.sh" hostA chk-uefi --size 16 --off >/dev/null
head -c 131072 /dev/zero > "$(host_dir hostA)/lib/qemu/nvram/chk-uefi_VARS.fd"
vsh hostA dumpxml chk-uefi | sed "s#</os>#<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader><nvram>/var/lib/libvirt/qemu/nvram/chk-uefi_VARS.fd</nvram></os><features><acpi/></features>#" > "$LAB/chk-uefi.xml"
vsh hostA define "$LAB/chk-uefi.xml" >/dev/null; rm -f "$LAB/chk-uefi.xml"
# The same, running (OVMF, lab/install.sh): a live move carries its NVRAM, so it can move.
"$LAB_SCRIPTS/mkvm.sh" hostA chk-uefirun --size 16 --off >/dev/null
vsh hostA dumpxml chk-uefirun | sed "s#</os>#<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader><nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/chk-uefirun_VARS.fd</nvram></os><features><acpi/></features>#" > "$LAB/chk-uefirun.xml"
vsh hostA define "$LAB/chk-uefirun.xml" >/dev/null; rm -f "$LAB/chk-uefirun.xml"
vsh hostA start chk-uefirun >/dev/null
# UEFI with its NVRAM on a network device, not a file: vmove cannot carry it (uefi_nvram).
"$LAB_SCRIPTS/mkvm.sh" hostA chk-uefinet --size 16 --off >/dev/null
vsh hostA dumpxml chk-uefinet | sed "s#</os>#<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader><nvram type='network'><source protocol='iscsi' name='iqn.2013-07.com.example:iscsi-nopool/1'><host name='127.0.0.1' port='3260'/></source></nvram></os><features><acpi/></features>#" > "$LAB/chk-uefinet.xml"
vsh hostA define "$LAB/chk-uefinet.xml" >/dev/null; rm -f "$LAB/chk-uefinet.xml"
# An emulated TPM 2.0 (libvirt defines it only with swtpm installed: lab/install.sh).
"$LAB_SCRIPTS/mkvm.sh" hostA chk-tpm --size 16 --off >/dev/null
add_devices chk-tpm "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>"
# The same, running: a live move carries the TPM's state (QEMU's migration stream), so it can move.
"$LAB_SCRIPTS/mkvm.sh" hostA chk-tpmrun --size 16 --off >/dev/null
add_devices chk-tpmrun "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>"
vsh hostA start chk-tpmrun >/dev/null
# A port group the destination's network lacks. The network, of the same name on both hosts,
# forwards to a host bridge that does not exist: starting it creates nothing on the machine.
for h in hostA hostB; do
  pg=$([ "$h" = hostA ] && echo tenant-42 || echo tenant-7)
  echo "<network><name>chk-pgnet</name><forward mode='bridge'/><bridge name='vmvchknone'/><portgroup name='$pg'/></network>" > "$LAB/chk-pgnet.xml"
  vsh "$h" net-define "$LAB/chk-pgnet.xml" >/dev/null; rm -f "$LAB/chk-pgnet.xml"
  vsh "$h" net-start chk-pgnet >/dev/null
done
"$LAB_SCRIPTS/mkvm.sh" hostA chk-pg --size 16 --off >/dev/null
add_devices chk-pg "<interface type='network'><source network='chk-pgnet' portgroup='tenant-42'/><model type='virtio'/></interface>"
# A host bridge the destination lacks.
"$LAB_SCRIPTS/mkvm.sh" hostA chk-br --size 16 --off >/dev/null
add_devices chk-br "<interface type='bridge'><source bridge='vmvchknobr'/><model type='virtio'/></interface>"

for mode in default p2p; do
  cfg="$LAB/check-catalogue-$mode.toml"
  config "$cfg" "$([ "$mode" = p2p ] && echo true || echo false)"
  out="$LAB/check-catalogue-$mode"
  log "vmove check migrate ${shapes[*]/#/hostA:} --to hostB ($mode)"
  set +e
  VMOVE_CONFIG="$cfg" "$VMOVE_BIN" check migrate "${shapes[@]/#/hostA:}" --to hostB > "$out.txt"
  rc=$?
  VMOVE_CONFIG="$cfg" "$VMOVE_BIN" check migrate "${shapes[@]/#/hostA:}" --to hostB --json > "$out.json"
  rc_json=$?
  set -e
  cat "$out.txt"
  [ "$rc" = 2 ] && [ "$rc_json" = 2 ] || die "vmove check ($mode) exited $rc / $rc_json, not 2"
  for code in managed_save snapshots media_missing host_device disk_not_file uefi_nvram tpm_state portgroup_missing bridge_missing; do
    grep -q "$code" "$out.txt" || die "no $code finding in the output ($mode)"
  done
  python3 - "$out.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
can = {v["name"]: v["can_move"] for v in doc["vms"]}
want = {"chk-plain": True, "chk-msave": False, "chk-snap": False, "chk-cdrom": False,
        "chk-hostdev": False, "chk-block": False, "chk-uefi": True, "chk-uefirun": True,
        "chk-uefinet": False, "chk-tpm": False, "chk-tpmrun": True,
        "chk-pg": False, "chk-br": False}
assert can == want, f"verdicts {can} != {want}"
# None of these shapes waits for something that may pass: each refusal is for good.
assert doc["summary"]["not_now"] == 0, doc["summary"]
PY
done
# Nothing moved: every shape is still on hostA only.
for n in "${shapes[@]}"; do
  vsh hostA dominfo "$n" >/dev/null || die "$n left hostA"
  ! vsh hostB dominfo "$n" >/dev/null 2>&1 || die "$n is defined on hostB"
done
log "CHECK-CATALOGUE PASSED"
