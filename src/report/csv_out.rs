//! The report as CSV: one row per backend, flat columns, for spreadsheets.

use super::model::Report;

const HEADER: [&str; 26] = [
    "backend",
    "requests",
    "ok",
    "success_rate",
    "success_ci_low",
    "success_ci_high",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "ttft_p99_ms",
    "first_content_p50_ms",
    "e2e_p50_ms",
    "decode_tps_mean",
    "decode_tps_p50",
    "streamed_requests",
    "non_streamed_requests",
    "non_streamed_tps_p50",
    "peak_rss_bytes",
    "last_rss_bytes",
    "restarts",
    "mtbf_s",
    "longest_failure_streak",
    "leak_verdict",
    "leak_mb_per_hour",
    "leak_p_value",
    "failures",
    "window_hours",
];

pub fn render(report: &Report) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(HEADER);
    let num = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    for b in &report.backends {
        let failures: Vec<String> = b.failures.iter().map(|(o, n)| format!("{o}:{n}")).collect();
        let _ = w.write_record([
            b.name.clone(),
            b.requests.to_string(),
            b.ok.to_string(),
            format!("{:.5}", b.success_rate),
            format!("{:.5}", b.success_ci[0]),
            format!("{:.5}", b.success_ci[1]),
            num(b.ttft_ms.p50),
            num(b.ttft_ms.p95),
            num(b.ttft_ms.p99),
            num(b.first_content_ms.p50),
            num(b.e2e_ms.p50),
            num(b.decode_tps.mean),
            num(b.decode_tps.p50),
            b.streamed.requests.to_string(),
            b.non_streamed.requests.to_string(),
            num(b.non_streamed.tps_p50),
            b.peak_rss_bytes.map(|v| v.to_string()).unwrap_or_default(),
            b.last_rss_bytes.map(|v| v.to_string()).unwrap_or_default(),
            b.restarts.to_string(),
            num(b.mtbf_s),
            b.longest_failure_streak.to_string(),
            b.leak.verdict.as_str().to_string(),
            num(b.leak.mb_per_hour),
            b.leak.p_value.map(|p| format!("{p:.3e}")).unwrap_or_default(),
            failures.join(";"),
            format!("{:.2}", report.window.hours),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}
