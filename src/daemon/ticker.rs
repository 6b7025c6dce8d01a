//! The daemon's scheduler: when each job is due, read from an injectable wall clock, so that a
//! laptop's sleep or a clock jump never fires a burst of missed firings.
//!
//! `Plan` is the pure part: polled with the wall time, it returns the jobs whose fire time
//! passed since the last poll — each at most once, at its latest missed fire time, with how
//! many earlier ones were dropped. A firing more than `LATE` behind its time, or one that
//! stands for several, is a catch-up, recorded as a `catch_up` event. A clock set back holds
//! the schedule (nothing fires twice) unless it went back more than `HOLD_BACK`. `run` is the
//! loop: sleep until the next fire time (at most `MAX_SLEEP`, so a jump is noticed soon), poll,
//! dispatch.

use crate::clock::Clock;
use crate::measure::EventKind;
use crate::schedule::CronExpr;
use crate::store::rows::Event;
use chrono::{DateTime, Local};
use serde_json::json;
use std::future::Future;
use std::time::Duration;

/// A firing this late (or later) after its fire time is a catch-up.
pub const LATE: chrono::Duration = chrono::Duration::seconds(60);
/// A clock set back by more than this restarts the schedule from the new time.
pub const HOLD_BACK: chrono::Duration = chrono::Duration::hours(3);
/// The longest single sleep, so that a wall-clock jump is seen within this.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);
/// Missed fire times are counted up to this many.
const COUNT_CAP: usize = 100_000;

/// A job that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub index: usize,
    /// The fire time this firing stands for: the latest one passed.
    pub planned: DateTime<Local>,
    /// Earlier fire times passed since the last poll and dropped.
    pub missed: usize,
    pub late_ms: i64,
}

impl Due {
    pub fn is_catch_up(&self) -> bool {
        self.missed > 0 || self.late_ms >= LATE.num_milliseconds()
    }
}

/// Which fire times have been handled, per job.
#[derive(Debug, Clone)]
pub struct Plan {
    crons: Vec<CronExpr>,
    last: DateTime<Local>,
}

impl Plan {
    /// Starts at `now`: fire times before it are not caught up (soakd was not running).
    pub fn new(crons: Vec<CronExpr>, now: DateTime<Local>) -> Plan {
        Plan { crons, last: now }
    }

    /// The jobs due at `now`, and by how much the clock went back, if it did.
    pub fn poll(&mut self, now: DateTime<Local>) -> (Vec<Due>, Option<chrono::Duration>) {
        if now < self.last {
            let back = self.last - now;
            if back > HOLD_BACK {
                self.last = now;
            }
            return (Vec::new(), Some(back));
        }
        let mut due = Vec::new();
        for (index, cron) in self.crons.iter().enumerate() {
            let Some(planned) = cron.latest_at_or_before(now).filter(|t| *t > self.last) else { continue };
            let missed = cron.count_between(self.last, planned, COUNT_CAP);
            due.push(Due { index, planned, missed, late_ms: (now - planned).num_milliseconds() });
        }
        self.last = now;
        (due, None)
    }

    /// The next fire time of any job after the last poll.
    pub fn next_fire(&self) -> Option<DateTime<Local>> {
        self.crons.iter().filter_map(|c| c.next_after(self.last, 1).pop()).min()
    }
}

/// Where due jobs and the scheduler's events go.
pub trait Dispatch: Send + Sync {
    /// Fire job `index` for `planned` (unix ms); must not block.
    fn fire(&self, index: usize, planned_at: i64, catch_up: bool);
    fn event(&self, event: Event);
}

/// Runs `plan` on `clock` until `stop` completes. `names` are the jobs' names, for events.
pub async fn run(
    mut plan: Plan,
    names: Vec<String>,
    clock: &dyn Clock,
    dispatch: &dyn Dispatch,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let before = clock.now();
        let wait =
            plan.next_fire().map(|t| (t - before).to_std().unwrap_or_default()).unwrap_or(MAX_SLEEP).min(MAX_SLEEP);
        tokio::select! {
            biased;
            () = &mut stop => return,
            () = clock.sleep(wait) => {}
        }
        let now = clock.now();
        let slept = now - before;
        let expected = chrono::Duration::from_std(wait).unwrap_or_default();
        if slept - expected > LATE {
            tracing::info!(gap_s = (slept - expected).num_seconds(), "the wall clock moved on while soakd slept");
            let by_ms = (slept - expected).num_milliseconds();
            dispatch.event(event(EventKind::ClockJump, now, json!({"direction": "forward", "by_ms": by_ms})));
        }
        let (due, back) = plan.poll(now);
        if let Some(back) = back {
            tracing::warn!(
                back_s = back.num_seconds(),
                "the wall clock went back; the schedule holds until it catches up"
            );
            dispatch.event(event(
                EventKind::ClockJump,
                now,
                json!({"direction": "back", "by_ms": back.num_milliseconds(), "held": back <= HOLD_BACK}),
            ));
        }
        for d in due {
            let catch_up = d.is_catch_up();
            if catch_up {
                let job = names.get(d.index).cloned().unwrap_or_default();
                tracing::info!(job = %job, missed = d.missed, late_s = d.late_ms / 1000, "catching up once");
                dispatch.event(event(
                    EventKind::CatchUp,
                    now,
                    json!({"job": job, "planned_at": d.planned.timestamp_millis(), "missed": d.missed, "late_ms": d.late_ms}),
                ));
            }
            dispatch.fire(d.index, d.planned.timestamp_millis(), catch_up);
        }
    }
}

fn event(kind: EventKind, at: DateTime<Local>, detail: serde_json::Value) -> Event {
    Event { backend: None, kind, at: at.timestamp_millis(), detail }
}

#[cfg(test)]
#[path = "ticker_tests.rs"]
mod tests;
