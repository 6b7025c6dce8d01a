//! `--flavour lmstudio`: LM Studio's REST API v0 as its docs show it:
//! `GET /api/v0/models` and `GET /api/v0/models/{id}` (`state`: `loaded` | `not-loaded`), and
//! `POST /api/v0/chat/completions`, the OpenAI chat plus `stats` (`tokens_per_second`,
//! `time_to_first_token` and `generation_time` in seconds, `stop_reason`), `model_info` and
//! `runtime` — on the whole reply, or on the last chunk before `[DONE]` when streamed.
//!
//! The model is `not-loaded` from a crash (`--crash-style lmstudio`) until a request loads it
//! again: the `--unloaded-requests` requests after the crash get "Model is unloaded.", the one
//! after them loads the model (JIT loading, waiting `--load-ms`) and is served.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::conn::ConnHandle;
use super::conn::abort;
use super::options::Options;
use super::state::SimState;

/// The runtime the sim claims to be.
pub(crate) const RUNTIME_NAME: &str = "llama.cpp-soakd-sim";

/// LM Studio's `stop_reason` for the sim's finish reason.
fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "maxPredictedTokensReached",
        "tool_calls" => "toolCalls",
        _ => "eosFound",
    }
}

/// Adds `stats`, `model_info` and `runtime` to a completion or chunk: `tokens` pieces, the
/// first after `ttft`, the rest over `generation`.
pub(crate) fn add_extras(body: &mut Value, tokens: usize, ttft: Duration, generation: Duration, finish_reason: &str) {
    let gen_s = generation.as_secs_f64();
    // Tokens after the first over the time they took, as soakd's client side measures it.
    let tps = if tokens >= 2 && gen_s > 0.0 { (tokens - 1) as f64 / gen_s } else { 0.0 };
    body["stats"] = json!({
        "tokens_per_second": tps,
        "time_to_first_token": ttft.as_secs_f64(),
        "generation_time": gen_s,
        "stop_reason": stop_reason(finish_reason),
    });
    body["model_info"] = json!({"arch": "qwen3", "quant": "Q4_K_M", "format": "gguf", "context_length": 4096});
    body["runtime"] = json!({
        "name": RUNTIME_NAME,
        "version": env!("CARGO_PKG_VERSION"),
        "supported_formats": ["gguf"],
    });
}

/// One model's entry in `/api/v0/models`.
fn entry(opts: &Options, loaded: bool) -> Value {
    json!({
        "id": opts.model,
        "object": "model",
        "type": "llm",
        "publisher": "soakd-sim",
        "arch": "qwen3",
        "compatibility_type": "gguf",
        "quantization": "Q4_K_M",
        "state": if loaded { "loaded" } else { "not-loaded" },
        "max_context_length": 32768,
    })
}

type Shared = State<Arc<SimState>>;
type Conn = ConnectInfo<ConnHandle>;

/// `GET /api/v0/models`.
pub(crate) async fn models(State(state): Shared, ConnectInfo(conn): Conn) -> Response {
    if state.is_dead() {
        return abort(&conn);
    }
    Json(json!({"object": "list", "data": [entry(&state.opts, state.model_loaded())]})).into_response()
}

/// `GET /api/v0/models/{id}`.
pub(crate) async fn model(State(state): Shared, ConnectInfo(conn): Conn, Path(id): Path<String>) -> Response {
    if state.is_dead() {
        return abort(&conn);
    }
    if id != state.opts.model {
        let message = format!("Model \"{id}\" not found");
        return (StatusCode::NOT_FOUND, Json(json!({"error": message}))).into_response();
    }
    Json(entry(&state.opts, state.model_loaded())).into_response()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::TestServer;
    use super::*;

    #[tokio::test]
    async fn models_report_state_and_replies_carry_stats() {
        let server = TestServer::start(&["--flavour", "lmstudio", "--ttft-ms", "20", "--tokens-per-s", "200"]).await;
        let list: Value = server.client.get(server.url("/api/v0/models")).send().await.unwrap().json().await.unwrap();
        assert_eq!(list["data"][0]["state"], "loaded");
        assert_eq!(list["data"][0]["compatibility_type"], "gguf");
        let one = server.client.get(server.url("/api/v0/models/sim-model")).send().await.unwrap();
        assert_eq!(one.status(), 200);
        let missing = server.client.get(server.url("/api/v0/models/other")).send().await.unwrap();
        assert_eq!(missing.status(), 404);
        let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5});
        let reply: Value = server
            .client
            .post(server.url("/api/v0/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(reply["stats"]["stop_reason"], "maxPredictedTokensReached");
        let tps = reply["stats"]["tokens_per_second"].as_f64().unwrap();
        assert!((tps - 200.0).abs() < 1.0, "{tps}");
        assert!((reply["stats"]["time_to_first_token"].as_f64().unwrap() - 0.02).abs() < 1e-9);
        assert_eq!(reply["runtime"]["name"], RUNTIME_NAME);
        assert_eq!(reply["model_info"]["format"], "gguf");
        // The plain OpenAI endpoint has no stats.
        let plain: Value = server.chat(&body).await.unwrap().json().await.unwrap();
        assert!(plain.get("stats").is_none());
        server.stop().await.unwrap();
    }

    #[tokio::test]
    async fn a_crash_unloads_the_model_until_a_request_loads_it() {
        let flags =
            ["--flavour", "lmstudio", "--crash-style", "lmstudio", "--exit-after", "1", "--unloaded-requests", "1"];
        let server = TestServer::start(&flags).await;
        let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3});
        let post = || server.client.post(server.url("/api/v0/chat/completions")).json(&body).send();
        let state = || async {
            let m: Value =
                server.client.get(server.url("/api/v0/models/sim-model")).send().await.unwrap().json().await.unwrap();
            m["state"].as_str().unwrap().to_string()
        };
        let crashed = post().await.unwrap();
        assert_eq!(crashed.status(), 500);
        assert!(crashed.text().await.unwrap().contains("The model has crashed"));
        assert_eq!(state().await, "not-loaded");
        let unloaded = post().await.unwrap();
        assert!(unloaded.text().await.unwrap().contains("Model is unloaded."));
        assert_eq!(state().await, "not-loaded", "still not loaded after the unloaded answers");
        assert_eq!(post().await.unwrap().status(), 200, "this one loads it again");
        assert_eq!(state().await, "loaded");
        server.stop().await.unwrap();
    }
}
