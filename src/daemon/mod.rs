//! The daemon: every enabled job, each firing run at the job's backends (one after another, or
//! in parallel), and the digest and alert mails (on tokio-cron-scheduler), until shutdown.
//!
//! A firing that finds the same job still running (or queued) at a backend is skipped and
//! recorded as a `skipped` run, never stacked. Jobs are timed by `ticker` on the
//! wall clock: after a sleep or a clock jump a missed job fires once, not once per missed
//! tick, recorded as a `catch_up` event. Retention runs daily beside them. On stop: no new
//! firings, in-flight requests get the grace period, then are cancelled; everything is flushed.

pub mod ticker;

use crate::clock::SystemClock;
use crate::config::BackendConfig;
use crate::measure::{EventKind, Trigger};
use crate::probe::runner::{self, RunSpec};
use crate::schedule::{Job, Schedules};
use crate::session::Session;
use crate::store::rows::Event;
use crate::store::rows::RunStatus;
use crate::time::now_ms;
use chrono::Local;
use futures_util::future::join_all;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use ticker::{Dispatch, Plan};
use tokio_cron_scheduler::{JobScheduler, JobSchedulerError};
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("the scheduler failed: {0}")]
    Scheduler(#[from] JobSchedulerError),
    #[error("job \"{job}\": the scheduler rejected its cron expression \"{cron}\"")]
    Cron { job: String, cron: String },
}

/// Runs the schedules inside `session` until its shutdown is triggered.
pub async fn run(session: &Session, schedules: Schedules, trigger: Trigger) -> Result<(), DaemonError> {
    let enabled: Vec<Job> = schedules.jobs.into_iter().filter(|j| j.enabled).collect();
    let inner = Arc::new(Inner {
        jobs: enabled,
        backends: session.config.backends.clone(),
        session_parts: Parts::of(session),
        trigger,
        claimed: Mutex::new(HashSet::new()),
        tracker: TaskTracker::new(),
    });
    let boot_time = sysinfo::System::boot_time().ok();
    if let Some(detail) = unclean_stop(&session.config.db, boot_time) {
        tracing::warn!(%detail, "the previous soakd session ended without stopping (killed, crashed, or the machine went down)");
        session.event(EventKind::UncleanStop, detail);
    }
    session.event(
        EventKind::DaemonStart,
        json!({"pid": std::process::id(), "version": env!("CARGO_PKG_VERSION"), "jobs": inner.jobs.len(),
               "trigger": trigger, "boot_time": boot_time}),
    );
    // The jobs run on `ticker` (wall-clock catch-up after sleep, testable with a fake clock);
    // tokio-cron-scheduler fires the mail tasks, where a missed tick only delays a mail.
    let scheduler = JobScheduler::new().await?;
    let plan = Plan::new(inner.jobs.iter().map(|j| j.cron.clone()).collect(), Local::now());
    let names = inner.jobs.iter().map(|j| j.name.clone()).collect();
    let ticking = {
        let (dispatch, stop) = (inner.clone(), session.shutdown.clone());
        tokio::spawn(async move { ticker::run(plan, names, &SystemClock, &dispatch, stop.stopping()).await })
    };
    let upkeep = session.config.retention.raw_days.map(|days| {
        let (db, writer, stop) = (session.config.db.clone(), session.writer(), session.shutdown.clone());
        tokio::spawn(async move { crate::store::retention::daily(db, days, writer, stop).await })
    });
    let cfg = &session.config;
    let mail =
        crate::digest::run::schedule(&scheduler, &cfg.mail, &cfg.db, &schedules.digest, &session.shutdown).await?;
    scheduler.start().await?;
    tracing::info!(jobs = inner.jobs.len(), backends = inner.backends.len(), "soakd is running");

    session.shutdown.stopping().await;
    tracing::info!("stopping: no new firings; in-flight requests get the grace period");
    let mut scheduler = scheduler;
    if let Err(e) = scheduler.shutdown().await {
        tracing::warn!("the scheduler did not stop cleanly: {e}");
    }
    let _ = ticking.await;
    if let Some(upkeep) = upkeep {
        let _ = upkeep.await;
    }
    inner.tracker.close();
    inner.tracker.wait().await;
    mail.finish().await;
    session.event(EventKind::DaemonStop, json!({"pid": std::process::id()}));
    Ok(())
}

/// Boot times read in two sessions may differ by clock adjustments; a reboot moves it by more.
const BOOT_TOLERANCE_S: i64 = 60;

/// The `unclean_stop` event's detail when the log's last daemon session has no `daemon_stop`:
/// its pid and start, the last moment it recorded anything, the gap since, and whether the
/// machine rebooted in between (`null` when the old session did not record its boot time).
fn unclean_stop(db: &std::path::Path, boot_time: Option<u64>) -> Option<serde_json::Value> {
    let conn = crate::store::open_existing(db).ok()?;
    let previous = crate::store::queries::unclean_stop(&conn).ok()??;
    let now = crate::time::now_ms();
    let rebooted = match (previous.boot_time, boot_time) {
        (Some(before), Some(now)) => Some((now as i64 - before).abs() > BOOT_TOLERANCE_S),
        _ => None,
    };
    Some(json!({
        "previous_pid": previous.pid,
        "previous_started_at": previous.started_at,
        "last_seen_at": previous.last_seen_at,
        "gap_s": (now - previous.last_seen_at).max(0) / 1000,
        "rebooted": rebooted,
    }))
}

/// What a firing needs from the session (handles are cheap clones).
struct Parts {
    writer: crate::store::WriterHandle,
    targets: Vec<(String, crate::probe::runner::Target)>,
    shutdown: crate::shutdown::Shutdown,
}

impl Parts {
    fn of(session: &Session) -> Parts {
        Parts {
            writer: session.writer(),
            targets: session.config.backends.iter().map(|b| (b.name.clone(), session.target(&b.name))).collect(),
            shutdown: session.shutdown.clone(),
        }
    }
}

struct Inner {
    jobs: Vec<Job>,
    backends: Vec<BackendConfig>,
    session_parts: Parts,
    trigger: Trigger,
    /// (job index, backend) pairs running or queued.
    claimed: Mutex<HashSet<(usize, String)>>,
    tracker: TaskTracker,
}

impl Dispatch for Arc<Inner> {
    fn fire(&self, index: usize, planned_at: i64, _catch_up: bool) {
        self.tracker.spawn(self.clone().fire(index, planned_at));
    }

    fn event(&self, event: Event) {
        self.session_parts.writer.event(event);
    }
}

impl Inner {
    async fn fire(self: Arc<Self>, index: usize, planned_at: i64) {
        let parts = &self.session_parts;
        if parts.shutdown.is_stopping() {
            return;
        }
        let job = &self.jobs[index];
        let mut targets = Vec::new();
        for backend in self.backends.iter().filter(|b| job.backends.includes(&b.name)) {
            let fresh = self.claimed.lock().expect("claims").insert((index, backend.name.clone()));
            if fresh {
                targets.push(backend.clone());
            } else {
                tracing::info!(job = %job.name, backend = %backend.name, "skipped: still running from an earlier firing");
                self.record_skip(job, backend, planned_at).await;
            }
        }
        if targets.is_empty() {
            return;
        }
        let this = self.clone();
        self.tracker.spawn(async move {
            let job = &this.jobs[index];
            if job.sequential {
                for backend in &targets {
                    this.run_one(index, backend, planned_at).await;
                }
            } else {
                join_all(targets.iter().map(|b| this.run_one(index, b, planned_at))).await;
            }
        });
    }

    async fn run_one(&self, index: usize, backend: &BackendConfig, planned_at: i64) {
        let parts = &self.session_parts;
        if !parts.shutdown.is_stopping() {
            let target = parts.targets.iter().find(|(n, _)| *n == backend.name).map(|(_, t)| t).expect("target");
            let spec = RunSpec { job: &self.jobs[index], backend, trigger: self.trigger, planned_at };
            runner::run(spec, target, &parts.shutdown, None).await;
        }
        self.claimed.lock().expect("claims").remove(&(index, backend.name.clone()));
    }

    async fn record_skip(&self, job: &Job, backend: &BackendConfig, planned_at: i64) {
        let writer = &self.session_parts.writer;
        let now = now_ms();
        let spec = RunSpec { job, backend, trigger: self.trigger, planned_at };
        let reason = "the previous firing of this job is still running (or queued) at this backend";
        let run = writer.begin_run(runner::skipped_run(&spec, now, reason));
        writer.end_run(run, RunStatus::Skipped, now, 0);
    }
}
