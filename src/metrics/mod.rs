//! The daemon's Prometheus endpoint (`[metrics]` in the config): the series, what each counts,
//! and their exposition. SQLite stays the source of truth — every counter and histogram here is
//! a fold of the log's finished requests: read whole when the daemon starts (so counters carry on
//! across restarts instead of resetting), then one commit at a time (`follow`). The latest
//! analysis (leak, wedged) is recomputed on a slow cadence (`verdicts`); `serve` answers scrapes.
//!
//! Labels are bounded and typed: `backend` and `job` are names from the config, `outcome` one of
//! soakd's outcome names, `kind` and `type` fixed words. No host label: Prometheus's `instance`
//! names the machine. Series and buckets follow the OpenTelemetry GenAI conventions where they
//! have one (time to first token, request duration, time per output token).

pub mod follow;
pub mod serve;
pub mod verdicts;

use crate::config::metrics::MetricsConfig;
use crate::measure::Outcome;
use crate::shutdown::Shutdown;
use crate::store::tally::Finished;
use crate::store::writer::WriterHandle;
use anyhow::Context;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// Starts `/metrics` for a daemon: binds `cfg.listen` (an error says which address and field),
/// has the writer follow the log into the series, and serves them and the verdict analysis on
/// this runtime until `stop`. Returns the address it listens on.
pub async fn start(
    cfg: &MetricsConfig,
    writer: &WriterHandle,
    db: &Path,
    stop: &Shutdown,
) -> anyhow::Result<std::net::SocketAddr> {
    let token = cfg
        .token
        .as_ref()
        .map(|t| crate::secrets::read(t, "metrics bearer token", "[metrics] bearer_token_env"))
        .transpose()?;
    let listener = tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| {
        format!("cannot listen on {} for /metrics: change [metrics] listen to a free port", cfg.listen)
    })?;
    let addr = listener.local_addr()?;
    let metrics = Metrics::new();
    writer.tap(Box::new(follow::Follow::new(metrics.clone())))?;
    tokio::spawn(serve::serve(listener, metrics.clone(), token, stop.clone()));
    tokio::spawn(verdicts::run(metrics, db.to_path_buf(), cfg.analysis_every, cfg.analysis_window, stop.clone()));
    tracing::info!(%addr, guarded = cfg.token.is_some(), "serving /metrics");
    Ok(addr)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub backend: String,
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub backend: String,
    pub job: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub backend: String,
    /// `prompt` or `completion`.
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemoryLabels {
    pub backend: String,
    /// `rss` or `footprint`.
    pub kind: &'static str,
}

/// Seconds: OpenTelemetry's GenAI duration buckets (0.01 s doubling to 81.92 s), extended down
/// to 1.25 ms (a tiny model on loopback answers that fast) and up to 655 s (a cold model load).
pub const SECONDS_BUCKETS: [f64; 20] = {
    let mut b = [0.0; 20];
    let mut i = 0;
    while i < 20 {
        // 0.01 × 2^(i − 3)
        b[i] = 0.00125 * (1u64 << i) as f64;
        i += 1;
    }
    b
};

/// Tokens per second: 1 doubling to 8192.
pub const TPS_BUCKETS: [f64; 14] = {
    let mut b = [0.0; 14];
    let mut i = 0;
    while i < 14 {
        b[i] = (1u64 << i) as f64;
        i += 1;
    }
    b
};

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

fn tps_histogram() -> Histogram {
    Histogram::new(TPS_BUCKETS)
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Every series `/metrics` serves. Clones share the values (the follower writes, the server reads).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub requests: Family<OutcomeLabels, Counter>,
    pub ttft: Histograms<JobLabels>,
    pub duration: Histograms<OutcomeLabels>,
    pub inter_token: Histograms<BackendLabels>,
    pub decode: Histograms<BackendLabels>,
    pub tokens: Family<TokenLabels, Counter>,
    pub memory: Family<MemoryLabels, Gauge>,
    pub restarts: Family<BackendLabels, Counter>,
    pub up: Family<BackendLabels, Gauge>,
    pub leak_rate: Family<BackendLabels, FloatGauge>,
    pub leak_suspected: Family<BackendLabels, Gauge>,
    pub wedged: Family<BackendLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            requests: Family::default(),
            ttft: Family::new_with_constructor(seconds_histogram),
            duration: Family::new_with_constructor(seconds_histogram),
            inter_token: Family::new_with_constructor(seconds_histogram),
            decode: Family::new_with_constructor(tps_histogram),
            tokens: Family::default(),
            memory: Family::default(),
            restarts: Family::default(),
            up: Family::default(),
            leak_rate: Family::default(),
            leak_suspected: Family::default(),
            wedged: Family::default(),
        };
        let mut r = Registry::default();
        r.register(
            "soakd_requests",
            "Requests soakd finished, by outcome (soakd's outcome names; db/README.md)",
            m.requests.clone(),
        );
        r.register(
            "soakd_time_to_first_token_seconds",
            "Time to the first token of successful requests",
            m.ttft.clone(),
        );
        r.register(
            "soakd_request_duration_seconds",
            "Whole request time, from sending to the last byte, by outcome",
            m.duration.clone(),
        );
        r.register(
            "soakd_inter_token_latency_seconds",
            "Time per output token after the first, one observation per successful request (OpenTelemetry's time_per_output_token)",
            m.inter_token.clone(),
        );
        r.register("soakd_decode_tokens_per_second", "Decode rate of successful requests", m.decode.clone());
        r.register(
            "soakd_tokens",
            "Tokens in finished requests, prompt and completion (the server's usage, else counted)",
            m.tokens.clone(),
        );
        r.register(
            "soakd_server_memory_bytes",
            "The server's memory at soakd's latest sample: resident (rss) and footprint",
            m.memory.clone(),
        );
        r.register(
            "soakd_server_restarts",
            "Restarts of the server's process that soakd saw (a new pid or start time)",
            m.restarts.clone(),
        );
        r.register(
            "soakd_server_up",
            "1 when the latest finished request reached the server, 0 when it could not connect or the server died under it",
            m.up.clone(),
        );
        r.register(
            "soakd_leak_bytes_per_hour",
            "Memory growth rate of a leak the latest analysis found; 0 when its verdict is anything else",
            m.leak_rate.clone(),
        );
        r.register(
            "soakd_leak_suspected",
            "1 when the latest analysis's leak verdict is leak",
            m.leak_suspected.clone(),
        );
        r.register(
            "soakd_backend_wedged",
            "1 when the latest requests all went unanswered while the server still looked up",
            m.wedged.clone(),
        );
        r.register("soakd_build", "soakd's version", Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]));
        Metrics { registry: Arc::new(r), ..m }
    }

    /// Counts one finished request (a row read back from the log).
    pub fn observe(&self, f: &Finished) {
        let outcome = Outcome::from_stored(&f.outcome).map_or("other", Outcome::as_str);
        let (backend, job) = (f.backend.clone(), f.job.clone());
        let by_outcome = OutcomeLabels { backend: backend.clone(), job: job.clone(), outcome };
        self.requests.get_or_create(&by_outcome).inc();
        if let Some(e2e) = f.e2e_ms {
            self.duration.get_or_create(&by_outcome).observe(e2e / 1000.0);
        }
        let b = BackendLabels { backend: backend.clone() };
        // A backend's restart series exists from its first request, at 0 until a restart.
        self.restarts.get_or_create(&b).inc_by(0);
        if outcome == Outcome::Ok.as_str() {
            if let Some(ttft) = f.ttft_ms {
                self.ttft.get_or_create(&JobLabels { backend: backend.clone(), job }).observe(ttft / 1000.0);
            }
            if let Some(per_token) = time_per_output_token(f) {
                self.inter_token.get_or_create(&b).observe(per_token);
            }
            if let Some(tps) = f.decode_tps.filter(|t| t.is_finite() && *t > 0.0) {
                self.decode.get_or_create(&b).observe(tps);
            }
        }
        for (kind, n) in [("prompt", f.prompt_tokens), ("completion", f.completion_tokens)] {
            if let Some(n) = n.filter(|n| *n > 0) {
                self.tokens.get_or_create(&TokenLabels { backend: backend.clone(), r#type: kind }).inc_by(n as u64);
            }
        }
        let unreachable = [Outcome::ConnectRefused, Outcome::ConnectTimeout, Outcome::ConnectError, Outcome::Crash]
            .iter()
            .any(|o| o.as_str() == outcome);
        if outcome != Outcome::Cancelled.as_str() && outcome != Outcome::Interrupted.as_str() {
            self.up.get_or_create(&b).set(i64::from(!unreachable));
        }
    }

    /// The server's memory at a sample that found its process.
    pub fn memory(&self, backend: &str, rss: Option<i64>, footprint: Option<i64>) {
        for (kind, v) in [("rss", rss), ("footprint", footprint)] {
            if let Some(v) = v {
                self.memory.get_or_create(&MemoryLabels { backend: backend.into(), kind }).set(v);
            }
        }
    }

    /// The OpenMetrics text (`application/openmetrics-text`, what Prometheus asks for first).
    pub fn openmetrics(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }

    /// The Prometheus text format 0.0.4 (for `curl`, `promtool check metrics` and older scrapers).
    pub fn prometheus_text(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// Seconds per output token after the first: (end − first content) / (tokens − 1).
fn time_per_output_token(f: &Finished) -> Option<f64> {
    let n = f.completion_tokens.filter(|n| *n >= 2)?;
    let first = f.first_content_ms.or(f.ttft_ms)?;
    let span = f.e2e_ms? - first;
    (span >= 0.0).then(|| span / 1000.0 / (n - 1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(outcome: &str, ttft: Option<f64>, e2e: Option<f64>, tokens: Option<i64>) -> Finished {
        Finished {
            backend: "llama".into(),
            job: "probe".into(),
            outcome: outcome.into(),
            ttft_ms: ttft,
            first_content_ms: ttft,
            e2e_ms: e2e,
            prompt_tokens: Some(12),
            completion_tokens: tokens,
            decode_tps: Some(40.0),
        }
    }

    #[test]
    fn buckets_double_from_a_millisecond_and_a_quarter_and_hold_otels() {
        assert_eq!(
            (SECONDS_BUCKETS[0], SECONDS_BUCKETS[3], SECONDS_BUCKETS[16], SECONDS_BUCKETS[19]),
            (0.00125, 0.01, 81.92, 655.36)
        );
        assert_eq!((TPS_BUCKETS[0], TPS_BUCKETS[13]), (1.0, 8192.0));
    }

    #[test]
    fn a_request_counts_in_every_series_it_belongs_to() {
        let m = Metrics::new();
        m.observe(&request("ok", Some(20.0), Some(220.0), Some(11)));
        m.observe(&request("someday_outcome", None, None, None));
        m.observe(&request("connect_refused", None, Some(1.0), None));
        m.memory("llama", Some(2_000_000), None);
        let text = m.prometheus_text();
        for line in [
            r#"soakd_requests_total{backend="llama",job="probe",outcome="ok"} 1"#,
            r#"soakd_requests_total{backend="llama",job="probe",outcome="connect_refused"} 1"#,
            r#"soakd_requests_total{backend="llama",job="probe",outcome="other"} 1"#,
            r#"soakd_time_to_first_token_seconds_bucket{backend="llama",job="probe",le="0.02"} 1"#,
            r#"soakd_time_to_first_token_seconds_bucket{backend="llama",job="probe",le="0.01"} 0"#,
            r#"soakd_time_to_first_token_seconds_count{backend="llama",job="probe"} 1"#,
            r#"soakd_inter_token_latency_seconds_sum{backend="llama"} 0.02"#,
            r#"soakd_tokens_total{backend="llama",type="prompt"} 36"#,
            r#"soakd_tokens_total{backend="llama",type="completion"} 11"#,
            r#"soakd_server_memory_bytes{backend="llama",kind="rss"} 2000000"#,
            r#"soakd_server_up{backend="llama"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");
        }
        assert!(text.contains("soakd_build_info{version=\"") && !text.contains("# EOF"), "{text}");
        assert!(m.openmetrics().ends_with("# EOF\n"));
    }
}
