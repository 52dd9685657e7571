# shellcheck shell=bash
# Shared by scripts/demo.sh and scripts/test.sh (sourced, not run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Each step names its wall-clock time and the seconds since the script began, so a slow step shows.
say() { printf '==> [%s +%ss] %s\n' "$(date +%H:%M:%S)" "$SECONDS" "$*" >&2; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else say "need root (or sudo) to run: $*"; exit 1
  fi
}

# The system packages the build links against: libvirt's development files and pkg-config.
install_build_deps() {
  if pkg-config --exists libvirt 2>/dev/null; then
    return 0
  fi
  say "installing build dependencies: libvirt-dev pkgconf (as root)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libvirt-dev pkgconf >/dev/null
  pkg-config --exists libvirt || { say "libvirt-dev did not install"; exit 1; }
}

need_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || {
    say "cargo not found: install Rust 1.95 (https://rustup.rs), then run this again"
    exit 1
  }
}

# Free space where the run writes: the build (target/), /tmp (the logs) and /var/tmp (the lab's
# disks). A CI run once failed with "No space left on device" in the lab tests and nothing in the
# log said how much there had been; each step's line now says. Warns when under `$2` GiB.
disk_report() {
  local when="$1" want_gib="${2:-0}" dir line avail_kib mount seen=" "
  for dir in "${CARGO_TARGET_DIR:-$ROOT/target}" /tmp /var/tmp; do
    while [ ! -d "$dir" ]; do dir="$(dirname "$dir")"; done
    line="$(df -Pk "$dir" 2>/dev/null | awk 'NR==2 {print $4, $6}')"
    [ -n "$line" ] || continue
    avail_kib="${line%% *}"; mount="${line#* }"
    case "$seen" in *" $mount "*) continue ;; esac
    seen="$seen$mount "
    say "disk $when: $((avail_kib / 1024 / 1024)) GiB free on $mount (holds $dir)"
    if [ "$want_gib" -gt 0 ] && [ "$avail_kib" -lt $((want_gib * 1024 * 1024)) ]; then
      say "warning: under $want_gib GiB free on $mount; the next step may fail with 'No space left on device'"
    fi
  done
}
