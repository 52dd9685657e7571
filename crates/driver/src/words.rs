//! serde's words for a value of the wrong kind, said for a person.
//!
//! serde words a wrong value as "invalid type: string \"lots\", expected u32" (its
//! `de::Error::invalid_type` and `invalid_value`, with the standard visitors' `expected`: `u32`,
//! `f64`, `a boolean`). A person writing a config file or an environment variable does not know
//! what a `u32` is, nor which range it takes. [`plain`] says the same thing in words: "must be
//! a whole number from 0 to 4294967295, not `lots`". Any other message (an unknown key or
//! variant, a missing field, a check of our own) is returned unchanged.

/// `message` in plain words when it is serde's "invalid type" or "invalid value" for a number or
/// a boolean; else `message` itself.
pub fn plain(message: &str) -> String {
    let rewritten = ["invalid type: ", "invalid value: "]
        .iter()
        .find_map(|start| message.strip_prefix(start))
        .and_then(|rest| rest.rsplit_once(", expected "))
        .and_then(|(found, expected)| Some((shown(found), kind(expected)?)));
    match rewritten {
        Some((found, expected)) => format!("must be {expected}, not {found}"),
        None => message.to_owned(),
    }
}

/// What serde expected, in words, for the kinds of value our settings take; `None` for any
/// other (their own words are kept).
fn kind(expected: &str) -> Option<String> {
    let whole = |from: &str, to: &str| Some(format!("a whole number from {from} to {to}"));
    match expected {
        "u8" => whole("0", &u8::MAX.to_string()),
        "u16" => whole("0", &u16::MAX.to_string()),
        "u32" => whole("0", &u32::MAX.to_string()),
        "u64" | "usize" => whole("0", &u64::MAX.to_string()),
        "i32" => whole(&i32::MIN.to_string(), &i32::MAX.to_string()),
        "i64" | "isize" => whole(&i64::MIN.to_string(), &i64::MAX.to_string()),
        "f32" | "f64" => Some("a number".to_owned()),
        "a boolean" => Some("`true` or `false`".to_owned()),
        _ => None,
    }
}

/// The value serde found (its `de::Unexpected`, displayed), as written where it has one: a
/// string's text without its quotes (still escaped), a number or boolean bare; a list or a
/// table named as such.
fn shown(found: &str) -> String {
    if let Some(text) = found
        .strip_prefix("string \"")
        .and_then(|t| t.strip_suffix('"'))
    {
        return format!("`{text}`");
    }
    for kind in ["integer ", "floating point ", "boolean ", "character "] {
        if let Some(value) = found.strip_prefix(kind) {
            return value.to_owned();
        }
    }
    match found {
        "sequence" => "a list".to_owned(),
        "map" => "a table".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::plain;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)] // read by serde only
    struct Knobs {
        count: Option<u32>,
        seed: Option<u64>,
        jitter: Option<f64>,
        on: Option<bool>,
        limit: Option<i32>,
    }

    /// serde's message for `key = value` (TOML), in plain words.
    fn said(toml_line: &str) -> String {
        let e = toml::from_str::<Knobs>(toml_line).expect_err(toml_line);
        plain(e.message().trim())
    }

    /// Each kind of number and a boolean, given a value of the wrong kind or out of range, is
    /// worded with its range and the value as written; serde's own words are gone.
    #[test]
    fn a_wrong_number_or_boolean_is_worded_with_its_range_and_the_value_as_written() {
        for (line, words) in [
            (
                r#"count = "lots""#,
                "must be a whole number from 0 to 4294967295, not `lots`",
            ),
            (
                "count = -1",
                "must be a whole number from 0 to 4294967295, not `-1`",
            ),
            (
                "count = 99999999999",
                "must be a whole number from 0 to 4294967295, not `99999999999`",
            ),
            (
                "count = 1.5",
                "must be a whole number from 0 to 4294967295, not `1.5`",
            ),
            (
                "count = -inf",
                "must be a whole number from 0 to 4294967295, not `-inf`",
            ),
            (
                "seed = -1",
                "must be a whole number from 0 to 18446744073709551615, not `-1`",
            ),
            (r#"jitter = "x""#, "must be a number, not `x`"),
            ("on = 3", "must be `true` or `false`, not `3`"),
            (r#"on = "yes""#, "must be `true` or `false`, not `yes`"),
            (
                "limit = 3000000000",
                "must be a whole number from -2147483648 to 2147483647, not `3000000000`",
            ),
            (
                "count = [1]",
                "must be a whole number from 0 to 4294967295, not a list",
            ),
            (
                "count = {}",
                "must be a whole number from 0 to 4294967295, not a table",
            ),
        ] {
            let got = said(line);
            assert_eq!(got, words, "{line}");
            assert!(!got.contains("expected") && !got.contains("u32"), "{got}");
        }
    }

    /// A string's text keeps serde's escapes: a control character or a quote in it cannot
    /// break the line it is shown on.
    #[test]
    fn a_strings_text_is_shown_escaped() {
        let got = said("count = \"a\\nb\\\"c\"");
        assert_eq!(
            got,
            "must be a whole number from 0 to 4294967295, not `a\\nb\\\"c`"
        );
    }

    /// Messages that are not serde's wrong-kind words, or that expect a kind with its own
    /// words (one of an enum's values), are left as they are.
    #[test]
    fn other_messages_are_left_as_they_are() {
        for m in [
            "unknown field `cnt`, expected one of `count`, `seed`",
            "missing field `driver`",
            "invalid type: string \"x\", expected one of `a`, `b`",
            "invalid value: integer `0`, expected a duration of at least 1ms",
            "must be true or false, not 3",
            "",
        ] {
            assert_eq!(plain(m), m);
        }
    }
}
