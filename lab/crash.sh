#!/usr/bin/env bash
# Crash test of `vmove` on real libvirt hosts: `kill -9` of the driving process at >= 5 points,
# `vmove resume` after each. Safety: every VM runs on exactly one host with its disks' content
# unchanged there (checksums), nothing of a moved VM left on the source, nothing of a failed
# attempt and no provenance marker (`<image>.vmove-<uuid>`, libvirt driver) left on the
# destination, no attempt started twice and nothing removed twice (from the journal). Liveness:
# every VM moved (the hosts have room and nothing is injected). Exit 0 = every assertion held.
#
# Kill points (each waits for its moment in the journal, read with sqlite3 while the run goes):
#   1 start      right after a start_migration intent is durable (the start may or may not have
#                reached the host)
#   2 migrating  right after a poll_migration intent (a libvirt migration job is running)
#   3 verify     right after a verify intent (the move probably arrived, nothing cleaned yet)
#   4 cleanup    right after a remove_leftover intent on the source (cleanup under way)
#   5 migrating  again, on a later VM
#   6 random     at a seeded random time
# Runs once per libvirt mode a user can choose: without p2p (the default: vmove's process drives
# the migration, which dies with it) and with p2p = true (the source's libvirtd drives it and a
# resumed vmove re-adopts it). VMOVE_CRASH_MODES="default p2p" (the default) picks them.
# Runs on its OWN lab hosts by default (VMOVE_LAB_HOSTS="hostC hostD", VMOVE_LAB_DIR
# /var/tmp/vmove-lab-crash) so it does not disturb a lab others use; tears down only those.
#   VMOVE_BIN=path        the vmove binary (else built with cargo, release)
#   VMOVE_CRASH_KEEP=1    leave its lab up
export VMOVE_LAB_DIR="${VMOVE_LAB_DIR:-/var/tmp/vmove-lab-crash}"
export VMOVE_LAB_HOSTS="${VMOVE_LAB_HOSTS:-hostC hostD}"
source "$(dirname "$0")/common.sh"
need_root
# sqlite3 watches the journal while the run goes (lab/install.sh installs it).
command -v sqlite3 >/dev/null || die "crash.sh reads vmove's journal with sqlite3: run lab/install.sh (or apt-get install sqlite3)"
ROOT="$(cd "$LAB_SCRIPTS/.." && pwd)"
read -r SRC DST _ <<<"$HOSTS"
[ -n "$DST" ] || die "two lab hosts are needed (VMOVE_LAB_HOSTS)"
"$LAB_SCRIPTS/up.sh"
teardown() {
  local rc=$?
  [ -n "${child:-}" ] && kill -9 "$child" 2>/dev/null || true
  if [ "${VMOVE_CRASH_KEEP:-0}" != 1 ]; then "$LAB_SCRIPTS/down.sh" || true; fi
  exit "$rc"
}
trap teardown EXIT

vmove="${VMOVE_BIN:-}"
if [ -z "$vmove" ]; then
  (cd "$ROOT" && cargo build --release -p vmove >&2)
  vmove="${CARGO_TARGET_DIR:-$ROOT/target}/release/vmove"
fi

# One crash run in `mode` (default: no p2p; p2p: p2p = true on the source); returns non-zero
# when an assertion failed.
crash_run() {
  local mode="$1" p2p_line=""
  # p2p: the source libvirtd drives the migration, so it survives the death of the vmove process
  # that started it and a resumed vmove re-adopts it. Without p2p (what a new user has) the
  # migration dies with vmove's process and the resumed vmove rolls it back and moves it again.
  [ "$mode" = p2p ] && p2p_line="p2p = true"
  for h in $HOSTS; do
    for d in $(vsh "$h" list --all --name 2>/dev/null | grep '^crash-' || true); do
      vsh "$h" destroy "$d" >/dev/null 2>&1 || true
      vsh "$h" undefine "$d" >/dev/null 2>&1 || true
    done
    rm -f "$(host_dir "$h")"/lib/images/crash-* "$(host_dir "$h")"/log/qemu/crash-*
    vsh "$h" pool-refresh images >/dev/null
  done

  VMS="crash-1 crash-2 crash-3 crash-4 crash-5 crash-6"
  log "creating 7 VMs on $SRC"
  for n in $VMS; do "$LAB_SCRIPTS/mkvm.sh" "$SRC" "$n" --size 384 --fill 48 >/dev/null; done
  "$LAB_SCRIPTS/mkvm.sh" "$SRC" crash-off --off --size 128 --fill 16 >/dev/null
  VMS="$VMS crash-off"

  declare -A before
  for d in $VMS; do
    for p in $(vsh "$SRC" domblklist "$d" --details | awk '$2=="disk"{print $4}'); do
      before["$d|$p"]="$("$LAB_SCRIPTS/checksum.sh" "$SRC" "$p")"
    done
  done

  work="$LAB/crash-run-$mode"
  rm -rf "$work"; mkdir -p "$work"
  J="$work/journal.db"
  cfg="$work/crash.toml"
  cat >"$cfg" <<TOML
[defaults]
journal = "$J"
journal_lease = "2s"
poll_interval = "2s"
recheck_interval = "2s"
stall_timeout = "60s"
max_attempts = 5
backoff_initial = "1s"

[hosts.$SRC]
driver = "libvirt"
uri = "$(host_uri "$SRC")"
max_migrations = 1
$p2p_line

[hosts.$DST]
driver = "libvirt"
uri = "$(host_uri "$DST")"
max_migrations = 1
TOML

  # An array, not a function: `cmd &` must make $! the vmove process itself (a backgrounded
  # function is a subshell; killing it would orphan vmove, not kill it).
  VM=("$vmove" --config "$cfg" --plain)
  q() { sqlite3 -readonly "$J" "$1" 2>/dev/null || echo 0; }
  intents() { q "SELECT count(*) FROM entries WHERE kind='intent' AND name='$1'"; }

  RANDOM=2026
  n=0
  kills=0
  child=""
  points="start migrating verify cleanup migrating random"
  run_over=0
  for point in $points; do
    n=$((n + 1))
    base_poll=$(intents poll_migration); base_start=$(intents start_migration); base_verify=$(intents verify); base_remove=$(intents remove_leftover)
    if [ "$n" = 1 ]; then
      "${VM[@]}" evacuate "$SRC" --to "$DST" >"$work/p$n.out" 2>"$work/p$n.err" &
      child=$!
    else
      # The killed process's lease must expire first; resume refuses clearly until then.
      while :; do
        "${VM[@]}" resume >"$work/p$n.out" 2>"$work/p$n.err" &
        child=$!
        sleep 0.3
        kill -0 "$child" 2>/dev/null && break
        wait "$child" || true
        if grep -q "is driven by process" "$work/p$n.err"; then
          grep -q "lease valid until" "$work/p$n.err" || die "the refusal does not say until when: $(cat "$work/p$n.err")"
          sleep 0.3; continue
        fi
        log "process $n: $(cat "$work/p$n.err")"
        run_over=1; break
      done
      [ "$run_over" = 1 ] && break
    fi
    deadline=$(( $(date +%s) + 120 ))
    hit=0
    [ "$point" = random ] && rnd_ms=$(( 500 + RANDOM % 4000 )) && t0=$(date +%s%3N)
    while kill -0 "$child" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do
      case "$point" in
        start) [ "$(intents start_migration)" -gt "$base_start" ] && hit=1 ;;
        migrating) [ "$(intents poll_migration)" -gt "$base_poll" ] && hit=1 ;;
        verify) [ "$(intents verify)" -gt "$base_verify" ] && hit=1 ;;
        cleanup) [ "$(intents remove_leftover)" -gt "$base_remove" ] && hit=1 ;;
        random) [ $(( $(date +%s%3N) - t0 )) -ge "$rnd_ms" ] && hit=1 ;;
      esac
      [ "$hit" = 1 ] && break
      sleep 0.05
    done
    if [ "$hit" = 1 ] && kill -9 "$child" 2>/dev/null; then
      wait "$child" 2>/dev/null || true
      kills=$((kills + 1))
      log "kill $kills: -9 at '$point' (process $n); journal: $(q "SELECT group_concat(name||'='||phase, ' ') FROM vm_state")"
      for h in $SRC $DST; do
        log "  on $h: $(for d in $(vsh "$h" list --all --name 2>/dev/null | grep '^crash-' || true); do printf '%s=%s; ' "$d" "$(vsh "$h" domstate --reason "$d" 2>/dev/null)"; done)"
      done
    else
      wait "$child" 2>/dev/null || true
      log "process $n ended before the '$point' point"
      run_over=1
      break
    fi
  done
  child=""
  if [ "$run_over" = 0 ]; then
    n=$((n + 1))
    log "resuming to the end (process $n)"
    until "${VM[@]}" resume >"$work/p$n.out" 2>"$work/p$n.err"; do
      grep -q "is driven by process" "$work/p$n.err" || break
      sleep 0.5
    done
  fi
  cat "$work/p$n.out" || true

  fail=0
  ok() { echo "ok   $*"; }
  bad() { echo "FAIL $*"; fail=1; }
  state() { vsh "$1" domstate "$2" 2>/dev/null || echo absent; }
  declare -A where

  [ "$kills" -ge 5 ] && ok "$kills kills" || bad "only $kills kills"
  [ "$(q "SELECT state FROM runs")" = finished ] && ok "the run finished" || bad "run state: $(q "SELECT state FROM runs")"
  "${VM[@]}" history
  # Safety: every VM runs (or is shut off) on exactly one host, with its disks' content unchanged
  # there; a moved VM left nothing on the source.
  for d in $VMS; do
    want=running; [ "$d" = crash-off ] && want="shut off"
    on_src="$(state "$SRC" "$d")"; on_dst="$(state "$DST" "$d")"
    if [ "$on_dst" = "$want" ] && [ "$on_src" = absent ]; then
      ok "$d $want on $DST only"; where["$d"]="$DST"
    elif [ "$on_src" = "$want" ] && [ "$on_dst" = absent ]; then
      ok "$d $want on $SRC only (not moved)"; where["$d"]="$SRC"
    else
      bad "$d is '$on_src' on $SRC and '$on_dst' on $DST"
    fi
  done
  for key in "${!before[@]}"; do
    d="${key%%|*}"; p="${key#*|}"; h="${where[$d]:-}"
    [ -n "$h" ] || continue
    [ "$("$LAB_SCRIPTS/checksum.sh" "$h" "$p")" = "${before[$key]}" ] && ok "checksum $d $p on $h" || bad "checksum differs: $d $p on $h"
  done
  for d in $VMS; do
    if [ "${where[$d]:-}" = "$DST" ]; then
      left="$(cd "$(host_dir "$SRC")" && ls lib/images log/qemu | grep "^$d[-.]" || true)"
      [ -z "$left" ] && ok "nothing of $d left on $SRC" || bad "left on $SRC: $(echo $left)"
    elif [ "${where[$d]:-}" = "$SRC" ]; then
      left="$(cd "$(host_dir "$DST")" && ls lib/images | grep "^$d[-.]" || true)"
      [ -z "$left" ] && ok "nothing of $d's failed attempts left on $DST" || bad "left on $DST: $(echo $left)"
    fi
  done
  # Provenance markers (<image>.vmove-<uuid>) live only while an attempt is in flight or failed
  # and not yet cleaned: none may survive the run.
  markers="$(cd "$(host_dir "$DST")/lib/images" && ls | grep -F '.vmove-' || true)"
  [ -z "$markers" ] && ok "no provenance marker left on $DST" || bad "provenance markers left on $DST: $(echo $markers)"
  twice="$(q "SELECT vm||'#'||attempt FROM entries WHERE kind='intent' AND name='start_migration' GROUP BY vm, attempt HAVING count(*) > 1")"
  [ -z "$twice" ] && ok "no attempt started twice" || bad "attempts started twice: $twice"
  # One file is removed at most once. Grouped by attempt too: each attempt pre-creates its own
  # image at the same destination path, and each failed attempt's image is removed after it (two
  # files, one path). Within one attempt the driver lists only files that still exist, so a
  # second removal there would be a real double removal.
  removed_twice="$(q "SELECT json_extract(i.body,'\$.leftover.host')||':'||json_extract(i.body,'\$.leftover.what')||' (attempt '||i.attempt||')' FROM entries i JOIN entries o ON o.run_id = i.run_id AND o.answers = i.seq
    WHERE i.kind='intent' AND i.name='remove_leftover' AND json_type(o.body,'\$.result.Ok') IS NOT NULL
    GROUP BY i.vm, i.attempt, json_extract(i.body,'\$.leftover.host'), json_extract(i.body,'\$.leftover.what') HAVING count(*) > 1")"
  [ -z "$removed_twice" ] && ok "nothing removed twice" || bad "removed twice: $removed_twice"
  # Liveness: nothing stood in the way (room, no faults): every VM should have moved.
  not_moved="$(q "SELECT group_concat(name, ' ') FROM vm_state WHERE phase != 'moved'")"
  [ -z "$not_moved" ] && ok "every VM moved" || bad "not moved: $not_moved (see the summary above for why)"
  echo "resumes: $(grep -h 'resuming run' "$work"/p*.err | sed 's/.*recovered, //' | tr '\n' ';')"

  [ "$fail" = 0 ] && echo "CRASH PASSED ($mode)" || echo "CRASH FAILED ($mode)"
  return "$fail"
}

overall=0
for mode in ${VMOVE_CRASH_MODES:-default p2p}; do
  case "$mode" in default|p2p) ;; *) die "VMOVE_CRASH_MODES: unknown mode '$mode' (default, p2p)";; esac
  if [ "$mode" = p2p ]; then log "crash run with p2p = true"; else log "crash run without p2p (what a new user has)"; fi
  crash_run "$mode" || overall=1
done
exit "$overall"
