//! The time window a report covers: `--since` / `--until` as a duration back from now (`24h`,
//! `7d`, `90min`), a date (`2026-11-24`, local midnight) or an RFC 3339 time.

use chrono::{DateTime, Local, NaiveDate, TimeZone};
use serde::Serialize;

/// `[from, to)` in unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub from: i64,
    pub to: i64,
}

impl Window {
    /// From the flags; defaults: the last 24 hours up to `now`.
    pub fn parse(since: Option<&str>, until: Option<&str>, now: DateTime<Local>) -> Result<Window, String> {
        let to = match until {
            Some(u) => instant(u, now).map_err(|e| format!("--until {u:?}: {e}"))?,
            None => now.timestamp_millis(),
        };
        let from = match since {
            Some(s) => instant(s, now).map_err(|e| format!("--since {s:?}: {e}"))?,
            None => to - 24 * 3600 * 1000,
        };
        if from >= to {
            return Err(format!("the window is empty: --since ({}) is not before --until ({})", utc(from), utc(to)));
        }
        Ok(Window { from, to })
    }

    /// A window open at either end that is not given (`soakd export`: all rows by default);
    /// the same forms and messages as `parse`.
    pub fn open_ended(since: Option<&str>, until: Option<&str>, now: DateTime<Local>) -> Result<Window, String> {
        let from = since.map(|s| instant(s, now).map_err(|e| format!("--since {s:?}: {e}"))).transpose()?;
        let to = until.map(|u| instant(u, now).map_err(|e| format!("--until {u:?}: {e}"))).transpose()?;
        let (from, to) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
        if from >= to {
            return Err(format!("the window is empty: --since ({}) is not before --until ({})", utc(from), utc(to)));
        }
        Ok(Window { from, to })
    }

    pub fn hours(&self) -> f64 {
        (self.to - self.from) as f64 / 3_600_000.0
    }
}

/// Unix ms as `2026-11-25 21:40 UTC`.
pub fn utc(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}

fn instant(text: &str, now: DateTime<Local>) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(now.timestamp_millis() - d.as_millis() as i64);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        return Local
            .from_local_datetime(&midnight)
            .earliest()
            .map(|t| t.timestamp_millis())
            .ok_or_else(|| "that local midnight does not exist".to_string());
    }
    Err("write a duration back from now (24h, 7d, 90min), a date (2026-11-24) or an RFC 3339 time".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Local> {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z").unwrap().with_timezone(&Local)
    }

    #[test]
    fn an_open_ended_window_is_open_where_no_end_is_given() {
        let all = Window::open_ended(None, None, now()).unwrap();
        assert_eq!((all.from, all.to), (i64::MIN, i64::MAX));
        let before = Window::open_ended(None, Some("2026-11-24T00:00:00Z"), now()).unwrap();
        assert_eq!((before.from, before.to), (i64::MIN, 1_795_478_400_000));
        let since = Window::open_ended(Some("1h"), None, now()).unwrap();
        assert_eq!((since.from, since.to), (now().timestamp_millis() - 3_600_000, i64::MAX));
        assert!(Window::open_ended(Some("1h"), Some("2h"), now()).unwrap_err().contains("empty"));
    }

    #[test]
    fn defaults_to_the_last_day() {
        let w = Window::parse(None, None, now()).unwrap();
        assert_eq!(w.to - w.from, 86_400_000);
        assert_eq!(w.hours(), 24.0);
    }

    #[test]
    fn durations_dates_and_times() {
        let n = now().timestamp_millis();
        assert_eq!(Window::parse(Some("7d"), None, now()).unwrap().from, n - 7 * 86_400_000);
        assert_eq!(Window::parse(Some("90min"), None, now()).unwrap().from, n - 90 * 60_000);
        let w = Window::parse(Some("2026-11-25T10:00:00Z"), Some("2026-11-25T11:00:00Z"), now()).unwrap();
        assert_eq!(w.to - w.from, 3_600_000);
        assert!(Window::parse(Some("2026-11-20"), None, now()).is_ok());
    }

    #[test]
    fn bad_input_says_what_to_write() {
        let e = Window::parse(Some("yesterday"), None, now()).unwrap_err();
        assert!(e.contains("--since \"yesterday\"") && e.contains("24h"), "{e}");
        let e = Window::parse(Some("1h"), Some("2h"), now()).unwrap_err();
        assert!(e.contains("the window is empty"), "{e}");
    }
}
