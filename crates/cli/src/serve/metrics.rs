//! `/metrics`: the Prometheus text exposition format, version 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>), named by Prometheus'
//! conventions (<https://prometheus.io/docs/practices/naming/>): the `vmove_` prefix, base
//! units (bytes, seconds), `_total` for counters. Every series of a run carries its `run` label.

use super::view::{PHASES, RunView};
use std::fmt::Write;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value as the text format writes it: `\`, `"` and a line feed escaped.
pub fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One metric family: its HELP and TYPE lines, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{}}} {value}", labels.join(","));
        }
    }
}

/// The exposition of `views` (the runs shown) and of the server's own journal reads.
pub fn render(views: &[&RunView], journal_reads: u64) -> String {
    let mut out = String::new();
    {
        let name = "vmove_run_running";
        let mut f = Family::head(
            &mut out,
            name,
            "gauge",
            "1 while the run is running, else 0.",
        );
        for v in views {
            let state = v.summary.as_ref().map(|s| s.state.as_str()).unwrap_or("");
            f.sample(
                name,
                &[("run", v.run.as_str()), ("state", state)],
                u64::from(state == "running"),
            );
        }
    }
    {
        let name = "vmove_migrations_in_flight";
        let mut f = Family::head(
            &mut out,
            name,
            "gauge",
            "Migrations holding a slot on the host, by who started them (ours: this run, in or out; foreign: others).",
        );
        for v in views {
            for (host, h) in &v.hosts {
                let (o, i) = v.ours(host);
                f.sample(
                    name,
                    &[
                        ("run", v.run.as_str()),
                        ("host", host.as_str()),
                        ("started_by", "ours"),
                    ],
                    u64::from(o + i),
                );
                f.sample(
                    name,
                    &[
                        ("run", v.run.as_str()),
                        ("host", host.as_str()),
                        ("started_by", "foreign"),
                    ],
                    u64::from(h.foreign),
                );
            }
        }
    }
    {
        let name = "vmove_host_migration_slots";
        let mut f = Family::head(
            &mut out,
            name,
            "gauge",
            "The host's effective limit of concurrent migrations.",
        );
        for v in views {
            for (host, h) in &v.hosts {
                f.sample(
                    name,
                    &[("run", v.run.as_str()), ("host", host.as_str())],
                    u64::from(h.limit),
                );
            }
        }
    }
    for (name, help, pick) in [
        (
            "vmove_host_free_memory_bytes",
            "The host's free memory as last journaled.",
            (|h: &super::view::HostRow| h.free_memory_bytes)
                as fn(&super::view::HostRow) -> Option<u64>,
        ),
        (
            "vmove_host_free_disk_bytes",
            "The host's free disk as last journaled.",
            |h: &super::view::HostRow| h.free_disk_bytes,
        ),
    ] {
        let mut f = Family::head(&mut out, name, "gauge", help);
        for v in views {
            for (host, h) in &v.hosts {
                if let Some(x) = pick(h) {
                    f.sample(name, &[("run", v.run.as_str()), ("host", host.as_str())], x);
                }
            }
        }
    }
    {
        let name = "vmove_vms";
        let mut f = Family::head(&mut out, name, "gauge", "The run's VMs by state.");
        for v in views {
            let phases = v.phases();
            for p in PHASES {
                let n = phases.get(&p).copied().unwrap_or(0);
                f.sample(
                    name,
                    &[("run", v.run.as_str()), ("state", &p.to_string())],
                    u64::from(n),
                );
            }
        }
    }
    {
        let name = "vmove_migrated_bytes_total";
        let mut f = Family::head(
            &mut out,
            name,
            "counter",
            "Bytes copied by the run's migrations, every attempt.",
        );
        for v in views {
            f.sample(name, &[("run", v.run.as_str())], v.bytes_copied);
        }
    }
    {
        let name = "vmove_attempts_total";
        let mut f = Family::head(&mut out, name, "counter", "Migration attempts started.");
        for v in views {
            f.sample(name, &[("run", v.run.as_str())], v.attempts);
        }
    }
    {
        let name = "vmove_attempt_failures_total";
        let mut f = Family::head(&mut out, name, "counter", "Failed attempts by error class.");
        for v in views {
            for class in [
                "transient",
                "permanent",
                "destination_refused",
                "indeterminate",
            ] {
                let n = v.failures.get(class).copied().unwrap_or(0);
                f.sample(name, &[("run", v.run.as_str()), ("class", class)], n);
            }
        }
    }
    {
        let name = "vmove_watchdog_firings_total";
        let mut f = Family::head(
            &mut out,
            name,
            "counter",
            "Watchdogs that fired, by watchdog.",
        );
        for v in views {
            for w in ["start", "stall", "completion"] {
                let n = v.watchdogs.get(w).copied().unwrap_or(0);
                f.sample(name, &[("run", v.run.as_str()), ("watchdog", w)], n);
            }
        }
    }
    {
        let name = "vmove_run_eta_seconds";
        let mut f = Family::head(
            &mut out,
            name,
            "gauge",
            "Seconds until the run ends; basis: plan (the re-plan of what is left) or rate (bytes left over the run's rate so far; absent until a byte moved).",
        );
        for v in views {
            if let (Some(eta), basis) = v.eta() {
                f.sample(
                    name,
                    &[("run", v.run.as_str()), ("basis", basis.as_str())],
                    eta,
                );
            }
        }
    }
    {
        let name = "vmove_serve_journal_reads_total";
        let mut f = Family::head(
            &mut out,
            name,
            "counter",
            "Reads of the journal this server made to follow runs.",
        );
        f.sample(name, &[], journal_reads);
    }
    out
}
