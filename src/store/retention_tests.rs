//! Retention on a real SQLite file: rollups equal the raw aggregates, old raw rows go, recent
//! and in-flight rows stay, and a rerun changes nothing.

use super::*;
use rusqlite::Connection;

const NOW: i64 = 1_780_000_000_000; // 2026-05-28
const DAY: i64 = 86_400_000;

fn run(conn: &Connection, id: i64, status: &str, at: i64) {
    conn.execute(
        "INSERT INTO runs (id, job, backend, trigger, status, planned_at, started_at, requests_planned, concurrency,
            delay_ms, stream, max_tokens, backend_kind, base_url, owner_pid, owner_started_at)
         VALUES (?1, 'probe', 'a', 'cron', ?2, ?3, ?3, 10, 1, 0, 1, 16, 'openai', 'http://127.0.0.1:1', 1, 1)",
        params![id, status, at],
    )
    .unwrap();
}

fn request(conn: &Connection, run_id: i64, backend: &str, at: i64, outcome: &str, ttft: Option<f64>, tps: Option<f64>) {
    conn.execute(
        "INSERT INTO requests (run_id, backend, job, worker, seq, intended_at, started_at, outcome, stream,
            concurrency, prompt_name, prompt_chars, max_tokens, ttft_ms, e2e_ms, decode_tps, prompt_tokens,
            completion_tokens)
         VALUES (?1, ?2, 'probe', 0, 0, ?3, ?3, ?4, 1, 1, 'p', 10, 16, ?5, ?5 * 3, ?6, 5, 16)",
        params![run_id, backend, at, outcome, ttft, tps],
    )
    .unwrap();
}

fn sample(conn: &Connection, at: i64, rss: i64, in_flight: i64) {
    conn.execute(
        "INSERT INTO memory_samples (backend, pid, proc_started_at, taken_at, phase, in_flight, rss_bytes)
         VALUES ('a', 42, 1000, ?1, 'idle', ?3, ?2)",
        params![at, rss, in_flight],
    )
    .unwrap();
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn dump(conn: &Connection, table: &str) -> Vec<String> {
    let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2, 3, 4")).unwrap();
    let cols = stmt.column_count();
    stmt.query_map([], |r| Ok((0..cols).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect::<Vec<_>>().join("|")))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A database 40 days long: an old complete hour, an old hour with a request still in flight,
/// and recent rows.
fn fixture() -> (tempfile::TempDir, Connection, i64, i64) {
    let dir = tempfile::tempdir().unwrap();
    let conn = crate::store::open(&dir.path().join("soakd.db")).unwrap();
    let old_hour = cutoff(NOW - 40 * DAY, 0.0);
    let busy_hour = old_hour + 5 * HOUR_MS;
    run(&conn, 1, "completed", old_hour);
    run(&conn, 2, "running", busy_hour);
    run(&conn, 3, "completed", NOW - HOUR_MS);
    for i in 0..20 {
        let at = old_hour + i * 60_000;
        let (outcome, ttft, tps) = match i % 5 {
            0 => ("connect_refused", None, None),
            1 => ("server_reported_crash", None, None),
            _ => ("ok", Some(100.0 + i as f64 * 7.0), Some(40.0 + i as f64)),
        };
        request(&conn, 1, if i < 15 { "a" } else { "b" }, at, outcome, ttft, tps);
        sample(&conn, at, 1_000_000 + i * 1000, i % 2);
    }
    request(&conn, 1, "a", old_hour + 30_000, "cancelled", None, None);
    request(&conn, 2, "a", busy_hour + 1000, "ok", Some(5.0), Some(5.0));
    request(&conn, 2, "a", busy_hour + 2000, "in_flight", None, None);
    for i in 0..7 {
        request(&conn, 3, "a", NOW - HOUR_MS + i * 1000, "ok", Some(50.0), Some(60.0));
        sample(&conn, NOW - HOUR_MS + i * 1000, 2_000_000, 0);
    }
    (dir, conn, old_hour, busy_hour)
}

#[test]
fn rollups_equal_the_raw_aggregates_and_old_rows_go() {
    let (_dir, mut conn, old_hour, busy_hour) = fixture();
    // The expected aggregates, straight from the raw rows before they go.
    let expected: Vec<(String, i64, i64, f64, i64, f64)> = conn
        .prepare(
            "SELECT backend, sum(outcome NOT IN ('cancelled', 'interrupted')), sum(outcome = 'ok'),
                    total(CASE WHEN outcome = 'ok' THEN ttft_ms END), sum(outcome = 'server_reported_crash'),
                    total(CASE WHEN outcome = 'ok' THEN decode_tps END)
             FROM requests WHERE started_at >= ?1 AND started_at < ?2 GROUP BY backend ORDER BY backend",
        )
        .unwrap()
        .query_map(params![old_hour, old_hour + HOUR_MS], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let ttft_a: Vec<f64> = conn
        .prepare("SELECT ttft_ms FROM requests WHERE backend = 'a' AND outcome = 'ok' AND started_at < ?1")
        .unwrap()
        .query_map([old_hour + HOUR_MS], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let hourly_sql = format!(
        "SELECT requests * 1000 + ok FROM hourly WHERE backend = 'a' AND hour_utc = strftime('%Y-%m-%d %H:00', {old_hour} / 1000, 'unixepoch')"
    );
    let hourly_before = count(&conn, &hourly_sql);
    let recent_before = count(&conn, &format!("SELECT count(*) FROM requests WHERE started_at >= {}", NOW - DAY));

    crate::store::latency_hours::fill(&mut conn, NOW, &|| false).unwrap();
    let sketched = |conn: &Connection, at: i64| {
        count(conn, &format!("SELECT count(*) FROM latency_hours WHERE hour_at >= {at} AND hour_at < {}", at + HOUR_MS))
    };
    assert_eq!(sketched(&conn, old_hour), 2, "the old hour's sketches, of backends a and b");
    let recent_sketches = count(&conn, &format!("SELECT count(*) FROM latency_hours WHERE hour_at >= {}", NOW - DAY));
    // The life that began in the old hour, kept once it is quiet an hour.
    assert_eq!(crate::store::life_points::fill(&conn, NOW + 2 * HOUR_MS, 300, &|| false).unwrap(), 1);

    let done = prune(&mut conn, NOW, 30.0).unwrap();
    assert_eq!(done.horizon_at, cutoff(NOW, 30.0));
    assert_eq!(done.requests, 21, "the old hour's 20 requests and its cancelled one");
    assert_eq!(sketched(&conn, old_hour), 0, "its sketches go with its rows");
    assert_eq!(count(&conn, "SELECT count(*) FROM life_points"), 0, "the life's points go with its first samples");
    assert_eq!(
        count(&conn, &format!("SELECT count(*) FROM latency_hours WHERE hour_at >= {}", NOW - DAY)),
        recent_sketches
    );
    assert_eq!(done.hours_kept_in_flight, 1);
    assert_eq!(done.samples, 20);

    let got: Vec<(String, i64, i64, f64, String, f64)> = conn
        .prepare(
            "SELECT backend, requests, ok, ttft_sum_ms, failures, decode_tps_sum FROM request_rollups
             WHERE hour_at = ?1 ORDER BY backend",
        )
        .unwrap()
        .query_map([old_hour], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!((&g.0, g.1, g.2), (&e.0, e.1, e.2));
        assert!((g.3 - e.3).abs() < 1e-9 && (g.5 - e.5).abs() < 1e-9, "{g:?} vs {e:?}");
        let failures: BTreeMap<String, i64> = serde_json::from_str(&g.4).unwrap();
        assert_eq!(failures.get("server_reported_crash").copied().unwrap_or(0), e.4);
        assert_eq!(failures.values().sum::<i64>(), e.1 - e.2, "failures by outcome add up");
    }
    let (p50, not_counted): (f64, i64) = conn
        .query_row("SELECT ttft_p50_ms, not_counted FROM request_rollups WHERE backend = 'a'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(Some(p50), crate::measure::stats::median(ttft_a));
    assert_eq!(not_counted, 1);
    let (max_rss, n): (i64, i64) = conn
        .query_row("SELECT rss_max_bytes, samples FROM memory_rollups WHERE hour_at = ?1", [old_hour], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((max_rss, n), (1_019_000, 20));

    assert_eq!(count(&conn, &format!("SELECT count(*) FROM requests WHERE started_at < {}", old_hour + HOUR_MS)), 0);
    assert_eq!(
        count(
            &conn,
            &format!(
                "SELECT count(*) FROM requests WHERE started_at >= {busy_hour} AND started_at < {}",
                busy_hour + HOUR_MS
            )
        ),
        2,
        "the hour with a request in flight is kept whole"
    );
    assert_eq!(
        count(&conn, &format!("SELECT count(*) FROM requests WHERE started_at >= {}", NOW - DAY)),
        recent_before
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM memory_samples"), 7);
    assert_eq!(horizon(&conn).unwrap(), Some(cutoff(NOW, 30.0)));
    assert_eq!(count(&conn, "SELECT count(*) FROM hourly_history WHERE source = 'rollup'"), 2);
    let history = count(&conn, &hourly_sql.replace("FROM hourly", "FROM hourly_history"));
    assert_eq!(history, hourly_before, "hourly_history counts a rolled-up hour as `hourly` counted it raw");
}

#[test]
fn a_rerun_changes_nothing_and_a_finished_hour_is_rolled_later() {
    let (_dir, mut conn, _old, busy_hour) = fixture();
    prune(&mut conn, NOW, 30.0).unwrap();
    let rollups = dump(&conn, "request_rollups");
    let memory = dump(&conn, "memory_rollups");
    let again = prune(&mut conn, NOW, 30.0).unwrap();
    assert_eq!((again.requests, again.samples), (0, 0));
    assert_eq!(dump(&conn, "request_rollups"), rollups);
    assert_eq!(dump(&conn, "memory_rollups"), memory);

    // The in-flight request ends; the next pass rolls its hour.
    conn.execute("UPDATE requests SET outcome = 'ok', ttft_ms = 7.0 WHERE outcome = 'in_flight'", []).unwrap();
    conn.execute("UPDATE runs SET status = 'completed' WHERE id = 2", []).unwrap();
    let later = prune(&mut conn, NOW, 30.0).unwrap();
    assert_eq!(later.requests, 2);
    let (n, ok, sum): (i64, i64, f64) = conn
        .query_row("SELECT requests, ok, ttft_sum_ms FROM request_rollups WHERE hour_at = ?1", [busy_hour], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((n, ok, sum), (2, 2, 12.0));
}

#[test]
fn cutoff_is_a_whole_utc_hour() {
    let c = cutoff(NOW + 1234, 1.5);
    assert_eq!(c % HOUR_MS, 0);
    assert!(c <= NOW - (1.5 * 86_400_000.0) as i64 && c > NOW - (1.5 * 86_400_000.0) as i64 - HOUR_MS);
}

#[test]
fn a_stopped_pass_changes_nothing_and_the_next_goes_on() {
    let (_dir, mut conn, _old, _busy) = fixture();
    let stopped = prune_until(&mut conn, NOW, 30.0, &|| true).unwrap();
    assert_eq!((stopped.hours, stopped.requests), (0, 0));
    assert_eq!(count(&conn, "SELECT count(*) FROM request_rollups"), 0);
    assert_eq!(horizon(&conn).unwrap(), None);
    assert_eq!(prune(&mut conn, NOW, 30.0).unwrap().requests, 21);
}

#[test]
fn raw_rows_arriving_for_a_rolled_up_hour_are_added_to_it() {
    let (_dir, mut conn, old_hour, _busy) = fixture();
    prune(&mut conn, NOW, 30.0).unwrap();
    let before: (i64, i64, f64, String) = conn
        .query_row(
            "SELECT requests, ok, ttft_sum_ms, failures FROM request_rollups WHERE backend = 'a' AND hour_at = ?1",
            [old_hour],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    // A request of that hour recorded late (e.g. by a soakd whose writer lagged).
    request(&conn, 1, "a", old_hour + 59 * 60_000, "ok", Some(10.0), Some(1.0));
    request(&conn, 1, "a", old_hour + 59 * 60_000, "server_reported_crash", None, None);
    let again = prune(&mut conn, NOW, 30.0).unwrap();
    assert_eq!(again.requests, 2);
    let (n, ok, sum, failures): (i64, i64, f64, String) = conn
        .query_row(
            "SELECT requests, ok, ttft_sum_ms, failures FROM request_rollups WHERE backend = 'a' AND hour_at = ?1",
            [old_hour],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((n, ok, sum), (before.0 + 2, before.1 + 1, before.2 + 10.0));
    let crashes = |json: &str| -> i64 {
        serde_json::from_str::<serde_json::Value>(json).unwrap()["server_reported_crash"].as_i64().unwrap()
    };
    assert_eq!(crashes(&failures), crashes(&before.3) + 1, "{failures}");
    assert_eq!(
        count(&conn, "SELECT count(*) FROM request_rollups WHERE backend = 'a'"),
        count(&conn, "SELECT count(DISTINCT hour_at) FROM request_rollups WHERE backend = 'a'")
    );
}
