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
//! that acted on a request whose answer never came back. A torn last line (no line end) was
//! never applied: it is cut off the file, so that the next call logged starts a line of its
//! own; so is what a failed write left. A whole line that is not a call is refused, naming it.
//! Reads are not logged: they change nothing.

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

/// Longest line a state file may hold: a line is one call (a request and a leftover), a few
/// hundred bytes; one of a megabyte was not written by vmove, and is not read whole.
const MAX_LINE_BYTES: u64 = 1 << 20;

/// Replays the state file `log` (open, locked, at its start) onto `cluster`; the epoch its
/// header fixed, or `None` if it is empty (or holds only a header torn by a crash before its
/// first sync: nothing was logged after it), so that the caller writes one.
///
/// A torn last line (no line end: the process died in the middle of writing it, before it
/// was applied) is cut off the file, so that the next line logged starts a line of its own.
/// Before, the next line was written onto its end, and that joined line, unreadable, ended
/// every later replay there: the calls logged after it were lost. A whole line that is not a
/// call, or one over [`MAX_LINE_BYTES`], was not written by vmove: refused, naming its number,
/// with nothing changed (a replay that skipped it would rebuild another cluster).
fn replay(log: &File, path: &Path, cluster: &mut SimCluster, speed: f64) -> Result<Option<u64>> {
    use std::io::Read;
    let shown = path.display();
    let mut reader = BufReader::new(log);
    let mut buf = Vec::new();
    // Bytes of the file read as whole lines so far.
    let mut whole: u64 = 0;
    let mut epoch_ms = None;
    let mut number = 0u64;
    loop {
        buf.clear();
        let got = (&mut reader)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("cannot read the sim state file `{shown}`"))?;
        if got == 0 {
            break;
        }
        number += 1;
        if buf.last() != Some(&b'\n') {
            if got as u64 > MAX_LINE_BYTES {
                bail!(
                    "line {number} of the sim state file `{shown}` is longer than {MAX_LINE_BYTES} \
                     bytes: vmove did not write it (move the file away to start the cluster anew)"
                );
            }
            // Torn: cut it off (the file is ours, locked).
            log.set_len(whole)
                .and_then(|()| log.sync_all())
                .with_context(|| {
                    format!("cannot cut the torn last line off the sim state file `{shown}`")
                })?;
            break;
        }
        let text = std::str::from_utf8(&buf[..buf.len() - 1]).map_err(|_| {
            anyhow::anyhow!(
                "line {number} of the sim state file `{shown}` is not UTF-8 text: vmove did not \
                 write it (move the file away to start the cluster anew)"
            )
        })?;
        match epoch_ms {
            None => {
                let h: Header = serde_json::from_str(text)
                    .with_context(|| format!("the sim state file `{shown}` has no valid header"))?;
                if h.speed != speed {
                    bail!(
                        "the sim state file `{shown}` was made at speed {}, the hosts now say {speed}",
                        h.speed
                    );
                }
                epoch_ms = Some(h.epoch_ms);
            }
            Some(_) => {
                let l: Line = serde_json::from_str(text).with_context(|| {
                    format!(
                        "line {number} of the sim state file `{shown}` is not a call vmove \
                         logged (move the file away to start the cluster anew)"
                    )
                })?;
                cluster.advance_to(Time(l.at));
                apply(cluster, &l.call);
            }
        }
        whole += got as u64;
    }
    Ok(epoch_ms)
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The open state file, and how many of its bytes are whole lines: what a failed write left
/// past them (part of a line, on a full disk) is cut off before the next line is written, so
/// that each line starts a line of its own.
#[derive(Debug)]
struct Log {
    file: File,
    whole: u64,
}

/// A [`SimDriver`] whose state-changing calls are logged to a file first.
#[derive(Debug)]
pub struct PersistentSim {
    inner: SimDriver,
    log: Mutex<Log>,
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
        if let Some(kind) = vmove_driver::files::not_a_regular_file_at(path) {
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
        let epoch_ms = match replay(&log, path, &mut cluster, speed)? {
            Some(epoch_ms) => epoch_ms,
            None => {
                let epoch_ms = wall_ms();
                let mut f = &log;
                writeln!(f, "{}", serde_json::to_string(&Header { epoch_ms, speed })?)?;
                f.sync_all()?;
                epoch_ms
            }
        };
        let whole = log
            .metadata()
            .with_context(|| format!("cannot read the sim state file `{}`", path.display()))?
            .len();
        let elapsed_ms = wall_ms().saturating_sub(epoch_ms) as f64;
        let offset = Time(((elapsed_ms * speed) as u64).max(cluster.now().0));
        let clock = SimClock::Scaled {
            start: Instant::now(),
            speed,
            offset,
        };
        Ok(PersistentSim {
            inner: SimDriver::shared(Arc::new(Mutex::new(cluster)), clock),
            log: Mutex::new(Log { file: log, whole }),
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
            let failed = |e: std::io::Error| {
                DriverError::transient(format!(
                    "the sim state file `{}` cannot be written: {e}",
                    self.path.display()
                ))
            };
            let whole = log.whole;
            let file = &mut log.file;
            if file.metadata().map_err(failed)?.len() != whole {
                file.set_len(whole).map_err(failed)?;
            }
            let mut line = text.into_bytes();
            line.push(b'\n');
            file.write_all(&line)
                .and_then(|()| file.sync_data())
                .map_err(failed)?;
            log.whole += line.len() as u64;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Faults, HostSpec, VmSpec};
    use vmove_core::model::{MigrationMode, PathLayout};

    const GIB: u64 = 1 << 30;

    fn cluster() -> SimCluster {
        SimCluster::new(
            vec![HostSpec::new("a"), HostSpec::new("b")],
            vec![
                VmSpec::running("one", "a", GIB),
                VmSpec::running("two", "a", GIB),
            ],
            Faults::default(),
        )
        .unwrap()
    }

    fn req(c: &SimCluster, name: &str) -> MigrationRequest {
        let vm = c.vm_specs().find(|v| v.name == name).unwrap();
        MigrationRequest {
            vm: vm.id.clone(),
            vm_name: vm.name.as_str().into(),
            source: HostId::new("a"),
            destination: HostId::new("b"),
            mode: MigrationMode::Live,
            layout: PathLayout::default(),
            attempt: 1,
            run_id: "t".into(),
        }
    }

    /// Starts `name`'s migration through the log.
    fn start(sim: &PersistentSim, name: &str) {
        let r = req(&sim.inner.lock(), name);
        sim.logged(Call::Start { req: r.clone() }, |c| c.start_migration(&r))
            .unwrap();
    }

    /// Whether the cluster a fresh open of `path` replays has `name`'s migration under way.
    fn replayed_running(path: &Path, name: &str) -> bool {
        let sim = PersistentSim::open(path, cluster(), 1.0).unwrap();
        let c = sim.inner.lock();
        c.locate(&req(&c, name))
            .unwrap()
            .running_migration
            .is_some()
    }

    fn append(path: &Path, bytes: &[u8]) {
        let mut f = OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(bytes).unwrap();
    }

    /// A crash in the middle of a line left it without its end. Before, the next call logged
    /// was written onto it, and that joined line, unreadable, ended every later replay: the
    /// call was lost (here `two`'s migration, started after the crash, was not there).
    #[test]
    fn a_torn_last_line_is_cut_off_so_that_the_calls_logged_after_it_are_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.log");
        start(&PersistentSim::open(&path, cluster(), 1.0).unwrap(), "one");
        append(&path, br#"{"at":5,"call":"sta"#);
        start(&PersistentSim::open(&path, cluster(), 1.0).unwrap(), "two");
        assert!(replayed_running(&path, "one"));
        assert!(
            replayed_running(&path, "two"),
            "the call after the torn line was lost"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.ends_with('\n'));
    }

    /// What a failed write left (part of a line) is cut off before the next line is written.
    #[test]
    fn what_a_failed_write_left_is_cut_off_before_the_next_call_is_logged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.log");
        let sim = PersistentSim::open(&path, cluster(), 1.0).unwrap();
        start(&sim, "one");
        // As a write cut short by a full disk leaves it.
        append(&path, br#"{"at":7,"call":"abo"#);
        start(&sim, "two");
        drop(sim);
        assert!(replayed_running(&path, "one") && replayed_running(&path, "two"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("abo"), "{text}");
    }

    /// A whole line that is not a call, or one too long to be one, was not written by vmove:
    /// the file is refused naming the line, and left as it was. Before, the replay stopped
    /// there silently, and every call after it was lost.
    #[test]
    fn a_line_vmove_did_not_write_is_refused_naming_it_and_the_file_is_left_as_it_was() {
        for (bad, said) in [
            (b"not a call\n".to_vec(), "line 3 of the sim state file"),
            (vec![b'x'; 2 << 20], "line 3 of the sim state file"),
            (b"\xff\xfe\n".to_vec(), "not UTF-8"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("sim.log");
            start(&PersistentSim::open(&path, cluster(), 1.0).unwrap(), "one");
            append(&path, &bad);
            start_line_after(&path);
            let before = std::fs::read(&path).unwrap();
            let e = PersistentSim::open(&path, cluster(), 1.0)
                .unwrap_err()
                .to_string();
            assert!(e.contains(said) && e.contains("sim.log"), "{e}");
            assert_eq!(std::fs::read(&path).unwrap(), before, "{said}: changed");
        }
    }

    /// A good line after the bad one: the bad one is not the torn last line.
    fn start_line_after(path: &Path) {
        let c = cluster();
        let line = Line {
            at: 1,
            call: Call::Start {
                req: req(&c, "two"),
            },
        };
        append(
            path,
            format!("\n{}\n", serde_json::to_string(&line).unwrap()).as_bytes(),
        );
    }
}
