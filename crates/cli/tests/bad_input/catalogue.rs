//! The catalogue of bad inputs tests/bad_input.rs runs: command lines, environments and config
//! files with one thing wrong each, and the words each error must hold.

use crate::support::{SIM_CONFIG, Sandbox};

/// One bad input: the command line, extra environment, and words its error must hold.
pub struct Case {
    pub name: &'static str,
    pub args: Vec<String>,
    pub env: Vec<(&'static str, String)>,
    pub needles: Vec<&'static str>,
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
pub fn bad_configs() -> Vec<(&'static str, String)> {
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
        (
            "vm-memory-text.toml",
            vm_host("{ name = \"web-1\", memory_gib = \"lots\" }"),
        ),
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
        (
            "libvirt-wrong-type.toml",
            "[hosts.a]\ndriver = \"libvirt\"\nuri = \"qemu+tcp://127.0.0.1:1/system\"\np2p = \"yes\"\n\n\
             [hosts.b]\ndriver = \"libvirt\"\nuri = \"qemu+tcp://127.0.0.1:1/system\"\n"
                .to_owned(),
        ),
        (
            "hyperv-wrong-type.toml",
            "[hosts.a]\ndriver = \"hyperv\"\naddress = \"127.0.0.1\"\nrequest_timeout_secs = \"30s\"\n\n\
             [hosts.b]\ndriver = \"hyperv\"\naddress = \"127.0.0.1\"\n"
                .to_owned(),
        ),
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

pub fn catalogue(sb: &Sandbox) -> Vec<Case> {
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
            &["--poll-interval", "at least 1ms"],
        ),
        case(
            "poll interval 0s at config",
            &["config", "--poll-interval", "0s"],
            &["--poll-interval", "at least 1ms"],
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
        cfg(
            "wrong type",
            "wrong-type.toml",
            &[
                "max_attempts",
                "must be a whole number from 0 to 4294967295, not `three`",
            ],
        ),
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
            &["the config file `state`", "not a regular file but a folder"],
        ),
        cfg(
            "a config file that is /dev/zero",
            "/dev/zero",
            &["`/dev/zero`", "not a regular file but a character device"],
        ),
        // Sub-millisecond durations, a lease too short to be refreshed, another tool's policy.
        mvc(
            "journal lease of half a millisecond",
            &["--journal-lease", "0.5ms"],
            &["--journal-lease", "`0.5ms`", "whole number of milliseconds"],
        ),
        mvc(
            "journal lease of 10ms",
            &["--journal-lease", "10ms"],
            &["--journal-lease", "must be at least 1s, not 10ms"],
        ),
        case(
            "stall timeout of a nanosecond at config",
            &["config", "--stall-timeout", "1e-9"],
            &["--stall-timeout", "whole number of milliseconds"],
        ),
        mvc(
            "policy kubevirt",
            &["--policy", "kubevirt"],
            &["--policy", "`kubevirt` is another tool's policy"],
        ),
        cfg(
            "a sim VM's memory that is text",
            "vm-memory-text.toml",
            &["`hosts.a.vms[0].memory_gib`"],
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
        // A driver's key of the wrong type: the error names the host and the key (serde's own
        // message names neither), and what the key takes in plain words.
        cfg(
            "libvirt host key of the wrong type",
            "libvirt-wrong-type.toml",
            &["host a", "`p2p`", "must be `true` or `false`"],
        ),
        cfg(
            "Hyper-V host key of the wrong type",
            "hyperv-wrong-type.toml",
            &["host a", "`request_timeout_secs`", "must be a whole number"],
        ),
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
