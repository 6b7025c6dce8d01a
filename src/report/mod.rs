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
pub mod table;
mod terminal;
pub mod window;

pub use model::Report;
pub use window::Window;

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
pub fn merge(mut parts: Vec<(String, Report)>) -> Option<Report> {
    if parts.len() <= 1 {
        return parts.pop().map(|(_, r)| r);
    }
    let (_, first) = &parts[0];
    let mut merged = Report {
        backends: Vec::new(),
        comparison: Vec::new(),
        api_overhead: Vec::new(),
        findings: Vec::new(),
        raw_horizon: None,
        ..first.clone()
    };
    for (label, mut report) in parts {
        let host_name = |b: &model::BackendReport| b.host.as_ref().map_or(label.clone(), |h| h.hostname.clone());
        let renames: Vec<(String, String)> =
            report.backends.iter().map(|b| (b.name.clone(), format!("{} @ {}", b.name, host_name(b)))).collect();
        for b in &mut report.backends {
            let host = host_name(b);
            b.name = format!("{} @ {host}", b.name);
        }
        for f in &mut report.findings {
            if let Some(new) =
                renames.iter().find(|(old, _)| f.backend.as_deref() == Some(old.as_str())).map(|(_, n)| n)
            {
                f.backend = Some(new.clone());
            }
        }
        merged.backends.extend(report.backends);
        merged.findings.extend(report.findings);
        merged.api_overhead.extend(report.api_overhead);
        merged.raw_horizon = merged.raw_horizon.or(report.raw_horizon);
    }
    merged.comparison = compare::table(&merged.backends);
    merged.rankings = compare::rankings(&merged.backends);
    Some(merged)
}

pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Table => terminal::render(report),
        Format::Markdown => markdown::render(report),
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")),
        Format::Csv => csv_out::render(report),
    }
}
