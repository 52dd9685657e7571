//! TLS to a PostgreSQL journal, with libpq's `sslmode` and `sslrootcert` meanings (PostgreSQL
//! documentation, libpq "SSL Support", "Protection Provided in Different Modes"):
//!
//! - `disable`: no TLS.
//! - `prefer` (the default): TLS if the server offers it, the certificate not checked; else clear.
//! - `require`: TLS or no connection, the certificate not checked; with a root certificate
//!   given it is checked as `verify-ca` (libpq's rule for a present root certificate).
//! - `verify-ca`: TLS, the server's certificate chain checked against the root certificate(s).
//! - `verify-full`: as `verify-ca`, and the host name (or IP address) must match the certificate.
//!
//! Unix-socket connections never use TLS (libpq: SSL is not used over Unix sockets). The root
//! certificates: `sslrootcert` (a PEM file, or `system` for the operating system's store, as
//! libpq 16), else `PGSSLROOTCERT`, else libpq's default file `~/.postgresql/root.crt` if it
//! exists; `verify-*` with none of them is an error before anything connects.

use std::path::{Path, PathBuf};
use std::str::FromStr;

/// libpq's `sslmode` values this client honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "unknown sslmode `{other}` (one of disable, prefer, require, verify-ca, verify-full)"
                ));
            }
        })
    }
}

/// Where the root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file.
    File(PathBuf),
    /// The operating system's store (`sslrootcert=system`).
    System,
}

/// What the URL (or the environment) asks of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root: Option<RootCert>,
}

impl TlsSettings {
    /// The mode in effect: `require` with a root certificate is `verify-ca` (libpq).
    pub fn effective_mode(&self) -> SslMode {
        match (self.mode, &self.root) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (m, _) => m,
        }
    }
}

/// Takes `sslmode` and `sslrootcert` out of a PostgreSQL URL's query (tokio-postgres's parser
/// knows neither `verify-*` nor `sslrootcert`); the URL without them and the settings, the
/// environment's `PGSSLMODE`/`PGSSLROOTCERT` filling what the URL does not say. `env` is the
/// environment lookup (`std::env::var` in use).
pub fn split_tls_params(
    url: &str,
    env: impl Fn(&str) -> Option<String>,
) -> std::result::Result<(String, TlsSettings), String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut mode = None;
    let mut root = None;
    let mut kept = Vec::new();
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "sslmode" => mode = Some(percent_decode(v)?),
            "sslrootcert" => root = Some(percent_decode(v)?),
            _ => kept.push(kv),
        }
    }
    let mode = match mode.or_else(|| env("PGSSLMODE")) {
        Some(m) => m.parse()?,
        None => SslMode::Prefer,
    };
    let root = root
        .or_else(|| env("PGSSLROOTCERT"))
        .filter(|r| !r.is_empty())
        .map(|r| {
            if r == "system" {
                RootCert::System
            } else {
                RootCert::File(PathBuf::from(r))
            }
        });
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, TlsSettings { mode, root }))
}

/// `%XX` escapes of a query value decoded (a path may hold them).
fn percent_decode(v: &str) -> std::result::Result<String, String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = v
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("a bad %-escape in the URL's query value `{v}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("the URL's query value `{v}` is not UTF-8"))
}

/// The root certificates `verify-*` checks against: the given source, else libpq's default file
/// `~/.postgresql/root.crt` if it exists.
fn root_store(root: Option<&RootCert>) -> std::result::Result<rustls::RootCertStore, String> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let mut store = rustls::RootCertStore::empty();
    let file = match root {
        Some(RootCert::System) => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = store.add(c);
            }
            if store.is_empty() {
                return Err(
                    "sslrootcert=system: the system holds no usable root certificate".into(),
                );
            }
            return Ok(store);
        }
        Some(RootCert::File(f)) => f.clone(),
        None => {
            let default =
                std::env::var_os("HOME").map(|h| Path::new(&h).join(".postgresql/root.crt"));
            match default.filter(|d| d.is_file()) {
                Some(d) => d,
                None => {
                    return Err("sslmode verify-ca/verify-full needs a root certificate: set sslrootcert=<file> in the URL, PGSSLROOTCERT, or sslrootcert=system (none given and ~/.postgresql/root.crt does not exist)".into())
                }
            }
        }
    };
    let shown = file.display();
    let bytes = std::fs::read(&file)
        .map_err(|e| format!("cannot read the root certificate file {shown}: {e}"))?;
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(&bytes) {
        let c =
            c.map_err(|e| format!("the root certificate file {shown} is not valid PEM: {e}"))?;
        store.add(c).map_err(|e| {
            format!("the root certificate file {shown} holds an invalid certificate: {e}")
        })?;
        n += 1;
    }
    if n == 0 {
        return Err(format!(
            "the root certificate file {shown} holds no PEM certificate"
        ));
    }
    Ok(store)
}

/// The TLS connector for `settings` (`None`: no TLS, `disable`); an error names what is wrong
/// (a bad root certificate file, `verify-*` without a root) before anything connects.
pub(crate) fn connector(
    settings: &TlsSettings,
) -> std::result::Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, String> {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    let config = match settings.effective_mode() {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verify::Unchecked(provider)))
            .with_no_client_auth(),
        mode @ (SslMode::VerifyCa | SslMode::VerifyFull) => {
            let roots = root_store(settings.root.as_ref())?;
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("TLS set-up: {e}"))?;
            if mode == SslMode::VerifyFull {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verify::ChainOnly(webpki)))
                    .with_no_client_auth()
            }
        }
    };
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
}

/// The two verifiers rustls does not have: none (`prefer`/`require`, libpq's meaning: encrypted,
/// the server not authenticated) and the chain without the name (`verify-ca`).
mod verify {
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Arc;

    #[derive(Debug)]
    pub(super) struct Unchecked(pub(super) Arc<CryptoProvider>);

    impl ServerCertVerifier for Unchecked {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
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
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    #[derive(Debug)]
    pub(super) struct ChainOnly(pub(super) Arc<WebPkiServerVerifier>);

    impl ServerCertVerifier for ChainOnly {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            match self
                .0
                .verify_server_cert(end_entity, intermediates, name, ocsp, now)
            {
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_the_url() {
        let (url, s) = split_tls_params(
            "postgresql://u@h:5433/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem",
            none,
        )
        .unwrap();
        assert_eq!(url, "postgresql://u@h:5433/db?application_name=x");
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.root, Some(RootCert::File("/tmp/ca.pem".into())));
        let (url, s) = split_tls_params("postgresql://u@h/db", none).unwrap();
        assert_eq!(url, "postgresql://u@h/db");
        assert_eq!(s.mode, SslMode::Prefer);
        assert_eq!(s.root, None);
    }

    #[test]
    fn the_environment_fills_what_the_url_does_not_say() {
        let env = |k: &str| match k {
            "PGSSLMODE" => Some("require".to_owned()),
            "PGSSLROOTCERT" => Some("system".to_owned()),
            _ => None,
        };
        let (_, s) = split_tls_params("postgresql://h/db", env).unwrap();
        assert_eq!(s.root, Some(RootCert::System));
        assert_eq!(s.mode, SslMode::Require);
        assert_eq!(s.effective_mode(), SslMode::VerifyCa);
        let (_, s) = split_tls_params("postgresql://h/db?sslmode=disable", env).unwrap();
        assert_eq!(s.mode, SslMode::Disable);
    }

    #[test]
    fn an_unknown_sslmode_is_refused_naming_it() {
        let e = split_tls_params("postgresql://h/db?sslmode=verify", none).unwrap_err();
        assert!(e.contains("unknown sslmode `verify`"), "{e}");
    }

    #[test]
    fn bad_root_certificate_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for (f, says) in [
            (&missing, "cannot read the root certificate file"),
            (&empty, "holds no PEM certificate"),
            (&garbage, "invalid certificate"),
        ] {
            let s = TlsSettings {
                mode: SslMode::VerifyFull,
                root: Some(RootCert::File(f.clone())),
            };
            let e = connector(&s).err().unwrap();
            assert!(
                e.contains(says) && e.contains(&f.display().to_string()),
                "{e}"
            );
        }
    }

    #[test]
    fn disable_needs_no_connector_and_prefer_needs_no_root() {
        let s = TlsSettings {
            mode: SslMode::Disable,
            root: None,
        };
        assert!(connector(&s).unwrap().is_none());
        let s = TlsSettings {
            mode: SslMode::Prefer,
            root: None,
        };
        assert!(connector(&s).unwrap().is_some());
    }
}
