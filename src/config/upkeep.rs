//! The config's housekeeping sections: `[log]` (daily-rotated log files, how many are kept) and
//! `[retention]` (how long raw rows are kept before they are rolled up into hourly aggregates).

use crate::fields::{Fields, Place, Problem};
use std::path::{Path, PathBuf};

/// `[log]`: where the daemon writes its daily log files.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// The folder. `None`: the agent's default (`~/Library/Logs/soakd` on macOS,
    /// `~/.local/state/soakd/logs` elsewhere) when soakd runs as an installed agent
    /// (`SOAKD_AGENT` set), else no files (a `soakd run` in a terminal logs to it).
    pub dir: Option<PathBuf>,
    /// Daily files kept; 0: no log files, standard error only.
    pub keep_days: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { dir: None, keep_days: 14 }
    }
}

/// `[retention]`: raw rows older than `raw_days` are rolled up hourly, then deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionConfig {
    /// `None`: keep raw rows forever.
    pub raw_days: Option<f64>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { raw_days: Some(90.0) }
    }
}

/// Parses `[log]`; relative `dir` resolves against `base` (the config file's folder).
pub fn parse_log(table: toml::Table, path: &Path, base: &Path, problems: &mut Vec<Problem>) -> LogConfig {
    let mut f = Fields::new(table, Place::entry(path, "[log]".into()), problems);
    let mut c = LogConfig::default();
    if let Some(dir) = f.take::<String>("dir") {
        if dir.trim().is_empty() {
            f.problem("dir", "give a folder, or set keep_days = 0 for no log files");
        } else {
            c.dir = Some(if Path::new(&dir).is_absolute() { PathBuf::from(dir) } else { base.join(dir) });
        }
    }
    if let Some(k) = f.take::<i64>("keep_days") {
        if (0..=3650).contains(&k) {
            c.keep_days = k as u32;
        } else {
            f.problem("keep_days", format!("must be between 0 (no log files) and 3650, not {k}"));
        }
    }
    f.finish();
    c
}

/// Parses `[retention]`.
pub fn parse_retention(table: toml::Table, path: &Path, problems: &mut Vec<Problem>) -> RetentionConfig {
    let mut f = Fields::new(table, Place::entry(path, "[retention]".into()), problems);
    let mut c = RetentionConfig::default();
    if let Some(v) = f.take_value("raw_days") {
        match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
            Some(0.0) => c.raw_days = None,
            Some(d) if (1.0..=36_500.0).contains(&d) => c.raw_days = Some(d),
            _ => f.problem(
                "raw_days",
                format!("must be a number of days from 1 to 36500, or 0 to keep raw rows forever (found {v})"),
            ),
        }
    }
    f.finish();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        s.parse().unwrap()
    }

    #[test]
    fn log_and_retention_values() {
        let mut p = Vec::new();
        let log = parse_log(table("dir = \"logs\"\nkeep_days = 3"), Path::new("/c/c.toml"), Path::new("/c"), &mut p);
        assert_eq!(log, LogConfig { dir: Some(PathBuf::from("/c/logs")), keep_days: 3 });
        assert_eq!(parse_retention(table("raw_days = 30"), Path::new("c.toml"), &mut p).raw_days, Some(30.0));
        assert_eq!(parse_retention(table("raw_days = 0"), Path::new("c.toml"), &mut p).raw_days, None);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn mistakes_name_the_section_and_field() {
        let mut p = Vec::new();
        parse_log(table("keep_days = -1\nrotate = 1"), Path::new("c.toml"), Path::new(""), &mut p);
        parse_retention(table("raw_days = \"a month\""), Path::new("c.toml"), &mut p);
        let all: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert!(all[0].contains("c.toml: [log]: field `keep_days`: must be between 0"), "{all:?}");
        assert!(all[1].contains("[log]: field `rotate`: unknown field"), "{all:?}");
        assert!(all[2].contains("[retention]: field `raw_days`: must be a number of days"), "{all:?}");
    }
}
