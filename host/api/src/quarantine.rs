//! A sample of the rows the current Silver quarantined, a few per table and
//! reason, read from the lake's quarantine files: what the quarantine page
//! shows beside the run log's counts.
//!
//! The lake keeps the quarantine of the Silver it holds (the latest run that
//! built Silver), so a sample exists for that run only. It is read once per
//! Silver run, by the thread that watches the Gold store, after Gold is
//! reloaded; the work is bounded (the first file of each kind per table, at
//! most [`SCAN_ROWS`] rows of it, [`REASONS`] reasons): a page never touches
//! the lake.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, RecordBatch, StringArray, UInt64Array};
use arrow_cast::cast;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::DataType;
use arrow_schema::Schema;
use medallion_lake::{Lake, LakeError, Manifest, ParquetTable, SILVER_PARTITION, SILVER_ZONE};

/// Rows kept per table and reason.
pub const PER_REASON: usize = 5;
/// Reasons sampled per table (a plugin chooses its reasons: a bound).
pub const REASONS: usize = 50;
/// Rows scanned per quarantine file, at most.
const SCAN_ROWS: usize = 200_000;
/// The longest value or reason shown, in characters.
const VALUE_CHARS: usize = 120;

/// The sample of one Silver run.
#[derive(Debug, Default)]
pub struct Sample {
    /// The run that built the Silver the lake holds.
    pub run_id: String,
    /// Per table (in name order): its Bronze source and the sampled rows.
    pub tables: BTreeMap<String, TableSample>,
}

/// One table's sample.
#[derive(Debug, Default)]
pub struct TableSample {
    /// The source its Bronze rows came from.
    pub source: String,
    /// Per reason, at most [`PER_REASON`] rows, in the files' order.
    pub reasons: BTreeMap<String, Vec<SampleRow>>,
}

/// A quarantined row.
#[derive(Debug, Clone)]
pub struct SampleRow {
    /// Its position in the Bronze table (`_row`, from 0).
    pub position: Option<u64>,
    /// Its columns (without `_reason` and `_row`) as text; `None` for null.
    pub values: Vec<(String, Option<String>)>,
}

/// The quarantine sample of the Silver the lake holds (`None` when it has
/// no Silver yet): `current` again when it is of the same run.
pub fn read_if_new(lake: &Lake, current: Option<&Arc<Sample>>) -> Result<Option<Arc<Sample>>, LakeError> {
    let Some(manifest) = Manifest::read(lake, SILVER_ZONE, SILVER_PARTITION)? else { return Ok(None) };
    if let Some(current) = current.filter(|c| c.run_id == manifest.run_id) {
        return Ok(Some(current.clone()));
    }
    read(lake, &manifest).map(|sample| Some(Arc::new(sample)))
}

/// The sample of the quarantine files `manifest` names. Bounded work: per
/// table, the first file of each kind (`clean-`, `checks-`, `nulled-`),
/// and in it at most [`SCAN_ROWS`] rows, row group by row group.
fn read(lake: &Lake, manifest: &Manifest) -> Result<Sample, LakeError> {
    let mut sample = Sample { run_id: manifest.run_id.clone(), tables: BTreeMap::new() };
    for (table, files) in &manifest.tables {
        let mut taken = TableSample { source: files.source.clone(), reasons: BTreeMap::new() };
        let mut kinds_read = Vec::new();
        for file in &files.quarantine_files {
            let kind = quarantine_kind(file);
            if kinds_read.contains(&kind) {
                continue;
            }
            kinds_read.push(kind);
            // A `nulled` file holds values that became null in rows that
            // were kept: shown apart from the rows quarantined.
            let nulled = kind == "nulled";
            let parquet = ParquetTable::open(lake, std::slice::from_ref(file), Arc::new(Schema::empty()))?;
            let mut scanned = 0;
            'groups: for group in parquet.row_groups() {
                for batch in parquet.read(lake, group, 8192)? {
                    let batch = batch?;
                    scanned += batch.num_rows();
                    take_rows(&batch, nulled, &mut taken.reasons);
                    if scanned >= SCAN_ROWS {
                        break 'groups;
                    }
                }
            }
        }
        if !taken.reasons.is_empty() {
            sample.tables.insert(table.clone(), taken);
        }
    }
    Ok(sample)
}

/// The kind of a quarantine file: the Delta table it is in
/// (`quarantine/silver/<table>/<kind>/part-...`), or, in a lake written
/// before Delta, its name's prefix (`.../run=<id>/<kind>-NNNNN.parquet`).
fn quarantine_kind(file: &str) -> &str {
    let (folder, name) = file.rsplit_once('/').unwrap_or(("", file));
    match name.split('-').next().unwrap_or(name) {
        "part" => folder.rsplit('/').next().unwrap_or(folder),
        prefix => prefix,
    }
}

/// What a reason is called when its rows were kept with a value nulled.
pub const NULLED: &str = " (value nulled, row kept)";

/// Adds `batch`'s rows to the reasons that still want some (`nulled`: rows
/// kept with a value set to null, whose reasons get [`NULLED`] added).
fn take_rows(batch: &RecordBatch, nulled: bool, reasons: &mut BTreeMap<String, Vec<SampleRow>>) {
    // Text and positions as whichever Arrow type wrote them.
    let as_type = |name: &str, to: &DataType| batch.column_by_name(name).and_then(|c| cast(c, to).ok());
    let Some(reason) = as_type("_reason", &DataType::Utf8) else { return };
    let Some(reason) = reason.as_any().downcast_ref::<StringArray>() else { return };
    let position = as_type("_row", &DataType::UInt64);
    let position = position.as_ref().and_then(|c| c.as_any().downcast_ref::<UInt64Array>());
    let schema = batch.schema();
    let shown: Vec<usize> =
        (0..batch.num_columns()).filter(|&i| !matches!(schema.field(i).name().as_str(), "_reason" | "_row")).collect();
    let options = FormatOptions::default();
    let formatters: Vec<Option<ArrayFormatter<'_>>> =
        shown.iter().map(|&i| ArrayFormatter::try_new(batch.column(i).as_ref(), &options).ok()).collect();
    for row in 0..batch.num_rows() {
        // A null reason is counted as `unknown` by the stages.
        let why = shorten(if reason.is_valid(row) { reason.value(row) } else { "unknown" });
        let why = if nulled { format!("{why}{NULLED}") } else { why };
        if !reasons.contains_key(&why) && reasons.len() >= REASONS {
            continue;
        }
        let rows = reasons.entry(why).or_default();
        if rows.len() >= PER_REASON {
            continue;
        }
        let values = shown
            .iter()
            .zip(&formatters)
            .map(|(&column, formatter)| {
                let name = schema.field(column).name().clone();
                let value = match formatter {
                    Some(f) if batch.column(column).is_valid(row) => Some(shorten(&f.value(row).to_string())),
                    _ => None,
                };
                (name, value)
            })
            .collect();
        let position = position.filter(|p| p.is_valid(row)).map(|p| p.value(row));
        rows.push(SampleRow { position, values });
    }
}

/// `text` cut to [`VALUE_CHARS`] characters.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(VALUE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::ArrayRef;
    use arrow_schema::Field;

    use super::*;

    #[test]
    fn a_file_is_of_the_kind_of_its_table_or_of_its_old_name() {
        assert_eq!(
            quarantine_kind("quarantine/silver/orders/nulled/part-00000-20261124T0102Z-00042.parquet"),
            "nulled"
        );
        assert_eq!(quarantine_kind("quarantine/silver/orders/current/run=x/checks-00000.parquet"), "checks");
    }

    #[test]
    fn a_few_rows_are_kept_per_reason_with_their_position() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("_reason", DataType::Utf8, true),
            Field::new("_row", DataType::UInt64, false),
        ]);
        let ids: Vec<Option<String>> = (0..10).map(|i| (i != 3).then(|| format!("c{i}"))).collect();
        let why: Vec<&str> = (0..10).map(|i| if i % 5 == 0 { "bad_id" } else { "duplicate_key" }).collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(StringArray::from(why)),
            Arc::new(UInt64Array::from_iter_values(100..110)),
        ];
        let batch = RecordBatch::try_new(Arc::new(schema), columns).expect("batch");
        let mut reasons = BTreeMap::new();
        take_rows(&batch, false, &mut reasons);
        assert_eq!(reasons["bad_id"].len(), 2);
        assert_eq!(reasons["duplicate_key"].len(), PER_REASON);
        let first = &reasons["duplicate_key"][0];
        assert_eq!(first.position, Some(101));
        assert_eq!(first.values, vec![("id".to_owned(), Some("c1".to_owned()))]);
        assert_eq!(reasons["duplicate_key"][2].values[0].1, None, "a null stays a null");
    }

    #[test]
    fn values_nulled_in_kept_rows_are_told_apart() {
        let schema =
            Schema::new(vec![Field::new("value", DataType::Utf8, true), Field::new("_reason", DataType::Utf8, true)]);
        let columns: Vec<ArrayRef> =
            vec![Arc::new(StringArray::from(vec!["31/12/2023"])), Arc::new(StringArray::from(vec!["bad_date"]))];
        let batch = RecordBatch::try_new(Arc::new(schema), columns).expect("batch");
        let mut reasons = BTreeMap::new();
        take_rows(&batch, true, &mut reasons);
        assert_eq!(reasons.keys().collect::<Vec<_>>(), [&format!("bad_date{NULLED}")]);
        assert_eq!(reasons[&format!("bad_date{NULLED}")][0].position, None, "no `_row` column: no position");
    }

    #[test]
    fn reasons_are_bounded_and_a_null_reason_is_unknown() {
        let schema = Schema::new(vec![Field::new("_reason", DataType::Utf8, true)]);
        let why: Vec<Option<String>> = (0..REASONS + 10).map(|i| (i > 0).then(|| format!("bad {i}"))).collect();
        let batch =
            RecordBatch::try_new(Arc::new(schema), vec![Arc::new(StringArray::from(why)) as ArrayRef]).expect("batch");
        let mut reasons = BTreeMap::new();
        take_rows(&batch, false, &mut reasons);
        assert_eq!(reasons.len(), REASONS);
        assert!(reasons.contains_key("unknown"), "{:?}", reasons.keys());
    }

    #[test]
    fn long_values_are_cut() {
        assert_eq!(shorten("abc"), "abc");
        let long = "é".repeat(VALUE_CHARS + 5);
        assert_eq!(shorten(&long).chars().count(), VALUE_CHARS + 1);
    }
}
