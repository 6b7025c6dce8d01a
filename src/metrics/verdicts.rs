//! The latest analysis behind the verdict gauges (`soakd_leak_*`, `soakd_backend_wedged`): the
//! report's own leak and stuck verdicts over `[metrics] analysis_window_h`, recomputed every
//! `analysis_every_s` on a blocking thread with its own read connection.

use super::{BackendLabels, Metrics};
use crate::analysis::leaks::Verdict;
use crate::analysis::stuck::StuckKind;
use crate::report::{self, Window};
use crate::shutdown::Shutdown;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Runs the analysis now and then every `every`, until `stop`.
pub async fn run(metrics: Metrics, db: PathBuf, every: Duration, window: Duration, stop: Shutdown) {
    loop {
        let (m, db) = (metrics.clone(), db.clone());
        let done = tokio::task::spawn_blocking(move || refresh(&m, &db, window, crate::time::now_ms())).await;
        match done {
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "/metrics: the analysis behind the verdict gauges failed; they keep their last values")
            }
            Err(e) => tracing::warn!(error = %e, "/metrics: the analysis task ended early"),
            Ok(Ok(())) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.stopping() => return,
        }
    }
}

/// Sets the verdict gauges from a report over the `window` before `now_ms`.
pub fn refresh(metrics: &Metrics, db: &Path, window: Duration, now_ms: i64) -> anyhow::Result<()> {
    let conn = crate::store::open_existing(db)?;
    let window = Window { from: now_ms - window.as_millis() as i64, to: now_ms };
    let report = report::build::build(&conn, window, &[], now_ms)?;
    for b in &report.backends {
        let labels = BackendLabels { backend: b.name.clone() };
        let leak = b.leak.verdict == Verdict::Leak;
        metrics.leak_suspected.get_or_create(&labels).set(i64::from(leak));
        let rate = if leak { b.leak.mb_per_hour.unwrap_or(0.0) * 1e6 } else { 0.0 };
        metrics.leak_rate.get_or_create(&labels).set(rate);
        let wedged = b.stuck.as_ref().is_some_and(|s| s.kind == StuckKind::Wedged);
        metrics.wedged.get_or_create(&labels).set(i64::from(wedged));
    }
    Ok(())
}
