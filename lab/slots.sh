#!/usr/bin/env bash
# Slot limits on real hosts: with max_migrations = 2 on both hosts and a FOREIGN migration
# started by `virsh migrate` (slow: bandwidth-capped), `vmove migrate 'slot-*' --to hostB` must
# run at most 1 of its own migrations at a time until the foreign one ends, then 2. Samples both
# hosts every 0.5 s and asserts on the samples. Exit 0 = held.
source "$(dirname "$0")/common.sh"
need_root
ROOT="$(cd "$LAB_SCRIPTS/.." && pwd)"
"$LAB_SCRIPTS/up.sh"

for h in $HOSTS; do
  for d in $(vsh "$h" list --all --name 2>/dev/null | grep -E '^(slot-|foreign-)' || true); do
    vsh "$h" destroy "$d" >/dev/null 2>&1 || true; vsh "$h" undefine "$d" >/dev/null 2>&1 || true
  done
  rm -f "$(host_dir "$h")"/lib/images/slot-* "$(host_dir "$h")"/lib/images/foreign-* "$(host_dir "$h")"/log/qemu/slot-* "$(host_dir "$h")"/log/qemu/foreign-*
  vsh "$h" pool-refresh images >/dev/null
done
"$LAB_SCRIPTS/mkvm.sh" hostA foreign-1 --size 256 --fill 192 >/dev/null
for i in 1 2 3 4; do "$LAB_SCRIPTS/mkvm.sh" hostA "slot-$i" --size 64 --fill 48 >/dev/null; done

cfg="$LAB/slots.toml"
# Its own journal, in the lab folder (never the user's under $HOME).
rm -f "$LAB"/slots-journal.db*
cat >"$cfg" <<TOML
[defaults]
journal = "$LAB/slots-journal.db"
recheck_interval = "2s"
poll_interval = "5s"
[hosts.hostA]
driver = "libvirt"
uri = "$(host_uri hostA)"
max_migrations = 2
bandwidth_mib_s = 8
[hosts.hostB]
driver = "libvirt"
uri = "$(host_uri hostB)"
max_migrations = 2
TOML
vmove="${VMOVE_BIN:-}"
if [ -z "$vmove" ]; then
  (cd "$ROOT" && cargo build --release -p vmove >&2)
  vmove="${CARGO_TARGET_DIR:-$ROOT/target}/release/vmove"
fi

samples="$LAB/slots-samples.txt"; : >"$samples"
sampler() {
  while true; do
    local ours=0 foreign=0
    for d in $(vsh hostA list --name 2>/dev/null); do
      local j; j="$(vsh hostA domjobinfo "$d" 2>/dev/null || true)"
      if [[ "$j" == *"Outgoing migration"* ]]; then
        case "$d" in foreign-*) foreign=$((foreign + 1)) ;; *) ours=$((ours + 1)) ;; esac
      fi
    done
    local incoming; incoming="$(vsh hostB list --state-paused --name 2>/dev/null | grep -c . || true)"
    echo "$(date +%s.%N | cut -c1-14) ours=$ours foreign=$foreign incoming_on_B=$incoming" >>"$samples"
    sleep 0.5
  done
}
sampler &
sampler_pid=$!
trap 'kill "$sampler_pid" 2>/dev/null || true' EXIT

log "foreign migration (virsh, 4 MiB/s) of foreign-1"
virsh -q -c "$(host_uri hostA)" migrate --live --copy-storage-all --persistent --undefinesource \
  --bandwidth 4 foreign-1 "$(host_uri hostB)" &
foreign_pid=$!
sleep 3
log "vmove migrate 'slot-*' --to hostB"
set +e
"$vmove" --config "$cfg" --plain migrate 'slot-*' --from hostA --to hostB
rc=$?
set -e
wait "$foreign_pid" || log "the foreign migration failed"
kill "$sampler_pid" 2>/dev/null || true
trap - EXIT

max_with_foreign="$(awk '/foreign=1/ {split($2,a,"="); if (a[2]>m) m=a[2]} END {print m+0}' "$samples")"
max_without="$(awk '/foreign=0/ {split($2,a,"="); if (a[2]>m) m=a[2]} END {print m+0}' "$samples")"
n_with="$(grep -c 'foreign=1' "$samples" || true)"
echo "samples: $(wc -l <"$samples") ($n_with during the foreign migration); max own migrations at once: $max_with_foreign while the foreign one ran, $max_without otherwise; vmove exit $rc"
fail=0
[ "$n_with" -gt 0 ] || { echo "FAIL: no sample saw the foreign migration"; fail=1; }
[ "$max_with_foreign" -le 1 ] || { echo "FAIL: $max_with_foreign own migrations ran beside the foreign one (limit 2)"; fail=1; }
[ "$max_without" -le 2 ] || { echo "FAIL: $max_without own migrations at once (limit 2)"; fail=1; }
[ "$rc" = 0 ] || { echo "FAIL: vmove exited $rc"; fail=1; }
[ "$fail" = 0 ] && echo "SLOTS HELD"
exit "$fail"
