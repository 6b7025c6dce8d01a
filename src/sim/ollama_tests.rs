//! The Ollama flavour served in-process: NDJSON framing, nanosecond numbers, `/api/ps` around
//! a load and a crash, error bodies.

use super::super::test_support::TestServer;
use serde_json::{Value, json};

fn body(stream: bool, n: u32) -> Value {
    json!({"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "stream": stream,
        "options": {"num_predict": n}})
}

async fn post(server: &TestServer, body: &Value) -> reqwest::Response {
    server.client.post(server.url("/api/chat")).json(body).send().await.expect("POST /api/chat")
}

async fn get(server: &TestServer, path: &str) -> Value {
    server.client.get(server.url(path)).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn a_streamed_reply_is_ndjson_ending_in_the_numbers() {
    let flags = ["--flavour", "ollama", "--ttft-ms", "30", "--tokens-per-s", "100", "--load-ms", "200"];
    let server = TestServer::start(&flags).await;
    assert_eq!(get(&server, "/api/ps").await["models"], json!([]), "not loaded before the first request");
    assert!(get(&server, "/api/version").await["version"].as_str().unwrap().ends_with("-soakd-sim"));
    assert_eq!(get(&server, "/api/tags").await["models"][0]["name"], "sim-model");
    let resp = post(&server, &body(true, 5)).await;
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("every line is JSON")).collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert!(lines[..5].iter().all(|l| l["done"] == false && l["message"]["content"].as_str().is_some()));
    let last = &lines[5];
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "length");
    assert_eq!(last["eval_count"], 5);
    let ns = |k: &str| last[k].as_u64().unwrap() as f64;
    assert!(ns("load_duration") >= 200e6, "the first request loads the model");
    let tps = ns("eval_count") / ns("eval_duration") * 1e9;
    // Never faster than the sim's pace; slower only on a starved machine.
    assert!(tps > 0.0 && tps <= 110.0, "decode {tps} tok/s for a 100 tok/s sim");
    assert!(ns("total_duration") >= ns("load_duration") + ns("prompt_eval_duration"));
    let ps = get(&server, "/api/ps").await;
    assert_eq!(ps["models"][0]["name"], "sim-model");
    assert_eq!(ps["models"][0]["size"], ps["models"][0]["size_vram"]);
    // Once loaded, no load time; non-streamed is one object.
    let whole: Value = post(&server, &body(false, 3)).await.json().await.unwrap();
    assert_eq!(whole["done"], true);
    assert_eq!(whole["message"]["content"].as_str().unwrap().split_whitespace().count(), 3);
    assert!(whole["load_duration"].as_u64().unwrap() < 10_000_000);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn errors_are_ollama_shaped() {
    let server = TestServer::start(&["--flavour", "ollama", "--load-ms", "0"]).await;
    let missing = post(&server, &json!({"messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(missing.status(), 400);
    assert_eq!(missing.json::<Value>().await.unwrap(), json!({"error": "model is required"}));
    let unknown = post(&server, &json!({"model": "llama9", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(unknown.status(), 404);
    assert!(unknown.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("not found"));
    server.stop().await.unwrap();
    let server = TestServer::start(&["--flavour", "ollama", "--load-ms", "0", "--fault", "metal-oom=1"]).await;
    let oom = post(&server, &body(true, 3)).await;
    assert_eq!(oom.status(), 500);
    assert!(oom.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("kIOGPUCommandBuffer"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_runner_crash_drops_the_model_until_the_next_request_reloads_it() {
    let flags = ["--flavour", "ollama", "--crash-style", "ollama", "--exit-after", "2", "--load-ms", "50"];
    let server = TestServer::start(&flags).await;
    assert_eq!(post(&server, &body(true, 3)).await.status(), 200);
    assert_eq!(get(&server, "/api/ps").await["models"].as_array().unwrap().len(), 1);
    // Streamed: a few lines, then an `error` line.
    let text = post(&server, &body(true, 10)).await.text().await.unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert!(last["error"].as_str().unwrap().contains("llama runner process has terminated"), "{text}");
    assert_eq!(get(&server, "/api/ps").await["models"], json!([]));
    let reloaded: Value = post(&server, &body(false, 2)).await.json().await.unwrap();
    assert!(reloaded["load_duration"].as_u64().unwrap() >= 50_000_000, "{reloaded}");
    assert_eq!(get(&server, "/api/ps").await["models"].as_array().unwrap().len(), 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_openai_side_stays_and_other_flavours_lack_the_native_routes() {
    let server = TestServer::start(&["--flavour", "ollama", "--load-ms", "0"]).await;
    let v1 = server.chat(&json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 2})).await.unwrap();
    assert_eq!(v1.status(), 200);
    server.stop().await.unwrap();
    let server = TestServer::start(&[]).await;
    let resp = server.client.get(server.url("/api/ps")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    server.stop().await.unwrap();
}
