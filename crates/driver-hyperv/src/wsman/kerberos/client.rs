//! The Kerberos client context (feature `kerberos`): AS and TGS exchanges with the KDC
//! (configured, or found by `sspi` through `SSPI_KDC_URL`, krb5.conf or the realm's DNS SRV
//! records), and the AP exchange with the listener.

use super::KerberosOptions;
use crate::wsman::creds::Credentials;
use sspi::generator::GeneratorState;
use sspi::{
    AuthIdentity, BufferType, ClientRequestFlags, CredentialUse, CredentialsBuffers,
    DataRepresentation, KdcResolution, Kerberos, KerberosConfig, NetworkProtocol, NetworkRequest,
    SecurityBuffer, SecurityStatus, Sspi, SspiImpl,
};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client Kerberos context in the making.
pub struct KerberosClient {
    ctx: Kerberos,
    handle: Option<CredentialsBuffers>,
    spn: String,
    kdc_timeout: Duration,
}

impl std::fmt::Debug for KerberosClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KerberosClient")
            .field("spn", &self.spn)
            .finish_non_exhaustive()
    }
}

/// A failed step: `refused` when the KDC or the ticket said no (wrong password, unknown
/// principal: retrying cannot help), else the KDC could not be reached or answered nonsense.
#[derive(Debug)]
pub struct StepError {
    /// The KDC refused (a permanent error).
    pub refused: bool,
    /// Why.
    pub message: String,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<sspi::Error> for StepError {
    fn from(e: sspi::Error) -> Self {
        StepError {
            refused: !matches!(
                e.error_type,
                sspi::ErrorKind::NoAuthenticatingAuthority | sspi::ErrorKind::TimeSkew
            ),
            message: e.to_string(),
        }
    }
}

/// What one handshake step produced.
#[derive(Debug)]
pub struct Step {
    /// `ContinueNeeded` until the AP-REP has been checked, then `Ok`.
    pub status: SecurityStatus,
    /// The token to send (empty after the last step).
    pub token: Vec<u8>,
}

impl KerberosClient {
    /// Prepares a context for the listener at `address` (no network yet).
    pub fn new(
        opts: &KerberosOptions,
        creds: &Credentials,
        address: &str,
        kdc_timeout: Duration,
    ) -> Result<KerberosClient, String> {
        let workstation = std::env::var("HOSTNAME").unwrap_or_else(|_| "vmove".to_owned());
        let config = match &opts.kdc {
            Some(kdc) => {
                let url = sspi::kerberos::config::parse_kdc_url(kdc)
                    .ok_or_else(|| format!("bad KDC address {kdc:?}"))?;
                match url.scheme() {
                    "tcp" | "udp" => {}
                    other => {
                        return Err(format!(
                            "KDC scheme {other:?} is not supported (use tcp:// or udp://)"
                        ));
                    }
                }
                KerberosConfig {
                    kdc_resolution: KdcResolution::KdcUrl(Some(url)),
                    client_computer_name: workstation,
                }
            }
            None => KerberosConfig {
                kdc_resolution: KdcResolution::KdcUrl(None),
                client_computer_name: workstation,
            },
        };
        let mut ctx = Kerberos::new_client_from_config(config).map_err(|e| e.to_string())?;
        let identity = AuthIdentity {
            username: opts.principal(&creds.user)?,
            password: creds.password().to_owned().into(),
        };
        let handle = ctx
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Outbound)
            .with_auth_data(&sspi::Credentials::AuthIdentity(identity))
            .execute(&mut ctx)
            .map_err(|e| e.to_string())?
            .credentials_handle;
        Ok(KerberosClient {
            ctx,
            handle,
            spn: opts.spn_for(address),
            kdc_timeout,
        })
    }

    /// The service principal asked for.
    pub fn spn(&self) -> &str {
        &self.spn
    }

    /// One step: with no input, talks to the KDC (AS, TGS) and returns the AP-REQ; with the
    /// listener's AP-REP, checks it (mutual authentication) and finishes.
    pub async fn step(&mut self, input: Option<Vec<u8>>) -> Result<Step, StepError> {
        let flags = ClientRequestFlags::MUTUAL_AUTH
            | ClientRequestFlags::CONFIDENTIALITY
            | ClientRequestFlags::INTEGRITY
            | ClientRequestFlags::SEQUENCE_DETECT
            | ClientRequestFlags::REPLAY_DETECT;
        let mut in_bufs = vec![SecurityBuffer::new(
            input.unwrap_or_default(),
            BufferType::Token,
        )];
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let spn = self.spn.clone();
        let timeout = self.kdc_timeout;
        let result = {
            let mut builder = self
                .ctx
                .initialize_security_context()
                .with_credentials_handle(&mut self.handle)
                .with_context_requirements(flags)
                .with_target_data_representation(DataRepresentation::Native)
                .with_target_name(&spn)
                .with_input(&mut in_bufs)
                .with_output(&mut output);
            let mut generator = self.ctx.initialize_security_context_impl(&mut builder)?;
            let mut state = generator.start();
            loop {
                match state {
                    GeneratorState::Suspended(request) => {
                        let answer = kdc_exchange(&request, timeout).await;
                        state = generator.resume(answer);
                    }
                    GeneratorState::Completed(r) => break r,
                }
            }
        };
        let result = result?;
        Ok(Step {
            status: result.status,
            token: std::mem::take(&mut output[0].buffer),
        })
    }

    /// The established context (for sealing).
    pub fn into_context(self) -> Kerberos {
        self.ctx
    }
}

fn kdc_error(msg: String) -> sspi::Error {
    sspi::Error::new(sspi::ErrorKind::NoAuthenticatingAuthority, msg)
}

/// One request to the KDC, the way `sspi` frames it: over TCP the data already carries its
/// 4-byte length and so must the answer; over UDP neither does (the answer gets the length
/// prepended, as `sspi` expects).
async fn kdc_exchange(req: &NetworkRequest, timeout: Duration) -> sspi::Result<Vec<u8>> {
    let host = req.url.host_str().unwrap_or_default().to_owned();
    let port = req.url.port().unwrap_or(88);
    let what = format!("KDC {host}:{port}");
    let fut = async {
        match req.protocol {
            NetworkProtocol::Tcp => {
                let mut s = tokio::net::TcpStream::connect((host.as_str(), port))
                    .await
                    .map_err(|e| kdc_error(format!("cannot connect to {what}: {e}")))?;
                s.write_all(&req.data)
                    .await
                    .map_err(|e| kdc_error(format!("{what}: {e}")))?;
                let len = s
                    .read_u32()
                    .await
                    .map_err(|e| kdc_error(format!("{what}: {e}")))?;
                if len > 1 << 20 {
                    return Err(kdc_error(format!("{what} announced a {len}-byte answer")));
                }
                let mut buf = vec![0u8; 4 + len as usize];
                buf[..4].copy_from_slice(&len.to_be_bytes());
                s.read_exact(&mut buf[4..])
                    .await
                    .map_err(|e| kdc_error(format!("{what}: {e}")))?;
                Ok(buf)
            }
            NetworkProtocol::Udp => {
                let sock = tokio::net::UdpSocket::bind(if host.contains(':') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                })
                .await
                .map_err(|e| kdc_error(format!("{what}: {e}")))?;
                sock.connect((host.as_str(), port))
                    .await
                    .map_err(|e| kdc_error(format!("cannot reach {what}: {e}")))?;
                sock.send(&req.data)
                    .await
                    .map_err(|e| kdc_error(format!("{what}: {e}")))?;
                let mut buf = vec![0u8; 65536];
                let n = sock
                    .recv(&mut buf)
                    .await
                    .map_err(|e| kdc_error(format!("{what}: {e}")))?;
                let mut out = Vec::with_capacity(n + 4);
                out.extend_from_slice(&(n as u32).to_be_bytes());
                out.extend_from_slice(&buf[..n]);
                Ok(out)
            }
            other => Err(kdc_error(format!(
                "KDC protocol {other:?} (a KDC proxy) is not supported"
            ))),
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(kdc_error(format!(
            "{what} did not answer within {} s",
            timeout.as_secs()
        ))),
    }
}
