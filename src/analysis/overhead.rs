//! API overhead: the same model behind two backends (e.g. the direct mlx-lm worker and
//! mlx_lm.server), compared as the ratio of their medians (TTFT, tokens/s) with a 95%
//! percentile-bootstrap confidence interval (Efron 1979, "Bootstrap methods: another look at the
//! jackknife"; Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 13).
//!
//! Each of 2000 resamples draws both sides with replacement and takes the ratio of their
//! medians; the 2.5th and 97.5th percentiles of those ratios bound the interval. The randomness
//! is a seeded splitmix64 generator (Steele, Lea & Flood 2014), so a seed always gives the same
//! interval. A resample's median is read from counts of the drawn ranks over the sorted sample,
//! so no resample is sorted. A side with more than 5000 values is first subsampled, without
//! replacement, to 5000 for the bootstrap (the estimate still uses every value): the interval is
//! then that of a 5000-value sample, wider than the full data's, never narrower. A window's values
//! held as a `Distribution` give their median and their sample (`median_ratio_of`).

use serde::Serialize;

use crate::measure::distribution::Distribution;
use crate::measure::stats::percentile;

/// A ratio of medians a/b with its 95% bootstrap confidence interval.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Ratio {
    /// median(a) / median(b) over every finite value.
    pub estimate: f64,
    /// Lower end of the 95% interval (2.5th percentile of the bootstrap ratios).
    pub low: f64,
    /// Upper end of the 95% interval (97.5th percentile).
    pub high: f64,
    /// Finite values of a.
    pub n_a: usize,
    /// Finite values of b.
    pub n_b: usize,
}

const RESAMPLES: usize = 2000;
const MIN_VALUES: usize = 5;
const MAX_BOOTSTRAP: usize = 5000;

/// Ratio of medians a/b with a 95% percentile-bootstrap CI (2000 resamples, seeded); None if
/// either side has < 5 finite values (NaN and infinities are dropped) or b's median is 0.
pub fn median_ratio(a: &[f64], b: &[f64], seed: u64) -> Option<Ratio> {
    let held = |v: &[f64]| {
        let mut d = Distribution::default();
        v.iter().filter(|x| x.is_finite()).for_each(|x| d.push(*x));
        d.finish();
        d
    };
    median_ratio_of(&held(a), &held(b), seed)
}

/// The same for two windows' values held as `Distribution`s (what the report holds): the
/// estimate from their medians (exact, or within the sketch's error), the bootstrap from their
/// samples.
pub fn median_ratio_of(a: &Distribution, b: &Distribution, seed: u64) -> Option<Ratio> {
    let finite = |d: &Distribution| {
        let v: Vec<f64> = d.sample().iter().copied().filter(|x| x.is_finite()).collect();
        Some(v).filter(|v| v.len() >= MIN_VALUES)
    };
    let (sa, sb) = (finite(a)?, finite(b)?);
    ratio((a.percentile(50.0)?, b.percentile(50.0)?), (&sa, &sb), (a.len() as usize, b.len() as usize), seed)
}

/// The ratio of `medians`, and its interval from resampling the sorted `samples`.
fn ratio(medians: (f64, f64), samples: (&[f64], &[f64]), n: (usize, usize), seed: u64) -> Option<Ratio> {
    let estimate = Some(medians.0 / medians.1).filter(|r| r.is_finite())?;
    let mut rng = SplitMix64(seed);
    let (boot_a, boot_b) = (subsample(samples.0, &mut rng), subsample(samples.1, &mut rng));
    let mut counts = vec![0u32; boot_a.len().max(boot_b.len())];
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| resampled_median(&boot_a, &mut rng, &mut counts) / resampled_median(&boot_b, &mut rng, &mut counts))
        .filter(|r| r.is_finite())
        .collect();
    ratios.sort_unstable_by(f64::total_cmp);
    let (low, high) = (percentile(&ratios, 2.5)?, percentile(&ratios, 97.5)?);
    Some(Ratio { estimate, low, high, n_a: n.0, n_b: n.1 })
}

/// splitmix64: a tiny, well-mixed, seedable generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0), by Lemire's multiply-shift.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

/// At most `MAX_BOOTSTRAP` of the sorted values, drawn without replacement, sorted again.
fn subsample(sorted: &[f64], rng: &mut SplitMix64) -> Vec<f64> {
    let mut v = sorted.to_vec();
    if v.len() > MAX_BOOTSTRAP {
        for i in 0..MAX_BOOTSTRAP {
            let j = i + rng.below(v.len() - i);
            v.swap(i, j);
        }
        v.truncate(MAX_BOOTSTRAP);
        v.sort_unstable_by(f64::total_cmp);
    }
    v
}

/// The median (as `stats::percentile(_, 50)` defines it) of a resample with replacement of
/// `sorted`: draw n ranks, count them, and walk the counts to the middle rank(s).
fn resampled_median(sorted: &[f64], rng: &mut SplitMix64, counts: &mut [u32]) -> f64 {
    let n = sorted.len();
    let Some(counts) = counts.get_mut(..n).filter(|_| n > 0) else { return f64::NAN };
    counts.fill(0);
    for _ in 0..n {
        counts[rng.below(n)] += 1;
    }
    let (lo, hi) = ((n - 1) / 2, n / 2);
    let (mut seen, mut at_lo) = (0, f64::NAN);
    for (&value, &c) in sorted.iter().zip(counts.iter()) {
        seen += c as usize;
        if seen > lo && at_lo.is_nan() {
            at_lo = value;
        }
        if seen > hi {
            return (at_lo + value) / 2.0;
        }
    }
    f64::NAN
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Positive, right-skewed samples (scale × e^(2u), u uniform), like TTFTs; reproducible.
    fn sample(n: usize, seed: u64, scale: f64) -> Vec<f64> {
        let mut rng = SplitMix64(seed);
        (0..n).map(|_| scale * (2.0 * (rng.next() >> 11) as f64 / (1u64 << 53) as f64).exp()).collect()
    }

    #[test]
    fn same_distribution_contains_one() {
        let r = median_ratio(&sample(300, 1, 1.0), &sample(300, 2, 1.0), 3).expect("enough data");
        assert!(r.low < r.estimate && r.estimate < r.high && r.low < 1.0 && 1.0 < r.high, "{r:?}");
        assert_eq!((r.n_a, r.n_b), (300, 300));
        // Coverage: a 95% interval should miss the true ratio about once in 20 pairs.
        let trials = 200;
        let covered = (0..trials)
            .filter_map(|s| median_ratio(&sample(100, s, 1.0), &sample(80, s + 1000, 1.0), s))
            .filter(|r| r.low <= 1.0 && 1.0 <= r.high)
            .count();
        eprintln!("bootstrap coverage: {covered} of {trials}");
        assert!(covered >= trials as usize * 88 / 100, "{covered} of {trials}");
    }

    #[test]
    fn doubled_b_halves_the_ratio() {
        let a = sample(200, 7, 0.5);
        let b: Vec<f64> = a.iter().map(|x| 2.0 * x).collect();
        let r = median_ratio(&a, &b, 1).expect("enough data");
        assert!((r.estimate - 0.5).abs() < 1e-12, "{r:?}");
        assert!(r.high < 1.0 && r.low < 0.5 && 0.5 < r.high, "{r:?}");
        // Independent samples, one twice as slow.
        let r = median_ratio(&sample(200, 8, 1.0), &sample(200, 9, 2.0), 1).expect("enough data");
        assert!(r.high < 1.0 && (0.35..0.7).contains(&r.estimate), "{r:?}");
    }

    #[test]
    fn deterministic_for_a_seed() {
        let (a, b) = (sample(100, 1, 1.0), sample(120, 2, 1.3));
        assert_eq!(median_ratio(&a, &b, 42), median_ratio(&a, &b, 42));
        assert_ne!(median_ratio(&a, &b, 42), median_ratio(&a, &b, 43));
        // Constant samples: no spread, the interval is the point.
        let r = median_ratio(&[3.0; 9], &[1.5; 6], 0).expect("enough data");
        assert_eq!((r.estimate, r.low, r.high), (2.0, 2.0, 2.0));
    }

    #[test]
    fn too_few_values_or_zero_median_give_none() {
        let five = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!(median_ratio(&five, &five, 0).is_some());
        assert_eq!(median_ratio(&five[..4], &five, 0), None);
        assert_eq!(median_ratio(&five, &[], 0), None);
        assert_eq!(median_ratio(&[1.0, 2.0, 3.0, 4.0, f64::NAN, f64::INFINITY], &five, 0), None);
        assert_eq!(median_ratio(&five, &[0.0; 7], 0), None);
        let r = median_ratio(&five, &[0.0, 0.0, 1.0, 1.0, 1.0, 1.0], 0).expect("median of b is 1");
        assert!(r.low.is_finite() && r.high.is_finite());
        assert!(serde_json::to_string(&r).is_ok());
    }

    #[test]
    fn resampled_median_matches_sorting_the_resample() {
        let mut counts = vec![0; 64];
        for n in 1..=64 {
            let sorted: Vec<f64> = (0..n).map(|i| (i * i) as f64).collect();
            let (mut fast, mut slow) = (SplitMix64(n as u64), SplitMix64(n as u64));
            let mut resample: Vec<f64> = (0..n).map(|_| sorted[slow.below(n)]).collect();
            resample.sort_unstable_by(f64::total_cmp);
            assert_eq!(resampled_median(&sorted, &mut fast, &mut counts), percentile(&resample, 50.0).unwrap());
        }
        assert!(resampled_median(&[], &mut SplitMix64(0), &mut counts).is_nan());
    }

    #[test]
    fn hundred_thousand_values_a_side_in_under_five_seconds() {
        let (a, b) = (sample(100_000, 11, 1.0), sample(100_000, 12, 1.1));
        let start = std::time::Instant::now();
        let r = median_ratio(&a, &b, 5).expect("enough data");
        eprintln!("100,000 values a side: {:?}, {r:?}", start.elapsed());
        assert!(start.elapsed().as_secs_f64() < 5.0 && (r.n_a, r.n_b) == (100_000, 100_000));
        assert!(r.low < r.estimate && r.estimate < r.high && r.high < 1.0, "{r:?}");
    }
}
