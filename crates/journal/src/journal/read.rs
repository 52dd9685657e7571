//! What any process reads, with no lease: a consistent snapshot each.

use super::handle::Journal;
use super::rows::{read_statuses, run_state, summary};
use crate::clock::WallTime;
use crate::codec::decode;
use crate::db::{Db, vals};
use crate::error::{JournalError, Result};
use crate::record::{ConfigFormat, Entry, EntryBody, IntentId, RunRecord, RunSummary};
use crate::status::VmStatus;
use vmove_core::{RunSpec, Time};

impl Journal {
    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<RunSummary>> {
        let ids: Vec<String> = {
            self.conn.query_map(
                "SELECT id FROM runs ORDER BY created_at DESC, rowid DESC",
                vals![],
                |r| r.get(0),
            )?
        };
        let tx = self.conn.read_tx()?;
        let out = ids
            .iter()
            .map(|id| summary(&tx, id))
            .collect::<Result<Vec<_>>>()?;
        tx.commit()?;
        Ok(out)
    }

    /// One run's summary.
    pub fn run_summary(&self, run: &str) -> Result<RunSummary> {
        summary(&self.conn, run)
    }

    /// The per-VM status of a run, in selection order (what `status` shows).
    pub fn vm_status(&self, run: &str) -> Result<Vec<VmStatus>> {
        let tx = self.conn.read_tx()?;
        run_state(&tx, run)?;
        let out = read_statuses(&tx, run)?;
        tx.commit()?;
        Ok(out)
    }

    /// Everything about a run, for replay and reports.
    pub fn load_run(&self, run: &str) -> Result<RunRecord> {
        self.load_run_until(run, u64::MAX)
    }

    /// The entries of a run after entry `after_seq` (exclusive), in order: what a reader that
    /// tails a run another process is writing (`vmove serve`) reads at each look, instead of
    /// the whole run again.
    pub fn entries_after(&self, run: &str, after_seq: u64) -> Result<Vec<Entry>> {
        let tx = self.conn.read_tx()?;
        run_state(&tx, run)?;
        let out = read_entries(&tx, run, after_seq.saturating_add(1), u64::MAX)?;
        tx.commit()?;
        Ok(out)
    }

    /// A run as it stood after entry `last_seq` (replay tests cut the journal with this). The
    /// status table is the current one.
    pub fn load_run_until(&self, run: &str, last_seq: u64) -> Result<RunRecord> {
        let tx = self.conn.read_tx()?;
        let summary = summary(&tx, run)?;
        let (spec, config, format): (String, String, String) = tx.query_row(
            "SELECT spec, config, config_format FROM runs WHERE id = ?1",
            vals![run],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let spec: RunSpec = decode(run, 0, &spec)?;
        let config_format = ConfigFormat::parse(&format).ok_or(JournalError::Corrupt {
            what: "config format",
            value: format,
        })?;
        let entries = read_entries(&tx, run, 0, last_seq)?;
        let vms = read_statuses(&tx, run)?;
        tx.commit()?;
        Ok(RunRecord {
            summary,
            spec,
            config,
            config_format,
            entries,
            vms,
        })
    }
}

/// A stored number that vmove writes as 0 or more, as one; [`JournalError::Negative`] naming
/// `what` (with where it is) if it is below 0.
pub(super) fn not_negative(run: &str, n: i64, what: impl FnOnce() -> String) -> Result<u64> {
    u64::try_from(n).map_err(|_| JournalError::Negative {
        run: run.to_owned(),
        what: what(),
        value: n,
    })
}

/// A run's entries with `from <= seq <= until`, in order: all of them, or
/// [`JournalError::Gap`] if one in that range is missing or one stands past the run's last
/// (vmove numbers a run's entries 1, 2, 3... and deletes none).
fn read_entries(conn: &Db, run: &str, from: u64, until: u64) -> Result<Vec<Entry>> {
    let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let last: i64 = conn.query_row("SELECT last_seq FROM runs WHERE id = ?1", vals![run], |r| {
        r.get(0)
    })?;
    let last = not_negative(run, last, || "the run's count of entries".into())?;
    let gap = |what: String| JournalError::Gap {
        run: run.to_owned(),
        what,
    };
    // The next sequence number the range must hold.
    let mut next = from.max(1);
    let mut entries = Vec::new();
    let rows = conn.query_map(
        "SELECT seq, kind, at, answers, body, written_at FROM entries
         WHERE run_id = ?1 AND seq >= ?2 AND seq <= ?3 ORDER BY seq",
        vals![run, to_i64(from), to_i64(until)],
        |r| {
            Ok((
                r.get::<i64>(0)?,
                r.get::<String>(1)?,
                r.get::<i64>(2)?,
                r.get::<Option<i64>>(3)?,
                r.get::<String>(4)?,
                r.get::<i64>(5)?,
            ))
        },
    )?;
    for (seq, kind, at, answers, body, written) in rows {
        // `seq >= from` in the query: never below 0 here.
        let seq = u64::try_from(seq).unwrap_or_default();
        if seq > last {
            return Err(gap(format!("holds entry {seq}, past its last ({last})")));
        }
        if seq != next {
            return Err(gap(missing(next, seq - 1)));
        }
        next = seq + 1;
        let at = not_negative(run, at, || format!("the run time of entry {seq}"))?;
        let answers = answers
            .map(|a| not_negative(run, a, || format!("the intent entry {seq} answers")))
            .transpose()?;
        let body = match kind.as_str() {
            "intent" => EntryBody::Intent(decode(run, seq, &body)?),
            "outcome" => EntryBody::Outcome {
                intent: IntentId(answers.unwrap_or_default()),
                input: decode(run, seq, &body)?,
            },
            "input" => EntryBody::Input(decode(run, seq, &body)?),
            "event" => EntryBody::Event(decode(run, seq, &body)?),
            other => {
                return Err(JournalError::Corrupt {
                    what: "entry kind",
                    value: other.to_owned(),
                });
            }
        };
        entries.push(Entry {
            seq,
            at: Time(at),
            written_at: WallTime(written),
            body,
        });
    }
    let end = until.min(last);
    if next <= end {
        return Err(gap(missing(next, end)));
    }
    Ok(entries)
}

/// "lacks entry 4" or "lacks entries 4 to 6".
fn missing(first: u64, last: u64) -> String {
    if first == last {
        format!("lacks entry {first}")
    } else {
        format!("lacks entries {first} to {last}")
    }
}
