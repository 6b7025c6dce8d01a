//! The machine as one shared instrument. Two LLM servers on one Mac share its GPU and memory
//! bandwidth, so a workload measured while another runs measures both. By default a run takes the
//! machine alone (`exclusive`, the default): runs queue in fire order (a fair lock), and one that
//! waits longer than its job's `max_wait_s` is skipped with the name of what held the machine. A
//! job that means to overlap says `exclusive = false`: such runs share the machine with each
//! other, never with an exclusive one. Every request also notes how many of soakd's requests to
//! other backends were in flight when it started (`requests.machine_in_flight`).
//!
//! Other soakd processes on the same log (a `soakd once` beside the daemon) are kept out too: a
//! run also holds an advisory lock (`flock`) on a file beside the database, `<db>.lock`, which
//! names the job and backend holding it; a process waiting for it polls every 20 ms.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// How often a run waiting for another process's lock looks again.
const POLL: Duration = Duration::from_millis(20);

/// The machine's measurement lock and soakd's requests in flight on it.
#[derive(Default)]
pub struct Machine {
    lock: Arc<RwLock<()>>,
    holders: Arc<Mutex<Holders>>,
    in_flight: Mutex<HashMap<String, u32>>,
    /// The file other soakd processes on the same log lock too; `None`: this process only.
    file: Option<PathBuf>,
}

#[derive(Default)]
struct Holders {
    next: u64,
    now: Vec<(u64, String, String)>,
}

/// A run's turn on the machine, held until dropped (the file lock goes with its file).
pub struct Turn {
    _guard: Guard,
    _file: Option<std::fs::File>,
    id: u64,
    holders: Arc<Mutex<Holders>>,
}

enum Guard {
    Alone(#[allow(dead_code)] OwnedRwLockWriteGuard<()>),
    Shared(#[allow(dead_code)] OwnedRwLockReadGuard<()>),
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut h = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        h.now.retain(|(id, ..)| *id != self.id);
    }
}

/// Why a run did not get the machine in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("machine busy with job {job} at backend {backend} for over {waited_s} s (max_wait_s)")]
pub struct Busy {
    pub job: String,
    pub backend: String,
    pub waited_s: u64,
}

impl Machine {
    /// The lock of this process, and of every soakd process that writes the log at `db`.
    pub fn for_log(db: &std::path::Path) -> Machine {
        let mut file = db.as_os_str().to_owned();
        file.push(".lock");
        Machine { file: Some(PathBuf::from(file)), ..Machine::default() }
    }

    /// Waits for the run's turn: alone when `exclusive`, else beside other non-exclusive runs.
    /// Runs are served in the order they asked; `Busy` after `max_wait`.
    pub async fn turn(&self, exclusive: bool, job: &str, backend: &str, max_wait: Duration) -> Result<Turn, Busy> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let lock = self.lock.clone();
        let acquired = if exclusive {
            tokio::time::timeout(max_wait, lock.write_owned()).await.map(Guard::Alone)
        } else {
            tokio::time::timeout(max_wait, lock.read_owned()).await.map(Guard::Shared)
        };
        let busy_here = |h: &Holders| {
            let (job, backend) =
                h.now.first().map(|(_, j, b)| (j.clone(), b.clone())).unwrap_or_else(|| ("?".into(), "?".into()));
            Busy { job, backend, waited_s: max_wait.as_secs() }
        };
        let Ok(guard) = acquired else {
            return Err(busy_here(&self.holders.lock().unwrap_or_else(|e| e.into_inner())));
        };
        let file = match &self.file {
            Some(path) => Some(other_processes(path, exclusive, job, backend, deadline, max_wait).await?),
            None => None,
        };
        let mut h = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        h.next += 1;
        let id = h.next;
        h.now.push((id, job.to_string(), backend.to_string()));
        Ok(Turn { _guard: guard, _file: file.flatten(), id, holders: self.holders.clone() })
    }

    /// A request to `backend` starts: returns how many requests to other backends are in flight.
    /// The count drops again when the returned guard does.
    pub fn request_started(&self, backend: &str) -> (u32, InFlight<'_>) {
        let mut m = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let others = m.iter().filter(|(b, _)| b.as_str() != backend).map(|(_, n)| *n).sum();
        *m.entry(backend.to_string()).or_default() += 1;
        (others, InFlight { machine: self, backend: backend.to_string() })
    }
}

/// Takes the lock file beside the log (shared or exclusive), polling until `deadline`; on success
/// an exclusive holder writes who it is into the file. `Ok(None)` when the file cannot be opened
/// (a read-only folder): this process's lock still holds.
async fn other_processes(
    path: &std::path::Path,
    exclusive: bool,
    job: &str,
    backend: &str,
    deadline: tokio::time::Instant,
    max_wait: Duration,
) -> Result<Option<std::fs::File>, Busy> {
    let Ok(file) = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path) else {
        tracing::debug!(lock = %path.display(), "cannot open the machine lock file; other soakd processes are not held back");
        return Ok(None);
    };
    loop {
        if try_lock(&file, exclusive) {
            if exclusive {
                use std::io::{Seek, Write};
                let mut f = &file;
                let _ = f.set_len(0);
                let _ = f.seek(std::io::SeekFrom::Start(0));
                let _ = writeln!(f, "{}\n{job}\n{backend}", std::process::id());
            }
            return Ok(Some(file));
        }
        if tokio::time::Instant::now() >= deadline {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let mut lines = text.lines();
            let pid = lines.next().unwrap_or("?").to_string();
            let (job, backend) = (lines.next().unwrap_or("?"), lines.next().unwrap_or("?"));
            return Err(Busy {
                job: format!("{job} (soakd pid {pid})"),
                backend: backend.to_string(),
                waited_s: max_wait.as_secs(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(unix)]
fn try_lock(file: &std::fs::File, exclusive: bool) -> bool {
    use std::os::unix::io::AsRawFd;
    let how = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH };
    // SAFETY: a valid open descriptor; flock only takes an advisory lock on it.
    unsafe { libc::flock(file.as_raw_fd(), how | libc::LOCK_NB) == 0 }
}

#[cfg(not(unix))]
fn try_lock(_file: &std::fs::File, _exclusive: bool) -> bool {
    true
}

/// One request in flight; counted until dropped.
pub struct InFlight<'a> {
    machine: &'a Machine,
    backend: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut m = self.machine.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.backend) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn exclusive_runs_queue_in_order_and_a_long_wait_names_the_holder() {
        let m = Arc::new(Machine::default());
        let first = m.turn(true, "a", "llama", Duration::from_secs(60)).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for name in ["b", "c"] {
            let (m, order) = (m.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let t = m.turn(true, name, "mlx", Duration::from_secs(60)).await.unwrap();
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_secs(1)).await;
                drop(t);
            }));
            tokio::task::yield_now().await;
        }
        let busy = m.turn(true, "d", "mlx", Duration::from_secs(5)).await.err().expect("busy");
        assert_eq!((busy.job.as_str(), busy.backend.as_str()), ("a", "llama"));
        assert!(busy.to_string().contains("machine busy with job a at backend llama"), "{busy}");
        drop(first);
        for w in waiting {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["b", "c"], "fire order");
    }

    #[tokio::test(start_paused = true)]
    async fn non_exclusive_runs_share_but_never_with_an_exclusive_one() {
        let m = Machine::default();
        let a = m.turn(false, "a", "x", Duration::from_secs(1)).await.unwrap();
        let b = m.turn(false, "b", "y", Duration::from_secs(1)).await.expect("shared with a");
        assert!(m.turn(true, "c", "z", Duration::from_secs(1)).await.is_err(), "not alone");
        drop((a, b));
        assert!(m.turn(true, "c", "z", Duration::from_secs(1)).await.is_ok());
    }

    /// Two soakd processes on one log (here two `Machine`s on one file: flock locks belong to
    /// open files, so they exclude each other like processes do).
    #[cfg(unix)]
    #[tokio::test]
    async fn another_process_on_the_same_log_waits_and_is_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("soakd.db");
        let (daemon, once) = (Machine::for_log(&db), Machine::for_log(&db));
        let held = daemon.turn(true, "nightly", "llama", Duration::from_secs(1)).await.unwrap();
        let busy = once.turn(true, "probe", "mlx", Duration::from_millis(100)).await.err().expect("held elsewhere");
        assert!(busy.to_string().contains("job nightly (soakd pid") && busy.backend == "llama", "{busy}");
        assert!(once.turn(false, "probe", "mlx", Duration::from_millis(100)).await.is_err(), "not even shared");
        drop(held);
        let a = once.turn(false, "a", "x", Duration::from_millis(200)).await.expect("free again");
        let b = daemon.turn(false, "b", "y", Duration::from_millis(200)).await.expect("shared across processes");
        drop((a, b));
    }

    #[test]
    fn in_flight_counts_other_backends_only() {
        let m = Machine::default();
        let (n1, g1) = m.request_started("a");
        let (n2, _g2) = m.request_started("a");
        let (n3, _g3) = m.request_started("b");
        assert_eq!((n1, n2, n3), (0, 0, 2));
        drop(g1);
        assert_eq!(m.request_started("b").0, 1);
    }
}
