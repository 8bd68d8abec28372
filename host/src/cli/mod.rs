//! The command line: argument parsing, output, and the mapping from errors to
//! exit codes. The only place that prints.

mod data;
mod lake;
mod plugins;
mod print;
mod progress;
mod run;
mod serve;
mod spark;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use medallion_engine::run::{FailureKind, RunError};
use medallion_plugin::PluginError;
use medallion_store::StoreError;

/// medallion: a medallion pipeline (sources → Bronze → Silver → Gold) whose
/// business rules are sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "host", version, about, long_about = None)]
struct Cli {
    /// More log output (-v: debug, -vv: trace). `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Progress: bars on a terminal, log lines every few seconds otherwise.
    #[arg(long, value_enum, default_value = "auto", global = true)]
    progress: ProgressMode,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List and inspect plugins.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// Generate seed-shaped sample sources (four CSVs and the products SQLite file).
    ///
    /// Example: host gen-data --scale 0.1 --seed 42 --out data/sources
    GenData(data::GenData),
    /// Check a pipeline file: schema, environment variables, source files.
    ///
    /// Example: host validate pipeline.yaml --set sources.dir=/data/2026-11-24
    Validate(run::PipelineArgs),
    /// Run the pipeline in a pipeline file: sources → Bronze → Silver → Gold.
    ///
    /// Example: host run pipeline.yaml --ingest-date 2026-11-24
    /// Example: host run pipeline.yaml --from gold     (recompute Gold from the current Silver)
    Run(run::Run),
    /// Print table definitions of the committed Silver tables for Spark or
    /// Trino (the Delta tables), Hive (Delta's connector) or Presto and
    /// Athena (the symlink manifests); all stay correct across runs.
    ///
    /// Example: host ddl pipeline.yaml --engine spark | spark-sql --packages io.delta:delta-spark_2.12:3.3.2
    /// Example: host ddl pipeline.yaml --engine hive --database silver | beeline -u jdbc:hive2://hive:10000
    #[command(alias = "hive-ddl")]
    Ddl(lake::Ddl),
    /// The lake's Delta tables: their history, and converting a lake an
    /// older host wrote.
    ///
    /// Example: host lake history pipeline.yaml silver
    #[command(subcommand)]
    Lake(lake::LakeCommand),
    /// Run the pipeline on a Spark cluster: the same plugins, the same
    /// results, Silver and Gold's SQL computed by the cluster (needs the
    /// `medallion` Python module on the driver and the executors; see the
    /// README).
    ///
    /// Example: host spark-submit pipeline.yaml --master spark://spark-master:7077 -- --executor-memory 2g
    SparkSubmit(spark::SparkSubmit),
    /// Show the run log kept in the Gold store.
    ///
    /// Example: host runs pipeline.yaml --limit 5
    Runs(run::Runs),
    /// Serve Gold over HTTP: the reference API, OData v4 for Power BI, OpenAPI.
    ///
    /// Example: MEDALLION_JWT_SECRET=... host serve pipeline.yaml --listen 0.0.0.0:8080
    /// Example: host serve pipeline.yaml --insecure-dev     (a development machine: user dev, password dev)
    Serve(serve::Serve),
    /// Print an argon2 hash of a password read from standard input, for server.users.
    ///
    /// Example: echo 'a long passphrase' | host hash-password
    HashPassword(serve::HashPassword),
    /// Land a folder of sources in the lake's Bronze zone, for one ingest date.
    ///
    /// Example: host ingest --sources data/sources --lake data/lake --ingest-date 2026-11-24
    Ingest(data::Ingest),
}

/// How long work shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProgressMode {
    /// Bars when standard error is a terminal, else log lines.
    Auto,
    /// Log lines every few seconds, also on a terminal.
    Log,
}

/// Exit codes a scheduler can act on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Exit {
    /// Success.
    Ok = 0,
    /// Bad configuration or arguments.
    Config = 2,
    /// A source cannot be read.
    Source = 3,
    /// A plugin failed to load or faulted.
    Plugin = 4,
    /// The lake or the Gold store refused an operation.
    Store = 5,
    /// Stopped by Ctrl-C (128 + SIGINT, as shells report it).
    Interrupted = 130,
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        end_quietly_on_a_closed_pipe();
    }
    init_logging(cli.verbose, cli.progress);
    stop_on_ctrl_c(match cli.command {
        Command::Serve(_) => "stopping: finishing the requests in flight (Ctrl-C again to stop at once)",
        _ => "stopping: nothing of this run will be published (Ctrl-C again to stop at once)",
    });
    let result = match cli.command {
        Command::Plugins(command) => plugins::run(command),
        Command::GenData(args) => data::gen_data(args),
        Command::Ingest(args) => data::ingest_command(args),
        Command::Validate(args) => run::validate(args),
        Command::Run(args) => run::run(args),
        Command::SparkSubmit(args) => spark::spark_submit(args),
        Command::Runs(args) => run::runs(args),
        Command::Ddl(args) => lake::ddl(args),
        Command::Lake(command) => lake::run(command),
        Command::Serve(args) => serve::serve(args),
        Command::HashPassword(args) => serve::hash_password(args),
    };
    match result {
        Ok(()) => ExitCode::from(Exit::Ok as u8),
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.exit as u8)
        }
    }
}

/// An error on its way out: what to print and which exit code to use.
pub(crate) struct Failure {
    pub(crate) exit: Exit,
    pub(crate) message: String,
}

impl From<PluginError> for Failure {
    fn from(e: PluginError) -> Self {
        Failure { exit: Exit::Plugin, message: e.to_string() }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure { exit: Exit::Store, message: e.to_string() }
    }
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        let exit = match e.kind {
            FailureKind::Config => Exit::Config,
            FailureKind::Source => Exit::Source,
            FailureKind::Plugin => Exit::Plugin,
            FailureKind::Store => Exit::Store,
            FailureKind::Interrupted => Exit::Interrupted,
        };
        Failure { exit, message: e.message }
    }
}

impl Failure {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Failure { exit: Exit::Config, message: message.into() }
    }
}

/// The first Ctrl-C asks the run to stop at its next batch or table (it then
/// publishes nothing and releases the lake); a second one ends the process
/// at once, which publishes nothing either.
fn stop_on_ctrl_c(message: &'static str) {
    let handled = ctrlc::set_handler(move || {
        if medallion_common::cancel::requested() {
            eprintln!("\nstopped at once");
            std::process::exit(Exit::Interrupted as i32);
        }
        eprintln!("\n{message}");
        medallion_common::cancel::request();
    });
    if let Err(e) = handled {
        tracing::debug!("Ctrl-C is not handled: {e}");
    }
}

/// A command whose output is piped into a reader that stops early
/// (`host plugins inspect FILE | head`) ends quietly, as `cat` does, instead
/// of panicking on a failed write. Not for `serve`: a server must outlive a
/// client that hangs up.
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: restoring a signal's default disposition at start-up, before
    // any other thread runs; no handler is installed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_logging(verbose: u8, progress: ProgressMode) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(terminal).with_target(false);
    if progress == ProgressMode::Auto && terminal {
        let bars = progress::Bars::new();
        medallion_common::progress::install(Box::new(bars.clone()));
        logs.with_writer(bars).init();
    } else {
        logs.with_writer(std::io::stderr).init();
    }
}

/// The plugins folder: `--dir`, else `$MEDALLION_PLUGINS`, else `dist/plugins`.
pub(crate) fn plugins_dir(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os("MEDALLION_PLUGINS").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("dist/plugins"))
}
