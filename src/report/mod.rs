//! `soakd report`: the analysis of a window of the log, as a terminal table, Markdown (the seed
//! report's layout, filled in), JSON (a stable interface) or CSV (one row per backend).
//!
//! `build` reads the store and runs the analysis; `compare` makes the comparison table and
//! rankings; `findings` draws the conclusions worth tracking; the renderers only format.

pub mod build;
pub mod compare;
mod csv_out;
pub mod findings;
mod markdown;
pub mod model;
mod pass;
pub mod table;
mod terminal;
pub mod window;

pub use model::Report;
pub use window::Window;

use std::collections::BTreeMap;

/// How to print a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Markdown,
    Json,
    Csv,
}

/// Saves the report's findings in the log, each marked `new` or `ongoing` against the previous
/// saved report, and adds the ones that report had and this one does not, as `resolved`: the
/// step `soakd report --save`, `soakd demo` and the digest share.
pub fn save_findings(conn: &mut rusqlite::Connection, report: &mut Report, now: i64) -> rusqlite::Result<()> {
    let window = (report.window.from, report.window.to);
    let resolved = crate::store::findings::save(conn, now, window, &mut report.findings)?;
    report.findings.extend(resolved);
    Ok(())
}

/// One report over several logs (a lab's machines): each log's report side by side, a backend
/// named `backend @ hostname` (the log's file name when it has no `host` row), the comparison
/// and rankings over all of them. Leaks and crash patterns stay each log's own; so do the
/// findings (their queries run against their own log); API overhead compares backends within a
/// log only. The window is the first report's (all are built for the same one).
pub fn merge(parts: Vec<(String, Report)>) -> Option<Report> {
    if parts.len() == 1 {
        return parts.into_iter().next().map(|(_, r)| r);
    }
    let names = fleet_names(&parts.iter().map(|(label, r)| (label.as_str(), r)).collect::<Vec<_>>());
    let mut merged: Option<Report> = None;
    for ((_, mut report), renamed) in parts.into_iter().zip(names) {
        let rename = |name: &mut String| {
            if let Some(new) = renamed.get(name.as_str()) {
                *name = new.clone();
            }
        };
        report.backends.iter_mut().for_each(|b| rename(&mut b.name));
        report.findings.iter_mut().filter_map(|f| f.backend.as_mut()).for_each(rename);
        report.api_overhead.iter_mut().for_each(|o| {
            rename(&mut o.a);
            rename(&mut o.b);
        });
        match merged.as_mut() {
            None => merged = Some(report),
            Some(m) => {
                m.backends.extend(report.backends);
                m.findings.extend(report.findings);
                m.api_overhead.extend(report.api_overhead);
                m.raw_horizon = m.raw_horizon.take().or(report.raw_horizon);
            }
        }
    }
    let mut merged = merged?;
    merged.comparison = compare::table(&merged.backends);
    merged.rankings = compare::rankings(&merged.backends);
    Some(merged)
}

/// What `merge` calls each log's backends: `backend @ hostname`, or `backend @ label` (the log's
/// file name) when the log has no `host` row or shares its hostname with another log given (two
/// periods of one machine, two Macs both called "MacBook-Pro"), so no two backends share a name.
pub fn fleet_names(parts: &[(&str, &Report)]) -> Vec<BTreeMap<String, String>> {
    let host = |r: &Report| r.backends.iter().find_map(|b| b.host.as_ref()).map(|h| h.hostname.clone());
    let hosts: Vec<Option<String>> = parts.iter().map(|(_, r)| host(r)).collect();
    parts
        .iter()
        .zip(&hosts)
        .map(|((label, report), own)| {
            let shared = own.is_some() && hosts.iter().filter(|h| *h == own).count() > 1;
            let place = match own {
                Some(h) if !shared => h.as_str(),
                _ => label,
            };
            report.backends.iter().map(|b| (b.name.clone(), format!("{} @ {place}", b.name))).collect()
        })
        .collect()
}

/// A log's label in a fleet report when it has no `host` row: its file name without `.db`.
pub fn log_label(db: &std::path::Path) -> String {
    db.file_stem().map_or_else(|| db.display().to_string(), |s| s.to_string_lossy().into_owned())
}

pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Table => terminal::render(report),
        Format::Markdown => markdown::render(report),
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")),
        Format::Csv => csv_out::render(report),
    }
}
