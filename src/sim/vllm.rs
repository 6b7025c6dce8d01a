//! `--flavour vllm`: the endpoints vLLM's OpenAI server has beside the chat API, as its docs
//! show them: `GET /version` (`{"version": ...}`) and `GET /metrics` (Prometheus text, `vllm:`
//! series labelled with `model_name`). The numbers are the sim's own: requests running and
//! served so far; the KV-cache usage grows with the requests in flight.

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::conn::ConnHandle;
use super::conn::abort;
use super::state::SimState;

type Shared = State<Arc<SimState>>;
type Conn = ConnectInfo<ConnHandle>;

pub(crate) async fn version(State(state): Shared, ConnectInfo(conn): Conn) -> Response {
    if state.is_dead() {
        return abort(&conn);
    }
    Json(json!({"version": concat!(env!("CARGO_PKG_VERSION"), "-soakd-sim")})).into_response()
}

pub(crate) async fn metrics(State(state): Shared, ConnectInfo(conn): Conn) -> Response {
    if state.is_dead() {
        return abort(&conn);
    }
    let stats = state.stats();
    let model = state.opts.model.replace(['\\', '"', '\n'], "_");
    let label = format!("{{model_name=\"{model}\"}}");
    let page = format!(
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{label} {running}\n\
         # HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n\
         # TYPE vllm:num_requests_waiting gauge\n\
         vllm:num_requests_waiting{label} 0\n\
         # HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n\
         # TYPE vllm:kv_cache_usage_perc gauge\n\
         vllm:kv_cache_usage_perc{label} {kv}\n\
         # HELP vllm:request_success_total Count of successfully processed requests.\n\
         # TYPE vllm:request_success_total counter\n\
         vllm:request_success_total{{finished_reason=\"length\",model_name=\"{model}\"}} {served}\n",
        running = stats.in_flight,
        kv = (f64::from(stats.in_flight) * 0.01).min(1.0),
        served = stats.requests.saturating_sub(u64::from(stats.in_flight)),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], page).into_response()
}

#[cfg(test)]
mod tests {
    use crate::sim::test_support::TestServer;

    #[tokio::test]
    async fn version_and_metrics_as_vllm_serves_them() {
        let server = TestServer::start(&["--flavour", "vllm", "--ttft-ms", "1", "--tokens-per-s", "1000"]).await;
        let version: serde_json::Value =
            server.client.get(server.url("/version")).send().await.unwrap().json().await.unwrap();
        assert!(version["version"].as_str().is_some_and(|v| v.ends_with("-soakd-sim")));
        let body = serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3});
        let reply = server.chat(&body).await.expect("a reply");
        assert!(reply.status().is_success());
        reply.text().await.expect("the whole reply");
        let page = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let series = crate::backend::metrics_for_tests(&page, "vllm:");
        assert_eq!(series["num_requests_running"], 0.0);
        assert_eq!(series["request_success_total"], 1.0);
        assert!(series.contains_key("kv_cache_usage_perc"));
        server.stop().await.expect("clean shutdown");
    }
}
