//! Times, ETAs, counts and host lists for people.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vmove_core::spec::dur::format_duration;
use vmove_core::{HostId, Time};

/// A time for people: `12.3s`, `4m05s`, `1h02m`.
pub fn fmt_time(t: Time) -> String {
    let ms = t.as_millis();
    let s = ms / 1000;
    if s < 60 {
        format!("{}.{}s", s, (ms % 1000) / 100)
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s / 60) % 60)
    }
}

/// A switchover's pause: `41 ms` below a second, else as [`fmt_time`]; `unknown` when the
/// driver measured none.
pub fn fmt_downtime(ms: Option<u64>) -> String {
    match ms {
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) => fmt_time(Time(ms)),
        None => "unknown".into(),
    }
}

/// `12m05s` style for an ETA.
pub fn fmt_eta(d: Duration) -> String {
    format_duration(Duration::from_secs(d.as_secs().max(1)))
}

pub(super) fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub(super) fn hosts(h: &[HostId]) -> String {
    h.iter().map(HostId::as_str).collect::<Vec<_>>().join(", ")
}

/// The first millisecond RFC 3339 cannot write (its years have four digits): 10000-01-01.
const RFC3339_END_MS: i128 = 253_402_300_800_000;

/// Milliseconds since the Unix epoch as RFC 3339 in UTC (`2026-12-03T14:05:09Z`, with
/// `.123` when `millis`); a time RFC 3339 cannot write (before 1970, from the year 10000 on:
/// a journal may hold anything) as `<ms> ms since the Unix epoch (out of range)`. Never
/// panics: every wall-clock time printed goes through here.
fn rfc3339(ms: i128, millis: bool) -> String {
    let at = u64::try_from(ms)
        .ok()
        .filter(|_| ms < RFC3339_END_MS)
        .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)));
    match at {
        Some(t) if millis => humantime::format_rfc3339_millis(t).to_string(),
        Some(t) => humantime::format_rfc3339_seconds(t).to_string(),
        None => format!("{ms} ms since the Unix epoch (out of range)"),
    }
}

/// Milliseconds since the Unix epoch (signed or not) as RFC 3339 to the second, or said to be
/// out of range (see [`rfc3339`]).
pub fn wall_ms(ms: impl Into<i128>) -> String {
    rfc3339(ms.into(), false)
}

/// Milliseconds since the Unix epoch as RFC 3339 with milliseconds, or said to be out of
/// range (see [`rfc3339`]).
pub fn wall_ms_millis(ms: impl Into<i128>) -> String {
    rfc3339(ms.into(), true)
}

/// A wall-clock time as milliseconds since the Unix epoch (negative before it).
pub fn unix_ms(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_millis()).unwrap_or(i128::MAX),
        Err(e) => -i128::try_from(e.duration().as_millis()).unwrap_or(i128::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_time_out_of_rfc3339s_range_is_said_not_a_panic() {
        assert_eq!(wall_ms(0u64), "1970-01-01T00:00:00Z");
        assert_eq!(wall_ms(253_402_300_799_999u64), "9999-12-31T23:59:59Z");
        assert_eq!(
            wall_ms(253_402_300_800_000u64),
            "253402300800000 ms since the Unix epoch (out of range)"
        );
        assert_eq!(wall_ms(-5i64), "-5 ms since the Unix epoch (out of range)");
        assert_eq!(
            wall_ms(i64::MAX),
            "9223372036854775807 ms since the Unix epoch (out of range)"
        );
        assert!(wall_ms(u64::MAX).ends_with("(out of range)"));
        assert_eq!(wall_ms_millis(1_234u64), "1970-01-01T00:00:01.234Z");
        assert!(wall_ms_millis(i64::MIN).ends_with("(out of range)"));
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1_234)), 1_234);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_millis(7)), -7);
    }
}
