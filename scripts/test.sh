#!/usr/bin/env bash
# Every test: installs the system packages (build dependencies; PostgreSQL for the journal's
# conformance suite on a throw-away server; python3-venv for the independent
# WS-Management client cross-check; Kerberos; Chromium for the browser tests; libvirt + QEMU for
# the lab), runs the workspace's tests, then
# the real-libvirt lab tests on two libvirt hosts on this machine. Needs root (or sudo).
source "$(dirname "$0")/common.sh"
need_cargo
install_build_deps
cd "$ROOT"
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  say "installing python3-venv (for the pypsrp cross-check of the Hyper-V protocol fake)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
fi
if ! command -v krb5kdc >/dev/null 2>&1 || ! command -v kadmin.local >/dev/null 2>&1 \
  || ! pkg-config --exists krb5-gssapi 2>/dev/null; then
  say "installing MIT Kerberos (a KDC on loopback for the Hyper-V Kerberos tests; libkrb5-dev for the pypsrp cross-check's gssapi)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    krb5-kdc krb5-admin-server libkrb5-dev gcc python3-dev >/dev/null
fi
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  say "installing Chromium and its WebDriver (the HTML report and the live page in a real browser)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >/dev/null
fi
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  say "installing PostgreSQL (the journal's conformance suite runs against a throw-away server it starts under a temporary folder; no system cluster is used)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
if ! command -v openssl >/dev/null 2>&1; then
  say "installing openssl (the TLS tests make a throw-away CA and server certificate with it)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >/dev/null
fi
say "installing the lab's packages (libvirt, QEMU)"
as_root bash lab/install.sh

disk_report "before the build" 6
# One build for the tests and the binary they run. `cargo test` builds the crates again with the
# features the tests' dev-dependencies add (tokio's `test-util`, the driver's and the journal's
# `test-util` helpers): a `cargo build --bins` first was a second build of most of the tree, about
# 3 of CI's minutes. Those features only add functions the tests call (a paused clock, the
# conformance suite, a throw-away journal); the `vmove` binary they build runs the same code.
# The lab below runs that binary too. The shipped build (no dev-dependencies, as the README's
# first command makes it) is built and its demo run while the lab runs, after the build without
# libvirt (the build checks below).
say "building (release): the tests and the vmove binary they run"
cargo test --workspace --all-features --locked --release --no-run
vmove_bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/vmove"

# Four tests at a time in each test binary, not one per core: the CLI's tests mostly wait on the
# vmove processes they start (simulated clusters, watchdogs, a PostgreSQL outage), and on 2 cores
# their binary took 300 s with two at a time, 160 s with four. It also runs the tests of one
# binary closer together than a user's two-core `cargo test` does.
say "unit, property, simulation, protocol-fake and CLI tests (cargo test --workspace --all-features -- --test-threads=4)"
set +e
VMOVE_REQUIRE_POSTGRES=1 VMOVE_REQUIRE_PYPSRP=1 VMOVE_REQUIRE_CLI_E2E=1 VMOVE_REQUIRE_KERBEROS=1 VMOVE_REQUIRE_BROWSER=1 VMOVE_BIN="$vmove_bin" \
  cargo test --workspace --all-features --locked --release --no-fail-fast -- --test-threads=4 2>&1 | tee /tmp/vmove-test-unit.log
unit=${PIPESTATUS[0]}

disk_report "before the lab" 3
# The build without libvirt and the API docs need no lab. They build while the lab runs (it
# mostly waits on throttled migrations and watchdogs), at the lowest CPU priority so that the
# lab's guests and timings come first, each in a target folder of its own: cargo locks a target
# folder while it builds, and the lab's own `cargo test` must not wait on them. Before, they ran
# one after the other after the lab, about 3 minutes of CI's wall time. Their results are read
# after the lab.
checks_target="${CARGO_TARGET_DIR:-$ROOT/target}"
nolibvirt_target="$checks_target/ci-nolibvirt"
doc_target="$checks_target/ci-doc"
say "in the background while the lab runs: a build without libvirt (cargo build -p vmove --no-default-features --features hyperv, into $nolibvirt_target), then the shipped build (cargo build -p vmove, the same folder), and the API docs (RUSTDOCFLAGS='-D warnings' cargo doc --no-deps --workspace --all-features, into $doc_target); their logs: /tmp/vmove-build-nolibvirt.log, /tmp/vmove-build-shipped.log, /tmp/vmove-build-doc.log"
(
  CARGO_TARGET_DIR="$nolibvirt_target" nice -n 19 \
    cargo build -p vmove --release --locked --no-default-features --features hyperv \
    > /tmp/vmove-build-nolibvirt.log 2>&1 &&
    cp "$nolibvirt_target/release/vmove" "$nolibvirt_target/vmove-without-libvirt"
) &
nolibvirt_pid=$!
# The shipped build, as the README's first command makes it (`cargo build --release --locked -p
# vmove`: default features, no dev-dependencies): after the build without libvirt, whose binary is
# copied aside first, in the same folder (most of the tree is built there already).
(
  wait_for() { while kill -0 "$1" 2>/dev/null; do sleep 5; done; }
  wait_for "$nolibvirt_pid"
  CARGO_TARGET_DIR="$nolibvirt_target" nice -n 19 \
    cargo build -p vmove --release --locked > /tmp/vmove-build-shipped.log 2>&1
) &
shipped_pid=$!
(
  CARGO_TARGET_DIR="$doc_target" RUSTDOCFLAGS="-D warnings" nice -n 19 \
    cargo doc --no-deps --workspace --all-features --locked > /tmp/vmove-build-doc.log 2>&1
) &
doc_pid=$!

say "real-libvirt lab tests (lab/ci.sh)"
as_root env VMOVE_BIN="$vmove_bin" bash lab/ci.sh 2>&1 | tee /tmp/vmove-test-lab.log
lab=${PIPESTATUS[0]}

# Runs the demo of binary $1 (log $2, named $3 in a failure): it ends with one VM unmigratable
# on purpose (exit 2); anything else is a failure.
demo_ends_as_it_should() {
  "$1" demo --speed 40 --plain --no-journal > "$2" 2>&1
  local code=$?
  if [ "$code" != 2 ] || ! grep -q '11 moved, 1 unmigratable' "$2"; then
    echo "FAIL: the demo of $3 exited $code:"; tail -5 "$2"
    return 1
  fi
}

say "a build without libvirt, as on a Hyper-V admin's machine (waiting for the background build)"
nolibvirt_failed=0
nolibvirt="$nolibvirt_target/vmove-without-libvirt"
if ! wait "$nolibvirt_pid"; then
  echo "FAIL: vmove does not build without libvirt:"; tail -30 /tmp/vmove-build-nolibvirt.log; nolibvirt_failed=1
elif ldd "$nolibvirt" | grep -q libvirt; then
  echo "FAIL: the build without libvirt links libvirt:"; ldd "$nolibvirt" | grep libvirt; nolibvirt_failed=1
elif ! "$nolibvirt" --version | grep -q 'drivers: sim, hyperv)'; then
  echo "FAIL: its --version does not say 'drivers: sim, hyperv': $("$nolibvirt" --version)"; nolibvirt_failed=1
elif ! demo_ends_as_it_should "$nolibvirt" /tmp/vmove-nolibvirt-demo.log "the build without libvirt"; then
  nolibvirt_failed=1
else
  echo "ok: built without libvirt ($("$nolibvirt" --version)), no libvirt linked, the demo ran"
fi

# The shipped build: what the README's first command builds (the tests above and the lab ran the
# binary `cargo test` built, whose dependencies carry the tests' extra features).
say "the shipped build, as the README's first command makes it (waiting for the background build)"
shipped_failed=0
shipped="$nolibvirt_target/release/vmove"
if ! wait "$shipped_pid" || ! grep -q 'Finished' /tmp/vmove-build-shipped.log; then
  echo "FAIL: the shipped build failed:"; tail -30 /tmp/vmove-build-shipped.log; shipped_failed=1
elif ! "$shipped" --version | grep -q 'drivers: sim, libvirt, hyperv)'; then
  echo "FAIL: its --version does not say 'drivers: sim, libvirt, hyperv': $("$shipped" --version)"; shipped_failed=1
elif ! demo_ends_as_it_should "$shipped" /tmp/vmove-shipped-demo.log "the shipped build"; then
  shipped_failed=1
else
  echo "ok: the shipped build ($("$shipped" --version)) ran the demo"
fi

# The API docs build without a warning (broken intra-doc links, links to private items).
say "API docs (waiting for the background build)"
docs_failed=0
if ! wait "$doc_pid"; then
  echo "FAIL: the API docs have warnings:"; tail -40 /tmp/vmove-build-doc.log; docs_failed=1
else
  echo "ok: the API docs built without a warning"
fi
echo "build-checks: $((3 - nolibvirt_failed - shipped_failed - docs_failed)) passed, $((nolibvirt_failed + shipped_failed + docs_failed)) failed" | tee -a /tmp/vmove-test-lab.log
set -e

disk_report "at the end"
say "exit codes: workspace tests $unit, lab tests $lab, build without libvirt $nolibvirt_failed, shipped build $shipped_failed, API docs $docs_failed"
# One closing line over cargo's summaries and the lab scripts' ("lab-scripts: N passed, M failed").
cat /tmp/vmove-test-unit.log /tmp/vmove-test-lab.log |
  sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/p; s/^(lab-scripts|build-checks): ([0-9]+) passed, ([0-9]+) failed/\2 \3 0/p' |
  awk '{p+=$1; f+=$2; i+=$3} END {printf "total: %d passed, %d failed, %d skipped\n", p, f, i}'
[ "$unit" = 0 ] && [ "$lab" = 0 ] && [ "$nolibvirt_failed" = 0 ] && [ "$shipped_failed" = 0 ] && [ "$docs_failed" = 0 ]
