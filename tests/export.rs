//! `soakd export` on a log with known contents (the one `report` writes): every row and column,
//! as JSON lines and CSV, a window, untrusted text kept as it was, a reader that leaves early,
//! and a log that is only read (an old schema stays old).

use crate::common;
use crate::report::write_log;
use rusqlite::Connection;
use serde_json::Value;
use std::io::Read;
use std::process::{Command, Stdio};

fn export(db: &std::path::Path, extra: &[&str]) -> String {
    let mut args = vec!["export", "--db", db.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, out, err) = common::soakd(&args);
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn every_request_as_a_json_line_with_every_column() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    write_log(&db);
    let conn = Connection::open(&db).unwrap();
    let rows: i64 = common::one(&conn, "SELECT count(*) FROM requests");
    let columns: i64 = common::one(&conn, "SELECT count(*) FROM pragma_table_info('requests')");
    let out = export(&db, &[]);
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("a JSON object per line")).collect();
    assert_eq!(lines.len() as i64, rows);
    assert!(lines.iter().all(|l| l.as_object().unwrap().len() as i64 == columns));
    let ids: Vec<i64> = lines.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first");
    // Server text is exported as it was stored, escaped as JSON, not dropped or mangled.
    let error: String = common::one(&conn, "SELECT error FROM requests WHERE error IS NOT NULL LIMIT 1");
    assert!(lines.iter().any(|l| l["error"] == error.as_str()), "{error}");
    assert!(out.contains("\\u003cscript\\u003e") || out.contains("<script>"));
    assert_eq!(lines[0]["ttft_ms"].as_f64(), Some(400.0));
    // The log was only read: its schema version is what write_log left.
    assert_eq!(common::one::<i64>(&conn, "PRAGMA user_version"), 2);
}

#[test]
fn memory_samples_as_csv_in_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let start = write_log(&db);
    let conn = Connection::open(&db).unwrap();
    let since = chrono::DateTime::from_timestamp_millis(start + 2 * 3_600_000).unwrap().to_rfc3339();
    let until = chrono::DateTime::from_timestamp_millis(start + 3 * 3_600_000).unwrap().to_rfc3339();
    let out = export(&db, &["--table", "memory_samples", "--format", "csv", "--since", &since, "--until", &until]);
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert!(header.iter().any(|h| h == "rss_bytes") && header.iter().any(|h| h == "taken_at"), "{header:?}");
    let at = header.iter().position(|h| h == "taken_at").unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let expected: i64 = common::one(
        &conn,
        &format!(
            "SELECT count(*) FROM memory_samples WHERE taken_at >= {} AND taken_at < {}",
            start + 2 * 3_600_000,
            start + 3 * 3_600_000
        ),
    );
    assert_eq!(records.len() as i64, expected);
    assert_eq!(expected, 2 * 60, "two backends, a sample a minute, for an hour");
    for r in &records {
        let t: i64 = r[at].parse().unwrap();
        assert!((start + 2 * 3_600_000..start + 3 * 3_600_000).contains(&t));
    }
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    write_log(&db);
    let mut child = Command::new(common::SOAKD)
        .args(["export", "--db", db.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.as_mut().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_missing_database_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = common::soakd(&["export", "--db", dir.path().join("none.db").to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("none.db") && err.contains("--db"), "{err}");
    assert!(!dir.path().join("none.db").exists(), "export creates nothing");
}

#[test]
fn until_alone_exports_everything_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let start = write_log(&db);
    let conn = Connection::open(&db).unwrap();
    let cut = start + 3_600_000;
    let until = chrono::DateTime::from_timestamp_millis(cut).unwrap().to_rfc3339();
    let out = export(&db, &["--until", &until]);
    let expected: i64 = common::one(&conn, &format!("SELECT count(*) FROM requests WHERE started_at < {cut}"));
    assert!(expected > 0);
    assert_eq!(out.lines().count() as i64, expected);
}
