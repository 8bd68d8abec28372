//! The lake's tables as Delta tables that other engines read: PySpark with
//! delta-spark, delta-rs (the `deltalake` package) and polars read every
//! table with the rows and the numeric sums the host reads, time travel
//! returns an earlier run's rows, a killed run's commit is invisible, and
//! the history keeps the last `history.keep_runs` runs. On a local lake
//! and on a real HDFS (MiniDFSCluster; polars has no HDFS reader).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use medallion_lake::Lake;
use medallion_lake::delta::{DeltaTable, find_tables};
use medallion_tests::{Pause, plugins_folder, repo_root, temp_dir};
use serde_json::{Value, json};

use crate::util::{arg, host, python, shared_home, text};

/// Runs kept per table in these tests.
const KEEP: u64 = 2;

/// What a table holds at one version: rows, and the sum of each numeric
/// column (`None`: no value).
#[derive(Debug, Clone, PartialEq)]
struct Contents {
    rows: u64,
    sums: BTreeMap<String, Option<f64>>,
}

/// Asks `engine` (tests/delta/read_delta.py) to read `reads` in the lake.
fn read_with(engine: &str, lake: &str, request: Value) -> Value {
    let warehouse = temp_dir();
    let mut request = request;
    request["lake"] = json!(lake);
    request["warehouse"] = json!(arg(warehouse.path()));
    let mut child = Command::new(python())
        .arg(repo_root().join("tests/delta/read_delta.py"))
        .arg(engine)
        .current_dir(warehouse.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("no stdin"));
        stdin.write_all(request.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    }
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{engine} failed:\n{stderr}");
    // The answer is the last line (Spark's Ivy prints to standard output first).
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{engine} answered `{stdout}` ({e}):\n{stderr}"))
}

/// What the host reads of `root` at `version` (the latest when `None`).
fn host_reads(lake: &Lake, root: &str, version: Option<u64>) -> Contents {
    let table = DeltaTable::new(lake, root);
    let snapshot = table.snapshot(version).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("no {root}"));
    let batches = lake.read_parquet(&table.files_of(&snapshot)).unwrap_or_else(|e| panic!("{root}: {e}"));
    contents(&batches, snapshot.rows())
}

fn contents(batches: &[RecordBatch], rows: u64) -> Contents {
    let mut sums: BTreeMap<String, Option<f64>> = BTreeMap::new();
    for batch in batches {
        assert_eq!(batch.schema().fields().len(), batches[0].schema().fields().len());
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            let values: Vec<f64> = match field.data_type() {
                DataType::Int8 => column.as_primitive::<Int8Type>().iter().flatten().map(f64::from).collect(),
                DataType::Int16 => column.as_primitive::<Int16Type>().iter().flatten().map(f64::from).collect(),
                DataType::Int32 => column.as_primitive::<Int32Type>().iter().flatten().map(f64::from).collect(),
                DataType::Int64 => column.as_primitive::<Int64Type>().iter().flatten().map(|v| v as f64).collect(),
                DataType::Float32 => column.as_primitive::<Float32Type>().iter().flatten().map(f64::from).collect(),
                DataType::Float64 => column.as_primitive::<Float64Type>().iter().flatten().collect(),
                _ => continue,
            };
            let sum = sums.entry(field.name().clone()).or_insert(None);
            if column.null_count() < column.len() {
                *sum = Some(sum.unwrap_or(0.0) + values.iter().sum::<f64>());
            }
        }
    }
    Contents { rows, sums }
}

/// An engine's answer for one read.
fn answered(answer: &Value) -> Result<Contents, String> {
    if let Some(error) = answer["error"].as_str() {
        return Err(error.to_owned());
    }
    let sums = answer["sums"]
        .as_object()
        .map(|sums| sums.iter().map(|(column, sum)| (column.clone(), sum.as_f64())).collect())
        .unwrap_or_default();
    Ok(Contents { rows: answer["rows"].as_u64().unwrap_or(u64::MAX), sums })
}

/// Whether two reads agree: the same rows, the same columns summed, sums
/// equal to 1e-9 (floating-point addition in another order).
fn agree(a: &Contents, b: &Contents) -> bool {
    a.rows == b.rows
        && a.sums.keys().eq(b.sums.keys())
        && a.sums.iter().zip(&b.sums).all(|((_, x), (_, y))| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
            (None, None) => true,
            _ => false,
        })
}

/// One lake, its runs, and what the host read after each.
struct Lakeside {
    url: String,
    plugins: tempfile::TempDir,
    store: PathBuf,
    _dir: tempfile::TempDir,
}

impl Lakeside {
    fn new(url: String) -> Self {
        let dir = temp_dir();
        let store = dir.path().join("gold.db");
        Lakeside { url, plugins: plugins_folder(), store, _dir: dir }
    }

    fn lake(&self) -> Lake {
        Lake::open(&self.url).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A `host run` of the repository's pipeline over sources of `seed`.
    fn run(&self, seed: u32) -> Command {
        let sources = shared_home().join(format!("delta-sources-{seed}"));
        if !sources.join("orders.csv").is_file() {
            let catalogue = arg(&repo_root().join("seed/products_data.db"));
            let seed = seed.to_string();
            let out = arg(&sources);
            let made = host(
                shared_home(),
                &["gen-data", "--scale", "0.005", "--seed", &seed, "--out", &out, "--products-db", &catalogue],
            );
            assert!(made.status.success(), "{}", text(&made).1);
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
        command
            .args(["run", &arg(&repo_root().join("pipeline.yaml")), "--ingest-date", "2026-11-24"])
            .args(["--progress", "log", "--set", &format!("history.keep_runs={KEEP}")])
            .env("XDG_CACHE_HOME", shared_home())
            .env_remove("RUST_LOG")
            .env("MEDALLION_SOURCES", &sources)
            .env("MEDALLION_LAKE", &self.url)
            .env("MEDALLION_PLUGINS", self.plugins.path())
            .env("MEDALLION_GOLD", format!("sqlite:{}", self.store.display()));
        command
    }

    fn run_whole(&self, seed: u32) {
        let output = self.run(seed).output().unwrap_or_else(|e| panic!("{e}"));
        assert!(output.status.success(), "{}", text(&output).1);
    }

    /// Gold's orders and revenue, as the store holds them now.
    fn gold_totals(&self) -> String {
        let db = rusqlite::Connection::open(&self.store).unwrap_or_else(|e| panic!("{e}"));
        db.query_row("SELECT SUM(total_orders) || '|' || SUM(total_revenue) FROM dm_sales_daily", [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A run of `seed` killed once its files are written, before its commit
    /// of `zone`.
    fn run_killed_before_commit(&self, seed: u32, zone: &str) {
        let point = format!("commit-{zone}");
        let pause = Pause::at(&[&point]);
        let mut child = self
            .run(seed)
            .envs(pause.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        pause.reached(&point, Duration::from_secs(300));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The Silver tables' Delta folders.
    fn silver_tables(&self) -> Vec<String> {
        let all = find_tables(&self.lake()).unwrap_or_else(|e| panic!("{e}"));
        all.into_iter().filter(|t| t.starts_with("silver/")).collect()
    }

    /// What the host reads of every Delta table now, by folder.
    fn every_table(&self) -> BTreeMap<String, Contents> {
        let lake = self.lake();
        let tables = find_tables(&lake).unwrap_or_else(|e| panic!("{e}"));
        tables.into_iter().map(|t| (t.clone(), host_reads(&lake, &t, None))).collect()
    }

    /// The run log of the last run, as `host runs --json` shows it.
    fn last_run(&self) -> Value {
        let output = Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["runs", &arg(&repo_root().join("pipeline.yaml")), "--json", "--limit", "1"])
            .env("MEDALLION_LAKE", &self.url)
            .env("MEDALLION_GOLD", format!("sqlite:{}", self.store.display()))
            .env("MEDALLION_SOURCES", shared_home())
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(output.status.success(), "{}", text(&output).1);
        let runs: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"));
        runs.as_array().and_then(|r| r.first()).cloned().unwrap_or_else(|| panic!("no run in the log"))
    }
}

/// Files under the lake's zones that are data (not a log or a manifest).
fn data_files(lake: &Lake) -> BTreeSet<String> {
    ["bronze", "silver", "quarantine"]
        .iter()
        .flat_map(|zone| lake.list(zone).unwrap_or_else(|e| panic!("{e}")))
        .filter(|f| f.ends_with(".parquet"))
        .collect()
}

/// The files of every version each table keeps.
fn kept_files(lake: &Lake) -> BTreeSet<String> {
    let mut kept = BTreeSet::new();
    for root in find_tables(lake).unwrap_or_else(|e| panic!("{e}")) {
        let table = DeltaTable::new(lake, &root);
        let versions = table.versions().unwrap_or_else(|e| panic!("{e}"));
        let latest = *versions.last().unwrap_or(&0);
        for version in versions.into_iter().filter(|v| v + KEEP > latest) {
            let snapshot = table.snapshot(Some(version)).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!());
            kept.extend(table.files_of(&snapshot));
        }
    }
    kept
}

fn other_engines_read_the_lake_as_the_host_does(url: &str, engines: &[&str]) {
    let side = Lakeside::new(url.to_owned());
    // Four runs over different data, each table keeping two: versions 0 to
    // 3, of which 2 and 3 stay readable.
    let (mut after_run, mut runs, mut golds) = (Vec::new(), Vec::new(), Vec::new());
    for seed in 1..=4 {
        side.run_whole(seed);
        after_run.push(side.every_table());
        runs.push(side.last_run()["run_id"].as_str().unwrap_or_default().to_owned());
        golds.push(side.gold_totals());
    }
    let lake = side.lake();
    let silver = side.silver_tables();
    assert!(silver.len() >= 6, "{silver:?}");
    // The run log names each table's version, with the rows it holds.
    let log = side.last_run();
    for entry in log["tables"].as_array().unwrap_or_else(|| panic!("{log}")) {
        let stage = entry["stage"].as_str().unwrap_or_default();
        if stage == "gold" {
            continue;
        }
        let root = format!("{stage}/{}", entry["table"].as_str().unwrap_or_default());
        let latest = DeltaTable::new(&lake, &root).versions().unwrap_or_else(|e| panic!("{e}")).last().copied();
        assert_eq!(entry["delta_version"].as_u64(), latest, "{root} in {log}");
    }
    // History: every version listed; the two kept readable; the files of
    // older ones gone.
    for root in &silver {
        let history = DeltaTable::new(&lake, root).history().unwrap_or_else(|e| panic!("{e}"));
        let readable: Vec<bool> = history.iter().map(|v| v.readable).collect();
        assert_eq!(readable, [false, false, true, true], "{root}: {history:?}");
    }
    assert_eq!(data_files(&lake), kept_files(&lake), "only the kept versions' files remain");

    // A fifth run, killed after writing its files, before its Silver commit.
    side.run_killed_before_commit(5, "silver");
    let now = side.every_table();
    let latest = &after_run[3];
    for root in &silver {
        assert_eq!(now[root], latest[root], "{root}: the killed run's Silver is not visible");
    }

    // The other engines read what the host reads: every table now, and each
    // Silver table as the third run left it (the previous version).
    let mut reads: Vec<Value> = now.keys().map(|t| json!({ "table": t, "version": null })).collect();
    reads.extend(silver.iter().map(|t| json!({ "table": t, "version": 2 })));
    let mut expected: Vec<Contents> = now.values().cloned().collect();
    expected.extend(silver.iter().map(|t| after_run[2][t].clone()));
    assert_ne!(after_run[2][&silver[0]], after_run[3][&silver[0]], "the runs' data differ");
    for engine in engines {
        let mut request = json!({ "reads": reads });
        if *engine == "spark" {
            let ddl = Command::new(env!("CARGO_BIN_EXE_host"))
                .args(["ddl", &arg(&repo_root().join("pipeline.yaml")), "--engine", "spark"])
                .env("MEDALLION_LAKE", &side.url)
                .env("MEDALLION_SOURCES", shared_home())
                .output()
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(ddl.status.success(), "{}", text(&ddl).1);
            request["ddl"] = json!(text(&ddl).0);
            request["queries"] = json!(silver.iter().map(|t| t.replace('/', ".")).collect::<Vec<_>>());
        }
        let answer = read_with(engine, &side.url, request);
        let answers = answer["reads"].as_array().unwrap_or_else(|| panic!("{answer}"));
        assert_eq!(answers.len(), reads.len());
        for ((read, answer), want) in reads.iter().zip(answers).zip(&expected) {
            let got = answered(answer).unwrap_or_else(|e| panic!("{engine} cannot read {read}: {e}"));
            assert!(agree(&got, want), "{engine} reads {read} as {got:?}; the host reads {want:?}");
        }
        for table in &silver {
            let name = table.replace('/', ".");
            if let Some(rows) = answer["queries"].get(&name) {
                assert_eq!(rows.as_u64(), Some(now[table].rows), "{engine}: SELECT COUNT(*) FROM {name}");
            }
        }
        if *engine == "spark" {
            assert_eq!(answer["queries"].as_object().map(|q| q.len()), Some(silver.len()), "{answer}");
        }
    }

    // Gold from the third run's Silver (still kept) is the third run's Gold.
    assert_ne!(golds[2], golds[3]);
    let again =
        side.run(4).args(["--only", "gold", "--silver-run", &runs[2]]).output().unwrap_or_else(|e| panic!("{e}"));
    assert!(again.status.success(), "{}", text(&again).1);
    assert_eq!(side.gold_totals(), golds[2], "Gold of run {}'s Silver", runs[2]);
    // The first run's is trimmed: said so, and nothing published.
    let gone =
        side.run(4).args(["--only", "gold", "--silver-run", &runs[0]]).output().unwrap_or_else(|e| panic!("{e}"));
    let stderr = text(&gone).1;
    assert!(!gone.status.success() && stderr.contains("no Silver of run"), "{stderr}");
    assert_eq!(side.gold_totals(), golds[2]);

    // The next run commits, and deletes the killed run's files.
    side.run_whole(6);
    assert_eq!(data_files(&lake), kept_files(&lake), "the killed run's files are gone");
}

mod local {
    #[test]
    fn a_lake_of_manifests_is_converted_with_nothing_lost() {
        let dir = medallion_tests::temp_dir();
        super::a_lake_of_manifests_is_converted_with_nothing_lost(&format!("file://{}", dir.path().display()));
    }

    #[test]
    fn other_engines_read_the_lake_as_the_host_does() {
        let dir = medallion_tests::temp_dir();
        let url = format!("file://{}", dir.path().display());
        super::other_engines_read_the_lake_as_the_host_does(&url, &["spark", "deltalake", "polars"]);
    }
}

mod hdfs {
    #[test]
    fn a_lake_of_manifests_is_converted_with_nothing_lost() {
        let url = format!("{}/tests/convert-{}", medallion_tests::hdfs::mini_hdfs().url, std::process::id());
        super::a_lake_of_manifests_is_converted_with_nothing_lost(&url);
    }

    #[test]
    fn other_engines_read_the_lake_as_the_host_does() {
        let url = format!("{}/tests/delta-{}", medallion_tests::hdfs::mini_hdfs().url, std::process::id());
        // polars reads no hdfs:// URL (it has no object store for it).
        super::other_engines_read_the_lake_as_the_host_does(&url, &["spark", "deltalake"]);
    }
}

/// A lake written by a host before Delta tables (manifests, `run=<id>`
/// folders) is converted, nothing lost: every committed file keeps its rows
/// under a Delta table, the manifests name the new files, the old ones go,
/// and the old runs become the tables' first versions.
fn a_lake_of_manifests_is_converted_with_nothing_lost(url: &str) {
    use medallion_lake::{Manifest, PartWriter, TableFiles, table_properties};
    let lake = Lake::open(url).unwrap_or_else(|e| panic!("{e}"));
    let batch = |n: i64| {
        let ids: arrow_array::ArrayRef = std::sync::Arc::new(arrow_array::Int64Array::from_iter_values(0..n));
        let names: arrow_array::ArrayRef =
            std::sync::Arc::new(arrow_array::StringArray::from_iter_values((0..n).map(|i| format!("n{i}"))));
        RecordBatch::try_from_iter([("id", ids), ("name", names)]).unwrap_or_else(|e| panic!("{e}"))
    };
    let write = |folder: &str, rows: i64| -> Vec<String> {
        let batch = batch(rows);
        let mut writer = PartWriter::new(&lake, folder.to_owned(), batch.schema(), 1 << 20, table_properties(1024));
        writer.write(&batch).unwrap_or_else(|e| panic!("{e}"));
        writer.finish().unwrap_or_else(|e| panic!("{e}")).0
    };
    let entry = |files: Vec<String>, rows: u64, quarantine_files: Vec<String>, quarantined: u64| TableFiles {
        source: "old".to_owned(),
        files,
        rows,
        quarantine_files,
        quarantined,
        ..TableFiles::default()
    };
    // Two Bronze dates and a Silver, as the host before Delta wrote them.
    for (date, run, rows) in [("2026-11-22", "old-a", 3), ("2026-11-23", "old-b", 5)] {
        let files = write(&format!("bronze/orders/ingest_date={date}/run={run}"), rows);
        let manifest = Manifest {
            run_id: run.to_owned(),
            committed_at: "2026-11-23T00:00:00Z".to_owned(),
            tables: BTreeMap::from([("orders".to_owned(), entry(files, rows as u64, Vec::new(), 0))]),
        };
        let json = serde_json::to_vec(&manifest).unwrap_or_else(|e| panic!("{e}"));
        lake.put(&format!("bronze/_commits/ingest_date={date}.json"), json).unwrap_or_else(|e| panic!("{e}"));
    }
    let silver = write("silver/dim_things/current/run=old-b", 4);
    let rejected = write("quarantine/silver/dim_things/current/run=old-b", 2);
    let clean = "quarantine/silver/dim_things/current/run=old-b/clean-00000.parquet".to_owned();
    lake.copy(&rejected[0], &clean).unwrap_or_else(|e| panic!("{e}"));
    lake.delete(&rejected[0]).unwrap_or_else(|e| panic!("{e}"));
    let manifest = Manifest {
        run_id: "old-b".to_owned(),
        committed_at: "2026-11-23T00:00:00Z".to_owned(),
        tables: BTreeMap::from([("dim_things".to_owned(), entry(silver, 4, vec![clean], 2))]),
    };
    let json = serde_json::to_vec(&manifest).unwrap_or_else(|e| panic!("{e}"));
    lake.put("silver/_commits/current.json", json).unwrap_or_else(|e| panic!("{e}"));

    let convert = || {
        Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["lake", "convert", &arg(&repo_root().join("pipeline.yaml"))])
            .env("MEDALLION_LAKE", url)
            .env("MEDALLION_SOURCES", shared_home())
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let converted = convert();
    assert!(converted.status.success(), "{}", text(&converted).1);
    let (stdout, stderr) = text(&converted);
    assert!(stderr.contains("converting a partition published by an older host"), "{stderr}");
    assert!(
        stdout.contains("3 Delta tables (bronze/orders, quarantine/silver/dim_things/clean, silver/dim_things)"),
        "{stdout}"
    );

    // Bronze: one table, both dates, each date's run a version.
    let orders = DeltaTable::new(&lake, "bronze/orders");
    let history = orders.history().unwrap_or_else(|e| panic!("{e}"));
    let runs: Vec<(Option<&str>, u64)> = history.iter().map(|v| (v.run_id.as_deref(), v.rows)).collect();
    assert_eq!(runs, [(Some("old-a"), 3), (Some("old-b"), 8)]);
    for (date, rows) in [("2026-11-22", 3), ("2026-11-23", 5)] {
        let manifest = Manifest::read(&lake, "bronze", &format!("ingest_date={date}"))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("the {date} manifest is gone"));
        let files = &manifest.tables["orders"].files;
        assert!(files.iter().all(|f| f.starts_with(&format!("bronze/orders/ingest_date={date}/part-"))), "{files:?}");
        let read: usize = lake.read_parquet(files).unwrap_or_else(|e| panic!("{e}")).iter().map(|b| b.num_rows()).sum();
        assert_eq!(read, rows, "{date}");
        assert_eq!(manifest.tables["orders"].versions.len(), 1, "{manifest:?}");
    }
    // Silver and its quarantine.
    assert_eq!(host_reads(&lake, "silver/dim_things", None).rows, 4);
    assert_eq!(host_reads(&lake, "quarantine/silver/dim_things/clean", None).rows, 2);

    // The old files are gone; converting again changes nothing.
    let left: Vec<String> = data_files(&lake).into_iter().filter(|f| f.contains("run=")).collect();
    assert!(left.is_empty(), "{left:?}");
    let again = convert();
    assert!(again.status.success(), "{}", text(&again).1);
    assert_eq!(orders.versions().unwrap_or_else(|e| panic!("{e}")).len(), 2, "nothing converted twice");
}
