//! The values of one measure (TTFT, end-to-end time, tokens/s) over a report's window, held in
//! bounded memory whatever the window's length.
//!
//! Up to [`EXACT_UP_TO`] values are kept as they are and their percentiles are exact (numpy's
//! linear rule, `stats::percentile`). Past that the values go into a DDSketch (Masson, Rim & Lee
//! 2019, "DDSketch: a fast and fully-mergeable quantile sketch with relative-error guarantees",
//! PVLDB 12; the `sketches-ddsketch` crate, the Rust port Vector and metrics-rs use): log-spaced
//! bins whose every quantile is within [`SKETCH_RELATIVE_ERROR`] (1 %) of the value at that rank,
//! in a few kilobytes — a 90-day window of 1.5 M requests held 8 B a value before. A uniform
//! sample of [`SAMPLE_SIZE`] values (Vitter 1985, "Random sampling with a reservoir", algorithm R,
//! seeded) stays for what needs values, the overhead comparison's bootstrap. The count, the sum
//! (so the mean), the minimum and the maximum stay exact. Hours sketched ahead of time
//! (`store::latency_hours`) merge in as they are: the same bins, so the same percentiles.

use sketches_ddsketch::{Config, DDSketch};

use super::stats::percentile;

/// Values kept exactly before the sketch takes over.
pub const EXACT_UP_TO: usize = 65_536;
/// The sketch's relative error: a quantile it gives is within this fraction of a true value at
/// that rank.
pub const SKETCH_RELATIVE_ERROR: f64 = 0.01;
/// Values kept for resampling once the sketch has taken over.
pub const SAMPLE_SIZE: usize = 5_000;

/// One measure's values: exact while few, a sketch and a uniform sample when many.
#[derive(Clone, Default)]
pub struct Distribution {
    /// Every value while exact (sorted once `finish` has run); the uniform sample after.
    values: Vec<f64>,
    sketch: Option<DDSketch>,
    count: u64,
    sum: f64,
    sorted: bool,
    rng: u64,
    /// Whether sketches kept elsewhere were merged in: then the sample is drawn from the sketch
    /// (`finish`), not kept as values arrive.
    merged: bool,
}

impl Distribution {
    /// Adds a value; NaN is left out (the log holds none, but nothing sent may break the order).
    pub fn push(&mut self, x: f64) {
        if x.is_nan() {
            return;
        }
        self.count += 1;
        self.sum += x;
        self.sorted = false;
        match &mut self.sketch {
            None if self.values.len() < EXACT_UP_TO => self.values.push(x),
            None => {
                let mut sketch = DDSketch::new(config());
                self.values.iter().for_each(|v| sketch.add(*v));
                sketch.add(x);
                self.sketch = Some(sketch);
                // The sample so far: SAMPLE_SIZE of the exact values, drawn without replacement
                // (a partial Fisher–Yates shuffle), as algorithm R would have left it.
                for i in 0..SAMPLE_SIZE {
                    let j = i + self.below(self.values.len() - i);
                    self.values.swap(i, j);
                }
                self.values.truncate(SAMPLE_SIZE);
                self.values.shrink_to_fit();
                self.resample(x);
            }
            Some(sketch) => {
                sketch.add(x);
                if !self.merged {
                    self.resample(x);
                }
            }
        }
    }

    /// Adds the values a sketch kept elsewhere holds (`store::latency_hours`). From then on the
    /// percentiles are the sketch's, and the sample is `SAMPLE_SIZE` of its quantiles at evenly
    /// spaced ranks, drawn at `finish` (a stratified sample, within the sketch's error of the
    /// values at those ranks). A sketch with other bins is refused.
    pub fn merge_sketch(&mut self, other: &DDSketch) -> Result<(), sketches_ddsketch::DDSketchError> {
        if other.count() == 0 {
            return Ok(());
        }
        let exact = self.sketch.is_none();
        let mut sketch = self.sketch.take().unwrap_or_else(|| {
            let mut sketch = new_sketch();
            self.values.iter().for_each(|v| sketch.add(*v));
            sketch
        });
        let refused = sketch.merge(other);
        // Refused: nothing changes (an exact distribution stays exact).
        if !exact || refused.is_ok() {
            self.sketch = Some(sketch);
        }
        refused?;
        if !self.merged {
            self.merged = true;
            self.values = Vec::new();
        }
        self.count += other.count() as u64;
        self.sum += other.sum().unwrap_or(0.0);
        self.sorted = false;
        Ok(())
    }

    /// Adds the value when there is one.
    pub fn extend(&mut self, x: Option<f64>) {
        if let Some(x) = x {
            self.push(x);
        }
    }

    /// Sorts the kept values once, after the last `push`: percentiles read them sorted.
    pub fn finish(&mut self) {
        if self.merged
            && let Some(sketch) = &self.sketch
        {
            let n = (self.count as usize).min(SAMPLE_SIZE);
            self.values = (0..n).filter_map(|i| sketch.quantile((i as f64 + 0.5) / n as f64).ok().flatten()).collect();
        }
        self.values.sort_unstable_by(f64::total_cmp);
        self.sorted = true;
    }

    /// Values added.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The `p`th percentile (0–100): exact while exact, else the sketch's, within
    /// `relative_error()`. Call `finish` first.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        debug_assert!(self.sorted || self.count == 0, "Distribution::finish before percentiles");
        match &self.sketch {
            None => percentile(&self.values, p),
            Some(s) => s.quantile((p / 100.0).clamp(0.0, 1.0)).ok().flatten(),
        }
    }

    /// 0 while the percentiles are exact, else the sketch's relative error.
    pub fn relative_error(&self) -> f64 {
        if self.sketch.is_some() { SKETCH_RELATIVE_ERROR } else { 0.0 }
    }

    /// Values to resample from, sorted (after `finish`): all of them while exact, else a uniform
    /// sample of `SAMPLE_SIZE`.
    pub fn sample(&self) -> &[f64] {
        &self.values
    }

    /// Algorithm R's step for the value numbered `count` (from 1).
    fn resample(&mut self, x: f64) {
        let j = self.below(self.count as usize);
        if j < SAMPLE_SIZE {
            self.values[j] = x;
        }
    }

    /// Uniform in 0..n (n > 0): splitmix64, seeded the same for every distribution, so a log
    /// always gives the same sample.
    fn below(&mut self, n: usize) -> usize {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (self.rng ^ (self.rng >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((u128::from(z ^ (z >> 31)) * n as u128) >> 64) as usize
    }
}

impl std::fmt::Debug for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distribution")
            .field("count", &self.count)
            .field("mean", &self.mean())
            .field("relative_error", &self.relative_error())
            .finish_non_exhaustive()
    }
}

/// An empty sketch with the bins every `Distribution` uses (`store::latency_hours` keeps hours of
/// them, so merged hours give the very sketch the rows would have built).
pub fn new_sketch() -> DDSketch {
    DDSketch::new(config())
}

fn config() -> Config {
    // Latencies from microseconds to hours fit in ~1,300 of the 2,048 bins (γ = 1.0202).
    Config::new(SKETCH_RELATIVE_ERROR, 2_048, 1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Right-skewed positive values like TTFTs, reproducible.
    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut d = Distribution { rng: seed, ..Default::default() };
        (0..n).map(|_| 40.0 * (1.0 + 9.0 * d.below(1 << 20) as f64 / f64::from(1 << 20)).powi(2)).collect()
    }

    #[test]
    fn few_values_are_exact() {
        let mut d = Distribution::default();
        [3.0, 1.0, f64::NAN, 2.0, 10.0].into_iter().for_each(|x| d.push(x));
        d.finish();
        assert_eq!((d.len(), d.relative_error()), (4, 0.0));
        assert_eq!(d.percentile(50.0), Some(2.5));
        assert_eq!(d.mean(), Some(4.0));
        assert_eq!(d.sample(), &[1.0, 2.0, 3.0, 10.0]);
    }

    #[test]
    fn many_values_are_within_the_stated_error_of_the_exact_percentiles() {
        for (n, seed) in [(EXACT_UP_TO + 1, 1), (200_000, 2), (1_000_000, 3)] {
            let all = values(n, seed);
            let mut d = Distribution::default();
            all.iter().for_each(|x| d.push(*x));
            d.finish();
            let mut sorted = all.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            assert_eq!(d.len(), n as u64);
            assert_eq!(d.relative_error(), SKETCH_RELATIVE_ERROR);
            for p in [1.0, 10.0, 50.0, 90.0, 95.0, 99.0, 99.9] {
                let (exact, sketched) = (percentile(&sorted, p).unwrap(), d.percentile(p).unwrap());
                // A value at the sketch's rank, within 1 %; at these sizes neighbouring ranks
                // differ by far less than that.
                assert!(
                    (sketched - exact).abs() <= exact * (SKETCH_RELATIVE_ERROR + 1e-3),
                    "n {n} p{p}: {sketched} vs {exact}"
                );
            }
            let mean = all.iter().sum::<f64>() / n as f64;
            assert!((d.mean().unwrap() - mean).abs() < 1e-9 * mean);
            assert_eq!(d.sample().len(), SAMPLE_SIZE);
            assert!(d.sample().is_sorted_by(|a, b| a <= b));
        }
    }

    #[test]
    fn the_sample_is_uniform_over_the_whole_stream() {
        // Values are their own position: a uniform sample's mean is the middle, and as many
        // come from the last half as from the first (the exact part is only the first 6.5 %).
        let n = 1_000_000usize;
        let mut d = Distribution::default();
        (0..n).for_each(|i| d.push(i as f64));
        d.finish();
        let sample = d.sample();
        let mean = sample.iter().sum::<f64>() / sample.len() as f64;
        assert!((mean / n as f64 - 0.5).abs() < 0.02, "sample mean at {:.3} of the stream", mean / n as f64);
        let late = sample.iter().filter(|x| **x >= n as f64 / 2.0).count();
        assert!((2_300..=2_700).contains(&late), "{late} of {SAMPLE_SIZE} from the second half");
        // And it is the same sample every time.
        let mut again = Distribution::default();
        (0..n).for_each(|i| again.push(i as f64));
        again.finish();
        assert_eq!(again.sample(), sample);
    }

    #[test]
    fn sketches_merged_in_give_the_same_percentiles_and_a_sample_from_their_ranks() {
        let all = values(200_000, 4);
        let mut pushed = Distribution::default();
        all.iter().for_each(|x| pushed.push(*x));
        pushed.finish();
        // Some values pushed (exact so far), the rest in four sketches kept elsewhere.
        let mut merged = Distribution::default();
        all[..1_000].iter().for_each(|x| merged.push(*x));
        for part in all[1_000..].chunks(50_000) {
            let mut sketch = new_sketch();
            part.iter().for_each(|x| sketch.add(*x));
            merged.merge_sketch(&sketch).unwrap();
        }
        merged.push(all[0]);
        merged.finish();
        assert_eq!(merged.len(), pushed.len() + 1);
        assert_eq!(merged.relative_error(), SKETCH_RELATIVE_ERROR);
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        assert!((merged.mean().unwrap() - (mean * 200_000.0 + all[0]) / 200_001.0).abs() < 1e-9 * mean);
        let mut once_more = pushed.clone();
        once_more.push(all[0]);
        once_more.finish();
        for p in [1.0, 10.0, 50.0, 90.0, 99.0] {
            assert_eq!(merged.percentile(p), once_more.percentile(p), "p{p}");
        }
        // The sample: SAMPLE_SIZE values at evenly spaced ranks, so its own percentiles are the
        // distribution's, within the sketch's error (and the spacing of its ranks).
        let sample = merged.sample();
        assert_eq!(sample.len(), SAMPLE_SIZE);
        assert!(sample.is_sorted_by(|a, b| a <= b));
        let mut sorted = all.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        for p in [5.0, 25.0, 50.0, 75.0, 95.0] {
            let (exact, from_sample) = (percentile(&sorted, p).unwrap(), percentile(sample, p).unwrap());
            assert!((from_sample - exact).abs() <= exact * 0.015, "p{p}: {from_sample} vs {exact}");
        }
        // Another sketch's bins are refused, and change nothing.
        let mut other = DDSketch::new(Config::new(0.05, 2_048, 1e-9));
        other.add(1.0);
        assert!(merged.merge_sketch(&other).is_err());
        assert_eq!(merged.len(), pushed.len() + 1);
        let mut exact = Distribution::default();
        [1.0, 2.0, 4.0].into_iter().for_each(|x| exact.push(x));
        assert!(exact.merge_sketch(&other).is_err());
        exact.push(3.0);
        exact.finish();
        assert_eq!((exact.relative_error(), exact.percentile(50.0), exact.len()), (0.0, Some(2.5), 4));
    }
}
