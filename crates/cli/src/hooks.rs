//! Maintenance hooks: per host, a command run before an evacuation of it starts
//! (`before_evacuate`: put the host in maintenance, stop placement onto it) and one after the
//! evacuation ends (`after_evacuate`: tell monitoring). Each is an argv array run without a
//! shell, with `VMOVE_HOST`, `VMOVE_RUN_ID` and `VMOVE_PHASE` (`before_evacuate` or
//! `after_evacuate`) in its environment, in a process group of its own, killed after
//! `hook_timeout`; when it ends, by itself or killed, every process it left in its group is
//! killed too. Its exit code and the last [`OUTPUT_LIMIT`] bytes of its output (stdout and
//! stderr together) are shown and journaled, with URIs' user information hidden as in the logs.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How much of a hook's output is kept: its last 64 KiB.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    BeforeEvacuate,
    AfterEvacuate,
}

impl Phase {
    /// The name in the config and in `VMOVE_PHASE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::BeforeEvacuate => "before_evacuate",
            Phase::AfterEvacuate => "after_evacuate",
        }
    }
}

/// How a hook ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Its exit code (`None`: killed by a signal, timed out, or never started).
    pub code: Option<i32>,
    /// Killed after the time-out.
    pub timed_out: bool,
    /// Why it could not be started at all.
    pub spawn_error: Option<String>,
    /// The last [`OUTPUT_LIMIT`] bytes of its output, redacted.
    pub output: String,
    /// Whether older output was dropped.
    pub truncated: bool,
}

impl Outcome {
    /// Whether the hook succeeded (exit 0 in time).
    pub fn ok(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// One line: `host hv-01: before_evacuate hook `/x/drain` exited 3`.
    pub fn headline(&self, host: &str, phase: Phase, argv: &[String]) -> String {
        let how = if let Some(e) = &self.spawn_error {
            format!("could not be started: {e}")
        } else if self.timed_out {
            "did not end in time and was killed".to_owned()
        } else {
            match self.code {
                Some(0) => "succeeded (exit 0)".to_owned(),
                Some(c) => format!("failed (exit {c})"),
                None => "was killed by a signal".to_owned(),
            }
        };
        format!(
            "host {host}: {} hook `{}` {how}",
            phase.as_str(),
            argv.first().map(String::as_str).unwrap_or("")
        )
    }

    /// The headline and the output, as journaled and shown.
    pub fn text(&self, host: &str, phase: Phase, argv: &[String]) -> String {
        let mut t = self.headline(host, phase, argv);
        if !self.output.trim().is_empty() {
            t.push_str(if self.truncated {
                "; its output (last 64 KiB):\n"
            } else {
                "; its output:\n"
            });
            t.push_str(self.output.trim_end());
        }
        t
    }
}

/// How long the output of a hook that has ended is waited for: only a process it left in a
/// session of its own (`setsid`) can still hold the pipe open then.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Runs one hook to its end or its time-out, in a process group of its own: when it ends (or
/// is killed at its time-out), whatever it started and left running in that group is killed
/// too (SIGKILL to the group), so nothing it started outlives it or holds its output open.
/// What it printed before then is kept (its last [`OUTPUT_LIMIT`] bytes), even when a process
/// that left the group still holds the output open (given up on after [`OUTPUT_GRACE`]).
pub fn run(argv: &[String], host: &str, run_id: &str, phase: Phase, timeout: Duration) -> Outcome {
    let mut out = Outcome {
        code: None,
        timed_out: false,
        spawn_error: None,
        output: String::new(),
        truncated: false,
    };
    let Some((program, args)) = argv.split_first() else {
        out.spawn_error = Some("the command is empty".into());
        return out;
    };
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => {
            out.spawn_error = Some(format!("cannot make a pipe: {e}"));
            return out;
        }
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => {
            out.spawn_error = Some(format!("cannot make a pipe: {e}"));
            return out;
        }
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .env("VMOVE_HOST", host)
        .env("VMOVE_RUN_ID", run_id)
        .env("VMOVE_PHASE", phase.as_str());
    #[cfg(unix)]
    {
        // Its own process group, led by it: what it starts joins it, and is killed with it.
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            out.spawn_error = Some(format!("{program}: {e}"));
            return out;
        }
    };
    // `cmd` holds the pipe's write ends: dropped, the reader sees the end when the hook (and
    // whatever it left running with the pipe) is done.
    drop(cmd);
    // The output is read as it comes into `kept`, so what was read is there however long a
    // process that holds the pipe lives.
    let kept = std::sync::Arc::new(std::sync::Mutex::new(Tail::default()));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    {
        let kept = kept.clone();
        std::thread::spawn(move || {
            tail(reader, &kept);
            let _ = done_tx.send(());
        });
    }
    let start = Instant::now();
    loop {
        match exited(&mut child) {
            Ok(true) => {
                end_group(&mut child);
                match child.wait() {
                    Ok(status) => out.code = status.code(),
                    Err(e) => out.spawn_error = Some(format!("cannot wait for it: {e}")),
                }
                break;
            }
            Ok(false) if start.elapsed() >= timeout => {
                end_group(&mut child);
                let _ = child.wait();
                out.timed_out = true;
                break;
            }
            Ok(false) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                out.spawn_error = Some(format!("cannot wait for it: {e}"));
                end_group(&mut child);
                let _ = child.wait();
                break;
            }
        }
    }
    // Its group is gone: the pipe ends at once, unless a process left the group (`setsid`).
    let _ = done_rx.recv_timeout(OUTPUT_GRACE);
    let tail = std::mem::take(&mut *kept.lock().unwrap_or_else(|p| p.into_inner()));
    out.output = vmove_driver::redact_uris(&String::from_utf8_lossy(&tail.bytes)).into_owned();
    out.truncated = tail.truncated;
    out
}

/// Whether the hook has exited, without reaping it (on Unix): while it is a zombie its process
/// id, which is its group's, cannot be taken by another process, so [`end_group`] kills only
/// what it left.
#[cfg(unix)]
fn exited(child: &mut std::process::Child) -> std::io::Result<bool> {
    use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
    waitid(
        WaitId::Pid(Pid::from_child(child)),
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
    )
    .map(|status| status.is_some())
    .map_err(std::io::Error::from)
}

#[cfg(not(unix))]
fn exited(child: &mut std::process::Child) -> std::io::Result<bool> {
    child.try_wait().map(|s| s.is_some())
}

/// Kills the hook's process group (the hook, if it still runs, and every process it started
/// that is still in the group). A group already gone is fine.
#[cfg(unix)]
fn end_group(child: &mut std::process::Child) {
    use rustix::process::{Pid, Signal, kill_process_group};
    if kill_process_group(Pid::from_child(child), Signal::KILL).is_err() {
        let _ = child.kill();
    }
}

#[cfg(not(unix))]
fn end_group(child: &mut std::process::Child) {
    let _ = child.kill();
}

/// The last [`OUTPUT_LIMIT`] bytes read, and whether older ones were dropped.
#[derive(Debug, Default)]
struct Tail {
    bytes: Vec<u8>,
    truncated: bool,
}

/// Reads to the end into `kept`, keeping the last [`OUTPUT_LIMIT`] bytes.
fn tail(mut r: impl Read, kept: &std::sync::Mutex<Tail>) {
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut k = kept.lock().unwrap_or_else(|p| p.into_inner());
                k.bytes.extend_from_slice(&buf[..n]);
                if k.bytes.len() > OUTPUT_LIMIT {
                    let cut = k.bytes.len() - OUTPUT_LIMIT;
                    k.bytes.drain(..cut);
                    k.truncated = true;
                }
            }
        }
    }
}

/// Runs the `phase` hooks of `hosts` (those that have one), each shown on stderr and noted in
/// the run's journal. Before an evacuation the first failing hook ends the phase (no other
/// host is put into maintenance) and is returned; after it every hook runs and the failures are
/// returned.
pub(crate) async fn run_phase(
    cfg: &crate::config::ConfigFile,
    hosts: &[vmove_core::HostId],
    phase: Phase,
    run_id: &str,
    timeout: Duration,
    journaling: Option<&crate::execute::Journaling>,
) -> Vec<String> {
    let mut failed = Vec::new();
    for h in hosts {
        let Some(c) = cfg.hosts.get(h) else { continue };
        let hook = match phase {
            Phase::BeforeEvacuate => &c.before_evacuate,
            Phase::AfterEvacuate => &c.after_evacuate,
        };
        let Some(argv) = hook.clone() else { continue };
        let (host, rid) = (h.to_string(), run_id.to_owned());
        let a = argv.clone();
        let o = tokio::task::spawn_blocking(move || run(&a, &host, &rid, phase, timeout))
            .await
            .unwrap_or_else(|e| Outcome {
                code: None,
                timed_out: false,
                spawn_error: Some(format!("its task failed: {e}")),
                output: String::new(),
                truncated: false,
            });
        let host = h.to_string();
        let text = o.text(&host, phase, &argv);
        if o.ok() {
            errln!("vmove: {text}");
        } else if phase == Phase::BeforeEvacuate {
            errln!("vmove: error: {text}");
        } else {
            errln!("vmove: warning: {text}");
        }
        if let Some(j) = journaling {
            let (r, note) = (j.run.clone(), text.clone());
            if let Err(e) =
                vmove_journal::sink::with_journal(&j.journal, move |jj| jj.record_note(&r, &note))
                    .await
            {
                errln!("vmove: warning: the hook's outcome could not be journaled: {e}");
            }
        }
        if !o.ok() {
            failed.push(o.headline(&host, phase, &argv));
            if phase == Phase::BeforeEvacuate {
                break;
            }
        }
    }
    failed
}

/// The `before_evacuate` hooks of `hosts`, before anything moves: a failing one ends the run,
/// journaled as failed, with nothing moved, and is the error returned.
pub(crate) async fn before_run(
    cfg: &crate::config::ConfigFile,
    hosts: &[vmove_core::HostId],
    run_id: &str,
    timeout: Duration,
    journaling: Option<&crate::execute::Journaling>,
) -> anyhow::Result<()> {
    let failed = run_phase(
        cfg,
        hosts,
        Phase::BeforeEvacuate,
        run_id,
        timeout,
        journaling,
    )
    .await;
    let Some(f) = failed.first() else {
        return Ok(());
    };
    let message = format!("{f}; the evacuation was not started and nothing was moved");
    if let Some(j) = journaling {
        let (r, m) = (j.run.clone(), message.clone());
        if let Err(e) = vmove_journal::sink::with_journal(&j.journal, move |jj| {
            jj.finish_run(&r, vmove_journal::RunEnd::Failed(m))
        })
        .await
        {
            errln!("vmove: warning: the run's end could not be journaled: {e}");
        }
    }
    Err(anyhow::anyhow!(message))
}

/// The `after_evacuate` hooks of `hosts` once the run has ended, whatever its result (a failing
/// one is a warning). A run left to resume (its journal could not be written, or this process
/// is going away with it unfinished) has not ended: its hooks run when the resumed run ends.
pub(crate) async fn after_run(
    cfg: &crate::config::ConfigFile,
    hosts: &[vmove_core::HostId],
    run_id: &str,
    timeout: Duration,
    journaling: Option<&crate::execute::Journaling>,
) {
    let hooked = hosts
        .iter()
        .any(|h| cfg.hosts.get(h).is_some_and(|c| c.after_evacuate.is_some()));
    if !hooked {
        return;
    }
    if let Some(j) = journaling {
        let r = j.run.clone();
        let state = vmove_journal::sink::with_journal(&j.journal, move |jj| jj.run_summary(&r))
            .await
            .map(|s| s.state);
        if matches!(state, Ok(vmove_journal::RunState::Running)) {
            errln!(
                "vmove: run {run_id} is left to resume (`vmove resume {run_id}`): its after_evacuate hooks run when it ends"
            );
            return;
        }
    }
    run_phase(
        cfg,
        hosts,
        Phase::AfterEvacuate,
        run_id,
        timeout,
        journaling,
    )
    .await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn hook_gets_its_environment_and_its_output_and_code_are_kept() {
        let o = run(
            &sh("echo host=$VMOVE_HOST run=$VMOVE_RUN_ID phase=$VMOVE_PHASE; echo err >&2; exit 3"),
            "hv-01",
            "r-1",
            Phase::BeforeEvacuate,
            Duration::from_secs(20),
        );
        assert_eq!(o.code, Some(3));
        assert!(!o.ok());
        assert!(
            o.output
                .contains("host=hv-01 run=r-1 phase=before_evacuate"),
            "{}",
            o.output
        );
        assert!(o.output.contains("err"), "{}", o.output);
        assert!(
            o.headline("hv-01", Phase::BeforeEvacuate, &sh(""))
                .contains("exit 3")
        );
    }

    #[test]
    fn hook_past_its_timeout_is_killed_and_fails() {
        let t = Instant::now();
        let o = run(
            &sh("exec sleep 30"),
            "h",
            "r",
            Phase::AfterEvacuate,
            Duration::from_millis(300),
        );
        assert!(o.timed_out && !o.ok());
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn hook_output_keeps_only_its_last_64_kib_and_hides_passwords() {
        let o = run(
            &sh(
                "head -c 200000 /dev/zero | tr '\\0' x; echo; echo qemu+ssh://root:hunter2@h/system",
            ),
            "h",
            "r",
            Phase::AfterEvacuate,
            Duration::from_secs(20),
        );
        assert!(o.ok());
        assert!(o.truncated);
        assert!(o.output.len() <= OUTPUT_LIMIT + 64, "{}", o.output.len());
        assert!(
            !o.output.contains("hunter2"),
            "{}",
            &o.output[o.output.len() - 100..]
        );
    }

    /// A process the hook moved to a session of its own (`setsid`) is not killed with its
    /// group and holds the output open: what the hook printed is kept all the same (before, it
    /// was dropped after 2 s of waiting for the pipe's end).
    #[cfg(unix)]
    #[test]
    fn a_hook_whose_child_left_its_group_still_has_its_output_kept() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("detached.pid");
        let t = Instant::now();
        // The hook ends only once the detached process has left its group (it writes its pid
        // after `setsid`): ended sooner, the group's kill could reach that process before it
        // left, on a loaded machine (seen in CI: no pid file, and the test waited for it).
        let o = run(
            &sh(&format!(
                "setsid sh -c 'echo $$ > {f}; exec sleep 296' & \
                 while [ ! -s {f} ]; do sleep 0.01; done; echo kept-output; exit 0",
                f = pid_file.display()
            )),
            "h",
            "r",
            Phase::AfterEvacuate,
            Duration::from_secs(20),
        );
        // End the detached sleep this test started (only while it is still that sleep).
        let until = Instant::now() + Duration::from_secs(5);
        while !pid_file.exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            let pid = pid.trim();
            if std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x00296\x00")
            {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        assert!(o.ok(), "{o:?}");
        assert_eq!(o.output.trim(), "kept-output", "{o:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[test]
    fn hook_that_cannot_start_says_why() {
        let o = run(
            &["/nonexistent/hook".into()],
            "h",
            "r",
            Phase::BeforeEvacuate,
            Duration::from_secs(5),
        );
        assert!(!o.ok());
        let h = o.headline("h", Phase::BeforeEvacuate, &["/nonexistent/hook".into()]);
        assert!(h.contains("could not be started"), "{h}");
    }
}
