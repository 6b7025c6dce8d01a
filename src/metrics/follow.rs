//! The writer tap that keeps the series equal to the log: on start it folds every finished
//! request, the restarts and each backend's latest memory sample; after each commit, the rows
//! that commit finished, its memory samples and its restart events. It runs on the writer thread
//! between transactions, so nothing is counted twice or missed (`store::writer::Tap`).

use super::{BackendLabels, Metrics};
use crate::measure::EventKind;
use crate::store::tally;
use crate::store::writer::{Committed, Tap};
use rusqlite::Connection;
use std::time::Instant;

/// Follows the log into `metrics`.
pub struct Follow {
    metrics: Metrics,
}

impl Follow {
    pub fn new(metrics: Metrics) -> Follow {
        Follow { metrics }
    }
}

impl Tap for Follow {
    fn start(&mut self, conn: &Connection) {
        let began = Instant::now();
        let mut requests = 0u64;
        let m = &self.metrics;
        let read = tally::each_finished(conn, |f| {
            m.observe(&f);
            requests += 1;
        })
        .and_then(|()| tally::restarts(conn))
        .map(|restarts| {
            for (backend, n) in restarts {
                m.restarts.get_or_create(&BackendLabels { backend }).inc_by(n.max(0) as u64);
            }
        })
        .and_then(|()| tally::latest_memory(conn))
        .map(|latest| latest.iter().for_each(|s| m.memory(&s.backend, s.rss_bytes, s.footprint_bytes)));
        match read {
            Ok(()) => tracing::info!(
                requests,
                ms = began.elapsed().as_millis() as u64,
                "/metrics: counters start from the log"
            ),
            Err(e) => tracing::warn!(error = %e, "/metrics: could not read the log's totals; counters start from zero"),
        }
    }

    fn committed(&mut self, conn: &Connection, batch: &Committed<'_>) {
        let m = &self.metrics;
        if !batch.finished.is_empty() {
            match tally::finished_by_id(conn, batch.finished) {
                Ok(rows) => rows.iter().for_each(|f| m.observe(f)),
                Err(e) => tracing::warn!(error = %e, "/metrics: could not read back finished requests"),
            }
        }
        for s in batch.samples.iter().filter(|s| s.pid.is_some()) {
            let bytes = |b: Option<u64>| b.map(|b| b.min(i64::MAX as u64) as i64);
            m.memory(&s.backend, bytes(s.rss_bytes), bytes(s.footprint_bytes));
        }
        for e in batch.events.iter().filter(|e| e.kind == EventKind::Restart) {
            if let Some(backend) = &e.backend {
                m.restarts.get_or_create(&BackendLabels { backend: backend.clone() }).inc();
            }
        }
    }
}
