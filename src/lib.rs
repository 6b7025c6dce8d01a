//! soakd soak-tests local LLM servers: it fires cron-scheduled workloads at every configured
//! backend, records each request's outcome, timings and the backend's memory into SQLite, and
//! reports what it saw.
//!
//! The data flow, and the module that owns each step:
//!
//! ```text
//! schedules/*.toml ─► schedule (validated jobs) ─► daemon (schedule::ticker) ──────► probe::runner
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
//!                                              ▼
//!                      digest (text + HTML + PNG charts) ──► outbox table ──► SMTP (lettre)
//! ```
//!
//! `discover` finds the servers running on this machine and writes their config entries.
//! Around it: `clock` (the injectable wall clock the ticker reads), `store::retention` (raw rows
//! rolled up hourly, then pruned), `logging` (daily files), `agent` (the launchd agent and
//! systemd user unit that `soakd install` writes).
//!
//! `sim` is a built-in OpenAI-compatible server with controllable speed, memory growth and
//! faults; `demo` soaks two of them to show the whole flow without any LLM server installed.
//!
//! Around the measurement: `commands::validate` (the one validation every command runs),
//! `secrets` (the one scrubber the writer, the logs and the mail pass through), `probe::machine`
//! (one workload at a time on the machine), `analysis::stuck` (wedged and silent servers).
//!
//! "The seed report", cited in places: the report soakd was built to replace — five requests
//! per server (LM Studio, mlx_lm.server, direct MLX-LM, direct MLX), a performance comparison
//! table, crash notes and two hypotheses (rapid sequential requests; model state after the first
//! success). `soakd report --format markdown` regenerates its layout from a real log.

pub mod agent;
pub mod analysis;
pub mod backend;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod digest;
pub mod discover;
pub mod fields;
pub mod logging;
pub mod measure;
#[cfg(feature = "mlx")]
pub mod mlx;
pub mod probe;
pub mod report;
pub mod schedule;
pub mod secrets;
pub mod session;
pub mod shutdown;
pub mod sim;
pub mod store;
pub mod text;
pub mod time;

pub use commands::run_cli;
