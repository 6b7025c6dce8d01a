//! Immediate alerts (`[alerts]` in the config): a short mail at once when a backend's latest
//! requests all failed (a crash streak), when it is wedged (requests accepted, none answered) or
//! failing silently (every reply empty), or when its memory leaks fast enough to use up the
//! machine's memory within `exhaust_within_h`. The same alert is repeated at most every `remind_every_h`.
//! Alerts go through the outbox like the digest.

use super::mail::{self, Addresses};
use crate::analysis::leaks::Verdict;
use crate::config::mail::{AlertConfig, MailConfig};
use crate::report::Window;
use crate::store::{outbox, queries, shown};
use rusqlite::Connection;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// One alert to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Identity, for the reminder interval: e.g. `streak-lmstudio`.
    pub key: String,
    pub subject: String,
    pub body: String,
}

/// The window the leak check looks at.
const LEAK_WINDOW_MS: i64 = 24 * 3_600_000;

/// What deserves an alert now (before the reminder interval is applied).
pub fn check(conn: &Connection, cfg: &AlertConfig, now: i64) -> rusqlite::Result<Vec<Alert>> {
    let mut out = Vec::new();
    let window = Window { from: now - LEAK_WINDOW_MS, to: now };
    let report = crate::report::build::build(conn, window, &[], now)?;
    for b in &report.backends {
        let name = crate::text::bounded(&crate::text::printable(&b.name), 60);
        let streak = queries::failed_in_a_row(conn, &b.name, cfg.crash_streak.max(1000))?;
        if streak >= cfg.crash_streak {
            out.push(Alert {
                key: format!("streak-{}", b.name),
                subject: format!("soakd alert: {name} failed its last {streak} requests"),
                body: format!(
                    "{name}: the last {streak} requests all failed.\n\nThe requests behind it:\n  {};\n",
                    shown::latest_requests(&b.name, streak)
                ),
            });
        }
        if let Some(s) = &b.stuck {
            let since = crate::report::window::utc(s.since);
            let (what, why) = s.what_and_why();
            out.push(Alert {
                key: format!("{}-{}", s.kind.as_str().replace('_', "-"), b.name),
                subject: format!("soakd alert: {name} {} since {since}", s.label()),
                body: format!(
                    "{name}: {what} since {since} {why} ({} requests in a row; it ends with the first success).\n\nThe requests behind it:\n  {};\n",
                    s.requests,
                    shown::requests_since(&b.name, s.since)
                ),
            });
        }
        if b.leak.verdict == Verdict::Leak
            && let Some(h) = b.leak.hours_to_exhaustion
            && h <= cfg.exhaust_within.as_secs_f64() / 3600.0
        {
            out.push(Alert {
                key: format!("leak-{}", b.name),
                subject: format!(
                    "soakd alert: {name} leaks {:.0} MB/h; memory runs out in {h:.0} h",
                    b.leak.mb_per_hour.unwrap_or(0.0)
                ),
                body: format!("{name}: {}\n", crate::text::printable(&b.leak.reason)),
            });
        }
    }
    Ok(out)
}

/// Checks, and stores the alerts not sent within the reminder interval. Returns how many.
pub fn check_and_queue(db: &Path, cfg: &MailConfig) -> anyhow::Result<usize> {
    let Some(alerts) = &cfg.alerts else { return Ok(0) };
    let conn = crate::store::open(db)?;
    let now = crate::time::now_ms();
    let mut queued = 0;
    for a in check(&conn, alerts, now)? {
        let key = id_key(&a.key);
        if let Some(last) = outbox::last_alert(&conn, &key)?
            && now - last < alerts.remind_every.as_millis() as i64
        {
            continue;
        }
        let message_id = mail::message_id("alert", now, &key);
        let date = SystemTime::UNIX_EPOCH + Duration::from_millis(now.max(0) as u64);
        let m = mail::plain_message(&Addresses::of(cfg.smtp.as_ref()), &a.subject, &a.body, &message_id, date)?;
        outbox::enqueue(&conn, &mail::outbox_row("alert", None, &a.subject, &message_id, &m), now)?;
        queued += 1;
    }
    Ok(queued)
}

/// The key as it appears at the end of the Message-ID (see `mail::message_id`).
pub fn id_key(key: &str) -> String {
    key.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::mail::AlertConfig;

    fn log_with_streak(conn: &Connection, now: i64, failing_tail: i64) {
        conn.execute(
            "INSERT INTO runs (job, backend, trigger, status, planned_at, started_at, requests_planned, concurrency,
                 delay_ms, stream, max_tokens, backend_kind, base_url, owner_pid, owner_started_at)
             VALUES ('j', 'flaky', 'cron', 'completed', ?1, ?1, 20, 1, 0, 1, 16, 'openai', 'http://127.0.0.1:1', 1, 1)",
            [now - 3_600_000],
        )
        .unwrap();
        for i in 0..20i64 {
            let outcome = if i >= 20 - failing_tail { "connect_refused" } else { "ok" };
            conn.execute(
                "INSERT INTO requests (run_id, backend, job, worker, seq, intended_at, started_at, outcome, stream,
                     concurrency, prompt_name, prompt_chars, max_tokens)
                 VALUES (1, 'flaky', 'j', 0, ?1, ?2, ?2, ?3, 1, 1, 'p', 10, 16)",
                rusqlite::params![i, now - 600_000 + i * 10_000, outcome],
            )
            .unwrap();
        }
    }

    fn alert_cfg() -> AlertConfig {
        AlertConfig {
            crash_streak: 5,
            exhaust_within: Duration::from_secs(86_400),
            remind_every: Duration::from_secs(6 * 3600),
            check_every: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_crash_streak_alerts_and_a_shorter_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("a.db")).unwrap();
        let now = crate::time::now_ms();
        log_with_streak(&conn, now, 4);
        assert!(check(&conn, &alert_cfg(), now).unwrap().is_empty(), "4 failures in a row is under the threshold");
        conn.execute("UPDATE requests SET outcome = 'reset_mid_stream' WHERE seq = 15", []).unwrap();
        let alerts = check(&conn, &alert_cfg(), now).unwrap();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].key, "streak-flaky");
        assert!(alerts[0].subject.contains("flaky failed its last 5 requests"), "{}", alerts[0].subject);
    }

    #[test]
    fn a_wedged_or_silent_backend_alerts_after_three_and_a_success_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("a.db")).unwrap();
        let now = crate::time::now_ms();
        log_with_streak(&conn, now, 3);
        conn.execute("UPDATE requests SET outcome = 'no_first_byte' WHERE outcome = 'connect_refused'", []).unwrap();
        let alerts = check(&conn, &alert_cfg(), now).unwrap();
        assert_eq!(alerts.len(), 1, "wedged after 3, no crash streak of 5: {alerts:?}");
        assert_eq!(alerts[0].key, "wedged-flaky");
        assert!(alerts[0].subject.contains("flaky wedged since"), "{}", alerts[0].subject);
        conn.execute("UPDATE requests SET outcome = 'empty' WHERE outcome = 'no_first_byte'", []).unwrap();
        let alerts = check(&conn, &alert_cfg(), now).unwrap();
        assert_eq!(alerts.iter().map(|a| a.key.as_str()).collect::<Vec<_>>(), ["silent-failure-flaky"]);
        conn.execute("UPDATE requests SET outcome = 'ok' WHERE seq = 19", []).unwrap();
        assert!(check(&conn, &alert_cfg(), now).unwrap().is_empty(), "the latest request succeeded");
    }

    #[test]
    fn an_alert_is_queued_once_per_reminder_interval() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let conn = crate::store::open(&db).unwrap();
        log_with_streak(&conn, crate::time::now_ms(), 8);
        let mut cfg = MailConfig { alerts: Some(alert_cfg()), ..MailConfig::default() };
        assert_eq!(check_and_queue(&db, &cfg).unwrap(), 1);
        assert_eq!(check_and_queue(&db, &cfg).unwrap(), 0, "not again within remind_every");
        cfg.alerts.as_mut().unwrap().remind_every = Duration::from_millis(1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(check_and_queue(&db, &cfg).unwrap(), 1, "a reminder after the interval");
        let (kinds, subject): (i64, String) = conn
            .query_row("SELECT count(*), max(subject) FROM outbox WHERE kind = 'alert'", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(kinds, 2);
        assert!(subject.contains("flaky failed its last 8 requests"), "{subject}");
    }
}
