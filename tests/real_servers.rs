//! Against the real servers, on the tiny generated model: llama.cpp's `llama-server` and
//! `mlx_lm.server`. These never skip: `scripts/test` installs both (see tests/common).

use crate::common;
use crate::common::{Deps, Server, db, deps, free_port, heavy, one, soakd, start_llama, start_mlx, write_config};
use rusqlite::Connection;
use std::path::Path;
use std::time::{Duration, Instant};

fn once(config: &Path, job: &str) -> String {
    let (code, out, err) = soakd(&["once", job, "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    out
}

/// A llama-server on the babble model, and a config pointing at it with these jobs.
fn llama_with_jobs(d: &Deps, dir: &Path, jobs: &str) -> (Server, std::path::PathBuf) {
    let server = start_llama(d, "babble", free_port(), dir);
    let config = write_config(dir, &common::llamacpp_backend("llama", &server), jobs);
    (server, config)
}

/// llama-server and mlx_lm.server on the same model variant, as backends `llama` and `mlx`.
fn both_with_jobs(d: &Deps, variant: &str, dir: &Path, jobs: &str) -> ([Server; 2], std::path::PathBuf) {
    let llama = start_llama(d, variant, free_port(), dir);
    let mlx = start_mlx(d, variant, free_port(), dir);
    let backends = format!("{}{}", common::backend("llama", llama.port), common::backend("mlx", mlx.port));
    let config = write_config(dir, &backends, jobs);
    ([llama, mlx], config)
}

fn count(conn: &Connection, filter: &str) -> i64 {
    one(conn, &format!("SELECT count(*) FROM requests WHERE {filter}"))
}

const STREAM_AND_BLOCKING: &str = r#"
[[job]]
name = "streamed"
cron = "@hourly"
requests = 6
concurrency = 2
max_tokens = 64
temperature = 0.0
prompts = "security"

[[job]]
name = "blocking"
cron = "@hourly"
requests = 3
stream = false
max_tokens = 64
temperature = 0.0
prompts = "security"
"#;

#[test]
fn llama_server_rows_timings_tokens_and_memory_are_right() {
    let _guard = heavy();
    let d = deps();
    let dir = tempfile::tempdir().unwrap();
    let (server, config) = llama_with_jobs(&d, dir.path(), STREAM_AND_BLOCKING);
    let out = once(&config, "streamed");
    assert!(out.contains("100.0 % (6/6)"), "{out}");
    once(&config, "blocking");
    let conn = db(dir.path());
    // A model that never stops gives exactly max_tokens, by the server's own count.
    assert_eq!(count(&conn, "outcome = 'ok' AND completion_tokens = 64 AND token_source = 'usage'"), 9);
    assert_eq!(count(&conn, "finish_reason = 'length'"), 9);
    // llama-server's own numbers are kept beside soakd's.
    assert_eq!(
        count(
            &conn,
            "server_decode_tps > 0 AND server_prompt_ms >= 0 AND json_extract(server_timings, '$.timings.predicted_n') = 64"
        ),
        9
    );
    // Streamed: every timing present and ordered; soakd's decode speed agrees with the server's.
    assert_eq!(
        count(
            &conn,
            "stream = 1 AND first_byte_ms <= ttft_ms AND ttft_ms <= first_content_ms AND first_content_ms <= e2e_ms AND gap_p50_ms <= gap_p95_ms AND gap_p95_ms <= gap_max_ms"
        ),
        6
    );
    let ratio: f64 = one(&conn, "SELECT avg(decode_tps / server_decode_tps) FROM requests WHERE stream = 1");
    assert!((0.2..=1.2).contains(&ratio), "soakd's decode tok/s / llama-server's predicted_per_second = {ratio}");
    // Non-streamed: no token timings, but the whole-request rate.
    assert_eq!(count(&conn, "stream = 0 AND ttft_ms IS NULL AND decode_tps IS NULL AND output_tps > 0"), 3);
    // The sampled process is the server, and every request knows its place in its life.
    let pid = server.pid();
    assert_eq!(
        one::<i64>(&conn, &format!("SELECT count(*) FROM memory_samples WHERE pid = {pid} AND rss_bytes > 1000000")),
        one::<i64>(&conn, "SELECT count(*) FROM memory_samples")
    );
    assert_eq!(one::<i64>(&conn, "SELECT count(DISTINCT server_seq) FROM requests"), 9);
    assert_eq!(one::<i64>(&conn, "SELECT max(server_seq) FROM requests"), 9);
    assert_eq!(count(&conn, &format!("server_pid = {pid}")), 9);
    assert_eq!(
        one::<i64>(&conn, &format!("SELECT count(*) FROM runs WHERE server_pid = {pid} AND status = 'completed'")),
        2
    );
    // Kind llamacpp: the server's build and model per run, and its own view before and after.
    assert_eq!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM runs WHERE server_version LIKE 'b%' AND server_model = 'tiny' AND json_extract(server_info, '$.n_ctx') > 0"
        ),
        2
    );
    assert_eq!(count(&conn, "server_completion_tokens = 64 AND server_prompt_tokens > 0 AND server_total_ms > 0"), 9);
    for (source, phase) in [("health", "before"), ("metrics", "after"), ("slots", "after")] {
        assert_eq!(
            one::<i64>(
                &conn,
                &format!("SELECT count(*) FROM server_samples WHERE source = '{source}' AND phase = '{phase}'")
            ),
            2,
            "{source} {phase}"
        );
    }
    // llama-server's own counter saw every token soakd counted.
    let predicted: f64 = one(
        &conn,
        "SELECT json_extract(data, '$.tokens_predicted_total') FROM server_samples WHERE source = 'metrics' ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(predicted, 9.0 * 64.0);
}

#[test]
fn mlx_lm_server_rows_tokens_and_memory_are_right() {
    let _guard = heavy();
    let d = deps();
    let dir = tempfile::tempdir().unwrap();
    let server = start_mlx(&d, "babble", free_port(), dir.path());
    let config = write_config(dir.path(), &common::backend("mlx", server.port), STREAM_AND_BLOCKING);
    once(&config, "streamed");
    once(&config, "blocking");
    let conn = db(dir.path());
    assert_eq!(count(&conn, "outcome = 'ok' AND completion_tokens = 64 AND token_source = 'usage'"), 9);
    // mlx_lm.server reports no timings of its own: soakd's are the only ones.
    assert_eq!(count(&conn, "server_timings IS NULL AND server_decode_tps IS NULL"), 9);
    assert_eq!(count(&conn, "stream = 1 AND ttft_ms > 0 AND decode_tps > 0 AND length(output) > 0"), 6);
    let pid = server.pid();
    assert!(
        one::<i64>(&conn, &format!("SELECT count(*) FROM memory_samples WHERE pid = {pid} AND rss_bytes > 10000000"))
            > 0
    );
    assert_eq!(one::<i64>(&conn, "SELECT count(DISTINCT pid) FROM memory_samples"), 1);
}

#[test]
fn both_servers_give_the_same_greedy_text() {
    let _guard = heavy();
    let d = deps();
    let dir = tempfile::tempdir().unwrap();
    let (_servers, config) = both_with_jobs(
        &d,
        "babble",
        dir.path(),
        "[[job]]\nname = \"greedy\"\ncron = \"@hourly\"\nrequests = 2\nmax_tokens = 24\ntemperature = 0.0\nprompts = [\"Explain SQL injection\", \"Say hello\"]\n",
    );
    once(&config, "greedy");
    let conn = db(dir.path());
    let text = |backend: &str, seq: i64| -> String {
        one(&conn, &format!("SELECT output FROM requests WHERE backend = '{backend}' AND seq = {seq}"))
    };
    for seq in 0..2 {
        assert!(!text("llama", seq).is_empty());
        assert_eq!(text("llama", seq), text("mlx", seq), "prompt {seq}: the two servers disagree");
    }
}

#[test]
fn a_model_that_says_nothing_is_empty_on_both_servers() {
    let _guard = heavy();
    let d = deps();
    let dir = tempfile::tempdir().unwrap();
    let (_servers, config) =
        both_with_jobs(&d, "silent", dir.path(), "[[job]]\nname = \"p\"\ncron = \"@hourly\"\nrequests = 2\n");
    once(&config, "p");
    let conn = db(dir.path());
    assert_eq!(count(&conn, "outcome = 'empty' AND finish_reason = 'stop'"), 4);
}

/// llama-server closes a streamed connection that a pooled client may already be reusing. soakd
/// must not report that healthy server as failing.
#[test]
fn pooled_connection_race_is_not_a_server_failure() {
    let _guard = heavy();
    let d = deps();
    let dir = tempfile::tempdir().unwrap();
    let (_server, config) = llama_with_jobs(
        &d,
        dir.path(),
        "[[job]]\nname = \"rapid\"\ncron = \"@hourly\"\nrequests = 200\nconcurrency = 4\nmax_tokens = 16\n",
    );
    once(&config, "rapid");
    let conn = db(dir.path());
    assert_eq!(count(&conn, "outcome = 'ok'"), 200, "failures: {:?}", failures(&conn));
    let retried = count(&conn, "attempts = 2");
    eprintln!("pooled-connection race: {retried} of 200 requests were retried on a new connection");
}

fn failures(conn: &Connection) -> Vec<(String, String)> {
    let mut stmt =
        conn.prepare("SELECT outcome, coalesce(error, '') FROM requests WHERE outcome <> 'ok' LIMIT 5").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

fn rows(conn: &Connection, filter: &str) -> Vec<String> {
    let sql = format!(
        "SELECT id, outcome, started_at, e2e_ms, server_pid, attempts, coalesce(error, '') FROM requests WHERE {filter}"
    );
    let mut stmt = conn.prepare(&sql).unwrap();
    stmt.query_map([], |r| {
        Ok(format!(
            "#{} {} at {} after {:?} ms pid {:?} attempts {}: {}",
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<f64>>(3)?,
            r.get::<_, Option<i64>>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, String>(6)?
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn by_pid(conn: &Connection) -> Vec<(Option<i64>, String, i64)> {
    let mut stmt =
        conn.prepare("SELECT server_pid, outcome, count(*) FROM requests GROUP BY 1, 2 ORDER BY min(id)").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

fn wait_for(conn_dir: &Path, sql: &str, at_least: i64, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(c) = Connection::open(conn_dir.join("soakd.db"))
            && c.query_row(sql, [], |r| r.get::<_, i64>(0)).is_ok_and(|n| n >= at_least)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{sql} never reached {at_least} within {limit:?}");
}

/// llama-server killed and started again between two `soakd once` runs: the second run compares
/// with the log and records the restart it did not see happen.
#[test]
fn a_restart_between_two_sessions_is_a_restart() {
    let _guard = heavy();
    let d = deps();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut first = start_llama(&d, "babble", port, dir.path());
    let old_pid = first.pid();
    let config = write_config(
        dir.path(),
        &common::llamacpp_backend("llama", &first),
        "[[job]]\nname = \"few\"\ncron = \"@hourly\"\nrequests = 2\nmax_tokens = 8\n",
    );
    let once = || {
        let (code, out, err) = soakd(&["once", "few", "--config", config.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}\n{err}");
    };
    once();
    first.kill();
    let second: Server = start_llama(&d, "babble", port, dir.path());
    let new_pid = second.pid();
    once();
    let conn = db(dir.path());
    let restart: (i64, i64, i64, i64) = conn
        .query_row(
            "SELECT json_extract(detail, '$.old_pid'), json_extract(detail, '$.new_pid'), \
                    json_extract(detail, '$.detected_at_start'), json_extract(detail, '$.away_s') \
             FROM events WHERE kind = 'restart'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("one restart event");
    assert_eq!(
        (restart.0, restart.1, restart.2),
        (i64::from(old_pid), i64::from(new_pid), 1),
        "old, new, detected at start"
    );
    assert!((0..600).contains(&restart.3), "{restart:?}");
    // A third run against the same process is no restart.
    once();
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM restarts"), 1);
}

/// SIGKILL llama-server mid-burst, restart it on the same port: the failures are recorded, the
/// run goes on, and the new process shows up as a restart.
#[test]
fn llama_server_killed_mid_burst_then_restarted() {
    let _guard = heavy();
    let d = deps();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut first = start_llama(&d, "babble", port, dir.path());
    let old_pid = first.pid();
    let config = write_config(
        dir.path(),
        &common::llamacpp_backend("llama", &first),
        "[[job]]\nname = \"burst\"\ncron = \"@hourly\"\nrequests = 300\ndelay_ms = 20\nmax_tokens = 48\n\
         timeouts = { first_byte_ms = 5000 }\n",
    );
    let child = std::process::Command::new(common::SOAKD)
        .args(["once", "burst", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(dir.path(), "SELECT count(*) FROM requests WHERE outcome = 'ok'", 30, Duration::from_secs(60));
    let killed_at = now_ms();
    first.kill();
    wait_for(dir.path(), "SELECT count(*) FROM requests WHERE outcome = 'connect_refused'", 5, Duration::from_secs(30));
    let second: Server = start_llama(&d, "babble", port, dir.path());
    let ready_at = now_ms();
    let new_pid = second.pid();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let conn = db(dir.path());
    assert_eq!(count(&conn, "outcome <> 'in_flight'"), 300, "every request recorded");
    assert!(count(&conn, "outcome = 'connect_refused'") >= 5);
    // Every failure happened while the server was down or starting up again (a new
    // llama-server answers 503 "Loading model" for a moment), none once it was ready.
    let outside = format!("outcome <> 'ok' AND (started_at < {} OR started_at > {})", killed_at - 100, ready_at + 500);
    assert_eq!(count(&conn, &outside), 0, "{:?}", rows(&conn, &outside));
    let unexpected =
        "outcome NOT IN ('ok', 'connect_refused', 'connect_error', 'reset_mid_stream', 'truncated', 'http_error')";
    assert_eq!(count(&conn, unexpected), 0, "{:?}", rows(&conn, unexpected));
    assert_eq!(count(&conn, "outcome = 'http_error' AND (http_status <> 503 OR error NOT LIKE '%Loading model%')"), 0);
    assert!(
        count(&conn, &format!("outcome = 'ok' AND server_pid = {new_pid}")) > 10,
        "requests succeed after the restart: {:?}",
        by_pid(&conn)
    );
    let restart: (i64, i64) = conn
        .query_row("SELECT old_pid, new_pid FROM restarts", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("one restart event");
    assert_eq!(restart, (i64::from(old_pid), i64::from(new_pid)));
    // The request count starts again with the new process, counting the requests that reached
    // it before the sampler had seen it (e.g. its 503 "Loading model" answers).
    let started: i64 =
        one(&conn, &format!("SELECT min(proc_started_at) * 1000 FROM memory_samples WHERE pid = {new_pid}"));
    let unseen: i64 = count(
        &conn,
        &format!(
            "server_pid IS NULL AND started_at >= {started} AND outcome NOT IN ('connect_refused', 'connect_error', 'connect_timeout')"
        ),
    );
    assert_eq!(
        one::<i64>(&conn, &format!("SELECT min(server_seq) FROM requests WHERE server_pid = {new_pid}")),
        unseen + 1
    );
    assert_eq!(one::<i64>(&conn, "SELECT count(DISTINCT pid) FROM memory_samples WHERE pid IS NOT NULL"), 2);
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM events WHERE kind = 'process_missing'"), 1);
    // The failures carry the tail of the server's log: for the lost process, and for the first
    // failed request of the burst.
    let evidence = |filter: &str| -> i64 {
        let log = first.log.display().to_string();
        one(
            &conn,
            &format!(
                "SELECT count(*) FROM crash_evidence WHERE source = 'log' AND path = '{log}' AND text LIKE '%slot%' AND {filter}"
            ),
        )
    };
    assert_eq!(evidence("event_id = (SELECT id FROM events WHERE kind = 'process_missing')"), 1);
    assert!(evidence("request_id IN (SELECT id FROM requests WHERE outcome <> 'ok')") >= 1);
    // The server's health, looked at after failures: gone, then back.
    let health: Vec<String> = conn
        .prepare("SELECT json_extract(detail, '$.to') FROM events WHERE kind = 'health_changed' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(health.contains(&"unreachable".to_string()), "{health:?}");
}

/// mlx_lm.server streams over HTTP/1.0 with no length: a kill mid-stream looks like an early
/// end of the body, with no finish reason and no [DONE].
#[test]
fn mlx_lm_server_killed_mid_stream() {
    let _guard = heavy();
    let d: Deps = deps();
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_mlx(&d, "babble", free_port(), dir.path());
    let backend = format!("{}log = \"{}\"\n", common::backend("mlx", server.port), server.log.display());
    let config = write_config(
        dir.path(),
        &backend,
        "[[job]]\nname = \"long\"\ncron = \"@hourly\"\nrequests = 2\nmax_tokens = 4000\n",
    );
    let child = std::process::Command::new(common::SOAKD)
        .args(["once", "long", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(dir.path(), "SELECT count(*) FROM requests WHERE outcome = 'in_flight'", 1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1500));
    server.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let conn = db(dir.path());
    let first: String = one(&conn, "SELECT outcome FROM requests WHERE seq = 0");
    assert!(["truncated", "reset_mid_stream"].contains(&first.as_str()), "{first}");
    assert!(
        count(&conn, "seq = 0 AND ttft_ms > 0 AND completion_tokens > 10") == 1,
        "tokens before the kill were counted"
    );
    assert_eq!(one::<String>(&conn, "SELECT outcome FROM requests WHERE seq = 1"), "connect_refused");
    // The cut-off request carries the tail of mlx_lm.server's log.
    let log = server.log.display().to_string();
    assert_eq!(
        one::<i64>(
            &conn,
            &format!(
                "SELECT count(*) FROM crash_evidence WHERE request_id = (SELECT id FROM requests WHERE seq = 0) AND source = 'log' AND path = '{log}' AND length(text) > 0"
            )
        ),
        1
    );
}

/// Killed while idle under the daemon: the lost process is an event with the log's tail, the
/// next firing's requests fail as refused, and the new server is a restart.
#[test]
fn llama_server_killed_while_idle_under_the_daemon() {
    let _guard = heavy();
    let d = deps();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut first = start_llama(&d, "babble", port, dir.path());
    let old_pid = first.pid();
    let config = write_config(
        dir.path(),
        &common::llamacpp_backend("llama", &first),
        "[[job]]\nname = \"every-3s\"\ncron = \"*/3 * * * * *\"\nrequests = 2\nmax_tokens = 8\n",
    );
    let child = std::process::Command::new(common::SOAKD)
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(dir.path(), "SELECT count(*) FROM runs WHERE status = 'completed'", 1, Duration::from_secs(30));
    // Between firings: no request in flight.
    wait_for(dir.path(), "SELECT count(*) = 0 FROM requests WHERE outcome = 'in_flight'", 1, Duration::from_secs(10));
    let log_before_kill = first.log_text();
    first.kill();
    wait_for(dir.path(), "SELECT count(*) FROM events WHERE kind = 'process_missing'", 1, Duration::from_secs(15));
    wait_for(dir.path(), "SELECT count(*) FROM requests WHERE outcome = 'connect_refused'", 1, Duration::from_secs(15));
    let second = start_llama(&d, "babble", port, dir.path());
    let new_pid = second.pid();
    wait_for(
        dir.path(),
        &format!("SELECT count(*) FROM requests WHERE outcome = 'ok' AND server_pid = {new_pid}"),
        1,
        Duration::from_secs(30),
    );
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let conn = db(dir.path());
    assert_eq!(
        one::<i64>(&conn, "SELECT json_extract(detail, '$.last_pid') FROM events WHERE kind = 'process_missing'"),
        i64::from(old_pid)
    );
    let restart: (i64, i64) = conn
        .query_row("SELECT old_pid, new_pid FROM restarts", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("one restart event");
    assert_eq!(restart, (i64::from(old_pid), i64::from(new_pid)));
    // The evidence is the end of the killed server's log, as it was.
    let tail: String = one(
        &conn,
        "SELECT text FROM crash_evidence WHERE source = 'log' AND event_id = (SELECT id FROM events WHERE kind = 'process_missing')",
    );
    let last_line = log_before_kill.lines().last().expect("llama-server logged");
    assert!(tail.ends_with(last_line), "{tail:?} does not end with {last_line:?}");
    assert_eq!(count(&conn, "outcome NOT IN ('ok', 'connect_refused', 'cancelled')"), 0, "{:?}", failures(&conn));
}

/// `soakd run` fires the schedules, skips a firing that would stack on a running one, and
/// stops cleanly on SIGTERM.
#[test]
fn daemon_fires_skips_overlaps_and_stops_cleanly() {
    let _guard = heavy();
    let d = deps();
    let dir = tempfile::tempdir().unwrap();
    let (_server, config) = llama_with_jobs(
        &d,
        dir.path(),
        r#"
[[job]]
name = "every-2s"
cron = "*/2 * * * * *"
requests = 2
max_tokens = 16
exclusive = false

[[job]]
name = "slow"
cron = "* * * * * *"
requests = 12
delay_ms = 250
max_tokens = 8
exclusive = false
"#,
    );
    let child = std::process::Command::new(common::SOAKD)
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the work itself, not a fixed span: a slow machine may take seconds to start.
    let enough = |path: &Path| -> Option<bool> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
        let n = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).ok();
        let every = n("SELECT count(*) FROM runs WHERE job = 'every-2s' AND status = 'completed'")?;
        let skipped = n("SELECT count(*) FROM runs WHERE job = 'slow' AND status = 'skipped'")?;
        Some(every >= 3 && skipped >= 2)
    };
    let waiting = Instant::now();
    while waiting.elapsed() < Duration::from_secs(45) && enough(&dir.path().join("soakd.db")) != Some(true) {
        std::thread::sleep(Duration::from_millis(250));
    }
    let stopping = Instant::now();
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stopping.elapsed() < Duration::from_secs(15), "stopped in {:?}", stopping.elapsed());
    let conn = db(dir.path());
    let runs = |job: &str, status: &str| -> i64 {
        one(&conn, &format!("SELECT count(*) FROM runs WHERE job = '{job}' AND status = '{status}'"))
    };
    assert!(runs("every-2s", "completed") >= 3, "every-2s completed {}", runs("every-2s", "completed"));
    assert!(runs("slow", "skipped") >= 2, "a 3 s job fired every second must skip");
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM runs WHERE status = 'running'"), 0);
    assert_eq!(count(&conn, "outcome = 'in_flight'"), 0);
    assert_eq!(count(&conn, "outcome NOT IN ('ok', 'cancelled')"), 0, "{:?}", failures(&conn));
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM events WHERE kind IN ('daemon_start', 'daemon_stop')"), 2);
    assert!(one::<i64>(&conn, "SELECT count(*) FROM memory_samples WHERE phase = 'idle'") >= 1);
    // Runs fire on their planned instants (whole seconds), within the scheduler's tick.
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM runs WHERE planned_at % 1000 <> 0"), 0);
    assert_eq!(
        one::<i64>(&conn, "SELECT count(*) FROM runs WHERE status <> 'skipped' AND started_at - planned_at > 1500"),
        0
    );
}
