#!/usr/bin/env bash
# The scale table's work counted, not timed (docs/BENCHMARKS.md, Scale): for each size, the
# instructions the simulated evacuation runs, and its reads that miss a simulated cache, per
# command and per VM. Valgrind's cachegrind counts every instruction the program runs, the same on any
# machine and at any hour, and simulates one cache of a size given here (not the machine's),
# so the figures tell whether the work per command grows with the cluster, apart from how fast
# this machine's memory is at the moment.
#
# Each size is counted twice: `vmove-bench --scale-build` (the cluster and its lower bound built,
# nothing run) and `--scale-run` (the same, then the run); the run's own figures are the
# difference.
#
# Usage: scripts/bench-instructions.sh [VMS:HOSTS ...]   (default: 1000:50 10000:500 100000:5000)
# Takes about 10 minutes for the default sizes (the 100,000-VM run about 7 of them: cachegrind
# runs a program some 60 times slower). Needs valgrind (`apt-get install valgrind`).
set -euo pipefail

cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000:50 10000:500 100000:5000)
for size in "${sizes[@]}"; do
    if ! [[ $size =~ ^[0-9]+:[0-9]+$ ]]; then
        echo "bench-instructions: '$size' is not VMS:HOSTS (two whole numbers, e.g. 1000:50)" >&2
        exit 2
    fi
done
if ! command -v valgrind > /dev/null; then
    echo "bench-instructions: valgrind is not installed (Debian: apt-get install valgrind)" >&2
    exit 1
fi

cargo build --profile benchmark -p vmove-sim --bin vmove-bench >&2
bench="${CARGO_TARGET_DIR:-target}/benchmark/vmove-bench"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The simulated caches, fixed so that the counts do not depend on this machine's: a first level
# of 48 KiB (12-way) for data and 32 KiB for instructions, and one last level of 32 MiB
# (16-way), a tenth of the 100,000-VM run's memory.
caches=(--I1=32768,8,64 --D1=49152,12,64 --LL=33554432,16,64)

# count MODE VMS HOSTS: runs `vmove-bench MODE VMS HOSTS` under cachegrind; prints its line of
# output, then its instructions, and its data reads that miss the first level and the last.
count() {
    local out="$work/cg.out" log="$work/cg.log" line
    if ! line=$(valgrind --tool=cachegrind --cache-sim=yes "${caches[@]}" \
        --cachegrind-out-file="$out" "$bench" "$1" "$2" "$3" 2> "$log"); then
        echo "bench-instructions: vmove-bench $1 $2 $3 failed under cachegrind:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    local ir d1 ll
    ir=$(sed -n 's/.*I *refs: *\([0-9,]*\).*/\1/p' "$log" | tr -d ,)
    # Reads only ("D1  misses:  N  ( R rd  +  W wr )"): a read that misses waits for memory, a
    # write to a line not cached (most of them the first touch of memory just handed out) is
    # buffered by the CPU.
    d1=$(sed -n 's/.*D1 *misses: *[0-9,]* *( *\([0-9,]*\) rd.*/\1/p' "$log" | tr -d ,)
    ll=$(sed -n 's/.*LLd misses: *[0-9,]* *( *\([0-9,]*\) rd.*/\1/p' "$log" | tr -d ,)
    if [ -z "$ir" ] || [ -z "$d1" ] || [ -z "$ll" ]; then
        echo "bench-instructions: no counts in cachegrind's summary of $1 $2 $3:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    echo "$line $ir $d1 $ll"
}

echo
echo "Instructions and simulated cache misses of the run alone (--scale-run less --scale-build), cachegrind:"
echo
echo "| VMs | hosts | commands | instructions (M) | per command | per VM | reads missing L1 (48 KiB) per command | reads missing the last level (32 MiB) per command |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for size in "${sizes[@]}"; do
    vms=${size%%:*}
    hosts=${size##*:}
    echo "bench-instructions: $vms VMs on $hosts hosts ($(date -u +%H:%M:%S))" >&2
    # `count` runs in a subshell: its exit ends only that, so its status is checked here.
    built=$(count --scale-build "$vms" "$hosts") || exit 1
    ran=$(count --scale-run "$vms" "$hosts") || exit 1
    read -r -a b <<< "$built"
    read -r -a r <<< "$ran"
    # b: scale-build VMS HOSTS BUILT BOUND IR D1 LL
    # r: scale-row VMS HOSTS MOVED MAKESPAN BOUND STEPS COMMANDS EVENTS WALL CPU KIB KIB IR D1 LL
    if [ "${b[0]}" != scale-build ] || [ "${r[0]}" != scale-row ] || [ "${#r[@]}" -ne 16 ]; then
        echo "bench-instructions: unexpected output: ${b[*]} / ${r[*]}" >&2
        exit 1
    fi
    if [ "${r[3]}" != "$vms" ]; then
        echo "bench-instructions: the $vms-VM run moved only ${r[3]} VMs" >&2
        exit 1
    fi
    awk -v vms="$vms" -v hosts="$hosts" -v cmds="${r[7]}" \
        -v ir=$((r[13] - b[5])) -v d1=$((r[14] - b[6])) -v ll=$((r[15] - b[7])) 'BEGIN {
        printf "| %d | %d | %d | %.0f | %.0f | %.0f | %.2f | %.3f |\n",
            vms, hosts, cmds, ir / 1e6, ir / cmds, ir / vms, d1 / cmds, ll / cmds
    }'
done
