//! Silver → Gold through the real binary and the repository's
//! `pipeline.yaml`: the reference's tables and columns, the same Gold in
//! SQLite and in a real PostgreSQL, swapping a KPI by dropping a `.wasm`,
//! and a server stopped in the middle of a load.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use medallion_tests::postgres::{Postgres, postgres};
use medallion_tests::{Pause, artifacts, copy_plugin, plugins_folder, repo_root, temp_dir};

use crate::util::{arg, shared_home, text};

/// Sources, a lake and a plugins folder for one test.
pub(crate) struct Setup {
    sources: tempfile::TempDir,
    pub(crate) lake: tempfile::TempDir,
    plugins: tempfile::TempDir,
    /// The pipeline file: the repository's, or an edited copy.
    pipeline: std::path::PathBuf,
}

impl Setup {
    pub(crate) fn new(scale: &str) -> Self {
        let sources = temp_dir();
        let catalogue = repo_root().join("seed/products_data.db");
        let generated = crate::util::host(
            shared_home(),
            &["gen-data", "--scale", scale, "--out", &arg(sources.path()), "--products-db", &arg(&catalogue)],
        );
        assert!(generated.status.success(), "{}", text(&generated).1);
        Setup { sources, lake: temp_dir(), plugins: plugins_folder(), pipeline: repo_root().join("pipeline.yaml") }
    }

    /// From now on, the repository's pipeline with `from` replaced by `to`.
    pub(crate) fn edit_pipeline(&mut self, from: &str, to: &str) {
        let text = std::fs::read_to_string(repo_root().join("pipeline.yaml")).unwrap_or_else(|e| panic!("{e}"));
        assert!(text.contains(from), "the pipeline has no {from:?}");
        self.pipeline = self.lake.path().join("edited-pipeline.yaml");
        std::fs::write(&self.pipeline, text.replacen(from, to, 1)).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The plugins folder.
    pub(crate) fn plugins(&self) -> &std::path::Path {
        self.plugins.path()
    }

    /// The folder of the generated sources.
    pub(crate) fn sources(&self) -> &std::path::Path {
        self.sources.path()
    }

    pub(crate) fn sqlite(&self) -> String {
        format!("sqlite:{}", self.lake.path().join("gold.db").display())
    }

    pub(crate) fn command(&self, args: &[&str], store: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
        command
            .args(args)
            .arg(&self.pipeline)
            .env("XDG_CACHE_HOME", shared_home())
            .env_remove("RUST_LOG")
            .env("MEDALLION_SOURCES", self.sources.path())
            .env("MEDALLION_LAKE", self.lake.path())
            .env("MEDALLION_PLUGINS", self.plugins.path())
            .env("MEDALLION_GOLD", store);
        command
    }

    pub(crate) fn host(&self, args: &[&str], store: &str) -> Output {
        self.command(args, store).output().unwrap_or_else(|e| panic!("cannot run host: {e}"))
    }

    pub(crate) fn run(&self, extra: &[&str], store: &str) {
        let mut args = vec!["run"];
        args.extend(extra);
        let output = self.host(&args, store);
        assert!(output.status.success(), "{}", text(&output).1);
    }

    pub(crate) fn runs(&self, store: &str) -> serde_json::Value {
        let output = self.host(&["runs", "--json"], store);
        assert!(output.status.success(), "{}", text(&output).1);
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"))
    }
}

const TABLES: [(&str, &[&str]); 5] = [
    (
        "dm_sales_daily",
        &["date", "total_revenue", "total_orders", "avg_order_value", "revenue_7d_avg", "revenue_growth_pct"],
    ),
    (
        "dm_sales_by_product",
        &[
            "product_id",
            "product_name",
            "category",
            "brand",
            "total_quantity_sold",
            "total_revenue",
            "revenue_rank_in_category",
        ],
    ),
    (
        "dm_customer_metrics",
        &[
            "customer_id",
            "country",
            "total_orders",
            "total_spent",
            "avg_order_value",
            "first_order_date",
            "last_order_date",
            "recency_days",
            "rfm_score",
            "segment",
        ],
    ),
    (
        "dm_product_reviews_impact",
        &[
            "product_id",
            "product_name",
            "avg_rating",
            "nb_reviews",
            "total_revenue",
            "review_score",
            "negative_share",
            "impact_class",
        ],
    ),
    (
        "dm_stock_performance",
        &[
            "product_id",
            "product_name",
            "category",
            "stock_quantity",
            "total_quantity_sold",
            "stock_turnover_ratio",
            "avg_daily_sales",
            "days_of_cover",
            "stock_status",
            "reorder_qty",
        ],
    ),
];

fn sqlite_rows(db: &Path, sql: &str) -> Vec<String> {
    let connection = rusqlite::Connection::open(db).unwrap_or_else(|e| panic!("{e}"));
    let mut statement = connection.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let width = statement.column_count();
    let rows = statement
        .query_map([], |row| {
            let cells: Vec<String> = (0..width)
                .map(|i| match row.get_ref(i) {
                    Ok(rusqlite::types::ValueRef::Null) => "∅".to_owned(),
                    Ok(rusqlite::types::ValueRef::Integer(v)) => v.to_string(),
                    Ok(rusqlite::types::ValueRef::Real(v)) => format!("{v:.6}"),
                    Ok(rusqlite::types::ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
                    other => format!("{other:?}"),
                })
                .collect();
            Ok(cells.join("|"))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    rows.map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect()
}

/// Numbers printed the same way whichever store printed them (psql prints
/// the double 3366.0 as `3366`).
fn normalise(cell: &str) -> String {
    match cell.parse::<f64>() {
        Ok(v) => format!("{v:.6}"),
        _ => cell.to_owned(),
    }
}

fn psql_binary() -> std::path::PathBuf {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(Result::ok)
        .map(|e| e.path().join("bin/psql"))
        .unwrap_or_else(|| "psql".into())
}

fn psql(server: &Postgres, sql: &str) -> Vec<String> {
    let output = Command::new(psql_binary())
        .args(["-X", "-A", "-t", "-F", "|", "-P", "null=∅", "-d", &server.url, "-c", sql])
        .output()
        .unwrap_or_else(|e| panic!("psql: {e}"));
    assert!(output.status.success(), "{sql}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// Rows with every number printed the same way.
fn normalised(rows: Vec<String>) -> Vec<String> {
    rows.iter().map(|r| r.split('|').map(normalise).collect::<Vec<_>>().join("|")).collect()
}

fn ordered(table: &str, columns: &[&str]) -> String {
    format!("SELECT * FROM {table} ORDER BY {} NULLS LAST", columns[0])
}

#[test]
fn gold_has_the_reference_tables_and_columns_then_the_kpis() {
    let setup = Setup::new("0.002");
    let store = setup.sqlite();
    setup.run(&["--ingest-date", "2026-11-24"], &store);
    let db = setup.lake.path().join("gold.db");
    for (table, columns) in TABLES {
        let info = sqlite_rows(&db, &format!("SELECT name, type FROM pragma_table_info('{table}')"));
        let names: Vec<&str> = info.iter().map(|r| r.split('|').next().unwrap_or_default()).collect();
        assert_eq!(names, columns, "{table}");
        // Real types, not text.
        for (row, column) in info.iter().zip(columns) {
            let kind = row.split('|').nth(1).unwrap_or_default();
            let is_key = (column.ends_with("_id") && columns[0] == *column) && *column != "date";
            let expected = if is_key {
                // A single integer key is SQLite's row id.
                "INTEGER"
            } else if column.ends_with("date") || *column == "date" {
                "DATE"
            } else if [
                "product_name",
                "category",
                "brand",
                "country",
                "rfm_score",
                "segment",
                "impact_class",
                "stock_status",
            ]
            .contains(column)
            {
                "TEXT"
            } else if column.starts_with("total_orders")
                || column.ends_with("_id")
                || [
                    "nb_reviews",
                    "stock_quantity",
                    "total_quantity_sold",
                    "recency_days",
                    "reorder_qty",
                    "revenue_rank_in_category",
                ]
                .contains(column)
            {
                "BIGINT"
            } else {
                "DOUBLE PRECISION"
            };
            assert_eq!(kind, expected, "{table}.{column}");
        }
    }
    // Every product appears in the review and stock tables, zeros where there is nothing.
    for table in ["dm_product_reviews_impact", "dm_stock_performance"] {
        assert_eq!(sqlite_rows(&db, &format!("SELECT COUNT(*) FROM {table}")), ["20000"], "{table}");
    }
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT COUNT(*) FROM dm_stock_performance WHERE stock_quantity = 0 AND stock_turnover_ratio <> 0"
        ),
        ["0"]
    );
    let unreviewed = sqlite_rows(
        &db,
        "SELECT COUNT(*) FROM dm_product_reviews_impact WHERE nb_reviews = 0 AND (avg_rating <> 0 OR impact_class <> 'no_reviews')",
    );
    assert_eq!(unreviewed, ["0"]);
    // Revenue per day adds up to the orders' total.
    let daily = sqlite_rows(&db, "SELECT SUM(total_orders) FROM dm_sales_daily");
    assert_ne!(daily, ["0"]);

    // The run log: the run succeeded, and names each Gold table's plugin.
    let runs = setup.runs(&store);
    let run = &runs[0];
    assert_eq!(run["status"], "succeeded", "{run}");
    let gold: Vec<&serde_json::Value> =
        run["tables"].as_array().unwrap_or_else(|| panic!("{run}")).iter().filter(|t| t["stage"] == "gold").collect();
    assert_eq!(gold.len(), 5, "{run}");
    let stock = gold.iter().find(|t| t["table"] == "dm_stock_performance").unwrap_or_else(|| panic!("{run}"));
    assert_eq!(stock["plugin"], "stock-status");
    assert_eq!(stock["plugin_sha256"].as_str().map(str::len), Some(64));
    assert_eq!(stock["plugin_config"]["lead_time_days"], 7);
    let silver: Vec<&serde_json::Value> =
        run["tables"].as_array().into_iter().flatten().filter(|t| t["stage"] == "silver").collect();
    assert!(silver.iter().any(|t| t["reasons"]["duplicate_key"].as_u64().is_some_and(|n| n > 0)), "{run}");
}

#[test]
fn gold_is_the_same_in_sqlite_and_postgresql() {
    let setup = Setup::new("0.002");
    let server = postgres();
    setup.run(&["--ingest-date", "2026-11-24"], &setup.sqlite());
    setup.run(&["--from", "gold"], &server.url);
    let db = setup.lake.path().join("gold.db");
    for (table, columns) in TABLES {
        let in_sqlite = normalised(sqlite_rows(&db, &ordered(table, columns)));
        let in_postgres = normalised(psql(server, &ordered(&format!("datamart.{table}"), columns)));
        assert!(!in_sqlite.is_empty(), "{table}");
        assert_eq!(in_sqlite, in_postgres, "{table}");
    }
    let types = psql(
        server,
        "SELECT data_type FROM information_schema.columns WHERE table_schema = 'datamart' AND table_name = 'dm_sales_daily' ORDER BY ordinal_position",
    );
    assert_eq!(
        types,
        ["date", "double precision", "bigint", "double precision", "double precision", "double precision"]
    );
    assert_eq!(setup.runs(&server.url)[0]["status"], "succeeded");
}

#[test]
fn dropping_a_new_plugin_swaps_the_kpi_and_the_log_shows_it() {
    let setup = Setup::new("0.002");
    let store = setup.sqlite();
    setup.run(&["--ingest-date", "2026-11-24"], &store);
    let db = setup.lake.path().join("gold.db");
    let statuses = || sqlite_rows(&db, "SELECT DISTINCT stock_status FROM dm_stock_performance ORDER BY 1");
    let before = statuses();
    assert!(before.iter().any(|s| s == "ok" || s == "overstock" || s == "low"), "{before:?}");

    // An analyst drops stock-status 0.2.0 into the plugins folder; nothing is rebuilt.
    let (_, v2) =
        artifacts::EXAMPLES.iter().find(|(name, _)| *name == "stock-status-v2").unwrap_or_else(|| panic!("no example"));
    copy_plugin(v2, &setup.plugins.path().join("stock-status-v2.wasm"));
    setup.run(&["--from", "gold"], &store);
    let after = statuses();
    assert!(after.iter().any(|s| s == "healthy" || s == "reorder" || s == "excess"), "{after:?}");
    let runs = setup.runs(&store);
    let stock = runs[0]["tables"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["table"] == "dm_stock_performance")
        .cloned()
        .unwrap_or_else(|| panic!("{}", runs[0]));
    assert_eq!(stock["plugin_version"], "0.2.0");
    let sha = medallion_plugin::sha256_hex(&std::fs::read(v2).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(stock["plugin_sha256"], sha.as_str());
    // The earlier run still names 0.1.0.
    assert!(runs[1]["tables"].to_string().contains("\"plugin_version\":\"0.1.0\""), "{}", runs[1]);

    // A pin in pipeline.yaml (here from the command line) brings 0.1.0 back.
    setup.run(&["--from", "gold", "--set", "gold.tables.dm_stock_performance.kpi.version=0.1.0"], &store);
    assert_eq!(statuses(), before);
}

#[test]
fn a_postgresql_server_stopped_mid_load_leaves_the_previous_gold_and_the_run_failed() {
    let setup = Setup::new("0.002");
    let server = Postgres::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
    setup.run(&["--ingest-date", "2026-11-24"], &server.url);
    let snapshot = |server: &Postgres| -> Vec<Vec<String>> {
        TABLES.iter().map(|(t, c)| psql(server, &ordered(&format!("datamart.{t}"), c))).collect()
    };
    let before = snapshot(&server);

    // Recompute Gold; stop the server once every table is loaded, before the commit.
    let pause = Pause::at(&["commit-gold"]);
    let child = setup
        .command(&["run", "--from", "gold"], &server.url)
        .envs(pause.env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    pause.reached("commit-gold", std::time::Duration::from_secs(300));
    server.stop_now();
    pause.go("commit-gold");
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "{log}");

    server.restart().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(snapshot(&server), before, "the previous Gold must be intact");
    let runs = setup.runs(&server.url);
    assert_eq!(runs[0]["status"], "failed", "{}", runs[0]);
    assert_eq!(runs[1]["status"], "succeeded", "{}", runs[1]);
}

/// Three Gold tables whose every cell names `run`, published as that run.
fn publish_marked(store: &mut dyn medallion_store::GoldStore, run: usize) {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use medallion_store::{GoldTable, RunRecord, RunTable};

    let run_id = format!("run-{run:04}");
    let rows = 2_000 + run % 7;
    let batch = RecordBatch::try_from_iter([
        ("n", Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef),
        ("run", Arc::new(StringArray::from(vec![run_id.as_str(); rows]))),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let tables: Vec<GoldTable> = ["t_a", "t_b", "t_c"]
        .iter()
        .map(|name| GoldTable::new(name, batch.schema(), vec!["n".to_owned()], vec![batch.clone()]))
        .collect();
    let record = RunRecord {
        run_id: run_id.clone(),
        started_at: format!("2026-01-01T{:02}:{:02}:{:02}Z", run / 3600, run / 60 % 60, run % 60),
        ended_at: None,
        status: "succeeded".to_owned(),
        error: None,
        tables: tables.iter().map(|t| RunTable::new("gold", &t.name, t.rows())).collect(),
        stages: Vec::new(),
        memory_budget: None,
        spill: None,
    };
    store.publish(&tables, &record).unwrap_or_else(|e| panic!("{e}"));
}

/// Runs publish in a loop while a reader reads Gold back: every table it
/// reads holds the run the read names, all its rows, never a mix of two.
fn a_reader_never_sees_two_runs_mixed(url: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut writer = medallion_store::open(url).unwrap_or_else(|e| panic!("{e}"));
    publish_marked(writer.as_mut(), 0);
    let done = AtomicBool::new(false);
    let (reads, runs_seen) = std::thread::scope(|scope| {
        scope.spawn(|| {
            for run in 1..=40 {
                publish_marked(writer.as_mut(), run);
            }
            done.store(true, Ordering::SeqCst);
        });
        let mut reader = medallion_store::open(url).unwrap_or_else(|e| panic!("{e}"));
        let mut reads = 0;
        let mut runs_seen = std::collections::BTreeSet::new();
        while !done.load(Ordering::SeqCst) || reads < 5 {
            let into = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let published =
                reader.read_published(&["t_a", "t_b", "t_c"], into.path()).unwrap_or_else(|e| panic!("{e}"));
            let run = published.run_id.unwrap_or_else(|| panic!("no run published"));
            for table in &published.tables {
                let columns = table.as_ref().unwrap_or_else(|| panic!("a table is missing"));
                let marks = &columns.columns[columns.position("run").unwrap_or_else(|| panic!("no run column"))];
                let medallion_store::Values::Text(marks) = &marks.values else { panic!("run is not text") };
                assert!(marks.iter().all(|m| m == run), "a table of {run} holds rows of another run");
                // Whole: a snapshot taken before a publish committed and read
                // after it would find the new tables empty.
                let number: usize = run.trim_start_matches("run-").parse().unwrap_or_else(|e| panic!("{run}: {e}"));
                assert_eq!(marks.len(), 2_000 + number % 7, "a table of {run} is not whole");
            }
            runs_seen.insert(run);
            reads += 1;
        }
        (reads, runs_seen)
    });
    assert!(runs_seen.len() >= 3, "{reads} reads saw too few runs to test anything: {runs_seen:?}");
}

#[test]
fn a_sqlite_reader_never_sees_two_runs_mixed() {
    let dir = temp_dir();
    a_reader_never_sees_two_runs_mixed(&format!("sqlite:{}", dir.path().join("gold.db").display()));
}

#[test]
fn a_postgresql_reader_never_sees_two_runs_mixed() {
    let server = Postgres::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
    a_reader_never_sees_two_runs_mixed(&server.url);
}

#[test]
fn processes_opening_a_new_postgresql_store_at_once_all_succeed() {
    let server = Postgres::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
    psql(&server, "CREATE DATABASE fresh");
    let url = format!("{}/fresh", server.url.strip_suffix("/postgres").unwrap_or_else(|| panic!("{}", server.url)));
    std::thread::scope(|scope| {
        let opens: Vec<_> = (0..8).map(|_| scope.spawn(|| medallion_store::open(&url).map(|_| ()))).collect();
        for open in opens {
            open.join().unwrap_or_else(|_| panic!("an open panicked")).unwrap_or_else(|e| panic!("{e}"));
        }
    });
}

/// The sum of a numeric column of a committed Silver table, and its rows.
fn silver_sum(lake: &medallion_lake::Lake, table: &str, column: &str) -> (f64, u64) {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;

    let manifest = medallion_lake::Manifest::read(lake, "silver", "current")
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no Silver committed"));
    let batches = lake.read_parquet(&manifest.tables[table].files).unwrap_or_else(|e| panic!("{e}"));
    let (mut sum, mut rows) = (0.0, 0);
    for batch in &batches {
        let values = arrow_cast::cast(
            batch.column_by_name(column).unwrap_or_else(|| panic!("{table}.{column}")),
            &arrow_schema::DataType::Float64,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let values = values.as_primitive::<arrow_array::types::Float64Type>();
        assert_eq!(values.null_count(), 0, "{table}.{column} has nulls");
        sum += values.values().iter().sum::<f64>();
        rows += batch.num_rows() as u64;
    }
    (sum, rows)
}

/// Every Gold table that sums a fact table adds up to it: no order, item or
/// review is left out (orders without a date included).
#[test]
fn gold_adds_up_to_the_silver_facts() {
    let setup = Setup::new("0.005");
    let store = setup.sqlite();
    setup.run(&["--ingest-date", "2026-11-24"], &store);
    let db = setup.lake.path().join("gold.db");
    let lake = medallion_lake::Lake::open(&arg(setup.lake.path())).unwrap_or_else(|e| panic!("{e}"));
    let (amount, orders) = silver_sum(&lake, "fact_orders", "total_amount");
    let (quantity, _) = silver_sum(&lake, "fact_order_items", "quantity");
    let (line_amount, _) = silver_sum(&lake, "fact_order_items", "line_amount");
    let (_, reviews) = silver_sum(&lake, "fact_reviews", "rating");
    let gold = |sql: &str| -> Vec<f64> {
        let rows = sqlite_rows(&db, sql);
        rows[0].split('|').map(|v| v.parse().unwrap_or_else(|e| panic!("`{v}` from {sql}: {e}"))).collect()
    };
    let same = |what: &str, gold: f64, silver: f64| {
        assert!((gold - silver).abs() <= 1e-9 * silver.abs().max(1.0), "{what}: Gold {gold}, Silver {silver}");
    };
    let daily = gold("SELECT SUM(total_orders), SUM(total_revenue) FROM dm_sales_daily");
    same("dm_sales_daily.total_orders", daily[0], orders as f64);
    same("dm_sales_daily.total_revenue", daily[1], amount);
    // The data has orders whose date did not parse: they have a row.
    let undated = gold("SELECT COUNT(*), COALESCE(SUM(total_orders), 0) FROM dm_sales_daily WHERE date IS NULL");
    assert_eq!(undated[0], 1.0, "one row for the orders without a date");
    assert!(undated[1] > 0.0);
    let customers = gold("SELECT SUM(total_orders), SUM(total_spent) FROM dm_customer_metrics");
    same("dm_customer_metrics.total_orders", customers[0], orders as f64);
    same("dm_customer_metrics.total_spent", customers[1], amount);
    let products = gold("SELECT SUM(total_quantity_sold), SUM(total_revenue) FROM dm_sales_by_product");
    same("dm_sales_by_product.total_quantity_sold", products[0], quantity);
    same("dm_sales_by_product.total_revenue", products[1], line_amount);
    let impact = gold("SELECT SUM(nb_reviews), SUM(total_revenue) FROM dm_product_reviews_impact");
    same("dm_product_reviews_impact.nb_reviews", impact[0], reviews as f64);
    same("dm_product_reviews_impact.total_revenue", impact[1], line_amount);
    let stock = gold("SELECT SUM(total_quantity_sold) FROM dm_stock_performance");
    same("dm_stock_performance.total_quantity_sold", stock[0], quantity);
}

fn open_error(url: &str) -> String {
    match medallion_store::open(url) {
        Ok(_) => panic!("{url} should be refused"),
        Err(e) => e.to_string(),
    }
}

/// Gold over TLS to a server that refuses connections without it: checked
/// against the CA given in `sslrootcert`, or only encrypted with `require`;
/// refused against the system's roots, under a name the certificate does not
/// hold, and without TLS.
#[test]
fn gold_goes_to_postgresql_over_tls_and_the_certificate_is_checked() {
    let (server, ca) = Postgres::start_tls().unwrap_or_else(|e| panic!("cannot start PostgreSQL with TLS: {e}"));
    let verified = format!("{}&sslmode=verify-full&sslrootcert={}", server.url, ca.display());
    let mut store = medallion_store::open(&verified).unwrap_or_else(|e| panic!("{e}"));
    publish_marked(store.as_mut(), 1);
    let into = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let published = store.read_published(&["t_a"], into.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(published.run_id.as_deref(), Some("run-0001"));
    assert_eq!(published.tables[0].as_ref().map(|t| t.rows()), Some(2_001));
    medallion_store::open(&format!("{}&sslmode=require", server.url)).unwrap_or_else(|e| panic!("require: {e}"));

    let unknown_ca = open_error(&format!("{}&sslmode=verify-full", server.url));
    assert!(unknown_ca.contains("certificate"), "{unknown_ca}");
    let wrong_name = open_error(&format!(
        "{}&sslmode=verify-full&sslrootcert={}",
        server.url.replace("localhost", "127.0.0.1"),
        ca.display()
    ));
    assert!(wrong_name.contains("certificate"), "{wrong_name}");
    let clear = open_error(&format!("{}&sslmode=disable", server.url));
    assert!(clear.contains("cannot connect"), "{clear}");
    assert!(!clear.contains(medallion_tests::postgres::TLS_PASSWORD), "the password is never shown: {clear}");
}

/// A password for another machine goes only over TLS, unless the URL says
/// `sslmode=disable`.
#[test]
fn a_password_is_not_sent_in_clear_to_another_machine() {
    for url in
        ["postgres://gold:secret@db.example.com:5432/gold", "postgres://gold:secret@10.1.2.3/gold?sslmode=prefer"]
    {
        let refused = open_error(url);
        assert!(
            refused.contains("refusing to send the password to") && refused.contains("sslmode=verify-full"),
            "{refused}"
        );
        assert!(!refused.contains("secret"), "{refused}");
    }
    // Written out: it tries (192.0.2.1 is a documentation address: nothing answers).
    let tried = open_error("postgres://gold:secret@192.0.2.1/gold?sslmode=disable&connect_timeout=1");
    assert!(tried.contains("cannot connect"), "{tried}");
    // No password, or this machine: no TLS needed.
    assert!(!open_error("postgres://gold@192.0.2.1/gold?connect_timeout=1").contains("refusing"));
}

/// Every row of `table`, floats to the last bit, in key order.
fn exact_rows(db: &Path, table: &str) -> Vec<String> {
    rows_by(db, table, "1")
}

/// Every row of `table`, floats to the last bit, ordered by `order`
/// (`rowid`: as the store holds them).
fn rows_by(db: &Path, table: &str, order: &str) -> Vec<String> {
    let connection = rusqlite::Connection::open(db).unwrap_or_else(|e| panic!("{e}"));
    let sql = format!("SELECT * FROM {table} ORDER BY {order}");
    let mut statement = connection.prepare(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let width = statement.column_count();
    let rows = statement
        .query_map([], |row| Ok((0..width).map(|i| format!("{:?}", row.get_ref(i))).collect::<Vec<_>>().join("|")))
        .unwrap_or_else(|e| panic!("{e}"));
    rows.map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect()
}

#[test]
fn gold_in_a_tight_budget_is_the_same_from_run_to_run_and_leaves_no_scratch() {
    let setup = Setup::new("0.02");
    let first = setup.lake.path().join("gold.db");
    let second = setup.lake.path().join("gold-again.db");
    let tight = ["--set", "limits.memory=64MiB"];
    let output = setup.host(&[&["run", "--ingest-date", "2026-11-24"][..], &tight].concat(), &setup.sqlite());
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("memory budget 64 MiB; spilling to "), "{stderr}");
    // The same Silver again, with a budget of its own: Gold cell for cell
    // (money is summed in whole cents: no order of addition shows).
    setup.run(&["--from", "gold"], &format!("sqlite:{}", second.display()));
    for (table, _) in TABLES {
        let rows = exact_rows(&first, table);
        assert!(!rows.is_empty(), "{table}");
        assert_eq!(rows, exact_rows(&second, table), "{table}");
    }
    let scratch = setup.lake.path().join("_scratch");
    let left: Vec<_> = std::fs::read_dir(&scratch).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "the runs' scratch folders are gone: {left:?}");
}

#[test]
fn a_query_split_into_ranges_gives_the_same_table_in_the_same_order() {
    let mut setup = Setup::new("0.02");
    let whole = setup.lake.path().join("gold.db");
    let split = setup.lake.path().join("gold-split.db");
    setup.run(&["--ingest-date", "2026-11-24"], &setup.sqlite());
    // Days too (orders whose date did not parse have a row of their own,
    // with the last range), beside the customers the pipeline splits by.
    setup.edit_pipeline(
        "      key: [date]\n      order_by: date\n",
        "      key: [date]\n      order_by: date\n      split_by: order_date\n",
    );
    // 1 MiB: polars' share is half of it, and 120K orders at 80 bytes a
    // row make 19 ranges of customers, and of days.
    let output =
        setup.host(&["run", "--from", "gold", "--set", "limits.memory=1MiB"], &format!("sqlite:{}", split.display()));
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("gold query split to fit the memory budget"), "{stderr}");
    assert!(stderr.contains("range=customer_id >= "), "{stderr}");
    assert!(stderr.contains("range=order_date >= 20"), "{stderr}");
    assert!(stderr.contains("ranges=19"), "{stderr}");
    for (table, _) in TABLES {
        let rows = rows_by(&whole, table, "rowid");
        assert!(!rows.is_empty(), "{table}");
        assert_eq!(rows, rows_by(&split, table, "rowid"), "{table}");
    }
    let days = rows_by(&split, "dm_sales_daily", "rowid");
    assert!(
        days.last().is_some_and(|row| row.starts_with("Ok(Null)|")),
        "no day of orders without a date last: {days:?}"
    );
}

/// The run log as it was before it kept memory figures, with one run in it.
const OLD_RUN_LOG: &str = include_str!("../../host/store/testdata/old_run_log.sql");

/// A store whose run log predates the memory figures: the old entry reads
/// without them, and the next run records its budget, its scratch folder and
/// its peak, per stage and whole.
fn an_old_run_log_gains_the_memory_figures(setup: &Setup, store: &str) {
    let runs = setup.runs(store);
    assert_eq!(runs[0]["run_id"], "old-run", "{runs}");
    assert!(runs[0]["memory_budget"].is_null() && runs[0]["peak_memory"].is_null(), "{runs}");
    setup.run(&["--ingest-date", "2026-11-24", "--set", "limits.memory=3GiB"], store);
    let runs = setup.runs(store);
    let (new, old) = (&runs[0], &runs[1]);
    assert_eq!(new["memory_budget"], 3u64 << 30, "{new}");
    let spill = new["spill"].as_str().unwrap_or_else(|| panic!("no scratch folder in {new}"));
    assert!(spill.contains("medallion-run-") && !Path::new(spill).exists(), "{spill}: named, and gone after the run");
    let stages = new["stages"].as_array().unwrap_or_else(|| panic!("{new}"));
    assert_eq!(stages.len(), 3, "{new}");
    let peaks: Vec<u64> = stages.iter().filter_map(|s| s["peak_memory"].as_u64()).collect();
    assert_eq!(peaks.len(), 3, "every stage records the peak so far: {new}");
    // A high-water mark only rises, give or take the kernel's per-thread
    // page counts it has not summed yet.
    assert!(peaks.windows(2).all(|w| w[0] <= w[1] + (1 << 20)), "{peaks:?}");
    assert_eq!(new["peak_memory"].as_u64(), peaks.iter().max().copied(), "{new}");
    assert_eq!(old["run_id"], "old-run", "{runs}");
    assert!(old["memory_budget"].is_null(), "{old}");
    let listed = setup.host(&["runs"], store);
    assert!(text(&listed).0.contains("of a 3.0 GiB budget; scratch folder"), "{}", text(&listed).0);
}

#[test]
fn an_old_sqlite_run_log_gains_the_memory_figures() {
    let setup = Setup::new("0.002");
    let db = setup.lake.path().join("gold.db");
    rusqlite::Connection::open(&db).and_then(|c| c.execute_batch(OLD_RUN_LOG)).unwrap_or_else(|e| panic!("{e}"));
    an_old_run_log_gains_the_memory_figures(&setup, &setup.sqlite());
}

#[test]
fn an_old_postgresql_run_log_gains_the_memory_figures() {
    let setup = Setup::new("0.002");
    // A server of its own: the shared one's run log is other tests'.
    let server = Postgres::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
    // PostgreSQL's run log numbered its table entries from the start.
    let old = OLD_RUN_LOG
        .replace("CREATE TABLE ", "CREATE TABLE datamart.")
        .replace("INSERT INTO ", "INSERT INTO datamart.")
        .replace("plugin_config TEXT,", "plugin_config TEXT, position SERIAL,");
    psql(&server, &format!("CREATE SCHEMA datamart; {old}"));
    an_old_run_log_gains_the_memory_figures(&setup, &server.url);
}

/// A report's session (`application_name` powerbi-report) that reads a Gold
/// table in a transaction it keeps open, holding the table as PostgreSQL
/// readers do, until dropped.
struct OpenReport(std::process::Child);

impl OpenReport {
    fn start(server: &Postgres) -> OpenReport {
        use std::io::Write;
        let mut child = Command::new(psql_binary())
            .args(["-X", "-q", "-d", &server.url])
            .env("PGAPPNAME", "powerbi-report")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("psql: {e}"));
        let stdin = child.stdin.as_mut().unwrap_or_else(|| panic!("no stdin"));
        writeln!(stdin, "BEGIN; SELECT count(*) FROM datamart.dm_sales_daily;").unwrap_or_else(|e| panic!("{e}"));
        stdin.flush().unwrap_or_else(|e| panic!("{e}"));
        let holding = "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                       WHERE a.application_name = 'powerbi-report' AND l.relation = 'datamart.dm_sales_daily'::regclass";
        wait_for(server, holding, "the report holds its table");
        OpenReport(child)
    }
}

impl Drop for OpenReport {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `sql` (a count) until it is not 0.
fn wait_for(server: &Postgres, sql: &str, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while psql(server, sql) == ["0"] {
        assert!(std::time::Instant::now() < deadline, "waited a minute for: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// No lock-out: a publish that finds a report holding a live Gold table
/// waits for it two seconds at a time, other readers going through between
/// tries, and publishes once the report lets go; when the report never does,
/// the run fails after `gold.publish_wait_s`, naming the session, with
/// nothing published.
#[test]
fn a_publish_waits_for_a_report_without_locking_readers_out() {
    let setup = Setup::new("0.002");
    let server = Postgres::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
    setup.run(&["--ingest-date", "2026-11-24"], &server.url);
    let first = setup.runs(&server.url)[0]["run_id"].clone();
    let days = psql(&server, "SELECT count(*) FROM datamart.dm_sales_daily");

    let report = OpenReport::start(&server);
    let publish = setup
        .command(&["run", "--from", "gold", "--set", "gold.publish_wait_s=120"], &server.url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run host: {e}"));
    wait_for(
        &server,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE%'",
        "the publish waits for the report's table",
    );
    // Another reader of the same table, meanwhile: at most one try's wait.
    for _ in 0..3 {
        let asked = std::time::Instant::now();
        assert_eq!(psql(&server, "SELECT count(*) FROM datamart.dm_sales_daily"), days);
        let waited = asked.elapsed();
        assert!(waited < std::time::Duration::from_millis(3_500), "a reader waited {waited:?}");
        std::thread::sleep(std::time::Duration::from_millis(700));
    }
    drop(report);
    let output = publish.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("waits for other sessions to let go of its tables") && log.contains("powerbi-report"),
        "{log}"
    );
    let second = setup.runs(&server.url)[0].clone();
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_ne!(second["run_id"], first);
    // The key's constraint has its usual name on the live table.
    assert_eq!(
        psql(&server, "SELECT conname FROM pg_constraint WHERE conrelid = 'datamart.dm_sales_daily'::regclass"),
        ["dm_sales_daily_key"]
    );

    let _report = OpenReport::start(&server);
    let output = setup.host(&["run", "--from", "gold", "--set", "gold.publish_wait_s=3"], &server.url);
    let (_, log) = text(&output);
    assert_eq!(output.status.code(), Some(5), "{log}");
    for part in
        ["held by other sessions", "gold.publish_wait_s", "powerbi-report", "dm_sales_daily", "nothing was published"]
    {
        assert!(log.contains(part), "no {part:?} in: {log}");
    }
    let runs = setup.runs(&server.url);
    assert_eq!(runs[0]["status"], "failed", "{runs}");
    assert_eq!(
        psql(
            &server,
            "SELECT run_id FROM datamart.runs r WHERE status = 'succeeded' ORDER BY started_at DESC, run_id DESC LIMIT 1"
        ),
        [second["run_id"].as_str().unwrap_or_default()]
    );
    assert!(
        psql(&server, "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%\\_\\_new'") == ["0"],
        "no staged table left"
    );
}
