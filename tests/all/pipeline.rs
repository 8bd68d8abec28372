//! `pipeline.yaml`, `host validate` and `host run`, through the real binary.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use medallion_tests::temp_dir;

use crate::util::{arg, shared_home, text};

fn repo_pipeline() -> PathBuf {
    medallion_tests::repo_root().join("pipeline.yaml")
}

/// Runs `host` with extra environment variables.
fn host_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_host"));
    command.args(args).env("XDG_CACHE_HOME", shared_home()).env_remove("RUST_LOG");
    for name in ["MEDALLION_LAKE", "MEDALLION_SOURCES", "MEDALLION_PLUGINS", "MEDALLION_GOLD"] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap_or_else(|e| panic!("cannot run host: {e}"))
}

fn sample_sources() -> tempfile::TempDir {
    let dir = temp_dir();
    let catalogue = medallion_tests::repo_root().join("seed/products_data.db");
    let output =
        host_env(&["gen-data", "--scale", "0.001", "--out", &arg(dir.path()), "--products-db", &arg(&catalogue)], &[]);
    assert!(output.status.success(), "{}", text(&output).1);
    dir
}

fn write(dir: &Path, yaml: &str) -> PathBuf {
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, yaml).unwrap_or_else(|e| panic!("{e}"));
    file
}

fn fails_with(output: &Output, code: i32, expected: &str) {
    let (_, stderr) = text(output);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(expected), "expected {expected:?} in:\n{stderr}");
}

#[test]
fn the_repository_pipeline_runs_end_to_end_with_everything_from_the_environment() {
    let sources = sample_sources();
    let lake = temp_dir();
    let plugins = medallion_tests::plugins_folder();
    let pipeline = arg(&repo_pipeline());
    let gold = format!("sqlite:{}/gold.db", arg(lake.path()));
    let env = [
        ("MEDALLION_SOURCES", arg(sources.path())),
        ("MEDALLION_LAKE", arg(lake.path())),
        ("MEDALLION_PLUGINS", arg(plugins.path())),
        ("MEDALLION_GOLD", gold),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let validated = host_env(&["validate", &pipeline], &env);
    assert!(validated.status.success(), "{}", text(&validated).1);
    assert!(text(&validated).0.contains("is valid: 5 sources"), "{}", text(&validated).0);
    assert!(!text(&validated).1.contains("warning"), "the shipped SQL is portable: {}", text(&validated).1);

    let report = lake.path().join("report.json");
    let run = host_env(&["run", &pipeline, "--ingest-date", "2026-11-24", "--report", &arg(&report)], &env);
    assert!(run.status.success(), "{}", text(&run).1);
    let json = std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("{e}"));
    assert!(json.contains("\"status\": \"succeeded\""), "{json}");
    assert!(json.contains("\"partition\": \"ingest_date=2026-11-24\""), "{json}");
    assert!(json.contains("\"table\": \"order_items\""), "{json}");
    let stdout = text(&run).0;
    for table in ["customers", "orders", "order_items", "product_reviews", "products"] {
        assert!(stdout.lines().any(|l| l.starts_with(table)), "{table} missing in:\n{stdout}");
    }
    assert!(lake.path().join("bronze/_commits/ingest_date=2026-11-24.json").is_file());
    assert!(lake.path().join("silver/_commits/current.json").is_file());
    assert!(stdout.contains("dm_customer_metrics"), "{stdout}");
    assert!(json.contains("\"stage\": \"gold\""), "{json}");
    let runs = host_env(&["runs", &pipeline], &env);
    assert!(text(&runs).0.contains(" succeeded "), "{}", text(&runs).0);
}

#[test]
fn set_overrides_the_file_and_the_environment() {
    let sources = sample_sources();
    let lake = temp_dir();
    let dir = temp_dir();
    let file = write(
        dir.path(),
        "lake: ${LAKE:-nowhere}\nsources:\n  dir: /nonexistent\n  tables:\n    products: {sqlite: products_data.db}\n",
    );
    let output = host_env(
        &[
            "run",
            &arg(&file),
            "--set",
            &format!("sources.dir={}", arg(sources.path())),
            "--set",
            &format!("lake={}", arg(lake.path())),
        ],
        &[("LAKE", "/also/not/this")],
    );
    assert!(output.status.success(), "{}", text(&output).1);
    assert!(lake.path().join("bronze/products").is_dir());
}

#[test]
fn a_dry_run_prints_the_plan_and_writes_nothing() {
    let sources = sample_sources();
    let lake = temp_dir();
    let output = host_env(
        &[
            "run",
            &arg(&repo_pipeline()),
            "--dry-run",
            "--set",
            &format!("sources.dir={}", arg(sources.path())),
            "--set",
            &format!("lake={}/lake", arg(lake.path())),
        ],
        &[],
    );
    assert!(output.status.success(), "{}", text(&output).1);
    let plan = text(&output).0;
    assert!(plan.contains("products             <- sqlite"), "{plan}");
    assert!(plan.contains("fact_order_items     <- bronze order_items | plugin clean | key order_item_id | parents [fact_orders, dim_products]"), "{plan}");
    assert!(plan.contains("dim_date             <- sql over fact_orders"), "{plan}");
    assert!(
        plan.contains(
            "dm_stock_performance         <- sql over dim_date, dim_products, fact_order_items | plugin stock-status"
        ),
        "{plan}"
    );
    assert!(!lake.path().join("lake").exists());
}

#[test]
fn an_unknown_key_is_pointed_at_with_the_near_name() {
    let dir = temp_dir();
    let file = write(dir.path(), "lake: x\nsourcse:\n  dir: y\n");
    let output = host_env(&["validate", &arg(&file)], &[]);
    fails_with(&output, 2, &format!("{}:2:1: unknown field `sourcse`", file.display()));
    fails_with(&output, 2, "hint: did you mean `sources`?");
}

#[test]
fn a_wrong_type_is_pointed_at() {
    let dir = temp_dir();
    let file =
        write(dir.path(), "lake: x\nplugins:\n  limits:\n    memory_mb: lots\nsources:\n  dir: y\n  tables: {}\n");
    let output = host_env(&["validate", &arg(&file)], &[]);
    fails_with(
        &output,
        2,
        &format!("{}:4:16: plugins.limits.memory_mb: invalid type: string \"lots\", expected u64", file.display()),
    );
}

#[test]
fn an_unset_environment_variable_is_pointed_at_and_comments_are_ignored() {
    let dir = temp_dir();
    let file = write(dir.path(), "# ${IN_A_COMMENT} is fine\nlake: ${MEDALLION_TEST_UNSET}\n");
    let output = host_env(&["validate", &arg(&file)], &[]);
    fails_with(&output, 2, &format!("{}:2:7: environment variable `MEDALLION_TEST_UNSET` is not set", file.display()));
}

#[test]
fn a_missing_source_file_says_how_to_make_one() {
    let dir = temp_dir();
    let file = write(dir.path(), "lake: x\nsources:\n  dir: src\n  tables:\n    orders: {csv: orders.csv}\n");
    let output = host_env(&["validate", &arg(&file)], &[]);
    fails_with(&output, 2, "sources.tables.orders:");
    fails_with(&output, 2, "orders.csv does not exist\n  hint: generate sample sources with `host gen-data");
}

#[test]
fn a_source_with_both_or_neither_kind_is_refused() {
    let dir = temp_dir();
    let file = write(dir.path(), "lake: x\nsources:\n  dir: .\n  tables:\n    orders: {csv: a.csv, sqlite: b.db}\n");
    let output = host_env(&["validate", &arg(&file)], &[]);
    fails_with(&output, 2, "sources.tables.orders: give exactly one of `csv: FILE` or `sqlite: FILE`");
}

#[test]
fn a_header_that_differs_from_the_declared_columns_fails_the_run_with_exit_3() {
    let sources = sample_sources();
    let dir = temp_dir();
    let file = write(
        dir.path(),
        &format!(
            "lake: {}/lake\nsources:\n  dir: {}\n  tables:\n    orders:\n      csv: orders.csv\n      columns: [order_id, customer]\n",
            arg(dir.path()),
            arg(sources.path())
        ),
    );
    let report = dir.path().join("report.json");
    let output = host_env(&["run", &arg(&file), "--report", &arg(&report)], &[]);
    fails_with(&output, 3, "orders.csv:1: the header is [order_id, customer_id, order_date");
    let json = std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("{e}"));
    assert!(json.contains("\"status\": \"failed\"") && json.contains("\"exit_code\": 3"), "{json}");
}

#[test]
fn stages_that_do_not_exist_are_named() {
    fails_with(&host_env(&["run", &arg(&repo_pipeline()), "--only", "silverr"], &[]), 2, "unknown stage `silverr`");
}

/// The repository's pipeline with one text replaced, written to a folder,
/// with sources and plugins to check it against.
fn edited_pipeline(from: &str, to: &str) -> (tempfile::TempDir, Vec<(String, String)>) {
    let text = std::fs::read_to_string(repo_pipeline()).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains(from), "the pipeline has no {from:?}");
    let dir = temp_dir();
    write(dir.path(), &text.replacen(from, to, 1));
    let sources = sample_sources();
    let plugins = medallion_tests::plugins_folder();
    let env = vec![
        ("MEDALLION_SOURCES".to_owned(), arg(sources.path())),
        ("MEDALLION_PLUGINS".to_owned(), arg(plugins.path())),
        ("MEDALLION_LAKE".to_owned(), arg(&dir.path().join("lake"))),
        ("MEDALLION_GOLD".to_owned(), format!("sqlite:{}", arg(&dir.path().join("gold.db")))),
    ];
    std::mem::forget(sources);
    std::mem::forget(plugins);
    (dir, env)
}

fn validate_edited(from: &str, to: &str) -> Output {
    let (dir, env) = edited_pipeline(from, to);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    host_env(&["validate", &arg(&dir.path().join("pipeline.yaml"))], &env)
}

#[test]
fn the_repository_pipeline_validates_with_its_plugins_and_sql() {
    let output = validate_edited("lake:", "lake:");
    assert!(output.status.success(), "{}", text(&output).1);
    assert!(text(&output).0.contains("6 Silver tables, 5 Gold tables"), "{}", text(&output).0);
}

#[test]
fn a_misspelt_plugin_is_pointed_at_with_the_near_name() {
    fails_with(
        &validate_edited("plugin: stock-status", "plugin: stock-staus"),
        2,
        "gold.tables.dm_stock_performance.kpi.plugin: no plugin `stock-staus` in the plugins folder\n  hint: did you mean `stock-status`?",
    );
}

#[test]
fn a_pinned_version_that_is_not_there_names_the_versions_there_are() {
    fails_with(
        &validate_edited("plugin: rfm", "plugin: rfm\n        version: 9.9.9"),
        2,
        "plugin `rfm` has no version 9.9.9 in the plugins folder; it has 0.2.0",
    );
}

#[test]
fn a_plugin_without_the_ports_a_step_needs_is_refused() {
    // A cleaning step reads `out` and `rejected`; passthrough has no `rejected`.
    fails_with(
        &validate_edited("plugin: clean", "plugin: passthrough"),
        2,
        "silver.tables.dim_customers.clean.plugin: plugin `passthrough` has no output port `rejected`",
    );
}

#[test]
fn sql_naming_an_unknown_column_is_pointed_at() {
    // The first money sum is the daily sales'.
    let output = validate_edited("ROUND(total_amount * 100)", "ROUND(total_amountt * 100)");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pipeline.yaml:"), "{stderr}");
    assert!(stderr.contains("gold.tables.dm_sales_daily.sql:"), "{stderr}");
    assert!(stderr.contains("total_amountt"), "{stderr}");
}

#[test]
fn a_config_the_plugin_refuses_is_pointed_at() {
    fails_with(
        &validate_edited("config: { bins: 5 }", "config: { bins: 50 }"),
        2,
        "gold.tables.dm_customer_metrics.kpi.config: plugin `rfm` refused `create` (bad config): bins is 50; give 2 to 9",
    );
}

#[test]
fn a_split_column_that_cannot_be_split_or_is_not_read_is_pointed_at() {
    fails_with(
        &validate_edited("split_by: customer_id", "split_by: country"),
        2,
        "gold.tables.dm_customer_metrics.split_by: `country` in Silver table `dim_customers` is str; only an integer or a date column can be split into ranges",
    );
    fails_with(
        &validate_edited("split_by: customer_id", "split_by: customer"),
        2,
        "gold.tables.dm_customer_metrics.split_by: none of the Silver tables its query reads (dim_customers, fact_orders) has a column `customer`",
    );
    // Orders are summed per customer: ranges of orders would split each
    // customer's orders apart.
    fails_with(
        &validate_edited("split_by: customer_id", "split_by: order_id"),
        2,
        "gold.tables.dm_customer_metrics.split_by: the query does not group by `order_id`: run over ranges of `order_id`, rows of different ranges that belong together would be computed apart",
    );
}

#[test]
fn a_kpi_asking_for_a_column_the_sql_does_not_give_is_pointed_at() {
    // category-rank asks the host for a rank of its value_column (`needs`).
    fails_with(
        &validate_edited("value_column: total_revenue", "value_column: total_revenu"),
        2,
        "gold.tables.dm_sales_by_product.kpi.plugin: plugin `category-rank`: computed column `revenue_rank_in_category` on port `in`: its column `total_revenu` is not an input column (the input has product_id, product_name, category, brand, total_quantity_sold, total_revenue)",
    );
}

#[test]
fn a_cleaning_plugin_that_needs_its_whole_input_is_refused_in_silver() {
    let (dir, env) = edited_pipeline(
        "plugin: clean\n        config:\n          columns:",
        "plugin: evil\n        config:\n          mode: needs-rank\n          columns:",
    );
    let plugins = env.iter().find(|(k, _)| k == "MEDALLION_PLUGINS").map(|(_, v)| v.clone()).unwrap_or_default();
    medallion_tests::copy_plugin(medallion_tests::artifacts::EVIL, &Path::new(&plugins).join("evil.wasm"));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let pipeline = arg(&dir.path().join("pipeline.yaml"));
    let refused = "plugin `evil` asks for columns computed over its whole input or for an order (`needs`), which a Silver cleaning step, streaming Bronze, does not give";
    fails_with(
        &host_env(&["validate", &pipeline], &env),
        2,
        &format!("silver.tables.dim_customers.clean.plugin: {refused}"),
    );
    let run = host_env(&["run", &pipeline, "--ingest-date", "2026-11-24"], &env);
    let (_, stderr) = text(&run);
    assert!(!run.status.success() && stderr.contains(refused), "{stderr}");
}

#[test]
fn a_silver_key_that_is_not_a_column_is_pointed_at() {
    fails_with(&validate_edited("key: order_item_id", "key: order_item"), 2, "no column `order_item` after cleaning");
}

#[test]
fn ctrl_c_stops_the_run_publishes_nothing_and_frees_the_lake() {
    use std::io::{BufRead, BufReader};
    let sources = temp_dir();
    let catalogue = medallion_tests::repo_root().join("seed/products_data.db");
    let generated = host_env(
        &["gen-data", "--scale", "0.05", "--out", &arg(sources.path()), "--products-db", &arg(&catalogue)],
        &[],
    );
    assert!(generated.status.success(), "{}", text(&generated).1);
    let lake = temp_dir();
    let plugins = medallion_tests::plugins_folder();
    let gold = format!("sqlite:{}/gold.db", arg(lake.path()));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_host"));
    command
        .args(["run", &arg(&repo_pipeline()), "--ingest-date", "2026-11-24"])
        .env("XDG_CACHE_HOME", shared_home())
        .env("RUST_LOG", "info")
        .env("MEDALLION_SOURCES", sources.path())
        .env("MEDALLION_LAKE", lake.path())
        .env("MEDALLION_PLUGINS", plugins.path())
        .env("MEDALLION_GOLD", &gold)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("{e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let mut log = String::new();
    let mut sent = false;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        log.push_str(&line);
        log.push('\n');
        if !sent && line.contains("landed in bronze") {
            let pid = child.id().to_string();
            let killed = std::process::Command::new("kill").args(["-INT", &pid]).status();
            assert!(killed.is_ok_and(|s| s.success()), "kill -INT failed");
            sent = true;
        }
    }
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("interrupted (Ctrl-C): the run stopped and published nothing"), "{log}");
    assert!(!lake.path().join("_locks/run.lock").exists(), "the lock must be released");
    assert!(!lake.path().join("silver/_commits/current.json").exists(), "Silver must not be published");
    let env = [
        ("MEDALLION_SOURCES", arg(sources.path())),
        ("MEDALLION_LAKE", arg(lake.path())),
        ("MEDALLION_PLUGINS", arg(plugins.path())),
        ("MEDALLION_GOLD", gold.clone()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let runs = host_env(&["runs", &arg(&repo_pipeline()), "--json"], &env);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(runs[0]["status"], "failed", "{runs}");
    assert!(runs[0]["error"].as_str().is_some_and(|e| e.contains("interrupted")), "{runs}");

    // The next run starts at once and publishes everything.
    let again = host_env(&["run", &arg(&repo_pipeline()), "--ingest-date", "2026-11-24"], &env);
    assert!(again.status.success(), "{}", text(&again).1);
    assert!(lake.path().join("silver/_commits/current.json").is_file());
}

/// A running `host run` on a fresh lake, with its stderr read line by line.
struct Running {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
    log: String,
}

impl Running {
    fn start(env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_host"));
        command
            .args(["run", &arg(&repo_pipeline()), "--ingest-date", "2026-11-24", "--progress", "log"])
            .env("XDG_CACHE_HOME", shared_home())
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("{e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        Running { child, lines: std::io::BufReader::new(stderr).lines(), log: String::new() }
    }

    /// A run that stops at the points of `pause`.
    fn start_paused(env: &[(String, String)], pause: &medallion_tests::Pause) -> Self {
        let pause_env = pause.env();
        let env: Vec<(&str, &str)> = env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(pause_env.iter().map(|(k, v)| (*k, v.as_str())))
            .collect();
        Running::start(&env)
    }

    /// Reads the log to its end and waits for the process.
    fn finish(&mut self) -> std::process::ExitStatus {
        for line in self.lines.by_ref().map_while(Result::ok) {
            self.log.push_str(&line);
            self.log.push('\n');
        }
        self.child.wait().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Sample sources and an empty lake, as environment variables for the
/// repository's pipeline.
fn fresh_lake(scale: &str) -> (tempfile::TempDir, tempfile::TempDir, tempfile::TempDir, Vec<(String, String)>) {
    let sources = temp_dir();
    let catalogue = medallion_tests::repo_root().join("seed/products_data.db");
    let generated = host_env(
        &["gen-data", "--scale", scale, "--out", &arg(sources.path()), "--products-db", &arg(&catalogue)],
        &[],
    );
    assert!(generated.status.success(), "{}", text(&generated).1);
    let lake = temp_dir();
    let plugins = medallion_tests::plugins_folder();
    let env = vec![
        ("MEDALLION_SOURCES".to_owned(), arg(sources.path())),
        ("MEDALLION_LAKE".to_owned(), arg(lake.path())),
        ("MEDALLION_PLUGINS".to_owned(), arg(plugins.path())),
        ("MEDALLION_GOLD".to_owned(), format!("sqlite:{}/gold.db", arg(lake.path()))),
    ];
    (sources, lake, plugins, env)
}

#[test]
fn a_second_run_on_the_same_lake_is_refused_while_the_first_goes_on() {
    let (_sources, lake, _plugins, env) = fresh_lake("0.002");
    let pause = medallion_tests::Pause::at(&["after-bronze"]);
    let mut first = Running::start_paused(&env, &pause);
    pause.reached("after-bronze", Duration::from_secs(300));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let second = host_env(&["run", &arg(&repo_pipeline()), "--ingest-date", "2026-11-24"], &env);
    fails_with(&second, 5, "is in use by run");
    pause.go("after-bronze");
    let status = first.finish();
    assert!(status.success(), "the first run must finish: {}", first.log);
    assert!(lake.path().join("silver/_commits/current.json").is_file());
    assert!(!lake.path().join("_locks/run.lock").exists(), "the lock must be released");
}

#[test]
fn a_killed_run_leaves_nothing_published_and_the_next_run_goes_through() {
    let (_sources, lake, _plugins, env) = fresh_lake("0.002");
    let pause = medallion_tests::Pause::at(&["after-bronze"]);
    let mut run = Running::start_paused(&env, &pause);
    pause.reached("after-bronze", Duration::from_secs(300));
    run.child.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    let _ = run.child.wait();
    assert!(lake.path().join("_locks/run.lock").exists(), "SIGKILL leaves the lock behind");
    assert!(!lake.path().join("silver/_commits/current.json").exists(), "nothing is published");

    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let again = host_env(&["run", &arg(&repo_pipeline()), "--ingest-date", "2026-11-24"], &env);
    let (stdout, stderr) = text(&again);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("stale"), "the broken lock is reported: {stderr}");
    assert!(stdout.contains("dm_sales_daily"), "{stdout}");
    let runs = host_env(&["runs", &arg(&repo_pipeline()), "--json"], &env);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(runs[0]["status"], "succeeded", "{runs}");
    assert_eq!(runs[1]["status"], "abandoned", "the killed run is marked: {runs}");
}

#[test]
fn a_bronze_reader_that_panics_fails_the_run_and_commits_nothing() {
    let (_sources, lake, _plugins, env) = fresh_lake("0.001");
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("MEDALLION_FAULT", "bronze-reader"));
    let run = host_env(&["run", &arg(&repo_pipeline()), "--ingest-date", "2026-11-24"], &env);
    fails_with(&run, 5, "a worker thread panicked (injected panic at `bronze-reader`");
    assert!(!lake.path().join("bronze/_commits").exists(), "a truncated Bronze must not be committed");
    assert!(!lake.path().join("_locks/run.lock").exists(), "the lock must be released");
    let runs = host_env(&["runs", &arg(&repo_pipeline()), "--json"], &env);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(runs[0]["status"], "failed", "{runs}");
}

#[test]
fn a_cleanup_that_fails_after_the_commit_leaves_the_run_published_and_succeeded() {
    let (_sources, lake, _plugins, env) = fresh_lake("0.001");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run = ["run", &arg(&repo_pipeline()), "--ingest-date", "2026-11-24", "--set", "history.keep_runs=2"];
    for _ in 0..2 {
        let output = host_env(&run, &env);
        assert!(output.status.success(), "{}", text(&output).1);
    }
    // The third run's trim of the history (which would delete the first
    // run's files) fails after its commit.
    let mut faulty = env.clone();
    faulty.push(("MEDALLION_FAULT", "collect-garbage"));
    let third = host_env(&run, &faulty);
    let (_, stderr) = text(&third);
    assert!(third.status.success(), "{stderr}");
    assert!(
        stderr.contains("trimming the tables' history failed") && stderr.contains("the next commit tries again"),
        "{stderr}"
    );
    let runs = host_env(&["runs", &arg(&repo_pipeline()), "--json"], &env);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(runs[0]["status"], "succeeded", "{runs}");
    let silver = || {
        let files = files_under(&lake.path().join("silver/dim_customers"));
        files.into_iter().filter(|f| f.extension().is_some_and(|e| e == "parquet")).count()
    };
    assert_eq!(silver(), 3, "the first run's file is left behind by the failed trim");
    let mut only_silver = run.to_vec();
    only_silver.extend(["--only", "silver"]);
    let fourth = host_env(&only_silver, &env);
    assert!(fourth.status.success(), "{}", text(&fourth).1);
    assert_eq!(silver(), 2, "the next commit trims the history to two runs");
}

/// Every file under `dir`, at any depth.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in std::fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok).map(|e| e.path()) {
        if path.is_dir() { files.extend(files_under(&path)) } else { files.push(path) }
    }
    files
}

#[test]
fn an_ingest_date_that_is_not_a_real_day_is_refused() {
    for date in ["2026-13-45", "2023-02-31"] {
        let output = host_env(&["run", &arg(&repo_pipeline()), "--only", "bronze", "--ingest-date", date], &[]);
        fails_with(&output, 2, &format!("--ingest-date `{date}` is not a date"));
    }
}

/// `limits.memory`: a run whose budget is far below its data's size in
/// memory (at scale 0.3, Bronze is 933 MiB as Arrow arrays, Silver 433 MiB)
/// stays within the budget plus a fixed slack, and its run log says so. The
/// slack is what does not follow the budget: the plugins' compiled code and
/// instances and the pipeline's checks before the first stage (about
/// 120 MiB: `host validate` alone), the CSV readers, Silver's keys, the
/// allocator's arenas. The figures: `BENCHMARKS.md` (a release build peaks
/// at 394 MiB here).
#[test]
fn a_run_stays_within_a_memory_budget_far_below_its_data() {
    const BUDGET: u64 = 128 << 20;
    const SLACK: u64 = 320 << 20;
    let (sources, _lake, _plugins, env) = fresh_lake("0.3");
    // The sources as text, a lower bound of their size as Arrow columns.
    let text_bytes: u64 = std::fs::read_dir(sources.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|entry| entry.and_then(|e| e.metadata()).map_or(0, |m| m.len()))
        .sum();
    assert!(text_bytes > 2 * BUDGET, "the sources are {text_bytes} bytes: not far above the budget");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let budget = format!("limits.memory={}MiB", BUDGET >> 20);
    let run = host_env(&["run", &arg(&repo_pipeline()), "--ingest-date", "2026-11-24", "--set", &budget], &env);
    assert!(run.status.success(), "{}", text(&run).1);
    let runs = host_env(&["runs", &arg(&repo_pipeline()), "--json"], &env);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap_or_else(|e| panic!("{e}"));
    let run = &runs[0];
    assert_eq!(run["memory_budget"], BUDGET, "{run}");
    let peak = run["peak_memory"].as_u64().unwrap_or_else(|| panic!("no peak in {run}"));
    assert!(
        peak <= BUDGET + SLACK,
        "peak {} MiB past the budget of {} MiB plus {} MiB; by stage: {}",
        peak >> 20,
        BUDGET >> 20,
        SLACK >> 20,
        run["stages"]
    );
}

/// SQL that polars and Spark read differently is valid (the host runs it)
/// but warned about, at its line and column, with what to write instead.
#[test]
fn sql_the_two_engines_read_otherwise_is_pointed_at() {
    let sources = sample_sources();
    let dir = temp_dir();
    let plugins = medallion_tests::plugins_folder();
    let shipped = std::fs::read_to_string(repo_pipeline()).unwrap_or_else(|e| panic!("{e}"));
    let edited = shipped
        .replacen("CAST(SUM(cents) AS DOUBLE) * 0.01 AS total_revenue", "SUM(cents) / 100.0 AS total_revenue", 1)
        .replacen("DATE_PART('week', date_key)", "DATE_PART('isoweek', date_key)", 1);
    assert_ne!(edited, shipped);
    let file = write(dir.path(), &edited);
    let env = [
        ("MEDALLION_SOURCES", arg(sources.path())),
        ("MEDALLION_LAKE", arg(dir.path())),
        ("MEDALLION_PLUGINS", arg(plugins.path())),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = host_env(&["validate", &arg(&file)], &env);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("is valid"), "{stdout}");
    let line_of = |needle: &str| edited.lines().position(|l| l.contains(needle)).map(|i| i + 1).unwrap_or(0);
    for (path, says) in [("silver.tables.dim_date.sql", "'isoweek'"), ("gold.tables.dm_sales_daily.sql", "`100.0`")] {
        let warning = stderr
            .lines()
            .find(|l| l.starts_with("warning: ") && l.contains(path))
            .unwrap_or_else(|| panic!("no warning for {path}: {stderr}"));
        assert!(warning.contains(says) && warning.contains("Spark"), "{warning}");
        let at = warning.split(": ").nth(1).unwrap_or_default();
        let line: usize = at.split(':').nth(1).and_then(|l| l.parse().ok()).unwrap_or(0);
        let table = path.split('.').nth(2).unwrap_or_default();
        assert!(line >= line_of(&format!("    {table}:")) && line > 0, "{warning}");
    }
}
