//! The report for a terminal: the comparison table, the rankings, each backend's failures,
//! memory, patterns and hypotheses, then the findings. Server text is shown without control
//! characters.

use super::model::{BackendReport, Finding, Report};
use super::table::bytes;
use crate::analysis::crashes::Answer;
use crate::text::printable;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use std::fmt::Write;

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "soakd report · {} → {} ({:.1} h) · {} backend(s)",
        r.window.from_utc,
        r.window.to_utc,
        r.window.hours,
        r.backends.len()
    );
    if let Some(h) = &r.raw_horizon {
        let _ = write!(out, "{}", super::table::horizon_note(h));
    }
    if r.backends.is_empty() {
        let _ = writeln!(out, "\nNo requests in this window. Widen it with --since (e.g. --since 7d).");
        return out;
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
    let mut header = vec!["".to_string()];
    header.extend(r.backends.iter().map(|b| printable(&b.name)));
    header.push("winner".into());
    t.set_header(header);
    for row in &r.comparison {
        let mut cells = vec![row.metric.to_string()];
        cells.extend(row.values.iter().cloned());
        cells.push(row.winner.clone().unwrap_or_else(|| "-".into()));
        t.add_row(cells);
    }
    let _ = writeln!(out, "\n{t}");
    if let Some(note) = r.contended_note() {
        let _ = writeln!(out, "{note}");
    }
    let rank = |items: &[super::model::Ranked]| {
        items
            .iter()
            .enumerate()
            .map(|(i, x)| format!("{}. {} {}", i + 1, printable(&x.backend), x.display))
            .collect::<Vec<_>>()
            .join("   ")
    };
    let _ = writeln!(out, "speed:       {}", rank(&r.rankings.speed));
    let _ = writeln!(out, "reliability: {}", rank(&r.rankings.reliability));
    for b in &r.backends {
        backend(&mut out, b);
    }
    for o in &r.api_overhead {
        let ratio = |x: &Option<crate::analysis::overhead::Ratio>| {
            x.as_ref().map_or("-".into(), |x| format!("×{:.2} (95% CI {:.2}–{:.2})", x.estimate, x.low, x.high))
        };
        let _ = writeln!(
            out,
            "\napi overhead, {} vs {} ({}): TTFT {}, decode tokens/s {}",
            printable(&o.a),
            printable(&o.b),
            printable(&o.model),
            ratio(&o.ttft_ratio),
            ratio(&o.decode_tps_ratio)
        );
    }
    findings(&mut out, &r.findings);
    out
}

fn backend(out: &mut String, b: &BackendReport) {
    let _ = writeln!(out, "\n── {} ── {} requests, {:.1} % ok", printable(&b.name), b.requests, b.success_rate * 100.0);
    if !b.failures.is_empty() {
        let f: Vec<String> = b.failures.iter().map(|(o, n)| format!("{o} ×{n}")).collect();
        let _ = writeln!(out, "  failures      {}", f.join(", "));
    }
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    let _ = writeln!(
        out,
        "  TTFT          p50 {} · p95 {} · p99 {} ms; first content p50 {} ms; e2e p50 {} ms",
        ms(b.ttft_ms.p50),
        ms(b.ttft_ms.p95),
        ms(b.ttft_ms.p99),
        ms(b.first_content_ms.p50),
        ms(b.e2e_ms.p50)
    );
    let _ = writeln!(
        out,
        "  streamed      {} requests, decode p50 {} tok/s · non-streamed {} requests, {} tok/s",
        b.streamed.requests,
        b.streamed.tps_p50.map_or("-".into(), |v| format!("{v:.1}")),
        b.non_streamed.requests,
        b.non_streamed.tps_p50.map_or("-".into(), |v| format!("{v:.1}")),
    );
    let _ = writeln!(
        out,
        "  memory        peak {} · last {} · {} ({}) · restarts {}",
        b.peak_rss_bytes.map_or("-".into(), bytes),
        b.last_rss_bytes.map_or("-".into(), bytes),
        b.leak.verdict.as_str().replace('_', " "),
        printable(&b.leak.reason),
        b.restarts
    );
    if !b.server_versions.is_empty() || b.load_time_s.is_some() {
        let versions: Vec<String> = b
            .server_versions
            .iter()
            .map(|v| format!("{} (from {})", printable(&v.version), v.first_seen_utc))
            .collect();
        let _ = writeln!(
            out,
            "  server        {}{}",
            if versions.is_empty() { "version not reported".into() } else { versions.join(" → ") },
            b.load_time_s.map_or(String::new(), |s| format!(" · longest model load {s:.2} s"))
        );
    }
    if b.requests > b.ok {
        let _ = writeln!(
            out,
            "  stability     MTBF {} · longest failure streak {} · median recovery {}",
            b.mtbf_s.map_or("-".into(), |s| format!("{s:.0} s")),
            b.longest_failure_streak,
            b.median_recovery_s.map_or("-".into(), |s| format!("{s:.1} s"))
        );
    }
    for s in b.signatures.iter().take(3) {
        let _ = writeln!(out, "  signature     ×{:<5} {} [{}]", s.count, printable(&s.signature), s.outcome);
    }
    for p in &b.crash_patterns {
        let _ = writeln!(out, "  pattern       {}", p.line());
    }
    for c in &b.crash_confounded {
        let _ = writeln!(out, "  confounded    {}", printable(&c.advice));
    }
    if b.crash_episodes.count > 0 && !b.crash_episodes.consequences.is_empty() {
        let after: Vec<String> = b.crash_episodes.consequences.iter().map(|(o, n)| format!("{o} ×{n}")).collect();
        let _ = writeln!(
            out,
            "  episodes      {} ({} triggered), then {} · recovery p50 {} p95 {}",
            b.crash_episodes.count,
            b.crash_episodes.triggered,
            after.join(", "),
            b.crash_episodes.recovery_p50_s.map_or("-".into(), |s| format!("{s:.1} s")),
            b.crash_episodes.recovery_p95_s.map_or("-".into(), |s| format!("{s:.1} s"))
        );
    }
    for (q, a) in [
        ("rapid sequential requests", &b.hypotheses.rapid_sequential),
        ("corruption after first success", &b.hypotheses.corruption_after_first_success),
    ] {
        let (word, evidence) = match a {
            Answer::Yes { evidence } => ("yes", evidence),
            Answer::No { evidence } => ("no", evidence),
            Answer::NotEnoughData { evidence } => ("not enough data", evidence),
        };
        let _ = writeln!(out, "  hypothesis    {q}? {word}: {}", printable(evidence));
    }
    for d in &b.drift {
        let _ = writeln!(out, "  drift         {} {:+.0} % over the last {} h", d.metric, d.change_pct, d.hours);
    }
}

fn findings(out: &mut String, findings: &[Finding]) {
    let count = |s: &str| findings.iter().filter(|f| f.status == s).count();
    let _ =
        writeln!(out, "\nfindings: {} new, {} ongoing, {} resolved", count("new"), count("ongoing"), count("resolved"));
    for f in findings {
        let _ = writeln!(out, "  {:<9} {}", f.status, printable(&f.summary));
    }
}
