//! Calendar dates as days since 1970-01-01 (Arrow's `Date32`), the one place
//! the host turns them into `YYYY-MM-DD` and back. Impossible dates
//! (2023-02-31, month 13) are refused, never rolled over.
//!
//! The guest side has its own copy in the plugin SDK (`medallion_sdk::date`):
//! plugins are built for wasm32 and do not link the host's crates.

/// Days since 1970-01-01 of a proleptic Gregorian date, or `None` when the
/// month or the day does not exist (2023-02-29, 2026-13-01, day 0).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i32> {
    if !(1..=days_in_month(year, month)?).contains(&day) {
        return None;
    }
    // Howard Hinnant's days-from-civil.
    let (month, day) = (i64::from(month), i64::from(day));
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    i32::try_from(era * 146_097 + doe - 719_468).ok()
}

/// Year, month, day of days since 1970-01-01 (Howard Hinnant's
/// civil-from-days).
pub fn civil_from_days(days: i32) -> (i64, u32, u32) {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// The number of days in `month` of `year`, or `None` for a month outside 1..=12.
pub fn days_in_month(year: i64, month: u32) -> Option<u32> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    Some(match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    })
}

/// `YYYY-MM-DD` (exactly ten bytes) as days since 1970-01-01, or `None` when
/// it is not written that way or names a day that does not exist.
pub fn parse_iso(text: &str) -> Option<i32> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    days_from_civil(i64::from(digits(0..4)?), digits(5..7)?, digits(8..10)?)
}

/// Days since 1970-01-01 as `YYYY-MM-DD` (years past 9999 or before 0 are
/// written in full, with a sign for negative years).
pub fn iso(days: i32) -> String {
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Days since 1970-01-01 as the ten bytes `YYYY-MM-DD`, without allocating
/// (this runs for every date cell of a Gold load and of an API page); `None`
/// for a year outside 0..=9999.
pub fn iso_bytes(days: i32) -> Option<[u8; 10]> {
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let digit = |n: u32| b'0' + (n % 10) as u8;
    let year = year as u32;
    Some([
        digit(year / 1000),
        digit(year / 100),
        digit(year / 10),
        digit(year),
        b'-',
        digit(month / 10),
        digit(month),
        b'-',
        digit(day / 10),
        digit(day),
    ])
}

/// Microseconds since 1970-01-01T00:00:00Z as RFC 3339 in UTC with whole
/// seconds (`2026-11-24T06:00:00Z`).
pub fn rfc3339(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let days = i32::try_from(days).unwrap_or(if days < 0 { i32::MIN } else { i32::MAX });
    let (hour, minute, second) = (second_of_day / 3600, second_of_day / 60 % 60, second_of_day % 60);
    format!("{}T{hour:02}:{minute:02}:{second:02}Z", iso(days))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_through_text() {
        for days in [-719_468, -1, 0, 1, 10_957, 19_000, 19_782, 20_000, 2_932_896] {
            assert_eq!(parse_iso(&iso(days)), Some(days), "{}", iso(days));
            assert_eq!(iso_bytes(days).map(|b| String::from_utf8_lossy(&b).into_owned()), Some(iso(days)));
        }
        assert_eq!(iso(0), "1970-01-01");
        assert_eq!(iso(19_782), "2024-02-29");
        assert_eq!(iso(-1), "1969-12-31");
        assert_eq!(iso(10_957), "2000-01-01");
    }

    #[test]
    fn impossible_dates_are_refused() {
        for text in [
            "2023-02-29",
            "2023-02-31",
            "2026-13-45",
            "2026-00-10",
            "2026-01-00",
            "2026-04-31",
            "1900-02-29",
            "2024-1-01",
            "2024-01-1x",
            "+024-01-01",
            "2024/01/01",
            "",
            "2024-01-011",
        ] {
            assert_eq!(parse_iso(text), None, "{text}");
        }
        assert_eq!(parse_iso("2024-02-29"), Some(19_782));
        assert_eq!(parse_iso("2000-02-29"), Some(11_016));
        assert_eq!(days_from_civil(2023, 2, 31), None);
        assert_eq!(days_from_civil(2026, 13, 1), None);
    }

    #[test]
    fn instants_print_as_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_000_000_123_456), "2025-11-24T16:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }
}
