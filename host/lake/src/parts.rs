//! Parquet in the lake: tables written as numbered part files, and read back
//! row group by row group so that a stage streams instead of loading tables.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::{Buf, Bytes};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::FOOTER_SIZE;
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{ChunkReader, Length};

use super::delta::storable_type;
use super::store::LakeFile;
use super::{Lake, LakeError};

/// Writes Parquet files of at most `rows_per_file` rows into a folder.
pub struct PartWriter<'a> {
    lake: &'a Lake,
    folder: String,
    suffix: String,
    /// The columns as given, as stored (see [`storable_type`]), and
    /// whether the two differ.
    given: SchemaRef,
    schema: SchemaRef,
    casts: bool,
    properties: WriterProperties,
    rows_per_file: usize,
    current: Option<(String, ArrowWriter<LakeFile<'a>>)>,
    rows_in_current: usize,
    files: Vec<String>,
    rows: u64,
}

impl<'a> PartWriter<'a> {
    /// A writer of `folder/part-NNNNN.parquet` files. Columns of types some
    /// Delta readers lack are stored as one they all read
    /// ([`storable_type`]: unsigned integers as wider signed ones, ...).
    pub fn new(
        lake: &'a Lake,
        folder: String,
        schema: SchemaRef,
        rows_per_file: usize,
        properties: WriterProperties,
    ) -> Self {
        let stored: Vec<arrow_schema::Field> =
            schema.fields().iter().map(|f| f.as_ref().clone().with_data_type(storable_type(f.data_type()))).collect();
        let stored = Arc::new(arrow_schema::Schema::new_with_metadata(stored, schema.metadata().clone()));
        PartWriter {
            lake,
            folder,
            suffix: String::new(),
            casts: *stored != *schema,
            schema: stored,
            given: schema,
            properties,
            rows_per_file,
            current: None,
            rows_in_current: 0,
            files: Vec::new(),
            rows: 0,
        }
    }

    /// Names the files `part-NNNNN-<suffix>.parquet` (the run's id: a
    /// table's folder holds several runs' files).
    pub fn with_suffix(mut self, suffix: &str) -> Self {
        self.suffix = format!("-{suffix}");
        self
    }

    fn parquet_error(&self, e: impl std::fmt::Display) -> LakeError {
        LakeError::Parquet { url: self.lake.url().to_owned(), path: self.folder.clone(), message: e.to_string() }
    }

    /// Appends a batch (of the writer's schema).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), LakeError> {
        if self.current.is_none() {
            let path = format!("{}/part-{:05}{}.parquet", self.folder, self.files.len(), self.suffix);
            let file = self.lake.create(&path)?;
            let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(self.properties.clone()))
                .map_err(|e| self.parquet_error(e))?;
            self.current = Some((path, writer));
        }
        let stored;
        let batch = if !self.casts {
            batch
        } else {
            stored = self.stored(batch)?;
            &stored
        };
        if let Some((_, writer)) = self.current.as_mut() {
            writer.write(batch).map_err(|e| LakeError::Parquet {
                url: self.lake.url().to_owned(),
                path: self.folder.clone(),
                message: e.to_string(),
            })?;
        }
        self.rows_in_current += batch.num_rows();
        self.rows += batch.num_rows() as u64;
        if self.rows_in_current >= self.rows_per_file {
            self.flush()?;
        }
        Ok(())
    }

    /// `batch` with its columns cast to the stored types (a value that does
    /// not fit, an unsigned one past the signed range, is an error).
    fn stored(&self, batch: &RecordBatch) -> Result<RecordBatch, LakeError> {
        let same =
            |a: &arrow_schema::Field, b: &arrow_schema::Field| a.name() == b.name() && a.data_type() == b.data_type();
        let schema = batch.schema();
        if schema.fields().len() != self.given.fields().len()
            || !schema.fields().iter().zip(self.given.fields()).all(|(a, b)| same(a, b))
        {
            return Err(self.parquet_error(format!(
                "a batch's schema differs from the file's: {schema} instead of {}",
                self.given
            )));
        }
        let options = arrow_cast::CastOptions { safe: false, ..Default::default() };
        let columns = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(column, field)| arrow_cast::cast_with_options(column, field.data_type(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.parquet_error(format!("a column cannot be stored as Delta readers read it: {e}")))?;
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| self.parquet_error(e))
    }

    fn flush(&mut self) -> Result<(), LakeError> {
        let Some((path, writer)) = self.current.take() else { return Ok(()) };
        writer.into_inner().map_err(|e| self.parquet_error(e))?.finish()?;
        self.files.push(path);
        self.rows_in_current = 0;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Closes the last file; returns the files written and the rows.
    pub fn finish(mut self) -> Result<(Vec<String>, u64), LakeError> {
        self.flush()?;
        Ok((self.files, self.rows))
    }
}

/// Typed tables (Silver, quarantine): snappy, dictionaries where they pay,
/// row groups of at most `row_group_rows` rows.
pub fn table_properties(row_group_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(row_group_rows))
        .build()
}

/// One row group of one file: the unit a stage reads at a time.
#[derive(Debug, Clone)]
pub struct RowGroup {
    /// The file, lake-relative.
    pub file: String,
    /// Its index in the file.
    pub index: usize,
    /// Its rows.
    pub rows: u64,
    /// Rows in all the row groups before it (in file order): the position of
    /// its first row in the table.
    pub offset: u64,
}

/// A table's Parquet files, their footers read once; a row group's bytes
/// are fetched from the lake when it is read, so that memory holds the row
/// groups being read, not the files.
pub struct ParquetTable {
    files: Vec<OpenFile>,
    groups: Vec<RowGroup>,
    schema: SchemaRef,
}

struct OpenFile {
    path: String,
    len: u64,
    metadata: ArrowReaderMetadata,
}

impl ParquetTable {
    /// Opens `files` (in order) and lists their row groups.
    pub fn open(lake: &Lake, files: &[String], empty_schema: SchemaRef) -> Result<Self, LakeError> {
        let mut opened = Vec::with_capacity(files.len());
        let mut groups = Vec::new();
        let mut offset = 0;
        for file in files {
            let error = |e: &dyn std::fmt::Display| LakeError::Parquet {
                url: lake.url().to_owned(),
                path: file.clone(),
                message: e.to_string(),
            };
            let len = lake.size(file)?;
            let footer = FOOTER_SIZE as u64;
            if len < footer + 4 {
                return Err(error(&format!("{len} bytes is too short for a Parquet file")));
            }
            // The file's end, in one read when its metadata fits (it does
            // for the lake's own files), else a second read for the rest.
            let guess = len.min(TAIL_GUESS);
            let tail = lake.get_range(file, len - guess..len)?;
            let last: [u8; FOOTER_SIZE] = tail[tail.len().saturating_sub(FOOTER_SIZE)..]
                .try_into()
                .map_err(|_| error(&"short read of the footer"))?;
            let metadata_len = FooterTail::try_new(&last).map_err(|e| error(&e))?.metadata_length() as u64;
            if metadata_len + footer + 4 > len {
                return Err(error(&format!("its footer says {metadata_len} bytes of metadata in a {len}-byte file")));
            }
            let encoded = if metadata_len + footer <= guess {
                tail.slice((guess - footer - metadata_len) as usize..(guess - footer) as usize)
            } else {
                lake.get_range(file, len - footer - metadata_len..len - footer)?
            };
            let decoded = ParquetMetaDataReader::decode_metadata(&encoded).map_err(|e| error(&e))?;
            let metadata = ArrowReaderMetadata::try_new(Arc::new(decoded), ArrowReaderOptions::default())
                .map_err(|e| error(&e))?;
            for (index, group) in metadata.metadata().row_groups().iter().enumerate() {
                let rows = group.num_rows() as u64;
                groups.push(RowGroup { file: file.clone(), index, rows, offset });
                offset += rows;
            }
            opened.push(OpenFile { path: file.clone(), len, metadata });
        }
        let schema = opened.first().map(|f| f.metadata.schema().clone()).unwrap_or(empty_schema);
        Ok(ParquetTable { files: opened, groups, schema })
    }

    /// The row groups, in table order.
    pub fn row_groups(&self) -> &[RowGroup] {
        &self.groups
    }

    /// Each file with its bytes and rows, in order.
    pub fn files(&self) -> Vec<(String, u64, u64)> {
        self.files
            .iter()
            .map(|file| {
                let rows = self.groups.iter().filter(|g| g.file == file.path).map(|g| g.rows).sum();
                (file.path.clone(), file.len, rows)
            })
            .collect()
    }

    /// The files' Arrow schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows in all files.
    pub fn rows(&self) -> u64 {
        self.groups.iter().map(|g| g.rows).sum()
    }

    /// Reads one row group in batches of at most `batch_rows`.
    pub fn read(
        &self,
        lake: &Lake,
        group: &RowGroup,
        batch_rows: usize,
    ) -> Result<impl Iterator<Item = Result<RecordBatch, LakeError>> + use<>, LakeError> {
        self.read_columns(lake, group, batch_rows, None)
    }

    /// Reads one row group, only `columns` (all when `None`): the bytes of
    /// those columns' chunks are fetched, then decoded batch by batch.
    pub fn read_columns(
        &self,
        lake: &Lake,
        group: &RowGroup,
        batch_rows: usize,
        columns: Option<&[String]>,
    ) -> Result<impl Iterator<Item = Result<RecordBatch, LakeError>> + use<>, LakeError> {
        let error = |e: &dyn std::fmt::Display| LakeError::Parquet {
            url: lake.url().to_owned(),
            path: group.file.clone(),
            message: e.to_string(),
        };
        let file =
            self.files.iter().find(|f| f.path == group.file).ok_or_else(|| error(&"not a file of this table"))?;
        let parquet_schema = file.metadata.metadata().file_metadata().schema_descr();
        let mask = match columns {
            Some(names) => ProjectionMask::columns(parquet_schema, names.iter().map(String::as_str)),
            None => ProjectionMask::all(),
        };
        let chunks = file.metadata.metadata().row_group(group.index).columns();
        let ranges =
            chunks.iter().enumerate().filter(|(leaf, _)| mask.leaf_included(*leaf)).map(|(_, c)| c.byte_range());
        let (start, end) = ranges.fold((u64::MAX, 0), |(lo, hi), (at, len)| (lo.min(at), hi.max(at + len)));
        let bytes = if start < end { lake.get_range(&group.file, start..end)? } else { Bytes::new() };
        let part = FilePart { start: start.min(end), bytes, len: file.len };
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(part, file.metadata.clone())
            .with_projection(mask)
            .with_row_groups(vec![group.index])
            .with_batch_size(batch_rows)
            .build()
            .map_err(|e| error(&e))?;
        let (url, path) = (lake.url().to_owned(), group.file.clone());
        Ok(reader.map(move |batch| {
            batch.map_err(|e| LakeError::Parquet { url: url.clone(), path: path.clone(), message: e.to_string() })
        }))
    }
}

/// Bytes read from a file's end at open: its footer and, usually, all its
/// metadata.
const TAIL_GUESS: u64 = 64 << 10;

/// The bytes of a file from `start` on (as many as were fetched), read as
/// the file itself: the reader asks only for the row group's chunks.
struct FilePart {
    start: u64,
    bytes: Bytes,
    len: u64,
}

impl Length for FilePart {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for FilePart {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(self.get_bytes(start, (self.start + self.bytes.len() as u64).saturating_sub(start) as usize)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let from = start.checked_sub(self.start).map(|o| o as usize);
        match from {
            Some(from) if from + length <= self.bytes.len() => Ok(self.bytes.slice(from..from + length)),
            _ => Err(parquet::errors::ParquetError::General(format!(
                "read of {length} bytes at {start} outside the fetched {} bytes at {}",
                self.bytes.len(),
                self.start
            ))),
        }
    }
}
