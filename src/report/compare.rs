//! The seed report's "Performance Comparison Table" and its speed and reliability rankings,
//! regenerated from thousands of requests. A winner is named only when the data supports one:
//! speeds within 5 % are a tie, and success rates need non-overlapping 95 % intervals.

use super::model::{BackendReport, ComparisonRow, Ranked, Rankings};
use crate::analysis::leaks::Verdict;

/// Relative difference under which two speeds or latencies are called a tie.
const TIE: f64 = 0.05;

pub fn table(backends: &[BackendReport]) -> Vec<ComparisonRow> {
    let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
    let mut rows = Vec::new();

    let speed: Vec<Option<f64>> = backends.iter().map(speed_of).collect();
    rows.push(ComparisonRow {
        metric: "Average tokens/second",
        values: backends
            .iter()
            .map(|b| match (b.decode_tps.mean, b.decode_tps.p50) {
                (Some(mean), Some(p50)) => format!("{mean:.1} tok/s (p50 {p50:.1}, n={})", b.streamed.ok),
                _ => b.non_streamed.tps_p50.map_or("-".into(), |v| format!("{v:.1} tok/s whole request (p50)")),
            })
            .collect(),
        ..best(&names, &speed, true, "highest median decode tokens/s")
    });
    let ttft: Vec<Option<f64>> = backends.iter().map(|b| b.ttft_ms.p50).collect();
    rows.push(ComparisonRow {
        metric: "Time to first token",
        values: backends
            .iter()
            .map(|b| match (b.ttft_ms.p50, b.ttft_ms.p95) {
                (Some(p50), Some(p95)) => format!("{p50:.0} ms (p95 {p95:.0} ms)"),
                _ => "-".into(),
            })
            .collect(),
        ..best(&names, &ttft, false, "lowest median TTFT")
    });
    let memory: Vec<Option<f64>> = backends.iter().map(|b| b.peak_rss_bytes.map(|v| v as f64)).collect();
    rows.push(ComparisonRow {
        metric: "Memory usage (peak RSS)",
        values: backends.iter().map(|b| b.peak_rss_bytes.map_or("-".into(), super::table::bytes)).collect(),
        ..best(&names, &memory, false, "lowest peak RSS of the process tree")
    });
    rows.push(ComparisonRow {
        metric: "Memory trend",
        values: backends
            .iter()
            .map(|b| match (b.leak.verdict, b.leak.mb_per_hour) {
                (Verdict::Leak, Some(mb)) => format!("leaking {mb:.1} MB/h"),
                (Verdict::Plateau, _) => "grew, then plateaued".into(),
                (Verdict::Step, _) => {
                    let up: f64 = b.leak.steps.iter().map(|s| s.delta_mb).filter(|d| *d > 0.0).sum();
                    format!("stepped up {up:.0} MB, no leak")
                }
                (Verdict::NoLeak, _) => "no leak".into(),
                _ => "not enough data".into(),
            })
            .collect(),
        winner: None,
        basis: "idle memory per process life, warm-ups and steps set apart; Theil–Sen slope, Mann–Kendall test allowing for serial correlation, growth above the noise".into(),
    });
    let load: Vec<Option<f64>> = backends.iter().map(|b| b.load_time_s).collect();
    rows.push(ComparisonRow {
        metric: "Load time",
        values: backends
            .iter()
            .map(|b| b.load_time_s.map_or("pre-loaded / not reported".into(), |s| format!("{s:.2} s")))
            .collect(),
        ..best(&names, &load, false, "lowest model load time")
    });
    rows.push(reliability(backends));
    rows.push(ComparisonRow {
        metric: "Restarts",
        values: backends.iter().map(|b| b.restarts.to_string()).collect(),
        winner: None,
        basis: "new process ids seen by the memory sampler".into(),
    });
    rows
}

fn speed_of(b: &BackendReport) -> Option<f64> {
    b.decode_tps.p50.or(b.non_streamed.tps_p50)
}

/// The best value (highest or lowest) when it beats every other by more than `TIE`.
fn best(names: &[&str], values: &[Option<f64>], higher: bool, basis: &str) -> ComparisonRow {
    let known: Vec<(usize, f64)> = values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i, v))).collect();
    let (winner, basis) = if known.len() < 2 {
        (None, format!("{basis} (needs two backends with data)"))
    } else {
        let cmp = |a: &&(usize, f64), b: &&(usize, f64)| a.1.total_cmp(&b.1);
        let top = if higher { known.iter().max_by(cmp) } else { known.iter().min_by(cmp) }.expect("two or more");
        let clear = known.iter().filter(|k| k.0 != top.0).all(|k| {
            let gap = (top.1 - k.1).abs() / top.1.abs().max(k.1.abs()).max(f64::MIN_POSITIVE);
            gap > TIE
        });
        if clear {
            (Some(names[top.0].to_string()), basis.to_string())
        } else {
            (None, format!("{basis}: within {:.0} %, a tie", TIE * 100.0))
        }
    };
    ComparisonRow { metric: "", values: Vec::new(), winner, basis }
}

fn reliability(backends: &[BackendReport]) -> ComparisonRow {
    let values = backends
        .iter()
        .map(|b| {
            format!(
                "{:.1} % ({}/{}), 95% CI {:.0}–{:.0} %",
                b.success_rate * 100.0,
                b.ok,
                b.requests,
                b.success_ci[0] * 100.0,
                b.success_ci[1] * 100.0
            )
        })
        .collect();
    let with_data: Vec<&BackendReport> = backends.iter().filter(|b| b.requests > 0).collect();
    let top = with_data.iter().max_by(|a, b| a.success_rate.total_cmp(&b.success_rate));
    let winner = top.filter(|t| {
        with_data.len() >= 2 && with_data.iter().filter(|b| b.name != t.name).all(|b| t.success_ci[0] > b.success_ci[1])
    });
    ComparisonRow {
        metric: "Reliability",
        values,
        winner: winner.map(|w| w.name.clone()),
        basis: if winner.is_some() {
            "highest success rate, 95 % intervals apart".into()
        } else {
            "no clear winner: the 95 % intervals overlap (or too few backends)".into()
        },
    }
}

pub fn rankings(backends: &[BackendReport]) -> Rankings {
    let mut speed: Vec<Ranked> = backends
        .iter()
        .filter_map(|b| {
            speed_of(b).map(|v| Ranked { backend: b.name.clone(), value: v, display: format!("{v:.1} tok/s") })
        })
        .collect();
    speed.sort_by(|a, b| b.value.total_cmp(&a.value));
    let mut reliability: Vec<(f64, Ranked)> = backends
        .iter()
        .filter(|b| b.requests > 0)
        .map(|b| {
            let display = format!("{:.1} % ({}/{})", b.success_rate * 100.0, b.ok, b.requests);
            (b.success_ci[0], Ranked { backend: b.name.clone(), value: b.success_rate, display })
        })
        .collect();
    reliability.sort_by(|a, b| b.1.value.total_cmp(&a.1.value).then(b.0.total_cmp(&a.0)));
    Rankings { speed, reliability: reliability.into_iter().map(|(_, r)| r).collect() }
}
