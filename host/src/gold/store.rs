//! The Gold stores: a SQLite file (the default) or a PostgreSQL schema
//! (`datamart`). Both replace every Gold table in one transaction (a new
//! version is built aside, then swapped in), so a reader sees the old tables
//! or the new ones, never a mix or nothing; both keep the run log (`runs`,
//! `run_tables`).

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt32Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, SchemaRef};

pub use super::columns::Columns;

/// A Gold table ready to publish.
#[derive(Debug, Clone)]
pub struct GoldTable {
    /// Its name.
    pub name: String,
    /// Its columns.
    pub schema: SchemaRef,
    /// Its rows.
    pub batches: Vec<RecordBatch>,
    /// The columns that identify a row.
    pub key: Vec<String>,
}

impl GoldTable {
    /// Rows in the table.
    pub fn rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }
}

/// One run, as the run log keeps it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRecord {
    /// The run's id.
    pub run_id: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it ended, if it has.
    pub ended_at: Option<String>,
    /// `running`, `succeeded`, `failed` or `abandoned`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Per stage and table: rows, quarantine and plugin.
    pub tables: Vec<RunTable>,
}

/// One table of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunTable {
    /// `bronze`, `silver` or `gold`.
    pub stage: String,
    /// The table.
    pub table: String,
    /// Rows written.
    pub rows: u64,
    /// Rows quarantined.
    pub quarantined: u64,
    /// Quarantined rows per reason (JSON object).
    pub reasons: serde_json::Value,
    /// The plugin that produced it: name, version, sha256, config (JSON).
    pub plugin: serde_json::Value,
}

impl RunTable {
    /// A table of `stage` with no quarantine and no plugin, to fill in.
    pub fn new(stage: &str, table: &str, rows: u64) -> Self {
        RunTable {
            stage: stage.to_owned(),
            table: table.to_owned(),
            rows,
            quarantined: 0,
            reasons: serde_json::json!({}),
            plugin: serde_json::Value::Null,
        }
    }
}

/// A store that refused an operation.
#[derive(Debug, thiserror::Error)]
#[error("gold store {store}: {message}")]
pub struct StoreError {
    /// Which store (its URL without password).
    pub store: String,
    /// What failed and what to do.
    pub message: String,
}

/// What a reader polls to know whether the store changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versions {
    /// The latest run that published Gold.
    pub published: Option<String>,
    /// The latest run, with its status.
    pub latest: Option<(String, String)>,
}

/// A column's SQL type from the type a store declares for it.
pub fn declared_type(declared: &str) -> SqlType {
    let declared = declared.to_ascii_uppercase();
    if declared.contains("INT") {
        SqlType::Integer
    } else if ["DOUBLE", "REAL", "FLOAT", "NUMERIC"].iter().any(|t| declared.contains(t)) {
        SqlType::Double
    } else if declared == "DATE" {
        SqlType::Date
    } else if declared.starts_with("BOOL") {
        SqlType::Boolean
    } else {
        SqlType::Text
    }
}

/// Where Gold goes.
pub trait GoldStore: Send {
    /// Records a run as started, marking runs left `running` by a process
    /// that is gone as `abandoned` (the caller holds the lake's run lock).
    fn begin_run(&mut self, run: &RunRecord) -> Result<(), StoreError>;
    /// Replaces every table in `tables` and records `run` as it is, in one
    /// transaction.
    fn publish(&mut self, tables: &[GoldTable], run: &RunRecord) -> Result<(), StoreError>;
    /// Records a run's end (a failure, or success without a Gold stage).
    fn end_run(&mut self, run: &RunRecord) -> Result<(), StoreError>;
    /// The latest runs, newest first, as JSON objects.
    fn runs(&mut self, limit: usize) -> Result<Vec<serde_json::Value>, StoreError>;
    /// The run whose Gold tables are live (the latest that published Gold)
    /// and the latest run of any status: what tells a reader that something
    /// changed.
    fn versions(&mut self) -> Result<Versions, StoreError>;
    /// Reads a Gold table whole, or `None` when the store has no such table.
    fn read_table(&mut self, table: &str) -> Result<Option<Columns>, StoreError>;
    /// The store, for messages (no password).
    fn describe(&self) -> String;
}

/// Opens the store at `url`: `sqlite:PATH` or `postgres://...`.
pub fn open(url: &str) -> Result<Box<dyn GoldStore>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        return Ok(Box::new(super::sqlite::SqliteStore::open(std::path::Path::new(path))?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Box::new(super::postgres::PostgresStore::open(url)?));
    }
    Err(StoreError {
        store: url.to_owned(),
        message: "unknown store: give sqlite:PATH or postgres://user@host:port/database".to_owned(),
    })
}

/// A column's SQL type, by store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// 64-bit integer.
    Integer,
    /// 64-bit float.
    Double,
    /// Calendar date.
    Date,
    /// Text.
    Text,
    /// True or false.
    Boolean,
}

impl SqlType {
    /// The SQL type of an Arrow type, or `None` for types Gold does not store.
    pub fn of(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt8 => SqlType::Integer,
            DataType::UInt16 | DataType::UInt32 => SqlType::Integer,
            DataType::Float32 | DataType::Float64 => SqlType::Double,
            DataType::Date32 => SqlType::Date,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => SqlType::Text,
            DataType::Boolean => SqlType::Boolean,
            _ => return None,
        })
    }

    /// The type's name in `CREATE TABLE`, the same in SQLite and PostgreSQL
    /// (SQLite reads `DOUBLE PRECISION` as REAL and `DATE` as a date column).
    pub fn sql(self) -> &'static str {
        match self {
            SqlType::Integer => "BIGINT",
            SqlType::Double => "DOUBLE PRECISION",
            SqlType::Date => "DATE",
            SqlType::Text => "TEXT",
            SqlType::Boolean => "BOOLEAN",
        }
    }
}

/// One cell, read from an Arrow column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    /// No value.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Double(f64),
    /// Days since 1970-01-01.
    Date(i32),
    /// Text.
    Text(&'a str),
    /// A boolean.
    Bool(bool),
}

/// The cell at `row` of `array`.
pub fn cell(array: &dyn Array, row: usize) -> Cell<'_> {
    if array.is_null(row) {
        return Cell::Null;
    }
    match array.data_type() {
        DataType::Int64 => Cell::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::Int32 => Cell::Int(i64::from(array.as_primitive::<Int32Type>().value(row))),
        DataType::Int16 => Cell::Int(i64::from(array.as_primitive::<Int16Type>().value(row))),
        DataType::Int8 => Cell::Int(i64::from(array.as_primitive::<Int8Type>().value(row))),
        DataType::UInt32 => Cell::Int(i64::from(array.as_primitive::<UInt32Type>().value(row))),
        DataType::UInt8 => Cell::Int(i64::from(array.as_primitive::<arrow_array::types::UInt8Type>().value(row))),
        DataType::UInt16 => Cell::Int(i64::from(array.as_primitive::<arrow_array::types::UInt16Type>().value(row))),
        DataType::Float64 => Cell::Double(array.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => Cell::Double(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Date32 => Cell::Date(array.as_primitive::<Date32Type>().value(row)),
        DataType::Utf8 => Cell::Text(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Cell::Text(array.as_string::<i64>().value(row)),
        DataType::Utf8View => Cell::Text(array.as_string_view().value(row)),
        DataType::Boolean => Cell::Bool(array.as_boolean().value(row)),
        _ => Cell::Null,
    }
}

/// `name` quoted as an SQL identifier (both stores).
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Days since 1970-01-01 as `YYYY-MM-DD`.
pub fn iso_date(days: i32) -> String {
    let (year, month, day) = civil(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Days since 1970-01-01 as the ten bytes `YYYY-MM-DD`, without allocating
/// (this runs for every date cell of a Gold load and of an API page); `None`
/// for a year outside 0..=9999.
pub fn iso_date_bytes(days: i32) -> Option<[u8; 10]> {
    let (year, month, day) = civil(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let digit = |n: i64| b'0' + n as u8;
    Some([
        digit(year / 1000),
        digit(year / 100 % 10),
        digit(year / 10 % 10),
        digit(year % 10),
        b'-',
        digit(month / 10),
        digit(month % 10),
        b'-',
        digit(day / 10),
        digit(day % 10),
    ])
}

/// Year, month, day of days since 1970-01-01 (Howard Hinnant's
/// civil-from-days).
fn civil(days: i32) -> (i64, i64, i64) {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Checks that every column of every table has a type Gold stores.
pub fn check_types(tables: &[GoldTable], store: &str) -> Result<(), StoreError> {
    for table in tables {
        for field in table.schema.fields() {
            if SqlType::of(field.data_type()).is_none() {
                return Err(StoreError {
                    store: store.to_owned(),
                    message: format!(
                        "table `{}` column `{}` is {}; Gold stores integers, doubles, dates, text and booleans",
                        table.name,
                        field.name(),
                        field.data_type()
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::iso_date;

    #[test]
    fn dates_print_as_iso() {
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(iso_date(19_782), "2024-02-29");
        assert_eq!(iso_date(-1), "1969-12-31");
        assert_eq!(iso_date(10_957), "2000-01-01");
    }
}
