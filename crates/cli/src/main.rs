//! `vmove`: moves many virtual machines between hypervisor hosts that share no storage.
//!
//! A thin binary: it parses, merges and renders; the core decides, the `vmove-plan` crate plans.
//!
//! # Layout
//! - [`args`]: raw command-line arguments (clap derive).
//! - [`config`]: the TOML config file: lookup order, tables, errors naming file and key.
//! - [`settings`]: `[defaults]` + `VMOVE_<KEY>` + flags -> effective settings (flags > env > file).
//! - [`request`]: a command's selection + config -> the core's `RunSpec`.
//! - [`drivers`]: the driver factory (the only file that knows the driver crates): it dispatches
//!   each host's table to its driver crate.
//! - [`check`]: `check`, the pre-flight of every selected VM on every allowed destination
//!   (also `plan`'s first section); [`check_output`] prints it (text or `--json`).
//! - [`moves`]: the flow of `migrate`, `evacuate` and `plan`: the checks, drivers and host lists
//!   before anything is touched, then the plan or the run.
//! - [`execute`]: a run carried out with its sinks, Ctrl-C handling, the journal's end, the
//!   summary and the exit code (`migrate`, `evacuate`, `resume`, `demo`).
//! - [`interrupts`]: Ctrl-C, SIGTERM and SIGHUP.
//! - [`simrun`]: `demo`, and printing `plan`'s plan (made by the `vmove-plan` crate).
//! - [`run_plan`]: the plan a run is started with, made off its path and journaled beside it
//!   (the reports draw its predicted bars).
//! - [`runs`]: the journal: journaling a run, `resume`, `status`, `abort`, `history`, `report`.
//! - [`standby`]: `resume --standby`: waits for runs whose holder stopped renewing its lease.
//! - [`serve`]: `serve`: the runs' pages, live updates and `/metrics` over HTTP.
//! - [`output`]: progress bars or plain lines, the per-VM record, the summary table, `--report`.
//! - [`stdio`]: writes to stdout and stderr that never panic (a closed pipe never ends a run).
//! - [`exit`]: the exit codes.
//! - this file: parsing, merging the settings and dispatching each command.
//!
//! Exit codes: 0 all moved, 2 some unmigratable (or not moved), 1 an error before or during the
//! run, 130 interrupted (Ctrl-C, SIGTERM, SIGHUP or `vmove abort`). A reader that closes stdout
//! (`| head`) changes none of them.

#![deny(clippy::print_stdout, clippy::print_stderr)]
// The doc comments of `args` are clap's `--help` text, where `[key]` names a setting's config
// key and `<user>` a value to fill in: not links or HTML for rustdoc.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

#[macro_use]
mod stdio;
mod args;
mod check;
mod check_output;
mod config;
mod deadline;
mod drivers;
mod execute;
mod exit;
#[cfg(test)]
mod fuzz;
mod hooks;
mod interrupts;
mod log;
mod moves;
mod output;
mod request;
mod run_plan;
mod runs;
mod serve;
mod settings;
mod simrun;
mod standby;
mod timeline;

use anyhow::{Context, Result};
use args::{Cli, Cmd, PlanWhat};
use clap::Parser;
use config::ConfigFile;
use exit::{EXIT_ERROR, EXIT_OK};
use moves::plan_or_move;
use request::Chosen;
use settings::{Effective, env};
use std::process::ExitCode;

/// The drivers' `tracing` messages go to stderr (never stdout, which `--json` owns), warnings
/// and errors by default: a Hyper-V job that completed with warnings, TLS verification turned
/// off, a provenance marker that could not be removed. `-v`/`-vv`/`-vvv` (info, debug, trace)
/// and `-q` (errors) set the level; without them `VMOVE_LOG` (or `RUST_LOG`) does, with
/// tracing's filter syntax (`info`, `vmove_driver_libvirt=debug`); a value that is not a filter
/// is said once and the default kept. `--log-file` writes the same lines to a file too. Every
/// line has URIs' user information hidden (`log::Redacting`); a failed write is dropped.
fn install_log(common: &args::Common) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;
    let flag = match (common.quiet, common.verbose) {
        (true, _) => Some("error"),
        (false, 0) => None,
        (false, 1) => Some("info"),
        (false, 2) => Some("debug"),
        (false, _) => Some("trace"),
    };
    let filter = || match flag {
        Some(level) => EnvFilter::new(level),
        None => log::filter_from_env(),
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(|| log::Redacting(stdio::Stderr))
        .with_ansi(false)
        .with_target(false)
        .with_filter(filter());
    let file = match &common.log_file {
        Some(path) => {
            let f = log::open_file(path)?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || log::Redacting(log::Shared(f.clone())))
                    .with_ansi(false)
                    .with_target(false)
                    .with_filter(filter()),
            )
        }
        None => None,
    };
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            // Help and version go to stdout, usage errors to stderr, as clap formats them.
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Err(e) = install_log(&cli.common) {
        errln!("vmove: {e:#}");
        return ExitCode::from(EXIT_ERROR);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("vmove: error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // A configured URI may hold a password: never printed (vmove_driver::redact_uris).
            errln!(
                "vmove: error: {}",
                vmove_driver::redact_uris(&format!("{e:#}"))
            );
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn run(mut cli: Cli) -> Result<u8> {
    // `--deadline` is read before anything else, so a bad one starts nothing.
    if let Some(raw) = &cli.common.deadline {
        let moves = match &cli.command {
            Cmd::Demo(_) | Cmd::Resume { .. } => true,
            Cmd::Migrate(a) => !a.placement.dry_run,
            Cmd::Evacuate(a) => !a.placement.dry_run,
            _ => false,
        };
        if !moves {
            anyhow::bail!(
                "`--deadline` is for runs that move VMs (migrate, evacuate, resume, demo)"
            );
        }
        let at = deadline::parse(raw, std::time::SystemTime::now()).map_err(anyhow::Error::msg)?;
        cli.common.deadline_at = Some(at);
    }
    // A command that works on the journal only has nothing to do without it.
    if cli.common.no_journal
        && let Some(name) = journal_command(&cli.command)
    {
        anyhow::bail!(
            "`vmove {name}` works on the journal, and `--no-journal` was given: leave \
             `--no-journal` out (it is for a `migrate` or `evacuate` run that is not to be \
             journaled)"
        );
    }
    // Generated from the CLI's definition; no config, journal or host is read.
    match &cli.command {
        Cmd::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(
                *shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "vmove",
                &mut buf,
            );
            stdio::out(&String::from_utf8_lossy(&buf));
            return Ok(EXIT_OK);
        }
        Cmd::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut buf)
                .context("cannot render the man page")?;
            stdio::out(&String::from_utf8_lossy(&buf));
            return Ok(EXIT_OK);
        }
        _ => {}
    }
    let found = config::locate(cli.common.config.as_deref(), &env);
    let cfg = config::load(found)?;
    let file_origin = cfg
        .named()
        .unwrap_or_else(|| "the built-in defaults".to_owned());
    let eff = settings::merge(
        &cfg.defaults,
        &file_origin,
        &env,
        &cli.common.knobs.given(),
        cli.common.knobs.path.clone(),
    )?;
    // A run outlives a reader that closes its output: that is said once. Short commands (and
    // dry runs) end quietly when their reader goes away (see `stdio`).
    let moves = match &cli.command {
        Cmd::Demo(_) | Cmd::Resume { .. } => true,
        Cmd::Migrate(a) => !a.placement.dry_run,
        Cmd::Evacuate(a) => !a.placement.dry_run,
        _ => false,
    };
    if moves {
        stdio::announce_closed_stdout();
    }
    let code = command(cli, &cfg, &eff).await?;
    match stdio::stdout_failure() {
        // Said on stderr already; a short command whose output was lost did not do its job.
        Some(kind) if !moves && kind != std::io::ErrorKind::BrokenPipe => Ok(EXIT_ERROR),
        _ => Ok(code),
    }
}

/// The commands that read or write the journal and nothing else (`--no-journal` refuses them),
/// by name.
fn journal_command(cmd: &Cmd) -> Option<&'static str> {
    match cmd {
        Cmd::History => Some("history"),
        Cmd::Status { .. } => Some("status"),
        Cmd::Report { .. } => Some("report"),
        Cmd::Resume { .. } => Some("resume"),
        Cmd::Abort { .. } => Some("abort"),
        Cmd::Skip { .. } => Some("skip"),
        Cmd::Serve(_) => Some("serve"),
        Cmd::Migrate(_)
        | Cmd::Evacuate(_)
        | Cmd::Plan { .. }
        | Cmd::Check { .. }
        | Cmd::Demo(_)
        | Cmd::Config
        | Cmd::Completions { .. }
        | Cmd::Man => None,
    }
}

async fn command(cli: Cli, cfg: &ConfigFile, eff: &Effective) -> Result<u8> {
    match cli.command {
        Cmd::Config => {
            if cli.common.json {
                print_config_json(cfg, eff)?;
            } else {
                print_config(cfg, eff);
            }
            Ok(EXIT_OK)
        }
        Cmd::Demo(a) => simrun::demo(&a, eff, &cli.common).await,
        Cmd::Plan { what } => {
            let chosen = match what {
                PlanWhat::Migrate(a) => Chosen::Migrate(a),
                PlanWhat::Evacuate(a) => Chosen::Evacuate(a),
            };
            plan_or_move(chosen, cfg, eff, &cli.common, true).await
        }
        Cmd::Check { what } => {
            let chosen = match what {
                PlanWhat::Migrate(a) => Chosen::Migrate(a),
                PlanWhat::Evacuate(a) => Chosen::Evacuate(a),
            };
            check::check(chosen, cfg, eff, &cli.common).await
        }
        Cmd::Migrate(a) => {
            let dry = a.placement.dry_run;
            plan_or_move(Chosen::Migrate(a), cfg, eff, &cli.common, dry).await
        }
        Cmd::Evacuate(a) => {
            let dry = a.placement.dry_run;
            plan_or_move(Chosen::Evacuate(a), cfg, eff, &cli.common, dry).await
        }
        Cmd::Resume {
            standby: true,
            once,
            ..
        } => standby::standby(once, cfg, eff, &cli.common).await,
        Cmd::Resume { run, .. } => runs::resume(run, cfg, eff, &cli.common).await,
        Cmd::Status { run, watch } => runs::status(run, watch, cli.common.json, eff).await,
        Cmd::Abort { run, vm: None, now } => runs::abort(&run, now, eff),
        Cmd::Abort {
            run, vm: Some(vm), ..
        } => runs::stop_vm(&run, &vm, true, eff),
        Cmd::Skip { run, vm } => runs::stop_vm(&run, &vm, false, eff),
        Cmd::History => runs::history(eff, &cli.common),
        Cmd::Serve(a) => serve::serve(&a, eff).await,
        Cmd::Report { run } => runs::report(run, eff, &cli.common),
        // Answered before the config is read (`run`).
        Cmd::Completions { .. } | Cmd::Man => Ok(EXIT_OK),
    }
}

/// `vmove config --json`: the same settings and hosts as the TOML `vmove config` prints, as one
/// JSON object (`config_file`: the file used, or null; `settings`; `hosts`).
fn print_config_json(cfg: &ConfigFile, eff: &Effective) -> Result<()> {
    let mut text = settings::render(eff);
    for (h, c) in &cfg.hosts {
        text.push_str(&host_toml(h, c));
    }
    let table: toml::Table = toml::from_str(&text).context("cannot read back the settings")?;
    let mut doc = serde_json::Map::new();
    doc.insert(
        "config_file".into(),
        match &cfg.path {
            Some((p, _)) => serde_json::Value::String(p.display().to_string()),
            None => serde_json::Value::Null,
        },
    );
    let settings = table
        .get("defaults")
        .cloned()
        .unwrap_or(toml::Value::Table(toml::Table::new()));
    doc.insert("settings".into(), serde_json::to_value(settings)?);
    doc.insert(
        "hosts".into(),
        serde_json::to_value(
            table
                .get("hosts")
                .cloned()
                .unwrap_or(toml::Value::Table(toml::Table::new())),
        )?,
    );
    stdio::out(&format!("{}\n", serde_json::Value::Object(doc)));
    Ok(())
}

/// A host's table as `vmove config` prints it.
fn host_toml(h: &vmove_core::HostId, c: &config::HostConfig) -> String {
    format!(
        "\n[hosts.{h}]\ndriver = \"{}\"{}{}\n",
        c.driver.name(),
        c.max_migrations
            .map(|n| format!("\nmax_migrations = {n}"))
            .unwrap_or_default(),
        c.path
            .as_ref()
            .map(|p| format!("\npath = {:?}", p))
            .unwrap_or_default()
    )
}

fn print_config(cfg: &ConfigFile, eff: &Effective) {
    match &cfg.path {
        Some((p, origin)) => outln!("# config file: {} (found through {origin})", p.display()),
        None => outln!("# config file: none found; built-in defaults"),
    }
    stdio::out(&settings::render(eff));
    for (h, c) in &cfg.hosts {
        stdio::out(&host_toml(h, c));
    }
}
