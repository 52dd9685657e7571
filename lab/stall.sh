#!/usr/bin/env bash
# Stall watchdog on real hosts: freezes the destination's end of a migration (SIGSTOP to the
# incoming QEMU on hostB, by its pid file: the data path stops as if the link were cut; this
# kernel has no netem to drop packets) while `vmove migrate` copies a slow VM's disk, checks that
# vmove gives up on the stalled attempt within its stall timeout (a line of its output says so)
# while the VM keeps running on hostA, thaws it, and checks the retry succeeds (VM running on
# hostB, checksum equal). The process is thawed on every exit.
source "$(dirname "$0")/common.sh"
need_root
ROOT="$(cd "$LAB_SCRIPTS/.." && pwd)"
STALL=15
"$LAB_SCRIPTS/up.sh"

for h in $HOSTS; do
  vsh "$h" destroy stall-1 >/dev/null 2>&1 || true; vsh "$h" undefine stall-1 >/dev/null 2>&1 || true
  rm -f "$(host_dir "$h")"/lib/images/stall-1* "$(host_dir "$h")"/log/qemu/stall-1*
  vsh "$h" pool-refresh images >/dev/null
done
"$LAB_SCRIPTS/mkvm.sh" hostA stall-1 --size 512 --fill 384 >/dev/null
sum_before="$("$LAB_SCRIPTS/checksum.sh" hostA /var/lib/libvirt/images/stall-1-0.qcow2)"

cfg="$LAB/stall.toml"
# Its own journal, in the lab folder (never the user's under $HOME).
rm -f "$LAB"/stall-journal.db*
cat >"$cfg" <<TOML
[defaults]
journal = "$LAB/stall-journal.db"
stall_timeout = "${STALL}s"
progress_interval = "2s"
max_attempts = 3
backoff_initial = "5s"
[hosts.hostA]
driver = "libvirt"
uri = "$(host_uri hostA)"
bandwidth_mib_s = 16
[hosts.hostB]
driver = "libvirt"
uri = "$(host_uri hostB)"
TOML
vmove="${VMOVE_BIN:-}"
if [ -z "$vmove" ]; then
  (cd "$ROOT" && cargo build --release -p vmove >&2)
  vmove="${CARGO_TARGET_DIR:-$ROOT/target}/release/vmove"
fi

cut=0
frozen=""
uncut() {
  if [ "$cut" = 1 ]; then
    [ -n "$frozen" ] && kill -CONT "$frozen" 2>/dev/null || true
    cut=0; log "destination QEMU (pid $frozen) thawed"
  fi
}
trap uncut EXIT
out="$LAB/stall-out.txt"; : >"$out"
( "$vmove" --config "$cfg" --plain migrate stall-1 --from hostA --to hostB 2>&1; echo "vmove-exit $?" ) |
  while IFS= read -r l; do echo "$(date +%s) $l"; done >>"$out" &
runner=$!

# Wait until the disk copy runs, then cut the link.
for _ in $(seq 1 120); do
  j="$(vsh hostA domjobinfo stall-1 2>/dev/null || true)"
  [[ "$j" == *"Outgoing migration"* ]] && break
  sleep 0.5
done
sleep 4
frozen="$(cat "$(host_dir hostB)/run/qemu/stall-1.pid" 2>/dev/null || true)"
[ -n "$frozen" ] && grep -q qemu "/proc/$frozen/comm" || die "no incoming QEMU for stall-1 on hostB"
kill -STOP "$frozen"
cut=1; t_cut=$(date +%s)
log "destination QEMU (pid $frozen) frozen at $t_cut"
# Keep it cut for the stall timeout plus margin, watching the source.
running_on_a=1
for _ in $(seq 1 $(( (STALL + 20) * 2 ))); do
  [ "$(vsh hostA domstate stall-1 2>/dev/null || echo absent)" = running ] || running_on_a=0
  sleep 0.5
done
uncut
t_restore=$(date +%s)
wait "$runner" || true
cat "$out"

fail=0
t_stall="$(grep -iE 'watchdog|abort' "$out" | head -1 | cut -d' ' -f1)"
if [ -n "$t_stall" ] && [ "$t_stall" -le $(( t_cut + STALL + 10 )) ]; then
  echo "ok   vmove acted on the stall $(( t_stall - t_cut )) s after the cut (stall timeout ${STALL} s)"
else
  echo "FAIL vmove did not report a stall/abort within $(( STALL + 10 )) s of the cut"; fail=1
fi
[ "$running_on_a" = 1 ] && echo "ok   the VM kept running on hostA while the link was cut" || { echo "FAIL the VM stopped running on hostA"; fail=1; }
[ "$(vsh hostB domstate stall-1 2>/dev/null)" = running ] && echo "ok   the retry moved it: running on hostB" || { echo "FAIL not running on hostB"; fail=1; }
[ "$(vsh hostA domstate stall-1 2>/dev/null || echo absent)" = absent ] && echo "ok   gone from hostA" || { echo "FAIL still on hostA"; fail=1; }
[ "$("$LAB_SCRIPTS/checksum.sh" hostB /var/lib/libvirt/images/stall-1-0.qcow2)" = "$sum_before" ] && echo "ok   checksum equal" || { echo "FAIL checksum differs"; fail=1; }
echo "cut at $t_cut, restored at $t_restore"
exit "$fail"
