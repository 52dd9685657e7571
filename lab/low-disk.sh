#!/usr/bin/env bash
# lab/up.sh with less free disk under the lab's folder than its floor: it must refuse at once,
# name the folder and what is free, and leave a lab that is already up as it was (its hosts still
# answer). Run on the up lab with a floor no disk meets (VMOVE_LAB_MIN_FREE_MIB). Exit 0 = held.
source "$(dirname "$0")/common.sh"
need_root
"$LAB_SCRIPTS/up.sh"
before="$(for h in $HOSTS; do libvirtd_pid "$h"; done)"
if out="$(VMOVE_LAB_MIN_FREE_MIB=$((1 << 40)) "$LAB_SCRIPTS/up.sh" 2>&1)"; then
  die "up.sh went on with a free-space floor of 1 EiB: $out"
fi
grep -q "MiB free under $LAB; the lab needs at least $((1 << 40)) MiB" <<<"$out" \
  || die "up.sh refused without naming the folder and the free space: $out"
after="$(for h in $HOSTS; do libvirtd_pid "$h"; done)"
[ "$before" = "$after" ] || die "the refused up.sh changed the lab's daemons ($before -> $after)"
for h in $HOSTS; do
  vsh "$h" version >/dev/null || die "$h no longer answers after the refused up.sh"
done
log "low-disk ok: up.sh refused ($(grep -o 'only [0-9]* MiB free' <<<"$out")), the lab untouched"
