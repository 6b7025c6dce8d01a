//! `soakd report`: analyse a window of the log and print it; the findings are saved so the next
//! report (and the nightly digest) can tell new from ongoing and resolved.

use crate::config;
use crate::report::{self, Format, Window};
use crate::store;
use crate::time::now_ms;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub struct Args {
    /// The logs (none: the config's); a pattern with `*` or `?` names every file it matches.
    pub db: Vec<PathBuf>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub backends: Vec<String>,
    pub format: Format,
    pub save: bool,
    pub include_contended: bool,
}

pub fn run(flag: Option<&Path>, args: Args) -> anyhow::Result<ExitCode> {
    let dbs = match args.db.is_empty() {
        true => vec![config::load(flag).context("finding the database (or name one with --db PATH)")?.db],
        false => super::expand_dbs(&args.db)?,
    };
    let window = Window::parse(args.since.as_deref(), args.until.as_deref(), chrono::Local::now())
        .map_err(anyhow::Error::msg)?;
    let now = now_ms();
    let options = report::build::Options { include_contended: args.include_contended, parallel: true };
    let mut parts = Vec::new();
    for db in &dbs {
        let mut conn = store::open_existing(db)?;
        let mut report = report::build::build_with(&conn, window, &args.backends, now, options)
            .with_context(|| format!("reading {}", db.display()))?;
        if args.save {
            report::save_findings(&mut conn, &mut report, now)
                .with_context(|| format!("saving findings to {}", db.display()))?;
        }
        parts.push((report::log_label(db), report));
    }
    let report = report::merge(parts).context("no database to report on")?;
    if !args.backends.is_empty() && report.backends.is_empty() {
        let names: Vec<String> = dbs.iter().map(|d| d.display().to_string()).collect();
        anyhow::bail!("no requests from {} in this window of {}", args.backends.join(", "), names.join(", "));
    }
    print!("{}", report::render(&report, args.format));
    Ok(ExitCode::SUCCESS)
}
