//! One process life's idle memory, made ready for the leak verdict (`leaks` pools the lives and
//! decides). Everything here depends only on the life's own samples, never on the report's window:
//!
//! 1. **Thinning** by the life's own cadence: samples are grouped into buckets of
//!    `max(median interval, span / 300)` and each bucket gives its median time and memory — a life
//!    of 300 samples or fewer is left as it is.
//! 2. **Isolated spikes** (a sample far from its neighbours, e.g. taken just after a burst before
//!    memory was freed) are dropped by a Hampel filter (Hampel 1974; Pearson 2002): a point more
//!    than 4 robust sigmas from the median of the 7 around it, and from both its neighbours.
//! 3. **Warm-up**: a life's start that lies off the line its second half follows (model load,
//!    caches filling) is set apart, up to the last point of the first half of the life still more
//!    than two residual sigmas off that line, and further while what remains still closes in on the
//!    line (the tail of an approach to a plateau). What remains is judged.
//! 4. **Level shifts** in what remains, by the two-sided CUSUM of `trend::cusum_steps_at` (a steady
//!    trend, even sampled at irregular times, is not a shift): rises (growth events) and drops (releases).
//! 5. **The series to judge**: with three or more releases that together give back at least what
//!    the life gained overall, a cache that fills and is flushed (a sawtooth): each point minus the ramp since its cycle began (the median within-cycle
//!    Sen slope times the time since the last release), so only a rising floor is left as trend.
//!    Otherwise every rise is subtracted from the points after it, so a lone step or a reload is
//!    not read as a slope (the rises are judged apart, see `leaks`); a drop is subtracted only with
//!    the rise it pairs with (a lump that came and went), else it stays, as memory given back.

use super::leaks::MemPoint;
use super::trend::{cusum_steps_at, hamed_rao_factor, mann_kendall, theil_sen};
use crate::measure::stats::median;

const MS_PER_HOUR: f64 = 3_600_000.0;
const BYTES_PER_MB: f64 = 1e6;
/// The width of the central 90 % of a standard normal (2 × 1.6449): the 5–95 % spread of the
/// residuals over it estimates their sigma, and lumps that hold for a while widen it.
const NORMAL_90_WIDTH: f64 = 3.289_707_253_902_945;
/// Points a life keeps after thinning.
pub const MAX_LIFE_POINTS: usize = 300;
/// Half-width of the Hampel filter's window, and its threshold in robust sigmas.
const HAMPEL_HALF: usize = 3;
const HAMPEL_SIGMAS: f64 = 4.0;
/// A warm-up never takes more than this share of a life's span.
const WARMUP_MAX_SHARE: f64 = 0.5;
/// CUSUM decision interval, in robust sigmas of the first differences.
const STEP_SIGMAS: f64 = 5.0;
/// A level shift smaller than this many sigmas of the first differences (or 1 MB) is noise.
const STEP_MIN_SIGMAS: f64 = 3.0;
const STEP_MIN_MB: f64 = 1.0;
/// Releases from which on a life is judged as a sawtooth.
const MIN_RELEASES: usize = 3;
/// Points a life needs to be judged at all (so its warm-up can be looked for), and after it.
pub(crate) const MIN_LIFE_POINTS: usize = 8;
const MIN_JUDGED_POINTS: usize = 6;

/// (hours, MB) points.
type Series = Vec<(f64, f64)>;

/// One point of a life: hours since the life's first sample, MB, and what the process had served.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pt {
    pub at_ms: i64,
    pub h: f64,
    pub mb: f64,
    pub requests: Option<f64>,
    pub tokens: Option<f64>,
}

/// A level shift within a life.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Shift {
    /// Index into `Life::pts` of the first point at the new level.
    pub index: usize,
    pub at_ms: i64,
    pub delta_mb: f64,
}

/// A life, shaped (see the module doc).
#[derive(Debug, Clone)]
pub(crate) struct Life {
    /// The first and last sample as taken (before thinning), Unix ms.
    pub first_ms: i64,
    pub last_ms: i64,
    /// Thinned, spikes dropped, in time order.
    pub pts: Vec<Pt>,
    /// Index of the first point after the warm-up.
    pub start: usize,
    /// The warm-up's rise (MB, from the life's first points to where the warm-up ends), if any.
    pub warmup_mb: Option<f64>,
    /// Shifts after the warm-up.
    pub shifts: Vec<Shift>,
    /// Judged as a sawtooth (a cache filled and flushed three or more times).
    pub sawtooth: bool,
    /// A sawtooth's cycles: (hours at the cycle's start, its level there, MB).
    pub cycles: Vec<(f64, f64)>,
    /// What the trend is judged on, after the warm-up: (hours, MB).
    pub trend: Vec<(f64, f64)>,
    /// The same points as they were (shifts not removed), for rates when growth comes in steps.
    pub raw: Vec<(f64, f64)>,
    /// Spread of `trend` about its Theil–Sen line (a sawtooth's: about each cycle's line): the 5–95 %
    /// range of the residuals over 3.29 (the sigma of normal noise; lumps of held memory widen it), MB.
    pub noise_mb: f64,
    /// Robust sigma of the first differences, MB (short-term noise).
    pub diff_sigma_mb: f64,
    /// Hamed–Rao variance inflation of `trend`.
    pub autocorrelation: f64,
}

impl Life {
    /// Shapes the samples of one life (time order not required). `None` when fewer than
    /// [`MIN_LIFE_POINTS`] finite samples remain after the warm-up.
    pub(crate) fn shape(points: &[MemPoint]) -> Option<Life> {
        let finite = points.iter().filter(|m| m.bytes.is_finite());
        let (first_ms, last_ms) = finite.fold((i64::MAX, i64::MIN), |(a, b), m| (a.min(m.at_ms), b.max(m.at_ms)));
        let pts = despike(thin(points));
        if pts.len() < MIN_LIFE_POINTS {
            return None;
        }
        let mb: Vec<f64> = pts.iter().map(|p| p.mb).collect();
        let diff_sigma_mb = diff_sigma(&mb);
        let start = warmup_end(&pts, diff_sigma_mb);
        if pts.len() - start < MIN_JUDGED_POINTS {
            return None;
        }
        let warmup_mb = (start > 0).then(|| {
            let head = median(mb[..start.min(3)].iter().copied()).unwrap_or(mb[0]);
            let after = median(mb[start..(start + 3).min(mb.len())].iter().copied()).unwrap_or(mb[start]);
            after - head
        });
        let rest = &pts[start..];
        let shifts = shifts(rest, diff_sigma_mb)
            .into_iter()
            .map(|(i, delta_mb)| Shift { index: start + i, at_ms: pts[start + i].at_ms, delta_mb })
            .collect::<Vec<_>>();
        // A release gives back growth that came gradually; a drop that pairs with a rise next to
        // it is a lump that came and went (lumpy noise, a burst's spike), not a cache flushed.
        let partner = partners(&shifts);
        let releases: Vec<Shift> =
            shifts.iter().zip(&partner).filter(|(s, p)| s.delta_mb < 0.0 && p.is_none()).map(|(s, _)| *s).collect();
        let drops = releases.len();
        let dropped: f64 = releases.iter().map(|s| -s.delta_mb).sum();
        let ends = |r: &[Pt]| median(r.iter().map(|p| p.mb));
        let net = ends(&rest[rest.len().saturating_sub(5)..])
            .zip(ends(&rest[..5.min(rest.len())]))
            .map_or(0.0, |(b, a)| b - a);
        let sawtooth = drops >= MIN_RELEASES && dropped >= net;
        let raw: Vec<(f64, f64)> = rest.iter().map(|p| (p.h, p.mb)).collect();
        let (trend, cycles, cycle_noise) = if sawtooth {
            deramp(&pts, start, &releases)
        } else {
            (without_shifts(&pts, start, &shifts), Vec::new(), 0.0)
        };
        let (th, tm): (Vec<f64>, Vec<f64>) = trend.iter().copied().unzip();
        let noise_mb = if sawtooth {
            // A cycle's level is known to within the ramp between two samples, which the residuals
            // about each cycle's line do not show: the levels' own scatter about their line does
            // (robust sigma, MAD × 1.4826).
            let (ch, cm): (Vec<f64>, Vec<f64>) = cycles.iter().copied().unzip();
            let level_sd = theil_sen(&ch, &cm).map_or(0.0, |line| {
                let residuals: Vec<f64> =
                    ch.iter().zip(&cm).map(|(h, m)| m - line.intercept - line.slope * h).collect();
                let mid = median(residuals.iter().copied()).unwrap_or(0.0);
                median(residuals.iter().map(|r| (r - mid).abs())).unwrap_or(0.0) * 1.4826
            });
            cycle_noise.max(level_sd)
        } else {
            theil_sen(&th, &tm).map_or(diff_sigma_mb, |line| {
                let residuals: Vec<f64> =
                    th.iter().zip(&tm).map(|(h, m)| m - line.intercept - line.slope * h).collect();
                let [lo, hi] = crate::measure::stats::percentiles(residuals, [5.0, 95.0]);
                lo.zip(hi).map_or(0.0, |(lo, hi)| (hi - lo) / NORMAL_90_WIDTH)
            })
        };
        let autocorrelation = hamed_rao_factor(&tm);
        Some(Life {
            first_ms,
            last_ms,
            pts,
            start,
            warmup_mb,
            shifts,
            sawtooth,
            cycles,
            trend,
            raw,
            noise_mb,
            diff_sigma_mb,
            autocorrelation,
        })
    }

    /// Hours judged (after the warm-up).
    pub(crate) fn judged_hours(&self) -> f64 {
        self.pts[self.pts.len() - 1].h - self.pts[self.start].h
    }

    /// (requests, MB) after the warm-up, from `trend` (or `raw` when `raw_series`).
    pub(crate) fn by(&self, raw_series: bool, of: impl Fn(&Pt) -> Option<f64>) -> Vec<(f64, f64)> {
        let series = if raw_series { &self.raw } else { &self.trend };
        self.pts[self.start..].iter().zip(series).filter_map(|(p, (_, mb))| Some((of(p)?, *mb))).collect()
    }
}

/// Groups the samples by the life's own cadence (see the module doc); MB, hours from the first.
fn thin(points: &[MemPoint]) -> Vec<Pt> {
    let mut pts: Vec<&MemPoint> = points.iter().filter(|m| m.bytes.is_finite()).collect();
    pts.sort_by_key(|m| m.at_ms);
    let Some(first) = pts.first().map(|m| m.at_ms) else { return Vec::new() };
    let last = pts[pts.len() - 1].at_ms;
    let point = |m: &MemPoint, at_ms: i64, mb: f64| Pt {
        at_ms,
        h: at_ms.saturating_sub(first) as f64 / MS_PER_HOUR,
        mb,
        requests: m.requests.map(|r| r as f64),
        tokens: m.tokens.map(|t| t as f64),
    };
    if pts.len() <= MAX_LIFE_POINTS {
        return pts.iter().map(|m| point(m, m.at_ms, m.bytes / BYTES_PER_MB)).collect();
    }
    let gaps: Vec<f64> =
        pts.windows(2).map(|w| w[1].at_ms.saturating_sub(w[0].at_ms) as f64).filter(|g| *g > 0.0).collect();
    let cadence = median(gaps).unwrap_or(1.0);
    let span = last.saturating_sub(first) as f64;
    let width = cadence.max(span / MAX_LIFE_POINTS as f64).max(1.0);
    let bucket = |m: &MemPoint| (m.at_ms.saturating_sub(first) as f64 / width) as u64;
    pts.chunk_by(|a, b| bucket(a) == bucket(b))
        .map(|chunk| {
            let at = median(chunk.iter().map(|m| m.at_ms as f64)).unwrap_or(chunk[0].at_ms as f64) as i64;
            let mb = median(chunk.iter().map(|m| m.bytes / BYTES_PER_MB)).unwrap_or(0.0);
            point(chunk[chunk.len() - 1], at, mb)
        })
        .collect()
}

/// Robust sigma of the first differences over √2: the short-term noise of one sample.
fn diff_sigma(mb: &[f64]) -> f64 {
    let diffs: Vec<f64> = mb.windows(2).map(|w| w[1] - w[0]).collect();
    let centre = median(diffs.iter().copied()).unwrap_or(0.0);
    1.4826 * median(diffs.iter().map(|d| (d - centre).abs())).unwrap_or(0.0) / std::f64::consts::SQRT_2
}

/// The Hampel filter: drops points more than 4 robust sigmas from the median of the 7 around them
/// (the window shifts inward at the ends) and as far from both neighbours. The sigma never falls
/// below the short-term noise.
fn despike(pts: Vec<Pt>) -> Vec<Pt> {
    let n = pts.len();
    let window = 2 * HAMPEL_HALF + 1;
    if n < window + 2 {
        return pts;
    }
    let mb: Vec<f64> = pts.iter().map(|p| p.mb).collect();
    let floor = diff_sigma(&mb).max(1e-3);
    let keep: Vec<bool> = (0..n)
        .map(|i| {
            let lo = i.saturating_sub(HAMPEL_HALF).min(n - window);
            let around = &mb[lo..lo + window];
            let m = median(around.iter().copied()).unwrap_or(mb[i]);
            let mad = 1.4826 * median(around.iter().map(|v| (v - m).abs())).unwrap_or(0.0);
            let limit = HAMPEL_SIGMAS * mad.max(floor);
            // A spike stands alone: a neighbour at its level makes it a level (a step near an end).
            let alone = [i.checked_sub(1), (i + 1 < n).then_some(i + 1)]
                .into_iter()
                .flatten()
                .all(|j| (mb[j] - mb[i]).abs() > limit);
            (mb[i] - m).abs() <= limit || !alone
        })
        .collect();
    pts.into_iter().zip(keep).filter(|(_, k)| *k).map(|(p, _)| p).collect()
}

/// Index of the first point after the warm-up (0: none). The second half of the life gives a
/// Theil–Sen line and its residual sigma; if the life begins more than 2 sigmas off that line
/// (the running median of its first few points), the warm-up lasts past the last point, within
/// the first half of the life and before the running median first crosses the line, where it is
/// still more than 2 sigmas off, and then on while the rest still closes in on the line (a
/// Mann–Kendall z of its deviations beyond 1). It must be an approach: moving towards the line at
/// least twice as fast as the line moves that way.
fn warmup_end(pts: &[Pt], diff_sigma_mb: f64) -> usize {
    let n = pts.len();
    let span = pts[n - 1].h - pts[0].h;
    let half = pts.partition_point(|p| p.h < pts[0].h + span / 2.0);
    let (h2, m2): (Vec<f64>, Vec<f64>) = pts[half..].iter().map(|p| (p.h, p.mb)).unzip();
    if h2.len() < 4 {
        return 0;
    }
    let Some(line) = theil_sen(&h2, &m2) else { return 0 };
    let residual = |p: &Pt| p.mb - line.intercept - line.slope * p.h;
    let sigma =
        (1.4826 * median(pts[half..].iter().map(|p| residual(p).abs())).unwrap_or(0.0)).max(diff_sigma_mb).max(1e-3);
    let w = (n / 50).max(3);
    let rolled = |i: usize| median(pts[i..(i + w).min(n)].iter().map(residual)).unwrap_or(0.0);
    if rolled(0).abs() <= 2.0 * sigma {
        return 0;
    }
    // A warm-up approaches the line from one side; the first crossing ends it (a staircase leak
    // crosses the line at its first step, a warm-up only where it arrives).
    let sign = rolled(0).signum();
    let crossing = (0..n).find(|&i| rolled(i) * sign <= 0.0).unwrap_or(n);
    let cap = pts.partition_point(|p| p.h <= pts[0].h + span * WARMUP_MAX_SHARE).min(crossing);
    let off_line = (0..cap).rev().find(|&i| rolled(i).abs() > 2.0 * sigma).map_or(0, |i| i + 1);
    // Then on while what remains still drifts off the line in the warm-up's direction (its
    // deviations' Mann–Kendall z beyond 1): the tail of an approach to the plateau.
    let deviations: Vec<f64> = pts.iter().map(|p| -sign * residual(p)).collect();
    let stride = (cap / 50).max(1);
    let mut end = off_line;
    while end < cap && mann_kendall(&deviations[end..]).is_some_and(|m| m.z < -1.0) {
        end += stride;
    }
    let end = end.min(cap);
    // A warm-up is an approach: it moves towards the line at least twice as fast as the line itself
    // moves that way (a staircase leak below its own later line is no warm-up).
    let (he, me): (Vec<f64>, Vec<f64>) = pts[..end].iter().map(|p| (p.h, p.mb)).unzip();
    let approach = theil_sen(&he, &me)
        .is_some_and(|e| -sign * e.slope > 0.0 && -sign * e.slope >= 2.0 * (-sign * line.slope).max(0.0));
    if approach { end } else { 0 }
}

/// Level shifts of a series: candidates from CUSUM (a candidate found in two pieces, a flush
/// caught mid-way by a sample, is one), each sized by the lines the segments on either side of it
/// follow — the Theil–Sen line of up to 60 points between it and its neighbouring candidates,
/// after minus before, both at the shift's time (a segment of fewer than 4 points: its point next
/// to the shift). So a step in a growing series does not take the
/// growth with it, the drop of a sawtooth is the whole ramp it ends, and a lump of memory that came
/// back (whether or not its return was found) is no shift at all. Shifts under 3 short-term sigmas
/// or 1 MB are noise.
fn shifts(pts: &[Pt], diff_sigma_mb: f64) -> Vec<(usize, f64)> {
    const SIDE: usize = 60;
    let (h, mb): (Vec<f64>, Vec<f64>) = pts.iter().map(|p| (p.h, p.mb)).unzip();
    let mut found: Vec<(usize, f64)> = Vec::new();
    for st in cusum_steps_at(&h, &mb, STEP_SIGMAS) {
        let local = st.after - st.before;
        match found.last_mut() {
            Some(last) if st.index - last.0 <= 3 && last.1.signum() == local.signum() => last.1 += local,
            _ => found.push((st.index, local)),
        }
    }
    let floor = (STEP_MIN_SIGMAS * diff_sigma_mb).max(STEP_MIN_MB);
    // A segment of 4 points or more: its line at the shift; a shorter one: its point nearest it.
    let level_at = |range: std::ops::Range<usize>, at: f64, nearest: usize| {
        if range.len() < 4 {
            return mb.get(nearest).copied();
        }
        theil_sen(&h[range.clone()], &mb[range]).map(|l| l.intercept + l.slope * at)
    };
    let mut out = Vec::new();
    for (j, &(i, _)) in found.iter().enumerate() {
        let prev = if j > 0 { found[j - 1].0 } else { 0 };
        let next = found.get(j + 1).map_or(mb.len(), |n| n.0);
        let before = prev.max(i.saturating_sub(SIDE))..i;
        let after = i..next.min(i + SIDE);
        let (Some(b), Some(a)) = (level_at(before, h[i], i.saturating_sub(1)), level_at(after, h[i], i)) else {
            continue;
        };
        let delta = a - b;
        if delta.abs() >= floor {
            out.push((i, delta));
        }
    }
    out
}

/// Two shifts of opposite sign and about the same size (they cancel to within half the larger).
fn paired(a: f64, b: f64) -> bool {
    a.signum() != b.signum() && (a + b).abs() < 0.5 * a.abs().max(b.abs())
}

/// Each shift's partner, pairing neighbours greedily from the first: a shift and the next one pair
/// when they are of opposite sign and about the same size (a lump that came and went, a dip that
/// came back).
fn partners(shifts: &[Shift]) -> Vec<Option<usize>> {
    let mut out = vec![None; shifts.len()];
    let mut j = 0;
    while j + 1 < shifts.len() {
        if paired(shifts[j].delta_mb, shifts[j + 1].delta_mb) {
            (out[j], out[j + 1]) = (Some(j + 1), Some(j));
            j += 2;
        } else {
            j += 1;
        }
    }
    out
}

/// After the warm-up, each point minus the shifts at or before it that are taken out: every rise
/// that holds (a step up), and a pair of shifts that cancel (a lump that came and went: taken out
/// between them, and nothing after, so what it did not give back stays). A drop on its own stays:
/// memory given back is evidence against a leak, and taking it out would make growth of it.
fn without_shifts(pts: &[Pt], start: usize, shifts: &[Shift]) -> Vec<(f64, f64)> {
    // A rise holds when the level after it (to the next shift) stays at least half of it above the
    // level before it (from the previous one): a jump that drains away again is no step.
    let level = |from: usize, to: usize| median(pts[from..to].iter().map(|p| p.mb));
    let holds = |j: usize| {
        let before = if j > 0 { shifts[j - 1].index } else { start };
        let after = shifts.get(j + 1).map_or(pts.len(), |s| s.index);
        level(shifts[j].index, after)
            .zip(level(before, shifts[j].index))
            .is_none_or(|(a, b)| a - b >= 0.5 * shifts[j].delta_mb)
    };
    let partner = partners(shifts);
    let taken: Vec<f64> = (0..shifts.len())
        .map(|j| match partner[j] {
            Some(k) if k > j => shifts[j].delta_mb,
            Some(k) => -shifts[k].delta_mb,
            None if shifts[j].delta_mb > 0.0 && holds(j) => shifts[j].delta_mb,
            None => 0.0,
        })
        .collect();
    let mut offset = 0.0;
    let mut next = shifts.iter().zip(taken).peekable();
    pts[start..]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            while next.peek().is_some_and(|(s, _)| s.index <= start + i) {
                offset += next.next().map_or(0.0, |(_, taken)| taken);
            }
            (p.h, p.mb - offset)
        })
        .collect()
}

/// A sawtooth without its ramps. Cycles begin at the warm-up's end and at each drop; each cycle of
/// 4 points or more follows its own Theil–Sen line (shorter ones the median ramp of all), and each
/// point becomes its cycle's level at the cycle's start plus its residual about the line. Returns
/// that series, the cycles' (start, level) where the release was seen closely, and the residuals'
/// spread.
fn deramp(pts: &[Pt], start: usize, shifts: &[Shift]) -> (Series, Series, f64) {
    let mut bounds: Vec<usize> = vec![start];
    bounds.extend(shifts.iter().filter(|s| s.delta_mb < 0.0).map(|s| s.index));
    bounds.push(pts.len());
    let cycles: Vec<(Vec<f64>, Vec<f64>)> =
        bounds.windows(2).map(|w| pts[w[0]..w[1]].iter().map(|p| (p.h, p.mb)).unzip()).collect();
    let ramp = super::trend::seasonal_sen_slope(&cycles).unwrap_or(0.0);
    // A release happened somewhere between the samples either side of it: a cycle begins midway
    // (the first, half a usual spacing before its first point).
    // A release that fell in a gap of the samples (a burst, a pause) leaves its cycle's level
    // unknown by up to a gap's worth of ramp: such a cycle is levelled but not counted in `levels`.
    let spacing = median(pts[start..].windows(2).map(|w| w[1].h - w[0].h)).unwrap_or(0.0);
    let gap = |i: usize| if i > start { pts[i].h - pts[i - 1].h } else { spacing };
    let (mut out, mut levels, mut residuals) = (Vec::with_capacity(pts.len() - start), Vec::new(), Vec::new());
    for (w, (h, mb)) in bounds.windows(2).zip(&cycles) {
        let begin = pts[w[0]].h - gap(w[0]) / 2.0;
        let line = if h.len() >= 4 { theil_sen(h, mb) } else { None };
        let (slope, at_begin) = match line {
            Some(l) => (l.slope, l.intercept + l.slope * begin),
            None => (ramp, median(h.iter().zip(mb).map(|(h, m)| m - ramp * (h - begin))).unwrap_or(mb[0])),
        };
        if gap(w[0]) <= 3.0 * spacing {
            levels.push((begin, at_begin));
        }
        for (h, m) in h.iter().zip(mb) {
            let residual = m - at_begin - slope * (h - begin);
            residuals.push(residual);
            out.push((*h, at_begin + residual));
        }
    }
    let [lo, hi] = crate::measure::stats::percentiles(residuals, [5.0, 95.0]);
    (out, levels, lo.zip(hi).map_or(0.0, |(lo, hi)| (hi - lo) / NORMAL_90_WIDTH))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn pts(values: impl IntoIterator<Item = f64>) -> Vec<MemPoint> {
        values
            .into_iter()
            .enumerate()
            .map(|(i, mb)| MemPoint { at_ms: i as i64 * MIN, bytes: mb * 1e6, requests: Some(i as u64), tokens: None })
            .collect()
    }

    #[test]
    fn a_long_life_is_thinned_by_its_own_cadence() {
        let many = pts((0..3000).map(|i| 100.0 + (i % 2) as f64));
        let thinned = thin(&many);
        assert!(thinned.len() <= MAX_LIFE_POINTS + 1 && thinned.len() >= MAX_LIFE_POINTS - 1, "{}", thinned.len());
        assert!(thinned.iter().all(|p| p.mb == 100.5 || p.mb == 100.0 || p.mb == 101.0));
        // The same samples, whatever else is around them, give the same points.
        assert_eq!(thin(&many[..]), thin(&many.iter().rev().copied().collect::<Vec<_>>()));
        assert_eq!(thin(&pts([1.0, 2.0])).len(), 2);
    }

    #[test]
    fn an_isolated_spike_is_dropped_a_step_is_not() {
        let mut values: Vec<f64> =
            (0..40).map(|i| 100.0 + if i >= 20 { 50.0 } else { 0.0 } + (i % 3) as f64 * 0.1).collect();
        values[10] += 500.0;
        let kept = despike(thin(&pts(values)));
        assert_eq!(kept.len(), 39);
        assert!(kept.iter().all(|p| p.mb < 200.0) && kept.iter().filter(|p| p.mb > 140.0).count() == 20);
    }

    #[test]
    fn the_warm_up_is_set_apart_and_a_ramp_has_none() {
        // 30 MB filling over the first 20 minutes of a 3-hour life, then flat.
        let warm = pts((0..180).map(|i| 500.0 + 30.0 * (1.0 - (-(i as f64) / 6.0).exp()) + (i % 5) as f64 * 0.05));
        let life = Life::shape(&warm).unwrap();
        assert!((15..=40).contains(&life.start), "{}", life.start);
        assert!((25.0..31.0).contains(&life.warmup_mb.unwrap()), "{:?}", life.warmup_mb);
        let ramp = pts((0..180).map(|i| 500.0 + i as f64 * 0.5 + (i % 5) as f64 * 0.05));
        assert_eq!(Life::shape(&ramp).unwrap().start, 0);
    }

    #[test]
    fn shifts_are_taken_out_of_the_trend() {
        let stepped = pts((0..120).map(|i| 800.0 + if i >= 70 { 420.0 } else { 0.0 } + (i % 4) as f64 * 0.2));
        let life = Life::shape(&stepped).unwrap();
        assert_eq!(life.shifts.len(), 1, "{:?}", life.shifts);
        assert!((life.shifts[0].delta_mb - 420.0).abs() < 1.0 && !life.sawtooth);
        let spread = life.trend.iter().map(|t| t.1).fold(f64::NEG_INFINITY, f64::max)
            - life.trend.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
        assert!(spread < 2.0, "{spread}");
    }

    #[test]
    fn a_sawtooth_is_judged_without_its_ramps() {
        let flat = pts((0..240).map(|i| 300.0 + (i % 30) as f64 * 2.0));
        let life = Life::shape(&flat).unwrap();
        assert!(life.sawtooth && life.shifts.iter().filter(|s| s.delta_mb < 0.0).count() >= 6, "{:?}", life.shifts);
        let levels: Vec<f64> = life.trend.iter().map(|t| t.1).collect();
        let spread = levels.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b))
            - levels.iter().fold(f64::INFINITY, |a, b| a.min(*b));
        assert!(spread < 1.0, "{spread}");
    }
}
