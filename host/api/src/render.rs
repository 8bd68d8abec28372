//! Rows written straight into response bytes, as JSON objects or CSV lines:
//! no intermediate values, as a page of a thousand rows is written thousands
//! of times a second.

use medallion_common::date;
use medallion_store::{Column, Values};

use super::snapshot::Table;

/// Writes `value` as a JSON string.
pub(super) fn json_string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// One column's cells of a page, copied out of the table first.
///
/// The rows of a page sit at random places in the table (it is sorted by an
/// index), so each cell read is a cache miss. Copying a column's cells in a
/// tight loop lets the processor overlap those misses; writing the page then
/// reads only what is already in cache.
struct Page<'a> {
    values: Gathered<'a>,
    valid: Option<Vec<bool>>,
}

enum Gathered<'a> {
    Int(Vec<i64>),
    Double(Vec<f64>),
    Date(Vec<i32>),
    Text(Vec<&'a str>),
    Bool(Vec<bool>),
}

fn gather<'a>(column: &'a Column, rows: &[usize]) -> Page<'a> {
    let valid = column.gather_valid(rows);
    let values = match &column.values {
        // Each column's slice taken once, not at every cell.
        Values::Int(v) => Gathered::Int(gather_slice(v, rows)),
        Values::Double(v) => Gathered::Double(gather_slice(v, rows)),
        Values::Date(v) => Gathered::Date(gather_slice(v, rows)),
        Values::Bool(v) => Gathered::Bool(gather_slice(v, rows).into_iter().map(|b| b != 0).collect()),
        Values::Text(v) => {
            let texts = v.gather(rows);
            // Touch each text's bytes too, so that those misses overlap as well.
            let touched = texts.iter().fold(0u8, |acc, t| acc ^ t.as_bytes().first().copied().unwrap_or(0));
            std::hint::black_box(touched);
            Gathered::Text(texts)
        }
    };
    Page { values, valid }
}

fn gather_slice<T: Copy>(values: &[T], rows: &[usize]) -> Vec<T> {
    rows.iter().map(|&r| values[r]).collect()
}

impl Page<'_> {
    fn is_valid(&self, i: usize) -> bool {
        self.valid.as_ref().is_none_or(|v| v[i])
    }

    /// Cell `i` as a JSON value (dates as `"YYYY-MM-DD"`, a float that is
    /// not finite as null).
    fn json(&self, out: &mut Vec<u8>, i: usize) {
        if !self.is_valid(i) {
            out.extend_from_slice(b"null");
            return;
        }
        match &self.values {
            Gathered::Int(v) => out.extend_from_slice(itoa::Buffer::new().format(v[i]).as_bytes()),
            Gathered::Double(v) if v[i].is_finite() => {
                out.extend_from_slice(ryu::Buffer::new().format_finite(v[i]).as_bytes())
            }
            Gathered::Double(_) => out.extend_from_slice(b"null"),
            Gathered::Date(v) => {
                out.push(b'"');
                date(out, v[i]);
                out.push(b'"');
            }
            Gathered::Text(v) => json_string(out, v[i]),
            Gathered::Bool(v) => out.extend_from_slice(if v[i] { b"true" } else { b"false" }),
        }
    }

    /// Cell `i` as the text of a CSV field, unquoted (empty for null).
    fn csv(&self, out: &mut Vec<u8>, i: usize) {
        if !self.is_valid(i) {
            return;
        }
        match &self.values {
            Gathered::Text(v) => out.extend_from_slice(v[i].as_bytes()),
            Gathered::Date(v) => date(out, v[i]),
            _ => self.json(out, i),
        }
    }
}

/// A date as `YYYY-MM-DD`.
fn date(out: &mut Vec<u8>, days: i32) {
    match date::iso_bytes(days) {
        Some(bytes) => out.extend_from_slice(&bytes),
        None => out.extend_from_slice(date::iso(days).as_bytes()),
    }
}

/// Writes `rows` as a JSON array of objects with `columns`.
pub(super) fn json_rows(out: &mut Vec<u8>, table: &Table, columns: &[usize], rows: &[usize]) {
    let pages: Vec<Page<'_>> = columns.iter().map(|&c| gather(&table.data.columns[c], rows)).collect();
    let keys: Vec<Vec<u8>> = columns
        .iter()
        .map(|&c| {
            let mut key = Vec::new();
            json_string(&mut key, &table.data.columns[c].name);
            key.push(b':');
            key
        })
        .collect();
    out.push(b'[');
    let start = out.len();
    for n in 0..rows.len() {
        if n > 0 {
            out.push(b',');
        }
        if n == 1 {
            // Room for the rest, sized by the first row.
            out.reserve((out.len() - start + 16) * rows.len());
        }
        out.push(b'{');
        for (i, page) in pages.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&keys[i]);
            page.json(out, n);
        }
        out.push(b'}');
    }
    out.push(b']');
}

/// One cell as CSV writes it (dates as `YYYY-MM-DD`); `None` for null.
pub(super) fn cell_text(column: &Column, row: usize) -> Option<String> {
    let page = gather(column, &[row]);
    if !page.is_valid(0) {
        return None;
    }
    let mut out = Vec::new();
    page.csv(&mut out, 0);
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Writes `rows` as CSV (RFC 4180, CRLF line ends) with a header line.
pub(super) fn csv_rows(out: &mut Vec<u8>, table: &Table, columns: &[usize], rows: &[usize]) {
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(out);
    let names = columns.iter().map(|&c| table.data.columns[c].name.as_bytes());
    // Writing into a Vec cannot fail.
    let _ = writer.write_record(names);
    let pages: Vec<Page<'_>> = columns.iter().map(|&c| gather(&table.data.columns[c], rows)).collect();
    let mut field = Vec::new();
    for n in 0..rows.len() {
        for page in &pages {
            field.clear();
            page.csv(&mut field, n);
            let _ = writer.write_field(&field);
        }
        let _ = writer.write_record(None::<&[u8]>);
    }
    let _ = writer.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let mut out = Vec::new();
        json_string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(String::from_utf8(out).expect("utf8"), r#""a\"b\\c\nd\u0001é""#);
    }
}
