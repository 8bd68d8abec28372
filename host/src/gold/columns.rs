//! A Gold table read back from its store, column by column, with the types
//! the store declares: what `host serve` holds in memory and pages through.

use super::store::SqlType;

/// A whole table, as typed columns of equal length.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    /// The columns, in the table's order.
    pub columns: Vec<Column>,
}

impl Columns {
    /// Rows in the table.
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.values.len())
    }

    /// The column named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// One column.
#[derive(Debug, Clone)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: SqlType,
    /// Its values; a null's slot holds a default.
    pub values: Values,
    /// Which rows hold a value; `None` when every row does.
    pub valid: Option<Vec<bool>>,
}

impl Column {
    /// An empty column of `kind`.
    pub fn new(name: &str, kind: SqlType) -> Self {
        let values = match kind {
            SqlType::Integer => Values::Int(Vec::new()),
            SqlType::Double => Values::Double(Vec::new()),
            SqlType::Date => Values::Date(Vec::new()),
            SqlType::Text => Values::Text(Vec::new()),
            SqlType::Boolean => Values::Bool(Vec::new()),
        };
        Column { name: name.to_owned(), kind, values, valid: None }
    }

    /// Whether row `row` holds a value.
    pub fn is_valid(&self, row: usize) -> bool {
        self.valid.as_ref().is_none_or(|v| v[row])
    }

    /// Appends a null.
    pub fn push_null(&mut self) {
        let len = self.values.len();
        self.valid.get_or_insert_with(|| vec![true; len]).push(false);
        match &mut self.values {
            Values::Int(v) => v.push(0),
            Values::Double(v) => v.push(0.0),
            Values::Date(v) => v.push(0),
            Values::Text(v) => v.push(Box::from("")),
            Values::Bool(v) => v.push(false),
        }
    }

    /// Marks the value just pushed as present.
    pub fn pushed(&mut self) {
        if let Some(valid) = &mut self.valid {
            valid.push(true);
        }
    }
}

/// A column's values, by type.
#[derive(Debug, Clone)]
pub enum Values {
    /// Integers.
    Int(Vec<i64>),
    /// Floats.
    Double(Vec<f64>),
    /// Days since 1970-01-01.
    Date(Vec<i32>),
    /// Text.
    Text(Vec<Box<str>>),
    /// Booleans.
    Bool(Vec<bool>),
}

impl Values {
    /// Values held.
    pub fn len(&self) -> usize {
        match self {
            Values::Int(v) => v.len(),
            Values::Double(v) => v.len(),
            Values::Date(v) => v.len(),
            Values::Text(v) => v.len(),
            Values::Bool(v) => v.len(),
        }
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `YYYY-MM-DD` as days since 1970-01-01, or `None` when it is not a date.
pub fn parse_iso_date(text: &str) -> Option<i32> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year: i64 = text[..4].parse().ok()?;
    let month: i64 = text[5..7].parse().ok()?;
    let day: i64 = text[8..].parse().ok()?;
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
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    i32::try_from(era * 146_097 + doe - 719_468).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gold::store::iso_date;

    #[test]
    fn dates_round_trip() {
        for days in [-719_468, -1, 0, 1, 19_000, 20_000, 2_932_896] {
            assert_eq!(parse_iso_date(&iso_date(days)), Some(days), "{}", iso_date(days));
        }
        assert_eq!(parse_iso_date("2023-02-30"), None);
        assert_eq!(parse_iso_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_iso_date("2024-1-01"), None);
    }
}
