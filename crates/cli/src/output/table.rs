//! Tables for people that fit the terminal: `history`, `status`, the run summary and
//! `vmove report`. The width is `COLUMNS` when it holds a number, else the terminal's width
//! when stdout is a terminal, at most [`MAX_WIDTH`]; with neither (a pipe, a file) nothing is
//! cut. To fit, the wide columns shrink: the last (reasons, notes, state) is wrapped onto more
//! lines under itself, the others (names, ids) are cut with `…`.

/// The narrowest a shrinking column gets (its heading is cut too).
const MIN_COLUMN: usize = 8;
/// The narrowest the wrapped last column gets: below this the table is wider than the terminal.
const MIN_LAST: usize = 16;
/// Space between columns.
const GAP: &str = "  ";
/// How far the last column is indented when it goes under its row.
const STACK_INDENT: usize = 4;

/// The widest output is fitted to: a `COLUMNS` (or a terminal) wider is taken as this many
/// columns. No terminal is wider in practice, and every width printed (the text timeline draws
/// each row that wide) stays bounded: `COLUMNS=18446744073709551615` once asked the timeline
/// for that many characters a row (`capacity overflow` after the run, its report unwritten),
/// and `COLUMNS=100000000` printed 700 MB.
pub const MAX_WIDTH: usize = 1000;

/// The width tables are fitted to, if any: `COLUMNS`, else the terminal's; at most
/// [`MAX_WIDTH`].
pub fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    width_from(std::env::var("COLUMNS").ok().as_deref(), || {
        std::io::stdout()
            .is_terminal()
            .then(|| terminal_size::terminal_size().map(|(w, _)| usize::from(w.0)))
            .flatten()
    })
}

/// `COLUMNS` (a positive number) wins; else what `terminal` says; either at most [`MAX_WIDTH`]
/// (a number too large for a `usize` too).
fn width_from(columns: Option<&str>, terminal: impl FnOnce() -> Option<usize>) -> Option<usize> {
    let columns = columns.and_then(|c| match c.trim().parse::<usize>() {
        Ok(w) => Some(w),
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => Some(MAX_WIDTH),
        Err(_) => None,
    });
    match columns {
        Some(w) if w > 0 => Some(w),
        _ => terminal(),
    }
    .map(|w| w.min(MAX_WIDTH))
}

/// A table: a heading row and rows of cells; columns listed in `right` are aligned right,
/// columns listed in `shrink` may be cut to fit (the last column is always wrapped to fit).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub head: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub right: Vec<usize>,
    pub shrink: Vec<usize>,
}

fn len(s: &str) -> usize {
    s.chars().count()
}

/// `s` cut to `w` characters, its last one `…` when cut.
fn cut(s: &str, w: usize) -> String {
    if len(s) <= w {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(w.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `s` wrapped at spaces into lines of at most `w` characters (a longer word is split).
fn wrap(s: &str, w: usize) -> Vec<String> {
    let w = w.max(1);
    let mut lines = vec![];
    let mut line = String::new();
    for word in s.split(' ') {
        let mut word = word.to_owned();
        loop {
            let room = if line.is_empty() {
                w
            } else {
                w.saturating_sub(len(&line) + 1)
            };
            if len(&word) <= room {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if line.is_empty() {
                // A word longer than a line: split it.
                let head: String = word.chars().take(w).collect();
                word = word.chars().skip(w).collect();
                lines.push(head);
            } else {
                lines.push(std::mem::take(&mut line));
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// `text` (one line) wrapped to `width` when there is one, each line ending in a newline.
pub fn fit_line(text: &str, width: Option<usize>) -> String {
    match width {
        None => format!("{text}\n"),
        Some(w) => wrap(text, w).into_iter().map(|l| l + "\n").collect(),
    }
}

impl Table {
    /// A table with this heading.
    pub fn new(head: &[&str]) -> Table {
        Table {
            head: head.iter().map(|h| (*h).to_owned()).collect(),
            ..Table::default()
        }
    }

    /// The table as text fitted to `width` (none: nothing cut), each line ending in a newline.
    /// When even shrunk the columns leave the last too little room, the last column goes on
    /// lines of its own under each row (indented), and the columns close up to one space.
    pub fn render(&self, width: Option<usize>) -> String {
        let n = self.head.len();
        if n == 0 {
            return String::new();
        }
        let last = n - 1;
        // Every cell on one line: its control characters (newlines, tabs) escaped, and the
        // columns aligned on what is printed.
        let esc = |r: &Vec<String>| -> Vec<String> {
            r.iter()
                .map(|c| crate::stdio::escaped(c).into_owned())
                .collect()
        };
        let head = esc(&self.head);
        let rows: Vec<Vec<String>> = self.rows.iter().map(esc).collect();
        let mut w: Vec<usize> = head.iter().map(|h| len(h)).collect();
        for r in &rows {
            for (i, c) in r.iter().enumerate().take(n) {
                w[i] = w[i].max(len(c));
            }
        }
        let natural_last = w[last];
        let mut gap = GAP.len();
        let mut stacked = false;
        if let Some(width) = width {
            let total = |w: &[usize], gap: usize| w.iter().sum::<usize>() + gap * (n - 1);
            // The last column first, then the others that may shrink, last to first.
            let floor_last = MIN_LAST.min(w[last]);
            let over = total(&w, gap).saturating_sub(width);
            w[last] -= over.min(w[last] - floor_last);
            for &i in self.shrink.iter().rev().filter(|&&i| i < last) {
                let over = total(&w, gap).saturating_sub(width);
                let floor = MIN_COLUMN.min(w[i]);
                w[i] -= over.min(w[i] - floor);
            }
            if total(&w, gap) > width && n > 1 {
                // The last column under each row; the others close up, and shrink further.
                stacked = true;
                gap = 1;
                let row = |w: &[usize]| w[..last].iter().sum::<usize>() + (last - 1);
                for &i in self.shrink.iter().rev().filter(|&&i| i < last) {
                    let over = row(&w).saturating_sub(width);
                    let floor = 4.min(w[i]);
                    w[i] -= over.min(w[i] - floor);
                }
                w[last] = width.saturating_sub(STACK_INDENT).max(1);
            } else {
                // What the others gave back, the last column takes again.
                let spare = width.saturating_sub(total(&w, gap));
                w[last] += spare.min(natural_last.saturating_sub(w[last]));
            }
        }
        let gap_text = " ".repeat(gap);
        let mut out = String::new();
        for r in std::iter::once(&head).chain(&rows) {
            let cells: Vec<String> = (0..n)
                .map(|i| r.get(i).cloned().unwrap_or_default())
                .collect();
            let wrapped = if width.is_some() {
                wrap(&cells[last], w[last])
            } else {
                vec![cells[last].clone()]
            };
            let mut line = String::new();
            for (i, c) in cells.iter().enumerate().take(last) {
                let c = if width.is_some() {
                    cut(c, w[i])
                } else {
                    c.clone()
                };
                let pad = w[i].saturating_sub(len(&c));
                if self.right.contains(&i) {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(&c);
                } else {
                    line.push_str(&c);
                    line.push_str(&" ".repeat(pad));
                }
                line.push_str(&gap_text);
            }
            if stacked {
                let line = match width {
                    Some(width) => cut(line.trim_end(), width),
                    None => line.trim_end().to_owned(),
                };
                out.push_str(&line);
                out.push('\n');
                if cells[last].trim() != "-" && !cells[last].trim().is_empty() {
                    for part in &wrapped {
                        out.push_str(&" ".repeat(STACK_INDENT));
                        out.push_str(part.trim_end());
                        out.push('\n');
                    }
                }
                continue;
            }
            let indent = len(&line);
            for (k, part) in wrapped.iter().enumerate() {
                let mut l = if k == 0 {
                    line.clone()
                } else {
                    " ".repeat(indent)
                };
                if self.right.contains(&last) {
                    l.push_str(&" ".repeat(w[last].saturating_sub(len(part))));
                }
                l.push_str(part);
                out.push_str(l.trim_end());
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut t = Table::new(&["VM", "OUTCOME", "REASON / NOTES"]);
        t.shrink = vec![0];
        t.rows.push(vec![
            "a-very-long-virtual-machine-name-01".into(),
            "unmigratable".into(),
            "no destination has room for it (64.0 GiB memory, 500.0 GiB disk)".into(),
        ]);
        t.rows
            .push(vec!["web-01".into(), "moved".into(), "-".into()]);
        t
    }

    #[test]
    fn a_table_fits_sixty_columns_by_cutting_names_and_wrapping_reasons() {
        let text = table().render(Some(60));
        for line in text.lines() {
            assert!(len(line) <= 60, "{} > 60: {line:?}\n{text}", len(line));
        }
        let first = text.lines().nth(1).unwrap_or_default();
        assert!(
            first.starts_with("a-very-long-virtual") && first.contains("…  unmigratable"),
            "the name is cut with …: {text}"
        );
        // Every word of the reason is still there, over several lines.
        let joined: Vec<&str> = text.split_whitespace().collect();
        for word in "no destination has room for it (64.0 GiB memory, 500.0 GiB disk)".split(' ') {
            assert!(joined.contains(&word), "{word} lost:\n{text}");
        }
        assert!(text.lines().count() > 3, "{text}");
    }

    #[test]
    fn without_a_width_nothing_is_cut() {
        let text = table().render(None);
        assert!(
            text.contains("a-very-long-virtual-machine-name-01"),
            "{text}"
        );
        assert!(
            text.contains("no destination has room for it (64.0 GiB memory, 500.0 GiB disk)"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn columns_wins_over_the_terminal_and_a_bad_columns_is_ignored() {
        assert_eq!(width_from(Some("60"), || Some(200)), Some(60));
        assert_eq!(width_from(Some("wide"), || Some(200)), Some(200));
        assert_eq!(width_from(Some("0"), || None), None);
        assert_eq!(width_from(None, || None), None);
    }

    #[test]
    fn a_width_wider_than_the_widest_is_taken_as_the_widest() {
        let widest = Some(MAX_WIDTH);
        assert_eq!(width_from(Some("18446744073709551615"), || None), widest);
        assert_eq!(width_from(Some("99999999999999999999999"), || None), widest);
        assert_eq!(width_from(Some("4294967295"), || None), widest);
        assert_eq!(width_from(None, || Some(65_535)), widest);
        assert_eq!(width_from(Some("1000"), || None), Some(1000));
    }

    #[test]
    fn a_word_longer_than_the_column_is_split() {
        assert_eq!(wrap("abcdefghij xy", 4), vec!["abcd", "efgh", "ij", "xy"]);
        assert_eq!(wrap("", 4), vec![""]);
    }
}
