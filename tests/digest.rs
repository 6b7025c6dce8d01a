//! `soakd digest` end to end: the text part against a committed snapshot of a fixed synthetic
//! log, model and server text escaped in the HTML part, the .eml a mail parser reads with both
//! parts and its charts, and delivery through a real SMTP server (aiosmtpd on 127.0.0.1): once,
//! with AUTH right and wrong, and across an outage, never lost and never twice.

use crate::common;
use mail_parser::MimeHeaders;
use rusqlite::{Connection, params};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOUR: i64 = 3_600_000;
/// 2026-11-20T00:00:00Z: the synthetic log starts here, so the digest is the same every run.
const START: i64 = 1_795_132_800_000;
const SINCE: &str = "2026-11-20T00:00:00Z";
const UNTIL: &str = "2026-11-20T07:00:00Z";

/// Six hours of log: a steady backend, and a leaky one that fails under concurrency 4 with an
/// error holding markup, and restarts once. Written straight into the schema.
fn write_log(path: &Path, start: i64) {
    let conn = schema(path);
    let tx = conn.unchecked_transaction().unwrap();
    for (backend, pid) in [("steady", 100), ("leaky <b>", 200)] {
        tx.execute(
            "INSERT INTO runs (job, backend, trigger, status, planned_at, started_at, finished_at, requests_planned,
                 requests_done, concurrency, delay_ms, stream, max_tokens, backend_kind, base_url, owner_pid, owner_started_at)
             VALUES ('soak', ?1, 'cron', 'completed', ?2, ?2, ?3, 720, 720, 4, 0, 1, 64, 'openai', 'http://127.0.0.1:1', 1, 1)",
            params![backend, start, start + 6 * HOUR],
        )
        .unwrap();
        let run = tx.last_insert_rowid();
        for i in 0..720i64 {
            let at = start + i * 30_000;
            let concurrency = if i % 2 == 0 { 4 } else { 1 };
            let fails = backend != "steady" && concurrency == 4 && i % 3 == 0;
            let server_pid = if backend != "steady" && i >= 360 { pid + 1 } else { pid };
            let (outcome, error, signature) = if fails {
                (
                    "server_reported_crash",
                    Some("HTTP 500: <script>alert(1)</script> The model has crashed. (Exit code: 6)"),
                    Some("HTTP 500: <script>alert(<n>)</script> The model has crashed. (Exit code: <n>)"),
                )
            } else {
                ("ok", None, None)
            };
            let ttft = if backend == "steady" {
                400.0 + (i % 7) as f64
            } else {
                200.0 + (i % 5) as f64 + (i / 120) as f64 * 10.0
            };
            let tps = if backend == "steady" { 14.0 } else { 40.0 };
            tx.execute(
                "INSERT INTO requests (run_id, backend, job, worker, seq, intended_at, started_at, outcome, http_status,
                     stream, concurrency, prompt_name, prompt_chars, max_tokens, gap_ms, server_pid, server_seq,
                     ttft_ms, first_content_ms, e2e_ms, completion_tokens, token_source, decode_tps, output_tps, error, error_signature, output)
                 VALUES (?1, ?2, 'soak', 0, ?3, ?4, ?4, ?5, ?6, 1, ?7, 'p', 400, 64, 30000, ?8, ?9, ?10, ?10, ?11, 64, 'usage', ?12, ?12, ?13, ?14, ?15)",
                params![
                    run,
                    backend,
                    i,
                    at,
                    outcome,
                    if fails { 500 } else { 200 },
                    concurrency,
                    server_pid,
                    (i % 360) + 1,
                    (!fails).then_some(ttft),
                    (!fails).then_some(ttft + 64.0 * 1000.0 / tps),
                    (!fails).then_some(tps),
                    error,
                    signature,
                    (!fails).then_some("<img src=x onerror=alert(1)>"),
                ],
            )
            .unwrap();
        }
        for m in 0..360i64 {
            let at = start + m * 60_000;
            let noise = ((m * 7919) % 11) as f64 * 100_000.0;
            let (pid_now, bytes) = if backend == "steady" {
                (pid, 500e6 + noise)
            } else {
                let life_start = if m >= 180 { 180 } else { 0 };
                (if m >= 180 { pid + 1 } else { pid }, 800e6 + (m - life_start) as f64 * 20e6 / 60.0 + noise)
            };
            tx.execute(
                "INSERT INTO memory_samples (backend, pid, proc_started_at, taken_at, phase, in_flight, processes, rss_bytes,
                     sys_used_bytes, sys_available_bytes, swap_used_bytes)
                 VALUES (?1, ?2, ?3, ?4, 'idle', 0, 1, ?5, 8000000000, 16000000000, 0)",
                params![backend, pid_now, pid_now, at, bytes as i64],
            )
            .unwrap();
        }
    }
    tx.execute(
        "INSERT INTO events (backend, kind, at, detail) VALUES ('leaky <b>', 'restart', ?1, '{\"old_pid\": 200, \"new_pid\": 201}')",
        [start + 3 * HOUR],
    )
    .unwrap();
    tx.commit().unwrap();
}

/// Runs soakd in UTC (the snapshot has local hours in it); returns (code, stdout, stderr).
fn soakd_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(common::SOAKD);
    cmd.args(args).env("TZ", "UTC").env_remove("SOAKD_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("soakd runs");
    let (o, e) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(!e.contains("panicked"), "{e}");
    (out.status.code().unwrap_or(-1), o, e)
}

fn soakd_ok(args: &[&str]) -> String {
    let (code, out, err) = soakd_env(args, &[]);
    assert_eq!(code, 0, "soakd {args:?}:\n{out}\n{err}");
    out
}

/// The log at a fixed time, for output that must not change.
fn fixed_log() -> (tempfile::TempDir, PathBuf) {
    log_from(START)
}

/// The log ending an hour ago, for the digest the daemon would make now.
fn recent_log() -> (tempfile::TempDir, PathBuf) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    log_from(now - 7 * HOUR)
}

fn log_from(start: i64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("soakd.db");
    write_log(&db, start);
    (dir, db)
}

#[test]
fn the_text_digest_matches_its_snapshot() {
    let (_dir, db) = fixed_log();
    let text = soakd_ok(&["digest", "--db", db.to_str().unwrap(), "--print", "--since", SINCE, "--until", UNTIL]);
    let expected_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/digest.txt");
    if std::env::var_os("SOAKD_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&expected_path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_path)
        .expect("tests/fixtures/digest.txt (SOAKD_UPDATE_SNAPSHOTS=1 writes it)");
    assert_eq!(
        text, expected,
        "the text digest changed; if on purpose, rerun with SOAKD_UPDATE_SNAPSHOTS=1 and review the diff"
    );
    assert!(text.contains("leaking") && text.contains("failed"), "{text}");
}

#[test]
fn server_and_model_text_is_escaped_in_the_html_part() {
    let (_dir, db) = fixed_log();
    let html = soakd_ok(&["digest", "--db", db.to_str().unwrap(), "--html", "--since", SINCE, "--until", UNTIL]);
    assert!(html.contains("&lt;script&gt;alert("), "the error example is shown, escaped:\n{html}");
    assert!(html.contains("leaky &lt;b&gt;"), "the backend name is escaped too");
    assert!(!html.contains("<script"), "no raw script tag:\n{html}");
    assert!(!html.contains("<b>") && !html.contains("onerror=alert"), "no raw markup from the log:\n{html}");
    assert!(html.contains("src=\"cid:ttft@soakd\""), "charts are referenced by Content-ID");
}

/// Parses an RFC 5322 message and checks the digest's structure; returns the subject.
fn check_mail(raw: &[u8]) -> String {
    let m = mail_parser::MessageParser::default().parse(raw).expect("a valid MIME message");
    let subject = m.subject().expect("a subject").to_string();
    assert!(m.content_type().is_some_and(|c| c.c_type == "multipart" && c.c_subtype.as_deref() == Some("alternative")));
    let text = m.body_text(0).expect("a text/plain part");
    let html = m.body_html(0).expect("a text/html part");
    assert!(text.contains("== Comparison =="), "{text}");
    assert!(html.contains("<h2>Comparison</h2>"), "{html}");
    let images: Vec<_> = m
        .parts
        .iter()
        .filter(|p| p.content_type().is_some_and(|c| c.c_type == "image" && c.c_subtype.as_deref() == Some("png")))
        .collect();
    assert_eq!(images.len(), 3, "three charts");
    for img in images {
        let cid = img.content_id().expect("an inline image has a Content-ID");
        assert!(html.contains(&format!("cid:{cid}")), "the HTML shows {cid}");
        let png = img.contents();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        assert!(png.len() < 100_000, "{cid} is {} bytes", png.len());
    }
    subject
}

#[test]
fn the_eml_file_is_a_valid_mail_with_both_parts_and_its_charts() {
    let (dir, db) = fixed_log();
    let eml = dir.path().join("digest.eml");
    let (code, _, err) = soakd_env(
        &["digest", "--db", db.to_str().unwrap(), "--out", eml.to_str().unwrap(), "--since", SINCE, "--until", UNTIL],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    if let Some(keep) = std::env::var_os("SOAKD_KEEP_DIGEST") {
        std::fs::copy(&eml, keep).unwrap();
    }
    let subject = check_mail(&std::fs::read(&eml).unwrap());
    assert!(subject.starts_with("soakd: 2 backends · leaky <b> leaking"), "{subject}");
}

#[test]
fn an_empty_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("soakd.db");
    write_empty(&db);
    let text = soakd_ok(&["digest", "--db", db.to_str().unwrap(), "--print"]);
    assert!(text.contains("soakd: no requests since"), "{text}");
    assert!(text.contains("nothing ran"), "{text}");
}

fn write_empty(db: &Path) {
    drop(schema(db));
}

/// A database with every migration in `db/` applied, as soakd leaves it.
fn schema(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("db");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    for f in &files {
        conn.execute_batch(&std::fs::read_to_string(f).unwrap()).unwrap();
    }
    conn.pragma_update(None, "user_version", files.len() as i64).unwrap();
    conn
}

// --- Delivery through a real SMTP server --------------------------------------------------

struct Smtp {
    child: Child,
    maildir: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smtp {
    fn start(port: u16, maildir: &Path, auth: Option<(&str, &str)>) -> Smtp {
        // The test venv's Python (it has aiosmtpd): $SOAKD_TEST_PYTHON, else beside mlx_lm.server.
        let python = std::env::var_os("SOAKD_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| common::deps().mlx_server.parent().unwrap().join("python3"));
        for d in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(d)).unwrap();
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp_server.py");
        let mut cmd = Command::new(&python);
        cmd.arg(script).arg(port.to_string()).arg(maildir);
        if let Some((u, p)) = auth {
            cmd.args([u, p]);
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(|e| {
            panic!("cannot start the SMTP test server with {}: {e} (run scripts/test)", python.display())
        });
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "the SMTP test server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Smtp { child, maildir: maildir.to_path_buf() }
    }

    fn delivered(&self) -> Vec<Vec<u8>> {
        std::fs::read_dir(self.maildir.join("new"))
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect()
    }
}

/// A config with [smtp] to 127.0.0.1:`port`, and the fixed log as its database.
fn mail_setup(port: u16, auth: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (dir, db) = recent_log();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "db = \"soakd.db\"\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"soakd <soakd@example.com>\"\nto = [\"me@example.com\"]\ntimeout_s = 5\n{auth}\n"
        ),
    )
    .unwrap();
    (dir, db, config)
}

fn pending(db: &Path) -> (i64, Option<String>) {
    let conn = Connection::open(db).unwrap();
    conn.query_row("SELECT count(*), max(last_error) FROM outbox WHERE status = 'pending'", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .unwrap()
}

#[test]
fn the_digest_arrives_once() {
    let _guard = common::heavy();
    let port = common::free_port();
    let (dir, db, config) = mail_setup(port, "");
    let server = Smtp::start(port, &dir.path().join("Maildir"), None);
    let c = config.to_str().unwrap();
    let (code, _, err) = soakd_env(&["--config", c, "digest", "--send"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("sent (outbox id 1)"), "{err}");
    let (code, _, err) = soakd_env(&["--config", c, "digest", "--send-queued"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("holds nothing to send"), "{err}");
    let mails = server.delivered();
    assert_eq!(mails.len(), 1, "exactly one mail");
    let subject = check_mail(&mails[0]);
    assert!(subject.contains("leaky <b> leaking"), "{subject}");
    assert_eq!(pending(&db).0, 0);
}

#[test]
fn wrong_credentials_are_a_clear_error_and_the_mail_waits() {
    let _guard = common::heavy();
    let port = common::free_port();
    let (dir, db, config) = mail_setup(port, "username = \"soakd\"\npassword_env = \"SOAKD_TEST_SMTP_PASSWORD\"");
    let server = Smtp::start(port, &dir.path().join("Maildir"), Some(("soakd", "right-one")));
    let c = config.to_str().unwrap();
    let (code, out, err) =
        soakd_env(&["--config", c, "digest", "--send"], &[("SOAKD_TEST_SMTP_PASSWORD", "wrong-one")]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("refused the login as \"soakd\""), "{err}");
    assert!(err.contains("stay in the outbox"), "{err}");
    assert!(!err.contains("wrong-one"), "the password is never shown: {err}");
    let (n, why) = pending(&db);
    assert_eq!(n, 1, "the digest stays in the outbox");
    assert!(why.unwrap_or_default().contains("refused the login"));
    assert!(server.delivered().is_empty());

    let (code, _, err) =
        soakd_env(&["--config", c, "digest", "--send-queued"], &[("SOAKD_TEST_SMTP_PASSWORD", "right-one")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(server.delivered().len(), 1);
    assert_eq!(pending(&db).0, 0);
}

#[test]
fn an_smtp_outage_delays_the_digest_but_never_loses_or_doubles_it() {
    let _guard = common::heavy();
    let port = common::free_port();
    let (dir, db, config) = mail_setup(port, "");
    let c = config.to_str().unwrap();
    let (code, _, err) = soakd_env(&["--config", c, "digest", "--send"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("NOT sent (outbox id 1") && err.contains("stay in the outbox"), "{err}");
    assert_eq!(pending(&db).0, 1);

    let server = Smtp::start(port, &dir.path().join("Maildir"), None);
    let (code, _, err) = soakd_env(&["--config", c, "digest", "--send-queued"], &[]);
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = soakd_env(&["--config", c, "digest", "--send-queued"], &[]);
    assert_eq!(code, 0);
    assert_eq!(server.delivered().len(), 1, "delivered exactly once");
    assert_eq!(pending(&db).0, 0);
    let attempts: i64 =
        Connection::open(&db).unwrap().query_row("SELECT attempts FROM outbox", [], |r| r.get(0)).unwrap();
    assert_eq!(attempts, 2);
}

/// `soakd run` makes the digest on its cron entry in `schedules/` and mails it through the
/// outbox; each digest covers the time since the previous one.
#[test]
fn the_daemon_mails_the_digest_on_its_schedule() {
    let _guard = common::heavy();
    let dir = tempfile::tempdir().unwrap();
    let sim = common::start_sim(&["--ttft-ms", "5", "--tokens-per-s", "500"], dir.path());
    let port = common::free_port();
    let server = Smtp::start(port, &dir.path().join("Maildir"), None);
    let config = common::write_config(
        dir.path(),
        &format!(
            "{}[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"soakd@example.com\"\nto = [\"me@example.com\"]\ntimeout_s = 5\n",
            common::backend("sim", sim.port)
        ),
        "[[job]]\nname = \"tick\"\ncron = \"* * * * * *\"\nmax_tokens = 8\n",
    );
    std::fs::write(dir.path().join("schedules/digest.toml"), "[digest]\ncron = \"*/3 * * * * *\"\n").unwrap();
    let mut child = Command::new(common::SOAKD)
        .args(["run", "--config", config.to_str().unwrap()])
        .env("TZ", "UTC")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while server.delivered().len() < 2 && start.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_millis(250));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let mails = server.delivered();
    assert!(mails.len() >= 2, "two digests within 40 s: {}\n{stderr}", mails.len());
    for raw in &mails {
        let m = mail_parser::MessageParser::default().parse(raw).expect("a valid mail");
        assert!(m.subject().is_some_and(|s| s.starts_with("soakd: 1 backend")), "{:?}", m.subject());
        assert!(m.body_text(0).is_some_and(|t| t.contains("== sim ==")));
    }
    let conn = Connection::open(dir.path().join("soakd.db")).unwrap();
    let windows: Vec<(i64, i64, String)> = conn
        .prepare("SELECT window_from, window_to, status FROM outbox WHERE kind = 'digest' ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for pair in windows.windows(2) {
        assert_eq!(pair[1].0, pair[0].1, "each digest starts where the previous one ended: {windows:?}");
    }
    let sent = windows.iter().filter(|w| w.2 == "sent").count();
    assert_eq!(sent, mails.len(), "every mail the server got is marked sent, and only those");
}

#[cfg(unix)]
#[test]
fn check_shows_the_digest_and_refuses_a_readable_password_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(
        dir.path(),
        &format!(
            "{}[smtp]\nhost = \"smtp.example.com\"\nusername = \"me\"\npassword_file = \"pw\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n",
            common::backend("a", 1234)
        ),
        "",
    );
    std::fs::write(dir.path().join("schedules/digest.toml"), "[digest]\ncron = \"0 30 6 * * *\"\n").unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "hunter2\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = config.to_str().unwrap();
    let (code, out, err) = soakd_env(&["check", "--config", c], &[]);
    assert_eq!(code, 78, "{out}\n{err}");
    assert!(out.contains("digest: to b@example.com via smtp.example.com:587 (starttls)"), "{out}");
    assert!(out.contains("cron 0 30 6 * * *"), "{out}");
    assert!(err.contains("field `password_file`") && err.contains("chmod 600"), "{err}");
    assert!(!out.contains("hunter2") && !err.contains("hunter2"));
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out, err) = soakd_env(&["check", "--config", c], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
}

/// A server that answers 401 with the request's headers in its body (proxies and some servers
/// do): the API key it echoes is nowhere soakd writes or sends — not in the database or its WAL,
/// not in a trace-level log, not in any report format, not in the digest printed or delivered —
/// and neither is the SMTP password.
#[test]
fn an_echoed_key_is_nowhere_soakd_writes_or_sends() {
    const KEY: &str = "sk-echo-5Hq2ZL0pX9wT";
    const PASSWORD: &str = "smtp-Pw-77665544";
    let _guard = common::heavy();
    let llm_port = common::raw_http_server(20, |head| {
        let body = serde_json::json!({"error": "invalid api key", "request_headers": head}).to_string();
        format!(
            "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    });
    let smtp_port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let server = Smtp::start(smtp_port, &dir.path().join("Maildir"), Some(("soakd", PASSWORD)));
    std::fs::create_dir_all(dir.path().join("schedules")).unwrap();
    std::fs::write(
        dir.path().join("schedules/jobs.toml"),
        "[[job]]\nname = \"probe\"\ncron = \"@hourly\"\nrequests = 3\nmax_tokens = 4\n",
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "db = \"soakd.db\"\n[[backend]]\nname = \"echo\"\nkind = \"openai\"\nurl = \"http://127.0.0.1:{llm_port}\"\napi_key_env = \"SOAKD_TEST_ECHO_KEY\"\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\nfrom = \"soakd@example.com\"\nto = [\"me@example.com\"]\n\
             username = \"soakd\"\npassword_env = \"SOAKD_TEST_SMTP_PASSWORD\"\ntimeout_s = 5\n"
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let env = [("SOAKD_TEST_ECHO_KEY", KEY), ("SOAKD_TEST_SMTP_PASSWORD", PASSWORD)];
    let mut printed = Vec::new();
    for args in [
        vec!["--log", "trace", "--config", c, "once", "probe"],
        vec!["--log", "trace", "--config", c, "report", "--since", "1d", "--format", "json"],
        vec!["--config", c, "report", "--since", "1d", "--format", "markdown"],
        vec!["--config", c, "report", "--since", "1d", "--format", "csv"],
        vec!["--config", c, "report", "--since", "1d"],
        vec!["--config", c, "digest", "--print", "--since", "1d"],
        vec!["--config", c, "digest", "--html", "--since", "1d"],
        vec!["--log", "trace", "--config", c, "digest", "--send"],
    ] {
        let (code, out, err) = soakd_env(&args, &env);
        assert_eq!(code, 0, "{args:?}\n{out}\n{err}");
        printed.push((args, out, err));
    }
    let db = Connection::open(dir.path().join("soakd.db")).unwrap();
    let error: String = db.query_row("SELECT error FROM requests LIMIT 1", [], |r| r.get(0)).unwrap();
    assert!(error.contains("HTTP 401") && error.contains("[redacted]"), "the echo was stored, masked: {error}");
    let mails = server.delivered();
    assert_eq!(mails.len(), 1, "the digest was delivered");
    let mail = mail_parser::MessageParser::default().parse(&mails[0]).expect("a MIME message");
    let delivered =
        format!("{}\n{}\n{}", mail.subject().unwrap_or(""), mail.body_text(0).unwrap(), mail.body_html(0).unwrap());
    assert!(delivered.contains("echo"), "the digest is about the backend");
    drop(db);
    let mut stored = std::fs::read(dir.path().join("soakd.db")).unwrap();
    stored.extend(std::fs::read(dir.path().join("soakd.db-wal")).unwrap_or_default());
    let stored = String::from_utf8_lossy(&stored);
    for secret in [KEY, PASSWORD, "5Hq2ZL0pX9wT"] {
        assert!(!stored.contains(secret), "{secret} is in the database or its WAL");
        assert!(!delivered.contains(secret), "{secret} is in the delivered mail");
        assert!(!String::from_utf8_lossy(&mails[0]).contains(secret), "{secret} is in the raw mail");
        for (args, out, err) in &printed {
            assert!(!out.contains(secret) && !err.contains(secret), "{secret} printed by {args:?}");
        }
    }
}
