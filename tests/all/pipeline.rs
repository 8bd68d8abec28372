//! `pipeline.yaml`, `host validate` and `host run`, through the real binary.

use std::path::{Path, PathBuf};
use std::process::Output;

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
