//! The report as data: what `soakd report --format json` prints (a stable interface: fields
//! are only ever added) and what the other formats render.

use super::window::Window;
use crate::analysis::crashes::{Confounded, Hypotheses, RequestCountPattern, SignatureGroup};
use crate::analysis::drift::{Drift, HourStats};
use crate::analysis::episodes::Episodes;
use crate::analysis::leaks::LeakReport;
use crate::analysis::overhead::Ratio;
use crate::text::printable;
use serde::Serialize;
use std::collections::BTreeMap;

/// Bumped only when a field changes meaning or is removed.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub generated_at: i64,
    pub window: WindowOut,
    pub backends: Vec<BackendReport>,
    /// The seed report's "Performance Comparison Table", regenerated.
    pub comparison: Vec<ComparisonRow>,
    pub rankings: Rankings,
    /// The same model behind two backends: one's TTFT and tokens/s relative to the other's.
    pub api_overhead: Vec<Overhead>,
    pub findings: Vec<Finding>,
    /// Present when the window reaches before the raw-retention horizon: the analysis above
    /// covers only the raw rows after it; the rollups summarise the hours before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_horizon: Option<RawHorizon>,
}

impl Report {
    /// A line saying how many requests the latency figures left out for contention, if any.
    pub fn contended_note(&self) -> Option<String> {
        let left: u64 = self.backends.iter().map(|b| b.contended_left_out).sum();
        (left > 0).then(|| {
            format!(
                "{left} request(s) that ran while soakd measured another backend are left out of the latency and throughput figures (--include-contended keeps them)"
            )
        })
    }
}

/// Where raw rows end (`soakd prune`, `[retention] raw_days`), and what the hourly rollups say
/// about the part of the window before it.
#[derive(Debug, Clone, Serialize)]
pub struct RawHorizon {
    pub horizon_at: i64,
    pub horizon_utc: String,
    pub rolled_up: Vec<crate::store::retention::RolledUp>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowOut {
    pub from: i64,
    pub to: i64,
    pub from_utc: String,
    pub to_utc: String,
    pub hours: f64,
}

impl From<Window> for WindowOut {
    fn from(w: Window) -> Self {
        WindowOut {
            from: w.from,
            to: w.to,
            from_utc: super::window::utc(w.from),
            to_utc: super::window::utc(w.to),
            hours: w.hours(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendReport {
    pub name: String,
    /// The machine the log was written on (its `host` table), `null` for a log older than it.
    /// In a report over several logs, `name` is `backend @ hostname`.
    pub host: Option<crate::store::host::Host>,
    pub requests: u64,
    pub ok: u64,
    pub success_rate: f64,
    /// 95 % Wilson interval of `success_rate`.
    pub success_ci: [f64; 2],
    /// Failed requests by outcome (cancelled and interrupted ones are soakd's, not the server's,
    /// and are counted apart in `not_counted`).
    pub failures: BTreeMap<String, u64>,
    pub not_counted: u64,
    pub ttft_ms: Percentiles,
    pub first_content_ms: Percentiles,
    pub e2e_ms: Percentiles,
    pub decode_tps: Rate,
    /// 0 when the percentiles above (and the modes' medians) are exact; else how far, as a
    /// fraction, each may be from a value at its rank: past 65,536 values a window's values are
    /// held as a DDSketch with a 1 % relative error (`measure::distribution`).
    pub quantile_relative_error: f64,
    pub streamed: Mode,
    pub non_streamed: Mode,
    /// The longest model load the server reported (`requests.server_load_ms`: Ollama's
    /// `load_duration`, the mlx-lm worker's load).
    pub load_time_s: Option<f64>,
    /// The server versions seen, in order (`runs.server_version`): more than one means an
    /// update happened within the window.
    pub server_versions: Vec<ServerVersion>,
    pub peak_rss_bytes: Option<u64>,
    pub last_rss_bytes: Option<u64>,
    /// Which memory figure the leak analysis used: `footprint` (macOS physical footprint,
    /// Linux RssAnon + VmSwap) when every sample had it, else `rss`.
    pub memory_metric: &'static str,
    pub restarts: u64,
    pub mtbf_s: Option<f64>,
    pub longest_failure_streak: u64,
    pub median_recovery_s: Option<f64>,
    pub leak: LeakReport,
    pub crash_patterns: Vec<CrashPattern>,
    pub signatures: Vec<SignatureGroup>,
    pub at_request_count: Option<RequestCountPattern>,
    pub hypotheses: Hypotheses,
    /// Failure episodes: triggers, and the failures that followed them until the server answered
    /// again (refusals, "Loading model", "Model is unloaded"), which crash patterns leave out.
    pub crash_episodes: Episodes,
    /// Factors that varied together so that the log cannot tell which triggers the failures.
    pub crash_confounded: Vec<Confounded>,
    pub drift: Vec<Drift>,
    pub hourly: Vec<HourStats>,
    /// `wedged` or `silent_failure` at the window's end: the latest requests (across runs) all
    /// went unanswered, or all came back empty; null when not.
    pub stuck: Option<crate::analysis::stuck::Stuck>,
    /// Requests left out of the latency and throughput figures (percentiles, modes, hourly,
    /// decode rate, the comparison table) because soakd was measuring another backend at the
    /// same time (`requests.machine_in_flight > 0`); 0 with `--include-contended`.
    pub contended_left_out: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerVersion {
    pub version: String,
    /// The first run that saw it.
    pub first_seen: i64,
    pub first_seen_utc: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Rate {
    pub mean: Option<f64>,
    pub p50: Option<f64>,
}

/// Streamed or non-streamed requests on their own (the seed saw 8.6 tok/s non-streamed vs
/// 20.9 streamed on one server).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Mode {
    pub requests: u64,
    pub ok: u64,
    pub ttft_p50_ms: Option<f64>,
    pub e2e_p50_ms: Option<f64>,
    /// Decode tokens/s (streamed) or tokens over the whole request (non-streamed).
    pub tps_p50: Option<f64>,
}

/// A factor level under which a kind of failure is triggered more often, the other factors held
/// fixed.
#[derive(Debug, Clone, Serialize)]
pub struct CrashPattern {
    /// The failure signature this is about, or `*` for all failures.
    pub signature: String,
    /// How many failures have that signature in the window.
    pub count: u64,
    pub factor: &'static str,
    pub level: String,
    pub rate_inside: f64,
    pub rate_outside: f64,
    pub rate_ratio: f64,
    pub p_value: f64,
    /// After Holm's correction for the number of tests.
    pub p_adjusted: f64,
    pub failed_inside: u64,
    pub total_inside: u64,
    /// `firth_lr` (penalised likelihood ratio of a logistic model, adjusted for `adjusted_for`) or
    /// `request_count` (lives ending at request counts that vary less than memoryless crashes).
    pub method: &'static str,
    pub adjusted_for: Vec<&'static str>,
}

impl CrashPattern {
    /// One line for people: `all failures concurrency=4: 40.0 % vs 2.0 % (×20.0, adjusted p 1.2e-5)`
    /// (server text made printable).
    pub fn line(&self) -> String {
        let what = if self.signature == "*" { "all failures".to_string() } else { printable(&self.signature) };
        format!(
            "{what} {}={}: {:.1} % vs {:.1} % (×{:.1}, adjusted p {:.1e})",
            self.factor,
            printable(&self.level),
            self.rate_inside * 100.0,
            self.rate_outside * 100.0,
            self.rate_ratio,
            self.p_adjusted
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ComparisonRow {
    pub metric: &'static str,
    /// Per backend, in `backends` order, as displayed.
    pub values: Vec<String>,
    pub winner: Option<String>,
    /// Why that winner (or why none).
    pub basis: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Rankings {
    /// Backends by median decode tokens/s, fastest first.
    pub speed: Vec<Ranked>,
    /// Backends by success rate, most reliable first.
    pub reliability: Vec<Ranked>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ranked {
    pub backend: String,
    pub value: f64,
    pub display: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    pub model: String,
    /// `a` relative to `b`: ratios are a / b.
    pub a: String,
    pub b: String,
    pub ttft_ratio: Option<Ratio>,
    pub decode_tps_ratio: Option<Ratio>,
}

pub use crate::store::findings::Finding;
