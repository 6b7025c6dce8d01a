//! `soakd discover`: which LLM servers answer on this machine's well-known ports, what kind each
//! is (told from the endpoints only that kind has), which process listens, and a ready-to-paste
//! `[[backend]]` entry for each.
//!
//! Told apart by: LM Studio's `/api/v0/models` (models with a `state`); Ollama's `/api/version`
//! with `/api/tags`; llama.cpp's `/props` (`build_info`, `default_generation_settings`); vLLM's
//! `/version` with `vllm:` series in `/metrics`; mlx_lm.server's Python `Server` header on an
//! OpenAI `/v1/models`; anything else with `/v1/models` is OpenAI-compatible.

use crate::backend::side::{Reply, Side};
use crate::config::BackendKind;
use crate::probe::process::listening_process;
use crate::text::{bounded, printable};
use reqwest::Url;
use serde_json::Value;
use std::time::Duration;

/// The ports looked at unless told otherwise, with who usually listens there.
pub const WELL_KNOWN: [(u16, &str); 4] =
    [(1234, "LM Studio"), (11434, "Ollama"), (8080, "mlx_lm.server / llama.cpp"), (8000, "vLLM")];

/// What one port's endpoints answered.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    pub v1_models: Option<Reply>,
    pub lmstudio_models: Option<Reply>,
    pub ollama_version: Option<Reply>,
    pub ollama_tags: Option<Reply>,
    pub props: Option<Reply>,
    pub version: Option<Reply>,
    pub metrics: Option<Reply>,
}

/// A server found on a port.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub port: u16,
    pub url: String,
    pub kind: BackendKind,
    /// What it is, in words: "LM Studio", "llama.cpp llama-server", "mlx_lm.server", ...
    pub what: &'static str,
    pub version: Option<String>,
    pub models: Vec<String>,
    pub pid: Option<u32>,
    pub process: Option<String>,
}

fn json_ok(r: &Option<Reply>) -> Option<Value> {
    r.as_ref().filter(|r| r.ok()).and_then(Reply::json)
}

/// The kind of server these answers come from; `None` when nothing answered like an LLM server.
pub fn classify(a: &Answers) -> Option<(BackendKind, &'static str)> {
    let lms = json_ok(&a.lmstudio_models);
    if lms.as_ref().and_then(|v| v.get("data")).and_then(Value::as_array).is_some_and(|d| {
        d.iter().all(|m| m.get("state").is_some()) && d.iter().any(|m| m.get("id").is_some()) || d.is_empty()
    }) {
        return Some((BackendKind::LmStudio, "LM Studio"));
    }
    if json_ok(&a.ollama_version).and_then(|v| v.get("version").cloned()).is_some() && json_ok(&a.ollama_tags).is_some()
    {
        return Some((BackendKind::Ollama, "Ollama"));
    }
    if json_ok(&a.props)
        .is_some_and(|p| p.get("build_info").is_some() || p.get("default_generation_settings").is_some())
    {
        return Some((BackendKind::LlamaCpp, "llama.cpp llama-server"));
    }
    let vllm_metrics = a.metrics.as_ref().is_some_and(|m| m.ok() && m.body.contains("vllm:"));
    if vllm_metrics
        || json_ok(&a.version).is_some_and(|v| v.get("version").is_some()) && json_ok(&a.v1_models).is_some()
    {
        return Some((BackendKind::Vllm, "vLLM"));
    }
    let models = json_ok(&a.v1_models)?;
    models.get("data")?;
    let python = a.v1_models.as_ref().and_then(|r| r.server.as_deref()).is_some_and(|s| s.contains("Python"));
    Some(if python {
        (BackendKind::OpenAi, "mlx_lm.server")
    } else {
        (BackendKind::OpenAi, "OpenAI-compatible server")
    })
}

/// The model ids a server lists (bounded, printable).
pub fn model_ids(a: &Answers, kind: BackendKind) -> Vec<String> {
    let (list, key) = match kind {
        BackendKind::LmStudio => (json_ok(&a.lmstudio_models).and_then(|v| v.get("data").cloned()), "id"),
        BackendKind::Ollama => (json_ok(&a.ollama_tags).and_then(|v| v.get("models").cloned()), "name"),
        _ => (json_ok(&a.v1_models).and_then(|v| v.get("data").cloned()), "id"),
    };
    list.as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get(key).and_then(Value::as_str))
        .map(|id| printable(&bounded(id, 200)))
        .take(20)
        .collect()
}

fn version_of(a: &Answers, kind: BackendKind) -> Option<String> {
    let v = match kind {
        BackendKind::Ollama => json_ok(&a.ollama_version).and_then(|v| v.get("version").cloned()),
        BackendKind::LlamaCpp => json_ok(&a.props).and_then(|v| v.get("build_info").cloned()),
        BackendKind::Vllm => json_ok(&a.version).and_then(|v| v.get("version").cloned()),
        _ => None,
    };
    v.as_ref().and_then(Value::as_str).map(|s| printable(&bounded(s, 64)))
}

/// Asks every endpoint on `host:port` at once.
pub async fn probe(host: &str, port: u16, timeout: Duration) -> Option<Found> {
    let url: Url = format!("http://{host}:{port}").parse().ok()?;
    let side = Side::at(url.clone(), timeout).ok()?;
    let (v1_models, lmstudio_models, ollama_version, ollama_tags, props, version, metrics) = tokio::join!(
        side.get("/v1/models"),
        side.get("/api/v0/models"),
        side.get("/api/version"),
        side.get("/api/tags"),
        side.get("/props"),
        side.get("/version"),
        side.get("/metrics"),
    );
    let answers = Answers { v1_models, lmstudio_models, ollama_version, ollama_tags, props, version, metrics };
    let (kind, what) = classify(&answers)?;
    let local = matches!(host, "127.0.0.1" | "localhost" | "::1");
    let process =
        if local { tokio::task::spawn_blocking(move || listening_process(port)).await.ok().flatten() } else { None };
    Some(Found {
        port,
        url: url.as_str().trim_end_matches('/').to_string(),
        kind,
        what,
        version: version_of(&answers, kind),
        models: model_ids(&answers, kind),
        pid: process.as_ref().map(|p| p.0),
        process: process.map(|p| printable(&p.1)),
    })
}

/// The `[[backend]]` entries for what was found, as TOML.
pub fn entries(found: &[Found]) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = String::new();
    for f in found {
        let short = if f.what == "mlx_lm.server" { "mlx-server" } else { f.kind.as_str() };
        out.push_str(&format!("# {} on port {}\n[[backend]]\n", f.what, f.port));
        out.push_str(&format!("name = {}\n", quote(&format!("{short}-{}", f.port))));
        out.push_str(&format!("kind = {}\n", quote(f.kind.as_str())));
        out.push_str(&format!("url = {}\n", quote(&f.url)));
        match f.models.first() {
            // mlx_lm.server serves the model it was started with when a request names none.
            Some(m) if f.what != "mlx_lm.server" => out.push_str(&format!("model = {}\n", quote(m))),
            _ => {}
        }
        out.push_str(&format!("process = {{ port = {} }}\n", f.port));
        out.push_str("# log = \"PATH to the server's log file\"   # its tail is kept with each failure\n\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Option<Reply> {
        Some(Reply { status: 200, server: None, body: body.into() })
    }

    #[test]
    fn tells_each_kind_apart() {
        let lms = Answers {
            v1_models: ok(r#"{"data":[{"id":"qwen3-8b"}]}"#),
            lmstudio_models: ok(r#"{"data":[{"id":"qwen3-8b","state":"loaded"}]}"#),
            ..Default::default()
        };
        assert_eq!(classify(&lms), Some((BackendKind::LmStudio, "LM Studio")));
        assert_eq!(model_ids(&lms, BackendKind::LmStudio), vec!["qwen3-8b"]);

        let ollama = Answers {
            ollama_version: ok(r#"{"version":"0.12.3"}"#),
            ollama_tags: ok(r#"{"models":[{"name":"qwen3:8b"}]}"#),
            v1_models: ok(r#"{"data":[{"id":"qwen3:8b"}]}"#),
            ..Default::default()
        };
        assert_eq!(classify(&ollama).map(|k| k.0), Some(BackendKind::Ollama));
        assert_eq!(model_ids(&ollama, BackendKind::Ollama), vec!["qwen3:8b"]);

        let llama = Answers {
            props: ok(r#"{"build_info":"b1-0c1e570","total_slots":2}"#),
            v1_models: ok(r#"{"models":[],"data":[{"id":"tiny"}]}"#),
            ..Default::default()
        };
        assert_eq!(classify(&llama).map(|k| k.0), Some(BackendKind::LlamaCpp));
        assert_eq!(version_of(&llama, BackendKind::LlamaCpp).as_deref(), Some("b1-0c1e570"));

        let vllm = Answers {
            version: ok(r#"{"version":"0.11.0"}"#),
            v1_models: ok(r#"{"data":[{"id":"Qwen/Qwen3-8B"}]}"#),
            metrics: ok("vllm:num_requests_running 0\n"),
            ..Default::default()
        };
        assert_eq!(classify(&vllm).map(|k| k.0), Some(BackendKind::Vllm));

        let mut mlx =
            Answers { v1_models: ok(r#"{"object":"list","data":[{"id":"m","created":1}]}"#), ..Default::default() };
        mlx.v1_models.as_mut().unwrap().server = Some("BaseHTTP/0.6 Python/3.12.3".into());
        assert_eq!(classify(&mlx), Some((BackendKind::OpenAi, "mlx_lm.server")));
    }

    #[test]
    fn non_llm_servers_are_not_found() {
        assert_eq!(classify(&Answers::default()), None);
        let web = Answers { v1_models: ok("<html>hello</html>"), props: ok("{}"), ..Default::default() };
        assert_eq!(classify(&web), None);
        let not_found = Answers {
            v1_models: Some(Reply { status: 404, server: None, body: "{\"data\":[]}".into() }),
            ..Default::default()
        };
        assert_eq!(classify(&not_found), None);
    }

    #[test]
    fn entries_are_valid_config() {
        let found = Found {
            port: 8080,
            url: "http://127.0.0.1:8080".into(),
            kind: BackendKind::LlamaCpp,
            what: "llama.cpp llama-server",
            version: None,
            models: vec!["weird \"name\"\n".into()],
            pid: Some(1),
            process: None,
        };
        let text = entries(&[found]);
        let config = crate::config::parse(&text, std::path::Path::new("c.toml"), &|_| None).expect("valid config");
        assert_eq!(config.backends[0].kind, BackendKind::LlamaCpp);
        assert_eq!(config.backends[0].name, "llamacpp-8080");
        assert_eq!(config.backends[0].model.as_deref(), Some("weird \"name\"\n"));
    }
}
