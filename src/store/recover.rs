//! Recovery after a soakd process died: its runs still say `running` and its requests
//! `in_flight`. They become `interrupted`, unless the process that owns them is still alive.

use crate::time::now_ms;
use rusqlite::{Connection, params};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub runs: usize,
    pub requests: usize,
}

pub(super) fn run(conn: &Connection) -> rusqlite::Result<Recovered> {
    let owners: Vec<(i64, u32, i64)> = conn
        .prepare("SELECT id, owner_pid, owner_started_at FROM runs WHERE status = 'running'")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    if owners.is_empty() {
        return Ok(Recovered::default());
    }
    let mut sys = System::new().ok();
    let mut alive = |pid: u32, started: i64| -> bool {
        let Some(sys) = sys.as_mut() else { return true };
        let pid = Pid::from_u32(pid);
        sys.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, ProcessRefreshKind::nothing());
        sys.process(pid).is_some_and(|p| p.start_time() as i64 == started)
    };
    let mut done = Recovered::default();
    let now = now_ms();
    for (run, pid, started) in owners {
        if alive(pid, started) {
            continue;
        }
        done.requests += conn.execute(
            "UPDATE requests SET outcome = 'interrupted', error = ?2
             WHERE run_id = ?1 AND outcome = 'in_flight'",
            params![run, format!("soakd (pid {pid}) stopped while this request was in flight")],
        )?;
        done.runs += conn.execute(
            "UPDATE runs SET status = 'interrupted',
                 finished_at = coalesce((SELECT max(started_at) FROM requests WHERE run_id = ?1), started_at)
             WHERE id = ?1",
            params![run],
        )?;
        conn.execute(
            "INSERT INTO events (backend, kind, at, detail)
             SELECT backend, 'interrupted', ?2, json_object('run_id', id, 'owner_pid', owner_pid) FROM runs WHERE id = ?1",
            params![run, now],
        )?;
    }
    Ok(done)
}
