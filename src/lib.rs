//! soakd soak-tests local LLM servers: it fires cron-scheduled workloads at every configured
//! backend, records each request's outcome, timings and the backend's memory into SQLite, and
//! reports what it saw.
//!
//! # Layout
//!
//! The modules form layers in the order the data flows, and each uses only modules listed before
//! it (`layout_tests` fails on a `crate::` path that points up or sideways-forward):
//!
//! ```text
//! text, time          bounded untrusted text; millisecond clock helpers
//! measure             the vocabulary: Outcome (and which outcomes count as failures), Timeline,
//!                     Measured, ServerNumbers, stats
//! fields              config/schedule field readers whose errors name file, entry and field
//! secrets             the one scrubber the writer, the logs and the mail pass through
//! shutdown, clock     stop/abort signalling; the injectable wall clock
//! threads             the measuring threads: a single-threaded runtime per core (up to 4)
//! logging             daily log files (scrubbed)
//! config              soakd.toml: backends, database, [log], [retention], [smtp]/[digest]/[alerts]
//! schedule            schedules/*.toml, read once: validated jobs and the digest's [digest] table
//! store               SQLite: migrations, the one writer thread, every query, findings, retention
//! mlx                 (feature `mlx`) in-process MLX model, used by kind `mlx`'s worker
//! backend             one adapter per server kind: send, time, classify; health, metrics, signals
//! sim                 a built-in OpenAI-compatible server with speed, memory growth and faults
//! probe               the runner (N requests, concurrency, pacing), the memory sampler, crash
//!                     evidence, one workload at a time on the machine
//! session             a config's open store, writer, adapters, sampler and machine lock
//! discover            finds the servers running here and writes their config entries
//! analysis            pure functions over rows: leaks, crashes, episodes, drift, stuck, summary
//! report              the comparison report (JSON, markdown, CSV, table) and its findings
//! digest              the nightly mail: text, HTML, charts, alerts, outbox, SMTP
//! metrics             Prometheus's /metrics: series folded from the log as the writer commits,
//!                     the latest verdicts, served over HTTP
//! daemon              the ticker (jobs on the wall clock) and everything periodic, until stopped
//! agent               the launchd agent and systemd user unit `soakd install` writes
//! cli                 the command line (clap)
//! commands            one file per subcommand; the shared loading and validation
//! ```
//!
//! The data flow:
//!
//! ```text
//! schedules/*.toml ─► schedule (jobs) ─► daemon (ticker) ─────────────────────────────► probe::runner
//!                                                                                    │ N requests,
//!            ┌───────────────────────────────────────────────────────────────────────┘ concurrency,
//!            ▼                                                                          delay / rate
//!   backend (one adapter per kind) ──► measure::Timeline (timings + outcome + server numbers)
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
//! "The seed report", cited in places, is the five-request report soakd was built to replace
//! (README.md defines it).

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
pub mod metrics;
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
pub mod threads;
pub mod time;

pub use commands::run_cli;

#[cfg(test)]
mod layout_tests;
