//! Per-backend summary of a set of requests: the comparison table `soakd once` and
//! `soakd demo` print — requests, success rate (with a 95 % Wilson interval, so 3 of 5 reads
//! as the uncertain number it is), TTFT and tokens/s percentiles, peak memory, restarts.

use crate::measure::outcome::{stored_counts_as_failure, stored_is_counted};
use crate::measure::stats::{Z_975, mean, percentiles};
use crate::store::queries::RequestFacts;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct BackendSummary {
    pub backend: String,
    pub requests: u64,
    pub ok: u64,
    pub success_rate: f64,
    /// 95 % Wilson score interval of the success rate.
    pub success_ci: (f64, f64),
    /// Failures by outcome, most frequent first.
    pub failures: Vec<(String, u64)>,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p95_ms: Option<f64>,
    pub e2e_p50_ms: Option<f64>,
    pub decode_tps_p50: Option<f64>,
    pub decode_tps_mean: Option<f64>,
    /// Tokens per second over the whole request, for non-streamed requests too.
    pub output_tps_p50: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
    pub restarts: u64,
}

/// Summarises requests per backend (sorted by name). Timing percentiles use successful
/// requests only; `peak_rss` and `restarts` come from the memory samples and events.
pub fn summarise(
    rows: &[RequestFacts],
    peak_rss: &BTreeMap<String, u64>,
    restarts: &BTreeMap<String, u64>,
) -> Vec<BackendSummary> {
    let mut by_backend: BTreeMap<&str, Vec<&RequestFacts>> = BTreeMap::new();
    for r in rows.iter().filter(|r| stored_is_counted(&r.outcome)) {
        by_backend.entry(&r.backend).or_default().push(r);
    }
    by_backend
        .into_iter()
        .map(|(backend, rows)| {
            let requests = rows.len() as u64;
            let ok_rows: Vec<&&RequestFacts> = rows.iter().filter(|r| r.outcome == "ok").collect();
            let ok = ok_rows.len() as u64;
            let mut failures: BTreeMap<&str, u64> = BTreeMap::new();
            for r in rows.iter().filter(|r| stored_counts_as_failure(&r.outcome)) {
                *failures.entry(&r.outcome).or_default() += 1;
            }
            let mut failures: Vec<(String, u64)> = failures.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            failures.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let [ttft_p50_ms, ttft_p95_ms] = percentiles(ok_rows.iter().filter_map(|r| r.ttft_ms), [50.0, 95.0]);
            let [e2e_p50_ms] = percentiles(ok_rows.iter().filter_map(|r| r.e2e_ms), [50.0]);
            let [decode_tps_p50] = percentiles(ok_rows.iter().filter_map(|r| r.decode_tps), [50.0]);
            let [output_tps_p50] = percentiles(ok_rows.iter().filter_map(|r| r.output_tps), [50.0]);
            BackendSummary {
                backend: backend.to_string(),
                requests,
                ok,
                success_rate: if requests > 0 { ok as f64 / requests as f64 } else { 0.0 },
                success_ci: wilson(ok, requests),
                failures,
                ttft_p50_ms,
                ttft_p95_ms,
                e2e_p50_ms,
                decode_tps_p50,
                decode_tps_mean: mean(ok_rows.iter().filter_map(|r| r.decode_tps)),
                output_tps_p50,
                peak_rss_bytes: peak_rss.get(backend).copied(),
                restarts: restarts.get(backend).copied().unwrap_or(0),
            }
        })
        .collect()
}

/// The 95 % Wilson score interval for `k` successes in `n` trials.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let denom = 1.0 + Z_975 * Z_975 / n;
    let centre = (p + Z_975 * Z_975 / (2.0 * n)) / denom;
    let half = Z_975 * (p * (1.0 - p) / n + Z_975 * Z_975 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(backend: &str, outcome: &str, ttft: f64, tps: f64) -> RequestFacts {
        RequestFacts {
            backend: backend.into(),
            outcome: outcome.into(),
            ttft_ms: Some(ttft),
            e2e_ms: Some(ttft * 10.0),
            decode_tps: Some(tps),
            output_tps: Some(tps / 2.0),
        }
    }

    #[test]
    fn wilson_matches_published_values() {
        // 3 of 5: 95 % Wilson interval 0.231–0.882 (e.g. Brown, Cai & DasGupta 2001 tables).
        let (lo, hi) = wilson(3, 5);
        assert!((lo - 0.2307).abs() < 1e-3 && (hi - 0.8824).abs() < 1e-3, "{lo} {hi}");
        let (lo, hi) = wilson(0, 10);
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 1e-3, "{hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn summarises_per_backend_with_failures_ranked() {
        let rows = vec![
            row("b", "ok", 100.0, 20.0),
            row("b", "ok", 200.0, 30.0),
            row("b", "stall", 900.0, 1.0),
            row("b", "server_reported_crash", 0.0, 0.0),
            row("b", "server_reported_crash", 0.0, 0.0),
            row("a", "ok", 50.0, 10.0),
            row("a", "in_flight", 0.0, 0.0),
        ];
        let peak = BTreeMap::from([("b".to_string(), 1000)]);
        let restarts = BTreeMap::from([("b".to_string(), 2)]);
        let s = summarise(&rows, &peak, &restarts);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].backend.as_str(), s[0].requests, s[0].ok), ("a", 1, 1));
        let b = &s[1];
        assert_eq!((b.requests, b.ok), (5, 2));
        assert!((b.success_rate - 0.4).abs() < 1e-12);
        assert_eq!(b.failures, vec![("server_reported_crash".to_string(), 2), ("stall".to_string(), 1)]);
        assert_eq!(b.ttft_p50_ms, Some(150.0), "failed requests do not count in timings");
        assert_eq!(b.decode_tps_mean, Some(25.0));
        assert_eq!((b.peak_rss_bytes, b.restarts), (Some(1000), 2));
    }
}
