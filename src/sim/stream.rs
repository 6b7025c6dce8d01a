//! Streamed replies: plays a [`Script`] back as a `text/event-stream` body, one SSE event per
//! token, each yielded (and so flushed by hyper) as its own chunk when its time comes. Starts
//! with a `: keepalive` comment like mlx_lm.server; ends with the finish chunk, the optional
//! usage chunk and `data: [DONE]`, unless a cut (crash, reset, truncate, stall, malformed)
//! changes the ending.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use super::behaviour::CrashEffect;
use super::lmstudio;
use super::plan::{CutKind, Script};
use super::shapes::{self, Header};
use super::state::{InFlight, SimState, stopped};

/// A streamed reply in progress.
pub(crate) struct Reply {
    pub(crate) state: Arc<SimState>,
    pub(crate) script: Script,
    pub(crate) header: Header,
    pub(crate) prompt_tokens: u64,
    pub(crate) include_usage: bool,
    /// When the request was accepted; every deadline is relative to it.
    pub(crate) start: Instant,
    /// LM Studio's `/api/v0`: the last chunk carries `stats`, `model_info` and `runtime`.
    pub(crate) lmstudio_stats: bool,
    /// Held, not read: dropped when the stream ends or the client goes away.
    pub(crate) _in_flight: InFlight,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Keepalive,
    /// Next: piece `i` (or the cut at `i`, or the finish when `i == pieces.len()`).
    Piece(usize),
    Finish,
    Usage,
    Done,
    Ended,
}

/// What one step of the stream produced.
type Event = Result<Bytes, io::Error>;

/// The outcome of one step at a position.
enum Step {
    /// Send this (an error aborts the connection).
    Emit(Event),
    /// End the body cleanly here.
    End,
    /// Nothing to send yet; the phase has moved on.
    Continue,
}

/// State of the stream between events.
struct Player {
    reply: Reply,
    phase: Phase,
    cut_done: bool,
    /// Extra delay added by a stall to every later deadline.
    shift: Duration,
    stop: watch::Receiver<bool>,
    /// When the first and the last piece went out (for LM Studio's `stats`).
    first_at: Option<Instant>,
    last_at: Option<Instant>,
}

/// The HTTP response for a streamed reply.
pub(crate) fn response(reply: Reply) -> Response {
    let player = Player {
        stop: reply.state.stop_signal(),
        reply,
        phase: Phase::Keepalive,
        cut_done: false,
        shift: Duration::ZERO,
        first_at: None,
        last_at: None,
    };
    let events = futures_util::stream::unfold(player, |mut player| async move {
        let event = player.next().await?;
        Some((event, player))
    });
    let mut response = (StatusCode::OK, Body::from_stream(events)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn aborted(why: &str) -> Event {
    Err(io::Error::new(io::ErrorKind::ConnectionAborted, why.to_string()))
}

impl Player {
    /// Produce the next event; `None` ends the body cleanly, an error aborts the connection.
    async fn next(&mut self) -> Option<Event> {
        loop {
            match self.phase {
                Phase::Keepalive => {
                    self.phase = Phase::Piece(0);
                    return Some(Ok(Bytes::from_static(b": keepalive\n\n")));
                }
                Phase::Piece(i) => match self.step(i).await {
                    Step::Emit(event) => return Some(event),
                    Step::End => return None,
                    Step::Continue => {}
                },
                Phase::Finish => {
                    self.phase = if self.reply.include_usage { Phase::Usage } else { Phase::Done };
                    let finish = self.reply.script.finish_reason;
                    let mut chunk = shapes::chunk(&self.reply.header, json!({}), Some(finish));
                    if !self.reply.include_usage {
                        self.add_stats(&mut chunk);
                    }
                    return Some(Ok(self.event(&chunk)));
                }
                Phase::Usage => {
                    self.phase = Phase::Done;
                    let completion = self.reply.script.pieces.len() as u64;
                    let mut usage = shapes::usage_chunk(&self.reply.header, self.reply.prompt_tokens, completion);
                    self.add_stats(&mut usage);
                    return Some(Ok(self.event(&usage)));
                }
                Phase::Done => {
                    self.phase = Phase::Ended;
                    return Some(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
                }
                Phase::Ended => return None,
            }
        }
    }

    /// Handle position `i`: a cut, a piece, or the move to the finish.
    async fn step(&mut self, i: usize) -> Step {
        if let Some(cut) = self.reply.script.cut.filter(|c| c.at == i && !self.cut_done) {
            self.cut_done = true;
            return self.cut(i, cut.kind).await;
        }
        let pieces = &self.reply.script.pieces;
        let len = pieces.len();
        let event = match pieces.get(i) {
            Some(piece) => shapes::chunk(&self.reply.header, shapes::delta(piece, i == 0), None),
            // An empty reply still says who is talking before it finishes.
            None if pieces.is_empty() => shapes::chunk(&self.reply.header, json!({ "role": "assistant" }), None),
            None => {
                // After the last token; a stall placed here still delays the finish.
                if !self.wait_until(i).await {
                    return self.stopped();
                }
                self.phase = Phase::Finish;
                return Step::Continue;
            }
        };
        if !self.wait_until(i).await {
            return self.stopped();
        }
        self.phase = if i >= len { Phase::Finish } else { Phase::Piece(i + 1) };
        if i < len {
            let now = Instant::now();
            self.first_at.get_or_insert(now);
            self.last_at = Some(now);
        }
        Step::Emit(Ok(self.event(&event)))
    }

    /// Apply the script's cut at position `i`.
    async fn cut(&mut self, i: usize, kind: CutKind) -> Step {
        if !self.wait_until(i).await {
            return self.stopped();
        }
        if matches!(kind, CutKind::Crash(_) | CutKind::Reset) {
            // Return Pending once so hyper flushes the tokens already produced: when the
            // stream runs late the deadline has passed and nothing else would pause it.
            tokio::task::yield_now().await;
        }
        match kind {
            CutKind::Crash(reason) => {
                self.phase = Phase::Ended;
                match self.reply.state.crash(reason) {
                    CrashEffect::LmStudioError => Step::Emit(Ok(self.event(&shapes::lmstudio_crash_event()))),
                    CrashEffect::OllamaError => Step::Emit(Ok(self.event(&shapes::ollama_crash_event()))),
                    CrashEffect::Dead | CrashEffect::ExitProcess => Step::Emit(aborted("soakd sim: simulated crash")),
                }
            }
            CutKind::Reset => {
                self.phase = Phase::Ended;
                Step::Emit(aborted("soakd sim: reset fault"))
            }
            CutKind::Truncate => {
                self.phase = Phase::Ended;
                Step::End
            }
            CutKind::Stall(pause) => {
                self.shift += pause;
                Step::Continue
            }
            CutKind::Malformed => Step::Emit(Ok(Bytes::from_static(shapes::MALFORMED_LINE.as_bytes()))),
        }
    }

    /// Sleep until position `k` is due; `false` when the server stopped or died meanwhile.
    async fn wait_until(&mut self, k: usize) -> bool {
        let deadline = self.reply.start + self.reply.script.time_until(k) + self.shift;
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => !*self.stop.borrow(),
            _ = stopped(self.stop.clone()) => false,
        }
    }

    fn stopped(&mut self) -> Step {
        self.phase = Phase::Ended;
        Step::Emit(aborted("soakd sim: server stopped"))
    }

    /// LM Studio's `/api/v0` extras on the last chunk, from the times the pieces went out.
    fn add_stats(&self, chunk: &mut serde_json::Value) {
        if !self.reply.lmstudio_stats {
            return;
        }
        let r = &self.reply;
        let ttft = self.first_at.map_or(Duration::ZERO, |f| f.saturating_duration_since(r.start));
        let generation = match (self.first_at, self.last_at) {
            (Some(f), Some(l)) => l.saturating_duration_since(f),
            _ => Duration::ZERO,
        };
        let n = r.script.pieces.len();
        lmstudio::add_extras(chunk, n, ttft, generation, r.script.finish_reason);
    }

    fn event(&self, value: &serde_json::Value) -> Bytes {
        Bytes::from(shapes::sse(value))
    }
}
