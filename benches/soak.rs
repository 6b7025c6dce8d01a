//! Macro benchmarks, run with `cargo bench` (release build); each prints its figures.
//!
//! - runner: requests/s `soakd once` sustains against `soakd sim` (instant tokens), and the
//!   wall time per request soakd adds (runner + sampler + writer);
//! - accuracy: soakd's TTFT and decode tokens/s against the sim's known delay and rate;
//! - writer: request rows/s the single writer thread commits;
//! - samples: memory samples/s it commits, with the hour sums' trigger and the idle index
//!   (migration 0008) and, in the same run, on a log with both dropped.
//!
//! Both processes share this machine, so absolute numbers are the machine's; ratios and
//! errors are what to compare.

use rusqlite::Connection;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

mod common;

use common::{SOAKD, free_port, sim};

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    if run("runner") {
        runner();
    }
    if run("accuracy") {
        accuracy();
    }
    if run("writer") {
        writer();
    }
    if run("samples") {
        samples();
    }
}

/// Memory samples/s the writer commits (two in three idle), on a log as migrated and on one
/// without migration 0008's trigger and index: what keeping the hour sums costs a sample.
fn samples() {
    use soakd::measure::Phase;
    use soakd::store::rows::MemorySample;
    let n: u64 = 300_000;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut rates = Vec::new();
    for with_sums in [true, false, true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let conn = soakd::store::open(&path).unwrap();
        if !with_sums {
            conn.execute_batch("DROP TRIGGER memory_hours_insert; DROP INDEX memory_idle;").unwrap();
        }
        let took = rt.block_on(async {
            let writer = soakd::store::Writer::start(conn, path.clone());
            let h = writer.handle();
            let start = Instant::now();
            for i in 0..n {
                h.sample(MemorySample {
                    backend: "b".into(),
                    pid: Some(100 + (i / 50_000) as u32),
                    proc_started_at: Some(1_000 + i / 50_000),
                    taken_at: 1_790_000_000_000 + i as i64 * 250,
                    phase: if i % 3 == 0 { Phase::During } else { Phase::Idle },
                    in_flight: u32::from(i % 3 == 0),
                    processes: Some(2),
                    rss_bytes: Some(2_000_000_000 + (i % 977) * 4096),
                    footprint_bytes: Some(1_500_000_000 + (i % 911) * 4096),
                    sys_used_bytes: 9_000_000_000,
                    sys_available_bytes: 15_000_000_000,
                    swap_used_bytes: 0,
                    run: None,
                });
            }
            h.flush().await.unwrap();
            let took = start.elapsed();
            writer.finish();
            took
        });
        rates.push((with_sums, n as f64 / took.as_secs_f64()));
    }
    let best = |sums: bool| rates.iter().filter(|r| r.0 == sums).map(|r| r.1).fold(0.0, f64::max);
    println!(
        "samples: {n} memory samples committed at {:.0}/s with the hour sums and idle index, {:.0}/s without ({:.2}×)",
        best(true),
        best(false),
        best(true) / best(false)
    );
}

/// Runs one job with `soakd once` against `port`; returns the database.
fn once(dir: &Path, port: u16, job: &str) -> Connection {
    std::fs::create_dir_all(dir.join("schedules")).unwrap();
    std::fs::write(dir.join("schedules/j.toml"), format!("[[job]]\nname = \"j\"\ncron = \"@hourly\"\n{job}")).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "db = \"soakd.db\"\n[[backend]]\nname = \"sim\"\nkind = \"openai\"\nurl = \"http://127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let status = Command::new(SOAKD)
        .args(["once", "j", "--config", dir.join("config.toml").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    Connection::open(dir.join("soakd.db")).unwrap()
}

fn q<T: rusqlite::types::FromSql>(c: &Connection, sql: &str) -> T {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn runner() {
    println!("runner: soakd once against soakd sim (ttft 0, 8 tokens at 100k tok/s, streamed)");
    println!("  {:>11} {:>9} {:>10} {:>12} {:>16}", "concurrency", "requests", "ok", "requests/s", "soakd ms/request");
    for (concurrency, requests) in [(1, 1000), (4, 2000), (16, 4000)] {
        let s = sim(free_port(), &["--ttft-ms", "0", "--tokens-per-s", "100000", "--jitter", "0"]);
        let dir = tempfile::tempdir().unwrap();
        let c =
            once(dir.path(), s.port, &format!("requests = {requests}\nconcurrency = {concurrency}\nmax_tokens = 8\n"));
        let ok: i64 = q(&c, "SELECT count(*) FROM requests WHERE outcome = 'ok'");
        let secs: f64 = q::<i64>(&c, "SELECT max(started_at) - min(started_at) FROM requests") as f64 / 1000.0;
        // Per worker: wall time between requests not spent inside a request (sampling, writing).
        let overhead: f64 = q(&c, "SELECT avg(gap_ms) FROM requests WHERE gap_ms IS NOT NULL");
        println!("  {concurrency:>11} {requests:>9} {ok:>10} {:>12.0} {overhead:>16.2}", requests as f64 / secs);
    }
}

fn accuracy() {
    println!("accuracy: soakd's numbers against the sim's known ones (jitter 0, streamed, 200 requests)");
    println!(
        "  {:>10} {:>10} {:>28} {:>26}",
        "sim TTFT", "sim tok/s", "TTFT error ms p50/p95/max", "decode tok/s mean (error)"
    );
    for (ttft, rate) in [(50u64, 50.0f64), (200, 20.0), (20, 500.0)] {
        let s =
            sim(free_port(), &["--ttft-ms", &ttft.to_string(), "--tokens-per-s", &rate.to_string(), "--jitter", "0"]);
        let dir = tempfile::tempdir().unwrap();
        let c = once(dir.path(), s.port, "requests = 200\nconcurrency = 4\nmax_tokens = 16\n");
        let mut errors: Vec<f64> = c
            .prepare("SELECT ttft_ms FROM requests WHERE outcome = 'ok'")
            .unwrap()
            .query_map([], |r| r.get::<_, f64>(0))
            .unwrap()
            .map(|v| v.unwrap() - ttft as f64)
            .collect();
        errors.sort_by(f64::total_cmp);
        let pick = |p: f64| errors[((errors.len() - 1) as f64 * p).round() as usize];
        let tps: f64 = q(&c, "SELECT avg(decode_tps) FROM requests WHERE outcome = 'ok'");
        println!(
            "  {ttft:>8}ms {rate:>10.0} {:>28} {:>26}",
            format!("{:.2} / {:.2} / {:.2}", pick(0.5), pick(0.95), pick(1.0)),
            format!("{tps:.2} ({:+.2} %)", (tps - rate) / rate * 100.0)
        );
    }
}

fn writer() {
    use soakd::measure::outcome::Outcome;
    use soakd::measure::timeline::Measured;
    use soakd::store::rows::{RequestEnd, RequestStart, RunStart};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let n: u64 = 200_000;
    let took = rt.block_on(async {
        let writer = soakd::store::Writer::start(soakd::store::open(&path).unwrap(), path.clone());
        let h = writer.handle();
        let run = h.begin_run(RunStart {
            job: "j".into(),
            backend: "b".into(),
            trigger: soakd::measure::Trigger::Once,
            planned_at: 0,
            started_at: 0,
            requests_planned: n as u32,
            concurrency: 1,
            delay_ms: 0,
            stream: true,
            max_tokens: 16,
            backend_kind: "openai",
            base_url: "http://127.0.0.1:1".into(),
            model: None,
            server_pid: None,
            detail: serde_json::json!({}),
        });
        let start = Instant::now();
        for key in 1..=n {
            h.request_started(RequestStart {
                key,
                run,
                backend: "b".into(),
                job: "j".into(),
                worker: 0,
                seq: key as u32,
                intended_at: 1,
                started_at: 1,
                stream: true,
                concurrency: 1,
                prompt_name: "p".into(),
                prompt_chars: 100,
                max_tokens: 16,
                gap_ms: Some(1.0),
                server_pid: Some(1),
                server_seq: Some(key),
                machine_in_flight: 0,
            });
            h.request_finished(RequestEnd {
                key,
                outcome: Outcome::Ok,
                http_status: Some(200),
                attempts: 1,
                measured: Measured {
                    ttft_ms: Some(10.0),
                    e2e_ms: 50.0,
                    completion_tokens: Some(16),
                    ..Default::default()
                },
                finish_reason: Some("length".into()),
                reasoning_seen: false,
                tool_call_seen: false,
                tool_call_valid: None,
                server_model: None,
                server: Default::default(),
                server_timings: None,
                output: "x".repeat(200),
                error: None,
                error_signature: None,
            });
        }
        h.flush().await.unwrap();
        let took = start.elapsed();
        writer.finish();
        took
    });
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(path.with_extension("db-wal")).map(|m| m.len()).unwrap_or(0);
    println!(
        "writer: {n} requests (insert at start + update at end) committed in {:.2} s = {:.0} requests/s, {:.0} bytes/request on disk",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        size as f64 / n as f64
    );
}
