//! The script of one reply, decided up front from the request, the options and the request's
//! seeded RNG: which tokens (reasoning words, content words or a tool call), the delay before
//! each, the finish reason, and where a fault or crash cuts in. Pure; `stream.rs` and
//! `complete.rs` only play a script back.

use std::time::Duration;

use rand::Rng;

use super::behaviour::{CrashReason, Decision};
use super::options::{FaultKind, Options, Speed};
use super::request::ChatRequest;

/// The arguments of the simulated tool call, split the way a model would stream them.
pub(crate) const TOOL_ARGUMENT_PIECES: [&str; 3] = ["{\"location\"", ": \"Paris\"", "}"];

/// Short printable words the sim "generates".
const WORDS: [&str; 48] = [
    "the", "model", "is", "running", "on", "a", "small", "local", "server", "and", "it", "keeps", "writing", "tokens",
    "until", "max", "length", "is", "reached", "so", "every", "reply", "has", "exactly", "as", "many", "words", "as",
    "asked", "for", "by", "client", "soak", "test", "memory", "stable", "fast", "slow", "cache", "prompt", "stream",
    "token", "metal", "apple", "silicon", "quiet", "night", "again",
];

/// One generated token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Piece {
    Reasoning(String),
    Content(String),
    /// The tool call's header: id and function name, empty arguments.
    ToolStart {
        id: String,
        name: String,
    },
    ToolArguments(&'static str),
}

/// What interrupts a reply, and after how many pieces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cut {
    /// Pieces delivered before the cut.
    pub(crate) at: usize,
    pub(crate) kind: CutKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CutKind {
    Crash(CrashReason),
    Reset,
    Truncate,
    Stall(Duration),
    Malformed,
}

/// How a reply is answered before any token is produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Opening {
    /// Play the script.
    Script,
    /// An HTTP error status with a fault body, at once.
    HttpError(FaultKind),
    /// Never answer.
    Hang,
}

/// The whole reply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Script {
    pub(crate) opening: Opening,
    pub(crate) pieces: Vec<Piece>,
    /// `delays[i]` is slept before piece `i`; `delays[pieces.len()]` is the wait before the
    /// finish (0 unless there are no pieces, when it is the time to first byte of content).
    pub(crate) delays: Vec<Duration>,
    pub(crate) cut: Option<Cut>,
    pub(crate) finish_reason: &'static str,
}

impl Script {
    /// Total time from acceptance until the point `k` pieces in (the cut or the finish).
    pub(crate) fn time_until(&self, k: usize) -> Duration {
        self.delays.iter().take(k + 1).sum()
    }

    /// As scripted: the first piece's time, and the time from the first piece to the last.
    pub(crate) fn token_times(&self) -> (Duration, Duration) {
        let n = self.pieces.len();
        if n == 0 {
            return (self.time_until(0), Duration::ZERO);
        }
        (self.time_until(0), self.time_until(n - 1) - self.time_until(0))
    }
}

/// Build the script for a request.
pub(crate) fn script(req: &ChatRequest, opts: &Options, decision: Decision, n: u64, rng: &mut impl Rng) -> Script {
    let pieces = match decision {
        Decision::Fault(FaultKind::Empty) => Vec::new(),
        _ => pieces(req, opts.reasoning_tokens, n, rng),
    };
    let delays = delays(pieces.len(), &opts.speed, rng);
    let finish_reason = if pieces.is_empty() {
        "stop"
    } else if req.tool.is_some() {
        "tool_calls"
    } else {
        "length"
    };
    let at = usize::try_from(opts.exit_after_tokens).unwrap_or(usize::MAX).min(pieces.len());
    let cut_kind = match decision {
        Decision::Crash(reason) => Some(CutKind::Crash(reason)),
        Decision::Fault(FaultKind::Reset) => Some(CutKind::Reset),
        Decision::Fault(FaultKind::Truncate) => Some(CutKind::Truncate),
        Decision::Fault(FaultKind::Stall) => Some(CutKind::Stall(opts.stall)),
        Decision::Fault(FaultKind::Malformed) => Some(CutKind::Malformed),
        _ => None,
    };
    let opening = match decision {
        Decision::Fault(kind @ (FaultKind::Http500 | FaultKind::Http503 | FaultKind::MetalOom)) => {
            Opening::HttpError(kind)
        }
        Decision::Fault(FaultKind::Hang) => Opening::Hang,
        _ => Opening::Script,
    };
    Script { opening, pieces, delays, cut: cut_kind.map(|kind| Cut { at, kind }), finish_reason }
}

fn pieces(req: &ChatRequest, reasoning_tokens: u32, n: u64, rng: &mut impl Rng) -> Vec<Piece> {
    let max = usize::try_from(req.max_tokens).unwrap_or(usize::MAX);
    let reasoning = usize::try_from(reasoning_tokens).unwrap_or(usize::MAX).min(max);
    let mut word = || format!(" {}", WORDS[rng.random_range(0..WORDS.len())]);
    let mut out: Vec<Piece> = (0..reasoning).map(|_| Piece::Reasoning(word())).collect();
    match &req.tool {
        Some(name) => {
            out.push(Piece::ToolStart { id: format!("call_{n}"), name: name.clone() });
            out.extend(TOOL_ARGUMENT_PIECES.iter().map(|p| Piece::ToolArguments(p)));
        }
        None => out.extend((reasoning..max).map(|_| Piece::Content(word()))),
    }
    out
}

/// Delay before each piece (time to first token, then the token interval), each scaled by a
/// random factor in `[1 - jitter, 1 + jitter]`; one extra entry for the finish.
fn delays(pieces: usize, speed: &Speed, rng: &mut impl Rng) -> Vec<Duration> {
    let mut jittered = |d: Duration| {
        if speed.jitter > 0.0 { d.mul_f64(rng.random_range(1.0 - speed.jitter..=1.0 + speed.jitter)) } else { d }
    };
    let mut out = Vec::with_capacity(pieces + 1);
    for i in 0..pieces {
        let base = if i == 0 { speed.ttft } else { speed.token_interval };
        out.push(jittered(base));
    }
    out.push(if pieces == 0 { jittered(speed.ttft) } else { Duration::ZERO });
    out
}

#[cfg(test)]
mod tests {
    use super::super::SimArgs;
    use super::super::behaviour::request_rng;
    use super::*;

    fn opts(f: impl FnOnce(&mut SimArgs)) -> Options {
        let mut args = SimArgs { jitter: 0.0, ..SimArgs::default() };
        f(&mut args);
        Options::from_args(&args).expect("valid options")
    }

    fn req(max_tokens: u32, tool: Option<&str>) -> ChatRequest {
        ChatRequest { prompt_tokens: 1, max_tokens, stream: true, include_usage: true, tool: tool.map(str::to_string) }
    }

    #[test]
    fn normal_reply_has_exactly_max_tokens_words() {
        let o = opts(|_| {});
        let s = script(&req(20, None), &o, Decision::Normal, 1, &mut request_rng(0, 1));
        assert_eq!(s.pieces.len(), 20);
        assert_eq!(s.finish_reason, "length");
        assert_eq!(s.opening, Opening::Script);
        assert!(s.cut.is_none());
        for p in &s.pieces {
            let Piece::Content(w) = p else { panic!("expected content, got {p:?}") };
            assert!(w.starts_with(' ') && w.len() > 1 && w.chars().all(|c| c.is_ascii_graphic() || c == ' '));
        }
        // ttft 150 ms, then 19 tokens at 20 ms
        assert_eq!(s.time_until(20), Duration::from_millis(150 + 19 * 20));
    }

    #[test]
    fn reasoning_comes_first_and_counts_toward_max_tokens() {
        let o = opts(|a| a.reasoning_tokens = 4);
        let s = script(&req(6, None), &o, Decision::Normal, 1, &mut request_rng(0, 1));
        assert_eq!(s.pieces.len(), 6);
        assert!(s.pieces[..4].iter().all(|p| matches!(p, Piece::Reasoning(_))));
        assert!(s.pieces[4..].iter().all(|p| matches!(p, Piece::Content(_))));
        let short = script(&req(2, None), &o, Decision::Normal, 1, &mut request_rng(0, 1));
        assert!(short.pieces.iter().all(|p| matches!(p, Piece::Reasoning(_))));
    }

    #[test]
    fn tool_reply_is_one_call_with_valid_json_arguments() {
        let o = opts(|_| {});
        let s = script(&req(16, Some("get_weather")), &o, Decision::Normal, 7, &mut request_rng(0, 7));
        assert_eq!(s.finish_reason, "tool_calls");
        assert_eq!(s.pieces[0], Piece::ToolStart { id: "call_7".into(), name: "get_weather".into() });
        let args: String = s.pieces[1..]
            .iter()
            .map(|p| match p {
                Piece::ToolArguments(a) => *a,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        let parsed: serde_json::Value = serde_json::from_str(&args).expect("valid JSON");
        assert_eq!(parsed["location"], "Paris");
    }

    #[test]
    fn faults_map_to_openings_and_cuts() {
        let o = opts(|a| {
            a.exit_after_tokens = 3;
            a.stall_ms = 1234;
        });
        let r = req(10, None);
        let s = |d| script(&r, &o, d, 1, &mut request_rng(0, 1));
        assert_eq!(s(Decision::Fault(FaultKind::Http503)).opening, Opening::HttpError(FaultKind::Http503));
        assert_eq!(s(Decision::Fault(FaultKind::MetalOom)).opening, Opening::HttpError(FaultKind::MetalOom));
        assert_eq!(s(Decision::Fault(FaultKind::Hang)).opening, Opening::Hang);
        assert_eq!(
            s(Decision::Fault(FaultKind::Stall)).cut,
            Some(Cut { at: 3, kind: CutKind::Stall(Duration::from_millis(1234)) })
        );
        assert_eq!(s(Decision::Fault(FaultKind::Reset)).cut.map(|c| c.kind), Some(CutKind::Reset));
        assert_eq!(s(Decision::Fault(FaultKind::Truncate)).cut.map(|c| c.kind), Some(CutKind::Truncate));
        assert_eq!(s(Decision::Fault(FaultKind::Malformed)).cut.map(|c| c.kind), Some(CutKind::Malformed));
        let crash = s(Decision::Crash(CrashReason::NthRequest(1)));
        assert_eq!(crash.cut, Some(Cut { at: 3, kind: CutKind::Crash(CrashReason::NthRequest(1)) }));
        let empty = s(Decision::Fault(FaultKind::Empty));
        assert!(empty.pieces.is_empty());
        assert_eq!(empty.finish_reason, "stop");
        assert_eq!(empty.time_until(0), Duration::from_millis(150));
    }

    #[test]
    fn cut_never_points_past_the_last_piece() {
        let o = opts(|a| a.exit_after_tokens = 50);
        let s = script(&req(4, None), &o, Decision::Fault(FaultKind::Reset), 1, &mut request_rng(0, 1));
        assert_eq!(s.cut.map(|c| c.at), Some(4));
    }

    #[test]
    fn jitter_stays_within_bounds_and_is_seeded() {
        let o = opts(|a| a.jitter = 0.5);
        let a = script(&req(50, None), &o, Decision::Normal, 3, &mut request_rng(9, 3));
        let b = script(&req(50, None), &o, Decision::Normal, 3, &mut request_rng(9, 3));
        assert_eq!(a, b);
        for d in &a.delays[1..50] {
            assert!(*d >= Duration::from_millis(10) && *d <= Duration::from_millis(30), "{d:?}");
        }
    }
}
