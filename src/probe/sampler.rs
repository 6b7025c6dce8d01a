//! The memory sampler: one task per backend that samples the backend's process tree and the
//! machine — before and after requests (when none other is in flight), every few seconds while
//! a workload runs, and on an idle cadence — and turns a changed pid or start time into a
//! `restart` event.
//!
//! It also keeps the backend's "requests since the server started" counter (`server_seq`),
//! seeded from the database when a process is first seen, so a soakd restart does not reset it.

use super::evidence::{Cause, Collector};
use super::process::{Identity, Processes};
use crate::config::{ProcessSelector, SamplerConfig};
use crate::measure::EventKind;
use crate::shutdown::Shutdown;
use crate::store::rows::{Event, Evidence, MemorySample, Phase, RunKey};
use crate::store::{WriterHandle, queries};
use crate::time::now_ms;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Full process rescans (to find new children) at most this often.
const RESCAN_EVERY: Duration = Duration::from_secs(10);
/// Looking for a missing process at most this often.
const RESOLVE_EVERY: Duration = Duration::from_millis(500);
/// Requests back to back: a `before` or `after` sample is left out when one with none in flight
/// was taken less than this long ago in the same run, unless the request before it failed (a
/// run's last `after` is always taken). A server answering 1,000 requests a second one at a
/// time then gets about 50 `before`/`after` pairs a second instead of 1,000.
pub const BACK_TO_BACK: Duration = Duration::from_millis(20);
/// Recent request ends remembered, to count what a restarted server received before it was seen.
const RECENT: usize = 4096;

/// What the runner and the sampler share about one backend's server.
#[derive(Debug)]
struct Shared {
    /// True once the first sample has looked for the process.
    ready: watch::Sender<bool>,
    /// Requests begun: sent, or waiting for their `before` sample.
    in_flight: AtomicU32,
    /// Requests sent and not yet ended: what a sample records as `in_flight`.
    on_wire: AtomicU32,
    /// True while a `before` sample is being taken: requests that begin meanwhile wait for it.
    /// Each request is counted into `in_flight` under its lock, so one that begins after the
    /// first sees it set.
    sampling_before: watch::Sender<bool>,
    /// Latest finished requests that started with no server process known: their start (unix ms)
    /// and whether they reached a server.
    recent: Mutex<std::collections::VecDeque<(i64, bool)>>,
    /// The run whose requests are in flight (for `memory_samples.run_id`): its key, 0 when none.
    run: AtomicU64,
    server: Mutex<ServerCount>,
    /// When the last sample with none in flight was taken, and in which run (0: none).
    quiet: Mutex<Option<(Instant, u64)>>,
    /// An `after` sample was left out (`BACK_TO_BACK`): the run's end takes it.
    after_owed: AtomicBool,
    /// The last request to end failed: the next `before` sample is taken whatever the last one's age.
    failed: AtomicBool,
}

impl Shared {
    /// Whether a sample with none in flight was taken in `run` under `BACK_TO_BACK` ago.
    fn quiet_sample_is_fresh(&self, run: u64) -> bool {
        matches!(*self.quiet.lock().expect("sampler state"), Some((at, r)) if r == run && at.elapsed() < BACK_TO_BACK)
    }
}

#[derive(Debug, Default)]
struct ServerCount {
    identity: Option<Identity>,
    requests: u64,
}

enum Cmd {
    Sample(Phase, Option<oneshot::Sender<()>>),
}

/// Start times of one process read in two sessions may differ by a rounding second.
const START_TOLERANCE_S: u64 = 2;

/// A running sampler.
pub struct Sampler {
    handle: SamplerHandle,
    task: tokio::task::JoinHandle<()>,
}

/// The runner's side of a sampler.
#[derive(Clone)]
pub struct SamplerHandle {
    tx: Option<mpsc::UnboundedSender<Cmd>>,
    shared: Arc<Shared>,
}

impl Sampler {
    /// Starts sampling `backend`. With `ProcessSelector::None` nothing is sampled, but the
    /// handle still works.
    pub fn start(
        backend: String,
        selector: ProcessSelector,
        config: SamplerConfig,
        writer: WriterHandle,
        evidence: Arc<Collector>,
        db: PathBuf,
        shutdown: Shutdown,
    ) -> Sampler {
        let shared = Arc::new(Shared {
            ready: watch::Sender::new(false),
            in_flight: AtomicU32::new(0),
            on_wire: AtomicU32::new(0),
            sampling_before: watch::Sender::new(false),
            recent: Mutex::default(),
            run: AtomicU64::new(0),
            server: Mutex::default(),
            quiet: Mutex::default(),
            after_owed: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        });
        if matches!(selector, ProcessSelector::None) {
            shared.ready.send_replace(true);
            let task = tokio::spawn(async {});
            return Sampler { handle: SamplerHandle { tx: None, shared }, task };
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let state = State {
            backend,
            processes: Some(Processes::new(selector)),
            config,
            writer,
            evidence,
            db,
            shared: shared.clone(),
            last_known: None,
            missing_reported: false,
            last_rescan: None,
            last_resolve: None,
        };
        let task = tokio::spawn(state.run(rx, shutdown));
        Sampler { handle: SamplerHandle { tx: Some(tx), shared }, task }
    }

    pub fn handle(&self) -> SamplerHandle {
        self.handle.clone()
    }

    /// Waits for the sampler to stop (after shutdown's stop signal).
    pub async fn join(self) {
        drop(self.handle);
        let _ = self.task.await;
    }
}

/// What the runner learns when a request begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerPosition {
    pub pid: Option<u32>,
    /// The nth request soakd sent to this server process (1 = first).
    pub seq: Option<u64>,
}

impl SamplerHandle {
    /// A request is about to start: takes a `before` sample first when nothing else is in
    /// flight (see `BACK_TO_BACK`), and returns the server's pid and this request's position in
    /// its life.
    pub async fn request_starting(&self, run: RunKey) -> ServerPosition {
        let mut first = false;
        self.shared.sampling_before.send_if_modified(|sampling| {
            first = self.shared.in_flight.fetch_add(1, Ordering::SeqCst) == 0;
            *sampling |= first;
            first
        });
        if first {
            // Lowered however this ends, a request given up on mid-sample included.
            let _lowered = Lower(&self.shared.sampling_before);
            self.shared.run.store(run.0, Ordering::Relaxed);
            let after_failure = self.shared.failed.swap(false, Ordering::SeqCst);
            if after_failure || !self.shared.quiet_sample_is_fresh(run.0) {
                self.sample_and_wait(Phase::Before).await;
            }
        } else if self.tx.is_some() {
            // Concurrent starters wait for the first look at the process, so they know its pid,
            // and for a `before` sample being taken, which is of a server with nothing to do.
            let _ = self.shared.ready.subscribe().wait_for(|ready| *ready).await;
            if *self.shared.sampling_before.borrow() {
                let _ = self.shared.sampling_before.subscribe().wait_for(|sampling| !*sampling).await;
            }
        }
        self.shared.on_wire.fetch_add(1, Ordering::SeqCst);
        let mut server = self.shared.server.lock().expect("sampler state");
        match server.identity {
            Some(id) => {
                server.requests += 1;
                ServerPosition { pid: Some(id.pid), seq: Some(server.requests) }
            }
            None => ServerPosition { pid: None, seq: None },
        }
    }

    /// A request that started at `started_ms` ended; `reached` is false when it never got to a
    /// server (a refused or failed connect); `position` is what `request_starting` said. Takes
    /// an `after` sample when none is left in flight (see `BACK_TO_BACK`).
    pub fn request_finished(&self, started_ms: i64, reached: bool, failed: bool, position: ServerPosition) {
        if failed {
            self.shared.failed.store(true, Ordering::SeqCst);
        }
        if position.pid.is_none() {
            let mut server = self.shared.server.lock().expect("sampler state");
            match server.identity {
                // The server was found while this request was in flight, and it reached that
                // server: one more request of its life.
                Some(id) if reached && started_ms >= id.started_at as i64 * 1000 => server.requests += 1,
                _ => {
                    let mut recent = self.shared.recent.lock().expect("sampler state");
                    if recent.len() == RECENT {
                        recent.pop_front();
                    }
                    recent.push_back((started_ms, reached));
                }
            }
        }
        self.shared.on_wire.fetch_sub(1, Ordering::SeqCst);
        if self.shared.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            let run = self.shared.run.load(Ordering::Relaxed);
            if failed || !self.shared.quiet_sample_is_fresh(run) {
                self.send(Cmd::Sample(Phase::After, None));
            } else {
                self.shared.after_owed.store(true, Ordering::SeqCst);
            }
        }
    }

    /// A run's requests have all ended: takes the `after` sample left out at its last one.
    pub async fn run_ended(&self) {
        if self.shared.after_owed.swap(false, Ordering::SeqCst) {
            self.sample_and_wait(Phase::After).await;
        }
    }

    /// The server's pid as last sampled, once the sampler has had its first look.
    pub async fn pid(&self) -> Option<u32> {
        if self.tx.is_some() {
            let _ = self.shared.ready.subscribe().wait_for(|ready| *ready).await;
        }
        self.shared.server.lock().expect("sampler state").identity.map(|i| i.pid)
    }

    /// Takes a sample now and waits for it to be taken.
    pub async fn sample_and_wait(&self, phase: Phase) {
        let (tx, rx) = oneshot::channel();
        if self.send(Cmd::Sample(phase, Some(tx))) {
            let _ = rx.await;
        }
    }

    fn send(&self, cmd: Cmd) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(cmd).is_ok())
    }
}

/// Sets a flag back to false when dropped.
struct Lower<'a>(&'a watch::Sender<bool>);

impl Drop for Lower<'_> {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

struct State {
    backend: String,
    processes: Option<Processes>,
    config: SamplerConfig,
    writer: WriterHandle,
    evidence: Arc<Collector>,
    db: PathBuf,
    shared: Arc<Shared>,
    last_known: Option<Identity>,
    missing_reported: bool,
    last_rescan: Option<Instant>,
    last_resolve: Option<Instant>,
}

impl State {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>, shutdown: Shutdown) {
        self.sample(Phase::Idle).await;
        let mut next_tick = Instant::now() + self.cadence();
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Sample(phase, ack)) => {
                        self.sample(phase).await;
                        if let Some(ack) = ack {
                            let _ = ack.send(());
                        }
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(next_tick.into()) => {
                    let phase = if self.shared.in_flight.load(Ordering::SeqCst) > 0 { Phase::During } else { Phase::Idle };
                    self.sample(phase).await;
                    next_tick = Instant::now() + self.cadence();
                }
                _ = shutdown.stopping() => break,
            }
            // A workload starting shortens the wait; `During` ticks follow at their cadence.
            next_tick = next_tick.min(Instant::now() + self.cadence());
        }
    }

    fn cadence(&self) -> Duration {
        if self.shared.in_flight.load(Ordering::SeqCst) > 0 {
            self.config.during_interval
        } else {
            self.config.idle_interval
        }
    }

    async fn sample(&mut self, phase: Phase) {
        let Some(mut processes) = self.processes.take() else { return };
        let now = Instant::now();
        let rescan = self.last_rescan.is_none_or(|t| now.duration_since(t) >= RESCAN_EVERY);
        let resolve = self.last_resolve.is_none_or(|t| now.duration_since(t) >= RESOLVE_EVERY);
        let known = self.last_known.is_some() && !self.missing_reported;
        // A known tree between rescans is a few small /proc reads: measured here, with no
        // hand-off to a blocking thread (the `before` sample delays the request it precedes).
        // Anything else — a rescan, a root found gone, a full scan to find it — goes to one.
        let inline = if known && !rescan && processes.measures_cheaply() { processes.measure(false) } else { None };
        let (processes, tree, system, resolved) = match inline {
            Some(tree) => {
                let system = processes.system();
                (processes, Some(tree), system, false)
            }
            None => tokio::task::spawn_blocking(move || {
                let mut tree = if known { processes.measure(rescan) } else { None };
                // A process that just vanished is looked for again at once; a missing one, at
                // most every RESOLVE_EVERY (a full scan of the machine's processes and sockets).
                let resolving = tree.is_none() && (resolve || known);
                if resolving && processes.resolve().is_some() {
                    tree = processes.measure(false);
                }
                let system = processes.system();
                (processes, tree, system, resolving)
            })
            .await
            .expect("the sampling thread does not panic"),
        };
        self.processes = Some(processes);
        if rescan || resolved {
            self.last_rescan = Some(now);
        }
        if resolved {
            self.last_resolve = Some(now);
        }
        let identity = tree.as_ref().map(|t| t.root);
        self.note_identity(identity).await;
        self.shared.ready.send_replace(true);
        let run = self.shared.run.load(Ordering::Relaxed);
        let in_flight = self.shared.on_wire.load(Ordering::SeqCst);
        if in_flight == 0 {
            *self.shared.quiet.lock().expect("sampler state") = Some((now, run));
            self.shared.after_owed.store(false, Ordering::SeqCst);
        }
        self.writer.sample(MemorySample {
            backend: self.backend.clone(),
            pid: identity.map(|i| i.pid),
            proc_started_at: identity.map(|i| i.started_at),
            taken_at: now_ms(),
            phase,
            in_flight,
            processes: tree.as_ref().map(|t| t.processes),
            rss_bytes: tree.as_ref().map(|t| t.rss_bytes),
            footprint_bytes: tree.as_ref().and_then(|t| t.footprint_bytes),
            sys_used_bytes: system.used_bytes,
            sys_available_bytes: system.available_bytes,
            swap_used_bytes: system.swap_used_bytes,
            run: (run > 0 && (in_flight > 0 || phase == Phase::After)).then_some(RunKey(run)),
        });
    }

    /// Records restarts and a process going missing; keeps the per-server request count.
    async fn note_identity(&mut self, identity: Option<Identity>) {
        let event = |kind: EventKind, detail: serde_json::Value| Event {
            backend: Some(self.backend.clone()),
            kind,
            at: now_ms(),
            detail,
        };
        match (self.last_known, identity) {
            (_, None) => {
                if !self.missing_reported {
                    self.missing_reported = true;
                    let detail = json!({"last_pid": self.last_known.map(|i| i.pid), "selector": self.processes.as_ref().map(|p| p.selector().describe())});
                    let pid = self.last_known.map(|i| i.pid);
                    self.event_with_evidence(event(EventKind::ProcessMissing, detail), pid).await;
                    self.shared.server.lock().expect("sampler state").identity = None;
                }
            }
            (Some(old), Some(new)) if old != new => {
                let detail = json!({"old_pid": old.pid, "new_pid": new.pid, "old_started_at": old.started_at, "new_started_at": new.started_at});
                self.event_with_evidence(event(EventKind::Restart, detail), Some(old.pid)).await;
                self.adopt_restarted(new);
            }
            (None, Some(new)) => {
                // The log, not this session, knows the process: one that differs from the last
                // recorded for this backend was restarted while soakd was away.
                if let Some((old, seen_at)) = self.last_recorded().await
                    && (old.pid != new.pid || old.started_at.abs_diff(new.started_at) > START_TOLERANCE_S)
                {
                    let detail = json!({
                        "old_pid": old.pid, "new_pid": new.pid,
                        "old_started_at": old.started_at, "new_started_at": new.started_at,
                        "detected_at_start": true,
                        "away_s": (now_ms() - seen_at).max(0) / 1000,
                    });
                    self.writer.event(event(EventKind::Restart, detail));
                }
                let before = self.requests_already_sent(new).await;
                self.writer
                    .event(event(EventKind::ProcessFound, json!({"pid": new.pid, "started_at": new.started_at})));
                self.adopt(new, before);
            }
            (Some(_), Some(new)) => {
                if self.missing_reported {
                    let requests = self.shared.server.lock().expect("sampler state").requests;
                    self.adopt(new, requests);
                }
            }
        }
    }

    /// Records a restart or a lost process with what the machine knows about the old one.
    async fn event_with_evidence(&self, event: Event, pid: Option<u32>) {
        let items = self.evidence.gather(Cause::Restart, pid).await.unwrap_or_default();
        self.writer.evidence(Evidence {
            backend: self.backend.clone(),
            request_key: None,
            at: event.at,
            event: Some(event),
            items,
        });
    }

    /// Adopts a restarted server. Requests that reached a server, sent since the new process
    /// started while no process was known, were its own although it had not been seen yet:
    /// those already finished are counted now, from `recent`; those still in flight count when
    /// they finish (`request_finished`). The server lock is held throughout, so none is
    /// counted twice or missed.
    fn adopt_restarted(&mut self, identity: Identity) {
        self.last_known = Some(identity);
        self.missing_reported = false;
        let mut server = self.shared.server.lock().expect("sampler state");
        let since = identity.started_at as i64 * 1000;
        let received = self
            .shared
            .recent
            .lock()
            .expect("sampler state")
            .iter()
            .filter(|(start, reached)| *reached && *start >= since)
            .count() as u64;
        server.requests = received;
        server.identity = Some(identity);
    }

    fn adopt(&mut self, identity: Identity, requests: u64) {
        self.last_known = Some(identity);
        self.missing_reported = false;
        let mut server = self.shared.server.lock().expect("sampler state");
        if server.identity != Some(identity) {
            server.requests = requests;
        }
        server.identity = Some(identity);
    }

    /// The process last sampled for this backend in the log (any session), and when.
    async fn last_recorded(&self) -> Option<(Identity, i64)> {
        let backend = self.backend.clone();
        let found = self.read_log(move |conn| queries::last_sampled_process(conn, &backend)).await.flatten()?;
        let (pid, started_at, taken_at) = found;
        Some((Identity { pid, started_at }, taken_at))
    }

    /// Requests earlier soakd runs sent to this same server process.
    async fn requests_already_sent(&self, id: Identity) -> u64 {
        let backend = self.backend.clone();
        let since = id.started_at as i64 * 1000;
        self.read_log(move |conn| queries::requests_to_process(conn, &backend, id.pid, since)).await.unwrap_or(0)
    }

    /// `query` on a read-only connection to the log, off the runtime; `None` when it failed.
    async fn read_log<T: Send + 'static>(
        &self,
        query: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Option<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let conn = crate::store::open_read_only(&db).ok()?;
            query(&conn).ok()
        })
        .await
        .ok()
        .flatten()
    }
}
