//! The Gold stores: a SQLite file (the default) or a PostgreSQL schema
//! (`datamart`). Both replace every Gold table in one transaction (a new
//! version is built aside, then swapped in), so a reader sees the old tables
//! or the new ones, never a mix or nothing; both keep the run log (`runs`,
//! `run_tables`).
//!
//! The server reads a published run back as typed [`Columns`], in files it
//! maps into memory.
//!
//! Not for: computing Gold (the engine does) or serving it (the API does).

mod cells;
mod columns;
mod postgres;
mod sqlite;
mod table;
mod tls;

use std::collections::BTreeMap;
use std::path::Path;

pub use cells::{Cell, cell, check_types, quote};
pub use columns::{Column, ColumnWriter, Columns, Mapped, SqlType, Texts, Values, declared_type};
pub use postgres::redact;
pub use table::{GoldTable, Spill};

/// One run, as the run log keeps it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRecord {
    /// The run's id.
    pub run_id: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it ended, if it has.
    pub ended_at: Option<String>,
    /// `running`, `succeeded`, `failed` or `abandoned`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Per stage and table: rows, quarantine and plugin.
    pub tables: Vec<RunTable>,
    /// The stages that ended, with their times.
    pub stages: Vec<StageTime>,
    /// The memory budget it ran under (`limits.memory`), bytes.
    pub memory_budget: Option<u64>,
    /// Its scratch folder, where work past the budget spilled (removed when
    /// the run ended).
    pub spill: Option<String>,
}

/// When a stage of a run started and how long it took.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StageTime {
    /// `bronze`, `silver` or `gold`.
    pub stage: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Wall time, seconds (Gold's includes its publish).
    pub seconds: f64,
    /// The process's peak resident memory when the stage ended, bytes (the
    /// run's peak is the highest of its stages').
    pub peak_memory: Option<u64>,
}

/// One table of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunTable {
    /// `bronze`, `silver` or `gold`.
    pub stage: String,
    /// The table.
    pub table: String,
    /// Rows written.
    pub rows: u64,
    /// Rows quarantined.
    pub quarantined: u64,
    /// Quarantined rows per reason.
    pub reasons: BTreeMap<String, u64>,
    /// The plugin that produced it.
    pub plugin: Option<PluginUsed>,
    /// The version of its Delta table in the lake (Bronze, Silver) that
    /// this run committed.
    pub delta_version: Option<u64>,
}

/// Which plugin produced a table: what the run log keeps of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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

impl RunTable {
    /// A table of `stage` with no quarantine and no plugin, to fill in.
    pub fn new(stage: &str, table: &str, rows: u64) -> Self {
        RunTable {
            stage: stage.to_owned(),
            table: table.to_owned(),
            rows,
            quarantined: 0,
            reasons: BTreeMap::new(),
            plugin: None,
            delta_version: None,
        }
    }
}

/// A store that refused an operation.
#[derive(Debug, thiserror::Error)]
#[error("gold store {store}: {message}")]
pub struct StoreError {
    /// Which store (its URL without password).
    pub store: String,
    /// What failed and what to do.
    pub message: String,
}

/// What a reader polls to know whether the store changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versions {
    /// The latest run that published Gold.
    pub published: Option<String>,
    /// The latest run: its id, status and end (which a run's last write
    /// changes: Gold's time with its publish).
    pub latest: Option<(String, String, Option<String>)>,
}

/// Gold as one run left it: what [`GoldStore::read_published`] returns.
#[derive(Debug, Default)]
pub struct Published {
    /// The run that published the tables (`None`: no Gold yet).
    pub run_id: Option<String>,
    /// The tables, in the order asked for.
    pub tables: Vec<Option<Columns>>,
}

/// How long a publish waits for readers that hold the live tables, unless
/// `gold.publish_wait_s` says otherwise.
pub const DEFAULT_PUBLISH_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Where Gold goes.
pub trait GoldStore: Send {
    /// Records a run as started, marking runs left `running` by a process
    /// that is gone as `abandoned` (the caller holds the lake's run lock).
    fn begin_run(&mut self, run: &RunRecord) -> Result<(), StoreError>;
    /// Replaces every table in `tables` and records `run` as it is, in one
    /// transaction.
    fn publish(&mut self, tables: &[GoldTable], run: &RunRecord) -> Result<(), StoreError>;
    /// How long a publish may wait in all for other sessions to let go of
    /// the live tables (`gold.publish_wait_s`; a store whose readers never
    /// hold its writer back ignores it).
    fn set_publish_wait(&mut self, _wait: std::time::Duration) {}
    /// Records a run's end (a failure, or success without a Gold stage).
    fn end_run(&mut self, run: &RunRecord) -> Result<(), StoreError>;
    /// The latest runs, newest first, as JSON objects.
    fn runs(&mut self, limit: usize) -> Result<Vec<serde_json::Value>, StoreError>;
    /// How many runs the log holds, by status.
    fn run_counts(&mut self) -> Result<BTreeMap<String, u64>, StoreError>;
    /// The run whose Gold tables are live (the latest that published Gold)
    /// and the latest run of any status: what tells a reader that something
    /// changed.
    fn versions(&mut self) -> Result<Versions, StoreError>;
    /// The published run and its Gold tables named in `tables` (`None` for
    /// one the store does not have), read whole in one read transaction, so
    /// they are all of one run however many runs publish meanwhile. The
    /// tables are written to column files under `into` (a folder per table)
    /// and mapped from there, so the caller removes `into` once it drops
    /// them, not before.
    fn read_published(&mut self, tables: &[&str], into: &Path) -> Result<Published, StoreError>;
    /// The store, for messages (no password).
    fn describe(&self) -> String;
}

/// Opens the store at `url`: `sqlite:PATH` or `postgres://...`.
pub fn open(url: &str) -> Result<Box<dyn GoldStore>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        return Ok(Box::new(sqlite::SqliteStore::open(std::path::Path::new(path))?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Box::new(postgres::PostgresStore::open(url)?));
    }
    Err(StoreError {
        store: url.to_owned(),
        message: "unknown store: give sqlite:PATH or postgres://user@host:port/database".to_owned(),
    })
}

/// Quarantined rows per reason as the run log keeps them: a JSON object.
fn reasons_json(reasons: &BTreeMap<String, u64>) -> String {
    serde_json::to_string(reasons).unwrap_or_else(|_| "{}".to_owned())
}

/// A run's peak memory: the highest its stages recorded.
fn peak_memory(stages: &[serde_json::Value]) -> Option<u64> {
    stages.iter().filter_map(|s| s["peak_memory"].as_u64()).max()
}

/// A stage's time and peak memory as the run log's JSON shows them.
fn stage_json(stage: String, started_at: String, seconds: f64, peak_memory: Option<i64>) -> serde_json::Value {
    serde_json::json!({ "stage": stage, "started_at": started_at, "seconds": seconds, "peak_memory": peak_memory })
}
