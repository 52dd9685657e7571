//! Text from outside vmove (VM and host names, hypervisors' reasons, error messages, the command
//! line) made inert for the Markdown reports: shown as it is, never read as Markdown or HTML.
//!
//! A VM named `[click](http://evil.example)` was a live link in the report; `<img src=...>`
//! was markup, `**x**` emphasis, `&#8238;` a bidi override. Text that holds anything Markdown
//! could read ([`is_inert`] says what is left plain) is put in an inline code span: inside one
//! nothing is markup (no links, autolinks, HTML, character references, emphasis or math),
//! whatever renders it, and GitHub's autolinking of bare `http://` and `www.` text, which a
//! backslash escape does not stop everywhere, does not look into code. The span's fence is
//! longer than any run of backticks in the text. Control and bidi characters are first shown
//! escaped as on the terminal ([`crate::stdio::escaped`]: a newline is `\n`), so nothing ends
//! a table row or starts a line of its own.

/// Whether `s` (already escaped by [`crate::stdio::escaped`]) reads the same as Markdown as it
/// does as text, where it is put (never at the start of a line): none of the characters that
/// make emphasis, links and images (with their brackets), HTML, character references, code,
/// headings, table cells, GitHub's strikethrough and math, or an e-mail autolink (`\` `` ` ``
/// `*` `_` `[` `]` `<` `>` `#` `|` `&` `~` `$` `@`; `(`, `)` and `!` only mean something after
/// or before a bracket), and nothing GitHub links bare (`://`, `www.`).
pub fn is_inert(s: &str) -> bool {
    const MARKUP: &[char] = &[
        '\\', '`', '*', '_', '[', ']', '<', '>', '#', '|', '&', '~', '$', '@',
    ];
    !s.contains(MARKUP) && !s.contains("://") && !s.to_ascii_lowercase().contains("www.")
}

/// `s` for the report's running text: as it is when it is inert ([`is_inert`]: `web-01`,
/// `no destination has room`), else one code span ([`code`]).
pub fn inline(s: &str) -> String {
    let shown = crate::stdio::escaped(s);
    if is_inert(&shown) {
        shown.into_owned()
    } else {
        code(s)
    }
}

/// `s` in a table cell: as [`inline`], with `|` escaped, which would end the cell even inside
/// a code span (GitHub's tables take `\|` as `|` there).
pub fn cell(s: &str) -> String {
    inline(s).replace('|', "\\|")
}

/// `s` as one inline code span (the command line, and any text that is not inert), its hidden
/// characters shown escaped so it stays on its line. Empty text is nothing (an empty span would
/// show its backticks).
pub fn code(s: &str) -> String {
    let s = crate::stdio::escaped(s);
    if s.is_empty() {
        return String::new();
    }
    let fence = "`".repeat(longest_backtick_run(&s) + 1);
    // A space inside the fence when the text starts or ends with a backtick (else the fence
    // would read longer) or a space (one on each side is taken off a span that has both).
    let edge = |c: char| c == '`' || c == ' ';
    let pad = if !s.trim().is_empty() && (s.starts_with(edge) || s.ends_with(edge)) {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// `text` (lines vmove laid out, holding names already escaped) as a fenced code block, its
/// fence longer than any run of backticks in it, so no line of it can close the block.
pub fn code_block(text: &str) -> String {
    let fence = "`".repeat(longest_backtick_run(text).max(2) + 1);
    let mut out = format!("{fence}text\n{text}");
    if !text.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&fence);
    out.push('\n');
    out
}

fn longest_backtick_run(s: &str) -> usize {
    let (mut longest, mut run) = (0, 0);
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_and_html_in_a_name_are_put_in_a_code_span_that_nothing_in_it_can_end() {
        for (name, shown) in [
            (
                "[click](http://evil.example)",
                "`[click](http://evil.example)`",
            ),
            ("see http://evil.example", "`see http://evil.example`"),
            ("WWW.evil.example", "`WWW.evil.example`"),
            ("<img src=x>", "`<img src=x>`"),
            ("**bold** ~~x~~ $x$", "`**bold** ~~x~~ $x$`"),
            ("&#8238;", "`&#8238;`"),
            ("a@b.example", "`a@b.example`"),
            ("# h", "`# h`"),
            ("vmove migrate 'a`b'", "``vmove migrate 'a`b'``"),
            ("`x``", "``` `x`` ```"),
            // A newline and a bidi override are shown escaped: the span stays on its line.
            ("a\n# b\u{202e}", "`a\\n# b\\u{202e}`"),
        ] {
            assert_eq!(inline(name), shown, "{name:?}");
        }
        assert_eq!(cell("a|b`|"), "``a\\|b`\\|``");
        // What Markdown reads as text stays plain.
        for s in [
            "web-01",
            "db.example.com",
            "10.0.0.1",
            "hv-01: refused (no room!)",
            "Grüße 1+1=2",
        ] {
            assert_eq!(inline(s), s);
            assert_eq!(cell(s), s);
        }
        assert_eq!(code("vmove migrate a"), "`vmove migrate a`");
        assert_eq!(code(" a "), "`  a  `");
        assert_eq!(code(""), "");
    }

    #[test]
    fn no_line_of_a_code_block_can_close_it() {
        assert_eq!(code_block("a\n"), "```text\na\n```\n");
        assert_eq!(
            code_block("vm ```` x\n```\n"),
            "`````text\nvm ```` x\n```\n`````\n"
        );
    }
}
