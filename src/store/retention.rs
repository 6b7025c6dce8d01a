//! Retention: raw `requests` and `memory_samples` older than the configured age are rolled up
//! into hourly aggregates (`request_rollups`, `memory_rollups`, migration 0004) and deleted, so
//! months of history stay small and fast to report.
//!
//! Work goes one UTC hour at a time, each in its own short transaction (the daemon's writer
//! waits at most that long): the hour's rollup rows are written and its raw rows deleted
//! together, so a rerun finds nothing left to roll and changes nothing. A backend's hour that
//! still has a request in flight, or a request of a run still `running`, is left raw until it
//! is done. Only whole hours before the cutoff are touched, and every query names a backend so
//! the `(backend, time)` indexes serve it.

use crate::measure::outcome::{stored_counts_as_failure, stored_is_counted};
use crate::measure::stats::percentiles;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::collections::BTreeMap;

pub const HOUR_MS: i64 = 3_600_000;
const DAY_MS: f64 = 86_400_000.0;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    /// Raw rows end here: every hour before it was rolled up (unless kept for being in flight).
    pub horizon_at: i64,
    pub hours: u64,
    pub requests: u64,
    pub samples: u64,
    /// Hours of one backend left raw because a request in them is still in flight.
    pub hours_kept_in_flight: u64,
}

/// The raw-retention horizon recorded by the last pass: before it, only rollups remain.
pub fn horizon(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'retention'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    conn.query_row("SELECT horizon_at FROM retention WHERE id = 1", [], |r| r.get(0)).optional()
}

/// The cutoff for `raw_days` at `now_ms`: the start of the UTC hour that many days back.
pub fn cutoff(now_ms: i64, raw_days: f64) -> i64 {
    let back = (raw_days * DAY_MS) as i64;
    (now_ms - back).div_euclid(HOUR_MS) * HOUR_MS
}

/// Rolls up and deletes raw rows that started before `cutoff(now_ms, raw_days)`.
pub fn prune(conn: &mut Connection, now_ms: i64, raw_days: f64) -> rusqlite::Result<Pruned> {
    prune_until(conn, now_ms, raw_days, &|| false)
}

/// `prune`, stopping between two hours once `stop()` says so (the daemon is stopping); the
/// horizon then stays where it was, and the next pass goes on.
pub fn prune_until(
    conn: &mut Connection,
    now_ms: i64,
    raw_days: f64,
    stop: &dyn Fn() -> bool,
) -> rusqlite::Result<Pruned> {
    let cut = cutoff(now_ms, raw_days);
    let hours: Vec<i64> = conn
        .prepare(
            "SELECT DISTINCT (started_at / ?2) * ?2 FROM requests WHERE started_at < ?1
             UNION SELECT DISTINCT (taken_at / ?2) * ?2 FROM memory_samples WHERE taken_at < ?1
             ORDER BY 1",
        )?
        .query_map(params![cut, HOUR_MS], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    // Every query below names a backend, so the (backend, time) indexes serve it.
    let names =
        |sql: &str| -> rusqlite::Result<Vec<String>> { conn.prepare(sql)?.query_map([], |r| r.get(0))?.collect() };
    let request_backends = names("SELECT DISTINCT backend FROM requests")?;
    let sample_backends = names("SELECT DISTINCT backend FROM memory_samples")?;
    let mut done = Pruned { horizon_at: cut, ..Pruned::default() };
    for hour in hours {
        if stop() {
            done.horizon_at = horizon(conn)?.unwrap_or(i64::MIN);
            return Ok(done);
        }
        // Immediate: take the write lock up front (waiting out the daemon's writer under the
        // busy timeout) rather than fail to upgrade a read transaction later.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for backend in &request_backends {
            let busy: bool = tx.query_row(
                "SELECT count(*) > 0 FROM requests q JOIN runs r ON r.id = q.run_id
                 WHERE q.backend = ?3 AND q.started_at >= ?1 AND q.started_at < ?2
                   AND (q.outcome = 'in_flight' OR r.status = 'running')",
                params![hour, hour + HOUR_MS, backend],
                |r| r.get(0),
            )?;
            if busy {
                done.hours_kept_in_flight += 1;
            } else {
                done.requests += roll_requests(&tx, hour, backend)?;
            }
        }
        for backend in &sample_backends {
            done.samples += roll_samples(&tx, hour, backend)?;
        }
        tx.commit()?;
        done.hours += 1;
    }
    let previous = horizon(conn)?.unwrap_or(i64::MIN);
    done.horizon_at = done.horizon_at.max(previous);
    conn.execute(
        "INSERT INTO retention (id, horizon_at, pruned_at, raw_days) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET horizon_at = excluded.horizon_at, pruned_at = excluded.pruned_at,
                                        raw_days = excluded.raw_days",
        params![done.horizon_at, now_ms, raw_days],
    )?;
    Ok(done)
}

/// One hour of requests by (backend, job, stream), as `request_rollups` holds it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RequestAgg {
    pub requests: i64,
    pub ok: i64,
    pub not_counted: i64,
    pub failures: BTreeMap<String, i64>,
    ttft: Vec<f64>,
    e2e: Vec<f64>,
    decode: Vec<f64>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

fn roll_requests(tx: &Transaction<'_>, hour: i64, backend: &str) -> rusqlite::Result<u64> {
    let mut groups: BTreeMap<(String, String, bool), RequestAgg> = BTreeMap::new();
    let mut n = 0;
    {
        let mut stmt = tx.prepare(
            "SELECT backend, job, stream, outcome, ttft_ms, e2e_ms, decode_tps, prompt_tokens, completion_tokens
             FROM requests WHERE backend = ?3 AND started_at >= ?1 AND started_at < ?2",
        )?;
        let mut rows = stmt.query(params![hour, hour + HOUR_MS, backend])?;
        while let Some(r) = rows.next()? {
            n += 1;
            let agg = groups.entry((r.get(0)?, r.get(1)?, r.get(2)?)).or_default();
            let outcome: String = r.get(3)?;
            if !stored_is_counted(&outcome) {
                agg.not_counted += 1;
                continue;
            }
            if stored_counts_as_failure(&outcome) {
                *agg.failures.entry(outcome).or_default() += 1;
            } else {
                agg.ok += 1;
                agg.ttft.extend(r.get::<_, Option<f64>>(4)?);
                agg.e2e.extend(r.get::<_, Option<f64>>(5)?);
                agg.decode.extend(r.get::<_, Option<f64>>(6)?);
            }
            agg.requests += 1;
            agg.prompt_tokens += r.get::<_, Option<i64>>(7)?.unwrap_or(0);
            agg.completion_tokens += r.get::<_, Option<i64>>(8)?.unwrap_or(0);
        }
    }
    for ((backend, job, stream), agg) in groups {
        upsert_requests(tx, &backend, &job, hour, stream, &agg)?;
    }
    tx.execute(
        "DELETE FROM requests WHERE backend = ?3 AND started_at >= ?1 AND started_at < ?2",
        params![hour, hour + HOUR_MS, backend],
    )?;
    // Its latency sketches (migration 0010) go with the rows they are checked against.
    tx.execute("DELETE FROM latency_hours WHERE backend = ?2 AND hour_at = ?1", params![hour, backend])?;
    Ok(n)
}

/// Sum, count, p50, p95 and max of one measure.
fn stats(v: &[f64]) -> (i64, f64, Option<f64>, Option<f64>, Option<f64>) {
    let [p50, p95, max] = percentiles(v.iter().copied(), [50.0, 95.0, 100.0]);
    (v.len() as i64, v.iter().sum(), p50, p95, max)
}

fn upsert_requests(
    tx: &Transaction<'_>,
    backend: &str,
    job: &str,
    hour: i64,
    stream: bool,
    agg: &RequestAgg,
) -> rusqlite::Result<()> {
    let (tn, ts, t50, t95, tmax) = stats(&agg.ttft);
    let (en, es, e50, e95, _) = stats(&agg.e2e);
    let (dn, ds, d50, _, _) = stats(&agg.decode);
    let existing: Option<String> = tx
        .query_row(
            "SELECT failures FROM request_rollups WHERE backend = ?1 AND job = ?2 AND hour_at = ?3 AND stream = ?4",
            params![backend, job, hour, stream],
            |r| r.get(0),
        )
        .optional()?;
    let mut failures = agg.failures.clone();
    // Raw rows for an hour already rolled up (rare: a request finished long after its hour):
    // counts and sums add; percentiles become count-weighted means (approximate).
    let sql = match existing {
        Some(old) => {
            let old: BTreeMap<String, i64> = serde_json::from_str(&old).unwrap_or_default();
            for (k, v) in old {
                *failures.entry(k).or_default() += v;
            }
            "UPDATE request_rollups SET
               requests = requests + ?5, ok = ok + ?6, not_counted = not_counted + ?7, failures = ?8,
               ttft_p50_ms = (coalesce(ttft_p50_ms, 0) * ttft_n + coalesce(?11, 0) * ?9) / nullif(ttft_n + ?9, 0),
               ttft_p95_ms = (coalesce(ttft_p95_ms, 0) * ttft_n + coalesce(?12, 0) * ?9) / nullif(ttft_n + ?9, 0),
               ttft_max_ms = max(coalesce(ttft_max_ms, ?13), coalesce(?13, ttft_max_ms)),
               ttft_n = ttft_n + ?9, ttft_sum_ms = ttft_sum_ms + ?10,
               e2e_p50_ms = (coalesce(e2e_p50_ms, 0) * e2e_n + coalesce(?16, 0) * ?14) / nullif(e2e_n + ?14, 0),
               e2e_p95_ms = (coalesce(e2e_p95_ms, 0) * e2e_n + coalesce(?17, 0) * ?14) / nullif(e2e_n + ?14, 0),
               e2e_n = e2e_n + ?14, e2e_sum_ms = e2e_sum_ms + ?15,
               decode_tps_p50 = (coalesce(decode_tps_p50, 0) * decode_n + coalesce(?20, 0) * ?18) / nullif(decode_n + ?18, 0),
               decode_n = decode_n + ?18, decode_tps_sum = decode_tps_sum + ?19,
               prompt_tokens = prompt_tokens + ?21, completion_tokens = completion_tokens + ?22
             WHERE backend = ?1 AND job = ?2 AND hour_at = ?3 AND stream = ?4"
        }
        None => {
            "INSERT INTO request_rollups (backend, job, hour_at, stream, requests, ok, not_counted, failures,
            ttft_n, ttft_sum_ms, ttft_p50_ms, ttft_p95_ms, ttft_max_ms, e2e_n, e2e_sum_ms, e2e_p50_ms, e2e_p95_ms,
            decode_n, decode_tps_sum, decode_tps_p50, prompt_tokens, completion_tokens)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)"
        }
    };
    tx.execute(
        sql,
        params![
            backend,
            job,
            hour,
            stream,
            agg.requests,
            agg.ok,
            agg.not_counted,
            serde_json::to_string(&failures).unwrap_or_default(),
            tn,
            ts,
            t50,
            t95,
            tmax,
            en,
            es,
            e50,
            e95,
            dn,
            ds,
            d50,
            agg.prompt_tokens,
            agg.completion_tokens
        ],
    )?;
    Ok(())
}

fn roll_samples(tx: &Transaction<'_>, hour: i64, backend: &str) -> rusqlite::Result<u64> {
    tx.execute(
        "INSERT INTO memory_rollups (backend, hour_at, pid, proc_started_at, samples, idle_samples, rss_avg_bytes,
            rss_max_bytes, idle_rss_avg_bytes, footprint_avg_bytes, footprint_max_bytes, sys_available_min_bytes)
         SELECT backend, ?1, coalesce(pid, 0), max(proc_started_at), count(*), sum(in_flight = 0), avg(rss_bytes),
                max(rss_bytes), avg(CASE WHEN in_flight = 0 THEN rss_bytes END), avg(footprint_bytes),
                max(footprint_bytes), min(sys_available_bytes)
         FROM memory_samples WHERE backend = ?3 AND taken_at >= ?1 AND taken_at < ?2
         GROUP BY backend, coalesce(pid, 0)
         ON CONFLICT (backend, hour_at, pid) DO UPDATE SET
            rss_avg_bytes = (rss_avg_bytes * samples + excluded.rss_avg_bytes * excluded.samples)
                            / (samples + excluded.samples),
            rss_max_bytes = max(coalesce(rss_max_bytes, 0), coalesce(excluded.rss_max_bytes, 0)),
            footprint_max_bytes = max(coalesce(footprint_max_bytes, 0), coalesce(excluded.footprint_max_bytes, 0)),
            sys_available_min_bytes = min(coalesce(sys_available_min_bytes, excluded.sys_available_min_bytes),
                                          coalesce(excluded.sys_available_min_bytes, sys_available_min_bytes)),
            samples = samples + excluded.samples,
            idle_samples = idle_samples + excluded.idle_samples",
        params![hour, hour + HOUR_MS, backend],
    )?;
    let deleted = tx.execute(
        "DELETE FROM memory_samples WHERE backend = ?3 AND taken_at >= ?1 AND taken_at < ?2",
        params![hour, hour + HOUR_MS, backend],
    )?;
    // The hour's running sums (migration 0008) go with its samples: the rollup holds it now.
    tx.execute("DELETE FROM memory_hours WHERE backend = ?2 AND hour_at = ?1", params![hour, backend])?;
    // So do the kept points of lives that began by then (migration 0011): thinned from samples
    // that are gone.
    tx.execute("DELETE FROM life_points WHERE backend = ?2 AND first_at < ?1", params![hour + HOUR_MS, backend])?;
    Ok(deleted as u64)
}

/// What the hourly rollups say about one backend over whole hours of a window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RolledUp {
    pub backend: String,
    pub hours: i64,
    pub requests: i64,
    pub ok: i64,
    pub success_rate: f64,
    pub failures: BTreeMap<String, i64>,
    /// Means over successful requests (sums / counts, exact).
    pub ttft_mean_ms: Option<f64>,
    pub decode_tps_mean: Option<f64>,
}

/// Per backend, the rollups of the whole hours in `[from, to)`.
pub fn rolled_up(conn: &Connection, from: i64, to: i64) -> rusqlite::Result<Vec<RolledUp>> {
    let mut out: Vec<RolledUp> = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT backend, count(DISTINCT hour_at), sum(requests), sum(ok), sum(ttft_sum_ms) / nullif(sum(ttft_n), 0),
                sum(decode_tps_sum) / nullif(sum(decode_n), 0), group_concat(failures, char(10))
         FROM request_rollups WHERE hour_at >= ?1 AND hour_at + ?3 <= ?2 GROUP BY backend ORDER BY backend",
    )?;
    let mut rows = stmt.query(params![from, to, HOUR_MS])?;
    while let Some(r) = rows.next()? {
        let (requests, ok): (i64, i64) = (r.get(2)?, r.get(3)?);
        let mut failures: BTreeMap<String, i64> = BTreeMap::new();
        for line in r.get::<_, Option<String>>(6)?.unwrap_or_default().lines() {
            let one: BTreeMap<String, i64> = serde_json::from_str(line).unwrap_or_default();
            for (k, v) in one {
                *failures.entry(k).or_default() += v;
            }
        }
        out.push(RolledUp {
            backend: r.get(0)?,
            hours: r.get(1)?,
            requests,
            ok,
            success_rate: if requests > 0 { ok as f64 / requests as f64 } else { 0.0 },
            failures,
            ttft_mean_ms: r.get(4)?,
            decode_tps_mean: r.get(5)?,
        });
    }
    Ok(out)
}

/// One retention pass for the daemon (its schedule runs one every hour), on its own connection
/// off the async threads; a pass that rolled anything up is an event.
pub async fn pass(
    db: std::path::PathBuf,
    raw_days: f64,
    writer: super::WriterHandle,
    shutdown: crate::shutdown::Shutdown,
) {
    let pass = tokio::task::spawn_blocking(move || {
        let mut conn = super::open(&db).map_err(|e| e.to_string())?;
        prune_until(&mut conn, crate::time::now_ms(), raw_days, &|| shutdown.is_stopping()).map_err(|e| e.to_string())
    })
    .await;
    match pass {
        Ok(Ok(done)) if done.hours > 0 => {
            tracing::info!(
                requests = done.requests,
                samples = done.samples,
                hours = done.hours,
                "retention: rolled up and pruned"
            );
            writer.event(super::rows::Event {
                backend: None,
                kind: crate::measure::EventKind::Pruned,
                at: crate::time::now_ms(),
                detail: serde_json::to_value(&done).unwrap_or_default(),
            });
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("retention failed (it is tried again within the hour): {e}"),
        Err(e) => tracing::warn!("retention stopped: {e}"),
    }
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
