#!/usr/bin/env bash
# Tears the lab down, by pid only: aborts every domain job, destroys running domains (in parallel),
# SIGTERMs each libvirtd by its pid file, then any QEMU left by its pid in run/qemu/*.pid.
# Keeps the hosts' disks, definitions and the QEMU capability cache (up.sh is fast next time);
# `down.sh --wipe` also deletes $VMOVE_LAB_DIR.
# VMOVE_LAB_NET=netns: first sets every host's link up (a test may have left one cut), and at the
# end deletes each host's veth pair, /32 route and network namespace, then the lab's bridge once
# no port is left on it. Only the lab's own names (lab/common.sh) are touched.
source "$(dirname "$0")/common.sh"
need_root

wipe=0
[ "${1:-}" = "--wipe" ] && wipe=1

alive() { [ -d "/proc/$1" ]; }

if [ "$LAB_NET" = netns ]; then
  for h in $HOSTS; do
    if [ -d "/sys/class/net/$(host_veth "$h")" ]; then ip link set "$(host_veth "$h")" up || true; fi
  done
fi

for h in $HOSTS; do
  [ -d "$(host_dir "$h")" ] || continue
  if [ -n "$(libvirtd_pid "$h")" ] && vsh "$h" version >/dev/null 2>&1; then
    pids=()
    for dom in $(vsh "$h" list --name 2>/dev/null); do
      vsh "$h" domjobabort "$dom" >/dev/null 2>&1 || true
      vsh "$h" destroy "$dom" >/dev/null 2>&1 &
      pids+=("$!")
    done
    # Waits only for the virsh children just started, by pid (never a bare wait).
    for p in "${pids[@]}"; do wait "$p" || true; done
  fi
done

for h in $HOSTS; do
  pid="$(libvirtd_pid "$h")"
  [ -n "$pid" ] || continue
  log "stopping $h libvirtd (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then log "$h libvirtd (pid $pid) ignores SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
done

for h in $HOSTS; do
  for f in "$(host_dir "$h")"/run/qemu/*.pid; do
    [ -s "$f" ] || continue
    pid="$(cat "$f")"
    if alive "$pid" && grep -q qemu "/proc/$pid/comm" 2>/dev/null; then
      log "stopping leftover QEMU pid $pid ($f)"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
      alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    fi
  done
done

if [ "$LAB_NET" = netns ]; then
  br="$(lab_bridge)"
  for h in $HOSTS; do
    ns="$(host_netns "$h")"; veth="$(host_veth "$h")"
    if [ -d "/sys/class/net/$veth" ]; then ip link del "$veth"; fi
    if [ -d "/sys/class/net/$br" ]; then ip route del "$(host_ip "$h")/32" dev "$br" 2>/dev/null || true; fi
    if [ -e "/run/netns/$ns" ]; then log "deleting network namespace $ns"; ip netns del "$ns"; fi
  done
  if [ -d "/sys/class/net/$br" ] && [ -z "$(ls -A "/sys/class/net/$br/brif")" ]; then
    log "deleting bridge $br"
    ip link del "$br"
  fi
fi

if [ "$wipe" = 1 ]; then
  log "wiping $LAB"
  rm -rf "${LAB:?}"
fi
log "lab down"
