//! Kerberos end to end: a real MIT KDC (krb5kdc, Debian `krb5-kdc` + `krb5-admin-server`) on
//! loopback with a realm of our own, principals for the user and for each fake host's
//! `HTTP/<name>`, the hosts' keys from the KDC's keytab; the driver gets its tickets from the KDC
//! through `sspi`, the fake accepts them through `sspi`'s Kerberos server side, and every message
//! is sealed with the Kerberos context (WinRM's HTTP message encryption).
//!
//! Skipped, with the reason printed, when the KDC programs are missing; CI sets
//! `VMOVE_REQUIRE_KERBEROS=1` so that a skip fails instead.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vmove_driver::*;
use vmove_driver_hyperv::fake::{FakeHyperV, FakeKerberos};
use vmove_driver_hyperv::wsman::sealing;
use vmove_driver_hyperv::wsman::{AuthMethod, Credentials};
use vmove_driver_hyperv::{HyperVDriver, HyperVHostConfig};

const REALM: &str = "VMOVE.TEST";
const USER: &str = "vmove-ops";
/// The address the KDC listens on (loopback only).
const KDC_ADDR: &str = "127.0.0.1";

fn spn(host: &str) -> String {
    format!("HTTP/{host}.vmove.test")
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A KDC of our own, killed (by its PID) and removed when dropped.
struct Kdc {
    child: Child,
    /// Its folder (database, configuration, keytab, log), removed once the KDC is killed.
    dir: tempfile::TempDir,
    port: u16,
    keytab: PathBuf,
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_with_stdin(cmd: &mut Command, stdin: &str) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {text}"));
    }
    Ok(text)
}

impl Kdc {
    /// Creates the realm, the user (with `password`, given on stdin, never in argv) and one
    /// `HTTP/<host>.vmove.test` principal per host with a random key written to a keytab, then
    /// starts krb5kdc on 127.0.0.1 at a free port. Err names what is missing.
    fn start(hosts: &[&str], password: &str) -> Result<Kdc, String> {
        let tools: Vec<PathBuf> = ["krb5kdc", "kdb5_util", "kadmin.local"]
            .iter()
            .map(|t| {
                find_tool(t).ok_or_else(|| {
                    format!("{t} not found (Debian packages krb5-kdc and krb5-admin-server)")
                })
            })
            .collect::<Result<_, _>>()?;
        let (krb5kdc, kdb5_util, kadmin) = (&tools[0], &tools[1], &tools[2]);
        let tmp = tempfile::Builder::new()
            .prefix("vmove-kdc-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let dir = tmp.path().to_path_buf();
        let port = {
            let l = std::net::TcpListener::bind((KDC_ADDR, 0)).map_err(|e| e.to_string())?;
            l.local_addr().unwrap().port()
        };
        let d = dir.display();
        std::fs::write(
            dir.join("krb5.conf"),
            format!(
                "[libdefaults]\n  default_realm = {REALM}\n  dns_lookup_kdc = false\n\
                 [realms]\n  {REALM} = {{\n    kdc = {KDC_ADDR}:{port}\n  }}\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("kdc.conf"),
            format!(
                "[kdcdefaults]\n  kdc_listen = {KDC_ADDR}:{port}\n  kdc_tcp_listen = {KDC_ADDR}:{port}\n\
                 [realms]\n  {REALM} = {{\n    database_name = {d}/principal\n    key_stash_file = {d}/stash\n\
                 \x20   acl_file = {d}/kadm5.acl\n    kdc_listen = {KDC_ADDR}:{port}\n    kdc_tcp_listen = {KDC_ADDR}:{port}\n\
                 \x20   supported_enctypes = aes256-cts-hmac-sha1-96:normal\n    max_life = 10h\n  }}\n\
                 [logging]\n  kdc = FILE:{d}/kdc.log\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let env = |c: &mut Command| {
            c.env("KRB5_CONFIG", dir.join("krb5.conf"))
                .env("KRB5_KDC_PROFILE", dir.join("kdc.conf"));
        };
        let master = uuid::Uuid::new_v4().simple().to_string();
        let mut c = Command::new(kdb5_util);
        c.args(["create", "-s", "-r", REALM]);
        env(&mut c);
        run_with_stdin(&mut c, &format!("{master}\n{master}\n"))?;
        let keytab = dir.join("http.keytab");
        // +requires_preauth, as Active Directory does by default: sspi refuses an AS-REP given
        // without pre-authentication.
        let mut script = format!("addprinc +requires_preauth {USER}\n{password}\n{password}\n");
        for h in hosts {
            let s = spn(h);
            script.push_str(&format!(
                "addprinc -randkey {s}\nktadd -k {} {s}\n",
                keytab.display()
            ));
        }
        let mut c = Command::new(kadmin);
        c.args(["-r", REALM]);
        env(&mut c);
        run_with_stdin(&mut c, &script)?;
        let mut c = Command::new(krb5kdc);
        c.args(["-n", "-r", REALM])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        env(&mut c);
        let child = c
            .spawn()
            .map_err(|e| format!("cannot start krb5kdc: {e}"))?;
        let mut kdc = Kdc {
            child,
            dir: tmp,
            port,
            keytab,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect((KDC_ADDR, port)).is_err() {
            if let Ok(Some(st)) = kdc.child.try_wait() {
                return Err(format!("krb5kdc exited ({st}): {}", kdc.log()));
            }
            if Instant::now() > deadline {
                return Err("krb5kdc did not listen within 15 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(kdc)
    }

    fn address(&self) -> String {
        format!("{KDC_ADDR}:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kdc.log")).unwrap_or_default()
    }
}

/// The KDC, or None after printing why the test is skipped (a failure under
/// VMOVE_REQUIRE_KERBEROS=1).
fn kdc_or_skip(hosts: &[&str], password: &str) -> Option<Kdc> {
    // The free port is picked before krb5kdc binds it: on a clash, try another.
    let mut started = Kdc::start(hosts, password);
    for _ in 0..2 {
        match &started {
            Err(e) if e.starts_with("krb5kdc") => started = Kdc::start(hosts, password),
            _ => break,
        }
    }
    match started {
        Ok(k) => Some(k),
        Err(e) => {
            assert!(
                std::env::var("VMOVE_REQUIRE_KERBEROS").is_err(),
                "VMOVE_REQUIRE_KERBEROS is set but no KDC could be started: {e}"
            );
            eprintln!("\n*** SKIPPED Kerberos test: {e} ***\n");
            println!("SKIPPED Kerberos test: {e}");
            None
        }
    }
}

fn kerberos_config(fake: &FakeHyperV, kdc: &Kdc, host: &str, auth: AuthMethod) -> HyperVHostConfig {
    let mut c = common::host_config(fake, host, 10);
    c.auth = auth;
    c.realm = Some(REALM.into());
    c.kdc = Some(kdc.address());
    c.spn = Some(spn(host));
    c
}

async fn start(password: &str) -> Option<(Kdc, FakeHyperV)> {
    let kdc = kdc_or_skip(&["hv1", "hv2"], password)?;
    let mut w = common::world();
    w.add_vm("hv1", "krb-web", true, 512, &[4, 6], "E:\\VMs\\krb-web");
    w.add_vm("hv1", "krb-off", false, 256, &[2], "E:\\VMs\\krb-off");
    let kerberos = FakeKerberos::from_keytab(
        &kdc.keytab,
        &format!("{USER}@{REALM}"),
        &[("hv1", &spn("hv1")), ("hv2", &spn("hv2"))],
    )
    .unwrap();
    // The fake's NTLM account is another one: only Kerberos can get in as USER.
    let fake = FakeHyperV::start_with_kerberos(w, &common::creds(), kerberos)
        .await
        .unwrap();
    Some((kdc, fake))
}

fn password() -> String {
    format!("Krb-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn kerberos_lists_and_moves_a_vm_over_http_with_kerberos_sealing() {
    let pw = password();
    let Some((kdc, fake)) = start(&pw).await else {
        return;
    };
    let creds = Credentials::new(USER, &pw);
    let d = HyperVDriver::new(vec![
        (
            HostId::new("hv1"),
            kerberos_config(&fake, &kdc, "hv1", AuthMethod::Kerberos),
            creds.clone(),
        ),
        (
            HostId::new("hv2"),
            kerberos_config(&fake, &kdc, "hv2", AuthMethod::Kerberos),
            creds.clone(),
        ),
    ]);
    let hv1 = HostId::new("hv1");
    let vms = d.list_vms(&hv1).await.unwrap();
    let web = vms.iter().find(|v| &*v.name == "krb-web").unwrap();
    assert_eq!(web.power, PowerState::Running);

    let r = MigrationRequest {
        vm: web.id.clone(),
        vm_name: "krb-web".into(),
        source: hv1.clone(),
        destination: HostId::new("hv2"),
        mode: MigrationMode::Live,
        layout: PathLayout {
            base: Some("E:\\Hyper-V".into()),
            put_in_subfolder: true,
            preserve_drive_letter: false,
        },
        attempt: 1,
        run_id: "krb".into(),
    };
    let h = d.start_migration(&r).await.unwrap();
    assert_eq!(
        common::run_to_end(&fake, &d, &r, &h).await,
        MigrationStatus::Completed
    );
    let v = d.verify(&r).await.unwrap();
    assert!(v.is_proof(), "{v:?}");
    assert!(
        d.list_vms(&r.destination)
            .await
            .unwrap()
            .iter()
            .any(|v| v.id == r.vm && v.power == PowerState::Running)
    );
    assert!(!d.list_vms(&hv1).await.unwrap().iter().any(|v| v.id == r.vm));

    let (logons, sealed) = fake.with(|w| (w.calls.kerberos_logons.clone(), w.calls.sealed.clone()));
    let principal = format!("{USER}@{REALM}");
    assert!(
        logons.iter().any(|(h, c)| h == "hv1" && c == &principal),
        "{logons:?}"
    );
    assert!(
        logons.iter().any(|(h, c)| h == "hv2" && c == &principal),
        "{logons:?}"
    );
    // Every message went sealed with the Kerberos protocol, none with SPNEGO/NTLM.
    assert!(
        sealed.get(sealing::PROTOCOL_KERBEROS).copied().unwrap_or(0) > 10,
        "{sealed:?}"
    );
    assert_eq!(sealed.get(sealing::PROTOCOL), None, "{sealed:?}");
    // The wrap token's size, as SSPI reports it for AES (cbSecurityTrailer): 16 header, 16
    // confounder, 16 encrypted header copy, 12 checksum.
    let lens = fake.with(|w| w.calls.sealed_header_lens.clone());
    assert_eq!(
        lens.get(sealing::PROTOCOL_KERBEROS)
            .map(|s| s.iter().copied().collect::<Vec<_>>()),
        Some(vec![60]),
        "{lens:?}"
    );
    // The tickets came from our KDC: an AS and a TGS exchange for each host's HTTP principal.
    let log = kdc.log();
    assert!(log.contains("AS_REQ"), "{log}");
    for host in ["hv1", "hv2"] {
        assert!(
            log.contains(&format!("{}@{REALM}", spn(host))),
            "no ticket for {} in the KDC log:\n{log}",
            spn(host)
        );
    }
    assert!(!format!("{d:?}").contains(&pw));
}

#[tokio::test]
async fn negotiate_with_a_realm_uses_kerberos_and_spnego_sealing() {
    let pw = password();
    let Some((kdc, fake)) = start(&pw).await else {
        return;
    };
    let d = HyperVDriver::new(vec![(
        HostId::new("hv1"),
        kerberos_config(&fake, &kdc, "hv1", AuthMethod::Negotiate),
        Credentials::new(format!("{USER}@{}", REALM.to_lowercase()), &pw),
    )]);
    let vms = d.list_vms(&HostId::new("hv1")).await.unwrap();
    assert_eq!(vms.len(), 2);
    let (logons, sealed) = fake.with(|w| (w.calls.kerberos_logons.clone(), w.calls.sealed.clone()));
    assert_eq!(logons.len(), 1, "{logons:?}");
    assert!(
        sealed.get(sealing::PROTOCOL).copied().unwrap_or(0) > 0,
        "{sealed:?}"
    );
    assert_eq!(sealed.get(sealing::PROTOCOL_KERBEROS), None, "{sealed:?}");
}

#[tokio::test]
async fn kerberos_refusals_name_the_cause_and_never_print_the_password() {
    let pw = password();
    let Some((kdc, fake)) = start(&pw).await else {
        return;
    };
    let hv1 = HostId::new("hv1");
    // A wrong password: the KDC refuses the pre-authentication.
    let bad = HyperVDriver::new(vec![(
        hv1.clone(),
        kerberos_config(&fake, &kdc, "hv1", AuthMethod::Kerberos),
        Credentials::new(USER, "not-the-password-42"),
    )]);
    let e = bad.list_vms(&hv1).await.unwrap_err();
    assert!(e.message.contains("Kerberos"), "{e}");
    assert!(!e.message.contains("not-the-password-42"), "{e}");
    // A principal the KDC does not know: no ticket.
    let mut cfg = kerberos_config(&fake, &kdc, "hv1", AuthMethod::Kerberos);
    cfg.spn = Some("HTTP/nowhere.vmove.test".into());
    let e = HyperVDriver::new(vec![(hv1.clone(), cfg, Credentials::new(USER, &pw))])
        .list_vms(&hv1)
        .await
        .unwrap_err();
    assert!(e.message.contains("HTTP/nowhere.vmove.test"), "{e}");
    // A ticket for another host's principal: that host's listener refuses it (HTTP 401).
    let mut cfg = kerberos_config(&fake, &kdc, "hv1", AuthMethod::Kerberos);
    cfg.spn = Some(spn("hv2"));
    let e = HyperVDriver::new(vec![(hv1.clone(), cfg, Credentials::new(USER, &pw))])
        .list_vms(&hv1)
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(
        e.message.contains("401") || e.message.contains("refused"),
        "{e}"
    );
    // No realm anywhere: refused before any network, naming what is missing.
    let mut cfg = kerberos_config(&fake, &kdc, "hv1", AuthMethod::Kerberos);
    cfg.realm = None;
    let e = HyperVDriver::new(vec![(hv1.clone(), cfg, Credentials::new(USER, &pw))])
        .list_vms(&hv1)
        .await
        .unwrap_err();
    assert!(e.message.contains("realm"), "{e}");
    // A KDC that does not answer: a clear error, within the connect timeout.
    let dead = std::net::TcpListener::bind((KDC_ADDR, 0)).unwrap();
    let mut cfg = kerberos_config(&fake, &kdc, "hv1", AuthMethod::Kerberos);
    cfg.kdc = Some(format!("{KDC_ADDR}:{}", dead.local_addr().unwrap().port()));
    cfg.connect_timeout_secs = Some(2);
    let t0 = Instant::now();
    let e = HyperVDriver::new(vec![(hv1.clone(), cfg, Credentials::new(USER, &pw))])
        .list_vms(&hv1)
        .await
        .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(10), "{e}");
    assert!(
        e.message.contains("KDC") || e.message.contains("within"),
        "{e}"
    );
    assert_eq!(fake.with(|w| w.calls.kerberos_logons.len()), 0);
}

/// A DNS server on 127.0.0.1 for the test's realm only: answers `_kerberos._tcp.<realm>` SRV
/// queries with `localhost:<port>` and every other query with an empty answer. It answers at most
/// `max` queries and stops after `life` or when `stop` is set.
fn tiny_dns(
    port: u16,
    max: usize,
    life: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u16, std::thread::JoinHandle<usize>) {
    let sock = std::net::UdpSocket::bind((KDC_ADDR, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let dns_port = sock.local_addr().unwrap().port();
    let want = format!("_kerberos._tcp.{}", REALM.to_ascii_lowercase());
    let t = std::thread::spawn(move || {
        let deadline = Instant::now() + life;
        let mut answered = 0;
        let mut buf = [0u8; 1500];
        while answered < max
            && Instant::now() < deadline
            && !stop.load(std::sync::atomic::Ordering::Relaxed)
        {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let q = &buf[..n];
            if n < 17 {
                continue;
            }
            // The question: labels from byte 12, then type and class.
            let mut i = 12;
            let mut labels = Vec::new();
            while i < n && q[i] != 0 {
                let l = q[i] as usize;
                labels.push(String::from_utf8_lossy(&q[i + 1..(i + 1 + l).min(n)]).into_owned());
                i += 1 + l;
            }
            let qend = i + 5; // the zero label, type, class
            if qend > n {
                continue;
            }
            let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
            let name = labels.join(".").to_ascii_lowercase();
            let srv = qtype == 33 && name == want;
            let mut r = Vec::new();
            r.extend_from_slice(&q[..2]); // id
            r.extend_from_slice(&[0x81, 0x80]); // response, RD, RA, NOERROR
            r.extend_from_slice(&1u16.to_be_bytes());
            r.extend_from_slice(&u16::from(srv).to_be_bytes());
            r.extend_from_slice(&[0, 0, 0, 0]);
            r.extend_from_slice(&q[12..qend]);
            if srv {
                r.extend_from_slice(&[0xC0, 0x0C, 0, 33, 0, 1, 0, 0, 0, 60]);
                let mut rdata = Vec::new();
                rdata.extend_from_slice(&0u16.to_be_bytes()); // priority
                rdata.extend_from_slice(&0u16.to_be_bytes()); // weight
                rdata.extend_from_slice(&port.to_be_bytes());
                rdata.extend_from_slice(b"\x09localhost\x00");
                r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                r.extend_from_slice(&rdata);
            }
            let _ = sock.send_to(&r, from);
            answered += 1;
        }
        answered
    });
    (dns_port, t)
}

/// `f`'s name as the test harness knows it: its module path without the binary's name (this file
/// is a module of the crate's one integration-test binary).
fn harness_name(f: &str) -> String {
    let m = module_path!();
    format!("{}::{f}", m.split_once("::").map_or(m, |(_, rest)| rest))
}

/// Runs `kdc_discovery_child` in a child process of this test binary with `env` (the KDC look-up
/// reads process-wide variables, which this process's other tests must not see).
fn run_child(env: &[(&str, String)]) {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        harness_name("kdc_discovery_child").as_str(),
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    assert!(
        text.contains("listed 2 VMs through the KDC found by"),
        "{text}"
    );
}

#[tokio::test]
async fn without_kdc_the_kdc_is_found_through_krb5_conf_or_dns_srv() {
    let pw = password();
    let Some(kdc) = kdc_or_skip(&["hv1"], &pw) else {
        return;
    };
    let base = [
        ("VMOVE_KRB_CHILD_PW", pw.clone()),
        ("VMOVE_KRB_CHILD_KEYTAB", kdc.keytab.display().to_string()),
    ];
    // krb5.conf ([realms] VMOVE.TEST kdc = 127.0.0.1:<port>), as `kinit` would use it.
    let mut env = base.to_vec();
    env.push(("VMOVE_KRB_CHILD", "krb5.conf".into()));
    env.push((
        "KRB5_CONFIG",
        kdc.dir.path().join("krb5.conf").display().to_string(),
    ));
    run_child(&env);
    // DNS: no krb5.conf; the realm's _kerberos._tcp SRV record names localhost:<port>.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (dns_port, dns) = tiny_dns(kdc.port, 50, Duration::from_secs(60), stop.clone());
    let mut env = base.to_vec();
    env.push(("VMOVE_KRB_CHILD", "DNS SRV".into()));
    env.push(("KRB5_CONFIG", "/nonexistent/krb5.conf".into()));
    env.push(("SSPI_DNS_URL", format!("udp://{KDC_ADDR}:{dns_port}")));
    run_child(&env);
    drop(kdc);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(dns.join().unwrap() >= 1, "the DNS server was never asked");
}

/// The child of `without_kdc_the_kdc_is_found_through_krb5_conf_or_dns_srv`.
#[tokio::test]
#[ignore = "run by without_kdc_the_kdc_is_found_through_krb5_conf_or_dns_srv in a child process"]
async fn kdc_discovery_child() {
    let how = std::env::var("VMOVE_KRB_CHILD").expect("run by its parent test");
    let pw = std::env::var("VMOVE_KRB_CHILD_PW").unwrap();
    let keytab = PathBuf::from(std::env::var("VMOVE_KRB_CHILD_KEYTAB").unwrap());
    let mut w = common::world();
    w.add_vm("hv1", "a", true, 256, &[1], "E:\\VMs\\a");
    w.add_vm("hv1", "b", false, 256, &[1], "E:\\VMs\\b");
    let kerberos =
        FakeKerberos::from_keytab(&keytab, &format!("{USER}@{REALM}"), &[("hv1", &spn("hv1"))])
            .unwrap();
    let fake = FakeHyperV::start_with_kerberos(w, &common::creds(), kerberos)
        .await
        .unwrap();
    let mut cfg = common::host_config(&fake, "hv1", 10);
    cfg.auth = AuthMethod::Kerberos;
    cfg.realm = Some(REALM.into());
    cfg.kdc = None;
    cfg.spn = Some(spn("hv1"));
    let d = HyperVDriver::new(vec![(HostId::new("hv1"), cfg, Credentials::new(USER, &pw))]);
    let vms = d.list_vms(&HostId::new("hv1")).await.unwrap();
    assert_eq!(vms.len(), 2);
    assert_eq!(fake.with(|w| w.calls.kerberos_logons.len()), 1);
    println!("listed 2 VMs through the KDC found by {how}");
}

#[tokio::test]
async fn kerberos_over_https_authenticates_and_sends_plain_soap_inside_tls() {
    let pw = password();
    let Some(kdc) = kdc_or_skip(&["hv1"], &pw) else {
        return;
    };
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let chain = vec![cert.cert.der().clone()];
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let mut w = common::world();
    w.add_vm("hv1", "tls-krb", true, 256, &[1], "E:\\VMs\\tls-krb");
    let kerberos = FakeKerberos::from_keytab(
        &kdc.keytab,
        &format!("{USER}@{REALM}"),
        &[("hv1", &spn("hv1"))],
    )
    .unwrap();
    let fake = FakeHyperV::start_tls_with_kerberos(w, &common::creds(), chain, key, kerberos)
        .await
        .unwrap();
    let mut cfg = kerberos_config(&fake, &kdc, "hv1", AuthMethod::Kerberos);
    cfg.address = "localhost".into();
    cfg.transport = vmove_driver_hyperv::wsman::Scheme::Https;
    cfg.insecure_skip_verify = true;
    let d = HyperVDriver::new(vec![(HostId::new("hv1"), cfg, Credentials::new(USER, &pw))]);
    let vms = d.list_vms(&HostId::new("hv1")).await.unwrap();
    assert_eq!(vms.len(), 1);
    let (logons, sealed) = fake.with(|w| (w.calls.kerberos_logons.clone(), w.calls.sealed.clone()));
    assert_eq!(logons.len(), 1, "{logons:?}");
    assert!(
        sealed.is_empty(),
        "TLS carries the messages unsealed: {sealed:?}"
    );
}

/// An independent Kerberos client, MIT's GSSAPI through pypsrp/pyspnego, against the fake: its
/// AP-REQ accepted, our AP-REP accepted by MIT (mutual authentication), and messages sealed by
/// MIT's `gss_wrap_iov` unsealed by the fake and the fake's answers unwrapped by MIT. So the
/// Kerberos framing (60-byte header, rotation, `Length`) is not only our client agreeing with our
/// fake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pypsrp_over_mit_gssapi_authenticates_and_enumerates_with_kerberos_encryption() {
    let pw = password();
    let Some(kdc) = kdc_or_skip(&["hv1"], &pw) else {
        return;
    };
    // pypsrp and pyspnego's Kerberos back end (python-gssapi and krb5 over MIT libkrb5, built
    // from PyPI: needs Debian's libkrb5-dev and a C compiler).
    let py = match common::python_venv(
        "pypsrp-krb-venv",
        "import pypsrp, spnego._gss as g; assert g.HAS_GSSAPI",
        &["pypsrp>=0.8", "gssapi", "krb5"],
        "PyPI reachable? libkrb5-dev installed?",
    ) {
        Ok(p) => p,
        Err(e) => {
            assert!(
                std::env::var("VMOVE_REQUIRE_KERBEROS").is_err(),
                "VMOVE_REQUIRE_KERBEROS is set but pypsrp with Kerberos is not available: {e}"
            );
            eprintln!("\n*** SKIPPED pypsrp Kerberos cross-check: {e} ***\n");
            println!("SKIPPED pypsrp Kerberos cross-check: {e}");
            return;
        }
    };
    let mut w = common::world();
    w.add_vm("hv1", "py-a", true, 256, &[1], "E:\\VMs\\py-a");
    w.add_vm("hv1", "py-b", false, 256, &[1], "E:\\VMs\\py-b");
    let kerberos = FakeKerberos::from_keytab(
        &kdc.keytab,
        &format!("{USER}@{REALM}"),
        &[("hv1", &spn("hv1"))],
    )
    .unwrap();
    let fake = FakeHyperV::start_with_kerberos(w, &common::creds(), kerberos)
        .await
        .unwrap();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/pypsrp_kerberos_check.py");
    let ccache = kdc.dir.path().join("ccache");
    let out = tokio::process::Command::new(py)
        .arg(script)
        .args([
            fake.addr("hv1").unwrap().port().to_string(),
            "hv1.vmove.test".into(),
        ])
        .env("VMOVE_HYPERV_USER", format!("{USER}@{REALM}"))
        .env("VMOVE_HYPERV_PASSWORD", &pw)
        .env("KRB5_CONFIG", kdc.dir.path().join("krb5.conf"))
        .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pypsrp failed:\n{stdout}\n{stderr}");
    assert!(!stdout.contains(&pw) && !stderr.contains(&pw));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["names"], serde_json::json!(["py-a", "py-b"]), "{v}");
    assert_eq!(v["encryption"], sealing::PROTOCOL, "{v}");
    let (logons, lens) = fake.with(|w| {
        (
            w.calls.kerberos_logons.clone(),
            w.calls.sealed_header_lens.clone(),
        )
    });
    assert_eq!(logons, vec![("hv1".to_string(), format!("{USER}@{REALM}"))]);
    // MIT's wrap token for AES is as long as ours (see the sealing test above).
    assert_eq!(
        lens.get(sealing::PROTOCOL)
            .map(|s| s.iter().copied().collect::<Vec<_>>()),
        Some(vec![60]),
        "{lens:?}"
    );
}
