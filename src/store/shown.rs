//! The SQL soakd shows its users: the query behind each finding, alert and digest line, to paste
//! into `sqlite3`. Written here, beside the schema they read, so that a schema change meets
//! every query in one place. Names and signatures come from servers and configs: each is quoted
//! as an SQL string literal; numbers are the report's own.

use super::queries::{counted_sql, failure_sql};

/// A report's window as a condition on `column` (`started_at`, `taken_at`).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: i64,
    pub to: i64,
}

impl Window {
    fn on(self, column: &str) -> String {
        format!("AND {column} >= {} AND {column} < {}", self.from, self.to)
    }
}

/// `s` as the inside of an SQL string literal.
fn quoted(s: &str) -> String {
    s.replace('\'', "''")
}

/// Two backends' successful requests side by side (an API-overhead finding).
pub fn overhead(a: &str, b: &str, w: Window) -> String {
    format!(
        "SELECT backend, count(*), avg(ttft_ms), avg(decode_tps) FROM requests WHERE backend IN ('{}', '{}') AND outcome = 'ok' {} GROUP BY backend",
        quoted(a),
        quoted(b),
        w.on("started_at")
    )
}

/// The backend's idle memory samples (a leak, plateau or step finding).
pub fn idle_memory(backend: &str, w: Window) -> String {
    format!(
        "SELECT datetime(taken_at / 1000, 'unixepoch') AS at, pid, rss_bytes, footprint_bytes FROM memory_samples WHERE backend = '{}' AND in_flight = 0 {} ORDER BY taken_at",
        quoted(backend),
        w.on("taken_at")
    )
}

/// The backend's requests since `since` with their outcome and error (a wedged or silent server).
pub fn requests_since(backend: &str, since: i64) -> String {
    format!(
        "SELECT id, datetime(started_at / 1000, 'unixepoch') AS at, outcome, http_status, error FROM requests WHERE backend = '{}' AND started_at >= {since} ORDER BY started_at",
        quoted(backend)
    )
}

/// The backend's latest `n` requests, newest first (a failure-streak alert).
pub fn latest_requests(backend: &str, n: u64) -> String {
    format!(
        "SELECT id, datetime(started_at / 1000, 'unixepoch') AS at, outcome, error FROM requests WHERE backend = '{}' ORDER BY started_at DESC LIMIT {n}",
        quoted(backend)
    )
}

/// The backend's failures (the `failures` view) in the window.
pub fn failures(backend: &str, w: Window) -> String {
    format!("SELECT * FROM failures WHERE backend = '{}' {}", quoted(backend), w.on("started_at"))
}

/// The backend's restarts (the `restarts` view).
pub fn restarts(backend: &str) -> String {
    format!("SELECT * FROM restarts WHERE backend = '{}'", quoted(backend))
}

/// The backend's failed requests with every crash factor (a crash pattern).
pub fn failed_with_factors(backend: &str, w: Window) -> String {
    format!(
        "SELECT id, started_at, outcome, error_signature, concurrency, prompt_chars, gap_ms, server_seq, job FROM requests WHERE backend = '{}' AND {} {} ORDER BY started_at",
        quoted(backend),
        failure_sql(),
        w.on("started_at")
    )
}

/// Requests and failures by two crash factors at once (factors this log cannot tell apart).
pub fn by_two_factors(backend: &str, factors: [&str; 2], w: Window) -> String {
    format!(
        "SELECT {}, {}, count(*) AS requests, sum({}) AS failed FROM requests WHERE backend = '{}' AND {} {} GROUP BY 1, 2",
        factor_column(factors[0]),
        factor_column(factors[1]),
        failure_sql(),
        quoted(backend),
        counted_sql(),
        w.on("started_at")
    )
}

/// Each server life's last request number and outcome (crashes at about the Nth request).
pub fn per_server_life(backend: &str, w: Window) -> String {
    format!(
        "SELECT server_pid, max(server_seq), outcome FROM requests WHERE backend = '{}' {} GROUP BY server_pid",
        quoted(backend),
        w.on("started_at")
    )
}

/// Each request's gap after the previous one, and its outcome (the seed report's hypotheses).
pub fn gaps(backend: &str, w: Window) -> String {
    format!(
        "SELECT gap_ms, outcome FROM requests WHERE backend = '{}' {} ORDER BY started_at",
        quoted(backend),
        w.on("started_at")
    )
}

/// The backend's hourly figures (the `hourly` view; a drift finding).
pub fn hourly(backend: &str) -> String {
    format!("SELECT * FROM hourly WHERE backend = '{}' ORDER BY hour_utc", quoted(backend))
}

/// The requests behind one crash signature (a digest line).
pub fn signature_requests(backend: &str, signature: &str, w: Window) -> String {
    format!(
        "SELECT id, datetime(started_at / 1000, 'unixepoch') AS at, outcome, error FROM requests WHERE backend = '{}' AND coalesce(error_signature, outcome) = '{}' {} ORDER BY started_at;",
        quoted(backend),
        quoted(signature),
        w.on("started_at")
    )
}

/// Outcomes and mean TTFT per backend (`soakd demo`'s first suggestion).
pub const OUTCOMES_BY_BACKEND: &str =
    "SELECT backend, outcome, count(*), round(avg(ttft_ms)) AS avg_ttft_ms FROM requests GROUP BY 1, 2";

/// The first failures (`soakd demo`'s second suggestion).
pub const FIRST_FAILURES: &str = "SELECT * FROM failures LIMIT 10";

/// The requests column (or expression) behind a crash factor.
fn factor_column(factor: &str) -> &'static str {
    match factor {
        "concurrency" => "concurrency",
        "prompt_size" => "prompt_chars / 4000 AS prompt_k_tokens",
        "gap" => "CAST(gap_ms / 100 AS INTEGER) AS gap_100ms",
        "server_seq" => "server_seq",
        "first_after_load" => "server_seq <= 1 AS first_after_load",
        "job" => "job",
        _ => "strftime('%H', started_at / 1000, 'unixepoch', 'localtime') AS hour",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shown_query_runs_on_the_schema_and_quotes_names() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open(&dir.path().join("log.db")).unwrap();
        let (b, w) = ("it's", Window { from: 0, to: 1 });
        let queries = [
            overhead(b, "other", w),
            idle_memory(b, w),
            requests_since(b, 0),
            latest_requests(b, 5),
            failures(b, w),
            restarts(b),
            failed_with_factors(b, w),
            by_two_factors(b, ["concurrency", "prompt_size"], w),
            by_two_factors(b, ["gap", "hour"], w),
            per_server_life(b, w),
            gaps(b, w),
            hourly(b),
            signature_requests(b, "a 'quoted' signature", w),
            OUTCOMES_BY_BACKEND.to_string(),
            FIRST_FAILURES.to_string(),
        ];
        for q in queries {
            conn.prepare(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert!(!q.contains("'it's'"), "{q}");
        }
    }
}
