//! Merging the `[defaults]` of the config file, `VMOVE_<KEY>` environment variables and the
//! command-line knobs into one [`Effective`] set of settings. Precedence: flags > environment >
//! file > built-in defaults. Every value is checked on its own first, so an error names the key
//! and where the bad value came from.

use crate::config::ConfigError;
use std::collections::BTreeMap;
use std::time::Duration;
use vmove_core::Settings;
use vmove_core::spec::dur;

/// `[defaults]` keys that are not [`Settings`] fields (the CLI and runtime read them).
pub const EXTRA_KEYS: [&str; 8] = [
    "put_in_subfolder",
    "preserve_drive_letter",
    "call_timeout",
    "journal",
    "journal_lease",
    "journal_wait",
    "bandwidth_mib_s",
    "hook_timeout",
];

/// The default of `hook_timeout`: the longest a maintenance hook may run.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// The default lease time of a journaled run (refreshed every third of it).
pub const DEFAULT_JOURNAL_LEASE: Duration = Duration::from_secs(30);

/// The simulator's models of other tools' policies (`SchedulerPolicy`'s peers, as written):
/// refused by a run, by name.
const PEER_POLICIES: [&str; 5] = ["kubevirt", "nova", "proxmox", "vsphere", "all_at_once"];

/// Keys whose string values may be written with dashes (`largest-first`).
const ENUM_KEYS: [&str; 4] = ["order", "policy", "stall_action", "completion_action"];

/// The default of the runtime's per-call time-out.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The settings in force, with where each came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Effective {
    /// The core's knobs.
    pub settings: Settings,
    /// Default for every destination: put each VM in `<path>/<VM name>`.
    pub put_in_subfolder: bool,
    /// Default for every destination: keep each disk's source drive letter.
    pub preserve_drive_letter: bool,
    /// The longest a single driver call may take.
    pub call_timeout: Duration,
    /// `--path`: destination base folder for every destination (overrides each host's `path`).
    pub path: Option<String>,
    /// The journal file (`journal`); `None`: the default under the user's data directory.
    pub journal: Option<String>,
    /// The lease time of a journaled run (`journal_lease`).
    pub journal_lease: Duration,
    /// How long a run waits for a journal that cannot be written (`journal_wait`).
    pub journal_wait: Duration,
    /// `bandwidth_mib_s` / `--bandwidth`: each migration's transfer-rate cap, MiB/s (given to
    /// the libvirt hosts that set none of their own; with the flag, to every libvirt host).
    pub bandwidth_mib_s: Option<u64>,
    /// `hook_timeout`: the longest a maintenance hook may run before it is killed (and fails).
    pub hook_timeout: Duration,
    /// Key -> where its value came from (keys left at their default are absent).
    pub origins: BTreeMap<String, String>,
}

/// Every `[defaults]` key: the [`Settings`] fields, then [`EXTRA_KEYS`].
pub fn all_keys() -> Vec<String> {
    let mut keys: Vec<String> = match serde_json::to_value(Settings::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    keys.extend(EXTRA_KEYS.iter().map(|k| k.to_string()));
    keys
}

/// Reads the process's environment (a function so the settings code can be tested with a map).
pub fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// The environment variable for a key: `VMOVE_MAX_ATTEMPTS`.
pub fn env_name(key: &str) -> String {
    format!("VMOVE_{}", key.to_ascii_uppercase())
}

/// Reads a value written on the command line or in the environment: TOML syntax when it is
/// (`5`, `true`, `0.2`), else a string (`90s`, `abort`).
pub fn parse_raw(key: &str, raw: &str) -> toml::Value {
    let v = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !matches!(v, toml::Value::Table(_) | toml::Value::Array(_)))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_owned()));
    normalise(key, v)
}

/// An enum key's value with `-` for `_` (`largest-first`), when that makes it a value the key
/// takes; else as written, so that an error shows what was written (`-1%`, not `_1%`).
fn normalise(key: &str, v: toml::Value) -> toml::Value {
    match v {
        toml::Value::String(s) if ENUM_KEYS.contains(&key) => {
            let dashed = toml::Value::String(s.replace('-', "_"));
            let mut t = toml::Table::new();
            t.insert(key.to_owned(), dashed.clone());
            if t.try_into::<Settings>().is_ok() {
                dashed
            } else {
                toml::Value::String(s)
            }
        }
        v => v,
    }
}

/// Checks one key's value on its own.
fn check(
    key: &str,
    value: &toml::Value,
    origin: &str,
    known: &[String],
) -> Result<(), ConfigError> {
    let bad = |message: String| ConfigError::BadValue {
        origin: origin.to_owned(),
        key: key.to_owned(),
        message,
    };
    match key {
        "put_in_subfolder" | "preserve_drive_letter" => match value {
            toml::Value::Boolean(_) => Ok(()),
            other => Err(bad(format!("must be true or false, not {other}"))),
        },
        "call_timeout" | "hook_timeout" | "journal_wait" => {
            duration_of(value).map(|_| ()).map_err(bad)
        }
        // One rule, [`vmove_journal::lease_out_of_bounds`] (0s included: not the 1ms floor of
        // the other durations).
        "journal_lease" => any_duration_of(value)
            // Longer than any duration (`100000h`) is over the lease's own bound too: say that.
            .map_err(|e| {
                if e.contains("is longer than") {
                    format!(
                        "{e}; `journal_lease` must be at most {}",
                        dur::format_duration(vmove_journal::MAX_LEASE)
                    )
                } else {
                    e
                }
            })
            .and_then(|d| vmove_journal::lease_out_of_bounds(d).map_or(Ok(()), Err))
            .map_err(bad),
        "bandwidth_mib_s" => bandwidth_of(value).map(|_| ()).map_err(bad),
        "journal" => match value {
            toml::Value::String(p) if !p.is_empty() => Ok(()),
            other => Err(bad(format!("must be a file path, not {other}"))),
        },
        "policy" => {
            // A peer's policy is a model for the simulator's benchmark (`vmove-bench`): it
            // ignores what keeps a real run safe (e.g. "everything at once" has no limit).
            let peer = |name: &str| {
                bad(format!(
                    "`{name}` is another tool's policy, modelled only for the simulator's \
                     benchmark (vmove-bench); a run takes `vmove` or `seed`"
                ))
            };
            // By name first: serde's own words for `kubevirt` ("invalid type: unit variant,
            // expected struct variant") say nothing useful, and its list of expected values
            // names the peers, which a run refuses.
            if let toml::Value::String(name) = value {
                return match name.as_str() {
                    "vmove" | "seed" => Ok(()),
                    // Named as the benchmark's tables name it (`all-at-once`).
                    n if PEER_POLICIES.contains(&n) => Err(peer(&n.replace('_', "-"))),
                    other => Err(bad(format!(
                        "must be `vmove` or `seed`, not `{}`",
                        other.escape_debug()
                    ))),
                };
            }
            let mut t = toml::Table::new();
            t.insert(key.to_owned(), value.clone());
            match t.try_into::<Settings>() {
                Ok(s) if s.policy.is_peer() => Err(peer(&s.policy.label())),
                Ok(_) => Ok(()),
                Err(_) => Err(bad(format!("must be `vmove` or `seed`, not {value}"))),
            }
        }
        k if known.iter().any(|x| x == k) => {
            let mut t = toml::Table::new();
            t.insert(k.to_owned(), value.clone());
            t.try_into::<Settings>()
                .map(|_| ())
                .map_err(|e| bad(vmove_driver::words::plain(e.message().trim())))
        }
        _ => Err(ConfigError::UnknownKey {
            origin: origin.to_owned(),
            key: key.to_owned(),
            hint: " (docs/config.md lists every key of [defaults]; `vmove config` prints them)"
                .into(),
        }),
    }
}

/// A bandwidth cap, MiB/s: a whole number of at least 1.
fn bandwidth_of(v: &toml::Value) -> Result<u64, String> {
    match v {
        toml::Value::Integer(n) if *n >= 1 => Ok(*n as u64),
        toml::Value::Integer(n) => Err(format!(
            "must be at least 1 MiB/s, not {n} (leave it out for no cap)"
        )),
        other => Err(format!(
            "must be a whole number of MiB/s like 100, not {other}"
        )),
    }
}

/// A duration, 0s included: [`duration_of`] without its floor.
fn any_duration_of(v: &toml::Value) -> Result<Duration, String> {
    Ok(match v {
        toml::Value::String(s) => dur::parse_duration(s)?,
        toml::Value::Integer(n) if *n >= 0 => dur::from_secs_f64(*n as f64)?,
        toml::Value::Float(f) => dur::from_secs_f64(*f)?,
        other => {
            return Err(format!(
                "must be a duration like \"90s\" or \"2m\", not {other}"
            ));
        }
    })
}

fn duration_of(v: &toml::Value) -> Result<Duration, String> {
    let d = any_duration_of(v)?;
    if d.is_zero() {
        return Err("must be at least 1ms, not 0s".into());
    }
    Ok(d)
}

/// Merges the layers. `file_origin` names the config file for messages; `env` reads the
/// environment (a function so tests can pass a map); `flags` are `(key, flag, raw value)`.
pub fn merge(
    file_defaults: &toml::Table,
    file_origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
    flags: &[(&'static str, &'static str, String)],
    path_flag: Option<String>,
) -> Result<Effective, ConfigError> {
    let known: Vec<String> = all_keys();
    let mut merged = toml::Table::new();
    let mut origins = BTreeMap::new();
    for (k, v) in file_defaults {
        let v = normalise(k, v.clone());
        check(k, &v, &format!("{file_origin}, [defaults]"), &known)?;
        origins.insert(k.clone(), file_origin.to_owned());
        merged.insert(k.clone(), v);
    }
    for k in &known {
        let name = env_name(k);
        if let Some(raw) = env(&name) {
            let v = parse_raw(k, &raw);
            let origin = format!("environment variable `{name}`");
            check(k, &v, &origin, &known)?;
            origins.insert(k.clone(), origin);
            merged.insert(k.clone(), v);
        }
    }
    for (k, flag, raw) in flags {
        let v = parse_raw(k, raw);
        let origin = format!("flag `{flag}`");
        check(k, &v, &origin, &known)?;
        origins.insert((*k).to_owned(), origin);
        merged.insert((*k).to_owned(), v);
    }
    let take_bool =
        |t: &mut toml::Table, k: &str| t.remove(k).and_then(|v| v.as_bool()).unwrap_or(false);
    let put_in_subfolder = take_bool(&mut merged, "put_in_subfolder");
    let preserve_drive_letter = take_bool(&mut merged, "preserve_drive_letter");
    let call_timeout = match merged.remove("call_timeout") {
        Some(v) => duration_of(&v).unwrap_or(DEFAULT_CALL_TIMEOUT),
        None => DEFAULT_CALL_TIMEOUT,
    };
    let journal_lease = match merged.remove("journal_lease") {
        Some(v) => any_duration_of(&v).unwrap_or(DEFAULT_JOURNAL_LEASE),
        None => DEFAULT_JOURNAL_LEASE,
    };
    let journal_wait = match merged.remove("journal_wait") {
        Some(v) => duration_of(&v).unwrap_or(vmove_runtime::DEFAULT_JOURNAL_WAIT),
        None => vmove_runtime::DEFAULT_JOURNAL_WAIT,
    };
    let hook_timeout = match merged.remove("hook_timeout") {
        Some(v) => duration_of(&v).unwrap_or(DEFAULT_HOOK_TIMEOUT),
        None => DEFAULT_HOOK_TIMEOUT,
    };
    let bandwidth_mib_s = merged
        .remove("bandwidth_mib_s")
        .and_then(|v| bandwidth_of(&v).ok());
    let journal = merged
        .remove("journal")
        .and_then(|v| v.as_str().map(str::to_owned));
    let settings = merged
        .try_into::<Settings>()
        .map_err(|e| ConfigError::BadValue {
            origin: "the merged settings".into(),
            key: "defaults".into(),
            message: vmove_driver::words::plain(e.message().trim()),
        })?;
    // The knobs together, as a run checks them: a value no run accepts ("0s" intervals) is
    // refused here already, so `vmove config` says what a run would.
    settings.validate().map_err(|e| {
        let key = match &e {
            vmove_core::SpecError::ZeroCap(k) => k.clone(),
            vmove_core::SpecError::BadSetting { key, .. } => (*key).to_owned(),
            _ => "defaults".to_owned(),
        };
        let message = match &e {
            vmove_core::SpecError::ZeroCap(_) => "must be at least 1".to_owned(),
            vmove_core::SpecError::BadSetting { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        ConfigError::BadValue {
            origin: origins
                .get(&key)
                .cloned()
                .unwrap_or_else(|| "the built-in defaults".into()),
            key,
            message,
        }
    })?;
    if path_flag.is_some() {
        origins.insert("path".into(), "flag `--path`".into());
    }
    Ok(Effective {
        settings,
        put_in_subfolder,
        preserve_drive_letter,
        call_timeout,
        path: path_flag,
        journal,
        journal_lease,
        journal_wait,
        bandwidth_mib_s,
        hook_timeout,
        origins,
    })
}

/// The effective settings as a `[defaults]` TOML table, each line commented with its origin.
pub fn render(eff: &Effective) -> String {
    let mut out = String::from("[defaults]\n");
    let table = toml::Table::try_from(&eff.settings).unwrap_or_default();
    let origin = |k: &str| {
        eff.origins
            .get(k)
            .cloned()
            .unwrap_or_else(|| "default".into())
    };
    for k in all_keys() {
        let line = match k.as_str() {
            "put_in_subfolder" => format!("{k} = {}", eff.put_in_subfolder),
            "preserve_drive_letter" => format!("{k} = {}", eff.preserve_drive_letter),
            "call_timeout" => format!("{k} = \"{}\"", dur::format_duration(eff.call_timeout)),
            "journal_lease" => format!("{k} = \"{}\"", dur::format_duration(eff.journal_lease)),
            "journal_wait" => format!("{k} = \"{}\"", dur::format_duration(eff.journal_wait)),
            "hook_timeout" => format!("{k} = \"{}\"", dur::format_duration(eff.hook_timeout)),
            "bandwidth_mib_s" => match eff.bandwidth_mib_s {
                Some(b) => format!("{k} = {b}"),
                None => format!("# {k} = (not set: no cap)"),
            },
            "journal" => match &eff.journal {
                Some(p) => format!("{k} = {p:?}"),
                None => format!("# {k} = (default: <user data dir>/vmove/journal.db)"),
            },
            _ => match table.get(&k) {
                Some(v) => format!("{k} = {v}"),
                None => format!("# {k} = (not set)"),
            },
        };
        out.push_str(&format!("{line:<40} # {}\n", origin(&k)));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_are_the_seeds() {
        let e = merge(&toml::Table::new(), "f", &env_of(&[]), &[], None).unwrap();
        assert_eq!(e.settings, Settings::default());
        assert_eq!(e.settings.max_attempts, 3);
        assert_eq!(e.settings.backup_threshold, Duration::from_secs(3600));
        assert!(!e.put_in_subfolder && !e.preserve_drive_letter);
        assert_eq!(e.call_timeout, DEFAULT_CALL_TIMEOUT);
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let file: toml::Table =
            toml::from_str("max_attempts = 4\nbackup_threshold = \"2h\"\npoll_interval = \"30s\"")
                .unwrap();
        let env = env_of(&[
            ("VMOVE_MAX_ATTEMPTS", "5"),
            ("VMOVE_BACKUP_THRESHOLD", "90m"),
        ]);
        let flags = [("max_attempts", "--max-attempts", "6".to_string())];
        let e = merge(&file, "config file `f`", &env, &flags, None).unwrap();
        assert_eq!(e.settings.max_attempts, 6);
        assert_eq!(e.settings.backup_threshold, Duration::from_secs(90 * 60));
        assert_eq!(e.settings.poll_interval, Duration::from_secs(30));
        assert_eq!(e.origins["max_attempts"], "flag `--max-attempts`");
        assert_eq!(
            e.origins["backup_threshold"],
            "environment variable `VMOVE_BACKUP_THRESHOLD`"
        );
    }

    #[test]
    fn a_peer_policy_is_refused_outside_the_simulator() {
        // From the config file (a table with the peer's limits), and from the environment.
        let file: toml::Table =
            toml::from_str("policy = { kubevirt = { per_cluster = 5, outbound_per_node = 2 } }")
                .unwrap();
        let e = merge(&file, "config file `f`", &env_of(&[]), &[], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`policy`")
                && e.contains("config file `f`")
                && e.contains("kubevirt(5,2)")
                && e.contains("simulator"),
            "{e}"
        );
        let env = env_of(&[("VMOVE_POLICY", "all-at-once")]);
        let e = merge(&toml::Table::new(), "f", &env, &[], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("VMOVE_POLICY") && e.contains("all-at-once") && e.contains("`vmove`"),
            "{e}"
        );
        // vmove's own policies still pass.
        let env = env_of(&[("VMOVE_POLICY", "seed")]);
        let e = merge(&toml::Table::new(), "f", &env, &[], None).unwrap();
        assert_eq!(e.settings.policy, vmove_core::spec::SchedulerPolicy::Seed);
    }

    #[test]
    fn bad_values_name_key_and_origin() {
        let file: toml::Table = toml::from_str("backup_threshold = \"1 fortnight\"").unwrap();
        let e = merge(&file, "config file `f`", &env_of(&[]), &[], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`backup_threshold`") && e.contains("config file `f`"),
            "{e}"
        );
        let e = merge(
            &toml::Table::new(),
            "f",
            &env_of(&[("VMOVE_MAX_ATTEMPTS", "lots")]),
            &[],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("VMOVE_MAX_ATTEMPTS") && e.contains("`max_attempts`"),
            "{e}"
        );
        let flags = [("order", "--order", "random".to_string())];
        let e = merge(&toml::Table::new(), "f", &env_of(&[]), &flags, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("flag `--order`"), "{e}");
        let file: toml::Table = toml::from_str("max_atempts = 3").unwrap();
        let e = merge(&file, "config file `f`", &env_of(&[]), &[], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key `max_atempts`"), "{e}");
    }

    #[test]
    fn journal_wait_defaults_to_five_minutes_and_refuses_what_is_not_a_duration() {
        let e = merge(&toml::Table::new(), "f", &env_of(&[]), &[], None).unwrap();
        assert_eq!(e.journal_wait, Duration::from_secs(300));
        assert!(
            render(&e).contains("journal_wait = \"5m\""),
            "{}",
            render(&e)
        );
        let flags = [("journal_wait", "--journal-wait", "90s".to_string())];
        let e = merge(&toml::Table::new(), "f", &env_of(&[]), &flags, None).unwrap();
        assert_eq!(e.journal_wait, Duration::from_secs(90));
        assert_eq!(e.origins["journal_wait"], "flag `--journal-wait`");
        for (raw, why) in [
            ("0s", "at least 1ms, not 0s"),
            ("soon", "soon"),
            ("0.5ms", "whole number of milliseconds"),
            ("1e-9", "whole number of milliseconds"),
        ] {
            let flags = [("journal_wait", "--journal-wait", raw.to_string())];
            let err = merge(&toml::Table::new(), "f", &env_of(&[]), &flags, None)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`journal_wait`")
                    && err.contains("flag `--journal-wait`")
                    && err.contains(why),
                "{err}"
            );
        }
    }

    #[test]
    fn a_journal_lease_under_1s_is_refused_naming_the_floor() {
        for raw in ["999ms", "1ms", "0.5"] {
            let flags = [("journal_lease", "--journal-lease", raw.to_string())];
            let err = merge(&toml::Table::new(), "f", &env_of(&[]), &flags, None)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`journal_lease`") && err.contains("must be at least 1s"),
                "{raw}: {err}"
            );
        }
        for raw in ["\"0.5ms\"", "1e-9"] {
            let file: toml::Table = toml::from_str(&format!("journal_lease = {raw}")).unwrap();
            let err = merge(&file, "config file `f`", &env_of(&[]), &[], None)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`journal_lease`") && err.contains("whole number of milliseconds"),
                "{raw}: {err}"
            );
        }
        let flags = [("journal_lease", "--journal-lease", "1s".to_string())];
        let e = merge(&toml::Table::new(), "f", &env_of(&[]), &flags, None).unwrap();
        assert_eq!(e.journal_lease, Duration::from_secs(1));
    }

    #[test]
    fn a_sub_millisecond_interval_is_refused_naming_the_key() {
        for (key, raw) in [("stall_timeout", "1e-9"), ("poll_interval", "\"0.5ms\"")] {
            let file: toml::Table = toml::from_str(&format!("{key} = {raw}")).unwrap();
            let err = merge(&file, "config file `f`", &env_of(&[]), &[], None)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains("whole number of milliseconds"),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn another_tools_policy_is_refused_by_name_and_only_accepted_policies_are_listed() {
        for name in [
            "kubevirt",
            "nova",
            "proxmox",
            "vsphere",
            "all_at_once",
            "all-at-once",
        ] {
            let file: toml::Table = toml::from_str(&format!("policy = \"{name}\"")).unwrap();
            let flags = [("policy", "--policy", name.to_string())];
            for (file, in_env, flags) in [
                (file, false, &[][..]),
                (toml::Table::new(), true, &[][..]),
                (toml::Table::new(), false, &flags[..]),
            ] {
                let env = |k: &str| (in_env && k == "VMOVE_POLICY").then(|| name.to_string());
                let err = merge(&file, "config file `f`", &env, flags, None)
                    .unwrap_err()
                    .to_string();
                assert!(
                    err.contains("`policy`")
                        && err.contains("another tool's policy")
                        && err.contains("a run takes `vmove` or `seed`")
                        && !err.contains("variant"),
                    "{name}: {err}"
                );
            }
        }
        let tables = [
            "policy = \"bogus\"",
            "policy = 3",
            "policy = { bogus = {} }",
            "policy = { nova = { per_compute = \"x\" } }",
        ];
        for text in tables {
            let file: toml::Table = toml::from_str(text).unwrap();
            let err = merge(&file, "config file `f`", &env_of(&[]), &[], None)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("must be `vmove` or `seed`")
                    && !err.contains("kubevirt")
                    && !err.contains("proxmox"),
                "{text}: {err}"
            );
        }
        let file: toml::Table = toml::from_str("policy = { nova = { per_compute = 2 } }").unwrap();
        let err = merge(&file, "config file `f`", &env_of(&[]), &[], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`nova(2)` is another tool's policy"), "{err}");
        for ok in ["vmove", "seed"] {
            let flags = [("policy", "--policy", ok.to_string())];
            assert!(merge(&toml::Table::new(), "f", &env_of(&[]), &flags, None).is_ok());
        }
    }

    #[test]
    fn dashes_in_enum_values_are_accepted() {
        let flags = [("order", "--order", "smallest-first".to_string())];
        let e = merge(&toml::Table::new(), "f", &env_of(&[]), &flags, None).unwrap();
        assert_eq!(e.settings.order, vmove_core::Order::SmallestFirst);
    }

    #[test]
    fn every_settings_key_is_known() {
        let keys = all_keys();
        for k in [
            "max_attempts",
            "poll_interval",
            "job_start_timeout",
            "job_start_attempts",
            "backup_threshold",
            "fail_fast",
            "max_parallel",
            "cluster_cap",
            "put_in_subfolder",
            "preserve_drive_letter",
            "call_timeout",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k}");
        }
    }
}
