//! A run as a picture: the one timeline model every view draws (the HTML/SVG report, the text
//! timeline of `report` and `plan`, and the live page), built from the journal's facts.
//!
//! - [`model`]: [`Timeline`] (serialisable) and its builder, [`TimelineBuilder`] (in
//!   `builder.rs`), fed a run's
//!   entries ([`Timeline::from_run`]) or bare events (a run in progress, a plan's simulation);
//! - [`mod@svg`]: the self-contained SVG ([`svg()`]);
//! - [`html`]: the self-contained HTML report (the report's facts and the SVG inline);
//! - [`text`]: the text timeline for the terminal;
//! - [`sink`]: the runtime's sink that builds a run's timeline as it goes.
//!
//! docs/timeline.md says what is drawn and from which journal facts.

mod builder;
pub mod html;
pub mod model;
pub mod sink;
pub mod svg;
pub mod text;

pub use model::{Predicted, Timeline, TimelineBuilder};
pub use svg::svg;

/// Escapes text for XML/HTML content and attribute values (`&`, `<`, `>`, `"`, `'`); tab and
/// newline become a space, and every other hidden character ([`crate::stdio::is_hidden`]:
/// control characters, which XML 1.0 does not allow, bidi overrides and isolates, zero-width
/// and other format characters) is shown escaped, `\u{1b}`, `\u{202e}`, as on the terminal:
/// a name cannot reorder or hide the text of a report or a page.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(' '),
            c if crate::stdio::is_hidden(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
