//! Unit tests of the Ollama adapter: request body, stream lines, final numbers, tool calls,
//! error bodies, and the reload judgement.

use super::*;
use crate::config::BackendKind;
use crate::schedule::{Prompt, Workload};
use std::time::Duration;

fn line(tl: &mut Timeline, calls: &mut ToolCalls, json: &str) -> Result<bool, Outcome> {
    let v: Value = serde_json::from_str(json).expect("test JSON");
    take(&v, tl, calls, Instant::now(), true).map_err(|a| a.into_failure().outcome)
}

#[test]
fn the_body_uses_native_options() {
    let config = super::super::http::test_config(BackendKind::Ollama, "http://127.0.0.1:11434", Some("qwen3:8b"));
    let a = Ollama::new(&config, &Timeouts::default()).unwrap();
    let workload = Workload {
        requests: 1,
        concurrency: 1,
        delay: Duration::ZERO,
        rate: None,
        max_duration: Duration::from_secs(60),
        stream: true,
        max_tokens: 64,
        temperature: Some(0.2),
        top_p: None,
        system: Some("be brief".into()),
        prompts: vec![],
        tools: None,
        timeouts: Timeouts::default(),
    };
    let prompt = Prompt { name: "p".into(), text: "hello".into() };
    let body = a.body(ChatRequest { prompt: &prompt, workload: &workload });
    assert_eq!(body["model"], "qwen3:8b");
    assert_eq!(body["options"]["num_predict"], 64);
    assert_eq!(body["options"]["temperature"], 0.2);
    assert!(body["options"].get("top_p").is_none());
    assert!(body.get("keep_alive").is_none(), "keep_alive is left to the server");
    assert!(body.get("max_tokens").is_none());
    assert_eq!(body["stream"], true);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["content"], "hello");
}

#[test]
fn a_stream_feeds_the_timeline_and_the_last_line_the_server_numbers() {
    let mut tl = Timeline::new(Instant::now());
    let mut calls = ToolCalls::default();
    let chunk = r#"{"model":"qwen3:8b","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"Hel"},"done":false}"#;
    assert_eq!(line(&mut tl, &mut calls, chunk), Ok(false));
    let thinking = r#"{"model":"qwen3:8b","message":{"role":"assistant","content":"","thinking":"hm"},"done":false}"#;
    assert_eq!(line(&mut tl, &mut calls, thinking), Ok(false));
    let last = r#"{"model":"qwen3:8b","message":{"role":"assistant","content":""},"done":true,"done_reason":"length",
        "total_duration":9000000000,"load_duration":6760000000,"prompt_eval_count":7,"prompt_eval_duration":50000000,
        "eval_count":100,"eval_duration":2000000000}"#;
    assert_eq!(line(&mut tl, &mut calls, last), Ok(true));
    assert_eq!(tl.deltas(), 2);
    assert!(tl.reasoning_seen);
    assert_eq!(tl.output(), "Hel");
    assert_eq!(tl.finish_reason.as_deref(), Some("length"));
    assert_eq!(tl.server_model.as_deref(), Some("qwen3:8b"));
    assert_eq!(tl.server.decode_tps, Some(50.0));
    assert_eq!(tl.server.load_ms, Some(6760.0));
    assert_eq!(tl.server.prompt_ms, Some(50.0));
    assert_eq!(tl.server.total_ms, Some(9000.0));
    let m = tl.finish(Instant::now());
    assert_eq!((m.prompt_tokens, m.completion_tokens), (Some(7), Some(100)), "counts from the last line");
    assert_eq!(tl.server_timings.as_ref().unwrap()["ollama"]["eval_duration"], 2_000_000_000u64);
}

#[test]
fn error_members_are_classified_by_their_words() {
    let mut tl = Timeline::new(Instant::now());
    let mut calls = ToolCalls::default();
    assert_eq!(
        line(&mut tl, &mut calls, r#"{"error":"llama runner process has terminated: signal: aborted (core dumped)"}"#),
        Err(Outcome::ServerReportedCrash)
    );
    assert_eq!(line(&mut tl, &mut calls, r#"{"error":"an unknown error was encountered"}"#), Err(Outcome::StreamError));
    assert_eq!(line(&mut tl, &mut calls, r#"[1,2]"#), Err(Outcome::Malformed));
    assert_eq!(line(&mut tl, &mut calls, r#"{"error":null,"done":false}"#), Ok(false));
}

#[test]
fn http_error_bodies_keep_the_servers_words() {
    let f = http_failure(500, r#"{"error":"llama runner process has terminated: exit status 2"}"#).into_failure();
    assert_eq!(f.outcome, Outcome::ServerReportedCrash);
    assert_eq!(f.error, "HTTP 500: llama runner process has terminated: exit status 2");
    let f = http_failure(404, r#"{"error":"model \"nope\" not found, try pulling it first"}"#).into_failure();
    assert_eq!(f.outcome, Outcome::HttpError);
    assert!(f.error.starts_with("HTTP 404: model \"nope\" not found"), "{}", f.error);
    let f = http_failure(502, "<html>bad gateway</html>").into_failure();
    assert_eq!(f.error, "HTTP 502: <html>bad gateway</html>");
    let long = format!("{{\"error\":\"{}\"}}", "x".repeat(100_000));
    assert!(http_failure(500, &long).into_failure().error.len() < MAX_ERROR_BYTES + 64);
}

#[test]
fn whole_tool_calls_are_numbered_and_checked() {
    let mut tl = Timeline::new(Instant::now());
    let mut calls = ToolCalls::default();
    let call = r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"location":"Paris"}}}]},"done":false}"#;
    assert_eq!(line(&mut tl, &mut calls, call), Ok(false));
    assert_eq!(line(&mut tl, &mut calls, call), Ok(false));
    assert_eq!(calls.count(), 2, "two calls in two lines stay two calls");
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]);
    assert_eq!(calls.valid(Some(&tools)), Some(true));
    assert_eq!(tl.deltas(), 2);
}

#[test]
fn a_whole_reply_has_no_token_timings() {
    let mut tl = Timeline::new(Instant::now());
    let mut calls = ToolCalls::default();
    let v = json!({"model": "m", "message": {"role": "assistant", "content": "hello there"}, "done": true,
        "done_reason": "stop", "eval_count": 3, "eval_duration": 30_000_000u64});
    assert_eq!(take(&v, &mut tl, &mut calls, Instant::now(), false).ok(), Some(true));
    assert_eq!(tl.deltas(), 0);
    assert_eq!(tl.output(), "hello there");
    assert_eq!(tl.server.decode_tps, Some(100.0));
}

#[test]
fn a_jump_in_load_duration_is_one_reload() {
    let mut s = Seen::default();
    assert_eq!(s.load("m", 4000.0), None, "the first load of the session is no reload");
    assert_eq!(s.load("m", 2.0), None);
    assert_eq!(s.load("m", 900.0), None, "under 1 s");
    assert_eq!(s.load("m", 3000.0), None, "not 10× the previous 900 ms");
    assert_eq!(s.load("m", 2.0), None);
    let e = s.load("m", 3000.0).expect("over 1 s and 10× the previous");
    assert_eq!(e.kind, EventKind::ModelReload);
    assert_eq!(e.detail["previous_load_ms"], 2.0);
    assert_eq!(s.load("m", 3500.0), None, "not 10× the previous");
}

#[test]
fn leaving_ps_is_a_reload_and_its_load_is_not_counted_twice() {
    let mut s = Seen::default();
    assert_eq!(s.in_ps("m", false), None, "never seen loaded");
    assert_eq!(s.load("m", 5.0), None);
    let e = s.in_ps("m", false).expect("was answering, now missing");
    assert_eq!(e.detail["via"], "missing_from_ps");
    assert_eq!(s.in_ps("m", false), None, "still missing: the same reload");
    assert_eq!(s.load("m", 2500.0), None, "the load of the reload already reported");
    assert_eq!(s.load("m", 5.0), None);
    assert!(s.load("m", 2500.0).is_some(), "a later jump is a new reload");
    // Someone else's request reloaded it: ours sees no load, and a later reload still counts.
    assert!(s.in_ps("m", false).is_some());
    assert_eq!(s.load("m", 3.0), None);
    assert!(s.load("m", 2500.0).is_some());
}

#[test]
fn ps_entries_keep_documented_fields_only() {
    let m = json!({"name": "qwen3:8b", "model": "qwen3:8b", "size": 6_000_000_000u64, "size_vram": 5_000_000_000u64,
        "digest": "abc", "expires_at": "2025-01-01T00:05:00Z", "context_length": 4096,
        "details": {"parent_model": "", "format": "gguf", "family": "qwen3", "families": ["qwen3"],
            "parameter_size": "8.2B", "quantization_level": "Q4_K_M", "extra": "x"}, "junk": [1, 2, 3]});
    let e = ps_entry(&m);
    assert_eq!(e["size_vram"], 5_000_000_000u64);
    assert_eq!(e["details"]["quantization_level"], "Q4_K_M");
    assert!(e.get("junk").is_none() && e["details"].get("extra").is_none());
    let config = super::super::http::test_config(BackendKind::Ollama, "http://127.0.0.1:11434", Some("qwen3"));
    let a = Ollama::new(&config, &Timeouts::default()).unwrap();
    assert!(a.is_ours(&json!({"name": "qwen3:latest"})));
    assert!(!a.is_ours(&json!({"name": "qwen3:8b"})));
}
