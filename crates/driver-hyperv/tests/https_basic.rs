//! HTTPS with Basic auth: TLS verified by default (a trusted CA file works, an unknown CA is
//! refused), and the explicit skip-verify option.
#![allow(clippy::unwrap_used)]

use crate::common;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use vmove_driver::*;
use vmove_driver_hyperv::HyperVDriver;
use vmove_driver_hyperv::fake::FakeHyperV;
use vmove_driver_hyperv::wsman::{AuthMethod, Scheme};

struct Pki {
    ca_pem: String,
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        chain: vec![leaf.der().clone()],
        key: rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    }
}

fn driver(
    fake: &FakeHyperV,
    ca_file: Option<std::path::PathBuf>,
    insecure: bool,
    auth: AuthMethod,
) -> HyperVDriver {
    let mut cfg = common::host_config(fake, "hv1", 5);
    cfg.address = "localhost".into();
    cfg.transport = Scheme::Https;
    cfg.auth = auth;
    cfg.ca_file = ca_file;
    cfg.insecure_skip_verify = insecure;
    HyperVDriver::new(vec![(HostId::new("hv1"), cfg, common::creds())])
}

#[tokio::test]
async fn https_basic_verifies_the_certificate_by_default() {
    let p = pki();
    let mut w = common::world();
    w.add_vm("hv1", "tls-vm", true, 256, &[8], "E:\\VMs\\tls-vm");
    let fake = FakeHyperV::start_tls(w, &common::creds(), p.chain.clone(), p.key.clone_key())
        .await
        .unwrap();
    let hv1 = HostId::new("hv1");

    // Unknown CA: refused (a transient connect-level error that names TLS).
    let e = driver(&fake, None, false, AuthMethod::Basic)
        .list_vms(&hv1)
        .await
        .unwrap_err();
    assert!(e.message.contains("TLS"), "{e}");

    // The CA given in ca_file: accepted, and the VM is listed.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &p.ca_pem).unwrap();
    let vms = driver(&fake, Some(ca.clone()), false, AuthMethod::Basic)
        .list_vms(&hv1)
        .await
        .unwrap();
    assert_eq!(vms.len(), 1);

    // Explicit skip-verify: accepted without the CA.
    assert_eq!(
        driver(&fake, None, true, AuthMethod::Basic)
            .list_vms(&hv1)
            .await
            .unwrap()
            .len(),
        1
    );

    // Basic with a wrong password is a permanent error.
    let mut cfg = common::host_config(&fake, "hv1", 5);
    cfg.address = "localhost".into();
    cfg.transport = Scheme::Https;
    cfg.auth = AuthMethod::Basic;
    cfg.ca_file = Some(ca);
    let bad = HyperVDriver::new(vec![(
        hv1.clone(),
        cfg,
        vmove_driver_hyperv::wsman::Credentials::new(common::USER, "nope"),
    )]);
    assert_eq!(
        bad.list_vms(&hv1).await.unwrap_err().class,
        ErrorClass::Permanent
    );
}

#[tokio::test]
async fn basic_over_plain_http_is_refused_without_sending_the_password() {
    let (fake, _) = common::start(common::world()).await;
    let mut cfg = common::host_config(&fake, "hv1", 5);
    cfg.auth = AuthMethod::Basic;
    let d = HyperVDriver::new(vec![(HostId::new("hv1"), cfg, common::creds())]);
    let e = d.list_vms(&HostId::new("hv1")).await.unwrap_err();
    assert!(e.message.contains("clear"), "{e}");
    // nothing reached the fake
    assert!(fake.with(|w| w.calls.queries.is_empty()));
}

#[tokio::test]
async fn ntlm_over_https_works_without_sealing() {
    let p = pki();
    let mut w = common::world();
    w.add_vm("hv1", "tls-ntlm", true, 256, &[8], "E:\\VMs\\tls-ntlm");
    let fake = FakeHyperV::start_tls(w, &common::creds(), p.chain.clone(), p.key.clone_key())
        .await
        .unwrap();
    let vms = driver(&fake, None, true, AuthMethod::Negotiate)
        .list_vms(&HostId::new("hv1"))
        .await
        .unwrap();
    assert_eq!(
        vms.iter().map(|v| &*v.name).collect::<Vec<_>>(),
        vec!["tls-ntlm"]
    );
}
