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
        // Armed for the stall limit after the data seen when it was last set; data since then
        // only moves `last_data`, and the timer is moved on when it fires early (a reset per
        // chunk would cost a clock read and a timer-wheel update per token).
        #[pin]
        timer: Sleep,
        last_data: Instant,
        stall: Duration,
        line: usize,
        failed: bool,
    }
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S, stall: Duration) -> Self {
        Guarded { inner, timer: tokio::time::sleep(stall), last_data: Instant::now(), stall, line: 0, failed: false }
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
                *this.last_data = Instant::now();
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
            Poll::Pending => loop {
                match this.timer.as_mut().poll(cx) {
                    Poll::Pending => break Poll::Pending,
                    Poll::Ready(()) => {
                        let due = *this.last_data + *this.stall;
                        if due > this.timer.deadline() {
                            // Data came since the timer was set: the silence began then.
                            this.timer.as_mut().reset(due);
                            continue;
                        }
                        *this.failed = true;
                        break Poll::Ready(Some(Err(StreamFault::Stalled(*this.stall))));
                    }
                }
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

    /// Data every 3 s for 12 s under a 5 s limit is no stall; the silence after it is, counted
    /// from the last data, not from when the timer was first set.
    #[tokio::test(start_paused = true)]
    async fn the_stall_limit_counts_from_the_last_data() {
        let inner = futures_util::stream::unfold(0, |n| async move {
            if n == 4 {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            Some((ok("data: 1\n\n"), n + 1))
        })
        .chain(futures_util::stream::pending());
        let started = Instant::now();
        let mut g = Box::pin(Guarded::new(inner, Duration::from_secs(5)));
        for _ in 0..4 {
            assert!(matches!(g.next().await, Some(Ok(_))));
        }
        assert_eq!(started.elapsed(), Duration::from_secs(12));
        assert!(matches!(g.next().await, Some(Err(StreamFault::Stalled(_)))));
        assert_eq!(started.elapsed(), Duration::from_secs(17), "5 s after the last data");
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
