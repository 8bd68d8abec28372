//! A Gold table ready to publish: its rows in memory, or spilled to a local
//! Arrow IPC file so that a computed table is not held while the others are
//! computed, and is read back batch by batch while it loads.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{ArrowError, SchemaRef};

use crate::cells::quote;

/// A Gold table ready to publish.
#[derive(Debug)]
pub struct GoldTable {
    /// Its name.
    pub name: String,
    /// Its columns.
    pub schema: SchemaRef,
    /// The columns that identify a row.
    pub key: Vec<String>,
    rows: u64,
    key_has_null: bool,
    held: Held,
}

#[derive(Debug)]
enum Held {
    Memory(Vec<RecordBatch>),
    Spilled(PathBuf),
}

impl GoldTable {
    /// A table whose rows are in memory.
    pub fn new(name: &str, schema: SchemaRef, key: Vec<String>, batches: Vec<RecordBatch>) -> Self {
        let mut nulls = KeyNulls::new(&schema, &key);
        batches.iter().for_each(|b| nulls.see(b));
        GoldTable {
            name: name.to_owned(),
            schema,
            rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
            key_has_null: nulls.found,
            key,
            held: Held::Memory(batches),
        }
    }

    /// Rows in the table.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The key as the store declares it: `PRIMARY KEY (...)`, or `UNIQUE
    /// (...)` when a key column holds a null (a primary key cannot, and the
    /// daily sales keep a row for orders without a date); empty without a
    /// key.
    pub fn key_constraint(&self) -> String {
        if self.key.is_empty() {
            return String::new();
        }
        let columns: Vec<String> = self.key.iter().map(|k| quote(k)).collect();
        format!("{} ({})", if self.key_has_null { "UNIQUE" } else { "PRIMARY KEY" }, columns.join(", "))
    }

    /// Whether a key column holds a null.
    pub fn key_has_null(&self) -> bool {
        self.key_has_null
    }

    /// The rows, batch by batch (read back from the spill file for a spilled
    /// table; an error says which file and why).
    pub fn batches(&self) -> Result<Box<dyn Iterator<Item = Result<RecordBatch, String>> + '_>, String> {
        match &self.held {
            Held::Memory(batches) => Ok(Box::new(batches.iter().cloned().map(Ok))),
            Held::Spilled(path) => {
                let unreadable = |e: &dyn std::fmt::Display| format!("its spilled rows `{}`: {e}", path.display());
                let file = File::open(path).map_err(|e| unreadable(&e))?;
                let reader =
                    StreamReader::try_new(BufReader::with_capacity(1 << 20, file), None).map_err(|e| unreadable(&e))?;
                Ok(Box::new(reader.map(move |b| b.map_err(|e| unreadable(&e)))))
            }
        }
    }
}

/// A Gold table written batch by batch to a local file as it is computed;
/// [`Spill::finish`] makes it a [`GoldTable`] that the stores read back
/// batch by batch. The file is the caller's to remove (with its folder).
pub struct Spill {
    name: String,
    schema: SchemaRef,
    key: Vec<String>,
    path: PathBuf,
    writer: StreamWriter<BufWriter<File>>,
    rows: u64,
    nulls: KeyNulls,
}

impl Spill {
    /// Starts the table `name` in a new file at `path`.
    pub fn create(path: &Path, name: &str, schema: SchemaRef, key: Vec<String>) -> Result<Self, ArrowError> {
        let file = File::create(path).map_err(|e| ArrowError::IoError(format!("`{}`: {e}", path.display()), e))?;
        let writer = StreamWriter::try_new(BufWriter::with_capacity(1 << 20, file), &schema)?;
        Ok(Spill {
            name: name.to_owned(),
            nulls: KeyNulls::new(&schema, &key),
            schema,
            key,
            path: path.to_owned(),
            writer,
            rows: 0,
        })
    }

    /// Appends `batch` (of the table's columns).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        self.writer.write(batch)?;
        self.rows += batch.num_rows() as u64;
        self.nulls.see(batch);
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The table, its rows on disk.
    pub fn finish(mut self) -> Result<GoldTable, ArrowError> {
        self.writer.finish()?;
        let file = self.writer.into_inner()?;
        file.into_inner().map_err(|e| ArrowError::IoError(e.to_string(), e.into_error()))?.sync_data().ok();
        Ok(GoldTable {
            name: self.name,
            schema: self.schema,
            key: self.key,
            rows: self.rows,
            key_has_null: self.nulls.found,
            held: Held::Spilled(self.path),
        })
    }
}

/// Whether the key columns of the batches seen hold a null.
struct KeyNulls {
    columns: Vec<usize>,
    found: bool,
}

impl KeyNulls {
    fn new(schema: &SchemaRef, key: &[String]) -> Self {
        KeyNulls { columns: key.iter().filter_map(|k| schema.index_of(k).ok()).collect(), found: false }
    }

    fn see(&mut self, batch: &RecordBatch) {
        self.found |= self.columns.iter().any(|&i| batch.column(i).null_count() > 0);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, StringArray};

    use super::*;

    #[test]
    fn a_spilled_table_reads_back_as_written() {
        let dir = std::env::temp_dir().join(format!("medallion-spill-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let batch = |from: i64, key_null: bool| {
            let keys: Vec<Option<i64>> = (from..from + 3).map(|k| (!key_null || k != from).then_some(k)).collect();
            RecordBatch::try_from_iter_with_nullable([
                ("k", Arc::new(Int64Array::from(keys)) as ArrayRef, true),
                ("v", Arc::new(StringArray::from(vec!["a", "b", "c"])), false),
            ])
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let batches = [batch(0, false), batch(3, true), batch(6, false)];
        let mut spill = Spill::create(&dir.join("t.arrows"), "t", batches[0].schema(), vec!["k".to_owned()])
            .unwrap_or_else(|e| panic!("{e}"));
        for b in &batches {
            spill.write(b).unwrap_or_else(|e| panic!("{e}"));
        }
        let table = spill.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((table.rows(), table.key_has_null()), (9, true));
        assert_eq!(table.key_constraint(), r#"UNIQUE ("k")"#);
        let read: Vec<RecordBatch> = table
            .batches()
            .unwrap_or_else(|e| panic!("{e}"))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read, batches);
        let memory = GoldTable::new("t", batches[0].schema(), vec!["k".to_owned()], batches[..1].to_vec());
        assert_eq!((memory.rows(), memory.key_has_null()), (3, false));
        assert_eq!(memory.key_constraint(), r#"PRIMARY KEY ("k")"#);
        std::fs::remove_file(dir.join("t.arrows")).unwrap_or_else(|e| panic!("{e}"));
        let gone = table.batches().err().unwrap_or_default();
        assert!(gone.contains("t.arrows"), "{gone}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
