//! ISO-8601 dates as jupyter_client writes and reads them.
//!
//! Writers emit UTC with microseconds and `Z`; readers must accept `Z`, `±HH:MM`, `±HHMM` and
//! naive forms with 1–6 fractional digits (naive = local time, as ipyparallel assumes).

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};

/// Formats a UTC time the way jupyter_client does: `2026-11-24T22:42:56.924289Z`.
///
/// Written by hand rather than with a strftime pattern: every message the controller
/// creates carries a date, and interpreting the pattern each time showed up in profiles.
pub fn format(t: &DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write;
    let mut s = String::with_capacity(27);
    let _ = write!(
        s,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond().min(999_999_999) / 1000
    );
    s
}

/// The current time, formatted for a header.
pub fn now_iso() -> String {
    format(&Utc::now())
}

/// Parses an ISO date string matching ipyparallel's `extract_dates` pattern
/// `^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})?$`; returns `None` for
/// anything else so that ordinary strings are never mistaken for dates.
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 19 || !looks_like_date(b) {
        return None;
    }
    let (main, tz) = split_tz(s)?;
    let frac_ok = match main.len() {
        19 => true,
        n if (21..=26).contains(&n) => {
            b[19] == b'.' && main[20..].bytes().all(|c| c.is_ascii_digit())
        }
        _ => false,
    };
    if !frac_ok {
        return None;
    }
    let naive = naive_from_parts(main)?;
    match tz {
        Tz::Utc => Some(Utc.from_utc_datetime(&naive)),
        Tz::Offset(secs) => {
            Some(Utc.from_utc_datetime(&(naive - chrono::Duration::seconds(secs as i64))))
        }
        Tz::Naive => Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// Builds the datetime from the fixed positions `looks_like_date` validated (faster than a
/// format-string parser; dates are parsed for every recorded task).
fn naive_from_parts(main: &str) -> Option<NaiveDateTime> {
    let num = |r: std::ops::Range<usize>| main.get(r)?.parse::<u32>().ok();
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let micros = match main.get(20..) {
        Some(frac) if !frac.is_empty() => {
            let digits: u32 = frac.parse().ok()?;
            digits * 10u32.pow(6 - frac.len() as u32)
        }
        _ => 0,
    };
    date.and_hms_micro_opt(num(11..13)?, num(14..16)?, num(17..19)?, micros)
}

enum Tz {
    Utc,
    Offset(i32),
    Naive,
}

fn looks_like_date(b: &[u8]) -> bool {
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
}

fn split_tz(s: &str) -> Option<(&str, Tz)> {
    if let Some(main) = s.strip_suffix('Z') {
        return Some((main, Tz::Utc));
    }
    let tail = &s[19..];
    if let Some(pos) = tail.find(['+', '-']) {
        let main = &s[..19 + pos];
        let off = &tail[pos..];
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let digits: String = off[1..].chars().filter(|c| *c != ':').collect();
        let colon_ok = off.len() == 6 && off.as_bytes()[3] == b':' || off.len() == 5;
        if digits.len() != 4 || !colon_ok || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let hours: i32 = digits[..2].parse().ok()?;
        let mins: i32 = digits[2..].parse().ok()?;
        return Some((main, Tz::Offset(sign * (hours * 3600 + mins * 60))));
    }
    Some((s, Tz::Naive))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_utc() {
        let s = "2026-11-24T22:42:56.924289Z";
        assert_eq!(format(&parse(s).unwrap()), s);
    }

    #[test]
    fn offsets_and_fractions() {
        let a = parse("2026-11-24T22:42:56.9Z").unwrap();
        let b = parse("2026-11-24T23:42:56.900000+01:00").unwrap();
        let c = parse("2026-11-24T21:42:56.900-0100").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(parse("2026-11-24T22:42:56").is_some());
    }

    #[test]
    fn rejects_non_dates() {
        for s in [
            "",
            "hello",
            "2026-11-24",
            "2026-11-24T22:42:56.1234567Z",
            "2026-11-24T22:42:56+1",
        ] {
            assert!(parse(s).is_none(), "{s}");
        }
    }
}
