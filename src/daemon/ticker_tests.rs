//! Sleep simulated by clock jumps: at most one catch-up firing per job, and its event row.

use super::*;
use crate::clock::ManualClock;
use chrono::TimeZone;
use std::sync::{Arc, Mutex};

fn at(h: u32, m: u32, s: u32) -> DateTime<Local> {
    Local.with_ymd_and_hms(2026, 3, 10, h, m, s).single().expect("unambiguous")
}

fn crons() -> Vec<CronExpr> {
    vec![CronExpr::parse("*/5 * * * *").unwrap(), CronExpr::parse("@hourly").unwrap()]
}

#[test]
fn on_time_firings_are_not_catch_ups() {
    let mut plan = Plan::new(crons(), at(10, 0, 30));
    assert_eq!(plan.next_fire(), Some(at(10, 5, 0)));
    let (due, back) = plan.poll(at(10, 5, 0) + chrono::Duration::milliseconds(3));
    assert_eq!(back, None);
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].index, due[0].planned, due[0].missed), (0, at(10, 5, 0), 0));
    assert!(!due[0].is_catch_up());
    assert!(plan.poll(at(10, 5, 1)).0.is_empty(), "nothing fires twice");
}

/// Polls land a few ms past their second; the next fire time is still the next whole second, so
/// a job firing every second keeps firing on time instead of that far (then further) behind.
#[test]
fn polls_past_a_second_sleep_until_the_next_whole_second() {
    let every_second = vec![CronExpr::parse("* * * * * *").unwrap()];
    let mut plan = Plan::new(every_second, at(10, 0, 0) + chrono::Duration::milliseconds(600));
    for s in 1..=5 {
        assert_eq!(plan.next_fire(), Some(at(10, 0, s)), "second {s}");
        let (due, _) = plan.poll(at(10, 0, s) + chrono::Duration::milliseconds(2));
        assert_eq!((due.len(), due[0].planned, due[0].missed), (1, at(10, 0, s), 0));
    }
    // Woken 3.5 s late: the fire times at :06, :07 and :08 were missed, :09 fires.
    let (due, _) = plan.poll(at(10, 0, 9) + chrono::Duration::milliseconds(500));
    assert_eq!((due[0].planned, due[0].missed), (at(10, 0, 9), 3));
}

#[test]
fn a_jump_of_hours_fires_each_job_once() {
    let mut plan = Plan::new(crons(), at(10, 0, 30));
    plan.poll(at(10, 5, 0));
    let (due, _) = plan.poll(at(15, 7, 12));
    assert_eq!(due.len(), 2, "{due:?}");
    assert_eq!((due[0].planned, due[0].missed), (at(15, 5, 0), 59));
    assert_eq!((due[1].planned, due[1].missed), (at(15, 0, 0), 4));
    assert!(due.iter().all(Due::is_catch_up));
    assert_eq!(due[0].late_ms, 132_000);
    assert!(plan.poll(at(15, 7, 13)).0.is_empty());
    // A single fire time seen late is a catch-up too (a daily job during a night's sleep).
    let (due, _) = plan.poll(at(16, 1, 30));
    assert_eq!(due.len(), 2);
    assert_eq!((due[1].planned, due[1].missed), (at(16, 0, 0), 0));
    assert!(due[1].is_catch_up());
}

#[test]
fn a_clock_set_back_holds_the_schedule() {
    let mut plan = Plan::new(crons(), at(10, 0, 30));
    plan.poll(at(11, 0, 1));
    let (due, back) = plan.poll(at(10, 0, 1));
    assert!(due.is_empty());
    assert_eq!(back, Some(chrono::Duration::hours(1)));
    assert!(plan.poll(at(10, 30, 0)).0.is_empty(), "10:05 … 10:30 already fired");
    let (due, _) = plan.poll(at(11, 5, 0));
    assert_eq!(due.len(), 1);
    // Far back: the schedule restarts from the new time.
    plan.poll(at(5, 0, 0));
    assert_eq!(plan.poll(at(5, 5, 0)).0.len(), 1);
}

struct Recorder {
    fired: Mutex<Vec<(usize, i64, bool)>>,
    writer: crate::store::WriterHandle,
}

impl Dispatch for Recorder {
    fn fire(&self, index: usize, planned_at: i64, catch_up: bool) {
        self.fired.lock().unwrap().push((index, planned_at, catch_up));
    }
    fn event(&self, event: Event) {
        self.writer.event(event);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_loop_records_one_catch_up_per_job_after_a_sleep() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("soakd.db");
    let writer = crate::store::Writer::start(crate::store::open(&path).unwrap(), path.clone());
    let recorder = Arc::new(Recorder { fired: Mutex::new(Vec::new()), writer: writer.handle() });
    let clock = Arc::new(ManualClock::new(at(10, 0, 30)));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let names = vec!["probe".to_string(), "hourly".to_string()];
    let task = {
        let (clock, recorder) = (clock.clone(), recorder.clone());
        tokio::spawn(async move {
            let stop = async {
                let _ = rx.await;
            };
            run(Plan::new(crons(), clock.now()), names, &*clock, &*recorder, stop).await;
        })
    };
    let until = |t: DateTime<Local>| {
        let clock = clock.clone();
        async move {
            while clock.now() < t {
                tokio::task::yield_now().await;
            }
        }
    };
    until(at(11, 1, 0)).await;
    let asleep = clock.now();
    clock.jump(chrono::Duration::hours(6)); // the lid closes for six hours
    until(asleep + chrono::Duration::hours(6) + chrono::Duration::minutes(11)).await;
    tx.send(()).unwrap();
    task.await.unwrap();
    let fired = recorder.fired.lock().unwrap().clone();
    drop(recorder);
    tokio::task::spawn_blocking(move || writer.finish()).await.unwrap();

    let (from, to) = (asleep.timestamp_millis(), (asleep + chrono::Duration::hours(6)).timestamp_millis());
    for job in [0, 1] {
        let during: Vec<_> = fired.iter().filter(|(i, p, _)| *i == job && *p > from && *p <= to).collect();
        assert_eq!(during.len(), 1, "job {job}: no burst after the sleep: {during:?}");
        assert!(during[0].2, "marked as a catch-up");
    }
    assert_eq!(fired.iter().filter(|f| f.0 == 0).count(), 12 + 1 + 2, "10:05–11:00, the catch-up, 17:05 and 17:10");
    assert_eq!(fired.iter().filter(|f| f.0 == 1).count(), 2, "11:00 and the catch-up at 17:00");
    assert!(fired.iter().filter(|f| f.1 <= from).all(|f| !f.2), "on-time firings are not catch-ups");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let events: Vec<(String, String)> = conn
        .prepare("SELECT kind, detail FROM events ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let catch_ups: Vec<serde_json::Value> =
        events.iter().filter(|(k, _)| k == "catch_up").map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(catch_ups.len(), 2, "one catch-up per job: {events:?}");
    let probe = catch_ups.iter().find(|d| d["job"] == "probe").expect("probe caught up");
    assert_eq!(probe["missed"], 71, "six hours of 5-minute fire times, less the one that fires");
    assert!(events.iter().any(|(k, d)| k == "clock_jump" && d.contains("forward")), "{events:?}");
}
