//! Wedged and silent-failure verdicts: a server that still answers but generates nothing.
//!
//! Real servers get stuck with their HTTP layer alive — `/health` and `/v1/models` fine — while no
//! generation completes (a deadlocked scheduler, a GPU hang), or after a GPU reset answer every
//! request at once with HTTP 200 and an empty reply. Row by row these are just `no_first_byte`
//! or `empty`; this names the state: the backend's latest `k` generation requests (across runs)
//! all failed the same way, since the first of the streak, and it ends when a request succeeds.

use serde::Serialize;

/// The default streak length.
pub const DEFAULT_AFTER: usize = 3;

/// One recorded generation request, newest first in `assess`'s input.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub at: i64,
    pub outcome: String,
}

/// Which way a server is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StuckKind {
    /// Requests are accepted but never answered: no first byte, a stall, or a timeout.
    Wedged,
    /// Requests are answered at once with an empty reply.
    SilentFailure,
}

impl StuckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StuckKind::Wedged => "wedged",
            StuckKind::SilentFailure => "silent_failure",
        }
    }

    fn of(outcome: &str) -> Option<StuckKind> {
        match outcome {
            "no_first_byte" | "stall" | "timeout" => Some(StuckKind::Wedged),
            "empty" => Some(StuckKind::SilentFailure),
            _ => None,
        }
    }
}

/// A backend stuck now (at the end of the window looked at).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stuck {
    pub kind: StuckKind,
    /// When the first request of the streak started (unix ms).
    pub since: i64,
    /// When the latest one started.
    pub last: i64,
    /// How many requests in a row failed this way.
    pub requests: u64,
    /// The server's own health check at the end, where soakd reads one (`ok`, `http 503`,
    /// `unreachable`); `null` where the kind has none.
    pub health: Option<String>,
}

impl Stuck {
    /// The state in a word or two, for a subject line: `wedged`, `failing silently`.
    pub fn label(&self) -> &'static str {
        match self.kind {
            StuckKind::Wedged => "wedged",
            StuckKind::SilentFailure => "failing silently",
        }
    }

    /// What the server does, and what it says meanwhile — the one wording the report's finding,
    /// the digest and the alert use: ("generating nothing", "although it answers health checks").
    pub fn what_and_why(&self) -> (&'static str, &'static str) {
        match self.kind {
            StuckKind::Wedged if self.health.as_deref() == Some("ok") => {
                ("generating nothing", "although it answers health checks")
            }
            StuckKind::Wedged => ("generating nothing", "although it accepts requests"),
            StuckKind::SilentFailure => ("answering every request empty", "although it says ok"),
        }
    }
}

/// The backend's state from its latest attempts, newest first, and its latest health answer.
/// Stuck when the newest `k` or more all failed the same stuck way; a wedged server whose own
/// health check says it is down is down, not wedged (the failure-streak alert covers that).
pub fn assess(newest_first: &[Attempt], health: Option<&str>, k: usize) -> Option<Stuck> {
    let kind = StuckKind::of(&newest_first.first()?.outcome)?;
    let streak: Vec<&Attempt> = newest_first.iter().take_while(|a| StuckKind::of(&a.outcome) == Some(kind)).collect();
    if streak.len() < k.max(1) {
        return None;
    }
    if kind == StuckKind::Wedged && health.is_some_and(|h| h != "ok") {
        return None;
    }
    Some(Stuck {
        kind,
        since: streak.last()?.at,
        last: streak[0].at,
        requests: streak.len() as u64,
        health: health.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(outcomes: &[&str]) -> Vec<Attempt> {
        // Written oldest first for reading; `assess` takes newest first.
        let mut v: Vec<Attempt> =
            outcomes.iter().enumerate().map(|(i, o)| Attempt { at: i as i64 * 1000, outcome: o.to_string() }).collect();
        v.reverse();
        v
    }

    #[test]
    fn three_unanswered_requests_in_a_row_are_wedged_since_the_first() {
        let s = assess(&log(&["ok", "ok", "no_first_byte", "timeout", "no_first_byte"]), Some("ok"), 3).unwrap();
        assert_eq!((s.kind, s.since, s.last, s.requests), (StuckKind::Wedged, 2000, 4000, 3));
        assert_eq!(s.health.as_deref(), Some("ok"));
    }

    #[test]
    fn a_success_ends_it_and_a_short_streak_is_not_one() {
        assert_eq!(assess(&log(&["no_first_byte", "no_first_byte", "no_first_byte", "ok"]), None, 3), None);
        assert_eq!(assess(&log(&["ok", "no_first_byte", "no_first_byte"]), None, 3), None);
        assert_eq!(assess(&[], None, 3), None);
    }

    #[test]
    fn empty_replies_are_a_silent_failure_and_other_failures_break_the_streak() {
        let s = assess(&log(&["empty", "empty", "empty", "empty"]), None, 3).unwrap();
        assert_eq!((s.kind, s.requests, s.since), (StuckKind::SilentFailure, 4, 0));
        assert_eq!(assess(&log(&["empty", "connect_refused", "empty", "empty"]), None, 3), None);
        assert_eq!(assess(&log(&["empty", "no_first_byte", "no_first_byte"]), None, 3), None, "mixed kinds");
    }

    #[test]
    fn a_server_that_says_it_is_down_is_not_wedged() {
        let streak = log(&["timeout", "timeout", "timeout"]);
        assert_eq!(assess(&streak, Some("unreachable"), 3), None);
        assert!(assess(&streak, None, 3).is_some(), "no health check: the accepted requests decide");
    }
}
