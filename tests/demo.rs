//! `soakd demo`, the README's first command: it needs no LLM server and must end with the
//! comparison table and a database a user can query.

use crate::common;
use crate::common::one;

#[test]
fn demo_soaks_two_simulated_backends_and_prints_the_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let (code, out, err) = common::soakd(&["demo", "--seconds", "12", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    for want in [
        "lmstudio-sim",
        "mlx-direct-sim",
        "Time to first token",
        "Reliability",
        "findings:",
        "sqlite3 ",
        "soakd report --db",
    ] {
        assert!(out.contains(want), "{want} missing from:\n{out}");
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    for backend in ["lmstudio-sim", "mlx-direct-sim"] {
        let n: i64 = one(&conn, &format!("SELECT count(*) FROM requests WHERE backend = '{backend}'"));
        assert!(n >= 2, "{backend}: {n} requests");
        let samples: i64 =
            one(&conn, &format!("SELECT count(*) FROM memory_samples WHERE backend = '{backend}' AND rss_bytes > 0"));
        assert!(samples >= 2, "{backend}: {samples} memory samples");
    }
    assert_eq!(
        one::<i64>(
            &conn,
            "SELECT count(*) FROM requests WHERE backend = 'mlx-direct-sim' AND outcome NOT IN ('ok', 'cancelled')"
        ),
        0
    );
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE outcome = 'in_flight'"), 0);
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM runs WHERE trigger <> 'demo' OR status = 'running'"), 0);
    // Its digest, beside the database: a mail with the charts.
    let eml = std::fs::read_to_string(dir.path().join("demo.eml")).expect("the demo writes demo.eml");
    assert!(eml.contains("Subject: ") && eml.contains("multipart/alternative") && eml.contains("image/png"));
    assert!(out.contains("demo.eml"), "{out}");
}
