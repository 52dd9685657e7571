//! `vmove-bench`: our scheduler against the seed's, on the same simulated workloads.
//!
//! Run: `cargo run --release -p vmove-sim --bin vmove-bench` (add `--quick` to leave out the
//! spread and scale tables, `--spread` for the spread table only, `--scale` for the scale table
//! only). Prints, for each workload at slots 2, 4 and
//! 8, the makespan over a lower bound for `SchedulerPolicy::Vmove` and `SchedulerPolicy::Seed`;
//! then vmove against its peers' policies (`peers_table`, `scenarios::peers`); then the scale
//! table: evacuations of 1,000, 10,000, 20,000 and 100,000 VMs (each in a process of its own)
//! with their steps, wall and CPU time, peak memory (VmHWM) and wall time per step, per command
//! and per VM. One size alone: `--scale-run VMS HOSTS`.

use std::process::ExitCode;

/// `println!` that ends the program quietly when its reader has gone (`vmove-bench | head`):
/// the bench's only product is what it prints, so nothing is left to do (before, it panicked
/// with "failed printing to stdout: Broken pipe"). Any other write error is said on stderr and
/// ends it with status 1.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("vmove-bench: cannot write its output: {e}");
            std::process::exit(1);
        }
    }};
}
use std::time::Instant;
use vmove_core::Time;
use vmove_core::spec::SchedulerPolicy;
use vmove_sim::scenarios::{self, Scenario};
use vmove_sim::{SimOptions, simulate};

/// mimalloc, not the system's allocator: a simulated run allocates and frees small records at
/// every step (commands, answers, events, listings), and at 100,000 VMs its 400 MiB are walked
/// at random. mimalloc keeps same-sized blocks together and backs its arenas with huge pages
/// where the kernel allows (transparent huge pages in `madvise` mode, Debian's default), so
/// fewer TLB and cache misses: the 100,000-VM row of the scale table went from 14.1 s to
/// 10.9 s on the same machine, side by side (docs/BENCHMARKS.md, Scale). The system's
/// allocator with glibc's huge pages on (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`) took 12.4 s.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// Most VMs `--scale-run` takes: about 4 KB of memory each, so 10,000,000 take some 40 GB
/// (the 100,000-VM row peaks under 400 MiB). Beyond it the run would fail for want of memory
/// after minutes, instead of at once with a clear message.
const MAX_SCALE_VMS: usize = 10_000_000;

/// What `vmove-bench` is asked to print: one of the modes, or everything.
#[derive(clap::Parser, Debug)]
#[command(
    name = "vmove-bench",
    about = "vmove's scheduler against the seed's and its peers' policies, on simulated clusters",
    long_about = "vmove's scheduler against the seed's and its peers' policies, on simulated \
                  clusters. With no option it prints every table: vmove and the seed against a \
                  lower bound, vmove against its peers, packed against largest first over many \
                  seeds, and the scale table. docs/BENCHMARKS.md keeps the results.",
    group = clap::ArgGroup::new("mode").multiple(false)
)]
struct Args {
    /// Only the tables of vmove against the seed, its peers and the lower bound (no spread
    /// nor scale table).
    #[arg(long, group = "mode")]
    quick: bool,
    /// Only the table of packed against largest first over many seeds.
    #[arg(long, group = "mode")]
    spread: bool,
    /// Only the scale table (evacuations of 1,000 to 100,000 VMs, each in a process of its own).
    #[arg(long, group = "mode")]
    scale: bool,
    /// One evacuation of the scale table: VMS VMs on HOSTS hosts (half of them sources), printed
    /// as one `scale-row` line.
    #[arg(long, group = "mode", num_args = 2, value_names = ["VMS", "HOSTS"])]
    scale_run: Option<Vec<String>>,
    /// What `--scale-run VMS HOSTS` does before its run, alone: builds the cluster and its
    /// lower bound, and prints them as one `scale-build` line. Counting the instructions of
    /// both (`scripts/bench-instructions.sh`) tells the run's own apart from the building's.
    #[arg(long, group = "mode", num_args = 2, value_names = ["VMS", "HOSTS"])]
    scale_build: Option<Vec<String>>,
}

/// `--scale-run`'s (or `--scale-build`'s, `flag`) two numbers, checked: the VMs (1 to [`MAX_SCALE_VMS`]) and the hosts (at
/// least 2, a source and a destination; at most twice the VMs, so that every source has one).
fn scale_size(flag: &str, values: &[String]) -> Result<(usize, usize), String> {
    let [vms, hosts] = values else {
        return Err(format!("{flag} wants two numbers: VMS and HOSTS"));
    };
    let number = |what: &str, text: &str| {
        text.parse::<usize>()
            .map_err(|e| format!("{flag}: {what} {text:?} is not a whole number ({e})"))
    };
    let (vms, hosts) = (number("VMS", vms)?, number("HOSTS", hosts)?);
    if !(1..=MAX_SCALE_VMS).contains(&vms) {
        return Err(format!(
            "{flag}: VMS must be 1 to {MAX_SCALE_VMS}, not {vms}"
        ));
    }
    if hosts < 2 {
        return Err(format!(
            "{flag}: HOSTS must be at least 2 (half are sources, half destinations), not {hosts}"
        ));
    }
    if hosts > vms.saturating_mul(2) {
        return Err(format!(
            "{flag}: HOSTS must be at most twice the VMs ({}), not {hosts}: half the hosts are \
             sources, and a source without VMs measures nothing",
            vms.saturating_mul(2)
        ));
    }
    Ok((vms, hosts))
}

fn main() -> ExitCode {
    let args = match <Args as clap::Parser>::try_parse() {
        Ok(args) => args,
        Err(e) => {
            // Help and version to stdout with status 0; a bad argument to stderr with status 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let one_size = [
        ("--scale-build", &args.scale_build),
        ("--scale-run", &args.scale_run),
    ]
    .into_iter()
    .find_map(|(flag, values)| Some((flag, values.as_ref()?)));
    if let Some((flag, values)) = one_size {
        let (vms, hosts) = match scale_size(flag, values) {
            Ok(size) => size,
            Err(e) => {
                eprintln!("vmove-bench: {e}");
                return ExitCode::from(2);
            }
        };
        if flag == "--scale-build" {
            let (sc, lb) = scale_scenario(vms, hosts);
            out!(
                "scale-build {vms} {hosts} {} {:.3}",
                sc.cluster.vm_specs().count(),
                secs(lb)
            );
            return ExitCode::SUCCESS;
        }
        return match scale_run(vms, hosts) {
            Ok(r) => {
                out!("{}", r.to_line());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vmove-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.scale {
        return scale_table();
    }
    if args.spread {
        spread_table();
        return ExitCode::SUCCESS;
    }
    let quick = args.quick;
    out!("makespan / lower bound (simulated; lower is better, 1.00 is optimal)\n");
    out!(
        "| workload | slots | lower bound (s) | vmove (s) | vmove / LB | seed (s) | seed / LB | seed / vmove |"
    );
    out!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
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
            out!(
                "| {} | {slots} | {:.0} | {} | {ours:.4} | {} | {:.3} | {vs} |",
                w.name,
                secs(lb),
                fmt(row[0]),
                fmt(row[1]),
                ratio(row[1]),
            );
        }
    }
    out!("\nworst vmove / lower bound: {worst:.4} (target <= 1.01)");
    let wide_rows = peers_table();
    order_headroom_table(&wide_rows);
    if quick {
        return ExitCode::SUCCESS;
    }
    spread_table();
    scale_table()
}

/// Seeds per family of [`spread_table`].
const SPREAD_SEEDS: u64 = 60;

/// `order = "packed"` (vmove's default) against `order = "largest_first"` over many seeds of
/// each family of workloads, not only the tables' one seed each: per family, the geometric mean,
/// the best, median and worst seed of packed's makespan over largest first's, and the worst
/// seed of each over its lower bound. The tables above pin one cluster per workload; this shows
/// whether what they show holds on others like them.
fn spread_table() {
    use vmove_core::spec::Order;
    use vmove_sim::scenarios::peers::{PeerWorkload, peer_workload};
    use vmove_sim::scenarios::{self, Scenario, lower_bound};
    out!(
        "\npacked against largest first over {SPREAD_SEEDS} seeds per family (simulated; makespan of \
         packed / largest first, below 1 is packed sooner)\n"
    );
    out!(
        "| family | slots | geometric mean | best seed | median | worst seed | worst packed / LB | worst largest first / LB |"
    );
    out!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let ratio_of = |sc: Scenario| -> Option<f64> {
        let lb = lower_bound(&sc.cluster, &sc.spec);
        let opts = SimOptions {
            record_events: false,
            ..SimOptions::default()
        };
        let out = simulate(sc.spec, sc.cluster, opts).ok()?;
        Some(secs(out.makespan) / secs(lb).max(0.001))
    };
    let row = |family: &str, slots: u32, make: &dyn Fn(u64, Order) -> Scenario| {
        let mut r = Vec::new();
        let (mut worst_p, mut worst_l) = (0.0f64, 0.0f64);
        for seed in 0..SPREAD_SEEDS {
            let (Some(p), Some(l)) = (
                ratio_of(make(seed, Order::Packed)),
                ratio_of(make(seed, Order::LargestFirst)),
            ) else {
                eprintln!("{family} slots {slots} seed {seed}: a run did not finish");
                continue;
            };
            worst_p = worst_p.max(p);
            worst_l = worst_l.max(l);
            r.push(p / l);
        }
        if r.is_empty() {
            return;
        }
        r.sort_by(f64::total_cmp);
        let n = r.len();
        let geo = (r.iter().map(|x| x.ln()).sum::<f64>() / n as f64).exp();
        out!(
            "| {family} | {slots} | {geo:.4} | {:.4} | {:.4} | {:.4} | {worst_p:.4} | {worst_l:.4} |",
            r[0],
            r[n / 2],
            r[n - 1]
        );
    };
    for (s, d, n, heavy) in [
        (1usize, 1usize, 40usize, true),
        (4, 2, 30, true),
        (2, 2, 30, false),
    ] {
        let family = format!(
            "{s} -> {d}, {n} VMs each{}",
            if heavy { ", heavy tail" } else { "" }
        );
        for slots in [2u32, 4, 8] {
            row(&family, slots, &|seed, order| {
                let mut sc = scenarios::workload(seed, s, d, n, heavy);
                sc.spec.settings.max_parallel = Some(slots);
                sc.spec.settings.order = order;
                sc
            });
        }
    }
    for (hot, faults) in [(0.0, false), (0.0, true), (0.3, false), (0.3, true)] {
        let family = format!(
            "2 -> 2, 30 VMs each, {}{}",
            if hot > 0.0 { "30 % hot" } else { "quiet" },
            if faults { ", failures and backups" } else { "" }
        );
        row(&family, WIDE, &|seed, order| {
            let w = PeerWorkload {
                name: "spread",
                seed: 1000 + seed,
                sources: 2,
                destinations: 2,
                vms_per_source: 30,
                heavy_tail: false,
                hot,
                faults,
            };
            let mut sc = peer_workload(&w);
            sc.spec.settings.default_host_limit = WIDE;
            sc.spec.settings.order = order;
            sc
        });
    }
}

/// The evacuations of the scale table: (VMs, hosts). Twenty VMs per host: half the hosts are
/// sources with 40 VMs each, evacuated to the other half (`scenarios::large`). The 100,000-VM
/// row takes about 11 s and under 500 MiB (see docs/BENCHMARKS.md, Scale);
/// `--scale-run VMS HOSTS` runs one size alone.
const SCALE_SIZES: &[(usize, usize)] = &[
    (1_000, 50),
    (10_000, 500),
    (20_000, 1_000),
    (100_000, 5_000),
];

/// One evacuation of the scale table, as measured in a process of its own.
struct ScaleRow {
    vms: usize,
    hosts: usize,
    moved: u32,
    makespan_s: f64,
    bound_s: f64,
    steps: u64,
    commands: u64,
    events: u64,
    wall_s: f64,
    cpu_s: f64,
    /// VmHWM once the cluster and spec are built, and at the end, KiB.
    hwm_built_kib: u64,
    hwm_kib: u64,
}

impl ScaleRow {
    /// The line the child prints and the parent parses: `scale-row` and the fields in order.
    fn to_line(&self) -> String {
        format!(
            "scale-row {} {} {} {:.3} {:.3} {} {} {} {:.6} {:.3} {} {}",
            self.vms,
            self.hosts,
            self.moved,
            self.makespan_s,
            self.bound_s,
            self.steps,
            self.commands,
            self.events,
            self.wall_s,
            self.cpu_s,
            self.hwm_built_kib,
            self.hwm_kib
        )
    }

    fn parse(line: &str) -> Option<ScaleRow> {
        let f: Vec<&str> = line.strip_prefix("scale-row ")?.split(' ').collect();
        if f.len() != 12 {
            return None;
        }
        Some(ScaleRow {
            vms: f[0].parse().ok()?,
            hosts: f[1].parse().ok()?,
            moved: f[2].parse().ok()?,
            makespan_s: f[3].parse().ok()?,
            bound_s: f[4].parse().ok()?,
            steps: f[5].parse().ok()?,
            commands: f[6].parse().ok()?,
            events: f[7].parse().ok()?,
            wall_s: f[8].parse().ok()?,
            cpu_s: f[9].parse().ok()?,
            hwm_built_kib: f[10].parse().ok()?,
            hwm_kib: f[11].parse().ok()?,
        })
    }
}

/// What `--scale-run` builds before its run, and `--scale-build` alone: the evacuation of `vms`
/// VMs on `hosts` hosts and its lower bound. One place, so that the instructions
/// `scripts/bench-instructions.sh` subtracts are those of the run's own building.
fn scale_scenario(vms: usize, hosts: usize) -> (scenarios::Scenario, Time) {
    let sc = scenarios::large(vms, hosts);
    let lb = scenarios::lower_bound(&sc.cluster, &sc.spec);
    (sc, lb)
}

/// Runs one evacuation of `vms` VMs on `hosts` hosts in this process (`--scale-run VMS HOSTS`,
/// which the table's parent starts once per size, so that each size's peak memory is its own).
fn scale_run(vms: usize, hosts: usize) -> Result<ScaleRow, String> {
    let (sc, lb) = scale_scenario(vms, hosts);
    let hwm_built_kib = vm_hwm_kib().ok_or("no VmHWM in /proc/self/status")?;
    let cpu0 = cpu_secs().ok_or("no CPU time in /proc/self/stat")?;
    let wall = Instant::now();
    let out = simulate(
        sc.spec,
        sc.cluster,
        SimOptions {
            record_events: false,
            // The guard of steps at one instant (20 per VM and host) stops a 20,000-VM run at
            // its first instant, where its pre-flight checks are asked and answered: lifted
            // here, to measure it; the total guard stays.
            max_steps_per_instant: Some(u64::MAX),
            ..SimOptions::default()
        },
    )
    .map_err(|e| format!("the {vms}-VM run failed: {e}"))?;
    let wall_s = wall.elapsed().as_secs_f64();
    let cpu_s = cpu_secs().ok_or("no CPU time in /proc/self/stat")? - cpu0;
    let hwm_kib = vm_hwm_kib().ok_or("no VmHWM in /proc/self/status")?;
    let (moved, _, _) = out.snapshot.counts();
    Ok(ScaleRow {
        vms,
        hosts,
        moved,
        makespan_s: secs(out.makespan),
        bound_s: secs(lb),
        steps: out.steps,
        commands: out.commands,
        events: out.event_count,
        wall_s,
        cpu_s,
        hwm_built_kib,
        hwm_kib,
    })
}

/// The scale table: each size of [`SCALE_SIZES`] run by a child process of this binary (fork
/// and exec, so each row's VmHWM is that run's own; measured in one process the peak only
/// grows), then one row per size and the wall time per step, per command and per VM.
///
/// A step is a command or a clock jump ([`vmove_sim::SimOutcome::steps`]), and the two cost
/// very different amounts: a command is a driver call, its answer and the engine's reaction to
/// it; a clock jump moves the clock to the next wake-up and often finds little to do. Every VM
/// of these evacuations takes the same 56 commands and 59 events at each size, but the clock
/// jumps per VM fall as the cluster grows (45 at 1,000 VMs, 16 at 100,000: more wake-ups fall
/// on one instant), so the wall time per step rises with the size even where the work per
/// command does not. The work is told by the time per command and per VM.
fn scale_table() -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot find this program to run the scale table: {e}");
            return ExitCode::FAILURE;
        }
    };
    out!(
        "\nEvacuations of `scenarios::large` (half the hosts to the other half, slots 2, no faults), one process each:\n"
    );
    out!(
        "| VMs | hosts | moved | makespan / lower bound (s) | steps | commands | events | wall (s) | CPU (s) | peak memory (MiB) | of which the cluster built (MiB) | wall per step (ns) | wall per command (ns) | wall per VM (us) |"
    );
    out!(
        "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let mut ok = true;
    for &(vms, hosts) in SCALE_SIZES {
        let child = std::process::Command::new(&exe)
            .args(["--scale-run", &vms.to_string(), &hosts.to_string()])
            .output();
        let row = match child {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(ScaleRow::parse),
            Ok(o) => {
                eprintln!(
                    "the {vms}-VM run failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("cannot start the {vms}-VM run: {e}");
                None
            }
        };
        let Some(r) = row else {
            ok = false;
            continue;
        };
        let mib = |k: u64| k as f64 / 1024.0;
        out!(
            "| {} | {} | {} | {:.0} / {:.0} ({:.4}) | {} | {} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} |",
            r.vms,
            r.hosts,
            r.moved,
            r.makespan_s,
            r.bound_s,
            r.makespan_s / r.bound_s.max(0.001),
            r.steps,
            r.commands,
            r.events,
            r.wall_s,
            r.cpu_s,
            mib(r.hwm_kib),
            mib(r.hwm_built_kib),
            r.wall_s * 1e9 / r.steps.max(1) as f64,
            r.wall_s * 1e9 / r.commands.max(1) as f64,
            r.wall_s * 1e6 / r.vms.max(1) as f64,
        );
        if r.moved as usize != r.vms {
            eprintln!("the {vms}-VM run moved only {} VMs", r.moved);
            ok = false;
        }
    }
    out!(
        "\ntargets (issue 19): 100,000 VMs in < 10 s wall and < 500 MiB; the work per command flat across sizes (its instructions: scripts/bench-instructions.sh)"
    );
    out!(
        "(a step is a command or a clock jump; the jumps per VM fall as the cluster grows, so the wall per step rises where the work does not)"
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Migrations per host at which the peers' workloads fill their NICs: five of 250 MB/s fill
/// 1.25 GB/s.
const WIDE: u32 = 5;

/// vmove against its peers (`scenarios::peers`): per workload, vmove at its default limit and at
/// a limit that fills the NIC, each peer at its own defaults, each peer at vmove's limit. Returns
/// vmove's run at [`WIDE`] per host of each workload, in `PEER_WORKLOADS`' order.
fn peers_table() -> Vec<vmove_sim::scenarios::peers::PeerRow> {
    use vmove_sim::scenarios::peers::{PEER_WORKLOADS, PeerRow, VMOVE_DEFAULT_LIMIT, compare};
    out!("\nvmove against its peers (simulated; hosts on 10 GbE report no limit)\n");
    out!(
        "| workload | policy | limits | lower bound (s) | makespan (s) | / LB | / vmove | not converged | aided | unmigratable | GB sent | peak per host |"
    );
    out!("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut worst = 0.0f64;
    let mut ahead_same = Vec::new();
    let mut ahead_defaults = Vec::new();
    let mut wide_rows = Vec::new();
    for w in PEER_WORKLOADS {
        let mut rows = compare(w, WIDE);
        let ours = rows.first().and_then(|r| r.makespan).map_or(f64::NAN, secs);
        let fmt = |r: &PeerRow| {
            let m = r.makespan.map_or(f64::NAN, secs);
            let lb = secs(r.lower_bound).max(0.001);
            out!(
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
        // `compare`'s second row is vmove at `WIDE` per host.
        wide_rows.push(rows.swap_remove(1));
    }
    out!("\nworst vmove (limit {VMOVE_DEFAULT_LIMIT}) / lower bound: {worst:.4} (target <= 1.01)");
    out!(
        "peers ahead of vmove at the same limits (as many moved, sooner): {}",
        if ahead_same.is_empty() {
            "none".to_string()
        } else {
            ahead_same.join("; ")
        }
    );
    out!(
        "peers at their own defaults ahead of vmove's defaults: {}",
        if ahead_defaults.is_empty() {
            "none".to_string()
        } else {
            ahead_defaults.join("; ")
        }
    );
    wide_rows
}

/// How much of vmove's gap to the lower bound is its order: per peer workload, at 5 per host,
/// vmove as shipped (`order = "packed"`, planned again as the run goes), the same with hosts
/// that report no dirty rate (as vmove's libvirt and Hyper-V drivers today), vmove with
/// `order = "largest_first"` (what it did before the plan), and an oracle's order made once
/// before the run by the same planner, knowing each move's time (or only each VM's size)
/// (`scenarios::oracle`). The oracle is not a policy vmove has. `vmove_rows` are vmove's own
/// runs at `WIDE` per host, one per workload ([`peers_table`]).
fn order_headroom_table(vmove_rows: &[vmove_sim::scenarios::peers::PeerRow]) {
    use vmove_core::spec::Order;
    use vmove_sim::scenarios::oracle::{self, Knows};
    use vmove_sim::scenarios::peers::{PEER_WORKLOADS, PeerRow, measure, peer_workload};
    out!(
        "\norder headroom at {WIDE} per host (simulated): vmove's plan (order = packed, the default) \
         against largest first and against an oracle's order made once before the run (not a vmove policy)\n"
    );
    out!(
        "| workload | lower bound (s) | vmove, packed (s) | / LB | packed, rates from the 2nd listing (s) | / LB | packed, no dirty rates (s) | / LB | vmove, largest first (s) | / LB | oracle, times known (s) | / LB | oracle, sizes only (s) | / LB |"
    );
    out!(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let mut worst = 0.0f64;
    let mut worst_second = 0.0f64;
    let mut worst_largest = 0.0f64;
    for (w, ours) in PEER_WORKLOADS.iter().zip(vmove_rows) {
        // The workload at `WIDE` per host, changed by `tweak`, measured.
        let run = |tweak: &dyn Fn(&mut vmove_sim::scenarios::Scenario)| {
            let mut sc = peer_workload(w);
            sc.spec.settings.default_host_limit = WIDE;
            tweak(&mut sc);
            measure(sc, format!("{WIDE} per host"))
        };
        let largest = run(&|sc| sc.spec.settings.order = Order::LargestFirst);
        let blind = run(&|sc| sc.cluster.set_dirty_rates_reported(false));
        // As vmove's libvirt driver measures them: known from each host's second listing.
        let second = run(&|sc| sc.cluster.set_dirty_rates_reported_from(Time(1_000)));
        let rows = [
            run(&|sc| oracle::order(sc, WIDE, Knows::Times)),
            run(&|sc| oracle::order(sc, WIDE, Knows::Sizes)),
        ];
        let lb = secs(ours.lower_bound).max(0.001);
        let cell = |r: &PeerRow| match r.makespan {
            Some(m) => (format!("{:.0}", secs(m)), format!("{:.3}", secs(m) / lb)),
            None => (
                format!("failed: {}", r.error.as_deref().unwrap_or("?")),
                "-".into(),
            ),
        };
        let (a, s, n, l) = (cell(ours), cell(&second), cell(&blind), cell(&largest));
        if let Some(m) = second.makespan {
            worst_second = worst_second.max(secs(m) / lb);
        }
        let (b, c) = (cell(&rows[0]), cell(&rows[1]));
        if let Some(m) = rows[0].makespan {
            worst = worst.max(secs(m) / lb);
        }
        if let Some(m) = largest.makespan {
            worst_largest = worst_largest.max(secs(m) / lb);
        }
        out!(
            "| {} | {lb:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            w.name,
            a.0,
            a.1,
            s.0,
            s.1,
            n.0,
            n.1,
            l.0,
            l.1,
            b.0,
            b.1,
            c.0,
            c.1
        );
    }
    out!("\nworst vmove, rates from the 2nd listing / lower bound: {worst_second:.4}");
    out!("worst vmove, largest first / lower bound: {worst_largest:.4}");
    out!("worst oracle (times known) / lower bound: {worst:.4}");
}
