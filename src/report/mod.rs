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

pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Table => terminal::render(report),
        Format::Markdown => markdown::render(report),
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")),
        Format::Csv => csv_out::render(report),
    }
}
