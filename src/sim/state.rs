//! Shared server state: request counter, in-flight count and the end time of the last request
//! (the inputs of `behaviour::decide`), the lifecycle, the ballast, and the stop signal that
//! shutdown and an in-process crash raise. Also where a crash takes effect.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;

use super::ballast::Ballast;
use super::behaviour::{Admission, CrashEffect, CrashReason, Lifecycle, RequestFacts};
use super::options::{CrashStyle, Flavour, Options};
use super::shapes::Stats;

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct SimState {
    pub(crate) opts: Options,
    pub(crate) ballast: Arc<Ballast>,
    /// Unix seconds when the server started (the model's `created`).
    pub(crate) started: u64,
    requests: AtomicU64,
    in_flight: AtomicU32,
    timeline: Mutex<Timeline>,
    /// `true` once the server shuts down or (in-process) crashes: every waiting response ends.
    stop: watch::Sender<bool>,
}

#[derive(Debug)]
struct Timeline {
    last_end: Option<Instant>,
    lifecycle: Lifecycle,
}

/// How an arriving chat request is admitted.
pub(crate) enum Admitted {
    /// Serve it; `Some(load)`: the model is loaded for it first, which takes `load`.
    Serve(RequestFacts, InFlight, Option<std::time::Duration>),
    Unloaded,
    Dead,
}

impl SimState {
    pub(crate) fn new(opts: Options) -> Arc<SimState> {
        // Ollama loads a model on its first request; the others start with it loaded.
        let lifecycle =
            if opts.flavour == Flavour::Ollama { Lifecycle::Unloaded { remaining: 0 } } else { Lifecycle::Loaded };
        Arc::new(SimState {
            ballast: Arc::new(Ballast::new(&opts.memory)),
            opts,
            started: unix_now(),
            requests: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            timeline: Mutex::new(Timeline { last_end: None, lifecycle }),
            stop: watch::Sender::new(false),
        })
    }

    /// Count a chat request and gather the facts the decision needs.
    pub(crate) fn admit(self: &Arc<Self>, prompt_tokens: u64) -> Admitted {
        let mut timeline = self.timeline();
        let admission = timeline.lifecycle.admit();
        if admission == Admission::Dead {
            return Admitted::Dead;
        }
        let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        if admission == Admission::Unloaded {
            return Admitted::Unloaded;
        }
        let in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let facts = RequestFacts {
            n,
            gap_since_previous: timeline.last_end.map(|end| end.elapsed()),
            in_flight,
            prompt_tokens,
        };
        drop(timeline);
        let load = (admission == Admission::Load).then_some(self.opts.load);
        Admitted::Serve(facts, InFlight(self.clone()), load)
    }

    /// Make a crash happen. With the exit style and `exit_on_crash` this never returns.
    pub(crate) fn crash(&self, reason: CrashReason) -> CrashEffect {
        let style = if matches!(reason, CrashReason::Abort(_)) { CrashStyle::Exit } else { self.opts.crash_style };
        let effect = self.timeline().lifecycle.crash(style, self.opts.exit_on_crash, self.opts.unloaded_requests);
        match effect {
            CrashEffect::ExitProcess => {
                eprintln!("soakd sim: crash: {reason}");
                std::process::exit(134);
            }
            CrashEffect::Dead => {
                tracing::warn!("soakd sim: crash: {reason} (in-process: the server is now dead)");
                self.stop.send_replace(true);
            }
            CrashEffect::LmStudioError => {
                tracing::warn!("soakd sim: crash: {reason} (LM Studio style: model unloaded)");
            }
            CrashEffect::OllamaError => {
                tracing::warn!("soakd sim: crash: {reason} (Ollama style: runner gone, reload on the next request)");
            }
        }
        effect
    }

    /// Whether the model is loaded now.
    pub(crate) fn model_loaded(&self) -> bool {
        self.timeline().lifecycle.is_loaded()
    }

    /// True once the in-process server has crashed: answer nothing (but `/sim/stats`).
    pub(crate) fn is_dead(&self) -> bool {
        self.timeline().lifecycle == Lifecycle::Crashed
    }

    /// Raise the stop signal (shutdown).
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// A receiver that sees `true` once the server stops or dies.
    pub(crate) fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            requests: self.requests.load(Ordering::SeqCst),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            ballast_bytes: self.ballast.bytes(),
            crashed: self.is_dead(),
        }
    }

    fn timeline(&self) -> std::sync::MutexGuard<'_, Timeline> {
        // The timeline holds plain values; a poisoned lock is still consistent.
        self.timeline.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Held while a request is in flight; dropping it records the request's end.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<SimState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.timeline().last_end = Some(Instant::now());
    }
}

/// Unix time in seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Wait until `signal` turns `true` (or its sender is gone).
pub(crate) async fn stopped(mut signal: watch::Receiver<bool>) {
    // An error means the state was dropped: nothing is left to serve either way.
    let _ = signal.wait_for(|stopped| *stopped).await;
}
