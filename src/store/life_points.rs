//! Each process life's idle memory thinned to the leak analysis's points: the rule (`Thinner`),
//! and the points of lives that are over kept ahead of a report (`life_points`, migration 0011).
//!
//! A life with more idle samples than the analysis keeps (`points`, the leak analysis's
//! `POINTS_PER_LIFE`, given by the layer above) is thinned to the medians of `span / points`
//! buckets from its first sample; fewer are kept as they are.
//! The rule reads only the life's own samples, so the points of a life a report's window holds
//! whole are the same in every window, and can be kept: `fill` (the daemon's hourly upkeep) keeps
//! them for lives whose last idle sample is an hour old, with the life's figures (first and last
//! sample, counts, `points`); the report takes them where the window's figures for the life are
//! the same (`report::build`), and thins the other lives' samples as they stream past.

use super::memory::{IdleLife, IdleSample, idle_lives};
use super::retention::HOUR_MS;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;

/// A point: the median of a bucket's samples, at its middle sample's time; `last_ms`: the time of
/// its last sample (what its process had served is asked by then).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub at_ms: i64,
    pub bytes: f64,
    pub last_ms: i64,
}

/// Thins the samples of the lives it was made for, as they stream past in time order.
pub struct Thinner {
    index: BTreeMap<(u32, i64), Slot>,
    /// The last life found, looked up first (samples of one life come in runs).
    last: Option<((u32, i64), Slot)>,
    /// The bucket being filled, per life.
    open: Vec<Option<Bucket>>,
    points: Vec<Vec<Point>>,
}

/// A life's index among the lives, its first sample and its bucket width (0: every sample kept).
#[derive(Clone, Copy)]
struct Slot {
    life: usize,
    first: i64,
    width: i64,
}

/// A bucket's number and its samples' times and bytes.
#[derive(Clone)]
struct Bucket {
    number: i64,
    times: Vec<i64>,
    bytes: Vec<f64>,
}

impl Thinner {
    /// For `lives` (their figures are the window's), in that order, to at most `points` points
    /// each.
    pub fn new<'a>(lives: impl IntoIterator<Item = &'a IdleLife>, points: usize) -> Thinner {
        let mut index = BTreeMap::new();
        let points = points.max(1);
        for (i, l) in lives.into_iter().enumerate() {
            let width = if l.samples > points as u64 { (l.last_ms - l.first_ms) / points as i64 + 1 } else { 0 };
            index.insert((l.pid, l.proc_started_at), Slot { life: i, first: l.first_ms, width });
        }
        let n = index.len();
        Thinner { index, last: None, open: vec![None; n], points: vec![Vec::new(); n] }
    }

    /// Adds a sample's `bytes` (RSS or footprint, as the caller reads them); samples of other
    /// lives are left out.
    pub fn push(&mut self, s: &IdleSample, bytes: f64) {
        let key = (s.pid, s.proc_started_at);
        let life = match self.last {
            Some((k, life)) if k == key => Some(life),
            _ => self.index.get(&key).copied().inspect(|&life| self.last = Some((key, life))),
        };
        let Some(Slot { life: i, first, width }) = life else { return };
        let number = if width > 0 { (s.at_ms - first) / width } else { s.at_ms };
        let b = self.open[i].get_or_insert_with(|| Bucket { number, times: Vec::new(), bytes: Vec::new() });
        if b.number != number {
            flush(&mut self.points[i], &mut b.times, &mut b.bytes);
            b.number = number;
        }
        b.times.push(s.at_ms);
        b.bytes.push(bytes);
    }

    /// Each life's points, in the order of the lives given.
    pub fn finish(mut self) -> Vec<Vec<Point>> {
        for (i, slot) in self.open.iter_mut().enumerate() {
            if let Some(b) = slot {
                flush(&mut self.points[i], &mut b.times, &mut b.bytes);
            }
        }
        self.points
    }
}

fn flush(points: &mut Vec<Point>, times: &mut Vec<i64>, bytes: &mut Vec<f64>) {
    let Some(&last_ms) = times.last() else { return };
    // Samples come in time order: the middle one is the median time.
    let at_ms = times[times.len() / 2];
    if let Some(median) = crate::measure::stats::median_in_place(bytes) {
        points.push(Point { at_ms, bytes: median, last_ms });
    }
    times.clear();
    bytes.clear();
}

/// A life's points as kept, with the figures of the samples they were thinned from.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptLife {
    pub life: IdleLife,
    pub rss: Vec<Point>,
    /// Thinned from the samples that had a footprint.
    pub footprint: Vec<Point>,
}

/// A life is kept once its last idle sample is this old.
pub const SETTLED_MS: i64 = HOUR_MS;

/// Keeps the points (at most `points` a life) of every life of every backend whose last idle
/// sample is `SETTLED_MS` before `now_ms` and whose kept figures are not its figures now (never
/// kept, samples arrived since, or kept for another number of points). One life a statement;
/// stops between them when `stop` says so. Returns the lives kept.
pub fn fill(conn: &Connection, now_ms: i64, points: usize, stop: &dyn Fn() -> bool) -> rusqlite::Result<u64> {
    let mut kept = 0;
    for backend in super::queries::backends_in(conn, i64::MIN / 2, now_ms)? {
        for life in idle_lives(conn, &backend, i64::MIN / 2, now_ms)? {
            if life.last_ms >= now_ms - SETTLED_MS || figures(conn, &backend, &life)? == Some((life, points)) {
                continue;
            }
            if stop() {
                return Ok(kept);
            }
            let (rss, footprint) = thin(conn, &backend, &life, points)?;
            conn.execute(
                "INSERT OR REPLACE INTO life_points (backend, pid, proc_started_at, first_at, last_at, samples,
                     with_footprint, points, rss, footprint)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    backend,
                    life.pid,
                    life.proc_started_at,
                    life.first_ms,
                    life.last_ms,
                    life.samples as i64,
                    life.with_footprint as i64,
                    points as i64,
                    encode(&rss),
                    encode(&footprint)
                ],
            )?;
            kept += 1;
        }
    }
    Ok(kept)
}

/// The figures a life's points were kept with, and how many points a life had at most, if they
/// were.
fn figures(conn: &Connection, backend: &str, life: &IdleLife) -> rusqlite::Result<Option<(IdleLife, usize)>> {
    conn.prepare_cached(
        "SELECT first_at, last_at, samples, with_footprint, points FROM life_points
         WHERE backend = ?1 AND pid = ?2 AND proc_started_at = ?3",
    )?
    .query_row(params![backend, life.pid, life.proc_started_at], |r| {
        Ok((kept_figures(life, r)?, r.get::<_, i64>(4)?.max(0) as usize))
    })
    .optional()
}

/// Columns 0–3 of a `life_points` row as the figures of `life`.
fn kept_figures(life: &IdleLife, r: &rusqlite::Row<'_>) -> rusqlite::Result<IdleLife> {
    Ok(IdleLife {
        pid: life.pid,
        proc_started_at: life.proc_started_at,
        first_ms: r.get(0)?,
        last_ms: r.get(1)?,
        samples: r.get::<_, i64>(2)?.max(0) as u64,
        with_footprint: r.get::<_, i64>(3)?.max(0) as u64,
    })
}

/// A life's points, RSS and footprint, from its samples.
fn thin(
    conn: &Connection,
    backend: &str,
    life: &IdleLife,
    points: usize,
) -> rusqlite::Result<(Vec<Point>, Vec<Point>)> {
    let (mut rss, mut footprint) = (Thinner::new([life], points), Thinner::new([life], points));
    super::memory::each_idle_sample(conn, backend, life.first_ms, life.last_ms + 1, |s| {
        rss.push(&s, s.rss_bytes);
        if let Some(f) = s.footprint_bytes {
            footprint.push(&s, f);
        }
    })?;
    let one = |t: Thinner| t.finish().pop().unwrap_or_default();
    Ok((one(rss), one(footprint)))
}

/// The kept lives of `backend` among `lives` whose figures are the same as kept and that were
/// thinned to at most `points` points (the others are left out), by (pid, process start).
pub fn read(
    conn: &Connection,
    backend: &str,
    lives: &[IdleLife],
    points: usize,
) -> rusqlite::Result<BTreeMap<(u32, i64), KeptLife>> {
    let mut out = BTreeMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT first_at, last_at, samples, with_footprint, points, rss, footprint FROM life_points
         WHERE backend = ?1 AND pid = ?2 AND proc_started_at = ?3",
    )?;
    for life in lives {
        let kept = stmt
            .query_row(params![backend, life.pid, life.proc_started_at], |r| {
                let figures = kept_figures(life, r)?;
                if figures != *life || r.get::<_, i64>(4)? != points as i64 {
                    return Ok(None);
                }
                let (Some(rss), Some(footprint)) =
                    (decode(r.get_ref(5)?.as_blob()?, points), decode(r.get_ref(6)?.as_blob()?, points))
                else {
                    return Ok(None);
                };
                Ok(Some(KeptLife { life: figures, rss, footprint }))
            })
            .optional()?
            .flatten();
        if let Some(kept) = kept {
            out.insert((life.pid, life.proc_started_at), kept);
        }
    }
    Ok(out)
}

/// Points as 24 bytes each: time, bytes, last sample's time, little-endian.
fn encode(points: &[Point]) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.len() * 24);
    for p in points {
        out.extend_from_slice(&p.at_ms.to_le_bytes());
        out.extend_from_slice(&p.bytes.to_le_bytes());
        out.extend_from_slice(&p.last_ms.to_le_bytes());
    }
    out
}

fn decode(bytes: &[u8], points: usize) -> Option<Vec<Point>> {
    if !bytes.len().is_multiple_of(24) || bytes.len() > 24 * (points + 1) {
        return None;
    }
    let word = |c: &[u8], i: usize| -> [u8; 8] { c[i * 8..i * 8 + 8].try_into().expect("8 bytes") };
    Some(
        bytes
            .chunks_exact(24)
            .map(|c| Point {
                at_ms: i64::from_le_bytes(word(c, 0)),
                bytes: f64::from_le_bytes(word(c, 1)),
                last_ms: i64::from_le_bytes(word(c, 2)),
            })
            .collect(),
    )
}

#[cfg(test)]
#[path = "life_points_tests.rs"]
pub(crate) mod tests;
