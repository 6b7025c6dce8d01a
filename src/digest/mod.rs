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

/// How a digest is made.
#[derive(Debug, Clone, Copy, Default)]
pub struct How {
    /// Save each log's findings in it: what the next digest compares against.
    pub save: bool,
    /// Build backends side by side, one per core, for a person waiting on `soakd digest` (as
    /// `soakd report` does); the daemon's digest takes one core from the machine it measures.
    pub parallel: bool,
}

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

/// Builds one digest over several logs (a lab's machines): each log's report, changes (against
/// that log's own previous digest) and chart series, then side by side with every backend named
/// `backend @ host` as `report::merge` names them. One log: `build`.
pub fn build_fleet(logs: &mut [(String, Connection)], window: Window, now: i64, how: How) -> anyhow::Result<Digest> {
    if let [(_, conn)] = logs {
        return Ok(build(conn, window, now, how)?);
    }
    let mut built = Vec::new();
    for (label, conn) in logs.iter_mut() {
        let mut report = report_of(conn, window, now, how)?;
        let changes = changes::since_previous_digest(conn, &report.findings)?;
        if how.save {
            report::save_findings(conn, &mut report, now)?;
        }
        let series = series::load(conn, &report)?;
        built.push((label.clone(), report, changes, series));
    }
    let names = report::fleet_names(&built.iter().map(|(label, r, ..)| (label.as_str(), r)).collect::<Vec<_>>());
    let (mut parts, mut changes, mut series) = (Vec::new(), changes::Changes::default(), series::Series::default());
    for ((label, report, mut mine, loaded), names) in built.into_iter().zip(names) {
        mine.rename(&names);
        changes.absorb(mine);
        series.bucket_ms = loaded.bucket_ms;
        series.ttft_bucket_ms = loaded.ttft_bucket_ms;
        series.backends.extend(loaded.backends);
        parts.push((label, report));
    }
    let report = report::merge(parts).ok_or_else(|| anyhow::anyhow!("no log to make a digest from"))?;
    Ok(compose_digest(report, changes, &series))
}

/// Builds the digest for `window`. With `how.save`, the report's findings are saved (as `soakd
/// report` does), so the next digest can say what changed.
pub fn build(conn: &mut Connection, window: Window, now: i64, how: How) -> rusqlite::Result<Digest> {
    let mut report = report_of(conn, window, now, how)?;
    let changes = changes::since_previous_digest(conn, &report.findings)?;
    if how.save {
        report::save_findings(conn, &mut report, now)?;
    }
    let series = series::load(conn, &report)?;
    Ok(compose_digest(report, changes, &series))
}

fn report_of(conn: &Connection, window: Window, now: i64, how: How) -> rusqlite::Result<Report> {
    let options = report::build::Options { parallel: how.parallel, ..Default::default() };
    report::build::build_with(conn, window, &[], now, options)
}

fn compose_digest(report: Report, changes: changes::Changes, series: &series::Series) -> Digest {
    let charts = charts::draw(&report, series);
    let subject = compose::subject(&report);
    let text = compose::text(&report, &changes, &charts);
    let html = html::render(&report, &changes, &charts);
    Digest { report, changes, subject, text, html, charts }
}
