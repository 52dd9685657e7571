//! The flow of `migrate`, `evacuate` and `plan`: everything that can be refused is refused before
//! any host is touched (the report's file, the request, the VMs the hosts list), then the plan is
//! printed or the run carried out ([`crate::execute`]).

use crate::args::Common;
use crate::config::ConfigFile;
use crate::execute::{execute, spec_error};
use crate::exit::EXIT_INTERRUPTED;
use crate::interrupts::Interrupts;
use crate::output;
use crate::request::{self, Chosen};
use crate::settings::Effective;
use crate::{drivers, hooks, runs, simrun};
use anyhow::{Context, Result, anyhow};
use std::collections::BTreeMap;
use std::time::Duration;
use vmove_core::{Core, HostId, RunSpec, Selection, Time, VmInfo};
use vmove_runtime::{Drivers, RuntimeOptions};

/// `migrate`, `evacuate` and `plan`: build the spec, build the drivers, then plan or move.
pub(crate) async fn plan_or_move(
    chosen: Chosen,
    cfg: &ConfigFile,
    eff: &Effective,
    common: &Common,
    dry_run: bool,
) -> Result<u8> {
    // Everything that can be refused is refused before any host is asked or the journal
    // written: the report's file, the request, a journal file that is another application's
    // database, then the VMs the hosts list.
    if let Some(path) = &common.report {
        output::check_writable(path)?;
    }
    let plan_flags = simrun::plan_flags(common)?;
    let draft = request::draft(&chosen, cfg, eff, request::run_id())?;
    draft.precheck().map_err(|e| spec_error(e, eff))?;
    if !dry_run && !common.no_journal {
        runs::check_location(eff)?;
    }
    // From here a SIGTERM, SIGHUP or Ctrl-C is heard: before the run it ends vmove at once
    // (nothing was touched), during it, it stops the run as Ctrl-C does.
    let mut interrupts = if dry_run {
        None
    } else {
        Some(Interrupts::install()?)
    };
    let prepare = prepare(&chosen, &draft, cfg, eff);
    let (built, spec, listed) = match &mut interrupts {
        None => prepare.await?,
        Some(i) => tokio::select! {
            r = prepare => r?,
            Some(what) = i.next() => {
                errln!("vmove: {what} before the run started: nothing was touched");
                return Ok(EXIT_INTERRUPTED);
            }
        },
    };
    if dry_run {
        return simrun::plan(spec, &listed, &built.drivers, eff, common, plan_flags).await;
    }
    let journaling = if common.no_journal {
        None
    } else {
        let mut j = runs::start(eff, cfg, &spec)?;
        // The run's plan, journaled beside it (made once the run has read its hosts).
        j.plan = Some(crate::run_plan::PlanRequest {
            spec: spec.clone(),
            journal_path: runs::journal_path(eff)?,
            flags: plan_flags,
            history: common.plan_history,
        });
        errln!(
            "vmove: run {} (journal `{}`; `vmove status {}` from another terminal)",
            j.run,
            runs::journal_shown(eff)?,
            j.run
        );
        Some(j)
    };
    // Maintenance hooks of the evacuated hosts: before anything moves (a failing one ends the
    // run with nothing moved) and after the run ends (a failing one is a warning).
    let evacuated = crate::request::evacuated(&spec);
    let run_id = spec.run_id.clone();
    hooks::before_run(
        cfg,
        &evacuated,
        &run_id,
        eff.hook_timeout,
        journaling.as_ref(),
    )
    .await?;
    let core = Core::new(spec, Time::ZERO)?;
    let options = RuntimeOptions {
        call_timeout: eff.call_timeout,
        speed: built.speed,
        journal_wait: eff.journal_wait,
        start: Time::ZERO,
    };
    let journal_of_hooks = journaling
        .as_ref()
        .map(crate::execute::Journaling::for_notes);
    let code = execute(
        core,
        built.drivers,
        options,
        common,
        &crate::runs::command_line(),
        journaling,
        interrupts,
    )
    .await;
    // After the run, whatever its result (the result stands).
    hooks::after_run(
        cfg,
        &evacuated,
        &run_id,
        eff.hook_timeout,
        journal_of_hooks.as_ref(),
    )
    .await;
    code
}

/// The drivers of every host a request involves, the complete spec (sources of unsourced
/// patterns found) and the VMs each source lists now, with the selection checked against
/// them: what `migrate`, `evacuate`, `plan` and `check` all do before anything else.
pub(crate) async fn prepare(
    chosen: &Chosen,
    draft: &request::Draft,
    cfg: &ConfigFile,
    eff: &Effective,
) -> Result<(drivers::Built, RunSpec, BTreeMap<HostId, Vec<VmInfo>>)> {
    let mut involved = request::involved(&draft.spec);
    involved.extend(draft.search.iter().cloned());
    involved.extend(draft.destinations.iter().cloned());
    let built = drivers::build(cfg, &involved, crate::drivers::Cap::of(eff)).await?;
    let mut to_list: Vec<HostId> = draft.search.clone();
    to_list.extend(draft.spec.sources.iter().map(|s| s.host.clone()));
    let listed = list_hosts(&built.drivers, &to_list, eff).await?;
    let spec = if draft.unsourced.is_empty() {
        draft.spec.clone()
    } else {
        let found = find_sources(&listed, &draft.search, &draft.unsourced);
        draft.clone().resolve(&found)?
    };
    spec.validate().map_err(|e| spec_error(e, eff))?;
    request::check_selection(&spec, &listed, chosen.placement())?;
    Ok((built, spec, listed))
}

/// Lists the VMs of each host (once), saying so when a host is slow to answer.
async fn list_hosts(
    drivers: &Drivers,
    hosts: &[HostId],
    eff: &Effective,
) -> Result<BTreeMap<HostId, Vec<VmInfo>>> {
    let mut listed = BTreeMap::new();
    for h in hosts {
        if listed.contains_key(h) {
            continue;
        }
        let d = drivers
            .get(h)
            .ok_or_else(|| anyhow!("no driver serves host `{h}`"))?;
        let call = tokio::time::timeout(eff.call_timeout, d.list_vms(h));
        tokio::pin!(call);
        let vms = tokio::select! {
            r = &mut call => r,
            () = tokio::time::sleep(SLOW_HOST) => {
                errln!(
                    "vmove: waiting for host `{h}` to list its VMs (up to the call time-out, {})",
                    vmove_core::spec::dur::format_duration(eff.call_timeout)
                );
                call.await
            }
        }
        .map_err(|_| anyhow!("host `{h}` did not list its VMs within the call time-out"))?
        .with_context(|| format!("host `{h}` could not list its VMs; nothing was started"))?;
        listed.insert(h.clone(), vms);
    }
    Ok(listed)
}

/// How long a host may take to answer before vmove says it is waiting for it.
const SLOW_HOST: Duration = Duration::from_secs(2);

/// Says which searched hosts hold VMs matching each pattern.
fn find_sources(
    listed: &BTreeMap<HostId, Vec<VmInfo>>,
    search: &[HostId],
    patterns: &[String],
) -> BTreeMap<String, Vec<HostId>> {
    let mut found: BTreeMap<String, Vec<HostId>> = BTreeMap::new();
    for h in search {
        let vms = listed.get(h).map(Vec::as_slice).unwrap_or(&[]);
        for p in patterns {
            let sel = vmove_core::select::apply(&Selection::Names(vec![p.clone()]), vms);
            if !sel.chosen.is_empty() {
                found.entry(p.clone()).or_default().push(h.clone());
            }
        }
    }
    found
}
