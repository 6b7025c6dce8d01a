//! In-process serve tests of everything that goes wrong on purpose: each `--fault` kind, the
//! crash triggers, the in-process "crashed" state of the exit style, and LM Studio's crash,
//! unload and reload sequence. Each test checks the effect a client observes.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::shapes::{LMSTUDIO_CRASH, METAL_OOM};
use super::test_support::{TestServer, chat_body, stream_chat};

const FAST: [&str; 4] = ["--ttft-ms", "20", "--tokens-per-s", "200"];

async fn server(extra: &[&str]) -> TestServer {
    let mut flags = FAST.to_vec();
    flags.extend_from_slice(extra);
    TestServer::start(&flags).await
}

/// Token chunks (those with a content delta) in a stream.
fn tokens(chunks: &[Value]) -> usize {
    chunks.iter().filter(|c| c["choices"][0]["delta"]["content"].is_string()).count()
}

fn finish_reasons(chunks: &[Value]) -> Vec<String> {
    chunks.iter().filter_map(|c| c["choices"][0]["finish_reason"].as_str().map(str::to_string)).collect()
}

#[tokio::test]
async fn http_error_faults() {
    for (fault, status, needle) in [
        ("http500=1", 500, "Internal server error"),
        ("http503=1", 503, "Service unavailable: out of memory"),
        ("metal-oom=1", 500, METAL_OOM),
    ] {
        let s = server(&["--fault", fault]).await;
        for stream in [false, true] {
            let resp = s.chat(&chat_body(5, stream)).await.expect("a response");
            assert_eq!(resp.status(), status, "{fault}");
            let text = resp.text().await.expect("body");
            assert!(text.contains(needle), "{fault}: {text}");
            let v: Value = serde_json::from_str(&text).expect("JSON error body");
            assert!(v["error"]["type"].is_string(), "{fault}: {text}");
        }
        s.stop().await.expect("clean shutdown");
    }
}

#[tokio::test]
async fn hang_sends_nothing_until_the_client_leaves_or_shutdown() {
    let s = server(&["--fault", "hang=1"]).await;
    for stream in [false, true] {
        let err = s
            .client
            .post(s.url("/v1/chat/completions"))
            .json(&chat_body(5, stream))
            .timeout(Duration::from_millis(300))
            .send()
            .await
            .expect_err("no byte within 300 ms");
        assert!(err.is_timeout(), "{err:?}");
    }
    // A client that leaves frees its slot.
    let deadline = Instant::now() + Duration::from_secs(3);
    while s.stats().await["in_flight"] != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.stats().await["in_flight"], 0);
    // A client that stays is let go at shutdown.
    let waiting = {
        let client = s.client.clone();
        let url = s.url("/v1/chat/completions");
        tokio::spawn(async move { client.post(url).json(&chat_body(5, false)).send().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = Instant::now();
    s.stop().await.expect("clean shutdown");
    assert!(stopping.elapsed() < Duration::from_secs(3));
    assert!(waiting.await.expect("join").is_err(), "the hung request gets no answer");
}

#[tokio::test]
async fn stall_pauses_then_finishes() {
    let s = server(&["--fault", "stall=1", "--stall-ms", "600", "--exit-after-tokens", "2"]).await;
    let (status, sse) = stream_chat(&s, &chat_body(5, true)).await;
    assert_eq!(status, 200);
    assert!(sse.error.is_none(), "{:?}", sse.error);
    let times: Vec<Duration> = sse.events.iter().skip(1).take(5).map(|(t, _)| *t).collect();
    // The stall comes after the second token: the third is at least 600 ms in (a lower bound,
    // which a busy machine cannot break; tokens may bunch after it, never come early).
    assert!(times[2] >= Duration::from_millis(600), "{times:?}");
    assert_eq!(tokens(&sse.chunks()), 5);
    assert!(sse.has_done());

    let started = Instant::now();
    let resp = s.chat(&chat_body(5, false)).await.expect("request");
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(600));
    s.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn stall_after_the_last_token_delays_the_finish() {
    let s = server(&["--fault", "stall=1", "--stall-ms", "500", "--exit-after-tokens", "3"]).await;
    let (_, sse) = stream_chat(&s, &chat_body(2, true)).await;
    let chunks = sse.chunks();
    assert_eq!(tokens(&chunks), 2);
    let last_token = sse.events[2].0;
    let finish = sse.events[3].0;
    assert!(finish - last_token >= Duration::from_millis(450), "{:?}", sse.events);
    assert_eq!(finish_reasons(&chunks), ["length"]);
    assert!(sse.has_done());
    s.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn reset_aborts_the_connection() {
    let s = server(&["--fault", "reset=1"]).await;
    let (status, sse) = stream_chat(&s, &chat_body(10, true)).await;
    assert_eq!(status, 200);
    assert!(sse.error.is_some(), "the body must fail, got {:?}", sse.events);
    assert_eq!(tokens(&sse.chunks()), 3, "--exit-after-tokens defaults to 3");
    assert!(!sse.has_done());

    let err = s.chat(&chat_body(10, false)).await.expect_err("no response at all");
    assert!(!err.is_timeout(), "{err:?}");
    assert!(err.status().is_none(), "{err:?}");
    s.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn truncate_ends_cleanly_without_finish() {
    let s = server(&["--fault", "truncate=1"]).await;
    let (_, sse) = stream_chat(&s, &chat_body(10, true)).await;
    assert!(sse.error.is_none(), "clean end expected: {:?}", sse.error);
    let chunks = sse.chunks();
    assert_eq!(tokens(&chunks), 3);
    assert!(finish_reasons(&chunks).is_empty());
    assert!(!sse.has_done());

    let v: Value = s.chat(&chat_body(10, false)).await.expect("request").json().await.expect("json");
    assert!(v["choices"][0]["finish_reason"].is_null());
    assert_eq!(v["usage"]["completion_tokens"], 3);
    s.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn malformed_sends_invalid_json() {
    let s = server(&["--fault", "malformed=1"]).await;
    let (_, sse) = stream_chat(&s, &chat_body(6, true)).await;
    let bad: Vec<&str> =
        sse.data().into_iter().filter(|d| *d != "[DONE]" && serde_json::from_str::<Value>(d).is_err()).collect();
    assert_eq!(bad.len(), 1, "{:?}", sse.events);
    assert!(bad[0].starts_with("{\"choices\": [ {\"delta\":"));
    assert_eq!(tokens(&sse.chunks()), 6, "the stream goes on after the bad line");
    assert!(sse.has_done());

    let resp = s.chat(&chat_body(6, false)).await.expect("request");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    s.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn empty_replies_have_no_content() {
    let s = server(&["--fault", "empty=1"]).await;
    let (_, sse) = stream_chat(&s, &chat_body(6, true)).await;
    let chunks = sse.chunks();
    assert_eq!(chunks.len(), 3, "role, finish, usage: {chunks:?}");
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({ "role": "assistant" }));
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[2]["usage"]["completion_tokens"], 0);
    assert!(sse.has_done());

    let v: Value = s.chat(&chat_body(6, false)).await.expect("request").json().await.expect("json");
    assert_eq!(v["choices"][0]["message"]["content"], "");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 0);
    s.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn exit_style_in_process_crash_kills_everything() {
    let s = server(&["--exit-after", "2"]).await;
    // A long stream in flight when the crash happens.
    let resp = s.chat(&chat_body(400, true)).await.expect("request 1");
    let bystander = tokio::spawn(super::test_support::read_sse(resp, Instant::now()));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (_, sse) = stream_chat(&s, &chat_body(10, true)).await;
    assert!(sse.error.is_some(), "request 2 is cut: {:?}", sse.events);
    assert_eq!(tokens(&sse.chunks()), 3);

    let bystander = bystander.await.expect("join");
    assert!(bystander.error.is_some() && !bystander.has_done(), "request 1 dies with the process");

    let stats = s.stats().await;
    assert_eq!(stats["crashed"], true);
    assert!(s.chat(&chat_body(1, false)).await.is_err(), "a dead server answers nothing");
    assert!(s.client.get(s.url("/health")).send().await.is_err());
    s.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn exit_style_non_streamed_crash_sends_no_response() {
    let s = server(&["--exit-after", "1"]).await;
    let err = s.chat(&chat_body(10, false)).await.expect_err("no response");
    assert!(err.status().is_none() && !err.is_timeout(), "{err:?}");
    assert_eq!(s.stats().await["crashed"], true);
    s.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn lmstudio_crash_unload_and_reload() {
    let s = server(&["--crash-style", "lmstudio", "--exit-after", "1", "--unloaded-requests", "2"]).await;
    let resp = s.chat(&chat_body(5, false)).await.expect("request 1");
    assert_eq!(resp.status(), 500);
    let text = resp.text().await.expect("body");
    assert_eq!(text, json!({ "error": LMSTUDIO_CRASH }).to_string());
    for _ in 0..2 {
        let resp = s.chat(&chat_body(5, false)).await.expect("unloaded request");
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.text().await.expect("body"), r#"{"error":"Model is unloaded."}"#);
    }
    let resp = s.chat(&chat_body(5, false)).await.expect("reloaded");
    assert_eq!(resp.status(), 200);
    let stats = s.stats().await;
    assert_eq!(stats["crashed"], false);
    assert_eq!(stats["requests"], 4);
    s.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn lmstudio_streamed_crash_ends_with_an_error_event() {
    let s = server(&["--crash-style", "lmstudio", "--exit-after", "1", "--unloaded-requests", "1"]).await;
    let (status, sse) = stream_chat(&s, &chat_body(10, true)).await;
    assert_eq!(status, 200);
    assert!(sse.error.is_none(), "the stream ends, the connection survives");
    let chunks = sse.chunks();
    assert_eq!(tokens(&chunks), 3);
    let last = chunks.last().expect("chunks");
    assert_eq!(last["error"]["message"], LMSTUDIO_CRASH);
    assert!(!sse.has_done());
    let resp = s.chat(&chat_body(5, true)).await.expect("unloaded");
    assert_eq!(resp.status(), 400);
    s.stop().await.expect("clean shutdown");
}

/// Status of one non-streamed request against an LM Studio-style server.
async fn status(s: &TestServer, body: &Value) -> u16 {
    s.chat(body).await.expect("request").status().as_u16()
}

#[tokio::test]
async fn crash_triggers_fire_on_their_condition() {
    let lm = ["--crash-style", "lmstudio", "--unloaded-requests", "0"];

    let mut flags = lm.to_vec();
    flags.extend(["--exit-above-prompt-tokens", "10"]);
    let s = server(&flags).await;
    assert_eq!(status(&s, &chat_body(2, false)).await, 200);
    let mut long = chat_body(2, false);
    long["messages"][0]["content"] = json!("x".repeat(44));
    assert_eq!(status(&s, &long).await, 500);
    s.stop().await.expect("clean shutdown");

    let mut flags = lm.to_vec();
    flags.extend(["--exit-probability", "1"]);
    let s = server(&flags).await;
    assert_eq!(status(&s, &chat_body(2, false)).await, 500);
    s.stop().await.expect("clean shutdown");

    let mut flags = lm.to_vec();
    flags.extend(["--exit-on-rapid-ms", "300"]);
    let s = server(&flags).await;
    assert_eq!(status(&s, &chat_body(2, false)).await, 200, "first request has no predecessor");
    assert_eq!(status(&s, &chat_body(2, false)).await, 500, "back to back");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status(&s, &chat_body(2, false)).await, 200, "after a pause");
    s.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn concurrency_trigger_fires_when_requests_overlap() {
    let s = TestServer::start(&[
        "--ttft-ms",
        "400",
        "--crash-style",
        "lmstudio",
        "--unloaded-requests",
        "0",
        "--exit-above-concurrency",
        "1",
    ])
    .await;
    let one = s.chat(&chat_body(1, false)).await.expect("alone").status();
    assert_eq!(one, 200);
    let body = chat_body(1, false);
    let (a, b) = tokio::join!(s.chat(&body), s.chat(&body));
    let mut statuses = [a.expect("a").status().as_u16(), b.expect("b").status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 500]);
    s.stop().await.expect("clean shutdown");
}
