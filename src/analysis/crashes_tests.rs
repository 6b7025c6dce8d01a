//! Crash attribution on seeded request rows: the factor that fails and nothing else, random
//! failures with no pattern, bursts, request counts, the seed report's hypotheses, episodes, and
//! 200,000 rows with a rare pattern.

use super::*;
use crate::analysis::attempt::FailureDetail;

/// splitmix64 of (seed, i, salt): reproducible draws without a generator's state.
fn draw(seed: u64, i: usize, salt: u64) -> u64 {
    let z = (seed ^ (i as u64) << 20 ^ salt << 52).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fail(r: Attempt) -> Attempt {
    let error = Some("The model has crashed without additional information.".into());
    let failure = Some(Box::new(FailureDetail { signature: Some("crash".into()), error, ..Default::default() }));
    Attempt { failed: true, outcome: "http_error".into(), failure, ..r }
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
fn checked(rows: &[Attempt]) -> CrashReport {
    let r = crash_patterns(rows, 0.05);
    let count = r.at_request_count.iter().flat_map(|c| [c.median_seq, c.seq_cv, c.time_cv]);
    let rates = r.patterns.iter().flat_map(|p| [p.rate_inside, p.rate_outside, p.rate_ratio, p.p_adjusted]);
    assert!([r.mtbf_s, r.median_recovery_s].into_iter().flatten().chain(count).chain(rates).all(f64::is_finite));
    assert!(serde_json::to_string(&r).is_ok());
    r
}

fn top(rows: &[Attempt]) -> Vec<(&'static str, String)> {
    checked(rows).patterns.into_iter().map(|p| (p.factor, p.level)).collect()
}

#[test]
fn finds_the_factor_that_fails_and_nothing_else() {
    assert_eq!(top(&rows(5000, 1, |r, u| r.concurrency > 4 && u < 0.3)), [("concurrency", "8".to_string())]);
    assert_eq!(top(&rows(5000, 2, |r, u| r.prompt_chars >= 64_000 && u < 0.3)), [("prompt_size", ">=16k".into())]);
    let rapid = rows(5000, 3, |r, u| r.gap_ms.is_some_and(|g| g < 100.0) && u < 0.3);
    assert_eq!(top(&rapid), [("gap", "<100ms".into())]);
    assert!(matches!(checked(&rapid).hypotheses.rapid_sequential, Answer::Yes { .. }));
}

#[test]
fn random_failures_make_no_pattern() {
    let report = checked(&rows(9000, 4, |_, u| u < 0.05));
    assert!(report.patterns.is_empty() && report.tested >= 7, "{:?} {}", report.patterns, report.tested);
    assert!(matches!(report.hypotheses.rapid_sequential, Answer::No { .. }));
    assert!(matches!(report.hypotheses.corruption_after_first_success, Answer::No { .. }));
    let alarms = (100..150).filter(|&s| !top(&rows(5000, s, |_, u| u < 0.05)).is_empty()).count();
    eprintln!("random 5% failures: {alarms} of 50 seeds produced a pattern");
    assert!(alarms <= 5, "{alarms} of 50");
}

#[test]
fn back_to_back_crashes_after_a_fixed_burst_are_the_gap() {
    // Each life serves a spaced burst of 95-105 requests, waits 10-60 min, then dies on one of
    // the back-to-back requests that follow: its lives end at about the 100th request, yet
    // the spaced requests past 100 live on.
    let (mut rows, mut at_ms): (Vec<Attempt>, i64) = (Vec::new(), 0);
    for life in 0..30u32 {
        let (spaced, dies_after) = (95 + life * 7 % 11, 1 + life % 3);
        let pause = 600_000.0 * f64::from(1 + life * 5 % 6);
        let spaced = (0..spaced).map(|_| (2000.0, false));
        let rapid = (0..=dies_after).map(|k| (if k == 0 { pause } else { 50.0 }, k == dies_after));
        for (seq, (gap, fails)) in spaced.chain(rapid).enumerate() {
            at_ms += gap as i64;
            rows.push(Attempt { gap_ms: Some(gap), ..row(at_ms, life, seq as u64 + 1, fails) });
        }
    }
    let report = checked(&rows);
    assert!(report.at_request_count.is_some(), "lives end at about the 100th request");
    let first = report.patterns.first().map(|p| (p.factor, p.level.as_str()));
    assert_eq!(first, Some(("gap", "<100ms")), "{:?}", report.patterns);
}

#[test]
fn crashes_at_a_request_count() {
    // 20 lifetimes, each dying at about its 200th request; their pace differs tenfold.
    let mut rows: Vec<Attempt> = Vec::new();
    for life in 0..20 {
        let (crash_at, pace, start) = (200 + u64::from(life * 7 % 20), [1, 3, 10][life as usize % 3], rows.len());
        rows.extend((1..=crash_at).map(|s| row(1000 * (start as i64 + s as i64 * pace), life, s, s == crash_at)));
    }
    let report = checked(&rows);
    assert_eq!(report.patterns.first().map(|p| (p.factor, p.level.as_str())), Some(("server_seq", "101-1000")));
    let count = report.at_request_count.expect("request-count pattern");
    assert_eq!((count.lifetimes, count.period), (20, None));
    assert!(count.seq_cv < 0.05 && count.time_cv > 0.3 && (200.0..220.0).contains(&count.median_seq), "{count:?}");
    // ollama #263: every 500th request fails, the server lives on.
    let periodic: Vec<Attempt> = (1..=2000).map(|s| row(s as i64 * 1000, 7, s, s % 500 == 0)).collect();
    assert_eq!(checked(&periodic).at_request_count.and_then(|c| c.period), Some(500));
    assert!(checked(&rows[..5]).at_request_count.is_none());
    // An even pace: lives that end at about their 500th request also last about as long
    // (here more alike in time than in requests). Still a request count.
    let mut even: Vec<Attempt> = Vec::new();
    for life in 0..6u32 {
        let (crash_at, start) = (490 + u64::from(life * 7 % 20), even.len() as i64 * 1000);
        // Lives with more requests ran faster: durations vary a quarter as much.
        let ms = 1000.0 * (497.5 / crash_at as f64).powf(0.75);
        let pace = |s: u64| start + (s as f64 * ms) as i64;
        even.extend((1..=crash_at).map(|s| row(pace(s), life, s, s == crash_at)));
    }
    let count = checked(&even).at_request_count.expect("request-count pattern under an even pace");
    assert!(count.seq_cv > 3.0 * count.time_cv, "{count:?}");
}

#[test]
fn seed_report_hypotheses() {
    // LM Studio, 2 of 5 requests crashed after the first success: too little to say anything.
    let five = (0..5).map(|i| Attempt { gap_ms: Some(200.0), ..row(i * 3000, 1, i as u64 + 1, i % 2 == 1) });
    let report = checked(&five.collect::<Vec<_>>());
    assert!(report.patterns.is_empty() && report.tested == 0 && report.failures == 2);
    let Hypotheses { rapid_sequential: rapid, corruption_after_first_success: corruption } = report.hypotheses;
    assert!(matches!((rapid, corruption), (Answer::NotEnoughData { .. }, Answer::NotEnoughData { .. })));
    // 30 reloads: each lifetime's first request works, then 4 of the next 9 fail (each failure
    // its own episode: a success comes between).
    let rows: Vec<Attempt> =
        (0..300).map(|i| row(i * 1000, i as u32 / 10, i as u64 % 10 + 1, [3, 5, 7, 9].contains(&(i % 10)))).collect();
    let answer = checked(&rows).hypotheses.corruption_after_first_success;
    assert!(matches!(answer, Answer::Yes { ref evidence } if evidence.contains("(0/30)")), "{answer:?}");
}

#[test]
fn episodes_streaks_recovery_and_signatures() {
    let plan = [(0, ""), (10, "c"), (20, "c"), (30, ""), (40, ""), (50, "t"), (60, "c"), (70, "c"), (100, "")];
    let rows: Vec<Attempt> = (plan.iter())
        .map(|&(s, sig)| {
            let mut r = row(s * 1000, 1, 1, !sig.is_empty());
            r.detail().signature = (sig == "c").then(|| sig.into()); // "t" has none: grouped under its outcome
            r.detail().error = Some(sig.repeat(400).into());
            r
        })
        .collect();
    let r = checked(&rows);
    assert_eq!((r.mtbf_s, r.longest_failure_streak, r.median_recovery_s), (Some(50.0), 3, Some(35.0)));
    let groups: Vec<_> = r.signatures.iter().map(|g| (g.signature.as_str(), g.count, g.first_ms, g.last_ms)).collect();
    assert_eq!(groups, [("c", 4, 10_000, 70_000), ("http_error", 1, 50_000, 50_000)]);
    assert_eq!(r.signatures.iter().map(|g| g.example.chars().count()).collect::<Vec<_>>(), [300, 300]);
}

#[test]
fn degenerate_inputs_give_empty_valid_reports() {
    let odd = |r| Attempt { gap_ms: Some(f64::NAN), hour_local: 99, server_seq: Some(0), ..r };
    let odd = rows(50, 8, |_, u| u < 0.5).into_iter().map(odd).collect();
    for input in [vec![], rows(1, 7, |_, _| true), rows(40, 7, |_, _| true), odd] {
        assert!(checked(&input).patterns.is_empty() && crash_patterns(&input, f64::NAN).patterns.is_empty());
    }
    let ok = checked(&rows(2000, 7, |_, _| false));
    assert!(ok.failures == 0 && ok.signatures.is_empty() && ok.mtbf_s.is_none() && ok.at_request_count.is_none());
    assert!(ok.patterns.is_empty() && ok.median_recovery_s.is_none() && ok.episodes.count == 0);
}

#[test]
fn two_hundred_thousand_rows_find_the_rare_pattern() {
    // (Speed is measured by `cargo bench --bench report_90d`; a million rows take ~1.4 s there.)
    let rows = rows(200_000, 9, |r, u| r.concurrency == 8 && u < 0.02);
    let start = std::time::Instant::now();
    let report = crash_patterns(&rows, 0.05);
    eprintln!("200,000 rows analysed in {:?}", start.elapsed());
    let top = report.patterns.first().map(|p| (p.factor, p.level.as_str()));
    assert_eq!(top, Some(("concurrency", "8")));
}
