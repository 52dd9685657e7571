//! A stateful Hyper-V protocol fake (feature `test-util`): one WinRM HTTP listener per fake host
//! on 127.0.0.1, NTLM authentication through `sspi`'s server side, sealed messages, and the
//! WS-Management operations the driver uses (Enumerate/Pull with WQL, Get, Invoke).
//!
//! It is test code, but it is written to the wire format real hosts use (see
//! `docs/drivers/hyperv.md`), and an independent client (pypsrp) is run against it in the tests.

pub mod keytab;
mod migration;
pub mod model;
pub mod schema;
pub mod world;
pub mod wql;

use crate::cim::{ANONYMOUS, CimValue, NS_ADDRESSING, NS_CIM, NS_WSMAN, write_wsman_value};
use crate::wsman::Credentials;
use crate::wsman::sealing;
use crate::wsman::soap::{NS_ENUM, NS_SOAP, NS_WSMANFAULT};
use crate::xml::{Element, NS_XSI, esc};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
pub use model::{FakeCheckpoint, FakeDrive, FakePlanned, Locale};
use sspi::{
    AuthIdentity, BufferType, CredentialUse, CredentialsBuffers, DataRepresentation, KdcResolution,
    Kerberos, KerberosConfig, Ntlm, SecurityBuffer, SecurityStatus, ServerRequestFlags, Sspi,
    SspiImpl, Username,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
pub use world::{
    FakeHost, FakeJob, FakeJobError, FakeRegKey, FakeVm, FakeWmiError, Fault, Faults, World,
};

/// The fake: a shared world and one listener per host.
#[derive(Clone)]
pub struct FakeHyperV {
    world: Arc<Mutex<World>>,
    addrs: BTreeMap<String, SocketAddr>,
    tasks: Arc<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for FakeHyperV {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHyperV")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeHyperV {
    fn drop(&mut self) {
        if Arc::strong_count(&self.tasks) == 1 {
            for t in self.tasks.iter() {
                t.abort();
            }
        }
    }
}

struct ServerCtx {
    world: Arc<Mutex<World>>,
    host: String,
    user: String,
    password: String,
    tls: bool,
    /// This host's Kerberos service principal and key, and the client principal accepted.
    kerberos: Option<(keytab::KeytabEntry, String)>,
}

/// Kerberos for the fake: each host's `HTTP/<name>` key (from the KDC's keytab) and the one
/// client principal it accepts (`user@REALM`).
#[derive(Clone, Debug)]
pub struct FakeKerberos {
    /// Fake host -> its service key.
    pub services: BTreeMap<String, keytab::KeytabEntry>,
    /// The accepted client, `account@REALM` (compared case-insensitively).
    pub client: String,
}

impl FakeKerberos {
    /// Takes each host's key for its service principal (`HTTP/hv1.example`) from a keytab.
    pub fn from_keytab(
        path: &std::path::Path,
        client: &str,
        hosts: &[(&str, &str)],
    ) -> Result<FakeKerberos, String> {
        let entries = keytab::read(path)?;
        let mut services = BTreeMap::new();
        for (host, spn) in hosts {
            let want: Vec<&str> = spn.split('/').collect();
            let e = entries
                .iter()
                .filter(|e| {
                    e.components
                        .iter()
                        .map(String::as_str)
                        .eq(want.iter().copied())
                })
                .max_by_key(|e| e.kvno)
                .ok_or_else(|| format!("no key for {spn} in {}", path.display()))?;
            services.insert((*host).to_owned(), e.clone());
        }
        Ok(FakeKerberos {
            services,
            client: client.to_owned(),
        })
    }
}

impl FakeHyperV {
    /// Starts plain-HTTP listeners for every host already in `world`, accepting `creds` over
    /// NTLM with sealed messages (port 5985's behaviour).
    pub async fn start(world: World, creds: &Credentials) -> std::io::Result<FakeHyperV> {
        Self::start_inner(world, creds, None, None).await
    }

    /// Like [`FakeHyperV::start`], and each host also accepts Kerberos (raw krb5 GSS tokens under
    /// the `Negotiate` or `Kerberos` scheme, mutual authentication, sealed messages with either
    /// protocol) for its service principal, through `sspi`'s Kerberos server side.
    pub async fn start_with_kerberos(
        world: World,
        creds: &Credentials,
        kerberos: FakeKerberos,
    ) -> std::io::Result<FakeHyperV> {
        Self::start_inner(world, creds, None, Some(kerberos)).await
    }

    /// Starts HTTPS listeners (port 5986's behaviour) with the given certificate chain and key
    /// (DER), accepting `creds` over Basic and NTLM, messages not sealed.
    pub async fn start_tls(
        world: World,
        creds: &Credentials,
        chain: Vec<rustls_pki_types::CertificateDer<'static>>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
    ) -> std::io::Result<FakeHyperV> {
        Self::start_tls_inner(world, creds, chain, key, None).await
    }

    /// Like [`FakeHyperV::start_tls`], and each host also accepts Kerberos (messages not sealed:
    /// TLS protects them).
    pub async fn start_tls_with_kerberos(
        world: World,
        creds: &Credentials,
        chain: Vec<rustls_pki_types::CertificateDer<'static>>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
        kerberos: FakeKerberos,
    ) -> std::io::Result<FakeHyperV> {
        Self::start_tls_inner(world, creds, chain, key, Some(kerberos)).await
    }

    async fn start_tls_inner(
        world: World,
        creds: &Credentials,
        chain: Vec<rustls_pki_types::CertificateDer<'static>>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
        kerberos: Option<FakeKerberos>,
    ) -> std::io::Result<FakeHyperV> {
        let conf = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(std::io::Error::other)?;
        Self::start_inner(
            world,
            creds,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(conf))),
            kerberos,
        )
        .await
    }

    async fn start_inner(
        world: World,
        creds: &Credentials,
        tls: Option<tokio_rustls::TlsAcceptor>,
        kerberos: Option<FakeKerberos>,
    ) -> std::io::Result<FakeHyperV> {
        let hosts: Vec<String> = world.hosts.keys().cloned().collect();
        let world = Arc::new(Mutex::new(world));
        let mut addrs = BTreeMap::new();
        let mut tasks = Vec::new();
        for h in hosts {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            addrs.insert(h.clone(), listener.local_addr()?);
            let ctx = Arc::new(ServerCtx {
                world: world.clone(),
                user: creds.user.clone(),
                password: creds.password().to_owned(),
                tls: tls.is_some(),
                kerberos: kerberos
                    .as_ref()
                    .and_then(|k| k.services.get(&h).map(|e| (e.clone(), k.client.clone()))),
                host: h,
            });
            let tls = tls.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    {
                        let mut w = ctx.world.lock().unwrap_or_else(|p| p.into_inner());
                        *w.calls.connections.entry(ctx.host.clone()).or_default() += 1;
                    }
                    let ctx = ctx.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let conn = Arc::new(tokio::sync::Mutex::new(ConnState::default()));
                        let svc = hyper::service::service_fn(move |req| {
                            let ctx = ctx.clone();
                            let conn = conn.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(handle(&ctx, &conn, req).await)
                            }
                        });
                        let builder = hyper::server::conn::http1::Builder::new();
                        match tls {
                            Some(acceptor) => {
                                if let Ok(s) = acceptor.accept(stream).await {
                                    let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                                }
                            }
                            None => {
                                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                    });
                }
            }));
        }
        Ok(FakeHyperV {
            world,
            addrs,
            tasks: Arc::new(tasks),
        })
    }

    /// The listener of a host.
    pub fn addr(&self, host: &str) -> Option<SocketAddr> {
        self.addrs.get(host).copied()
    }

    /// Runs `f` on the world (under its lock).
    pub fn with<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut w)
    }

    /// Lets the virtual clock follow real time, `speed` times faster (for runs of the real CLI).
    pub fn run_clock(&self, speed: f64) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let step = Duration::from_millis(50);
            loop {
                tokio::time::sleep(step).await;
                me.advance(step.mul_f64(speed));
            }
        })
    }

    /// Advances the virtual clock and the jobs.
    pub fn advance(&self, d: Duration) {
        self.with(|w| {
            w.now_ms += d.as_millis() as u64;
            w.tick();
        });
    }
}

#[derive(Default)]
struct ConnState {
    ntlm: Option<Ntlm>,
    handle: Option<<Ntlm as SspiImpl>::CredentialsHandle>,
    krb: Option<Kerberos>,
    authed: bool,
}

fn resp(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r
}

fn unauthorized(token: Option<&[u8]>) -> Response<Full<Bytes>> {
    use base64::Engine as _;
    let mut r = resp(StatusCode::UNAUTHORIZED, Bytes::new());
    let v = match token {
        Some(t) => format!(
            "Negotiate {}",
            base64::engine::general_purpose::STANDARD.encode(t)
        ),
        None => "Negotiate".to_owned(),
    };
    if let Ok(hv) = header::HeaderValue::from_str(&v) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, hv);
    }
    r
}

async fn handle(
    ctx: &ServerCtx,
    conn: &tokio::sync::Mutex<ConnState>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    use base64::Engine as _;
    // Injected HTTP-level faults.
    let (status, hang) = {
        let mut w = ctx.world.lock().unwrap_or_else(|p| p.into_inner());
        let st = w
            .faults
            .http_status
            .get_mut(&ctx.host)
            .and_then(|q| q.pop_front());
        let hang = match w.faults.hang.get_mut(&ctx.host) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        };
        (st, hang)
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if let Some(st) = status {
        let code = StatusCode::from_u16(st).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return if code == StatusCode::UNAUTHORIZED {
            unauthorized(None)
        } else {
            resp(code, Bytes::new())
        };
    }
    if req.uri().path() != "/wsman" {
        return resp(StatusCode::NOT_FOUND, Bytes::new());
    }
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return resp(StatusCode::BAD_REQUEST, Bytes::new()),
    };
    let mut st = conn.lock().await;
    let mut basic_ok = false;
    if let Some(b) = auth.as_deref().and_then(|a| a.strip_prefix("Basic ")) {
        // Basic is accepted on HTTPS only, as WinRM does by default.
        let want = format!("{}:{}", ctx.user, ctx.password);
        let got = base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .unwrap_or_default();
        if !ctx.tls || got != want.as_bytes() {
            return unauthorized(None);
        }
        basic_ok = true;
    } else if let Some(a) = auth {
        let token = a
            .strip_prefix("Negotiate ")
            .or_else(|| a.strip_prefix("Kerberos "))
            .or_else(|| a.strip_prefix("NTLM "))
            .and_then(|t| {
                base64::engine::general_purpose::STANDARD
                    .decode(t.trim())
                    .ok()
            });
        let Some(token) = token else {
            return unauthorized(None);
        };
        if token.first() == Some(&0x60) {
            // A GSS-API krb5 token (AP-REQ).
            match kerberos_step(ctx, &mut st, token) {
                Ok(ap_rep) => {
                    let mut r = resp(StatusCode::OK, Bytes::new());
                    let v = format!(
                        "Negotiate {}",
                        base64::engine::general_purpose::STANDARD.encode(ap_rep)
                    );
                    if let Ok(hv) = header::HeaderValue::from_str(&v) {
                        r.headers_mut().insert(header::WWW_AUTHENTICATE, hv);
                    }
                    if body.is_empty() {
                        return r;
                    }
                    // WinRM refuses a message sent in clear with the first token over HTTP.
                    return resp(StatusCode::BAD_REQUEST, Bytes::new());
                }
                Err(e) => {
                    tracing::debug!("fake Kerberos refused: {e}");
                    *st = ConnState::default();
                    return unauthorized(None);
                }
            }
        }
        match ntlm_step(ctx, &mut st, token) {
            Ok(Some(challenge)) => return unauthorized(Some(&challenge)),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!("fake NTLM refused: {e}");
                *st = ConnState::default();
                return unauthorized(None);
            }
        }
    }
    if !st.authed && !basic_ok {
        return unauthorized(None);
    }
    if body.is_empty() {
        return resp(StatusCode::OK, Bytes::new());
    }
    if ctx.tls && !content_type.starts_with("multipart/encrypted") {
        let text = String::from_utf8_lossy(&body).into_owned();
        let (code, answer) = dispatch(ctx, &text);
        let mut r = resp(code, Bytes::from(answer));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/soap+xml;charset=UTF-8"),
        );
        return r;
    }
    let Some(protocol) = sealing::protocol_of(&content_type) else {
        // AllowUnencrypted=false, as on a real host.
        return resp(StatusCode::BAD_REQUEST, Bytes::new());
    };
    {
        let mut w = ctx.world.lock().unwrap_or_else(|p| p.into_inner());
        *w.calls.sealed.entry(protocol.to_owned()).or_default() += 1;
        if let Some(n) = sealing::header_len(&body) {
            w.calls
                .sealed_header_lens
                .entry(protocol.to_owned())
                .or_default()
                .insert(n);
        }
    }
    let st = &mut *st;
    let unsealed = match (st.krb.as_mut(), st.ntlm.as_mut()) {
        (Some(k), _) => sealing::unseal(k, &body),
        (None, Some(n)) => sealing::unseal(n, &body),
        (None, None) => return unauthorized(None),
    };
    let plain = match unsealed {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!("fake cannot unseal: {e}");
            return resp(StatusCode::BAD_REQUEST, Bytes::new());
        }
    };
    let text = String::from_utf8_lossy(&plain).into_owned();
    let (code, answer) = dispatch(ctx, &text);
    let sealed = match (st.krb.as_mut(), st.ntlm.as_mut()) {
        (Some(k), _) => sealing::seal(k, protocol, answer.as_bytes()),
        (None, Some(n)) => sealing::seal(n, protocol, answer.as_bytes()),
        (None, None) => return unauthorized(None),
    };
    match sealed {
        Ok(mut sealed) => {
            let bare = ctx
                .world
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .faults
                .bare_final_boundary;
            if bare {
                // The closing boundary without its `--`, as pywinrm wrote it for years
                // (winrm/encryption.py `_encrypt_message`) and as pywinrm and pypsrp accept it
                // from a server (`_decrypt_response`, `unwrap_message`).
                let closed = b"--Encrypted Boundary--\r\n";
                if sealed.ends_with(closed) {
                    sealed.truncate(sealed.len() - closed.len());
                    sealed.extend_from_slice(b"--Encrypted Boundary\r\n");
                }
            }
            let mut r = resp(code, Bytes::from(sealed));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(sealing::content_type(protocol)),
            );
            r
        }
        Err(_) => resp(StatusCode::INTERNAL_SERVER_ERROR, Bytes::new()),
    }
}

/// Accepts a Kerberos AP-REQ for this host's service principal with the keytab's key (sspi's
/// Kerberos server: ticket and authenticator decrypted and checked, replay cache, clock skew),
/// checks the client principal, and returns the AP-REP (mutual authentication).
fn kerberos_step(ctx: &ServerCtx, st: &mut ConnState, token: Vec<u8>) -> Result<Vec<u8>, String> {
    let Some((service, client)) = &ctx.kerberos else {
        return Err("this fake host does not accept Kerberos".into());
    };
    let sname: Vec<&str> = service.components.iter().map(String::as_str).collect();
    let props = sspi::kerberos::ServerProperties::new(
        &sname,
        None,
        Duration::from_secs(300),
        Some(service.key.clone().into()),
    )
    .map_err(|e| e.to_string())?;
    let config = KerberosConfig {
        kdc_resolution: KdcResolution::KdcUrl(None),
        client_computer_name: ctx.host.clone(),
    };
    let mut krb = Kerberos::new_server_from_config(config, props).map_err(|e| e.to_string())?;
    let mut handle: Option<CredentialsBuffers> = None;
    let mut input = vec![SecurityBuffer::new(token, BufferType::Token)];
    let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
    let builder = krb
        .accept_security_context()
        .with_credentials_handle(&mut handle)
        .with_context_requirements(
            ServerRequestFlags::MUTUAL_AUTH
                | ServerRequestFlags::CONFIDENTIALITY
                | ServerRequestFlags::INTEGRITY,
        )
        .with_target_data_representation(DataRepresentation::Native)
        .with_input(&mut input)
        .with_output(&mut output);
    let status = krb
        .accept_security_context_impl(builder)
        .and_then(|mut g| g.resolve_to_result())
        .map_err(|e| e.to_string())?
        .status;
    if status != SecurityStatus::Ok {
        return Err(format!("unexpected Kerberos status {status:?}"));
    }
    let names = krb.query_context_names().map_err(|e| e.to_string())?;
    let got = format!(
        "{}@{}",
        names.username.account_name(),
        crate::wsman::kerberos::realm_of(&names.username)
            .unwrap_or("")
            .to_uppercase()
    );
    if !got.eq_ignore_ascii_case(client) {
        return Err(format!("unknown Kerberos client {got}"));
    }
    {
        let mut w = ctx.world.lock().unwrap_or_else(|p| p.into_inner());
        w.calls.kerberos_logons.push((ctx.host.clone(), got));
    }
    st.krb = Some(krb);
    st.ntlm = None;
    st.authed = true;
    Ok(std::mem::take(&mut output[0].buffer))
}

/// One NTLM step: `Some(challenge)` after a NEGOTIATE, `None` once authenticated.
fn ntlm_step(
    ctx: &ServerCtx,
    st: &mut ConnState,
    token: Vec<u8>,
) -> Result<Option<Vec<u8>>, String> {
    let is_negotiate = token.len() > 12 && &token[..8] == b"NTLMSSP\0" && token[8] == 1;
    if is_negotiate || st.ntlm.is_none() {
        let username = Username::parse(&ctx.user).map_err(|e| e.to_string())?;
        let identity = AuthIdentity {
            username,
            password: ctx.password.clone().into(),
        };
        let mut ntlm = Ntlm::new();
        let handle = ntlm
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Inbound)
            .with_auth_data(&identity)
            .execute(&mut ntlm)
            .map_err(|e| e.to_string())?
            .credentials_handle;
        st.ntlm = Some(ntlm);
        st.handle = Some(handle);
        st.krb = None;
        st.authed = false;
    }
    let (Some(ntlm), Some(handle)) = (st.ntlm.as_mut(), st.handle.as_mut()) else {
        return Err("no context".into());
    };
    let mut input = vec![SecurityBuffer::new(token, BufferType::Token)];
    let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
    let builder = ntlm
        .accept_security_context()
        .with_credentials_handle(handle)
        .with_context_requirements(ServerRequestFlags::ALLOCATE_MEMORY)
        .with_target_data_representation(DataRepresentation::Native)
        .with_input(&mut input)
        .with_output(&mut output);
    let status = ntlm
        .accept_security_context_impl(builder)
        .and_then(|mut g| g.resolve_to_result())
        .map_err(|e| e.to_string())?
        .status;
    match status {
        SecurityStatus::ContinueNeeded => Ok(Some(std::mem::take(&mut output[0].buffer))),
        SecurityStatus::CompleteNeeded
        | SecurityStatus::CompleteAndContinue
        | SecurityStatus::Ok => {
            if matches!(
                status,
                SecurityStatus::CompleteNeeded | SecurityStatus::CompleteAndContinue
            ) {
                ntlm.complete_auth_token(&mut output)
                    .map_err(|e| e.to_string())?;
            }
            // sspi checks the password; check the account name too.
            let names = ntlm.query_context_names().map_err(|e| e.to_string())?;
            let want = Username::parse(&ctx.user).map_err(|e| e.to_string())?;
            if !names
                .username
                .account_name()
                .eq_ignore_ascii_case(want.account_name())
            {
                return Err("unknown user".into());
            }
            st.authed = true;
            Ok(None)
        }
        other => Err(format!("unexpected NTLM status {other:?}")),
    }
}

fn envelope(action: &str, relates_to: &str, body: &str) -> String {
    format!(
        "<s:Envelope xmlns:s=\"{NS_SOAP}\" xmlns:a=\"{NS_ADDRESSING}\" xmlns:n=\"{NS_ENUM}\" xmlns:w=\"{NS_WSMAN}\" xmlns:xsi=\"{NS_XSI}\" xmlns:cim=\"{NS_CIM}\" xml:lang=\"en-US\">\
<s:Header><a:To>{ANONYMOUS}</a:To><a:Action>{}</a:Action><a:MessageID>uuid:{}</a:MessageID><a:RelatesTo>{}</a:RelatesTo></s:Header>\
<s:Body>{body}</s:Body></s:Envelope>",
        esc(action),
        uuid::Uuid::new_v4().to_string().to_uppercase(),
        esc(relates_to)
    )
}

fn fault_envelope(relates_to: &str, f: &Fault) -> String {
    let sender = if f.subcode == "w:TimedOut" {
        "s:Receiver"
    } else {
        "s:Sender"
    };
    let body = format!(
        "<s:Fault><s:Code><s:Value>{sender}</s:Value><s:Subcode><s:Value>{}</s:Value></s:Subcode></s:Code>\
<s:Reason><s:Text xml:lang=\"en-US\">{}</s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f=\"{NS_WSMANFAULT}\" Code=\"{}\" Machine=\"fake\"><f:Message>{}</f:Message></f:WSManFault></s:Detail></s:Fault>",
        esc(&f.subcode),
        esc(&f.reason),
        f.code,
        esc(&f.reason)
    );
    envelope(
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
        relates_to,
        &body,
    )
}

/// A WMI provider error as WinRM answers it (see [`FakeWmiError`]).
fn wmi_fault_envelope(relates_to: &str, e: &FakeWmiError) -> String {
    let body = format!(
        "<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:InternalError</s:Value></s:Subcode></s:Code>\
<s:Reason><s:Text xml:lang=\"en-US\">{msg} </s:Text></s:Reason><s:Detail>\
<p:MSFT_WmiError b:IsCIM_Error=\"true\" xmlns:b=\"http://schemas.dmtf.org/wbem/wsman/1/cimbinding.xsd\" xmlns:p=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/MSFT_WmiError\" xsi:type=\"p:MSFT_WmiError_Type\">\
<p:CIMStatusCode xsi:type=\"cim:cimUnsignedInt\">{cim}</p:CIMStatusCode>\
<p:CIMStatusCodeDescription xsi:type=\"cim:cimString\" xsi:nil=\"true\"/>\
<p:ErrorType xsi:type=\"cim:cimUnsignedShort\">0</p:ErrorType>\
<p:Message xsi:type=\"cim:cimString\">{msg} </p:Message>\
<p:MessageID xsi:type=\"cim:cimString\">HRESULT 0x{code:08x}</p:MessageID>\
<p:error_Category xsi:type=\"cim:cimUnsignedInt\">30</p:error_Category>\
<p:error_Code xsi:type=\"cim:cimUnsignedInt\">{code}</p:error_Code>\
<p:error_Type xsi:type=\"cim:cimString\">HRESULT</p:error_Type>\
<p:error_WindowsErrorMessage xsi:type=\"cim:cimString\" xsi:nil=\"true\"/>\
</p:MSFT_WmiError></s:Detail></s:Fault>",
        msg = esc(&e.message),
        cim = e.cim_status,
        code = e.code,
    );
    envelope(
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
        relates_to,
        &body,
    )
}

fn split_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix(crate::cim::WMI_BASE)?;
    let (ns, class) = rest.rsplit_once('/')?;
    Some((ns.to_owned(), class.to_owned()))
}

fn write_items(out: &mut String, items: &[crate::cim::CimInstance], ns: &str) {
    for i in items {
        out.push_str("<w:Item>");
        out.push_str(&i.to_wsman(ns));
        if let Some(e) = &i.epr {
            out.push_str("<a:EndpointReference>");
            e.write_children(out);
            out.push_str("</a:EndpointReference>");
        }
        out.push_str("</w:Item>");
    }
}

/// Handles one plain SOAP request; returns the HTTP status and the answer.
fn dispatch(ctx: &ServerCtx, text: &str) -> (StatusCode, String) {
    let env = match crate::xml::parse(text) {
        Ok(e) => e,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                fault_envelope(
                    "",
                    &Fault {
                        subcode: "w:SchemaValidationError".into(),
                        code: 2_150_858_817,
                        reason: e.to_string(),
                    },
                ),
            );
        }
    };
    let hdr = env.child_ns(NS_SOAP, "Header").cloned().unwrap_or_default();
    let body = env.child_ns(NS_SOAP, "Body").cloned().unwrap_or_default();
    let h = |n: &str| {
        hdr.child(n)
            .map(|e| e.text_trimmed().to_owned())
            .unwrap_or_default()
    };
    let (action, uri, mid) = (h("Action"), h("ResourceURI"), h("MessageID"));
    let selectors: Vec<(String, String)> = hdr
        .child("SelectorSet")
        .map(|ss| {
            ss.children_named("Selector")
                .map(|s| {
                    (
                        s.attr("Name").unwrap_or("").to_owned(),
                        s.text_trimmed().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let injected = ctx
        .world
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .faults
        .wmi_error
        .get_mut(&ctx.host)
        .and_then(|q| q.pop_front());
    if let Some(e) = injected {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            wmi_fault_envelope(&mid, &e),
        );
    }
    let result = dispatch_inner(ctx, &action, &uri, &selectors, &body);
    match result {
        Ok((resp_action, resp_body)) => (StatusCode::OK, envelope(&resp_action, &mid, &resp_body)),
        Err(f) => (StatusCode::INTERNAL_SERVER_ERROR, fault_envelope(&mid, &f)),
    }
}

fn dispatch_inner(
    ctx: &ServerCtx,
    action: &str,
    uri: &str,
    selectors: &[(String, String)],
    body: &Element,
) -> Result<(String, String), Fault> {
    let mut w = ctx.world.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = w.faults.timeout_fault.get_mut(&ctx.host) {
        if *n > 0 {
            *n -= 1;
            return Err(Fault {
                subcode: "w:TimedOut".into(),
                code: crate::wsman::soap::CODE_OPERATION_TIMEOUT,
                reason: "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.".into(),
            });
        }
    }
    let (ns, class) = split_uri(uri).ok_or_else(|| Fault {
        subcode: "w:DestinationUnreachable".into(),
        code: 2_150_858_770,
        reason: format!("unknown resource URI {uri}"),
    })?;
    match action {
        crate::wsman::soap::ACTION_ENUMERATE => {
            let en = body.child("Enumerate").ok_or_else(|| Fault {
                subcode: "w:SchemaValidationError".into(),
                code: 2_150_858_817,
                reason: "no Enumerate".into(),
            })?;
            let filter = en.child("Filter");
            let epr_mode = en
                .child("EnumerationMode")
                .is_some_and(|m| m.text_trimmed() == "EnumerateObjectAndEPR");
            let max = en
                .child("MaxElements")
                .and_then(|m| m.text_trimmed().parse::<usize>().ok())
                .unwrap_or(1);
            let optimize = en.child("OptimizeEnumeration").is_some();
            let mut items = match filter {
                Some(f) => {
                    if class != "*" {
                        // Real hosts fault a WQL filter on a class URI.
                        return Err(Fault {
                            subcode: "w:CannotProcessFilter".into(),
                            code: 2_150_858_752,
                            reason: "A WQL filter needs the wildcard resource URI".into(),
                        });
                    }
                    w.query(&ctx.host, &ns, &f.text)?
                }
                None => {
                    if class == "*" {
                        return Err(Fault {
                            subcode: "w:InvalidParameter".into(),
                            code: 2_150_858_778,
                            reason: "the wildcard URI needs a filter".into(),
                        });
                    }
                    w.query(&ctx.host, &ns, &format!("SELECT * FROM {class}"))?
                }
            };
            if !epr_mode {
                for i in items.iter_mut() {
                    i.epr = None;
                }
            }
            let page = w.page_size.min(max.max(1));
            let first: Vec<_> = if optimize {
                items.drain(..page.min(items.len())).collect()
            } else {
                Vec::new()
            };
            let ctx_id = format!("uuid:{}", uuid::Uuid::new_v4().to_string().to_uppercase());
            let mut out = String::from("<n:EnumerateResponse>");
            let end = items.is_empty();
            if !end {
                w.enumerations.insert(ctx_id.clone(), items.into());
                let _ = write!(out, "<n:EnumerationContext>{ctx_id}</n:EnumerationContext>");
            }
            if optimize {
                out.push_str("<w:Items>");
                write_items(&mut out, &first, &ns_of_items(&ns));
                out.push_str("</w:Items>");
                if end {
                    out.push_str("<w:EndOfSequence/>");
                }
            }
            out.push_str("</n:EnumerateResponse>");
            Ok((
                "http://schemas.xmlsoap.org/ws/2004/09/enumeration/EnumerateResponse".into(),
                out,
            ))
        }
        crate::wsman::soap::ACTION_PULL => {
            let pull = body.child("Pull").ok_or_else(|| Fault {
                subcode: "w:SchemaValidationError".into(),
                code: 2_150_858_817,
                reason: "no Pull".into(),
            })?;
            let ctx_id = pull
                .child("EnumerationContext")
                .map(|c| c.text_trimmed().to_owned())
                .unwrap_or_default();
            let max = pull
                .child("MaxElements")
                .and_then(|m| m.text_trimmed().parse::<usize>().ok())
                .unwrap_or(1);
            let page = w.page_size.min(max.max(1));
            let mut rest = w.enumerations.remove(&ctx_id).ok_or_else(|| Fault {
                subcode: "n:InvalidEnumerationContext".into(),
                code: 2_150_858_797,
                reason: "unknown enumeration context".into(),
            })?;
            let items: Vec<_> = rest.drain(..page.min(rest.len())).collect();
            let mut out = String::from("<n:PullResponse>");
            let end = rest.is_empty();
            if !end {
                w.enumerations.insert(ctx_id.clone(), rest);
                let _ = write!(out, "<n:EnumerationContext>{ctx_id}</n:EnumerationContext>");
            }
            out.push_str("<n:Items>");
            write_items(&mut out, &items, &ns_of_items(&ns));
            out.push_str("</n:Items>");
            if end {
                out.push_str("<n:EndOfSequence/>");
            }
            out.push_str("</n:PullResponse>");
            Ok((
                "http://schemas.xmlsoap.org/ws/2004/09/enumeration/PullResponse".into(),
                out,
            ))
        }
        crate::wsman::soap::ACTION_RELEASE => Ok((
            "http://schemas.xmlsoap.org/ws/2004/09/enumeration/ReleaseResponse".into(),
            String::new(),
        )),
        crate::wsman::soap::ACTION_GET => {
            let inst = w.get(&ctx.host, &ns, &class, selectors)?;
            Ok((
                "http://schemas.xmlsoap.org/ws/2004/09/transfer/GetResponse".into(),
                inst.to_wsman(&ns),
            ))
        }
        a if a.starts_with(uri) && a.len() > uri.len() + 1 => {
            let method = &a[uri.len() + 1..];
            let input_name = format!("{method}_INPUT");
            let input = body.child(&input_name).cloned().unwrap_or_default();
            let out_params = w.invoke(&ctx.host, &class, method, selectors, &input)?;
            let mut out = String::new();
            let _ = write!(
                out,
                "<p:{method}_OUTPUT xmlns:p=\"{}\" xmlns:xsi=\"{NS_XSI}\" xmlns:cim=\"{NS_CIM}\" xmlns:a=\"{NS_ADDRESSING}\" xmlns:w=\"{NS_WSMAN}\">",
                esc(uri)
            );
            for (n, v) in &out_params {
                match v {
                    // Output references are written without xsi:type, as Hyper-V does.
                    CimValue::Ref(e) => {
                        let _ = write!(out, "<p:{n}>");
                        e.write_children(&mut out);
                        let _ = write!(out, "</p:{n}>");
                    }
                    v => write_wsman_value(&mut out, n, v),
                }
            }
            let _ = write!(out, "</p:{method}_OUTPUT>");
            Ok((format!("{a}Response"), out))
        }
        _ => Err(Fault {
            subcode: "w:ActionNotSupported".into(),
            code: 2_150_858_909,
            reason: format!("action {action} is not supported"),
        }),
    }
}

fn ns_of_items(ns: &str) -> String {
    ns.to_owned()
}
