//! The routes of `vmove serve` on hyper's HTTP/1 server:
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the runs |
//! | `GET /runs/RUN` | the run's page |
//! | `GET /runs/RUN/state.json` | the run as JSON (what the page's first event holds) |
//! | `GET /runs/RUN/events` | server-sent events: `snapshot`, then `delta`s |
//! | `GET /runs/RUN/timeline.svg` | the run's timeline (when built in) |
//! | `POST /runs/RUN/abort[?now=1]` | `vmove abort RUN [--now]`: `--allow-control` and the token |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /assets/app.js`, `/assets/style.css` | the page's script and style, from the binary |

use super::hub::{Hub, ReadError, Tail};
use super::{metrics, page};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// What every request handler shares.
#[derive(Debug)]
pub struct Ctx {
    pub hub: Arc<Hub>,
    /// The control token, when `--allow-control`.
    pub token: Option<String>,
    /// Bound to a loopback address: requests must name a loopback host.
    pub loopback: bool,
    pub journal_path: String,
}

pub type Resp = Response<BoxBody<Bytes, Infallible>>;

/// How often an idle event stream says it is alive (a client that went away is noticed then).
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Serves one connection on its own task.
pub fn spawn_connection(ctx: Arc<Ctx>, stream: tokio::net::TcpStream) {
    tokio::spawn(async move {
        let io = hyper_util::rt::TokioIo::new(stream);
        let svc = hyper::service::service_fn(move |req| {
            let ctx = Arc::clone(&ctx);
            async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .await;
    });
}

pub fn full(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(ctype) {
        h.insert(header::CONTENT_TYPE, v);
    }
    r
}

pub fn text(status: StatusCode, msg: &str) -> Resp {
    full(status, "text/plain; charset=utf-8", format!("{msg}\n"))
}

/// Headers every answer carries: nothing but this server may be loaded by a page, no page of
/// it may be framed, nothing is cached.
fn secure(mut r: Resp) -> Resp {
    let h = r.headers_mut();
    // An answer with a policy of its own (the timeline's SVG, with its inline style) keeps it.
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Whether the request's `Host` names this machine's loopback (`localhost`, `127.x`, `[::1]`).
fn loopback_host(req: &Request<Incoming>) -> bool {
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(n, _)| n).unwrap_or(host)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Percent-decodes a path segment; `None` when it is not UTF-8 or badly encoded.
fn decode(seg: &str) -> Option<String> {
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Compares in time independent of where the first difference is.
fn same_token(given: &[u8], want: &[u8]) -> bool {
    given.len() == want.len() && given.iter().zip(want).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Resp {
    if ctx.loopback && !loopback_host(&req) {
        return secure(text(
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers only requests to a loopback name (localhost, 127.0.0.1, [::1])",
        ));
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    let is_get = method == Method::GET || method == Method::HEAD;
    let r = match (parts.as_slice(), is_get) {
        (["runs", run, "abort"], _) => {
            let Some(run) = decode(run) else {
                return secure(text(StatusCode::BAD_REQUEST, "bad run id in the path"));
            };
            control(ctx, &req, &method, &run, &query, None).await
        }
        (["runs", run, "vms", vm, action @ ("skip" | "abort")], _) => {
            let (Some(run), Some(vm)) = (decode(run), decode(vm)) else {
                return secure(text(
                    StatusCode::BAD_REQUEST,
                    "bad run id or VM in the path",
                ));
            };
            let abort = *action == "abort";
            control(ctx, &req, &method, &run, &query, Some((&vm, abort))).await
        }
        (_, false) if method == Method::POST && ctx.token.is_none() => text(
            StatusCode::FORBIDDEN,
            "read-only: start `vmove serve --allow-control` to stop or abort runs from here",
        ),
        (_, false) => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD here");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        ([""], true) => match ctx.hub.runs().await {
            Ok(runs) => full(
                StatusCode::OK,
                "text/html; charset=utf-8",
                page::index(&runs, &ctx.journal_path),
            ),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot read the journal: {e:#}"),
            ),
        },
        (["metrics"], true) => metrics_page(ctx).await,
        (["assets", "app.js"], true) => full(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            page::APP_JS,
        ),
        (["assets", "style.css"], true) => {
            full(StatusCode::OK, "text/css; charset=utf-8", page::STYLE_CSS)
        }
        (["runs", run, rest @ ..], true) => {
            let Some(run) = decode(run) else {
                return secure(text(StatusCode::BAD_REQUEST, "bad run id in the path"));
            };
            match ctx.hub.tail(&run).await {
                Err(ReadError::UnknownRun) => text(
                    StatusCode::NOT_FOUND,
                    &format!("no run `{run}` in this journal"),
                ),
                Err(ReadError::Journal(e)) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot read run `{run}`: {e:#}"),
                ),
                Ok(tail) => run_route(ctx, &tail, rest).await,
            }
        }
        _ => text(StatusCode::NOT_FOUND, "nothing here"),
    };
    let r = secure(r);
    if method == Method::HEAD {
        let (parts, _) = r.into_parts();
        return Response::from_parts(parts, Full::new(Bytes::new()).boxed());
    }
    r
}

async fn run_route(ctx: &Ctx, tail: &Arc<Tail>, rest: &[&str]) -> Resp {
    match rest {
        [] | [""] => {
            let view = tail.view.lock().await;
            full(
                StatusCode::OK,
                "text/html; charset=utf-8",
                page::run(&view, ctx.token.is_some()),
            )
        }
        ["state.json"] => {
            let snap = tail.view.lock().await.snapshot();
            full(StatusCode::OK, "application/json", snap.to_string())
        }
        ["events"] => events(ctx, tail).await,
        ["timeline.svg"] => super::timeline_svg(ctx, tail).await,
        _ => text(StatusCode::NOT_FOUND, "nothing here"),
    }
}

async fn metrics_page(ctx: &Ctx) -> Resp {
    // The runs shown: every running run, and the newest run whatever its state.
    let runs = match ctx.hub.runs().await {
        Ok(r) => r,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot read the journal: {e:#}"),
            );
        }
    };
    let mut tails = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        if i == 0 || r.state == vmove_journal::RunState::Running {
            if let Ok(t) = ctx.hub.tail(&r.id).await {
                tails.push(t);
            }
        }
    }
    let mut guards = Vec::new();
    for t in &tails {
        guards.push(t.view.lock().await);
    }
    let views: Vec<&super::view::RunView> = guards.iter().map(|g| &**g).collect();
    let reads = ctx.hub.reads.load(std::sync::atomic::Ordering::Relaxed);
    full(
        StatusCode::OK,
        metrics::CONTENT_TYPE,
        metrics::render(&views, reads),
    )
}

async fn control(
    ctx: &Ctx,
    req: &Request<Incoming>,
    method: &Method,
    run: &str,
    query: &str,
    vm: Option<(&str, bool)>,
) -> Resp {
    if method != Method::POST {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "POST only");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let Some(token) = &ctx.token else {
        return text(
            StatusCode::FORBIDDEN,
            "read-only: start `vmove serve --allow-control` to stop or abort runs from here",
        );
    };
    let given = req
        .headers()
        .get("x-vmove-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if given.is_empty() {
        return text(
            StatusCode::UNAUTHORIZED,
            "no control token: send it in the X-Vmove-Token header",
        );
    }
    if !same_token(given, token.as_bytes()) {
        return text(StatusCode::FORBIDDEN, "wrong control token");
    }
    if let Some((vm, abort)) = vm {
        let action = if abort { "abort" } else { "skip" };
        return match ctx.hub.request_vm_stop(run, vm, abort, &who_asks()).await {
            Ok(name) => text(
                StatusCode::OK,
                &if abort {
                    format!("asked run {run} to abort the move of VM {name}")
                } else {
                    format!("asked run {run} to skip VM {name}")
                },
            ),
            Err(vmove_journal::JournalError::UnknownRun(_)) => text(
                StatusCode::NOT_FOUND,
                &format!("no run `{run}` in this journal"),
            ),
            Err(e @ vmove_journal::JournalError::UnknownVm { .. }) => {
                text(StatusCode::NOT_FOUND, &format!("cannot {action}: {e}"))
            }
            Err(e) => text(
                StatusCode::CONFLICT,
                &format!("cannot {action} VM `{vm}` of run `{run}`: {}", e.chain()),
            ),
        };
    }
    let now = query.split('&').any(|kv| kv == "now=1" || kv == "now=true");
    match ctx.hub.request_stop(run, now).await {
        Ok(()) => text(
            StatusCode::OK,
            &if now {
                format!("asked run {run} to stop and abort its running migrations")
            } else {
                format!("asked run {run} to stop starting moves; running ones finish")
            },
        ),
        Err(vmove_journal::JournalError::UnknownRun(_)) => text(
            StatusCode::NOT_FOUND,
            &format!("no run `{run}` in this journal"),
        ),
        Err(e) => text(
            StatusCode::CONFLICT,
            &format!("cannot ask run `{run}` to stop: {}", e.chain()),
        ),
    }
}

/// Who asks, for a per-VM stop's reason: the page's peer (the token holder) through this server.
fn who_asks() -> String {
    format!("vmove serve on {}", crate::output::hostname())
}

/// The body of an event stream: what the client's forwarding task sends.
struct Stream {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for Stream {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

fn sse(kind: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

/// `/runs/RUN/events`: the snapshot, then every delta of the run's one poller; a client that
/// fell behind gets a new snapshot.
async fn events(ctx: &Ctx, tail: &Arc<Tail>) -> Resp {
    let (snapshot, mut rx) = ctx.hub.subscribe(tail).await;
    let (tx, body_rx) = mpsc::channel::<Bytes>(16);
    let tail = Arc::clone(tail);
    tokio::spawn(async move {
        if tx
            .send(sse("snapshot", &snapshot.to_string()))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let next = tokio::select! {
                m = rx.recv() => m,
                () = tokio::time::sleep(KEEP_ALIVE) => {
                    if tx.send(Bytes::from_static(b": alive\n\n")).await.is_err() {
                        return;
                    }
                    continue;
                }
                () = tx.closed() => return,
            };
            let frame = match next {
                Ok(delta) => sse("delta", &delta),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    sse("snapshot", &tail.view.lock().await.snapshot().to_string())
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(Stream { rx: body_rx }.boxed());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r
}
