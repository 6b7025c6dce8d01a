//! In-process serve tests of the normal paths: the exact response shapes (streamed and not),
//! token counts, timing (generous bounds), reasoning, tool calls, request validation, body
//! limits, `/sim/stats`, memory ballast and seeded reproducibility.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::test_support::{TestServer, chat_body, stream_chat};

#[tokio::test]
async fn health_and_models() {
    let server = TestServer::start(&["--model", "tiny-test"]).await;
    let health: Value =
        server.client.get(server.url("/health")).send().await.expect("health").json().await.expect("json");
    assert_eq!(health, json!({ "status": "ok" }));
    let models: Value =
        server.client.get(server.url("/v1/models")).send().await.expect("models").json().await.expect("json");
    assert_eq!(models["object"], "list");
    let model = &models["data"][0];
    assert_eq!(model["id"], "tiny-test");
    assert_eq!(model["object"], "model");
    assert_eq!(model["owned_by"], "soakd-sim");
    assert!(model["created"].as_u64().is_some_and(|c| c > 1_600_000_000));
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn non_streamed_completion_shape_and_timing() {
    let server = TestServer::start(&["--ttft-ms", "100", "--tokens-per-s", "100"]).await;
    let started = Instant::now();
    let resp = server.chat(&chat_body(10, false)).await.expect("request");
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("JSON body");
    assert_eq!(v["id"], "chatcmpl-1");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "sim-model");
    assert!(v["created"].as_u64().is_some());
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(choice["message"]["role"], "assistant");
    let content = choice["message"]["content"].as_str().expect("content string");
    assert_eq!(content.split_whitespace().count(), 10);
    assert!(content.starts_with(' '));
    assert!(choice["message"].get("tool_calls").is_none());
    // "Say something, please." = 22 chars -> 6 prompt tokens
    assert_eq!(v["usage"], json!({ "prompt_tokens": 6, "completion_tokens": 10, "total_tokens": 16 }));
    // 100 ms + 9 x 10 ms before the headers
    assert!(elapsed >= Duration::from_millis(185), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn streamed_completion_shape_and_timing() {
    let server = TestServer::start(&["--ttft-ms", "200", "--tokens-per-s", "50"]).await;
    let (status, sse) = stream_chat(&server, &chat_body(12, true)).await;
    assert_eq!(status, 200);
    assert!(sse.error.is_none(), "{:?}", sse.error);
    let (first_at, first) = &sse.events[0];
    assert_eq!(first, ": keepalive", "a comment first, before any token");
    assert!(*first_at < Duration::from_millis(150), "keepalive at {first_at:?}");
    let ttft = sse.first_token_at().expect("a token");
    assert!(ttft >= Duration::from_millis(195), "TTFT {ttft:?}");
    let total = sse.events.last().expect("events").0;
    // 200 ms + 11 x 20 ms = 420 ms
    assert!(total >= Duration::from_millis(400) && total < Duration::from_secs(4), "{total:?}");

    let chunks = sse.chunks();
    assert_eq!(chunks.len(), 12 + 2, "12 tokens, finish, usage");
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], "chatcmpl-1");
        assert_eq!(c["model"], "sim-model");
        assert!(c["created"].as_u64().is_some());
        if i < 12 {
            let choice = &c["choices"][0];
            assert_eq!(choice["index"], 0);
            assert!(choice["finish_reason"].is_null());
            let word = choice["delta"]["content"].as_str().expect("content delta");
            assert!(word.starts_with(' ') && word.trim().chars().all(|ch| ch.is_ascii_alphabetic()), "{word:?}");
            assert_eq!(choice["delta"].get("role").is_some(), i == 0, "role only on the first chunk");
        }
    }
    assert_eq!(chunks[12]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[12]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks[13]["choices"], json!([]));
    assert_eq!(chunks[13]["usage"]["completion_tokens"], 12);
    assert_eq!(chunks[13]["usage"]["total_tokens"], 18);
    assert!(sse.has_done());
    assert_eq!(sse.data().last(), Some(&"[DONE]"));

    // Every token arrived as its own event, spread over time (not one buffered burst).
    let token_times: Vec<Duration> = sse.events.iter().skip(1).take(12).map(|(t, _)| *t).collect();
    // (Lower bounds only: the sim paces tokens on absolute deadlines, so a starved machine can
    // bunch them up, never make them early.)
    assert!(token_times[11] >= Duration::from_millis(400), "{token_times:?}");
    assert!(token_times[11] > token_times[0], "{token_times:?}");
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn usage_chunk_only_when_asked() {
    let server = TestServer::start(&["--ttft-ms", "0", "--tokens-per-s", "1000"]).await;
    let mut body = chat_body(3, true);
    body["stream_options"] = json!({ "include_usage": false });
    let (_, sse) = stream_chat(&server, &body).await;
    let chunks = sse.chunks();
    assert_eq!(chunks.len(), 4);
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert!(sse.has_done());
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn reasoning_tokens_come_first() {
    let server = TestServer::start(&["--ttft-ms", "0", "--tokens-per-s", "1000", "--reasoning-tokens", "3"]).await;
    let (_, sse) = stream_chat(&server, &chat_body(5, true)).await;
    let deltas: Vec<Value> = sse.chunks().iter().take(5).map(|c| c["choices"][0]["delta"].clone()).collect();
    assert!(deltas[..3].iter().all(|d| d["reasoning_content"].is_string() && d.get("content").is_none()));
    assert!(deltas[3..].iter().all(|d| d["content"].is_string()));
    assert_eq!(deltas[0]["role"], "assistant");

    let v: Value = server.chat(&chat_body(5, false)).await.expect("request").json().await.expect("json");
    let message = &v["choices"][0]["message"];
    assert_eq!(message["reasoning_content"].as_str().map(|s| s.split_whitespace().count()), Some(3));
    assert_eq!(message["content"].as_str().map(|s| s.split_whitespace().count()), Some(2));
    assert_eq!(v["usage"]["completion_tokens"], 5);
    server.stop().await.expect("clean shutdown");
}

fn tool_body(stream: bool) -> Value {
    let mut body = chat_body(16, stream);
    body["tools"] = json!([{ "type": "function", "function": {
        "name": "get_weather", "parameters": { "type": "object" } } }]);
    body
}

#[tokio::test]
async fn tool_calls_streamed_and_not() {
    let server = TestServer::start(&["--ttft-ms", "0", "--tokens-per-s", "1000"]).await;
    let v: Value = server.chat(&tool_body(false)).await.expect("request").json().await.expect("json");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_1");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().expect("string")).expect("valid JSON");
    assert_eq!(args, json!({ "location": "Paris" }));

    let (_, sse) = stream_chat(&server, &tool_body(true)).await;
    let chunks = sse.chunks();
    let mut arguments = String::new();
    let mut name = None;
    for c in &chunks {
        if let Some(call) = c["choices"][0]["delta"]["tool_calls"].get(0) {
            assert_eq!(call["index"], 0);
            if let Some(n) = call["function"]["name"].as_str() {
                name = Some(n.to_string());
                assert_eq!(call["type"], "function");
                assert!(call["id"].is_string());
            }
            arguments.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"));
    assert_eq!(serde_json::from_str::<Value>(&arguments).expect("valid JSON"), json!({ "location": "Paris" }));
    let finish = chunks.iter().find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"));
    assert!(sse.has_done());
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let server = TestServer::start(&[]).await;
    let url = server.url("/v1/chat/completions");
    for body in [
        "not json".to_string(),
        json!({}).to_string(),
        json!({ "messages": [] }).to_string(),
        json!({ "messages": [{ "role": "user", "content": 7 }] }).to_string(),
    ] {
        let resp = server.client.post(&url).body(body.clone()).send().await.expect("request");
        assert_eq!(resp.status(), 400, "{body}");
        let v: Value = resp.json().await.expect("json error");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let resp = server.client.get(server.url("/v2/nothing")).send().await.expect("request");
    assert_eq!(resp.status(), 404);
    assert_eq!(server.stats().await["requests"], 0, "rejected bodies are not counted");
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let server = TestServer::start(&["--max-body-kb", "4", "--ttft-ms", "0"]).await;
    let mut body = chat_body(1, false);
    body["messages"][0]["content"] = json!("x".repeat(4 * 1024 * 1024));
    let resp = server.chat(&body).await.expect("a response, not a reset");
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.expect("json error");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("--max-body-kb")));

    // Chunked (no Content-Length) bodies are limited too.
    let chunks = futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let resp = server
        .client
        .post(server.url("/v1/chat/completions"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("a response");
    assert_eq!(resp.status(), 413);

    body["messages"][0]["content"] = json!("x".repeat(1024));
    assert_eq!(server.chat(&body).await.expect("request").status(), 200);
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn stats_count_requests_and_in_flight() {
    let server = TestServer::start(&["--ttft-ms", "400", "--tokens-per-s", "100"]).await;
    let slow = {
        let client = server.client.clone();
        let url = server.url("/v1/chat/completions");
        tokio::spawn(async move { client.post(url).json(&chat_body(2, false)).send().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = server.stats().await;
    assert_eq!(stats["in_flight"], 1);
    assert_eq!(stats["requests"], 1);
    assert_eq!(stats["crashed"], false);
    assert_eq!(stats["pid"], std::process::id());
    let resp = slow.await.expect("join").expect("request");
    assert_eq!(resp.status(), 200);
    let stats = server.stats().await;
    assert_eq!(stats["in_flight"], 0);
    server.stop().await.expect("clean shutdown");
}

/// That the ballast really raises a process's RSS is checked on a separate sim process in
/// tests/faults.rs (`memory_growth_shows_in_the_samples`): in here, other tests' allocations
/// move this process's RSS too.
#[tokio::test]
async fn ballast_grows_per_request() {
    let server = TestServer::start(&["--grow-per-request-kb", "20480", "--ttft-ms", "0"]).await;
    assert_eq!(server.chat(&chat_body(1, false)).await.expect("request").status(), 200);
    assert_eq!(server.stats().await["ballast_bytes"], 20 * 1024 * 1024);
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn ballast_plateaus_and_saws() {
    let capped = TestServer::start(&["--grow-per-request-kb", "1024", "--memory-cap-mb", "2", "--ttft-ms", "0"]).await;
    for _ in 0..3 {
        capped.chat(&chat_body(1, false)).await.expect("request");
    }
    assert_eq!(capped.stats().await["ballast_bytes"], 2 * 1024 * 1024);
    capped.stop().await.expect("clean shutdown");

    let saw = TestServer::start(&["--grow-per-request-kb", "1024", "--sawtooth-mb", "2", "--ttft-ms", "0"]).await;
    let mut sizes = Vec::new();
    for _ in 0..3 {
        saw.chat(&chat_body(1, false)).await.expect("request");
        sizes.push(saw.stats().await["ballast_bytes"].as_u64().unwrap_or(u64::MAX));
    }
    assert_eq!(sizes, [1024 * 1024, 0, 1024 * 1024]);
    saw.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn same_seed_same_words() {
    let mut replies = Vec::new();
    for seed in ["1", "1", "2"] {
        let server = TestServer::start(&["--seed", seed, "--ttft-ms", "0", "--tokens-per-s", "1000"]).await;
        let v: Value = server.chat(&chat_body(20, false)).await.expect("request").json().await.expect("json");
        replies.push(v["choices"][0]["message"]["content"].clone());
        server.stop().await.expect("clean shutdown");
    }
    assert_eq!(replies[0], replies[1]);
    assert_ne!(replies[0], replies[2]);
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let server = TestServer::start(&["--ttft-ms", "0", "--tokens-per-s", "5"]).await;
    let resp = server.chat(&chat_body(100, true)).await.expect("stream starts");
    let reader = tokio::spawn(super::test_support::read_sse(resp, Instant::now()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = Instant::now();
    server.stop().await.expect("clean shutdown");
    assert!(stopped.elapsed() < Duration::from_secs(3));
    let sse = reader.await.expect("join");
    assert!(!sse.has_done(), "the stream was cut, not finished");
}

#[tokio::test]
async fn run_refuses_non_loopback_hosts() {
    let err = super::run(super::test_support::args(&["--host", "0.0.0.0"])).await.expect_err("0.0.0.0 must be refused");
    assert!(err.to_string().contains("--host 127.0.0.1"), "{err}");
    let err =
        super::run(super::test_support::args(&["--tokens-per-s", "0"])).await.expect_err("bad speed must be refused");
    assert!(err.to_string().contains("--tokens-per-s"), "{err}");
}
