//! The row every failure analysis reads: one request of one backend, as the store holds it
//! (crash attribution, failure episodes, request-count crashes), handed to `CrashLog` one at a time.

use std::sync::Arc;

/// One request of one backend, as the store holds it. The crash analysis keeps failures whole and
/// 8 bytes of every other request (`crash_log`); what only a failure carries is boxed apart
/// (`failure`), so the requests passing through stay small (104 bytes, not 144).
#[derive(Debug, Clone, Default)]
pub struct Attempt {
    pub at_ms: i64,       // start, ms since the epoch
    pub failed: bool,     // the caller already excluded cancelled, interrupted and in-flight requests
    pub hour_local: u8,   // 0..=23, local time of day
    pub concurrency: u32, // the job's concurrency
    pub prompt_chars: u32,
    pub server_pid: Option<u32>,             // the server process that answered, when known
    pub server_seq: Option<u64>,             // nth request to that server process (1 = first after a (re)load)
    pub gap_ms: Option<f64>,                 // since the previous request ended; None for the first
    pub outcome: Arc<str>,                   // outcome class as stored: ok, http_error, timeout, ...
    pub job: Arc<str>,                       // the job (workload) that sent it (shared: months of rows repeat it)
    pub failure: Option<Box<FailureDetail>>, // set for failed requests
}

/// What the analyses read of a failed request only.
#[derive(Debug, Clone, Default)]
pub struct FailureDetail {
    pub http_status: Option<u16>,    // the response's status, when there was one
    pub e2e_ms: Option<f64>,         // start to end
    pub signature: Option<Arc<str>>, // normalised error signature
    pub error: Option<Arc<str>>,     // raw error text
}

impl Attempt {
    /// The nth request to its server process, when known (0 counts as not known).
    pub fn seq(&self) -> Option<u64> {
        self.server_seq.filter(|s| *s > 0)
    }

    /// Seconds from `from_ms` to this request's start.
    pub fn seconds_since(&self, from_ms: i64) -> f64 {
        (self.at_ms as f64 - from_ms as f64) / 1000.0
    }

    pub fn http_status(&self) -> Option<u16> {
        self.failure.as_ref().and_then(|f| f.http_status)
    }

    pub fn e2e_ms(&self) -> Option<f64> {
        self.failure.as_ref().and_then(|f| f.e2e_ms)
    }

    pub fn signature(&self) -> Option<&Arc<str>> {
        self.failure.as_ref().and_then(|f| f.signature.as_ref())
    }

    pub fn error(&self) -> Option<&str> {
        self.failure.as_ref().and_then(|f| f.error.as_deref())
    }

    /// The failure's detail, made when missing (tests build attempts with it).
    #[cfg(test)]
    pub fn detail(&mut self) -> &mut FailureDetail {
        self.failure.get_or_insert_with(Default::default)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_passing_through_is_104_bytes_at_most() {
        assert!(std::mem::size_of::<super::Attempt>() <= 104, "{} bytes", std::mem::size_of::<super::Attempt>());
    }
}
