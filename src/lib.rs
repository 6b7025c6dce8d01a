//! soakd soak-tests local LLM servers: it fires cron-scheduled workloads at every configured
//! backend, records each request's outcome, timings and the backend's memory into SQLite, and
//! reports what it saw.
//!
//! The data flow, and the module that owns each step:
//!
//! ```text
//! schedules/*.toml ─► schedule (validated jobs) ─► daemon (tokio-cron-scheduler) ─► probe::runner
//!                                                                                    │ N requests,
//!                                                                                    │ concurrency,
//!            ┌───────────────────────────────────────────────────────────────────────┘ delay / rate
//!            ▼
//!   backend (one adapter per kind) ──► probe::timeline (timings + outcome + server numbers)
//!            │ describe / observe / after_failure / noticed ──► runs.server_*, server_samples, events
//!   probe::sampler (sysinfo: the backend's process tree + system) ──► memory samples, restarts
//!   probe::evidence (log tail, crash reports, unified log) ──► crash_evidence
//!            ▼
//!   store (rusqlite, WAL, one writer thread, batched transactions, migrations in db/)
//!            ▼
//!   analysis (pure functions over rows) ──► report (the comparison table)
//! ```
//!
//! `discover` finds the servers running on this machine and writes their config entries.
//! `sim` is a built-in OpenAI-compatible server with controllable speed, memory growth and
//! faults; `demo` soaks two of them to show the whole flow without any LLM server installed.

pub mod analysis;
pub mod backend;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod discover;
pub mod fields;
#[cfg(feature = "mlx")]
pub mod mlx;
pub mod probe;
pub mod report;
pub mod schedule;
pub mod session;
pub mod shutdown;
pub mod sim;
pub mod store;
pub mod text;
pub mod time;

pub use commands::run_cli;
