//! How values are stored: JSON, with the user information of any URI hidden.

use crate::error::{JournalError, Result};

/// A value as stored: JSON, with the user information of any URI in it hidden (a driver's
/// error may quote a configured URI; the core's values carry it as plain text).
pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Result<String> {
    let json = serde_json::to_string(v).map_err(JournalError::Encode)?;
    Ok(redact(json))
}

/// `text` with URIs' user information hidden ([`vmove_driver::redact_uris`]).
pub(crate) fn redact(text: String) -> String {
    match vmove_driver::redact_uris(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(t) => t,
    }
}

/// A stored value read back; the error names the run and the entry.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(run: &str, seq: u64, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|source| JournalError::Decode {
        run: run.to_owned(),
        seq,
        source,
    })
}

/// The `"command"` / `"input"` / `"event"` tag of a serialised value.
pub(crate) fn tag(json: &str, key: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get(key).and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_default()
}
