//! The hostile-input catalogue (issue 12, section 4): each bad input below gets a clear error
//! that names what is wrong, exit code 1, no panic, and changes nothing: every file of the
//! sandbox (journal, sim host state, config files, the report's folder, HOME) is byte for byte
//! as before. Run as a user would, with the real binary, against sim hosts that keep their
//! state in a file.
#![allow(clippy::unwrap_used)]

mod support;

use support::{SIM_CONFIG, Sandbox};

/// One bad input: the command line, extra environment, and words its error must hold.
struct Case {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    needles: Vec<&'static str>,
}

fn case(name: &'static str, args: &[&str], needles: &[&'static str]) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        needles: needles.to_vec(),
    }
}

fn case_env(
    name: &'static str,
    args: &[&str],
    env: &[(&'static str, &str)],
    needles: &[&'static str],
) -> Case {
    Case {
        env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        ..case(name, args, needles)
    }
}

/// Config files with one thing wrong each: (file name, text).
fn bad_configs() -> Vec<(&'static str, String)> {
    let with = |extra: &str| format!("{SIM_CONFIG}\n{extra}\n");
    let vm_host = |vms: &str| {
        format!(
            "[hosts.a]\ndriver = \"sim\"\nvms = [{vms}]\n\n[hosts.b]\ndriver = \"sim\"\nmemory_gib = 64\n"
        )
    };
    let host = |keys: &str| {
        format!(
            "[hosts.a]\ndriver = \"sim\"\n{keys}\nvms = [{{ name = \"web-1\" }}]\n\n[hosts.b]\ndriver = \"sim\"\n"
        )
    };
    vec![
        ("empty-host.toml", with("[hosts.\"\"]\ndriver = \"sim\"")),
        ("comma-host.toml", with("[hosts.\"d,e\"]\ndriver = \"sim\"")),
        ("colon-host.toml", with("[hosts.\"d:e\"]\ndriver = \"sim\"")),
        ("space-host.toml", with("[hosts.\"d e\"]\ndriver = \"sim\"")),
        ("unknown-top.toml", with("[hostz.d]\ndriver = \"sim\"")),
        ("unknown-default.toml", format!("[defaults]\nmax_atempts = 3\n{SIM_CONFIG}")),
        ("wrong-type.toml", format!("[defaults]\nmax_attempts = \"three\"\n{SIM_CONFIG}")),
        ("zero-interval.toml", format!("[defaults]\npoll_interval = \"0s\"\n{SIM_CONFIG}")),
        ("huge-interval.toml", format!("[defaults]\nstall_timeout = 1e20\n{SIM_CONFIG}")),
        ("dup-host.toml", with("[hosts.a]\ndriver = \"sim\"")),
        ("driver-int.toml", with("[hosts.d]\ndriver = 3")),
        ("driver-xen.toml", with("[hosts.d]\ndriver = \"xen\"")),
        ("cap-zero.toml", with("[hosts.d]\ndriver = \"sim\"\nmax_migrations = 0")),
        ("cap-negative.toml", with("[hosts.d]\ndriver = \"sim\"\nmax_migrations = -1")),
        ("pin-int.toml", with("[pins]\nweb-1 = 3")),
        ("priority-text.toml", with("[priorities]\nweb-1 = \"high\"")),
        ("not-toml.toml", "[hosts.a\ndriver = ".to_owned()),
        ("speed-huge.toml", host("speed = 1e300")),
        ("speed-nan.toml", host("speed = nan")),
        ("speed-zero.toml", host("speed = 0")),
        ("host-memory-negative.toml", host("memory_gib = -1")),
        ("host-memory-huge.toml", host("memory_gib = 99999999999999")),
        ("nic-zero.toml", host("nic_gbps = 0")),
        ("nic-inf.toml", host("nic_gbps = inf")),
        ("sim-unknown-key.toml", host("cpus = 8")),
        ("vm-memory-negative.toml", vm_host("{ name = \"web-1\", memory_gib = -4 }")),
        ("vm-memory-nan.toml", vm_host("{ name = \"web-1\", memory_gib = nan }")),
        ("vm-disk-huge.toml", vm_host("{ name = \"web-1\", disk_gib = 1e300 }")),
        ("vm-dirty-huge.toml", vm_host("{ name = \"web-1\", dirty_mib_s = 999999999999999 }")),
        ("vm-empty-name.toml", vm_host("{ name = \"\" }")),
        ("vm-twice.toml", vm_host("{ name = \"web-1\" }, { name = \"web-1\" }")),
        ("vm-backup-huge.toml", vm_host("{ name = \"web-1\", backup_for = \"999999999999999999999d\" }")),
        (
            "speeds-differ.toml",
            "[hosts.a]\ndriver = \"sim\"\nspeed = 10\nvms = [{ name = \"web-1\" }]\n\n[hosts.b]\ndriver = \"sim\"\nspeed = 20\n".to_owned(),
        ),
    ]
}

fn catalogue(sb: &Sandbox) -> Vec<Case> {
    let typo_journal = sb.path("typo/journal.db");
    let typo_journal = typo_journal.to_str().unwrap();
    let dir = sb.dir.to_str().unwrap();
    let mv = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["migrate", "a:web-1", "--to", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let mvc = |name: &'static str, extra: &[&str], needles: &[&'static str]| Case {
        args: mv(extra),
        ..case(name, &[], needles)
    };
    let cfg = |name: &'static str, file: &str, needles: &[&'static str]| Case {
        args: mv(&["--config", file]),
        ..case(name, &[], needles)
    };
    vec![
        // Durations: huge, zero, negative, not durations (at `config` and at a run alike).
        mvc(
            "huge stall timeout",
            &["--stall-timeout", "999999999999999999999d"],
            &["--stall-timeout", "longest"],
        ),
        case(
            "huge stall timeout at config",
            &["config", "--stall-timeout", "999999999999999999999d"],
            &["--stall-timeout"],
        ),
        mvc(
            "poll interval 1e20",
            &["--poll-interval", "1e20"],
            &["--poll-interval", "longest"],
        ),
        case(
            "poll interval 1e20 at config",
            &["config", "--poll-interval", "1e20"],
            &["--poll-interval"],
        ),
        mvc(
            "poll interval 0s",
            &["--poll-interval", "0s"],
            &["--poll-interval", "longer than 0s"],
        ),
        case(
            "poll interval 0s at config",
            &["config", "--poll-interval", "0s"],
            &["--poll-interval", "longer than 0s"],
        ),
        case(
            "recheck interval 0 at config",
            &["config", "--recheck-interval", "0"],
            &["--recheck-interval"],
        ),
        case(
            "progress interval 0ms",
            &["config", "--progress-interval", "0ms"],
            &["--progress-interval"],
        ),
        case(
            "job start timeout 0s",
            &["config", "--job-start-timeout", "0s"],
            &["--job-start-timeout"],
        ),
        case_env(
            "stall timeout 0s from the environment",
            &["config"],
            &[("VMOVE_STALL_TIMEOUT", "0s")],
            &["VMOVE_STALL_TIMEOUT"],
        ),
        case(
            "backup threshold over a year",
            &["config", "--backup-threshold", "400d"],
            &["--backup-threshold", "longest"],
        ),
        case(
            "a sum of durations over a year",
            &["config", "--backoff-max", "200d 200d"],
            &["--backoff-max"],
        ),
        case(
            "call timeout 1e400",
            &["config", "--call-timeout", "1e400"],
            &["--call-timeout"],
        ),
        case(
            "call timeout -5",
            &["config", "--call-timeout", "-5"],
            &["--call-timeout"],
        ),
        case(
            "lease 0s",
            &["config", "--journal-lease", "0s"],
            &["--journal-lease"],
        ),
        case(
            "a fortnight",
            &["config", "--poll-interval", "5 fortnights"],
            &["--poll-interval", "unit"],
        ),
        case(
            "an empty duration",
            &["config", "--poll-interval", ""],
            &["--poll-interval"],
        ),
        case(
            "a duration without a number",
            &["config", "--stall-timeout", "s"],
            &["--stall-timeout"],
        ),
        // Numbers: -1 (was "unexpected argument"), 0, out of range, not numbers.
        case(
            "max attempts -1",
            &["config", "--max-attempts", "-1"],
            &["--max-attempts"],
        ),
        mvc(
            "max attempts -1 in a run",
            &["--max-attempts", "-1"],
            &["--max-attempts"],
        ),
        case(
            "max attempts 0",
            &["config", "--max-attempts", "0"],
            &["--max-attempts", "at least 1"],
        ),
        case(
            "max parallel beyond u32",
            &["config", "--max-parallel", "99999999999"],
            &["--max-parallel"],
        ),
        case(
            "cluster cap 0",
            &["config", "--cluster-cap", "0"],
            &["--cluster-cap"],
        ),
        case(
            "jitter 2",
            &["config", "--backoff-jitter", "2"],
            &["--backoff-jitter", "between 0 and 1"],
        ),
        case(
            "jitter nan",
            &["config", "--backoff-jitter", "nan"],
            &["--backoff-jitter"],
        ),
        case("seed -1", &["config", "--seed", "-1"], &["--seed"]),
        case(
            "order random",
            &["config", "--order", "random"],
            &["--order"],
        ),
        case(
            "stall action explode",
            &["config", "--stall-action", "explode"],
            &["--stall-action"],
        ),
        case_env(
            "max attempts lots from the environment",
            &["config"],
            &[("VMOVE_MAX_ATTEMPTS", "lots")],
            &["VMOVE_MAX_ATTEMPTS"],
        ),
        case_env(
            "journal empty from the environment",
            &["config"],
            &[("VMOVE_JOURNAL", "")],
            &["VMOVE_JOURNAL"],
        ),
        // The demo's speed: the environment variable is blamed, not the flag.
        case_env(
            "demo speed abc from the environment",
            &["demo"],
            &[("VMOVE_DEMO_SPEED", "abc")],
            &["VMOVE_DEMO_SPEED", "abc"],
        ),
        case("demo speed -1", &["demo", "--speed", "-1"], &["--speed"]),
        case(
            "demo speed 1e300",
            &["demo", "--speed", "1e300"],
            &["--speed"],
        ),
        case("demo speed nan", &["demo", "--speed", "NaN"], &["--speed"]),
        case(
            "plan bandwidth -1",
            &[
                "plan",
                "migrate",
                "a:web-1",
                "--to",
                "b",
                "--plan-bandwidth",
                "-1",
            ],
            &["--plan-bandwidth"],
        ),
        // --report: checked before the run starts.
        mvc(
            "report into a missing folder",
            &["--report", "/nonexistent-vmove-dir/r.json"],
            &["--report", "does not exist"],
        ),
        mvc(
            "report is a folder",
            &["--report", dir],
            &["--report", "folder"],
        ),
        mvc(
            "report under a file",
            &["--report", "vmove.toml/r.md"],
            &["--report"],
        ),
        mvc("report empty", &["--report", ""], &["--report"]),
        case(
            "demo report into a missing folder",
            &["demo", "--report", "/nonexistent-vmove-dir/r.md"],
            &["--report", "does not exist"],
        ),
        case(
            "plan report into a missing folder",
            &[
                "plan",
                "migrate",
                "a:web-1",
                "--to",
                "b",
                "--report",
                "/nonexistent-vmove-dir/r.md",
            ],
            &["--report"],
        ),
        // What to move: typos are refused before the run, whichever way the VM is named.
        case(
            "plain name typo",
            &["migrate", "web-9", "--to", "b"],
            &["web-9"],
        ),
        case(
            "HOST:NAME typo",
            &["migrate", "a:web-9", "--to", "b"],
            &["web-9", "`a`"],
        ),
        case(
            "HOST:PATTERN matching nothing",
            &["migrate", "a:zz-*", "--to", "b"],
            &["zz-*"],
        ),
        case(
            "--from HOST NAME typo",
            &["migrate", "web-9", "--from", "a", "--to", "b"],
            &["web-9"],
        ),
        case(
            "unknown HOST in HOST:NAME",
            &["migrate", "zz:web-1", "--to", "b"],
            &["`zz`", "not a configured host"],
        ),
        case(
            "unknown --from host",
            &["migrate", "web-1", "--from", "zz", "--to", "b"],
            &["zz"],
        ),
        case(
            "empty --from host",
            &["migrate", "web-1", "--from", "", "--to", "b"],
            &["--from", "empty host name"],
        ),
        case(
            "empty pattern after HOST:",
            &["migrate", "a:", "--to", "b"],
            &["empty"],
        ),
        case("bad glob", &["migrate", "a:web-[", "--to", "b"], &["web-["]),
        case(
            "unknown destination",
            &["migrate", "a:web-1", "--to", "zz"],
            &["zz"],
        ),
        case(
            "empty destination",
            &["migrate", "a:web-1", "--to", ""],
            &["--to", "empty host name"],
        ),
        case(
            "empty destination in a list",
            &["migrate", "a:web-1", "--to", "b,,c"],
            &["--to", "empty host name"],
        ),
        case(
            "empty evacuated host",
            &["evacuate", "", "--to", "b"],
            &["empty host name"],
        ),
        case(
            "unknown evacuated host",
            &["evacuate", "zz", "--to", "b"],
            &["zz"],
        ),
        case(
            "evacuate onto itself",
            &["evacuate", "a", "--to", "a"],
            &["`a`", "both a source and a destination"],
        ),
        // Pins and priorities: unknown VMs and hosts, hosts outside --to, bad forms.
        mvc(
            "pin of an unknown VM",
            &["--pin", "nosuch=b"],
            &["--pin", "nosuch"],
        ),
        mvc(
            "priority of an unknown VM",
            &["--priority", "nosuch=5"],
            &["--priority", "nosuch"],
        ),
        mvc("pin to an unknown host", &["--pin", "web-1=zz"], &["zz"]),
        mvc(
            "pin outside --to",
            &["--pin", "web-1=c"],
            &["web-1", "`c`", "allowed destinations"],
        ),
        mvc(
            "pin without a host",
            &["--pin", "web-1"],
            &["--pin", "NAME=VALUE"],
        ),
        mvc("pin with an empty host", &["--pin", "web-1="], &["--pin"]),
        mvc(
            "priority not a number",
            &["--priority", "web-1=high"],
            &["--priority", "whole number"],
        ),
        mvc(
            "priority beyond i32",
            &["--priority", "web-1=99999999999"],
            &["--priority"],
        ),
        // The config file.
        cfg(
            "empty host name in the config",
            "empty-host.toml",
            &["hosts.", "not a usable host name"],
        ),
        cfg(
            "host name with a comma",
            "comma-host.toml",
            &["d,e", "not a usable host name"],
        ),
        cfg(
            "host name with a colon",
            "colon-host.toml",
            &["d:e", "not a usable host name"],
        ),
        cfg(
            "host name with a blank",
            "space-host.toml",
            &["d e", "not a usable host name"],
        ),
        cfg("unknown top-level table", "unknown-top.toml", &["hostz"]),
        cfg(
            "unknown [defaults] key",
            "unknown-default.toml",
            &["max_atempts"],
        ),
        cfg("wrong type", "wrong-type.toml", &["max_attempts"]),
        cfg(
            "0s interval in the config",
            "zero-interval.toml",
            &["poll_interval", "zero-interval.toml"],
        ),
        cfg(
            "1e20 s in the config",
            "huge-interval.toml",
            &["stall_timeout"],
        ),
        cfg("a host defined twice", "dup-host.toml", &["dup-host.toml"]),
        cfg(
            "a driver that is a number",
            "driver-int.toml",
            &["hosts.d.driver"],
        ),
        cfg("a driver nobody knows", "driver-xen.toml", &["xen"]),
        cfg(
            "max_migrations 0",
            "cap-zero.toml",
            &["hosts.d.max_migrations"],
        ),
        cfg(
            "max_migrations -1",
            "cap-negative.toml",
            &["hosts.d.max_migrations"],
        ),
        cfg("a pin that is a number", "pin-int.toml", &["pins.web-1"]),
        cfg(
            "a priority that is text",
            "priority-text.toml",
            &["priorities.web-1"],
        ),
        cfg("not TOML", "not-toml.toml", &["not-toml.toml", "line"]),
        cfg(
            "a config file that is a folder",
            "state",
            &["cannot read the config file"],
        ),
        cfg(
            "a config file that is missing",
            "nosuch.toml",
            &["nosuch.toml"],
        ),
        // Absurd sim figures.
        cfg("sim speed 1e300", "speed-huge.toml", &["hosts.a.speed"]),
        cfg("sim speed nan", "speed-nan.toml", &["hosts.a.speed"]),
        cfg("sim speed 0", "speed-zero.toml", &["hosts.a.speed"]),
        cfg(
            "sim host memory -1",
            "host-memory-negative.toml",
            &["hosts.a"],
        ),
        cfg(
            "sim host memory beyond 1 EiB",
            "host-memory-huge.toml",
            &["hosts.a.memory_gib"],
        ),
        cfg("sim NIC 0", "nic-zero.toml", &["hosts.a.nic_gbps"]),
        cfg("sim NIC inf", "nic-inf.toml", &["hosts.a.nic_gbps"]),
        cfg(
            "sim host key nobody reads",
            "sim-unknown-key.toml",
            &["cpus"],
        ),
        cfg(
            "sim VM memory -4",
            "vm-memory-negative.toml",
            &["web-1", "memory_gib"],
        ),
        cfg(
            "sim VM memory nan",
            "vm-memory-nan.toml",
            &["web-1", "memory_gib"],
        ),
        cfg(
            "sim VM disk 1e300",
            "vm-disk-huge.toml",
            &["web-1", "disk_gib"],
        ),
        cfg(
            "sim VM dirty rate beyond 1 PiB/s",
            "vm-dirty-huge.toml",
            &["web-1", "dirty_mib_s"],
        ),
        cfg(
            "sim VM without a name",
            "vm-empty-name.toml",
            &["empty name"],
        ),
        cfg("sim VM listed twice", "vm-twice.toml", &["web-1", "twice"]),
        cfg(
            "sim backup longer than a year",
            "vm-backup-huge.toml",
            &["backup_for"],
        ),
        cfg(
            "sim hosts at different speeds",
            "speeds-differ.toml",
            &["speed"],
        ),
        // A source that does not answer (nothing listens on its port): refused at once, not a
        // run that waits silently for minutes for the host to come back.
        case_env(
            "an unreachable Hyper-V source",
            &[
                "evacuate",
                "hv1",
                "--to",
                "hv2",
                "--config",
                "hyperv-down.toml",
            ],
            &[("VMOVE_HYPERV_USER", "u"), ("VMOVE_HYPERV_PASSWORD", "p")],
            &["host `hv1` could not list its VMs", "127.0.0.1"],
        ),
        // The journal: a mistyped path creates nothing.
        case(
            "status with a mistyped journal",
            &["status", "--journal", typo_journal],
            &["no journal at", "typo"],
        ),
        case(
            "history with a mistyped journal",
            &["history", "--journal", typo_journal],
            &["no journal at"],
        ),
        case(
            "report with a mistyped journal",
            &["report", "--journal", typo_journal],
            &["no journal at"],
        ),
        case(
            "abort with a mistyped journal",
            &["abort", "r1", "--journal", typo_journal],
            &["no journal at"],
        ),
        case(
            "resume with a mistyped journal",
            &["resume", "--journal", typo_journal],
            &["no journal at"],
        ),
        case_env(
            "status with a mistyped VMOVE_JOURNAL",
            &["status"],
            &[("VMOVE_JOURNAL", typo_journal)],
            &["no journal at"],
        ),
        case(
            "status with a folder as journal",
            &["status", "--journal", dir],
            &["folder"],
        ),
        case(
            "status of an unknown run",
            &["status", "no-such-run"],
            &["no-such-run"],
        ),
        case(
            "report of an unknown run",
            &["report", "no-such-run"],
            &["no-such-run"],
        ),
        case(
            "abort of an unknown run",
            &["abort", "no-such-run"],
            &["no-such-run"],
        ),
        case(
            "resume of an unknown run",
            &["resume", "no-such-run"],
            &["no-such-run"],
        ),
        // Usage.
        case("migrate without VMs", &["migrate", "--to", "b"], &["VM"]),
        case(
            "an unknown command",
            &["evacuat", "a", "--to", "b"],
            &["evacuat"],
        ),
        case(
            "an unknown flag",
            &["migrate", "a:web-1", "--to", "b", "--fast"],
            &["--fast"],
        ),
    ]
}

#[test]
fn every_bad_input_is_refused_clearly_without_a_panic_and_changes_nothing() {
    let sb = Sandbox::new("catalogue");
    sb.write("vmove.toml", SIM_CONFIG);
    // Two Hyper-V hosts on loopback ports nothing listens on (bound, then let go).
    let closed_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    sb.write(
        "hyperv-down.toml",
        &format!(
            "[hosts.hv1]\ndriver = \"hyperv\"\naddress = \"127.0.0.1\"\nport = {}\ntransport = \"http\"\n\n[hosts.hv2]\ndriver = \"hyperv\"\naddress = \"127.0.0.1\"\nport = {}\ntransport = \"http\"\n",
            closed_port(),
            closed_port()
        ),
    );
    for (name, text) in bad_configs() {
        sb.write(name, &text);
    }
    // One good run first, so that the journal and the sim state file exist: a refused command
    // must add no row to the one and no call to the other.
    sb.run(&["migrate", "a:keep-1", "--to", "b", "--plain"])
        .no_panic()
        .expect_code(0);
    assert!(sb.journal().is_file() && sb.path("state/sim.log").is_file());
    let cases = catalogue(&sb);
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let before = sb.snapshot();
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = c.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = sb.run_within(&args, &env, std::time::Duration::from_secs(15));
        let mut wrong = Vec::new();
        if r.code != Some(1) {
            wrong.push(format!("exit code {:?}, not 1", r.code));
        }
        if r.stderr.contains("panicked") {
            wrong.push("a panic".to_owned());
        }
        for n in &c.needles {
            if !r.stderr.contains(n) {
                wrong.push(format!("`{n}` not named"));
            }
        }
        let after = sb.snapshot();
        if before != after {
            let changed: Vec<_> = after
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(v))
                .map(|(k, _)| k.display().to_string())
                .chain(
                    before
                        .keys()
                        .filter(|k| !after.contains_key(*k))
                        .map(|k| format!("{} (removed)", k.display())),
                )
                .collect();
            wrong.push(format!("files changed: {changed:?}"));
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {}\n    vmove {}\n    stderr: {}",
                c.name,
                wrong.join("; "),
                c.args.join(" "),
                r.stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs were not refused cleanly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Sim hosts at speed 10 sharing a state file: a run of `a`'s three VMs lasts a few seconds.
const SLOW_SHARED: &str = r#"
[hosts.a]
driver = "sim"
speed = 10
migration_limit = 1
state_file = "state/sim.log"
vms = [
  { name = "web-1", memory_gib = 4, disk_gib = 8 },
  { name = "web-2", memory_gib = 4, disk_gib = 8 },
  { name = "web-3", memory_gib = 4, disk_gib = 8 },
]

[hosts.b]
driver = "sim"
speed = 10
memory_gib = 256
state_file = "state/sim.log"

[hosts.c]
driver = "sim"
speed = 10
memory_gib = 256
state_file = "state/sim.log"
"#;

#[test]
fn a_second_process_on_the_same_sim_state_file_is_refused_while_the_first_runs() {
    let sb = Sandbox::new("state-lock");
    sb.write("vmove.toml", SLOW_SHARED);
    // Two journals: the journal's own guard on overlapping runs is not what is tested here.
    let mut first = sb
        .cmd(&["evacuate", "a", "--to", "b", "--plain"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(sb.path("state/sim.log"))
        .unwrap_or_default()
        .contains("\"call\":\"start\"")
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let log_before = std::fs::read_to_string(sb.path("state/sim.log")).unwrap();
    let other_journal = sb.path("j2/journal.db");
    let second = sb.run_env(
        &["migrate", "web-3", "--from", "a", "--to", "c", "--plain"],
        &[("VMOVE_JOURNAL", other_journal.to_str().unwrap())],
    );
    second.no_panic().expect_code(1);
    assert!(
        second
            .stderr
            .contains("`state/sim.log` is in use by another vmove process"),
        "{}",
        second.stderr
    );
    assert!(!other_journal.exists(), "the refused run journaled nothing");
    let log_after = std::fs::read_to_string(sb.path("state/sim.log")).unwrap();
    assert!(
        log_after.starts_with(&log_before),
        "the refused run wrote nothing to the hosts' log"
    );
    let code = first.wait().unwrap().code();
    assert_eq!(code, Some(0), "the first run went on to move every VM");
    // Each VM was started once, by the first run, to b.
    let log = std::fs::read_to_string(sb.path("state/sim.log")).unwrap();
    let starts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"call\":\"start\""))
        .collect();
    assert_eq!(starts.len(), 3, "{log}");
    assert!(!log.contains("\"destination\":\"c\""), "{log}");
    // Once the first is over, the hosts are free again.
    sb.run_env(
        &["plan", "evacuate", "b", "--to", "c"],
        &[("VMOVE_JOURNAL", other_journal.to_str().unwrap())],
    )
    .no_panic()
    .expect_code(0);
}

#[test]
fn control_characters_in_vm_names_are_escaped_on_the_terminal_and_in_the_markdown_report() {
    let sb = Sandbox::new("control-chars");
    sb.write(
        "vmove.toml",
        r#"
[hosts.a]
driver = "sim"
speed = 1000
vms = [{ name = "evil\u001b[2J\u0007vm|x\nnext", memory_gib = 1, disk_gib = 1 }]

[hosts.b]
driver = "sim"
speed = 1000
memory_gib = 64
"#,
    );
    let r = sb.run(&["evacuate", "a", "--to", "b", "--plain", "--report", "r.md"]);
    r.no_panic().expect_code(0);
    for (what, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "raw control characters on {what}: {text:?}"
        );
    }
    assert!(r.stdout.contains("evil\\u{1b}[2J\\u{7}vm"), "{}", r.stdout);
    let md = std::fs::read_to_string(sb.path("r.md")).unwrap();
    assert!(!md.contains('\u{1b}') && !md.contains('\u{7}'), "{md:?}");
    // One table row for the VM: its newline and `|` do not break the table.
    let row = md
        .lines()
        .find(|l| l.contains("evil"))
        .expect("a row for the VM");
    assert!(row.contains("evil\\u{1b}[2J\\u{7}vm\\|x\\nnext |"), "{row}");
    let s = sb.run(&["status"]);
    s.no_panic().expect_code(0);
    assert!(!s.stdout.contains('\u{1b}'), "{:?}", s.stdout);
}

#[test]
fn a_host_reporting_zero_slots_makes_its_vms_unmigratable_instead_of_waiting_forever() {
    for (name, zero_on) in [("source", "a"), ("destination", "b")] {
        let sb = Sandbox::new(&format!("zero-slots-{name}"));
        let limit = |h: &str| {
            if h == zero_on {
                "migration_limit = 0\n"
            } else {
                ""
            }
        };
        sb.write(
            "vmove.toml",
            &format!(
                "[hosts.a]\ndriver = \"sim\"\nspeed = 1000\n{}vms = [{{ name = \"web-1\" }}]\n\n[hosts.b]\ndriver = \"sim\"\nspeed = 1000\nmemory_gib = 64\n{}",
                limit("a"),
                limit("b")
            ),
        );
        let r = sb.run_within(
            &["evacuate", "a", "--to", "b", "--plain"],
            &[],
            std::time::Duration::from_secs(20),
        );
        r.no_panic().expect_code(2);
        assert!(
            r.stdout
                .contains(&format!("host {zero_on} allows no migrations")),
            "{name}: {}",
            r.stdout
        );
    }
}

/// A new user's first `vmove history` (no `--journal`, no `VMOVE_JOURNAL`, nothing run yet):
/// "no runs yet", exit 0, and no folder or database created under the home folder. A journal
/// path given explicitly that does not exist stays an error (the catalogue above).
#[test]
fn history_before_the_first_run_says_no_runs_yet_and_creates_nothing() {
    let sb = Sandbox::new("history-first");
    let before = sb.snapshot();
    let out = sb
        .cmd(&["history"])
        .env_remove("VMOVE_JOURNAL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("no runs yet"), "stdout: {stdout}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert_eq!(sb.snapshot(), before, "history created something");
    assert!(!sb.path("home/.local/share/vmove").exists());
}
