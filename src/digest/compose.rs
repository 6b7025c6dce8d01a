//! The digest's subject line and plain-text part. Everything that came from a server or a model
//! (backend names from the config aside) is shown without control characters and bounded.

use super::changes::Changes;
use super::charts::Chart;
use crate::report::model::{BackendReport, Finding, Report};
use crate::report::table::bytes;
use crate::text::{bounded, printable};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use std::fmt::Write;

/// Crash signatures shown per backend.
pub const TOP_SIGNATURES: usize = 3;
/// Characters of an error example shown.
const EXAMPLE_CHARS: usize = 240;

/// The state at a glance: e.g. `soakd: 3 backends · lmstudio 2.1 % failed · mlx-server leaking 14 MB/h`.
pub fn subject(r: &Report) -> String {
    if r.backends.is_empty() {
        return format!("soakd: no requests since {}", r.window.from_utc);
    }
    let n = r.backends.len();
    let mut items: Vec<(u8, String)> = Vec::new();
    for b in &r.backends {
        let name = bounded(&printable(&b.name), 40);
        if b.leak.verdict == crate::analysis::leaks::Verdict::Leak {
            let rate = b.leak.mb_per_hour.unwrap_or(0.0);
            items.push((0, format!("{name} leaking {} MB/h", short_number(rate))));
        }
        if let Some(s) = &b.stuck {
            let since = crate::report::window::utc(s.since);
            let hhmm = since.get(11..16).unwrap_or(&since);
            items.push((0, format!("{name} {} since {hhmm}", s.kind.as_str().replace('_', " "))));
        }
        if b.requests > b.ok {
            let pct = 100.0 * (b.requests - b.ok) as f64 / b.requests as f64;
            items.push((1, format!("{name} {pct:.1} % failed")));
        }
        if b.restarts > 0 {
            items.push((2, format!("{name} restarted ×{}", b.restarts)));
        }
    }
    items.sort_by_key(|(rank, _)| *rank);
    let mut s = format!("soakd: {n} backend{}", if n == 1 { "" } else { "s" });
    if items.is_empty() {
        let requests: u64 = r.backends.iter().map(|b| b.requests).sum();
        let _ = write!(s, " · all ok ({requests} requests)");
    }
    let shown = items.len().min(3);
    for (_, item) in &items[..shown] {
        let _ = write!(s, " · {item}");
    }
    if items.len() > shown {
        let _ = write!(s, " · +{} more", items.len() - shown);
    }
    s
}

fn short_number(v: f64) -> String {
    if v.abs() >= 10.0 { format!("{v:.0}") } else { format!("{v:.1}") }
}

pub fn text(r: &Report, changes: &Changes, charts: &[Chart]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "soakd digest · {} → {} ({:.1} h)", r.window.from_utc, r.window.to_utc, r.window.hours);
    let _ = writeln!(out, "{}", subject(r));
    if r.backends.is_empty() {
        let _ = writeln!(
            out,
            "\nNo requests and no memory samples in this window: nothing ran. Is the daemon running\n\
             (`soakd run`), with backends in its config and jobs in its schedules (`soakd check`)?"
        );
        changes_section(&mut out, changes);
        return out;
    }
    let _ = writeln!(out, "\n== Comparison ==\n{}", comparison(r));
    changes_section(&mut out, changes);
    for b in &r.backends {
        backend(&mut out, b, r);
    }
    findings(&mut out, &r.findings);
    if !charts.is_empty() {
        let titles: Vec<&str> = charts.iter().map(|c| c.title.as_str()).collect();
        let _ = writeln!(out, "\nCharts (in the HTML part): {}.", titles.join("; "));
    }
    out
}

/// The comparison table, laid out the same whatever the terminal (it goes into a mail).
pub fn comparison(r: &Report) -> String {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Disabled);
    let mut header = vec!["".to_string()];
    header.extend(r.backends.iter().map(|b| bounded(&printable(&b.name), 40)));
    header.push("winner".into());
    t.set_header(header);
    for row in &r.comparison {
        let mut cells = vec![row.metric.to_string()];
        cells.extend(row.values.iter().cloned());
        cells.push(row.winner.as_deref().map(printable).unwrap_or_else(|| "-".into()));
        t.add_row(cells);
    }
    t.to_string()
}

fn changes_section(out: &mut String, c: &Changes) {
    let since = c.previous_at.map_or("the start (this is the first digest)".to_string(), |at| {
        format!("the previous digest, {}", crate::report::window::utc(at))
    });
    let _ = writeln!(out, "\n== Since {since} ==");
    if c.new.is_empty() && c.resolved.is_empty() && c.regressions.is_empty() {
        let _ = writeln!(out, "  nothing changed ({} finding(s) ongoing)", c.ongoing);
        return;
    }
    for f in &c.new {
        let _ = writeln!(out, "  new         {}", printable(&f.summary));
    }
    for f in &c.resolved {
        let _ = writeln!(out, "  resolved    {}", printable(f.summary.trim_start_matches("resolved: ")));
    }
    for s in &c.regressions {
        let _ = writeln!(out, "  regression  {}", printable(s));
    }
    let _ = writeln!(out, "  ({} ongoing)", c.ongoing);
}

fn backend(out: &mut String, b: &BackendReport, r: &Report) {
    let _ = writeln!(
        out,
        "\n== {} == {} requests, {:.1} % ok",
        bounded(&printable(&b.name), 60),
        b.requests,
        b.success_rate * 100.0
    );
    for line in backend_lines(b) {
        let _ = writeln!(out, "  {:<13} {}", line.0, line.1);
    }
    let top = &b.signatures[..b.signatures.len().min(TOP_SIGNATURES)];
    if !top.is_empty() {
        let _ = writeln!(out, "  top crash signatures:");
    }
    for s in top {
        let _ = writeln!(out, "    ×{} {} [{}]", s.count, printable(&s.signature), printable(&s.outcome));
        if !s.example.is_empty() {
            let _ = writeln!(out, "      example: {}", bounded(&printable(&s.example), EXAMPLE_CHARS));
        }
        let _ = writeln!(out, "      query:   {}", signature_query(&b.name, &s.signature, r));
    }
}

/// (label, text) lines about one backend, shared by the text and HTML parts.
pub fn backend_lines(b: &BackendReport) -> Vec<(&'static str, String)> {
    let mut lines = Vec::new();
    if let Some(s) = &b.stuck {
        lines.push((
            "state",
            format!(
                "{} since {} ({} requests in a row{})",
                s.kind.as_str().replace('_', " ").to_uppercase(),
                crate::report::window::utc(s.since),
                s.requests,
                s.health.as_deref().map_or(String::new(), |h| format!("; health: {}", printable(h)))
            ),
        ));
    }
    if !b.failures.is_empty() {
        let f: Vec<String> = b.failures.iter().map(|(o, n)| format!("{o} ×{n}")).collect();
        lines.push(("failures", f.join(", ")));
    }
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    lines.push((
        "TTFT",
        format!(
            "p50 {} · p95 {} · p99 {} ms; e2e p50 {} ms",
            ms(b.ttft_ms.p50),
            ms(b.ttft_ms.p95),
            ms(b.ttft_ms.p99),
            ms(b.e2e_ms.p50)
        ),
    ));
    if let Some(tps) = b.decode_tps.p50 {
        lines.push(("decode", format!("p50 {tps:.1} tok/s")));
    }
    lines.push((
        "memory",
        format!(
            "peak {} · last {} · {} ({})",
            b.peak_rss_bytes.map_or("-".into(), bytes),
            b.last_rss_bytes.map_or("-".into(), bytes),
            b.leak.verdict.as_str().replace('_', " "),
            printable(&b.leak.reason)
        ),
    ));
    if b.requests > b.ok || b.restarts > 0 {
        lines.push((
            "stability",
            format!(
                "restarts {} · MTBF {} · longest failure streak {} · median recovery {}",
                b.restarts,
                b.mtbf_s.map_or("-".into(), |s| format!("{s:.0} s")),
                b.longest_failure_streak,
                b.median_recovery_s.map_or("-".into(), |s| format!("{s:.1} s"))
            ),
        ));
    }
    for p in b.crash_patterns.iter().take(3) {
        lines.push(("pattern", p.line()));
    }
    for d in &b.drift {
        lines.push(("drift", format!("{} {:+.0} % over the last {} h", d.metric, d.change_pct, d.hours)));
    }
    lines
}

/// The SQL that lists the requests behind one crash signature in the digest's window.
pub fn signature_query(backend: &str, signature: &str, r: &Report) -> String {
    let window = crate::store::shown::Window { from: r.window.from, to: r.window.to };
    crate::store::shown::signature_requests(&printable(backend), &printable(signature), window)
}

fn findings(out: &mut String, findings: &[Finding]) {
    if findings.is_empty() {
        let _ = writeln!(out, "\n== Findings ==\n  none");
        return;
    }
    let _ = writeln!(out, "\n== Findings ==");
    for f in findings {
        let _ = writeln!(out, "  {:<9} {}", f.status, printable(&f.summary));
        if let Some(q) = &f.evidence {
            let _ = writeln!(out, "            {};", printable(q));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Window;

    fn empty_report() -> Report {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("e.db")).unwrap();
        crate::report::build::build(&conn, Window { from: 0, to: 3_600_000 }, &[], 3_600_000).unwrap()
    }

    #[test]
    fn an_empty_window_says_nothing_ran() {
        let r = empty_report();
        assert_eq!(subject(&r), "soakd: no requests since 1970-01-01 00:00 UTC");
        let t = text(&r, &Changes::default(), &[]);
        assert!(t.contains("nothing ran") && t.contains("soakd check"), "{t}");
        let h = super::super::html::render(&r, &Changes::default(), &[]);
        assert!(h.contains("nothing ran"), "{h}");
    }

    #[test]
    fn a_subject_never_holds_a_line_break() {
        let mut r = empty_report();
        let mut b = one_backend();
        b.name = "evil\r\nBcc: x@y".into();
        b.requests = 10;
        b.ok = 9;
        r.backends.push(b);
        let s = subject(&r);
        assert!(!s.contains('\n') && !s.contains('\r'), "{s:?}");
        assert!(s.contains("10.0 % failed"), "{s}");
    }

    /// A backend section built from a log with one memory sample.
    fn one_backend() -> crate::report::model::BackendReport {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        conn.execute(
            "INSERT INTO memory_samples (backend, pid, proc_started_at, taken_at, phase, in_flight, processes, rss_bytes,
                 sys_used_bytes, sys_available_bytes, swap_used_bytes) VALUES ('x', 1, 1, 10, 'idle', 0, 1, 1000, 1, 1, 0)",
            [],
        )
        .unwrap();
        let r = crate::report::build::build(&conn, Window { from: 0, to: 3_600_000 }, &[], 3_600_000).unwrap();
        r.backends.into_iter().next().expect("a backend with a memory sample")
    }
}
