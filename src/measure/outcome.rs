//! The outcome taxonomy: what became of one request. A failing server's behaviour is data,
//! recorded as one of these, never an error of soakd's.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    /// The server answered with a non-2xx status (and no crash text).
    HttpError,
    /// Nothing listens on the port.
    ConnectRefused,
    /// The TCP connect did not complete in time.
    ConnectTimeout,
    /// Other failures to reach the server (DNS, TLS, unreachable).
    ConnectError,
    /// Connected and sent, but no response byte came in time.
    NoFirstByte,
    /// The stream went silent mid-way for longer than the stall limit.
    Stall,
    /// The connection broke after the response began.
    ResetMidStream,
    /// The stream ended cleanly but without a finish reason or `[DONE]`.
    Truncated,
    /// The body was not the JSON / SSE the API promises.
    Malformed,
    /// A well-formed reply with no content, no reasoning and no tool call.
    Empty,
    /// The server said its model crashed, was unloaded, or ran out of memory.
    ServerReportedCrash,
    /// The process serving the request died under it (soakd's own `mlx-lm` worker: its exit
    /// status or signal is the error).
    Crash,
    /// An error object inside a 200 stream that is not a crash.
    StreamError,
    /// The request outran its total time limit while still receiving.
    Timeout,
    /// soakd was shutting down and gave up on the request.
    Cancelled,
    /// Found in flight after soakd itself died.
    Interrupted,
}

impl Outcome {
    pub const ALL: [Outcome; 17] = [
        Outcome::Ok,
        Outcome::HttpError,
        Outcome::ConnectRefused,
        Outcome::ConnectTimeout,
        Outcome::ConnectError,
        Outcome::NoFirstByte,
        Outcome::Stall,
        Outcome::ResetMidStream,
        Outcome::Truncated,
        Outcome::Malformed,
        Outcome::Empty,
        Outcome::ServerReportedCrash,
        Outcome::Crash,
        Outcome::StreamError,
        Outcome::Timeout,
        Outcome::Cancelled,
        Outcome::Interrupted,
    ];

    /// The value stored in `requests.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::HttpError => "http_error",
            Outcome::ConnectRefused => "connect_refused",
            Outcome::ConnectTimeout => "connect_timeout",
            Outcome::ConnectError => "connect_error",
            Outcome::NoFirstByte => "no_first_byte",
            Outcome::Stall => "stall",
            Outcome::ResetMidStream => "reset_mid_stream",
            Outcome::Truncated => "truncated",
            Outcome::Malformed => "malformed",
            Outcome::Empty => "empty",
            Outcome::ServerReportedCrash => "server_reported_crash",
            Outcome::Crash => "crash",
            Outcome::StreamError => "stream_error",
            Outcome::Timeout => "timeout",
            Outcome::Cancelled => "cancelled",
            Outcome::Interrupted => "interrupted",
        }
    }

    pub const fn is_ok(self) -> bool {
        matches!(self, Outcome::Ok)
    }

    /// Whether a request with this outcome counts at all, in totals and rates: every outcome but
    /// soakd's own doing — `cancelled` (soakd was stopping) and `interrupted` (soakd died).
    pub const fn is_counted(self) -> bool {
        !matches!(self, Outcome::Cancelled | Outcome::Interrupted)
    }

    /// Whether this outcome counts against the server: counted, and not `ok`. The one answer to
    /// "does it count as a failure" — every report, rollup, alert and chart asks this (the store
    /// writes the same rule in SQL, `store::queries::failure_sql`).
    pub const fn counts_as_failure(self) -> bool {
        self.is_counted() && !self.is_ok()
    }

    /// The outcome stored as `s` in `requests.outcome` (`None` for [`IN_FLIGHT`] and any other text).
    pub fn from_stored(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// What `requests.outcome` holds while a request is still running (and after soakd died under it,
/// until the next start marks it `interrupted`).
pub const IN_FLIGHT: &str = "in_flight";

/// [`Outcome::is_counted`] for an outcome as stored; a request still in flight does not count.
pub fn stored_is_counted(stored: &str) -> bool {
    Outcome::from_stored(stored).is_some_and(Outcome::is_counted)
}

/// [`Outcome::counts_as_failure`] for an outcome as stored; a request still in flight does not count.
pub fn stored_counts_as_failure(stored: &str) -> bool {
    Outcome::from_stored(stored).is_some_and(Outcome::counts_as_failure)
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Texts by which servers say their model crashed or ran out of memory (as their users report them):
/// LM Studio's engine crash and unload, Ollama's dead runner, Metal command-buffer and allocator failures, MLX and
/// llama.cpp aborts, OOM answers.
const CRASH_MARKERS: &[&str] = &[
    "model has crashed",
    "model is unloaded",
    "model unloaded",
    "runner process has terminated",
    "kiogpucommandbuffercallbackerror",
    "iogpumetalerror",
    "[metal]",
    "[metal::",
    "metalallocator",
    "insufficient memory",
    "out of memory",
    "fatal python error",
    "ggml_assert",
    "failed assertion",
    "exit code:",
];

/// Whether an error text says the model crashed (case-insensitive).
pub fn is_crash_text(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    CRASH_MARKERS.iter().any(|m| lower.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Outcome::ALL.len());
    }

    #[test]
    fn one_failure_rule() {
        let failures = Outcome::ALL.into_iter().filter(|o| o.counts_as_failure()).count();
        assert_eq!(failures, Outcome::ALL.len() - 3, "all but ok, cancelled, interrupted");
        assert!(!stored_counts_as_failure(IN_FLIGHT) && !stored_is_counted(IN_FLIGHT));
        assert!(stored_is_counted("ok") && !stored_counts_as_failure("ok"));
        assert!(!stored_is_counted("cancelled") && !stored_counts_as_failure("interrupted"));
        assert!(stored_counts_as_failure("connect_refused"));
    }

    #[test]
    fn recognises_the_reported_crash_texts() {
        for t in [
            r#"{"error":"The model has crashed without additional information. (Exit code: 18446744072635812000)"}"#,
            r#"{"error":"Model is unloaded."}"#,
            "[METAL] Command buffer execution failed: Insufficient Memory (00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)",
            "libc++abi: terminating due to uncaught exception of type std::runtime_error: [metal::malloc] ... MetalAllocator",
            "GGML_ASSERT(hash_set.size < hash_set.capacity) failed",
        ] {
            assert!(is_crash_text(t), "{t}");
        }
        for t in ["Bad Request", r#"{"error":{"message":"the request exceeds the available context size"}}"#] {
            assert!(!is_crash_text(t), "{t}");
        }
    }
}
