//! Live progress: plain timestamped lines, or indicatif bars on a terminal.

use super::describe::describe;
use async_trait::async_trait;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Duration;
use vmove_core::event::EventKind;
use vmove_core::{Event, Snapshot, VmId, WaitReason};
use vmove_runtime::{EventSink, SinkError};

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
