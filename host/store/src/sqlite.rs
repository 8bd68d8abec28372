//! Gold in a SQLite file: WAL mode, so readers keep reading the previous
//! tables while a run writes; every table is built as `<name>__new` and
//! swapped in by the same transaction that records the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use medallion_common::date;

use crate::{
    Cell, Columns, GoldStore, GoldTable, Published, RunRecord, SqlType, StoreError, Versions, cell, check_types,
    columns, declared_type, peak_memory, quote, reasons_json, stage_json,
};
use medallion_common::progress::{Measure, Task};

/// A `runs` row: id, start, end, status, error, memory budget, scratch folder.
type RunRow = (String, String, Option<String>, String, Option<String>, Option<i64>, Option<String>);

/// A SQLite Gold store.
pub(super) struct SqliteStore {
    path: PathBuf,
    connection: Connection,
    /// The file cannot be written by this process: its runs are read.
    read_only: bool,
}

const RUN_LOG: &str = "
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, ended_at TEXT, status TEXT NOT NULL, error TEXT,
    memory_budget BIGINT, spill TEXT);
CREATE TABLE IF NOT EXISTS run_tables (
    run_id TEXT NOT NULL, stage TEXT NOT NULL, table_name TEXT NOT NULL, rows BIGINT NOT NULL,
    quarantined BIGINT NOT NULL, reasons TEXT NOT NULL, plugin TEXT, plugin_version TEXT, plugin_sha256 TEXT,
    plugin_config TEXT, delta_version BIGINT, PRIMARY KEY (run_id, stage, table_name));
CREATE TABLE IF NOT EXISTS run_stages (
    run_id TEXT NOT NULL, stage TEXT NOT NULL, started_at TEXT NOT NULL, seconds DOUBLE PRECISION NOT NULL,
    peak_memory BIGINT, PRIMARY KEY (run_id, stage));";

/// Columns the run log gained after its first version: a store from before
/// them gets them when it is opened.
const ADDED_COLUMNS: [(&str, &str, &str); 4] = [
    ("runs", "memory_budget", "BIGINT"),
    ("runs", "spill", "TEXT"),
    ("run_stages", "peak_memory", "BIGINT"),
    ("run_tables", "delta_version", "BIGINT"),
];

/// Adds what [`ADDED_COLUMNS`] lists and `connection`'s run log lacks. A
/// store up to date is only read (a run publishing elsewhere does not block
/// this); one that is not is altered in one write transaction, looked at
/// again inside it (two processes opening an old store do not both alter).
/// A store this process may not write (a read-only file, a reader's copy)
/// is not altered: temporary views of its tables with the missing columns
/// as nulls stand in front of them, for this connection only, so that
/// `host runs` reads an old run log that it cannot upgrade.
fn add_missing_columns(connection: &mut Connection) -> rusqlite::Result<()> {
    fn missing(connection: &Connection) -> rusqlite::Result<Vec<(&'static str, &'static str, &'static str)>> {
        let mut lacking = Vec::new();
        for (table, column, kind) in ADDED_COLUMNS {
            let present: bool = connection.query_row(
                "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2 COLLATE NOCASE)",
                params![table, column],
                |r| r.get(0),
            )?;
            if !present {
                lacking.push((table, column, kind));
            }
        }
        Ok(lacking)
    }
    let lacking = missing(connection)?;
    if lacking.is_empty() {
        return Ok(());
    }
    if connection.is_readonly(rusqlite::MAIN_DB)? {
        return stand_in_views(connection, &lacking);
    }
    let altered = connection.transaction_with_behavior(TransactionBehavior::Immediate).and_then(|tx| {
        for (table, column, kind) in missing(&tx)? {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
        }
        tx.commit()
    });
    match altered {
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ReadOnly => {
            stand_in_views(connection, &lacking)
        }
        other => other,
    }
}

/// Temporary views named as the run log's tables, over them, with the
/// `lacking` columns as nulls (unqualified names find the temporary schema
/// first).
fn stand_in_views(connection: &Connection, lacking: &[(&str, &str, &str)]) -> rusqlite::Result<()> {
    let tables: std::collections::BTreeSet<&str> = lacking.iter().map(|(table, _, _)| *table).collect();
    for table in tables {
        let nulls: String = lacking
            .iter()
            .filter(|(t, _, _)| *t == table)
            .map(|(_, column, _)| format!(", NULL AS {column}"))
            .collect();
        connection
            .execute_batch(&format!("CREATE TEMP VIEW {table} AS SELECT rowid AS rowid, *{nulls} FROM main.{table}"))?;
    }
    Ok(())
}

/// `path` read-only as a file no one changes (SQLite's `immutable`): how a
/// reader opens a WAL file it cannot make the shared-memory file for.
fn open_unchanging(path: &Path) -> rusqlite::Result<Connection> {
    let mut uri = String::from("file:");
    for byte in path.to_string_lossy().bytes() {
        match byte {
            b'%' | b'?' | b'#' => uri.push_str(&format!("%{byte:02X}")),
            _ => uri.push(byte as char),
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    Connection::open_with_flags(uri, flags)
}

/// Sets `connection` up and brings its run log up to date; a file this
/// process may not write is only read (its run log as it is, see
/// [`add_missing_columns`]).
fn prepare(connection: &mut Connection) -> rusqlite::Result<()> {
    if connection.is_readonly(rusqlite::MAIN_DB)? {
        connection.execute_batch("PRAGMA busy_timeout = 10000;")?;
    } else {
        connection
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000;")?;
        connection.execute_batch(CACHE_FOR_WRITES)?;
        connection.execute_batch(RUN_LOG)?;
    }
    add_missing_columns(connection)
}

/// A Gold load is one large transaction: a 256 MiB page cache keeps it from
/// spilling half-built pages to the WAL.
const CACHE_FOR_WRITES: &str = "PRAGMA cache_size = -262144";

impl SqliteStore {
    /// Opens (or creates) the file and the run log.
    pub(super) fn open(path: &Path) -> Result<Self, StoreError> {
        let fail = |message: String| StoreError { store: format!("sqlite:{}", path.display()), message };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut connection = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        if let Err(e) = prepare(&mut connection) {
            let read_only = connection.is_readonly(rusqlite::MAIN_DB).unwrap_or(false);
            if !(read_only && e.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly)) {
                return Err(fail(e.to_string()));
            }
            // A file this process may not write, in WAL mode, that no writer
            // has open: SQLite cannot make the shared-memory file beside it,
            // and nothing is changing it.
            connection = open_unchanging(path).map_err(|e| fail(e.to_string()))?;
            prepare(&mut connection).map_err(|e| fail(e.to_string()))?;
        }
        let read_only = connection.is_readonly(rusqlite::MAIN_DB).map_err(|e| fail(e.to_string()))?;
        Ok(SqliteStore { path: path.to_owned(), connection, read_only })
    }

    /// Refuses to write a store this process may only read.
    fn writable(&self) -> Result<(), StoreError> {
        if !self.read_only {
            return Ok(());
        }
        Err(StoreError {
            store: self.describe(),
            message: "this process may not write the file (or its folder): runs can be listed here but not recorded or published\n  hint: run as a user that can write it, or give gold.store another file".to_owned(),
        })
    }

    fn fail(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError { store: self.describe(), message: e.to_string() }
    }
}

fn write_run(tx: &Connection, run: &RunRecord) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO runs (run_id, started_at, ended_at, status, error, memory_budget, spill)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (run_id) DO UPDATE SET ended_at = excluded.ended_at, status = excluded.status, error = excluded.error",
        params![
            run.run_id,
            run.started_at,
            run.ended_at,
            run.status,
            run.error,
            run.memory_budget.map(|b| b as i64),
            run.spill
        ],
    )?;
    tx.execute("DELETE FROM run_tables WHERE run_id = ?1", params![run.run_id])?;
    let mut insert = tx.prepare(
        "INSERT INTO run_tables (run_id, stage, table_name, rows, quarantined, reasons, plugin, plugin_version, plugin_sha256, plugin_config, delta_version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for t in &run.tables {
        let plugin = t.plugin.as_ref();
        insert.execute(params![
            run.run_id,
            t.stage,
            t.table,
            t.rows as i64,
            t.quarantined as i64,
            reasons_json(&t.reasons),
            plugin.map(|p| &p.name),
            plugin.map(|p| &p.version),
            plugin.map(|p| &p.sha256),
            plugin.map(|p| p.config.to_string()),
            t.delta_version.map(|v| v as i64),
        ])?;
    }
    tx.execute("DELETE FROM run_stages WHERE run_id = ?1", params![run.run_id])?;
    let mut insert = tx.prepare(
        "INSERT INTO run_stages (run_id, stage, started_at, seconds, peak_memory) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for s in &run.stages {
        insert.execute(params![run.run_id, s.stage, s.started_at, s.seconds, s.peak_memory.map(|b| b as i64)])?;
    }
    Ok(())
}

impl GoldStore for SqliteStore {
    fn begin_run(&mut self, run: &RunRecord) -> Result<(), StoreError> {
        self.writable()?;
        let store = self.describe();
        let tx = self.connection.transaction().map_err(|e| StoreError { store, message: e.to_string() })?;
        tx.execute("UPDATE runs SET status = 'abandoned', error = 'the process ended without finishing' WHERE status = 'running'", [])
            .and_then(|_| write_run(&tx, run))
            .and_then(|()| tx.commit())
            .map_err(|e| StoreError { store: format!("sqlite:{}", self.path.display()), message: e.to_string() })
    }

    fn publish(&mut self, tables: &[GoldTable], run: &RunRecord) -> Result<(), StoreError> {
        self.writable()?;
        check_types(tables, &self.describe())?;
        let store = self.describe();
        let fail = |e: rusqlite::Error| StoreError { store: store.clone(), message: e.to_string() };
        let tx = self.connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(fail)?;
        for table in tables {
            let staged = quote(&format!("{}__new", table.name));
            // A single integer key is declared `INTEGER PRIMARY KEY`: SQLite's
            // row id itself, so the table needs no separate key index.
            let key = table.key_constraint();
            let rowid_key = match table.key.as_slice() {
                [column] if !table.key_has_null() => table
                    .schema
                    .field_with_name(column)
                    .ok()
                    .filter(|f| SqlType::of(f.data_type()) == Some(SqlType::Integer))
                    .map(|f| f.name().clone()),
                _ => None,
            };
            let columns: Vec<String> = table
                .schema
                .fields()
                .iter()
                .map(|f| match &rowid_key {
                    Some(key) if key == f.name() => format!("{} INTEGER PRIMARY KEY", quote(f.name())),
                    _ => format!("{} {}", quote(f.name()), SqlType::of(f.data_type()).map_or("TEXT", SqlType::sql)),
                })
                .collect();
            let key = if key.is_empty() || rowid_key.is_some() { String::new() } else { format!(", {key}") };
            tx.execute_batch(&format!(
                "DROP TABLE IF EXISTS {staged}; CREATE TABLE {staged} ({}{key});",
                columns.join(", ")
            ))
            .map_err(fail)?;
            let placeholders: Vec<String> = (1..=table.schema.fields().len()).map(|i| format!("?{i}")).collect();
            let mut insert =
                tx.prepare(&format!("INSERT INTO {staged} VALUES ({})", placeholders.join(", "))).map_err(fail)?;
            let row_error = |e: rusqlite::Error| StoreError {
                store: store.clone(),
                message: format!("table `{}`: {e}", table.name),
            };
            let task = Task::open("gold", &format!("load {}", table.name), Some(table.rows()), Measure::Rows);
            let spill_error = |message: String| StoreError {
                store: store.clone(),
                message: format!("table `{}`: {message}", table.name),
            };
            for batch in table.batches().map_err(spill_error)? {
                let batch = batch.map_err(spill_error)?;
                task.advance(batch.num_rows() as u64, None);
                let columns = batch.columns();
                for row in 0..batch.num_rows() {
                    for (i, column) in columns.iter().enumerate() {
                        let value = match cell(column.as_ref(), row) {
                            Cell::Null => ToSqlOutput::Borrowed(ValueRef::Null),
                            Cell::Int(v) => ToSqlOutput::Owned(Value::Integer(v)),
                            Cell::Double(v) => ToSqlOutput::Owned(Value::Real(v)),
                            Cell::Date(d) => ToSqlOutput::Owned(Value::Text(date::iso(d))),
                            Cell::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
                            Cell::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(b))),
                        };
                        insert.raw_bind_parameter(i + 1, value).map_err(row_error)?;
                    }
                    insert.raw_execute().map_err(row_error)?;
                }
            }
            drop(insert);
            task.finish();
            let live = quote(&table.name);
            tx.execute_batch(&format!("DROP TABLE IF EXISTS {live}; ALTER TABLE {staged} RENAME TO {live};"))
                .map_err(fail)?;
        }
        write_run(&tx, run).map_err(fail)?;
        // Every table loaded, nothing visible yet.
        medallion_common::faults::pause_at("commit-gold");
        tx.commit().map_err(fail)
    }

    fn end_run(&mut self, run: &RunRecord) -> Result<(), StoreError> {
        self.writable()?;
        let store = self.describe();
        let tx = self.connection.transaction().map_err(|e| StoreError { store, message: e.to_string() })?;
        write_run(&tx, run)
            .and_then(|()| tx.commit())
            .map_err(|e| StoreError { store: format!("sqlite:{}", self.path.display()), message: e.to_string() })
    }

    fn runs(&mut self, limit: usize) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT run_id, started_at, ended_at, status, error, memory_budget, spill FROM runs ORDER BY started_at DESC, run_id DESC LIMIT ?1")
            .map_err(|e| self.fail(e))?;
        let runs: Vec<RunRow> = statement
            .query_map(params![limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.fail(e))?;
        let mut tables = self
            .connection
            .prepare("SELECT stage, table_name, rows, quarantined, reasons, plugin, plugin_version, plugin_sha256, plugin_config, delta_version FROM run_tables WHERE run_id = ?1 ORDER BY rowid")
            .map_err(|e| self.fail(e))?;
        let mut stages = self
            .connection
            .prepare("SELECT stage, started_at, seconds, peak_memory FROM run_stages WHERE run_id = ?1 ORDER BY started_at, CASE stage WHEN 'bronze' THEN 0 WHEN 'silver' THEN 1 ELSE 2 END")
            .map_err(|e| self.fail(e))?;
        let mut out = Vec::new();
        for (run_id, started_at, ended_at, status, error, memory_budget, spill) in runs {
            let times: Vec<serde_json::Value> = stages
                .query_map(params![run_id], |r| {
                    Ok(stage_json(r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, f64>(2)?, r.get(3)?))
                })
                .and_then(|rows| rows.collect())
                .map_err(|e| self.fail(e))?;
            let rows: Vec<serde_json::Value> = tables
                .query_map(params![run_id], |r| {
                    let reasons: String = r.get(4)?;
                    let config: Option<String> = r.get(8)?;
                    Ok(serde_json::json!({
                        "stage": r.get::<_, String>(0)?,
                        "table": r.get::<_, String>(1)?,
                        "rows": r.get::<_, i64>(2)?,
                        "quarantined": r.get::<_, i64>(3)?,
                        "reasons": serde_json::from_str::<serde_json::Value>(&reasons).unwrap_or_default(),
                        "plugin": r.get::<_, Option<String>>(5)?,
                        "plugin_version": r.get::<_, Option<String>>(6)?,
                        "plugin_sha256": r.get::<_, Option<String>>(7)?,
                        "plugin_config": config.and_then(|c| serde_json::from_str::<serde_json::Value>(&c).ok()),
                        "delta_version": r.get::<_, Option<i64>>(9)?,
                    }))
                })
                .and_then(|rows| rows.collect())
                .map_err(|e| self.fail(e))?;
            out.push(serde_json::json!({
                "run_id": run_id, "started_at": started_at, "ended_at": ended_at,
                "status": status, "error": error, "memory_budget": memory_budget, "spill": spill,
                "peak_memory": peak_memory(&times),
                "tables": rows, "stages": times,
            }));
        }
        Ok(out)
    }

    fn run_counts(&mut self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut statement =
            self.connection.prepare("SELECT status, COUNT(*) FROM runs GROUP BY status").map_err(|e| self.fail(e))?;
        statement
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.fail(e))
    }

    fn versions(&mut self) -> Result<Versions, StoreError> {
        let published = published_run(&self.connection).map_err(|e| self.fail(e))?;
        let latest = self
            .connection
            .query_row(
                "SELECT run_id, status, ended_at FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.fail(e))?;
        Ok(Versions { published, latest })
    }

    fn read_published(&mut self, tables: &[&str], into: &Path) -> Result<Published, StoreError> {
        let store = self.describe();
        let fail = |message: String| StoreError { store: store.clone(), message };
        // A read goes through each table once: a large page cache would only
        // hold pages no one reads again (256 MiB of them in the server).
        self.connection.execute_batch("PRAGMA cache_size = -8192").map_err(|e| fail(e.to_string()))?;
        // In WAL mode a read transaction sees the database as of its first
        // read until it ends, whatever commits meanwhile.
        let tx = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(|e| fail(e.to_string()))?;
        let run_id = published_run(&tx).map_err(|e| fail(e.to_string()))?;
        let tables = tables
            .iter()
            .enumerate()
            .map(|(i, table)| {
                read_table(&tx, table, &into.join(i.to_string())).map_err(|e| fail(format!("table `{table}`: {e}")))
            })
            .collect::<Result<_, _>>()?;
        tx.commit().map_err(|e| fail(e.to_string()))?;
        self.connection.execute_batch(CACHE_FOR_WRITES).map_err(|e| fail(e.to_string()))?;
        Ok(Published { run_id, tables })
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}

/// The latest run that published Gold.
fn published_run(connection: &Connection) -> rusqlite::Result<Option<String>> {
    connection
        .query_row(
            "SELECT run_id FROM runs r WHERE status = 'succeeded'
             AND EXISTS (SELECT 1 FROM run_tables t WHERE t.run_id = r.run_id AND t.stage = 'gold')
             ORDER BY started_at DESC, run_id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()
}

/// A Gold table whole, written to column files in `dir`, or `None` when
/// the file has no such table.
fn read_table(connection: &Connection, table: &str, dir: &Path) -> Result<Option<Columns>, String> {
    let text = |e: rusqlite::Error| e.to_string();
    let exists: bool = connection
        .query_row("SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| r.get(0))
        .map_err(text)?;
    if !exists {
        return Ok(None);
    }
    let mut statement = connection.prepare(&format!("SELECT * FROM {}", quote(table))).map_err(text)?;
    let declared: Vec<(String, SqlType)> =
        statement.columns().map(|c| (c.name().to_owned(), declared_type(c.decl_type().unwrap_or("TEXT")))).collect();
    let mut columns = columns::writers(dir, &declared)?;
    let mut rows = statement.query([]).map_err(text)?;
    while let Some(row) = rows.next().map_err(text)? {
        for (i, column) in columns.iter_mut().enumerate() {
            let value = row.get_ref(i).map_err(text)?;
            let cell = match (column.kind(), value) {
                (_, ValueRef::Null) => Cell::Null,
                (_, ValueRef::Integer(x)) if column.kind() != SqlType::Boolean => Cell::Int(x),
                (_, ValueRef::Integer(x)) => Cell::Bool(x != 0),
                (_, ValueRef::Real(x)) => Cell::Double(x),
                (SqlType::Date, ValueRef::Text(t)) => match std::str::from_utf8(t).ok().and_then(date::parse_iso) {
                    Some(days) => Cell::Date(days),
                    None => return Err(format!("`{}` in {} is not a date", String::from_utf8_lossy(t), column.name())),
                },
                (_, ValueRef::Text(t)) => match std::str::from_utf8(t) {
                    Ok(t) => Cell::Text(t),
                    Err(_) => return Err(format!("column {} holds text that is not UTF-8", column.name())),
                },
                (_, ValueRef::Blob(_)) => return Err(format!("column {} holds a blob", column.name())),
            };
            column.push(cell)?;
        }
    }
    Ok(Some(columns::finish(columns)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The run log before it kept memory figures and Delta versions, with one
    /// run in it, and two tables of that run (in the order written).
    const OLD_RUN_LOG: &str = concat!(
        include_str!("../testdata/old_run_log.sql"),
        "INSERT INTO run_tables VALUES ('old-run', 'silver', 'b', 2, 0, '{}', NULL, NULL, NULL, NULL);
         INSERT INTO run_tables VALUES ('old-run', 'silver', 'a', 1, 0, '{}', NULL, NULL, NULL, NULL);"
    );

    fn record(run_id: &str, status: &str) -> RunRecord {
        RunRecord {
            run_id: run_id.to_owned(),
            started_at: "2026-12-01T00:00:00Z".to_owned(),
            ended_at: None,
            status: status.to_owned(),
            error: None,
            tables: Vec::new(),
            stages: Vec::new(),
            memory_budget: None,
            spill: None,
        }
    }

    fn columns_of(path: &Path, table: &str) -> Vec<String> {
        let connection = Connection::open(path).unwrap();
        let mut statement = connection.prepare("SELECT name FROM pragma_table_info(?1)").unwrap();
        statement.query_map([table], |r| r.get(0)).and_then(|rows| rows.collect()).unwrap()
    }

    #[test]
    fn an_old_run_log_this_process_may_not_write_is_read_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gold.db");
        Connection::open(&path).and_then(|c| c.execute_batch(OLD_RUN_LOG)).unwrap();
        let mut connection = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        prepare(&mut connection).unwrap();
        let mut store = SqliteStore { path: path.clone(), connection, read_only: true };
        let runs = store.runs(10).unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        let run = &runs[0];
        assert_eq!(run["run_id"], "old-run");
        assert!(run["memory_budget"].is_null() && run["spill"].is_null(), "{run}");
        let tables: Vec<&str> =
            run["tables"].as_array().unwrap().iter().map(|t| t["table"].as_str().unwrap()).collect();
        assert_eq!(tables, ["b", "a"], "in the order written");
        assert!(run["tables"][0]["delta_version"].is_null() && run["stages"][0]["peak_memory"].is_null(), "{run}");
        assert_eq!(store.run_counts().unwrap()["succeeded"], 1);
        let run = record("new", "running");
        assert!(store.begin_run(&run).unwrap_err().message.contains("may not write the file"));
        drop(store);
        assert!(!columns_of(&path, "runs").contains(&"memory_budget".to_owned()), "the file is left as it was");
        // Opened with write access, it is brought up to date.
        SqliteStore::open(&path).unwrap();
        assert!(columns_of(&path, "runs").contains(&"memory_budget".to_owned()));
    }

    #[test]
    fn a_column_already_there_in_other_letters_is_not_added_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gold.db");
        let old = OLD_RUN_LOG
            .replace("status TEXT NOT NULL, error TEXT)", "status TEXT NOT NULL, error TEXT, Memory_Budget BIGINT)");
        let old = old.replace("'succeeded', NULL)", "'succeeded', NULL, 5)");
        Connection::open(&path).and_then(|c| c.execute_batch(&old)).unwrap();
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.runs(1).unwrap()[0]["memory_budget"], 5);
        let runs = columns_of(&path, "runs");
        assert_eq!(runs.iter().filter(|c| c.eq_ignore_ascii_case("memory_budget")).count(), 1, "{runs:?}");
    }

    #[test]
    fn a_wal_file_no_writer_has_open_is_read_as_unchanging() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gold #1?.db");
        {
            let mut store = SqliteStore::open(&path).unwrap();
            let run = record("r1", "succeeded");
            store.begin_run(&run).unwrap();
        }
        assert!(!path.with_file_name("gold #1?.db-shm").exists(), "the last writer closed the WAL");
        let mut connection = open_unchanging(&path).unwrap();
        prepare(&mut connection).unwrap();
        let mut store = SqliteStore { path: path.clone(), connection, read_only: true };
        assert_eq!(store.runs(5).unwrap()[0]["run_id"], "r1");
    }
}
