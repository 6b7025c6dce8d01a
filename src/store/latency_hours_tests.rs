use super::*;
use crate::measure::distribution::Distribution;

const H: i64 = HOUR_MS;
/// A Monday, 00:00 UTC.
pub(crate) const T0: i64 = 1_764_547_200_000;

pub(crate) fn log() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = crate::store::open(&dir.path().join("log.db")).unwrap();
    conn.execute(
        "INSERT INTO runs (id, job, backend, trigger, status, planned_at, started_at, requests_planned, concurrency,
             delay_ms, stream, max_tokens, backend_kind, base_url, owner_pid, owner_started_at)
         VALUES (1, 'soak', 'a', 'cron', 'completed', 0, 0, 1, 1, 0, 1, 16, 'openai', 'http://127.0.0.1:1', 1, 1)",
        [],
    )
    .unwrap();
    (dir, conn)
}

/// `n` requests from `from` on, `step` ms apart: every seventh fails, every fifth ran beside
/// another backend, every third is not streamed; latencies spread over two decades.
pub(crate) fn requests(conn: &Connection, backend: &str, from: i64, n: i64, step: i64) {
    conn.execute(
        "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < ?3)
         INSERT INTO requests (run_id, backend, job, worker, seq, intended_at, started_at, outcome, stream,
             concurrency, prompt_name, prompt_chars, max_tokens, ttft_ms, first_content_ms, e2e_ms, decode_tps, output_tps,
             machine_in_flight)
         SELECT 1, ?1, 'soak', 0, i, ?2 + i * ?4, ?2 + i * ?4, CASE WHEN i % 7 = 3 THEN 'http_error' ELSE 'ok' END,
                i % 3 <> 0, 1, 'p', 100, 16, 20 + (i * 7919) % 2000, 25 + (i * 104729) % 3000, 200 + (i * 1299709) % 9000,
                CASE WHEN i % 3 <> 0 THEN 10 + (i * 15485863) % 9000 / 100.0 END, 5 + (i * 32452843) % 5000 / 100.0, i % 5 = 1
         FROM k",
        params![backend, from, n, step],
    )
    .unwrap();
}

fn kept(conn: &Connection, backend: &str) -> Vec<HourSketch> {
    let mut out = Vec::new();
    read(conn, backend, i64::MIN, i64::MAX, |k| match k {
        Kept::Hour(h) => out.push(*h),
        Kept::Unreadable { hour_at } => panic!("hour {hour_at} unreadable"),
    })
    .unwrap();
    out
}

#[test]
fn the_hours_that_are_over_are_kept_and_merge_into_the_sketch_the_rows_build() {
    let (_dir, mut conn) = log();
    // 3.5 hours of requests, one every 2 s.
    requests(&conn, "a", T0, 6_300, 2_000);
    // 20 minutes after the third hour ended: three hours are over and settled, the fourth is not.
    let done = fill(&mut conn, T0 + 3 * H + SETTLE_MS + 1, &|| false).unwrap();
    assert_eq!(done.hours, 3);
    let kept = kept(&conn, "a");
    let hours: Vec<i64> = kept.iter().map(|h| h.hour_at).collect();
    assert_eq!(hours.iter().collect::<std::collections::BTreeSet<_>>().len(), 3);
    assert!(hours.iter().all(|h| (T0..T0 + 3 * H).contains(h)));
    // Per hour and mode, the sketch holds exactly that hour's successful requests.
    for h in &kept {
        let ok: i64 = conn
            .query_row(
                "SELECT count(*) FROM requests WHERE backend = 'a' AND outcome = 'ok' AND started_at >= ?1
                 AND started_at < ?2 AND stream = ?3 AND (machine_in_flight > 0) = ?4",
                params![h.hour_at, h.hour_at + H, h.stream, h.contended],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(h.ok, ok as u64);
        assert_eq!(h.sketch(Measure::Ttft).count() as u64, h.ok);
        let decode = h.sketch(Measure::DecodeTps).count() as u64;
        assert_eq!(decode, if h.stream { h.ok } else { 0 }, "decode rates only where streamed");
    }
    // Merged, the stored hours give the sketch of the rows' own values: the same percentiles.
    let mut from_rows = Distribution::default();
    let mut from_hours = Distribution::default();
    conn.prepare("SELECT e2e_ms FROM requests WHERE outcome = 'ok' AND started_at < ?1")
        .unwrap()
        .query_map([T0 + 3 * H], |r| r.get::<_, f64>(0))
        .unwrap()
        .for_each(|v| from_rows.push(v.unwrap()));
    // Past the exact values, both are sketches.
    (0..70_000).for_each(|_| from_rows.push(1e6));
    (0..70_000).for_each(|_| from_hours.push(1e6));
    for h in &kept {
        from_hours.merge_sketch(h.sketch(Measure::E2e)).unwrap();
    }
    from_rows.finish();
    from_hours.finish();
    assert_eq!(from_rows.len(), from_hours.len());
    for p in [1.0, 5.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0] {
        assert_eq!(from_rows.percentile(p), from_hours.percentile(p), "p{p}");
    }
}

#[test]
fn hours_with_a_request_in_flight_wait_and_a_later_pass_keeps_them() {
    let (_dir, mut conn) = log();
    requests(&conn, "a", T0, 3_600, 2_000);
    conn.execute("UPDATE requests SET outcome = 'in_flight' WHERE seq = 2000", []).unwrap();
    let in_flight_hour = T0 + (2_000 * 2_000 / H) * H;
    fill(&mut conn, T0 + 3 * H, &|| false).unwrap();
    let hours: std::collections::BTreeSet<i64> = kept(&conn, "a").iter().map(|h| h.hour_at).collect();
    assert!(!hours.contains(&in_flight_hour), "{hours:?}");
    assert!(hours.contains(&T0));
    // Marked interrupted at the next start: the next pass (a day back from the last hour kept)
    // keeps it, and keeping again changes nothing else.
    conn.execute("UPDATE requests SET outcome = 'interrupted' WHERE seq = 2000", []).unwrap();
    let before = kept(&conn, "a").iter().map(|h| (h.hour_at, h.stream, h.contended, h.ok)).collect::<Vec<_>>();
    fill(&mut conn, T0 + 3 * H, &|| false).unwrap();
    let after = kept(&conn, "a");
    assert!(after.iter().any(|h| h.hour_at == in_flight_hour));
    let again: Vec<_> = after
        .iter()
        .filter(|h| h.hour_at != in_flight_hour)
        .map(|h| (h.hour_at, h.stream, h.contended, h.ok))
        .collect();
    assert_eq!(again, before);
}

#[test]
fn a_sketch_that_does_not_decode_is_reported_not_used() {
    let (_dir, mut conn) = log();
    requests(&conn, "a", T0, 1_800, 2_000);
    fill(&mut conn, T0 + 2 * H, &|| false).unwrap();
    conn.execute("UPDATE latency_hours SET e2e = x'ff00ff' WHERE stream = 1 AND contended = 0", []).unwrap();
    let mut unreadable = Vec::new();
    let mut readable = 0;
    read(&conn, "a", i64::MIN, i64::MAX, |k| match k {
        Kept::Hour(_) => readable += 1,
        Kept::Unreadable { hour_at } => unreadable.push(hour_at),
    })
    .unwrap();
    assert_eq!(unreadable, [T0]);
    assert_eq!(readable, 3);
    // A sketch with other bins (another relative error) is refused too.
    let mut other = DDSketch::new(sketches_ddsketch::Config::new(0.05, 2048, 1e-9));
    other.add(12.0);
    assert!(decode(&other.to_java_bytes()).is_none());
    assert!(
        decode(
            &encode(&{
                let mut s = new_sketch();
                s.add(12.0);
                s
            })
            .unwrap()
        )
        .is_some()
    );
}

#[test]
fn a_pass_stops_between_transactions_when_asked() {
    let (_dir, mut conn) = log();
    requests(&conn, "a", T0, 200, 60 * 60_000 / 4);
    let asked = std::cell::Cell::new(0);
    let stop = || {
        asked.set(asked.get() + 1);
        asked.get() > 1
    };
    fill(&mut conn, T0 + 60 * H, &stop).unwrap();
    let hours: std::collections::BTreeSet<i64> = kept(&conn, "a").iter().map(|h| h.hour_at).collect();
    assert_eq!(hours.len(), HOURS_PER_TRANSACTION, "one transaction's hours, then stopped");
    fill(&mut conn, T0 + 60 * H, &|| false).unwrap();
    let hours: std::collections::BTreeSet<i64> = kept(&conn, "a").iter().map(|h| h.hour_at).collect();
    assert_eq!(hours.len(), 50, "200 requests 15 min apart span 50 hours");
}
