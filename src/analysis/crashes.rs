//! Crash patterns of one backend: what triggers its failures, how often it fails and recovers,
//! whether it dies at a request count, and the seed report's two hypotheses.
//!
//! Method (`crash_log`: what is kept of the requests; `episodes`, `attribution`, `logistic`):
//! 1. Failures are grouped into episodes: a trigger, then the failures it caused until the server
//!    answers again (refused connections, "503 Loading model", "Model is unloaded"). Only
//!    triggers count as failures below; the consequences are summarised apart (`episodes`).
//! 2. Each factor is tested adjusted for the others by a Firth-penalised logistic regression and its
//!    penalised likelihood-ratio test (Firth 1993; Heinze & Schemper 2002): concurrency, prompt size,
//!    gap, requests since the server started and the first request after a (re)load, each given all
//!    the others; job and time of day for what they add beyond those. The pattern names the level
//!    with the highest fitted odds.
//! 3. The same for each of the three commonest trigger signatures, and one correction across all of
//!    it — every factor of every family, the request-count test and both hypotheses — by Holm's
//!    step-down procedure (Holm 1979), so purely random failures give a pattern in at most 5 % of
//!    logs.
//! 4. Two mechanisms that are each significant alone, neither once adjusted for the other, and
//!    that travel together (Cramér's V ≥ 0.5), cannot be told apart in this log: reported as
//!    `confounded`, with what to run to separate them, instead of a guess.
//! 5. A request-count crash (`request_count`): server lives that end in a trigger at request
//!    counts that vary little, or always at a multiple of some N. When present it leads the
//!    patterns, as `server_seq`, unless a factor explains the crashes beyond the count.

use std::sync::Arc;
use std::{cmp::Reverse, collections::BTreeMap};

use serde::Serialize;

pub use super::attempt::Attempt;
use super::attribution::{self, FACTORS, Factor, MECHANISMS};
use super::contingency::{MIN_SIDE, fisher_exact, holm};
pub use super::crash_log::CrashLog;
use super::crash_log::{Failure, NOT_ANALYSED, Request, Side, Sides, split, tally};
use super::episodes::{self, Episodes, Role};
pub use super::request_count::RequestCountPattern;
use super::request_count::{self, CrashPoint};

/// The analysis of one backend's requests. Every number is finite, so it serialises as JSON.
#[derive(Serialize, Debug, Clone)]
pub struct CrashReport {
    pub requests: u64,
    pub failures: u64,
    pub signatures: Vec<SignatureGroup>, // most frequent first
    /// Significant after one Holm correction over every test: all failures' first (most
    /// significant first; a request-count crash leads), then each signature's.
    pub patterns: Vec<Pattern>,
    pub tested: usize,       // tests in that correction
    pub mtbf_s: Option<f64>, // observed span / failure episodes
    pub longest_failure_streak: u64,
    pub median_recovery_s: Option<f64>, // from an episode's first failure to the next success
    pub episodes: Episodes,
    /// Pairs of factors that cannot be told apart in this log.
    pub confounded: Vec<Confounded>,
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

/// A factor level under which failures are triggered significantly more often, the other factors
/// held fixed.
#[derive(Serialize, Debug, Clone)]
pub struct Pattern {
    /// The failure signature this is about, or `*` for all failures.
    pub signature: String,
    /// Failures with that signature (all failures for `*`).
    pub count: u64,
    pub factor: &'static str, // concurrency, prompt_size, gap, server_seq, first_after_load, job, time_of_day
    pub level: String,        // e.g. "8", ">=16k", "<100ms"
    pub failed_inside: u64,   // triggers at that level
    pub total_inside: u64,    // requests at that level (consequences of a crash left out)
    pub failed_outside: u64,
    pub total_outside: u64,
    pub rate_inside: f64,
    pub rate_outside: f64,
    pub rate_ratio: f64, // Haldane–Anscombe corrected, (k + 0.5) / (n + 1), when nothing failed outside
    pub p_value: f64,    // of the factor, adjusted for the others (see `method`)
    pub p_adjusted: f64, // Holm, over every test of the report
    /// `firth_lr` (penalised likelihood ratio, adjusted for `adjusted_for`) or `request_count`.
    pub method: &'static str,
    pub adjusted_for: Vec<&'static str>,
}

/// Two factors that always varied together here.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Confounded {
    pub signature: String,
    pub factors: [&'static str; 2],
    /// Cramér's V between their levels.
    pub association: f64,
    pub advice: String,
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
    /// Significantly more failures in the suspected condition (after the report's correction).
    Yes { evidence: String },
    /// At least 20 requests on each side and no significant excess.
    No { evidence: String },
    /// Too few requests to tell.
    NotEnoughData { evidence: String },
}

const MIN_NO: u64 = 20; // requests on each side before a hypothesis is answered No
/// Signatures analysed on their own, beside all failures together.
const SIGNATURES_ANALYSED: usize = 3;
/// Two factors that travel together at least this much (Cramér's V) may be confounded.
const CONFOUNDED_V: f64 = 0.5;

/// One test entering the report's correction.
enum Test {
    Factor { family: usize, test: attribution::FactorTest },
    RequestCount,
    Rapid,
    Corruption,
}

/// Failure patterns of ONE backend's time-ordered requests; `alpha` outside (0, 1) means 0.05.
pub fn crash_patterns(rows: &[Attempt], alpha: f64) -> CrashReport {
    analyse(rows.iter().cloned().collect(), alpha)
}

/// Failure patterns of ONE backend's requests, as `log` kept them; `alpha` outside (0, 1) means 0.05.
pub fn analyse(log: CrashLog, alpha: f64) -> CrashReport {
    let alpha = if alpha > 0.0 && alpha < 1.0 { alpha } else { 0.05 };
    let failures = log.failures.len() as u64;
    let attempts: Vec<&Attempt> = log.failures.iter().map(|f| &f.attempt).collect();
    let (roles, episodes) = episodes::roles_of_failures(&attempts, &log.runs);
    let triggers: Vec<&Failure> =
        log.failures.iter().zip(&roles).filter(|(_, role)| **role == Role::Trigger).map(|(f, _)| f).collect();
    let trigger_rows: Vec<usize> = triggers.iter().map(|t| t.row).collect();
    // A trigger is a failure the request could have caused, never a consequence: it is analysed.
    let cell = |t: &Failure| {
        let cell = log.requests[t.row].cell;
        debug_assert_ne!(cell, NOT_ANALYSED, "a trigger outside the attribution");
        cell as usize
    };
    let factors = attribution::factors(&log.cells);

    // Families: every trigger, then the commonest trigger signatures on their own.
    let signature_of = |r: &Attempt| r.signature().cloned().unwrap_or_else(|| r.outcome.clone());
    let mut by_signature: BTreeMap<Arc<str>, u64> = BTreeMap::new();
    for t in &triggers {
        *by_signature.entry(signature_of(&t.attempt)).or_default() += 1;
    }
    let total: u64 = by_signature.values().sum();
    let mut top: Vec<(Arc<str>, u64)> = by_signature.into_iter().filter(|(_, n)| *n >= 5 && *n < total).collect();
    top.sort_by_key(|(s, n)| (Reverse(*n), s.clone()));
    top.truncate(SIGNATURES_ANALYSED);
    let signatures = signatures(&attempts);
    let failures_with = |sig: &str| signatures.iter().filter(|g| g.signature == sig).map(|g| g.count).sum::<u64>();
    // (signature, its failures, its triggers per cell)
    let per_cell = |of: &dyn Fn(&Failure) -> bool| {
        let mut k = vec![0u64; log.cells.n.len()];
        triggers.iter().filter(|t| of(t)).for_each(|t| k[cell(t)] += 1);
        k
    };
    let mut families: Vec<(String, u64, Vec<u64>)> = vec![("*".into(), failures, per_cell(&|_| true))];
    for (sig, _) in &top {
        families.push((sig.to_string(), failures_with(sig), per_cell(&|t| signature_of(&t.attempt) == *sig)));
    }

    let table = attribution::Table::new(&factors, &log.cells.n, &families.iter().map(|f| &f.2[..]).collect::<Vec<_>>());
    let mut tests: Vec<(Test, f64)> = Vec::new();
    for family in 0..families.len() {
        for test in attribution::adjusted_tests(&factors, &table, family) {
            let p = test.p_value;
            tests.push((Test::Factor { family, test }, p));
        }
    }
    let points: Vec<CrashPoint> = (triggers.iter())
        .filter_map(|t| {
            let life = &log.lives[t.life];
            t.attempt.seq().map(|seq| CrashPoint {
                life: t.life,
                seq,
                seconds: t.attempt.seconds_since(life.start_ms),
                terminal: life.last_ok.is_none_or(|ok| ok < t.row),
            })
        })
        .collect();
    let at_multiples = |n: u64| {
        let at = |r: &Request| (r.seq > 0 && u64::from(r.seq) % n == 0).then_some(Side::Inside);
        let ((triggers, total), _) = split(&log.requests, &trigger_rows, at);
        (total, triggers)
    };
    let at_request_count = request_count::find(&points, log.lives.len(), at_multiples);
    if let Some(p) = at_request_count.as_ref().and_then(|c| c.p_value) {
        tests.push((Test::RequestCount, p));
    }
    let sides = |mut sides: Sides, of: fn(&Failure) -> Option<Side>| {
        triggers.iter().for_each(|t| tally(&mut sides, of(t), true));
        sides
    };
    let (rapid, corruption) = (sides(log.rapid, |t| t.rapid), sides(log.corruption, |t| t.corruption));
    for (test, counts) in [(Test::Rapid, rapid), (Test::Corruption, corruption)] {
        if counts.0.1.min(counts.1.1) >= MIN_SIDE {
            tests.push((test, fisher(counts)));
        }
    }
    let adjusted = holm(&tests.iter().map(|t| t.1).collect::<Vec<_>>());

    let mut patterns: Vec<(usize, f64, Pattern)> = Vec::new(); // (family, χ², pattern)
    let (mut rapid_adj, mut corruption_adj) = (1.0, 1.0);
    for ((test, p), p_adjusted) in tests.iter().zip(&adjusted) {
        match test {
            Test::Factor { family, test } if *p_adjusted < alpha => {
                let (signature, count, k) = &families[*family];
                let counts = (&log.cells.n[..], &k[..]);
                if let Some(pattern) = factor_pattern(&factors, counts, test, signature, *count, *p, *p_adjusted) {
                    patterns.push((*family, test.statistic, pattern));
                }
            }
            Test::RequestCount if *p_adjusted < alpha => {
                if let Some(c) = &at_request_count {
                    let pattern = count_pattern(&log.requests, &trigger_rows, c, failures, *p, *p_adjusted);
                    patterns.push((0, f64::INFINITY, pattern));
                }
            }
            Test::Rapid => rapid_adj = *p_adjusted,
            Test::Corruption => corruption_adj = *p_adjusted,
            _ => {}
        }
    }
    let by_count = patterns.iter().any(|p| p.2.method == "request_count");
    // A factor that explains the crashes beyond the request count comes first
    // (`request_count::explained_by`).
    let count_explained = by_count
        && at_request_count.as_ref().is_some_and(|c| {
            patterns.iter().any(|(family, _, p)| {
                *family == 0
                    && p.method != "request_count"
                    && request_count::explained_by(
                        &factors,
                        &log.requests,
                        &trigger_rows,
                        c,
                        (p.factor, &p.level),
                        alpha / (tests.len() + 1) as f64,
                    )
            })
        });
    // A request-count crash is the finding about server_seq: it replaces the bucket pattern.
    if by_count {
        patterns.retain(|p| !(p.0 == 0 && p.2.factor == "server_seq" && p.2.method != "request_count"));
    }
    patterns.sort_by(|a, b| {
        let count_first = |p: &Pattern| count_explained || p.method != "request_count";
        a.0.cmp(&b.0)
            .then(count_first(&a.2).cmp(&count_first(&b.2)))
            .then(a.2.p_adjusted.total_cmp(&b.2.p_adjusted))
            .then(b.1.total_cmp(&a.1))
    });
    let at_request_count = at_request_count.filter(|c| c.period.is_some() || by_count);
    // MTBF: the observed span over the episodes.
    let span = log.span.filter(|_| episodes.count > 0 && log.requests.len() > 1);
    let mtbf_s = span.map(|(first, last)| (last as f64 - first as f64).max(0.0) / 1000.0 / episodes.count as f64);
    let hypotheses = Hypotheses {
        rapid_sequential: answer(rapid, rapid_adj, alpha, ["with < 1 s since the previous request", "after >= 1 s"]),
        corruption_after_first_success: answer(
            corruption,
            corruption_adj,
            alpha,
            ["after the first success of a server lifetime", "on the first request of a lifetime"],
        ),
    };
    CrashReport {
        requests: log.requests.len() as u64,
        failures,
        signatures,
        patterns: patterns.into_iter().map(|p| p.2).collect(),
        tested: tests.len(),
        mtbf_s,
        longest_failure_streak: log.runs.longest(),
        median_recovery_s: episodes.recovery_p50_s,
        confounded: confounded(&factors, &table, &log.cells.n, alpha),
        episodes,
        at_request_count,
        hypotheses,
    }
}

/// The pattern of a significant factor: its worst level against the rest, in raw rates.
fn factor_pattern(
    factors: &[Factor],
    (n, k): (&[u64], &[u64]), // requests and triggers per cell
    test: &attribution::FactorTest,
    signature: &str,
    count: u64,
    p_value: f64,
    p_adjusted: f64,
) -> Option<Pattern> {
    let f = &factors[test.factor];
    let (mut inside, mut outside) = ((0u64, 0u64), (0u64, 0u64));
    for ((&level, &n), &k) in f.of.iter().zip(n).zip(k) {
        let side = if usize::from(level) == test.worst { &mut inside } else { &mut outside };
        *side = (side.0 + k, side.1 + n);
    }
    let rate = |k: u64, n: u64, c: f64| if n == 0 { 0.0 } else { (k as f64 + c) / (n as f64 + 2.0 * c) };
    let c = if outside.0 == 0 { 0.5 } else { 0.0 };
    let (rate_inside, rate_outside) = (rate(inside.0, inside.1, 0.0), rate(outside.0, outside.1, 0.0));
    // "Not the first request after a load" is no pattern: the first request is the suspect.
    let level = f.levels[test.worst].clone();
    let protective = f.name == "first_after_load" && level == "no";
    (rate_inside > rate_outside && !protective).then(|| Pattern {
        signature: signature.to_string(),
        count,
        factor: FACTORS[test.factor],
        level,
        failed_inside: inside.0,
        total_inside: inside.1,
        failed_outside: outside.0,
        total_outside: outside.1,
        rate_inside,
        rate_outside,
        rate_ratio: rate(inside.0, inside.1, c) / rate(outside.0, outside.1, c).max(f64::MIN_POSITIVE),
        p_value,
        p_adjusted,
        method: "firth_lr",
        adjusted_for: test.adjusted_for.clone(),
    })
}

/// The request-count pattern as a `server_seq` pattern: triggers at request counts within the
/// crash points' range against the rest.
fn count_pattern(
    requests: &[Request],
    triggers: &[usize],
    c: &RequestCountPattern,
    count: u64,
    p_value: f64,
    p_adjusted: f64,
) -> Pattern {
    let (lo, hi) = c.seq_range;
    // Analysed requests with a known server_seq, inside the range or not.
    let side =
        |r: &Request| (r.cell != NOT_ANALYSED && r.seq > 0).then(|| Side::of((lo..=hi).contains(&u64::from(r.seq))));
    let (inside, outside) = split(requests, triggers, side);
    let rate = |k: u64, n: u64, c: f64| if n == 0 { 0.0 } else { (k as f64 + c) / (n as f64 + 2.0 * c) };
    let h = if outside.0 == 0 { 0.5 } else { 0.0 };
    let bucket =
        |x: f64| ["1-10", "11-100", "101-1000", ">1000"][[11.0, 101.0, 1001.0].iter().take_while(|e| x >= **e).count()];
    Pattern {
        signature: "*".into(),
        count,
        factor: "server_seq",
        level: bucket(c.median_seq).to_string(),
        failed_inside: inside.0,
        total_inside: inside.1,
        failed_outside: outside.0,
        total_outside: outside.1,
        rate_inside: rate(inside.0, inside.1, 0.0),
        rate_outside: rate(outside.0, outside.1, 0.0),
        rate_ratio: rate(inside.0, inside.1, h) / rate(outside.0, outside.1, h).max(f64::MIN_POSITIVE),
        p_value,
        p_adjusted,
        method: "request_count",
        adjusted_for: Vec::new(),
    }
}

/// Mechanisms each significant alone, neither adjusted for the other, that travel together.
fn confounded(factors: &[Factor], table: &attribution::Table, n: &[u64], alpha: f64) -> Vec<Confounded> {
    let tests = attribution::adjusted_tests(factors, table, 0);
    let adjusted = |f: usize| tests.iter().find(|t| t.factor == f).map_or(1.0, |t| t.p_value);
    let alone: Vec<Option<f64>> = (0..MECHANISMS).map(|f| attribution::unadjusted_p(factors, table, 0, f)).collect();
    let mut out = Vec::new();
    for a in 0..MECHANISMS {
        for b in a + 1..MECHANISMS {
            let each_alone = alone[a].is_some_and(|p| p < alpha) && alone[b].is_some_and(|p| p < alpha);
            let neither = adjusted(a) >= alpha && adjusted(b) >= alpha;
            let v = attribution::association(&factors[a], &factors[b], n);
            if each_alone && neither && v >= CONFOUNDED_V {
                let (x, y) = (FACTORS[a].replace('_', " "), FACTORS[b].replace('_', " "));
                out.push(Confounded {
                    signature: "*".into(),
                    factors: [FACTORS[a], FACTORS[b]],
                    association: v,
                    advice: format!(
                        "{x} and {y} varied together in this log (Cramér's V {v:.2}): run a job that changes one with the other fixed{} to tell which one triggers the failures",
                        if FACTORS[a] == "concurrency" && FACTORS[b] == "prompt_size" {
                            " (the context-sweep job at concurrency 1)"
                        } else {
                            ""
                        }
                    ),
                });
            }
        }
    }
    out
}

fn signatures(failures: &[&Attempt]) -> Vec<SignatureGroup> {
    let mut groups = BTreeMap::new(); // (signature, outcome) -> (count, first, last, first error)
    for r in failures {
        let key = (r.signature().map_or(&*r.outcome, |s| &**s), &*r.outcome);
        let g = groups.entry(key).or_insert((0, r.at_ms, r.at_ms, None));
        *g = (g.0 + 1, g.1.min(r.at_ms), g.2.max(r.at_ms), g.3.or(r.error()));
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

fn fisher(((ki, ni), (ko, no)): Sides) -> f64 {
    fisher_exact(ki, ni.saturating_sub(ki), ko, no.saturating_sub(ko))
}

/// Answers "do `inside` requests fail more than `outside` ones?" from the counts and the
/// corrected p-value.
fn answer(sides: Sides, p_adjusted: f64, alpha: f64, names: [&str; 2]) -> Answer {
    let ((ki, ni), (ko, no)) = sides;
    let pct = |k: u64, n: u64| if n == 0 { "n/a".into() } else { format!("{:.0}%", 100.0 * k as f64 / n as f64) };
    let p = fisher(sides);
    let p_text = if p < 0.001 { "< 0.001".into() } else { format!("= {p:.3}") };
    let ([rate_in, rate_out], [inside, outside]) = ([pct(ki, ni), pct(ko, no)], names);
    let evidence = format!(
        "failure rate {rate_in} ({ki}/{ni}) {inside} vs {rate_out} ({ko}/{no}) {outside}, Fisher p {p_text}{}",
        if p_adjusted > p && ni.min(no) >= MIN_SIDE {
            format!(" ({p_adjusted:.3} after the report's correction)")
        } else {
            String::new()
        }
    );
    if ni.min(no) >= MIN_SIDE && p_adjusted < alpha && u128::from(ki) * u128::from(no) > u128::from(ko) * u128::from(ni)
    {
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
#[path = "crashes_tests.rs"]
mod tests;
