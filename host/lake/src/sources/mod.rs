//! Sources read into Arrow batches with their values unchanged: CSV files
//! (RFC 4180, header row, empty field = null, every column a string) and
//! SQLite tables (columns typed as the table declares them).
//!
//! A malformed record is an error that names the file, the line and the
//! column, unless the source says `on_bad_record: quarantine`, in which case
//! the record is set aside with that position and the reason.
//!
//! Not for: casting or validating values (cleaning plugins do that).

mod csv_file;
mod sqlite;

use std::path::PathBuf;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

pub use csv_file::CsvSource;
pub use sqlite::{SqliteSource, tables as sqlite_tables};

/// Rows per batch read from a source.
pub const BATCH_ROWS: usize = 65_536;

/// What to do with a malformed record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBadRecord {
    /// Stop with an error that says where (the default).
    #[default]
    Fail,
    /// Set the record aside in quarantine, with its position and reason.
    Quarantine,
}

/// A record that could not be read as a row, kept for quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Line where the record starts (the header is line 1).
    pub line: u64,
    /// Why it was set aside: `ragged_row` or `not_utf8`.
    pub reason: &'static str,
    /// What is wrong, in words.
    pub detail: String,
    /// The record's raw text (invalid UTF-8 replaced).
    pub raw: String,
}

/// A source read batch by batch.
pub trait Source: Send {
    /// The schema of every batch.
    fn schema(&self) -> SchemaRef;
    /// The next batch, `None` at the end.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, SourceError>;
    /// Records set aside so far (quarantine mode); drains them.
    fn take_bad_records(&mut self) -> Vec<BadRecord> {
        Vec::new()
    }
    /// Bytes read so far, for progress.
    fn bytes_read(&self) -> u64;
}

/// A source that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be opened or read.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is empty: not even a header.
    #[error("{}: the file is empty; a CSV source needs a header row", file.display())]
    Empty {
        /// The file.
        file: PathBuf,
    },
    /// The header is not the one the pipeline declares.
    #[error(
        "{}:1: the header is [{found}], expected [{expected}]\n  hint: fix the file, or the source's `columns` in pipeline.yaml",
        file.display()
    )]
    Header {
        /// The file.
        file: PathBuf,
        /// The declared columns.
        expected: String,
        /// The columns found.
        found: String,
    },
    /// A record with a different number of fields than the header.
    #[error(
        "{}:{line}: the record has {found} fields, the header has {expected}\n  hint: check the quoting of this line (an unbalanced quote swallows commas and newlines), or set `on_bad_record: quarantine` on the source",
        file.display()
    )]
    Ragged {
        /// The file.
        file: PathBuf,
        /// Line where the record starts.
        line: u64,
        /// Fields in the header.
        expected: usize,
        /// Fields in the record.
        found: usize,
    },
    /// A quoted field still open at the end of the file.
    #[error(
        "{}:{line}: a quoted field opened in the record starting here is never closed, so it swallows the rest of the file\n  hint: find the stray `\"` on this line and double it (`\"\"`) or close the quote"
    , file.display())]
    UnterminatedQuote {
        /// The file.
        file: PathBuf,
        /// Line where the record starts.
        line: u64,
    },
    /// A field that is not valid UTF-8.
    #[error(
        "{}:{line}: column {column} (`{name}`) is not valid UTF-8 (byte {byte} of the field)\n  hint: convert the file to UTF-8 (iconv -f LATIN1 -t UTF-8), or set `on_bad_record: quarantine` on the source",
        file.display()
    )]
    NotUtf8 {
        /// The file.
        file: PathBuf,
        /// Line where the record starts.
        line: u64,
        /// 1-based field number.
        column: usize,
        /// The header's name for it.
        name: String,
        /// Offset of the first invalid byte in the field.
        byte: usize,
    },
    /// The CSV parser gave up.
    #[error("{}:{line}: {message}", file.display())]
    Csv {
        /// The file.
        file: PathBuf,
        /// Line, when known.
        line: u64,
        /// What the parser said.
        message: String,
    },
    /// The SQLite file or table could not be read.
    #[error("{} (table `{table}`): {message}", file.display())]
    Sqlite {
        /// The file.
        file: PathBuf,
        /// The table.
        table: String,
        /// What SQLite said.
        message: String,
    },
}
