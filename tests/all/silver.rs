//! Bronze → Silver through the real binary and the repository's
//! `pipeline.yaml`: every rule on hand-made rows, conservation on generated
//! data, and the same results on a local lake and on HDFS.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use medallion_lake::{Lake, Manifest};
use medallion_tests::{plugins_folder, temp_dir};

use crate::util::{arg, shared_home, text};

/// Runs `host` on the repository's pipeline with the given sources and lake.
fn run_pipeline(sources: &Path, lake: &str, plugins: &Path, extra: &[&str]) -> Output {
    run_this_pipeline(&medallion_tests::repo_root().join("pipeline.yaml"), sources, lake, plugins, extra)
}

/// Runs `host` on a pipeline file with the given sources and lake.
fn run_this_pipeline(pipeline: &Path, sources: &Path, lake: &str, plugins: &Path, extra: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_host"));
    command
        .arg("run")
        .arg(pipeline)
        .args(extra)
        .env("XDG_CACHE_HOME", shared_home())
        .env_remove("RUST_LOG")
        .env("MEDALLION_SOURCES", sources)
        .env("MEDALLION_LAKE", lake)
        .env("MEDALLION_PLUGINS", plugins)
        .env("MEDALLION_GOLD", format!("sqlite:{}", gold_file().display()));
    command.output().unwrap_or_else(|e| panic!("cannot run host: {e}"))
}

/// A Gold store of the test's own (these tests look at Silver only).
fn gold_file() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    shared_home().join(format!("silver-gold-{}-{n}.db", std::process::id()))
}

fn silver_manifest(lake: &Lake) -> Manifest {
    Manifest::read(lake, "silver", "current")
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no Silver committed"))
}

/// A table's rows as `a|b|c` strings, sorted (nulls shown as `∅`).
pub(crate) fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("∅");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(formatters.iter().map(|f| f.value(row).to_string()).collect::<Vec<_>>().join("|"));
        }
    }
    rows.sort();
    rows
}

fn silver_rows(lake: &Lake, table: &str) -> Vec<String> {
    let manifest = silver_manifest(lake);
    let files = &manifest.tables.get(table).unwrap_or_else(|| panic!("no Silver table {table}")).files;
    rows(&lake.read_parquet(files).unwrap_or_else(|e| panic!("{e}")))
}

fn column_names(lake: &Lake, table: &str) -> Vec<String> {
    let manifest = silver_manifest(lake);
    let batches = lake.read_parquet(&manifest.tables[table].files).unwrap_or_else(|e| panic!("{e}"));
    batches[0].schema().fields().iter().map(|f| f.name().clone()).collect()
}

fn reasons(lake: &Lake, table: &str) -> BTreeMap<String, u64> {
    silver_manifest(lake).tables[table].reasons.clone()
}

/// Sources `host gen-data` makes at `scale`.
fn generated_sources(scale: &str) -> tempfile::TempDir {
    let sources = temp_dir();
    let catalogue = medallion_tests::repo_root().join("seed/products_data.db");
    let generated = crate::util::host(
        shared_home(),
        &["gen-data", "--scale", scale, "--out", &arg(sources.path()), "--products-db", &arg(&catalogue)],
    );
    assert!(generated.status.success(), "{}", text(&generated).1);
    sources
}

/// Hand-made sources, one edge case per row (see the comments).
fn hand_made_sources() -> tempfile::TempDir {
    let dir = temp_dir();
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).unwrap_or_else(|e| panic!("{e}"));
    };
    write(
        "customers.csv",
        "customer_id,name,email,gender,signup_date,country\n\
         1,Ann,a@x,F,2023-01-05,FR\n\
         2,Bob,b@x,,2023-02-30,DE\n\
         2,Bob again,b2@x,M,2023-03-01,DE\n\
         x7,Eve,e@x,F,2023-01-01,FR\n\
         ,Nobody,n@x,F,2023-01-01,FR\n",
    );
    // 11: amount 0; 12: its customer (x7) was rejected; 13 twice.
    write(
        "orders.csv",
        "order_id,customer_id,order_date,total_amount,payment_method,shipping_country\n\
         10,1,2024-01-01,100.5,paypal,FR\n\
         11,2,2024-01-02,0,cash,DE\n\
         12,7,2024-01-03,50,cash,FR\n\
         13,2,2024-01-03,20,credit_card,DE\n\
         13,1,2024-01-04,30,credit_card,FR\n",
    );
    write(
        "order_items.csv",
        "order_item_id,order_id,product_id,quantity,unit_price\n\
         100,10,1,2,10.0\n\
         101,12,1,1,5.0\n\
         102,10,999,1,5.0\n\
         103,13,2,0,5.0\n\
         104,13,2,3,-1\n\
         105,13,2,3,2.5\n",
    );
    write(
        "product_reviews.csv",
        "review_id,product_id,customer_id,rating,review_text,review_date\n\
         1000,1,1,5,great,2024-02-01\n\
         1001,1,1,0,bad,2024-02-01\n\
         1002,2,2,6,,2024-02-01\n\
         1003,2,7,4,ok,2024-02-02\n\
         1004,999,1,3,,2024-02-02\n",
    );
    let db = rusqlite::Connection::open(dir.path().join("products_data.db")).unwrap_or_else(|e| panic!("{e}"));
    db.execute_batch(
        "CREATE TABLE products (product_id INTEGER, product_name TEXT, category TEXT, price REAL, stock_quantity INTEGER, brand TEXT);
         INSERT INTO products VALUES (1, 'Lamp', 'Home', 19.99, 10, 'Lumo'), (2, 'Mug', 'Kitchen', 5.0, 0, NULL);",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn local_lake() -> (tempfile::TempDir, String) {
    let dir = temp_dir();
    let url = format!("file://{}", dir.path().display());
    (dir, url)
}

/// The repository's pipeline run once on the hand-made sources, into a
/// fresh local lake.
struct HandMadeRun {
    sources: tempfile::TempDir,
    dir: tempfile::TempDir,
    url: String,
    output: Output,
}

impl HandMadeRun {
    fn new() -> Self {
        let sources = hand_made_sources();
        let (dir, url) = local_lake();
        let plugins = plugins_folder();
        let output = run_pipeline(sources.path(), &url, plugins.path(), &["--ingest-date", "2026-11-24"]);
        assert!(output.status.success(), "{}", text(&output).1);
        HandMadeRun { sources, dir, url, output }
    }

    fn lake(&self) -> Lake {
        Lake::open(&self.url).unwrap_or_else(|e| panic!("{e}"))
    }
}

#[test]
fn every_rule_on_hand_made_rows() {
    let run = HandMadeRun::new();
    let (output, lake) = (&run.output, run.lake());

    // The first of two rows with the same key wins; 2023-02-30 is no date,
    // so it becomes null (and is counted); `x7` is no integer, so its key is null.
    assert_eq!(silver_rows(&lake, "dim_customers"), ["1|F|FR|2023-01-05", "2|∅|DE|∅"]);
    assert_eq!(column_names(&lake, "dim_customers"), ["customer_id", "gender", "country", "signup_date"]);
    assert_eq!(reasons(&lake, "dim_customers"), BTreeMap::from([("duplicate_key".into(), 1), ("null_key".into(), 2)]));

    assert_eq!(silver_rows(&lake, "dim_products"), ["1|Lamp|Home|Lumo|19.99|10", "2|Mug|Kitchen|∅|5.0|0"]);

    // 11 has amount 0; 12's customer was rejected; the second 13 is a duplicate.
    assert_eq!(
        silver_rows(&lake, "fact_orders"),
        ["10|1|2024-01-01|100.5|paypal|FR", "13|2|2024-01-03|20.0|credit_card|DE"]
    );
    assert_eq!(
        reasons(&lake, "fact_orders"),
        BTreeMap::from([("duplicate_key".into(), 1), ("non_positive_amount".into(), 1), ("orphan_customer".into(), 1)])
    );

    // order_date from the order, line_amount = quantity × unit_price; 101's
    // order was itself rejected.
    assert_eq!(
        silver_rows(&lake, "fact_order_items"),
        ["100|10|1|2|10.0|2024-01-01|20.0", "105|13|2|3|2.5|2024-01-03|7.5"]
    );
    assert_eq!(
        column_names(&lake, "fact_order_items"),
        ["order_item_id", "order_id", "product_id", "quantity", "unit_price", "order_date", "line_amount"]
    );
    assert_eq!(
        reasons(&lake, "fact_order_items"),
        BTreeMap::from([
            ("non_positive_price".into(), 1),
            ("non_positive_quantity".into(), 1),
            ("orphan_order".into(), 1),
            ("orphan_product".into(), 1)
        ])
    );

    // Ratings 0 and 6 are out of range; a review needs its product and its customer.
    assert_eq!(silver_rows(&lake, "fact_reviews"), ["1000|1|1|5|2024-02-01"]);
    assert_eq!(
        reasons(&lake, "fact_reviews"),
        BTreeMap::from([
            ("orphan_customer".into(), 1),
            ("orphan_product".into(), 1),
            ("rating_out_of_range".into(), 2)
        ])
    );

    // One row per distinct order date of a kept order, with its ISO week and quarter.
    assert_eq!(silver_rows(&lake, "dim_date"), ["2024-01-01|2024|1|1|1|1", "2024-01-03|2024|1|3|1|1"]);

    // The report says the same, and counts the value that became null.
    let stdout = text(output).0;
    assert!(stdout.contains("quarantine dim_customers"), "{stdout}");
    let manifest = silver_manifest(&lake);
    let quarantine = &manifest.tables["dim_customers"].quarantine_files;
    assert!(quarantine.iter().any(|f| f.contains("/nulled/")), "{quarantine:?}");
}

#[test]
fn quarantine_keeps_the_original_values_the_reason_and_the_position() {
    let run = HandMadeRun::new();
    let lake = run.lake();
    let manifest = silver_manifest(&lake);
    let files = &manifest.tables["dim_customers"].quarantine_files;
    let read = |kind: &str| {
        let chosen: Vec<String> = files.iter().filter(|f| f.contains(kind)).cloned().collect();
        rows(&lake.read_parquet(&chosen).unwrap_or_else(|e| panic!("{e}")))
    };
    // Rejected by the plugin: the Bronze text as it was, the reason, the row.
    assert_eq!(read("/clean/"), ["x7|Eve|e@x|F|2023-01-01|FR|null_key|3", "∅|Nobody|n@x|F|2023-01-01|FR|null_key|4"]);
    // Rejected by the relational checks: the cleaned values, the reason, the row.
    assert_eq!(read("/checks/"), ["2|M|DE|2023-03-01|2|duplicate_key"]);
    // The value that became null, where it was.
    assert_eq!(read("/nulled/"), ["1|signup_date|2023-02-30|bad_date"]);
}

#[test]
fn conservation_holds_on_generated_data_and_is_in_the_report() {
    let sources = generated_sources("0.002");
    let (dir, url) = local_lake();
    let plugins = plugins_folder();
    let report = dir.path().join("report.json");
    let output =
        run_pipeline(sources.path(), &url, plugins.path(), &["--ingest-date", "2026-11-24", "--report", &arg(&report)]);
    assert!(output.status.success(), "{}", text(&output).1);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
    let silver = json["stages"].as_array().and_then(|s| s.iter().find(|s| s["stage"] == "silver")).cloned();
    let silver = silver.unwrap_or_else(|| panic!("no silver stage in {json}"));
    let mut quarantined_somewhere = 0;
    for table in silver["tables"].as_array().unwrap_or_else(|| panic!("{silver}")) {
        if table["source"] == "sql" {
            continue;
        }
        let (bronze, rows, quarantined) =
            (table["bronze_rows"].as_u64(), table["rows"].as_u64(), table["quarantined"].as_u64());
        let (bronze, rows, quarantined) = (bronze.unwrap_or(0), rows.unwrap_or(0), quarantined.unwrap_or(0));
        assert!(bronze > 0 && rows > 0, "{table}");
        assert_eq!(bronze, rows + quarantined, "{table}");
        let by_reason: u64 =
            table["reasons"].as_object().map(|r| r.values().filter_map(|v| v.as_u64()).sum()).unwrap_or(0);
        assert_eq!(by_reason, quarantined, "{table}");
        assert_eq!(table["plugin"]["name"], "clean", "{table}");
        quarantined_somewhere += quarantined;
    }
    assert!(quarantined_somewhere > 0, "generated data has bad rows to quarantine: {silver}");
}

#[test]
fn silver_is_the_same_on_a_local_lake_and_on_hdfs() {
    let sources = hand_made_sources();
    let plugins = plugins_folder();
    let (_dir, local) = local_lake();
    let hdfs = format!("{}/tests/silver-{}", medallion_tests::hdfs::mini_hdfs().url, std::process::id());
    for url in [&local, &hdfs] {
        let output =
            run_pipeline(sources.path(), url, plugins.path(), &["--only", "bronze", "--ingest-date", "2026-11-24"]);
        assert!(output.status.success(), "{url}: {}", text(&output).1);
        let output = run_pipeline(sources.path(), url, plugins.path(), &["--only", "silver"]);
        assert!(output.status.success(), "{url}: {}", text(&output).1);
    }
    let (local, hdfs) =
        (Lake::open(&local).unwrap_or_else(|e| panic!("{e}")), Lake::open(&hdfs).unwrap_or_else(|e| panic!("{e}")));
    for table in ["dim_customers", "dim_products", "dim_date", "fact_orders", "fact_order_items", "fact_reviews"] {
        let on_hdfs = silver_rows(&hdfs, table);
        assert!(!on_hdfs.is_empty(), "{table}");
        assert_eq!(silver_rows(&local, table), on_hdfs, "{table}");
        assert_eq!(reasons(&local, table), reasons(&hdfs, table), "{table}");
    }
}

#[test]
fn ddl_describes_the_committed_silver_tables_for_each_engine() {
    let run = HandMadeRun::new();
    let (sources, dir, url) = (&run.sources, &run.dir, &run.url);
    let pipeline = medallion_tests::repo_root().join("pipeline.yaml");
    let ddl = |engine: &str| {
        // `hive-ddl`, the command's name before Delta, still works.
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["hive-ddl", &arg(&pipeline), "--set", &format!("lake={url}"), "--set"])
            .arg(format!("sources.dir={}", sources.path().display()))
            .args(["--engine", engine])
            .env("XDG_CACHE_HOME", shared_home())
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(output.status.success(), "{}", text(&output).1);
        text(&output).0
    };
    let lake = dir.path().display();
    let spark = ddl("spark");
    assert!(spark.contains("CREATE DATABASE IF NOT EXISTS silver;"), "{spark}");
    let items = format!(
        "CREATE TABLE IF NOT EXISTS silver.fact_order_items USING DELTA LOCATION 'file://{lake}/silver/fact_order_items';"
    );
    assert!(spark.contains(&items), "{spark}");
    assert_eq!(spark.matches("USING DELTA").count(), 6, "{spark}");
    let trino = ddl("trino");
    assert!(trino.contains("CALL delta.system.register_table(schema_name => 'silver', table_name => 'fact_order_items', table_location => 'file://"), "{trino}");
    // Hive through Delta's connector, over the table's folder.
    let columns = "(\n  `order_item_id` BIGINT,\n  `order_id` BIGINT,\n  `product_id` BIGINT,\n  `quantity` BIGINT,\n  `unit_price` DOUBLE,\n  `order_date` DATE,\n  `line_amount` DOUBLE\n)";
    let hive = ddl("hive");
    let items = format!(
        "CREATE EXTERNAL TABLE silver.fact_order_items {columns}\nSTORED BY 'io.delta.hive.DeltaStorageHandler'\nLOCATION 'file://{lake}/silver/fact_order_items';"
    );
    assert!(hive.contains(&items), "{hive}");
    assert_eq!(hive.matches("CREATE EXTERNAL TABLE").count(), 6, "{hive}");
    // Presto reads the symlink manifest, which each commit rewrites: the
    // definition stays right across runs.
    let presto = ddl("presto");
    let items = format!(
        "CREATE EXTERNAL TABLE silver.fact_order_items {columns}\nROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'\nSTORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat'\nOUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'\nLOCATION 'file://{lake}/silver/fact_order_items/_symlink_format_manifest';"
    );
    assert!(presto.contains(&items), "{presto}");
    let listed = std::fs::read_to_string(dir.path().join("silver/fact_order_items/_symlink_format_manifest/manifest"))
        .unwrap_or_else(|e| panic!("{e}"));
    let manifest = silver_manifest(&Lake::open(url).unwrap_or_else(|e| panic!("{e}")));
    let files: Vec<String> =
        manifest.tables["fact_order_items"].files.iter().map(|f| format!("file://{lake}/{f}")).collect();
    assert_eq!(listed.lines().collect::<Vec<_>>(), files, "the symlink manifest lists the current files");
}

/// `fact_reviews` is built beside `fact_orders` (their parents are the same
/// two dimensions); its cleaning fails on its first batch, with a column the
/// config names and the data lacks (which `validate` cannot see without
/// data). The run fails naming the plugin, the table and the cause, and
/// publishes no Silver, whatever its neighbour did.
#[test]
fn a_table_that_fails_beside_another_fails_the_run_and_publishes_nothing() {
    let sources = hand_made_sources();
    let (_dir, url) = local_lake();
    let plugins = plugins_folder();
    let folder = temp_dir();
    let pipeline = folder.path().join("pipeline.yaml");
    let text_of = std::fs::read_to_string(medallion_tests::repo_root().join("pipeline.yaml")).unwrap();
    let broken = text_of.replace("- { name: review_date, type: date }", "- { name: review_day, type: date }");
    assert_ne!(broken, text_of, "pipeline.yaml no longer has fact_reviews' review_date rule");
    std::fs::write(&pipeline, broken).unwrap();

    let output = run_this_pipeline(&pipeline, sources.path(), &url, plugins.path(), &["--ingest-date", "2026-11-24"]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    for needed in ["silver table `fact_reviews`", "plugin `clean`", "`push`", "review_day"] {
        assert!(stderr.contains(needed), "no `{needed}` in:\n{stderr}");
    }
    let lake = Lake::open(&url).unwrap();
    assert!(lake.get("silver/_commits/current.json").unwrap().is_none(), "Silver was published:\n{stderr}");
    assert!(lake.lock_holder().unwrap().is_none(), "the lake is still locked");
}

/// A cleaning plugin that reports a nulled value only at `finish`, after the
/// row it belongs to went out, would lose that value's trace: the run fails
/// naming the plugin and the call, and publishes no Silver.
#[test]
fn nulled_values_sent_at_finish_fail_the_run_instead_of_being_dropped() {
    let sources = hand_made_sources();
    let (_dir, url) = local_lake();
    let plugins = plugins_folder();
    medallion_tests::copy_plugin(medallion_tests::artifacts::LATE_NULLS, &plugins.path().join("late-nulls.wasm"));

    let output = run_pipeline(sources.path(), &url, plugins.path(), &["--ingest-date", "2026-11-24"]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    for needed in ["plugin `clean`", "`finish`", "must emit each row when it is pushed"] {
        assert!(stderr.contains(needed), "no `{needed}` in:\n{stderr}");
    }
    let lake = Lake::open(&url).unwrap();
    assert!(lake.get("silver/_commits/current.json").unwrap().is_none(), "Silver was published:\n{stderr}");
}

/// `limits.memory` far below Silver's keys: the bitmaps, position arrays
/// and taken columns past the keys' share go to mapped files in the scratch
/// folder, and every Silver table and quarantine file holds the same rows as
/// a run whose keys stayed on the heap.
#[test]
fn keys_spilled_past_the_budget_give_the_same_silver() {
    let sources = generated_sources("0.02");
    let plugins = plugins_folder();
    let build = |budget: &[&str]| {
        let (dir, url) = local_lake();
        let mut args = vec!["--ingest-date", "2026-11-24"];
        args.extend(budget);
        let output = run_pipeline(sources.path(), &url, plugins.path(), &args);
        assert!(output.status.success(), "{}", text(&output).1);
        (dir, url, text(&output).0)
    };
    let (_heap_dir, heap, heap_out) = build(&[]);
    let (spilled_dir, spilled, spilled_out) = build(&["--set", "limits.memory=1MiB"]);
    assert!(!heap_out.contains("mapped files"), "{heap_out}");
    assert!(spilled_out.contains("past their share of limits.memory: at most"), "{spilled_out}");
    let (heap, spilled) =
        (Lake::open(&heap).unwrap_or_else(|e| panic!("{e}")), Lake::open(&spilled).unwrap_or_else(|e| panic!("{e}")));
    let quarantine = |lake: &Lake, table: &str, kind: &str| {
        let files: Vec<String> = silver_manifest(lake).tables[table]
            .quarantine_files
            .iter()
            .filter(|f| f.contains(&format!("/{kind}/")))
            .cloned()
            .collect();
        rows(&lake.read_parquet(&files).unwrap_or_else(|e| panic!("{e}")))
    };
    for table in ["dim_customers", "dim_products", "dim_date", "fact_orders", "fact_order_items", "fact_reviews"] {
        let rows = silver_rows(&spilled, table);
        assert!(!rows.is_empty(), "{table}");
        assert_eq!(silver_rows(&heap, table), rows, "{table}");
        assert_eq!(reasons(&heap, table), reasons(&spilled, table), "{table}");
        for kind in ["clean", "checks", "nulled"] {
            assert_eq!(quarantine(&heap, table, kind), quarantine(&spilled, table, kind), "{table} {kind}");
        }
    }
    assert!(reasons(&spilled, "fact_order_items").contains_key("orphan_order"), "the parent check was exercised");
    // The files were unlinked as they were mapped, and the scratch folder
    // went with the run.
    let scratch = spilled_dir.path().join("_scratch");
    let left: Vec<_> = std::fs::read_dir(&scratch).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}
