//! ISO-8601 timestamps as ipyparallel writes and recognises them.
//!
//! Stock ipyparallel only treats a string as a date when it matches
//! `util.ISO8601_PAT`; anything else stays a string. Matching that pattern
//! exactly (rather than accepting every RFC 3339 variant) keeps query
//! semantics identical: a string the stock Hub would not parse must not be
//! compared as a date here either.

use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};

/// Result of looking at a string that might be a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Iso {
    /// Does not match the ISO pattern: stock keeps it as a plain string.
    Plain,
    /// Matches the pattern but names an impossible instant; stock's
    /// `dateutil.parse` raises `ValueError` for these.
    Invalid,
    Date(DateTime<Utc>),
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
}

/// Parse `^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})?$`.
///
/// Python's `$` also matches before one trailing newline, so that is
/// accepted too. Naive timestamps are interpreted as local time, like
/// `util.ensure_timezone` does.
pub(crate) fn parse_iso(s: &str) -> Iso {
    let s = s.strip_suffix('\n').unwrap_or(s);
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return Iso::Plain;
    }
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(sec)) = (
        digits(&b[0..4]),
        digits(&b[5..7]),
        digits(&b[8..10]),
        digits(&b[11..13]),
        digits(&b[14..16]),
        digits(&b[17..19]),
    ) else {
        return Iso::Plain;
    };
    let mut rest = &b[19..];
    let mut micros = 0u32;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=6).contains(&n) {
            return Iso::Plain;
        }
        micros = digits(&frac[..n]).unwrap_or(0) * 10u32.pow(6 - n as u32);
        rest = &frac[n..];
    }
    let offset: Option<i32> = match rest {
        [] => None,
        [b'Z'] => Some(0),
        [sign @ (b'+' | b'-'), hh @ ..] => {
            let (oh, om) = match hh {
                [a, b, b':', c, d] | [a, b, c, d] => (digits(&[*a, *b]), digits(&[*c, *d])),
                _ => return Iso::Plain,
            };
            let (Some(oh), Some(om)) = (oh, om) else {
                return Iso::Plain;
            };
            let secs = (oh * 3600 + om * 60) as i32;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => return Iso::Plain,
    };
    let Some(naive) = NaiveDate::from_ymd_opt(y as i32, mo, d)
        .and_then(|date| date.and_hms_micro_opt(h, mi, sec, micros))
    else {
        return Iso::Invalid;
    };
    match offset {
        Some(secs) => match FixedOffset::east_opt(secs) {
            Some(tz) => match tz.from_local_datetime(&naive).single() {
                Some(dt) => Iso::Date(dt.with_timezone(&Utc)),
                None => Iso::Invalid,
            },
            None => Iso::Invalid,
        },
        None => Iso::Date(local_to_utc(&naive)),
    }
}

/// A timestamp as stock `util._parse_date` recognises it (naive = local
/// time); `None` for strings stock would keep as strings or fail to parse.
pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    match parse_iso(s) {
        Iso::Date(d) => Some(d),
        _ => None,
    }
}

/// Naive timestamps are local time (stock `ensure_timezone` attaches
/// `tzlocal()`). Ambiguous times take the earlier instant like Python's
/// `fold=0`; times in a DST gap use the offset in force just before it.
pub(crate) fn local_to_utc(naive: &NaiveDateTime) -> DateTime<Utc> {
    match Local.from_local_datetime(naive).earliest() {
        Some(dt) => dt.with_timezone(&Utc),
        None => {
            let offset = Local.offset_from_utc_datetime(naive);
            (*naive - offset).and_utc()
        }
    }
}

/// Python datetimes carry microseconds; keeping nanoseconds would make an
/// instant unequal to its own JSON rendering when the client queries it back.
pub(crate) fn truncate_micros(dt: DateTime<Utc>) -> DateTime<Utc> {
    let ns = dt.nanosecond();
    dt.with_nanosecond(ns - ns % 1000).unwrap_or(dt)
}

fn push_2(out: &mut String, v: u32) {
    out.push(char::from(b'0' + (v / 10 % 10) as u8));
    out.push(char::from(b'0' + (v % 10) as u8));
}

fn format_base(dt: &DateTime<Utc>, out: &mut String) {
    use chrono::Datelike;
    use std::fmt::Write;
    let y = dt.year();
    if (0..=9999).contains(&y) {
        let _ = write!(out, "{y:04}");
    } else {
        let _ = write!(out, "{y:+05}");
    }
    out.push('-');
    push_2(out, dt.month());
    out.push('-');
    push_2(out, dt.day());
    out.push('T');
    push_2(out, dt.hour());
    out.push(':');
    push_2(out, dt.minute());
    out.push(':');
    // leap seconds are folded into :59 as Python cannot represent them
    push_2(out, dt.second().min(59));
}

fn micros(dt: &DateTime<Utc>) -> u32 {
    (dt.nanosecond() / 1000).min(999_999)
}

/// The JSON form the stock Hub sends (`jupyter_client.jsonutil.json_default`):
/// `datetime.isoformat()` with `+00:00` spelled `Z`, which omits the
/// fraction when it is zero.
pub fn to_iso(dt: &DateTime<Utc>) -> String {
    let mut out = String::with_capacity(27);
    format_base(dt, &mut out);
    let us = micros(dt);
    if us != 0 {
        use std::fmt::Write;
        let _ = write!(out, ".{us:06}");
    }
    out.push('Z');
    out
}

/// Fixed-width UTC form used inside SQLite so that text comparison in SQL
/// is chronological comparison (years 0..=9999).
pub(crate) fn to_sortable(dt: &DateTime<Utc>) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(27);
    format_base(dt, &mut out);
    let _ = write!(out, ".{:06}Z", micros(dt));
    out
}

/// Whether [`to_sortable`] yields text that orders like the instant.
pub(crate) fn sortable_year(dt: &DateTime<Utc>) -> bool {
    use chrono::Datelike;
    (0..=9999).contains(&dt.year())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_z_offset_and_fraction() {
        assert_eq!(
            parse_iso("2026-11-24T22:42:56.924289Z"),
            Iso::Date(utc("2026-11-24T22:42:56.924289Z"))
        );
        assert_eq!(
            parse_iso("2026-11-24T22:42:56.5+05:30"),
            Iso::Date(utc("2026-11-24T17:12:56.5Z"))
        );
        assert_eq!(
            parse_iso("2026-11-24T22:42:56-0100"),
            Iso::Date(utc("2026-11-24T23:42:56Z"))
        );
        assert_eq!(
            parse_iso("2026-11-24T22:42:56Z\n"),
            Iso::Date(utc("2026-11-24T22:42:56Z"))
        );
    }

    #[test]
    fn naive_is_local_time() {
        let naive = NaiveDate::from_ymd_opt(2026, 3, 1)
            .unwrap()
            .and_hms_micro_opt(12, 0, 0, 250_000)
            .unwrap();
        let expected = Local.from_local_datetime(&naive).earliest().unwrap();
        assert_eq!(
            parse_iso("2026-03-01T12:00:00.25"),
            Iso::Date(expected.with_timezone(&Utc))
        );
    }

    #[test]
    fn rejects_non_matching_and_flags_invalid() {
        for s in [
            "2026-11-24",
            "2026-11-24 22:42:56",
            "2026-11-24T22:42:56.1234567",
            "2026-11-24T22:42:56.",
            "2026-11-24T22:42:56+1",
            "2026-11-24T22:42:56z",
            "x2026-11-24T22:42:56",
            "2026-11-24T22:42:56Zjunk",
        ] {
            assert_eq!(parse_iso(s), Iso::Plain, "{s}");
        }
        assert_eq!(parse_iso("2026-13-24T22:42:56"), Iso::Invalid);
        assert_eq!(parse_iso("2026-02-30T00:00:00Z"), Iso::Invalid);
    }

    #[test]
    fn formats_like_python_isoformat() {
        assert_eq!(
            to_iso(&utc("2026-11-24T22:42:56.924289Z")),
            "2026-11-24T22:42:56.924289Z"
        );
        assert_eq!(to_iso(&utc("2026-11-24T22:42:56Z")), "2026-11-24T22:42:56Z");
        assert_eq!(
            to_iso(&utc("2026-11-24T22:42:56.000001999Z")),
            "2026-11-24T22:42:56.000001Z"
        );
        assert_eq!(
            to_sortable(&utc("2026-11-24T22:42:56Z")),
            "2026-11-24T22:42:56.000000Z"
        );
        assert_eq!(
            truncate_micros(utc("2026-11-24T22:42:56.123456789Z")),
            utc("2026-11-24T22:42:56.123456Z")
        );
    }
}
