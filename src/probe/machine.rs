//! The machine as one shared instrument. Two LLM servers on one Mac share its GPU and memory
//! bandwidth, so a workload measured while another runs measures both. By default a run takes the
//! machine alone (`exclusive`, the default): runs queue in fire order (a fair lock), and one that
//! waits longer than its job's `max_wait_s` is skipped with the name of what held the machine. A
//! job that means to overlap says `exclusive = false`: such runs share the machine with each
//! other, never with an exclusive one. Every request also notes how many of soakd's requests to
//! other backends were in flight when it started (`requests.machine_in_flight`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// The machine's measurement lock and soakd's requests in flight on it.
#[derive(Default)]
pub struct Machine {
    lock: Arc<RwLock<()>>,
    holders: Arc<Mutex<Holders>>,
    in_flight: Mutex<HashMap<String, u32>>,
}

#[derive(Default)]
struct Holders {
    next: u64,
    now: Vec<(u64, String, String)>,
}

/// A run's turn on the machine, held until dropped.
pub struct Turn {
    _guard: Guard,
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
    /// Waits for the run's turn: alone when `exclusive`, else beside other non-exclusive runs.
    /// Runs are served in the order they asked; `Busy` after `max_wait`.
    pub async fn turn(&self, exclusive: bool, job: &str, backend: &str, max_wait: Duration) -> Result<Turn, Busy> {
        let lock = self.lock.clone();
        let acquired = if exclusive {
            tokio::time::timeout(max_wait, lock.write_owned()).await.map(Guard::Alone)
        } else {
            tokio::time::timeout(max_wait, lock.read_owned()).await.map(Guard::Shared)
        };
        let mut h = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(guard) = acquired else {
            let (job, backend) =
                h.now.first().map(|(_, j, b)| (j.clone(), b.clone())).unwrap_or_else(|| ("?".into(), "?".into()));
            return Err(Busy { job, backend, waited_s: max_wait.as_secs() });
        };
        h.next += 1;
        let id = h.next;
        h.now.push((id, job.to_string(), backend.to_string()));
        Ok(Turn { _guard: guard, id, holders: self.holders.clone() })
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
