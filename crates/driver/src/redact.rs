//! The one place secrets in URIs are hidden: every error, journal row, log line, status,
//! report and config print of vmove goes through [`redact_uris`].
//!
//! A URI's user information (`scheme://user:password@host/...`, RFC 3986 section 3.2.1, which
//! deprecates passwords there but libvirt and HTTP clients still accept them) is replaced by
//! `***`: `qemu+tcp://***@kvm1/system`. The whole user information goes, the user name too
//! (some schemes carry a token there). So do the values of the query's parameters whose name
//! says they are secrets (`?password=...`, `&token=...`: [`is_secret_parameter`]), which
//! libvirt's and PostgreSQL's URIs accept: `qemu+tcp://***@kvm1/system?password=***&x=1`.

use std::borrow::Cow;

/// What replaces a URI's user information.
pub const REDACTED: &str = "***";

/// `text` with the user information of every URI in it, and the values of its query's secret
/// parameters ([`is_secret_parameter`]: `?password=...`), replaced by [`REDACTED`]. A URI is
/// recognised by `scheme://` (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`) and ends
/// at a quote, an angle bracket, a backtick or white space; its user information is what comes
/// before an `@` in its authority (up to the first `/`, `?` or `#`); a query parameter's value
/// ends at `&`, `;`, `)`, a backslash or the fragment. Text without such a URI is returned as it
/// is (not copied).
pub fn redact_uris(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut done = 0; // bytes of `text` already handled (copied to `out`, or skipped)
    let mut search = 0;
    while let Some(i) = text[search..].find("://").map(|i| i + search) {
        let authority = i + 3;
        search = authority;
        // Inside a part already redacted (a secret query value holding a URI).
        if i < done || !has_scheme_before(&text[..i]) {
            continue;
        }
        let uri_end = text[authority..]
            .find(ends_uri)
            .map_or(text.len(), |e| e + authority);
        let auth_end = text[authority..uri_end]
            .find(['/', '?', '#'])
            .map_or(uri_end, |e| e + authority);
        if let Some(at) = text[authority..auth_end].rfind('@').map(|a| a + authority)
            && text[authority..at] != *REDACTED
        {
            out.push_str(&text[done..authority]);
            out.push_str(REDACTED);
            done = at;
        }
        // The query's secret parameters (`?password=...&x=1`): their values go.
        if let Some(q) = text[auth_end..uri_end].find('?').map(|q| q + auth_end) {
            let query_end = text[q..uri_end].find('#').map_or(uri_end, |e| e + q);
            let mut p = q + 1;
            while p < query_end {
                let end = text[p..query_end]
                    .find(['&', ';', ')', '\\'])
                    .map_or(query_end, |e| e + p);
                if let Some(eq) = text[p..end].find('=').map(|e| e + p) {
                    let value = &text[eq + 1..end];
                    if is_secret_parameter(&query_key(&text[p..eq]))
                        && !value.is_empty()
                        && value != REDACTED
                    {
                        out.push_str(&text[done..=eq]);
                        out.push_str(REDACTED);
                        done = end;
                    }
                }
                p = end + 1;
            }
        }
        search = auth_end.max(done).max(authority);
    }
    if done == 0 {
        Cow::Borrowed(text)
    } else {
        out.push_str(&text[done..]);
        Cow::Owned(out)
    }
}

/// Where a URI ends in running text: white space, a quote, an angle bracket or a backtick.
fn ends_uri(c: char) -> bool {
    matches!(c, '"' | '\'' | '<' | '>' | '`') || c.is_whitespace()
}

/// Whether a query parameter's name says its value is a secret: `password`, `passwd`, `pass`,
/// `pwd`, `secret`, `token`, `key` and names holding them (`client_secret`, `access_token`,
/// `api_key`, `passphrase`), in any case. A parameter naming a file of secrets
/// (`keyfile`, `password_file`) is a path and stays.
pub fn is_secret_parameter(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    if n.ends_with("file") || n.ends_with("path") {
        return false;
    }
    n.contains("pass")
        || n.contains("pwd")
        || n.contains("secret")
        || n.contains("token")
        || n.ends_with("key")
}

/// A query parameter's name as the URI's reader takes it: percent-decoded (RFC 3986 section
/// 2.1; tokio-postgres decodes each key, so `?%70assword=x` is its `password`). A `%` not
/// followed by two hex digits, or bytes that do not decode to UTF-8, stay as written.
pub fn query_key(raw: &str) -> Cow<'_, str> {
    if !raw.contains('%') {
        return Cow::Borrowed(raw);
    }
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            // Two hex digits: below 256.
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'%'));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(_) => Cow::Borrowed(raw),
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
    fn secret_query_parameters_in_uris_are_hidden() {
        let cases = [
            (
                "qemu+tcp://root:S3cretPW42@127.0.0.9/system?password=S3cretPW42&x=1",
                "qemu+tcp://***@127.0.0.9/system?password=***&x=1",
            ),
            (
                "uri = \"qemu+tcp://h/system?x=1&PassWD=a;token=b&keyfile=/k#frag\"",
                "uri = \"qemu+tcp://h/system?x=1&PassWD=***;token=***&keyfile=/k#frag\"",
            ),
            (
                "postgresql://vmove@db/journal?sslmode=require&password=s3cret",
                "postgresql://***@db/journal?sslmode=require&password=***",
            ),
            (
                "(https://h/p?api_key=abc&secret=x y) refused",
                "(https://h/p?api_key=***&secret=*** y) refused",
            ),
            (
                "{\"e\":\"qemu+tcp://h/s?pass=p\\\"q\"}",
                "{\"e\":\"qemu+tcp://h/s?pass=***\\\"q\"}",
            ),
            (
                "a://h?password=https://u:p@x/y?token=t&k=1 b://u:v@z",
                "a://h?password=***&k=1 b://***@z",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact_uris(input), want, "{input}");
            assert_eq!(redact_uris(want), want, "{want}");
        }
    }

    /// A parameter's name percent-encoded is the same name to the URI's reader
    /// (tokio-postgres decodes keys): before, `?%70assword=s3cret` was printed and journaled
    /// whole, since only the name as written was looked at.
    #[test]
    fn a_secret_parameter_whose_name_is_percent_encoded_is_hidden_too() {
        let cases = [
            (
                "postgresql://vm@/vj?host=/tmp/s&%70assword=hunter2",
                "postgresql://***@/vj?host=/tmp/s&%70assword=***",
            ),
            (
                "qemu+tcp://h/system?%70%61%73%73word=S3cretB&x=1&PASS%57ORD=c",
                "qemu+tcp://h/system?%70%61%73%73word=***&x=1&PASS%57ORD=***",
            ),
            ("https://h/p?%74oken=t", "https://h/p?%74oken=***"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_uris(input), want, "{input}");
        }
        assert_eq!(query_key("%70assword"), "password");
        assert_eq!(query_key("a%2"), "a%2", "a % without two hex digits stays");
        assert_eq!(
            query_key("%zz%ff"),
            "%zz%ff",
            "not UTF-8 once decoded: as written"
        );
        assert_eq!(query_key("plain"), "plain");
    }

    #[test]
    fn a_password_in_a_uri_query_reaches_no_driver_error() {
        let uri = "qemu+tcp://root:S3cretPW42@127.0.0.9/system?password=S3cretPW42&x=1";
        let e = crate::DriverError::permanent(format!("host a: cannot connect to {uri}"));
        for shown in [e.to_string(), e.message.clone()] {
            assert!(!shown.contains("S3cretPW42"), "{shown}");
            assert!(shown.contains("/system?password=***&x=1"), "{shown}");
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
            "qemu+tcp://h/system?password=***&x=1&keyfile=/k&password=",
            "not a uri?password=x",
        ] {
            assert!(matches!(redact_uris(t), Cow::Borrowed(_)), "{t}");
        }
    }
}
