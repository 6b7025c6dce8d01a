//! The SQLite log: opening it (WAL, busy timeout, numbered migrations from `db/`), the one
//! writer thread that batches every insert, and the queries reports read.
//!
//! Several soakd processes may share one database (a `soakd once` beside the daemon): each
//! records which process ran a run, and at open only runs whose process is gone are marked
//! `interrupted`.

mod apply;
pub mod export;
mod fast_rows;
pub mod findings;
pub mod host;
pub mod latency_hours;
pub mod life_points;
pub mod memory;
mod ops;
pub mod outbox;
pub mod queries;
mod recover;
pub mod request_rows;
pub mod retention;
pub mod rows;
pub mod shown;
mod signals;
pub mod summaries;
pub mod tally;
mod tap;
pub mod writer;

pub use writer::{Writer, WriterHandle};

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

/// The migrations in `db/`, in order. A test checks this list against the folder.
pub const MIGRATION_FILES: &[(&str, &str)] = &[
    ("0001_init.sql", include_str!("../../db/0001_init.sql")),
    ("0002_findings.sql", include_str!("../../db/0002_findings.sql")),
    ("0003_server_signals.sql", include_str!("../../db/0003_server_signals.sql")),
    ("0004_rollups.sql", include_str!("../../db/0004_rollups.sql")),
    ("0005_outbox.sql", include_str!("../../db/0005_outbox.sql")),
    ("0006_machine_in_flight.sql", include_str!("../../db/0006_machine_in_flight.sql")),
    ("0007_host.sql", include_str!("../../db/0007_host.sql")),
    ("0008_memory_hours.sql", include_str!("../../db/0008_memory_hours.sql")),
    ("0009_report_index.sql", include_str!("../../db/0009_report_index.sql")),
    ("0010_latency_hours.sql", include_str!("../../db/0010_latency_hours.sql")),
    ("0011_life_points.sql", include_str!("../../db/0011_life_points.sql")),
    ("0012_failures_index.sql", include_str!("../../db/0012_failures_index.sql")),
    ("0013_failure_details.sql", include_str!("../../db/0013_failure_details.sql")),
];

static MIGRATIONS: LazyLock<Migrations<'static>> =
    LazyLock::new(|| Migrations::new(MIGRATION_FILES.iter().map(|(_, sql)| M::up(sql)).collect()));

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the folder for the database {path}: {err}")]
    Folder { path: PathBuf, err: std::io::Error },
    #[error("cannot open the database {path}: {err}")]
    Open { path: PathBuf, err: rusqlite::Error },
    #[error(
        "cannot bring the database {path} to the current schema: {err}\n  (a database written by a newer soakd cannot be opened by this one)"
    )]
    Migrate { path: PathBuf, err: rusqlite_migration::Error },
    #[error("database {path}: {err}")]
    Query { path: PathBuf, err: rusqlite::Error },
    #[error("the database writer stopped: {0}")]
    WriterGone(String),
}

/// Opens (creating if needed) the database at `path` and brings its schema up to date.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|err| StoreError::Folder { path: dir.to_path_buf(), err })?;
    }
    let open_err = |err| StoreError::Open { path: path.to_path_buf(), err };
    let mut conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(open_err)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
    MIGRATIONS.to_latest(&mut conn).map_err(|err| StoreError::Migrate { path: path.to_path_buf(), err })?;
    Ok(conn)
}

/// Opens the log at `path` read-only, without migrations (it is not changed), for one thread.
/// Reads in WAL mode do not wait for soakd's writer; the rare busy moment (the WAL being reset
/// or recovered) is waited out for up to 10 s instead of failing the read.
pub fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    use rusqlite::OpenFlags;
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

/// Opens an existing log (for a report or a digest), failing if there is none. Its schema is
/// brought up to date first — the queries need the newest columns — so an older log gains the
/// new (empty) columns and tables; nothing else in it changes.
pub fn open_existing(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Open {
            path: path.to_path_buf(),
            err: rusqlite::Error::InvalidPath(path.to_path_buf()),
        });
    }
    open(path)
}

/// Marks runs and requests left `running`/`in_flight` by a soakd process that is gone.
pub fn recover_interrupted(conn: &Connection, path: &Path) -> Result<recover::Recovered, StoreError> {
    recover::run(conn).map_err(|err| StoreError::Query { path: path.to_path_buf(), err })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The steps of SQLite's plan for `sql` with `params` (`EXPLAIN QUERY PLAN`'s detail column):
    /// what the tests that pin a query to its index read.
    pub(crate) fn query_plan(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        explain.query_map(params, |r| r.get(3)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("db");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.len() > 5 && n[..4].chars().all(|c| c.is_ascii_digit()) && n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATION_FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(files, listed);
        MIGRATIONS.validate().expect("migrations apply to an empty database");
    }

    #[test]
    fn open_sets_wal_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/soakd.db");
        let conn = open(&path).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        drop(conn);
        let conn = open(&path).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATION_FILES.len() as i64);
    }

    #[test]
    fn read_only_open_wants_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(open_existing(&dir.path().join("none.db")).is_err());
    }
}
