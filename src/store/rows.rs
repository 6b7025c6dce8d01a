//! The rows soakd writes, as values the writer thread takes. Column meanings: `db/README.md`.

pub use crate::measure::Phase;
use crate::measure::outcome::Outcome;
use crate::measure::timeline::Measured;
use crate::measure::{EventKind, ServerNumbers, Trigger};

/// A run as soakd refers to it before (and whether or not) its row is written: the writer maps
/// it to `runs.id`, so starting a run never waits for the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunKey(pub u64);

/// A run beginning (`runs`, status `running`).
#[derive(Debug, Clone)]
pub struct RunStart {
    pub job: String,
    pub backend: String,
    pub trigger: Trigger,
    pub planned_at: i64,
    pub started_at: i64,
    pub requests_planned: u32,
    pub concurrency: u32,
    pub delay_ms: u64,
    pub stream: bool,
    pub max_tokens: u32,
    pub backend_kind: &'static str,
    pub base_url: String,
    pub model: Option<String>,
    pub server_pid: Option<u32>,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Completed,
    Cancelled,
    Skipped,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Completed => "completed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Skipped => "skipped",
        }
    }
}

/// A request leaving soakd (`requests`, outcome `in_flight`).
#[derive(Debug, Clone)]
pub struct RequestStart {
    /// soakd's requests to other backends in flight when this one started.
    pub machine_in_flight: u32,
    /// Unique within this process: pairs the start with its end.
    pub key: u64,
    pub run: RunKey,
    pub backend: String,
    pub job: String,
    pub worker: u32,
    pub seq: u32,
    pub intended_at: i64,
    pub started_at: i64,
    pub stream: bool,
    pub concurrency: u32,
    pub prompt_name: String,
    pub prompt_chars: u32,
    pub max_tokens: u32,
    pub gap_ms: Option<f64>,
    pub server_pid: Option<u32>,
    pub server_seq: Option<u64>,
}

/// How a request ended.
#[derive(Debug, Clone)]
pub struct RequestEnd {
    pub key: u64,
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub measured: Measured,
    pub finish_reason: Option<String>,
    pub reasoning_seen: bool,
    pub tool_call_seen: bool,
    pub tool_call_valid: Option<bool>,
    pub server_model: Option<String>,
    pub server: ServerNumbers,
    pub server_timings: Option<String>,
    pub output: String,
    pub error: Option<String>,
    pub error_signature: Option<String>,
}

/// One sample of a backend's process tree and the machine.
#[derive(Debug, Clone, PartialEq)]
pub struct MemorySample {
    pub backend: String,
    pub pid: Option<u32>,
    pub proc_started_at: Option<u64>,
    pub taken_at: i64,
    pub phase: Phase,
    pub in_flight: u32,
    pub processes: Option<u32>,
    pub rss_bytes: Option<u64>,
    pub footprint_bytes: Option<u64>,
    pub sys_used_bytes: u64,
    pub sys_available_bytes: u64,
    pub swap_used_bytes: u64,
    pub run: Option<RunKey>,
}

/// Something that happened (`events`).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub backend: Option<String>,
    pub kind: EventKind,
    pub at: i64,
    pub detail: serde_json::Value,
}

/// What the server said about itself when a run began (`runs.server_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct RunServer {
    pub run: RunKey,
    pub version: Option<String>,
    pub model: Option<String>,
    pub info: Option<String>,
}

/// One look at the server's own view of its state (`server_samples`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSample {
    pub backend: String,
    pub run: Option<RunKey>,
    pub taken_at: i64,
    pub phase: Phase,
    pub source: &'static str,
    pub memory_bytes: Option<u64>,
    pub gpu_memory_bytes: Option<u64>,
    pub data: String,
}

/// What the machine knew about a failure (`crash_evidence`), tied to a request (by its key)
/// or to an event recorded with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub backend: String,
    pub request_key: Option<u64>,
    pub event: Option<Event>,
    pub at: i64,
    pub items: Vec<EvidenceItem>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceItem {
    /// `log` | `crash_report` | `unified_log` | `exit`.
    pub source: &'static str,
    pub path: Option<String>,
    pub text: String,
}

/// The typed names are stored as their text.
macro_rules! stored_as_text {
    ($($t:ty),+) => {$(
        impl rusqlite::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(self.as_str().as_bytes())))
            }
        }
    )+};
}

stored_as_text!(EventKind, Trigger, Phase, crate::measure::FindingKind);
