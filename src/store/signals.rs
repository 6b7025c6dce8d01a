//! Writing the servers' own signals: what a server said about itself at a run's start, its
//! state samples, and the crash evidence gathered around failures.

use super::rows::{Evidence, RunServer, ServerSample};
use crate::secrets::scrub;
use rusqlite::{Transaction, params};

pub(super) fn update_run_server(tx: &Transaction<'_>, r: &RunServer, run_id: i64) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE runs SET server_version = ?2, server_model = ?3, server_info = ?4 WHERE id = ?1")?
        .execute(params![run_id, r.version, r.model, r.info])?;
    Ok(())
}

pub(super) fn insert_server_sample(
    tx: &Transaction<'_>,
    s: &ServerSample,
    run_id: Option<i64>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO server_samples (backend, run_id, taken_at, phase, source, memory_bytes, gpu_memory_bytes, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        s.backend,
        run_id,
        s.taken_at,
        s.phase,
        s.source,
        s.memory_bytes.map(|b| b as i64),
        s.gpu_memory_bytes.map(|b| b as i64),
        s.data,
    ])?;
    Ok(())
}

/// Inserts the evidence (and the event it belongs to, if any); `request` is the failed
/// request's row, when it was found.
pub(super) fn insert_evidence(tx: &Transaction<'_>, e: &Evidence, request: Option<i64>) -> rusqlite::Result<()> {
    let event = match &e.event {
        Some(ev) => {
            tx.prepare_cached("INSERT INTO events (backend, kind, at, detail) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![ev.backend, ev.kind, ev.at, scrub(&ev.detail.to_string())])?;
            Some(tx.last_insert_rowid())
        }
        None => None,
    };
    let mut insert = tx.prepare_cached(
        "INSERT INTO crash_evidence (backend, request_id, event_id, at, source, path, text)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for item in &e.items {
        insert.execute(params![e.backend, request, event, e.at, item.source, item.path, scrub(&item.text)])?;
    }
    Ok(())
}
