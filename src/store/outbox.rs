//! The outbox table (`db/0005_outbox.sql`, filled by `digest`): every mail is stored here, complete, before any try
//! to send it, and is marked sent only after the SMTP server accepted it. A sender claims a row
//! for a while before sending, so two soakd processes never send the same row; a failed try
//! sets the next one after a backoff with jitter (30 s, doubling, at most 1 h).

use rusqlite::{Connection, OptionalExtension, params};

/// How long a claim holds: longer than any one SMTP try (timeouts are at most 10 min).
const CLAIM_MS: i64 = 15 * 60 * 1000;
const BACKOFF_FIRST_MS: i64 = 30_000;
const BACKOFF_MAX_MS: i64 = 3_600_000;

/// A mail to store.
#[derive(Debug, Clone)]
pub struct NewMail {
    pub kind: &'static str,
    pub window: Option<(i64, i64)>,
    pub subject: String,
    pub envelope_from: String,
    pub envelope_to: Vec<String>,
    pub message_id: String,
    pub message: Vec<u8>,
}

/// A stored mail waiting to be sent.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub envelope_from: String,
    pub envelope_to: Vec<String>,
    pub message: Vec<u8>,
    pub attempts: i64,
}

/// Stores a mail; the daemon (or `soakd digest --send-queued`) sends it. Returns its id.
pub fn enqueue(conn: &Connection, mail: &NewMail, now: i64) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO outbox (kind, created_at, window_from, window_to, subject, envelope_from, envelope_to, message_id, message, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?2)",
        params![
            mail.kind,
            now,
            mail.window.map(|w| w.0),
            mail.window.map(|w| w.1),
            mail.subject,
            mail.envelope_from,
            serde_json::to_string(&mail.envelope_to).unwrap_or_else(|_| "[]".into()),
            mail.message_id,
            mail.message
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// The end of the window the latest digest covered, and when it was made.
pub fn last_digest(conn: &Connection) -> rusqlite::Result<Option<(i64, i64)>> {
    conn.query_row(
        "SELECT window_to, created_at FROM outbox WHERE kind = 'digest' AND window_to IS NOT NULL
         ORDER BY window_to DESC, id DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// When the latest alert with this subject key was stored (for the reminder interval).
pub fn last_alert(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT max(created_at) FROM outbox WHERE kind = 'alert' AND message_id LIKE ?1",
        [format!("%.{key}@soakd>")],
        |r| r.get(0),
    )
}

/// Claims the pending mails due at `now` (all pending ones when `due_only` is false) for this
/// sender, and returns them oldest first. A claim lapses after 15 minutes (a sender that died).
pub fn claim(conn: &mut Connection, now: i64, due_only: bool) -> rusqlite::Result<Vec<Pending>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let rows: Vec<Pending> = tx
        .prepare(
            "SELECT id, kind, subject, envelope_from, envelope_to, message, attempts FROM outbox
             WHERE status = 'pending' AND (claimed_until IS NULL OR claimed_until < ?1)
               AND (?2 = 0 OR next_attempt_at <= ?1)
             ORDER BY id",
        )?
        .query_map(params![now, due_only], |r| {
            Ok(Pending {
                id: r.get(0)?,
                kind: r.get(1)?,
                subject: r.get(2)?,
                envelope_from: r.get(3)?,
                envelope_to: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
                message: r.get(5)?,
                attempts: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    for p in &rows {
        tx.execute("UPDATE outbox SET claimed_until = ?2 WHERE id = ?1", params![p.id, now + CLAIM_MS])?;
    }
    tx.commit()?;
    Ok(rows)
}

/// The server accepted the mail: it is never sent again.
pub fn mark_sent(conn: &Connection, id: i64, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1, claimed_until = NULL, last_error = NULL WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

/// A try failed: keep the mail, note why, and set the next try after the backoff.
pub fn mark_failed(conn: &Connection, id: i64, now: i64, error: &str, jitter: f64) -> rusqlite::Result<i64> {
    let attempts: i64 = conn.query_row("SELECT attempts FROM outbox WHERE id = ?1", [id], |r| r.get(0))?;
    let next = now + backoff_ms(attempts + 1, jitter);
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?3, next_attempt_at = ?2, claimed_until = NULL WHERE id = ?1",
        params![id, next, crate::text::bounded(error, crate::text::MAX_ERROR_BYTES)],
    )?;
    Ok(next)
}

/// Gives a claim back without counting a try (the sender is stopping).
pub fn release(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE outbox SET claimed_until = NULL WHERE id = ?1", [id])?;
    Ok(())
}

/// Pending mails: (count, earliest next try).
pub fn pending(conn: &Connection) -> rusqlite::Result<(u64, Option<i64>)> {
    conn.query_row("SELECT count(*), min(next_attempt_at) FROM outbox WHERE status = 'pending'", [], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
    })
}

/// The wait before try `attempt + 1` after `attempt` failures: 30 s doubling, capped at 1 h,
/// scaled by `jitter` in [0, 1) to between 75 % and 100 % (so senders do not retry in step).
pub fn backoff_ms(failures: i64, jitter: f64) -> i64 {
    let exp = failures.clamp(1, 20) - 1;
    let base = BACKOFF_FIRST_MS.saturating_mul(1i64 << exp).min(BACKOFF_MAX_MS);
    (base as f64 * (0.75 + 0.25 * jitter.clamp(0.0, 1.0))) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail() -> NewMail {
        NewMail {
            kind: "digest",
            window: Some((1_000, 2_000)),
            subject: "s".into(),
            envelope_from: "a@b.c".into(),
            envelope_to: vec!["d@e.f".into()],
            message_id: "<x@soakd>".into(),
            message: b"Subject: s\r\n\r\nhi\r\n".to_vec(),
        }
    }

    #[test]
    fn a_mail_is_claimed_once_retried_after_backoff_and_never_resent() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("o.db")).unwrap();
        let id = enqueue(&conn, &mail(), 10_000).unwrap();
        assert_eq!(last_digest(&conn).unwrap(), Some((2_000, 10_000)));
        let got = claim(&mut conn, 10_000, true).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].envelope_to, vec!["d@e.f".to_string()]);
        assert!(claim(&mut conn, 10_001, false).unwrap().is_empty(), "a claimed row is not handed out twice");
        let next = mark_failed(&conn, id, 20_000, "connection refused", 1.0).unwrap();
        assert_eq!(next, 20_000 + 30_000);
        assert!(claim(&mut conn, 20_001, true).unwrap().is_empty(), "not due before the backoff");
        assert_eq!(claim(&mut conn, 50_000, true).unwrap().len(), 1);
        mark_sent(&conn, id, 50_001).unwrap();
        assert!(claim(&mut conn, 10_000_000, false).unwrap().is_empty(), "sent rows are never sent again");
        assert_eq!(pending(&conn).unwrap().0, 0);
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff_ms(1, 1.0), 30_000);
        assert_eq!(backoff_ms(2, 1.0), 60_000);
        assert_eq!(backoff_ms(30, 1.0), 3_600_000);
        assert_eq!(backoff_ms(1, 0.0), 22_500);
    }
}
