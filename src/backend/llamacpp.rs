//! llama.cpp's `llama-server`: chat through the OpenAI adapter (whose replies carry
//! `timings`), plus the server's own endpoints: `/props` for the build, model and context
//! size (per run); `/health` (503 while loading), `/metrics` (with `--metrics`; Prometheus,
//! `llamacpp:` prefix) and `/slots` (with `--slots`) before and after each workload; and
//! `/health` again after a failure, recorded when it changed.

use super::side::{HealthWatch, Side};
use super::{Backend, BackendError, ChatRequest, Exchange, Failure, Observation, OpenAi, ServerEvent, ServerInfo};
use crate::config::BackendConfig;
use crate::measure::timeline::Timeline;
use crate::schedule::Timeouts;
use crate::shutdown::Shutdown;
use crate::text::bounded;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

pub struct LlamaCpp {
    chat: OpenAi,
    side: Side,
    health: HealthWatch,
}

impl LlamaCpp {
    pub fn new(config: &BackendConfig, timeouts: &Timeouts) -> Result<Self, BackendError> {
        Ok(LlamaCpp { chat: OpenAi::new(config, timeouts)?, side: Side::new(config)?, health: HealthWatch::default() })
    }
}

/// The build, model and settings in a `/props` reply.
pub fn props_info(props: &Value) -> ServerInfo {
    let s = |k: &str| props.get(k).and_then(Value::as_str).map(|v| bounded(v, 256));
    let model = s("model_alias")
        .filter(|a| !a.is_empty())
        .or_else(|| s("model_path").map(|p| p.rsplit(['/', '\\']).next().unwrap_or_default().to_string()));
    ServerInfo {
        version: s("build_info"),
        model,
        detail: json!({
            "n_ctx": props.pointer("/default_generation_settings/n_ctx"),
            "total_slots": props.get("total_slots"),
            "model_ftype": s("model_ftype"),
            "model_path": s("model_path"),
            "endpoint_slots": props.get("endpoint_slots"),
            "endpoint_metrics": props.get("endpoint_metrics"),
        }),
    }
}

/// `/slots`: how many, how many busy, their context sizes.
pub fn slots_summary(slots: &Value) -> Option<Value> {
    let list = slots.as_array()?;
    let busy = list.iter().filter(|s| s.get("is_processing").and_then(Value::as_bool) == Some(true)).count();
    let n_ctx: Vec<&Value> = list.iter().filter_map(|s| s.get("n_ctx")).take(64).collect();
    Some(json!({"slots": list.len(), "processing": busy, "n_ctx": n_ctx}))
}

impl Backend for LlamaCpp {
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
            match self.side.json("/props").await {
                Some(props) => props_info(&props),
                None => ServerInfo::default(),
            }
        })
    }

    fn observe(&self) -> BoxFuture<'_, Vec<Observation>> {
        Box::pin(async {
            let (mut seen, slots) =
                tokio::join!(self.side.health_and_metrics(&self.health, "llamacpp:"), self.side.json("/slots"));
            if let Some(s) = slots.as_ref().and_then(slots_summary) {
                seen.push(Observation { source: "slots", memory_bytes: None, gpu_memory_bytes: None, data: s });
            }
            seen
        })
    }

    fn after_failure<'a>(&'a self, _failure: &'a Failure) -> BoxFuture<'a, Vec<ServerEvent>> {
        Box::pin(self.side.health_after_failure(&self.health))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn props_of_a_real_llama_server() {
        let props = json!({"default_generation_settings": {"n_ctx": 2048}, "total_slots": 2, "model_alias": "tiny",
            "model_ftype": "F16", "model_path": "/m/babble/model.gguf", "endpoint_slots": true, "endpoint_metrics": true,
            "build_info": "b1-0c1e570"});
        let info = props_info(&props);
        assert_eq!(info.version.as_deref(), Some("b1-0c1e570"));
        assert_eq!(info.model.as_deref(), Some("tiny"));
        assert_eq!(info.detail["n_ctx"], 2048);
        let unnamed = props_info(&json!({"model_path": "/m/x/qwen.gguf"}));
        assert_eq!(unnamed.model.as_deref(), Some("qwen.gguf"));
        assert_eq!(props_info(&json!("nonsense")), ServerInfo { detail: unnamed_detail(), ..Default::default() });
    }

    fn unnamed_detail() -> Value {
        json!({"n_ctx": null, "total_slots": null, "model_ftype": null, "model_path": null, "endpoint_slots": null,
            "endpoint_metrics": null})
    }

    #[test]
    fn slots() {
        let s = slots_summary(
            &json!([{"id": 0, "n_ctx": 2048, "is_processing": true}, {"id": 1, "n_ctx": 2048, "is_processing": false}]),
        )
        .expect("a list");
        assert_eq!(s["slots"], 2);
        assert_eq!(s["processing"], 1);
        assert!(slots_summary(&json!({"error": "disabled"})).is_none());
    }
}
