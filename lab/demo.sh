#!/usr/bin/env bash
# A real evacuation on the lab: brings two libvirt hosts up, creates 8 VMs in mixed states on
# hostA, and runs `vmove evacuate hostA --to hostB` with its progress on screen. Then shows
# where everything is. Needs root; builds vmove if needed.
#
# The VMs (prefix demo-):
#   web1 web2 web3  running, 64 MiB RAM, a 256 MiB disk with 16 MiB written
#   db              running, two disks
#   chain           running, a disk on a backing chain (flattened on hostB)
#   paused          paused (moves live, stays paused)
#   off1 off2       shut off (moved last, offline, through volume streams)
#   backup          running with a pull backup that ends after ~20 s (vmove waits, then moves it)
#
#   VMOVE_DEMO_KEEP=1  leave the lab up afterwards (default: tear it down)
source "$(dirname "$0")/common.sh"
need_root
ROOT="$(cd "$LAB_SCRIPTS/.." && pwd)"

"$LAB_SCRIPTS/up.sh"

# A fresh start: the demo evacuates ALL of hostA, so every VM the lab hosts hold (the lab's own:
# demo, e2e, tests) is removed first, with its files.
for h in $HOSTS; do
  for d in $(vsh "$h" list --all --name 2>/dev/null || true); do
    vsh "$h" destroy "$d" >/dev/null 2>&1 || true
    vsh "$h" undefine "$d" >/dev/null 2>&1 || true
  done
  rm -f "$(host_dir "$h")"/lib/images/* "$(host_dir "$h")"/log/qemu/*
  vsh "$h" pool-refresh images >/dev/null
done

log "creating 8 VMs on hostA"
mk() { "$LAB_SCRIPTS/mkvm.sh" hostA "$@" >/dev/null; }
for n in web1 web2 web3; do mk "demo-$n" --size 256 --fill 16; done
mk demo-db --disks 2 --size 256,128 --fill 16
mk demo-chain --backing --size 256 --fill 16
mk demo-paused --fill 8
vsh hostA suspend demo-paused >/dev/null
mk demo-off1 --off --size 256 --fill 16
mk demo-off2 --off --fill 8
mk demo-backup --fill 8
cat >/tmp/vmove-demo-backup.xml <<XML
<domainbackup mode='pull'><server transport='unix' socket='/var/lib/libvirt/qemu/demo-backup-nbd.sock'/>
<disks><disk name='vda' backup='yes' type='file'><scratch file='/var/lib/libvirt/images/demo-backup-scratch.qcow2'/></disk></disks></domainbackup>
XML
vsh hostA backup-begin demo-backup /tmp/vmove-demo-backup.xml >/dev/null
# The backup ends after ~20 s (a child we wait for by pid at the end).
( sleep 20; vsh hostA domjobabort demo-backup >/dev/null 2>&1 || true ) &
backup_ender=$!

log "checksums before"
declare -A before
for d in $(vsh hostA list --all --name | grep '^demo-'); do
  for p in $(vsh hostA domblklist "$d" --details | awk '$2=="disk"{print $4}'); do
    before["$d:$p"]="$("$LAB_SCRIPTS/checksum.sh" hostA "$p")"
  done
done

cfg="$LAB/demo.toml"
# Its own journal, in the lab folder (never the user's under $HOME).
rm -f "$LAB"/demo-journal.db*
cat >"$cfg" <<TOML
[defaults]
journal = "$LAB/demo-journal.db"
backup_threshold = "2m"
stall_timeout = "60s"
max_attempts = 3

[hosts.hostA]
driver = "libvirt"
uri = "$(host_uri hostA)"
max_migrations = 2
migration_ports = [$(host_port_min hostA), $(host_port_max hostA)]

[hosts.hostB]
driver = "libvirt"
uri = "$(host_uri hostB)"
max_migrations = 2
migration_ports = [$(host_port_min hostB), $(host_port_max hostB)]
TOML

vmove="${VMOVE_BIN:-}"
if [ -z "$vmove" ]; then
  log "building vmove (release)"
  (cd "$ROOT" && cargo build --release -p vmove >&2)
  vmove="${CARGO_TARGET_DIR:-$ROOT/target}/release/vmove"
fi
[ -x "$vmove" ] || die "no vmove binary at $vmove"

log "vmove evacuate hostA --to hostB"
set +e
"$vmove" --config "$cfg" evacuate hostA --to hostB --report "$LAB/demo-report.md"
rc=$?
set -e
wait "$backup_ender" 2>/dev/null || true

log "where everything is now"
for h in $HOSTS; do echo "--- $h"; vsh "$h" list --all | grep demo- || true; done
bad=0
for key in "${!before[@]}"; do
  d="${key%%:*}"; p="${key#*:}"
  if vsh hostB dominfo "$d" >/dev/null 2>&1; then
    np="$(vsh hostB domblklist "$d" --details | awk -v t="$(basename "$p")" '$2=="disk" && $4 ~ t"$" {print $4}')"
    after="$("$LAB_SCRIPTS/checksum.sh" hostB "${np:-$p}")"
    if [ "$after" = "${before[$key]}" ]; then echo "checksum ok   $d $p"; else echo "CHECKSUM DIFF $d $p"; bad=1; fi
  fi
done
echo "left on hostA: $(ls "$(host_dir hostA)/lib/images" | grep '^demo-' | tr '\n' ' ')"
echo "report: $LAB/demo-report.md; vmove exit code $rc"
if [ "${VMOVE_DEMO_KEEP:-0}" != 1 ]; then "$LAB_SCRIPTS/down.sh"; fi
[ "$rc" = 0 ] && [ "$bad" = 0 ]
