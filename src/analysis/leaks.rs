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
//!   context allocated once, a second model copy loaded). When every shift is smaller than a step
//!   must rise (the practical bar) and the trend without them fails, the series as it is faces the
//!   same tests (`grows_as_it_is`): rises that small are part of the growth. Growth that comes only in steps is a
//!   leak when the steps keep coming (`staircase`) in lives holding half the samples, and the
//!   series as it is trends significantly with its slope's 95 % interval above zero (leaks only
//!   under load, per-request leaks in bursts; lumps of held memory that come and go rise and fall
//!   alike).
//!
//! Verdict: InsufficientData below `min_span_ms` of judged time or `min_points` samples; Leak when
//! the trend is significant (p < `alpha`), practical and persistent, or the steps keep coming;
//! Plateau when it grew significantly and then stopped (or a long warm-up filled and held); Step
//! when a level shift is all the growth there is; otherwise NoLeak.

use super::memory_life::{self, Life, Pt};
use super::staircase;
use super::trend::{
    MannKendall, TheilSen, seasonal_kendall_modified, seasonal_sen_interval, seasonal_sen_slope, theil_sen,
};
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
        lives.iter().map(|l| if l.sawtooth { (Vec::new(), Vec::new()) } else { last_third(l, &l.trend) }).collect();
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
    // Without shifts the series as it is is the trend's series (the usual case): its tests are the trend's.
    let (raw_line, raw_mk) = if raw == trend {
        (line, mk)
    } else {
        (
            seasonal_sen_interval(&raw, &factors),
            seasonal_kendall_modified(&raw.iter().map(|g| g.1.clone()).collect::<Vec<_>>()),
        )
    };
    let staircase = stepping * 2 >= judged_points
        && raw_mk.is_some_and(|m| m.p_value < p.alpha && m.z > 0.0)
        && raw_line.is_some_and(|l| l.slope >= p.min_mb_per_hour && l.slope_low > 0.0);

    // A sawtooth's rate is its cycles' levels' slope, one point per cycle: a leak only where that
    // rises beyond doubt too (a levelled series can trend on the ramps' ends alone).
    let cycles: Vec<(Vec<f64>, Vec<f64>)> =
        lives.iter().filter(|l| l.cycles.len() >= 3).map(|l| l.cycles.iter().copied().unzip()).collect();
    let all_sawtooth = lives.iter().all(|l| l.sawtooth);
    let cycle_line = if all_sawtooth { seasonal_sen_interval(&cycles, &[]) } else { None };
    // Each level is read where its release was seen, to within a gap's worth of ramp; when the
    // cycles last close to a whole number of gaps, that error drifts the same way from cycle to
    // cycle, and the levels rise by up to a gap's ramp with no leak at all. The rise must exceed it.
    let cycle_span = cycles.iter().map(|(h, _)| h[h.len() - 1] - h[0]).fold(0.0, f64::max);
    let blur = lives.iter().map(|l| l.cycle_blur_mb).fold(0.0, f64::max);
    let troughs_rise = !all_sawtooth || cycle_line.is_some_and(|c| c.slope_low > 0.0 && c.slope * cycle_span >= blur);
    let from_steps = staircase;
    let trend_leak = significant && practical && !stopped && blocks_agree && troughs_rise && lives_agree;
    // Rises found in a series that also grows between them, none as large as a step must be
    // (the practical bar), are part of its growth, not steps of their own: taking them out can
    // leave too little to judge (a leak in lumpy noise whose lumps were read as rises). The
    // series as it is then faces the same tests.
    let rise_bar = (p.practical_sigmas * noise).max(p.min_mb_per_hour);
    let small_rises = !lives.iter().any(|l| l.sawtooth)
        && report.steps.iter().any(|s| s.delta_mb > 0.0)
        && report.steps.iter().all(|s| s.delta_mb.abs() < rise_bar);
    let as_it_is = (!trend_leak && !staircase && small_rises && lives_agree)
        .then(|| grows_as_it_is(&lives, &raw, raw_line?, raw_mk?, p, longest))
        .flatten();
    let leak = trend_leak || staircase || as_it_is.is_some();
    if let Some((line, mk)) = as_it_is {
        report.verdict = Verdict::Leak;
        report.judged_by = "trend";
        report.p_value = Some(mk.p_value);
        report.tau = Some(mk.tau);
        report.mb_per_hour = Some(line.slope);
        report.mb_per_hour_ci = Some((line.slope_low, line.slope_high));
    } else if leak {
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
    let raw_series = report.judged_by == "steps" || as_it_is.is_some();
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

/// The trend tests on the lives' series as they are (level shifts left in): significant, at
/// least `min_mb_per_hour` and `practical_sigmas` times the series' own noise over the longest
/// life, as fast in the last thirds, and on block medians unless clear. `raw` holds each life's
/// series as it is, `line` and `mk` their seasonal Sen line and Kendall test (`detect_leak` has
/// them for the staircase already); both are given back when it grows.
fn grows_as_it_is(
    lives: &[Life],
    raw: &[(Vec<f64>, Vec<f64>)],
    line: TheilSen,
    mk: MannKendall,
    p: &LeakParams,
    longest: f64,
) -> Option<(TheilSen, MannKendall)> {
    let spread = |(h, mb): &(Vec<f64>, Vec<f64>)| {
        let l = theil_sen(h, mb)?;
        Some(memory_life::spread(h.iter().zip(mb).map(|(h, m)| m - l.intercept - l.slope * h)))
    };
    let noise = weighted_median(raw.iter().filter_map(|g| Some((spread(g)?, g.0.len() as f64))))?;
    let late: Vec<(Vec<f64>, Vec<f64>)> = lives.iter().map(|l| last_third(l, &l.raw)).collect();
    let late_factors: Vec<f64> = late.iter().map(|g| super::trend::hamed_rao_factor(&g.1)).collect();
    let kept_on =
        seasonal_sen_interval(&late, &late_factors).is_some_and(|l| l.slope_high >= p.persist_share * line.slope);
    let clear = line.slope * longest >= CLEAR_SIGMAS * noise || {
        let blocks: Vec<Vec<f64>> = lives.iter().map(|l| block_medians(&l.raw)).collect();
        super::trend::seasonal_kendall(&blocks).is_some_and(|m| m.p_value < p.alpha && m.z > 0.0)
    };
    let grows = mk.p_value < p.alpha
        && mk.z > 0.0
        && line.slope >= p.min_mb_per_hour
        && line.slope * longest >= p.practical_sigmas * noise
        && kept_on
        && clear;
    grows.then_some((line, mk))
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

/// The last third (by time) of one of a life's series (`trend` or `raw`).
fn last_third(l: &Life, series: &[(f64, f64)]) -> (Vec<f64>, Vec<f64>) {
    let from = l.late_h();
    series.iter().filter(|(h, _)| *h >= from).copied().unzip()
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
#[path = "leaks_tests.rs"]
mod tests;
