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

/// How a worker's end is recorded: the `worker_exit` event's detail.
pub struct Exit<'a> {
    pub pid: Option<u32>,
    /// `exit status 3`, `signal 9 (SIGKILL)`.
    pub exit: &'a str,
    /// Why soakd ended it (a timeout, a broken protocol, shutdown), or `None` when it died.
    pub killed_by_soakd: Option<&'a str>,
    /// What it was doing: `idle`, `starting`, `a request, after 12 tokens`, …
    pub during: &'a str,
    pub requests_served: u64,
    pub lived: Duration,
    pub backoff: &'a Backoff,
    pub next_start_in: Duration,
    /// Its last lines on stderr, bounded.
    pub stderr: &'a str,
}

impl Exit<'_> {
    pub fn event(&self) -> super::ServerEvent {
        super::ServerEvent {
            kind: super::EventKind::WorkerExit,
            detail: json!({
                "pid": self.pid,
                "exit": self.exit,
                "killed_by_soakd": self.killed_by_soakd,
                "during": self.during,
                "requests_served": self.requests_served,
                "lived_ms": self.lived.as_millis() as u64,
                "deaths_in_a_row": self.backoff.deaths,
                "next_start_in_ms": self.next_start_in.as_millis() as u64,
                "stderr": self.stderr,
                "at": now_ms(),
            }),
        }
    }
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
