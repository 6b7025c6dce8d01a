//! Non-streamed replies: sleep the whole generation time (time to first token plus every token)
//! before sending headers, like a real server, then answer one JSON completion, or whatever the
//! script's cut turns it into (crash body, aborted connection, truncated or malformed JSON).

use std::sync::Arc;

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::time::Instant;

use super::behaviour::CrashEffect;
use super::conn::{ConnHandle, abort};
use super::lmstudio;
use super::plan::{CutKind, Script};
use super::shapes::{self, Header};
use super::state::{InFlight, SimState, stopped};

/// A non-streamed reply to produce.
pub(crate) struct Reply {
    pub(crate) state: Arc<SimState>,
    pub(crate) script: Script,
    pub(crate) header: Header,
    pub(crate) prompt_tokens: u64,
    pub(crate) start: Instant,
    /// LM Studio's `/api/v0`: the reply carries `stats`, `model_info` and `runtime`.
    pub(crate) lmstudio_stats: bool,
    pub(crate) conn: ConnHandle,
    pub(crate) in_flight: InFlight,
}

/// Wait out the generation time and answer.
pub(crate) async fn respond(reply: Reply) -> Response {
    let script = &reply.script;
    let all = script.pieces.len();
    let (wait_for, extra) = match script.cut {
        Some(cut) => match cut.kind {
            CutKind::Stall(pause) => (all, pause),
            CutKind::Malformed => (all, std::time::Duration::ZERO),
            _ => (cut.at, std::time::Duration::ZERO),
        },
        None => (all, std::time::Duration::ZERO),
    };
    let deadline = reply.start + script.time_until(wait_for) + extra;
    let stop = reply.state.stop_signal();
    tokio::select! {
        _ = tokio::time::sleep_until(deadline) => {}
        _ = stopped(stop) => return abort(&reply.conn),
    }
    let response = match script.cut.map(|c| (c.at, c.kind)) {
        Some((_, CutKind::Crash(reason))) => match reply.state.crash(reason) {
            CrashEffect::LmStudioError => {
                (StatusCode::INTERNAL_SERVER_ERROR, Json(shapes::lmstudio_crash())).into_response()
            }
            CrashEffect::OllamaError => {
                (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": shapes::OLLAMA_CRASH }))).into_response()
            }
            CrashEffect::Dead | CrashEffect::ExitProcess => abort(&reply.conn),
        },
        Some((_, CutKind::Reset)) => abort(&reply.conn),
        Some((at, CutKind::Truncate)) => {
            let body = shapes::completion(
                &reply.header,
                script.pieces.get(..at).unwrap_or(&script.pieces),
                None,
                reply.prompt_tokens,
            );
            Json(body).into_response()
        }
        Some((_, CutKind::Malformed)) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], shapes::MALFORMED_BODY).into_response()
        }
        Some((_, CutKind::Stall(_))) | None => {
            let mut body =
                shapes::completion(&reply.header, &script.pieces, Some(script.finish_reason), reply.prompt_tokens);
            if reply.lmstudio_stats {
                let (ttft, generation) = script.token_times();
                lmstudio::add_extras(&mut body, all, ttft, generation, script.finish_reason);
            }
            Json(body).into_response()
        }
    };
    drop(reply.in_flight);
    response
}
