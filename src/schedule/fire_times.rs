//! A cron expression's fire times as instants, across daylight-saving changes.
//!
//! A whole second fires when its local wall time matches the pattern, so a job that runs every
//! few minutes runs through both passes of the hour repeated in autumn and skips the wall times
//! that spring skips. A fixed-time job (`0 30 2 * * *`: no wildcard or step in its time fields)
//! runs once a day as cron users expect: at the first pass of a repeated time, and at the first
//! instant after the gap when spring skips its time. That is what croner means its job types to
//! do; its own search resolves wall times through `chrono::Local`, which on Linux lists a
//! repeated time's later instant first, so it skipped the first pass of the repeated hour.
//!
//! The walk searches one UTC offset at a time, where wall time and instant map one to one, with
//! croner on a `FixedOffset`; where the offset changes, it finds the instant of the change and
//! goes on in the next offset.

use chrono::{DateTime, Duration, FixedOffset, LocalResult, Offset, TimeZone};
use croner::{Cron, JobType};

/// Offset changes crossed in one search before giving up; real zones change at most a few
/// times a year, and a pattern that never fires stops croner's search first.
const MAX_CHANGES: usize = 8;

/// The first fire time after `after` (exclusive), `after` a whole second.
pub fn next<Tz: TimeZone>(cron: &Cron, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
    search(cron, after, false, Way::Forward)
}

/// The latest fire time at or before `at`, `at` a whole second.
pub fn latest<Tz: TimeZone>(cron: &Cron, at: &DateTime<Tz>) -> Option<DateTime<Tz>> {
    search(cron, at, true, Way::Back)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Forward,
    Back,
}

fn search<Tz: TimeZone>(cron: &Cron, start: &DateTime<Tz>, inclusive: bool, way: Way) -> Option<DateTime<Tz>> {
    let tz = start.timezone();
    let (mut from, mut inclusive) = (start.clone(), inclusive);
    for _ in 0..MAX_CHANGES {
        let offset = offset_at(&tz, &from);
        let wall = from.with_timezone(&offset);
        let found = match way {
            Way::Forward => cron.find_next_occurrence(&wall, inclusive),
            Way::Back => cron.find_previous_occurrence(&wall, inclusive),
        };
        let found = found.ok()?.with_timezone(&tz);
        // Nothing fired in `from`'s offset before it changes (after it began, looking back): go
        // on from the change in the other offset.
        let Some(change) = change_between(&tz, &from, &found, way) else {
            if repeated_pass(cron, &found) {
                (from, inclusive) = (found, false);
                continue;
            }
            return Some(found);
        };
        if gap_holds_a_fixed_time(cron, &tz, &change) {
            return Some(change);
        }
        from = if way == Way::Forward { change } else { change - Duration::seconds(1) };
        inclusive = true;
    }
    None
}

fn offset_at<Tz: TimeZone>(tz: &Tz, at: &DateTime<Tz>) -> FixedOffset {
    tz.offset_from_utc_datetime(&at.naive_utc()).fix()
}

/// Where `from`'s offset ends on the way to `found` (going forward: the first change after
/// `from`; looking back: the change `from`'s offset began at), to the second. Offsets are compared
/// a day apart, then the day that changes is halved: a zone changes at most once a day, and a
/// search for a yearly time crosses two changes, which the two ends alone would not show.
fn change_between<Tz: TimeZone>(tz: &Tz, from: &DateTime<Tz>, found: &DateTime<Tz>, way: Way) -> Option<DateTime<Tz>> {
    let offset = offset_at(tz, from);
    let mut near = from.clone();
    while near != *found {
        let far = match way {
            Way::Forward => (near.clone() + Duration::days(1)).min(found.clone()),
            Way::Back => (near.clone() - Duration::days(1)).max(found.clone()),
        };
        if offset_at(tz, &far) != offset {
            return Some(match way {
                Way::Forward => first_change(tz, &near, &far),
                Way::Back => first_change(tz, &far, &near),
            });
        }
        near = far;
    }
    None
}

/// The first instant in `(early, late]` whose offset is `late`'s, to the second; the two differ.
fn first_change<Tz: TimeZone>(tz: &Tz, early: &DateTime<Tz>, late: &DateTime<Tz>) -> DateTime<Tz> {
    let target = offset_at(tz, late);
    let (mut lo, mut hi) = (early.clone(), late.clone());
    while hi.clone() - lo.clone() > Duration::seconds(1) {
        let mid = lo.clone() + (hi.clone() - lo.clone()) / 2;
        let mid = mid.clone() - Duration::nanoseconds(i64::from(mid.timestamp_subsec_nanos()));
        if offset_at(tz, &mid) == target { hi = mid } else { lo = mid }
    }
    hi
}

/// A fixed-time job's second pass through a repeated wall time: it fired at the first.
fn repeated_pass<Tz: TimeZone>(cron: &Cron, at: &DateTime<Tz>) -> bool {
    // Not `earliest()`: chrono's `Local` may list the later instant first.
    cron.determine_job_type() == JobType::FixedTime
        && match at.timezone().from_local_datetime(&at.naive_local()) {
            LocalResult::Ambiguous(a, b) => a.min(b) < *at,
            _ => false,
        }
}

/// Whether the clocks jumped forward at `change` over a wall time a fixed-time job fires at: it
/// fires at `change` instead.
fn gap_holds_a_fixed_time<Tz: TimeZone>(cron: &Cron, tz: &Tz, change: &DateTime<Tz>) -> bool {
    let before = offset_at(tz, &(change.clone() - Duration::seconds(1)));
    let after = offset_at(tz, change);
    if cron.determine_job_type() != JobType::FixedTime || after.local_minus_utc() <= before.local_minus_utc() {
        return false;
    }
    // The skipped wall times: [the change's wall time in the old offset, in the new one).
    let skipped_from = change.with_timezone(&before);
    let skipped_to = change.with_timezone(&after).naive_local();
    cron.find_next_occurrence(&skipped_from, true).is_ok_and(|t| t.naive_local() < skipped_to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Europe::Berlin, Tz};

    fn cron(pattern: &str) -> Cron {
        crate::schedule::CronExpr::parse(pattern).unwrap().cron().clone()
    }

    /// The next `n` fire times after `start`, one after another.
    fn walk(pattern: &str, start: DateTime<Tz>, n: usize) -> Vec<String> {
        let c = cron(pattern);
        std::iter::successors(next(&c, &start), |t| next(&c, t)).take(n).map(|t| t.to_rfc3339()).collect()
    }

    /// The fire time `latest` finds looking back from `at`.
    fn back(pattern: &str, at: DateTime<Tz>) -> String {
        latest(&cron(pattern), &at).unwrap().to_rfc3339()
    }

    fn berlin(m: u32, d: u32, h: u32, min: u32) -> DateTime<Tz> {
        Berlin.with_ymd_and_hms(2026, m, d, h, min, 0).earliest().unwrap()
    }

    #[test]
    fn an_interval_job_runs_through_both_passes_of_the_repeated_hour() {
        let times = walk("0 */30 * * * *", berlin(10, 25, 1, 10), 6);
        assert_eq!(
            times,
            [
                "2026-10-25T01:30:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-25T03:00:00+01:00",
            ]
        );
    }

    #[test]
    fn a_fixed_time_job_runs_once_at_the_first_pass_of_a_repeated_time() {
        let times = walk("0 30 2 * * *", berlin(10, 24, 12, 0), 3);
        assert_eq!(times, ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", "2026-10-27T02:30:00+01:00"]);
        // Looking back from the second pass, or from after it, finds the first.
        let second_pass = New_York.with_ymd_and_hms(2026, 11, 1, 1, 30, 0).latest().unwrap();
        assert_eq!(back("0 30 1 * * *", second_pass), "2026-11-01T01:30:00-04:00");
        assert_eq!(back("0 30 2 * * *", berlin(10, 25, 4, 0)), "2026-10-25T02:30:00+02:00");
    }

    #[test]
    fn a_fixed_time_spring_skips_runs_right_after_the_gap_and_an_interval_job_skips_it() {
        assert_eq!(
            walk("0 30 2 * * *", berlin(3, 28, 12, 0), 3),
            ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]
        );
        assert_eq!(
            walk("0 */30 * * * *", berlin(3, 29, 1, 10), 4),
            [
                "2026-03-29T01:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:30:00+02:00",
                "2026-03-29T04:00:00+02:00"
            ]
        );
        assert_eq!(back("0 30 2 * * *", berlin(3, 29, 3, 10)), "2026-03-29T03:00:00+02:00");
        assert_eq!(back("0 30 2 * * *", berlin(3, 29, 1, 0)), "2026-03-28T02:30:00+01:00");
    }

    /// A yearly time in the hour autumn repeats: the search from January crosses spring's change
    /// too, and still finds the first pass (both, for an interval job).
    #[test]
    fn a_yearly_time_in_the_repeated_hour_is_found_across_both_changes() {
        assert_eq!(walk("0 30 2 25 10 *", berlin(1, 1, 0, 0), 1), ["2026-10-25T02:30:00+02:00"]);
        assert_eq!(back("0 30 2 25 10 *", berlin(12, 31, 0, 0)), "2026-10-25T02:30:00+02:00");
        assert_eq!(
            walk("0 */30 2 25 10 *", berlin(1, 1, 0, 0), 4),
            [
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00"
            ]
        );
        assert_eq!(back("0 */30 2 25 10 *", berlin(12, 31, 0, 0)), "2026-10-25T02:30:00+01:00");
        // And a yearly time in the hour spring skips, from the autumn before.
        let skipped = Berlin.with_ymd_and_hms(2025, 11, 1, 0, 0, 0).unwrap();
        assert_eq!(walk("0 30 2 29 3 *", skipped, 1), ["2026-03-29T03:00:00+02:00"]);
    }

    /// Walking forward and looking back agree, second by second, over both changes of a year in
    /// two zones, for patterns of every kind.
    #[test]
    fn forward_and_back_agree_across_a_year_of_changes() {
        for pattern in ["0 */30 * * * *", "0 30 2 * * *", "0 0 * * * *", "0 */20 1-3 * * *", "0 45 1 * * SUN", "@daily"]
        {
            let c = cron(pattern);
            for start in [berlin(1, 1, 0, 0), New_York.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()] {
                let (mut t, mut fired) = (start, 0);
                while t < start + Duration::days(366) {
                    let n = next(&c, &t).unwrap();
                    assert!(n > t, "{pattern}: {n} after {t}");
                    assert_eq!(latest(&c, &n).as_ref(), Some(&n), "{pattern}: looking back from {n}");
                    if fired > 0 {
                        let just_before = latest(&c, &(n - Duration::seconds(1)));
                        assert_eq!(just_before.as_ref(), Some(&t), "{pattern}: the fire time before {n}");
                    }
                    (t, fired) = (n, fired + 1);
                }
                assert!(fired >= 52, "{pattern}: {fired}");
            }
        }
    }
}
