//! Rendering a run: live progress (indicatif bars on a terminal, plain timestamped lines
//! otherwise), the per-VM record behind the final summary table, and `--report` files.

use async_trait::async_trait;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vmove_core::event::EventKind;
use vmove_core::spec::dur::format_duration;
use vmove_core::{Event, HostId, Phase, Snapshot, Time, VmId, WaitReason, fmt_bytes};
use vmove_runtime::{EventSink, SinkError};

/// A time for people: `12.3s`, `4m05s`, `1h02m`.
pub fn fmt_time(t: Time) -> String {
    let ms = t.as_millis();
    let s = ms / 1000;
    if s < 60 {
        format!("{}.{}s", s, (ms % 1000) / 100)
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s / 60) % 60)
    }
}

/// The record of one VM, built from events.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct VmRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Source host.
    pub source: Option<String>,
    /// Destination (last tried, or where it is now).
    pub destination: Option<String>,
    /// moved, unmigratable, cancelled or unfinished.
    pub outcome: String,
    /// Attempts made.
    pub attempts: u32,
    /// Why it did not move.
    pub reason: Option<String>,
    /// What happened on the way (waits, failed attempts, watchdogs, leftovers kept).
    pub notes: Vec<String>,
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// Disk, bytes.
    pub disk_bytes: u64,
    /// When its move ended (run time, seconds).
    pub finished_at_secs: Option<f64>,
}

/// The whole run, for the summary table and `--report`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Record {
    /// Run id.
    pub run_id: String,
    /// The command line's verb (`migrate`, `evacuate`, `demo`).
    pub command: String,
    /// Unix time the run started, seconds.
    pub started_unix: u64,
    /// Run time at the end, seconds.
    pub duration_secs: f64,
    /// all_moved, some_unmigratable, interrupted, failed.
    pub outcome: String,
    /// Moved VMs.
    pub moved: u32,
    /// Unmigratable VMs.
    pub unmigratable: u32,
    /// VMs not moved because the run stopped.
    pub cancelled: u32,
    /// Why the run failed as a whole.
    pub error: Option<String>,
    /// Every VM.
    pub vms: Vec<VmRow>,
    #[serde(skip)]
    index: HashMap<VmId, usize>,
}

impl Record {
    /// An empty record for a command.
    pub fn new(command: &str) -> Record {
        Record {
            command: command.to_owned(),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            ..Record::default()
        }
    }

    fn row(&mut self, vm: &VmId) -> &mut VmRow {
        let i = match self.index.get(vm) {
            Some(i) => *i,
            None => {
                self.vms.push(VmRow {
                    id: vm.to_string(),
                    name: vm.to_string(),
                    source: None,
                    destination: None,
                    outcome: "unfinished".into(),
                    attempts: 0,
                    reason: None,
                    notes: vec![],
                    memory_bytes: 0,
                    disk_bytes: 0,
                    finished_at_secs: None,
                });
                self.index.insert(vm.clone(), self.vms.len() - 1);
                self.vms.len() - 1
            }
        };
        &mut self.vms[i]
    }

    fn note(&mut self, vm: &VmId, note: String) {
        let r = self.row(vm);
        if !r.notes.contains(&note) {
            r.notes.push(note);
        }
    }

    /// Takes one event into the record.
    pub fn apply(&mut self, ev: &Event) {
        let secs = ev.at.as_millis() as f64 / 1000.0;
        match &ev.kind {
            EventKind::RunStarted { run_id, .. } => self.run_id = run_id.clone(),
            EventKind::Selected {
                vm,
                name,
                source,
                memory_bytes,
                disk_bytes,
                ..
            } => {
                let r = self.row(vm);
                r.name = name.clone();
                r.source = Some(source.to_string());
                r.memory_bytes = *memory_bytes;
                r.disk_bytes = *disk_bytes;
            }
            EventKind::Waiting { vm, reason } => match reason {
                WaitReason::BackingUp { since } => self.note(
                    vm,
                    format!("waited for a backup (seen from {})", fmt_time(*since)),
                ),
                WaitReason::OfflineAfterLive => {
                    self.note(vm, "powered off: moved after the running VMs".into())
                }
                WaitReason::MigratingByOther => {
                    self.note(vm, "waited for someone else's migration".into())
                }
                WaitReason::NoRoomYet => self.note(vm, "waited for room on a destination".into()),
                WaitReason::HostUnreachable => self.note(vm, "waited for a host to answer".into()),
                WaitReason::OtherJob(j) => self.note(vm, format!("waited for {j}")),
                // Slot waits and short-lived states are not worth a note.
                _ => {}
            },
            EventKind::AttemptStarted {
                vm,
                attempt,
                source,
                destination,
                ..
            } => {
                let r = self.row(vm);
                r.attempts = r.attempts.max(*attempt);
                r.source.get_or_insert_with(|| source.to_string());
                r.destination = Some(destination.to_string());
            }
            EventKind::AttemptFailed {
                vm,
                attempt,
                class,
                error,
                retry_at,
                ..
            } => {
                let class = serde_json::to_value(class)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let then = if retry_at.is_some() { ", retried" } else { "" };
                self.note(
                    vm,
                    format!("attempt {attempt} failed ({class}: {error}){then}"),
                );
            }
            EventKind::WatchdogFired { vm, attempt, which } => {
                self.note(vm, format!("{which} watchdog fired on attempt {attempt}"))
            }
            EventKind::Escalated { vm, aid, .. } => {
                self.note(vm, format!("convergence aid applied: {aid:?}"))
            }
            EventKind::LeftoverKept {
                vm,
                host,
                what,
                error,
            } => self.note(vm, format!("left {what} on {host}: {error}")),
            EventKind::LeftBehind { vm, .. } => {
                if let Some(text) = left_behind(&ev.kind) {
                    self.note(vm, text);
                }
            }
            EventKind::Moved {
                vm,
                name,
                destination,
                attempts,
            } => {
                let r = self.row(vm);
                r.name = name.clone();
                r.outcome = "moved".into();
                r.destination = Some(destination.to_string());
                r.attempts = r.attempts.max(*attempts);
                r.finished_at_secs = Some(secs);
            }
            EventKind::Unmigratable { vm, name, reason } => {
                let r = self.row(vm);
                r.name = name.clone();
                r.outcome = "unmigratable".into();
                r.reason = Some(reason.to_string());
                r.finished_at_secs = Some(secs);
            }
            EventKind::Cancelled { vm, name, reason } => {
                let r = self.row(vm);
                r.name = name.clone();
                r.outcome = "cancelled".into();
                r.reason = Some(reason.to_string());
                r.finished_at_secs = Some(secs);
            }
            EventKind::RunFailed { error } => self.error = Some(error.clone()),
            EventKind::RunFinished {
                moved,
                unmigratable,
                cancelled,
            } => {
                self.moved = *moved;
                self.unmigratable = *unmigratable;
                self.cancelled = *cancelled;
            }
            _ => {}
        }
        self.duration_secs = self.duration_secs.max(secs);
    }

    /// Counts outcomes from the rows (a report rebuilt from a journal has no final snapshot).
    pub fn tally(&mut self, end: Time) {
        let count = |o: &str| self.vms.iter().filter(|r| r.outcome == o).count() as u32;
        self.moved = count("moved");
        self.unmigratable = count("unmigratable");
        self.cancelled = count("cancelled");
        self.duration_secs = self.duration_secs.max(end.as_millis() as f64 / 1000.0);
    }

    /// Fills what events did not say from the final snapshot, and counts outcomes.
    pub fn finish(&mut self, snap: &Snapshot) {
        for v in &snap.vms {
            let r = self.row(&v.id);
            r.name = v.name.clone();
            r.source.get_or_insert_with(|| v.source.to_string());
            if let Some(d) = &v.destination {
                r.destination = Some(d.to_string());
            }
            r.attempts = r.attempts.max(v.attempts);
            r.outcome = match v.phase {
                Phase::Moved => "moved",
                Phase::Unmigratable => "unmigratable",
                Phase::Cancelled => "cancelled",
                _ => "unfinished",
            }
            .into();
            if let Some(reason) = &v.reason {
                r.reason = Some(reason.to_string());
            }
        }
        let count = |o: &str| self.vms.iter().filter(|r| r.outcome == o).count() as u32;
        self.moved = count("moved");
        self.unmigratable = count("unmigratable");
        self.cancelled = count("cancelled");
        self.duration_secs = self.duration_secs.max(snap.at.as_millis() as f64 / 1000.0);
        if self.error.is_none() {
            self.error = snap.failed.clone();
        }
    }

    /// The summary table.
    pub fn table(&self) -> String {
        let head = [
            "VM",
            "SOURCE",
            "DESTINATION",
            "OUTCOME",
            "ATTEMPTS",
            "REASON / NOTES",
        ];
        let rows: Vec<[String; 6]> = self
            .vms
            .iter()
            .map(|r| {
                let mut why: Vec<String> = r.reason.iter().cloned().collect();
                why.extend(r.notes.iter().cloned());
                [
                    r.name.clone(),
                    r.source.clone().unwrap_or_else(|| "-".into()),
                    r.destination.clone().unwrap_or_else(|| "-".into()),
                    r.outcome.clone(),
                    r.attempts.to_string(),
                    if why.is_empty() {
                        "-".into()
                    } else {
                        why.join("; ")
                    },
                ]
            })
            .collect();
        let mut w = head.map(str::len);
        for r in &rows {
            for (i, c) in r.iter().enumerate().take(5) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: [&str; 6]| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i < 5 {
                    s.push_str(&format!("{c:<width$}  ", width = w[i]));
                } else {
                    s.push_str(c);
                }
            }
            s.trim_end().to_owned() + "\n"
        };
        let mut out = line(head);
        for r in &rows {
            out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
        }
        out.push_str(&format!(
            "\n{} moved, {} unmigratable, {} cancelled in {}{}\n",
            self.moved,
            self.unmigratable,
            self.cancelled,
            fmt_time(Time((self.duration_secs * 1000.0) as u64)),
            self.error
                .as_ref()
                .map(|e| format!("; the run failed: {e}"))
                .unwrap_or_default()
        ));
        out
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        // Table cells: `|` would end the cell; control characters (a VM name is whatever its
        // hypervisor allows) are shown escaped, never written raw.
        let esc = |s: &str| {
            crate::stdio::printable(s)
                .replace('\n', "\\n")
                .replace('|', "\\|")
        };
        let mut out = format!(
            "# vmove run {}\n\n- command: `{}`\n- outcome: {}\n- duration: {}\n- moved: {}, unmigratable: {}, cancelled: {}\n",
            esc(&self.run_id),
            self.command,
            self.outcome,
            fmt_time(Time((self.duration_secs * 1000.0) as u64)),
            self.moved,
            self.unmigratable,
            self.cancelled
        );
        if let Some(e) = &self.error {
            out.push_str(&format!("- error: {}\n", esc(e)));
        }
        out.push_str("\n| VM | Source | Destination | Outcome | Attempts | Reason / notes |\n|---|---|---|---|---|---|\n");
        for r in &self.vms {
            let mut why: Vec<String> = r.reason.iter().cloned().collect();
            why.extend(r.notes.iter().cloned());
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                esc(&r.name),
                esc(r.source.as_deref().unwrap_or("-")),
                esc(r.destination.as_deref().unwrap_or("-")),
                esc(&r.outcome),
                r.attempts,
                esc(&why.join("; "))
            ));
        }
        out
    }

    /// Writes `--report`: Markdown when the name ends in `.md`, else JSON.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        use anyhow::Context;
        let md = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("md"));
        let text = if md {
            self.markdown()
        } else {
            serde_json::to_string_pretty(self).context("the report could not be serialised")? + "\n"
        };
        std::fs::write(path, text)
            .with_context(|| format!("cannot write the report `{}`", path.display()))
    }
}

/// Checks, before a run starts, that `--report` can be written (it used to be found only after
/// every VM moved): not a folder, its folder exists, and a file can be made or appended to
/// there. Nothing is left behind: a file made to check is removed again.
pub fn check_writable(path: &Path) -> anyhow::Result<()> {
    use anyhow::{Context, bail};
    if path.as_os_str().is_empty() {
        bail!("flag `--report`: an empty file name");
    }
    if path.is_dir() {
        bail!(
            "flag `--report`: `{}` is a folder, not a file",
            path.display()
        );
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "flag `--report`: the folder `{}` of `{}` does not exist",
            dir.display(),
            path.display()
        );
    }
    if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("flag `--report`: cannot write `{}`", path.display()))?;
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("flag `--report`: cannot write `{}`", path.display()))?;
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The shared record, filled by a [`RecordSink`].
pub type SharedRecord = Arc<Mutex<Record>>;

/// Locks a record (a poisoned lock still holds a usable record).
pub fn lock(r: &SharedRecord) -> std::sync::MutexGuard<'_, Record> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

/// Fills a [`Record`] from the events.
#[derive(Debug, Clone)]
pub struct RecordSink(pub SharedRecord);

#[async_trait]
impl EventSink for RecordSink {
    fn name(&self) -> &str {
        "report"
    }
    async fn on_event(&mut self, event: &Event) -> Result<(), SinkError> {
        lock(&self.0).apply(event);
        Ok(())
    }
    async fn on_finish(&mut self, snapshot: &Snapshot) -> Result<(), SinkError> {
        lock(&self.0).finish(snapshot);
        Ok(())
    }
}

/// One line for a person about an event, or `None` for events too fine to print.
pub fn describe(ev: &Event, names: &HashMap<VmId, String>) -> Option<String> {
    let name = |vm: &VmId| names.get(vm).cloned().unwrap_or_else(|| vm.to_string());
    let s = match &ev.kind {
        EventKind::RunStarted {
            run_id,
            sources,
            destinations,
        } => format!(
            "run {run_id}: from {} to {}",
            hosts(sources),
            hosts(destinations)
        ),
        EventKind::HostSeen {
            host,
            limit,
            foreign,
            free_memory_bytes,
            free_disk_bytes,
        } => format!(
            "host {host}: {limit} slots, {foreign} taken by others, {} memory and {} disk free",
            fmt_bytes(*free_memory_bytes),
            fmt_bytes(*free_disk_bytes)
        ),
        EventKind::HostUnreachable { host, error } => {
            format!("host {host} did not answer: {error}")
        }
        EventKind::SelectionUnmatched { source, pattern } => {
            format!("`{pattern}` matches no VM on {source}")
        }
        EventKind::Selected {
            name: n,
            source,
            mode,
            memory_bytes,
            disk_bytes,
            ..
        } => format!(
            "{n}: selected on {source} ({mode}, {} memory, {} disk)",
            fmt_bytes(*memory_bytes),
            fmt_bytes(*disk_bytes)
        ),
        EventKind::Waiting { vm, reason } => match reason {
            WaitReason::NoSlot => return None,
            r => format!("{}: {r}", name(vm)),
        },
        EventKind::AttemptStarted {
            vm,
            attempt,
            source,
            destination,
            mode,
        } => {
            format!(
                "{}: attempt {attempt}, {source} -> {destination} ({mode})",
                name(vm)
            )
        }
        EventKind::AttemptFailed {
            vm,
            attempt,
            class,
            error,
            retry_at,
            ..
        } => format!(
            "{}: attempt {attempt} failed ({class:?}): {error}{}",
            name(vm),
            retry_at
                .map(|t| format!("; retry at {}", fmt_time(t)))
                .unwrap_or_default()
        ),
        EventKind::WatchdogFired { vm, attempt, which } => {
            format!("{}: {which} watchdog fired on attempt {attempt}", name(vm))
        }
        EventKind::Escalated { vm, aid, .. } => format!("{}: applying {aid:?}", name(vm)),
        EventKind::AbortWaiting {
            vm,
            source,
            destination,
            why,
            round,
            rounds,
            look,
            looks,
            ..
        } => {
            if *look == 0 {
                format!(
                    "{}: {why} on {source} -> {destination}; abort asked of {source} (round {round} of {rounds})",
                    name(vm)
                )
            } else {
                format!(
                    "{}: {why} on {source} -> {destination}; abort asked, waiting for {source} to end the job (look {look} of {looks})",
                    name(vm)
                )
            }
        }
        EventKind::MigrationFailed {
            vm,
            attempt,
            source,
            destination,
            error,
        } => format!(
            "{}: attempt {attempt}: the migration {source} -> {destination} failed: {error}; looking at both hosts",
            name(vm)
        ),
        EventKind::CallFailed {
            vm,
            call,
            error,
            tries,
            of,
            retry_at,
            ..
        } => {
            if *call == vmove_core::AttemptCall::Abort {
                format!(
                    "{}: the abort (round {tries} of {of}) failed: {error}; looking at the hosts",
                    name(vm)
                )
            } else {
                format!(
                    "{}: {call} failed (try {tries} of {of}): {error}{}",
                    name(vm),
                    retry_at
                        .map(|t| format!("; again at {}", fmt_time(t)))
                        .unwrap_or_default()
                )
            }
        }
        EventKind::LeftBehind { vm, .. } => {
            format!("{}: {}", name(vm), left_behind(&ev.kind)?)
        }
        EventKind::Verified { vm, destination } => {
            format!("{}: verified on {destination}", name(vm))
        }
        EventKind::LeftoverRemoved { vm, host, what, .. } => {
            format!("{}: removed {what} from {host}", name(vm))
        }
        EventKind::LeftoverKept {
            vm,
            host,
            what,
            error,
        } => {
            format!("{}: kept {what} on {host}: {error}", name(vm))
        }
        EventKind::Moved {
            name: n,
            destination,
            attempts,
            ..
        } => {
            format!(
                "{n}: MOVED to {destination} ({attempts} attempt{})",
                plural(*attempts)
            )
        }
        EventKind::Unmigratable {
            name: n, reason, ..
        } => format!("{n}: UNMIGRATABLE: {reason}"),
        EventKind::Cancelled {
            name: n, reason, ..
        } => format!("{n}: not moved: {reason}"),
        EventKind::StopRequested {
            abort_running: true,
        } => "stop: aborting running migrations".to_string(),
        EventKind::StopRequested {
            abort_running: false,
        } => "stop: no new moves; waiting for running ones".to_string(),
        EventKind::IllegalInput { vm, phase, input } => {
            format!("{}: ignored {input} in phase {phase} (a bug)", name(vm))
        }
        EventKind::RunFailed { error } => format!("run failed: {error}"),
        EventKind::RunFinished {
            moved,
            unmigratable,
            cancelled,
        } => {
            format!("finished: {moved} moved, {unmigratable} unmigratable, {cancelled} cancelled")
        }
        EventKind::Transition { .. } | EventKind::Progress { .. } => return None,
    };
    Some(format!("[{:>7}] {s}", fmt_time(ev.at)))
}

/// What a failed attempt left on its destination when the move ended, for a person.
fn left_behind(kind: &EventKind) -> Option<String> {
    let EventKind::LeftBehind {
        attempt,
        host,
        what,
        why,
        ..
    } = kind
    else {
        return None;
    };
    Some(if what.is_empty() {
        format!(
            "{host} was not checked for what attempt {attempt} left there ({why}); a later run removes what its driver proves ours"
        )
    } else {
        format!(
            "left on {host} by attempt {attempt}: {} (ours; not removed: {why}; a later run removes what its driver proves ours)",
            what.join(", ")
        )
    })
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn hosts(h: &[HostId]) -> String {
    h.iter().map(HostId::as_str).collect::<Vec<_>>().join(", ")
}

/// Plain timestamped lines to a writer (stdout, or stderr under `--json`).
pub struct LinesSink {
    out: Box<dyn Write + Send>,
    names: HashMap<VmId, String>,
}

impl std::fmt::Debug for LinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinesSink").finish_non_exhaustive()
    }
}

impl LinesSink {
    /// Lines to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        LinesSink {
            out,
            names: HashMap::new(),
        }
    }

    /// Knows these VM names already (a resumed run's VMs were selected by an earlier process).
    pub fn with_names(mut self, names: HashMap<VmId, String>) -> Self {
        self.names = names;
        self
    }
}

#[async_trait]
impl EventSink for LinesSink {
    fn name(&self) -> &str {
        "progress"
    }
    async fn on_event(&mut self, ev: &Event) -> Result<(), SinkError> {
        if let EventKind::Selected { vm, name, .. } = &ev.kind {
            self.names.insert(vm.clone(), name.clone());
        }
        if let Some(line) = describe(ev, &self.names) {
            writeln!(self.out, "{line}")?;
            self.out.flush()?;
        }
        Ok(())
    }
}

/// Progress bars on a terminal: one overall, one per migration in flight; event lines above.
pub struct BarsSink {
    multi: MultiProgress,
    overall: ProgressBar,
    bars: BTreeMap<VmId, ProgressBar>,
    names: HashMap<VmId, String>,
    sizes: HashMap<VmId, u64>,
    selected: u64,
    done: u64,
}

impl std::fmt::Debug for BarsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BarsSink").finish_non_exhaustive()
    }
}

impl Default for BarsSink {
    fn default() -> Self {
        Self::new()
    }
}

impl BarsSink {
    /// Bars on stderr.
    pub fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(0));
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:>12} [{bar:30.green/white}] {pos}/{len} VMs done  {msg}",
        ) {
            overall.set_style(style.progress_chars("=> "));
        }
        overall.set_prefix("overall");
        overall.enable_steady_tick(Duration::from_millis(200));
        BarsSink {
            multi,
            overall,
            bars: BTreeMap::new(),
            names: HashMap::new(),
            sizes: HashMap::new(),
            selected: 0,
            done: 0,
        }
    }

    /// Knows these VM names already (a resumed run's VMs were selected by an earlier process).
    pub fn with_names(mut self, names: HashMap<VmId, String>) -> Self {
        self.names = names;
        self
    }

    fn vm_bar(&mut self, vm: &VmId) -> ProgressBar {
        if let Some(b) = self.bars.get(vm) {
            return b.clone();
        }
        let b = self
            .multi
            .add(ProgressBar::new(self.sizes.get(vm).copied().unwrap_or(0)));
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:>12} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        let name = self
            .names
            .get(vm)
            .cloned()
            .unwrap_or_else(|| vm.to_string());
        b.set_prefix(name.chars().take(12).collect::<String>());
        self.bars.insert(vm.clone(), b.clone());
        b
    }

    fn end_bar(&mut self, vm: &VmId) {
        if let Some(b) = self.bars.remove(vm) {
            b.finish_and_clear();
            self.multi.remove(&b);
        }
    }
}

#[async_trait]
impl EventSink for BarsSink {
    fn name(&self) -> &str {
        "progress"
    }
    async fn on_event(&mut self, ev: &Event) -> Result<(), SinkError> {
        match &ev.kind {
            EventKind::Selected {
                vm,
                name,
                memory_bytes,
                disk_bytes,
                ..
            } => {
                self.names.insert(vm.clone(), name.clone());
                self.sizes.insert(vm.clone(), memory_bytes + disk_bytes);
                self.selected += 1;
                self.overall.set_length(self.selected);
            }
            EventKind::AttemptStarted {
                vm,
                attempt,
                destination,
                ..
            } => {
                let b = self.vm_bar(vm);
                b.set_position(0);
                b.set_message(format!("-> {destination} (attempt {attempt})"));
            }
            EventKind::Progress {
                vm,
                bytes_done,
                bytes_total,
                ..
            } => {
                let b = self.vm_bar(vm);
                if *bytes_total > 0 {
                    b.set_length(*bytes_total);
                }
                b.set_position(*bytes_done);
            }
            EventKind::MigrationFailed {
                vm,
                source,
                destination,
                ..
            } => {
                self.vm_bar(vm)
                    .set_message(format!("failed: looking at {source} and {destination}"));
            }
            EventKind::AttemptFailed { vm, .. } => self.end_bar(vm),
            EventKind::AbortWaiting {
                vm,
                source,
                look,
                looks,
                ..
            } => {
                let b = self.vm_bar(vm);
                b.set_message(if *look == 0 {
                    format!("aborting on {source}")
                } else {
                    format!("aborting: waiting for {source} (look {look} of {looks})")
                });
            }
            EventKind::Moved { vm, .. }
            | EventKind::Unmigratable { vm, .. }
            | EventKind::Cancelled { vm, .. } => {
                self.end_bar(vm);
                self.done += 1;
                self.overall.set_position(self.done);
            }
            EventKind::Waiting { vm, reason } if !matches!(reason, WaitReason::NoSlot) => {
                let n = self
                    .names
                    .get(vm)
                    .cloned()
                    .unwrap_or_else(|| vm.to_string());
                self.overall.set_message(format!("{n}: {reason}"));
            }
            _ => {}
        }
        if let Some(line) = describe(ev, &self.names) {
            // Printed above the bars; a terminal that went away is not worth stopping a run for.
            let _ = self.multi.println(crate::stdio::printable(&line));
        }
        Ok(())
    }
    async fn on_finish(&mut self, _snapshot: &Snapshot) -> Result<(), SinkError> {
        for (_, b) in std::mem::take(&mut self.bars) {
            b.finish_and_clear();
        }
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
        Ok(())
    }
}

/// `12m05s` style for an ETA.
pub fn fmt_eta(d: Duration) -> String {
    format_duration(Duration::from_secs(d.as_secs().max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(what: Vec<String>, why: &str) -> Event {
        Event {
            at: Time(61_000),
            kind: EventKind::LeftBehind {
                vm: VmId::new("u7"),
                attempt: 1,
                host: HostId::new("hostJ"),
                what,
                why: why.into(),
            },
        }
    }

    #[test]
    fn what_a_give_up_leaves_behind_is_a_line_and_a_note_in_the_summary() {
        let names = HashMap::from([(VmId::new("u7"), "vm07".to_string())]);
        let ev = left(vec!["/img/vm07.qcow2".into()], "host hostJ does not answer");
        assert_eq!(
            describe(&ev, &names).as_deref(),
            Some(
                "[  1m01s] vm07: left on hostJ by attempt 1: /img/vm07.qcow2 (ours; not removed: host hostJ does not answer; a later run removes what its driver proves ours)"
            )
        );
        let unchecked = left(vec![], "its migration job was still running");
        let line = describe(&unchecked, &names).unwrap_or_default();
        assert!(
            line.contains("vm07: hostJ was not checked for what attempt 1 left there (its migration job was still running)"),
            "{line}"
        );
        let mut r = Record::new("migrate");
        r.apply(&ev);
        r.apply(&unchecked);
        let row = &r.vms[0];
        assert_eq!(row.notes.len(), 2, "{:?}", row.notes);
        assert!(
            r.table()
                .contains("left on hostJ by attempt 1: /img/vm07.qcow2")
        );
    }

    /// The end-to-end test of these lines (tests/cli.rs) no longer reaches a look that waits: its
    /// first abort fails, and a failed abort is asked again at once, without waiting.
    #[test]
    fn a_look_that_finds_an_aborted_job_running_says_which_look_of_how_many() {
        let names = HashMap::from([(VmId::new("u7"), "vm07".to_string())]);
        let waiting = |look| Event {
            at: Time(57_400),
            kind: EventKind::AbortWaiting {
                vm: VmId::new("u7"),
                attempt: 1,
                source: HostId::new("hostA"),
                destination: HostId::new("hostJ"),
                why: "stalled: no progress for 15s".into(),
                round: 1,
                rounds: 3,
                look,
                looks: 6,
            },
        };
        assert_eq!(
            describe(&waiting(2), &names).as_deref(),
            Some(
                "[  57.4s] vm07: stalled: no progress for 15s on hostA -> hostJ; abort asked, waiting for hostA to end the job (look 2 of 6)"
            )
        );
        assert_eq!(
            describe(&waiting(0), &names).as_deref(),
            Some(
                "[  57.4s] vm07: stalled: no progress for 15s on hostA -> hostJ; abort asked of hostA (round 1 of 3)"
            )
        );
    }
}
