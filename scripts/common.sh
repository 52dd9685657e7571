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
