//! Reads of the memory samples for the leak analysis and the digest's chart: the process lives
//! and the idle samples of a window, and its peak. Whole hours come from `memory_hours` (the
//! sums migration 0008's trigger keeps as samples are written), the window's partial edges from
//! the samples themselves, so months of samples are read as hours.

use super::retention::HOUR_MS;
use rusqlite::{Connection, OptionalExtension};

/// One memory sample taken with nothing in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleSample {
    pub pid: u32,
    pub proc_started_at: i64,
    pub at_ms: i64,
    pub rss_bytes: f64,
    pub footprint_bytes: Option<f64>,
}

/// One process life's samples taken with nothing in flight, within a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleLife {
    pub pid: u32,
    pub proc_started_at: i64,
    pub samples: u64,
    pub with_footprint: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// A memory sample the leak analysis reads: nothing in flight, a known process and an RSS (the
/// `memory_idle` index's condition, and `memory_hours`' idle columns', migration 0008).
const IDLE_SAMPLE: &str = "in_flight = 0 AND pid IS NOT NULL AND rss_bytes IS NOT NULL";

/// `[from, to)` split into its whole UTC hours `[a, b)` (empty when there are none) and the
/// edges before and after, which only raw rows can answer: `from ≤ a ≤ b ≤ to`.
pub fn whole_hours(from: i64, to: i64) -> (i64, i64) {
    let a = (from.div_euclid(HOUR_MS) + i64::from(from.rem_euclid(HOUR_MS) != 0)) * HOUR_MS;
    let a = a.clamp(from, to.max(from));
    let b = (to.div_euclid(HOUR_MS) * HOUR_MS).max(a);
    (a, b)
}

/// `select` over `memory_samples` (ending in its WHERE clause) for each edge of a window that
/// `whole_hours` split, joined by UNION ALL; parameters ?2 = from, ?3 = to, ?4 = a, ?5 = b.
fn edges(select: &str) -> String {
    format!("{select} AND taken_at >= ?2 AND taken_at < ?4 UNION ALL {select} AND taken_at >= ?5 AND taken_at < ?3")
}

/// The process lives of `backend` with idle samples in `[from, to)`, in order of their first one:
/// the whole hours from `memory_hours` (migration 0008), the edges from the samples.
pub fn idle_lives(conn: &Connection, backend: &str, from: i64, to: i64) -> rusqlite::Result<Vec<IdleLife>> {
    let (a, b) = whole_hours(from, to);
    conn.prepare_cached(&format!(
        "SELECT pid, proc_started_at, sum(n), sum(fp), min(first), max(last) FROM (
             SELECT pid, proc_started_at, idle_samples AS n, idle_footprint AS fp, idle_first_at AS first,
                    idle_last_at AS last
             FROM memory_hours WHERE backend = ?1 AND hour_at >= ?4 AND hour_at < ?5 AND idle_samples > 0
             UNION ALL {})
         GROUP BY 1, 2 ORDER BY 5",
        edges(&format!(
            "SELECT pid, coalesce(proc_started_at, 0), 1, footprint_bytes IS NOT NULL, taken_at, taken_at
             FROM memory_samples WHERE backend = ?1 AND {IDLE_SAMPLE}"
        )),
    ))?
    .query_map(rusqlite::params![backend, from, to, a, b], |r| {
        Ok(IdleLife {
            pid: r.get(0)?,
            proc_started_at: r.get(1)?,
            samples: r.get::<_, i64>(2)?.max(0) as u64,
            with_footprint: r.get::<_, i64>(3)?.max(0) as u64,
            first_ms: r.get(4)?,
            last_ms: r.get(5)?,
        })
    })?
    .collect()
}

/// Every sample of `backend` in `[from, to)` taken with nothing in flight and a known process, in
/// time order, handed to `each` (months of samples are never held at once).
pub fn each_idle_sample(
    conn: &Connection,
    backend: &str,
    from: i64,
    to: i64,
    mut each: impl FnMut(IdleSample),
) -> rusqlite::Result<()> {
    use super::fast_rows::{Param, Rows};
    let sql = format!(
        "SELECT pid, coalesce(proc_started_at, 0), taken_at, rss_bytes, footprint_bytes
         FROM memory_samples
         WHERE backend = ?1 AND taken_at >= ?2 AND taken_at < ?3 AND {IDLE_SAMPLE}
         ORDER BY taken_at, id"
    );
    let mut rows = Rows::query(conn, &sql, &[Param::Text(backend), Param::Int(from), Param::Int(to)])?;
    // The query's condition makes pid and rss_bytes not NULL; the others are NOT NULL columns.
    while let Some(r) = rows.next()? {
        each(IdleSample {
            pid: r.int_as(0)?.unwrap_or_default(),
            proc_started_at: r.int(1)?.unwrap_or_default(),
            at_ms: r.int(2)?.unwrap_or_default(),
            rss_bytes: r.real(3)?.unwrap_or_default(),
            footprint_bytes: r.real(4)?,
        });
    }
    Ok(())
}

/// Idle memory of one process lifetime, averaged per time bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryBucket {
    pub pid: u32,
    pub proc_started_at: i64,
    pub at_ms: i64,
    pub rss_bytes: f64,
    /// `None` when any sample in the bucket lacked it.
    pub footprint_bytes: Option<f64>,
}

/// Samples taken with nothing in flight, averaged per `(process, bucket_ms)` in SQL, in time order.
/// With buckets of whole hours, the window's whole hours come from `memory_hours`' sums (each
/// hour lies in one bucket) and only its partial edges from the samples.
pub fn idle_memory(
    conn: &Connection,
    backend: &str,
    from: i64,
    to: i64,
    bucket_ms: i64,
) -> rusqlite::Result<Vec<MemoryBucket>> {
    let bucket_ms = bucket_ms.max(1);
    let (a, b) = if bucket_ms % HOUR_MS == 0 { whole_hours(from, to) } else { (to, to) };
    conn.prepare_cached(&format!(
        "SELECT pid, started, CAST(sum(at_sum) / sum(n) AS INTEGER), 1.0 * sum(rss_sum) / sum(n),
                CASE WHEN sum(fp_n) = sum(n) THEN 1.0 * sum(fp_sum) / sum(n) END
         FROM ({} UNION ALL
               SELECT pid, proc_started_at, idle_first_at, idle_samples, idle_at_sum, idle_rss_sum, idle_footprint,
                      idle_footprint_sum, hour_at
               FROM memory_hours WHERE backend = ?1 AND hour_at >= ?4 AND hour_at < ?5 AND idle_samples > 0)
         GROUP BY pid, started, t / ?6
         ORDER BY min(first)",
        edges(&format!(
            "SELECT pid, coalesce(proc_started_at, 0) AS started, taken_at AS first, 1 AS n, taken_at AS at_sum,
                    rss_bytes AS rss_sum, footprint_bytes IS NOT NULL AS fp_n, coalesce(footprint_bytes, 0) AS fp_sum,
                    taken_at AS t
             FROM memory_samples WHERE backend = ?1 AND {IDLE_SAMPLE}"
        )),
    ))?
    .query_map(rusqlite::params![backend, from, to, a, b, bucket_ms], |r| {
        Ok(MemoryBucket {
            pid: r.get(0)?,
            proc_started_at: r.get(1)?,
            at_ms: r.get(2)?,
            rss_bytes: r.get(3)?,
            footprint_bytes: r.get(4)?,
        })
    })?
    .collect()
}

/// Peak and latest tree RSS of a backend in the window, and the machine's latest available memory.
pub fn memory_extremes(
    conn: &Connection,
    backend: &str,
    from: i64,
    to: i64,
) -> rusqlite::Result<(Option<u64>, Option<u64>, Option<u64>)> {
    let (a, b) = whole_hours(from, to);
    let peak: Option<i64> = conn.query_row(
        &format!(
            "SELECT max(m) FROM (
                 SELECT max(rss_max_bytes) AS m FROM memory_hours WHERE backend = ?1 AND hour_at >= ?4 AND hour_at < ?5
                 UNION ALL {})",
            edges("SELECT max(rss_bytes) FROM memory_samples WHERE backend = ?1")
        ),
        rusqlite::params![backend, from, to, a, b],
        |r| r.get(0),
    )?;
    let last = conn
        .query_row(
            "SELECT rss_bytes, sys_available_bytes FROM memory_samples
             WHERE backend = ?1 AND taken_at >= ?2 AND taken_at < ?3 AND rss_bytes IS NOT NULL
             ORDER BY taken_at DESC LIMIT 1",
            rusqlite::params![backend, from, to],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?)),
        )
        .optional()?;
    Ok((peak.map(|v| v as u64), last.map(|l| l.0 as u64), last.and_then(|l| l.1).map(|a| a as u64)))
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
