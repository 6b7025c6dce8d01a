//! The `lmstudio` and `ollama` kinds end to end, against `soakd sim --flavour lmstudio|ollama`
//! (LM Studio and Ollama do not run on Linux, so these check soakd against the APIs as their
//! docs show them): client and server numbers side by side, the server's version, its own
//! state samples before and after, and its crash signals.

use crate::common::{db, one, soakd, start_sim, write_config};
use std::path::Path;

/// Starts the sim with `sim_args`, runs `soakd once j` against it as a backend of `kind`
/// asking for the sim's model; returns the temp dir holding soakd.db.
fn once(kind: &str, sim_args: &[&str], job: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(sim_args, dir.path());
    let backend = format!(
        "[[backend]]\nname = \"b\"\nkind = \"{kind}\"\nurl = \"http://127.0.0.1:{}\"\nmodel = \"sim-model\"\n",
        sim.port
    );
    let config = write_config(dir.path(), &backend, &format!("[[job]]\nname = \"j\"\ncron = \"@hourly\"\n{job}"));
    let (code, out, err) = soakd(&["once", "j", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "soakd once exits 0 whatever the server does:\n{out}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    dir
}

fn outcomes(dir: &Path) -> Vec<String> {
    let conn = db(dir);
    let mut stmt = conn.prepare("SELECT outcome FROM requests ORDER BY seq").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

fn events(dir: &Path, kind: &str) -> i64 {
    one(&db(dir), &format!("SELECT count(*) FROM events WHERE kind = '{kind}' AND backend = 'b'"))
}

/// Client and server decode tok/s of the ok rows, averaged (printed for the record).
fn decode_agreement(dir: &Path, what: &str) -> (f64, f64) {
    let conn = db(dir);
    let (client, server): (f64, f64) = conn
        .query_row("SELECT avg(decode_tps), avg(server_decode_tps) FROM requests WHERE outcome = 'ok'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    eprintln!("{what}: client decode {client:.2} tok/s, server {server:.2} tok/s, ratio {:.4}", client / server);
    (client, server)
}

#[test]
fn lmstudio_rows_carry_client_and_server_numbers() {
    let sim = ["--flavour", "lmstudio", "--ttft-ms", "100", "--tokens-per-s", "100", "--jitter", "0"];
    let dir = once("lmstudio", &sim, "requests = 4\nmax_tokens = 20\n");
    assert_eq!(outcomes(dir.path()), vec!["ok"; 4]);
    let conn = db(dir.path());
    let count = |sql: &str| one::<i64>(&conn, sql);
    assert_eq!(
        count(
            "SELECT count(*) FROM requests WHERE ttft_ms > 0 AND decode_tps > 0 AND server_decode_tps > 0
             AND server_ttft_ms >= 100 AND server_stop_reason = 'maxPredictedTokensReached'
             AND server_timings LIKE '%\"stats\"%' AND server_timings LIKE '%\"runtime\"%'"
        ),
        4
    );
    // The runtime's version comes with the replies: the run learns it by its end.
    let version: String = one(&conn, "SELECT server_version FROM runs");
    assert!(version.starts_with("llama.cpp-soakd-sim "), "{version}");
    assert_eq!(one::<String>(&conn, "SELECT server_model FROM runs"), "sim-model");
    let info: String = one(&conn, "SELECT server_info FROM runs");
    assert!(info.contains("\"quantization\":\"Q4_K_M\""), "{info}");
    for phase in ["before", "after"] {
        let data: String = one(
            &conn,
            &format!("SELECT data FROM server_samples WHERE source = 'models' AND phase = '{phase}' AND backend = 'b'"),
        );
        assert!(data.contains("\"state\":\"loaded\""), "{phase}: {data}");
    }
    let (client, server) = decode_agreement(dir.path(), "lmstudio");
    assert!((client / server - 1.0).abs() < 0.25, "client {client} vs server {server} tok/s");
}

#[test]
fn an_lmstudio_engine_crash_is_reported_and_the_unload_recorded() {
    let sim = [
        "--flavour",
        "lmstudio",
        "--crash-style",
        "lmstudio",
        "--exit-after",
        "2",
        "--unloaded-requests",
        "1",
        "--ttft-ms",
        "20",
    ];
    let dir = once("lmstudio", &sim, "requests = 5\nmax_tokens = 8\n");
    assert_eq!(
        outcomes(dir.path()),
        vec!["ok", "server_reported_crash", "server_reported_crash", "ok", "ok"],
        "the crash, then \"Model is unloaded\", then LM Studio loads it again"
    );
    let conn = db(dir.path());
    let errors: String = one(&conn, "SELECT group_concat(error, ' | ') FROM requests WHERE outcome <> 'ok'");
    assert!(errors.contains("The model has crashed") && errors.contains("Model is unloaded"), "{errors}");
    assert_eq!(events(dir.path(), "model_unloaded"), 1, "loaded → not-loaded once");
    let detail: String = one(&conn, "SELECT detail FROM events WHERE kind = 'model_unloaded'");
    assert!(detail.contains("\"before\":\"loaded\"") && detail.contains("server_reported_crash"), "{detail}");
    assert_eq!(events(dir.path(), "model_loaded"), 1, "the JIT reload is counted");
}

#[test]
fn ollama_rows_carry_client_and_server_numbers() {
    let sim = ["--flavour", "ollama", "--ttft-ms", "50", "--tokens-per-s", "100", "--jitter", "0", "--load-ms", "300"];
    let dir = once("ollama", &sim, "requests = 3\nmax_tokens = 20\n");
    assert_eq!(outcomes(dir.path()), vec!["ok"; 3]);
    let conn = db(dir.path());
    let count = |sql: &str| one::<i64>(&conn, sql);
    assert_eq!(
        count(
            "SELECT count(*) FROM requests WHERE ttft_ms > 0 AND decode_tps > 0 AND server_decode_tps > 0
             AND server_load_ms > 0 AND server_prompt_ms > 0 AND server_total_ms >= server_prompt_ms
             AND completion_tokens = 20 AND token_source = 'usage' AND server_stop_reason = 'length'"
        ),
        3
    );
    // The sim starts unloaded, like Ollama: the first request pays for the load.
    assert!(one::<f64>(&conn, "SELECT server_load_ms FROM requests WHERE seq = 0") >= 300.0);
    assert!(one::<f64>(&conn, "SELECT max(server_load_ms) FROM requests WHERE seq > 0") < 50.0);
    assert!(one::<String>(&conn, "SELECT server_version FROM runs").ends_with("-soakd-sim"));
    // /api/ps: nothing loaded before, the model with its size after.
    assert_eq!(
        count("SELECT count(*) FROM server_samples WHERE source = 'ps' AND phase = 'before' AND memory_bytes IS NULL"),
        1
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM server_samples WHERE source = 'ps' AND phase = 'after'
             AND memory_bytes > 0 AND gpu_memory_bytes = memory_bytes AND data LIKE '%expires_at%'"
        ),
        1
    );
    let (client, server) = decode_agreement(dir.path(), "ollama");
    assert!((client / server - 1.0).abs() < 0.25, "client {client} vs server {server} tok/s");
}

#[test]
fn an_ollama_runner_crash_is_reported_and_the_reload_detected() {
    let sim =
        ["--flavour", "ollama", "--crash-style", "ollama", "--exit-after", "3", "--load-ms", "1100", "--ttft-ms", "20"];
    let dir = once("ollama", &sim, "requests = 5\nmax_tokens = 8\nstream = false\n");
    assert_eq!(outcomes(dir.path()), vec!["ok", "ok", "server_reported_crash", "ok", "ok"]);
    let conn = db(dir.path());
    let error: String = one(&conn, "SELECT error FROM requests WHERE outcome <> 'ok'");
    assert!(error.starts_with("HTTP 500: llama runner process has terminated"), "{error}");
    assert!(one::<f64>(&conn, "SELECT server_load_ms FROM requests WHERE seq = 3") >= 1100.0, "the reload's load");
    assert_eq!(events(dir.path(), "model_reload"), 1, "one reload, not one per signal");
    let detail: String = one(&conn, "SELECT detail FROM events WHERE kind = 'model_reload'");
    assert!(detail.contains("missing_from_ps"), "{detail}");
}
