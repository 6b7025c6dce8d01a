//! The reads behind the daemon's `/metrics`: every finished request's numbers (the whole log
//! when the daemon starts, then the rows each commit finished), restarts per backend, and each
//! backend's latest memory sample. Only the columns the counters and histograms need.

use crate::measure::EventKind;
use crate::measure::outcome::IN_FLIGHT;
use rusqlite::{Connection, Row};

/// One finished request, as `/metrics` counts it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub backend: String,
    pub job: String,
    /// As stored (`Outcome::as_str`).
    pub outcome: String,
    pub ttft_ms: Option<f64>,
    pub first_content_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub decode_tps: Option<f64>,
}

const COLUMNS: &str =
    "backend, job, outcome, ttft_ms, first_content_ms, e2e_ms, prompt_tokens, completion_tokens, decode_tps";

fn finished(r: &Row<'_>) -> rusqlite::Result<Finished> {
    Ok(Finished {
        backend: r.get(0)?,
        job: r.get(1)?,
        outcome: r.get(2)?,
        ttft_ms: r.get(3)?,
        first_content_ms: r.get(4)?,
        e2e_ms: r.get(5)?,
        prompt_tokens: r.get(6)?,
        completion_tokens: r.get(7)?,
        decode_tps: r.get(8)?,
    })
}

/// Every finished request in the log, oldest first (one pass, nothing kept).
pub fn each_finished(conn: &Connection, mut f: impl FnMut(Finished)) -> rusqlite::Result<()> {
    let mut stmt =
        conn.prepare(&format!("SELECT {COLUMNS} FROM requests WHERE outcome <> '{IN_FLIGHT}' ORDER BY id"))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        f(finished(r)?);
    }
    Ok(())
}

/// The requests with these row ids, oldest first.
pub fn finished_by_id(conn: &Connection, ids: &[i64]) -> rusqlite::Result<Vec<Finished>> {
    let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM requests WHERE id IN (SELECT value FROM json_each(?1)) AND outcome <> '{IN_FLIGHT}' ORDER BY id"
    ))?
    .query_map([ids], finished)?
    .collect()
}

/// `restart` events per backend.
pub fn restarts(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    conn.prepare(&format!(
        "SELECT backend, count(*) FROM events WHERE kind = '{}' AND backend IS NOT NULL GROUP BY backend",
        EventKind::Restart.as_str()
    ))?
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// A backend's latest memory sample that found its process.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    pub backend: String,
    pub rss_bytes: Option<i64>,
    pub footprint_bytes: Option<i64>,
}

/// Each backend's latest memory sample that found its process.
pub fn latest_memory(conn: &Connection) -> rusqlite::Result<Vec<Memory>> {
    conn.prepare(
        "SELECT m.backend, m.rss_bytes, m.footprint_bytes FROM memory_samples m
         JOIN (SELECT max(id) AS id FROM memory_samples WHERE pid IS NOT NULL GROUP BY backend) latest ON latest.id = m.id",
    )?
    .query_map([], |r| Ok(Memory { backend: r.get(0)?, rss_bytes: r.get(1)?, footprint_bytes: r.get(2)? }))?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_finished_requests_restarts_and_the_latest_memory() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO runs (id, job, backend, trigger, status, planned_at, started_at, requests_planned, concurrency,
                               delay_ms, stream, max_tokens, backend_kind, base_url, owner_pid, owner_started_at)
             VALUES (1, 'j', 'a', 'cron', 'running', 0, 0, 3, 1, 0, 1, 8, 'openai', 'http://127.0.0.1:1', 1, 1);
             INSERT INTO requests (id, run_id, backend, job, worker, seq, intended_at, started_at, outcome, stream,
                                   concurrency, prompt_name, prompt_chars, max_tokens, ttft_ms, e2e_ms, completion_tokens)
             VALUES (1, 1, 'a', 'j', 0, 0, 0, 0, 'ok', 1, 1, 'p', 1, 8, 12.5, 40.0, 8),
                    (2, 1, 'a', 'j', 0, 1, 0, 0, 'in_flight', 1, 1, 'p', 1, 8, NULL, NULL, NULL),
                    (3, 1, 'a', 'j', 0, 2, 0, 0, 'connect_refused', 1, 1, 'p', 1, 8, NULL, 1.0, NULL);
             INSERT INTO events (backend, kind, at) VALUES ('a', 'restart', 1), ('a', 'restart', 2), (NULL, 'restart', 3);
             INSERT INTO memory_samples (backend, pid, taken_at, phase, in_flight, rss_bytes, footprint_bytes,
                                         sys_used_bytes, sys_available_bytes, swap_used_bytes)
             VALUES ('a', 7, 1, 'idle', 0, 100, 90, 0, 0, 0), ('a', 7, 2, 'idle', 0, 200, 180, 0, 0, 0),
                    ('a', NULL, 3, 'idle', 0, NULL, NULL, 0, 0, 0);",
        )
        .unwrap();
        let mut all = Vec::new();
        each_finished(&conn, |f| all.push((f.outcome, f.ttft_ms))).unwrap();
        assert_eq!(all, [("ok".to_string(), Some(12.5)), ("connect_refused".to_string(), None)]);
        let some = finished_by_id(&conn, &[2, 3]).unwrap();
        assert_eq!(
            some.iter().map(|f| f.outcome.as_str()).collect::<Vec<_>>(),
            ["connect_refused"],
            "in flight is not finished"
        );
        assert_eq!(restarts(&conn).unwrap(), [("a".to_string(), 2)]);
        assert_eq!(
            latest_memory(&conn).unwrap(),
            [Memory { backend: "a".into(), rss_bytes: Some(200), footprint_bytes: Some(180) }]
        );
    }
}
