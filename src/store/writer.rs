//! The one writer: a thread that owns the write connection and applies everything soakd
//! records in batched transactions. Senders never wait for the disk — a thousand-request burst
//! queues its rows and the thread commits whatever has accumulated in one transaction.
//!
//! Measuring never waits on SQLite: a run is named by a `RunKey` the handle hands out at once
//! (the thread maps it to `runs.id`), and rows queue in memory while another process holds the
//! database (someone's `sqlite3` session, a backup) or the disk is full. The thread retries until
//! the database or the disk frees up, losing nothing; a write that waited over a second is a
//! `db_stall` event. The queue is bounded: past `MAX_QUEUED` operations, new memory samples are
//! dropped (and counted in the next `db_stall`), never a request or an event.

use super::StoreError;
use super::apply::{Rows, apply};
use super::ops::Op;
use super::rows::{
    Event, Evidence, MemorySample, RequestEnd, RequestStart, RunKey, RunServer, RunStart, RunStatus, ServerSample,
};
pub use super::tap::{Committed, Tap};
use rusqlite::{Connection, params};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The most operations applied in one transaction.
const MAX_BATCH: usize = 2048;

/// Transactions start at most this often: what arrives meanwhile is committed together, so a
/// busy burst costs a few pages per 50 ms instead of a few per request. A flush, a run id, a tap
/// or the close is applied at once (with whatever came before it). A row committed is never
/// lost; a soakd killed within the window loses what it had not committed, and a request whose
/// start was committed is marked `interrupted` at the next start.
const BATCH_WINDOW: Duration = Duration::from_millis(50);

/// Operations queued beyond this (about a minute of a busy burst, a few tens of MB) drop new
/// memory samples until the database frees up.
const MAX_QUEUED: usize = 200_000;

/// A write that waited this long for the database is a `db_stall` event.
const STALL: Duration = Duration::from_secs(1);

/// How long a busy database or a full disk is retried before a batch is given up (logged as an
/// error).
const BUSY_GIVE_UP: Duration = Duration::from_secs(600);

/// What the writer did, for benchmarks and the closing log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    pub operations: u64,
    pub transactions: u64,
    pub failed_transactions: u64,
}

/// The writer thread; `finish` waits for it to commit everything sent before.
pub struct Writer {
    handle: WriterHandle,
    thread: std::thread::JoinHandle<WriterStats>,
}

/// A cheap, clonable way to send rows to the writer.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::UnboundedSender<Op>,
    next_key: Arc<AtomicU64>,
    next_run: Arc<AtomicU64>,
    /// Operations sent and not yet taken by the thread.
    queued: Arc<AtomicUsize>,
    /// Memory samples dropped because the queue was full, not yet reported.
    dropped: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer on an opened connection (see `store::open`).
    pub fn start(conn: Connection, path: PathBuf) -> Writer {
        let (tx, rx) = mpsc::unbounded_channel();
        let owner = own_identity();
        let handle = WriterHandle {
            tx,
            next_key: Arc::new(AtomicU64::new(1)),
            next_run: Arc::new(AtomicU64::new(1)),
            queued: Arc::new(AtomicUsize::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        let counters = Counters { queued: handle.queued.clone(), dropped: handle.dropped.clone() };
        let thread = std::thread::Builder::new()
            .name("soakd-writer".into())
            .spawn(move || run(conn, path, rx, owner, counters))
            .expect("spawn the writer thread");
        Writer { handle, thread }
    }

    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Commits everything sent so far, stops the thread and returns its numbers. Rows sent
    /// through handles after this are dropped.
    pub fn finish(self) -> WriterStats {
        let _ = self.handle.send(Op::Close);
        self.thread.join().unwrap_or_default()
    }
}

impl WriterHandle {
    /// Queues a run's row and returns its key at once (nothing waits for the database).
    pub fn begin_run(&self, run: RunStart) -> RunKey {
        let key = RunKey(self.next_run.fetch_add(1, Ordering::Relaxed));
        let _ = self.send(Op::BeginRun(Box::new(run), key));
        key
    }

    /// The run's `runs.id`, once everything sent before is committed (`None` if it could not be
    /// written).
    pub async fn run_id(&self, run: RunKey) -> Option<i64> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::RunId(run, tx)).ok()?;
        rx.await.ok().flatten()
    }

    pub fn end_run(&self, run: RunKey, status: RunStatus, finished_at: i64, requests_done: u32) {
        let _ = self.send(Op::EndRun { run, status, finished_at, requests_done });
    }

    /// A key that pairs a request's start with its end.
    pub fn next_request_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    pub fn request_started(&self, r: RequestStart) {
        let _ = self.send(Op::RequestStarted(Box::new(r)));
    }

    pub fn request_finished(&self, r: RequestEnd) {
        let _ = self.send(Op::RequestFinished(Box::new(r)));
    }

    /// Queues a memory sample, unless the queue is full (the database has been held for long):
    /// then it is dropped and counted.
    pub fn sample(&self, s: MemorySample) {
        if self.queued.load(Ordering::Relaxed) >= MAX_QUEUED {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let _ = self.send(Op::Sample(Box::new(s)));
    }

    pub fn event(&self, e: Event) {
        let _ = self.send(Op::Event(Box::new(e)));
    }

    pub fn run_server(&self, r: RunServer) {
        let _ = self.send(Op::RunServer(Box::new(r)));
    }

    pub fn server_sample(&self, s: ServerSample) {
        let _ = self.send(Op::ServerSample(Box::new(s)));
    }

    pub fn evidence(&self, e: Evidence) {
        let _ = self.send(Op::Evidence(Box::new(e)));
    }

    /// Starts `tap` following the log (see `Tap`).
    pub fn tap(&self, tap: Box<dyn Tap>) -> Result<(), StoreError> {
        self.send(Op::Tap(tap))
    }

    /// Waits until everything sent before is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Flush(tx))?;
        rx.await.map_err(|_| StoreError::WriterGone("no reply to flush".into()))
    }

    fn send(&self, op: Op) -> Result<(), StoreError> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.tx.send(op).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            StoreError::WriterGone("the writer thread has exited".into())
        })
    }
}

fn own_identity() -> (u32, u64) {
    let pid = std::process::id();
    let started = sysinfo::System::new()
        .ok()
        .and_then(|mut sys| {
            let p = sysinfo::Pid::from_u32(pid);
            sys.refresh_processes_specifics(
                sysinfo::ProcessesToUpdate::Some(&[p]),
                false,
                sysinfo::ProcessRefreshKind::nothing(),
            );
            sys.process(p).map(|p| p.start_time())
        })
        .unwrap_or(0);
    (pid, started)
}

/// The handle's queue counters, as the thread sees them.
struct Counters {
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
}

fn run(
    mut conn: Connection,
    path: PathBuf,
    mut rx: mpsc::UnboundedReceiver<Op>,
    owner: (u32, u64),
    counters: Counters,
) -> WriterStats {
    let mut stats = WriterStats::default();
    let mut rows = Rows::default();
    let mut taps: Vec<Box<dyn Tap>> = Vec::new();
    let mut last_commit: Option<Instant> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        drain(&mut rx, &mut batch);
        // Wait out the rest of the window for more, unless someone waits for this batch.
        if let Some(at) = last_commit
            && !batch.iter().any(Op::is_urgent)
            && batch.len() < MAX_BATCH
            && let Some(rest) = BATCH_WINDOW.checked_sub(at.elapsed())
        {
            std::thread::sleep(rest);
            drain(&mut rx, &mut batch);
        }
        last_commit = Some(Instant::now());
        counters.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        let began = Instant::now();
        let (mut attempt, mut last_error) = (0, None);
        loop {
            match apply(&mut conn, &batch, &mut rows, owner) {
                Ok(finished) => {
                    if !taps.is_empty() {
                        let committed = Committed {
                            finished: &finished,
                            samples: batch
                                .iter()
                                .filter_map(|op| if let Op::Sample(s) = op { Some(&**s) } else { None })
                                .collect(),
                            events: batch
                                .iter()
                                .filter_map(|op| if let Op::Event(e) = op { Some(&**e) } else { None })
                                .collect(),
                        };
                        taps.iter_mut().for_each(|t| t.committed(&conn, &committed));
                    }
                    break;
                }
                Err(e) => {
                    stats.failed_transactions += 1;
                    attempt += 1;
                    // Another process holds the database, or the disk is full: wait for it (the
                    // rows queue meanwhile); anything else gets five tries.
                    let wait = waits(&e);
                    let (give_up, pause) = match wait {
                        Some(Wait::Busy) => (began.elapsed() >= BUSY_GIVE_UP, Duration::from_millis(50)),
                        Some(Wait::Full) => (began.elapsed() >= BUSY_GIVE_UP, Duration::from_millis(500)),
                        None => (attempt >= 5, Duration::from_millis(200 * attempt)),
                    };
                    if give_up {
                        tracing::error!(db = %path.display(), error = %e, ops = batch.len(), "giving up on a batch of rows");
                        break;
                    }
                    match wait {
                        Some(Wait::Full) if attempt == 1 => tracing::error!(
                            db = %path.display(),
                            error = %e,
                            "the disk is full: rows wait in memory until space is freed on it"
                        ),
                        None => {
                            tracing::warn!(db = %path.display(), error = %e, "writing to the database failed; retrying")
                        }
                        _ => {}
                    }
                    last_error = Some(e.to_string());
                    std::thread::sleep(pause);
                }
            }
        }
        let waited = began.elapsed();
        if waited >= STALL {
            let dropped = counters.dropped.swap(0, Ordering::Relaxed);
            record_stall(&conn, waited, batch.len(), dropped, last_error.as_deref());
            tracing::warn!(db = %path.display(), ms = waited.as_millis() as u64, dropped, "a database write waited over a second (another process held it, or the disk was full); nothing waited for it but the log");
        }
        stats.transactions += 1;
        let closing = batch.iter().any(|op| matches!(op, Op::Close));
        stats.operations +=
            batch.iter().filter(|op| !matches!(op, Op::Close | Op::RunId(..) | Op::Tap(_))).count() as u64;
        for op in batch {
            match op {
                Op::Tap(mut tap) => {
                    tap.start(&conn);
                    taps.push(tap);
                }
                Op::RunId(key, reply) => {
                    let _ = reply.send(rows.run(key));
                }
                Op::Flush(reply) => {
                    let _ = reply.send(());
                }
                _ => {}
            }
        }
        if closing {
            break;
        }
    }
    stats
}

/// Moves what is queued into `batch`, up to `MAX_BATCH`.
fn drain(rx: &mut mpsc::UnboundedReceiver<Op>, batch: &mut Vec<Op>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(op) => batch.push(op),
            Err(_) => break,
        }
    }
}

/// What a failed write waits for, if it is worth waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Another process holds the database.
    Busy,
    /// The disk (or SQLite's page limit) is full.
    Full,
}

fn waits(e: &rusqlite::Error) -> Option<Wait> {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked, DiskFull};
    match e.sqlite_error_code()? {
        DatabaseBusy | DatabaseLocked => Some(Wait::Busy),
        DiskFull => Some(Wait::Full),
        _ => None,
    }
}

/// The `db_stall` event: how long a write waited, for how many operations, and how many memory
/// samples were dropped meanwhile. Best effort: it is about soakd, not the server.
fn record_stall(conn: &Connection, waited: Duration, ops: usize, dropped: u64, error: Option<&str>) {
    let detail = serde_json::json!({
        "ms": waited.as_millis() as u64,
        "ops": ops,
        "samples_dropped": dropped,
        "error": error,
    });
    let at = crate::time::now_ms() - waited.as_millis() as i64;
    if let Err(e) = conn.execute(
        "INSERT INTO events (backend, kind, at, detail) VALUES (NULL, 'db_stall', ?1, ?2)",
        params![at, detail.to_string()],
    ) {
        tracing::warn!(error = %e, "could not record a db_stall event");
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
pub(super) mod tests;
