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
/// auth = "negotiate"           # "ntlm", "basic" (HTTPS only), "kerberos"
/// realm = "LAB.EXAMPLE"        # Kerberos realm (negotiate then uses Kerberos)
/// kdc = "dc1.lab.example:88"   # optional; else SSPI_KDC_URL, krb5.conf, DNS SRV
/// spn = "HTTP/hv1.lab.example" # optional; default HTTP/<address>
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
    /// Kerberos realm. With `auth = "negotiate"`, setting `realm`, `kdc` or `spn` selects
    /// Kerberos instead of NTLM.
    #[serde(default)]
    pub realm: Option<String>,
    /// Kerberos KDC (`host[:port]`, `tcp://host:port`, `udp://host:port`). Found through
    /// `SSPI_KDC_URL`, krb5.conf or the realm's DNS SRV records when absent.
    #[serde(default)]
    pub kdc: Option<String>,
    /// The WinRM listener's service principal (default `HTTP/<address>`).
    #[serde(default)]
    pub spn: Option<String>,
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
    /// Seconds one WS-Management request may take ([`DEFAULT_REQUEST_TIMEOUT_SECS`]).
    #[serde(default)]
    pub request_timeout_secs: Option<u64>,
    /// Seconds connecting and authenticating may take ([`DEFAULT_CONNECT_TIMEOUT_SECS`]).
    #[serde(default)]
    pub connect_timeout_secs: Option<u64>,
}

/// Seconds one WS-Management request may take when `request_timeout_secs` is not set: WinRM's
/// own default `MaxTimeoutms` is 60000 (`winrm get winrm/config`), so a host answers or faults
/// within it.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 60;
/// Seconds connecting and authenticating may take when `connect_timeout_secs` is not set: TCP,
/// TLS and a Kerberos or NTLM round trip take well under a second on a working link; a third of
/// a request's time bounds a host that does not answer.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 20;

fn default_transport() -> Scheme {
    Scheme::Https
}

fn default_auth() -> AuthMethod {
    AuthMethod::Negotiate
}

impl HyperVHostConfig {
    /// The Kerberos settings.
    pub fn kerberos(&self) -> crate::wsman::KerberosOptions {
        crate::wsman::KerberosOptions {
            realm: self.realm.clone(),
            kdc: self.kdc.clone(),
            spn: self.spn.clone(),
        }
    }

    /// Whether this configuration authenticates with Kerberos (`auth = "kerberos"`, or
    /// `negotiate` with `realm`, `kdc` or `spn` set).
    pub fn uses_kerberos(&self) -> bool {
        match self.auth {
            AuthMethod::Kerberos => true,
            AuthMethod::Negotiate => self.kerberos().configured(),
            AuthMethod::Ntlm | AuthMethod::Basic => false,
        }
    }

    /// Refuses, by name, what this build cannot do: Kerberos in a binary built without the
    /// feature `kerberos` (before anything connects).
    pub fn check_built(&self) -> Result<(), String> {
        if self.uses_kerberos() && !cfg!(feature = "kerberos") {
            return Err(crate::wsman::KERBEROS_NOT_BUILT.to_owned());
        }
        Ok(())
    }

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
    fn kerberos_is_refused_by_name_in_a_build_without_it() {
        for text in [
            "address = \"hv1\"\nauth = \"kerberos\"",
            "address = \"hv1\"\nrealm = \"LAB.EXAMPLE\"",
        ] {
            let c: HyperVHostConfig = toml::from_str(text).unwrap();
            assert!(c.uses_kerberos());
            let built = cfg!(feature = "kerberos");
            match c.check_built() {
                Ok(()) => assert!(built, "accepted without Kerberos built in"),
                Err(e) => {
                    assert!(!built, "refused with Kerberos built in: {e}");
                    assert!(e.contains("Kerberos") && e.contains("`kerberos`"), "{e}");
                }
            }
        }
        let ntlm: HyperVHostConfig = toml::from_str("address = \"hv1\"\nauth = \"ntlm\"").unwrap();
        assert!(!ntlm.uses_kerberos());
        assert_eq!(ntlm.check_built(), Ok(()));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<HyperVHostConfig>("address = \"hv1\"\npasword = \"x\"").is_err());
    }

    #[test]
    fn kerberos_keys_are_read() {
        let c: HyperVHostConfig = toml::from_str(
            "address = \"hv1.lab.example\"\nauth = \"kerberos\"\nrealm = \"LAB.EXAMPLE\"\nkdc = \"dc1.lab.example:88\"",
        )
        .unwrap();
        assert_eq!(c.auth, AuthMethod::Kerberos);
        let k = c.kerberos();
        assert_eq!(k.realm.as_deref(), Some("LAB.EXAMPLE"));
        assert_eq!(k.kdc.as_deref(), Some("dc1.lab.example:88"));
        assert_eq!(k.spn_for(&c.address), "HTTP/hv1.lab.example");
    }

    #[test]
    fn http_defaults_to_5985() {
        let c: HyperVHostConfig =
            toml::from_str("address = \"hv1\"\ntransport = \"http\"\nauth = \"ntlm\"").unwrap();
        assert_eq!(c.port(), 5985);
        assert_eq!(c.auth, AuthMethod::Ntlm);
    }
}
