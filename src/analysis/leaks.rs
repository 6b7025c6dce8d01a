//! Memory-leak verdicts from idle memory samples of a server process (per-request growth, growth
//! across restarts, caches filling to a cap, steps, warm-ups — the shapes real servers show).
//! Owns the decision — leak, no leak, a step, a plateau, not enough
//! data — and the numbers behind it.
//!
//! Method. The caller splits the series at restarts into process lives. Each life is shaped on its
//! own (`memory_life`: thinned by its own cadence, isolated spikes dropped, its warm-up set apart,
//! level shifts found; a sawtooth judged without its ramps), so a verdict depends on the samples,
//! never on the report's window. Lives with fewer than 8 points, or 6 after their warm-up, are not judged.
//! Once 3 lives show a warm-up, every life is given at least the longest one (`shared_warmup_h`):
//! a crash loop's life cut short while loading is all warm-up.
//! Then, over the lives judged:
//! - Trend: the seasonal Kendall test over lives (Hirsch, Slack & Smith 1982) — a Mann–Kendall test
//!   per life (Mann 1945; Kendall 1975), tie-corrected, its variance inflated for serial correlation
//!   by Hamed & Rao (1998) — so neither the drop at a restart nor memory's autocorrelation is read as
//!   a trend. Rate: the seasonal Sen slope (Sen 1968) in MB/h, with its 95 % interval from the same
//!   inflated variance; per 1000 requests and per 1000 generated tokens likewise against the counts.
//! - Practical significance: the slope, carried over the longest life judged, must add at least
//!   5 times the residual noise (the spread about the fitted line) — a slope of 1–2 MB/h in ±50 MB
//!   of lumpy noise is no leak however small its p — and at least `min_mb_per_hour`. Growth under
//!   10 times the noise must also trend on the medians of blocks as long as the noise stays
//!   correlated ((1 + ρ₁)/(1 − ρ₁) points): slow wander of autocorrelated memory is not a leak.
//! - Many lives (8 or more) must mostly rise on their own: a one-sided sign test over the lives'
//!   Theil–Sen slopes at 5 % (memory wandering within lives shorter than its correlation time tilts
//!   each life's line at random, and the pooled test can add those tilts up).
//! - Persistence: growth that stops is no leak. When the last thirds of the lives grow
//!   significantly slower than the whole (the upper end of their interval under half the slope), in
//!   time, per request served and per token generated, memory grew and then held, or is levelling off: a plateau (a cache
//!   filling to its cap: Ollama's MLX runner, llama-server's prompt cache). A leak grows as fast at the end as over the whole.
//! - Steps: level shifts are taken out of the trend, so one step is a `step`, not a leak (a larger
//!   context allocated once, a second model copy loaded). Growth that comes only in steps is a
//!   leak when the steps keep coming (`staircase`) in lives holding half the samples, and the
//!   series as it is trends significantly with its slope's 95 % interval above zero (leaks only
//!   under load, per-request leaks in bursts; lumps of held memory that come and go rise and fall
//!   alike).
//!
//! Verdict: InsufficientData below `min_span_ms` of judged time or `min_points` samples; Leak when
//! the trend is significant (p < `alpha`), practical and persistent, or the steps keep coming;
//! Plateau when it grew significantly and then stopped (or a long warm-up filled and held); Step
//! when a level shift is all the growth there is; otherwise NoLeak.

use super::memory_life::{Life, Pt};
use super::staircase;
use super::trend::{seasonal_kendall_modified, seasonal_sen_interval, seasonal_sen_slope, theil_sen};
use crate::measure::stats::median;
use statrs::distribution::{Binomial, DiscreteCDF};

use super::leak_report::reason;
pub use super::leak_report::{LeakParams, LeakReport, Lifetime, Plateau, StepChange, Verdict};
pub use super::memory_life::MAX_LIFE_POINTS as POINTS_PER_LIFE;
pub use super::memory_life::MemPoint;

const MS_PER_HOUR: f64 = 3_600_000.0;
const BYTES_PER_MB: f64 = 1e6;
/// Growth of at least this many noise sigmas needs no check on block medians.
const CLEAR_SIGMAS: f64 = 10.0;
/// A warm-up that lasts at least this share of its life and rose above the practical bar, then
/// held, is reported as a plateau.
const LONG_WARMUP_SHARE: f64 = 0.2;
/// Lives judged on a trend from which on most of them must rise on their own.
const MANY_LIVES: usize = 8;
/// Lives with a warm-up of their own before every life of the log is given the longest one.
const SHARED_WARMUPS: usize = 3;

/// Judges whether memory grows, from idle samples split into process lifetimes (see the module
/// doc for the method). `available_bytes` is the memory still free on the machine; with a Leak it
/// gives the hours until it is used up at the measured slope.
pub fn detect_leak(lifetimes: &[Lifetime], available_bytes: Option<f64>, p: &LeakParams) -> LeakReport {
    let (mut lives, mut points, mut too_short) = (Vec::new(), 0, 0);
    let own: Vec<Option<Life>> = lifetimes.iter().map(|l| Life::shape(&l.points, 0.0)).collect();
    let shared = shared_warmup_h(&own);
    for (l, life) in lifetimes.iter().zip(own) {
        let finite = l.points.iter().filter(|m| m.bytes.is_finite()).count();
        let life = match life {
            Some(life) if life.pts[life.start].h < shared => Life::shape(&l.points, shared),
            life => life,
        };
        match life {
            Some(life) => {
                lives.push(life);
                points += finite;
            }
            None if finite > 0 => too_short += 1,
            None => {}
        }
    }
    let judged_ms: f64 = lives.iter().map(|l| l.judged_hours() * MS_PER_HOUR).sum();
    let judged_points: usize = lives.iter().map(|l| l.trend.len()).sum();
    let mut report = LeakReport {
        verdict: Verdict::InsufficientData,
        mb_per_hour: None,
        mb_per_hour_ci: None,
        mb_per_1k_requests: None,
        mb_per_1k_tokens: None,
        p_value: None,
        tau: None,
        points,
        span_hours: lives.iter().map(|l| (l.last_ms - l.first_ms) as f64 / MS_PER_HOUR).sum(),
        lifetimes: lives.len(),
        lifetimes_too_short: too_short,
        plateau: None,
        steps: lives
            .iter()
            .flat_map(|l| l.shifts.iter().map(|s| StepChange { at_ms: s.at_ms, delta_mb: s.delta_mb }))
            .collect(),
        growth_mb: None,
        noise_mb: None,
        autocorrelation: None,
        warmups: lives.iter().filter(|l| l.warmup_mb.is_some()).count(),
        warmup_mb: lives.iter().max_by_key(|l| l.last_ms).and_then(|l| l.warmup_mb),
        judged_by: "trend",
        hours_to_exhaustion: None,
        reason: String::new(),
    };
    if judged_ms < p.min_span_ms as f64 || judged_points < p.min_points.max(1) {
        let need = format!("need {} samples and {:.1} h", p.min_points, p.min_span_ms as f64 / MS_PER_HOUR);
        let have = format!(
            "{judged_points} samples over {:.1} h judged in {} lifetime(s){}",
            judged_ms / MS_PER_HOUR,
            lives.len(),
            if report.lifetimes_too_short > 0 {
                format!(", {} more too short", report.lifetimes_too_short)
            } else {
                String::new()
            }
        );
        report.reason = format!("not enough data: {have}; {need}");
        return report;
    }

    let trend: Vec<(Vec<f64>, Vec<f64>)> = lives.iter().map(|l| l.trend.iter().copied().unzip()).collect();
    let factors: Vec<f64> = lives.iter().map(|l| l.autocorrelation).collect();
    let mk = seasonal_kendall_modified(&trend.iter().map(|g| g.1.clone()).collect::<Vec<_>>());
    report.p_value = mk.map(|m| m.p_value);
    report.tau = mk.map(|m| m.tau);
    let line = seasonal_sen_interval(&trend, &factors);
    let slope = line.map_or(0.0, |l| l.slope);
    let noise = weighted_median(lives.iter().map(|l| (l.noise_mb, l.trend.len() as f64))).unwrap_or(0.0);
    let longest = lives.iter().map(Life::judged_hours).fold(0.0, f64::max);
    report.noise_mb = Some(noise);
    report.autocorrelation = {
        let n: f64 = lives.iter().map(|l| l.trend.len() as f64).sum();
        Some(lives.iter().map(|l| l.autocorrelation * l.trend.len() as f64).sum::<f64>() / n.max(1.0))
    };

    let significant = report.p_value.is_some_and(|v| v < p.alpha);
    let practical = slope >= p.min_mb_per_hour && slope * longest >= p.practical_sigmas * noise;
    // Sawtooth lives keep releasing: their levelled series is a staircase whose last third holds
    // too few cycles to judge persistence by.
    let late: Vec<(Vec<f64>, Vec<f64>)> =
        lives.iter().map(|l| if l.sawtooth { (Vec::new(), Vec::new()) } else { last_third(l) }).collect();
    let late_factors: Vec<f64> = late.iter().map(|g| super::trend::hamed_rao_factor(&g.1)).collect();
    let late_line = seasonal_sen_interval(&late, &late_factors);
    // Against the requests served and the tokens generated too, when they are known: a workload
    // that slows down at the end (fewer requests, shorter replies) is not growth that stopped.
    let stopped_against = |count: fn(&Pt) -> Option<f64>| {
        let judged = || lives.iter().filter(|l| !l.sawtooth);
        let all: Vec<(Vec<f64>, Vec<f64>)> = judged().map(|l| l.by(false, count).into_iter().unzip()).collect();
        // The same pairs, with the memory before the last third of the life's time left blank.
        let late: Vec<(Vec<f64>, Vec<f64>)> = judged()
            .map(|l| {
                let from = l.late_h();
                let pairs: Vec<(f64, f64)> = (l.pts[l.start..].iter().zip(&l.trend))
                    .filter_map(|(pt, &(h, mb))| Some((count(pt)?, if h >= from { mb } else { f64::NAN })))
                    .collect();
                pairs.into_iter().unzip()
            })
            .collect();
        match (seasonal_sen_slope(&all), seasonal_sen_interval(&late, &[])) {
            (Some(all), Some(late)) if all > 0.0 => late.slope_high < p.persist_share * all,
            _ => true,
        }
    };
    let stopped = late_line.is_some_and(|l| l.slope_high < p.persist_share * slope)
        && stopped_against(|pt| pt.requests)
        && stopped_against(|pt| pt.tokens);
    // Strongly autocorrelated memory wanders: when the growth is only a few times the noise, it
    // must also show on medians of blocks as long as the noise stays correlated — and in a
    // sawtooth, on its cycles' levels, one value per cycle (lumps that come and go can pass for
    // releases, and each cycle's own line then follows the wander).
    let blocks_agree = slope * longest >= CLEAR_SIGMAS * noise || {
        let blocks: Vec<Vec<f64>> = lives
            .iter()
            .map(|l| if l.sawtooth { l.cycles.iter().map(|c| c.1).collect() } else { block_medians(&l.trend) })
            .collect();
        super::trend::seasonal_kendall(&blocks).is_some_and(|m| m.p_value < p.alpha && m.z > 0.0)
    };
    // Many lives: most must grow on their own. Memory that wanders within lives shorter than its
    // correlation time (a crash loop) tilts each life's line one way or the other at random, and
    // their sum can pass for a trend that no life shows beyond its noise.
    let lives_agree = lives_agree(&lives);
    // Growth in steps that keep coming, in lives holding at least half the judged points, and
    // significant in the series as it is (shifts left in).
    let stepping_lives: Vec<&Life> =
        lives.iter().filter(|l| staircase::keeps_stepping(l, p.practical_sigmas, p.min_mb_per_hour)).collect();
    let stepping: usize = stepping_lives.iter().map(|l| l.trend.len()).sum();
    let raw: Vec<(Vec<f64>, Vec<f64>)> = lives.iter().map(|l| l.raw.iter().copied().unzip()).collect();
    let raw_line = seasonal_sen_interval(&raw, &factors);
    let raw_mk = seasonal_kendall_modified(&raw.iter().map(|g| g.1.clone()).collect::<Vec<_>>());
    let staircase = stepping * 2 >= judged_points
        && raw_mk.is_some_and(|m| m.p_value < p.alpha && m.z > 0.0)
        && raw_line.is_some_and(|l| l.slope >= p.min_mb_per_hour && l.slope_low > 0.0);

    // A sawtooth's rate is its cycles' levels' slope, one point per cycle: a leak only where that
    // rises beyond doubt too (a levelled series can trend on the ramps' ends alone).
    let cycles: Vec<(Vec<f64>, Vec<f64>)> =
        lives.iter().filter(|l| l.cycles.len() >= 3).map(|l| l.cycles.iter().copied().unzip()).collect();
    let all_sawtooth = lives.iter().all(|l| l.sawtooth);
    let cycle_line = if all_sawtooth { seasonal_sen_interval(&cycles, &[]) } else { None };
    let troughs_rise = !all_sawtooth || cycle_line.is_some_and(|c| c.slope_low > 0.0);
    let from_steps = staircase;
    let leak = (significant && practical && !stopped && blocks_agree && troughs_rise && lives_agree) || staircase;
    if leak {
        report.verdict = Verdict::Leak;
        if from_steps {
            report.judged_by = "steps";
            report.mb_per_hour = staircase::rate(&stepping_lives).or(raw_line.map(|l| l.slope));
            report.mb_per_hour_ci = raw_line.map(|l| (l.slope_low, l.slope_high));
        } else {
            report.judged_by = if lives.iter().any(|l| l.sawtooth) { "troughs" } else { "trend" };
            report.mb_per_hour = Some(slope);
            report.mb_per_hour_ci = line.map(|l| (l.slope_low, l.slope_high));
            // A sawtooth's rate from its cycles' levels (its levelled series is a staircase,
            // whose Sen slope runs low).
            if let Some(c) = cycle_line {
                report.mb_per_hour = Some(c.slope);
                report.mb_per_hour_ci = Some((c.slope_low, c.slope_high));
            }
        }
    } else {
        let judged = cycle_line.or(line);
        report.mb_per_hour = Some(judged.map_or(slope, |l| l.slope));
        report.mb_per_hour_ci = judged.map(|l| (l.slope_low, l.slope_high));
        report.judged_by = if lives.iter().any(|l| l.sawtooth) { "troughs" } else { "trend" };
    }
    let raw_series = report.judged_by == "steps";
    let per = |of: fn(&Pt) -> Option<f64>| {
        let groups: Vec<(Vec<f64>, Vec<f64>)> =
            lives.iter().map(|l| l.by(raw_series, of).into_iter().unzip()).collect();
        seasonal_sen_slope(&groups).map(|s| s * 1000.0)
    };
    report.mb_per_1k_requests = per(|pt| pt.requests);
    report.mb_per_1k_tokens = per(|pt| pt.tokens);
    let rate = report.mb_per_hour.unwrap_or(0.0);
    report.growth_mb = Some(rate * longest);

    if !leak {
        let latest = lives.iter().max_by_key(|l| l.last_ms);
        let rise_bar = (p.practical_sigmas * noise).max(p.min_mb_per_hour);
        report.plateau = if significant && practical && stopped && blocks_agree {
            latest.and_then(|l| plateau_after(l, l.pts[l.start].mb, late_start(l)))
        } else {
            latest.filter(|l| long_warmup(l, rise_bar)).and_then(|l| plateau_after(l, l.pts[0].mb, l.start))
        };
        let risen: f64 = report.steps.iter().map(|s| s.delta_mb).filter(|d| *d > 0.0).sum();
        // A step holds: the judged series ends higher than it began by the practical bar too.
        let held = lives.iter().any(|l| l.risen(5).is_some_and(|r| r >= rise_bar));
        report.verdict = if report.plateau.is_some() {
            Verdict::Plateau
        } else if held && risen >= rise_bar && report.steps.iter().any(|s| s.delta_mb >= rise_bar) {
            Verdict::Step
        } else {
            Verdict::NoLeak
        };
    } else {
        report.hours_to_exhaustion =
            available_bytes.filter(|a| a.is_finite() && *a >= 0.0 && rate > 0.0).map(|a| a / BYTES_PER_MB / rate);
    }
    report.reason = reason(&report, p, significant, practical, stopped);
    report
}

/// The warm-up every life of this log is given at least, hours from its first sample: the longest
/// of the warm-ups found, once at least [`SHARED_WARMUPS`] lives showed one (else 0). A server that
/// restarts often warms up the same way each time, and a life too short, or sampled too sparsely,
/// to show its own warm-up is all warm-up: were it judged, many such lives would add up to a slope.
fn shared_warmup_h(lives: &[Option<Life>]) -> f64 {
    let found: Vec<f64> = lives.iter().flatten().filter(|l| l.start > 0).map(|l| l.pts[l.start].h).collect();
    if found.len() < SHARED_WARMUPS { 0.0 } else { found.iter().copied().fold(0.0, f64::max) }
}

/// With at least [`MANY_LIVES`] lives judged on a trend, whether more of them rise than chance
/// allows (a one-sided sign test over the lives' own Theil–Sen slopes, at 5 %); true with fewer.
fn lives_agree(lives: &[Life]) -> bool {
    let slopes: Vec<f64> = lives
        .iter()
        .filter(|l| !l.sawtooth)
        .filter_map(|l| {
            let (h, mb): (Vec<f64>, Vec<f64>) = l.trend.iter().copied().unzip();
            theil_sen(&h, &mb).map(|t| t.slope).filter(|s| *s != 0.0)
        })
        .collect();
    if slopes.len() < MANY_LIVES {
        return true;
    }
    let rising = slopes.iter().filter(|s| **s > 0.0).count() as u64;
    // P(at least `rising` of n rise) for lives that rise or fall at even odds.
    let even = Binomial::new(0.5, slopes.len() as u64).expect("0.5 is a probability");
    let tail = if rising == 0 { 1.0 } else { even.sf(rising - 1) };
    tail < 0.05
}

/// Medians of consecutive blocks of a series (values only), each block as long as its noise stays
/// correlated: (1 + ρ₁)/(1 − ρ₁) points, ρ₁ the lag-1 autocorrelation of its detrended values.
fn block_medians(series: &[(f64, f64)]) -> Vec<f64> {
    let (h, mb): (Vec<f64>, Vec<f64>) = series.iter().copied().unzip();
    let Some(line) = super::trend::theil_sen(&h, &mb) else { return mb };
    let r: Vec<f64> = h.iter().zip(&mb).map(|(h, m)| m - line.intercept - line.slope * h).collect();
    let mean = r.iter().sum::<f64>() / r.len() as f64;
    let c0: f64 = r.iter().map(|x| (x - mean).powi(2)).sum();
    let c1: f64 = r.windows(2).map(|w| (w[0] - mean) * (w[1] - mean)).sum();
    let rho = if c0 > 0.0 { (c1 / c0).clamp(0.0, 0.99) } else { 0.0 };
    let len = (((1.0 + rho) / (1.0 - rho)).ceil() as usize).clamp(1, (mb.len() / 3).max(1));
    mb.chunks(len).filter_map(|c| median(c.iter().copied())).collect()
}

/// The last third (by time) of a life's judged trend.
fn last_third(l: &Life) -> (Vec<f64>, Vec<f64>) {
    let from = l.late_h();
    l.trend.iter().filter(|(h, _)| *h >= from).copied().unzip()
}

/// Index in `pts` where the last third of the judged part begins.
fn late_start(l: &Life) -> usize {
    let from = l.late_h();
    l.start + l.pts[l.start..].partition_point(|p| p.h < from)
}

/// A warm-up that filled for a good part of the life and rose above `bar`.
fn long_warmup(l: &Life, bar: f64) -> bool {
    let span = l.pts[l.pts.len() - 1].h - l.pts[0].h;
    l.warmup_mb.is_some_and(|w| w >= bar) && l.pts[l.start].h - l.pts[0].h >= LONG_WARMUP_SHARE * span
}

/// The plateau of a life from point `from` on: its median level against `base`.
fn plateau_after(l: &Life, base: f64, from: usize) -> Option<Plateau> {
    let level_mb = median(l.pts[from..].iter().map(|p| p.mb))?;
    let first = median(l.pts[..l.start.clamp(1, 3)].iter().map(|p| p.mb)).unwrap_or(base);
    Some(Plateau { since_ms: l.pts.get(from)?.at_ms, level_mb, grew_mb: level_mb - first.min(base) })
}

fn weighted_median(values: impl Iterator<Item = (f64, f64)>) -> Option<f64> {
    let mut v: Vec<(f64, f64)> = values.filter(|(x, w)| x.is_finite() && *w > 0.0).collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = v.iter().map(|x| x.1).sum();
    let mut acc = 0.0;
    v.iter()
        .find(|(_, w)| {
            acc += w;
            acc >= total / 2.0
        })
        .map(|x| x.0)
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
        let pt =
            |m: i64, bytes| MemPoint { at_ms: start_ms + m * MIN, bytes, requests: Some(m as u64 * 20), tokens: None };
        Lifetime { pid: 1, points: (0..=minutes).map(|m| pt(m, (mb(m as f64) + sd * rng.normal()) * 1e6)).collect() }
    }

    /// A life of `minutes` that loads for its first `load_s` seconds (sampled every 2 s, 300 → 1000
    /// MB), then holds 1000 MB (sampled every 30 s).
    fn loading_life(start_ms: i64, minutes: f64, load_s: f64) -> Lifetime {
        let at = |s: f64, mb: f64| MemPoint {
            at_ms: start_ms + (s * 1000.0) as i64,
            bytes: mb * 1e6,
            requests: None,
            tokens: None,
        };
        let mut points: Vec<MemPoint> = Vec::new();
        let mut s = 0.0;
        while s < minutes * 60.0 {
            let mb = 300.0 + 700.0 * (s / load_s).min(1.0) + (s as i64 % 7) as f64 * 0.01;
            points.push(at(s, mb));
            s += if s < load_s { 2.0 } else { 30.0 };
        }
        Lifetime { pid: 1, points }
    }

    #[test]
    fn lives_cut_short_while_loading_are_all_warm_up() {
        // A crash loop: 12 lives of 10 minutes whose warm-ups show, and 4 that died while loading
        // (90 s, every point on the ramp): given the others' warm-up, those are not judged.
        let mut lives: Vec<Lifetime> = (0..12).map(|i| loading_life(T0 + i * 20 * MIN, 10.0, 100.0)).collect();
        lives.extend((0..4).map(|i| loading_life(T0 + (300 + i * 20) * MIN, 1.5, 100.0)));
        let own: Vec<Option<Life>> = lives.iter().map(|l| Life::shape(&l.points, 0.0)).collect();
        assert!(own[12..].iter().all(|l| l.as_ref().is_some_and(|l| l.start == 0)), "alone, each looks like growth");
        let shared = shared_warmup_h(&own);
        assert!(shared * 3600.0 >= 90.0 && shared * 3600.0 <= 150.0, "{shared}");
        let r = detect_leak(&lives, None, &LeakParams { min_span_ms: 0, ..LeakParams::default() });
        assert_eq!((r.lifetimes, r.lifetimes_too_short), (12, 4), "{}", r.reason);
        assert_ne!(r.verdict, Verdict::Leak, "{}", r.reason);
        // Fewer than three warm-ups seen: no life is given another's.
        assert_eq!(shared_warmup_h(&own[10..]), 0.0);
    }

    #[test]
    fn many_lives_must_mostly_rise_on_their_own() {
        // Lives of 3 hours that each rise or fall by 0.5 MB/h.
        let lives = |signs: &[f64]| -> Vec<Life> {
            let mut rng = Rng(11);
            (signs.iter().enumerate())
                .map(|(i, sign)| life(T0 + i as i64 * 200 * MIN, 180, 0.05, &mut rng, |m| 500.0 + sign * m / 120.0))
                .map(|l| Life::shape(&l.points, 0.0).unwrap())
                .collect()
        };
        assert!(lives_agree(&lives(&[1.0; 12])));
        assert!(!lives_agree(&lives(&[1.0, -1.0].repeat(6))), "half rise, half fall");
        assert!(!lives_agree(&lives(&[1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0])), "5 of 8");
        assert!(lives_agree(&lives(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0])), "7 of 8");
        assert!(lives_agree(&lives(&[1.0, -1.0, -1.0])), "too few lives to ask");
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
            assert_eq!(r.verdict, Verdict::Plateau, "seed {seed}: {r:?}");
            let pl = r.plateau.unwrap();
            assert!((T0 + 180 * MIN..=T0 + 300 * MIN).contains(&pl.since_ms), "{pl:?}");
            assert!((pl.level_mb - 1040.0).abs() < 1.0 && (pl.grew_mb - 40.0).abs() < 3.0, "{pl:?}");
            assert!(r.hours_to_exhaustion.is_none() && r.reason.contains("levelled off"), "{}", r.reason);
        }
    }

    #[test]
    fn growth_per_token_that_slows_with_shorter_replies_is_still_a_leak() {
        // Two jobs taking turns hourly, replies of 64 and 512 tokens, 10 requests a minute; memory
        // grows 1 MB per 1000 tokens. The last hour grows 8 times slower in time and per request
        // than the middle one, as fast per token.
        let mut rng = Rng(5);
        let mut tokens = 0u64;
        let points = (0..=180)
            .map(|m: i64| {
                tokens += 10 * if (m / 60) % 2 == 0 { 64 } else { 512 };
                let mb = 800.0 + tokens as f64 / 1000.0 + 0.2 * rng.normal();
                MemPoint { at_ms: T0 + m * MIN, bytes: mb * 1e6, requests: Some(m as u64 * 10), tokens: Some(tokens) }
            })
            .collect();
        let r = detect_leak(&[Lifetime { pid: 1, points }], None, &LeakParams::default());
        assert_eq!(r.verdict, Verdict::Leak, "{}", r.reason);
        let per_1k_tokens = r.mb_per_1k_tokens.unwrap();
        assert!((per_1k_tokens - 1.0).abs() < 0.05, "{per_1k_tokens}");
    }

    #[test]
    fn a_filling_and_flushing_cache_is_no_leak() {
        // Grows 50 MB over 30 min, flushed, 12 times.
        let l = life(T0, 359, 1.0, &mut Rng(23), |m| 1000.0 + (m % 30.0) * 50.0 / 30.0);
        let r = detect_leak(&[l], None, &LeakParams::default());
        assert_eq!((r.verdict, r.steps.len(), r.judged_by), (Verdict::NoLeak, 11, "troughs"), "{r:?}");
        assert!((r.steps[0].at_ms - (T0 + 30 * MIN)).abs() <= MIN, "{r:?}");
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
        assert!((r.mb_per_hour.unwrap() - 5.0).abs() < 0.5 && r.reason.contains("after each release"), "{r:?}");
    }

    /// A life kept in tests/fixtures: lines of seconds since its first point and MB.
    fn fixture(text: &str) -> Vec<MemPoint> {
        (text.lines().filter(|l| !l.starts_with('#')))
            .map(|l| {
                let (s, mb) = l.split_once(' ').unwrap();
                let (s, mb): (f64, f64) = (s.parse().unwrap(), mb.parse().unwrap());
                MemPoint { at_ms: T0 + (s * 1000.0) as i64, bytes: mb * 1e6, requests: None, tokens: None }
            })
            .collect()
    }

    #[test]
    fn a_step_just_after_an_alarm_of_noise_is_still_taken_out() {
        let points = fixture(include_str!("../../tests/fixtures/step_after_alarm_life.txt"));
        let r = detect_leak(&[Lifetime { pid: 1, points }], None, &LeakParams::default());
        assert_eq!(r.verdict, Verdict::Leak, "{r:?}");
        assert!(r.steps.iter().any(|s| (s.delta_mb - 721.0).abs() < 5.0), "{:?}", r.steps);
        assert!(r.noise_mb.unwrap() < 2.0 && (r.mb_per_hour.unwrap() - 3.8).abs() < 0.8, "{r:?}");
    }

    #[test]
    fn lumpy_noise_whose_rises_do_not_hold_is_no_staircase() {
        let points = fixture(include_str!("../../tests/fixtures/flat_lumpy_life.txt"));
        assert_eq!(points.len(), 300);
        let r = detect_leak(&[Lifetime { pid: 1, points: points.clone() }], None, &LeakParams::default());
        assert_ne!(r.verdict, Verdict::Leak, "{r:?}");
        // The same life with each of its rises held: 40 MB more every 4 h is a staircase.
        let stepped: Vec<MemPoint> = (points.iter())
            .map(|p| {
                let steps = ((p.at_ms - T0) / (4 * 60 * MIN)) as f64;
                MemPoint { bytes: p.bytes + steps * 40e6, ..*p }
            })
            .collect();
        let r = detect_leak(&[Lifetime { pid: 1, points: stepped }], None, &LeakParams::default());
        assert_eq!(r.verdict, Verdict::Leak, "{r:?}");
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
        let nan = Lifetime {
            pid: 2,
            points: vec![MemPoint { at_ms: T0, bytes: f64::NAN, requests: None, tokens: None }; 100],
        };
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
        let pt = |at_ms, bytes| MemPoint { at_ms, bytes, requests: Some(7), tokens: None };
        let extremes = vec![pt(i64::MIN, 1e300), pt(0, -1e300), pt(i64::MAX, f64::MAX)];
        let p = LeakParams { min_points: 0, min_span_ms: 0, ..LeakParams::default() };
        for points in [extremes, vec![pt(T0, 1.0); 40]] {
            assert!(!detect_leak(&[Lifetime { pid: 1, points }], Some(f64::NAN), &p).reason.is_empty());
        }
    }

    #[test]
    fn a_million_samples_are_judged_quickly() {
        // A month at one sample every 2.6 s, leaking 2 MB/h, in one lifetime.
        let mut rng = Rng(31);
        let mut pt = |i: i64| (1000.0 + 2.0 * i as f64 * 2600.0 / 3.6e6 + rng.normal()) * 1e6;
        let points = (0..1_000_000)
            .map(|i| MemPoint { at_ms: T0 + i * 2600, bytes: pt(i), requests: None, tokens: None })
            .collect();
        let started = std::time::Instant::now();
        let r = detect_leak(&[Lifetime { pid: 1, points }], None, &LeakParams::default());
        let elapsed = started.elapsed();
        println!("1,000,000 samples judged in {elapsed:?}");
        assert_eq!(r.verdict, Verdict::Leak);
        assert!((r.mb_per_hour.unwrap() - 2.0).abs() < 0.01, "{r:?}");
        assert!(elapsed.as_secs_f64() < 5.0, "{elapsed:?}");
    }
}
