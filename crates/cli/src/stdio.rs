//! Writing to stdout and stderr without ever panicking or failing a run.
//!
//! `println!` panics when its write fails ("failed printing to stdout: Broken pipe", exit 101),
//! which would end `vmove evacuate ... | head -1` and cancel the run's VMs. Rust ignores
//! SIGPIPE, so a write to a closed pipe returns `EPIPE`; every write of the binary goes through
//! this module instead (`clippy::print_stdout` and `clippy::print_stderr` are denied in main.rs):
//! - the first failed write to stdout marks it gone; later writes are dropped silently;
//! - during a run ([`announce_closed_stdout`]) that first failure is said ONCE on stderr, with
//!   its cause, and the run goes on to its normal end (output is never worth stopping a move);
//! - in short commands (`status`, `history`, `report`, `config`, `plan`, `abort`) a reader that
//!   went away (`EPIPE`) is the reader's choice (`vmove history | head -1`): nothing is said and
//!   the command exits as it would have (0). Any other write error (a full disk behind `>`) is
//!   said on stderr and the command exits 1 ([`stdout_failure`]);
//! - a failed write to stderr is ignored (there is nowhere left to say it).

use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed: nothing more is written there.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
/// Say the first stdout failure on stderr even when it is a closed pipe (during a run).
static ANNOUNCE: AtomicBool = AtomicBool::new(false);
/// The first stdout failure.
static FAILURE: Mutex<Option<io::ErrorKind>> = Mutex::new(None);

/// From now on a closed stdout is said on stderr (a run is going on that outlives its reader).
pub fn announce_closed_stdout() {
    ANNOUNCE.store(true, Ordering::SeqCst);
}

/// How the first failed write to stdout failed, if one did.
pub fn stdout_failure() -> Option<io::ErrorKind> {
    *FAILURE.lock().unwrap_or_else(|p| p.into_inner())
}

fn stdout_failed(e: &io::Error) {
    if STDOUT_GONE.swap(true, Ordering::SeqCst) {
        return;
    }
    *FAILURE.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.kind());
    let pipe = e.kind() == io::ErrorKind::BrokenPipe;
    if ANNOUNCE.load(Ordering::SeqCst) {
        err(&format!(
            "vmove: standard output {} ({e}); nothing more is printed there, the run goes on\n",
            if pipe {
                "was closed by its reader"
            } else {
                "cannot be written"
            }
        ));
    } else if !pipe {
        err(&format!(
            "vmove: error: standard output cannot be written: {e}\n"
        ));
    }
}

/// Whether `c` does not show itself but acts on the text around it, or shows nothing at all:
/// a control character (Unicode category Cc: C0, DEL, C1), a format character (Cf: the bidi
/// embeddings, overrides and isolates U+202A-U+202E and U+2066-U+2069, the marks U+200E,
/// U+200F and U+061C, zero-width spaces and joiners, the soft hyphen...), or a line or
/// paragraph separator (U+2028, U+2029, a line break to some terminals and viewers). A name
/// holding one can reorder, hide or break what is shown after it (`invoice\u{202e}gpj.exe`
/// shows as `invoiceexe.jpg`): every place vmove shows a name escapes these ([`printable`],
/// [`escaped`], the HTML and SVG escape, the live page's script).
pub fn is_hidden(c: char) -> bool {
    use unicode_general_category::{GeneralCategory, get_general_category};
    c.is_control()
        || (!c.is_ascii()
            && matches!(
                get_general_category(c),
                GeneralCategory::Format
                    | GeneralCategory::LineSeparator
                    | GeneralCategory::ParagraphSeparator
            ))
}

/// `text` with every hidden character ([`is_hidden`]) but newline and tab escaped (`\u{1b}`,
/// `\u{202e}`): names come from hypervisors and config files, and must not move a terminal's
/// cursor, reorder the text or hide it.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| is_hidden(c) && c != '\n' && c != '\t';
    if !text.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut s = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            s.extend(c.escape_unicode());
        } else {
            s.push(c);
        }
    }
    std::borrow::Cow::Owned(s)
}

/// `name` (a VM's, a host's, a hypervisor's reason: anything vmove did not write itself) for
/// one line of a terminal: every hidden character ([`is_hidden`]) escaped, newline, carriage
/// return and tab included (`\n`, `\r`, `\t`; the others `\u{1b}`, `\u{202e}`), so a name
/// cannot start a line of its own, forge one, move the cursor or reorder what follows it. Used
/// on each name (or each one-line text holding names) before it is laid out, so columns are
/// aligned on the escaped width; [`printable`] is the net under every write, which keeps
/// vmove's own newlines.
pub fn escaped(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.chars().any(is_hidden) {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut s = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if is_hidden(c) => s.extend(c.escape_unicode()),
            c => s.push(c),
        }
    }
    std::borrow::Cow::Owned(s)
}

/// Writes `text` to stdout (flushed, control characters escaped by [`printable`]); false when
/// stdout is gone. Never panics.
pub fn out(text: &str) -> bool {
    out_bytes(printable(text).as_bytes())
}

/// Writes terminal control sequences of vmove's own (clearing the screen) as they are.
pub fn out_raw(text: &str) -> bool {
    out_bytes(text.as_bytes())
}

fn out_bytes(bytes: &[u8]) -> bool {
    if STDOUT_GONE.load(Ordering::SeqCst) {
        return false;
    }
    let mut o = io::stdout().lock();
    match o.write_all(bytes).and_then(|()| o.flush()) {
        Ok(()) => true,
        Err(e) => {
            stdout_failed(&e);
            false
        }
    }
}

/// Writes `text` to stderr; a failure is ignored. Never panics.
pub fn err(text: &str) {
    let mut e = io::stderr().lock();
    let _ = e
        .write_all(printable(text).as_bytes())
        .and_then(|()| e.flush());
}

/// Stdout as a [`Write`] for sinks: never fails (what cannot be written is dropped, see the
/// module docs), so a closed pipe cannot stop a run as a failed sink would.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => out(text),
            Err(_) => out_bytes(buf),
        };
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Stderr as a [`Write`] for the log (the drivers' `tracing` warnings): never fails, like
/// [`err`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        err(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `println!` that never panics: a line to stdout through [`out`].
macro_rules! outln {
    () => {{
        $crate::stdio::out("\n");
    }};
    ($($t:tt)*) => {{
        $crate::stdio::out(&format!("{}\n", format_args!($($t)*)));
    }};
}

/// `eprintln!` that never panics: a line to stderr through [`err`].
macro_rules! errln {
    ($($t:tt)*) => { $crate::stdio::err(&format!("{}\n", format_args!($($t)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_controls_and_format_characters_are_escaped_wherever_a_name_is_shown() {
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{061c}', '\u{200b}', '\u{200d}',
            '\u{feff}', '\u{00ad}', '\u{2028}', '\u{2029}', '\u{1b}', '\u{7f}', '\u{85}',
        ] {
            assert!(is_hidden(c), "{c:?}");
            let name = format!("a{c}b");
            let shown = format!("a{}b", c.escape_unicode());
            assert_eq!(escaped(&name), shown);
            assert_eq!(printable(&name), shown);
            assert_eq!(crate::timeline::escape(&name), shown);
        }
        // What shows itself is kept as it is: letters of any script, marks, symbols, spaces.
        for name in [
            "vm-01 db",
            "Grüße",
            "日本語",
            "שלום",
            "e\u{301}",
            "🚀",
            "a\u{a0}b",
        ] {
            assert_eq!(escaped(name), name);
            assert_eq!(printable(name), name);
        }
        assert_eq!(printable("a\nb\tc"), "a\nb\tc");
        assert_eq!(escaped("a\nb\tc\rd"), "a\\nb\\tc\\rd");
    }
}
