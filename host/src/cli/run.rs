//! `host validate` and `host run`: the pipeline file, checked and run.

use std::path::{Path, PathBuf};

use clap::Args;
use medallion_host::lake::SourceSpec;
use medallion_host::pipeline::{ConfigError, Plan, load};

use super::{Failure, data};

/// The stages, in order. Only `bronze` exists so far.
const STAGES: [&str; 3] = ["bronze", "silver", "gold"];
const BUILT: [&str; 1] = ["bronze"];

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
    /// Run this stage only.
    #[arg(long, value_name = "STAGE")]
    only: Option<String>,
    /// The Bronze partition to (re)write, YYYY-MM-DD; default today (UTC).
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
    let base = args.file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    spec.plan(&args.file, base).map_err(config_failure)
}

fn config_failure(e: ConfigError) -> Failure {
    Failure::config(e.to_string())
}

pub(crate) fn validate(args: PipelineArgs) -> Result<(), Failure> {
    let plan = plan(&args)?;
    println!(
        "{} is valid: {} sources, lake {}, plugins {}",
        args.file.display(),
        plan.sources.len(),
        plan.lake,
        plan.plugins_dir.display()
    );
    Ok(())
}

pub(crate) fn run(args: Run) -> Result<(), Failure> {
    let stages: Vec<&str> = match args.only.as_deref() {
        None => BUILT.to_vec(),
        Some(stage) if BUILT.contains(&stage) => vec![stage],
        Some(stage) if STAGES.contains(&stage) => {
            return Err(Failure::config(format!("stage `{stage}` is not built yet; this version runs: bronze")));
        }
        Some(stage) => {
            return Err(Failure::config(format!("unknown stage `{stage}`; the stages are {}", STAGES.join(", "))));
        }
    };
    let plan = plan(&args.pipeline)?;
    if args.dry_run {
        print_plan(&plan, &stages);
        return Ok(());
    }
    let mut done = Vec::new();
    let mut outcome = Ok(());
    for stage in stages {
        if stage == "bronze" {
            match data::land_bronze(&plan.lake, &plan.sources, args.ingest_date.clone(), 2) {
                Ok(summary) => done.push(summary),
                Err(failure) => {
                    outcome = Err(failure);
                    break;
                }
            }
        }
    }
    if let Some(file) = &args.report {
        write_report(file, &plan, &done, &outcome)?;
    }
    outcome
}

fn write_report(
    file: &Path,
    plan: &Plan,
    done: &[data::StageSummary],
    outcome: &Result<(), Failure>,
) -> Result<(), Failure> {
    let (status, error, exit) = match outcome {
        Ok(()) => ("succeeded", None, 0),
        Err(failure) => ("failed", Some(failure.message.clone()), failure.exit as u8),
    };
    let report = serde_json::json!({
        "status": status,
        "exit_code": exit,
        "error": error,
        "lake": plan.lake,
        "stages": done.iter().map(data::StageSummary::to_json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    std::fs::write(file, text).map_err(|e| Failure::config(format!("cannot write the report {}: {e}", file.display())))
}

fn print_plan(plan: &Plan, stages: &[&str]) {
    println!("lake: {}", plan.lake);
    for stage in stages {
        println!("stage {stage}:");
        for source in &plan.sources {
            match source {
                SourceSpec::Csv { table, path, .. } => println!("  {table:<20} <- csv {}", path.display()),
                SourceSpec::Sqlite { table, path, source_table } => {
                    println!("  {table:<20} <- sqlite {} table {source_table}", path.display())
                }
            }
        }
    }
}
