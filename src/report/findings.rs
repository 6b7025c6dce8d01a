//! Findings: the conclusions of a report worth tracking from one night to the next — a leak,
//! a plateau, a step, failures, restarts, a crash pattern, two crash factors this log cannot tell
//! apart, a crash at a request count, a confirmed hypothesis, drift, API overhead. Each has a stable identity (kind, backend, key) so the
//! store can mark it new, ongoing or resolved, and an SQL query that lists its evidence.

use super::model::{BackendReport, Finding, Report};
use crate::analysis::crashes::Answer;
use crate::analysis::leaks::Verdict;
use crate::analysis::stuck::StuckKind;
use crate::measure::FindingKind;
use crate::store::shown;
use serde_json::json;

pub fn derive(report: &Report) -> Vec<Finding> {
    let mut out = Vec::new();
    for b in &report.backends {
        backend(b, report, &mut out);
    }
    for o in &report.api_overhead {
        let excludes_one =
            |r: &Option<crate::analysis::overhead::Ratio>| r.as_ref().is_some_and(|r| r.low > 1.0 || r.high < 1.0);
        if excludes_one(&o.ttft_ratio) || excludes_one(&o.decode_tps_ratio) {
            let ttft = o.ttft_ratio.as_ref().map(|r| format!("TTFT ×{:.2} ({:.2}–{:.2})", r.estimate, r.low, r.high));
            let tps = o
                .decode_tps_ratio
                .as_ref()
                .map(|r| format!("tokens/s ×{:.2} ({:.2}–{:.2})", r.estimate, r.low, r.high));
            out.push(Finding {
                kind: FindingKind::ApiOverhead,
                backend: None,
                key: format!("{} vs {}", o.a, o.b),
                verdict: "different".into(),
                status: "new".into(),
                summary: format!(
                    "{} vs {} on {}: {}",
                    o.a,
                    o.b,
                    o.model,
                    [ttft, tps].into_iter().flatten().collect::<Vec<_>>().join(", ")
                ),
                numbers: json!({"ttft_ratio": o.ttft_ratio, "decode_tps_ratio": o.decode_tps_ratio}),
                evidence: Some(shown::overhead(&o.a, &o.b, window(report))),
            });
        }
    }
    out
}

fn backend(b: &BackendReport, report: &Report, out: &mut Vec<Finding>) {
    let name = &b.name;
    let w = window(report);
    let finding = |kind: FindingKind,
                   key: String,
                   verdict: &str,
                   summary: String,
                   numbers: serde_json::Value,
                   evidence: String| Finding {
        kind,
        backend: Some(name.clone()),
        key,
        verdict: verdict.to_string(),
        status: "new".into(),
        summary,
        numbers,
        evidence: Some(evidence),
    };
    let memory_evidence = shown::idle_memory(name, w);
    match (b.leak.verdict, &b.leak.plateau) {
        (Verdict::Leak, _) => out.push(finding(
            FindingKind::Leak,
            "memory".into(),
            "leak",
            format!(
                "{name}: memory grows {:.1} MB/h{}{}",
                b.leak.mb_per_hour.unwrap_or(0.0),
                b.leak.mb_per_1k_requests.map_or(String::new(), |r| format!(" ({r:.1} MB per 1000 requests)")),
                b.leak
                    .hours_to_exhaustion
                    .map_or(String::new(), |h| format!("; at that rate memory runs out in {h:.0} h")),
            ),
            json!(b.leak),
            memory_evidence.clone(),
        )),
        (Verdict::Plateau, Some(p)) => out.push(finding(
            FindingKind::Plateau,
            "memory".into(),
            "plateau",
            format!("{name}: memory grew {:.0} MB, then held at {:.0} MB", p.grew_mb, p.level_mb),
            json!(p),
            memory_evidence,
        )),
        (Verdict::Step, _) => {
            let up: Vec<String> = b
                .leak
                .steps
                .iter()
                .filter(|s| s.delta_mb > 0.0)
                .take(3)
                .map(|s| format!("{:+.0} MB at {}", s.delta_mb, super::window::utc(s.at_ms)))
                .collect();
            out.push(finding(
                FindingKind::Step,
                "memory".into(),
                "step",
                format!("{name}: memory stepped up ({}) and held; no leak", up.join(", ")),
                json!({"steps": b.leak.steps, "mb_per_hour": b.leak.mb_per_hour}),
                memory_evidence,
            ));
        }
        _ => {}
    }
    if let Some(s) = &b.stuck {
        let since = super::window::utc(s.since);
        let (what, why) = s.what_and_why();
        out.push(finding(
            match s.kind {
                StuckKind::Wedged => FindingKind::Wedged,
                StuckKind::SilentFailure => FindingKind::SilentFailure,
            },
            "generation".into(),
            s.kind.as_str(),
            format!("{name}: {what} since {since} {why} (the last {} requests)", s.requests),
            json!(s),
            shown::requests_since(name, s.since),
        ));
    }
    let failed = b.requests - b.ok;
    if failed > 0 {
        let top: Vec<String> = b.failures.iter().map(|(o, n)| format!("{o} ×{n}")).collect();
        out.push(finding(
            FindingKind::FailureRate,
            "all".into(),
            "failing",
            format!(
                "{name}: {:.1} % of {} requests failed (95% CI {:.1}–{:.1} %): {}",
                100.0 - b.success_rate * 100.0,
                b.requests,
                100.0 - b.success_ci[1] * 100.0,
                100.0 - b.success_ci[0] * 100.0,
                top.join(", ")
            ),
            json!({"requests": b.requests, "failed": failed, "failures": b.failures, "success_ci": b.success_ci}),
            shown::failures(name, w),
        ));
    }
    if b.restarts > 0 {
        out.push(finding(
            FindingKind::Restarts,
            "process".into(),
            "restarted",
            format!("{name}: the server process restarted {} time(s)", b.restarts),
            json!({"restarts": b.restarts}),
            shown::restarts(name),
        ));
    }
    for p in &b.crash_patterns {
        let what = if p.signature == "*" { "failures".to_string() } else { format!("\"{}\" failures", p.signature) };
        out.push(finding(
            FindingKind::CrashPattern,
            format!("{} | {}={}", p.signature, p.factor, p.level),
            "significant",
            format!(
                "{name}: {what} are {:.1}× as likely with {} {} ({:.1} % vs {:.1} %, adjusted p = {:.2e})",
                p.rate_ratio,
                p.factor.replace('_', " "),
                p.level,
                p.rate_inside * 100.0,
                p.rate_outside * 100.0,
                p.p_adjusted
            ),
            json!(p),
            shown::failed_with_factors(name, w),
        ));
    }
    for c in &b.crash_confounded {
        out.push(finding(
            FindingKind::CrashConfounded,
            format!("{} | {}+{}", c.signature, c.factors[0], c.factors[1]),
            "confounded",
            format!(
                "{name}: failures go with {} and with {}, which this log cannot tell apart: {}",
                c.factors[0].replace('_', " "),
                c.factors[1].replace('_', " "),
                c.advice
            ),
            json!(c),
            shown::by_two_factors(name, [c.factors[0], c.factors[1]], w),
        ));
    }
    if let Some(c) = &b.at_request_count {
        out.push(finding(
            FindingKind::CrashAtRequestCount,
            "server_seq".into(),
            "significant",
            format!(
                "{name}: crashes come at about request {:.0} of each server life (CV {:.2}, vs {:.2} in time){}{}",
                c.median_seq,
                c.seq_cv,
                c.time_cv,
                c.period.map_or(String::new(), |n| format!(", every {n}th request")),
                if c.time_cv < c.seq_cv {
                    "; the lives lasted even more alike: at this pace an uptime limit would look the same"
                } else {
                    ""
                }
            ),
            json!(c),
            shown::per_server_life(name, w),
        ));
    }
    for (key, answer) in [
        ("rapid_sequential", &b.hypotheses.rapid_sequential),
        ("corruption_after_first_success", &b.hypotheses.corruption_after_first_success),
    ] {
        if let Answer::Yes { evidence } = answer {
            out.push(finding(
                FindingKind::Hypothesis,
                key.into(),
                "yes",
                format!("{name}: {} — yes: {evidence}", key.replace('_', " ")),
                json!(answer),
                shown::gaps(name, w),
            ));
        }
    }
    for d in &b.drift {
        out.push(finding(
            FindingKind::Drift,
            d.metric.to_string(),
            if d.worse { "worse" } else { "better" },
            format!(
                "{name}: {} moved {:+.0} % ({:.1} → {:.1}) for the last {} hours",
                d.metric.replace('_', " "),
                d.change_pct,
                d.baseline,
                d.recent,
                d.hours
            ),
            json!(d),
            shown::hourly(name),
        ));
    }
}

/// The report's window, for the queries shown beside its findings.
fn window(report: &Report) -> shown::Window {
    shown::Window { from: report.window.from, to: report.window.to }
}
