//! Sources → Bronze on both lake backends: round trips, malformed files,
//! re-runs and killed runs. Every test runs on a local folder and on a real
//! HDFS (MiniDFSCluster).

use std::path::Path;
use std::time::Duration;

use arrow_array::{Array, RecordBatch};
use medallion_lake::sources::OnBadRecord;
use medallion_lake::{IngestOptions, Lake, Manifest, SourceSpec, ingest};
use medallion_tests::{Pause, temp_dir};

use crate::util::{arg, host, pretty, shared_home, text};

/// Each test, once per backend.
macro_rules! on_both_lakes {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(#[test] fn $name() { super::$name(&super::local_lake()); })*
        }
        mod hdfs {
            $(#[test] fn $name() { super::$name(&super::hdfs_lake(stringify!($name))); })*
        }
    };
}

on_both_lakes!(
    csv_values_round_trip_unchanged_with_quotes_newlines_and_nulls,
    sqlite_rows_round_trip_with_their_types,
    a_re_run_of_the_same_date_replaces_the_partition,
    a_failed_run_commits_nothing_and_leaves_the_previous_partition,
    bad_records_go_to_quarantine_with_their_line,
    a_killed_run_leaves_the_previous_partition_readable,
    a_run_does_not_start_while_another_holds_the_lake,
    runs_breaking_the_same_stale_lock_at_once_leave_exactly_one_holder,
    a_run_releases_only_its_own_lock,
);

/// A lake URL: a fresh local folder (kept alive for the test by leaking it).
fn local_lake() -> String {
    let dir = temp_dir();
    let url = format!("file://{}", dir.path().display());
    std::mem::forget(dir);
    url
}

fn hdfs_lake(test: &str) -> String {
    format!("{}/tests/{test}-{}", medallion_tests::hdfs::mini_hdfs().url, std::process::id())
}

fn options(run_id: &str) -> IngestOptions {
    IngestOptions {
        ingest_date: "2026-11-24".to_owned(),
        run_id: run_id.to_owned(),
        ingested_at_micros: 1_764_000_000_000_000,
        rows_per_file: 1 << 20,
        row_group_rows: 1 << 20,
        workers: 2,
        keep_runs: 7,
    }
}

fn csv_spec(table: &str, path: &Path, on_bad_record: OnBadRecord) -> SourceSpec {
    SourceSpec::Csv { table: table.to_owned(), path: path.to_owned(), columns: None, on_bad_record }
}

fn committed(lake: &Lake) -> Manifest {
    Manifest::read(lake, "bronze", "ingest_date=2026-11-24")
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("nothing committed"))
}

fn table(lake: &Lake, name: &str) -> Vec<RecordBatch> {
    let manifest = committed(lake);
    let files = &manifest.tables.get(name).unwrap_or_else(|| panic!("no table {name}")).files;
    lake.read_parquet(files).unwrap_or_else(|e| panic!("{e}"))
}

/// The batches without the lineage columns, as a table.
fn values(batches: &[RecordBatch]) -> String {
    let stripped: Vec<RecordBatch> = batches
        .iter()
        .map(|b| {
            let keep: Vec<usize> =
                (0..b.num_columns()).filter(|&i| !b.schema().field(i).name().starts_with('_')).collect();
            b.project(&keep).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    pretty(&stripped)
}

const TRICKY_CSV: &str = "review_id,review_text,rating\n\
1,\"He said \"\"great\"\", really\",5\n\
2,\"line one\nline two, with a comma\",4\n\
3,,\n\
4,plain,3\n\
5,\"ünïcødé ✓\",2\n";

fn csv_values_round_trip_unchanged_with_quotes_newlines_and_nulls(url: &str) {
    let dir = temp_dir();
    let file = dir.path().join("reviews.csv");
    std::fs::write(&file, TRICKY_CSV).unwrap_or_else(|e| panic!("{e}"));
    let lake = Lake::open(url).unwrap_or_else(|e| panic!("{e}"));
    let report = ingest(&lake, &[csv_spec("reviews", &file, OnBadRecord::Fail)], &options("run-a"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.tables[0].rows, 5);
    assert_eq!(
        values(&table(&lake, "reviews")),
        [
            "+-----------+-------------------------+--------+",
            "| review_id | review_text             | rating |",
            "+-----------+-------------------------+--------+",
            "| 1         | He said \"great\", really | 5      |",
            "| 2         | line one                | 4      |",
            "|           | line two, with a comma  |        |",
            "| 3         |                         |        |",
            "| 4         | plain                   | 3      |",
            "| 5         | ünïcødé ✓               | 2      |",
            "+-----------+-------------------------+--------+",
        ]
        .join("\n")
    );
    let batch = &table(&lake, "reviews")[0];
    assert_eq!(batch.column(2).null_count(), 1, "an empty field is null");
    let lineage: Vec<String> = batch.schema().fields().iter().skip(3).map(|f| f.name().clone()).collect();
    assert_eq!(lineage, ["_source", "_ingested_at", "_run_id"]);
}

fn sqlite_rows_round_trip_with_their_types(url: &str) {
    let lake = Lake::open(url).unwrap_or_else(|e| panic!("{e}"));
    let catalogue = medallion_tests::repo_root().join("seed/products_data.db");
    let spec =
        SourceSpec::Sqlite { table: "products".to_owned(), path: catalogue, source_table: "products".to_owned() };
    let report = ingest(&lake, &[spec], &options("run-a")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.tables[0].rows, 20_000);
    let batches = table(&lake, "products");
    let types: Vec<String> = batches[0].schema().fields().iter().take(6).map(|f| f.data_type().to_string()).collect();
    assert_eq!(types, ["Int64", "Utf8", "Utf8", "Float64", "Int64", "Utf8"]);
    let first = values(&[batches[0].slice(0, 2)]);
    assert!(first.contains("| 1          | Plan Get     | Books    | 278.27 | 533            | BrandA |"), "{first}");
    assert_eq!(sqlite_rows(&catalogue_path()), bronze_rows(&batches), "every product, value for value");
}

fn catalogue_path() -> std::path::PathBuf {
    medallion_tests::repo_root().join("seed/products_data.db")
}

/// Every row of the products table as text, read by SQLite itself.
fn sqlite_rows(db: &Path) -> Vec<Vec<String>> {
    let connection = rusqlite::Connection::open(db).unwrap_or_else(|e| panic!("{e}"));
    let mut query = connection.prepare("SELECT * FROM products").unwrap_or_else(|e| panic!("{e}"));
    let rows = query
        .query_map([], |row| {
            (0..6)
                .map(|i| {
                    Ok(match row.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => "∅".to_owned(),
                        rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                        rusqlite::types::ValueRef::Real(v) => v.to_string(),
                        rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                        rusqlite::types::ValueRef::Blob(_) => "<blob>".to_owned(),
                    })
                })
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .unwrap_or_else(|e| panic!("{e}"));
    rows.map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect()
}

/// The first six columns of Bronze rows as text, in the same forms.
fn bronze_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_schema::DataType;
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            rows.push(
                (0..6)
                    .map(|c| {
                        let column = batch.column(c);
                        if column.is_null(row) {
                            return "∅".to_owned();
                        }
                        match column.data_type() {
                            DataType::Int64 => column.as_primitive::<Int64Type>().value(row).to_string(),
                            DataType::Float64 => column.as_primitive::<Float64Type>().value(row).to_string(),
                            _ => column.as_string::<i32>().value(row).to_owned(),
                        }
                    })
                    .collect(),
            );
        }
    }
    rows
}

fn a_re_run_of_the_same_date_replaces_the_partition(url: &str) {
    let dir = temp_dir();
    let file = dir.path().join("reviews.csv");
    std::fs::write(&file, TRICKY_CSV).unwrap_or_else(|e| panic!("{e}"));
    let lake = Lake::open(url).unwrap_or_else(|e| panic!("{e}"));
    let specs = [csv_spec("reviews", &file, OnBadRecord::Fail)];
    ingest(&lake, &specs, &options("run-a")).unwrap_or_else(|e| panic!("{e}"));
    ingest(&lake, &specs, &options("run-b")).unwrap_or_else(|e| panic!("{e}"));
    let manifest = committed(&lake);
    assert_eq!(manifest.run_id, "run-b");
    let rows: usize = table(&lake, "reviews").iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 5, "the same data is not appended twice");
    // Each run a version of the Delta table; run-a's kept as history.
    let delta = medallion_lake::delta::DeltaTable::new(&lake, "bronze/reviews");
    let snapshot = delta.snapshot(None).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("no table"));
    let files = delta.files_of(&snapshot);
    assert!(!files.is_empty() && files.iter().all(|f| f.ends_with("-run-b.parquet")), "{files:?}");
    let history = delta.history().unwrap_or_else(|e| panic!("{e}"));
    let runs: Vec<(Option<&str>, u64, bool)> =
        history.iter().map(|v| (v.run_id.as_deref(), v.rows, v.readable)).collect();
    assert_eq!(runs, [(Some("run-a"), 5, true), (Some("run-b"), 5, true)]);
}

fn a_failed_run_commits_nothing_and_leaves_the_previous_partition(url: &str) {
    let dir = temp_dir();
    let good = dir.path().join("reviews.csv");
    std::fs::write(&good, TRICKY_CSV).unwrap_or_else(|e| panic!("{e}"));
    let lake = Lake::open(url).unwrap_or_else(|e| panic!("{e}"));
    ingest(&lake, &[csv_spec("reviews", &good, OnBadRecord::Fail)], &options("run-a"))
        .unwrap_or_else(|e| panic!("{e}"));

    let ragged = dir.path().join("orders.csv");
    std::fs::write(&ragged, "order_id,total_amount\n1,10\n2,20,oops\n").unwrap_or_else(|e| panic!("{e}"));
    let specs = [csv_spec("reviews", &good, OnBadRecord::Fail), csv_spec("orders", &ragged, OnBadRecord::Fail)];
    let error = ingest(&lake, &specs, &options("run-b")).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.starts_with(&format!("{}:3: the record has 3 fields, the header has 2", ragged.display())),
        "{error}"
    );
    assert_eq!(committed(&lake).run_id, "run-a");
    assert_eq!(table(&lake, "reviews").iter().map(RecordBatch::num_rows).sum::<usize>(), 5);
}

fn bad_records_go_to_quarantine_with_their_line(url: &str) {
    let dir = temp_dir();
    let file = dir.path().join("orders.csv");
    let mut bytes = b"order_id,total_amount\n1,10\n2,20,extra\n3,\"multi\nline\"\n4,".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b"\n5,50\n");
    std::fs::write(&file, bytes).unwrap_or_else(|e| panic!("{e}"));
    let lake = Lake::open(url).unwrap_or_else(|e| panic!("{e}"));
    let report = ingest(&lake, &[csv_spec("orders", &file, OnBadRecord::Quarantine)], &options("run-a"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.tables[0].rows, report.tables[0].quarantined), (3, 2));
    let manifest = committed(&lake);
    let entry = &manifest.tables["orders"];
    let quarantine = lake.read_parquet(&entry.quarantine_files).unwrap_or_else(|e| panic!("{e}"));
    let shown = pretty(&[quarantine[0].project(&[0, 1]).unwrap_or_else(|e| panic!("{e}"))]);
    assert_eq!(
        shown,
        [
            "+-------+------------+",
            "| _line | _reason    |",
            "+-------+------------+",
            "| 3     | ragged_row |",
            "| 6     | not_utf8   |",
            "+-------+------------+",
        ]
        .join("\n")
    );
    let detail = pretty(&[quarantine[0].project(&[2]).unwrap_or_else(|e| panic!("{e}"))]);
    assert!(detail.contains(":6: column 2 (`total_amount`) is not valid UTF-8"), "{detail}");
}

fn a_killed_run_leaves_the_previous_partition_readable(url: &str) {
    let sources = temp_dir();
    let generated = host(
        shared_home(),
        &["gen-data", "--scale", "0.03", "--out", &arg(sources.path()), "--products-db", &catalogue()],
    );
    assert!(generated.status.success(), "{}", text(&generated).1);
    let ingest_args = |date: &str| -> Vec<String> {
        [
            "ingest",
            "--sources",
            &arg(sources.path()),
            "--lake",
            url,
            "--ingest-date",
            date,
            "--on-bad-record",
            "quarantine",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let first = run_host(&ingest_args("2026-11-24"));
    assert!(first.status.success(), "{}", text(&first).1);
    let lake = Lake::open(url).unwrap_or_else(|e| panic!("{e}"));
    let before = committed(&lake);

    // A second run of the same date, killed once it has written every file, just before its commit.
    let pause = Pause::at(&["commit-bronze"]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
        .args(ingest_args("2026-11-24"))
        .env("XDG_CACHE_HOME", shared_home())
        .envs(pause.env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    pause.reached("commit-bronze", Duration::from_secs(300));
    let files = lake.list("bronze").unwrap_or_default();
    assert!(
        files.iter().any(|f| f.ends_with(".parquet") && !f.contains(&before.run_id)),
        "the second run has written its files: {files:?}"
    );
    let _ = child.kill();
    let _ = child.wait();

    let after = committed(&lake);
    assert_eq!(after, before, "the killed run must not have committed");
    for (name, entry) in &after.tables {
        let rows: usize =
            lake.read_parquet(&entry.files).unwrap_or_else(|e| panic!("{e}")).iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows as u64, entry.rows, "table {name} is readable and whole");
    }
    // The next run does not trip on the debris, and removes it.
    let again = run_host(&ingest_args("2026-11-24"));
    assert!(again.status.success(), "{}", text(&again).1);
    // Files of the runs the tables' history names stay (history.keep_runs);
    // the killed run's are gone.
    let mut runs = std::collections::BTreeSet::new();
    for root in medallion_lake::delta::find_tables(&lake).unwrap_or_else(|e| panic!("{e}")) {
        let history = medallion_lake::delta::DeltaTable::new(&lake, &root).history().unwrap_or_else(|e| panic!("{e}"));
        runs.extend(history.into_iter().filter_map(|v| v.run_id));
    }
    assert_eq!(runs.len(), 2, "{runs:?}");
    let files = lake.list("bronze").unwrap_or_default();
    let stale: Vec<&String> =
        files.iter().filter(|f| f.ends_with(".parquet") && !runs.iter().any(|run| f.contains(run.as_str()))).collect();
    assert!(stale.is_empty(), "debris left behind: {stale:?}");
}

fn catalogue() -> String {
    arg(&medallion_tests::repo_root().join("seed/products_data.db"))
}

fn run_host(args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    host(shared_home(), &args)
}

/// Malformed files: each error names the file, the line and (where there is
/// one) the column, and says what to do. Sources only: no lake involved.
mod malformed {
    use medallion_lake::sources::{CsvSource, OnBadRecord, Source, SourceError};
    use medallion_tests::temp_dir;

    fn first_error(bytes: &[u8], expected: Option<&[String]>) -> String {
        let dir = temp_dir();
        let file = dir.path().join("orders.csv");
        std::fs::write(&file, bytes).unwrap_or_else(|e| panic!("{e}"));
        let read = || -> Result<(), SourceError> {
            let mut source = CsvSource::open(&file, expected, OnBadRecord::Fail)?;
            while source.next_batch()?.is_some() {}
            Ok(())
        };
        let message = read().err().map(|e| e.to_string()).unwrap_or_else(|| "no error".to_owned());
        message.replace(&dir.path().display().to_string(), "DIR")
    }

    #[test]
    fn a_ragged_row_names_its_line_and_how_to_quarantine() {
        let message = first_error(b"a,b\n1,2\n\"x\ny\",2\n3\n", None);
        assert!(message.starts_with("DIR/orders.csv:5: the record has 1 fields, the header has 2"), "{message}");
        assert!(message.contains("on_bad_record: quarantine"), "{message}");
    }

    #[test]
    fn a_quote_never_closed_is_found_at_the_line_it_opens() {
        let message = first_error(b"a,b\n1,\"2\n3,4\n5,6\n", None);
        assert!(
            message.starts_with("DIR/orders.csv:2: a quoted field opened in the record starting here is never closed"),
            "{message}"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_name_line_column_and_byte() {
        let message = first_error(b"a,b\n1,2\n3,ok\xe9\n", None);
        assert!(
            message.starts_with("DIR/orders.csv:3: column 2 (`b`) is not valid UTF-8 (byte 2 of the field)"),
            "{message}"
        );
        assert!(message.contains("iconv"), "{message}");
    }

    #[test]
    fn a_wrong_header_names_both() {
        let expected = vec!["order_id".to_owned(), "total_amount".to_owned()];
        let message = first_error(b"order_id,amount\n1,2\n", Some(&expected));
        assert!(
            message
                .starts_with("DIR/orders.csv:1: the header is [order_id, amount], expected [order_id, total_amount]"),
            "{message}"
        );
    }

    #[test]
    fn a_header_with_an_empty_or_repeated_name_is_refused() {
        assert_eq!(first_error(b"a,,c\n1,2,3\n", None), "DIR/orders.csv:1: bad header: column 2 has no name");
        assert_eq!(first_error(b"a,b,a\n1,2,3\n", None), "DIR/orders.csv:1: bad header: column 3 repeats the name `a`");
    }

    #[test]
    fn an_empty_file_has_no_header() {
        assert!(first_error(b"", None).ends_with("the file is empty; a CSV source needs a header row"));
    }

    #[test]
    fn a_missing_file_is_named() {
        let message = CsvSource::open(std::path::Path::new("/nonexistent/x.csv"), None, OnBadRecord::Fail)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.starts_with("/nonexistent/x.csv: No such file"), "{message}");
    }
}

/// Generated sources: deterministic, dirty on purpose, and landed unchanged.
mod generated {
    use std::path::Path;

    use arrow_array::cast::AsArray;
    use arrow_array::{Array, RecordBatch};
    use medallion_lake::{Lake, Manifest};
    use medallion_tests::temp_dir;

    use crate::util::{arg, host, shared_home, text};

    fn generate(out: &Path, seed: &str) {
        let catalogue = medallion_tests::repo_root().join("seed/products_data.db");
        let output = host(
            shared_home(),
            &["gen-data", "--scale", "0.002", "--seed", seed, "--out", &arg(out), "--products-db", &arg(&catalogue)],
        );
        assert!(output.status.success(), "{}", text(&output).1);
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes_and_another_seed_other_bytes() {
        let (a, b, c) = (temp_dir(), temp_dir(), temp_dir());
        generate(a.path(), "7");
        generate(b.path(), "7");
        generate(c.path(), "8");
        for file in ["customers.csv", "orders.csv", "order_items.csv", "product_reviews.csv"] {
            let read = |dir: &Path| std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(read(a.path()), read(b.path()), "{file} differs for the same seed");
            assert_ne!(read(a.path()), read(c.path()), "{file} is the same for another seed");
        }
    }

    #[test]
    fn gen_data_without_the_catalogue_says_where_it_looked_and_what_to_do() {
        let out = temp_dir();
        let output =
            host(shared_home(), &["gen-data", "--out", &arg(out.path()), "--products-db", "/nonexistent/products.db"]);
        assert_eq!(output.status.code(), Some(2));
        let stderr = text(&output).1;
        assert!(stderr.starts_with("error: products catalogue /nonexistent/products.db: not found"), "{stderr}");
        assert!(stderr.contains("pass --products-db"), "{stderr}");
        assert!(!out.path().join("customers.csv").exists(), "nothing is written without a catalogue");
    }

    #[test]
    fn generated_sources_carry_every_kind_of_dirt() {
        let dir = temp_dir();
        generate(dir.path(), "42");
        let read = |file: &str| std::fs::read_to_string(dir.path().join(file)).unwrap_or_else(|e| panic!("{e}"));
        let (customers, orders, items, reviews) =
            (read("customers.csv"), read("orders.csv"), read("order_items.csv"), read("product_reviews.csv"));
        assert!(customers.lines().nth(1).is_some_and(|l| l.contains("@example.com")));
        for (what, found) in [
            ("non-numeric id", orders.contains("\nid-")),
            ("null id", orders.lines().any(|l| l.starts_with(','))),
            ("impossible date", orders.contains("2023-02-30")),
            ("malformed date", orders.contains("not a date") || orders.contains("31/12/2023")),
            ("zero amount", orders.contains(",0.00,")),
            ("negative amount", orders.contains(",-")),
            ("zero quantity", items.contains(",0,")),
            ("rating 0 or 6", reviews.lines().any(|l| l.contains(",0,") || l.contains(",6,"))),
            ("quoted review text", reviews.contains("\"\"waterproof\"\"")),
            ("review text with a newline", reviews.contains("Works fine.\nWould buy again")),
        ] {
            assert!(found, "no {what} in the generated data");
        }
        let lines: Vec<&str> = orders.lines().skip(1).collect();
        let unique: std::collections::HashSet<&&str> = lines.iter().collect();
        assert!(unique.len() < lines.len(), "no duplicate rows");
    }

    #[test]
    fn every_generated_source_lands_in_bronze_value_for_value() {
        let dir = temp_dir();
        generate(dir.path(), "42");
        let lake_dir = temp_dir();
        let output = host(
            shared_home(),
            &["ingest", "--sources", &arg(dir.path()), "--lake", &arg(lake_dir.path()), "--ingest-date", "2026-11-24"],
        );
        assert!(output.status.success(), "{}", text(&output).1);
        let lake = Lake::open(&arg(lake_dir.path())).unwrap_or_else(|e| panic!("{e}"));
        let manifest = Manifest::read(&lake, "bronze", "ingest_date=2026-11-24")
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("not committed"));
        for table in ["customers", "orders", "order_items", "product_reviews"] {
            let batches = lake.read_parquet(&manifest.tables[table].files).unwrap_or_else(|e| panic!("{e}"));
            let mut reader = csv::ReaderBuilder::new()
                .from_path(dir.path().join(format!("{table}.csv")))
                .unwrap_or_else(|e| panic!("{e}"));
            let expected: Vec<Vec<Option<String>>> = reader
                .records()
                .map(|r| {
                    r.unwrap_or_else(|e| panic!("{e}")).iter().map(|f| (!f.is_empty()).then(|| f.to_owned())).collect()
                })
                .collect();
            assert_eq!(landed(&batches, expected[0].len()), expected, "{table}");
        }
    }

    fn landed(batches: &[RecordBatch], columns: usize) -> Vec<Vec<Option<String>>> {
        let mut rows = Vec::new();
        for batch in batches {
            for row in 0..batch.num_rows() {
                rows.push(
                    (0..columns)
                        .map(|c| {
                            let column = batch.column(c).as_string::<i32>();
                            (!column.is_null(row)).then(|| column.value(row).to_owned())
                        })
                        .collect(),
                );
            }
        }
        rows
    }
}

fn a_run_does_not_start_while_another_holds_the_lake(url: &str) {
    let sources = temp_dir();
    std::fs::write(sources.path().join("reviews.csv"), TRICKY_CSV).unwrap_or_else(|e| panic!("{e}"));
    let args = ["ingest", "--sources", &arg(sources.path()), "--lake", url, "--ingest-date", "2026-11-24"];
    let lake = Lake::open(url).unwrap_or_else(|e| panic!("{e}"));
    let held = lake.lock("run-in-progress").unwrap_or_else(|e| panic!("{e}"));
    let refused = host(shared_home(), &args);
    assert_eq!(refused.status.code(), Some(5), "{}", text(&refused).1);
    assert!(text(&refused).1.contains("is in use by run run-in-progress (pid "), "{}", text(&refused).1);
    assert!(Manifest::read(&lake, "bronze", "ingest_date=2026-11-24").unwrap_or_else(|e| panic!("{e}")).is_none());
    drop(held);
    let admitted = host(shared_home(), &args);
    assert!(admitted.status.success(), "{}", text(&admitted).1);
}

/// A lock left by a run that is gone: its process no longer exists.
fn leave_a_stale_lock(url: &str, run_id: &str) {
    let holder = serde_json::json!({"run_id": run_id, "pid": u32::MAX, "host": host_name(), "since": 0});
    let lake = Lake::open(url).unwrap_or_else(|e| panic!("{e}"));
    lake.put("_locks/run.lock", holder.to_string().into_bytes()).unwrap_or_else(|e| panic!("{e}"));
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

fn runs_breaking_the_same_stale_lock_at_once_leave_exactly_one_holder(url: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const ROUNDS: usize = 50;
    const RUNS: usize = 4;
    for round in 0..ROUNDS {
        leave_a_stale_lock(url, &format!("killed-{round}"));
        let start = std::sync::Barrier::new(RUNS);
        let refused = AtomicUsize::new(0);
        let outcomes: Vec<Result<(), String>> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..RUNS)
                .map(|run| {
                    let (start, refused) = (&start, &refused);
                    scope.spawn(move || {
                        let lake = Lake::open(url).unwrap_or_else(|e| panic!("{e}"));
                        start.wait();
                        let lock = lake.lock(&format!("round-{round}-run-{run}")).map_err(|e| {
                            refused.fetch_add(1, Ordering::SeqCst);
                            e.to_string()
                        })?;
                        // Hold the lake until every other run has given up (at
                        // most 10 s: two holders would each wait for the other).
                        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                        while refused.load(Ordering::SeqCst) < RUNS - 1 && std::time::Instant::now() < deadline {
                            std::thread::sleep(std::time::Duration::from_millis(5));
                        }
                        let holder = lake.lock_holder().map_err(|e| e.to_string())?.map(|h| h.run_id);
                        assert_eq!(holder, Some(format!("round-{round}-run-{run}")), "round {round}: the lock is ours");
                        drop(lock);
                        Ok(())
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap_or_else(|_| Err("panicked".to_owned()))).collect()
        });
        let winners = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(winners, 1, "round {round}: {outcomes:?}");
        for refused in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            assert!(refused.contains("is in use by run round-"), "round {round}: {refused}");
        }
        let lake = Lake::open(url).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lake.lock_holder().unwrap_or_else(|e| panic!("{e}")), None, "round {round}: released");
        let tokens: Vec<String> =
            lake.list("_locks").unwrap_or_default().into_iter().filter(|f| f.starts_with("_locks/break-")).collect();
        assert!(tokens.is_empty(), "round {round}: break tokens left behind: {tokens:?}");
    }
}

fn a_run_releases_only_its_own_lock(url: &str) {
    let lake = Lake::open(url).unwrap_or_else(|e| panic!("{e}"));
    let mine = lake.lock("mine").unwrap_or_else(|e| panic!("{e}"));
    // Another run broke it (it took this run for dead) and holds the lake now.
    let other = serde_json::json!({"run_id": "other", "pid": std::process::id(), "host": host_name(), "since": 1});
    lake.delete("_locks/run.lock").unwrap_or_else(|e| panic!("{e}"));
    lake.put("_locks/run.lock", other.to_string().into_bytes()).unwrap_or_else(|e| panic!("{e}"));
    drop(mine);
    let holder = lake.lock_holder().unwrap_or_else(|e| panic!("{e}")).map(|h| h.run_id);
    assert_eq!(holder.as_deref(), Some("other"), "a run must not delete a lock it does not hold");
}
