//! The entries a lease holder writes: intents before acting, outcomes and inputs after,
//! events with their VM's status row, and whole steps in one transaction.

use super::guard::check_vm_free;
use super::handle::Journal;
use super::lease::check_lease;
use super::rows::ensure_running;
use crate::clock::WallTime;
use crate::codec::{decode, encode, tag};
use crate::db::{Db, vals};
use crate::error::{JournalError, Result};
use crate::record::{IntentId, StepRecord};
use crate::schema;
use crate::status::VmStatus;
use vmove_core::{Command, Event, EventKind, Input, Time, VmId};

/// The attempt a command is about, stored beside it for queries by attempt.
fn command_attempt(c: &Command) -> Option<u32> {
    c.attempt()
}

impl Journal {
    /// Records a command BEFORE it is carried out. Durable when this returns. Needs an unexpired
    /// lease, and refuses a command about a VM another live run holds.
    pub fn record_intent(&mut self, run: &str, at: Time, command: &Command) -> Result<IntentId> {
        let now = self.now();
        let token = self.held.get(run).cloned();
        let tx = self.write_tx()?;
        let id = intent_in(&tx, run, token.as_deref(), now, at, command)?;
        tx.commit()?;
        Ok(id)
    }

    /// Records the answer to an intent. Durable when this returns.
    pub fn record_outcome(
        &mut self,
        run: &str,
        intent: IntentId,
        at: Time,
        input: &Input,
    ) -> Result<u64> {
        self.write_input(run, Some(intent), at, input)
    }

    /// Records an input nobody asked for (an operator's stop, a pushed migration status).
    pub fn record_input(&mut self, run: &str, at: Time, input: &Input) -> Result<u64> {
        self.write_input(run, None, at, input)
    }

    fn write_input(
        &mut self,
        run: &str,
        intent: Option<IntentId>,
        at: Time,
        input: &Input,
    ) -> Result<u64> {
        let now = self.now();
        let token = self.held.get(run).cloned();
        let tx = self.write_tx()?;
        let seq = input_in(&tx, run, token.as_deref(), now, intent, at, input)?;
        tx.commit()?;
        Ok(seq)
    }

    /// Records one event and updates its VM's status row, in one transaction.
    pub fn record_event(&mut self, run: &str, event: &Event) -> Result<u64> {
        let seqs = self.record_events(run, std::slice::from_ref(event))?;
        Ok(seqs.first().copied().unwrap_or_default())
    }

    /// Records several events in one transaction (all or none): the explicit batch for chatty
    /// events such as progress. A `Selected` event for a VM another live run holds refuses the
    /// whole batch.
    pub fn record_events(&mut self, run: &str, events: &[Event]) -> Result<Vec<u64>> {
        let now = self.now();
        let token = self.held.get(run).cloned();
        let tx = self.write_tx()?;
        let mut seqs = Vec::with_capacity(events.len());
        for event in events {
            seqs.push(event_in(&tx, run, token.as_deref(), now, event)?);
        }
        tx.commit()?;
        Ok(seqs)
    }

    /// Records, in this order and in ONE transaction (all or none, one sync to disk), what a
    /// run lived since its last write: answers and inputs, the events the core emitted, then
    /// the intents of the commands it asks for, none of which has been carried out yet. The
    /// same checks as [`Journal::record_outcome`], [`Journal::record_input`],
    /// [`Journal::record_events`] and [`Journal::record_intent`], each refusing the whole
    /// step. Returns the intents' ids, in the order given.
    pub fn record_step(&mut self, run: &str, step: &[StepRecord]) -> Result<Vec<IntentId>> {
        let now = self.now();
        let token = self.held.get(run).cloned();
        let tx = self.write_tx()?;
        let mut intents = Vec::new();
        for r in step {
            match r {
                StepRecord::Input { intent, at, input } => {
                    input_in(&tx, run, token.as_deref(), now, *intent, *at, input)?;
                }
                StepRecord::Event(event) => {
                    event_in(&tx, run, token.as_deref(), now, event)?;
                }
                StepRecord::Intent { at, command } => {
                    intents.push(intent_in(&tx, run, token.as_deref(), now, *at, command)?);
                }
            }
        }
        tx.commit()?;
        Ok(intents)
    }
}

/// An intent, inside a write transaction.
fn intent_in(
    tx: &Db,
    run: &str,
    token: Option<&str>,
    now: WallTime,
    at: Time,
    command: &Command,
) -> Result<IntentId> {
    let body = encode(command)?;
    let name = tag(&body, "command");
    let seq = begin_entry(tx, run, token, now, true)?;
    if let Some(vm) = command.vm() {
        check_vm_free(tx, run, vm, now)?;
    }
    insert_entry(
        tx,
        run,
        seq,
        "intent",
        at,
        command.vm(),
        command_attempt(command),
        &name,
        None,
        &body,
        now,
    )?;
    Ok(IntentId(seq))
}

/// An outcome (answering `intent`) or an unasked input, inside a write transaction.
fn input_in(
    tx: &Db,
    run: &str,
    token: Option<&str>,
    now: WallTime,
    intent: Option<IntentId>,
    at: Time,
    input: &Input,
) -> Result<u64> {
    let body = encode(input)?;
    let name = tag(&body, "input");
    let (vm, attempt) = match input.vm_attempt() {
        Some((vm, a)) => (Some(vm), Some(a)),
        None => (None, None),
    };
    let seq = begin_entry(tx, run, token, now, false)?;
    if let Some(id) = intent {
        let kind: Option<String> = tx.query_opt(
            "SELECT kind FROM entries WHERE run_id = ?1 AND seq = ?2",
            vals![run, id.0 as i64],
            |r| r.get(0),
        )?;
        if kind.as_deref() != Some("intent") {
            return Err(JournalError::UnknownIntent {
                run: run.to_owned(),
                intent: id.0,
            });
        }
        let answered: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM entries WHERE run_id = ?1 AND answers = ?2)",
            vals![run, id.0 as i64],
            |r| r.get(0),
        )?;
        if answered {
            return Err(JournalError::DuplicateOutcome {
                run: run.to_owned(),
                intent: id.0,
            });
        }
    }
    let kind = if intent.is_some() { "outcome" } else { "input" };
    insert_entry(
        tx, run, seq, kind, at, vm, attempt, &name, intent, &body, now,
    )?;
    Ok(seq)
}

/// An event and its VM's status row, inside a write transaction.
fn event_in(tx: &Db, run: &str, token: Option<&str>, now: WallTime, event: &Event) -> Result<u64> {
    let body = encode(event)?;
    let name = tag(&body, "event");
    let seq = begin_entry(tx, run, token, now, false)?;
    let vm = event.kind.vm();
    if let (EventKind::Selected { .. }, Some(vm)) = (&event.kind, vm) {
        check_vm_free(tx, run, vm, now)?;
    }
    let attempt = match &event.kind {
        EventKind::AttemptStarted { attempt, .. }
        | EventKind::Progress { attempt, .. }
        | EventKind::Escalated { attempt, .. }
        | EventKind::WatchdogFired { attempt, .. }
        | EventKind::AttemptFailed { attempt, .. } => Some(*attempt),
        _ => None,
    };
    insert_entry(
        tx, run, seq, "event", event.at, vm, attempt, &name, None, &body, now,
    )?;
    if let Some(vm) = vm {
        update_status(tx, run, vm, seq, event)?;
    }
    Ok(seq)
}

/// Checks the run and the lease and allocates the next sequence number.
fn begin_entry(
    tx: &Db,
    run: &str,
    token: Option<&str>,
    now: WallTime,
    unexpired: bool,
) -> Result<u64> {
    ensure_running(tx, run)?;
    check_lease(tx, run, token, now, unexpired)?;
    let seq: i64 = tx.query_row(
        "UPDATE runs SET last_seq = last_seq + 1 WHERE id = ?1 RETURNING last_seq",
        vals![run],
        |r| r.get(0),
    )?;
    Ok(seq as u64)
}

fn insert_entry(
    tx: &Db,
    run: &str,
    seq: u64,
    kind: &str,
    at: Time,
    vm: Option<&VmId>,
    attempt: Option<u32>,
    name: &str,
    answers: Option<IntentId>,
    body: &str,
    now: WallTime,
) -> Result<()> {
    tx.execute(
        "INSERT INTO entries (run_id, seq, kind, at, vm, attempt, name, answers, body, written_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        vals![
            run,
            seq as i64,
            kind,
            at.0 as i64,
            vm.map(VmId::as_str),
            attempt,
            name,
            answers.map(|a| a.0 as i64),
            body,
            now.0
        ],
    )?;
    Ok(())
}

fn update_status(tx: &Db, run: &str, vm: &VmId, seq: u64, event: &Event) -> Result<()> {
    let row: Option<(i64, String)> = tx.query_opt(
        "SELECT ord, status FROM vm_state WHERE run_id = ?1 AND vm = ?2",
        vals![run, vm.as_str()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (ord, mut status) = match row {
        Some((ord, json)) => (ord as usize, decode::<VmStatus>(run, seq, &json)?),
        None => {
            let n: i64 = tx.query_row(
                "SELECT COUNT(*) FROM vm_state WHERE run_id = ?1",
                vals![run],
                |r| r.get(0),
            )?;
            (n as usize, VmStatus::new(vm.clone(), event.at))
        }
    };
    status.apply(event);
    schema::put_status(tx, run, ord, seq, &status)
}
