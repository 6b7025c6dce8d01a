//! Backends: the LLM servers soakd talks to. Each kind is an adapter behind `Backend`, which
//! sends one chat request and reports, through a `Timeline`, what arrived and when. Adapters
//! never fail: whatever the server does becomes a `Failure` with an `Outcome`.
//!
//! Beyond the chat itself an adapter may tell what the server says about itself (`describe`:
//! version and model, asked at each run's start), its own view of its state around a workload
//! (`observe`: metrics, loaded models, slots), and what changed after a failure
//! (`after_failure`: LM Studio's model going from loaded to not-loaded), and what it noticed in
//! its own traffic (`noticed`: an Ollama reload seen in `load_duration`). Adapters live for a
//! whole session (`Adapters`), so a worker process is started once, not once per run.

mod chunk;
mod exchange;
#[cfg(test)]
pub(crate) mod fake;
mod guard;
mod http;
mod llamacpp;
mod lmstudio;
mod metrics;
#[cfg(feature = "mlx")]
mod mlx;
mod mlx_lm;
mod ndjson;
mod ollama;
mod openai;
mod pool;
pub mod side;
mod transport;
mod vllm;
mod worker;

#[cfg(test)]
pub(crate) use http::test_config;
pub use lmstudio::LmStudio;
pub use mlx_lm::MlxLm;
pub use ollama::Ollama;
pub use openai::OpenAi;
pub use pool::Adapters;

use crate::config::{BackendConfig, BackendKind};
use crate::measure::EventKind;
use crate::measure::outcome::Outcome;
use crate::measure::timeline::Timeline;
use crate::schedule::{Prompt, Timeouts, Workload};
use crate::shutdown::Shutdown;
use futures_util::future::BoxFuture;

/// One request to send.
#[derive(Debug, Clone, Copy)]
pub struct ChatRequest<'a> {
    pub prompt: &'a Prompt,
    pub workload: &'a Workload,
}

/// How a request went, beyond what the timeline holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    pub http_status: Option<u16>,
    /// 2 when the first attempt hit a pooled connection the server had already closed.
    pub attempts: u32,
    pub tool_call_seen: bool,
    /// Whether every tool call named an offered tool with JSON-object arguments (`None`: no call).
    pub tool_call_valid: Option<bool>,
    pub result: Result<(), Failure>,
}

/// A request that did not succeed: its outcome and the server's or transport's words.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub outcome: Outcome,
    pub error: String,
}

impl Failure {
    pub fn new(outcome: Outcome, error: impl Into<String>) -> Self {
        Failure { outcome, error: error.into() }
    }
}

/// What a server says about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerInfo {
    /// Version or build, e.g. llama.cpp's `b4589 (6e8a9c1)`.
    pub version: Option<String>,
    /// The model it serves (or has loaded) for this backend.
    pub model: Option<String>,
    /// Everything else worth keeping (JSON, bounded).
    pub detail: serde_json::Value,
}

/// One look at the server's own view of its state (`server_samples`, db/README.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Where it came from: `metrics`, `slots`, `health`, `ps`, `models`, `worker`.
    pub source: &'static str,
    /// Memory the server reports for the model (Ollama `size`, MLX active memory).
    pub memory_bytes: Option<u64>,
    /// Of that, on the GPU (Ollama `size_vram`, MLX peak).
    pub gpu_memory_bytes: Option<u64>,
    /// The parsed numbers, JSON, bounded.
    pub data: serde_json::Value,
}

/// Something the server's state says happened (an `events` row).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerEvent {
    pub kind: EventKind,
    pub detail: serde_json::Value,
}

impl ServerEvent {
    /// The event, saying which failed request it came after (its outcome and error, bounded).
    pub fn after(mut self, failure: &Failure) -> ServerEvent {
        self.detail["outcome"] = serde_json::json!(failure.outcome.as_str());
        self.detail["error"] = serde_json::json!(crate::text::bounded(&failure.error, 512));
        self
    }
}

/// An LLM server's chat API.
pub trait Backend: Send + Sync {
    /// Sends one request; `timeline` starts at the request's actual start. Returns when the
    /// reply ended, failed, timed out, or `shutdown` aborted it.
    fn chat<'a>(
        &'a self,
        request: ChatRequest<'a>,
        timeline: &'a mut Timeline,
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Exchange>;

    /// The server's version and model, asked at the start of each run.
    fn describe(&self) -> BoxFuture<'_, ServerInfo> {
        Box::pin(async { ServerInfo::default() })
    }

    /// The server's own view of its state, taken before and after each workload.
    fn observe(&self) -> BoxFuture<'_, Vec<Observation>> {
        Box::pin(async { Vec::new() })
    }

    /// Called after a failed request: what the server's state says about it.
    fn after_failure<'a>(&'a self, _failure: &'a Failure) -> BoxFuture<'a, Vec<ServerEvent>> {
        Box::pin(async { Vec::new() })
    }

    /// Events the adapter noticed in its own replies since it was last asked (an Ollama model
    /// reload in `load_duration`, LM Studio's model loaded again); asked after every request.
    fn noticed(&self) -> Vec<ServerEvent> {
        Vec::new()
    }

    /// Stops whatever the adapter started (a worker process) at the session's end.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Why a backend could not be set up for a run.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend \"{backend}\": api_key_env names {var}, but {var} is not set in soakd's environment")]
    MissingKey { backend: String, var: String },
    #[error("backend \"{backend}\": the value of {var} cannot be sent as an HTTP header")]
    BadKey { backend: String, var: String },
    #[error("backend \"{backend}\": kind \"mlx\" is not in this build of soakd; rebuild with --features mlx")]
    NotBuilt { backend: String },
    #[error("backend \"{backend}\": cannot build an HTTP client: {err}")]
    Client { backend: String, err: reqwest::Error },
    #[error("backend \"{backend}\": kind \"mlx-lm\" needs `{field}` (check the config)")]
    Worker { backend: String, field: &'static str },
}

/// The `Authorization` header for a backend with `api_key_env`, marked sensitive (never logged).
fn bearer(config: &BackendConfig) -> Result<Option<reqwest::header::HeaderValue>, BackendError> {
    let Some(var) = &config.api_key_env else { return Ok(None) };
    let key = std::env::var(var)
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| BackendError::MissingKey { backend: config.name.clone(), var: var.clone() })?;
    crate::secrets::remember(&key);
    let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
        .map_err(|_| BackendError::BadKey { backend: config.name.clone(), var: var.clone() })?;
    v.set_sensitive(true);
    Ok(Some(v))
}

/// The `/metrics` reader, for the sim's tests.
#[cfg(test)]
pub(crate) fn metrics_for_tests(page: &str, prefix: &str) -> serde_json::Map<String, serde_json::Value> {
    metrics::parse(page, prefix)
}

/// A new adapter for a configured backend, with the connect timeout of the workload.
pub fn connect(config: &BackendConfig, timeouts: &Timeouts) -> Result<Box<dyn Backend>, BackendError> {
    match config.kind {
        BackendKind::LlamaCpp => Ok(Box::new(llamacpp::LlamaCpp::new(config, timeouts)?)),
        BackendKind::Vllm => Ok(Box::new(vllm::Vllm::new(config, timeouts)?)),
        BackendKind::LmStudio => Ok(Box::new(LmStudio::new(config, timeouts)?)),
        BackendKind::Ollama => Ok(Box::new(Ollama::new(config, timeouts)?)),
        BackendKind::MlxLm => Ok(Box::new(MlxLm::new(config)?)),
        BackendKind::OpenAi => Ok(Box::new(OpenAi::new(config, timeouts)?)),
        #[cfg(feature = "mlx")]
        BackendKind::Mlx => Ok(Box::new(mlx::Mlx::new(config))),
        #[cfg(not(feature = "mlx"))]
        BackendKind::Mlx => Err(BackendError::NotBuilt { backend: config.name.clone() }),
    }
}
