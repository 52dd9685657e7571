//! A `driver = "sim"` cluster that outlives the `vmove` process (`state_file` on sim hosts).
//!
//! The simulated hosts live in the process's memory; a crash test needs them to survive a
//! `kill -9` of `vmove` so that `vmove resume` meets the same cluster. The simulator is
//! deterministic, so its state is kept as a *write-ahead log of the calls that change it*:
//! - the file's first line fixes the cluster's epoch (wall-clock ms) and speed;
//! - every state-changing call (start, abort, converge, remove leftover) is appended with the
//!   simulated time it happens at, and fsync'd, BEFORE it is applied (under the cluster's lock,
//!   so the log's order is the cluster's);
//! - a process opening the file rebuilds the cluster from the config, replays the log (advance
//!   to each call's time, apply it), and continues the clock from the epoch: simulated time went
//!   on while no process was there (a migration started before a crash may have finished since).
//!
//! A call logged and not applied (killed in between) is applied by the replay: like a real host
//! that acted on a request whose answer never came back. A torn last line is ignored (it was
//! never applied). Reads are not logged: they change nothing.

use crate::{SimClock, SimCluster, SimDriver};
use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vmove_core::io::LeftoverContext;
use vmove_core::model::{
    ConvergenceAid, Footprint, HostId, HostInfo, Leftover, Location, MigrationHandle,
    MigrationRequest, MigrationStatus, Preflight, Verification, VmId, VmInfo,
};
use vmove_core::time::Time;
use vmove_driver::{Driver, DriverError, DriverResult};

#[derive(Serialize, Deserialize)]
struct Header {
    epoch_ms: u64,
    speed: f64,
}

/// One state-changing call.
#[derive(Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
enum Call {
    Start {
        req: MigrationRequest,
    },
    Abort {
        req: MigrationRequest,
        handle: MigrationHandle,
    },
    Converge {
        req: MigrationRequest,
        handle: MigrationHandle,
        aid: ConvergenceAid,
    },
    Remove {
        req: MigrationRequest,
        leftover: Leftover,
        context: LeftoverContext,
    },
}

#[derive(Serialize, Deserialize)]
struct Line {
    at: u64,
    #[serde(flatten)]
    call: Call,
}

fn apply(c: &mut SimCluster, call: &Call) {
    // Replayed results are not needed: the cluster's state is.
    let _ = match call {
        Call::Start { req } => c.start_migration(req).map(|_| ()),
        Call::Abort { req, handle } => c.abort_migration(req, handle),
        Call::Converge { req, handle, aid } => c.converge(req, handle, *aid).map(|_| ()),
        Call::Remove {
            req,
            leftover,
            context,
        } => c.remove_leftover(req, leftover, *context),
    };
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A [`SimDriver`] whose state-changing calls are logged to a file first.
#[derive(Debug)]
pub struct PersistentSim {
    inner: SimDriver,
    log: Mutex<File>,
    path: PathBuf,
}

impl PersistentSim {
    /// Opens (or creates) the state file for `cluster`, the cluster built from the config.
    pub fn open(path: &Path, mut cluster: SimCluster, speed: f64) -> Result<PersistentSim> {
        let speed = speed.max(0.001);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "cannot create the sim state file's folder `{}`",
                    dir.display()
                )
            })?;
        }
        // A device, a FIFO or a folder is refused before it is opened (through symbolic links),
        // and what was opened is looked at again: `/dev/null` kept nothing of the cluster,
        // silently, and a FIFO blocked the run once its buffer was full.
        let not_a_file = |kind: &str| {
            anyhow::anyhow!(
                "the sim state file `{}` is not a regular file but {kind}: name a file for \
                 `state_file` (it is made if missing)",
                path.display()
            )
        };
        if let Some(kind) = std::fs::metadata(path)
            .ok()
            .as_ref()
            .and_then(vmove_driver::files::not_a_regular_file)
        {
            return Err(not_a_file(kind));
        }
        let log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("cannot open the sim state file `{}`", path.display()))?;
        if let Some(kind) = log
            .metadata()
            .ok()
            .as_ref()
            .and_then(vmove_driver::files::not_a_regular_file)
        {
            return Err(not_a_file(kind));
        }
        // One process at a time: two that replay the same file each believe they own the
        // cluster, and both moved the same VM. The lock (flock) goes with the process, so a
        // killed vmove leaves none behind for `resume` to trip on.
        match log.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "the sim state file `{}` is in use by another vmove process; wait for it to end (its hosts are its until then)",
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| {
                    format!("cannot lock the sim state file `{}`", path.display())
                });
            }
        }
        let existing = log.metadata().map(|m| m.len()).unwrap_or(0) > 0;
        let epoch_ms = if existing {
            let mut lines = BufReader::new(&log).lines();
            let head = lines.next().transpose()?.unwrap_or_default();
            let h: Header = serde_json::from_str(&head).with_context(|| {
                format!(
                    "the sim state file `{}` has no valid header",
                    path.display()
                )
            })?;
            if h.speed != speed {
                bail!(
                    "the sim state file `{}` was made at speed {}, the hosts now say {speed}",
                    path.display(),
                    h.speed
                );
            }
            for line in lines {
                let line = line?;
                // A torn last line was never applied.
                let Ok(l) = serde_json::from_str::<Line>(&line) else {
                    break;
                };
                cluster.advance_to(Time(l.at));
                apply(&mut cluster, &l.call);
            }
            h.epoch_ms
        } else {
            let epoch_ms = wall_ms();
            let mut f = &log;
            writeln!(f, "{}", serde_json::to_string(&Header { epoch_ms, speed })?)?;
            f.sync_all()?;
            epoch_ms
        };
        let elapsed_ms = wall_ms().saturating_sub(epoch_ms) as f64;
        let offset = Time(((elapsed_ms * speed) as u64).max(cluster.now().0));
        let clock = SimClock::Scaled {
            start: Instant::now(),
            speed,
            offset,
        };
        Ok(PersistentSim {
            inner: SimDriver::shared(Arc::new(Mutex::new(cluster)), clock),
            log: Mutex::new(log),
            path: path.to_path_buf(),
        })
    }

    /// Logs `call` at the cluster's time, then applies `f` under the same lock.
    fn logged<R>(
        &self,
        call: Call,
        f: impl FnOnce(&mut SimCluster) -> DriverResult<R>,
    ) -> DriverResult<R> {
        let mut c = self.inner.lock();
        let line = Line {
            at: c.now().0,
            call,
        };
        let text = serde_json::to_string(&line)
            .map_err(|e| DriverError::permanent(format!("sim state: {e}")))?;
        {
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            writeln!(log, "{text}")
                .and_then(|()| log.sync_data())
                .map_err(|e| {
                    DriverError::transient(format!(
                        "the sim state file `{}` cannot be written: {e}",
                        self.path.display()
                    ))
                })?;
        }
        f(&mut c)
    }
}

#[async_trait]
impl Driver for PersistentSim {
    fn kind(&self) -> &'static str {
        "sim"
    }

    fn hosts(&self) -> Vec<HostId> {
        self.inner.hosts()
    }

    async fn host_info(&self, host: &HostId) -> DriverResult<HostInfo> {
        self.inner.host_info(host).await
    }

    async fn list_vms(&self, host: &HostId) -> DriverResult<Vec<VmInfo>> {
        self.inner.list_vms(host).await
    }

    async fn footprint(&self, host: &HostId, vm: &VmId) -> DriverResult<Footprint> {
        self.inner.footprint(host, vm).await
    }

    async fn preflight(&self, req: &MigrationRequest) -> DriverResult<Preflight> {
        self.inner.preflight(req).await
    }

    async fn start_migration(&self, req: &MigrationRequest) -> DriverResult<MigrationHandle> {
        self.logged(Call::Start { req: req.clone() }, |c| c.start_migration(req))
    }

    async fn migration_status(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<MigrationStatus> {
        self.inner.migration_status(req, handle).await
    }

    async fn abort_migration(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
    ) -> DriverResult<()> {
        self.logged(
            Call::Abort {
                req: req.clone(),
                handle: handle.clone(),
            },
            |c| c.abort_migration(req, handle),
        )
    }

    async fn converge(
        &self,
        req: &MigrationRequest,
        handle: &MigrationHandle,
        aid: ConvergenceAid,
    ) -> DriverResult<bool> {
        self.logged(
            Call::Converge {
                req: req.clone(),
                handle: handle.clone(),
                aid,
            },
            |c| c.converge(req, handle, aid),
        )
    }

    async fn locate(&self, req: &MigrationRequest) -> DriverResult<Location> {
        self.inner.locate(req).await
    }

    async fn verify(&self, req: &MigrationRequest) -> DriverResult<Verification> {
        self.inner.verify(req).await
    }

    async fn leftovers(
        &self,
        req: &MigrationRequest,
        context: LeftoverContext,
    ) -> DriverResult<Vec<Leftover>> {
        self.inner.leftovers(req, context).await
    }

    async fn remove_leftover(
        &self,
        req: &MigrationRequest,
        leftover: &Leftover,
        context: LeftoverContext,
    ) -> DriverResult<()> {
        self.logged(
            Call::Remove {
                req: req.clone(),
                leftover: leftover.clone(),
                context,
            },
            |c| c.remove_leftover(req, leftover, context),
        )
    }
}
