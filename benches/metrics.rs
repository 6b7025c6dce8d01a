//! The cost of `/metrics` (`cargo bench --bench metrics`): the exposition's size and the time to
//! encode it for a fleet-sized label set (6 backends × 4 jobs × 5 outcomes seen), in both formats;
//! the daemon's start (the series rebuilt from a log of 1 M finished requests, one pass); and what
//! following one commit costs (100 finished requests read back by id).

use soakd::metrics::Metrics;
use soakd::store::tally::Finished;
use soakd::store::writer::{Committed, Tap};
use std::time::Instant;

const BACKENDS: [&str; 6] = ["lmstudio", "mlx-server", "ollama", "llama", "vllm", "mlx-direct"];
const JOBS: [&str; 4] = ["probe", "soak", "bursts", "context"];
const OUTCOMES: [&str; 5] = ["ok", "http_error", "connect_refused", "reset_mid_stream", "timeout"];
const LOG_REQUESTS: i64 = 1_000_000;

fn main() {
    let m = Metrics::new();
    let mut i = 0u64;
    for backend in BACKENDS {
        for job in JOBS {
            for outcome in OUTCOMES {
                for _ in 0..50 {
                    i += 1;
                    m.observe(&Finished {
                        backend: backend.into(),
                        job: job.into(),
                        outcome: outcome.into(),
                        ttft_ms: Some(20.0 + (i % 500) as f64),
                        first_content_ms: Some(25.0 + (i % 500) as f64),
                        e2e_ms: Some(900.0 + (i % 7000) as f64),
                        prompt_tokens: Some(200),
                        completion_tokens: Some(128),
                        decode_tps: Some(30.0 + (i % 60) as f64),
                    });
                }
            }
        }
        m.memory(backend, Some(6_000_000_000), Some(5_500_000_000));
    }
    for (name, encode) in
        [("openmetrics", &(|| m.openmetrics()) as &dyn Fn() -> String), ("text 0.0.4", &|| m.prometheus_text())]
    {
        let bytes = encode().len();
        let rounds = 200;
        let t = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(encode());
        }
        let per = t.elapsed().as_secs_f64() / f64::from(rounds);
        let series = encode().lines().filter(|l| !l.starts_with('#')).count();
        println!("scrape ({name}): {series} samples, {:.1} KiB, {:.2} ms to encode", bytes as f64 / 1024.0, per * 1e3);
    }

    let dir = tempfile::tempdir().unwrap();
    let conn = soakd::store::open(&dir.path().join("bench.db")).unwrap();
    let t = Instant::now();
    conn.execute_batch(&format!(
        "INSERT INTO runs (id, job, backend, trigger, status, planned_at, started_at, requests_planned, concurrency,
                           delay_ms, stream, max_tokens, backend_kind, base_url, owner_pid, owner_started_at)
         VALUES (1, 'soak', 'lmstudio', 'cron', 'completed', 0, 0, {LOG_REQUESTS}, 1, 0, 1, 128, 'openai', 'http://127.0.0.1:1', 1, 1);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {LOG_REQUESTS})
         INSERT INTO requests (run_id, backend, job, worker, seq, intended_at, started_at, outcome, stream, concurrency,
                               prompt_name, prompt_chars, max_tokens, ttft_ms, first_content_ms, e2e_ms, prompt_tokens,
                               completion_tokens, decode_tps)
         SELECT 1, CASE i % 3 WHEN 0 THEN 'lmstudio' WHEN 1 THEN 'ollama' ELSE 'llama' END, 'soak', 0, i, i, i,
                CASE WHEN i % 20 = 0 THEN 'http_error' ELSE 'ok' END, 1, 1, 'p', 100, 128,
                20 + i % 300, 25 + i % 300, 900 + i % 5000, 200, 128, 30 + i % 50 FROM n;"
    ))
    .unwrap();
    println!("(log of {LOG_REQUESTS} requests written in {:.1} s)", t.elapsed().as_secs_f64());
    let started = Metrics::new();
    let mut follow = soakd::metrics::follow::Follow::new(started.clone());
    let t = Instant::now();
    follow.start(&conn);
    let took = t.elapsed().as_secs_f64();
    let total: f64 = started
        .prometheus_text()
        .lines()
        .filter(|l| l.starts_with("soakd_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(total as i64, LOG_REQUESTS, "every row counted");
    println!(
        "daemon start: series rebuilt from {LOG_REQUESTS} requests in {took:.2} s ({:.2} µs a row)",
        took * 1e6 / LOG_REQUESTS as f64
    );

    let ids: Vec<i64> = (1..=100).map(|k| k * 9_973).collect();
    let rounds = 500;
    let t = Instant::now();
    for _ in 0..rounds {
        follow.committed(&conn, &Committed { finished: &ids, samples: Vec::new(), events: Vec::new() });
    }
    println!(
        "following a commit of 100 finished requests: {:.0} µs",
        t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
    );
}
