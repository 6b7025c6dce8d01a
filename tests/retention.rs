//! Retention from the command line: `soakd prune` on a real database file, then `soakd report`
//! saying where raw rows end and what the rollups hold, and `soakd status`.

use crate::common::{one, soakd};
use rusqlite::{Connection, params};

const DAY: i64 = 86_400_000;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// 40 days of a probe every hour at one backend: every 4th request failed.
fn database(path: &std::path::Path) -> Connection {
    let conn = soakd::store::open(path).unwrap();
    let start = now() - 40 * DAY;
    conn.execute(
        "INSERT INTO runs (id, job, backend, trigger, status, planned_at, started_at, requests_planned, concurrency,
            delay_ms, stream, max_tokens, backend_kind, base_url, owner_pid, owner_started_at)
         VALUES (1, 'probe', 'mlx', 'cron', 'completed', ?1, ?1, 1000, 1, 0, 1, 16, 'openai', 'http://127.0.0.1:1', 1, 1)",
        [start],
    )
    .unwrap();
    for i in 0..(40 * 24) {
        let at = start + i * 3_600_000 + 60_000;
        let ok = i % 4 != 0;
        conn.execute(
            "INSERT INTO requests (run_id, backend, job, worker, seq, intended_at, started_at, outcome, stream,
                concurrency, prompt_name, prompt_chars, max_tokens, ttft_ms, e2e_ms, decode_tps)
             VALUES (1, 'mlx', 'probe', 0, ?1, ?2, ?2, ?3, 1, 1, 'p', 10, 16, ?4, ?4, ?5)",
            params![i, at, if ok { "ok" } else { "connect_refused" }, ok.then_some(100.0), ok.then_some(50.0)],
        )
        .unwrap();
    }
    conn
}

#[test]
fn prune_then_report_says_where_raw_rows_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("soakd.db");
    let conn = database(&path);
    let db = path.to_str().unwrap();

    let (code, out, err) = soakd(&["prune", "--db", db, "--raw-days", "30"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rolled up") && out.contains("requests"), "{out}");
    let raw: i64 = one(&conn, "SELECT count(*) FROM requests");
    let rolled: i64 = one(&conn, "SELECT sum(requests) FROM request_rollups");
    assert_eq!(raw + rolled, 40 * 24, "every request is in exactly one place");
    assert!((30 * 24 - 1..=30 * 24 + 1).contains(&raw), "30 days stay raw: {raw}");
    let (code, again, _) = soakd(&["prune", "--db", db, "--raw-days", "30"]);
    assert_eq!(code, 0);
    assert!(again.contains("nothing older than 30 days to roll up"), "idempotent: {again}");

    let (code, out, err) = soakd(&["report", "--db", db, "--since", "60d", "--no-save"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("were rolled up into hourly aggregates and pruned"), "{out}");
    assert!(out.contains("before it, mlx:") && out.contains("75.0 % ok") && out.contains("connect_refused ×"), "{out}");
    let (code, json, _) = soakd(&["report", "--db", db, "--since", "60d", "--no-save", "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let r = &v["raw_horizon"]["rolled_up"][0];
    assert_eq!(r["backend"], "mlx");
    assert_eq!(r["requests"].as_i64().unwrap() + v["backends"][0]["requests"].as_i64().unwrap(), 40 * 24);
    assert_eq!(r["ttft_mean_ms"], 100.0);
    let (_, recent, _) = soakd(&["report", "--db", db, "--since", "7d", "--no-save"]);
    assert!(!recent.contains("rolled up"), "a window after the horizon needs no note: {recent}");
}

#[test]
fn status_shows_the_database_and_the_last_digest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("soakd.db");
    let mut conn = database(&path);
    let db = path.to_str().unwrap();
    let home = dir.path().join("home");
    let h = home.to_str().unwrap();
    let (code, out, err) = soakd(&["status", "--db", db, "--home", h]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("agent") && out.contains("not installed"), "{out}");
    assert!(out.contains("MiB") && out.contains("mlx: "), "{out}");
    assert!(out.contains("last digest   none sent yet"), "{out}");
    assert!(out.contains("summaries     none yet"), "{out}");
    // The daemon's hourly pass keeps the hours that are over.
    let now_ms = now();
    soakd::store::latency_hours::fill(&mut conn, now_ms, &|| false).unwrap();
    // Through the end of the last hour that is over and had a successful request.
    let until = (now_ms - soakd::store::latency_hours::SETTLE_MS) / 3_600_000 * 3_600_000;
    let through: i64 = conn
        .query_row(
            "SELECT max(started_at / 3600000 * 3600000) + 3600000 FROM requests WHERE outcome = 'ok' AND started_at < ?1",
            [until],
            |r| r.get(0),
        )
        .unwrap();
    let (_, out, _) = soakd(&["status", "--db", db, "--home", h]);
    let line = out.lines().find(|l| l.starts_with("summaries")).unwrap();
    let through = chrono::DateTime::from_timestamp_millis(through).unwrap().format("%Y-%m-%d %H:%M UTC");
    assert!(line.contains(&format!("latency sketches through {through}")), "{line}");
    assert!(line.contains("memory points of 0 settled lives"), "{line}");
    // A digest sent an hour ago.
    conn.execute(
        "INSERT INTO outbox (kind, created_at, subject, envelope_from, envelope_to, message_id, message, status,
             next_attempt_at, sent_at)
         VALUES ('digest', ?1, 's', 'a@b', '[\"c@d\"]', '<m@soakd>', 'x', 'sent', ?1, ?1)",
        [now() - 3_600_000],
    )
    .unwrap();
    let (code, out, _) = soakd(&["status", "--db", db, "--home", h]);
    assert_eq!(code, 0);
    let line = out.lines().find(|l| l.starts_with("last digest")).unwrap();
    assert!(line.contains("60 min ago") || line.contains("59 min ago"), "{out}");
}
