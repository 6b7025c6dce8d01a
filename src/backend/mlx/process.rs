//! Kind `mlx`'s worker process (`soakd mlx-worker`, this same binary): starting it and waiting
//! for its `ready` line, writing requests and reading bounded JSON lines, and describing how it
//! ended (exit status or signal, with the last lines of its stderr).

use serde_json::Value;
use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The longest line the worker may send (a token's text is far shorter).
const MAX_LINE_BYTES: usize = 1024 * 1024;
/// Lines of the worker's stderr kept for a crash's description.
const STDERR_LINES: usize = 20;

pub(super) struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    pub pid: Option<u32>,
    /// The load time from `ready`, until the first request takes it.
    pub load_ms: Option<f64>,
}

/// A worker line that was not one.
#[derive(Debug)]
pub(super) enum ReadError {
    Io(std::io::Error),
    TooLong,
    NotJson(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "reading the worker's output: {e}"),
            ReadError::TooLong => write!(f, "the worker sent a line over {MAX_LINE_BYTES} bytes"),
            ReadError::NotJson(l) => write!(f, "the worker sent a line that is not JSON: {l}"),
        }
    }
}

impl Worker {
    /// Starts `exe mlx-worker --model DIR`; the caller waits for `ready` with `next`.
    pub fn spawn(exe: &Path, model: &Path) -> std::io::Result<Worker> {
        let mut child = Command::new(exe)
            .arg("mlx-worker")
            .arg("--model")
            .arg(model)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(err) = child.stderr.take() {
            let keep = stderr.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err.take(64 * 1024 * 1024)).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut k = keep.lock().unwrap_or_else(|e| e.into_inner());
                    if k.len() == STDERR_LINES {
                        k.pop_front();
                    }
                    k.push_back(crate::text::bounded(&line, 400));
                }
            });
        }
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Worker { pid: child.id(), stdin: child.stdin.take(), stdout, stderr, child, load_ms: None })
    }

    pub async fn send(&mut self, v: &Value) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(v)?;
        line.push(b'\n');
        let stdin = self.stdin.as_mut().ok_or_else(|| std::io::Error::other("stdin closed"))?;
        stdin.write_all(&line).await?;
        stdin.flush().await
    }

    /// The next JSON line; `Ok(None)` when the worker closed its output (it died or exited).
    pub async fn next(&mut self) -> Result<Option<Value>, ReadError> {
        let mut buf = Vec::new();
        loop {
            let chunk = self.stdout.fill_buf().await.map_err(ReadError::Io)?;
            if chunk.is_empty() {
                return Ok(None);
            }
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            buf.extend_from_slice(&chunk[..take]);
            self.stdout.consume(take);
            if buf.len() > MAX_LINE_BYTES {
                return Err(ReadError::TooLong);
            }
            if done {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim();
                if line.is_empty() {
                    buf.clear();
                    continue;
                }
                return serde_json::from_str(line)
                    .map(Some)
                    .map_err(|_| ReadError::NotJson(crate::text::bounded(line, 300)));
            }
        }
    }

    /// How the worker ended, once its output closed: waits briefly, then kills it.
    pub async fn ended(mut self) -> String {
        let status = match tokio::time::timeout(std::time::Duration::from_secs(2), self.child.wait()).await {
            Ok(Ok(s)) => Some(s),
            _ => {
                let _ = self.child.kill().await;
                None
            }
        };
        // Give the stderr reader a moment to take the last lines.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let how = status.map(describe_status).unwrap_or_else(|| "closed its output but did not exit".into());
        let tail: Vec<String> = self.stderr.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
        if tail.is_empty() { how } else { format!("{how}; its stderr ended with: {}", tail.join(" | ")) }
    }

    /// Stops the worker: closes its stdin (it exits), kills it after `grace`.
    pub async fn stop(mut self, grace: std::time::Duration) {
        self.stdin.take();
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// "killed by signal 6 (SIGABRT)" or "exited with status 1".
pub(super) fn describe_status(s: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = s.signal() {
            return format!("the mlx worker was killed by signal {sig} ({})", signal_name(sig));
        }
    }
    match s.code() {
        Some(c) => format!("the mlx worker exited with status {c}"),
        None => "the mlx worker ended".to_string(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        4 => "SIGILL",
        6 => "SIGABRT",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        7 if cfg!(target_os = "linux") => "SIGBUS",
        10 if cfg!(target_os = "macos") => "SIGBUS",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn names_the_signal_or_the_status() {
        use std::os::unix::process::ExitStatusExt;
        let aborted = std::process::ExitStatus::from_raw(6);
        assert_eq!(describe_status(aborted), "the mlx worker was killed by signal 6 (SIGABRT)");
        let exited = std::process::ExitStatus::from_raw(1 << 8);
        assert_eq!(describe_status(exited), "the mlx worker exited with status 1");
    }
}
