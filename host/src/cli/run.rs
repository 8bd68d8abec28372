//! `host validate` and `host run`: the pipeline file, checked and run.

use std::path::{Path, PathBuf};

use clap::Args;
use medallion_engine::run::{self as engine, RunOptions, Stage, StageSummary};
use medallion_engine::{gold, silver};
use medallion_lake::SourceSpec;
use medallion_pipeline::{ConfigError, Plan, load};
use medallion_plugin::Catalog;
use medallion_store::redact;

use super::Failure;
use super::print::print_stage;

/// Arguments shared by `validate` and `run`.
#[derive(Debug, Args)]
pub(crate) struct PipelineArgs {
    /// The pipeline file.
    #[arg(default_value = "pipeline.yaml")]
    pub(crate) file: PathBuf,
    /// Override a value: --set sources.dir=/data/2026-11-24 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

impl PipelineArgs {
    /// The plan of the pipeline file, its sources not checked.
    pub(crate) fn plan_of(args: &PipelineArgs) -> Result<Plan, Failure> {
        plan_without_sources(args)
    }

    /// The `--set` overrides.
    pub(crate) fn overrides(&self) -> &[String] {
        &self.overrides
    }
}

/// Which stages a run runs, and on which Bronze partition (`host run`,
/// `host spark-submit`).
#[derive(Debug, Args)]
pub(crate) struct StageArgs {
    /// Run this stage only (bronze, silver, gold).
    #[arg(long, value_name = "STAGE", conflicts_with = "from")]
    pub(crate) only: Option<String>,
    /// Start at this stage and run the ones after it (bronze, silver, gold).
    #[arg(long, value_name = "STAGE")]
    pub(crate) from: Option<String>,
    /// The Bronze partition to (re)write and build Silver from, YYYY-MM-DD;
    /// default today (UTC) when Bronze runs, else the latest one landed.
    #[arg(long)]
    pub(crate) ingest_date: Option<String>,
}

/// Arguments of `host run`.
#[derive(Debug, Args)]
pub(crate) struct Run {
    #[command(flatten)]
    pipeline: PipelineArgs,
    #[command(flatten)]
    stages: StageArgs,
    /// Compute Gold from the Silver an earlier run committed (its id, as
    /// `host runs` and `host lake history` show it) instead of the current
    /// one: with `--only gold` or `--from gold`, while the lake keeps it
    /// (history.keep_runs).
    #[arg(long, value_name = "RUN_ID")]
    silver_run: Option<String>,
    /// Print the plan and stop.
    #[arg(long)]
    dry_run: bool,
    /// Also write the run's report as JSON to this file (written on failure
    /// too, with the error and the exit code).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

fn plan(args: &PipelineArgs) -> Result<Plan, Failure> {
    let spec = load(&args.file, &args.overrides, |name| std::env::var(name).ok()).map_err(config_failure)?;
    spec.plan(&args.file, base_dir(&args.file)).map_err(config_failure)
}

/// The plan of a command that reads no source (`serve`, `runs`, `hive-ddl`).
pub(crate) fn plan_without_sources(args: &PipelineArgs) -> Result<Plan, Failure> {
    let spec = load(&args.file, &args.overrides, |name| std::env::var(name).ok()).map_err(config_failure)?;
    spec.plan_without_sources(&args.file, base_dir(&args.file)).map_err(config_failure)
}

fn base_dir(file: &Path) -> &Path {
    file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn config_failure(e: ConfigError) -> Failure {
    Failure::config(e.to_string())
}

pub(crate) fn validate(args: PipelineArgs) -> Result<(), Failure> {
    let plan = plan(&args)?;
    let mut catalog = None;
    check_steps(&args.file, &plan, &mut catalog, true)?;
    for warning in portability(&args.file, &plan) {
        eprintln!("warning: {warning}");
    }
    println!(
        "{} is valid: {} sources, {} Silver tables, {} Gold tables, lake {}, Gold store {}, plugins {}",
        args.file.display(),
        plan.sources.len(),
        plan.silver.tables.len(),
        plan.gold.tables.len(),
        plan.lake,
        plan.gold_store.as_deref().map(redact).unwrap_or_else(|| "none".to_owned()),
        plan.plugins_dir.display()
    );
    Ok(())
}

/// What the pipeline's SQL says that the host (polars) and Spark (`host
/// spark-submit`) read differently, each at its place in the file.
pub(crate) fn portability(file: &Path, plan: &Plan) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let silver = plan.silver.tables.iter().map(|(name, t)| (format!("silver.tables.{name}.sql"), t.sql.as_deref()));
    let gold = plan.gold.tables.iter().map(|(name, t)| (format!("gold.tables.{name}.sql"), Some(t.sql.as_str())));
    let mut warnings = Vec::new();
    for (path, sql) in silver.chain(gold) {
        for found in sql.map(medallion_pipeline::dialect::portability).unwrap_or_default() {
            let at = match medallion_pipeline::locate(&text, &path) {
                Some((line, column)) => format!("{}:{line}:{column}", file.display()),
                None => file.display().to_string(),
            };
            warnings.push(format!("{at}: {path}: {found} (to run the same on Spark)"));
        }
    }
    warnings
}

/// Checks the Silver and Gold steps without data (plugins exist and accept
/// their config; keys, parents, columns and SQL fit), pointing at the file.
fn check_steps(file: &Path, plan: &Plan, catalog: &mut Option<Catalog>, gold: bool) -> Result<(), Failure> {
    if plan.silver.tables.is_empty() && plan.gold.tables.is_empty() {
        return Ok(());
    }
    let catalog = engine::load_catalog(catalog, &plan.plugins_dir)?;
    let at = |(path, message): (String, String)| {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        match medallion_pipeline::locate(&text, &path) {
            Some((line, column)) => Failure::config(format!("{}:{line}:{column}: {path}: {message}", file.display())),
            None => Failure::config(format!("{}: {path}: {message}", file.display())),
        }
    };
    let frames = silver::check(&plan.silver, catalog, plan.limits).map_err(at)?;
    if gold {
        gold::check(&plan.gold, &plan.silver, &frames, catalog, plan.limits).map_err(at)?;
    }
    Ok(())
}

pub(crate) fn run(args: Run) -> Result<(), Failure> {
    let stages = Stage::selection(args.stages.only.as_deref(), args.stages.from.as_deref())?;
    if args.silver_run.is_some() && stages != [Stage::Gold] {
        return Err(Failure::config(
            "--silver-run reads an earlier run's Silver for Gold: give it with --only gold or --from gold".to_owned(),
        ));
    }
    // Before the pipeline file is planned (which checks the sources exist).
    if let Some(date) = &args.stages.ingest_date {
        engine::check_ingest_date(date)?;
    }
    let plan = plan(&args.pipeline)?;
    if args.dry_run {
        print_plan(&plan, &stages);
        return Ok(());
    }
    // Check the steps before any work, so a typo fails in a second, not
    // after Bronze has been landed.
    let mut catalog = None;
    let outcome = if stages.iter().any(|s| *s != Stage::Bronze) {
        check_steps(&args.pipeline.file, &plan, &mut catalog, stages.contains(&Stage::Gold))
    } else {
        Ok(())
    };
    let options = RunOptions {
        stages,
        ingest_date: args.stages.ingest_date.clone(),
        workers: engine::default_workers(),
        silver_run: args.silver_run.clone(),
    };
    let mut done = Vec::new();
    let outcome = outcome.and_then(|()| {
        let mut on_stage = |summary: &StageSummary| {
            print_stage(summary);
            done.push(summary.clone());
        };
        engine::run(&plan, &options, &mut catalog, &mut on_stage).map_err(Failure::from)
    });
    if let Some(file) = &args.report {
        write_report(file, &plan, &done, &outcome)?;
    }
    outcome
}

fn write_report(file: &Path, plan: &Plan, done: &[StageSummary], outcome: &Result<(), Failure>) -> Result<(), Failure> {
    let (status, error, exit) = match outcome {
        Ok(()) => ("succeeded", None, 0),
        Err(failure) => ("failed", Some(failure.message.clone()), failure.exit as u8),
    };
    let report = serde_json::json!({
        "status": status,
        "exit_code": exit,
        "error": error,
        "lake": plan.lake,
        "stages": done
            .iter()
            .map(|s| serde_json::json!({
                "stage": s.stage.name(),
                "run_id": s.run_id,
                "partition": s.partition,
                "seconds": s.seconds,
                "tables": s.tables_json(),
            }))
            .collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    std::fs::write(file, text).map_err(|e| Failure::config(format!("cannot write the report {}: {e}", file.display())))
}

fn print_plan(plan: &Plan, stages: &[Stage]) {
    println!("lake: {}", plan.lake);
    for stage in stages {
        println!("stage {}:", stage.name());
        match stage {
            Stage::Bronze => {
                for source in &plan.sources {
                    match source {
                        SourceSpec::Csv { table, path, .. } => println!("  {table:<20} <- csv {}", path.display()),
                        SourceSpec::Sqlite { table, path, source_table } => {
                            println!("  {table:<20} <- sqlite {} table {source_table}", path.display())
                        }
                    }
                }
            }
            Stage::Silver => {
                for name in plan.silver.order().unwrap_or_default() {
                    let table = &plan.silver.tables[&name];
                    match (&table.from, &table.clean) {
                        (Some(from), Some(clean)) => {
                            let parents: Vec<&str> = table.parents.iter().map(|p| p.table.as_str()).collect();
                            println!(
                                "  {name:<20} <- bronze {from} | plugin {} | key {} | parents [{}]",
                                clean.plugin,
                                table.key.as_deref().unwrap_or("-"),
                                parents.join(", ")
                            );
                        }
                        _ => println!("  {name:<20} <- sql over {}", plan.silver.reads(&name).join(", ")),
                    }
                }
            }
            Stage::Gold => {
                println!("  store: {}", plan.gold_store.as_deref().map(redact).unwrap_or_else(|| "none".to_owned()));
                for (name, table) in &plan.gold.tables {
                    let reads = plan.gold.reads(table, plan.silver.tables.keys());
                    let plugin = table.kpi.as_ref().map(|k| k.plugin.as_str()).unwrap_or("-");
                    println!("  {name:<28} <- sql over {} | plugin {plugin}", reads.join(", "));
                }
            }
        }
    }
}

/// Arguments of `host runs`.
#[derive(Debug, Args)]
pub(crate) struct Runs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// How many runs, newest first.
    #[arg(long, default_value_t = 10)]
    limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn runs(args: Runs) -> Result<(), Failure> {
    let plan = plan_without_sources(&args.pipeline)?;
    let url =
        plan.gold_store.as_deref().ok_or_else(|| Failure::config("gold.store is not set: the run log lives there"))?;
    let mut store = medallion_store::open(url)?;
    let mut runs = store.runs(args.limit)?;
    // A run the log says is running but that does not hold the lake is gone:
    // killed, or unable to record its end (its store was unreachable).
    let holder = medallion_lake::Lake::open(&plan.lake).ok().and_then(|lake| lake.lock_holder().ok().flatten());
    for run in runs.iter_mut().filter(|r| r["status"] == "running") {
        if holder.as_ref().is_none_or(|h| run["run_id"] != h.run_id.as_str()) {
            run["status"] = "failed".into();
            run["error"] =
                "the run ended without recording its end: it was killed, or its Gold store was unreachable".into();
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs).unwrap_or_default());
        return Ok(());
    }
    println!("{:<26} {:<10} {:<21} {:<21} {:>7}", "RUN", "STATUS", "STARTED", "ENDED", "TABLES");
    for run in &runs {
        let text = |key: &str| run[key].as_str().unwrap_or("-").to_owned();
        let tables = run["tables"].as_array().map_or(0, Vec::len);
        println!(
            "{:<26} {:<10} {:<21} {:<21} {:>7}",
            text("run_id"),
            text("status"),
            text("started_at"),
            text("ended_at"),
            tables
        );
        if let Some(line) = memory_line(run) {
            println!("  {line}");
        }
        if let Some(error) = run["error"].as_str() {
            println!("  error: {}", error.lines().next().unwrap_or_default());
        }
    }
    Ok(())
}

/// What a run's log says of its memory: its peak, its budget and its
/// scratch folder; `None` for a run from before they were kept.
fn memory_line(run: &serde_json::Value) -> Option<String> {
    use medallion_common::memory::size_text;
    let budget = run["memory_budget"].as_u64()?;
    let peak = run["peak_memory"]
        .as_u64()
        .map_or_else(|| "peak not recorded".to_owned(), |p| format!("peak {}", size_text(p)));
    let spill = run["spill"].as_str().unwrap_or("-");
    Some(format!("memory: {peak} of a {} budget; scratch folder {spill}", size_text(budget)))
}
