//! The text timeline (`vmove report --timeline`, `vmove plan --timeline`): per host slot lane a
//! row of characters over the run's time, one letter per outcome; the foreign migrations on a
//! host as their count; then the VMs whose move was not one plain attempt (a wait other than
//! their turn, a failed attempt, not moved) with their waits; and a legend. Fitted to a width
//! (`COLUMNS`, or the terminal's, as tables are); every other bar of a lane in lower case, so
//! that bars one after the other show apart. Letters, not colours: it reads the same in a
//! pipe, a log or a mail.

use super::model::{AttemptOutcome, Timeline, WaitKind};
use crate::output::fmt_time;
use crate::stdio::printable;
use vmove_core::Time;

/// At most this many VM rows (the rest are counted).
const MAX_VM_ROWS: usize = 40;

/// The width used when none is known (a pipe without `COLUMNS`).
pub const DEFAULT_WIDTH: usize = 100;

/// Which character covers most of `[c0, c1)` among `spans` (from, to, char, rank); a span of
/// a higher rank wins over any of a lower one (an attempt over a wait); `idle` if none.
fn cell(spans: &[(u64, u64, char, u8)], c0: u64, c1: u64, idle: char) -> char {
    let mut best = (0u8, 0u64, idle);
    for &(from, to, ch, rank) in spans {
        let lo = from.max(c0);
        let hi = to.min(c1);
        // A bar shorter than a cell still shows in the cell it starts in.
        let cover = if hi > lo {
            hi - lo
        } else if from >= c0 && from < c1 {
            1
        } else {
            continue;
        };
        if (rank, cover) > (best.0, best.1) {
            best = (rank, cover, ch);
        }
    }
    best.2
}

fn label(s: &str, w: usize) -> String {
    let s = printable(s);
    let n = s.chars().count();
    if n <= w {
        // `w` is at most 18 here, but padded by hand as every other width is.
        let mut c = s.into_owned();
        c.push_str(&" ".repeat(w - n));
        c
    } else {
        let mut c: String = s.chars().take(w.saturating_sub(1)).collect();
        c.push('~');
        c
    }
}

/// The text timeline in `width` columns (at least 40 and at most
/// [`crate::output::MAX_WIDTH`] are used: each row is drawn that wide).
pub fn text(t: &Timeline, width: usize) -> String {
    let width = width.clamp(40, crate::output::MAX_WIDTH);
    let lw = 18usize.min(width / 4);
    let cols = width - lw - 2;
    let end = t.span_ms();
    let open_end = t.end_ms.max(1);
    // The last time a column holds.
    let end_max = end.saturating_sub(1);
    let step = end.div_ceil(cols as u64).max(1);
    let row = |spans: &[(u64, u64, char, u8)], idle: char| -> String {
        (0..cols as u64)
            .map(|c| cell(spans, c * step, (c + 1) * step, idle))
            .collect()
    };
    let mut out = String::new();
    out.push_str(&wrap(
        &format!(
            "timeline of run {} ({}, one column = {}):",
            printable(&t.run_id),
            if t.simulated {
                "simulated time"
            } else {
                "wall clock"
            },
            fmt_time(Time(step))
        ),
        width,
    ));
    let axis_end = fmt_time(Time(end));
    // Padded by hand: `COLUMNS` may ask for more than the 65,535 a `{:<w$}` width allows.
    let mut zero = String::from("0s");
    zero.push_str(&" ".repeat(cols.saturating_sub(axis_end.len()).saturating_sub(2)));
    out.push_str(&format!("{} |{zero}{axis_end}\n", label("", lw)));
    for h in &t.hosts {
        let limit = h.limit.map(|l| format!(" (limit {l})")).unwrap_or_default();
        out.push_str(&format!("{}{limit}\n", printable(&h.name)));
        for (dir, lanes) in [("out", &h.outbound), ("in", &h.inbound)] {
            for (n, lane) in lanes.iter().enumerate() {
                // Every other bar of a lane in lower case, so that two bars one after the
                // other show where one ends.
                let spans: Vec<(u64, u64, char, u8)> = lane
                    .bars
                    .iter()
                    .enumerate()
                    .map(|(k, b)| {
                        let letter = t.attempts[b.attempt].outcome.letter();
                        (
                            b.from_ms,
                            b.to_ms.unwrap_or(open_end),
                            if k % 2 == 1 {
                                letter.to_ascii_lowercase()
                            } else {
                                letter
                            },
                            1,
                        )
                    })
                    .collect();
                out.push_str(&format!(
                    "{} |{}\n",
                    label(&format!("  {dir} {}", n + 1), lw),
                    row(&spans, '.')
                ));
            }
        }
        // The plan's moves beside the real lanes: how many it expected at once, leaving and
        // arriving (a VM it did not expect to move has no bar).
        for (dir, leaving) in [("out", true), ("in", false)] {
            let bars: Vec<(u64, u64)> = t
                .predicted
                .iter()
                .filter(|p| {
                    if leaving {
                        p.source == h.name
                    } else {
                        p.destination == h.name
                    }
                })
                .filter_map(|p| Some((p.start_ms, p.end_ms?)))
                .collect();
            if bars.is_empty() {
                continue;
            }
            let line: String = (0..cols as u64)
                .map(|c| {
                    let (c0, c1) = (c * step, (c + 1) * step);
                    let n = bars
                        .iter()
                        .filter(|(from, to)| *from < c1 && (*to > c0 || *from >= c0))
                        .count();
                    match n {
                        0 => '.',
                        n => char::from_digit(n.min(9) as u32, 10).unwrap_or('+'),
                    }
                })
                .collect();
            out.push_str(&format!(
                "{} |{line}\n",
                label(&format!("  planned {dir}"), lw)
            ));
        }
        if !h.foreign.is_empty() {
            let spans: Vec<(u64, u64, char, u8)> = h
                .foreign
                .iter()
                .map(|s| {
                    let ch = char::from_digit(s.count.min(9), 10).unwrap_or('+');
                    (s.from_ms, s.to_ms.unwrap_or(open_end), ch, 1)
                })
                .collect();
            out.push_str(&format!(
                "{} |{}\n",
                label("  foreign", lw),
                row(&spans, '.')
            ));
        }
    }
    let notable: Vec<_> = t
        .vms
        .iter()
        .filter(|v| {
            v.outcome != "moved"
                || v.attempts.len() > 1
                || v.waits
                    .iter()
                    .any(|w| !matches!(w.kind, WaitKind::Queued | WaitKind::Preflight))
        })
        .collect();
    if !notable.is_empty() {
        out.push_str("VMs with waits, retries or not moved\n");
        for v in notable.iter().take(MAX_VM_ROWS) {
            let mut spans: Vec<(u64, u64, char, u8)> = v
                .waits
                .iter()
                .filter(|w| w.kind != WaitKind::Queued)
                .map(|w| (w.from_ms, w.to_ms.unwrap_or(open_end), w.kind.letter(), 0))
                .collect();
            // Where a move was given up (X) or cancelled (C).
            match (v.ended_ms, v.outcome.as_str()) {
                (Some(end), "unmigratable") => {
                    let at = end.min(end_max);
                    spans.push((at, at, 'X', 2))
                }
                (Some(end), "cancelled") => {
                    let at = end.min(end_max);
                    spans.push((at, at, 'C', 2))
                }
                _ => {}
            }
            for &i in &v.attempts {
                let a = &t.attempts[i];
                spans.push((
                    a.start_ms,
                    a.end_ms.unwrap_or(open_end),
                    a.outcome.letter(),
                    1,
                ));
            }
            out.push_str(&format!(
                "{} |{}\n",
                label(&format!("  {}", v.name), lw),
                row(&spans, ' ')
            ));
        }
        if notable.len() > MAX_VM_ROWS {
            out.push_str(&format!(
                "  ... and {} more (the HTML report draws every VM)\n",
                notable.len() - MAX_VM_ROWS
            ));
        }
    }
    let outcomes: Vec<String> = AttemptOutcome::ALL
        .iter()
        .map(|o| format!("{} {}", o.letter(), o.as_str()))
        .collect();
    out.push_str(&wrap(
        &format!(
            "attempts: {} (in a lane every other bar in lower case); . idle slot; 1-9 foreign migrations; X given up, C cancelled",
            outcomes.join(", ")
        ),
        width,
    ));
    let waits: Vec<String> = WaitKind::ALL
        .iter()
        .filter(|k| **k != WaitKind::Queued)
        .map(|k| format!("{} {}", k.letter(), k.as_str().replace('_', " ")))
        .collect();
    out.push_str(&wrap(&format!("waits: {}", waits.join(", ")), width));
    if !t.predicted.is_empty() {
        out.push_str(&wrap(
            "planned out/in: as planned, how many moves at once (1-9) leaving/arriving at the host",
            width,
        ));
    }
    out
}

/// `text` wrapped at spaces to `width` columns, later lines indented by two; each line ends
/// with a newline.
pub(crate) fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let len = line.chars().count();
        if len > 2 && len + 1 + word.chars().count() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = String::from("  ");
        } else if !line.is_empty() && !line.ends_with("  ") {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}
