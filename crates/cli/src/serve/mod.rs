//! `vmove serve`: a read-only HTTP server over the journal: a page of the runs, a live page per
//! run (server-sent events fed by one journal poller per run, `hub.rs`), `/metrics` for
//! Prometheus, and, only with `--allow-control` and behind a token, the run's stop and abort.
//!
//! - [`hub`]: the journal handle and the per-run pollers.
//! - [`view`]: a run folded for the page and the metrics.
//! - [`page`]: the HTML (every value escaped) and the script and style built in.
//! - [`metrics`]: the Prometheus text format.
//! - [`http`]: the routes, the headers, the token check.
//!
//! Security model (docs/cli.md, `vmove serve`): loopback only unless `--listen` names another address
//! (said loudly); requests whose `Host` is not a loopback name are refused when bound to
//! loopback (DNS rebinding); pages are read-only; a POST is refused (403) without
//! `--allow-control`, and needs the token in the `X-Vmove-Token` header with it. The token is
//! generated at start and printed once on stderr, or read from `VMOVE_SERVE_TOKEN` or a file
//! only its owner can read (`--token-file`), never from the command line.

pub mod http;
pub mod hub;
pub mod metrics;
pub mod page;
pub mod view;

use crate::args::ServeArgs;
use crate::settings::Effective;
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The port `vmove serve` listens on (loopback) when none is given.
pub const DEFAULT_PORT: u16 = 9470;

/// How often a watched run's journal is looked at: one look per run, whatever the clients.
pub const POLL_INTERVAL: Duration = Duration::from_millis(300);

/// The least time between two re-plans of a run's ETA (`hub.rs`): a re-plan is made only when
/// a VM's migration ended or a host was refreshed, and at most this often.
pub const REPLAN_EVERY: Duration = Duration::from_secs(5);

/// Past runs the re-plan's figures are fitted from (`vmove plan`'s default `--plan-history`).
pub const PLAN_HISTORY: usize = 20;

/// The environment variable a control token may be given in.
pub const TOKEN_ENV: &str = "VMOVE_SERVE_TOKEN";

/// Where to listen: `--listen ADDR` as given (any address, said loudly when not loopback),
/// else 127.0.0.1 with `--port`.
pub fn listen_addr(args: &ServeArgs) -> Result<SocketAddr> {
    match &args.listen {
        Some(text) => text.parse::<SocketAddr>().with_context(|| {
            format!("`--listen {text}` is not an address and port (e.g. 127.0.0.1:9470, [::1]:9470, 0.0.0.0:9470)")
        }),
        None => Ok(SocketAddr::from(([127, 0, 0, 1], args.port.unwrap_or(DEFAULT_PORT)))),
    }
}

/// The control token: `--token-file` (owner-only), `VMOVE_SERVE_TOKEN`, or a new one.
/// Returns it and whether it was generated here (then it is printed once).
fn control_token(args: &ServeArgs) -> Result<(String, bool)> {
    if let Some(path) = &args.token_file {
        return Ok((read_token_file(path)?, false));
    }
    if let Ok(t) = std::env::var(TOKEN_ENV) {
        let t = t.trim().to_owned();
        check_token(&t, TOKEN_ENV)?;
        return Ok((t, false));
    }
    Ok((new_token()?, true))
}

fn check_token(t: &str, from: &str) -> Result<()> {
    if t.len() < 16 {
        bail!("the control token in {from} is too short: use at least 16 characters");
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("the control token in {from} has spaces or characters that cannot go in a header");
    }
    Ok(())
}

/// The most a token file may hold: a token is 64 hex characters (`new_token`); a file far
/// longer is not a token file, and is not read whole (a path to a large file by mistake, or one
/// that grows).
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

fn read_token_file(path: &Path) -> Result<String> {
    let shown = path.display();
    // What it is first: a device (`/dev/zero`, mode 666) is not a token file, whoever may read
    // it; then its size, then who may read it.
    let (meta, bytes) = vmove_driver::files::read_regular_file_bounded(path, MAX_TOKEN_FILE_BYTES)
        .map_err(|e| {
            anyhow::anyhow!(e.describe(
                "token file",
                path,
                MAX_TOKEN_FILE_BYTES,
                ": it is not a token file (a token is one line of at least 16 characters)",
            ))
        })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "the token file `{shown}` may be read by others (mode {mode:o}): `chmod 600 {shown}` first"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("the token file `{shown}` is not UTF-8 text"))?;
    let t = text.trim().to_owned();
    check_token(&t, &format!("`{shown}`"))?;
    Ok(t)
}

/// 32 random bytes from the system, as hex.
fn new_token() -> Result<String> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf)
        .map_err(|e| anyhow::anyhow!("cannot get random bytes to make a control token: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// `vmove serve`.
pub async fn serve(args: &ServeArgs, eff: &Effective) -> Result<u8> {
    let journal = crate::runs::open_existing(eff)?;
    if journal.is_blank() {
        // Its page would never show the runs journaled there later: it reads an empty journal
        // standing for the file, and the file is left as it is.
        anyhow::bail!(
            "the journal `{}` is an empty file: no run was journaled there yet; serve it once a \
             run has been (check --journal, VMOVE_JOURNAL or `journal` in [defaults])",
            journal.location()
        );
    }
    let server = Listening::bind(args, journal).await?;
    outln!("vmove serve: journal {}", server.ctx.journal_path);
    outln!("vmove serve: listening on {}", server.url);
    let mut interrupts = crate::interrupts::Interrupts::install()?;
    tokio::select! {
        () = server.accept() => Ok(0),
        sig = interrupts.next() => {
            errln!("vmove serve: {}: stopping", sig.unwrap_or("signal"));
            Ok(0)
        }
    }
}

/// A server bound to its address, not yet answering: `vmove serve`'s, or the one `vmove demo
/// --serve` runs beside its evacuation.
pub struct Listening {
    listener: tokio::net::TcpListener,
    ctx: Arc<http::Ctx>,
    /// `http://ADDR:PORT/`, with the port bound (`--port 0` picks one).
    pub url: String,
}

impl Listening {
    /// Checks the arguments, makes or reads the control token (said once on stderr when made
    /// here), binds the address (said loudly when other machines can reach it).
    pub async fn bind(args: &ServeArgs, journal: vmove_journal::Journal) -> Result<Self> {
        let addr = listen_addr(args)?;
        let journal_path = journal.location();
        let token = if args.allow_control {
            let (t, generated) = control_token(args)?;
            Some((t, generated))
        } else {
            if args.token_file.is_some() {
                bail!("`--token-file` is for `--allow-control`: without it nothing can be changed");
            }
            None
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener
            .local_addr()
            .context("cannot read the bound address")?;
        let loopback = bound.ip().is_loopback();
        if !loopback {
            errln!(
                "vmove: WARNING: serving on {bound}, which other machines can reach: anyone there \
                 sees every run's VM and host names. There is no TLS: put it behind a proxy with \
                 TLS and authentication, or use the default (loopback only) and an SSH tunnel."
            );
            if token.is_some() {
                errln!(
                    "vmove: WARNING: --allow-control on a non-loopback address: the control token \
                     travels in clear text."
                );
            }
        }
        let url = format!("http://{bound}/");
        if let Some((t, generated)) = &token {
            if *generated {
                errln!(
                    "vmove serve: control is on (stop and abort buttons). Token (shown once): {t}\n  \
                     open {url}#token={t} to have the page use it, or send it as the X-Vmove-Token header"
                );
            } else {
                errln!(
                    "vmove serve: control is on (stop and abort buttons), token from {}",
                    if args.token_file.is_some() {
                        "the token file"
                    } else {
                        TOKEN_ENV
                    }
                );
            }
        }
        let ctx = Arc::new(http::Ctx {
            hub: Arc::new(hub::Hub::new(journal, POLL_INTERVAL)),
            token: token.map(|(t, _)| t),
            loopback,
            journal_path,
        });
        Ok(Self { listener, ctx, url })
    }

    /// Answers connections, each on a task of its own, until dropped.
    pub async fn accept(&self) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => http::spawn_connection(Arc::clone(&self.ctx), stream),
                // Out of file descriptors and the like: wait a little, go on.
                Err(e) => {
                    errln!("vmove serve: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// `/runs/RUN/timeline.svg`: the timeline module's SVG of the run as the poller has it.
pub async fn timeline_svg(_ctx: &http::Ctx, tail: &Arc<hub::Tail>) -> http::Resp {
    match tail.view.lock().await.timeline_svg() {
        Some(svg) => {
            let mut r = http::full(hyper::StatusCode::OK, "image/svg+xml", svg);
            r.headers_mut().insert(
                hyper::header::CONTENT_SECURITY_POLICY,
                hyper::header::HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
            );
            r
        }
        None => http::text(hyper::StatusCode::NOT_FOUND, "the run has no timeline yet"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_new_control_token_is_64_hex_digits_a_header_takes_and_never_the_same() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 64, "{a}");
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        check_token(&a, "the test").unwrap();
        assert_ne!(a, b);
    }

    /// A token file is read only if it is a regular file of at most `MAX_TOKEN_FILE_BYTES`:
    /// `/dev/zero` is named as a device (it was refused as "may be read by others", mode 666,
    /// and with that mode fixed it would have been read until memory ran out), and a file of
    /// a megabyte is refused naming the limit, not read.
    #[cfg(unix)]
    #[test]
    fn a_token_file_that_is_a_device_or_too_large_is_refused_without_reading_it() {
        use std::os::unix::fs::PermissionsExt;
        let e = read_token_file(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`/dev/zero` is not a regular file but a character device"),
            "{e}"
        );
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let big = dir.join("big");
        std::fs::write(&big, "a".repeat(1 << 20)).unwrap();
        std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = read_token_file(&big).unwrap_err().to_string();
        assert!(e.contains("larger than 4096 bytes"), "{e}");
        let ok = dir.join("ok");
        std::fs::write(&ok, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&ok).unwrap(), "0123456789abcdef0123");
        std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_token_file(&ok).unwrap_err().to_string();
        assert!(e.contains("may be read by others (mode 644)"), "{e}");
    }
}
