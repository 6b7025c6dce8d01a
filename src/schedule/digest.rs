//! When the daemon makes the digest: a `[digest]` table in one of the `schedules/*.toml` files
//! (`cron`, default 07:00 local time; `enabled`), read with the jobs (`parse`). Without one, and
//! with `[smtp]` configured, the daemon still makes it at 07:00.

use super::CronExpr;
use crate::fields::{Fields, Place, Problem};
use std::path::{Path, PathBuf};

pub const DEFAULT_CRON: &str = "0 0 7 * * *";

#[derive(Debug, Clone)]
pub struct DigestSchedule {
    pub cron: CronExpr,
    pub enabled: bool,
    /// The file it came from (None: the default).
    pub file: Option<PathBuf>,
}

impl Default for DigestSchedule {
    fn default() -> Self {
        DigestSchedule { cron: CronExpr::parse(DEFAULT_CRON).expect("a valid default cron"), enabled: true, file: None }
    }
}

/// Validates a schedule file's `[digest]` table.
pub(super) fn parse_table(table: toml::Table, file: &Path, problems: &mut Vec<Problem>) -> Option<DigestSchedule> {
    let mut f = Fields::new(table, Place::entry(file, "[digest]".into()), problems);
    let cron = match f.take::<String>("cron") {
        Some(c) => CronExpr::parse(&c).map_err(|m| f.problem("cron", m)).ok(),
        None => CronExpr::parse(DEFAULT_CRON).ok(),
    };
    let enabled = f.take::<bool>("enabled").unwrap_or(true);
    f.finish();
    Some(DigestSchedule { cron: cron?, enabled, file: Some(file.to_path_buf()) })
}
