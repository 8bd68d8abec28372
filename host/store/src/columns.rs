//! A Gold table read back from its store, column by column, with the types
//! the store declares: what `host serve` pages through.
//!
//! The columns live in files that are mapped into memory, not on the heap:
//! the server's own memory does not grow with Gold (the kernel keeps the
//! pages that are read and drops the others when memory is short), and a
//! reload writes the next run's files beside the current ones instead of a
//! second copy in memory. A text column is its bytes end to end and where
//! each value ends; a null is a clear bit in the column's validity bitmap.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use arrow_schema::DataType;

use crate::Cell;

/// A whole table, as typed columns of equal length.
#[derive(Debug, Default)]
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
#[derive(Debug)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: SqlType,
    /// Its values; a null's slot holds a default.
    pub values: Values,
    /// Which rows hold a value, a bit each; `None` when every row does.
    valid: Option<Mapped<u8>>,
}

impl Column {
    /// Whether row `row` holds a value.
    pub fn is_valid(&self, row: usize) -> bool {
        self.valid.as_ref().is_none_or(|v| v[row / 8] & (1 << (row % 8)) != 0)
    }

    /// Whether each of `rows` holds a value; `None` when every row does.
    pub fn gather_valid(&self, rows: &[usize]) -> Option<Vec<bool>> {
        let bits: &[u8] = self.valid.as_ref()?;
        Some(rows.iter().map(|&row| bits[row / 8] & (1 << (row % 8)) != 0).collect())
    }

    /// Whether some row holds no value.
    pub fn has_null(&self) -> bool {
        self.valid.is_some()
    }
}

/// A column's values, by type.
#[derive(Debug)]
pub enum Values {
    /// Integers.
    Int(Mapped<i64>),
    /// Floats.
    Double(Mapped<f64>),
    /// Days since 1970-01-01.
    Date(Mapped<i32>),
    /// Text.
    Text(Texts),
    /// Booleans, a byte each (0 or 1).
    Bool(Mapped<u8>),
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

/// A text column: every value's bytes end to end, and where each ends.
#[derive(Debug)]
pub struct Texts {
    ends: Mapped<u64>,
    bytes: Mapped<u8>,
}

impl Texts {
    /// Values held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Value `row`.
    pub fn get(&self, row: usize) -> &str {
        let start = if row == 0 { 0 } else { self.ends[row - 1] as usize };
        let end = self.ends[row] as usize;
        let bytes = &self.bytes[start..end];
        // SAFETY: [`Texts::checked`] found the bytes UTF-8 and every end on
        // a character boundary when they were mapped, and the files are not
        // written again (see [`Mapped::open`]).
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// The texts, once their bytes are found UTF-8 and their ends rising and
    /// on character boundaries (what [`Texts::get`] relies on).
    fn checked(ends: Mapped<u64>, bytes: Mapped<u8>) -> Result<Self, String> {
        let text = std::str::from_utf8(&bytes).map_err(|e| format!("its text is not UTF-8: {e}"))?;
        let mut start = 0;
        for &end in ends.iter() {
            let end = end as usize;
            if end < start || !text.is_char_boundary(end) {
                return Err(format!("a text ends at byte {end}, which is not where a text can end"));
            }
            start = end;
        }
        Ok(Texts { ends, bytes })
    }

    /// Values `rows`, each column file's slice taken once (what a page
    /// reads).
    pub fn gather(&self, rows: &[usize]) -> Vec<&str> {
        let (ends, bytes): (&[u64], &[u8]) = (&self.ends, &self.bytes);
        rows.iter()
            .map(|&row| {
                let start = if row == 0 { 0 } else { ends[row - 1] as usize };
                // SAFETY: as in [`Texts::get`].
                unsafe { std::str::from_utf8_unchecked(&bytes[start..ends[row] as usize]) }
            })
            .collect()
    }

    /// Every value, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|row| self.get(row))
    }
}

/// Values of type `T` in a file mapped read-only into memory.
pub struct Mapped<T> {
    map: Option<memmap2::Mmap>,
    len: usize,
    _type: PhantomData<T>,
}

impl<T> std::fmt::Debug for Mapped<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapped({} values)", self.len)
    }
}

impl<T: bytemuck::Pod> Mapped<T> {
    /// Maps the first `len` values of the file at `path`.
    pub fn open(path: &Path, len: usize) -> std::io::Result<Self> {
        if len == 0 {
            // An empty file cannot be mapped.
            return Ok(Mapped { map: None, len, _type: PhantomData });
        }
        let file = File::open(path)?;
        let bytes = len * size_of::<T>();
        if file.metadata()?.len() < bytes as u64 {
            return Err(std::io::Error::other(format!("{} is shorter than its {len} values", path.display())));
        }
        // SAFETY: the file is this process's own, in a folder only it
        // writes (the server's scratch folder), written whole before it is
        // mapped and never written again; it is removed, not truncated, when
        // the mapping's run is replaced (the mapping outlives the name).
        let map = unsafe { memmap2::MmapOptions::new().len(bytes).map(&file) }?;
        // Pages are read at random places (a page of rows in a sorted order):
        // no read-ahead, which under memory pressure would read and evict
        // 32 pages for each one asked for.
        map.advise(memmap2::Advice::Random)?;
        Ok(Mapped { map: Some(map), len, _type: PhantomData })
    }
}

impl<T: bytemuck::Pod> Mapped<T> {
    /// `values` copied into memory of their own (not backed by a file): for
    /// when no file can be written.
    pub fn from_slice(values: &[T]) -> std::io::Result<Self> {
        let bytes: &[u8] = bytemuck::cast_slice(values);
        if bytes.is_empty() {
            return Ok(Mapped { map: None, len: 0, _type: PhantomData });
        }
        let mut map = memmap2::MmapMut::map_anon(bytes.len())?;
        map.copy_from_slice(bytes);
        Ok(Mapped { map: Some(map.make_read_only()?), len: values.len(), _type: PhantomData })
    }
}

impl<T: bytemuck::Pod> Deref for Mapped<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match &self.map {
            // A mapping starts on a page boundary, so it is aligned for `T`.
            Some(map) => bytemuck::cast_slice(&map[..self.len * size_of::<T>()]),
            None => &[],
        }
    }
}

/// Writes one column to files in a folder as rows arrive, then maps them:
/// what a store's read of a table fills, a value at a time.
pub struct ColumnWriter {
    name: String,
    kind: SqlType,
    stem: PathBuf,
    values: BufWriter<File>,
    /// A text column's value ends.
    ends: Option<BufWriter<File>>,
    /// Bytes of text written.
    end: u64,
    /// The validity bits, a byte at a time.
    valid: BufWriter<File>,
    byte: u8,
    rows: usize,
    nulls: usize,
}

impl ColumnWriter {
    /// A writer of column `name` of `kind` into files `<stem>.*`.
    pub fn create(stem: &Path, name: &str, kind: SqlType) -> std::io::Result<Self> {
        let file = |ext: &str| File::create(stem.with_extension(ext)).map(|f| BufWriter::with_capacity(1 << 16, f));
        Ok(ColumnWriter {
            name: name.to_owned(),
            kind,
            stem: stem.to_owned(),
            values: file("values")?,
            ends: if kind == SqlType::Text { Some(file("ends")?) } else { None },
            end: 0,
            valid: file("valid")?,
            byte: 0,
            rows: 0,
            nulls: 0,
        })
    }

    /// The column's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The column's type.
    pub fn kind(&self) -> SqlType {
        self.kind
    }

    /// Appends `value` (an integer goes into a Double column as a float);
    /// an error says what the column holds when `value` is of another type.
    pub fn push(&mut self, value: Cell<'_>) -> Result<(), String> {
        let present = value != Cell::Null;
        let written = match (self.kind, value) {
            (_, Cell::Null) => {
                self.nulls += 1;
                match self.kind {
                    SqlType::Text => self.text(""),
                    SqlType::Boolean => self.values.write_all(&[0]),
                    SqlType::Date => self.values.write_all(&0i32.to_ne_bytes()),
                    SqlType::Integer | SqlType::Double => self.values.write_all(&0i64.to_ne_bytes()),
                }
            }
            (SqlType::Integer, Cell::Int(x)) => self.values.write_all(&x.to_ne_bytes()),
            (SqlType::Double, Cell::Double(x)) => self.values.write_all(&x.to_ne_bytes()),
            (SqlType::Double, Cell::Int(x)) => self.values.write_all(&(x as f64).to_ne_bytes()),
            (SqlType::Date, Cell::Date(x)) => self.values.write_all(&x.to_ne_bytes()),
            (SqlType::Boolean, Cell::Bool(x)) => self.values.write_all(&[u8::from(x)]),
            (SqlType::Text, Cell::Text(x)) => self.text(x),
            (kind, value) => {
                return Err(format!("column `{}` is {} but holds {value:?}", self.name, kind.sql()));
            }
        };
        written.map_err(|e| self.io_error(e))?;
        if present {
            self.byte |= 1 << (self.rows % 8);
        }
        self.rows += 1;
        if self.rows.is_multiple_of(8) {
            self.valid.write_all(&[self.byte]).map_err(|e| self.io_error(e))?;
            self.byte = 0;
        }
        Ok(())
    }

    fn io_error(&self, e: std::io::Error) -> String {
        format!("cannot write column `{}` to the server's scratch folder: {e}", self.name)
    }

    fn text(&mut self, text: &str) -> std::io::Result<()> {
        self.values.write_all(text.as_bytes())?;
        self.end += text.len() as u64;
        match &mut self.ends {
            Some(ends) => ends.write_all(&self.end.to_ne_bytes()),
            None => Ok(()),
        }
    }

    /// The column, its files written and mapped.
    pub fn finish(mut self) -> Result<Column, String> {
        let written = (|| {
            if !self.rows.is_multiple_of(8) {
                self.valid.write_all(&[self.byte])?;
            }
            self.values.flush()?;
            self.valid.flush()?;
            match &mut self.ends {
                Some(ends) => ends.flush(),
                None => Ok(()),
            }
        })();
        written.map_err(|e| self.io_error(e))?;
        let io = |e: std::io::Error| format!("cannot map column `{}` from the server's scratch folder: {e}", self.name);
        let path = |ext: &str| self.stem.with_extension(ext);
        let rows = self.rows;
        let values = match self.kind {
            SqlType::Integer => Values::Int(Mapped::open(&path("values"), rows).map_err(io)?),
            SqlType::Double => Values::Double(Mapped::open(&path("values"), rows).map_err(io)?),
            SqlType::Date => Values::Date(Mapped::open(&path("values"), rows).map_err(io)?),
            SqlType::Boolean => Values::Bool(Mapped::open(&path("values"), rows).map_err(io)?),
            SqlType::Text => Values::Text(
                Texts::checked(
                    Mapped::open(&path("ends"), rows).map_err(io)?,
                    Mapped::open(&path("values"), self.end as usize).map_err(io)?,
                )
                .map_err(|e| format!("column `{}` in the server's scratch folder: {e}", self.name))?,
            ),
        };
        let valid = if self.nulls > 0 {
            Some(Mapped::open(&path("valid"), rows.div_ceil(8)).map_err(io)?)
        } else {
            std::fs::remove_file(path("valid")).ok();
            None
        };
        Ok(Column { name: self.name, kind: self.kind, values, valid })
    }
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

/// Writers of a table's columns (name and type each) into `dir`, created.
pub(crate) fn writers(dir: &Path, columns: &[(String, SqlType)]) -> Result<Vec<ColumnWriter>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    columns
        .iter()
        .enumerate()
        .map(|(i, (name, kind))| {
            ColumnWriter::create(&dir.join(i.to_string()), name, *kind)
                .map_err(|e| format!("cannot write column `{name}` to {}: {e}", dir.display()))
        })
        .collect()
}

/// The table the writers wrote.
pub(crate) fn finish(writers: Vec<ColumnWriter>) -> Result<Columns, String> {
    Ok(Columns { columns: writers.into_iter().map(ColumnWriter::finish).collect::<Result<_, _>>()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("medallion-columns-test-{}-{name}", std::process::id()))
    }

    #[test]
    fn columns_read_back_as_written_nulls_and_all() {
        let dir = folder("written");
        let declared = [
            ("id".to_owned(), SqlType::Text),
            ("n".to_owned(), SqlType::Integer),
            ("x".to_owned(), SqlType::Double),
            ("day".to_owned(), SqlType::Date),
            ("ok".to_owned(), SqlType::Boolean),
        ];
        let mut writers = writers(&dir, &declared).unwrap_or_else(|e| panic!("{e}"));
        // 19 rows: the validity bitmap ends in a partial byte.
        for row in 0..19i64 {
            let text = format!("é{row}");
            let cells = [
                if row == 3 { Cell::Null } else { Cell::Text(&text) },
                Cell::Int(row * 1_000_000_007),
                if row % 2 == 0 { Cell::Int(row) } else { Cell::Double(row as f64 / 3.0) },
                if row == 18 { Cell::Null } else { Cell::Date(19_000 + row as i32) },
                Cell::Bool(row % 3 == 0),
            ];
            for (writer, cell) in writers.iter_mut().zip(cells) {
                writer.push(cell).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        let table = finish(writers).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(table.rows(), 19);
        let [id, n, x, day, ok] = &table.columns[..] else { panic!("five columns") };
        let Values::Text(ids) = &id.values else { panic!("text") };
        assert_eq!(ids.get(0), "é0");
        assert_eq!(ids.get(18), "é18");
        assert_eq!(ids.get(3), "", "a null's slot holds a default");
        assert!(!id.is_valid(3) && id.is_valid(4) && id.has_null());
        let Values::Int(ns) = &n.values else { panic!("int") };
        assert_eq!(ns[17], 17 * 1_000_000_007);
        assert!(!n.has_null() && n.is_valid(18));
        let Values::Double(xs) = &x.values else { panic!("double") };
        assert_eq!((xs[4], xs[5]), (4.0, 5.0 / 3.0));
        let Values::Date(days) = &day.values else { panic!("date") };
        assert_eq!(days[17], 19_017);
        assert!(!day.is_valid(18) && day.is_valid(17));
        let Values::Bool(oks) = &ok.values else { panic!("bool") };
        assert_eq!(oks.iter().filter(|b| **b == 1).count(), 7);
        assert!(!dir.join("1.valid").exists(), "a column without nulls keeps no bitmap");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn an_empty_table_maps_and_a_value_of_another_type_is_refused() {
        let dir = folder("empty");
        let mut writers = writers(&dir, &[("n".to_owned(), SqlType::Integer), ("t".to_owned(), SqlType::Text)])
            .unwrap_or_else(|e| panic!("{e}"));
        let refused = writers[0].push(Cell::Text("7")).err().unwrap_or_default();
        assert!(refused.contains("column `n` is BIGINT"), "{refused}");
        let table = finish(writers).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(table.rows(), 0);
        assert!(matches!(&table.columns[1].values, Values::Text(t) if t.is_empty()));
        let copied = Mapped::from_slice(&[3u32, 1, 2]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&copied[..], &[3, 1, 2]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
