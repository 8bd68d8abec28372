//! `host gen-data` and `host ingest`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use medallion_engine::run::{self as engine, Run};
use medallion_lake::SourceSpec;
use medallion_lake::sources::{OnBadRecord, sqlite_tables};

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
    /// Versions of each Bronze table kept (Delta time travel); older
    /// versions' files are deleted.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(2..))]
    keep_runs: u64,
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
    let run = Run::open(&args.lake)?;
    let _lock = run.lock()?;
    let memory = medallion_pipeline::MemoryBudget::default().bytes;
    let keep_runs = args.keep_runs as usize;
    let summary = engine::land_bronze(&run, &sources, args.ingest_date.as_deref(), args.workers, memory, keep_runs)?;
    super::print::print_stage(&summary);
    Ok(())
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
