#!/usr/bin/env bash
# Installs what the vmove lab needs (Debian 12): libvirt's monolithic daemon with the QEMU driver,
# QEMU, qemu-img, the libvirt development files (to build the driver) and the libvirt-qemu
# user/group the QEMU driver looks up, sqlite3 (lab/crash.sh, stall-*.sh and bench.sh read
# vmove's journal with it) and tini (each lab libvirtd runs under it, as the reaper of its QEMUs:
# see lab/up.sh). Idempotent; does nothing slow when all is present.
#
# Not installed on purpose: libvirt-daemon-system (pulls in and upgrades systemd, iptables...).
# qemu-utils is pinned to bookworm: a newer backport conflicts with qemu-system 7.2 and apt would
# silently remove qemu-img.
source "$(dirname "$0")/common.sh"
need_root

# swtpm: libvirt refuses to define a VM with an emulated TPM without it (the catalogue's TPM shape).
# ovmf: the UEFI firmware (and its variables' template) the catalogue's running UEFI VMs boot.
PKGS=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 libvirt-dev pkgconf qemu-utils sqlite3 tini swtpm swtpm-tools ovmf)
missing=()
for p in "${PKGS[@]}"; do
  st="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
  if [ "$st" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
# qemu-img vanishes when apt "fixes" the qemu-utils conflict: check the binaries too.
for b in /usr/bin/swtpm /usr/bin/tini /usr/sbin/libvirtd /usr/bin/virsh /usr/bin/qemu-system-x86_64 /usr/bin/qemu-img /usr/bin/qemu-io; do
  [ -x "$b" ] || missing+=("(binary $b)")
done
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || missing+=("(firmware /usr/share/OVMF/OVMF_CODE_4M.fd)")

if [ "${#missing[@]}" -gt 0 ]; then
  log "installing (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends --allow-downgrades \
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 libvirt-dev pkgconf \
    qemu-utils/bookworm sqlite3 tini swtpm swtpm-tools ovmf >/dev/null
else
  log "packages present"
fi

getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
getent passwd libvirt-qemu >/dev/null || \
  useradd --system --gid libvirt-qemu --home-dir /var/lib/libvirt --no-create-home \
    --shell /usr/sbin/nologin libvirt-qemu
for b in /usr/bin/tini /usr/sbin/libvirtd /usr/bin/virsh /usr/bin/qemu-img /usr/bin/qemu-system-x86_64; do
  [ -x "$b" ] || die "$b is missing after install"
done
log "install ok: $(/usr/sbin/libvirtd --version), $(qemu-system-x86_64 --version | head -1)"
