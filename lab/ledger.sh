#!/usr/bin/env bash
# The cross-process slot ledger on real hosts (issue #18): two `vmove migrate` processes started
# in the same second, each moving 3 VMs of its own from hostA to hostB, both hosts limited to
# max_migrations = 2, one journal shared by both (an SQLite file in the lab folder: the ledger
# is the same on PostgreSQL). Each process alone would see 2 free slots and start 2; together,
# without the ledger, 4 would run. Samples hostA's outgoing migration jobs and hostB's incoming
# domains every 0.3 s and asserts that no sample shows more than 2, and that every VM moved.
#   VMOVE_BIN=path   the vmove binary (else built with cargo, release)
#   VMOVE_LEDGER_OFF=1  run both with --no-journal (no ledger): shows the check can fail
source "$(dirname "$0")/common.sh"
need_root
ROOT="$(cd "$LAB_SCRIPTS/.." && pwd)"
"$LAB_SCRIPTS/up.sh"

for h in $HOSTS; do
  for d in $(vsh "$h" list --all --name 2>/dev/null | grep -E '^led[AB]-' || true); do
    vsh "$h" destroy "$d" >/dev/null 2>&1 || true; vsh "$h" undefine "$d" >/dev/null 2>&1 || true
  done
  rm -f "$(host_dir "$h")"/lib/images/led[AB]-* "$(host_dir "$h")"/log/qemu/led[AB]-*
  vsh "$h" pool-refresh images >/dev/null
done
for p in A B; do
  for i in 1 2 3; do "$LAB_SCRIPTS/mkvm.sh" hostA "led$p-$i" --size 64 --fill 48 >/dev/null; done
done

cfg="$LAB/ledger.toml"
# Its own journal, in the lab folder (never the user's under $HOME).
rm -f "$LAB"/ledger-journal.db*
cat >"$cfg" <<TOML
[defaults]
journal = "$LAB/ledger-journal.db"
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

samples="$LAB/ledger-samples.txt"; : >"$samples"
sampler() {
  while true; do
    local out=0
    for d in $(vsh hostA list --name 2>/dev/null | grep -E '^led[AB]-' || true); do
      local j; j="$(vsh hostA domjobinfo "$d" 2>/dev/null || true)"
      [[ "$j" == *"Outgoing migration"* ]] && out=$((out + 1))
    done
    local incoming; incoming="$(vsh hostB list --state-paused --name 2>/dev/null | grep -cE '^led[AB]-' || true)"
    echo "$(date +%s.%N | cut -c1-14) outgoing_on_A=$out incoming_on_B=$incoming" >>"$samples"
    sleep 0.3
  done
}
sampler &
sampler_pid=$!
trap 'kill "$sampler_pid" 2>/dev/null || true' EXIT

off=()
[ "${VMOVE_LEDGER_OFF:-}" = 1 ] && off=(--no-journal)
log "two vmove processes at once: ledA-1..3 and ledB-1..3 to hostB ${off[*]}"
set +e
"$vmove" --config "$cfg" --plain "${off[@]}" migrate ledA-1 ledA-2 ledA-3 --from hostA --to hostB >"$LAB/ledger-A.out" 2>&1 &
pa=$!
"$vmove" --config "$cfg" --plain "${off[@]}" migrate ledB-1 ledB-2 ledB-3 --from hostA --to hostB >"$LAB/ledger-B.out" 2>&1 &
pb=$!
wait "$pa"; rca=$?
wait "$pb"; rcb=$?
set -e
kill "$sampler_pid" 2>/dev/null || true
trap - EXIT

max_out="$(awk '{split($2,a,"="); if (a[2]>m) m=a[2]} END {print m+0}' "$samples")"
max_in="$(awk '{split($3,a,"="); if (a[2]>m) m=a[2]} END {print m+0}' "$samples")"
on_b="$(vsh hostB list --all --name | grep -cE '^led[AB]-' || true)"
echo "samples: $(wc -l <"$samples"); most migrations at once: $max_out outgoing on hostA, $max_in incoming on hostB (limit 2); VMs on hostB: $on_b of 6; vmove exits $rca $rcb"
fail=0
[ "$max_out" -le 2 ] || { echo "FAIL: $max_out migrations at once on hostA (limit 2)"; fail=1; }
[ "$max_in" -le 2 ] || { echo "FAIL: $max_in migrations at once into hostB (limit 2)"; fail=1; }
[ "$max_out" -ge 1 ] || { echo "FAIL: no sample saw a migration"; fail=1; }
[ "$on_b" = 6 ] || { echo "FAIL: $on_b of 6 VMs on hostB"; fail=1; }
[ "$rca" = 0 ] && [ "$rcb" = 0 ] || { echo "FAIL: vmove exited $rca and $rcb"; cat "$LAB/ledger-A.out" "$LAB/ledger-B.out"; fail=1; }
[ "$fail" = 0 ] && echo "LEDGER HELD"
exit "$fail"
