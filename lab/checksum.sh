#!/usr/bin/env bash
# Prints the sha256 of what the guest sees on a disk image of a lab host (the whole backing
# chain, flattened to raw), so a disk can be compared before and after a move whatever its
# format and chain. Usage: lab/checksum.sh HOST PATH-AS-THE-HOST-SEES-IT
# Runs qemu-img inside the host's mount namespace (backing paths are the host's), with -U
# (force share) so it also works while the VM runs.
source "$(dirname "$0")/common.sh"
need_root
[ $# -eq 2 ] || die "usage: checksum.sh HOST PATH"
pid="$(libvirtd_pid "$1")"
[ -n "$pid" ] || die "$1 is not up"
tmp="$(mktemp /tmp/vmove-ck.XXXXXX)"
trap 'rm -f "$tmp"' EXIT
nsenter -t "$pid" -m -- qemu-img convert -U -O raw "$2" "$tmp"
sha256sum "$tmp" | cut -d' ' -f1
