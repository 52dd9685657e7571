#!/usr/bin/env bash
# Issue 3's "destination libvirtd stopped" case. While `vmove migrate` copies a slow VM's disk
# from the first host to the second, the second host's libvirtd is frozen (SIGSTOP of its pid,
# nothing else: its QEMU processes and the network keep running). Checks that vmove
#   - notices: the attempt fails (stall watchdog, or the migration call failing once keepalive
#     closed the dead connection) within a bound, measured from the freeze and printed,
#   - leaves the VM running on the source all along and never running on two hosts (the
#     destination's libvirtd cannot be asked while frozen: its QEMU processes for the VM are
#     listed instead, and a QEMU started for an incoming migration stays paused until its
#     libvirtd resumes it),
#   - once libvirtd runs again (SIGCONT), retries and moves it: running on the destination only,
#     checksum of the disk equal to before, nothing of it left on the source (disk, definition),
#     no partial image left on the destination.
# Phase 2 (VMOVE_STALL_DAEMON_CRASH=1, not in CI): the same, but the frozen libvirtd is then
# killed (SIGKILL) and restarted with lab/up.sh instead of resumed.
# The daemon is resumed on every exit.
#
# Its own lab: /var/tmp/vmove-lab-daemon, hostM hostN, IP base 50, ports from 55000.
#   VMOVE_BIN=...              the vmove binary (else built with cargo)
#   VMOVE_STALL_DAEMON_KEEP=1  leave its lab up afterwards (default: lab/down.sh)
export VMOVE_LAB_NET=loopback VMOVE_LAB_DIR=/var/tmp/vmove-lab-daemon VMOVE_LAB_HOSTS="hostM hostN" \
  VMOVE_LAB_IP_BASE=50 VMOVE_LAB_PORT_BASE=55000
source "$(dirname "$0")/common.sh"
need_root
command -v sqlite3 >/dev/null || die "stall-daemon.sh reads vmove's journal with sqlite3: install it (apt-get install sqlite3)"
ROOT="$(cd "$LAB_SCRIPTS/.." && pwd)"
read -r A B _ <<<"$HOSTS"
VM=stall-daemon-1
IMG=/var/lib/libvirt/images/$VM-0.qcow2
STALL=15   # stall_timeout, s
CRASH="${VMOVE_STALL_DAEMON_CRASH:-0}"
# The bound from the freeze to the failed attempt: the disk copy may go on while the destination's
# libvirtd is frozen (QEMU to QEMU); what is left of it at 16 MiB/s (<= 24 s), then either the
# watchdog (15 s without progress) or keepalive (20 s) + slack.
BOUND=55
# Keep it frozen this long after vmove noticed, s: long enough that vmove's look at the hosts
# after the failed attempt meets the frozen daemon (a new connection to it is given up after 30 s).
HOLD="${VMOVE_STALL_DAEMON_HOLD:-35}"

VSH=vsh
source "$LAB_SCRIPTS/stall-common.sh"
state_of() { vsh "$1" domstate "$VM" 2>/dev/null || echo absent; }
# The pids of QEMU processes for the VM started for an incoming migration (the destination's;
# libvirt daemonizes QEMU, so they are found by their command line, not as children).
qemu_incoming() {
  local f found=""
  for f in /proc/[0-9]*/cmdline; do
    if { tr '\0' ' ' <"$f"; } 2>/dev/null | grep -q -- "guest=$VM,.* -incoming "; then
      f="${f#/proc/}"; found+="${f%/cmdline} "
    fi
  done
  printf '%s' "$found"
}

"$LAB_SCRIPTS/up.sh"
frozen=""
resume() {
  if [ -n "$frozen" ] && [ -d "/proc/$frozen" ]; then kill -CONT "$frozen" && log "libvirtd $frozen of $B resumed"; fi
  frozen=""
}
finish() {
  local rc=$?
  resume
  # An incoming QEMU of the failed attempt that outlived everything (see the check below) was
  # started by this script's lab: stop it by its pid.
  local q
  for q in ${qemu_b_seen:-}; do
    if [ -d "/proc/$q" ] && { tr '\0' ' ' <"/proc/$q/cmdline"; } 2>/dev/null | grep -q "guest=$VM,"; then kill "$q" || true; fi
  done
  if [ -n "${runner:-}" ] && [ -d "/proc/$runner" ]; then kill "$runner" 2>/dev/null || true; fi
  if [ "${VMOVE_STALL_DAEMON_KEEP:-0}" != 1 ]; then "$LAB_SCRIPTS/down.sh" || true; fi
  exit "$rc"
}
trap finish EXIT

stall_fresh_vm
stall_start_vmove stall-daemon
stall_wait_for_copy
pid_b="$(libvirtd_pid "$B")"
[ -n "$pid_b" ] || die "no libvirtd pid for $B"
kill -STOP "$pid_b"; frozen="$pid_b"
t_freeze="$(now)"
log "libvirtd $pid_b of $B frozen at $t_freeze (copied so far: ${copied_before:-?})"

# While frozen: the source must keep the VM running. The destination's libvirtd cannot be asked;
# an incoming QEMU there is recorded (it runs the guest only once its libvirtd says so).
running_on_a=1; t_pause0=""; t_pause1=""; states_a=""; t_fail=""; t_until=""; seen=0; qemu_b_seen=""; copied=""
deadline=$(awk -v t="$t_freeze" -v s="$BOUND" -v k="$HOLD" 'BEGIN { printf "%.3f", t + s + k }')
while :; do
  sa="$(state_of "$A")"
  n="$(wc -l <"$out")"
  if [ "$n" -gt "$seen" ]; then sed -n "$((seen + 1)),${n}p" "$out" | while IFS= read -r l; do log "vmove +$(secs "$t_freeze" "${l%% *}") s: ${l#* }"; done; seen=$n; fi
  [[ "$states_a" == *"$sa"* ]] || states_a+="$sa;"
  # Paused is libvirt's switchover (the memory is across, the source waits for the destination's
  # Finish); Confirm resumes it when Finish fails. Measured, bounded below; anything else fails.
  case "$sa" in
    running) ;;
    paused) [ -n "$t_pause0" ] || t_pause0="$(now)"; t_pause1="$(now)" ;;
    *) running_on_a=0 ;;
  esac
  q="$(qemu_incoming)"; [ -z "$q" ] || qemu_b_seen="$q"
  c="$(vsh "$A" domjobinfo "$VM" 2>/dev/null | sed -n 's/^Data processed: *//p')"; [ -z "$c" ] || copied="$c"
  # vmove noticed: its journal has the watchdog, the migration's failure or a failed attempt
  # (its plain output says "attempt 1 failed" only after it could look at both hosts).
  if [ -z "$t_fail" ]; then
    l="$(sqlite3 -separator ' ' "$journal" "SELECT written_at, name, substr(body, instr(body, '\"message\"'), 140) FROM entries
      WHERE name IN ('watchdog_fired', 'attempt_failed')
         OR (kind = 'input' AND name = 'migration_status' AND body LIKE '%\"failed\"%')
      ORDER BY seq LIMIT 1" 2>/dev/null || true)"
    if [ -n "$l" ]; then
      t_fail="$(awk -v ms="${l%% *}" 'BEGIN { printf "%.3f", ms / 1000 }')"
      fail_kind="${l#* }"; fail_kind="${fail_kind%% *}"
      t_until=$(awk -v t="$(now)" -v k="$HOLD" 'BEGIN { printf "%.3f", t + k }')
      log "vmove noticed $(secs "$t_freeze" "$t_fail") s after the freeze (journal: ${l#* })"
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
log "copied by the source's job while $B's libvirtd was frozen: last seen ${copied:-?} (at the freeze ${copied_before:-?})"
if [ "$CRASH" = 1 ]; then
  kill -KILL "$pid_b"; frozen=""
  for _ in $(seq 1 20); do [ -d "/proc/$pid_b" ] || break; sleep 0.5; done
  log "libvirtd $pid_b of $B killed; restarting it"
  "$LAB_SCRIPTS/up.sh"
else
  resume
fi
t_resume="$(now)"

running_on_both=0
for _ in $(seq 1 600); do
  [ -d "/proc/$runner" ] || break
  # The destination first, then the source: two domstate calls are not one instant, and a
  # switchover between them (A running, then B running) is a correct move, not two copies. A
  # source running AFTER the destination was seen running is: a correct A -> B move never
  # runs the source again once the destination runs (it is paused, then ended).
  sb="$(state_of "$B")"
  [ "$sb" = running ] && [ "$(state_of "$A")" = running ] && running_on_both=1
  sleep 0.5
done
t_end="$(now)"
if [ -d "/proc/$runner" ]; then log "vmove (pid $runner) still runs after 300 s: stopping it"; kill "$runner" 2>/dev/null || true; fi
rc=0; wait "$runner" || rc=$?
runner=""
sleep 0.5
echo "$(now) vmove-exit $rc" >>"$out"
cat "$out"
echo "---"
echo "frozen at $t_freeze, vmove noticed at ${t_fail:-never}, libvirtd $([ "$CRASH" = 1 ] && echo restarted || echo resumed) at $t_resume ($(secs "$t_freeze" "$t_resume") s frozen), vmove done at $t_end ($(secs "$t_resume" "$t_end") s later)"
echo "source states while frozen: ${states_a%;}; destination QEMU for the VM while frozen: ${qemu_b_seen:-none}"

stall_journal_since "$t_freeze" "s after the freeze"

fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
if [ -n "$t_fail" ]; then
  d="$(secs "$t_freeze" "$t_fail")"
  if awk -v d="$d" -v b="$BOUND" 'BEGIN { exit !(d <= b) }'; then
    ok "vmove noticed (watchdog or failed attempt) $d s after the freeze (bound $BOUND s)"
  else
    bad "vmove noticed $d s after the freeze, past $BOUND s"
  fi
else
  bad "vmove reported neither a stall nor a failed attempt while $B's libvirtd was frozen"
fi
[ "$running_on_a" = 1 ] && ok "the VM stayed on $A (running or paused) all the time $B's libvirtd was frozen (states: ${states_a%;})" ||
  bad "the VM was neither running nor paused on $A at some point while $B's libvirtd was frozen (states: $states_a)"
if [ -n "$t_pause0" ]; then
  p="$(secs "$t_pause0" "$t_pause1")"
  awk -v p="$p" 'BEGIN { exit !(p <= 25) }' && ok "paused on $A (switchover waiting for $B's Finish) for about $p s, then resumed (bound 25 s: keepalive)" ||
    bad "paused on $A for $p s (bound 25 s)"
fi
[ "$(state_of "$A")" != paused ] || bad "still paused on $A"
[ "$running_on_both" = 0 ] && ok "never running on both hosts afterwards" || bad "the VM ran on both hosts during the retry"
grep -q '^[0-9.]* vmove-exit 0$' "$out" && ok "vmove exited 0" || bad "vmove did not exit 0: $(grep 'vmove-exit' "$out" | cut -d' ' -f2-)"
attempts="$(grep -cE '^[0-9.]+ \[ *[0-9a-z.]+\] [^ ]+: attempt [0-9]+ failed' "$out" || true)"
[ "$(state_of "$B")" = running ] && ok "the retry moved it: running on $B" || bad "not running on $B ($(state_of "$B"))"
[ "$(state_of "$A")" = absent ] && ok "no longer defined on $A" || bad "still on $A ($(state_of "$A"))"
[ ! -e "$(host_path "$A" "$IMG")" ] && ok "its disk is gone from $A" || bad "its disk is still on $A"
keep_b="$VM-0.qcow2"; [ "$(state_of "$B")" = running ] || keep_b="-"
left_b="$(find "$(host_path "$B" /var/lib/libvirt/images)" -name "$VM*" ! -name "$keep_b" | tr '\n' ' ')"
[ -z "$left_b" ] && ok "nothing else of it on $B (no partial image)" || bad "left on $B: $left_b"
if [ "$(state_of "$B")" = running ]; then
  [ "$("$LAB_SCRIPTS/checksum.sh" "$B" "$IMG")" = "$sum_before" ] && ok "checksum equal ($sum_before)" ||
    bad "checksum differs"
fi
stale=""
for q in $qemu_b_seen; do [ -d "/proc/$q" ] && stale+="$q "; done
[ -z "$stale" ] && ok "the failed attempt's incoming QEMU on $B (pid ${qemu_b_seen:-none}) is gone" ||
  bad "the failed attempt's incoming QEMU on $B still runs (pid $stale; paused, never resumed)"
# A failed migration is said at once, not only once both hosts were looked at (which waits for
# the frozen daemon: ~40 s of silence before).
if [ "${fail_kind:-}" = migration_status ]; then
  said="$(grep -m1 -E '^[0-9.]+ \[ *[0-9a-z.]+\] [^ ]+: attempt [0-9]+: the migration .* failed' "$out" | cut -d' ' -f1 || true)"
  if [ -n "$said" ] && awk -v d="$(secs "$t_fail" "$said")" 'BEGIN { exit !(d <= 5) }'; then
    ok "vmove said the migration failed $(secs "$t_fail" "$said") s after libvirt reported it"
  else
    bad "vmove did not say the migration failed within 5 s of libvirt reporting it (${said:+said $(secs "$t_fail" "$said") s after})"
  fi
fi
[ "$attempts" -ge 1 ] && ok "failed attempts before the move: $attempts" || bad "no failed attempt in vmove's output"
phase="SIGSTOP/SIGCONT"; [ "$CRASH" = 1 ] && phase="SIGSTOP/SIGKILL/restart"
if [ "$fail" = 0 ]; then echo "STALL-DAEMON ($phase) PASSED"; else echo "STALL-DAEMON ($phase) FAILED"; fi
exit "$fail"
