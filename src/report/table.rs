//! Terminal rendering of backend summaries: the comparison table `once` and `demo` print.

use crate::analysis::summary::BackendSummary;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, ContentArrangement, Table};

/// The per-backend comparison table.
pub fn table(summaries: &[BackendSummary]) -> String {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header([
        "backend",
        "requests",
        "success",
        "95% CI",
        "TTFT p50",
        "TTFT p95",
        "tok/s p50",
        "peak RSS",
        "restarts",
        "failures",
    ]);
    for s in summaries {
        let failures = if s.failures.is_empty() {
            "-".to_string()
        } else {
            s.failures.iter().map(|(o, n)| format!("{o} ×{n}")).collect::<Vec<_>>().join(", ")
        };
        t.add_row([
            s.backend.clone(),
            s.requests.to_string(),
            format!("{:.1} % ({}/{})", s.success_rate * 100.0, s.ok, s.requests),
            format!("{:.0}–{:.0} %", s.success_ci.0 * 100.0, s.success_ci.1 * 100.0),
            ms(s.ttft_p50_ms),
            ms(s.ttft_p95_ms),
            s.decode_tps_p50.or(s.output_tps_p50).map_or("-".into(), |v| format!("{v:.1}")),
            s.peak_rss_bytes.map_or("-".into(), bytes),
            s.restarts.to_string(),
            failures,
        ]);
    }
    for i in 1..=8 {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t.to_string()
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| if v >= 10_000.0 { format!("{:.1} s", v / 1000.0) } else { format!("{v:.0} ms") })
}

/// Bytes in binary units, e.g. `412.3 MiB`.
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// The note for a window that reaches before the raw-retention horizon.
pub fn horizon_note(h: &super::model::RawHorizon) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "\nNote: raw rows before {} were rolled up into hourly aggregates and pruned (retention); the analysis below covers only what came after.\n",
        h.horizon_utc
    );
    for r in &h.rolled_up {
        let failures: Vec<String> = r.failures.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        let _ = writeln!(
            out,
            "  before it, {}: {} requests in {} h, {:.1} % ok{}{}{}",
            crate::text::printable(&r.backend),
            r.requests,
            r.hours,
            100.0 * r.success_rate,
            r.ttft_mean_ms.map(|t| format!(", mean TTFT {t:.0} ms")).unwrap_or_default(),
            r.decode_tps_mean.map(|t| format!(", mean decode {t:.1} tok/s")).unwrap_or_default(),
            if failures.is_empty() { String::new() } else { format!(" ({})", failures.join(", ")) }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_naturally() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(4_670_000_000), "4.3 GiB");
    }

    #[test]
    fn table_shows_each_backend_and_its_failures() {
        let s = BackendSummary {
            backend: "lmstudio-sim".into(),
            requests: 5,
            ok: 3,
            success_rate: 0.6,
            success_ci: (0.23, 0.88),
            failures: vec![("server_reported_crash".into(), 2)],
            ttft_p50_ms: Some(226.0),
            ttft_p95_ms: Some(12_345.0),
            e2e_p50_ms: None,
            decode_tps_p50: Some(22.9),
            decode_tps_mean: None,
            output_tps_p50: None,
            peak_rss_bytes: Some(3 << 20),
            restarts: 1,
        };
        let t = table(&[s]);
        for want in [
            "lmstudio-sim",
            "60.0 % (3/5)",
            "23–88 %",
            "226 ms",
            "12.3 s",
            "22.9",
            "3.0 MiB",
            "server_reported_crash ×2",
        ] {
            assert!(t.contains(want), "{want} missing from\n{t}");
        }
    }
}
