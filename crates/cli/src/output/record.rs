//! The per-VM record of a run, from its events: behind the summary table, `--report`,
//! `vmove report` and the plan's rows. Each VM's state is the journal's fold
//! ([`VmStatus::apply`], the same `vmove status` reads); this adds only what a person reads
//! about it (notes on waits, failed attempts, watchdogs, leftovers) and when its move ended.

use super::describe::left_behind;
use super::fmt::{fmt_eta, fmt_time};
use async_trait::async_trait;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use vmove_core::event::EventKind;
use vmove_core::{Event, Phase, Snapshot, Time, VmId, WaitReason};

/// The name of the host vmove runs on (Linux: the kernel's; else `HOSTNAME`/`COMPUTERNAME`),
/// or `unknown`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
use vmove_journal::VmStatus;
use vmove_runtime::{EventSink, SinkError};

/// How one VM's move ended, in the words the table and the reports use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VmOutcome {
    Moved,
    Unmigratable,
    /// Not moved because the run stopped.
    Cancelled,
    /// Not over (the run stopped or failed before its end, or is still running).
    #[default]
    Unfinished,
}

impl VmOutcome {
    /// The word shown and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            VmOutcome::Moved => "moved",
            VmOutcome::Unmigratable => "unmigratable",
            VmOutcome::Cancelled => "cancelled",
            VmOutcome::Unfinished => "unfinished",
        }
    }

    /// The outcome a phase stands for at the end of a run.
    pub fn of_phase(phase: Phase) -> VmOutcome {
        match phase {
            Phase::Moved => VmOutcome::Moved,
            Phase::Unmigratable => VmOutcome::Unmigratable,
            Phase::Cancelled => VmOutcome::Cancelled,
            _ => VmOutcome::Unfinished,
        }
    }
}

impl std::fmt::Display for VmOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a run ended, in the words the reports use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Every VM moved.
    AllMoved,
    /// Some VMs are unmigratable or were not moved.
    SomeUnmigratable,
    /// Stopped by Ctrl-C, a signal or `vmove abort`.
    Interrupted,
    /// An error ended the run.
    Failed,
    /// Not over (a report of a run still running).
    #[default]
    Unfinished,
}

impl RunOutcome {
    /// The word shown and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::AllMoved => "all_moved",
            RunOutcome::SomeUnmigratable => "some_unmigratable",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::Failed => "failed",
            RunOutcome::Unfinished => "unfinished",
        }
    }

    /// The exit code of a run that ended so (`plan`'s too).
    pub fn exit_code(self) -> u8 {
        use crate::exit::{EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNMIGRATABLE};
        match self {
            RunOutcome::AllMoved => EXIT_OK,
            RunOutcome::SomeUnmigratable | RunOutcome::Unfinished => EXIT_UNMIGRATABLE,
            RunOutcome::Interrupted => EXIT_INTERRUPTED,
            RunOutcome::Failed => EXIT_ERROR,
        }
    }
}

impl std::fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The record of one VM, built from events.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct VmRow {
    pub id: String,
    pub name: String,
    pub source: Option<String>,
    /// Destination (last tried, or where it is now).
    pub destination: Option<String>,
    pub outcome: VmOutcome,
    /// Attempts made.
    pub attempts: u32,
    /// Why it did not move.
    pub reason: Option<String>,
    /// What happened on the way (waits, failed attempts, watchdogs, leftovers kept).
    pub notes: Vec<String>,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    /// When its move ended (run time, seconds).
    pub finished_at_secs: Option<f64>,
    /// When its first attempt started (run time, seconds).
    pub started_at_secs: Option<f64>,
    /// When its first attempt started and its move ended, on the wall clock (RFC 3339, UTC;
    /// the demo's: the run's start plus simulated time).
    pub started: Option<String>,
    pub ended: Option<String>,
    /// Bytes copied over all its attempts (each attempt's last progress figure).
    pub bytes_copied: u64,
    /// How long it was paused for the switch-over, in milliseconds, as its driver measured it
    /// (the `verified` event's `downtime_ms`: libvirt and the simulator say it for a live move;
    /// Hyper-V and offline moves have none, and the reports say `unknown`).
    pub downtime_ms: Option<u64>,
    /// What a person should do about a VM that did not move (see [`action_for`]).
    pub action: Option<String>,
}

impl VmRow {
    /// Shows a VM's state as the table and the reports print it; `next` says how a VM the run
    /// did not move can still be moved (see [`action_for`]).
    fn show(&mut self, s: &VmStatus, next: &NextRun) {
        self.name = s.name.clone();
        self.source = (!s.source.as_str().is_empty()).then(|| s.source.to_string());
        self.destination = s.destination.as_ref().map(ToString::to_string);
        self.outcome = VmOutcome::of_phase(s.phase);
        self.attempts = s.attempt;
        self.reason = s.reason.as_ref().map(ToString::to_string);
        self.memory_bytes = s.memory_bytes;
        self.disk_bytes = s.disk_bytes;
        self.action = match s.phase {
            Phase::Moved => None,
            _ => Some(action_for(s, next)),
        };
    }
}

/// How a VM a run did not move can still be moved: what the "Action needed" advice may name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NextRun {
    /// A new run only: the run ended (finished, failed, or aborted: a run stopped by a signal,
    /// its deadline or `vmove abort` is recorded aborted, docs/cli.md) or was not journaled.
    #[default]
    NewRun,
    /// `vmove resume RUN` goes on with this run (journaled and not ended: killed, or left
    /// resumable by a journal that could not be written), or a new run.
    Resume(String),
    /// Another `vmove demo`: the demo's cluster lived in its process only.
    Demo,
}

/// What to do about a VM that did not move, for the "Action needed" section: said generally
/// over the reason, so a reason the engine adds later still gets an answer. Only what will
/// work: `vmove resume` only when `next` says the run can be resumed.
pub fn action_for(s: &VmStatus, next: &NextRun) -> String {
    use vmove_core::Reason;
    let new_run = match next {
        NextRun::Demo => "run the demo again (`vmove demo`)",
        _ => "move it in a new run (`vmove migrate` naming it)",
    };
    let again = match next {
        NextRun::Demo => "then run the demo again (`vmove demo`)",
        _ => "then move it again (`vmove migrate` naming it)",
    };
    let stopped = matches!(
        (&s.reason, s.phase),
        (None, Phase::Cancelled) | (Some(Reason::RunStopped | Reason::FailFast), _)
    );
    match (&s.reason, next) {
        (_, NextRun::Resume(run)) if stopped => {
            format!("resume the run (`vmove resume {run}`) or {new_run}")
        }
        _ if stopped => new_run.to_owned(),
        (None, NextRun::Resume(run)) => {
            format!("resume the run (`vmove resume {run}`) to finish its move")
        }
        (None, _) => format!("check where it is now, then {new_run}"),
        (Some(r), _) => match r {
            Reason::NoDestinationFits { .. } => {
                format!("free memory or disk on a destination, or name a larger one; {again}")
            }
            Reason::BackupTooLong { .. } => {
                format!("let its backup finish (or raise `backup_threshold`); {again}")
            }
            Reason::RunningOnBoth | Reason::LostAfterAttempt | Reason::NotLocated(_) => {
                "look at both hosts by hand before anything else: find where it runs and which copy is current; vmove left it untouched"
                    .to_owned()
            }
            Reason::NotVerified(_) => {
                "check the copy on the destination by hand; the source copy was kept".to_owned()
            }
            Reason::SourceDown(_) | Reason::DestinationsDown => {
                format!("bring the host back or check the network; {again}")
            }
            Reason::NoMigrationSlots(_) => {
                format!("allow migrations on the host (its limit is 0); {again}")
            }
            Reason::NotFound | Reason::Vanished | Reason::FoundElsewhere(_) => {
                "check where it is now and whether it still needs to move".to_owned()
            }
            Reason::PinnedToSource => {
                "nothing, unless it should leave: unpin it in the config".to_owned()
            }
            Reason::Skipped { .. } => {
                format!("nothing, unless it should still leave (an operator stopped its move); {again}")
            }
            // Failed attempts, refusals, bad states, and what later versions add: the reason
            // says what stood in the way.
            _ => format!("fix what the reason names; {again}"),
        },
    }
}

/// The whole run, for the summary table and `--report`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Record {
    pub run_id: String,
    /// The command line that started the run (`vmove evacuate hv-01 --to hv-02`).
    pub command: String,
    /// Unix time the run started, seconds.
    pub started_unix: u64,
    /// When the run started and ended on the wall clock (RFC 3339, UTC).
    pub started: String,
    pub ended: Option<String>,
    /// vmove's version (with its commit and drivers, as `--version` says).
    pub vmove_version: String,
    /// The host vmove ran on (its hostname).
    pub host: String,
    /// Run time at the end, seconds.
    pub duration_secs: f64,
    pub outcome: RunOutcome,
    pub moved: u32,
    pub unmigratable: u32,
    /// VMs not moved because the run stopped.
    pub cancelled: u32,
    /// Why the run failed as a whole.
    pub error: Option<String>,
    pub vms: Vec<VmRow>,
    /// Each VM's state, folded from the events by the journal's [`VmStatus::apply`] (the one
    /// fold of a VM's state); `vms[i]` shows `statuses[i]` plus the notes and end time.
    #[serde(skip)]
    statuses: Vec<VmStatus>,
    #[serde(skip)]
    index: HashMap<VmId, usize>,
    /// VMs seen waiting on a backup, and since when: their note says how long once the wait
    /// is over.
    #[serde(skip)]
    backup_since: HashMap<VmId, Time>,
    /// Unix time the run started, milliseconds: wall times are this plus run time.
    #[serde(skip)]
    started_ms: u64,
    /// Each attempt's last bytes copied, per VM and attempt.
    #[serde(skip)]
    copied: HashMap<(VmId, u32), u64>,
    /// How a VM the run did not move can still be moved (see [`action_for`]).
    #[serde(skip)]
    next: NextRun,
}

impl Record {
    /// An empty record for a command.
    pub fn new(command: &str) -> Record {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(0))
            .unwrap_or(0);
        let mut r = Record {
            command: command.to_owned(),
            vmove_version: env!("VMOVE_VERSION_TEXT").to_owned(),
            host: hostname(),
            ..Record::default()
        };
        r.set_start_ms(now_ms);
        r
    }

    /// The run started at this Unix time, milliseconds (a report rebuilt from the journal
    /// says when the run was created).
    pub fn set_start_ms(&mut self, ms: u64) {
        self.started_ms = ms;
        self.started_unix = ms / 1000;
        self.started = self.wall(Time::ZERO);
    }

    /// Run time `at` on the wall clock, RFC 3339 (UTC, seconds).
    /// A time RFC 3339 cannot write (a journal may hold any) is said to be out of range.
    pub fn wall(&self, at: Time) -> String {
        super::wall_ms(self.started_ms.saturating_add(at.as_millis()))
    }

    /// Says when the run ended: at run time `end`, or at the wall time the journal kept.
    pub fn set_end(&mut self, end: Time, wall_ms: Option<u64>) {
        self.ended = Some(match wall_ms {
            Some(ms) => super::wall_ms(ms),
            None => self.wall(end),
        });
    }

    /// The index of `vm`'s status and row, both made when an event first names it (as the
    /// journal makes its status rows).
    fn index_of(&mut self, vm: &VmId, at: Time) -> usize {
        if let Some(i) = self.index.get(vm) {
            return *i;
        }
        self.statuses.push(VmStatus::new(vm.clone(), at));
        self.vms.push(VmRow {
            id: vm.to_string(),
            name: vm.to_string(),
            source: None,
            destination: None,
            outcome: VmOutcome::Unfinished,
            attempts: 0,
            reason: None,
            notes: vec![],
            memory_bytes: 0,
            disk_bytes: 0,
            finished_at_secs: None,
            started_at_secs: None,
            started: None,
            ended: None,
            bytes_copied: 0,
            downtime_ms: None,
            action: None,
        });
        self.index.insert(vm.clone(), self.vms.len() - 1);
        self.vms.len() - 1
    }

    fn row(&mut self, vm: &VmId) -> &mut VmRow {
        let i = self.index_of(vm, Time::ZERO);
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
        if let Some(vm) = ev.kind.vm() {
            let backup_over = match &ev.kind {
                EventKind::Waiting { reason, .. } => {
                    !matches!(reason, WaitReason::BackingUp { .. })
                }
                EventKind::AttemptStarted { .. }
                | EventKind::Moved { .. }
                | EventKind::Unmigratable { .. }
                | EventKind::Cancelled { .. } => true,
                _ => false,
            };
            if backup_over {
                if let Some(since) = self.backup_since.remove(vm) {
                    let waited = fmt_eta(ev.at.saturating_since(since));
                    self.note(
                        vm,
                        format!(
                            "waited for a backup for {waited} (seen from {})",
                            fmt_time(since)
                        ),
                    );
                }
            }
            // The VM's state: the journal's fold; the row shows it.
            let i = self.index_of(vm, ev.at);
            self.statuses[i].apply(ev);
            if matches!(
                ev.kind,
                EventKind::Moved { .. }
                    | EventKind::Unmigratable { .. }
                    | EventKind::Cancelled { .. }
            ) {
                self.vms[i].finished_at_secs = Some(secs);
                self.vms[i].ended = Some(self.wall(ev.at));
            }
            if matches!(ev.kind, EventKind::AttemptStarted { .. })
                && self.vms[i].started_at_secs.is_none()
            {
                self.vms[i].started_at_secs = Some(secs);
                self.vms[i].started = Some(self.wall(ev.at));
            }
            if let EventKind::Progress {
                attempt,
                bytes_done,
                ..
            } = &ev.kind
            {
                let last = self.copied.entry((vm.clone(), *attempt)).or_insert(0);
                let more = bytes_done.saturating_sub(*last);
                *last = (*last).max(*bytes_done);
                self.vms[i].bytes_copied += more;
            }
            if let EventKind::Verified {
                downtime_ms: Some(ms),
                ..
            } = &ev.kind
            {
                self.vms[i].downtime_ms = Some(*ms);
            }
            self.vms[i].show(&self.statuses[i], &self.next);
        }
        match &ev.kind {
            EventKind::RunStarted { run_id, .. } => self.run_id = run_id.clone(),
            EventKind::Waiting { vm, reason } => match reason {
                WaitReason::BackingUp { since } => {
                    self.backup_since.entry(vm.clone()).or_insert(*since);
                }
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
            EventKind::AttemptFailed {
                vm,
                attempt,
                class,
                error,
                retry_at,
                ..
            } => {
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
                self.note(vm, format!("convergence aid applied: {}", aid.describe()))
            }
            EventKind::NotAborted { vm, attempt, why } => {
                self.note(vm, format!("attempt {attempt} not aborted: {why}"))
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

    /// Says how a VM the run did not move can still be moved (`vmove resume RUN` only when
    /// the run is journaled and not ended), and words every VM's action after it.
    pub fn set_next(&mut self, next: NextRun) {
        self.next = next;
        for (row, status) in self.vms.iter_mut().zip(&self.statuses) {
            row.show(status, &self.next);
        }
    }

    /// Notes the backup waits the run ended in.
    fn close_backup_waits(&mut self) {
        let open: Vec<(VmId, Time)> = self.backup_since.drain().collect();
        for (vm, since) in open {
            self.note(
                &vm,
                format!(
                    "waiting for a backup (seen from {}) when the run ended",
                    fmt_time(since)
                ),
            );
        }
    }

    /// Counts outcomes from the rows (a report rebuilt from a journal has no final snapshot).
    pub fn tally(&mut self, end: Time) {
        self.close_backup_waits();
        let count = |o: VmOutcome| self.vms.iter().filter(|r| r.outcome == o).count() as u32;
        self.moved = count(VmOutcome::Moved);
        self.unmigratable = count(VmOutcome::Unmigratable);
        self.cancelled = count(VmOutcome::Cancelled);
        self.duration_secs = self.duration_secs.max(end.as_millis() as f64 / 1000.0);
    }

    /// Fills what events did not say from the final snapshot, and counts outcomes.
    pub fn finish(&mut self, snap: &Snapshot) {
        self.close_backup_waits();
        for v in &snap.vms {
            let i = self.index_of(&v.id, snap.at);
            let st = &mut self.statuses[i];
            st.name = v.name.clone();
            if st.source.as_str().is_empty() {
                st.source = v.source.clone();
            }
            if let Some(d) = &v.destination {
                st.destination = Some(d.clone());
            }
            st.attempt = st.attempt.max(v.attempts);
            st.phase = v.phase;
            if let Some(reason) = &v.reason {
                st.reason = Some(reason.clone());
            }
            self.vms[i].show(&self.statuses[i], &self.next);
        }
        let count = |o: VmOutcome| self.vms.iter().filter(|r| r.outcome == o).count() as u32;
        self.moved = count(VmOutcome::Moved);
        self.unmigratable = count(VmOutcome::Unmigratable);
        self.cancelled = count(VmOutcome::Cancelled);
        self.duration_secs = self.duration_secs.max(snap.at.as_millis() as f64 / 1000.0);
        self.set_end(snap.at, None);
        if self.error.is_none() {
            self.error = snap.failed.clone();
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use vmove_core::Reason;

    fn status(reason: Option<Reason>, phase: Phase) -> VmStatus {
        let mut s = VmStatus::new(VmId::new("vm-1"), Time::ZERO);
        s.reason = reason;
        s.phase = phase;
        s
    }

    #[test]
    fn a_journal_entry_time_out_of_range_is_said_when_resumed_not_a_panic() {
        // A resume folds the journal's entries into the record: their times are whatever
        // the journal holds (`at = -5` reads as a time near u64::MAX).
        let mut r = Record::new("resume");
        r.set_start_ms(1_800_000_000_000);
        let ev = Event {
            at: Time(u64::MAX - 4),
            kind: EventKind::AttemptStarted {
                vm: VmId::new("vm-1"),
                attempt: 1,
                source: vmove_core::HostId::new("a"),
                destination: vmove_core::HostId::new("b"),
                mode: vmove_core::MigrationMode::Live,
            },
        };
        r.apply(&ev);
        let started = r.vms[0].started.clone().unwrap_or_default();
        assert!(started.ends_with("(out of range)"), "{started}");
        r.set_end(Time(u64::MAX), Some(u64::MAX));
        assert!(
            r.ended
                .as_deref()
                .unwrap_or_default()
                .ends_with("(out of range)"),
            "{:?}",
            r.ended
        );
        assert_eq!(r.wall(Time(1_000)), "2027-01-15T08:00:01Z");
    }

    #[test]
    fn the_remedy_for_a_vm_still_backing_up_names_the_backup_threshold_setting() {
        let s = status(
            Some(Reason::BackupTooLong {
                threshold_secs: 3600,
            }),
            Phase::Unmigratable,
        );
        let action = action_for(&s, &NextRun::NewRun);
        assert!(action.contains("raise `backup_threshold`"), "{action}");
    }

    #[test]
    fn every_setting_a_remedy_names_is_a_real_setting_key() {
        // The remedies' source: every backquoted snake_case word in it is a setting's name,
        // and must be a `[defaults]` key (`vmove config` lists them), or the remedy sends
        // people to a setting that does not exist.
        let source = include_str!("record.rs");
        let start = source.find("pub fn action_for(").unwrap_or(0);
        let body = &source[start..];
        let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
        let keys = crate::settings::all_keys();
        let mut named = Vec::new();
        for quoted in body.split('`').skip(1).step_by(2) {
            let word = !quoted.is_empty()
                && quoted.contains('_')
                && quoted.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if word {
                assert!(
                    keys.iter().any(|k| k == quoted),
                    "a remedy names `{quoted}`, which is not a setting (the settings: {keys:?})"
                );
                named.push(quoted);
            }
        }
        assert!(named.contains(&"backup_threshold"), "{named:?}");
    }

    #[test]
    fn a_vm_of_a_run_that_cannot_be_resumed_is_not_sent_to_vmove_resume() {
        for s in [
            status(None, Phase::Cancelled),
            status(Some(Reason::RunStopped), Phase::Cancelled),
            status(Some(Reason::FailFast), Phase::Cancelled),
            status(None, Phase::Migrating),
        ] {
            let new_run = action_for(&s, &NextRun::NewRun);
            assert!(!new_run.contains("resume"), "{new_run}");
            assert!(new_run.contains("`vmove migrate` naming it"), "{new_run}");
            let demo = action_for(&s, &NextRun::Demo);
            assert!(!demo.contains("resume"), "{demo}");
            assert!(!demo.contains("migrate"), "{demo}");
            assert!(demo.contains("`vmove demo`"), "{demo}");
            let resumable = action_for(&s, &NextRun::Resume("run-1".into()));
            assert!(resumable.contains("`vmove resume run-1`"), "{resumable}");
        }
    }
}
