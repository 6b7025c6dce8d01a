//! What changed since the previous digest: findings that are new, that were resolved, and
//! regressions (a failure rate that rose, a leak that got faster, a metric that drifted worse). The
//! previous digest's findings are those saved when it was made (`findings.report_at` equals the
//! digest's `outbox.created_at`); in the first digest every finding is new.

use crate::measure::FindingKind;
use crate::report::model::Finding;
use rusqlite::Connection;
use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// When the previous digest was made (None: this is the first).
    pub previous_at: Option<i64>,
    pub new: Vec<Finding>,
    pub resolved: Vec<Finding>,
    pub ongoing: usize,
    /// One sentence each.
    pub regressions: Vec<String>,
}

impl Changes {
    /// Renames backends (a fleet digest's `backend @ host`): in the findings, and at the start
    /// of the regression sentences, which begin with the backend's name.
    pub fn rename(&mut self, names: &std::collections::BTreeMap<String, String>) {
        for f in self.new.iter_mut().chain(self.resolved.iter_mut()) {
            if let Some(new) = f.backend.as_ref().and_then(|b| names.get(b)) {
                f.backend = Some(new.clone());
            }
        }
        for sentence in &mut self.regressions {
            if let Some((old, new)) = names.iter().find(|(old, _)| sentence.starts_with(&format!("{old}:"))) {
                *sentence = format!("{new}{}", &sentence[old.len()..]);
            }
        }
    }

    /// Adds another log's changes (a fleet digest): the earliest previous digest, all findings.
    pub fn absorb(&mut self, other: Changes) {
        self.previous_at = match (self.previous_at, other.previous_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.new.extend(other.new);
        self.resolved.extend(other.resolved);
        self.ongoing += other.ongoing;
        self.regressions.extend(other.regressions);
    }
}

type Identity = (String, Option<String>, String);

fn identity(f: &Finding) -> Identity {
    (f.kind.to_string(), f.backend.clone(), f.key.clone())
}

pub fn since_previous_digest(conn: &Connection, current: &[Finding]) -> rusqlite::Result<Changes> {
    let previous_at = crate::store::outbox::last_digest(conn)?.map(|(_, created)| created);
    let before: Vec<Finding> = match previous_at {
        Some(at) => crate::store::findings::open_at(conn, at)?,
        None => Vec::new(),
    };
    let by_id: HashMap<Identity, &Finding> = before.iter().map(|f| (identity(f), f)).collect();
    let mut changes = Changes { previous_at, ..Changes::default() };
    for f in current {
        match by_id.get(&identity(f)) {
            None => changes.new.push(f.clone()),
            Some(old) => {
                changes.ongoing += 1;
                if let Some(r) = regression(old, f) {
                    changes.regressions.push(r);
                }
            }
        }
        if f.kind == FindingKind::Drift && f.verdict == "worse" {
            changes.regressions.push(f.summary.clone());
        }
    }
    let now: std::collections::HashSet<Identity> = current.iter().map(identity).collect();
    changes.resolved = before.into_iter().filter(|f| !now.contains(&identity(f))).collect();
    changes.regressions.dedup();
    Ok(changes)
}

/// A failure rate that rose by at least a percentage point, or a leak that got faster.
fn regression(old: &Finding, new: &Finding) -> Option<String> {
    let backend = new.backend.as_deref().unwrap_or("-");
    match new.kind {
        FindingKind::FailureRate => {
            let rate = |f: &Finding| {
                let n = f.numbers.get("requests")?.as_f64()?;
                let k = f.numbers.get("failed")?.as_f64()?;
                (n > 0.0).then_some(100.0 * k / n)
            };
            let (a, b) = (rate(old)?, rate(new)?);
            (b - a >= 1.0).then(|| format!("{backend}: failures rose from {a:.1} % to {b:.1} %"))
        }
        FindingKind::Leak => {
            let slope = |f: &Finding| f.numbers.get("mb_per_hour")?.as_f64();
            let (a, b) = (slope(old)?, slope(new)?);
            (b > a * 1.5 && b - a >= 1.0).then(|| format!("{backend}: memory growth rose from {a:.1} to {b:.1} MB/h"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn finding(kind: &'static str, key: &str, numbers: serde_json::Value) -> Finding {
        Finding {
            kind: FindingKind::read(kind),
            backend: Some("b".into()),
            key: key.into(),
            verdict: "v".into(),
            status: "new".into(),
            summary: format!("{kind} {key}"),
            numbers,
            evidence: None,
        }
    }

    #[test]
    fn new_resolved_and_regressions_against_the_previous_digest() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("c.db")).unwrap();
        // The previous digest, made at t = 5000, and the findings saved with it.
        let mut before = vec![
            finding("failure_rate", "all", json!({"requests": 100, "failed": 2})),
            finding("restarts", "process", json!({})),
        ];
        crate::store::findings::save(&mut conn, 5_000, (0, 5_000), &mut before).unwrap();
        let mail = crate::store::outbox::NewMail {
            kind: "digest",
            window: Some((0, 5_000)),
            subject: "s".into(),
            envelope_from: "a@b.c".into(),
            envelope_to: vec![],
            message_id: "<m@soakd>".into(),
            message: vec![],
        };
        crate::store::outbox::enqueue(&conn, &mail, 5_000).unwrap();
        // A report saved in between does not change what "since the previous digest" means.
        let mut between = vec![finding("leak", "memory", json!({}))];
        crate::store::findings::save(&mut conn, 7_000, (5_000, 7_000), &mut between).unwrap();

        let now = vec![
            finding("failure_rate", "all", json!({"requests": 100, "failed": 9})),
            finding("leak", "memory", json!({"mb_per_hour": 12.0})),
        ];
        let c = since_previous_digest(&conn, &now).unwrap();
        assert_eq!(c.previous_at, Some(5_000));
        assert_eq!(c.new.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>(), ["leak"]);
        assert_eq!(c.resolved.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>(), ["restarts"]);
        assert_eq!(c.ongoing, 1);
        assert_eq!(c.regressions, ["b: failures rose from 2.0 % to 9.0 %"]);
    }

    #[test]
    fn the_first_digest_finds_everything_new() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("c.db")).unwrap();
        let c = since_previous_digest(&conn, &[finding("restarts", "process", json!({}))]).unwrap();
        assert_eq!((c.previous_at, c.new.len(), c.resolved.len()), (None, 1, 0));
    }
}
