//! A stateful Hyper-V protocol fake (feature `test-util`): one WinRM HTTP listener per fake host
//! on 127.0.0.1, NTLM authentication through `sspi`'s server side, sealed messages, and the
//! WS-Management operations the driver uses (Enumerate/Pull with WQL, Get, Invoke).
//!
//! It is test code, but it is written to the wire format real hosts use (see
//! `docs/drivers/hyperv.md`), and an independent client (pypsrp) is run against it in the tests.

mod dispatch;
mod http;
mod invoke;
pub mod keytab;
mod migration;
pub mod model;
mod query;
pub mod schema;
mod setup;
mod state;
pub mod world;
pub mod wql;

use crate::wsman::Credentials;
use dispatch::ServerCtx;
use http::{ConnState, handle};
use hyper_util::rt::TokioIo;
pub use model::{FakeCheckpoint, FakeDrive, FakePlanned, Locale};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
pub use world::{
    FakeHost, FakeJob, FakeJobError, FakeRegKey, FakeVm, FakeWmiError, Fault, Faults, World,
};

/// The fake: a shared world and one listener per host.
#[derive(Clone)]
pub struct FakeHyperV {
    world: Arc<Mutex<World>>,
    addrs: BTreeMap<String, SocketAddr>,
    tasks: Arc<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for FakeHyperV {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHyperV")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeHyperV {
    fn drop(&mut self) {
        if Arc::strong_count(&self.tasks) == 1 {
            for t in self.tasks.iter() {
                t.abort();
            }
        }
    }
}
/// Kerberos for the fake: each host's `HTTP/<name>` key (from the KDC's keytab) and the one
/// client principal it accepts (`user@REALM`).
#[derive(Clone, Debug)]
pub struct FakeKerberos {
    /// Fake host -> its service key.
    pub services: BTreeMap<String, keytab::KeytabEntry>,
    /// The accepted client, `account@REALM` (compared case-insensitively).
    pub client: String,
}

impl FakeKerberos {
    /// Takes each host's key for its service principal (`HTTP/hv1.example`) from a keytab.
    pub fn from_keytab(
        path: &std::path::Path,
        client: &str,
        hosts: &[(&str, &str)],
    ) -> Result<FakeKerberos, String> {
        let entries = keytab::read(path)?;
        let mut services = BTreeMap::new();
        for (host, spn) in hosts {
            let want: Vec<&str> = spn.split('/').collect();
            let e = entries
                .iter()
                .filter(|e| {
                    e.components
                        .iter()
                        .map(String::as_str)
                        .eq(want.iter().copied())
                })
                .max_by_key(|e| e.kvno)
                .ok_or_else(|| format!("no key for {spn} in {}", path.display()))?;
            services.insert((*host).to_owned(), e.clone());
        }
        Ok(FakeKerberos {
            services,
            client: client.to_owned(),
        })
    }
}

impl FakeHyperV {
    /// Starts plain-HTTP listeners for every host already in `world`, accepting `creds` over
    /// NTLM with sealed messages (port 5985's behaviour).
    pub async fn start(world: World, creds: &Credentials) -> std::io::Result<FakeHyperV> {
        Self::start_inner(world, creds, None, None).await
    }

    /// Like [`FakeHyperV::start`], and each host also accepts Kerberos (raw krb5 GSS tokens under
    /// the `Negotiate` or `Kerberos` scheme, mutual authentication, sealed messages with either
    /// protocol) for its service principal, through `sspi`'s Kerberos server side.
    pub async fn start_with_kerberos(
        world: World,
        creds: &Credentials,
        kerberos: FakeKerberos,
    ) -> std::io::Result<FakeHyperV> {
        Self::start_inner(world, creds, None, Some(kerberos)).await
    }

    /// Starts HTTPS listeners (port 5986's behaviour) with the given certificate chain and key
    /// (DER), accepting `creds` over Basic and NTLM, messages not sealed.
    pub async fn start_tls(
        world: World,
        creds: &Credentials,
        chain: Vec<rustls_pki_types::CertificateDer<'static>>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
    ) -> std::io::Result<FakeHyperV> {
        Self::start_tls_inner(world, creds, chain, key, None).await
    }

    /// Like [`FakeHyperV::start_tls`], and each host also accepts Kerberos (messages not sealed:
    /// TLS protects them).
    pub async fn start_tls_with_kerberos(
        world: World,
        creds: &Credentials,
        chain: Vec<rustls_pki_types::CertificateDer<'static>>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
        kerberos: FakeKerberos,
    ) -> std::io::Result<FakeHyperV> {
        Self::start_tls_inner(world, creds, chain, key, Some(kerberos)).await
    }

    async fn start_tls_inner(
        world: World,
        creds: &Credentials,
        chain: Vec<rustls_pki_types::CertificateDer<'static>>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
        kerberos: Option<FakeKerberos>,
    ) -> std::io::Result<FakeHyperV> {
        let conf = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(std::io::Error::other)?;
        Self::start_inner(
            world,
            creds,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(conf))),
            kerberos,
        )
        .await
    }

    async fn start_inner(
        world: World,
        creds: &Credentials,
        tls: Option<tokio_rustls::TlsAcceptor>,
        kerberos: Option<FakeKerberos>,
    ) -> std::io::Result<FakeHyperV> {
        let hosts: Vec<String> = world.hosts.keys().cloned().collect();
        let world = Arc::new(Mutex::new(world));
        let mut addrs = BTreeMap::new();
        let mut tasks = Vec::new();
        for h in hosts {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            addrs.insert(h.clone(), listener.local_addr()?);
            let ctx = Arc::new(ServerCtx {
                world: world.clone(),
                user: creds.user.clone(),
                password: creds.password().to_owned(),
                tls: tls.is_some(),
                kerberos: kerberos
                    .as_ref()
                    .and_then(|k| k.services.get(&h).map(|e| (e.clone(), k.client.clone()))),
                host: h,
            });
            let tls = tls.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    {
                        let mut w = ctx.world.lock().unwrap_or_else(|p| p.into_inner());
                        *w.calls.connections.entry(ctx.host.clone()).or_default() += 1;
                    }
                    let ctx = ctx.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let conn = Arc::new(tokio::sync::Mutex::new(ConnState::default()));
                        let svc = hyper::service::service_fn(move |req| {
                            let ctx = ctx.clone();
                            let conn = conn.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(handle(&ctx, &conn, req).await)
                            }
                        });
                        let builder = hyper::server::conn::http1::Builder::new();
                        match tls {
                            Some(acceptor) => {
                                if let Ok(s) = acceptor.accept(stream).await {
                                    let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                                }
                            }
                            None => {
                                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                    });
                }
            }));
        }
        Ok(FakeHyperV {
            world,
            addrs,
            tasks: Arc::new(tasks),
        })
    }

    /// The listener of a host.
    pub fn addr(&self, host: &str) -> Option<SocketAddr> {
        self.addrs.get(host).copied()
    }

    /// Runs `f` on the world (under its lock).
    pub fn with<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut w)
    }

    /// Lets the virtual clock follow real time, `speed` times faster (for runs of the real CLI).
    pub fn run_clock(&self, speed: f64) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let step = Duration::from_millis(50);
            loop {
                tokio::time::sleep(step).await;
                me.advance(step.mul_f64(speed));
            }
        })
    }

    /// Advances the virtual clock and the jobs.
    pub fn advance(&self, d: Duration) {
        self.with(|w| {
            w.now_ms += d.as_millis() as u64;
            w.tick();
        });
    }
}
