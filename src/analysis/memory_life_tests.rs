//! Shaping one process life: thinning by its own cadence, spikes dropped, the warm-up set apart,
//! level shifts found and taken out, and a sawtooth judged without its ramps.

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
    let life = Life::shape(&warm, 0.0).unwrap();
    assert!((15..=40).contains(&life.start), "{}", life.start);
    assert!((25.0..31.0).contains(&life.warmup_mb.unwrap()), "{:?}", life.warmup_mb);
    let ramp = pts((0..180).map(|i| 500.0 + i as f64 * 0.5 + (i % 5) as f64 * 0.05));
    assert_eq!(Life::shape(&ramp, 0.0).unwrap().start, 0);
}

#[test]
fn a_start_above_a_line_that_rises_is_not_set_apart() {
    // A lump of 40 MB dissolving over the first 30 minutes, then memory wandering up 10 MB/h:
    // setting the lump apart would leave only the rise to judge.
    let wander = pts((0..300).map(|i| {
        let i = f64::from(i);
        1000.0 + 40.0 * (1.0 - i / 30.0).max(0.0) + 10.0 * i / 60.0 + (i % 5.0) * 0.05
    }));
    assert_eq!(Life::shape(&wander, 0.0).unwrap().start, 0);
    // The same lump before a flat line is set apart: a load's temporary buffers freed.
    let freed = pts((0..300).map(|i| {
        let i = f64::from(i);
        1000.0 + 40.0 * (1.0 - i / 30.0).max(0.0) + (i % 5.0) * 0.05
    }));
    let life = Life::shape(&freed, 0.0).unwrap();
    assert!((20..=40).contains(&life.start), "{}", life.start);
}

#[test]
fn a_life_sampled_densely_while_it_loads_has_its_warm_up_set_apart() {
    // A burst while the model loads (a sample every 1.5 s, 60 → 183 MB), then flat and sampled
    // rarely: the second half of the life's time holds 2 samples, so its last 4 give the line.
    let at = |s: f64, mb: f64| MemPoint { at_ms: (s * 1000.0) as i64, bytes: mb * 1e6, requests: None, tokens: None };
    let mut samples: Vec<MemPoint> = (0..42).map(|i| at(f64::from(i) * 1.5, 60.0 + 3.0 * f64::from(i))).collect();
    samples.extend([64.0, 66.0, 68.0, 70.0, 189.0, 350.0].map(|s| at(s, 183.0 + (s as i64 % 3) as f64 * 0.1)));
    let life = Life::shape(&samples, 0.0).unwrap();
    assert!(life.start >= 40, "{}", life.start);
    assert!(Life::shape(&samples, 0.1).is_none(), "a warm-up of 6 minutes leaves too little to judge");
}

#[test]
fn shifts_are_taken_out_of_the_trend() {
    let stepped = pts((0..120).map(|i| 800.0 + if i >= 70 { 420.0 } else { 0.0 } + (i % 4) as f64 * 0.2));
    let life = Life::shape(&stepped, 0.0).unwrap();
    assert_eq!(life.shifts.len(), 1, "{:?}", life.shifts);
    assert!((life.shifts[0].delta_mb - 420.0).abs() < 1.0 && !life.sawtooth);
    let spread = life.trend.iter().map(|t| t.1).fold(f64::NEG_INFINITY, f64::max)
        - life.trend.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
    assert!(spread < 2.0, "{spread}");
}

#[test]
fn a_small_drop_starts_no_cycle() {
    // A cache filling by 58 MB over 30 samples and flushed, 8 times, over a floor rising 3 MB
    // per cycle; in the fourth cycle 8 MB is given back for good (noise, not a flush).
    let values = (0..240).map(|i| {
        let given_back = if (100..120).contains(&i) { 8.0 } else { 0.0 };
        300.0 + (i % 30) as f64 * 2.0 + 0.1 * i as f64 - given_back
    });
    let life = Life::shape(&pts(values), 0.0).unwrap();
    assert!(life.sawtooth);
    assert_eq!(life.cycles.len(), 8, "{:?}", life.cycles);
}

#[test]
fn a_sawtooth_is_judged_without_its_ramps() {
    let flat = pts((0..240).map(|i| 300.0 + (i % 30) as f64 * 2.0));
    let life = Life::shape(&flat, 0.0).unwrap();
    assert!(life.sawtooth && life.shifts.iter().filter(|s| s.delta_mb < 0.0).count() >= 6, "{:?}", life.shifts);
    let levels: Vec<f64> = life.trend.iter().map(|t| t.1).collect();
    let spread =
        levels.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b)) - levels.iter().fold(f64::INFINITY, |a, b| a.min(*b));
    assert!(spread < 1.0, "{spread}");
}
