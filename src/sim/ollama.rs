//! `--flavour ollama`: Ollama's API as its docs show it. `POST /api/chat`
//! (`stream` defaults to true: NDJSON, one object per line, `application/x-ndjson`; else one
//! JSON object), whose last object (`done: true`) has `done_reason`, `total_duration`,
//! `load_duration`, `prompt_eval_count`, `prompt_eval_duration`, `eval_count`, `eval_duration`
//! in nanoseconds, measured from the times the tokens really went out; `GET /api/ps` (the
//! loaded model: `size` = a nominal 512 MiB plus the ballast, all of it `size_vram`,
//! `expires_at` 5 minutes on), `/api/version`, `/api/tags`; errors as `{"error": "..."}`.
//!
//! The model starts unloaded: the first request loads it (`--load-ms`, default 1500) and its
//! `load_duration` says so; later ones report 1 ms. With `--crash-style ollama` a crash answers
//! "llama runner process has terminated…" (HTTP 500, or an `error` line mid-stream), the model
//! leaves `/api/ps`, and the next request loads it again.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use super::behaviour::CrashEffect;
use super::conn::ConnHandle;
use super::conn::abort;
use super::plan::{CutKind, Piece, Script, TOOL_ARGUMENT_PIECES};
use super::request::{self, ChatRequest};
use super::shapes;
use super::state::{InFlight, SimState, stopped};

/// What a loaded model reports besides the ballast.
const MODEL_BYTES: u64 = 512 * 1024 * 1024;
/// `load_duration` when the model was already loaded.
const WARM_LOAD: Duration = Duration::from_millis(1);
/// The invalid line the `malformed` fault streams.
const MALFORMED_LINE: &str = "{\"message\": {\"content\": \n";

type Shared = State<Arc<SimState>>;
type Conn = ConnectInfo<ConnHandle>;

/// Parses an `/api/chat` body: a known `model` is required.
pub(crate) fn parse(body: &[u8], ours: &str) -> Result<ChatRequest, (StatusCode, String)> {
    let (chat, model) = request::parse_ollama(body).map_err(|m| (StatusCode::BAD_REQUEST, m))?;
    if model != ours && model.strip_suffix(":latest") != Some(ours) {
        return Err((StatusCode::NOT_FOUND, format!("model \"{model}\" not found, try pulling it first")));
    }
    Ok(chat)
}

/// `GET /api/version`.
pub(crate) async fn version(State(state): Shared, ConnectInfo(conn): Conn) -> Response {
    if state.is_dead() {
        return abort(&conn);
    }
    Json(json!({"version": concat!(env!("CARGO_PKG_VERSION"), "-soakd-sim")})).into_response()
}

fn details() -> Value {
    json!({"parent_model": "", "format": "gguf", "family": "qwen3", "families": ["qwen3"],
        "parameter_size": "0.6B", "quantization_level": "Q4_K_M"})
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// `GET /api/ps`: the model while it is loaded.
pub(crate) async fn ps(State(state): Shared, ConnectInfo(conn): Conn) -> Response {
    if state.is_dead() {
        return abort(&conn);
    }
    if !state.model_loaded() {
        return Json(json!({"models": []})).into_response();
    }
    let size = MODEL_BYTES + state.ballast.bytes() as u64;
    let expires = chrono::Utc::now() + chrono::Duration::minutes(5);
    Json(json!({"models": [{
        "name": state.opts.model, "model": state.opts.model, "size": size, "digest": "0".repeat(64),
        "details": details(), "expires_at": rfc3339(expires), "size_vram": size, "context_length": 4096,
    }]}))
    .into_response()
}

/// `GET /api/tags`: the models on disk.
pub(crate) async fn tags(State(state): Shared, ConnectInfo(conn): Conn) -> Response {
    if state.is_dead() {
        return abort(&conn);
    }
    Json(json!({"models": [{
        "name": state.opts.model, "model": state.opts.model, "modified_at": rfc3339(chrono::Utc::now()),
        "size": MODEL_BYTES, "digest": "0".repeat(64), "details": details(),
    }]}))
    .into_response()
}

/// A reply to play.
pub(crate) struct Reply {
    pub(crate) state: Arc<SimState>,
    pub(crate) script: Script,
    pub(crate) model: String,
    pub(crate) prompt_tokens: u64,
    /// When the request arrived; `start` is after the model load, if any.
    pub(crate) arrived: Instant,
    pub(crate) start: Instant,
    pub(crate) load: Option<Duration>,
    pub(crate) conn: ConnHandle,
    /// Held, not read: dropped when the reply ends or the client goes away.
    pub(crate) _in_flight: InFlight,
}

impl Reply {
    fn line(&self, message: Value) -> Value {
        json!({"model": self.model, "created_at": rfc3339(chrono::Utc::now()), "message": message, "done": false})
    }

    /// The last object: `done`, the reason, the counts and the nanosecond durations. `first`
    /// and `generation`: when the first piece went out and how long the rest took.
    fn done(&self, message: Value, first: Option<Instant>, generation: Duration) -> Value {
        let n = self.script.pieces.len() as u64;
        let ns = |d: Duration| d.as_nanos().min(u128::from(u64::MAX)) as u64;
        let prompt_eval = first.map_or(self.script.time_until(0), |f| f.saturating_duration_since(self.start));
        // n tokens at the pace of the n − 1 gaps between them.
        let eval = match n {
            0 => Duration::ZERO,
            1 => self.state.opts.speed.token_interval,
            _ => generation.mul_f64(n as f64 / (n - 1) as f64),
        };
        let reason = if self.script.finish_reason == "length" { "length" } else { "stop" };
        let mut v = self.line(message);
        v["done"] = json!(true);
        v["done_reason"] = json!(reason);
        v["total_duration"] = json!(ns(self.arrived.elapsed()));
        v["load_duration"] = json!(ns(self.load.unwrap_or(WARM_LOAD)));
        v["prompt_eval_count"] = json!(self.prompt_tokens);
        v["prompt_eval_duration"] = json!(ns(prompt_eval));
        v["eval_count"] = json!(n);
        v["eval_duration"] = json!(ns(eval));
        v
    }
}

/// The message of one piece; `None` for the tool call's argument pieces (the whole call goes
/// out with its first piece, as Ollama sends it).
fn message(piece: &Piece) -> Option<Value> {
    match piece {
        Piece::Reasoning(w) => Some(json!({"role": "assistant", "content": "", "thinking": w})),
        Piece::Content(w) => Some(json!({"role": "assistant", "content": w})),
        Piece::ToolStart { name, .. } => Some(json!({"role": "assistant", "content": "", "tool_calls": [{
            "function": {"name": name, "arguments": tool_arguments()},
        }]})),
        Piece::ToolArguments(_) => None,
    }
}

fn tool_arguments() -> Value {
    serde_json::from_str(&TOOL_ARGUMENT_PIECES.concat()).unwrap_or(Value::Null)
}

/// A crash's answer in Ollama's shape; `None`: the connection dies.
fn crash_error(effect: CrashEffect) -> Option<Value> {
    match effect {
        CrashEffect::LmStudioError => Some(json!({"error": shapes::LMSTUDIO_CRASH})),
        CrashEffect::OllamaError => Some(json!({"error": shapes::OLLAMA_CRASH})),
        CrashEffect::Dead | CrashEffect::ExitProcess => None,
    }
}

/// A non-streamed reply: wait out the generation, then one JSON object.
pub(crate) async fn whole(reply: Reply) -> Response {
    let script = &reply.script;
    let all = script.pieces.len();
    let (wait_for, extra) = match script.cut {
        Some(cut) => match cut.kind {
            CutKind::Stall(pause) => (all, pause),
            CutKind::Malformed => (all, Duration::ZERO),
            _ => (cut.at, Duration::ZERO),
        },
        None => (all, Duration::ZERO),
    };
    let deadline = reply.start + script.time_until(wait_for) + extra;
    tokio::select! {
        _ = tokio::time::sleep_until(deadline) => {}
        _ = stopped(reply.state.stop_signal()) => return abort(&reply.conn),
    }
    let pieces = match script.cut.map(|c| (c.at, c.kind)) {
        Some((_, CutKind::Crash(reason))) => {
            return match crash_error(reply.state.crash(reason)) {
                Some(body) => (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response(),
                None => abort(&reply.conn),
            };
        }
        Some((_, CutKind::Reset)) => return abort(&reply.conn),
        Some((_, CutKind::Malformed)) => {
            return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], shapes::MALFORMED_BODY)
                .into_response();
        }
        Some((at, CutKind::Truncate)) => &script.pieces[..at.min(all)],
        Some((_, CutKind::Stall(_))) | None => &script.pieces[..],
    };
    let mut content = String::new();
    let mut thinking = String::new();
    let mut msg = json!({"role": "assistant"});
    for piece in pieces {
        match piece {
            Piece::Reasoning(w) => thinking.push_str(w),
            Piece::Content(w) => content.push_str(w),
            Piece::ToolStart { .. } => msg = message(piece).unwrap_or(msg),
            Piece::ToolArguments(_) => {}
        }
    }
    msg["content"] = json!(content);
    if !thinking.is_empty() {
        msg["thinking"] = json!(thinking);
    }
    let body = if pieces.len() < all {
        reply.line(msg) // truncated: no `done: true`
    } else {
        let (ttft, generation) = script.token_times();
        reply.done(msg, Some(reply.start + ttft), generation)
    };
    Json(body).into_response()
}

/// A streamed reply: one NDJSON line per piece, then the `done` line.
pub(crate) fn stream(reply: Reply) -> Response {
    let player = Player {
        stop: reply.state.stop_signal(),
        reply,
        i: 0,
        cut_done: false,
        shift: Duration::ZERO,
        first_at: None,
        last_at: None,
        ended: false,
    };
    let lines = futures_util::stream::unfold(player, |mut p| async move {
        let line = p.next().await?;
        Some((line, p))
    });
    let mut response = (StatusCode::OK, Body::from_stream(lines)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    response
}

struct Player {
    reply: Reply,
    /// The next piece.
    i: usize,
    cut_done: bool,
    shift: Duration,
    stop: watch::Receiver<bool>,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    ended: bool,
}

fn aborted(why: &str) -> Result<Bytes, io::Error> {
    Err(io::Error::new(io::ErrorKind::ConnectionAborted, why.to_string()))
}

fn ndjson(v: &Value) -> Bytes {
    Bytes::from(format!("{v}\n"))
}

impl Player {
    async fn next(&mut self) -> Option<Result<Bytes, io::Error>> {
        while !self.ended {
            let i = self.i;
            let n = self.reply.script.pieces.len();
            if let Some(cut) = self.reply.script.cut.filter(|c| c.at == i && !self.cut_done) {
                self.cut_done = true;
                if !self.wait_until(i).await {
                    return Some(self.stopped());
                }
                match cut.kind {
                    CutKind::Crash(reason) => {
                        // Let hyper flush what went before.
                        tokio::task::yield_now().await;
                        self.ended = true;
                        return Some(match crash_error(self.reply.state.crash(reason)) {
                            Some(body) => Ok(ndjson(&body)),
                            None => aborted("soakd sim: simulated crash"),
                        });
                    }
                    CutKind::Reset => {
                        tokio::task::yield_now().await;
                        self.ended = true;
                        return Some(aborted("soakd sim: reset fault"));
                    }
                    CutKind::Truncate => return None,
                    CutKind::Stall(pause) => {
                        self.shift += pause;
                        continue;
                    }
                    CutKind::Malformed => return Some(Ok(Bytes::from_static(MALFORMED_LINE.as_bytes()))),
                }
            }
            if !self.wait_until(i.min(n)).await {
                return Some(self.stopped());
            }
            if i >= n {
                self.ended = true;
                let generation = match (self.first_at, self.last_at) {
                    (Some(f), Some(l)) => l.saturating_duration_since(f),
                    _ => Duration::ZERO,
                };
                let done = self.reply.done(json!({"role": "assistant", "content": ""}), self.first_at, generation);
                return Some(Ok(ndjson(&done)));
            }
            self.i += 1;
            let now = Instant::now();
            self.first_at.get_or_insert(now);
            self.last_at = Some(now);
            if let Some(msg) = message(&self.reply.script.pieces[i]) {
                return Some(Ok(ndjson(&self.reply.line(msg))));
            }
        }
        None
    }

    async fn wait_until(&mut self, k: usize) -> bool {
        // After the first piece, paced from when it really went out: a late first timer must not
        // make the rest catch up (a sim is never faster than its pace).
        let script = &self.reply.script;
        let deadline = match self.first_at {
            Some(first) if k > 0 => first + script.time_until(k).saturating_sub(script.time_until(0)) + self.shift,
            _ => self.reply.start + script.time_until(k) + self.shift,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => !*self.stop.borrow(),
            _ = stopped(self.stop.clone()) => false,
        }
    }

    fn stopped(&mut self) -> Result<Bytes, io::Error> {
        self.ended = true;
        aborted("soakd sim: server stopped")
    }
}

#[cfg(test)]
#[path = "ollama_tests.rs"]
mod tests;
