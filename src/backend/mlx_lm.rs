//! The `mlx-lm` kind: no server. soakd runs the mlx_lm Python library itself, in one worker
//! process per backend (the seed report's "Direct MLX-LM"), started with the configured
//! `python` on the configured model folder, and times every token it streams.
//!
//! Life of the worker. It starts when a run first describes the backend (so the sampler sees
//! its pid before the first request), imports mlx_lm and says `hello`; the model is loaded by
//! the first request it serves, which records the load as `server_load_ms` (its TTFT includes
//! the load: that request paid it). One request at a time: concurrent requests wait for the
//! worker within their first-byte limit, as they would behind a single-slot server. A worker
//! that dies is the `crash` outcome for the request it was serving ("the mlx-lm worker died:
//! signal 9 (SIGKILL) after 212 tokens"), and a `worker_exit` event. The next worker starts
//! after a backoff of 1, 2, 4 … 60 s for deaths in a row (reset by a good request); a request
//! that comes meanwhile waits for the restart when it is due within its first-byte limit, and
//! is `connect_refused` at once otherwise. Workers soakd kills itself restart at once.
//!
//! Timeouts and shutdown. The first-byte limit covers waiting for the worker, its start, the
//! model load and the prompt; the stall limit covers silence between tokens; `total` the whole.
//! A request that outruns one of them sends `cancel`; a worker that does not end the
//! generation within a second of it is killed and restarted. A request that shutdown aborts
//! sends `cancel` and leaves; `close`, at the session's end, closes the worker's stdin, waits
//! 2 s and kills it. No worker outlives soakd: it is killed when its handle is dropped, and it
//! exits by itself when its stdin closes (soakd gone). Tools are not
//! sent (this kind ignores a workload's `tools`). `temperature` and `top_p` unset mean greedy,
//! as in mlx_lm.server.
//!
//! The worker speaks JSON lines, protocol version 1: see `protocol` for the line shapes.

mod protocol;

use super::exchange::{Stop, race};
use super::worker::{self, Backoff, Ended, Worker, describe_exit};
use super::{Backend, BackendError, ChatRequest, Exchange, Failure, Observation, ServerEvent, ServerInfo};
use crate::config::{BackendConfig, ProcessSelector, WorkerPid};
use crate::measure::outcome::{Outcome, is_crash_text};
use crate::measure::timeline::{Delta, Timeline};
use crate::schedule::Workload;
use crate::shutdown::Shutdown;
use crate::text::{MAX_ERROR_BYTES, bounded};
use crate::time::Instant;
use crate::time::now_ms;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use protocol::{Done, Hello, Lines, Msg, cancel_line, generate_line, stats_line};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// How long a worker gets to end a generation after `cancel`.
const CANCEL_GRACE: Duration = Duration::from_secs(1);
/// How long a worker gets to exit by itself (after its stdout closed, or its stdin).
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// The worker's source, embedded so an installed soakd needs no file beside it.
const SCRIPT: &str = include_str!("mlx_lm_worker.py");
/// A `python -c` bootstrap that runs the script soakd sends as its first stdin line (a JSON
/// string): the command line stays short and no file is written anywhere.
const BOOTSTRAP: &str =
    "import sys,json;exec(compile(json.loads(sys.stdin.readline()),'<soakd mlx-lm worker>','exec'))";
/// How long `describe` and `observe` wait for the worker (the runner gives them 5 s).
const ASK: Duration = Duration::from_millis(4500);
/// Worker exits kept (the newest) until a failure carries them off as events.
const MAX_PENDING_EVENTS: usize = 16;

pub struct MlxLm {
    python: PathBuf,
    model: PathBuf,
    /// The model folder's name (`server_model`, `runs.server_model`).
    model_name: String,
    log: Option<PathBuf>,
    pid: WorkerPid,
    slot: tokio::sync::Mutex<Slot>,
    known: std::sync::Mutex<Known>,
}

/// The worker and its restart state; held by one request at a time.
#[derive(Default)]
struct Slot {
    live: Option<Live>,
    /// When the next worker may start.
    backoff: Backoff,
    next_id: u64,
}

struct Live {
    worker: Worker<Lines>,
    ready: bool,
    loaded: bool,
    /// A request sent whose end was not read (timed out, aborted, or its future dropped).
    busy: Option<u64>,
    served: u64,
}

/// What `describe` and `after_failure` tell without waiting for the worker.
#[derive(Default)]
struct Known {
    hello: Option<Hello>,
    starts: u64,
    last_exit: Option<Value>,
    events: Vec<ServerEvent>,
}

impl MlxLm {
    pub fn new(config: &BackendConfig) -> Result<Self, BackendError> {
        let missing = |field: &'static str| BackendError::Worker { backend: config.name.clone(), field };
        let python = config.python.clone().ok_or_else(|| missing("python"))?;
        let model = PathBuf::from(config.model.clone().ok_or_else(|| missing("model"))?);
        let ProcessSelector::Worker(pid) = &config.process else { return Err(missing("process")) };
        let model_name = model.file_name().map_or_else(|| model.display().to_string(), |n| n.to_string_lossy().into());
        Ok(MlxLm {
            python,
            model,
            model_name,
            log: config.log.clone(),
            pid: pid.clone(),
            slot: tokio::sync::Mutex::new(Slot::default()),
            known: std::sync::Mutex::new(Known::default()),
        })
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn exchange(&self, req: ChatRequest<'_>, tl: &mut Timeline, shutdown: &Shutdown) -> Result<(), Failure> {
        let w = req.workload;
        let start = tl.start();
        let total = start + w.timeouts.total;
        // A non-streamed reply comes whole at the end: only `total` bounds it.
        let first = if w.stream { (start + w.timeouts.first_byte).min(total) } else { total };
        let mut slot = match race(self.slot.lock(), first, shutdown).await {
            Ok(slot) => slot,
            Err(Stop::Aborted) => return Err(Failure::new(Outcome::Cancelled, "soakd shut down")),
            Err(Stop::Deadline) => {
                let waited = first.saturating_duration_since(start).as_millis();
                let text = format!("waited {waited} ms for the mlx-lm worker, busy with another request");
                return Err(Failure::new(Outcome::NoFirstByte, text));
            }
        };
        self.ready(&mut slot, first, shutdown).await?;
        slot.next_id += 1;
        let id = slot.next_id;
        let live = slot.live.as_mut().expect("a ready worker");
        if live.worker.send(&generate_line(id, req)).is_err() {
            return Err(self.died(&mut slot, tl).await);
        }
        live.busy = Some(id);
        let mut last = Instant::now();
        loop {
            let live = slot.live.as_mut().expect("a running worker");
            let deadline = match (w.stream, tl.deltas()) {
                (false, _) => total,
                (true, 0) => first,
                (true, _) => (last + w.timeouts.stall).min(total),
            };
            let got = race(live.worker.recv(), deadline, shutdown).await;
            let now = Instant::now();
            match got {
                Err(Stop::Deadline) => {
                    tl.ended(now);
                    let failure = self.overdue(tl, live.loaded, start, total, w);
                    self.settle(&mut slot).await;
                    return Err(failure);
                }
                Err(Stop::Aborted) => {
                    let _ = live.worker.send(&cancel_line(id));
                    return Err(Failure::new(Outcome::Cancelled, "soakd shut down mid-generation"));
                }
                Ok(None) => return Err(self.died(&mut slot, tl).await),
                Ok(Some(Err(e))) => {
                    tl.ended(now);
                    self.kill(&mut slot, &format!("it broke the protocol: {e}")).await;
                    return Err(Failure::new(Outcome::Malformed, format!("the mlx-lm worker sent {e}")));
                }
                Ok(Some(Ok(msg))) => match msg {
                    Msg::Token { id: of, text } if of == id => {
                        tl.delta(Delta::Content, &text, now);
                        last = Instant::now();
                    }
                    Msg::Loaded { load_ms, .. } => {
                        tl.server.load_ms = Some(load_ms);
                        live.loaded = true;
                    }
                    Msg::Done(done) if done.id == id => {
                        live.busy = None;
                        live.served += 1;
                        slot.backoff.reset();
                        return self.finish(done, w.stream, tl, now);
                    }
                    Msg::Error { id: Some(of), error } if of == id => {
                        live.busy = None;
                        tl.ended(now);
                        let outcome =
                            if is_crash_text(&error) { Outcome::ServerReportedCrash } else { Outcome::StreamError };
                        return Err(Failure::new(outcome, bounded(&format!("mlx_lm: {error}"), MAX_ERROR_BYTES)));
                    }
                    Msg::Fatal { error, .. } => {
                        tl.ended(now);
                        let exit = self.bury_after(&mut slot, None, "a request").await;
                        let outcome =
                            if is_crash_text(&error) { Outcome::ServerReportedCrash } else { Outcome::StreamError };
                        let text = format!("the mlx-lm worker stopped: {error} ({exit})");
                        return Err(Failure::new(outcome, bounded(&text, MAX_ERROR_BYTES)));
                    }
                    // Another request's leftovers, a late stats answer.
                    _ => {}
                },
            }
        }
    }

    /// A request's deadline passed: which limit it was.
    fn overdue(&self, tl: &Timeline, loaded: bool, start: Instant, total: Instant, w: &Workload) -> Failure {
        let (stream, stall) = (w.stream, w.timeouts.stall);
        let elapsed = start.elapsed().as_millis();
        let tokens = tl.deltas();
        if tokens == 0 {
            let doing = if tl.server.load_ms.is_none() && !loaded { " (the model was still loading)" } else { "" };
            let what = if stream { "no token" } else { "no reply" };
            return Failure::new(
                Outcome::NoFirstByte,
                format!("{what} from the mlx-lm worker within {elapsed} ms{doing}"),
            );
        }
        if Instant::now() >= total {
            return Failure::new(Outcome::Timeout, format!("still generating after {elapsed} ms, {tokens} tokens"));
        }
        Failure::new(Outcome::Stall, format!("no token for {} ms mid-stream, after {tokens} tokens", stall.as_millis()))
    }

    /// A done line: the reply and mlx_lm's own numbers.
    fn finish(&self, d: Done, stream: bool, tl: &mut Timeline, now: Instant) -> Result<(), Failure> {
        if !stream {
            tl.first_byte(now);
        }
        if !d.text.is_empty() {
            tl.whole_reply(&d.text);
        }
        tl.ended(now);
        tl.usage(d.prompt_tokens, d.completion_tokens);
        tl.finish_reason = Some(d.finish_reason.clone());
        tl.server_model = Some(bounded(&self.model_name, 256));
        let s = &mut tl.server;
        s.prompt_tokens = d.prompt_tokens;
        s.completion_tokens = Some(d.completion_tokens);
        s.decode_tps = d.generation_tps;
        s.prompt_ms = match (d.prompt_tokens, d.prompt_tps) {
            (Some(n), Some(tps)) if tps > 0.0 => Some(f64::from(n) / tps * 1000.0),
            _ => None,
        };
        s.ttft_ms = d.ttft_ms;
        s.total_ms = d.total_ms;
        s.stop_reason = Some(d.finish_reason.clone());
        s.peak_memory_bytes = d.memory.peak_bytes;
        tl.server_timings = Some(json!({"mlx_lm": {
            "prompt_tokens": d.prompt_tokens, "prompt_tps": d.prompt_tps, "generation_tokens": d.completion_tokens,
            "generation_tps": d.generation_tps, "ttft_ms": d.ttft_ms, "total_ms": d.total_ms, "load_ms": s.load_ms,
            "peak_bytes": d.memory.peak_bytes, "active_bytes": d.memory.active_bytes, "cache_bytes": d.memory.cache_bytes,
        }}));
        if d.finish_reason == "cancelled" {
            return Err(Failure::new(Outcome::Cancelled, "the mlx-lm worker cancelled the generation"));
        }
        if d.completion_tokens == 0 && d.text.is_empty() {
            let text = format!("no content (finish_reason: {})", d.finish_reason);
            return Err(Failure::new(Outcome::Empty, text));
        }
        Ok(())
    }

    /// Brings the slot to a worker that said hello: settles leftovers, buries a worker that
    /// died while idle, starts a new one (after the backoff), waits for its hello.
    async fn ready(&self, slot: &mut Slot, deadline: Instant, shutdown: &Shutdown) -> Result<(), Failure> {
        loop {
            let Some(live) = slot.live.as_mut() else {
                self.start(slot, deadline, shutdown).await?;
                continue;
            };
            if live.worker.exited().is_some() {
                self.bury_after(slot, None, "idle").await;
                continue;
            }
            if live.busy.is_some() {
                self.settle(slot).await;
                continue;
            }
            if live.ready {
                return Ok(());
            }
            match race(live.worker.recv(), deadline, shutdown).await {
                Err(Stop::Aborted) => return Err(Failure::new(Outcome::Cancelled, "soakd shut down")),
                Err(Stop::Deadline) => {
                    let text =
                        format!("the mlx-lm worker (pid {}) was not ready in time (importing mlx_lm)", live.worker.pid);
                    return Err(Failure::new(Outcome::NoFirstByte, text));
                }
                Ok(Some(Ok(Msg::Hello(hello)))) => {
                    live.ready = true;
                    tracing::info!(pid = live.worker.pid, mlx = ?hello.mlx, mlx_lm = ?hello.mlx_lm, "the mlx-lm worker is ready");
                    self.known().hello = Some(hello);
                }
                Ok(Some(Ok(Msg::Fatal { error, .. }))) => {
                    let exit = self.bury_after(slot, None, "starting").await;
                    let text =
                        bounded(&format!("the mlx-lm worker could not start: {error} ({exit})"), MAX_ERROR_BYTES);
                    return Err(Failure::new(Outcome::ConnectError, text));
                }
                Ok(None) => {
                    let words = live.worker.last_words();
                    let exit = self.bury_after(slot, None, "starting").await;
                    let text = bounded(
                        &format!("the mlx-lm worker exited before it was ready: {exit}: {words}"),
                        MAX_ERROR_BYTES,
                    );
                    return Err(Failure::new(Outcome::ConnectError, text));
                }
                Ok(Some(Err(e))) => {
                    self.kill(slot, &format!("it broke the protocol: {e}")).await;
                    return Err(Failure::new(Outcome::Malformed, format!("the mlx-lm worker sent {e}")));
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Starts a worker, after the backoff if it is due before `deadline`.
    async fn start(&self, slot: &mut Slot, deadline: Instant, shutdown: &Shutdown) -> Result<(), Failure> {
        if let Some(at) = slot.backoff.pending() {
            if at > deadline {
                let last = self.known().last_exit.as_ref().and_then(|e| e["exit"].as_str().map(String::from));
                let text = format!(
                    "the mlx-lm worker is down (it ended: {}); the next start is in {} ms",
                    last.as_deref().unwrap_or("unknown"),
                    at.saturating_duration_since(Instant::now()).as_millis()
                );
                return Err(Failure::new(Outcome::ConnectRefused, text));
            }
            if let Err(Stop::Aborted) = race(tokio::time::sleep_until(at), deadline, shutdown).await {
                return Err(Failure::new(Outcome::Cancelled, "soakd shut down"));
            }
        }
        let mut python = tokio::process::Command::new(&self.python);
        python
            .arg("-c")
            .arg(BOOTSTRAP)
            .arg(&self.model)
            // The model is a local folder: never reach for the Hugging Face hub.
            .env("HF_HUB_OFFLINE", "1")
            .env("PYTHONUNBUFFERED", "1")
            // The protocol is UTF-8 whatever the locale (a launchd job has none).
            .env("PYTHONIOENCODING", "utf-8");
        let script = format!("{}\n", Value::from(SCRIPT));
        match Worker::spawn(python, Some(script), self.log.as_deref(), &self.pid) {
            Ok(worker) => {
                tracing::info!(pid = worker.pid, python = %self.python.display(), model = %self.model.display(), "mlx-lm worker started");
                self.known().starts += 1;
                slot.live = Some(Live { worker, ready: false, loaded: false, busy: None, served: 0 });
                Ok(())
            }
            Err(e) => {
                slot.backoff.died();
                let text = format!("cannot start the mlx-lm worker with {}: {e}", self.python.display());
                self.known().last_exit = Some(json!({"exit": format!("could not start: {e}"), "at": now_ms()}));
                Err(Failure::new(Outcome::ConnectError, text))
            }
        }
    }

    /// After a request's deadline: cancels what the worker is still generating; a worker that
    /// does not stop within `CANCEL_GRACE` is killed.
    async fn settle(&self, slot: &mut Slot) {
        let Some(live) = slot.live.as_mut() else { return };
        let Some(id) = live.busy else { return };
        let _ = live.worker.send(&cancel_line(id));
        let until = Instant::now() + CANCEL_GRACE;
        loop {
            match tokio::time::timeout_at(until, live.worker.recv()).await {
                Err(_) => return self.kill(slot, "it did not stop generating within 1 s of a cancel").await,
                Ok(None) => {
                    self.bury_after(slot, None, "cancelling a request").await;
                    return;
                }
                Ok(Some(Err(e))) => return self.kill(slot, &format!("it broke the protocol: {e}")).await,
                Ok(Some(Ok(Msg::Done(Done { id: of, .. }) | Msg::Error { id: Some(of), .. }))) if of == id => {
                    live.busy = None;
                    return;
                }
                Ok(Some(Ok(Msg::Loaded { .. }))) => live.loaded = true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The worker's stdout closed while serving a request: it died. The `crash` outcome.
    async fn died(&self, slot: &mut Slot, tl: &mut Timeline) -> Failure {
        tl.ended(Instant::now());
        let words = slot.live.as_ref().map(|l| l.worker.last_words()).unwrap_or_default();
        let exit = self.bury_after(slot, None, &format!("a request, after {} tokens", tl.deltas())).await;
        // A SIGKILL comes from outside (the OOM killer, a person): the worker's last words are
        // not about it, and would only split the error's signature.
        let said =
            if words.is_empty() || exit.contains("SIGKILL") { String::new() } else { format!("; stderr: {words}") };
        let text = format!("the mlx-lm worker died: {exit}, after {} tokens{said}", tl.deltas());
        Failure::new(Outcome::Crash, bounded(&text, MAX_ERROR_BYTES))
    }

    /// Kills the worker (soakd's own decision, so the next one starts at once).
    async fn kill(&self, slot: &mut Slot, why: &str) {
        if let Some(live) = slot.live.as_mut() {
            live.worker.kill();
        }
        self.bury_after(slot, Some(why), "").await;
    }

    /// Waits for the worker's exit, records it, and empties the slot. A death soakd did not
    /// cause (`by_soakd` None) counts toward the backoff. Returns the exit in words.
    async fn bury_after(&self, slot: &mut Slot, by_soakd: Option<&str>, during: &str) -> String {
        let Some(mut live) = slot.live.take() else { return describe_exit(None) };
        let Ended { exit, event } =
            worker::end(&mut live.worker, &mut slot.backoff, by_soakd, during, live.served, EXIT_GRACE).await;
        if self.pid.get() == Some(live.worker.pid) {
            self.pid.set(None);
        }
        let mut known = self.known();
        known.last_exit = Some(event.detail.clone());
        if known.events.len() == MAX_PENDING_EVENTS {
            known.events.remove(0);
        }
        known.events.push(event);
        exit
    }

    async fn ask_stats(&self) -> Vec<Observation> {
        let Ok(mut slot) = tokio::time::timeout(ASK, self.slot.lock()).await else { return Vec::new() };
        slot.next_id += 1;
        let id = slot.next_id;
        let Some(live) = slot.live.as_mut().filter(|l| l.ready && l.busy.is_none() && l.worker.exited().is_none())
        else {
            return Vec::new();
        };
        if live.worker.send(&stats_line(id)).is_err() {
            return Vec::new();
        }
        let until = Instant::now() + Duration::from_secs(2);
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(until, live.worker.recv()).await {
            if let Msg::Stats { id: Some(of), loaded, memory } = msg
                && of == id
            {
                let data = json!({
                    "active_bytes": memory.active_bytes, "peak_bytes": memory.peak_bytes, "cache_bytes": memory.cache_bytes,
                    "model_loaded": loaded, "pid": live.worker.pid, "requests_served": live.served,
                    "lived_ms": live.worker.started.elapsed().as_millis() as u64,
                });
                return vec![Observation {
                    source: "worker",
                    memory_bytes: memory.active_bytes,
                    gpu_memory_bytes: memory.peak_bytes,
                    data,
                }];
            }
        }
        Vec::new()
    }

    async fn info(&self) -> ServerInfo {
        if let Ok(mut slot) = tokio::time::timeout(ASK, self.slot.lock()).await
            && let Err(f) = self.ready(&mut slot, Instant::now() + ASK, &Shutdown::new()).await
        {
            tracing::warn!(model = %self.model.display(), "the mlx-lm worker could not describe itself: {}", f.error);
        }
        let known = self.known();
        let h = known.hello.clone().unwrap_or_default();
        let version = match (&h.mlx, &h.mlx_lm) {
            (None, None) => None,
            (mlx, lm) => {
                Some(format!("mlx {} / mlx-lm {}", mlx.as_deref().unwrap_or("?"), lm.as_deref().unwrap_or("?")))
            }
        };
        ServerInfo {
            version,
            model: Some(self.model_name.clone()),
            detail: json!({
                "mlx": h.mlx, "mlx_lm": h.mlx_lm, "python": h.python, "device": h.device,
                "python_path": self.python.display().to_string(), "model_path": self.model.display().to_string(),
                "protocol": protocol::PROTOCOL, "worker_pid": self.pid.get(), "worker_starts": known.starts,
                "last_exit": known.last_exit,
            }),
        }
    }
}

impl Backend for MlxLm {
    fn chat<'a>(
        &'a self,
        request: ChatRequest<'a>,
        timeline: &'a mut Timeline,
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Exchange> {
        async move {
            let result = self.exchange(request, timeline, shutdown).await;
            Exchange { http_status: None, attempts: 1, tool_call_seen: false, tool_call_valid: None, result }
        }
        .boxed()
    }

    fn describe(&self) -> BoxFuture<'_, ServerInfo> {
        self.info().boxed()
    }

    fn observe(&self) -> BoxFuture<'_, Vec<Observation>> {
        self.ask_stats().boxed()
    }

    fn after_failure<'a>(&'a self, _failure: &'a Failure) -> BoxFuture<'a, Vec<ServerEvent>> {
        let events = std::mem::take(&mut self.known().events);
        Box::pin(async move { events })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async move {
            let mut slot = self.slot.lock().await;
            if let Some(mut live) = slot.live.take() {
                if let Some(id) = live.busy {
                    let _ = live.worker.send(&cancel_line(id));
                }
                let status = live.worker.stop(EXIT_GRACE).await;
                tracing::debug!(pid = live.worker.pid, exit = %describe_exit(status), "mlx-lm worker stopped");
                if self.pid.get() == Some(live.worker.pid) {
                    self.pid.set(None);
                }
            }
        }
        .boxed()
    }
}
