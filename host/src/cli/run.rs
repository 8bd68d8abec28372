//! `host validate` and `host run`: the pipeline file, checked and run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use medallion_host::gold::{self, GoldError, GoldOptions, GoldStore, RunRecord, RunTable};
use medallion_host::lake::{Manifest, SourceSpec, rfc3339};
use medallion_host::pipeline::{ConfigError, Plan, load};
use medallion_host::plugin::{Catalog, Runtime};
use medallion_host::silver::{self, SilverError, SilverOptions, SilverReport};

use super::data::{self, RunContext, StageSummary};
use super::{Exit, Failure};

/// The stages, in order.
const STAGES: [&str; 3] = ["bronze", "silver", "gold"];
/// The stages this version runs.
const BUILT: [&str; 3] = ["bronze", "silver", "gold"];

/// Arguments shared by `validate` and `run`.
#[derive(Debug, Args)]
pub(crate) struct PipelineArgs {
    /// The pipeline file.
    #[arg(default_value = "pipeline.yaml")]
    file: PathBuf,
    /// Override a value: --set sources.dir=/data/2026-11-24 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

/// Arguments of `host run`.
#[derive(Debug, Args)]
pub(crate) struct Run {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Run this stage only (bronze, silver, gold).
    #[arg(long, value_name = "STAGE", conflicts_with = "from")]
    only: Option<String>,
    /// Start at this stage and run the ones after it (bronze, silver, gold).
    #[arg(long, value_name = "STAGE")]
    from: Option<String>,
    /// The Bronze partition to (re)write and build Silver from, YYYY-MM-DD;
    /// default today (UTC) when Bronze runs, else the latest one landed.
    #[arg(long)]
    ingest_date: Option<String>,
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
    println!(
        "{} is valid: {} sources, {} Silver tables, {} Gold tables, lake {}, Gold store {}, plugins {}",
        args.file.display(),
        plan.sources.len(),
        plan.silver.tables.len(),
        plan.gold.tables.len(),
        plan.lake,
        plan.gold_store.as_deref().map(gold::redact).unwrap_or_else(|| "none".to_owned()),
        plan.plugins_dir.display()
    );
    Ok(())
}

/// Checks the Silver and Gold steps without data (plugins exist and accept
/// their config; keys, parents, columns and SQL fit), pointing at the file.
fn check_steps(file: &Path, plan: &Plan, catalog: &mut Option<Catalog>, gold: bool) -> Result<(), Failure> {
    if plan.silver.tables.is_empty() && plan.gold.tables.is_empty() {
        return Ok(());
    }
    let catalog = load_catalog(catalog, plan)?;
    let at = |(path, message): (String, String)| {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        match medallion_host::pipeline::locate(&text, &path) {
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

fn stage_list(only: Option<&str>, from: Option<&str>) -> Result<Vec<&'static str>, Failure> {
    let check = |stage: &str| -> Result<usize, Failure> {
        match STAGES.iter().position(|s| *s == stage) {
            Some(i) if BUILT.contains(&stage) => Ok(i),
            Some(_) => Err(Failure::config(format!(
                "stage `{stage}` is not built yet; this version runs: {}",
                BUILT.join(", ")
            ))),
            None => Err(Failure::config(format!("unknown stage `{stage}`; the stages are {}", STAGES.join(", ")))),
        }
    };
    Ok(match (only, from) {
        (Some(stage), _) => vec![STAGES[check(stage)?]],
        (None, Some(stage)) => BUILT[check(stage)?..].to_vec(),
        (None, None) => BUILT.to_vec(),
    })
}

pub(crate) fn run(args: Run) -> Result<(), Failure> {
    let stages = stage_list(args.only.as_deref(), args.from.as_deref())?;
    let plan = plan(&args.pipeline)?;
    if args.dry_run {
        print_plan(&plan, &stages);
        return Ok(());
    }
    let mut done = Vec::new();
    // Check the steps before any work, so a typo fails in a second, not
    // after Bronze has been landed.
    let mut catalog = None;
    let outcome = if stages.iter().any(|s| *s != "bronze") {
        check_steps(&args.pipeline.file, &plan, &mut catalog, stages.contains(&"gold"))
    } else {
        Ok(())
    };
    let outcome = outcome.and_then(|()| run_stages(&plan, &stages, &args, &mut done, catalog));
    if let Some(file) = &args.report {
        write_report(file, &plan, &done, &outcome)?;
    }
    outcome
}

fn run_stages(
    plan: &Plan,
    stages: &[&str],
    args: &Run,
    done: &mut Vec<StageSummary>,
    mut catalog: Option<Catalog>,
) -> Result<(), Failure> {
    let run = RunContext::open(&plan.lake)?;
    let _lock = run.lake.lock(&run.run_id).map_err(|e| Failure { exit: Exit::Store, message: e.to_string() })?;
    let mut store = match &plan.gold_store {
        Some(url) => Some(gold::open(url).map_err(store_failure)?),
        None if stages.contains(&"gold") && !plan.gold.tables.is_empty() => {
            return Err(Failure::config("gold.store is not set: give sqlite:PATH or a postgres:// URL"));
        }
        None => None,
    };
    let mut record = RunRecord {
        run_id: run.run_id.clone(),
        started_at: rfc3339(run.started_micros),
        ended_at: None,
        status: "running".to_owned(),
        error: None,
        tables: Vec::new(),
    };
    if let Some(store) = store.as_mut() {
        store.begin_run(&record).map_err(store_failure)?;
    }
    let log = RunLog { store: &mut store, record: &mut record };
    let outcome = stages_in_order(&run, plan, stages, args, done, log, &mut catalog);
    if let Err(failure) = &outcome
        && let Some(store) = store.as_mut()
    {
        record.status = "failed".to_owned();
        record.error = Some(failure.message.clone());
        record.ended_at = Some(rfc3339(now_micros()));
        record.tables = done.iter().flat_map(|s| s.run_tables.clone()).collect();
        if let Err(e) = store.end_run(&record) {
            tracing::warn!("the run log could not record the failure: {e}");
        }
    }
    outcome
}

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

fn store_failure(e: gold::StoreError) -> Failure {
    Failure { exit: Exit::Store, message: e.to_string() }
}

/// The run log: where it is kept, and this run's entry.
struct RunLog<'a> {
    store: &'a mut Option<Box<dyn GoldStore>>,
    record: &'a mut RunRecord,
}

fn stages_in_order(
    run: &RunContext,
    plan: &Plan,
    stages: &[&str],
    args: &Run,
    done: &mut Vec<StageSummary>,
    log: RunLog<'_>,
    catalog: &mut Option<Catalog>,
) -> Result<(), Failure> {
    let RunLog { store, record } = log;
    let workers = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
    let mut bronze_partition = None;
    let mut published = false;
    for stage in stages {
        match *stage {
            "bronze" => {
                let summary = data::land_bronze(run, &plan.sources, args.ingest_date.clone(), workers)?;
                bronze_partition = Some(summary.partition.clone());
                done.push(summary);
            }
            "silver" if plan.silver.tables.is_empty() => {
                println!("silver: no tables in silver.tables; nothing to do");
            }
            "silver" => {
                let partition = match bronze_partition.take() {
                    Some(partition) => partition,
                    None => latest_bronze(run, args.ingest_date.as_deref())?,
                };
                let catalog = load_catalog(catalog, plan)?;
                done.push(build_silver(run, plan, catalog, partition, workers)?);
            }
            "gold" if plan.gold.tables.is_empty() => {
                println!("gold: no tables in gold.tables; nothing to do");
            }
            "gold" => {
                let Some(store) = store.as_deref_mut() else {
                    return Err(Failure::config("gold.store is not set: give sqlite:PATH or a postgres:// URL"));
                };
                let catalog = load_catalog(catalog, plan)?;
                done.push(build_gold(run, plan, catalog, store, done, record)?);
                published = true;
            }
            other => return Err(Failure::config(format!("unknown stage `{other}`"))),
        }
    }
    if !published && let Some(store) = store.as_deref_mut() {
        record.status = "succeeded".to_owned();
        record.ended_at = Some(rfc3339(now_micros()));
        record.tables = done.iter().flat_map(|s| s.run_tables.clone()).collect();
        store.end_run(record).map_err(store_failure)?;
    }
    Ok(())
}

fn load_catalog<'a>(catalog: &'a mut Option<Catalog>, plan: &Plan) -> Result<&'a Catalog, Failure> {
    if catalog.is_none() {
        let runtime = Runtime::new(Runtime::default_cache_dir())?;
        let scanned = Catalog::scan(&runtime, &plan.plugins_dir)?;
        for (path, error) in scanned.failures() {
            tracing::warn!(file = %path.display(), "plugin skipped: {error}");
        }
        *catalog = Some(scanned);
    }
    Ok(catalog.as_ref().expect("set above"))
}

fn build_gold(
    run: &RunContext,
    plan: &Plan,
    catalog: &Catalog,
    store: &mut dyn GoldStore,
    done: &[StageSummary],
    record: &mut RunRecord,
) -> Result<StageSummary, Failure> {
    let started = Instant::now();
    let workers = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
    let options = GoldOptions { workers, batch_rows: 64 * 1024, limits: plan.limits };
    let (tables, reports) = gold::compute(&run.lake, &plan.gold, &plan.silver, catalog, &options).map_err(|e| {
        let exit = match &e {
            GoldError::Config(_) => Exit::Config,
            GoldError::Plugin { .. } | GoldError::Engine { .. } => Exit::Plugin,
            GoldError::Lake(_) => Exit::Store,
            GoldError::Interrupted(_) => Exit::Interrupted,
        };
        Failure { exit, message: e.to_string() }
    })?;
    let computed = started.elapsed().as_secs_f64();
    let run_tables: Vec<RunTable> = reports
        .iter()
        .map(|t| RunTable {
            plugin: serde_json::to_value(&t.plugin).unwrap_or_default(),
            ..RunTable::new("gold", &t.table, t.rows)
        })
        .collect();
    record.status = "succeeded".to_owned();
    record.ended_at = Some(rfc3339(now_micros()));
    record.tables = done.iter().flat_map(|s| s.run_tables.clone()).chain(run_tables.iter().cloned()).collect();
    if medallion_host::cancel::requested() {
        return Err(Failure { exit: Exit::Interrupted, message: medallion_host::cancel::Interrupted.to_string() });
    }
    store.publish(&tables, record).map_err(store_failure)?;
    let seconds = started.elapsed().as_secs_f64();
    println!("{:<28} {:>12} {:>8}  PLUGIN", "TABLE", "ROWS", "SECONDS");
    for t in &reports {
        let plugin =
            t.plugin.as_ref().map(|p| format!("{} {} {}", p.name, p.version, &p.sha256[..12])).unwrap_or_default();
        println!("{:<28} {:>12} {:>8.2}  {plugin}", t.table, t.rows, t.seconds);
    }
    println!(
        "gold run={} computed in {computed:.1} s, published in {:.1} s to {}",
        run.run_id,
        seconds - computed,
        store.describe()
    );
    Ok(StageSummary {
        stage: "gold",
        run_id: run.run_id.clone(),
        partition: String::new(),
        seconds,
        tables: serde_json::to_value(&reports).unwrap_or_default(),
        run_tables,
    })
}

/// The Bronze partition of `--ingest-date`, or the latest one committed.
fn latest_bronze(run: &RunContext, ingest_date: Option<&str>) -> Result<String, Failure> {
    if let Some(date) = ingest_date {
        let date = data::resolve_ingest_date(Some(date.to_owned()), run.started_micros)?;
        return Ok(format!("ingest_date={date}"));
    }
    let partitions =
        Manifest::partitions(&run.lake, "bronze").map_err(|e| Failure { exit: Exit::Store, message: e.to_string() })?;
    partitions.last().cloned().ok_or_else(|| {
        Failure::config(format!(
            "the lake {} has no Bronze partition yet\n  hint: run the whole pipeline, or `--only bronze` first",
            run.lake.url()
        ))
    })
}

fn build_silver(
    run: &RunContext,
    plan: &Plan,
    catalog: &Catalog,
    partition: String,
    workers: usize,
) -> Result<StageSummary, Failure> {
    let started = Instant::now();
    let options = SilverOptions {
        run_id: run.run_id.clone(),
        bronze_partition: partition.clone(),
        workers,
        batch_rows: 64 * 1024,
        limits: plan.limits,
    };
    let report = silver::build(&run.lake, &plan.silver, catalog, &options).map_err(|e| {
        let exit = match &e {
            SilverError::Config(_) => Exit::Config,
            SilverError::Plugin { .. } => Exit::Plugin,
            SilverError::Lake(_) => Exit::Store,
            SilverError::Engine { .. } | SilverError::Conservation { .. } => Exit::Plugin,
            SilverError::Interrupted(_) => Exit::Interrupted,
        };
        Failure { exit, message: e.to_string() }
    })?;
    let seconds = started.elapsed().as_secs_f64();
    print_silver(&report);
    println!("silver from {partition} run={} committed in {seconds:.1} s to {}", run.run_id, run.lake.url());
    Ok(StageSummary {
        stage: "silver",
        run_id: run.run_id.clone(),
        partition: silver::PARTITION.to_owned(),
        seconds,
        tables: serde_json::to_value(&report.tables).unwrap_or_default(),
        run_tables: report
            .tables
            .iter()
            .map(|t| RunTable {
                quarantined: t.quarantined,
                reasons: serde_json::to_value(&t.reasons).unwrap_or_default(),
                plugin: serde_json::to_value(&t.plugin).unwrap_or_default(),
                ..RunTable::new("silver", &t.table, t.rows)
            })
            .collect(),
    })
}

fn print_silver(report: &SilverReport) {
    println!("{:<20} {:>12} {:>12} {:>12} {:>8}", "TABLE", "BRONZE ROWS", "ROWS", "QUARANTINED", "SECONDS");
    for t in &report.tables {
        println!("{:<20} {:>12} {:>12} {:>12} {:>8.2}", t.table, t.bronze_rows, t.rows, t.quarantined, t.seconds);
    }
    for t in report.tables.iter().filter(|t| !t.reasons.is_empty()) {
        let reasons: Vec<String> = t.reasons.iter().map(|(reason, n)| format!("{reason} {n}")).collect();
        println!("  quarantine {:<20} {}", t.table, reasons.join(", "));
    }
    for t in report.tables.iter().filter(|t| !t.nulled.is_empty()) {
        let nulled: Vec<String> = t.nulled.iter().map(|(reason, n)| format!("{reason} {n}")).collect();
        println!("  nulled     {:<20} {} (values that did not parse; kept in quarantine)", t.table, nulled.join(", "));
    }
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
        "stages": done.iter().map(StageSummary::to_json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    std::fs::write(file, text).map_err(|e| Failure::config(format!("cannot write the report {}: {e}", file.display())))
}

fn print_plan(plan: &Plan, stages: &[&str]) {
    println!("lake: {}", plan.lake);
    for stage in stages {
        println!("stage {stage}:");
        match *stage {
            "bronze" => {
                for source in &plan.sources {
                    match source {
                        SourceSpec::Csv { table, path, .. } => println!("  {table:<20} <- csv {}", path.display()),
                        SourceSpec::Sqlite { table, path, source_table } => {
                            println!("  {table:<20} <- sqlite {} table {source_table}", path.display())
                        }
                    }
                }
            }
            "silver" => {
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
            "gold" => {
                println!(
                    "  store: {}",
                    plan.gold_store.as_deref().map(gold::redact).unwrap_or_else(|| "none".to_owned())
                );
                for (name, table) in &plan.gold.tables {
                    let reads = plan.gold.reads(table, plan.silver.tables.keys());
                    let plugin = table.kpi.as_ref().map(|k| k.plugin.as_str()).unwrap_or("-");
                    println!("  {name:<28} <- sql over {} | plugin {plugin}", reads.join(", "));
                }
            }
            _ => {}
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
    let mut store = gold::open(url).map_err(store_failure)?;
    let mut runs = store.runs(args.limit).map_err(store_failure)?;
    // A run the log says is running but that does not hold the lake is gone:
    // killed, or unable to record its end (its store was unreachable).
    let holder = medallion_host::lake::Lake::open(&plan.lake).ok().and_then(|lake| lake.lock_holder().ok().flatten());
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
        if let Some(error) = run["error"].as_str() {
            println!("  error: {}", error.lines().next().unwrap_or_default());
        }
    }
    Ok(())
}

/// Arguments of `host hive-ddl`.
#[derive(Debug, Args)]
pub(crate) struct HiveDdl {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// The Hive database to create the tables in.
    #[arg(long, default_value = "silver")]
    database: String,
}

pub(crate) fn hive_ddl(args: HiveDdl) -> Result<(), Failure> {
    let plan = plan_without_sources(&args.pipeline)?;
    let lake = medallion_host::lake::Lake::open(&plan.lake)
        .map_err(|e| Failure { exit: Exit::Store, message: e.to_string() })?;
    let ddl = silver::hive_ddl(&lake, &args.database).map_err(|e| match e {
        SilverError::Lake(e) => Failure { exit: Exit::Store, message: e.to_string() },
        other => Failure::config(other.to_string()),
    })?;
    print!("{ddl}");
    Ok(())
}
