//! The LM Studio adapter: traffic goes to LM Studio's own REST API,
//! `POST /api/v0/chat/completions` (OpenAI-shaped, plus `stats`, `model_info` and `runtime`),
//! through the OpenAI adapter with that path; the model's state comes from `GET /api/v0/models`
//! and `GET /api/v0/models/{model}` (`state`: `loaded` | `not-loaded`).
//!
//! - `describe`: the runtime (`runtime.name` and `version`, known once a reply carried them)
//!   and the model's entry (`arch`, `quantization`, `compatibility_type`, `max_context_length`).
//! - `observe`: every model's state (`server_samples.source = 'models'`).
//! - `after_failure`: looks the model up again; a model that went from `loaded` to anything else
//!   is a `model_unloaded` event (LM Studio's "The model has crashed without additional
//!   information" and the "Model is unloaded" answers after it), and one found loaded again
//!   is a `model_loaded` event.
//! - `noticed`: a reply that worked while the model was last seen not loaded means LM Studio
//!   loaded it again (JIT loading): a `model_loaded` event, so auto-reloads are counted.
//!
//! The last known state of each model lives in the adapter, which lasts the whole session.

use super::http::{Http, short_str};
use super::{Backend, BackendError, ChatRequest, Exchange, Failure, Observation, OpenAi, ServerEvent, ServerInfo};
use crate::config::BackendConfig;
use crate::measure::EventKind;
use crate::measure::timeline::Timeline;
use crate::schedule::Timeouts;
use crate::shutdown::Shutdown;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// How many models' states and entries are kept or recorded.
const MAX_MODELS: usize = 32;

pub struct LmStudio {
    chat: OpenAi,
    model: Option<String>,
    known: Mutex<Known>,
}

#[derive(Debug, Default)]
struct Known {
    /// Model id → its last known `state`.
    states: BTreeMap<String, String>,
    /// The model the last reply named.
    served: Option<String>,
    /// The last `runtime` and `model_info` a reply carried.
    runtime: Option<Value>,
    model_info: Option<Value>,
    pending: Vec<ServerEvent>,
}

impl Known {
    /// Records a state; returns the event its change means, if any.
    fn update(&mut self, model: &str, state: &str, via: &str) -> Option<ServerEvent> {
        if self.states.len() >= MAX_MODELS && !self.states.contains_key(model) {
            return None;
        }
        let before = self.states.insert(model.to_string(), state.to_string())?;
        let detail = json!({"model": model, "before": before, "after": state, "via": via});
        match (before == "loaded", state == "loaded") {
            (true, false) => Some(ServerEvent { kind: EventKind::ModelUnloaded, detail }),
            (false, true) => Some(ServerEvent { kind: EventKind::ModelLoaded, detail }),
            _ => None,
        }
    }
}

impl LmStudio {
    pub fn new(config: &BackendConfig, timeouts: &Timeouts) -> Result<Self, BackendError> {
        Ok(LmStudio {
            chat: OpenAi::with_path(config, timeouts, "/api/v0/chat/completions")?,
            model: config.model.clone(),
            known: Mutex::new(Known::default()),
        })
    }

    fn http(&self) -> &Http {
        self.chat.http()
    }

    fn known(&self) -> MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The model to look up: the configured one, else the one the last reply named.
    fn target(&self) -> Option<String> {
        self.model.clone().or_else(|| self.known().served.clone())
    }

    async fn model_entry(&self, id: &str) -> Result<Value, String> {
        let mut url = self.http().url("/api/v0/models");
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(id);
        }
        self.http().side().fetch_json(url).await
    }

    async fn model_list(&self) -> Result<Vec<Value>, String> {
        let list = self.http().side().fetch_json(self.http().url("/api/v0/models")).await?;
        match list.get("data").and_then(Value::as_array) {
            Some(models) => Ok(models.iter().take(MAX_MODELS).map(entry).collect()),
            None => Err("GET /api/v0/models: no `data` list in the answer".to_string()),
        }
    }

    /// What a finished reply tells: the model it named, the runtime, and that the model is
    /// loaded (an event when it was last seen otherwise).
    fn after_reply(&self, tl: &Timeline) {
        let mut known = self.known();
        if let Some(Value::Object(kept)) = &tl.server_timings {
            if let Some(r) = kept.get("runtime") {
                known.runtime = Some(r.clone());
            }
            if let Some(m) = kept.get("model_info") {
                known.model_info = Some(m.clone());
            }
        }
        let served = self.model.clone().or_else(|| tl.server_model.clone());
        if let Some(model) = served {
            if let Some(e) = known.update(&model, "loaded", "reply") {
                known.pending.push(e);
            }
            known.served = Some(model);
        }
    }

    fn runtime_version(&self) -> Option<String> {
        let known = self.known();
        let r = known.runtime.as_ref()?;
        match (short_str(r, "name"), short_str(r, "version")) {
            (Some(n), Some(v)) => Some(format!("{n} {v}")),
            (None, Some(v)) => Some(v),
            (Some(n), None) => Some(n),
            (None, None) => None,
        }
    }
}

/// The fields of a model entry soakd keeps (bounded strings, numbers as sent).
fn entry(m: &Value) -> Value {
    let mut out = Map::new();
    for key in ["id", "type", "publisher", "arch", "compatibility_type", "quantization", "state"] {
        if let Some(s) = short_str(m, key) {
            out.insert(key.to_string(), Value::String(s));
        }
    }
    if let Some(n) = m.get("max_context_length").and_then(Value::as_u64) {
        out.insert("max_context_length".to_string(), json!(n));
    }
    Value::Object(out)
}

fn bounded_object(v: Option<Value>) -> Value {
    match v {
        Some(v @ Value::Object(_)) if v.to_string().len() <= 2048 => v,
        _ => Value::Null,
    }
}

impl Backend for LmStudio {
    fn chat<'a>(
        &'a self,
        request: ChatRequest<'a>,
        timeline: &'a mut Timeline,
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Exchange> {
        async move {
            let exchange = self.chat.chat(request, timeline, shutdown).await;
            if exchange.result.is_ok() {
                self.after_reply(timeline);
            }
            exchange
        }
        .boxed()
    }

    fn describe(&self) -> BoxFuture<'_, ServerInfo> {
        async move {
            let found = match self.target() {
                Some(id) => self.model_entry(&id).await.map(|m| entry(&m)),
                None => self.model_list().await.and_then(|list| {
                    list.into_iter()
                        .find(|m| m["state"] == "loaded" && m["type"] != "embeddings")
                        .ok_or_else(|| "no model is loaded".to_string())
                }),
            };
            let (model_entry, error) = match found {
                Ok(m) => (m, None),
                Err(e) => (Value::Null, Some(e)),
            };
            let id = short_str(&model_entry, "id").or_else(|| self.target());
            if let (Some(id), Some(state)) = (&id, model_entry.get("state").and_then(Value::as_str)) {
                let mut known = self.known();
                if let Some(e) = known.update(id, state, "describe") {
                    known.pending.push(e);
                }
            }
            let (runtime, model_info) = {
                let k = self.known();
                (bounded_object(k.runtime.clone()), bounded_object(k.model_info.clone()))
            };
            let mut detail = json!({"model": model_entry, "model_info": model_info, "runtime": runtime});
            if let Some(e) = error {
                detail["error"] = json!(e);
            }
            ServerInfo { version: self.runtime_version(), model: id, detail }
        }
        .boxed()
    }

    fn observe(&self) -> BoxFuture<'_, Vec<Observation>> {
        async move {
            let data = match self.model_list().await {
                Ok(models) => {
                    let mut known = self.known();
                    for m in &models {
                        if let (Some(id), Some(state)) = (short_str(m, "id"), short_str(m, "state"))
                            && let Some(e) = known.update(&id, &state, "observe")
                        {
                            known.pending.push(e);
                        }
                    }
                    json!({"models": models})
                }
                Err(e) => json!({"error": e}),
            };
            vec![Observation { source: "models", memory_bytes: None, gpu_memory_bytes: None, data }]
        }
        .boxed()
    }

    fn after_failure<'a>(&'a self, failure: &'a Failure) -> BoxFuture<'a, Vec<ServerEvent>> {
        async move {
            let seen: Vec<Value> = match self.target() {
                Some(id) => match self.model_entry(&id).await {
                    Ok(m) => vec![entry(&m)],
                    Err(e) => {
                        tracing::debug!("LM Studio: cannot look the model up after a failure: {e}");
                        return Vec::new();
                    }
                },
                None => self.model_list().await.unwrap_or_default(),
            };
            let mut known = self.known();
            let mut events = std::mem::take(&mut known.pending);
            for m in &seen {
                if let (Some(id), Some(state)) = (short_str(m, "id"), short_str(m, "state"))
                    && let Some(e) = known.update(&id, &state, "after_failure")
                {
                    events.push(e.after(failure));
                }
            }
            events
        }
        .boxed()
    }

    fn noticed(&self) -> Vec<ServerEvent> {
        std::mem::take(&mut self.known().pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_changes_become_events() {
        let mut k = Known::default();
        assert_eq!(k.update("m", "loaded", "observe"), None, "the first sight is no change");
        assert_eq!(k.update("m", "loaded", "reply"), None);
        let e = k.update("m", "not-loaded", "after_failure").expect("loaded → not-loaded");
        assert_eq!(e.kind, EventKind::ModelUnloaded);
        assert_eq!(e.detail["before"], "loaded");
        assert_eq!(k.update("m", "not-loaded", "after_failure"), None, "still unloaded: no new event");
        assert_eq!(k.update("m", "loaded", "reply").map(|e| e.kind), Some(EventKind::ModelLoaded));
    }

    #[test]
    fn model_entries_keep_documented_fields_only() {
        let m = json!({"id": "qwen2-vl-7b-instruct", "object": "model", "type": "vlm", "publisher": "mlx-community",
            "arch": "qwen2_vl", "compatibility_type": "mlx", "quantization": "4bit", "state": "not-loaded",
            "max_context_length": 32768, "junk": "x".repeat(10_000)});
        let e = entry(&m);
        assert_eq!(e["state"], "not-loaded");
        assert_eq!(e["max_context_length"], 32768);
        assert_eq!(e["quantization"], "4bit");
        assert!(e.get("junk").is_none());
        let long = entry(&json!({"id": "y".repeat(5000)}));
        assert!(long["id"].as_str().unwrap().len() < 300, "untrusted strings are bounded");
    }

    #[test]
    fn the_known_model_list_is_bounded() {
        let mut k = Known::default();
        for i in 0..100 {
            k.update(&format!("m{i}"), "loaded", "observe");
        }
        assert_eq!(k.states.len(), MAX_MODELS);
    }

    #[test]
    fn replies_teach_runtime_and_state() {
        let config = super::super::http::test_config(crate::config::BackendKind::LmStudio, "http://127.0.0.1:1", None);
        let a = LmStudio::new(&config, &Timeouts::default()).unwrap();
        a.known().update("granite", "not-loaded", "observe");
        let mut tl = Timeline::new(crate::time::Instant::now());
        tl.server_model = Some("granite".into());
        tl.server_timings =
            Some(json!({"runtime": {"name": "llama.cpp-mac-arm64-apple-metal-advsimd", "version": "1.3.0"},
            "model_info": {"arch": "granite", "quant": "Q4_K_M"}}));
        a.after_reply(&tl);
        assert_eq!(a.runtime_version().as_deref(), Some("llama.cpp-mac-arm64-apple-metal-advsimd 1.3.0"));
        assert_eq!(a.target().as_deref(), Some("granite"));
        let events = a.noticed();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::ModelLoaded);
        assert!(a.noticed().is_empty(), "drained");
    }
}
