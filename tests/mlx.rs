//! Kind `mlx` (the `mlx` feature; on Linux built by `scripts/mlx-linux`, run by `scripts/test`):
//! the in-process decoder against mlx_lm token for token, and the worker behind `soakd once`.
//! These never skip: without the tiny model or the Python reference they fail and say why.

#![cfg(feature = "mlx")]

mod common;

use common::{db, deps, heavy, one, soakd, write_config};
use soakd::mlx::chat::{Chat, Message};
use soakd::mlx::generate::{Params, generate};
use soakd::mlx::model::Model;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROMPTS: [&str; 4] = [
    "Hello there",
    "Tell me a story about a cat who learns to fly.",
    "What is 2 + 2? Answer briefly.",
    "Résumé: naïve café ☕ — 東京",
];
const MAX_TOKENS: u32 = 40;

fn python() -> PathBuf {
    std::env::var_os("SOAKD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| deps().mlx_server.parent().expect("venv bin").join("python3"))
}

/// mlx_lm's prompt ids and greedy ids per prompt (tests/fixtures/mlx_reference.py).
fn reference(model: &Path) -> Vec<(Vec<u32>, Vec<u32>)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mlx_reference.py");
    // scripts/mlx-linux puts the mlx-cpu wheel's libmlx.so on LD_LIBRARY_PATH for soakd; the
    // venv's own (newer) MLX must not see it.
    let out = Command::new(python())
        .env_remove("LD_LIBRARY_PATH")
        .arg(&script)
        .arg("--model")
        .arg(model)
        .args(["--max-tokens", &MAX_TOKENS.to_string()])
        .args(PROMPTS)
        .output()
        .expect("the test venv's python runs (scripts/test-deps)");
    assert!(out.status.success(), "mlx_reference.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from mlx_reference.py");
    let ids = |x: &serde_json::Value| -> Vec<u32> {
        x.as_array().unwrap().iter().map(|n| n.as_u64().unwrap() as u32).collect()
    };
    v.as_array().unwrap().iter().map(|e| (ids(&e["prompt_ids"]), ids(&e["ids"]))).collect()
}

fn same_greedy_tokens_as_mlx_lm(model_dir: &Path) {
    let expected = reference(model_dir);
    let model = Model::load(model_dir).unwrap_or_else(|e| panic!("{}: {e:#}", model_dir.display()));
    let chat = Chat::load(model_dir, &model.config.eos_token_ids).unwrap();
    let params = Params { max_tokens: MAX_TOKENS, temperature: 0.0, top_p: 1.0, seed: None };
    for (prompt, (want_prompt, want)) in PROMPTS.iter().zip(&expected) {
        let messages = [Message { role: "user".into(), content: prompt.to_string() }];
        let ids = chat.prompt_ids(&messages).unwrap();
        assert_eq!(&ids, want_prompt, "prompt ids (chat template + tokenizer) for {prompt:?}");
        let mut got = Vec::new();
        let stats = generate(&model, &chat.eos_ids, &ids, params, |t| {
            got.push(t);
            Ok(true)
        })
        .unwrap();
        assert_eq!(&got, want, "greedy ids for {prompt:?}");
        assert!(got.len() >= 32, "the babble model generates at least 32 tokens: {got:?}");
        assert_eq!(stats.completion_tokens as usize, got.len());
        assert!(stats.peak_bytes > 0);
    }
}

#[test]
fn mlx_greedy_equals_mlx_lm_unquantized() {
    same_greedy_tokens_as_mlx_lm(&deps().hf("babble"));
}

#[test]
fn mlx_greedy_equals_mlx_lm_4bit() {
    let q4 = deps().models.join("babble/mlx-4bit");
    let config = std::fs::read_to_string(q4.join("config.json")).expect("scripts/test-deps makes babble/mlx-4bit");
    assert!(config.contains("\"bits\": 4"), "{config}");
    same_greedy_tokens_as_mlx_lm(&q4);
}

fn mlx_config(dir: &Path, model: &Path, jobs: &str) -> PathBuf {
    let backend = format!("[[backend]]\nname = \"mlx\"\nkind = \"mlx\"\nmodel = \"{}\"\n", model.display());
    write_config(dir, &backend, jobs)
}

const JOBS: &str = r#"
[[job]]
name = "greedy"
cron = "@hourly"
requests = 4
concurrency = 2
max_tokens = 48
temperature = 0.0
prompts = "security"
"#;

#[test]
fn mlx_soakd_once_records_timings_load_and_memory() {
    let _guard = heavy();
    let dir = tempfile::tempdir().unwrap();
    let config = mlx_config(dir.path(), &deps().hf("babble"), JOBS);
    let (code, out, err) = soakd(&["once", "greedy", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let conn = db(dir.path());
    let n = |sql: &str| one::<i64>(&conn, sql);
    assert_eq!(n("SELECT count(*) FROM requests WHERE outcome = 'ok'"), 4, "{out}\n{err}");
    assert_eq!(n("SELECT count(*) FROM requests WHERE completion_tokens = 48 AND server_completion_tokens = 48"), 4);
    assert_eq!(
        n("SELECT count(*) FROM requests WHERE ttft_ms > 0 AND server_ttft_ms > 0 AND server_decode_tps > 0"),
        4
    );
    assert_eq!(n("SELECT count(*) FROM requests WHERE server_peak_bytes > 0"), 4);
    // The worker started once: its load time belongs to its first request only.
    assert_eq!(n("SELECT count(*) FROM requests WHERE server_load_ms > 0"), 1);
    assert_eq!(
        n("SELECT count(*) FROM server_samples WHERE source = 'worker' AND memory_bytes > 0 AND gpu_memory_bytes > 0"),
        1
    );
    let version: String = one(&conn, "SELECT server_version FROM runs");
    assert!(version.starts_with("MLX 0."), "{version}");
}

#[test]
fn mlx_worker_abort_is_a_crash_and_the_next_request_succeeds() {
    let _guard = heavy();
    let dir = tempfile::tempdir().unwrap();
    let jobs = JOBS.replace("concurrency = 2", "concurrency = 1").replace("requests = 4", "requests = 3");
    let config = mlx_config(dir.path(), &deps().hf("babble"), &jobs);
    let marker = dir.path().join("abort-once");
    std::fs::write(&marker, "").unwrap();
    let out = Command::new(common::SOAKD)
        .args(["once", "greedy", "--config", config.to_str().unwrap()])
        .env("SOAKD_MLX_WORKER_ABORT_ONCE", &marker)
        .output()
        .unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(!marker.exists(), "the worker took the abort marker");
    let conn = db(dir.path());
    let first: (String, String) = conn
        .query_row("SELECT outcome, error FROM requests ORDER BY id LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(first.0, "crash", "{text}");
    assert!(first.1.contains("signal 6 (SIGABRT)"), "{}", first.1);
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE outcome = 'ok'"), 2, "{text}");
    // The restarted worker's load time lands on its first request; the restart is an event.
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE server_load_ms > 0 AND outcome = 'ok'"), 1);
    let detail: String = one(&conn, "SELECT detail FROM events WHERE kind = 'worker_restart'");
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert!(detail["previous_end"].as_str().unwrap().contains("SIGABRT"), "{detail}");
    assert_ne!(detail["old_pid"], detail["new_pid"], "{detail}");
    assert!(detail["new_pid"].as_u64().is_some(), "{detail}");
}

#[test]
fn mlx_a_model_folder_that_cannot_load_is_a_failed_request_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-model");
    let jobs = JOBS.replace("requests = 4", "requests = 1");
    let config = mlx_config(dir.path(), &missing, &jobs);
    let (code, out, err) = soakd(&["once", "greedy", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "a failing backend is data: {out}\n{err}");
    let conn = db(dir.path());
    let (outcome, error): (String, String) =
        conn.query_row("SELECT outcome, error FROM requests", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(outcome, "connect_error");
    assert!(error.contains("could not load the model") && error.contains("config.json"), "{error}");
}

/// The pids of `parent`'s child processes (from /proc).
#[cfg(target_os = "linux")]
fn children(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

#[cfg(target_os = "linux")]
#[test]
fn mlx_worker_killed_mid_generation_is_a_crash_with_its_signal() {
    let _guard = heavy();
    let dir = tempfile::tempdir().unwrap();
    let jobs = "[[job]]\nname = \"long\"\ncron = \"@hourly\"\nrequests = 3\nmax_tokens = 4000\ntemperature = 0.0\n\
                prompts = \"security\"\ntimeouts = { total_ms = 120000 }\n";
    let config = mlx_config(dir.path(), &deps().hf("babble"), jobs);
    let mut child = Command::new(common::SOAKD)
        .args(["once", "long", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Once the first request has finished, kill the worker (it is generating the second).
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let worker = loop {
        assert!(std::time::Instant::now() < until, "the first request did not finish");
        let done = std::fs::metadata(dir.path().join("soakd.db")).is_ok()
            && one::<i64>(&db(dir.path()), "SELECT count(*) FROM requests WHERE outcome = 'ok'") >= 1;
        let workers = children(child.id());
        if done && let Some(&w) = workers.first() {
            break w;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(Command::new("kill").args(["-9", &worker.to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
    let conn = db(dir.path());
    let crashes: Vec<String> = conn
        .prepare("SELECT error FROM requests WHERE outcome = 'crash'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(crashes.len(), 1, "{crashes:?}");
    assert!(crashes[0].contains("signal 9 (SIGKILL)"), "{crashes:?}");
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE outcome = 'ok'"), 2);
}
