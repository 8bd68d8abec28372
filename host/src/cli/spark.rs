//! `host spark-submit`: the pipeline run on a Spark cluster, by the driver
//! that ships with the host (`host/python/medallion_spark.py`, built into
//! this program), through the cluster's own `spark-submit`.

use std::path::PathBuf;
use std::process::Command;

use clap::Args;

use super::run::{PipelineArgs, StageArgs};
use super::{Exit, Failure};

/// The driver, as the program carries it.
const DRIVER: &str = include_str!("../../python/medallion_spark.py");

/// Arguments of `host spark-submit`.
#[derive(Debug, Args)]
pub(crate) struct SparkSubmit {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// The cluster: spark://HOST:7077, yarn, local[N].
    #[arg(long, default_value = "local[*]")]
    master: String,
    #[command(flatten)]
    stages: StageArgs,
    /// The `spark-submit` to run (default: $SPARK_HOME/bin/spark-submit, else
    /// the one on PATH).
    #[arg(long, value_name = "PATH")]
    spark_submit: Option<PathBuf>,
    /// Write the driver to this file and stop (to submit it yourself).
    #[arg(long, value_name = "FILE")]
    write_driver: Option<PathBuf>,
    /// More arguments for spark-submit, after `--` (--conf, --executor-memory, ...).
    #[arg(last = true)]
    spark_args: Vec<String>,
}

pub(crate) fn spark_submit(args: SparkSubmit) -> Result<(), Failure> {
    if let Some(file) = &args.write_driver {
        return std::fs::write(file, DRIVER)
            .map_err(|e| Failure::config(format!("--write-driver {}: {e}", file.display())));
    }
    let pipeline = std::path::absolute(&args.pipeline.file)
        .map_err(|e| Failure::config(format!("{}: {e}", args.pipeline.file.display())))?;
    if !pipeline.is_file() {
        return Err(Failure::config(format!("no pipeline file {}", pipeline.display())));
    }
    // What the cluster's SQL engine would read otherwise, said before it runs.
    let checked = super::run::PipelineArgs::plan_of(&args.pipeline);
    if let Ok(plan) = &checked {
        for warning in super::run::portability(&pipeline, plan) {
            eprintln!("warning: {warning}");
        }
    }
    // A folder of this process's own: created here (not found), readable by
    // this user only, so no one else's file stands in for the driver.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let folder = std::env::temp_dir().join(format!("medallion-spark-{}-{nanos:09}", std::process::id()));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&folder)
            .map_err(|e| Failure::config(format!("{}: {e}", folder.display())))?;
    }
    let driver = folder.join("medallion_spark.py");
    std::fs::write(&driver, DRIVER).map_err(|e| Failure::config(format!("{}: {e}", driver.display())))?;
    let program = args.spark_submit.clone().unwrap_or_else(|| match std::env::var_os("SPARK_HOME") {
        Some(home) => PathBuf::from(home).join("bin/spark-submit"),
        None => PathBuf::from("spark-submit"),
    });
    let mut command = Command::new(&program);
    command.arg("--master").arg(&args.master).args(&args.spark_args).arg(&driver).arg(&pipeline);
    for set in args.pipeline.overrides() {
        command.arg("--set").arg(set);
    }
    if let Some(stage) = &args.stages.only {
        command.arg("--only").arg(stage);
    }
    if let Some(stage) = &args.stages.from {
        command.arg("--from").arg(stage);
    }
    if let Some(date) = &args.stages.ingest_date {
        command.arg("--ingest-date").arg(date);
    }
    // Not the arguments: a --set value may be a password.
    tracing::info!(master = %args.master, "running {}", program.display());
    let status = command.status();
    let _ = std::fs::remove_dir_all(&folder);
    let status = status.map_err(|e| {
        Failure::config(format!(
            "cannot run {}: {e}\n  hint: set SPARK_HOME, put spark-submit on PATH, or give --spark-submit",
            program.display()
        ))
    })?;
    let exit = match status.code() {
        Some(0) => return Ok(()),
        Some(2) => Exit::Config,
        Some(3) => Exit::Source,
        Some(4) => Exit::Plugin,
        Some(130) => Exit::Interrupted,
        _ => Exit::Store,
    };
    Err(Failure { exit, message: format!("the run on Spark failed ({status}): its error is above") })
}
