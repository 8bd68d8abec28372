//! `host serve` and `host hash-password`.

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use medallion_api::{self as api, ServeOptions, auth::Auth};
use medallion_common::scratch::Scratch;

use super::run::{PipelineArgs, plan_without_sources};
use super::{Exit, Failure};

/// Arguments of `host serve`.
#[derive(Debug, Args)]
pub(crate) struct Serve {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Address to listen on (default: server.listen in the pipeline file).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Start without a strong JWT secret or users (a random secret, user
    /// `dev` with password `dev`): for a development machine only.
    #[arg(long)]
    insecure_dev: bool,
    /// How often to look for a newly published Gold run, seconds.
    #[arg(long, default_value_t = 5)]
    poll_seconds: u64,
    /// The longest a request may take, seconds.
    #[arg(long, default_value_t = 30)]
    request_timeout: u64,
}

pub(crate) fn serve(args: Serve) -> Result<(), Failure> {
    let plan = plan_without_sources(&args.pipeline)?;
    let auth = Auth::new(&plan.server, args.insecure_dev).map_err(Failure::config)?;
    let listen = args.listen.unwrap_or_else(|| plan.server.listen.clone());
    let listen = listen
        .parse()
        .map_err(|e| Failure::config(format!("listen address `{listen}`: {e} (write it like 127.0.0.1:8080)")))?;
    let url = plan
        .gold_store
        .clone()
        .ok_or_else(|| Failure::config("gold.store is not set: give sqlite:PATH or a postgres:// URL"))?;
    let every = Duration::from_secs(args.poll_seconds.max(1));
    // Gold's columns, mapped from files here; removed when the server stops
    // (Ctrl-C or SIGTERM), or by the next run or server if it is killed.
    let scratch = Scratch::create(&plan.spill, "serve").map_err(|e| {
        Failure::config(format!(
            "cannot create the server's scratch folder under {}: {e}; give a writable folder as `limits.spill`",
            plan.spill.display()
        ))
    })?;
    let scratch = Arc::new(scratch);
    tracing::info!("Gold's columns go to {}", scratch.path().display());
    let gold = api::snapshot::watch(&url, plan.gold.clone(), Some(plan.lake.clone()), scratch.clone(), every)
        .map_err(|e| Failure { exit: Exit::Store, message: e.to_string() })?;
    let workers = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
    let options = ServeOptions {
        listen,
        request_timeout: Duration::from_secs(args.request_timeout.max(1)),
        workers,
        expensive_at_once: plan.server.expensive_requests_at_once.unwrap_or(workers - 1).max(1),
        pipeline: api::ui::Pipeline::of(&plan),
    };
    api::serve(gold, auth, options, |address| {
        // The line scripts and tests wait for.
        println!(
            "listening on http://{address} (OData: http://{address}/odata/, docs: http://{address}/docs, pages: http://{address}/ui)"
        );
    })
    .map_err(|e| Failure { exit: Exit::Store, message: format!("cannot serve on {listen}: {e}") })?;
    // The watcher still holds the folder: removed here, as the process ends.
    std::fs::remove_dir_all(scratch.path()).ok();
    Ok(())
}

/// Arguments of `host hash-password`.
#[derive(Debug, Args)]
pub(crate) struct HashPassword {}

pub(crate) fn hash_password(_args: HashPassword) -> Result<(), Failure> {
    eprintln!("password (read from standard input, one line):");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::config(format!("cannot read the password: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.len() < 8 {
        return Err(Failure::config("the password is shorter than 8 characters"));
    }
    println!("{}", api::auth::hash_password(password).map_err(Failure::config)?);
    Ok(())
}
