//! Kind `mlx` (the `mlx` feature; on Linux built by `scripts/mlx-linux`, run by `scripts/test`):
//! the in-process decoder against mlx_lm token for token, and the worker behind `soakd once`.
//! These never skip: without the tiny model or the Python reference they fail and say why.

use crate::common;
use crate::common::{db, deps, heavy, one, soakd, write_config};
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

/// One prompt as mlx_lm ran it.
struct Reference {
    prompt_ids: Vec<u32>,
    ids: Vec<u32>,
    /// Each step's log-probabilities (with `ignore_eos`).
    logprobs: Vec<Vec<f32>>,
}

/// mlx_lm's prompt ids, greedy ids and (with `ignore_eos`) per-step log-probabilities per
/// prompt (tests/fixtures/mlx_reference.py).
fn reference(model: &Path, ignore_eos: bool) -> Vec<Reference> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mlx_reference.py");
    // scripts/mlx-linux puts the mlx-cpu wheel's libmlx.so on LD_LIBRARY_PATH for soakd; the
    // venv's own (newer) MLX must not see it.
    let out = Command::new(python())
        .env_remove("LD_LIBRARY_PATH")
        .arg(&script)
        .arg("--model")
        .arg(model)
        .args(["--max-tokens", &MAX_TOKENS.to_string()])
        .args(if ignore_eos { &["--ignore-eos", "--logprobs"][..] } else { &[] })
        .args(PROMPTS)
        .output()
        .expect("the test venv's python runs (scripts/test-deps)");
    assert!(out.status.success(), "mlx_reference.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from mlx_reference.py");
    let ids = |x: &serde_json::Value| -> Vec<u32> {
        x.as_array().unwrap().iter().map(|n| n.as_u64().unwrap() as u32).collect()
    };
    let floats = |x: &serde_json::Value| -> Vec<f32> {
        x.as_array().unwrap().iter().map(|n| n.as_f64().unwrap() as f32).collect()
    };
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| Reference {
            prompt_ids: ids(&e["prompt_ids"]),
            ids: ids(&e["ids"]),
            logprobs: e["logprobs"].as_array().map(|a| a.iter().map(floats).collect()).unwrap_or_default(),
        })
        .collect()
}

/// Feeds mlx_lm's tokens through the decoder (teacher forcing) and compares every step's
/// log-probabilities with mlx_lm's: the largest difference over all steps and the vocabulary.
fn max_logprob_diff(model: &Model, r: &Reference) -> f32 {
    let mut cache = model.new_cache();
    let (head, last) = r.prompt_ids.split_at(r.prompt_ids.len() - 1);
    model.forward(head, &mut cache).unwrap().eval().unwrap();
    let mut input = last.to_vec();
    let mut worst = 0.0f32;
    for (step, want) in r.logprobs.iter().enumerate() {
        let logits = model.forward(&input, &mut cache).unwrap();
        let lp = logits.subtract(logits.logsumexp(true).unwrap()).unwrap();
        let got: Vec<f32> = lp.as_dtype(mlx_rs::Dtype::Float32).unwrap().to_vec_cast::<f32>().unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            worst = worst.max((g - w).abs());
        }
        input = vec![r.ids[step]];
    }
    worst
}

/// Greedy generation equals mlx_lm's for every prompt, `MAX_TOKENS` tokens or up to eos (with
/// `ignore_eos`, always `MAX_TOKENS`).
fn same_greedy_tokens_as_mlx_lm(model_dir: &Path, ignore_eos: bool) {
    let expected = reference(model_dir, ignore_eos);
    let model = Model::load(model_dir).unwrap_or_else(|e| panic!("{}: {e:#}", model_dir.display()));
    let chat = Chat::load(model_dir, &model.config.eos_token_ids).unwrap();
    let eos = if ignore_eos { Default::default() } else { chat.eos_ids.clone() };
    let params = Params { max_tokens: MAX_TOKENS, temperature: 0.0, top_p: 1.0, seed: None };
    for (prompt, r) in PROMPTS.iter().zip(&expected) {
        let (want_prompt, want) = (&r.prompt_ids, &r.ids);
        let messages = [Message { role: "user".into(), content: prompt.to_string() }];
        let ids = chat.prompt_ids(&messages).unwrap();
        assert_eq!(&ids, want_prompt, "prompt ids (chat template + tokenizer) for {prompt:?}");
        let mut got = Vec::new();
        let stats = generate(&model, &eos, &ids, params, |t| {
            got.push(t);
            Ok(true)
        })
        .unwrap();
        assert_eq!(&got, want, "greedy ids for {prompt:?}");
        if ignore_eos {
            assert_eq!(r.logprobs.len(), got.len());
            let diff = max_logprob_diff(&model, r);
            assert!(diff <= 1e-4, "log-probabilities differ from mlx_lm's by up to {diff} for {prompt:?}");
        }
        assert!(got.len() >= 32, "at least 32 tokens: {got:?}");
        assert_eq!(stats.completion_tokens as usize, got.len());
        assert!(stats.peak_bytes > 0);
    }
}

/// `dir`, after checking that its config.json says `says` (e.g. its quantization).
fn variant<'a>(dir: &'a Path, says: &str) -> &'a Path {
    let config = std::fs::read_to_string(dir.join("config.json"))
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/test-deps makes it)", dir.display()));
    assert!(config.contains(says), "{} should say {says}: {config}", dir.display());
    dir
}

/// The fully random model (tests/fixtures/mlx_random_model.py), where every part of the decoder
/// shapes the logits.
fn random_model() -> PathBuf {
    std::env::var_os("SOAKD_TEST_RANDOM_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        let models = deps().models;
        std::fs::read_dir(&models)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("random-")))
            .unwrap_or_else(|| panic!("no random-* model in {}: run scripts/test-deps", models.display()))
    })
}

#[test]
fn mlx_greedy_equals_mlx_lm_unquantized() {
    same_greedy_tokens_as_mlx_lm(&deps().hf("babble"), false);
    same_greedy_tokens_as_mlx_lm(&random_model().join("hf"), true);
}

#[test]
fn mlx_greedy_equals_mlx_lm_4bit() {
    same_greedy_tokens_as_mlx_lm(variant(&deps().models.join("babble/mlx-4bit"), "\"bits\": 4"), false);
    same_greedy_tokens_as_mlx_lm(variant(&random_model().join("mlx-4bit"), "\"bits\": 4"), true);
}

#[test]
fn mlx_greedy_equals_mlx_lm_8bit_and_bf16() {
    same_greedy_tokens_as_mlx_lm(variant(&random_model().join("mlx-8bit"), "\"group_size\": 32"), true);
    let bf16 = random_model().join("bf16");
    let weights = std::fs::read(bf16.join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8_lossy(&weights[8..8 + header_len]);
    assert!(header.contains("\"BF16\"") && !header.contains("\"F32\""), "{header}");
    same_greedy_tokens_as_mlx_lm(&bf16, true);
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
    // The restarted worker's load time lands on its first request; the death is an event.
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE server_load_ms > 0 AND outcome = 'ok'"), 1);
    let detail: String = one(&conn, "SELECT detail FROM events WHERE kind = 'worker_exit'");
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert!(detail["exit"].as_str().unwrap().contains("SIGABRT"), "{detail}");
    assert!(detail["killed_by_soakd"].is_null(), "it died by itself: {detail}");
    assert_eq!(
        (detail["during"].as_str(), detail["deaths_in_a_row"].as_u64()),
        (Some("a request"), Some(1)),
        "{detail}"
    );
    assert!(detail["pid"].as_u64().is_some(), "{detail}");
}

#[test]
fn mlx_a_model_folder_that_cannot_load_is_a_failed_request_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    // A folder with an empty config.json: `check` lets it by (a folder without one is refused
    // before anything runs), and loading it fails.
    let broken = dir.path().join("broken-model");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("config.json"), "{}").unwrap();
    let jobs = JOBS.replace("requests = 4", "requests = 1");
    let config = mlx_config(dir.path(), &broken, &jobs);
    let (code, out, err) = soakd(&["once", "greedy", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "a failing backend is data: {out}\n{err}");
    let conn = db(dir.path());
    let (outcome, error): (String, String) =
        conn.query_row("SELECT outcome, error FROM requests", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(outcome, "connect_error");
    assert!(error.contains("could not load the model") && error.contains("broken-model"), "{error}");
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
        // The file may exist before its tables do: a failed query is "not yet".
        let done = std::fs::metadata(dir.path().join("soakd.db")).is_ok()
            && db(dir.path())
                .query_row("SELECT count(*) FROM requests WHERE outcome = 'ok'", [], |r| r.get::<_, i64>(0))
                .is_ok_and(|n| n >= 1);
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
