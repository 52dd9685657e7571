//! How a connection to a WinRM listener is configured (scheme, authentication, TLS, time-outs)
//! and how it fails ([`TransportError`]); the connection itself is in `connection.rs`.

use super::kerberos::KerberosOptions;
use super::sealing;
use std::path::PathBuf;
use std::time::Duration;

/// HTTP (5985, sealed messages) or HTTPS (5986, TLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP; every message sealed by the NTLM or Kerberos context.
    Http,
    /// HTTP over TLS.
    Https,
}

/// How to authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// HTTP `Negotiate`: Kerberos tokens when a realm, KDC or SPN is configured, else NTLM
    /// (what WinRM offers to a non-domain client).
    Negotiate,
    /// NTLM (sent as `Negotiate`, as WinRM expects).
    Ntlm,
    /// Kerberos (the HTTP `Kerberos` scheme, `HTTP-Kerberos-session-encrypted` sealing).
    Kerberos,
    /// Basic, HTTPS only (local accounts).
    Basic,
}

/// The most a `ca_file` may hold: a PEM bundle of CA certificates is 1-2 KiB a certificate (a
/// whole system store, some 150 of them, is about 220 KiB); a larger file is not a CA bundle,
/// and is not read whole.
pub const MAX_CA_FILE_BYTES: u64 = 1 << 20;

/// How an HTTPS listener's certificate is checked.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// A PEM file of extra CA certificates to trust besides the system's: a regular file of at
    /// most [`MAX_CA_FILE_BYTES`] holding at least one certificate.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate. Explicit opt-in only.
    pub insecure_skip_verify: bool,
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Host name or address.
    pub host: String,
    pub port: u16,
    /// HTTP or HTTPS.
    pub scheme: Scheme,
    pub auth: AuthMethod,
    /// TLS options (HTTPS).
    pub tls: TlsOptions,
    /// Kerberos settings (`auth = "kerberos"`, or `negotiate` with any of them set).
    pub kerberos: KerberosOptions,
    /// Timeout of connecting (TCP + TLS + authentication).
    pub connect_timeout: Duration,
    /// Timeout of one request/response.
    pub request_timeout: Duration,
}

impl TransportConfig {
    /// `http(s)://host:port/wsman`.
    pub fn endpoint(&self) -> String {
        let s = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{s}://{}:{}/wsman", self.host, self.port)
    }
}

/// A transport failure. `before_send` tells whether the request may have reached the host.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TCP connect failed.
    #[error("cannot connect to {endpoint}")]
    Connect {
        endpoint: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TLS set-up or handshake failed.
    #[error("TLS with {endpoint} failed: {reason}")]
    Tls {
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The host refused our credentials.
    #[error("{endpoint} refused the credentials (HTTP 401)")]
    Unauthorized { endpoint: String },
    /// Authentication failed locally or the handshake broke.
    #[error("authentication with {endpoint} failed: {reason}")]
    Auth {
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The KDC refused (wrong password, unknown principal, ...).
    #[error("authentication with {endpoint} failed: {reason}")]
    KerberosRefused {
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// This configuration is not supported.
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    /// An HTTP status without a SOAP answer.
    #[error("{endpoint} answered HTTP {status}")]
    Status { endpoint: String, status: u16 },
    /// The connection broke or the HTTP exchange failed.
    #[error("HTTP exchange with {endpoint} failed: {reason}")]
    Http {
        endpoint: String,
        /// Why.
        reason: String,
        /// True when the request was certainly not delivered.
        before_send: bool,
    },
    /// No answer in time.
    #[error("{endpoint} did not answer within {secs} s")]
    Timeout {
        endpoint: String,
        /// The timeout.
        secs: u64,
    },
    /// Sealing or unsealing failed.
    #[error(transparent)]
    Seal(#[from] sealing::SealError),
}
/// What a build without the feature `kerberos` says when Kerberos is configured.
pub const KERBEROS_NOT_BUILT: &str = "Kerberos is configured (`auth = \"kerberos\"`, or `realm`, `kdc` or `spn` set), but this vmove was built without Kerberos (the `kerberos` feature; the default build has it): use `auth = \"ntlm\"` (HTTP with sealing) or HTTPS, or a vmove built with `--features kerberos`";

/// The error of a connection that would need Kerberos in a build without it.
#[cfg(not(feature = "kerberos"))]
pub(super) fn kerberos_not_built() -> TransportError {
    TransportError::Unsupported(KERBEROS_NOT_BUILT.to_owned())
}

impl TransportConfig {
    /// Whether this configuration authenticates with Kerberos.
    pub fn uses_kerberos(&self) -> bool {
        match self.auth {
            AuthMethod::Kerberos => true,
            AuthMethod::Negotiate => self.kerberos.configured(),
            AuthMethod::Ntlm | AuthMethod::Basic => false,
        }
    }
}

impl TransportError {
    /// Whether the request certainly did not reach the host (safe to repeat anything).
    pub fn certainly_not_sent(&self) -> bool {
        match self {
            TransportError::Connect { .. }
            | TransportError::Tls { .. }
            | TransportError::Unauthorized { .. }
            | TransportError::Auth { .. }
            | TransportError::KerberosRefused { .. }
            | TransportError::Unsupported(_) => true,
            TransportError::Http { before_send, .. } => *before_send,
            _ => false,
        }
    }
}
