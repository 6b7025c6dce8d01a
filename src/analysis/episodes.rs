//! Failure episodes: a crash is followed by failures it caused — requests in flight that die with
//! it, refused connections while the server is down, "503 Loading model" while it loads, LM
//! Studio's "Model is unloaded" — until the server answers again. Each crash has one trigger: of
//! the failures that ended with it (started before it, ended within a second of it: those in
//! flight at the crash), the one that started last and that the request itself could have caused
//! (the request that pushed the server over: one more concurrent stream, a long prefill, a rapid
//! follow-up; the others were merely in flight). Crashes are found by when failures ended, not by
//! runs of failures in start order, which a short success in between would split. A failure the
//! request could have caused that started after that crash is a new crash of a server that had
//! come back, with its own trigger. The rest are counted apart (what a client sees meanwhile, how long recovery
//! takes): failures that say the server was not there are left out of the crash attribution (those
//! requests were never at risk); the others (victims) stay in it as requests that did not trigger
//! — leaving them out would drop long requests, the likeliest to be in flight at any crash, and
//! make long prompts look guilty.

use serde::Serialize;
use std::collections::BTreeMap;

use super::attempt::Attempt;
use crate::measure::stats::{median, percentiles};

/// What a request was to the crash analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Ok,
    /// The failure of an episode that the request could have caused.
    Trigger,
    /// Another failure of the episode that could have been caused by its request, but came with
    /// the trigger (in flight when it crashed) or after it: at risk, and not the trigger.
    Victim,
    /// A failure that says the server was not there (refused, loading, unloaded): not at risk.
    Consequence,
}

/// Episodes of one backend's failures, as the report shows them.
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct Episodes {
    /// Runs of failures ended by a success (or by the end of the log).
    pub count: u64,
    /// Triggers: crashes the requests could have caused (an episode may hold several when the
    /// server came back and crashed again before a request succeeded; one that began with the
    /// server already gone, killed between requests or while idle, may hold none).
    pub triggered: u64,
    /// Failures that followed a trigger or a gone server, by outcome.
    pub consequences: BTreeMap<String, u64>,
    /// From an episode's first failure to the next success, seconds: median and 95th percentile.
    pub recovery_p50_s: Option<f64>,
    pub recovery_p95_s: Option<f64>,
    /// Failures per episode, median.
    pub failures_p50: Option<f64>,
}

/// Phrases of a server that is not there to ask: the request cannot have caused them.
const UNAVAILABLE: [&str; 8] = [
    "loading model",
    "model is loading",
    "model is unloaded",
    "model not loaded",
    "no model loaded",
    "not loaded",
    "unavailable_error",
    "service unavailable",
];

/// Whether a failure says the server was not there: no connection, 503, or a loading/unloaded
/// answer.
pub fn unavailable(r: &Attempt) -> bool {
    if matches!(&*r.outcome, "connect_refused" | "connect_timeout" | "connect_error") || r.http_status() == Some(503) {
        return true;
    }
    let text = r.error().or(r.signature().map(|s| &**s)).unwrap_or("");
    let head = text.char_indices().nth(512).map_or(text, |(end, _)| &text[..end]);
    UNAVAILABLE_TEXT.is_match(head)
}

/// `UNAVAILABLE`, any of them, in any case: one pass over a failure's text, no copy of it (a
/// crash-looping server's log holds hundreds of thousands of failures).
static UNAVAILABLE_TEXT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    let any: Vec<String> = UNAVAILABLE.iter().map(|p| regex::escape(p)).collect();
    regex::Regex::new(&format!("(?i){}", any.join("|"))).expect("escaped phrases make a valid pattern")
});

/// Runs of failures in start order, counted as the requests stream past: each run is an episode,
/// ended by a success (its recovery: from the run's first failure to that success) or by the end
/// of the log.
#[derive(Debug, Default)]
pub struct Runs {
    open: Option<(i64, u64)>, // the open run's first start and its failures so far
    sizes: Vec<f64>,
    recoveries: Vec<f64>,
    longest: u64,
}

impl Runs {
    /// The next request, in start order.
    pub fn push(&mut self, at_ms: i64, failed: bool) {
        match (&mut self.open, failed) {
            (Some((_, n)), true) => *n += 1,
            (None, true) => self.open = Some((at_ms, 1)),
            (Some((first, n)), false) => {
                self.recoveries.push(at_ms.saturating_sub(*first) as f64 / 1000.0);
                self.sizes.push(*n as f64);
                self.longest = self.longest.max(*n);
                self.open = None;
            }
            (None, false) => {}
        }
    }

    /// Episodes so far, the open one included.
    pub fn count(&self) -> u64 {
        self.sizes.len() as u64 + u64::from(self.open.is_some())
    }

    /// The longest run of consecutive failures.
    pub fn longest(&self) -> u64 {
        self.longest.max(self.open.map_or(0, |o| o.1))
    }
}

/// The role of each failure of one backend (time-ordered; the successes between them play no
/// part in it) and the episodes' summary, with the runs counted over all its requests.
pub fn roles_of_failures(failures: &[&Attempt], runs: &Runs) -> (Vec<Role>, Episodes) {
    let mut roles: Vec<Role> =
        failures.iter().map(|r| if unavailable(r) { Role::Consequence } else { Role::Victim }).collect();
    let mut summary = Episodes::default();
    // The trigger of each crash: of the failures in flight at it, the last started.
    for crash in crashes(failures, &roles) {
        if let Some(&trigger) = crash.iter().max_by_key(|&&k| (failures[k].at_ms, k)) {
            roles[trigger] = Role::Trigger;
            summary.triggered += 1;
        }
    }
    for (r, role) in failures.iter().zip(&roles) {
        if matches!(role, Role::Victim | Role::Consequence) {
            *summary.consequences.entry(r.outcome.to_string()).or_default() += 1;
        }
    }
    let sizes = runs.sizes.iter().copied().chain(runs.open.map(|o| o.1 as f64));
    summary.count = runs.count();
    let [p50, p95] = percentiles(runs.recoveries.iter().map(|s: &f64| s.max(0.0)), [50.0, 95.0]);
    (summary.recovery_p50_s, summary.recovery_p95_s) = (p50, p95);
    summary.failures_p50 = median(sizes);
    (roles, summary)
}

/// The role of each request (time-ordered) and the episodes' summary.
#[cfg(test)]
pub fn roles(rows: &[Attempt]) -> (Vec<Role>, Episodes) {
    let mut runs = Runs::default();
    rows.iter().for_each(|r| runs.push(r.at_ms, r.failed));
    let failed: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].failed).collect();
    let (of_failures, summary) = roles_of_failures(&failed.iter().map(|&i| &rows[i]).collect::<Vec<_>>(), &runs);
    let mut roles = vec![Role::Ok; rows.len()];
    failed.iter().zip(of_failures).for_each(|(&i, role)| roles[i] = role);
    (roles, summary)
}

/// Failures that end within this long of a crash, having started before it, died with it.
const CRASH_TOLERANCE_MS: i64 = 1_000;

/// The crashes: failures the request could have caused, grouped by the moment they ended. The
/// earliest-ending open failure marks a crash; every other such failure that had started by then
/// and ended with it (within `CRASH_TOLERANCE_MS`) was in flight at it. Grouping by end time, not
/// by runs of failures in start order, keeps one crash one crash when a short request started
/// after the trigger succeeds before it: split there, each long request that merely died with
/// the crash would count as a crash of its own — and long requests, in flight at more crashes,
/// would look guilty.
fn crashes(failures: &[&Attempt], roles: &[Role]) -> Vec<Vec<usize>> {
    let end = |k: usize| failures[k].at_ms.saturating_add(failures[k].e2e_ms().unwrap_or(0.0).max(0.0) as i64);
    let mut open: Vec<usize> = (0..failures.len()).filter(|&k| roles[k] != Role::Consequence).collect();
    open.sort_by_key(|&k| (end(k), k));
    let mut taken = vec![false; failures.len()];
    let mut out = Vec::new();
    for (n, &first) in open.iter().enumerate() {
        if taken[first] {
            continue;
        }
        let at = end(first);
        let mut crash = vec![first];
        taken[first] = true;
        for &k in &open[n + 1..] {
            if end(k) > at.saturating_add(CRASH_TOLERANCE_MS) {
                break;
            }
            if !taken[k] && failures[k].at_ms <= at {
                taken[k] = true;
                crash.push(k);
            }
        }
        out.push(crash);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::attempt::FailureDetail;
    use std::sync::Arc;

    fn row(at_ms: i64, outcome: &str, error: Option<&str>, status: Option<u16>) -> Attempt {
        let failure =
            Some(Box::new(FailureDetail { error: error.map(Arc::from), http_status: status, ..Default::default() }));
        Attempt { at_ms, failed: outcome != "ok", outcome: Arc::from(outcome), failure, ..Default::default() }
    }

    #[test]
    fn a_server_not_there_is_read_from_its_words_in_any_case_within_their_first_512_characters() {
        let says = |error: &str| unavailable(&row(0, "http_error", Some(error), Some(500)));
        assert!(says(r#"HTTP 500: {"error":"Model is Unloaded."}"#));
        assert!(says("SERVICE UNAVAILABLE"));
        assert!(says(&format!("{}loading model", "é".repeat(499))));
        assert!(!says(&format!("{}loading model", "é".repeat(500))));
        assert!(!says("model crashed while loading"));
        // A failure without its text is read from its signature.
        let signature = Attempt {
            failure: Some(Box::new(FailureDetail {
                signature: Some(Arc::from("http <n>: no model loaded")),
                ..Default::default()
            })),
            ..row(0, "http_error", None, Some(500))
        };
        assert!(unavailable(&signature));
    }

    #[test]
    fn a_crash_then_refusals_and_loading_is_one_triggered_episode() {
        let rows = vec![
            row(0, "ok", None, Some(200)),
            row(1_000, "reset_mid_stream", Some("connection reset"), Some(200)),
            row(1_100, "connect_refused", Some("Connection refused"), None),
            row(1_200, "connect_refused", Some("Connection refused"), None),
            row(2_500, "http_error", Some("HTTP 503: Loading model"), Some(503)),
            row(4_000, "ok", None, Some(200)),
        ];
        let (roles, e) = roles(&rows);
        use Role::*;
        assert_eq!(roles, [Ok, Trigger, Consequence, Consequence, Consequence, Ok]);
        assert_eq!((e.count, e.triggered, e.recovery_p50_s, e.failures_p50), (1, 1, Some(3.0), Some(4.0)));
        assert_eq!(e.consequences.get("connect_refused"), Some(&2));
    }

    #[test]
    fn a_server_that_came_back_and_crashed_again_has_two_triggers() {
        let rows = vec![
            row(0, "server_reported_crash", Some("The model has crashed"), Some(500)),
            row(10, "server_reported_crash", Some("Model is unloaded."), Some(400)),
            row(20, "server_reported_crash", Some("The model has crashed"), Some(500)),
            row(30, "ok", None, Some(200)),
        ];
        let (roles, e) = roles(&rows);
        assert_eq!(roles, [Role::Trigger, Role::Consequence, Role::Trigger, Role::Ok]);
        assert_eq!((e.count, e.triggered), (1, 2));
    }

    #[test]
    fn of_the_requests_in_flight_at_a_crash_the_last_started_triggered_it() {
        let mut a = row(0, "reset_mid_stream", Some("reset"), Some(200));
        a.detail().e2e_ms = Some(900.0);
        let mut b = row(300, "reset_mid_stream", Some("reset"), Some(200));
        b.detail().e2e_ms = Some(600.0);
        let mut c = row(700, "reset_mid_stream", Some("reset"), Some(200));
        c.detail().e2e_ms = Some(200.0);
        let d = row(1_000, "connect_refused", Some("Connection refused"), None);
        let (roles, _) = roles(&[a, b, c, d]);
        assert_eq!(roles, [Role::Victim, Role::Victim, Role::Trigger, Role::Consequence]);
    }

    /// A short request that started after the crash's trigger and succeeded before the crash
    /// does not split it: the long request that died with it is a victim, not a second crash.
    #[test]
    fn a_success_in_between_does_not_make_a_victim_a_crash_of_its_own() {
        let mut long = row(0, "reset_mid_stream", Some("reset"), Some(200));
        long.detail().e2e_ms = Some(2_000.0);
        let mut short = row(500, "ok", None, Some(200));
        short.detail().e2e_ms = Some(300.0);
        let mut trigger = row(1_000, "reset_mid_stream", Some("reset"), Some(200));
        trigger.detail().e2e_ms = Some(1_000.0);
        let gone = row(2_100, "connect_refused", Some("Connection refused"), None);
        let (roles, e) = roles(&[long, short, trigger, gone]);
        assert_eq!(roles, [Role::Victim, Role::Ok, Role::Trigger, Role::Consequence]);
        assert_eq!((e.count, e.triggered), (2, 1));
    }

    #[test]
    fn an_episode_of_a_server_already_gone_has_no_trigger_until_a_real_failure() {
        let rows = vec![
            row(0, "connect_refused", Some("Connection refused"), None),
            row(10, "server_reported_crash", Some("Model is unloaded."), Some(400)),
            row(20, "http_error", Some("HTTP 500: boom"), Some(500)),
            row(30, "empty", None, Some(200)),
        ];
        let (roles, e) = roles(&rows);
        assert_eq!(roles, [Role::Consequence, Role::Consequence, Role::Trigger, Role::Trigger]);
        assert_eq!((e.count, e.triggered, e.recovery_p50_s), (1, 2, None));
        assert!(super::roles(&[]).1 == Episodes::default());
    }
}
