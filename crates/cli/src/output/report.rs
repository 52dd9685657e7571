//! The summary table, the `--report` files (JSON, Markdown, or HTML/SVG with the timeline) and the check that `--report` can
//! be written before a run starts.

use super::fmt::{fmt_downtime, fmt_time};
use super::record::{Record, VmOutcome};
use super::table::{Table, fit_line};
use std::path::Path;
use vmove_core::{Time, fmt_bytes};

impl Record {
    /// The summary table, fitted to the terminal ([`super::table::terminal_width`]), then the
    /// totals, when and where the run ran, and what needs a person.
    pub fn table(&self) -> String {
        self.table_fitted(super::table::terminal_width())
    }

    /// The summary fitted to `width` (none: nothing cut).
    pub fn table_fitted(&self, width: Option<usize>) -> String {
        let mut t = Table::new(&[
            "VM",
            "SOURCE",
            "DESTINATION",
            "OUTCOME",
            "ATTEMPTS",
            "SIZE",
            "REASON / NOTES",
        ]);
        t.right = vec![4, 5];
        t.shrink = vec![0, 1, 2];
        for r in &self.vms {
            let mut why: Vec<String> = r.reason.iter().cloned().collect();
            why.extend(r.notes.iter().cloned());
            t.rows.push(vec![
                r.name.clone(),
                r.source.clone().unwrap_or_else(|| "-".into()),
                r.destination.clone().unwrap_or_else(|| "-".into()),
                r.outcome.to_string(),
                r.attempts.to_string(),
                fmt_bytes(r.memory_bytes + r.disk_bytes),
                if why.is_empty() {
                    "-".into()
                } else {
                    why.join("; ")
                },
            ]);
        }
        let mut out = t.render(width);
        out.push('\n');
        out.push_str(&fit_line(
            &format!(
                "{} moved, {} unmigratable, {} cancelled in {}{}",
                self.moved,
                self.unmigratable,
                self.cancelled,
                fmt_time(Time((self.duration_secs * 1000.0) as u64)),
                self.error
                    .as_ref()
                    .map(|e| format!("; the run failed: {e}"))
                    .unwrap_or_default()
            ),
            width,
        ));
        out.push_str(&fit_line(
            &format!(
                "started {}, ended {}, on {} by vmove {}",
                self.started,
                self.ended.as_deref().unwrap_or("(not yet)"),
                self.host,
                self.vmove_version
            ),
            width,
        ));
        let actions = self.actions();
        if !actions.is_empty() {
            let mut a = Table::new(&["ACTION NEEDED", "OUTCOME", "WHY, AND WHAT TO DO"]);
            a.shrink = vec![0];
            a.rows = actions
                .into_iter()
                .map(|(name, outcome, why, todo)| vec![name, outcome, format!("{why} -> {todo}")])
                .collect();
            out.push('\n');
            out.push_str(&a.render(width));
        }
        out
    }

    /// Every VM that did not move: its name, outcome, reason and what to do.
    pub fn actions(&self) -> Vec<(String, String, String, String)> {
        self.vms
            .iter()
            .filter(|r| r.outcome != VmOutcome::Moved)
            .map(|r| {
                (
                    r.name.clone(),
                    r.outcome.to_string(),
                    r.reason.clone().unwrap_or_else(|| "not over".into()),
                    r.action.clone().unwrap_or_else(|| "-".into()),
                )
            })
            .collect()
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        // What vmove did not write (a VM name is whatever its hypervisor allows) is never read
        // as Markdown (super::markdown: a code span unless it is plain text; in table cells `|`
        // escaped); control and bidi characters are shown escaped.
        let esc = |s: &str| super::markdown::cell(s);
        let text = |s: &str| super::markdown::inline(s);
        let mut out = format!(
            "# vmove run {}\n\n- command: {}\n- outcome: {}\n- started: {}\n- ended: {}\n- duration: {}\n- ran on: {}\n- vmove: {}\n- moved: {}, unmigratable: {}, cancelled: {}\n",
            text(&self.run_id),
            super::markdown::code(&self.command),
            self.outcome,
            self.started,
            self.ended.as_deref().unwrap_or("(not yet)"),
            fmt_time(Time((self.duration_secs * 1000.0) as u64)),
            text(&self.host),
            text(&self.vmove_version),
            self.moved,
            self.unmigratable,
            self.cancelled
        );
        if let Some(e) = &self.error {
            out.push_str(&format!("- error: {}\n", text(e)));
        }
        let actions = self.actions();
        if !actions.is_empty() {
            out.push_str(
                "\n## Action needed\n\n| VM | Outcome | Why | What to do |\n|---|---|---|---|\n",
            );
            for (name, outcome, why, todo) in actions {
                out.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    esc(&name),
                    esc(&outcome),
                    esc(&why),
                    esc(&todo)
                ));
            }
        }
        out.push_str("\n## VMs\n\n| VM | Source | Destination | Outcome | Attempts | Started | Ended | Size | Copied | Downtime | Reason / notes |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
        for r in &self.vms {
            let mut why: Vec<String> = r.reason.iter().cloned().collect();
            why.extend(r.notes.iter().cloned());
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                esc(&r.name),
                esc(r.source.as_deref().unwrap_or("-")),
                esc(r.destination.as_deref().unwrap_or("-")),
                esc(r.outcome.as_str()),
                r.attempts,
                r.started.as_deref().unwrap_or("-"),
                r.ended.as_deref().unwrap_or("-"),
                fmt_bytes(r.memory_bytes + r.disk_bytes),
                fmt_bytes(r.bytes_copied),
                fmt_downtime(r.downtime_ms),
                esc(&why.join("; "))
            ));
        }
        out
    }

    /// Writes `--report` in the format its name says ([`ReportFormat::of`]): JSON, Markdown
    /// (`.md`), HTML (`.html`/`.htm`: the report with the timeline inline) or the bare
    /// timeline SVG (`.svg`). HTML and SVG need the run's timeline: without one, nothing is
    /// written and the error says so.
    pub fn write_with(
        &self,
        path: &Path,
        timeline: Option<&crate::timeline::Timeline>,
    ) -> anyhow::Result<()> {
        use anyhow::{Context, bail};
        let text = match (ReportFormat::of(path), timeline) {
            (ReportFormat::Markdown, _) => self.markdown(),
            (ReportFormat::Json, _) => {
                serde_json::to_string_pretty(self).context("the report could not be serialised")?
                    + "\n"
            }
            (ReportFormat::Html, Some(t)) => crate::timeline::html::html(self, t),
            (ReportFormat::Svg, Some(t)) => crate::timeline::svg(t) + "\n",
            (f @ (ReportFormat::Html | ReportFormat::Svg), None) => bail!(
                "the report `{}` ({}) needs the run's timeline, which this command does not draw: name a .md or .json file",
                path.display(),
                f.as_str()
            ),
        };
        write_regular(path, &text)
    }
}

/// Writes the report's `text` to `path`, made if missing, replacing what it held: only into a
/// regular file, and without ever waiting. The path was checked before the run
/// ([`check_writable`]), but what is there may have changed meanwhile: it is looked at again by
/// its path, then opened without blocking (a FIFO with no reader fails at once instead of
/// waiting for one for good) and without truncating, and the opened file is looked at before
/// anything is written (a FIFO with a reader, a device). Truncated only then.
pub fn write_regular(path: &Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let not_regular = || {
        refuse_unless_regular("--report", "report file", path, &std::fs::metadata(path))
            .map_err(|e| e.context("the report was not written"))
    };
    not_regular()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let cannot = || format!("cannot write the report `{}`", path.display());
    let mut file = match options.open(path) {
        Ok(f) => f,
        Err(e) => {
            // A FIFO without a reader (ENXIO) is said as what it is.
            not_regular()?;
            return Err(e).with_context(cannot);
        }
    };
    refuse_unless_regular("--report", "report file", path, &file.metadata())
        .map_err(|e| e.context("the report was not written"))?;
    file.set_len(0)
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.flush())
        .with_context(cannot)
}

/// The format of a `--report` file, by its name's ending (case ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// `.md`.
    Markdown,
    /// `.html` or `.htm`: the report and its timeline, one self-contained page.
    Html,
    /// `.svg`: the timeline alone.
    Svg,
    /// Anything else.
    Json,
}

impl ReportFormat {
    /// The format a file name asks for.
    pub fn of(path: &Path) -> ReportFormat {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("md") => ReportFormat::Markdown,
            Some("html" | "htm") => ReportFormat::Html,
            Some("svg") => ReportFormat::Svg,
            _ => ReportFormat::Json,
        }
    }

    /// Whether it draws the timeline.
    pub fn needs_timeline(self) -> bool {
        matches!(self, ReportFormat::Html | ReportFormat::Svg)
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Markdown => "Markdown",
            ReportFormat::Html => "HTML",
            ReportFormat::Svg => "SVG",
            ReportFormat::Json => "JSON",
        }
    }
}

/// Refuses a file named by `flag` (the `what`: "report file") that is not a regular file (a
/// FIFO, a device, a folder), by `meta`, what was found at `path` (through symbolic links); a
/// path where nothing is yet (an error) is fine: it will be made. Looked at before the file is
/// opened: opening a FIFO to write to it waits for a reader that never comes (vmove hung before
/// the run started), and `/dev/null` keeps nothing of what it is given.
pub fn refuse_unless_regular(
    flag: &str,
    what: &str,
    path: &Path,
    meta: &std::io::Result<std::fs::Metadata>,
) -> anyhow::Result<()> {
    match meta
        .as_ref()
        .ok()
        .and_then(vmove_driver::files::not_a_regular_file)
    {
        Some(kind) => anyhow::bail!(
            "flag `{flag}`: the {what} `{}` is not a regular file but {kind}: name a file (it \
             is made if missing)",
            path.display()
        ),
        None => Ok(()),
    }
}

/// Checks, before a run starts, that `--report` can be written (not only once every VM moved):
/// a regular file or nothing yet ([`refuse_unless_regular`]), its folder exists, and a file can
/// be made or appended to there. Nothing is left behind: a file made to check is removed again.
pub fn check_writable(path: &Path) -> anyhow::Result<()> {
    use anyhow::{Context, bail};
    if path.as_os_str().is_empty() {
        bail!("flag `--report`: an empty file name");
    }
    refuse_unless_regular("--report", "report file", path, &std::fs::metadata(path))?;
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
