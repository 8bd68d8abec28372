//! A whole run of a plan: the lake's lock, the run log, and the stages in
//! order (sources → Bronze → Silver → Gold). Any front end calls [`run`];
//! the `host` command line is one.
//!
//! A run takes the lake's lock, records itself as `running` in the Gold
//! store's run log, runs its stages (each publishes with one commit of its
//! own; Gold's commit also records the run as succeeded), and on failure
//! records why. What each stage did is handed to the caller as it finishes,
//! so that the caller can print it; this module prints nothing.
//!
//! Not for: parsing `pipeline.yaml` (`medallion-pipeline` gives the
//! [`Plan`]) or how a stage builds its tables ([`crate::silver`],
//! [`crate::gold`], `medallion_lake::ingest`).

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use medallion_common::scratch::Scratch;
use medallion_common::{cancel, date};
use medallion_lake::{BronzeReport, IngestError, IngestOptions, Lake, Manifest, SourceSpec};
use medallion_pipeline::Plan;
use medallion_plugin::{Catalog, PluginError, Runtime};
use medallion_store::{GoldStore, RunRecord, RunTable, StageTime, StoreError};

use crate::gold::{self, GoldError, GoldOptions, GoldTableReport};
use crate::silver::{self, SilverError, SilverOptions, SilverReport};

/// Rows per batch through the plugins.
pub const BATCH_ROWS: usize = 64 * 1024;
/// Rows per Bronze file.
const BRONZE_ROWS_PER_FILE: usize = 4 << 20;

/// A stage of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Sources landed as Parquet, values unchanged.
    Bronze,
    /// Bronze cleaned by plugins, keys and parents checked.
    Silver,
    /// The datamart, computed from Silver and published to the store.
    Gold,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 3] = [Stage::Bronze, Stage::Silver, Stage::Gold];

    /// The stage's name, as `--only` and the run log write it.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Bronze => "bronze",
            Stage::Silver => "silver",
            Stage::Gold => "gold",
        }
    }

    /// The stage called `name`.
    pub fn parse(name: &str) -> Result<Stage, RunError> {
        Stage::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
            RunError::config(format!("unknown stage `{name}`; the stages are {}", names.join(", ")))
        })
    }

    /// The stages of `--only STAGE` or `--from STAGE` (all of them by default).
    pub fn selection(only: Option<&str>, from: Option<&str>) -> Result<Vec<Stage>, RunError> {
        Ok(match (only, from) {
            (Some(stage), _) => vec![Stage::parse(stage)?],
            (None, Some(stage)) => {
                let first = Stage::parse(stage)?;
                Stage::ALL.into_iter().filter(|s| *s >= first).collect()
            }
            (None, None) => Stage::ALL.to_vec(),
        })
    }
}

/// What went wrong, as a scheduler acts on it (the command line maps each to
/// an exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Bad configuration or arguments.
    Config,
    /// A source cannot be read.
    Source,
    /// A plugin failed to load or faulted, or the rules refused the data.
    Plugin,
    /// The lake or the Gold store refused an operation.
    Store,
    /// A stop was asked for (Ctrl-C).
    Interrupted,
}

/// A run that failed: what kind of failure, and the message for the user.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RunError {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What failed, where, and what to do.
    pub message: String,
}

impl RunError {
    /// A failure of kind `kind`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        RunError { kind, message: message.into() }
    }

    /// A configuration failure.
    pub fn config(message: impl Into<String>) -> Self {
        RunError::new(FailureKind::Config, message)
    }
}

impl From<PluginError> for RunError {
    fn from(e: PluginError) -> Self {
        RunError::new(FailureKind::Plugin, e.to_string())
    }
}

impl From<StoreError> for RunError {
    fn from(e: StoreError) -> Self {
        RunError::new(FailureKind::Store, e.to_string())
    }
}

impl From<medallion_lake::LakeError> for RunError {
    fn from(e: medallion_lake::LakeError) -> Self {
        RunError::new(FailureKind::Store, e.to_string())
    }
}

impl From<IngestError> for RunError {
    fn from(e: IngestError) -> Self {
        let kind = match &e {
            IngestError::Source(_) | IngestError::Name { .. } => FailureKind::Source,
            IngestError::Lake(_) => FailureKind::Store,
            IngestError::Interrupted(_) => FailureKind::Interrupted,
            IngestError::Panicked(_) => FailureKind::Store,
        };
        RunError::new(kind, e.to_string())
    }
}

impl From<SilverError> for RunError {
    fn from(e: SilverError) -> Self {
        let kind = match &e {
            SilverError::Config(_) => FailureKind::Config,
            SilverError::Plugin { .. } | SilverError::Engine { .. } | SilverError::Conservation { .. } => {
                FailureKind::Plugin
            }
            SilverError::Lake(_) => FailureKind::Store,
            SilverError::Interrupted(_) => FailureKind::Interrupted,
            SilverError::Panicked(_) | SilverError::Stopped => FailureKind::Plugin,
        };
        RunError::new(kind, e.to_string())
    }
}

impl From<GoldError> for RunError {
    fn from(e: GoldError) -> Self {
        let kind = match &e {
            GoldError::Config(_) => FailureKind::Config,
            GoldError::Plugin { .. } | GoldError::Engine { .. } | GoldError::Panicked(_) => FailureKind::Plugin,
            GoldError::Lake(_) => FailureKind::Store,
            GoldError::Interrupted(_) => FailureKind::Interrupted,
        };
        RunError::new(kind, e.to_string())
    }
}

impl From<cancel::Interrupted> for RunError {
    fn from(e: cancel::Interrupted) -> Self {
        RunError::new(FailureKind::Interrupted, e.to_string())
    }
}

/// One run: its id, when it started, and its lake (the lock is taken by
/// [`Run::lock`]).
pub struct Run {
    /// The lake.
    pub lake: Lake,
    /// The run's id: its start in UTC and the process id.
    pub id: String,
    /// When it started, microseconds since the epoch.
    pub started_micros: i64,
}

impl Run {
    /// Opens the lake and names the run.
    pub fn open(lake_url: &str) -> Result<Self, RunError> {
        let now = now_micros();
        let id = format!("{}-{:05}", date::rfc3339(now).replace([':', '-'], ""), std::process::id() % 100_000);
        Ok(Run { lake: Lake::open(lake_url)?, id, started_micros: now })
    }

    /// Takes the lake's lock for this run, released when dropped.
    pub fn lock(&self) -> Result<medallion_lake::RunLock<'_>, RunError> {
        Ok(self.lake.lock(&self.id)?)
    }
}

/// What one stage did.
#[derive(Debug, Clone)]
pub struct StageSummary {
    /// The stage.
    pub stage: Stage,
    /// The run.
    pub run_id: String,
    /// The partition it wrote (`ingest_date=...` for Bronze).
    pub partition: String,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Where it published: the lake's URL, or the Gold store (no password).
    pub written_to: String,
    /// The tables, as the stage reports them.
    pub report: StageReport,
    /// The same, as the run log keeps it.
    pub run_tables: Vec<RunTable>,
}

/// A stage's own report.
#[derive(Debug, Clone)]
pub enum StageReport {
    /// Bronze: rows, quarantine and bytes per source.
    Bronze(BronzeReport),
    /// Silver: rows, quarantine per reason and plugin per table, and the
    /// Bronze partition it was built from.
    Silver {
        /// Per table.
        report: SilverReport,
        /// The Bronze partition read.
        from: String,
    },
    /// Gold: rows and plugin per table, and the seconds spent computing (the
    /// rest of the stage's time is the publish).
    Gold {
        /// Per table.
        tables: Vec<GoldTableReport>,
        /// Seconds computing.
        computed_seconds: f64,
    },
    /// The stage had no tables to build.
    Nothing,
}

impl StageSummary {
    /// The per-table report as JSON, for `--report`.
    pub fn tables_json(&self) -> serde_json::Value {
        let json = match &self.report {
            StageReport::Bronze(report) => serde_json::to_value(&report.tables),
            StageReport::Silver { report, .. } => serde_json::to_value(&report.tables),
            StageReport::Gold { tables, .. } => serde_json::to_value(tables),
            StageReport::Nothing => Ok(serde_json::json!([])),
        };
        json.unwrap_or_default()
    }
}

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The stages, in order.
    pub stages: Vec<Stage>,
    /// The Bronze partition to write and build Silver from (`YYYY-MM-DD`);
    /// by default today (UTC) when Bronze runs, else the latest one landed.
    pub ingest_date: Option<String>,
    /// Threads (tables landed at once, plugin instances per table, ...).
    pub workers: usize,
    /// Gold reads the Silver this run committed instead of the current one.
    pub silver_run: Option<String>,
}

impl RunOptions {
    /// Every stage, on every core.
    pub fn all_stages() -> Self {
        RunOptions { stages: Stage::ALL.to_vec(), ingest_date: None, workers: default_workers(), silver_run: None }
    }
}

/// The machine's cores (2 when it cannot tell).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(2)
}

/// Silver's tables and Gold's queries computed by another engine (a Spark
/// cluster, driven through the Python module): the run keeps the rest, the
/// lake's lock, Bronze, the run log, Silver's counts and commit
/// ([`silver::publish`]), Gold's KPI plugins and publish
/// ([`gold::compute_elsewhere`]). An error says what failed in the other
/// engine, of the kind it is (a plugin's fault, or the cluster's).
pub trait Elsewhere {
    /// Writes every table of `plan`'s Silver, and its quarantine, as
    /// Parquet files in `lake` (each in its table's folders, named with
    /// `run_id`) from the Bronze partition `bronze`; returns what each wrote.
    fn silver(
        &mut self,
        lake: &Lake,
        plan: &Plan,
        catalog: &Catalog,
        bronze: &Manifest,
        run_id: &str,
    ) -> Result<Vec<silver::Written>, RunError>;

    /// Gold table `table`'s query `sql` over the committed Silver tables
    /// (`silver`: each one's files, full locations, in order); its rows in
    /// order.
    fn gold_query(
        &mut self,
        table: &str,
        sql: &str,
        silver: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<Vec<arrow_array::RecordBatch>, RunError>;
}

/// Runs `plan`'s stages: takes the lake's lock, keeps the run log, and hands
/// each stage's summary to `on_stage` as the stage ends. `catalog` is the
/// plugins already loaded, if any (loaded here when a stage needs them).
pub fn run(
    plan: &Plan,
    options: &RunOptions,
    catalog: &mut Option<Catalog>,
    on_stage: &mut dyn FnMut(&StageSummary),
) -> Result<(), RunError> {
    run_with(plan, options, catalog, None, on_stage)
}

/// [`run`], with Silver and Gold's queries computed by `elsewhere` when
/// given.
pub fn run_with(
    plan: &Plan,
    options: &RunOptions,
    catalog: &mut Option<Catalog>,
    elsewhere: Option<&mut (dyn Elsewhere + '_)>,
    on_stage: &mut dyn FnMut(&StageSummary),
) -> Result<(), RunError> {
    // A bad date fails before the lake is touched.
    if let Some(text) = &options.ingest_date {
        check_ingest_date(text)?;
    }
    let run = Run::open(&plan.lake)?;
    let _lock = run.lock()?;
    // What does not fit the budget spills here; gone when the run ends.
    let scratch = Scratch::create(&plan.spill, &run.id).map_err(|e| {
        RunError::config(format!(
            "limits.spill: cannot create a scratch folder under {}: {e}\n  hint: set limits.spill to a writable folder on a disk with room",
            plan.spill.display()
        ))
    })?;
    crate::budget::apply(plan.memory.bytes, scratch.path());
    tracing::info!("memory budget {}; spilling to {}", plan.memory, scratch.path().display());
    let mut store = match &plan.gold_store {
        Some(url) => {
            let mut store = medallion_store::open(url)?;
            if let Some(seconds) = plan.gold.publish_wait_s {
                store.set_publish_wait(std::time::Duration::from_secs(seconds));
            }
            Some(store)
        }
        None if options.stages.contains(&Stage::Gold) && !plan.gold.tables.is_empty() => {
            return Err(no_gold_store());
        }
        None => None,
    };
    let record = RunRecord {
        run_id: run.id.clone(),
        started_at: date::rfc3339(run.started_micros),
        ended_at: None,
        status: "running".to_owned(),
        error: None,
        tables: Vec::new(),
        stages: Vec::new(),
        memory_budget: Some(plan.memory.bytes),
        spill: Some(scratch.path().display().to_string()),
    };
    if let Some(store) = store.as_mut() {
        store.begin_run(&record)?;
    }
    let mut log = RunLog { store: store.as_deref_mut(), record, published: false };
    let mut outcome = stages_in_order(&run, plan, options, catalog, elsewhere, &mut log, &scratch, on_stage);
    if outcome.is_ok() && !log.published {
        // A run log that cannot record the success records a failure, if it can.
        outcome = log.end("succeeded", None).map_err(RunError::from);
    }
    match &outcome {
        Ok(()) => {}
        Err(failure) => {
            if let Err(e) = log.end("failed", Some(failure.message.clone())) {
                tracing::warn!("the run log could not record the failure: {e}");
            }
        }
    }
    outcome
}

/// The run log: where it is kept (if anywhere), and this run's entry.
struct RunLog<'a> {
    store: Option<&'a mut (dyn GoldStore + 'static)>,
    record: RunRecord,
    /// Whether Gold's publish recorded the run's end.
    published: bool,
}

impl RunLog<'_> {
    fn add(&mut self, summary: &StageSummary, started_micros: i64) {
        self.record.tables.extend(summary.run_tables.iter().cloned());
        self.record.stages.push(stage_time(summary.stage, started_micros));
    }

    fn end(&mut self, status: &str, error: Option<String>) -> Result<(), StoreError> {
        let Some(store) = self.store.as_deref_mut() else { return Ok(()) };
        self.record.status = status.to_owned();
        self.record.error = error;
        self.record.ended_at = Some(date::rfc3339(now_micros()));
        store.end_run(&self.record)
    }
}

#[allow(clippy::too_many_arguments)]
fn stages_in_order(
    run: &Run,
    plan: &Plan,
    options: &RunOptions,
    catalog: &mut Option<Catalog>,
    mut elsewhere: Option<&mut (dyn Elsewhere + '_)>,
    log: &mut RunLog<'_>,
    scratch: &Scratch,
    on_stage: &mut dyn FnMut(&StageSummary),
) -> Result<(), RunError> {
    let mut bronze_partition = None;
    for stage in &options.stages {
        let started_micros = now_micros();
        let mut one_stage = || match stage {
            Stage::Bronze => {
                let summary = land_bronze(
                    run,
                    &plan.sources,
                    options.ingest_date.as_deref(),
                    options.workers,
                    plan.memory.bytes,
                    plan.keep_runs,
                )?;
                bronze_partition = Some(summary.partition.clone());
                Ok(summary)
            }
            Stage::Silver if plan.silver.tables.is_empty() => Ok(nothing(run, Stage::Silver)),
            Stage::Silver => {
                let partition = match bronze_partition.take() {
                    Some(partition) => partition,
                    None => latest_bronze(run, options.ingest_date.as_deref())?,
                };
                let catalog = load_catalog(catalog, &plan.plugins_dir)?;
                let scratch = scratch.folder("silver").map_err(|e| {
                    RunError::new(FailureKind::Store, format!("scratch folder {}: {e}", scratch.path().display()))
                })?;
                build_silver(run, plan, catalog, (partition, options.workers), scratch, elsewhere.as_deref_mut())
            }
            Stage::Gold if plan.gold.tables.is_empty() => Ok(nothing(run, Stage::Gold)),
            Stage::Gold => {
                let catalog = load_catalog(catalog, &plan.plugins_dir)?;
                let spill = scratch.folder("gold").map_err(|e| {
                    RunError::new(FailureKind::Store, format!("scratch folder {}: {e}", scratch.path().display()))
                })?;
                let silver_run = options.silver_run.as_deref();
                let elsewhere = elsewhere.as_deref_mut();
                build_gold(run, plan, catalog, log, (options.workers, silver_run), spill, (started_micros, elsewhere))
            }
        };
        let summary = match one_stage() {
            Ok(summary) => summary,
            Err(failure) => {
                // The failed stage's time too, for the run log.
                log.record.stages.push(stage_time(*stage, started_micros));
                return Err(failure);
            }
        };
        log.add(&summary, started_micros);
        medallion_common::memory::release_freed();
        on_stage(&summary);
        medallion_common::faults::pause_at(&format!("after-{}", stage.name()));
    }
    Ok(())
}

fn nothing(run: &Run, stage: Stage) -> StageSummary {
    StageSummary {
        stage,
        run_id: run.id.clone(),
        partition: String::new(),
        seconds: 0.0,
        written_to: String::new(),
        report: StageReport::Nothing,
        run_tables: Vec::new(),
    }
}

fn no_gold_store() -> RunError {
    RunError::config("gold.store is not set: give sqlite:PATH or a postgres:// URL")
}

/// The plugins of `dir`, loaded once per run (a file that does not load is
/// skipped with a warning; a step that names it then fails).
pub fn load_catalog<'a>(catalog: &'a mut Option<Catalog>, dir: &Path) -> Result<&'a Catalog, RunError> {
    let loaded = match catalog.take() {
        Some(loaded) => loaded,
        None => {
            let runtime = Runtime::new(Runtime::default_cache_dir())?;
            let scanned = Catalog::scan(&runtime, dir)?;
            for (path, error) in scanned.failures() {
                tracing::warn!(file = %path.display(), "plugin skipped: {error}");
            }
            scanned
        }
    };
    Ok(catalog.insert(loaded))
}

/// Lands `sources` in the lake's Bronze zone (the caller holds the run's
/// lock). Shared by `host ingest` and a run's Bronze stage.
pub fn land_bronze(
    run: &Run,
    sources: &[SourceSpec],
    ingest_date: Option<&str>,
    workers: usize,
    memory: u64,
    keep_runs: usize,
) -> Result<StageSummary, RunError> {
    let options = IngestOptions {
        ingest_date: resolve_ingest_date(ingest_date, run.started_micros)?,
        run_id: run.id.clone(),
        ingested_at_micros: run.started_micros,
        rows_per_file: BRONZE_ROWS_PER_FILE,
        row_group_rows: crate::budget::row_group_rows(memory),
        workers,
        keep_runs,
    };
    let started = Instant::now();
    let report = medallion_lake::ingest(&run.lake, sources, &options)?;
    let run_tables = report
        .tables
        .iter()
        .map(|t| RunTable {
            quarantined: t.quarantined,
            delta_version: t.delta_version,
            ..RunTable::new("bronze", &t.table, t.rows)
        })
        .collect();
    Ok(StageSummary {
        stage: Stage::Bronze,
        run_id: options.run_id,
        partition: format!("ingest_date={}", options.ingest_date),
        seconds: started.elapsed().as_secs_f64(),
        written_to: run.lake.url().to_owned(),
        report: StageReport::Bronze(report),
        run_tables,
    })
}

/// Checks an `--ingest-date`: a day that exists, written `YYYY-MM-DD`.
pub fn check_ingest_date(text: &str) -> Result<(), RunError> {
    match date::parse_iso(text) {
        Some(_) => Ok(()),
        None => Err(RunError::config(format!(
            "--ingest-date `{text}` is not a date: give a day that exists, written YYYY-MM-DD (like 2026-11-24)"
        ))),
    }
}

/// `--ingest-date`, checked, or today (UTC).
pub fn resolve_ingest_date(given: Option<&str>, now_micros: i64) -> Result<String, RunError> {
    match given {
        Some(text) => check_ingest_date(text).map(|()| text.to_owned()),
        None => Ok(date::rfc3339(now_micros)[..10].to_owned()),
    }
}

/// The Bronze partition of `--ingest-date`, or the latest one committed.
fn latest_bronze(run: &Run, ingest_date: Option<&str>) -> Result<String, RunError> {
    if ingest_date.is_some() {
        let date = resolve_ingest_date(ingest_date, run.started_micros)?;
        return Ok(format!("ingest_date={date}"));
    }
    let partitions = Manifest::partitions(&run.lake, "bronze")?;
    partitions.last().cloned().ok_or_else(|| {
        RunError::config(format!(
            "the lake {} has no Bronze partition yet\n  hint: run the whole pipeline, or `--only bronze` first",
            run.lake.url()
        ))
    })
}

fn build_silver(
    run: &Run,
    plan: &Plan,
    catalog: &Catalog,
    (partition, workers): (String, usize),
    scratch: std::path::PathBuf,
    elsewhere: Option<&mut (dyn Elsewhere + '_)>,
) -> Result<StageSummary, RunError> {
    let started = Instant::now();
    let options = SilverOptions {
        run_id: run.id.clone(),
        bronze_partition: partition.clone(),
        workers,
        batch_rows: BATCH_ROWS,
        limits: plan.limits,
        row_group_rows: crate::budget::row_group_rows(plan.memory.bytes),
        key_memory: crate::budget::key_memory(plan.memory.bytes),
        scratch,
        keep_runs: plan.keep_runs,
    };
    let report = match elsewhere {
        None => silver::build(&run.lake, &plan.silver, catalog, &options)?,
        Some(elsewhere) => {
            let bronze = Manifest::read(&run.lake, "bronze", &partition)?
                .ok_or_else(|| RunError::config(format!("no Bronze partition {partition} in {}", run.lake.url())))?;
            let written = elsewhere
                .silver(&run.lake, plan, catalog, &bronze, &run.id)
                .map_err(|e| RunError::new(e.kind, format!("silver: {}", e.message)))?;
            silver::publish(&run.lake, &plan.silver, catalog, &bronze, written, &options)?
        }
    };
    let run_tables = report
        .tables
        .iter()
        .map(|t| RunTable {
            quarantined: t.quarantined,
            reasons: t.reasons.clone(),
            plugin: t.plugin.clone(),
            delta_version: t.delta_version,
            ..RunTable::new("silver", &t.table, t.rows)
        })
        .collect();
    Ok(StageSummary {
        stage: Stage::Silver,
        run_id: run.id.clone(),
        partition: silver::PARTITION.to_owned(),
        seconds: started.elapsed().as_secs_f64(),
        written_to: run.lake.url().to_owned(),
        report: StageReport::Silver { report, from: partition },
        run_tables,
    })
}

/// Computes Gold and publishes it with the run's log entry, in one store
/// transaction.
fn build_gold(
    run: &Run,
    plan: &Plan,
    catalog: &Catalog,
    log: &mut RunLog<'_>,
    (workers, silver_run): (usize, Option<&str>),
    spill: std::path::PathBuf,
    (started_micros, elsewhere): (i64, Option<&mut (dyn Elsewhere + '_)>),
) -> Result<StageSummary, RunError> {
    let started = Instant::now();
    let options = GoldOptions {
        workers,
        batch_rows: BATCH_ROWS,
        limits: plan.limits,
        memory: plan.memory.bytes,
        spill,
        silver_run: silver_run.map(str::to_owned),
    };
    let (tables, reports) = match elsewhere {
        None => gold::compute(&run.lake, &plan.gold, &plan.silver, catalog, &options)?,
        Some(elsewhere) => {
            let mut query = |table: &str, sql: &str, files: &std::collections::BTreeMap<String, Vec<String>>| {
                elsewhere.gold_query(table, sql, files).map_err(|e| e.message)
            };
            gold::compute_elsewhere(&run.lake, &plan.gold, &plan.silver, catalog, &options, &mut query)?
        }
    };
    let computed_seconds = started.elapsed().as_secs_f64();
    let run_tables: Vec<RunTable> = reports
        .iter()
        .map(|t| RunTable { plugin: t.plugin.clone(), ..RunTable::new("gold", &t.table, t.rows) })
        .collect();
    let Some(store) = log.store.as_deref_mut() else { return Err(no_gold_store()) };
    let mut record = log.record.clone();
    record.status = "succeeded".to_owned();
    record.ended_at = Some(date::rfc3339(now_micros()));
    record.tables.extend(run_tables.iter().cloned());
    record.stages.push(stage_time(Stage::Gold, started_micros));
    cancel::check()?;
    store.publish(&tables, &record)?;
    log.published = true;
    // The publish is part of Gold's time: the entry is written again with
    // it (Gold is live already; a failure here only loses that figure).
    record.ended_at = Some(date::rfc3339(now_micros()));
    if let Some(gold) = record.stages.last_mut() {
        gold.seconds = started.elapsed().as_secs_f64();
        gold.peak_memory = medallion_common::memory::peak_resident_bytes();
    }
    if let Err(e) = store.end_run(&record) {
        tracing::warn!("the run log could not record Gold's publish time: {e}");
    }
    Ok(StageSummary {
        stage: Stage::Gold,
        run_id: run.id.clone(),
        partition: String::new(),
        seconds: started.elapsed().as_secs_f64(),
        written_to: store.describe(),
        report: StageReport::Gold { tables: reports, computed_seconds },
        run_tables,
    })
}

/// A stage that started at `started_micros` and ends now, for the run log.
fn stage_time(stage: Stage, started_micros: i64) -> StageTime {
    StageTime {
        stage: stage.name().to_owned(),
        started_at: date::rfc3339(started_micros),
        seconds: (now_micros() - started_micros).max(0) as f64 / 1e6,
        peak_memory: medallion_common::memory::peak_resident_bytes(),
    }
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_chosen_by_only_and_from() {
        assert_eq!(Stage::selection(None, None).ok(), Some(Stage::ALL.to_vec()));
        assert_eq!(Stage::selection(Some("silver"), None).ok(), Some(vec![Stage::Silver]));
        assert_eq!(Stage::selection(None, Some("silver")).ok(), Some(vec![Stage::Silver, Stage::Gold]));
        let unknown = Stage::selection(None, Some("platinum")).expect_err("no such stage");
        assert_eq!(unknown.kind, FailureKind::Config);
        assert!(unknown.message.contains("bronze, silver, gold"), "{}", unknown.message);
    }

    #[test]
    fn an_ingest_date_must_be_a_real_day() {
        assert_eq!(resolve_ingest_date(Some("2024-02-29"), 0).ok().as_deref(), Some("2024-02-29"));
        for bad in ["2026-13-45", "2023-02-31", "2026-1-1", "yesterday"] {
            let e = resolve_ingest_date(Some(bad), 0).expect_err(bad);
            assert!(e.message.contains(bad) && e.message.contains("YYYY-MM-DD"), "{}", e.message);
        }
        assert_eq!(resolve_ingest_date(None, 0).ok().as_deref(), Some("1970-01-01"));
    }
}
