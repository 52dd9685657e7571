//! The VM guard: a VM, or a selection that may take one, that another live run holds is
//! refused.

use crate::clock::WallTime;
use crate::codec::decode;
use crate::db::{Db, vals};
use crate::error::{JournalError, Result};
use crate::holder::{Holder, HolderState, holder_state};
use vmove_core::{RunSpec, Selection, VmId};

/// The facts of a live run that are needed to refuse a conflicting one.
struct LiveRun {
    id: String,
    spec: RunSpec,
    holder: Holder,
    has_vms: bool,
}

/// Whether a live run's holder is provably dead ([`holder_state`]: on this machine and boot,
/// its pid gone or another process's): the refusal then says so and names `vmove resume`,
/// which takes such a run over at once. Said only, never acted on: the run keeps its VMs
/// until it is resumed or its lease expires.
fn dead(holder: &Holder) -> bool {
    matches!(holder_state(holder), HolderState::Dead(_))
}

/// A lease row's holder from its pid, host, start time and boot columns.
fn holder_of(pid: u32, host: String, started: Option<i64>, boot: Option<String>) -> Holder {
    Holder {
        pid,
        host,
        started: started.map(|t| t as u64),
        boot,
    }
}

/// Another run that is live now: running, with an unexpired lease.
fn live_runs(conn: &Db, except: &str, now: WallTime) -> Result<Vec<LiveRun>> {
    let rows = conn.query_map(
        "SELECT r.id, r.spec, l.holder_pid, l.holder_host,
                EXISTS (SELECT 1 FROM vm_state v WHERE v.run_id = r.id),
                l.holder_started, l.holder_boot
         FROM runs r JOIN leases l ON l.run_id = r.id
         WHERE r.state = 'running' AND l.expires_at > ?2 AND r.id <> ?1",
        vals![except, now.0],
        |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<String>(1)?,
                holder_of(r.get(2)?, r.get(3)?, r.get(5)?, r.get(6)?),
                r.get::<bool>(4)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for (id, spec, holder, has_vms) in rows {
        let spec = decode(&id, 0, &spec)?;
        out.push(LiveRun {
            id,
            spec,
            holder,
            has_vms,
        });
    }
    Ok(out)
}

/// Refuses if another live run holds `vm` in an unfinished phase.
pub(super) fn check_vm_free(conn: &Db, run: &str, vm: &VmId, now: WallTime) -> Result<()> {
    let hit: Option<(String, String, Holder)> = conn.query_opt(
        "SELECT v.run_id, v.name, l.holder_pid, l.holder_host, l.holder_started, l.holder_boot
             FROM vm_state v JOIN runs r ON r.id = v.run_id JOIN leases l ON l.run_id = v.run_id
             WHERE v.vm = ?1 AND v.run_id <> ?2 AND v.final = 0 AND r.state = 'running' AND l.expires_at > ?3
             LIMIT 1",
        vals![vm.as_str(), run, now.0],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                holder_of(r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
            ))
        },
    )?;
    match hit {
        None => Ok(()),
        Some((other_run, name, holder)) => Err(JournalError::VmInUse {
            vm: vm.as_str().to_owned(),
            name,
            other_run,
            holder_dead: dead(&holder),
            pid: holder.pid,
            host: holder.host,
        }),
    }
}

/// Whether a selection takes a VM of this name (a pattern that does not compile counts as a match:
/// refusing is the safe side).
fn selection_matches(sel: &Selection, name: &str) -> bool {
    match sel {
        Selection::All => true,
        Selection::Names(pats) => pats.iter().any(|p| {
            vmove_core::select::compile(p)
                .map(|m| m.is_match(name))
                .unwrap_or(true)
        }),
    }
}

/// Whether two selections of one host may take a common VM. Two glob patterns are assumed to
/// overlap (deciding it exactly is not worth the risk).
fn selections_may_overlap(a: &Selection, b: &Selection) -> bool {
    use vmove_core::select::is_glob;
    match (a, b) {
        (Selection::All, _) | (_, Selection::All) => true,
        (Selection::Names(x), Selection::Names(y)) => {
            let names_of = |v: &Vec<String>| {
                v.iter()
                    .filter(|p| !is_glob(p))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            let has_glob = |v: &Vec<String>| v.iter().any(|p| is_glob(p));
            (has_glob(x) && has_glob(y))
                || names_of(x).iter().any(|n| selection_matches(b, n))
                || names_of(y).iter().any(|n| selection_matches(a, n))
        }
    }
}

/// The VM guard at creation: refuses a run whose selection takes a VM another live run holds;
/// while that other run has selected nothing yet, refuses a selection that may overlap its own.
pub(super) fn check_selection_free(
    conn: &Db,
    run: &str,
    spec: &RunSpec,
    now: WallTime,
) -> Result<()> {
    for other in live_runs(conn, run, now)? {
        for src in &spec.sources {
            let Some(theirs) = other.spec.sources.iter().find(|s| s.host == src.host) else {
                continue;
            };
            if other.has_vms {
                let rows = conn.query_map(
                    "SELECT vm, name FROM vm_state WHERE run_id = ?1 AND source = ?2 AND final = 0 ORDER BY ord",
                    vals![&other.id, src.host.as_str()],
                    |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
                )?;
                for (vm, name) in rows {
                    if selection_matches(&src.select, &name) {
                        return Err(JournalError::VmInUse {
                            vm,
                            name,
                            other_run: other.id.clone(),
                            pid: other.holder.pid,
                            host: other.holder.host.clone(),
                            holder_dead: dead(&other.holder),
                        });
                    }
                }
            } else if selections_may_overlap(&src.select, &theirs.select) {
                return Err(JournalError::SelectionOverlap {
                    source_host: src.host.to_string(),
                    other_run: other.id.clone(),
                    pid: other.holder.pid,
                    host: other.holder.host.clone(),
                    holder_dead: dead(&other.holder),
                });
            }
        }
    }
    Ok(())
}
