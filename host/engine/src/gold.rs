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
use polars::prelude::{DataFrame, Engine, IntoLazy, LazyFrame, PlRefPath, ScanArgsParquet};
use polars_core::query_result::QueryResult;

use crate::frame;
use medallion_common::progress::{Measure, Task};
use medallion_common::work;
use medallion_lake::{Lake, LakeError, Manifest};
use medallion_pipeline::{GoldSpec, GoldTableSpec, SilverSpec};
use medallion_plugin::{Catalog, Limits, PluginError};
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
    /// A folder of the run's scratch space (see
    /// `medallion_common::scratch`): computed tables, and Silver copied from
    /// an HDFS lake.
    pub spill: PathBuf,
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
    let manifest = Manifest::read(lake, crate::silver::ZONE, crate::silver::PARTITION)?.ok_or_else(|| {
        GoldError::Config(format!(
            "no Silver in {}\n  hint: build it first: `host run pipeline.yaml --from silver`",
            lake.url()
        ))
    })?;
    // Every Silver table any Gold table reads, read row group by row group
    // on all cores.
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
    let started = Instant::now();
    let mut sources: HashMap<String, LazyFrame> = HashMap::new();
    for read in &needed {
        sources.insert(read.clone(), scan(lake, read, &manifest.tables[read].files, &options.spill, options.workers)?);
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
        let (gold, plugin) = build_table(name, table, &sources, &reads, catalog, options)?;
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

/// The Silver table `name` (its committed `files`) as a Parquet scan: the
/// files in place on a local lake, copied to `spill` first from any other.
fn scan(lake: &Lake, name: &str, files: &[String], spill: &Path, workers: usize) -> Result<LazyFrame, GoldError> {
    let engine = |e: &dyn std::fmt::Display| GoldError::Engine { table: name.to_owned(), message: e.to_string() };
    if files.is_empty() {
        // No file to scan: the table's (empty) columns as the lake has them.
        let (schema, batches) = crate::read::named_columns::<GoldError>(lake, files, 1, &[])?;
        return Ok(frame::to_polars(&schema, &batches).map_err(|e| engine(&e))?.lazy());
    }
    let paths: Vec<PathBuf> = match lake.local_path("") {
        Some(_) => files.iter().filter_map(|f| lake.local_path(f)).collect(),
        None => {
            let dir = spill.join("silver").join(name);
            std::fs::create_dir_all(&dir).map_err(|e| engine(&format!("scratch folder {}: {e}", dir.display())))?;
            let started = Instant::now();
            let copied = work::map(files, workers, |i, file| {
                let to = dir.join(format!("part-{i:05}.parquet"));
                lake.copy_to_local(file, &to)?;
                Ok::<_, GoldError>(to)
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
    // The files are named, not globbed; `run=...` in their path is not a column.
    let mut args = ScanArgsParquet { glob: false, ..Default::default() };
    args.hive_options.enabled = Some(false);
    LazyFrame::scan_parquet_files(paths.into(), args).map_err(|e| engine(&e))
}

fn build_table(
    name: &str,
    table: &GoldTableSpec,
    sources: &HashMap<String, LazyFrame>,
    reads: &[String],
    catalog: &Catalog,
    options: &GoldOptions,
) -> Result<(GoldTable, Option<PluginUsed>), GoldError> {
    let engine = |e: &dyn std::fmt::Display| GoldError::Engine { table: name.to_owned(), message: e.to_string() };
    let mut context = polars::sql::SQLContext::new();
    for read in reads {
        context.register(read, sources[read].clone());
    }
    let result = context.execute(&table.sql).and_then(|query| query.collect_with_engine(Engine::Streaming));
    let mut input = match result {
        Ok(QueryResult::Single(frame)) => frame,
        Ok(QueryResult::Multiple(_)) => return Err(engine(&"the query gave several results")),
        Err(e) => return Err(GoldError::Config(format!("gold.tables.{name}.sql: {e}"))),
    };
    let input_schema = frame::arrow_schema(&input).map_err(|e| engine(&e))?;
    let batches = frame::from_polars(&mut input).map_err(|e| engine(&e))?;
    drop(input);
    let mut out = Output::new(name, &table.key, &options.spill);
    let plugin = match &table.kpi {
        None => {
            for batch in batches {
                out.write(batch)?;
            }
            None
        }
        Some(step) => {
            let plugin = catalog.resolve(&step.plugin, step.version.as_deref()).ok_or_else(|| {
                GoldError::Config(format!(
                    "gold.tables.{name}.kpi: no plugin `{}`{} in the plugins folder\n  hint: `host plugins list` shows what is there",
                    step.plugin,
                    step.version.as_deref().map(|v| format!(" version {v}")).unwrap_or_default()
                ))
            })?;
            let plugin_error = |source: PluginError| GoldError::Plugin { table: name.to_owned(), source };
            let mut instance = plugin.instantiate(&step.config.to_string(), options.limits).map_err(plugin_error)?;
            let batches = match instance.needs("in") {
                None => batches,
                Some(needs) => {
                    // What the step's SQL does not give is the pipeline's to
                    // fix; what fails on the data is the engine's.
                    needs.check(&input_schema).map_err(|e| {
                        GoldError::Config(format!("gold.tables.{name}.kpi: plugin `{}`: {e}", step.plugin))
                    })?;
                    medallion_window::prepare(needs, batches).map_err(|e| GoldError::Engine {
                        table: name.to_owned(),
                        message: format!("what plugin `{}` needs of its input: {e}", step.plugin),
                    })?
                }
            };
            let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
            let task = Task::open("gold", name, Some(rows), Measure::Rows);
            // Each batch is let go once pushed.
            for batch in batches {
                for start in (0..batch.num_rows()).step_by(options.batch_rows.max(1)) {
                    let slice = batch.slice(start, options.batch_rows.min(batch.num_rows() - start));
                    out.emitted(instance.push("in", &slice).map_err(plugin_error)?)?;
                    task.advance(slice.num_rows() as u64, None);
                }
            }
            out.emitted(instance.finish().map_err(plugin_error)?)?;
            task.finish();
            let info = plugin.info();
            Some(PluginUsed {
                name: info.name.clone(),
                version: info.version.clone(),
                sha256: plugin.sha256().to_owned(),
                config: step.config.clone(),
            })
        }
    };
    Ok((out.finish(input_schema)?, plugin))
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
