//! The nightly stability digest: the report for the window since the previous digest, what
//! changed since then, and charts, as a mail (plain text and HTML with inline PNG charts) that
//! goes through the outbox to SMTP.
//!
//! ```text
//! report::build (the analysis, reused) ─► changes (vs the previous digest's findings)
//!        │                                 series (chart data: memory, failures over time)
//!        ▼
//! compose (subject, text) · html (escaped) · charts (plotters, PNG) ─► mail (MIME) ─► outbox ─► send (lettre)
//! ```
//!
//! `alerts` mails at once, between digests, when a crash streak or a leak that will use up
//! memory appears; `run` is what the daemon and `soakd digest` call (the digest's cron entry is
//! read with the jobs, by `schedule`; its mail settings are `config::mail`).

pub mod alerts;
pub mod changes;
pub mod charts;
pub mod compose;
pub mod html;
pub mod mail;
pub mod run;
pub mod send;
pub mod series;

use crate::report::model::Report;
use crate::report::{self, Window};
use crate::store::outbox;
use rusqlite::Connection;

/// A composed digest, before it becomes a mail.
#[derive(Debug, Clone)]
pub struct Digest {
    pub report: Report,
    pub changes: changes::Changes,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub charts: Vec<charts::Chart>,
}

/// The window of the next digest: from the end of the previous one (at most `max_window`
/// back), or `first_window` back when there was none, up to `now`.
pub fn window(conn: &Connection, cfg: &crate::config::mail::DigestConfig, now: i64) -> rusqlite::Result<Window> {
    let max = now - cfg.max_window.as_millis() as i64;
    let from = match outbox::last_digest(conn)? {
        Some((to, _)) if to < now => to.max(max),
        Some(_) => now - cfg.first_window.as_millis() as i64,
        None => (now - cfg.first_window.as_millis() as i64).max(max),
    };
    Ok(Window { from, to: now })
}

/// Builds the digest for `window`. With `save`, the report's findings are saved (as `soakd
/// report` does), so the next digest can say what changed.
pub fn build(conn: &mut Connection, window: Window, now: i64, save: bool) -> rusqlite::Result<Digest> {
    let mut report = report::build::build(conn, window, &[], now)?;
    let changes = changes::since_previous_digest(conn, &report.findings)?;
    if save {
        report::save_findings(conn, &mut report, now)?;
    }
    let series = series::load(conn, &report)?;
    let charts = charts::draw(&report, &series);
    let subject = compose::subject(&report);
    let text = compose::text(&report, &changes, &charts);
    let html = html::render(&report, &changes, &charts);
    Ok(Digest { report, changes, subject, text, html, charts })
}
