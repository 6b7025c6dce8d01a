//! soakd's integration tests, in one binary (as ripgrep keeps them): the crate is linked once,
//! not once per file. Each module drives the built `soakd` the way a user does; `common` starts
//! the real servers and `soakd sim`, `synth` writes soak logs shaped like real servers'.
//!
//! `scripts/test` runs them all; `cargo test --test tests MODULE::` runs one module.

mod common;
mod synth;

// The agent files soakd install writes (launchd plist, systemd unit), against snapshots.
mod agent;
// One schedule at all six kinds at once; discover tells them apart.
mod all_kinds;
// The command line: help, check on good and bad files, exit codes, shared validation.
mod cli;
// The daemon as an installed agent: log files, secrets kept out, firing on time, restarts.
mod daemon_life;
// `soakd demo`, the README's first command.
mod demo;
// `soakd digest`: snapshot, HTML escaping, the .eml, delivery through a real SMTP server.
mod digest;
// `soakd export`: every row as JSON lines or CSV, a window, a reader that leaves early.
mod export;
// Every outcome of the taxonomy produced for real and classified by `soakd once`.
mod faults;
// Kinds lmstudio and ollama against `soakd sim` in their documented shapes.
mod lmstudio_ollama;
// `/metrics` scraped by a real Prometheus; the Grafana dashboard's queries; the token rule.
mod metrics;
// Kind mlx (the `mlx` feature): the in-process decoder against mlx_lm, and its worker.
#[cfg(feature = "mlx")]
mod mlx;
// Kind mlx-lm: the real mlx_lm library in soakd's worker process.
mod mlx_lm_direct;
// llama-server and mlx_lm.server on the tiny generated model.
mod real_servers;
// `soakd report` on a log with known contents, every format, findings' life.
mod report;
// `soakd prune`, then report and status on what retention left.
mod retention;
// The verdicts on synthetic soak logs of every memory and crash class (the bench's CI part).
mod verdicts;
// Load shapes against `soakd sim`: pauses, concurrency, open loop, the time bound.
mod workloads;
