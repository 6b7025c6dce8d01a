//! Memory-leak verdicts from idle memory samples of a server process (ANCHORS.md §4, patterns 4
//! and 6). Owns the decision Leak / NoLeak / InsufficientData and the numbers behind it.
//!
//! Method. The caller splits the series at restarts into process lifetimes; lifetimes with fewer
//! than 3 finite samples are dropped. Each is reduced to its share of `max_points` by median per
//! equal-time bucket, then measured in MB (1 MB = 10⁶ bytes) against hours since its first sample.
//! - Significance: the seasonal Kendall test over lifetimes (Hirsch, Slack & Smith 1982), a
//!   Mann–Kendall test (Mann 1945; Kendall 1975) per lifetime with tie-corrected variance, summed, so
//!   the drop at a restart is never read as a trend.
//! - Rate: the seasonal Sen slope (Sen 1968; Hirsch et al. 1982) in MB/h; its 95 % interval is the
//!   Theil–Sen interval of the longest lifetime. MB per 1000 requests: the seasonal Sen slope of MB
//!   on the served-request count, within lifetimes whose count varies.
//! - Plateau: in the latest lifetime, growth that was significant in the first two thirds but is
//!   absent from the last third (no significant trend, and the upper end of its slope's 95 % interval
//!   below the rate threshold) — a cache that filled up, not a leak.
//! - Steps: CUSUM (Page 1954) at 5 sigmas per lifetime; a reload shows as a rise, a cache flush as
//!   a drop. A lifetime with at least 3 drops (a cache that fills and is flushed: a sawtooth) is
//!   judged by the level just after each drop instead of by all its samples: the ramps between
//!   flushes are no leak, but a floor that keeps rising is.
//!
//! Verdict: InsufficientData below `min_span_ms` of total span or `min_points` samples; Leak when
//! p < `alpha`, the slope is at least `min_mb_per_hour` and there is no plateau; otherwise NoLeak.

use serde::Serialize;

use super::stats::median;
use super::trend::{Step, bucket_medians, cusum_steps, mann_kendall, seasonal_kendall, seasonal_sen_slope, theil_sen};

const MS_PER_HOUR: f64 = 3_600_000.0;
const BYTES_PER_MB: f64 = 1e6;
/// CUSUM decision interval, in robust sigmas of the first differences.
const STEP_SIGMAS: f64 = 5.0;
/// Level shifts smaller than this (MB) are not reported: page-sized jitter in a tied series.
const MIN_STEP_MB: f64 = 1.0;
/// Drops in one lifetime from which on its trend is measured on the post-release levels.
const MIN_RELEASES: usize = 3;
/// Samples the flat last third of a plateau must hold.
const PLATEAU_MIN_POINTS: usize = 6;

/// One idle memory sample of a server process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemPoint {
    /// When it was taken, Unix milliseconds.
    pub at_ms: i64,
    /// Memory in bytes (footprint or RSS, whichever the caller trusts).
    pub bytes: f64,
    /// Requests the process had served by then, when known.
    pub requests: Option<u64>,
}

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
    /// Least total span of usable lifetimes before any verdict (default 30 min).
    pub min_span_ms: i64,
    /// Least number of samples before any verdict (default 12).
    pub min_points: usize,
    /// Significance level of the trend test (default 0.01).
    pub alpha: f64,
    /// Least growth rate, MB per hour, that counts as a leak (default 1.0).
    pub min_mb_per_hour: f64,
    /// Points kept across all lifetimes before the O(n²) steps (default 1000).
    pub max_points: usize,
}

impl Default for LeakParams {
    fn default() -> Self {
        LeakParams { min_span_ms: 30 * 60 * 1000, min_points: 12, alpha: 0.01, min_mb_per_hour: 1.0, max_points: 1000 }
    }
}

/// The outcome of [`detect_leak`].
#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Significant, sustained growth at or above the rate threshold.
    Leak,
    /// Enough data, and no leak.
    NoLeak,
    /// Too short a span or too few samples to say.
    InsufficientData,
}

impl Verdict {
    /// The snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Leak => "leak",
            Verdict::NoLeak => "no_leak",
            Verdict::InsufficientData => "insufficient_data",
        }
    }
}

/// Growth that stopped: the latest lifetime's last third is flat.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct Plateau {
    /// Start of the flat part, Unix milliseconds.
    pub since_ms: i64,
    /// Median of the flat part, MB.
    pub level_mb: f64,
    /// The flat level minus the median of the lifetime's first third, MB.
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
    /// Leak, NoLeak or InsufficientData.
    pub verdict: Verdict,
    /// Seasonal Sen slope, MB per hour.
    pub mb_per_hour: Option<f64>,
    /// 95 % interval of the slope, from the longest lifetime.
    pub mb_per_hour_ci: Option<(f64, f64)>,
    /// Growth per 1000 served requests, MB.
    pub mb_per_1k_requests: Option<f64>,
    /// Seasonal Kendall two-sided p-value.
    pub p_value: Option<f64>,
    /// Seasonal Kendall tau.
    pub tau: Option<f64>,
    /// Usable samples (before bucketing).
    pub points: usize,
    /// Summed span of the usable lifetimes, hours.
    pub span_hours: f64,
    /// Usable lifetimes.
    pub lifetimes: usize,
    /// Set when growth stopped in the latest lifetime.
    pub plateau: Option<Plateau>,
    /// Level shifts of at least 1 MB.
    pub steps: Vec<StepChange>,
    /// `available_bytes` divided by the slope, hours; only for a Leak.
    pub hours_to_exhaustion: Option<f64>,
    /// One sentence for a human.
    pub reason: String,
}

/// One usable lifetime after bucketing.
struct Series {
    first_ms: i64,
    last_ms: i64,
    /// What the trend is measured on: the bucketed samples, or the level after each release.
    trend_h: Vec<f64>,
    trend_mb: Vec<f64>,
    /// Releases (drops) that replaced the samples by post-release levels; 0 when they did not.
    releases: usize,
    steps: Vec<StepChange>,
    /// (requests, MB) pairs for the per-request slope.
    by_requests: Vec<(f64, f64)>,
}

/// Judges whether memory grows, from idle samples split into process lifetimes (see the module
/// doc for the method). `available_bytes` is the memory still free on the machine; with a Leak it
/// gives the hours until it is used up at the measured slope.
pub fn detect_leak(lifetimes: &[Lifetime], available_bytes: Option<f64>, p: &LeakParams) -> LeakReport {
    let mut usable: Vec<Vec<MemPoint>> = lifetimes
        .iter()
        .map(|l| l.points.iter().filter(|m| m.bytes.is_finite()).copied().collect::<Vec<_>>())
        .filter(|pts| pts.len() >= 3)
        .collect();
    usable.iter_mut().for_each(|pts| pts.sort_by_key(|m| m.at_ms));
    let points: usize = usable.iter().map(Vec::len).sum();
    let span_ms = usable.iter().fold(0i64, |a, l| a.saturating_add(l[l.len() - 1].at_ms.saturating_sub(l[0].at_ms)));
    let mut report = LeakReport {
        verdict: Verdict::InsufficientData,
        mb_per_hour: None,
        mb_per_hour_ci: None,
        mb_per_1k_requests: None,
        p_value: None,
        tau: None,
        points,
        span_hours: span_ms as f64 / MS_PER_HOUR,
        lifetimes: usable.len(),
        plateau: None,
        steps: Vec::new(),
        hours_to_exhaustion: None,
        reason: String::new(),
    };
    if span_ms < p.min_span_ms || points < p.min_points || points == 0 {
        let need = format!("need {} samples and {:.1} h", p.min_points, p.min_span_ms as f64 / MS_PER_HOUR);
        let have = format!("{points} samples over {:.1} h in {} lifetime(s)", report.span_hours, report.lifetimes);
        report.reason = format!("not enough data: {have}; {need}");
        return report;
    }
    let budget = p.max_points.max(3);
    let series: Vec<Series> = usable.iter().map(|pts| reduce(pts, budget, points)).collect();

    let mk = seasonal_kendall(&series.iter().map(|s| s.trend_mb.clone()).collect::<Vec<_>>());
    report.p_value = mk.map(|m| m.p_value);
    report.tau = mk.map(|m| m.tau);
    let groups: Vec<(Vec<f64>, Vec<f64>)> = series.iter().map(|s| (s.trend_h.clone(), s.trend_mb.clone())).collect();
    report.mb_per_hour = seasonal_sen_slope(&groups);
    let longest = series.iter().max_by_key(|s| s.last_ms.saturating_sub(s.first_ms));
    report.mb_per_hour_ci =
        longest.and_then(|s| theil_sen(&s.trend_h, &s.trend_mb)).map(|t| (t.slope_low, t.slope_high));
    let by_requests: Vec<(Vec<f64>, Vec<f64>)> = series.iter().map(|s| s.by_requests.iter().copied().unzip()).collect();
    report.mb_per_1k_requests = seasonal_sen_slope(&by_requests).map(|s| s * 1000.0);
    report.plateau = series.iter().max_by_key(|s| s.last_ms).and_then(|s| plateau(s, p));
    report.steps = series.iter().flat_map(|s| s.steps.iter().copied()).collect();

    let (p_value, slope) = (report.p_value.unwrap_or(1.0), report.mb_per_hour.unwrap_or(0.0));
    let growing = p_value < p.alpha && slope >= p.min_mb_per_hour;
    report.verdict = if growing && report.plateau.is_none() { Verdict::Leak } else { Verdict::NoLeak };
    if report.verdict == Verdict::Leak {
        report.hours_to_exhaustion =
            available_bytes.filter(|a| a.is_finite() && *a >= 0.0 && slope > 0.0).map(|a| a / BYTES_PER_MB / slope);
    }
    report.reason = reason(&report, p, series.iter().map(|s| s.releases).sum());
    report
}

/// Buckets one lifetime to its share of the point budget, converts it to hours and MB, and finds
/// its steps. With at least [`MIN_RELEASES`] drops (a cache that fills and is flushed) the trend is
/// measured on the level just after each drop instead: a leak raises it, a sawtooth does not.
fn reduce(pts: &[MemPoint], budget: usize, total: usize) -> Series {
    let (first_ms, last_ms) = (pts[0].at_ms, pts[pts.len() - 1].at_ms);
    let cap = ((budget as f64 * pts.len() as f64 / total as f64).ceil() as usize).clamp(3, budget);
    let hours: Vec<f64> = pts.iter().map(|m| m.at_ms.saturating_sub(first_ms) as f64 / MS_PER_HOUR).collect();
    let mb: Vec<f64> = pts.iter().map(|m| m.bytes / BYTES_PER_MB).collect();
    let (hours, mb) = bucket_medians(&hours, &mb, cap);
    let found: Vec<Step> =
        cusum_steps(&mb, STEP_SIGMAS).into_iter().filter(|st| (st.after - st.before).abs() >= MIN_STEP_MB).collect();
    let at = |st: &Step| hours.get(st.index).copied().unwrap_or(0.0);
    let steps =
        found.iter().map(|st| StepChange { at_ms: at_ms(first_ms, at(st)), delta_mb: st.after - st.before }).collect();
    let drops: Vec<(f64, f64)> = found.iter().filter(|st| st.after < st.before).map(|st| (at(st), st.after)).collect();
    let requests_at = |h: f64| {
        let i = pts.partition_point(|m| m.at_ms <= at_ms(first_ms, h));
        pts[..i].iter().rev().find_map(|m| m.requests).map(|r| r as f64)
    };
    if drops.len() >= MIN_RELEASES {
        let by_requests = drops.iter().filter_map(|(h, m)| requests_at(*h).map(|r| (r, *m))).collect();
        let releases = drops.len();
        let (trend_h, trend_mb) = drops.into_iter().unzip();
        return Series { first_ms, last_ms, trend_h, trend_mb, releases, steps, by_requests };
    }
    let by_requests = pts.iter().filter_map(|m| m.requests.map(|r| (r as f64, m.bytes / BYTES_PER_MB))).collect();
    Series { first_ms, last_ms, trend_h: hours, trend_mb: mb, releases: 0, steps, by_requests }
}

/// A plateau in one lifetime: significant growth over the first two thirds; in the last third no
/// significant trend and a slope whose whole 95 % interval lies below the leak threshold (so a
/// short, noisy last third does not pass for flat).
fn plateau(s: &Series, p: &LeakParams) -> Option<Plateau> {
    let (hours, mb) = (&s.trend_h, &s.trend_mb);
    let span = hours.last()? - hours.first()?;
    let (third, two_thirds) = (hours[0] + span / 3.0, hours[0] + span * 2.0 / 3.0);
    let cut = hours.iter().position(|h| *h >= two_thirds)?;
    let (early_h, late_h) = hours.split_at(cut);
    let (early_mb, late_mb) = mb.split_at(cut);
    let late_span_ms = (late_h.last()? - late_h.first()?) * MS_PER_HOUR;
    if late_h.len() < PLATEAU_MIN_POINTS || late_span_ms < p.min_span_ms as f64 / 2.0 {
        return None;
    }
    let early_growth =
        mann_kendall(early_mb)?.p_value < p.alpha && theil_sen(early_h, early_mb)?.slope >= p.min_mb_per_hour;
    let late_flat = mann_kendall(late_mb)?.p_value >= p.alpha
        && theil_sen(late_h, late_mb).is_none_or(|t| t.slope_high < p.min_mb_per_hour);
    if !(early_growth && late_flat) {
        return None;
    }
    let first_third: Vec<f64> = hours.iter().zip(mb).filter(|(h, _)| **h < third).map(|(_, m)| *m).collect();
    let level_mb = median(late_mb.iter().copied())?;
    Some(Plateau {
        since_ms: at_ms(s.first_ms, late_h[0]),
        level_mb,
        grew_mb: level_mb - median(first_third.iter().copied())?,
    })
}

fn at_ms(first_ms: i64, hours: f64) -> i64 {
    first_ms.saturating_add((hours * MS_PER_HOUR).round() as i64)
}

fn fmt_p(p: f64) -> String {
    if p < 0.001 { "p < 0.001".to_string() } else { format!("p = {p:.3}") }
}

/// The one-sentence explanation of a verdict that has enough data.
fn reason(r: &LeakReport, p: &LeakParams, releases: usize) -> String {
    let slope = r.mb_per_hour.unwrap_or(0.0);
    let pv = fmt_p(r.p_value.unwrap_or(1.0));
    let ci = r.mb_per_hour_ci.map(|(lo, hi)| format!(" (95% CI {lo:.1}–{hi:.1})")).unwrap_or_default();
    let judged =
        if releases > 0 { format!(", judged by the level after each of {releases} releases") } else { "".into() };
    let over = format!("over {:.1} h in {} lifetime(s){judged}", r.span_hours, r.lifetimes);
    match (r.verdict, r.plateau) {
        (Verdict::Leak, _) => format!("memory grew {slope:.1} MB/h{ci} {over}, Mann–Kendall {pv}"),
        (_, Some(pl)) => format!(
            "memory grew {:.1} MB then levelled off at {:.1} MB (no significant trend since then) {over}",
            pl.grew_mb, pl.level_mb
        ),
        _ if r.p_value.is_some_and(|v| v < p.alpha) => format!(
            "memory changed {slope:.2} MB/h{ci} {over}, Mann–Kendall {pv}, below the {:.1} MB/h leak threshold",
            p.min_mb_per_hour
        ),
        _ => format!("no significant memory trend: {slope:.2} MB/h{ci} {over}, Mann–Kendall {pv}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const T0: i64 = 1_750_000_000_000;

    /// xorshift64*; `normal` is the sum of 12 uniforms − 6 (sd 1, within ±6).
    struct Rng(u64);
    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
        }
    }

    /// One sample a minute for `minutes`, MB from `mb(minute)` plus noise of sd `sd` MB (≈ ±2 MB at sd 1),
    /// 20 requests served per minute.
    fn life(start_ms: i64, minutes: i64, sd: f64, rng: &mut Rng, mb: impl Fn(f64) -> f64) -> Lifetime {
        let pt = |m: i64, bytes| MemPoint { at_ms: start_ms + m * MIN, bytes, requests: Some(m as u64 * 20) };
        Lifetime { pid: 1, points: (0..=minutes).map(|m| pt(m, (mb(m as f64) + sd * rng.normal()) * 1e6)).collect() }
    }

    fn verdict_rate(mb_per_hour: f64, hours: i64, seeds: u64) -> f64 {
        let leaks = (1..=seeds)
            .filter(|seed| {
                let l = life(T0, hours * 60, 1.0, &mut Rng(*seed), |m| 1000.0 + mb_per_hour * m / 60.0);
                detect_leak(&[l], None, &LeakParams::default()).verdict == Verdict::Leak
            })
            .count();
        leaks as f64 / seeds as f64
    }

    #[test]
    fn detection_rates_on_noisy_series() {
        // 200 seeds each; noise sd 1 MB. Run with --nocapture to see the table.
        let rates = |h: i64| [0.0, 0.5, 2.0, 10.0].map(|r| (h, r, verdict_rate(r, h, 200)));
        let table: Vec<(i64, f64, f64)> = [6, 2].into_iter().flat_map(rates).collect();
        println!("hours, MB/h, share judged Leak: {table:?}");
        assert!(table.iter().all(|&(_, rate, share)| rate > 0.0 || share == 0.0), "false leaks: {table:?}");
        assert!(table.iter().all(|&(h, rate, share)| h < 6 || rate < 2.0 || share == 1.0), "misses: {table:?}");
    }

    #[test]
    fn steady_growth_is_a_leak_with_rate_and_time_to_exhaustion() {
        let l = life(T0, 360, 1.0, &mut Rng(5), |m| 1000.0 + 10.0 * m / 60.0);
        let r = detect_leak(&[l], Some(8e9), &LeakParams::default());
        let slope = r.mb_per_hour.unwrap();
        assert!((slope - 10.0).abs() < 0.3, "{r:?}");
        let (lo, hi) = r.mb_per_hour_ci.unwrap();
        assert!(lo < slope && slope < hi && lo > 9.0 && hi < 11.0, "{r:?}");
        assert_eq!(r.hours_to_exhaustion, Some(8000.0 / slope));
        assert!(r.verdict == Verdict::Leak && r.p_value.unwrap() < 1e-6 && r.tau.unwrap() > 0.5, "{r:?}");
        assert!(r.steps.is_empty() && r.plateau.is_none());
        assert!(r.reason.starts_with("memory grew 10.") && r.reason.contains("p < 0.001"), "{}", r.reason);
        assert_eq!((r.points, r.lifetimes, r.span_hours), (361, 1, 6.0));
        assert_eq!(
            (serde_json::to_value(&r).unwrap()["verdict"].as_str(), Verdict::Leak.as_str()),
            (Some("leak"), "leak")
        );
    }

    #[test]
    fn growth_per_request_is_measured() {
        // 20 requests a minute, 3 MB per 1000 requests: 3.6 MB/h.
        let l = life(T0, 360, 1.0, &mut Rng(9), |m| 1000.0 + 3.0 * m * 20.0 / 1000.0);
        let r = detect_leak(&[l], None, &LeakParams::default());
        assert!((r.mb_per_1k_requests.unwrap() - 3.0).abs() < 0.2, "{r:?}");
        assert!((r.mb_per_hour.unwrap() - 3.6).abs() < 0.3, "{r:?}");
        assert_eq!(r.verdict, Verdict::Leak);
    }

    #[test]
    fn a_restart_does_not_hide_or_fake_a_leak() {
        let mut rng = Rng(17);
        let a = life(T0, 180, 1.0, &mut rng, |m| 1000.0 + 10.0 * m / 60.0);
        let b = life(T0 + 181 * MIN, 180, 1.0, &mut rng, |m| 1000.0 + 10.0 * m / 60.0);
        let r = detect_leak(&[a, b], None, &LeakParams::default());
        assert_eq!((r.verdict, r.lifetimes, r.points), (Verdict::Leak, 2, 362), "{r:?}");
        assert!((r.mb_per_hour.unwrap() - 10.0).abs() < 0.5 && r.steps.is_empty(), "{r:?}");
        // Flat lifetimes at different levels (a restart that freed memory) are not a trend.
        let c = life(T0, 180, 1.0, &mut rng, |_| 1200.0);
        let d = life(T0 + 181 * MIN, 180, 1.0, &mut rng, |_| 1000.0);
        assert_eq!(detect_leak(&[c, d], None, &LeakParams::default()).verdict, Verdict::NoLeak);
    }

    #[test]
    fn growth_that_levels_off_is_a_plateau() {
        for seed in 1..=20 {
            let l = life(T0, 360, 1.0, &mut Rng(seed), |m| 1000.0 + 10.0 * m.min(240.0) / 60.0);
            let r = detect_leak(&[l], Some(1e9), &LeakParams::default());
            assert_eq!(r.verdict, Verdict::NoLeak, "seed {seed}: {r:?}");
            let pl = r.plateau.unwrap();
            assert_eq!(pl.since_ms, T0 + 240 * MIN);
            assert!((pl.level_mb - 1040.0).abs() < 0.5 && (pl.grew_mb - 30.0).abs() < 1.5, "{pl:?}");
            assert!(r.hours_to_exhaustion.is_none() && r.reason.contains("levelled off"), "{}", r.reason);
        }
    }

    #[test]
    fn a_filling_and_flushing_cache_is_no_leak() {
        // Grows 50 MB over 30 min, flushed, 12 times.
        let l = life(T0, 359, 1.0, &mut Rng(23), |m| 1000.0 + (m % 30.0) * 50.0 / 30.0);
        let r = detect_leak(&[l], None, &LeakParams::default());
        assert_eq!((r.verdict, r.steps.len(), r.steps[0].at_ms), (Verdict::NoLeak, 11, T0 + 30 * MIN), "{r:?}");
        assert!(r.steps.iter().all(|s| s.delta_mb < -30.0), "{r:?}");
    }

    #[test]
    fn a_sawtooth_over_a_rising_floor_is_a_leak() {
        for period in [20.0, 45.0] {
            let flat = life(T0, 359, 1.0, &mut Rng(29), |m| 1000.0 + (m % period) * 50.0 / period);
            assert_eq!(detect_leak(&[flat], None, &LeakParams::default()).verdict, Verdict::NoLeak, "{period}");
        }
        let l = life(T0, 359, 1.0, &mut Rng(29), |m| 1000.0 + 5.0 * m / 60.0 + (m % 30.0) * 50.0 / 30.0);
        let r = detect_leak(&[l], None, &LeakParams::default());
        assert_eq!(r.verdict, Verdict::Leak, "{r:?}");
        assert!((r.mb_per_hour.unwrap() - 5.0).abs() < 1.0 && r.reason.contains("11 releases"), "{r:?}");
    }

    #[test]
    fn too_little_data_is_insufficient() {
        let short = life(T0, 9, 1.0, &mut Rng(1), |m| 1000.0 + m);
        let r = detect_leak(&[short], Some(1e9), &LeakParams::default());
        assert_eq!((r.verdict, r.points, r.p_value), (Verdict::InsufficientData, 10, None), "{r:?}");
        assert!(r.reason.starts_with("not enough data") && Verdict::InsufficientData.as_str() == "insufficient_data");
        assert_eq!(detect_leak(&[], None, &LeakParams::default()).verdict, Verdict::InsufficientData);
        let brief = life(T0, 20, 1.0, &mut Rng(1), |_| 1000.0); // 21 points over 20 min
        assert_eq!(detect_leak(&[brief], None, &LeakParams::default()).verdict, Verdict::InsufficientData);
        let nan = Lifetime { pid: 2, points: vec![MemPoint { at_ms: T0, bytes: f64::NAN, requests: None }; 100] };
        assert_eq!(detect_leak(&[nan], None, &LeakParams::default()).verdict, Verdict::InsufficientData);
    }

    #[test]
    fn flat_memory_with_exact_ties_is_no_leak_without_nan() {
        let mut l = life(T0, 360, 0.0, &mut Rng(1), |_| 1000.0);
        l.points.iter_mut().enumerate().filter(|(i, _)| i % 50 == 7).for_each(|(_, m)| m.bytes += 4096.0);
        let r = detect_leak(&[l], Some(1e9), &LeakParams::default());
        assert!(r.verdict == Verdict::NoLeak && r.p_value.unwrap() > 0.5 && r.steps.is_empty(), "{r:?}");
        let numbers = [r.p_value.unwrap(), r.tau.unwrap(), r.mb_per_hour.unwrap(), r.span_hours];
        assert!(numbers.iter().all(|v| v.is_finite()) && r.mb_per_1k_requests.unwrap().is_finite(), "{r:?}");
        let all_equal = life(T0, 360, 0.0, &mut Rng(1), |_| 1000.0);
        let r = detect_leak(&[all_equal], None, &LeakParams::default());
        assert_eq!((r.verdict, r.p_value, r.mb_per_hour, r.tau), (Verdict::NoLeak, Some(1.0), Some(0.0), Some(0.0)));
        assert_eq!(r.mb_per_hour_ci, Some((0.0, 0.0)));
    }

    #[test]
    fn odd_input_never_panics() {
        let pt = |at_ms, bytes| MemPoint { at_ms, bytes, requests: Some(7) };
        let extremes = vec![pt(i64::MIN, 1e300), pt(0, -1e300), pt(i64::MAX, f64::MAX)];
        let p = LeakParams { max_points: 0, min_points: 0, min_span_ms: 0, ..LeakParams::default() };
        for points in [extremes, vec![pt(T0, 1.0); 40]] {
            assert!(!detect_leak(&[Lifetime { pid: 1, points }], Some(f64::NAN), &p).reason.is_empty());
        }
    }

    #[test]
    fn a_million_samples_are_judged_quickly() {
        // A month at one sample every 2.6 s, leaking 2 MB/h, in one lifetime.
        let mut rng = Rng(31);
        let mut pt = |i: i64| (1000.0 + 2.0 * i as f64 * 2600.0 / 3.6e6 + rng.normal()) * 1e6;
        let points = (0..1_000_000).map(|i| MemPoint { at_ms: T0 + i * 2600, bytes: pt(i), requests: None }).collect();
        let started = std::time::Instant::now();
        let r = detect_leak(&[Lifetime { pid: 1, points }], None, &LeakParams::default());
        let elapsed = started.elapsed();
        println!("1,000,000 samples judged in {elapsed:?}");
        assert_eq!(r.verdict, Verdict::Leak);
        assert!((r.mb_per_hour.unwrap() - 2.0).abs() < 0.01, "{r:?}");
        assert!(elapsed.as_secs_f64() < 5.0, "{elapsed:?}");
    }
}
