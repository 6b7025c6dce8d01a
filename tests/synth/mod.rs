//! Synthetic soak logs in soakd's documented schema (db/README.md), shaped like what real LLM
//! servers do (docs/failure-shapes.md), each with the truth it was made from: does
//! memory leak (and how fast), which factor triggers the crashes (or none).
//!
//! Written apart from soakd's own writer: rows go in with plain SQL, as a user's script or another
//! tool would write them, and the verdicts are read back from the report soakd builds. Every
//! class draws its parameters (rates, sizes, cadences, noise, durations) from wide ranges per seed,
//! so a detector tuned to one example fails here. Used by `benches/verdicts.rs` (rates over many
//! seeds) and `tests/verdicts.rs` (a few seeds of every class, in CI).

#![allow(dead_code)]

pub mod crash;
pub mod memory;
mod rng;
mod write;

pub use rng::Rng;
pub use write::write;

/// Unix ms of the logs' start: a fixed instant, so a seed gives the same file every time.
pub const T0: i64 = 1_767_225_600_000; // 2026-01-01 00:00 UTC
pub const SEC: i64 = 1000;
pub const MIN: i64 = 60 * SEC;
pub const HOUR: i64 = 60 * MIN;
pub const MB: f64 = 1e6;

/// One request row.
#[derive(Debug, Clone)]
pub struct Req {
    pub started_at: i64,
    pub e2e_ms: f64,
    pub outcome: &'static str,
    pub http_status: Option<i64>,
    pub error: Option<String>,
    pub job: String,
    pub worker: u32,
    pub concurrency: u32,
    pub prompt_chars: u32,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub max_tokens: u32,
    pub gap_ms: Option<f64>,
    pub server_pid: Option<u32>,
    pub server_seq: Option<u64>,
}

impl Req {
    pub fn ok(&self) -> bool {
        self.outcome == "ok"
    }
}

/// One memory sample row.
#[derive(Debug, Clone)]
pub struct Sample {
    pub taken_at: i64,
    pub pid: Option<u32>,
    pub proc_started_at: Option<i64>,
    pub phase: &'static str,
    pub in_flight: u32,
    pub rss: Option<f64>,
    pub footprint: Option<f64>,
    pub sys_available: f64,
}

/// One event row.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: i64,
    pub kind: &'static str,
    pub detail: String,
}

/// One backend's log.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub backend: String,
    pub requests: Vec<Req>,
    pub samples: Vec<Sample>,
    pub events: Vec<Event>,
}

impl Log {
    /// The span of the log, [first, last] over every row.
    pub fn span(&self) -> (i64, i64) {
        let times = self
            .requests
            .iter()
            .map(|r| r.started_at)
            .chain(self.samples.iter().map(|s| s.taken_at))
            .chain(self.events.iter().map(|e| e.at));
        times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)))
    }
}

/// What a memory log was made from.
#[derive(Debug, Clone, PartialEq)]
pub enum MemTruth {
    /// Memory grows for good: the true rates, where the class defines them.
    Leak { mb_per_hour: Option<f64>, mb_per_1k_requests: Option<f64> },
    /// No leak (a step, a plateau, warm-ups, noise, ...).
    NoLeak,
}

/// What a crash log was made from.
#[derive(Debug, Clone, PartialEq)]
pub enum CrashTruth {
    /// This factor triggers the crashes (`level`: the level soakd should name, when one does).
    Factor { factor: &'static str, level: Option<String> },
    /// Each server life dies at about its `n`th request.
    RequestCount { n: f64 },
    /// Failures at random: no pattern.
    NoPattern,
}

/// One generated case: its class, seed, log and truth.
#[derive(Debug, Clone)]
pub struct Case<T> {
    pub class: &'static str,
    pub seed: u64,
    pub log: Log,
    pub truth: T,
}

pub mod score;
