//! How the writer's batch of operations becomes rows (`writer` owns the thread, the queue and
//! when to commit): one transaction per batch, runs and requests named by the keys the handle
//! handed out mapped to their row ids, a request inserted when it starts (`in_flight`, so a soakd
//! killed mid-request leaves a row to mark `interrupted`) and completed when it ends, secrets
//! scrubbed from every error text before it is stored. Tested through `writer`'s tests, which
//! drive it as the daemon does.

use super::ops::Op;
use super::rows::{MemorySample, RequestEnd, RequestStart, RunKey, RunStart};
use super::signals;
use crate::secrets::scrub;
use rusqlite::{Connection, Transaction, params};
use std::collections::{HashMap, VecDeque};

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
                    started.insert(r.key, insert_request(&tx, r, run_id)?);
                }
                None => tracing::warn!(key = r.key, "a request started in a run that was never recorded"),
            },
            Op::RequestFinished(r) => {
                match started.get(&r.key).copied().or_else(|| rows.in_flight.get(&r.key).copied()) {
                    Some(row) => {
                        update_request(&tx, row, r)?;
                        finished.push((r.key, row));
                    }
                    None => tracing::warn!(key = r.key, "a request ended that was never recorded as started"),
                }
            }
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

fn insert_request(tx: &Transaction<'_>, r: &RequestStart, run_id: i64) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO requests (run_id, backend, job, worker, seq, intended_at, started_at, outcome,
             stream, concurrency, prompt_name, prompt_chars, max_tokens, gap_ms, server_pid, server_seq,
             machine_in_flight)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'in_flight', ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        run_id,
        r.backend,
        r.job,
        r.worker,
        r.seq,
        r.intended_at,
        r.started_at,
        r.stream,
        r.concurrency,
        r.prompt_name,
        r.prompt_chars,
        r.max_tokens,
        r.gap_ms,
        r.server_pid,
        r.server_seq.map(|n| n as i64),
        r.machine_in_flight,
    ])?;
    Ok(tx.last_insert_rowid())
}

fn update_request(tx: &Transaction<'_>, row: i64, r: &RequestEnd) -> rusqlite::Result<()> {
    let m = &r.measured;
    let clean = |t: &Option<String>| t.as_deref().map(|t| scrub(t).into_owned());
    tx.prepare_cached(
        "UPDATE requests SET outcome = ?2, http_status = ?3, attempts = ?4, first_byte_ms = ?5,
             ttft_ms = ?6, first_content_ms = ?7, e2e_ms = ?8, gap_p50_ms = ?9, gap_p95_ms = ?10,
             gap_max_ms = ?11, prompt_tokens = ?12, completion_tokens = ?13, token_source = ?14,
             decode_tps = ?15, output_tps = ?16, finish_reason = ?17, reasoning_seen = ?18,
             tool_call_seen = ?19, tool_call_valid = ?20, server_model = ?21, server_prompt_ms = ?22,
             server_decode_tps = ?23, server_timings = ?24, output = ?25, error = ?26,
             error_signature = ?27, server_ttft_ms = ?28, server_load_ms = ?29, server_total_ms = ?30,
             server_prompt_tokens = ?31, server_completion_tokens = ?32, server_stop_reason = ?33,
             server_peak_bytes = ?34
         WHERE id = ?1",
    )?
    .execute(params![
        row,
        r.outcome.as_str(),
        r.http_status,
        r.attempts,
        m.first_byte_ms,
        m.ttft_ms,
        m.first_content_ms,
        m.e2e_ms,
        m.gap_p50_ms,
        m.gap_p95_ms,
        m.gap_max_ms,
        m.prompt_tokens,
        m.completion_tokens,
        m.token_source.map(|s| s.as_str()),
        m.decode_tps,
        m.output_tps,
        r.finish_reason,
        r.reasoning_seen,
        r.tool_call_seen,
        r.tool_call_valid,
        r.server_model,
        r.server.prompt_ms,
        r.server.decode_tps,
        clean(&r.server_timings),
        scrub(&r.output),
        clean(&r.error),
        clean(&r.error_signature),
        r.server.ttft_ms,
        r.server.load_ms,
        r.server.total_ms,
        r.server.prompt_tokens,
        r.server.completion_tokens,
        r.server.stop_reason,
        r.server.peak_memory_bytes.map(|b| b as i64),
    ])?;
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
