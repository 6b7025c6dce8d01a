//! soakd beside oha, the HTTP load generator (`cargo bench --bench vs_oha [-- --requests N]`):
//! the same streamed 16-token chat requests at concurrency 1, 4 and 16 against one zero-delay
//! `soakd sim`, soakd (`soakd once`, full logging, the server's process sampled) and oha (logs
//! nothing) taking turns, twice each; then at concurrency 4 against the real llama-server on the
//! tiny model when scripts/test-deps has built it (four rounds there, and the median). Prints
//! requests/s, CPU per request (user + system, from getrusage of each child) and soakd/oha ratios.
//!
//! oha is installed into the test cache with `cargo install --locked oha` when it is missing.
//! soakd's rate is its run's own (the run's start to end in the log, as oha times its own);
//! its CPU includes the process's start (opening the log), a few ms in all.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/common/cache.rs"]
mod cache;

const OHA_VERSION: &str = "1.16.0";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let requests: u64 = args
        .iter()
        .position(|a| a == "--requests")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let soakd = PathBuf::from(env!("CARGO_BIN_EXE_soakd"));
    let oha = oha();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut sim = Command::new(&soakd)
        .args(["sim", "--port", &port.to_string(), "--ttft-ms", "0", "--tokens-per-s", "100000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("soakd sim starts");
    wait_listening(port);
    println!(
        "soakd vs oha {OHA_VERSION}: streamed, max_tokens 16, {requests} requests a run, against soakd sim (zero delay)"
    );
    println!(
        "{:>4}  {:>10}  {:>10}  {:>6}  {:>14}  {:>14}",
        "c", "oha req/s", "soakd req/s", "ratio", "oha CPU/req", "soakd CPU/req"
    );
    for concurrency in [1u64, 4, 16] {
        let (mut o, mut s) = (Vec::new(), Vec::new());
        for round in 0..2 {
            o.push(run_oha(&oha, port, requests, concurrency));
            s.push(run_soakd(
                &soakd,
                dir.path(),
                &format!("sim-c{concurrency}-{round}"),
                port,
                requests,
                concurrency,
                true,
            ));
        }
        let best =
            |v: &[Measured]| v.iter().cloned().fold(Measured::default(), |a, b| if b.rate > a.rate { b } else { a });
        let (o, s) = (best(&o), best(&s));
        println!(
            "{concurrency:>4}  {:>10.0}  {:>11.0}  {:>6.2}  {:>11.3} ms  {:>11.3} ms",
            o.rate,
            s.rate,
            s.rate / o.rate,
            o.cpu_ms_per_request,
            s.cpu_ms_per_request
        );
    }
    let _ = sim.kill();
    let _ = sim.wait();

    match llama() {
        Some((server, model)) => {
            let port = free_port();
            let mut llama = Command::new(server)
                .args([
                    "-m",
                    model.to_str().unwrap(),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "-c",
                    "2048",
                    "-np",
                    "4",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("llama-server starts");
            wait_healthy(port);
            let n = requests.min(1000);
            println!("against llama-server (tiny model), concurrency 4, {n} requests, streamed:");
            // The server's compute sets both rates here, so rounds differ by a few percent:
            // four of them, and the median ratio.
            let mut ratios = Vec::new();
            for round in 0..4 {
                let o = run_oha(&oha, port, n, 4);
                let s = run_soakd(&soakd, dir.path(), &format!("llama-{round}"), port, n, 4, true);
                let ratio = (s.rate * s.ok_share) / (o.rate * o.ok_share).max(1e-9);
                ratios.push(ratio);
                println!(
                    "  oha {:.0} req/s ({:.1} % ok) · soakd {:.0} req/s ({:.1} % ok) · ratio of ok rates {ratio:.2}",
                    o.rate,
                    o.ok_share * 100.0,
                    s.rate,
                    s.ok_share * 100.0,
                );
            }
            ratios.sort_by(f64::total_cmp);
            println!("  median ratio of ok rates {:.2}", (ratios[1] + ratios[2]) / 2.0);
            let _ = llama.kill();
            let _ = llama.wait();
        }
        None => println!("against llama-server: skipped (run scripts/test-deps to build it)"),
    }
}

#[derive(Debug, Clone, Default)]
struct Measured {
    rate: f64,
    cpu_ms_per_request: f64,
    ok_share: f64,
}

fn body() -> String {
    r#"{"model":"m","messages":[{"role":"user","content":"Say something."}],"stream":true,"max_tokens":16}"#.into()
}

fn run_oha(oha: &Path, port: u16, requests: u64, concurrency: u64) -> Measured {
    let before = children_cpu();
    let out = Command::new(oha)
        .args(["-n", &requests.to_string(), "-c", &concurrency.to_string(), "--no-tui", "--output-format", "json"])
        .args(["-m", "POST", "-H", "content-type: application/json", "-d", &body()])
        .arg(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .output()
        .expect("oha runs");
    let cpu = children_cpu() - before;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("oha's JSON: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    let rate = json["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0);
    let ok = json["summary"]["successRate"].as_f64().unwrap_or(0.0);
    Measured { rate, cpu_ms_per_request: cpu.as_secs_f64() * 1e3 / requests as f64, ok_share: ok }
}

fn run_soakd(
    soakd: &Path,
    dir: &Path,
    name: &str,
    port: u16,
    requests: u64,
    concurrency: u64,
    stream: bool,
) -> Measured {
    let home = dir.join(name);
    std::fs::create_dir_all(home.join("schedules")).unwrap();
    std::fs::write(
        home.join("schedules/jobs.toml"),
        format!(
            "[[job]]\nname = \"load\"\ncron = \"@hourly\"\nrequests = {requests}\nconcurrency = {concurrency}\nstream = {stream}\nmax_tokens = 16\nprompts = [\"Say something.\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        home.join("config.toml"),
        format!("db = \"soakd.db\"\n[[backend]]\nname = \"b\"\nkind = \"openai\"\nurl = \"http://127.0.0.1:{port}\"\nprocess = {{ port = {port} }}\n"),
    )
    .unwrap();
    let before = children_cpu();
    let out = Command::new(soakd)
        .args(["--config", home.join("config.toml").to_str().unwrap(), "once", "load"])
        .output()
        .expect("soakd once runs");
    let cpu = children_cpu() - before;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let conn = rusqlite::Connection::open(home.join("soakd.db")).unwrap();
    let (ms, ok, all): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT max(finished_at) - min(started_at) FROM runs),
                    (SELECT count(*) FROM requests WHERE outcome = 'ok'), (SELECT count(*) FROM requests)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    Measured {
        rate: all as f64 / (ms.max(1) as f64 / 1000.0),
        cpu_ms_per_request: cpu.as_secs_f64() * 1e3 / requests as f64,
        ok_share: ok as f64 / all.max(1) as f64,
    }
}

/// User + system CPU of this process's finished children so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// oha from the test cache, installed there with cargo when missing.
fn oha() -> PathBuf {
    let root = cache::cache_dir().join("oha");
    let bin = root.join("bin/oha");
    if !bin.is_file() {
        println!("installing oha {OHA_VERSION} into {} (cargo install --locked, a few minutes)", root.display());
        let status = Command::new(env!("CARGO"))
            .args(["install", "--locked", "--version", OHA_VERSION, "oha", "--root"])
            .arg(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo install oha failed");
    }
    bin
}

/// llama-server and the tiny model: from SOAKD_TEST_LLAMA_SERVER / SOAKD_TEST_MODELS, else the
/// newest that scripts/test-deps left in the test cache.
fn llama() -> Option<(PathBuf, PathBuf)> {
    let server = cache::installed("SOAKD_TEST_LLAMA_SERVER", "llama-server-", "llama-server")?;
    let model = cache::installed("SOAKD_TEST_MODELS", "model-", "")?.join("babble/model.gguf");
    (server.is_file() && model.is_file()).then_some((server, model))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_listening(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_healthy(port: u16) {
    use std::io::{Read, Write};
    let start = Instant::now();
    loop {
        let ok = std::net::TcpStream::connect(("127.0.0.1", port)).ok().and_then(|mut s| {
            write!(s, "GET /health HTTP/1.0\r\n\r\n").ok()?;
            let mut text = String::new();
            s.read_to_string(&mut text).ok()?;
            Some(text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200"))
        });
        if ok == Some(true) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "llama-server on {port} was not healthy in 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}
