//! Gold: each table is a SQL step over Silver (polars SQL, on polars'
//! streaming engine over Parquet scans of the committed Silver files) that
//! shapes its input, then a KPI plugin that appends the business columns;
//! columns whose name starts with `_` are working columns for the plugin and
//! are not stored. Each table is spilled to the run's scratch folder as it
//! is computed, and the tables are then published to the Gold store in one
//! transaction (see `medallion_store`), read back batch by batch.
//!
//! Memory: a query's group-bys and joins spill to disk past the run's
//! budget (polars' out-of-core engine); what a table holds is its query's
//! result and, for a plugin that asks for whole-input columns (ranks,
//! totals), that result with them.
//!
//! Not for: what any KPI means (the plugins and `pipeline.yaml` say that).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use polars::prelude::{DataFrame, DataType, Engine, IntoLazy, LazyFrame, col, lit};

use crate::frame;
use medallion_common::progress::{Measure, Task};
use medallion_common::work;
use medallion_lake::{Lake, LakeError, Manifest};
use medallion_pipeline::{GoldSpec, GoldTableSpec, PluginStep, SilverSpec};
use medallion_plugin::{Catalog, Instance, Limits, LoadedPlugin, PluginError};
use medallion_store::PluginUsed;
use medallion_store::{GoldTable, Spill};

/// How to compute Gold.
#[derive(Debug, Clone)]
pub struct GoldOptions {
    /// Threads copying Silver from an HDFS lake.
    pub workers: usize,
    /// Rows per batch pushed to a plugin.
    pub batch_rows: usize,
    /// Per-instance plugin limits.
    pub limits: Limits,
    /// The run's memory budget, bytes: how many ranges a query with a
    /// `split_by` column runs over.
    pub memory: u64,
    /// A folder of the run's scratch space (see
    /// `medallion_common::scratch`): computed tables, and Silver copied from
    /// an HDFS lake.
    pub spill: PathBuf,
    /// Read the Silver this run committed (kept in the Delta tables'
    /// history) instead of the current one.
    pub silver_run: Option<String>,
}

/// What computing one Gold table did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GoldTableReport {
    /// The table.
    pub table: String,
    /// Its rows.
    pub rows: u64,
    /// The Silver tables its SQL read.
    pub reads: Vec<String>,
    /// The KPI plugin.
    pub plugin: Option<PluginUsed>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// A Gold build that failed: nothing was published.
#[derive(Debug, thiserror::Error)]
pub enum GoldError {
    /// The `gold:` section cannot be run.
    #[error("gold: {0}")]
    Config(String),
    /// A KPI plugin failed.
    #[error("gold table `{table}`: {source}")]
    Plugin {
        /// The table.
        table: String,
        /// What the plugin did.
        source: PluginError,
    },
    /// polars or the Arrow bridge failed.
    #[error("gold table `{table}`: {message}")]
    Engine {
        /// The table.
        table: String,
        /// What failed.
        message: String,
    },
    /// The lake failed.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A stop was asked for.
    #[error(transparent)]
    Interrupted(#[from] medallion_common::cancel::Interrupted),
    /// A worker thread panicked.
    #[error(transparent)]
    Panicked(#[from] work::Panicked),
}

/// Computes every Gold table from the committed Silver. Publishing is the
/// caller's (one store transaction for all of them).
pub fn compute(
    lake: &Lake,
    spec: &GoldSpec,
    silver: &SilverSpec,
    catalog: &Catalog,
    options: &GoldOptions,
) -> Result<(Vec<GoldTable>, Vec<GoldTableReport>), GoldError> {
    let manifest = committed_silver(lake, options)?;
    // Every Silver table any Gold table reads, read row group by row group
    // on all cores.
    let needed = needed(spec, silver, &manifest)?;
    let started = Instant::now();
    let mut sources: HashMap<String, Source> = HashMap::new();
    for read in &needed {
        let committed = &manifest.tables[read];
        let copy_to = options.spill.join("silver").join(read);
        let engine = |message| GoldError::Engine { table: read.clone(), message };
        let frame = crate::read::scan(lake, read, &committed.files, &copy_to, options.workers, engine)?;
        sources.insert(read.clone(), Source { frame, rows: committed.rows });
    }
    tracing::info!(
        tables = needed.len(),
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "silver opened for gold"
    );
    // The tables one at a time: a query uses every core, and a table held
    // for its plugin beside another table's query would add their memory
    // for little time saved (BENCHMARKS.md, "Gold streams").
    let names: Vec<&String> = spec.tables.keys().collect();
    let computed = work::map(&names, 1, |_, name| {
        medallion_common::cancel::check()?;
        let table = &spec.tables[*name];
        let started = Instant::now();
        let reads = spec.reads(table, silver.tables.keys());
        let (gold, plugin) = build_table(name, table, &mut Queries::Here(&sources), &reads, catalog, options)?;
        // The query's and the plugin's memory is free: the next table starts from it.
        medallion_common::memory::release_freed();
        let report = GoldTableReport {
            table: (*name).clone(),
            rows: gold.rows(),
            reads,
            plugin,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(table = %name, rows = report.rows, seconds = format!("{:.2}", report.seconds), "gold table computed");
        Ok::<_, GoldError>((gold, report))
    })?;
    medallion_common::cancel::check()?;
    Ok(computed.into_iter().unzip())
}

/// The committed Silver Gold reads: the current one, or the one of
/// `options.silver_run`.
fn committed_silver(lake: &Lake, options: &GoldOptions) -> Result<Manifest, GoldError> {
    match &options.silver_run {
        None => Manifest::read(lake, crate::silver::ZONE, crate::silver::PARTITION)?.ok_or_else(|| {
            GoldError::Config(format!(
                "no Silver in {}\n  hint: build it first: `host run pipeline.yaml --from silver`",
                lake.url()
            ))
        }),
        Some(run) => Manifest::at_run(lake, crate::silver::ZONE, run)?.ok_or_else(|| {
            GoldError::Config(format!(
                "no Silver of run {run} in {}\n  hint: `host lake history pipeline.yaml silver` lists the runs the lake keeps",
                lake.url()
            ))
        }),
    }
}

/// Every Silver table some Gold table reads, each once; all must be in
/// `manifest`.
fn needed(spec: &GoldSpec, silver: &SilverSpec, manifest: &Manifest) -> Result<Vec<String>, GoldError> {
    let mut needed: Vec<String> = Vec::new();
    for (name, table) in &spec.tables {
        for read in spec.reads(table, silver.tables.keys()) {
            if !manifest.tables.contains_key(&read) {
                return Err(GoldError::Config(format!(
                    "gold.tables.{name}: Silver table `{read}` is not in the committed Silver"
                )));
            }
            if !needed.contains(&read) {
                needed.push(read);
            }
        }
    }
    Ok(needed)
}

/// A Gold query run by another engine (the Spark driver, through the Python
/// module): given the table, its SQL and the committed Silver tables'
/// files (full locations, in order), its result's rows in order.
pub type QueryElsewhere<'a> =
    dyn FnMut(&str, &str, &std::collections::BTreeMap<String, Vec<String>>) -> Result<Vec<RecordBatch>, String> + 'a;

/// Computes every Gold table with its query run by another engine
/// (`query`), the rest here: each result is given the column types polars
/// gives the same query over the committed Silver tables' schemas (their
/// files' footers), then goes through the table's KPI plugin as
/// [`compute`]'s does. A query's `split_by` is the other engine's business.
pub fn compute_elsewhere(
    lake: &Lake,
    spec: &GoldSpec,
    silver: &SilverSpec,
    catalog: &Catalog,
    options: &GoldOptions,
    query: &mut QueryElsewhere<'_>,
) -> Result<(Vec<GoldTable>, Vec<GoldTableReport>), GoldError> {
    let manifest = committed_silver(lake, options)?;
    let needed = needed(spec, silver, &manifest)?;
    let mut silver_frames = HashMap::new();
    for read in &needed {
        let files = &manifest.tables[read].files;
        let table = medallion_lake::ParquetTable::open(lake, files, Arc::new(arrow_schema::Schema::empty()))?;
        let frame = frame::to_polars(table.schema(), &[])
            .map_err(|e| GoldError::Engine { table: read.clone(), message: e.to_string() })?;
        silver_frames.insert(read.clone(), frame);
    }
    let silver_frames = &silver_frames;
    let files: std::collections::BTreeMap<String, Vec<String>> = needed
        .iter()
        .map(|read| (read.clone(), manifest.tables[read].files.iter().map(|f| lake.location(f)).collect()))
        .collect();
    let mut computed = Vec::new();
    for (name, table) in &spec.tables {
        medallion_common::cancel::check()?;
        let started = Instant::now();
        let reads = spec.reads(table, silver.tables.keys());
        let mut queries = Queries::Elsewhere { frames: silver_frames, files: &files, query: &mut *query };
        let (gold, plugin) = build_table(name, table, &mut queries, &reads, catalog, options)?;
        let report = GoldTableReport {
            table: name.clone(),
            rows: gold.rows(),
            reads,
            plugin,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(table = %name, rows = report.rows, seconds = format!("{:.2}", report.seconds), "gold table computed");
        computed.push((gold, report));
    }
    Ok(computed.into_iter().unzip())
}

/// Where a Gold table's query runs.
enum Queries<'a, 'q> {
    /// Here, with polars, over the Silver tables scanned.
    Here(&'a HashMap<String, Source>),
    /// In another engine; `frames` are Silver's schemas as empty frames
    /// (what the result's types are taken from), `files` the committed
    /// Silver tables' files.
    Elsewhere {
        frames: &'a HashMap<String, DataFrame>,
        files: &'a std::collections::BTreeMap<String, Vec<String>>,
        query: &'a mut QueryElsewhere<'q>,
    },
}

impl Queries<'_, '_> {
    /// Table `name`'s query result, as batches with their schema, over one
    /// range of its split column when it has one (here only).
    fn run(
        &mut self,
        name: &str,
        sql: &str,
        reads: &[String],
        range: Option<(&Split, usize)>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), GoldError> {
        let engine = |e: &dyn std::fmt::Display| GoldError::Engine { table: name.to_owned(), message: e.to_string() };
        match self {
            Queries::Here(sources) => {
                let mut frame = query(name, sql, sources, reads, range)?;
                let schema = frame::arrow_schema(&frame).map_err(|e| engine(&e))?;
                let batches = frame::from_polars(&mut frame).map_err(|e| engine(&e))?;
                Ok((schema, batches))
            }
            Queries::Elsewhere { frames, files, query } => {
                let mut context = polars::sql::SQLContext::new();
                for read in reads {
                    let frame = frames.get(read).ok_or_else(|| {
                        GoldError::Config(format!("gold.tables.{name}: Silver table `{read}` has no known schema"))
                    })?;
                    context.register(read, frame.clone().lazy());
                }
                let empty = context
                    .execute(sql)
                    .and_then(LazyFrame::collect)
                    .map_err(|e| GoldError::Config(format!("gold.tables.{name}.sql: {e}")))?;
                let schema = frame::arrow_schema(&empty).map_err(|e| engine(&e))?;
                let batches = query(name, sql, files).map_err(|e| engine(&e))?;
                let batches = batches
                    .iter()
                    .map(|batch| frame::conform(batch, &schema))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| engine(&format!("the query's result on the other engine: {e}")))?;
                Ok((schema, batches))
            }
        }
    }
}

/// A Silver table a Gold query reads.
struct Source {
    /// Its committed files, scanned.
    frame: LazyFrame,
    /// Its rows.
    rows: u64,
}

fn build_table(
    name: &str,
    table: &GoldTableSpec,
    queries: &mut Queries<'_, '_>,
    reads: &[String],
    catalog: &Catalog,
    options: &GoldOptions,
) -> Result<(GoldTable, Option<PluginUsed>), GoldError> {
    let split = match (&table.split_by, &queries) {
        (Some(column), Queries::Here(sources)) => Split::planned(name, column, sources, reads, options.memory)?,
        _ => None,
    };
    let ranges = split.as_ref().map_or(1, Split::ranges);
    let mut out = Output::new(name, &table.key, &options.spill);
    let mut kpi = table.kpi.as_ref().map(|step| Kpi::start(name, step, catalog, options.limits)).transpose()?;
    // A plugin that asks for whole-input columns (ranks, totals) gets every
    // range's rows at once; otherwise each range's rows go on as they come.
    let whole = kpi.as_ref().and_then(|kpi| kpi.instance.needs("in").cloned());
    let mut task = None;
    let mut held = Vec::new();
    let mut input_schema = None;
    for range in 0..ranges {
        medallion_common::cancel::check()?;
        if let Some(split) = &split {
            let over = split.describe(range);
            tracing::info!(table = name, range = %over, part = range + 1, of = ranges, "gold query over a range");
        }
        let (schema, batches) = queries.run(name, &table.sql, reads, split.as_ref().map(|s| (s, range)))?;
        if input_schema.is_none() {
            if let (Some(needs), Some(kpi)) = (&whole, &kpi) {
                // What the step's SQL does not give is the pipeline's to fix.
                needs.check(&schema).map_err(|e| {
                    GoldError::Config(format!("gold.tables.{name}.kpi: plugin `{}`: {e}", kpi.step.plugin))
                })?;
            }
            input_schema = Some(schema);
        }
        match &mut kpi {
            Some(_) if whole.is_some() => held.extend(batches),
            Some(kpi) => {
                let task = task.get_or_insert_with(|| Task::open("gold", name, None, Measure::Rows));
                kpi.push(batches, &mut out, task, options.batch_rows)?
            }
            None => batches.into_iter().try_for_each(|batch| out.write(batch))?,
        }
    }
    let input_schema = input_schema.unwrap_or_else(|| Arc::new(arrow_schema::Schema::empty()));
    let Some(mut kpi) = kpi else { return Ok((out.finish(input_schema)?, None)) };
    if let Some(needs) = &whole {
        // What fails on the data is the engine's.
        let prepared = medallion_window::prepare(needs, held).map_err(|e| GoldError::Engine {
            table: name.to_owned(),
            message: format!("what plugin `{}` needs of its input: {e}", kpi.step.plugin),
        })?;
        let rows = prepared.iter().map(|b| b.num_rows() as u64).sum();
        let task = task.insert(Task::open("gold", name, Some(rows), Measure::Rows));
        kpi.push(prepared, &mut out, task, options.batch_rows)?;
    }
    let used = kpi.finish(&mut out)?;
    if let Some(task) = task {
        task.finish();
    }
    Ok((out.finish(input_schema)?, Some(used)))
}

/// Table `name`'s query over the Silver tables it `reads`, over one range
/// of its split column when it has one.
fn query(
    name: &str,
    sql: &str,
    sources: &HashMap<String, Source>,
    reads: &[String],
    range: Option<(&Split, usize)>,
) -> Result<DataFrame, GoldError> {
    let mut context = polars::sql::SQLContext::new();
    for read in reads {
        let frame = &sources[read].frame;
        let frame = match range {
            None => frame.clone(),
            Some((split, i)) => split.filter(i, read, frame),
        };
        context.register(read, frame);
    }
    let over = range.map(|(split, i)| format!(" (over {})", split.describe(i))).unwrap_or_default();
    let result = context.execute(sql).and_then(|query| query.collect_with_engine(Engine::Streaming));
    frame::single(result).map_err(|e| GoldError::Config(format!("gold.tables.{name}.sql{over}: {e}")))
}

/// A table's KPI step: its plugin, resolved and instantiated.
struct Kpi<'a> {
    table: &'a str,
    step: &'a PluginStep,
    plugin: Arc<LoadedPlugin>,
    instance: Instance,
}

impl<'a> Kpi<'a> {
    fn start(table: &'a str, step: &'a PluginStep, catalog: &Catalog, limits: Limits) -> Result<Self, GoldError> {
        let plugin = catalog.resolve(&step.plugin, step.version.as_deref()).ok_or_else(|| {
            GoldError::Config(format!(
                "gold.tables.{table}.kpi: no plugin `{}`{} in the plugins folder\n  hint: `host plugins list` shows what is there",
                step.plugin,
                step.version.as_deref().map(|v| format!(" version {v}")).unwrap_or_default()
            ))
        })?;
        let instance = plugin
            .instantiate(&step.config.to_string(), limits)
            .map_err(|source| GoldError::Plugin { table: table.to_owned(), source })?;
        Ok(Kpi { table, step, plugin, instance })
    }

    fn failed(&self) -> impl Fn(PluginError) -> GoldError + '_ {
        |source| GoldError::Plugin { table: self.table.to_owned(), source }
    }

    /// Pushes `batches` in slices of `batch_rows`, writing what the plugin
    /// emits; each batch is let go once pushed.
    fn push(
        &mut self,
        batches: Vec<RecordBatch>,
        out: &mut Output<'_>,
        task: &Task,
        batch_rows: usize,
    ) -> Result<(), GoldError> {
        for batch in batches {
            for start in (0..batch.num_rows()).step_by(batch_rows.max(1)) {
                let slice = batch.slice(start, batch_rows.min(batch.num_rows() - start));
                let emitted = self.instance.push("in", &slice).map_err(self.failed())?;
                out.emitted(emitted)?;
                task.advance(slice.num_rows() as u64, None);
            }
        }
        Ok(())
    }

    /// Ends the step: what the plugin emits last, and what the run log keeps of it.
    fn finish(mut self, out: &mut Output<'_>) -> Result<PluginUsed, GoldError> {
        let emitted = self.instance.finish().map_err(self.failed())?;
        out.emitted(emitted)?;
        let info = self.plugin.info();
        Ok(PluginUsed {
            name: info.name.clone(),
            version: info.version.clone(),
            sha256: self.plugin.sha256().to_owned(),
            config: self.step.config.clone(),
        })
    }
}

/// A query run over ranges of one column (its table's `split_by`), of
/// about equal width between the lowest and the highest value its inputs
/// hold: every Silver table it reads that has the column sees only its rows
/// in the range (the nulls with the last range), the others whole.
#[derive(Debug)]
struct Split {
    column: String,
    /// Whether the column is a date (its days are compared).
    date: bool,
    /// The Silver tables read that have the column (the others are read whole).
    having: Vec<String>,
    /// Where each range after the first starts.
    starts: Vec<i64>,
}

impl Split {
    /// The split table `name`'s query needs to fit the run's budget
    /// (`memory`), given its largest input; none when it fits whole.
    fn planned(
        name: &str,
        column: &str,
        sources: &HashMap<String, Source>,
        reads: &[String],
        memory: u64,
    ) -> Result<Option<Split>, GoldError> {
        let mut schemas = Vec::with_capacity(reads.len());
        for read in reads {
            let schema = sources[read].frame.clone().collect_schema().map_err(|e| GoldError::Engine {
                table: name.to_owned(),
                message: format!("Silver table `{read}`: {e}"),
            })?;
            schemas.push((read.as_str(), schema));
        }
        let date = split_column(column, schemas.iter().map(|(read, schema)| (*read, schema.get(column))))
            .map_err(|e| GoldError::Config(format!("gold.tables.{name}.split_by: {e}")))?;
        let having: Vec<String> =
            schemas.iter().filter(|(_, schema)| schema.contains(column)).map(|(read, _)| (*read).to_owned()).collect();
        let rows = having.iter().map(|read| sources[read].rows).max().unwrap_or(0);
        let parts = crate::budget::query_parts(rows, memory);
        if parts <= 1 {
            return Ok(None);
        }
        let mut span: Option<(i64, i64)> = None;
        for read in &having {
            let engine = |e: &dyn std::fmt::Display| GoldError::Engine {
                table: name.to_owned(),
                message: format!("the range of `{column}` in Silver table `{read}`: {e}"),
            };
            let value = value(column, date);
            let result = sources[read]
                .frame
                .clone()
                .select([value.clone().min().alias("lowest"), value.max().alias("highest")])
                .collect_with_engine(Engine::Streaming);
            let figures = frame::single(result).map_err(|e| engine(&e))?;
            let int = |name: &str| -> Result<Option<i64>, GoldError> {
                let column = figures.column(name).and_then(|c| c.cast(&DataType::Int64)).map_err(|e| engine(&e))?;
                Ok(column.i64().map_err(|e| engine(&e))?.get(0))
            };
            if let (Some(low), Some(high)) = (int("lowest")?, int("highest")?) {
                span = Some(span.map_or((low, high), |(l, h)| (l.min(low), h.max(high))));
            }
        }
        let Some((lowest, highest)) = span else { return Ok(None) };
        let starts = range_starts(lowest, highest, parts);
        if starts.is_empty() {
            return Ok(None);
        }
        if parts == crate::budget::MOST_PARTS {
            tracing::warn!(
                table = name,
                column,
                rows,
                "gold query split into the most ranges there can be; it may still exceed the memory budget"
            );
        }
        tracing::info!(
            table = name,
            column,
            rows,
            ranges = starts.len() + 1,
            "gold query split to fit the memory budget"
        );
        Ok(Some(Split { column: column.to_owned(), date, having, starts }))
    }

    fn ranges(&self) -> usize {
        self.starts.len() + 1
    }

    /// Where range `i` starts (none: from the lowest value) and where the
    /// next one starts (none: to the highest, and the nulls).
    fn bounds(&self, i: usize) -> (Option<i64>, Option<i64>) {
        (i.checked_sub(1).map(|j| self.starts[j]), self.starts.get(i).copied())
    }

    /// Range `i` of Silver table `read` (`source`): all of it when the
    /// table has no such column.
    fn filter(&self, i: usize, read: &str, source: &LazyFrame) -> LazyFrame {
        if !self.having.iter().any(|having| having == read) {
            return source.clone();
        }
        let value = value(&self.column, self.date);
        let keep = match self.bounds(i) {
            (None, Some(to)) => value.lt(lit(to)),
            (Some(from), Some(to)) => value.clone().gt_eq(lit(from)).and(value.lt(lit(to))),
            (Some(from), None) => value.gt_eq(lit(from)).or(col(self.column.as_str()).is_null()),
            (None, None) => return source.clone(),
        };
        source.clone().filter(keep)
    }

    /// Range `i`, as a reader of the log would write it.
    fn describe(&self, i: usize) -> String {
        let show = |v: i64| match self.date {
            true => i32::try_from(v).map_or_else(|_| v.to_string(), medallion_common::date::iso),
            false => v.to_string(),
        };
        let column = &self.column;
        match self.bounds(i) {
            (None, Some(to)) => format!("{column} < {}", show(to)),
            (Some(from), Some(to)) => format!("{} <= {column} < {}", show(from), show(to)),
            (Some(from), None) => format!("{column} >= {} or null", show(from)),
            (None, None) => "all rows".to_owned(),
        }
    }
}

/// A split column's values as the ranges compare them: 64-bit integers
/// (a date's days).
fn value(column: &str, date: bool) -> polars::prelude::Expr {
    let value = col(column);
    let value = if date { value.cast(DataType::Int32) } else { value };
    value.cast(DataType::Int64)
}

/// Where each of `parts` ranges after the first starts, splitting
/// `lowest..=highest` into ranges whose widths differ by one at most (fewer
/// ranges when there are fewer values); empty for one range.
fn range_starts(lowest: i64, highest: i64, parts: usize) -> Vec<i64> {
    let span = i128::from(highest) - i128::from(lowest) + 1;
    let parts = (parts as i128).min(span.max(1));
    (1..parts).map(|i| (i128::from(lowest) + i * span / parts) as i64).collect()
}

/// Whether a split column is a date, from its type in each Silver table a
/// query reads (`None`: the table has no such column); an error for a type
/// that has no ranges, for types that differ, and when no table has it.
fn split_column<'a>(
    column: &str,
    types: impl Iterator<Item = (&'a str, Option<&'a DataType>)>,
) -> Result<bool, String> {
    let mut found: Option<(&str, bool)> = None;
    let mut tables = Vec::new();
    for (table, data_type) in types {
        tables.push(table);
        let Some(data_type) = data_type else { continue };
        let date = match data_type {
            DataType::Date => true,
            DataType::UInt64 => {
                return Err(format!(
                    "`{column}` in Silver table `{table}` is u64, whose values can pass the largest 64-bit integer; split by an i64 column"
                ));
            }
            t if t.is_integer() => false,
            t => {
                return Err(format!(
                    "`{column}` in Silver table `{table}` is {t}; only an integer or a date column can be split into ranges"
                ));
            }
        };
        match found {
            Some((other, was)) if was != date => {
                return Err(format!(
                    "`{column}` is a date in Silver table `{}` and an integer in `{}`; give the tables one type",
                    if date { table } else { other },
                    if date { other } else { table }
                ));
            }
            _ => found = Some((table, date)),
        }
    }
    found.map(|(_, date)| date).ok_or_else(|| {
        format!("none of the Silver tables its query reads ({}) has a column `{column}`", tables.join(", "))
    })
}

/// A Gold table as it comes out of its step, spilled batch by batch without
/// its working columns; its columns are the first batch's.
struct Output<'a> {
    table: &'a str,
    key: &'a [String],
    path: PathBuf,
    /// The columns the batches have, the ones kept, and the file.
    open: Option<(SchemaRef, Vec<usize>, Spill)>,
}

impl<'a> Output<'a> {
    fn new(table: &'a str, key: &'a [String], spill: &Path) -> Self {
        Output { table, key, path: spill.join(format!("gold-{table}.arrows")), open: None }
    }

    fn fail(&self, message: String) -> GoldError {
        GoldError::Engine { table: self.table.to_owned(), message }
    }

    /// Writes what the plugin emitted; a Gold step reads `out` only.
    fn emitted(&mut self, outputs: medallion_plugin::Outputs) -> Result<(), GoldError> {
        for (port, batches) in outputs {
            if port != "out" {
                return Err(self.fail(format!("the KPI plugin emitted on port `{port}`; a Gold step reads `out`")));
            }
            for batch in batches {
                self.write(batch)?;
            }
        }
        Ok(())
    }

    fn write(&mut self, batch: RecordBatch) -> Result<(), GoldError> {
        let (schema, keep, mut spill) = match self.open.take() {
            Some(open) => open,
            None => self.start(&batch.schema())?,
        };
        if batch.schema() != schema {
            return Err(self.fail(format!(
                "the KPI plugin's `out` batches change columns: first {:?}, then {:?}",
                names(&schema),
                names(&batch.schema())
            )));
        }
        let projected = batch.project(&keep).map_err(|e| self.fail(e.to_string()))?;
        spill.write(&projected).map_err(|e| self.fail(format!("spilling to {}: {e}", self.path.display())))?;
        self.open = Some((schema, keep, spill));
        Ok(())
    }

    /// The spill file for batches of `schema`, once the key is checked.
    fn start(&self, schema: &SchemaRef) -> Result<(SchemaRef, Vec<usize>, Spill), GoldError> {
        let keep: Vec<usize> =
            schema.fields().iter().enumerate().filter(|(_, f)| !f.name().starts_with('_')).map(|(i, _)| i).collect();
        let stored = Arc::new(schema.project(&keep).map_err(|e| self.fail(e.to_string()))?);
        for key in self.key {
            if stored.field_with_name(key).is_err() {
                return Err(GoldError::Config(format!(
                    "gold.tables.{}.key: the table has no column `{key}`",
                    self.table
                )));
            }
        }
        let spill = Spill::create(&self.path, self.table, stored, self.key.to_vec())
            .map_err(|e| self.fail(format!("spilling to {}: {e}", self.path.display())))?;
        Ok((schema.clone(), keep, spill))
    }

    /// The table; one without a batch has the columns of `input`.
    fn finish(mut self, input: SchemaRef) -> Result<GoldTable, GoldError> {
        let (_, _, spill) = match self.open.take() {
            Some(open) => open,
            None => self.start(&input)?,
        };
        spill.finish().map_err(|e| self.fail(format!("spilling to {}: {e}", self.path.display())))
    }
}

/// The words of every `GROUP BY` list in `sql`, lower case, with their
/// depth in parentheses (a heuristic for `split_by`'s check: the columns
/// grouped by, their tables' aliases, the functions around them; `1` for
/// an ordinal, `all` for `GROUP BY ALL`). Comments and quoted text are
/// skipped.
fn grouped_by(sql: &str) -> std::collections::BTreeSet<String> {
    const ENDS: [&str; 12] = [
        "having",
        "order",
        "limit",
        "union",
        "window",
        "qualify",
        "select",
        "from",
        "where",
        "join",
        "except",
        "intersect",
    ];
    let tokens = sql_tokens(sql);
    let mut grouped = std::collections::BTreeSet::new();
    let mut i = 0;
    while i + 1 < tokens.len() {
        let (word, depth) = &tokens[i];
        if word == "group" && tokens[i + 1].0 == "by" {
            i += 2;
            while let Some((word, inner)) = tokens.get(i) {
                // The list ends at a clause of its own query, or where that
                // query's parentheses close.
                if *inner < *depth || (*inner == *depth && (ENDS.contains(&word.as_str()) || word == ";")) {
                    break;
                }
                if word != "(" && word != ")" && word != ";" {
                    grouped.insert(word.clone());
                }
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    grouped
}

/// `sql` as lower-case words, numbers and parentheses, each with its depth
/// in parentheses (a parenthesis has the depth outside it); comments, quoted
/// text and other punctuation left out.
fn sql_tokens(sql: &str) -> Vec<(String, usize)> {
    let mut tokens = Vec::new();
    let mut depth = 0usize;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                chars.by_ref().find(|c| *c == '\n');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '\'' | '"' => {
                // Quoted text, or a quoted name (kept: `"Day"`).
                let mut quoted = String::new();
                for next in chars.by_ref() {
                    if next == c {
                        break;
                    }
                    quoted.push(next);
                }
                if c == '"' {
                    tokens.push((quoted.to_lowercase(), depth));
                }
            }
            '(' => {
                tokens.push(("(".to_owned(), depth));
                depth += 1;
            }
            ')' => {
                depth = depth.saturating_sub(1);
                tokens.push((")".to_owned(), depth));
            }
            ';' => tokens.push((";".to_owned(), depth)),
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = c.to_lowercase().to_string();
                while let Some(next) = chars.next_if(|n| n.is_alphanumeric() || *n == '_') {
                    word.extend(next.to_lowercase());
                }
                tokens.push((word, depth));
            }
            _ => {}
        }
    }
    tokens
}

fn names(schema: &SchemaRef) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// Checks the `gold:` section without data, against the Silver tables'
/// schemas (`silver`: empty frames from [`crate::silver::check`]): every SQL
/// step plans (known tables and columns), every KPI plugin exists and accepts
/// its config, every key column exists. Returns the path in the pipeline file
/// of what is wrong and why.
pub fn check(
    spec: &GoldSpec,
    silver_spec: &SilverSpec,
    silver: &HashMap<String, DataFrame>,
    catalog: &Catalog,
    limits: Limits,
) -> Result<(), (String, String)> {
    for (name, table) in &spec.tables {
        let at = |field: &str| format!("gold.tables.{name}.{field}");
        let reads = spec.reads(table, silver_spec.tables.keys());
        let mut columns = None;
        let mut input_schema = None;
        if reads.iter().all(|r| silver.contains_key(r)) {
            let mut context = polars::sql::SQLContext::new();
            for read in &reads {
                context.register(read, silver[read].clone().lazy());
            }
            let frame =
                context.execute(&table.sql).and_then(LazyFrame::collect).map_err(|e| (at("sql"), e.to_string()))?;
            columns = Some(frame.get_column_names().iter().map(|c| c.to_string()).collect::<Vec<_>>());
            input_schema = Some(frame::arrow_schema(&frame).map_err(|e| (at("sql"), e.to_string()))?);
        }
        if let Some(column) = &table.split_by
            && reads.iter().all(|r| silver.contains_key(r))
        {
            let types = reads.iter().map(|r| (r.as_str(), silver[r].schema().get(column)));
            split_column(column, types).map_err(|e| (at("split_by"), e))?;
            // A query right to split keeps rows apart by the column: it
            // groups by it, or (joins only) gives it.
            let grouped = grouped_by(&table.sql);
            let gives = columns.as_ref().is_none_or(|c| c.contains(column));
            let ordinal = columns.as_ref().and_then(|c| c.iter().position(|name| name == column)).map(|at| at + 1);
            let kept = if grouped.is_empty() {
                gives
            } else {
                grouped.contains(&column.to_lowercase())
                    || (grouped.contains("all") && gives)
                    || ordinal.is_some_and(|n| grouped.contains(&n.to_string()))
            };
            if sql_tokens(&table.sql).iter().any(|(word, _)| word == "limit") {
                return Err((
                    at("split_by"),
                    "the query has a LIMIT, which would apply to each range of rows, not to the table\n  hint: remove split_by, or the LIMIT".to_owned(),
                ));
            }
            if !kept {
                return Err((
                    at("split_by"),
                    format!(
                        "the query {} `{column}`: run over ranges of `{column}`, rows of different ranges that belong together would be computed apart\n  hint: split by a column the query groups by (or, without GROUP BY, one it gives), or remove split_by",
                        if grouped.is_empty() { "gives no column" } else { "does not group by" }
                    ),
                ));
            }
        }
        if let Some(step) = &table.kpi {
            let plugin = catalog
                .resolve(&step.plugin, step.version.as_deref())
                .ok_or_else(|| (at("kpi.plugin"), catalog.missing(&step.plugin, step.version.as_deref())))?;
            medallion_plugin::check_ports(plugin.info(), &["in"], &["out"]).map_err(|e| (at("kpi.plugin"), e))?;
            let instance =
                plugin.instantiate(&step.config.to_string(), limits).map_err(|e| (at("kpi.config"), e.to_string()))?;
            if let (Some(needs), Some(schema)) = (instance.needs("in"), &input_schema) {
                needs.check(schema).map_err(|e| (at("kpi.plugin"), format!("plugin `{}`: {e}", step.plugin)))?;
            }
        }
        if let Some(columns) = columns {
            for key in table.key.iter().chain(&table.order_by) {
                if !columns.contains(key) && table.kpi.is_none() {
                    return Err((
                        at("key"),
                        format!("the query gives no column `{key}`; it gives {}", columns.join(", ")),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_value_once_and_differ_in_width_by_one_at_most() {
        for (lowest, highest, parts) in [(1, 20_000_000, 3), (0, 64, 64), (1, 65, 64), (-7, 7, 4), (5, 5, 8), (1, 3, 8)]
        {
            let starts = range_starts(lowest, highest, parts);
            let span = (highest - lowest + 1) as usize;
            assert_eq!(starts.len() + 1, parts.min(span), "{lowest}..={highest} in {parts}");
            let edges: Vec<i64> = std::iter::once(lowest).chain(starts.iter().copied()).chain([highest + 1]).collect();
            let widths: Vec<i64> = edges.windows(2).map(|w| w[1] - w[0]).collect();
            assert!(widths.iter().all(|&w| w >= 1), "{widths:?}");
            assert!(widths.iter().max().unwrap() - widths.iter().min().unwrap() <= 1, "{widths:?}");
        }
        assert_eq!(range_starts(1, 20_000_000, 3), [6_666_667, 13_333_334]);
    }

    #[test]
    fn ranges_at_the_ends_of_the_integers_do_not_wrap() {
        let starts = range_starts(i64::MAX - 4, i64::MAX, 4);
        assert!(starts.windows(2).all(|w| w[0] < w[1]) && starts[0] > i64::MAX - 4, "{starts:?}");
        let starts = range_starts(i64::MIN, i64::MAX, 2);
        assert_eq!(starts, [0]);
    }

    #[test]
    fn the_columns_grouped_by_are_found_in_every_group_by() {
        let words = |sql: &str| grouped_by(sql).into_iter().collect::<Vec<_>>();
        let sql = "WITH o AS (SELECT account_id, COUNT(*) AS n FROM facts GROUP BY account_id)
                   SELECT day AS date, SUM(x) FROM t Group  By day, o.region ORDER BY date";
        assert_eq!(words(sql), ["account_id", "day", "o", "region"]);
        assert!(words("SELECT * FROM a JOIN b ON a.id = b.id").is_empty());
        assert_eq!(words("SELECT k FROM t GROUP BY k;"), ["k"]);
        // Functions around a column do not end the list.
        assert_eq!(
            words("SELECT 1 FROM t GROUP BY date_trunc('month', day), account_id HAVING COUNT(*) > 1"),
            ["account_id", "date_trunc", "day"]
        );
        assert_eq!(words("SELECT * FROM (SELECT k FROM t GROUP BY\n k) AS s WHERE x = 1"), ["k"]);
        // Comments and quoted text are not the query.
        assert!(words("SELECT k FROM t -- GROUP BY account_id\n").is_empty());
        assert!(words("SELECT 'GROUP BY account_id' FROM t /* GROUP BY k */").is_empty());
        assert_eq!(words(r#"SELECT 1 FROM t GROUP BY "Account_ID""#), ["account_id"]);
        assert_eq!(words("SELECT a, b FROM t GROUP BY 1, ALL"), ["1", "all"]);
    }

    #[test]
    fn a_split_column_must_be_an_integer_or_a_date_of_one_type_somewhere() {
        let (int, date, text) = (DataType::Int64, DataType::Date, DataType::String);
        assert_eq!(split_column("id", [("a", Some(&int)), ("b", None)].into_iter()), Ok(false));
        assert_eq!(split_column("day", [("a", Some(&date))].into_iter()), Ok(true));
        let mixed = split_column("day", [("a", Some(&date)), ("b", Some(&int))].into_iter()).unwrap_err();
        assert_eq!(mixed, "`day` is a date in Silver table `a` and an integer in `b`; give the tables one type");
        let words = split_column("name", [("a", Some(&text))].into_iter()).unwrap_err();
        assert!(words.contains("`name` in Silver table `a` is str; only an integer or a date"), "{words}");
        let missing = split_column("id", [("a", None), ("b", None)].into_iter()).unwrap_err();
        assert_eq!(missing, "none of the Silver tables its query reads (a, b) has a column `id`");
    }
}
