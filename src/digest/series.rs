//! The chart data the report does not hold: each backend's idle memory over the window (a few
//! hundred averaged points, from SQL) and its failures per time bucket. Bounded whatever the
//! window: the database does the averaging and counting.

use crate::report::model::Report;
use crate::store::retention::HOUR_MS;
use crate::store::{memory, queries};
use rusqlite::Connection;

/// Points per chart line at most.
pub const BUCKETS: i64 = 240;

#[derive(Debug, Clone, Default)]
pub struct BackendSeries {
    /// Memory in MB (10⁶ bytes) over time, one entry per process lifetime.
    pub memory: Vec<Vec<(i64, f64)>>,
    /// Failed requests per bucket: (bucket start, count); only buckets with failures.
    pub failures: Vec<(i64, u64)>,
    /// TTFT of successful requests: (bucket start, p50, p95) in ms.
    pub ttft: Vec<(i64, f64, f64)>,
}

#[derive(Debug, Clone, Default)]
pub struct Series {
    pub bucket_ms: i64,
    /// The TTFT buckets: the report's hours, or finer for a window under six hours.
    pub ttft_bucket_ms: i64,
    /// In the report's backend order.
    pub backends: Vec<BackendSeries>,
}

pub fn load(conn: &Connection, report: &Report) -> rusqlite::Result<Series> {
    let (from, to) = (report.window.from, report.window.to);
    // Buckets of an hour or more are whole hours: the log keeps idle memory summed per hour.
    let bucket_ms = match ((to - from) / BUCKETS).max(1_000) {
        b if b >= HOUR_MS => (b + HOUR_MS - 1) / HOUR_MS * HOUR_MS,
        b => b,
    };
    // Under six hours, hourly points say little: 30 buckets over the window instead.
    let fine = to - from < 6 * 3_600_000;
    let ttft_bucket_ms = if fine { ((to - from) / 30).max(1_000) } else { 3_600_000 };
    let mut backends = Vec::new();
    for b in &report.backends {
        let footprint = b.memory_metric == "footprint";
        let mut memory: Vec<Vec<(i64, f64)>> = Vec::new();
        let mut current = None;
        for m in memory::idle_memory(conn, &b.name, from, to, bucket_ms)? {
            if current != Some((m.pid, m.proc_started_at)) {
                memory.push(Vec::new());
                current = Some((m.pid, m.proc_started_at));
            }
            let bytes = if footprint { m.footprint_bytes.unwrap_or(m.rss_bytes) } else { m.rss_bytes };
            if let Some(l) = memory.last_mut() {
                l.push((m.at_ms, bytes / 1e6));
            }
        }
        let ttft = if fine {
            fine_ttft(conn, &b.name, from, to, ttft_bucket_ms)?
        } else {
            b.hourly.iter().filter_map(|h| Some((h.hour_start_ms, h.ttft_p50?, h.ttft_p95?))).collect()
        };
        let failures = queries::failures_per_bucket(conn, &b.name, from, to, bucket_ms)?;
        backends.push(BackendSeries { memory, failures, ttft });
    }
    Ok(Series { bucket_ms, ttft_bucket_ms, backends })
}

/// TTFT p50/p95 per bucket for a short window (few rows: at most `FINE_ROWS` are read).
fn fine_ttft(
    conn: &Connection,
    backend: &str,
    from: i64,
    to: i64,
    bucket_ms: i64,
) -> rusqlite::Result<Vec<(i64, f64, f64)>> {
    const FINE_ROWS: i64 = 50_000;
    let by_bucket = queries::ok_ttft_per_bucket(conn, backend, (from, to), bucket_ms, FINE_ROWS)?;
    Ok(by_bucket
        .into_iter()
        .filter_map(|(at, v)| {
            let [p50, p95] = crate::measure::stats::percentiles(v, [50.0, 95.0]);
            Some((at, p50?, p95?))
        })
        .collect())
}
