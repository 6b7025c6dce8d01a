//! Performance drift of one backend over a soak: hourly TTFT and decode-speed percentiles, and the
//! sustained changes among them (README.md, "Reports": drift). Owns the hourly roll-up and the drift rule.
//!
//! Method. Requests are grouped into UTC hours; each hour gives p50/p95 time to first token and
//! p50 decode tokens/s (linear-interpolated percentiles, see `stats`). Hours with fewer than
//! `min_requests_per_hour` requests are skipped. Per metric, the baseline is the median of the
//! first half of the kept hours (at least `min_baseline_hours` of them, else no verdict), which is
//! robust to a few odd hours in it. A drift is the current state: a run of at least
//! `min_sustained_hours` consecutive kept hours at the end of the window (looked for in the second
//! half only), all differing from the baseline by more than `min_change_pct` in the same
//! direction. Hours are too few and too correlated for a significance test to mean much, so the
//! rule is a plain run rule: a blip that ended is not reported, and `recent` is the run's median.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::measure::stats::{median, percentiles};

const HOUR_MS: i64 = 3_600_000;

/// A metric's name, how to read it from an hour, and whether a rise is worse.
type Metric = (&'static str, fn(&HourStats) -> Option<f64>, bool);

/// One successful request of a backend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// When it started, Unix milliseconds.
    pub at_ms: i64,
    /// Time to first token, milliseconds, when measured.
    pub ttft_ms: Option<f64>,
    /// Decode speed, tokens per second, when measured.
    pub decode_tps: Option<f64>,
}

/// Percentiles of one UTC hour.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct HourStats {
    /// Start of the hour, Unix milliseconds (a multiple of 3,600,000).
    pub hour_start_ms: i64,
    /// Requests in the hour.
    pub requests: u64,
    /// Median TTFT, ms.
    pub ttft_p50: Option<f64>,
    /// 95th-percentile TTFT, ms.
    pub ttft_p95: Option<f64>,
    /// Median decode speed, tokens/s.
    pub tps_p50: Option<f64>,
}

/// Rolls observations up into UTC hours, sorted, empty hours omitted. Non-finite values are ignored.
pub fn hourly(obs: &[Observation]) -> Vec<HourStats> {
    let mut hours: BTreeMap<i64, (u64, Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for o in obs {
        let start = o.at_ms.saturating_sub(o.at_ms.rem_euclid(HOUR_MS));
        let h = hours.entry(start).or_default();
        h.0 += 1;
        h.1.extend(o.ttft_ms.filter(|v| v.is_finite()));
        h.2.extend(o.decode_tps.filter(|v| v.is_finite()));
    }
    hours
        .into_iter()
        .map(|(hour_start_ms, (requests, ttft, tps))| {
            let [ttft_p50, ttft_p95] = percentiles(ttft, [50.0, 95.0]);
            let [tps_p50] = percentiles(tps, [50.0]);
            HourStats { hour_start_ms, requests, ttft_p50, ttft_p95, tps_p50 }
        })
        .collect()
}

/// Thresholds for [`detect_drift`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftParams {
    /// Least number of kept hours in the baseline (default 6).
    pub min_baseline_hours: usize,
    /// Least number of consecutive changed hours at the end (default 3).
    pub min_sustained_hours: usize,
    /// Least change from the baseline, percent (default 20).
    pub min_change_pct: f64,
    /// Hours with fewer requests are skipped (default 5).
    pub min_requests_per_hour: u64,
}

impl Default for DriftParams {
    fn default() -> Self {
        DriftParams { min_baseline_hours: 6, min_sustained_hours: 3, min_change_pct: 20.0, min_requests_per_hour: 5 }
    }
}

/// A sustained change of one metric at the end of the window.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Drift {
    /// "ttft_p50", "ttft_p95" or "decode_tps_p50".
    pub metric: &'static str,
    /// Start of the first hour of the run, Unix milliseconds.
    pub since_ms: i64,
    /// Median of the baseline hours.
    pub baseline: f64,
    /// Median of the run's hours.
    pub recent: f64,
    /// `(recent − baseline) / baseline`, percent.
    pub change_pct: f64,
    /// Hours in the run.
    pub hours: usize,
    /// TTFT up or decode speed down.
    pub worse: bool,
}

/// Sustained drifts of TTFT p50/p95 and decode tokens/s p50 (see the module doc for the rule), at
/// most one per metric, in that order.
pub fn detect_drift(hours: &[HourStats], p: &DriftParams) -> Vec<Drift> {
    let mut kept: Vec<&HourStats> = hours.iter().filter(|h| h.requests >= p.min_requests_per_hour).collect();
    kept.sort_by_key(|h| h.hour_start_ms);
    let metrics: [Metric; 3] = [
        ("ttft_p50", |h| h.ttft_p50, true),
        ("ttft_p95", |h| h.ttft_p95, true),
        ("decode_tps_p50", |h| h.tps_p50, false),
    ];
    metrics
        .into_iter()
        .filter_map(|(metric, get, up_is_worse)| {
            let series: Vec<(i64, f64)> =
                kept.iter().filter_map(|h| get(h).filter(|v| v.is_finite()).map(|v| (h.hour_start_ms, v))).collect();
            drift_of(metric, &series, up_is_worse, p)
        })
        .collect()
}

/// The drift rule on one metric's kept hours.
fn drift_of(metric: &'static str, series: &[(i64, f64)], up_is_worse: bool, p: &DriftParams) -> Option<Drift> {
    let half = series.len() / 2;
    if half < p.min_baseline_hours.max(1) {
        return None;
    }
    let baseline = median(series[..half].iter().map(|s| s.1))?;
    if baseline.is_nan() || baseline <= 0.0 {
        return None;
    }
    let change = |v: f64| (v - baseline) / baseline * 100.0;
    let direction = change(series.last()?.1).signum();
    let changed = |v: f64| change(v).abs() > p.min_change_pct && change(v).signum() == direction;
    let run = series[half..].iter().rev().take_while(|s| changed(s.1)).count();
    if run < p.min_sustained_hours.max(1) {
        return None;
    }
    let tail = &series[series.len() - run..];
    let recent = median(tail.iter().map(|s| s.1))?;
    let change_pct = change(recent);
    let worse = if up_is_worse { change_pct > 0.0 } else { change_pct < 0.0 };
    Some(Drift { metric, since_ms: tail[0].0, baseline, recent, change_pct, hours: run, worse })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_MS;
    const T0: i64 = 1_750_000_000_000 / HOUR_MS * HOUR_MS;

    /// `per_hour` requests in each of `hours` hours; TTFT and tokens/s from the hour index, ±5 %.
    fn obs(hours: i64, per_hour: i64, ttft: impl Fn(i64) -> f64, tps: impl Fn(i64) -> f64) -> Vec<Observation> {
        (0..hours * per_hour)
            .map(|i| {
                let (h, wobble) = (i / per_hour, 1.0 + 0.05 * ((i * 37 % 11) as f64 / 5.0 - 1.0));
                Observation {
                    at_ms: T0 + h * H + i % per_hour * 1000,
                    ttft_ms: Some(ttft(h) * wobble),
                    decode_tps: Some(tps(h) * wobble),
                }
            })
            .collect()
    }

    fn drifts(o: &[Observation]) -> Vec<Drift> {
        detect_drift(&hourly(o), &DriftParams::default())
    }

    #[test]
    fn hourly_groups_by_utc_hour_and_takes_percentiles() {
        let mut o: Vec<Observation> = (1..=20)
            .map(|i| Observation { at_ms: T0 + 5 * H + i, ttft_ms: Some(i as f64), decode_tps: Some(40.0) })
            .collect();
        o.push(Observation { at_ms: T0 - 1, ttft_ms: None, decode_tps: Some(f64::NAN) });
        o.push(Observation { at_ms: T0 + 5 * H + 7, ttft_ms: Some(f64::INFINITY), decode_tps: None });
        let h = hourly(&o);
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].hour_start_ms, h[0].requests, h[0].ttft_p50, h[0].tps_p50), (T0 - H, 1, None, None));
        // numpy.percentile(range(1, 21), [50, 95]) = [10.5, 19.05]
        assert_eq!((h[1].hour_start_ms, h[1].requests, h[1].ttft_p50), (T0 + 5 * H, 21, Some(10.5)));
        assert!((h[1].ttft_p95.unwrap() - 19.05).abs() < 1e-9 && h[1].tps_p50 == Some(40.0));
        assert!(hourly(&[]).is_empty());
        assert_eq!(hourly(&[Observation { at_ms: i64::MIN, ttft_ms: None, decode_tps: None }]).len(), 1);
    }

    #[test]
    fn steady_performance_has_no_drift() {
        assert!(drifts(&obs(24, 30, |_| 400.0, |_| 50.0)).is_empty());
    }

    #[test]
    fn ttft_doubling_for_the_last_four_hours_is_found() {
        let d = drifts(&obs(24, 30, |h| if h >= 20 { 800.0 } else { 400.0 }, |_| 50.0));
        assert_eq!(d.iter().map(|d| d.metric).collect::<Vec<_>>(), ["ttft_p50", "ttft_p95"], "{d:?}");
        assert_eq!((d[0].since_ms, d[0].hours, d[0].worse), (T0 + 20 * H, 4, true));
        assert!((d[0].change_pct - 100.0).abs() < 2.0 && (d[0].baseline - 400.0).abs() < 10.0, "{d:?}");
        assert_eq!(serde_json::to_value(&d[0]).unwrap()["metric"], "ttft_p50");
    }

    #[test]
    fn a_blip_in_the_middle_is_not_a_drift() {
        assert!(drifts(&obs(24, 30, |h| if (12..14).contains(&h) { 2000.0 } else { 400.0 }, |_| 50.0)).is_empty());
        // Two changed hours at the end are not yet sustained; nor is a change below 20 %.
        assert!(drifts(&obs(24, 30, |h| if h >= 22 { 2000.0 } else { 400.0 }, |_| 50.0)).is_empty());
        assert!(drifts(&obs(24, 30, |h| if h >= 12 { 460.0 } else { 400.0 }, |_| 50.0)).is_empty());
    }

    #[test]
    fn decode_speed_dropping_thirty_percent_is_found() {
        let d = drifts(&obs(24, 30, |_| 400.0, |h| if h >= 21 { 35.0 } else { 50.0 }));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].metric, d[0].hours, d[0].worse), ("decode_tps_p50", 3, true));
        assert!((d[0].change_pct + 30.0).abs() < 2.0, "{d:?}");
        // Faster is a drift too, not a worse one.
        let d = drifts(&obs(24, 30, |_| 400.0, |h| if h >= 21 { 70.0 } else { 50.0 }));
        assert_eq!((d.len(), d[0].worse), (1, false));
    }

    #[test]
    fn too_little_data_gives_no_verdict() {
        assert!(drifts(&obs(11, 30, |h| if h >= 7 { 800.0 } else { 400.0 }, |_| 50.0)).is_empty());
        // Busy enough for 12 hours, but hours with < 5 requests are skipped.
        let mut o = obs(12, 30, |h| if h >= 8 { 800.0 } else { 400.0 }, |_| 50.0);
        o.retain(|x| x.at_ms >= T0 + H || (x.at_ms - T0) % H < 4000);
        assert!(drifts(&o).is_empty());
        assert!(detect_drift(&[], &DriftParams::default()).is_empty());
        let zero = obs(24, 30, |_| 0.0, |h| if h >= 20 { f64::NAN } else { 50.0 });
        assert!(drifts(&zero).is_empty());
    }
}
