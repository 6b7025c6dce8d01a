//! Saving a report's findings: each is marked `new` or `ongoing` against the previous saved
//! report, and what that report found but this one does not is saved as `resolved`.

use crate::measure::FindingKind;
use rusqlite::{Connection, params};
use serde::Serialize;
use std::collections::HashSet;

/// Something the analysis concluded (built by `report::findings`), kept in the `findings` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub backend: Option<String>,
    pub key: String,
    pub verdict: String,
    /// `new`, `ongoing` or `resolved`, against the previous saved report; `new` until saved.
    pub status: String,
    pub summary: String,
    pub numbers: serde_json::Value,
    pub evidence: Option<String>,
}

/// Saves `findings` (setting their status) and returns the resolved ones, all in one transaction.
pub fn save(
    conn: &mut Connection,
    report_at: i64,
    window: (i64, i64),
    findings: &mut [Finding],
) -> rusqlite::Result<Vec<Finding>> {
    let tx = conn.transaction()?;
    let previous = open_in(&tx, "(SELECT max(report_at) FROM findings WHERE report_at < ?1)", report_at)?;
    let previous: Vec<Finding> = previous
        .into_iter()
        .map(|f| Finding { status: "resolved".into(), summary: format!("resolved: {}", f.summary), ..f })
        .collect();
    let identity = |f: &Finding| (f.kind, f.backend.clone(), f.key.clone());
    let before: HashSet<_> = previous.iter().map(identity).collect();
    for f in findings.iter_mut() {
        f.status = if before.contains(&identity(f)) { "ongoing" } else { "new" }.into();
    }
    let now: HashSet<_> = findings.iter().map(identity).collect();
    let resolved: Vec<Finding> = previous.into_iter().filter(|p| !now.contains(&identity(p))).collect();
    {
        let mut insert = tx.prepare(
            "INSERT INTO findings (report_at, window_from, window_to, kind, backend, key, verdict, status, summary, numbers, evidence)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for f in findings.iter().chain(resolved.iter()) {
            insert.execute(params![
                report_at,
                window.0,
                window.1,
                f.kind,
                f.backend,
                f.key,
                f.verdict,
                f.status,
                f.summary,
                f.numbers.to_string(),
                f.evidence
            ])?;
        }
    }
    tx.commit()?;
    Ok(resolved)
}

/// The findings a report saved at `at` that were not resolved then (what the next digest
/// compares against).
pub fn open_at(conn: &Connection, at: i64) -> rusqlite::Result<Vec<Finding>> {
    open_in(conn, "?1", at)
}

/// The unresolved findings of the report saved at `report_at` (an SQL expression of `?1`).
fn open_in(conn: &Connection, report_at: &str, at: i64) -> rusqlite::Result<Vec<Finding>> {
    conn.prepare(&format!(
        "SELECT kind, backend, key, verdict, status, summary, numbers, evidence FROM findings
         WHERE report_at = {report_at} AND status <> 'resolved' ORDER BY id"
    ))?
    .query_map([at], |r| {
        Ok(Finding {
            kind: FindingKind::read(&r.get::<_, String>(0)?),
            backend: r.get(1)?,
            key: r.get(2)?,
            verdict: r.get(3)?,
            status: r.get(4)?,
            summary: r.get(5)?,
            numbers: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
            evidence: r.get(7)?,
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(kind: &'static str, key: &str) -> Finding {
        Finding {
            kind: FindingKind::read(kind),
            backend: Some("b".into()),
            key: key.into(),
            verdict: "v".into(),
            status: "new".into(),
            summary: format!("{kind} {key}"),
            numbers: serde_json::json!({"x": 1}),
            evidence: Some("SELECT 1".into()),
        }
    }

    #[test]
    fn new_then_ongoing_then_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("f.db")).unwrap();
        let mut first = vec![finding("leak", "memory"), finding("restarts", "process")];
        assert!(save(&mut conn, 1000, (0, 1000), &mut first).unwrap().is_empty());
        assert!(first.iter().all(|f| f.status == "new"));

        let mut second = vec![finding("leak", "memory"), finding("drift", "ttft_p50")];
        let resolved = save(&mut conn, 2000, (1000, 2000), &mut second).unwrap();
        assert_eq!(second[0].status, "ongoing");
        assert_eq!(second[1].status, "new");
        assert_eq!(resolved.len(), 1);
        assert_eq!((resolved[0].kind.as_str(), resolved[0].status.as_str()), ("restarts", "resolved"));
        assert!(resolved[0].summary.starts_with("resolved: "));

        // A resolved finding is not resolved again by the next report.
        let mut third = vec![finding("leak", "memory")];
        let resolved = save(&mut conn, 3000, (2000, 3000), &mut third).unwrap();
        assert_eq!(resolved.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>(), ["drift"]);
        let latest: i64 = conn.query_row("SELECT count(*) FROM latest_findings", [], |r| r.get(0)).unwrap();
        assert_eq!(latest, 2);
    }
}
