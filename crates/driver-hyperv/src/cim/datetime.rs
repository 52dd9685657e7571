//! CIM datetimes: the native form (DSP0004) Hyper-V wants in embedded instances, from the forms
//! WS-Management carries them in (DSP0230: xs:dateTime, xs:duration).

/// A datetime in CIM's native form (DSP0004: a timestamp `yyyymmddHHMMSS.mmmmmmsUUU`, UUU the
/// offset from UTC in minutes; an interval `ddddddddHHMMSS.mmmmmm:000`), from that form or
/// from the forms WS-Management carries (DSP0230: xs:dateTime `2026-01-02T03:04:05.5Z` /
/// `+02:00`, xs:duration `P1DT2H3M4.5S`). `None` when it is neither.
pub fn datetime_to_cim(v: &str) -> Option<String> {
    let v = v.trim();
    if is_cim_datetime(v) {
        return Some(v.to_owned());
    }
    if let Some(rest) = v.strip_prefix('P') {
        // xs:duration, days/hours/minutes/seconds only (no years or months: an interval in
        // CIM has none).
        let (date, time) = match rest.split_once('T') {
            Some((d, t)) => (d, t),
            None => (rest, ""),
        };
        let mut days = 0u64;
        if !date.is_empty() {
            days = date.strip_suffix('D')?.parse().ok()?;
        }
        let (mut h, mut m, mut s, mut us) = (0u64, 0u64, 0u64, 0u64);
        let mut num = String::new();
        for c in time.chars() {
            match c {
                '0'..='9' | '.' => num.push(c),
                'H' => h = std::mem::take(&mut num).parse().ok()?,
                'M' => m = std::mem::take(&mut num).parse().ok()?,
                'S' => {
                    let n = std::mem::take(&mut num);
                    let (whole, frac) = n.split_once('.').unwrap_or((&n, ""));
                    s = whole.parse().ok()?;
                    let frac: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
                    us = frac.parse().ok()?;
                }
                _ => return None,
            }
        }
        if !num.is_empty() {
            return None;
        }
        // Carry into days as CIM's fields are bounded (hours < 24, minutes/seconds < 60).
        let total = days
            .checked_mul(24)
            .and_then(|x| x.checked_add(h))
            .and_then(|x| x.checked_mul(60))
            .and_then(|x| x.checked_add(m))
            .and_then(|x| x.checked_mul(60))
            .and_then(|x| x.checked_add(s))?;
        let (d, rem) = (total / 86_400, total % 86_400);
        if d > 99_999_999 {
            return None;
        }
        return Some(format!(
            "{d:08}{:02}{:02}{:02}.{us:06}:000",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        ));
    }
    // xs:dateTime: YYYY-MM-DDTHH:MM:SS[.f+][Z|(+|-)HH:MM]
    let b = v.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<&str> {
        let t = v.get(r)?;
        t.bytes().all(|c| c.is_ascii_digit()).then_some(t)
    };
    let (y, mo, d, h, mi, s) = (
        digits(0..4)?,
        digits(5..7)?,
        digits(8..10)?,
        digits(11..13)?,
        digits(14..16)?,
        digits(17..19)?,
    );
    let mut rest = &v[19..];
    let mut us = String::from("000000");
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        us = r[..n]
            .chars()
            .chain(std::iter::repeat('0'))
            .take(6)
            .collect();
        rest = &r[n..];
    }
    let offset: i64 = match rest {
        "" | "Z" => 0,
        o if o.len() == 6
            && (o.starts_with('+') || o.starts_with('-'))
            && o.get(3..4) == Some(":") =>
        {
            let hh: i64 = o.get(1..3)?.parse().ok()?;
            let mm: i64 = o.get(4..6)?.parse().ok()?;
            let m = hh * 60 + mm;
            if o.starts_with('-') { -m } else { m }
        }
        _ => return None,
    };
    let sign = if offset < 0 { '-' } else { '+' };
    Some(format!(
        "{y}{mo}{d}{h}{mi}{s}.{us}{sign}{:03}",
        offset.abs()
    ))
}

/// Whether `v` is a datetime in CIM's native form: a timestamp `yyyymmddHHMMSS.mmmmmmsUUU`
/// (s `+` or `-`) or an interval `ddddddddHHMMSS.mmmmmm:000` (DSP0004 5.2.4; Microsoft's
/// `CIM_DATETIME`, desktop-src/WmiSdk/cim-datetime.md). Asterisks (unknown fields) are not
/// accepted: Hyper-V's settings never carry them.
pub fn is_cim_datetime(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 25
        && b[..14].iter().all(u8::is_ascii_digit)
        && b[14] == b'.'
        && b[15..21].iter().all(u8::is_ascii_digit)
        && ((matches!(b[21], b'+' | b'-') && b[22..].iter().all(u8::is_ascii_digit))
            || &b[21..] == b":000")
}
