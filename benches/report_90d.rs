//! `soakd report` over 90 days of a busy log: 3 backends, ~4.5 M requests, ~10 M memory samples
//! (`cargo bench --bench report_90d`). The log is generated once (about a minute) and kept in
//! `target/bench-data/`; the figures are the wall times of building the report for the whole
//! window (as `soakd report` does, backends side by side, and as the daemon does, one at a time),
//! a digest of its last 24 hours and of the whole window as the daemon makes them (one backend at
//! a time, not saved), the whole window's again as `soakd digest` makes it (side by side), and
//! the process's peak RSS. Then, on a log of long replies (100,000 requests with
//! 6 KB replies, also kept), the report read through the covering index `requests_report`
//! (migration 0009) and, in the same run, through the slim index it replaced.

use rusqlite::params;
use std::path::{Path, PathBuf};
use std::time::Instant;

const DAYS: i64 = 90;
const BACKENDS: [&str; 3] = ["lmstudio", "mlx-server", "llama-server"];
const REQUESTS_PER_BACKEND: i64 = 1_500_000;
const SAMPLES_PER_BACKEND: i64 = 3_400_000;
const DATA_VERSION: u32 = 1;

fn main() {
    // `cargo bench --bench report_90d -- long_replies`: that part alone.
    if std::env::args().any(|a| a == "long_replies") {
        return long_replies();
    }
    let path = data_path();
    if !path.exists() {
        let t = Instant::now();
        generate(&path);
        println!("generated {} in {:.0} s", path.display(), t.elapsed().as_secs_f64());
    }
    let mut conn = soakd::store::open(&path).expect("open");
    let count = |conn: &rusqlite::Connection, sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let (requests, samples) =
        (count(&conn, "SELECT count(*) FROM requests"), count(&conn, "SELECT count(*) FROM memory_samples"));
    let to: i64 = count(&conn, "SELECT max(started_at) FROM requests") + 1;
    // What the daemon's hourly upkeep does: keep the latency sketches of the hours that are over
    // (the first time, all 90 days of them).
    let t = Instant::now();
    let filled = soakd::store::latency_hours::fill(&mut conn, to + 3_600_000, &|| false).expect("sketches");
    let lives =
        soakd::store::life_points::fill(&conn, to + 3_600_000, soakd::analysis::leaks::POINTS_PER_LIFE, &|| false)
            .expect("life points");
    println!(
        "summaries kept: latency sketches of {} hours ({} requests), points of {lives} lives, in {:.2} s",
        filled.hours,
        filled.requests,
        t.elapsed().as_secs_f64()
    );
    let conn = conn;
    let window = soakd::report::Window { from: to - DAYS * 86_400_000, to };
    // As `soakd report` builds it (backends side by side), then as the daemon does (one at a time).
    let parallel = soakd::report::build::Options { parallel: true, ..Default::default() };
    let t = Instant::now();
    let report = soakd::report::build::build_with(&conn, window, &[], to, parallel).expect("report");
    let took = t.elapsed();
    let t = Instant::now();
    drop(soakd::report::build::build(&conn, window, &[], to).expect("report"));
    println!("report_90d, one backend at a time (the daemon's way): {:.2} s", t.elapsed().as_secs_f64());
    let rendered = soakd::report::render(&report, soakd::report::Format::Json).len();
    println!(
        "report_90d: {requests} requests, {samples} memory samples, {} backends → report built in {:.2} s (JSON {} KiB), peak RSS {} MiB",
        report.backends.len(),
        took.as_secs_f64(),
        rendered / 1024,
        peak_rss_mib()
    );
    same_answers_from_rows(&conn, window, to, &report);
    let mut conn = conn;
    // As the daemon makes its digest (one backend at a time), then as `soakd digest` does.
    for (label, hours, parallel) in [("24 h", 24, false), ("90-day", DAYS * 24, false), ("90-day", DAYS * 24, true)] {
        let window = soakd::report::Window { from: to - hours * 3_600_000, to };
        let t = Instant::now();
        let how = soakd::digest::How { save: false, parallel };
        let digest = soakd::digest::build(&mut conn, window, to, how).expect("digest");
        println!(
            "digest_{}{}: built in {:.2} s ({} KiB of HTML), peak RSS so far {} MiB",
            label.replace(' ', ""),
            if parallel { " (soakd digest: backends side by side)" } else { " (the daemon's way)" },
            t.elapsed().as_secs_f64(),
            digest.html.len() / 1024,
            peak_rss_mib()
        );
    }
    for b in &report.backends {
        println!(
            "  {:<13} {:>8} requests, {:.2} % ok, leak {}, {} crash patterns",
            b.name,
            b.requests,
            b.success_rate * 100.0,
            b.leak.verdict.as_str(),
            b.crash_patterns.len()
        );
    }
    long_replies();
}

/// The same report from every row and sample (the summaries deleted in a transaction rolled
/// back): its time, the same verdicts, and how far its percentiles are from the sketches' (both
/// within the sketch's 1 %; the whole-window ones are the same sketch, so equal).
fn same_answers_from_rows(
    conn: &rusqlite::Connection,
    window: soakd::report::Window,
    to: i64,
    from_sketches: &soakd::report::Report,
) {
    conn.execute_batch("BEGIN; DELETE FROM latency_hours; DELETE FROM life_points;").unwrap();
    let parallel = soakd::report::build::Options { parallel: false, ..Default::default() };
    let t = Instant::now();
    let from_rows = soakd::report::build::build_with(conn, window, &[], to, parallel).expect("report");
    let took = t.elapsed().as_secs_f64();
    conn.execute_batch("ROLLBACK").unwrap();
    let (mut window_max, mut hourly_max): (f64, f64) = (0.0, 0.0);
    let rel = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a != 0.0 => ((a - b) / a).abs(),
        (a, b) => {
            if a == b {
                0.0
            } else {
                f64::INFINITY
            }
        }
    };
    for (a, b) in from_rows.backends.iter().zip(&from_sketches.backends) {
        assert_eq!(
            serde_json::to_string(&a.leak).unwrap(),
            serde_json::to_string(&b.leak).unwrap(),
            "the leak verdict from every sample and from the kept points"
        );
        for (x, y) in [(&a.ttft_ms, &b.ttft_ms), (&a.first_content_ms, &b.first_content_ms), (&a.e2e_ms, &b.e2e_ms)] {
            for (p, q) in [(x.p50, y.p50), (x.p95, y.p95), (x.p99, y.p99)] {
                window_max = window_max.max(rel(p, q));
            }
        }
        window_max = window_max.max(rel(a.decode_tps.p50, b.decode_tps.p50));
        for (h, k) in a.hourly.iter().zip(&b.hourly) {
            assert_eq!((h.hour_start_ms, h.requests), (k.hour_start_ms, k.requests));
            for (p, q) in [(h.ttft_p50, k.ttft_p50), (h.ttft_p95, k.ttft_p95), (h.tps_p50, k.tps_p50)] {
                hourly_max = hourly_max.max(rel(p, q));
            }
        }
    }
    println!(
        "report_90d from every row and sample, one backend at a time: {took:.2} s; percentiles vs the sketches': \
         window's differ by {:.3} % at most, hours' by {:.3} %",
        window_max * 100.0,
        hourly_max * 100.0
    );
}

/// The report over a log of long replies, through the covering index and then (in a transaction
/// rolled back) through the slim `(backend, started_at)` index of migration 0001.
fn long_replies() {
    let path = data_path().with_file_name(format!("replies-v{DATA_VERSION}.db"));
    if !path.exists() {
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut conn = soakd::store::open(&tmp).expect("create");
        conn.pragma_update(None, "synchronous", "OFF").unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO runs (job, backend, trigger, status, planned_at, started_at, requests_planned, concurrency,
                 delay_ms, stream, max_tokens, backend_kind, base_url, owner_pid, owner_started_at)
             VALUES ('soak', 'mlx-server', 'cron', 'completed', 0, 0, 100000, 1, 0, 1, 1500, 'openai', 'http://127.0.0.1:1', 1, 1)",
            [],
        )
        .unwrap();
        let reply = "The quick brown fox jumps over the lazy dog. ".repeat(6_000 / 45);
        let mut req = tx
            .prepare(
                "INSERT INTO requests (run_id, backend, job, worker, seq, intended_at, started_at, outcome, stream, concurrency,
                     prompt_name, prompt_chars, max_tokens, gap_ms, server_pid, server_seq, ttft_ms, first_content_ms, e2e_ms,
                     completion_tokens, decode_tps, output, machine_in_flight)
                 VALUES (1, 'mlx-server', 'soak', 0, ?1, ?2, ?2, 'ok', 1, 1, 'long', 400, 1500, 50.0, 7, ?1, 120.0, 120.0,
                     9000.0, 1500, 170.0, ?3, 0)",
            )
            .unwrap();
        for i in 0..100_000i64 {
            req.execute(params![i + 1, 1_790_000_000_000i64 + i * 10_000, reply]).unwrap();
        }
        drop(req);
        tx.commit().unwrap();
        drop(conn);
        std::fs::rename(&tmp, &path).unwrap();
        let _ = std::fs::remove_file(tmp.with_extension("tmp-wal"));
    }
    let mut conn = soakd::store::open(&path).expect("open");
    let window = soakd::report::Window { from: 0, to: i64::MAX / 2 };
    let time = |conn: &rusqlite::Connection| {
        let t = Instant::now();
        soakd::report::build::build(conn, window, &[], window.to).expect("report");
        t.elapsed().as_secs_f64()
    };
    let covering = time(&conn);
    let tx = conn.transaction().unwrap();
    tx.execute_batch(
        "DROP INDEX requests_report; CREATE INDEX requests_backend_started ON requests (backend, started_at);",
    )
    .unwrap();
    let slim = time(&tx);
    tx.rollback().unwrap();
    println!(
        "long_replies: 100000 requests with 6 KB replies → report in {covering:.2} s through the covering index, {slim:.2} s through the slim one ({:.1}x)",
        slim / covering
    );
}

fn data_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("busy-90d-v{DATA_VERSION}.db"))
}

/// A deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn generate(path: &Path) {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut conn = soakd::store::open(&tmp).expect("create");
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    let end = 1_790_000_000_000i64;
    let start = end - DAYS * 86_400_000;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let signatures = [
        "The model has crashed without additional information. (Exit code: <n>)",
        "HTTP 400: {\"error\":\"Model is unloaded.\"}",
        "the stream broke after <n> tokens: error decoding response body",
        "tcp connect error: Connection refused (os error <n>)",
        "no data for <n> ms mid-stream, after <n> tokens",
    ];
    let outcomes = ["server_reported_crash", "server_reported_crash", "reset_mid_stream", "connect_refused", "stall"];
    for (b, backend) in BACKENDS.iter().enumerate() {
        let tx = conn.transaction().unwrap();
        let runs_per_day = 24;
        let mut run_ids = Vec::new();
        {
            let mut run = tx
                .prepare(
                    "INSERT INTO runs (job, backend, trigger, status, planned_at, started_at, finished_at, requests_planned,
                         requests_done, concurrency, delay_ms, stream, max_tokens, backend_kind, base_url, owner_pid, owner_started_at)
                     VALUES ('soak', ?1, 'cron', 'completed', ?2, ?2, ?3, 100, 100, 4, 0, 1, 128, 'openai', 'http://127.0.0.1:1', 1, 1)",
                )
                .unwrap();
            for r in 0..DAYS * runs_per_day {
                let at = start + r * 3_600_000;
                run.execute(params![backend, at, at + 3_500_000]).unwrap();
                run_ids.push(tx.last_insert_rowid());
            }
            let mut req = tx
                .prepare(
                    "INSERT INTO requests (run_id, backend, job, worker, seq, intended_at, started_at, outcome, http_status,
                         stream, concurrency, prompt_name, prompt_chars, max_tokens, gap_ms, server_pid, server_seq, first_byte_ms,
                         ttft_ms, first_content_ms, e2e_ms, gap_p50_ms, gap_p95_ms, gap_max_ms, prompt_tokens, completion_tokens,
                         token_source, decode_tps, output_tps, finish_reason, output, error, error_signature)
                     VALUES (?1, ?2, ?3, 0, ?4, ?5, ?5, ?6, 200, 1, ?7, 'security', ?8, 128, ?9, ?10, ?11, 3.0, ?12, ?12, ?13,
                         40.0, 60.0, 90.0, 50, 128, 'usage', ?14, ?15, 'length', 'x', ?16, ?17)",
                )
                .unwrap();
            let step = (end - start) / REQUESTS_PER_BACKEND;
            let lifetime = 3 * 86_400_000;
            for i in 0..REQUESTS_PER_BACKEND {
                let at = start + i * step;
                let pid = 1000 * (b as i64 + 1) + (at - start) / lifetime;
                let seq = i % (lifetime / step) + 1;
                let concurrency = if i % 4 == 0 { 4 } else { 1 };
                let fail = rng.unit() < if b == 0 && concurrency == 4 { 0.06 } else { 0.01 };
                let k = (rng.next() % 5) as usize;
                let ttft = 150.0 + 100.0 * b as f64 + rng.unit() * 50.0;
                let tps = 20.0 + 10.0 * b as f64 + rng.unit() * 3.0;
                req.execute(params![
                    run_ids[((at - start) / 3_600_000) as usize % run_ids.len()],
                    backend,
                    if i % 10 == 0 { "rapid-burst" } else { "soak" },
                    i % 100,
                    at,
                    if fail { outcomes[k] } else { "ok" },
                    concurrency,
                    if i % 50 == 0 { 16_000 } else { 400 },
                    if i % 3 == 0 { 50.0 } else { 2000.0 },
                    pid,
                    seq,
                    if fail { None } else { Some(ttft) },
                    ttft + 128.0 * 1000.0 / tps,
                    if fail { None } else { Some(tps) },
                    tps * 0.9,
                    fail.then_some(signatures[k]),
                    fail.then_some(signatures[k]),
                ])
                .unwrap();
            }
            let mut sample = tx
                .prepare(
                    "INSERT INTO memory_samples (backend, pid, proc_started_at, taken_at, phase, in_flight, processes, rss_bytes,
                         footprint_bytes, sys_used_bytes, sys_available_bytes, swap_used_bytes)
                     VALUES (?1, ?2, ?2, ?3, ?4, ?5, 2, ?6, ?7, 9000000000, 15000000000, 0)",
                )
                .unwrap();
            let step = (end - start) / SAMPLES_PER_BACKEND;
            for i in 0..SAMPLES_PER_BACKEND {
                let at = start + i * step;
                let pid = 1000 * (b as i64 + 1) + (at - start) / lifetime;
                let hours_in_life = ((at - start) % lifetime) as f64 / 3_600_000.0;
                // mlx-server leaks 5 MB/h within each life; the others are flat.
                let growth = if b == 1 { hours_in_life * 5e6 } else { 0.0 };
                let bytes = 4.5e9 + growth + rng.unit() * 20e6;
                let busy = i % 3 == 0;
                sample
                    .execute(params![
                        backend,
                        pid,
                        at,
                        if busy { "during" } else { "idle" },
                        if busy { 2 } else { 0 },
                        bytes as i64,
                        (bytes * 1.05) as i64
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    drop(conn);
    std::fs::rename(&tmp, path).unwrap();
    let _ = std::fs::remove_file(tmp.with_extension("tmp-wal"));
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        .map_or(0, |kb| kb / 1024)
}
