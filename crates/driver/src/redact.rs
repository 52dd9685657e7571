//! The one place secrets in URIs are hidden: every error, journal row, log line, status,
//! report and config print of vmove goes through [`redact_uris`].
//!
//! A URI's user information (`scheme://user:password@host/...`, RFC 3986 section 3.2.1, which
//! deprecates passwords there but libvirt and HTTP clients still accept them) is replaced by
//! `***`: `qemu+tcp://***@kvm1/system`. The whole user information goes, the user name too
//! (some schemes carry a token there).

use std::borrow::Cow;

/// What replaces a URI's user information.
pub const REDACTED: &str = "***";

/// `text` with the user information of every URI in it replaced by [`REDACTED`]. A URI is
/// recognised by `scheme://` (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`); its
/// user information is what comes before an `@` in its authority (up to the first `/`, `?`,
/// `#`, quote or white space). Text without such a URI is returned as it is (not copied).
pub fn redact_uris(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut done = 0; // bytes of `text` already handled (copied to `out`, or skipped)
    let mut search = 0;
    while let Some(i) = text[search..].find("://").map(|i| i + search) {
        let authority = i + 3;
        search = authority;
        if !has_scheme_before(&text[..i]) {
            continue;
        }
        let end = text[authority..]
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace()
            })
            .map_or(text.len(), |e| e + authority);
        let Some(at) = text[authority..end].rfind('@').map(|a| a + authority) else {
            continue;
        };
        if text[authority..at] == *REDACTED {
            continue;
        }
        out.push_str(&text[done..authority]);
        out.push_str(REDACTED);
        done = at;
        search = at;
    }
    if done == 0 {
        Cow::Borrowed(text)
    } else {
        out.push_str(&text[done..]);
        Cow::Owned(out)
    }
}

/// Whether `before` ends with a URI scheme (`qemu+tcp`, `https`).
fn has_scheme_before(before: &str) -> bool {
    let scheme: Vec<char> = before
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        .collect();
    scheme.last().is_some_and(|c| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_information_in_uris_is_hidden_wherever_it_is_in_the_text() {
        let cases = [
            (
                "qemu+tcp://user:secret@127.0.0.1:1/system",
                "qemu+tcp://***@127.0.0.1:1/system",
            ),
            (
                "cannot connect to kvm1 (qemu+ssh://root@kvm1/system): refused",
                "cannot connect to kvm1 (qemu+ssh://***@kvm1/system): refused",
            ),
            (
                "{\"error\":\"https://u:p%40ss@hv1:5986/wsman?x=1 and qemu+tls://a:b@c\"}",
                "{\"error\":\"https://***@hv1:5986/wsman?x=1 and qemu+tls://***@c\"}",
            ),
            ("uri = \"qemu+tcp://a:b@h\"", "uri = \"qemu+tcp://***@h\""),
            ("ends with qemu+tcp://u:p@", "ends with qemu+tcp://***@"),
            (
                "p@ss in qemu+tcp://u:p@ss@h/x",
                "p@ss in qemu+tcp://***@h/x",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact_uris(input), want, "{input}");
        }
    }

    #[test]
    fn text_without_user_information_is_unchanged() {
        for t in [
            "qemu+tcp://127.0.0.1/system",
            "qemu:///system",
            "mail me at a@b, see ://x@y and 1://u@h",
            "qemu+tcp://***@h/system",
            "",
            "https://h/p@q",
        ] {
            assert!(matches!(redact_uris(t), Cow::Borrowed(_)), "{t}");
        }
    }
}
