//! Reads for reports: the facts the analysis functions take, selected by run or by window.

use crate::measure::outcome::{IN_FLIGHT, stored_counts_as_failure};
use crate::measure::{EventKind, Outcome};
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use std::collections::BTreeMap;

/// The stored outcomes that do not count (in flight, and soakd's own doing), quoted for SQL.
fn not_counted_sql_list() -> String {
    let own = Outcome::ALL.into_iter().filter(|o| !o.is_counted()).map(Outcome::as_str);
    std::iter::once(IN_FLIGHT).chain(own).map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")
}

/// [`Outcome::is_counted`] as an SQL condition on `requests.outcome`.
pub fn counted_sql() -> String {
    format!("outcome NOT IN ({})", not_counted_sql_list())
}

/// [`Outcome::counts_as_failure`] as an SQL condition on `requests.outcome`.
pub fn failure_sql() -> String {
    format!("outcome NOT IN ('ok', {})", not_counted_sql_list())
}

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

/// The facts about one request `analysis::summary` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestFacts {
    pub backend: String,
    pub outcome: String,
    pub ttft_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
    pub decode_tps: Option<f64>,
    pub output_tps: Option<f64>,
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

/// A server version and when a run first saw it (unix ms).
pub type VersionSeen = (String, i64);

/// The server versions a backend's runs saw within `[from, to]`, in order of first sight.
pub fn server_versions(conn: &Connection, backend: &str, from: i64, to: i64) -> rusqlite::Result<Vec<VersionSeen>> {
    let mut stmt = conn.prepare(
        "SELECT server_version, min(started_at) FROM runs
         WHERE backend = ?1 AND started_at BETWEEN ?2 AND ?3 AND server_version IS NOT NULL
         GROUP BY server_version ORDER BY 2 LIMIT 20",
    )?;
    let versions = stmt.query_map(rusqlite::params![backend, from, to], |r| Ok((r.get(0)?, r.get(1)?)))?;
    versions.collect()
}

/// Restart events per backend within `[from, to]`.
pub fn restarts(conn: &Connection, backends: &[String], from: i64, to: i64) -> rusqlite::Result<BTreeMap<String, u64>> {
    per_backend(
        conn,
        backends,
        &format!(
            "SELECT count(*) FROM events WHERE backend = ?1 AND kind = '{}' AND at BETWEEN ?2 AND ?3",
            EventKind::Restart.as_str()
        ),
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

/// Backends with requests or memory samples in the window, by name.
/// The log's backends are few and its rows many: each table's backends are found by hopping
/// along its `(backend, time)` index, then each is asked for a row in the window.
pub fn backends_in(conn: &Connection, from: i64, to: i64) -> rusqlite::Result<Vec<String>> {
    conn.prepare(
        "WITH RECURSIVE
             r(name) AS (SELECT min(backend) FROM requests
                         UNION ALL SELECT (SELECT min(backend) FROM requests WHERE backend > r.name)
                         FROM r WHERE r.name IS NOT NULL),
             m(name) AS (SELECT min(backend) FROM memory_samples
                         UNION ALL SELECT (SELECT min(backend) FROM memory_samples WHERE backend > m.name)
                         FROM m WHERE m.name IS NOT NULL)
         SELECT name FROM r WHERE name IS NOT NULL AND EXISTS
             (SELECT 1 FROM requests WHERE backend = r.name AND started_at >= ?1 AND started_at < ?2)
         UNION
         SELECT name FROM m WHERE name IS NOT NULL AND EXISTS
             (SELECT 1 FROM memory_samples WHERE backend = m.name AND taken_at >= ?1 AND taken_at < ?2)
         ORDER BY 1",
    )?
    .query_map(rusqlite::params![from, to], |r| r.get(0))?
    .collect()
}

/// The model each backend was asked for in its latest run in the window (when configured).
pub fn models(conn: &Connection, from: i64, to: i64) -> rusqlite::Result<BTreeMap<String, String>> {
    conn.prepare(
        "SELECT backend, model FROM runs
         WHERE started_at >= ?1 AND started_at < ?2 AND model IS NOT NULL
         GROUP BY backend HAVING started_at = max(started_at)",
    )?
    .query_map(rusqlite::params![from, to], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// The backend's latest requests started before `before` (any run; soakd's own cancelled and
/// interrupted ones left out), newest first: (started_at, outcome).
pub fn latest_outcomes(
    conn: &Connection,
    backend: &str,
    before: i64,
    limit: u32,
) -> rusqlite::Result<Vec<(i64, String)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT started_at, outcome FROM requests
         WHERE backend = ?1 AND started_at < ?2 AND {}
         ORDER BY started_at DESC, id DESC LIMIT ?3",
        counted_sql()
    ))?;
    stmt.query_map(rusqlite::params![backend, before, limit], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
}

/// The backend's own health check (`ok`, `http 503`, `unreachable`) as last read before `before`:
/// around a workload (`server_samples`) or after a failure (`health_changed`).
pub fn latest_health(conn: &Connection, backend: &str, before: i64) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT state FROM (
             SELECT taken_at AS at, json_extract(data, '$.state') AS state FROM server_samples
             WHERE backend = ?1 AND source = 'health' AND taken_at < ?2
             UNION ALL
             SELECT at, json_extract(detail, '$.to') FROM events
             WHERE backend = ?1 AND kind = 'health_changed' AND at < ?2)
         ORDER BY at DESC LIMIT 1",
        rusqlite::params![backend, before],
        |r| r.get(0),
    )
    .optional()
    .map(Option::flatten)
}

/// The last daemon session in the log that ended without its `daemon_stop`: when it started,
/// the machine's boot time it recorded (if any), and the last moment anything was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct UncleanStop {
    pub started_at: i64,
    pub pid: Option<i64>,
    pub boot_time: Option<i64>,
    pub last_seen_at: i64,
}

pub fn unclean_stop(conn: &Connection) -> rusqlite::Result<Option<UncleanStop>> {
    let last = conn
        .query_row(
            "SELECT at, json_extract(detail, '$.pid'), json_extract(detail, '$.boot_time') FROM events
             WHERE kind = 'daemon_start' ORDER BY at DESC, id DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, Option<i64>>(2)?)),
        )
        .optional()?;
    let Some((started_at, pid, boot_time)) = last else { return Ok(None) };
    let stopped: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM events WHERE kind = 'daemon_stop' AND at >= ?1)",
        [started_at],
        |r| r.get(0),
    )?;
    if stopped {
        return Ok(None);
    }
    let last_seen_at: i64 = conn.query_row(
        "SELECT max(coalesce((SELECT max(at) FROM events), 0),
                    coalesce((SELECT max(started_at) FROM requests), 0),
                    coalesce((SELECT max(taken_at) FROM memory_samples), 0))",
        [],
        |r| r.get(0),
    )?;
    Ok(Some(UncleanStop { started_at, pid, boot_time, last_seen_at: last_seen_at.max(started_at) }))
}

/// The process last sampled for `backend` in the log (any session): pid, its start (seconds since
/// the epoch) and when it was sampled.
pub fn last_sampled_process(conn: &Connection, backend: &str) -> rusqlite::Result<Option<(u32, u64, i64)>> {
    conn.query_row(
        "SELECT pid, proc_started_at, taken_at FROM memory_samples
         WHERE backend = ?1 AND pid IS NOT NULL AND proc_started_at IS NOT NULL
         ORDER BY taken_at DESC LIMIT 1",
        [backend],
        |r| Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u64, r.get(2)?)),
    )
    .optional()
}

/// How many requests the log holds to the server process `pid` since `since_ms` (its start).
pub fn requests_to_process(conn: &Connection, backend: &str, pid: u32, since_ms: i64) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT count(*) FROM requests WHERE backend = ?1 AND server_pid = ?2 AND started_at >= ?3",
        rusqlite::params![backend, pid, since_ms],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
}

/// How many of the backend's latest counted requests failed in a row, counting back at most
/// `limit` requests.
pub fn failed_in_a_row(conn: &Connection, backend: &str, limit: u64) -> rusqlite::Result<u64> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT outcome FROM requests WHERE backend = ?1 AND {}
         ORDER BY started_at DESC, id DESC LIMIT ?2",
        counted_sql()
    ))?;
    let outcomes: Vec<String> =
        stmt.query_map(rusqlite::params![backend, limit as i64], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(outcomes.iter().take_while(|o| stored_counts_as_failure(o)).count() as u64)
}

/// Failed requests of `backend` per bucket of `bucket_ms` from `from`: (bucket start, count),
/// only buckets with failures.
pub fn failures_per_bucket(
    conn: &Connection,
    backend: &str,
    from: i64,
    to: i64,
    bucket_ms: i64,
) -> rusqlite::Result<Vec<(i64, u64)>> {
    let mut stmt = conn.prepare_cached(&failures_per_bucket_sql())?;
    stmt.query_map(rusqlite::params![backend, from, to, bucket_ms], |r| {
        Ok((from + r.get::<_, i64>(0)? * bucket_ms, r.get::<_, i64>(1)? as u64))
    })?
    .collect()
}

/// `outcome <> 'ok'` lets the failures' partial index (migration 0012) answer it alone: a month
/// of successes is not read (a test checks the plan).
fn failures_per_bucket_sql() -> String {
    format!(
        "SELECT (started_at - ?2) / ?4, count(*) FROM requests
         WHERE backend = ?1 AND started_at >= ?2 AND started_at < ?3 AND outcome <> 'ok' AND {}
         GROUP BY 1 ORDER BY 1",
        failure_sql()
    )
}

/// The TTFTs of the backend's successful requests in the window, by bucket of `bucket_ms` from
/// `from` (bucket start → values); at most `limit` rows are read, oldest first.
pub fn ok_ttft_per_bucket(
    conn: &Connection,
    backend: &str,
    (from, to): (i64, i64),
    bucket_ms: i64,
    limit: i64,
) -> rusqlite::Result<BTreeMap<i64, Vec<f64>>> {
    let mut stmt = conn.prepare(
        "SELECT (started_at - ?2) / ?4, ttft_ms FROM requests
         WHERE backend = ?1 AND started_at >= ?2 AND started_at < ?3 AND outcome = 'ok' AND ttft_ms IS NOT NULL
         ORDER BY started_at LIMIT ?5",
    )?;
    let mut by_bucket: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    let mut rows = stmt.query(rusqlite::params![backend, from, to, bucket_ms, limit])?;
    while let Some(r) = rows.next()? {
        by_bucket.entry(from + r.get::<_, i64>(0)? * bucket_ms).or_default().push(r.get(1)?);
    }
    Ok(by_bucket)
}

/// Per backend since `from`: (backend, counted requests, failed requests), by name.
pub fn totals_since(conn: &Connection, from: i64) -> rusqlite::Result<Vec<(String, i64, i64)>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT backend, count(*), sum({}) FROM requests
         WHERE started_at >= ?1 AND {} GROUP BY backend ORDER BY backend",
        failure_sql(),
        counted_sql()
    ))?;
    stmt.query_map([from], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect()
}

/// What `soakd status` says of a log: its latest finished request, mail and daemon start/stop.
#[derive(Debug, Default)]
pub struct LogState {
    /// (started_at, backend, outcome)
    pub last_request: Option<(i64, String, String)>,
    /// `None` when the log has no outbox yet; then the latest sent mail's time.
    pub last_mail_sent: Option<Option<i64>>,
    pub daemon_started: Option<i64>,
    pub daemon_stopped: Option<i64>,
}

/// The log's state for `soakd status`; read-only (a log of any age: missing tables read as empty).
pub fn log_state(conn: &Connection) -> LogState {
    let when = |sql: &str| -> Option<i64> { conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0)).ok().flatten() };
    let last_request = conn
        .query_row(
            "SELECT started_at, backend, outcome FROM requests WHERE outcome <> 'in_flight' ORDER BY started_at DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)),
        )
        .optional()
        .ok()
        .flatten();
    LogState {
        last_request,
        last_mail_sent: has_table(conn, "outbox").then(|| when("SELECT max(sent_at) FROM outbox")),
        daemon_started: when("SELECT max(at) FROM events WHERE kind = 'daemon_start'"),
        daemon_stopped: when("SELECT max(at) FROM events WHERE kind = 'daemon_stop'"),
    }
}

/// Whether the log has the table `name` (an old log may predate it).
pub fn has_table(conn: &Connection, name: &str) -> bool {
    conn.query_row("SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |r| {
        r.get::<_, bool>(0)
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_failure_rule_is_the_rust_one() {
        use crate::measure::outcome::stored_is_counted;
        // The SQL says what the Rust rule says of every stored value.
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let stored = Outcome::ALL.into_iter().map(Outcome::as_str).chain([IN_FLIGHT]);
        for s in stored {
            let ask = |cond: String| -> bool {
                conn.query_row(&format!("SELECT {cond} FROM (SELECT ?1 AS outcome)"), [s], |r| r.get(0)).unwrap()
            };
            assert_eq!(ask(failure_sql()), stored_counts_as_failure(s), "{s}");
            assert_eq!(ask(counted_sql()), stored_is_counted(s), "{s}");
        }
    }

    #[test]
    fn failures_per_bucket_reads_the_failures_index_alone() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("log.db")).unwrap();
        let plan =
            crate::store::tests::query_plan(&conn, &failures_per_bucket_sql(), rusqlite::params!["b", 0, 1, 1000]);
        assert_eq!(
            plan[0],
            "SEARCH requests USING COVERING INDEX requests_failures (backend=? AND started_at>? AND started_at<?)"
        );
    }
}
