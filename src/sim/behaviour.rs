//! Pure decisions, no network and no clock: what happens to request `n` (normal, a fault, or a
//! crash and why), the server's lifecycle (loaded → crashed / unloaded → reloaded), and the
//! per-request random generator that makes every run with the same `--seed` reproducible.

use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::options::{CrashStyle, FaultKind, FaultSpec, Triggers};

/// What the server knows about a request when it arrives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RequestFacts {
    /// Sequence number of this request, counting from 1.
    pub(crate) n: u64,
    /// Time since the previous request ended; `None` when no request has ended yet.
    pub(crate) gap_since_previous: Option<Duration>,
    /// Requests in flight, this one included.
    pub(crate) in_flight: u32,
    /// Estimated prompt tokens (see `request::prompt_tokens`).
    pub(crate) prompt_tokens: u64,
}

/// Why the simulated engine crashes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CrashReason {
    NthRequest(u64),
    /// `--abort-after`: always a process exit, whatever the crash style.
    Abort(u64),
    Probability(f64),
    Concurrency {
        in_flight: u32,
        limit: u32,
    },
    PromptTokens {
        tokens: u64,
        limit: u64,
    },
    RapidRequest {
        gap: Duration,
        limit: Duration,
    },
}

impl fmt::Display for CrashReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrashReason::NthRequest(n) => write!(f, "request {n} reached --exit-after"),
            CrashReason::Abort(n) => write!(f, "request {n} reached --abort-after"),
            CrashReason::Probability(p) => write!(f, "random crash (--exit-probability {p})"),
            CrashReason::Concurrency { in_flight, limit } => {
                write!(f, "{in_flight} requests in flight, more than --exit-above-concurrency {limit}")
            }
            CrashReason::PromptTokens { tokens, limit } => {
                write!(f, "prompt of {tokens} tokens, more than --exit-above-prompt-tokens {limit}")
            }
            CrashReason::RapidRequest { gap, limit } => write!(
                f,
                "request arrived {} ms after the previous one ended, less than --exit-on-rapid-ms {}",
                gap.as_millis(),
                limit.as_millis()
            ),
        }
    }
}

/// The fate of one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Decision {
    Normal,
    Fault(FaultKind),
    Crash(CrashReason),
}

/// Decide what happens to a request. Crash triggers are checked first (deterministic ones, then
/// `--exit-probability`), then the faults in the order given; at most one applies.
pub(crate) fn decide(triggers: &Triggers, faults: &[FaultSpec], facts: &RequestFacts, rng: &mut impl Rng) -> Decision {
    if triggers.abort_after == Some(facts.n) {
        return Decision::Crash(CrashReason::Abort(facts.n));
    }
    if triggers.exit_after == Some(facts.n) {
        return Decision::Crash(CrashReason::NthRequest(facts.n));
    }
    if let Some(limit) = triggers.exit_above_concurrency.filter(|&limit| facts.in_flight > limit) {
        return Decision::Crash(CrashReason::Concurrency { in_flight: facts.in_flight, limit });
    }
    if let Some(limit) = triggers.exit_above_prompt_tokens.filter(|&limit| facts.prompt_tokens > limit) {
        return Decision::Crash(CrashReason::PromptTokens { tokens: facts.prompt_tokens, limit });
    }
    if let (Some(limit), Some(gap)) = (triggers.exit_on_rapid, facts.gap_since_previous)
        && gap < limit
        && (triggers.rapid_probability >= 1.0 || rng.random::<f64>() < triggers.rapid_probability)
    {
        return Decision::Crash(CrashReason::RapidRequest { gap, limit });
    }
    if triggers.exit_probability > 0.0 && rng.random::<f64>() < triggers.exit_probability {
        return Decision::Crash(CrashReason::Probability(triggers.exit_probability));
    }
    for fault in faults {
        if fault.probability > 0.0 && rng.random::<f64>() < fault.probability {
            return Decision::Fault(fault.kind);
        }
    }
    Decision::Normal
}

/// The random generator for request `n`: derived from the seed and `n` alone, so a request's
/// fate, words and jitter do not depend on how concurrent requests interleave.
pub(crate) fn request_rng(seed: u64, n: u64) -> StdRng {
    StdRng::seed_from_u64(splitmix64(seed ^ splitmix64(n)))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where the simulated engine is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Serving normally.
    Loaded,
    /// Not loaded (after a crash, or at start for Ollama): this many more requests get "Model is
    /// unloaded." (LM Studio style), then the next one loads the model again (JIT loading).
    Unloaded { remaining: u32 },
    /// Exit style with the process kept alive (in-process tests): every connection dies.
    Crashed,
}

/// How a newly arrived request is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Serve,
    /// Load the model first (the request waits `--load-ms`), then serve.
    Load,
    Unloaded,
    Dead,
}

/// What a crash turns into once it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashEffect {
    /// Exit the process with code 134.
    ExitProcess,
    /// Kill this and every other connection; the server is dead from now on.
    Dead,
    /// Answer with LM Studio's crash body; the model is unloaded for a while.
    LmStudioError,
    /// Answer with Ollama's dead-runner error; the next request reloads the model.
    OllamaError,
}

impl Lifecycle {
    /// Admit one request, consuming an "unloaded" answer when one is due.
    pub(crate) fn admit(&mut self) -> Admission {
        match *self {
            Lifecycle::Loaded => Admission::Serve,
            Lifecycle::Crashed => Admission::Dead,
            Lifecycle::Unloaded { remaining: 0 } => {
                *self = Lifecycle::Loaded;
                Admission::Load
            }
            Lifecycle::Unloaded { remaining } => {
                *self = Lifecycle::Unloaded { remaining: remaining - 1 };
                Admission::Unloaded
            }
        }
    }

    /// Whether the model is loaded (LM Studio's `state`, Ollama's `/api/ps`).
    pub(crate) fn is_loaded(self) -> bool {
        self == Lifecycle::Loaded
    }

    /// Record a crash and say what it does.
    pub(crate) fn crash(&mut self, style: CrashStyle, exit_on_crash: bool, unloaded_requests: u32) -> CrashEffect {
        match style {
            CrashStyle::Exit if exit_on_crash => CrashEffect::ExitProcess,
            CrashStyle::Exit => {
                *self = Lifecycle::Crashed;
                CrashEffect::Dead
            }
            CrashStyle::Lmstudio => {
                if *self != Lifecycle::Crashed {
                    *self = Lifecycle::Unloaded { remaining: unloaded_requests };
                }
                CrashEffect::LmStudioError
            }
            CrashStyle::Ollama => {
                if *self != Lifecycle::Crashed {
                    *self = Lifecycle::Unloaded { remaining: 0 };
                }
                CrashEffect::OllamaError
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(n: u64) -> RequestFacts {
        RequestFacts { n, gap_since_previous: Some(Duration::from_secs(10)), in_flight: 1, prompt_tokens: 10 }
    }

    fn rng() -> StdRng {
        request_rng(7, 1)
    }

    #[test]
    fn no_triggers_means_normal() {
        let triggers = Triggers::default();
        for n in 1..50 {
            assert_eq!(decide(&triggers, &[], &facts(n), &mut request_rng(0, n)), Decision::Normal);
        }
    }

    #[test]
    fn exit_after_fires_on_exactly_the_nth_request() {
        let triggers = Triggers { exit_after: Some(3), ..Triggers::default() };
        assert_eq!(decide(&triggers, &[], &facts(2), &mut rng()), Decision::Normal);
        assert_eq!(decide(&triggers, &[], &facts(3), &mut rng()), Decision::Crash(CrashReason::NthRequest(3)));
        assert_eq!(decide(&triggers, &[], &facts(4), &mut rng()), Decision::Normal);
    }

    #[test]
    fn concurrency_trigger_needs_more_than_k_in_flight() {
        let triggers = Triggers { exit_above_concurrency: Some(2), ..Triggers::default() };
        let mut f = facts(1);
        f.in_flight = 2;
        assert_eq!(decide(&triggers, &[], &f, &mut rng()), Decision::Normal);
        f.in_flight = 3;
        assert_eq!(
            decide(&triggers, &[], &f, &mut rng()),
            Decision::Crash(CrashReason::Concurrency { in_flight: 3, limit: 2 })
        );
    }

    #[test]
    fn prompt_token_trigger_needs_more_than_t() {
        let triggers = Triggers { exit_above_prompt_tokens: Some(100), ..Triggers::default() };
        let mut f = facts(1);
        f.prompt_tokens = 100;
        assert_eq!(decide(&triggers, &[], &f, &mut rng()), Decision::Normal);
        f.prompt_tokens = 101;
        assert!(matches!(
            decide(&triggers, &[], &f, &mut rng()),
            Decision::Crash(CrashReason::PromptTokens { tokens: 101, .. })
        ));
    }

    #[test]
    fn rapid_trigger_needs_a_previous_request_and_a_short_gap() {
        let triggers =
            Triggers { exit_on_rapid: Some(Duration::from_millis(50)), rapid_probability: 1.0, ..Triggers::default() };
        let mut f = facts(1);
        f.gap_since_previous = None;
        assert_eq!(decide(&triggers, &[], &f, &mut rng()), Decision::Normal);
        f.gap_since_previous = Some(Duration::from_millis(50));
        assert_eq!(decide(&triggers, &[], &f, &mut rng()), Decision::Normal);
        f.gap_since_previous = Some(Duration::from_millis(10));
        assert!(matches!(decide(&triggers, &[], &f, &mut rng()), Decision::Crash(CrashReason::RapidRequest { .. })));
    }

    #[test]
    fn abort_comes_first() {
        let triggers = Triggers { abort_after: Some(3), exit_after: Some(3), ..Triggers::default() };
        assert_eq!(decide(&triggers, &[], &facts(3), &mut rng()), Decision::Crash(CrashReason::Abort(3)));
        assert_eq!(decide(&triggers, &[], &facts(2), &mut rng()), Decision::Normal);
    }

    #[test]
    fn rapid_crashes_follow_their_probability() {
        let triggers =
            Triggers { exit_on_rapid: Some(Duration::from_millis(50)), rapid_probability: 0.3, ..Triggers::default() };
        let mut crashes = 0;
        for n in 1..=2000 {
            let mut f = facts(n);
            f.gap_since_previous = Some(Duration::from_millis(1));
            if matches!(decide(&triggers, &[], &f, &mut request_rng(7, n)), Decision::Crash(_)) {
                crashes += 1;
            }
        }
        assert!((500..700).contains(&crashes), "{crashes} of 2000 at p = 0.3");
    }

    #[test]
    fn exit_probability_is_a_rate() {
        let always = Triggers { exit_probability: 1.0, ..Triggers::default() };
        assert_eq!(decide(&always, &[], &facts(1), &mut rng()), Decision::Crash(CrashReason::Probability(1.0)));
        let some = Triggers { exit_probability: 0.3, ..Triggers::default() };
        let crashes = (1..=2000)
            .filter(|&n| matches!(decide(&some, &[], &facts(n), &mut request_rng(42, n)), Decision::Crash(_)))
            .count();
        assert!((450..750).contains(&crashes), "{crashes} of 2000");
    }

    #[test]
    fn every_fault_kind_can_be_chosen_and_the_first_match_wins() {
        for kind in FaultKind::ALL {
            let faults = [FaultSpec { kind, probability: 1.0 }];
            assert_eq!(decide(&Triggers::default(), &faults, &facts(1), &mut rng()), Decision::Fault(kind));
        }
        let faults = [
            FaultSpec { kind: FaultKind::Hang, probability: 0.0 },
            FaultSpec { kind: FaultKind::Reset, probability: 1.0 },
            FaultSpec { kind: FaultKind::Empty, probability: 1.0 },
        ];
        assert_eq!(decide(&Triggers::default(), &faults, &facts(1), &mut rng()), Decision::Fault(FaultKind::Reset));
    }

    #[test]
    fn crash_triggers_take_precedence_over_faults() {
        let triggers = Triggers { exit_after: Some(1), ..Triggers::default() };
        let faults = [FaultSpec { kind: FaultKind::Http500, probability: 1.0 }];
        assert!(matches!(decide(&triggers, &faults, &facts(1), &mut rng()), Decision::Crash(_)));
    }

    #[test]
    fn fault_rate_and_reproducibility() {
        let faults = [FaultSpec { kind: FaultKind::Truncate, probability: 0.1 }];
        let run = |seed| -> Vec<Decision> {
            (1..=1000).map(|n| decide(&Triggers::default(), &faults, &facts(n), &mut request_rng(seed, n))).collect()
        };
        let a = run(5);
        assert_eq!(a, run(5), "same seed, same decisions");
        assert_ne!(a, run(6), "another seed, other decisions");
        let hits = a.iter().filter(|d| **d != Decision::Normal).count();
        assert!((50..150).contains(&hits), "{hits} of 1000");
    }

    #[test]
    fn lmstudio_lifecycle_unloads_then_reloads() {
        let mut life = Lifecycle::Loaded;
        assert_eq!(life.admit(), Admission::Serve);
        assert_eq!(life.crash(CrashStyle::Lmstudio, true, 2), CrashEffect::LmStudioError);
        assert!(!life.is_loaded());
        assert_eq!(life.admit(), Admission::Unloaded);
        assert_eq!(life.admit(), Admission::Unloaded);
        assert!(!life.is_loaded(), "not loaded until a request loads it");
        assert_eq!(life.admit(), Admission::Load);
        assert!(life.is_loaded());
        assert_eq!(life.admit(), Admission::Serve);
        assert_eq!(life.crash(CrashStyle::Lmstudio, false, 0), CrashEffect::LmStudioError);
        assert_eq!(life.admit(), Admission::Load);
    }

    #[test]
    fn ollama_lifecycle_reloads_on_the_next_request() {
        let mut life = Lifecycle::Loaded;
        assert_eq!(life.crash(CrashStyle::Ollama, true, 5), CrashEffect::OllamaError, "the server stays up");
        assert!(!life.is_loaded());
        assert_eq!(life.admit(), Admission::Load);
        assert_eq!(life.admit(), Admission::Serve);
    }

    #[test]
    fn exit_lifecycle_exits_or_stays_dead() {
        let mut life = Lifecycle::Loaded;
        assert_eq!(life.crash(CrashStyle::Exit, true, 2), CrashEffect::ExitProcess);
        assert_eq!(life.crash(CrashStyle::Exit, false, 2), CrashEffect::Dead);
        for _ in 0..3 {
            assert_eq!(life.admit(), Admission::Dead);
        }
    }

    #[test]
    fn crash_reasons_read_as_sentences() {
        let text =
            CrashReason::RapidRequest { gap: Duration::from_millis(3), limit: Duration::from_millis(50) }.to_string();
        assert!(text.contains("3 ms") && text.contains("--exit-on-rapid-ms 50"), "{text}");
        assert!(CrashReason::NthRequest(5).to_string().contains("request 5"));
    }
}
