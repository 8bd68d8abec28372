//! A SQLite table read in batches, columns typed as the table declares them
//! (INTEGER → Int64, REAL → Float64, anything else → Utf8).

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{ArrayBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use rusqlite::types::ValueRef;

use super::{BATCH_ROWS, Source, SourceError};

/// One table of a SQLite file. The rows are read up front in batches (the
/// reference's catalogue is 20,000 rows; a table is read once per run).
pub struct SqliteSource {
    schema: SchemaRef,
    batches: std::vec::IntoIter<RecordBatch>,
    bytes: u64,
}

impl SqliteSource {
    /// Reads `table` from the SQLite file `file` (opened read-only).
    pub fn open(file: &Path, table: &str) -> Result<Self, SourceError> {
        let fail = |message: String| SourceError::Sqlite { file: file.to_owned(), table: table.to_owned(), message };
        if !file.is_file() {
            return Err(SourceError::Io { file: file.to_owned(), source: std::io::ErrorKind::NotFound.into() });
        }
        let db = rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| fail(e.to_string()))?;
        let columns = declared_columns(&db, table).map_err(|e| fail(e.to_string()))?;
        if columns.is_empty() {
            return Err(fail("no such table (or it has no columns)".to_owned()));
        }
        let schema = Arc::new(Schema::new(
            columns.iter().map(|(name, ty)| Field::new(name, ty.clone(), true)).collect::<Vec<_>>(),
        ));
        let select = format!(
            "SELECT {} FROM {}",
            columns.iter().map(|(n, _)| quote_ident(n)).collect::<Vec<_>>().join(", "),
            quote_ident(table)
        );
        let batches = read_all(&db, &select, &schema, file).map_err(|e| fail(e.to_string()))?;
        let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        Ok(SqliteSource { schema, batches: batches.into_iter(), bytes })
    }
}

fn declared_columns(db: &rusqlite::Connection, table: &str) -> rusqlite::Result<Vec<(String, DataType)>> {
    let mut info = db.prepare(&format!("PRAGMA table_info({})", quote_ident(table)))?;
    let rows = info.query_map([], |row| {
        let name: String = row.get(1)?;
        let declared: String = row.get(2)?;
        let ty = match declared.to_ascii_uppercase().as_str() {
            t if t.contains("INT") => DataType::Int64,
            t if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") => DataType::Float64,
            _ => DataType::Utf8,
        };
        Ok((name, ty))
    })?;
    rows.collect()
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn read_all(
    db: &rusqlite::Connection,
    select: &str,
    schema: &SchemaRef,
    file: &Path,
) -> Result<Vec<RecordBatch>, Box<dyn std::error::Error>> {
    let mut statement = db.prepare(select)?;
    let mut rows = statement.query([])?;
    let mut batches = Vec::new();
    let mut builders = new_builders(schema);
    let mut count = 0;
    while let Some(row) = rows.next()? {
        for (i, field) in schema.fields().iter().enumerate() {
            append(&mut builders[i], field.data_type(), row.get_ref(i)?, file, field.name())?;
        }
        count += 1;
        if count == BATCH_ROWS {
            batches.push(finish(schema, &mut builders)?);
            count = 0;
        }
    }
    if count > 0 {
        batches.push(finish(schema, &mut builders)?);
    }
    Ok(batches)
}

fn new_builders(schema: &SchemaRef) -> Vec<Box<dyn ArrayBuilder>> {
    schema
        .fields()
        .iter()
        .map(|f| -> Box<dyn ArrayBuilder> {
            match f.data_type() {
                DataType::Int64 => Box::new(Int64Builder::new()),
                DataType::Float64 => Box::new(Float64Builder::new()),
                _ => Box::new(StringBuilder::new()),
            }
        })
        .collect()
}

/// Appends one SQLite value; a value whose storage class differs from the
/// declared type is kept as text in a text column, and is an error in a
/// numeric one (the value would change).
fn append(
    builder: &mut Box<dyn ArrayBuilder>,
    ty: &DataType,
    value: ValueRef<'_>,
    file: &Path,
    column: &str,
) -> Result<(), String> {
    let mismatch = || format!("{}: column `{column}` is declared {ty} but holds {value:?}", file.display());
    let any = builder.as_any_mut();
    match ty {
        DataType::Int64 => {
            let b = any.downcast_mut::<Int64Builder>().ok_or_else(mismatch)?;
            match value {
                ValueRef::Null => b.append_null(),
                ValueRef::Integer(v) => b.append_value(v),
                _ => return Err(mismatch()),
            }
        }
        DataType::Float64 => {
            let b = any.downcast_mut::<Float64Builder>().ok_or_else(mismatch)?;
            match value {
                ValueRef::Null => b.append_null(),
                ValueRef::Real(v) => b.append_value(v),
                ValueRef::Integer(v) => b.append_value(v as f64),
                _ => return Err(mismatch()),
            }
        }
        _ => {
            let b = any.downcast_mut::<StringBuilder>().ok_or_else(mismatch)?;
            match value {
                ValueRef::Null => b.append_null(),
                ValueRef::Text(t) => b.append_value(String::from_utf8_lossy(t)),
                ValueRef::Integer(v) => b.append_value(v.to_string()),
                ValueRef::Real(v) => b.append_value(v.to_string()),
                ValueRef::Blob(_) => return Err(mismatch()),
            }
        }
    }
    Ok(())
}

fn finish(schema: &SchemaRef, builders: &mut [Box<dyn ArrayBuilder>]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let arrays: Vec<ArrayRef> = builders.iter_mut().map(|b| b.finish()).collect();
    RecordBatch::try_new(schema.clone(), arrays)
}

impl Source for SqliteSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, SourceError> {
        Ok(self.batches.next())
    }

    fn bytes_read(&self) -> u64 {
        self.bytes
    }
}

/// The tables of a SQLite file, in name order.
pub fn tables(file: &Path) -> Result<Vec<String>, SourceError> {
    let fail = |message: String| SourceError::Sqlite { file: file.to_owned(), table: "*".to_owned(), message };
    let db = rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| fail(e.to_string()))?;
    let mut query = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .map_err(|e| fail(e.to_string()))?;
    let names = query.query_map([], |row| row.get::<_, String>(0)).map_err(|e| fail(e.to_string()))?;
    names.collect::<Result<Vec<_>, _>>().map_err(|e| fail(e.to_string()))
}
