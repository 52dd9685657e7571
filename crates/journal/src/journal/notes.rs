//! What any process may write about a run, with no lease: notes for a person and stop
//! requests.

use super::handle::Journal;
use super::rows::{ensure_running, read_stop, run_state};
use crate::clock::WallTime;
use crate::codec::redact;
use crate::db::vals;
use crate::error::{JournalError, Result};
use crate::record::StopRequest;

impl Journal {
    /// Writes a note for a person about the run, beside its moves (that its standard output
    /// was closed by its reader and the run went on). Any process may write one; the text is
    /// redacted like every stored text (no URI's user information).
    pub fn record_note(&mut self, run: &str, text: &str) -> Result<()> {
        let now = self.now();
        let tx = self.write_tx()?;
        run_state(&tx, run)?;
        tx.execute(
            "INSERT INTO notes (run_id, at, text) VALUES (?1, ?2, ?3)",
            vals![run, now.0, redact(text.to_owned())],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The run's notes, oldest first, with when each was written.
    pub fn notes(&self, run: &str) -> Result<Vec<(WallTime, String)>> {
        self.conn.query_map(
            "SELECT at, text FROM notes WHERE run_id = ?1 ORDER BY at, rowid",
            vals![run],
            |r| Ok((WallTime(r.get(0)?), r.get(1)?)),
        )
    }

    // ----- stop requests (any process) -----

    /// Asks a running run to stop starting moves; with `now`, to abort running migrations too.
    /// A later plain stop does not undo an earlier `now`. Needs no lease.
    pub fn request_stop(&mut self, run: &str, now: bool) -> Result<StopRequest> {
        let at = self.now();
        let tx = self.write_tx()?;
        ensure_running(&tx, run)?;
        tx.execute(
            "UPDATE runs SET stop_request = CASE WHEN ?2 OR stop_request = 'now' THEN 'now' ELSE 'stop' END,
                 stop_requested_at = ?3 WHERE id = ?1",
            vals![run, now, at.0],
        )?;
        let req = read_stop(&tx, run)?;
        tx.commit()?;
        req.ok_or_else(|| JournalError::UnknownRun(run.to_owned()))
    }

    /// The stop asked of a run, if any (the driver polls this).
    pub fn stop_requested(&self, run: &str) -> Result<Option<StopRequest>> {
        run_state(&self.conn, run)?;
        read_stop(&self.conn, run)
    }
}
