//! `soakd report` on a log with known contents, written straight into the schema: a steady
//! backend, and a leaky one that fails under concurrency 4 and restarts. Every format, the
//! findings' life (new → ongoing), and untrusted text kept harmless.

use crate::common;
use rusqlite::{Connection, params};
use serde_json::Value;
use std::path::Path;

const HOUR: i64 = 3_600_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Six hours of log ending an hour ago.
pub(crate) fn write_log(path: &Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    for m in ["0001_init.sql", "0002_findings.sql"] {
        conn.execute_batch(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("db").join(m)).unwrap())
            .unwrap();
    }
    conn.pragma_update(None, "user_version", 2).unwrap();
    let start = now_ms() - 7 * HOUR;
    let tx = conn.unchecked_transaction().unwrap();
    for (backend, pid) in [("steady", 100), ("leaky", 200)] {
        tx.execute(
            "INSERT INTO runs (job, backend, trigger, status, planned_at, started_at, finished_at, requests_planned,
                 requests_done, concurrency, delay_ms, stream, max_tokens, backend_kind, base_url, owner_pid, owner_started_at)
             VALUES ('soak', ?1, 'cron', 'completed', ?2, ?2, ?3, 1440, 1440, 4, 0, 1, 64, 'openai', 'http://127.0.0.1:1', 1, 1)",
            params![backend, start, start + 6 * HOUR],
        )
        .unwrap();
        let run = tx.last_insert_rowid();
        // A request every 15 s for 6 h; the leaky backend fails a third of those at concurrency 4.
        for i in 0..1440i64 {
            let at = start + i * 15_000;
            let concurrency = if i % 2 == 0 { 4 } else { 1 };
            let fails = backend == "leaky" && concurrency == 4 && i % 3 == 0;
            let server_pid = if backend == "leaky" && i >= 720 { pid + 1 } else { pid };
            let (outcome, error, signature) = if fails {
                (
                    "server_reported_crash",
                    Some(
                        "HTTP 500: <script>alert(1)</script> The model has crashed without additional information. (Exit code: 6)",
                    ),
                    Some(
                        "HTTP 500: <script>alert(<n>)</script> The model has crashed without additional information. (Exit code: <n>)",
                    ),
                )
            } else {
                ("ok", None, None)
            };
            let ttft = if backend == "steady" { 400.0 + (i % 7) as f64 } else { 200.0 + (i % 5) as f64 };
            let tps = if backend == "steady" { 14.0 + (i % 3) as f64 * 0.1 } else { 40.0 + (i % 3) as f64 * 0.1 };
            tx.execute(
                "INSERT INTO requests (run_id, backend, job, worker, seq, intended_at, started_at, outcome, http_status,
                     stream, concurrency, prompt_name, prompt_chars, max_tokens, gap_ms, server_pid, server_seq,
                     ttft_ms, first_content_ms, e2e_ms, completion_tokens, token_source, decode_tps, output_tps, error, error_signature)
                 VALUES (?1, ?2, 'soak', 0, ?3, ?4, ?4, ?5, ?6, 1, ?7, 'p', 400, 64, 15000, ?8, ?9, ?10, ?10, ?11, 64, 'usage', ?12, ?13, ?14, ?15)",
                params![
                    run,
                    backend,
                    i,
                    at,
                    outcome,
                    if fails { 500 } else { 200 },
                    concurrency,
                    server_pid,
                    (i % 720) + 1,
                    if fails { None } else { Some(ttft) },
                    if fails { None } else { Some(ttft + 64.0 * 1000.0 / tps) },
                    if fails { None } else { Some(tps) },
                    if fails { None } else { Some(tps * 0.9) },
                    error,
                    signature
                ],
            )
            .unwrap();
        }
        // Idle memory every minute: flat ± noise for `steady`; +20 MB/h for `leaky`, in both lives.
        for m in 0..360i64 {
            let at = start + m * 60_000;
            let noise = ((m * 7919) % 11) as f64 * 100_000.0;
            let (pid_now, bytes) = if backend == "steady" {
                (pid, 500e6 + noise)
            } else {
                let life_start = if m >= 180 { 180 } else { 0 };
                (if m >= 180 { pid + 1 } else { pid }, 800e6 + (m - life_start) as f64 * 20e6 / 60.0 + noise)
            };
            tx.execute(
                "INSERT INTO memory_samples (backend, pid, proc_started_at, taken_at, phase, in_flight, processes, rss_bytes,
                     sys_used_bytes, sys_available_bytes, swap_used_bytes)
                 VALUES (?1, ?2, ?3, ?4, 'idle', 0, 1, ?5, 8000000000, 16000000000, 0)",
                params![backend, pid_now, pid_now, at, bytes as i64],
            )
            .unwrap();
        }
    }
    tx.execute(
        "INSERT INTO events (backend, kind, at, detail) VALUES ('leaky', 'restart', ?1, '{\"old_pid\": 200, \"new_pid\": 201}')",
        [start + 3 * HOUR],
    )
    .unwrap();
    tx.commit().unwrap();
    start
}

fn report(db: &Path, extra: &[&str]) -> String {
    let mut args = vec!["report", "--db", db.to_str().unwrap(), "--since", "8h"];
    args.extend_from_slice(extra);
    let (code, out, err) = common::soakd(&args);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    out
}

fn backend<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["backends"].as_array().unwrap().iter().find(|b| b["name"] == name).unwrap_or_else(|| panic!("{name} missing"))
}

#[test]
fn json_holds_the_stable_fields_and_the_right_conclusions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    write_log(&db);
    let json: Value = serde_json::from_str(&report(&db, &["--format", "json", "--no-save"])).expect("valid JSON");
    assert_eq!(json["schema_version"], 1);
    assert!(json["window"]["from"].is_i64() && json["window"]["to"].is_i64());
    let steady = backend(&json, "steady");
    let leaky = backend(&json, "leaky");
    for b in [steady, leaky] {
        for field in ["requests", "ok", "success_rate", "peak_rss_bytes", "restarts", "crash_patterns"] {
            assert!(!b[field].is_null(), "{field} missing in {b}");
        }
        for p in ["p50", "p95", "p99"] {
            assert!(b["ttft_ms"][p].is_f64(), "ttft_ms.{p}");
        }
        assert!(b["decode_tps"]["mean"].is_f64() && b["decode_tps"]["p50"].is_f64());
        assert_eq!(b["quantile_relative_error"], 0.0, "1,440 requests: exact percentiles");
        for f in ["verdict", "mb_per_hour", "mb_per_1k_requests", "p_value"] {
            assert!(b["leak"].get(f).is_some(), "leak.{f}");
        }
    }
    assert_eq!(steady["requests"], 1440);
    assert_eq!(steady["success_rate"], 1.0);
    assert_eq!(steady["leak"]["verdict"], "no_leak");
    assert_eq!(leaky["ok"], 1440 - 240);
    assert_eq!(leaky["restarts"], 1);
    assert_eq!(leaky["leak"]["verdict"], "leak");
    let slope = leaky["leak"]["mb_per_hour"].as_f64().unwrap();
    assert!((17.0..23.0).contains(&slope), "leak of 20 MB/h measured as {slope}");
    let patterns = leaky["crash_patterns"].as_array().unwrap();
    let top = &patterns[0];
    assert_eq!((top["factor"].as_str(), top["level"].as_str()), (Some("concurrency"), Some("4")), "{patterns:?}");
    assert!(top["p_value"].as_f64().unwrap() < 1e-6);
    assert!(steady["crash_patterns"].as_array().unwrap().is_empty());
    // The comparison names the steadier backend as more reliable, the faster one as faster.
    let rows = json["comparison"].as_array().unwrap();
    let row = |m: &str| rows.iter().find(|r| r["metric"] == m).unwrap_or_else(|| panic!("{m}"));
    assert_eq!(row("Reliability")["winner"], "steady");
    assert_eq!(row("Average tokens/second")["winner"], "leaky");
    assert_eq!(json["rankings"]["speed"][0]["backend"], "leaky");
    let kinds: Vec<&str> = json["findings"].as_array().unwrap().iter().filter_map(|f| f["kind"].as_str()).collect();
    for k in ["leak", "failure_rate", "restarts", "crash_pattern"] {
        assert!(kinds.contains(&k), "{k} not among {kinds:?}");
    }
}

/// A busy backend's percentiles come from a sketch past 65,536 values: each within the stated
/// relative error of the exact percentile of the same rows (numpy's linear rule), the mean exact.
#[test]
fn a_busy_backends_percentiles_are_within_the_stated_error_of_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("busy.db");
    let start = now_ms() - 7 * HOUR;
    let mut conn = soakd::store::open(&db).unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute(
        "INSERT INTO runs (job, backend, trigger, status, planned_at, started_at, requests_planned, concurrency,
             delay_ms, stream, max_tokens, backend_kind, base_url, owner_pid, owner_started_at)
         VALUES ('soak', 'busy', 'cron', 'completed', ?1, ?1, 70000, 1, 0, 1, 64, 'openai', 'http://127.0.0.1:1', 1, 1)",
        [start],
    )
    .unwrap();
    let (mut ttft, mut tps) = (Vec::new(), Vec::new());
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut unit = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO requests (run_id, backend, job, worker, seq, intended_at, started_at, outcome, stream,
                     concurrency, prompt_name, prompt_chars, max_tokens, gap_ms, server_pid, server_seq, ttft_ms,
                     first_content_ms, e2e_ms, completion_tokens, decode_tps, machine_in_flight)
                 VALUES (1, 'busy', 'soak', 0, ?1, ?2, ?2, 'ok', 1, 1, 'p', 400, 64, 100.0, 7, ?1, ?3, ?3, ?4, 64, ?5, 0)",
            )
            .unwrap();
        for i in 0..70_000i64 {
            // Right-skewed TTFTs (a long tail, as under load) and rates around 40 tok/s.
            let t = 80.0 * (1.0 + 4.0 * unit()).powi(3);
            let r = 30.0 + 20.0 * unit();
            insert.execute(params![i + 1, start + i * 200, t, t + 64_000.0 / r, r]).unwrap();
            ttft.push(t);
            tps.push(r);
        }
    }
    tx.commit().unwrap();
    drop(conn);
    let json: Value = serde_json::from_str(&report(&db, &["--format", "json"])).unwrap();
    let b = backend(&json, "busy");
    assert_eq!(b["quantile_relative_error"], 0.01);
    let exact = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        let rank = p / 100.0 * (v.len() - 1) as f64;
        let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
    };
    for (name, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0)] {
        let (want, got) = (exact(&mut ttft, p), b["ttft_ms"][name].as_f64().unwrap());
        assert!((got - want).abs() <= 0.011 * want, "ttft_ms.{name}: {got} from the sketch, {want} from the rows");
    }
    let (want, got) = (exact(&mut tps, 50.0), b["decode_tps"]["p50"].as_f64().unwrap());
    assert!((got - want).abs() <= 0.011 * want, "decode_tps.p50: {got} vs {want}");
    let mean = tps.iter().sum::<f64>() / tps.len() as f64;
    assert!((b["decode_tps"]["mean"].as_f64().unwrap() - mean).abs() < 1e-6 * mean, "the mean stays exact");
    assert_eq!(b["requests"], 70_000);
}

#[test]
fn findings_are_new_then_ongoing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    write_log(&db);
    let first: Value = serde_json::from_str(&report(&db, &["--format", "json"])).unwrap();
    assert!(first["findings"].as_array().unwrap().iter().all(|f| f["status"] == "new"));
    let second: Value = serde_json::from_str(&report(&db, &["--format", "json"])).unwrap();
    assert!(second["findings"].as_array().unwrap().iter().all(|f| f["status"] == "ongoing"), "{}", second["findings"]);
    let conn = Connection::open(&db).unwrap();
    let saved: i64 = conn.query_row("SELECT count(DISTINCT report_at) FROM findings", [], |r| r.get(0)).unwrap();
    assert_eq!(saved, 2);
    // Each finding's evidence query runs.
    let evidence: Vec<String> = conn
        .prepare("SELECT evidence FROM latest_findings WHERE evidence IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!evidence.is_empty());
    for q in evidence {
        let mut stmt = conn.prepare(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
        let mut rows = stmt.query([]).unwrap();
        assert!(rows.next().unwrap_or_else(|e| panic!("{q}: {e}")).is_some(), "{q} lists nothing");
    }
}

#[test]
fn markdown_follows_the_seed_report_and_escapes_server_text() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    write_log(&db);
    let md = report(&db, &["--format", "markdown", "--no-save"]);
    for want in [
        "# Server Performance Comparison Report",
        "## Executive Summary",
        "## Performance Comparison Table",
        "| Metric | leaky | steady | Winner |",
        "## Detailed Metrics",
        "## Crash Analysis",
        "Rapid sequential requests",
        "### Speed Rankings (Tokens/Second)",
        "### Reliability Rankings",
    ] {
        assert!(md.contains(want), "{want} missing:\n{md}");
    }
    assert!(!md.contains("<script>"), "server text must be escaped");
    assert!(md.contains("&lt;script&gt;"));
}

#[test]
fn table_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    write_log(&db);
    let table = report(&db, &["--no-save"]);
    for want in ["soakd report", "Reliability", "steady", "leaky", "findings:", "concurrency=4"] {
        assert!(table.contains(want), "{want} missing:\n{table}");
    }
    let csv = report(&db, &["--format", "csv", "--no-save"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("backend,requests,ok,success_rate"));
    assert!(csv.contains("leaky,1440,1200,"));
}

#[test]
fn an_empty_window_and_a_bad_window() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    write_log(&db);
    let (code, out, _) = common::soakd(&["report", "--db", db.to_str().unwrap(), "--since", "10min", "--no-save"]);
    assert_eq!(code, 0);
    assert!(out.contains("No requests in this window"), "{out}");
    let (code, _, err) = common::soakd(&["report", "--db", db.to_str().unwrap(), "--since", "last tuesday"]);
    assert_ne!(code, 0);
    assert!(err.contains("--since \"last tuesday\"") && err.contains("24h"), "{err}");
    let (code, _, err) = common::soakd(&["report", "--db", dir.path().join("none.db").to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("none.db"), "{err}");
}

/// Through real processes: a `soakd sim` that crashes only when more than 2 requests are in
/// flight, soaked at concurrency 1 and 4 by `soakd once`; the report must name concurrency 4.
#[test]
fn real_processes_a_crash_only_above_a_concurrency_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let sim = common::start_sim(
        &["--exit-above-concurrency", "2", "--crash-style", "lmstudio", "--unloaded-requests", "0", "--ttft-ms", "100"],
        dir.path(),
    );
    let config = common::write_config(
        dir.path(),
        &common::backend("sim", sim.port),
        "[[job]]\nname = \"c1\"\ncron = \"@hourly\"\nrequests = 15\nmax_tokens = 4\n\
         [[job]]\nname = \"c4\"\ncron = \"@hourly\"\nrequests = 20\nconcurrency = 4\nmax_tokens = 4\n",
    );
    // Taken in turns, so the requests since the server started do not split by job. Three turns:
    // with two (10 triggers in 40 requests at c4, none in 30 at c1) the pattern's adjusted p was
    // 0.029, and a run beside a busy machine once missed 0.05; with three it is 0.0014.
    for job in ["c1", "c4", "c1", "c4", "c1", "c4"] {
        let (code, out, err) = common::soakd(&["once", job, "--config", config.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}\n{err}");
    }
    let db = dir.path().join("soakd.db");
    let json: Value = serde_json::from_str(&report(&db, &["--format", "json", "--no-save"])).unwrap();
    let b = &json["backends"][0];
    assert!(b["failures"]["server_reported_crash"].as_u64().unwrap() >= 5, "{}", b["failures"]);
    let top = &b["crash_patterns"][0];
    assert_eq!(
        (top["factor"].as_str(), top["level"].as_str()),
        (Some("concurrency"), Some("4")),
        "patterns {}, confounded {}",
        b["crash_patterns"],
        b["crash_confounded"]
    );
    assert_eq!(top["rate_outside"], 0.0);
}

/// Two machines' logs in one report: every backend as `backend @ host`, with its `host`, the
/// comparison over all four, each log's leak found on its own machine; a pattern names both.
#[test]
fn several_machines_logs_in_one_report() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    for (file, host, chip) in [("m2.db", "m2-max", "Apple M2 Max"), ("m4.db", "m4-pro", "Apple M4 Pro")] {
        let db = logs.join(file);
        write_log(&db);
        // Bring the log to the current schema, then say which machine wrote it.
        let conn = soakd::store::open_existing(&db).unwrap();
        let host = soakd::store::host::Host {
            hostname: host.into(),
            model: Some("Mac".into()),
            chip: Some(chip.into()),
            cpus: Some(12),
            memory_bytes: Some(64 << 30),
            os: Some("macOS 15.3".into()),
            soakd_version: "0.1.0".into(),
        };
        soakd::store::host::seen(&conn, &host, now_ms()).unwrap();
    }
    let (m2, m4) = (logs.join("m2.db"), logs.join("m4.db"));
    let both = report(&m2, &["--db", m4.to_str().unwrap(), "--format", "json", "--no-save"]);
    let json: Value = serde_json::from_str(&both).unwrap();
    let mut names: Vec<&str> =
        json["backends"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["leaky @ m2-max", "leaky @ m4-pro", "steady @ m2-max", "steady @ m4-pro"]);
    assert_eq!(backend(&json, "leaky @ m4-pro")["host"]["chip"], "Apple M4 Pro");
    assert_eq!(backend(&json, "steady @ m2-max")["host"]["hostname"], "m2-max");
    for name in ["leaky @ m2-max", "leaky @ m4-pro"] {
        assert_eq!(backend(&json, name)["leak"]["verdict"], "leak", "each machine's leak, found in its own log");
    }
    for row in json["comparison"].as_array().unwrap() {
        assert_eq!(row["values"].as_array().map(Vec::len), Some(4), "a value per backend and host: {row}");
    }
    assert!(json["findings"].as_array().unwrap().iter().any(|f| f["backend"] == "leaky @ m4-pro"));
    // A pattern gives the same report; the table names backend and host.
    let pattern = logs.join("*.db");
    let by_pattern = report(&pattern, &["--format", "json", "--no-save"]);
    let by_pattern: Value = serde_json::from_str(&by_pattern).unwrap();
    assert_eq!(by_pattern["backends"], json["backends"]);
    assert!(report(&pattern, &["--no-save"]).contains("leaky @ m4-pro"));
    let markdown = report(&pattern, &["--format", "markdown", "--no-save"]);
    assert!(markdown.contains("leaky @ m2-max") && markdown.contains("steady @ m4-pro"), "{markdown}");
    // One log alone keeps its plain names and says its machine.
    let one: Value = serde_json::from_str(&report(&m2, &["--format", "json", "--no-save"])).unwrap();
    assert_eq!(backend(&one, "steady")["host"]["hostname"], "m2-max");

    // The lab's one morning mail: a digest over both logs names every backend with its host,
    // and each machine's leak is a new finding in it.
    let (code, text, err) = common::soakd(&["digest", "--db", pattern.to_str().unwrap(), "--print", "--since", "8h"]);
    assert_eq!(code, 0, "{err}");
    for name in ["leaky @ m2-max", "leaky @ m4-pro", "steady @ m2-max", "steady @ m4-pro"] {
        assert!(text.contains(name), "{name} missing from the digest:\n{text}");
    }
    assert!(text.contains("soakd: 4 backends · leaky @ m2-max leaking"), "the subject counts all four: {text}");
    let eml = dir.path().join("lab.eml");
    let (code, _, err) = common::soakd(&[
        "digest",
        "--db",
        m2.to_str().unwrap(),
        "--db",
        m4.to_str().unwrap(),
        "--out",
        eml.to_str().unwrap(),
        "--since",
        "8h",
    ]);
    assert_eq!(code, 0, "{err}");
    let mail = std::fs::read_to_string(&eml).unwrap();
    assert!(mail.contains("leaky @ m4-pro") && mail.contains("Content-Type: image/png"), "a mail with charts");
}

/// Two soakd instances, each with its own log (`m2.db`, `m4.db`) on this one machine: both logs
/// record the machine from sysinfo, and since the hostnames are the same, the fleet report tells
/// the backends apart by log (`sim @ m2`, `sim @ m4`) in JSON, the table and Markdown.
#[test]
fn two_instances_logs_side_by_side_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let sim = common::start_sim(&["--tokens-per-s", "400", "--ttft-ms", "10"], dir.path());
    let mut dbs = Vec::new();
    for (name, requests) in [("m2", 4), ("m4", 6)] {
        let home = dir.path().join(name);
        std::fs::create_dir_all(home.join("schedules")).unwrap();
        std::fs::write(
            home.join("schedules/jobs.toml"),
            format!("[[job]]\nname = \"probe\"\ncron = \"@hourly\"\nrequests = {requests}\nmax_tokens = 4\n"),
        )
        .unwrap();
        let config = home.join("config.toml");
        std::fs::write(&config, format!("db = \"{name}.db\"\n{}", common::backend("sim", sim.port))).unwrap();
        let (code, out, err) = common::soakd(&["once", "probe", "--config", config.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}\n{err}");
        dbs.push(home.join(format!("{name}.db")));
    }
    let (m2, m4) = (dbs[0].to_str().unwrap(), dbs[1].to_str().unwrap());
    let run = |format: &str| {
        let (code, out, err) = common::soakd(&["report", "--db", m2, "--db", m4, "--format", format, "--no-save"]);
        assert_eq!(code, 0, "{err}");
        out
    };
    let json: Value = serde_json::from_str(&run("json")).unwrap();
    let names: Vec<&str> = json["backends"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sim @ m2", "sim @ m4"]);
    let hostname = json["backends"][0]["host"]["hostname"].as_str().expect("the machine, from sysinfo");
    assert!(!hostname.is_empty());
    assert_eq!(json["backends"][1]["host"]["hostname"], hostname, "one machine wrote both");
    assert_eq!(
        (json["backends"][0]["requests"].as_u64(), json["backends"][1]["requests"].as_u64()),
        (Some(4), Some(6))
    );
    for format in ["table", "markdown"] {
        let text = run(format);
        assert!(text.contains("sim @ m2") && text.contains("sim @ m4"), "{format}:\n{text}");
    }
}
