//! The server's own numbers for one request, read from whatever the server sends beside the
//! reply: llama.cpp's `timings`, LM Studio's `stats`, Ollama's final chunk (nanoseconds), the
//! mlx-lm worker's report. They are stored beside soakd's client-side measurements
//! (`requests.server_*`, db/README.md), never instead of them.

use crate::text::bounded;
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerNumbers {
    /// Prompt processing time.
    pub prompt_ms: Option<f64>,
    /// The server's time to first token.
    pub ttft_ms: Option<f64>,
    pub decode_tps: Option<f64>,
    /// Time the server spent loading the model for this request (Ollama `load_duration`).
    pub load_ms: Option<f64>,
    /// The server's whole time for the request.
    pub total_ms: Option<f64>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub stop_reason: Option<String>,
    /// Peak memory the server's runtime reports for the request (MLX `get_peak_memory`).
    pub peak_memory_bytes: Option<u64>,
}

impl ServerNumbers {
    /// llama.cpp's `timings`: `prompt_n`, `prompt_ms`, `predicted_n`, `predicted_ms`,
    /// `predicted_per_second`.
    pub fn read_llamacpp(&mut self, t: &Value) {
        let n = |k: &str| t.get(k).and_then(Value::as_f64).filter(|v| v.is_finite() && *v >= 0.0);
        self.prompt_ms = n("prompt_ms").or(self.prompt_ms);
        self.decode_tps = n("predicted_per_second").or(self.decode_tps);
        self.prompt_tokens = n("prompt_n").map(|v| v as u32).or(self.prompt_tokens);
        self.completion_tokens = n("predicted_n").map(|v| v as u32).or(self.completion_tokens);
        if let (Some(p), Some(d)) = (n("prompt_ms"), n("predicted_ms")) {
            self.total_ms = Some(p + d);
        }
    }

    /// LM Studio's `stats` (seconds): `tokens_per_second`, `time_to_first_token`,
    /// `generation_time`, `stop_reason`.
    pub fn read_lmstudio(&mut self, s: &Value) {
        let n = |k: &str| s.get(k).and_then(Value::as_f64).filter(|v| v.is_finite() && *v >= 0.0);
        self.decode_tps = n("tokens_per_second").or(self.decode_tps);
        if let Some(t) = n("time_to_first_token") {
            self.ttft_ms = Some(t * 1000.0);
            self.prompt_ms = self.prompt_ms.or(Some(t * 1000.0));
        }
        if let (Some(t), Some(g)) = (n("time_to_first_token"), n("generation_time")) {
            self.total_ms = Some((t + g) * 1000.0);
        }
        if let Some(r) = s.get("stop_reason").and_then(Value::as_str) {
            self.stop_reason = Some(bounded(r, 64));
        }
    }

    /// Ollama's final chunk: counts, and durations in nanoseconds.
    pub fn read_ollama(&mut self, c: &Value) {
        let n = |k: &str| c.get(k).and_then(Value::as_f64).filter(|v| v.is_finite() && *v >= 0.0);
        let ms = |k: &str| n(k).map(|ns| ns / 1e6);
        self.prompt_tokens = n("prompt_eval_count").map(|v| v as u32).or(self.prompt_tokens);
        self.completion_tokens = n("eval_count").map(|v| v as u32).or(self.completion_tokens);
        self.prompt_ms = ms("prompt_eval_duration").or(self.prompt_ms);
        self.load_ms = ms("load_duration").or(self.load_ms);
        self.total_ms = ms("total_duration").or(self.total_ms);
        if let (Some(count), Some(ns)) = (n("eval_count"), n("eval_duration"))
            && ns > 0.0
        {
            self.decode_tps = Some(count / (ns / 1e9));
        }
        if let Some(r) = c.get("done_reason").and_then(Value::as_str) {
            self.stop_reason = Some(bounded(r, 64));
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == ServerNumbers::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn llamacpp_timings() {
        let mut s = ServerNumbers::default();
        s.read_llamacpp(&json!({"prompt_n": 12, "prompt_ms": 3.5, "predicted_n": 32, "predicted_ms": 20.0,
            "predicted_per_second": 1600.0}));
        assert_eq!(s.prompt_tokens, Some(12));
        assert_eq!(s.completion_tokens, Some(32));
        assert_eq!(s.decode_tps, Some(1600.0));
        assert_eq!(s.total_ms, Some(23.5));
    }

    #[test]
    fn lmstudio_stats_are_seconds() {
        let mut s = ServerNumbers::default();
        s.read_lmstudio(&json!({"tokens_per_second": 40.5, "time_to_first_token": 0.25, "generation_time": 1.5,
            "stop_reason": "eosFound"}));
        assert_eq!(s.ttft_ms, Some(250.0));
        assert_eq!(s.total_ms, Some(1750.0));
        assert_eq!(s.stop_reason.as_deref(), Some("eosFound"));
    }

    #[test]
    fn ollama_durations_are_nanoseconds() {
        let mut s = ServerNumbers::default();
        s.read_ollama(&json!({"eval_count": 100, "eval_duration": 2_000_000_000u64, "prompt_eval_count": 7,
            "prompt_eval_duration": 50_000_000, "load_duration": 6_760_000_000u64, "total_duration": 9_000_000_000u64,
            "done_reason": "stop"}));
        assert_eq!(s.decode_tps, Some(50.0));
        assert_eq!(s.load_ms, Some(6760.0));
        assert_eq!(s.prompt_ms, Some(50.0));
        assert_eq!(s.total_ms, Some(9000.0));
        assert_eq!(s.stop_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn nonsense_is_ignored() {
        let mut s = ServerNumbers::default();
        s.read_llamacpp(&json!({"prompt_ms": "fast", "predicted_per_second": -1.0}));
        s.read_ollama(&json!({"eval_count": 3, "eval_duration": 0}));
        assert!(s.is_empty() || s.completion_tokens == Some(3));
        assert_eq!(s.decode_tps, None);
    }
}
