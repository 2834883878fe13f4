//! Wall-clock times as people and other programs read them: RFC 3339 in UTC, for the motion
//! topic, recordings' names and the recordings API. The calendar arithmetic is the proleptic
//! Gregorian calendar's, days counted from 1970-01-01.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch now (0 for a clock set before 1970).
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `2026-12-08T03:17:20.123Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    let (date, seconds_of_day) = split(unix_ms / 1000);
    format!(
        "{date}T{:02}:{:02}:{:02}.{:03}Z",
        seconds_of_day / 3600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60,
        unix_ms % 1000
    )
}

/// `2026-12-08T03-17-20.123Z`: a time to the millisecond that sorts as text, fit for a file
/// name on any filesystem (no colons).
pub fn file_stamp(unix_ms: u64) -> String {
    let (date, seconds_of_day) = split(unix_ms / 1000);
    format!(
        "{date}T{:02}-{:02}-{:02}.{:03}Z",
        seconds_of_day / 3600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60,
        unix_ms % 1000
    )
}

/// Reads a [`file_stamp`] back: milliseconds since the epoch.
pub fn parse_file_stamp(text: &str) -> Option<u64> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let (time, millis) = time.split_once('.')?;
    let mut fields = time.split('-');
    let hours = number(fields.next()?, 0..=23)?;
    let minutes = number(fields.next()?, 0..=59)?;
    let seconds = number(fields.next()?, 0..=60)?;
    if fields.next().is_some() || millis.len() != 3 {
        return None;
    }
    let millis = number(millis, 0..=999)?;
    let secs = parse_date(date)? * 86_400 + hours * 3600 + minutes * 60 + seconds;
    Some(secs * 1000 + millis)
}

/// Reads an RFC 3339 time (`2026-12-08T03:17:20Z`, `…T03:17:20.5+01:00`): milliseconds since
/// the epoch. Times before 1970 are refused.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let (clock, offset_secs): (&str, i64) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (clock, offset) = (time.get(..at)?, time.get(at..)?);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (hours, minutes) = offset.get(1..)?.split_once(':')?;
        let offset = number(hours, 0..=23)? * 3600 + number(minutes, 0..=59)? * 60;
        (clock, sign * i64::try_from(offset).ok()?)
    };
    let (whole, fraction) = match clock.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (clock, ""),
    };
    let mut fields = whole.split(':');
    let hours = number(fields.next()?, 0..=23)?;
    let minutes = number(fields.next()?, 0..=59)?;
    let seconds = number(fields.next()?, 0..=60)?;
    if fields.next().is_some() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u64, |acc, digit| acc * 10 + u64::from(digit - b'0'));
    let local = parse_date(date)? * 86_400 + hours * 3600 + minutes * 60 + seconds;
    let utc = i64::try_from(local).ok()? - offset_secs;
    Some(u64::try_from(utc).ok()? * 1000 + millis)
}

/// `YYYY-MM-DD` and the seconds into that day.
fn split(unix_secs: u64) -> (String, u64) {
    let days = unix_secs / 86_400;
    let (year, month, day) = civil_from_days(days);
    (format!("{year:04}-{month:02}-{day:02}"), unix_secs % 86_400)
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
fn parse_date(text: &str) -> Option<u64> {
    let mut fields = text.split('-');
    let year = number(fields.next()?, 1970..=9999)?;
    let month = number(fields.next()?, 1..=12)?;
    let day = number(fields.next()?, 1..=31)?;
    if fields.next().is_some() || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

fn number(text: &str, range: std::ops::RangeInclusive<u64>) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 4 {
        return None;
    }
    text.parse().ok().filter(|n| range.contains(n))
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since the epoch of a date from 1970 on, counting whole years, then months.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let years: u64 = (1970..year)
        .map(|y| if is_leap(y) { 366 } else { 365 })
        .sum();
    let months: u64 = (1..month).map(|m| days_in_month(year, m)).sum();
    years + months + day - 1
}

/// The date `days` after 1970-01-01.
fn civil_from_days(mut days: u64) -> (u64, u64, u64) {
    let mut year = 1970;
    loop {
        let length = if is_leap(year) { 366 } else { 365 };
        if days < length {
            break;
        }
        days -= length;
        year += 1;
    }
    let mut month = 1;
    while days >= days_in_month(year, month) {
        days -= days_in_month(year, month);
        month += 1;
    }
    (year, month, days + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_and_write_alike() {
        // date -u -d @1796699840 → 2026-12-08T03:17:20Z
        assert_eq!(rfc3339(1_796_699_840_123), "2026-12-08T03:17:20.123Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2024-02-29 (a leap day) and 2000-12-31.
        assert_eq!(rfc3339(1_709_164_800_000), "2024-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(978_307_199_000), "2000-12-31T23:59:59.000Z");
        assert_eq!(file_stamp(1_796_699_840_045), "2026-12-08T03-17-20.045Z");
        assert_eq!(
            parse_file_stamp("2026-12-08T03-17-20.045Z"),
            Some(1_796_699_840_045)
        );
        assert_eq!(
            parse_rfc3339("2026-12-08T03:17:20.123Z"),
            Some(1_796_699_840_123)
        );
        assert_eq!(
            parse_rfc3339("2026-12-08T04:17:20+01:00"),
            Some(1_796_699_840_000)
        );
        assert_eq!(
            parse_rfc3339("2026-12-08T02:47:20.5-00:30"),
            Some(1_796_699_840_500)
        );
        for ms in [0, 951_782_400_000, 1_709_164_800_000, 4_102_444_800_000] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-12-08T24:00:00Z",
            "2026-12-08T03:17Z",
            "1969-12-31T23:59:59Z",
            "2026-12-08T03:17:20.x1Z",
            "2026-12-08",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        for bad in [
            "2026-12-08T03:17:20.000Z",
            "2026-12-08T03-17-20Z",
            "2026-12-08T03-17-20.45Z",
        ] {
            assert_eq!(parse_file_stamp(bad), None, "{bad}");
        }
    }
}
