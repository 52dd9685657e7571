#!/usr/bin/env bash
# Benchmark (not a test): N VMs with written disks moved hostA -> hostB by a sequential
# `virsh migrate` loop, then by `vmove evacuate` with slots 1, 2 and 4. Prints each makespan,
# makespan / lower bound and the speed-up over the virsh loop. The lower bound for k slots is
# max(longest single migration, sum of single migration times / k), single times measured by
# the virsh loop. This machine has 2 cores running every QEMU (TCG): parallel migrations share
# them, so the bound (which assumes k migrations cost no more than one) is optimistic here.
#
# vmove moves exactly the benchmark's VMs (`migrate 'hostA:bench-*' --to hostB`: hostA's
# evacuation when it holds nothing else; VMs other lab scripts left there are not touched).
# Beside each vmove run: what `vmove plan` predicted for the same move just before it,
# with the same config, calibrated from the benchmark's own journal ($LAB/bench-journal.db, new
# for each benchmark): the earlier vmove runs of this benchmark, and first two short calibration
# runs (`vmove migrate` of three VMs of other sizes one at a time, then of two VMs at once) so
# the very first plan has measured figures too. The virsh loop is not journaled: it calibrates
# nothing.
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
    for d in $(vsh "$h" list --all --name 2>/dev/null | grep -E '^(bench|benchcal)-' || true); do
      vsh "$h" destroy "$d" >/dev/null 2>&1 || true; vsh "$h" undefine "$d" >/dev/null 2>&1 || true
    done
    rm -f "$(host_dir "$h")"/lib/images/bench-* "$(host_dir "$h")"/log/qemu/bench-*
    rm -f "$(host_dir "$h")"/lib/images/benchcal-* "$(host_dir "$h")"/log/qemu/benchcal-*
    vsh "$h" pool-refresh images >/dev/null
  done
  for i in $(seq 1 "$N"); do "$LAB_SCRIPTS/mkvm.sh" hostA "bench-$i" --size "$DISK" --fill "$FILL" >/dev/null; done
}
now() { date +%s.%N; }

load0="$(cut -d' ' -f1-3 /proc/loadavg)"
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
echo "virsh sequential: makespan ${seq_makespan} s (sum of single migrations ${sum} s, longest ${longest} s)" >&2

journal="$LAB/bench-journal.db"
rm -f "$journal" "$journal-wal" "$journal-shm"
# The slot limit is the hosts' default limit (libvirt reports none), so that k slots really
# means k migrations at once (a host's max_migrations only caps that limit).
config() {
  cat >"$LAB/bench.toml" <<TOML
[defaults]
progress_interval = "1s"
poll_interval = "5s"
default_host_limit = $1
[hosts.hostA]
driver = "libvirt"
uri = "$(host_uri hostA)"
max_migrations = $1
[hosts.hostB]
driver = "libvirt"
uri = "$(host_uri hostB)"
max_migrations = $1
TOML
}

# Calibration runs, journaled: three VMs of other sizes than the benchmark's (so a fixed cost per
# migration and a per-byte rate can be told apart) moved one at a time, then two moved at once
# (what running together costs on these hosts).
fresh
cal_small=$(( FILL / 4 > 0 ? FILL / 4 : 1 )); cal_big=$(( FILL * 2 )); cal_disk=$(( DISK > cal_big ? DISK : cal_big ))
i=0
for f in "$cal_small" "$cal_big" "$FILL" "$FILL" "$FILL"; do
  i=$((i + 1))
  "$LAB_SCRIPTS/mkvm.sh" hostA "benchcal-$i" --size "$cal_disk" --fill "$f" >/dev/null
done
config 1
"$vmove" --config "$LAB/bench.toml" --journal "$journal" --plain migrate hostA:benchcal-1 hostA:benchcal-2 hostA:benchcal-3 \
  --to hostB >"$LAB/bench-cal.log" 2>&1 || { tail -5 "$LAB/bench-cal.log"; die "the calibration run failed"; }
config 2
"$vmove" --config "$LAB/bench.toml" --journal "$journal" --plain migrate hostA:benchcal-4 hostA:benchcal-5 \
  --to hostB >>"$LAB/bench-cal.log" 2>&1 || { tail -5 "$LAB/bench-cal.log"; die "the calibration run failed"; }

rows=()
for k in 1 2 4; do
  fresh
  config "$k"
  "$vmove" --config "$LAB/bench.toml" --journal "$journal" --plain plan migrate 'hostA:bench-*' --to hostB \
    >"$LAB/bench-plan-$k.txt" 2>&1 || { cat "$LAB/bench-plan-$k.txt"; die "vmove plan failed with $k slots"; }
  p="$(sed -n 's/^ETA: .*(\([0-9.]*\) s).*/\1/p' "$LAB/bench-plan-$k.txt")"
  [ -n "$p" ] || { cat "$LAB/bench-plan-$k.txt"; die "no ETA in the plan"; }
  s="$(now)"
  "$vmove" --config "$LAB/bench.toml" --journal "$journal" --plain migrate 'hostA:bench-*' --to hostB >"$LAB/bench-$k.log" 2>&1 || { tail -5 "$LAB/bench-$k.log"; die "vmove failed with $k slots"; }
  m="$(echo "$(now) - $s" | bc)"
  lb="$(echo "a = $sum / $k; if ($longest > a) $longest else a" | bc -l)"
  case $k in 1) from="calibration runs" ;; 2) from="calibration + slots=1" ;; *) from="calibration + slots=1,2" ;; esac
  rows+=("$(printf '| %d | %.1f | %.1f | %.2f | %.2fx | %.1f | %+.1f %% | %s |' "$k" "$m" "$lb" "$(echo "$m / $lb" | bc -l)" \
    "$(echo "$seq_makespan / $m" | bc -l)" "$p" "$(echo "($p - $m) * 100 / $m" | bc -l)" "$from")")
done
printf 'N=%s VMs, %s MiB disks with %s MiB written, 64 MiB RAM, TCG, 2 cores; load before: %s\n' "$N" "$DISK" "$FILL" "$load0"
printf 'virsh sequential loop: makespan %.1f s (sum of single migrations %.1f s, longest %.1f s)\n' "$seq_makespan" "$sum" "$longest"
printf '| slots | vmove makespan (s) | lower bound (s) | makespan / bound | speed-up over virsh | plan ETA (s) | plan error | plan calibrated from |\n'
printf '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n'
printf '%s\n' "${rows[@]}"
printf 'plans: %s/bench-plan-{1,2,4}.txt; the last plan'"'"'s figures:\n' "$LAB"
sed -n '2,3p' "$LAB/bench-plan-4.txt"
fresh >/dev/null 2>&1 || true
