//! The host's side of a pipeline run on Spark: `medallion.run` runs a
//! pipeline with the host's own run (the lake's lock, Bronze, the run log,
//! Silver's counts and commit, Gold's KPI plugins and publish), handing
//! Silver's tables and Gold's queries to a Python object, the Spark driver
//! (`medallion_spark.py`), through [`medallion_engine::run::Elsewhere`];
//! `medallion.Parts` writes Parquet files into the lake from an executor
//! with the host's own writer.
//!
//! What the driver is told of Silver is JSON (the tables in build order,
//! each with what its rules need, and the Bronze files with the position of
//! their first row); the schemas the host gives each table go beside it as
//! pyarrow schemas.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arrow_array::RecordBatch;
use arrow_pyarrow::PyArrowType;
use arrow_schema::Schema;
use medallion_engine::run::{Elsewhere, FailureKind, RunError, RunOptions, Stage, StageReport, StageSummary};
use medallion_engine::{budget, frame, silver};
use medallion_lake::{Lake, Manifest, ParquetTable, PartWriter, table_properties};
use medallion_pipeline::Plan;
use medallion_plugin::Catalog;
use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::prelude::*;
use serde_json::json;

pyo3::create_exception!(
    medallion,
    RunFailure,
    PyException,
    "A pipeline run failed: the stage that failed published nothing (the stages before it published theirs, each all or nothing). `.kind` says what failed (config, source, plugin, store, interrupted), `.exit_code` the host's exit code for it."
);

/// Rows per Parquet file written from an executor.
const ROWS_PER_FILE: usize = 4 << 20;

/// The lakes this process has opened, by URL: one client per lake, kept
/// for the process's life (an executor writes many tasks' files).
fn lake(url: &str) -> Result<&'static Lake, String> {
    static LAKES: OnceLock<Mutex<HashMap<String, &'static Lake>>> = OnceLock::new();
    let mut lakes = LAKES.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(lake) = lakes.get(url) {
        return Ok(lake);
    }
    let lake: &'static Lake = Box::leak(Box::new(Lake::open(url).map_err(|e| e.to_string())?));
    lakes.insert(url.to_owned(), lake);
    Ok(lake)
}

/// Parquet files written into a folder of the lake, as the host writes
/// them (its row groups, compression and stored types), from a Spark task.
#[pyclass(module = "medallion")]
pub(crate) struct Parts {
    lake: &'static Lake,
    folder: String,
    suffix: String,
    row_group_rows: usize,
    /// The schema each batch is given (found by name, cast); without one,
    /// the first batch's.
    schema: Option<Arc<Schema>>,
    /// Opened with the first batch; `None` again once finished.
    writer: Mutex<Option<PartWriter<'static>>>,
    finished: std::sync::atomic::AtomicBool,
}

#[pymethods]
impl Parts {
    /// A writer of `folder/part-NNNNN-<suffix>.parquet` files in the lake at
    /// `lake_url`; with `schema`, every batch is given its columns and types.
    #[new]
    #[pyo3(signature = (lake_url, folder, suffix, schema = None, row_group_rows = 1 << 19))]
    fn new(
        lake_url: &str,
        folder: String,
        suffix: String,
        schema: Option<PyArrowType<Schema>>,
        row_group_rows: usize,
    ) -> PyResult<Parts> {
        Ok(Parts {
            lake: lake(lake_url).map_err(PyRuntimeError::new_err)?,
            folder,
            suffix,
            row_group_rows,
            schema: schema.map(|s| Arc::new(s.0)),
            writer: Mutex::new(None),
            finished: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Appends `batch`.
    fn write(&self, py: Python<'_>, batch: PyArrowType<RecordBatch>) -> PyResult<()> {
        if self.finished.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(PyRuntimeError::new_err("these parts are finished"));
        }
        let batch = match &self.schema {
            Some(schema) => frame::conform(&batch.0, schema)
                .map_err(|e| PyRuntimeError::new_err(format!("writing {}: {e}", self.folder)))?,
            None => batch.0,
        };
        let mut slot = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let writer = slot.get_or_insert_with(|| {
            let properties = table_properties(self.row_group_rows);
            PartWriter::new(self.lake, self.folder.clone(), batch.schema(), ROWS_PER_FILE, properties)
                .with_suffix(&self.suffix)
        });
        py.detach(|| writer.write(&batch)).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Closes the last file; returns the files written (lake-relative, in
    /// order) and the rows.
    fn finish(&self, py: Python<'_>) -> PyResult<(Vec<String>, u64)> {
        self.finished.store(true, std::sync::atomic::Ordering::Relaxed);
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        match writer {
            Some(writer) => py.detach(|| writer.finish()).map_err(|e| PyRuntimeError::new_err(e.to_string())),
            None => Ok((Vec::new(), 0)),
        }
    }
}

/// The Spark driver, a Python object with `silver(plan_json, schemas)` and
/// `gold_query(table, sql, silver_json)`.
struct PythonEngine {
    driver: Py<PyAny>,
}

/// A Python exception as the run's error: a plugin's failure
/// (`PluginFailure`), or the cluster's (anything else: the lake, a lost
/// cluster, the driver).
fn described(py: Python<'_>, e: &PyErr) -> RunError {
    let kind = e.get_type(py).name().map(|n| n.to_string()).unwrap_or_else(|_| "Exception".to_owned());
    let failure = if e.is_instance_of::<crate::PluginFailure>(py) { FailureKind::Plugin } else { FailureKind::Store };
    RunError::new(failure, format!("{kind}: {}", e.value(py)))
}

impl Elsewhere for PythonEngine {
    fn silver(
        &mut self,
        lake: &Lake,
        plan: &Plan,
        catalog: &Catalog,
        bronze: &Manifest,
        run_id: &str,
    ) -> Result<Vec<silver::Written>, RunError> {
        let (request, schemas) = silver_request(lake, plan, catalog, bronze, run_id).map_err(RunError::config)?;
        Python::attach(|py| {
            let schemas: HashMap<String, PyArrowType<Schema>> =
                schemas.into_iter().map(|(name, schema)| (name, PyArrowType(schema))).collect();
            let answer = self
                .driver
                .call_method1(py, "silver", (request.to_string(), schemas))
                .map_err(|e| described(py, &e))?;
            let text: String = answer.extract(py).map_err(|e| described(py, &e))?;
            serde_json::from_str(&text)
                .map_err(|e| RunError::new(FailureKind::Store, format!("the driver's answer to `silver`: {e}")))
        })
    }

    fn gold_query(
        &mut self,
        table: &str,
        sql: &str,
        silver: &BTreeMap<String, Vec<String>>,
    ) -> Result<Vec<RecordBatch>, RunError> {
        let files = serde_json::to_string(silver).map_err(|e| RunError::new(FailureKind::Store, e.to_string()))?;
        Python::attach(|py| {
            let answer =
                self.driver.call_method1(py, "gold_query", (table, sql, files)).map_err(|e| described(py, &e))?;
            let batches: Vec<PyArrowType<RecordBatch>> = answer.extract(py).map_err(|e| described(py, &e))?;
            Ok(batches.into_iter().map(|b| b.0).collect())
        })
    }
}

/// What the driver needs to build Silver: per table in build order, its
/// Bronze files (full location, rows, position of the first row), its
/// cleaning plugin (file, config), key, parents, derived and output
/// columns or SQL, and its folders; with the Silver schemas the host gives
/// the tables (by name; a table whose plugin declares no schema has none).
fn silver_request(
    lake: &Lake,
    plan: &Plan,
    catalog: &Catalog,
    bronze: &Manifest,
    run_id: &str,
) -> Result<(serde_json::Value, Vec<(String, Schema)>), String> {
    let spec = &plan.silver;
    let order = spec.order()?;
    let frames = silver::check(spec, catalog, plan.limits).map_err(|(at, e)| format!("{at}: {e}"))?;
    let mut schemas = Vec::new();
    for (name, frame) in &frames {
        let schema = frame::arrow_schema(frame).map_err(|e| e.to_string())?;
        schemas.push((name.clone(), schema.as_ref().clone()));
    }
    let mut tables = Vec::new();
    for name in &order {
        let table = &spec.tables[name];
        let mut entry = json!({
            "name": name,
            "folder": format!("{}/{name}", silver::ZONE),
            "quarantine": format!("quarantine/{}/{name}", silver::ZONE),
            "key": table.key,
            "parents": table.parents.iter().map(|p| json!({
                "column": p.column,
                "table": p.table,
                "key": p.parent_key(),
                "take": p.take,
                "reason": p.orphan_reason(),
            })).collect::<Vec<_>>(),
            "derive": table.derive.iter().map(|(column, expr)| json!([column, expr])).collect::<Vec<_>>(),
            "columns": table.columns,
            "sql": table.sql,
            "reads": spec.reads(name),
        });
        if let (Some(from), Some(step)) = (&table.from, &table.clean) {
            let files = bronze.tables.get(from).ok_or_else(|| {
                format!("silver.tables.{name}: Bronze table `{from}` is not in the Bronze partition read")
            })?;
            let parquet =
                ParquetTable::open(lake, &files.files, Arc::new(Schema::empty())).map_err(|e| e.to_string())?;
            let mut offset = 0;
            let mut located = Vec::new();
            for (path, _, rows) in parquet.files() {
                located.push(json!({"location": lake.location(&path), "rows": rows, "offset": offset}));
                offset += rows;
            }
            let plugin = catalog.resolve(&step.plugin, step.version.as_deref()).ok_or_else(|| {
                format!("silver.tables.{name}.clean: {}", catalog.missing(&step.plugin, step.version.as_deref()))
            })?;
            entry["from"] = json!(from);
            entry["bronze"] = json!(located);
            entry["bronze_rows"] = json!(offset);
            entry["clean"] = json!({
                "plugin": plugin.path(),
                "name": plugin.info().name,
                "sha256": plugin.sha256(),
                "stateless": plugin.info().stateless,
                "config": step.config.to_string(),
            });
        }
        tables.push(entry);
    }
    let request = json!({
        "run_id": run_id,
        // As every node names it (a local lake: file:///...).
        "lake": lake.location(""),
        "lineage": silver::LINEAGE,
        "batch_rows": medallion_engine::run::BATCH_ROWS,
        "row_group_rows": budget::row_group_rows(plan.memory.bytes),
        "limits": {
            "memory_mb": plan.limits.memory_bytes >> 20,
            "call_budget_ms": plan.limits.call_budget.as_millis() as u64,
        },
        "tables": tables,
    });
    Ok((request, schemas))
}

fn exit_code(kind: FailureKind) -> u8 {
    // The host's exit codes (`host run --help`).
    match kind {
        FailureKind::Config => 2,
        FailureKind::Source => 3,
        FailureKind::Plugin => 4,
        FailureKind::Store => 5,
        FailureKind::Interrupted => 130,
    }
}

fn kind_name(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::Config => "config",
        FailureKind::Source => "source",
        FailureKind::Plugin => "plugin",
        FailureKind::Store => "store",
        FailureKind::Interrupted => "interrupted",
    }
}

fn run_failure(py: Python<'_>, e: RunError) -> PyErr {
    let error = RunFailure::new_err(e.message.clone());
    let value = error.value(py);
    let _ = value.setattr("kind", kind_name(e.kind));
    let _ = value.setattr("exit_code", exit_code(e.kind));
    error
}

/// One line per stage, as the host prints them.
fn stage_line(summary: &StageSummary) -> String {
    let detail = match &summary.report {
        StageReport::Bronze(report) => {
            format!("{} tables, {} rows", report.tables.len(), report.tables.iter().map(|t| t.rows).sum::<u64>())
        }
        StageReport::Silver { report, from } => format!(
            "{} tables from {from}, {} rows, {} quarantined",
            report.tables.len(),
            report.tables.iter().map(|t| t.rows).sum::<u64>(),
            report.tables.iter().map(|t| t.quarantined).sum::<u64>()
        ),
        StageReport::Gold { tables, .. } => {
            format!("{} tables, {} rows", tables.len(), tables.iter().map(|t| t.rows).sum::<u64>())
        }
        StageReport::Nothing => "nothing to do".to_owned(),
    };
    format!(
        "{} [{}] {detail} in {:.1} s -> {}",
        summary.stage.name(),
        summary.run_id,
        summary.seconds,
        summary.written_to
    )
}

/// Runs the pipeline `pipeline` (with `sets`, `--set`'s overrides) as `host
/// run` does, Silver's tables and Gold's queries computed by `driver`.
/// `stages` are the stages' names (default: all); returns each stage's
/// report, `{stage, run_id, seconds, tables}`. Raises `RunFailure`.
#[pyfunction]
#[pyo3(signature = (pipeline, driver, sets = Vec::new(), stages = None, ingest_date = None))]
pub(crate) fn run(
    py: Python<'_>,
    pipeline: PathBuf,
    driver: Py<PyAny>,
    sets: Vec<String>,
    stages: Option<Vec<String>>,
    ingest_date: Option<String>,
) -> PyResult<String> {
    logs();
    let stages = match stages {
        None => Stage::ALL.to_vec(),
        Some(names) => {
            names.iter().map(|n| Stage::parse(n)).collect::<Result<_, _>>().map_err(|e| run_failure(py, e))?
        }
    };
    let plan = plan(&pipeline, &sets, stages.contains(&Stage::Bronze)).map_err(|e| run_failure(py, e))?;
    let options =
        RunOptions { stages, ingest_date, workers: medallion_engine::run::default_workers(), silver_run: None };
    let mut engine = PythonEngine { driver };
    let mut catalog = None;
    let mut summaries = Vec::new();
    let outcome = py.detach(|| {
        medallion_engine::run::run_with(&plan, &options, &mut catalog, Some(&mut engine), &mut |summary| {
            eprintln!("{}", stage_line(summary));
            summaries.push(json!({
                "stage": summary.stage.name(),
                "run_id": summary.run_id,
                "seconds": summary.seconds,
                "tables": summary.tables_json(),
            }));
        })
    });
    outcome.map_err(|e| run_failure(py, e))?;
    Ok(serde_json::Value::Array(summaries).to_string())
}

/// The plan of `pipeline`; its sources are checked only when Bronze runs.
fn plan(pipeline: &Path, sets: &[String], bronze: bool) -> Result<Plan, RunError> {
    let spec = medallion_pipeline::load(pipeline, sets, |name| std::env::var(name).ok())
        .map_err(|e| RunError::config(e.to_string()))?;
    let base = pipeline.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let planned = if bronze { spec.plan(pipeline, base) } else { spec.plan_without_sources(pipeline, base) };
    planned.map_err(|e| RunError::config(e.to_string()))
}

/// The run's log lines on stderr (`MEDALLION_LOG`, default `info`), once.
fn logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter = std::env::var("MEDALLION_LOG").unwrap_or_else(|_| "info".to_owned());
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .try_init();
    });
}
