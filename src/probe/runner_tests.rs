//! The runner in-process, on paused time, against a scripted backend (`backend::fake`): the
//! closed and open loops, the time bound, cancellation, and every stamp it records — exact to
//! the delays the script played, because stamps and deadlines read the same (paused) clock.

use super::*;
use crate::backend::fake::{FakeBackend, Step};
use crate::config::BackendKind;
use crate::measure::Delta;
use crate::probe::evidence::Collector;
use crate::probe::machine::Machine;
use crate::probe::sampler::Sampler;
use crate::store::Writer;
use rusqlite::Connection;
use std::path::Path;

const MS: Duration = Duration::from_millis(1);

/// A reply: head after `ttft_ms`, then one token, then a token after each of `gaps_ms`.
fn reply(ttft_ms: u64, gaps_ms: &[u64]) -> Vec<Step> {
    let mut s = vec![Step::Wait(MS * ttft_ms as u32), Step::Head, Step::Token(Delta::Content, "a")];
    for g in gaps_ms {
        s.extend([Step::Wait(MS * *g as u32), Step::Token(Delta::Content, "b")]);
    }
    s.push(Step::Finish("stop"));
    s
}

fn job(fields: &str) -> Job {
    let text = format!("[[job]]\nname = \"j\"\ncron = \"0 * * * * *\"\nbackends = [\"t\"]\n{fields}\n");
    let mut schedules = crate::schedule::parse_file(&text, Path::new("t.toml"), None).unwrap_or_else(|p| panic!("{p}"));
    schedules.jobs.remove(0)
}

/// Runs `job` against `fake` with a real writer on a temporary log; `stop_after` aborts the run
/// that long after it began. Returns the run's result and the log (in a folder removed on drop).
async fn run_with(fake: FakeBackend, job: &Job, stop_after: Option<Duration>) -> (RunResult, Log) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let backend = crate::backend::test_config(BackendKind::OpenAi, "http://127.0.0.1:9", None);
    let shutdown = Shutdown::new();
    let writer = Writer::start(crate::store::open(&db).unwrap(), db.clone());
    let evidence = Arc::new(Collector::new(&backend));
    let sampler = Sampler::start(
        backend.name.clone(),
        backend.process.clone(),
        Default::default(),
        writer.handle(),
        evidence.clone(),
        db.clone(),
        shutdown.clone(),
    );
    let adapters = Arc::new(Adapters::default());
    adapters.insert(&backend, &job.workload.timeouts, Arc::new(fake));
    let target = Target {
        writer: writer.handle(),
        machine: Arc::new(Machine::for_log(&db)),
        sampler: sampler.handle(),
        adapters,
        evidence,
    };
    if let Some(after) = stop_after {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            stop.stop();
            stop.abort();
        });
    }
    let spec = RunSpec { job, backend: &backend, trigger: Trigger::Once, planned_at: now_ms() };
    let result = run(spec, &target, &shutdown, None).await;
    drop(target);
    writer.finish();
    (result, Log { conn: Connection::open(&db).unwrap(), _dir: dir })
}

/// A finished run's log.
struct Log {
    conn: Connection,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Log {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

/// Each request's row: (seq, outcome, first_byte, ttft, first_content, e2e, gap p50, gap max,
/// gap since the previous, started_at − intended_at).
type Row =
    (i64, String, Option<f64>, Option<f64>, Option<f64>, Option<f64>, Option<f64>, Option<f64>, Option<f64>, i64);

fn rows(conn: &Connection) -> Vec<Row> {
    let mut stmt = conn
        .prepare(
            "SELECT seq, outcome, first_byte_ms, ttft_ms, first_content_ms, e2e_ms, gap_p50_ms, gap_max_ms, gap_ms,
                    started_at - intended_at FROM requests ORDER BY seq",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// `a` is `b` (to floating-point precision: stamps on paused time are exact).
fn same(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[tokio::test(start_paused = true)]
async fn closed_loop_stamps_are_the_scripted_delays() {
    let job = job("requests = 3\nconcurrency = 1\ndelay_ms = 500");
    let (result, conn) = run_with(FakeBackend::always(reply(100, &[20, 30])), &job, None).await;
    assert_eq!((result.status, result.requests_done), (RunStatus::Completed, 3));
    let rows = rows(&conn);
    assert_eq!(rows.len(), 3);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.1, "ok", "{r:?}");
        assert!(same(r.2, 100.0) && same(r.3, 100.0) && same(r.4, 100.0), "first byte, TTFT, first content: {r:?}");
        assert!(same(r.5, 150.0), "end to end: {r:?}");
        assert!(same(r.6, 25.0) && same(r.7, 30.0), "inter-token gaps p50 and max: {r:?}");
        match i {
            0 => assert_eq!(r.8, None, "the first request has no previous one"),
            _ => assert!(same(r.8, 500.0), "the pause after the previous request: {r:?}"),
        }
        assert_eq!(r.9, 0, "a closed loop starts each request when it intends to: {r:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn open_loop_keeps_its_timetable_and_records_how_late_a_busy_server_made_it() {
    // 10 requests/s, each taking 250 ms: one worker falls behind by 150 ms a request; two keep
    // up after the first pair.
    let (_, conn) = run_with(FakeBackend::always(reply(250, &[])), &job("requests = 4\nrate_per_s = 10.0"), None).await;
    let late: Vec<i64> = rows(&conn).iter().map(|r| r.9).collect();
    assert_eq!(late, [0, 150, 300, 450]);
    let job2 = job("requests = 4\nconcurrency = 2\nrate_per_s = 10.0");
    let (_, conn) = run_with(FakeBackend::always(reply(250, &[])), &job2, None).await;
    let late: Vec<i64> = rows(&conn).iter().map(|r| r.9).collect();
    assert_eq!(late, [0, 0, 50, 50]);
}

#[tokio::test(start_paused = true)]
async fn the_time_bound_ends_a_run_before_its_request_count() {
    // 100 ms requests 300 ms apart within 1 s: they start at 0, 400 and 800 ms; the next would
    // start at 1,200 ms, past the bound.
    let job = job("requests = 100\nconcurrency = 1\ndelay_ms = 300\nmax_duration_s = 1");
    let (result, conn) = run_with(FakeBackend::always(reply(100, &[])), &job, None).await;
    assert_eq!((result.status, result.requests_done), (RunStatus::Completed, 3));
    assert_eq!(rows(&conn).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn failures_are_recorded_as_the_outcome_the_backend_gave() {
    let scripts = vec![
        reply(10, &[]),
        vec![Step::Wait(MS * 5), Step::Fail(Outcome::ConnectRefused, "connection refused")],
        vec![Step::Wait(MS * 40), Step::Head, Step::Token(Delta::Content, "a"), Step::Fail(Outcome::Stall, "no data")],
    ];
    let job = job("requests = 3\nconcurrency = 1\ndelay_ms = 0");
    let (result, conn) = run_with(FakeBackend::new(scripts), &job, None).await;
    assert_eq!(result.requests_done, 3);
    let rows = rows(&conn);
    let outcomes: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(outcomes, ["ok", "connect_refused", "stall"]);
    assert!(same(rows[2].3, 40.0), "a stalled reply keeps its TTFT: {:?}", rows[2]);
    let error: String = conn.query_row("SELECT error FROM requests WHERE seq = 1", [], |r| r.get(0)).unwrap();
    assert_eq!(error, "connection refused");
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_the_request_in_flight_and_the_run() {
    let job = job("requests = 5\nconcurrency = 1\ndelay_ms = 0");
    let (result, conn) = run_with(FakeBackend::always(reply(10_000, &[])), &job, Some(Duration::from_secs(1))).await;
    assert_eq!(result.status, RunStatus::Cancelled);
    let rows = rows(&conn);
    assert_eq!(rows.len(), 1, "no request starts after the stop: {rows:?}");
    assert_eq!(rows[0].1, "cancelled");
    assert!(same(rows[0].5, 1000.0), "it ended when soakd stopped: {:?}", rows[0]);
    let status: String = conn.query_row("SELECT status FROM runs", [], |r| r.get(0)).unwrap();
    assert_eq!(status, "cancelled");
}
