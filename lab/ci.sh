#!/usr/bin/env bash
# The lab's CI step (called by scripts/test.sh as root): installs the packages, brings the lab
# up, runs the real-libvirt test binary one test at a time, and always tears the lab down.
#   VMOVE_LAB_KEEP=1          leave the lab up afterwards (for poking at it)
#   VMOVE_LAB_SCRIPTS_ONLY=1  skip the test binary, run only the scripts (to rerun them)
source "$(dirname "$0")/common.sh"
need_root
ROOT="$(cd "$LAB_SCRIPTS/.." && pwd)"

"$LAB_SCRIPTS/install.sh"
# swtpm's system folders (its logs, the local CA swtpm_setup makes at a TPM's first start): the
# lab's hosts have their own (lab/up.sh), so nothing in them may change. Checked at the end.
swtpm_dirs=(/var/log/swtpm /var/lib/swtpm-localca)
swtpm_before="$(find "${swtpm_dirs[@]}" -printf "%p %s %T@\\n" 2>&1 || true)"
teardown() {
  local rc=$?
  if [ "${VMOVE_LAB_KEEP:-0}" != 1 ]; then "$LAB_SCRIPTS/down.sh" || true; fi
  exit "$rc"
}
trap teardown EXIT
"$LAB_SCRIPTS/up.sh"

cd "$ROOT"
# The release `vmove` binary: the lab test that kills vmove at a switchover and the scripts
# below run it. scripts/test.sh passes the one its `cargo test --workspace --release` built (the
# workspace tests ran it); run alone, the lab builds it. --release: reuses that build.
if [ -z "${VMOVE_BIN:-}" ]; then
  cargo build --workspace --all-features --locked --release --bins
  VMOVE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/vmove"
fi
export VMOVE_BIN
if [ "${VMOVE_LAB_SCRIPTS_ONLY:-0}" != 1 ]; then
  log "running the lab tests (cargo test --release -p vmove-driver-libvirt --test lab)"
  VMOVE_LAB=1 VMOVE_LAB_DIR="$LAB" cargo test --workspace --all-features --locked --release --test lab -- --test-threads=1
fi

# End-to-end checks through the real CLI (issue 3's lab evidence): each script asserts and exits
# non-zero on the first check that does not hold.
export VMOVE_E2E_KEEP=1
# The lab keeps its data in its own folders: nothing of vmove's may change under the user's
# home (its default journal is ~/.local/share/vmove/journal.db). Checked after the scripts.
home_data="${HOME:-/root}/.local/share/vmove"
home_stamp="$(mktemp)"
passed=0; failed=0; failures=()
# The scripts run in lines at the same time, each line one script after the other, each on lab
# hosts of its own: every script on hostA and hostB in one line (e2e, slots, check-catalogue,
# ledger; low-disk only refuses to start), and one line each for stall-net.sh (hostI hostJ, in
# namespaces), stall-daemon.sh (hostM hostN), crash.sh (hostC hostD) and crash-many.sh (hostG
# hostH, 40 kills). The first four mostly wait (a watchdog, leases, throttled migrations); the
# longest line, crash-many, takes about 5 minutes. One after the other the scripts took about
# 650 s of CI. Each script's output is printed whole once every line has ended, in this order.
lines=("e2e slots check-catalogue ledger low-disk" stall-net stall-daemon crash crash-many)
outs="$(mktemp -d)"
order=()
pids=()
for line in "${lines[@]}"; do
  read -ra names <<<"$line"
  order+=("${names[@]}")
  (
    for s in "${names[@]}"; do
      [ -f "$LAB_SCRIPTS/$s.sh" ] || continue
      rc=0
      bash "$LAB_SCRIPTS/$s.sh" >"$outs/$s.log" 2>&1 || rc=$?
      echo "$rc" >"$outs/$s.rc"
    done
  ) &
  pids+=($!)
done
log "lab scripts, lines at the same time: $(printf '[%s] ' "${lines[@]}")"
wait "${pids[@]}" || true
for s in "${order[@]}"; do
  [ -f "$LAB_SCRIPTS/$s.sh" ] || continue
  rc="$(cat "$outs/$s.rc" 2>/dev/null || echo "none: it did not end")"
  log "lab script: $s.sh (exit $rc)"
  cat "$outs/$s.log" 2>/dev/null || true
  if [ "$rc" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$s"); fi
done
rm -rf "$outs"
touched="$(find "$home_data" -newer "$home_stamp" 2>/dev/null || true)"
rm -f "$home_stamp"
if [ -n "$touched" ]; then
  log "a lab script wrote under $home_data: $(echo $touched)"
  failed=$((failed + 1)); failures+=("home-untouched")
else
  log "nothing under $home_data changed"
fi
swtpm_after="$(find "${swtpm_dirs[@]}" -printf "%p %s %T@\\n" 2>&1 || true)"
if [ "$swtpm_before" != "$swtpm_after" ]; then
  log "the lab wrote into ${swtpm_dirs[*]}: before: $swtpm_before; after: $swtpm_after"
  failed=$((failed + 1)); failures+=("swtpm-untouched")
else
  log "nothing under ${swtpm_dirs[*]} changed"
fi
echo "lab-scripts: $passed passed, $failed failed"
[ "$failed" = 0 ] || die "lab scripts failed: ${failures[*]}"
