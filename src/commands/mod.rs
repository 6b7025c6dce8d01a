//! What each subcommand does, and the plumbing they share: the tokio runtime, logging, loading
//! config and schedules, and exit codes.

mod check;
mod demo;
mod discover;
mod once;
mod report;

use crate::cli::{Cli, Command};
use crate::config::{self, Config, ConfigError};
use crate::fields::Problems;
use crate::schedule::{self, Job};
use crate::session::Session;
use crate::shutdown::{self, Shutdown};
use std::process::ExitCode;

/// Exit code for an invalid config or schedule (sysexits' EX_CONFIG), distinct so that a
/// supervisor's restart loop does not hide it.
pub const EXIT_CONFIG: u8 = 78;

/// Runs the parsed command line; the error's chain is what the user sees.
pub fn run_cli(cli: Cli) -> anyhow::Result<ExitCode> {
    init_tracing(cli.log.as_deref(), matches!(cli.command, Command::Run | Command::Sim(_)));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run => run_daemon(cli.config.as_deref()).await,
            Command::Once { job, backends } => once::run(cli.config.as_deref(), &job, &backends).await,
            Command::Check { next } => check::run(cli.config.as_deref(), next),
            Command::Report { db, since, until, backends, format, no_save } => report::run(
                cli.config.as_deref(),
                report::Args { db, since: Some(since), until, backends, format, save: !no_save },
            ),
            Command::Discover { ports, host, timeout_ms } => {
                discover::run(&host, &ports, std::time::Duration::from_millis(timeout_ms)).await
            }
            Command::Sim(args) => crate::sim::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Demo { db, seconds } => demo::run(&db, seconds).await,
            // Synchronous on purpose: the worker only computes and answers its pipe.
            Command::MlxWorker { model } => mlx_worker(&model),
        }
    })
}

/// `soakd mlx-worker`: stdout is reserved for the protocol (logs go to stderr).
#[cfg(feature = "mlx")]
fn mlx_worker(model: &std::path::Path) -> anyhow::Result<ExitCode> {
    crate::mlx::worker::run(model)
}

#[cfg(not(feature = "mlx"))]
fn mlx_worker(_model: &std::path::Path) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this soakd was built without kind \"mlx\": rebuild with --features mlx")
}

/// The exit code for an error returned by `run_cli`.
pub fn exit_code(e: &anyhow::Error) -> ExitCode {
    if e.downcast_ref::<ConfigError>().is_some() || e.downcast_ref::<Problems>().is_some() {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}

fn init_tracing(filter: Option<&str>, daemon: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let default = if daemon { "warn,soakd=info" } else { "warn" };
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Loads and validates the config and the schedules; every problem is reported together.
pub fn load(flag: Option<&std::path::Path>) -> anyhow::Result<(Config, Vec<Job>)> {
    let config = config::load(flag)?;
    let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    let jobs = schedule::load_dir(&config.schedules, Some(&names))?;
    Ok((config, jobs))
}

/// Stops on SIGINT/SIGTERM: no new work, then the grace period; a second signal aborts at once.
pub fn stop_on_signals(shutdown: &Shutdown, grace: std::time::Duration) {
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        shutdown::signal().await;
        eprintln!("soakd: stopping (in-flight requests get {} s; signal again to cancel them now)", grace.as_secs());
        shutdown.stop_then_abort(grace);
        shutdown::signal().await;
        shutdown.abort();
    });
}

async fn run_daemon(flag: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let (config, jobs) = load(flag)?;
    if config.backends.is_empty() {
        let problem = crate::fields::Place::file(&config.path)
            .problem(Some("backend"), "no [[backend]] entries: add at least one server to soak");
        return Err(ConfigError::Invalid(Problems(vec![problem])).into());
    }
    tracing::info!(config = %config.path.display(), db = %config.db.display(), jobs = jobs.len(), "starting");
    let shutdown = Shutdown::new();
    stop_on_signals(&shutdown, config.shutdown_grace);
    let session = Session::open(config, shutdown)?;
    let result = crate::daemon::run(&session, jobs, "cron").await;
    let stats = session.close().await;
    tracing::info!(rows = stats.operations, transactions = stats.transactions, "stopped");
    result?;
    Ok(ExitCode::SUCCESS)
}
