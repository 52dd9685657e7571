//! Fuzzing the CLI's parsers on stable Rust (issue 12, section 6): proptest feeds arbitrary and
//! mutated inputs to the config file parser, the sim host tables, duration parsing, the
//! settings merge (flags and environment), the request builder (`HOST:NAME`, patterns, `--pin`,
//! `--priority`) and clap's argument parsing. The property is the same everywhere: an answer
//! (a value or an error), never a panic. A short run is part of `cargo test`;
//! `PROPTEST_CASES=200000 cargo test -p vmove fuzz_` runs longer (docs/fuzzing.md).
#![allow(clippy::unwrap_used)]

use crate::args::Cli;
use crate::config;
use crate::request::{self, Chosen};
use crate::settings;
use clap::Parser;
use proptest::prelude::*;
use std::path::Path;
use vmove_core::HostId;
use vmove_core::spec::dur;

/// A valid config to mutate: every table and most kinds of value.
const VALID: &str = r#"
[defaults]
max_attempts = 3
poll_interval = "60s"
backup_threshold = "1h 30m"
backoff_jitter = 0.2
order = "largest-first"
call_timeout = 120

[hosts.a]
driver = "sim"
speed = 1000
migration_limit = 2
memory_gib = 512
nic_gbps = 10.0
down = [{ from = "10s", for = "40s" }]
vms = [
  { name = "web-1", memory_gib = 2, disk_gib = 4, dirty_mib_s = 10 },
  { name = "db-1", memory_gib = 8.5, disk_gib = 10, backup_for = "10m", stall_after = "5s" },
  { name = "old-1", off = true, transient_failures = 1 },
]

[hosts.b]
driver = "sim"
speed = 1000
max_migrations = 3
path = "/vms"
put_in_subfolder = true

[pins]
web-1 = "b"

[priorities]
db-1 = 5
"#;

/// Pieces of TOML and of vmove's vocabulary, so that mutations reach deep into the parsers.
const WORDS: &[&str] = &[
    "[defaults]",
    "[hosts.x]",
    "[pins]",
    "[priorities]",
    "[[hosts]]",
    "driver = \"sim\"",
    "driver = \"libvirt\"",
    "driver = \"hyperv\"",
    "=",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "\n",
    "#",
    "0",
    "-1",
    "1e20",
    "1e300",
    "-0.0",
    "nan",
    "inf",
    "-inf",
    "18446744073709551616",
    "9223372036854775807",
    "\"0s\"",
    "\"999999999999999999999d\"",
    "\"1e20s\"",
    "true",
    "max_migrations",
    "migration_limit",
    "speed",
    "memory_gib",
    "disk_gib",
    "nic_gbps",
    "stream_mb_s",
    "vms",
    "name",
    "state_file",
    "down",
    "from",
    "for",
    "backup_for",
    "stall_after",
    "dirty_mib_s",
    "poll_interval",
    "stall_timeout",
    "journal_lease",
    "journal",
    "\u{1b}",
    "\u{0}",
    "é",
    "🦀",
];

/// A mutated text: pieces of `base` replaced, deleted, duplicated or salted with [`WORDS`].
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    let edit = (
        0usize..4,
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        0usize..WORDS.len(),
    );
    prop::collection::vec(edit, 1..8).prop_map(move |edits| {
        let mut s: Vec<char> = base.chars().collect();
        for (kind, at, len, word) in edits {
            let i = at.index(s.len() + 1);
            let n = len.index(16).min(s.len().saturating_sub(i));
            match kind {
                0 => {
                    s.splice(i..i, WORDS[word].chars());
                }
                1 => {
                    s.drain(i..i + n);
                }
                2 => {
                    let piece: Vec<char> = s[i..i + n].to_vec();
                    s.splice(i..i, piece);
                }
                _ => {
                    s.splice(i..i + n, WORDS[word].chars());
                }
            }
        }
        s.into_iter().collect()
    })
}

/// Sim host tables may name a state file: the fuzz must not write files, so it is dropped.
fn without_files(mut t: toml::Table) -> toml::Table {
    t.remove("state_file");
    t
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// A value as a user might type it for any key.
fn raw_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "-?[0-9]{0,25}(\\.[0-9]{0,6})?(e-?[0-9]{1,3})?".prop_map(|s| s),
        "[0-9]{1,22}(\\.[0-9]{1,4})? ?(ms|s|m|h|d|x|)( [0-9]{1,22}(ms|s|m|h|d))?".prop_map(|s| s),
        prop::sample::select(vec![
            "nan",
            "inf",
            "-inf",
            "-1",
            "0",
            "0s",
            "true",
            "[1]",
            "{a=1}",
            "\"x\"",
            "abort",
            "escalate",
            "largest-first",
            "seed",
            "",
            " ",
            "1e400",
            "-0",
        ])
        .prop_map(str::to_owned),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    #[test]
    fn fuzz_config_parser_never_panics_on_any_text(text in any::<String>()) {
        let _ = config::parse(&text, Path::new("fuzz.toml"));
    }

    #[test]
    fn fuzz_config_parser_and_sim_hosts_never_panic_on_mutated_configs(text in mutated(VALID)) {
        if let Ok(cfg) = config::parse(&text, Path::new("fuzz.toml")) {
            let _ = settings::merge(&cfg.defaults, "fuzz", &no_env, &[], None);
            let group: Vec<(HostId, toml::Table)> = cfg
                .hosts
                .iter()
                .filter(|(_, h)| h.driver == config::DriverKind::Sim)
                .map(|(id, h)| (id.clone(), without_files(h.driver_table.clone())))
                .collect();
            if !group.is_empty() {
                let _ = vmove_sim::config::from_config(&group);
            }
        }
    }

    #[test]
    fn fuzz_duration_parser_never_panics_and_stays_in_range(text in raw_value()) {
        if let Ok(d) = dur::parse_duration(&text) {
            prop_assert!(d <= dur::MAX_DURATION, "{text:?} -> {d:?}");
            // What it prints reads back as the same duration.
            prop_assert_eq!(dur::parse_duration(&dur::format_duration(d)).ok().map(|x| x.as_millis()), Some(d.as_millis()));
        }
    }

    #[test]
    fn fuzz_settings_from_flags_and_environment_never_panic(
        picks in prop::collection::vec((any::<prop::sample::Index>(), raw_value()), 1..6),
        env_pick in (any::<prop::sample::Index>(), raw_value()),
    ) {
        let keys = settings::all_keys();
        let flags: Vec<(&'static str, &'static str, String)> = picks
            .into_iter()
            .map(|(i, v)| {
                let k: &'static str = Box::leak(keys[i.index(keys.len())].clone().into_boxed_str());
                (k, "--fuzz", v)
            })
            .collect();
        let env_key = settings::env_name(&keys[env_pick.0.index(keys.len())]);
        let env_val = env_pick.1.clone();
        let env = move |k: &str| (k == env_key).then(|| env_val.clone());
        if let Ok(eff) = settings::merge(&toml::Table::new(), "fuzz", &env, &flags, None) {
            // What merge accepts, a run accepts.
            prop_assert!(eff.settings.validate().is_ok());
            let _ = settings::render(&eff);
        }
    }

    #[test]
    fn fuzz_requests_never_panic(
        vms in prop::collection::vec(prop_oneof![any::<String>(), "[a-c]?:?[a-z*?\\[\\]!-]{0,6}".prop_map(|s| s)], 1..4),
        to in prop::collection::vec("[a-d ,:]{0,3}", 1..3),
        from in prop::collection::vec("[a-d ]{0,2}", 0..2),
        pins in prop::collection::vec(prop_oneof![any::<String>(), "[a-z-]{0,5}=?[a-d]{0,2}".prop_map(|s| s)], 0..3),
        priorities in prop::collection::vec(prop_oneof![any::<String>(), "[a-z-]{0,5}=?-?[0-9]{0,12}".prop_map(|s| s)], 0..3),
        exclude in prop::collection::vec(prop_oneof![any::<String>(), "[a-z*?\\[-]{0,5}".prop_map(|s| s)], 0..3),
        evacuate in any::<bool>(),
    ) {
        let cfg = config::parse(VALID, Path::new("fuzz.toml")).unwrap();
        let eff = settings::merge(&cfg.defaults, "fuzz", &no_env, &[], None).unwrap();
        let placement = crate::args::Placement { to, pins, priorities, exclude, dry_run: false };
        let chosen = if evacuate {
            Chosen::Evacuate(crate::args::EvacuateArgs { hosts: vms, placement })
        } else {
            Chosen::Migrate(crate::args::MigrateArgs { vms, from, placement })
        };
        if let Ok(draft) = request::draft(&chosen, &cfg, &eff, "fuzz".into()) {
            let _ = draft.precheck();
            let _ = draft.spec.validate();
            let listed = std::collections::BTreeMap::new();
            let _ = request::check_selection(&draft.spec, &listed, chosen.placement());
        }
    }

    #[test]
    fn fuzz_command_lines_never_panic(
        argv in prop::collection::vec(prop_oneof![
            prop::sample::select(vec![
                "migrate", "evacuate", "plan", "demo", "config", "resume", "status", "abort",
                "history", "report", "--to", "--from", "--pin", "--priority", "--dry-run",
                "--json", "--plain", "--report", "--config", "--journal", "--speed",
                "--max-attempts", "--poll-interval", "--stall-timeout", "--plan-bandwidth",
                "--plan-overhead", "--plan-history", "--watch", "--now", "--", "-1", "-", "a:web-1",
                "b", "1e20", "nan", "--help", "-h", "--version",
            ]).prop_map(str::to_owned),
            any::<String>(),
        ], 0..8),
    ) {
        let mut full = vec!["vmove".to_owned()];
        full.extend(argv);
        if let Ok(cli) = Cli::try_parse_from(&full) {
            let _ = settings::merge(
                &toml::Table::new(),
                "fuzz",
                &no_env,
                &cli.common.knobs.given(),
                cli.common.knobs.path.clone(),
            );
        }
    }
}
