# shellcheck shell=bash
# The steps lab/stall-net.sh and lab/stall-daemon.sh share (sourced, not run; after common.sh).
# They expect A and B (source, destination), VM, IMG (its disk as the host sees it), STALL (the
# stall timeout, s), ROOT, and VSH: the function that runs virsh on a host (stall-net.sh asks
# through the hosts' unix sockets, which answer while a link is cut).

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# The VM afresh on A (nothing of it on any host before): 384 MiB written, which at 16 MiB/s is a
# disk copy of ~24 s. Sets sum_before (its disk's checksum).
stall_fresh_vm() {
  local h
  for h in $HOSTS; do
    "$VSH" "$h" destroy "$VM" >/dev/null 2>&1 || true; "$VSH" "$h" undefine "$VM" >/dev/null 2>&1 || true
    rm -f "$(host_dir "$h")"/lib/images/"$VM"* "$(host_dir "$h")"/log/qemu/"$VM"*
    "$VSH" "$h" pool-refresh images >/dev/null
  done
  "$LAB_SCRIPTS/mkvm.sh" "$A" "$VM" --size 512 --fill 384 >/dev/null
  sum_before="$("$LAB_SCRIPTS/checksum.sh" "$A" "$IMG")"
}

# Starts `vmove migrate VM --from A --to B` in the background, the source capped at 16 MiB/s,
# with the stall timeout and quick rechecks and retries. NAME names its files in $LAB: the
# config, the journal ($journal) and the output ($out: each line with the time it was read,
# s.ns). Sets runner (vmove's own pid).
stall_start_vmove() {
  local name="$1" vmove="${VMOVE_BIN:-}"
  cfg="$LAB/$name.toml"
  cat >"$cfg" <<TOML
[defaults]
stall_timeout = "${STALL}s"
progress_interval = "2s"
recheck_interval = "5s"
max_attempts = 5
backoff_initial = "5s"
[hosts.$A]
driver = "libvirt"
uri = "$(host_uri "$A")"
bandwidth_mib_s = 16
[hosts.$B]
driver = "libvirt"
uri = "$(host_uri "$B")"
TOML
  if [ -z "$vmove" ]; then
    (cd "$ROOT" && cargo build --release -p vmove >&2)
    vmove="${CARGO_TARGET_DIR:-$ROOT/target}/release/vmove"
  fi
  out="$LAB/$name-out.txt"; : >"$out"
  journal="$LAB/$name-journal.db"; rm -f "$journal"*
  "$vmove" --config "$cfg" --journal "$journal" --plain migrate "$VM" --from "$A" --to "$B" > >(stall_stamp >>"$out") 2>&1 &
  runner=$!
}
stall_stamp() { local l; while IFS= read -r l; do echo "$(now) $l"; done; }

# Waits until the disk copy runs (the source shows the job) and lets it copy 4 s. Sets
# copied_before (what the source's job says it copied so far).
stall_wait_for_copy() {
  local j=""
  for _ in $(seq 1 120); do
    j="$("$VSH" "$A" domjobinfo "$VM" 2>/dev/null || true)"
    [[ "$j" == *"Outgoing migration"* ]] && break
    sleep 0.5
  done
  [[ "$j" == *"Outgoing migration"* ]] || die "the migration of $VM never showed on $A"
  sleep 4
  copied_before="$("$VSH" "$A" domjobinfo "$VM" 2>/dev/null | sed -n 's/^Data processed: *//p')"
}

# Prints vmove's journal from T0 (s.ns) on, each entry's time relative to it: the watchdog,
# aborts, looks, attempts and the migration statuses, with their errors. HEADING says what T0 was.
stall_journal_since() {
  local t0ms
  command -v sqlite3 >/dev/null || return 0
  echo "--- journal ($2)"
  t0ms="$(awk -v t="$1" 'BEGIN { printf "%.0f", t * 1000 }')"
  sqlite3 -separator ' ' "$journal" "
    SELECT printf('%+8.1f', (written_at - $t0ms) / 1000.0), printf('#%d', seq), name,
           CASE WHEN answers IS NOT NULL THEN printf('(answers #%d)', answers) ELSE '' END,
           CASE WHEN body LIKE '%\"Err\"%' THEN substr(body, instr(body, '\"message\"'), 160)
                WHEN name = 'migration_status' THEN substr(body, instr(body, '\"status\"'), 100)
                WHEN name = 'located' THEN substr(body, instr(body, '\"running_migration\"'), 60)
                ELSE '' END
    FROM entries
    WHERE written_at >= $t0ms - 1000 AND (name IN ('watchdog_fired', 'abort_migration', 'abort_done',
      'locate', 'located', 'attempt_failed', 'attempt_started', 'verified', 'moved')
      OR (kind = 'input' AND name = 'migration_status'))
    ORDER BY seq" || true
}
