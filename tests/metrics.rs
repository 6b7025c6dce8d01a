//! `/metrics` scraped by a real Prometheus (Debian's package, unpacked by scripts/test-deps):
//! the request counter equals the log's rows, a TTFT quantile from the buckets lands within one
//! bucket of the report's p95, `promtool check metrics` is clean, every panel of
//! dashboards/soakd.json returns data, and a listen address off loopback needs a token (exit 78).

use crate::common::{self, db, free_port, http_get, one, start_sim, write_config};
use chrono::{Local, Timelike};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn tool(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| Some(common::cache_dir().join("prometheus").join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| panic!("{var} is not set and {name} is not in the test cache: run `scripts/test` (it unpacks Debian's prometheus package)"))
}

/// A Prometheus on 127.0.0.1 scraping `target` every second.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(dir: &Path, target: u16) -> Prometheus {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: soakd\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(tool("SOAKD_TEST_PROMETHEUS", "prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let p = Prometheus { child, port };
        let start = Instant::now();
        while http_get(port, "/-/ready").is_none_or(|(code, _)| code != 200) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "Prometheus was not ready in 30 s:\n{}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// An instant query's result vector; panics when Prometheus rejects the expression.
    fn query(&self, expr: &str) -> Vec<Value> {
        let q: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let (code, body) = http_get(self.port, &format!("/api/v1/query?query={q}")).expect("Prometheus answers");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!((code, v["status"].as_str()), (200, Some("success")), "{expr}: {body}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    fn scalar(&self, expr: &str) -> Option<f64> {
        self.query(expr).first().and_then(|r| r["value"][1].as_str()).and_then(|s| s.parse().ok())
    }

    /// Waits (up to `limit`) until `expr` has a value `ok` accepts; returns the last value.
    fn until(&self, expr: &str, limit: Duration, ok: impl Fn(f64) -> bool) -> Option<f64> {
        let start = Instant::now();
        loop {
            let v = self.scalar(expr);
            if v.is_some_and(&ok) || start.elapsed() > limit {
                return v;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Six firings, one a second from a few seconds from now, all in one minute (so no more come).
fn six_firings_soon() -> String {
    let mut now = Local::now();
    if now.second() > 48 {
        std::thread::sleep(Duration::from_secs(u64::from(61 - now.second())));
        now = Local::now();
    }
    let s = now.second() + 4;
    format!("{}-{} {} {} * * *", s, s + 5, now.minute(), now.hour())
}

/// The index of the bucket (upper bound) `seconds` falls in.
fn bucket_of(seconds: f64) -> usize {
    soakd::metrics::SECONDS_BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(soakd::metrics::SECONDS_BUCKETS.len())
}

#[test]
fn prometheus_scrapes_the_daemon_and_the_dashboard_returns_data() {
    let _heavy = common::heavy();
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(
        &["--tokens-per-s", "400", "--ttft-ms", "30", "--jitter", "0.5", "--fault", "http503=0.15", "--seed", "7"],
        dir.path(),
    );
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            "{}process = {{ port = {} }}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\nanalysis_every_s = 10\n",
            common::backend("sim", sim.port),
            sim.port
        ),
        &format!(
            "[[job]]\nname = \"burst\"\ncron = \"{}\"\nrequests = 5\nconcurrency = 2\nmax_tokens = 12\n",
            six_firings_soon()
        ),
    );
    let daemon = common::spawn_run(&config);
    let prometheus = Prometheus::start(dir.path(), port);

    // All six runs done, then at least two scrapes after them.
    let start = Instant::now();
    loop {
        let done = rusqlite::Connection::open(dir.path().join("soakd.db"))
            .and_then(|c| {
                c.query_row("SELECT count(*) FROM runs WHERE status = 'completed'", [], |r| r.get::<_, i64>(0))
            })
            .unwrap_or(0);
        if done >= 6 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the six runs did not finish in 60 s ({done} did)");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(2500));
    let conn = db(dir.path());
    let rows: i64 = one(&conn, "SELECT count(*) FROM requests WHERE outcome <> 'in_flight'");
    let failed: i64 = one(&conn, "SELECT count(*) FROM requests WHERE outcome NOT IN ('ok', 'in_flight')");
    assert_eq!(rows, 30, "six runs of five requests");
    assert!(failed > 0, "the sim's 503s are in the log");
    let scraped = prometheus.until("sum(soakd_requests_total)", Duration::from_secs(10), |v| v == rows as f64);
    assert_eq!(scraped, Some(rows as f64), "sum(soakd_requests_total) against the log's {rows} rows");
    assert_eq!(
        prometheus.scalar(r#"sum(soakd_requests_total{outcome!="ok"})"#),
        Some(failed as f64),
        "the failures by outcome"
    );
    let scrapes = prometheus.scalar(r#"count_over_time(up{job="soakd"}[5m])"#).unwrap();
    assert!(scrapes >= 2.0, "{scrapes} scrapes");

    // The TTFT quantile from the buckets, within one bucket of the report's p95.
    let (code, out, err) = common::soakd(&["--config", config.to_str().unwrap(), "report", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let p95_ms = report["backends"][0]["ttft_ms"]["p95"].as_f64().expect("a TTFT p95");
    let from_buckets = prometheus
        .scalar("histogram_quantile(0.95, sum by (le) (soakd_time_to_first_token_seconds_bucket))")
        .expect("a quantile");
    let (a, b) = (bucket_of(p95_ms / 1000.0), bucket_of(from_buckets));
    assert!(a.abs_diff(b) <= 1, "report p95 {p95_ms} ms (bucket {a}) vs Prometheus {from_buckets} s (bucket {b})");

    // promtool's lint on the exposition as served.
    let (code, text) = http_get(port, "/metrics").expect("/metrics answers");
    assert_eq!(code, 200);
    let mut lint = Command::new(tool("SOAKD_TEST_PROMTOOL", "promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(lint.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let lint = lint.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&lint.stdout), String::from_utf8_lossy(&lint.stderr));
    assert!(lint.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");

    // The verdict gauges come from the analysis (every 10 s here), then every dashboard query.
    let verdict = prometheus.until(r#"soakd_leak_suspected{backend="sim"}"#, Duration::from_secs(25), |_| true);
    assert_eq!(verdict, Some(0.0), "the analysis ran and found no leak in a steady sim");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/soakd.json")).unwrap(),
    )
    .unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$__rate_interval", "1m").replace("$backend", ".*");
            let result = prometheus.query(&expr);
            let numbers: Vec<f64> = result.iter().filter_map(|r| r["value"][1].as_str()?.parse().ok()).collect();
            assert!(
                numbers.iter().any(|v| v.is_finite()),
                "panel \"{}\" query {expr} returned no data: {result:?}",
                panel["title"]
            );
            queries += 1;
        }
    }
    assert_eq!(queries, 13, "every panel's every query ran");
    common::stop(daemon);
}

#[test]
fn off_loopback_without_a_token_is_refused_with_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("{}[metrics]\nlisten = \"0.0.0.0:{}\"\n", common::backend("sim", free_port()), free_port()),
        "[[job]]\nname = \"tick\"\ncron = \"0 0 * * * *\"\n",
    );
    for command in ["check", "run"] {
        let (code, _, err) = common::soakd(&["--config", config.to_str().unwrap(), command]);
        assert_eq!(code, 78, "{command}: {err}");
        assert!(err.contains("[metrics]: field `listen`") && err.contains("bearer_token_env"), "{command}: {err}");
    }
    // With a token from a file others can read: still refused, with the fix.
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken-for-metrics\n").unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let text = std::fs::read_to_string(&config).unwrap() + "bearer_token_file = \"token\"\n";
    std::fs::write(&config, text).unwrap();
    let (code, _, err) = common::soakd(&["--config", config.to_str().unwrap(), "check"]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("field `bearer_token_file`") && err.contains("chmod 600"), "{err}");
    assert!(!err.contains("t0ken-for-metrics"), "the token is never printed: {err}");
}
