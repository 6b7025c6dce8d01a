//! Small statistics shared by the probe and the analysis: percentiles of sorted samples.

/// The `p`th percentile (0–100) of already sorted values, linearly interpolated between
/// closest ranks (the "R-7" definition used by numpy and spreadsheets). `None` when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

/// Several percentiles of `values` (NaNs dropped), as `percentile` defines them over the sorted
/// values: each found by selection, in linear time, not by sorting them all.
pub fn percentiles<const N: usize>(values: impl IntoIterator<Item = f64>, ps: [f64; N]) -> [Option<f64>; N] {
    let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
    ps.map(|p| percentile_in_place(&mut v, p))
}

/// `percentile` of `values` (no NaNs) as if they were sorted; reorders them.
fn percentile_in_place(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = (p / 100.0).clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    let (_, &mut low, above) = values.select_nth_unstable_by(lo, f64::total_cmp);
    // The next one up is the smallest of those above.
    let high = if hi == lo { low } else { above.iter().copied().min_by(f64::total_cmp)? };
    Some(low + (high - low) * (rank - lo as f64))
}

/// The median (the 50th percentile as `percentile` defines it) of `values`, NaNs dropped.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let [m] = percentiles(values, [50.0]);
    m
}

/// The median of `values` as `median` defines it (the same bits for finite values), in linear
/// time instead of a sort: reorders `values`; NaNs dropped.
pub fn median_in_place(values: &mut Vec<f64>) -> Option<f64> {
    values.retain(|x| !x.is_nan());
    percentile_in_place(values, 50.0)
}

/// The standard normal 97.5 % quantile: the half-width, in standard errors, of a 95 % interval.
pub const Z_975: f64 = 1.959_963_984_540_054;

pub fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.into_iter().fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| sum / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_in_place_is_the_median() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in [0usize, 1, 2, 3, 4, 7, 10, 101, 1000] {
            let mut v: Vec<f64> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 50) as f64 // ties, as memory samples have
                })
                .collect();
            v.push(f64::NAN);
            assert_eq!(median_in_place(&mut v.clone()), median(v.iter().copied()), "n {n}");
        }
    }

    #[test]
    fn percentiles_by_selection_are_those_of_the_sorted_values() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for n in [1usize, 2, 3, 5, 10, 99, 1000] {
            let v: Vec<f64> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 97) as f64 * 0.37 - 3.0
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            let ps = [0.0, 1.0, 25.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0];
            let want = ps.map(|p| percentile(&sorted, p));
            assert_eq!(
                percentiles(v.iter().copied(), ps).map(|p| p.map(f64::to_bits)),
                want.map(|p| p.map(f64::to_bits))
            );
        }
        assert_eq!(percentiles([f64::NAN], [50.0]), [None]);
    }

    #[test]
    fn matches_numpy_linear_percentiles() {
        // numpy.percentile([1, 2, 3, 4], [0, 25, 50, 95, 100]) = [1, 1.75, 2.5, 3.85, 4]
        let v = [1.0, 2.0, 3.0, 4.0];
        let got: Vec<f64> = [0.0, 25.0, 50.0, 95.0, 100.0].iter().map(|p| percentile(&v, *p).unwrap()).collect();
        let want = [1.0, 1.75, 2.5, 3.85, 4.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
    }

    #[test]
    fn percentiles_sort_and_skip_nan() {
        let [p50, p100] = percentiles([3.0, f64::NAN, 1.0, 2.0], [50.0, 100.0]);
        assert_eq!((p50, p100), (Some(2.0), Some(3.0)));
        assert_eq!(mean([1.0, 2.0, 6.0]), Some(3.0));
        assert_eq!(median([4.0, 1.0, f64::NAN, 3.0]), Some(3.0));
        assert_eq!(median([]), None);
        assert_eq!(mean([]), None);
    }
}
