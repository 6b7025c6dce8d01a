//! Trend statistics for slowly sampled series (memory, latency): robust slopes, monotonic-trend
//! tests and abrupt level shifts. Pure functions; non-finite values are dropped, and every
//! function answers `None` (or nothing) rather than panic on short, constant or odd input.
//!
//! - Slope: the Theil–Sen estimator, the median of all pairwise slopes (Sen 1968), with Sen's
//!   95 % confidence interval taken from the ranks that the Mann–Kendall variance gives (Sen 1968,
//!   eq. 2.6 — the same rule as `scipy.stats.theilslopes`).
//! - Trend test: Mann–Kendall (Mann 1945; Kendall 1975) with the tie-corrected variance of S and a
//!   continuity-corrected normal approximation. `S` is counted in O(n log n) by merge sort.
//! - Serial correlation: memory samples are not independent, and Mann–Kendall's Var(S) assumes they
//!   are. [`hamed_rao_factor`] is the variance inflation n/n* of Hamed & Rao (1998, "A modified
//!   Mann-Kendall trend test for autocorrelated data", J. Hydrology 204) from the significant
//!   autocorrelations of the detrended series' ranks — the same computation as pymannkendall's
//!   `hamed_rao_modification_test` (kept at 1 or above: negative correlation never makes a trend
//!   more significant). [`mann_kendall_modified`] applies it; [`theil_sen_scaled`] widens Sen's
//!   interval by it.
//! - Several independent strata (one per process lifetime): the seasonal Kendall test, which sums S
//!   and Var(S) over the strata (Hirsch, Slack & Smith 1982), and the seasonal Sen slope, the
//!   median of the within-stratum pairwise slopes (Hirsch et al. 1982).
//! - Level shifts: a two-sided tabular CUSUM (Page 1954) on the first differences, scaled by their
//!   robust sigma (MAD × 1.4826).
//!
//! Pairwise slopes are O(n²), so those estimators first reduce each series to at most 1000 points
//! with [`bucket_medians`] (median per equal-width bucket of x).

use crate::measure::stats::Z_975;
use statrs::function::erf::erfc;

/// Points kept per series before an O(n²) pairwise-slope step.
const PAIRWISE_MAX_POINTS: usize = 1000;
/// Points on each side of a level shift whose median gives `before` and `after`.
const STEP_WINDOW: usize = 5;

/// A Theil–Sen line `y = intercept + slope · x` with Sen's 95 % confidence interval for the slope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TheilSen {
    /// The median of the pairwise slopes.
    pub slope: f64,
    /// `median(y) − slope · median(x)` (Conover's intercept, scipy's default).
    pub intercept: f64,
    /// Lower end of the 95 % confidence interval for the slope.
    pub slope_low: f64,
    /// Upper end of the 95 % confidence interval for the slope.
    pub slope_high: f64,
}

/// The Theil–Sen slope of `y` on `x` (Sen 1968): the median of `(y_j − y_i) / (x_j − x_i)` over all
/// pairs, pairs with equal `x` skipped. `None` without at least two finite points with different `x`.
/// Series longer than 1000 points are first reduced with [`bucket_medians`].
pub fn theil_sen(x: &[f64], y: &[f64]) -> Option<TheilSen> {
    theil_sen_scaled(x, y, 1.0)
}

/// [`theil_sen`] with Sen's interval computed from `var_factor` × Var(S) (the Hamed–Rao inflation
/// for serially correlated data widens it); the slope itself is unchanged.
pub fn theil_sen_scaled(x: &[f64], y: &[f64], var_factor: f64) -> Option<TheilSen> {
    seasonal_sen_interval(&[(x.to_vec(), y.to_vec())], &[var_factor])
}

/// Hamed & Rao's (1998) variance inflation n/n* for the Mann–Kendall S of `y` (in time order,
/// equally spaced): `y` is detrended by its Sen slope per step, ranked, and every autocorrelation
/// of the ranks outside ±z₀.₉₇₅/√n adds (n−k)(n−k−1)(n−k−2)·ρₖ; n/n* = 1 + 2/(n(n−1)(n−2)) · Σ.
/// At least 1; 1 for fewer than 4 finite values.
pub fn hamed_rao_factor(y: &[f64]) -> f64 {
    let v: Vec<f64> = y.iter().copied().filter(|v| v.is_finite()).collect();
    let n = v.len();
    if n < 4 {
        return 1.0;
    }
    let idx: Vec<f64> = (1..=n).map(|i| i as f64).collect();
    let (bx, by) = bucket_medians(&idx, &v, PAIRWISE_MAX_POINTS);
    let mut slopes = pairwise_slopes(&bx, &by);
    let slope = select_median(&mut slopes).unwrap_or(0.0);
    let detrended: Vec<f64> = v.iter().enumerate().map(|(i, y)| y - slope * (i + 1) as f64).collect();
    let r = average_ranks(&detrended);
    let mean = r.iter().sum::<f64>() / n as f64;
    let c: Vec<f64> = r.iter().map(|x| x - mean).collect();
    let c0: f64 = c.iter().map(|x| x * x).sum();
    if c0 <= 0.0 {
        return 1.0;
    }
    let bound = Z_975 / (n as f64).sqrt();
    let nf = n as f64;
    let mut sum = 0.0;
    for k in 1..n {
        let rho = c[..n - k].iter().zip(&c[k..]).map(|(a, b)| a * b).sum::<f64>() / c0;
        if rho.abs() > bound {
            let kf = k as f64;
            sum += (nf - kf) * (nf - kf - 1.0) * (nf - kf - 2.0) * rho;
        }
    }
    let factor = 1.0 + 2.0 / (nf * (nf - 1.0) * (nf - 2.0)) * sum;
    if factor.is_finite() { factor.max(1.0) } else { 1.0 }
}

/// The Mann–Kendall test of `y` with Var(S) inflated by [`hamed_rao_factor`].
pub fn mann_kendall_modified(y: &[f64]) -> Option<MannKendall> {
    let (s, var_s, pairs) = kendall_parts(y)?;
    Some(finish(s, var_s * hamed_rao_factor(y), pairs))
}

/// The seasonal Kendall test over independent groups, each group's Var(S) inflated by its own
/// [`hamed_rao_factor`] (autocorrelation within a process life; lives are independent).
pub fn seasonal_kendall_modified(groups: &[Vec<f64>]) -> Option<MannKendall> {
    let parts: Vec<_> =
        groups.iter().filter_map(|g| kendall_parts(g).map(|(s, v, p)| (s, v * hamed_rao_factor(g), p))).collect();
    if parts.is_empty() {
        return None;
    }
    let (s, var_s, pairs) = parts.iter().fold((0i64, 0.0, 0.0), |a, p| (a.0.saturating_add(p.0), a.1 + p.1, a.2 + p.2));
    Some(finish(s, var_s, pairs))
}

/// Ranks 1..n with ties given their average rank (scipy's `rankdata` default).
fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// The result of a (seasonal) Mann–Kendall test for a monotonic trend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannKendall {
    /// Kendall's S: concordant minus discordant pairs in time order.
    pub s: i64,
    /// The tie-corrected variance of S under "no trend".
    pub var_s: f64,
    /// The continuity-corrected normal score `(S ∓ 1) / √Var(S)`, 0 when S is 0.
    pub z: f64,
    /// Two-sided p-value of `z`; 1 when every value is tied.
    pub p_value: f64,
    /// Kendall's tau-a: S divided by the number of pairs (as pymannkendall reports it).
    pub tau: f64,
}

/// The Mann–Kendall trend test (Mann 1945; Kendall 1975) of `y` in time order, with the
/// tie-corrected variance (flat memory has many ties). `None` with fewer than 3 finite values.
pub fn mann_kendall(y: &[f64]) -> Option<MannKendall> {
    let (s, var_s, pairs) = kendall_parts(y)?;
    Some(finish(s, var_s, pairs))
}

/// The seasonal Kendall test (Hirsch, Slack & Smith 1982): S and Var(S) summed over independent
/// groups (each group one process lifetime, in time order); groups of fewer than 3 finite values are
/// skipped. `None` when no group is usable. `tau` is the summed S over the summed number of pairs.
pub fn seasonal_kendall(groups: &[Vec<f64>]) -> Option<MannKendall> {
    let parts: Vec<_> = groups.iter().filter_map(|g| kendall_parts(g)).collect();
    if parts.is_empty() {
        return None;
    }
    let (s, var_s, pairs) = parts.iter().fold((0i64, 0.0, 0.0), |a, p| (a.0.saturating_add(p.0), a.1 + p.1, a.2 + p.2));
    Some(finish(s, var_s, pairs))
}

/// The seasonal Sen slope (Hirsch et al. 1982): the median of all within-group pairwise slopes of
/// `(x, y)` groups, pairs with equal `x` skipped. `None` when no group has such a pair. Groups
/// share a budget of about 1000 points, split by their size, before the pairwise step.
pub fn seasonal_sen_slope(groups: &[(Vec<f64>, Vec<f64>)]) -> Option<f64> {
    let total: usize = groups.iter().map(|(x, y)| x.len().min(y.len())).sum();
    let mut slopes = Vec::new();
    for (x, y) in groups {
        let cap = (PAIRWISE_MAX_POINTS as f64 * x.len().min(y.len()) as f64 / total as f64).ceil().max(3.0);
        let (x, y) = bucket_medians(x, y, cap as usize);
        slopes.extend(pairwise_slopes(&x, &y));
    }
    select_median(&mut slopes)
}

/// The seasonal Sen slope with its 95 % interval (Hirsch, Slack & Smith 1982): the ranks of the
/// interval come from the summed Var(S) of the groups, each inflated by its factor in
/// `var_factors` (missing factors count as 1). `None` when no group has a pair with different `x`.
pub fn seasonal_sen_interval(groups: &[(Vec<f64>, Vec<f64>)], var_factors: &[f64]) -> Option<TheilSen> {
    let total: usize = groups.iter().map(|(x, y)| x.len().min(y.len())).sum();
    let (mut slopes, mut var_s, mut medians) = (Vec::new(), 0.0, (Vec::new(), Vec::new()));
    for (g, (x, y)) in groups.iter().enumerate() {
        let cap = (PAIRWISE_MAX_POINTS as f64 * x.len().min(y.len()) as f64 / total.max(1) as f64).ceil().max(3.0);
        let (x, y) = bucket_medians(x, y, cap as usize);
        let before = slopes.len();
        slopes.extend(pairwise_slopes(&x, &y));
        if slopes.len() > before {
            let n = x.len() as f64;
            let v = (n * (n - 1.0) * (2.0 * n + 5.0) - tie_term(&x) - tie_term(&y)) / 18.0;
            var_s += v.max(0.0) * var_factors.get(g).copied().unwrap_or(1.0).max(1.0);
            medians.0.push(unsorted_median(&x)?);
            medians.1.push(unsorted_median(&y)?);
        }
    }
    if slopes.is_empty() {
        return None;
    }
    // Sen (1968) eq. 2.6: Var(S) with ties in x and in y, then ranks (N ∓ z·σ)/2 of the sorted slopes.
    let c = Z_975 * var_s.sqrt();
    let nt = slopes.len() as f64;
    let upper = ((nt + c) / 2.0).round_ties_even().min(nt - 1.0).max(0.0) as usize;
    let lower = ((((nt - c) / 2.0).round_ties_even() - 1.0).max(0.0) as usize).min(upper);
    let m = slopes.len();
    let [slope_low, lo, hi, slope_high] = ranks(&mut slopes, &[lower, (m - 1) / 2, m / 2, upper])[..] else {
        return None;
    };
    let slope = lo + (hi - lo) * 0.5;
    let intercept = unsorted_median(&medians.1)? - slope * unsorted_median(&medians.0)?;
    let line = TheilSen { slope, intercept, slope_low, slope_high };
    [slope, slope_low, slope_high].iter().all(|v| v.is_finite()).then_some(line)
}

/// An abrupt level shift found by [`cusum_steps`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Index into the input of the first value at the new level.
    pub index: usize,
    /// Median of up to 5 values just before the shift (not reaching back past the previous shift).
    pub before: f64,
    /// Median of up to 5 values from the shift on (not reaching past the next shift).
    pub after: f64,
}

/// Abrupt level shifts in `y` by a two-sided tabular CUSUM (Page 1954) on the first differences,
/// centred on their median (so a steady trend is not a shift) and scaled by their robust sigma
/// `MAD × 1.4826` (mean absolute deviation × 1.2533 when the MAD is 0), with reference value
/// `k = 0.5σ` and decision interval `h = threshold_sigmas · σ`. After a detection both sums reset and
/// the scan continues. The shift is placed at the largest difference (in the alarm's direction) since
/// the alarming sum last left zero. Nothing is found in fewer than 3 finite values, in a perfectly
/// regular series, or for a non-positive threshold.
pub fn cusum_steps(y: &[f64], threshold_sigmas: f64) -> Vec<Step> {
    let x: Vec<f64> = (0..y.len()).map(|i| i as f64).collect();
    cusum_steps_at(&x, y, threshold_sigmas)
}

/// [`cusum_steps`] for unevenly spaced points: each difference is centred on the median rate
/// `Δy/Δx` times its own `Δx`, so a steady trend sampled at irregular times is not a shift. Points
/// with a non-finite `x` or `y` are skipped; `x` must not decrease.
pub fn cusum_steps_at(x: &[f64], y: &[f64], threshold_sigmas: f64) -> Vec<Step> {
    let (idx, (xs, vals)): (Vec<usize>, (Vec<f64>, Vec<f64>)) = x
        .iter()
        .zip(y)
        .enumerate()
        .filter(|(_, (a, b))| a.is_finite() && b.is_finite())
        .map(|(i, (a, b))| (i, (*a, *b)))
        .unzip();
    if !(threshold_sigmas.is_finite() && threshold_sigmas > 0.0) || vals.len() < 3 {
        return Vec::new();
    }
    let dx: Vec<f64> = xs.windows(2).map(|w| w[1] - w[0]).collect();
    let raw: Vec<f64> = vals.windows(2).map(|w| w[1] - w[0]).collect();
    let rates: Vec<f64> = raw.iter().zip(&dx).filter(|(_, dx)| **dx > 0.0).map(|(d, dx)| d / dx).collect();
    let rate = unsorted_median(&rates).unwrap_or(0.0);
    let diffs: Vec<f64> = raw.iter().zip(&dx).map(|(d, dx)| d - rate * dx.max(0.0)).collect();
    let centre = 0.0;
    let dev: Vec<f64> = diffs.iter().map(|d| (d - centre).abs()).collect();
    let mad = unsorted_median(&dev).unwrap_or(0.0) * 1.4826;
    let sigma = if mad > 0.0 { mad } else { dev.iter().sum::<f64>() / dev.len() as f64 * 1.2533 };
    if !(sigma.is_finite() && sigma > 0.0) {
        return Vec::new();
    }
    let (k, h) = (0.5 * sigma, threshold_sigmas * sigma);
    let (mut up, mut down, mut up_from, mut down_from) = (0.0f64, 0.0f64, 0, 0);
    let mut starts = Vec::new();
    for (i, d) in diffs.iter().enumerate() {
        if up == 0.0 {
            up_from = i;
        }
        if down == 0.0 {
            down_from = i;
        }
        let e = d - centre;
        up = (up + e - k).max(0.0);
        down = (down - e - k).max(0.0);
        if up > h || down > h {
            let (from, sign) = if up >= down { (up_from, 1.0) } else { (down_from, -1.0) };
            let run = diffs[from..=i].iter().map(|d| sign * (d - centre));
            starts.push(from + 1 + run.enumerate().max_by(|a, b| a.1.total_cmp(&b.1)).map_or(0, |(j, _)| j));
            (up, down) = (0.0, 0.0);
        }
    }
    let mut steps = Vec::with_capacity(starts.len());
    for (j, &s) in starts.iter().enumerate() {
        let prev = if j > 0 { starts[j - 1] } else { 0 };
        let next = starts.get(j + 1).copied().unwrap_or(vals.len());
        let before = unsorted_median(&vals[prev.max(s.saturating_sub(STEP_WINDOW))..s]);
        let after = unsorted_median(&vals[s..next.min(s + STEP_WINDOW)]);
        if let (Some(before), Some(after), Some(&index)) = (before, after, idx.get(s)) {
            steps.push(Step { index, before, after });
        }
    }
    steps
}

/// Reduces `(x, y)` to at most `max_points` points: `x` is cut into `max_points` equal-width
/// buckets and each non-empty bucket gives the median `x` and median `y` of its points, in
/// increasing `x`. Pairs with a non-finite value are dropped first; if no more than `max_points`
/// remain they are returned unchanged (identity). Extra values of the longer slice are ignored.
pub fn bucket_medians(x: &[f64], y: &[f64], max_points: usize) -> (Vec<f64>, Vec<f64>) {
    let mut pts: Vec<(f64, f64)> =
        x.iter().zip(y).map(|(a, b)| (*a, *b)).filter(|(a, b)| a.is_finite() && b.is_finite()).collect();
    let buckets = max_points.max(1);
    if pts.len() <= buckets {
        return pts.into_iter().unzip();
    }
    if !pts.is_sorted_by(|a, b| a.0 <= b.0) {
        pts.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    }
    let (lo, hi) = (pts[0].0 / 2.0, pts[pts.len() - 1].0 / 2.0); // halves: no overflow at ±f64::MAX
    let width = hi - lo;
    let bucket_of = |v: f64| {
        let b = if width > 0.0 { (((v / 2.0 - lo) / width) * buckets as f64) as usize } else { 0 };
        b.min(buckets - 1)
    };
    let (mut xs, mut ys) = (Vec::with_capacity(buckets), Vec::with_capacity(buckets));
    for chunk in pts.chunk_by(|a, b| bucket_of(a.0) == bucket_of(b.0)) {
        let (bx, by): (Vec<f64>, Vec<f64>) = chunk.iter().copied().unzip();
        if let (Some(mx), Some(my)) = (unsorted_median(&bx), unsorted_median(&by)) {
            xs.push(mx);
            ys.push(my);
        }
    }
    (xs, ys)
}

/// All finite pairwise slopes of points with different `x`.
fn pairwise_slopes(x: &[f64], y: &[f64]) -> Vec<f64> {
    let n = x.len().min(y.len());
    let mut out = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            let dx = x[j] - x[i];
            if dx != 0.0 {
                let s = (y[j] - y[i]) / dx;
                if s.is_finite() {
                    out.push(s);
                }
            }
        }
    }
    out
}

/// S, tie-corrected Var(S) and the number of pairs for the finite values of `y`; `None` if < 3.
fn kendall_parts(y: &[f64]) -> Option<(i64, f64, f64)> {
    let mut v: Vec<f64> = y.iter().copied().filter(|v| v.is_finite()).collect();
    if v.len() < 3 {
        return None;
    }
    let n = v.len() as f64;
    let pairs = (v.len() as i64) * (v.len() as i64 - 1) / 2;
    let mut buf = Vec::with_capacity(v.len());
    let discordant = strict_inversions(&mut v, &mut buf) as i64; // v is now sorted
    let tied: i64 = runs(&v).map(|t| (t as i64) * (t as i64 - 1) / 2).sum();
    let s = pairs - tied - 2 * discordant;
    let var_s = (n * (n - 1.0) * (2.0 * n + 5.0) - tie_term(&v)) / 18.0;
    Some((s, var_s.max(0.0), pairs as f64))
}

/// Fills in z, p and tau from S, Var(S) and the number of pairs.
fn finish(s: i64, var_s: f64, pairs: f64) -> MannKendall {
    let sd = var_s.sqrt();
    let z = if sd > 0.0 { (s - s.signum()) as f64 / sd } else { 0.0 }; // continuity correction
    let p_value = erfc(z.abs() / std::f64::consts::SQRT_2).clamp(0.0, 1.0);
    let tau = if pairs > 0.0 { s as f64 / pairs } else { 0.0 };
    MannKendall { s, var_s, z, p_value, tau }
}

/// Sorts `v` by merge sort, counting pairs `i < j` with `v[i] > v[j]` (ties not counted).
fn strict_inversions(v: &mut [f64], buf: &mut Vec<f64>) -> u64 {
    let n = v.len();
    if n < 2 {
        return 0;
    }
    let mid = n / 2;
    let mut count = strict_inversions(&mut v[..mid], buf) + strict_inversions(&mut v[mid..], buf);
    buf.clear();
    let (mut i, mut j) = (0, mid);
    while i < mid && j < n {
        if v[j] < v[i] {
            count += (mid - i) as u64;
            buf.push(v[j]);
            j += 1;
        } else {
            buf.push(v[i]);
            i += 1;
        }
    }
    buf.extend_from_slice(&v[i..mid]);
    buf.extend_from_slice(&v[j..]);
    v.copy_from_slice(buf);
    count
}

/// Lengths of the runs of equal values in a sorted slice.
fn runs(sorted: &[f64]) -> impl Iterator<Item = usize> + '_ {
    sorted.chunk_by(|a, b| a == b).map(<[f64]>::len)
}

/// `Σ t(t−1)(2t+5)` over groups of tied values (the tie correction of Var(S)).
fn tie_term(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    runs(&v).map(|t| t as f64).map(|t| t * (t - 1.0) * (2.0 * t + 5.0)).sum()
}

/// The values of ranks `ks` (0-based, ascending) by nested selection, O(n log k); reorders `v`.
/// Empty when a rank is out of range.
fn ranks(v: &mut [f64], ks: &[usize]) -> Vec<f64> {
    let Some(&k) = ks.get(ks.len() / 2) else { return Vec::new() };
    if ks.iter().any(|r| *r >= v.len()) {
        return Vec::new();
    }
    let (left, mid, right) = v.select_nth_unstable_by(k, f64::total_cmp);
    let mid = *mid;
    let below: Vec<usize> = ks.iter().copied().filter(|r| *r < k).collect();
    let above: Vec<usize> = ks.iter().filter(|r| **r > k).map(|r| r - k - 1).collect();
    let mut out = ranks(left, &below);
    out.extend(ks.iter().filter(|r| **r == k).map(|_| mid));
    out.extend(ranks(right, &above));
    out
}

/// The median, interpolated as [`crate::measure::stats::percentile`] does, in O(n) by selection; reorders `v`.
fn select_median(v: &mut [f64]) -> Option<f64> {
    let n = v.len();
    match ranks(v, &[(n.max(1) - 1) / 2, n / 2])[..] {
        [lo, hi] => Some(lo + (hi - lo) * 0.5),
        _ => None,
    }
}

fn unsorted_median(values: &[f64]) -> Option<f64> {
    select_median(&mut values.to_vec())
}

#[cfg(test)]
#[path = "trend_tests.rs"]
mod tests;
