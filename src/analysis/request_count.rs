//! Crashes at a request count (docs/failure-shapes.md, patterns P7 and P11; llama.cpp #26216:
//! a server that dies at about its Nth request, whatever the time): owns the test and its
//! numbers; `crashes` reports it as the `server_seq` pattern.
//!
//! The crash points are the triggers that ended server lives. Lives ending at request counts that
//! vary little (CV under 0.25) and less than memoryless crashes would (the CV of that many
//! exponential lifetimes, by a fixed-seed simulation), or always at a multiple of some N, are a
//! request-count crash. How much the lives varied in time is reported, not required: under an even
//! pace the two vary alike. A factor explains the crashes instead (`explained_by`) when, among the
//! requests late enough in a life to be near the crash point, its level still fails more.

use serde::Serialize;

use super::attribution::Factor;
use super::contingency::{MIN_SIDE, fisher_exact};
use super::crash_log::{NOT_ANALYSED, Request, Side, split};
use crate::measure::stats::{mean, median};

/// Crashes at a request count, from the crash points: the trigger (with a known server_seq) that
/// ended each server lifetime.
#[derive(Serialize, Debug, Clone)]
pub struct RequestCountPattern {
    pub lifetimes: usize,    // lifetimes that ended with a trigger (if < 3 did: lifetimes with any)
    pub median_seq: f64,     // median server_seq of those crash points
    pub seq_cv: f64,         // coefficient of variation of server_seq
    pub time_cv: f64,        // ... of the time since the lifetime's first request (0 when undefined)
    pub period: Option<u64>, // N: every crash point at a multiple of N, >= half the requests there fail
    /// The smallest and largest crash point.
    pub seq_range: (u64, u64),
    /// How likely memoryless crashes (a constant chance per request) are to vary this little.
    pub p_value: Option<f64>,
}

/// Crash points of a request-count crash vary by at most this much (coefficient of variation);
/// llama.cpp #26216's varied by ±15 %.
const MAX_SEQ_CV: f64 = 0.25;

/// Whether `level` of `factor`, not the request count, is what sets crashes off: among the requests a
/// server reached late enough in its life to be near the crash point (from the median crash point
/// less two spreads on), those at that level still fail significantly more than the rest (Fisher,
/// at `alpha`). A server that dies at its Nth request dies there whatever the request; one that
/// dies on back-to-back requests that its schedule only sends after a fixed burst survives the
/// burst's other requests past N.
pub(super) fn explained_by(
    factors: &[Factor],
    requests: &[Request],
    triggers: &[usize],
    c: &RequestCountPattern,
    (factor, level): (&str, &str),
    alpha: f64,
) -> bool {
    // The request count's own buckets are the count, not something beyond it.
    if factor == "server_seq" {
        return false;
    }
    let Some(f) = factors.iter().find(|f| f.name == factor) else { return false };
    let Some(level) = f.levels.iter().position(|l| l == level) else { return false };
    let from = c.median_seq * (1.0 - 2.0 * c.seq_cv);
    // The side of an analysed request late enough in its life: at `level` or not.
    let side = |r: &Request| {
        (r.cell != NOT_ANALYSED && r.seq > 0 && f64::from(r.seq) >= from)
            .then(|| Side::of(usize::from(f.of[r.cell as usize]) == level))
    };
    let (inside, outside) = split(requests, triggers, side);
    let rate = |(k, n): (u64, u64)| k as f64 / n.max(1) as f64;
    let p = fisher_exact(inside.0, inside.1 - inside.0, outside.0, outside.1 - outside.0);
    inside.1.min(outside.1) >= MIN_SIDE && rate(inside) > rate(outside) && p < alpha
}

/// Sample coefficient of variation; `None` below two values or for a mean that is not positive.
fn cv(values: &[f64]) -> Option<f64> {
    let m = mean(values.iter().copied()).filter(|m| *m > 0.0 && values.len() > 1)?;
    let var = values.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
    Some(var.sqrt() / m).filter(|c| c.is_finite())
}

/// The chance that `k` memoryless lifetimes (exponential) have a CV of at most `observed`: a
/// simulation of 4000 draws with a fixed seed, so the same log always gives the same answer.
fn memoryless_cv_p(k: usize, observed: f64) -> f64 {
    const DRAWS: usize = 4000;
    let k = k.clamp(2, 200);
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ k as u64;
    let mut uniform = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        ((state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let hits = (0..DRAWS)
        .filter(|_| {
            let draws: Vec<f64> = (0..k).map(|_| -uniform().ln()).collect();
            cv(&draws).is_some_and(|c| c <= observed)
        })
        .count();
    (hits as f64 + 1.0) / (DRAWS as f64 + 1.0)
}

/// A trigger with a known server_seq: a candidate crash point.
#[derive(Debug, Clone, Copy)]
pub(super) struct CrashPoint {
    pub life: usize,  // its server lifetime
    pub seq: u64,     // its server_seq
    pub seconds: f64, // since its lifetime's first request
    /// No request of its lifetime after it succeeded: it ended the lifetime.
    pub terminal: bool,
}

/// The request-count pattern of a backend's crash points (time-ordered) over `lives` server
/// lifetimes; `at_multiples(n)` counts the requests at multiples of n and the triggers among
/// them. `None` when the crash points show none.
pub(super) fn find(
    points: &[CrashPoint],
    lives: usize,
    at_multiples: impl Fn(u64) -> (u64, u64),
) -> Option<RequestCountPattern> {
    // Statistics over the lifetimes that ended in a crash if there are 3 and they are at least half
    // the lifetimes that ended in the log (lives that end for other reasons are no such pattern),
    // else over all points.
    let terminal = points.iter().filter(|p| p.terminal).map(|p| p.life).collect::<std::collections::BTreeSet<_>>();
    let terminal_only = terminal.len() >= 3 && terminal.len() * 2 >= lives.saturating_sub(1);
    let pts: Vec<_> = points.iter().filter(|p| p.terminal || !terminal_only).collect();
    let (seqs, times): (Vec<f64>, Vec<f64>) = pts.iter().map(|p| (p.seq as f64, p.seconds)).unzip();
    let lifetimes = pts.windows(2).filter(|w| w[0].life != w[1].life).count() + usize::from(!pts.is_empty());
    let (seq_cv, time_cv) = (cv(&seqs), cv(&times));
    // How the lives vary in time is reported, not required: under an even pace, or a schedule
    // whose bursts come on the clock, lives that end at a request count last alike too (CVs of
    // 0.06 in requests and 0.015 in time over five lives of ~350 requests and ~32 min).
    let by_count = terminal_only && seq_cv.is_some_and(|s| s < MAX_SEQ_CV);
    let p_value = seq_cv.filter(|_| by_count).map(|c| memoryless_cv_p(seqs.len(), c));
    let period = period(points.iter().map(|p| p.seq), at_multiples);
    let seq_range = (pts.iter().map(|p| p.seq).min().unwrap_or(0), pts.iter().map(|p| p.seq).max().unwrap_or(0));
    let (median_seq, seq_cv, time_cv) = (median(seqs)?, seq_cv.unwrap_or(0.0), time_cv.unwrap_or(0.0));
    (p_value.is_some() || period.is_some()).then_some(RequestCountPattern {
        lifetimes,
        median_seq,
        seq_cv,
        time_cv,
        period,
        seq_range,
        p_value,
    })
}

/// The largest N >= 2 dividing all crash points' seqs (at least 3), provided at least half of
/// the requests at multiples of N failed: otherwise a common divisor is a coincidence.
fn period(seqs: impl Iterator<Item = u64>, at_multiples: impl Fn(u64) -> (u64, u64)) -> Option<u64> {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let (count, n) = seqs.fold((0, 0), |(c, g), s| (c + 1, gcd(g, s)));
    let n = Some(n).filter(|&n| count >= 3 && n >= 2)?;
    let (total, failed) = at_multiples(n);
    (failed * 2 >= total).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::attempt::Attempt;
    use crate::analysis::attribution::{Cells, factors};

    #[test]
    fn memoryless_lives_vary_as_much_as_they_last() {
        assert_eq!(cv(&[1.0]), None);
        assert!((cv(&[90.0, 100.0, 110.0]).unwrap() - 0.1).abs() < 1e-12);
        // Five lives ending within ±5 % of each other: memoryless crashes almost never do that.
        assert!(memoryless_cv_p(5, 0.05) < 0.01);
        // Exponential lifetimes have a CV of about 1: one that size is what chance gives.
        assert!(memoryless_cv_p(20, 1.0) > 0.3);
        // The same question, the same answer (a fixed seed).
        assert_eq!(memoryless_cv_p(7, 0.3), memoryless_cv_p(7, 0.3));
    }

    #[test]
    fn only_another_factor_explains_a_request_count_crash() {
        // Lives of 120 requests; every request past the 100th fails at concurrency 4, none at 1.
        let rows: Vec<Attempt> = (0..6u64)
            .flat_map(|life| {
                (1..=120u64).map(move |seq| Attempt {
                    at_ms: (life * 120 + seq) as i64 * 1000,
                    server_pid: Some(life as u32 + 1),
                    server_seq: Some(seq),
                    concurrency: if seq % 2 == 0 { 4 } else { 1 },
                    failed: seq > 100 && seq % 2 == 0,
                    ..Default::default()
                })
            })
            .collect();
        let refs: Vec<&Attempt> = rows.iter().collect();
        let (cells, of) = Cells::of(&refs, &vec![false; rows.len()]);
        let requests: Vec<Request> =
            rows.iter().zip(of).map(|(r, cell)| Request { seq: r.server_seq.unwrap() as u32, cell }).collect();
        let triggers: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].failed).collect();
        let factors = factors(&cells);
        let c = RequestCountPattern {
            lifetimes: 6,
            median_seq: 110.0,
            seq_cv: 0.05,
            time_cv: 0.05,
            period: None,
            seq_range: (101, 120),
            p_value: Some(1e-6),
        };
        assert!(explained_by(&factors, &requests, &triggers, &c, ("concurrency", "4"), 0.01));
        assert!(!explained_by(&factors, &requests, &triggers, &c, ("concurrency", "1"), 0.01));
        // The failures all lie in server_seq's bucket 101-1000 (p about 3e-4 against requests 99
        // and 100): that bucket is the count itself and explains nothing beyond it.
        assert!(!explained_by(&factors, &requests, &triggers, &c, ("server_seq", "101-1000"), 0.01));
    }
}
