//! What a leak verdict is and says: the thresholds (`LeakParams`), the verdicts, the report the
//! JSON carries (`LeakReport`: the contract's `verdict`, `mb_per_hour`, `mb_per_1k_requests`,
//! `p_value`, and what backs them) and the sentence a human reads (`reason`). `leaks` decides;
//! this module holds the vocabulary and the words.

use serde::Serialize;

use super::memory_life::MemPoint;

/// The samples of one process lifetime (the caller splits the series at restarts), in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Lifetime {
    /// The process id of this lifetime.
    pub pid: u32,
    /// Its idle samples.
    pub points: Vec<MemPoint>,
}

/// Thresholds for [`detect_leak`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeakParams {
    /// Least judged span (after warm-ups) of the lives before any verdict (default 30 min).
    pub min_span_ms: i64,
    /// Least number of samples before any verdict (default 12).
    pub min_points: usize,
    /// Significance level of the trend test (default 0.01).
    pub alpha: f64,
    /// Least growth rate, MB per hour, that counts as a leak (default 1.0).
    pub min_mb_per_hour: f64,
    /// Growth over the longest life, in residual-noise sigmas, that counts as a leak (default 5).
    pub practical_sigmas: f64,
    /// The last thirds of the lives must grow at least this share of the slope (the upper end of
    /// their 95 % interval) for growth to persist (default 0.5).
    pub persist_share: f64,
}

impl Default for LeakParams {
    fn default() -> Self {
        LeakParams {
            min_span_ms: 30 * 60 * 1000,
            min_points: 12,
            alpha: 0.01,
            min_mb_per_hour: 1.0,
            practical_sigmas: 5.0,
            persist_share: 0.5,
        }
    }
}

/// The outcome of [`detect_leak`].
#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Significant, sustained growth above the noise and the rate threshold.
    Leak,
    /// Enough data, and no leak.
    NoLeak,
    /// Too short a span or too few samples to say.
    InsufficientData,
    /// Memory rose in one or a few level shifts and held: no leak (`steps` lists them).
    Step,
    /// Memory grew, then stopped growing: a cache filled to its cap (`plateau` says where).
    Plateau,
}

impl Verdict {
    /// The snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Leak => "leak",
            Verdict::NoLeak => "no_leak",
            Verdict::InsufficientData => "insufficient_data",
            Verdict::Step => "step",
            Verdict::Plateau => "plateau",
        }
    }
}

/// Growth that stopped.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct Plateau {
    /// From about when memory held, Unix milliseconds.
    pub since_ms: i64,
    /// Median level since then, MB.
    pub level_mb: f64,
    /// That level minus the life's first samples, MB.
    pub grew_mb: f64,
}

/// An abrupt level shift inside a lifetime.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct StepChange {
    /// When the new level starts, Unix milliseconds.
    pub at_ms: i64,
    /// New level minus old level, MB (negative for a flush).
    pub delta_mb: f64,
}

/// A leak verdict with the statistics behind it. Rates are in MB (10⁶ bytes).
#[derive(Serialize, Debug, Clone)]
pub struct LeakReport {
    /// leak, no_leak, insufficient_data, step or plateau.
    pub verdict: Verdict,
    /// Seasonal Sen slope, MB per hour.
    pub mb_per_hour: Option<f64>,
    /// Its 95 % interval (serial correlation allowed for).
    pub mb_per_hour_ci: Option<(f64, f64)>,
    /// Growth per 1000 served requests, MB.
    pub mb_per_1k_requests: Option<f64>,
    /// Growth per 1000 generated (completion) tokens, MB.
    pub mb_per_1k_tokens: Option<f64>,
    /// Seasonal Kendall two-sided p-value (Hamed–Rao variance).
    pub p_value: Option<f64>,
    /// Seasonal Kendall tau.
    pub tau: Option<f64>,
    /// Samples of the lives judged (before thinning).
    pub points: usize,
    /// Summed span of the lives judged, hours.
    pub span_hours: f64,
    /// Lives judged.
    pub lifetimes: usize,
    /// Lives too short to judge (fewer than 8 points, or 6 after their warm-up).
    pub lifetimes_too_short: usize,
    /// Set when growth stopped.
    pub plateau: Option<Plateau>,
    /// Level shifts after the warm-ups, at least 1 MB and 3 short-term sigmas.
    pub steps: Vec<StepChange>,
    /// The slope carried over the longest life judged, MB: what practical significance weighs.
    pub growth_mb: Option<f64>,
    /// Robust spread of the memory about its trend, MB (median over lives).
    pub noise_mb: Option<f64>,
    /// Hamed–Rao variance inflation (1: independent samples).
    pub autocorrelation: Option<f64>,
    /// Lives whose warm-up was set apart, and the latest one's rise, MB.
    pub warmups: usize,
    pub warmup_mb: Option<f64>,
    /// What the rate was read from: `trend` (shifts taken out), `steps` (growth in steps), `troughs`
    /// (a sawtooth without its ramps).
    pub judged_by: &'static str,
    /// `available_bytes` divided by the slope, hours; only for a Leak.
    pub hours_to_exhaustion: Option<f64>,
    /// One sentence for a human.
    pub reason: String,
}

/// Unix ms as `2026-11-25 03:12 UTC`.
fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}

fn fmt_p(p: f64) -> String {
    if p < 0.001 { "p < 0.001".to_string() } else { format!("p = {p:.3}") }
}

/// The one-sentence explanation of a verdict that has enough data.
pub(super) fn reason(r: &LeakReport, p: &LeakParams, significant: bool, practical: bool, stopped: bool) -> String {
    let slope = r.mb_per_hour.unwrap_or(0.0);
    let pv = fmt_p(r.p_value.unwrap_or(1.0));
    let ci = r.mb_per_hour_ci.map(|(lo, hi)| format!(" (95% CI {lo:.1}–{hi:.1})")).unwrap_or_default();
    let warm = if r.warmups > 0 { format!(", warm-ups set apart in {}", r.warmups) } else { String::new() };
    let over = format!("over {:.1} h in {} lifetime(s){warm}", r.span_hours, r.lifetimes);
    let noise = r.noise_mb.unwrap_or(0.0);
    let growth = r.growth_mb.unwrap_or(0.0);
    match r.verdict {
        Verdict::Leak if r.judged_by == "steps" => {
            let rises = r.steps.iter().filter(|s| s.delta_mb > 0.0).count();
            format!("memory keeps stepping up: {rises} rises, {slope:.1} MB/h{ci} {over}")
        }
        Verdict::Leak => {
            let how = if r.judged_by == "troughs" { ", judged by the level after each release" } else { "" };
            format!("memory grew {slope:.1} MB/h{ci} {over}{how}, Mann–Kendall {pv} (serial correlation allowed for)")
        }
        Verdict::Plateau => {
            let pl = r.plateau.expect("a plateau verdict has one");
            format!(
                "memory grew {:.1} MB then levelled off at {:.1} MB (no significant growth since) {over}",
                pl.grew_mb, pl.level_mb
            )
        }
        Verdict::Step => {
            let big = r.steps.iter().max_by(|a, b| a.delta_mb.total_cmp(&b.delta_mb)).copied();
            let when = big.map(|s| utc(s.at_ms)).unwrap_or_default();
            format!(
                "memory rose in a step of {:+.0} MB at {when} and did not keep growing ({slope:.2} MB/h since, {pv}) {over}",
                big.map_or(0.0, |s| s.delta_mb)
            )
        }
        _ if significant && !practical => format!(
            "no leak: memory changed {slope:.2} MB/h{ci} {over}, {pv}, but that adds {growth:.1} MB, within the noise (±{noise:.1} MB){}",
            if slope < p.min_mb_per_hour {
                format!(", and below the {:.1} MB/h threshold", p.min_mb_per_hour)
            } else {
                String::new()
            }
        ),
        _ if significant && stopped => {
            format!("no leak: memory grew, then stopped growing ({slope:.2} MB/h{ci} {over})")
        }
        _ if significant && r.judged_by == "troughs" => {
            format!("no leak: the level after each release does not rise beyond doubt ({slope:.2} MB/h{ci} {over})")
        }
        _ => format!("no significant memory trend: {slope:.2} MB/h{ci} {over}, Mann–Kendall {pv}"),
    }
}
