//! Gold in PostgreSQL, schema `datamart`: tables bulk-loaded with binary
//! `COPY` into `<name>__new` (keys built there), then all swapped in at
//! once and the run recorded, in one transaction. Under MVCC a reader sees
//! the old tables until the commit, then the new ones; a server that stops
//! mid-load rolls everything back.
//!
//! No lock-out: the swap needs each live table to itself, which a reader's
//! open transaction (a long report query) holds back; while the swap waits,
//! readers that come after it queue behind it. So the swap comes after every
//! load (the tables are locked for milliseconds, not for the loads), and it
//! waits at most [`LOCK_TRY`] at a time, stepping back between tries, until
//! the publish's wait (`gold.publish_wait_s`) is spent: then the run fails,
//! naming the sessions that held the tables, and nothing is published.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};
use deadpool_postgres::{Manager, Pool};
use futures_util::SinkExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, NoTls};

use medallion_common::date;

use crate::tls::{self, SslMode};
use crate::{
    Cell, Columns, DEFAULT_PUBLISH_WAIT, GoldStore, GoldTable, Published, RunRecord, SqlType, StoreError, Versions,
    cell, check_types, columns, declared_type, peak_memory, quote, reasons_json, stage_json,
};
use medallion_common::progress::{Measure, Task};

/// The schema Gold lives in.
pub(super) const SCHEMA: &str = "datamart";
/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
/// Bytes sent to the server per `COPY` message.
const CHUNK: usize = 4 << 20;

/// How long one try of the swap waits for the live tables.
const LOCK_TRY: &str = "2s";
/// The pause between two tries, when readers that queued behind the last
/// one go through.
const STEP_BACK: std::time::Duration = std::time::Duration::from_secs(1);

/// A PostgreSQL Gold store.
pub(super) struct PostgresStore {
    display: String,
    pool: Pool,
    runtime: tokio::runtime::Runtime,
    /// How long a publish waits in all for the live tables.
    publish_wait: std::time::Duration,
}

const RUN_LOG: &str = "
-- One process at a time (the statements run as one transaction, which
-- holds the lock): `IF NOT EXISTS` does not keep two processes creating
-- the schema at once from failing on PostgreSQL's catalog.
SELECT pg_advisory_xact_lock(hashtext('medallion run log'));
SET LOCAL client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS datamart;
CREATE TABLE IF NOT EXISTS datamart.runs (
    run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, ended_at TEXT, status TEXT NOT NULL, error TEXT,
    memory_budget BIGINT, spill TEXT);
CREATE TABLE IF NOT EXISTS datamart.run_tables (
    run_id TEXT NOT NULL, stage TEXT NOT NULL, table_name TEXT NOT NULL, rows BIGINT NOT NULL,
    quarantined BIGINT NOT NULL, reasons TEXT NOT NULL, plugin TEXT, plugin_version TEXT, plugin_sha256 TEXT,
    plugin_config TEXT, position SERIAL, delta_version BIGINT, PRIMARY KEY (run_id, stage, table_name));
CREATE TABLE IF NOT EXISTS datamart.run_stages (
    run_id TEXT NOT NULL, stage TEXT NOT NULL, started_at TEXT NOT NULL, seconds DOUBLE PRECISION NOT NULL,
    peak_memory BIGINT, PRIMARY KEY (run_id, stage));
-- A run log from before the memory columns gets them. Looked for first, so
-- that a store already up to date takes no table lock here.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = 'datamart' AND table_name = 'runs' AND column_name = 'spill') THEN
        ALTER TABLE datamart.runs ADD COLUMN IF NOT EXISTS memory_budget BIGINT, ADD COLUMN IF NOT EXISTS spill TEXT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = 'datamart' AND table_name = 'run_stages' AND column_name = 'peak_memory') THEN
        ALTER TABLE datamart.run_stages ADD COLUMN IF NOT EXISTS peak_memory BIGINT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = 'datamart' AND table_name = 'run_tables' AND column_name = 'delta_version') THEN
        ALTER TABLE datamart.run_tables ADD COLUMN IF NOT EXISTS delta_version BIGINT;
    END IF;
END $$;";

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl PostgresStore {
    /// Connects (checking the server answers) and creates the run log.
    pub(super) fn open(url: &str) -> Result<Self, StoreError> {
        let display = redact(url);
        let fail = |message: String| StoreError { store: display.clone(), message };
        let connection = tls::parse(url).map_err(|e| fail(format!("bad URL: {e}")))?;
        let mut config =
            tokio_postgres::Config::from_str(&connection.url).map_err(|e| fail(format!("bad URL: {e}")))?;
        if let Some(host) = cleartext_password_to(&config, &connection) {
            return Err(fail(format!(
                "refusing to send the password to {host} without TLS\n  hint: add sslmode=verify-full to the URL (sslrootcert=PATH for a private CA), or sslmode=require (encrypted, certificate not checked); sslmode=disable sends it in clear"
            )));
        }
        let manager = match connection.mode {
            SslMode::Disable => Manager::new(config.ssl_mode(tokio_postgres::config::SslMode::Disable).clone(), NoTls),
            mode => {
                let tls = tls::connector(mode, connection.root_cert.as_deref()).map_err(&fail)?;
                let ssl = if mode == SslMode::Prefer {
                    tokio_postgres::config::SslMode::Prefer
                } else {
                    tokio_postgres::config::SslMode::Require
                };
                Manager::new(config.ssl_mode(ssl).clone(), tls)
            }
        };
        let pool = Pool::builder(manager)
            .max_size(4)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(format!("cannot start the I/O runtime: {e}")))?;
        let store = PostgresStore { display, pool, runtime, publish_wait: DEFAULT_PUBLISH_WAIT };
        store.runtime.block_on(async {
            let client = store.pool.get().await.map_err(|e| {
                store.fail_with(format!(
                    "cannot connect: {}\n  hint: is the server running, are the user and password right, and does its TLS certificate match the URL's sslmode?",
                    with_causes(&e)
                ))
            })?;
            client.batch_execute(RUN_LOG).await.map_err(|e| store.fail(e))
        })?;
        Ok(store)
    }

    /// `e` with its causes: PostgreSQL's own message is the cause of a
    /// `db error`.
    fn fail(&self, e: impl std::error::Error) -> StoreError {
        self.fail_with(with_causes(&e))
    }

    fn fail_with(&self, message: String) -> StoreError {
        StoreError { store: self.display.clone(), message }
    }

    /// [`Self::fail`] for what went wrong with one table.
    fn fail_table(&self, table: &str, e: impl std::error::Error) -> StoreError {
        self.fail_with(format!("table `{table}`: {}", with_causes(&e)))
    }
}

impl PostgresStore {
    /// Swaps the loaded `<name>__new` tables in for the live ones, inside
    /// `tx`: every live table locked in one statement, in name order (as
    /// readers lock them), a try at a time (see the module's notes).
    async fn swap(&self, tx: &tokio_postgres::Transaction<'_>, tables: &[GoldTable]) -> Result<(), StoreError> {
        let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
        let mut live = live_tables(tx, &names).await.map_err(|e| self.fail(e))?;
        live.sort();
        let mut swap = String::new();
        if !live.is_empty() {
            let locked: Vec<String> = live.iter().map(|name| format!("{SCHEMA}.{}", quote(name))).collect();
            swap.push_str(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE;", locked.join(", ")));
        }
        for table in tables {
            let (live, staged) = (quote(&table.name), quote(&format!("{}__new", table.name)));
            swap.push_str(&format!(
                "DROP TABLE IF EXISTS {SCHEMA}.{live}; ALTER TABLE {SCHEMA}.{staged} RENAME TO {live};"
            ));
            if !table.key_constraint().is_empty() {
                swap.push_str(&format!(
                    "ALTER TABLE {SCHEMA}.{live} RENAME CONSTRAINT {} TO {};",
                    quote(&format!("{}__new_key", table.name)),
                    quote(&format!("{}_key", table.name))
                ));
            }
        }
        // One try waits LOCK_TRY for the whole statement (each table's lock
        // would have its own `lock_timeout`); the settings in force before
        // are put back after.
        let before = tx
            .query_one("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')", &[])
            .await
            .map_err(|e| self.fail(e))?;
        let (lock_timeout, statement_timeout): (String, String) = (before.get(0), before.get(1));
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TRY}'; SET LOCAL statement_timeout = '{LOCK_TRY}'"))
            .await
            .map_err(|e| self.fail(e))?;
        let started = std::time::Instant::now();
        let mut warned = false;
        loop {
            tx.batch_execute("SAVEPOINT swap").await.map_err(|e| self.fail(e))?;
            let error = match tx.batch_execute(&swap).await {
                Ok(()) => break,
                Err(e) => e,
            };
            use tokio_postgres::error::SqlState;
            let busy = [SqlState::LOCK_NOT_AVAILABLE, SqlState::QUERY_CANCELED, SqlState::T_R_DEADLOCK_DETECTED];
            if !error.code().is_some_and(|code| busy.contains(code)) {
                return Err(self.fail(error));
            }
            // Back to before the try, its locks let go, and no savepoint
            // left nested in the next.
            tx.batch_execute("ROLLBACK TO SAVEPOINT swap; RELEASE SAVEPOINT swap").await.map_err(|e| self.fail(e))?;
            let holders = self.holders(tx, &live).await;
            if medallion_common::cancel::requested() {
                return Err(self.fail_with(format!(
                    "stopped while waiting for other sessions to let go of the Gold tables ({holders}); nothing was published"
                )));
            }
            if started.elapsed() >= self.publish_wait {
                return Err(self.fail_with(format!(
                    "the Gold tables were held by other sessions for the whole {} s the publish may wait (gold.publish_wait_s): {holders}; nothing was published\n  hint: end those sessions or let their queries finish, then `host run pipeline.yaml --from gold`; readers were never kept waiting more than {LOCK_TRY}",
                    self.publish_wait.as_secs()
                )));
            }
            if !warned {
                tracing::warn!(
                    "publishing Gold waits for other sessions to let go of its tables ({holders}); trying again every {} s, for at most {} s (gold.publish_wait_s)",
                    STEP_BACK.as_secs(),
                    self.publish_wait.as_secs()
                );
                warned = true;
            }
            tokio::time::sleep(STEP_BACK).await;
        }
        tx.execute(
            "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)",
            &[&lock_timeout, &statement_timeout],
        )
        .await
        .map_err(|e| self.fail(e))?;
        tx.batch_execute("RELEASE SAVEPOINT swap").await.map_err(|e| self.fail(e))
    }

    /// The other sessions holding locks on the `live` tables, as a message
    /// shows them.
    async fn holders(&self, tx: &tokio_postgres::Transaction<'_>, live: &[String]) -> String {
        let rows = tx
            .query(
                "SELECT DISTINCT a.pid, coalesce(a.usename, ''), coalesce(a.application_name, ''), coalesce(a.state, ''),
                        coalesce(extract(epoch FROM now() - a.xact_start)::bigint, 0), c.relname
                 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE n.nspname = $1 AND c.relname = ANY($2) AND l.pid <> pg_backend_pid() AND l.granted
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 ORDER BY 1, 6",
                &[&SCHEMA, &live],
            )
            .await;
        let rows = match rows {
            Ok(rows) if !rows.is_empty() => rows,
            Ok(_) => return "sessions that have let go since, or prepared transactions".to_owned(),
            Err(e) => return format!("sessions this could not list ({})", with_causes(&e)),
        };
        let mut sessions: BTreeMap<i32, (String, Vec<String>)> = BTreeMap::new();
        for row in &rows {
            let (pid, user, application, state, seconds): (i32, String, String, String, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            let application = if application.is_empty() { String::new() } else { format!(" ({application})") };
            let session = sessions
                .entry(pid)
                .or_insert_with(|| (format!("pid {pid} of {user}{application}, {state} for {seconds} s"), Vec::new()));
            session.1.push(row.get(5));
        }
        sessions
            .into_values()
            .map(|(session, tables)| format!("{session}, on {}", tables.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// An error and its causes, as one line (a TLS failure says why only in
/// its causes).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = inner.source();
    }
    text
}

/// The host a password would reach without TLS, if the URL has a password,
/// a host other than this machine and no `sslmode` that forces TLS or
/// explicitly waives it.
fn cleartext_password_to(config: &tokio_postgres::Config, connection: &tls::Connection) -> Option<String> {
    let waived = connection.mode == SslMode::Disable && connection.mode_given;
    if config.get_password().is_none() || waived || matches!(connection.mode, SslMode::Require | SslMode::VerifyFull) {
        return None;
    }
    let addresses: Vec<String> = if config.get_hostaddrs().is_empty() {
        config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect()
    } else {
        config.get_hostaddrs().iter().map(ToString::to_string).collect()
    };
    addresses.into_iter().find(|host| !tls::is_local(host))
}

async fn write_run(tx: &tokio_postgres::Transaction<'_>, run: &RunRecord) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO datamart.runs (run_id, started_at, ended_at, status, error, memory_budget, spill)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (run_id) DO UPDATE SET ended_at = excluded.ended_at, status = excluded.status, error = excluded.error",
        &[
            &run.run_id as &(dyn ToSql + Sync),
            &run.started_at,
            &run.ended_at,
            &run.status,
            &run.error,
            &run.memory_budget.map(|b| b as i64),
            &run.spill,
        ],
    )
    .await?;
    tx.execute("DELETE FROM datamart.run_tables WHERE run_id = $1", &[&run.run_id]).await?;
    let insert = tx
        .prepare(
            "INSERT INTO datamart.run_tables (run_id, stage, table_name, rows, quarantined, reasons, plugin, plugin_version, plugin_sha256, plugin_config, delta_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .await?;
    for t in &run.tables {
        let plugin = t.plugin.as_ref();
        let config = plugin.map(|p| p.config.to_string());
        let (rows, quarantined, reasons) = (t.rows as i64, t.quarantined as i64, reasons_json(&t.reasons));
        let (name, version, sha256) = (plugin.map(|p| &p.name), plugin.map(|p| &p.version), plugin.map(|p| &p.sha256));
        let delta_version = t.delta_version.map(|v| v as i64);
        let params: [&(dyn ToSql + Sync); 11] = [
            &run.run_id,
            &t.stage,
            &t.table,
            &rows,
            &quarantined,
            &reasons,
            &name,
            &version,
            &sha256,
            &config,
            &delta_version,
        ];
        tx.execute(&insert, &params).await?;
    }
    tx.execute("DELETE FROM datamart.run_stages WHERE run_id = $1", &[&run.run_id]).await?;
    let insert = tx
        .prepare("INSERT INTO datamart.run_stages (run_id, stage, started_at, seconds, peak_memory) VALUES ($1, $2, $3, $4, $5)")
        .await?;
    for s in &run.stages {
        let peak = s.peak_memory.map(|b| b as i64);
        tx.execute(&insert, &[&run.run_id as &(dyn ToSql + Sync), &s.stage, &s.started_at, &s.seconds, &peak]).await?;
    }
    Ok(())
}

/// PostgreSQL's binary `COPY` format, written batch by batch.
struct Encoder {
    buffer: BytesMut,
}

impl Encoder {
    fn new() -> Self {
        let mut buffer = BytesMut::with_capacity(CHUNK + (1 << 20));
        buffer.put_slice(b"PGCOPY\n\xff\r\n\0");
        buffer.put_i32(0);
        buffer.put_i32(0);
        Encoder { buffer }
    }

    fn rows(&mut self, batch: &arrow_array::RecordBatch, rows: std::ops::Range<usize>) {
        let buffer = &mut self.buffer;
        let columns = batch.columns();
        for row in rows {
            buffer.put_i16(columns.len() as i16);
            for column in columns {
                match cell(column.as_ref(), row) {
                    Cell::Null => buffer.put_i32(-1),
                    Cell::Int(v) => {
                        buffer.put_i32(8);
                        buffer.put_i64(v);
                    }
                    Cell::Double(v) => {
                        buffer.put_i32(8);
                        buffer.put_f64(v);
                    }
                    Cell::Date(days) => {
                        buffer.put_i32(4);
                        buffer.put_i32(days - PG_EPOCH_DAYS);
                    }
                    Cell::Text(s) => {
                        buffer.put_i32(s.len() as i32);
                        buffer.put_slice(s.as_bytes());
                    }
                    Cell::Bool(b) => {
                        buffer.put_i32(1);
                        buffer.put_u8(u8::from(b));
                    }
                }
            }
        }
    }

    fn take(&mut self) -> Bytes {
        self.buffer.split().freeze()
    }

    fn finish(mut self) -> Bytes {
        self.buffer.put_i16(-1);
        self.take()
    }
}

impl GoldStore for PostgresStore {
    fn begin_run(&mut self, run: &RunRecord) -> Result<(), StoreError> {
        self.runtime.block_on(async {
            let mut client = self.pool.get().await.map_err(|e| self.fail(e))?;
            let tx = client.transaction().await.map_err(|e| self.fail(e))?;
            tx.execute(
                "UPDATE datamart.runs SET status = 'abandoned', error = 'the process ended without finishing' WHERE status = 'running'",
                &[],
            )
            .await
            .map_err(|e| self.fail(e))?;
            write_run(&tx, run).await.map_err(|e| self.fail(e))?;
            tx.commit().await.map_err(|e| self.fail(e))
        })
    }

    fn publish(&mut self, tables: &[GoldTable], run: &RunRecord) -> Result<(), StoreError> {
        check_types(tables, &self.display)?;
        self.runtime.block_on(async {
            let mut client = self.pool.get().await.map_err(|e| self.fail(e))?;
            let tx = client.transaction().await.map_err(|e| self.fail(e))?;
            for table in tables {
                tracing::debug!(table = %table.name, rows = table.rows(), "loading gold table");
                let loading = std::time::Instant::now();
                let staged = format!("{SCHEMA}.{}", quote(&format!("{}__new", table.name)));
                let columns: Vec<String> = table
                    .schema
                    .fields()
                    .iter()
                    .map(|f| format!("{} {}", quote(f.name()), SqlType::of(f.data_type()).map_or("TEXT", SqlType::sql)))
                    .collect();
                tx.batch_execute(&format!(
                    "DROP TABLE IF EXISTS {staged}; CREATE TABLE {staged} ({});",
                    columns.join(", ")
                ))
                .await
                .map_err(|e| self.fail_table(&table.name, e))?;
                let sink = tx
                    .copy_in::<_, Bytes>(&format!("COPY {staged} FROM STDIN (FORMAT binary)"))
                    .await
                    .map_err(|e| self.fail_table(&table.name, e))?;
                futures_util::pin_mut!(sink);
                let copy_error = |e: tokio_postgres::Error| self.fail_table(&table.name, e);
                let mut encoder = Encoder::new();
                const STEP: usize = 16 * 1024;
                let task = Task::open("gold", &format!("load {}", table.name), Some(table.rows()), Measure::Rows);
                let spill_error = |message: String| self.fail_with(format!("table `{}`: {message}", table.name));
                for batch in table.batches().map_err(spill_error)? {
                    let batch = batch.map_err(spill_error)?;
                    for start in (0..batch.num_rows()).step_by(STEP) {
                        let end = (start + STEP).min(batch.num_rows());
                        encoder.rows(&batch, start..end);
                        task.advance((end - start) as u64, None);
                        if encoder.buffer.len() >= CHUNK {
                            sink.send(encoder.take()).await.map_err(copy_error)?;
                        }
                    }
                }
                sink.send(encoder.finish()).await.map_err(copy_error)?;
                sink.finish().await.map_err(copy_error)?;
                task.finish();
                let seconds = loading.elapsed().as_secs_f64();
                tracing::debug!(
                    table = %table.name,
                    rows = table.rows(),
                    seconds = format!("{seconds:.3}"),
                    rows_per_s = format!("{:.0}", table.rows() as f64 / seconds.max(1e-9)),
                    "loaded gold table"
                );
                // The key's index is built here, where no reader waits on it.
                let key = table.key_constraint();
                if !key.is_empty() {
                    let constraint = quote(&format!("{}__new_key", table.name));
                    tx.batch_execute(&format!("ALTER TABLE {staged} ADD CONSTRAINT {constraint} {key};"))
                        .await
                        .map_err(|e| self.fail_table(&table.name, e))?;
                }
            }
            self.swap(&tx, tables).await?;
            write_run(&tx, run).await.map_err(|e| self.fail(e))?;
            // Every table loaded, nothing visible yet.
            medallion_common::faults::pause_at("commit-gold");
            tx.commit().await.map_err(|e| self.fail(e))
        })
    }

    fn set_publish_wait(&mut self, wait: std::time::Duration) {
        self.publish_wait = wait;
    }

    fn end_run(&mut self, run: &RunRecord) -> Result<(), StoreError> {
        self.runtime.block_on(async {
            let mut client = self.pool.get().await.map_err(|e| self.fail(e))?;
            let tx = client.transaction().await.map_err(|e| self.fail(e))?;
            write_run(&tx, run).await.map_err(|e| self.fail(e))?;
            tx.commit().await.map_err(|e| self.fail(e))
        })
    }

    fn runs(&mut self, limit: usize) -> Result<Vec<serde_json::Value>, StoreError> {
        self.runtime.block_on(async {
            let client = self.pool.get().await.map_err(|e| self.fail(e))?;
            let runs = client
                .query(
                    "SELECT run_id, started_at, ended_at, status, error, memory_budget, spill FROM datamart.runs ORDER BY started_at DESC, run_id DESC LIMIT $1",
                    &[&(limit as i64)],
                )
                .await
                .map_err(|e| self.fail(e))?;
            let mut out = Vec::new();
            for run in runs {
                let run_id: String = run.get(0);
                let tables = client
                    .query(
                        "SELECT stage, table_name, rows, quarantined, reasons, plugin, plugin_version, plugin_sha256, plugin_config, delta_version
                         FROM datamart.run_tables WHERE run_id = $1 ORDER BY position",
                        &[&run_id],
                    )
                    .await
                    .map_err(|e| self.fail(e))?;
                let tables: Vec<serde_json::Value> = tables
                    .iter()
                    .map(|r| {
                        let reasons: String = r.get(4);
                        let config: Option<String> = r.get::<_, Option<String>>(8);
                        serde_json::json!({
                            "stage": r.get::<_, String>(0),
                            "table": r.get::<_, String>(1),
                            "rows": r.get::<_, i64>(2),
                            "quarantined": r.get::<_, i64>(3),
                            "reasons": serde_json::from_str::<serde_json::Value>(&reasons).unwrap_or_default(),
                            "plugin": r.get::<_, Option<String>>(5),
                            "plugin_version": r.get::<_, Option<String>>(6),
                            "plugin_sha256": r.get::<_, Option<String>>(7),
                            "plugin_config": config.and_then(|c| serde_json::from_str::<serde_json::Value>(&c).ok()),
                            "delta_version": r.get::<_, Option<i64>>(9),
                        })
                    })
                    .collect();
                let stages = client
                    .query(
                        "SELECT stage, started_at, seconds, peak_memory FROM datamart.run_stages WHERE run_id = $1
                         ORDER BY started_at, CASE stage WHEN 'bronze' THEN 0 WHEN 'silver' THEN 1 ELSE 2 END",
                        &[&run_id],
                    )
                    .await
                    .map_err(|e| self.fail(e))?;
                let stages: Vec<serde_json::Value> =
                    stages.iter().map(|r| stage_json(r.get(0), r.get(1), r.get(2), r.get(3))).collect();
                out.push(serde_json::json!({
                    "run_id": run_id,
                    "started_at": run.get::<_, String>(1),
                    "ended_at": run.get::<_, Option<String>>(2),
                    "status": run.get::<_, String>(3),
                    "error": run.get::<_, Option<String>>(4),
                    "memory_budget": run.get::<_, Option<i64>>(5),
                    "spill": run.get::<_, Option<String>>(6),
                    "peak_memory": peak_memory(&stages),
                    "tables": tables,
                    "stages": stages,
                }));
            }
            Ok(out)
        })
    }

    fn run_counts(&mut self) -> Result<BTreeMap<String, u64>, StoreError> {
        self.runtime.block_on(async {
            let client = self.pool.get().await.map_err(|e| self.fail(e))?;
            let rows = client
                .query("SELECT status, COUNT(*) FROM datamart.runs GROUP BY status", &[])
                .await
                .map_err(|e| self.fail(e))?;
            Ok(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64)).collect())
        })
    }

    fn versions(&mut self) -> Result<Versions, StoreError> {
        self.runtime.block_on(async {
            let client = self.pool.get().await.map_err(|e| self.fail(e))?;
            let published = client.query_opt(PUBLISHED_RUN, &[]).await.map_err(|e| self.fail(e))?.map(|r| r.get(0));
            let latest = client
                .query_opt(
                    "SELECT run_id, status, ended_at FROM datamart.runs ORDER BY started_at DESC, run_id DESC LIMIT 1",
                    &[],
                )
                .await
                .map_err(|e| self.fail(e))?
                .map(|r| (r.get(0), r.get(1), r.get(2)));
            Ok(Versions { published, latest })
        })
    }

    fn read_published(&mut self, tables: &[&str], into: &Path) -> Result<Published, StoreError> {
        self.runtime.block_on(async {
            let mut client = self.pool.get().await.map_err(|e| self.fail(e))?;
            // The tables are locked (shared, in name order, as a publish takes
            // them) before the snapshot is taken: a snapshot taken before a
            // publish commits would find the tables it swapped in, but none
            // of their rows.
            let asked: Vec<String> = tables.iter().map(|t| (*t).to_owned()).collect();
            let plain: &tokio_postgres::Client = &client;
            let mut locked = live_tables(plain, &asked).await.map_err(|e| self.fail(e))?;
            locked.sort();
            locked.extend(["runs".to_owned(), "run_tables".to_owned()]);
            // One snapshot for every statement of the transaction: a run that
            // commits meanwhile is not seen.
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(|e| self.fail(e))?;
            let names: Vec<String> = locked.iter().map(|name| format!("{SCHEMA}.{}", quote(name))).collect();
            tx.batch_execute(&format!("LOCK TABLE {} IN ACCESS SHARE MODE", names.join(", ")))
                .await
                .map_err(|e| self.fail(e))?;
            let run_id = tx.query_opt(PUBLISHED_RUN, &[]).await.map_err(|e| self.fail(e))?.map(|r| r.get(0));
            let mut read = Vec::with_capacity(tables.len());
            for (i, table) in tables.iter().enumerate() {
                read.push(
                    read_table(&tx, table, &into.join(i.to_string()))
                        .await
                        .map_err(|e| self.fail_with(format!("table `{table}`: {e}")))?,
                );
            }
            tx.commit().await.map_err(|e| self.fail(e))?;
            Ok(Published { run_id, tables: read })
        })
    }

    fn describe(&self) -> String {
        self.display.clone()
    }
}

/// Those of `names` that are tables in the Gold schema now.
async fn live_tables(
    client: &impl tokio_postgres::GenericClient,
    names: &[String],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind = 'r'",
            &[&SCHEMA, &names],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// The latest run that published Gold.
const PUBLISHED_RUN: &str = "SELECT run_id FROM datamart.runs r WHERE status = 'succeeded'
    AND EXISTS (SELECT 1 FROM datamart.run_tables t WHERE t.run_id = r.run_id AND t.stage = 'gold')
    ORDER BY started_at DESC, run_id DESC LIMIT 1";

/// A Gold table whole, written to column files in `dir`, or `None` when
/// the schema has no such table.
async fn read_table(tx: &tokio_postgres::Transaction<'_>, table: &str, dir: &Path) -> Result<Option<Columns>, String> {
    let text = |e: tokio_postgres::Error| with_causes(&e);
    let declared = tx
        .query(
            "SELECT column_name, data_type FROM information_schema.columns
             WHERE table_schema = 'datamart' AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .await
        .map_err(text)?;
    if declared.is_empty() {
        return Ok(None);
    }
    let declared: Vec<(String, SqlType)> =
        declared.iter().map(|r| (r.get(0), declared_type(r.get::<_, &str>(1)))).collect();
    // Every column read as one Rust type per SQL type.
    let select: Vec<String> = declared
        .iter()
        .map(|(name, kind)| match kind {
            SqlType::Integer => format!("{}::bigint", quote(name)),
            SqlType::Double => format!("{}::float8", quote(name)),
            SqlType::Date => format!("to_char({}, 'YYYY-MM-DD')", quote(name)),
            SqlType::Boolean => quote(name),
            SqlType::Text => format!("{}::text", quote(name)),
        })
        .collect();
    let mut columns = columns::writers(dir, &declared)?;
    let sql = format!("SELECT {} FROM {SCHEMA}.{}", select.join(", "), quote(table));
    let rows = tx.query_raw(&sql, std::iter::empty::<&(dyn ToSql + Sync)>()).await.map_err(text)?;
    futures_util::pin_mut!(rows);
    while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows).await.map_err(text)? {
        for (i, column) in columns.iter_mut().enumerate() {
            let cell = match column.kind() {
                SqlType::Integer => row.try_get::<_, Option<i64>>(i).map_err(text)?.map(Cell::Int),
                SqlType::Double => row.try_get::<_, Option<f64>>(i).map_err(text)?.map(Cell::Double),
                SqlType::Boolean => row.try_get::<_, Option<bool>>(i).map_err(text)?.map(Cell::Bool),
                SqlType::Text => row.try_get::<_, Option<&str>>(i).map_err(text)?.map(Cell::Text),
                SqlType::Date => match row.try_get::<_, Option<&str>>(i).map_err(text)? {
                    Some(text) => Some(Cell::Date(
                        date::parse_iso(text).ok_or_else(|| format!("`{text}` in {} is not a date", column.name()))?,
                    )),
                    None => None,
                },
            };
            column.push(cell.unwrap_or(Cell::Null))?;
        }
    }
    Ok(Some(columns::finish(columns)?))
}
