//! Making and sending digests, for `soakd digest` and for the daemon: compose one for the
//! window since the previous digest, store it in the outbox, send what the outbox holds. The
//! daemon's schedule (`daemon`) calls `daemon_digest` on the digest's cron entry and `mail_round`
//! (alerts, then the outbox retried) every minute.

use super::mail::{self, Addresses};
use super::{Digest, send};
use crate::config::mail::MailConfig;
use crate::report::Window;
use crate::schedule::DigestSchedule;
use crate::store::outbox;
use chrono::Local;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A digest and its message, ready to print, write or queue.
pub struct Made {
    pub digest: Digest,
    pub window: Window,
    pub message_id: String,
    pub message: lettre::Message,
}

/// Composes the digest of `logs` (one, or a lab's several) for the window since the previous
/// digest in `outbox_db`'s outbox (or `window` when given).
pub fn make(
    outbox_db: &Path,
    logs: &[PathBuf],
    mail_cfg: &MailConfig,
    window: Option<Window>,
    now: i64,
    how: super::How,
) -> anyhow::Result<Made> {
    let window = match window {
        Some(w) => w,
        None => super::window(&crate::store::open_existing(outbox_db)?, &mail_cfg.digest, now)?,
    };
    let mut conns = Vec::new();
    for db in logs {
        conns.push((crate::report::log_label(db), crate::store::open_existing(db)?));
    }
    let digest = super::build_fleet(&mut conns, window, now, how)?;
    let message_id = mail::message_id("digest", now, "");
    let date = SystemTime::UNIX_EPOCH + Duration::from_millis(now.max(0) as u64);
    let message = mail::digest_message(&digest, &Addresses::of(mail_cfg.smtp.as_ref()), &message_id, date)?;
    Ok(Made { digest, window, message_id, message })
}

/// Makes the digest of `logs`, saves their findings and stores it in `outbox_db`'s outbox.
/// Returns the outbox id. `parallel`: see `How`.
pub fn queue(
    outbox_db: &Path,
    logs: &[PathBuf],
    mail_cfg: &MailConfig,
    now: i64,
    parallel: bool,
) -> anyhow::Result<(i64, Made)> {
    let made = make(outbox_db, logs, mail_cfg, None, now, super::How { save: true, parallel })?;
    let conn = crate::store::open(outbox_db)?;
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

/// In the daemon, on the mail entry of its schedule (every minute): alerts checked when
/// `check_every` has passed since `last_check` (which it updates), then the outbox sent.
pub async fn mail_round(db: PathBuf, cfg: MailConfig, last_check: &std::sync::Mutex<Option<std::time::Instant>>) {
    let Some(smtp) = cfg.smtp.clone() else { return };
    if let Some(alerts) = &cfg.alerts {
        let due = {
            let mut last = last_check.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|at| at.elapsed() >= alerts.check_every);
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        if due {
            let (db2, cfg2) = (db.clone(), cfg.clone());
            match tokio::task::spawn_blocking(move || super::alerts::check_and_queue(&db2, &cfg2)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(alerts = n, "alert mail(s) queued"),
                Ok(Err(e)) => tracing::warn!("checking for alerts failed: {e:#}"),
                _ => {}
            }
        }
    }
    if let Err(e) = send::flush(&db, &smtp, true).await {
        tracing::warn!("the outbox could not be read: {e:#}");
    }
}

/// In the daemon, on the digest's cron entry: makes the digest, stores it in the outbox and
/// sends it.
pub async fn daemon_digest(db: PathBuf, cfg: MailConfig) {
    let Some(smtp) = cfg.smtp.clone() else { return };
    let db2 = db.clone();
    let queued = tokio::task::spawn_blocking(move || {
        queue(&db2, std::slice::from_ref(&db2), &cfg, crate::time::now_ms(), false)
    })
    .await;
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
