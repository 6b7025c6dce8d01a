//! `soakd status`: is the agent installed and loaded, did its last start fail, when were the
//! last request and the last digest, how big is the database, where does raw history end.

use crate::agent::{self, Paths, launchd, systemd};
use crate::config;
use crate::report::window::utc;
use crate::store::{queries, retention};
use crate::time::now_ms;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(flag: Option<&Path>, db: Option<PathBuf>, home: Option<&Path>) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_flag(home)?;
    let now = now_ms();
    let mut out = Vec::new();
    out.push(("agent", agent_line(&paths, home.is_none())));
    if let Some(f) = agent::last_start_failure(&paths) {
        let times =
            if f.count > 1 { format!(", {} times in a row since {}", f.count, utc(f.first_at)) } else { String::new() };
        out.push((
            "failed start",
            format!(
                "{} ({}){times}, exit {}: {}\n  fix it (`soakd check`); the agent retries on its own every minute",
                utc(f.at),
                ago(now - f.at),
                f.exit_code,
                f.message.trim()
            ),
        ));
    }
    let config = config::load(flag);
    let db = match (db, &config) {
        (Some(db), _) => Some(db),
        (None, Ok(c)) => Some(c.db.clone()),
        (None, Err(e)) => {
            out.push(("config", format!("{e:#}").trim().to_string()));
            None
        }
    };
    if let Ok(c) = &config {
        out.push(("config", c.path.display().to_string()));
    }
    if let Some(db) = db {
        out.extend(database_lines(&db, now, config.as_ref().ok()));
    }
    let width = out.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in out {
        println!("{k:width$}  {}", v.replace('\n', &format!("\n{:width$}", "")));
    }
    Ok(ExitCode::SUCCESS)
}

fn agent_line(paths: &Paths, query: bool) -> String {
    let mut parts = Vec::new();
    let plist = paths.plist();
    if plist.exists() {
        let state = if query && cfg!(target_os = "macos") {
            launchd::loaded().map_or_else(|| "not loaded".to_string(), |s| format!("loaded ({s})"))
        } else {
            "loaded: not asked (not macOS)".to_string()
        };
        parts.push(format!("launchd agent {}: {state}", plist.display()));
    }
    let unit = paths.unit();
    if unit.exists() {
        let state =
            if query { systemd::state().unwrap_or_else(|| "systemctl not found".into()) } else { "not asked".into() };
        parts.push(format!("systemd unit {}: {state}", unit.display()));
    }
    if parts.is_empty() {
        "not installed (`soakd install`, or `soakd install --systemd` on Linux)".to_string()
    } else {
        parts.join("\n")
    }
}

fn database_lines(db: &Path, now: i64, config: Option<&config::Config>) -> Vec<(&'static str, String)> {
    let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let Ok(meta) = std::fs::metadata(db) else {
        return vec![("database", format!("{} does not exist yet (the daemon creates it)", db.display()))];
    };
    let wal = size(PathBuf::from(format!("{}-wal", db.display())));
    let mut out = vec![("database", format!("{}, {} (+ {} write-ahead log)", db.display(), mib(meta.len()), mib(wal)))];
    // Read-only, without migrations: status must not change a database it only looks at.
    let conn = match crate::store::open_read_only(db) {
        Ok(c) => c,
        Err(e) => {
            out.push(("error", format!("cannot read it: {e}")));
            return out;
        }
    };
    let state = queries::log_state(&conn);
    // A log older than the host table (migration 0007) has none until soakd next opens it.
    if let Some(h) =
        queries::has_table(&conn, "host").then(|| crate::store::host::latest(&conn).ok().flatten()).flatten()
    {
        let parts: Vec<String> =
            [h.model, h.chip, h.memory_bytes.map(|b| format!("{} GiB", b >> 30)), h.os].into_iter().flatten().collect();
        out.push(("machine", format!("{} ({}), soakd {}", h.hostname, parts.join(", "), h.soakd_version)));
    }
    out.push((
        "last request",
        match state.last_request {
            Some((at, backend, outcome)) => format!("{} ({}), {backend}: {outcome}", utc(at), ago(now - at)),
            None => "none yet".to_string(),
        },
    ));
    out.push((
        "last digest",
        match state.last_mail_sent {
            Some(Some(at)) => format!("{} ({})", utc(at), ago(now - at)),
            Some(None) => "none sent yet".to_string(),
            None => "none (this database has no outbox yet)".to_string(),
        },
    ));
    if let Some(at) = state.daemon_started {
        let stopped = state.daemon_stopped.filter(|s| *s >= at);
        let tail = stopped.map_or(String::new(), |s| format!(", stopped {}", utc(s)));
        out.push(("daemon", format!("last started {} ({}){tail}", utc(at), ago(now - at))));
    }
    let keep = config.and_then(|c| c.retention.raw_days);
    let horizon = if queries::has_table(&conn, "retention") { retention::horizon(&conn).ok().flatten() } else { None };
    out.push((
        "retention",
        match (keep, horizon) {
            (Some(d), Some(h)) => format!("raw rows kept {d} days; only hourly rollups before {}", utc(h)),
            (Some(d), None) => format!("raw rows kept {d} days; nothing pruned yet"),
            (None, Some(h)) => format!("off; hourly rollups only before {}", utc(h)),
            (None, None) => "off: raw rows are kept forever".to_string(),
        },
    ));
    if queries::has_table(&conn, "life_points") {
        out.push(("summaries", summaries(&conn)));
    }
    out
}

/// What the daemon has kept ahead of a long report (`store::summaries`).
fn summaries(conn: &rusqlite::Connection) -> String {
    let through: Option<i64> =
        conn.query_row("SELECT max(hour_at) FROM latency_hours", [], |r| r.get(0)).ok().flatten();
    let lives: i64 = conn.query_row("SELECT count(*) FROM life_points", [], |r| r.get(0)).unwrap_or(0);
    match through {
        None if lives == 0 => "none yet (the daemon keeps them every hour)".to_string(),
        _ => format!(
            "latency sketches through {}; memory points of {lives} settled lives",
            through.map_or("no hour yet".to_string(), |h| utc(h + crate::store::retention::HOUR_MS))
        ),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

fn ago(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..120 => format!("{s} s ago"),
        120..7200 => format!("{} min ago", s / 60),
        7200..172_800 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}
