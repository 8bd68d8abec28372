//! `kill -9` at random moments of `host run` (Bronze, Silver, Gold, the
//! publish): every time, the Silver and Gold published before stay readable
//! and unchanged, and the next run succeeds. On a local lake with SQLite and
//! on HDFS with PostgreSQL.
//!
//! Every run lands the same sources on the same date, so a run that got as
//! far as a commit publishes the same contents: "unchanged" is checked on
//! the contents, which must be whole and readable whatever the moment.
//! The suite kills `MEDALLION_KILLS` times per lake (3 by default;
//! bench/kill_runs.sh runs 20); `MEDALLION_KILL_SEED` replays a sequence.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use medallion_lake::{Lake, Manifest};
use medallion_store::{Columns, Values};
use medallion_tests::postgres::Postgres;
use medallion_tests::{plugins_folder, repo_root, temp_dir};

use crate::util::{arg, host, shared_home, text};

/// Where one series of runs goes.
struct Target<'a> {
    sources: &'a Path,
    plugins: &'a Path,
    lake: String,
    store: String,
}

impl Target<'_> {
    fn run(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
        command
            .args(["run", &arg(&repo_root().join("pipeline.yaml")), "--ingest-date", "2026-11-24"])
            .args(["--progress", "log"])
            .env("XDG_CACHE_HOME", shared_home())
            .env_remove("RUST_LOG")
            .env("MEDALLION_SOURCES", self.sources)
            .env("MEDALLION_LAKE", &self.lake)
            .env("MEDALLION_PLUGINS", self.plugins)
            .env("MEDALLION_GOLD", &self.store);
        command
    }

    /// Every committed Silver table's rows and quarantine, sorted.
    fn silver(&self) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
        let lake = Lake::open(&self.lake).unwrap_or_else(|e| panic!("{e}"));
        let manifest = Manifest::read(&lake, "silver", "current")
            .unwrap_or_else(|e| panic!("the Silver manifest cannot be read: {e}"))
            .unwrap_or_else(|| panic!("no Silver committed"));
        let read = |files: &[String]| {
            crate::silver::rows(
                &lake.read_parquet(files).unwrap_or_else(|e| panic!("a committed Silver file cannot be read: {e}")),
            )
        };
        manifest
            .tables
            .iter()
            .map(|(name, entry)| (name.clone(), (read(&entry.files), read(&entry.quarantine_files))))
            .collect()
    }

    /// The published run's Gold tables, every cell as text (floats to 12
    /// significant digits: sums may add in another order).
    fn gold(&self) -> Vec<Vec<String>> {
        let mut store = medallion_store::open(&self.store).unwrap_or_else(|e| panic!("{e}"));
        let names = [
            "dm_sales_daily",
            "dm_sales_by_product",
            "dm_customer_metrics",
            "dm_product_reviews_impact",
            "dm_stock_performance",
        ];
        let into = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let published =
            store.read_published(&names, into.path()).unwrap_or_else(|e| panic!("Gold cannot be read: {e}"));
        published
            .tables
            .iter()
            .map(|t| cells(t.as_ref().unwrap_or_else(|| panic!("a Gold table is missing"))))
            .collect()
    }
}

fn cells(table: &Columns) -> Vec<String> {
    let mut out = Vec::new();
    for column in &table.columns {
        let shown: Vec<String> = match &column.values {
            Values::Int(v) => v.iter().map(i64::to_string).collect(),
            Values::Double(v) => v.iter().map(|x| format!("{x:.11e}")).collect(),
            Values::Date(v) => v.iter().map(i32::to_string).collect(),
            Values::Text(v) => v.iter().map(str::to_owned).collect(),
            Values::Bool(v) => v.iter().map(|b| (*b != 0).to_string()).collect(),
        };
        for (row, value) in shown.into_iter().enumerate() {
            out.push(if column.is_valid(row) {
                format!("{}={value}", column.name)
            } else {
                format!("{}=∅", column.name)
            });
        }
    }
    out
}

/// A small deterministic generator (xorshift), seeded from the clock unless
/// `MEDALLION_KILL_SEED` is given.
struct Moments(u64);

impl Moments {
    fn new() -> Self {
        let seed = std::env::var("MEDALLION_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
        });
        eprintln!("kills: MEDALLION_KILL_SEED={seed}");
        Moments(seed)
    }

    /// A fraction in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn kills() -> usize {
    std::env::var("MEDALLION_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(3)
}

/// The stage a killed run's log had reached.
fn last_stage(log: &str) -> &'static str {
    let stages = [("gold", "gold"), ("silver", "silver"), ("bronze", "bronze")];
    let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    stages.iter().find(|(word, _)| last.contains(word)).map_or("start", |(_, stage)| stage)
}

fn kill_at_random_moments(target: &Target) {
    // The first run compiles the plugins into the cache; the second is what
    // a run takes.
    let first = target.run().output().unwrap_or_else(|e| panic!("{e}"));
    assert!(first.status.success(), "{}", text(&first).1);
    let started = Instant::now();
    let second = target.run().output().unwrap_or_else(|e| panic!("{e}"));
    assert!(second.status.success(), "{}", text(&second).1);
    let whole = started.elapsed();
    let (silver, gold) = (target.silver(), target.gold());
    assert!(gold.iter().all(|t| !t.is_empty()));
    let mut moments = Moments::new();
    let log = temp_dir();
    for round in 0..kills() {
        // Anywhere in a whole run, and a little past its usual end.
        let at = whole.mul_f64(moments.next() * 1.1);
        let log_file = log.path().join(format!("run-{round}.log"));
        let stderr = std::fs::File::create(&log_file).unwrap_or_else(|e| panic!("{e}"));
        let mut child = target.run().stdout(Stdio::null()).stderr(stderr).spawn().unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(at);
        let finished = child.try_wait().ok().flatten().is_some();
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(&log_file).unwrap_or_default();
        eprintln!(
            "kills: round {round}: killed at {:.0} ms of {:.0} ms ({}{})",
            at.as_secs_f64() * 1e3,
            whole.as_secs_f64() * 1e3,
            last_stage(&log),
            if finished { ", the run had ended" } else { "" }
        );
        assert_eq!(target.silver(), silver, "round {round}: Silver changed after a kill at {at:?}:\n{log}");
        assert_eq!(target.gold(), gold, "round {round}: Gold changed after a kill at {at:?}:\n{log}");
        let next = target.run().output().unwrap_or_else(|e| panic!("{e}"));
        assert!(next.status.success(), "round {round}: the run after the kill failed: {}", text(&next).1);
    }
    assert_eq!(target.silver(), silver);
    assert_eq!(target.gold(), gold);
}

fn sources() -> tempfile::TempDir {
    let sources = temp_dir();
    let catalogue = repo_root().join("seed/products_data.db");
    let generated = host(
        shared_home(),
        &["gen-data", "--scale", "0.002", "--out", &arg(sources.path()), "--products-db", &arg(&catalogue)],
    );
    assert!(generated.status.success(), "{}", text(&generated).1);
    sources
}

#[test]
fn kills_at_random_moments_on_a_local_lake_with_sqlite_lose_nothing() {
    let (sources, plugins, lake) = (sources(), plugins_folder(), temp_dir());
    kill_at_random_moments(&Target {
        sources: sources.path(),
        plugins: plugins.path(),
        lake: arg(lake.path()),
        store: format!("sqlite:{}", lake.path().join("gold.db").display()),
    });
}

#[test]
fn kills_at_random_moments_on_hdfs_with_postgresql_lose_nothing() {
    let (sources, plugins) = (sources(), plugins_folder());
    let server = Postgres::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
    let lake = format!("{}/tests/kills-{}", medallion_tests::hdfs::mini_hdfs().url, std::process::id());
    kill_at_random_moments(&Target {
        sources: sources.path(),
        plugins: plugins.path(),
        lake,
        store: server.url.clone(),
    });
}
