//! Crash patterns of one backend: where its failures cluster, how often it fails and recovers,
//! whether it dies at a request count, and the seed report's two hypotheses.
//!
//! Each factor level splits the requests into inside and outside; the failure rates are compared
//! with Fisher's exact test (Fisher 1922; 1935) and all p-values adjusted together by Holm's
//! step-down procedure (Holm 1979). One pass counts every level: millions of rows take a second.
//! A request-count crash (ANCHORS §4 patterns 7, 11) varies less in request number than in time
//! across server lifetimes (coefficient of variation), or always falls on a multiple of some N.

use std::sync::Arc;
use std::{cmp::Reverse, collections::BTreeMap};

use serde::Serialize;

use super::contingency::{fisher_exact, holm};
use super::stats::{mean, median};

/// One request of one backend, as the store holds it.
#[derive(Debug, Clone, Default)]
pub struct Attempt {
    pub at_ms: i64,                  // start, ms since the epoch
    pub failed: bool,                // the caller already excluded cancelled, interrupted and in-flight requests
    pub outcome: Arc<str>,           // outcome class as stored: ok, http_error, timeout, ...
    pub signature: Option<Arc<str>>, // normalised error signature
    pub error: Option<Arc<str>>,     // raw error text
    pub concurrency: u32,            // requests in flight to the backend, this one included
    pub prompt_chars: u32,
    pub gap_ms: Option<f64>,     // since the previous request ended; None for the first
    pub server_pid: Option<u32>, // the server process that answered, when known
    pub server_seq: Option<u64>, // nth request to that server process (1 = first after a (re)load)
    pub hour_local: u8,          // 0..=23, local time of day
    pub job: Arc<str>,           // the job (workload) that sent it (shared: months of rows repeat it)
}

/// The analysis of one backend's requests. Every number is finite, so it serialises as JSON.
#[derive(Serialize, Debug, Clone)]
pub struct CrashReport {
    pub requests: u64,
    pub failures: u64,
    pub signatures: Vec<SignatureGroup>, // most frequent first
    pub patterns: Vec<Pattern>,          // only those significant after Holm's correction, most significant first
    pub tested: usize,                   // (factor, level) tests run: the m of the correction
    pub mtbf_s: Option<f64>,             // observed span / failure episodes (a run of failures is one episode)
    pub longest_failure_streak: u64,
    pub median_recovery_s: Option<f64>, // from an episode's first failure to the next success
    pub at_request_count: Option<RequestCountPattern>,
    pub hypotheses: Hypotheses,
}

/// Failures sharing a signature and an outcome.
#[derive(Serialize, Debug, Clone)]
pub struct SignatureGroup {
    pub signature: String, // the stored signature, or the outcome when there was none
    pub outcome: String,
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub example: String, // the group's first error text, at most 300 characters ("" when none)
}

/// A factor level whose failure rate is significantly higher than outside it.
#[derive(Serialize, Debug, Clone)]
pub struct Pattern {
    pub factor: &'static str, // concurrency, prompt_size, gap, server_seq, first_after_load, time_of_day, job
    pub level: String,        // e.g. "8", ">=16k", "<100ms"
    pub failed_inside: u64,
    pub total_inside: u64,
    pub failed_outside: u64, // outside = the other rows where the factor is known
    pub total_outside: u64,
    pub rate_inside: f64,
    pub rate_outside: f64,
    pub rate_ratio: f64, // Haldane–Anscombe corrected, (k + 0.5) / (n + 1), when nothing failed outside
    pub p_value: f64,    // Fisher's exact, two-sided
    pub p_adjusted: f64, // Holm
}

/// Crashes at a request count rather than after a time (ANCHORS §4 patterns 7 and 11), from the
/// crash points: the first failure (with a known server_seq) of each run of failures.
#[derive(Serialize, Debug, Clone)]
pub struct RequestCountPattern {
    pub lifetimes: usize, // lifetimes that ended with a failure (if < 3 did: lifetimes with any failure)
    pub median_seq: f64,  // median server_seq of those crash points
    pub seq_cv: f64,      // coefficient of variation of server_seq
    pub time_cv: f64,     // ... of the time since the lifetime's first request (0 when undefined)
    pub period: Option<u64>, // N: every crash point at a multiple of N, >= half the requests there fail
}

/// The seed report's hypotheses, each answered with the numbers behind the answer.
#[derive(Serialize, Debug, Clone)]
pub struct Hypotheses {
    pub rapid_sequential: Answer, // requests < 1 s after the previous one vs later ones
    pub corruption_after_first_success: Answer, // after a lifetime's first success vs lifetimes' first requests
}

/// An answer with a sentence of evidence (rates, counts, Fisher p).
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// Significantly more failures in the suspected condition.
    Yes { evidence: String },
    /// At least 20 requests on each side and no significant excess.
    No { evidence: String },
    /// Too few requests to tell.
    NotEnoughData { evidence: String },
}

const FACTORS: [&str; 7] =
    ["concurrency", "prompt_size", "gap", "server_seq", "first_after_load", "time_of_day", "job"];
const HOURS: [&str; 6] = ["00-04", "04-08", "08-12", "12-16", "16-20", "20-24"];
const MIN_SIDE: u64 = 5; // requests inside and outside a level (or hypothesis group) before testing it
const MIN_NO: u64 = 20; // requests on each side before a hypothesis is answered No

/// A factor level: a name, or for concurrency an empty name and the number.
type Level<'a> = (&'a str, u32);

/// The level of `r` for factor `f` (an index into `FACTORS`); `None` where it is unknown.
fn level(f: usize, r: &Attempt) -> Option<Level<'_>> {
    let bucket = |x: f64, edges: &[f64], names: &[&'static str]| {
        (names[edges.iter().take_while(|edge| x >= **edge).count().min(names.len() - 1)], 0)
    };
    Some(match f {
        0 => ("", r.concurrency),
        1 => bucket(f64::from(r.prompt_chars / 4), &[1e3, 4e3, 16e3], &["<1k", "1k-4k", "4k-16k", ">=16k"]),
        2 => match r.gap_ms {
            None => ("first", 0),
            Some(g) if g >= 0.0 => bucket(g, &[100.0, 1e3, 1e4], &["<100ms", "100ms-1s", "1-10s", ">=10s"]),
            Some(_) => return None,
        },
        3 => bucket(seq(r)? as f64, &[2.0, 11.0, 101.0, 1001.0], &["1", "2-10", "11-100", "101-1000", ">1000"]),
        4 => (if seq(r)? == 1 { "yes" } else { "no" }, 0),
        5 => (HOURS.get(usize::from(r.hour_local / 4))?, 0),
        _ => (&r.job, 0),
    })
}

fn seq(r: &Attempt) -> Option<u64> {
    r.server_seq.filter(|s| *s > 0)
}

fn seconds(from_ms: i64, to_ms: i64) -> f64 {
    (to_ms as f64 - from_ms as f64) / 1000.0
}

/// Failure patterns of ONE backend's time-ordered requests; `alpha` outside (0, 1) means 0.05.
pub fn crash_patterns(rows: &[Attempt], alpha: f64) -> CrashReport {
    let alpha = if alpha > 0.0 && alpha < 1.0 { alpha } else { 0.05 };
    let failures = rows.iter().filter(|r| r.failed).count() as u64;
    let (tallies, lives) = (tallies(rows), lifetimes(rows));
    let (patterns, tested) = if failures == 0 { (Vec::new(), 0) } else { factor_patterns(&tallies, alpha) };
    let (mtbf_s, longest_failure_streak, median_recovery_s) = episodes(rows);
    let (rapid_sequential, corruption_after_first_success) = (rapid(&tallies[2], alpha), corruption(&lives, alpha));
    CrashReport {
        requests: rows.len() as u64,
        failures,
        signatures: signatures(rows),
        patterns,
        tested,
        mtbf_s,
        longest_failure_streak,
        median_recovery_s,
        at_request_count: request_count(rows, &lives),
        hypotheses: Hypotheses { rapid_sequential, corruption_after_first_success },
    }
}

/// (level, requests, failures) of every factor, in one pass; a factor has few levels. Numbers are
/// compared before names: comparing concurrency's empty names first made the pass 4x slower.
fn tallies(rows: &[Attempt]) -> Vec<Vec<(Level<'_>, u64, u64)>> {
    let mut tallies: Vec<Vec<(Level, u64, u64)>> = vec![Vec::new(); FACTORS.len()];
    for r in rows {
        for (f, tally) in tallies.iter_mut().enumerate() {
            let Some(lv) = level(f, r) else { continue };
            let i = tally.iter().position(|t| t.0.1 == lv.1 && t.0.0 == lv.0).unwrap_or_else(|| {
                tally.push((lv, 0, 0));
                tally.len() - 1
            });
            (tally[i].1, tally[i].2) = (tally[i].1 + 1, tally[i].2 + u64::from(r.failed));
        }
    }
    tallies
}

fn factor_patterns(tallies: &[Vec<(Level, u64, u64)>], alpha: f64) -> (Vec<Pattern>, usize) {
    let mut tests = Vec::new();
    for (f, tally) in tallies.iter().enumerate() {
        let (n_all, k_all) = tally.iter().fold((0, 0), |(n, k), t| (n + t.1, k + t.2));
        for &(lv, n, k) in tally.iter().filter(|t| t.1 >= MIN_SIDE && n_all - t.1 >= MIN_SIDE) {
            let (n_out, k_out) = (n_all - n, k_all - k);
            let p_value = fisher_exact(k, n - k, k_out, n_out - k_out);
            let c = if k_out == 0 { 0.5 } else { 0.0 }; // Haldane–Anscombe when nothing failed outside
            let rate = |k: u64, n: u64, c: f64| (k as f64 + c) / (n as f64 + 2.0 * c);
            tests.push(Pattern {
                factor: FACTORS[f],
                level: if lv.0.is_empty() { lv.1.to_string() } else { lv.0.to_string() },
                failed_inside: k,
                total_inside: n,
                failed_outside: k_out,
                total_outside: n_out,
                rate_inside: rate(k, n, 0.0),
                rate_outside: rate(k_out, n_out, 0.0),
                rate_ratio: rate(k, n, c) / rate(k_out, n_out, c),
                p_value,
                p_adjusted: p_value,
            });
        }
    }
    let adjusted = holm(&tests.iter().map(|t| t.p_value).collect::<Vec<_>>());
    let tested = tests.len();
    let mut found: Vec<Pattern> = (tests.into_iter().zip(adjusted))
        .map(|(t, p_adjusted)| Pattern { p_adjusted, ..t })
        .filter(|t| t.p_adjusted < alpha && t.rate_inside > t.rate_outside)
        .collect();
    found.sort_by(|a, b| a.p_adjusted.total_cmp(&b.p_adjusted).then(a.p_value.total_cmp(&b.p_value)));
    (found, tested)
}

fn signatures(rows: &[Attempt]) -> Vec<SignatureGroup> {
    let mut groups = BTreeMap::new(); // (signature, outcome) -> (count, first, last, first error)
    for r in rows.iter().filter(|r| r.failed) {
        let key = (r.signature.as_deref().unwrap_or(&r.outcome), &*r.outcome);
        let g = groups.entry(key).or_insert((0, r.at_ms, r.at_ms, None));
        *g = (g.0 + 1, g.1.min(r.at_ms), g.2.max(r.at_ms), g.3.or(r.error.as_deref()));
    }
    let mut out: Vec<SignatureGroup> = (groups.into_iter())
        .map(|((signature, outcome), (count, first_ms, last_ms, example))| {
            let (signature, outcome) = (signature.to_string(), outcome.to_string());
            let example = example.unwrap_or("").chars().take(300).collect();
            SignatureGroup { signature, outcome, count, first_ms, last_ms, example }
        })
        .collect();
    out.sort_by_key(|g| (Reverse(g.count), g.first_ms)); // stable: ties keep the map's key order
    out
}

/// (MTBF, longest failure streak, median recovery); an episode is a run of consecutive failures.
fn episodes(rows: &[Attempt]) -> (Option<f64>, u64, Option<f64>) {
    let runs: Vec<&[Attempt]> = rows.chunk_by(|a, b| a.failed == b.failed).collect();
    let failing = runs.iter().filter(|run| run[0].failed);
    let (count, longest) = failing.fold((0, 0), |(n, most), run| (n + 1, most.max(run.len() as u64)));
    let recoveries = runs.windows(2).filter(|w| w[0][0].failed).map(|w| seconds(w[0][0].at_ms, w[1][0].at_ms));
    let span = rows.first().zip(rows.last()).filter(|_| count > 0 && rows.len() > 1);
    let mtbf = span.map(|(first, last)| seconds(first.at_ms, last.at_ms).max(0.0) / count as f64);
    (mtbf, longest, median(recoveries.map(|s| s.max(0.0))))
}

/// Server lifetimes: a new one starts at a pid other than the last seen, or where server_seq falls
/// back to 1 or by more than 64 (concurrent requests may finish a little out of order).
fn lifetimes(rows: &[Attempt]) -> Vec<&[Attempt]> {
    let (mut out, mut start, mut pid, mut last_seq) = (Vec::new(), 0, None, None);
    for (i, r) in rows.iter().enumerate() {
        let new_pid = matches!((pid, r.server_pid), (Some(a), Some(b)) if a != b);
        let reload = matches!((last_seq, seq(r)), (Some(a), Some(b)) if b == 1 || b.saturating_add(64) < a);
        if new_pid || reload {
            out.push(&rows[start..i]);
            (start, last_seq) = (i, None);
        }
        (pid, last_seq) = (r.server_pid.or(pid), seq(r).or(last_seq));
    }
    out.extend(Some(&rows[start..]).filter(|life| !life.is_empty()));
    out
}

/// Sample coefficient of variation; `None` below two values or for a mean that is not positive.
fn cv(values: &[f64]) -> Option<f64> {
    let m = mean(values.iter().copied()).filter(|m| *m > 0.0 && values.len() > 1)?;
    let var = values.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
    Some(var.sqrt() / m).filter(|c| c.is_finite())
}

fn request_count(rows: &[Attempt], lives: &[&[Attempt]]) -> Option<RequestCountPattern> {
    // Crash points: the first failure with a seq of each run of failures, as (lifetime, seq,
    // seconds since the lifetime's first request, whether the run ends the lifetime).
    let mut points = Vec::new();
    for (n, life) in lives.iter().enumerate() {
        let mut runs = life.chunk_by(|a, b| a.failed == b.failed).peekable();
        while let Some(run) = runs.next() {
            if let Some((r, s)) = run.iter().filter(|r| r.failed).find_map(|r| Some((r, seq(r)?))) {
                points.push((n, s, seconds(life[0].at_ms, r.at_ms), runs.peek().is_none()));
            }
        }
    }
    // Statistics over the lifetimes that ended in a crash if there are 3, else over all points.
    let terminal_only = points.iter().filter(|p| p.3).count() >= 3;
    let pts: Vec<_> = points.iter().filter(|p| p.3 || !terminal_only).collect();
    let (seqs, times): (Vec<f64>, Vec<f64>) = pts.iter().map(|p| (p.1 as f64, p.2)).unzip();
    let lifetimes = pts.windows(2).filter(|w| w[0].0 != w[1].0).count() + usize::from(!pts.is_empty());
    let (seq_cv, time_cv) = (cv(&seqs), cv(&times));
    let by_count = terminal_only && matches!((seq_cv, time_cv), (Some(s), Some(t)) if s < 0.25 && s < t);
    let period = period(rows, points.iter().map(|p| p.1));
    let (median_seq, seq_cv, time_cv) = (median(seqs)?, seq_cv.unwrap_or(0.0), time_cv.unwrap_or(0.0));
    (by_count || period.is_some()).then_some(RequestCountPattern { lifetimes, median_seq, seq_cv, time_cv, period })
}

/// The largest N >= 2 dividing all crash points' seqs (at least 3), provided at least half of
/// the requests at multiples of N failed: otherwise a common divisor is a coincidence.
fn period(rows: &[Attempt], seqs: impl Iterator<Item = u64>) -> Option<u64> {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let (count, n) = seqs.fold((0, 0), |(c, g), s| (c + 1, gcd(g, s)));
    let n = Some(n).filter(|&n| count >= 3 && n >= 2)?;
    let at = rows.iter().filter(|r| seq(r).is_some_and(|s| s % n == 0));
    let (total, failed) = at.fold((0u64, 0u64), |(t, f), r| (t + 1, f + u64::from(r.failed)));
    (failed * 2 >= total).then_some(n)
}

/// From the gap tallies: requests < 1 s after the previous one against those >= 1 s after.
fn rapid(gaps: &[(Level, u64, u64)], alpha: f64) -> Answer {
    let side = |names: [&str; 2]| {
        let inside = gaps.iter().filter(|t| names.contains(&t.0.0));
        inside.fold((0, 0), |(k, n), t| (k + t.2, n + t.1))
    };
    let (fast, slow) = (side(["<100ms", "100ms-1s"]), side(["1-10s", ">=10s"]));
    compare(fast, slow, alpha, ["with < 1 s since the previous request", "after >= 1 s"])
}

/// Requests after a lifetime's first success against each lifetime's first request (the fresh
/// state; "before the first success" would be all failures by definition).
fn corruption(lives: &[&[Attempt]], alpha: f64) -> Answer {
    let (mut after, mut fresh) = ((0, 0), (0, 0));
    for (n, life) in lives.iter().enumerate() {
        if let Some(first) = life.first().filter(|r| n > 0 || r.server_seq.is_none_or(|s| s <= 1)) {
            fresh = (fresh.0 + u64::from(first.failed), fresh.1 + 1);
        }
        after = life.iter().skip_while(|r| r.failed).skip(1).fold(after, |(k, t), r| (k + u64::from(r.failed), t + 1));
    }
    compare(after, fresh, alpha, ["after the first success of a server lifetime", "on the first request of a lifetime"])
}

/// Answers "do `inside` requests fail more than `outside` ones?" from (failed, total) pairs.
fn compare(inside: (u64, u64), outside: (u64, u64), alpha: f64, names: [&str; 2]) -> Answer {
    let ((ki, ni), (ko, no)) = (inside, outside);
    let pct = |k: u64, n: u64| if n == 0 { "n/a".into() } else { format!("{:.0}%", 100.0 * k as f64 / n as f64) };
    let p = fisher_exact(ki, ni.saturating_sub(ki), ko, no.saturating_sub(ko));
    let p_text = if p < 0.001 { "< 0.001".into() } else { format!("= {p:.3}") };
    let ([rate_in, rate_out], [inside, outside]) = ([pct(ki, ni), pct(ko, no)], names);
    let evidence =
        format!("failure rate {rate_in} ({ki}/{ni}) {inside} vs {rate_out} ({ko}/{no}) {outside}, Fisher p {p_text}");
    if ni.min(no) >= MIN_SIDE && p < alpha && u128::from(ki) * u128::from(no) > u128::from(ko) * u128::from(ni) {
        Answer::Yes { evidence }
    } else if ni.min(no) >= MIN_NO {
        Answer::No { evidence }
    } else {
        Answer::NotEnoughData {
            evidence: format!("{evidence}; testing needs {MIN_SIDE} requests a side, ruling out {MIN_NO}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64 of (seed, i, salt): reproducible draws without a generator's state.
    fn draw(seed: u64, i: usize, salt: u64) -> u64 {
        let z = (seed ^ (i as u64) << 20 ^ salt << 52).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fail(r: Attempt) -> Attempt {
        let error = Some("The model has crashed without additional information.".into());
        Attempt { failed: true, outcome: "http_error".into(), signature: Some("crash".into()), error, ..r }
    }

    fn row(at_ms: i64, pid: u32, seq: u64, failed: bool) -> Attempt {
        let r = Attempt { at_ms, server_pid: Some(pid), server_seq: Some(seq), ..Default::default() };
        if failed { fail(r) } else { r }
    }

    /// `n` rows with independent concurrency, prompt size, gap and job, a new server process
    /// every 300 requests; a row fails when `fails(row, u)` says so, u uniform in [0, 1).
    fn rows(n: usize, seed: u64, fails: impl Fn(&Attempt, f64) -> bool) -> Vec<Attempt> {
        let (mut out, mut at_ms) = (Vec::with_capacity(n), 0);
        for i in 0..n {
            let pick = |salt: u64, n: u64| (draw(seed, i, salt) % n) as usize;
            let gap = [50.0, 500.0, 5000.0, 20000.0][pick(1, 4)];
            at_ms += gap as i64;
            let r = Attempt {
                concurrency: [1, 2, 4, 8][pick(2, 4)],
                prompt_chars: [400, 8000, 30000, 80000][pick(3, 4)],
                gap_ms: (i > 0).then_some(gap),
                hour_local: (at_ms / 3_600_000 % 24) as u8,
                job: ["chat", "long", "tools"][pick(4, 3)].into(),
                ..row(at_ms, 1 + i as u32 / 300, i as u64 % 300 + 1, false)
            };
            out.push(if fails(&r, pick(5, 1 << 20) as f64 / f64::from(1 << 20)) { fail(r) } else { r });
        }
        out
    }

    /// Every number in the report is finite (serde_json would write NaN as null).
    fn analyse(rows: &[Attempt]) -> CrashReport {
        let r = crash_patterns(rows, 0.05);
        let count = r.at_request_count.iter().flat_map(|c| [c.median_seq, c.seq_cv, c.time_cv]);
        let rates = r.patterns.iter().flat_map(|p| [p.rate_inside, p.rate_outside, p.rate_ratio, p.p_adjusted]);
        assert!([r.mtbf_s, r.median_recovery_s].into_iter().flatten().chain(count).chain(rates).all(f64::is_finite));
        assert!(serde_json::to_string(&r).is_ok());
        r
    }

    fn top(rows: &[Attempt]) -> Vec<(&'static str, String)> {
        analyse(rows).patterns.into_iter().map(|p| (p.factor, p.level)).collect()
    }

    #[test]
    fn finds_the_factor_that_fails_and_nothing_else() {
        assert_eq!(top(&rows(5000, 1, |r, u| r.concurrency > 4 && u < 0.3)), [("concurrency", "8".to_string())]);
        assert_eq!(top(&rows(5000, 2, |r, u| r.prompt_chars >= 64_000 && u < 0.3)), [("prompt_size", ">=16k".into())]);
        let rapid = rows(5000, 3, |r, u| r.gap_ms.is_some_and(|g| g < 100.0) && u < 0.3);
        assert_eq!(top(&rapid), [("gap", "<100ms".into())]);
        assert!(matches!(analyse(&rapid).hypotheses.rapid_sequential, Answer::Yes { .. }));
    }

    #[test]
    fn random_failures_make_no_pattern() {
        let report = analyse(&rows(9000, 4, |_, u| u < 0.05));
        assert!(report.patterns.is_empty() && report.tested > 20, "{:?}", report.patterns);
        assert!(matches!(report.hypotheses.rapid_sequential, Answer::No { .. }));
        assert!(matches!(report.hypotheses.corruption_after_first_success, Answer::No { .. }));
        let alarms = (100..150).filter(|&s| !top(&rows(5000, s, |_, u| u < 0.05)).is_empty()).count();
        eprintln!("random 5% failures: {alarms} of 50 seeds produced a pattern");
        assert!(alarms <= 5, "{alarms} of 50");
    }

    #[test]
    fn crashes_at_a_request_count() {
        // 20 lifetimes, each dying at about its 200th request; their pace differs tenfold.
        let mut rows: Vec<Attempt> = Vec::new();
        for life in 0..20 {
            let (crash_at, pace, start) = (200 + u64::from(life * 7 % 20), [1, 3, 10][life as usize % 3], rows.len());
            rows.extend((1..=crash_at).map(|s| row(1000 * (start as i64 + s as i64 * pace), life, s, s == crash_at)));
        }
        let report = analyse(&rows);
        assert_eq!(report.patterns.first().map(|p| (p.factor, p.level.as_str())), Some(("server_seq", "101-1000")));
        let count = report.at_request_count.expect("request-count pattern");
        assert_eq!((count.lifetimes, count.period), (20, None));
        assert!(count.seq_cv < 0.05 && count.time_cv > 0.3 && (200.0..220.0).contains(&count.median_seq), "{count:?}");
        // ollama #263: every 500th request fails, the server lives on.
        let periodic: Vec<Attempt> = (1..=2000).map(|s| row(s as i64 * 1000, 7, s, s % 500 == 0)).collect();
        assert_eq!(analyse(&periodic).at_request_count.and_then(|c| c.period), Some(500));
        assert!(analyse(&rows[..5]).at_request_count.is_none());
    }

    #[test]
    fn seed_report_hypotheses() {
        // LM Studio, 2 of 5 requests crashed after the first success: too little to say anything.
        let five = (0..5).map(|i| Attempt { gap_ms: Some(200.0), ..row(i * 3000, 1, i as u64 + 1, i % 2 == 1) });
        let report = analyse(&five.collect::<Vec<_>>());
        assert!(report.patterns.is_empty() && report.tested == 0 && report.failures == 2);
        let Hypotheses { rapid_sequential: rapid, corruption_after_first_success: corruption } = report.hypotheses;
        assert!(matches!((rapid, corruption), (Answer::NotEnoughData { .. }, Answer::NotEnoughData { .. })));
        // 30 reloads: each lifetime's first request works, then 4 of the next 9 fail.
        let rows: Vec<Attempt> =
            (0..300).map(|i| row(i * 1000, i as u32 / 10, i as u64 % 10 + 1, i % 10 > 5)).collect();
        let answer = analyse(&rows).hypotheses.corruption_after_first_success;
        assert!(matches!(answer, Answer::Yes { ref evidence } if evidence.contains("(0/30)")), "{answer:?}");
    }

    #[test]
    fn episodes_streaks_recovery_and_signatures() {
        let plan = [(0, ""), (10, "c"), (20, "c"), (30, ""), (40, ""), (50, "t"), (60, "c"), (70, "c"), (100, "")];
        let rows: Vec<Attempt> = (plan.iter())
            .map(|&(s, sig)| Attempt {
                signature: (sig == "c").then(|| sig.into()), // "t" has none: grouped under its outcome
                error: Some(sig.repeat(400).into()),
                ..row(s * 1000, 1, 1, !sig.is_empty())
            })
            .collect();
        let r = analyse(&rows);
        assert_eq!((r.mtbf_s, r.longest_failure_streak, r.median_recovery_s), (Some(50.0), 3, Some(35.0)));
        let groups: Vec<_> =
            r.signatures.iter().map(|g| (g.signature.as_str(), g.count, g.first_ms, g.last_ms)).collect();
        assert_eq!(groups, [("c", 4, 10_000, 70_000), ("http_error", 1, 50_000, 50_000)]);
        assert_eq!(r.signatures.iter().map(|g| g.example.chars().count()).collect::<Vec<_>>(), [300, 300]);
    }

    #[test]
    fn degenerate_inputs_give_empty_valid_reports() {
        let odd = |r| Attempt { gap_ms: Some(f64::NAN), hour_local: 99, server_seq: Some(0), ..r };
        let odd = rows(50, 8, |_, u| u < 0.5).into_iter().map(odd).collect();
        for input in [vec![], rows(1, 7, |_, _| true), rows(40, 7, |_, _| true), odd] {
            assert!(analyse(&input).patterns.is_empty() && crash_patterns(&input, f64::NAN).patterns.is_empty());
        }
        let ok = analyse(&rows(2000, 7, |_, _| false));
        assert!(ok.failures == 0 && ok.signatures.is_empty() && ok.mtbf_s.is_none() && ok.at_request_count.is_none());
        assert!(ok.patterns.is_empty() && ok.tested == 0 && ok.median_recovery_s.is_none());
    }

    #[test]
    fn a_million_rows_in_under_five_seconds() {
        let rows = rows(1_000_000, 9, |r, u| r.concurrency == 8 && u < 0.02);
        let start = std::time::Instant::now();
        let report = crash_patterns(&rows, 0.05);
        eprintln!("1,000,000 rows analysed in {:?}", start.elapsed());
        assert!(start.elapsed().as_secs_f64() < 5.0 && report.patterns.first().is_some_and(|p| p.level == "8"));
    }
}
