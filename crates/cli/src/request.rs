//! From a command's selection (`migrate`/`evacuate` arguments), the config file and the
//! effective settings to the core's [`RunSpec`]. Validation is the core's
//! ([`RunSpec::validate`]); this only puts the pieces together.

use crate::args::{EvacuateArgs, MigrateArgs, Placement};
use crate::config::ConfigFile;
use crate::settings::Effective;
use anyhow::{Result, anyhow, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use vmove_core::{HostId, HostLimits, PathLayout, RunSpec, Selection, SourceSpec, VmInfo};

/// What a run selects.
#[derive(Clone, Debug)]
pub enum Chosen {
    /// `migrate`.
    Migrate(MigrateArgs),
    /// `evacuate`.
    Evacuate(EvacuateArgs),
}

impl Chosen {
    /// The placement arguments.
    pub fn placement(&self) -> &Placement {
        match self {
            Chosen::Migrate(a) => &a.placement,
            Chosen::Evacuate(a) => &a.placement,
        }
    }
}

/// A selection whose VM patterns may still need their source hosts found.
#[derive(Clone, Debug)]
pub struct Draft {
    /// The spec, with the sources known so far.
    pub spec: RunSpec,
    /// Patterns named without a host and without `--from`: each configured host that is not a
    /// destination must be searched for them.
    pub unsourced: Vec<String>,
    /// The hosts to search for them.
    pub search: Vec<HostId>,
    /// The allowed destinations (`--to`): one list every source shares (the engine maps a
    /// shared list to its hosts once, not once per source).
    pub destinations: Arc<[HostId]>,
    /// VMs never moved (`--exclude`), on every source.
    pub exclude: Vec<String>,
}

/// A fresh run id: seconds since 1970 and the process id, in hex.
pub fn run_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs:x}-{:x}", std::process::id())
}

fn kv<'a>(flag: &str, item: &'a str) -> Result<(&'a str, &'a str)> {
    item.split_once('=')
        .filter(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty())
        .map(|(k, v)| (k.trim(), v.trim()))
        .ok_or_else(|| anyhow!("flag `{flag}`: `{item}` is not of the form NAME=VALUE"))
}

/// Builds the draft spec. Errors name the flag at fault.
pub fn draft(chosen: &Chosen, cfg: &ConfigFile, eff: &Effective, run_id: String) -> Result<Draft> {
    let placement = chosen.placement();
    let destinations: Vec<HostId> = dedup(placement.to.iter().map(|s| HostId::new(s.trim())));
    let exclude: Vec<String> = placement
        .exclude
        .iter()
        .map(|p| p.trim().to_owned())
        .collect();
    if destinations.iter().any(|d| d.as_str().is_empty()) {
        bail!("flag `--to`: an empty host name");
    }
    let host_arg = |what: &str, h: &str| -> Result<HostId> {
        let h = h.trim();
        if h.is_empty() {
            bail!("{what}: an empty host name");
        }
        Ok(HostId::new(h))
    };
    let mut by_source: BTreeMap<HostId, Selection> = BTreeMap::new();
    let mut unsourced = Vec::new();
    let mut search = Vec::new();
    match chosen {
        Chosen::Evacuate(a) => {
            for h in &a.hosts {
                by_source.insert(host_arg("evacuate", h)?, Selection::All);
            }
        }
        Chosen::Migrate(a) => {
            let mut loose = Vec::new();
            for item in &a.vms {
                match item.split_once(':') {
                    Some((h, pat)) if cfg.hosts.contains_key(&HostId::new(h)) => {
                        push_name(&mut by_source, HostId::new(h), pat);
                    }
                    // `HOST:VM` with a host nobody configured: a typo, not a VM named so.
                    Some((h, _)) => bail!(
                        "`{item}`: `{h}` is not a configured host (`HOST:VM` names the source host; configured: {})",
                        configured(cfg)
                    ),
                    None => loose.push(item.clone()),
                }
            }
            if !loose.is_empty() {
                if a.from.is_empty() {
                    search = cfg
                        .hosts
                        .keys()
                        .filter(|h| !destinations.contains(h))
                        .cloned()
                        .collect();
                    if search.is_empty() {
                        bail!(
                            "no configured host to look for {} on: name the source with `--from HOST` or `HOST:VM`",
                            loose.join(", ")
                        );
                    }
                    unsourced = loose;
                } else {
                    for h in &a.from {
                        let h = host_arg("flag `--from`", h)?;
                        for p in &loose {
                            push_name(&mut by_source, h.clone(), p);
                        }
                    }
                }
            }
        }
    }
    let mut pins = cfg.pins.clone();
    for p in &placement.pins {
        let (vm, host) = kv("--pin", p)?;
        pins.insert(vm.to_owned(), HostId::new(host));
    }
    let mut priorities = cfg.priorities.clone();
    for p in &placement.priorities {
        let (vm, n) = kv("--priority", p)?;
        let n: i32 = n.parse().map_err(|e: std::num::ParseIntError| {
            let range = crate::config::priority_range();
            match e.kind() {
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                    anyhow!("flag `--priority`: `{n}` is out of range: a priority is {range}")
                }
                _ => anyhow!(
                    "flag `--priority`: `{n}` is not a whole number (a priority is {range})"
                ),
            }
        })?;
        priorities.insert(vm.to_owned(), n);
    }
    let hosts: BTreeMap<HostId, HostLimits> = cfg
        .hosts
        .iter()
        .map(|(h, c)| {
            (
                h.clone(),
                HostLimits {
                    max_migrations: c.max_migrations,
                },
            )
        })
        .collect();
    let layouts: BTreeMap<HostId, PathLayout> = cfg
        .hosts
        .iter()
        .map(|(h, c)| {
            (
                h.clone(),
                PathLayout {
                    base: eff.path.clone().or_else(|| c.path.clone()),
                    put_in_subfolder: c.put_in_subfolder.unwrap_or(eff.put_in_subfolder),
                    preserve_drive_letter: c
                        .preserve_drive_letter
                        .unwrap_or(eff.preserve_drive_letter),
                },
            )
        })
        .collect();
    let destinations: Arc<[HostId]> = destinations.into();
    let sources = by_source
        .into_iter()
        .map(|(host, select)| SourceSpec {
            host,
            select,
            destinations: destinations.clone(),
            exclude: exclude.clone(),
        })
        .collect();
    let spec = RunSpec {
        run_id,
        sources,
        hosts,
        layouts,
        pins,
        priorities,
        settings: eff.settings.clone(),
    };
    Ok(Draft {
        spec,
        unsourced,
        search,
        destinations,
        exclude,
    })
}

impl Draft {
    /// Checks the draft as the core will, with every searched host standing in as a source of
    /// the unsourced patterns (so a bad pattern or host is reported before any host is asked).
    pub fn precheck(&self) -> Result<(), vmove_core::SpecError> {
        let mut spec = self.spec.clone();
        for h in &self.search {
            if !spec.sources.iter().any(|s| &s.host == h) {
                spec.sources.push(SourceSpec {
                    host: h.clone(),
                    select: Selection::Names(self.unsourced.clone()),
                    destinations: self.destinations.clone(),
                    exclude: self.exclude.clone(),
                });
            }
        }
        spec.validate()
    }

    /// Adds the unsourced patterns to the hosts where they were found. `found` maps each
    /// pattern to the hosts whose VM list matches it; a pattern found nowhere is an error.
    pub fn resolve(mut self, found: &BTreeMap<String, Vec<HostId>>) -> Result<RunSpec> {
        for p in &self.unsourced {
            let hosts = found.get(p).map(Vec::as_slice).unwrap_or(&[]);
            if hosts.is_empty() {
                bail!(
                    "`{p}` matches no VM on any configured host that is not a destination ({}); name its host with `--from HOST` or `HOST:{p}`",
                    self.search
                        .iter()
                        .map(|h| h.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            for h in hosts {
                match self.spec.sources.iter_mut().find(|s| &s.host == h) {
                    Some(s) => {
                        if let Selection::Names(n) = &mut s.select
                            && !n.contains(p)
                        {
                            n.push(p.clone());
                        }
                    }
                    None => self.spec.sources.push(SourceSpec {
                        host: h.clone(),
                        select: Selection::Names(vec![p.clone()]),
                        destinations: self.destinations.clone(),
                        exclude: self.exclude.clone(),
                    }),
                }
            }
        }
        self.spec.sources.sort_by(|a, b| a.host.cmp(&b.host));
        Ok(self.spec)
    }
}

fn configured(cfg: &ConfigFile) -> String {
    if cfg.hosts.is_empty() {
        return "none".into();
    }
    cfg.hosts
        .keys()
        .map(|h| format!("`{h}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a complete spec against the VMs its sources list now, before anything is started:
/// each name or pattern must match a VM on its source (a typo in `HOST:VM` or after `--from`
/// is refused as a plain name's is), each `--pin` and `--priority` must name a VM of the run,
/// and each pin of a VM of the run must be one of its allowed destinations (`--to`).
pub fn check_selection(
    spec: &RunSpec,
    listed: &BTreeMap<HostId, Vec<VmInfo>>,
    placement: &Placement,
) -> Result<()> {
    // VM name -> its source's allowed destinations.
    let mut chosen: BTreeMap<&str, &[HostId]> = BTreeMap::new();
    for src in &spec.sources {
        let vms = listed.get(&src.host).map(Vec::as_slice).unwrap_or(&[]);
        let sel = vmove_core::select::apply_source(src, vms);
        let mut lost = sel.missing.clone();
        lost.extend(sel.unmatched_patterns.iter().cloned());
        if !lost.is_empty() {
            bail!(
                "{} {} no VM on host `{}`; nothing was started",
                lost.iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if lost.len() == 1 { "matches" } else { "match" },
                src.host
            );
        }
        for i in sel.chosen {
            if let Some(v) = vms.get(i) {
                chosen.insert(&*v.name, &src.destinations);
            }
        }
    }
    refuse_named_and_excluded(spec, listed)?;
    for (flag, items) in [
        ("--pin", &placement.pins),
        ("--priority", &placement.priorities),
    ] {
        for item in items {
            let (vm, _) = kv(flag, item)?;
            if !chosen.contains_key(vm) {
                bail!("flag `{flag}`: no VM named `{vm}` is moved by this run");
            }
        }
    }
    for (vm, allowed) in &chosen {
        if let Some(host) = spec.pins.get(*vm)
            && !allowed.contains(host)
        {
            bail!(
                "{} (allowed: {})",
                vmove_core::SpecError::BadPin {
                    vm: (*vm).to_owned(),
                    host: host.clone(),
                },
                allowed
                    .iter()
                    .map(|h| format!("`{h}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(())
}

/// Refuses a VM named to be moved that `--exclude` leaves out, and a pattern every VM of which
/// it leaves out: the run would move none of them, and exit 0 as if it had done what was asked.
/// (A pattern that selects some VMs `--exclude` does not match is what `--exclude` is for.) A
/// name or pattern counts over every source it was given or found on.
fn refuse_named_and_excluded(spec: &RunSpec, listed: &BTreeMap<HostId, Vec<VmInfo>>) -> Result<()> {
    // Name or pattern -> (VMs it selects, those excluded with the exclusion that matched).
    let mut given: BTreeMap<&str, (usize, Vec<(&str, &str)>)> = BTreeMap::new();
    for src in &spec.sources {
        let Selection::Names(pats) = &src.select else {
            continue;
        };
        if src.exclude.is_empty() {
            continue;
        }
        let vms = listed.get(&src.host).map(Vec::as_slice).unwrap_or(&[]);
        for p in pats {
            let sel = vmove_core::select::apply(&Selection::Names(vec![p.clone()]), vms);
            let entry = given.entry(p).or_default();
            entry.0 += sel.chosen.len();
            for vm in sel.chosen.iter().filter_map(|&i| vms.get(i)) {
                if let Some(by) = vmove_core::select::excluded_by(&src.exclude, vm) {
                    entry.1.push((&*vm.name, by));
                }
            }
        }
    }
    let wrong: Vec<String> = given
        .into_iter()
        .filter(|(_, (selected, excluded))| *selected > 0 && excluded.len() == *selected)
        .map(|(p, (_, excluded))| {
            if vmove_core::select::is_glob(p) {
                format!(
                    "`{p}` selects only VMs `--exclude` leaves out ({})",
                    excluded
                        .iter()
                        .map(|(vm, by)| format!("`{vm}` by `{by}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                let by: BTreeSet<&str> = excluded.iter().map(|(_, by)| *by).collect();
                format!(
                    "`{p}` is named to be moved but excluded by `--exclude {}`",
                    by.into_iter().collect::<Vec<_>>().join(",")
                )
            }
        })
        .collect();
    if !wrong.is_empty() {
        bail!(
            "{}: nothing was started; take {} out of the VMs to move or out of `--exclude`",
            wrong.join("; "),
            if wrong.len() == 1 { "it" } else { "them" }
        );
    }
    Ok(())
}

fn push_name(by_source: &mut BTreeMap<HostId, Selection>, host: HostId, pat: &str) {
    let entry = by_source
        .entry(host)
        .or_insert_with(|| Selection::Names(Vec::new()));
    if let Selection::Names(n) = entry
        && !n.iter().any(|x| x == pat)
    {
        n.push(pat.to_owned());
    }
}

fn dedup(it: impl Iterator<Item = HostId>) -> Vec<HostId> {
    let mut seen = BTreeSet::new();
    it.filter(|h| seen.insert(h.clone())).collect()
}

/// The hosts a run evacuates: the sources it takes every VM of (`vmove evacuate HOST`; `migrate`
/// always names its VMs), in the spec's order. Their maintenance hooks run before and after the
/// run, and again around a resumed one (`runs::resume`): the one place that says which hosts
/// those are, from the run's recorded spec.
pub fn evacuated(spec: &RunSpec) -> Vec<HostId> {
    spec.sources
        .iter()
        .filter(|s| matches!(s.select, Selection::All))
        .map(|s| s.host.clone())
        .collect()
}

/// Every host a spec touches (sources and destinations).
pub fn involved(spec: &RunSpec) -> BTreeSet<HostId> {
    let mut s = BTreeSet::new();
    for src in &spec.sources {
        s.insert(src.host.clone());
        s.extend(src.destinations.iter().cloned());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{EvacuateArgs, MigrateArgs, Placement};
    use crate::{config, settings};

    const HOSTS: &str = r#"
[hosts.a]
driver = "sim"
vms = [{ name = "web-1", memory_gib = 2 }]

[hosts.b]
driver = "sim"
vms = [{ name = "web-2", memory_gib = 2 }]

[hosts.c]
driver = "sim"

[hosts.d]
driver = "sim"
"#;

    fn placement() -> Placement {
        Placement {
            to: vec!["c".into(), "d".into()],
            pins: vec![],
            priorities: vec![],
            exclude: vec![],
            dry_run: false,
        }
    }

    fn draft_of(chosen: &Chosen) -> Draft {
        let cfg = config::parse(HOSTS, std::path::Path::new("test.toml")).expect("config");
        let eff =
            settings::merge(&cfg.defaults, "test", &|_: &str| None, &[], None).expect("settings");
        draft(chosen, &cfg, &eff, "test".into()).expect("draft")
    }

    /// Every source of a request holds the one `--to` list (one `Arc`), also the sources a
    /// pattern found on a host adds: the engine maps a shared list to its hosts once, where
    /// a list per source was looked up host by host again for each.
    #[test]
    fn every_source_of_a_request_shares_one_destination_list() {
        let evacuate = draft_of(&Chosen::Evacuate(EvacuateArgs {
            hosts: vec!["a".into(), "b".into()],
            placement: placement(),
        }));
        let lists: Vec<&Arc<[HostId]>> = evacuate
            .spec
            .sources
            .iter()
            .map(|s| &s.destinations)
            .collect();
        assert_eq!(lists.len(), 2);
        assert!(Arc::ptr_eq(lists[0], lists[1]), "two lists for one --to");
        let names: Vec<&str> = lists[0].iter().map(HostId::as_str).collect();
        assert_eq!(names, ["c", "d"]);

        let migrate = draft_of(&Chosen::Migrate(MigrateArgs {
            vms: vec!["a:web-1".into(), "web-2".into()],
            from: vec![],
            placement: placement(),
        }));
        let found = BTreeMap::from([("web-2".to_string(), vec![HostId::new("b")])]);
        let spec = migrate.resolve(&found).expect("resolve");
        assert_eq!(spec.sources.len(), 2);
        assert!(
            Arc::ptr_eq(&spec.sources[0].destinations, &spec.sources[1].destinations),
            "the source a pattern was found on holds a list of its own"
        );
    }
}
