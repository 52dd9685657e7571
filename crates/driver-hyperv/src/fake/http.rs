//! The fake's HTTP side: one connection's authentication (NTLM through `sspi`'s server side,
//! or Kerberos with a keytab's service key), its sealed messages, and the hand-over of each
//! request's SOAP text to the dispatcher.

use super::dispatch::{ServerCtx, dispatch};
use crate::wsman::sealing;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode, header};
use sspi::{
    AuthIdentity, BufferType, CredentialUse, CredentialsBuffers, DataRepresentation, KdcResolution,
    Kerberos, KerberosConfig, Ntlm, SecurityBuffer, SecurityStatus, ServerRequestFlags, Sspi,
    SspiImpl, Username,
};
use std::time::Duration;

#[derive(Default)]
pub(super) struct ConnState {
    ntlm: Option<Ntlm>,
    handle: Option<<Ntlm as SspiImpl>::CredentialsHandle>,
    krb: Option<Kerberos>,
    authed: bool,
}

pub(super) fn resp(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r
}

pub(super) fn unauthorized(token: Option<&[u8]>) -> Response<Full<Bytes>> {
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

pub(super) async fn handle(
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
pub(super) fn kerberos_step(
    ctx: &ServerCtx,
    st: &mut ConnState,
    token: Vec<u8>,
) -> Result<Vec<u8>, String> {
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
pub(super) fn ntlm_step(
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
