//! Backends: the LLM servers soakd talks to. Each kind is an adapter behind `Backend`, which
//! sends one chat request and reports, through a `Timeline`, what arrived and when. Adapters
//! never fail: whatever the server does becomes a `Failure` with an `Outcome`.

mod chunk;
mod guard;
mod openai;

pub use openai::OpenAi;

use crate::config::{BackendConfig, BackendKind};
use crate::probe::outcome::Outcome;
use crate::probe::timeline::Timeline;
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
}

/// Why a backend could not be set up for a run.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend \"{backend}\": api_key_env names {var}, but {var} is not set in soakd's environment")]
    MissingKey { backend: String, var: String },
    #[error("backend \"{backend}\": the value of {var} cannot be sent as an HTTP header")]
    BadKey { backend: String, var: String },
    #[error("backend \"{backend}\": cannot build an HTTP client: {err}")]
    Client { backend: String, err: reqwest::Error },
}

/// The adapter for a configured backend, with the connect timeout of the workload.
pub fn connect(config: &BackendConfig, timeouts: &Timeouts) -> Result<Box<dyn Backend>, BackendError> {
    match config.kind {
        BackendKind::OpenAi => Ok(Box::new(OpenAi::new(config, timeouts)?)),
    }
}
