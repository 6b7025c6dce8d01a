//! The detectors' validation suite (`cargo bench --bench scenarios [leak|crash|NAME]`, about 25
//! minutes in all): real
//! `soakd sim` processes with known faults, soaked by `soakd once`, then analysed.
//!
//! Crash scenarios go through `soakd report --format json` unchanged. Leak scenarios are time-
//! compressed: a sim leaks K times faster for 90 s with idle samples every ~0.25 s, and the
//! analysis sees the samples' times stretched by K (K = 240: 90 s stand for 6 h, 360 samples
//! for a 1-minute cadence). Theil–Sen and Mann–Kendall depend only on the samples' order,
//! spacing and noise, so this is the same test as a real 6-hour run at the sim's own noise.

use soakd::analysis::leaks::{LeakParams, Lifetime, MemPoint, Verdict, detect_leak};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

use common::{SOAKD, free_port, sim};
const K: f64 = 240.0;
const LEAK_RUN_S: u64 = 90;

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    // A filter picks scenarios by name, or a whole group: `leak` or `crash`.
    let wanted = |group: &str, name: &str| filter.as_deref().is_none_or(|f| f == group || name.contains(f));
    let mut leak_rows = Vec::new();
    for s in leak_scenarios().into_iter().filter(|s| wanted("leak", s.name)) {
        let row = run_leak(&s);
        println!(
            "leak  {:<28} expected {:<18} got {:<18} {:>8} {:>10} {}",
            s.name,
            s.expect.as_str(),
            row.0.as_str(),
            row.1.map_or("-".into(), |v| format!("{v:.2}")),
            row.2.map_or("-".into(), |v| format!("{v:.2}")),
            if row.0 == s.expect { "ok" } else { "MISS" }
        );
        leak_rows.push((s, row));
    }
    let mut crash_rows = Vec::new();
    for s in crash_scenarios().into_iter().filter(|s| wanted("crash", s.name)) {
        let (top, hypothesis) = run_crash(&s);
        let correct = match s.expect_factor {
            Some(f) => top.as_deref().is_some_and(|t| t.starts_with(f)),
            None => top.is_none(),
        };
        println!(
            "crash {:<28} expected {:<18} got {:<30} rapid_sequential={:<15} {}",
            s.name,
            s.expect_factor.unwrap_or("no pattern"),
            top.clone().unwrap_or_else(|| "no pattern".into()),
            hypothesis,
            if correct { "ok" } else { "MISS" }
        );
        crash_rows.push((s, correct));
    }
    if !leak_rows.is_empty() {
        let leaks: Vec<_> = leak_rows.iter().filter(|(s, _)| s.expect == Verdict::Leak).collect();
        let found = leaks.iter().filter(|(_, r)| r.0 == Verdict::Leak).count();
        let clean: Vec<_> = leak_rows.iter().filter(|(s, _)| s.expect != Verdict::Leak).collect();
        let false_alarms = clean.iter().filter(|(_, r)| r.0 == Verdict::Leak).count();
        println!(
            "leak detector: sensitivity {found}/{} leaks ≥ 2 MB/h-equivalent found; false alarms {false_alarms}/{} on backends without a leak",
            leaks.len(),
            clean.len()
        );
    }
    if !crash_rows.is_empty() {
        let right = crash_rows.iter().filter(|(_, c)| *c).count();
        println!("crash patterns: top factor right in {right}/{} scenarios", crash_rows.len());
    }
}

fn config(dir: &Path, port: u16, jobs: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("schedules")).unwrap();
    std::fs::write(dir.join("schedules/jobs.toml"), jobs).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "db = \"soakd.db\"\n[sampler]\nidle_interval_s = 1\nduring_interval_ms = 250\n[[backend]]\nname = \"sim\"\nkind = \"openai\"\nurl = \"http://127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    path
}

fn once(config: &Path, job: &str) -> Child {
    Command::new(SOAKD)
        .args(["once", job, "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

struct LeakScenario {
    name: &'static str,
    /// `soakd sim` flags, with rates already multiplied by K.
    args: Vec<String>,
    expect: Verdict,
    /// Restart the sim half-way through.
    restart: bool,
}

fn leak_scenarios() -> Vec<LeakScenario> {
    let per_hour = |mb: f64| vec!["--grow-per-hour-mb".to_string(), format!("{}", (mb * K).round() as u64)];
    let mut v = vec![
        LeakScenario { name: "flat", args: vec![], expect: Verdict::NoLeak, restart: false },
        LeakScenario { name: "flat, restarted", args: vec![], expect: Verdict::NoLeak, restart: true },
        LeakScenario {
            name: "leak 0.5 MB/h (below threshold)",
            args: per_hour(0.5),
            expect: Verdict::NoLeak,
            restart: false,
        },
        LeakScenario { name: "leak 2 MB/h", args: per_hour(2.0), expect: Verdict::Leak, restart: false },
        LeakScenario { name: "leak 10 MB/h", args: per_hour(10.0), expect: Verdict::Leak, restart: false },
        LeakScenario { name: "leak 10 MB/h, restarted", args: per_hour(10.0), expect: Verdict::Leak, restart: true },
        LeakScenario {
            name: "per request 64 KiB",
            args: vec!["--grow-per-request-kb".into(), "64".into()],
            expect: Verdict::Leak,
            restart: false,
        },
        LeakScenario {
            name: "sawtooth cache",
            args: vec!["--grow-per-request-kb".into(), "256".into(), "--sawtooth-mb".into(), "12".into()],
            expect: Verdict::NoLeak,
            restart: false,
        },
    ];
    for (name, mb, expect) in [
        ("noise 4 MB, flat", 0.0, Verdict::NoLeak),
        ("noise 4 MB, leak 0.5 MB/h", 0.5, Verdict::NoLeak),
        ("noise 4 MB, leak 2 MB/h", 2.0, Verdict::Leak),
        ("noise 4 MB, leak 10 MB/h", 10.0, Verdict::Leak),
    ] {
        let mut args = if mb > 0.0 { per_hour(mb) } else { vec![] };
        args.extend(["--memory-noise-mb".into(), "4".into()]);
        v.push(LeakScenario { name, args, expect, restart: false });
    }
    let mut plateau = per_hour(40.0);
    plateau.extend(["--memory-cap-mb".into(), "40".into()]);
    v.push(LeakScenario { name: "plateau", args: plateau, expect: Verdict::NoLeak, restart: false });
    v
}

/// Returns the verdict, MB/h (in equivalent hours) and MB per 1000 requests.
fn run_leak(s: &LeakScenario) -> (Verdict, Option<f64>, Option<f64>) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut args: Vec<&str> = vec!["--ttft-ms", "5", "--tokens-per-s", "2000", "--jitter", "0"];
    args.extend(s.args.iter().map(String::as_str));
    let mut server = sim(port, &args);
    let cfg = config(
        dir.path(),
        port,
        &format!(
            "[[job]]\nname = \"light\"\ncron = \"@hourly\"\nrequests = 100000\ndelay_ms = 250\nmax_tokens = 4\nmax_duration_s = {LEAK_RUN_S}\n"
        ),
    );
    let mut run = once(&cfg, "light");
    if s.restart {
        std::thread::sleep(Duration::from_secs(LEAK_RUN_S / 2));
        drop(server);
        server = sim(port, &args);
    }
    run.wait().unwrap();
    drop(server);
    let conn = soakd::store::open(&dir.path().join("soakd.db")).unwrap();
    let mut rows: Vec<(u32, i64, f64)> = conn
        .prepare("SELECT pid, taken_at, rss_bytes FROM memory_samples WHERE in_flight = 0 AND pid IS NOT NULL ORDER BY taken_at")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let t0 = rows.first().map_or(0, |r| r.1);
    let seq: Vec<(u32, i64, u64)> = conn
        .prepare(
            "SELECT server_pid, started_at, server_seq FROM requests WHERE server_seq IS NOT NULL ORDER BY started_at",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut lifetimes: Vec<Lifetime> = Vec::new();
    for (pid, at, bytes) in rows.drain(..) {
        if lifetimes.last().is_none_or(|l| l.pid != pid) {
            lifetimes.push(Lifetime { pid, points: Vec::new() });
        }
        let requests = seq.iter().rev().find(|(p, t, _)| *p == pid && *t <= at).map(|x| x.2);
        let stretched = t0 + ((at - t0) as f64 * K) as i64;
        lifetimes.last_mut().unwrap().points.push(MemPoint { at_ms: stretched, bytes, requests, tokens: None });
    }
    let r = detect_leak(&lifetimes, None, &LeakParams::default());
    (r.verdict, r.mb_per_hour, r.mb_per_1k_requests)
}

struct CrashScenario {
    name: &'static str,
    args: &'static [&'static str],
    jobs: &'static str,
    run: &'static [&'static str],
    expect_factor: Option<&'static str>,
}

fn crash_scenarios() -> Vec<CrashScenario> {
    vec![
        CrashScenario {
            name: "above concurrency 2",
            args: &[
                "--exit-above-concurrency",
                "2",
                "--crash-style",
                "lmstudio",
                "--unloaded-requests",
                "0",
                "--ttft-ms",
                "150",
            ],
            jobs: "[[job]]\nname = \"c1\"\ncron = \"@hourly\"\nrequests = 60\nmax_tokens = 8\n[[job]]\nname = \"c4\"\ncron = \"@hourly\"\nrequests = 60\nconcurrency = 4\nmax_tokens = 8\n",
            run: &["c1", "c4"],
            expect_factor: Some("concurrency=4"),
        },
        CrashScenario {
            name: "long prompts",
            args: &[
                "--exit-above-prompt-tokens",
                "1500",
                "--crash-style",
                "lmstudio",
                "--unloaded-requests",
                "0",
                "--ttft-ms",
                "20",
            ],
            jobs: "[[job]]\nname = \"mix\"\ncron = \"@hourly\"\nrequests = 80\nmax_tokens = 8\n\
                   prompts = [\"Explain SQL injection briefly.\", { name = \"long\", context_tokens = 4000 }]\n",
            run: &["mix"],
            expect_factor: Some("prompt_size="),
        },
        CrashScenario {
            name: "rapid back-to-back",
            args: &[
                "--exit-on-rapid-ms",
                "300",
                "--rapid-crash-probability",
                "0.6",
                "--crash-style",
                "lmstudio",
                "--unloaded-requests",
                "0",
                "--ttft-ms",
                "20",
            ],
            jobs: "[[job]]\nname = \"rapid\"\ncron = \"@hourly\"\nrequests = 60\nmax_tokens = 8\n[[job]]\nname = \"spaced\"\ncron = \"@hourly\"\nrequests = 30\ndelay_ms = 1100\nmax_tokens = 8\n",
            run: &["rapid", "spaced"],
            expect_factor: Some("gap="),
        },
        CrashScenario {
            name: "after 25 requests",
            args: &["--abort-after", "25", "--ttft-ms", "20"],
            jobs: "[[job]]\nname = \"seq\"\ncron = \"@hourly\"\nrequests = 200\ndelay_ms = 30\nmax_tokens = 8\n",
            run: &["seq"],
            expect_factor: Some("server_seq="),
        },
        CrashScenario {
            name: "random 5 %",
            args: &["--fault", "http500=0.05", "--ttft-ms", "20", "--seed", "3"],
            jobs: "[[job]]\nname = \"c1\"\ncron = \"@hourly\"\nrequests = 150\nmax_tokens = 8\n[[job]]\nname = \"c4\"\ncron = \"@hourly\"\nrequests = 150\nconcurrency = 4\nmax_tokens = 8\n",
            run: &["c1", "c4"],
            expect_factor: None,
        },
    ]
}

/// Runs the jobs (restarting a sim that dies), then `soakd report`; returns the top pattern
/// as `factor=level` (or the request-count pattern) and the rapid-sequential answer.
fn run_crash(s: &CrashScenario) -> (Option<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), port, s.jobs);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let supervisor = {
        let (stop, args) = (stop.clone(), s.args.to_vec());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let mut server = sim(port, &args);
                while !stop.load(std::sync::atomic::Ordering::SeqCst)
                    && server.child.try_wait().ok().flatten().is_none()
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    for job in s.run {
        once(&cfg, job).wait().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    supervisor.join().unwrap();
    let out = Command::new(SOAKD)
        .args(["report", "--db", dir.path().join("soakd.db").to_str().unwrap(), "--since", "1h", "--format", "json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let b = &json["backends"][0];
    let top = b["crash_patterns"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["signature"] == "*"))
        .map(|p| format!("{}={}", p["factor"].as_str().unwrap_or(""), p["level"].as_str().unwrap_or("")));
    let top = top
        .or_else(|| b["at_request_count"].as_object().map(|c| format!("server_seq= at request ~{}", c["median_seq"])));
    (top, b["hypotheses"]["rapid_sequential"]["answer"].as_str().unwrap_or("?").to_string())
}
