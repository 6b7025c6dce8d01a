//! When the daemon makes the digest: a `[digest]` table in one of the `schedules/*.toml` files
//! (`cron`, default 07:00 local time; `enabled`). Without one, and with `[smtp]` configured, the
//! daemon still makes it at 07:00.

use crate::fields::{Fields, Place, Problem, Problems};
use crate::schedule::CronExpr;
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
pub fn parse_table(table: toml::Table, file: &Path, problems: &mut Vec<Problem>) -> Option<DigestSchedule> {
    let mut f = Fields::new(table, Place::entry(file, "[digest]".into()), problems);
    let cron = match f.take::<String>("cron") {
        Some(c) => CronExpr::parse(&c).map_err(|m| f.problem("cron", m)).ok(),
        None => CronExpr::parse(DEFAULT_CRON).ok(),
    };
    let enabled = f.take::<bool>("enabled").unwrap_or(true);
    f.finish();
    Some(DigestSchedule { cron: cron?, enabled, file: Some(file.to_path_buf()) })
}

/// The digest's schedule from the folder's files (the default when none has a `[digest]`).
pub fn load(dir: &Path) -> Result<DigestSchedule, Problems> {
    let mut found: Option<DigestSchedule> = None;
    let mut problems = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|e| {
            e.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect()
        })
        .unwrap_or_default();
    files.sort();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let Ok(mut table) = text.parse::<toml::Table>() else { continue };
        let Some(toml::Value::Table(t)) = table.remove("digest") else { continue };
        if let Some(first) = &found {
            problems.push(Place::entry(&file, "[digest]".into()).problem(
                None,
                format!(
                    "{} already schedules the digest; keep one [digest] table",
                    first.file.as_deref().unwrap_or(dir).display()
                ),
            ));
            continue;
        }
        found = parse_table(t, &file, &mut problems);
    }
    if problems.is_empty() { Ok(found.unwrap_or_default()) } else { Err(Problems(problems)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_table_and_the_default() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap().cron.written, DEFAULT_CRON);
        std::fs::write(dir.path().join("digest.toml"), "[digest]\ncron = \"0 30 6 * * *\"\n").unwrap();
        let s = load(dir.path()).unwrap();
        assert_eq!(s.cron.written, "0 30 6 * * *");
        std::fs::write(dir.path().join("other.toml"), "[digest]\ncron = \"bad\"\n").unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("already schedules the digest"), "{e}");
    }
}
