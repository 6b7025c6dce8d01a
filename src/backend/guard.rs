//! A response body stream with soakd's limits on it, placed under the SSE parser: it fails
//! when the server goes silent for longer than the stall limit (keepalive comments count as
//! life) and when a line grows past a bound (an unterminated line would otherwise be buffered
//! without end).

use bytes::Bytes;
use futures_util::Stream;
use pin_project_lite::pin_project;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The longest SSE line soakd accepts.
pub(crate) const MAX_LINE_BYTES: usize = 1024 * 1024;

#[derive(Debug)]
pub(crate) enum StreamFault {
    Stalled(Duration),
    LineTooLong,
    Transport(reqwest::Error),
}

impl fmt::Display for StreamFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamFault::Stalled(d) => write!(f, "no data for {} ms mid-stream", d.as_millis()),
            StreamFault::LineTooLong => write!(f, "a stream line longer than {MAX_LINE_BYTES} bytes"),
            StreamFault::Transport(e) => write!(f, "{}", super::transport::error_chain(e)),
        }
    }
}

pin_project! {
    pub(crate) struct Guarded<S> {
        #[pin]
        inner: S,
        #[pin]
        timer: Sleep,
        stall: Duration,
        line: usize,
        failed: bool,
    }
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S, stall: Duration) -> Self {
        Guarded { inner, timer: tokio::time::sleep(stall), stall, line: 0, failed: false }
    }
}

impl<S> Stream for Guarded<S>
where
    S: Stream<Item = reqwest::Result<Bytes>>,
{
    type Item = Result<Bytes, StreamFault>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        match this.inner.poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                this.timer.as_mut().reset(Instant::now() + *this.stall);
                *this.line = match bytes.iter().rposition(|b| *b == b'\n') {
                    Some(pos) => bytes.len() - pos - 1,
                    None => *this.line + bytes.len(),
                };
                if *this.line > MAX_LINE_BYTES {
                    *this.failed = true;
                    return Poll::Ready(Some(Err(StreamFault::LineTooLong)));
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                *this.failed = true;
                Poll::Ready(Some(Err(StreamFault::Transport(e))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.timer.poll(cx) {
                Poll::Ready(()) => {
                    *this.failed = true;
                    Poll::Ready(Some(Err(StreamFault::Stalled(*this.stall))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn ok(s: &'static str) -> reqwest::Result<Bytes> {
        Ok(Bytes::from_static(s.as_bytes()))
    }

    #[tokio::test(start_paused = true)]
    async fn silence_past_the_limit_is_a_stall() {
        let inner = futures_util::stream::iter([ok("data: 1\n\n")]).chain(futures_util::stream::pending());
        let mut g = Box::pin(Guarded::new(inner, Duration::from_secs(5)));
        assert!(matches!(g.next().await, Some(Ok(_))));
        let started = Instant::now();
        assert!(matches!(g.next().await, Some(Err(StreamFault::Stalled(_)))));
        assert!(started.elapsed() >= Duration::from_secs(5));
        assert!(g.next().await.is_none(), "nothing after a fault");
    }

    #[tokio::test]
    async fn an_endless_line_is_refused() {
        let big: &'static str = Box::leak("x".repeat(MAX_LINE_BYTES / 2).into_boxed_str());
        let inner = futures_util::stream::iter([ok("data: "), ok(big), ok(big), ok(big)]);
        let mut g = Box::pin(Guarded::new(inner, Duration::from_secs(5)));
        let mut faults = 0;
        while let Some(item) = g.next().await {
            if let Err(StreamFault::LineTooLong) = item {
                faults += 1;
            }
        }
        assert_eq!(faults, 1);
    }

    #[tokio::test]
    async fn newlines_reset_the_line_count() {
        let line: &'static str = Box::leak(format!("{}\n", "y".repeat(MAX_LINE_BYTES - 10)).into_boxed_str());
        let inner = futures_util::stream::iter([ok(line), ok(line), ok(line)]);
        let items: Vec<_> = Guarded::new(inner, Duration::from_secs(5)).collect().await;
        assert!(items.iter().all(Result::is_ok));
    }
}
