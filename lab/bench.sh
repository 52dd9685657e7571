#!/usr/bin/env bash
# Benchmark (not a test): N VMs with written disks moved hostA -> hostB by a sequential
# `virsh migrate` loop, then by `vmove evacuate` with slots 1, 2 and 4. Prints each makespan,
# makespan / lower bound and the speed-up over the virsh loop. The lower bound for k slots is
# max(longest single migration, sum of single migration times / k), single times measured by
# the virsh loop. This machine has 2 cores running every QEMU (TCG): parallel migrations share
# them, so the bound (which assumes k migrations cost no more than one) is optimistic here.
#   BENCH_N (default 6), BENCH_DISK_MIB (128), BENCH_FILL_MIB (64), VMOVE_BIN
source "$(dirname "$0")/common.sh"
need_root
ROOT="$(cd "$LAB_SCRIPTS/.." && pwd)"
N="${BENCH_N:-6}"; DISK="${BENCH_DISK_MIB:-128}"; FILL="${BENCH_FILL_MIB:-64}"
"$LAB_SCRIPTS/up.sh"
vmove="${VMOVE_BIN:-}"
if [ -z "$vmove" ]; then
  (cd "$ROOT" && cargo build --release -p vmove >&2)
  vmove="${CARGO_TARGET_DIR:-$ROOT/target}/release/vmove"
fi

fresh() {
  for h in $HOSTS; do
    for d in $(vsh "$h" list --all --name 2>/dev/null | grep '^bench-' || true); do
      vsh "$h" destroy "$d" >/dev/null 2>&1 || true; vsh "$h" undefine "$d" >/dev/null 2>&1 || true
    done
    rm -f "$(host_dir "$h")"/lib/images/bench-* "$(host_dir "$h")"/log/qemu/bench-*
    vsh "$h" pool-refresh images >/dev/null
  done
  for i in $(seq 1 "$N"); do "$LAB_SCRIPTS/mkvm.sh" hostA "bench-$i" --size "$DISK" --fill "$FILL" >/dev/null; done
}
now() { date +%s.%N; }

fresh
declare -a t
t0="$(now)"
for i in $(seq 1 "$N"); do
  s="$(now)"
  # The destination image must exist with the right size (sparse), as vmove pre-creates it.
  vsh hostB vol-create-as images "bench-$i-0.qcow2" "${DISK}M" --format qcow2 --allocation 0 >/dev/null
  vsh hostA migrate --live --copy-storage-all --persistent --undefinesource "bench-$i" "$(host_uri hostB)"
  t[$i]="$(echo "$(now) - $s" | bc)"
done
seq_makespan="$(echo "$(now) - $t0" | bc)"
sum=0; longest=0
for i in $(seq 1 "$N"); do sum="$(echo "$sum + ${t[$i]}" | bc)"; longest="$(echo "if (${t[$i]} > $longest) ${t[$i]} else $longest" | bc)"; done
echo "virsh sequential: makespan ${seq_makespan} s (sum of single migrations ${sum} s, longest ${longest} s)"

results=()
for k in 1 2 4; do
  fresh
  cfg="$LAB/bench.toml"
  cat >"$cfg" <<TOML
[defaults]
progress_interval = "1s"
poll_interval = "5s"
[hosts.hostA]
driver = "libvirt"
uri = "$(host_uri hostA)"
max_migrations = $k
[hosts.hostB]
driver = "libvirt"
uri = "$(host_uri hostB)"
max_migrations = $k
TOML
  s="$(now)"
  "$vmove" --config "$cfg" --plain evacuate hostA --to hostB >"$LAB/bench-$k.log" 2>&1 || { tail -5 "$LAB/bench-$k.log"; die "vmove failed with $k slots"; }
  m="$(echo "$(now) - $s" | bc)"
  lb="$(echo "a = $sum / $k; if ($longest > a) $longest else a" | bc -l)"
  results+=("$(printf 'vmove slots=%d: makespan %.1f s, lower bound %.1f s, makespan/bound %.2f, speed-up over virsh %.2fx' "$k" "$m" "$lb" "$(echo "$m / $lb" | bc -l)" "$(echo "$seq_makespan / $m" | bc -l)")")
done
printf 'N=%s VMs, %s MiB disks with %s MiB written, 64 MiB RAM, TCG, 2 cores\n' "$N" "$DISK" "$FILL"
printf 'virsh sequential loop: makespan %.1f s\n' "$seq_makespan"
printf '%s\n' "${results[@]}"
fresh >/dev/null 2>&1 || true
