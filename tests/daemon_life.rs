//! The daemon as an installed agent runs it: logs go to daily files in the agent's log folder
//! (under a temporary home), a bearer key never reaches a log or the database, and the daemon
//! fires on time with no catch-ups when nothing slept. Light: one `soakd sim`.

use crate::common;
use crate::common::{db, one, start_sim, write_config};
use std::time::Duration;

#[test]
fn an_agent_logs_to_daily_files_and_never_logs_its_key() {
    const SECRET: &str = "sk-soakd-test-secret-4f1c9a";
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(&["--tokens-per-s", "200"], dir.path());
    let config = write_config(
        dir.path(),
        &format!(
            "{}api_key_env = \"SOAKD_TEST_BEARER\"\n[retention]\nraw_days = 30\n",
            common::backend("sim", sim.port)
        ),
        "[[job]]\nname = \"tick\"\ncron = \"* * * * * *\"\nmax_tokens = 4\n",
    );
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let child = std::process::Command::new(common::SOAKD)
        .args(["--log", "trace", "--config", config.to_str().unwrap(), "run"])
        .env("HOME", &home)
        .env("SOAKD_AGENT", "launchd")
        .env("SOAKD_TEST_BEARER", SECRET)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("soakd is running"), "under launchd the log goes to files, not stderr: {stderr}");

    let logs = ["Library/Logs/soakd", ".local/state/soakd/logs"].map(|d| home.join(d));
    let folder = logs.iter().find(|d| d.is_dir()).expect("the agent's log folder");
    let files: Vec<_> = std::fs::read_dir(folder).unwrap().map(|e| e.unwrap().path()).collect();
    let daily: Vec<_> =
        files.iter().filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("soakd.")).collect();
    assert_eq!(daily.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(daily[0]).unwrap();
    assert!(text.contains("soakd is running") && text.contains("stopping"), "{text}");
    assert!(text.contains("TRACE") || text.contains("DEBUG"), "--log trace reaches the file");
    assert!(!text.contains(SECRET), "the key was logged");

    let conn = db(dir.path());
    let ok: i64 = one(&conn, "SELECT count(*) FROM requests WHERE outcome = 'ok'");
    assert!(ok >= 2, "the job fired every second: {ok} ok");
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM events WHERE kind = 'catch_up'"), 0, "nothing slept");
    let dump: String = one(
        &conn,
        "SELECT group_concat(coalesce(detail, ''), ' ') || (SELECT group_concat(coalesce(detail, ''), ' ') FROM events)
         FROM runs",
    );
    assert!(!dump.contains(SECRET), "the key reached the database");
    assert!(!home.join("Library/Logs/soakd/last-start-failure.json").exists());
}

/// A daemon killed with SIGKILL leaves no `daemon_stop`: the next start records `unclean_stop`
/// with the gap and no reboot; a clean stop (SIGTERM) before the third start leaves none.
#[test]
fn a_killed_daemon_is_an_unclean_stop_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(&["--tokens-per-s", "200"], dir.path());
    let config = write_config(
        dir.path(),
        &common::backend("sim", sim.port),
        "[[job]]\nname = \"tick\"\ncron = \"* * * * * *\"\nmax_tokens = 4\n",
    );
    let start = || common::spawn_run(&config);
    let starts = |n: i64| {
        let limit = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < limit {
            if let Ok(conn) = rusqlite::Connection::open(dir.path().join("soakd.db"))
                && conn
                    .query_row("SELECT count(*) FROM events WHERE kind = 'daemon_start'", [], |r| r.get::<_, i64>(0))
                    .is_ok_and(|c| c >= n)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the daemon did not start {n} times");
    };
    let mut first = start();
    starts(1);
    std::thread::sleep(Duration::from_secs(2));
    first.kill().unwrap();
    first.wait().unwrap();
    let second = start();
    starts(2);
    common::stop(second);
    let third = start();
    starts(3);
    common::stop(third);

    let conn = db(dir.path());
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM events WHERE kind = 'unclean_stop'"), 1, "only after the kill");
    let (pid, gap, rebooted): (i64, i64, i64) = conn
        .query_row(
            "SELECT json_extract(detail, '$.previous_pid'), json_extract(detail, '$.gap_s'),
                    json_extract(detail, '$.rebooted') FROM events WHERE kind = 'unclean_stop'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(pid, i64::from(first.id()), "the killed daemon's pid");
    assert!((0..30).contains(&gap), "gap {gap} s");
    assert_eq!(rebooted, 0, "the machine did not reboot");
}

/// Someone holds the database's write lock for 6 s (a `sqlite3` session, a backup) while the
/// daemon fires every second: no run starts more than a second late, none is skipped, every row
/// lands after the lock is released, and the wait is recorded as a `db_stall`.
#[test]
fn a_foreign_write_lock_delays_no_firing_and_loses_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(&["--tokens-per-s", "500"], dir.path());
    let config = write_config(
        dir.path(),
        &common::backend("sim", sim.port),
        "[[job]]\nname = \"tick\"\ncron = \"* * * * * *\"\nrequests = 2\nmax_tokens = 4\n",
    );
    let child = common::spawn_run(&config);
    std::thread::sleep(Duration::from_secs(3));
    let lock = rusqlite::Connection::open(dir.path().join("soakd.db")).unwrap();
    lock.busy_timeout(Duration::from_secs(10)).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE; INSERT INTO events (kind, at) VALUES ('foreign_lock', 0);").unwrap();
    let locked_at = soakd::time::now_ms();
    std::thread::sleep(Duration::from_secs(6));
    lock.execute_batch("COMMIT").unwrap();
    let released_at = soakd::time::now_ms();
    std::thread::sleep(Duration::from_secs(2));
    common::stop(child);

    let conn = db(dir.path());
    let during: i64 = conn
        .query_row(
            "SELECT count(*) FROM runs WHERE planned_at >= ?1 AND planned_at < ?2",
            [locked_at, released_at],
            |r| r.get(0),
        )
        .unwrap();
    assert!(during >= 5, "the firings during the lock were recorded: {during}");
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM runs WHERE status = 'skipped'"), 0, "none skipped");
    let late: i64 = one(&conn, "SELECT max(started_at - planned_at) FROM runs");
    assert!(late < 1_000, "a run started {late} ms after its fire time");
    let first_late: i64 = one(
        &conn,
        "SELECT max(q.started_at - r.started_at) FROM requests q JOIN runs r ON r.id = q.run_id WHERE q.seq = 0",
    );
    assert!(first_late < 1_000, "a first request started {first_late} ms into its run");
    let missing: i64 = one(&conn, "SELECT count(*) FROM runs WHERE status = 'completed' AND requests_done <> 2");
    assert_eq!(missing, 0);
    // Completed runs only: the stop may land inside a run, which is then `cancelled` with its
    // first request done.
    let rows: i64 = one(
        &conn,
        "SELECT count(*) FROM requests q JOIN runs r ON r.id = q.run_id
         WHERE r.status = 'completed' AND q.outcome = 'ok'",
    );
    let runs: i64 = one(&conn, "SELECT count(*) FROM runs WHERE status = 'completed'");
    assert_eq!(rows, 2 * runs, "every request of every completed run is recorded");
    let unfinished: i64 = one(&conn, "SELECT count(*) FROM runs WHERE status NOT IN ('completed', 'cancelled')");
    assert_eq!(unfinished, 0, "only the run the stop landed in is not completed");
    let stall: i64 = one(&conn, "SELECT max(json_extract(detail, '$.ms')) FROM events WHERE kind = 'db_stall'");
    assert!(stall >= 4_000, "the wait is a db_stall event: {stall} ms");
}

/// Runs `soakd run` for `secs` with two sims and two jobs firing at the same second, one at each;
/// returns the database's connection.
fn two_jobs_at_once(dir: &std::path::Path, secs: u64, job_extra: &str) -> rusqlite::Connection {
    let a = start_sim(&["--ttft-ms", "150", "--tokens-per-s", "100"], dir);
    let b = start_sim(&["--ttft-ms", "150", "--tokens-per-s", "100"], dir);
    let config = write_config(
        dir,
        &format!("{}{}", common::backend("a", a.port), common::backend("b", b.port)),
        &format!(
            "[[job]]\nname = \"ja\"\ncron = \"*/2 * * * * *\"\nbackends = [\"a\"]\nrequests = 3\nmax_tokens = 8\n{job_extra}\
             [[job]]\nname = \"jb\"\ncron = \"*/2 * * * * *\"\nbackends = [\"b\"]\nrequests = 3\nmax_tokens = 8\n{job_extra}"
        ),
    );
    let child = common::spawn_run(&config);
    std::thread::sleep(Duration::from_secs(secs));
    common::stop(child);
    db(dir)
}

/// Pairs of requests at different backends whose times overlapped.
fn overlaps(conn: &rusqlite::Connection) -> i64 {
    one(
        conn,
        "SELECT count(*) FROM requests x JOIN requests y ON x.backend < y.backend
         WHERE x.started_at < y.started_at + y.e2e_ms AND y.started_at < x.started_at + x.e2e_ms",
    )
}

/// By default two jobs firing at the same second at two backends take turns: no request of one
/// is in flight while one of the other is, and every request records 0 others in flight.
/// With `exclusive = false` they overlap, say so in `machine_in_flight`, and the report leaves
/// the contended requests out of its latency figures (and counts them).
#[test]
fn backends_are_measured_one_at_a_time_unless_a_job_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let conn = two_jobs_at_once(dir.path(), 7, "");
    let per_backend: Vec<i64> = ["a", "b"]
        .iter()
        .map(|b| one(&conn, &format!("SELECT count(*) FROM requests WHERE backend = '{b}' AND outcome = 'ok'")))
        .collect();
    assert!(per_backend.iter().all(|n| *n >= 6), "both backends were measured: {per_backend:?}");
    assert_eq!(overlaps(&conn), 0, "requests at two backends were in flight together");
    assert_eq!(one::<i64>(&conn, "SELECT max(machine_in_flight) FROM requests"), 0);

    let dir = tempfile::tempdir().unwrap();
    let conn = two_jobs_at_once(dir.path(), 7, "exclusive = false\n");
    assert!(overlaps(&conn) > 0, "exclusive = false lets them overlap");
    let contended: i64 = one(&conn, "SELECT count(*) FROM requests WHERE machine_in_flight > 0");
    assert!(contended > 0);
    let config = dir.path().join("config.toml");
    let report = |extra: &[&str]| {
        let mut args = vec!["report", "--config", config.to_str().unwrap(), "--format", "json", "--no-save"];
        args.extend(extra);
        let (code, out, err) = common::soakd(&args);
        assert_eq!(code, 0, "{err}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        r["backends"].as_array().unwrap().iter().map(|b| b["contended_left_out"].as_i64().unwrap()).sum::<i64>()
    };
    assert_eq!(report(&[]), contended, "the report counts what it left out");
    assert_eq!(report(&["--include-contended"]), 0);
}

/// A `soakd once` beside the running daemon, on the same log, takes its turn too: its runs at
/// one backend never overlap the daemon's at another.
#[test]
fn a_once_beside_the_daemon_waits_for_the_machine() {
    let dir = tempfile::tempdir().unwrap();
    let a = start_sim(&["--ttft-ms", "150", "--tokens-per-s", "100"], dir.path());
    let b = start_sim(&["--ttft-ms", "150", "--tokens-per-s", "100"], dir.path());
    let config = write_config(
        dir.path(),
        &format!("{}{}", common::backend("a", a.port), common::backend("b", b.port)),
        "[[job]]\nname = \"ja\"\ncron = \"*/2 * * * * *\"\nbackends = [\"a\"]\nrequests = 3\nmax_tokens = 8\n\
         [[job]]\nname = \"jb\"\ncron = \"@hourly\"\nbackends = [\"b\"]\nrequests = 3\nmax_tokens = 8\nmax_wait_s = 20\n",
    );
    let c = config.to_str().unwrap();
    let child = common::spawn_run(&config);
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..3 {
        let (code, out, err) = common::soakd(&["once", "jb", "--config", c]);
        assert_eq!(code, 0, "{out}\n{err}");
        std::thread::sleep(Duration::from_millis(700));
    }
    common::stop(child);
    let conn = db(dir.path());
    assert_eq!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE backend = 'b' AND outcome = 'ok'"), 9);
    assert!(one::<i64>(&conn, "SELECT count(*) FROM requests WHERE backend = 'a' AND outcome = 'ok'") >= 3);
    assert_eq!(overlaps(&conn), 0, "a request of `once` was in flight with one of the daemon's");
}
