//! Committed tables read back from the lake for a SQL step: as a Parquet
//! scan for polars' streaming engine, or only the columns its queries name,
//! row group by row group on several threads, in table order.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use medallion_common::work;
use medallion_lake::{Lake, LakeError, ParquetTable};
use polars::prelude::{IntoLazy, LazyFrame, PlRefPath, ScanArgsParquet};

/// Table `name`'s `files` as a Parquet scan: in place on a local lake,
/// copied by `workers` threads into the folder `copy_to` first from any
/// other. `engine` makes an error of what polars or the file system says.
pub(crate) fn scan<E>(
    lake: &Lake,
    name: &str,
    files: &[String],
    copy_to: &Path,
    workers: usize,
    engine: impl Fn(String) -> E,
) -> Result<LazyFrame, E>
where
    E: From<LakeError> + From<work::Panicked> + Send,
{
    if files.is_empty() {
        // No file to scan: the table's (empty) columns as the lake has them.
        let (schema, batches) = named_columns::<E>(lake, files, 1, &[])?;
        return Ok(crate::frame::to_polars(&schema, &batches).map_err(|e| engine(e.to_string()))?.lazy());
    }
    let paths: Vec<PathBuf> = match lake.local_path("") {
        Some(_) => files.iter().filter_map(|f| lake.local_path(f)).collect(),
        None => {
            std::fs::create_dir_all(copy_to)
                .map_err(|e| engine(format!("scratch folder {}: {e}", copy_to.display())))?;
            let started = Instant::now();
            let copied = work::map(files, workers, |i, file| {
                let to = copy_to.join(format!("part-{i:05}.parquet"));
                lake.copy_to_local(file, &to)?;
                Ok::<_, E>(to)
            })?;
            tracing::info!(
                table = name,
                files = files.len(),
                seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
                "silver copied to the scratch folder"
            );
            copied
        }
    };
    let paths: Vec<PlRefPath> = paths.iter().map(|p| PlRefPath::from(p.to_string_lossy().as_ref())).collect();
    // The files are named, not globbed (a table's folder holds older versions' files too).
    let mut args = ScanArgsParquet { glob: false, ..Default::default() };
    args.hive_options.enabled = Some(false);
    LazyFrame::scan_parquet_files(paths.into(), args).map_err(|e| engine(e.to_string()))
}

/// The columns of `files` that some of `queries` name (all of them when a
/// query selects `*` or names none), read by `workers` threads.
pub(crate) fn named_columns<E>(
    lake: &Lake,
    files: &[String],
    workers: usize,
    queries: &[&str],
) -> Result<(SchemaRef, Vec<RecordBatch>), E>
where
    E: From<LakeError> + From<work::Panicked> + Send,
{
    let table = ParquetTable::open(lake, files, Arc::new(Schema::empty()))?;
    let columns = named(table.schema(), queries);
    let parts = work::map(table.row_groups(), workers, |_, group| -> Result<Vec<RecordBatch>, E> {
        Ok(table.read_columns(lake, group, 1 << 20, columns.as_deref())?.collect::<Result<_, _>>()?)
    })?;
    let batches: Vec<RecordBatch> = parts.into_iter().flatten().collect();
    let schema = match (batches.first(), columns) {
        (Some(batch), _) => batch.schema(),
        (None, Some(columns)) => {
            let indices: Vec<usize> = columns.iter().filter_map(|c| table.schema().index_of(c).ok()).collect();
            Arc::new(table.schema().project(&indices).map_err(|e| LakeError::Parquet {
                url: lake.url().to_owned(),
                path: files.first().cloned().unwrap_or_default(),
                message: e.to_string(),
            })?)
        }
        (None, None) => table.schema().clone(),
    };
    Ok((schema, batches))
}

/// The columns of `schema` that appear as words in `queries`, or `None`
/// (every column) when a query selects `*`, quotes a name, joins by
/// `NATURAL` or `USING` (names the words do not show), or names none.
fn named(schema: &SchemaRef, queries: &[&str]) -> Option<Vec<String>> {
    let unsure = |q: &str| {
        let upper = q.to_ascii_uppercase();
        (q.contains('*') && q.replace("(*)", "").contains('*'))
            || q.contains('"')
            || q.contains('`')
            || upper.contains("NATURAL")
            || upper.contains("USING")
    };
    if queries.iter().any(|q| unsure(q)) {
        return None;
    }
    let words: std::collections::BTreeSet<&str> =
        queries.iter().flat_map(|q| medallion_pipeline::sql_words(q)).collect();
    let named: Vec<String> =
        schema.fields().iter().map(|f| f.name().clone()).filter(|name| words.contains(name.as_str())).collect();
    (!named.is_empty()).then_some(named)
}
