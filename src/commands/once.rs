//! `soakd once JOB`: run one job now at its backends, with a progress bar, then print the
//! per-backend summary. The servers' failures are data: the exit code is 0 whatever they did.

use super::{load, stop_on_signals};
use crate::analysis::summary::summarise;
use crate::config::BackendConfig;
use crate::probe::runner::{self, OnOutcome, RunSpec};
use crate::session::Session;
use crate::shutdown::Shutdown;
use crate::store::{self, queries};
use crate::time::now_ms;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub async fn run(flag: Option<&Path>, job_name: &str, only: &[String]) -> anyhow::Result<ExitCode> {
    let (config, schedules) = load(flag)?;
    let jobs = schedules.jobs;
    let Some(job) = jobs.iter().find(|j| j.name == job_name).cloned() else {
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        anyhow::bail!("no job named \"{job_name}\" in {}; jobs: {}", config.schedules.display(), names.join(", "));
    };
    let targets: Vec<BackendConfig> = if only.is_empty() {
        config.backends.iter().filter(|b| job.backends.includes(&b.name)).cloned().collect()
    } else {
        only.iter()
            .map(|name| {
                config.backends.iter().find(|b| &b.name == name).cloned().with_context(|| {
                    let known: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
                    format!("no backend named \"{name}\" in {}; backends: {}", config.path.display(), known.join(", "))
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    if targets.is_empty() {
        anyhow::bail!("job \"{job_name}\" targets no configured backend; pass --backend NAME");
    }
    let db = config.db.clone();
    let shutdown = Shutdown::new();
    stop_on_signals(&shutdown, config.shutdown_grace);
    let session = Session::open(config, shutdown.clone())?;
    let started = now_ms();
    let mut run_ids = Vec::new();
    for backend in &targets {
        let bar = progress_bar(&backend.name, u64::from(job.workload.requests));
        let spec = RunSpec { job: &job, backend, trigger: crate::measure::Trigger::Once, planned_at: started };
        let result = runner::run(spec, &session.target(&backend.name), &shutdown, Some(bar.on_outcome())).await;
        bar.bar.finish();
        if let Some(run) = result.run {
            run_ids.extend(session.writer().run_id(run).await);
        }
        if shutdown.is_stopping() {
            break;
        }
    }
    session.close().await;

    let conn = store::open_existing(&db)?;
    let sel = queries::Selection::Runs(&run_ids);
    let (from, to) = queries::span(&conn, &sel)?.unwrap_or((started, now_ms()));
    let names: Vec<String> = targets.iter().map(|b| b.name.clone()).collect();
    let summaries = summarise(
        &queries::request_facts(&conn, &sel)?,
        &queries::peak_rss(&conn, &names, from, to)?,
        &queries::restarts(&conn, &names, from, to)?,
    );
    println!("{}", crate::report::table::table(&summaries));
    println!("job \"{}\" — {} run(s) recorded in {}", job.name, run_ids.len(), db.display());
    Ok(ExitCode::SUCCESS)
}

/// A progress bar counting successes and failures as requests end.
pub(super) struct Progress {
    pub bar: ProgressBar,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

pub(super) fn progress_bar(name: &str, total: u64) -> Progress {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    Progress { bar, ok: Arc::default(), failed: Arc::default() }
}

impl Progress {
    pub fn on_outcome(&self) -> OnOutcome {
        let (bar, ok, failed) = (self.bar.clone(), self.ok.clone(), self.failed.clone());
        Arc::new(move |outcome| {
            if outcome.is_ok() { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
            bar.set_message(format!("ok {} · failed {}", ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed)));
            bar.inc(1);
        })
    }
}
