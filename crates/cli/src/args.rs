//! Raw command-line arguments (clap derive). Nothing here decides anything: [`crate::settings`]
//! merges these with the config file and the environment.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Moves many virtual machines between hypervisor hosts that share no storage, reliably.
#[derive(Parser, Debug)]
#[command(
    name = "vmove",
    version = env!("VMOVE_VERSION_TEXT"),
    about,
    long_about = None,
    propagate_version = true
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub common: Common,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Move the named VMs (names or glob patterns, `HOST:PATTERN` to name the source).
    #[command(after_long_help = MIGRATE_EXAMPLES)]
    Migrate(MigrateArgs),
    /// Move every VM off one or more hosts.
    #[command(after_long_help = EVACUATE_EXAMPLES)]
    Evacuate(EvacuateArgs),
    /// Dry run: print the order, destinations and an ETA from a simulation of the plan.
    #[command(after_long_help = PLAN_EXAMPLES)]
    Plan {
        /// What to plan.
        #[command(subcommand)]
        what: PlanWhat,
    },
    /// Pre-flight, reading only: can each selected VM move to each allowed destination? Host
    /// findings, then per VM and destination its blockers and warnings. Exit 0: all can move,
    /// 2: some cannot, 1: an error.
    Check {
        /// What to check (the same arguments as `migrate` / `evacuate`).
        #[command(subcommand)]
        what: PlanWhat,
    },
    /// Evacuate a built-in simulated cluster in (sped-up) real time.
    Demo(DemoArgs),
    /// Print the effective settings (after config file, environment and flags) and where they
    /// came from.
    Config,
    /// Go on with an interrupted run (default: the newest unfinished one) from its journal.
    Resume {
        /// The run id (see `vmove history`).
        run: Option<String>,
        /// Stand by: watch the journal (every 2 s) for a running run whose lease expired or
        /// whose holder is provably dead, take it over and resume it, then watch again.
        /// Ctrl-C or SIGTERM stops it (while it drives a run: as they stop `resume`).
        #[arg(long, conflicts_with = "run")]
        standby: bool,
        /// With --standby: take over one run, drive it to its end and exit with its code.
        #[arg(long, requires = "standby")]
        once: bool,
    },
    /// Show a run's state per VM from the journal (works while the run goes, from anywhere).
    #[command(after_long_help = STATUS_EXAMPLES)]
    Status {
        /// The run id (default: the newest run).
        run: Option<String>,
        /// Redraw every 2 s until the run is over.
        #[arg(long)]
        watch: bool,
    },
    /// Ask a running run to stop starting moves (with --now, to abort running migrations); with
    /// VM, to abort that one VM's move (its migration, if running, is aborted; it stays on its
    /// source and is not retried).
    Abort {
        /// The run id.
        run: String,
        /// One VM of the run (its name or id): abort its move only.
        vm: Option<String>,
        /// Abort running migrations too (every VM stays on exactly one host).
        #[arg(long, conflicts_with = "vm")]
        now: bool,
    },
    /// Ask a running run not to move one VM that has not started yet (refused if it has:
    /// `vmove abort RUN VM` aborts it).
    Skip {
        /// The run id.
        run: String,
        /// The VM (its name or id).
        vm: String,
    },
    /// List past and current runs.
    History,
    /// Serve the journal's runs over HTTP: a page of the runs, a live page per run, and
    /// Prometheus metrics at /metrics. Loopback only and read-only unless told otherwise.
    #[command(after_long_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Print (and with --report FILE, write) a run's report, rebuilt from the journal.
    #[command(after_long_help = REPORT_EXAMPLES)]
    Report {
        /// The run id (default: the newest run).
        run: Option<String>,
    },
    /// Print the shell completion script for SHELL on stdout (e.g. `vmove completions bash >
    /// /etc/bash_completion.d/vmove`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout (e.g. `vmove man > /usr/local/share/man/man1/vmove.1`).
    Man,
}

/// `vmove migrate --help`'s examples.
const MIGRATE_EXAMPLES: &str = "Examples:
  vmove migrate web-01 web-02 --to hv-02
      Move two VMs, found on any configured host that is not a destination, to hv-02.
  vmove migrate 'hv-01:db-*' --to hv-02,hv-03 --exclude db-test --report move.md
      Move hv-01's db-* VMs but db-test to hv-02 or hv-03; write a Markdown report.
  vmove migrate web-01 --to hv-02 --json > events.ndjson
      Print the events as NDJSON (see docs/events.md); the summary goes to stderr.";

/// `vmove evacuate --help`'s examples.
const EVACUATE_EXAMPLES: &str = "Examples:
  vmove evacuate hv-01 --to hv-02,hv-03
      Move every VM off hv-01 onto hv-02 and hv-03.
  vmove evacuate hv-01 --to hv-02 --pin db-01=hv-02 --priority web-01=10 --dry-run
      Plan it only: the order, each VM's destination and an ETA.
  vmove evacuate hv-01 hv-04 --to hv-02 --report evacuation.json
      Empty two hosts; write the report as JSON.";

/// `vmove plan --help`'s examples.
const PLAN_EXAMPLES: &str = "Examples:
  vmove plan evacuate hv-01 --to hv-02,hv-03
      The order, routes, sizes, predicted starts and an ETA, from a simulation.
  vmove plan migrate 'web-*' --to hv-02 --json
      The plan as one JSON document on stdout: order, routes, predicted times, blocked VMs.";

/// `vmove status --help`'s examples.
const STATUS_EXAMPLES: &str = "Examples:
  vmove status
      The newest run's VMs, one line each.
  vmove status --watch
      Redraw every 2 s until the run is over (from any terminal).
  vmove status RUN --json
      The run, its VMs and notes as one JSON object.";

/// `vmove serve --help`'s examples.
const SERVE_EXAMPLES: &str = "Examples:
  vmove serve
      Serve the journal's runs on http://127.0.0.1:9470/ (this machine only).
  vmove serve --port 8080 --allow-control
      Also show stop and abort buttons; they need the token printed once on stderr.
  vmove serve --listen 0.0.0.0:9470
      Reachable from other machines (said loudly): no TLS, read-only.";

/// `vmove report --help`'s examples.
const REPORT_EXAMPLES: &str = "Examples:
  vmove report
      The newest run's summary and what needs a person.
  vmove report RUN --report run.md
      Write run RUN's report as Markdown (.html: a page with the timeline; .svg: the
      timeline; any other name: JSON).
  vmove report RUN --timeline
      The summary and a text timeline: per host slot lane, outcome letters over time.
  vmove report RUN --json
      The report as one JSON object on stdout.";

/// A setting's value with a closed set of words: help and completions list them; the value
/// is kept as written, so the settings check it with the config file's own message (and
/// accept `largest-first` for `largest_first`).
#[derive(Clone, Debug)]
pub struct Listed(pub &'static [&'static str]);

impl clap::builder::TypedValueParser for Listed {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        clap::builder::TypedValueParser::parse_ref(
            &clap::builder::StringValueParser::new(),
            cmd,
            arg,
            value,
        )
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            self.0.iter().map(|v| clap::builder::PossibleValue::new(*v)),
        ))
    }
}

/// `stall_action` and `completion_action`.
const WATCHDOG_ACTIONS: Listed = Listed(&["abort", "escalate"]);
/// `order`.
const ORDERS: Listed = Listed(&["packed", "largest_first", "smallest_first", "as_given"]);
/// `policy`.
const POLICIES: Listed = Listed(&["vmove", "seed"]);

/// What `plan` plans (and `check` checks).
#[derive(Subcommand, Debug)]
pub enum PlanWhat {
    /// A `migrate`.
    Migrate(MigrateArgs),
    /// An `evacuate`.
    Evacuate(EvacuateArgs),
}

/// Where VMs may go, and per-VM wishes.
#[derive(Args, Debug, Clone, Default)]
pub struct Placement {
    /// Allowed destinations (comma-separated or repeated); placement picks among them.
    #[arg(
        allow_negative_numbers = true,
        long,
        value_delimiter = ',',
        required = true,
        value_name = "HOST[,HOST...]"
    )]
    pub to: Vec<String>,
    /// Pin a VM to one destination (repeatable).
    #[arg(allow_negative_numbers = true, long = "pin", value_name = "VM=HOST")]
    pub pins: Vec<String>,
    /// Give a VM a priority, a whole number from -2147483648 to 2147483647; higher starts first
    /// (repeatable).
    #[arg(allow_negative_numbers = true, long = "priority", value_name = "VM=N")]
    pub priorities: Vec<String>,
    /// Never move these VMs (names or glob patterns; repeatable or comma-separated), whatever
    /// else selects them. A VM named to be moved and excluded too is refused, as a mistake.
    #[arg(
        allow_negative_numbers = true,
        long,
        value_delimiter = ',',
        value_name = "VM|PATTERN"
    )]
    pub exclude: Vec<String>,
    /// Only plan (same as `vmove plan ...`).
    #[arg(long)]
    pub dry_run: bool,
}

/// `vmove migrate`.
#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    /// VM names or glob patterns (`web-*`); `HOST:PATTERN` names the source host.
    #[arg(
        allow_negative_numbers = true,
        required = true,
        value_name = "VM|PATTERN|HOST:PATTERN"
    )]
    pub vms: Vec<String>,
    /// Source host of the VMs named without one (repeatable). Without it, every configured
    /// host that is not a destination is searched.
    #[arg(allow_negative_numbers = true, long = "from", value_name = "HOST")]
    pub from: Vec<String>,
    /// Destinations and wishes.
    #[command(flatten)]
    pub placement: Placement,
}

/// `vmove evacuate`.
#[derive(Args, Debug, Clone)]
pub struct EvacuateArgs {
    /// Hosts to empty.
    #[arg(allow_negative_numbers = true, required = true, value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Destinations and wishes.
    #[command(flatten)]
    pub placement: Placement,
}

/// `vmove serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Listen on ADDR:PORT, any address (one other machines can reach is said loudly)
    /// [default: 127.0.0.1:9470].
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "port")]
    pub listen: Option<String>,
    /// Listen on 127.0.0.1 at PORT (0: any free port) [default: 9470].
    #[arg(allow_negative_numbers = true, long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Show stop and abort buttons for running runs (`vmove abort RUN [--now]`), behind a token
    /// (printed once on stderr, or from $VMOVE_SERVE_TOKEN or --token-file).
    #[arg(long)]
    pub allow_control: bool,
    /// With --allow-control: read the token from FILE (readable by its owner only).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// `vmove demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Speed-up on top of the demo's own (the demo is tuned to last ~30 s at 1) [default: 1,
    /// or $VMOVE_DEMO_SPEED].
    #[arg(allow_negative_numbers = true, long, value_name = "FACTOR")]
    pub speed: Option<f64>,
    /// Also serve the demo's live page, as `vmove serve` does, on 127.0.0.1:PORT (0: any free
    /// port) [default when given alone: 9470]. The demo is then journaled in a temporary folder
    /// (removed at the end); the page stays up after the demo until Ctrl-C.
    #[arg(
        allow_negative_numbers = true,
        long,
        value_name = "PORT",
        num_args = 0..=1,
        default_missing_value = "9470"
    )]
    pub serve: Option<u16>,
}

/// Options every command takes; the settings knobs override the config file and environment.
#[derive(Args, Debug, Clone, Default)]
pub struct Common {
    /// Config file (else $VMOVE_CONFIG, ./vmove.toml, then <user config dir>/vmove/vmove.toml).
    #[arg(
        allow_negative_numbers = true,
        long,
        global = true,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Print events as NDJSON on stdout (and nothing else there).
    #[arg(long, global = true)]
    pub json: bool,
    /// Write a report when done: JSON, Markdown when FILE ends in .md, a self-contained HTML
    /// page with the run's timeline for .html, the timeline alone for .svg.
    #[arg(
        allow_negative_numbers = true,
        long,
        global = true,
        value_name = "FILE"
    )]
    pub report: Option<PathBuf>,
    /// Plain lines even on a terminal (no progress bars).
    #[arg(long, global = true)]
    pub plain: bool,
    /// `report`, `plan`, `migrate`, `evacuate`, `resume`, `demo`: also print the run's text
    /// timeline (per host slot lane a row of outcome letters over time; see docs/timeline.md).
    #[arg(long, global = true)]
    pub timeline: bool,
    /// More log on stderr: -v info, -vv debug, -vvv trace (else warnings, or VMOVE_LOG).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log on stderr: errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also write the log to FILE (appended, created readable by its owner only).
    #[arg(
        allow_negative_numbers = true,
        long,
        global = true,
        value_name = "FILE"
    )]
    pub log_file: Option<PathBuf>,
    /// `plan`: the transfer rate of one migration, MB/s [default: fitted from the journal's
    /// past migrations on the same route, else 125].
    #[arg(allow_hyphen_values = true, long, global = true, value_name = "MB/S")]
    pub plan_bandwidth: Option<u64>,
    /// `plan`: the fixed time each migration takes besides moving bytes, seconds (at most 365
    /// days, in whole milliseconds) [default: fitted from the journal, else 0].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "SECONDS"
    )]
    pub plan_overhead: Option<f64>,
    /// `plan`: what a host moves in all when several migrations run at once, MB/s [default:
    /// fitted from the journal, else: migrations do not slow each other].
    #[arg(allow_hyphen_values = true, long, global = true, value_name = "MB/S")]
    pub plan_aggregate: Option<u64>,
    /// `plan`: how many of the journal's newest runs to fit the figures from (0: none, use the
    /// flags and defaults).
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "RUNS",
        default_value_t = 20
    )]
    pub plan_history: usize,
    /// Do not journal this run (it cannot be resumed, watched or aborted from elsewhere).
    /// Refused by the commands that work on the journal (history, status, report, resume,
    /// abort, skip, serve).
    #[arg(long, global = true)]
    pub no_journal: bool,
    /// migrate, evacuate, resume, demo: start no new moves after this (running ones finish): a
    /// duration from now (`45m`), a UTC time of day (`02:00`, its next occurrence) or an RFC
    /// 3339 time (`2026-12-04T02:00:00+01:00`).
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "TIME|DURATION"
    )]
    pub deadline: Option<String>,
    /// The `--deadline` as read when vmove started (set by `main`, not a flag).
    #[arg(skip)]
    pub deadline_at: Option<std::time::SystemTime>,
    /// The run is `vmove demo`'s (set by the demo, not a flag): a VM it did not move can only
    /// be moved by another demo.
    #[arg(skip)]
    pub demo: bool,
    /// The settings knobs.
    #[command(flatten)]
    pub knobs: Knobs,
}

/// Every `[defaults]` key settable from the command line. Values are checked where the config
/// file's are, so a bad one is reported naming its flag.
#[derive(Args, Debug, Clone, Default)]
pub struct Knobs {
    /// Tries per VM before it is unmigratable [max_attempts].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "N",
        help_heading = "Settings"
    )]
    pub max_attempts: Option<String>,
    /// Cap on concurrent migrations per host [max_parallel].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "N",
        help_heading = "Settings"
    )]
    pub max_parallel: Option<String>,
    /// Cap on concurrent migrations across the cluster [cluster_cap].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "N",
        help_heading = "Settings"
    )]
    pub cluster_cap: Option<String>,
    /// Slot limit for hosts that report none [default_host_limit].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "N",
        help_heading = "Settings"
    )]
    pub default_host_limit: Option<String>,
    /// How often hosts are re-read [poll_interval].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "DURATION",
        help_heading = "Settings"
    )]
    pub poll_interval: Option<String>,
    /// Re-read interval while a VM waits on a host condition [recheck_interval].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "DURATION",
        help_heading = "Settings"
    )]
    pub recheck_interval: Option<String>,
    /// Wait per check for a started migration to show as running [job_start_timeout].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "DURATION",
        help_heading = "Settings"
    )]
    pub job_start_timeout: Option<String>,
    /// Checks before a migration that never showed as running is aborted [job_start_attempts].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "N",
        help_heading = "Settings"
    )]
    pub job_start_attempts: Option<String>,
    /// How long a VM may stay backing up [backup_threshold].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "DURATION",
        help_heading = "Settings"
    )]
    pub backup_threshold: Option<String>,
    /// How often a running migration's progress is read [progress_interval].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "DURATION",
        help_heading = "Settings"
    )]
    pub progress_interval: Option<String>,
    /// No progress for this long means stalled [stall_timeout].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "DURATION",
        help_heading = "Settings"
    )]
    pub stall_timeout: Option<String>,
    /// abort or escalate a stalled migration [stall_action].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "ACTION",
        value_parser = WATCHDOG_ACTIONS,
        help_heading = "Settings"
    )]
    pub stall_action: Option<String>,
    /// Longest time per GiB moved [completion_timeout_per_gib].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "DURATION",
        help_heading = "Settings"
    )]
    pub completion_timeout_per_gib: Option<String>,
    /// Shortest completion timeout [completion_timeout_min].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "DURATION",
        help_heading = "Settings"
    )]
    pub completion_timeout_min: Option<String>,
    /// abort or escalate at the completion timeout [completion_action].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "ACTION",
        value_parser = WATCHDOG_ACTIONS,
        help_heading = "Settings"
    )]
    pub completion_action: Option<String>,
    /// First retry delay [backoff_initial].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "DURATION",
        help_heading = "Settings"
    )]
    pub backoff_initial: Option<String>,
    /// Longest retry delay [backoff_max].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "DURATION",
        help_heading = "Settings"
    )]
    pub backoff_max: Option<String>,
    /// Random spread of retry delays, 0..1 [backoff_jitter].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "FRACTION",
        help_heading = "Settings"
    )]
    pub backoff_jitter: Option<String>,
    /// Start order [order].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "ORDER",
        value_parser = ORDERS,
        help_heading = "Settings"
    )]
    pub order: Option<String>,
    /// Scheduler [policy].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "POLICY",
        value_parser = POLICIES,
        help_heading = "Settings"
    )]
    pub policy: Option<String>,
    /// Seed of the retry jitter [seed].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "N",
        help_heading = "Settings"
    )]
    pub seed: Option<String>,
    /// Longest a single driver call may take [call_timeout].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "DURATION",
        help_heading = "Settings"
    )]
    pub call_timeout: Option<String>,
    /// The journal: a file, or a shared PostgreSQL database (postgresql://USER@HOST/DB; the
    /// password from PGPASSWORD, PGPASSFILE or ~/.pgpass, never in the URL) [journal; default
    /// <user data dir>/vmove/journal.db].
    #[arg(
        allow_negative_numbers = true,
        long,
        global = true,
        value_name = "FILE|URL",
        help_heading = "Settings"
    )]
    pub journal: Option<String>,
    /// How long a run's lease lasts without a refresh [journal_lease].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "DURATION",
        help_heading = "Settings"
    )]
    pub journal_lease: Option<String>,
    /// How long a run waits for a journal that cannot be written before it ends, resumable
    /// [journal_wait].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "DURATION",
        help_heading = "Settings"
    )]
    pub journal_wait: Option<String>,
    /// Destination base folder for every destination [path of each host].
    #[arg(
        allow_negative_numbers = true,
        long,
        global = true,
        value_name = "PATH",
        help_heading = "Settings"
    )]
    pub path: Option<String>,
    /// Cap on each migration's transfer rate, MiB/s (libvirt hosts; Hyper-V has none per
    /// migration: a warning says so) [bandwidth_mib_s].
    #[arg(
        allow_hyphen_values = true,
        long,
        global = true,
        value_name = "MIB/S",
        help_heading = "Settings"
    )]
    pub bandwidth: Option<String>,
    /// Stop starting moves at the first unmigratable VM [fail_fast = true].
    #[arg(long, global = true, help_heading = "Settings")]
    pub fail_fast: bool,
    /// Move powered-off VMs together with running ones [offline_last = false].
    #[arg(long, global = true, help_heading = "Settings")]
    pub offline_first: bool,
    /// Keep what a verified move leaves on the source [cleanup = false].
    #[arg(long, global = true, help_heading = "Settings")]
    pub no_cleanup: bool,
    /// Put each VM in <path>/<VM name> [put_in_subfolder = true].
    #[arg(long, global = true, help_heading = "Settings")]
    pub put_in_subfolder: bool,
    /// Each disk keeps its source drive letter [preserve_drive_letter = true].
    #[arg(long, global = true, help_heading = "Settings")]
    pub preserve_drive_letter: bool,
}

impl Knobs {
    /// The knobs given, as `(config key, flag, raw value)`.
    pub fn given(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut v = Vec::new();
        let mut s = |key: &'static str, flag: &'static str, val: &Option<String>| {
            if let Some(x) = val {
                v.push((key, flag, x.clone()));
            }
        };
        s("max_attempts", "--max-attempts", &self.max_attempts);
        s("max_parallel", "--max-parallel", &self.max_parallel);
        s("cluster_cap", "--cluster-cap", &self.cluster_cap);
        s(
            "default_host_limit",
            "--default-host-limit",
            &self.default_host_limit,
        );
        s("poll_interval", "--poll-interval", &self.poll_interval);
        s(
            "recheck_interval",
            "--recheck-interval",
            &self.recheck_interval,
        );
        s(
            "job_start_timeout",
            "--job-start-timeout",
            &self.job_start_timeout,
        );
        s(
            "job_start_attempts",
            "--job-start-attempts",
            &self.job_start_attempts,
        );
        s(
            "backup_threshold",
            "--backup-threshold",
            &self.backup_threshold,
        );
        s(
            "progress_interval",
            "--progress-interval",
            &self.progress_interval,
        );
        s("stall_timeout", "--stall-timeout", &self.stall_timeout);
        s("stall_action", "--stall-action", &self.stall_action);
        s(
            "completion_timeout_per_gib",
            "--completion-timeout-per-gib",
            &self.completion_timeout_per_gib,
        );
        s(
            "completion_timeout_min",
            "--completion-timeout-min",
            &self.completion_timeout_min,
        );
        s(
            "completion_action",
            "--completion-action",
            &self.completion_action,
        );
        s(
            "backoff_initial",
            "--backoff-initial",
            &self.backoff_initial,
        );
        s("backoff_max", "--backoff-max", &self.backoff_max);
        s("backoff_jitter", "--backoff-jitter", &self.backoff_jitter);
        s("order", "--order", &self.order);
        s("policy", "--policy", &self.policy);
        s("seed", "--seed", &self.seed);
        s("call_timeout", "--call-timeout", &self.call_timeout);
        s("journal", "--journal", &self.journal);
        s("journal_lease", "--journal-lease", &self.journal_lease);
        s("journal_wait", "--journal-wait", &self.journal_wait);
        s("bandwidth_mib_s", "--bandwidth", &self.bandwidth);
        let t = Some("true".to_string());
        let f = Some("false".to_string());
        if self.fail_fast {
            s("fail_fast", "--fail-fast", &t);
        }
        if self.offline_first {
            s("offline_last", "--offline-first", &f);
        }
        if self.no_cleanup {
            s("cleanup", "--no-cleanup", &f);
        }
        if self.put_in_subfolder {
            s("put_in_subfolder", "--put-in-subfolder", &t);
        }
        if self.preserve_drive_letter {
            s("preserve_drive_letter", "--preserve-drive-letter", &t);
        }
        v
    }
}
