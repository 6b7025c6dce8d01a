//! vLLM's OpenAI server: chat through the OpenAI adapter, plus `/version` and the served
//! model's `max_model_len` (per run), and `/health` and `/metrics` (Prometheus, `vllm:`
//! prefix: running and waiting requests, KV-cache usage, token counters) before and after
//! each workload.

use super::side::{HealthWatch, Side};
use super::{Backend, BackendError, ChatRequest, Exchange, Failure, Observation, OpenAi, ServerEvent, ServerInfo};
use crate::config::BackendConfig;
use crate::measure::timeline::Timeline;
use crate::schedule::Timeouts;
use crate::shutdown::Shutdown;
use crate::text::bounded;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

pub struct Vllm {
    chat: OpenAi,
    side: Side,
    health: HealthWatch,
}

impl Vllm {
    pub fn new(config: &BackendConfig, timeouts: &Timeouts) -> Result<Self, BackendError> {
        Ok(Vllm { chat: OpenAi::new(config, timeouts)?, side: Side::new(config)?, health: HealthWatch::default() })
    }
}

/// What `/version` and `/v1/models` say.
pub fn vllm_info(version: Option<&Value>, models: Option<&Value>) -> ServerInfo {
    let first = models.and_then(|m| m.pointer("/data/0"));
    ServerInfo {
        version: version.and_then(|v| v.get("version")).and_then(Value::as_str).map(|v| bounded(v, 64)),
        model: first.and_then(|m| m.get("id")).and_then(Value::as_str).map(|v| bounded(v, 256)),
        detail: json!({"max_model_len": first.and_then(|m| m.get("max_model_len"))}),
    }
}

impl Backend for Vllm {
    fn chat<'a>(
        &'a self,
        request: ChatRequest<'a>,
        timeline: &'a mut Timeline,
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Exchange> {
        self.chat.chat(request, timeline, shutdown)
    }

    fn describe(&self) -> BoxFuture<'_, ServerInfo> {
        Box::pin(async {
            let (version, models) = tokio::join!(self.side.json("/version"), self.side.json("/v1/models"));
            vllm_info(version.as_ref(), models.as_ref())
        })
    }

    fn observe(&self) -> BoxFuture<'_, Vec<Observation>> {
        Box::pin(self.side.health_and_metrics(&self.health, "vllm:"))
    }

    fn after_failure<'a>(&'a self, _failure: &'a Failure) -> BoxFuture<'a, Vec<ServerEvent>> {
        Box::pin(self.side.health_after_failure(&self.health))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_and_model() {
        let info = vllm_info(
            Some(&json!({"version": "0.11.0"})),
            Some(&json!({"data": [{"id": "Qwen/Qwen3-8B", "max_model_len": 32768}]})),
        );
        assert_eq!(info.version.as_deref(), Some("0.11.0"));
        assert_eq!(info.model.as_deref(), Some("Qwen/Qwen3-8B"));
        assert_eq!(info.detail["max_model_len"], 32768);
        assert_eq!(vllm_info(None, None).version, None);
    }
}
