//! How the writer's batch of operations becomes rows (`writer` owns the thread, the queue and
//! when to commit): one transaction per batch, runs and requests named by the keys the handle
//! handed out mapped to their row ids, a request inserted when it starts (`in_flight`, so a soakd
//! killed mid-request leaves a row to mark `interrupted`) and completed when it ends — or, when it
//! starts and ends within one batch, inserted whole (the transaction is the guarantee then), secrets
//! scrubbed from every error text before it is stored. Tested through `writer`'s tests, which
//! drive it as the daemon does.

use super::ops::Op;
use super::rows::{MemorySample, RequestEnd, RequestStart, RunKey, RunStart};
use super::signals;
use crate::secrets::scrub;
use rusqlite::{Connection, ToSql, Transaction, params};
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::LazyLock;

/// Finished requests whose row ids are remembered, so evidence gathered after a request
/// ended can still point at it.
const RECENT_FINISHED: usize = 4096;

/// Ended runs whose row ids are remembered, for samples taken just after a run ended.
const RECENT_RUNS: usize = 256;

/// Request keys → row ids: those in flight, and the latest finished ones.
#[derive(Default)]
pub(super) struct Rows {
    in_flight: HashMap<u64, i64>,
    finished: HashMap<u64, i64>,
    order: VecDeque<u64>,
    /// Run keys → `runs.id`: running runs, and the latest ended ones.
    runs: HashMap<RunKey, i64>,
    ended: VecDeque<RunKey>,
}

impl Rows {
    pub(super) fn run(&self, key: RunKey) -> Option<i64> {
        self.runs.get(&key).copied()
    }

    fn end_run(&mut self, key: RunKey) {
        self.ended.push_back(key);
        if self.ended.len() > RECENT_RUNS
            && let Some(old) = self.ended.pop_front()
        {
            self.runs.remove(&old);
        }
    }

    fn get(&self, key: u64) -> Option<i64> {
        self.in_flight.get(&key).or_else(|| self.finished.get(&key)).copied()
    }

    fn finish(&mut self, key: u64) {
        if let Some(row) = self.in_flight.remove(&key) {
            self.finished.insert(key, row);
            self.order.push_back(key);
            if self.order.len() > RECENT_FINISHED
                && let Some(old) = self.order.pop_front()
            {
                self.finished.remove(&old);
            }
        }
    }
}

/// Applies a batch in one transaction and returns the row ids of the requests it finished.
/// `rows` (request and run keys → row ids) changes only once the transaction has committed.
pub(super) fn apply(
    conn: &mut Connection,
    batch: &[Op],
    rows: &mut Rows,
    owner: (u32, u64),
) -> rusqlite::Result<Vec<i64>> {
    let tx = conn.transaction()?;
    let mut started: HashMap<u64, i64> = HashMap::new();
    let mut begun: HashMap<RunKey, i64> = HashMap::new();
    let mut finished = Vec::new();
    let mut ended = Vec::new();
    // Requests that end in this batch: those that also start in it are written whole.
    let ends: HashMap<u64, &RequestEnd> = batch
        .iter()
        .filter_map(|op| match op {
            Op::RequestFinished(r) => Some((r.key, &**r)),
            _ => None,
        })
        .collect();
    for op in batch {
        let run_of = |key: RunKey| begun.get(&key).copied().or_else(|| rows.run(key));
        match op {
            Op::BeginRun(run, key) => {
                begun.insert(*key, insert_run(&tx, run, owner)?);
            }
            Op::EndRun { run, status, finished_at, requests_done } => {
                let Some(id) = run_of(*run) else { continue };
                tx.prepare_cached("UPDATE runs SET status = ?2, finished_at = ?3, requests_done = ?4 WHERE id = ?1")?
                    .execute(params![id, status.as_str(), finished_at, requests_done])?;
                ended.push(*run);
            }
            Op::RequestStarted(r) => match run_of(r.run) {
                Some(run_id) => {
                    let row = match ends.get(&r.key) {
                        Some(end) => insert_whole(&tx, r, run_id, end)?,
                        None => insert_request(&tx, r, run_id)?,
                    };
                    started.insert(r.key, row);
                }
                None => tracing::warn!(key = r.key, "a request started in a run that was never recorded"),
            },
            Op::RequestFinished(r) => match (started.get(&r.key), rows.in_flight.get(&r.key)) {
                // Started in this batch too: written whole at its start.
                (Some(&row), _) => finished.push((r.key, row)),
                (None, Some(&row)) => {
                    update_request(&tx, row, r)?;
                    finished.push((r.key, row));
                }
                (None, None) => tracing::warn!(key = r.key, "a request ended that was never recorded as started"),
            },
            Op::Sample(s) => insert_sample(&tx, s, s.run.and_then(run_of))?,
            Op::Event(e) => {
                tx.prepare_cached("INSERT INTO events (backend, kind, at, detail) VALUES (?1, ?2, ?3, ?4)")?
                    .execute(params![e.backend, e.kind, e.at, scrub(&e.detail.to_string())])?;
            }
            Op::RunServer(r) => {
                if let Some(id) = run_of(r.run) {
                    signals::update_run_server(&tx, r, id)?;
                }
            }
            Op::ServerSample(s) => signals::insert_server_sample(&tx, s, s.run.and_then(run_of))?,
            Op::Evidence(e) => {
                let request = e.request_key.and_then(|k| started.get(&k).copied().or_else(|| rows.get(k)));
                signals::insert_evidence(&tx, e, request)?;
            }
            Op::RunId(..) | Op::Flush(_) | Op::Tap(_) | Op::Close => {}
        }
    }
    tx.commit()?;
    rows.in_flight.extend(started);
    rows.runs.extend(begun);
    for &(key, _) in &finished {
        rows.finish(key);
    }
    for run in ended {
        rows.end_run(run);
    }
    Ok(finished.into_iter().map(|(_, row)| row).collect())
}

fn insert_run(tx: &Transaction<'_>, r: &RunStart, owner: (u32, u64)) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO runs (job, backend, trigger, status, planned_at, started_at, requests_planned,
             concurrency, delay_ms, stream, max_tokens, backend_kind, base_url, model, server_pid,
             owner_pid, owner_started_at, detail)
         VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?
    .execute(params![
        r.job,
        r.backend,
        r.trigger,
        r.planned_at,
        r.started_at,
        r.requests_planned,
        r.concurrency,
        r.delay_ms as i64,
        r.stream,
        r.max_tokens,
        r.backend_kind,
        r.base_url,
        r.model,
        r.server_pid,
        owner.0,
        owner.1 as i64,
        r.detail.to_string(),
    ])?;
    Ok(tx.last_insert_rowid())
}

/// The columns a request's start fills (`outcome` aside), in the order of [`Start::values`].
#[rustfmt::skip]
const START_COLUMNS: [&str; 16] = [
    "run_id", "backend", "job", "worker", "seq", "intended_at", "started_at", "stream", "concurrency",
    "prompt_name", "prompt_chars", "max_tokens", "gap_ms", "server_pid", "server_seq", "machine_in_flight",
];

/// The columns a request's end fills, in the order of [`Finish::values`].
#[rustfmt::skip]
const END_COLUMNS: [&str; 33] = [
    "outcome", "http_status", "attempts", "first_byte_ms", "ttft_ms", "first_content_ms", "e2e_ms",
    "gap_p50_ms", "gap_p95_ms", "gap_max_ms", "prompt_tokens", "completion_tokens", "token_source",
    "decode_tps", "output_tps", "finish_reason", "reasoning_seen", "tool_call_seen", "tool_call_valid",
    "server_model", "server_prompt_ms", "server_decode_tps", "server_timings", "output", "error",
    "error_signature", "server_ttft_ms", "server_load_ms", "server_total_ms", "server_prompt_tokens",
    "server_completion_tokens", "server_stop_reason", "server_peak_bytes",
];

/// `?from, ?from+1, …` for `n` parameters.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
}

/// A started request: its row, `in_flight` until its end updates it.
static INSERT_STARTED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO requests ({}, outcome) VALUES ({}, 'in_flight')",
        START_COLUMNS.join(", "),
        placeholders(1, START_COLUMNS.len())
    )
});

/// A request that started and ended within one batch: one row, written whole.
static INSERT_WHOLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO requests ({}, {}) VALUES ({})",
        START_COLUMNS.join(", "),
        END_COLUMNS.join(", "),
        placeholders(1, START_COLUMNS.len() + END_COLUMNS.len())
    )
});

/// A started request's row, completed.
static UPDATE_FINISHED: LazyLock<String> = LazyLock::new(|| {
    let set: Vec<String> = END_COLUMNS.iter().enumerate().map(|(i, c)| format!("{c} = ?{}", i + 2)).collect();
    format!("UPDATE requests SET {} WHERE id = ?1", set.join(", "))
});

/// A request's start as it is stored.
struct Start<'a> {
    r: &'a RequestStart,
    run_id: i64,
    server_seq: Option<i64>,
}

impl<'a> Start<'a> {
    fn new(r: &'a RequestStart, run_id: i64) -> Start<'a> {
        Start { r, run_id, server_seq: r.server_seq.map(|n| n as i64) }
    }

    fn values(&self) -> [&dyn ToSql; 16] {
        let r = self.r;
        [
            &self.run_id,
            &r.backend,
            &r.job,
            &r.worker,
            &r.seq,
            &r.intended_at,
            &r.started_at,
            &r.stream,
            &r.concurrency,
            &r.prompt_name,
            &r.prompt_chars,
            &r.max_tokens,
            &r.gap_ms,
            &r.server_pid,
            &self.server_seq,
            &r.machine_in_flight,
        ]
    }
}

/// A request's end as it is stored: its texts scrubbed of secrets.
struct Finish<'a> {
    r: &'a RequestEnd,
    outcome: &'static str,
    token_source: Option<&'static str>,
    server_timings: Option<String>,
    output: Cow<'a, str>,
    error: Option<String>,
    error_signature: Option<String>,
    peak_bytes: Option<i64>,
}

impl<'a> Finish<'a> {
    fn new(r: &'a RequestEnd) -> Finish<'a> {
        let clean = |t: &Option<String>| t.as_deref().map(|t| scrub(t).into_owned());
        Finish {
            r,
            outcome: r.outcome.as_str(),
            token_source: r.measured.token_source.map(|s| s.as_str()),
            server_timings: clean(&r.server_timings),
            output: scrub(&r.output),
            error: clean(&r.error),
            error_signature: clean(&r.error_signature),
            peak_bytes: r.server.peak_memory_bytes.map(|b| b as i64),
        }
    }

    fn values(&self) -> [&dyn ToSql; 33] {
        let (r, m) = (self.r, &self.r.measured);
        [
            &self.outcome,
            &r.http_status,
            &r.attempts,
            &m.first_byte_ms,
            &m.ttft_ms,
            &m.first_content_ms,
            &m.e2e_ms,
            &m.gap_p50_ms,
            &m.gap_p95_ms,
            &m.gap_max_ms,
            &m.prompt_tokens,
            &m.completion_tokens,
            &self.token_source,
            &m.decode_tps,
            &m.output_tps,
            &r.finish_reason,
            &r.reasoning_seen,
            &r.tool_call_seen,
            &r.tool_call_valid,
            &r.server_model,
            &r.server.prompt_ms,
            &r.server.decode_tps,
            &self.server_timings,
            &self.output,
            &self.error,
            &self.error_signature,
            &r.server.ttft_ms,
            &r.server.load_ms,
            &r.server.total_ms,
            &r.server.prompt_tokens,
            &r.server.completion_tokens,
            &r.server.stop_reason,
            &self.peak_bytes,
        ]
    }
}

fn insert_request(tx: &Transaction<'_>, r: &RequestStart, run_id: i64) -> rusqlite::Result<i64> {
    tx.prepare_cached(&INSERT_STARTED)?.execute(&Start::new(r, run_id).values()[..])?;
    Ok(tx.last_insert_rowid())
}

/// A request whose end is in the same batch (and so the same transaction) as its start: no
/// `in_flight` row is ever committed for it, and one insert does the work of an insert and an update.
fn insert_whole(tx: &Transaction<'_>, r: &RequestStart, run_id: i64, end: &RequestEnd) -> rusqlite::Result<i64> {
    let (start, finish) = (Start::new(r, run_id), Finish::new(end));
    let values: Vec<&dyn ToSql> = start.values().into_iter().chain(finish.values()).collect();
    tx.prepare_cached(&INSERT_WHOLE)?.execute(&values[..])?;
    Ok(tx.last_insert_rowid())
}

fn update_request(tx: &Transaction<'_>, row: i64, r: &RequestEnd) -> rusqlite::Result<()> {
    let finish = Finish::new(r);
    let values: Vec<&dyn ToSql> = std::iter::once(&row as &dyn ToSql).chain(finish.values()).collect();
    tx.prepare_cached(&UPDATE_FINISHED)?.execute(&values[..])?;
    Ok(())
}

fn insert_sample(tx: &Transaction<'_>, s: &MemorySample, run_id: Option<i64>) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO memory_samples (backend, pid, proc_started_at, taken_at, phase, in_flight, processes,
             rss_bytes, footprint_bytes, sys_used_bytes, sys_available_bytes, swap_used_bytes, run_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        s.backend,
        s.pid,
        s.proc_started_at.map(|t| t as i64),
        s.taken_at,
        s.phase.as_str(),
        s.in_flight,
        s.processes,
        s.rss_bytes.map(|b| b as i64),
        s.footprint_bytes.map(|b| b as i64),
        s.sys_used_bytes as i64,
        s.sys_available_bytes as i64,
        s.swap_used_bytes as i64,
        run_id,
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::numbers::ServerNumbers;
    use crate::measure::outcome::Outcome;
    use crate::measure::timeline::{Measured, TokenSource};
    use crate::store::writer::tests::{end, run_start, start};

    /// An end with every column filled, a secret in its texts.
    fn full_end(key: u64) -> RequestEnd {
        let mut e = end(key, Outcome::ServerReportedCrash);
        e.measured = Measured {
            first_byte_ms: Some(1.5),
            ttft_ms: Some(2.5),
            first_content_ms: Some(3.5),
            e2e_ms: 40.0,
            gap_p50_ms: Some(0.5),
            gap_p95_ms: Some(0.9),
            gap_max_ms: Some(1.1),
            prompt_tokens: Some(7),
            completion_tokens: Some(16),
            token_source: Some(TokenSource::Usage),
            decode_tps: Some(400.0),
            output_tps: Some(380.0),
        };
        e.http_status = Some(500);
        e.attempts = 2;
        e.tool_call_seen = true;
        e.tool_call_valid = Some(false);
        e.server_model = Some("m".into());
        e.server = ServerNumbers {
            prompt_ms: Some(1.0),
            ttft_ms: Some(2.0),
            decode_tps: Some(3.0),
            load_ms: Some(4.0),
            total_ms: Some(5.0),
            prompt_tokens: Some(6),
            completion_tokens: Some(7),
            stop_reason: Some("eos".into()),
            peak_memory_bytes: Some(1 << 30),
        };
        e.server_timings = Some(r#"{"n": 1}"#.into());
        e.error = Some("HTTP 500: Authorization: Bearer sk-abcdefghijklmnopqrstuvwx failed".into());
        e.error_signature = Some("HTTP 500".into());
        e
    }

    /// Every column of request `seq` but its id and its own numbers.
    fn row(conn: &Connection, seq: u32) -> Vec<rusqlite::types::Value> {
        let mut stmt = conn.prepare("SELECT * FROM requests WHERE seq = ?1").unwrap();
        let skip = ["id", "seq", "server_seq"];
        let keep: Vec<usize> =
            (0..stmt.column_count()).filter(|&i| !skip.contains(&stmt.column_name(i).unwrap())).collect();
        stmt.query_row([seq], |r| keep.iter().map(|&i| r.get(i)).collect()).unwrap()
    }

    #[test]
    fn a_request_written_whole_is_the_row_an_insert_and_an_update_leave() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = super::super::open(&dir.path().join("a.db")).unwrap();
        let mut rows = Rows::default();
        let run = RunKey(1);
        let mut batch = |ops: Vec<Op>, rows: &mut Rows| apply(&mut conn, &ops, rows, (1, 1)).unwrap();
        batch(vec![Op::BeginRun(Box::new(run_start("j", "b")), run)], &mut rows);
        // Request 1 starts and ends in one batch; request 2 in two.
        let finished = batch(
            vec![Op::RequestStarted(Box::new(start(1, run))), Op::RequestFinished(Box::new(full_end(1)))],
            &mut rows,
        );
        assert_eq!(finished.len(), 1);
        batch(vec![Op::RequestStarted(Box::new(start(2, run)))], &mut rows);
        let conn = super::super::open(&dir.path().join("a.db")).unwrap();
        let outcome = |seq: u32| -> String {
            conn.query_row("SELECT outcome FROM requests WHERE seq = ?1", [seq], |r| r.get(0)).unwrap()
        };
        assert_eq!(outcome(2), "in_flight", "a request still running is committed as in flight");
        batch(vec![Op::RequestFinished(Box::new(full_end(2)))], &mut rows);
        assert_eq!(outcome(1), "server_reported_crash");
        let (whole, updated) = (row(&conn, 1), row(&conn, 2));
        assert_eq!(whole, updated);
        let error: String = conn.query_row("SELECT error FROM requests WHERE seq = 1", [], |r| r.get(0)).unwrap();
        assert!(!error.contains("sk-abcdef"), "scrubbed: {error}");
        assert!(rows.get(1).is_some() && rows.get(2).is_some(), "both rows stay known for late evidence");
    }
}
