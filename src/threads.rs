//! The measuring threads. Each request is measured on one thread: its stamps are taken, its
//! connection read and its rows sent there, with no wake-up between threads on its path. A
//! run's workers at an HTTP server are spread over up to `MAX` such threads — each a
//! single-threaded tokio runtime with its own pooled connections — so that replies arriving
//! together are read side by side rather than in turn. Thread 0 is the runtime of the command
//! itself (`run`, `once`); `start` adds one more per core, once, for the process's life.

use std::cell::Cell;
use std::sync::OnceLock;
use tokio::runtime::Handle;

/// At most this many measuring threads, thread 0 included.
const MAX: usize = 4;

/// The runtimes of threads 1 and up.
static OTHERS: OnceLock<Vec<Handle>> = OnceLock::new();

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Starts the measuring threads past thread 0: one per further core, `MAX` in all at most.
/// Later calls do nothing.
pub fn start() -> std::io::Result<()> {
    if OTHERS.get().is_some() {
        return Ok(());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let handles = (1..cores.min(MAX)).map(thread).collect::<std::io::Result<_>>()?;
    let _ = OTHERS.set(handles);
    Ok(())
}

/// Starts measuring thread `i`, which runs its runtime's tasks until the process ends.
fn thread(i: usize) -> std::io::Result<Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new().name(format!("soakd-measure-{i}")).spawn(move || {
        INDEX.set(i);
        runtime.block_on(std::future::pending::<()>());
    })?;
    Ok(handle)
}

/// How many measuring threads there are: 1 until `start`.
pub fn count() -> usize {
    1 + OTHERS.get().map_or(0, Vec::len)
}

/// The measuring thread this code runs on (0 on any thread that is not one of them).
pub fn current() -> usize {
    INDEX.get()
}

/// The runtime of measuring thread `i`; `None` for thread 0, the caller's own.
pub fn runtime(i: usize) -> Option<&'static Handle> {
    i.checked_sub(1).and_then(|k| OTHERS.get()?.get(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_spawned_on_a_measuring_thread_runs_there() {
        // Not `start`: the other tests in this process measure on their own thread.
        let handle = thread(3).unwrap();
        let on = handle.block_on(async { tokio::spawn(async { current() }).await.unwrap() });
        assert_eq!(on, 3);
        assert_eq!(current(), 0);
        assert_eq!(count(), 1, "no thread but the caller's until start");
        assert!(runtime(0).is_none() && runtime(1).is_none());
    }
}
