//! A small WS-Management client: Enumerate (WQL) + Pull, Get, Invoke, over one connection per
//! host session.
//!
//! - [`soap`]: envelopes and response parsing (faults, RelatesTo).
//! - [`transport`]: how a connection is configured and how it fails.
//! - `connection`: the HTTP connection, TLS, authentication.
//! - [`sealing`]: NTLM and Kerberos message sealing as WinRM frames it.
//! - [`kerberos`]: the Kerberos client (realm, KDC, SPN) on `sspi`.
//! - [`creds`]: credentials from the environment or a 0600 file.

mod connection;
pub mod creds;
pub mod kerberos;
pub mod sealing;
pub mod soap;
pub mod transport;

use crate::cim::{CimInstance, Epr, class_uri};
use crate::xml::Element;
use connection::Connection;
pub use creds::Credentials;
pub use kerberos::KerberosOptions;
pub use soap::{Param, SoapError, WmiError};
pub use transport::{
    AuthMethod, KERBEROS_NOT_BUILT, MAX_CA_FILE_BYTES, Scheme, TlsOptions, TransportConfig,
    TransportError,
};

/// A failed WS-Management call.
#[derive(Debug, thiserror::Error)]
pub enum WsmanError {
    /// The HTTP/TLS/auth layer failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The service answered with a fault or something unusable.
    #[error(transparent)]
    Soap(#[from] SoapError),
}

impl WsmanError {
    /// Whether the request certainly did not reach the service.
    pub fn certainly_not_sent(&self) -> bool {
        match self {
            WsmanError::Transport(t) => t.certainly_not_sent(),
            WsmanError::Soap(_) => false,
        }
    }
    /// Whether the service refused our credentials.
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            WsmanError::Transport(
                TransportError::Unauthorized { .. } | TransportError::KerberosRefused { .. }
            )
        )
    }
}

/// The maximum number of items asked per Enumerate/Pull.
const MAX_ELEMENTS: u32 = 32000;
/// The maximum number of Pulls of one enumeration (a runaway guard).
const MAX_PULLS: usize = 10_000;

/// A client of one host's WinRM service.
pub struct WsmanClient {
    cfg: TransportConfig,
    creds: Credentials,
    header: soap::HeaderParams,
    conn: tokio::sync::Mutex<Option<Connection>>,
}

impl std::fmt::Debug for WsmanClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsmanClient")
            .field("endpoint", &self.cfg.endpoint())
            .field("auth", &self.cfg.auth)
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

fn message_id() -> String {
    format!("uuid:{}", uuid::Uuid::new_v4().to_string().to_uppercase())
}

impl WsmanClient {
    /// A client; nothing is connected until the first call.
    pub fn new(cfg: TransportConfig, creds: Credentials) -> Self {
        let header = soap::HeaderParams {
            to: cfg.endpoint(),
            operation_timeout_secs: cfg.request_timeout.as_secs().max(2) - 1,
            max_envelope_size: 512_000,
        };
        WsmanClient {
            cfg,
            creds,
            header,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        self.cfg.endpoint()
    }

    /// Sends one message built for a fresh MessageID and returns the checked Body.
    async fn call(
        &self,
        build: impl Fn(&soap::HeaderParams, &str) -> String,
    ) -> Result<Element, WsmanError> {
        let mut guard = self.conn.lock().await;
        let mut attempts = 0;
        loop {
            attempts += 1;
            if guard.is_none() {
                *guard = Some(Connection::open(&self.cfg, &self.creds).await?);
            }
            let mid = message_id();
            let text = build(&self.header, &mid);
            let conn = guard
                .as_mut()
                .ok_or_else(|| TransportError::Unsupported("no connection".into()))?;
            match conn.post(&text).await {
                Ok(answer) => return Ok(soap::parse_response(&answer, &mid)?),
                Err(e) => {
                    // The connection (and its NTLM context) is spent either way.
                    *guard = None;
                    if e.certainly_not_sent()
                        && attempts < 2
                        && !matches!(e, TransportError::Unauthorized { .. })
                    {
                        tracing::debug!("retrying on a new connection: {e}");
                        continue;
                    }
                    return Err(e.into());
                }
            }
        }
    }

    /// Runs a WQL query in a WMI namespace (`root/virtualization/v2`, `root/cimv2`) through the
    /// wildcard resource URI, and pulls every page.
    pub async fn query(&self, namespace: &str, wql: &str) -> Result<Vec<CimInstance>, WsmanError> {
        let uri = class_uri(namespace, "*");
        let body = self
            .call(|h, mid| soap::enumerate(h, mid, &uri, wql, MAX_ELEMENTS))
            .await?;
        let mut page = soap::parse_page(&body)?;
        let mut items = std::mem::take(&mut page.items);
        let mut pulls = 0;
        while !page.end {
            let Some(ctx) = page.context.clone() else {
                break;
            };
            pulls += 1;
            if pulls > MAX_PULLS {
                return Err(SoapError::Malformed("the enumeration never ends".into()).into());
            }
            let body = self
                .call(|h, mid| soap::pull(h, mid, &uri, &ctx, MAX_ELEMENTS))
                .await?;
            page = soap::parse_page(&body)?;
            items.append(&mut page.items);
        }
        Ok(items)
    }

    /// Gets one instance.
    pub async fn get(&self, epr: &Epr) -> Result<CimInstance, WsmanError> {
        let body = self.call(|h, mid| soap::get(h, mid, epr)).await?;
        let el = body
            .children
            .first()
            .ok_or_else(|| SoapError::Malformed("empty Get answer".into()))?;
        let mut inst = CimInstance::from_wsman(el);
        inst.epr = Some(epr.clone());
        Ok(inst)
    }

    /// Invokes a method; returns the output instance (ReturnValue and out parameters).
    pub async fn invoke(
        &self,
        target: &Epr,
        method: &str,
        params: &[(String, Param)],
    ) -> Result<CimInstance, WsmanError> {
        let body = self
            .call(|h, mid| soap::invoke(h, mid, target, method, params))
            .await?;
        Ok(soap::parse_output(&body, method)?)
    }

    /// Drops the connection (the next call opens a new one).
    pub async fn disconnect(&self) {
        *self.conn.lock().await = None;
    }
}
