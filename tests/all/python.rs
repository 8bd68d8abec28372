//! The `medallion` Python module (host/python, a wheel that scripts/test
//! installs in the test venv with maturin): the plugin runtime in a Python
//! process gives what the host's gives, fails as the host's does, and runs
//! on the executors of a Spark standalone cluster of the test's own (a
//! master and two workers, `medallion_tests::spark`) through `mapInArrow`,
//! losing a worker mid-job without losing a row; and a whole pipeline run
//! on that cluster by `host spark-submit` gives the host's results, loses a
//! worker without a difference, and publishes nothing when a plugin fails on
//! an executor.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use medallion_plugin::Limits;
use medallion_tests::spark::SparkCluster;
use medallion_tests::{artifacts, plugins_folder, repo_root, temp_dir};

use crate::util::{python, shared_home, shared_runtime, text};

/// Customers as Bronze holds them (text), one edge case per row, with the
/// position column the host adds.
fn customers() -> RecordBatch {
    let text = |values: &[Option<&str>]| Arc::new(StringArray::from(values.to_vec())) as ArrayRef;
    RecordBatch::try_from_iter([
        ("customer_id", text(&[Some("1"), Some("2"), None, Some("x7"), Some("5")])),
        ("name", text(&[Some("Ann"), Some("Bo"), Some("Cy"), Some("Di"), Some("Ed")])),
        ("email", text(&[Some("a@x"), None, Some("c@x"), Some("d@x"), Some("e@x")])),
        ("gender", text(&[Some("F"), Some("M"), None, Some("F"), Some("")])),
        ("signup_date", text(&[Some("2023-01-05"), Some("2023-02-30"), Some("2023-03-01"), None, Some("2024-12-31")])),
        ("country", text(&[Some("FR"), Some("DE"), Some("ES"), Some("IT"), None])),
        ("_row", Arc::new(UInt64Array::from_iter_values(0..5)) as ArrayRef),
    ])
    .unwrap_or_else(|e| panic!("{e}"))
}

fn read_ipc(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = arrow_ipc::reader::FileReader::try_new(file, None).unwrap_or_else(|e| panic!("{e}"));
    reader.collect::<Result<_, _>>().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_plugin_runtime_in_python_gives_the_hosts_results_and_runs_on_spark() {
    let plugins = plugins_folder();
    let dir = temp_dir();
    let spec =
        medallion_pipeline::load(&repo_root().join("pipeline.yaml"), &[], |_| None).unwrap_or_else(|e| panic!("{e}"));
    let config = spec.silver.tables["dim_customers"].clean.as_ref().map(|step| step.config.clone()).unwrap_or_default();
    let batch = customers();
    let input = dir.path().join("input.arrow");
    let mut writer = arrow_ipc::writer::FileWriter::try_new(
        std::fs::File::create(&input).unwrap_or_else(|e| panic!("{e}")),
        &batch.schema(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    writer.write(&batch).and_then(|()| writer.finish()).unwrap_or_else(|e| panic!("{e}"));
    let evil = dir.path().join("evil.wasm");
    medallion_tests::copy_plugin(artifacts::EVIL, &evil);
    let cluster = SparkCluster::start(&python(), 2).unwrap_or_else(|e| panic!("cannot start Spark: {e}"));
    let request = serde_json::json!({
        "master": cluster.master,
        "clean": plugins.path().join("clean.wasm"),
        "passthrough": plugins.path().join("passthrough.wasm"),
        "evil": evil,
        "config": config,
        "input": input,
        "out": dir.path(),
    });
    let request_file = dir.path().join("request.json");
    std::fs::write(&request_file, request.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let output = std::process::Command::new(python())
        .arg(repo_root().join("tests/python/plugins_in_python.py"))
        .arg(&request_file)
        .env("PYSPARK_PYTHON", python())
        .env("XDG_CACHE_HOME", shared_home())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python: {e}"));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let answer: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no answer in: {stdout}\n{stderr}"));

    // The same plugin in this process: every port the same, cell for cell.
    let runtime = shared_runtime();
    let plugin = runtime.load(&plugins.path().join("clean.wasm")).unwrap_or_else(|e| panic!("{e}"));
    let mut instance = plugin
        .instantiate(&config.to_string(), Limits::default().with_memory_bytes(256 << 20))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut outputs = instance.push("in", &batch).unwrap_or_else(|e| panic!("{e}"));
    outputs.extend(instance.finish().unwrap_or_else(|e| panic!("{e}")));
    let mut ports: Vec<String> = Vec::new();
    for (port, batches) in outputs.iter().filter(|(_, batches)| !batches.is_empty()) {
        if !ports.contains(port) {
            ports.push(port.clone());
        }
        let here: Vec<RecordBatch> =
            outputs.iter().filter(|(p, _)| p == port).flat_map(|(_, b)| b.iter().cloned()).collect();
        let there = read_ipc(&dir.path().join(format!("{port}.arrow")));
        let concat = |batches: &[RecordBatch]| {
            arrow_select::concat::concat_batches(&batches[0].schema(), batches).unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(concat(&here), concat(&there), "port {port}: the host's and Python's");
        assert!(batches.iter().map(|b| b.num_rows()).sum::<usize>() > 0);
    }
    ports.sort();
    assert_eq!(answer["ports"], serde_json::json!(ports), "{answer}");
    assert!(ports.contains(&"rejected".to_owned()) && ports.contains(&"out".to_owned()), "{ports:?}");
    assert_eq!(answer["contract"], medallion_plugin::CONTRACT_VERSION);

    // A trap: the plugin, the call and the cause, and no second call.
    let trapped = answer["failures"]["trapped"].as_str().unwrap_or_default();
    for part in ["evil", "push", "trap"] {
        assert!(trapped.contains(part), "no {part:?} in: {trapped}");
    }
    assert!(answer["failures"]["again"].as_str().unwrap_or_default().contains("instantiate the plugin again"));

    // On the cluster's executors: every row through, a plugin instance per
    // partition; a trap on an executor fails the job with the plugin's words.
    let spark = &answer["spark"];
    assert_eq!((spark["rows"].as_u64(), spark["same"].as_bool()), (Some(100_000), Some(true)), "{spark}");
    let trap = spark["trap"].as_str().unwrap_or_else(|| panic!("a trapping plugin did not fail the job: {spark}"));
    assert!(trap.contains("PluginFailure") && trap.contains("evil") && trap.contains("push"), "{trap}");
}

/// A worker killed while a job runs plugins on it: Spark runs its tasks
/// again on the other worker, and every row comes through once.
#[test]
fn a_worker_lost_mid_job_loses_no_row() {
    use std::io::{BufRead, BufReader};

    let plugins = plugins_folder();
    let dir = temp_dir();
    let mut cluster = SparkCluster::start(&python(), 2).unwrap_or_else(|e| panic!("cannot start Spark: {e}"));
    let request = serde_json::json!({
        "scenario": "lose-a-worker",
        "master": cluster.master,
        "passthrough": plugins.path().join("passthrough.wasm"),
    });
    let request_file = dir.path().join("request.json");
    std::fs::write(&request_file, request.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let mut child = std::process::Command::new(python())
        .arg(repo_root().join("tests/python/plugins_in_python.py"))
        .arg(&request_file)
        .env("PYSPARK_PYTHON", python())
        .env("XDG_CACHE_HOME", shared_home())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python: {e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut lines = BufReader::new(child.stdout.take().unwrap_or_else(|| panic!("no stdout"))).lines();
    let mut answer = None;
    while let Some(Ok(line)) = lines.next() {
        if line == "running" {
            cluster.kill_worker(1);
        } else if line.starts_with('{') {
            answer = Some(line);
        }
    }
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    let log = log.join().unwrap_or_default();
    assert!(status.success(), "{log}");
    let answer: serde_json::Value =
        serde_json::from_str(&answer.unwrap_or_else(|| panic!("no answer: {log}"))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer["spark"], serde_json::json!({"rows": 160_000, "once": true}), "{log}");
    assert!(log.contains("lost") || log.contains("Lost"), "no worker was lost mid-job: {log}");
}

/// Copies a folder and everything in it.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.unwrap_or_else(|e| panic!("{e}"));
        let target = to.join(entry.file_name());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        }
    }
}

/// The venv's `spark-submit`, beside its Python.
fn spark_submit() -> std::path::PathBuf {
    python().with_file_name("spark-submit")
}

/// Compares two runs' Silver, quarantine, Gold and run log
/// (`tests/python/same_results.py`).
fn same_results(lake_a: &Path, db_a: &Path, lake_b: &Path, db_b: &Path) -> serde_json::Value {
    let output = std::process::Command::new(python())
        .arg(repo_root().join("tests/python/same_results.py"))
        .args([lake_a, db_a, lake_b, db_b])
        .output()
        .unwrap_or_else(|e| panic!("cannot run python: {e}"));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The same Bronze through `host run` and through `host spark-submit` on a
/// two-worker cluster, one worker killed while Silver runs: Silver row for
/// row, quarantine row for row with reasons, Gold cell for cell, the run
/// log's counts and plugins, all the same. Then a plugin that traps, loops,
/// runs out of memory or returns rows of another schema than it declares
/// on an executor: the run fails naming the plugin, the call and the cause,
/// nothing is published, the previous results stay.
#[test]
fn a_pipeline_on_spark_gives_the_hosts_results() {
    use std::io::{BufRead, BufReader};

    let mut setup = crate::gold::Setup::new("0.01");
    let host_db = setup.lake.path().join("gold.db");
    setup.run(&["--only", "bronze", "--ingest-date", "2026-11-30"], &setup.sqlite());
    let spark_dir = temp_dir();
    let spark_lake = spark_dir.path().join("lake");
    copy_tree(setup.lake.path(), &spark_lake);
    std::fs::remove_file(spark_lake.join("gold.db")).unwrap_or_else(|e| panic!("{e}"));
    setup.run(&["--from", "silver"], &setup.sqlite());

    let mut cluster = SparkCluster::start(&python(), 2).unwrap_or_else(|e| panic!("cannot start Spark: {e}"));
    let spark_db = spark_dir.path().join("gold.db");
    let spark_store = format!("sqlite:{}", spark_db.display());
    let master = cluster.master.clone();
    let spark_submit = spark_submit();
    let submit = |setup: &crate::gold::Setup, extra: &[&str]| {
        let mut args = vec!["spark-submit", "--master", master.as_str(), "--from", "silver"];
        args.extend(extra);
        let mut command = setup.command(&args, &spark_store);
        command
            .arg("--spark-submit")
            .arg(&spark_submit)
            .env("MEDALLION_LAKE", &spark_lake)
            .env("PYSPARK_PYTHON", python())
            .env("PYSPARK_DRIVER_PYTHON", python())
            // spark-submit hands the Python driver's stdout and stderr to its
            // own stdout.
            .stdout(std::process::Stdio::piped());
        command.spawn().unwrap_or_else(|e| panic!("cannot run host spark-submit: {e}"))
    };

    // A worker lost while Silver runs on the cluster: its tasks run again.
    let mut child = submit(&setup, &[]);
    let mut lines = BufReader::new(child.stdout.take().unwrap_or_else(|| panic!("no stdout"))).lines();
    let mut log = String::new();
    let mut killed = false;
    while let Some(Ok(line)) = lines.next() {
        if !killed && line.starts_with("silver table dim_customers on the cluster") {
            cluster.kill_worker(1);
            killed = true;
        }
        log.push_str(&line);
        log.push('\n');
    }
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    let tail: Vec<&str> = log.lines().filter(|l| !l.contains(" INFO ")).collect();
    let tail = tail[tail.len().saturating_sub(40)..].join("\n");
    assert!(status.success() && killed, "{status}, worker killed: {killed}\n{tail}");
    let same = same_results(setup.lake.path(), &host_db, &spark_lake, &spark_db);
    assert_eq!(same["same"], true, "{same}");
    for table in ["silver/fact_order_items", "quarantine/silver/fact_order_items/checks", "dm_customer_metrics"] {
        assert!(same["tables"][table].as_u64().is_some_and(|rows| rows > 0), "{table}: {same}");
    }
    assert!(same["run_log"].as_array().is_some_and(|tables| tables.len() == 11), "{same}");

    // The whole pipeline on the cluster into a lake on HDFS (Bronze landed
    // there by the driver from the same sources): the same Gold cell for
    // cell, the same counts per reason in the run log.
    let hdfs_lake = format!("{}/tests/spark-{}", medallion_tests::hdfs::mini_hdfs().url, std::process::id());
    let hdfs_db = spark_dir.path().join("hdfs-gold.db");
    let mut args = vec!["spark-submit", "--master", master.as_str(), "--ingest-date", "2026-11-30"];
    args.extend(["--spark-submit", spark_submit.to_str().unwrap_or_default()]);
    let output = setup
        .command(&args, &format!("sqlite:{}", hdfs_db.display()))
        .env("MEDALLION_LAKE", &hdfs_lake)
        .env("PYSPARK_PYTHON", python())
        .env("PYSPARK_DRIVER_PYTHON", python())
        .output()
        .unwrap_or_else(|e| panic!("cannot run host spark-submit: {e}"));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let same = same_results(setup.lake.path(), &host_db, Path::new("-"), &hdfs_db);
    assert_eq!(same["same"], true, "{same}");
    assert!(same["tables"]["dm_sales_daily"].as_u64().is_some_and(|rows| rows > 0), "{same}");

    // A plugin that fails on an executor: the run fails, nothing published.
    let silver_before = std::fs::read(spark_lake.join("silver/_commits/current.json")).unwrap_or_default();
    setup.edit_pipeline(
        "    dim_date:\n",
        "    evil_orders:\n      from: orders\n      clean:\n        plugin: evil\n        config: { mode: MODE }\n\n    dim_date:\n",
    );
    let edited = std::fs::read_to_string(setup.lake.path().join("edited-pipeline.yaml")).unwrap_or_default();
    let evil = setup.lake.path().join("plugins-with-evil");
    copy_tree(setup.plugins(), &evil);
    medallion_tests::copy_plugin(artifacts::EVIL, &evil.join("evil.wasm"));
    for (mode, limits, cause) in [
        ("trap", "", "trap"),
        ("loop", "plugins.limits.call_budget_ms=3000", "budget"),
        ("memory", "plugins.limits.memory_mb=64", "memory"),
        ("wrong-schema", "", "bad batch"),
    ] {
        std::fs::write(setup.lake.path().join("edited-pipeline.yaml"), edited.replace("MODE", mode))
            .unwrap_or_else(|e| panic!("{e}"));
        let plugins = format!("plugins.dir={}", evil.display());
        let mut extra = vec!["--set", plugins.as_str()];
        if !limits.is_empty() {
            extra.extend(["--set", limits]);
        }
        let child = submit(&setup, &extra);
        let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(4), "{mode}: {stdout}\n{stderr}");
        let error = stdout
            .lines()
            .find(|l| l.starts_with("error: silver"))
            .unwrap_or_else(|| panic!("{mode}: {stdout}\n{stderr}"));
        for part in ["evil", "push", cause] {
            assert!(error.to_lowercase().contains(part), "{mode}: no {part:?} in: {error}");
        }
        let silver_after = std::fs::read(spark_lake.join("silver/_commits/current.json")).unwrap_or_default();
        assert!(silver_before == silver_after, "{mode}: a failed run changed the committed Silver");
        let same = same_results(setup.lake.path(), &host_db, &spark_lake, &spark_db);
        assert_eq!(same["same"], true, "{mode}: the previous results changed: {same}");
    }
}
