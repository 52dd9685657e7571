//! `vmove-bench`: our scheduler against the seed's, on the same simulated workloads.
//!
//! Run: `cargo run --release -p vmove-sim --bin vmove-bench` (add `--quick` to skip the
//! 10,000-VM run). Prints, for each workload at slots 2, 4 and 8, the makespan over a lower
//! bound for `SchedulerPolicy::Vmove` and `SchedulerPolicy::Seed`, then the wall time and peak
//! memory (VmHWM) of a 10,000-VM / 500-host evacuation. Between the two: vmove against its
//! peers' policies (`peers_table`, `scenarios::peers`).

use std::process::ExitCode;
use std::time::Instant;
use vmove_core::Time;
use vmove_core::spec::SchedulerPolicy;
use vmove_sim::scenarios::{self, Scenario};
use vmove_sim::{SimOptions, simulate};

struct Workload {
    name: &'static str,
    seed: u64,
    sources: usize,
    destinations: usize,
    vms_per_source: usize,
    heavy_tail: bool,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "1 -> 1 host, 40 VMs",
        seed: 11,
        sources: 1,
        destinations: 1,
        vms_per_source: 40,
        heavy_tail: false,
    },
    Workload {
        name: "1 -> 1 host, 40 VMs, heavy tail",
        seed: 12,
        sources: 1,
        destinations: 1,
        vms_per_source: 40,
        heavy_tail: true,
    },
    Workload {
        name: "1 -> 1 host, 150 VMs",
        seed: 13,
        sources: 1,
        destinations: 1,
        vms_per_source: 150,
        heavy_tail: false,
    },
    Workload {
        name: "4 -> 2 hosts, 160 VMs",
        seed: 14,
        sources: 4,
        destinations: 2,
        vms_per_source: 40,
        heavy_tail: true,
    },
];

fn scenario(w: &Workload, slots: u32, policy: SchedulerPolicy) -> Scenario {
    let mut sc = scenarios::workload(
        w.seed,
        w.sources,
        w.destinations,
        w.vms_per_source,
        w.heavy_tail,
    );
    sc.spec.settings.max_parallel = Some(slots);
    sc.spec.settings.policy = policy;
    sc
}

fn secs(t: Time) -> f64 {
    t.0 as f64 / 1000.0
}

/// Peak resident memory of this process, KiB (Linux `VmHWM`).
fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) this process has used, seconds (Linux `/proc/self/stat`, 100 Hz ticks).
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn main() -> ExitCode {
    let quick = std::env::args().any(|a| a == "--quick");
    println!("makespan / lower bound (simulated; lower is better, 1.00 is optimal)\n");
    println!(
        "| workload | slots | lower bound (s) | vmove (s) | vmove / LB | seed (s) | seed / LB | seed / vmove |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut worst = 0.0f64;
    for w in WORKLOADS {
        for slots in [2u32, 4, 8] {
            let mut row = Vec::new();
            let mut lb = Time::ZERO;
            for policy in [SchedulerPolicy::Vmove, SchedulerPolicy::Seed] {
                let sc = scenario(w, slots, policy);
                lb = scenarios::lower_bound(&sc.cluster, &sc.spec);
                match simulate(
                    sc.spec,
                    sc.cluster,
                    SimOptions {
                        record_events: false,
                        ..SimOptions::default()
                    },
                ) {
                    Ok(out) => {
                        let (moved, unmig, canc) = out.snapshot.counts();
                        if unmig + canc > 0 {
                            eprintln!(
                                "{} slots {slots} {policy:?}: {moved} moved, {unmig} unmigratable, {canc} cancelled",
                                w.name
                            );
                        }
                        row.push(Some(out.makespan));
                    }
                    Err(e) => {
                        eprintln!("{} slots {slots} {policy:?}: {e}", w.name);
                        row.push(None);
                    }
                }
            }
            let ratio = |m: Option<Time>| m.map_or(f64::NAN, |m| secs(m) / secs(lb).max(0.001));
            let ours = ratio(row[0]);
            worst = worst.max(ours);
            let fmt =
                |m: Option<Time>| m.map_or("failed".to_string(), |m| format!("{:.0}", secs(m)));
            let vs = match (row[0], row[1]) {
                (Some(a), Some(b)) => format!("{:.2}x", secs(b) / secs(a).max(0.001)),
                _ => "-".into(),
            };
            println!(
                "| {} | {slots} | {:.0} | {} | {ours:.4} | {} | {:.3} | {vs} |",
                w.name,
                secs(lb),
                fmt(row[0]),
                fmt(row[1]),
                ratio(row[1]),
            );
        }
    }
    println!("\nworst vmove / lower bound: {worst:.4} (target <= 1.01)");
    peers_table();
    if quick {
        return ExitCode::SUCCESS;
    }
    let sc = scenarios::large(10_000, 500);
    let before = vm_hwm_kib();
    let lb = scenarios::lower_bound(&sc.cluster, &sc.spec);
    let wall = Instant::now();
    let cpu0 = cpu_secs();
    let out = match simulate(
        sc.spec,
        sc.cluster,
        SimOptions {
            record_events: false,
            ..SimOptions::default()
        },
    ) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("the 10,000-VM run failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let wall = wall.elapsed();
    let cpu = match (cpu0, cpu_secs()) {
        (Some(a), Some(b)) => format!("{:.2} s", b - a),
        _ => "unknown".into(),
    };
    let (moved, unmig, canc) = out.snapshot.counts();
    let hwm = vm_hwm_kib().map_or("unknown".to_string(), |k| {
        format!("{:.1} MiB", k as f64 / 1024.0)
    });
    println!("\n10,000 VMs, 500 hosts (250 evacuated to 250), slots 2:");
    println!("- moved {moved}, unmigratable {unmig}, cancelled {canc}");
    println!(
        "- simulated makespan {:.0} s, lower bound {:.0} s, ratio {:.4}",
        secs(out.makespan),
        secs(lb),
        secs(out.makespan) / secs(lb).max(0.001)
    );
    println!(
        "- {} steps, {} commands, {} events",
        out.steps, out.commands, out.event_count
    );
    if let Some(b) = before {
        println!(
            "- peak memory before the run (cluster and spec built): {:.1} MiB",
            b as f64 / 1024.0
        );
    }
    println!(
        "- wall time {:.2} s, CPU time {cpu} (target < 10 s); peak memory (VmHWM) {hwm} (target < 200 MiB)",
        wall.as_secs_f64()
    );
    ExitCode::SUCCESS
}

/// vmove against its peers (`scenarios::peers`): per workload, vmove at its default limit and at
/// a limit that fills the NIC, each peer at its own defaults, each peer at vmove's limit.
fn peers_table() {
    use vmove_sim::scenarios::peers::{PEER_WORKLOADS, PeerRow, VMOVE_DEFAULT_LIMIT, compare};
    /// Migrations of 250 MB/s that fill a 1.25 GB/s NIC.
    const WIDE: u32 = 5;
    println!("\nvmove against its peers (simulated; hosts on 10 GbE report no limit)\n");
    println!(
        "| workload | policy | limits | lower bound (s) | makespan (s) | / LB | / vmove | not converged | aided | unmigratable | GB sent | peak per host |"
    );
    println!("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut worst = 0.0f64;
    let mut ahead_same = Vec::new();
    let mut ahead_defaults = Vec::new();
    for w in PEER_WORKLOADS {
        let rows = compare(w, WIDE);
        let ours = rows.first().and_then(|r| r.makespan).map_or(f64::NAN, secs);
        let fmt = |r: &PeerRow| {
            let m = r.makespan.map_or(f64::NAN, secs);
            let lb = secs(r.lower_bound).max(0.001);
            println!(
                "| {} | {} | {} | {:.0} | {} | {:.3} | {:.2}x | {} | {} | {} | {:.0} | {} |",
                w.name,
                r.policy,
                r.limits,
                secs(r.lower_bound),
                r.makespan.map_or_else(
                    || format!("failed: {}", r.error.as_deref().unwrap_or("?")),
                    |m| format!("{:.0}", secs(m))
                ),
                m / lb,
                m / ours,
                r.not_converged,
                r.escalated,
                r.unmigratable,
                r.bytes_sent as f64 / 1e9,
                r.peak_per_host,
            );
            m
        };
        for (i, r) in rows.iter().enumerate() {
            let m = fmt(r);
            if i == 0 {
                worst = worst.max(m / secs(r.lower_bound).max(0.001));
            } else if r.limits.starts_with("vmove's") && r.moved >= rows[0].moved && m < ours {
                ahead_same.push(format!("{} on {}", r.policy, w.name));
            } else if r.limits == "own defaults" && r.moved >= rows[0].moved && m < ours {
                ahead_defaults.push(format!("{} on {} ({:.2}x)", r.policy, w.name, m / ours));
            }
        }
    }
    println!(
        "\nworst vmove (limit {VMOVE_DEFAULT_LIMIT}) / lower bound: {worst:.4} (target <= 1.01)"
    );
    println!(
        "peers ahead of vmove at the same limits (as many moved, sooner): {}",
        if ahead_same.is_empty() {
            "none".to_string()
        } else {
            ahead_same.join("; ")
        }
    );
    println!(
        "peers at their own defaults ahead of vmove's defaults: {}",
        if ahead_defaults.is_empty() {
            "none".to_string()
        } else {
            ahead_defaults.join("; ")
        }
    );
}
