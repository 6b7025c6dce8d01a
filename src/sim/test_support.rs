//! Test helpers: start an in-process sim on 127.0.0.1 with an OS-picked port, talk to it with
//! reqwest, read SSE streams event by event with arrival times, and read this process's RSS.

use std::time::Duration;

use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{SimArgs, serve};

/// Upper bound for any single test request, so no test can hang.
pub(crate) const REQUEST_LIMIT: Duration = Duration::from_secs(20);

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    args: SimArgs,
}

/// `SimArgs` from command-line flags (plus `--jitter 0` unless given, for stable timing).
pub(crate) fn args(flags: &[&str]) -> SimArgs {
    let mut argv = vec!["sim"];
    if !flags.contains(&"--jitter") {
        argv.extend(["--jitter", "0"]);
    }
    argv.extend_from_slice(flags);
    match Flags::try_parse_from(argv) {
        Ok(flags) => flags.args,
        Err(err) => panic!("bad test flags {flags:?}: {err}"),
    }
}

/// An in-process sim server.
pub(crate) struct TestServer {
    base: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
    pub(crate) client: reqwest::Client,
}

impl TestServer {
    pub(crate) async fn start(flags: &[&str]) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, args(flags), async move {
            let _ = rx.await;
        }));
        TestServer { base: format!("http://{addr}"), shutdown: Some(tx), task, client: client() }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST a chat request.
    pub(crate) async fn chat(&self, body: &Value) -> reqwest::Result<reqwest::Response> {
        self.client.post(self.url("/v1/chat/completions")).json(body).send().await
    }

    pub(crate) async fn stats(&self) -> Value {
        let resp = self.client.get(self.url("/sim/stats")).send().await.expect("GET /sim/stats");
        resp.json().await.expect("stats JSON")
    }

    /// Shut down and wait for `serve` to return (bounded).
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("serve returns within 10 s of shutdown")
            .expect("serve task did not panic")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client that never uses a proxy and never waits forever.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(REQUEST_LIMIT).build().expect("reqwest client")
}

/// A chat body with one user message.
pub(crate) fn chat_body(max_tokens: u32, stream: bool) -> Value {
    json!({
        "model": "anything",
        "messages": [{ "role": "user", "content": "Say something, please." }],
        "max_tokens": max_tokens,
        "stream": stream,
        "stream_options": { "include_usage": true },
    })
}

/// What a streamed response delivered.
#[derive(Debug, Default)]
pub(crate) struct Sse {
    /// Raw events (blocks separated by a blank line) with their arrival time after sending.
    pub(crate) events: Vec<(Duration, String)>,
    /// The body error, when the stream broke instead of ending.
    pub(crate) error: Option<String>,
}

impl Sse {
    /// The payloads of `data:` events, in order.
    pub(crate) fn data(&self) -> Vec<&str> {
        self.events.iter().filter_map(|(_, e)| e.strip_prefix("data: ")).collect()
    }

    /// `data:` payloads that parse as JSON (everything except `[DONE]` and malformed lines).
    pub(crate) fn chunks(&self) -> Vec<Value> {
        self.data().into_iter().filter_map(|d| serde_json::from_str(d).ok()).collect()
    }

    pub(crate) fn has_done(&self) -> bool {
        self.data().contains(&"[DONE]")
    }

    /// Arrival time of the first chunk whose delta carries something.
    pub(crate) fn first_token_at(&self) -> Option<Duration> {
        self.events.iter().find_map(|(t, e)| {
            let v: Value = serde_json::from_str(e.strip_prefix("data: ")?).ok()?;
            let delta = v["choices"].get(0)?.get("delta")?.as_object()?;
            delta.keys().any(|k| k != "role").then_some(*t)
        })
    }
}

/// Send a streamed chat request and read every event (bounded by [`REQUEST_LIMIT`]).
pub(crate) async fn stream_chat(server: &TestServer, body: &Value) -> (reqwest::StatusCode, Sse) {
    let sent = Instant::now();
    let resp = server.chat(body).await.expect("streamed request accepted");
    let status = resp.status();
    (status, read_sse(resp, sent).await)
}

/// Read an SSE body, recording when each event arrived.
pub(crate) async fn read_sse(resp: reqwest::Response, sent: Instant) -> Sse {
    let mut sse = Sse::default();
    let mut pending = String::new();
    let mut body = resp.bytes_stream();
    loop {
        let next = tokio::time::timeout_at(sent + REQUEST_LIMIT, body.next()).await;
        let Ok(item) = next else {
            sse.error = Some("test timed out reading the stream".into());
            break;
        };
        match item {
            None => break,
            Some(Err(err)) => {
                sse.error = Some(format!("{err:?}"));
                break;
            }
            Some(Ok(bytes)) => {
                pending.push_str(&String::from_utf8_lossy(&bytes));
                while let Some(end) = pending.find("\n\n") {
                    let event: String = pending.drain(..end + 2).collect();
                    sse.events.push((sent.elapsed(), event.trim_end().to_string()));
                }
            }
        }
    }
    if !pending.is_empty() {
        sse.events.push((sent.elapsed(), pending));
    }
    sse
}
