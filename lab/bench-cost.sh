#!/usr/bin/env bash
# What one move costs the hosts and vmove (not a test; docs/BENCHMARKS.md): N fresh bench VMs
# (as lab/bench.sh makes them) moved hostA -> hostB by `vmove migrate` with K slots, and
#   - the CPU time each host's libvirtd used meanwhile (from /proc/<pid>/stat) and vmove's own
#     (user + system), and the wall time;
#   - with COUNT_CALLS=1, how many libvirt calls vmove made, by procedure number (libvirt's
#     client log, LIBVIRT_LOG_FILTERS=1:rpc.netclient; the numbers are remote_protocol.x's:
#     14 domain XML, 83 pool refresh, 95 volume look-up, 99 volume XML, ...);
#   - with COUNT_SYNCS=1, how many fsync/fdatasync calls vmove made and how long they took
#     (strace; the journal's syncs). With either, the CPU and wall figures include the tracing.
# Usage (root): lab/bench-cost.sh K [true|false (cleanup, default true)]
#   VMOVE_BIN=path (default: built with cargo, release), BENCH_N (8), BENCH_DISK_MIB (128),
#   BENCH_FILL_MIB (64)
source "$(dirname "$0")/common.sh"
need_root
K="${1:?usage: lab/bench-cost.sh K [true|false]}"; CLEANUP="${2:-true}"
case "$CLEANUP" in true|false) ;; *) die "cleanup must be true or false, not '$CLEANUP'" ;; esac
N="${BENCH_N:-8}"; DISK="${BENCH_DISK_MIB:-128}"; FILL="${BENCH_FILL_MIB:-64}"
ROOT="$(cd "$LAB_SCRIPTS/.." && pwd)"
"$LAB_SCRIPTS/up.sh" >&2
vmove="${VMOVE_BIN:-}"
if [ -z "$vmove" ]; then
  (cd "$ROOT" && cargo build --release -p vmove >&2)
  vmove="${CARGO_TARGET_DIR:-$ROOT/target}/release/vmove"
fi
work="$LAB/bench-cost"; mkdir -p "$work"
wipe() { bench_wipe bench; }
wipe
for i in $(seq 1 "$N"); do "$LAB_SCRIPTS/mkvm.sh" hostA "bench-$i" --size "$DISK" --fill "$FILL" >/dev/null; done
bench_config "$work/cost.toml" "$K"
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"
pa="$(libvirtd_pid hostA)"; pb="$(libvirtd_pid hostB)"
[ -n "$pa" ] && [ -n "$pb" ] || die "a lab libvirtd is not running"
rm -f "$work"/journal.db* "$work"/rpc.log "$work"/syncs.txt
pre=(); env_extra=()
[ "${COUNT_SYNCS:-0}" = 1 ] && pre=(strace -f -e trace=fsync,fdatasync -T -o "$work/syncs.txt")
[ "${COUNT_CALLS:-0}" = 1 ] && env_extra=(LIBVIRT_LOG_FILTERS=1:rpc.netclient "LIBVIRT_LOG_OUTPUTS=1:file:$work/rpc.log")
sleep 1
a0="$(ticks "$pa")"; b0="$(ticks "$pb")"
"${pre[@]}" env VMOVE_CLEANUP="$CLEANUP" "${env_extra[@]}" /usr/bin/time -f '%U %S %e' -o "$work/time.txt" \
  "$vmove" --config "$work/cost.toml" --journal "$work/journal.db" --plain migrate 'hostA:bench-*' --to hostB \
  >"$work/vmove.log" 2>&1 || { tail -5 "$work/vmove.log"; die "vmove failed"; }
a1="$(ticks "$pa")"; b1="$(ticks "$pb")"
read -r u s e <"$work/time.txt"
printf 'K=%s cleanup=%s N=%s: wall %.2f s; vmove CPU %.2f s (user %.2f, system %.2f); libvirtd CPU: hostA %.2f s, hostB %.2f s\n' \
  "$K" "$CLEANUP" "$N" "$e" "$(echo "$u + $s" | bc)" "$u" "$s" \
  "$(echo "($a1 - $a0) / $hz" | bc -l)" "$(echo "($b1 - $b0) / $hz" | bc -l)"
if [ "${COUNT_CALLS:-0}" = 1 ]; then
  printf 'libvirt calls: %s; by procedure (count procedure):' "$(grep -c RPC_CLIENT_MSG_TX_QUEUE "$work/rpc.log")"
  grep -o 'RPC_CLIENT_MSG_TX_QUEUE: .* proc=[0-9]*' "$work/rpc.log" | sed 's/.*proc=//' | sort | uniq -c | sort -rn | head -12 | awk '{ printf " %s %s;", $1, $2 }'
  echo
fi
if [ "${COUNT_SYNCS:-0}" = 1 ]; then
  grep -o '<[0-9.]*>' "$work/syncs.txt" | tr -d '<>' | sort -g | awk '{ a[NR] = $1; s += $1 }
    END { printf "syncs: %d, %.3f s in all, median %.1f ms, 90th percentile %.1f ms, longest %.1f ms\n",
          NR, s, a[int((NR + 1) / 2)] * 1000, a[int(NR * 0.9)] * 1000, a[NR] * 1000 }'
fi
wipe >/dev/null 2>&1 || true
