//! Kerberos for WinRM through `sspi`'s Kerberos client: the realm, the KDC (configured, or found
//! by `sspi` through `SSPI_KDC_URL`, krb5.conf or the realm's DNS SRV records), the service
//! principal (`HTTP/<host>` by default, as WinRM registers it), and the KDC exchanges (AS and TGS)
//! that `sspi` asks for, done here over tokio TCP (or UDP) with a timeout.

use sspi::Username;

/// The realm part of a user name (`REALM` of `user@REALM` or `REALM\\user`).
pub fn realm_of(u: &Username) -> Option<&str> {
    match u.parts() {
        sspi::UsernameParts::UserPrincipalName(p) => Some(p.suffix()),
        sspi::UsernameParts::DownLevelLogonName(p) => p.netbios_domain(),
    }
}

/// Kerberos settings of one host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KerberosOptions {
    /// The realm (`CORP.EXAMPLE`); it wins over a domain in the user name. When absent, the
    /// user must name it (`user@REALM` or `REALM\user`).
    pub realm: Option<String>,
    /// The KDC: `host:port`, `tcp://host:port` or `udp://host:port`. When absent `sspi` looks in
    /// `SSPI_KDC_URL`, krb5.conf (`KRB5_CONFIG`) and DNS (`_kerberos._tcp.<realm>` SRV).
    pub kdc: Option<String>,
    /// The service principal of the WinRM listener; default `HTTP/<address>`.
    pub spn: Option<String>,
}

impl KerberosOptions {
    /// Whether anything Kerberos-specific is configured (`negotiate` then uses Kerberos).
    pub fn configured(&self) -> bool {
        self.realm.is_some() || self.kdc.is_some() || self.spn.is_some()
    }

    /// The service principal for a listener at `address`.
    pub fn spn_for(&self, address: &str) -> String {
        self.spn
            .clone()
            .unwrap_or_else(|| format!("HTTP/{}", address.trim_end_matches('.')))
    }

    /// The user as `sspi` needs it: the account and the realm (upper case).
    pub fn principal(&self, user: &str) -> Result<Username, String> {
        let parsed = Username::parse(user).map_err(|e| format!("bad user name: {e}"))?;
        // A configured realm wins: `CORP\user` names the NetBIOS domain and `user@corp.com` may
        // carry an alternative UPN suffix, neither of which need be the realm.
        let realm = match (&self.realm, realm_of(&parsed)) {
            (Some(r), _) => r.to_uppercase(),
            (None, Some(d)) if !d.is_empty() => d.to_uppercase(),
            _ => {
                return Err(format!(
                    "Kerberos needs a realm: set `realm` or give the user as user@REALM (got {user:?})"
                ));
            }
        };
        // `REALM\account`: sspi then asks for the NT-PRINCIPAL `account@REALM` (a UPN would be
        // sent as an NT-ENTERPRISE name, which only Active Directory resolves).
        Username::new(parsed.account_name(), Some(&realm))
            .map_err(|e| format!("bad user name: {e}"))
    }
}

// The client (AS, TGS and AP exchanges through `sspi`, KDC discovery through DNS) is built with
// the feature `kerberos` only: a binary without it carries no DNS resolver, and refuses a
// Kerberos configuration by name ([`crate::config::HyperVHostConfig`]'s check).
#[cfg(feature = "kerberos")]
mod client;
#[cfg(feature = "kerberos")]
pub use client::{KerberosClient, Step, StepError};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn spn_defaults_to_http_slash_address() {
        let o = KerberosOptions::default();
        assert_eq!(o.spn_for("hv1.corp.example"), "HTTP/hv1.corp.example");
        let o = KerberosOptions {
            spn: Some("HTTP/hv1-mgmt.corp.example".into()),
            ..Default::default()
        };
        assert_eq!(o.spn_for("10.0.0.1"), "HTTP/hv1-mgmt.corp.example");
    }

    #[test]
    fn the_realm_comes_from_the_user_or_the_config() {
        let o = KerberosOptions {
            realm: Some("corp.example".into()),
            ..Default::default()
        };
        let u = o.principal("ops").unwrap();
        assert_eq!(u.account_name(), "ops");
        assert_eq!(realm_of(&u), Some("CORP.EXAMPLE"));
        // The configured realm wins over a NetBIOS domain or another UPN suffix.
        let u = o.principal("ops@lab.example").unwrap();
        assert_eq!(realm_of(&u), Some("CORP.EXAMPLE"));
        let u = o.principal("CORP\\ops").unwrap();
        assert_eq!(
            (u.account_name(), realm_of(&u)),
            ("ops", Some("CORP.EXAMPLE"))
        );
        let u = KerberosOptions::default()
            .principal("ops@lab.example")
            .unwrap();
        assert_eq!(realm_of(&u), Some("LAB.EXAMPLE"));
        let u = KerberosOptions::default().principal("LAB\\ops").unwrap();
        assert_eq!(realm_of(&u), Some("LAB"));
        let e = KerberosOptions::default().principal("ops").unwrap_err();
        assert!(e.contains("realm"), "{e}");
    }
}
