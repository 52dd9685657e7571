#!/usr/bin/env bash
# Creates a test VM on a lab host. Usage:
#   lab/mkvm.sh HOST NAME [--mem MiB] [--disks N] [--size MiB] [--fill MiB] [--backing] [--off]
#                         [--dir DIR] [--linux] [--uuid UUID]
#   --disks N    N qcow2 disks (default 1), each --size MiB virtual (default 64; or a list: 64,32)
#   --fill MiB   writes a per-disk byte pattern over the first MiB of each disk (checksums mean something)
#   --backing    each disk is a qcow2 overlay on a base image (an external-snapshot chain of 2)
#   --off        defined but not started
#   --dir DIR    where the disks go as the host sees it (default /var/lib/libvirt/images, the pool)
#   --linux      a real Linux guest (Debian cloud kernel + busybox initramfs, 128 MiB) that writes an
#                increasing counter to sector 0 of its first disk every second (see lab/guest/)
# Without --linux the VM has no OS: SeaBIOS idles (TCG, 64 MiB). Prints the domain UUID.
source "$(dirname "$0")/common.sh"
need_root

[ $# -ge 2 ] || die "usage: mkvm.sh HOST NAME [options]"
h="$1"; name="$2"; shift 2
mem=64; disks=1; size_list=64; fill=0; backing=0; off=0; dir=/var/lib/libvirt/images; linux=0; uuid=""
while [ $# -gt 0 ]; do
  case "$1" in
    --mem) mem="$2"; shift 2 ;;
    --disks) disks="$2"; shift 2 ;;
    --size) size_list="$2"; shift 2 ;;
    --fill) fill="$2"; shift 2 ;;
    --backing) backing=1; shift ;;
    --off) off=1; shift ;;
    --dir) dir="$2"; shift 2 ;;
    --linux) linux=1; shift ;;
    --uuid) uuid="$2"; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
[ -n "$(libvirtd_pid "$h")" ] || die "$h is not up (run lab/up.sh)"
if vsh "$h" dominfo "$name" >/dev/null 2>&1; then die "$name already exists on $h"; fi
[ -n "$uuid" ] || uuid="$(cat /proc/sys/kernel/random/uuid)"

outside="$(host_path "$h" "$dir")"
mkdir -p "$outside"
disk_xml=""
kernel_xml=""
if [ "$linux" = 1 ]; then
  "$LAB_SCRIPTS/guest/build.sh" >&2
  [ "$mem" -ge 128 ] || mem=128
  # On every host: QEMU on a migration's destination opens the kernel at the same path.
  for gh in $HOSTS; do
    gdir="$(host_path "$gh" /var/lib/libvirt/guest)"
    mkdir -p "$gdir"
    cp -u "$LAB/guest/vmlinuz" "$LAB/guest/initrd.img" "$gdir/"
  done
  kernel_xml="<kernel>/var/lib/libvirt/guest/vmlinuz</kernel><initrd>/var/lib/libvirt/guest/initrd.img</initrd><cmdline>console=ttyS0 panic=-1 quiet</cmdline>"
fi
for i in $(seq 0 $((disks - 1))); do
  dev="vd$(printf "\\x$(printf %x $((97 + i)))")"
  top="$dir/$name-$i.qcow2"
  IFS=, read -r -a sizes <<<"$size_list"
  size="${sizes[$i]:-${sizes[-1]}}"
  [ -e "$(host_path "$h" "$top")" ] && die "$top already exists on $h"
  if [ "$backing" = 1 ]; then
    base="$dir/$name-$i-base.qcow2"
    qemu-img create -q -f qcow2 "$(host_path "$h" "$base")" "${size}M"
    if [ "$fill" -gt 0 ]; then
      qemu-io -f qcow2 -c "write -P $((0x30 + i)) 0 $((fill / 2 > 0 ? fill / 2 : 1))M" "$(host_path "$h" "$base")" >/dev/null
    fi
    # The overlay names its backing file by the path the HOST sees.
    qemu-img create -q -f qcow2 -b "$base" -F qcow2 -u "$(host_path "$h" "$top")" "${size}M"
    if [ "$fill" -gt 0 ]; then
      # Writes half through the overlay (so the chain matters to the guest's view).
      ( cd "$(host_path "$h" "$dir")" && qemu-img rebase -q -u -b "$name-$i-base.qcow2" -F qcow2 "$name-$i.qcow2" &&
        qemu-io -f qcow2 -c "write -P $((0x60 + i)) $((fill / 2))M $((fill - fill / 2 > 0 ? fill - fill / 2 : 1))M" "$name-$i.qcow2" >/dev/null &&
        qemu-img rebase -q -u -b "$base" -F qcow2 "$name-$i.qcow2" )
    fi
  else
    qemu-img create -q -f qcow2 "$(host_path "$h" "$top")" "${size}M"
    if [ "$fill" -gt 0 ]; then
      qemu-io -f qcow2 -c "write -P $((0x41 + i)) 0 ${fill}M" "$(host_path "$h" "$top")" >/dev/null
    fi
  fi
  disk_xml+="<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$top'/><target dev='$dev' bus='virtio'/></disk>"
done

xml="$(mktemp)"; trap 'rm -f "$xml"' EXIT
cat >"$xml" <<XML
<domain type='qemu'>
  <name>$name</name>
  <uuid>$uuid</uuid>
  <memory unit='MiB'>$mem</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>$kernel_xml<boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    $disk_xml
    <serial type='file'><source path='/var/log/libvirt/qemu/$name-serial0.log'/><target port='0'/></serial>
    <console type='file'><source path='/var/log/libvirt/qemu/$name-serial0.log'/><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
</domain>
XML
vsh "$h" define "$xml" >/dev/null
vsh "$h" pool-refresh images >/dev/null 2>&1 || true
[ "$off" = 1 ] || vsh "$h" start "$name" >/dev/null
printf '%s\n' "$uuid"
