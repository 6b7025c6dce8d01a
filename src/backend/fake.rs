//! A scripted backend for in-process tests of the measuring core: each request plays a script
//! of waits, response head, deltas and an ending on tokio's clock, so a test on paused time
//! knows every stamp the runner must record (TTFT, inter-token gaps, end) to the microsecond.

use super::{Backend, ChatRequest, Exchange, Failure};
use crate::measure::{Delta, Outcome, Timeline};
use crate::shutdown::Shutdown;
use crate::time::Instant;
use futures_util::future::BoxFuture;
use std::sync::Mutex;
use std::time::Duration;

/// One step of a request's script.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// Nothing arrives for this long.
    Wait(Duration),
    /// The response head arrives.
    Head,
    /// A token-carrying delta arrives.
    Token(Delta, &'static str),
    /// The reply ends with this finish reason.
    Finish(&'static str),
    /// The request fails.
    Fail(Outcome, &'static str),
}

/// A backend that plays `scripts[i % len]` for its i-th request.
pub(crate) struct FakeBackend {
    scripts: Vec<Vec<Step>>,
    served: Mutex<u32>,
}

impl FakeBackend {
    pub(crate) fn new(scripts: Vec<Vec<Step>>) -> FakeBackend {
        assert!(!scripts.is_empty(), "a fake backend needs a script");
        FakeBackend { scripts, served: Mutex::new(0) }
    }

    /// The same script for every request.
    pub(crate) fn always(script: Vec<Step>) -> FakeBackend {
        FakeBackend::new(vec![script])
    }

    async fn play(&self, tl: &mut Timeline, shutdown: &Shutdown) -> Result<(), Failure> {
        let script = {
            let mut n = self.served.lock().unwrap();
            *n += 1;
            self.scripts[(*n as usize - 1) % self.scripts.len()].clone()
        };
        for step in script {
            match step {
                Step::Wait(d) => tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = shutdown.aborted() => return Err(Failure::new(Outcome::Cancelled, "soakd shut down")),
                },
                Step::Head => tl.first_byte(Instant::now()),
                Step::Token(kind, text) => tl.delta(kind, text, Instant::now()),
                Step::Finish(reason) => {
                    tl.finish_reason = Some(reason.to_string());
                    tl.ended(Instant::now());
                    return Ok(());
                }
                Step::Fail(outcome, error) => return Err(Failure::new(outcome, error)),
            }
        }
        Err(Failure::new(Outcome::Truncated, "the script ended without a finish"))
    }
}

impl Backend for FakeBackend {
    fn chat<'a>(
        &'a self,
        _request: ChatRequest<'a>,
        timeline: &'a mut Timeline,
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Exchange> {
        Box::pin(async move {
            let result = self.play(timeline, shutdown).await;
            Exchange { http_status: Some(200), attempts: 1, tool_call_seen: false, tool_call_valid: None, result }
        })
    }
}
