//! The trend tests against reference values (pymannkendall, scipy) and hand examples: Mann–Kendall
//! with ties and Hamed–Rao's correction, seasonal Kendall and Sen slopes, Theil–Sen, CUSUM steps,
//! bucket medians, and a million points.

use super::*;
use crate::analysis::test_rng::Rng;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

fn all_close(got: [f64; 4], want: [f64; 4]) -> bool {
    got.iter().zip(want).all(|(g, w)| close(*g, w, 1e-9))
}

/// S exactly; Var(S), z, tau to 1e-12; p to 1e-6 (a different normal CDF).
fn assert_mk(r: MannKendall, s: i64, [var_s, z, p, tau]: [f64; 4]) {
    assert_eq!(r.s, s, "{r:?}");
    assert!(close(r.var_s, var_s, 1e-12) && close(r.z, z, 1e-12) && close(r.tau, tau, 1e-12), "{r:?}");
    assert!(close(r.p_value, p, 1e-6), "{r:?}");
}

#[test]
fn mann_kendall_matches_pymannkendall_with_ties() {
    // pymannkendall 1.4.3 `original_test(y)` gives (s, [var_s, z, p, Tau]) for these y:
    let r = mann_kendall(&[5.0, 3.0, 4.0, 4.0, 6.0, 7.0, 6.0, 8.0, 9.0, 7.0, 10.0, 10.0]).unwrap();
    assert_mk(r, 50, [208.66666666666666, 3.392106981856237, 0.0006935735399071774, 0.7575757575757576]);
    let r = mann_kendall(&[10.0, 9.0, 11.0, 9.0, 8.0, 8.0, 7.0, 9.0, 6.0, 5.0]).unwrap();
    assert_mk(r, -31, [120.33333333333333, -2.734817064582438, 0.006241495264271313, -0.6888888888888889]);
}

#[test]
fn mann_kendall_by_hand_and_degenerate_input() {
    // By hand: [1, 2, 3] has S = 3, Var(S) = 3·2·11/18, z = 2/√Var(S), p = erfc(z/√2).
    let r = mann_kendall(&[1.0, f64::NAN, 2.0, 3.0]).unwrap();
    let z = 2.0 / (66.0f64 / 18.0).sqrt();
    assert_mk(r, 3, [66.0 / 18.0, z, erfc(z / std::f64::consts::SQRT_2), 1.0]);
    let flat = mann_kendall(&[7.0; 50]).unwrap();
    assert_eq!((flat.s, flat.var_s, flat.z, flat.p_value), (0, 0.0, 0.0, 1.0));
    assert!(mann_kendall(&[1.0, 2.0]).is_none());
    assert!(mann_kendall(&[]).is_none());
    assert!(mann_kendall(&[f64::NAN; 10]).is_none());
    let huge = mann_kendall(&[f64::MAX, -f64::MAX, f64::MAX, f64::INFINITY, 0.0]).unwrap();
    assert!(huge.p_value.is_finite() && huge.z.is_finite());
}

#[test]
fn hamed_rao_matches_pymannkendall() {
    // pymannkendall 1.4.3 `hamed_rao_modification_test(y)` on y₀ = 0,
    // yᵢ = 0.8·yᵢ₋₁ + ((7919·i mod 13) − 6)/3 + 0.05·i (60 values): s = 1454,
    // var_s = 27001.857236844207 (original_test: 24583.333333333332), z = 8.842372287700018.
    let mut y = vec![0.0f64];
    for i in 1..60i64 {
        let prev = y[y.len() - 1];
        y.push(0.8 * prev + ((i * 7919) % 13 - 6) as f64 / 3.0 + 0.05 * i as f64);
    }
    assert!(close(hamed_rao_factor(&y), 27001.857236844207 / 24583.333333333332, 1e-9));
    let r = mann_kendall_modified(&y).unwrap();
    assert_eq!(r.s, 1454);
    assert!(close(r.var_s, 27001.857236844207, 1e-9) && close(r.z, 8.842372287700018, 1e-9), "{r:?}");
    // Independent noise is left alone; a strongly autocorrelated walk is inflated a lot.
    let mut rng = Rng(5);
    let white: Vec<f64> = (0..300).map(|_| rng.normal()).collect();
    assert!(hamed_rao_factor(&white) < 1.5);
    let mut walk = vec![0.0f64];
    for _ in 0..300 {
        let last = walk[walk.len() - 1];
        walk.push(0.97 * last + rng.normal());
    }
    assert!(hamed_rao_factor(&walk) > 5.0, "{}", hamed_rao_factor(&walk));
    assert_eq!(hamed_rao_factor(&[1.0, 2.0, 3.0]), 1.0);
    assert_eq!(hamed_rao_factor(&[4.0; 20]), 1.0);
    let wide = theil_sen_scaled(&walk.iter().enumerate().map(|(i, _)| i as f64).collect::<Vec<_>>(), &walk, 9.0);
    let narrow = theil_sen(&walk.iter().enumerate().map(|(i, _)| i as f64).collect::<Vec<_>>(), &walk);
    let (w, n) = (wide.unwrap(), narrow.unwrap());
    assert!(w.slope == n.slope && w.slope_high - w.slope_low > 2.5 * (n.slope_high - n.slope_low), "{w:?} {n:?}");
}

#[test]
fn merge_sort_s_equals_the_quadratic_definition() {
    let mut rng = Rng(7);
    let y: Vec<f64> = (0..500).map(|i| (rng.normal() * 3.0).round() + i as f64 * 0.01).collect();
    let sign = |a: f64, b: f64| i64::from(b > a) - i64::from(b < a);
    let s: i64 = (0..y.len()).map(|i| y[i + 1..].iter().map(|b| sign(y[i], *b)).sum::<i64>()).sum();
    assert_eq!(mann_kendall(&y).unwrap().s, s);
}

#[test]
fn seasonal_kendall_and_slope_match_pymannkendall() {
    // pymannkendall 1.4.3 `seasonal_test(g, period=2)`, g interleaving the groups a and b below
    // ([1, 7, 2, 7, 2, 8, 3, 9, 5, 8, 4, 10, 6, 11]); its seasonal Sen slope is 0.6666… per step.
    let a = vec![1.0, 2.0, 2.0, 3.0, 5.0, 4.0, 6.0];
    let b = vec![7.0, 7.0, 8.0, 9.0, 8.0, 10.0, 11.0];
    let r = seasonal_kendall(&[a.clone(), b.clone(), vec![100.0, 0.0]]).unwrap();
    assert_mk(r, 35, [85.66666666666667, 3.6734402709346603, 0.0002393066346688677, 0.8333333333333334]);
    let t: Vec<f64> = (0..7).map(f64::from).collect();
    let slope = seasonal_sen_slope(&[(t.clone(), a), (t, b)]).unwrap();
    assert!(close(slope, 2.0 / 3.0, 1e-12));
    // One group: the interval is Sen's (scipy's theilslopes gives the same ranks).
    let x: Vec<f64> = (1..=10).map(f64::from).collect();
    let y = vec![2.1, 2.9, 4.2, 4.8, 6.3, 6.9, 7.7, 9.4, 9.8, 11.2];
    let one = seasonal_sen_interval(&[(x.clone(), y.clone())], &[1.0]).unwrap();
    let ts = theil_sen(&x, &y).unwrap();
    assert_eq!((one.slope, one.slope_low, one.slope_high), (ts.slope, ts.slope_low, ts.slope_high));
    let inflated = seasonal_sen_interval(&[(x.clone(), y.clone())], &[4.0]).unwrap();
    assert!(inflated.slope_low <= ts.slope_low && inflated.slope_high >= ts.slope_high);
    assert!(seasonal_sen_interval(&[(vec![1.0, 1.0], vec![2.0, 3.0])], &[]).is_none());
    assert!(seasonal_kendall(&[vec![1.0, 2.0], vec![]]).is_none());
    assert!(seasonal_sen_slope(&[(vec![1.0, 1.0], vec![1.0, 5.0])]).is_none());
}

#[test]
fn theil_sen_matches_scipy_and_hand_example() {
    // By hand: points on y = 2x + 1 with one outlier; the median slope ignores it.
    let r = theil_sen(&[0.0, 1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 5.0, 70.0, 9.0]).unwrap();
    assert_eq!((r.slope, r.intercept), (2.0, 1.0));
    // scipy 1.17.1 `theilslopes(y, x)` for x = 1..10 and the y below:
    // (slope, intercept, low, high) = (1.0, 1.0999999999999996, 0.9333333333333332, 1.0500000000000003).
    let x: Vec<f64> = (1..=10).map(f64::from).collect();
    let y = [2.1, 2.9, 4.2, 4.8, 6.3, 6.9, 7.7, 9.4, 9.8, 11.2];
    let r = theil_sen(&x, &y).unwrap();
    assert!(all_close([r.slope, r.intercept, r.slope_low, r.slope_high], [1.0, 1.1, 0.933_333_333_333_333_2, 1.05]));
    // scipy 1.17.1, ties in x (pairs skipped) and in the variance: x = [1,2,2,4,5,7,7,8,11,12],
    // y = [3,4.5,4,7.5,6,9,11,10,15.5,15] → (1.125, 1.5, 0.9166666666666666, 1.3333333333333333).
    let x = [1.0, 2.0, 2.0, 4.0, 5.0, 7.0, 7.0, 8.0, 11.0, 12.0];
    let y = [3.0, 4.5, 4.0, 7.5, 6.0, 9.0, 11.0, 10.0, 15.5, 15.0];
    let r = theil_sen(&x, &y).unwrap();
    let want = [1.125, 1.5, 0.916_666_666_666_666_6, 1.333_333_333_333_333_3];
    assert!(all_close([r.slope, r.intercept, r.slope_low, r.slope_high], want), "{r:?}");
    assert!(theil_sen(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_none());
    assert!(theil_sen(&[1.0], &[1.0]).is_none());
    assert!(theil_sen(&[0.0, 1.0, f64::NAN], &[f64::INFINITY, 1.0, 2.0]).is_none());
    assert!(theil_sen(&[0.0, 1e-300, 2.0], &[-f64::MAX, f64::MAX, 0.0]).is_some());
}

#[test]
fn cusum_finds_a_level_shift_at_its_index() {
    let mut rng = Rng(42);
    let y: Vec<f64> = (0..200).map(|i| if i < 120 { 100.0 } else { 110.0 } + rng.normal()).collect();
    let steps = cusum_steps(&y, 5.0);
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0].index, 120);
    assert!(close(steps[0].after - steps[0].before, 10.0, 0.3), "{steps:?}");
}

#[test]
fn cusum_is_quiet_on_noise_and_trends() {
    for seed in 1..=20 {
        let mut rng = Rng(seed);
        let noise: Vec<f64> = (0..2000).map(|_| rng.normal()).collect();
        assert!(cusum_steps(&noise, 5.0).is_empty(), "seed {seed}");
        let trend: Vec<f64> = (0..2000).map(|i| i as f64 * 0.05 + rng.normal()).collect();
        assert!(cusum_steps(&trend, 5.0).is_empty(), "seed {seed}");
    }
    assert!(cusum_steps(&[3.0; 100], 5.0).is_empty());
    assert!(cusum_steps(&[1.0, 2.0], 5.0).is_empty());
    assert!(cusum_steps(&[1.0, 2.0, 50.0, 4.0], f64::NAN).is_empty());
    assert!(cusum_steps(&[f64::MAX, -f64::MAX, f64::MAX, 0.0, f64::NAN], 5.0).len() <= 4);
}

#[test]
fn cusum_finds_both_drops_of_a_sawtooth() {
    let mut rng = Rng(3);
    let y: Vec<f64> = (0..90).map(|i| (i % 30) as f64 * 50.0 / 30.0 + rng.normal()).collect();
    let steps = cusum_steps(&y, 5.0);
    assert_eq!(steps.iter().map(|s| s.index).collect::<Vec<_>>(), [30, 60]);
    assert!(steps.iter().all(|s| s.after - s.before < -30.0), "{steps:?}");
    // Without noise the MAD is 0 and the mean absolute deviation sets the scale.
    let clean: Vec<f64> = (0..90).map(|i| (i % 30) as f64).collect();
    assert_eq!(cusum_steps(&clean, 5.0).iter().map(|s| s.index).collect::<Vec<_>>(), [30, 60]);
}

#[test]
fn bucket_medians_reduces_and_keeps_small_input() {
    assert_eq!(bucket_medians(&[3.0, 1.0], &[1.0, 2.0], 5), (vec![3.0, 1.0], vec![1.0, 2.0]));
    let x: Vec<f64> = (0..100).map(f64::from).collect();
    let (bx, by) = bucket_medians(&x, &x, 10);
    assert_eq!(bx.len(), 10);
    assert_eq!((bx[0], by[9]), (4.5, 94.5));
    assert_eq!(bucket_medians(&[1.0; 50], &x, 4), (vec![1.0], vec![24.5]));
    assert_eq!(bucket_medians(&[f64::NAN, 1.0], &[1.0, 2.0], 0), (vec![1.0], vec![2.0]));
    let (bx, _) = bucket_medians(&[-f64::MAX, 0.0, f64::MAX], &[1.0, 2.0, 3.0], 2);
    assert_eq!(bx.len(), 2);
}

#[test]
fn a_million_points_take_under_five_seconds_even_unoptimised() {
    let mut rng = Rng(11);
    let x: Vec<f64> = (0..1_000_000).map(f64::from).collect();
    let y: Vec<f64> = x.iter().map(|t| t * 1e-4 + rng.normal()).collect();
    let started = std::time::Instant::now();
    let ts = theil_sen(&x, &y).unwrap();
    let mk = mann_kendall(&y).unwrap();
    let steps = cusum_steps(&y, 5.0);
    let elapsed = started.elapsed();
    println!("theil_sen + mann_kendall + cusum_steps on 1,000,000 points: {elapsed:?}");
    assert!(close(ts.slope, 1e-4, 0.05) && mk.p_value < 1e-6 && steps.is_empty(), "{ts:?} {mk:?}");
    assert!(elapsed.as_secs_f64() < 5.0, "{elapsed:?}");
}
