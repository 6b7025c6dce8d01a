//! Prometheus `/metrics` pages (llama.cpp with `--metrics`, vLLM). Only the server's own
//! series (by prefix) are kept, each summed over its labels; histogram buckets are skipped
//! (their `_count` and `_sum` are kept). Every series is optional: servers add and drop them
//! between versions.
//!
//! Hand-written rather than a crate: the maintained parser crates reject the `:` that both
//! llama.cpp (`llamacpp:`) and vLLM (`vllm:`) put in every metric name, which the format
//! allows; a sample line is `name{labels} value [timestamp]`, and that is all this reads.

use serde_json::{Map, Value};

/// The most series kept from one page.
const MAX_SERIES: usize = 200;

/// The series whose names start with `prefix`, prefix removed, summed over labels.
pub fn parse(text: &str, prefix: &str) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = sample(line) else { continue };
        let Some(name) = name.strip_prefix(prefix) else { continue };
        if name.ends_with("_bucket") || !value.is_finite() || (out.len() >= MAX_SERIES && !out.contains_key(name)) {
            continue;
        }
        let sum = out.get(name).and_then(Value::as_f64).unwrap_or(0.0) + value;
        out.insert(name.to_string(), serde_json::json!(sum));
    }
    out
}

/// A sample line's metric name and value.
fn sample(line: &str) -> Option<(&str, f64)> {
    let name_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        // Label values may hold `}` inside quotes.
        let mut quoted = false;
        let mut escaped = false;
        let close = rest.char_indices().find(|&(_, c)| {
            let at_close = !quoted && c == '}';
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => quoted = !quoted,
                _ => {}
            }
            at_close
        })?;
        rest = &rest[close.0 + 1..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    (!name.is_empty()).then_some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llamacpp_page() {
        let page = "\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 1200
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
llamacpp:predicted_tokens_seconds 1850.5
process_cpu_seconds_total 3
";
        let m = parse(page, "llamacpp:");
        assert_eq!(m["prompt_tokens_total"], 1200.0);
        assert_eq!(m["requests_processing"], 1.0);
        assert_eq!(m["predicted_tokens_seconds"], 1850.5);
        assert!(!m.contains_key("process_cpu_seconds_total"));
    }

    #[test]
    fn labels_are_summed_and_histograms_counted() {
        let page = "\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name=\"a\"} 2
vllm:num_requests_running{model_name=\"b\"} 3
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le=\"1.0\"} 4
vllm:e2e_request_latency_seconds_bucket{le=\"+Inf\"} 9
vllm:e2e_request_latency_seconds_sum 12.5
vllm:e2e_request_latency_seconds_count 9
";
        let m = parse(page, "vllm:");
        assert_eq!(m["num_requests_running"], 5.0);
        assert_eq!(m["e2e_request_latency_seconds_count"], 9.0);
        assert_eq!(m["e2e_request_latency_seconds_sum"], 12.5);
        assert!(!m.contains_key("e2e_request_latency_seconds_bucket"));
    }

    #[test]
    fn garbage_gives_nothing() {
        assert!(parse("<html>not metrics</html>\n\u{0}\u{1}", "llamacpp:").is_empty());
        assert!(parse("", "x:").is_empty());
        let m = parse("x:a{l=\"}{\\\"\"} 3\nx:b{unclosed 4\nx:c NaN\nx:d 1 1700000000000\n", "x:");
        assert_eq!(m["a"], 3.0, "a quoted brace does not end the labels");
        assert_eq!(m["d"], 1.0, "a timestamp is not the value");
        assert!(!m.contains_key("b") && !m.contains_key("c"));
    }
}
