//! Shared set-up: a fake with two hosts reached over HTTP + NTLM sealing, and the driver.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;
use vmove_driver::HostId;
use vmove_driver_hyperv::fake::{FakeHyperV, World};
use vmove_driver_hyperv::wsman::{AuthMethod, Credentials, Scheme};
use vmove_driver_hyperv::{HyperVDriver, HyperVHostConfig};

pub const USER: &str = "LAB\\vmove-ops";
/// A test-only password for the fake; not a secret anywhere.
pub const PASSWORD: &str = "fake-only-P@ss";

pub fn creds() -> Credentials {
    Credentials::new(USER, PASSWORD)
}

pub fn world() -> World {
    let mut w = World::new();
    w.add_host("hv1", "HV1", &["C:", "E:"]);
    w.add_host("hv2", "HV2", &["C:", "E:"]);
    w
}

pub fn host_config(fake: &FakeHyperV, host: &str, request_timeout_secs: u64) -> HyperVHostConfig {
    HyperVHostConfig {
        address: "127.0.0.1".into(),
        port: Some(fake.addr(host).unwrap().port()),
        transport: Scheme::Http,
        auth: AuthMethod::Ntlm,
        realm: None,
        kdc: None,
        spn: None,
        ca_file: None,
        insecure_skip_verify: false,
        credentials_file: None,
        // hv1's computer name is looked up through WMI; hv2's is configured.
        host_name: if host == "hv2" {
            Some("HV2".into())
        } else {
            None
        },
        request_timeout_secs: Some(request_timeout_secs),
        connect_timeout_secs: Some(5),
    }
}

pub async fn start(world: World) -> (FakeHyperV, HyperVDriver) {
    let fake = FakeHyperV::start(world, &creds()).await.unwrap();
    let driver = HyperVDriver::new(vec![
        (HostId::new("hv1"), host_config(&fake, "hv1", 10), creds()),
        (HostId::new("hv2"), host_config(&fake, "hv2", 10), creds()),
    ]);
    (fake, driver)
}

/// Polls `f` (advancing the fake's clock by `step` each time) until it returns Some.
pub async fn eventually<T, Fut>(
    fake: &FakeHyperV,
    step: Duration,
    tries: usize,
    mut f: impl FnMut() -> Fut,
) -> Option<T>
where
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..tries {
        if let Some(t) = f().await {
            return Some(t);
        }
        fake.advance(step);
    }
    None
}
