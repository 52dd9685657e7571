#!/usr/bin/env bash
# Every test: installs the system packages (build dependencies, and libvirt + QEMU for the lab),
# runs the workspace's tests, then the real-libvirt lab tests on two libvirt hosts on this machine.
# Needs root (or sudo) for the packages and the lab.
source "$(dirname "$0")/common.sh"
need_cargo
install_build_deps
cd "$ROOT"
if [ -x lab/install.sh ] || [ -f lab/install.sh ]; then
  say "installing the lab's packages (libvirt, QEMU)"
  as_root bash lab/install.sh
fi

say "unit, property and integration tests (cargo test --workspace)"
cargo test --workspace --locked --release 2>&1 | tee /tmp/vmove-test-unit.log
unit=${PIPESTATUS[0]}

lab=0
if [ -f lab/ci.sh ]; then
  say "real-libvirt lab tests (lab/ci.sh)"
  as_root bash lab/ci.sh || lab=$?
fi

say "summary: unit/integration exit $unit, lab exit $lab"
grep -E '^test result:' /tmp/vmove-test-unit.log | awk '{p+=$4; f+=$6} END {printf "tests: %d passed, %d failed\n", p, f}'
[ "$unit" = 0 ] && [ "$lab" = 0 ]
