//! Reads for reports: the facts the analysis functions take, selected by run or by window.

use crate::analysis::summary::RequestFacts;
use rusqlite::{Connection, params_from_iter};
use std::collections::BTreeMap;

/// A set of requests to summarise.
#[derive(Debug, Clone)]
pub enum Selection<'a> {
    Runs(&'a [i64]),
    /// `[from, to)` in unix ms.
    Window {
        from: i64,
        to: i64,
    },
}

impl Selection<'_> {
    /// A WHERE clause over `table` (which must have `run_id` and `time_col`) and its parameters.
    fn clause(&self, time_col: &str) -> (String, Vec<i64>) {
        match self {
            Selection::Runs([]) => ("0".to_string(), vec![]),
            Selection::Runs(ids) => (format!("run_id IN ({})", vec!["?"; ids.len()].join(",")), ids.to_vec()),
            Selection::Window { from, to } => (format!("{time_col} >= ? AND {time_col} < ?"), vec![*from, *to]),
        }
    }
}

pub fn request_facts(conn: &Connection, sel: &Selection<'_>) -> rusqlite::Result<Vec<RequestFacts>> {
    let (clause, params) = sel.clause("started_at");
    let sql = format!(
        "SELECT backend, outcome, ttft_ms, e2e_ms, decode_tps, output_tps FROM requests WHERE {clause} ORDER BY id"
    );
    conn.prepare(&sql)?
        .query_map(params_from_iter(params), |r| {
            Ok(RequestFacts {
                backend: r.get(0)?,
                outcome: r.get(1)?,
                ttft_ms: r.get(2)?,
                e2e_ms: r.get(3)?,
                decode_tps: r.get(4)?,
                output_tps: r.get(5)?,
            })
        })?
        .collect()
}

/// The time span `[first start, last end]` of the selected runs, in unix ms.
pub fn span(conn: &Connection, sel: &Selection<'_>) -> rusqlite::Result<Option<(i64, i64)>> {
    match sel {
        Selection::Window { from, to } => Ok(Some((*from, *to))),
        Selection::Runs(_) => {
            let (clause, params) = sel.clause("started_at");
            let clause = clause.replace("run_id", "id");
            conn.query_row(
                &format!("SELECT min(started_at), max(coalesce(finished_at, started_at)) FROM runs WHERE {clause}"),
                params_from_iter(params),
                |r| Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?)),
            )
        }
    }
}

/// The largest tree RSS sampled per backend within `[from, to]`.
pub fn peak_rss(conn: &Connection, backends: &[String], from: i64, to: i64) -> rusqlite::Result<BTreeMap<String, u64>> {
    per_backend(
        conn,
        backends,
        "SELECT max(rss_bytes) FROM memory_samples WHERE backend = ?1 AND taken_at BETWEEN ?2 AND ?3",
        from,
        to,
    )
}

/// Restart events per backend within `[from, to]`.
pub fn restarts(conn: &Connection, backends: &[String], from: i64, to: i64) -> rusqlite::Result<BTreeMap<String, u64>> {
    per_backend(
        conn,
        backends,
        "SELECT count(*) FROM events WHERE backend = ?1 AND kind = 'restart' AND at BETWEEN ?2 AND ?3",
        from,
        to,
    )
}

fn per_backend(
    conn: &Connection,
    backends: &[String],
    sql: &str,
    from: i64,
    to: i64,
) -> rusqlite::Result<BTreeMap<String, u64>> {
    let mut stmt = conn.prepare(sql)?;
    let mut out = BTreeMap::new();
    for b in backends {
        let v: Option<i64> = stmt.query_row(rusqlite::params![b, from, to], |r| r.get(0))?;
        if let Some(v) = v {
            out.insert(b.clone(), v as u64);
        }
    }
    Ok(out)
}
