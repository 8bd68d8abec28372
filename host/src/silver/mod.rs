//! Silver: Bronze tables cleaned by plugins, then made relational with
//! polars (de-duplication on the key, foreign keys, columns taken from
//! parents, derived columns), and tables derived by SQL; every rejected row
//! kept in quarantine with its reason, and every count checked.
//!
//! For each table built from Bronze, in an order where parents come first:
//!
//! 1. the Bronze row groups are read in parallel by `workers` instances of
//!    the cleaning plugin (one if it is not stateless), each batch with a
//!    `_row` column, its position in the Bronze table; every input row must
//!    come back on `out` or on `rejected`, or the step fails;
//! 2. the `out` batches, in Bronze order, become one polars frame through the
//!    C Data Interface; a row gets the first reason that applies:
//!    `duplicate_key` (a key seen on an earlier row), then `orphan_<parent>`
//!    per parent in order (its value is null or not among the parent's keys);
//! 3. the kept rows get the parents' `take` columns and the `derive` columns,
//!    and are written in the table's `columns` order.
//!
//! Quarantine, per table under `quarantine/silver/<table>/current/run=<id>/`:
//! `clean-*.parquet` holds the rows the plugin rejected with their original
//! Bronze values, `_reason` and `_row`; `checks-*.parquet` the rows the
//! relational checks rejected, with their cleaned values, `_reason` and `_row`;
//! `nulled-*.parquet` the values that did not parse and became null (`_row`,
//! column, value, `_reason`), so that nothing is lost.
//!
//! Conservation: Bronze rows = Silver rows + quarantined rows, per table; a
//! run where it does not hold fails. The whole zone is published by one
//! commit (`silver/_commits/current.json`), so readers see the previous
//! Silver or the new one.
//!
//! Not for: what the rules are (the plugins' config and `pipeline.yaml` say
//! that); the host knows no table by name.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, StringViewArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use polars::prelude::{DataFrame, Expr, IntoLazy, LazyFrame, NULL, PolarsError, col, lit, when};

use crate::frame::{self, FrameError};
use crate::lake::{Lake, LakeError, Manifest, ParquetTable, PartWriter, TableFiles, table_properties};
use crate::pipeline::{SilverSpec, SilverTableSpec};
use crate::plugin::{Catalog, Limits, LoadedPlugin, PluginError};
use crate::progress::{Measure, Task};

/// The zone and the one partition Silver is published as (a snapshot).
pub const ZONE: &str = "silver";
/// Silver's partition: the current snapshot.
pub const PARTITION: &str = "current";
/// Bronze's lineage columns, which plugins do not see.
const LINEAGE: [&str; 3] = ["_source", "_ingested_at", "_run_id"];
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
}

/// What building Silver did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SilverReport {
    /// Per table, in build order.
    pub tables: Vec<SilverTableReport>,
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
}

/// Which plugin produced a table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginUsed {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// sha256 of its `.wasm`.
    pub sha256: String,
    /// The config it ran with (JSON).
    pub config: serde_json::Value,
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
    Interrupted(#[from] crate::cancel::Interrupted),
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
    let mut frames: HashMap<String, DataFrame> = HashMap::new();
    let mut report = SilverReport::default();
    let mut manifest =
        Manifest { run_id: options.run_id.clone(), committed_at: String::new(), tables: BTreeMap::new() };
    let mut left: Vec<&String> = order.iter().collect();
    while !left.is_empty() {
        crate::cancel::check()?;
        // The next tables (in order) whose inputs are built, two at a time:
        // a table's single-threaded steps (relational checks, writing
        // Parquet) then overlap with the other's, and memory stays bounded.
        let ready: Vec<&String> = left
            .iter()
            .copied()
            .filter(|name| spec.reads(name).iter().all(|read| manifest.tables.contains_key(read)))
            .take(TABLES_AT_ONCE)
            .collect();
        if ready.is_empty() {
            return Err(SilverError::Config(format!("silver.tables: {} wait on each other", names(&left))));
        }
        let built: Vec<Result<Built, SilverError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ready
                .iter()
                .map(|name| scope.spawn(|| build_table(lake, spec, name, &bronze, catalog, options, &frames)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
        });
        for (name, result) in ready.iter().zip(built) {
            let (frame, files, table_report) = result?;
            manifest.tables.insert((*name).clone(), files);
            report.tables.push(table_report);
            frames.insert((*name).clone(), frame);
        }
        left.retain(|name| !ready.contains(name));
        // Keep a frame only while a table still to build reads it.
        frames.retain(|kept, _| left.iter().any(|name| spec.reads(name).contains(kept)));
    }
    crate::cancel::check()?;
    manifest.committed_at = crate::lake::rfc3339(now_micros());
    manifest.commit(lake, ZONE, PARTITION)?;
    Ok(report)
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
    let mut frames: HashMap<String, DataFrame> = HashMap::new();
    for name in &order {
        let table = &spec.tables[name];
        let rules = Rules { name };
        let at = |field: &str| format!("silver.tables.{name}.{field}");
        let frame = match (&table.clean, &table.sql) {
            (Some(step), _) => {
                let plugin = catalog
                    .resolve(&step.plugin, step.version.as_deref())
                    .ok_or_else(|| (at("clean.plugin"), catalog.missing(&step.plugin, step.version.as_deref())))?;
                crate::plugin::check_ports(plugin.info(), &["in"], &["out", "rejected"])
                    .map_err(|e| (at("clean.plugin"), e))?;
                let instance = plugin
                    .instantiate(&step.config.to_string(), limits)
                    .map_err(|e| (at("clean.config"), e.to_string()))?;
                let Some(schema) = instance.outputs().iter().find(|p| p.name == "out").and_then(|p| p.schema.clone())
                else {
                    // A plugin that does not declare its `out` schema cannot be
                    // checked further without data.
                    continue;
                };
                let mut empty = frame::to_polars(&schema, &[]).map_err(|e| (at("clean"), e.to_string()))?;
                rules
                    .relational(&mut empty, table, &frames)
                    .map(|(kept, _)| kept)
                    .map_err(|e| (at(""), e.to_string()))?
            }
            (None, Some(sql)) => rules.run_sql(sql, &frames).map_err(|e| (at("sql"), e.to_string()))?,
            (None, None) => continue,
        };
        frames.insert(name.clone(), frame);
    }
    Ok(frames)
}

/// How many Silver tables are built at the same time.
const TABLES_AT_ONCE: usize = 2;

/// A built Silver table: its frame (for the tables that read it), its files
/// and its report.
type Built = (DataFrame, TableFiles, SilverTableReport);

/// Builds one Silver table, from Bronze or by SQL over the `frames` it reads.
fn build_table(
    lake: &Lake,
    spec: &SilverSpec,
    name: &str,
    bronze: &Manifest,
    catalog: &Catalog,
    options: &SilverOptions,
    frames: &HashMap<String, DataFrame>,
) -> Result<Built, SilverError> {
    let table = &spec.tables[name];
    let started = Instant::now();
    let builder = TableBuilder { lake, name, options };
    let (frame, files, mut table_report) = match &table.from {
        Some(from) => {
            let bronze_files = bronze.tables.get(from).ok_or_else(|| {
                SilverError::Config(format!(
                    "silver.tables.{name}: Bronze table `{from}` is not in partition {} (it has {})",
                    options.bronze_partition,
                    bronze.tables.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            builder.build_from_bronze(from, table, bronze_files, catalog, frames)?
        }
        None => builder.build_from_sql(table.sql.as_deref().unwrap_or_default(), frames)?,
    };
    table_report.seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        table = %name,
        rows = table_report.rows,
        quarantined = table_report.quarantined,
        seconds = format!("{:.2}", table_report.seconds),
        "silver table built"
    );
    Ok((frame, files, table_report))
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
}

/// What the cleaning step produced.
struct Cleaned {
    out_schema: SchemaRef,
    out: Vec<RecordBatch>,
    quarantine_files: Vec<String>,
    quarantined: u64,
    reasons: BTreeMap<String, u64>,
    nulled: BTreeMap<String, u64>,
}

/// A plugin's batches by port, for one row group.
#[derive(Default, Clone)]
struct Ported {
    out: Vec<RecordBatch>,
    rejected: Vec<RecordBatch>,
    nulled: Vec<RecordBatch>,
}

impl TableBuilder<'_> {
    fn folder(&self, zone: &str) -> String {
        format!("{zone}/{}/{PARTITION}/run={}", self.name, self.options.run_id)
    }

    fn engine_error(&self, e: impl std::fmt::Display) -> SilverError {
        Rules { name: self.name }.engine_error(e)
    }

    fn build_from_bronze(
        &self,
        from: &str,
        table: &SilverTableSpec,
        bronze: &TableFiles,
        catalog: &Catalog,
        frames: &HashMap<String, DataFrame>,
    ) -> Result<(DataFrame, TableFiles, SilverTableReport), SilverError> {
        let step =
            table.clean.as_ref().ok_or_else(|| SilverError::Config(format!("{}: no `clean` step", self.name)))?;
        let plugin = catalog.resolve(&step.plugin, step.version.as_deref()).ok_or_else(|| {
            SilverError::Config(format!(
                "silver.tables.{}.clean: no plugin `{}`{} in the plugins folder\n  hint: `host plugins list` shows what is there; build them with `cargo xtask build-plugins`",
                self.name,
                step.plugin,
                step.version.as_deref().map(|v| format!(" version {v}")).unwrap_or_default()
            ))
        })?;
        let config = step.config.to_string();
        let input = ParquetTable::open(self.lake, &bronze.files, Arc::new(Schema::empty()))?;
        if input.rows() != bronze.rows {
            return Err(SilverError::Conservation {
                table: self.name.to_owned(),
                detail: format!("Bronze `{from}` holds {} rows but its commit says {}", input.rows(), bronze.rows),
            });
        }
        let started = std::time::Instant::now();
        let cleaned = self.clean(&input, &plugin, &config)?;
        let clean_seconds = started.elapsed().as_secs_f64();
        let mut frame = frame::to_polars(&cleaned.out_schema, &cleaned.out).map_err(|e| self.engine_error(e))?;
        drop(cleaned.out);
        let (kept, rejected) = Rules { name: self.name }.relational(&mut frame, table, frames)?;
        let relational_seconds = started.elapsed().as_secs_f64() - clean_seconds;
        let mut reasons = cleaned.reasons;
        count_reasons(&rejected, &mut reasons).map_err(|e| self.engine_error(e))?;
        let rows = kept.height() as u64;
        let checks_rejected = rejected.height() as u64;
        let quarantined = cleaned.quarantined + checks_rejected;
        if input.rows() != rows + quarantined {
            return Err(SilverError::Conservation {
                table: self.name.to_owned(),
                detail: format!(
                    "Bronze `{from}` has {} rows, Silver {rows}, quarantine {quarantined} ({reasons:?})",
                    input.rows()
                ),
            });
        }
        let (files, written) = self.write(&kept, &self.folder(ZONE), "part")?;
        let mut quarantine_files = cleaned.quarantine_files;
        if checks_rejected > 0 {
            let (checks, _) = self.write(&rejected, &self.folder("quarantine/silver"), "checks")?;
            quarantine_files.extend(checks);
        }
        debug_assert_eq!(written, rows);
        tracing::debug!(
            table = %self.name,
            clean_s = format!("{clean_seconds:.2}"),
            relational_s = format!("{relational_seconds:.2}"),
            write_s = format!("{:.2}", started.elapsed().as_secs_f64() - clean_seconds - relational_seconds),
            "silver table steps"
        );
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
        };
        let files = TableFiles {
            source: format!("bronze/{from}/{}", self.options.bronze_partition),
            files,
            rows,
            quarantine_files,
            quarantined,
            reasons,
        };
        Ok((kept, files, report))
    }

    /// Runs the cleaning plugin over every row group; writes its rejects to
    /// quarantine and returns its `out` batches in Bronze order.
    fn clean(&self, input: &ParquetTable, plugin: &Arc<LoadedPlugin>, config: &str) -> Result<Cleaned, SilverError> {
        let groups = input.row_groups();
        let workers = if plugin.info().stateless { self.options.workers.clamp(1, groups.len().max(1)) } else { 1 };
        let data_columns: Vec<usize> = input
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !LINEAGE.contains(&f.name().as_str()))
            .map(|(i, _)| i)
            .collect();
        let task = Task::open("silver", self.name, Some(input.rows()), Measure::Rows);
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Ported>>> = Mutex::new(vec![None; groups.len()]);
        let out_schema: Mutex<Option<SchemaRef>> = Mutex::new(None);
        let plugin_error = |source: PluginError| SilverError::Plugin { table: self.name.to_owned(), source };
        std::thread::scope(|scope| -> Result<(), SilverError> {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| -> Result<(), SilverError> {
                        let mut instance = plugin.instantiate(config, self.options.limits).map_err(plugin_error)?;
                        if let Some(port) = instance.outputs().iter().find(|p| p.name == "out")
                            && let Some(schema) = &port.schema
                        {
                            out_schema.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(schema.clone());
                        }
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            let Some(group) = groups.get(index) else { break };
                            let mut ported = Ported::default();
                            let mut position = group.offset;
                            for batch in input.read(self.lake, group, self.options.batch_rows)? {
                                crate::cancel::check()?;
                                let batch = with_positions(&batch?, &data_columns, position)
                                    .map_err(|e| self.engine_error(e))?;
                                position += batch.num_rows() as u64;
                                let outputs = instance.push("in", &batch).map_err(plugin_error)?;
                                task.advance(batch.num_rows() as u64, None);
                                self.collect(batch.num_rows(), outputs, &mut ported)?;
                            }
                            results.lock().unwrap_or_else(PoisonError::into_inner)[index] = Some(ported);
                        }
                        let outputs = instance.finish().map_err(plugin_error)?;
                        let mut late = Ported::default();
                        self.collect(0, outputs, &mut late)?;
                        if !late.out.is_empty() || !late.rejected.is_empty() {
                            return Err(SilverError::Plugin {
                                table: self.name.to_owned(),
                                source: PluginError::BadOutput {
                                    plugin: plugin.info().name.clone(),
                                    call: crate::plugin::Call::Finish,
                                    port: "out".to_owned(),
                                    cause: "a cleaning plugin must emit each row when it is pushed, not at `finish`"
                                        .to_owned(),
                                },
                            });
                        }
                        Ok(())
                    })
                })
                .collect();
            for handle in handles {
                handle.join().unwrap_or_else(|_| Err(self.engine_error("a cleaning worker panicked")))?;
            }
            Ok(())
        })?;
        task.finish();
        let mut out = Vec::new();
        let mut rejected = Vec::new();
        let mut nulled = Vec::new();
        for group in results.into_inner().unwrap_or_else(PoisonError::into_inner).into_iter().flatten() {
            out.extend(group.out);
            rejected.extend(group.rejected);
            nulled.extend(group.nulled);
        }
        let out_schema = out
            .first()
            .map(RecordBatch::schema)
            .or_else(|| out_schema.into_inner().unwrap_or_else(PoisonError::into_inner))
            .ok_or_else(|| {
                self.engine_error("the cleaning plugin declares no schema for `out` and emitted no batch")
            })?;
        let mut reasons = BTreeMap::new();
        let (mut quarantine_files, quarantined) = self.quarantine(&rejected, "clean", &mut reasons)?;
        let mut nulled_reasons = BTreeMap::new();
        let (nulled_files, _) = self.quarantine(&nulled, "nulled", &mut nulled_reasons)?;
        quarantine_files.extend(nulled_files);
        Ok(Cleaned { out_schema, out, quarantine_files, quarantined, reasons, nulled: nulled_reasons })
    }

    /// Writes batches that carry `_reason` to quarantine, counting reasons.
    fn quarantine(
        &self,
        batches: &[RecordBatch],
        prefix: &'static str,
        reasons: &mut BTreeMap<String, u64>,
    ) -> Result<(Vec<String>, u64), SilverError> {
        let Some(first) = batches.first() else { return Ok((Vec::new(), 0)) };
        let mut writer =
            PartWriter::new(self.lake, self.folder("quarantine/silver"), first.schema(), 4 << 20, table_properties())
                .with_prefix(prefix);
        for batch in batches {
            count_reason_column(batch, reasons).map_err(|e| self.engine_error(e))?;
            writer.write(batch).map_err(|e| match e {
                LakeError::Parquet { message, .. } if message.contains("schema") => self.engine_error(format!(
                    "the cleaning plugin's `{prefix}` batches do not all have the same columns: {message}"
                )),
                other => other.into(),
            })?;
        }
        Ok(writer.finish()?)
    }

    /// Sorts one call's outputs into `out` and `rejected`; every row pushed
    /// must come back on one of them.
    fn collect(&self, pushed: usize, outputs: crate::plugin::Outputs, ported: &mut Ported) -> Result<(), SilverError> {
        let mut returned = 0;
        for (port, batches) in outputs {
            let target = match port.as_str() {
                "out" => &mut ported.out,
                "rejected" => &mut ported.rejected,
                "nulled" => &mut ported.nulled,
                other => {
                    return Err(self.engine_error(format!(
                        "the cleaning plugin emitted on port `{other}`; a cleaning step reads `out`, `rejected` and `nulled`"
                    )));
                }
            };
            for batch in batches {
                if port != "out" && batch.column_by_name(REASON).is_none() {
                    return Err(
                        self.engine_error(format!("the cleaning plugin's `{port}` batches have no `_reason` column"))
                    );
                }
                if port != "nulled" {
                    returned += batch.num_rows();
                }
                if batch.num_rows() > 0 {
                    target.push(batch);
                }
            }
        }
        if returned != pushed {
            return Err(SilverError::Conservation {
                table: self.name.to_owned(),
                detail: format!(
                    "the cleaning plugin was pushed {pushed} rows and returned {returned} on `out` and `rejected`; every row must come back on one of them"
                ),
            });
        }
        Ok(())
    }

    fn build_from_sql(
        &self,
        sql: &str,
        frames: &HashMap<String, DataFrame>,
    ) -> Result<(DataFrame, TableFiles, SilverTableReport), SilverError> {
        let frame = Rules { name: self.name }.run_sql(sql, frames)?;
        let (files, rows) = self.write(&frame, &self.folder(ZONE), "part")?;
        let report = SilverTableReport {
            table: self.name.to_owned(),
            source: "sql".to_owned(),
            rows,
            ..SilverTableReport::default()
        };
        let files = TableFiles {
            source: "sql".to_owned(),
            files,
            rows,
            quarantine_files: Vec::new(),
            quarantined: 0,
            reasons: BTreeMap::new(),
        };
        Ok((frame, files, report))
    }

    /// Writes a frame as Parquet files under `folder`: a large one as an
    /// even number of files encoded by two writers side by side (in row
    /// order: file i holds the i-th slice of rows).
    fn write(&self, frame: &DataFrame, folder: &str, prefix: &'static str) -> Result<(Vec<String>, u64), SilverError> {
        const ROWS_PER_FILE: usize = 8 << 20;
        const WRITERS: usize = 2;
        let rows = frame.height();
        let files =
            if rows >= 2 * PARALLEL_WRITE_ROWS { rows.div_ceil(ROWS_PER_FILE).next_multiple_of(WRITERS) } else { 1 };
        let slice_rows = rows.div_ceil(files).max(1);
        let mut frame = frame.clone();
        let batches = frame::from_polars(&mut frame).map_err(|e: FrameError| self.engine_error(e))?;
        let schema = match batches.first() {
            Some(batch) => batch.schema(),
            None => frame::arrow_schema(&frame).map_err(|e| self.engine_error(e))?,
        };
        let slices = split_rows(&batches, slice_rows);
        let write_slice = |index: usize, slice: &[RecordBatch]| -> Result<(Vec<String>, u64), SilverError> {
            let mut writer =
                PartWriter::new(self.lake, folder.to_owned(), schema.clone(), usize::MAX, table_properties())
                    .with_prefix(prefix)
                    .with_first_index(index);
            for batch in slice {
                writer.write(batch)?;
            }
            if slice.is_empty() {
                // An empty table is still a table: one file with its schema.
                writer.write(&RecordBatch::new_empty(schema.clone()))?;
            }
            Ok(writer.finish()?)
        };
        if slices.len() <= 1 {
            return write_slice(0, slices.first().map(Vec::as_slice).unwrap_or_default());
        }
        let written: Vec<Result<(Vec<String>, u64), SilverError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..WRITERS)
                .map(|writer| {
                    let (slices, write_slice) = (&slices, &write_slice);
                    scope.spawn(move || {
                        (writer..slices.len()).step_by(WRITERS).map(|i| write_slice(i, &slices[i])).collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut by_writer: Vec<_> = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)).into_iter())
                .collect();
            // Back in file order: slice i was written by writer i % WRITERS.
            (0..slices.len()).filter_map(|i| by_writer[i % WRITERS].next()).collect()
        });
        let (mut paths, mut total) = (Vec::new(), 0);
        for result in written {
            let (files, rows) = result?;
            paths.extend(files);
            total += rows;
        }
        Ok((paths, total))
    }
}

/// Tables at least twice this size are written by several writers at once.
const PARALLEL_WRITE_ROWS: usize = 1 << 20;

/// The batches cut into consecutive slices of `rows` rows (the last one
/// shorter), without copying.
fn split_rows(batches: &[RecordBatch], rows: usize) -> Vec<Vec<RecordBatch>> {
    let mut slices = vec![Vec::new()];
    let mut filled = 0;
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if filled == rows {
                slices.push(Vec::new());
                filled = 0;
            }
            let take = (rows - filled).min(batch.num_rows() - offset);
            if let Some(slice) = slices.last_mut() {
                slice.push(batch.slice(offset, take));
            }
            offset += take;
            filled += take;
        }
    }
    if slices.len() == 1 && slices[0].is_empty() { Vec::new() } else { slices }
}

/// The relational rules of one table, apart from any data: the checks
/// `host validate` runs on empty frames are the ones a run applies.
struct Rules<'a> {
    name: &'a str,
}

impl Rules<'_> {
    fn engine_error(&self, e: impl std::fmt::Display) -> SilverError {
        SilverError::Engine { table: self.name.to_owned(), message: e.to_string() }
    }

    /// Reasons for the relational checks; returns (kept, rejected).
    fn relational(
        &self,
        frame: &mut DataFrame,
        table: &SilverTableSpec,
        frames: &HashMap<String, DataFrame>,
    ) -> Result<(DataFrame, DataFrame), SilverError> {
        let polars_error = |e: PolarsError| self.engine_error(e);
        let columns: Vec<String> = frame.get_column_names().iter().map(|c| c.to_string()).collect();
        let has = |c: &str| columns.iter().any(|n| n == c);
        let mut reasons: Vec<(Expr, String)> = Vec::new();
        if let Some(key) = &table.key {
            if !has(key) {
                return Err(self.unknown_column("key", key, &columns));
            }
            reasons.push((col(key.as_str()).is_first_distinct().not(), "duplicate_key".to_owned()));
        }
        for parent in &table.parents {
            if !has(&parent.column) {
                return Err(self.unknown_column("parents.column", &parent.column, &columns));
            }
            let parent_frame = frames.get(&parent.table).ok_or_else(|| {
                self.engine_error(format!("parent `{}` is not built before this table", parent.table))
            })?;
            let keys = parent_frame.column(parent.parent_key()).map_err(|_| {
                self.engine_error(format!(
                    "parent `{}` has no column `{}`; give the parent's key with `key:`",
                    parent.table,
                    parent.parent_key()
                ))
            })?;
            let found = col(parent.column.as_str())
                .is_in(polars::prelude::lit(keys.as_materialized_series().clone()).implode(false), false)
                .fill_null(false);
            reasons.push((found.not(), parent.orphan_reason()));
        }
        // Nested from the last check out, so that the first check that
        // applies gives the reason.
        let mut reason = lit(NULL).cast(polars::prelude::DataType::String);
        for (condition, code) in reasons.into_iter().rev() {
            reason = when(condition).then(lit(code)).otherwise(reason);
        }
        let checked = std::mem::take(frame).lazy().with_column(reason.alias(REASON)).collect().map_err(polars_error)?;
        let rejected = checked.clone().lazy().filter(col(REASON).is_not_null()).collect().map_err(polars_error)?;
        let mut kept = checked.lazy().filter(col(REASON).is_null()).drop(polars::prelude::cols([REASON]));
        for parent in table.parents.iter().filter(|p| !p.take.is_empty()) {
            let parent_frame = &frames[&parent.table];
            let mut taken: Vec<Expr> = vec![col(parent.parent_key()).alias(parent.column.as_str())];
            taken.extend(parent.take.iter().map(|c| col(c.as_str())));
            let right = parent_frame.clone().lazy().select(taken);
            kept = kept.join(
                right,
                [col(parent.column.as_str())],
                [col(parent.column.as_str())],
                polars::prelude::JoinArgs::new(polars::prelude::JoinType::Inner),
            );
        }
        for (name, expression) in &table.derive {
            let expr = polars::sql::sql_expr(expression).map_err(|e| {
                SilverError::Config(format!("silver.tables.{}.derive.{name}: `{expression}`: {e}", self.name))
            })?;
            kept = kept.with_column(expr.alias(name.as_str()));
        }
        let columns = self.output_columns(table, &kept)?;
        kept = kept.select(columns);
        let kept = kept.collect().map_err(polars_error)?;
        Ok((kept, rejected))
    }

    fn output_columns(&self, table: &SilverTableSpec, frame: &LazyFrame) -> Result<Vec<Expr>, SilverError> {
        let schema = frame.clone().collect_schema().map_err(|e| self.engine_error(e))?;
        let available: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
        match &table.columns {
            Some(columns) => columns
                .iter()
                .map(|c| {
                    if available.contains(c) {
                        Ok(col(c.as_str()))
                    } else {
                        Err(self.unknown_column("columns", c, &available))
                    }
                })
                .collect(),
            None => Ok(available.iter().filter(|c| !c.starts_with('_')).map(|c| col(c.as_str())).collect()),
        }
    }

    fn unknown_column(&self, field: &str, name: &str, columns: &[String]) -> SilverError {
        SilverError::Config(format!(
            "silver.tables.{}.{field}: no column `{name}` after cleaning; the columns are {}",
            self.name,
            columns.iter().filter(|c| !c.starts_with('_')).cloned().collect::<Vec<_>>().join(", ")
        ))
    }

    /// Runs a `sql` table's query over the tables built before it.
    fn run_sql(&self, sql: &str, frames: &HashMap<String, DataFrame>) -> Result<DataFrame, SilverError> {
        let mut context = polars::sql::SQLContext::new();
        for (name, frame) in frames {
            context.register(name, frame.clone().lazy());
        }
        context
            .execute(sql)
            .and_then(LazyFrame::collect)
            .map_err(|e| SilverError::Config(format!("silver.tables.{}.sql: {e}", self.name)))
    }
}

/// The batch's data columns (no lineage) and `_row`, from `first`.
fn with_positions(
    batch: &RecordBatch,
    data_columns: &[usize],
    first: u64,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let projected = batch.project(data_columns)?;
    let mut fields: Vec<Field> = projected.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(ROW, DataType::UInt64, false));
    let mut columns = projected.columns().to_vec();
    columns.push(Arc::new(UInt64Array::from_iter_values(first..first + batch.num_rows() as u64)) as ArrayRef);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

fn count_reason_column(batch: &RecordBatch, reasons: &mut BTreeMap<String, u64>) -> Result<(), String> {
    let column = batch.column_by_name(REASON).ok_or("no `_reason` column")?;
    let mut add = |reason: Option<&str>| *reasons.entry(reason.unwrap_or("unknown").to_owned()).or_default() += 1;
    if let Some(strings) = column.as_any().downcast_ref::<StringArray>() {
        strings.iter().for_each(&mut add);
    } else if let Some(views) = column.as_any().downcast_ref::<StringViewArray>() {
        views.iter().for_each(&mut add);
    } else {
        return Err(format!("`_reason` is {}, expected text", column.data_type()));
    }
    Ok(())
}

fn count_reasons(frame: &DataFrame, reasons: &mut BTreeMap<String, u64>) -> Result<(), String> {
    if frame.height() == 0 {
        return Ok(());
    }
    let column = frame.column(REASON).map_err(|e| e.to_string())?;
    let strings = column.str().map_err(|e| e.to_string())?;
    for reason in strings.iter() {
        *reasons.entry(reason.unwrap_or("unknown").to_owned()).or_default() += 1;
    }
    Ok(())
}

/// `CREATE EXTERNAL TABLE` statements for the committed Silver tables, so
/// Hive, Spark or Trino can query the lake: one table per Silver table, its
/// columns from its Parquet schema, its location the folder of the run that
/// is committed now (run the statements again after each run; dropping an
/// external table leaves its files alone).
pub fn hive_ddl(lake: &Lake, database: &str) -> Result<String, SilverError> {
    let manifest = Manifest::read(lake, ZONE, PARTITION)?.ok_or_else(|| {
        SilverError::Config(format!("no Silver in {}\n  hint: build it with `host run pipeline.yaml`", lake.url()))
    })?;
    let base = lake_location(lake.url());
    let mut ddl = format!(
        "-- Silver tables of {} (run {}, committed {})\nCREATE DATABASE IF NOT EXISTS {database};\n",
        lake.url(),
        manifest.run_id,
        manifest.committed_at
    );
    for (table, files) in &manifest.tables {
        let Some(first) = files.files.first() else { continue };
        let parquet = ParquetTable::open(lake, std::slice::from_ref(first), Arc::new(Schema::empty()))?;
        let columns: Vec<String> = parquet
            .schema()
            .fields()
            .iter()
            .map(|f| format!("  `{}` {}", f.name(), hive_type(f.data_type())))
            .collect();
        let folder = first.rsplit_once('/').map_or(first.as_str(), |(folder, _)| folder);
        ddl.push_str(&format!(
            "\nDROP TABLE IF EXISTS {database}.{table};\nCREATE EXTERNAL TABLE {database}.{table} (\n{}\n)\nSTORED AS PARQUET\nLOCATION '{base}/{folder}';\n",
            columns.join(",\n")
        ));
    }
    Ok(ddl)
}

/// The lake's URL as Hive wants a location: a scheme always.
fn lake_location(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.contains("://") {
        return url.to_owned();
    }
    // A path: absolute, as a location read by another program must be.
    let absolute = std::path::absolute(url).unwrap_or_else(|_| std::path::PathBuf::from(url));
    let absolute = absolute.to_string_lossy();
    format!("file://{}", absolute.trim_start_matches("./").replace("/./", "/"))
}

fn hive_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => "INT",
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "BIGINT",
        DataType::Float32 => "FLOAT",
        DataType::Float64 => "DOUBLE",
        DataType::Date32 => "DATE",
        DataType::Timestamp(..) => "TIMESTAMP",
        DataType::Boolean => "BOOLEAN",
        _ => "STRING",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch};

    use super::{PARALLEL_WRITE_ROWS, SilverOptions, TableBuilder, split_rows};
    use crate::lake::Lake;

    fn batch(from: i64, rows: i64) -> RecordBatch {
        RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from_iter_values(from..from + rows)) as _)]).unwrap()
    }

    #[test]
    fn slices_keep_every_row_once_in_order() {
        let batches = [batch(0, 5), batch(5, 2), batch(7, 6)];
        let slices = split_rows(&batches, 4);
        let sizes: Vec<usize> = slices.iter().map(|s| s.iter().map(RecordBatch::num_rows).sum()).collect();
        assert_eq!(sizes, [4, 4, 4, 1]);
        let values: Vec<i64> = slices
            .iter()
            .flatten()
            .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
            .collect();
        assert_eq!(values, (0..13).collect::<Vec<_>>());
        assert!(split_rows(&[], 4).is_empty());
        assert!(split_rows(&[batch(0, 0)], 4).is_empty());
    }

    #[test]
    fn a_large_table_is_written_by_two_writers_in_row_order() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&dir.path().to_string_lossy()).unwrap();
        let options = SilverOptions {
            run_id: "r".to_owned(),
            bronze_partition: "ingest_date=2026-11-24".to_owned(),
            workers: 2,
            batch_rows: 65_536,
            limits: Default::default(),
        };
        let rows = 2 * PARALLEL_WRITE_ROWS as i64 + 3;
        let frame = polars::prelude::df!("n" => (0..rows).collect::<Vec<i64>>()).unwrap();
        let builder = TableBuilder { lake: &lake, name: "t", options: &options };
        let (files, written) = builder.write(&frame, "silver/t", "part").unwrap();
        assert_eq!(written, rows as u64);
        assert_eq!(files, ["silver/t/part-00000.parquet", "silver/t/part-00001.parquet"]);
        let mut next = 0;
        for batch in lake.read_parquet(&files).unwrap() {
            for value in batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values() {
                assert_eq!(*value, next);
                next += 1;
            }
        }
        assert_eq!(next, rows);
    }
}
