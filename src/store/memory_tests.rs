//! The memory hour sums (migration 0008) against the samples they sum: for windows that start and
//! end anywhere in an hour, the lives and the peak read through `memory_hours` equal those read
//! from every sample; retention takes an hour's sums with its samples.

use super::*;
use rusqlite::params;

const HOUR: i64 = 3_600_000;
const T0: i64 = 1_780_000_000_000 - 1_780_000_000_000 % HOUR;

/// xorshift: the same "random" samples every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Eight hours of samples from three lives (one with a pid reused after a restart), with samples
/// in flight, without a process, without an RSS and without a footprint among them.
fn log() -> rusqlite::Connection {
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    super::super::MIGRATIONS.to_latest(&mut conn).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut at = T0 + 17;
    while at < T0 + 8 * HOUR {
        let life = match at - T0 {
            t if t < 3 * HOUR => (Some(42), Some(1_000)),
            t if t < 5 * HOUR => (Some(42), Some(2_000)),
            _ => (Some(77), None),
        };
        let pid = if rng.below(20) == 0 { None } else { life.0 };
        let rss = if rng.below(25) == 0 { None } else { Some(1_000_000 + rng.below(500_000) as i64) };
        let footprint = if rng.below(3) == 0 { None } else { Some(900_000 + rng.below(400_000) as i64) };
        let backend = if rng.below(4) == 0 { "b" } else { "a" };
        conn.execute(
            "INSERT INTO memory_samples (backend, pid, proc_started_at, taken_at, phase, in_flight, rss_bytes,
                footprint_bytes) VALUES (?1, ?2, ?3, ?4, 'idle', ?5, ?6, ?7)",
            params![backend, pid, life.1, at, rng.below(3) as i64 % 2, rss, footprint],
        )
        .unwrap();
        at += 1 + rng.below(40_000) as i64;
    }
    conn
}

/// The lives and the peak from every sample, as the queries did before migration 0008.
fn from_samples(conn: &rusqlite::Connection, backend: &str, from: i64, to: i64) -> (Vec<IdleLife>, Option<i64>) {
    let lives = conn
        .prepare(
            "SELECT pid, coalesce(proc_started_at, 0), count(*), count(footprint_bytes), min(taken_at), max(taken_at)
             FROM memory_samples
             WHERE backend = ?1 AND taken_at >= ?2 AND taken_at < ?3 AND in_flight = 0
               AND pid IS NOT NULL AND rss_bytes IS NOT NULL
             GROUP BY 1, 2 ORDER BY 5",
        )
        .unwrap()
        .query_map(params![backend, from, to], |r| {
            Ok(IdleLife {
                pid: r.get(0)?,
                proc_started_at: r.get(1)?,
                samples: r.get::<_, i64>(2)? as u64,
                with_footprint: r.get::<_, i64>(3)? as u64,
                first_ms: r.get(4)?,
                last_ms: r.get(5)?,
            })
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let peak = conn
        .query_row(
            "SELECT max(rss_bytes) FROM memory_samples WHERE backend = ?1 AND taken_at >= ?2 AND taken_at < ?3",
            params![backend, from, to],
            |r| r.get(0),
        )
        .unwrap();
    (lives, peak)
}

#[test]
fn whole_hours_lie_inside_the_window() {
    assert_eq!(whole_hours(T0, T0 + 3 * HOUR), (T0, T0 + 3 * HOUR));
    assert_eq!(whole_hours(T0 + 1, T0 + 3 * HOUR - 1), (T0 + HOUR, T0 + 2 * HOUR));
    // Inside one hour: no whole hour, and the edges cover the window.
    assert_eq!(whole_hours(T0 + 10, T0 + 20), (T0 + 20, T0 + 20));
    assert_eq!(whole_hours(T0 + 10, T0 + HOUR + 20), (T0 + HOUR, T0 + HOUR));
}

#[test]
fn lives_and_peak_from_the_hour_sums_equal_those_from_every_sample() {
    let conn = log();
    let sums: i64 = conn.query_row("SELECT sum(samples) FROM memory_hours", [], |r| r.get(0)).unwrap();
    let rows: i64 = conn.query_row("SELECT count(*) FROM memory_samples", [], |r| r.get(0)).unwrap();
    assert_eq!(sums, rows, "every sample is summed once");
    let mut rng = Rng(7);
    let mut compared = 0;
    for _ in 0..60 {
        let from = T0 - HOUR + rng.below(9 * HOUR as u64) as i64;
        let to = from + rng.below(9 * HOUR as u64) as i64;
        for backend in ["a", "b", "none"] {
            let (lives, peak) = from_samples(&conn, backend, from, to);
            assert_eq!(idle_lives(&conn, backend, from, to).unwrap(), lives, "{backend} [{from}, {to})");
            assert_eq!(memory_extremes(&conn, backend, from, to).unwrap().0, peak.map(|p| p as u64));
            compared += lives.len();
        }
    }
    assert!(compared > 60, "the windows held lives to compare ({compared})");
}

#[test]
fn the_migration_sums_samples_written_before_it() {
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    super::super::MIGRATIONS.to_version(&mut conn, 7).unwrap();
    for (i, at) in [T0 + 5, T0 + HOUR + 5, T0 + HOUR + 9].into_iter().enumerate() {
        conn.execute(
            "INSERT INTO memory_samples (backend, pid, proc_started_at, taken_at, phase, in_flight, rss_bytes)
             VALUES ('a', 42, 1000, ?1, 'idle', 0, ?2)",
            params![at, 1_000 + i as i64],
        )
        .unwrap();
    }
    super::super::MIGRATIONS.to_latest(&mut conn).unwrap();
    let lives = idle_lives(&conn, "a", T0, T0 + 2 * HOUR).unwrap();
    assert_eq!((lives.len(), lives[0].samples, lives[0].first_ms, lives[0].last_ms), (1, 3, T0 + 5, T0 + HOUR + 9));
    assert_eq!(memory_extremes(&conn, "a", T0, T0 + 2 * HOUR).unwrap().0, Some(1_002));
}

#[test]
fn retention_takes_an_hours_sums_with_its_samples() {
    let mut conn = log();
    let pruned = crate::store::retention::prune(&mut conn, T0 + 2 * HOUR + 86_400_000, 1.0).unwrap();
    assert!(pruned.samples > 0);
    let left: i64 =
        conn.query_row("SELECT count(*) FROM memory_hours WHERE hour_at < ?1", [T0 + 2 * HOUR], |r| r.get(0)).unwrap();
    assert_eq!(left, 0);
    for backend in ["a", "b"] {
        let (lives, peak) = from_samples(&conn, backend, T0, T0 + 8 * HOUR);
        assert_eq!(idle_lives(&conn, backend, T0, T0 + 8 * HOUR).unwrap(), lives);
        assert_eq!(memory_extremes(&conn, backend, T0, T0 + 8 * HOUR).unwrap().0, peak.map(|p| p as u64));
    }
}

#[test]
fn idle_memory_from_the_hour_sums_equals_the_samples_averaged() {
    let conn = log();
    let mut rng = Rng(11);
    let mut buckets = 0;
    for _ in 0..40 {
        let from = T0 - HOUR + rng.below(9 * HOUR as u64) as i64;
        let to = from + rng.below(9 * HOUR as u64) as i64;
        for bucket_ms in [HOUR, 2 * HOUR, 5 * 60_000] {
            let expected: Vec<MemoryBucket> = conn
                .prepare(
                    "SELECT pid, coalesce(proc_started_at, 0), CAST(avg(taken_at) AS INTEGER), avg(rss_bytes),
                            CASE WHEN count(footprint_bytes) = count(*) THEN avg(footprint_bytes) END
                     FROM memory_samples
                     WHERE backend = 'a' AND taken_at >= ?1 AND taken_at < ?2 AND in_flight = 0
                       AND pid IS NOT NULL AND rss_bytes IS NOT NULL
                     GROUP BY pid, proc_started_at, taken_at / ?3
                     ORDER BY min(taken_at)",
                )
                .unwrap()
                .query_map(params![from, to, bucket_ms], |r| {
                    Ok(MemoryBucket {
                        pid: r.get(0)?,
                        proc_started_at: r.get(1)?,
                        at_ms: r.get(2)?,
                        rss_bytes: r.get(3)?,
                        footprint_bytes: r.get(4)?,
                    })
                })
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let got = idle_memory(&conn, "a", from, to, bucket_ms).unwrap();
            assert_eq!(got.len(), expected.len(), "[{from}, {to}) by {bucket_ms}");
            for (g, e) in got.iter().zip(&expected) {
                assert_eq!((g.pid, g.proc_started_at, g.at_ms), (e.pid, e.proc_started_at, e.at_ms));
                assert!((g.rss_bytes - e.rss_bytes).abs() < 1e-6 * e.rss_bytes);
                assert_eq!(g.footprint_bytes.is_some(), e.footprint_bytes.is_some());
                if let (Some(g), Some(e)) = (g.footprint_bytes, e.footprint_bytes) {
                    assert!((g - e).abs() < 1e-6 * e);
                }
            }
            buckets += got.len();
        }
    }
    assert!(buckets > 200, "the windows held buckets to compare ({buckets})");
}
