//! What each subcommand does, and the plumbing they share: the tokio runtime, logging, loading
//! config and schedules, and exit codes.

mod check;
mod demo;
mod digest;
mod discover;
mod export;
mod init;
mod install;
mod once;
mod prune;
mod report;
mod status;
mod validate;

use crate::cli::{Cli, Command};
use crate::config::{self, Config, ConfigError};
use crate::fields::Problems;
use crate::schedule::{self, Schedules};
use crate::session::Session;
use crate::shutdown::{self, Shutdown};
use std::process::ExitCode;

/// Exit code for an invalid config or schedule (sysexits' EX_CONFIG), distinct so that a
/// supervisor's restart loop does not hide it.
pub const EXIT_CONFIG: u8 = 78;

/// Runs the parsed command line; the error's chain is what the user sees.
pub fn run_cli(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Run = cli.command {
        return start_daemon(cli.config.as_deref(), cli.log.as_deref());
    }
    init_tracing(cli.log.as_deref(), matches!(cli.command, Command::Sim(_)));
    let runtime = match cli.command {
        // A server under load (the benchmarks' partner) uses every core.
        Command::Sim(_) => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
        _ => measuring_runtime()?,
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Run => unreachable!("handled above"),
            Command::Once { job, backends } => {
                crate::threads::start()?;
                // A task, not the runtime's main future: a task woken by a reply runs at once,
                // where the main future waits for the runtime's next look at its sockets.
                let config = cli.config.clone();
                tokio::spawn(async move { once::run(config.as_deref(), &job, &backends).await }).await?
            }
            Command::Check { next } => check::run(cli.config.as_deref(), next),
            Command::Report { db, since, until, backends, format, no_save, include_contended } => report::run(
                cli.config.as_deref(),
                report::Args { db, since: Some(since), until, backends, format, save: !no_save, include_contended },
            ),
            Command::Init { search, force } => init::run(cli.config.as_deref(), &search, force).await,
            Command::Discover { search } => discover::run(&search).await,
            Command::Digest { db, print, html, out, send, send_queued, since, until } => {
                let action = match (print, html, out, send, send_queued) {
                    (true, ..) => digest::Action::Print,
                    (_, true, ..) => digest::Action::Html,
                    (_, _, Some(file), ..) => digest::Action::Out(file),
                    (_, _, _, true, _) => digest::Action::Send,
                    _ => digest::Action::SendQueued,
                };
                digest::run(cli.config.as_deref(), db, action, since, until).await
            }
            Command::Sim(args) => crate::sim::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Demo { db, seconds } => demo::run(&db, seconds).await,
            Command::Install { systemd, print, no_load, home, binary } => {
                install::install(cli.config.as_deref(), install::Args { systemd, print, no_load, home, binary })
            }
            Command::Uninstall { systemd, no_load, home } => install::uninstall(systemd, no_load, home.as_deref()),
            Command::Status { db, home } => status::run(cli.config.as_deref(), db, home.as_deref()),
            Command::Prune { db, raw_days } => prune::run(cli.config.as_deref(), db, raw_days),
            Command::Export { db, table, format, since, until } => {
                export::run(cli.config.as_deref(), export::Args { db, table, format, since, until })
            }
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
    if is_config_error(e) { ExitCode::from(EXIT_CONFIG) } else { ExitCode::FAILURE }
}

fn is_config_error(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ConfigError>().is_some() || e.downcast_ref::<Problems>().is_some()
}

fn init_tracing(filter: Option<&str>, daemon: bool) {
    crate::logging::init(filter, daemon, None);
}

/// `soakd run`: the config first, then logging, then the daemon. Run as an installed agent
/// (`SOAKD_AGENT` set by the plist or unit), a config error is also recorded where `soakd
/// status` finds it, since the service manager's restarts would hide it, and logs go to the
/// agent's log folder unless `[log] dir` says otherwise.
fn start_daemon(flag: Option<&std::path::Path>, log: Option<&str>) -> anyhow::Result<ExitCode> {
    let agent = std::env::var_os("SOAKD_AGENT").is_some_and(|v| !v.is_empty());
    let paths = std::env::var_os("HOME").filter(|h| !h.is_empty() && agent).map(crate::agent::Paths::new);
    let loaded = load(flag).and_then(|(config, jobs)| match validate::daemon(&config) {
        Some(problem) => Err(ConfigError::Invalid(Problems(vec![problem])).into()),
        None => Ok((config, jobs)),
    });
    let (config, jobs) = match loaded {
        Ok(l) => l,
        Err(e) => {
            if let Some(paths) = &paths
                && is_config_error(&e)
            {
                crate::agent::record_start_failure(paths, EXIT_CONFIG, &format!("{e:#}"), crate::time::now_ms());
            }
            return Err(e);
        }
    };
    if let Some(paths) = &paths {
        crate::agent::clear_start_failure(paths);
    }
    let dir = config.log.dir.clone().or_else(|| paths.as_ref().map(crate::agent::Paths::log_dir));
    let files = dir.as_deref().map(|dir| crate::logging::Files { dir, keep_days: config.log.keep_days });
    crate::logging::init(log, true, files);
    crate::threads::start()?;
    measuring_runtime()?.block_on(run_daemon(config, jobs))
}

/// The runtime soakd measures on: one thread (`threads` adds one per core for `run` and
/// `once`, each with its own workers and connections). Its work per request is waiting on
/// sockets and a little parsing; a work-stealing runtime cost wake-ups between threads (futex,
/// eventfd) on every hop of every request — twice the CPU per request and later timestamps.
/// What blocks (reports, digests, the SQLite writer, full process scans) runs on threads of its
/// own.
fn measuring_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Loads and validates the config, the schedules and the environment they would run in (the
/// same validation as `check`); every problem is reported together.
pub fn load(flag: Option<&std::path::Path>) -> anyhow::Result<(Config, Schedules)> {
    let config = config::load(flag)?;
    let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    let (schedules, mut problems) = match schedule::load_dir(&config.schedules, Some(&names)) {
        Ok(schedules) => (Some(schedules), Vec::new()),
        Err(Problems(p)) => (None, p),
    };
    problems.extend(validate::environment(&config));
    match schedules {
        Some(schedules) if problems.is_empty() => Ok((config, schedules)),
        _ => Err(Problems(problems).into()),
    }
}

/// The config for a command that needs no schedules, validated like `load`'s.
pub fn load_config(flag: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let config = config::load(flag)?;
    let problems = validate::environment(&config);
    if !problems.is_empty() {
        return Err(Problems(problems).into());
    }
    Ok(config)
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

async fn run_daemon(config: Config, schedules: Schedules) -> anyhow::Result<ExitCode> {
    tracing::info!(config = %config.path.display(), db = %config.db.display(), jobs = schedules.jobs.len(), "starting");
    let shutdown = Shutdown::new();
    stop_on_signals(&shutdown, config.shutdown_grace);
    let session = Session::open(config, shutdown)?;
    if let Some(metrics) = &session.config.metrics
        && let Err(e) = crate::metrics::start(metrics, &session.writer(), &session.config.db, &session.shutdown).await
    {
        session.shutdown.stop();
        session.close().await;
        return Err(e);
    }
    crate::daemon::run(&session, schedules, crate::measure::Trigger::Cron).await;
    let stats = session.close().await;
    tracing::info!(rows = stats.operations, transactions = stats.transactions, "stopped");
    Ok(ExitCode::SUCCESS)
}

/// The logs named: each path as given, a pattern (`logs/*.db`) as every file it matches, sorted.
pub fn expand_dbs(given: &[std::path::PathBuf]) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for path in given {
        let text = path.to_string_lossy();
        if !text.contains(['*', '?', '[']) {
            out.push(path.clone());
            continue;
        }
        let mut matched: Vec<std::path::PathBuf> = glob::glob(&text)
            .map_err(|e| anyhow::anyhow!("--db {text}: not a valid pattern ({e})"))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        if matched.is_empty() {
            anyhow::bail!("--db {text}: no file matches");
        }
        matched.sort();
        out.append(&mut matched);
    }
    out.dedup();
    Ok(out)
}
