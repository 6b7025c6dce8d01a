//! Making and sending digests, for `soakd digest` and for the daemon: compose one for the
//! window since the previous digest, store it in the outbox, send what the outbox holds; in the
//! daemon, on the digest's cron entry, with the outbox retried every minute until it is empty.

use super::mail::{self, Addresses};
use super::{Digest, send};
use crate::config::mail::MailConfig;
use crate::report::Window;
use crate::schedule::DigestSchedule;
use crate::shutdown::Shutdown;
use crate::store::outbox;
use chrono::Local;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio_cron_scheduler::{Job as CronJob, JobScheduler, JobSchedulerError};
use tokio_util::task::TaskTracker;

/// How often the daemon looks at the outbox for mails due another try.
const RETRY_EVERY: Duration = Duration::from_secs(60);

/// A digest and its message, ready to print, write or queue.
pub struct Made {
    pub digest: Digest,
    pub window: Window,
    pub message_id: String,
    pub message: lettre::Message,
}

/// Composes the digest for the window since the previous one (or `window` when given).
/// `save`: save the report's findings (what the next digest compares against).
pub fn make(db: &Path, mail_cfg: &MailConfig, window: Option<Window>, now: i64, save: bool) -> anyhow::Result<Made> {
    let mut conn = crate::store::open_existing(db)?;
    let window = match window {
        Some(w) => w,
        None => super::window(&conn, &mail_cfg.digest, now)?,
    };
    let digest = super::build(&mut conn, window, now, save)?;
    let message_id = mail::message_id("digest", now, "");
    let date = SystemTime::UNIX_EPOCH + Duration::from_millis(now.max(0) as u64);
    let message = mail::digest_message(&digest, &Addresses::of(mail_cfg.smtp.as_ref()), &message_id, date)?;
    Ok(Made { digest, window, message_id, message })
}

/// Makes the digest, saves its findings and stores it in the outbox. Returns the outbox id.
pub fn queue(db: &Path, mail_cfg: &MailConfig, now: i64) -> anyhow::Result<(i64, Made)> {
    let made = make(db, mail_cfg, None, now, true)?;
    let conn = crate::store::open(db)?;
    let row = mail::outbox_row(
        "digest",
        Some((made.window.from, made.window.to)),
        &made.digest.subject,
        &made.message_id,
        &made.message,
    );
    let id = outbox::enqueue(&conn, &row, now)?;
    Ok((id, made))
}

/// In the daemon: the digest on its cron entry, alerts on their interval, and the outbox retried
/// every minute, until `shutdown`. Nothing without an `[smtp]` table.
pub async fn schedule(
    scheduler: &JobScheduler,
    mail_cfg: &MailConfig,
    db: &Path,
    when: &DigestSchedule,
    shutdown: &Shutdown,
) -> Result<MailTasks, JobSchedulerError> {
    let tasks = MailTasks { tracker: TaskTracker::new() };
    let Some(smtp) = mail_cfg.smtp.clone() else {
        tracing::info!("no [smtp] table in the config: no digest or alert mails");
        return Ok(tasks);
    };
    if when.enabled {
        let (cfg, db2, tracker, stop) = (mail_cfg.clone(), db.to_path_buf(), tasks.tracker.clone(), shutdown.clone());
        let job = CronJob::new_async_tz(when.cron.normalised.as_str(), Local, move |_id, _s| {
            let (cfg, db, tracker, stop) = (cfg.clone(), db2.clone(), tracker.clone(), stop.clone());
            Box::pin(async move {
                if !stop.is_stopping() {
                    // Tracked, so that soakd waits for a send in progress before it exits.
                    let _ = tracker.spawn(daemon_digest(db, cfg)).await;
                }
            })
        })?;
        scheduler.add(job).await?;
        tracing::info!(cron = %when.cron.written, "the digest is scheduled");
    }
    let (db, cfg, stop) = (db.to_path_buf(), mail_cfg.clone(), shutdown.clone());
    tasks.tracker.spawn(async move {
        let mut last_alert_check = std::time::Instant::now() - Duration::from_secs(86_400);
        loop {
            if let Some(alerts) = &cfg.alerts
                && last_alert_check.elapsed() >= alerts.check_every
            {
                last_alert_check = std::time::Instant::now();
                let (db2, cfg2) = (db.clone(), cfg.clone());
                match tokio::task::spawn_blocking(move || super::alerts::check_and_queue(&db2, &cfg2)).await {
                    Ok(Ok(n)) if n > 0 => tracing::info!(alerts = n, "alert mail(s) queued"),
                    Ok(Err(e)) => tracing::warn!("checking for alerts failed: {e:#}"),
                    _ => {}
                }
            }
            if let Err(e) = send::flush(&db, &smtp, true).await {
                tracing::warn!("the outbox could not be read: {e:#}");
            }
            tokio::select! {
                _ = stop.stopping() => break,
                _ = tokio::time::sleep(RETRY_EVERY) => {}
            }
        }
    });
    Ok(tasks)
}

/// The daemon's mail tasks: on stop, a send in progress finishes (and is marked sent) first.
pub struct MailTasks {
    tracker: TaskTracker,
}

impl MailTasks {
    /// Waits for the mail tasks, at most `SMTP timeout`-ish: a stuck server cannot hold soakd.
    pub async fn finish(self) {
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(60), self.tracker.wait()).await.is_err() {
            tracing::warn!("a mail was still being sent after 60 s; it stays in the outbox and is retried");
        }
    }
}

async fn daemon_digest(db: PathBuf, cfg: MailConfig) {
    let Some(smtp) = cfg.smtp.clone() else { return };
    let db2 = db.clone();
    let queued = tokio::task::spawn_blocking(move || queue(&db2, &cfg, crate::time::now_ms())).await;
    match queued {
        Ok(Ok((id, made))) => tracing::info!(id, subject = %made.digest.subject, "digest queued"),
        Ok(Err(e)) => {
            tracing::warn!("the digest could not be made: {e:#}");
            return;
        }
        Err(e) => {
            tracing::warn!("the digest task failed: {e}");
            return;
        }
    }
    if let Err(e) = send::flush(&db, &smtp, true).await {
        tracing::warn!("the outbox could not be read: {e:#}");
    }
}

/// For `soakd check`: where the digest goes and when.
/// `digest` is the schedules' `[digest]` entry (`None` when the schedules have problems, which
/// `check` reports).
pub fn check(
    config: &crate::config::Config,
    digest: Option<&DigestSchedule>,
    now: chrono::DateTime<Local>,
    next: usize,
) {
    println!();
    let Some(smtp) = &config.mail.smtp else {
        println!("digest: not mailed (no [smtp] table); `soakd digest --print` shows it");
        return;
    };
    let to: Vec<String> = smtp.to.iter().map(ToString::to_string).collect();
    println!("digest: to {} via {}:{} ({})", to.join(", "), smtp.host, smtp.port, smtp.tls.as_str());
    if let Some(s) = digest {
        if s.enabled {
            let from = s.file.as_ref().map_or("the default".to_string(), |f| f.display().to_string());
            println!("  cron {} ({from})", s.cron.written);
            for t in s.cron.next_after(now, next) {
                println!("      next {}", t.format("%Y-%m-%d %H:%M:%S %Z"));
            }
        } else {
            println!("  disabled in {}", s.file.as_deref().unwrap_or(Path::new("-")).display());
        }
    }
    if let Some(a) = &config.mail.alerts {
        println!(
            "  alerts: a streak of {} failures, or memory used up within {:.0} h; reminders every {:.1} h",
            a.crash_streak,
            a.exhaust_within.as_secs_f64() / 3600.0,
            a.remind_every.as_secs_f64() / 3600.0
        );
    }
}
