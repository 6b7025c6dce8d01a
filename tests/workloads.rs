//! Load shapes, end to end against `soakd sim`: the pause between a worker's requests, several
//! workers at once, an open-loop timetable, and the time bound on a run.

use crate::common;
use crate::common::{db, one, soakd, start_sim, write_config};
use rusqlite::Connection;

fn run(sim_args: &[&str], job: &str) -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(sim_args, dir.path());
    let config = write_config(
        dir.path(),
        &common::backend("sim", sim.port),
        &format!("[[job]]\nname = \"j\"\ncron = \"@hourly\"\n{job}"),
    );
    let (code, out, err) = soakd(&["once", "j", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let conn = db(dir.path());
    (dir, conn)
}

fn column(conn: &Connection, sql: &str) -> Vec<i64> {
    conn.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

#[test]
fn delay_spaces_a_workers_requests() {
    let (_dir, conn) =
        run(&["--ttft-ms", "10", "--tokens-per-s", "1000"], "requests = 4\ndelay_ms = 300\nmax_tokens = 4\n");
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE outcome = 'ok'"), 4);
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE gap_ms IS NULL"), 1, "only the first has no gap");
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE gap_ms >= 300"), 3);
    // Closed loop: each request was meant to start `delay_ms` after the previous one ended.
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE started_at - intended_at BETWEEN 0 AND 200"), 4);
}

#[test]
fn workers_run_at_once_and_share_the_requests() {
    let (_dir, conn) = run(
        &["--ttft-ms", "400", "--tokens-per-s", "1000", "--jitter", "0"],
        "requests = 6\nconcurrency = 3\nmax_tokens = 4\n",
    );
    assert_eq!(column(&conn, "SELECT DISTINCT worker FROM requests ORDER BY worker"), [0, 1, 2]);
    assert_eq!(column(&conn, "SELECT count(*) FROM requests GROUP BY worker"), [2, 2, 2]);
    // Six 400 ms requests, three at a time: about two rounds, not six.
    let span: i64 = one(&conn, "SELECT max(started_at) - min(started_at) FROM requests");
    assert!(span < 1500, "the last request started {span} ms after the first");
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE concurrency = 3"), 6);
    // The sampler saw requests in flight together.
    assert!(one::<i64>(&conn, "SELECT max(in_flight) FROM memory_samples") >= 2);
}

#[test]
fn open_loop_rate_keeps_its_timetable_and_shows_the_lag() {
    // 20 requests/s planned, but each takes ~250 ms on one worker: starts fall behind.
    let (_dir, conn) = run(
        &["--ttft-ms", "200", "--tokens-per-s", "100", "--jitter", "0"],
        "requests = 6\nrate_per_s = 20.0\nmax_tokens = 4\n",
    );
    let intended = column(&conn, "SELECT intended_at FROM requests ORDER BY seq");
    let steps: Vec<i64> = intended.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(steps.iter().all(|s| (45..=55).contains(s)), "the timetable is every 50 ms: {steps:?}");
    let lags = column(&conn, "SELECT started_at - intended_at FROM requests ORDER BY seq");
    assert!(lags[5] > 800 && lags[5] > lags[1], "a busy server makes starts late: {lags:?}");
}

#[test]
fn max_duration_bounds_a_run() {
    let (_dir, conn) =
        run(&["--ttft-ms", "50", "--tokens-per-s", "1000"], "requests = 100000\nmax_duration_s = 1\nmax_tokens = 4\n");
    let done: i64 = one(&conn, "SELECT requests_done FROM runs");
    assert!((2..100_000).contains(&done), "{done} requests in a 1 s run");
    assert_eq!(one::<String>(&conn, "SELECT status FROM runs"), "completed");
    let span: i64 = one(&conn, "SELECT finished_at - started_at FROM runs");
    assert!(span < 3000, "the run lasted {span} ms");
}

#[test]
fn back_to_back_requests_are_sampled_with_none_in_flight_at_most_every_20_ms() {
    // Zero-delay replies one after another, one in ten an HTTP 500.
    let (_dir, conn) = run(
        &["--ttft-ms", "0", "--tokens-per-s", "100000", "--fault", "http500=0.1", "--seed", "11"],
        "requests = 400\nmax_tokens = 4\n",
    );
    let quiet = "FROM memory_samples WHERE phase IN ('before', 'after')";
    // A `before` sample precedes its request's sending, and an `after` the next one's.
    assert_eq!(one::<i64>(&conn, &format!("SELECT count(*) {quiet} AND in_flight <> 0")), 0);
    let requests: i64 = one(&conn, "SELECT count(*) FROM requests");
    let failed: i64 = one(&conn, "SELECT count(*) FROM requests WHERE outcome <> 'ok'");
    let span: i64 = one(&conn, "SELECT max(started_at) - min(started_at) FROM requests");
    let before: i64 = one(&conn, "SELECT count(*) FROM memory_samples WHERE phase = 'before'");
    assert_eq!(requests, 400);
    assert!(failed > 0, "the sim failed some requests");
    // One `before` at most per 20 ms, besides those after a failure (however slow this machine's
    // requests, so the bound is what is checked, not a count).
    assert!(before >= 1);
    assert!(before <= failed + span / 20 + 2, "{before} before samples, {failed} failures, over {span} ms");
    // The request after a failure has its `before` sample, whatever the last one's age.
    let unsampled: i64 = one(
        &conn,
        "SELECT count(*) FROM requests f JOIN requests n ON n.seq = f.seq + 1
          WHERE f.outcome <> 'ok' AND NOT EXISTS (
                SELECT 1 FROM memory_samples s WHERE s.phase = 'before'
                   AND s.taken_at BETWEEN f.started_at AND n.started_at)",
    );
    assert_eq!(unsampled, 0, "requests after a failure without a before sample");
    // The run's last request has its `after`.
    let last_after: i64 = one(&conn, "SELECT max(taken_at) FROM memory_samples WHERE phase = 'after'");
    let last_start: i64 = one(&conn, "SELECT max(started_at) FROM requests");
    assert!(last_after >= last_start, "the last after sample at {last_after}, the last request began at {last_start}");
}
