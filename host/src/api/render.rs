//! Rows written straight into response bytes, as JSON objects or CSV lines:
//! no intermediate values, as a page of a thousand rows is written thousands
//! of times a second.

use crate::gold::columns::{Column, Values};
use crate::gold::store::iso_date;

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

/// Writes one cell as a JSON value (dates as `"YYYY-MM-DD"`, a float that is
/// not finite as null).
pub(super) fn json_cell(out: &mut Vec<u8>, column: &Column, row: usize) {
    if !column.is_valid(row) {
        out.extend_from_slice(b"null");
        return;
    }
    match &column.values {
        Values::Int(v) => out.extend_from_slice(itoa::Buffer::new().format(v[row]).as_bytes()),
        Values::Double(v) if v[row].is_finite() => {
            out.extend_from_slice(ryu::Buffer::new().format_finite(v[row]).as_bytes())
        }
        Values::Double(_) => out.extend_from_slice(b"null"),
        Values::Date(v) => {
            out.push(b'"');
            out.extend_from_slice(iso_date(v[row]).as_bytes());
            out.push(b'"');
        }
        Values::Text(v) => json_string(out, &v[row]),
        Values::Bool(v) => out.extend_from_slice(if v[row] { b"true" } else { b"false" }),
    }
}

/// The JSON keys of `columns`, written once per page.
pub(super) fn keys(table: &Table, columns: &[usize]) -> Vec<Vec<u8>> {
    columns
        .iter()
        .map(|&c| {
            let mut key = Vec::new();
            json_string(&mut key, &table.data.columns[c].name);
            key.push(b':');
            key
        })
        .collect()
}

/// Writes `rows` as a JSON array of objects with `columns`.
pub(super) fn json_rows(out: &mut Vec<u8>, table: &Table, columns: &[usize], rows: &[usize]) {
    let keys = keys(table, columns);
    out.push(b'[');
    for (n, &row) in rows.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.push(b'{');
        for (i, &c) in columns.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&keys[i]);
            json_cell(out, &table.data.columns[c], row);
        }
        out.push(b'}');
    }
    out.push(b']');
}

/// Writes `rows` as CSV (RFC 4180) with a header line.
pub(super) fn csv_rows(out: &mut Vec<u8>, table: &Table, columns: &[usize], rows: &[usize]) {
    for (i, &c) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_text(out, &table.data.columns[c].name);
    }
    out.extend_from_slice(b"\r\n");
    for &row in rows {
        for (i, &c) in columns.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let column = &table.data.columns[c];
            if !column.is_valid(row) {
                continue;
            }
            match &column.values {
                Values::Text(v) => csv_text(out, &v[row]),
                Values::Date(v) => out.extend_from_slice(iso_date(v[row]).as_bytes()),
                _ => json_cell(out, column, row),
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Text, quoted when it must be.
fn csv_text(out: &mut Vec<u8>, value: &str) {
    if value.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n')) {
        out.push(b'"');
        out.extend_from_slice(value.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(value.as_bytes());
    }
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
