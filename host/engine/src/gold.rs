//! Gold: each table is a SQL step over Silver (polars SQL) that shapes its
//! input, then a KPI plugin that appends the business columns; columns whose
//! name starts with `_` are working columns for the plugin and are not
//! stored. The tables are then published to the Gold store in one
//! transaction (see `medallion_store`).
//!
//! Not for: what any KPI means (the plugins and `pipeline.yaml` say that).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use polars::prelude::{DataFrame, IntoLazy, LazyFrame};

use crate::frame;
use medallion_common::progress::{Measure, Task};
use medallion_common::work;
use medallion_lake::{Lake, LakeError, Manifest};
use medallion_pipeline::{GoldSpec, GoldTableSpec, SilverSpec};
use medallion_plugin::{Catalog, Limits, PluginError};
use medallion_store::GoldTable;
use medallion_store::PluginUsed;

/// How to compute Gold.
#[derive(Debug, Clone)]
pub struct GoldOptions {
    /// Tables computed at once, and threads reading Silver.
    pub workers: usize,
    /// Rows per batch pushed to a plugin.
    pub batch_rows: usize,
    /// Per-instance plugin limits.
    pub limits: Limits,
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
    let mut frames: HashMap<String, DataFrame> = HashMap::new();
    for read in &needed {
        // Only the columns some Gold query names (all of them for a `*`).
        let queries: Vec<&str> = spec
            .tables
            .values()
            .filter(|t| spec.reads(t, std::iter::once(read)).contains(read))
            .map(|t| t.sql.as_str())
            .collect();
        let (schema, batches) =
            crate::read::named_columns::<GoldError>(lake, &manifest.tables[read].files, options.workers, &queries)?;
        let frame = frame::to_polars(&schema, &batches)
            .map_err(|e| GoldError::Engine { table: read.clone(), message: e.to_string() })?;
        frames.insert(read.clone(), frame);
    }
    tracing::info!(
        tables = needed.len(),
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "silver read for gold"
    );
    // The tables, computed by `workers` threads at once: a plugin runs on
    // one core, so another table's SQL can use the other.
    let names: Vec<&String> = spec.tables.keys().collect();
    let computed = work::map(&names, options.workers, |_, name| {
        medallion_common::cancel::check()?;
        let table = &spec.tables[*name];
        let started = Instant::now();
        let reads = spec.reads(table, silver.tables.keys());
        let (gold, plugin) = build_table(name, table, &frames, &reads, catalog, options)?;
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

fn build_table(
    name: &str,
    table: &GoldTableSpec,
    frames: &HashMap<String, DataFrame>,
    reads: &[String],
    catalog: &Catalog,
    options: &GoldOptions,
) -> Result<(GoldTable, Option<PluginUsed>), GoldError> {
    let engine = |e: &dyn std::fmt::Display| GoldError::Engine { table: name.to_owned(), message: e.to_string() };
    let mut context = polars::sql::SQLContext::new();
    for read in reads {
        context.register(read, frames[read].clone().lazy());
    }
    let mut input = context
        .execute(&table.sql)
        .and_then(LazyFrame::collect)
        .map_err(|e| GoldError::Config(format!("gold.tables.{name}.sql: {e}")))?;
    let input_schema = frame::arrow_schema(&input).map_err(|e| engine(&e))?;
    let batches = frame::from_polars(&mut input).map_err(|e| engine(&e))?;
    drop(input);
    let (batches, plugin) = match &table.kpi {
        None => (batches, None),
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
            let mut out = Vec::new();
            for batch in &batches {
                for start in (0..batch.num_rows()).step_by(options.batch_rows.max(1)) {
                    let slice = batch.slice(start, options.batch_rows.min(batch.num_rows() - start));
                    collect(name, instance.push("in", &slice).map_err(plugin_error)?, &mut out)?;
                    task.advance(slice.num_rows() as u64, None);
                }
            }
            collect(name, instance.finish().map_err(plugin_error)?, &mut out)?;
            task.finish();
            let info = plugin.info();
            let used = PluginUsed {
                name: info.name.clone(),
                version: info.version.clone(),
                sha256: plugin.sha256().to_owned(),
                config: step.config.clone(),
            };
            (out, Some(used))
        }
    };
    let schema = match batches.first() {
        Some(batch) => batch.schema(),
        None => input_schema,
    };
    let (schema, batches) = without_working_columns(&schema, batches).map_err(|e| engine(&e))?;
    for key in &table.key {
        if schema.field_with_name(key).is_err() {
            return Err(GoldError::Config(format!("gold.tables.{name}.key: the table has no column `{key}`")));
        }
    }
    Ok((GoldTable { name: name.to_owned(), schema, batches, key: table.key.clone() }, plugin))
}

fn collect(table: &str, outputs: medallion_plugin::Outputs, out: &mut Vec<RecordBatch>) -> Result<(), GoldError> {
    for (port, batches) in outputs {
        if port != "out" {
            return Err(GoldError::Engine {
                table: table.to_owned(),
                message: format!("the KPI plugin emitted on port `{port}`; a Gold step reads `out`"),
            });
        }
        if let (Some(first), Some(batch)) = (out.first(), batches.first())
            && first.schema() != batch.schema()
        {
            return Err(GoldError::Engine {
                table: table.to_owned(),
                message: format!(
                    "the KPI plugin's `out` batches change columns: first {:?}, then {:?}",
                    names(&first.schema()),
                    names(&batch.schema())
                ),
            });
        }
        out.extend(batches);
    }
    Ok(())
}

fn names(schema: &SchemaRef) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// Drops the columns whose name starts with `_`.
fn without_working_columns(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<(SchemaRef, Vec<RecordBatch>), arrow_schema::ArrowError> {
    let keep: Vec<usize> =
        schema.fields().iter().enumerate().filter(|(_, f)| !f.name().starts_with('_')).map(|(i, _)| i).collect();
    let projected = Arc::new(schema.project(&keep)?);
    let batches = batches.iter().map(|b| b.project(&keep)).collect::<Result<Vec<_>, _>>()?;
    Ok((projected, batches))
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
