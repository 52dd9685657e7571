//! Live progress: plain timestamped lines, or indicatif bars on a terminal.

use super::describe::describe;
use async_trait::async_trait;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Duration;
use vmove_core::event::EventKind;
use vmove_core::{Event, Snapshot, Time, VmId, WaitReason};
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
    /// What each waiting VM waits for: the overall bar shows the first and how many more, and
    /// forgets a VM whose wait is over.
    waits: BTreeMap<VmId, String>,
    /// Per migration, its last progress figure and its run time: the rate is bytes per second
    /// of run time (the demo's clock runs faster than the wall's).
    last_progress: HashMap<VmId, (Time, u64)>,
    /// Per migration, what its bar says besides the rate (destination and attempt).
    labels: HashMap<VmId, String>,
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
        Self::with_target(ProgressDrawTarget::stderr())
    }

    /// Bars drawn to `target`.
    fn with_target(target: ProgressDrawTarget) -> Self {
        let multi = MultiProgress::with_draw_target(target);
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
            waits: BTreeMap::new(),
            last_progress: HashMap::new(),
            labels: HashMap::new(),
        }
    }

    fn name_of(&self, vm: &VmId) -> String {
        self.names
            .get(vm)
            .cloned()
            .unwrap_or_else(|| vm.to_string())
    }

    /// The overall bar's message: the first VM still waiting, and how many more.
    fn show_waits(&self) {
        let msg = match self.waits.iter().next() {
            None => String::new(),
            Some((vm, reason)) if self.waits.len() == 1 => {
                format!("{}: {reason}", self.name_of(vm))
            }
            Some((vm, reason)) => format!(
                "{}: {reason} (+{} more waiting)",
                self.name_of(vm),
                self.waits.len() - 1
            ),
        };
        // Drawn by indicatif, not through stdio: the name and the reason escaped here.
        self.overall
            .set_message(crate::stdio::escaped(&msg).into_owned());
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
            "{prefix:>12} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {msg}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        let name = self
            .names
            .get(vm)
            .cloned()
            .unwrap_or_else(|| vm.to_string());
        b.set_prefix(
            crate::stdio::escaped(&name)
                .chars()
                .take(12)
                .collect::<String>(),
        );
        self.bars.insert(vm.clone(), b.clone());
        b
    }

    fn end_bar(&mut self, vm: &VmId) {
        self.last_progress.remove(vm);
        self.labels.remove(vm);
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
        self.take(ev);
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

impl BarsSink {
    /// Updates the bars from one event.
    fn take(&mut self, ev: &Event) {
        if let Some(vm) = ev.kind.vm() {
            let still_waiting = matches!(
                &ev.kind,
                EventKind::Waiting { reason, .. } if !matches!(reason, WaitReason::NoSlot)
            ) || matches!(
                ev.kind,
                EventKind::Progress { .. } | EventKind::Selected { .. }
            );
            if !still_waiting && self.waits.remove(vm).is_some() {
                self.show_waits();
            }
        }
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
                let label = crate::stdio::escaped(&format!("-> {destination} (attempt {attempt})"))
                    .into_owned();
                b.set_message(label.clone());
                self.labels.insert(vm.clone(), label);
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
                if let Some((then, before)) = self.last_progress.get(vm) {
                    let secs = ev.at.saturating_since(*then).as_secs_f64();
                    if secs > 0.0 && bytes_done >= before {
                        let rate = (bytes_done - before) as f64 / secs;
                        let label = self.labels.get(vm).cloned().unwrap_or_default();
                        b.set_message(format!("{label} {}/s", indicatif::HumanBytes(rate as u64)));
                    }
                }
                self.last_progress.insert(vm.clone(), (ev.at, *bytes_done));
            }
            EventKind::MigrationFailed {
                vm,
                source,
                destination,
                ..
            } => {
                self.vm_bar(vm).set_message(
                    crate::stdio::escaped(&format!(
                        "failed: looking at {source} and {destination}"
                    ))
                    .into_owned(),
                );
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
                let text = if *look == 0 {
                    format!("aborting on {source}")
                } else {
                    format!("aborting: waiting for {source} (look {look} of {looks})")
                };
                b.set_message(crate::stdio::escaped(&text).into_owned());
            }
            EventKind::NotAborted { vm, .. } => {
                self.vm_bar(vm)
                    .set_message("in post-copy: not aborted, waiting for it to end");
            }
            EventKind::Moved { vm, .. }
            | EventKind::Unmigratable { vm, .. }
            | EventKind::Cancelled { vm, .. } => {
                self.end_bar(vm);
                self.done += 1;
                self.overall.set_position(self.done);
            }
            EventKind::Waiting { vm, reason } if !matches!(reason, WaitReason::NoSlot) => {
                self.waits.insert(vm.clone(), reason.to_string());
                self.show_waits();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use vmove_core::model::{HostId, MigrationMode};

    fn ev(secs: u64, kind: EventKind) -> Event {
        Event {
            at: Time(secs * 1000),
            kind,
        }
    }

    fn selected(vm: &VmId, name: &str) -> EventKind {
        EventKind::Selected {
            vm: vm.clone(),
            name: name.into(),
            source: HostId::new("hv-01"),
            mode: MigrationMode::Live,
            memory_bytes: 1,
            disk_bytes: 1,
        }
    }

    /// The overall bar kept "db-01: backing up" after db-01 moved.
    #[test]
    fn the_overall_bar_forgets_a_wait_that_is_over() {
        let mut s = BarsSink::with_target(ProgressDrawTarget::hidden());
        let (db, web) = (VmId::new("u-db"), VmId::new("u-web"));
        s.take(&ev(0, selected(&db, "db-01")));
        s.take(&ev(0, selected(&web, "web-01")));
        let backing_up = WaitReason::BackingUp { since: Time(0) };
        s.take(&ev(
            1,
            EventKind::Waiting {
                vm: db.clone(),
                reason: backing_up.clone(),
            },
        ));
        assert!(
            s.overall.message().starts_with("db-01: "),
            "{}",
            s.overall.message()
        );
        s.take(&ev(
            2,
            EventKind::Waiting {
                vm: web.clone(),
                reason: backing_up,
            },
        ));
        assert!(
            s.overall.message().contains("+1 more waiting"),
            "{}",
            s.overall.message()
        );
        s.take(&ev(
            3,
            EventKind::Moved {
                vm: db.clone(),
                name: "db-01".into(),
                destination: HostId::new("hv-02"),
                attempts: 1,
            },
        ));
        assert!(
            s.overall.message().starts_with("web-01: "),
            "{}",
            s.overall.message()
        );
        s.take(&ev(
            4,
            EventKind::AttemptStarted {
                vm: web.clone(),
                attempt: 1,
                source: HostId::new("hv-01"),
                destination: HostId::new("hv-02"),
                mode: MigrationMode::Live,
            },
        ));
        assert_eq!(s.overall.message(), "", "no VM waits any more");
    }

    /// The bars are drawn by indicatif, not through stdio's escaping: the overall bar showed a
    /// waiting VM's name raw, and a VM's bar its destination's.
    #[test]
    fn the_bars_show_names_and_hosts_with_their_control_and_bidi_characters_escaped() {
        let mut s = BarsSink::with_target(ProgressDrawTarget::hidden());
        let vm = VmId::new("u-1");
        s.take(&ev(0, selected(&vm, "evil\u{202e}gpj\u{1b}[2J")));
        s.take(&ev(
            1,
            EventKind::Waiting {
                vm: vm.clone(),
                reason: WaitReason::BackingUp { since: Time(0) },
            },
        ));
        let shown = s.overall.message();
        assert!(
            shown.starts_with("evil\\u{202e}gpj\\u{1b}[2J: "),
            "{shown:?}"
        );
        s.take(&ev(
            2,
            EventKind::AttemptStarted {
                vm: vm.clone(),
                attempt: 1,
                source: HostId::new("hv-01"),
                destination: HostId::new("hv\u{2067}02"),
                mode: MigrationMode::Live,
            },
        ));
        let shown = s.vm_bar(&vm).message();
        assert_eq!(shown, "-> hv\\u{2067}02 (attempt 1)");
    }

    /// In the demo (run time 25 times the wall's) a bar's rate mixed simulated bytes with wall
    /// seconds; it is now bytes per second of run time, from the events' own times.
    #[test]
    fn a_bar_shows_its_rate_in_run_time() {
        let mut s = BarsSink::with_target(ProgressDrawTarget::hidden());
        let vm = VmId::new("u-1");
        s.take(&ev(0, selected(&vm, "web-01")));
        let progress = |done: u64| EventKind::Progress {
            vm: vm.clone(),
            attempt: 1,
            bytes_done: done,
            bytes_total: 10_000_000_000,
            bytes_remaining: 10_000_000_000 - done,
        };
        s.take(&ev(10, progress(0)));
        s.take(&ev(20, progress(1_000_000_000)));
        let msg = s.bars[&vm].message();
        assert!(
            msg.ends_with(&format!(" {}/s", indicatif::HumanBytes(100_000_000))),
            "{msg}"
        );
    }
}
