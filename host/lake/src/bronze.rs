//! Bronze: sources landed as Parquet, values unchanged, with lineage columns
//! (`_source`, `_ingested_at`, `_run_id`), one partition per ingest date,
//! published by one commit for all tables.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::parts::PartWriter;
use super::{Lake, LakeError, Manifest, TableFiles};
use crate::sources::{BadRecord, CsvSource, OnBadRecord, Source, SourceError, SqliteSource};
use medallion_common::progress::{Measure, Task};
use medallion_common::work;

/// One source to land as one Bronze table.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// A CSV file.
    Csv {
        /// Bronze table name.
        table: String,
        /// The file.
        path: PathBuf,
        /// The header it must have, if declared.
        columns: Option<Vec<String>>,
        /// What a malformed record does.
        on_bad_record: OnBadRecord,
    },
    /// A table of a SQLite file.
    Sqlite {
        /// Bronze table name.
        table: String,
        /// The file.
        path: PathBuf,
        /// The table in it.
        source_table: String,
    },
}

impl SourceSpec {
    /// The Bronze table this source lands in.
    pub fn table(&self) -> &str {
        match self {
            SourceSpec::Csv { table, .. } | SourceSpec::Sqlite { table, .. } => table,
        }
    }

    fn size(&self) -> u64 {
        let path = match self {
            SourceSpec::Csv { path, .. } | SourceSpec::Sqlite { path, .. } => path,
        };
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    fn file_name(&self) -> String {
        let path = match self {
            SourceSpec::Csv { path, .. } | SourceSpec::Sqlite { path, .. } => path,
        };
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    fn open(&self) -> Result<Box<dyn Source>, SourceError> {
        Ok(match self {
            SourceSpec::Csv { path, columns, on_bad_record, .. } => {
                Box::new(CsvSource::open(path, columns.as_deref(), *on_bad_record)?)
            }
            SourceSpec::Sqlite { path, source_table, .. } => Box::new(SqliteSource::open(path, source_table)?),
        })
    }
}

/// How to run one ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The partition: `YYYY-MM-DD`.
    pub ingest_date: String,
    /// This run's id (part of every file path and of `_run_id`).
    pub run_id: String,
    /// Ingest time, microseconds since the epoch (`_ingested_at`).
    pub ingested_at_micros: i64,
    /// Rows per Parquet file before starting the next.
    pub rows_per_file: usize,
    /// Rows per Parquet row group: what a writer holds before it flushes,
    /// and the unit Silver reads and cleans at a time.
    pub row_group_rows: usize,
    /// Tables landed at once.
    pub workers: usize,
    /// Versions of each Bronze table kept (see `history.keep_runs`).
    pub keep_runs: usize,
}

/// What an ingest did.
#[derive(Debug, Clone, Default)]
pub struct BronzeReport {
    /// Per table, in name order.
    pub tables: Vec<TableReport>,
}

/// What happened to one table.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TableReport {
    /// Bronze table name.
    pub table: String,
    /// Rows landed.
    pub rows: u64,
    /// Records set aside in quarantine.
    pub quarantined: u64,
    /// Source bytes read.
    #[serde(rename = "source_bytes")]
    pub bytes: u64,
    /// The version of its Delta table committed (`None` for a table with
    /// no rows yet).
    pub delta_version: Option<u64>,
}

/// An ingest that failed: nothing was committed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A source could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The lake refused a write.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A stop was asked for.
    #[error(transparent)]
    Interrupted(#[from] medallion_common::cancel::Interrupted),
    /// A worker thread panicked.
    #[error(transparent)]
    Panicked(#[from] work::Panicked),
    /// A source's table name cannot name a lake table.
    #[error(
        "source {source_name}: {message}\n  hint: rename the file (its name, without the extension, names the table)"
    )]
    Name {
        /// The source.
        source_name: String,
        /// What is wrong.
        message: String,
    },
}

/// Lands every source as a Bronze table for `options.ingest_date` and commits
/// them together. On any error nothing is committed, and the previous commit
/// of that date stays what readers see.
pub fn ingest(lake: &Lake, sources: &[SourceSpec], options: &IngestOptions) -> Result<BronzeReport, IngestError> {
    for spec in sources {
        crate::delta::check_table_name(spec.table())
            .map_err(|message| IngestError::Name { source_name: spec.file_name(), message })?;
    }
    let partition = format!("ingest_date={}", options.ingest_date);
    // Largest first: the biggest table starts at once and the small ones
    // fill in around it.
    let mut queue: Vec<&SourceSpec> = sources.iter().collect();
    queue.sort_by_key(|spec| std::cmp::Reverse(spec.size()));
    let landed = work::map(&queue, options.workers, |_, spec| land(lake, spec, &partition, options))?;
    let mut tables = BTreeMap::new();
    let mut report = BronzeReport::default();
    for (spec, (files, table_report)) in queue.iter().zip(landed) {
        tables.insert(spec.table().to_owned(), files);
        report.tables.push(table_report);
    }
    report.tables.sort_by(|a, b| a.table.cmp(&b.table));
    medallion_common::cancel::check()?;
    let mut manifest = Manifest {
        run_id: options.run_id.clone(),
        committed_at: medallion_common::date::rfc3339(options.ingested_at_micros),
        tables,
    };
    manifest.commit(lake, "bronze", &partition, options.keep_runs)?;
    for table in &mut report.tables {
        table.delta_version = manifest.version_of(&format!("bronze/{}", table.table));
    }
    Ok(report)
}

/// Writes one source's files under this run's folder; commits nothing.
fn land(
    lake: &Lake,
    spec: &SourceSpec,
    partition: &str,
    options: &IngestOptions,
) -> Result<(TableFiles, TableReport), IngestError> {
    let table = spec.table();
    let source_name = spec.file_name();
    let source = spec.open()?;
    let lineage = Lineage::new(&source_name, &options.run_id, options.ingested_at_micros);
    let schema = lineage.extend(&source.schema());
    let folder = format!("bronze/{table}/{partition}");
    let mut writer =
        PartWriter::new(lake, folder, schema, options.rows_per_file, bronze_properties(options.row_group_rows))
            .with_suffix(&options.run_id);
    // Parsing and Parquet encoding run side by side: a reader thread hands
    // batches over a short queue (which bounds memory) to this thread.
    let (sender, receiver) = std::sync::mpsc::sync_channel::<RecordBatch>(4);
    let (read, written) = std::thread::scope(|scope| {
        let size = spec.size();
        let reader = scope.spawn(move || {
            let mut source = source;
            let mut bad = Vec::new();
            let task = Task::open("bronze", table, Some(size), Measure::Bytes);
            while let Some(batch) = source.next_batch()? {
                medallion_common::faults::panic_at("bronze-reader");
                if medallion_common::cancel::requested() {
                    return Ok((bad, source.bytes_read()));
                }
                bad.extend(source.take_bad_records());
                task.advance(batch.num_rows() as u64, Some(source.bytes_read()));
                if sender.send(batch).is_err() {
                    return Ok((bad, source.bytes_read()));
                }
            }
            task.finish();
            bad.extend(source.take_bad_records());
            Ok::<_, SourceError>((bad, source.bytes_read()))
        });
        let mut written = Ok(());
        for batch in receiver {
            written = lineage.append(&batch).and_then(|batch| writer.write(&batch));
            if written.is_err() {
                break;
            }
        }
        // A reader that panicked read part of the source at most: the table
        // would be truncated, so the ingest fails.
        let read = reader.join().map_err(|payload| work::Panicked::from_payload(payload.as_ref()));
        (read, written)
    });
    written?;
    medallion_common::cancel::check()?;
    let (bad, bytes_read) = read??;
    let (files, rows) = writer.finish()?;
    let quarantined = bad.len() as u64;
    let quarantine_files = if bad.is_empty() {
        Vec::new()
    } else {
        let folder = format!("quarantine/bronze/{table}/{partition}");
        let batch = bad_records_batch(&bad, &lineage)?;
        let mut writer =
            PartWriter::new(lake, folder, batch.schema(), usize::MAX, bronze_properties(options.row_group_rows))
                .with_suffix(&options.run_id);
        writer.write(&batch)?;
        writer.finish()?.0
    };
    tracing::info!(table, rows, quarantined, "landed in bronze");
    let report = TableReport { table: table.to_owned(), rows, quarantined, bytes: bytes_read, delta_version: None };
    Ok((
        TableFiles { source: source_name, files, rows, quarantine_files, quarantined, ..TableFiles::default() },
        report,
    ))
}

/// The lineage columns added to every Bronze row.
struct Lineage {
    source: String,
    run_id: String,
    ingested_at: i64,
}

impl Lineage {
    fn new(source: &str, run_id: &str, ingested_at: i64) -> Self {
        Lineage { source: source.to_owned(), run_id: run_id.to_owned(), ingested_at }
    }

    fn fields() -> [Field; 3] {
        [
            Field::new("_source", DataType::Utf8, false),
            Field::new("_ingested_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
            Field::new("_run_id", DataType::Utf8, false),
        ]
    }

    fn extend(&self, schema: &SchemaRef) -> SchemaRef {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(Self::fields());
        Arc::new(Schema::new(fields))
    }

    fn columns(&self, rows: usize) -> [ArrayRef; 3] {
        [
            Arc::new(StringArray::from(vec![self.source.as_str(); rows])),
            Arc::new(TimestampMicrosecondArray::from(vec![self.ingested_at; rows]).with_timezone("UTC")),
            Arc::new(StringArray::from(vec![self.run_id.as_str(); rows])),
        ]
    }

    fn append(&self, batch: &RecordBatch) -> Result<RecordBatch, LakeError> {
        let mut columns = batch.columns().to_vec();
        columns.extend(self.columns(batch.num_rows()));
        RecordBatch::try_new(self.extend(&batch.schema()), columns).map_err(|e| LakeError::Parquet {
            url: String::new(),
            path: self.source.clone(),
            message: e.to_string(),
        })
    }
}

fn bad_records_batch(bad: &[BadRecord], lineage: &Lineage) -> Result<RecordBatch, LakeError> {
    let mut line = UInt64Builder::new();
    let mut reason = StringBuilder::new();
    let mut detail = StringBuilder::new();
    let mut raw = StringBuilder::new();
    for record in bad {
        line.append_value(record.line);
        reason.append_value(record.reason);
        detail.append_value(&record.detail);
        raw.append_value(&record.raw);
    }
    let columns: Vec<ArrayRef> =
        vec![Arc::new(line.finish()), Arc::new(reason.finish()), Arc::new(detail.finish()), Arc::new(raw.finish())];
    let schema = Arc::new(Schema::new(vec![
        Field::new("_line", DataType::UInt64, false),
        Field::new("_reason", DataType::Utf8, false),
        Field::new("_detail", DataType::Utf8, false),
        Field::new("_raw", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(schema, columns).map_err(|e| LakeError::Parquet {
        url: String::new(),
        path: "quarantine".to_owned(),
        message: e.to_string(),
    })?;
    lineage.append(&batch)
}

/// Raw source columns are mostly high-cardinality text (ids, names, amounts):
/// building a dictionary for them costs a quarter of the ingest's CPU and is
/// then thrown away. Dictionaries only for the constant lineage columns,
/// where they are free.
fn bronze_properties(row_group_rows: usize) -> WriterProperties {
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_dictionary_enabled(false);
    for field in Lineage::fields() {
        properties = properties.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), true);
    }
    properties.build()
}
