//! Shared set-up: a fake with two hosts reached over HTTP + NTLM sealing, and the driver; a
//! migration run to its end on the fake's clock; a Python venv for the independent clients.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use vmove_driver::{Driver, HostId, MigrationHandle, MigrationRequest, MigrationStatus};
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
    let driver = driver(&fake);
    (fake, driver)
}

/// A new driver for the fake's two hosts (a new one: as after a restart of vmove).
pub fn driver(fake: &FakeHyperV) -> HyperVDriver {
    HyperVDriver::new(vec![
        (HostId::new("hv1"), host_config(fake, "hv1", 10), creds()),
        (HostId::new("hv2"), host_config(fake, "hv2", 10), creds()),
    ])
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

/// Polls the migration (advancing the fake's clock by 500 ms between polls) until it ends; its
/// end. Panics after 100 polls.
pub async fn run_to_end(
    fake: &FakeHyperV,
    d: &HyperVDriver,
    r: &MigrationRequest,
    h: &MigrationHandle,
) -> MigrationStatus {
    for _ in 0..100 {
        match d.migration_status(r, h).await.unwrap() {
            MigrationStatus::Pending | MigrationStatus::Running(_) => {
                fake.advance(Duration::from_millis(500))
            }
            end => return end,
        }
    }
    panic!("migration never ended");
}

/// A Python venv `<target tmp dir>/<name>` in which the Python code `probe` runs without error:
/// reused when it does, else made (`python3 -m venv`, `pip install <packages>`) and probed again.
/// The error says what failed, with `hint` (what to check) when pip or the probe did.
pub fn python_venv(
    name: &str,
    probe: &str,
    packages: &[&str],
    hint: &str,
) -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let py = dir.join("bin/python");
    let ready = || {
        Command::new(&py)
            .args(["-c", probe])
            .status()
            .is_ok_and(|s| s.success())
    };
    if py.exists() && ready() {
        return Ok(py);
    }
    let st = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .status()
        .map_err(|e| format!("python3: {e}"))?;
    if !st.success() {
        return Err("python3 -m venv failed".into());
    }
    let st = Command::new(dir.join("bin/pip"))
        .args(["install", "-q"])
        .args(packages)
        .status()
        .map_err(|e| format!("pip: {e}"))?;
    if !st.success() || !ready() {
        return Err(format!(
            "pip install {} failed, or `{probe}` fails after it ({hint})",
            packages.join(" ")
        ));
    }
    Ok(py)
}
