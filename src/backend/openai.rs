//! The OpenAI-compatible adapter: `POST {url}/v1/chat/completions`, streamed (SSE) or not.
//!
//! Streams are read through `eventsource-stream` (comment lines and keepalives, `[DONE]`,
//! close-delimited HTTP/1.0 bodies), under `guard::Guarded`'s stall and line limits. Extra
//! fields the server sends — llama.cpp `timings`, LM Studio `stats`, `usage` — are kept.
//!
//! Pooled connections and llama-server: after a streamed reply llama-server closes the
//! connection, and a client that pooled it may send the next request into the closing socket
//! ("connection closed before message completed") although the server is healthy. When the
//! first attempt fails that way before any response byte, the request is sent once more on a
//! new connection and `attempts = 2` is recorded; a server that is really gone then fails the
//! second attempt (`connect_refused`), so no failure is hidden. The backend's next requests then
//! open their own connections (`Http::found_closed`).

use super::chunk::{Body, ToolCalls, error_text};
use super::exchange::{Attempt, DRAIN_AFTER_DONE, Stop, Try, Wire, exchange, fail, race};
use super::guard::{Guarded, StreamFault};
use super::http::Http;
use super::{Backend, BackendError, ChatRequest, Exchange};
use crate::config::BackendConfig;
use crate::measure::outcome::{Outcome, is_crash_text};
use crate::measure::timeline::{Delta, Timeline};
use crate::schedule::Timeouts;
use crate::shutdown::Shutdown;
use crate::text::{MAX_ERROR_BYTES, bounded};
use crate::time::Instant;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, Stream, StreamExt};
use reqwest::{Response, Url};
use serde_json::{Value, json};
use std::pin::Pin;

pub struct OpenAi {
    http: Http,
    endpoint: Url,
    model: Option<String>,
}

impl OpenAi {
    /// The adapter for `POST {url}/v1/chat/completions`.
    pub fn new(config: &BackendConfig, timeouts: &Timeouts) -> Result<Self, BackendError> {
        Self::with_path(config, timeouts, "/v1/chat/completions")
    }

    /// The same adapter for another OpenAI-shaped endpoint under the base URL (LM Studio's
    /// `/api/v0/chat/completions`).
    pub fn with_path(config: &BackendConfig, timeouts: &Timeouts, path: &str) -> Result<Self, BackendError> {
        let http = Http::new(config, timeouts)?;
        Ok(OpenAi { endpoint: http.url(path), http, model: config.model.clone() })
    }

    /// The shared HTTP side (clients, token, side endpoints).
    pub(crate) fn http(&self) -> &Http {
        &self.http
    }

    /// The JSON body for one request.
    pub fn body(&self, req: ChatRequest<'_>) -> Value {
        let w = req.workload;
        let mut messages = Vec::new();
        if let Some(system) = &w.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": req.prompt.text}));
        let mut body = json!({"messages": messages, "max_tokens": w.max_tokens, "stream": w.stream});
        if let Some(model) = &self.model {
            body["model"] = json!(model);
        }
        if w.stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        if let Some(t) = w.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(p) = w.top_p {
            body["top_p"] = json!(p);
        }
        if let Some(tools) = &w.tools {
            body["tools"] = tools.clone();
        }
        body
    }

    async fn exchange(&self, req: ChatRequest<'_>, tl: &mut Timeline, shutdown: &Shutdown) -> Exchange {
        exchange(self, &self.body(req), req, tl, shutdown).await
    }
}

impl Wire for OpenAi {
    const STREAM_TYPE: &'static str = "text/event-stream";

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
        let mut events = std::pin::pin!(Guarded::new(response.bytes_stream(), self.http.timeouts.stall).eventsource());
        // One deadline and one abort watch for the whole stream, not a pair per event.
        let read = match race(read_events(events.as_mut(), tl, calls), total, shutdown).await {
            Err(Stop::Deadline) => {
                let ms = self.http.timeouts.total.as_millis();
                return Err(fail(Outcome::Timeout, format!("still streaming after {ms} ms")));
            }
            Err(Stop::Aborted) => return Err(fail(Outcome::Cancelled, "soakd shut down mid-stream")),
            Ok(read) => read?,
        };
        if read == Read::DoneMarker {
            // Read on to the end of the body, as clients do, so the connection can be reused.
            let _ = tokio::time::timeout(DRAIN_AFTER_DONE, async { while events.next().await.is_some() {} }).await;
        }
        Ok(())
    }

    /// A non-streamed reply (or a server that answered a streamed request with plain JSON).
    async fn read_whole(&self, response: Response, t: &mut Try<'_, '_>, total: Instant) -> Result<(), Attempt> {
        let bytes = t.read_body(response, total).await?;
        let (tl, calls) = (&mut *t.tl, &mut t.calls);
        let body: Body = serde_json::from_slice(&bytes).map_err(|e| {
            fail(
                Outcome::Malformed,
                format!("the response is not JSON ({e}): {}", bounded(&String::from_utf8_lossy(&bytes), 512)),
            )
        })?;
        if let Some(err) = &body.error {
            return Err(error_member(err));
        }
        keep_server_fields(&body, tl);
        let Some(choice) = body.choices.first() else {
            return Err(fail(Outcome::Malformed, "the response has no choices"));
        };
        if let Some(m) = &choice.message {
            if m.reasoning().is_some() {
                tl.reasoning_seen = true;
            }
            if let Some(c) = m.content() {
                tl.whole_reply(c);
            }
            if let Some(parts) = &m.tool_calls {
                calls.add(parts);
            }
        }
        tl.finish_reason = choice.finish_reason.as_deref().map(str::to_string);
        Ok(())
    }
}

impl Backend for OpenAi {
    fn chat<'a>(
        &'a self,
        request: ChatRequest<'a>,
        timeline: &'a mut Timeline,
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Exchange> {
        self.exchange(request, timeline, shutdown).boxed()
    }
}

/// Folds one streamed chunk into the timeline; an error object in it ends the request.
fn take_chunk(chunk: Body, tl: &mut Timeline, calls: &mut ToolCalls, now: Instant) -> Result<(), Attempt> {
    if let Some(err) = &chunk.error {
        return Err(error_member(err));
    }
    keep_server_fields(&chunk, tl);
    for choice in &chunk.choices {
        if let Some(delta) = &choice.delta {
            if let Some(r) = delta.reasoning() {
                tl.delta(Delta::Reasoning, r, now);
            }
            if let Some(c) = delta.content() {
                tl.delta(Delta::Content, c, now);
            }
            if let Some(parts) = delta.tool_calls.as_deref().filter(|p| !p.is_empty()) {
                calls.add(parts);
                tl.delta(Delta::ToolCall, "", now);
            }
        }
        if let Some(reason) = &choice.finish_reason {
            tl.finish_reason = Some(reason.to_string());
        }
    }
    Ok(())
}

/// An error status: its body as the error, a crash when its words say so.
fn http_failure(status: u16, text: &str) -> Attempt {
    let outcome = if is_crash_text(text) { Outcome::ServerReportedCrash } else { Outcome::HttpError };
    fail(outcome, bounded(&format!("HTTP {status}: {}", text.trim()), MAX_ERROR_BYTES))
}

/// An `error` member in a 200 reply: a crash when its words say so.
fn error_member(err: &Value) -> Attempt {
    let text = error_text(err);
    let outcome = if is_crash_text(&text) { Outcome::ServerReportedCrash } else { Outcome::StreamError };
    fail(outcome, bounded(&text, MAX_ERROR_BYTES))
}

fn keep_server_fields(body: &Body, tl: &mut Timeline) {
    if let Some(u) = &body.usage
        && let Some(c) = u.completion_tokens
    {
        tl.usage(u.prompt_tokens, c);
    }
    // Every chunk names the model: kept once, unless it changes.
    if let Some(m) = body.model.as_deref()
        && tl.server_model.as_deref() != Some(m)
    {
        tl.server_model = Some(bounded(m, 256));
    }
    let mut server = serde_json::Map::new();
    if let Some(t) = body.timings.as_ref().filter(|v| v.is_object()) {
        tl.server.read_llamacpp(t);
    }
    if let Some(s) = body.stats.as_ref().filter(|v| v.is_object()) {
        tl.server.read_lmstudio(s);
    }
    let fields = [
        ("timings", &body.timings),
        ("stats", &body.stats),
        ("model_info", &body.model_info),
        ("runtime", &body.runtime),
    ];
    for (key, value) in fields {
        if let Some(v) = value.as_ref().filter(|v| v.is_object()) {
            server.insert(key.to_string(), v.clone());
        }
    }
    if !server.is_empty() {
        // Later chunks add to what earlier ones said.
        match &mut tl.server_timings {
            Some(Value::Object(kept)) => kept.extend(server),
            _ => tl.server_timings = Some(Value::Object(server)),
        }
    }
}

/// How a stream that ended well ended.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// At `data: [DONE]`: the rest of the body is still to be read.
    DoneMarker,
    /// At the body's end, after a finish reason (or a `[DONE]` seen earlier).
    BodyEnd,
}

/// Reads SSE events into the timeline until `[DONE]` or the body's end.
async fn read_events<S>(mut events: Pin<&mut S>, tl: &mut Timeline, calls: &mut ToolCalls) -> Result<Read, Attempt>
where
    S: Stream<Item = Result<Event, EventStreamError<StreamFault>>>,
{
    loop {
        let event = match events.next().await {
            None if tl.finish_reason.is_some() || tl.done_marker => {
                tl.ended(Instant::now());
                return Ok(Read::BodyEnd);
            }
            None => {
                return Err(fail(
                    Outcome::Truncated,
                    format!("the stream ended after {} tokens without a finish reason or [DONE]", tl.deltas()),
                ));
            }
            Some(Err(e)) => return Err(stream_error(e, tl)),
            Some(Ok(event)) => event,
        };
        let now = Instant::now();
        let data = event.data.trim();
        if data == "[DONE]" {
            tl.done_marker = true;
            tl.ended(now);
            return Ok(Read::DoneMarker);
        }
        if data.is_empty() {
            continue;
        }
        let chunk: Body = serde_json::from_str(data).map_err(|e| {
            fail(Outcome::Malformed, format!("a stream event is not JSON ({e}): {}", bounded(data, 512)))
        })?;
        take_chunk(chunk, tl, calls, now)?;
    }
}

fn stream_error(e: EventStreamError<StreamFault>, tl: &Timeline) -> Attempt {
    match e {
        EventStreamError::Transport(StreamFault::Stalled(d)) => {
            fail(Outcome::Stall, format!("no data for {} ms mid-stream, after {} tokens", d.as_millis(), tl.deltas()))
        }
        EventStreamError::Transport(f @ StreamFault::LineTooLong) => fail(Outcome::Malformed, f.to_string()),
        EventStreamError::Transport(f @ StreamFault::Transport(_)) => {
            fail(Outcome::ResetMidStream, format!("the stream broke after {} tokens: {f}", tl.deltas()))
        }
        EventStreamError::Utf8(e) => fail(Outcome::Malformed, format!("the stream is not UTF-8: {e}")),
        EventStreamError::Parser(e) => {
            fail(Outcome::Malformed, bounded(&format!("the stream is not valid SSE: {e}"), 512))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(json: &str) -> Body<'_> {
        serde_json::from_str(json).expect("test JSON")
    }

    fn outcome_of(json: &str) -> Option<Outcome> {
        let mut tl = Timeline::new(Instant::now());
        let mut calls = ToolCalls::default();
        match take_chunk(chunk(json), &mut tl, &mut calls, Instant::now()) {
            Ok(()) => None,
            Err(a) => Some(a.into_failure().outcome),
        }
    }

    #[test]
    fn error_events_in_a_stream_are_classified_by_their_words() {
        assert_eq!(outcome_of(r#"{"error": {"message": "tool parser failed"}}"#), Some(Outcome::StreamError));
        assert_eq!(
            outcome_of(r#"{"error": {"message": "The model has crashed without additional information."}}"#),
            Some(Outcome::ServerReportedCrash)
        );
        assert_eq!(outcome_of(r#"{"choices": [{"delta": {"content": "hi"}}]}"#), None);
    }

    #[test]
    fn a_chunk_feeds_the_timeline() {
        let mut tl = Timeline::new(Instant::now());
        let mut calls = ToolCalls::default();
        let now = Instant::now();
        let c = chunk(r#"{"model": "m", "choices": [{"delta": {"role": "assistant", "content": ""}}]}"#);
        take_chunk(c, &mut tl, &mut calls, now).unwrap();
        assert_eq!(tl.deltas(), 0, "a role-only chunk is not a token");
        let c = chunk(
            r#"{"choices": [{"delta": {"content": "a"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 2, "completion_tokens": 1}, "timings": {"predicted_per_second": 9.5}}"#,
        );
        take_chunk(c, &mut tl, &mut calls, now).unwrap();
        assert_eq!(tl.deltas(), 1);
        assert_eq!(tl.finish_reason.as_deref(), Some("stop"));
        assert_eq!(tl.server_model.as_deref(), Some("m"));
        assert_eq!(tl.server_timings.as_ref().unwrap()["timings"]["predicted_per_second"], 9.5);
        assert_eq!(tl.finish(now).completion_tokens, Some(1));
    }
}
