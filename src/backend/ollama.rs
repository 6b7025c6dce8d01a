//! The Ollama adapter: its native `POST /api/chat`, streamed as newline-delimited JSON (one
//! object per line, `done: true` on the last with `done_reason`, `eval_count`,
//! `eval_duration`, `prompt_eval_count`, `prompt_eval_duration`, `load_duration`,
//! `total_duration`, all durations in nanoseconds) or answered whole.
//!
//! Request: `options.num_predict` = `max_tokens`, `options.temperature`, `options.top_p`;
//! `keep_alive` is left to the server; `tools` as in the OpenAI API (Ollama answers whole
//! calls in `message.tool_calls`, arguments as an object). `message.thinking` counts as
//! reasoning. Errors: HTTP errors with `{"error": "..."}` bodies, and an `error` member mid-stream;
//! "llama runner process has terminated" and the other crash words make `server_reported_crash`.
//! Lines are bounded (`ndjson`), silences by the stall limit (`guard`), as for SSE.
//!
//! Server signals:
//! - `describe`: `GET /api/version`, and the model's `/api/ps` entry (quantization, size).
//! - `observe`: `GET /api/ps`: one sample per loaded model (`source = 'ps'`, `memory_bytes` =
//!   `size`, `gpu_memory_bytes` = `size_vram`, `expires_at`).
//! - Reloads (`model_reload` events), one per reload: after a failure, the model missing from
//!   `/api/ps` when it was last seen there (`via: "missing_from_ps"`); or, on any reply, a
//!   `load_duration` over 1 s and over 10× the previous reply's (`via: "load_duration"`, the
//!   runner reloaded without a failure soakd saw — a crash between requests, or `keep_alive`
//!   expiry). A big load right after a reload already reported is the same reload. Replies'
//!   events come out through `noticed`.

use super::chunk::{FunctionPart, ToolCallPart, ToolCalls, error_text};
use super::exchange::{Attempt, DRAIN_AFTER_DONE, Stop, Try, Wire, exchange, fail, race};
use super::guard::{Guarded, StreamFault};
use super::http::{Http, short_str};
use super::ndjson::{LineError, Lines};
use super::{Backend, BackendError, ChatRequest, Exchange, Failure, Observation, ServerEvent, ServerInfo};
use crate::config::BackendConfig;
use crate::measure::EventKind;
use crate::measure::outcome::{Outcome, is_crash_text};
use crate::measure::timeline::{Delta, Timeline};
use crate::schedule::Timeouts;
use crate::shutdown::Shutdown;
use crate::text::{MAX_ERROR_BYTES, bounded};
use crate::time::Instant;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use reqwest::{Response, Url};
use serde_json::{Map, Value, json};
use std::sync::{Mutex, MutexGuard};

/// A `load_duration` over this, and over `RELOAD_FACTOR` × the previous one, is a reload.
const RELOAD_MIN_MS: f64 = 1000.0;
const RELOAD_FACTOR: f64 = 10.0;
/// How many `/api/ps` entries are recorded.
const MAX_PS_MODELS: usize = 16;

pub struct Ollama {
    http: Http,
    endpoint: Url,
    model: Option<String>,
    seen: Mutex<Seen>,
}

/// What the adapter remembers between requests.
#[derive(Debug, Default)]
struct Seen {
    last_load_ms: Option<f64>,
    /// Whether the model was in `/api/ps` (or answered) when last seen.
    in_ps: Option<bool>,
    /// A reload was reported and its load has not shown yet.
    reload_reported: bool,
    pending: Vec<ServerEvent>,
}

impl Seen {
    /// A reply's `load_duration`: a reload event when it jumped.
    fn load(&mut self, model: &str, load_ms: f64) -> Option<ServerEvent> {
        let previous = self.last_load_ms.replace(load_ms);
        self.in_ps = Some(true);
        let jumped = load_ms > RELOAD_MIN_MS && previous.is_some_and(|p| load_ms > RELOAD_FACTOR * p);
        // The first reply after a reported reload shows that reload's load (if anyone's).
        if std::mem::take(&mut self.reload_reported) {
            return None;
        }
        jumped.then(|| ServerEvent {
            kind: EventKind::ModelReload,
            detail: json!({"model": model, "via": "load_duration", "load_ms": load_ms, "previous_load_ms": previous}),
        })
    }

    /// Whether the model is in `/api/ps` now: a reload event when it left.
    fn in_ps(&mut self, model: &str, present: bool) -> Option<ServerEvent> {
        let was = self.in_ps.replace(present);
        (was == Some(true) && !present).then(|| {
            self.reload_reported = true;
            ServerEvent { kind: EventKind::ModelReload, detail: json!({"model": model, "via": "missing_from_ps"}) }
        })
    }
}

impl Ollama {
    pub fn new(config: &BackendConfig, timeouts: &Timeouts) -> Result<Self, BackendError> {
        let http = Http::new(config, timeouts)?;
        Ok(Ollama { endpoint: http.url("/api/chat"), http, model: config.model.clone(), seen: Mutex::default() })
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The JSON body for one request.
    pub fn body(&self, req: ChatRequest<'_>) -> Value {
        let w = req.workload;
        let mut messages = Vec::new();
        if let Some(system) = &w.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": req.prompt.text}));
        let mut options = json!({"num_predict": w.max_tokens});
        if let Some(t) = w.temperature {
            options["temperature"] = json!(t);
        }
        if let Some(p) = w.top_p {
            options["top_p"] = json!(p);
        }
        let mut body = json!({"messages": messages, "stream": w.stream, "options": options});
        if let Some(model) = &self.model {
            body["model"] = json!(model);
        }
        if let Some(tools) = &w.tools {
            body["tools"] = tools.clone();
        }
        body
    }

    async fn exchange(&self, req: ChatRequest<'_>, tl: &mut Timeline, shutdown: &Shutdown) -> Exchange {
        exchange(self, &self.body(req), req, tl, shutdown).await
    }

    /// The model soakd asks for, as `/api/ps` may name it (`qwen3` is `qwen3:latest`).
    fn is_ours(&self, m: &Value) -> bool {
        let Some(ours) = &self.model else { return false };
        ["name", "model"]
            .iter()
            .filter_map(|k| m.get(*k).and_then(Value::as_str))
            .any(|n| n == ours || n.strip_suffix(":latest") == Some(ours) || ours.strip_suffix(":latest") == Some(n))
    }

    async fn ps(&self) -> Result<Vec<Value>, String> {
        let ps = self.http.side().fetch_json(self.http.url("/api/ps")).await?;
        match ps.get("models").and_then(Value::as_array) {
            Some(models) => Ok(models.iter().take(MAX_PS_MODELS).map(ps_entry).collect()),
            None => Err("GET /api/ps: no `models` list in the answer".to_string()),
        }
    }

    fn after_reply(&self, tl: &Timeline) {
        let model = self.model.as_deref().or(tl.server_model.as_deref()).unwrap_or("?").to_string();
        let mut seen = self.seen();
        match tl.server.load_ms {
            Some(ms) => {
                if let Some(e) = seen.load(&model, ms) {
                    seen.pending.push(e);
                }
            }
            None => seen.in_ps = Some(true),
        }
    }
}

/// An HTTP error: Ollama's `{"error": "..."}` body, or whatever came.
fn http_failure(status: u16, body: &str) -> Attempt {
    let said = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").map(error_text))
        .unwrap_or_else(|| body.trim().to_string());
    let outcome = if is_crash_text(&said) { Outcome::ServerReportedCrash } else { Outcome::HttpError };
    fail(outcome, bounded(&format!("HTTP {status}: {said}"), MAX_ERROR_BYTES))
}

fn line_error(e: LineError<StreamFault>, tl: &Timeline) -> Attempt {
    match e {
        LineError::TooLong | LineError::Inner(StreamFault::LineTooLong) => {
            fail(Outcome::Malformed, StreamFault::LineTooLong.to_string())
        }
        LineError::Inner(StreamFault::Stalled(d)) => {
            fail(Outcome::Stall, format!("no data for {} ms mid-stream, after {} tokens", d.as_millis(), tl.deltas()))
        }
        LineError::Inner(f @ StreamFault::Transport(_)) => {
            fail(Outcome::ResetMidStream, format!("the stream broke after {} tokens: {f}", tl.deltas()))
        }
    }
}

/// Folds one object (a stream line, or the whole reply) into the timeline; `true` when it was
/// the last (`done: true`). An `error` member ends the request.
fn take(v: &Value, tl: &mut Timeline, calls: &mut ToolCalls, now: Instant, streamed: bool) -> Result<bool, Attempt> {
    if !v.is_object() {
        return Err(fail(
            Outcome::Malformed,
            format!("a reply line is not a JSON object: {}", bounded(&v.to_string(), 512)),
        ));
    }
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        let text = error_text(err);
        let outcome = if is_crash_text(&text) { Outcome::ServerReportedCrash } else { Outcome::StreamError };
        return Err(fail(outcome, bounded(&text, MAX_ERROR_BYTES)));
    }
    if let Some(m) = v.get("model").and_then(Value::as_str) {
        tl.server_model = Some(bounded(m, 256));
    }
    if let Some(msg) = v.get("message") {
        let text = |k: &str| msg.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        if let Some(t) = text("thinking") {
            if streamed { tl.delta(Delta::Reasoning, t, now) } else { tl.reasoning_seen = true }
        }
        if let Some(c) = text("content") {
            if streamed { tl.delta(Delta::Content, c, now) } else { tl.whole_reply(c) }
        }
        if let Some(list) = msg.get("tool_calls").and_then(Value::as_array).filter(|l| !l.is_empty()) {
            // Ollama sends whole calls, often without an index: number them in arrival order.
            let parts: Vec<ToolCallPart> = list
                .iter()
                .take(64)
                .enumerate()
                .map(|(i, c)| ToolCallPart {
                    index: Some((calls.count() + i) as u32),
                    function: c.get("function").map(|f| FunctionPart {
                        name: f.get("name").and_then(Value::as_str).map(|n| bounded(n, 256)),
                        arguments: f.get("arguments").cloned(),
                    }),
                })
                .collect();
            calls.add(&parts);
            if streamed {
                tl.delta(Delta::ToolCall, "", now);
            }
        }
    }
    if v.get("done").and_then(Value::as_bool) != Some(true) {
        return Ok(false);
    }
    tl.finish_reason = Some(v.get("done_reason").and_then(Value::as_str).map_or("stop".into(), |r| bounded(r, 64)));
    tl.done_marker = true;
    tl.server.read_ollama(v);
    if let Some(c) = v.get("eval_count").and_then(Value::as_u64) {
        let prompt = v.get("prompt_eval_count").and_then(Value::as_u64).map(|p| p.min(u32::MAX.into()) as u32);
        tl.usage(prompt, c.min(u32::MAX.into()) as u32);
    }
    let mut kept = Map::new();
    for key in [
        "done_reason",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ] {
        if let Some(x) = v.get(key).filter(|x| x.is_number() || x.is_string()) {
            kept.insert(
                key.to_string(),
                if x.is_string() { json!(bounded(x.as_str().unwrap_or(""), 64)) } else { x.clone() },
            );
        }
    }
    tl.server_timings = Some(json!({ "ollama": kept }));
    Ok(true)
}

/// The fields of an `/api/ps` entry soakd keeps.
fn ps_entry(m: &Value) -> Value {
    let mut out = Map::new();
    for key in ["name", "model", "digest", "expires_at"] {
        if let Some(s) = short_str(m, key) {
            out.insert(key.to_string(), json!(s));
        }
    }
    for key in ["size", "size_vram", "context_length"] {
        if let Some(n) = m.get(key).and_then(Value::as_u64) {
            out.insert(key.to_string(), json!(n));
        }
    }
    if let Some(d) = m.get("details") {
        let mut details = Map::new();
        for key in ["format", "family", "parameter_size", "quantization_level"] {
            if let Some(s) = short_str(d, key) {
                details.insert(key.to_string(), json!(s));
            }
        }
        out.insert("details".to_string(), Value::Object(details));
    }
    Value::Object(out)
}

impl Wire for Ollama {
    const STREAM_TYPE: &'static str = "application/x-ndjson";

    fn http(&self) -> &Http {
        &self.http
    }

    fn endpoint(&self) -> Url {
        self.endpoint.clone()
    }

    fn on_status(status: u16, text: &str) -> Attempt {
        http_failure(status, text)
    }

    async fn read_stream(&self, response: Response, t: &mut Try<'_, '_>, total: Instant) -> Result<(), Attempt> {
        let (tl, shutdown, calls) = (&mut *t.tl, t.shutdown, &mut t.calls);
        let stall = self.http.timeouts.stall;
        let mut lines = Lines::new(Box::pin(Guarded::new(response.bytes_stream(), stall)));
        loop {
            let line = match race(lines.next_line(), total, shutdown).await {
                Err(Stop::Deadline) => {
                    let ms = self.http.timeouts.total.as_millis();
                    return Err(fail(Outcome::Timeout, format!("still streaming after {ms} ms")));
                }
                Err(Stop::Aborted) => return Err(fail(Outcome::Cancelled, "soakd shut down mid-stream")),
                Ok(None) => {
                    return Err(fail(
                        Outcome::Truncated,
                        format!("the stream ended after {} tokens without a `done: true` line", tl.deltas()),
                    ));
                }
                Ok(Some(Err(e))) => return Err(line_error(e, tl)),
                Ok(Some(Ok(line))) => line,
            };
            let now = Instant::now();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let value: Value = serde_json::from_slice(&line).map_err(|e| {
                let text = String::from_utf8_lossy(&line);
                fail(Outcome::Malformed, format!("a stream line is not JSON ({e}): {}", bounded(&text, 512)))
            })?;
            if take(&value, tl, calls, now, true)? {
                tl.ended(now);
                let _ =
                    tokio::time::timeout(DRAIN_AFTER_DONE, async { while lines.next_line().await.is_some() {} }).await;
                return Ok(());
            }
        }
    }

    /// A non-streamed reply: one JSON object.
    async fn read_whole(&self, response: Response, t: &mut Try<'_, '_>, total: Instant) -> Result<(), Attempt> {
        let bytes = t.read_body(response, total).await?;
        let (tl, calls) = (&mut *t.tl, &mut t.calls);
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            let text = String::from_utf8_lossy(&bytes);
            fail(Outcome::Malformed, format!("the response is not JSON ({e}): {}", bounded(&text, 512)))
        })?;
        let now = Instant::now();
        if !take(&v, tl, calls, now, false)? {
            return Err(fail(Outcome::Truncated, "the reply has no `done: true`"));
        }
        tl.ended(now);
        Ok(())
    }
}

impl Backend for Ollama {
    fn chat<'a>(
        &'a self,
        request: ChatRequest<'a>,
        timeline: &'a mut Timeline,
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Exchange> {
        async move {
            let exchange = self.exchange(request, timeline, shutdown).await;
            if exchange.result.is_ok() {
                self.after_reply(timeline);
            }
            exchange
        }
        .boxed()
    }

    fn describe(&self) -> BoxFuture<'_, ServerInfo> {
        async move {
            let version = match self.http.side().fetch_json(self.http.url("/api/version")).await {
                Ok(v) => short_str(&v, "version"),
                Err(e) => {
                    tracing::debug!("Ollama: no version: {e}");
                    None
                }
            };
            let loaded = self.ps().await.ok().and_then(|list| list.into_iter().find(|m| self.is_ours(m)));
            let detail = match loaded {
                Some(m) => json!({"ps": m}),
                None => json!({"ps": null, "loaded": false}),
            };
            ServerInfo { version, model: self.model.clone(), detail }
        }
        .boxed()
    }

    fn observe(&self) -> BoxFuture<'_, Vec<Observation>> {
        async move {
            let models = match self.ps().await {
                Ok(models) => models,
                Err(e) => {
                    return vec![Observation {
                        source: "ps",
                        memory_bytes: None,
                        gpu_memory_bytes: None,
                        data: json!({"error": e}),
                    }];
                }
            };
            if self.model.is_some() {
                let ours = models.iter().any(|m| self.is_ours(m));
                let mut seen = self.seen();
                let model = self.model.clone().unwrap_or_default();
                if let Some(e) = seen.in_ps(&model, ours) {
                    seen.pending.push(e);
                }
            }
            if models.is_empty() {
                return vec![Observation {
                    source: "ps",
                    memory_bytes: None,
                    gpu_memory_bytes: None,
                    data: json!({"models": []}),
                }];
            }
            models
                .into_iter()
                .map(|m| Observation {
                    source: "ps",
                    memory_bytes: m.get("size").and_then(Value::as_u64),
                    gpu_memory_bytes: m.get("size_vram").and_then(Value::as_u64),
                    data: m,
                })
                .collect()
        }
        .boxed()
    }

    fn after_failure<'a>(&'a self, failure: &'a Failure) -> BoxFuture<'a, Vec<ServerEvent>> {
        async move {
            let Some(model) = self.model.clone() else { return Vec::new() };
            let present = match self.ps().await {
                Ok(models) => models.iter().any(|m| self.is_ours(m)),
                Err(e) => {
                    tracing::debug!("Ollama: cannot read /api/ps after a failure: {e}");
                    return Vec::new();
                }
            };
            let mut seen = self.seen();
            let mut events = std::mem::take(&mut seen.pending);
            if let Some(e) = seen.in_ps(&model, present) {
                events.push(e.after(failure));
            }
            events
        }
        .boxed()
    }

    fn noticed(&self) -> Vec<ServerEvent> {
        std::mem::take(&mut self.seen().pending)
    }
}

#[cfg(test)]
#[path = "ollama_tests.rs"]
mod tests;
