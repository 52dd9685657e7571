//! One HTTP/1.1 connection to a WinRM listener: TCP (or TLS via rustls), authentication, and
//! sealing. NTLM binds its security context to the TCP connection, so a [`Connection`] is one
//! socket and one context for its whole life; if it breaks, the client opens a new one.

use super::creds::Credentials;
#[cfg(feature = "kerberos")]
use super::kerberos::KerberosClient;
use super::sealing;
use super::transport::{
    AuthMethod, MAX_CA_FILE_BYTES, Scheme, TlsOptions, TransportConfig, TransportError,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
#[cfg(feature = "kerberos")]
use sspi::Kerberos;
use sspi::{
    AuthIdentity, BufferType, ClientRequestFlags, CredentialUse, DataRepresentation, Ntlm,
    SecurityBuffer, SecurityStatus, Sspi, SspiImpl, Username,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The security context of an authenticated connection.
enum SecCtx {
    Ntlm(Box<Ntlm>),
    #[cfg(feature = "kerberos")]
    Kerberos(Box<Kerberos>),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One authenticated connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    endpoint: String,
    host_header: String,
    ctx: Option<SecCtx>,
    protocol: &'static str,
    basic: Option<String>,
    seal: bool,
    request_timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("endpoint", &self.endpoint)
            .field("sealed", &self.seal)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

fn tls_config(opts: &TlsOptions, endpoint: &str) -> Result<rustls::ClientConfig, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Tls {
            endpoint: endpoint.into(),
            reason: e.to_string(),
        })?;
    if opts.insecure_skip_verify {
        tracing::warn!(
            endpoint,
            "TLS certificate verification is OFF (insecure_skip_verify)"
        );
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(ca) = &opts.ca_file {
        let tls = |reason: String| TransportError::Tls {
            endpoint: endpoint.into(),
            reason,
        };
        for cert in ca_certificates(ca).map_err(tls)? {
            roots.add(cert).map_err(|e| {
                tls(format!(
                    "the CA file `{}` holds a certificate rustls refuses: {e}",
                    ca.display()
                ))
            })?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// The certificates of a `ca_file`: read through the one bounded, kind-checked read
/// (`vmove_driver::files::read_regular_file_bounded`, at most [`MAX_CA_FILE_BYTES`]: a FIFO,
/// a device or a folder is refused by what it is before anything is read from it, a larger
/// file by its size), then parsed as PEM; a file with no certificate in it is refused too (a
/// DER file trusted nothing, silently). Each error names the file and what is wrong.
fn ca_certificates(
    ca: &std::path::Path,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let (_, bytes) = vmove_driver::files::read_regular_file_bounded(ca, MAX_CA_FILE_BYTES)
        .map_err(|e| e.describe("CA file", ca, MAX_CA_FILE_BYTES, ": it is not a CA bundle"))?;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&bytes)
        .map(|c| c.map(|c| c.into_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "the CA file `{}` holds a certificate that cannot be read: {e}",
                ca.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "the CA file `{}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
            ca.display()
        ));
    }
    Ok(certs)
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Builds a client NTLM context for the credentials.
fn ntlm_identity(creds: &Credentials) -> Result<AuthIdentity, String> {
    let username = Username::parse(&creds.user).map_err(|e| format!("bad user name: {e}"))?;
    Ok(AuthIdentity {
        username,
        password: creds.password().to_owned().into(),
    })
}

fn www_auth_token(resp_headers: &hyper::HeaderMap) -> Option<Vec<u8>> {
    use base64::Engine as _;
    for v in resp_headers.get_all(header::WWW_AUTHENTICATE) {
        let s = v.to_str().ok()?;
        for part in s.split(',') {
            let part = part.trim();
            let rest = part
                .strip_prefix("Negotiate ")
                .or_else(|| part.strip_prefix("Kerberos "))
                .or_else(|| part.strip_prefix("NTLM "));
            if let Some(tok) = rest {
                return base64::engine::general_purpose::STANDARD
                    .decode(tok.trim())
                    .ok();
            }
        }
    }
    None
}

impl Connection {
    /// Connects, sets up TLS if asked, and authenticates.
    pub async fn open(
        cfg: &TransportConfig,
        creds: &Credentials,
    ) -> Result<Connection, TransportError> {
        let endpoint = cfg.endpoint();
        let secs = cfg.connect_timeout.as_secs();
        match tokio::time::timeout(
            cfg.connect_timeout,
            Self::open_inner(cfg, creds, endpoint.clone()),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout { endpoint, secs }),
        }
    }

    async fn open_inner(
        cfg: &TransportConfig,
        creds: &Credentials,
        endpoint: String,
    ) -> Result<Connection, TransportError> {
        if cfg.auth == AuthMethod::Basic && cfg.scheme == Scheme::Http {
            return Err(TransportError::Unsupported(
                "Basic authentication over plain HTTP would send the password in clear; use HTTPS"
                    .into(),
            ));
        }
        let tcp = TcpStream::connect((cfg.host.as_str(), cfg.port))
            .await
            .map_err(|source| TransportError::Connect {
                endpoint: endpoint.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match cfg.scheme {
            Scheme::Http => Box::new(tcp),
            Scheme::Https => {
                let conf = tls_config(&cfg.tls, &endpoint)?;
                let name =
                    rustls_pki_types::ServerName::try_from(cfg.host.clone()).map_err(|e| {
                        TransportError::Tls {
                            endpoint: endpoint.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                let tls = tokio_rustls::TlsConnector::from(Arc::new(conf))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| TransportError::Tls {
                        endpoint: endpoint.clone(),
                        reason: e.to_string(),
                    })?;
                Box::new(tls)
            }
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| TransportError::Http {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
                before_send: true,
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("WinRM connection closed: {e}");
            }
        });
        let host_header = format!("{}:{}", cfg.host, cfg.port);
        let mut c = Connection {
            sender,
            endpoint,
            host_header,
            ctx: None,
            protocol: sealing::PROTOCOL,
            basic: None,
            seal: cfg.scheme == Scheme::Http,
            request_timeout: cfg.request_timeout,
        };
        match cfg.auth {
            AuthMethod::Basic => {
                use base64::Engine as _;
                let raw = format!("{}:{}", creds.user, creds.password());
                c.basic = Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ));
            }
            #[cfg(not(feature = "kerberos"))]
            _ if cfg.uses_kerberos() => return Err(super::transport::kerberos_not_built()),
            #[cfg(feature = "kerberos")]
            _ if cfg.uses_kerberos() => {
                let scheme = if cfg.auth == AuthMethod::Kerberos {
                    c.protocol = sealing::PROTOCOL_KERBEROS;
                    "Kerberos"
                } else {
                    "Negotiate"
                };
                c.kerberos_handshake(cfg, creds, scheme).await?
            }
            AuthMethod::Negotiate | AuthMethod::Ntlm | AuthMethod::Kerberos => {
                c.ntlm_handshake(creds).await?
            }
        }
        Ok(c)
    }

    /// An empty POST carrying one authentication token (`Authorization: <scheme> <base64>`), as
    /// the NTLM and Kerberos handshakes send before any SOAP body.
    fn auth_request(
        &self,
        scheme: &str,
        token: &[u8],
    ) -> Result<Request<Full<Bytes>>, TransportError> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        Request::post("/wsman")
            .header(header::HOST, &self.host_header)
            .header(
                header::AUTHORIZATION,
                format!("{scheme} {}", b64.encode(token)),
            )
            .header(header::CONTENT_LENGTH, "0")
            .header(header::USER_AGENT, "vmove")
            .body(Full::new(Bytes::new()))
            .map_err(|e| TransportError::Http {
                endpoint: self.endpoint.clone(),
                reason: e.to_string(),
                before_send: true,
            })
    }

    async fn ntlm_handshake(&mut self, creds: &Credentials) -> Result<(), TransportError> {
        let endpoint = self.endpoint.clone();
        let auth_err = |reason: String| TransportError::Auth {
            endpoint: endpoint.clone(),
            reason,
        };
        let identity = ntlm_identity(creds).map_err(auth_err)?;
        let mut ntlm = Ntlm::new();
        let mut handle = ntlm
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Outbound)
            .with_auth_data(&identity)
            .execute(&mut ntlm)
            .map_err(|e| TransportError::Auth {
                endpoint: self.endpoint.clone(),
                reason: e.to_string(),
            })?
            .credentials_handle;
        let flags = ClientRequestFlags::CONFIDENTIALITY
            | ClientRequestFlags::INTEGRITY
            | ClientRequestFlags::ALLOCATE_MEMORY;
        let target = format!("WSMAN/{}", self.host_header.split(':').next().unwrap_or(""));
        let mut input: Option<Vec<u8>> = None;
        loop {
            let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
            let mut in_bufs = input
                .take()
                .map(|t| vec![SecurityBuffer::new(t, BufferType::Token)])
                .unwrap_or_default();
            let status = {
                let mut builder = ntlm
                    .initialize_security_context()
                    .with_credentials_handle(&mut handle)
                    .with_context_requirements(flags)
                    .with_target_data_representation(DataRepresentation::Native)
                    .with_target_name(&target)
                    .with_output(&mut output);
                if !in_bufs.is_empty() {
                    builder = builder.with_input(&mut in_bufs);
                }
                ntlm.initialize_security_context_impl(&mut builder)
                    .and_then(|mut g| g.resolve_to_result())
                    .map_err(|e| TransportError::Auth {
                        endpoint: self.endpoint.clone(),
                        reason: e.to_string(),
                    })?
                    .status
            };
            if matches!(
                status,
                SecurityStatus::CompleteAndContinue | SecurityStatus::CompleteNeeded
            ) {
                ntlm.complete_auth_token(&mut output)
                    .map_err(|e| TransportError::Auth {
                        endpoint: self.endpoint.clone(),
                        reason: e.to_string(),
                    })?;
            }
            let token = std::mem::take(&mut output[0].buffer);
            let req = self.auth_request("Negotiate", &token)?;
            let (status_code, headers, _) = self.send(req).await?;
            let continue_needed = matches!(status, SecurityStatus::ContinueNeeded);
            if continue_needed {
                if status_code != StatusCode::UNAUTHORIZED {
                    return Err(auth_err(format!(
                        "expected a challenge, got HTTP {status_code}"
                    )));
                }
                match www_auth_token(&headers) {
                    Some(t) => input = Some(t),
                    None => return Err(auth_err("the host sent no Negotiate challenge".into())),
                }
            } else {
                if status_code == StatusCode::UNAUTHORIZED {
                    return Err(TransportError::Unauthorized {
                        endpoint: self.endpoint.clone(),
                    });
                }
                break;
            }
        }
        self.ctx = Some(SecCtx::Ntlm(Box::new(ntlm)));
        Ok(())
    }

    /// Kerberos: AS and TGS exchanges with the KDC, the AP-REQ to the listener on an empty POST,
    /// and the listener's AP-REP (mutual authentication) checked from the 200 answer.
    #[cfg(feature = "kerberos")]
    async fn kerberos_handshake(
        &mut self,
        cfg: &TransportConfig,
        creds: &Credentials,
        scheme: &str,
    ) -> Result<(), TransportError> {
        let endpoint = self.endpoint.clone();
        let auth_err = |reason: String| TransportError::Auth {
            endpoint: endpoint.clone(),
            reason,
        };
        let mut krb = KerberosClient::new(&cfg.kerberos, creds, &cfg.host, cfg.connect_timeout)
            .map_err(|e| TransportError::KerberosRefused {
                endpoint: self.endpoint.clone(),
                reason: format!("Kerberos: {e}"),
            })?;
        let spn = krb.spn().to_owned();
        let first = krb.step(None).await.map_err(|e| {
            let reason = format!("Kerberos ticket for {spn}: {e}");
            if e.refused {
                TransportError::KerberosRefused {
                    endpoint: self.endpoint.clone(),
                    reason,
                }
            } else {
                auth_err(reason)
            }
        })?;
        let req = self.auth_request(scheme, &first.token)?;
        let (status_code, headers, _) = self.send(req).await?;
        if status_code == StatusCode::UNAUTHORIZED {
            return Err(TransportError::Unauthorized {
                endpoint: self.endpoint.clone(),
            });
        }
        if !status_code.is_success() {
            return Err(auth_err(format!(
                "the Kerberos AP-REQ got HTTP {status_code}"
            )));
        }
        if first.status == SecurityStatus::ContinueNeeded {
            let Some(ap_rep) = www_auth_token(&headers) else {
                return Err(auth_err(
                    "the host sent no AP-REP (mutual authentication failed)".into(),
                ));
            };
            let last = krb
                .step(Some(ap_rep))
                .await
                .map_err(|e| auth_err(format!("Kerberos AP-REP: {e}")))?;
            if last.status != SecurityStatus::Ok {
                return Err(auth_err(format!(
                    "Kerberos did not complete ({:?})",
                    last.status
                )));
            }
        }
        self.ctx = Some(SecCtx::Kerberos(Box::new(krb.into_context())));
        Ok(())
    }

    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), TransportError> {
        let endpoint = self.endpoint.clone();
        let secs = self.request_timeout.as_secs();
        let fut = async {
            self.sender
                .ready()
                .await
                .map_err(|e| TransportError::Http {
                    endpoint: endpoint.clone(),
                    reason: e.to_string(),
                    before_send: true,
                })?;
            let resp = self
                .sender
                .send_request(req)
                .await
                .map_err(|e| TransportError::Http {
                    endpoint: endpoint.clone(),
                    reason: e.to_string(),
                    before_send: false,
                })?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| TransportError::Http {
                    endpoint: endpoint.clone(),
                    reason: e.to_string(),
                    before_send: false,
                })?
                .to_bytes();
            Ok((parts.status, parts.headers, body))
        };
        match tokio::time::timeout(self.request_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout { endpoint, secs }),
        }
    }

    /// Sends one SOAP message and returns the answer's text (a 200, or a 400/500 carrying a
    /// SOAP fault). The connection must not be used again after an error.
    pub async fn post(&mut self, soap: &str) -> Result<String, TransportError> {
        let mut b = Request::post("/wsman")
            .header(header::HOST, &self.host_header)
            .header(header::USER_AGENT, "vmove");
        let body = if self.seal {
            let sealed = match self.ctx.as_mut() {
                Some(SecCtx::Ntlm(c)) => sealing::seal(c.as_mut(), self.protocol, soap.as_bytes())?,
                #[cfg(feature = "kerberos")]
                Some(SecCtx::Kerberos(c)) => {
                    sealing::seal(c.as_mut(), self.protocol, soap.as_bytes())?
                }
                None => {
                    return Err(TransportError::Unsupported(
                        "HTTP needs NTLM or Kerberos".into(),
                    ));
                }
            };
            b = b.header(header::CONTENT_TYPE, sealing::content_type(self.protocol));
            Bytes::from(sealed)
        } else {
            b = b.header(header::CONTENT_TYPE, "application/soap+xml;charset=UTF-8");
            if let Some(basic) = &self.basic {
                b = b.header(header::AUTHORIZATION, basic);
            }
            Bytes::from(soap.to_owned())
        };
        let req = b
            .header(header::CONTENT_LENGTH, body.len().to_string())
            .body(Full::new(body))
            .map_err(|e| TransportError::Http {
                endpoint: self.endpoint.clone(),
                reason: e.to_string(),
                before_send: true,
            })?;
        let (status, headers, body) = self.send(req).await?;
        if status == StatusCode::UNAUTHORIZED {
            return Err(TransportError::Unauthorized {
                endpoint: self.endpoint.clone(),
            });
        }
        let sealed = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/encrypted"));
        let text = if sealed {
            match self.ctx.as_mut() {
                Some(SecCtx::Ntlm(c)) => sealing::unseal(c.as_mut(), &body)?,
                #[cfg(feature = "kerberos")]
                Some(SecCtx::Kerberos(c)) => sealing::unseal(c.as_mut(), &body)?,
                None => {
                    return Err(TransportError::Unsupported(
                        "sealed answer without a security context".into(),
                    ));
                }
            }
        } else {
            body.to_vec()
        };
        if !(status.is_success()
            || ((status.as_u16() == 400 || status.as_u16() == 500) && !text.is_empty()))
        {
            return Err(TransportError::Status {
                endpoint: self.endpoint.clone(),
                status: status.as_u16(),
            });
        }
        String::from_utf8(text).map_err(|_| TransportError::Http {
            endpoint: self.endpoint.clone(),
            reason: "the answer is not UTF-8".into(),
            before_send: false,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// `tls_config` with `ca` as its CA file, on another thread, given up on after `secs` (a
    /// FIFO opened by the unbounded read waited forever for a writer): the error's text, or
    /// why there is none.
    fn ca_error_within(ca: &Path, secs: u64) -> String {
        let (tx, rx) = std::sync::mpsc::channel();
        let opts = TlsOptions {
            ca_file: Some(ca.to_path_buf()),
            insecure_skip_verify: false,
        };
        std::thread::spawn(move || {
            let _ = tx.send(tls_config(&opts, "hv1:5986").map(|_| ()));
        });
        match rx.recv_timeout(Duration::from_secs(secs)) {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(())) => "accepted, not refused".into(),
            Err(_) => format!("no answer within {secs} s (hangs)"),
        }
    }

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[cfg(unix)]
    #[test]
    fn a_ca_file_that_is_a_fifo_a_folder_a_device_or_too_large_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| -> PathBuf { dir.path().join(name) };
        // A FIFO: opening it to read waited for a writer that never comes.
        let fifo = at("fifo.pem");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // A folder: before, "cannot read CA file" and the OS's word for it.
        let folder = at("folder.pem");
        std::fs::create_dir(&folder).unwrap();
        // /dev/zero, through a link: before, read (a line with no end) until memory ran out.
        let zero = at("zero.pem");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        for (path, kind) in [
            (&fifo, "a FIFO (named pipe)"),
            (&folder, "a folder"),
            (&zero, "a character device"),
        ] {
            let e = ca_error_within(path, 5);
            assert!(
                e.contains(&format!(
                    "the CA file `{}` is not a regular file but {kind}",
                    path.display()
                )) && e.contains("hv1:5986"),
                "{e}"
            );
        }
        // A CA bundle one byte over the limit (a good certificate, then text PEM ignores):
        // before, read whole and accepted.
        let pem = ca_pem();
        let limit = usize::try_from(MAX_CA_FILE_BYTES).unwrap();
        let mut text = pem.clone();
        text.push_str(&"x".repeat(limit - text.len()));
        text.push('\n');
        let big = at("big.pem");
        std::fs::write(&big, &text).unwrap();
        let e = ca_error_within(&big, 5);
        assert!(
            e.contains(&format!(
                "the CA file `{}` is larger than {MAX_CA_FILE_BYTES} bytes",
                big.display()
            )),
            "{e}"
        );
        // At the limit it is read, and its certificate trusted.
        text.truncate(limit - 1);
        text.push('\n');
        std::fs::write(&big, &text).unwrap();
        assert_eq!(ca_error_within(&big, 5), "accepted, not refused");
        // A file with no PEM certificate in it (a DER file, say) trusted nothing, silently.
        let der = at("ca.der");
        std::fs::write(&der, b"\x30\x82\x01\x0a not PEM").unwrap();
        let e = ca_error_within(&der, 5);
        assert!(
            e.contains(&format!(
                "the CA file `{}` holds no PEM certificate",
                der.display()
            )),
            "{e}"
        );
        // A broken certificate block names the file.
        let broken = at("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = ca_error_within(&broken, 5);
        assert!(
            e.contains(&format!("the CA file `{}`", broken.display())),
            "{e}"
        );
        // A missing file says the OS's reason.
        let missing = at("missing.pem");
        let e = ca_error_within(&missing, 5);
        assert!(
            e.contains(&format!("the CA file `{}`", missing.display()))
                && e.contains("No such file"),
            "{e}"
        );
    }
}
