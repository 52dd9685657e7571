#!/usr/bin/env bash
# Benchmark (not a test): N VMs with written disks moved hostA -> hostB by `virsh migrate` with
# 1 (a sequential loop), 2 and 4 parallel workers, then by `vmove migrate` with slots 1, 2 and 4.
# Prints, per k: vmove's makespan, k-parallel virsh's, three lower bounds and vmove / each, the
# speed-up over the sequential loop and over k-parallel virsh (docs/BENCHMARKS.md says what each
# bound means):
#   old bound         max(longest, sum / k) over the single (sequential) durations
#   tight bound       also p_(k) + p_(k+1) (k-th and (k+1)-th longest single) when N > k: of the
#                     k+1 longest migrations two must share a slot (migrations cannot be split)
#   contention bound  the tight bound over the durations measured with k virsh at once (this
#                     machine's 2 cores run every QEMU: k at once each take longer than one)
# and, from vmove's journal, each VM's start, end, verify + clean-up and the idle time of a slot
# between a migration's end and the next start ($LAB/bench-timeline-K.txt).
#
# vmove moves exactly the benchmark's VMs (`migrate 'hostA:bench-*' --to hostB`: hostA's
# evacuation when it holds nothing else; VMs other lab scripts left there are not touched).
# Beside each vmove run: what `vmove plan` predicted for the same move just before it,
# with the same config, calibrated from the benchmark's own journal ($LAB/bench-journal.db, new
# for each benchmark): the earlier runs of this benchmark, and a short calibration run right
# before (`vmove migrate` of three VMs of other sizes one at a time before the 1-slot plan, of k
# VMs at once before the k-slot plan), so each plan has a measured figure at its concurrency
# from the same minutes. The virsh runs are not journaled: they calibrate nothing.
# Order, so that the machine's load (other work on it) drifts as little as possible between what
# is compared: the sequential virsh loop; then for k = 1, 2, 4: k-parallel virsh (k > 1), the
# calibration at k, the plan, the vmove run.
#   BENCH_N (default 8), BENCH_DISK_MIB (128), BENCH_FILL_MIB (64), VMOVE_BIN
#   BENCH_REPEAT=R (default 1): R rounds per slot count, each a k-parallel virsh run and a vmove
#     run side by side (round 1 is the table above; the summary gives each round's ratio to its
#     own virsh run and the median of the rounds: this machine's noise is +-15 % run to run)
#   BENCH_NO_CLEANUP=1: also, after each vmove run, the same move with `cleanup = false` (in a
#   journal of its own: it calibrates nothing), to show what the source clean-up costs.
source "$(dirname "$0")/common.sh"
need_root
ROOT="$(cd "$LAB_SCRIPTS/.." && pwd)"
N="${BENCH_N:-8}"; DISK="${BENCH_DISK_MIB:-128}"; FILL="${BENCH_FILL_MIB:-64}"
"$LAB_SCRIPTS/up.sh"
vmove="${VMOVE_BIN:-}"
if [ -z "$vmove" ]; then
  (cd "$ROOT" && cargo build --release -p vmove >&2)
  vmove="${CARGO_TARGET_DIR:-$ROOT/target}/release/vmove"
fi

# wipe: no benchmark VM (nor its files) on any host. fresh: wipe, then N new VMs on hostA.
wipe() { bench_wipe bench benchcal; }
fresh() {
  wipe
  for i in $(seq 1 "$N"); do "$LAB_SCRIPTS/mkvm.sh" hostA "bench-$i" --size "$DISK" --fill "$FILL" >/dev/null; done
}
now() { date +%s.%N; }

load0="$(cut -d' ' -f1-3 /proc/loadavg)"

# One virsh migration, as a worker of the loop below: pre-create the destination image (sparse,
# the right size, as vmove does), migrate, print how long both took.
virsh_one() {
  local i="$1" s; s="$(now)"
  vsh hostB vol-create-as images "bench-$i-0.qcow2" "${DISK}M" --format qcow2 --allocation 0 >/dev/null
  vsh hostA migrate --live --copy-storage-all --persistent --undefinesource "bench-$i" "$(host_uri hostB)" >/dev/null
  echo "$(now) - $s" | bc
}
# virsh_run K: fresh VMs, migrated by K parallel workers (K=1: the sequential loop). Each
# migration's own duration goes to $LAB/bench-virsh-K.times (one a line), the makespan to
# $LAB/bench-virsh-K.makespan.
virsh_run() {
  local k="$1" t0 i; fresh; rm -f "$LAB"/bench-virsh-"$k".t.*
  t0="$(now)"
  for i in $(seq 1 "$N"); do
    while [ "$(jobs -rp | wc -l)" -ge "$k" ]; do wait -n || true; done
    virsh_one "$i" >"$LAB/bench-virsh-$k.t.$i" &
  done
  wait
  echo "$(now) - $t0" | bc >"$LAB/bench-virsh-$k.makespan"
  for i in $(seq 1 "$N"); do
    [ -s "$LAB/bench-virsh-$k.t.$i" ] || die "virsh migration of bench-$i with $k at once failed"
    cat "$LAB/bench-virsh-$k.t.$i"
  done >"$LAB/bench-virsh-$k.times"
  rm -f "$LAB"/bench-virsh-"$k".t.*
}
# bound FILE K TIGHT: a lower bound on the makespan of N indivisible jobs (durations in FILE) on
# K identical slots: max(longest, sum / K) (TIGHT=0, the old bound) and, when TIGHT=1 and N > K,
# also p_(K) + p_(K+1), the K-th and (K+1)-th longest (of the K+1 longest jobs two share a slot).
bound() {
  sort -gr "$1" | awk -v k="$2" -v tight="$3" '
    { p[NR] = $1; sum += $1 }
    END { b = p[1]; if (sum / k > b) b = sum / k
          if (tight && NR > k && p[k] + p[k + 1] > b) b = p[k] + p[k + 1]
          printf "%.3f", b }'
}
sumof() { awk '{ s += $1 } END { printf "%.3f", s }' "$1"; }
maxof() { sort -gr "$1" | head -1; }

declare -A vk
virsh_run 1; vk[1]="$(cat "$LAB/bench-virsh-1.makespan")"
seq_makespan="${vk[1]}"; single="$LAB/bench-single.times"; cp "$LAB/bench-virsh-1.times" "$single"
R="${BENCH_REPEAT:-1}"
rounds="$LAB/bench-rounds.txt"; : >"$rounds"   # k round vmove virsh contention-bound
sum="$(sumof "$single")"; longest="$(maxof "$single")"
echo "virsh sequential: makespan ${seq_makespan} s (sum of single migrations ${sum} s, longest ${longest} s)" >&2

journal="$LAB/bench-journal.db"
rm -f "$journal" "$journal-wal" "$journal-shm"
# The slot limit is the hosts' default limit (libvirt reports none), so that k slots really
# means k migrations at once (a host's max_migrations only caps that limit).
config() { bench_config "$LAB/bench.toml" "$1"; }

# calibrate K: a journaled `vmove migrate` of K calibration VMs at once (K=1: three VMs of other
# sizes than the benchmark's, one at a time, so that a fixed cost per migration and a per-byte
# rate can be told apart). Run right before the plan and the vmove run with K slots (and right
# after k-parallel virsh), so that all three see the machine as loaded as it is then.
calibrate() {
  local k="$1" i names=() sizes
  if [ "$k" = 1 ]; then
    sizes="$(( FILL / 4 > 0 ? FILL / 4 : 1 )) $(( FILL * 2 )) $FILL"
  else
    sizes="$(for _ in $(seq 1 "$k"); do printf '%s ' "$FILL"; done)"
  fi
  local cal_disk=$(( DISK > FILL * 2 ? DISK : FILL * 2 ))
  i=0
  for f in $sizes; do
    i=$((i + 1))
    "$LAB_SCRIPTS/mkvm.sh" hostA "benchcal-$i" --size "$cal_disk" --fill "$f" >/dev/null
    names+=("hostA:benchcal-$i")
  done
  config "$k"
  "$vmove" --config "$LAB/bench.toml" --journal "$journal" --plain migrate "${names[@]}" \
    --to hostB >>"$LAB/bench-cal.log" 2>&1 || { tail -5 "$LAB/bench-cal.log"; die "the calibration run with $k at once failed"; }
}
: >"$LAB/bench-cal.log"

# timeline K: from the journal's last run, each VM's start (start_migration asked), started (the
# driver's answer: image pre-created, migration begun), migration end (its transition to
# verifying, when its slot is freed), moved (verified and cleaned up), and for each
# start after the first K how long after the latest migration end it came (the slot's idle time).
timeline() {
  python3 - "$journal" >"$LAB/bench-timeline-$1.txt" <<'PY'
import sqlite3, sys, json
db = sqlite3.connect(sys.argv[1])
run = db.execute("select id from runs order by created_at desc limit 1").fetchone()[0]
vms = {}
for at, kind, name, body in db.execute(
        "select at, kind, name, body from entries where run_id=? and vm is not null order by seq", (run,)):
    b = json.loads(body); v = vms.setdefault(b.get("vm"), {})
    if kind == "intent" and name == "start_migration": v.setdefault("start", at); v["name"] = b["vm_name"]
    if kind == "outcome" and name == "migration_started": v.setdefault("started", at)
    if kind == "event" and name == "transition" and b.get("to") == "verifying": v.setdefault("end", at)
    if kind == "event" and name == "moved": v["moved"] = at
vs = sorted((v for v in vms.values() if "start" in v), key=lambda v: v["start"])
ends = sorted(v["end"] for v in vs if "end" in v)
idle = []
print("vm start_ms started_ms end_ms moved_ms start_call_s migration_s verify+cleanup_s idle_before_start_ms")
for v in vs:
    prior = [e for e in ends if e <= v["start"]]
    gap = v["start"] - prior[-1] if prior else None
    if gap is not None: idle.append(gap)
    print(v.get("name"), v["start"], v.get("started"), v.get("end"), v.get("moved"),
          round((v.get("started", 0) - v["start"]) / 1000, 2), round((v.get("end", 0) - v["start"]) / 1000, 2),
          round((v.get("moved", 0) - v.get("end", 0)) / 1000, 2), gap)
if idle: print("slot idle between a migration's end and the next start: max %d ms, total %d ms" % (max(idle), sum(idle)))
print("makespan by the journal (first start to last moved): %.2f s" % ((max(v.get("moved", 0) for v in vs) - vs[0]["start"]) / 1000))
PY
}

rows=(); declare -A nc
for k in 1 2 4; do
  # Side by side: k-parallel virsh, then vmove's calibration at k at once, its plan and its run.
  [ "$k" = 1 ] || { virsh_run "$k"; vk[$k]="$(cat "$LAB/bench-virsh-$k.makespan")"; }
  fresh
  calibrate "$k"
  config "$k"
  "$vmove" --config "$LAB/bench.toml" --journal "$journal" --plain plan migrate 'hostA:bench-*' --to hostB \
    >"$LAB/bench-plan-$k.txt" 2>&1 || { cat "$LAB/bench-plan-$k.txt"; die "vmove plan failed with $k slots"; }
  p="$(sed -n 's/^ETA: .*(\([0-9.]*\) s).*/\1/p' "$LAB/bench-plan-$k.txt")"
  [ -n "$p" ] || { cat "$LAB/bench-plan-$k.txt"; die "no ETA in the plan"; }
  s="$(now)"
  "$vmove" --config "$LAB/bench.toml" --journal "$journal" --plain migrate 'hostA:bench-*' --to hostB >"$LAB/bench-$k.log" 2>&1 || { tail -5 "$LAB/bench-$k.log"; die "vmove failed with $k slots"; }
  m="$(echo "$(now) - $s" | bc)"
  timeline "$k"
  lb_old="$(bound "$single" "$k" 0)"; lb_tight="$(bound "$single" "$k" 1)"
  lb_cont="$(bound "$LAB/bench-virsh-$k.times" "$k" 1)"
  echo "$k 1 $m ${vk[$k]} $lb_cont $p" >>"$rounds"
  rows+=("$(printf '| %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f | %.2f | %.2fx | %.2fx | %.1f | %+.1f %% |' \
    "$k" "$m" "${vk[$k]}" "$lb_old" "$lb_tight" "$lb_cont" "$(echo "$m / $lb_old" | bc -l)" "$(echo "$m / $lb_tight" | bc -l)" \
    "$(echo "$m / $lb_cont" | bc -l)" "$(echo "$seq_makespan / $m" | bc -l)" "$(echo "${vk[$k]} / $m" | bc -l)" \
    "$p" "$(echo "($p - $m) * 100 / $m" | bc -l)")")
  if [ "${BENCH_NO_CLEANUP:-0}" = 1 ]; then
    # The same move with nothing removed from the source afterwards (`cleanup = false`; the
    # verification stays), in a journal of its own so that it calibrates no plan: how much of
    # vmove's time against k-parallel virsh (which removes nothing) the clean-up is.
    fresh
    nj="$LAB/bench-nocleanup.db"; rm -f "$nj" "$nj-wal" "$nj-shm"
    s="$(now)"
    VMOVE_CLEANUP=false "$vmove" --config "$LAB/bench.toml" --journal "$nj" --plain migrate 'hostA:bench-*' --to hostB \
      >"$LAB/bench-nocleanup-$k.log" 2>&1 || { tail -5 "$LAB/bench-nocleanup-$k.log"; die "vmove (cleanup = false) failed with $k slots"; }
    nc[$k]="$(echo "$(now) - $s" | bc)"
  fi
  # More rounds, each k-parallel virsh and vmove side by side.
  for r in $(seq 2 "$R"); do
    virsh_run "$k"
    fresh
    s="$(now)"
    "$vmove" --config "$LAB/bench.toml" --journal "$journal" --plain migrate 'hostA:bench-*' --to hostB >"$LAB/bench-$k.log" 2>&1 || { tail -5 "$LAB/bench-$k.log"; die "vmove failed with $k slots (round $r)"; }
    echo "$k $r $(echo "$(now) - $s" | bc) $(cat "$LAB/bench-virsh-$k.makespan") $(bound "$LAB/bench-virsh-$k.times" "$k" 1)" >>"$rounds"
  done
done
printf 'N=%s VMs, %s MiB disks with %s MiB written, 64 MiB RAM, TCG, 2 cores; load before: %s, after: %s\n' "$N" "$DISK" "$FILL" "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'virsh sequential loop: makespan %.1f s (sum of single migrations %.1f s, longest %.1f s)\n' "$seq_makespan" "$sum" "$longest"
for k in 2 4; do
  printf 'virsh %d at once: makespan %.1f s (its migrations: sum %.1f s, longest %.1f s)\n' "$k" "${vk[$k]}" \
    "$(sumof "$LAB/bench-virsh-$k.times")" "$(maxof "$LAB/bench-virsh-$k.times")"
done
printf '| slots | vmove (s) | virsh k at once (s) | old bound (s) | tight bound (s) | contention bound (s) | vmove / old | vmove / tight | vmove / contention | speed-up over virsh loop | over virsh k at once | plan ETA (s) | plan error |\n'
printf '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
printf '%s\n' "${rows[@]}"
if [ "${BENCH_NO_CLEANUP:-0}" = 1 ]; then
  for k in 1 2 4; do
    printf 'vmove %d slots with cleanup = false (nothing removed from hostA): %.1f s (%.2f x k-parallel virsh)\n' \
      "$k" "${nc[$k]}" "$(echo "${nc[$k]} / ${vk[$k]}" | bc -l)"
  done
fi
if [ "$R" -gt 1 ]; then
  python3 - "$rounds" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
print("%d rounds per slot count, each k-parallel virsh and vmove side by side (%s):" % (max(int(r[1]) for r in rows), sys.argv[1]))
print("| slots | vmove median (s) | virsh k at once median (s) | contention bound median (s) | vmove / contention bound, per round | median | rounds within 1.10x | vmove / virsh k at once, per round | median | plan ETA (s) | plan error against the median |")
print("| ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: |")
for k in sorted({int(r[0]) for r in rows}):
    rs = [r for r in rows if int(r[0]) == k]
    m = [float(r[2]) for r in rs]; v = [float(r[3]) for r in rs]; b = [float(r[4]) for r in rs]
    rb = [x / y for x, y in zip(m, b)]; rv = [x / y for x, y in zip(m, v)]
    eta = float(rs[0][5])
    print("| %d | %.2f | %.2f | %.2f | %s | %.2f | %d of %d | %s | %.2f | %.1f | %+.1f %% |" % (
        k, st.median(m), st.median(v), st.median(b), " ".join("%.2f" % x for x in rb), st.median(rb),
        sum(1 for x in rb if x <= 1.10), len(rb), " ".join("%.2f" % x for x in rv), st.median(rv),
        eta, (eta - st.median(m)) * 100 / st.median(m)))
PY
fi
printf 'plans: %s/bench-plan-{1,2,4}.txt; the last plan'"'"'s figures:\n' "$LAB"
sed -n '2,3p' "$LAB/bench-plan-4.txt"
for k in 1 2 4; do printf 'vmove %d slots, from the journal (%s):\n' "$k" "$LAB/bench-timeline-$k.txt"; tail -2 "$LAB/bench-timeline-$k.txt"; done
# Leave no benchmark VM running (8 QEMUs would load the machine for whatever runs next).
wipe >/dev/null 2>&1 || true
