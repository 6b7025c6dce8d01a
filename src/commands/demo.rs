//! `soakd demo`: the whole flow with no LLM server installed. Two `soakd sim` processes mirror
//! the seed report — "lmstudio-sim", fast but crashing under rapid requests (LM Studio's crash
//! body, then "Model is unloaded"), dying outright at its 25th request and coming back; and
//! "mlx-direct-sim", slower and steady — are soaked through the real daemon (scheduler, runner,
//! sampler, store) on a compressed schedule, then compared.

use super::stop_on_signals;
use crate::config::{BackendConfig, BackendKind, Config, ProcessSelector, SamplerConfig};
use crate::schedule;
use crate::session::Session;
use crate::shutdown::Shutdown;
use crate::store;
use crate::time::now_ms;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

/// The demo's schedule: the seed report's questions, every few seconds instead of every hour.
/// The simulated servers share no GPU, so the jobs overlap (`exclusive = false`) to show a
/// minute of both backends; a real schedule leaves `exclusive` at its default.
const JOBS: &str = r#"
[[job]]
name = "probe"
cron = "*/5 * * * * *"
order = "parallel"
exclusive = false
requests = 1
max_tokens = 16
prompts = "probe"

[[job]]
name = "rapid-burst"
cron = "0,20,40 * * * * *"
order = "parallel"
exclusive = false
requests = 8
delay_ms = 0
max_tokens = 16
prompts = "security"

[[job]]
name = "spaced-burst"
cron = "10,30,50 * * * * *"
order = "parallel"
exclusive = false
requests = 4
delay_ms = 1000
max_tokens = 16
prompts = "security"

[[job]]
name = "security-blocking"
cron = "5,35 * * * * *"
order = "parallel"
exclusive = false
requests = 2
stream = false
max_tokens = 24
prompts = "security"
"#;

struct SimSpec {
    name: &'static str,
    args: &'static [&'static str],
}

const SIMS: [SimSpec; 2] = [
    SimSpec {
        name: "lmstudio-sim",
        args: &[
            "--ttft-ms",
            "220",
            "--tokens-per-s",
            "45",
            "--jitter",
            "0.3",
            "--crash-style",
            "lmstudio",
            "--exit-on-rapid-ms",
            "250",
            "--rapid-crash-probability",
            "0.8",
            "--unloaded-requests",
            "1",
            "--grow-per-request-kb",
            "256",
            "--seed",
            "1",
        ],
    },
    SimSpec {
        name: "mlx-direct-sim",
        args: &["--ttft-ms", "450", "--tokens-per-s", "14", "--jitter", "0.15", "--seed", "2"],
    },
];

/// The fast sim also dies at its 25th request of each life, like an engine that aborts; the demo
/// brings it back a second later, and the sampler records the restart.
const DIES_AT_REQUEST: &str = "25";

pub async fn run(db: &Path, seconds: u64) -> anyhow::Result<ExitCode> {
    let db = std::path::absolute(db).with_context(|| format!("cannot resolve {}", db.display()))?;
    let shutdown = Shutdown::new();
    stop_on_signals(&shutdown, Duration::from_secs(2));

    let mut backends = Vec::new();
    let mut supervisors = Vec::new();
    for (i, sim) in SIMS.iter().enumerate() {
        let port = free_port()?;
        let mut args: Vec<String> = sim.args.iter().map(|s| s.to_string()).collect();
        args.extend(["--model".into(), sim.name.into()]);
        if i == 0 {
            args.extend(["--abort-after".into(), DIES_AT_REQUEST.into()]);
        }
        supervisors.push(tokio::spawn(supervise(port, args, shutdown.clone())));
        wait_ready(port).await.with_context(|| format!("the simulated backend {} did not start", sim.name))?;
        backends.push(BackendConfig {
            name: sim.name.to_string(),
            kind: BackendKind::OpenAi,
            log: None,
            python: None,
            url: format!("http://127.0.0.1:{port}").parse().expect("a valid URL"),
            model: None,
            api_key_env: None,
            process: ProcessSelector::Port(port),
            reuse_connections: true,
        });
    }
    let config = Config {
        path: PathBuf::from("(built into soakd demo)"),
        db: db.clone(),
        schedules: PathBuf::from("(built into soakd demo)"),
        shutdown_grace: Duration::from_secs(2),
        sampler: SamplerConfig { idle_interval: Duration::from_secs(2), during_interval: Duration::from_millis(500) },
        backends,
        log: crate::config::LogConfig { dir: None, keep_days: 0 },
        retention: crate::config::RetentionConfig { raw_days: None },
        mail: Default::default(),
        metrics: None,
    };
    let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    let schedules = schedule::parse_file(JOBS, Path::new("demo schedule"), Some(&names))?;

    println!("soakd demo: soaking two simulated backends for {seconds} s (Ctrl-C stops early)");
    println!("  lmstudio-sim    fast, crashes under rapid requests, dies at its 25th request and comes back");
    println!("  mlx-direct-sim  slower, steady");
    println!("  database        {}", db.display());
    println!();
    let started = now_ms();
    let session = Session::open(config, shutdown.clone())?;
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stopper.stop_then_abort(Duration::from_secs(2));
    });
    let ticker = tokio::spawn(tally(db.clone(), started, shutdown.clone()));
    crate::daemon::run(&session, schedules, crate::measure::Trigger::Demo).await;
    session.close().await;
    ticker.abort();
    for s in supervisors {
        let _ = s.await;
    }

    let mut conn = store::open_existing(&db)?;
    let now = now_ms();
    let window = crate::report::Window { from: started, to: now + 1 };
    let mut report = crate::report::build::build_with(
        &conn,
        window,
        &[],
        now,
        crate::report::build::Options { include_contended: true, ..Default::default() },
    )?;
    crate::report::save_findings(&mut conn, &mut report, now)?;
    println!();
    print!("{}", crate::report::render(&report, crate::report::Format::Table));
    println!();
    println!("Every request, memory sample and restart is in {}. Try:", db.display());
    println!("  sqlite3 {} \"{}\"", db.display(), crate::store::shown::OUTCOMES_BY_BACKEND);
    println!("  sqlite3 {} \"{}\"", db.display(), crate::store::shown::FIRST_FAILURES);
    println!("  soakd report --db {} --since 1h --format markdown", db.display());
    let eml = db.with_extension("eml");
    let made = crate::digest::run::make(
        &db,
        std::slice::from_ref(&db),
        &Default::default(),
        Some(window),
        now,
        crate::digest::How { save: false, parallel: true },
    )?;
    let bytes = made.message.formatted();
    std::fs::write(&eml, &bytes).with_context(|| format!("cannot write the digest to {}", eml.display()))?;
    println!();
    println!(
        "The nightly digest of this soak ({} KB, {} charts) is {}: open it in a mail client.",
        bytes.len() / 1024,
        made.digest.charts.len(),
        eml.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `soakd sim` on `port` until shutdown, starting it again a second after it dies.
async fn supervise(port: u16, args: Vec<String>, shutdown: Shutdown) {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return tracing::error!("cannot find soakd's own executable to start the simulator: {e}"),
    };
    while !shutdown.is_stopping() {
        let child = tokio::process::Command::new(&exe)
            .args(["sim", "--port", &port.to_string()])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return tracing::error!("cannot start the simulator: {e}"),
        };
        tokio::select! {
            _ = child.wait() => {}
            _ = shutdown.stopping() => {
                // Let in-flight requests finish within the grace period, then stop it.
                tokio::select! {
                    _ = child.wait() => {}
                    _ = shutdown.aborted() => {}
                    _ = tokio::time::sleep(Duration::from_secs(3)) => {}
                }
                let _ = child.kill().await;
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Prints running totals every 10 s.
async fn tally(db: PathBuf, from: i64, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.stopping() => return,
        }
        let line = tokio::task::spawn_blocking({
            let db = db.clone();
            move || -> rusqlite::Result<String> {
                let conn = crate::store::open_read_only(&db)?;
                let totals = crate::store::queries::totals_since(&conn, from)?;
                let parts: Vec<String> =
                    totals.iter().map(|(b, n, failed)| format!("{b} {n} requests ({failed} failed)")).collect();
                Ok(parts.join(" · "))
            }
        })
        .await;
        if let Ok(Ok(line)) = line {
            println!("  {:>3} s  {line}", (now_ms() - from) / 1000);
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

async fn wait_ready(port: u16) -> anyhow::Result<()> {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("nothing listens on 127.0.0.1:{port} after 5 s")
}
