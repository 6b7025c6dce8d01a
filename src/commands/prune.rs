//! `soakd prune`: retention by hand — roll raw rows older than `[retention] raw_days` (or
//! `--raw-days`) up into hourly aggregates and delete them. The daemon does the same daily.

use crate::config;
use crate::store::{self, retention};
use crate::time::now_ms;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(flag: Option<&Path>, db: Option<PathBuf>, raw_days: Option<f64>) -> anyhow::Result<ExitCode> {
    let (db, configured) = match db {
        Some(db) => (db, None),
        None => {
            let c = config::load(flag).context("finding the database (or name one with --db PATH)")?;
            (c.db, c.retention.raw_days)
        }
    };
    let Some(days) = raw_days.or(configured).filter(|d| *d > 0.0) else {
        println!("retention is off ([retention] raw_days = 0): nothing pruned; give --raw-days N to prune anyway");
        return Ok(ExitCode::SUCCESS);
    };
    let mut conn = store::open_existing(&db)?;
    let done = retention::prune(&mut conn, now_ms(), days).with_context(|| format!("pruning {}", db.display()))?;
    if done.hours == 0 {
        println!("{}: nothing older than {days} days to roll up", db.display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: rolled up {} requests and {} memory samples from {} hours before {}{}",
        db.display(),
        done.requests,
        done.samples,
        done.hours,
        crate::report::window::utc(done.horizon_at),
        if done.hours_kept_in_flight > 0 {
            format!(" ({} backend-hours kept raw: a request in them is still in flight)", done.hours_kept_in_flight)
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
