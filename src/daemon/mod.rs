//! The daemon: every enabled job, each firing run at the job's backends (one after another, or
//! in parallel), and the upkeep beside them — the digest on its cron entry, the mail round
//! (alerts, the outbox retried) every minute, retention every hour — until shutdown.
//!
//! Everything periodic is timed by one path, `ticker`, on the wall clock (fire times from the
//! cron expressions tokio-cron-scheduler parses, `schedule::CronExpr`): after a sleep or a
//! clock jump a missed entry fires once, not once per missed tick, recorded as a `catch_up`
//! event. A firing that finds the same job still running (or queued) at a backend is skipped
//! and recorded as a `skipped` run, never stacked; an upkeep task still running is not started
//! again. On stop: no new firings, in-flight requests get the grace period, then are cancelled;
//! a mail being sent gets up to a minute; everything is flushed.

pub mod ticker;

use crate::clock::SystemClock;
use crate::config::BackendConfig;
use crate::config::mail::MailConfig;
use crate::measure::{EventKind, Trigger};
use crate::probe::runner::{self, RunSpec};
use crate::schedule::{CronExpr, Job, Schedules};
use crate::session::Session;
use crate::store::rows::Event;
use crate::store::rows::RunStatus;
use crate::time::now_ms;
use chrono::Local;
use futures_util::future::join_all;
use serde_json::json;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use ticker::{Dispatch, Plan};
use tokio_util::task::TaskTracker;

/// The periodic work beside the jobs, on the same schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Upkeep {
    Digest,
    Mail,
    Retention,
    Summaries,
}

impl Upkeep {
    fn name(self) -> &'static str {
        match self {
            Upkeep::Digest => "digest",
            Upkeep::Mail => "mail",
            Upkeep::Retention => "retention",
            Upkeep::Summaries => "summaries",
        }
    }
}

/// The mail round's cadence: alerts as their `check_every` says, the outbox every minute.
const MAIL_CRON: &str = "0 * * * * *";
/// Retention's cadence: a pass every hour (cheap when nothing has aged out).
const RETENTION_CRON: &str = "0 7 * * * *";
/// The report's summaries' cadence (`store::summaries`): every hour, once the hour before has
/// settled (`store::latency_hours::SETTLE_MS`).
const SUMMARIES_CRON: &str = "0 12 * * * *";
/// How long a mail being sent may hold up soakd's stop.
const MAIL_STOP_GRACE: Duration = Duration::from_secs(60);

/// Runs the schedules inside `session` until its shutdown is triggered.
pub async fn run(session: &Session, schedules: Schedules, trigger: Trigger) {
    let enabled: Vec<Job> = schedules.jobs.into_iter().filter(|j| j.enabled).collect();
    let cfg = &session.config;
    let mut upkeep = Vec::new();
    if cfg.mail.smtp.is_some() {
        if schedules.digest.enabled {
            upkeep.push((Upkeep::Digest, schedules.digest.cron.clone()));
            tracing::info!(cron = %schedules.digest.cron.written, "the digest is scheduled");
        }
        upkeep.push((Upkeep::Mail, CronExpr::parse(MAIL_CRON).expect("a valid cron")));
    } else {
        tracing::info!("no [smtp] table in the config: no digest or alert mails");
    }
    if cfg.retention.raw_days.is_some() {
        upkeep.push((Upkeep::Retention, CronExpr::parse(RETENTION_CRON).expect("a valid cron")));
    }
    upkeep.push((Upkeep::Summaries, CronExpr::parse(SUMMARIES_CRON).expect("a valid cron")));
    let inner = Arc::new(Inner {
        jobs: enabled,
        upkeep: upkeep.iter().map(|(u, _)| *u).collect(),
        backends: cfg.backends.clone(),
        mail: cfg.mail.clone(),
        db: cfg.db.clone(),
        raw_days: cfg.retention.raw_days,
        session_parts: Parts::of(session),
        trigger,
        claimed: Mutex::new(HashSet::new()),
        upkeep_running: Mutex::new(HashSet::new()),
        last_alert_check: std::sync::Mutex::new(None),
        tracker: TaskTracker::new(),
        upkeep_tracker: TaskTracker::new(),
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
    // One schedule for everything periodic: the jobs, then the upkeep entries.
    let crons = inner.jobs.iter().map(|j| j.cron.clone()).chain(upkeep.iter().map(|(_, c)| c.clone())).collect();
    let names = inner.jobs.iter().map(|j| j.name.clone()).chain(upkeep.iter().map(|(u, _)| u.name().into())).collect();
    let plan = Plan::new(crons, Local::now());
    let ticking = {
        let (dispatch, stop) = (inner.clone(), session.shutdown.clone());
        tokio::spawn(async move { ticker::run(plan, names, &SystemClock, &dispatch, stop.stopping()).await })
    };
    tracing::info!(jobs = inner.jobs.len(), backends = inner.backends.len(), "soakd is running");

    session.shutdown.stopping().await;
    tracing::info!("stopping: no new firings; in-flight requests get the grace period");
    let _ = ticking.await;
    inner.tracker.close();
    inner.tracker.wait().await;
    inner.upkeep_tracker.close();
    if tokio::time::timeout(MAIL_STOP_GRACE, inner.upkeep_tracker.wait()).await.is_err() {
        tracing::warn!("a mail was still being sent after 60 s; it stays in the outbox and is retried");
    }
    session.event(EventKind::DaemonStop, json!({"pid": std::process::id()}));
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
    /// The schedule's entries after the jobs'.
    upkeep: Vec<Upkeep>,
    backends: Vec<BackendConfig>,
    mail: MailConfig,
    db: PathBuf,
    raw_days: Option<f64>,
    session_parts: Parts,
    trigger: Trigger,
    /// (job index, backend) pairs running or queued.
    claimed: Mutex<HashSet<(usize, String)>>,
    /// Upkeep tasks running.
    upkeep_running: Mutex<HashSet<Upkeep>>,
    last_alert_check: std::sync::Mutex<Option<std::time::Instant>>,
    tracker: TaskTracker,
    /// The upkeep tasks: a mail being sent finishes (and is marked sent) before soakd exits.
    upkeep_tracker: TaskTracker,
}

impl Dispatch for Arc<Inner> {
    fn fire(&self, index: usize, planned_at: i64, _catch_up: bool) {
        match index.checked_sub(self.jobs.len()).and_then(|i| self.upkeep.get(i)) {
            Some(&task) => {
                self.upkeep_tracker.spawn(self.clone().upkeep(task));
            }
            None => {
                self.tracker.spawn(self.clone().fire(index, planned_at));
            }
        }
    }

    fn event(&self, event: Event) {
        self.session_parts.writer.event(event);
    }
}

impl Inner {
    /// Runs one upkeep task, unless it is still running from its previous firing.
    async fn upkeep(self: Arc<Self>, task: Upkeep) {
        if self.session_parts.shutdown.is_stopping() || !self.upkeep_running.lock().expect("upkeep").insert(task) {
            return;
        }
        match task {
            Upkeep::Digest => crate::digest::run::daemon_digest(self.db.clone(), self.mail.clone()).await,
            Upkeep::Mail => {
                crate::digest::run::mail_round(self.db.clone(), self.mail.clone(), &self.last_alert_check).await
            }
            Upkeep::Retention => {
                if let Some(days) = self.raw_days {
                    let (writer, stop) = (self.session_parts.writer.clone(), self.session_parts.shutdown.clone());
                    crate::store::retention::pass(self.db.clone(), days, writer, stop).await;
                }
            }
            Upkeep::Summaries => {
                let points = crate::analysis::leaks::POINTS_PER_LIFE;
                crate::store::summaries::pass(self.db.clone(), points, self.session_parts.shutdown.clone()).await
            }
        }
        self.upkeep_running.lock().expect("upkeep").remove(&task);
    }

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
