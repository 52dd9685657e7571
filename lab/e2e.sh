#!/usr/bin/env bash
# End-to-end check of `vmove evacuate hostA --to hostB` through the real CLI on the lab, with
# assertions (exit code 0 = every assertion held). 10 VMs (prefix e2e-) on hostA:
#   run1 run2 run3   running                 -> moved live, checksums equal
#   two              running, two disks      -> moved live, both checksums equal
#   chain            running, backing chain  -> moved live, flattened, checksum equal
#   off1 off2        shut off                -> moved offline (last), checksums equal, still off
#   backup20         pull backup ending ~20 s -> waits, then moved
#   backupforever    pull backup never ends  -> unmigratable after backup_threshold (40 s),
#                                               still running on A, untouched
#   taken            its destination path holds another file on hostB -> refused, still
#                                               running on A, the other file untouched
# Afterwards: nothing of a moved VM is left on hostA; nothing of a failed attempt on hostB.
#   VMOVE_BIN=path   the vmove binary (else built with cargo, release)
#   VMOVE_E2E_KEEP=1 leave the lab up
source "$(dirname "$0")/common.sh"
need_root
ROOT="$(cd "$LAB_SCRIPTS/.." && pwd)"
"$LAB_SCRIPTS/up.sh"

for h in $HOSTS; do
  for d in $(vsh "$h" list --all --name 2>/dev/null | grep '^e2e-' || true); do
    vsh "$h" destroy "$d" >/dev/null 2>&1 || true
    vsh "$h" undefine "$d" >/dev/null 2>&1 || true
  done
  rm -f "$(host_dir "$h")"/lib/images/e2e-* "$(host_dir "$h")"/log/qemu/e2e-*
  vsh "$h" pool-refresh images >/dev/null
done

log "creating 10 VMs on hostA"
mk() { "$LAB_SCRIPTS/mkvm.sh" hostA "$@" >/dev/null; }
for n in run1 run2 run3; do mk "e2e-$n" --size 256 --fill 16; done
mk e2e-two --disks 2 --size 128,64 --fill 8
mk e2e-chain --backing --size 128 --fill 8
mk e2e-off1 --off --size 128 --fill 8
mk e2e-off2 --off --fill 4
mk e2e-backup20 --fill 4
mk e2e-backupforever --fill 4
mk e2e-taken --fill 4
taken_file="$(host_dir hostB)/lib/images/e2e-taken-0.qcow2"
echo "another VM's precious data" >"$taken_file"
taken_sum="$(sha256sum "$taken_file" | cut -d' ' -f1)"
vsh hostB pool-refresh images >/dev/null
pull_backup() {
  cat >"/tmp/vmove-e2e-$1.xml" <<XML
<domainbackup mode='pull'><server transport='unix' socket='/var/lib/libvirt/qemu/$1-nbd.sock'/>
<disks><disk name='vda' backup='yes' type='file'><scratch file='/var/lib/libvirt/images/$1-scratch.qcow2'/></disk></disks></domainbackup>
XML
  vsh hostA backup-begin "$1" "/tmp/vmove-e2e-$1.xml" >/dev/null
}
pull_backup e2e-backup20
pull_backup e2e-backupforever

declare -A before
for d in $(vsh hostA list --all --name | grep '^e2e-'); do
  for p in $(vsh hostA domblklist "$d" --details | awk '$2=="disk"{print $4}'); do
    before["$d|$p"]="$("$LAB_SCRIPTS/checksum.sh" hostA "$p")"
  done
done

cfg="$LAB/e2e.toml"
# Its own journal, in the lab folder (never the user's under $HOME).
rm -f "$LAB"/e2e-journal.db*
cat >"$cfg" <<TOML
[defaults]
journal = "$LAB/e2e-journal.db"
backup_threshold = "40s"
recheck_interval = "5s"
poll_interval = "10s"
stall_timeout = "60s"
max_attempts = 2
backoff_initial = "2s"

[hosts.hostA]
driver = "libvirt"
uri = "$(host_uri hostA)"
max_migrations = 2

[hosts.hostB]
driver = "libvirt"
uri = "$(host_uri hostB)"
max_migrations = 2
TOML

vmove="${VMOVE_BIN:-}"
if [ -z "$vmove" ]; then
  (cd "$ROOT" && cargo build --release -p vmove >&2)
  vmove="${CARGO_TARGET_DIR:-$ROOT/target}/release/vmove"
fi
( sleep 20; vsh hostA domjobabort e2e-backup20 >/dev/null 2>&1 || true ) &
ender=$!
start=$(date +%s)
set +e
"$vmove" --config "$cfg" --plain evacuate hostA --to hostB --report "$LAB/e2e-report.json"
rc=$?
set -e
wait "$ender" 2>/dev/null || true
log "vmove exited $rc after $(( $(date +%s) - start )) s"

fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
state() { vsh "$1" domstate "$2" 2>/dev/null || echo absent; }

for d in e2e-run1 e2e-run2 e2e-run3 e2e-two e2e-chain e2e-backup20; do
  [ "$(state hostB "$d")" = running ] && ok "$d running on hostB" || bad "$d is '$(state hostB "$d")' on hostB"
  [ "$(state hostA "$d")" = absent ] && ok "$d gone from hostA" || bad "$d still on hostA: $(state hostA "$d")"
done
for d in e2e-off1 e2e-off2; do
  [ "$(state hostB "$d")" = "shut off" ] && ok "$d shut off on hostB" || bad "$d is '$(state hostB "$d")' on hostB"
  [ "$(state hostA "$d")" = absent ] && ok "$d gone from hostA" || bad "$d still on hostA"
done
for d in e2e-backupforever e2e-taken; do
  [ "$(state hostA "$d")" = running ] && ok "$d still running on hostA" || bad "$d is '$(state hostA "$d")' on hostA"
  [ "$(state hostB "$d")" = absent ] && ok "$d not on hostB" || bad "$d is on hostB"
done
[ "$(sha256sum "$taken_file" | cut -d' ' -f1)" = "$taken_sum" ] && ok "the taken path's file is untouched" || bad "the taken path's file changed"
vsh hostA domjobabort e2e-backupforever >/dev/null 2>&1 || true

for key in "${!before[@]}"; do
  d="${key%%|*}"; p="${key#*|}"
  case "$d" in
    e2e-backupforever|e2e-taken)
      [ "$("$LAB_SCRIPTS/checksum.sh" hostA "$p")" = "${before[$key]}" ] && ok "$d $p untouched on hostA" || bad "$d $p changed on hostA" ;;
    *)
      [ "$("$LAB_SCRIPTS/checksum.sh" hostB "$p")" = "${before[$key]}" ] && ok "checksum $d $p" || bad "checksum differs: $d $p" ;;
  esac
done

left_a="$(cd "$(host_dir hostA)" && ls lib/images log/qemu | grep '^e2e-' | grep -Ev '^e2e-(backupforever|taken)' || true)"
[ -z "$left_a" ] && ok "nothing of a moved VM left on hostA" || bad "left on hostA: $(echo $left_a)"
stray_b="$(cd "$(host_dir hostB)/lib/images" && ls | grep -E '^e2e-(backupforever|taken)' | grep -v '^e2e-taken-0.qcow2$' || true)"
[ -z "$stray_b" ] && ok "nothing of a failed attempt left on hostB" || bad "left on hostB: $(echo $stray_b)"

# The report says each live move's switchover pause (libvirt's completed job), none for the
# offline ones.
downtimes="$(python3 - "$LAB/e2e-report.json" <<'PY'
import json, sys
vms = {v["name"]: v for v in json.load(open(sys.argv[1]))["vms"]}
bad = [n for n in ("e2e-run1", "e2e-run2", "e2e-run3", "e2e-two", "e2e-chain", "e2e-backup20")
       if not isinstance(vms.get(n, {}).get("downtime_ms"), int) or vms[n]["downtime_ms"] <= 0]
bad += [n for n in ("e2e-off1", "e2e-off2") if vms.get(n, {}).get("downtime_ms") is not None]
print(" ".join(bad) if bad else "ok " + ", ".join(f"{n} {v['downtime_ms']} ms" for n, v in sorted(vms.items()) if v.get("downtime_ms")))
PY
)"
case "$downtimes" in ok*) ok "downtime in the report: ${downtimes#ok }" ;; *) bad "downtime wrong in the report for: $downtimes" ;; esac

echo "report: $LAB/e2e-report.json"
if [ "${VMOVE_E2E_KEEP:-0}" != 1 ]; then "$LAB_SCRIPTS/down.sh"; fi
[ "$fail" = 0 ] && echo "E2E PASSED" || echo "E2E FAILED"
exit "$fail"
