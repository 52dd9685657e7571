//! Per-host configuration (`[hosts.<name>]` with `driver = "hyperv"`).

use crate::wsman::{AuthMethod, Scheme};
use serde::Deserialize;
use std::path::PathBuf;

/// One Hyper-V host as configured.
///
/// ```toml
/// [hosts.hv1]
/// driver = "hyperv"
/// address = "hv1.lab.example"
/// transport = "https"          # or "http" (NTLM-sealed messages)
/// auth = "negotiate"           # "ntlm", "basic" (HTTPS only), "kerberos" (not in this build)
/// ca_file = "/etc/vmove/lab-ca.pem"
/// credentials_file = "/etc/vmove/hv.toml"   # 0600; else VMOVE_HYPERV_USER / VMOVE_HYPERV_PASSWORD
/// host_name = "HV1"            # the computer name Hyper-V knows (migration destination name)
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HyperVHostConfig {
    /// DNS name or address of the WinRM listener.
    pub address: String,
    /// Port (default 5986 for HTTPS, 5985 for HTTP).
    #[serde(default)]
    pub port: Option<u16>,
    /// `https` (default) or `http`.
    #[serde(default = "default_transport")]
    pub transport: Scheme,
    /// `negotiate` (default), `ntlm`, `kerberos`, `basic`.
    #[serde(default = "default_auth")]
    pub auth: AuthMethod,
    /// Extra CA certificates (PEM) to trust for HTTPS.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any TLS certificate (explicit opt-in; logged as a warning).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// A 0600 TOML file with `user` and `password`; else the environment.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// The computer name Hyper-V knows this host by (used as `DestinationHost` and in the
    /// migration service's selectors). Read from the host when absent.
    #[serde(default)]
    pub host_name: Option<String>,
    /// Seconds one WS-Management request may take (default 60).
    #[serde(default)]
    pub request_timeout_secs: Option<u64>,
    /// Seconds connecting and authenticating may take (default 20).
    #[serde(default)]
    pub connect_timeout_secs: Option<u64>,
}

fn default_transport() -> Scheme {
    Scheme::Https
}

fn default_auth() -> AuthMethod {
    AuthMethod::Negotiate
}

impl HyperVHostConfig {
    /// The port, defaulted by transport.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.transport {
            Scheme::Https => 5986,
            Scheme::Http => 5985,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_https_negotiate_5986() {
        let c: HyperVHostConfig = toml::from_str("address = \"hv1\"").unwrap();
        assert_eq!(c.transport, Scheme::Https);
        assert_eq!(c.auth, AuthMethod::Negotiate);
        assert_eq!(c.port(), 5986);
        assert!(!c.insecure_skip_verify);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<HyperVHostConfig>("address = \"hv1\"\npasword = \"x\"").is_err());
    }

    #[test]
    fn http_defaults_to_5985() {
        let c: HyperVHostConfig =
            toml::from_str("address = \"hv1\"\ntransport = \"http\"\nauth = \"ntlm\"").unwrap();
        assert_eq!(c.port(), 5985);
        assert_eq!(c.auth, AuthMethod::Ntlm);
    }
}
