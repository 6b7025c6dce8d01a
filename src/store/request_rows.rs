//! A backend's finished requests in a window, streamed in time order for the report's one pass
//! (`report::pass`): read from the covering index `requests_report` alone, through `fast_rows`,
//! with the strings that repeat down a column shared and the latency columns left unread where
//! an hour's latencies are kept apart.

use rusqlite::Connection;

/// One request as the report reads it (failures carry their error text).
#[derive(Debug, Clone, Default)]
pub struct RequestRow {
    pub at_ms: i64,
    pub outcome: std::sync::Arc<str>,
    pub stream: bool,
    pub ttft_ms: Option<f64>,
    pub first_content_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
    pub decode_tps: Option<f64>,
    pub output_tps: Option<f64>,
    pub signature: Option<std::sync::Arc<str>>,
    pub error: Option<std::sync::Arc<str>>,
    pub concurrency: u32,
    pub prompt_chars: u32,
    pub gap_ms: Option<f64>,
    pub server_pid: Option<u32>,
    pub server_seq: Option<u64>,
    pub job: std::sync::Arc<str>,
    pub completion_tokens: Option<u32>,
    pub http_status: Option<u16>,
    /// soakd's requests to other backends in flight when this one started (`None`: not recorded).
    pub machine_in_flight: Option<u32>,
    /// How long the server said its model took to load, when this request made it load.
    pub server_load_ms: Option<f64>,
}

impl RequestRow {
    /// Whether soakd had requests to other backends in flight when this one started.
    pub fn ran_beside_others(&self) -> bool {
        self.machine_in_flight.is_some_and(|n| n > 0)
    }
}

/// What `each_request` reads: every column from the covering index `requests_report`
/// (migration 0009), in time order — a column added here belongs in that index too (a test
/// checks the plan). `$latencies` are the four columns only a successful request's latencies
/// need. Requests still in flight are left out as the rows pass (it is rare, and testing it here
/// costs SQLite a column read and a comparison per row).
macro_rules! each_request_sql {
    ($latencies:literal) => {
        concat!(
            "SELECT started_at, outcome, stream, ",
            $latencies,
            ", e2e_ms, error_signature, CASE WHEN outcome <> 'ok' THEN error END, concurrency, prompt_chars,
                gap_ms, server_pid, server_seq, job, completion_tokens, http_status, machine_in_flight, server_load_ms
            FROM requests
            WHERE backend = ?1 AND started_at >= ?2 AND started_at < ?3
            ORDER BY started_at, id"
        )
    };
}
const EACH_REQUEST: &str = each_request_sql!("ttft_ms, first_content_ms, decode_tps, output_tps");
/// The same for hours whose latencies are kept apart (`store::latency_hours`): their columns are
/// not read at all (SQLite decodes every column a statement names, whether or not it is then
/// asked for). The end-to-end time stays, as a failure's detail.
const EACH_REQUEST_NO_LATENCIES: &str = each_request_sql!("NULL, NULL, NULL, NULL");

/// Every finished request of `backend` in `[from, to)`, in time order, handed to `each`.
/// Repeated strings (outcome, job, signature) are shared, so months of rows stay small. The
/// latencies of successful requests (TTFT, first content, decode and output rates) are left
/// `None` in the hours of `without_latencies` (UTC hour starts, ascending: hours whose latencies
/// are kept apart); the error columns (signature, error, HTTP status) are read only for a
/// request that did not succeed.
pub fn each_request(
    conn: &Connection,
    backend: &str,
    from: i64,
    to: i64,
    without_latencies: &[i64],
    mut each: impl FnMut(RequestRow),
) -> rusqlite::Result<()> {
    let mut strings = Shared::default();
    for (a, b, latencies) in segments(from, to, without_latencies) {
        let sql = if latencies { EACH_REQUEST } else { EACH_REQUEST_NO_LATENCIES };
        each_request_of(conn, sql, backend, a, b, &mut strings, &mut each)?;
    }
    Ok(())
}

/// `[from, to)` cut into the longest runs that lie within `hours` (hour starts, ascending) or
/// outside them: `(start, end, outside)`, in time order.
fn segments(from: i64, to: i64, hours: &[i64]) -> Vec<(i64, i64, bool)> {
    use super::retention::HOUR_MS;
    let mut out: Vec<(i64, i64, bool)> = Vec::new();
    let mut push = |a: i64, b: i64, outside: bool| {
        let (a, b) = (a.max(from), b.min(to));
        if a >= b {
            return;
        }
        match out.last_mut() {
            Some(last) if last.2 == outside && last.1 == a => last.1 = b,
            _ => out.push((a, b, outside)),
        }
    };
    let mut at = from;
    for &h in hours {
        push(at, h, true);
        push(h, h + HOUR_MS, false);
        at = at.max(h + HOUR_MS);
    }
    push(at, to, true);
    out
}

/// `each_request` over one run of the window, through `sql` (one of the two statements above).
fn each_request_of(
    conn: &Connection,
    sql: &str,
    backend: &str,
    from: i64,
    to: i64,
    strings: &mut Shared,
    each: &mut impl FnMut(RequestRow),
) -> rusqlite::Result<()> {
    use super::fast_rows::{Param, Rows};
    let mut rows = Rows::query(conn, sql, &[Param::Text(backend), Param::Int(from), Param::Int(to)])?;
    while let Some(r) = rows.next()? {
        let at_ms = r.int(0)?.unwrap_or_default();
        let shared = |strings: &mut Shared, column: usize, i: usize| -> rusqlite::Result<Option<std::sync::Arc<str>>> {
            r.bytes(i)?.map(|b| strings.get(column, i, b)).transpose()
        };
        let outcome = shared(strings, Shared::OUTCOME, 1)?.unwrap_or_default();
        if &*outcome == "in_flight" {
            continue;
        }
        // What only a failure has, read only for one.
        let ok = &*outcome == "ok";
        each(RequestRow {
            at_ms,
            stream: r.int(2)?.is_some_and(|v| v != 0),
            ttft_ms: r.real(3)?,
            first_content_ms: r.real(4)?,
            decode_tps: r.real(5)?,
            output_tps: r.real(6)?,
            e2e_ms: r.real(7)?,
            signature: if ok { None } else { shared(strings, Shared::SIGNATURE, 8)? },
            error: if ok { None } else { r.text(9)?.map(Into::into) },
            concurrency: r.int_as(10)?.unwrap_or_default(),
            prompt_chars: r.int_as(11)?.unwrap_or_default(),
            gap_ms: r.real(12)?,
            server_pid: r.int_as(13)?,
            server_seq: r.int(14)?.and_then(|n| u64::try_from(n).ok()),
            job: shared(strings, Shared::JOB, 15)?.unwrap_or_default(),
            completion_tokens: r.int(16)?.map(|n| n.clamp(0, i64::from(u32::MAX)) as u32),
            http_status: if ok { None } else { r.int(17)?.and_then(|n| u16::try_from(n).ok()) },
            machine_in_flight: r.int(18)?.and_then(|n| u32::try_from(n).ok()),
            server_load_ms: r.real(19)?,
            outcome,
        });
    }
    Ok(())
}

/// Strings that repeat down a column (outcome, signature, job): one allocation each, the same
/// as the column's last one found by comparing bytes, others looked up without allocating.
#[derive(Default)]
struct Shared {
    strings: rustc_hash::FxHashMap<String, std::sync::Arc<str>>,
    last: [Option<std::sync::Arc<str>>; 3],
}

impl Shared {
    const OUTCOME: usize = 0;
    const SIGNATURE: usize = 1;
    const JOB: usize = 2;

    /// `bytes` (of column `i`) as a shared string; text that is not UTF-8 is an error.
    fn get(&mut self, column: usize, i: usize, bytes: &[u8]) -> rusqlite::Result<std::sync::Arc<str>> {
        if let Some(last) = &self.last[column]
            && last.as_bytes() == bytes
        {
            return Ok(last.clone());
        }
        let s = super::fast_rows::utf8(i, bytes)?;
        let shared = match self.strings.get(s) {
            Some(a) => a.clone(),
            None => {
                let a: std::sync::Arc<str> = s.into();
                if self.strings.len() < 100_000 {
                    self.strings.insert(s.to_string(), a.clone());
                }
                a
            }
        };
        self.last[column] = Some(shared.clone());
        Ok(shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_pass_reads_the_covering_index_alone() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("log.db")).unwrap();
        for sql in [EACH_REQUEST, EACH_REQUEST_NO_LATENCIES] {
            let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = explain
                .query_map(rusqlite::params!["b", 0, 1], |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            // No table lookup (the replies' overflow pages), no sort.
            assert_eq!(
                plan,
                ["SEARCH requests USING COVERING INDEX requests_report (backend=? AND started_at>? AND started_at<?)"]
            );
        }
    }

    #[test]
    fn a_window_is_cut_where_the_hours_without_latencies_begin_and_end() {
        const H: i64 = 3_600_000;
        // Hours 1, 2 and 4 are kept apart; the window starts and ends mid-hour.
        assert_eq!(
            segments(H / 2, 5 * H + 10, &[H, 2 * H, 4 * H]),
            [
                (H / 2, H, true),
                (H, 3 * H, false),
                (3 * H, 4 * H, true),
                (4 * H, 5 * H, false),
                (5 * H, 5 * H + 10, true)
            ]
        );
        assert_eq!(segments(0, H, &[]), [(0, H, true)]);
        // An hour the window only partly covers is cut to the window.
        assert_eq!(segments(H / 2, H, &[0]), [(H / 2, H, false)]);
        assert_eq!(segments(5, 5, &[0]), []);
    }

    #[test]
    fn rows_in_flight_are_left_out_and_hours_without_latencies_read_none() {
        let (_dir, conn) = crate::store::latency_hours::tests::log();
        const H: i64 = 3_600_000;
        for (at, outcome) in [(10, "ok"), (H + 10, "ok"), (H + 20, "in_flight"), (H + 30, "http_500"), (2 * H, "ok")] {
            conn.execute(
                "INSERT INTO requests (run_id, backend, job, worker, seq, intended_at, started_at, outcome, stream,
                     concurrency, prompt_name, prompt_chars, max_tokens, ttft_ms, e2e_ms, error)
                 VALUES (1, 'b', 'j', 0, 0, ?1, ?1, ?2, 1, 1, 'p', 100, 16, 5.0, 9.0, 'boom')",
                rusqlite::params![at, outcome],
            )
            .unwrap();
        }
        let mut seen = Vec::new();
        each_request(&conn, "b", 0, 3 * H, &[H], |r| {
            seen.push((r.at_ms, r.outcome.to_string(), r.ttft_ms, r.e2e_ms, r.error.as_deref().map(String::from)))
        })
        .unwrap();
        let boom = Some("boom".to_string());
        assert_eq!(
            seen,
            [
                (10, "ok".into(), Some(5.0), Some(9.0), None),
                (H + 10, "ok".into(), None, Some(9.0), None),
                (H + 30, "http_500".into(), None, Some(9.0), boom),
                (2 * H, "ok".into(), Some(5.0), Some(9.0), None),
            ]
        );
    }
}
