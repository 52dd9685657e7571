# shellcheck shell=bash
# Shared settings of the vmove lab scripts (sourced, not run).
#
# VMOVE_LAB_DIR    where the lab keeps its state (default /var/tmp/vmove-lab)
# VMOVE_LAB_HOSTS  the hosts to bring up (default "hostA hostB"; hostC, hostD... also work)
# VMOVE_LAB_IP_BASE  last byte of hostA's address (default 2). Two labs on one machine need
#                  different bases and port bases (they share the network namespace).
# VMOVE_LAB_PORT_BASE  first migration port (default 49152)
# VMOVE_LAB_NET    `loopback` (default) or `netns`: see below.
# VMOVE_LAB_MIN_FREE_MIB  up.sh refuses to start with less free under VMOVE_LAB_DIR (default 1024)
#
# Host i (0-based, by letter: hostA=0, hostB=1, ...) listens on 127.0.0.(BASE+i):16509, has host
# UUID 00000000-0000-4000-8000-0000000000(a+i) and migration ports PORT_BASE+32*i .. +31.
# Inside its namespace, /etc/libvirt, /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt and
# /run/libvirt are bind mounts of $LAB/<host>/{etc,lib,log,cache,run}, and the rest of /var/log is
# $LAB/<host>/varlog (swtpm's logs); a path P seen by that host's libvirtd and QEMU is at
# $(host_path <host> P) from outside.
#
# VMOVE_LAB_NET=netns (for network fault tests, e.g. lab/stall-net.sh): each host's libvirtd (and
# so its QEMUs) runs in a network namespace of its own, `vmove-<host>`, whose `eth0` is one end
# of a veth pair; the other end, `vmv-<host>` in the root namespace, is a port of the lab's bridge
# `vmvbr<BASE>`. The host's address is 198.18.0.(BASE+i)/24 (BASE defaults to 10 in this mode;
# 198.18.0.0/15 is the benchmark range, not routed anywhere), loopback is up inside. The bridge
# holds 198.18.0.(BASE-1) with one /32 route per host, so the root namespace (vmove, virsh)
# reaches every host, and two netns labs with distinct bases (and host names: the namespace and
# veth are named after the host) do not fight over a /24 route.
# `ip link set vmv-<host> down` cuts that host off: its libvirtd and its migration ports.

set -euo pipefail

LAB="${VMOVE_LAB_DIR:-/var/tmp/vmove-lab}"
HOSTS="${VMOVE_LAB_HOSTS:-hostA hostB}"
LAB_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Every vmove a lab script starts keeps its data in the lab folder, never under the user's
# $HOME: a script names its journal (`journal =` in its config or --journal), and any vmove
# that does not finds its default journal under $LAB/xdg-data instead of ~/.local/share
# (vmove's default journal is in $XDG_DATA_HOME; docs/config.md). lab/ci.sh checks that the
# lab scripts leave ~/.local/share/vmove untouched.
export XDG_DATA_HOME="$LAB/xdg-data"

log() { printf '[lab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "the lab needs root (unshare, bind mounts, useradd)"; }

host_index() {
  case "$1" in
    host[A-Z]) printf '%d' $(( $(printf '%d' "'${1#host}") - 65 )) ;;
    *) die "unknown lab host '$1' (hostA, hostB, ...)" ;;
  esac
}
LAB_NET="${VMOVE_LAB_NET:-loopback}"
case "$LAB_NET" in
  loopback) IP_BASE="${VMOVE_LAB_IP_BASE:-2}"; NET_PREFIX=127.0.0 ;;
  netns) IP_BASE="${VMOVE_LAB_IP_BASE:-10}"; NET_PREFIX=198.18.0 ;;
  *) die "VMOVE_LAB_NET must be loopback or netns, not '$LAB_NET'" ;;
esac
PORT_BASE="${VMOVE_LAB_PORT_BASE:-49152}"
host_ip() { printf '%s.%d' "$NET_PREFIX" $(( IP_BASE + $(host_index "$1") )); }
host_uri() { printf 'qemu+tcp://%s/system' "$(host_ip "$1")"; }
host_uuid() { printf '00000000-0000-4000-8000-%012x' $(( 10 + $(host_index "$1") )); }
host_port_min() { printf '%d' $(( PORT_BASE + 32 * $(host_index "$1") )); }
host_port_max() { printf '%d' $(( PORT_BASE + 32 * $(host_index "$1") + 31 )); }
host_dir() { printf '%s/%s' "$LAB" "$1"; }
# host_path HOST PATH: where PATH (as the host sees it) is from outside the namespace.
host_path() {
  local d; d="$(host_dir "$1")"
  case "$2" in
    /etc/libvirt*) printf '%s/etc%s' "$d" "${2#/etc/libvirt}" ;;
    /var/lib/libvirt*) printf '%s/lib%s' "$d" "${2#/var/lib/libvirt}" ;;
    /var/log/libvirt*) printf '%s/log%s' "$d" "${2#/var/log/libvirt}" ;;
    /var/log/*) printf '%s/varlog%s' "$d" "${2#/var/log}" ;;
    /var/cache/libvirt*) printf '%s/cache%s' "$d" "${2#/var/cache/libvirt}" ;;
    /run/libvirt*) printf '%s/run%s' "$d" "${2#/run/libvirt}" ;;
    *) printf '%s' "$2" ;;
  esac
}
vsh() { local h="$1"; shift; virsh -q -c "$(host_uri "$h")" "$@"; }
# bench_config FILE K: the benchmark's vmove config, hostA and hostB with K slots each
# (lab/bench.sh, lab/bench-cost.sh).
bench_config() {
  cat >"$1" <<TOML
[defaults]
progress_interval = "1s"
poll_interval = "5s"
default_host_limit = $2
[hosts.hostA]
driver = "libvirt"
uri = "$(host_uri hostA)"
max_migrations = $2
[hosts.hostB]
driver = "libvirt"
uri = "$(host_uri hostB)"
max_migrations = $2
TOML
}
# bench_wipe PREFIX...: no VM named PREFIX-<anything> on any lab host, nor its images and logs
# (lab/bench.sh, lab/bench-cost.sh).
bench_wipe() {
  local h d p
  for h in $HOSTS; do
    for p in "$@"; do
      for d in $(vsh "$h" list --all --name 2>/dev/null | grep -E "^$p-" || true); do
        vsh "$h" destroy "$d" >/dev/null 2>&1 || true; vsh "$h" undefine "$d" >/dev/null 2>&1 || true
      done
      rm -f "$(host_dir "$h")"/lib/images/"$p"-* "$(host_dir "$h")"/log/qemu/"$p"-*
    done
    vsh "$h" pool-refresh images >/dev/null
  done
}

# The pid of a host's libvirtd if it is alive (and really libvirtd), else nothing.
libvirtd_pid() {
  local f; f="$(host_dir "$1")/run/libvirtd.pid"
  [ -s "$f" ] || return 0
  local pid; pid="$(cat "$f")"
  if [ -d "/proc/$pid" ] && grep -q libvirtd "/proc/$pid/comm" 2>/dev/null; then
    printf '%s' "$pid"
  fi
}

# netns mode: the names of a host's network namespace and of its veth end in the root namespace
# (interface names have at most 15 characters), the lab's bridge and the bridge's address.
host_netns() { printf 'vmove-%s' "$1"; }
host_veth() { printf 'vmv-%s' "$1"; }
lab_bridge() { printf 'vmvbr%d' "$IP_BASE"; }
lab_bridge_ip() { printf '%s.%d' "$NET_PREFIX" $(( IP_BASE - 1 )); }
