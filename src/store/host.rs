//! The `host` table: which machine a log was written on (db/0007_host.sql).

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// A machine as soakd describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Host {
    pub hostname: String,
    pub model: Option<String>,
    pub chip: Option<String>,
    pub cpus: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub os: Option<String>,
    pub soakd_version: String,
}

/// Records that soakd runs on `host` now: a new row for a machine (or version) not seen before,
/// else its `last_seen_at` moves on.
pub fn seen(conn: &Connection, host: &Host, now: i64) -> rusqlite::Result<()> {
    // NULLs never equal each other in a UNIQUE constraint: compare with IS for the lookup.
    let existing: Option<i64> = conn
        .query_row(
            "SELECT id FROM host WHERE hostname = ?1 AND model IS ?2 AND chip IS ?3 AND cpus IS ?4
               AND memory_bytes IS ?5 AND os IS ?6 AND soakd_version = ?7",
            params![
                host.hostname,
                host.model,
                host.chip,
                host.cpus,
                host.memory_bytes.map(|b| b as i64),
                host.os,
                host.soakd_version
            ],
            |r| r.get(0),
        )
        .optional()?;
    match existing {
        Some(id) => conn.execute("UPDATE host SET last_seen_at = max(last_seen_at, ?2) WHERE id = ?1", params![id, now])?,
        None => conn.execute(
            "INSERT INTO host (hostname, model, chip, cpus, memory_bytes, os, soakd_version, first_seen_at, last_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            params![host.hostname, host.model, host.chip, host.cpus, host.memory_bytes.map(|b| b as i64), host.os, host.soakd_version, now],
        )?,
    };
    Ok(())
}

/// The machine the log was last written on.
pub fn latest(conn: &Connection) -> rusqlite::Result<Option<Host>> {
    conn.query_row(
        "SELECT hostname, model, chip, cpus, memory_bytes, os, soakd_version FROM host ORDER BY last_seen_at DESC, id DESC LIMIT 1",
        [],
        |r| {
            Ok(Host {
                hostname: r.get(0)?,
                model: r.get(1)?,
                chip: r.get(2)?,
                cpus: r.get(3)?,
                memory_bytes: r.get::<_, Option<i64>>(4)?.map(|b| b as u64),
                os: r.get(5)?,
                soakd_version: r.get(6)?,
            })
        },
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_is_one_row_whose_last_sight_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open(&dir.path().join("log.db")).unwrap();
        let h = Host {
            hostname: "m2-max".into(),
            model: None,
            chip: Some("Apple M2 Max".into()),
            cpus: Some(12),
            memory_bytes: Some(64 << 30),
            os: Some("macOS 15.3".into()),
            soakd_version: "0.1.0".into(),
        };
        seen(&conn, &h, 1_000).unwrap();
        seen(&conn, &h, 5_000).unwrap();
        let rows: (i64, i64, i64) = conn
            .query_row("SELECT count(*), min(first_seen_at), max(last_seen_at) FROM host", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(rows, (1, 1_000, 5_000), "the same machine (with a NULL model) is one row");
        seen(&conn, &Host { soakd_version: "0.2.0".into(), ..h.clone() }, 9_000).unwrap();
        assert_eq!(conn.query_row("SELECT count(*) FROM host", [], |r| r.get::<_, i64>(0)).unwrap(), 2);
        assert_eq!(latest(&conn).unwrap().unwrap().soakd_version, "0.2.0");
    }
}
