//! A backend's finished requests in a window, streamed in time order for the report's one pass
//! (`report::pass`): what every request has from the covering index `requests_report`, what only
//! a failure has from the failures' covering index `requests_failures`, the two merged as they
//! stream, through `fast_rows`; the strings that repeat down a column shared, and the latency
//! columns left unread where an hour's latencies are kept apart.

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

/// What `each_request` reads of every request: columns of the covering index `requests_report`
/// (migration 0009), in time order — a column added here belongs in that index too (a test checks
/// the plan). `$latencies` are the columns only a successful request's latencies need, left out
/// where an hour's latencies are kept apart (SQLite decodes every column a statement names,
/// whether or not it is then asked for). Requests still in flight are left out as the rows pass
/// (it is rare, and testing it here costs SQLite a column read and a comparison per row).
macro_rules! each_request_sql {
    ($latencies:literal) => {
        concat!(
            "SELECT started_at, id, outcome, stream, concurrency, prompt_chars, gap_ms, server_pid, server_seq, job,
                completion_tokens, machine_in_flight, server_load_ms",
            $latencies,
            " FROM requests
            WHERE backend = ?1 AND started_at >= ?2 AND started_at < ?3
            ORDER BY started_at, id"
        )
    };
}
const EACH_REQUEST: &str = each_request_sql!(", ttft_ms, first_content_ms, e2e_ms, decode_tps, output_tps");
/// The same for hours whose latencies are kept apart (`store::latency_hours`).
const EACH_REQUEST_NO_LATENCIES: &str = each_request_sql!("");
/// What only a failure has, from the failures' covering index `requests_failures` (migration
/// 0013), in the same order as the requests, so the two reads are merged as they stream: the
/// pass over every request reads a third fewer columns, and a failure's detail is read once.
const FAILURES: &str = "SELECT started_at, id, e2e_ms, error_signature, http_status, error FROM requests
    WHERE backend = ?1 AND started_at >= ?2 AND started_at < ?3 AND outcome <> 'ok'
    ORDER BY started_at, id";

/// Every finished request of `backend` in `[from, to)`, in time order, handed to `each`.
/// Repeated strings (outcome, job, signature) are shared, so months of rows stay small. The
/// latencies of successful requests (TTFT, first content, end to end, decode and output rates)
/// are left `None` in the hours of `without_latencies` (UTC hour starts, ascending: hours whose
/// latencies are kept apart); the error columns (end to end, signature, error, HTTP status) of a
/// request that did not succeed come from the failures' index.
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
        each_request_of(conn, latencies, backend, a, b, &mut strings, &mut each)?;
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

/// `each_request` over one run of the window, with or without the latency columns.
fn each_request_of(
    conn: &Connection,
    latencies: bool,
    backend: &str,
    from: i64,
    to: i64,
    strings: &mut Shared,
    each: &mut impl FnMut(RequestRow),
) -> rusqlite::Result<()> {
    use super::fast_rows::{Param, Rows};
    let params = [Param::Text(backend), Param::Int(from), Param::Int(to)];
    let mut rows = Rows::query(conn, if latencies { EACH_REQUEST } else { EACH_REQUEST_NO_LATENCIES }, &params)?;
    // Stepped only while `rows` is, so both read the same snapshot of the log (a connection
    // keeps one read transaction while any of its statements is active).
    let mut failures = Failures { rows: Rows::query(conn, FAILURES, &params)?, next: None, done: false };
    while let Some(r) = rows.next()? {
        let shared = |strings: &mut Shared, column: usize, i: usize| -> rusqlite::Result<Option<std::sync::Arc<str>>> {
            r.bytes(i)?.map(|b| strings.get(column, i, b)).transpose()
        };
        let outcome = shared(strings, Shared::OUTCOME, 2)?.unwrap_or_default();
        if &*outcome == "in_flight" {
            continue;
        }
        let (at_ms, id) = (r.int(0)?.unwrap_or_default(), r.int(1)?.unwrap_or_default());
        let [ttft_ms, first_content_ms, e2e_ms, decode_tps, output_tps] =
            if latencies { [r.real(13)?, r.real(14)?, r.real(15)?, r.real(16)?, r.real(17)?] } else { [None; 5] };
        let failure = if &*outcome == "ok" { None } else { failures.find(at_ms, id, strings)? };
        let (e2e_ms, signature, http_status, error) = match failure {
            Some(f) => (f.e2e_ms, f.signature, f.http_status, f.error),
            None => (e2e_ms, None, None, None),
        };
        each(RequestRow {
            at_ms,
            outcome,
            stream: r.int(3)?.is_some_and(|v| v != 0),
            ttft_ms,
            first_content_ms,
            e2e_ms,
            decode_tps,
            output_tps,
            signature,
            error,
            concurrency: r.int_as(4)?.unwrap_or_default(),
            prompt_chars: r.int_as(5)?.unwrap_or_default(),
            gap_ms: r.real(6)?,
            server_pid: r.int_as(7)?,
            server_seq: r.int(8)?.and_then(|n| u64::try_from(n).ok()),
            job: shared(strings, Shared::JOB, 9)?.unwrap_or_default(),
            completion_tokens: r.int(10)?.map(|n| n.clamp(0, i64::from(u32::MAX)) as u32),
            http_status,
            machine_in_flight: r.int(11)?.and_then(|n| u32::try_from(n).ok()),
            server_load_ms: r.real(12)?,
        });
    }
    Ok(())
}

/// The failures' detail, read in step with the requests.
struct Failures<'c> {
    rows: super::fast_rows::Rows<'c>,
    /// A failure read ahead of the requests.
    next: Option<FailureDetail>,
    done: bool,
}

/// What only a failure has.
struct FailureDetail {
    key: (i64, i64),
    e2e_ms: Option<f64>,
    signature: Option<std::sync::Arc<str>>,
    http_status: Option<u16>,
    error: Option<std::sync::Arc<str>>,
}

impl Failures<'_> {
    /// The detail of the failure started at `at_ms` with `id`; failures before it (requests in
    /// flight, which the pass leaves out) are passed over.
    fn find(&mut self, at_ms: i64, id: i64, strings: &mut Shared) -> rusqlite::Result<Option<FailureDetail>> {
        loop {
            if self.next.is_none() && !self.done {
                self.next = self.read(strings)?;
                self.done = self.next.is_none();
            }
            match &self.next {
                Some(f) if f.key < (at_ms, id) => self.next = None,
                Some(f) if f.key == (at_ms, id) => return Ok(self.next.take()),
                // A failure not among the failures (none in one snapshot): no detail.
                _ => return Ok(None),
            }
        }
    }

    fn read(&mut self, strings: &mut Shared) -> rusqlite::Result<Option<FailureDetail>> {
        let Some(r) = self.rows.next()? else { return Ok(None) };
        Ok(Some(FailureDetail {
            key: (r.int(0)?.unwrap_or_default(), r.int(1)?.unwrap_or_default()),
            e2e_ms: r.real(2)?,
            signature: r.bytes(3)?.map(|b| strings.get(Shared::SIGNATURE, 3, b)).transpose()?,
            http_status: r.int(4)?.and_then(|n| u16::try_from(n).ok()),
            error: r.text(5)?.map(Into::into),
        }))
    }
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
        for (sql, index) in [
            (EACH_REQUEST, "requests_report"),
            (EACH_REQUEST_NO_LATENCIES, "requests_report"),
            (FAILURES, "requests_failures"),
        ] {
            let plan = crate::store::tests::query_plan(&conn, sql, rusqlite::params!["b", 0, 1]);
            // No table lookup (the replies' overflow pages), no sort.
            assert_eq!(
                plan,
                [format!("SEARCH requests USING COVERING INDEX {index} (backend=? AND started_at>? AND started_at<?)")]
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
    fn rows_in_flight_are_left_out_and_failures_get_their_own_detail() {
        let (_dir, conn) = crate::store::latency_hours::tests::log();
        const H: i64 = 3_600_000;
        // Each row's error names its id; two failures and a request in flight start together.
        let rows = [
            (10, "ok"),
            (H + 10, "ok"),
            (H + 20, "in_flight"),
            (H + 30, "http_500"),
            (H + 30, "in_flight"),
            (H + 30, "timeout"),
            (2 * H, "ok"),
            (2 * H + 5, "http_500"),
        ];
        for (at, outcome) in rows {
            conn.execute(
                "INSERT INTO requests (run_id, backend, job, worker, seq, intended_at, started_at, outcome, stream,
                     concurrency, prompt_name, prompt_chars, max_tokens, ttft_ms, e2e_ms, error, http_status)
                 VALUES (1, 'b', 'j', 0, 0, ?1, ?1, ?2, 1, 1, 'p', 100, 16, 5.0, ?1 + 0.5,
                     'boom ' || (SELECT count(*) + 1 FROM requests), 500)",
                rusqlite::params![at, outcome],
            )
            .unwrap();
        }
        let mut seen = Vec::new();
        each_request(&conn, "b", 0, 3 * H, &[H], |r| {
            seen.push((
                r.at_ms,
                r.outcome.to_string(),
                r.ttft_ms,
                r.e2e_ms,
                r.error.as_deref().map(String::from),
                r.http_status,
            ))
        })
        .unwrap();
        let boom = |id: u32| Some(format!("boom {id}"));
        let e2e = |at: i64| Some(at as f64 + 0.5);
        assert_eq!(
            seen,
            [
                (10, "ok".into(), Some(5.0), e2e(10), None, None),
                // Hour 1's latencies are kept apart: its successes read none, its failures their own.
                (H + 10, "ok".into(), None, None, None, None),
                (H + 30, "http_500".into(), None, e2e(H + 30), boom(4), Some(500)),
                (H + 30, "timeout".into(), None, e2e(H + 30), boom(6), Some(500)),
                (2 * H, "ok".into(), Some(5.0), e2e(2 * H), None, None),
                (2 * H + 5, "http_500".into(), Some(5.0), e2e(2 * H + 5), boom(8), Some(500)),
            ]
        );
    }
}
