#!/usr/bin/env bash
# Stall watchdog on a really cut link (issue 3): two libvirt hosts in network namespaces of their
# own (lab/common.sh, VMOVE_LAB_NET=netns). While `vmove migrate` copies a slow VM's disk from
# the first host to the second, the second host's link is cut (`ip link set vmv-<host> down`:
# its libvirtd, vmove's connection to it and the migration's data path all go silent, nothing
# is refused). Checks that vmove
#   - reports the stall and aborts the attempt within the stall timeout (+ slack; the delay
#     from the cut is measured and printed),
#   - leaves the VM running on the source all along and never running on the destination
#     (the destination is looked at through its libvirtd's unix socket while its link is cut),
#   - once the link is back, retries and moves it: running on the destination only, checksum of
#     the disk equal to before, nothing of it left on the source (disk, definition) nor a second
#     image on the destination.
# The link is restored on every exit.
#
# Its own lab: VMOVE_LAB_NET=netns, /var/tmp/vmove-lab-net, hostI hostJ, ports from 53000, unless
# VMOVE_LAB_NET=netns is set already (then the VMOVE_LAB_* variables given are used as they are).
#   VMOVE_BIN=...            the vmove binary (else built with cargo)
#   VMOVE_STALL_NET_KEEP=1   leave its lab up afterwards (default: lab/down.sh, which also deletes
#                            the namespaces, veths and bridge)
if [ "${VMOVE_LAB_NET:-}" != netns ]; then
  export VMOVE_LAB_NET=netns VMOVE_LAB_DIR=/var/tmp/vmove-lab-net VMOVE_LAB_HOSTS="hostI hostJ" \
    VMOVE_LAB_PORT_BASE=53000
  unset VMOVE_LAB_IP_BASE
fi
source "$(dirname "$0")/common.sh"
need_root
ROOT="$(cd "$LAB_SCRIPTS/.." && pwd)"
read -r A B _ <<<"$HOSTS"
[ -n "$B" ] || die "stall-net.sh needs two hosts in VMOVE_LAB_HOSTS"
VM=stall-net-1
IMG=/var/lib/libvirt/images/$VM-0.qcow2
STALL=15   # stall_timeout, s
SLACK=8    # progress_interval (2 s) + one poll answer + scheduling
# The watchdog counts from the last poll that saw progress: up to a progress interval (2 s) before
# the cut, and bytes already in the socket buffers still count. So it may fire a bit before
# STALL s after the cut, never much before.
STALL_MIN=12.5
# Keep the link cut this long after the watchdog fired, s. The default brings it back before the
# source QEMU's next TCP retransmission to the destination (about 25 s after the cut; they back
# off: ~51 s, ~102 s, then every 120 s), and libvirt's aborted job ends only at that
# retransmission. A longer cut (VMOVE_STALL_NET_HOLD=14) shows vmove giving up on the VM
# (unmigratable, still on the source) before the job ends: see docs/drivers/libvirt.md.
HOLD="${VMOVE_STALL_NET_HOLD:-3}"

# A host's libvirtd through its unix socket (bind mount of its run dir): answers while the
# host's network link is cut.
vsh_local() { local h="$1"; shift; virsh -q -c "qemu:///system?socket=$(host_dir "$h")/run/libvirt-sock" "$@"; }
VSH=vsh_local
source "$LAB_SCRIPTS/stall-common.sh"
state_of() { vsh_local "$1" domstate "$VM" 2>/dev/null || echo absent; }
# The first moment the source shows no migration job after the cut is when the aborted job ended
# (a retry starts only after a backoff of 5 s).
job_ended() {
  [ -z "$t_job_end" ] || return 0
  local j; j="$(vsh_local "$A" domjobinfo "$VM" 2>/dev/null || true)"
  [[ "$j" == *"Outgoing migration"* ]] || t_job_end="$(now)"
}

"$LAB_SCRIPTS/up.sh"
link="$(host_veth "$B")"

restore() {
  local f; f="$(ip -o link show "$link" 2>/dev/null || true)"
  if [ -n "$f" ] && [[ "$f" != *",UP"* ]]; then
    ip link set "$link" up && log "link $link restored"
  fi
}
finish() {
  local rc=$?
  restore
  if [ -n "${runner:-}" ] && [ -d "/proc/$runner" ]; then kill "$runner" 2>/dev/null || true; fi
  if [ "${VMOVE_STALL_NET_KEEP:-0}" != 1 ]; then "$LAB_SCRIPTS/down.sh" || true; fi
  exit "$rc"
}
trap finish EXIT

stall_fresh_vm
stall_start_vmove stall-net
# Wait until the disk copy runs, let it copy a while, then cut.
stall_wait_for_copy
ip link set "$link" down
t_cut="$(now)"
log "link $link of $B cut at $t_cut (copied so far: ${copied_before:-?})"

# Watch both hosts through their unix sockets while the link is cut: the source must keep the VM
# running, the destination must never run it. The cut lasts until vmove reported the abort
# (at most stall timeout + 60 s) plus HOLD, so the abort happens on a dead link.
running_on_a=1; running_on_b=0; states_a=""; t_abort=""; t_until=""; t_job_end=""; seen=0
deadline=$(awk -v t="$t_cut" -v s="$STALL" 'BEGIN { printf "%.3f", t + s + 60 }')
while :; do
  sa="$(state_of "$A")"; sb="$(state_of "$B")"
  job_ended
  # vmove's lines while the link is cut, as they come.
  n="$(wc -l <"$out")"
  if [ "$n" -gt "$seen" ]; then sed -n "$((seen + 1)),${n}p" "$out" | while IFS= read -r l; do log "vmove +$(secs "$t_cut" "${l%% *}") s: ${l#* }"; done; seen=$n; fi
  [[ "$states_a" == *"$sa"* ]] || states_a+="$sa;"
  [ "$sa" = running ] || running_on_a=0
  [ "$sb" != running ] || running_on_b=1
  if [ -z "$t_abort" ]; then
    l="$(grep -E 'watchdog fired|attempt [0-9]+ failed' "$out" | head -1 || true)"
    if [ -n "$l" ]; then
      t_abort="${l%% *}"
      t_until=$(awk -v t="$(now)" -v k="$HOLD" 'BEGIN { printf "%.3f", t + k }')
      log "vmove reported the stall $(secs "$t_cut" "$t_abort") s after the cut: ${l#* }"
    fi
  fi
  t="$(now)"
  if [ -n "$t_until" ]; then
    awk -v t="$t" -v u="$t_until" 'BEGIN { exit !(t >= u) }' && break
  else
    awk -v t="$t" -v u="$deadline" 'BEGIN { exit !(t >= u) }' && break
  fi
  sleep 0.5
done
job_a_at_restore="$(vsh_local "$A" domjobinfo "$VM" 2>/dev/null | sed -n 's/^Operation: *//p')"
restore
t_restore="$(now)"

# The retry: vmove ends by itself (the run is over when the VM moved or gave up).
for _ in $(seq 1 600); do
  job_ended
  [ -d "/proc/$runner" ] || break
  # Still safe while it retries: never on both.
  # The destination first, then the source: a switchover between two domstate calls (A
  # running, then B running) is a correct move; the source running after the destination was
  # seen running is two copies (a correct A -> B move never runs the source again).
  sb="$(state_of "$B")"
  [ "$sb" = running ] && [ "$(state_of "$A")" = running ] && running_on_b=2
  sleep 0.5
done
t_end="$(now)"
if [ -d "/proc/$runner" ]; then log "vmove (pid $runner) still runs after 300 s: stopping it"; kill "$runner" 2>/dev/null || true; fi
rc=0; wait "$runner" || rc=$?
runner=""
# If vmove gave up while the job still ran: when did it end?
for _ in $(seq 1 300); do job_ended; [ -z "$t_job_end" ] || break; sleep 0.5; done
sleep 0.5 # the last lines through stall_stamp
echo "$(now) vmove-exit $rc" >>"$out"
cat "$out"
echo "---"
echo "cut at $t_cut, vmove reported the stall at ${t_abort:-never}, link restored at $t_restore ($(secs "$t_cut" "$t_restore") s cut), vmove done at $t_end ($(secs "$t_restore" "$t_end") s after the restore)"
echo "source's job when the link came back: ${job_a_at_restore:-none}; source states seen during the cut: ${states_a%;}"
if [ -z "$t_job_end" ]; then
  echo "the source's aborted migration job had not ended $(secs "$t_cut" "$(now)") s after the cut"
elif awk -v a="$t_job_end" -v b="$t_restore" 'BEGIN { exit !(a < b) }'; then
  echo "the source's aborted migration job ended $(secs "$t_cut" "$t_job_end") s after the cut, while the link was still cut"
else
  echo "the source's aborted migration job ended $(secs "$t_cut" "$t_job_end") s after the cut, $(secs "$t_restore" "$t_job_end") s after the link came back${t_abort:+ ($(secs "$t_abort" "$t_job_end") s after the watchdog fired)}"
fi

# What vmove did between the cut and the end, from its journal (sqlite3, if installed): the
# watchdog, each abort and locate with its answer, and the migration call's own end.
stall_journal_since "$t_cut" "s after the cut; the link came back at +$(secs "$t_cut" "$t_restore") s"

fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
if [ -n "$t_abort" ]; then
  d="$(secs "$t_cut" "$t_abort")"
  if awk -v d="$d" -v s="$STALL" -v k="$SLACK" -v m="$STALL_MIN" 'BEGIN { exit !(d >= m && d <= s + k) }'; then
    ok "the stall watchdog fired (and vmove asked libvirt to abort) $d s after the link was cut (stall timeout ${STALL} s, allowed $STALL_MIN-$((STALL + SLACK)) s)"
  else
    bad "vmove reported the stall $d s after the cut, outside $STALL_MIN-$((STALL + SLACK)) s"
  fi
else
  bad "vmove never reported a stall or an abort while the link was cut"
fi
grep -q "stall watchdog fired on attempt 1" "$out" && ok "the stall watchdog fired on attempt 1" ||
  bad "no \"stall watchdog fired on attempt 1\" in vmove's output"
grep -qE "attempt 1 failed .*stalled: no progress for ${STALL}s" "$out" && ok "the failure names the stall (\"stalled: no progress for ${STALL}s\")" ||
  bad "no \"stalled: no progress for ${STALL}s\" in vmove's output"
[ "$running_on_a" = 1 ] && ok "the VM kept running on $A all the time the link was cut" ||
  bad "the VM was not running on $A at some point while the link was cut (states: $states_a)"
case "$running_on_b" in
  0) ok "the VM never ran on $B while the link was cut, nor on both hosts afterwards" ;;
  1) bad "the VM ran on $B while the link was cut" ;;
  2) bad "the VM ran on both hosts during the retry" ;;
esac
grep -q '^[0-9.]* vmove-exit 0$' "$out" && ok "vmove exited 0" || bad "vmove did not exit 0: $(grep 'vmove-exit' "$out" | cut -d' ' -f2-)"
attempts="$(grep -cE '^[0-9.]+ \[ *[0-9a-z.]+\] [^ ]+: attempt [0-9]+ failed' "$out" || true)"
[ "$(state_of "$B")" = running ] && ok "the retry moved it: running on $B" || bad "not running on $B ($(state_of "$B"))"
[ "$(state_of "$A")" = absent ] && ok "no longer defined on $A" || bad "still on $A ($(state_of "$A"))"
[ ! -e "$(host_path "$A" "$IMG")" ] && ok "its disk is gone from $A" || bad "its disk is still on $A"
# On B: its disk if it runs there, nothing else of it (a failed attempt's image is a leftover).
keep_b="$VM-0.qcow2"; [ "$(state_of "$B")" = running ] || keep_b="-"
left_b="$(find "$(host_path "$B" /var/lib/libvirt/images)" -name "$VM*" ! -name "$keep_b" | tr '\n' ' ')"
[ -z "$left_b" ] && ok "nothing else of it on $B (no failed attempt's image)" || bad "left on $B: $left_b"
if [ "$(state_of "$B")" = running ]; then
  [ "$("$LAB_SCRIPTS/checksum.sh" "$B" "$IMG")" = "$sum_before" ] && ok "checksum equal ($sum_before)" ||
    bad "checksum differs"
fi
[ "$attempts" -ge 1 ] && ok "failed attempts before the move: $attempts" || bad "no failed attempt in vmove's output"
if [ "$fail" = 0 ]; then echo "STALL-NET PASSED"; else echo "STALL-NET FAILED"; fi
exit "$fail"
