//! One worker process, spoken to in lines: started from the kind's command, written to through
//! a queue (a line is queued whole, so a request dropped half-way never leaves half a line in
//! the pipe), read through the kind's `Decode`. Three tasks serve it: one reads stdout into
//! decoded messages (bounded by the decoder), one keeps the last bytes of stderr (and appends
//! them to the backend's `log` file when one is configured), and one owns the child: it reaps it
//! the moment it exits (so the sampler never sees a zombie), clears the shared `WorkerPid`, and
//! kills it on request.

use crate::config::WorkerPid;
use crate::text::bounded;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot, watch};

/// How a kind's worker output becomes messages: bytes in, the messages of the lines they
/// completed out (each line bounded by the decoder).
pub trait Decode: Default + Send + 'static {
    type Msg: Send + 'static;
    type Error: Send + 'static;
    fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Self::Msg, Self::Error>>;
    /// Whether nothing more can be read after this error (a line over the limit).
    fn is_fatal(error: &Self::Error) -> bool;
}

/// The most of the worker's stderr kept in memory for error texts.
const STDERR_KEEP: usize = 8 * 1024;
/// Messages buffered between the stdout reader and the request reading them.
const CHANNEL: usize = 256;

/// A running (or just-exited) worker process.
pub struct Worker<D: Decode> {
    pub pid: u32,
    pub started: Instant,
    /// Lines for the stdin writer task: a line is queued whole, so a request that is dropped
    /// half-way never leaves half a line in the pipe.
    stdin: Option<mpsc::UnboundedSender<String>>,
    messages: mpsc::Receiver<Result<D::Msg, D::Error>>,
    exit: watch::Receiver<Option<ExitStatus>>,
    kill: Option<oneshot::Sender<()>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// True once stderr reached its end (everything the worker said is kept).
    stderr_done: watch::Receiver<bool>,
}

impl<D: Decode> Worker<D> {
    /// Starts `command` (its program, arguments and environment set by the kind), queues
    /// `first_line` (a bootstrap's script) before anything else, and shares the pid at once.
    pub fn spawn(
        mut command: Command,
        first_line: Option<String>,
        log: Option<&Path>,
        shared_pid: &WorkerPid,
    ) -> std::io::Result<Worker<D>> {
        let mut child =
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).spawn()?;
        let pid = child.id().unwrap_or_default();
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("the worker's pipes were not set up"));
        };
        shared_pid.set(Some(pid));

        let (tx, messages) = mpsc::channel(CHANNEL);
        tokio::spawn(read_stdout::<D>(stdout, tx));
        let kept = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, stderr_done) = watch::channel(false);
        tokio::spawn(read_stderr(stderr, kept.clone(), log.map(Path::to_path_buf), done_tx));
        let (exit_tx, exit) = watch::channel(None);
        let (kill, kill_rx) = oneshot::channel();
        tokio::spawn(own(child, pid, shared_pid.clone(), kill_rx, exit_tx));
        let (lines, queued) = mpsc::unbounded_channel();
        if let Some(line) = first_line {
            let _ = lines.send(line);
        }
        tokio::spawn(write_stdin(stdin, queued));
        Ok(Worker {
            pid,
            started: Instant::now(),
            stdin: Some(lines),
            messages,
            exit,
            kill: Some(kill),
            stderr: kept,
            stderr_done,
        })
    }

    /// Queues one protocol line; an error means the worker's stdin is gone (it exited).
    pub fn send(&mut self, line: &str) -> std::io::Result<()> {
        let stdin = self.stdin.as_ref().ok_or_else(|| std::io::Error::other("the worker's stdin is closed"))?;
        stdin.send(line.to_string()).map_err(|_| std::io::Error::other("the worker's stdin is closed"))
    }

    /// The next message; `None` once stdout closed (the worker exited or is exiting).
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<D::Msg, D::Error>> {
        self.messages.recv().await
    }

    /// How the worker ended, if it has.
    pub fn exited(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// Waits up to `grace` for the worker to exit by itself, then kills it; returns how it ended.
    pub async fn end(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut exit = self.exit.clone();
        if tokio::time::timeout(grace, exit.wait_for(Option::is_some)).await.is_err() {
            self.kill();
        }
        let status = tokio::time::timeout(Duration::from_secs(5), exit.wait_for(Option::is_some)).await;
        let status = status.ok().and_then(|r| r.ok().and_then(|s| *s));
        // Its last words: stderr ends with the process (unless a child of its own holds it).
        let mut done = self.stderr_done.clone();
        let _ = tokio::time::timeout(Duration::from_millis(500), done.wait_for(|d| *d)).await;
        status
    }

    /// Closes stdin (the worker's signal to exit), waits up to `grace`, then kills it.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.stdin = None;
        self.end(grace).await
    }

    /// Kills the worker now (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
    }

    /// The last lines the worker wrote to stderr (a traceback, an abort message), bounded.
    pub fn last_words(&self) -> String {
        let kept = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&kept);
        let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(6)..].join(" | ");
        let start = tail.len().saturating_sub(1024);
        let start = (start..=tail.len()).find(|i| tail.is_char_boundary(*i)).unwrap_or(tail.len());
        bounded(&tail[start..], 1024)
    }
}

/// Writes the queued lines; ends (closing stdin, the worker's signal to exit) when the queue
/// is closed or the pipe breaks. A worker that dies at once (not a Python) shows as its exit.
async fn write_stdin(mut stdin: ChildStdin, mut queued: mpsc::UnboundedReceiver<String>) {
    while let Some(line) = queued.recv().await {
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
}

async fn read_stdout<D: Decode>(mut stdout: tokio::process::ChildStdout, tx: mpsc::Sender<Result<D::Msg, D::Error>>) {
    let mut lines = D::default();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match stdout.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for msg in lines.feed(&chunk[..n]) {
            let fatal = msg.as_ref().err().is_some_and(D::is_fatal);
            if tx.send(msg).await.is_err() || fatal {
                return;
            }
        }
    }
}

async fn read_stderr(
    mut stderr: tokio::process::ChildStderr,
    kept: Arc<Mutex<Vec<u8>>>,
    log: Option<PathBuf>,
    done: watch::Sender<bool>,
) {
    let mut file = match &log {
        Some(path) => tokio::fs::OpenOptions::new().create(true).append(true).open(path).await.ok(),
        None => None,
    };
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
            kept.extend_from_slice(&chunk[..n]);
            if kept.len() > 2 * STDERR_KEEP {
                let cut = kept.len() - STDERR_KEEP;
                kept.drain(..cut);
            }
        }
        if let Some(f) = file.as_mut()
            && f.write_all(&chunk[..n]).await.is_err()
        {
            file = None;
        }
    }
    if let Some(f) = file.as_mut() {
        let _ = f.flush().await;
    }
    done.send_replace(true);
}

/// Owns the child: reaps it when it exits, or kills it when asked (or when the `Worker` is
/// dropped), and clears the shared pid.
async fn own(
    mut child: Child,
    pid: u32,
    shared_pid: WorkerPid,
    kill: oneshot::Receiver<()>,
    exit: watch::Sender<Option<ExitStatus>>,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        _ = kill => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    if shared_pid.get() == Some(pid) {
        shared_pid.set(None);
    }
    exit.send_replace(status.ok());
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// Lines as they come, for the test.
    #[derive(Default)]
    struct Raw;

    impl Decode for Raw {
        type Msg = Vec<u8>;
        type Error = ();
        fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Vec<u8>, ()>> {
            vec![Ok(bytes.to_vec())]
        }
        fn is_fatal(_: &()) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn a_worker_that_fails_at_once_ends_and_its_words_are_kept() {
        // `sh -c 'no-such-command'` fails at once: stdout closes and there is an exit status.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("worker.log");
        let pid = WorkerPid::default();
        let mut command = Command::new("sh");
        command.args(["-c", "no-such-command-for-soakd"]);
        let mut w = Worker::<Raw>::spawn(command, None, Some(&log), &pid).unwrap();
        assert!(w.recv().await.is_none(), "no protocol line from sh");
        let status = w.end(Duration::from_secs(5)).await;
        assert!(status.is_some_and(|s| !s.success()), "{status:?}");
        assert_eq!(pid.get(), None, "the shared pid is cleared when the worker exits");
        assert!(!w.last_words().is_empty(), "sh's complaint is kept");
        assert!(std::fs::read_to_string(&log).is_ok_and(|t| !t.is_empty()), "and appended to the log");
    }
}
