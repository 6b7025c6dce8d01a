//! The writer driven as the daemon drives it: batches, a foreign lock, a full disk, a dead
//! process's rows; `run_start`, `start` and `end` build rows for `apply`'s tests too.

use super::*;
use crate::measure::outcome::Outcome;
use crate::measure::timeline::Measured;
use crate::store::rows::{Event, Phase};

pub(crate) fn run_start(job: &str, backend: &str) -> RunStart {
    RunStart {
        job: job.into(),
        backend: backend.into(),
        trigger: crate::measure::Trigger::Once,
        planned_at: 1,
        started_at: 2,
        requests_planned: 3,
        concurrency: 1,
        delay_ms: 0,
        stream: true,
        max_tokens: 16,
        backend_kind: "openai",
        base_url: "http://127.0.0.1:1".into(),
        model: None,
        server_pid: Some(42),
        detail: serde_json::json!({}),
    }
}

pub(crate) fn start(key: u64, run: RunKey) -> RequestStart {
    RequestStart {
        key,
        run,
        backend: "b".into(),
        job: "j".into(),
        worker: 0,
        seq: key as u32,
        intended_at: 10,
        started_at: 11,
        stream: true,
        concurrency: 1,
        prompt_name: "p".into(),
        prompt_chars: 5,
        max_tokens: 16,
        gap_ms: None,
        server_pid: Some(42),
        server_seq: Some(key),
        machine_in_flight: 0,
    }
}

pub(crate) fn end(key: u64, outcome: Outcome) -> RequestEnd {
    RequestEnd {
        key,
        outcome,
        http_status: Some(200),
        attempts: 1,
        measured: Measured { ttft_ms: Some(12.5), e2e_ms: 40.0, completion_tokens: Some(16), ..Default::default() },
        finish_reason: Some("length".into()),
        reasoning_seen: false,
        tool_call_seen: false,
        tool_call_valid: None,
        server_model: None,
        server: Default::default(),
        server_timings: None,
        output: "hi".into(),
        error: None,
        error_signature: None,
    }
}

#[tokio::test]
async fn a_burst_lands_in_few_transactions_and_pairs_starts_with_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let writer = Writer::start(super::super::open(&path).unwrap(), path.clone());
    let h = writer.handle();
    let run = h.begin_run(run_start("j", "b"));
    for key in 1..=1000 {
        h.request_started(start(key, run));
        h.request_finished(end(key, if key % 10 == 0 { Outcome::Stall } else { Outcome::Ok }));
    }
    h.request_started(start(5000, run));
    h.sample(MemorySample {
        backend: "b".into(),
        pid: Some(42),
        proc_started_at: Some(7),
        taken_at: 12,
        phase: Phase::After,
        in_flight: 0,
        processes: Some(2),
        rss_bytes: Some(1 << 20),
        footprint_bytes: None,
        sys_used_bytes: 1,
        sys_available_bytes: 2,
        swap_used_bytes: 0,
        run: Some(run),
    });
    h.end_run(run, RunStatus::Completed, 99, 1000);
    h.flush().await.unwrap();
    let stats = writer.finish();
    h.event(Event { backend: None, kind: crate::measure::EventKind::RunFailed, at: 1, detail: serde_json::json!({}) });
    assert_eq!(stats.operations, 2000 + 5);
    assert!(stats.transactions < 100, "batched: {stats:?}");

    let conn = super::super::open(&path).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM requests WHERE outcome = 'ok'"), 900);
    assert_eq!(count("SELECT count(*) FROM requests WHERE outcome = 'stall'"), 100);
    assert_eq!(count("SELECT count(*) FROM requests WHERE outcome = 'in_flight'"), 1);
    assert_eq!(count("SELECT count(*) FROM memory_samples WHERE rss_bytes = 1048576"), 1);
    assert_eq!(count("SELECT requests_done FROM runs"), 1000);
    let ttft: f64 = conn.query_row("SELECT ttft_ms FROM requests WHERE seq = 1", [], |r| r.get(0)).unwrap();
    assert_eq!(ttft, 12.5);
}

/// Another connection holds the write lock for 2 s: starting a run and its requests does not
/// wait, every row lands once it is released, and the wait is a `db_stall` event.
#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_write_lock_delays_no_sender_and_loses_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let writer = Writer::start(super::super::open(&path).unwrap(), path.clone());
    let h = writer.handle();
    h.flush().await.unwrap();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = {
        let path = path.clone();
        std::thread::spawn(move || {
            let conn = super::super::open(&path).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO events (kind, at) VALUES ('foreign', 0);").unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_secs(2));
            conn.execute_batch("COMMIT").unwrap();
        })
    };
    locked_rx.recv().unwrap();
    let sent = Instant::now();
    let run = h.begin_run(run_start("j", "b"));
    for key in 1..=50 {
        h.request_started(start(key, run));
        h.request_finished(end(key, Outcome::Ok));
    }
    h.end_run(run, RunStatus::Completed, 99, 50);
    assert!(sent.elapsed() < Duration::from_millis(500), "sending waited {:?}", sent.elapsed());
    assert!(h.run_id(run).await.is_some());
    holder.join().unwrap();
    drop(h);
    writer.finish();
    let conn = super::super::open(&path).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM requests WHERE outcome = 'ok'"), 50);
    assert_eq!(count("SELECT count(*) FROM runs WHERE status = 'completed'"), 1);
    let ms = count("SELECT json_extract(detail, '$.ms') FROM events WHERE kind = 'db_stall'");
    assert!((1_000..10_000).contains(&ms), "a db_stall of about 2 s: {ms}");
}

/// The disk fills up (here: the log reaches SQLite's page limit) for longer than the five
/// tries any other error gets: the rows wait in the queue, land once space is freed, and the
/// wait is a `db_stall` event that says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_holds_the_rows_until_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.db");
    let conn = super::super::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE pad (x BLOB); PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    for _ in 0..400 {
        conn.execute("INSERT INTO pad VALUES (zeroblob(4000))", []).unwrap();
    }
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| r.get::<_, i64>(0)).unwrap();
    let writer = Writer::start(conn, path.clone());
    let h = writer.handle();
    let run = h.begin_run(run_start("j", "b"));
    for key in 1..=500 {
        h.request_started(start(key, run));
        h.request_finished(end(key, Outcome::Ok));
    }
    h.end_run(run, RunStatus::Completed, 99, 500);
    std::thread::sleep(Duration::from_secs(4));
    let freer = super::super::open(&path).unwrap();
    freer.execute("DELETE FROM pad", []).unwrap();
    drop(freer);
    assert!(h.run_id(run).await.is_some());
    drop(h);
    let stats = writer.finish();
    assert!(stats.failed_transactions >= 5, "the disk was full for a while: {stats:?}");
    let conn = super::super::open(&path).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM requests WHERE outcome = 'ok'"), 500);
    assert_eq!(count("SELECT count(*) FROM runs WHERE status = 'completed'"), 1);
    let (ms, error): (i64, String) = conn
        .query_row(
            "SELECT json_extract(detail, '$.ms'), json_extract(detail, '$.error') FROM events WHERE kind = 'db_stall'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(ms >= 3_000, "a db_stall of about 4 s: {ms}");
    assert!(error.contains("full"), "{error}");
}

#[tokio::test]
async fn runs_of_a_dead_process_become_interrupted_but_live_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let writer = Writer::start(super::super::open(&path).unwrap(), path.clone());
    let h = writer.handle();
    let live = h.begin_run(run_start("live", "b"));
    h.request_started(start(1, live));
    let live = h.run_id(live).await.expect("the run was written");
    drop(h);
    writer.finish();
    let conn = super::super::open(&path).unwrap();
    // A run owned by a process that is gone (pid 1 with another start time).
    conn.execute(
        "INSERT INTO runs (job, backend, trigger, status, planned_at, started_at, requests_planned, concurrency,
             delay_ms, stream, max_tokens, backend_kind, base_url, owner_pid, owner_started_at)
         VALUES ('dead', 'b', 'cron', 'running', 1, 1, 5, 1, 0, 1, 16, 'openai', 'http://x', 1, 12345)",
        [],
    )
    .unwrap();
    let dead = conn.last_insert_rowid();
    conn.execute(
        "INSERT INTO requests (run_id, backend, job, worker, seq, intended_at, started_at, outcome, stream,
             concurrency, prompt_name, prompt_chars, max_tokens)
         VALUES (?1, 'b', 'dead', 0, 0, 5, 5, 'in_flight', 1, 1, 'p', 1, 16)",
        [dead],
    )
    .unwrap();
    let got = super::super::recover_interrupted(&conn, &path).unwrap();
    assert_eq!((got.runs, got.requests), (1, 1));
    let status =
        |id: i64| -> String { conn.query_row("SELECT status FROM runs WHERE id = ?1", [id], |r| r.get(0)).unwrap() };
    assert_eq!(status(dead), "interrupted");
    assert_eq!(status(live), "running", "this process is alive");
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM requests WHERE outcome = 'interrupted' AND error LIKE 'soakd (pid 1)%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
    let events: i64 =
        conn.query_row("SELECT count(*) FROM events WHERE kind = 'interrupted'", [], |r| r.get(0)).unwrap();
    assert_eq!(events, 1);
}
