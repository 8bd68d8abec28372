//! `host lake ...` (the lake's Delta tables: history, conversion) and
//! `host ddl` (their definitions for other engines).

use clap::{Args, Subcommand, ValueEnum};
use medallion_common::memory::size_text;
use medallion_engine::silver;
use medallion_lake::delta::{self, DeltaTable};
use medallion_lake::{Lake, Manifest};

use super::run::{PipelineArgs, plan_without_sources};
use super::{Exit, Failure};

/// `host lake ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum LakeCommand {
    /// The versions of the lake's Delta tables: when, by which run, rows,
    /// size, and whether each is still readable (history.keep_runs).
    ///
    /// Example: host lake history pipeline.yaml silver/dim_customers
    History(History),
    /// Convert a lake written by a host before Delta tables (manifests and
    /// `run=<id>` folders) to Delta tables, nothing lost. A run does it by
    /// itself when it first commits; this does it now.
    ///
    /// Example: host lake convert pipeline.yaml
    Convert(Convert),
}

/// Arguments of `host lake history`.
#[derive(Debug, Args)]
pub(crate) struct History {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// A table (`silver/dim_customers`, `dim_customers`) or a zone
    /// (`bronze`, `quarantine`); default every table.
    table: Option<String>,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `host lake convert`.
#[derive(Debug, Args)]
pub(crate) struct Convert {
    #[command(flatten)]
    pipeline: PipelineArgs,
}

/// Arguments of `host ddl`.
#[derive(Debug, Args)]
pub(crate) struct Ddl {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// The database (Spark, Hive) or schema (Trino) to create the tables in.
    #[arg(long, default_value = "silver")]
    database: String,
    /// The engine: spark (delta-spark), trino (Delta Lake connector), hive
    /// (Delta's Hive connector), presto (Presto, Athena, Trino's Hive
    /// connector: external tables over the symlink manifests).
    #[arg(long, value_enum, default_value = "spark")]
    engine: EngineArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EngineArg {
    Spark,
    Trino,
    Hive,
    Presto,
}

fn lake_failure(e: impl std::fmt::Display) -> Failure {
    Failure { exit: Exit::Store, message: e.to_string() }
}

fn open(pipeline: &PipelineArgs) -> Result<Lake, Failure> {
    let plan = plan_without_sources(pipeline)?;
    Lake::open(&plan.lake).map_err(lake_failure)
}

pub(crate) fn run(command: LakeCommand) -> Result<(), Failure> {
    match command {
        LakeCommand::History(args) => history(args),
        LakeCommand::Convert(args) => convert(args),
    }
}

fn history(args: History) -> Result<(), Failure> {
    let plan = plan_without_sources(&args.pipeline)?;
    let lake = Lake::open(&plan.lake).map_err(lake_failure)?;
    let all = delta::find_tables(&lake).map_err(lake_failure)?;
    let wanted: Vec<&String> = match &args.table {
        None => all.iter().collect(),
        Some(name) => all
            .iter()
            .filter(|root| {
                *root == name || root.starts_with(&format!("{name}/")) || root.rsplit('/').next() == Some(name.as_str())
            })
            .collect(),
    };
    if wanted.is_empty() {
        let hint = if all.is_empty() {
            "the lake has no Delta table yet: run the pipeline, or `host lake convert` a lake an older host wrote"
                .to_owned()
        } else {
            format!("its tables: {}", all.join(", "))
        };
        return Err(Failure::config(format!(
            "no table `{}` in {}\n  hint: {hint}",
            args.table.as_deref().unwrap_or(""),
            lake.url()
        )));
    }
    let (mut all_bytes, mut current_bytes) = (0u64, 0u64);
    if !args.json {
        println!(
            "{:<40} {:>7}  {:<20}  {:<24} {:>12} {:>10}  readable",
            "table", "version", "committed (UTC)", "run", "rows", "size"
        );
    }
    for root in wanted {
        let table = DeltaTable::new(&lake, root);
        let versions = table.history().map_err(lake_failure)?;
        all_bytes += lake.list(root).map_err(lake_failure)?.iter().filter_map(|f| lake.size(f).ok()).sum::<u64>();
        current_bytes += versions.last().map_or(0, |v| v.bytes);
        for version in versions {
            if args.json {
                let mut line = serde_json::to_value(&version).unwrap_or_default();
                line["table"] = serde_json::Value::String(root.clone());
                println!("{line}");
                continue;
            }
            let when = medallion_common::date::rfc3339(version.timestamp * 1000);
            println!(
                "{:<40} {:>7}  {:<20}  {:<24} {:>12} {:>10}  {}",
                root,
                version.version,
                when.get(..19).unwrap_or(&when),
                version.run_id.as_deref().unwrap_or("-"),
                version.rows,
                size_text(version.bytes),
                if version.readable { "yes" } else { "no (trimmed)" }
            );
        }
    }
    if !args.json {
        println!(
            "\nkept: the last {} versions of each table (history.keep_runs); on disk {} in all, {} of them the current versions",
            plan.keep_runs,
            size_text(all_bytes),
            size_text(current_bytes)
        );
    }
    Ok(())
}

fn convert(args: Convert) -> Result<(), Failure> {
    let plan = plan_without_sources(&args.pipeline)?;
    let lake = Lake::open(&plan.lake).map_err(lake_failure)?;
    let run = format!("convert-{}", std::process::id());
    let _lock = lake.lock(&run).map_err(lake_failure)?;
    for zone in ["bronze", "silver"] {
        let mut manifests = Manifest::zone(&lake, zone).map_err(lake_failure)?;
        let roots = Manifest::convert(&lake, zone, &mut manifests).map_err(lake_failure)?;
        let kept = Manifest::files_of_all(&manifests);
        Manifest::tidy(&lake, zone, &roots, plan.keep_runs, None, &kept).map_err(lake_failure)?;
    }
    let tables = delta::find_tables(&lake).map_err(lake_failure)?;
    println!("{}: {} Delta tables ({})", lake.url(), tables.len(), tables.join(", "));
    Ok(())
}

pub(crate) fn ddl(args: Ddl) -> Result<(), Failure> {
    if delta::check_table_name(&args.database).is_err() {
        return Err(Failure::config(format!(
            "--database `{}`: a database name is a letter, then letters, digits and `_`",
            args.database
        )));
    }
    let lake = open(&args.pipeline)?;
    let engine = match args.engine {
        EngineArg::Spark => silver::Engine::Spark,
        EngineArg::Trino => silver::Engine::Trino,
        EngineArg::Hive => silver::Engine::Hive,
        EngineArg::Presto => silver::Engine::Presto,
    };
    let ddl = silver::table_ddl(&lake, &args.database, engine).map_err(|e| match e {
        silver::SilverError::Lake(e) => lake_failure(e),
        other => Failure::config(other.to_string()),
    })?;
    print!("{ddl}");
    Ok(())
}
