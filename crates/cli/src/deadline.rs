//! `--deadline TIME|DURATION`: after it, a run starts no new moves (running ones finish). The
//! stop is the one the first Ctrl-C or `vmove abort RUN` asks for; this only says when.
//!
//! Accepted: a duration from now (`45m`, `1h30m`), a time of day in UTC (`02:00`, `02:00:30`:
//! its next occurrence, so `02:00` asked at 23:00 is three hours away), or an RFC 3339 moment
//! (`2026-12-04T02:00:00Z`, `2026-12-04T03:00:00+01:00`).

use std::time::{Duration, SystemTime};

/// Reads a deadline given at `now`; an error says what is wrong with it.
pub fn parse(raw: &str, now: SystemTime) -> Result<SystemTime, String> {
    let s = raw.trim();
    let expected = "expected a duration from now (`45m`), a UTC time of day (`02:00`) or an \
                    RFC 3339 time (`2026-12-04T02:00:00Z`)";
    if s.is_empty() {
        return Err(format!("`--deadline` is empty; {expected}"));
    }
    let at = if let Some(t) = time_of_day(s) {
        let t = t.map_err(|e| format!("`--deadline {s}`: {e}"))?;
        let since_epoch = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| "the system clock is before 1970".to_owned())?
            .as_secs();
        let today = since_epoch - since_epoch % 86_400;
        let mut at = today + t;
        if at <= since_epoch {
            at += 86_400;
        }
        SystemTime::UNIX_EPOCH + Duration::from_secs(at)
    } else if s.contains('T') || s.contains('t') || s.matches('-').count() >= 2 {
        let at = rfc3339(s).map_err(|e| format!("`--deadline {s}`: {e}; {expected}"))?;
        if at <= now {
            return Err(format!(
                "`--deadline {s}` is in the past; nothing was started"
            ));
        }
        at
    } else {
        // The one way vmove reads a duration, as for every setting (units ms to d, whole
        // milliseconds, at most 365 days): humantime's own took `1ns` and `1w`, which no other
        // duration of vmove does.
        let d = vmove_core::spec::dur::parse_duration(s)
            .map_err(|e| format!("`--deadline {s}`: {e}; {expected}"))?;
        if d.is_zero() {
            return Err(format!(
                "`--deadline {s}` is zero: the run could start nothing; {expected}"
            ));
        }
        now.checked_add(d)
            .ok_or_else(|| format!("`--deadline {s}` is too far away"))?
    };
    // One bound for every deadline, the one of every duration: a date years away is surely a
    // typo (and a run that lasts a year is no run this flag is for).
    let max = vmove_core::spec::dur::MAX_DURATION;
    if at.duration_since(now).is_ok_and(|d| d > max) {
        return Err(format!(
            "`--deadline {s}` is more than {} ({} days) from now, the longest duration vmove \
             accepts; nothing was started",
            vmove_core::spec::dur::format_duration(max),
            max.as_secs() / 86_400
        ));
    }
    Ok(at)
}

/// `HH:MM` or `HH:MM:SS` -> seconds after midnight; `None` when `s` is not of that shape.
fn time_of_day(s: &str) -> Option<Result<u64, String>> {
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let n: Vec<u64> = parts.iter().map(|p| p.parse().unwrap_or(99)).collect();
    let (h, m, sec) = (n[0], n[1], n.get(2).copied().unwrap_or(0));
    if h > 23 || m > 59 || sec > 59 {
        return Some(Err(format!(
            "{s} is not a time of day (hours 0-23, minutes and seconds 0-59)"
        )));
    }
    Some(Ok(h * 3600 + m * 60 + sec))
}

/// An RFC 3339 time with `Z` or a `+HH:MM`/`-HH:MM` offset.
fn rfc3339(s: &str) -> Result<SystemTime, String> {
    let (base, offset_secs): (String, i64) = if let Some(b) = s.strip_suffix(['Z', 'z']) {
        (b.to_owned(), 0)
    } else {
        // The offset follows the time: the last `+` or `-` after the `T`.
        let t = s
            .find(['T', 't', ' '])
            .ok_or_else(|| "no `T` between the date and the time".to_owned())?;
        let rel = s[t..]
            .rfind(['+', '-'])
            .ok_or_else(|| "no time zone (`Z` or an offset like `+01:00`)".to_owned())?;
        let (b, off) = s.split_at(t + rel);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let hm: Vec<&str> = off[1..].split(':').collect();
        let bad = || format!("`{off}` is not an offset like `+01:00`");
        if hm.len() != 2 || hm.iter().any(|p| p.len() != 2) {
            return Err(bad());
        }
        let h: i64 = hm[0].parse().map_err(|_| bad())?;
        let m: i64 = hm[1].parse().map_err(|_| bad())?;
        if h > 23 || m > 59 {
            return Err(bad());
        }
        (b.to_owned(), sign * (h * 3600 + m * 60))
    };
    let local = humantime::parse_rfc3339_weak(&base).map_err(|e| e.to_string())?;
    // `local` is the wall-clock time at the offset; UTC is that minus the offset.
    let d = Duration::from_secs(offset_secs.unsigned_abs());
    let at = if offset_secs >= 0 {
        local.checked_sub(d)
    } else {
        local.checked_add(d)
    };
    at.ok_or_else(|| "out of range".to_owned())
}

/// A deadline as people read it: `2026-12-04T02:00:00Z`.
pub fn show(at: SystemTime) -> String {
    crate::output::wall_ms(crate::output::unix_ms(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-03T14:00:00Z.
    fn now() -> SystemTime {
        humantime::parse_rfc3339("2026-12-03T14:00:00Z").unwrap_or(SystemTime::UNIX_EPOCH)
    }

    fn at(raw: &str) -> String {
        show(parse(raw, now()).unwrap_or(SystemTime::UNIX_EPOCH))
    }

    #[test]
    fn deadline_durations_times_of_day_and_rfc3339_are_read() {
        assert_eq!(at("45m"), "2026-12-03T14:45:00Z");
        assert_eq!(at("1h 30m"), "2026-12-03T15:30:00Z");
        // A time of day still to come today, and one already past: tomorrow.
        assert_eq!(at("16:00"), "2026-12-03T16:00:00Z");
        assert_eq!(at("02:00"), "2026-12-04T02:00:00Z");
        assert_eq!(at("14:00"), "2026-12-04T14:00:00Z");
        assert_eq!(at("14:00:30"), "2026-12-03T14:00:30Z");
        assert_eq!(at("2026-12-04T02:00:00Z"), "2026-12-04T02:00:00Z");
        assert_eq!(at("2026-12-04T03:00:00+01:00"), "2026-12-04T02:00:00Z");
        assert_eq!(at("2026-12-03T20:00:00-05:00"), "2026-12-04T01:00:00Z");
    }

    #[test]
    fn bad_deadlines_are_refused_naming_what_is_wrong() {
        for (raw, needle) in [
            ("", "empty"),
            ("soon", "expected a duration"),
            ("0s", "zero"),
            ("25:00", "not a time of day"),
            ("12:61", "not a time of day"),
            ("2026-12-03T13:00:00Z", "in the past"),
            ("2026-12-04T02:00:00", "time zone"),
            ("2026-12-04T02:00:00+1", "offset"),
            ("2026-13-04T02:00:00Z", "--deadline"),
            // Units and lengths no other duration of vmove takes (humantime's were taken here).
            ("1ns", "unknown unit `ns`"),
            ("1w", "unknown unit `w`"),
            ("1.5ms", "not a whole number of milliseconds"),
            ("400d", "longer than"),
        ] {
            let e = parse(raw, now()).expect_err(raw);
            assert!(e.contains(needle), "{raw}: {e}");
        }
    }

    /// A deadline more than 365 days away (the longest duration vmove accepts) is refused
    /// however it is written; before, `9999-12-31T23:59:59Z` was taken.
    #[test]
    fn a_deadline_more_than_365_days_away_is_refused_as_every_duration_is() {
        for raw in [
            "9999-12-31T23:59:59Z",
            "2027-12-04T00:00:00Z",
            "2027-12-03T15:00:01+01:00",
        ] {
            let e = parse(raw, now()).expect_err(raw);
            assert!(
                e.contains(&format!(
                    "`--deadline {raw}` is more than 8760h (365 days) from now, the longest \
                     duration vmove accepts"
                )),
                "{raw}: {e}"
            );
        }
        // Exactly 365 days away is the latest allowed, as a duration and as a time.
        assert_eq!(at("2027-12-03T14:00:00Z"), "2027-12-03T14:00:00Z");
        assert_eq!(at("365d"), "2027-12-03T14:00:00Z");
    }
}
