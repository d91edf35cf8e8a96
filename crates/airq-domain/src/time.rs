//! RFC 3339 timestamps on the hot paths (every `raw_data` and `processed_data` message, every
//! reading of a `/predict` body): a fixed-layout fast path for the shape airq and nearly every
//! sensor writes (`2024-01-15T14:30:00Z`, optional fraction, `Z` or `+hh:mm`), and chrono for
//! anything else. The fast paths give exactly chrono's result or decline (tested on random
//! timestamps against chrono), so they change what is accepted nowhere.

use chrono::{DateTime, NaiveDate, SecondsFormat, Timelike, Utc};

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|z|+hh:mm|-hh:mm)` as UTC, or `None` when `s` has any other
/// shape (then the caller's chrono parse decides, with its error message).
pub fn parse_fast(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let two = |i: usize| -> Option<u32> {
        let (hi, lo) = (b[i].wrapping_sub(b'0'), b[i + 1].wrapping_sub(b'0'));
        (hi < 10 && lo < 10).then(|| u32::from(hi) * 10 + u32::from(lo))
    };
    let year = two(0)? * 100 + two(2)?;
    let (month, day) = (two(5)?, two(8)?);
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || digits > 9 {
            return None;
        }
        for &d in &b[start..i] {
            nanos = nanos * 10 + u32::from(d - b'0');
        }
        nanos *= 10u32.pow((9 - digits) as u32);
    }
    let offset_secs: i64 = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (two(i + 1)?, two(i + 4)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = i64::from(h * 3600 + m * 60);
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    // A leap second (60) is chrono's to represent.
    if second > 59 {
        return None;
    }
    let local = NaiveDate::from_ymd_opt(year as i32, month, day)?
        .and_hms_nano_opt(hour, minute, second, nanos)?;
    let utc = local.checked_sub_signed(chrono::Duration::seconds(offset_secs))?;
    Some(utc.and_utc())
}

/// Strict RFC 3339 (chrono's `parse_from_rfc3339`), fast path first.
pub fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match parse_fast(s) {
        Some(t) => Ok(t),
        None => DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)),
    }
}

/// Appends `ts` as `to_rfc3339_opts(SecondsFormat::AutoSi, true)` writes it (`Z`, and a
/// fraction of 3, 6 or 9 digits only when there is one), without a `String` per call.
pub fn write_rfc3339(out: &mut Vec<u8>, ts: &DateTime<Utc>) {
    use chrono::Datelike;
    let t = ts.naive_utc();
    let year = t.year();
    let nanos = t.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        out.extend_from_slice(ts.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_bytes());
        return;
    }
    let two = |out: &mut Vec<u8>, v: u32| {
        out.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8])
    };
    let y = year as u32;
    two(out, y / 100);
    two(out, y % 100);
    out.push(b'-');
    two(out, t.month());
    out.push(b'-');
    two(out, t.day());
    out.push(b'T');
    two(out, t.hour());
    out.push(b':');
    two(out, t.minute());
    out.push(b':');
    two(out, t.second());
    let (value, digits) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    if digits > 0 {
        out.push(b'.');
        for k in (0..digits).rev() {
            out.push(b'0' + (value / 10u32.pow(k) % 10) as u8);
        }
    }
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, FixedOffset, TimeZone};
    use rand::{Rng, SeedableRng};

    use super::*;

    fn random_time(rng: &mut impl Rng) -> DateTime<Utc> {
        let secs = rng.random_range(-62_000_000_000i64..253_402_300_799);
        let nanos = match rng.random_range(0..4) {
            0 => 0,
            1 => rng.random_range(0..1000) * 1_000_000,
            2 => rng.random_range(0..1_000_000) * 1_000,
            _ => rng.random_range(0..1_000_000_000),
        };
        DateTime::from_timestamp(secs, nanos).unwrap()
    }

    #[test]
    fn writes_what_chrono_writes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..100_000 {
            let t = random_time(&mut rng);
            let mut out = Vec::new();
            write_rfc3339(&mut out, &t);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            );
        }
    }

    #[test]
    fn parses_what_chrono_parses_or_declines() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut fast = 0;
        for _ in 0..100_000 {
            let t = random_time(&mut rng);
            let offset = FixedOffset::east_opt(rng.random_range(-86_399..86_400)).unwrap();
            let local = offset.from_utc_datetime(&t.naive_utc());
            let format = match rng.random_range(0..4) {
                0 => SecondsFormat::Secs,
                1 => SecondsFormat::Millis,
                2 => SecondsFormat::Nanos,
                _ => SecondsFormat::AutoSi,
            };
            let text = local.to_rfc3339_opts(format, rng.random_bool(0.5));
            let chrono = DateTime::parse_from_rfc3339(&text).map(|t| t.with_timezone(&Utc));
            match parse_fast(&text) {
                Some(p) => {
                    fast += 1;
                    assert_eq!(Ok(p), chrono, "{text}");
                }
                None => assert!(
                    chrono.is_err() || !text.ends_with('Z') || !(0..=9999).contains(&local.year()),
                    "declined a plain timestamp: {text}"
                ),
            }
            assert_eq!(parse_rfc3339(&text), chrono, "{text}");
        }
        assert!(fast > 50_000, "the fast path took {fast} of 100000");
    }

    #[test]
    fn declines_or_refuses_what_chrono_refuses() {
        for bad in [
            "2024-01-15T14:30:00",
            "2024-01-15T14:30:00ZZ",
            "2024-01-15T14:30:00.Z",
            "2024-13-15T14:30:00Z",
            "2024-02-30T14:30:00Z",
            "2024-01-15T24:00:00Z",
            "2024-01-15T14:60:00Z",
            "2024-01-15T14:30:00+24:00",
            "2024-01-15T14:30:00.1234567890Z",
            "2024-01-15X14:30:00Z",
            "２０24-01-15T14:30:00Z",
            "not a time at all",
        ] {
            assert_eq!(parse_fast(bad), None, "{bad}");
            assert_eq!(
                parse_rfc3339(bad).is_ok(),
                DateTime::parse_from_rfc3339(bad).is_ok(),
                "{bad}"
            );
        }
        assert_eq!(
            parse_fast("2024-01-15t14:30:00.5+01:00"),
            None,
            "a lower-case t is chrono's"
        );
        assert_eq!(
            parse_fast("2016-12-31T23:59:60Z"),
            None,
            "a leap second is chrono's"
        );
    }
}
