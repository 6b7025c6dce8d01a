//! Cron expressions, parsed by tokio-cron-scheduler itself (croner, seconds required,
//! day-of-month AND day-of-week): its job data gives the pattern, and `fire_times` walks it for
//! the daemon's ticker and for `soakd check`, so `check` reports what the daemon will do.
//!
//! Accepted: 6 fields `sec min hour day-of-month month day-of-week`, an optional 7th `year`,
//! 5-field standard cron (run at second 0), and `@hourly`, `@daily`, `@weekly`, `@monthly`,
//! `@yearly`. Times are local.

use super::fire_times;
use chrono::{DateTime, Local};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A validated cron expression in the 6/7-field form the scheduler takes.
#[derive(Debug, Clone)]
pub struct CronExpr {
    /// As written in the schedule file.
    pub written: String,
    /// With seconds, as handed to the scheduler.
    pub normalised: String,
    cron: Cron,
}

impl CronExpr {
    pub fn parse(written: &str) -> Result<CronExpr, String> {
        let trimmed = written.trim();
        let fields = trimmed.split_whitespace().count();
        let normalised = match fields {
            _ if trimmed.starts_with('@') => trimmed.to_string(),
            5 => format!("0 {trimmed}"),
            6 | 7 => trimmed.split_whitespace().collect::<Vec<_>>().join(" "),
            n => {
                return Err(format!(
                    "\"{written}\" has {n} fields; write 6 (sec min hour day-of-month month day-of-week), 5 (standard cron, at second 0), or @hourly/@daily"
                ));
            }
        };
        let cron = scheduled(&normalised).ok_or_else(|| match parser().parse(&normalised) {
            Err(e) => format!("\"{written}\" is not a valid cron expression: {e}"),
            Ok(_) => format!("\"{written}\" is not a cron expression tokio-cron-scheduler takes"),
        })?;
        // The scheduler is handed the expanded pattern, so nicknames behave the same there.
        let normalised = cron.pattern.to_string();
        if cron.find_next_occurrence(&Local::now(), false).is_err() {
            return Err(format!("\"{written}\" never fires"));
        }
        Ok(CronExpr { written: written.to_string(), normalised, cron })
    }

    /// The latest fire time at or before `at` — the instant a firing seen at `at` was planned for.
    pub fn latest_at_or_before(&self, at: DateTime<Local>) -> Option<DateTime<Local>> {
        fire_times::latest(&self.cron, &whole_second(at))
    }

    /// How many fire times lie in `(after, before)`, counting at most `cap`.
    pub fn count_between(&self, after: DateTime<Local>, before: DateTime<Local>, cap: usize) -> usize {
        self.fire_times_after(after).take_while(|t| *t < before).take(cap).count()
    }

    /// The next `n` fire times after `after`.
    pub fn next_after(&self, after: DateTime<Local>, n: usize) -> Vec<DateTime<Local>> {
        self.fire_times_after(after).take(n).collect()
    }

    /// The fire times after `after`, one after another (see `fire_times`).
    fn fire_times_after(&self, after: DateTime<Local>) -> impl Iterator<Item = DateTime<Local>> + '_ {
        std::iter::successors(fire_times::next(&self.cron, &whole_second(after)), |t| fire_times::next(&self.cron, t))
    }

    #[cfg(test)]
    pub(super) fn cron(&self) -> &Cron {
        &self.cron
    }
}

/// `at` without its fraction of a second: fire times are whole seconds, so none lies between
/// the two. By arithmetic on the instant: `with_nanosecond` resolves the wall time again, which
/// fails in the hour that autumn repeats.
fn whole_second(at: DateTime<Local>) -> DateTime<Local> {
    at - chrono::Duration::nanoseconds(i64::from(at.timestamp_subsec_nanos()))
}

/// The schedule tokio-cron-scheduler makes of `normalised`: a job built from it (never added to
/// a scheduler) and the pattern in its data — so soakd's own ticker accepts exactly what
/// tokio-cron-scheduler would, and fires behind its sleep and clock-jump guard.
fn scheduled(normalised: &str) -> Option<Cron> {
    let mut job = tokio_cron_scheduler::Job::new(normalised, |_, _| {}).ok()?;
    job.job_data().ok()?.schedule()
}

/// croner as tokio-cron-scheduler configures it, for the error message of an expression it refuses.
fn parser() -> CronParser {
    CronParser::builder().seconds(Seconds::Required).dom_and_dow(true).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Timelike};

    #[test]
    fn accepts_five_six_and_nicknames() {
        assert_eq!(CronExpr::parse("*/5 * * * *").unwrap().normalised.split(' ').count(), 6);
        assert!(CronExpr::parse("0 */5 * * * *").is_ok());
        assert!(CronExpr::parse("@hourly").is_ok());
        assert!(CronExpr::parse("0 0 7 * * MON-FRI").is_ok());
    }

    #[test]
    fn rejects_with_a_reason() {
        let e = CronExpr::parse("* *").unwrap_err();
        assert!(e.contains("has 2 fields"), "{e}");
        let e = CronExpr::parse("0 61 * * * *").unwrap_err();
        assert!(e.contains("not a valid cron expression"), "{e}");
    }

    #[test]
    fn next_fire_times_follow_the_expression() {
        let c = CronExpr::parse("30 */15 * * * *").unwrap();
        let start = Local.with_ymd_and_hms(2026, 1, 1, 10, 7, 0).single().expect("unambiguous");
        let next = c.next_after(start, 3);
        assert_eq!(next.len(), 3);
        assert_eq!((next[0].minute(), next[0].second()), (15, 30));
        assert_eq!((next[1].minute(), next[1].second()), (30, 30));
        assert_eq!((next[2].minute(), next[2].second()), (45, 30));
        let planned = c.latest_at_or_before(next[1] + chrono::Duration::milliseconds(400)).unwrap();
        assert_eq!(planned, next[1]);
    }

    /// The daemon polls at a fraction past a second; the fire times it sleeps towards are still
    /// whole seconds, one after another, and none between the poll and its second is counted.
    #[test]
    fn fire_times_after_a_fraction_of_a_second_are_whole_seconds() {
        let c = CronExpr::parse("* * * * * *").unwrap();
        let second = Local.with_ymd_and_hms(2026, 1, 1, 10, 7, 0).single().expect("unambiguous");
        let polled = second + chrono::Duration::milliseconds(600);
        let next = c.next_after(polled, 3);
        let expected: Vec<_> = (1..=3).map(|s| second + chrono::Duration::seconds(s)).collect();
        assert_eq!(next, expected);
        assert_eq!(c.count_between(polled, second + chrono::Duration::seconds(4), 100), 3);
        assert_eq!(c.count_between(second, polled, 100), 0);
    }
}
