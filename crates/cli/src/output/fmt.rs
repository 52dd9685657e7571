//! Times, ETAs, counts and host lists for people.

use std::time::Duration;
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
