//! CSV files as the reference writes them, read in batches of strings.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::{BATCH_ROWS, BadRecord, OnBadRecord, Source, SourceError};

/// A CSV file: header row, RFC 4180 quoting (fields may hold commas, quotes
/// and newlines), an empty field is null, every column a string.
pub struct CsvSource {
    file: PathBuf,
    reader: csv::Reader<CountingReader>,
    bytes: Arc<AtomicU64>,
    schema: SchemaRef,
    on_bad_record: OnBadRecord,
    bad: Vec<BadRecord>,
    record: csv::ByteRecord,
    /// Byte offset and line where the last record read starts.
    last_start: (u64, u64),
    done: bool,
}

impl CsvSource {
    /// Opens `file` and reads its header. With `expected`, the header must be
    /// exactly those names, in that order.
    pub fn open(file: &Path, expected: Option<&[String]>, on_bad_record: OnBadRecord) -> Result<Self, SourceError> {
        let io = |source| SourceError::Io { file: file.to_owned(), source };
        let bytes = Arc::new(AtomicU64::new(0));
        let inner = File::open(file).map_err(io)?;
        let counting = CountingReader { inner: BufReader::with_capacity(1 << 20, inner), bytes: bytes.clone() };
        let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(counting);
        let mut header = csv::ByteRecord::new();
        let has_header = reader.read_byte_record(&mut header).map_err(|e| SourceError::Csv {
            file: file.to_owned(),
            line: 1,
            message: e.to_string(),
        })?;
        if !has_header {
            return Err(SourceError::Empty { file: file.to_owned() });
        }
        let names: Vec<String> = header.iter().map(|f| String::from_utf8_lossy(f).trim().to_owned()).collect();
        check_header_names(file, &names)?;
        if let Some(expected) = expected
            && expected != names.as_slice()
        {
            return Err(SourceError::Header {
                file: file.to_owned(),
                expected: expected.join(", "),
                found: names.join(", "),
            });
        }
        let fields: Vec<Field> = names.iter().map(|n| Field::new(n, DataType::Utf8, true)).collect();
        Ok(CsvSource {
            file: file.to_owned(),
            reader,
            bytes,
            schema: Arc::new(Schema::new(fields)),
            on_bad_record,
            bad: Vec::new(),
            record: csv::ByteRecord::new(),
            last_start: (0, 0),
            done: false,
        })
    }

    /// The parser ends a quoted field silently at the end of the file; an odd
    /// number of quotes in the last record means its quote was never closed.
    fn check_last_record_closed(&self) -> Result<(), SourceError> {
        let (start, line) = self.last_start;
        let mut tail = Vec::new();
        let read = File::open(&self.file).and_then(|mut f| {
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(start))?;
            f.read_to_end(&mut tail)
        });
        read.map_err(|source| SourceError::Io { file: self.file.clone(), source })?;
        if tail.iter().filter(|&&b| b == b'"').count() % 2 == 1 {
            return Err(SourceError::UnterminatedQuote { file: self.file.clone(), line });
        }
        Ok(())
    }

    /// Checks one record; `Ok(false)` when it was set aside.
    fn accept(&mut self) -> Result<bool, SourceError> {
        let line = self.record.position().map_or(0, |p| p.line());
        let expected = self.schema.fields().len();
        let problem = if self.record.len() != expected {
            Some(SourceError::Ragged { file: self.file.clone(), line, expected, found: self.record.len() })
        } else {
            self.record.iter().enumerate().find_map(|(i, field)| {
                std::str::from_utf8(field).err().map(|e| SourceError::NotUtf8 {
                    file: self.file.clone(),
                    line,
                    column: i + 1,
                    name: self.schema.field(i).name().clone(),
                    byte: e.valid_up_to(),
                })
            })
        };
        let Some(problem) = problem else { return Ok(true) };
        if self.on_bad_record == OnBadRecord::Fail {
            return Err(problem);
        }
        let reason = if matches!(problem, SourceError::Ragged { .. }) { "ragged_row" } else { "not_utf8" };
        let raw = self.record.iter().map(String::from_utf8_lossy).collect::<Vec<_>>().join(",");
        self.bad.push(BadRecord { line, reason, detail: problem.to_string(), raw });
        Ok(false)
    }
}

impl Source for CsvSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, SourceError> {
        if self.done {
            return Ok(None);
        }
        let columns = self.schema.fields().len();
        let mut builders: Vec<StringBuilder> =
            (0..columns).map(|_| StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16)).collect();
        let mut rows = 0;
        while rows < BATCH_ROWS {
            let more = self.reader.read_byte_record(&mut self.record).map_err(|e| SourceError::Csv {
                file: self.file.clone(),
                line: e.position().map_or(0, |p| p.line()),
                message: e.to_string(),
            })?;
            if !more {
                self.done = true;
                self.check_last_record_closed()?;
                break;
            }
            if let Some(position) = self.record.position() {
                self.last_start = (position.byte(), position.line());
            }
            if !self.accept()? {
                continue;
            }
            for (builder, field) in builders.iter_mut().zip(self.record.iter()) {
                if field.is_empty() {
                    builder.append_null();
                } else {
                    // SAFETY: `accept` checked that every field is UTF-8.
                    builder.append_value(unsafe { std::str::from_utf8_unchecked(field) });
                }
            }
            rows += 1;
        }
        if rows == 0 {
            return Ok(None);
        }
        let arrays: Vec<ArrayRef> = builders.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        RecordBatch::try_new(self.schema.clone(), arrays).map(Some).map_err(|e| SourceError::Csv {
            file: self.file.clone(),
            line: 0,
            message: e.to_string(),
        })
    }

    fn take_bad_records(&mut self) -> Vec<BadRecord> {
        std::mem::take(&mut self.bad)
    }

    fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Every column needs a name of its own: an empty or repeated name is a
/// header that lost or gained a comma.
fn check_header_names(file: &Path, names: &[String]) -> Result<(), SourceError> {
    let problem = names.iter().enumerate().find_map(|(i, name)| {
        if name.is_empty() {
            Some(format!("column {} has no name", i + 1))
        } else if names[..i].contains(name) {
            Some(format!("column {} repeats the name `{name}`", i + 1))
        } else {
            None
        }
    });
    match problem {
        None => Ok(()),
        Some(problem) => {
            Err(SourceError::Csv { file: file.to_owned(), line: 1, message: format!("bad header: {problem}") })
        }
    }
}

/// Counts the bytes read, for progress and throughput.
struct CountingReader {
    inner: BufReader<File>,
    bytes: Arc<AtomicU64>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
