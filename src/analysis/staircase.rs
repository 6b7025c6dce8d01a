//! Growth that comes in steps (`leaks`' staircase rule): a life whose memory keeps stepping up —
//! a leak only under load that steps up after each burst, a per-request leak fed in bursts — is a
//! leak even though the level shifts are taken out of its trend, while one step, or a few that
//! stop, is not. Owns what counts as a step that keeps coming, and the rate of such steps.

use super::memory_life::Life;
use crate::measure::stats::median;

/// Rises in one life from which on steps that keep coming are a leak.
const STAIRCASE_RISES: usize = 3;

/// The bouts of rises of a life after its warm-up (rises closer than a hundredth of the judged span
/// are one bout): (hours, MB). An abrupt warm-up (under a tenth of the life) the size of the later
/// bouts (within a factor of 2 of their median) counts as the first bout: a staircase that began
/// with the life.
fn bouts(l: &Life) -> Vec<(f64, f64)> {
    let (a, b) = (l.pts[l.start].h, l.pts[l.pts.len() - 1].h);
    let mut bouts: Vec<(f64, f64)> = Vec::new();
    for s in l.shifts.iter().filter(|s| s.delta_mb > 0.0) {
        let h = l.pts[s.index].h;
        match bouts.last_mut() {
            Some(last) if h - last.0 <= (b - a) / 100.0 => *last = (h, last.1 + s.delta_mb),
            _ => bouts.push((h, s.delta_mb)),
        }
    }
    let typical = median(bouts.iter().map(|b| b.1));
    let span = b - l.pts[0].h;
    if let (Some(w), Some(t)) = (l.warmup_mb, typical)
        && bouts.len() >= 2
        && a - l.pts[0].h < span / 10.0
        && w >= t / 2.0
        && w <= t * 2.0
    {
        bouts.insert(0, (l.pts[0].h, w));
    }
    bouts
}

/// Steps that keep coming, in a life not judged as a sawtooth: at least 3 substantial bouts of
/// rises (substantial: at least a quarter of the largest), spread over at least 40 % of the life
/// with one in the last third of its judged span or the life's end no further from the last than
/// the longest wait between two (and a quarter); drops under half the rises; more risen than the
/// practical bar (`practical_sigmas` times the life's noise, at least `min_mb_per_hour` over its
/// judged span), by the steps and by the series itself (`held`).
pub(super) fn keeps_stepping(l: &Life, practical_sigmas: f64, min_mb_per_hour: f64) -> bool {
    if l.sawtooth {
        return false;
    }
    let (a, b) = (l.pts[l.start].h, l.pts[l.pts.len() - 1].h);
    let bouts = bouts(l);
    let largest = bouts.iter().map(|b| b.1).fold(0.0, f64::max);
    let big: Vec<f64> = bouts.iter().filter(|b| b.1 >= largest / 4.0).map(|b| b.0).collect();
    let (Some(first), Some(last)) = (big.first(), big.last()) else { return false };
    let risen: f64 = bouts.iter().map(|b| b.1).sum();
    let dropped: f64 = l.shifts.iter().map(|s| -s.delta_mb).filter(|d| *d > 0.0).sum();
    let whole = b - l.pts[0].h;
    // Still coming: one in the last third, or the quiet since the last no longer than the
    // longest wait between two of them (and a quarter): bursts every 45 min in a 2.5 h log can
    // leave the last third between two steps.
    let longest_wait = big.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    let coming = *last >= l.late_h() || b - last <= 1.25 * longest_wait;
    let spread = last - first >= 0.4 * whole && coming;
    let bar = (practical_sigmas * l.noise_mb.max(l.diff_sigma_mb)).max(min_mb_per_hour * (b - a));
    big.len() >= STAIRCASE_RISES && spread && dropped < risen / 2.0 && risen - dropped >= bar && held(l) >= bar
}

/// How much higher the judged series ends than it began, as it was: over its first and last
/// tenth (5 points at least). Shifts found in lumpy noise rise more than they fall (a lump's slow
/// end is no shift), so their sum can climb while the memory does not: 297 MB of rises over 19 h
/// of a flat server that ended 26 MB up.
fn held(l: &Life) -> f64 {
    l.risen((l.raw.len() / 10).max(5)).unwrap_or(0.0)
}

/// The rate of steps that keep coming: from just after the first bout to just after the last,
/// the rise of the series as it is (the steps between and any growth between them) over the time
/// — exact for evenly spaced steps, whatever the phase of the log.
pub(super) fn rate(lives: &[&Life]) -> Option<f64> {
    let (mut added, mut hours) = (0.0, 0.0);
    for l in lives {
        let bouts = bouts(l);
        let (Some(first), Some(last)) = (bouts.first(), bouts.last()) else { continue };
        let level_after = |h: f64| {
            let i = l.pts.partition_point(|p| p.h < h);
            median(l.pts[i..(i + 3).min(l.pts.len())].iter().map(|p| p.mb))
        };
        if let (Some(a), Some(b)) = (level_after(first.0), level_after(last.0))
            && last.0 > first.0
        {
            added += b - a;
            hours += last.0 - first.0;
        }
    }
    (hours > 0.0).then(|| added / hours)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::memory_life::MemPoint;

    /// A life of 12 h sampled each minute at 1000 MB (±0.2 MB, deterministic), stepping up
    /// `step` MB at each hour in `at_h`.
    fn life(at_h: &[f64], step: f64) -> Life {
        let points: Vec<MemPoint> = (0..720)
            .map(|i| {
                let h = f64::from(i) / 60.0;
                let risen = at_h.iter().filter(|a| h >= **a).count() as f64 * step;
                let noise = 0.2 * ((f64::from(i) * 12.9898).sin() * 43_758.545).fract();
                MemPoint {
                    at_ms: i64::from(i) * 60_000,
                    bytes: (1000.0 + risen + noise) * 1e6,
                    requests: None,
                    tokens: None,
                }
            })
            .collect();
        Life::shape(&points, 0.0).expect("720 points make a life")
    }

    #[test]
    fn steps_that_keep_coming_are_told_from_one_step_and_a_few_that_stop() {
        let keeps = life(&[1.5, 4.5, 7.5, 10.5], 40.0);
        assert!(keeps_stepping(&keeps, 5.0, 0.5));
        // From just after the first step to just after the last: 120 MB in 9 h.
        let rate = rate(&[&keeps]).expect("a rate");
        assert!((rate - 120.0 / 9.0).abs() < 0.5, "{rate}");
        assert!(!keeps_stepping(&life(&[5.0], 40.0), 5.0, 0.5), "one step");
        assert!(!keeps_stepping(&life(&[1.0, 2.0, 3.0], 40.0), 5.0, 0.5), "steps that stopped early");
        // Bursts about every 3.9 h: the last step falls just before the last third (8 h), and
        // the log ends before the next one is due (4 h of quiet, under 1.25 × 3.95 h).
        assert!(keeps_stepping(&life(&[0.1, 4.0, 7.95], 40.0), 5.0, 0.5), "the next step not yet due");
        assert!(!keeps_stepping(&life(&[0.5, 2.5, 4.5], 40.0), 5.0, 0.5), "quiet for 3.75 waits");
        // Steps adding up to less than the practical bar (here 5 × noise, at least 20 MB/h × span).
        assert!(!keeps_stepping(&keeps, 5.0, 20.0), "below the bar");
    }
}
