//! Schedules: `schedules/*.toml` files of `[[job]]` entries, each a workload (how many
//! requests, how concurrent, how spaced, what to ask) fired by a cron expression at some
//! backends, and the digest's `[digest]` table. `parse` turns files into validated `Job`s and the
//! `DigestSchedule`, reporting every mistake at once.

mod cron;
mod digest;
mod fire_times;
mod parse;
pub mod prompts;

pub use cron::CronExpr;
pub use digest::{DEFAULT_CRON, DigestSchedule};
pub use parse::{load_dir, parse_file};

use std::path::PathBuf;
use std::time::Duration;

/// A validated job.
/// What the schedules folder says: the jobs, and when the digest is made.
#[derive(Debug, Clone)]
pub struct Schedules {
    pub jobs: Vec<Job>,
    pub digest: DigestSchedule,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    pub cron: CronExpr,
    pub backends: BackendSelection,
    /// Fire the job's backends one after another (default), or all at once.
    pub sequential: bool,
    /// Take the machine alone for each run (default): no other backend is measured meanwhile.
    pub exclusive: bool,
    /// How long a run may wait for the machine before it is skipped; `None`: one period.
    pub max_wait: Option<Duration>,
    pub enabled: bool,
    pub workload: Workload,
}

impl Job {
    /// How long a firing waits for the machine: `max_wait_s`, else one period of its cron (the
    /// time to its next firing), at least a second.
    pub fn max_wait(&self, now: chrono::DateTime<chrono::Local>) -> Duration {
        self.max_wait.unwrap_or_else(|| match self.cron.next_after(now, 2).as_slice() {
            [a, b] => (*b - *a).to_std().unwrap_or(Duration::from_secs(1)).max(Duration::from_secs(1)),
            _ => Duration::from_secs(3600),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendSelection {
    All,
    Named(Vec<String>),
}

impl BackendSelection {
    pub fn includes(&self, name: &str) -> bool {
        match self {
            BackendSelection::All => true,
            BackendSelection::Named(names) => names.iter().any(|n| n == name),
        }
    }
}

/// What one firing does at one backend.
#[derive(Debug, Clone)]
pub struct Workload {
    pub requests: u32,
    pub concurrency: u32,
    /// A worker's pause between the end of one request and the start of its next.
    pub delay: Duration,
    /// Open-loop arrivals per second (requests start on a fixed timetable); `None`: each worker
    /// starts its next request when the previous one ended plus `delay`.
    pub rate: Option<f64>,
    /// Stop starting requests after this long, even if fewer than `requests` ran.
    pub max_duration: Duration,
    pub stream: bool,
    pub max_tokens: u32,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub system: Option<String>,
    pub prompts: Vec<Prompt>,
    /// An OpenAI `tools` array; a tool call in the reply is then checked against it.
    pub tools: Option<serde_json::Value>,
    pub timeouts: Timeouts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// From sending the request to the first byte of a streamed response. A non-streamed
    /// response's first byte comes when generation ends, so only `total` bounds it.
    pub first_byte: Duration,
    /// The longest silence allowed mid-stream, between one received piece and the next.
    pub stall: Duration,
    /// The whole request.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(120),
            stall: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

impl Workload {
    /// The largest `max_tokens` a job may ask for: every request is capped, since an uncapped
    /// non-streamed request can generate forever on some servers.
    pub const MAX_TOKENS_LIMIT: u32 = 131_072;
    pub const MAX_REQUESTS: u32 = 1_000_000;
    pub const MAX_CONCURRENCY: u32 = 256;
}
