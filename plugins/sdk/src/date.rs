//! Calendar dates for plugins: `YYYY-MM-DD` to days since 1970-01-01
//! (Arrow's `Date32`), refusing days that do not exist (2023-02-31, month 13).
//!
//! The host has its own copy (`medallion_common::date`): plugins are built for
//! wasm32 and link none of the host's crates.

/// Days since 1970-01-01 of a proleptic Gregorian date, or `None` when the
/// month or the day does not exist.
pub fn days_from_civil(year: i32, month: u32, day: u32) -> Option<i32> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&day) {
        return None;
    }
    // Howard Hinnant's days-from-civil.
    let (month, day) = (month as i32, day as i32);
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// `YYYY-MM-DD` (exactly ten bytes) as days since 1970-01-01, or `None` when
/// it is written otherwise or names a day that does not exist.
pub fn parse_iso(text: &str) -> Option<i32> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    days_from_civil(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_days_parse_and_impossible_ones_do_not() {
        assert_eq!(parse_iso("1970-01-01"), Some(0));
        assert_eq!(parse_iso("2024-02-29"), Some(19_782));
        assert_eq!(parse_iso("1969-12-31"), Some(-1));
        for bad in ["2023-02-29", "2023-02-31", "2026-13-45", "2026-00-01", "2026-01-00", "23-01-01", "2023/01/01", ""]
        {
            assert_eq!(parse_iso(bad), None, "{bad}");
        }
    }
}
