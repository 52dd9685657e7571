//! The summary table, the `--report` files (Markdown or JSON) and the check that `--report` can
//! be written before a run starts.

use super::fmt::fmt_time;
use super::record::Record;
use std::path::Path;
use vmove_core::Time;

impl Record {
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
                    r.outcome.to_string(),
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
                esc(r.outcome.as_str()),
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

/// Checks, before a run starts, that `--report` can be written (not only once every VM moved):
/// not a folder, its folder exists, and a file can be made or appended to there. Nothing is left behind: a file made to check is removed again.
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
