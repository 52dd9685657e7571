//! `vmove check migrate ...` / `vmove check evacuate ...`: can these VMs move, and where?
//!
//! The same arguments, selection and checks as `migrate` / `evacuate` (through
//! [`crate::moves::prepare`]), then, by READING ONLY: every involved host's pre-flight
//! ([`Driver::preflight_host`]) and, for every selected VM and every destination it may go to
//! (its pin, else `--to`), the route's pre-flight ([`Driver::preflight`]) in the mode the run
//! would use. No journal run is written and nothing changes on any host. The findings are
//! printed by [`crate::check_output`]. `vmove plan` runs the same check first
//! ([`preflight`]) and leaves out of its simulation the VMs that cannot move.

use crate::args::Common;
use crate::check_output;
use crate::config::ConfigFile;
use crate::execute::spec_error;
use crate::exit::{EXIT_OK, EXIT_UNMIGRATABLE};
use crate::request::{self, Chosen};
use crate::settings::Effective;
use crate::stdio;
use anyhow::{Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use vmove_core::{
    Finding, FindingScope, HostId, MigrationMode, MigrationRequest, Preflight, RunSpec, VmId,
    VmInfo,
};
use vmove_runtime::Drivers;

/// How many pre-flight calls run at once (a check of thousands of VMs must not open thousands
/// of connections to one host at a time).
const CONCURRENCY: usize = 16;

/// A host's own pre-flight.
#[derive(Clone, Debug)]
pub struct HostCheck {
    pub host: HostId,
    /// `source`, `destination` or `source, destination`.
    pub role: &'static str,
    pub found: Preflight,
}

/// One route of one VM.
#[derive(Clone, Debug)]
pub struct RouteCheck {
    pub destination: HostId,
    pub mode: MigrationMode,
    pub found: Preflight,
}

impl RouteCheck {
    /// `ok`, `warnings`, `may_pass` (blocked now, by findings that may pass: room, a taken
    /// path) or `blocked`.
    pub fn verdict(&self) -> &'static str {
        if self.found.only_may_pass() {
            "may_pass"
        } else if !self.found.blockers.is_empty() {
            "blocked"
        } else if !self.found.warnings.is_empty() {
            "warnings"
        } else {
            "ok"
        }
    }
}

/// One selected VM and its routes.
#[derive(Clone, Debug)]
pub struct VmCheck {
    pub vm: VmId,
    pub name: String,
    pub source: HostId,
    pub routes: Vec<RouteCheck>,
}

impl VmCheck {
    /// Some route has no blocker.
    pub fn can_move(&self) -> bool {
        self.routes.iter().any(|r| r.found.is_clear())
    }

    /// It cannot move now, but some route is blocked only by findings that may pass (room, a
    /// taken path): a run waits for them (bounded), so it may move later.
    pub fn may_move_later(&self) -> bool {
        !self.can_move() && self.routes.iter().any(|r| r.found.only_may_pass())
    }

    /// What it waits for, in a few words: `memory on b, path_taken on c`.
    pub fn waits_for(&self) -> String {
        let mut what: Vec<String> = Vec::new();
        for r in self.routes.iter().filter(|r| r.found.only_may_pass()) {
            for b in &r.found.blockers {
                let w = format!("{} on {}", b.code, r.destination);
                if !what.contains(&w) {
                    what.push(w);
                }
            }
        }
        what.join(", ")
    }

    /// Why it cannot move, in a few words: the codes of the blockers about the VM itself
    /// (`snapshots`), else "no allowed destination takes it".
    pub fn why_not(&self) -> String {
        let mut codes: Vec<&str> = Vec::new();
        for r in &self.routes {
            for b in &r.found.blockers {
                if b.scope == FindingScope::Vm && !codes.contains(&b.code.as_str()) {
                    codes.push(&b.code);
                }
            }
        }
        if codes.is_empty() {
            "no allowed destination takes it".into()
        } else {
            codes.join(", ")
        }
    }
}

/// What a whole check found.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    pub hosts: Vec<HostCheck>,
    pub vms: Vec<VmCheck>,
}

impl CheckReport {
    /// The VMs that cannot move.
    pub fn blocked(&self) -> impl Iterator<Item = &VmCheck> {
        self.vms
            .iter()
            .filter(|v| !v.can_move() && !v.may_move_later())
    }

    /// The VMs that cannot move now but may later (see [`VmCheck::may_move_later`]).
    pub fn later(&self) -> impl Iterator<Item = &VmCheck> {
        self.vms.iter().filter(|v| v.may_move_later())
    }

    /// Every VM can move now (warnings allowed): exit 0; else 2, whether some cannot move for
    /// good or only for now (as before findings could pass: a script that waits for 0 is
    /// not told "go" while a destination is full).
    pub fn all_can_move(&self) -> bool {
        self.vms.iter().all(VmCheck::can_move)
    }
}

/// `vmove check migrate|evacuate ...`.
pub async fn check(
    chosen: Chosen,
    cfg: &ConfigFile,
    eff: &Effective,
    common: &Common,
) -> Result<u8> {
    // The report's file is refused before any host is asked, as for a run.
    if let Some(path) = &common.report {
        crate::output::check_writable(path)?;
    }
    let draft = request::draft(&chosen, cfg, eff, request::run_id())?;
    draft.precheck().map_err(|e| spec_error(e, eff))?;
    let (built, spec, listed) = crate::moves::prepare(&chosen, &draft, cfg, eff).await?;
    let report = preflight(&spec, &listed, &built.drivers, eff, true).await?;
    let json = format!("{}\n", check_output::json(&report));
    let text = check_output::text(&report);
    if common.json {
        stdio::out(&json);
    } else {
        stdio::out(&text);
    }
    // `--report FILE`: the findings as Markdown (`.md`) or as the `--json` document.
    if let Some(path) = &common.report {
        use crate::output::ReportFormat;
        let body = if ReportFormat::of(path) == ReportFormat::Markdown {
            format!(
                "# vmove check\n\n{}",
                crate::output::markdown::code_block(&text)
            )
        } else {
            json
        };
        crate::output::write_regular(path, &body)?;
        errln!("vmove: wrote the check's report to {}", path.display());
    }
    Ok(if report.all_can_move() {
        EXIT_OK
    } else {
        EXIT_UNMIGRATABLE
    })
}

/// Every VM `spec` selects from what its sources `listed`, with the destinations it may go to
/// (a pin, else its source's `--to`) and the mode the run would move it in.
pub fn routes(
    spec: &RunSpec,
    listed: &BTreeMap<HostId, Vec<VmInfo>>,
) -> Vec<(VmInfo, HostId, Vec<HostId>, MigrationMode)> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for src in &spec.sources {
        let vms = listed.get(&src.host).map(Vec::as_slice).unwrap_or(&[]);
        let sel = vmove_core::select::apply_source(src, vms);
        for i in sel.chosen {
            let Some(info) = vms.get(i) else { continue };
            if !seen.insert(info.id.clone()) {
                continue;
            }
            // The run's own choice (the engine's `Selected` step): a VM that is off or saved
            // moves offline, any other live.
            let mode = info.power.migration_mode();
            let destinations = match spec.pins.get(&*info.name) {
                Some(p) => vec![p.clone()],
                None => src.destinations.to_vec(),
            };
            out.push((info.clone(), src.host.clone(), destinations, mode));
        }
    }
    out
}

/// Asks every involved host's and every route's pre-flight, at most [`CONCURRENCY`] at once.
/// A call that fails or does not answer within the call time-out is a blocker
/// (`check_failed`) of its host or route; when EVERY call failed, the check itself failed (an
/// error). `progress`: say on stderr how far it is, when stderr is a terminal and the check
/// takes a while.
pub async fn preflight(
    spec: &RunSpec,
    listed: &BTreeMap<HostId, Vec<VmInfo>>,
    drivers: &Drivers,
    eff: &Effective,
    progress: bool,
) -> Result<CheckReport> {
    let selected = routes(spec, listed);
    // Hosts: every source, then every destination a selected VM may go to.
    let mut roles: BTreeMap<HostId, (bool, bool)> = BTreeMap::new();
    for s in &spec.sources {
        roles.entry(s.host.clone()).or_default().0 = true;
        for d in s.destinations.iter() {
            roles.entry(d.clone()).or_default().1 = true;
        }
    }
    for (_, _, dests, _) in &selected {
        for d in dests {
            roles.entry(d.clone()).or_default().1 = true;
        }
    }
    let route_count: usize = selected.iter().map(|s| s.2.len()).sum();
    let total = roles.len() + route_count;
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let timeout = eff.call_timeout;
    let run_id = format!("check-{}", spec.run_id);

    let mut host_tasks = tokio::task::JoinSet::new();
    for (i, (host, _)) in roles.iter().enumerate() {
        let Some(d) = drivers.get(host).cloned() else {
            bail!("no driver serves host `{host}`");
        };
        let (host, gate, done, failed) = (host.clone(), gate.clone(), done.clone(), failed.clone());
        host_tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let r = tokio::time::timeout(timeout, d.preflight_host(&host)).await;
            let found = answered(r, host.as_str(), &failed, FindingScope::Host);
            done.fetch_add(1, Ordering::Relaxed);
            (i, found)
        });
    }
    let mut route_tasks = tokio::task::JoinSet::new();
    for (vi, (info, source, dests, mode)) in selected.iter().enumerate() {
        let Some(d) = drivers.get(source).cloned() else {
            bail!("no driver serves host `{source}`");
        };
        for (ri, dest) in dests.iter().enumerate() {
            let req = MigrationRequest {
                vm: info.id.clone(),
                vm_name: info.name.clone(),
                source: source.clone(),
                destination: dest.clone(),
                mode: *mode,
                layout: spec.layouts.get(dest).cloned().unwrap_or_default(),
                attempt: 1,
                run_id: run_id.as_str().into(),
            };
            let (d, gate, done, failed) = (d.clone(), gate.clone(), done.clone(), failed.clone());
            route_tasks.spawn(async move {
                let _permit = gate.acquire_owned().await;
                let r = tokio::time::timeout(timeout, d.preflight(&req)).await;
                let route = format!("{} -> {}", req.source, req.destination);
                let found = answered(r, &route, &failed, FindingScope::Destination);
                done.fetch_add(1, Ordering::Relaxed);
                (vi, ri, found)
            });
        }
    }

    // Progress on stderr, only for a person watching and only for long work.
    let shown = progress && std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut host_found: BTreeMap<usize, Preflight> = BTreeMap::new();
    let mut route_found: BTreeMap<(usize, usize), Preflight> = BTreeMap::new();
    let mut said = false;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            r = host_tasks.join_next(), if !host_tasks.is_empty() => {
                if let Some(r) = r {
                    let (i, f) = r.map_err(|e| anyhow::anyhow!("a host check failed: {e}"))?;
                    host_found.insert(i, f);
                }
            }
            r = route_tasks.join_next(), if !route_tasks.is_empty() => {
                if let Some(r) = r {
                    let (vi, ri, f) = r.map_err(|e| anyhow::anyhow!("a route check failed: {e}"))?;
                    route_found.insert((vi, ri), f);
                }
            }
            _ = tick.tick(), if shown => {
                if started.elapsed() > Duration::from_secs(1) {
                    stdio::err(&format!(
                        "\rvmove: checked {} of {total} (hosts and routes)",
                        done.load(Ordering::Relaxed)
                    ));
                    said = true;
                }
            }
            else => break,
        }
        if host_tasks.is_empty() && route_tasks.is_empty() {
            break;
        }
    }
    if said {
        stdio::err("\r\x1b[2K");
    }
    if total > 0 && failed.load(Ordering::Relaxed) == total {
        bail!(
            "no host answered the pre-flight check ({} {} asked); nothing was checked",
            total,
            if total == 1 { "call" } else { "calls" }
        );
    }

    let hosts: Vec<HostCheck> = roles
        .iter()
        .enumerate()
        .map(|(i, (h, (src, dst)))| HostCheck {
            host: h.clone(),
            role: match (src, dst) {
                (true, true) => "source, destination",
                (true, false) => "source",
                _ => "destination",
            },
            found: host_found.remove(&i).unwrap_or_default(),
        })
        .collect();
    let blocked_host = |h: &HostId| {
        hosts
            .iter()
            .find(|c| &c.host == h)
            .is_some_and(|c| !c.found.is_clear())
    };
    let mut vms = Vec::new();
    for (vi, (info, source, dests, mode)) in selected.into_iter().enumerate() {
        let mut routes = Vec::new();
        for (ri, dest) in dests.into_iter().enumerate() {
            let mut found = route_found.remove(&(vi, ri)).unwrap_or_default();
            // A host that fails its own check takes no VM and gives none.
            for h in [&source, &dest] {
                if blocked_host(h) {
                    found.block(
                        Finding::new(
                            "host_blocked",
                            FindingScope::Host,
                            format!("host {h} failed its own check (see the host findings)"),
                        )
                        .remedy(format!("fix what the host findings say about {h}")),
                    );
                }
            }
            routes.push(RouteCheck {
                destination: dest,
                mode,
                found,
            });
        }
        vms.push(VmCheck {
            vm: info.id,
            name: info.name.to_string(),
            source,
            routes,
        });
    }
    Ok(CheckReport { hosts, vms })
}

/// A pre-flight call's answer; a failure or a time-out is a blocker (`check_failed`) naming
/// the host or route it was `on`, counted in `failed`.
fn answered(
    r: Result<vmove_driver::DriverResult<Preflight>, tokio::time::error::Elapsed>,
    on: &str,
    failed: &AtomicUsize,
    scope: FindingScope,
) -> Preflight {
    let why = match r {
        Ok(Ok(p)) => return p,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within the call time-out".to_owned(),
    };
    failed.fetch_add(1, Ordering::Relaxed);
    let mut p = Preflight::default();
    p.block(
        Finding::new(
            "check_failed",
            scope,
            format!("the check could not be made ({on}): {why}"),
        )
        .remedy("check that the host answers, then check again"),
    );
    p
}
