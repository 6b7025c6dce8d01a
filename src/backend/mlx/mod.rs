//! Kind `mlx`: a model run in-process by MLX, in soakd's own worker process (`soakd
//! mlx-worker`, protocol in `crate::mlx::worker`). One worker per backend for the session; its
//! requests queue on it one at a time. The worker's death (MLX aborts the process on some GPU
//! errors) is a `crash` with its signal; the next request starts a new worker after a backoff
//! that doubles with each consecutive crash (250 ms … 30 s). A request that times out or is
//! cancelled kills the worker (a generation cannot be interrupted), which restarts at once.
//!
//! Each new worker after the first is a `worker_restart` event (old and new pid, how the old one
//! ended, the new one's load time). Per request it records the worker's own numbers: TTFT, decode tokens/s, MLX peak memory
//! (`server_peak_bytes`), and on the first request of each worker its load time
//! (`server_load_ms`). `observe` reports MLX's active and peak memory (source `worker`).

mod process;

use super::exchange::{Stop, race};
use super::{Backend, ChatRequest, Exchange, Failure, Observation, ServerEvent, ServerInfo};
use crate::config::{BackendConfig, ProcessSelector, WorkerPid};
use crate::measure::outcome::Outcome;
use crate::measure::timeline::{Delta, Timeline};
use crate::shutdown::Shutdown;
use crate::time::Instant;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use process::Worker;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

pub struct Mlx {
    model: PathBuf,
    exe: Option<PathBuf>,
    pid: WorkerPid,
    state: tokio::sync::Mutex<State>,
    /// `worker_restart` events not yet collected by `noticed`.
    pending: std::sync::Mutex<Vec<ServerEvent>>,
}

#[derive(Default)]
struct State {
    worker: Option<Worker>,
    /// Consecutive crashes and failed starts.
    crashes: u32,
    /// No new worker before this (backoff after a crash).
    not_before: Option<Instant>,
    /// The previous worker of this session and how it ended, for the next start's event.
    previous: Option<(Option<u32>, String)>,
}

impl State {
    fn crashed(&mut self) {
        self.crashes += 1;
        let backoff = Duration::from_millis(250) * 2u32.saturating_pow(self.crashes.saturating_sub(1).min(7));
        self.not_before = Some(Instant::now() + backoff.min(Duration::from_secs(30)));
    }
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
        if let Some(t) = st.not_before {
            race(tokio::time::sleep_until(t), deadline, shutdown)
                .await
                .map_err(|_| Failure::new(Outcome::Timeout, "waiting to restart the crashed mlx worker"))?;
        }
        let exe =
            self.exe.as_ref().ok_or_else(|| Failure::new(Outcome::ConnectError, "cannot find soakd's own binary"))?;
        let mut w = Worker::spawn(exe, &self.model)
            .map_err(|e| Failure::new(Outcome::ConnectError, format!("cannot start the mlx worker: {e}")))?;
        self.pid.set(w.pid);
        let ready = match race(w.next(), deadline, shutdown).await {
            Ok(Ok(Some(v))) => v,
            Ok(Ok(None)) => {
                self.pid.set(None);
                st.crashed();
                let pid = w.pid;
                let how = w.ended().await;
                st.previous = Some((pid, crate::text::bounded(&how, 300)));
                return Err(Failure::new(Outcome::Crash, format!("while loading the model: {how}")));
            }
            Ok(Err(e)) => {
                self.pid.set(None);
                st.crashed();
                w.stop(Duration::ZERO).await;
                return Err(Failure::new(Outcome::Malformed, e.to_string()));
            }
            Err(stop) => {
                self.pid.set(None);
                w.stop(Duration::ZERO).await;
                return Err(match stop {
                    Stop::Deadline => Failure::new(Outcome::Timeout, "the mlx worker was still loading the model"),
                    Stop::Aborted => Failure::new(Outcome::Cancelled, "soakd shut down"),
                });
            }
        };
        if ready["event"] != "ready" {
            self.pid.set(None);
            st.crashed();
            w.stop(Duration::from_secs(1)).await;
            let msg = ready["message"].as_str().unwrap_or("no ready line");
            return Err(Failure::new(Outcome::ConnectError, format!("the mlx worker could not load the model: {msg}")));
        }
        w.load_ms = ready["load_ms"].as_f64();
        if let Some((old_pid, ended)) = st.previous.take() {
            let event = ServerEvent {
                kind: "worker_restart",
                detail: json!({"old_pid": old_pid, "new_pid": w.pid, "previous_end": ended,
                               "load_ms": w.load_ms, "consecutive_crashes": st.crashes}),
            };
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(event);
        }
        st.worker = Some(w);
        Ok(())
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
        let w = st.worker.as_mut().expect("ensured");
        let load_ms = w.load_ms.take();
        if let Err(e) = w.send(&request).await {
            return self.died(&mut st, format!("writing the request: {e}")).await;
        }
        let mut deadline = (start + t.first_byte).min(total);
        loop {
            let w = st.worker.as_mut().expect("ensured");
            let event = match race(w.next(), deadline, shutdown).await {
                Ok(Ok(Some(v))) => v,
                Ok(Ok(None)) => return self.died(&mut st, String::new()).await,
                Ok(Err(e)) => return self.drop_worker(&mut st, Outcome::Malformed, e.to_string()).await,
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
                    st.crashes = 0;
                    st.not_before = None;
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
        self.pid.set(None);
        st.crashed();
        let old_pid = st.worker.as_ref().and_then(|w| w.pid);
        let how = match st.worker.take() {
            Some(w) => w.ended().await,
            None => "the mlx worker is gone".to_string(),
        };
        st.previous = Some((old_pid, crate::text::bounded(&how, 300)));
        let msg = if context.is_empty() { how } else { format!("{how} ({context})") };
        fail(Outcome::Crash, msg)
    }

    /// Ends a worker soakd gives up on (timeout, cancel, garbage): the next request starts anew.
    async fn drop_worker(&self, st: &mut State, outcome: Outcome, what: impl Into<String>) -> Result<(), Failure> {
        self.pid.set(None);
        let what = what.into();
        if let Some(w) = st.worker.take() {
            st.previous = Some((w.pid, format!("stopped by soakd: {outcome}")));
            w.stop(Duration::ZERO).await;
        }
        fail(outcome, what)
    }
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
            let Some(w) = st.worker.as_mut() else { return Vec::new() };
            if w.send(&json!({"op": "stats"})).await.is_err() {
                return Vec::new();
            }
            match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
                Ok(Ok(Some(v))) if v["event"] == "stats" => {
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
            if let Some(w) = st.worker.take() {
                self.pid.set(None);
                w.stop(Duration::from_secs(2)).await;
            }
        }
        .boxed()
    }
}

fn device() -> &'static str {
    if cfg!(target_os = "macos") { "gpu" } else { "cpu" }
}
