//! Writes logs into a soakd database with plain SQL, in the schema db/README.md documents.

use super::{Log, MIN};
use rusqlite::{Connection, params};
use std::collections::BTreeMap;
use std::path::Path;

/// Creates the database at `path` (soakd's migrations) and writes every log into it: one run per
/// job and hour, then the requests, memory samples and events.
pub fn write(path: &Path, logs: &[Log]) -> Connection {
    let conn = soakd::store::open(path).expect("a fresh database");
    let tx = conn.unchecked_transaction().unwrap();
    for log in logs {
        let mut runs: BTreeMap<(String, i64), i64> = BTreeMap::new();
        let mut req = tx
            .prepare(
                "INSERT INTO requests (run_id, backend, job, worker, seq, intended_at, started_at, outcome, http_status,
                     stream, concurrency, prompt_name, prompt_chars, max_tokens, gap_ms, server_pid, server_seq,
                     first_byte_ms, ttft_ms, first_content_ms, e2e_ms, prompt_tokens, completion_tokens, token_source,
                     decode_tps, output_tps, finish_reason, error, error_signature)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, 1, ?9, 'p', ?10, ?11, ?12, ?13, ?14, ?15, ?15, ?15, ?16,
                         ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
            )
            .unwrap();
        for (i, r) in log.requests.iter().enumerate() {
            let hour = r.started_at.div_euclid(60 * MIN);
            let key = (r.job.clone(), hour);
            let run = match runs.get(&key) {
                Some(id) => *id,
                None => {
                    tx.execute(
                        "INSERT INTO runs (job, backend, trigger, status, planned_at, started_at, finished_at,
                             requests_planned, requests_done, concurrency, delay_ms, stream, max_tokens, backend_kind,
                             base_url, owner_pid, owner_started_at)
                         VALUES (?1, ?2, 'cron', 'completed', ?3, ?3, ?4, 0, 0, ?5, 0, 1, ?6, 'openai',
                             'http://127.0.0.1:8080', 1, 1)",
                        params![
                            r.job,
                            log.backend,
                            hour * 60 * MIN,
                            (hour + 1) * 60 * MIN,
                            r.concurrency,
                            r.max_tokens
                        ],
                    )
                    .unwrap();
                    let id = tx.last_insert_rowid();
                    runs.insert(key, id);
                    id
                }
            };
            let ok = r.ok();
            let ttft = ok.then(|| (r.e2e_ms * 0.2).max(1.0));
            let tokens = r.completion_tokens.filter(|_| ok);
            let decode =
                tokens.zip(ttft).map(|(n, t)| (f64::from(n) - 1.0).max(0.0) / ((r.e2e_ms - t).max(1.0) / 1000.0));
            let output = tokens.map(|n| f64::from(n) / (r.e2e_ms.max(1.0) / 1000.0));
            let signature = r.error.as_deref().map(mask);
            req.execute(params![
                run,
                log.backend,
                r.job,
                r.worker,
                i as i64,
                r.started_at,
                r.outcome,
                r.http_status,
                r.concurrency,
                r.prompt_chars,
                r.max_tokens,
                r.gap_ms,
                r.server_pid,
                r.server_seq.map(|s| s as i64),
                ttft,
                r.e2e_ms,
                r.prompt_tokens.filter(|_| ok),
                tokens,
                tokens.map(|_| "usage"),
                decode,
                output,
                ok.then_some("length"),
                r.error,
                signature,
            ])
            .unwrap();
        }
        let mut sample = tx
            .prepare(
                "INSERT INTO memory_samples (backend, pid, proc_started_at, taken_at, phase, in_flight, processes,
                     rss_bytes, footprint_bytes, sys_used_bytes, sys_available_bytes, swap_used_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, 0)",
            )
            .unwrap();
        for s in &log.samples {
            sample
                .execute(params![
                    log.backend,
                    s.pid,
                    s.proc_started_at,
                    s.taken_at,
                    s.phase,
                    s.in_flight,
                    s.rss.map(|b| b.round() as i64),
                    s.footprint.map(|b| b.round() as i64),
                    (64e9 - s.sys_available).round() as i64,
                    s.sys_available.round() as i64,
                ])
                .unwrap();
        }
        for e in &log.events {
            tx.execute(
                "INSERT INTO events (backend, kind, at, detail) VALUES (?1, ?2, ?3, ?4)",
                params![log.backend, e.kind, e.at, e.detail],
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
    conn
}

/// The error with numbers masked, as a signature (soakd's own masking is richer; any stable
/// grouping will do for a log written elsewhere).
fn mask(error: &str) -> String {
    let mut out = String::with_capacity(error.len());
    let mut in_number = false;
    for c in error.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push_str("<n>");
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}
