//! What every HTTP adapter shares to make one exchange: send the request and await its head
//! within the first-byte limit (`Sent`), race each read against the request's deadline and
//! shutdown (`race`), classify transport errors (`send_error`, one `error_chain`), read bounded
//! bodies, retry once on a pooled connection found stale (`exchange`), and call a reply with
//! nothing in it `empty`. The adapters (`openai`, `ollama`) keep only their wire formats; kinds
//! `mlx-lm` and `mlx` use `race` for their own protocols.

use super::chunk::ToolCalls;
use super::http::Http;
pub(crate) use super::transport::{error_chain, read_bounded};
use super::{ChatRequest, Exchange, Failure};
use crate::measure::outcome::Outcome;
use crate::measure::timeline::Timeline;
use crate::shutdown::Shutdown;
use crate::text::{MAX_ERROR_BYTES, MAX_OUTPUT_BYTES, bounded};
use crate::time::Instant;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{Client, Response, Url};
use serde_json::Value;
use std::future::Future;
use std::time::Duration;

/// One try at a request, carried through an adapter's reader: the request, its timeline, the
/// client for this try, and what the reply said so far.
pub(super) struct Try<'t, 'r> {
    pub req: ChatRequest<'r>,
    pub tl: &'t mut Timeline,
    pub shutdown: &'t Shutdown,
    pub client: &'t Client,
    pub calls: ToolCalls,
    pub http_status: Option<u16>,
}

/// An adapter's wire format: where a request goes, what an error status means, and how a
/// streamed reply (announced by `STREAM_TYPE`) and a whole one are read into the `Try`.
pub(super) trait Wire: Sync {
    /// The `Content-Type` of a streamed reply (`text/event-stream`, `application/x-ndjson`).
    const STREAM_TYPE: &'static str;

    fn http(&self) -> &Http;

    fn endpoint(&self) -> Url;

    /// An error status and its (bounded) body as the attempt's failure.
    fn on_status(status: u16, text: &str) -> Attempt;

    fn read_stream<'a>(
        &'a self,
        response: Response,
        t: &'a mut Try<'_, '_>,
        total: Instant,
    ) -> impl Future<Output = Result<(), Attempt>> + Send + 'a;

    fn read_whole<'a>(
        &'a self,
        response: Response,
        t: &'a mut Try<'_, '_>,
        total: Instant,
    ) -> impl Future<Output = Result<(), Attempt>> + Send + 'a;

    /// One try: send, await the head, read the reply as it came.
    fn attempt<'a>(
        &'a self,
        body: &'a Value,
        t: &'a mut Try<'_, '_>,
    ) -> impl Future<Output = Result<(), Attempt>> + Send + 'a {
        async move {
            let (response, total) = t.send(self.http(), self.endpoint(), body, Self::on_status).await?;
            if content_type_is(&response, Self::STREAM_TYPE) {
                self.read_stream(response, t, total).await
            } else {
                self.read_whole(response, t, total).await
            }
        }
    }
}

/// One request: `wire`'s attempt run once, and once more on a fresh connection when the pooled
/// one turned out closed right after sending (the keep-alive reuse race, not the server's
/// failure). A reply with no content, reasoning or tool call is `empty`.
pub(super) async fn exchange(
    wire: &impl Wire,
    body: &Value,
    req: ChatRequest<'_>,
    tl: &mut Timeline,
    shutdown: &Shutdown,
) -> Exchange {
    let http = wire.http();
    let mut attempts = 1;
    let mut first_error = None;
    loop {
        let mut t = Try {
            req,
            tl: &mut *tl,
            shutdown,
            client: http.client(attempts == 1),
            calls: ToolCalls::default(),
            http_status: None,
        };
        let result = wire.attempt(body, &mut t).await;
        let Try { calls, http_status, .. } = t;
        if let Err(Attempt::StaleConnection(f)) = &result
            && attempts == 1
            && http.reuses()
            && tl.start().elapsed() < STALE_WINDOW
        {
            attempts = 2;
            http.found_closed();
            first_error = Some(f.error.clone());
            tl.restart(Instant::now());
            continue;
        }
        let result = result
            .map_err(|a| {
                let mut f = a.into_failure();
                if let Some(first) = &first_error {
                    f.error = bounded(&format!("{} (first attempt: {first})", f.error), MAX_ERROR_BYTES);
                }
                f
            })
            .and_then(|()| empty_check(tl, &calls));
        return Exchange {
            http_status,
            attempts,
            tool_call_seen: calls.seen(),
            tool_call_valid: calls.valid(req.workload.tools.as_ref()),
            result,
        };
    }
}

/// A pooled connection found closed this soon after sending is the reuse race, not a crash.
const STALE_WINDOW: Duration = Duration::from_millis(250);

/// How long to read on after `[DONE]` for the body's end (not counted in the request's time).
pub(super) const DRAIN_AFTER_DONE: Duration = Duration::from_millis(200);

/// The most of a non-streamed body soakd reads before calling it malformed.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What one attempt ended in: a failure, or a stale pooled connection worth one retry.
#[derive(Debug)]
pub(super) enum Attempt {
    Failed(Failure),
    StaleConnection(Failure),
}

impl Attempt {
    pub(super) fn into_failure(self) -> Failure {
        match self {
            Attempt::Failed(f) | Attempt::StaleConnection(f) => f,
        }
    }
}

pub(super) fn fail(outcome: Outcome, error: impl Into<String>) -> Attempt {
    Attempt::Failed(Failure::new(outcome, error))
}

impl Try<'_, '_> {
    /// A whole (non-streamed) body, bounded to `MAX_BODY_BYTES`, read by the deadline `total`.
    pub(super) async fn read_body(&mut self, response: Response, total: Instant) -> Result<Vec<u8>, Attempt> {
        let (bytes, complete) = match race(read_bounded(response, MAX_BODY_BYTES), total, self.shutdown).await {
            Err(Stop::Deadline) => return Err(fail(Outcome::Timeout, "the response body did not finish in time")),
            Err(Stop::Aborted) => return Err(fail(Outcome::Cancelled, "soakd shut down")),
            Ok(Err(e)) => return Err(fail(Outcome::ResetMidStream, error_chain(&e))),
            Ok(Ok(read)) => read,
        };
        if !complete {
            return Err(fail(Outcome::Malformed, format!("the response body is over {MAX_BODY_BYTES} bytes")));
        }
        Ok(bytes)
    }

    /// POSTs `body` to `url` and waits for the response's head; returns a 2xx response and the
    /// request's deadline, or the failure (an error status's bounded body read and turned into
    /// one by `on_status`). `http_status` is set once a status came.
    pub(super) async fn send(
        &mut self,
        http: &Http,
        url: Url,
        body: &Value,
        on_status: fn(u16, &str) -> Attempt,
    ) -> Result<(Response, Instant), Attempt> {
        let shutdown = self.shutdown;
        let start = self.tl.start();
        let total = start + http.timeouts.total;
        // A non-streamed reply's first byte comes when generation ends: only `total` bounds it.
        let first_byte = if self.req.workload.stream { start + http.timeouts.first_byte } else { total };
        let request = http.post(self.client, url, body);
        let response = match race(request.send(), first_byte.min(total), shutdown).await {
            Err(Stop::Deadline) => {
                let waited = first_byte.min(total).saturating_duration_since(start).as_millis();
                return Err(fail(Outcome::NoFirstByte, format!("no response byte within {waited} ms")));
            }
            Err(Stop::Aborted) => return Err(fail(Outcome::Cancelled, "soakd shut down")),
            Ok(Err(e)) => return Err(send_error(e)),
            Ok(Ok(r)) => r,
        };
        self.tl.first_byte(Instant::now());
        let status = response.status();
        self.http_status = Some(status.as_u16());
        if !status.is_success() {
            let location = status
                .is_redirection()
                .then(|| response.headers().get(LOCATION).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .map(|to| format!("redirect to {} (not followed) ", to.as_deref().unwrap_or("no Location")));
            let text = match race(read_bounded(response, MAX_OUTPUT_BYTES), total, shutdown).await {
                Ok(Ok((bytes, _))) => String::from_utf8_lossy(&bytes).into_owned(),
                _ => String::new(),
            };
            let text = match location {
                Some(l) => format!("{l}{text}"),
                None => text,
            };
            return Err(on_status(status.as_u16(), &text));
        }
        Ok((response, total))
    }
}

/// Whether the response's `Content-Type` starts with `prefix`.
pub(super) fn content_type_is(response: &Response, prefix: &str) -> bool {
    response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.starts_with(prefix))
}

/// A reply with nothing in it is the `empty` outcome.
pub(super) fn empty_check(tl: &Timeline, calls: &ToolCalls) -> Result<(), Failure> {
    let no_tokens = tl.deltas() == 0 && tl.output().is_empty() && !tl.reasoning_seen && !calls.seen();
    if no_tokens {
        let reason = tl.finish_reason.as_deref().unwrap_or("none");
        return Err(Failure::new(
            Outcome::Empty,
            format!("no content, reasoning or tool call (finish_reason: {reason})"),
        ));
    }
    Ok(())
}

pub(super) enum Stop {
    Deadline,
    Aborted,
}

/// Runs `fut` until it ends, the deadline passes, or shutdown aborts in-flight work.
pub(super) async fn race<F: Future>(fut: F, deadline: Instant, shutdown: &Shutdown) -> Result<F::Output, Stop> {
    tokio::select! {
        out = fut => Ok(out),
        _ = tokio::time::sleep_until(deadline) => Err(Stop::Deadline),
        _ = shutdown.aborted() => Err(Stop::Aborted),
    }
}

/// Classifies a failure to get response headers. The URL is left out of the text (the backend
/// names it), so errors group by cause.
pub(super) fn send_error(e: reqwest::Error) -> Attempt {
    let e = e.without_url();
    let text = error_chain(&e);
    if e.is_connect() {
        let outcome = if e.is_timeout() {
            Outcome::ConnectTimeout
        } else if io_kind(&e) == Some(std::io::ErrorKind::ConnectionRefused) {
            Outcome::ConnectRefused
        } else {
            Outcome::ConnectError
        };
        return fail(outcome, text);
    }
    let closed = is_incomplete_message(&e)
        || matches!(
            io_kind(&e),
            Some(
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            )
        );
    let failure =
        Failure::new(Outcome::ResetMidStream, format!("the connection closed before the response began: {text}"));
    if closed { Attempt::StaleConnection(failure) } else { Attempt::Failed(failure) }
}

fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = s.source();
    }
    None
}

fn is_incomplete_message(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_incomplete_message() || h.is_canceled()) {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_errors_tell_refused_from_stale() {
        // A refused connect is a connect failure, never a retry candidate.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = rt.block_on(reqwest::Client::new().get(format!("http://127.0.0.1:{port}/")).send()).unwrap_err();
        match send_error(err) {
            Attempt::Failed(f) => assert_eq!(f.outcome, Outcome::ConnectRefused),
            Attempt::StaleConnection(_) => panic!("a refused connect is not a stale connection"),
        }
    }
}
