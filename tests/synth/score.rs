//! Runs soakd's report on a generated log and scores its verdict against the truth, reading the
//! report's JSON the way a user's script would.

use super::{Case, CrashTruth, HOUR, MemTruth};
use serde_json::Value;

/// The JSON `soakd report --format json` prints for the window `[from, to)` of the log in `db`.
pub fn report(db: &std::path::Path, from: i64, to: i64) -> Value {
    let conn = soakd::store::open_existing(db).expect("the generated database");
    let window = soakd::report::Window { from, to };
    let report = soakd::report::build::build(&conn, window, &[], to).expect("a report");
    serde_json::from_str(&soakd::report::render(&report, soakd::report::Format::Json)).expect("JSON")
}

/// The report over the log's own span, with an hour either side (a user's `--since 24h`).
pub fn report_for(case_db: &std::path::Path, span: (i64, i64)) -> Value {
    report(case_db, span.0 - HOUR, span.1 + HOUR)
}

/// Writes a memory case's log to `db` (replacing any file there) and judges it under a window
/// wide around the log and one drawn tight: the score, and the wide window's report.
pub fn judge_memory(case: &Case<MemTruth>, db: &std::path::Path) -> (MemScore, Value) {
    write_fresh(db, &case.log);
    let span = case.log.span();
    let wide = report(db, span.0 - 24 * HOUR, span.1 + HOUR);
    let tight = report(db, span.0, span.1 + 1);
    (memory(case, &wide, &tight), wide)
}

/// Writes a crash case's log to `db` (replacing any file there) and scores its report.
pub fn judge_crash(case: &Case<CrashTruth>, db: &std::path::Path) -> CrashScore {
    write_fresh(db, &case.log);
    crash(case, &report_for(db, case.log.span()))
}

fn write_fresh(db: &std::path::Path, log: &super::Log) {
    let _ = std::fs::remove_file(db);
    drop(super::write(db, std::slice::from_ref(log)));
}

#[derive(Debug, Clone)]
pub struct MemScore {
    pub class: &'static str,
    pub seed: u64,
    pub leak: bool,
    pub verdict: String,
    /// |estimate − truth| / truth of the rate the class defines (per hour, else per 1000 requests).
    pub slope_error: Option<f64>,
    pub estimate: Option<f64>,
    pub truth_rate: Option<f64>,
    /// The same verdict from a window drawn tight around the log.
    pub window_stable: bool,
    pub reason: String,
}

pub fn memory(case: &Case<MemTruth>, wide: &Value, tight: &Value) -> MemScore {
    let leak_of = |v: &Value| v["backends"][0]["leak"].clone();
    let (l, t) = (leak_of(wide), leak_of(tight));
    let verdict = l["verdict"].as_str().unwrap_or("missing").to_string();
    let (estimate, truth_rate) = match &case.truth {
        MemTruth::Leak { mb_per_hour: Some(h), .. } => (l["mb_per_hour"].as_f64(), Some(*h)),
        MemTruth::Leak { mb_per_1k_requests: Some(k), .. } => (l["mb_per_1k_requests"].as_f64(), Some(*k)),
        _ => (None, None),
    };
    let slope_error = estimate.zip(truth_rate).map(|(e, t)| (e - t).abs() / t.abs());
    MemScore {
        class: case.class,
        seed: case.seed,
        leak: matches!(case.truth, MemTruth::Leak { .. }),
        window_stable: t["verdict"] == l["verdict"],
        verdict,
        slope_error,
        estimate,
        truth_rate,
        reason: l["reason"].as_str().unwrap_or("").to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct CrashScore {
    pub class: &'static str,
    pub seed: u64,
    pub correct: bool,
    /// Any pattern at all (crash patterns of any family, or a request-count pattern).
    pub any_pattern: bool,
    pub top: String,
}

pub fn crash(case: &Case<CrashTruth>, report: &Value) -> CrashScore {
    let b = &report["backends"][0];
    let patterns = b["crash_patterns"].as_array().cloned().unwrap_or_default();
    let top = patterns.first();
    let name = |p: &Value| format!("{}={}", p["factor"].as_str().unwrap_or("?"), p["level"].as_str().unwrap_or("?"));
    let count = b["at_request_count"].as_object().map(|c| c["median_seq"].as_f64().unwrap_or(0.0));
    let any_pattern = !patterns.is_empty() || count.is_some();
    let correct = match &case.truth {
        CrashTruth::NoPattern => !any_pattern,
        CrashTruth::Factor { factor, level } => top.is_some_and(|p| {
            let level_right =
                level.as_ref().is_none_or(|l| p["level"].as_str().is_some_and(|got| got.split(',').any(|g| g == l)));
            (p["factor"] == *factor && level_right)
                || (*factor == "first_after_load" && p["factor"] == "server_seq" && p["level"] == "1")
        }),
        CrashTruth::RequestCount { n } => {
            top.is_some_and(|p| p["factor"] == "server_seq" && p["level"] != "1")
                && count.is_some_and(|m| (m - n).abs() <= 0.25 * n)
        }
    };
    let mut top = top.map(name).unwrap_or_else(|| "no pattern".into());
    if let Some(m) = count {
        top.push_str(&format!(" (request count ~{m:.0})"));
    }
    CrashScore { class: case.class, seed: case.seed, correct, any_pattern, top }
}
