//! The `mlx-lm` kind end to end: soakd runs the real mlx_lm library (the test venv's CPU build)
//! in its own worker process on the tiny generated model. Never skips: `scripts/test` installs
//! the venv and the model (see tests/common).

use crate::common;
use crate::common::{db, deps, heavy, one, soakd, write_config};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The interpreter of the test venv (the one that has mlx-lm).
fn python() -> PathBuf {
    let p = std::env::var_os("SOAKD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| deps().mlx_server.with_file_name("python3"));
    assert!(p.exists(), "{} does not exist: run `scripts/test-deps`", p.display());
    p
}

/// A config with one `mlx-lm` backend, "direct", on a tiny model variant.
fn config(dir: &Path, variant: &str, jobs: &str) -> PathBuf {
    let backend = format!(
        "[[backend]]\nname = \"direct\"\nkind = \"mlx-lm\"\npython = \"{}\"\nmodel = \"{}\"\nlog = \"worker.log\"\n",
        python().display(),
        deps().hf(variant).display()
    );
    write_config(dir, &backend, jobs)
}

fn once(config: &Path, job: &str) -> String {
    let (code, out, err) = soakd(&["once", job, "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    out
}

fn count(conn: &Connection, filter: &str) -> i64 {
    one(conn, &format!("SELECT count(*) FROM requests WHERE {filter}"))
}

fn alive(pid: i64) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const JOBS: &str = r#"
[[job]]
name = "streamed"
cron = "@hourly"
requests = 6
max_tokens = 64
temperature = 0.0
prompts = "security"

[[job]]
name = "blocking"
cron = "@hourly"
requests = 3
stream = false
max_tokens = 48
prompts = "security"
"#;

#[test]
fn direct_mlx_lm_rows_timings_load_and_memory_are_right() {
    let _guard = heavy();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "babble", JOBS);
    let out = once(&config, "streamed");
    assert!(out.contains("100.0 % (6/6)"), "{out}");
    once(&config, "blocking");
    let conn = db(dir.path());
    // The babble model never stops: exactly max_tokens, by mlx_lm's own count.
    assert_eq!(count(&conn, "outcome = 'ok' AND completion_tokens = max_tokens AND token_source = 'usage'"), 9);
    assert_eq!(count(&conn, "finish_reason = 'length' AND server_stop_reason = 'length'"), 9);
    assert_eq!(count(&conn, "server_completion_tokens = max_tokens AND server_prompt_tokens > 0"), 9);
    // MLX's own numbers: peak memory of each request, its decode speed, its prompt time.
    assert_eq!(count(&conn, "server_peak_bytes > 0 AND server_decode_tps > 0 AND server_prompt_ms >= 0"), 9);
    assert_eq!(count(&conn, "server_model = 'hf' AND json_extract(server_timings, '$.mlx_lm.generation_tps') > 0"), 9);
    // Streamed: every token timed by soakd.
    assert_eq!(
        count(&conn, "stream = 1 AND ttft_ms > 0 AND ttft_ms <= e2e_ms AND decode_tps > 0 AND length(output) > 0"),
        6
    );
    // Not streamed: the reply comes whole, so no token timings (the seed's "TTFT N/A").
    assert_eq!(count(&conn, "stream = 0 AND ttft_ms IS NULL AND output_tps > 0 AND length(output) > 0"), 3);
    // Each `once` is a session with its own worker: its first request paid the model load,
    // the others did not.
    assert_eq!(one::<i64>(&conn, "SELECT count(DISTINCT server_pid) FROM requests"), 2);
    assert_eq!(count(&conn, "server_load_ms > 0"), 2);
    assert_eq!(
        count(&conn, "server_load_ms > 0 AND id IN (SELECT min(id) FROM requests GROUP BY run_id)"),
        2,
        "the load is on each worker's first request"
    );
    assert_eq!(count(&conn, "server_load_ms > 0 AND server_seq = 1"), 2);
    // The sampled process is the worker: real memory, the requests' own pid.
    let pid: i64 = one(&conn, "SELECT server_pid FROM requests WHERE job = 'streamed' LIMIT 1");
    assert_eq!(count(&conn, &format!("job = 'streamed' AND server_pid = {pid}")), 6);
    assert!(
        one::<i64>(&conn, &format!("SELECT count(*) FROM memory_samples WHERE pid = {pid} AND rss_bytes > 10000000"))
            > 0
    );
    // What the worker said about itself, and MLX's memory around each run.
    assert_eq!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM runs WHERE server_version LIKE 'mlx 0.%/ mlx-lm 0.%' AND server_model = 'hf' \
             AND json_extract(server_info, '$.protocol') = 1"
        ),
        2,
        "{:?}",
        one::<Option<String>>(&conn, "SELECT server_version FROM runs LIMIT 1")
    );
    assert!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM server_samples WHERE source = 'worker' AND phase = 'after' AND memory_bytes > 0 \
             AND gpu_memory_bytes >= memory_bytes AND json_extract(data, '$.model_loaded') = 1"
        ) >= 2
    );
    // soakd stopped its worker when the session ended.
    assert!(!alive(pid), "the worker {pid} outlived soakd");
    // The worker's stderr went to the backend's log.
    assert!(dir.path().join("worker.log").exists());
}

#[test]
fn a_model_that_says_nothing_is_empty() {
    let _guard = heavy();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "silent", "[[job]]\nname = \"p\"\ncron = \"@hourly\"\nrequests = 2\n");
    once(&config, "p");
    let conn = db(dir.path());
    assert_eq!(count(&conn, "outcome = 'empty' AND finish_reason = 'stop' AND completion_tokens = 0"), 2);
}

/// SIGKILL the worker mid-generation: that request is a `crash` naming the signal, the worker
/// comes back after its backoff, and the next requests succeed on the new one.
#[test]
fn a_killed_worker_is_a_crash_and_is_restarted() {
    let _guard = heavy();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "babble",
        "[[job]]\nname = \"long\"\ncron = \"@hourly\"\nrequests = 3\nmax_tokens = 6000\nprompts = \"security\"\n",
    );
    let child = std::process::Command::new(common::SOAKD)
        .args(["once", "long", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first request is in flight on a known worker: let it generate a while, then kill it.
    let pid = wait_for_pid(dir.path(), Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1000));
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let conn = db(dir.path());
    let first: (String, String) = conn
        .query_row("SELECT outcome, coalesce(error, '') FROM requests WHERE seq = 0", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(first.0, "crash", "the killed request: {first:?} (did it end before the kill?)");
    assert!(first.1.contains("the mlx-lm worker died: signal 9 (SIGKILL)"), "{}", first.1);
    assert_eq!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM crash_evidence WHERE source = 'exit' AND text LIKE '%signal 9 (SIGKILL)%'
             AND request_id = (SELECT id FROM requests WHERE seq = 0)"
        ),
        1,
        "the exit signal is kept as crash evidence with the request"
    );
    assert_eq!(count(&conn, "seq > 0 AND outcome = 'ok' AND completion_tokens = 6000"), 2, "{stderr}");
    // The new worker loaded the model again for its first request.
    assert_eq!(count(&conn, "seq = 1 AND server_load_ms > 0"), 1);
    assert_eq!(count(&conn, "seq = 2 AND server_load_ms IS NULL"), 1);
    let new_pid: i64 = one(&conn, "SELECT server_pid FROM requests WHERE seq = 2");
    assert_ne!(new_pid, pid);
    // The exit is an event with its signal; the sampler saw the process go and the new one come.
    assert_eq!(
        one::<i64>(
            &conn,
            &format!(
                "SELECT count(*) FROM events WHERE kind = 'worker_exit' AND json_extract(detail, '$.pid') = {pid} \
                 AND json_extract(detail, '$.exit') = 'signal 9 (SIGKILL)' AND json_extract(detail, '$.killed_by_soakd') IS NULL"
            )
        ),
        1
    );
    assert!(
        one::<i64>(
            &conn,
            &format!(
                "SELECT count(*) FROM events WHERE kind IN ('restart', 'process_found') AND detail LIKE '%{new_pid}%'"
            )
        ) >= 1
    );
    assert!(one::<i64>(&conn, &format!("SELECT count(*) FROM memory_samples WHERE pid = {new_pid}")) > 0);
}

/// The worker's pid once the first request is in flight.
fn wait_for_pid(dir: &Path, limit: Duration) -> i64 {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(c) = Connection::open(dir.join("soakd.db"))
            && let Ok(pid) = c.query_row(
                "SELECT server_pid FROM requests WHERE seq = 0 AND outcome = 'in_flight' AND server_pid IS NOT NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
        {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no request in flight on a known worker within {limit:?}");
}

/// A request past its total limit is a `timeout`; the worker is told to stop generating, does,
/// and serves the next request (no kill, no restart).
#[test]
fn a_request_past_its_limit_is_cancelled_in_the_worker() {
    let _guard = heavy();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "babble",
        "[[job]]\nname = \"slow\"\ncron = \"@hourly\"\nrequests = 3\nmax_tokens = 100000\nprompts = \"security\"\n\
         timeouts = { total_ms = 1500 }\n",
    );
    once(&config, "slow");
    let conn = db(dir.path());
    assert_eq!(
        count(&conn, "outcome = 'timeout' AND completion_tokens > 0 AND error LIKE 'still generating after%'"),
        3
    );
    assert_eq!(one::<i64>(&conn, "SELECT count(DISTINCT server_pid) FROM requests"), 1);
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM events WHERE kind IN ('worker_exit', 'restart')"), 0);
}

/// An interpreter that cannot run and a model folder that does not load are failures of their
/// requests, told in words; soakd itself carries on. (A missing interpreter or a folder without
/// config.json never gets this far: `check`, `once` and `run` refuse the config.)
#[test]
fn a_worker_that_cannot_start_or_load_fails_its_requests_in_words() {
    let _guard = heavy();
    let dir = tempfile::tempdir().unwrap();
    let jobs = "[[job]]\nname = \"p\"\ncron = \"@hourly\"\nrequests = 1\nmax_tokens = 8\n\
                [[job]]\nname = \"impatient\"\ncron = \"@hourly\"\nrequests = 1\nmax_tokens = 8\n\
                timeouts = { first_byte_ms = 300 }\n";
    // A file that is no program (not executable), and a model folder whose config.json is empty.
    std::fs::write(dir.path().join("not-a-python"), "just text\n").unwrap();
    std::fs::create_dir_all(dir.path().join("broken-model")).unwrap();
    std::fs::write(dir.path().join("broken-model/config.json"), "{}").unwrap();
    let backend = format!(
        "[[backend]]\nname = \"nopython\"\nkind = \"mlx-lm\"\npython = \"{}\"\nmodel = \"{}\"\n\
         [[backend]]\nname = \"nomodel\"\nkind = \"mlx-lm\"\npython = \"{}\"\nmodel = \"{}\"\n",
        dir.path().join("not-a-python").display(),
        deps().hf("babble").display(),
        python().display(),
        dir.path().join("broken-model").display(),
    );
    let config = write_config(dir.path(), &backend, jobs);
    once(&config, "p");
    let conn = db(dir.path());
    let error = |b: &str| -> (String, String) {
        conn.query_row(&format!("SELECT outcome, error FROM requests WHERE backend = '{b}' AND job = 'p'"), [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    };
    let (outcome, text) = error("nopython");
    assert_eq!(outcome, "connect_error", "{text}");
    assert!(text.contains("cannot start the mlx-lm worker with") && text.contains("not-a-python"), "{text}");
    // While the worker is down, a request whose first-byte limit ends before the next start
    // (here 1 s after the failed one) is refused at once.
    let (code, out, err) = soakd(&["once", "impatient", "--backend", "nopython", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (outcome, text): (String, String) = conn
        .query_row("SELECT outcome, error FROM requests WHERE job = 'impatient'", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(outcome, "connect_refused", "{text}");
    assert!(text.contains("the mlx-lm worker is down") && text.contains("the next start is in"), "{text}");
    let (outcome, text) = error("nomodel");
    assert_eq!(outcome, "stream_error", "{text}");
    assert!(text.contains("cannot load the model"), "{text}");
    assert!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM events WHERE backend = 'nomodel' AND kind = 'worker_exit' AND json_extract(detail, '$.exit') = 'exit status 3'"
        ) >= 1
    );
}

/// `soakd check` finds a missing interpreter or model folder without starting a worker.
#[test]
fn check_reports_a_missing_interpreter_and_model_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[backend]]\nname = \"direct\"\nkind = \"mlx-lm\"\npython = \"no-python\"\nmodel = \"no-model\"\n",
        "",
    );
    let (code, out, err) = soakd(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 78, "{out}\n{err}");
    assert!(err.contains("field `python`") && err.contains("no-python is not a file"), "{err}");
    assert!(err.contains("field `model`") && err.contains("no-model has no config.json"), "{err}");
}

/// SIGINT with a short grace: the generation in flight is `cancelled`, and soakd stops its
/// worker before it exits.
#[test]
fn shutdown_cancels_the_generation_and_stops_the_worker() {
    let _guard = heavy();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "babble",
        "[[job]]\nname = \"endless\"\ncron = \"@hourly\"\nrequests = 2\nmax_tokens = 100000\n",
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("shutdown_grace_s = 1\n{text}")).unwrap();
    let child = std::process::Command::new(common::SOAKD)
        .args(["once", "endless", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = wait_for_pid(dir.path(), Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let conn = db(dir.path());
    assert_eq!(count(&conn, "outcome = 'cancelled' AND error = 'soakd shut down mid-generation'"), 1);
    assert_eq!(count(&conn, "outcome <> 'cancelled'"), 0);
    assert!(!alive(pid), "the worker {pid} outlived soakd");
}
