//! The command line as a user meets it: help, `check` on good and bad files, exit codes.

use crate::common;
use crate::common::{soakd, write_config};

#[test]
fn help_lists_every_command() {
    let (code, out, _) = soakd(&["--help"]);
    assert_eq!(code, 0);
    for cmd in ["run", "once", "check", "sim", "demo"] {
        assert!(out.contains(cmd), "--help lacks {cmd}:\n{out}");
    }
    assert!(out.contains("78"), "exit codes are documented:\n{out}");
}

#[test]
fn check_prints_backends_jobs_and_next_fire_times() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &common::backend("mlx-server", 8080),
        "[[job]]\nname = \"probe\"\ncron = \"0 */5 * * * *\"\nmax_tokens = 16\n",
    );
    let (code, out, err) = soakd(&["check", "--config", config.to_str().unwrap(), "--next", "2"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("mlx-server") && out.contains("the process listening on port 8080"), "{out}");
    assert!(out.contains("probe") && out.contains("0 */5 * * * *"), "{out}");
    assert_eq!(out.matches("      next ").count(), 2, "{out}");
    assert!(out.contains("ok: 1 backends, 1 jobs"), "{out}");
}

#[test]
fn check_reports_every_problem_in_every_file_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("{}api_key_env = \"SOAKD_TEST_SURELY_UNSET_KEY\"\n", common::backend("a", 1234)),
        "[[job]]\nname = \"x\"\ncron = \"bad cron\"\nconcurrency = 0\nbackends = [\"b\"]\n",
    );
    std::fs::write(
        dir.path().join("schedules/other.toml"),
        "[[job]]\nname = \"y\"\ncron = \"@hourly\"\nstreem = true\n",
    )
    .unwrap();
    let (code, out, err) = soakd(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 78, "{out}\n{err}");
    for want in [
        "5 problems found",
        "field `api_key_env`: SOAKD_TEST_SURELY_UNSET_KEY is not set",
        "jobs.toml: job \"x\" (entry 1): field `cron`",
        "jobs.toml: job \"x\" (entry 1): field `concurrency`: must be between 1 and 256, not 0",
        "jobs.toml: job \"x\" (entry 1): field `backends`: no backend named \"b\"",
        "other.toml: job \"y\" (entry 1): field `streem`: unknown field; did you mean `stream`?",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn check_reports_schedule_problems_even_when_the_config_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[backend]]\nname = \"a\"\nkind = \"mlx\"\nurl = \"http://127.0.0.1:1\"\n",
        "[[job]]\nname = \"x\"\n",
    );
    let (code, _, err) = soakd(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("2 problems found"), "{err}");
    assert!(err.contains("field `kind`") && err.contains("job \"x\" (entry 1): field `cron`: missing"), "{err}");
}

#[test]
fn a_missing_config_says_where_it_looked_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let (code, _, err) = soakd(&["check", "--config", missing.to_str().unwrap()]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("no config file at") && err.contains("nope.toml") && err.contains("--config"), "{err}");
}

#[test]
fn broken_toml_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "db = \"x.db\"\n[[backend]\nname = 1\n").unwrap();
    let (code, _, err) = soakd(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("config.toml is not valid TOML") && err.contains("line 2"), "{err}");
}

#[test]
fn once_with_an_unknown_job_lists_the_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &common::backend("a", 1), "[[job]]\nname = \"probe\"\ncron = \"@hourly\"\n");
    let (code, _, err) = soakd(&["once", "nightly", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no job named \"nightly\"") && err.contains("jobs: probe"), "{err}");
}

#[test]
fn once_against_a_dead_port_records_failures_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = write_config(
        dir.path(),
        &common::backend("gone", port),
        "[[job]]\nname = \"probe\"\ncron = \"@hourly\"\nrequests = 3\n",
    );
    let (code, out, err) = soakd(&["once", "probe", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("connect_refused ×3"), "{out}");
    let db = common::db(dir.path());
    assert_eq!(common::one::<i64>(&db, "SELECT count(*) FROM requests WHERE outcome = 'connect_refused'"), 3);
    assert_eq!(common::one::<String>(&db, "SELECT status FROM runs"), "completed");
    assert_eq!(common::one::<i64>(&db, "SELECT count(*) FROM events WHERE kind = 'process_missing'"), 1);
}

/// Runs soakd with a time limit: a command that wrongly starts (a daemon) must not hang the test.
fn soakd_bounded(args: &[&str], limit: std::time::Duration) -> (i32, String, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(common::SOAKD)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("soakd runs");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            panic!("soakd {args:?} was still running after {limit:?}: it accepted what check rejects");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut out).ok();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    (status.code().unwrap_or(-1), out, err)
}

/// What `check` rejects, nothing else accepts: every command exits 78 with a bounded message
/// naming the field, before it creates the database or contacts a server.
#[test]
fn every_command_refuses_what_check_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("schedules")).unwrap();
    std::fs::write(root.join("schedules/jobs.toml"), "[[job]]\nname = \"probe\"\ncron = \"@hourly\"\nrequests = 1\n")
        .unwrap();
    std::fs::write(root.join("plain"), "a file, not a folder").unwrap();
    std::fs::create_dir_all(root.join("a-folder")).unwrap();
    let backend = common::backend("a", common::free_port());
    let smtp = |auth: &str, port: u16| {
        format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n{auth}"
        )
    };
    let user = "username = \"u\"\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("unset key", format!("{backend}api_key_env = \"SOAKD_TEST_SURELY_UNSET_KEY\"\n"), "api_key_env"),
        (
            "password env unset",
            format!("{backend}{}", smtp(&format!("{user}password_env = \"SOAKD_TEST_SURELY_UNSET_PW\"\n"), 2525)),
            "password_env",
        ),
        (
            "password file missing",
            format!("{backend}{}", smtp(&format!("{user}password_file = \"no-such-file\"\n"), 2525)),
            "password_file",
        ),
        (
            "password file a folder",
            format!("{backend}{}", smtp(&format!("{user}password_file = \"a-folder\"\n"), 2525)),
            "password_file",
        ),
        ("smtp port 0", format!("{backend}{}", smtp("", 0)), "port"),
        ("log a folder", format!("{backend}log = \"a-folder\"\n"), "log"),
        ("db under a file", format!("db = \"plain/soakd.db\"\n{backend}"), "db"),
        ("log dir under a file", format!("{backend}[log]\ndir = \"plain/logs\"\n"), "dir"),
        ("a 50 MB line", format!("name = \"{}\" oops\n{backend}", "x".repeat(50 << 20)), "line 1"),
    ];
    let config = root.join("config.toml");
    let c = config.to_str().unwrap();
    let home = root.join("home");
    let commands: [Vec<&str>; 5] = [
        vec!["check", "--config", c],
        vec!["once", "probe", "--config", c],
        vec!["run", "--config", c],
        vec!["install", "--no-load", "--home", home.to_str().unwrap(), "--config", c],
        vec!["digest", "--send", "--config", c],
    ];
    for (case, text, field) in &cases {
        std::fs::write(&config, text).unwrap();
        for args in &commands {
            let (code, out, err) = soakd_bounded(args, std::time::Duration::from_secs(20));
            let shown = &err[..err.len().min(2_000)];
            assert_eq!(code, 78, "{case}: soakd {} exits 78:\n{out}\n{shown}", args[0]);
            assert!(err.len() < 4_000, "{case}: soakd {}: a bounded message, not {} bytes", args[0], err.len());
            assert!(err.contains(field), "{case}: soakd {} names {field}:\n{shown}", args[0]);
            assert!(!err.contains("panicked"), "{case}: {shown}");
            assert!(!root.join("soakd.db").exists(), "{case}: soakd {} created the database", args[0]);
        }
    }
}

/// A config with no backend has nothing to soak: `check` says so, as `run` does.
#[test]
fn a_config_without_backends_is_refused_by_check_as_by_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", "");
    for cmd in ["check", "run"] {
        let (code, out, err) = soakd(&[cmd, "--config", config.to_str().unwrap()]);
        assert_eq!(code, 78, "{cmd}: {out}\n{err}");
        assert!(err.contains("no [[backend]] entries"), "{cmd}: {err}");
    }
}

/// `soakd init`: finds a running server, writes a config with it and the shipped schedules, checks
/// them (exit 0), never overwrites without --force, and says what to run next.
#[test]
fn init_writes_a_checked_config_for_the_servers_it_finds() {
    let dir = tempfile::tempdir().unwrap();
    let sim = common::start_sim(&["--ttft-ms", "5"], dir.path());
    let config = dir.path().join("conf").join("config.toml");
    let c = config.to_str().unwrap();
    let port = sim.port.to_string();
    let (code, out, err) = soakd(&["--config", c, "init", "--port", &port, "--timeout-ms", "500"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    let schedules: Vec<_> = std::fs::read_dir(dir.path().join("conf/schedules")).unwrap().collect();
    assert_eq!(schedules.len(), 7, "the shipped schedules are copied beside it");
    assert!(out.contains("jobs ("), "check ran: {out}");
    assert!(err.contains("soakd --config") && err.contains("once probe") && err.contains("install"), "{err}");
    // Never over an existing config without --force.
    std::fs::write(&config, format!("{text}\n# mine\n")).unwrap();
    let (code, _, err) = soakd(&["--config", c, "init", "--port", &port, "--timeout-ms", "500"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("exists") && err.contains("--force"), "{err}");
    assert!(std::fs::read_to_string(&config).unwrap().ends_with("# mine\n"), "left as it was");
    let (code, out, err) = soakd(&["--config", c, "init", "--force", "--port", &port, "--timeout-ms", "500"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!std::fs::read_to_string(&config).unwrap().contains("# mine"));
    let (code, out, err) = soakd(&["--config", c, "check"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // The next command init names works, and the log records the machine it ran on.
    let (code, out, err) = soakd(&["--config", c, "once", "probe"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let conn = rusqlite::Connection::open(dir.path().join("conf/soakd.db")).unwrap();
    let (hosts, name, version): (i64, String, String) = conn
        .query_row("SELECT count(*), max(hostname), max(soakd_version) FROM host", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((hosts, version.as_str()), (1, env!("CARGO_PKG_VERSION")));
    assert!(!name.is_empty());
    let first_last: (i64, i64) =
        conn.query_row("SELECT first_seen_at, last_seen_at FROM host", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert!(first_last.1 >= first_last.0, "{first_last:?}");
    let (code, out, err) = soakd(&["--config", c, "status"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("machine") && out.contains(&name), "{out}");
}
