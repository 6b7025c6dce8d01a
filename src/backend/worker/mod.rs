//! One worker supervisor for the kinds that run their model in a process soakd starts — `mlx-lm`
//! (Python running mlx_lm) and `mlx` (`soakd mlx-worker`): the process and its lines
//! (`process`), how it ended in words (one signal table), when the next one may start (one
//! backoff), and the one event a worker's end is recorded as (`worker_exit`, with its cause).
//! The kinds keep only their protocols.

mod process;

pub use process::{Decode, Worker};

use crate::time::{Instant, now_ms};
use serde_json::json;
use std::process::ExitStatus;
use std::time::Duration;

/// The longest wait before a new worker after deaths in a row.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// When the next worker may start: at once after a worker soakd stopped itself, else after 1,
/// 2, 4 … 60 s for deaths in a row; a good request resets the count.
#[derive(Debug, Default)]
pub struct Backoff {
    /// Deaths in a row without a good request between them.
    pub deaths: u32,
    /// No new worker starts before this.
    pub not_before: Option<Instant>,
}

impl Backoff {
    /// A worker died (or could not start): returns how long until the next may start.
    pub fn died(&mut self) -> Duration {
        self.deaths += 1;
        let wait = Duration::from_secs(1 << self.deaths.saturating_sub(1).min(6)).min(MAX_BACKOFF);
        self.not_before = Some(Instant::now() + wait);
        wait
    }

    /// A request went well: the next death waits the shortest time again.
    pub fn reset(&mut self) {
        self.deaths = 0;
        self.not_before = None;
    }

    /// The time a new worker must wait for, if it is still in the future.
    pub fn pending(&self) -> Option<Instant> {
        self.not_before.filter(|at| *at > Instant::now())
    }
}

/// How a worker ended: in words (`signal 9 (SIGKILL)`), and the `worker_exit` event that
/// records it (with its last stderr lines).
pub struct Ended {
    pub exit: String,
    pub event: super::ServerEvent,
}

/// Ends `worker` — killed at once when soakd ends it (`by_soakd` says why), else given `grace`
/// to exit by itself — and records how. A death soakd did not cause counts toward `backoff`.
/// `during` says what it was doing (`idle`, `a request, after 12 tokens`, …).
pub async fn end<D: Decode>(
    worker: &mut Worker<D>,
    backoff: &mut Backoff,
    by_soakd: Option<&str>,
    during: &str,
    requests_served: u64,
    grace: Duration,
) -> Ended {
    if by_soakd.is_some() {
        worker.kill();
    }
    let exit = describe_exit(worker.end(grace).await);
    let next_start_in = if by_soakd.is_none() { backoff.died() } else { Duration::ZERO };
    let stderr = worker.last_words();
    let event = super::ServerEvent {
        kind: super::EventKind::WorkerExit,
        detail: json!({
            "pid": worker.pid,
            "exit": exit,
            "killed_by_soakd": by_soakd,
            "during": during,
            "requests_served": requests_served,
            "lived_ms": worker.started.elapsed().as_millis() as u64,
            "deaths_in_a_row": backoff.deaths,
            "next_start_in_ms": next_start_in.as_millis() as u64,
            "stderr": stderr,
            "at": now_ms(),
        }),
    };
    tracing::warn!(pid = worker.pid, %exit, killed_by_soakd = ?by_soakd, during, "a worker ended");
    Ended { exit, event }
}

/// How a process ended, in words: `exit status 1`, `signal 9 (SIGKILL)`.
pub fn describe_exit(status: Option<ExitStatus>) -> String {
    let Some(status) = status else { return "exit status unknown".to_string() };
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let core = if status.core_dumped() { ", core dumped" } else { "" };
            return match signal_name(sig) {
                Some(name) => format!("signal {sig} ({name}{core})"),
                None => format!("signal {sig}{core}"),
            };
        }
    }
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "exit status unknown".to_string(),
    }
}

#[cfg(unix)]
fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        #[cfg(target_os = "macos")]
        10 => "SIGBUS",
        #[cfg(not(target_os = "macos"))]
        7 => "SIGBUS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn status_of(script: &str) -> Option<ExitStatus> {
        std::process::Command::new("sh").args(["-c", script]).status().ok()
    }

    #[cfg(unix)]
    #[test]
    fn exits_are_told_in_words() {
        assert_eq!(describe_exit(status_of("exit 3")), "exit status 3");
        assert_eq!(describe_exit(status_of("kill -9 $$")), "signal 9 (SIGKILL)");
        assert_eq!(describe_exit(None), "exit status unknown");
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_resets() {
        let mut b = Backoff::default();
        let secs: Vec<u64> = (1..=9).map(|_| b.died().as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert!(b.pending().is_some());
        b.reset();
        assert_eq!((b.deaths, b.pending()), (0, None));
        b.deaths = u32::MAX - 1;
        assert_eq!(b.died(), MAX_BACKOFF);
    }
}
