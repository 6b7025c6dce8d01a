//! HTTP handlers: `/health`, `/v1/models`, `/sim/stats`, and the chat request of every API
//! (`serve_chat`: `/v1/chat/completions`, LM Studio's `/api/v0/chat/completions`, Ollama's
//! `/api/chat`), which reads a bounded body, validates it, admits the request, grows the
//! ballast, decides its fate and hands the script to `stream.rs` / `complete.rs` (OpenAI
//! shapes) or `ollama.rs`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::time::Instant;

use super::behaviour::{self, Decision};
use super::complete;
use super::conn::ConnHandle;
use super::conn::abort;
use super::ollama;
use super::options::FaultKind;
use super::plan::{self, Opening};
use super::request;
use super::shapes::{self, Header};
use super::state::{Admitted, SimState, stopped, unix_now};
use super::stream;

type Shared = State<Arc<SimState>>;
type Conn = ConnectInfo<ConnHandle>;

pub(crate) async fn health(State(state): Shared, ConnectInfo(conn): Conn) -> Response {
    if state.is_dead() {
        return abort(&conn);
    }
    Json(shapes::health()).into_response()
}

pub(crate) async fn models(State(state): Shared, ConnectInfo(conn): Conn) -> Response {
    if state.is_dead() {
        return abort(&conn);
    }
    Json(shapes::models(&state.opts.model, state.started)).into_response()
}

/// Answers even after an in-process crash, so tests can see `crashed: true`.
pub(crate) async fn stats(State(state): Shared) -> Response {
    Json(shapes::stats(&state.stats())).into_response()
}

pub(crate) async fn not_found(State(state): Shared, ConnectInfo(conn): Conn, req: Request) -> Response {
    if state.is_dead() {
        return abort(&conn);
    }
    let message = format!(
        "no route for {} {}; soakd sim serves GET /health, GET /v1/models, POST /v1/chat/completions and GET /sim/stats{}",
        req.method(),
        req.uri().path(),
        match state.opts.flavour {
            super::Flavour::Openai => "",
            super::Flavour::Lmstudio =>
                ", and (--flavour lmstudio) GET /api/v0/models, GET /api/v0/models/{id}, POST /api/v0/chat/completions",
            super::Flavour::Ollama => ", and (--flavour ollama) POST /api/chat, GET /api/ps, /api/version, /api/tags",
            super::Flavour::Vllm => ", and (--flavour vllm) GET /version, GET /metrics",
        }
    );
    (StatusCode::NOT_FOUND, Json(shapes::invalid_request(&message))).into_response()
}

/// Which chat API a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// `/v1/chat/completions`.
    OpenAi,
    /// LM Studio's `/api/v0/chat/completions`: OpenAI-shaped plus `stats`, `model_info`, `runtime`.
    LmStudio,
    /// Ollama's `/api/chat`.
    Ollama,
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(State(state): Shared, ConnectInfo(conn): Conn, req: Request) -> Response {
    serve_chat(state, conn, req, Api::OpenAi).await
}

/// `POST /api/v0/chat/completions` (LM Studio).
pub(crate) async fn lmstudio_chat(State(state): Shared, ConnectInfo(conn): Conn, req: Request) -> Response {
    serve_chat(state, conn, req, Api::LmStudio).await
}

/// `POST /api/chat` (Ollama).
pub(crate) async fn ollama_chat(State(state): Shared, ConnectInfo(conn): Conn, req: Request) -> Response {
    serve_chat(state, conn, req, Api::Ollama).await
}

/// A chat request on any API: read, validate, admit (loading the model first when it is not
/// loaded), grow the ballast, decide its fate, and play the script in the API's shape.
async fn serve_chat(state: Arc<SimState>, conn: ConnHandle, req: Request, api: Api) -> Response {
    if state.is_dead() {
        return abort(&conn);
    }
    let arrived = Instant::now();
    let limit = state.opts.max_body_bytes;
    let body = match read_body(req, limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let message = format!(
                "request body is larger than {} KiB; send a smaller prompt or start soakd sim with a larger --max-body-kb",
                limit / 1024
            );
            return error(api, StatusCode::PAYLOAD_TOO_LARGE, &message);
        }
        Err(BodyError::Read(err)) => {
            let message = format!("could not read the request body: {err}");
            return error(api, StatusCode::BAD_REQUEST, &message);
        }
    };
    let parsed = match api {
        Api::Ollama => ollama::parse(&body, &state.opts.model),
        Api::OpenAi | Api::LmStudio => request::parse(&body).map_err(|m| (StatusCode::BAD_REQUEST, m)),
    };
    let chat = match parsed {
        Ok(chat) => chat,
        Err((status, message)) => return error(api, status, &message),
    };
    let (facts, in_flight, load) = match state.admit(chat.prompt_tokens) {
        Admitted::Serve(facts, in_flight, load) => (facts, in_flight, load),
        Admitted::Unloaded => {
            return (StatusCode::BAD_REQUEST, Json(shapes::model_unloaded())).into_response();
        }
        Admitted::Dead => return abort(&conn),
    };
    // Loading the model delays every token of this reply.
    let start = arrived + load.unwrap_or_default();
    if state.opts.memory.grow_per_request > 0 {
        state.ballast.grow(state.opts.memory.grow_per_request);
    }
    let mut rng = behaviour::request_rng(state.opts.seed, facts.n);
    let decision = behaviour::decide(&state.opts.triggers, &state.opts.faults, &facts, &mut rng);
    if decision != Decision::Normal {
        tracing::debug!(n = facts.n, ?decision, "sim request");
    }
    let script = plan::script(&chat, &state.opts, decision, facts.n, &mut rng);
    let header = Header { id: format!("chatcmpl-{}", facts.n), created: unix_now(), model: state.opts.model.clone() };
    match script.opening {
        Opening::HttpError(kind) => {
            let status = if kind == FaultKind::Http503 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            match api {
                Api::Ollama => error(api, status, shapes::fault_message(kind)),
                Api::OpenAi | Api::LmStudio => (status, Json(shapes::fault_error(kind))).into_response(),
            }
        }
        Opening::Hang => {
            // Hold the request (and its in-flight slot) until the client leaves (hyper drops
            // this future) or the server stops.
            stopped(state.stop_signal()).await;
            drop(in_flight);
            abort(&conn)
        }
        Opening::Script if api == Api::Ollama => {
            let reply = ollama::Reply {
                state,
                script,
                model: header.model,
                prompt_tokens: chat.prompt_tokens,
                arrived,
                start,
                load,
                conn,
                _in_flight: in_flight,
            };
            if chat.stream { ollama::stream(reply) } else { ollama::whole(reply).await }
        }
        Opening::Script if chat.stream => stream::response(stream::Reply {
            state,
            script,
            header,
            prompt_tokens: chat.prompt_tokens,
            include_usage: chat.include_usage,
            start,
            lmstudio_stats: api == Api::LmStudio,
            _in_flight: in_flight,
        }),
        Opening::Script => {
            complete::respond(complete::Reply {
                state,
                script,
                header,
                prompt_tokens: chat.prompt_tokens,
                start,
                lmstudio_stats: api == Api::LmStudio,
                conn,
                in_flight,
            })
            .await
        }
    }
}

/// An error answer in the API's shape: OpenAI's `{"error": {"message", "type"}}`, Ollama's
/// `{"error": "..."}`.
fn error(api: Api, status: StatusCode, message: &str) -> Response {
    match api {
        Api::Ollama => (status, Json(serde_json::json!({ "error": message }))).into_response(),
        Api::OpenAi | Api::LmStudio => (status, Json(shapes::invalid_request(message))).into_response(),
    }
}

enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// Read at most `limit` bytes of body; never buffers more.
async fn read_body(req: Request, limit: usize) -> Result<Bytes, BodyError> {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut stream = Body::into_data_stream(req.into_body());
    let mut buf = BytesMut::new();
    while let Some(frame) = stream.next().await {
        let data = frame.map_err(BodyError::Read)?;
        if buf.len() + data.len() > limit {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}
