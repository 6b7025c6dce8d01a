//! The workload runner: one firing of one job at one backend. `concurrency` workers share the
//! job's `requests`; each either waits `delay` after its previous request (closed loop) or
//! starts on a fixed timetable of `rate_per_s` (open loop, where `intended_at` shows how late a
//! busy server made a request start). Bounded by the request count and `max_duration`.
//!
//! Every request is written when it starts (`in_flight`) and completed when it ends, so a
//! soakd that dies mid-run leaves a trace that the next start marks `interrupted`.

use super::evidence::{Cause, Collector};
use super::sampler::SamplerHandle;
use crate::backend::{Adapters, Backend, ChatRequest, Exchange, Failure};
use crate::config::BackendConfig;
use crate::measure::Timeline;
use crate::measure::{EventKind, Outcome, Phase, Trigger};
use crate::schedule::Job;
use crate::shutdown::Shutdown;
use crate::store::WriterHandle;
use crate::store::rows::{
    Event, Evidence, EvidenceItem, RequestEnd, RequestStart, RunKey, RunServer, RunStart, RunStatus, ServerSample,
};
use crate::text::{MAX_ERROR_BYTES, bounded, signature};
use crate::time::Instant;
use crate::time::{Stamp, ms_between, now_ms};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Called with each finished request's outcome (progress bars).
pub type OnOutcome = Arc<dyn Fn(Outcome) + Send + Sync>;

/// What to run.
pub struct RunSpec<'a> {
    pub job: &'a Job,
    pub backend: &'a BackendConfig,
    pub trigger: Trigger,
    /// The instant the schedule fired (unix ms).
    pub planned_at: i64,
}

/// What a run at one backend works with: the session's writer and adapters, and the
/// backend's sampler and evidence collector.
#[derive(Clone)]
pub struct Target {
    pub writer: WriterHandle,
    /// The machine's measurement lock and in-flight count, shared by every backend's runs.
    pub machine: Arc<super::machine::Machine>,
    pub sampler: SamplerHandle,
    pub adapters: Arc<Adapters>,
    pub evidence: Arc<Collector>,
}

/// How long a run waits for the server to describe or observe itself.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// The run, as the writer knows it (`WriterHandle::run_id` gives its row id).
    pub run: Option<RunKey>,
    pub status: RunStatus,
    pub requests_done: u32,
}

/// Runs one workload to its end (or until shutdown) and records everything.
pub async fn run(spec: RunSpec<'_>, target: &Target, shutdown: &Shutdown, on_outcome: Option<OnOutcome>) -> RunResult {
    let w = &spec.job.workload;
    let (writer, sampler) = (&target.writer, &target.sampler);
    let adapter = match target.adapters.get(spec.backend, &w.timeouts) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(job = %spec.job.name, backend = %spec.backend.name, "{e}");
            writer.event(Event {
                backend: Some(spec.backend.name.clone()),
                kind: EventKind::RunFailed,
                at: now_ms(),
                detail: json!({"job": spec.job.name, "error": e.to_string()}),
            });
            return RunResult { run: None, status: RunStatus::Skipped, requests_done: 0 };
        }
    };
    // The machine first: alone unless the job says otherwise, in fire order, for at most max_wait.
    let asked = now_ms();
    let max_wait = spec.job.max_wait(chrono::Local::now());
    let waited = target.machine.turn(spec.job.exclusive, &spec.job.name, &spec.backend.name, max_wait);
    let _turn = tokio::select! {
        turn = waited => match turn {
            Ok(turn) => turn,
            Err(busy) => {
                tracing::warn!(job = %spec.job.name, backend = %spec.backend.name, "skipped: {busy}");
                let run = writer.begin_run(skipped_run(&spec, asked, &busy.to_string()));
                writer.end_run(run, RunStatus::Skipped, now_ms(), 0);
                return RunResult { run: Some(run), status: RunStatus::Skipped, requests_done: 0 };
            }
        },
        _ = shutdown.stopping() => return RunResult { run: None, status: RunStatus::Cancelled, requests_done: 0 },
    };
    let started = now_ms();
    let detail = json!({
        "file": spec.job.file.display().to_string(),
        "cron": spec.job.cron.written,
        "rate_per_s": w.rate,
        "temperature": w.temperature,
        "prompts": w.prompts.iter().map(|p| &p.name).collect::<Vec<_>>(),
        "tools": w.tools.is_some(),
        "timeouts_ms": {
            "connect": w.timeouts.connect.as_millis() as u64,
            "first_byte": w.timeouts.first_byte.as_millis() as u64,
            "stall": w.timeouts.stall.as_millis() as u64,
            "total": w.timeouts.total.as_millis() as u64,
        },
    });
    let run = writer.begin_run(run_row(&spec, started, sampler.pid().await, detail));
    tracing::info!(job = %spec.job.name, backend = %spec.backend.name, run = run.0, requests = w.requests, "run started");
    let ask = async {
        let known = describe(adapter.as_ref(), writer, run).await;
        observe(adapter.as_ref(), writer, &spec.backend.name, run, Phase::Before).await;
        known
    };
    let version_known = tokio::select! {
        known = ask => known,
        _ = shutdown.stopping() => true,
    };

    // Each worker is a task of its own: a reply's bytes wake only the worker that reads it.
    let ctx = Arc::new(Worker {
        job: spec.job.clone(),
        backend: spec.backend.name.clone(),
        run,
        adapter: adapter.clone(),
        target: target.clone(),
        shutdown: shutdown.clone(),
        on_outcome,
        next: AtomicU32::new(0),
        done: AtomicU32::new(0),
        begin: Instant::now(),
    });
    // An HTTP server's workers are spread over the measuring threads; a worker process's
    // requests take turns anyway, so they stay on this one.
    let threads = if spec.backend.kind.is_worker() { 1 } else { crate::threads::count() };
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..w.concurrency {
        let ctx = ctx.clone();
        let work = async move { ctx.work(i).await };
        match crate::threads::runtime(i as usize % threads) {
            Some(runtime) => workers.spawn_on(work, runtime),
            None => workers.spawn(work),
        };
    }
    while let Some(ended) = workers.join_next().await {
        if let Err(e) = ended
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    target.sampler.run_ended().await;
    let done = ctx.done.load(Ordering::SeqCst);
    let status = if shutdown.is_stopping() && done < w.requests { RunStatus::Cancelled } else { RunStatus::Completed };
    if !shutdown.is_stopping() {
        // Some servers tell their version only in replies (LM Studio's `runtime`): ask again.
        if !version_known {
            describe(adapter.as_ref(), writer, run).await;
        }
        observe(adapter.as_ref(), writer, &spec.backend.name, run, Phase::After).await;
    }
    writer.end_run(run, status, now_ms(), done);
    tracing::info!(job = %spec.job.name, backend = %spec.backend.name, run = run.0, done, status = status.as_str(), "run ended");
    RunResult { run: Some(run), status, requests_done: done }
}

/// The row of a run that never started, with why in `detail.reason`.
pub fn skipped_run(spec: &RunSpec<'_>, at: i64, reason: &str) -> RunStart {
    run_row(spec, at, None, json!({ "reason": reason }))
}

/// A run's row: the job's workload at the backend, started at `started_at`.
fn run_row(spec: &RunSpec<'_>, started_at: i64, server_pid: Option<u32>, detail: serde_json::Value) -> RunStart {
    let w = &spec.job.workload;
    RunStart {
        job: spec.job.name.clone(),
        backend: spec.backend.name.clone(),
        trigger: spec.trigger,
        planned_at: spec.planned_at,
        started_at,
        requests_planned: w.requests,
        concurrency: w.concurrency,
        delay_ms: w.delay.as_millis() as u64,
        stream: w.stream,
        max_tokens: w.max_tokens,
        backend_kind: spec.backend.kind.as_str(),
        base_url: spec.backend.url.to_string(),
        model: spec.backend.model.clone(),
        server_pid,
        detail,
    }
}

/// Records what the server says about itself; `true` when that included its version.
async fn describe(adapter: &dyn Backend, writer: &WriterHandle, run: RunKey) -> bool {
    let info = tokio::time::timeout(ASK_TIMEOUT, adapter.describe()).await.unwrap_or_default();
    let known = info.version.is_some();
    if info != Default::default() {
        writer.run_server(RunServer {
            run,
            version: info.version,
            model: info.model,
            info: (!info.detail.is_null()).then(|| bounded(&info.detail.to_string(), MAX_ERROR_BYTES)),
        });
    }
    known
}

/// Records the server's own view of its state.
async fn observe(adapter: &dyn Backend, writer: &WriterHandle, backend: &str, run: RunKey, phase: Phase) {
    let seen = tokio::time::timeout(ASK_TIMEOUT, adapter.observe()).await.unwrap_or_default();
    let taken_at = now_ms();
    for o in seen {
        writer.server_sample(ServerSample {
            backend: backend.to_string(),
            run: Some(run),
            taken_at,
            phase,
            source: o.source,
            memory_bytes: o.memory_bytes,
            gpu_memory_bytes: o.gpu_memory_bytes,
            data: bounded(&o.data.to_string(), 16 * 1024),
        });
    }
}

/// What a run's workers share: they claim request indexes from `next` in turn.
struct Worker {
    job: Job,
    backend: String,
    run: RunKey,
    adapter: Arc<dyn Backend>,
    target: Target,
    shutdown: Shutdown,
    on_outcome: Option<OnOutcome>,
    /// The next request index to claim.
    next: AtomicU32,
    done: AtomicU32,
    begin: Instant,
}

impl Worker {
    async fn work(&self, worker: u32) {
        let w = &self.job.workload;
        let deadline = self.begin + w.max_duration;
        let mut previous_end: Option<Instant> = None;
        loop {
            let seq = self.next.fetch_add(1, Ordering::SeqCst);
            if seq >= w.requests || self.shutdown.is_stopping() {
                return;
            }
            // When this request should start: on the timetable (open loop), or after the pause.
            let intended = match w.rate {
                Some(rate) => self.begin + Duration::from_secs_f64(f64::from(seq) / rate),
                None => previous_end.map_or_else(Instant::now, |end| end + w.delay),
            };
            if intended >= deadline {
                return;
            }
            // Only a wait still ahead goes through the timer: even an elapsed one waits for the
            // timer's next tick (about a millisecond) before it fires.
            if intended > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(intended) => {}
                    _ = self.shutdown.stopping() => return,
                }
            }
            let end = self.one(worker, seq, intended, previous_end).await;
            self.done.fetch_add(1, Ordering::SeqCst);
            previous_end = Some(end);
            if Instant::now() >= deadline {
                return;
            }
        }
    }

    /// Sends request `seq` and records it; returns when it ended.
    async fn one(&self, worker: u32, seq: u32, intended: Instant, previous_end: Option<Instant>) -> Instant {
        let w = &self.job.workload;
        let prompt = &w.prompts[seq as usize % w.prompts.len()];
        let position = self.target.sampler.request_starting(self.run).await;
        let (machine_in_flight, _in_flight) = self.target.machine.request_started(&self.backend);
        let start = Stamp::now();
        let key = self.target.writer.next_request_key();
        self.target.writer.request_started(RequestStart {
            key,
            run: self.run,
            backend: self.backend.clone(),
            job: self.job.name.clone(),
            worker,
            seq,
            intended_at: start.wall_ms - ms_between(intended, start.mono).round() as i64,
            started_at: start.wall_ms,
            stream: w.stream,
            concurrency: w.concurrency,
            prompt_name: prompt.name.clone(),
            prompt_chars: prompt.text.chars().count() as u32,
            max_tokens: w.max_tokens,
            gap_ms: previous_end.map(|end| ms_between(end, start.mono)),
            server_pid: position.pid,
            server_seq: position.seq,
            machine_in_flight,
        });
        let mut timeline = Timeline::new(start.mono);
        let exchange = self.adapter.chat(ChatRequest { prompt, workload: w }, &mut timeline, &self.shutdown).await;
        let end = timeline.end().unwrap_or_else(Instant::now);
        for e in self.adapter.noticed() {
            tracing::info!(backend = %self.backend, kind = %e.kind, detail = %e.detail, "the server's replies show a change");
            let backend = Some(self.backend.clone());
            self.target.writer.event(Event { backend, kind: e.kind, at: now_ms(), detail: e.detail });
        }
        if let Err(failure) = &exchange.result {
            self.after_failure(key, failure, position.pid).await;
        }
        let record = finished(key, &timeline, exchange, end);
        let outcome = record.outcome;
        if !outcome.is_ok() {
            tracing::debug!(backend = %self.backend, seq, %outcome, error = ?record.error, "request failed");
        }
        self.target.writer.request_finished(record);
        let reached = !matches!(outcome, Outcome::ConnectRefused | Outcome::ConnectTimeout | Outcome::ConnectError);
        self.target.sampler.request_finished(start.wall_ms, reached, !outcome.is_ok(), position);
        if let Some(f) = &self.on_outcome {
            f(outcome);
        }
        end
    }
}

impl Worker {
    /// Asks the server what its state says about a failure, and gathers crash evidence in the
    /// background (the next request does not wait for it).
    async fn after_failure(&self, key: u64, failure: &Failure, pid: Option<u32>) {
        if matches!(failure.outcome, Outcome::Cancelled) {
            return;
        }
        let (backend, writer) = (&self.backend, &self.target.writer);
        let said = tokio::time::timeout(ASK_TIMEOUT, self.adapter.after_failure(failure)).await.unwrap_or_default();
        for e in said {
            tracing::warn!(%backend, kind = %e.kind, detail = %e.detail, "the server's state changed after a failure");
            writer.event(Event { backend: Some(backend.clone()), kind: e.kind, at: now_ms(), detail: e.detail });
        }
        // A process that died under the request: its exit status or signal is evidence itself,
        // kept with every such failure (the rest is gathered once per burst).
        let exit = (failure.outcome == Outcome::Crash).then(|| EvidenceItem {
            source: "exit",
            path: None,
            text: bounded(&failure.error, MAX_ERROR_BYTES),
        });
        let (collector, writer, backend) = (self.target.evidence.clone(), writer.clone(), backend.clone());
        tokio::spawn(async move {
            let mut items = collector.gather(Cause::FailedRequest, pid).await.unwrap_or_default();
            items.extend(exit);
            if !items.is_empty() {
                writer.evidence(Evidence { backend, request_key: Some(key), event: None, at: now_ms(), items });
            }
        });
    }
}

/// The row for a finished request.
fn finished(key: u64, tl: &Timeline, ex: Exchange, end: Instant) -> RequestEnd {
    let (outcome, error) = match ex.result {
        Ok(()) => (Outcome::Ok, None),
        // Scrubbed before its signature is taken: a key the server echoed must not survive
        // half-masked in the signature.
        Err(f) => (f.outcome, Some(bounded(&crate::secrets::scrub(&f.error), MAX_ERROR_BYTES))),
    };
    RequestEnd {
        key,
        outcome,
        http_status: ex.http_status,
        attempts: ex.attempts,
        measured: tl.finish(end),
        finish_reason: tl.finish_reason.clone(),
        reasoning_seen: tl.reasoning_seen,
        tool_call_seen: ex.tool_call_seen,
        tool_call_valid: ex.tool_call_valid,
        server_model: tl.server_model.clone(),
        server: tl.server.clone(),
        server_timings: tl.server_timings.as_ref().map(|t| bounded(&t.to_string(), MAX_ERROR_BYTES)),
        output: tl.output().to_string(),
        error_signature: error.as_deref().map(signature),
        error,
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
