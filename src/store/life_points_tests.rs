use super::*;

/// What the leak analysis keeps of a life (the layer above says; this is its number today).
const POINTS: usize = 300;

pub(crate) const T0: i64 = 1_780_000_000_000 - 1_780_000_000_000 % HOUR_MS;

/// Eight hours of samples of backend `a`, one every 5 s: a life of 3 h (2,160 samples: thinned),
/// a short one of 15 min (180: kept as they are), then one still running; every seventh sample
/// in flight, every eleventh without a footprint. Backend `b` samples beside it, in the same
/// hours.
pub(crate) fn log() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = crate::store::open(&dir.path().join("log.db")).unwrap();
    conn.execute(
        "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < 5760)
         INSERT INTO memory_samples (backend, pid, proc_started_at, taken_at, phase, in_flight, rss_bytes,
             footprint_bytes)
         SELECT CASE WHEN i % 5 = 4 THEN 'b' ELSE 'a' END,
                CASE WHEN i < 2160 THEN 42 WHEN i < 2340 THEN 43 ELSE 77 END,
                CASE WHEN i < 2160 THEN 1000 WHEN i < 2340 THEN 2000 ELSE 3000 END,
                ?1 + i * 5000, 'idle', i % 7 = 3,
                1000000000 + i * 20000 + (i * 7919) % 5000000,
                CASE WHEN i % 11 <> 5 THEN 900000000 + i * 30000 + (i * 104729) % 3000000 END
         FROM k",
        [T0],
    )
    .unwrap();
    (dir, conn)
}

fn lives(conn: &Connection) -> Vec<IdleLife> {
    idle_lives(conn, "a", i64::MIN / 2, i64::MAX / 2).unwrap()
}

/// The points of `life` thinned from its samples, as the report would stream them.
fn streamed(conn: &Connection, life: &IdleLife, footprint: bool) -> Vec<Point> {
    let mut t = Thinner::new([life], POINTS);
    super::super::memory::each_idle_sample(conn, "a", i64::MIN / 2, i64::MAX / 2, |s| {
        if let Some(b) = if footprint { s.footprint_bytes } else { Some(s.rss_bytes) } {
            t.push(&s, b);
        }
    })
    .unwrap();
    t.finish().pop().unwrap()
}

#[test]
fn lives_that_are_over_are_kept_with_the_points_their_samples_give() {
    let (_dir, conn) = log();
    let all = lives(&conn);
    assert_eq!(all.iter().map(|l| l.pid).collect::<Vec<_>>(), [42, 43, 77]);
    // Half an hour after the last sample: the first two lives have been quiet an hour or more,
    // on both backends.
    let now = T0 + 8 * HOUR_MS + HOUR_MS / 2;
    assert_eq!(fill(&conn, now, POINTS, &|| false).unwrap(), 4);
    let kept = read(&conn, "a", &all, POINTS).unwrap();
    assert_eq!(kept.keys().copied().collect::<Vec<_>>(), [(42, 1000), (43, 2000)]);
    for life in &all[..2] {
        let k = &kept[&(life.pid, life.proc_started_at)];
        assert_eq!(k.life, *life);
        assert_eq!(k.rss, streamed(&conn, life, false));
        assert_eq!(k.footprint, streamed(&conn, life, true));
    }
    let long = &kept[&(42, 1000)];
    assert!(long.rss.len() <= POINTS && long.rss.len() > POINTS / 2, "{}", long.rss.len());
    assert_eq!(kept[&(43, 2000)].rss.len() as u64, all[1].samples, "a short life's samples as they are");
    // Kept again: nothing to do.
    assert_eq!(fill(&conn, now, POINTS, &|| false).unwrap(), 0);
}

#[test]
fn points_kept_from_other_samples_are_not_taken() {
    let (_dir, conn) = log();
    fill(&conn, T0 + 9 * HOUR_MS, POINTS, &|| false).unwrap();
    // A sample committed late into the first life: its figures change, so its kept points are
    // not taken, and the next pass keeps them again from all its samples.
    conn.execute(
        "INSERT INTO memory_samples (backend, pid, proc_started_at, taken_at, phase, in_flight, rss_bytes)
         VALUES ('a', 42, 1000, ?1, 'idle', 0, 5000000000)",
        [T0 + 2_500],
    )
    .unwrap();
    let all = lives(&conn);
    assert!(!read(&conn, "a", &all, POINTS).unwrap().contains_key(&(42, 1000)));
    assert_eq!(fill(&conn, T0 + 9 * HOUR_MS, POINTS, &|| false).unwrap(), 1);
    let kept = read(&conn, "a", &all, POINTS).unwrap();
    assert_eq!(kept[&(42, 1000)].rss, streamed(&conn, &all[0], false));
    // A window that cuts a life gives other figures: its points come from its samples.
    let cut = idle_lives(&conn, "a", T0 + HOUR_MS, T0 + 9 * HOUR_MS).unwrap();
    assert!(!read(&conn, "a", &cut, POINTS).unwrap().contains_key(&(42, 1000)));
    // Nor are points thinned for another number of them (the analysis changed since).
    assert!(read(&conn, "a", &all, POINTS + 1).unwrap().is_empty());
    // Points that do not decode are not taken either.
    conn.execute("UPDATE life_points SET rss = x'0102' WHERE pid = 43", []).unwrap();
    assert!(!read(&conn, "a", &all, POINTS).unwrap().contains_key(&(43, 2000)));
}

#[test]
fn a_life_thinned_among_others_has_the_points_it_has_alone() {
    let (_dir, conn) = log();
    let all = lives(&conn);
    let mut together = Thinner::new(&all, POINTS);
    super::super::memory::each_idle_sample(&conn, "a", i64::MIN / 2, i64::MAX / 2, |s| together.push(&s, s.rss_bytes))
        .unwrap();
    let together = together.finish();
    for (life, points) in all.iter().zip(&together) {
        assert_eq!(*points, streamed(&conn, life, false));
        // Medians of their buckets: within the life's own range, in time order.
        assert!(points.windows(2).all(|w| w[0].last_ms < w[1].at_ms));
        assert!(points.iter().all(|p| p.at_ms <= p.last_ms && p.bytes >= 1e9 && p.bytes < 1.2e9));
    }
}
