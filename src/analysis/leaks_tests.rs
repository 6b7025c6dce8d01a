//! The leak verdicts on shaped series, each drawn from a seeded generator or a fixture: steady
//! and per-request growth, restarts, plateaus, caches that fill and flush, sawtooths, steps, lumpy
//! noise, lives cut short while loading, too little data, odd input, and a million samples.

use super::*;
use crate::analysis::test_rng::Rng;

const MIN: i64 = 60_000;
const T0: i64 = 1_750_000_000_000;

/// One sample a minute for `minutes`, MB from `mb(minute)` plus noise of sd `sd` MB (≈ ±2 MB at sd 1),
/// 20 requests served per minute.
fn life(start_ms: i64, minutes: i64, sd: f64, rng: &mut Rng, mb: impl Fn(f64) -> f64) -> Lifetime {
    let pt = |m: i64, bytes| MemPoint { at_ms: start_ms + m * MIN, bytes, requests: Some(m as u64 * 20), tokens: None };
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
    assert_eq!((serde_json::to_value(&r).unwrap()["verdict"].as_str(), Verdict::Leak.as_str()), (Some("leak"), "leak"));
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

#[test]
fn a_sawtooth_whose_releases_drift_between_the_points_is_no_leak() {
    // Each level is read midway between the points either side of its release; here the release
    // drifts through that gap from one cycle to the next, and the levels rise 22 MB over 15 h on
    // a floor that is flat. That is less than one gap's worth of ramp (about 45 MB): no leak.
    let points = fixture(include_str!("../../tests/fixtures/sawtooth_beat_life.txt"));
    assert_eq!(points.len(), 300);
    let r = detect_leak(&[Lifetime { pid: 1, points: points.clone() }], None, &LeakParams::default());
    assert!(r.verdict != Verdict::Leak && r.judged_by == "troughs", "{r:?}");
    // The same life over a floor that rises 10 MB/h (150 MB, three gaps' worth) is a leak.
    let rising: Vec<MemPoint> = (points.iter())
        .map(|p| MemPoint { bytes: p.bytes + 10.0 * 1e6 * (p.at_ms - T0) as f64 / 3_600_000.0, ..*p })
        .collect();
    let r = detect_leak(&[Lifetime { pid: 1, points: rising }], None, &LeakParams::default());
    assert_eq!(r.verdict, Verdict::Leak, "{r:?}");
    assert!((r.mb_per_hour.unwrap() - 10.0).abs() < 2.0, "{r:?}");
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
    let nan =
        Lifetime { pid: 2, points: vec![MemPoint { at_ms: T0, bytes: f64::NAN, requests: None, tokens: None }; 100] };
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
    let points =
        (0..1_000_000).map(|i| MemPoint { at_ms: T0 + i * 2600, bytes: pt(i), requests: None, tokens: None }).collect();
    let started = std::time::Instant::now();
    let r = detect_leak(&[Lifetime { pid: 1, points }], None, &LeakParams::default());
    let elapsed = started.elapsed();
    println!("1,000,000 samples judged in {elapsed:?}");
    assert_eq!(r.verdict, Verdict::Leak);
    assert!((r.mb_per_hour.unwrap() - 2.0).abs() < 0.01, "{r:?}");
    assert!(elapsed.as_secs_f64() < 5.0, "{elapsed:?}");
}
