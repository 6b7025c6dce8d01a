//! One request's timeline: the adapter reports what arrived and when; `finish` turns that into
//! the measured numbers (README.md, "What is measured").
//!
//! TTFT is the first delta of any kind (content, reasoning, tool call) minus the actual start;
//! time to first content token is the first content delta; decode tokens/s is
//! (completion tokens − 1) / (end − first token); inter-token gaps are kept as p50/p95/max.

use crate::measure::ServerNumbers;
use crate::measure::stats::percentile;
use crate::text::{MAX_OUTPUT_BYTES, push_bounded};
use crate::time::Instant;
use crate::time::ms_between;

/// What kind of delta arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    Content,
    Reasoning,
    ToolCall,
}

/// Where the completion token count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// The server's `usage`.
    Usage,
    /// Counted stream deltas (one token per delta).
    Counted,
}

impl TokenSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Usage => "usage",
            TokenSource::Counted => "counted",
        }
    }
}

#[derive(Debug)]
pub struct Timeline {
    start: Instant,
    first_byte: Option<Instant>,
    first_token: Option<Instant>,
    first_content: Option<Instant>,
    last_token: Option<Instant>,
    gaps_ms: Vec<f64>,
    deltas: u32,
    usage: Option<(Option<u32>, u32)>,
    pub finish_reason: Option<String>,
    pub done_marker: bool,
    pub reasoning_seen: bool,
    pub server_model: Option<String>,
    /// The server's extra fields as sent (llama.cpp `timings`, LM Studio `stats`, ...).
    pub server_timings: Option<serde_json::Value>,
    /// The server's own numbers, parsed from those fields.
    pub server: ServerNumbers,
    output: String,
    output_full: bool,
    ended: Option<Instant>,
}

/// The measured numbers of one finished request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    pub first_byte_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub first_content_ms: Option<f64>,
    pub e2e_ms: f64,
    pub gap_p50_ms: Option<f64>,
    pub gap_p95_ms: Option<f64>,
    pub gap_max_ms: Option<f64>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub token_source: Option<TokenSource>,
    pub decode_tps: Option<f64>,
    pub output_tps: Option<f64>,
}

impl Timeline {
    pub fn new(start: Instant) -> Self {
        Timeline {
            start,
            first_byte: None,
            first_token: None,
            first_content: None,
            last_token: None,
            gaps_ms: Vec::new(),
            deltas: 0,
            usage: None,
            finish_reason: None,
            done_marker: false,
            reasoning_seen: false,
            server_model: None,
            server_timings: None,
            server: ServerNumbers::default(),
            output: String::new(),
            output_full: false,
            ended: None,
        }
    }

    /// Starts over (a retried attempt): timings are of the attempt that counts.
    pub fn restart(&mut self, start: Instant) {
        *self = Timeline::new(start);
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn first_byte(&mut self, at: Instant) {
        self.first_byte.get_or_insert(at);
    }

    /// A token-carrying delta arrived at `at`. `text` is appended to the kept output.
    pub fn delta(&mut self, kind: Delta, text: &str, at: Instant) {
        self.first_byte(at);
        if let Some(prev) = self.last_token {
            self.gaps_ms.push(ms_between(prev, at));
        }
        self.first_token.get_or_insert(at);
        if kind == Delta::Content {
            self.first_content.get_or_insert(at);
            if text.contains("<think>") {
                self.reasoning_seen = true;
            }
            self.keep(text);
        }
        if kind == Delta::Reasoning {
            self.reasoning_seen = true;
        }
        self.last_token = Some(at);
        self.deltas += 1;
    }

    /// A whole (non-streamed) reply's text.
    pub fn whole_reply(&mut self, content: &str) {
        if content.contains("<think>") {
            self.reasoning_seen = true;
        }
        self.keep(content);
    }

    fn keep(&mut self, text: &str) {
        if !self.output_full {
            self.output_full = !push_bounded(&mut self.output, text, MAX_OUTPUT_BYTES);
        }
    }

    /// The reply ended (its `[DONE]` or last byte) at `at`, before any cleanup.
    pub fn ended(&mut self, at: Instant) {
        self.ended.get_or_insert(at);
    }

    /// When the reply ended, if that was marked.
    pub fn end(&self) -> Option<Instant> {
        self.ended
    }

    pub fn usage(&mut self, prompt: Option<u32>, completion: u32) {
        self.usage = Some((prompt, completion));
    }

    pub fn output(&self) -> &str {
        &self.output
    }

    /// Token deltas seen so far.
    pub fn deltas(&self) -> u32 {
        self.deltas
    }

    pub fn finish(&self, end: Instant) -> Measured {
        let since = |t: Option<Instant>| t.map(|t| ms_between(self.start, t));
        let e2e_ms = ms_between(self.start, end);
        let (prompt_tokens, completion_tokens, token_source) = match self.usage {
            Some((p, c)) => (p, Some(c), Some(TokenSource::Usage)),
            None if self.deltas > 0 => (None, Some(self.deltas), Some(TokenSource::Counted)),
            None => (None, None, None),
        };
        let decode_tps = match (self.first_token, completion_tokens) {
            (Some(first), Some(n)) if n >= 2 => {
                let secs = end.saturating_duration_since(first).as_secs_f64();
                (secs > 0.0).then(|| f64::from(n - 1) / secs)
            }
            _ => None,
        };
        let output_tps = completion_tokens.filter(|_| e2e_ms > 0.0).map(|n| f64::from(n) / (e2e_ms / 1000.0));
        let mut gaps = self.gaps_ms.clone();
        gaps.sort_unstable_by(f64::total_cmp);
        Measured {
            first_byte_ms: since(self.first_byte),
            ttft_ms: since(self.first_token),
            first_content_ms: since(self.first_content),
            e2e_ms,
            gap_p50_ms: percentile(&gaps, 50.0),
            gap_p95_ms: percentile(&gaps, 95.0),
            gap_max_ms: gaps.last().copied(),
            prompt_tokens,
            completion_tokens,
            token_source,
            decode_tps,
            output_tps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn streamed_reply_with_reasoning_first() {
        let t0 = Instant::now();
        let mut tl = Timeline::new(t0);
        tl.first_byte(at(t0, 10));
        tl.delta(Delta::Reasoning, "hmm", at(t0, 100));
        tl.delta(Delta::Content, "Hello", at(t0, 150));
        tl.delta(Delta::Content, " world", at(t0, 200));
        tl.delta(Delta::Content, "!", at(t0, 300));
        let m = tl.finish(at(t0, 400));
        assert_eq!(m.first_byte_ms, Some(10.0));
        assert_eq!(m.ttft_ms, Some(100.0));
        assert_eq!(m.first_content_ms, Some(150.0));
        assert_eq!(m.e2e_ms, 400.0);
        assert_eq!(m.completion_tokens, Some(4));
        assert_eq!(m.token_source, Some(TokenSource::Counted));
        // (4 - 1) tokens over (400 - 100) ms.
        assert!((m.decode_tps.unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(m.gap_max_ms, Some(100.0));
        assert_eq!(m.gap_p50_ms, Some(50.0));
        assert!(tl.reasoning_seen);
        assert_eq!(tl.output(), "Hello world!");
    }

    #[test]
    fn usage_beats_counting() {
        let t0 = Instant::now();
        let mut tl = Timeline::new(t0);
        tl.delta(Delta::Content, "a", at(t0, 50));
        tl.delta(Delta::Content, "b", at(t0, 60));
        tl.usage(Some(12), 3);
        let m = tl.finish(at(t0, 70));
        assert_eq!((m.prompt_tokens, m.completion_tokens), (Some(12), Some(3)));
        assert_eq!(m.token_source, Some(TokenSource::Usage));
    }

    #[test]
    fn non_streamed_has_no_token_timings() {
        let t0 = Instant::now();
        let mut tl = Timeline::new(t0);
        tl.first_byte(at(t0, 900));
        tl.whole_reply("<think>x</think> answer");
        tl.usage(Some(5), 20);
        let m = tl.finish(at(t0, 1000));
        assert_eq!(m.ttft_ms, None);
        assert_eq!(m.decode_tps, None);
        assert!((m.output_tps.unwrap() - 20.0).abs() < 1e-9);
        assert!(tl.reasoning_seen);
    }

    #[test]
    fn output_is_bounded() {
        let t0 = Instant::now();
        let mut tl = Timeline::new(t0);
        let big = "x".repeat(1000);
        for i in 0..100 {
            tl.delta(Delta::Content, &big, at(t0, i));
        }
        assert_eq!(tl.output().len(), MAX_OUTPUT_BYTES);
        assert_eq!(tl.finish(at(t0, 100)).completion_tokens, Some(100));
    }
}
