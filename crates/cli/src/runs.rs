//! The journal side of the CLI: where the journal is, journaling a new run, and the commands
//! that read or steer runs through it (`resume`, `status`, `abort`, `history`, `report`).

use crate::args::Common;
use crate::config;
use crate::execute::Journaling;
use crate::output::{Record, RunOutcome, VmOutcome};
use crate::settings::Effective;
use crate::stdio;
use anyhow::{Context, Result, anyhow, bail};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vmove_core::{Core, Phase, RunSpec, Time};
use vmove_journal::{
    ConfigFormat, Holder, Journal, JournalError, NewRun, Options, RunState, RunSummary, TakeOver,
    VmStatus, WallTime,
};
use vmove_runtime::RuntimeOptions;

/// The journal: `--journal` > `VMOVE_JOURNAL` > `[defaults] journal` > the user's data dir. A
/// file, or a PostgreSQL database (`postgresql://` or `postgres://`), whose location may not
/// hold a password (it is refused here, before anything connects or is written: the password
/// comes from `PGPASSWORD`, `PGPASSFILE` or `~/.pgpass`). Any other `scheme://` is refused.
pub fn journal_path(eff: &Effective) -> Result<PathBuf> {
    if let Some(p) = &eff.journal {
        if vmove_journal::location::is_postgres(p) {
            vmove_journal::location::check_postgres_location(p).map_err(|e| anyhow!(e.chain()))?;
        } else if let Some((scheme, _)) = p.split_once("://").filter(|(s, _)| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }) {
            bail!(
                "the journal `{}` is a `{scheme}://` location: a journal is a file or a PostgreSQL database (postgresql://...)",
                vmove_driver::redact_uris(p)
            );
        }
        return Ok(PathBuf::from(p));
    }
    let base = directories::BaseDirs::new()
        .ok_or_else(|| anyhow!("no home directory to keep the journal in; set `--journal FILE`"))?;
    Ok(base.data_dir().join("vmove").join("journal.db"))
}

/// Whether the journal is a PostgreSQL database rather than a file.
pub fn journal_is_database(eff: &Effective) -> bool {
    eff.journal
        .as_deref()
        .is_some_and(vmove_journal::location::is_postgres)
}

/// The journal's location for a message: its path, or its URL with the user information hidden.
pub fn journal_shown(eff: &Effective) -> Result<String> {
    Ok(vmove_journal::location::redact(
        &journal_path(eff)?.display().to_string(),
    ))
}

/// Creates the journal's folder (and its missing parents) readable by its owner only (0700);
/// the journal file itself is created 0600 by the journal. An existing folder's mode is left
/// as it is, with a warning when others may write in it (they could replace the journal).
fn private_folder(dir: &std::path::Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if let Ok(meta) = std::fs::metadata(dir) {
            // A sticky folder (/tmp) lets nobody replace another user's files.
            let mode = meta.permissions().mode();
            if meta.is_dir() && mode & 0o022 != 0 && mode & 0o1000 == 0 {
                errln!(
                    "vmove: warning: the journal's folder `{}` may be written by other users \
                     (mode {:o}); keep the journal in a folder only you can write",
                    dir.display(),
                    mode & 0o777
                );
            }
            return Ok(());
        }
        b.mode(0o700);
    }
    b.create(dir)
        .with_context(|| format!("cannot create the journal's folder `{}`", dir.display()))
}

/// The environment variable that sets the host name this process writes in the leases it
/// takes (default: the system's host name). It lets tests play two machines on one; it can
/// only make a take-over wait longer, never sooner: a holder is proven dead only when its
/// recorded host is this machine's real name and its boot is this one (docs/journal.md).
pub const LEASE_HOST_ENV: &str = "VMOVE_LEASE_HOST";

/// Who this process is in the leases it takes: this process, with its host named by
/// `VMOVE_LEASE_HOST` when set.
fn lease_holder() -> Result<Holder> {
    let mut holder = Holder::current();
    if let Some(name) = crate::settings::env(LEASE_HOST_ENV) {
        let ok = !name.is_empty()
            && name.len() <= 255
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !ok {
            bail!(
                "environment variable `{LEASE_HOST_ENV}`: `{}` is not a host name (letters, \
                 digits, `-`, `.` and `_`, at most 255)",
                name.escape_default()
            );
        }
        holder.host = name;
    }
    Ok(holder)
}

/// How every command opens the journal: the lease time and who this process is.
fn options(eff: &Effective) -> Result<Options> {
    Ok(Options {
        lease_ttl: eff.journal_lease,
        holder: lease_holder()?,
        ..Options::default()
    })
}

/// Opens the journal (creating it and its directory when missing).
pub fn open(eff: &Effective) -> Result<Journal> {
    let opts = options(eff)?;
    let path = journal_path(eff)?;
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !journal_is_database(eff))
    {
        private_folder(dir)?;
    }
    Journal::open_with(&path, opts)
        // The error names the path and SQLite's verdict; `chain` leaves out SQLite's bare code.
        .map_err(|e| anyhow!(e.chain()))
}

/// Refuses a journal file that is another application's SQLite database (or one SQLite cannot
/// read) before a run asks any host: nothing is created or written.
pub fn check_location(eff: &Effective) -> Result<()> {
    Journal::check_location(journal_path(eff)?).map_err(|e| anyhow!(e.chain()))
}

/// Opens a journal that must already exist (`status`, `history`, `report`, `abort`, `resume`,
/// `serve`): a mistyped `--journal` is an error naming the path, and creates no folder and no
/// database; an empty file reads as a journal with no runs and is left as it is
/// (`Journal::is_blank`); another application's SQLite database is refused, untouched.
pub fn open_existing(eff: &Effective) -> Result<Journal> {
    let opts = options(eff)?;
    let path = journal_path(eff)?;
    // Only a file path with nothing there is refused here. A database that is not there, or
    // not reachable, is an error from the open (naming the location; an empty one is migrated
    // and has no runs), and a folder, a device or a FIFO is named by the journal's open before
    // SQLite opens anything.
    if !journal_is_database(eff) && !path.exists() {
        bail!(
            "no journal at `{}`: no run was journaled there (check --journal, VMOVE_JOURNAL or `journal` in [defaults])",
            path.display()
        );
    }
    Journal::open_existing_with(&path, opts)
        // The error names the path and SQLite's verdict.
        .map_err(|e| anyhow!(e.chain()))
}

/// The fields of each driver's `[hosts.<name>]` table that hold a URI, whose user
/// information (a password) is hidden before the config is stored with a run. Chosen by what
/// the field IS in the driver's schema, not by how its key is spelled: libvirt's connection
/// `uri` (`qemu+tcp://user:password@host/system`), Hyper-V's `kdc` (`tcp://host:port`). The
/// drivers accept no other secret in the config (Hyper-V reads its credentials from
/// `credentials_file` or the environment; every driver refuses unknown keys), and every other
/// value goes through the same URI redaction (`vmove_driver::redact_uris`) as a net.
const URI_FIELDS: &[(config::DriverKind, &str)] = &[
    (config::DriverKind::Libvirt, "uri"),
    (config::DriverKind::HyperV, "kdc"),
];

/// What a secret-looking key's value becomes in the stored config (a second net under the
/// schema's list, for keys a driver might accept one day).
const REMOVED: &str = "<removed>";

/// The config text as stored with a run: URIs' user information hidden in the schema's URI
/// fields and anywhere else in the text, and values of keys that look like secrets
/// (`password`, `secret`, `token`) blanked.
fn strip_secrets(text: &str) -> String {
    fn walk(t: &mut toml::Table) {
        let keys: Vec<String> = t.keys().cloned().collect();
        for k in keys {
            let lk = k.to_ascii_lowercase();
            let secret = ["password", "secret", "token"]
                .iter()
                .any(|s| lk.contains(s))
                && !lk.ends_with("_file")
                && !lk.ends_with("_env");
            if secret {
                t.insert(k, toml::Value::String(REMOVED.into()));
            } else if let Some(toml::Value::Table(sub)) = t.get_mut(&k) {
                walk(sub);
            }
        }
    }
    let Ok(mut t) = toml::from_str::<toml::Table>(text) else {
        return String::new();
    };
    walk(&mut t);
    let out = toml::to_string(&t).unwrap_or_default();
    vmove_driver::redact_uris(&out).into_owned()
}

/// The recorded config text with the URIs that were redacted when it was stored taken back
/// from today's config file, where its host has a URI that redacts to the same text (the same
/// host, user and path: only the hidden part can differ). Returns the text and the hosts whose
/// URI could not be restored (resume then connects without its user information).
fn restore_uris(recorded: &str, current: Option<&str>) -> (String, Vec<String>) {
    let Ok(mut rec) = toml::from_str::<toml::Table>(recorded) else {
        return (recorded.to_owned(), Vec::new());
    };
    let cur: toml::Table = current
        .and_then(|c| toml::from_str(c).ok())
        .unwrap_or_default();
    let mut missing = Vec::new();
    let mut changed = false;
    if let Some(toml::Value::Table(hosts)) = rec.get_mut("hosts") {
        for (name, host) in hosts.iter_mut() {
            let toml::Value::Table(host) = host else {
                continue;
            };
            for (_, field) in URI_FIELDS {
                let Some(toml::Value::String(v)) = host.get(*field) else {
                    continue;
                };
                // Its user information (`://***@`) or a secret query value (`?password=***`).
                if !v.contains(vmove_driver::redact::REDACTED) {
                    continue;
                }
                let today = cur
                    .get("hosts")
                    .and_then(|h| h.get(name))
                    .and_then(|h| h.get(*field))
                    .and_then(|v| v.as_str())
                    .filter(|t| vmove_driver::redact_uris(t) == v.as_str());
                match today {
                    Some(t) => {
                        host.insert((*field).to_owned(), toml::Value::String(t.to_owned()));
                        changed = true;
                    }
                    None => missing.push(format!("hosts.{name}.{field}")),
                }
            }
        }
    }
    if changed {
        (toml::to_string(&rec).unwrap_or_default(), missing)
    } else {
        (recorded.to_owned(), missing)
    }
}

/// The command line vmove was started with, as a person would type it again (`vmove evacuate
/// hv-01 --to hv-02`): arguments with spaces or shell characters single-quoted, URIs' user
/// information hidden. Reports show it.
pub fn command_line() -> String {
    let quote = |a: &str| {
        let plain = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c));
        if plain {
            a.to_owned()
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        }
    };
    let words: Vec<String> = std::iter::once("vmove".to_owned())
        .chain(
            std::env::args_os()
                .skip(1)
                .map(|a| quote(&a.to_string_lossy())),
        )
        .collect();
    vmove_driver::redact_uris(&words.join(" ")).into_owned()
}

/// Creates the journal record of a new run (the VM guard refuses one that overlaps a live run)
/// and returns it, lease held.
pub fn start(eff: &Effective, cfg: &config::ConfigFile, spec: &RunSpec) -> Result<Journaling> {
    let mut j = open(eff)?;
    let text = match &cfg.path {
        Some((p, origin)) => config::read_text(p, origin)?,
        None => String::new(),
    };
    j.create_run(&NewRun {
        spec: spec.clone(),
        config: strip_secrets(&text),
        config_format: ConfigFormat::Toml,
        command: command_line(),
    })
    .map_err(|e| anyhow!("the run was refused; nothing was touched: {e}"))?;
    Ok(Journaling {
        journal: Arc::new(Mutex::new(j)),
        run: spec.run_id.clone(),
        lease: eff.journal_lease,
        stop_seen: None,
        vm_stops_seen: Vec::new(),
        history: Vec::new(),
        plan: None,
    })
}

fn newest(j: &Journal, only_running: bool) -> Result<String> {
    let runs = j.runs()?;
    runs.into_iter()
        .filter(|r| !only_running || r.state == RunState::Running)
        .max_by_key(|r| (r.created_at, r.id.clone()))
        .map(|r| r.id)
        .ok_or_else(|| {
            anyhow!(if only_running {
                "the journal holds no unfinished run"
            } else {
                "the journal holds no run"
            })
        })
}

/// `vmove resume [RUN]`.
pub async fn resume(
    run: Option<String>,
    current: &config::ConfigFile,
    eff: &Effective,
    common: &Common,
) -> Result<u8> {
    if let Some(path) = &common.report {
        crate::output::check_writable(path)?;
    }
    let mut j = open_existing(eff)?;
    let run = match run {
        Some(r) => r,
        None => newest(&j, true)?,
    };
    let (_, took_over) = j.acquire_taking_over(&run).map_err(|e| match e {
        JournalError::LeaseHeld { .. } => anyhow!("cannot resume: {e}"),
        e => anyhow!("cannot resume run `{run}`: {}", e.chain()),
    })?;
    drive(j, run, took_over, current, eff, common, None).await
}

/// Drives a run whose lease `j` has just taken (`vmove resume`, `vmove resume --standby`): the
/// one recovery path. The run is rebuilt from the journal, every VM possibly in flight is
/// located on the hosts before anything is done, and the run goes on to its end.
/// `interrupts`: the listener to hand the run (None: the run installs its own).
pub(crate) async fn drive(
    j: Journal,
    run: String,
    took_over: Option<TakeOver>,
    current: &config::ConfigFile,
    eff: &Effective,
    common: &Common,
    interrupts: Option<crate::interrupts::Interrupts>,
) -> Result<u8> {
    if let Some(t) = took_over {
        // The lease had not expired, but its holder is provably dead (docs/journal.md).
        errln!("vmove: {t}");
    }
    let rec = j.load_run(&run)?;
    // The run goes on with the hosts as they were configured when it started (the config text
    // in its record), not with today's config file.
    // A URI's user information was not stored (no password in the journal): it comes back
    // from today's config file where that host's URI is otherwise the same.
    let today = current
        .path
        .as_ref()
        .and_then(|(p, origin)| config::read_text(p, origin).ok());
    let (text, missing) = restore_uris(&rec.config, today.as_deref());
    for m in missing {
        errln!(
            "vmove: warning: `{m}` was recorded without its user information or secret \
             parameters and today's config file has no matching URI: resume connects without them"
        );
    }
    let cfg = config::parse(&text, std::path::Path::new("(the run's recorded config)"))
        .context("the configuration recorded with the run cannot be read")?;
    let involved = crate::request::involved(&rec.spec);
    let built = crate::drivers::build(&cfg, &involved, crate::drivers::Cap::of(eff)).await?;
    let start = rec.entries.iter().map(|e| e.at).max().unwrap_or(Time::ZERO);
    let recovered = vmove_journal::recovered(&rec);
    let in_flight = recovered
        .iter()
        .filter(|r| matches!(r.state, vmove_core::RecoveredState::InFlight(_)))
        .count();
    let stop_seen = j.stop_requested(&run)?;
    let vm_stops_seen: Vec<_> = j
        .vm_stop_requests(&run, false)?
        .into_iter()
        .filter(|q| q.abort || q.delivered_at.is_none())
        .collect();
    // The undelivered ones are marked delivered by the keeper's first poll (feeding one twice
    // is harmless: the engine ignores a VM already stopped or ended).
    errln!(
        "vmove: resuming run {run}: {} VMs recovered, {in_flight} possibly in flight (located before anything is done){}",
        recovered.len(),
        match stop_seen {
            Some(s) if s.abort_running => "; a stop --now is pending",
            Some(_) => "; a stop is pending",
            None => "",
        }
    );
    let core = Core::resume(rec.spec.clone(), start, recovered)
        .map_err(|e| anyhow!("the run cannot be rebuilt: {e}"))?;
    let options = RuntimeOptions {
        call_timeout: eff.call_timeout,
        speed: built.speed,
        journal_wait: eff.journal_wait,
        start,
    };
    let journaling = Journaling {
        journal: Arc::new(Mutex::new(j)),
        run: run.clone(),
        lease: eff.journal_lease,
        stop_seen,
        vm_stops_seen,
        history: rec.events().cloned().collect(),
        plan: None,
    };
    // The evacuated hosts' maintenance hooks, from the run's recorded config. A run that
    // journaled nothing after its creation died before or during its before_evacuate hooks:
    // they run again (a failing one ends the run with nothing moved). Otherwise they passed
    // when the run started. The after_evacuate hooks run when the resumed run ends.
    let evacuated = crate::request::evacuated(&rec.spec);
    if rec.entries.is_empty() {
        crate::hooks::before_run(&cfg, &evacuated, &run, eff.hook_timeout, Some(&journaling))
            .await?;
    }
    let notes = journaling.for_notes();
    // The report of a resumed run is the whole run's: it names the command that started it.
    let command = if rec.summary.command.is_empty() {
        command_line()
    } else {
        rec.summary.command.clone()
    };
    let code = crate::execute::execute(
        core,
        built.drivers,
        options,
        common,
        &command,
        Some(journaling),
        interrupts,
    )
    .await;
    crate::hooks::after_run(&cfg, &evacuated, &run, eff.hook_timeout, Some(&notes)).await;
    code
}

/// A journal's wall time as RFC 3339; one RFC 3339 cannot write (before 1970, after 9999: a
/// journal may hold any) is said to be out of range, with its milliseconds.
pub(crate) fn wall(t: WallTime) -> String {
    crate::output::wall_ms(t.0)
}

/// One VM's cells in `vmove status`: name, source, destination, and what it is doing.
fn status_row(v: &VmStatus) -> Vec<String> {
    let dest = v
        .destination
        .as_ref()
        .map(|d| format!("-> {d}"))
        .unwrap_or_default();
    let what = match v.phase {
        Phase::Moved => "moved".to_string(),
        Phase::Unmigratable => format!(
            "unmigratable: {}",
            v.reason
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into())
        ),
        Phase::Cancelled => format!(
            "cancelled: {}",
            v.reason
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into())
        ),
        Phase::Migrating => match &v.progress {
            Some(p) if p.bytes_total > 0 => format!(
                "moving (attempt {}): {:.0}% of {}",
                v.attempt,
                p.bytes_done as f64 * 100.0 / p.bytes_total as f64,
                vmove_core::fmt_bytes(p.bytes_total)
            ),
            _ => format!("moving (attempt {})", v.attempt),
        },
        Phase::Queued if v.waiting.is_some() => format!(
            "waiting: {}",
            v.waiting
                .as_ref()
                .map(|w| w.to_string())
                .unwrap_or_default()
        ),
        other => format!("{other} (attempt {})", v.attempt),
    };
    let mut err = match (&v.last_error, v.phase) {
        (Some(e), p) if !p.is_final() => format!(" [last error: {e}]"),
        _ => String::new(),
    };
    if !v.warnings.is_empty() && !v.phase.is_final() {
        err.push_str(&format!(
            " [pre-flight warnings: {}]",
            v.warnings.join("; ")
        ));
    }
    vec![
        v.name.clone(),
        v.source.to_string(),
        dest,
        format!("{what}{err}"),
    ]
}

/// The first line of `status`: the run, its state, who drives it, its lease and stop.
fn summary_head(s: &RunSummary) -> String {
    let mut out = format!(
        "run {}: {} (created {}, driven by pid {} on {})",
        s.id,
        s.state,
        wall(s.created_at),
        s.driver.pid,
        s.driver.host
    );
    if let Some(l) = &s.lease {
        out.push_str(&format!("; lease until {}", wall(l.expires_at)));
    }
    if let Some(st) = &s.stop {
        out.push_str(if st.abort_running {
            "; abort --now requested"
        } else {
            "; stop requested"
        });
    }
    if let Some(d) = &s.detail {
        out.push_str(&format!("; {d}"));
    }
    // One line: every part of it read from the journal (the run's id, the driving host's name,
    // the detail, which may name VMs) is escaped with it.
    crate::stdio::escaped(&out).into_owned()
}

/// `vmove status [RUN] [--watch]`.
pub async fn status(run: Option<String>, watch: bool, json: bool, eff: &Effective) -> Result<u8> {
    let j = open_existing(eff)?;
    let run = match run {
        Some(r) => r,
        None => newest(&j, false)?,
    };
    loop {
        let s = j.run_summary(&run)?;
        let vms = j.vm_status(&run)?;
        if json {
            // One JSON object per look (a line each under --watch: NDJSON).
            let notes: Vec<serde_json::Value> = j
                .notes(&run)?
                .into_iter()
                .map(|(at, text)| serde_json::json!({ "at": wall(at), "text": text }))
                .collect();
            let doc = serde_json::json!({ "run": s, "vms": vms, "notes": notes });
            let line = serde_json::to_string(&doc).context("cannot encode the status as JSON")?;
            if !stdio::out(&format!("{line}\n")) || !watch || s.state != RunState::Running {
                return Ok(0);
            }
            tokio::time::sleep(STATUS_WATCH_EVERY).await;
            continue;
        }
        let mut out = summary_head(&s) + "\n";
        let mut t = crate::output::Table::new(&["VM", "SOURCE", "DESTINATION", "STATE"]);
        t.shrink = vec![0, 1, 2];
        t.rows = vms.iter().map(status_row).collect();
        out.push_str(&t.render(crate::output::terminal_width()));
        let count = |p: Phase| vms.iter().filter(|v| v.phase == p).count();
        out.push_str(&format!(
            "{} VMs: {} moved, {} moving, {} unmigratable, {} cancelled, {} other\n",
            vms.len(),
            count(Phase::Moved),
            count(Phase::Migrating),
            count(Phase::Unmigratable),
            count(Phase::Cancelled),
            vms.iter()
                .filter(|v| !v.phase.is_final() && v.phase != Phase::Migrating)
                .count()
        ));
        for (at, text) in j.notes(&run)? {
            out.push_str(&format!("note ({}): {text}\n", wall(at)));
        }
        if watch {
            // Clear the screen between frames when on a terminal.
            use std::io::IsTerminal;
            if std::io::stdout().is_terminal() {
                stdio::out_raw("\x1b[2J\x1b[H");
            }
        }
        // A reader that went away ends a watch (there is no one left to show it to).
        if !stdio::out(&out) || !watch || s.state != RunState::Running {
            return Ok(0);
        }
        outln!();
        tokio::time::sleep(STATUS_WATCH_EVERY).await;
    }
}

/// How often `vmove status --watch` looks again.
const STATUS_WATCH_EVERY: Duration = Duration::from_secs(2);

/// `vmove abort RUN [--now]`.
pub fn abort(run: &str, now: bool, eff: &Effective) -> Result<u8> {
    let mut j = open_existing(eff)?;
    let s = j
        .request_stop(run, now)
        .map_err(|e| anyhow!("cannot ask run `{run}` to stop: {e}"))?;
    outln!(
        "asked run {run} to stop{} (at {}); its driving process sees it within about a second",
        if s.abort_running {
            " and abort its running migrations"
        } else {
            " starting moves; running ones finish"
        },
        wall(s.at)
    );
    Ok(0)
}

/// `vmove skip RUN VM` (`abort` false) and `vmove abort RUN VM` (`abort` true): a per-VM stop
/// request in the journal, refused (nothing written) when the run or VM is unknown, the run is
/// not running, or the VM's phase does not allow it.
pub fn stop_vm(run: &str, vm: &str, abort: bool, eff: &Effective) -> Result<u8> {
    let mut j = open_existing(eff)?;
    let action = if abort { "abort" } else { "skip" };
    let q = j
        .request_vm_stop(run, vm, abort, &who_asks())
        .map_err(|e| anyhow!("cannot {action} VM `{vm}` of run `{run}`: {e}"))?;
    outln!(
        "asked run {run} to {} VM {} (at {}); its driving process sees it within about a second",
        if abort { "abort the move of" } else { "skip" },
        q.name,
        wall(q.at)
    );
    Ok(0)
}

/// Who asks, for a per-VM stop's reason: `user@host`.
fn who_asks() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "someone".into());
    format!("{user}@{}", crate::output::hostname())
}

/// `vmove history`.
pub fn history(eff: &Effective, common: &Common) -> Result<u8> {
    if let Some(path) = &common.report {
        crate::output::check_writable(path)?;
    }
    // A new user's first `vmove history`: the default journal does not exist yet. That is no
    // error (and creates nothing); a journal named by --journal, VMOVE_JOURNAL or the config
    // that does not exist is (a mistyped path).
    let runs = if eff.journal.is_none() && !journal_path(eff)?.exists() {
        None
    } else {
        let j = open_existing(eff)?;
        let mut runs = j.runs()?;
        runs.sort_by_key(|r| r.created_at);
        Some(runs)
    };
    if let Some(path) = &common.report {
        write_history(path, runs.as_deref().unwrap_or_default())?;
    }
    if common.json {
        let doc = serde_json::json!({ "runs": runs.as_deref().unwrap_or_default() });
        let line = serde_json::to_string(&doc).context("cannot encode the history as JSON")?;
        stdio::out(&format!("{line}\n"));
        return Ok(0);
    }
    let Some(runs) = runs else {
        outln!("no runs yet (no journal at {})", journal_shown(eff)?);
        return Ok(0);
    };
    if runs.is_empty() {
        outln!("no runs in {}", journal_shown(eff)?);
        return Ok(0);
    }
    let mut t = crate::output::Table::new(&[
        "RUN", "STATE", "CREATED", "VMS", "MOVED", "UNMIG", "CANC", "COMMAND",
    ]);
    t.right = vec![3, 4, 5, 6];
    t.shrink = vec![0];
    t.rows = runs
        .iter()
        .map(|r| {
            let mut row = history_row(r).to_vec();
            row.push(r.command.clone());
            row
        })
        .collect();
    stdio::out(&t.render(crate::output::terminal_width()));
    Ok(0)
}

/// One run's cells in `vmove history` and its `--report` table: id, state, created, VMs,
/// moved, unmigratable, cancelled.
fn history_row(r: &RunSummary) -> [String; 7] {
    let n = |p: Phase| r.phases.get(&p).copied().unwrap_or(0).to_string();
    [
        r.id.clone(),
        r.state.as_str().to_owned(),
        wall(r.created_at),
        r.phases.values().sum::<u32>().to_string(),
        n(Phase::Moved),
        n(Phase::Unmigratable),
        n(Phase::Cancelled),
    ]
}

/// `vmove report [RUN] [--report FILE]`: the CLI's report, rebuilt from the journal's events.
/// `vmove history --report FILE`: the runs as JSON, or as a Markdown table when FILE ends in
/// `.md` (as a run's report).
fn write_history(path: &std::path::Path, runs: &[RunSummary]) -> Result<()> {
    use crate::output::ReportFormat;
    let text = if ReportFormat::of(path) == ReportFormat::Markdown {
        let mut t = String::from(
            "# vmove runs\n\n| run | state | created | VMs | moved | unmigratable | cancelled |\n|---|---|---|---|---|---|---|\n",
        );
        for r in runs {
            let cells = history_row(r).map(|c| crate::output::markdown::cell(&c));
            t.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        t
    } else {
        serde_json::to_string_pretty(&serde_json::json!({ "runs": runs }))
            .context("cannot encode the history as JSON")?
            + "\n"
    };
    crate::output::write_regular(path, &text)
}

pub fn report(run: Option<String>, eff: &Effective, common: &Common) -> Result<u8> {
    if let Some(path) = &common.report {
        crate::output::check_writable(path)?;
    }
    let j = open_existing(eff)?;
    let run = match run {
        Some(r) => r,
        None => newest(&j, false)?,
    };
    let rec = j.load_run(&run)?;
    let mut r = Record::new(if rec.summary.command.is_empty() {
        "(not recorded: journaled by a vmove older than schema 6)"
    } else {
        &rec.summary.command
    });
    r.set_start_ms(u64::try_from(rec.summary.created_at.0).unwrap_or(0));
    // The host that drove the run (this one may only read its journal).
    r.host = rec.summary.driver.host.clone();
    for ev in rec.events() {
        r.apply(ev);
    }
    if r.run_id.is_empty() {
        r.run_id = run.clone();
    }
    let end = rec.entries.iter().map(|e| e.at).max().unwrap_or(Time::ZERO);
    r.tally(end);
    // `vmove resume` goes on only with a run that has not ended.
    r.set_next(if rec.summary.state == RunState::Running {
        crate::output::NextRun::Resume(run.clone())
    } else {
        crate::output::NextRun::NewRun
    });
    if rec.summary.state != RunState::Running {
        r.set_end(
            end,
            rec.summary
                .finished_at
                .and_then(|t| u64::try_from(t.0).ok()),
        );
    }
    r.outcome = match rec.summary.state {
        RunState::Running => RunOutcome::Unfinished,
        RunState::Failed => RunOutcome::Failed,
        RunState::Aborted => RunOutcome::Interrupted,
        RunState::Finished if r.vms.iter().all(|v| v.outcome == VmOutcome::Moved) => {
            RunOutcome::AllMoved
        }
        RunState::Finished => RunOutcome::SomeUnmigratable,
    };
    if r.error.is_none() {
        r.error = rec.summary.detail.clone();
    }
    // The plan the run was started with (none: a run journaled before plans were, or one
    // whose plan could not be made: its note says why).
    let planned = j.planned_moves(&run)?;
    let plan_line = if planned.is_empty() {
        j.notes(&run)?
            .into_iter()
            .map(|(_, text)| text)
            .rfind(|t| t.starts_with("no plan was made"))
    } else {
        Some(format!(
            "planned: {} VM(s) when the run started (the timeline's predicted bars)",
            planned.len()
        ))
    };
    if common.json {
        let line = serde_json::to_string(&r).context("cannot encode the report as JSON")?;
        stdio::out(&format!("{line}\n"));
    } else {
        outln!("{}", summary_head(&rec.summary));
        stdio::out(&r.table());
    }
    if let Some(line) = &plan_line {
        // Fitted to the tables' width (wrapped at spaces), whole in a pipe.
        let text = crate::timeline::text::wrap(
            line,
            crate::output::terminal_width().unwrap_or(usize::MAX),
        );
        if common.json {
            stdio::err(&text);
        } else {
            stdio::out(&text);
        }
    }
    let timeline = crate::timeline::Timeline::from_run(&rec).with_plan(&planned);
    if common.timeline {
        let text = crate::timeline::text::text(
            &timeline,
            crate::output::terminal_width().unwrap_or(crate::timeline::text::DEFAULT_WIDTH),
        );
        if common.json {
            stdio::err(&text);
        } else {
            stdio::out(&format!("\n{text}"));
        }
    }
    if let Some(path) = &common.report {
        r.write_with(path, Some(&timeline))?;
    }
    if rec.summary.state == RunState::Running {
        errln!("vmove: note: run {run} is not over: this report is of the run so far");
    }
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A failed run's summary: its id, detail and driving host as a journal may hold them.
    fn summary(id: &str, detail: Option<&str>, host: &str) -> RunSummary {
        RunSummary {
            id: id.into(),
            command: "vmove evacuate a".into(),
            created_at: vmove_journal::WallTime(0),
            state: vmove_journal::RunState::Failed,
            detail: detail.map(Into::into),
            finished_at: None,
            driver: vmove_journal::Holder {
                pid: 7,
                host: host.into(),
                started: None,
                boot: None,
            },
            stop: None,
            lease: None,
            entries: 0,
            phases: Default::default(),
        }
    }

    /// `history --report x.md` puts each run in one table row, whatever its id holds: a `|`
    /// would have split the row, markup been drawn as a link, a newline ended the table.
    #[test]
    fn a_run_id_holding_markup_or_a_pipe_stays_in_its_cell_of_the_history_markdown() {
        let s = summary("[x](http://evil.example)|forged\nrow", None, "h");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("H.MD");
        write_history(&path, &[s]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(rows.len(), 3, "header, rule and one row: {text}");
        assert!(
            rows[2].contains("`[x](http://evil.example)\\|forged\\nrow`"),
            "{text}"
        );
        assert_eq!(rows[2].matches(" | ").count(), 6, "seven cells: {text}");
    }

    /// `status`'s first line is one line whatever the journal holds: the driving host's name and
    /// the detail (which may name VMs) come from the journal, and a newline in either printed a
    /// line of its own, one that could pass for vmove's.
    #[test]
    fn the_status_header_escapes_what_the_journal_holds_so_it_stays_one_line() {
        let s = summary("r1", Some("web\nFORGED: gave up"), "evil\rhost\tX");
        let head = summary_head(&s);
        assert!(!head.chars().any(char::is_control), "{head:?}");
        assert!(head.contains("on evil\\rhost\\tX"), "{head}");
        assert!(head.contains("; web\\nFORGED: gave up"), "{head}");
    }

    #[test]
    fn a_lease_expiry_past_the_year_9999_is_said_out_of_range_not_a_panic() {
        // `status` and `report` print the lease's expiry and the run's times as a journal
        // holds them: any i64.
        assert_eq!(
            wall(WallTime(253_402_300_800_000)),
            "253402300800000 ms since the Unix epoch (out of range)"
        );
        assert_eq!(
            wall(WallTime(-5)),
            "-5 ms since the Unix epoch (out of range)"
        );
        assert!(wall(WallTime(i64::MAX)).ends_with("(out of range)"));
        assert_eq!(wall(WallTime(1_000)), "1970-01-01T00:00:01Z");
    }

    #[test]
    fn a_status_row_names_the_latest_pre_flight_warnings_until_the_vm_is_over() {
        let mut v = VmStatus::new(vmove_core::VmId::new("u1"), Time::ZERO);
        v.name = "web-1".into();
        v.warnings = vec!["cpu_unchecked toward b: cannot compare the CPU".into()];
        let row = status_row(&v);
        assert!(
            row[3]
                .ends_with("[pre-flight warnings: cpu_unchecked toward b: cannot compare the CPU]"),
            "{row:?}"
        );
        v.phase = Phase::Moved;
        assert!(!status_row(&v)[3].contains("warnings"));
    }

    #[test]
    fn a_password_in_a_uri_is_not_stored_and_comes_back_from_the_config_file_on_resume() {
        let text = "[hosts.kvm1]\ndriver = \"libvirt\"\nuri = \"qemu+tcp://admin:s3cr3t@127.0.0.1:1/system\"\n\n[hosts.kvm2]\ndriver = \"libvirt\"\nuri = \"qemu+ssh://root:pw2@kvm2/system\"\n";
        let stored = strip_secrets(text);
        assert!(
            !stored.contains("s3cr3t") && !stored.contains("pw2"),
            "{stored}"
        );
        assert!(
            stored.contains("qemu+tcp://***@127.0.0.1:1/system"),
            "{stored}"
        );
        // Resume: kvm1's URI is back from today's file; kvm2's changed host, so it is not.
        let today = text.replace("@kvm2/", "@kvm9/");
        let (back, missing) = restore_uris(&stored, Some(&today));
        let t: toml::Table = toml::from_str(&back).unwrap();
        assert_eq!(
            t["hosts"]["kvm1"]["uri"].as_str(),
            Some("qemu+tcp://admin:s3cr3t@127.0.0.1:1/system")
        );
        assert_eq!(
            t["hosts"]["kvm2"]["uri"].as_str(),
            Some("qemu+ssh://***@kvm2/system")
        );
        assert_eq!(missing, vec!["hosts.kvm2.uri".to_owned()]);
        // Without a config file nothing is restored, and that is said.
        let (same, missing) = restore_uris(&stored, None);
        assert_eq!(same, stored);
        assert_eq!(missing.len(), 2);
    }

    #[test]
    fn a_password_in_a_uri_query_is_not_stored_and_comes_back_from_the_config_file_on_resume() {
        let uri = "qemu+tcp://root:S3cretPW42@127.0.0.9/system?password=S3cretPW42&x=1";
        let text = format!("[hosts.kvm1]\ndriver = \"libvirt\"\nuri = \"{uri}\"\n");
        let stored = strip_secrets(&text);
        assert!(!stored.contains("S3cretPW42"), "{stored}");
        assert!(
            stored.contains("qemu+tcp://***@127.0.0.9/system?password=***&x=1"),
            "{stored}"
        );
        let (back, missing) = restore_uris(&stored, Some(&text));
        let t: toml::Table = toml::from_str(&back).unwrap();
        assert_eq!(t["hosts"]["kvm1"]["uri"].as_str(), Some(uri));
        assert!(missing.is_empty(), "{missing:?}");
        // Only the query held a secret: restored all the same.
        let uri = "qemu+tcp://127.0.0.9/system?password=S3cretPW42";
        let text = format!("[hosts.kvm1]\ndriver = \"libvirt\"\nuri = \"{uri}\"\n");
        let stored = strip_secrets(&text);
        assert!(!stored.contains("S3cretPW42"), "{stored}");
        let (back, _) = restore_uris(&stored, Some(&text));
        assert!(back.contains(uri), "{back}");
    }

    #[test]
    fn secret_looking_keys_are_blanked_before_the_config_is_stored() {
        let text = "[hosts.h]\ndriver = \"hyperv\"\npassword = \"hunter2\"\ncredentials_file = \"/etc/c\"\n\n[hosts.h.x]\napi_token = \"t0k\"\n";
        let out = strip_secrets(text);
        assert!(!out.contains("hunter2") && !out.contains("t0k"), "{out}");
        assert!(out.contains("/etc/c"), "other keys are kept: {out}");
        let back: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(back["hosts"]["h"]["driver"].as_str(), Some("hyperv"));
    }
}
