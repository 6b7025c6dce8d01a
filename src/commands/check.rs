//! `soakd check`: validate the config and every schedule, print what the daemon would do.

use crate::config::{self, ProcessSelector};
use crate::fields::Problems;
use crate::schedule;
use chrono::Local;
use std::path::Path;
use std::process::ExitCode;

pub fn run(flag: Option<&Path>, next: usize) -> anyhow::Result<ExitCode> {
    let config = match config::load(flag) {
        Ok(c) => c,
        Err(config::ConfigError::Invalid(Problems(mut problems))) => {
            // Report the schedules' problems too (backend names cannot be checked then).
            if let Some(dir) = config::locate(flag).ok().and_then(|(path, _)| schedules_dir(&path))
                && let Err(Problems(p)) = schedule::load_dir(&dir, None)
            {
                problems.extend(p);
            }
            return Err(Problems(problems).into());
        }
        Err(e) => return Err(e.into()),
    };
    let mut problems = Vec::new();
    println!("config     {}", config.path.display());
    println!("database   {}", config.db.display());
    println!("schedules  {}", config.schedules.display());
    println!();
    println!("backends ({}):", config.backends.len());
    for b in &config.backends {
        let sampled = match &b.process {
            ProcessSelector::None => "memory not sampled (not a local server)".to_string(),
            p => format!("samples {}", p.describe()),
        };
        println!("  {:<20} {:<7} {}  {}", b.name, b.kind.as_str(), b.url, sampled);
    }
    problems.extend(super::validate::environment(&config));
    problems.extend(super::validate::daemon(&config));
    let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    let (jobs, digest) = match schedule::load_dir(&config.schedules, Some(&names)) {
        Ok(s) => (s.jobs, Some(s.digest)),
        Err(Problems(p)) => {
            problems.extend(p);
            (Vec::new(), None)
        }
    };
    println!();
    println!("jobs ({}):", jobs.len());
    let now = Local::now();
    for job in &jobs {
        let w = &job.workload;
        let targets: Vec<&str> =
            config.backends.iter().filter(|b| job.backends.includes(&b.name)).map(|b| b.name.as_str()).collect();
        println!(
            "  {:<20} {:<18} {} × {} req, concurrency {}, {}, max_tokens {}{}  → {}",
            job.name,
            job.cron.written,
            targets.len(),
            w.requests,
            w.concurrency,
            if w.stream { "streamed" } else { "not streamed" },
            w.max_tokens,
            if job.enabled { "" } else { "  (disabled)" },
            if targets.is_empty() { "no backend".to_string() } else { targets.join(", ") },
        );
        for t in job.cron.next_after(now, next) {
            println!("      next {}", t.format("%Y-%m-%d %H:%M:%S %Z"));
        }
    }
    crate::digest::run::check(&config, digest.as_ref(), now, next);
    match &config.metrics {
        Some(m) => println!(
            "metrics: `soakd run` serves http://{}/metrics{}",
            m.listen,
            if m.token.is_some() { " (bearer token required)" } else { "" }
        ),
        None => println!("metrics: off (no [metrics] table)"),
    }
    if problems.is_empty() {
        println!();
        println!("ok: {} backends, {} jobs", config.backends.len(), jobs.len());
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Problems(problems).into())
    }
}

/// Where an invalid config file says its schedules are (its `schedules` key, else the default).
fn schedules_dir(config: &Path) -> Option<std::path::PathBuf> {
    let table: toml::Table = std::fs::read_to_string(config).ok()?.parse().ok()?;
    let dir = table.get("schedules").and_then(|v| v.as_str()).unwrap_or("schedules");
    Some(config.parent().unwrap_or(Path::new("")).join(dir))
}
