//! Kind `mlx`: a model run in-process by MLX, in soakd's own worker process (`soakd
//! mlx-worker`, protocol in `crate::mlx::worker`). One worker per backend for the session; its
//! requests queue on it one at a time. The worker's death (MLX aborts the process on some GPU
//! errors) is a `crash` with its signal; the next request starts a new worker after the shared
//! backoff (`backend::worker`: 1, 2, 4 … 60 s for deaths in a row). A request that times out or
//! is cancelled kills the worker (a generation cannot be interrupted), which restarts at once.
//!
//! Each worker's end is a `worker_exit` event (pid, how it ended, why soakd ended it if it did,
//! what it was doing). Per request it records the worker's own numbers: TTFT, decode tokens/s, MLX peak memory
//! (`server_peak_bytes`), and on the first request of each worker its load time
//! (`server_load_ms`). `observe` reports MLX's active and peak memory (source `worker`).

mod process;

use super::exchange::{Stop, race};
use super::worker::{self, Backoff, Ended, Worker, describe_exit};
use super::{Backend, ChatRequest, Exchange, Failure, Observation, ServerEvent, ServerInfo};
use crate::config::{BackendConfig, ProcessSelector, WorkerPid};
use crate::measure::outcome::Outcome;
use crate::measure::timeline::{Delta, Timeline};
use crate::shutdown::Shutdown;
use crate::time::Instant;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use process::JsonLines;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// How long a worker gets to exit by itself (after its output closed, or its stdin).
const EXIT_GRACE: Duration = Duration::from_secs(2);

pub struct Mlx {
    model: PathBuf,
    exe: Option<PathBuf>,
    pid: WorkerPid,
    state: tokio::sync::Mutex<State>,
    /// `worker_exit` events not yet collected by `noticed`.
    pending: std::sync::Mutex<Vec<ServerEvent>>,
}

#[derive(Default)]
struct State {
    worker: Option<Live>,
    /// When the next worker may start.
    backoff: Backoff,
}

struct Live {
    worker: Worker<JsonLines>,
    /// The load time from `ready`, until the first request takes it.
    load_ms: Option<f64>,
    served: u64,
}

fn exchange(result: Result<(), Failure>) -> Exchange {
    Exchange { http_status: None, attempts: 1, tool_call_seen: false, tool_call_valid: None, result }
}

fn fail(outcome: Outcome, error: impl Into<String>) -> Result<(), Failure> {
    Err(Failure::new(outcome, error))
}

impl Mlx {
    pub fn new(config: &BackendConfig) -> Mlx {
        let pid = match &config.process {
            ProcessSelector::Worker(p) => p.clone(),
            _ => WorkerPid::default(),
        };
        Mlx {
            model: PathBuf::from(config.model.clone().unwrap_or_default()),
            exe: std::env::current_exe().ok(),
            pid,
            state: tokio::sync::Mutex::new(State::default()),
            pending: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A running worker in `st`, started (and its `ready` awaited) if needed.
    async fn ensure_worker(&self, st: &mut State, deadline: Instant, shutdown: &Shutdown) -> Result<(), Failure> {
        if st.worker.is_some() {
            return Ok(());
        }
        if let Some(t) = st.backoff.pending() {
            race(tokio::time::sleep_until(t), deadline, shutdown)
                .await
                .map_err(|_| Failure::new(Outcome::Timeout, "waiting to restart the crashed mlx worker"))?;
        }
        let exe =
            self.exe.as_ref().ok_or_else(|| Failure::new(Outcome::ConnectError, "cannot find soakd's own binary"))?;
        let worker = Worker::spawn(process::command(exe, &self.model), None, None, &self.pid).map_err(|e| {
            st.backoff.died();
            Failure::new(Outcome::ConnectError, format!("cannot start the mlx worker: {e}"))
        })?;
        st.worker = Some(Live { worker, load_ms: None, served: 0 });
        let live = st.worker.as_mut().expect("just started");
        let ready = match race(live.worker.recv(), deadline, shutdown).await {
            Ok(Some(Ok(v))) => v,
            Ok(None) => {
                let how = self.end(st, None, "loading the model").await;
                return Err(Failure::new(Outcome::Crash, format!("while loading the model: {how}")));
            }
            Ok(Some(Err(e))) => {
                self.end(st, Some("it broke the protocol"), "loading the model").await;
                return Err(Failure::new(Outcome::Malformed, e.to_string()));
            }
            Err(stop) => {
                self.end(st, Some("loading took too long, or soakd shut down"), "loading the model").await;
                return Err(match stop {
                    Stop::Deadline => Failure::new(Outcome::Timeout, "the mlx worker was still loading the model"),
                    Stop::Aborted => Failure::new(Outcome::Cancelled, "soakd shut down"),
                });
            }
        };
        if ready["event"] != "ready" {
            let msg = ready["message"].as_str().unwrap_or("no ready line").to_string();
            let how = self.end(st, None, "loading the model").await;
            return Err(Failure::new(
                Outcome::ConnectError,
                format!("the mlx worker could not load the model: {msg} ({how})"),
            ));
        }
        live_mut(st).load_ms = ready["load_ms"].as_f64();
        Ok(())
    }

    /// Ends the worker in `st` and records how (`worker_exit`): killed at once when soakd gives
    /// up on it (`by_soakd` says why), else waited for; a death soakd did not cause counts toward
    /// the backoff. Returns how it ended, in words, with its last stderr lines.
    async fn end(&self, st: &mut State, by_soakd: Option<&str>, during: &str) -> String {
        let Some(mut live) = st.worker.take() else { return describe_exit(None) };
        let Ended { exit, event } =
            worker::end(&mut live.worker, &mut st.backoff, by_soakd, during, live.served, EXIT_GRACE).await;
        let stderr = live.worker.last_words();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(event);
        if stderr.is_empty() { exit } else { format!("{exit}; its stderr ended with: {stderr}") }
    }

    async fn run(&self, req: ChatRequest<'_>, tl: &mut Timeline, shutdown: &Shutdown) -> Result<(), Failure> {
        let start = tl.start();
        let t = &req.workload.timeouts;
        let total = start + t.total;
        let mut st = race(self.state.lock(), total, shutdown).await.map_err(|s| match s {
            Stop::Deadline => Failure::new(Outcome::Timeout, "queued behind other requests to the mlx worker"),
            Stop::Aborted => Failure::new(Outcome::Cancelled, "soakd shut down"),
        })?;
        self.ensure_worker(&mut st, total, shutdown).await?;
        let mut messages = Vec::new();
        if let Some(s) = &req.workload.system {
            messages.push(json!({"role": "system", "content": s}));
        }
        messages.push(json!({"role": "user", "content": req.prompt.text}));
        let request = json!({
            "op": "generate",
            "messages": messages,
            "max_tokens": req.workload.max_tokens,
            "temperature": req.workload.temperature.unwrap_or(0.0),
            "top_p": req.workload.top_p.unwrap_or(1.0),
        });
        let live = live_mut(&mut st);
        let load_ms = live.load_ms.take();
        if let Err(e) = live.worker.send(&format!("{request}\n")) {
            return self.died(&mut st, format!("writing the request: {e}")).await;
        }
        let mut deadline = (start + t.first_byte).min(total);
        loop {
            let event = match race(live_mut(&mut st).worker.recv(), deadline, shutdown).await {
                Ok(Some(Ok(v))) => v,
                Ok(None) => return self.died(&mut st, String::new()).await,
                Ok(Some(Err(e))) => return self.drop_worker(&mut st, Outcome::Malformed, e.to_string()).await,
                Err(Stop::Aborted) => return self.drop_worker(&mut st, Outcome::Cancelled, "soakd shut down").await,
                Err(Stop::Deadline) => {
                    let (outcome, what) = if Instant::now() >= total {
                        (Outcome::Timeout, format!("still generating after {} ms", t.total.as_millis()))
                    } else if tl.deltas() == 0 {
                        (Outcome::NoFirstByte, format!("no token within {} ms", t.first_byte.as_millis()))
                    } else {
                        (Outcome::Stall, format!("no token for {} ms mid-generation", t.stall.as_millis()))
                    };
                    return self.drop_worker(&mut st, outcome, what).await;
                }
            };
            let now = Instant::now();
            tl.first_byte(now);
            match event["event"].as_str() {
                Some("token") => {
                    tl.delta(Delta::Content, event["text"].as_str().unwrap_or(""), now);
                    deadline = (Instant::now() + t.stall).min(total);
                }
                Some("done") => {
                    tl.ended(now);
                    st.backoff.reset();
                    live_mut(&mut st).served += 1;
                    record_done(tl, &event, load_ms);
                    if tl.output().is_empty() {
                        return fail(Outcome::Empty, "the reply has no content");
                    }
                    return Ok(());
                }
                // A late answer to an `observe` that gave up waiting.
                Some("stats") => {}
                Some("error") => {
                    let msg = event["message"].as_str().unwrap_or("(no message)");
                    return fail(Outcome::StreamError, crate::text::bounded(msg, 2000));
                }
                _ => {
                    let what = format!("unexpected worker line: {}", crate::text::bounded(&event.to_string(), 300));
                    return self.drop_worker(&mut st, Outcome::Malformed, what).await;
                }
            }
        }
    }

    /// The worker's output closed: it died. A `crash`, with how it ended.
    async fn died(&self, st: &mut State, context: String) -> Result<(), Failure> {
        let how = self.end(st, None, "a request").await;
        let msg = if context.is_empty() { how } else { format!("{how} ({context})") };
        fail(Outcome::Crash, format!("the mlx worker died: {msg}"))
    }

    /// Ends a worker soakd gives up on (timeout, cancel, garbage): the next request starts anew.
    async fn drop_worker(&self, st: &mut State, outcome: Outcome, what: impl Into<String>) -> Result<(), Failure> {
        let what = what.into();
        self.end(st, Some(&format!("{outcome}: {what}")), "a request").await;
        fail(outcome, what)
    }
}

/// The worker `ensure_worker` made sure of.
fn live_mut(st: &mut State) -> &mut Live {
    st.worker.as_mut().expect("a worker: ensure_worker ran")
}

/// The worker's `done` line into the timeline's counts and server numbers.
fn record_done(tl: &mut Timeline, done: &Value, load_ms: Option<f64>) {
    let n = |k: &str| done[k].as_f64().filter(|v| v.is_finite() && *v >= 0.0);
    let completion = n("completion_tokens").map(|v| v as u32).unwrap_or(0);
    let prompt = n("prompt_tokens").map(|v| v as u32);
    tl.usage(prompt, completion);
    tl.finish_reason = done["finish_reason"].as_str().map(|s| crate::text::bounded(s, 32));
    let s = &mut tl.server;
    s.prompt_tokens = prompt;
    s.completion_tokens = Some(completion);
    s.ttft_ms = n("ttft_ms");
    s.decode_tps = n("decode_tps");
    s.total_ms = n("total_ms");
    s.peak_memory_bytes = n("peak_bytes").map(|v| v as u64);
    s.stop_reason = tl.finish_reason.clone();
    s.load_ms = load_ms;
    let mut kept = done.clone();
    if let Some(o) = kept.as_object_mut() {
        o.remove("event");
        o.remove("token_ids");
        if let Some(l) = load_ms {
            o.insert("load_ms".into(), json!(l));
        }
    }
    tl.server_timings = Some(json!({ "mlx": kept }));
}

impl Backend for Mlx {
    fn chat<'a>(
        &'a self,
        request: ChatRequest<'a>,
        timeline: &'a mut Timeline,
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Exchange> {
        async move { exchange(self.run(request, timeline, shutdown).await) }.boxed()
    }

    fn describe(&self) -> BoxFuture<'_, ServerInfo> {
        async move {
            ServerInfo {
                version: Some(format!("MLX {}", crate::mlx::mlx_version())),
                model: Some(self.model.display().to_string()),
                detail: json!({"engine": "soakd mlx-worker (mlx-rs 0.33)", "device": device()}),
            }
        }
        .boxed()
    }

    fn observe(&self) -> BoxFuture<'_, Vec<Observation>> {
        async move {
            // Only an idle worker is asked; a busy one reports with its next reply.
            let Ok(mut st) = self.state.try_lock() else { return Vec::new() };
            let Some(live) = st.worker.as_mut() else { return Vec::new() };
            if live.worker.send(&format!("{}\n", json!({"op": "stats"}))).is_err() {
                return Vec::new();
            }
            match tokio::time::timeout(Duration::from_secs(5), live.worker.recv()).await {
                Ok(Some(Ok(v))) if v["event"] == "stats" => {
                    let n = |k: &str| v[k].as_u64();
                    vec![Observation {
                        source: "worker",
                        memory_bytes: n("active_bytes"),
                        gpu_memory_bytes: n("peak_bytes"),
                        data: json!({"active_bytes": n("active_bytes"), "peak_bytes": n("peak_bytes")}),
                    }]
                }
                _ => Vec::new(),
            }
        }
        .boxed()
    }

    fn noticed(&self) -> Vec<ServerEvent> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async move {
            let mut st = self.state.lock().await;
            if let Some(mut live) = st.worker.take() {
                live.worker.stop(EXIT_GRACE).await;
            }
        }
        .boxed()
    }
}

fn device() -> &'static str {
    if cfg!(target_os = "macos") { "gpu" } else { "cpu" }
}
