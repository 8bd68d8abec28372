//! Silver: Bronze tables cleaned by plugins, then made relational
//! (de-duplication on the key, foreign keys, columns taken from parents,
//! derived columns), and tables derived by SQL; every rejected row kept in
//! quarantine with its reason, and every count checked.
//!
//! A table built from Bronze streams: no step holds the table. In an order
//! where parents come first:
//!
//! 1. the Bronze row groups are read in parallel by `workers` instances of
//!    the cleaning plugin (one if it is not stateless), each batch with a
//!    `_row` column, its position in the Bronze table; every input row must
//!    come back on `out` or on `rejected`, or the step fails;
//! 2. the `out` batches are taken in Bronze order as they are ready (a few
//!    row groups ahead at most); a row gets the first reason that applies:
//!    `duplicate_key` (a key seen on an earlier row), then `orphan_<parent>`
//!    per parent in order (its value is null or not among the parent's
//!    keys). What this remembers is keys: the keys seen, and each parent's
//!    keys with the columns children take (`rules`, `keys`);
//! 3. the kept rows get the parents' `take` columns and the `derive` columns
//!    (polars expressions, batch by batch), and are written in the table's
//!    `columns` order; a parent's keys are gathered as it is written.
//!
//! A `sql` table reads the tables it names back from the lake (only the
//! columns its query names) and runs its query with polars.
//!
//! Quarantine, per table, three Delta tables under `quarantine/silver/<table>/`:
//! `clean` holds the rows the plugin rejected with their original Bronze
//! values, `_reason` and `_row`; `checks` the rows the relational checks
//! rejected, with their cleaned values, `_reason` and `_row`; `nulled` the
//! values that did not parse and became null (`_row`, column, value,
//! `_reason`), so that nothing is lost.
//!
//! Conservation: Bronze rows = Silver rows + quarantined rows, per table; a
//! run where it does not hold fails. Each table is a Delta table
//! (`silver/<table>`), committed as a new version once every table is
//! built; then the zone's manifest (`silver/_commits/current.json`) names
//! the versions of this run, so the host's readers see the previous Silver
//! or the new one.
//!
//! Not for: what the rules are (the plugins' config and `pipeline.yaml` say
//! that); the host knows no table by name.

mod clean;
mod hive;
mod keys;
mod rules;
mod spill;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use medallion_common::work;
use medallion_lake::{Lake, LakeError, Manifest, ParquetTable, TableFiles};
use medallion_pipeline::{SilverSpec, SilverTableSpec};
use medallion_plugin::{Catalog, Limits, PluginError};
use medallion_store::PluginUsed;
use polars::prelude::DataFrame;

use crate::frame;

pub use hive::{Engine, table_ddl};
use rules::{ParentIndex, Rules};
use spill::KeyMemory;
use write::{Indexes, TableWriter};

/// The zone and the one partition Silver is published as (a snapshot).
pub const ZONE: &str = medallion_lake::SILVER_ZONE;
/// Silver's partition: the current snapshot.
pub const PARTITION: &str = medallion_lake::SILVER_PARTITION;
/// Bronze's lineage columns, which plugins do not see.
pub const LINEAGE: [&str; 3] = ["_source", "_ingested_at", "_run_id"];
/// The position column.
const ROW: &str = "_row";
/// The reason column.
const REASON: &str = "_reason";

/// How to build Silver.
#[derive(Debug, Clone)]
pub struct SilverOptions {
    /// This run's id.
    pub run_id: String,
    /// The Bronze partition read (`ingest_date=YYYY-MM-DD`).
    pub bronze_partition: String,
    /// Plugin instances run at once on one table.
    pub workers: usize,
    /// Rows per batch pushed to a plugin.
    pub batch_rows: usize,
    /// Per-instance plugin limits.
    pub limits: Limits,
    /// Rows per row group of the files written (see
    /// [`crate::budget::row_group_rows`]).
    pub row_group_rows: usize,
    /// A folder of the run's scratch space (see
    /// `medallion_common::scratch`): the tables a SQL table reads, copied
    /// from an HDFS lake.
    pub scratch: std::path::PathBuf,
    /// Bytes of keys (the bitmaps and position arrays of de-duplication and
    /// parent checks, the columns children take) held on the heap; past
    /// them, keys go to mapped files in `scratch` (see
    /// [`crate::budget::key_memory`]).
    pub key_memory: u64,
    /// Versions of each Silver table kept (see `history.keep_runs`).
    pub keep_runs: usize,
}

/// What building Silver did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SilverReport {
    /// Per table, in build order.
    pub tables: Vec<SilverTableReport>,
    /// The most bytes of keys in mapped files in the scratch folder at once,
    /// past their share of the memory budget (0: all on the heap).
    pub keys_spilled: u64,
}

/// What happened to one Silver table.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SilverTableReport {
    /// Silver table name.
    pub table: String,
    /// Where it came from: `bronze/<table>` or `sql`.
    pub source: String,
    /// Rows read from Bronze (0 for a SQL table).
    pub bronze_rows: u64,
    /// Rows in the Silver table.
    pub rows: u64,
    /// Rows in quarantine.
    pub quarantined: u64,
    /// Quarantined rows per reason.
    pub reasons: BTreeMap<String, u64>,
    /// Values that did not parse and became null, per reason (the rows stay
    /// in Silver; the values are kept in quarantine's `nulled-*` files).
    pub nulled: BTreeMap<String, u64>,
    /// The cleaning plugin: name, version, sha256.
    pub plugin: Option<PluginUsed>,
    /// Wall time, seconds.
    pub seconds: f64,
    /// The version of its Delta table committed.
    pub delta_version: Option<u64>,
}

/// A cleaning step streams Bronze through its plugin: it cannot give the
/// plugin columns computed over the whole input, nor an order.
fn streams(instance: &medallion_plugin::Instance) -> Result<(), String> {
    match instance.needs("in") {
        None => Ok(()),
        Some(_) => Err(format!(
            "plugin `{}` asks for columns computed over its whole input or for an order (`needs`), which a Silver cleaning step, streaming Bronze, does not give\n  hint: use it as a Gold step's `kpi`, or build the plugin without `needs`",
            instance.info().name
        )),
    }
}

/// A Silver build that failed: nothing was published.
#[derive(Debug, thiserror::Error)]
pub enum SilverError {
    /// The pipeline's `silver:` section cannot be run.
    #[error("silver: {0}")]
    Config(String),
    /// A plugin failed or broke the contract.
    #[error("silver table `{table}`: {source}")]
    Plugin {
        /// The table being built.
        table: String,
        /// What the plugin did.
        source: PluginError,
    },
    /// The lake failed.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// polars or the Arrow bridge failed.
    #[error("silver table `{table}`: {message}")]
    Engine {
        /// The table being built.
        table: String,
        /// What failed.
        message: String,
    },
    /// A stop was asked for.
    #[error(transparent)]
    Interrupted(#[from] medallion_common::cancel::Interrupted),
    /// Another table being built at the same time failed (its error is the
    /// one reported).
    #[error("stopped: another Silver table failed")]
    Stopped,
    /// A worker thread panicked.
    #[error(transparent)]
    Panicked(#[from] work::Panicked),
    /// Rows were lost or made up.
    #[error("silver table `{table}`: counts do not add up: {detail}")]
    Conservation {
        /// The table.
        table: String,
        /// The counts.
        detail: String,
    },
}

/// Builds every Silver table from the Bronze partition `options.bronze_partition`
/// and publishes them in one commit. On any error nothing is published.
pub fn build(
    lake: &Lake,
    spec: &SilverSpec,
    catalog: &Catalog,
    options: &SilverOptions,
) -> Result<SilverReport, SilverError> {
    let order = spec.order().map_err(SilverError::Config)?;
    let bronze = Manifest::read(lake, "bronze", &options.bronze_partition)?.ok_or_else(|| {
        SilverError::Config(format!(
            "no Bronze partition {} in {}\n  hint: land it first with `host run pipeline.yaml --only bronze`",
            options.bronze_partition,
            lake.url()
        ))
    })?;
    let wanted = rules::wanted_indexes(spec);
    let keys = KeyMemory::new(options.key_memory, options.scratch.join("keys"));
    let mut indexes: Indexes = HashMap::new();
    let mut report = SilverReport::default();
    let mut manifest =
        Manifest { run_id: options.run_id.clone(), committed_at: String::new(), tables: BTreeMap::new() };
    let mut left: Vec<&String> = order.iter().collect();
    let mut running: Vec<&String> = Vec::new();
    let mut failed: Option<SilverError> = None;
    let (done, finished) = std::sync::mpsc::channel::<(&String, Result<BuiltTable, SilverError>)>();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        loop {
            // Start tables whose inputs are built (in order), two at a time:
            // one table's single-threaded steps (its rules, writing Parquet)
            // overlap with the other's, and a table starts as soon as its
            // parents are done.
            while failed.is_none() && running.len() < TABLES_AT_ONCE {
                if let Err(e) = medallion_common::cancel::check() {
                    failed = Some(e.into());
                    break;
                }
                let Some(next) = left.iter().copied().find(|name| {
                    !running.contains(name) && spec.reads(name).iter().all(|read| manifest.tables.contains_key(read))
                }) else {
                    break;
                };
                let (indexes, built, done) = (indexes.clone(), manifest.clone(), done.clone());
                let (bronze, wanted, stop, keys) = (&bronze, &wanted, &stop, &keys);
                scope.spawn(move || {
                    let context = Context { bronze, catalog, indexes: &indexes, wanted, built: &built, stop, keys };
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        build_table(lake, spec, next, options, &context)
                    }))
                    .unwrap_or_else(|panic| Err(work::Panicked::from_payload(panic.as_ref()).into()));
                    // The receiver waits for every table it started.
                    let _ = done.send((next, result));
                });
                running.push(next);
            }
            if running.is_empty() {
                if failed.is_none() && !left.is_empty() {
                    failed = Some(SilverError::Config(format!("silver.tables: {} wait on each other", names(&left))));
                }
                break;
            }
            let Ok((name, result)) = finished.recv() else { break };
            running.retain(|r| *r != name);
            left.retain(|l| *l != name);
            match result {
                Ok(BuiltTable { files, report: table_report, indexes: built }) => {
                    manifest.tables.insert(name.clone(), files);
                    report.tables.push(table_report);
                    indexes.extend(built.into_iter().map(|(key, index)| (key, Arc::new(index))));
                    // Keep an index only while a table still to build reads it.
                    indexes.retain(|(kept, _), _| left.iter().any(|name| spec.reads(name).contains(kept)));
                    medallion_common::memory::release_freed();
                }
                Err(e) => {
                    // The first error is the one reported; the tables still
                    // running stop at their next batch.
                    failed.get_or_insert(e);
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    report.tables.sort_by_key(|t| order.iter().position(|name| *name == t.table));
    report.keys_spilled = keys.most_mapped();
    if report.keys_spilled > 0 {
        tracing::info!(
            "keys past their share of the memory budget ({}): at most {} at once in mapped files under {}",
            medallion_common::memory::size_text(options.key_memory),
            medallion_common::memory::size_text(report.keys_spilled),
            options.scratch.join("keys").display()
        );
    }
    commit(lake, manifest, &mut report, options.keep_runs)?;
    Ok(report)
}

/// Commits the tables of `manifest` as this run's Silver, and notes in
/// `report` the Delta version of each.
fn commit(lake: &Lake, mut manifest: Manifest, report: &mut SilverReport, keep_runs: usize) -> Result<(), SilverError> {
    medallion_common::cancel::check()?;
    manifest.committed_at = medallion_common::date::rfc3339(now_micros());
    manifest.commit(lake, ZONE, PARTITION, keep_runs)?;
    for table in &mut report.tables {
        table.delta_version = manifest.version_of(&format!("{ZONE}/{}", table.table));
    }
    Ok(())
}

/// A Silver table written by another engine (the Spark driver, through the
/// Python module): its files in the lake, lake-relative, in row order, and
/// the reasons it counted. What the files hold is counted again from their
/// footers by [`publish`].
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Written {
    /// The Silver table.
    pub table: String,
    /// Its data files (`silver/<table>/...`).
    pub files: Vec<String>,
    /// Its quarantine files (`quarantine/silver/<table>/{clean,checks,nulled}/...`).
    #[serde(default)]
    pub quarantine_files: Vec<String>,
    /// Quarantined rows per reason.
    #[serde(default)]
    pub reasons: BTreeMap<String, u64>,
    /// Values made null per reason.
    #[serde(default)]
    pub nulled: BTreeMap<String, u64>,
    /// Wall time, seconds.
    #[serde(default)]
    pub seconds: f64,
}

/// Checks and commits Silver tables another engine wrote ([`Written`]),
/// from the Bronze partition `bronze` (`options.bronze_partition`): every
/// table of `spec` is there, its rows and quarantined rows counted from the
/// files add up to its Bronze table's and to its reasons, and its cleaning
/// plugin is the one the catalog gives (the run log names it). Then one
/// commit, as [`build`]'s. On any error nothing is published.
pub fn publish(
    lake: &Lake,
    spec: &SilverSpec,
    catalog: &Catalog,
    bronze: &Manifest,
    written: Vec<Written>,
    options: &SilverOptions,
) -> Result<SilverReport, SilverError> {
    let order = spec.order().map_err(SilverError::Config)?;
    let mut manifest =
        Manifest { run_id: options.run_id.clone(), committed_at: String::new(), tables: BTreeMap::new() };
    let mut report = SilverReport::default();
    for name in &order {
        let table = &spec.tables[name];
        let engine = |message: String| engine_error(name, message);
        let done = written.iter().find(|w| &w.table == name).ok_or_else(|| engine("it was not built".to_owned()))?;
        let rows = rows_in(lake, &done.files)?;
        // Nulled values are kept beside rows that stay in Silver.
        let nulled_folder = format!("quarantine/{ZONE}/{name}/nulled/");
        let set_aside: Vec<String> =
            done.quarantine_files.iter().filter(|f| !f.starts_with(&nulled_folder)).cloned().collect();
        let quarantined = rows_in(lake, &set_aside)?;
        let counted: u64 = done.reasons.values().sum();
        if counted != quarantined {
            return Err(SilverError::Conservation {
                table: name.clone(),
                detail: format!("its quarantine files hold {quarantined} rows, its reasons count {counted}"),
            });
        }
        let (source, bronze_rows, plugin) = match (&table.from, &table.clean) {
            (Some(from), Some(step)) => {
                let files = bronze.tables.get(from).ok_or_else(|| {
                    SilverError::Config(format!(
                        "silver.tables.{name}: Bronze table `{from}` is not in partition {}",
                        options.bronze_partition
                    ))
                })?;
                conserved(name, from, files.rows, rows, quarantined, &done.reasons)?;
                let plugin = catalog.resolve(&step.plugin, step.version.as_deref()).ok_or_else(|| {
                    SilverError::Config(format!("silver.tables.{name}.clean: no plugin `{}`", step.plugin))
                })?;
                let info = plugin.info();
                let used = PluginUsed {
                    name: info.name.clone(),
                    version: info.version.clone(),
                    sha256: plugin.sha256().to_owned(),
                    config: step.config.clone(),
                };
                (format!("bronze/{from}"), files.rows, Some(used))
            }
            _ => ("sql".to_owned(), 0, None),
        };
        let files_source = match plugin {
            Some(_) => format!("{source}/{}", options.bronze_partition),
            None => source.clone(),
        };
        report.tables.push(SilverTableReport {
            table: name.clone(),
            source,
            bronze_rows,
            rows,
            quarantined,
            reasons: done.reasons.clone(),
            nulled: done.nulled.clone(),
            plugin,
            seconds: done.seconds,
            delta_version: None,
        });
        let files = TableFiles {
            source: files_source,
            files: done.files.clone(),
            rows,
            quarantine_files: done.quarantine_files.clone(),
            quarantined,
            reasons: done.reasons.clone(),
            ..TableFiles::default()
        };
        manifest.tables.insert(name.clone(), files);
    }
    if let Some(extra) = written.iter().find(|w| !spec.tables.contains_key(&w.table)) {
        return Err(engine_error(&extra.table, "no such Silver table in the pipeline"));
    }
    commit(lake, manifest, &mut report, options.keep_runs)?;
    Ok(report)
}

/// The rows in Parquet files of the lake, from their footers.
fn rows_in(lake: &Lake, files: &[String]) -> Result<u64, SilverError> {
    if files.is_empty() {
        return Ok(0);
    }
    Ok(ParquetTable::open(lake, files, Arc::new(Schema::empty()))?.rows())
}

/// Checks that every one of the `bronze` rows of Bronze table `from` is
/// accounted for in Silver table `table`: `rows` kept and `quarantined` set
/// aside (by `reasons`).
fn conserved(
    table: &str,
    from: &str,
    bronze: u64,
    rows: u64,
    quarantined: u64,
    reasons: &BTreeMap<String, u64>,
) -> Result<(), SilverError> {
    if bronze == rows + quarantined {
        return Ok(());
    }
    let detail = format!("Bronze `{from}` has {bronze} rows, Silver {rows}, quarantine {quarantined} ({reasons:?})");
    Err(SilverError::Conservation { table: table.to_owned(), detail })
}

/// Checks the `silver:` section without data: every cleaning plugin exists
/// and accepts its config, and the keys, parents, derived columns, column
/// lists and SQL queries fit the columns each step produces. Returns each
/// table as an empty frame with its schema (for checking Gold), or the path
/// in the pipeline file of what is wrong and why.
pub fn check(
    spec: &SilverSpec,
    catalog: &Catalog,
    limits: Limits,
) -> Result<HashMap<String, DataFrame>, (String, String)> {
    let order = spec.order().map_err(|e| ("silver.tables".to_owned(), e))?;
    let wanted = rules::wanted_indexes(spec);
    let memory = KeyMemory::unbounded();
    let mut frames: HashMap<String, DataFrame> = HashMap::new();
    let mut indexes: Indexes = HashMap::new();
    for name in &order {
        let table = &spec.tables[name];
        let at = |field: &str| format!("silver.tables.{name}.{field}");
        let schema = match (&table.clean, &table.sql) {
            (Some(step), _) => {
                let plugin = catalog
                    .resolve(&step.plugin, step.version.as_deref())
                    .ok_or_else(|| (at("clean.plugin"), catalog.missing(&step.plugin, step.version.as_deref())))?;
                medallion_plugin::check_ports(plugin.info(), &["in"], &["out", "rejected"])
                    .map_err(|e| (at("clean.plugin"), e))?;
                let instance = plugin
                    .instantiate(&step.config.to_string(), limits)
                    .map_err(|e| (at("clean.config"), e.to_string()))?;
                streams(&instance).map_err(|e| (at("clean.plugin"), e))?;
                let Some(schema) = instance.outputs().iter().find(|p| p.name == "out").and_then(|p| p.schema.clone())
                else {
                    // A plugin that does not declare its `out` schema cannot be
                    // checked further without data.
                    continue;
                };
                // A table whose parent could not be checked cannot be either.
                if table.parents.iter().any(|p| !frames.contains_key(&p.table)) {
                    continue;
                }
                Rules::new(name, table, &schema, &indexes, &memory).map_err(|e| (at(""), e.to_string()))?.schema
            }
            // A table over one that could not be checked cannot be either.
            (None, Some(_)) if spec.reads(name).iter().any(|read| !frames.contains_key(read)) => continue,
            (None, Some(sql)) => {
                let lazy = frames
                    .iter()
                    .map(|(read, frame)| (read.clone(), polars::prelude::IntoLazy::lazy(frame.clone())))
                    .collect();
                let frame = rules::run_sql(name, sql, &lazy).map_err(|e| (at("sql"), e.to_string()))?;
                frame::arrow_schema(&frame).map_err(|e| (at("sql"), e.to_string()))?
            }
            (None, None) => continue,
        };
        for ((parent, key), wanted) in wanted.iter().filter(|((parent, _), _)| parent == name) {
            let index = ParentIndex::new(parent, key, &wanted.take, schema.clone(), &memory)
                .map_err(|e| (wanted.asked_by.clone(), e))?;
            indexes.insert((parent.clone(), key.clone()), Arc::new(index));
        }
        let frame = frame::to_polars(&schema, &[]).map_err(|e| (at(""), e.to_string()))?;
        frames.insert(name.clone(), frame);
    }
    Ok(frames)
}

/// How many Silver tables are built at the same time.
const TABLES_AT_ONCE: usize = 2;

/// A built Silver table.
struct BuiltTable {
    /// Its files, as the commit lists them.
    files: TableFiles,
    /// What happened to its rows.
    report: SilverTableReport,
    /// Its keys, for the tables whose parent it is.
    indexes: Vec<((String, String), ParentIndex)>,
}

/// What building one table reads besides its own spec.
struct Context<'a> {
    /// The Bronze partition.
    bronze: &'a Manifest,
    catalog: &'a Catalog,
    /// The parents' keys.
    indexes: &'a Indexes,
    /// The indexes every table must keep of itself.
    wanted: &'a BTreeMap<(String, String), rules::Wanted>,
    /// The tables built so far (a `sql` table reads them back).
    built: &'a Manifest,
    /// Raised when a table fails: the others stop at their next batch.
    stop: &'a std::sync::atomic::AtomicBool,
    /// Where keys are held.
    keys: &'a Arc<KeyMemory>,
}

/// Builds one Silver table, from Bronze or by SQL over the tables it reads.
fn build_table(
    lake: &Lake,
    spec: &SilverSpec,
    name: &str,
    options: &SilverOptions,
    context: &Context<'_>,
) -> Result<BuiltTable, SilverError> {
    let table = &spec.tables[name];
    let started = Instant::now();
    let builder = TableBuilder { lake, name, options, stop: context.stop, keys: context.keys };
    let mut built = match &table.from {
        Some(from) => {
            let bronze_files = context.bronze.tables.get(from).ok_or_else(|| {
                SilverError::Config(format!(
                    "silver.tables.{name}: Bronze table `{from}` is not in partition {} (it has {})",
                    options.bronze_partition,
                    context.bronze.tables.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            builder.build_from_bronze(from, table, bronze_files, context)?
        }
        None => builder.build_from_sql(spec, table, context)?,
    };
    let table_report = &mut built.report;
    table_report.seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        table = %name,
        rows = table_report.rows,
        quarantined = table_report.quarantined,
        seconds = format!("{:.2}", table_report.seconds),
        "silver table built"
    );
    Ok(built)
}

fn names(tables: &[&String]) -> String {
    tables.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
}

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Builds one table.
struct TableBuilder<'a> {
    lake: &'a Lake,
    name: &'a str,
    options: &'a SilverOptions,
    /// Raised when another table failed.
    stop: &'a std::sync::atomic::AtomicBool,
    /// Where keys are held.
    keys: &'a Arc<KeyMemory>,
}

impl TableBuilder<'_> {
    /// The folder of the table's Delta table in `zone`.
    fn folder(&self, zone: &str) -> String {
        format!("{zone}/{}", self.name)
    }

    fn engine_error(&self, e: impl std::fmt::Display) -> SilverError {
        engine_error(self.name, e)
    }

    fn build_from_bronze(
        &self,
        from: &str,
        table: &SilverTableSpec,
        bronze: &TableFiles,
        context: &Context<'_>,
    ) -> Result<BuiltTable, SilverError> {
        let step =
            table.clean.as_ref().ok_or_else(|| SilverError::Config(format!("{}: no `clean` step", self.name)))?;
        let plugin = context.catalog.resolve(&step.plugin, step.version.as_deref()).ok_or_else(|| {
            SilverError::Config(format!(
                "silver.tables.{}.clean: no plugin `{}`{} in the plugins folder\n  hint: `host plugins list` shows what is there; build them with `cargo xtask build-plugins`",
                self.name,
                step.plugin,
                step.version.as_deref().map(|v| format!(" version {v}")).unwrap_or_default()
            ))
        })?;
        let input = ParquetTable::open(self.lake, &bronze.files, Arc::new(Schema::empty()))?;
        if input.rows() != bronze.rows {
            return Err(SilverError::Conservation {
                table: self.name.to_owned(),
                detail: format!("Bronze `{from}` holds {} rows but its commit says {}", input.rows(), bronze.rows),
            });
        }
        // Made when the first cleaned rows arrive (their schema is the
        // plugin's `out`), or after cleaning from the declared schema.
        let mut rules: Option<Rules> = None;
        let mut writer: Option<TableWriter> = None;
        let mut checks = clean::Quarantine::new(self, "checks");
        let mut rules_seconds = 0.0;
        let started = Instant::now();
        let cleaned = self.clean(&input, &plugin, &step.config.to_string(), |batches: Vec<RecordBatch>| {
            let Some(first) = batches.first() else { return Ok(()) };
            let started = Instant::now();
            let rules = match &mut rules {
                Some(rules) => rules,
                None => rules.insert(Rules::new(self.name, table, &first.schema(), context.indexes, self.keys)?),
            };
            let applied = rules.apply(&batches)?;
            rules_seconds += started.elapsed().as_secs_f64();
            checks.write(&applied.rejected)?;
            let writer = match &mut writer {
                Some(writer) => writer,
                None => writer.insert(TableWriter::new(self, rules.schema.clone(), context.wanted)?),
            };
            writer.write(&applied.kept)
        })?;
        let rules = match rules {
            Some(rules) => rules,
            None => {
                let schema = cleaned.declared.clone().ok_or_else(|| {
                    self.engine_error("the cleaning plugin declares no schema for `out` and emitted no batch")
                })?;
                Rules::new(self.name, table, &schema, context.indexes, self.keys)?
            }
        };
        let writer = match writer {
            Some(writer) => writer,
            None => TableWriter::new(self, rules.schema.clone(), context.wanted)?,
        };
        let written = writer.finish()?;
        let checks = checks.finish()?;
        let mut reasons = cleaned.reasons;
        for (reason, count) in checks.reasons {
            *reasons.entry(reason).or_insert(0) += count;
        }
        let rows = written.rows;
        let quarantined = cleaned.quarantined + checks.rows;
        conserved(self.name, from, input.rows(), rows, quarantined, &reasons)?;
        tracing::debug!(
            table = %self.name,
            seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
            rules_s = format!("{rules_seconds:.2}"),
            "silver table steps"
        );
        let mut quarantine_files = cleaned.quarantine_files;
        quarantine_files.extend(checks.files);
        let info = plugin.info();
        let report = SilverTableReport {
            table: self.name.to_owned(),
            source: format!("bronze/{from}"),
            bronze_rows: input.rows(),
            rows,
            quarantined,
            reasons: reasons.clone(),
            nulled: cleaned.nulled,
            plugin: Some(PluginUsed {
                name: info.name.clone(),
                version: info.version.clone(),
                sha256: plugin.sha256().to_owned(),
                config: step.config.clone(),
            }),
            seconds: 0.0,
            delta_version: None,
        };
        let source = format!("bronze/{from}/{}", self.options.bronze_partition);
        let files = TableFiles {
            source,
            files: written.files,
            rows,
            quarantine_files,
            quarantined,
            reasons,
            ..TableFiles::default()
        };
        Ok(BuiltTable { files, report, indexes: written.indexes })
    }

    fn build_from_sql(
        &self,
        spec: &SilverSpec,
        table: &SilverTableSpec,
        context: &Context<'_>,
    ) -> Result<BuiltTable, SilverError> {
        let sql = table.sql.as_deref().unwrap_or_default();
        // The tables it reads as Parquet scans, for polars' streaming
        // engine: a query over a fact table holds its result, not the table.
        let mut frames = HashMap::new();
        for read in spec.reads(self.name) {
            let files = context.built.tables.get(&read).map(|t| t.files.as_slice()).unwrap_or_default();
            let copy_to = self.options.scratch.join(self.name).join(&read);
            let engine = |message| engine_error(self.name, message);
            let frame = crate::read::scan(self.lake, &read, files, &copy_to, self.options.workers, engine)?;
            frames.insert(read, frame);
        }
        let mut frame = rules::run_sql(self.name, sql, &frames)?;
        drop(frames);
        let schema = frame::arrow_schema(&frame).map_err(|e| self.engine_error(e))?;
        let batches = frame::from_polars(&mut frame).map_err(|e| self.engine_error(e))?;
        drop(frame);
        let mut writer = TableWriter::new(self, schema, context.wanted)?;
        writer.write(&batches)?;
        let written = writer.finish()?;
        let rows = written.rows;
        let report = SilverTableReport {
            table: self.name.to_owned(),
            source: "sql".to_owned(),
            rows,
            ..SilverTableReport::default()
        };
        let files = TableFiles { source: "sql".to_owned(), files: written.files, rows, ..TableFiles::default() };
        Ok(BuiltTable { files, report, indexes: written.indexes })
    }
}

/// An error of polars or the Arrow bridge while building `table`.
fn engine_error(table: &str, e: impl std::fmt::Display) -> SilverError {
    SilverError::Engine { table: table.to_owned(), message: e.to_string() }
}
