//! The successful requests' latency sketches per backend and UTC hour (`latency_hours`, migration
//! 0010): what a report over weeks merges instead of reading every row's latencies. `fill` keeps
//! them for the hours that are over (the daemon's hourly upkeep runs it, off the request path);
//! `read` hands them to the report, which checks each hour's count against its own rows and reads
//! the latencies of any hour that disagrees from the rows (`report::pass`).
//!
//! A sketch is the DDSketch `Distribution` builds (1 % relative error, the same bins), stored in
//! DataDog's binary encoding (`to_java_bytes`), so hours merged give the very sketch the rows
//! would have built.

use super::retention::HOUR_MS;
use crate::measure::distribution::new_sketch;
use rusqlite::{Connection, TransactionBehavior, params};
use sketches_ddsketch::DDSketch;
use std::collections::BTreeMap;

/// What each hour keeps a sketch of, in the order of the table's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Ttft = 0,
    FirstContent = 1,
    E2e = 2,
    DecodeTps = 3,
    OutputTps = 4,
}

pub const MEASURES: usize = 5;

/// An hour's successful requests of one streaming mode and contention.
#[derive(Clone)]
pub struct HourSketch {
    /// Start of the UTC hour, unix ms.
    pub hour_at: i64,
    pub stream: bool,
    /// Whether others were in flight on the machine (`machine_in_flight > 0`).
    pub contended: bool,
    /// Successful requests.
    pub ok: u64,
    /// One sketch per `Measure` (empty where no request had the value).
    pub sketches: [DDSketch; MEASURES],
}

impl HourSketch {
    fn new(hour_at: i64, stream: bool, contended: bool) -> HourSketch {
        HourSketch { hour_at, stream, contended, ok: 0, sketches: std::array::from_fn(|_| new_sketch()) }
    }

    pub fn sketch(&self, m: Measure) -> &DDSketch {
        &self.sketches[m as usize]
    }
}

impl std::fmt::Debug for HourSketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HourSketch")
            .field("hour_at", &self.hour_at)
            .field("stream", &self.stream)
            .field("contended", &self.contended)
            .field("ok", &self.ok)
            .finish_non_exhaustive()
    }
}

/// Hours end this long before a sketch is kept of them: rows committed late (the writer holds
/// rows while another process holds the database) are still counted.
pub const SETTLE_MS: i64 = 10 * 60 * 1000;

/// Each pass sketches again the hours this long before the last one it kept: an hour that held a
/// request in flight, or gained rows late, is kept right within a day.
const REDO_MS: i64 = 24 * HOUR_MS;

/// Hours sketched in one transaction, so a long backfill never holds the daemon's writer long.
const HOURS_PER_TRANSACTION: usize = 24;

/// What a `fill` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Filled {
    pub hours: u64,
    pub requests: u64,
}

/// Keeps the sketches of every backend's hours that ended `SETTLE_MS` before `now_ms`, from a
/// day before the last hour kept (from the first row when none is). An hour with a request still
/// in flight is left to a later pass (the report reads its rows meanwhile). Stops between
/// transactions when `stop` says so.
pub fn fill(conn: &mut Connection, now_ms: i64, stop: &dyn Fn() -> bool) -> rusqlite::Result<Filled> {
    let until = (now_ms - SETTLE_MS).div_euclid(HOUR_MS) * HOUR_MS;
    let mut done = Filled::default();
    for backend in super::queries::backends_in(conn, i64::MIN, until)? {
        let last: Option<i64> =
            conn.query_row("SELECT max(hour_at) FROM latency_hours WHERE backend = ?1", [&backend], |r| r.get(0))?;
        let first: Option<i64> = match last {
            Some(last) => Some(last - REDO_MS),
            None => conn.query_row(
                "SELECT (min(started_at) / ?2) * ?2 FROM requests WHERE backend = ?1",
                params![backend, HOUR_MS],
                |r| r.get(0),
            )?,
        };
        let Some(mut from) = first else { continue };
        while from < until {
            if stop() {
                return Ok(done);
            }
            let to = (from + HOURS_PER_TRANSACTION as i64 * HOUR_MS).min(until);
            // Read before the write lock is taken, so the daemon's writer never waits on the read;
            // a row committed in between makes its hour's count disagree, and the report reads
            // that hour's rows until the next pass.
            let (hours, requests) = sketch_hours(conn, &backend, from, to)?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM latency_hours WHERE backend = ?1 AND hour_at >= ?2 AND hour_at < ?3",
                params![backend, from, to],
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO latency_hours (backend, hour_at, stream, contended, ok, ttft, first_content, e2e,
                     decode_tps, output_tps)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for h in hours.values() {
                let [a, b, c, d, e] = h.sketches.each_ref().map(encode);
                insert.execute(params![backend, h.hour_at, h.stream, h.contended, h.ok as i64, a, b, c, d, e])?;
            }
            drop(insert);
            tx.commit()?;
            let mut kept: Vec<i64> = hours.keys().map(|k| k.0).collect();
            kept.dedup();
            done.hours += kept.len() as u64;
            done.requests += requests;
            from = to;
        }
    }
    Ok(done)
}

/// Sketches by (hour, stream, contended).
type Hours = BTreeMap<(i64, bool, bool), HourSketch>;

/// The sketches of `backend`'s hours in `[from, to)` (whole hours), from its rows; hours with a
/// request in flight are left out. Also the successful requests sketched.
fn sketch_hours(conn: &Connection, backend: &str, from: i64, to: i64) -> rusqlite::Result<(Hours, u64)> {
    let mut hours = Hours::new();
    let mut in_flight = std::collections::BTreeSet::new();
    let mut stmt = conn.prepare_cached(
        "SELECT started_at, outcome = 'in_flight', stream, coalesce(machine_in_flight, 0) > 0, ttft_ms,
                first_content_ms, e2e_ms, decode_tps, output_tps
         FROM requests
         WHERE backend = ?1 AND started_at >= ?2 AND started_at < ?3 AND outcome IN ('ok', 'in_flight')",
    )?;
    let mut rows = stmt.query(params![backend, from, to])?;
    let mut requests = 0;
    while let Some(r) = rows.next()? {
        let hour_at = r.get::<_, i64>(0)?.div_euclid(HOUR_MS) * HOUR_MS;
        if r.get(1)? {
            in_flight.insert(hour_at);
            continue;
        }
        let (stream, contended) = (r.get(2)?, r.get(3)?);
        let h =
            hours.entry((hour_at, stream, contended)).or_insert_with(|| HourSketch::new(hour_at, stream, contended));
        h.ok += 1;
        requests += 1;
        for (i, sketch) in h.sketches.iter_mut().enumerate() {
            if let Some(v) = r.get::<_, Option<f64>>(4 + i)?.filter(|v| !v.is_nan()) {
                sketch.add(v);
            }
        }
    }
    hours.retain(|(hour_at, ..), _| !in_flight.contains(hour_at));
    Ok((hours, requests))
}

/// How many successful requests each kept hour of `backend` in `[from, to)` holds, per mode:
/// `(hour_at, stream, contended, ok)`, in time order.
pub fn counts(conn: &Connection, backend: &str, from: i64, to: i64) -> rusqlite::Result<Vec<(i64, bool, bool, u64)>> {
    conn.prepare_cached(
        "SELECT hour_at, stream, contended, ok FROM latency_hours
         WHERE backend = ?1 AND hour_at >= ?2 AND hour_at < ?3 ORDER BY hour_at, stream, contended",
    )?
    .query_map(params![backend, from, to], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)?.max(0) as u64))
    })?
    .collect()
}

/// One kept row, as `read` hands it over.
pub enum Kept {
    Hour(Box<HourSketch>),
    /// A row whose sketch does not decode to the bins `Distribution` uses: its hour must be read
    /// from the rows.
    Unreadable {
        hour_at: i64,
    },
}

/// `backend`'s kept hours in `[from, to)`, in time order, one row at a time (a few kilobytes each).
pub fn read(conn: &Connection, backend: &str, from: i64, to: i64, mut each: impl FnMut(Kept)) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT hour_at, stream, contended, ok, ttft, first_content, e2e, decode_tps, output_tps
         FROM latency_hours WHERE backend = ?1 AND hour_at >= ?2 AND hour_at < ?3
         ORDER BY hour_at, stream, contended",
    )?;
    let mut rows = stmt.query(params![backend, from, to])?;
    'rows: while let Some(r) = rows.next()? {
        let mut h = HourSketch::new(r.get(0)?, r.get(1)?, r.get(2)?);
        h.ok = r.get::<_, i64>(3)?.max(0) as u64;
        for (i, sketch) in h.sketches.iter_mut().enumerate() {
            match r.get_ref(4 + i)?.as_blob_or_null() {
                Ok(None) => {}
                Ok(Some(bytes)) if let Some(s) = decode(bytes) => *sketch = s,
                _ => {
                    each(Kept::Unreadable { hour_at: h.hour_at });
                    continue 'rows;
                }
            }
        }
        each(Kept::Hour(Box::new(h)));
    }
    Ok(())
}

fn encode(sketch: &DDSketch) -> Option<Vec<u8>> {
    (sketch.count() > 0).then(|| sketch.to_java_bytes())
}

/// A stored sketch, when it decodes to the bins `Distribution` uses.
fn decode(bytes: &[u8]) -> Option<DDSketch> {
    let sketch = DDSketch::from_java_bytes(bytes).ok()?;
    // Merging checks the configuration: one that differs is refused, not mixed.
    new_sketch().merge(&sketch).ok()?;
    Some(sketch)
}

#[cfg(test)]
#[path = "latency_hours_tests.rs"]
pub(crate) mod tests;
