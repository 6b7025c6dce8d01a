//! One schedule fired at all six kinds at once: the real llama-server (`llamacpp`),
//! mlx_lm.server (`openai`) and mlx_lm in soakd's own worker (`mlx-lm`), and `soakd sim` in
//! the shapes of LM Studio, Ollama and vLLM (which cannot run here). Every row carries soakd's own numbers and, where the server gives them,
//! the server's; `soakd discover` tells every one of those servers' kinds apart.

use crate::common;
use crate::common::{db, deps, free_port, heavy, one, soakd, start_llama, start_mlx, start_sim, write_config};

const JOB: &str =
    "[[job]]\nname = \"every-kind\"\ncron = \"0 0 3 * * *\"\nrequests = 4\nconcurrency = 2\nmax_tokens = 16\n";

#[test]
fn one_schedule_fires_at_every_kind_and_discover_finds_them() {
    let _guard = heavy();
    let d = deps();
    let dir = tempfile::tempdir().unwrap();
    let llama = start_llama(&d, "babble", free_port(), dir.path());
    let mlx = start_mlx(&d, "babble", free_port(), dir.path());
    let fast = ["--ttft-ms", "20", "--tokens-per-s", "400", "--jitter", "0"];
    let lmstudio = start_sim(&[&["--flavour", "lmstudio"][..], &fast].concat(), dir.path());
    let ollama = start_sim(&[&["--flavour", "ollama", "--load-ms", "300"][..], &fast].concat(), dir.path());
    let vllm = start_sim(&[&["--flavour", "vllm"][..], &fast].concat(), dir.path());
    let entry = |name: &str, kind: &str, port: u16, extra: &str| {
        format!("[[backend]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl = \"http://127.0.0.1:{port}\"\n{extra}")
    };
    let backends = [
        common::llamacpp_backend("llama", &llama),
        entry("mlx-server", "openai", mlx.port, ""),
        entry("lmstudio", "lmstudio", lmstudio.port, "model = \"sim-model\"\n"),
        entry("ollama", "ollama", ollama.port, "model = \"sim-model\"\n"),
        entry("vllm", "vllm", vllm.port, ""),
        format!(
            "[[backend]]\nname = \"direct\"\nkind = \"mlx-lm\"\npython = \"{}\"\nmodel = \"{}\"\n",
            d.mlx_server.with_file_name("python3").display(),
            d.hf("babble").display()
        ),
    ]
    .concat();
    let config = write_config(dir.path(), &backends, JOB);
    let (code, out, err) = soakd(&["once", "every-kind", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");

    let conn = db(dir.path());
    let per = |backend: &str, filter: &str| -> i64 {
        one(&conn, &format!("SELECT count(*) FROM requests WHERE backend = '{backend}' AND {filter}"))
    };
    // soakd's own numbers, for every kind.
    for backend in ["llama", "mlx-server", "lmstudio", "ollama", "vllm", "direct"] {
        assert_eq!(per(backend, "outcome = 'ok' AND ttft_ms > 0 AND decode_tps > 0 AND e2e_ms > 0"), 4, "{backend}");
    }
    // The servers' own, where they give them.
    assert_eq!(per("llama", "server_decode_tps > 0 AND server_completion_tokens = 16 AND server_total_ms > 0"), 4);
    assert_eq!(per("lmstudio", "server_decode_tps > 0 AND server_ttft_ms > 0 AND server_stop_reason IS NOT NULL"), 4);
    assert_eq!(per("ollama", "server_decode_tps > 0 AND server_prompt_ms >= 0 AND server_total_ms > 0"), 4);
    assert_eq!(per("ollama", "server_load_ms >= 300"), 1, "the first request paid the model load");
    assert_eq!(per("mlx-server", "server_decode_tps IS NULL"), 4, "mlx_lm.server reports no timings");
    assert_eq!(per("direct", "server_decode_tps > 0 AND server_peak_bytes > 0"), 4);
    assert_eq!(per("direct", "server_load_ms > 0"), 1, "the worker's first request paid the model load");
    let version = |backend: &str| -> Option<String> {
        conn.query_row("SELECT server_version FROM runs WHERE backend = ?1", [backend], |r| r.get(0)).unwrap()
    };
    for backend in ["llama", "lmstudio", "ollama", "vllm", "direct"] {
        assert!(version(backend).is_some_and(|v| !v.is_empty()), "{backend} has a version");
    }
    let samples = |backend: &str, source: &str| -> i64 {
        one(
            &conn,
            &format!(
                "SELECT count(DISTINCT phase) FROM server_samples WHERE backend = '{backend}' AND source = '{source}'"
            ),
        )
    };
    assert_eq!(samples("llama", "metrics"), 2);
    assert_eq!(samples("llama", "slots"), 2);
    assert_eq!(samples("lmstudio", "models"), 2);
    assert_eq!(samples("ollama", "ps"), 2);
    assert_eq!(samples("vllm", "metrics"), 2);
    assert_eq!(samples("direct", "worker"), 2);
    let served: f64 = one(
        &conn,
        "SELECT json_extract(data, '$.request_success_total') FROM server_samples WHERE backend = 'vllm' AND source = 'metrics' AND phase = 'after'",
    );
    assert_eq!(served, 4.0, "vLLM's own counter saw the 4 requests");
    // The process sampled for each local server is that server's.
    for (backend, pid) in [("llama", llama.pid()), ("mlx-server", mlx.pid())] {
        assert_eq!(per(backend, &format!("server_pid = {pid}")), 4, "{backend}");
    }

    // The report names each server's version and the longest model load it reported.
    let (code, out, err) = soakd(&["report", "--config", config.to_str().unwrap(), "--format", "json", "--no-save"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let backend =
        |name: &str| report["backends"].as_array().unwrap().iter().find(|b| b["name"] == name).unwrap().clone();
    assert!(backend("ollama")["load_time_s"].as_f64().is_some_and(|s| s >= 0.3));
    assert_eq!(backend("llama")["server_versions"].as_array().map(Vec::len), Some(1));
    assert!(backend("mlx-server")["server_versions"].as_array().is_some_and(Vec::is_empty));
    assert!(backend("direct")["load_time_s"].as_f64().is_some_and(|s| s > 0.0));

    // discover: every one of these servers, by its kind.
    let ports: Vec<String> = [&llama, &mlx, &lmstudio, &ollama, &vllm]
        .iter()
        .flat_map(|s| ["--port".to_string(), s.port.to_string()])
        .collect();
    let mut args = vec!["discover"];
    args.extend(ports.iter().map(String::as_str));
    let (code, out, err) = soakd(&args);
    assert_eq!(code, 0, "{err}");
    for (port, what) in [
        (llama.port, "llama.cpp llama-server"),
        (mlx.port, "mlx_lm.server"),
        (lmstudio.port, "LM Studio"),
        (ollama.port, "Ollama"),
        (vllm.port, "vLLM"),
    ] {
        assert!(out.contains(&format!("# {what} on port {port}")), "{what} on {port}:\n{out}");
    }
    assert!(err.contains("Found 5 servers"), "the summary goes to stderr: {err}");
    // Its stdout, appended to a config as it is, is a valid config.
    let found = write_config(&dir.path().join("found"), &out, "");
    let (code, out, err) = soakd(&["check", "--config", found.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("5 backends") || out.contains("ok: 5 backends"), "{out}");
}
