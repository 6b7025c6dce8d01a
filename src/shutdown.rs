//! Graceful shutdown, in two steps. `stop` asks every loop to stop starting new work (no new
//! firings, no new requests); `abort` — after a grace period — tells requests still in flight
//! to give up, and they are recorded as `cancelled`.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    stop: CancellationToken,
    abort: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stop starting new work.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Stop starting new work now, and cancel what is in flight after `grace`.
    pub fn stop_then_abort(&self, grace: Duration) {
        self.stop.cancel();
        let abort = self.abort.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            abort.cancel();
        });
    }

    /// Cancel in-flight work now.
    pub fn abort(&self) {
        self.stop.cancel();
        self.abort.cancel();
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    pub async fn stopping(&self) {
        self.stop.cancelled().await
    }

    pub async fn aborted(&self) {
        self.abort.cancelled().await
    }
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C elsewhere).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
