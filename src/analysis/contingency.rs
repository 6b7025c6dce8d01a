//! 2×2 contingency tests used by the crash analysis: Fisher's exact test and Holm's correction.
//!
//! - `fisher_exact`: the two-sided p-value of Fisher's exact test (Fisher 1922, "On the
//!   interpretation of χ² from contingency tables"; Fisher 1935, *The Design of Experiments*,
//!   the lady tasting tea). With the margins fixed, the top-left cell follows a hypergeometric
//!   distribution; the p-value sums the probabilities of all tables no more probable than the
//!   observed one, with R's relative tolerance of 1e-7 (`fisher.test`).
//!   The probabilities are not summed over the whole support: the hypergeometric is unimodal,
//!   so the tables no more probable than the observed form two tails. Their inner ends are
//!   found by bisection on the log-probability (`statrs`'s `ln_binomial`), and each tail is
//!   summed outward with the ratio of neighbouring probabilities until the rest is negligible.
//!   Counts in the millions cost a few thousand multiplications and never overflow.
//! - `holm`: Holm–Bonferroni step-down adjusted p-values (Holm 1979, "A simple sequentially
//!   rejective multiple test procedure"), the same numbers as R's `p.adjust(p, "holm")`.

use statrs::function::factorial::ln_binomial;

/// Requests a side of a 2×2 comparison needs before it is tested.
pub const MIN_SIDE: u64 = 5;

/// Two-sided Fisher exact p for [[a, b], [c, d]] (sum of probabilities of tables no more
/// probable than the observed, with a relative tolerance of 1e-7 as R does). Empty rows or
/// columns, and tables whose total does not fit in a `u64`, give 1.
pub fn fisher_exact(a: u64, b: u64, c: u64, d: u64) -> f64 {
    // The first cell x of a table with these margins is hypergeometric: N balls, K of them
    // marked (first column), n drawn (first row).
    let Some(total) = a.checked_add(b).and_then(|s| s.checked_add(c)).and_then(|s| s.checked_add(d)) else {
        return 1.0;
    };
    let (n, k) = (a + b, a + c);
    let lo = a.saturating_sub(d); // max(0, n + K - N)
    let hi = n.min(k);
    if lo >= hi {
        return 1.0;
    }
    let ln_p = |x: u64| ln_binomial(k, x) + ln_binomial(total - k, n - x) - ln_binomial(total, n);
    let threshold = ln_p(a) + (1e-7f64).ln_1p();
    let mode = (((n as f64 + 1.0) * (k as f64 + 1.0)) / (total as f64 + 2.0)).floor() as u64;
    let mode = mode.clamp(lo, hi);
    // Left tail: the largest x <= mode with ln_p(x) <= threshold (ln_p rises up to the mode).
    let left = if ln_p(lo) > threshold {
        None
    } else {
        let (mut good, mut bad) = (lo, mode + 1); // ln_p(good) <= threshold; bad is past it
        while bad - good > 1 {
            let mid = good + (bad - good) / 2;
            if ln_p(mid) <= threshold { good = mid } else { bad = mid }
        }
        Some(good)
    };
    // Right tail: the smallest x > left-tail end with ln_p(x) <= threshold.
    let right_from = left.map_or(mode, |l| (l + 1).max(mode));
    let right = if right_from > hi || ln_p(hi) > threshold {
        None
    } else {
        let (mut bad, mut good) = (right_from, hi);
        if ln_p(bad) <= threshold {
            good = bad;
        } else {
            while good - bad > 1 {
                let mid = bad + (good - bad) / 2;
                if ln_p(mid) <= threshold { good = mid } else { bad = mid }
            }
        }
        Some(good)
    };
    let (nf, kf, tf) = (n as f64, k as f64, total as f64);
    let mut p = 0.0;
    if let Some(end) = left {
        // P(x-1)/P(x) = x (N-K-n+x) / ((K-x+1)(n-x+1))
        let ratio = |x: f64| x * (tf - kf - nf + x) / ((kf - x + 1.0) * (nf - x + 1.0));
        p += ln_p(end).exp() * tail_sum(end, lo, ratio, |x| x - 1);
    }
    if let Some(start) = right {
        // P(x+1)/P(x) = (K-x)(n-x) / ((x+1)(N-K-n+x+1))
        let ratio = |x: f64| (kf - x) * (nf - x) / ((x + 1.0) * (tf - kf - nf + x + 1.0));
        p += ln_p(start).exp() * tail_sum(start, hi, ratio, |x| x + 1);
    }
    if p.is_nan() { 1.0 } else { p.clamp(0.0, 1.0) }
}

/// Σ P(x)/P(from) for x from `from` to `to`, stepping away from the mode: the terms shrink
/// with ever smaller ratios (log-concavity), so the walk stops when the geometric bound on
/// what is left is below 1e-17 of the sum. The walk is capped at 2^24 steps, about nine
/// standard deviations of tables with 10^13 rows: beyond that the sum is a lower bound.
fn tail_sum(from: u64, to: u64, ratio: impl Fn(f64) -> f64, step: impl Fn(u64) -> u64) -> f64 {
    let (mut x, mut term, mut sum) = (from, 1.0f64, 1.0f64);
    for _ in 0..1u32 << 24 {
        if x == to {
            break;
        }
        let r = ratio(x as f64);
        term *= r;
        sum += term;
        x = step(x);
        if !(term > 0.0 && term.is_finite()) || (r < 1.0 && term * r / (1.0 - r) < sum * 1e-17) {
            break;
        }
    }
    sum
}

/// Holm–Bonferroni adjusted p-values, same order as the input, capped at 1, monotone. NaN
/// p-values stay NaN and do not count towards the number of tests, as in R.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let m = order.len();
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) {
        assert!((got - want).abs() <= rel * want.abs(), "got {got:e}, want {want:e}");
    }

    #[test]
    fn matches_r_on_small_tables() {
        // R: fisher.test(matrix(c(3,1,1,3),2))$p.value = 0.4857143 — Fisher's tea-tasting
        // table (Fisher 1935: 3 of 4 milk-first cups named correctly).
        close(fisher_exact(3, 1, 1, 3), 0.48571428571428565, 1e-12);
        close(fisher_exact(1, 3, 3, 1), 0.48571428571428565, 1e-12);
        // The references below come from scipy.stats.fisher_exact (scipy 1.17.1), which
        // applies the same rule as R.
        close(fisher_exact(1, 9, 11, 3), 0.0027594561852200836, 1e-9);
        close(fisher_exact(2, 7, 8, 2), 0.02301413756522116, 1e-9);
        close(fisher_exact(0, 5, 5, 0), 0.007936507936507938, 1e-9);
        close(fisher_exact(10, 0, 0, 10), 1.082508822446903e-05, 1e-9);
        close(fisher_exact(5, 5, 5, 5), 1.0, 1e-12);
    }

    #[test]
    fn large_counts_are_accurate_and_fast() {
        // scipy.stats.fisher_exact([[200, 800], [100, 900]]) = 4.1462306224363854e-10
        close(fisher_exact(200, 800, 100, 900), 4.1462306224363854e-10, 1e-6);
        // scipy.stats.fisher_exact([[20000, 980000], [19000, 981000]]) = 3.239514417237936e-07
        close(fisher_exact(20000, 980000, 19000, 981000), 3.239514417237936e-07, 1e-6);
        // scipy.stats.fisher_exact([[100000, 400000], [99000, 401000]]) = 0.01234215766413534
        close(fisher_exact(100000, 400000, 99000, 401000), 0.01234215766413534, 1e-6);
        let start = std::time::Instant::now();
        for i in 0..100 {
            let p = fisher_exact(2_000_000 + i, 2_000_000, 250_000, 250_000 + i * 7);
            assert!((0.0..=1.0).contains(&p));
        }
        assert!(start.elapsed().as_secs_f64() < 1.0, "{:?}", start.elapsed());
        // Far in the tail the p-value underflows to 0 rather than to NaN.
        assert_eq!(fisher_exact(4_000_000, 0, 0, 4_000_000), 0.0);
    }

    #[test]
    fn degenerate_tables_give_one() {
        assert_eq!(fisher_exact(0, 0, 0, 0), 1.0);
        assert_eq!(fisher_exact(0, 3, 0, 4), 1.0);
        assert_eq!(fisher_exact(1, 0, 0, 0), 1.0);
        assert_eq!(fisher_exact(7, 0, 9, 0), 1.0);
        assert_eq!(fisher_exact(u64::MAX, 1, 1, 1), 1.0);
        assert!((0.0..=1.0).contains(&fisher_exact(1 << 40, 1 << 41, 3, 1 << 20)));
    }

    #[test]
    fn symmetric_under_transposition_and_row_swaps() {
        for (a, b, c, d) in [(3, 7, 12, 2), (0, 20, 6, 14), (40, 60, 55, 45)] {
            let p = fisher_exact(a, b, c, d);
            close(fisher_exact(d, c, b, a), p, 1e-9);
            close(fisher_exact(a, c, b, d), p, 1e-9);
        }
    }

    #[test]
    fn holm_matches_r() {
        // R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") = 0.03 0.06 0.06 0.02
        let got = holm(&[0.01, 0.04, 0.03, 0.005]);
        for (g, w) in got.iter().zip([0.03, 0.06, 0.06, 0.02]) {
            close(*g, w, 1e-12);
        }
        assert_eq!(holm(&[0.5, 0.9]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
        let with_nan = holm(&[0.01, f64::NAN, 0.02]);
        assert!(with_nan[1].is_nan());
        assert_eq!((with_nan[0], with_nan[2]), (0.02, 0.02));
    }
}
