//! `host gen-data` and `host ingest`.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use medallion_host::gold::RunTable;
use medallion_host::lake::{IngestError, IngestOptions, Lake, SourceSpec, ingest};
use medallion_host::sources::{OnBadRecord, sqlite_tables};

use super::{Exit, Failure};

/// Arguments of `host gen-data`.
#[derive(Debug, Args)]
pub(crate) struct GenData {
    /// Size: 1 is about the reference's (2M customers, 6M orders, ~18M items,
    /// 4M reviews, over 1 GB of CSV); 0.01 is a quick sample.
    #[arg(long, default_value_t = 0.01)]
    scale: f64,
    /// Same seed, same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Folder to write the five sources into.
    #[arg(long, default_value = "data/sources")]
    out: PathBuf,
    /// The real products catalogue to copy.
    #[arg(long, default_value = "seed/products_data.db")]
    products_db: PathBuf,
}

pub(crate) fn gen_data(args: GenData) -> Result<(), Failure> {
    if !(args.scale > 0.0 && args.scale <= 100.0) {
        return Err(Failure::config(format!("--scale {} is out of range: give a number in (0, 100]", args.scale)));
    }
    let spec = medallion_datagen::Spec { scale: args.scale, seed: args.seed, products_db: args.products_db };
    let started = Instant::now();
    let written = medallion_datagen::generate(&spec, &args.out).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => {
            Failure::config(format!("{e}\n  hint: run from the repository root, or pass --products-db"))
        }
        _ => Failure { exit: Exit::Source, message: format!("cannot write {}: {e}", args.out.display()) },
    })?;
    println!("{:<22} {:>12} {:>10}", "FILE", "ROWS", "MB");
    for (file, rows, bytes) in &written.files {
        println!("{file:<22} {rows:>12} {:>10.1}", *bytes as f64 / 1e6);
    }
    println!("generated in {:.1} s into {}", started.elapsed().as_secs_f64(), args.out.display());
    Ok(())
}

/// Arguments of `host ingest`.
#[derive(Debug, Args)]
pub(crate) struct Ingest {
    /// Folder of sources: every `*.csv` becomes a table named after the file,
    /// every table of every `*.db` / `*.sqlite` file a table of its own name.
    #[arg(long, default_value = "data/sources")]
    sources: PathBuf,
    /// The lake: a local path, file:///path or hdfs://namenode:port/path.
    #[arg(long, default_value = "data/lake")]
    lake: String,
    /// The partition to (re)write, YYYY-MM-DD; default today (UTC).
    #[arg(long)]
    ingest_date: Option<String>,
    /// What a malformed CSV record does: fail (with file:line) or quarantine.
    #[arg(long, value_enum, default_value = "fail")]
    on_bad_record: BadRecordArg,
    /// Tables landed at once.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BadRecordArg {
    Fail,
    Quarantine,
}

pub(crate) fn ingest_command(args: Ingest) -> Result<(), Failure> {
    let on_bad_record = match args.on_bad_record {
        BadRecordArg::Fail => OnBadRecord::Fail,
        BadRecordArg::Quarantine => OnBadRecord::Quarantine,
    };
    let sources = discover(&args.sources, on_bad_record)?;
    let run = RunContext::open(&args.lake)?;
    let _lock = run.lake.lock(&run.run_id).map_err(|e| Failure { exit: Exit::Store, message: e.to_string() })?;
    land_bronze(&run, &sources, args.ingest_date, args.workers).map(|_| ())
}

/// One run: its id, its start, and the lake it holds the lock of.
pub(crate) struct RunContext {
    pub(crate) lake: Lake,
    pub(crate) run_id: String,
    pub(crate) started_micros: i64,
}

impl RunContext {
    /// Opens the lake and names the run (the lock is the caller's).
    pub(crate) fn open(lake_url: &str) -> Result<Self, Failure> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
        let run_id = format!(
            "{}-{:05}",
            medallion_host::lake::rfc3339(now).replace([':', '-'], ""),
            std::process::id() % 100_000
        );
        let lake = Lake::open(lake_url).map_err(|e| Failure { exit: Exit::Store, message: e.to_string() })?;
        Ok(RunContext { lake, run_id, started_micros: now })
    }
}

/// Lands `sources` in the lake's Bronze zone (the caller holds the run lock),
/// and prints the summary. Shared by `host ingest` and `host run`.
pub(crate) fn land_bronze(
    run: &RunContext,
    sources: &[SourceSpec],
    ingest_date: Option<String>,
    workers: usize,
) -> Result<StageSummary, Failure> {
    let ingest_date = resolve_ingest_date(ingest_date, run.started_micros)?;
    let options = IngestOptions {
        ingest_date,
        run_id: run.run_id.clone(),
        ingested_at_micros: run.started_micros,
        rows_per_file: 4 << 20,
        workers,
    };
    let started = Instant::now();
    let report = ingest(&run.lake, sources, &options).map_err(|e| match e {
        IngestError::Source(e) => Failure { exit: Exit::Source, message: e.to_string() },
        IngestError::Lake(e) => Failure { exit: Exit::Store, message: e.to_string() },
        IngestError::Interrupted(e) => Failure { exit: Exit::Interrupted, message: e.to_string() },
    })?;
    let seconds = started.elapsed().as_secs_f64();
    println!("{:<20} {:>12} {:>12} {:>10}", "TABLE", "ROWS", "QUARANTINED", "MB READ");
    let mut bytes = 0;
    for t in &report.tables {
        println!("{:<20} {:>12} {:>12} {:>10.1}", t.table, t.rows, t.quarantined, t.bytes as f64 / 1e6);
        bytes += t.bytes;
    }
    println!(
        "bronze ingest_date={} run={} committed in {seconds:.1} s ({:.0} MB/s) to {}",
        options.ingest_date,
        options.run_id,
        bytes as f64 / 1e6 / seconds.max(1e-9),
        run.lake.url()
    );
    Ok(StageSummary {
        stage: "bronze",
        run_id: options.run_id,
        partition: format!("ingest_date={}", options.ingest_date),
        seconds,
        tables: serde_json::to_value(&report.tables).unwrap_or_default(),
        run_tables: report
            .tables
            .iter()
            .map(|t| RunTable { quarantined: t.quarantined, ..RunTable::new("bronze", &t.table, t.rows) })
            .collect(),
    })
}

/// What a stage did, for `--report`.
#[derive(Debug, Clone)]
pub(crate) struct StageSummary {
    pub(crate) stage: &'static str,
    pub(crate) run_id: String,
    pub(crate) partition: String,
    pub(crate) seconds: f64,
    pub(crate) tables: serde_json::Value,
    /// The same, as the run log keeps it.
    pub(crate) run_tables: Vec<RunTable>,
}

impl StageSummary {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "stage": self.stage,
            "run_id": self.run_id,
            "partition": self.partition,
            "seconds": self.seconds,
            "tables": self.tables,
        })
    }
}

/// `--ingest-date`, checked, or today (UTC).
pub(crate) fn resolve_ingest_date(given: Option<String>, now_micros: i64) -> Result<String, Failure> {
    match given {
        Some(date) if is_iso_date(&date) => Ok(date),
        Some(date) => Err(Failure::config(format!("--ingest-date `{date}` is not a date like 2026-11-24"))),
        None => Ok(medallion_host::lake::rfc3339(now_micros)[..10].to_owned()),
    }
}

fn is_iso_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// The sources in a folder, by the reference's conventions.
fn discover(dir: &Path, on_bad_record: OnBadRecord) -> Result<Vec<SourceSpec>, Failure> {
    let source_failure = |message: String| Failure { exit: Exit::Source, message };
    let entries = std::fs::read_dir(dir).map_err(|e| {
        source_failure(format!(
            "sources folder {}: {e}\n  hint: generate sample data with `host gen-data`",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    files.sort();
    let mut specs = Vec::new();
    for path in files {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        match path.extension().and_then(|e| e.to_str()) {
            Some("csv") if !stem.starts_with('.') => {
                specs.push(SourceSpec::Csv { table: stem, path, columns: None, on_bad_record });
            }
            Some("db" | "sqlite") => {
                for table in sqlite_tables(&path).map_err(|e| source_failure(e.to_string()))? {
                    specs.push(SourceSpec::Sqlite { table: table.clone(), path: path.clone(), source_table: table });
                }
            }
            _ => {}
        }
    }
    if specs.is_empty() {
        return Err(source_failure(format!("no *.csv, *.db or *.sqlite file in {}", dir.display())));
    }
    Ok(specs)
}
