#!/usr/bin/env bash
# The lab's CI step (called by scripts/test.sh as root): installs the packages, brings the lab
# up, runs the real-libvirt test binary one test at a time, and always tears the lab down.
#   VMOVE_LAB_KEEP=1   leave the lab up afterwards (for poking at it)
source "$(dirname "$0")/common.sh"
need_root
ROOT="$(cd "$LAB_SCRIPTS/.." && pwd)"

"$LAB_SCRIPTS/install.sh"
teardown() {
  local rc=$?
  if [ "${VMOVE_LAB_KEEP:-0}" != 1 ]; then "$LAB_SCRIPTS/down.sh" || true; fi
  exit "$rc"
}
trap teardown EXIT
"$LAB_SCRIPTS/up.sh"

cd "$ROOT"
# --release: reuses the build of scripts/test.sh (cargo test --workspace --release).
log "running the lab tests (cargo test --release -p vmove-driver-libvirt --test lab)"
VMOVE_LAB=1 VMOVE_LAB_DIR="$LAB" cargo test --release -p vmove-driver-libvirt --test lab -- --test-threads=1
