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
    pub db: Option<PathBuf>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub backends: Vec<String>,
    pub format: Format,
    pub save: bool,
    pub include_contended: bool,
}

pub fn run(flag: Option<&Path>, args: Args) -> anyhow::Result<ExitCode> {
    let db = match args.db {
        Some(db) => db,
        None => config::load(flag).context("finding the database (or name one with --db PATH)")?.db,
    };
    let window = Window::parse(args.since.as_deref(), args.until.as_deref(), chrono::Local::now())
        .map_err(anyhow::Error::msg)?;
    let mut conn = store::open_existing(&db)?;
    let now = now_ms();
    let options = report::build::Options { include_contended: args.include_contended };
    let mut report = report::build::build_with(&conn, window, &args.backends, now, options)
        .with_context(|| format!("reading {}", db.display()))?;
    if !args.backends.is_empty() && report.backends.is_empty() {
        anyhow::bail!("no requests from {} in this window of {}", args.backends.join(", "), db.display());
    }
    if args.save {
        report::save_findings(&mut conn, &mut report, now)
            .with_context(|| format!("saving findings to {}", db.display()))?;
    }
    print!("{}", report::render(&report, args.format));
    Ok(ExitCode::SUCCESS)
}
