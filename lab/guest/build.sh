#!/usr/bin/env bash
# Builds the lab's real Linux guest once (cached in $VMOVE_LAB_DIR/guest): the Debian cloud
# kernel and a busybox-static initramfs whose init loads the virtio block modules and then
# writes an increasing counter to sector 0 of /dev/vda every second (with fsync), and prints it
# on the serial console ("vmove-counter N"). 128 MiB of RAM is enough; boots in ~3 s under TCG.
# Packages are fetched with `apt-get download` (not installed).
source "$(dirname "$0")/../common.sh"
need_root
out="$LAB/guest"
[ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && exit 0
mkdir -p "$out"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cd "$work"
log "fetching the Debian cloud kernel and busybox-static (apt-get download)"
kpkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
[ -n "$kpkg" ] || { apt-get update -qq; kpkg="$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"; }
[ -n "$kpkg" ] || die "no linux-image-*-cloud-amd64 package found"
apt-get download -qq "$kpkg" busybox-static >/dev/null
dpkg-deb -x "$(ls ./linux-image-*.deb | head -1)" k
dpkg-deb -x "$(ls ./busybox-static_*.deb | head -1)" bb
kver="$(ls k/lib/modules | head -1)"
root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,mod}
cp bb/bin/busybox "$root/bin/busybox"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
  f="$(find "k/lib/modules/$kver" -name "$m.ko*" | head -1)"
  [ -n "$f" ] || die "module $m not in $kpkg"
  case "$f" in
    *.xz) xz -dc "$f" >"$root/mod/$m.ko" ;;
    *.zst) zstd -qdc "$f" >"$root/mod/$m.ko" ;;
    *) cp "$f" "$root/mod/$m.ko" ;;
  esac
done
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
  insmod /mod/$m.ko 2>/dev/null
done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
echo "vmove-guest up"
n=0
while true; do
  n=$((n+1))
  printf 'vmove-counter %012d\n' $n | dd of=/dev/vda bs=512 count=1 conv=sync,notrunc,fsync 2>/dev/null
  echo "vmove-counter $n"
  sleep 1
done
INIT
chmod +x "$root/init"
(cd "$root" && find . | "$root/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1) >"$out/initrd.img"
cp "$(ls k/boot/vmlinuz-* | head -1)" "$out/vmlinuz"
log "guest built: kernel $kver"
