//! Every outcome of soakd's taxonomy (README, "What is measured"), produced for real — by a `soakd sim` process, a dead
//! port, a full accept queue, a signal to soakd — and classified by `soakd once` end to end.

use crate::common;
use crate::common::{db, one, soakd, start_sim, write_config};
use std::path::Path;
use std::time::Duration;

/// Runs `soakd once j` with one job against a sim started with `sim_args`; returns the
/// temp dir (holding soakd.db) and soakd's stdout.
fn once_against_sim(sim_args: &[&str], job: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(sim_args, dir.path());
    let out = once(dir.path(), sim.port, job);
    (dir, out)
}

fn once(dir: &Path, port: u16, job: &str) -> String {
    let config =
        write_config(dir, &common::backend("sim", port), &format!("[[job]]\nname = \"j\"\ncron = \"@hourly\"\n{job}"));
    let (code, out, err) = soakd(&["once", "j", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "soakd once exits 0 whatever the server does:\n{out}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    out
}

/// Waits until `n` requests are recorded as in flight.
fn wait_in_flight(dir: &Path, n: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = rusqlite::Connection::open(dir.join("soakd.db")).ok().and_then(|c| {
            c.query_row("SELECT count(*) FROM requests WHERE outcome = 'in_flight'", [], |r| r.get::<_, i64>(0)).ok()
        });
        if seen == Some(n) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{n} requests never showed up in flight");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn outcomes(dir: &Path) -> Vec<String> {
    let conn = db(dir);
    let mut stmt = conn.prepare("SELECT outcome FROM requests ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

fn only(dir: &Path, outcome: &str, n: usize) {
    assert_eq!(outcomes(dir), vec![outcome.to_string(); n]);
}

#[test]
fn ok_streamed_with_exact_counts_and_timings() {
    let (dir, _) = once_against_sim(
        &["--ttft-ms", "300", "--tokens-per-s", "100", "--jitter", "0"],
        "requests = 3\nmax_tokens = 20\n",
    );
    only(dir.path(), "ok", 3);
    let conn = db(dir.path());
    assert_eq!(
        one::<i64>(&conn, "SELECT count(*) FROM requests WHERE completion_tokens = 20 AND token_source = 'usage'"),
        3
    );
    assert_eq!(
        one::<i64>(&conn, "SELECT count(*) FROM requests WHERE finish_reason = 'length' AND http_status = 200"),
        3
    );
    // The sim waits 300 ms before the first token: soakd's TTFT is that plus loopback overhead.
    let (min, max): (f64, f64) =
        conn.query_row("SELECT min(ttft_ms), max(ttft_ms) FROM requests", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert!(min >= 300.0 && max < 3000.0, "TTFT {min}..{max} ms for a 300 ms sim");
    // The keepalive comment arrives before any token.
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE first_byte_ms < ttft_ms"), 3);
    // 100 tokens/s: a sanity band (the accuracy itself is measured by `cargo bench`).
    let tps: f64 = one(&conn, "SELECT avg(decode_tps) FROM requests");
    assert!((30.0..=110.0).contains(&tps), "decode {tps} tok/s for a 100 tok/s sim");
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE gap_p50_ms BETWEEN 2 AND 100"), 3);
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE length(output) > 20"), 3);
}

#[test]
fn ok_non_streamed_has_counts_but_no_token_timings() {
    let (dir, _) = once_against_sim(&["--ttft-ms", "50"], "requests = 2\nmax_tokens = 10\nstream = false\n");
    only(dir.path(), "ok", 2);
    let conn = db(dir.path());
    assert_eq!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM requests WHERE ttft_ms IS NULL AND decode_tps IS NULL AND output_tps > 0 AND completion_tokens = 10"
        ),
        2
    );
}

#[test]
fn reasoning_and_tool_calls_are_recognised() {
    let (dir, _) = once_against_sim(
        &["--ttft-ms", "20", "--reasoning-tokens", "4"],
        "requests = 2\nmax_tokens = 16\ntools = \"weather\"\nprompts = \"tool-call\"\n",
    );
    only(dir.path(), "ok", 2);
    let conn = db(dir.path());
    assert_eq!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM requests WHERE reasoning_seen = 1 AND tool_call_seen = 1 AND tool_call_valid = 1"
        ),
        2
    );
    // TTFT counts the first reasoning token; first content comes later or never (a tool call).
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE ttft_ms IS NOT NULL"), 2);
}

#[test]
fn http_500_is_an_http_error() {
    let (dir, out) = once_against_sim(&["--fault", "http500=1"], "requests = 2\n");
    only(dir.path(), "http_error", 2);
    assert_eq!(
        one::<i64>(
            &db(dir.path()),
            "SELECT count(*) FROM requests WHERE http_status = 500 AND error LIKE 'HTTP 500:%'"
        ),
        2
    );
    assert!(out.contains("http_error ×2"), "{out}");
}

#[test]
fn oom_and_metal_errors_are_server_reported_crashes() {
    let (dir, _) = once_against_sim(&["--fault", "metal-oom=1"], "requests = 1\n");
    only(dir.path(), "server_reported_crash", 1);
    let sig: String = one(&db(dir.path()), "SELECT error_signature FROM requests");
    assert!(sig.contains("kIOGPUCommandBufferCallbackErrorOutOfMemory"), "{sig}");
    let (dir, _) = once_against_sim(&["--fault", "http503=1"], "requests = 1\n");
    only(dir.path(), "server_reported_crash", 1);
}

#[test]
fn lm_studio_crash_then_unloaded_then_back() {
    let (dir, _) = once_against_sim(
        &["--crash-style", "lmstudio", "--exit-after", "2", "--unloaded-requests", "2"],
        "requests = 5\nmax_tokens = 8\n",
    );
    assert_eq!(
        outcomes(dir.path()),
        ["ok", "server_reported_crash", "server_reported_crash", "server_reported_crash", "ok"]
    );
    let conn = db(dir.path());
    let sigs: i64 = one(&conn, "SELECT count(DISTINCT error_signature) FROM requests WHERE outcome <> 'ok'");
    assert_eq!(sigs, 2, "the crash and the unloaded answers have their own signatures");
}

#[test]
fn a_hanging_server_is_no_first_byte() {
    let (dir, _) =
        once_against_sim(&["--fault", "hang=1"], "requests = 1\ntimeouts = { first_byte_ms = 400, total_ms = 5000 }\n");
    only(dir.path(), "no_first_byte", 1);
    let e2e: f64 = one(&db(dir.path()), "SELECT e2e_ms FROM requests");
    assert!((400.0..5000.0).contains(&e2e), "{e2e}");
}

#[test]
fn silence_mid_stream_is_a_stall() {
    let (dir, _) = once_against_sim(
        &["--fault", "stall=1", "--stall-ms", "5000", "--ttft-ms", "20"],
        "requests = 1\nmax_tokens = 10\ntimeouts = { stall_ms = 400 }\n",
    );
    only(dir.path(), "stall", 1);
    let err: String = one(&db(dir.path()), "SELECT error FROM requests");
    assert!(err.contains("after 3 tokens"), "{err}");
}

#[test]
fn a_broken_connection_is_reset_mid_stream() {
    let (dir, _) = once_against_sim(&["--fault", "reset=1", "--ttft-ms", "20"], "requests = 2\nmax_tokens = 10\n");
    only(dir.path(), "reset_mid_stream", 2);
}

#[test]
fn a_clean_end_without_finish_is_truncated() {
    let (dir, _) = once_against_sim(&["--fault", "truncate=1", "--ttft-ms", "20"], "requests = 1\nmax_tokens = 10\n");
    only(dir.path(), "truncated", 1);
}

#[test]
fn bad_json_is_malformed_streamed_or_not() {
    let (dir, _) = once_against_sim(&["--fault", "malformed=1", "--ttft-ms", "20"], "requests = 1\nmax_tokens = 10\n");
    only(dir.path(), "malformed", 1);
    let (dir, _) = once_against_sim(&["--fault", "malformed=1", "--ttft-ms", "20"], "requests = 1\nstream = false\n");
    only(dir.path(), "malformed", 1);
}

#[test]
fn nothing_in_the_reply_is_empty() {
    let (dir, _) = once_against_sim(&["--fault", "empty=1"], "requests = 2\n");
    only(dir.path(), "empty", 2);
    let (dir, _) = once_against_sim(&["--fault", "empty=1"], "requests = 1\nstream = false\n");
    only(dir.path(), "empty", 1);
}

#[test]
fn a_slow_stream_past_the_total_limit_is_a_timeout() {
    let (dir, _) = once_against_sim(
        &["--tokens-per-s", "5", "--ttft-ms", "20", "--jitter", "0"],
        "requests = 1\nmax_tokens = 50\ntimeouts = { total_ms = 1000 }\n",
    );
    only(dir.path(), "timeout", 1);
}

#[test]
fn a_dead_port_is_connect_refused() {
    let dir = tempfile::tempdir().unwrap();
    once(dir.path(), common::free_port(), "requests = 2\n");
    only(dir.path(), "connect_refused", 2);
}

/// A listener whose accept queue is full drops new SYNs: the connect never completes.
#[cfg(target_os = "linux")]
#[test]
fn a_full_accept_queue_is_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // std listens with a backlog of 128; fill the queue without accepting.
    let mut held = Vec::new();
    for _ in 0..200 {
        match std::net::TcpStream::connect_timeout(&listener.local_addr().unwrap(), Duration::from_millis(200)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    once(dir.path(), port, "requests = 1\ntimeouts = { connect_ms = 300 }\n");
    only(dir.path(), "connect_timeout", 1);
    drop(listener);
}

#[test]
fn a_process_that_dies_mid_stream_then_stays_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = start_sim(&["--exit-after", "2", "--ttft-ms", "20"], dir.path());
    let pid = sim.pid();
    once(dir.path(), sim.port, "requests = 4\nmax_tokens = 10\n");
    assert_eq!(outcomes(dir.path()), ["ok", "reset_mid_stream", "connect_refused", "connect_refused"]);
    let status = sim.child.wait().unwrap();
    assert_eq!(status.code(), Some(134), "the sim aborted");
    let conn = db(dir.path());
    assert_eq!(one::<i64>(&conn, &format!("SELECT count(*) FROM requests WHERE server_pid = {pid}")), 2);
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM events WHERE kind = 'process_missing'"), 1);
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE server_pid IS NULL"), 2);
}

#[test]
fn memory_growth_shows_in_the_samples() {
    let (dir, _) = once_against_sim(
        &["--grow-per-request-kb", "4096", "--ttft-ms", "5", "--tokens-per-s", "1000"],
        "requests = 10\nmax_tokens = 4\n",
    );
    only(dir.path(), "ok", 10);
    let conn = db(dir.path());
    let grew: i64 = one(
        &conn,
        "SELECT (SELECT rss_bytes FROM memory_samples WHERE phase = 'after' ORDER BY id DESC LIMIT 1)
              - (SELECT rss_bytes FROM memory_samples WHERE phase = 'before' ORDER BY id LIMIT 1)",
    );
    assert!(grew > 30 << 20, "10 × 4 MiB held, RSS grew {} MiB", grew >> 20);
    assert_eq!(one::<i64>(&conn, "SELECT count(DISTINCT pid) FROM memory_samples"), 1);
}

#[test]
fn sigint_cancels_in_flight_requests_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(&["--fault", "hang=1"], dir.path());
    let config = write_config(
        dir.path(),
        &format!("shutdown_grace_s = 0.5\n{}", common::backend("sim", sim.port)),
        "[[job]]\nname = \"j\"\ncron = \"@hourly\"\nrequests = 4\nconcurrency = 2\ntimeouts = { first_byte_ms = 60000 }\n",
    );
    // `shutdown_grace_s` must come before any table: put it at the top of the file.
    let text = std::fs::read_to_string(&config).unwrap();
    let text = format!("shutdown_grace_s = 0.5\n{}", text.replace("shutdown_grace_s = 0.5\n", ""));
    std::fs::write(&config, text).unwrap();
    let child = std::process::Command::new(common::SOAKD)
        .args(["once", "j", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_in_flight(dir.path(), 2);
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    only(dir.path(), "cancelled", 2);
    let conn = db(dir.path());
    assert_eq!(one::<String>(&conn, "SELECT status FROM runs"), "cancelled");
    assert_eq!(one::<i64>(&conn, "SELECT requests_done FROM runs"), 2);
}

#[test]
fn a_killed_soakd_leaves_interrupted_requests() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(&["--fault", "hang=1"], dir.path());
    let config = write_config(
        dir.path(),
        &common::backend("sim", sim.port),
        "[[job]]\nname = \"j\"\ncron = \"@hourly\"\nrequests = 2\nconcurrency = 2\ntimeouts = { first_byte_ms = 60000 }\n\
         [[job]]\nname = \"other\"\ncron = \"@hourly\"\nrequests = 1\ntimeouts = { first_byte_ms = 100 }\n",
    );
    let mut child = std::process::Command::new(common::SOAKD)
        .args(["once", "j", "--config", config.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Once both requests are recorded as in flight, kill soakd outright.
    wait_in_flight(dir.path(), 2);
    child.kill().unwrap();
    child.wait().unwrap();
    // The next soakd to open the database marks them.
    let (code, _, err) = soakd(&["once", "other", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let conn = db(dir.path());
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE outcome = 'interrupted' AND job = 'j'"), 2);
    assert_eq!(one::<String>(&conn, "SELECT status FROM runs WHERE job = 'j'"), "interrupted");
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM events WHERE kind = 'interrupted'"), 1);
}

/// The pooled-connection race, made certain: a server that answers one request per connection
/// in full (keep-alive) and then closes the connection when the client reuses it — what
/// llama-server does after a stream. The request is retried once on a new connection and the
/// retry is recorded; the server is not reported as failing. The requests after it go on new
/// connections (`FRESH_AFTER_CLOSED`), so the race is not run again at every request.
#[test]
fn a_reused_connection_the_server_closed_is_retried_once_and_not_reused_next() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::{Arc, Mutex};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The requests each connection received, in the order the connections were accepted. Each
    // connection is served on its own thread: a connection the client's pool opened ahead and
    // never used (hyper connects while it waits for an idle one) holds up no other.
    let received = Arc::new(Mutex::new(Vec::<usize>::new()));
    let seen = received.clone();
    std::thread::spawn(move || {
        let body = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"hi\"}}]}\n\n\
                    data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n\
                    data: [DONE]\n\n";
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let seen = seen.clone();
            let connection = {
                let mut seen = seen.lock().unwrap();
                seen.push(0);
                seen.len() - 1
            };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                for served in 0.. {
                    // Read one request: headers, then Content-Length bytes.
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    if length == 0 {
                        break;
                    }
                    let mut request = vec![0; length];
                    reader.read_exact(&mut request).unwrap();
                    seen.lock().unwrap()[connection] += 1;
                    if served == 1 {
                        break; // the reused connection: close it without an answer
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    if writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(body.as_bytes())).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    once(dir.path(), port, "requests = 4\nmax_tokens = 4\n");
    assert_eq!(outcomes(dir.path()), ["ok"; 4]);
    let conn = db(dir.path());
    let attempts: Vec<i64> = conn
        .prepare("SELECT attempts FROM requests ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(attempts, [1, 2, 1, 1], "after the retry, no pooled connection was tried");
    // Connections that carried requests: the first (its reuse closed), the retry's, and one
    // for each request after it.
    let received: Vec<usize> = received.lock().unwrap().iter().copied().filter(|n| *n > 0).collect();
    assert_eq!(received, [2, 1, 1, 1], "the retry and each request after it used a new connection");
}

#[test]
fn a_redirect_is_an_http_error_with_its_location_and_is_not_followed() {
    // Where the redirect points: a listener that must see no connection.
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let target = format!("http://127.0.0.1:{}/v1/chat/completions", elsewhere.local_addr().unwrap().port());
    let location = target.clone();
    let port = common::raw_http_server(4, move |_| {
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 5\r\nconnection: close\r\n\r\nmoved"
        )
    });
    let dir = tempfile::tempdir().unwrap();
    once(dir.path(), port, "requests = 1\nmax_tokens = 4\n");
    only(dir.path(), "http_error", 1);
    let conn = db(dir.path());
    assert_eq!(one::<i64>(&conn, "SELECT http_status FROM requests"), 307);
    let error: String = one(&conn, "SELECT error FROM requests");
    assert!(error.contains(&format!("redirect to {target}")), "{error}");
    assert!(elsewhere.accept().is_err(), "the redirect was followed");
}

/// A vLLM-shaped server that keeps answering `/health` but generates nothing: after K = 3
/// unanswered requests (across two runs) the report and the digest say `wedged` since the first,
/// and a success ends it. One that answers every request with an empty 200 is `silent_failure`.
#[test]
fn a_wedged_server_and_a_silent_one_are_named_in_the_report_and_the_digest() {
    let dir = tempfile::tempdir().unwrap();
    let wedged = start_sim(&["--flavour", "vllm", "--fault", "hang=1"], dir.path());
    let silent = start_sim(&["--fault", "empty=1"], dir.path());
    let config = write_config(
        dir.path(),
        &format!(
            "[[backend]]\nname = \"wedged\"\nkind = \"vllm\"\nurl = \"http://127.0.0.1:{}\"\n{}",
            wedged.port,
            common::backend("silent", silent.port)
        ),
        "[[job]]\nname = \"j\"\ncron = \"@hourly\"\nrequests = 2\nmax_tokens = 4\ntimeouts = { first_byte_ms = 500 }\n",
    );
    let c = config.to_str().unwrap();
    let report = || {
        let (code, out, err) = soakd(&["report", "--config", c, "--format", "json", "--no-save"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let stuck = |r: &serde_json::Value, name: &str| {
        r["backends"].as_array().unwrap().iter().find(|b| b["name"] == name).unwrap()["stuck"].clone()
    };
    for _ in 0..2 {
        let (code, out, err) = soakd(&["once", "j", "--config", c]);
        assert_eq!(code, 0, "{out}\n{err}");
    }
    let r = report();
    let w = stuck(&r, "wedged");
    assert_eq!(w["kind"], "wedged", "{w}");
    assert_eq!(w["requests"], 4, "{w}");
    assert_eq!(w["health"], "ok", "it answers /health: {w}");
    let first: i64 = one(&db(dir.path()), "SELECT min(started_at) FROM requests WHERE backend = 'wedged'");
    assert_eq!(w["since"], first, "since the first unanswered request");
    assert_eq!(stuck(&r, "silent")["kind"], "silent_failure");
    let findings: Vec<&str> = r["findings"].as_array().unwrap().iter().filter_map(|f| f["kind"].as_str()).collect();
    assert!(findings.contains(&"wedged") && findings.contains(&"silent_failure"), "{findings:?}");
    let (code, digest, err) = soakd(&["digest", "--print", "--config", c]);
    assert_eq!(code, 0, "{err}");
    assert!(digest.contains("WEDGED since") && digest.contains("SILENT FAILURE since"), "{digest}");
    assert!(
        digest.contains("generating nothing since") && digest.contains("although it answers health checks"),
        "{digest}"
    );

    // The server recovers (here: the backend now points at a healthy one): one success ends it.
    let healthy = start_sim(&["--flavour", "vllm"], dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(&format!(":{}\"", wedged.port), &format!(":{}\"", healthy.port))).unwrap();
    let (code, out, err) = soakd(&["once", "j", "--config", c, "--backend", "wedged"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = report();
    assert!(stuck(&r, "wedged").is_null(), "a success ends it: {}", stuck(&r, "wedged"));
    assert_eq!(stuck(&r, "silent")["kind"], "silent_failure", "the other one is still failing");
}
