//! The wall clock the scheduler reads, behind a trait so tests can inject one that jumps (a
//! laptop that slept, a clock set forward or back) and run hours of schedule in microseconds.
//!
//! `sleep` waits on the monotonic clock, as tokio does; `now` is wall time. A sleeping Mac
//! stops the first and not the second, and that difference is what the scheduler must handle.

use chrono::{DateTime, Local};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Local>;
    fn sleep(&self, d: Duration) -> Sleep<'_>;
}

/// The real clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Local> {
        Local::now()
    }

    fn sleep(&self, d: Duration) -> Sleep<'_> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock for tests: `sleep` moves wall time on at once by what was asked; `jump` moves it
/// without any sleep (what a machine waking from sleep sees).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Local>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Local>) -> Self {
        ManualClock { now: Mutex::new(start) }
    }

    pub fn jump(&self, by: chrono::Duration) {
        *self.now.lock().expect("clock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Local> {
        *self.now.lock().expect("clock")
    }

    fn sleep(&self, d: Duration) -> Sleep<'_> {
        self.jump(chrono::Duration::from_std(d).unwrap_or_default());
        Box::pin(tokio::task::yield_now())
    }
}
